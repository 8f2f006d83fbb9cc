//! The whole analysis on hostile traces: replay, aggregates, and every renderer (text, JSON,
//! CSV/Parquet/JSON tables, folded stacks, flame-graph SVGs, the other SVGs, both HTML reports,
//! a diff). Nothing may panic, abort, hang or allocate past libFuzzer's `-rss_limit_mb`,
//! whatever a trace declares. Run:
//! `cd analyzer/fuzz && cargo +nightly fuzz run analyze seeds -- -rss_limit_mb=1024`.
//!
//! An input that starts with the trace file magic is a trace file as it is (the crafted seeds
//! under seeds/, written by `cargo run -p memtrail --example hostile_seeds`). Otherwise the
//! first byte picks how the rest is used. Even: the rest is a trace file. Odd: the rest drives a generator of records
//! that the real writer encodes into a valid trace, so checksums and the wire encoding never
//! stop the input before the analysis sees it; its numbers lean to the extremes (0, 2^32,
//! near 2^64) and its stacks can be deep.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use memtrail::budget::MemoryLimit;
use memtrail::cli::Metric;
use memtrail::diff::{DiffOptions, Normalize};
use memtrail::render::{self, export::TableFormat};
use memtrail::{ReplayOptions, report};
use memtrail_format::{
    AllocApi, EndTotals, FreeApi, LostReason, MappingRange, Module, ProcessInfo, ProcessOrigin,
    Record, Stack, StackFrame, Symbol, SymbolFrame, TraceMeta, TraceWriter, Unwinder,
    WriterOptions,
};

/// Reads the fuzzer's bytes as the generator's choices; an exhausted input reads as zeros.
struct Choices<'a> {
    bytes: &'a [u8],
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// A number that is small most of the time, and sometimes at a boundary.
    fn number(&mut self) -> u64 {
        let kind = self.byte();
        let low = u64::from(self.byte());
        match kind % 8 {
            0..=2 => low,
            3 => low << 12,
            4 => u64::from(self.u32()),
            5 => u64::MAX - low,
            6 => (1 << 63) + low,
            _ => (u64::from(self.u32()) << 32) | u64::from(self.u32()),
        }
    }

    /// A heap-like address: a few distinct ones, so that frees find their blocks.
    fn address(&mut self) -> u64 {
        match self.byte() % 16 {
            0 => 0,
            1 => self.number(),
            n => 0x5555_0000_0000 + u64::from(n) * 0x40 + u64::from(self.byte()) * 0x1000,
        }
    }

    fn text(&mut self) -> String {
        let len = usize::from(self.byte() % 48);
        let taken = len.min(self.bytes.len());
        let (text, rest) = self.bytes.split_at(taken);
        self.bytes = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    /// A stack depth: mostly short, sometimes far deeper than any recorder writes.
    fn depth(&mut self) -> usize {
        match self.byte() % 8 {
            0..=4 => usize::from(self.byte() % 16),
            5 => 127,
            6 => 4096,
            _ => 65_536,
        }
    }
}

