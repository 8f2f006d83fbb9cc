#!/usr/bin/env bash
# Recorder overhead: what tracing adds to each malloc/free pair of a malloc-heavy program.
#
# Builds bench/workload.c (PAIRS malloc/free pairs over ten call paths, sizes 16-4096 B, frame
# pointers) and the release recorder, then, RUNS rounds in one run, times the workload:
#   bare       no tracing;
#   floor      memtrail-record --probes-only: the same uprobes and uretprobes on the same attach
#              points, running empty programs (the floor of any uprobe-based tracer);
#   no-stacks  memtrail-record --no-stacks: every event, no stack capture;
#   stack-read memtrail-record --stack-read-only: no stacks, but each allocation copies 256
#              bytes of its user stack, the one read a remembered stack still makes (so the
#              lower bound of any stack checked against the memory it came from);
#   stacks     memtrail-record: every event with its stack (the default);
#   heaptrack  heaptrack (LD_PRELOAD, libunwind stacks), for comparison.
# Each traced mode is also run with 0 pairs, and its fixed cost (attach, symbols, exit) is
# subtracted: added ns per pair = ((T(PAIRS) - T(0)) - (bare T(PAIRS) - bare T(0))) / PAIRS,
# wall-clock, the recorder's own work included. Prints the median and the spread over the
# rounds, the ratios to the floor's added cost and whether the target of issue 3 is met (with
# stacks at most 1.25x the floor's added cost, and zero lost events in every recording).
#
# Then, unless PROFILE=0, one more recording per traced mode says where the added cost goes:
# the CPU time of the target (its allocator calls, the uprobe traps and the eBPF programs run
# in its context) and of the recorder (reading the ring buffer, encoding, compressing), read
# from /proc every 100 ms, and the run time of each eBPF program (kernel.bpf_stats_enabled,
# switched on for that pass only and restored; per program from the recorder's fdinfo, named
# when bpftool is installed). Polling /proc costs a little CPU, so this pass is not timed.
#
# Usage: bench/record.sh [OUTPUT_DIR]   (default: target/bench-record)
# Environment: PAIRS (default 5000000, as issue 3 asks), RUNS (default 3; 0: the profiling pass only), PROFILE (default 1),
#   DEPTH (default 0: the workload's own 6-frame stacks; N: every pair N calls deeper),
#   RECORD_ARGS (extra memtrail-record options for the no-stacks and stacks modes),
#   BASELINE (another memtrail-record binary, timed and profiled as the extra mode "baseline",
#   with stacks).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
pairs="${PAIRS:-5000000}"
runs="${RUNS:-3}"
depth="${DEPTH:-0}"
target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --manifest-path "$repo/Cargo.toml" --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}"
out="${1:-$target_dir/bench-record}"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"

for tool in heaptrack gcc python3; do
    command -v "$tool" >/dev/null || { echo "record.sh: $tool is not installed" >&2; exit 1; }
done
as_root=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "record.sh: recording needs root (eBPF)" >&2; exit 1; }
    as_root=(sudo)
fi

echo "==> building the workload and the release recorder"
gcc -O2 -g -fno-omit-frame-pointer "$repo/bench/workload.c" -o "$out/workload"
cargo build --manifest-path "$repo/Cargo.toml" -q --release -p memtrail-record
record="$target_dir/release/memtrail-record"
# Extra options for the recording modes, e.g. RECORD_ARGS="--compression-level 6".
read -r -a record_args <<<"${RECORD_ARGS:-}"
baseline="${BASELINE:-}"
if [[ -n $baseline && ! -x $baseline ]]; then
    echo "record.sh: BASELINE=$baseline is not an executable" >&2
    exit 1
fi

echo "machine: $(nproc) cores, $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pairs: $pairs, rounds: $runs, extra stack depth: $depth"

lost_file="$out/lost.txt"
: >"$lost_file"

