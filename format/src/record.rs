//! The records a trace is made of, as programs see them: absolute times and addresses.
//!
//! The wire form (deltas, varints, interning) lives in `wire/`; nothing here knows about it.

/// Which allocation function produced a block. Names match the C functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum AllocApi {
    Malloc = 0,
    Calloc = 1,
    Realloc = 2,
    Reallocarray = 3,
    PosixMemalign = 4,
    AlignedAlloc = 5,
    Memalign = 6,
    Valloc = 7,
    Pvalloc = 8,
    Mmap = 9,
    // jemalloc's extended API and C++ operator new defined by an allocator (format 1.1).
    Mallocx = 10,
    Rallocx = 11,
    Xallocx = 12,
    OperatorNew = 13,
}

impl AllocApi {
    pub const ALL: [AllocApi; 14] = [
        AllocApi::Malloc,
        AllocApi::Calloc,
        AllocApi::Realloc,
        AllocApi::Reallocarray,
        AllocApi::PosixMemalign,
        AllocApi::AlignedAlloc,
        AllocApi::Memalign,
        AllocApi::Valloc,
        AllocApi::Pvalloc,
        AllocApi::Mmap,
        AllocApi::Mallocx,
        AllocApi::Rallocx,
        AllocApi::Xallocx,
        AllocApi::OperatorNew,
    ];

    /// The C function's name, as reports and JSON print it.
    pub fn name(self) -> &'static str {
        match self {
            AllocApi::Malloc => "malloc",
            AllocApi::Calloc => "calloc",
            AllocApi::Realloc => "realloc",
            AllocApi::Reallocarray => "reallocarray",
            AllocApi::PosixMemalign => "posix_memalign",
            AllocApi::AlignedAlloc => "aligned_alloc",
            AllocApi::Memalign => "memalign",
            AllocApi::Valloc => "valloc",
            AllocApi::Pvalloc => "pvalloc",
            AllocApi::Mmap => "mmap",
            AllocApi::Mallocx => "mallocx",
            AllocApi::Rallocx => "rallocx",
            AllocApi::Xallocx => "xallocx",
            AllocApi::OperatorNew => "operator new",
        }
    }

    pub fn from_u8(v: u8) -> Option<AllocApi> {
        AllocApi::ALL.get(usize::from(v)).copied()
    }
}

/// Which function released a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FreeApi {
    Free = 0,
    Munmap = 1,
    // Format 1.1: jemalloc's sized and flagged frees, C++ operator delete of an allocator.
    Sdallocx = 2,
    Dallocx = 3,
    OperatorDelete = 4,
}

impl FreeApi {
    pub const ALL: [FreeApi; 5] = [
        FreeApi::Free,
        FreeApi::Munmap,
        FreeApi::Sdallocx,
        FreeApi::Dallocx,
        FreeApi::OperatorDelete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FreeApi::Free => "free",
            FreeApi::Munmap => "munmap",
            FreeApi::Sdallocx => "sdallocx",
            FreeApi::Dallocx => "dallocx",
            FreeApi::OperatorDelete => "operator delete",
        }
    }

    pub fn from_u8(v: u8) -> Option<FreeApi> {
        FreeApi::ALL.get(usize::from(v)).copied()
    }
}

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum LostReason {
    /// The kernel-to-user ring buffer was full.
    RingBufferFull = 0,
    /// The stack could not be captured or stored.
    StackUnavailable = 1,
    /// A return probe fired without its entry (or the per-thread table was full).
    MissingEntry = 2,
    /// The recorder could not keep up writing or was stopped before draining.
    Recorder = 3,
    /// Any other reason; readers of older versions map unknown reasons here.
    Other = 255,
}

impl LostReason {
    pub fn name(self) -> &'static str {
        match self {
            LostReason::RingBufferFull => "ring-buffer-full",
            LostReason::StackUnavailable => "stack-unavailable",
            LostReason::MissingEntry => "missing-entry",
            LostReason::Recorder => "recorder",
            LostReason::Other => "other",
        }
    }

    pub fn from_u8(v: u8) -> LostReason {
        match v {
            0 => LostReason::RingBufferFull,
            1 => LostReason::StackUnavailable,
            2 => LostReason::MissingEntry,
            3 => LostReason::Recorder,
            _ => LostReason::Other,
        }
    }
}

