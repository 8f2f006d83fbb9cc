//! No byte of a trace reaches a terminal, a JSON consumer, an XML parser or a spreadsheet
//! unescaped: the hostile trace (`memtrail_format::testing::escapes`: escape sequences, C1, DEL, bidi
//! overrides, `</script>`, `]]>`, formulas in its command line, host name, module path,
//! function and file names, and in the trace's own file name) through every output of the
//! analyzer.
//!
//! What each form promises: terminal text shows unsafe characters as visible escapes (`\x1b`,
//! `\u{202e}`); JSON keeps the raw text (DEL, C1 and bidi as `\uXXXX` escapes, which parse back
//! to the same characters); CSV string cells show visible escapes and start with `'` where a
//! spreadsheet would see a formula, numbers untouched; SVGs are well-formed XML.

//!
//! A recording of a program with a hostile name is in `tests/tests/escaping.rs` (it needs root).

mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use memtrail_format::testing::escapes::{
    self as hostile, FORMULA, HOST, SCRIPT, STACKS, assert_no_raw_controls, command_line,
};
use memtrail_tests::Scratch;
use serde_json::Value;
use support::memtrail;

/// Runs memtrail, expects success, and checks that neither stream carries a raw control
/// character; returns stdout and stderr.
fn ok(args: &[&OsStr]) -> (String, String) {
    let out = memtrail(args);
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    assert!(
        out.status.success(),
        "memtrail {args:?} failed: {stderr}\n{stdout}"
    );
    assert_no_raw_controls(&format!("stdout of {args:?}"), &stdout);
    assert_no_raw_controls(&format!("stderr of {args:?}"), &stderr);
    (stdout, stderr)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The hostile trace, under a hostile file name, and a second one for comparisons.
struct Traces {
    scratch: Scratch,
    /// BASE of comparisons.
    base: PathBuf,
    /// The hostile trace, named `t<ESC>[2J<RLO>.trace`.
    new: PathBuf,
}

fn traces(test: &str) -> Traces {
    let scratch = Scratch::new("escaping", test);
    let base = scratch.path("base.trace");
    // A directory of its own: `compare DIR` lists it.
    let dir = scratch.path("new");
    std::fs::create_dir_all(&dir).unwrap();
    let new = dir.join(OsStr::from_bytes("t\x1b[2J\u{202e}.trace".as_bytes()));
    hostile::write_trace(&base, [1, 1, 3, 1]);
    hostile::write_trace(&new, [3, 1, 1, 2]);
    Traces { scratch, base, new }
}

fn json(args: &[&OsStr]) -> Value {
    let (stdout, _) = ok(args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
}

#[test]
fn terminal_reports_show_escapes_instead_of_control_characters() {
    let t = traces("terminal");
    let new = t.new.as_os_str();
    let (info, warnings) = ok(&[os("info"), new]);
    for visible in [
        r"./srv\x1b]0;pwned\x07 \x1b[2J \u{202e}gpj.exe",
        r"\u{9b}31m\x7f a\nFAKE LINE",
        r"host\x1b[31m\u{9b}\u{2066}",
        r"kernel 6.1\x07\u{202e}",
        r"recorder 0.1.0\x1b[5m",
        r"t\x1b[2J\u{202e}.trace",
    ] {
        assert!(info.contains(visible), "no {visible} in:\n{info}");
    }
    // The lost events' warning names the trace.
    assert!(
        warnings.contains(r"t\x1b[2J\u{202e}.trace: the recorder lost 3 events"),
        "{warnings}"
    );

    let (leaks, _) = ok(&[os("leaks"), new]);
    for visible in [
        r"at =HYPERLINK",
        r"</script><script>alert(1)</script> /src/\x1b[2J\u{202e}evil.c:11 [libevil\x07\u{202e}.so]",
        r"]]>\u{fffe}\x00end",
        r#"line\nFAKE\r\tx "quoted" 'single'"#,
        r"ev\u{202e}il\u{9b}\x7f",
        r"main\x1b]0;pwned\x07",
        r"libevil\x07\u{202e}.so+0xdead",
    ] {
        assert!(leaks.contains(visible), "no {visible} in:\n{leaks}");
    }
    // The child's command line and why the grandchild was not traced: in `info`, in the
    // per-process part of `leaks`, and in the warnings.
    let child = r"./worker\x1b[2J --name=\u{202e}</script><script>alert(1)</script>";
    let reason = r"process 4244 (child of 4243) was not traced: denied\x1b]0;pwned\x07 \u{202e}<b>by</b> =policy";
    assert!(info.contains(child) && info.contains(reason), "{info}");
    assert!(leaks.contains(child), "{leaks}");
    assert!(warnings.contains(reason), "{warnings}");
    for text in [&info, &leaks] {
        assert!(
            !text.lines().any(|l| l.starts_with("FAKE")),
            "a name started a line of its own:\n{text}"
        );
    }

    let (lifetimes, _) = ok(&[
        os("lifetimes"),
        new,
        os("--function"),
        os("main\x1b]0;pwned\x07"),
    ]);
    assert!(
        lifetimes.contains(r"stacks through main\x1b]0;pwned\x07"),
        "{lifetimes}"
    );
    ok(&[os("timeline"), new]);

    let (diff, _) = ok(&[
        os("diff"),
        t.base.as_os_str(),
        new,
        os("--fail-on-growth"),
        os("100G"),
    ]);
    for visible in [
        r"NEW  ./srv\x1b]0;pwned\x07",
        r"t\x1b[2J\u{202e}.trace)",
        "at =HYPERLINK",
    ] {
        assert!(diff.contains(visible), "no {visible} in:\n{diff}");
    }
    // The gate's message on stderr names the stacks that crossed it.
    let gate = memtrail(&[
        os("diff"),
        t.base.as_os_str(),
        new,
        os("--fail-on-growth"),
        os("1K"),
    ]);
    assert_eq!(gate.status.code(), Some(1));
    let stderr = String::from_utf8(gate.stderr).unwrap();
    assert_no_raw_controls("the gate's message", &stderr);
    assert!(stderr.contains("growth gate failed"), "{stderr}");

    // Errors name the path they could not read.
    let missing = t
        .scratch
        .path("")
        .join(OsStr::from_bytes(b"missing\x1b]0;x\x07.trace"));
    let out = memtrail(&[os("info"), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_no_raw_controls("an error", &stderr);
    assert!(stderr.contains(r"missing\x1b]0;x\x07.trace"), "{stderr}");

    // The lines `report` and `export` print name their output file.
    let page = t.scratch.path("").join(OsStr::from_bytes(b"r\x1b[2J.html"));
    let (said, _) = ok(&[os("report"), new, os("-o"), page.as_os_str()]);
    assert!(said.contains(r"r\x1b[2J.html"), "{said}");
    let table = t.scratch.path("").join(OsStr::from_bytes(b"e\x1b[2J.csv"));
    let (said, _) = ok(&[
        os("export"),
        new,
        os("--format"),
        os("csv"),
        os("-o"),
        table.as_os_str(),
    ]);
    assert!(said.contains(r"e\x1b[2J.csv"), "{said}");
}

/// Every string of `v`, recursively.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out);
        }),
        _ => {}
    }
}