# The recorder leaves detaching its probes to a helper process that outlives it by ~2 s (the
# kernel retires uprobes one by one, ~100 ms each); a recording started meanwhile waits for it
# while attaching, which would add a random delay to the next mode's time.
wait_for_detach() {
    local names=(memtrail-record)
    [[ -n $baseline ]] && names+=("$(basename "$baseline")")
    for name in "${names[@]}"; do
        while pgrep -x "${name:0:15}" >/dev/null; do sleep 0.05; done
    done
}

# Runs one mode with N pairs; prints the wall time and the CPU time (user + sys of the
# whole process tree: target, recorder or heaptrack's helpers), in ns.
run_mode() {
    local mode="$1" n="$2" start end trace="$out/$1.trace" cpu=(/usr/bin/time -f "%U %S" -o "$out/cpu.txt")
    rm -f "$trace" "$out"/heaptrack.*
    wait_for_detach
    start=$(date +%s%N)
    case "$mode" in
        bare) "${cpu[@]}" "$out/workload" "$n" "$depth" >/dev/null ;;
        floor) "${as_root[@]}" "${cpu[@]}" "$record" -q --probes-only -o "$trace" -- "$out/workload" "$n" "$depth" >/dev/null ;;
        # Not -q: the summary line on stderr says how many events were recorded and lost.
        no-stacks) "${as_root[@]}" "${cpu[@]}" "$record" --no-stacks "${record_args[@]}" -o "$trace" -- "$out/workload" "$n" "$depth" >/dev/null 2>"$out/record.log" ;;
        stack-read) "${as_root[@]}" "${cpu[@]}" "$record" --stack-read-only "${record_args[@]}" -o "$trace" -- "$out/workload" "$n" "$depth" >/dev/null 2>"$out/record.log" ;;
        stacks) "${as_root[@]}" "${cpu[@]}" "$record" "${record_args[@]}" -o "$trace" -- "$out/workload" "$n" "$depth" >/dev/null 2>"$out/record.log" ;;
        baseline) "${as_root[@]}" "${cpu[@]}" "$baseline" -o "$trace" -- "$out/workload" "$n" "$depth" >/dev/null 2>"$out/record.log" ;;
        heaptrack) "${cpu[@]}" heaptrack -o "$out/heaptrack" "$out/workload" "$n" "$depth" >"$out/heaptrack.log" 2>&1 ;;
    esac
    end=$(date +%s%N)
    if [[ $n -gt 0 && ( $mode == stacks || $mode == no-stacks || $mode == stack-read || $mode == baseline ) ]]; then
        # "memtrail-record: E events (...), L lost, ..."
        sed -n "s/^memtrail-record: \([0-9]*\) events .*), \([0-9]*\) lost.*/$mode \2 \1/p" "$out/record.log" >>"$lost_file"
        grep -q "^$mode " "$lost_file" || { echo "record.sh: no summary from memtrail-record:" >&2; cat "$out/record.log" >&2; exit 1; }
    fi
    echo "$((end - start)) $(awk '{printf "%.0f", ($1 + $2) * 1e9}' "$out/cpu.txt")"
}

modes=(bare floor no-stacks stack-read stacks heaptrack)
[[ -n $baseline ]] && modes+=(baseline)
results="$out/times.txt"
: >"$results"
for round in $(seq 1 "$runs"); do
    line="round $round:"
    for mode in "${modes[@]}"; do
        result=$(run_mode "$mode" "$pairs")
        read -r full full_cpu <<<"$result"
        result=$(run_mode "$mode" 0)
        read -r zero zero_cpu <<<"$result"
        echo "$round $mode $full $zero $full_cpu $zero_cpu" >>"$results"
        line+=" $mode $(python3 -c "print(f'{$full/1e9:.2f}')")s"
    done
    echo "$line"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

