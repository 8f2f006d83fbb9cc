#!/usr/bin/env bash
# The main job end to end on a bundled sample: build memtrail, build the classic Fibonacci
# leak (samples/fibonacci.c), record it with memtrail-record (eBPF: needs root, or sudo),
# print the leak report, write the flame graph of unfreed bytes and the HTML report, then
# record the fixed version (samples/fibonacci_fixed.c) and show the diff of the two traces.
#
# Usage: samples/demo.sh [OUTPUT_DIR]   (default: ./memtrail-demo)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
out="${1:-memtrail-demo}"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "demo: recording needs root (eBPF); run as root or install sudo" >&2; exit 1; }
    as_root=(sudo)
fi

echo "==> building memtrail-record and memtrail (first build takes a few minutes)"
cargo build --manifest-path "$repo/Cargo.toml" -q -p memtrail-record -p memtrail
target_dir="$(cargo metadata --manifest-path "$repo/Cargo.toml" --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
record="$target_dir/debug/memtrail-record"
memtrail="$target_dir/debug/memtrail"

# Both builds are named `fibonacci` (in their own directories) so the diff matches their
# stacks by function and module name, as it would for two builds of one service.
mkdir -p "$out/leaking" "$out/fixed"
echo "==> building the sample: a worker thread that leaks a calloc'd buffer per Fibonacci step"
gcc -O1 -g -fno-omit-frame-pointer -pthread "$repo/samples/fibonacci.c" -o "$out/leaking/fibonacci"
gcc -O1 -g -fno-omit-frame-pointer -pthread "$repo/samples/fibonacci_fixed.c" -o "$out/fixed/fibonacci"

record_sample() { # record_sample BINARY TRACE
    "${as_root[@]}" "$record" -o "$2" -- "$1"
    [[ ${#as_root[@]} -eq 0 ]] || "${as_root[@]}" chown "$(id -u):$(id -g)" "$2"
}

echo "==> recording it (a few seconds)"
record_sample "$out/leaking/fibonacci" "$out/fibonacci.trace"

echo "==> memtrail leaks"
"$memtrail" leaks "$out/fibonacci.trace" --top 5

echo "==> memtrail flamegraph and memtrail report"
"$memtrail" flamegraph "$out/fibonacci.trace" -o "$out/fibonacci-unfreed.svg"
"$memtrail" report "$out/fibonacci.trace" -o "$out/fibonacci-report.html"

echo "==> recording the fixed version (child frees each buffer)"
record_sample "$out/fixed/fibonacci" "$out/fibonacci-fixed.trace"

echo "==> memtrail diff: the leaking build against the fixed one"
"$memtrail" diff "$out/fibonacci.trace" "$out/fibonacci-fixed.trace" --top 5 \
    --flamegraph "$out/fibonacci-diff.svg"
"$memtrail" report "$out/fibonacci.trace" "$out/fibonacci-fixed.trace" -o "$out/fibonacci-diff.html"

echo
echo "traces:      $out/fibonacci.trace (leaking), $out/fibonacci-fixed.trace (fixed)"
echo "flame graph: $out/fibonacci-unfreed.svg (open it in a browser)"
echo "report:      $out/fibonacci-report.html (one self-contained page)"
echo "diff:        $out/fibonacci-diff.svg, $out/fibonacci-diff.html"
