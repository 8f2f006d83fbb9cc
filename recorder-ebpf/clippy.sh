#!/usr/bin/env bash
# Lints memtrail's eBPF program (recorder-ebpf/program) and the arithmetic crate compiled into it
# (recorder-ebpf/arith) for bpfel-unknown-none, as build.sh compiles them (release profile), with
# warnings as errors. Run by .ci/run.
#
# Needs Debian's clippy for the rustc-web toolchain that builds the object:
#   apt-get install -y rust-web-clippy
# The rustup clippy cannot check the BPF target (its toolchains have no core library for it), and
# Debian's bookworm `rust-clippy` is for the older rustc. arith's host-only code (its #[cfg(test)]
# tests) is linted separately, with the stable clippy (see .ci/run).
#
# Usage: recorder-ebpf/clippy.sh
# Env:   MEMTRAIL_EBPF_TARGET_DIR  cargo target dir (default: $TMPDIR/memtrail-ebpf-clippy, kept
#        between runs: the first run builds aya-ebpf's proc-macro dependencies, ~3 min on 2 cores)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

# Debian's toolchain first, as in build.sh.
export PATH="/usr/bin:/bin:$cargo_home/bin"
export RUSTC=/usr/bin/rustc
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
# aya-ebpf uses #![feature(asm_experimental_arch)]; the program uses core_intrinsics.
export RUSTC_BOOTSTRAP=1
export AYA_BPF_TARGET_ARCH=x86_64

for tool in /usr/bin/cargo /usr/bin/cargo-clippy; do
    [[ -x $tool ]] || { echo "clippy.sh: $tool missing (apt-get install cargo-web rust-web-clippy)" >&2; exit 1; }
done
target_dir="${MEMTRAIL_EBPF_TARGET_DIR:-${TMPDIR:-/tmp}/memtrail-ebpf-clippy}"

/usr/bin/cargo clippy --manifest-path "$here/Cargo.toml" --workspace --release --locked \
    --ignore-rust-version --target bpfel-unknown-none --target-dir "$target_dir" -- -D warnings
