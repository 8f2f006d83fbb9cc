//! mem_forget: a leak through `std::mem::forget`.
//!
//! For each frame (200 a second for SECONDS), `submit_frame` fills a 4 KiB `Vec<u8>` and hands
//! it to a completion queue as a raw pointer and length, calling `mem::forget` so that the
//! `Vec` is not freed while the queue holds it. The queue's consumer (`complete`) reads the
//! frame but never rebuilds the `Vec` (`Vec::from_raw_parts`) to drop it: nothing frees it.
//!
//! What it leaks: one 4096-byte buffer per frame, from __rust_alloc <- submit_frame <- main.
//! `submit_frame` is `#[inline(never)]` so that it stays in the stack.
//! A correct report: the first candidate is a `leak` of 4096-byte blocks whose frames include
//! submit_frame, growing until the end.
//!
//! Usage: mem_forget [SECONDS]   (default 2)

use std::hint::black_box;

/// A frame as a foreign completion queue would hold it.
struct RawFrame {
    pointer: *const u8,
    length: usize,
}

/// The bug: the buffer is forgotten here and nobody ever takes it back.
#[inline(never)]
fn submit_frame(sequence: u64) -> RawFrame {
    let mut frame = vec![0u8; 4096];
    frame[0] = (sequence % 251) as u8;
    let raw = RawFrame {
        pointer: frame.as_ptr(),
        length: frame.len(),
    };
    std::mem::forget(frame);
    raw
}

#[inline(never)]
fn complete(frame: &RawFrame) -> u64 {
    // SAFETY: the pointer and length come from a forgotten Vec<u8> that is never freed.
    let bytes = unsafe { std::slice::from_raw_parts(frame.pointer, frame.length) };
    u64::from(bytes[0])
}

fn main() {
    let mut checksum = 0u64;
    memtrail_rust_leaks::paced(memtrail_rust_leaks::seconds_from_args(), 200, |i| {
        let frame = submit_frame(i);
        checksum = checksum.wrapping_add(black_box(complete(&frame)));
    });
    println!("checksum {checksum}");
}
