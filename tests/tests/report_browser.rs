//! `memtrail report` opened in a real browser: headless Chromium driven over WebDriver
//! (chromedriver). The page must render, show the top leak's function (escaped: C++ names carry
//! `<` and `&`), carry a flame graph whose search and zoom work, and log no console error.
//!
//! Needs the Debian packages chromium and chromium-driver (`.ci/run` installs them). Without them
//! the tests print why and pass, unless MEMTRAIL_REQUIRE_BPF is set (as `.ci/run` does): then
//! they fail. The recorded test also needs BPF, like the other end-to-end tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memtrail_format::testing::{StackLayout, TraceBuilder};
use memtrail_format::{EndTotals, LostReason, TraceMeta};
use memtrail_tests::{
    Scratch, analyzer, bpf_available, compile_sample, record_ok, repo_root, run_ok,
};
use serde_json::{Value, json};

/// Where a program is: `$env_var`, else the first of `names` on PATH.
fn find_program(env_var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Chromium and chromedriver, or `None` (with the reason printed) when the test may skip.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_program("MEMTRAIL_CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = find_program("MEMTRAIL_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let why = "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)";
            if std::env::var_os("MEMTRAIL_REQUIRE_BPF").is_some() {
                panic!("MEMTRAIL_REQUIRE_BPF is set (CI) but {why}");
            }
            eprintln!("skipping: {why}");
            None
        }
    }
}

/// One HTTP/1.1 exchange on a fresh connection: method, path, JSON body -> status, JSON.
/// chromedriver answers with a Content-Length and keeps the connection open, so the body is
/// read by its length.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the headers ended",
            ));
        }
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&response[..header_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let mut payload = response[header_end..].to_vec();
    match length {
        Some(len) => {
            while payload.len() < len {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Err(std::io::Error::other("connection closed inside the body"));
                }
                payload.extend_from_slice(&buf[..n]);
            }
            payload.truncate(len);
        }
        None => {
            stream.read_to_end(&mut payload)?;
        }
    }
    let value = if payload.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&payload).map_err(|e| {
            std::io::Error::other(format!("{e}: {}", String::from_utf8_lossy(&payload)))
        })?
    };
    Ok((status, value))
}