/// How a stack was unwound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Unwinder {
    FramePointer = 0,
    Dwarf = 1,
    Other = 255,
}

impl Unwinder {
    pub fn from_u8(v: u8) -> Unwinder {
        match v {
            0 => Unwinder::FramePointer,
            1 => Unwinder::Dwarf,
            _ => Unwinder::Other,
        }
    }
}

/// Facts about the traced process and the recording, written once at the start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceMeta {
    /// Version of the recorder that wrote the trace, e.g. "0.1.0".
    pub tool_version: String,
    pub host_name: String,
    pub kernel_release: String,
    pub pid: u32,
    pub command_line: Vec<String>,
    /// Wall clock at the start, nanoseconds since the Unix epoch.
    pub start_wall_ns: u64,
    /// CLOCK_MONOTONIC (the clock eBPF's `bpf_ktime_get_ns` reads) at the start. Every event
    /// time in the trace is nanoseconds since this instant.
    pub start_monotonic_ns: u64,
    pub page_size: u32,
    /// 0 when every allocation is recorded; N when allocations are sampled one per N bytes, so
    /// reports must scale counts.
    pub sample_bytes: u64,
    /// Event times are multiples of this many nanoseconds (0 or 1: exact nanoseconds). The
    /// writer truncates every time to it; a coarser clock makes the trace smaller.
    pub time_resolution_ns: u32,
    /// Free-form facts (probe placement, options...), for humans and forward compatibility.
    pub extra: Vec<(String, String)>,
}

/// One executable mapping range of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MappingRange {
    pub start: u64,
    pub end: u64,
    /// File offset that `start` maps.
    pub file_offset: u64,
}

/// A file mapped into the process (executable, shared library, vdso).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub id: u32,
    pub path: String,
    /// GNU build-id note, empty when the file has none.
    pub build_id: Vec<u8>,
    pub ranges: Vec<MappingRange>,
}

/// One frame of a stack. `module == NO_MODULE` when the address fell in no known module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StackFrame {
    pub module: u32,
    pub offset: u64,
    pub address: u64,
}

pub const NO_MODULE: u32 = u32::MAX;

/// A call stack, innermost frame first (the allocator's caller is `frames[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub id: u32,
    pub unwinder: Unwinder,
    /// True when the unwinder stopped at the depth limit or on an unreadable frame.
    pub truncated: bool,
    pub frames: Vec<StackFrame>,
}

/// One source-level frame of a symbolized address; inlined functions give several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolFrame {
    /// Id of a `Record::String` holding the (demangled) function name.
    pub function: u32,
    /// Id of a `Record::String` holding the source file, or `NO_STRING`.
    pub file: u32,
    /// 0 when unknown.
    pub line: u32,
}

pub const NO_STRING: u32 = u32::MAX;

/// What `module + offset` resolves to: the innermost (inlined) function first, the function
/// that physically contains the code last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub module: u32,
    pub offset: u64,
    pub frames: Vec<SymbolFrame>,
}

/// Totals the recorder counted, written last. A trace without one was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndTotals {
    pub allocations: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub lost: u64,
}

/// How a process came into the trace (format 1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ProcessOrigin {
    /// Started by the recorder (`memtrail-record -- COMMAND`).
    Launched = 0,
    /// Already running; the recorder attached to it (`-p PID`).
    Attached = 1,
    /// Forked (or cloned without sharing memory) by a process of the trace.
    Forked = 2,
    /// Found running the executable given with `--exe`.
    Found = 3,
    /// Any other way; readers map unknown values here.
    Other = 255,
}

