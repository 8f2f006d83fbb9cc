#!/usr/bin/env bash
# Cost of unwinding with CFI tables (--unwind dwarf) against the kernel's frame-pointer walk
# (--unwind fp), per malloc/free pair (issue 6's benchmark).
#
# Builds bench/workload.c twice (PAIRS malloc/free pairs over ten call paths, sizes 16-4096 B):
# with frame pointers (the build both unwinders can walk) and without (plain -O2, the build
# only the CFI unwinder can walk), and the release recorder. Then, RUNS rounds in one run:
#   bare        the frame-pointer build, not traced;
#   no-stacks   memtrail-record --no-stacks on it (every event, no stack: what stacks add);
#   fp          memtrail-record --unwind fp on it;
#   dwarf       memtrail-record --unwind dwarf on it (the comparison issue 6 asks for);
#   bare-nofp   the build without frame pointers, not traced;
#   dwarf-nofp  memtrail-record --unwind dwarf on it (for information: what users get).
# Each traced mode is also run with 0 pairs, and its fixed cost (attach, tables, symbols, exit)
# subtracted: added ns per pair = ((T(PAIRS) - T(0)) - (bare T(PAIRS) - bare T(0))) / PAIRS,
# wall-clock, the recorder's own work included. Prints medians, spreads, the dwarf/fp ratio and
# whether the target is met (dwarf's added cost at most 1.5x fp's, zero lost events).
#
# Usage: bench/unwind.sh [OUTPUT_DIR]   (default: target/bench-unwind)
# Environment: PAIRS (default 2000000), RUNS (default 3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
pairs="${PAIRS:-2000000}"
runs="${RUNS:-3}"
target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --manifest-path "$repo/Cargo.toml" --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}"
out="${1:-$target_dir/bench-unwind}"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"

for tool in gcc python3; do
    command -v "$tool" >/dev/null || { echo "unwind.sh: $tool is not installed" >&2; exit 1; }
done
as_root=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "unwind.sh: recording needs root (eBPF)" >&2; exit 1; }
    as_root=(sudo)
fi

echo "==> building the workload (with and without frame pointers) and the release recorder"
gcc -O2 -g -fno-omit-frame-pointer "$repo/bench/workload.c" -o "$out/workload"
gcc -O2 -g "$repo/bench/workload.c" -o "$out/workload-nofp"
cargo build --manifest-path "$repo/Cargo.toml" -q --release -p memtrail-record
record="$target_dir/release/memtrail-record"

echo "machine: $(nproc) cores, $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pairs: $pairs, rounds: $runs"

lost_file="$out/lost.txt"
: >"$lost_file"

# Runs one mode with N pairs; prints the wall time in ns.
run_mode() {
    local mode="$1" n="$2" start end trace="$out/$1.trace"
    rm -f "$trace"
    start=$(date +%s%N)
    # Not -q: the summary line on stderr says how many events were recorded and lost.
    case "$mode" in
        bare) "$out/workload" "$n" >/dev/null ;;
        bare-nofp) "$out/workload-nofp" "$n" >/dev/null ;;
        no-stacks) "${as_root[@]}" "$record" --no-stacks -o "$trace" -- "$out/workload" "$n" >/dev/null 2>"$out/record.log" ;;
        fp) "${as_root[@]}" "$record" --unwind fp -o "$trace" -- "$out/workload" "$n" >/dev/null 2>"$out/record.log" ;;
        dwarf) "${as_root[@]}" "$record" --unwind dwarf -o "$trace" -- "$out/workload" "$n" >/dev/null 2>"$out/record.log" ;;
        dwarf-nofp) "${as_root[@]}" "$record" --unwind dwarf -o "$trace" -- "$out/workload-nofp" "$n" >/dev/null 2>"$out/record.log" ;;
    esac
    end=$(date +%s%N)
    if [[ $n -gt 0 && $mode != bare* ]]; then
        # "memtrail-record: E events (...), L lost, ..."
        sed -n "s/^memtrail-record: \([0-9]*\) events .*), \([0-9]*\) lost.*/$mode \2 \1/p" "$out/record.log" >>"$lost_file"
        grep -q "^$mode " "$lost_file" || { echo "unwind.sh: no summary from memtrail-record:" >&2; cat "$out/record.log" >&2; exit 1; }
    fi
    echo $((end - start))
}

modes=(bare no-stacks fp dwarf bare-nofp dwarf-nofp)
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
by_round = {}
for r, mode, full, zero in (l.split() for l in open(results)):
    by_round.setdefault(r, {})[mode] = (int(full), int(zero))
traced = {"no-stacks": "bare", "fp": "bare", "dwarf": "bare", "dwarf-nofp": "bare-nofp"}
added = {m: [] for m in traced}
bare = {"bare": [], "bare-nofp": []}
for d in by_round.values():
    for b in bare:
        full, zero = d[b]
        bare[b].append((full - zero) / pairs)
    for m, b in traced.items():
        full, zero = d[m]
        bfull, bzero = d[b]
        added[m].append((full - zero) / pairs - (bfull - bzero) / pairs)
med = {m: statistics.median(v) for m, v in added.items()}
print()
print(f"{'mode':<11} {'ns added per pair (median)':>27} {'spread (min..max)':>20} {'x fp':>6}")
for b, v in bare.items():
    print(f"{b:<11} {statistics.median(v):>20.0f} (pair) {min(v):>9.0f}..{max(v):<9.0f}")
for m, v in added.items():
    print(f"{m:<11} {med[m]:>27.0f} {min(v):>10.0f}..{max(v):<9.0f} {med[m] / med['fp']:>6.2f}")
lost = [l.split() for l in open(lost_file)]
lost_total = sum(int(l[1]) for l in lost)
events = sorted({int(l[2]) for l in lost})
print()
print(f"events per recording: {events}; lost events over all {len(lost)} recordings: {lost_total}")
print(f"what stacks add over no stacks (median ns per pair): fp {med['fp'] - med['no-stacks']:.0f}, "
      f"dwarf {med['dwarf'] - med['no-stacks']:.0f}, dwarf-nofp {med['dwarf-nofp'] - med['no-stacks']:.0f}")
ratio = med["dwarf"] / med["fp"]
met = ratio <= 1.5 and lost_total == 0
print(f"target (dwarf <= 1.5x fp's added cost on the frame-pointer build, zero lost): "
      f"{'MET' if met else 'NOT MET'} ({ratio:.2f}x, {lost_total} lost)")
PY