/// A chromedriver process and one headless Chromium session; both end on drop.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path, profile: &Path) -> Browser {
        // A free port: bind, read it, release it for chromedriver.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
        };
        // Wait for it to listen; the limit only bounds a broken install, nothing is timed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match http(port, "GET", "/status", None) {
                Ok((200, v)) if v["value"]["ready"] == true => break,
                _ if Instant::now() > deadline => panic!("chromedriver never became ready"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let v = b.call("POST", "/session", Some(&caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    /// A WebDriver command; panics with the driver's message on an error status.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, v) =
            http(self.port, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
    }

    fn open(&self, file: &Path) {
        let url = format!("file://{}", file.display());
        self.session("POST", "/url", Some(json!({ "url": url })));
    }

    fn script(&self, source: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            Some(json!({"script": source, "args": []})),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = self.session(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    fn text(&self, element: &str) -> String {
        self.session("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn displayed(&self, element: &str) -> bool {
        self.session("GET", &format!("/element/{element}/displayed"), None) == true
    }

    fn click(&self, element: &str) {
        self.session(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// The browser's console since the last call.
    fn console(&self) -> Vec<Value> {
        self.session("POST", "/se/log", Some(json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn memtrail(args: &[&str]) {
    run_ok(Command::new(analyzer()).args(args));
}

/// Console entries at level SEVERE (errors), with the page's URL trimmed out.
fn errors(console: &[Value]) -> Vec<String> {
    console
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What every report must do in the browser: render its sections, name `top_function` first
/// in the table, and carry a flame graph whose search and zoom work.
fn check_report(b: &Browser, page: &Path, top_function: &str, flame_text: &str) {
    b.open(page);
    let title = b.session("GET", "/title", None);
    assert!(
        title.as_str().unwrap_or_default().starts_with("memtrail"),
        "{title}"
    );
    for section in ["summary", "warnings", "candidates", "flamegraph-section"] {
        let e = b.element(&format!("#{section}"));
        assert!(b.displayed(&e), "#{section} is not displayed");
    }
    // The top row names the function, as text (escaped in the file, decoded by the browser).
    let top = b.element("#candidates tbody tr:first-child .function");
    assert!(b.displayed(&top));
    assert_eq!(b.text(&top), top_function);

    // The flame graph: inferno's SVG, inline, with frames, one of them the leak.
    let frames = b.script(
        "return Array.from(document.querySelectorAll('#frames > g')).map(g => g.querySelector('title').textContent);",
    );
    let frames: Vec<&str> = frames
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(frames.len() >= 2, "{frames:?}");
    assert!(
        frames.iter().any(|t| t.contains(flame_text)),
        "no frame with {flame_text:?} in {frames:?}"
    );
    let svg = b.element("#flamegraph-box svg");
    assert!(b.displayed(&svg));
    let first_svg = b.script("return document.getElementsByTagName('svg')[0].parentElement.id;");
    assert_eq!(
        first_svg, "flamegraph-box",
        "the flame graph must be the first SVG"
    );

    // Zoom: a click on the leak's frame hides the frames beside it and shows "Reset Zoom".
    let unzoom = b.element("#unzoom");
    assert_eq!(
        b.script("return document.getElementById('unzoom').classList.contains('hide');"),
        true
    );
    let target = b.script(&format!(
        "const g = Array.from(document.querySelectorAll('#frames > g')).find(g => g.querySelector('title').textContent.includes({})); if (!g) return null; g.id = 'memtrail-test-target'; return true;",
        Value::String(flame_text.to_owned())
    ));
    assert_eq!(target, true, "no zoomable frame for {flame_text}");
    // The frame's group: its label may cover the middle of its rect.
    b.click(&b.element("#memtrail-test-target"));
    assert_eq!(
        b.script("return document.getElementById('unzoom').classList.contains('hide');"),
        false,
        "zoom did not happen"
    );
    assert!(b.displayed(&unzoom));
    b.click(&unzoom);
    assert_eq!(
        b.script("return document.getElementById('unzoom').classList.contains('hide');"),
        true,
        "reset zoom did not happen"
    );

    // Search: the button opens a prompt; the term highlights frames and says how much matched.
    b.click(&b.element("#search"));
    b.session(
        "POST",
        "/alert/text",
        Some(json!({"text": regex_escape(flame_text)})),
    );
    b.session("POST", "/alert/accept", Some(json!({})));
    let matched = b.text(&b.element("#matched"));
    assert!(matched.starts_with("Matched: "), "{matched:?}");
    let highlighted = b.script(&format!(
        "return Array.from(document.querySelectorAll('#frames > g > rect')).filter(r => r.getAttribute('fill') === '{}').length;",
        "rgb(230,0,230)"
    ));
    assert!(highlighted.as_u64().unwrap_or(0) >= 1, "{highlighted}");

    let errs = errors(&b.console());
    assert!(errs.is_empty(), "console errors: {errs:#?}");
}

fn regex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// A C++-shaped leak: a function whose name needs escaping leaks 1 KiB every 10 ms for 5 s;
/// a second stack leaks a little at start-up.
fn cxx_trace(path: &Path) {
    const MS: u64 = 1_000_000;
    let meta = TraceMeta {
        tool_version: "0.1.0".into(),
        command_line: vec!["./server".into(), "--port=8080".into(), "<&>".into()],
        page_size: 4096,
        ..TraceMeta::default()
    };
    let mut t = TraceBuilder::new(&meta);
    t.module(1, "/srv/server", &[3; 20]).layout(StackLayout {
        module: 1,
        load: 0x5555_0000_0000,
        file: "cache.hpp".into(),
        first_line: 10,
    });
    t.string("cache.hpp");
    t.named_stack(
        1,
        &[
            "std::vector<Entry, std::allocator<Entry> >::_M_realloc_insert<Entry const&>",
            "Cache<std::string, Entry>::insert(std::string const&, Entry&&)",
            "main",
        ],
    )
    .named_stack(2, &["load_config(char const*)", "main"]);
    let mut address = 0x10_0000u64;
    for i in 0..500u64 {
        address += 0x1000;
        let time = (i + 1) * 10 * MS;
        t.alloc(time, address, 1024, 1);
        if i % 50 == 0 {
            t.rss(time, (4 << 20) + i * 1100, i * 1024);
        }
        if i % 2 == 0 {
            // Temporaries from the same stack, freed at once.
            t.alloc(time + 1000, address + 0x800, 64, 1)
                .free(time + 50_000, address + 0x800);
        }
    }
    t.alloc(5 * MS, 0x1000, 300, 2)
        .lost(5_050 * MS, 7, LostReason::RingBufferFull)
        .end_with(5_100 * MS, EndTotals::default());
    t.write(path);
}

#[test]
fn report_of_a_cxx_leak_renders_escaped_with_a_working_flame_graph() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let scratch = Scratch::new("report-browser", "cxx");
    let trace = scratch.path("server.trace");
    cxx_trace(&trace);
    let page = scratch.path("report.html");
    memtrail(&[
        "report",
        trace.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);

    // Self-contained: nothing fetched from anywhere, every name escaped.
    let html = std::fs::read_to_string(&page).unwrap();
    for needle in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
        assert!(!html.contains(needle), "the page loads something: {needle}");
    }
    assert!(html.contains("std::vector&lt;Entry, std::allocator&lt;Entry&gt; &gt;"));
    assert!(!html.contains("<Entry"));
    assert!(html.contains("./server --port=8080 &lt;&amp;&gt;"));

    let b = Browser::start(&chromium, &chromedriver, &scratch.path("profile"));
    let top = "std::vector<Entry, std::allocator<Entry> >::_M_realloc_insert<Entry const&>";
    check_report(&b, &page, top, "_M_realloc_insert");
    // The charts drawn by memtrail are there too.
    for id in ["lifetimes", "timeline"] {
        let svg = b.element(&format!("#{id} svg"));
        assert!(b.displayed(&svg), "#{id} chart");
    }
    let verdict = b.text(&b.element("#candidates tbody tr:first-child .badge"));
    assert_eq!(verdict, "leak");
    // The lost events are said, in the warnings section.
    let warning = b.text(&b.element("#warnings .warning"));
    assert!(
        warning.contains("the recorder lost 7 events") && warning.contains("server.trace"),
        "{warning}"
    );
    // The timeline has both curves: the heap and the RSS samples.
    let lines = b.script("return document.querySelectorAll('#timeline svg polyline').length;");
    assert_eq!(lines, 2);
}

#[test]
fn diff_report_of_the_fibonacci_leak_renders_in_the_browser() {
    if !bpf_available() {
        return;
    }
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let scratch = Scratch::new("report-browser", "fibonacci");
    let leaking = scratch.path("leaking").join("app");
    let fixed = scratch.path("fixed").join("app");
    compile_sample(&repo_root().join("samples/fibonacci.c"), &leaking);
    compile_sample(&repo_root().join("samples/fibonacci_fixed.c"), &fixed);
    let (leak_trace, fixed_trace) = (scratch.path("leak.trace"), scratch.path("fixed.trace"));
    record_ok(&leak_trace, &[], &[leaking.to_str().unwrap(), "1.5"]);
    record_ok(&fixed_trace, &[], &[fixed.to_str().unwrap(), "1.5"]);

    let single = scratch.path("leak.html");
    memtrail(&[
        "report",
        leak_trace.to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
    ]);
    let compared = scratch.path("diff.html");
    memtrail(&[
        "report",
        fixed_trace.to_str().unwrap(),
        leak_trace.to_str().unwrap(),
        "-o",
        compared.to_str().unwrap(),
    ]);

    // The fix, the other way round: the leak shrank, and the flame graph still shows it.
    let fix = scratch.path("fix.html");
    memtrail(&[
        "report",
        leak_trace.to_str().unwrap(),
        fixed_trace.to_str().unwrap(),
        "-o",
        fix.to_str().unwrap(),
    ]);

    let b = Browser::start(&chromium, &chromedriver, &scratch.path("profile"));
    check_report(&b, &single, "fibonacci", "fibonacci");
    check_report(&b, &compared, "fibonacci", "fibonacci");
    let status = b.text(&b.element("#candidates tbody tr:first-child .badge"));
    assert_eq!(status, "grown");
    for id in [
        "lifetimes-new",
        "lifetimes-base",
        "timeline-new",
        "timeline-base",
    ] {
        let svg = b.element(&format!("#{id} svg"));
        assert!(b.displayed(&svg), "#{id} chart");
    }
    check_report(&b, &fix, "fibonacci", "fibonacci");
    let status = b.text(&b.element("#candidates tbody tr:first-child .badge"));
    assert_eq!(status, "shrunk");
}

/// The hostile trace (`memtrail_format::testing::escapes`: escape sequences, C1, DEL, bidi overrides,
/// `</script><script>alert(1)</script>`, `]]>`, formulas in every name it carries): the report
/// and the comparison report render, run no injected script, log no console error, and show
/// the control characters as visible escapes.
#[test]
fn report_of_a_hostile_trace_runs_no_injected_script() {
    use memtrail_format::testing::escapes::{self as hostile, FORMULA, SCRIPT};
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let scratch = Scratch::new("report-browser", "hostile");
    let (base, new) = (scratch.path("base.trace"), scratch.path("new.trace"));
    hostile::write_trace(&base, [1, 1, 3, 1]);
    hostile::write_trace(&new, [3, 1, 1, 2]);
    let (single, compared) = (scratch.path("single.html"), scratch.path("compared.html"));
    memtrail(&[
        "report",
        new.to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
    ]);
    memtrail(&[
        "report",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
        "-o",
        compared.to_str().unwrap(),
    ]);

    let b = Browser::start(&chromium, &chromedriver, &scratch.path("profile"));
    for page in [&single, &compared] {
        // The leak's top function is a spreadsheet formula: plain text here.
        check_report(&b, page, FORMULA, "HYPERLINK");
        // No dialog was opened (alert(1) would have been).
        let (status, alert) = http(
            b.port,
            "GET",
            &format!("/session/{}/alert/text", b.session),
            None,
        )
        .expect("ask for an open alert");
        assert_ne!(status, 200, "an alert is open: {alert}");
        // Only the page's script and the flame graph's.
        assert_eq!(
            b.script("return document.querySelectorAll('script').length;"),
            2
        );
        // The markup in a name is text, and control characters show as escapes.
        let text = b
            .script("return document.body.innerText;")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(text.contains(SCRIPT), "{text}");
        for visible in [r"./srv\x1b]0;pwned\x07", r"ev\u{202e}il\u{9b}\x7f"] {
            assert!(text.contains(visible), "no {visible} in the page:\n{text}");
        }
        assert!(
            !text.contains(['\x1b', '\u{202e}', '\u{9b}', '\x7f']),
            "{text}"
        );
        let title = b.session("GET", "/title", None);
        assert!(
            title
                .as_str()
                .unwrap_or_default()
                .contains(r"\x1b]0;pwned\x07"),
            "{title}"
        );
    }
}
