//! Size and speed of the trace format on a synthetic stream shaped like a malloc-heavy program.
//!
//! Run: `cargo bench -p memtrail-format --bench trace_size` (add `-- --quick` for a 10x smaller
//! stream). Prints bytes per event and encode/decode events per second for several DEFLATE
//! levels, all measured in this one run. The stream: 5 M allocations and 4.95 M frees from
//! about 8,000 stacks of depth 8-12 (Zipf-like popularity), sizes 16-4096 B (most call sites
//! allocate one size, some vary), four threads emitting bursts, addresses from a size-class
//! allocator model with LIFO reuse, and inter-event gaps of a traced program (0.6 us + an
//! exponential tail, 1% pauses of 10-100 us). No real program is this regular or this random;
//! the shape, not the exact figure, is what this measures.

use std::io::Cursor;
use std::time::Instant;

use memtrail_format::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Workload {
    records: Vec<Record>,
    events: u64,
}

fn synthesize(allocs: u64, frees: u64) -> Workload {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    const STACKS: u32 = 8000;
    let mut records = Vec::with_capacity((allocs + frees) as usize + 20_000);
    records.push(Record::Module(Box::new(Module {
        id: 0,
        path: "/usr/bin/app".into(),
        build_id: vec![0xab; 20],
        ranges: vec![MappingRange {
            start: 0x5555_5555_4000,
            end: 0x5555_5565_4000,
            file_offset: 0x1000,
        }],
    })));
    // Stacks: a call tree, so deep frames are shared as in real programs.
    let mut stack_size = Vec::with_capacity(STACKS as usize);
    for id in 0..STACKS {
        let depth = 8 + rng.below(5) as usize;
        let frames = (0..depth)
            .map(|level| {
                let fanout = 1u64 << (level.min(6) * 2);
                let offset = 0x1000 + (level as u64) * 0x10000 + (rng.below(fanout)) * 0x40;
                StackFrame {
                    module: 0,
                    offset,
                    address: 0x5555_5555_4000 + offset - 0x1000,
                }
            })
            .collect();
        records.push(Record::Stack(Stack {
            id,
            unwinder: Unwinder::FramePointer,
            truncated: false,
            frames,
        }));
        // 70% of call sites allocate one size, the rest vary per call (size 0 = varies).
        let size = if rng.unit() < 0.7 {
            (16.0 * 256f64.powf(rng.unit())) as u64
        } else {
            0
        };
        stack_size.push(size);
    }
    // Zipf-like stack choice: a few hot call sites, a long tail.
    let zipf = |rng: &mut Rng| -> u32 {
        let u = rng.unit();
        ((STACKS as f64).powf(u) - 1.0) as u32 % STACKS
    };

    // Size-class allocator model: LIFO free lists per 16-byte class, bump for new blocks.
    let mut free_lists: Vec<Vec<u64>> = vec![Vec::new(); 257];
    let mut top = 0x5555_5570_0000u64;
    let mut live: Vec<(u64, u64)> = Vec::new(); // (address, class)
    let threads = [4242u32, 4243, 4244, 4245];
    let mut thread = threads[0];
    let mut time = 0u64;
    let (mut a, mut f) = (0u64, 0u64);
    while a < allocs || f < frees {
        let gap = 600.0 - 400.0 * rng.unit().max(1e-12).ln();
        time += if rng.unit() < 0.01 {
            10_000 + rng.below(90_000)
        } else {
            gap as u64
        };
        if rng.unit() < 0.02 {
            thread = threads[rng.below(4) as usize];
        }
        let want_free = f < frees && !live.is_empty() && (a >= allocs || rng.unit() < 0.495);
        if want_free {
            // Most blocks die young: pick near the end of the live list.
            let back = ((-rng.unit().max(1e-12).ln()) * 4.0) as usize;
            let idx = live.len() - 1 - back.min(live.len() - 1);
            let (address, class) = live.swap_remove(idx);
            free_lists[class as usize].push(address);
            records.push(Record::Free {
                time,
                thread,
                address,
                api: FreeApi::Free,
            });
            f += 1;
        } else if a < allocs {
            let stack = zipf(&mut rng);
            let mut size = stack_size[stack as usize];
            if size == 0 {
                size = (16.0 * 256f64.powf(rng.unit())) as u64;
            }
            let class = size.div_ceil(16).min(256);
            let address = free_lists[class as usize].pop().unwrap_or_else(|| {
                let at = top;
                top += class * 16 + 16;
                at
            });
            live.push((address, class));
            let api = if rng.unit() < 0.1 {
                AllocApi::Calloc
            } else {
                AllocApi::Malloc
            };
            records.push(Record::Alloc {
                time,
                thread,
                address,
                size,
                stack,
                api,
            });
            a += 1;
        }
    }
    records.push(Record::End {
        time,
        totals: EndTotals {
            allocations: a,
            frees: f,
            reallocs: 0,
            lost: 0,
        },
    });
    Workload {
        records,
        events: a + f,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let t = Instant::now();
    let w = synthesize(5_000_000 / scale, 4_950_000 / scale);
    eprintln!(
        "synthesized {} events ({} records) in {:.1} s",
        w.events,
        w.records.len(),
        t.elapsed().as_secs_f64()
    );
    let backend = if cfg!(feature = "miniz") {
        "miniz_oxide"
    } else {
        "zlib-rs"
    };
    println!(
        "{:<12} {:>5} {:>12} {:>12} {:>14} {:>14}",
        "backend", "level", "file MB", "bytes/event", "encode Mev/s", "decode Mev/s"
    );
    for level in [1u32, 3, 6, 9] {
        let options = WriterOptions {
            level,
            ..WriterOptions::default()
        };
        let t = Instant::now();
        let mut writer =
            TraceWriter::with_options(Vec::new(), &TraceMeta::default(), options).expect("writer");
        for r in &w.records {
            writer.write(r).expect("write");
        }
        let bytes = writer.finish().expect("finish");
        let encode = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut events = 0u64;
        let mut reader = TraceReader::new(Cursor::new(&bytes)).expect("reader");
        for r in &mut reader {
            if r.expect("decode").is_event() {
                events += 1;
            }
        }
        let decode = t.elapsed().as_secs_f64();
        assert_eq!(events, w.events, "round trip lost events");
        println!(
            "{:<12} {:>5} {:>12.2} {:>12.3} {:>14.1} {:>14.1}",
            backend,
            level,
            bytes.len() as f64 / 1e6,
            bytes.len() as f64 / w.events as f64,
            w.events as f64 / encode / 1e6,
            w.events as f64 / decode / 1e6,
        );
    }
}
