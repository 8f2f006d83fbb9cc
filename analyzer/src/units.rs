//! Parsing and printing of durations and byte sizes, as the command line and reports spell them.
//!
//! Owns the text forms only ("500ms", "64K", "1.5 s", "40.0 KiB"); must not know about traces.

use std::fmt::Write as _;

/// Parses a duration such as `500ms`, `1.5s`, `10us`, `250ns`, `2m`, `1h` into nanoseconds.
/// A bare `0` is accepted; any other number needs a unit.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(0);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {text:?} needs a unit: ns, us, ms, s, m or h"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration {text:?} does not start with a number"))?;
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        other => {
            return Err(format!(
                "duration {text:?} has an unknown unit {other:?}: use ns, us, ms, s, m or h"
            ));
        }
    };
    let ns = value * scale;
    if !ns.is_finite() || ns < 0.0 || ns > u64::MAX as f64 {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(ns.round() as u64)
}

/// Parses a byte count such as `65536`, `64K`, `64KiB`, `1.5M`, `2G` (binary units, the `B`
/// and `iB` optional).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count"))?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    let scale = match unit.to_ascii_uppercase().as_str() {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit: use bytes or K, M, G, T (binary)"
            ));
        }
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// A duration for humans: `0 ns`, `812 ns`, `12.3 us`, `4.56 ms`, `1.23 s`, `2m05s`, `1h02m`.
pub fn format_duration(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} us", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", f / 1e6)
    } else if ns < 60_000_000_000 {
        format!("{:.2} s", f / 1e9)
    } else if ns < 3_600_000_000_000 {
        let s = ns / 1_000_000_000;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = ns / 60_000_000_000;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// Bytes for humans, binary units: `512 B`, `40.0 KiB`, `1.50 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let mut s = String::new();
    let _ = if v < 10.0 {
        write!(s, "{v:.2} {}", UNITS[unit])
    } else {
        write!(s, "{v:.1} {}", UNITS[unit])
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("10us"), Ok(10_000));
        assert_eq!(parse_duration("250ns"), Ok(250));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("1.5M"), Ok(1_572_864));
        assert_eq!(parse_bytes("2 GB"), Ok(2 << 30));
        assert!(parse_bytes("K").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn human_forms() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(40 * 1024), "40.0 KiB");
        assert_eq!(format_bytes(3 << 19), "1.50 MiB");
        assert_eq!(format_duration(812), "812 ns");
        assert_eq!(format_duration(1_500_000_000), "1.50 s");
        assert_eq!(format_duration(125_000_000_000), "2m05s");
    }
}
