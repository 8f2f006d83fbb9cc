//! Replay: allocation events in, in order, per-stack aggregates out.
//!
//! Owns the exact event semantics and the map of live blocks ([`LiveAllocations`]): which
//! address is live, what a realloc, a free or a munmap does to it. Memory is proportional to the
//! live blocks (plus the per-stack aggregates), never to the number of events. Must not read
//! files, resolve symbols, classify verdicts or format anything.
//!
//! Semantics:
//! - `realloc(old, new, size)`: `old == 0` is a plain allocation; `new == 0 && size > 0` failed,
//!   the old block stays live; `new == 0 && size == 0` frees the old block; otherwise the old
//!   block is freed and the new one allocated with the realloc's stack.
//! - A free of an address never seen live is an *unmatched free* (allocated before the recording
//!   started, or its allocation event was lost): counted, not an error. `free(NULL)` is a no-op.
//! - An allocation at an address that is still live means its free was missed: the old block
//!   is released at that moment and counted in `replaced_live`.
//! - mmap'd ranges live in their own map; a munmap releases exactly the overlapping bytes and
//!   splits a mapping it cuts in the middle. A mapping counts as freed once all its pieces went.
//!
//! Processes (format 1.1; the table is `processes.rs`): every event belongs to the process its
//! thread is bound to, and live blocks are keyed by (process, address): the process index
//! sits in the top 16 bits of the key (`address ^ index << 48`; user-space addresses are below
//! 2^48), so a live block costs what it did. A forked child starts with no live blocks (a
//! free of a block it inherited is an unmatched free). An exec drops its process's live
//! blocks: *released by exec*, neither freed nor unfreed. Each process has its own per-stack
//! aggregates and time axis (from when it started to be traced, or its latest exec, to its
//! exit) once the trace has a second process; the total's are kept beside them (their axis
//! starts at the first event, or at an exec while there is one process), so a single-process
//! trace's total is its process. Events of processes `--pid` leaves out are not replayed at
//! all.

use std::collections::BTreeMap;

use memtrail_format::{AllocApi, EndTotals, FreeApi, Record};

use crate::processes::{
    ExitStatus, PidFilter, ProcessFacts, ProcessLimits, ProcessTable, UnfollowedProcess,
};

use crate::aggregate::{
    Aggregates, GLOBAL_CURVE_BUCKETS, IntMap, STACK_CURVE_BUCKETS, StackRow, TimeAxis,
};
use crate::budget::{Budget, Exceeded, Kind, MemoryLimit, cost};

/// What to replay and what to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// The most memory the analysis may hold for what the trace declares (see [`crate::budget`]);
    /// the default is half of what this machine (or cgroup) has available.
    pub memory_limit: MemoryLimit,
    /// Stop the clock here: events after it are ignored, and "unfreed" means live at this time.
    pub at_ns: Option<u64>,
    /// Blocks younger than this at the end are not counted as unfreed (they may be freed soon).
    pub min_age_ns: u64,
    /// Keep one row per allocation for `export --what allocations` (memory grows with events).
    pub collect_allocations: bool,
    /// Replay only the events of these processes (`--pid`); all when empty.
    pub pids: PidFilter,
}

/// Where the process index sits in a live block's key (see the module docs).
const PROCESS_SHIFT: u32 = 48;

/// The live-block key of `address` in process `index`.
#[inline(always)]
fn block_key(address: u64, index: u32) -> u64 {
    address ^ (u64::from(index) << PROCESS_SHIFT)
}

/// The process index of a live-block key, for a trace of `processes` processes (a key of an
/// address at or above 2^48, which no user-space block has, may name another process or none:
/// it is then the trace's own process's).
#[inline]
fn key_process(key: u64, processes: usize) -> u32 {
    let index = (key >> PROCESS_SHIFT) as usize;
    if index < processes { index as u32 } else { 0 }
}

/// A live heap block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub size: u64,
    pub stack: u32,
    pub time: u64,
    pub api: AllocApi,
}

/// A live piece of a mapping. `split != 0` when a munmap cut the mapping in several pieces;
/// pieces of one mapping share the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    len: u64,
    stack: u32,
    time: u64,
    split: u64,
}

/// Live heap blocks by address: an open-addressing table with linear probing. A slot is 24
/// bytes: the address, the allocation time, and the stack, API and size packed in one word
/// (sizes that do not fit its 28 bits live in a side map, so every size stays exact), so a
/// lookup usually reads one cache line and a live block costs 32-64 bytes at rest.
/// Address 0 marks an empty slot (a zero address is never live). Deletion shifts the following
/// entries back, so there are no tombstones and probes stay short.
///
/// The table does not grow by itself: the replay asks [`HeapTable::needs_growth`] after an
/// insert and charges the bigger table to the memory budget before calling
/// [`HeapTable::grow`].
#[derive(Debug, Clone)]
struct HeapTable {
    slots: Box<[Slot]>,
    len: usize,
    /// log2 of the slot count.
    bits: u32,
    /// Sizes of at least `SIZE_IN_SIDE_MAP` bytes, by address (rare: 256 MiB and more).
    big_sizes: IntMap<u64, u64>,
}

/// One slot: `packed` is the stack (bits 0-31), the API (bits 32-35) and the size (bits 36-63,
/// `SIZE_IN_SIDE_MAP` meaning "in `big_sizes`").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    address: u64,
    time: u64,
    packed: u64,
}

const EMPTY_SLOT: Slot = Slot {
    address: 0,
    time: 0,
    packed: 0,
};
const API_SHIFT: u32 = 32;
const SIZE_SHIFT: u32 = 36;
/// The packed size that sends the lookup to `big_sizes`; smaller sizes are stored as they are.
const SIZE_IN_SIDE_MAP: u64 = (1 << (64 - SIZE_SHIFT)) - 1;
/// The table grows when more than 3/4 of its slots are used. Linear probing stays short up to
/// there (2.5 probes a hit, 8.5 a miss at the very worst, half that on average over a
/// doubling), and the blocks cost half of what a 1/2 maximum costs.
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;

impl Default for HeapTable {
    fn default() -> Self {
        HeapTable::with_bits(10)
    }
}

