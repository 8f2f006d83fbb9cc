//! Ctrl-C (SIGINT) and SIGTERM: both commands stop cleanly on them instead of dying.
//!
//! Owns the one handler the recorder installs and which signal arrived: a recording then
//! closes a complete trace and exits with 128 + the signal's number (the shell convention);
//! `suspects` reports on the samples taken so far. Must not do anything in the handler but
//! store the signal's number (one atomic store is all that is async-signal-safe here); the
//! loops poll [`stop_requested`].

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that asked to stop (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::Relaxed);
}

/// Installs the handler for SIGINT and SIGTERM. Call it first: a signal during setup must
/// still end cleanly, and must never kill the recorder while a launched child waits to be
/// released.
pub fn install_stop_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// True once SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP_SIGNAL.load(Ordering::Relaxed) != 0
}

/// The number of the last signal that asked to stop, if one did.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}
