//! The memory budget: how much memory a trace may make one analysis hold, and what each thing a
//! trace declares costs.
//!
//! A trace is small on disk but can declare a lot: millions of live blocks in a few kilobytes of
//! compressed records, stacks of 65,536 frames, stack ids by the million. Each part of the
//! analysis that grows with what the trace declares (the live-block table, the per-stack
//! aggregates, the symbol table, mappings, RSS samples, allocation rows, the frames reports
//! resolve) charges its size here *before* it grows, and the analysis stops with
//! [`Exceeded`] (a one-line error) when the total would pass the limit, instead of growing
//! until the allocator aborts or the kernel kills the process.
//!
//! The limit ([`MemoryLimit`]) is `--memory-limit`, else half of the memory this process may
//! use: `MemAvailable` from /proc/meminfo, or the cgroup v2 `memory.max` (of this process's
//! cgroup or an ancestor) when that is lower. Half, because the charges are estimates of the
//! analysis's own tables: the decoding buffers, the allocator's overhead and the reports come on
//! top.
//!
//! Owns the limit and the cost model. Must not read traces or decide what to do when the limit
//! is reached (the replay and the analysis do: they stop reading).

use std::fmt;
use std::sync::OnceLock;

use memtrail_format::units::format_bytes;

/// Where a limit comes from, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOrigin {
    /// `--memory-limit`.
    Flag,
    /// Half of `MemAvailable`.
    Available,
    /// Half of a cgroup's `memory.max`.
    Cgroup,
    /// The machine's memory could not be read: a fixed default.
    Fallback,
    /// No limit (library users who ask for it).
    Unlimited,
}

/// The most memory one analysis may hold, in bytes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub origin: LimitOrigin,
}

/// The limit when neither /proc/meminfo nor a cgroup says anything.
const FALLBACK_LIMIT: u64 = 4 << 30;

impl MemoryLimit {
    /// A limit given on the command line.
    pub fn from_flag(bytes: u64) -> MemoryLimit {
        MemoryLimit {
            bytes,
            origin: LimitOrigin::Flag,
        }
    }

    pub fn unlimited() -> MemoryLimit {
        MemoryLimit {
            bytes: u64::MAX,
            origin: LimitOrigin::Unlimited,
        }
    }

    /// Half of the memory this process may use, read once per process (see the module docs).
    pub fn of_this_machine() -> MemoryLimit {
        static LIMIT: OnceLock<MemoryLimit> = OnceLock::new();
        *LIMIT.get_or_init(|| {
            let available = std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| meminfo_available(&m));
            let cgroup = cgroup_memory_max();
            match (available, cgroup) {
                (Some(a), Some(c)) if c < a => MemoryLimit {
                    bytes: c / 2,
                    origin: LimitOrigin::Cgroup,
                },
                (Some(a), _) => MemoryLimit {
                    bytes: a / 2,
                    origin: LimitOrigin::Available,
                },
                (None, Some(c)) => MemoryLimit {
                    bytes: c / 2,
                    origin: LimitOrigin::Cgroup,
                },
                (None, None) => MemoryLimit {
                    bytes: FALLBACK_LIMIT,
                    origin: LimitOrigin::Fallback,
                },
            }
        })
    }
}

impl Default for MemoryLimit {
    /// The machine's limit: a library caller that does not choose gets the safe one.
    fn default() -> Self {
        MemoryLimit::of_this_machine()
    }
}

impl fmt::Display for MemoryLimit {
    /// `512 MiB (half of this machine's available memory)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.origin {
            LimitOrigin::Flag => "--memory-limit",
            LimitOrigin::Available => "half of this machine's available memory",
            LimitOrigin::Cgroup => "half of this cgroup's memory.max",
            LimitOrigin::Fallback => "a default: this machine's memory is unknown",
            LimitOrigin::Unlimited => "no limit",
        };
        write!(f, "{} ({why})", format_bytes(self.bytes))
    }
}

/// `MemAvailable` in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The lowest `memory.max` of this process's cgroup v2 and its ancestors, if any is set.
fn cgroup_memory_max() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2 is the line "0::/path".
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup");
    dir.push(path.trim_start_matches('/'));
    let mut lowest: Option<u64> = None;
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("memory.max")) {
            // "max" means no limit at this level.
            if let Ok(v) = text.trim().parse::<u64>() {
                lowest = Some(lowest.map_or(v, |l| l.min(v)));
            }
        }
        if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
            break;
        }
    }
    lowest
}

