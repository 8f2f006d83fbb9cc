//! Crafted hostile traces: small files that declare a lot. Shared by `tests/hostile.rs` (which
//! checks the analyzer's answers to them), `tests/cli.rs` and `examples/hostile_seeds.rs`
//! (which writes them as fuzzer seeds under `analyzer/fuzz/seeds/`). Every generator is
//! deterministic: the same arguments give the same bytes (the committed seeds are these).

#![allow(dead_code)]

use memtrail_format::testing::TraceBuilder;
use memtrail_format::{
    AllocApi, EndTotals, FreeApi, LostReason, MAX_LIST, MAX_STRING, Module, ProcessOrigin, Record,
    Stack, StackFrame, Symbol, SymbolFrame, TraceMeta, Unwinder, WriterOptions,
};

/// Options whose output depends only on the records: no time-based flushes, the largest
/// frames and the strongest compression (hostile files are as small as they can be).
const OPTIONS: WriterOptions = WriterOptions {
    frame_bytes: 8 << 20,
    level: 9,
    flush_interval: None,
};

/// A trace written with `OPTIONS`.
pub fn writer() -> TraceBuilder {
    let meta = TraceMeta {
        tool_version: "hostile".into(),
        command_line: vec!["hostile".into()],
        page_size: 4096,
        ..TraceMeta::default()
    };
    TraceBuilder::with_options(&meta, OPTIONS)
}

/// The trace's bytes, ended at `time` exactly.
fn end(mut w: TraceBuilder, time: u64) -> Vec<u8> {
    w.end_with(time, EndTotals::default());
    w.bytes()
}

/// `stacks` stacks of `depth` frames each (at most `MAX_LIST`), each allocating one block
/// that is never freed, so every stack is a leak candidate the reports resolve.
pub fn deep_stacks(stacks: u32, depth: usize) -> Vec<u8> {
    let mut w = writer();
    w.record(Record::Module(Box::new(Module {
        id: 0,
        path: "/usr/bin/deep".into(),
        build_id: vec![],
        ranges: vec![],
    })));
    let depth = depth.min(MAX_LIST);
    for id in 0..stacks {
        // A cycle of 16 return addresses (deep recursion): it compresses to nearly nothing.
        let frames = (0..depth as u64)
            .map(|d| StackFrame {
                module: 0,
                offset: (d % 16) * 16,
                address: 0x5555_0000_0000 + (d % 16) * 16,
            })
            .collect();
        w.record(Record::Stack(Stack {
            id,
            unwinder: Unwinder::FramePointer,
            truncated: false,
            frames,
        }));
    }
    for id in 0..stacks {
        w.alloc(1_000 + u64::from(id), 0x1000 + u64::from(id) * 64, 64, id);
    }
    end(w, 2_000_000_000)
}

/// `n` blocks allocated at consecutive addresses from one stack and never freed: a few bytes
/// a block once compressed, each a slot in the analyzer's live-block table.
pub fn live_blocks(n: u64) -> Vec<u8> {
    let mut w = writer();
    for i in 0..n {
        w.alloc(i, 0x1_0000 + i * 16, 16, 0);
    }
    end(w, n)
}

/// `n` distinct stack ids, one allocation each, no stack records: one accumulator each.
pub fn many_stacks(n: u32) -> Vec<u8> {
    let mut w = writer();
    for i in 0..n {
        w.alloc(u64::from(i), 0x1_0000 + u64::from(i) * 16, 16, i);
    }
    end(w, u64::from(n))
}

/// Sizes, counts and times near 2^64: sums that would wrap.
pub fn huge_values() -> Vec<u8> {
    let mut w = writer();
    let big = u64::MAX - 1000;
    for (i, stack) in [0u32, 0, 1, 2].into_iter().enumerate() {
        let i = i as u64;
        w.alloc(10 + i, 0x1000 + i * 0x100, big, stack);
    }
    // A free of one, then another huge block at the same place.
    w.record(Record::Free {
        time: 20,
        thread: 1,
        address: 0x1000,
        size: 0,
        api: FreeApi::Free,
    });
    w.alloc(21, 0x1000, u64::MAX, 3);
    // A realloc to a huge size and a mapping to the end of the address space, cut in the
    // middle and unmapped without a length.
    w.record(Record::Realloc {
        time: 22,
        thread: 1,
        old_address: 0x1100,
        new_address: 0x9000,
        size: u64::MAX,
        stack: 4,
        api: AllocApi::Realloc,
    });
    w.record(Record::Alloc {
        time: 23,
        thread: 1,
        address: u64::MAX - 0xffff,
        size: u64::MAX,
        stack: 5,
        api: AllocApi::Mmap,
    });
    w.record(Record::Free {
        time: 24,
        thread: 1,
        address: u64::MAX - 0x8000,
        size: 0x1000,
        api: FreeApi::Munmap,
    });
    w.record(Record::Free {
        time: 25,
        thread: 1,
        address: u64::MAX - 0x4000,
        size: 0,
        api: FreeApi::Munmap,
    });
    for reason in [
        LostReason::RingBufferFull,
        LostReason::RingBufferFull,
        LostReason::Recorder,
    ] {
        w.record(Record::Lost {
            time: 26,
            count: u64::MAX - 1,
            reason,
        });
    }
    w.record(Record::Rss {
        time: u64::MAX - 2,
        rss_bytes: u64::MAX,
        anon_bytes: u64::MAX,
    });
    // The clock at the end of time: curves' buckets at their widest.
    w.alloc(u64::MAX - 1, 0x2000, u64::MAX / 2, 6);
    w.record(Record::End {
        time: u64::MAX,
        totals: EndTotals {
            allocations: u64::MAX,
            frees: u64::MAX,
            reallocs: u64::MAX,
            lost: u64::MAX,
        },
    });
    w.bytes()
}

