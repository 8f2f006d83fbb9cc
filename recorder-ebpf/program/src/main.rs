//! memtrail's eBPF program: uprobes on the allocator functions of the traced processes, and
//! the kernel hooks that follow a process tree.
//!
//! Owns: turning allocator calls into `memtrail_ebpf_abi::Event`s in the ring buffer,
//! per-thread entry state, stack capture and loss counting. Must not: format anything, allocate
//! stack ids of its own, or drop an event silently (every event not delivered is counted in
//! `LOST_COUNTERS`). Layouts, names and constants come from `memtrail-ebpf-abi`; user space
//! sets the globals at load time. x86-64 only (reads `rsp` from `pt_regs`).
//!
//! This file lists the programs the recorder attaches (by the names in
//! `memtrail_ebpf_abi::program`), each a thin wrapper. The modules:
//! - `calls`: what each probed call means (entry and return halves, nesting, sampling
//!   decisions, releases, the stop at exit);
//! - `processes`: following a process tree (new processes, execs, exits; the stops);
//! - `slots`: per-thread pending-call slots;
//! - `sampling`: per-thread byte countdowns;
//! - `emit`: the ring buffer and the loss counters;
//! - `stacks`: which stack an event carries;
//! - `unwind`: the program's own stack walk with the unwind tables (`tables`, `window`, `memo`,
//!   `step`);
//! - `maps`: every map and load-time global;
//! - `access`: the safe wrappers around what Rust cannot check (helpers, map-value pointers,
//!   atomics, `bpf_loop`), nearly all of the program's `unsafe`;
//! - the crate `memtrail-ebpf-arith` (`recorder-ebpf/arith`): the plain integer arithmetic
//!   (sampler, hashes, window bounds), unit-tested on the host.
//!
//! Every function the programs call is `#[inline(always)]` (except the `bpf_loop` callback):
//! the module split changes no code the verifier sees.
#![no_std]
#![no_main]
// The BPF target declares no `core::sync::atomic` types; the compare-and-swap that hands over a
// thread slot is the intrinsic (BPF_CMPXCHG). The build already runs with RUSTC_BOOTSTRAP=1
// for aya-ebpf.
#![allow(internal_features)]
#![feature(core_intrinsics)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod access;
mod calls;
mod emit;
mod maps;
mod processes;
mod sampling;
mod slots;
mod stacks;
mod unwind;

use aya_ebpf::{
    macros::{raw_tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext},
};
use memtrail_ebpf_abi::{MAP_ANONYMOUS, alloc_api, free_api};
use memtrail_ebpf_arith::array_bytes;

/// Argument `n` of the probed function (0 if it cannot be read).
#[inline(always)]
fn arg(ctx: &ProbeContext, n: usize) -> u64 {
    ctx.arg::<u64>(n).unwrap_or(0)
}

#[uprobe]
pub fn malloc_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::MALLOC, arg(&ctx, 0), 0, 0)
}

#[uprobe]
pub fn calloc_entry(ctx: ProbeContext) -> u32 {
    let size = array_bytes(arg(&ctx, 0), arg(&ctx, 1));
    calls::enter(&ctx, alloc_api::CALLOC, size, 0, 0)
}

#[uprobe]
pub fn realloc_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::REALLOC, arg(&ctx, 1), arg(&ctx, 0), 0)
}

#[uprobe]
pub fn reallocarray_entry(ctx: ProbeContext) -> u32 {
    let size = array_bytes(arg(&ctx, 1), arg(&ctx, 2));
    calls::enter(&ctx, alloc_api::REALLOCARRAY, size, arg(&ctx, 0), 0)
}

#[uprobe]
pub fn posix_memalign_entry(ctx: ProbeContext) -> u32 {
    calls::enter(
        &ctx,
        alloc_api::POSIX_MEMALIGN,
        arg(&ctx, 2),
        0,
        arg(&ctx, 0),
    )
}

#[uprobe]
pub fn aligned_alloc_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::ALIGNED_ALLOC, arg(&ctx, 1), 0, 0)
}

#[uprobe]
pub fn memalign_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::MEMALIGN, arg(&ctx, 1), 0, 0)
}

#[uprobe]
pub fn valloc_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::VALLOC, arg(&ctx, 0), 0, 0)
}

#[uprobe]
pub fn pvalloc_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::PVALLOC, arg(&ctx, 0), 0, 0)
}