/// The slot an address starts probing from in a table of 2^`bits` slots. Fibonacci hashing:
/// the top bits of the address times 2^64 / phi spread aligned addresses (and runs of them)
/// evenly.
#[inline]
fn home_slot(address: u64, bits: u32) -> usize {
    (address.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
}

impl HeapTable {
    fn with_bits(bits: u32) -> HeapTable {
        HeapTable {
            slots: vec![EMPTY_SLOT; 1 << bits].into_boxed_slice(),
            len: 0,
            bits,
            big_sizes: IntMap::default(),
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn home(&self, address: u64) -> usize {
        home_slot(address, self.bits)
    }

    /// The slot holding `address`, or the empty slot where it would go.
    #[inline]
    fn slot(&self, address: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut i = self.home(address);
        loop {
            let k = self.slots[i].address;
            if k == address {
                return (i, true);
            }
            if k == 0 {
                return (i, false);
            }
            i = (i + 1) & mask;
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Bytes the table holds now.
    fn bytes(&self) -> u64 {
        self.bytes_with_slots(self.slots.len())
    }

    /// Bytes the table holds after the next [`HeapTable::grow`].
    fn grown_bytes(&self) -> u64 {
        self.bytes_with_slots(self.slots.len() * 2)
    }

    fn bytes_with_slots(&self, slots: usize) -> u64 {
        (slots * std::mem::size_of::<Slot>()) as u64 + self.big_sizes.capacity() as u64 * 24
    }

    /// The block in slot `s`.
    #[inline]
    fn unpack(&self, s: &Slot) -> Live {
        let mut size = s.packed >> SIZE_SHIFT;
        if size == SIZE_IN_SIDE_MAP {
            size = self.big_sizes.get(&s.address).copied().unwrap_or(size);
        }
        Live {
            size,
            stack: s.packed as u32,
            time: s.time,
            api: AllocApi::ALL[((s.packed >> API_SHIFT) & 0xf) as usize],
        }
    }

    /// The slot for `block` at `address`, its size put in `big_sizes` if it does not fit.
    #[inline]
    fn pack(&mut self, address: u64, block: Live) -> Slot {
        let size = if block.size >= SIZE_IN_SIDE_MAP {
            self.big_sizes.insert(address, block.size);
            SIZE_IN_SIDE_MAP
        } else {
            block.size
        };
        Slot {
            address,
            time: block.time,
            packed: u64::from(block.stack) | (block.api as u64) << API_SHIFT | size << SIZE_SHIFT,
        }
    }

    fn get(&self, address: u64) -> Option<Live> {
        if address == 0 {
            return None;
        }
        match self.slot(address) {
            (i, true) => Some(self.unpack(&self.slots[i])),
            _ => None,
        }
    }

    /// Inserts `address`; returns the block it replaced.
    #[inline]
    fn insert(&mut self, address: u64, block: Live) -> Option<Live> {
        debug_assert!(address != 0);
        let (i, found) = self.slot(address);
        let old = found.then(|| self.take_big(self.slots[i]));
        self.slots[i] = self.pack(address, block);
        if !found {
            self.len += 1;
        }
        old
    }

    /// The block of an occupied slot, its size taken out of `big_sizes`.
    #[inline]
    fn take_big(&mut self, s: Slot) -> Live {
        let mut live = self.unpack(&s);
        if s.packed >> SIZE_SHIFT == SIZE_IN_SIDE_MAP {
            live.size = self.big_sizes.remove(&s.address).unwrap_or(live.size);
        }
        live
    }

    /// True when the table holds more than its maximum load: grow it (or undo the insert).
    #[inline(always)]
    fn needs_growth(&self) -> bool {
        self.len * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM
    }

    /// Doubles the slots. The old table is released as soon as every entry moved.
    #[cold]
    fn grow(&mut self) {
        let bits = self.bits + 1;
        let mut slots = vec![EMPTY_SLOT; 1 << bits].into_boxed_slice();
        let mask = slots.len() - 1;
        for s in self.slots.iter().filter(|s| s.address != 0) {
            let mut i = home_slot(s.address, bits);
            while slots[i].address != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = *s;
        }
        self.slots = slots;
        self.bits = bits;
    }

    #[inline(always)]
    fn remove(&mut self, address: u64) -> Option<Live> {
        if address == 0 {
            return None;
        }
        let (mut i, found) = self.slot(address);
        if !found {
            return None;
        }
        let removed = self.take_big(self.slots[i]);
        let mask = self.mask();
        // Backward-shift deletion: pull back every following entry whose home is not in
        // (i, j], so that no probe sequence crosses an empty slot.
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j].address;
            if k == 0 {
                break;
            }
            let home = self.home(k);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
                self.slots[i] = self.slots[j];
                i = j;
            }
        }
        self.slots[i].address = 0;
        self.len -= 1;
        Some(removed)
    }

    fn iter(&self) -> impl Iterator<Item = (u64, Live)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.address != 0)
            .map(|s| (s.address, self.unpack(s)))
    }
}

/// Everything live: heap blocks by address, mapped ranges by start.
#[derive(Debug, Default)]
pub struct LiveAllocations {
    heap: HeapTable,
    maps: BTreeMap<u64, Piece>,
    /// Pieces left of each split mapping.
    splits: IntMap<u64, u32>,
    next_split: u64,
}

impl LiveAllocations {
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    pub fn get(&self, address: u64) -> Option<Live> {
        self.heap.get(address)
    }

    /// Live mapped ranges as (start, length, stack).
    pub fn mappings(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        self.maps.iter().map(|(&s, p)| (s, p.len, p.stack))
    }
}

/// An RSS sample of the traced process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RssSample {
    pub time_ns: u64,
    pub rss_bytes: u64,
    pub anon_bytes: u64,
}

/// Counts of everything that is not per stack.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    /// Calls per allocation API, indexed by `AllocApi as usize`.
    pub alloc_calls: [u64; AllocApi::ALL.len()],
    /// Calls per release API, indexed by `FreeApi as usize`.
    pub free_calls: [u64; FreeApi::ALL.len()],
    /// Allocations that returned NULL.
    pub failed_allocations: u64,
    /// reallocs that returned NULL with a size: the old block stayed live.
    pub failed_reallocs: u64,
    /// Frees (and reallocs) of addresses never seen allocated.
    pub unmatched_frees: u64,
    /// munmaps of ranges never seen mapped.
    pub unmatched_munmaps: u64,
    /// Allocations at an address still live: a free was missed (lost event).
    pub replaced_live: u64,
    /// Alloc, free and realloc records replayed.
    pub events: u64,
    /// Alloc, free and realloc records of processes not replayed (left out by `--pid`, or past
    /// the process limit).
    pub events_not_replayed: u64,
    /// Blocks (and bytes) still live when their process replaced its image: gone, not leaks.
    pub released_by_exec_blocks: u64,
    pub released_by_exec_bytes: u64,
    /// Records after `--at`, ignored.
    pub events_after_at: u64,
    pub lost_events: u64,
    pub lost_by_reason: BTreeMap<&'static str, u64>,
    pub rss: Vec<RssSample>,
    /// (time, exit code, signal)
    pub exit: Option<(u64, Option<i32>, Option<i32>)>,
    pub end: Option<(u64, EndTotals)>,
    /// Latest time of any record.
    pub last_time_ns: u64,
    /// Time of the first and last alloc, free or realloc replayed.
    pub first_event_ns: Option<u64>,
    pub last_event_ns: u64,
    /// A sum of sizes, counts or times from the trace reached 2^64 - 1 and stopped there
    /// (saturated) instead of wrapping: totals shown are lower bounds.
    pub saturated: bool,
}

