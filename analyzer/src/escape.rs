//! Text from a trace made safe for the place it is shown in.
//!
//! Whoever controls the traced program controls much of a trace's text: its command line,
//! module and file paths, function names; the host name comes from the traced machine, and
//! `compare DIR` reads trace names from a directory listing. Any of it may hold escape
//! sequences (which a terminal obeys), bidi overrides (which reorder what a terminal or a page
//! shows), characters XML 1.0 forbids, or spreadsheet formulas.
//!
//! Which characters are unsafe is [`is_unsafe`], shared with the recorder through
//! `memtrail_format::text`. This module owns how each output form of the analyzer shows them:
//! - terminals ([`terminal`], [`shown`], [`terminal_lines`]): a visible escape in their place,
//!   `\x1b`, `\t`, `\u{202e}`, so a reader sees that they were there;
//! - JSON ([`json`], [`JsonWriter`]): `\u007f`-style escapes, so the parsed value is the raw
//!   value, unchanged;
//! - XML and HTML ([`xml`]): the terminal's visible escapes (XML 1.0 forbids most control
//!   characters even as character references), then entities for `& < > " '`;
//! - CSV ([`csv_cell`]): the terminal's visible escapes, and a leading `'` on a cell a
//!   spreadsheet would read as a formula.
//!
//! Renderers keep the raw text and escape it where they write it, each its own way. This module
//! must not change text that needs no escaping: ordinary names print exactly as before. A
//! backslash is not escaped: a name holding the text `\x1b` reads like one that held ESC, which
//! misleads no terminal.

use std::borrow::Cow;
use std::fmt::{self, Display, Write as _};
use std::io;

pub use memtrail_format::text::{is_unsafe, terminal};
use memtrail_format::text::{visible, write_visible};

/// A whole report for a terminal, its lines kept: every unsafe character but `\n` as a visible
/// escape. The renderers escape each field with [`terminal`]; this is the net behind them.
pub fn terminal_lines(text: &str) -> Cow<'_, str> {
    visible(text, |c| c != '\n' && is_unsafe(c))
}

/// [`terminal_lines`] of a whole report, reusing `text` when nothing needed escaping.
pub fn terminal_report(text: String) -> String {
    let escaped = match terminal_lines(&text) {
        Cow::Owned(escaped) => Some(escaped),
        Cow::Borrowed(_) => None,
    };
    escaped.unwrap_or(text)
}

/// Displays a value as [`terminal`] shows its text: `format!("{}", shown(path.display()))`.
pub fn shown<T: Display>(value: T) -> Shown<T> {
    Shown(value)
}

/// See [`shown`].
pub struct Shown<T>(T);

/// Passes text through, unsafe characters as visible escapes.
struct VisibleWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for VisibleWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match terminal(s) {
            Cow::Borrowed(s) => self.0.write_str(s),
            Cow::Owned(s) => self.0.write_str(&s),
        }
    }
}

impl<T: Display> Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            // Padding counts the escaped text.
            return f.pad(&terminal(&self.0.to_string()));
        }
        write!(VisibleWriter(f), "{}", self.0)
    }
}

/// Serialized JSON with the unsafe characters JSON writers leave raw (DEL, C1, bidi, the
/// separators, U+FFFE/U+FFFF) as `\uXXXX` escapes. Those characters can only be inside strings
/// (JSON's own syntax is ASCII), where the escape means the same character: the document
/// parses to the same values. C0 controls are left alone: a JSON writer has escaped those in
/// strings, and outside them they are the document's whitespace.
pub fn json(text: &str) -> Cow<'_, str> {
    let escape = |c: char| u32::from(c) >= 0x7f && is_unsafe(c);
    let Some(first) = text.find(escape) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if escape(c) {
            // Every unsafe character is in the Basic Multilingual Plane: one \u escape.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`json`] of a whole document, reusing `text` when nothing needed escaping.
pub fn json_document(text: String) -> String {
    let escaped = match json(&text) {
        Cow::Owned(escaped) => Some(escaped),
        Cow::Borrowed(_) => None,
    };
    escaped.unwrap_or(text)
}

/// [`json`] on a stream: what polars' JSON writer writes, escaped on its way to `inner`. A
/// character split between two writes is held back until its end arrives. Call
/// [`JsonWriter::finish`] at the end.
pub struct JsonWriter<W: io::Write> {
    inner: W,
    /// The start of a character whose end has not been written yet (at most 3 bytes).
    pending: Vec<u8>,
}

impl<W: io::Write> JsonWriter<W> {
    pub fn new(inner: W) -> JsonWriter<W> {
        JsonWriter {
            inner,
            pending: Vec::new(),
        }
    }

    /// Writes what is held back (only an incomplete character, which no valid UTF-8 stream
    /// ends with) and gives the inner writer back.
    pub fn finish(mut self) -> io::Result<W> {
        let pending = std::mem::take(&mut self.pending);
        self.inner.write_all(&pending)?;
        Ok(self.inner)
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 character that continues past it.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xc0 != 0x80 {
            // A lead byte (or ASCII): how long is its character?
            let len = match b {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            return if len > back { back } else { 0 };
        }
    }
    0
}

impl<W: io::Write> io::Write for JsonWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let complete = self.pending.len() - incomplete_tail(&self.pending);
        match std::str::from_utf8(&self.pending[..complete]) {
            Ok(text) => self.inner.write_all(json(text).as_bytes())?,
            // Not UTF-8 (no JSON writer does this): passed on untouched.
            Err(_) => self.inner.write_all(&self.pending[..complete])?,
        }
        self.pending.drain(..complete);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Text for XML or HTML content and attribute values: unsafe characters as visible escapes
/// (XML 1.0 forbids most of them, even as `&#...;`), then `& < > " '` as entities.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if is_unsafe(c) => {
                let _ = write_visible(&mut out, c);
            }
            c => out.push(c),
        }
    }
    out
}

