//! Stacks from the unwind tables (`UNWIND_TABLES` = 1): the program walks the user stack itself.
//!
//! From the return probe's registers (ip, sp, rbp), one `bpf_loop` iteration per frame
//! (`step`): binary search of `UNWIND_MAPPINGS` for the module, of its rows in `UNWIND_ROWS` for
//! the CFA rule (rows derived from the module's DWARF CFI by user space; `tables`), then the
//! return address at CFA - 8 and the saved rbp. The frames are hashed and stored once in
//! `DWARF_STACKS`; the event carries the hash. The stack is copied in windows (few user reads;
//! `window`), rows are cached per CPU by return address, and a finished walk is remembered by
//! its starting registers (`WALK_MEMO`, `memo`): when a walk from the same registers finds the
//! same values in the stack words the remembered one read, its stack is reused without
//! walking. Per-CPU walk state is taken by compare-and-swap (`WALK_CLAIMS`): on a fully
//! preemptible kernel another thread's probe can run on this CPU in the middle of a walk.
//!
//! Owns: the walk state maps (`UNWIND_SCRATCH`, `UNWIND_WINDOW`, `WALK_CLAIMS`, `WALK_MEMO`,
//! `KNOWN_STACKS`) and `DWARF_STACKS`. Must not: use a level's state without claiming it, or
//! store a stack twice when it can tell (the recorder reads and deletes each one).

pub mod memo;
pub mod step;
pub mod tables;
pub mod window;

use aya_ebpf::{
    bindings::BPF_NOEXIST, helpers::bpf_get_current_pid_tgid, programs::RetProbeContext,
};
use memtrail_ebpf_abi::{DwarfStack, UNWIND_MAX_FRAMES};
use memtrail_ebpf_arith::{known_stack_slot, stack_hash, walk_memo_slot};

use self::{
    memo::{TRAIL_OFF, WALK_MEMO_ENTRIES, recall_walk},
    step::unwind_step,
    window::StackReader,
};
use crate::{
    access::{MapPtr, global, lookup_u32, run_loop, user_regs},
    maps::{
        DWARF_STACKS, FIRST_TGID, KNOWN_STACKS, PENDING_PROCESSES, UNWIND_SCRATCH, UNWIND_SLOTS,
        UNWIND_STATE, UNWIND_WINDOW, WALK_CLAIMS, WALK_MEMO,
    },
};

/// Per-CPU sets of walk state (window, scratch stack): a walk takes the first free level.
/// Programs here run with migration disabled but, on a fully preemptible kernel, another
/// thread's probe can run on the same CPU in the middle of a walk; it then takes level 1
/// instead of overwriting the first walk's window. A third nested walk gets no stack (counted).
pub const WALK_LEVELS: u32 = 2;

/// Entries of the per-CPU cache of stack hashes already stored in `DWARF_STACKS`.
pub const KNOWN_STACKS_ENTRIES: u32 = 4096;

/// Where the walk is: the registers of the frame being unwound, and where it writes.
#[repr(C)]
pub struct UnwindCursor<'a> {
    ip: u64,
    sp: u64,
    bp: u64,
    stack: &'a mut DwarfStack,
    reader: StackReader<'a>,
    /// `UNWIND_STATE`'s generation when the walk began (see `tables::RowCacheEntry`).
    generation: u32,
    /// The unwinder slot of the current process (whose mapping list is searched).
    slot: u32,
    /// The walk's level (see [`claim_walk_level`]); only level 0 uses the per-CPU caches.
    level: u32,
}

/// Takes the first free walk level of this CPU; `release_walk_level` gives it back.
#[inline(always)]
fn claim_walk_level() -> Option<(u32, MapPtr<u64>)> {
    for level in 0..WALK_LEVELS {
        let claim = MapPtr::per_cpu(&WALK_CLAIMS, level)?;
        if claim.compare_exchange(0, 1) {
            return Some((level, claim));
        }
    }
    None
}

#[inline(always)]
fn release_walk_level(claim: MapPtr<u64>) {
    claim.write_volatile(0);
}