#[test]
fn json_outputs_are_valid_and_keep_the_raw_text() {
    let t = traces("json");
    let new = t.new.as_os_str();

    let info = json(&[os("info"), new, os("--json")]);
    let words: Vec<String> = serde_json::from_value(info["command_line"].clone()).unwrap();
    assert_eq!(words, command_line());
    assert_eq!(info["host_name"], HOST);
    assert_eq!(info["kernel_release"], "6.1\x07\u{202e}");
    assert_eq!(
        info["extra"]["thread\x1b]0;name\x07"],
        "worker\x1b]0;pwned\x07\u{202e}\u{9b}31m"
    );
    assert!(
        info["trace"]
            .as_str()
            .unwrap()
            .ends_with("t\x1b[2J\u{202e}.trace")
    );

    let leaks = json(&[os("leaks"), new, os("--json")]);
    assert_eq!(leaks["command"], command_line().join(" "));
    let mut functions: Vec<String> = leaks["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["frames"].as_array().unwrap().clone())
        .map(|f| f["function"].as_str().unwrap().to_owned())
        .collect();
    functions.sort();
    functions.dedup();
    for (_, names) in STACKS {
        for name in names {
            assert!(
                functions.iter().any(|f| f == name),
                "{name:?} not in {functions:?}"
            );
        }
    }
    let frame = &leaks["candidates"][0]["frames"][0];
    assert_eq!(frame["file"], hostile::FILE);
    assert_eq!(frame["module"], "libevil\x07\u{202e}.so");

    let child: Vec<String> =
        serde_json::from_value(leaks["processes"][1]["command_line"].clone()).unwrap();
    assert_eq!(child, hostile::child_command_line());
    assert_eq!(leaks["unfollowed"][0]["reason"], hostile::UNFOLLOWED_REASON);
    assert_eq!(info["unfollowed"][0]["reason"], hostile::UNFOLLOWED_REASON);

    json(&[os("lifetimes"), new, os("--json")]);
    json(&[os("timeline"), new, os("--json")]);
    let diff = json(&[os("diff"), t.base.as_os_str(), new, os("--json")]);
    let mut texts = Vec::new();
    strings(&diff, &mut texts);
    assert!(texts.iter().any(|s| s == SCRIPT), "{diff}");
    assert!(
        texts.iter().any(|s| s == "ev\u{202e}il\u{9b}\x7f"),
        "{diff}"
    );

    // Tables written by polars: compare's JSON on stdout, export's in a file.
    let compared = json(&[
        os("compare"),
        os("--baseline"),
        t.base.as_os_str(),
        t.new.parent().unwrap().as_os_str(),
        os("--format"),
        os("json"),
    ]);
    let mut texts = Vec::new();
    strings(&compared, &mut texts);
    assert!(texts.iter().any(|s| s == FORMULA), "{compared}");
    assert!(
        texts.iter().any(|s| s.ends_with("t\x1b[2J\u{202e}.trace")),
        "{compared}"
    );
    let file = t.scratch.path("stacks.json");
    ok(&[
        os("export"),
        new,
        os("--format"),
        os("json"),
        os("-o"),
        file.as_os_str(),
    ]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_no_raw_controls("export --format json", &text);
    let rows: Value = serde_json::from_str(&text).unwrap();
    let mut texts = Vec::new();
    strings(&rows, &mut texts);
    assert!(texts.iter().any(|s| s == "+1"), "{rows}");
    assert!(
        texts.iter().any(|s| s.contains("ev\u{202e}il\u{9b}\x7f")),
        "{rows}"
    );
}

/// The cells of a CSV text (RFC 4180: quoted cells may hold commas, quotes and newlines).
fn csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}

/// Checks a CSV: no raw control character, no cell a spreadsheet would run as a formula
/// (numbers aside); returns its rows, header first.
fn safe_csv(what: &str, text: &str) -> Vec<Vec<String>> {
    assert_no_raw_controls(what, text);
    let rows = csv(text);
    assert!(rows.len() > 1, "{what}: no rows in {text}");
    for row in &rows {
        for cell in row {
            if cell.parse::<f64>().is_ok() {
                continue;
            }
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{what}: formula cell {cell:?}"
            );
        }
    }
    rows
}