/// One string cell of a CSV file: unsafe characters as visible escapes, and a leading `'` when
/// the raw text starts with `=`, `+`, `-`, `@`, a tab or a carriage return, which a spreadsheet
/// would read as a formula (OWASP's rule for CSV injection).
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let cell = terminal(text);
    if formula {
        Cow::Owned(format!("'{cell}"))
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &str = "a\x1b]0;pwned\x07b\x1b[2J\tc\nd\re\x7f\u{9b}f\u{202e}g\u{2066}\u{fffe}h";

    #[test]
    fn terminal_shows_every_unsafe_character_as_an_escape() {
        assert_eq!(
            terminal(NASTY),
            r"a\x1b]0;pwned\x07b\x1b[2J\tc\nd\re\x7f\u{9b}f\u{202e}g\u{2066}\u{fffe}h"
        );
        assert!(!terminal(NASTY).chars().any(is_unsafe));
        // Ordinary text, C++ names and other scripts are left alone, not copied.
        for plain in [
            "main",
            "std::vector<int>::push_back(int&&)",
            "Grüße 日本",
            "",
        ] {
            assert!(matches!(terminal(plain), Cow::Borrowed(p) if p == plain));
        }
        assert_eq!(terminal_lines("a\x1bb\nc\td\n"), "a\\x1bb\nc\\td\n");
    }

    #[test]
    fn shown_escapes_display_output_and_pads_what_it_shows() {
        assert_eq!(format!("{}", shown("x\x1by")), "x\\x1by");
        assert_eq!(format!("[{:<8}]", shown("\x1b")), "[\\x1b    ]");
        let path = std::path::Path::new("/tmp/\u{202e}cod.trace");
        assert_eq!(
            format!("{}", shown(path.display())),
            "/tmp/\\u{202e}cod.trace"
        );
    }

    #[test]
    fn json_escapes_what_serde_leaves_raw_and_keeps_the_value() {
        let raw = serde_json::to_string(&NASTY).unwrap();
        assert!(raw.contains('\u{202e}') && raw.contains('\x7f'));
        let escaped = json(&raw);
        assert!(!escaped.chars().any(is_unsafe), "{escaped}");
        assert!(escaped.contains(r"\u007f") && escaped.contains(r"\u009b"));
        assert!(escaped.contains(r"\u202e") && escaped.contains(r"\ufffe"));
        let back: String = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, NASTY);
    }

    #[test]
    fn json_writer_escapes_characters_split_between_writes() {
        use std::io::Write as _;
        let text = serde_json::to_string(&vec![NASTY; 3]).unwrap();
        for chunk in 1..=5 {
            let mut w = JsonWriter::new(Vec::new());
            for piece in text.as_bytes().chunks(chunk) {
                w.write_all(piece).unwrap();
            }
            let out = String::from_utf8(w.finish().unwrap()).unwrap();
            assert_eq!(out, json(&text), "chunks of {chunk}");
        }
    }

    #[test]
    fn xml_is_well_formed_whatever_the_text() {
        assert_eq!(
            xml("</script>\x1b]]>\"'&\u{ffff}"),
            "&lt;/script&gt;\\x1b]]&gt;&quot;&apos;&amp;\\u{ffff}"
        );
    }

    #[test]
    fn csv_cells_that_look_like_formulas_are_neutralized() {
        for (raw, cell) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\\tx"),
            ("\r=1", "'\\r=1"),
            ("main", "main"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(raw), cell, "{raw:?}");
        }
    }
}