/// Names as large as the format allows: `strings` strings of `MAX_STRING` bytes, a symbol
/// with `MAX_LIST` inlined frames naming them, and `stacks` stacks of `depth` frames all at
/// that symbol (with `MAX_LIST`, each would resolve to 2^32 frames of megabyte names without
/// a cap).
pub fn big_names(strings: u32, stacks: u32, depth: usize) -> Vec<u8> {
    let mut w = writer();
    w.record(Record::Module(Box::new(Module {
        id: 0,
        path: "/usr/bin/names".into(),
        build_id: vec![0xab; 256],
        ranges: vec![],
    })));
    for id in 0..strings {
        let value = char::from(b'a' + (id % 26) as u8)
            .to_string()
            .repeat(MAX_STRING);
        w.record(Record::String { id, value });
    }
    w.record(Record::Symbol(Symbol {
        module: 0,
        offset: 0x10,
        frames: (0..MAX_LIST as u32)
            .map(|i| SymbolFrame {
                function: i % strings.max(1),
                file: (i + 1) % strings.max(1),
                line: i,
            })
            .collect(),
    }));
    for id in 0..stacks {
        w.record(Record::Stack(Stack {
            id,
            unwinder: Unwinder::Dwarf,
            truncated: true,
            frames: vec![
                StackFrame {
                    module: 0,
                    offset: 0x10,
                    address: 0x5555_0000_0010,
                };
                depth.min(MAX_LIST)
            ],
        }));
        w.alloc(100 + u64::from(id), 0x1000 + u64::from(id) * 32, 32, id);
    }
    end(w, 1_000_000_000)
}

/// Values an analyzer might take as capacities: stack ids at the edge of its flat table and at
/// the top of the range, module and string ids at u32::MAX, a metadata record with the
/// longest argument list.
pub fn capacity_claims() -> Vec<u8> {
    let meta = TraceMeta {
        tool_version: "hostile".into(),
        command_line: (0..MAX_LIST).map(|i| format!("arg{}", i % 10)).collect(),
        page_size: u32::MAX,
        sample_bytes: 1,
        time_resolution_ns: u32::MAX,
        ..TraceMeta::default()
    };
    let mut w = TraceBuilder::with_options(&meta, OPTIONS);
    w.record(Record::String {
        id: u32::MAX - 1,
        value: "f".into(),
    });
    w.record(Record::Module(Box::new(Module {
        id: u32::MAX - 1,
        path: "/m".into(),
        build_id: vec![],
        ranges: vec![],
    })));
    for (i, stack) in [(1 << 22) - 1, 1 << 22, u32::MAX - 1, u32::MAX]
        .into_iter()
        .enumerate()
    {
        w.record(Record::Stack(Stack {
            id: stack,
            unwinder: Unwinder::FramePointer,
            truncated: false,
            frames: vec![StackFrame {
                module: u32::MAX - 1,
                offset: u64::MAX,
                address: u64::MAX,
            }],
        }));
        w.alloc(10 + i as u64, 0x1000 + i as u64 * 16, 1, stack);
    }
    end(w, 1_000)
}

/// `n` processes (format 1.1), each with a thread of its own and a 16-byte block it never
/// frees, the first hundred with a long command line (100 arguments of 100 bytes); as many
/// unfollowed processes, the first hundred with a 4 KiB reason; and the records a reader cannot trust: a thread bound to a PID never
/// introduced, an exec and an exit of such PIDs, a PID introduced twice, and blocks at
/// `index << 48` (where a process's key would be 0) and above 2^48.
pub fn many_processes(n: u32) -> Vec<u8> {
    let mut w = writer();
    let argv: Vec<String> = (0..100).map(|i| format!("{i:0100}")).collect();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let reason = "r".repeat(4096);
    w.thread(7, 999_999_999)
        .on_thread(7)
        .alloc(1, 0x1000, 16, 0)
        .exec(2, 888_888_888, &["x"])
        .process_exit(3, 777_777_777, Some(1), None)
        .process(4, 5, 1, ProcessOrigin::Forked, &["dup"])
        .process(5, 5, 1, ProcessOrigin::Forked, &["dup"])
        .thread(5, 5)
        .on_thread(5)
        .alloc(6, 1 << 48, 16, 0)
        .alloc(7, 3 << 48, 16, 0)
        .alloc(8, u64::MAX - 15, 16, 0)
        .free(9, 1 << 48)
        .exec(10, 5, &["after"]);
    for i in 0..n {
        let pid = 10_000 + i;
        // The long texts on the first hundred only: the file stays small.
        let long = i < 100;
        w.process(
            100 + u64::from(i),
            pid,
            1,
            ProcessOrigin::Forked,
            if long { &argv } else { &["w"] },
        )
        .thread(pid, pid)
        .on_thread(pid)
        .alloc(
            100 + u64::from(i),
            0x5555_0000 + u64::from(i) * 16,
            16,
            i % 64,
        )
        .unfollowed(
            100 + u64::from(i),
            20_000_000 + i,
            pid,
            if long { &reason } else { "r" },
        );
    }
    end(w, 1_000_000)
}

/// The fuzzer seeds: (file name, bytes). Small files, each declaring far more than its size.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("deep-stacks-300x65536.trace", deep_stacks(300, MAX_LIST)),
        ("live-blocks-10m.trace", live_blocks(10_000_000)),
        ("many-stacks-1m.trace", many_stacks(1_000_000)),
        ("huge-values.trace", huge_values()),
        ("big-names.trace", big_names(4, 4, MAX_LIST)),
        ("capacity-claims.trace", capacity_claims()),
        ("many-processes-100k.trace", many_processes(100_000)),
    ]
}