impl ProcessOrigin {
    /// The name reports and JSON print.
    pub fn name(self) -> &'static str {
        match self {
            ProcessOrigin::Launched => "launched",
            ProcessOrigin::Attached => "attached",
            ProcessOrigin::Forked => "forked",
            ProcessOrigin::Found => "found",
            ProcessOrigin::Other => "other",
        }
    }

    pub fn from_u8(v: u8) -> ProcessOrigin {
        match v {
            0 => ProcessOrigin::Launched,
            1 => ProcessOrigin::Attached,
            2 => ProcessOrigin::Forked,
            3 => ProcessOrigin::Found,
            _ => ProcessOrigin::Other,
        }
    }
}

/// A process entering the trace (format 1.1). See `Record::Process`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// 0 when unknown.
    pub parent_pid: u32,
    /// When the recorder first saw it.
    pub time: u64,
    pub origin: ProcessOrigin,
    pub command_line: Vec<String>,
}

/// Everything a trace holds. Times are nanoseconds since `TraceMeta::start_monotonic_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Boxed: it is large and rare, and keeping `Record` small makes event decoding fast.
    Meta(Box<TraceMeta>),
    /// An interned string, referenced by id from other records.
    String {
        id: u32,
        value: String,
    },
    Module(Box<Module>),
    Stack(Stack),
    Symbol(Symbol),
    Alloc {
        time: u64,
        thread: u32,
        address: u64,
        size: u64,
        stack: u32,
        api: AllocApi,
    },
    Free {
        time: u64,
        thread: u32,
        address: u64,
        /// For `munmap`, the length of the unmapped range (it may be part of a mapping). For
        /// `free` it is not stored and always reads back as 0: a block's size is known from
        /// its allocation.
        size: u64,
        api: FreeApi,
    },
    /// `old_address` was resized into `new_address`. `old_address == 0` behaves as an
    /// allocation; `new_address == 0` with `size > 0` means the call failed and the old block
    /// is still live; `size == 0` with `new_address == 0` means the old block was freed.
    Realloc {
        time: u64,
        thread: u32,
        old_address: u64,
        new_address: u64,
        size: u64,
        stack: u32,
        api: AllocApi,
    },
    Lost {
        time: u64,
        count: u64,
        reason: LostReason,
    },
    Rss {
        time: u64,
        rss_bytes: u64,
        /// Anonymous share of the RSS (heap, anonymous mappings), 0 when unknown.
        anon_bytes: u64,
    },
    /// The traced process ended: `code` is the exit status, or `signal` the killing signal.
    Exit {
        time: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
    End {
        time: u64,
        totals: EndTotals,
    },
    // Format 1.1: the processes of a traced tree. A trace without `Process` records has one
    // process, `TraceMeta::pid` (SPEC.md 4.5).
    /// A process enters the trace (the first, root process too).
    Process(Box<ProcessInfo>),
    /// `pid` replaced its image: its live blocks are gone (not leaks); new modules follow.
    Exec {
        time: u64,
        pid: u32,
        command_line: Vec<String>,
    },
    /// `pid` ended with exit status `code`, or was killed by `signal`.
    ProcessExit {
        time: u64,
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Thread id `thread` belongs to `pid` from here on. A thread never bound belongs to
    /// `TraceMeta::pid`.
    Thread {
        thread: u32,
        pid: u32,
    },
    /// A process of the tree the recorder could not trace, and why.
    Unfollowed {
        time: u64,
        pid: u32,
        parent_pid: u32,
        reason: String,
    },
}

impl Record {
    /// The event time, for records that have one.
    pub fn time(&self) -> Option<u64> {
        match self {
            Record::Alloc { time, .. }
            | Record::Free { time, .. }
            | Record::Realloc { time, .. }
            | Record::Lost { time, .. }
            | Record::Rss { time, .. }
            | Record::Exit { time, .. }
            | Record::End { time, .. }
            | Record::Exec { time, .. }
            | Record::ProcessExit { time, .. }
            | Record::Unfollowed { time, .. } => Some(*time),
            Record::Process(p) => Some(p.time),
            _ => None,
        }
    }

    /// True for the allocation events (alloc, free, realloc) that "events per second" counts.
    pub fn is_event(&self) -> bool {
        matches!(
            self,
            Record::Alloc { .. } | Record::Free { .. } | Record::Realloc { .. }
        )
    }
}