/// One allocation, for `export --what allocations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRow {
    pub address: u64,
    pub size: u64,
    pub stack: u32,
    pub api: AllocApi,
    pub alloc_ns: u64,
    pub free_ns: Option<u64>,
}

/// The result of a replay.
#[derive(Debug, Clone)]
pub struct ReplayOutput {
    pub options: ReplayOptions,
    /// Length of the replayed window: the end record's time (or the last record's), capped at
    /// `--at`.
    pub duration_ns: u64,
    /// When the process was active: from its first event to its exit (or the end of the
    /// window). `--min-age` counts back from its end; the stack curves' axis (`axis`) ends
    /// there too and starts when the process started to be traced, or at its latest exec: a
    /// recording that goes on after the process exited, or starts before it allocates, does
    /// not flatten its curves.
    pub active_start_ns: u64,
    pub active_end_ns: u64,
    pub stats: ReplayStats,
    /// One row per stack that allocated or released anything, by stack id.
    pub rows: Vec<StackRow>,
    /// The axis of `StackRow::unfreed_over_time` (see `active_start_ns`).
    pub axis: TimeAxis,
    /// Highest live bytes (heap and mappings) per bucket of `heap_axis`.
    pub heap_curve: Vec<i64>,
    pub heap_axis: TimeAxis,
    pub peak_bytes: u64,
    pub peak_time_ns: u64,
    pub live_bytes: u64,
    pub live_allocations: u64,
    pub allocations: Option<Vec<AllocationRow>>,
    /// The processes replayed (one for a trace without process records), in order of
    /// appearance.
    pub processes: Vec<ProcessOutput>,
    /// Processes of the tree the recorder could not trace (at most `MAX_UNFOLLOWED`).
    pub unfollowed: Vec<UnfollowedProcess>,
    /// What the process table's caps left out.
    pub process_limits: ProcessLimits,
}

impl ReplayOutput {
    /// The replay of nothing (a process missing from one side of a comparison).
    pub fn empty() -> ReplayOutput {
        stack_output(
            ReplayOptions::default(),
            &Aggregates::default(),
            &IntMap::default(),
            0,
            (0, 0),
        )
    }
}

/// One process of the trace after the replay.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    pub facts: ProcessFacts,
    /// Alloc, free and realloc records of this process.
    pub events: u64,
    pub released_by_exec_blocks: u64,
    pub released_by_exec_bytes: u64,
    /// Its own stacks, curves and time axis (ending at its exit). `None` when it is the only
    /// process: the total is its replay.
    pub replay: Option<ReplayOutput>,
}

/// A process's own accumulators, kept once the trace has more than one process.
#[derive(Debug, Clone)]
struct ProcessReplay {
    /// Its stack curves' axis starts when it started to be traced, or at its latest exec
    /// (see [`Replay::start_axis`]).
    aggs: Aggregates,
    /// True once its axis started (at its first event or an exec).
    axis_started: bool,
    events: u64,
    first_event_ns: Option<u64>,
    last_event_ns: u64,
    released_by_exec_blocks: u64,
    released_by_exec_bytes: u64,
}

impl ProcessReplay {
    fn new() -> ProcessReplay {
        ProcessReplay {
            aggs: Aggregates::sparse(),
            axis_started: false,
            events: 0,
            first_event_ns: None,
            last_event_ns: 0,
            released_by_exec_blocks: 0,
            released_by_exec_bytes: 0,
        }
    }
}

/// The replay state machine. Feed it records in file order with [`Replay::record`] (or the event
/// methods directly), then call [`Replay::finish`].
///
/// Everything it holds in proportion to what the trace declares (live blocks, stacks,
/// mappings, RSS samples, allocation rows) is charged to its [`Budget`] before it grows. When
/// a charge is refused the replay stops growing (events that would need more memory are
/// dropped) and [`Replay::exceeded`] says why: the caller stops feeding it and reports the
/// error; the output of such a replay is meaningless.
#[derive(Debug)]
pub struct Replay {
    options: ReplayOptions,
    live: LiveAllocations,
    aggs: Aggregates,
    stats: ReplayStats,
    now: u64,
    rows: Option<Vec<AllocationRow>>,
    budget: Budget,
    processes: ProcessTable,
    /// True once the total's axis started: at the first event, or at an exec of the only
    /// process.
    axis_started: bool,
    /// Per process index, once there is more than one process; empty before.
    per_process: Vec<ProcessReplay>,
    /// The process of the latest event's thread, that thread (`u64::MAX`: none; the cache is
    /// cleared by every record that changes bindings), and whether it is replayed.
    current: u32,
    current_thread: u64,
    current_replayed: bool,
}

impl Default for Replay {
    fn default() -> Self {
        Replay::new(ReplayOptions::default())
    }
}

impl Replay {
    pub fn new(options: ReplayOptions) -> Replay {
        let mut r = Replay {
            options,
            live: LiveAllocations::default(),
            aggs: Aggregates::default(),
            stats: ReplayStats::default(),
            now: 0,
            rows: options.collect_allocations.then(Vec::new),
            budget: Budget::new(options.memory_limit),
            processes: ProcessTable::new(options.pids),
            axis_started: false,
            per_process: Vec::new(),
            current: 0,
            current_thread: u64::MAX,
            current_replayed: false,
        };
        r.charge_heap(0);
        r.allow_stacks();
        r.charge_processes();
        r
    }

    /// The trace's metadata: its PID is process index 0's.
    pub fn meta(&mut self, meta: &memtrail_format::TraceMeta) {
        self.processes.meta(meta);
        self.current_thread = u64::MAX;
    }

    pub fn processes(&self) -> &ProcessTable {
        &self.processes
    }

