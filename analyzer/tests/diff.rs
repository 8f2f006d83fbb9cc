//! The diff's matching, ranking, normalization and gate on traces written in code: stacks with
//! the same symbolized frames match whatever their ids and addresses, unsymbolized frames match
//! by module and offset, and the gate trips on exactly the stacks that grew past it.

use std::path::Path;

use memtrail::diff::{DiffOptions, Normalize, Status, Threshold, diff};
use memtrail::{Analysis, ReplayOptions, analyze_bytes};
use memtrail_format::testing::TraceBuilder;
use memtrail_format::{StackFrame, TraceMeta};

const MS: u64 = 1_000_000;

/// A trace under construction. `load` is where the module sits in memory: two traces with
/// different loads model ASLR.
struct Trace {
    t: TraceBuilder,
    load: u64,
    next_address: u64,
}

impl Trace {
    fn new(load: u64) -> Trace {
        let meta = TraceMeta {
            tool_version: "0.1.0".into(),
            command_line: vec!["./app".into()],
            page_size: 4096,
            ..TraceMeta::default()
        };
        let mut t = TraceBuilder::new(&meta);
        t.module(1, "/usr/bin/app", &[1; 20])
            .module(2, "/lib/libc.so.6", &[2; 20]);
        Trace {
            t,
            load,
            next_address: 0x1000,
        }
    }

    /// Stack `id`: frames innermost first, each `(function, offset)` in the app (a symbol is
    /// written for it) or, with a `None` function, an unsymbolized frame in libc.
    fn stack(&mut self, id: u32, frames: &[(Option<&str>, u64)]) -> &mut Self {
        let mut out = Vec::new();
        for (name, offset) in frames {
            let module = if name.is_some() { 1 } else { 2 };
            out.push(StackFrame {
                module,
                offset: *offset,
                address: self.load + module as u64 * 0x100_0000 + offset,
            });
            if let Some(name) = name {
                self.t.symbol(1, *offset, name, "src/app.c", *offset as u32);
            }
        }
        self.t.stack(id, out);
        self
    }

    /// `count` blocks of `size` bytes from `stack`, one every `every` ns from `start`; if
    /// `freed_after` is set each is freed that long after.
    fn allocs(
        &mut self,
        stack: u32,
        start: u64,
        every: u64,
        count: u64,
        size: u64,
        freed_after: Option<u64>,
    ) -> &mut Self {
        for i in 0..count {
            let time = start + i * every;
            let address = self.next_address;
            self.next_address += size.next_multiple_of(16) + 16;
            self.t.alloc(time, address, size, stack);
            if let Some(after) = freed_after {
                self.t.free(time + after, address);
            }
        }
        self
    }

    fn analyze(mut self, end: u64, name: &str) -> Analysis {
        self.t.end(end);
        let bytes = self.t.bytes();
        analyze_bytes(
            Path::new(name),
            &bytes,
            ReplayOptions {
                min_age_ns: 0,
                ..ReplayOptions::default()
            },
        )
        .unwrap()
    }
}

fn opts(thresholds: &[Threshold]) -> DiffOptions {
    DiffOptions {
        normalize: Normalize::None,
        thresholds: thresholds.to_vec(),
    }
}

#[test]
fn stacks_match_by_symbols_not_by_id_or_address() {
    // BASE: stack 1 is parse <- main, stack 2 an unsymbolized libc frame <- main.
    let mut b = Trace::new(0x5555_0000_0000);
    b.stack(1, &[(Some("parse"), 0x40), (Some("main"), 0x80)])
        .stack(2, &[(None, 0x891f5), (Some("main"), 0x90)])
        .allocs(1, MS, MS, 10, 100, None)
        .allocs(2, MS, MS, 4, 64, None);
    let base = b.analyze(100 * MS, "base.trace");
    // NEW: another load address, other ids, other offsets for the symbolized frames (a rebuild
    // moved the code), the same libc offset; parse leaks twice as much.
    let mut n = Trace::new(0x7f00_0000_0000);
    n.stack(9, &[(None, 0x891f5), (Some("main"), 0x94)])
        .stack(5, &[(Some("parse"), 0x48), (Some("main"), 0x88)])
        .allocs(5, MS, MS, 20, 100, None)
        .allocs(9, MS, MS, 4, 64, None);
    let new = n.analyze(100 * MS, "new.trace");

    let d = diff(&base, &new, &opts(&[])).unwrap();
    assert_eq!(d.stacks.len(), 2, "{:#?}", d.stacks);
    let parse = &d.stacks[0];
    assert_eq!(parse.key, "parse [app] <- main [app]");
    assert_eq!(parse.status, Status::Grown);
    assert_eq!(parse.rank, 1);
    assert_eq!(parse.base.as_ref().unwrap().stack_ids, [1]);
    assert_eq!(parse.new.as_ref().unwrap().stack_ids, [5]);
    assert_eq!(parse.growth, 1000.0);
    assert_eq!(parse.growth_pct, Some(100.0));
    let libc = &d.stacks[1];
    assert_eq!(libc.key, "libc.so.6+0x891f5 [libc.so.6] <- main [app]");
    assert_eq!(libc.status, Status::Unchanged);
    assert_eq!(d.counts.grown + d.counts.unchanged, 2);
    assert!(d.gate.is_none());
}

