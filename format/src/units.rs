//! Byte sizes and durations as both programs' command lines take them and their outputs print
//! them: `64K`, `1.5M`, `500ms`, `2m`; `6.71 MiB`, `1.50 s`.
//!
//! It lives here only because memtrail-format is the one crate both `memtrail-record` and
//! `memtrail` depend on; it has nothing to do with the trace format. Owns the text forms
//! (one parser and one printer for each kind of quantity, so that a flag reads the same in
//! both binaries). Must not: know about traces or flags, or depend on anything.
//!
//! The rules:
//! - A size is a number with an optional binary unit: `4096`, `4K`, `4KiB`, `4KB`, `1.5M`,
//!   `2G`, `1T` (K = 1024, case-insensitive, the `B` or `iB` optional, a space allowed before
//!   the unit). Decimals are allowed and rounded to the nearest byte (`1.5M` = 1572864).
//! - A duration is a number with a unit, `ns`, `us` (or `µs`), `ms`, `s`, `m` (or `min`), `h`:
//!   `250ns`, `10us`, `500ms`, `2.5s`, `5m`, `1h`. A bare number is seconds (`60` = 1 minute).
//!   Decimals are allowed; the result is kept to the nanosecond.

use std::fmt;
use std::time::Duration;

/// A size or duration that does not parse: the text and what was expected, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    message: String,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UnitError {}

const SIZE_HINT: &str = "a number of bytes with an optional K, M, G or T (binary: 4096, 64K, 1.5M)";
const DURATION_HINT: &str =
    "a number with ns, us, ms, s, m or h (250ns, 500ms, 2s, 5m); a bare number is seconds";

/// Splits `text` into its number (digits and one optional `.`) and its unit, both trimmed.
fn split_number(text: &str) -> (&str, &str) {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    (number, unit.trim())
}

/// `number * scale`, exactly for whole numbers, rounded to the nearest unit for decimals;
/// `None` when it is not a number or out of range.
fn scaled(number: &str, scale: u64) -> Option<u128> {
    if number.is_empty() || number.chars().all(|c| c == '.') {
        return None;
    }
    if !number.contains('.') {
        return number
            .parse::<u64>()
            .ok()
            .map(|n| u128::from(n) * u128::from(scale));
    }
    let value = number.parse::<f64>().ok()? * scale as f64;
    (value.is_finite() && value >= 0.0 && value < u128::MAX as f64).then(|| value.round() as u128)
}

/// Parses a size such as `4096`, `4K`, `4KiB`, `1.5M`, `2G` or `1T` into bytes (see the
/// module documentation).
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text);
    let unit = unit.to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let scale: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(UnitError {
                message: format!("`{text}` is not a size: {SIZE_HINT}"),
            });
        }
    };
    let bytes = scaled(number, scale).ok_or_else(|| UnitError {
        message: format!("`{text}` is not a size: {SIZE_HINT}"),
    })?;
    u64::try_from(bytes).map_err(|_| UnitError {
        message: format!("size `{text}` is out of range"),
    })
}

/// Parses a duration such as `250ns`, `10us`, `500ms`, `2s`, `5m`, `1h`, or a bare number of
/// seconds (`60`, `2.5`).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_number(text);
    let nanos_per_unit: u64 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(UnitError {
                message: format!("`{text}` is not a duration: {DURATION_HINT}"),
            });
        }
    };
    let nanos = scaled(number, nanos_per_unit).ok_or_else(|| UnitError {
        message: format!("`{text}` is not a duration: {DURATION_HINT}"),
    })?;
    let seconds = u64::try_from(nanos / 1_000_000_000).map_err(|_| UnitError {
        message: format!("duration `{text}` is out of range"),
    })?;
    Ok(Duration::new(seconds, (nanos % 1_000_000_000) as u32))
}

/// [`parse_duration`] in nanoseconds, the analyzer's unit of time (up to about 584 years).
pub fn parse_duration_ns(text: &str) -> Result<u64, UnitError> {
    let duration = parse_duration(text)?;
    u64::try_from(duration.as_nanos()).map_err(|_| UnitError {
        message: format!("duration `{text}` is out of range"),
    })
}

/// Bytes for people, binary units: `512 B`, `2.41 MiB` (two decimals under 10), `40.0 KiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.2} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration for people: `0 ns`, `812 ns`, `12.3 us`, `4.6 ms`, `1.23 s`, `2m05s`, `1h02m`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("4K"), Ok(4096));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("4KB"), Ok(4096));
        assert_eq!(parse_bytes("4kib"), Ok(4096));
        assert_eq!(parse_bytes("16M"), Ok(16 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("2 GB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1T"), Ok(1 << 40));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("12B"), Ok(12));
    }

    #[test]
    fn sizes_take_decimals_rounded_to_the_byte() {
        assert_eq!(parse_bytes("1.5M"), Ok(1_572_864));
        assert_eq!(parse_bytes("0.5K"), Ok(512));
        assert_eq!(parse_bytes("2.5"), Ok(3));
        assert_eq!(parse_bytes(".5K"), Ok(512));
    }

    #[test]
    fn whole_sizes_are_exact_up_to_the_largest() {
        assert_eq!(parse_bytes("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_bytes("18446744073709551616").is_err());
        assert!(parse_bytes("16777216T").is_err());
    }

    #[test]
    fn bad_sizes_name_the_text() {
        for bad in [
            "",
            "K",
            ".",
            "lots",
            "-1",
            "12 parsecs",
            "1.2.3M",
            "4KK",
            "1e6",
        ] {
            let error = parse_bytes(bad).expect_err(bad).to_string();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
        assert!(
            parse_bytes("lots")
                .expect_err("not a size")
                .to_string()
                .contains("is not a size")
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ns"), Ok(Duration::from_nanos(250)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn a_bare_number_is_seconds() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_ns("60"), Ok(60_000_000_000));
        assert_eq!(parse_duration_ns("12"), Ok(12_000_000_000));
    }

    #[test]
    fn durations_in_nanoseconds() {
        assert_eq!(parse_duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("250ns"), Ok(250));
        assert_eq!(parse_duration_ns("1.5us"), Ok(1500));
        assert_eq!(parse_duration_ns("2m"), Ok(120_000_000_000));
        // Seconds beyond what u64 nanoseconds hold are a Duration, not a nanosecond count.
        assert!(parse_duration("100000000000").is_ok());
        assert!(parse_duration_ns("100000000000").is_err());
    }

    #[test]
    fn bad_durations_name_the_text() {
        for bad in ["", "soon", "ms", "5 parsecs", "-1s", "1d", "1e3s"] {
            let error = parse_duration(bad).expect_err(bad).to_string();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
            assert!(error.contains("is not a duration"), "{error}");
        }
    }

    #[test]
    fn bytes_print_in_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.00 KiB");
        assert_eq!(format_bytes(40 * 1024), "40.0 KiB");
        assert_eq!(format_bytes(3 << 19), "1.50 MiB");
        assert_eq!(format_bytes(2_527_068), "2.41 MiB");
        assert_eq!(format_bytes(5 << 40), "5.00 TiB");
        assert_eq!(format_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn durations_print_as_the_analyzer_reports_them() {
        assert_eq!(format_duration(0), "0 ns");
        assert_eq!(format_duration(812), "812 ns");
        assert_eq!(format_duration(12_300), "12.3 us");
        assert_eq!(format_duration(500_000_000), "500.0 ms");
        assert_eq!(format_duration(1_500_000_000), "1.50 s");
        assert_eq!(format_duration(125_000_000_000), "2m05s");
        assert_eq!(format_duration(3_720_000_000_000), "1h02m");
    }
}