    /// Charges the process table and the per-process aggregates' fixed part; false when
    /// refused (the replay then stops at its next budget check).
    fn charge_processes(&mut self) -> bool {
        let n = self.processes.len() as u64;
        let bytes = self
            .processes
            .bytes()
            .saturating_add(self.per_process.len() as u64 * cost::PROCESS_AGGREGATES);
        self.budget.exceeded().is_none() && self.budget.set(Kind::Processes, n, bytes, 0)
    }

    /// Process `index` was added: from the second process on, every process has its own
    /// aggregates (the trace's own process's so far are the total's).
    fn added_process(&mut self, index: u32) {
        if self.per_process.is_empty() {
            let own = ProcessReplay {
                aggs: self.aggs.clone(),
                axis_started: self.axis_started,
                events: self.stats.events,
                first_event_ns: self.stats.first_event_ns,
                last_event_ns: self.stats.last_event_ns,
                released_by_exec_blocks: self.stats.released_by_exec_blocks,
                released_by_exec_bytes: self.stats.released_by_exec_bytes,
            };
            self.per_process.push(own);
        }
        while self.per_process.len() <= index as usize {
            self.per_process.push(ProcessReplay::new());
        }
        if self.charge_processes() {
            self.allow_stacks();
        }
    }

    /// Which process the event of `thread` belongs to; false (counted) when it is not replayed.
    #[inline(always)]
    fn enter(&mut self, thread: u32) -> bool {
        if u64::from(thread) != self.current_thread {
            self.current_thread = u64::from(thread);
            self.current = self.processes.of_thread(thread);
            self.current_replayed = self.processes.replayed(self.current);
        }
        if !self.current_replayed {
            self.stats.events_not_replayed += 1;
        }
        self.current_replayed
    }

    #[inline(always)]
    fn key(&self, address: u64) -> u64 {
        block_key(address, self.current)
    }

    /// The budget shared with the rest of the analysis (the symbol table charges it too).
    pub fn budget_mut(&mut self) -> &mut Budget {
        &mut self.budget
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Why the replay stopped growing, if it did (call [`Replay::check_budget`] first).
    pub fn exceeded(&self) -> Option<&Exceeded> {
        self.budget.exceeded()
    }

    /// Charges the live-block table at its current size, with `transient` bytes held for a
    /// moment beside it; false when refused.
    fn charge_heap(&mut self, transient: u64) -> bool {
        let h = &self.live.heap;
        self.budget
            .set(Kind::LiveBlocks, h.len() as u64, h.bytes(), transient)
    }

    /// Stacks held: the total's and every process's own.
    fn stack_count(&self) -> usize {
        self.aggs.stack_count()
            + self
                .per_process
                .iter()
                .map(|p| p.aggs.stack_count())
                .sum::<usize>()
    }

    /// Lets the aggregates create as many new stacks as the budget has room for, charging the
    /// ones created so far (stack creation itself is on the hot path: it only counts).
    fn allow_stacks(&mut self) {
        let n = self.stack_count() as u64;
        if self
            .budget
            .set(Kind::Stacks, n, n.saturating_mul(cost::STACK), 0)
        {
            let room = usize::try_from(self.budget.room() / cost::STACK).unwrap_or(usize::MAX);
            self.aggs.allow_stacks(room);
            for p in &mut self.per_process {
                p.aggs.allow_stacks(room);
            }
        }
    }

    /// Charges what grows without asking (new stacks only count on the hot path) and turns
    /// a refused stack into the budget's error; the caller calls it between batches of
    /// records, then [`Replay::exceeded`]. Cheap.
    #[inline]
    pub fn check_budget(&mut self) -> Option<&Exceeded> {
        if self.budget.exceeded().is_none() {
            if self.aggs.refused_stack() || self.per_process.iter().any(|p| p.aggs.refused_stack())
            {
                let n = self.stack_count() as u64 + 1;
                self.budget
                    .refuse(Kind::Stacks, n, n.saturating_mul(cost::STACK));
            } else if self.budget.count(Kind::Stacks) != self.stack_count() as u64 {
                self.allow_stacks();
            }
        }
        self.budget.exceeded()
    }

    /// The live-block table is over its load: grow it if the budget allows, else take the
    /// block just inserted out again (the replay is over budget and will be stopped).
    #[cold]
    #[inline(never)]
    fn grow_heap(&mut self, address: u64) {
        let h = &self.live.heap;
        let grown = h.grown_bytes();
        let old = h.bytes();
        let len = h.len() as u64;
        if self.budget.exceeded().is_none() && self.budget.set(Kind::LiveBlocks, len, grown, old) {
            self.live.heap.grow();
            self.allow_stacks();
        } else {
            self.live.heap.remove(address);
        }
    }

    pub fn live(&self) -> &LiveAllocations {
        &self.live
    }

    pub fn aggregates(&self) -> &Aggregates {
        &self.aggs
    }

    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// Applies one alloc, free or realloc record (any other record goes to [`Replay::record`]):
    /// the replay's hot path, the same as `record` for these.
    #[inline(always)]
    pub fn event(&mut self, record: &Record) {
        match *record {
            Record::Alloc {
                time,
                thread,
                address,
                size,
                stack,
                api,
            } => {
                if self.before_at(time) && self.enter(thread) {
                    self.alloc(time, address, size, stack, api)
                }
            }
            Record::Free {
                time,
                thread,
                address,
                size,
                api,
            } => {
                if self.before_at(time) && self.enter(thread) {
                    match api {
                        FreeApi::Munmap => self.munmap(time, address, (size > 0).then_some(size)),
                        free_like => self.free_as(time, address, free_like),
                    }
                }
            }
            Record::Realloc {
                time,
                thread,
                old_address,
                new_address,
                size,
                stack,
                api,
            } => {
                if self.before_at(time) && self.enter(thread) {
                    self.realloc(time, old_address, new_address, size, stack, api)
                }
            }
            _ => self.record(record),
        }
    }

    /// The clock bookkeeping `record` does first for a timed record; false (counted) when
    /// `time` is past `--at`.
    #[inline(always)]
    fn before_at(&mut self, time: u64) -> bool {
        self.stats.last_time_ns = self.stats.last_time_ns.max(time);
        if self.options.at_ns.is_some_and(|at| time > at) {
            self.stats.events_after_at += 1;
            return false;
        }
        true
    }

    /// Applies one record. Records without a time (metadata, strings, stacks, symbols) are
    /// ignored here, but for Thread records: they belong to the symbol table. Events go
    /// through [`Replay::event`].
    pub fn record(&mut self, record: &Record) {
        if record.is_event() {
            return self.event(record);
        }
        if let Record::Thread { thread, pid } = *record {
            self.current_thread = u64::MAX;
            if let Some(index) = self.processes.thread(thread, pid, self.now) {
                self.added_process(index);
            } else if self.processes.len() == 1 {
                self.charge_processes();
            }
            return;
        }
        let Some(time) = record.time() else { return };
        if let Record::End { time, totals } = record {
            self.stats.last_time_ns = self.stats.last_time_ns.max(*time);
            self.stats.end = Some((*time, *totals));
            return;
        }
        if !self.before_at(time) {
            return;
        }
        match *record {
            Record::Lost { count, reason, .. } => {
                let (total, o1) = self.stats.lost_events.overflowing_add(count);
                let by_reason = self.stats.lost_by_reason.entry(reason.name()).or_default();
                let (n, o2) = by_reason.overflowing_add(count);
                *by_reason = if o2 { u64::MAX } else { n };
                self.stats.lost_events = if o1 { u64::MAX } else { total };
                self.stats.saturated |= o1 || o2;
            }
            Record::Rss {
                time,
                rss_bytes,
                anon_bytes,
            } => {
                let rss = &self.stats.rss;
                if rss.len() == rss.capacity() {
                    let (len, cap) = (rss.len() as u64, rss.capacity() as u64);
                    let grown = (cap * 2).max(4) * cost::RSS_SAMPLE;
                    if !self
                        .budget
                        .set(Kind::RssSamples, len + 1, grown, cap * cost::RSS_SAMPLE)
                    {
                        return;
                    }
                    self.allow_stacks();
                }
                self.stats.rss.push(RssSample {
                    time_ns: time,
                    rss_bytes,
                    anon_bytes,
                })
            }
            Record::Exit { time, code, signal } => {
                self.stats.exit = Some((time, code, signal));
                self.processes.root_exit(ExitStatus {
                    time_ns: time,
                    code,
                    signal,
                });
            }
            Record::Process(ref p) => {
                self.current_thread = u64::MAX;
                if let Some(index) = self.processes.process(p) {
                    self.added_process(index);
                }
            }
            Record::Exec {
                time,
                pid,
                ref command_line,
            } => {
                if let Some(index) = self.processes.exec(pid, command_line)
                    && self.processes.replayed(index)
                {
                    self.release_by_exec(index, time);
                }
            }
            Record::ProcessExit {
                time,
                pid,
                code,
                signal,
            } => self.processes.exit(
                pid,
                ExitStatus {
                    time_ns: time,
                    code,
                    signal,
                },
            ),
            Record::Unfollowed {
                time,
                pid,
                parent_pid,
                ref reason,
            } => {
                self.processes
                    .unfollowed_process(pid, parent_pid, reason, time);
                self.charge_processes();
            }
            _ => {}
        }
    }

    /// Process `index` replaced its image at `time`: its live blocks and mappings are gone,
    /// released by the exec (neither freed nor unfreed). Finding them scans the live-block
    /// table, so a process with nothing live is skipped.
    fn release_by_exec(&mut self, index: u32, time: u64) {
        let now = self.now.max(time);
        self.release_live_by_exec(index, now);
        // The new image is judged on an axis of its own, from the exec on (its
        // predecessor's stacks have nothing live left to judge). The total's axis is the
        // process's while it is the only one.
        if let Some(p) = self.per_process.get_mut(index as usize) {
            p.axis_started = true;
            p.aggs.restart_axis(now);
        } else if self.per_process.is_empty() {
            self.axis_started = true;
            self.aggs.restart_axis(now);
        }
    }

    /// Releases the live blocks and mappings of process `index` at `now` (its exec).
    fn release_live_by_exec(&mut self, index: u32, now: u64) {
        if let Some(p) = self.per_process.get(index as usize)
            && p.aggs.live_allocations == 0
            && p.aggs.live_bytes == 0
        {
            return;
        }
        let saved = self.current;
        self.current = index;
        let band = u64::from(index);
        let keys: Vec<u64> = self
            .live
            .heap
            .iter()
            .filter(|(key, _)| key >> PROCESS_SHIFT == band)
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            if let Some(block) = self.live.heap.remove(key) {
                self.discard(now, block.stack, block.size, true);
            }
        }
        let low = band << PROCESS_SHIFT;
        let high = low | ((1 << PROCESS_SHIFT) - 1);
        let starts: Vec<u64> = self.live.maps.range(low..=high).map(|(&s, _)| s).collect();
        for start in starts {
            let Some(p) = self.live.maps.remove(&start) else {
                continue;
            };
            let whole = self.last_piece(p.split);
            self.discard(now, p.stack, p.len, whole);
        }
        self.current = saved;
    }