#[test]
fn unsymbolized_frames_at_other_offsets_are_new_and_gone() {
    let mut b = Trace::new(0x1000_0000);
    b.stack(1, &[(None, 0x100), (Some("main"), 0x10)])
        .allocs(1, MS, MS, 3, 32, None);
    let base = b.analyze(10 * MS, "base.trace");
    let mut n = Trace::new(0x1000_0000);
    n.stack(1, &[(None, 0x200), (Some("main"), 0x10)])
        .allocs(1, MS, MS, 3, 32, None);
    let new = n.analyze(10 * MS, "new.trace");
    let d = diff(&base, &new, &opts(&[])).unwrap();
    let statuses: Vec<_> = d.stacks.iter().map(|s| (s.status, s.growth)).collect();
    assert_eq!(statuses, [(Status::New, 96.0), (Status::Gone, -96.0)]);
    assert!(d.stacks[0].key.starts_with("libc.so.6+0x200"));
    assert_eq!(d.stacks[0].growth_pct, None);
    assert_eq!(d.stacks[1].growth_pct, Some(-100.0));
}

#[test]
fn stacks_with_one_key_merge_within_a_trace() {
    // Two call sites in main (different offsets, same function) allocate through parse.
    let mut b = Trace::new(0);
    b.stack(1, &[(Some("parse"), 0x40), (Some("main"), 0x80)])
        .stack(2, &[(Some("parse"), 0x40), (Some("main"), 0x84)])
        .allocs(1, MS, MS, 2, 10, None)
        .allocs(2, MS, MS, 3, 10, Some(MS))
        .allocs(2, 10 * MS, MS, 1, 10, None);
    let base = b.analyze(20 * MS, "base.trace");
    let mut n = Trace::new(0);
    n.stack(3, &[(Some("parse"), 0x40), (Some("main"), 0x80)])
        .allocs(3, MS, MS, 3, 10, None);
    let new = n.analyze(20 * MS, "new.trace");
    let d = diff(&base, &new, &opts(&[])).unwrap();
    assert_eq!(d.stacks.len(), 1);
    let s = &d.stacks[0];
    let b = s.base.as_ref().unwrap();
    assert_eq!(b.stack_ids, [1, 2]);
    assert_eq!(b.row.allocations, 6);
    assert_eq!(b.row.frees, 3);
    assert_eq!(b.row.unfreed_bytes, 30);
    assert_eq!(b.row.lifetime_p50_ns, Some(MS));
    assert_eq!(s.status, Status::Unchanged);
    assert_eq!(s.new.as_ref().unwrap().row.lifetime_p50_ns, None);
}

/// BASE and NEW with four stacks: `grows` (+3000 B, +300%), `creeps` (+100 B, +10%), `fresh`
/// (new, 500 B), `shrinks` (-400 B) and `vanishes` (gone).
fn five_stacks() -> (Analysis, Analysis) {
    let names = ["grows", "creeps", "fresh", "shrinks", "vanishes"];
    let mut b = Trace::new(0);
    let mut n = Trace::new(0x10_0000);
    for (i, name) in names.iter().enumerate() {
        let id = i as u32 + 1;
        b.stack(id, &[(Some(name), 0x100 * id as u64), (Some("main"), 0x10)]);
        n.stack(
            id + 10,
            &[(Some(name), 0x100 * id as u64), (Some("main"), 0x10)],
        );
    }
    b.allocs(1, MS, MS, 10, 100, None) // grows: 1000 -> 4000
        .allocs(2, MS, MS, 10, 100, None) // creeps: 1000 -> 1100
        .allocs(4, MS, MS, 8, 100, None) // shrinks: 800 -> 400
        .allocs(5, MS, MS, 2, 100, None); // vanishes: 200 -> (absent)
    n.allocs(11, MS, MS, 40, 100, None)
        .allocs(12, MS, MS, 11, 100, None)
        .allocs(13, MS, MS, 5, 100, None) // fresh: 500
        .allocs(14, MS, MS, 4, 100, None);
    (
        b.analyze(100 * MS, "base.trace"),
        n.analyze(100 * MS, "new.trace"),
    )
}

