#!/usr/bin/env bash
# Recorder overhead: what tracing adds to each malloc/free pair of a malloc-heavy program.
#
# Builds bench/workload.c (PAIRS malloc/free pairs over ten call paths, sizes 16-4096 B, frame
# pointers) and the release recorder, then, RUNS rounds in one run, times the workload:
#   bare       no tracing;
#   floor      memtrail-record --probes-only: the same uprobes and uretprobes on the same attach
#              points, running empty programs (the floor of any uprobe-based tracer);
#   no-stacks  memtrail-record --no-stacks: every event, no stack capture;
#   stacks     memtrail-record: every event with its stack (the default);
#   heaptrack  heaptrack (LD_PRELOAD, libunwind stacks), for comparison.
# Each traced mode is also run with 0 pairs, and its fixed cost (attach, symbols, exit) is
# subtracted: added ns per pair = ((T(PAIRS) - T(0)) - (bare T(PAIRS) - bare T(0))) / PAIRS,
# wall-clock, the recorder's own work included. Prints the median and the spread over the
# rounds, the ratios to the floor's added cost and whether the target of issue 3 is met (with
# stacks at most 1.25x the floor's added cost, and zero lost events in every recording).
#
# Usage: bench/record.sh [OUTPUT_DIR]   (default: target/bench-record)
# Environment: PAIRS (default 2000000), RUNS (default 3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
pairs="${PAIRS:-2000000}"
runs="${RUNS:-3}"
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

echo "machine: $(nproc) cores, $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pairs: $pairs, rounds: $runs"

lost_file="$out/lost.txt"
: >"$lost_file"

# Runs one mode with N pairs; prints the wall time in ns.
run_mode() {
    local mode="$1" n="$2" start end trace="$out/$1.trace"
    rm -f "$trace" "$out"/heaptrack.*
    start=$(date +%s%N)
    case "$mode" in
        bare) "$out/workload" "$n" >/dev/null ;;
        floor) "${as_root[@]}" "$record" -q --probes-only -o "$trace" -- "$out/workload" "$n" >/dev/null ;;
        # Not -q: the summary line on stderr says how many events were recorded and lost.
        no-stacks) "${as_root[@]}" "$record" --no-stacks -o "$trace" -- "$out/workload" "$n" >/dev/null 2>"$out/record.log" ;;
        stacks) "${as_root[@]}" "$record" -o "$trace" -- "$out/workload" "$n" >/dev/null 2>"$out/record.log" ;;
        heaptrack) heaptrack -o "$out/heaptrack" "$out/workload" "$n" >"$out/heaptrack.log" 2>&1 ;;
    esac
    end=$(date +%s%N)
    if [[ $n -gt 0 && ( $mode == stacks || $mode == no-stacks ) ]]; then
        # "memtrail-record: E events (...), L lost, ..."
        sed -n "s/^memtrail-record: \([0-9]*\) events .*), \([0-9]*\) lost.*/$mode \2 \1/p" "$out/record.log" >>"$lost_file"
        grep -q "^$mode " "$lost_file" || { echo "record.sh: no summary from memtrail-record:" >&2; cat "$out/record.log" >&2; exit 1; }
    fi
    echo $((end - start))
}

modes=(bare floor no-stacks stacks heaptrack)
results="$out/times.txt"
: >"$results"
for round in $(seq 1 "$runs"); do
    line="round $round:"
    for mode in "${modes[@]}"; do
        full=$(run_mode "$mode" "$pairs")
        zero=$(run_mode "$mode" 0)
        echo "$round $mode $full $zero" >>"$results"
        line+=" $mode $(python3 -c "print(f'{$full/1e9:.2f}')")s"
    done
    echo "$line"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$lost_file" "$pairs" <<'PY'
import statistics, sys
results, lost_file, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.split() for l in open(results)]
by_round = {}
for r, mode, full, zero in rows:
    by_round.setdefault(r, {})[mode] = (int(full), int(zero))
modes = ["floor", "no-stacks", "stacks", "heaptrack"]
added = {m: [] for m in modes}
bare = []
for r, d in by_round.items():
    bfull, bzero = d["bare"]
    per_bare = (bfull - bzero) / pairs
    bare.append(per_bare)
    for m in modes:
        full, zero = d[m]
        added[m].append((full - zero) / pairs - per_bare)
med = {m: statistics.median(v) for m, v in added.items()}
print()
print(f"{'mode':<11} {'ns added per pair (median)':>27} {'spread (min..max)':>20} {'x floor':>8}")
print(f"{'bare':<11} {statistics.median(bare):>20.0f} (pair) {min(bare):>9.0f}..{max(bare):<9.0f}")
for m in modes:
    v = added[m]
    print(f"{m:<11} {med[m]:>27.0f} {min(v):>10.0f}..{max(v):<9.0f} {med[m] / med['floor']:>8.2f}")
lost = [l.split() for l in open(lost_file)]
lost_total = sum(int(l[1]) for l in lost)
events = sorted({int(l[2]) for l in lost if l[0] == "stacks"})
print()
print(f"memtrail with stacks / heaptrack (added cost): {med['stacks'] / med['heaptrack']:.2f}")
print(f"events per recording with stacks: {events}; lost events over all {len(lost)} recordings: {lost_total}")
ratio = med["stacks"] / med["floor"]
met = ratio <= 1.25 and lost_total == 0
print(f"target (with stacks <= 1.25x the floor's added cost, zero lost): "
      f"{'MET' if met else 'NOT MET'} ({ratio:.2f}x, {lost_total} lost)")
PY
