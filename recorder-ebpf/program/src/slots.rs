//! Per-thread pending-call slots: where an entry probe leaves what its return probe needs.
//!
//! A thread's slot is the entry of `THREAD_SLOTS` at its thread id modulo the array's size,
//! tagged with the thread id, and rewritten in place: an array entry costs a few instructions
//! where a hash lookup cost ~80 ns, and every pair of calls looks it up three times (entry,
//! return, free). The entry's owner word (thread id, plus a busy bit while a call is pending)
//! is taken with a compare-and-swap when idle, so two threads whose ids collide never write
//! the same entry: while one holds it busy, the other uses its slot in `PENDING_CALLS`, an LRU
//! hash keyed by `pid_tgid` (LRU so that exited threads' slots are recycled).
//!
//! Owns: finding, taking and writing a thread's slot. Must not: decide what a call means
//! (nesting, reporting: `calls`), or write a `THREAD_SLOTS` entry's fields other than the owner
//! word without holding it busy.

use memtrail_ebpf_abi::{OWNER_BUSY, PendingCall};

use crate::{
    access::{MapPtr, global},
    maps::{PENDING_CALLS, THREAD_SLOTS, THREAD_SLOTS_MASK},
};

/// A pending-call slot: an entry of `THREAD_SLOTS` or `PENDING_CALLS`.
pub type Slot = MapPtr<PendingCall>;

/// The fields of a call that its entry probe records (the slot's owner word aside).
#[derive(Clone, Copy)]
pub struct CallEntry {
    pub entry_sp: u64,
    pub size: u64,
    pub old_address: u64,
    pub result_slot: u64,
    pub api: u8,
}

/// The owner word of a thread whose call is pending.
#[inline(always)]
pub fn busy_owner(pid_tgid: u64) -> u64 {
    u64::from(pid_tgid as u32) | OWNER_BUSY
}

/// The owner word of a thread holding its slot idle.
#[inline(always)]
pub fn idle_owner(pid_tgid: u64) -> u64 {
    u64::from(pid_tgid as u32)
}

/// This thread's entry of `THREAD_SLOTS`, whoever owns it.
#[inline(always)]
pub fn array_slot(pid_tgid: u64) -> Option<Slot> {
    let mask = global(&THREAD_SLOTS_MASK);
    MapPtr::array(&THREAD_SLOTS, pid_tgid as u32 & mask)
}

/// This thread's slot in `PENDING_CALLS`, if it has one.
#[inline(always)]
pub fn hash_slot(pid_tgid: u64) -> Option<Slot> {
    MapPtr::lru_hash(&PENDING_CALLS, &pid_tgid)
}

/// This thread's pending-call slot, if it has one: its entry of `THREAD_SLOTS` when it owns
/// it (busy or idle), else its slot in `PENDING_CALLS`.
#[inline(always)]
pub fn own_slot(pid_tgid: u64) -> Option<Slot> {
    if let Some(slot) = array_slot(pid_tgid)
        && slot.owner() & !OWNER_BUSY == idle_owner(pid_tgid)
    {
        return Some(slot);
    }
    hash_slot(pid_tgid)
}

/// This thread's slot if it holds a pending call (its outermost allocator call running).
#[inline(always)]
pub fn busy_slot(pid_tgid: u64) -> Option<Slot> {
    let slot = own_slot(pid_tgid)?;
    (slot.owner() == busy_owner(pid_tgid)).then_some(slot)
}

/// Creates this thread's slot in `PENDING_CALLS` holding `call`, busy; false if the map is
/// full.
#[inline(always)]
pub fn insert_hash_slot(pid_tgid: u64, call: CallEntry) -> bool {
    let pending = PendingCall {
        entry_sp: call.entry_sp,
        size: call.size,
        old_address: call.old_address,
        result_slot: call.result_slot,
        api: call.api,
        tail_calls: 0,
        padding: 0,
        padding_wide: 0,
        owner: busy_owner(pid_tgid),
    };
    PENDING_CALLS.insert(&pid_tgid, &pending, 0).is_ok()
}

impl MapPtr<PendingCall> {
    #[inline(always)]
    fn owner_word(self) -> MapPtr<u64> {
        // SAFETY: the projection is to the `owner` field and does nothing else.
        unsafe { self.project(|call| &raw mut (*call).owner) }
    }

    #[inline(always)]
    fn tail_calls_field(self) -> MapPtr<u8> {
        // SAFETY: the projection is to the `tail_calls` field and does nothing else.
        unsafe { self.project(|call| &raw mut (*call).tail_calls) }
    }

    /// The owner word (shared with other threads for `THREAD_SLOTS` entries).
    #[inline(always)]
    pub fn owner(self) -> u64 {
        self.owner_word().read_volatile()
    }

    #[inline(always)]
    pub fn set_owner(self, owner: u64) {
        self.owner_word().write_volatile(owner)
    }

    /// Sets the owner word to `new` if it still is `current`.
    #[inline(always)]
    pub fn swap_owner(self, current: u64, new: u64) -> bool {
        self.owner_word().compare_exchange(current, new)
    }

    /// The stack pointer at the pending call's entry.
    #[inline(always)]
    pub fn entry_sp(self) -> u64 {
        // SAFETY: the projection is to the `entry_sp` field and does nothing else.
        unsafe { self.project(|call| &raw mut (*call).entry_sp) }.read()
    }

    /// Counts one more tail call into the pending call (saturating).
    #[inline(always)]
    pub fn add_tail_call(self) {
        let tail_calls = self.tail_calls_field();
        tail_calls.write(tail_calls.read().saturating_add(1));
    }

    #[inline(always)]
    pub fn set_tail_calls(self, tail_calls: u8) {
        self.tail_calls_field().write(tail_calls);
    }

    /// Writes `call` into the slot (whose owner word says this thread holds it busy) field by
    /// field: building a whole `PendingCall` compiles to a byte-loop `memset` for its zero
    /// fields.
    #[inline(always)]
    pub fn store(self, call: CallEntry) {
        // SAFETY: each projection is to the field it names and does nothing else.
        unsafe {
            self.project(|c| &raw mut (*c).entry_sp)
                .write_volatile(call.entry_sp);
            self.project(|c| &raw mut (*c).size)
                .write_volatile(call.size);
            self.project(|c| &raw mut (*c).old_address)
                .write_volatile(call.old_address);
            self.project(|c| &raw mut (*c).result_slot)
                .write_volatile(call.result_slot);
            self.project(|c| &raw mut (*c).api).write_volatile(call.api);
            self.project(|c| &raw mut (*c).tail_calls).write_volatile(0);
            self.project(|c| &raw mut (*c).padding).write_volatile(0);
            self.project(|c| &raw mut (*c).padding_wide)
                .write_volatile(0);
        }
    }
}