    /// True when a piece of split mapping `split` (0: not split) is the last one left; counts
    /// the piece as gone.
    fn last_piece(&mut self, split: u64) -> bool {
        if split == 0 {
            return true;
        }
        let n = self.live.splits.entry(split).or_insert(1);
        *n = n.saturating_sub(1);
        let gone = *n == 0;
        if gone {
            self.live.splits.remove(&split);
        }
        gone
    }

    /// A live block of the current process was released by an exec.
    fn discard(&mut self, now: u64, stack: u32, size: u64, whole: bool) {
        self.aggs.discard(now, stack, size, whole);
        let blocks = u64::from(whole);
        let s = &mut self.stats;
        s.released_by_exec_blocks += blocks;
        s.released_by_exec_bytes = s.released_by_exec_bytes.saturating_add(size);
        if let Some(p) = self.per_process.get_mut(self.current as usize) {
            p.aggs.discard(now, stack, size, whole);
            p.released_by_exec_blocks += blocks;
            p.released_by_exec_bytes = p.released_by_exec_bytes.saturating_add(size);
        }
    }

    #[inline]
    fn tick(&mut self, time: u64) -> u64 {
        // Events from several CPUs can be a little out of order; the clock never goes back.
        self.now = self.now.max(time);
        self.stats.last_time_ns = self.stats.last_time_ns.max(time);
        self.stats.last_event_ns = self.now;
        self.stats.first_event_ns.get_or_insert(self.now);
        if !self.axis_started {
            self.axis_started = true;
            self.aggs.restart_axis(self.now);
        }
        if let Some(p) = self.per_process.get_mut(self.current as usize) {
            p.events += 1;
            p.last_event_ns = self.now;
            p.first_event_ns.get_or_insert(self.now);
            if !p.axis_started {
                self.start_axis(self.current, self.now);
            }
        }
        self.now
    }