/// What a trace can make the analysis hold, one entry per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Live heap blocks (the live-block table, including the copy while it grows).
    LiveBlocks,
    /// Distinct stack ids with allocations (one accumulator and one row each).
    Stacks,
    /// Frames of stack records.
    StackFrames,
    /// Frames of symbol records (inlined functions).
    SymbolFrames,
    /// Bytes of strings (names, file names, module paths, metadata).
    StringBytes,
    /// Live mapped ranges.
    Mappings,
    /// RSS samples.
    RssSamples,
    /// Rows of `export --what allocations`.
    AllocationRows,
    /// Frames the reports resolve (and the text they build from them).
    ReportFrames,
    /// Processes (their facts and own accumulators), thread bindings, unfollowed processes.
    Processes,
}

const KINDS: usize = 10;

impl Kind {
    /// How a count of this kind reads: `10,000,000 live blocks`.
    fn describe(self, n: u64) -> String {
        let what = match self {
            Kind::LiveBlocks => "live blocks",
            Kind::Stacks => "stacks",
            Kind::StackFrames => "stack frames",
            Kind::SymbolFrames => "symbol frames",
            Kind::StringBytes => "bytes of strings",
            Kind::Mappings => "mapped ranges",
            Kind::RssSamples => "RSS samples",
            Kind::AllocationRows => "allocation rows",
            Kind::ReportFrames => "frames to resolve for the reports",
            Kind::Processes => "processes",
        };
        format!("{} {what}", thousands(n))
    }
}

/// What each kind costs. Estimates of the memory held, rounded up; a charge is made before the
/// memory is allocated.
pub mod cost {
    /// Bytes of one live-block table slot (see `replay::HeapTable`).
    pub const HEAP_SLOT: u64 = 24;
    /// One live mapped range: the B-tree entry and its share of a node.
    pub const MAPPING: u64 = 96;
    /// One stack's accumulator and the row it becomes, with its histograms at their largest
    /// (see `aggregate::StackAgg`, `aggregate::StackRow`).
    pub const STACK: u64 = 8 * 1024;
    /// One frame of a stack record (module, offset, address).
    pub const STACK_FRAME: u64 = 24;
    /// One frame of a symbol record (function, file, line).
    pub const SYMBOL_FRAME: u64 = 12;
    /// Any record kept in the symbol table: its map entry and vector header.
    pub const NAME_RECORD: u64 = 64;
    /// One RSS sample.
    pub const RSS_SAMPLE: u64 = 24;
    /// One row of `export --what allocations`: the row, its share of the sort's buffer and
    /// the table's columns.
    pub const ALLOCATION_ROW: u64 = 48 + 24 + 64;
    /// One resolved frame (`symbols::Frame`), besides its names; reports hold a frame and the
    /// text built from it (a label, a folded line), so names are counted twice.
    pub const REPORT_FRAME: u64 = 112;
    /// A process's own accumulators before any stack: its heap curve and counters (its facts
    /// are charged by size, see `processes::ProcessTable::bytes`).
    pub const PROCESS_AGGREGATES: u64 = 5 * 1024;
}

/// One kind's current claim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Claim {
    count: u64,
    bytes: u64,
}

/// The limit and what is charged against it.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: MemoryLimit,
    claims: [Claim; KINDS],
    exceeded: Option<Exceeded>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(MemoryLimit::default())
    }
}

impl Budget {
    pub fn new(limit: MemoryLimit) -> Budget {
        Budget {
            limit,
            claims: [Claim::default(); KINDS],
            exceeded: None,
        }
    }

    pub fn limit(&self) -> MemoryLimit {
        self.limit
    }

    /// Bytes charged in all.
    pub fn used(&self) -> u64 {
        self.claims
            .iter()
            .fold(0u64, |sum, c| sum.saturating_add(c.bytes))
    }

    /// Bytes left before the limit.
    pub fn room(&self) -> u64 {
        self.limit.bytes.saturating_sub(self.used())
    }

    /// Sets `kind`'s claim to `count` things of `bytes` in all, when the total stays within the
    /// limit while `transient` more bytes are held for a moment (the old copy of a table that
    /// grows). Returns false, and remembers why, when it would not: the claim is then left as
    /// it was.
    pub fn set(&mut self, kind: Kind, count: u64, bytes: u64, transient: u64) -> bool {
        let i = kind as usize;
        let others = self.used().saturating_sub(self.claims[i].bytes);
        let needed = others.saturating_add(bytes).saturating_add(transient);
        if needed > self.limit.bytes {
            if self.exceeded.is_none() {
                let mut claims = self.claims;
                claims[i] = Claim { count, bytes };
                self.exceeded = Some(Exceeded {
                    claims: describe(&claims),
                    needed,
                    limit: self.limit,
                });
            }
            return false;
        }
        self.claims[i] = Claim { count, bytes };
        true
    }

