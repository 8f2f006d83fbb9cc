//! Following a process tree: new processes started by followed ones, and the execs and exits
//! of traced ones, as process events in the ring buffer.
//!
//! A new process of a followed one is marked traced (inheriting the follow flag) when it is
//! forked, and stopped with SIGSTOP in its own context at its first moment in user space (the
//! return of libc's `_Fork`, probed in every process: forks are rare, a few microseconds
//! each) or at its exec (vfork, posix_spawn), before it runs code of its own that allocates:
//! user space attaches its uprobes (which are scoped to one process) and resumes it, so not
//! one of its allocations goes unseen. An exec stops the process the same way, before the new
//! image runs, so user space reads the new mappings first. (A child-context kernel hook such
//! as fentry on `schedule_tail` would not need libc, but tracing programs are not allowed
//! everywhere: this kernel refuses to load them.) Every stop is written into `STOPPED_PROCESSES` before
//! the signal is sent: the recorder's watchdog resumes what is listed there if the recorder
//! dies.
//!
//! Owns: `TRACED_PROCESSES` updates by the kernel side, `STOPPED_PROCESSES` and the process
//! events. Must not: stop a process that is not traced, or a thread (threads share their
//! process's probes).

use memtrail_ebpf_abi::{
    EVENT_PROCESS_EXEC, EVENT_PROCESS_EXIT, EVENT_PROCESS_START, EVENT_PROCESS_STOPPED, Event,
    PROCESS_FOLLOWED, PROCESS_FOUND, PROCESS_TABLE_FULL, STACK_NONE, STOP_EXEC, STOP_START,
    TRACED_FOLLOW,
};

use aya_ebpf::helpers::bpf_get_current_pid_tgid;

use crate::{
    access::{
        current_task, global, lookup_u32, now_ns, read_kernel_u32, read_kernel_u64, send_signal,
    },
    emit::emit_now,
    maps::{
        BINPRM_FILE_OFFSET, EXE_DEVICE, EXE_FLAGS, EXE_INODE, FILE_INODE_OFFSET, INODE_INO_OFFSET,
        INODE_SB_OFFSET, PENDING_PROCESSES, SB_DEV_OFFSET, STOPPED_PROCESSES,
        TASK_EXIT_CODE_OFFSET, TASK_PID_OFFSET, TASK_TGID_OFFSET, TRACED_PROCESSES,
    },
};

/// SIGSTOP and SIGCONT on x86-64.
const SIGSTOP: u32 = 19;
const SIGCONT: u32 = 18;

/// A process event (no address, no stack).
#[inline(always)]
fn process_event(kind: u8, api: u8, tgid: u32, parent: u32, exit_code: u64) -> Event {
    Event {
        time_ns: now_ns(),
        address: 0,
        old_address: u64::from(parent),
        size: exit_code,
        stack_key: 0,
        tid: tgid,
        tgid,
        kind,
        api,
        stack_kind: STACK_NONE,
        padding: 0,
        padding_wide: 0,
    }
}

/// Stops the current process (SIGSTOP) and lists it in `STOPPED_PROCESSES`. Listed only once
/// the signal is pending, so user space never sends its SIGCONT before the SIGSTOP (which
/// would leave the process stopped); a process that cannot be listed is let go at once
/// (SIGCONT discards the pending stop): no one would resume it.
#[inline(always)]
pub fn stop_current(tgid: u32, reason: u32) {
    // Key 0: the recorder's watchdog says the recorder is gone; no one would resume it.
    if lookup_u32(&STOPPED_PROCESSES, 0).is_some() || !send_signal(SIGSTOP) {
        return;
    }
    if STOPPED_PROCESSES.insert(&tgid, &reason, 0).is_err() {
        send_signal(SIGCONT);
        return;
    }
    emit_now(process_event(
        EVENT_PROCESS_STOPPED,
        reason as u8,
        tgid,
        0,
        0,
    ));
}

