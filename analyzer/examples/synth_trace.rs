//! Writes a synthetic trace shaped like a malloc-heavy program, for timing the analyzer.
//!
//! `cargo run --release -p memtrail --example synth_trace -- OUT.trace [ALLOCATIONS [STACKS]]`
//! (default 5,000,000 allocations, 99% of them freed, from 8,000 (STACKS) symbolized stacks of depth
//! 8-12, sizes 16-4096 B, about 50,000 blocks live at a time).
//!
//! `... --example synth_trace -- --live-blocks OUT.trace [N]` writes N (default 10,000,000)
//! allocations from the same stacks that are never freed: N blocks live at the end, for
//! measuring the analyzer's memory per live block (`bench/analyze.sh --live-blocks`).

use memtrail_format::{
    AllocApi, EndTotals, FreeApi, Module, Record, Stack, StackFrame, Symbol, SymbolFrame,
    TraceMeta, TraceWriter, Unwinder,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let keep_all = args.next_if_eq("--live-blocks").is_some();
    let out = args
        .next()
        .ok_or("usage: synth_trace [--live-blocks] OUT.trace [ALLOCATIONS [STACKS]]")?;
    let default_n = if keep_all { 10_000_000 } else { 5_000_000 };
    let n: u64 = args.next().map_or(Ok(default_n), |s| s.parse())?;
    let stacks: u32 = args.next().map_or(Ok(8000), |s| s.parse())?;
    let meta = TraceMeta {
        tool_version: "synthetic".into(),
        command_line: vec!["synthetic-churn".into(), n.to_string()],
        page_size: 4096,
        ..TraceMeta::default()
    };
    let mut w = TraceWriter::create(&out, &meta)?;
    w.write(&Record::Module(Box::new(Module {
        id: 0,
        path: "/usr/bin/churn".into(),
        build_id: vec![7; 20],
        ranges: vec![],
    })))?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let file = w.intern("src/churn.c")?;
    // 2000 functions; each stack is a path of 8-12 of them.
    let mut symbolized = std::collections::HashSet::new();
    for id in 0..stacks {
        let depth = 8 + rng.below(5);
        let mut frames = Vec::new();
        for d in 0..depth {
            let f = if d + 1 == depth {
                0
            } else {
                rng.below(2000) + 1
            };
            let offset = f * 0x40;
            frames.push(StackFrame {
                module: 0,
                offset,
                address: 0x5555_0000_0000 + offset,
            });
            if symbolized.insert(f) {
                let function = w.intern(&format!("function_{f}"))?;
                w.write(&Record::Symbol(Symbol {
                    module: 0,
                    offset,
                    frames: vec![SymbolFrame {
                        function,
                        file,
                        line: f as u32,
                    }],
                }))?;
            }
        }
        w.write(&Record::Stack(Stack {
            id,
            unwinder: Unwinder::FramePointer,
            truncated: false,
            frames,
        }))?;
    }
    let mut live: Vec<u64> = Vec::new();
    let mut next_addr = 0x1000_0000u64;
    let mut time = 0u64;
    let (mut allocs, mut frees) = (0u64, 0u64);
    for _ in 0..n {
        time += 600 + rng.below(400);
        // Zipf-like: small ids far more often.
        let r = rng.below(u64::from(stacks)) + 1;
        let stack = ((r * r) / u64::from(stacks)) as u32 % stacks;
        let size = 16 + rng.below(4081);
        let address = next_addr;
        next_addr += size.next_multiple_of(16) + 16;
        w.write(&Record::Alloc {
            time,
            thread: 1,
            address,
            size,
            stack,
            api: AllocApi::Malloc,
        })?;
        allocs += 1;
        if keep_all {
            continue;
        }
        if rng.below(100) != 0 {
            live.push(address);
        }
        if live.len() > 50_000 || (live.len() > 1 && rng.below(2) == 0) {
            let i = rng.below(live.len() as u64) as usize;
            let a = live.swap_remove(i);
            time += 300;
            w.write(&Record::Free {
                time,
                thread: 1,
                address: a,
                size: 0,
                api: FreeApi::Free,
            })?;
            frees += 1;
        }
    }
    w.write(&Record::End {
        time,
        totals: EndTotals {
            allocations: allocs,
            frees,
            reallocs: 0,
            lost: 0,
        },
    })?;
    w.finish_sync()?;
    eprintln!("wrote {out}: {allocs} allocations, {frees} frees");
    Ok(())
}
