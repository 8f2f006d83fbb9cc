#!/usr/bin/env bash
# Recorder overhead per allocator: what tracing adds to a malloc/free pair of bench/workload.c
# linked against glibc, jemalloc, tcmalloc and mimalloc (Debian's packages), recorded with the
# defaults (the recorder finds the allocator itself), all in one run.
#
# For each allocator, RUNS rounds of: bare and traced. The workload times its own pairs
# (`loop_ns`, CLOCK_MONOTONIC around the loop): attach, start-up, exit and detaching, which
# vary by seconds on a machine where others attach probes too, stay out. Added ns per pair =
# (traced loop_ns - bare loop_ns) / PAIRS: the probes' traps and programs, paid in the
# program's thread (the recorder reads the ring buffer on another CPU). Prints the median added cost per pair, its ratio to glibc's
# (issue 16 asks for at most 1.3x), the bare cost per pair, the events and lost events of the
# last recording, and the probes the recorder says single-step.
#
# Usage: bench/allocators.sh [OUTPUT_DIR]   (default: target/bench-allocators)
# Environment: PAIRS (default 1000000), RUNS (default 3), BASELINE (another memtrail-record,
#   timed on the glibc build as the extra row "glibc (baseline)": probing several allocators
#   must not raise the glibc case).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
pairs="${PAIRS:-1000000}"
runs="${RUNS:-3}"
target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --manifest-path "$repo/Cargo.toml" --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}"
out="${1:-$target_dir/bench-allocators}"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
[[ $(id -u) -eq 0 ]] || { echo "allocators.sh: recording needs root (eBPF)" >&2; exit 1; }

lib=/usr/lib/x86_64-linux-gnu
declare -A link=(
    [glibc]=""
    [jemalloc]="$lib/libjemalloc.so.2"
    [tcmalloc]="$lib/libtcmalloc_minimal.so.4"
    [mimalloc]="$lib/libmimalloc.so.2"
)
allocators=()
for name in glibc jemalloc tcmalloc mimalloc; do
    if [[ -n ${link[$name]} && ! -e ${link[$name]} ]]; then
        echo "allocators.sh: ${link[$name]} missing, $name skipped (apt-get install it)" >&2
        continue
    fi
    allocators+=("$name")
done

echo "==> building the workloads and the release recorder"
for name in "${allocators[@]}"; do
    # The allocator linked in (DT_NEEDED before libc), as a service built against it is.
    gcc -O2 -g -fno-omit-frame-pointer "$repo/bench/workload.c" -o "$out/workload-$name" \
        -Wl,--no-as-needed ${link[$name]}
done
cargo build --manifest-path "$repo/Cargo.toml" -q --release -p memtrail-record
record="$target_dir/release/memtrail-record"
# A private copy (the shared target dir may be rebuilt meanwhile), renamed into place: a
# previous run's detaching helper may still be running the old one.
cp "$record" "$out/memtrail-record.new" && mv -f "$out/memtrail-record.new" "$out/memtrail-record"
record="$out/memtrail-record"
baseline="${BASELINE:-}"
echo "machine: $(nproc) cores, $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pairs: $pairs, rounds: $runs"

# Waits for the previous recording's detaching helper (see bench/record.sh): a process
# running this script's recorder (or the baseline), not other users' recorders.
wait_for_detach() {
    local pid exe busy=1
    while ((busy)); do
        busy=0
        for pid in $(pgrep -f memtrail-record) $( [[ -n $baseline ]] && pgrep -f "$(basename "$baseline")"); do
            exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
            [[ $exe == "$record" || ( -n $baseline && $exe == "$(readlink -f "$baseline")" ) ]] && busy=1
        done
        ((busy)) && sleep 0.05
    done
}

# loop_ns RECORDER|"" NAME: the workload's own time for its pairs (traced when RECORDER is set).
loop_ns() {
    local recorder="$1" name="$2" line
    wait_for_detach
    if [[ -n $recorder ]]; then
        line=$("$recorder" -o "$out/$name.trace" -- "$out/workload-$name" "$pairs" 2>"$out/$name.log")
    else
        line=$("$out/workload-$name" "$pairs")
    fi
    sed -n 's/.*loop_ns=\([0-9]*\).*/\1/p' <<<"$line"
}

results="$out/times.txt"
: >"$results"
rows=("${allocators[@]}")
[[ -n $baseline ]] && rows+=(baseline)
for round in $(seq 1 "$runs"); do
    for row in "${rows[@]}"; do
        name="$row" recorder="$record"
        [[ $row == baseline ]] && name=glibc recorder="$baseline"
        bare=$(loop_ns "" "$name")
        traced=$(loop_ns "$recorder" "$name")
        cp "$out/$name.log" "$out/$row.last.log"
        echo "$row $bare $traced" >>"$results"
    done
    echo "round $round done"
done

python3 - "$results" "$pairs" "$out" <<'EOF'
import re, statistics, sys
results, pairs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = {}
for line in open(results):
    name, bare, traced = line.split()
    bare, traced = int(bare), int(traced)
    rows.setdefault(name, []).append(((traced - bare) / pairs, bare / pairs))
glibc = statistics.median(a for a, _ in rows["glibc"])
print(f"{'allocator':<18} {'added ns/pair':>14} {'spread':>15} {'vs glibc':>9} {'bare ns/pair':>13}  events / lost; hot probes that single-step")
for name, values in rows.items():
    added = [a for a, _ in values]
    median = statistics.median(added)
    bare = statistics.median(b for _, b in values)
    log = open(f"{out}/{name}.last.log").read()
    m = re.search(r"(\d+) events .*?, (\d+) lost", log)
    events = f"{m.group(1)} / {m.group(2)}" if m else "?"
    steps = re.search(r"single-steps.*?\): (.*)", log)
    label = "glibc (baseline)" if name == "baseline" else name
    stepping = steps.group(1).split(", ") if steps else []
    hot = ", ".join(p.split(" (")[0] for p in stepping[:3]) + (", ..." if len(stepping) > 3 else "")
    print(f"{label:<18} {median:>14.0f} {min(added):>7.0f}-{max(added):<7.0f} {median / glibc:>8.2f}x {bare:>13.1f}  {events}; {len(stepping)} {hot}")
EOF