#[test]
fn ranked_by_growth_with_statuses() {
    let (base, new) = five_stacks();
    let d = diff(&base, &new, &opts(&[])).unwrap();
    let order: Vec<(&str, Status, f64)> = d
        .stacks
        .iter()
        .map(|s| (s.top_function(), s.status, s.growth))
        .collect();
    assert_eq!(
        order,
        [
            ("grows", Status::Grown, 3000.0),
            ("fresh", Status::New, 500.0),
            ("creeps", Status::Grown, 100.0),
            ("vanishes", Status::Gone, -200.0),
            ("shrinks", Status::Shrunk, -400.0),
        ]
    );
    assert_eq!(d.stacks[2].growth_pct, Some(10.0));
    assert_eq!((d.counts.new, d.counts.grown, d.counts.shrunk), (1, 2, 1));
    assert_eq!(d.counts.gone, 1);
    assert_eq!(d.base.unfreed_bytes, 3000);
    assert_eq!(d.new.unfreed_bytes, 6000);
}

fn crossed(base: &Analysis, new: &Analysis, t: &[Threshold]) -> Vec<String> {
    let d = diff(base, new, &opts(t)).unwrap();
    let g = d.gate.as_ref().unwrap();
    assert_eq!(g.passed(), g.crossed.is_empty());
    d.crossed().map(|s| s.top_function().to_owned()).collect()
}

#[test]
fn the_gate_trips_on_the_stacks_past_every_threshold() {
    let (base, new) = five_stacks();
    assert_eq!(
        crossed(&base, &new, &[Threshold::Bytes(400)]),
        ["grows", "fresh"]
    );
    assert_eq!(
        crossed(&base, &new, &[Threshold::Bytes(99)]),
        ["grows", "fresh", "creeps"]
    );
    // Exactly at the line is not past it.
    assert_eq!(
        crossed(&base, &new, &[Threshold::Bytes(3000)]),
        Vec::<String>::new()
    );
    // A new stack grew by an infinite percentage.
    assert_eq!(
        crossed(&base, &new, &[Threshold::Percent(50.0)]),
        ["grows", "fresh"]
    );
    assert_eq!(
        crossed(&base, &new, &[Threshold::Percent(5.0)]),
        ["grows", "fresh", "creeps"]
    );
    // Both: bytes and percentage.
    assert_eq!(
        crossed(
            &base,
            &new,
            &[Threshold::Bytes(1000), Threshold::Percent(5.0)]
        ),
        ["grows"]
    );
    // Reversed, what shrank grew; what shrinks never trips it, even at a zero threshold.
    let reversed = crossed(&new, &base, &[Threshold::Bytes(0)]);
    assert_eq!(reversed, ["shrinks", "vanishes"]);
}

#[test]
fn normalizing_by_duration_compares_rates() {
    // The same leak rate (100 B every ms) over 1 s in BASE and 3 s in NEW.
    let mut b = Trace::new(0);
    b.stack(1, &[(Some("leaky"), 0x10)])
        .allocs(1, 0, MS, 1000, 100, None);
    let base = b.analyze(1000 * MS, "base.trace");
    let mut n = Trace::new(0);
    n.stack(1, &[(Some("leaky"), 0x10)])
        .allocs(1, 0, MS, 3000, 100, None);
    let new = n.analyze(3000 * MS, "new.trace");

    let totals = diff(&base, &new, &opts(&[Threshold::Percent(10.0)])).unwrap();
    assert_eq!(totals.stacks[0].growth, 200_000.0);
    assert_eq!(totals.gate.as_ref().unwrap().crossed, [1]);

    let rates = diff(
        &base,
        &new,
        &DiffOptions {
            normalize: Normalize::Duration,
            thresholds: vec![Threshold::Percent(10.0)],
        },
    )
    .unwrap();
    let s = &rates.stacks[0];
    let (b, n) = (s.base_value(rates.normalize), s.new_value(rates.normalize));
    // 100 KB/s in both, to within the span's first and last event.
    assert!((b - 100_000.0).abs() < 200.0, "{b}");
    assert!((n - 100_000.0).abs() < 200.0, "{n}");
    assert!(s.growth_pct.unwrap().abs() < 1.0, "{:?}", s.growth_pct);
    assert!(rates.gate.as_ref().unwrap().passed());
}

