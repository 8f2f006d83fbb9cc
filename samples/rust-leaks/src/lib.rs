//! Rust leak samples for memtrail: safe Rust can leak too.
//!
//! Two programs, each running a request loop for a few seconds:
//! - `rc_cycle` (src/bin/rc_cycle.rs): two `Rc`s that point at each other are never dropped;
//! - `mem_forget` (src/bin/mem_forget.rs): a buffer handed out as a raw pointer through
//!   `mem::forget` is never taken back.
//!
//! Each binary's own header says what it leaks, where, and what a correct report says. This
//! library holds what they share: the command line and the paced loop.

use std::time::{Duration, Instant};

/// The run time from the first command-line argument, in seconds (default 2).
pub fn seconds_from_args() -> f64 {
    std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(2.0)
}

/// Calls `step` with 0, 1, 2, ... `per_second` times a second for `seconds`.
pub fn paced(seconds: f64, per_second: u32, mut step: impl FnMut(u64)) {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let pause = Duration::from_secs(1) / per_second.max(1);
    let mut i = 0;
    while Instant::now() < end {
        step(i);
        i += 1;
        std::thread::sleep(pause);
    }
}