    /// Records that a charge of `kind` was refused elsewhere (a part that only counts on its hot
    /// path and was out of its allowance), with the claim it would have made.
    pub fn refuse(&mut self, kind: Kind, count: u64, bytes: u64) {
        if self.exceeded.is_none() {
            let i = kind as usize;
            let needed = self
                .used()
                .saturating_sub(self.claims[i].bytes)
                .saturating_add(bytes);
            let mut claims = self.claims;
            claims[i] = Claim { count, bytes };
            self.exceeded = Some(Exceeded {
                claims: describe(&claims),
                needed: needed.max(self.limit.bytes.saturating_add(1)),
                limit: self.limit,
            });
        }
    }

    /// Adds `count` things of `bytes` to `kind`'s claim (see [`Budget::set`]).
    pub fn add(&mut self, kind: Kind, count: u64, bytes: u64) -> bool {
        let c = self.claims[kind as usize];
        self.set(
            kind,
            c.count.saturating_add(count),
            c.bytes.saturating_add(bytes),
            0,
        )
    }

    /// The first refused charge, if any.
    pub fn exceeded(&self) -> Option<&Exceeded> {
        self.exceeded.as_ref()
    }

    /// The count charged for `kind`.
    pub fn count(&self, kind: Kind) -> u64 {
        self.claims[kind as usize].count
    }
}

/// The largest claims, largest first: `10,000,000 live blocks and 3 stacks`.
fn describe(claims: &[Claim; KINDS]) -> String {
    const ALL: [Kind; KINDS] = [
        Kind::LiveBlocks,
        Kind::Stacks,
        Kind::StackFrames,
        Kind::SymbolFrames,
        Kind::StringBytes,
        Kind::Mappings,
        Kind::RssSamples,
        Kind::AllocationRows,
        Kind::ReportFrames,
        Kind::Processes,
    ];
    let mut parts: Vec<(u64, String)> = ALL
        .iter()
        .zip(claims)
        .filter(|(_, c)| c.count > 0)
        .map(|(k, c)| (c.bytes, k.describe(c.count)))
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let parts: Vec<String> = parts.into_iter().take(3).map(|(_, s)| s).collect();
    match parts.as_slice() {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A refused charge: what the trace claims and what it would need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The largest claims at that moment, e.g. `10,000,000 live blocks and 3 stacks`.
    pub claims: String,
    /// Bytes the analysis would hold with the refused charge.
    pub needed: u64,
    pub limit: MemoryLimit,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the trace declares more than the memory limit allows: {} need about {}, the limit is {}; pass --memory-limit to raise it",
            self.claims,
            format_bytes(self.needed),
            self.limit
        )
    }
}

/// `10000000` as `10,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_says_what_was_claimed() {
        let mut b = Budget::new(MemoryLimit::from_flag(1 << 20));
        assert!(b.set(Kind::Stacks, 3, 3 * cost::STACK, 0));
        assert!(b.add(Kind::StackFrames, 100, 2400));
        assert!(!b.set(Kind::LiveBlocks, 10_000_000, 10_000_000 * 24, 0));
        // The refused claim is not kept; the first refusal is the one reported.
        assert_eq!(b.count(Kind::LiveBlocks), 0);
        assert!(!b.set(Kind::Mappings, 1 << 20, 1 << 30, 0));
        let e = b.exceeded().unwrap();
        assert_eq!(
            e.claims,
            "10,000,000 live blocks, 3 stacks and 100 stack frames"
        );
        assert_eq!(
            e.to_string(),
            "the trace declares more than the memory limit allows: 10,000,000 live blocks, 3 stacks and 100 stack frames need about 228.9 MiB, the limit is 1.00 MiB (--memory-limit); pass --memory-limit to raise it"
        );
        // A transient copy counts too.
        let mut b = Budget::new(MemoryLimit::from_flag(1000));
        assert!(b.set(Kind::LiveBlocks, 10, 600, 0));
        assert!(!b.set(Kind::LiveBlocks, 20, 800, 600));
        assert!(b.room() == 400);
    }

    #[test]
    fn reads_the_machine() {
        assert_eq!(
            meminfo_available("MemTotal: 100 kB\nMemAvailable:   2048 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(meminfo_available("MemTotal: 100 kB\n"), None);
        let l = MemoryLimit::of_this_machine();
        assert!(l.bytes > 0 && l.origin != LimitOrigin::Flag);
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }
}
