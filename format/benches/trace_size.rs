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

/// CPU time of this thread: unlike wall time it does not count the time other processes of a
/// shared machine take from us.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

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
    allocs: u64,
    frees: u64,
}

/// One step of a request handler's script: allocate from `stack`, and free the block after
/// `free_after` more steps of the same request (`None`: at the end of the request, in reverse
/// order; `Some(u32::MAX)`: keep it in a bounded cache; the rare leak is chosen per event).
#[derive(Clone, Copy)]
struct Step {
    stack: u32,
    free_after: Option<u32>,
}

fn synthesize(allocs: u64) -> Workload {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    const STACKS: u32 = 8000;
    const HANDLERS: u32 = 400;
    const CACHE: usize = 20_000;
    let mut records = Vec::with_capacity(2 * allocs as usize + 20_000);
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
    // Stacks: a call tree, so outer frames are shared as in real programs.
    let mut stack_size = Vec::with_capacity(STACKS as usize);
    for id in 0..STACKS {
        let depth = 8 + rng.below(5) as usize;
        let frames = (0..depth)
            .map(|level| {
                let fanout = 1u64 << (level.min(6) * 2);
                let offset = 0x1000 + (level as u64) * 0x10000 + rng.below(fanout) * 0x40;
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
        // 70% of call sites allocate one size (a struct), the rest vary per call (0 = varies).
        let size = if rng.unit() < 0.7 {
            (16.0 * 256f64.powf(rng.unit())) as u64
        } else {
            0
        };
        stack_size.push(size);
    }
    // Handlers: each runs a script of 10-40 allocations from its own 20 call sites.
    let scripts: Vec<Vec<Step>> = (0..HANDLERS)
        .map(|h| {
            let len = 10 + rng.below(31) as usize;
            (0..len)
                .map(|_| {
                    let r = rng.unit();
                    Step {
                        stack: h * (STACKS / HANDLERS)
                            + rng.below(u64::from(STACKS / HANDLERS)) as u32,
                        free_after: if r < 0.8 {
                            None
                        } else if r < 0.97 {
                            Some(1 + rng.below(5) as u32)
                        } else {
                            Some(u32::MAX)
                        },
                    }
                })
                .collect()
        })
        .collect();

    // Allocator model as glibc's: per-thread arenas, each with LIFO free lists per 16-byte
    // class (tcache and fast bins behave so) and a bump pointer for new blocks.
    let mut free_lists: Vec<Vec<Vec<u64>>> = vec![vec![Vec::new(); 257]; 4];
    let mut tops: Vec<u64> = (0..4u64)
        .map(|i| 0x7f00_0000_0000 + i * 0x400_0000)
        .collect();
    struct Request {
        script: usize,
        step: usize,
        live: Vec<(u64, u64)>,
        due: Vec<(usize, u64, u64)>,
        thread: u32,
    }
    let mut cache: std::collections::VecDeque<(u64, u64, u32)> = Default::default();
    let threads = [4242u32, 4243, 4244, 4245];
    let pick_script = |rng: &mut Rng| ((f64::from(HANDLERS)).powf(rng.unit()) - 1.0) as usize;
    let mut requests: Vec<Request> = threads
        .iter()
        .map(|&thread| Request {
            script: pick_script(&mut rng),
            step: 0,
            live: Vec::new(),
            due: Vec::new(),
            thread,
        })
        .collect();
    let mut current = 0usize;
    let mut time = 0u64;
    let (mut a, mut f) = (0u64, 0u64);
    let mut tick = |rng: &mut Rng| {
        // A traced program: about 1 us of probe and work per event, and 0.5% of events after
        // a pause (I/O, a lock) of 10-200 us.
        time += if rng.unit() < 0.005 {
            10_000 + rng.below(190_000)
        } else {
            (300.0 - 700.0 * rng.unit().max(1e-12).ln()) as u64
        };
        time
    };
    let free = |records: &mut Vec<Record>,
                free_lists: &mut Vec<Vec<Vec<u64>>>,
                time,
                thread: u32,
                address,
                class: u64| {
        free_lists[(thread - 4242) as usize][class as usize].push(address);
        records.push(Record::Free {
            time,
            thread,
            address,
            size: 0,
            api: FreeApi::Free,
        });
    };
    while a < allocs {
        // Threads take turns in bursts, as they do through a shared ring buffer.
        if rng.unit() < 0.1 {
            current = rng.below(threads.len() as u64) as usize;
        }
        let req = &mut requests[current];
        let script = &scripts[req.script];
        // Blocks due for an early free go first.
        if let Some(i) = req.due.iter().position(|d| d.0 <= req.step) {
            let (_, address, class) = req.due.swap_remove(i);
            let t = tick(&mut rng);
            free(&mut records, &mut free_lists, t, req.thread, address, class);
            f += 1;
            continue;
        }
        if req.step >= script.len() {
            // End of request: free what it kept, newest first, and start another.
            while let Some((address, class)) = req.live.pop() {
                let t = tick(&mut rng);
                free(&mut records, &mut free_lists, t, req.thread, address, class);
                f += 1;
            }
            for (_, address, class) in req.due.drain(..) {
                let t = tick(&mut rng);
                free(&mut records, &mut free_lists, t, req.thread, address, class);
                f += 1;
            }
            req.script = pick_script(&mut rng);
            req.step = 0;
            continue;
        }
        let step = script[req.step];
        req.step += 1;
        let mut size = stack_size[step.stack as usize];
        if size == 0 {
            size = (16.0 * 256f64.powf(rng.unit())) as u64;
        }
        let class = size.div_ceil(16).min(256);
        let arena = (req.thread - 4242) as usize;
        let address = free_lists[arena][class as usize].pop().unwrap_or_else(|| {
            let at = tops[arena];
            tops[arena] += class * 16 + 16;
            at
        });
        let t = tick(&mut rng);
        records.push(Record::Alloc {
            time: t,
            thread: req.thread,
            address,
            size,
            stack: step.stack,
            api: if step.stack.is_multiple_of(10) {
                AllocApi::Calloc
            } else {
                AllocApi::Malloc
            },
        });
        a += 1;
        if rng.unit() < 0.006 {
            continue; // leaked
        }
        match step.free_after {
            None => req.live.push((address, class)),
            Some(u32::MAX) => {
                cache.push_back((address, class, req.thread));
                if cache.len() > CACHE
                    && let Some((address, class, thread)) = cache.pop_front()
                {
                    let t = tick(&mut rng);
                    free(&mut records, &mut free_lists, t, thread, address, class);
                    f += 1;
                }
            }
            Some(n) => req.due.push((req.step + n as usize, address, class)),
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
        allocs: a,
        frees: f,
    }
}

/// The baseline: the same records as rows (every field a bincode varint, times and addresses
/// as plain deltas against the previous record), DEFLATE level 6 in 256 KiB chunks: what a
/// straightforward bincode + flate2 format would give. Returns (bytes, decode CPU seconds).
fn baseline_rows(records: &[Record]) -> (usize, f64) {
    use std::io::{Read, Write};
    let cfg = bincode::config::standard();
    let mut chunks = Vec::new();
    let mut raw = Vec::new();
    let (mut pt, mut pa) = (0u64, 0u64);
    let flush = |raw: &mut Vec<u8>, chunks: &mut Vec<Vec<u8>>| {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(raw).expect("deflate");
        chunks.push(e.finish().expect("deflate"));
        raw.clear();
    };
    for r in records {
        let (tag, time, thread, address, size, stack) = match *r {
            Record::Alloc {
                time,
                thread,
                address,
                size,
                stack,
                api,
            } => (api as u8, time, thread, address, size, stack),
            Record::Free {
                time,
                thread,
                address,
                ..
            } => (100, time, thread, address, 0, 0),
            _ => continue,
        };
        let dt = time.wrapping_sub(pt) as i64;
        let da = address.wrapping_sub(pa) as i64;
        pt = time;
        pa = address;
        raw.push(tag);
        bincode::encode_into_std_write(dt, &mut raw, cfg).expect("encode");
        bincode::encode_into_std_write(thread, &mut raw, cfg).expect("encode");
        bincode::encode_into_std_write(da, &mut raw, cfg).expect("encode");
        if tag != 100 {
            bincode::encode_into_std_write(size, &mut raw, cfg).expect("encode");
            bincode::encode_into_std_write(stack, &mut raw, cfg).expect("encode");
        }
        if raw.len() >= 256 << 10 {
            flush(&mut raw, &mut chunks);
        }
    }
    flush(&mut raw, &mut chunks);
    let bytes = chunks.iter().map(Vec::len).sum();
    let t = cpu_seconds();
    let mut checksum = 0u64;
    let mut buf = Vec::new();
    for c in &chunks {
        buf.clear();
        flate2::read::DeflateDecoder::new(&c[..])
            .read_to_end(&mut buf)
            .expect("inflate");
        let mut slice = &buf[..];
        while let Some((&tag, rest)) = slice.split_first() {
            slice = rest;
            let next = |s: &mut &[u8]| -> u64 {
                let (v, n): (u64, usize) = bincode::decode_from_slice(s, cfg).expect("decode");
                *s = &s[n..];
                v
            };
            checksum =
                checksum.wrapping_add(next(&mut slice) + next(&mut slice) + next(&mut slice));
            if tag != 100 {
                checksum = checksum.wrapping_add(next(&mut slice) + next(&mut slice));
            }
        }
    }
    std::hint::black_box(checksum);
    (bytes, cpu_seconds() - t)
}

/// The frame path's sink: counts events, and takes each record as the analyzer's reader
/// does. Events own no heap memory, so it forgets them rather than dropping them: a drop runs
/// the drop glue of `Record`, a call per record that the analyzer never makes.
#[inline(always)]
fn count_as_the_analyzer(events: &mut u64, r: Record) {
    if r.is_event() {
        *events += 1;
        std::mem::forget(r);
    } else {
        drop(r);
    }
}

/// The value after `flag` on the command line, if any.
fn arg_value(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The synthetic stream written at the defaults (1 us clock, default level).
fn default_trace(w: &Workload) -> Vec<u8> {
    trace_with_prefix(w, &[])
}

/// The synthetic stream at the defaults after `prefix` (records written right after the meta),
/// without time-based flushes so that the bytes depend on the records only.
fn trace_with_prefix(w: &Workload, prefix: &[Record]) -> Vec<u8> {
    let meta = TraceMeta {
        time_resolution_ns: 1000,
        ..TraceMeta::default()
    };
    let options = WriterOptions {
        flush_interval: None,
        ..WriterOptions::default()
    };
    let mut writer = TraceWriter::with_options(Vec::new(), &meta, options).expect("writer");
    for r in prefix.iter().chain(&w.records) {
        writer.write(r).expect("write");
    }
    writer.finish().expect("finish")
}

/// What format 1.1's process records cost a single-process trace: the stream as 1.0 wrote it
/// (no process records), with the root's Process record (what a 1.1 recorder writes), and with
/// a Thread record binding each of its four threads too (which a recorder may omit for the
/// root: unbound threads belong to it). Frames after the first hold the same bytes.
fn process_records_cost(w: &Workload) {
    let root = Record::Process(Box::new(ProcessInfo {
        pid: 4242,
        parent_pid: 4200,
        time: 0,
        origin: ProcessOrigin::Launched,
        command_line: vec!["/usr/bin/app".into(), "--serve".into()],
    }));
    let plain = trace_with_prefix(w, &[]);
    let with_process = trace_with_prefix(w, std::slice::from_ref(&root));
    let mut prefix = vec![root];
    prefix.extend((4242..4246).map(|thread| Record::Thread { thread, pid: 4242 }));
    let with_threads = trace_with_prefix(w, &prefix);
    let frames = |bytes: &[u8]| -> Vec<Vec<u8>> {
        FrameReader::new(Cursor::new(
            &bytes[memtrail_format::frame::FILE_HEADER_LEN..],
        ))
        .map(|f| f.expect("frame").payload)
        .collect()
    };
    let (a, b) = (frames(&plain), frames(&with_process));
    let same_after_first = a.len() == b.len() && a[1..] == b[1..];
    println!(
        "single process, format 1.1: {} bytes without process records, {} (+{}) with the root's \
         Process record, {} (+{}) with Thread records for its 4 threads too; frames after the \
         first identical: {}",
        plain.len(),
        with_process.len(),
        with_process.len() as i64 - plain.len() as i64,
        with_threads.len(),
        with_threads.len() as i64 - plain.len() as i64,
        if same_after_first { "yes" } else { "NO" }
    );
}

/// `--profile-decode`: decode the default trace `--passes` times (5), through the reader and
/// through the frame API (`--only reader` or `--only frames`: one of them; `--only inflate`
/// or `--only inflate-flate2`: inflating only), for `perf record`
/// or `valgrind --tool=callgrind`. With `--trace FILE`, the trace is read from FILE if it
/// exists (no synthesis: profiles show decoding only), and written there otherwise.
fn profile_decode(scale: u64) {
    let passes: usize = arg_value("--passes").map_or(5, |p| p.parse().expect("--passes N"));
    let path = arg_value("--trace");
    let bytes = match path.as_deref().map(std::fs::read) {
        Some(Ok(bytes)) => bytes,
        _ => {
            let bytes = default_trace(&synthesize(5_000_000 / scale));
            if let Some(path) = &path {
                std::fs::write(path, &bytes).expect("write --trace file");
            }
            bytes
        }
    };
    // `--only reader` or `--only frames`: one path, so that an instruction count is its own.
    // `--only inflate` or `--only inflate-flate2`: the frames' inflating alone, with the
    // reader's inflater or with flate2's (the writer's backend).
    let only = arg_value("--only");
    if let Some(inflater) = only.as_deref().and_then(Inflater::from_arg) {
        for _ in 0..passes {
            let speed = inflate_speed(&bytes, inflater);
            println!("inflate: {speed:.1} M events/s ({})", inflater.name());
        }
        return;
    }
    let (with_reader, with_frames) = (
        only.as_deref() != Some("frames"),
        only.as_deref() != Some("reader"),
    );
    for _ in 0..passes {
        let t = cpu_seconds();
        let mut events = 0u64;
        if with_reader {
            for r in TraceReader::new(Cursor::new(&bytes)).expect("reader") {
                events += u64::from(r.expect("decode").is_event());
            }
        }
        let reader = cpu_seconds() - t;
        let t = cpu_seconds();
        let mut frame_events = 0u64;
        let mut scratch = Vec::new();
        let body = Cursor::new(&bytes[memtrail_format::frame::FILE_HEADER_LEN..]);
        if with_frames {
            for frame in FrameReader::new(body) {
                decode_frame(&frame.expect("frame"), &mut scratch, |r| {
                    count_as_the_analyzer(&mut frame_events, r)
                })
                .expect("decode");
            }
        }
        let frames = cpu_seconds() - t;
        println!(
            "decode {events} events: {:.1} M events/s (reader), {:.1} M events/s (frames)",
            events as f64 / reader / 1e6,
            frame_events as f64 / frames / 1e6
        );
    }
}

/// `--profile-encode`: write the stream once at `--level` (6), for profilers, and print the
/// writer's speed.
fn profile_encode(scale: u64) {
    let level: u32 = arg_value("--level").map_or(6, |l| l.parse().expect("--level N"));
    let w = synthesize(5_000_000 / scale);
    let meta = TraceMeta {
        time_resolution_ns: 1000,
        ..TraceMeta::default()
    };
    let options = WriterOptions {
        level,
        ..WriterOptions::default()
    };
    let t = cpu_seconds();
    let mut writer = TraceWriter::with_options(Vec::new(), &meta, options).expect("writer");
    for r in &w.records {
        writer.write(r).expect("write");
    }
    let bytes = writer.finish().expect("finish");
    let encode = cpu_seconds() - t;
    println!(
        "encode {} events at level {level}: {:.3} bytes/event, {:.1} M events/s",
        w.events,
        bytes.len() as f64 / w.events as f64,
        w.events as f64 / encode / 1e6
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    if std::env::args().any(|a| a == "--profile-decode") {
        profile_decode(scale);
        return;
    }
    if std::env::args().any(|a| a == "--profile-encode") {
        profile_encode(scale);
        return;
    }
    let t = Instant::now();
    let w = synthesize(5_000_000 / scale);
    eprintln!(
        "synthesized {} allocations, {} frees ({} records) in {:.1} s",
        w.allocs,
        w.frees,
        w.records.len(),
        t.elapsed().as_secs_f64()
    );
    let backend = if cfg!(feature = "miniz") {
        "miniz_oxide"
    } else {
        "zlib-rs"
    };
    println!(
        "{:<12} {:>6} {:>5} {:>9} {:>12} {:>13} {:>13} {:>13}",
        "backend",
        "clock",
        "level",
        "file MB",
        "bytes/event",
        "encode Mev/s",
        "decode Mev/s",
        "frames Mev/s"
    );
    let (base_bytes, base_decode) = baseline_rows(&w.records);
    let base_bpe = base_bytes as f64 / w.events as f64;
    println!(
        "{:<12} {:>6} {:>5} {:>9.2} {:>12.3} {:>13} {:>13.1} {:>13}",
        "rows-bincode",
        "1ns",
        6,
        base_bytes as f64 / 1e6,
        base_bpe,
        "-",
        w.events as f64 / base_decode / 1e6,
        "-"
    );
    let mut best = f64::MAX;
    for (resolution, level) in [
        (1u32, 1u32),
        (1, 6),
        (1000, 1),
        (1000, 3),
        (1000, 6),
        (1000, 9),
    ] {
        let options = WriterOptions {
            level,
            ..WriterOptions::default()
        };
        let meta = TraceMeta {
            time_resolution_ns: resolution,
            ..TraceMeta::default()
        };
        let t = cpu_seconds();
        let mut writer = TraceWriter::with_options(Vec::new(), &meta, options).expect("writer");
        for r in &w.records {
            writer.write(r).expect("write");
        }
        let bytes = writer.finish().expect("finish");
        let encode = cpu_seconds() - t;

        let t = cpu_seconds();
        let mut events = 0u64;
        let mut reader = TraceReader::new(Cursor::new(&bytes)).expect("reader");
        for r in &mut reader {
            if r.expect("decode").is_event() {
                events += 1;
            }
        }
        let decode = cpu_seconds() - t;
        if let Some(cut) = reader.truncation() {
            panic!("benchmark trace reads back truncated: {cut}");
        }

        // The same bytes through the frame-level API the analyzer uses to decode in parallel.
        let t = cpu_seconds();
        let mut frame_events = 0u64;
        let mut scratch = Vec::new();
        let mut frames = FrameReader::new(Cursor::new(
            &bytes[memtrail_format::frame::FILE_HEADER_LEN..],
        ));
        for frame in &mut frames {
            decode_frame(&frame.expect("frame"), &mut scratch, |r| {
                count_as_the_analyzer(&mut frame_events, r)
            })
            .expect("decode");
        }
        let decode_frames = cpu_seconds() - t;
        assert_eq!(frame_events, w.events, "frame decode lost events");
        assert_eq!(events, w.events, "round trip lost events");
        println!(
            "{:<12} {:>6} {:>5} {:>9.2} {:>12.3} {:>13.1} {:>13.1} {:>13.1}",
            backend,
            if resolution == 1 { "1ns" } else { "1us" },
            level,
            bytes.len() as f64 / 1e6,
            bytes.len() as f64 / w.events as f64,
            w.events as f64 / encode / 1e6,
            w.events as f64 / decode / 1e6,
            w.events as f64 / decode_frames / 1e6,
        );
        if resolution == 1000 && level == WriterOptions::default().level {
            best = bytes.len() as f64 / w.events as f64;
        }
    }
    println!(
        "\nmemtrail ({backend} writer, 1 us clock, default level) is {:.2}x smaller than the row \
         baseline; target <= 2.4 bytes/event: {}",
        base_bpe / best,
        if best <= 2.4 { "met" } else { "NOT met" }
    );
    process_records_cost(&w);
    // Decode speed on one core through the frame path (what the analyzer uses), several
    // passes over the default trace, judged on the median pass (the best one shows what the
    // code does when the shared machine lets it).
    let trace = default_trace(&w);
    let mut speeds: Vec<f64> = (0..DECODE_PASSES)
        .map(|_| frames_decode_speed(&trace))
        .collect();
    speeds.sort_by(f64::total_cmp);
    let (best, median) = (speeds[speeds.len() - 1], speeds[speeds.len() / 2]);
    println!(
        "decode through frames ({DECODE_PASSES} passes over the default trace): median {median:.1}, \
         best {best:.1} M events/s; target >= 25 M events/s on one core (median): {}",
        if median >= 25.0 { "met" } else { "NOT met" }
    );
    // The reader's inflater against flate2's on the same frames, alternating, best of three
    // passes each: what choosing fdeflate for reading buys (flate2 still writes).
    let (mut reader_inflate, mut flate2_inflate) = (0f64, 0f64);
    for _ in 0..3 {
        reader_inflate = reader_inflate.max(inflate_speed(&trace, Inflater::Reader));
        flate2_inflate = flate2_inflate.max(inflate_speed(&trace, Inflater::Flate2));
    }
    println!(
        "inflating alone (best of 3): {reader_inflate:.1} M events/s with {}, {flate2_inflate:.1} \
         with {} ({:.0}% more time)",
        Inflater::Reader.name(),
        Inflater::Flate2.name(),
        (reader_inflate / flate2_inflate - 1.0) * 100.0
    );
    if quick {
        println!("(--quick: the 8,000 stack records weigh 10x more per event than in a full run)");
    }
}

/// Which inflater `inflate_speed` measures.
#[derive(Clone, Copy)]
enum Inflater {
    /// `frame::inflate_frame`, what the reader uses (fdeflate).
    Reader,
    /// flate2's `Decompress` with the backend this bench was built with.
    Flate2,
}

impl Inflater {
    fn from_arg(arg: &str) -> Option<Inflater> {
        match arg {
            "inflate" => Some(Inflater::Reader),
            "inflate-flate2" => Some(Inflater::Flate2),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Inflater::Reader => "fdeflate (the reader's)",
            Inflater::Flate2 if cfg!(feature = "miniz") => "flate2/miniz_oxide",
            Inflater::Flate2 => "flate2/zlib-rs",
        }
    }
}

/// Inflates every frame of `trace` once, in M events (of the whole trace) per CPU second.
fn inflate_speed(trace: &[u8], inflater: Inflater) -> f64 {
    let body = &trace[memtrail_format::frame::FILE_HEADER_LEN..];
    let frames: Vec<RawFrame> = FrameReader::new(Cursor::new(body))
        .map(|f| f.expect("frame"))
        .collect();
    let mut events = 0u64;
    let mut scratch = Vec::new();
    for frame in &frames {
        decode_frame(frame, &mut scratch, |r| {
            count_as_the_analyzer(&mut events, r)
        })
        .expect("decode");
    }
    let t = cpu_seconds();
    for frame in &frames {
        match inflater {
            Inflater::Reader => {
                memtrail_format::frame::inflate_frame(frame, &mut scratch).expect("inflate")
            }
            Inflater::Flate2 => {
                scratch.clear();
                scratch.reserve(frame.header.raw_len as usize + 1);
                let status = flate2::Decompress::new(false)
                    .decompress_vec(
                        &frame.payload,
                        &mut scratch,
                        flate2::FlushDecompress::Finish,
                    )
                    .expect("inflate");
                assert_eq!(status, flate2::Status::StreamEnd, "flate2 stopped early");
            }
        }
        std::hint::black_box(&scratch);
    }
    events as f64 / (cpu_seconds() - t) / 1e6
}

/// Passes of the closing decode-speed measurement.
const DECODE_PASSES: usize = 7;

/// One decode of `trace` through `FrameReader` + `decode_frame`, in M events per CPU second.
fn frames_decode_speed(trace: &[u8]) -> f64 {
    let t = cpu_seconds();
    let mut events = 0u64;
    let mut scratch = Vec::new();
    let body = Cursor::new(&trace[memtrail_format::frame::FILE_HEADER_LEN..]);
    for frame in FrameReader::new(body) {
        decode_frame(&frame.expect("frame"), &mut scratch, |r| {
            count_as_the_analyzer(&mut events, r)
        })
        .expect("decode");
    }
    events as f64 / (cpu_seconds() - t) / 1e6
}
