//! Known call paths for unwinding a Rust release build (no frame pointers).
//!
//! Allocations, each of a size no other call here makes, through Rust's global allocator
//! (which ends in glibc's malloc):
//! - 56789 B: malloc <- ... <- `Registry::reserve` <- `Registry::register` <- `build` <- `main`
//! - 67890 B: malloc <- ... <- `spawned` <- the thread's closure ... (on a second thread)
//!
//! Both blocks are leaked on purpose. Usage: unwind_rust   Prints "kept N".

use std::hint::black_box;

struct Registry {
    entries: Vec<Box<[u8]>>,
}

impl Registry {
    #[inline(never)]
    fn register(&mut self, bytes: usize) {
        let name = format!("entry {bytes}");
        self.reserve(bytes);
        black_box(name);
    }

    #[inline(never)]
    fn reserve(&mut self, bytes: usize) {
        let block = vec![7u8; black_box(bytes)].into_boxed_slice();
        self.entries.push(black_box(block));
    }
}

#[inline(never)]
fn build() -> Registry {
    let mut registry = Registry {
        entries: Vec::with_capacity(4),
    };
    registry.register(black_box(56789));
    registry
}

#[inline(never)]
fn spawned() -> usize {
    let block = vec![9u8; black_box(67890)];
    let len = block.len();
    std::mem::forget(black_box(block));
    len
}

fn main() {
    let registry = build();
    let thread = std::thread::spawn(spawned);
    let spawned_len = thread.join().unwrap_or(0);
    println!("kept {}", registry.entries.len() + spawned_len);
    std::mem::forget(registry);
}
