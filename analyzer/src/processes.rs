//! The processes of a trace (format 1.1, SPEC.md 4.5): which process each event belongs to, what
//! is known of each process, the processes the recorder could not follow, and `--pid`.
//!
//! Owns the process table: process indices (0 is the trace's own process, Meta's PID), the
//! thread-to-process bindings, each process's facts (PID, parent, origin, command line, exit,
//! execs), the caps on all of them, and the `--pid` selection. A trace without process records
//! has one process, index 0. Must not know event semantics or live blocks (`replay.rs` keys
//! its live blocks by the index this table gives) and must not format anything.
//!
//! Everything here grows with what the trace declares, so everything is capped: at most
//! [`MAX_PROCESSES`] processes are replayed (the events of later ones are counted, not
//! replayed), [`MAX_THREAD_BINDINGS`] thread bindings, [`MAX_UNFOLLOWED`] unfollowed processes
//! kept with their reasons, and command lines and reasons are cut to a few KiB.

use memtrail_format::{IntMap, ProcessOrigin, TraceMeta};

/// Processes replayed one by one; the events of processes past it are counted, not replayed.
/// Live blocks are keyed by process index in the top 16 bits of the address (see
/// `replay.rs`), so this must stay below 2^16.
pub const MAX_PROCESSES: usize = 4096;
/// Threads bound to a process by Thread records; later bindings are ignored (their events go
/// to the trace's own process, as unbound threads do).
pub const MAX_THREAD_BINDINGS: usize = 1 << 20;
/// Unfollowed processes kept with their reason; later ones are only counted.
pub const MAX_UNFOLLOWED: usize = 1024;
/// A kept command line has at most this many arguments and bytes (the rest is cut, marked).
const MAX_ARGS: usize = 64;
const MAX_COMMAND_BYTES: usize = 4096;
/// Longest unfollowed reason kept.
const MAX_REASON_BYTES: usize = 1024;
/// `--pid` given at most this many times.
pub const MAX_PID_FILTER: usize = 16;

/// The index of events that belong to no replayed process (past [`MAX_PROCESSES`]).
pub const UNTRACKED: u32 = u32::MAX;

/// The processes `--pid` selects: all of them when empty. Copy, so that `ReplayOptions` stays
/// a plain value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidFilter {
    pids: [u32; MAX_PID_FILTER],
    len: u8,
}

