//! The JSON contract of docs/json.md, checked against the real binaries: every key the document
//! lists under a command's heading is present in that command's output. The document is the
//! source of the list, so a key dropped from the code, or documented but never written, fails
//! here.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use memtrail_format::testing::escapes as hostile;
use memtrail_tests::Scratch;
use serde_json::Value;
use support::memtrail;

/// `## `memtrail info --json`` -> the key paths listed under it.
fn documented_keys() -> BTreeMap<String, Vec<String>> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/json.md");
    let text = std::fs::read_to_string(doc).expect("docs/json.md");
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            current = Some(heading.trim_matches('`').to_owned());
        } else if let (Some(section), Some(rest)) = (&current, line.strip_prefix("- `"))
            && let Some((path, _)) = rest.split_once('`')
        {
            sections
                .entry(section.clone())
                .or_default()
                .push(path.to_owned());
        }
    }
    sections
}

/// Whether `path` (`a.b`, `a[].b`) is present in `value`. An array must not be empty (a path
/// through an empty array checks nothing), and a path that continues through `null` is present
/// when `null` is the documented value at that point.
fn check(value: &Value, path: &str, whole: &str, command: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let (key, each) = match head.strip_suffix("[]") {
        Some(k) => (k, true),
        None => (head, false),
    };
    let Some(field) = value.get(key) else {
        panic!("{command}: documented key `{whole}` is missing (no `{key}` in {value})");
    };
    let Some(rest) = rest else { return };
    if each {
        let items = field
            .as_array()
            .unwrap_or_else(|| panic!("{command}: `{whole}`: `{key}` is not an array"));
        assert!(
            !items.is_empty(),
            "{command}: `{whole}`: `{key}` is empty here, nothing to check"
        );
        for item in items {
            check(item, rest, whole, command);
        }
    } else if !field.is_null() {
        check(field, rest, whole, command);
    }
}

fn json(args: &[&str], expect_status: i32) -> Value {
    let out = memtrail(args);
    assert_eq!(
        out.status.code(),
        Some(expect_status),
        "memtrail {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("memtrail {args:?}: {e}"))
}

#[test]
fn every_documented_key_is_in_the_output() {
    let scratch = Scratch::new("json_contract", "keys");
    let (base, new) = (scratch.path("base.trace"), scratch.path("new.trace"));
    hostile::write_trace(&base, [1, 1, 3, 1]);
    hostile::write_trace(&new, [3, 1, 1, 2]);
    let (base, new) = (base.to_str().unwrap(), new.to_str().unwrap());

    let sections = documented_keys();
    let outputs: Vec<(&str, Value)> = vec![
        ("memtrail info --json", json(&["info", new, "--json"], 0)),
        (
            "memtrail leaks --json",
            json(&["leaks", new, "--json", "--min-age", "0"], 0),
        ),
        (
            "memtrail lifetimes --json",
            json(&["lifetimes", new, "--json"], 0),
        ),
        (
            "memtrail timeline --json",
            json(&["timeline", new, "--json"], 0),
        ),
        // A gate that trips, so that `gate` is an object.
        (
            "memtrail diff --json",
            json(
                &[
                    "diff",
                    base,
                    new,
                    "--json",
                    "--min-age",
                    "0",
                    "--fail-on-growth",
                    "1",
                ],
                1,
            ),
        ),
    ];
    for (command, value) in &outputs {
        let keys = sections
            .get(*command)
            .unwrap_or_else(|| panic!("docs/json.md has no section `{command}`"));
        assert!(
            keys.len() >= 5,
            "{command}: only {} keys parsed",
            keys.len()
        );
        for key in keys {
            check(value, key, key, command);
        }
    }
    // The suspects section is checked by tests/tests/suspects.rs (it needs live processes);
    // every other section must have been checked above.
    for section in sections.keys() {
        assert!(
            section.contains("suspects") || outputs.iter().any(|(c, _)| c == section),
            "docs/json.md documents `{section}`, which this test does not run"
        );
    }
}
