//! Which characters of a trace's text (or of `/proc`) are unsafe to show raw, and their visible
//! escapes. Here because both binaries need the same rule (the recorder for process names and
//! paths it prints, the analyzer for everything a trace carries), and this is the one crate
//! both depend on.
//!
//! Owns the set of unsafe characters and the terminal and JSON forms of an escape. Must not
//! change text that needs no escaping, and must not know about any output's layout (XML and
//! CSV rules live in the analyzer's `escape` module, which builds on this one).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// True for the characters no output may carry raw: C0 controls (tab and newline included: in
/// a field they would fake columns and lines), DEL, C1 controls, the bidi formatting
/// characters (embeddings, overrides, isolates and marks), the line and paragraph separators,
/// and U+FFFE/U+FFFF, which XML 1.0 forbids.
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{fffe}'
            | '\u{ffff}'
    )
}

/// Writes the visible escape of an unsafe character: `\t`, `\n`, `\r`, `\x1b` below 0x80,
/// `\u{202e}` above.
pub fn write_visible(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\t' => out.write_str("\\t"),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        c if u32::from(c) < 0x80 => write!(out, "\\x{:02x}", u32::from(c)),
        c => write!(out, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// `text` with every character `escape` selects replaced by its visible escape; borrowed when
/// nothing needed escaping.
pub fn visible(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    let Some(first) = text.find(&escape) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if escape(c) {
            let _ = write_visible(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One field for a terminal: every unsafe character (newlines too) as a visible escape.
pub fn terminal(text: &str) -> Cow<'_, str> {
    visible(text, is_unsafe)
}

/// `text` as a JSON string, quotes included: the JSON escapes, and every unsafe character as a
/// `\uXXXX` escape (all are in the Basic Multilingual Plane), so the parsed value is the raw
/// text.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_shows_escapes_and_leaves_plain_text_alone() {
        assert_eq!(
            terminal("a\x1b]0;pwned\x07\t\x7f\u{9b}\u{202e}b"),
            r"a\x1b]0;pwned\x07\t\x7f\u{9b}\u{202e}b"
        );
        assert!(matches!(terminal("fibonacci 30"), Cow::Borrowed(_)));
        assert_eq!(terminal("Grüße"), "Grüße");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
        assert_eq!(
            json_string("\x1b\x7f\u{9b}\u{202e}\u{2066}"),
            r#""\u001b\u007f\u009b\u202e\u2066""#
        );
    }
}