    /// Process `index`'s first event: its stack curves' axis starts here, or when its
    /// Process record says it started to be traced if that is later. (A v1.0 trace's
    /// process, and the first process of a trace, start at their first event, as the
    /// total's axis does.)
    #[cold]
    fn start_axis(&mut self, index: u32, first_event_ns: u64) {
        let declared = self
            .processes
            .facts()
            .get(index as usize)
            .map_or(0, |f| f.start_ns);
        if let Some(p) = self.per_process.get_mut(index as usize) {
            p.axis_started = true;
            p.aggs.restart_axis(first_event_ns.max(declared));
        }
    }

    /// A block of the current process was allocated: the total's and its own accumulators.
    #[inline(always)]
    fn count_alloc(&mut self, now: u64, stack: u32, size: u64) {
        self.aggs.alloc(now, stack, size);
        if let Some(p) = self.per_process.get_mut(self.current as usize) {
            p.aggs.alloc(now, stack, size);
        }
    }

    /// An allocation call returned `address` (0: it failed).
    #[inline]
    pub fn alloc(&mut self, time: u64, address: u64, size: u64, stack: u32, api: AllocApi) {
        let now = self.tick(time);
        self.stats.events += 1;
        self.stats.alloc_calls[api as usize] += 1;
        if address == 0 {
            self.stats.failed_allocations += 1;
            return;
        }
        let key = self.key(address);
        if key == 0 {
            // Only a crafted trace has a block at `index << 48` (the empty-slot key).
            return;
        }
        if api == AllocApi::Mmap {
            self.map(now, key, size, stack);
        } else {
            self.heap_alloc(now, key, size, stack, api);
        }
    }

    /// `free(address)`.
    #[inline]
    pub fn free(&mut self, time: u64, address: u64) {
        self.free_as(time, address, FreeApi::Free);
    }

    /// A release of a heap block by `api` (free, sdallocx, operator delete, ...).
    #[inline]
    pub fn free_as(&mut self, time: u64, address: u64, api: FreeApi) {
        let now = self.tick(time);
        self.stats.events += 1;
        self.stats.free_calls[api as usize] += 1;
        if address != 0 {
            self.heap_free(now, self.key(address));
        }
    }

    /// `realloc(old, size)` returned `new` (see the module docs for the cases).
    pub fn realloc(&mut self, time: u64, old: u64, new: u64, size: u64, stack: u32, api: AllocApi) {
        let now = self.tick(time);
        self.stats.events += 1;
        self.stats.alloc_calls[api as usize] += 1;
        // Live blocks are keyed by process (0 stays 0: "none" below).
        let key = |a: u64| {
            if a == 0 {
                0
            } else {
                block_key(a, self.current)
            }
        };
        let (old, new) = (key(old), key(new));
        match (old, new) {
            (0, 0) => {
                if size > 0 {
                    self.stats.failed_allocations += 1;
                }
            }
            (0, new) => self.heap_alloc(now, new, size, stack, api),
            (old, 0) => {
                if size == 0 {
                    self.heap_free(now, old);
                } else {
                    self.stats.failed_reallocs += 1;
                }
            }
            (old, new) => {
                self.heap_free(now, old);
                self.heap_alloc(now, new, size, stack, api);
            }
        }
    }

    /// `munmap(address, len)`. `len == None` (the trace does not say) unmaps the whole mapping
    /// starting at `address`, or from `address` to the end of the mapping that contains it.
    pub fn munmap(&mut self, time: u64, address: u64, len: Option<u64>) {
        let now = self.tick(time);
        self.stats.events += 1;
        self.stats.free_calls[FreeApi::Munmap as usize] += 1;
        let address = self.key(address);
        let len = match len {
            Some(len) => len,
            None => match self.live.maps.range(..=address).next_back() {
                Some((&start, p)) if start.saturating_add(p.len) > address => {
                    start.saturating_add(p.len) - address
                }
                _ => 0,
            },
        };
        if !self.unmap_range(now, address, len) {
            self.stats.unmatched_munmaps += 1;
        }
    }

    /// Keys here and below are live-block keys (see `block_key`), not bare addresses.
    #[inline]
    fn heap_alloc(&mut self, now: u64, key: u64, size: u64, stack: u32, api: AllocApi) {
        let block = Live {
            size,
            stack,
            time: now,
            api,
        };
        if let Some(old) = self.live.heap.insert(key, block) {
            self.stats.replaced_live += 1;
            self.released(now, key, old, true);
        } else if self.live.heap.needs_growth() {
            self.grow_heap(key);
        }
        self.count_alloc(now, stack, size);
    }

    #[inline]
    fn heap_free(&mut self, now: u64, key: u64) {
        match self.live.heap.remove(key) {
            Some(block) => self.released(now, key, block, true),
            None => self.stats.unmatched_frees += 1,
        }
    }

    #[inline(always)]
    fn released(&mut self, now: u64, key: u64, block: Live, whole: bool) {
        self.aggs
            .release(now, block.stack, block.size, block.time, whole);
        if let Some(p) = self.per_process.get_mut(self.current as usize) {
            p.aggs
                .release(now, block.stack, block.size, block.time, whole);
        }
        let address = block_key(key, self.current);
        if whole && let Some(rows) = self.rows.as_mut() {
            if rows.len() == rows.capacity() && !self.grow_rows(0) {
                return;
            }
            let Some(rows) = self.rows.as_mut() else {
                return;
            };
            rows.push(AllocationRow {
                address,
                size: block.size,
                stack: block.stack,
                api: block.api,
                alloc_ns: block.time,
                free_ns: Some(now),
            });
        }
    }

    /// Charges what [`Replay::finish`] adds: a row for every block still live when allocation
    /// rows are collected. Returns the budget's refusal, if any.
    pub fn charge_finish(&mut self) -> Option<&Exceeded> {
        if let Some(rows) = &self.rows {
            let n = (rows.len() + self.live.heap.len() + self.live.maps.len()) as u64;
            self.budget.set(
                Kind::AllocationRows,
                n,
                n.saturating_mul(cost::ALLOCATION_ROW),
                0,
            );
        }
        self.budget.exceeded()
    }

    /// Makes room for `extra` more allocation rows beyond a full vector (at least doubling it)
    /// if the budget allows; false when refused.
    #[cold]
    #[inline(never)]
    fn grow_rows(&mut self, extra: usize) -> bool {
        let Some(rows) = self.rows.as_mut() else {
            return false;
        };
        let (len, cap) = (rows.len(), rows.capacity());
        let want = (len + extra).max(cap * 2).max(1024);
        if self.budget.exceeded().is_some()
            || !self.budget.set(
                Kind::AllocationRows,
                len as u64 + 1,
                want as u64 * cost::ALLOCATION_ROW,
                cap as u64 * std::mem::size_of::<AllocationRow>() as u64,
            )
        {
            return false;
        }
        rows.reserve_exact(want - len);
        self.allow_stacks();
        true
    }