#[test]
fn normalizing_an_empty_trace_is_an_error() {
    let base = Trace::new(0).analyze(0, "empty.trace");
    let mut n = Trace::new(0);
    n.stack(1, &[(Some("f"), 0x10)])
        .allocs(1, MS, MS, 2, 8, None);
    let new = n.analyze(10 * MS, "new.trace");
    let err = diff(
        &base,
        &new,
        &DiffOptions {
            normalize: Normalize::Duration,
            ..DiffOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("empty.trace") && err.contains("no duration"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    // Totals still compare.
    let d = diff(&base, &new, &opts(&[])).unwrap();
    assert_eq!(d.stacks[0].status, Status::New);
}

#[test]
fn json_csv_and_folded_carry_the_comparison() {
    let (base, new) = five_stacks();
    let d = diff(&base, &new, &opts(&[Threshold::Bytes(400)])).unwrap();

    let v: serde_json::Value = serde_json::from_str(&memtrail::render::json::diff(&d)).unwrap();
    assert_eq!(v["compared"], "unfreed_bytes");
    assert_eq!(v["normalize"], "none");
    assert_eq!(v["summary"]["new"], 1);
    assert_eq!(v["gate"]["passed"], false);
    assert_eq!(v["gate"]["crossed"], serde_json::json!([1, 2]));
    assert_eq!(v["gate"]["thresholds"][0]["bytes"], 400);
    let first = &v["stacks"][0];
    assert_eq!(first["status"], "grown");
    assert_eq!(first["crossed"], true);
    assert_eq!(first["base"]["unfreed_bytes"], 1000);
    assert_eq!(first["new"]["unfreed_bytes"], 4000);
    assert_eq!(first["delta"]["unfreed_bytes"], 3000);
    // 40 blocks in the first 40 ms of 100: grew, then flat.
    assert_eq!(first["new"]["verdict"], "growing-then-stable");
    assert_eq!(first["frames"][0]["function"], "grows");
    assert_eq!(first["frames"][0]["module"], "app");
    let fresh = &v["stacks"][1];
    assert_eq!(fresh["status"], "new");
    assert!(fresh["base"].is_null() && fresh["growth_pct"].is_null());

    let mut df = memtrail::render::export::diff(&[&d]).unwrap();
    assert_eq!(df.height(), 5);
    let mut csv = Vec::new();
    memtrail::render::export::write(
        &mut df,
        memtrail::render::export::TableFormat::Csv,
        &mut csv,
    )
    .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.starts_with("baseline,trace,rank,status,growth,"),
        "{header}"
    );
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("base.trace,new.trace,1,grown,3000.0,300.0,true,1000,4000,"),
        "{csv}"
    );

    let folded = memtrail::render::flamegraph::diff_folded(&d);
    assert!(
        folded.contains(&"main;grows 1000 4000".to_owned()),
        "{folded:?}"
    );
    assert!(
        folded.contains(&"main;vanishes 200 0".to_owned()),
        "{folded:?}"
    );
    let mut svg = Vec::new();
    memtrail::render::flamegraph::diff_svg(&d, &folded, &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("grows") && svg.contains("memtrail diff"));

    // Reversed, BASE holds more: widths come from it, and what shrank is still blue.
    let r = diff(&new, &base, &opts(&[])).unwrap();
    let mut svg = Vec::new();
    memtrail::render::flamegraph::diff_svg(
        &r,
        &memtrail::render::flamegraph::diff_folded(&r),
        &mut svg,
    )
    .unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("width: BASE (new.trace)"), "{svg}");
    let grows = svg
        .split("<title>")
        .find(|t| t.starts_with("grows ("))
        .unwrap_or_else(|| panic!("no grows frame: {svg}"));
    // 4,000 bytes wide (BASE's), 3,000 fewer in NEW: -50% of the 6,000 total, drawn blue.
    assert!(
        grows.starts_with("grows (4,000 bytes, 66.67%; -50.00%)"),
        "{grows}"
    );
    let fill = grows
        .split("fill=\"rgb(")
        .nth(1)
        .and_then(|f| f.split(')').next())
        .unwrap_or_else(|| panic!("no fill: {grows}"));
    let rgb: Vec<u32> = fill.split(',').map(|c| c.parse().unwrap()).collect();
    assert!(rgb[2] == 255 && rgb[0] < 255, "not blue: {fill}");

    let table = memtrail::render::table::diff(&d, 20, 4);
    assert!(
        table.contains("growth gate failed: 2 stacks grew past +400 B"),
        "{table}"
    );
    assert!(
        table.contains("5 stacks: 1 new, 2 grown, 1 shrunk, 1 gone"),
        "{table}"
    );
}