/// Raw tracepoint `sched_process_fork`, in the parent: a new process (not a thread) of a
/// followed one becomes traced (inheriting the follow flag) and pending: it is stopped where
/// it first runs in user space (`fork_returned`), or at its exec.
#[inline(always)]
pub fn process_forked(child_task: u64) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(flags) = lookup_u32(&TRACED_PROCESSES, parent) else {
        return 0;
    };
    if flags & TRACED_FOLLOW == 0 {
        return 0;
    }
    let (pid_offset, tgid_offset) = (global(&TASK_PID_OFFSET), global(&TASK_TGID_OFFSET));
    if pid_offset == 0 || tgid_offset == 0 {
        return 0;
    }
    let (Some(pid), Some(tgid)) = (
        read_kernel_u32(child_task + u64::from(pid_offset)),
        read_kernel_u32(child_task + u64::from(tgid_offset)),
    ) else {
        return 0;
    };
    if pid != tgid {
        return 0; // a new thread: its process's probes already cover it
    }
    if TRACED_PROCESSES.insert(&tgid, &flags, 0).is_err() {
        emit_now(process_event(
            EVENT_PROCESS_START,
            PROCESS_TABLE_FULL,
            tgid,
            parent,
            0,
        ));
        return 0;
    }
    let _ = PENDING_PROCESSES.insert(&tgid, &parent, 0);
    emit_now(process_event(
        EVENT_PROCESS_START,
        PROCESS_FOLLOWED,
        tgid,
        parent,
        0,
    ));
    0
}

/// Return probe on libc's `_Fork` (every process: it is how `fork` creates processes): in a
/// pending new process (`ret` 0), its first moment in user space, it stops until user space
/// has attached its probes.
#[inline(always)]
pub fn fork_returned(ret: u64) -> u32 {
    if ret != 0 {
        return 0; // the parent, or a failed fork
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if PENDING_PROCESSES.remove(&tgid).is_ok() {
        stop_current(tgid, STOP_START);
    }
    0
}

/// Whether the exec of `bprm` (a `struct linux_binprm`) runs the `--exe` executable: same
/// inode number and device.
#[inline(always)]
fn runs_the_executable(bprm: u64) -> bool {
    let inode_number = global(&EXE_INODE);
    if inode_number == 0 || global(&INODE_INO_OFFSET) == 0 {
        return false;
    }
    let Some(file) = read_kernel_u64(bprm + u64::from(global(&BINPRM_FILE_OFFSET))) else {
        return false;
    };
    let Some(inode) = read_kernel_u64(file + u64::from(global(&FILE_INODE_OFFSET))) else {
        return false;
    };
    if read_kernel_u64(inode + u64::from(global(&INODE_INO_OFFSET))) != Some(inode_number) {
        return false;
    }
    let Some(super_block) = read_kernel_u64(inode + u64::from(global(&INODE_SB_OFFSET))) else {
        return false;
    };
    read_kernel_u32(super_block + u64::from(global(&SB_DEV_OFFSET))) == Some(global(&EXE_DEVICE))
}

/// Raw tracepoint `sched_process_exec` (task, old pid, `bprm`), in the process that exec'ed:
/// a traced one stops before its new image runs; with `--exe`, a process that exec'ed the
/// executable becomes traced and stops the same way.
#[inline(always)]
pub fn process_exec(bprm: u64) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if lookup_u32(&TRACED_PROCESSES, tgid).is_none() {
        if runs_the_executable(bprm) {
            let flags = global(&EXE_FLAGS);
            if TRACED_PROCESSES.insert(&tgid, &flags, 0).is_err() {
                emit_now(process_event(
                    EVENT_PROCESS_START,
                    PROCESS_TABLE_FULL,
                    tgid,
                    0,
                    0,
                ));
                return 0;
            }
            emit_now(process_event(
                EVENT_PROCESS_START,
                PROCESS_FOUND,
                tgid,
                0,
                0,
            ));
            stop_current(tgid, STOP_EXEC);
        }
        return 0;
    }
    // A pending process that did not pass `_Fork` (vfork, posix_spawn) stops here.
    let _ = PENDING_PROCESSES.remove(&tgid);
    emit_now(process_event(EVENT_PROCESS_EXEC, 0, tgid, 0, 0));
    stop_current(tgid, STOP_EXEC);
    0
}

/// Raw tracepoint `sched_process_exit`, in each exiting task: when a traced process's thread
/// group leader exits, the process is reported ended and is no longer traced.
#[inline(always)]
pub fn process_exit() -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tgid != pid {
        return 0;
    }
    if lookup_u32(&TRACED_PROCESSES, tgid).is_none() {
        return 0;
    }
    let offset = global(&TASK_EXIT_CODE_OFFSET);
    let exit_code = if offset == 0 {
        0
    } else {
        read_kernel_u32(current_task() + u64::from(offset)).unwrap_or(0)
    };
    let _ = TRACED_PROCESSES.remove(&tgid);
    let _ = PENDING_PROCESSES.remove(&tgid);
    emit_now(process_event(
        EVENT_PROCESS_EXIT,
        0,
        tgid,
        0,
        u64::from(exit_code),
    ));
    0
}