/// Unwinds the user stack from the return probe's registers with the loaded tables, stores
/// it in `DWARF_STACKS` (once per distinct stack) and returns its key.
/// The unwinder slot of the current process: 0 for the first traced process (no lookup: the
/// single-process case pays nothing), else its entry of `UNWIND_SLOTS`. A process still
/// pending (a vfork child before its exec, running in its parent's address space) uses its
/// parent's.
#[inline(always)]
fn process_slot() -> Option<u32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let first = global(&FIRST_TGID);
    if tgid == first {
        return Some(0);
    }
    if let Some(slot) = lookup_u32(&UNWIND_SLOTS, tgid) {
        return Some(slot);
    }
    let parent = lookup_u32(&PENDING_PROCESSES, tgid)?;
    if parent == first {
        return Some(0);
    }
    lookup_u32(&UNWIND_SLOTS, parent)
}

#[inline(always)]
pub fn unwind_with_tables(ctx: &RetProbeContext) -> Option<u64> {
    let (level, claim) = claim_walk_level()?;
    let key = walk_stack(ctx, level);
    release_walk_level(claim);
    key
}

/// [`unwind_with_tables`] with this CPU's walk state of `level`, which the caller holds.
#[inline(always)]
fn walk_stack(ctx: &RetProbeContext, level: u32) -> Option<u64> {
    let regs = user_regs(ctx);
    let (ip, sp, bp) = (regs.rip, regs.rsp, regs.rbp);
    let stack = MapPtr::per_cpu(&UNWIND_SCRATCH, level)?;
    let window = MapPtr::per_cpu(&UNWIND_WINDOW, level)?;
    let slot = process_slot()?;
    let generation = *UNWIND_STATE.get(2 * slot + 1)?;
    // SAFETY: this CPU's entries of the walk state at `level`, which the caller claimed in
    // `WALK_CLAIMS`: a walk preempting this one on this CPU takes another level (or none), walks
    // on other CPUs have their own entries, and nothing else uses these maps (the bench mode's
    // `read_stack_only` uses `UNWIND_WINDOW` only when no walk runs).
    let (stack, window) = unsafe { (stack.as_exclusive(), window.as_exclusive()) };
    // Nothing copied yet: the first read fills the window.
    window.len = 0;
    let mut memo = None;
    if level == 0
        && let Some(entry) =
            MapPtr::per_cpu(&WALK_MEMO, walk_memo_slot(ip, sp, bp, WALK_MEMO_ENTRIES))
    {
        // SAFETY: `WALK_MEMO` is used by level-0 walks only, and this CPU's level 0 is this
        // walk's (see above); per-CPU, so no other CPU's walk uses the entry.
        let entry = unsafe { entry.as_exclusive() };
        if let Some(hash) = recall_walk(entry, window, ip, sp, bp, generation) {
            return Some(hash);
        }
        // Rewritten by this walk (emptied until it is complete).
        entry.ip = 0;
        memo = Some(entry);
    }
    let trail = if memo.is_none() { TRAIL_OFF } else { 0 };
    stack.depth = 0;
    stack.flags = 0;
    let mut cursor = UnwindCursor {
        ip,
        sp,
        bp,
        stack,
        reader: StackReader {
            window,
            memo,
            trail,
            reach: 0,
        },
        generation,
        slot,
        level,
    };
    run_loop(UNWIND_MAX_FRAMES as u32 + 1, unwind_step, &mut cursor);
    let stack = &*cursor.stack;
    let hash = stack_hash(&stack.frames, stack.depth as usize, stack.flags);
    // Stored before (by this CPU): nothing to do. Otherwise look, and store it if missing.
    let known = MapPtr::per_cpu(&KNOWN_STACKS, known_stack_slot(hash, KNOWN_STACKS_ENTRIES))?;
    if known.read() != hash {
        if DWARF_STACKS.get_ptr(&hash).is_none() {
            // BPF_NOEXIST: another CPU may have stored the same stack meanwhile; that is fine.
            if let Err(error) = DWARF_STACKS.insert(&hash, stack, BPF_NOEXIST as u64)
                && error != -17
            {
                return None;
            }
        }
        known.write(hash);
    }
    cursor.reader.record_walk(ip, sp, bp, hash, generation);
    Some(hash)
}
