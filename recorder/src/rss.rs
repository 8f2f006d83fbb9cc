//! Resident memory of the target, from `/proc/PID/status`.
//!
//! Owns: reading and parsing VmRSS and RssAnon. Must not: keep state or write records.

/// Resident set size and its anonymous part, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssSample {
    pub rss_bytes: u64,
    pub anon_bytes: u64,
}

/// Reads the target's RSS; `None` once the process is gone (or is a zombie with no memory).
pub fn sample_rss(pid: u32) -> Option<RssSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status)
}

pub fn parse_status(status: &str) -> Option<RssSample> {
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let value = line[key.len()..].trim().trim_end_matches("kB").trim();
        value.parse::<u64>().ok().map(|v| v * 1024)
    };
    Some(RssSample {
        rss_bytes: kib("VmRSS:")?,
        anon_bytes: kib("RssAnon:").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_lines() {
        let status = "Name:\tx\nVmRSS:\t    1500 kB\nRssAnon:\t     300 kB\n";
        assert_eq!(
            parse_status(status),
            Some(RssSample {
                rss_bytes: 1500 * 1024,
                anon_bytes: 300 * 1024
            })
        );
        assert_eq!(parse_status("Name:\tzombie\n"), None);
    }
}