[[ $runs -gt 0 ]] && python3 - "$results" "$lost_file" "$pairs" "${baseline:+baseline}" <<'PY'
import statistics, sys
results, lost_file, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
extra_modes = [m for m in sys.argv[4:] if m]
rows = [l.split() for l in open(results)]
modes = ["floor", "no-stacks", "stack-read", "stacks", "heaptrack"] + extra_modes
med = {}
for clock, (full_at, zero_at) in [("wall", (2, 3)), ("CPU", (4, 5))]:
    by_round = {}
    for row in rows:
        by_round.setdefault(row[0], {})[row[1]] = (int(row[full_at]), int(row[zero_at]))
    added = {m: [] for m in modes}
    bare = []
    for r, d in by_round.items():
        bfull, bzero = d["bare"]
        per_bare = (bfull - bzero) / pairs
        bare.append(per_bare)
        for m in modes:
            full, zero = d[m]
            added[m].append((full - zero) / pairs - per_bare)
    med[clock] = {m: statistics.median(v) for m, v in added.items()}
    print()
    print(f"{clock + ' time':<11} {'ns added per pair (median)':>27} {'spread (min..max)':>20} {'x floor':>8}")
    print(f"{'bare':<11} {statistics.median(bare):>20.0f} (pair) {min(bare):>9.0f}..{max(bare):<9.0f}")
    for m in modes:
        v = added[m]
        print(f"{m:<11} {med[clock][m]:>27.0f} {min(v):>10.0f}..{max(v):<9.0f} {med[clock][m] / med[clock]['floor']:>8.2f}")
print()
print("Wall time is what a traced program feels on an idle machine, the recorder's work included;")
print("CPU time (user + sys of the target and the recorder together) is steadier on a shared one.")
lost = [l.split() for l in open(lost_file)]
lost_total = sum(int(l[1]) for l in lost)
events = sorted({int(l[2]) for l in lost if l[0] == "stacks"})
print()
for clock in ["wall", "CPU"]:
    print(f"memtrail with stacks / heaptrack (added {clock} time): {med[clock]['stacks'] / med[clock]['heaptrack']:.2f}")
print(f"events per recording with stacks: {events}; lost events over all {len(lost)} recordings: {lost_total}")
for clock in ["wall", "CPU"]:
    m = med[clock]
    print(f"stacks, {clock} time: no-stacks {m['no-stacks'] / m['floor']:.2f}x the floor, "
          f"+ the one stack read {(m['stack-read'] - m['no-stacks']) / m['floor']:.2f}x, "
          f"+ the rest of capture {(m['stacks'] - m['stack-read']) / m['floor']:.2f}x "
          f"({m['stacks'] - m['stack-read']:.0f} ns/pair)")
for clock in ["wall", "CPU"]:
    ratio = med[clock]["stacks"] / med[clock]["floor"]
    met = ratio <= 1.25 and lost_total == 0
    print(f"target (with stacks <= 1.25x the floor's added cost, zero lost), {clock} time: "
          f"{'MET' if met else 'NOT MET'} ({ratio:.2f}x, {lost_total} lost)")
PY

[[ ${PROFILE:-1} == 0 ]] && exit 0

