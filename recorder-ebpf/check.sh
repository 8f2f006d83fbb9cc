#!/usr/bin/env bash
# Rebuilds the eBPF object from source (build.sh, same toolchain) into a temporary file and
# fails if it differs from the committed recorder-ebpf/memtrail.bpf.o. Run by .ci/run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
committed="$here/memtrail.bpf.o"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

"$here/build.sh" "$scratch/memtrail.bpf.o"
if ! cmp -s "$committed" "$scratch/memtrail.bpf.o"; then
    echo "check.sh: FAIL: recorder-ebpf/memtrail.bpf.o is not what its sources build." >&2
    echo "  committed: $(sha256sum "$committed" | cut -d' ' -f1) ($(stat -c %s "$committed") bytes)" >&2
    echo "  rebuilt:   $(sha256sum "$scratch/memtrail.bpf.o" | cut -d' ' -f1) ($(stat -c %s "$scratch/memtrail.bpf.o") bytes)" >&2
    echo "  Run recorder-ebpf/build.sh and commit memtrail.bpf.o with the source change" >&2
    echo "  (or check the toolchain: /usr/bin/rustc $(/usr/bin/rustc --version 2>/dev/null | cut -d' ' -f2), bpf-linker $(bpf-linker --version 2>/dev/null | cut -d' ' -f2))." >&2
    exit 1
fi
echo "check.sh: OK: committed eBPF object matches its sources ($(sha256sum "$committed" | cut -c1-16))" >&2