/// The cells of column `name`.
fn column<'a>(rows: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let i = rows[0]
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", rows[0]));
    rows[1..].iter().map(|r| r[i].as_str()).collect()
}

#[test]
fn csv_outputs_neutralize_formulas_and_keep_numbers() {
    let t = traces("csv");
    let new = t.new.as_os_str();
    let formulas = [
        "'=HYPERLINK(\"http://evil.example/\",\"click\")",
        "'+1",
        "'-2+3",
        "'@SUM(A1)",
    ];

    let (text, _) = ok(&[os("leaks"), new, os("--format"), os("csv")]);
    let rows = safe_csv("leaks --format csv", &text);
    let top = column(&rows, "top_function");
    for f in formulas {
        assert!(top.contains(&f), "{f} not in {top:?}");
    }
    let frames = column(&rows, "frames");
    assert!(
        frames
            .iter()
            .any(|f| f.contains(r"ev\u{202e}il\u{9b}\x7f (\x1b[2J\u{202e}evil.c:11)")),
        "{frames:?}"
    );
    // Numbers stay numbers.
    for n in column(&rows, "unfreed_bytes") {
        assert!(n.parse::<u64>().unwrap() > 0, "{n}");
    }

    let (text, _) = ok(&[os("lifetimes"), new, os("--format"), os("csv")]);
    safe_csv("lifetimes --format csv", &text);

    let (text, _) = ok(&[
        os("diff"),
        t.base.as_os_str(),
        new,
        os("--format"),
        os("csv"),
    ]);
    let rows = safe_csv("diff --format csv", &text);
    let top = column(&rows, "top_function");
    for f in formulas {
        assert!(top.contains(&f), "{f} not in {top:?}");
    }
    // Stack 3 shrank: its growth is a negative number, left as it is.
    let growth = column(&rows, "growth");
    let shrunk = top.iter().position(|f| *f == "'-2+3").unwrap();
    assert!(
        growth[shrunk].parse::<f64>().unwrap() < 0.0,
        "{}",
        growth[shrunk]
    );
    assert!(column(&rows, "trace")[0].ends_with(r"t\x1b[2J\u{202e}.trace"));

    let (text, _) = ok(&[
        os("compare"),
        os("--baseline"),
        t.base.as_os_str(),
        t.new.parent().unwrap().as_os_str(),
    ]);
    let rows = safe_csv("compare", &text);
    assert!(column(&rows, "top_function").contains(&formulas[0]));

    let file = t.scratch.path("stacks.csv");
    ok(&[
        os("export"),
        new,
        os("--format"),
        os("csv"),
        os("-o"),
        file.as_os_str(),
    ]);
    let rows = safe_csv(
        "export --format csv",
        &std::fs::read_to_string(&file).unwrap(),
    );
    assert!(column(&rows, "top_function").contains(&"'@SUM(A1)"));
}

