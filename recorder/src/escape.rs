//! Text from `/proc` (process names, command lines, library paths) made safe to print.
//!
//! Any user can name a process (`prctl(PR_SET_NAME)`, argv, an executable's file name) and
//! root's `suspects` prints it; a library path comes from the target's mappings. Owns which
//! characters are unsafe and how the recorder shows them: on a terminal as visible escapes
//! (`\x1b`, `\u{202e}`), in JSON as `\uXXXX` escapes (the parsed value is the raw text). The
//! same rule as the analyzer's `escape` module, kept here so the recorder depends on no
//! analyzer code. Must not change text that needs no escaping.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for the characters no output may carry raw: C0 controls (tab and newline included),
/// DEL, C1 controls, the bidi formatting characters, the line and paragraph separators, and
/// U+FFFE/U+FFFF.
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

/// One field for a terminal: every unsafe character as a visible escape.
pub fn terminal(text: &str) -> Cow<'_, str> {
    if !text.contains(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` as a JSON string, quotes included.
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
            // All in the Basic Multilingual Plane: one \u escape each.
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
