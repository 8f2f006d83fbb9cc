//! The unwind tables user space loads: which row says how to unwind a return address.
//!
//! Owns: the binary searches of `UNWIND_MAPPINGS` (for the module) and of its rows in
//! `UNWIND_ROWS` (for the CFA rule), and the per-CPU `UNWIND_ROW_CACHE` in front of them. Must
//! not: write the tables (user space does), or use a cached row of another generation of the
//! mapping list.

use memtrail_ebpf_abi::{
    CFA_FRAME_POINTER, RBP_AT_CFA, UNWIND_MAPPING_SEARCH_STEPS, UNWIND_MAPPINGS_CAPACITY,
    UNWIND_PROCESS_SLOTS, UNWIND_ROW_SEARCH_STEPS, UnwindMapping, UnwindRow,
};
use memtrail_ebpf_arith::row_cache_slot;

use crate::{
    access::MapPtr,
    maps::{UNWIND_MAPPINGS, UNWIND_ROW_CACHE, UNWIND_ROWS, UNWIND_STATE},
};

/// Entries of the per-CPU row cache (a power of two).
pub const ROW_CACHE_ENTRIES: u32 = 1024;

/// A return address and the row that unwinds it, as found by the two binary searches
/// (about 20 dependent map reads for a large library): a program allocates from a few
/// hundred call sites over and over, so nearly every frame hits. Valid while the
/// generation user space bumps on every change of the mapping list is the same.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RowCacheEntry {
    ip: u64,
    generation: u32,
    row: UnwindRow,
}

/// The row for return address `ip` in the process of unwinder slot `slot`: from the cache, or
/// searched and then cached. `None` when `ip` is in no known executable mapping. Generations
/// are unique across slots, so a cached row never serves another process.
#[inline(always)]
pub fn row_for(ip: u64, generation: u32, slot: u32, level: u32) -> Option<UnwindRow> {
    if level != 0 {
        // A walk nested in another on this CPU: the cache is the outer walk's.
        return search_row(ip, slot);
    }
    let entry = MapPtr::per_cpu(&UNWIND_ROW_CACHE, row_cache_slot(ip, ROW_CACHE_ENTRIES))?;
    // SAFETY: each projection is to the field it names and does nothing else.
    let (cached_ip, cached_generation, cached_row) = unsafe {
        (
            entry.project(|e| &raw mut (*e).ip),
            entry.project(|e| &raw mut (*e).generation),
            entry.project(|e| &raw mut (*e).row),
        )
    };
    if cached_ip.read() == ip && cached_generation.read() == generation {
        return Some(cached_row.read());
    }
    let row = search_row(ip, slot)?;
    // `ip` cleared first and set last: the entry never pairs one address with another's row.
    cached_ip.write_volatile(0);
    cached_row.write_volatile(row);
    cached_generation.write_volatile(generation);
    cached_ip.write_volatile(ip);
    Some(row)
}

/// The row for return address `ip`, by binary search of the mappings and of the module's
/// rows. `None` when `ip` is in no known executable mapping.
#[inline(always)]
fn search_row(ip: u64, slot: u32) -> Option<UnwindRow> {
    let mapping = find_mapping(ip, slot)?;
    // Every ip here is a return address: the call instruction is the byte before, and its
    // row holds the state after the call (the return address may already be past the end
    // of the function for a call that does not return).
    let pc = ip.wrapping_sub(1).wrapping_sub(mapping.bias);
    // No table, or an address before the module's first row: the frame-pointer rule.
    Some(find_row(&mapping, pc).unwrap_or(UnwindRow {
        pc: 0,
        cfa_offset: 16,
        rbp_offset: -16,
        cfa_kind: CFA_FRAME_POINTER,
        rbp_kind: RBP_AT_CFA,
    }))
}

/// The executable mapping containing `ip`, by binary search over the sorted mappings of slot
/// `slot`.
#[inline(always)]
fn find_mapping(ip: u64, slot: u32) -> Option<UnwindMapping> {
    if slot >= UNWIND_PROCESS_SLOTS {
        return None;
    }
    let count = *UNWIND_STATE.get(2 * slot)?;
    if count == 0 || count > UNWIND_MAPPINGS_CAPACITY {
        return None;
    }
    // Largest index whose start <= ip.
    let mut base = slot * UNWIND_MAPPINGS_CAPACITY;
    let mut len = count;
    for _ in 0..UNWIND_MAPPING_SEARCH_STEPS + 1 {
        if len <= 1 {
            break;
        }
        let half = len / 2;
        let mid = base + half;
        if UNWIND_MAPPINGS.get(mid)?.start <= ip {
            base = mid;
        }
        len -= half;
    }
    let mapping = *UNWIND_MAPPINGS.get(base)?;
    (mapping.start <= ip && ip < mapping.end).then_some(mapping)
}

/// The row of `mapping`'s table covering module address `pc`.
#[inline(always)]
fn find_row(mapping: &UnwindMapping, pc: u64) -> Option<UnwindRow> {
    let mut base = mapping.rows_start;
    let mut len = mapping.rows_len;
    if len == 0 {
        return None;
    }
    for _ in 0..UNWIND_ROW_SEARCH_STEPS + 1 {
        if len <= 1 {
            break;
        }
        let half = len / 2;
        let mid = base + half;
        if u64::from(UNWIND_ROWS.get(mid)?.pc) <= pc {
            base = mid;
        }
        len -= half;
    }
    let row = *UNWIND_ROWS.get(base)?;
    (u64::from(row.pc) <= pc).then_some(row)
}
