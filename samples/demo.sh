#!/usr/bin/env bash
# The main job end to end on a bundled sample: build memtrail, build the classic Fibonacci
# leak (samples/fibonacci.c), record it with memtrail-record (eBPF: needs root, or sudo),
# print the leak report and write the flame graph of unfreed bytes.
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

echo "==> building the sample: a worker thread that leaks a calloc'd buffer per Fibonacci step"
gcc -O1 -g -fno-omit-frame-pointer -pthread "$repo/samples/fibonacci.c" -o "$out/fibonacci"

echo "==> recording it (a few seconds)"
"${as_root[@]}" "$record" -o "$out/fibonacci.trace" -- "$out/fibonacci"
[[ ${#as_root[@]} -eq 0 ]] || "${as_root[@]}" chown "$(id -u):$(id -g)" "$out/fibonacci.trace"

echo "==> memtrail leaks"
"$memtrail" leaks "$out/fibonacci.trace" --top 5

echo "==> memtrail flamegraph"
"$memtrail" flamegraph "$out/fibonacci.trace" -o "$out/fibonacci-unfreed.svg"

echo
echo "trace:       $out/fibonacci.trace"
echo "flame graph: $out/fibonacci-unfreed.svg (open it in a browser)"
