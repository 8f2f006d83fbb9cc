#!/usr/bin/env bash
# Builds memtrail's eBPF object reproducibly and installs it as recorder-ebpf/memtrail.bpf.o
# (the file the recorder embeds; it is committed so that `cargo build` needs no eBPF toolchain).
#
# Needs Debian's rustc-web toolchain with the prebuilt bpfel-unknown-none core library and
# bpf-linker 0.13.0 linked against LLVM 22 (see README / .ci/run):
#   apt-get install -y rustc-web cargo-web libstd-rust-web-dev-bpf rust-web-src llvm-22-dev
#   LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@0.13.0 --locked \
#       --no-default-features --features llvm-22
#
# Usage: recorder-ebpf/build.sh [OUTPUT]   (default: recorder-ebpf/memtrail.bpf.o)
# Env:   MEMTRAIL_EBPF_TARGET_DIR  cargo target dir (default: a fresh temporary directory)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
program="$here/program"
output="${1:-$here/memtrail.bpf.o}"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

# Debian's toolchain first: the rustup proxies in ~/.cargo/bin cannot build for BPF.
# bpf-linker is looked up in cargo's bin dir after /usr/bin.
export PATH="/usr/bin:/bin:$cargo_home/bin"
export RUSTC=/usr/bin/rustc
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTDOCFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
# aya-ebpf uses #![feature(asm_experimental_arch)].
export RUSTC_BOOTSTRAP=1
# The pt_regs layout the program reads (x86-64); fixed, not taken from the build host.
export AYA_BPF_TARGET_ARCH=x86_64
export SOURCE_DATE_EPOCH=0

for tool in /usr/bin/cargo /usr/bin/rustc; do
    [[ -x $tool ]] || { echo "build.sh: $tool missing (apt-get install rustc-web cargo-web libstd-rust-web-dev-bpf)" >&2; exit 1; }
done
command -v bpf-linker >/dev/null || { echo "build.sh: bpf-linker not found in $cargo_home/bin (cargo install bpf-linker@0.13.0 ...)" >&2; exit 1; }

if [[ -n ${MEMTRAIL_EBPF_TARGET_DIR:-} ]]; then
    target_dir="$MEMTRAIL_EBPF_TARGET_DIR"
else
    target_dir="$(mktemp -d)"
    trap 'rm -rf "$target_dir"' EXIT
fi

# Everything that could leak a machine-specific path into the object is remapped, so the bytes
# depend only on the sources, Cargo.lock and the toolchain versions. RUSTFLAGS replaces the
# rustflags of .cargo/config.toml, so they are all given here.
rustflags=(
    -C debuginfo=2
    -C link-arg=--btf
    "--remap-path-prefix=$here=/memtrail/recorder-ebpf"
    "--remap-path-prefix=$cargo_home=/cargo"
    "--remap-path-prefix=$target_dir=/target"
)
export RUSTFLAGS="${rustflags[*]}"

cd "$program"
/usr/bin/cargo build --release --locked --ignore-rust-version --target bpfel-unknown-none \
    --target-dir "$target_dir"
install -m 0644 "$target_dir/bpfel-unknown-none/release/memtrail" "$output"
echo "build.sh: wrote $output ($(stat -c %s "$output") bytes, sha256 $(sha256sum "$output" | cut -c1-16))" >&2
