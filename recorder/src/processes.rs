//! The traced processes as the recorder knows them: which are traced, which thread belongs to
//! which, which have ended, and what the trace has been told about each.
//!
//! Owns: the process table (pid, parent, origin, its address space's generation, whether its
//! probes are attached, whether it ended), the thread-to-process bindings written into the
//! trace, and decoding the kernel's exit code. Must not: attach probes or read events (the
//! session does, and tells this table what happened).

use memtrail_format::IntMap;

/// One traced process.
#[derive(Debug, Clone)]
pub struct TracedProcess {
    pub pid: u32,
    /// 0 when unknown (a process attached with -p).
    pub parent: u32,
    /// Changes at every exec: stacks are cached per address space, not per pid.
    pub space: u32,
    /// Its allocator probes are attached (a vfork child shares its parent's until it execs).
    pub probed: bool,
    /// It ended (its exit was seen, or it is gone from /proc).
    pub exited: bool,
    /// When the recorder learnt of it.
    pub known_since: std::time::Instant,
}

/// Every process traced so far.
pub struct ProcessTable {
    processes: IntMap<u32, TracedProcess>,
    /// The first traced process: threads not bound otherwise belong to it (the format's rule).
    first_pid: u32,
    /// tid -> pid, as last written into the trace (absent: `first_pid`).
    threads: IntMap<u32, u32>,
    next_space: u32,
}

impl ProcessTable {
    pub fn new(first_pid: u32) -> ProcessTable {
        ProcessTable {
            processes: IntMap::default(),
            first_pid,
            threads: IntMap::default(),
            next_space: 0,
        }
    }

    /// Adds a process (its probes not attached yet); false if it was already known.
    pub fn add(&mut self, pid: u32, parent: u32) -> bool {
        if self.processes.get(&pid).is_some_and(|p| !p.exited) {
            return false;
        }
        let space = self.new_space();
        self.processes.insert(
            pid,
            TracedProcess {
                pid,
                parent,
                space,
                probed: false,
                exited: false,
                known_since: std::time::Instant::now(),
            },
        );
        true
    }

    fn new_space(&mut self) -> u32 {
        self.next_space += 1;
        self.next_space
    }

    pub fn get(&self, pid: u32) -> Option<&TracedProcess> {
        self.processes.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut TracedProcess> {
        self.processes.get_mut(&pid)
    }

    /// The address-space generation of `pid` (0 for a process not in the table).
    pub fn space_of(&self, pid: u32) -> u32 {
        self.processes.get(&pid).map_or(0, |p| p.space)
    }

    /// Process `pid` replaced its image: a new address space.
    pub fn exec(&mut self, pid: u32) {
        let space = self.new_space();
        if let Some(process) = self.processes.get_mut(&pid) {
            process.space = space;
        }
    }

    /// Marks `pid` ended; true if it was running.
    pub fn exited(&mut self, pid: u32) -> bool {
        match self.processes.get_mut(&pid) {
            Some(process) if !process.exited => {
                process.exited = true;
                true
            }
            _ => false,
        }
    }

    /// Running processes without probes of their own, known for longer than `age`.
    pub fn unprobed_older_than(&self, age: std::time::Duration) -> Vec<(u32, u32)> {
        self.processes
            .values()
            .filter(|p| !p.exited && !p.probed && p.known_since.elapsed() > age)
            .map(|p| (p.pid, p.parent))
            .collect()
    }

    /// The processes not known to have ended.
    pub fn running(&self) -> impl Iterator<Item = u32> + '_ {
        self.processes.values().filter(|p| !p.exited).map(|p| p.pid)
    }

    pub fn count(&self) -> usize {
        self.processes.len()
    }

    /// Binds thread `tid` to process `pid`; true when the trace must be told (a `Thread`
    /// record), i.e. when the binding differs from what the trace implies so far.
    pub fn bind_thread(&mut self, tid: u32, pid: u32) -> bool {
        let current = self.threads.get(&tid).copied().unwrap_or(self.first_pid);
        if current == pid {
            return false;
        }
        self.threads.insert(tid, pid);
        true
    }
}

/// How a process ended, from the kernel's `task_struct.exit_code` (a wait status): the exit
/// code, or the signal that killed it.
pub fn decode_exit_code(exit_code: u32) -> (Option<i32>, Option<i32>) {
    let signal = (exit_code & 0x7f) as i32;
    if signal == 0 {
        (Some(((exit_code >> 8) & 0xff) as i32), None)
    } else {
        (None, Some(signal))
    }
}

/// Whether process `pid` is gone or a zombie (it ended; its parent has not reaped it yet).
pub fn has_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_ascii_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Whether processes `a` and `b` share one address space (a vfork child and its parent
/// before the child execs), by `kcmp(KCMP_VM)`; false when it cannot be told.
pub fn share_address_space(a: u32, b: u32) -> bool {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp only compares kernel objects of two processes; no memory of ours is passed.
    let result = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a as libc::c_long,
            b as libc::c_long,
            KCMP_VM,
            0,
            0,
        )
    };
    result == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_decode_as_wait_statuses() {
        assert_eq!(decode_exit_code(0), (Some(0), None));
        assert_eq!(decode_exit_code(3 << 8), (Some(3), None));
        assert_eq!(decode_exit_code(9), (None, Some(9)));
        assert_eq!(decode_exit_code(11 | 0x80), (None, Some(11))); // core dumped
    }

    #[test]
    fn threads_are_bound_only_when_the_trace_would_say_otherwise() {
        let mut table = ProcessTable::new(100);
        table.add(100, 0);
        table.add(200, 100);
        // The first process's threads need no record.
        assert!(!table.bind_thread(100, 100));
        assert!(!table.bind_thread(101, 100));
        // A child's thread does, once.
        assert!(table.bind_thread(200, 200));
        assert!(!table.bind_thread(200, 200));
        // A tid reused by the first process again.
        assert!(table.bind_thread(200, 100));
    }

    #[test]
    fn an_exec_gives_a_new_address_space() {
        let mut table = ProcessTable::new(1);
        table.add(1, 0);
        let before = table.space_of(1);
        table.exec(1);
        assert_ne!(table.space_of(1), before);
        assert!(table.exited(1));
        assert!(!table.exited(1));
        assert_eq!(table.running().count(), 0);
    }

    #[test]
    fn a_process_shares_its_own_address_space() {
        let me = std::process::id();
        assert!(share_address_space(me, me));
    }
}
