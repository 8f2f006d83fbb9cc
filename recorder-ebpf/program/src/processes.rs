//! Following a process tree: new processes started by followed ones, and the execs and exits
//! of traced ones, as process events in the ring buffer.
//!
//! A new process of a followed one is marked traced (inheriting the follow flag) and stopped
//! with SIGSTOP in its own context, before it runs any user code: user space attaches its
//! uprobes (which are scoped to one process) and resumes it, so not one of its allocations
//! goes unseen. An exec stops the process the same way, before the new image runs, so user
//! space reads the new mappings first. Every stop is written into `STOPPED_PROCESSES` before
//! the signal is sent: the recorder's watchdog resumes what is listed there if the recorder
//! dies.
//!
//! Owns: `TRACED_PROCESSES` updates by the kernel side, `STOPPED_PROCESSES` and the process
//! events. Must not: stop a process that is not traced, or a thread (threads share their
//! process's probes).

use memtrail_ebpf_abi::{
    EVENT_PROCESS_EXEC, EVENT_PROCESS_EXIT, EVENT_PROCESS_START, Event, PROCESS_FOLLOWED,
    PROCESS_TABLE_FULL, STACK_NONE, STOP_EXEC, STOP_START, TRACED_FOLLOW,
};

use aya_ebpf::helpers::bpf_get_current_pid_tgid;

use crate::{
    access::{
        current_task, global, lookup_u32, now_ns, read_kernel_u32, read_kernel_u64, send_signal,
    },
    emit::emit_now,
    maps::{
        STOPPED_PROCESSES, TASK_EXIT_CODE_OFFSET, TASK_REAL_PARENT_OFFSET, TASK_TGID_OFFSET,
        TRACED_PROCESSES,
    },
};

/// SIGSTOP on x86-64.
const SIGSTOP: u32 = 19;

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

/// Stops the current process (SIGSTOP), listing it in `STOPPED_PROCESSES` first; not stopped
/// if it cannot be listed (the watchdog could not resume it).
#[inline(always)]
pub fn stop_current(tgid: u32, reason: u32) {
    if STOPPED_PROCESSES.insert(&tgid, &reason, 0).is_ok() {
        send_signal(SIGSTOP);
    }
}

/// Runs first in every new task (fentry on `schedule_tail`). A new process (not a thread)
/// whose parent is followed becomes traced and stops until user space resumes it.
#[inline(always)]
pub fn process_started() -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tgid != pid {
        return 0; // a new thread: its process's probes already cover it
    }
    let (tgid_offset, parent_offset) = (global(&TASK_TGID_OFFSET), global(&TASK_REAL_PARENT_OFFSET));
    if tgid_offset == 0 || parent_offset == 0 {
        return 0;
    }
    let Some(parent_task) = read_kernel_u64(current_task() + u64::from(parent_offset)) else {
        return 0;
    };
    let Some(parent) = read_kernel_u32(parent_task + u64::from(tgid_offset)) else {
        return 0;
    };
    let Some(flags) = lookup_u32(&TRACED_PROCESSES, parent) else {
        return 0;
    };
    if flags & TRACED_FOLLOW == 0 {
        return 0;
    }
    if TRACED_PROCESSES.insert(&tgid, &flags, 0).is_err() {
        emit_now(process_event(EVENT_PROCESS_START, PROCESS_TABLE_FULL, tgid, parent, 0));
        return 0;
    }
    emit_now(process_event(EVENT_PROCESS_START, PROCESS_FOLLOWED, tgid, parent, 0));
    stop_current(tgid, STOP_START);
    0
}

/// Raw tracepoint `sched_process_exec`, in the process that exec'ed: a traced one stops
/// before its new image runs.
#[inline(always)]
pub fn process_exec() -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if lookup_u32(&TRACED_PROCESSES, tgid).is_none() {
        return 0;
    }
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
    emit_now(process_event(EVENT_PROCESS_EXIT, 0, tgid, 0, u64::from(exit_code)));
    0
}
