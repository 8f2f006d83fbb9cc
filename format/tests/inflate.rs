//! The reader's inflater against flate2 (the writer's compressor, and the reference inflater):
//! every stream flate2 writes reads back byte for byte, and a damaged stream behind a valid
//! checksum either inflates to what flate2 makes of it or is refused, never a panic.

use std::io::{Read, Write};

use memtrail_format::frame::{FRAME_RECORDS_DEFLATE, FrameHeader, inflate_frame};
use memtrail_format::{FormatError, RawFrame};
use proptest::prelude::*;

fn deflate(raw: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(raw).expect("deflate");
    e.finish().expect("deflate")
}

fn frame(stored: Vec<u8>, raw_len: usize) -> RawFrame {
    RawFrame {
        offset: 20,
        header: FrameHeader {
            kind: FRAME_RECORDS_DEFLATE,
            flags: 0,
            stored_len: stored.len() as u32,
            raw_len: raw_len as u32,
            payload_crc: crc32fast::hash(&stored),
        },
        payload: stored,
    }
}

/// What flate2 makes of `stored`: the bytes of a complete stream, or `None`.
fn reference_inflate(stored: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut d = flate2::read::DeflateDecoder::new(stored).take(limit as u64 + 1);
    d.read_to_end(&mut out).ok()?;
    // A stream that stops without its final block reads as a short success in flate2's
    // `Read`; only a stream that ended counts.
    let mut z = flate2::Decompress::new(false);
    let mut probe = Vec::with_capacity(limit + 1);
    match z.decompress_vec(stored, &mut probe, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) => Some(out),
        _ => None,
    }
}

/// Data of the shapes a payload has: runs, repeated phrases, small numbers and noise.
fn sample(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        match next() % 4 {
            0 => {
                let b = next() as u8;
                let n = (next() % 40) as usize;
                out.extend(std::iter::repeat_n(b, n));
            }
            1 if out.len() > 8 => {
                let back = 1 + (next() as usize % out.len().min(4000));
                let n = (next() % 30) as usize;
                for _ in 0..n {
                    out.push(out[out.len() - back]);
                }
            }
            2 => out.push((next() % 8) as u8),
            _ => out.push(next() as u8),
        }
    }
    out.truncate(len);
    out
}

#[test]
fn every_level_and_size_reads_back() {
    let mut out = Vec::new();
    for (i, len) in [0usize, 1, 2, 100, 4095, 65_535, 65_536, 300_000]
        .into_iter()
        .enumerate()
    {
        let raw = sample(i as u64 + 1, len);
        // Level 0 writes stored blocks, 1 fixed and dynamic Huffman blocks, 9 long matches.
        for level in [0, 1, 3, 6, 9] {
            inflate_frame(&frame(deflate(&raw, level), raw.len()), &mut out)
                .unwrap_or_else(|e| panic!("{len} bytes at level {level}: {e}"));
            assert!(
                out == raw,
                "{len} bytes at level {level} read back differently"
            );
        }
    }
}

#[test]
fn the_output_buffer_is_reused_whatever_it_held() {
    let mut out = vec![0xEE; 1 << 20];
    for (seed, len) in [(1, 5000), (2, 200_000), (3, 10), (4, 70_000)] {
        let raw = sample(seed, len);
        inflate_frame(&frame(deflate(&raw, 6), raw.len()), &mut out).expect("inflate");
        assert!(out == raw);
    }
}

#[test]
fn a_length_other_than_the_header_says_is_corruption() {
    let raw = sample(7, 10_000);
    let stored = deflate(&raw, 6);
    let mut out = Vec::new();
    for claimed in [0, 1, raw.len() - 1, raw.len() + 1, raw.len() * 2] {
        match inflate_frame(&frame(stored.clone(), claimed), &mut out) {
            Err(FormatError::Corrupt { offset: 20, .. }) => {}
            other => panic!("raw length {claimed} claimed, got {other:?}"),
        }
    }
}

#[test]
fn a_length_past_the_limit_is_refused_before_any_allocation() {
    let mut out = Vec::new();
    let huge = frame(deflate(b"abc", 6), 0);
    let huge = RawFrame {
        header: FrameHeader {
            raw_len: u32::MAX,
            ..huge.header
        },
        ..huge
    };
    match inflate_frame(&huge, &mut out) {
        Err(FormatError::Corrupt { what, .. }) => assert!(what.contains("limit"), "{what}"),
        other => panic!("a 4 GiB frame was not refused: {other:?}"),
    }
    assert_eq!(out.capacity(), 0);
}

#[test]
fn a_stream_cut_short_is_corruption() {
    let raw = sample(8, 50_000);
    let stored = deflate(&raw, 6);
    let mut out = Vec::new();
    for cut in [0, 1, stored.len() / 2, stored.len() - 1] {
        assert!(
            inflate_frame(&frame(stored[..cut].to_vec(), raw.len()), &mut out).is_err(),
            "a stream cut at {cut} of {} inflated",
            stored.len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Damaged streams behind valid checksums: never a panic, and the same verdict as flate2's:
    /// inflated to the same bytes when flate2 inflates them to the promised length, refused
    /// otherwise.
    #[test]
    fn a_damaged_stream_inflates_as_flate2_does_or_is_refused(
        seed in any::<u64>(),
        len in 0usize..3000,
        level in 0u32..10,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<Option<prop::sample::Index>>(),
    ) {
        let raw = sample(seed, len);
        let mut stored = deflate(&raw, level);
        if let Some(cut) = cut {
            stored.truncate(cut.index(stored.len() + 1));
        }
        for (at, value) in &edits {
            if !stored.is_empty() {
                let i = at.index(stored.len());
                stored[i] = *value;
            }
        }
        let mut out = Vec::new();
        let reference = reference_inflate(&stored, raw.len());
        let reference = reference.filter(|r| r.len() == raw.len());
        match inflate_frame(&frame(stored.clone(), raw.len()), &mut out) {
            Ok(()) => prop_assert_eq!(Some(&out), reference.as_ref()),
            Err(e) => {
                prop_assert!(reference.is_none(), "flate2 inflates what was refused: {}", e);
                prop_assert!(matches!(e, FormatError::Corrupt { offset: 20, .. }), "{}", e);
            }
        }
    }

    /// Any bytes at all behind a valid checksum: never a panic.
    #[test]
    fn random_streams_never_panic(stored in prop::collection::vec(any::<u8>(), 0..400), raw_len in 0usize..5000) {
        let mut out = Vec::new();
        let _ = inflate_frame(&frame(stored, raw_len), &mut out);
    }
}
