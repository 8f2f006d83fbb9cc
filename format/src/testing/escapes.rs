//! A hostile trace: every text a traced program controls (command line, module paths,
//! function and file names) and the ones from the host (host name, kernel release, recorder
//! facts) holds escape sequences, C1 controls, DEL, bidi overrides, characters XML forbids,
//! markup meant to break out of HTML and spreadsheet formulas. Used by the escaping tests
//! (`analyzer/tests/escaping.rs`), the JSON contract test and the browser test of the HTML
//! report; `assert_no_raw_controls` also checks what the recorder prints.

use std::path::Path;

use super::{StackLayout, TraceBuilder};
use crate::{AllocApi, FreeApi, LostReason, ProcessOrigin, Record, StackFrame, TraceMeta};

/// Sets the terminal's title.
pub const TITLE: &str = "\x1b]0;pwned\x07";
/// Clears the screen.
pub const CLEAR: &str = "\x1b[2J";
/// The one-byte CSI of C1 (a terminal in 8-bit mode reads it as ESC [).
pub const CSI: &str = "\u{9b}31m";
/// Right-to-left override: what follows shows reversed.
pub const RLO: &str = "\u{202e}";
pub const SCRIPT: &str = "</script><script>alert(1)</script>";
pub const FORMULA: &str = "=HYPERLINK(\"http://evil.example/\",\"click\")";

/// The command line: one word per kind of trouble.
pub fn command_line() -> Vec<String> {
    vec![
        format!("./srv{TITLE}"),
        CLEAR.to_owned(),
        format!("{RLO}gpj.exe"),
        FORMULA.to_owned(),
        format!("{CSI}\x7f"),
        "a\nFAKE LINE".to_owned(),
    ]
}

pub const HOST: &str = "host\x1b[31m\u{9b}\u{2066}";

/// The module's path: its basename is shown as `[module]` after each frame.
pub const MODULE: &str = "/opt/\x1b[2Japp/libevil\x07\u{202e}.so";

/// The stacks, innermost function first. The top functions start like spreadsheet formulas.
pub const STACKS: [(u32, &[&str]); 4] = [
    (1, &[FORMULA, SCRIPT, "main\x1b]0;pwned\x07"]),
    (2, &["+1", "]]>\u{fffe}\0end", "main\x1b]0;pwned\x07"]),
    (
        3,
        &["-2+3", "ev\u{202e}il\u{9b}\x7f", "main\x1b]0;pwned\x07"],
    ),
    (
        4,
        &[
            "@SUM(A1)",
            "line\nFAKE\r\tx \"quoted\" 'single'",
            "main\x1b]0;pwned\x07",
        ],
    ),
];

pub const FILE: &str = "/src/\x1b[2J\u{202e}evil.c";

/// The command line of the child process (PID 4243), which the traced command forks.
pub fn child_command_line() -> Vec<String> {
    vec![format!("./worker{CLEAR}"), format!("--name={RLO}{SCRIPT}")]
}

/// Why the grandchild (PID 4244) was not traced.
pub const UNFOLLOWED_REASON: &str = "denied\x1b]0;pwned\x07 \u{202e}<b>by</b> =policy";

pub use crate::text::is_unsafe;

/// Panics when `text` carries an unsafe character other than the line breaks between lines.
pub fn assert_no_raw_controls(what: &str, text: &str) {
    if let Some((i, c)) = text
        .char_indices()
        .find(|&(_, c)| c != '\n' && is_unsafe(c))
    {
        let from = text[..i].char_indices().rev().nth(40).map_or(0, |(j, _)| j);
        panic!(
            "{what}: raw {:?} at byte {i}, after {:?}",
            c,
            &text[from..i]
        );
    }
}

/// Writes the hostile trace to `path`: 2 s of stacks 1-4 leaking, each `scale[k]` blocks of
/// 1 KiB per 10 ms (BASE and NEW of a diff differ in `scale`), a thread that frees what it
/// allocates, RSS samples, lost events. Stack 4 leaks in a child process (4243, forked by the
/// traced command 4242, with a hostile command line of its own); a grandchild (4244) was not
/// traced, for a hostile reason.
pub fn write_trace(path: &Path, scale: [u64; 4]) {
    const MS: u64 = 1_000_000;
    let meta = TraceMeta {
        tool_version: "0.1.0\x1b[5m".into(),
        host_name: HOST.into(),
        kernel_release: "6.1\x07\u{202e}".into(),
        pid: 4242,
        command_line: command_line(),
        page_size: 4096,
        extra: vec![(
            "thread\x1b]0;name\x07".into(),
            format!("worker{TITLE}{RLO}{CSI}"),
        )],
        ..TraceMeta::default()
    };
    let mut t = TraceBuilder::new(&meta);
    let (own, child) = (command_line(), child_command_line());
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let child: Vec<&str> = child.iter().map(String::as_str).collect();
    t.process(0, 4242, 1, ProcessOrigin::Launched, &own)
        .process(MS, 4243, 4242, ProcessOrigin::Forked, &child)
        .thread(3, 4243)
        .unfollowed(2 * MS, 4244, 4243, UNFOLLOWED_REASON);
    t.module(1, MODULE, &[7; 20]).layout(StackLayout {
        module: 1,
        load: 0x5555_0000_0000,
        file: FILE.into(),
        first_line: 10,
    });
    for (id, names) in STACKS {
        let mut frames = t.named_frames(id, names);
        // One frame without a symbol: shown as `module+0xoffset`.
        frames.push(StackFrame {
            module: 1,
            offset: 0xdead,
            address: 0x5555_0000_dead,
        });
        t.stack(id, frames);
    }
    let mut address = 0x10_0000u64;
    for step in 0..200u64 {
        let time = (step + 1) * 10 * MS;
        for (k, (stack, _)) in STACKS.iter().enumerate() {
            // Stack 4 in the child, on its thread 3; the others on thread 1, unbound: the
            // traced command's.
            t.on_thread(if *stack == 4 { 3 } else { 1 });
            for _ in 0..scale[k] {
                address += 0x1000;
                t.alloc(time, address, 1024, *stack);
            }
            t.on_thread(1);
        }
        // Short-lived blocks on another thread: lifetimes to show.
        t.record(Record::Alloc {
            time: time + 1000,
            thread: 2,
            address: 0x7000_0000,
            size: 64,
            stack: 1,
            api: AllocApi::Malloc,
        })
        .record(Record::Free {
            time: time + 20_000,
            thread: 2,
            address: 0x7000_0000,
            size: 0,
            api: FreeApi::Free,
        });
        if step % 20 == 0 {
            t.rss(time, (4 << 20) + step * 4096, step * 4096);
        }
    }
    t.lost(2_005 * MS, 3, LostReason::RingBufferFull)
        .process_exit(2_006 * MS, 4243, None, Some(9))
        .end_with(2_010 * MS, Default::default());
    t.write(path);
}