    /// Charges the live mappings; false when refused (the caller then drops the new piece).
    fn charge_maps(&mut self, more: usize) -> bool {
        let n = (self.live.maps.len() + more) as u64;
        if self.budget.exceeded().is_some()
            || !self
                .budget
                .set(Kind::Mappings, n, n.saturating_mul(cost::MAPPING), 0)
        {
            return false;
        }
        self.allow_stacks();
        true
    }

    fn map(&mut self, now: u64, address: u64, len: u64, stack: u32) {
        // A mapping over live ones (MAP_FIXED) replaces them.
        if self.unmap_range(now, address, len) {
            self.stats.replaced_live += 1;
        }
        if !self.charge_maps(1) {
            return;
        }
        self.live.maps.insert(
            address,
            Piece {
                len,
                stack,
                time: now,
                split: 0,
            },
        );
        self.count_alloc(now, stack, len);
    }

    /// Releases every mapped byte in `[address, address + len)`; false if there was none.
    fn unmap_range(&mut self, now: u64, address: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let end = address.saturating_add(len);
        let overlapping: Vec<u64> = self
            .live
            .maps
            .range(..end)
            .rev()
            .take_while(|(s, p)| s.saturating_add(p.len) > address)
            .map(|(&s, _)| s)
            .collect();
        for start in &overlapping {
            let Some(p) = self.live.maps.remove(start) else {
                continue;
            };
            let p_end = start.saturating_add(p.len);
            let left = (*start < address).then(|| (*start, address - start));
            let right = (p_end > end).then(|| (end, p_end - end));
            let removed = p_end.min(end) - (*start).max(address);
            let as_block = |size| Live {
                size,
                stack: p.stack,
                time: p.time,
                api: AllocApi::Mmap,
            };
            match (left, right) {
                (None, None) => {
                    let whole = self.last_piece(p.split);
                    self.released(now, *start, as_block(removed), whole);
                }
                (l, r) => {
                    let mut split = p.split;
                    if l.is_some() && r.is_some() {
                        if split == 0 {
                            self.live.next_split += 1;
                            split = self.live.next_split;
                            self.live.splits.insert(split, 2);
                        } else {
                            *self.live.splits.entry(split).or_insert(1) += 1;
                        }
                    }
                    self.released(now, *start, as_block(removed), false);
                    if !self.charge_maps(2) {
                        continue;
                    }
                    for (s, len) in [l, r].into_iter().flatten() {
                        self.live.maps.insert(s, Piece { len, split, ..p });
                    }
                }
            }
        }
        !overlapping.is_empty()
    }

    /// Ends the replay: unfreed blocks per stack (older than `min_age` at the end), curves on
    /// their final axis, one row per stack; and the same for each process, on its own axis.
    pub fn finish(self) -> ReplayOutput {
        let Replay {
            options,
            live,
            mut aggs,
            mut stats,
            mut rows,
            processes,
            mut per_process,
            ..
        } = self;
        aggs.flush();
        for p in &mut per_process {
            p.aggs.flush();
        }
        let mut duration_ns = stats
            .end
            .map_or(stats.last_time_ns, |(t, _)| t.max(stats.last_time_ns));
        if let Some(at) = options.at_ns {
            duration_ns = duration_ns.min(at);
        }
        // A process is active from its first event to its exit (or the end of the window).
        let active_end = |exit: Option<u64>, last_event_ns: u64| match exit {
            Some(t) => t.max(last_event_ns).min(duration_ns),
            None => duration_ns,
        };
        let facts = processes.facts();
        let process_ends: Vec<u64> = per_process
            .iter()
            .zip(facts)
            .map(|(p, f)| active_end(f.exit.map(|e| e.time_ns), p.last_event_ns))
            .collect();
        let active_end_ns = if per_process.is_empty() {
            active_end(stats.exit.map(|(t, _, _)| t), stats.last_event_ns)
        } else {
            // Several processes: the total is active until the last of them ends.
            per_process
                .iter()
                .zip(&process_ends)
                .filter(|(p, _)| p.events > 0)
                .map(|(_, &end)| end)
                .max()
                .unwrap_or(duration_ns)
        };
        let active_start_ns = stats.first_event_ns.unwrap_or(0).min(active_end_ns);

        if let Some(rows) = rows.as_mut() {
            rows.reserve_exact(live.heap.len() + live.maps.len());
        }
        // Unfreed (count, bytes) per stack, counting a split mapping once: for the total, and
        // for each process (when there are several) with its own end.
        let mut unfreed: IntMap<u32, (u64, u64)> = IntMap::default();
        let mut unfreed_of: Vec<IntMap<u32, (u64, u64)>> =
            per_process.iter().map(|_| IntMap::default()).collect();
        let old_enough = |end: u64, t: u64| end.saturating_sub(t) >= options.min_age_ns;
        let mut count = |index: u32, stack: u32, time: u64, size: u64, new_block: bool| {
            let add = |map: &mut IntMap<u32, (u64, u64)>| {
                let u = map.entry(stack).or_default();
                u.0 += u64::from(new_block);
                u.1 = u.1.saturating_add(size);
            };
            if old_enough(active_end_ns, time) {
                add(&mut unfreed);
            }
            if let (Some(map), Some(&end)) = (
                unfreed_of.get_mut(index as usize),
                process_ends.get(index as usize),
            ) && old_enough(end, time)
            {
                add(map);
            }
        };
        let processes_len = facts.len();
        for (key, b) in live.heap.iter() {
            let index = key_process(key, processes_len);
            count(index, b.stack, b.time, b.size, true);
            if let Some(rows) = rows.as_mut() {
                rows.push(AllocationRow {
                    address: block_key(key, index),
                    size: b.size,
                    stack: b.stack,
                    api: b.api,
                    alloc_ns: b.time,
                    free_ns: None,
                });
            }
        }
        let mut counted_splits = std::collections::HashSet::new();
        for (&start, p) in &live.maps {
            let index = key_process(start, processes_len);
            let first_piece = p.split == 0 || counted_splits.insert(p.split);
            count(index, p.stack, p.time, p.len, first_piece);
            if let Some(rows) = rows.as_mut() {
                rows.push(AllocationRow {
                    address: block_key(start, index),
                    size: p.len,
                    stack: p.stack,
                    api: AllocApi::Mmap,
                    alloc_ns: p.time,
                    free_ns: None,
                });
            }
        }
        if let Some(rows) = rows.as_mut() {
            rows.sort_by_key(|r| (r.alloc_ns, r.address, r.free_ns.is_none()));
        }

        let total = stack_output(
            options,
            &aggs,
            &unfreed,
            duration_ns,
            (active_start_ns, active_end_ns),
        );
        // The per-stack sums saturate on the hot path without a flag: a stack's allocated
        // bytes bound all its others, and the process's live bytes (which feed the curves, at
        // most i64::MAX) bound every stack's; saturation shows there.
        let mut allocated = 0u64;
        for r in &total.rows {
            let (sum, wrapped) = allocated.overflowing_add(r.allocated_bytes);
            allocated = sum;
            stats.saturated |= wrapped || r.allocated_bytes == u64::MAX;
        }
        stats.saturated |= aggs.peak_bytes > i64::MAX as u64;

        let processes_out = if per_process.is_empty() {
            vec![ProcessOutput {
                facts: facts[0].clone(),
                events: stats.events,
                released_by_exec_blocks: stats.released_by_exec_blocks,
                released_by_exec_bytes: stats.released_by_exec_bytes,
                replay: None,
            }]
        } else {
            per_process
                .iter()
                .zip(facts)
                .zip(&unfreed_of)
                .zip(&process_ends)
                .enumerate()
                .filter(|(i, (((p, f), _), _))| {
                    processes.replayed(*i as u32)
                        // The trace's own process when the recorder never traced it (a
                        // recording of other processes by executable).
                        && (p.events > 0 || f.declared || *i > 0)
                })
                .map(|(_, (((p, f), unfreed), &end))| {
                    let start = p.first_event_ns.unwrap_or(f.start_ns).min(end);
                    let mut out =
                        stack_output(options, &p.aggs, unfreed, duration_ns, (start, end));
                    out.stats = ReplayStats {
                        events: p.events,
                        first_event_ns: p.first_event_ns,
                        last_event_ns: p.last_event_ns,
                        last_time_ns: stats.last_time_ns,
                        released_by_exec_blocks: p.released_by_exec_blocks,
                        released_by_exec_bytes: p.released_by_exec_bytes,
                        exit: f.exit.map(|e| (e.time_ns, e.code, e.signal)),
                        ..ReplayStats::default()
                    };
                    ProcessOutput {
                        facts: f.clone(),
                        events: p.events,
                        released_by_exec_blocks: p.released_by_exec_blocks,
                        released_by_exec_bytes: p.released_by_exec_bytes,
                        replay: Some(out),
                    }
                })
                .collect()
        };

        ReplayOutput {
            allocations: rows,
            stats,
            processes: processes_out,
            unfollowed: processes.unfollowed().to_vec(),
            process_limits: processes.limits,
            ..total
        }
    }
}