fn parse_svg(what: &str, path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    // inferno's SVG declares the SVG 1.1 DTD.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(&text, options)
        .unwrap_or_else(|e| panic!("{what} is not well-formed XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg", "{what}");
    // Its text, as an SVG viewer shows it.
    doc.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn svgs_are_well_formed_and_show_escapes() {
    let t = traces("svg");
    let new = t.new.as_os_str();
    let flame = t.scratch.path("flame.svg");
    ok(&[os("flamegraph"), new, os("-o"), flame.as_os_str()]);
    let text = parse_svg("flamegraph", &flame);
    for visible in [
        SCRIPT,
        "]]>\\u{fffe}\\x00end",
        "ev\\u{202e}il\\u{9b}\\x7f",
        "./srv\\x1b]0;pwned\\x07",
    ] {
        assert!(
            text.contains(visible),
            "no {visible} in the flame graph:\n{text}"
        );
    }
    let folded = t.scratch.path("flame.folded");
    ok(&[
        os("flamegraph"),
        new,
        os("--folded"),
        os("-o"),
        folded.as_os_str(),
    ]);
    assert_no_raw_controls("folded stacks", &std::fs::read_to_string(&folded).unwrap());

    let diff = t.scratch.path("diff.svg");
    ok(&[
        os("diff"),
        t.base.as_os_str(),
        new,
        os("--flamegraph"),
        diff.as_os_str(),
    ]);
    let text = parse_svg("diff flame graph", &diff);
    assert!(text.contains(r"t\x1b[2J\u{202e}.trace"), "{text}");

    let lifetimes = t.scratch.path("lifetimes.svg");
    ok(&[os("lifetimes"), new, os("--svg"), lifetimes.as_os_str()]);
    let text = parse_svg("lifetimes chart", &lifetimes);
    assert!(text.contains(r"./srv\x1b]0;pwned\x07"), "{text}");
    let timeline = t.scratch.path("timeline.svg");
    ok(&[os("timeline"), new, os("--svg"), timeline.as_os_str()]);
    parse_svg("timeline chart", &timeline);
}

#[test]
fn html_reports_carry_no_injected_markup() {
    let t = traces("html");
    for (name, traces) in [
        ("single.html", vec![t.new.as_os_str()]),
        ("compared.html", vec![t.base.as_os_str(), t.new.as_os_str()]),
    ] {
        let page = t.scratch.path(name);
        let mut args = vec![os("report")];
        args.extend(traces);
        args.extend([os("-o"), page.as_os_str()]);
        ok(&args);
        let html = std::fs::read_to_string(&page).unwrap();
        // inferno's script (CDATA inside the SVG may hold tabs) aside, no raw control.
        let outside_script: String = html
            .split("<script")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    part.split_once("</script>").map_or("", |(_, rest)| rest)
                }
            })
            .collect();
        assert_no_raw_controls(name, &outside_script.replace(['\t', '\r'], " "));
        assert!(!html.contains("<script>alert"), "{name}: script injected");
        assert!(html.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The page's script and inferno's, nothing else.
        assert_eq!(html.matches("<script").count(), 2, "{name}");
        assert!(html.contains(r"./srv\x1b]0;pwned\x07"), "{name}");
        // Why the grandchild was not traced, among the warnings: its markup is text.
        assert!(
            html.contains(r"denied\x1b]0;pwned\x07 \u{202e}&lt;b&gt;by&lt;/b&gt; =policy"),
            "{name}"
        );
    }
    // The processes of the single report, the child's command line as text.
    let html = std::fs::read_to_string(t.scratch.path("single.html")).unwrap();
    assert!(html.contains("<section id=\"processes\">"));
    assert!(html.contains(r"./worker\x1b[2J --name=\u{202e}&lt;/script&gt;"));
}