# The profiling pass: one recording per traced mode, polled every 100 ms.
echo
echo "==> where the added cost goes (one more recording per mode, $pairs pairs, CPU from /proc, eBPF program time from bpf_stats)"
stats_before=$(cat /proc/sys/kernel/bpf_stats_enabled)
restore_stats() { echo "$stats_before" | "${as_root[@]}" tee /proc/sys/kernel/bpf_stats_enabled >/dev/null; }
trap restore_stats EXIT
echo 1 | "${as_root[@]}" tee /proc/sys/kernel/bpf_stats_enabled >/dev/null
profile="$out/profile.txt"
: >"$profile"
profile_modes=(floor no-stacks stack-read stacks)
[[ -n $baseline ]] && profile_modes+=(baseline)
for mode in "${profile_modes[@]}"; do
    binary="$record"
    case "$mode" in
        floor) args=(--probes-only -q) ;;
        no-stacks) args=(--no-stacks -q "${record_args[@]}") ;;
        stack-read) args=(--stack-read-only -q "${record_args[@]}") ;;
        stacks) args=(-q "${record_args[@]}") ;;
        baseline) binary="$baseline" args=(-q) ;;
    esac
    wait_for_detach
    "${as_root[@]}" "$binary" "${args[@]}" -o "$out/profile.trace" -- "$out/workload" "$pairs" "$depth" >/dev/null &
    launcher=$!
    rec_pid=""
    while [[ -z $rec_pid ]] && kill -0 "$launcher" 2>/dev/null; do
        # Under sudo the recorder is the launcher's child; as root it is the launcher.
        if [[ ${#as_root[@]} -gt 0 ]]; then rec_pid=$(pgrep -P "$launcher" | head -1 || true); else rec_pid=$launcher; fi
    done
    declare -A progs=() names=()
    rec_cpu=0 target_cpu=0
    while [[ -n $rec_pid ]] && kill -0 "$rec_pid" 2>/dev/null; do
        # utime + stime (clock ticks) of the recorder and of the workload it launched.
        cpu=$(awk '{print $14 + $15}' "/proc/$rec_pid/stat" 2>/dev/null) && rec_cpu=${cpu:-$rec_cpu}
        child=$(pgrep -P "$rec_pid" -x workload | head -1 || true)
        if [[ -n $child ]]; then
            cpu=$(awk '{print $14 + $15}' "/proc/$child/stat" 2>/dev/null) && target_cpu=${cpu:-$target_cpu}
        fi
        for info in /proc/"$rec_pid"/fdinfo/*; do
            line=$(awk '/^prog_id:/{id=$2} /^run_time_ns:/{t=$2} /^run_cnt:/{c=$2} END{if (id != "" && c != "") print id, t, c}' "$info" 2>/dev/null || true)
            if [[ -n $line ]]; then
                id=${line%% *}
                # The name, while the program is loaded (bpftool is optional).
                if [[ -z ${names[$id]:-} ]]; then
                    names[$id]=$( (bpftool prog show id "$id" 2>/dev/null || true) | sed -n 's/^[0-9]*: [a-z_]*  name \([^ ]*\).*/\1/p')
                    names[$id]=${names[$id]:-id$id}
                fi
                progs[$id]="$line"
            fi
        done
        sleep 0.1
    done
    wait "$launcher" || true
    for id in "${!progs[@]}"; do
        echo "prog $mode ${progs[$id]} ${names[$id]}" >>"$profile"
    done
    echo "cpu $mode $rec_cpu $target_cpu $(getconf CLK_TCK)" >>"$profile"
done
restore_stats
trap - EXIT

python3 - "$profile" "$pairs" "${baseline:+baseline}" <<'PY'
import sys
profile, pairs = sys.argv[1], int(sys.argv[2])
modes = ["floor", "no-stacks", "stack-read", "stacks"] + [m for m in sys.argv[3:] if m]
cpu, progs = {}, {}
for line in open(profile):
    f = line.split()
    if f[0] == "cpu":
        tick = 1e9 / int(f[4])
        cpu[f[1]] = (int(f[2]) * tick / pairs, int(f[3]) * tick / pairs)
    elif f[0] == "prog":
        progs.setdefault(f[1], []).append((f[5], int(f[3]), int(f[4])))
print(f"{'mode':<10} {'target CPU':>11} {'recorder CPU':>13} {'eBPF programs':>14}   (ns per pair; CPU from /proc, sampled every 100 ms)")
prog_total = {}
for mode in modes:
    prog_total[mode] = sum(t for _, t, _ in progs.get(mode, [])) / pairs
    rec, target = cpu.get(mode, (0, 0))
    print(f"{mode:<10} {target:>11.0f} {rec:>13.0f} {prog_total[mode]:>14.0f}")
for mode in modes[1:]:
    d_target = cpu[mode][1] - cpu["floor"][1]
    d_rec = cpu[mode][0] - cpu["floor"][0]
    d_prog = prog_total[mode] - prog_total["floor"]
    print(f"{mode} over the floor: target CPU +{d_target:.0f} ns/pair (eBPF programs +{d_prog:.0f}), recorder CPU +{d_rec:.0f} ns/pair")
print()
print("eBPF programs that ran (bpf_stats: run time includes ~20-60 ns of accounting per run):")
for mode in modes:
    for name, t, n in sorted(progs.get(mode, []), key=lambda p: -p[1]):
        if n:
            print(f"  {mode:<10} {name:<24} runs/pair {n / pairs:5.2f}  {t / n:7.0f} ns/run  {t / pairs:7.0f} ns/pair")
PY