impl PidFilter {
    /// The filter for `pids` (duplicates allowed); an error when there are too many.
    pub fn new(pids: &[u32]) -> Result<PidFilter, String> {
        if pids.len() > MAX_PID_FILTER {
            return Err(format!(
                "--pid was given {} times: at most {MAX_PID_FILTER} processes can be selected",
                pids.len()
            ));
        }
        let mut f = PidFilter::default();
        f.pids[..pids.len()].copy_from_slice(pids);
        f.len = pids.len() as u8;
        Ok(f)
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn matches(&self, pid: u32) -> bool {
        self.is_empty() || self.pids().contains(&pid)
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub time_ns: u64,
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// What the trace says of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFacts {
    pub pid: u32,
    /// 0 when unknown.
    pub parent_pid: u32,
    pub origin: ProcessOrigin,
    /// The latest command line (an exec replaces it), cut to a few KiB.
    pub command_line: Vec<String>,
    /// When the recorder first saw it.
    pub start_ns: u64,
    pub exit: Option<ExitStatus>,
    /// Times it replaced its image.
    pub execs: u32,
    /// True once a Process record declared it (false for the trace's own process of a trace
    /// without process records, and for processes known only from a Thread record).
    pub declared: bool,
}

impl ProcessFacts {
    /// The command as reports print it: the command line joined with spaces, or `pid N`.
    pub fn command(&self) -> String {
        if self.command_line.is_empty() {
            format!("pid {}", self.pid)
        } else {
            self.command_line.join(" ")
        }
    }

    /// What `diff` and `compare` match processes by: `argv[0]`'s file name and the arguments.
    pub fn match_key(&self) -> String {
        let mut words = self.command_line.iter();
        let name = words
            .next()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_default();
        std::iter::once(name)
            .chain(words.cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A process of the traced tree the recorder could not trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfollowedProcess {
    pub pid: u32,
    pub parent_pid: u32,
    pub reason: String,
    pub time_ns: u64,
}

/// The warning for an unfollowed process: `process 1234 (child of 1200) was not traced: REASON`.
pub fn unfollowed_sentence(u: &UnfollowedProcess) -> String {
    let parent = if u.parent_pid == 0 {
        String::new()
    } else {
        format!(" (child of {})", u.parent_pid)
    };
    format!(
        "process {}{parent} was not traced: {}",
        u.pid,
        if u.reason.is_empty() {
            "the recorder did not say why"
        } else {
            &u.reason
        }
    )
}

/// Counts of what the caps and the checks left out; each is a warning when not zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Records introducing a process past [`MAX_PROCESSES`] (their events were not
    /// replayed).
    pub processes_over_limit: u64,
    /// Thread records past [`MAX_THREAD_BINDINGS`].
    pub threads_over_limit: u64,
    /// Unfollowed processes past [`MAX_UNFOLLOWED`], counted only.
    pub unfollowed_over_limit: u64,
    /// Exec and exit records of a PID the trace never introduced (ignored).
    pub records_of_unknown_pids: u64,
}

/// The process table. See the module documentation.
#[derive(Debug, Clone)]
pub struct ProcessTable {
    facts: Vec<ProcessFacts>,
    selected: Vec<bool>,
    /// The current index of each PID (a PID reused after its exit gets a new index).
    by_pid: IntMap<u32, u32>,
    threads: IntMap<u32, u32>,
    filter: PidFilter,
    unfollowed: Vec<UnfollowedProcess>,
    pub limits: ProcessLimits,
    /// The first PIDs the trace introduced, selected or not, and how many it introduced: what
    /// the error for a `--pid` that matches none names.
    first_pids: Vec<u32>,
    pids_introduced: u64,
    /// The text kept (command lines, reasons), in bytes: for the memory budget.
    text_bytes: u64,
}

/// What a kept text costs: its bytes and its `String`.
fn text_cost<'a>(texts: impl IntoIterator<Item = &'a String>) -> u64 {
    texts.into_iter().map(|t| t.len() as u64 + 24).sum()
}

/// PIDs named by the error for a `--pid` that matches no process.
const NAMED_PIDS: usize = 20;

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A command line as kept: at most `MAX_ARGS` arguments and `MAX_COMMAND_BYTES` bytes.
fn kept_command_line(argv: &[String]) -> Vec<String> {
    let mut room = MAX_COMMAND_BYTES;
    let mut out = Vec::new();
    for a in argv.iter().take(MAX_ARGS) {
        if room == 0 {
            break;
        }
        let kept = cut(a, room);
        room = room.saturating_sub(kept.len());
        out.push(kept);
    }
    if argv.len() > out.len() {
        out.push(format!("... ({} more arguments)", argv.len() - out.len()));
    }
    out
}

impl ProcessTable {
    pub fn new(filter: PidFilter) -> ProcessTable {
        let root = ProcessFacts {
            pid: 0,
            parent_pid: 0,
            origin: ProcessOrigin::Launched,
            command_line: Vec::new(),
            start_ns: 0,
            exit: None,
            execs: 0,
            declared: false,
        };
        ProcessTable {
            facts: vec![root],
            selected: vec![filter.matches(0)],
            by_pid: IntMap::default(),
            threads: IntMap::default(),
            filter,
            unfollowed: Vec::new(),
            limits: ProcessLimits::default(),
            first_pids: Vec::new(),
            pids_introduced: 0,
            text_bytes: 0,
        }
    }

    /// The trace's own process (index 0) is Meta's: its PID, command line, and origin from
    /// the recorder's `mode`.
    pub fn meta(&mut self, meta: &TraceMeta) {
        let attached = meta.extra.iter().any(|(k, v)| k == "mode" && v == "attach");
        let root = &mut self.facts[0];
        root.pid = meta.pid;
        root.command_line = kept_command_line(&meta.command_line);
        self.text_bytes += text_cost(&root.command_line);
        root.origin = if attached {
            ProcessOrigin::Attached
        } else {
            ProcessOrigin::Launched
        };
        self.selected[0] = self.filter.matches(meta.pid);
        self.by_pid.insert(meta.pid, 0);
        self.introduced(meta.pid);
    }

    fn introduced(&mut self, pid: u32) {
        self.pids_introduced += 1;
        if self.first_pids.len() < NAMED_PIDS && !self.first_pids.contains(&pid) {
            self.first_pids.push(pid);
        }
    }

    /// Every process known, by index.
    pub fn facts(&self) -> &[ProcessFacts] {
        &self.facts
    }

    pub fn len(&self) -> usize {
        self.facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// True when the events of process `index` are replayed (it is tracked and selected).
    #[inline]
    pub fn replayed(&self, index: u32) -> bool {
        self.selected.get(index as usize).copied().unwrap_or(false)
    }

    pub fn filter(&self) -> &PidFilter {
        &self.filter
    }

    pub fn unfollowed(&self) -> &[UnfollowedProcess] {
        &self.unfollowed
    }

    /// The process index the events of `thread` belong to.
    #[inline]
    pub fn of_thread(&self, thread: u32) -> u32 {
        if self.threads.is_empty() {
            return 0;
        }
        self.threads.get(&thread).copied().unwrap_or(0)
    }

    /// The index of a PID's current process, if the trace introduced it.
    pub fn of_pid(&self, pid: u32) -> Option<u32> {
        self.by_pid.get(&pid).copied()
    }

    /// A new process at a new index (or `UNTRACKED`: left out by `--pid`, or past the cap).
    /// Returns its index.
    fn add(&mut self, facts: ProcessFacts) -> u32 {
        self.introduced(facts.pid);
        if !self.filter.matches(facts.pid) {
            // Not kept at all: `--pid` can look at any process, even past the cap.
            return UNTRACKED;
        }
        if self.facts.len() >= MAX_PROCESSES {
            // Not remembered by PID either: that map stays bounded whatever the trace holds.
            self.limits.processes_over_limit += 1;
            return UNTRACKED;
        }
        let index = self.facts.len() as u32;
        self.text_bytes += text_cost(&facts.command_line);
        self.selected.push(self.filter.matches(facts.pid));
        self.by_pid.insert(facts.pid, index);
        self.facts.push(facts);
        index
    }

    /// A Process record. Returns the index of a process it added (None when it described one
    /// already known: the trace's own process, or a repeat).
    pub fn process(&mut self, p: &memtrail_format::ProcessInfo) -> Option<u32> {
        if let Some(i) = self.of_pid(p.pid) {
            let known = &mut self.facts[i as usize];
            // The trace's own process, or one known only from a Thread record: this record
            // says what it is. A PID that exited and comes back is a new process.
            if !known.declared && known.exit.is_none() {
                known.parent_pid = p.parent_pid;
                known.origin = p.origin;
                known.command_line = kept_command_line(&p.command_line);
                self.text_bytes += text_cost(&known.command_line);
                known.start_ns = p.time;
                known.declared = true;
                return None;
            }
            // Still running: a repeat. Exited: the PID was reused, a new process below.
            let exited = known.exit.is_some();
            if !exited {
                return None;
            }
        }
        let index = self.add(ProcessFacts {
            pid: p.pid,
            parent_pid: p.parent_pid,
            origin: p.origin,
            command_line: kept_command_line(&p.command_line),
            start_ns: p.time,
            exit: None,
            execs: 0,
            declared: true,
        });
        (index != UNTRACKED).then_some(index)
    }

    /// A Thread record: `thread` belongs to `pid` from here on. A PID the trace did not
    /// introduce becomes a process of unknown origin. Returns the index of a process it added.
    pub fn thread(&mut self, thread: u32, pid: u32, time_ns: u64) -> Option<u32> {
        let (index, added) = match self.of_pid(pid) {
            Some(i) => (i, None),
            None => {
                let i = self.add(ProcessFacts {
                    pid,
                    parent_pid: 0,
                    origin: ProcessOrigin::Other,
                    command_line: Vec::new(),
                    start_ns: time_ns,
                    exit: None,
                    execs: 0,
                    declared: false,
                });
                (i, (i != UNTRACKED).then_some(i))
            }
        };
        if self.threads.len() >= MAX_THREAD_BINDINGS && !self.threads.contains_key(&thread) {
            self.limits.threads_over_limit += 1;
        } else {
            self.threads.insert(thread, index);
        }
        added
    }

    /// An Exec record: the index of the process whose image was replaced (None for a PID the
    /// trace did not introduce, or one past the cap).
    pub fn exec(&mut self, pid: u32, command_line: &[String]) -> Option<u32> {
        let i = self.known(pid)?;
        let p = &mut self.facts[i as usize];
        p.command_line = kept_command_line(command_line);
        self.text_bytes += text_cost(&p.command_line);
        p.execs = p.execs.saturating_add(1);
        Some(i)
    }

    /// A ProcessExit record.
    pub fn exit(&mut self, pid: u32, exit: ExitStatus) {
        if let Some(i) = self.known(pid) {
            self.facts[i as usize].exit = Some(exit);
        }
    }

    /// The Exit record of the trace's own process (it has no PID).
    pub fn root_exit(&mut self, exit: ExitStatus) {
        let root = &mut self.facts[0];
        if root.exit.is_none() {
            root.exit = Some(exit);
        }
    }

    fn known(&mut self, pid: u32) -> Option<u32> {
        match self.of_pid(pid) {
            Some(UNTRACKED) => None,
            Some(i) => Some(i),
            None => {
                // With `--pid`, the processes left out are not known here: not an anomaly.
                if self.filter.is_empty() {
                    self.limits.records_of_unknown_pids += 1;
                }
                None
            }
        }
    }

    /// An Unfollowed record.
    pub fn unfollowed_process(&mut self, pid: u32, parent_pid: u32, reason: &str, time_ns: u64) {
        if self.unfollowed.len() >= MAX_UNFOLLOWED {
            self.limits.unfollowed_over_limit += 1;
            return;
        }
        let reason = cut(reason, MAX_REASON_BYTES);
        self.text_bytes += text_cost([&reason]);
        self.unfollowed.push(UnfollowedProcess {
            pid,
            parent_pid,
            reason,
            time_ns,
        });
    }

    /// The message for `--pid` values that name no process of the trace, if any.
    pub fn unmatched_filter(&self) -> Option<String> {
        let missing: Vec<String> = self
            .filter
            .pids()
            .iter()
            .filter(|&&pid| !self.facts.iter().any(|p| p.pid == pid))
            .map(u32::to_string)
            .collect();
        if missing.is_empty() {
            return None;
        }
        let known: Vec<String> = self.first_pids.iter().map(u32::to_string).collect();
        let more = self.pids_introduced > known.len() as u64;
        Some(format!(
            "--pid {}: no such process in this trace (its processes: {}{}; `memtrail info` lists them)",
            missing.join(", "),
            known.join(", "),
            if more {
                " and others".to_owned()
            } else {
                String::new()
            }
        ))
    }

    /// Bytes this table holds, roughly (for the memory budget; texts replaced by an exec stay
    /// counted). Cheap: called on every process record.
    pub fn bytes(&self) -> u64 {
        (self.facts.len() * 160
            + self.unfollowed.len() * 48
            + self.by_pid.capacity() * 16
            + self.threads.capacity() * 16) as u64
            + self.text_bytes
    }
}