#[uprobe]
pub fn mmap_entry(ctx: ProbeContext) -> u32 {
    // File mappings still get a pending call, so their return is not counted as missing.
    let api = if arg(&ctx, 3) & MAP_ANONYMOUS == 0 {
        alloc_api::NOT_REPORTED
    } else {
        alloc_api::MMAP
    };
    calls::enter(&ctx, api, arg(&ctx, 1), 0, 0)
}

/// jemalloc's `mallocx(size, flags)` (and `je_`/`_rjem_` names).
#[uprobe]
pub fn mallocx_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::MALLOCX, arg(&ctx, 0), 0, 0)
}

/// jemalloc's `rallocx(ptr, size, flags)`: reported like realloc.
#[uprobe]
pub fn rallocx_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::RALLOCX, arg(&ctx, 1), arg(&ctx, 0), 0)
}

/// jemalloc's `xallocx(ptr, size, extra, flags)`: resizes in place and returns the new size
/// (see `calls::finish`).
#[uprobe]
pub fn xallocx_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::XALLOCX, arg(&ctx, 1), arg(&ctx, 0), 0)
}

/// C++ `operator new(size, ...)` as an allocator defines it.
#[uprobe]
pub fn operator_new_entry(ctx: ProbeContext) -> u32 {
    calls::enter(&ctx, alloc_api::OPERATOR_NEW, arg(&ctx, 0), 0, 0)
}

/// Return half of every allocation function.
#[uretprobe]
pub fn alloc_return(ctx: RetProbeContext) -> u32 {
    calls::finish(&ctx)
}

/// Attached at `free` + the offset user space decoded (past the NULL check), or at `free`.
#[uprobe]
pub fn free_entry(ctx: ProbeContext) -> u32 {
    calls::release(&ctx, free_api::FREE, arg(&ctx, 0), 0)
}

/// jemalloc's `sdallocx(ptr, size, flags)`, at the offset user space decoded.
#[uprobe]
pub fn sdallocx_entry(ctx: ProbeContext) -> u32 {
    calls::release(&ctx, free_api::SDALLOCX, arg(&ctx, 0), 0)
}

/// jemalloc's `dallocx(ptr, flags)`, at the offset user space decoded.
#[uprobe]
pub fn dallocx_entry(ctx: ProbeContext) -> u32 {
    calls::release(&ctx, free_api::DALLOCX, arg(&ctx, 0), 0)
}

/// C++ `operator delete(ptr, ...)` as an allocator defines it, at the decoded offset.
#[uprobe]
pub fn operator_delete_entry(ctx: ProbeContext) -> u32 {
    calls::release(&ctx, free_api::OPERATOR_DELETE, arg(&ctx, 0), 0)
}

#[uprobe]
pub fn munmap_entry(ctx: ProbeContext) -> u32 {
    calls::release(&ctx, free_api::MUNMAP, arg(&ctx, 0), arg(&ctx, 1))
}

/// Attached to libc's `exit` in launch mode: stops the process (SIGSTOP) so the recorder can
/// read its mappings before they are torn down; the recorder resumes it with SIGCONT.
#[uprobe]
pub fn exit_entry(_ctx: ProbeContext) -> u32 {
    calls::stop_at_exit()
}

/// Raw tracepoint `sched_process_fork` (parent, child): follows new processes of followed
/// ones (see `processes`).
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn process_fork(ctx: RawTracePointContext) -> i32 {
    processes::process_forked(ctx.arg::<u64>(1)) as i32
}

/// Return probe on libc's `_Fork`, in every process: stops a new followed process.
#[uretprobe]
pub fn fork_return(ctx: RetProbeContext) -> u32 {
    processes::fork_returned(ctx.ret())
}

/// Raw tracepoint `sched_process_exec`.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn process_exec(ctx: RawTracePointContext) -> i32 {
    processes::process_exec(ctx.arg::<u64>(2)) as i32
}

/// Raw tracepoint `sched_process_exit`.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn process_exit(_ctx: RawTracePointContext) -> i32 {
    processes::process_exit() as i32
}

/// Does nothing, on every entry attach point: the cost of the probes alone.
#[uprobe]
pub fn empty_entry(_ctx: ProbeContext) -> u32 {
    0
}

/// Does nothing, on every return attach point.
#[uretprobe]
pub fn empty_return(_ctx: RetProbeContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