/// A valid trace whose records are chosen by `choices`.
fn generated_trace(mut choices: Choices<'_>) -> Vec<u8> {
    let meta = TraceMeta {
        tool_version: choices.text(),
        host_name: choices.text(),
        kernel_release: choices.text(),
        pid: choices.u32(),
        command_line: vec![choices.text(), choices.text()],
        start_wall_ns: choices.number(),
        start_monotonic_ns: choices.number(),
        page_size: choices.u32(),
        sample_bytes: match choices.byte() % 4 {
            0 => choices.number(),
            _ => 0,
        },
        time_resolution_ns: choices.u32().max(1) % 1_000_000_001,
        extra: vec![(choices.text(), choices.text())],
    };
    let options = WriterOptions {
        frame_bytes: 64 << 10,
        level: 1,
        flush_interval: None,
    };
    let Ok(mut writer) = TraceWriter::with_options(Vec::new(), &meta, options) else {
        return Vec::new();
    };
    let mut time = 0u64;
    while !choices.is_empty() {
        // Times mostly go forward a little, sometimes jump or go back.
        time = match choices.byte() % 8 {
            0 => choices.number(),
            1 => time.saturating_sub(u64::from(choices.byte())),
            _ => time.saturating_add(u64::from(choices.byte()) * 1000),
        };
        let record = match choices.byte() % 16 {
            0..=4 => Record::Alloc {
                time,
                // Half on the few threads the Thread records bind.
                thread: match choices.byte() % 2 {
                    0 => choices.u32(),
                    _ => u32::from(choices.byte() % 8),
                },
                address: choices.address(),
                size: choices.number(),
                stack: u32::from(choices.byte() % 8),
                api: AllocApi::from_u8(choices.byte() % 10).unwrap_or(AllocApi::Malloc),
            },
            5..=7 => Record::Free {
                time,
                thread: match choices.byte() % 2 {
                    0 => choices.u32(),
                    _ => u32::from(choices.byte() % 8),
                },
                address: choices.address(),
                size: choices.number(),
                api: FreeApi::from_u8(choices.byte() % 2).unwrap_or(FreeApi::Free),
            },
            8 => Record::Realloc {
                time,
                thread: choices.u32(),
                old_address: choices.address(),
                new_address: choices.address(),
                size: choices.number(),
                stack: u32::from(choices.byte() % 8),
                api: AllocApi::Realloc,
            },
            9 => {
                let depth = choices.depth();
                let module = u32::from(choices.byte() % 4);
                let base = choices.number();
                Record::Stack(Stack {
                    id: match choices.byte() % 4 {
                        0 => choices.u32(),
                        n => u32::from(n),
                    },
                    unwinder: Unwinder::from_u8(choices.byte()),
                    truncated: choices.byte() % 2 == 0,
                    frames: (0..depth as u64)
                        .map(|i| StackFrame {
                            module,
                            offset: base.wrapping_add(i),
                            address: base.wrapping_add(i),
                        })
                        .collect(),
                })
            }
            10 => Record::Symbol(Symbol {
                module: u32::from(choices.byte() % 4),
                offset: choices.number(),
                frames: (0..choices.byte() % 8)
                    .map(|_| SymbolFrame {
                        function: u32::from(choices.byte() % 8),
                        file: u32::from(choices.byte() % 8),
                        line: choices.u32(),
                    })
                    .collect(),
            }),
            11 => Record::String {
                id: u32::from(choices.byte() % 8),
                value: choices.text(),
            },
            12 => Record::Module(Box::new(Module {
                id: u32::from(choices.byte() % 4),
                path: choices.text(),
                build_id: choices.text().into_bytes(),
                ranges: vec![MappingRange {
                    start: choices.number(),
                    end: choices.number(),
                    file_offset: choices.number(),
                }],
            })),
            13 => Record::Lost {
                time,
                count: choices.number(),
                reason: LostReason::from_u8(choices.byte()),
            },
            14 => Record::Rss {
                time,
                rss_bytes: choices.number(),
                anon_bytes: choices.number(),
            },
            // The process records (format 1.1), over a few PIDs and threads so that they
            // meet each other and the events.
            _ => match choices.byte() % 8 {
                0 => Record::Exit {
                    time,
                    code: Some(choices.u32() as i32),
                    signal: None,
                },
                1 => Record::Process(Box::new(ProcessInfo {
                    pid: u32::from(choices.byte() % 8),
                    parent_pid: u32::from(choices.byte() % 8),
                    time,
                    origin: ProcessOrigin::from_u8(choices.byte()),
                    command_line: vec![choices.text(), choices.text()],
                })),
                2 => Record::Thread {
                    thread: match choices.byte() % 2 {
                        0 => choices.u32(),
                        _ => u32::from(choices.byte() % 8),
                    },
                    pid: u32::from(choices.byte() % 8),
                },
                3 => Record::Exec {
                    time,
                    pid: u32::from(choices.byte() % 8),
                    command_line: vec![choices.text()],
                },
                4 => Record::ProcessExit {
                    time,
                    pid: u32::from(choices.byte() % 8),
                    code: None,
                    signal: Some(choices.u32() as i32),
                },
                5 => Record::Unfollowed {
                    time,
                    pid: choices.u32(),
                    parent_pid: u32::from(choices.byte() % 8),
                    reason: choices.text(),
                },
                _ => Record::End {
                    time,
                    totals: EndTotals {
                        allocations: choices.number(),
                        frees: choices.number(),
                        reallocs: choices.number(),
                        lost: choices.number(),
                    },
                },
            },
        };
        // The writer refuses what no recorder could write (a record past its size cap);
        // the trace then ends with what came before, as a recorder's would.
        if writer.write(&record).is_err() {
            break;
        }
    }
    writer.finish().unwrap_or_default()
}

