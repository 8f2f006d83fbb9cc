#!/usr/bin/env bash
# Trace format size and speed on the synthetic malloc-heavy stream (5 M allocations, 4.95 M
# frees, ~8,000 stacks), written with both DEFLATE backends flate2 offers (the reader inflates
# with fdeflate either way). Prints bytes per event and encode/decode events per second (CPU
# time of the measuring thread, so a busy machine skews it less), the ratio to a plain
# row-oriented bincode + DEFLATE baseline measured in the same run, a decode-speed verdict,
# and the reader's inflater against flate2's on the same frames. Usage: bench/format.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== zlib-rs backend (the default)"
cargo bench -q -p memtrail-format --bench trace_size -- "$@"
echo
echo "== miniz_oxide backend"
cargo bench -q -p memtrail-format --no-default-features --features miniz --bench trace_size -- "$@"