/// The per-stack rows, curves and heap figures of `aggs` (the total's, or a process's), over
/// the window `active` = (start, end).
fn stack_output(
    options: ReplayOptions,
    aggs: &Aggregates,
    unfreed: &IntMap<u32, (u64, u64)>,
    duration_ns: u64,
    active: (u64, u64),
) -> ReplayOutput {
    let (active_start_ns, active_end_ns) = active;
    // The stack curves' axis starts where the aggregates started it (the process's first
    // event, or its latest exec) and ends with its activity.
    let origin = aggs.stack_origin_ns().min(active_end_ns);
    let (axis, shift) = TimeAxis::new(
        STACK_CURVE_BUCKETS,
        aggs.stack_shift(),
        origin,
        active_end_ns,
    );
    let (heap_axis, heap_shift) =
        TimeAxis::new(GLOBAL_CURVE_BUCKETS, aggs.global_shift(), 0, duration_ns);
    let mut stack_rows: Vec<StackRow> = aggs
        .stacks
        .iter()
        .map(|(&id, a)| {
            let u = unfreed.get(&id).copied().unwrap_or_default();
            let curve = aggs.stack_curve(a, shift, axis.buckets);
            StackRow::from_agg(id, a, u, curve)
        })
        .collect();
    stack_rows.sort_by_key(|r| r.stack_id);
    ReplayOutput {
        options,
        duration_ns,
        active_start_ns,
        active_end_ns,
        rows: stack_rows,
        axis,
        heap_curve: aggs.heap_curve.finish(heap_shift, heap_axis.buckets),
        heap_axis,
        peak_bytes: aggs.peak_bytes,
        peak_time_ns: aggs.peak_time_ns,
        live_bytes: aggs.live_bytes,
        live_allocations: aggs.live_allocations,
        allocations: None,
        stats: ReplayStats::default(),
        processes: Vec::new(),
        unfollowed: Vec::new(),
        process_limits: ProcessLimits::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_table_behaves_like_a_map() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        let mut t = HeapTable::default();
        let mut m = std::collections::HashMap::new();
        let mut x = 7u64;
        for i in 0..200_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Few distinct, aligned addresses, so inserts, replacements and removals mix and
            // the table grows and wraps around.
            let address = 0x5555_0000_0000 + ((x >> 33) % (1 << (8 + i / 40_000))) * 16;
            // Some sizes too large for a slot: they go to the side map and come back exact.
            let size = match i % 7 {
                0 => SIZE_IN_SIDE_MAP + i,
                1 => SIZE_IN_SIDE_MAP - 1,
                2 => u64::MAX - i,
                _ => i,
            };
            let block = Live {
                size,
                stack: u32::MAX - (i % 13) as u32,
                time: u64::MAX - i,
                api: AllocApi::ALL[(i % 10) as usize],
            };
            if (x >> 20).is_multiple_of(3) {
                assert_eq!(t.remove(address), m.remove(&address));
            } else {
                assert_eq!(t.insert(address, block), m.insert(address, block));
                if t.needs_growth() {
                    t.grow();
                }
            }
            assert_eq!(t.len(), m.len());
            assert!(t.len() * MAX_LOAD_DEN <= t.slots.len() * MAX_LOAD_NUM);
            if i % 997 == 0 {
                for (a, b) in &m {
                    assert_eq!(t.get(*a), Some(*b));
                }
                assert_eq!(t.iter().count(), m.len());
                let big = m.values().filter(|b| b.size >= SIZE_IN_SIDE_MAP).count();
                assert_eq!(t.big_sizes.len(), big);
            }
        }
        assert_eq!(t.get(0), None);
        assert_eq!(t.remove(0), None);
    }
}