/// Every report of one trace, into memory.
fn analyze_everything(trace: &[u8]) {
    let path = Path::new("fuzz.trace");
    // Well below libFuzzer's -rss_limit_mb: what the budget allows must fit with the
    // renderers' own memory on top.
    let options = ReplayOptions {
        memory_limit: MemoryLimit::from_flag(256 << 20),
        min_age_ns: 0,
        collect_allocations: true,
        ..ReplayOptions::default()
    };
    let Ok(a) = memtrail::analyze_bytes(path, trace, options) else {
        return;
    };
    let _ = a.warnings();
    let leaks = report::leaks(&a, Some(20));
    let _ = render::table::info(&a);
    let _ = render::json::info(&a);
    let _ = render::table::leaks(&a, &leaks, 8);
    let _ = render::json::leaks(&a, &leaks);
    let _ = render::table::timeline(&a);
    let _ = render::json::timeline(&a);
    let _ = render::svg::timeline(&a);
    let lifetimes = report::lifetimes(&a, &report::Selection::default());
    if let Ok(l) = &lifetimes {
        let _ = render::table::lifetimes(&a, l, "all");
        let _ = render::json::lifetimes(&a, l, "all");
        let _ = render::svg::lifetimes(&a, l, "all");
        if let Ok(mut df) = render::export::lifetimes(l) {
            let _ = render::export::write(&mut df, TableFormat::Csv, Vec::new());
        }
        let _ = render::html::single(&a, &leaks, l);
    }
    for metric in [
        Metric::Unfreed,
        Metric::Allocated,
        Metric::Allocations,
        Metric::Peak,
    ] {
        let lines = render::flamegraph::folded(&a, metric);
        for inverted in [false, true] {
            let _ = render::flamegraph::svg(&a, metric, inverted, &lines, Vec::new());
        }
    }
    let tables = [
        render::export::stacks(&a),
        render::export::candidates(&a, &leaks),
        render::export::allocations(a.replay.allocations.as_deref().unwrap_or(&[])),
    ];
    for mut df in tables.into_iter().flatten() {
        for format in [TableFormat::Csv, TableFormat::Json, TableFormat::Parquet] {
            let _ = render::export::write(&mut df, format, Vec::new());
        }
    }
    for normalize in [Normalize::None, Normalize::Duration] {
        let options = DiffOptions {
            normalize,
            thresholds: Vec::new(),
        };
        let Ok(d) = memtrail::diff::diff(&a, &a, &options) else {
            continue;
        };
        let _ = render::table::diff(&d, 20, 8);
        let _ = render::json::diff(&d);
        let lines = render::flamegraph::diff_folded(&d);
        let _ = render::flamegraph::diff_svg(&d, &lines, Vec::new());
        if let Ok(mut df) = render::export::diff(&[&d]) {
            let _ = render::export::write(&mut df, TableFormat::Csv, Vec::new());
        }
        if let Ok(l) = &lifetimes {
            let _ = render::html::compared(&a, &a, &d, l, l, 20);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&memtrail_format::frame::MAGIC) {
        return analyze_everything(data);
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        analyze_everything(rest);
    } else {
        analyze_everything(&generated_trace(Choices { bytes: rest }));
    }
});
