//! Round trips, truncation at every byte, and bit flips: the format's robustness promises.

use std::io::Cursor;

use memtrail_format::frame::{FILE_HEADER_LEN, FRAME_HEADER_LEN, FileHeader, FrameHeader};
use memtrail_format::*;
use proptest::prelude::*;

fn meta() -> TraceMeta {
    TraceMeta {
        tool_version: "0.1.0".into(),
        host_name: "host".into(),
        kernel_release: "6.18.0".into(),
        pid: 4242,
        command_line: vec!["./app".into(), "--flag".into()],
        start_wall_ns: 1_700_000_000_000_000_000,
        start_monotonic_ns: 123_456_789,
        page_size: 4096,
        sample_bytes: 0,
        time_resolution_ns: 1,
        extra: vec![("free_probe_offset".into(), "9".into())],
    }
}

fn write_all(records: &[Record], meta: &TraceMeta, frame_bytes: usize) -> Vec<u8> {
    let options = WriterOptions {
        frame_bytes,
        ..WriterOptions::default()
    };
    let mut w = TraceWriter::with_options(Vec::new(), meta, options).expect("writer");
    for r in records {
        w.write(r).expect("write");
    }
    w.finish().expect("finish")
}

/// Reads everything, returning the records, and the error or truncation that ended it.
fn read_all(bytes: &[u8]) -> (Vec<Record>, Result<Option<Truncation>, FormatError>) {
    let mut reader = match TraceReader::new(Cursor::new(bytes)) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut out = Vec::new();
    for r in &mut reader {
        match r {
            Ok(r) => out.push(r),
            Err(e) => return (out, Err(e)),
        }
    }
    (out, Ok(reader.truncation().cloned()))
}

/// A small, varied trace: every record kind, several frames.
fn sample_records() -> Vec<Record> {
    let mut v = vec![
        Record::Process(Box::new(ProcessInfo {
            pid: 4242,
            parent_pid: 1,
            time: 0,
            origin: ProcessOrigin::Launched,
            command_line: vec!["./app".into(), "--flag".into()],
        })),
        Record::Thread {
            thread: 10,
            pid: 4242,
        },
        Record::String {
            id: 0,
            value: "main".into(),
        },
        Record::Module(Box::new(Module {
            id: 0,
            path: "/usr/bin/app".into(),
            build_id: vec![1, 2, 3, 4],
            ranges: vec![MappingRange {
                start: 0x5555_0000,
                end: 0x5556_0000,
                file_offset: 0x1000,
            }],
        })),
        Record::Stack(Stack {
            id: 7,
            unwinder: Unwinder::FramePointer,
            truncated: false,
            frames: vec![StackFrame {
                module: 0,
                offset: 0x1234,
                address: 0x5555_0234,
            }],
        }),
        Record::Symbol(Symbol {
            module: 0,
            offset: 0x1234,
            frames: vec![SymbolFrame {
                function: 0,
                file: NO_STRING,
                line: 0,
            }],
        }),
    ];
    for i in 0..40u64 {
        v.push(Record::Alloc {
            time: 1000 + i * 77,
            thread: 10 + (i % 3) as u32,
            address: 0x1000 + i * 64,
            size: 32 + i,
            stack: 7,
            api: AllocApi::ALL[i as usize % AllocApi::ALL.len()],
        });
        if i % 2 == 0 {
            v.push(Record::Free {
                time: 1010 + i * 77,
                thread: 10,
                address: 0x1000 + i * 64,
                size: 0,
                // Every release API but munmap (which carries a length).
                api: [
                    FreeApi::Free,
                    FreeApi::Sdallocx,
                    FreeApi::Dallocx,
                    FreeApi::OperatorDelete,
                ][(i / 2 % 4) as usize],
            });
        }
    }
    v.push(Record::Realloc {
        time: 9000,
        thread: 11,
        old_address: 0x1040,
        new_address: 0x9000,
        size: 4096,
        stack: 7,
        api: AllocApi::Realloc,
    });
    v.push(Record::Free {
        time: 9050,
        thread: 11,
        address: 0x7f00_0000_1000,
        size: 8192,
        api: FreeApi::Munmap,
    });
    v.push(Record::Lost {
        time: 9100,
        count: 3,
        reason: LostReason::RingBufferFull,
    });
    v.push(Record::Rss {
        time: 9200,
        rss_bytes: 1 << 20,
        anon_bytes: 1 << 19,
    });
    v.push(Record::Process(Box::new(ProcessInfo {
        pid: 4300,
        parent_pid: 4242,
        time: 9210,
        origin: ProcessOrigin::Forked,
        command_line: vec!["./app".into(), "--flag".into()],
    })));
    v.push(Record::Exec {
        time: 9220,
        pid: 4300,
        command_line: vec!["/bin/sh".into(), "-c".into(), "true".into()],
    });
    v.push(Record::Unfollowed {
        time: 9230,
        pid: 4301,
        parent_pid: 4300,
        reason: "too many processes".into(),
    });
    v.push(Record::ProcessExit {
        time: 9240,
        pid: 4300,
        code: None,
        signal: Some(9),
    });
    v.push(Record::ProcessExit {
        time: 9300,
        pid: 4242,
        code: Some(0),
        signal: None,
    });
    v.push(Record::Exit {
        time: 9300,
        code: Some(0),
        signal: None,
    });
    v.push(Record::End {
        time: 9400,
        totals: EndTotals {
            allocations: 40,
            frees: 20,
            reallocs: 1,
            lost: 3,
        },
    });
    v
}

fn with_meta(records: &[Record], meta: &TraceMeta) -> Vec<Record> {
    let mut v = vec![Record::Meta(Box::new(meta.clone()))];
    v.extend_from_slice(records);
    v
}

#[test]
fn sample_round_trips_through_many_frames() {
    let records = sample_records();
    let bytes = write_all(&records, &meta(), 64);
    let (read, end) = read_all(&bytes);
    assert_eq!(read, with_meta(&records, &meta()));
    assert_eq!(end.expect("clean read"), None);
}

#[test]
fn coarse_clock_truncates_times() {
    let m = TraceMeta {
        time_resolution_ns: 1000,
        ..meta()
    };
    let records = vec![Record::Alloc {
        time: 12_345,
        thread: 1,
        address: 16,
        size: 8,
        stack: 0,
        api: AllocApi::Malloc,
    }];
    let (read, _) = read_all(&write_all(&records, &m, 1 << 16));
    assert_eq!(read[1].time(), Some(12_000));
}

#[test]
fn cut_at_every_byte_reads_a_prefix_and_reports_the_cut() {
    let records = with_meta(&sample_records(), &meta());
    let bytes = write_all(&sample_records(), &meta(), 100);
    for cut in 0..bytes.len() {
        let (read, end) = read_all(&bytes[..cut]);
        assert!(read.len() <= records.len());
        assert_eq!(
            read[..],
            records[..read.len()],
            "cut at {cut}: not a prefix"
        );
        if cut < FILE_HEADER_LEN {
            let err = end.expect_err("a cut header is an error");
            assert!(
                matches!(err, FormatError::TooShort { .. } | FormatError::NotATrace),
                "cut at {cut}: {err}"
            );
        } else {
            let t = end
                .unwrap_or_else(|e| panic!("cut at {cut}: error instead of truncation: {e}"))
                .unwrap_or_else(|| panic!("cut at {cut}: truncation not reported"));
            assert!(t.offset <= cut as u64);
            assert_eq!(t.records_read, read.len() as u64);
        }
    }
}

#[test]
fn every_bit_flip_is_detected_or_harmless() {
    let records = with_meta(&sample_records(), &meta());
    let bytes = write_all(&sample_records(), &meta(), 200);
    let mut detected = 0;
    for i in 0..bytes.len() {
        for bit in [0, 3, 7] {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let (read, end) = read_all(&b);
            match end {
                Ok(None) => assert_eq!(read, records, "flip at byte {i} bit {bit} changed data"),
                Ok(Some(t)) => {
                    // A flip in a length can only make a frame look longer than the file.
                    assert_eq!(read[..], records[..read.len()], "byte {i}: {t}");
                    detected += 1;
                }
                Err(e) => {
                    assert_eq!(read[..], records[..read.len()], "byte {i}: {e}");
                    let msg = e.to_string();
                    if let FormatError::Corrupt { offset, .. } = e {
                        assert!(offset <= i as u64, "byte {i}: blamed offset {offset}");
                    }
                    assert!(!msg.is_empty());
                    detected += 1;
                }
            }
        }
    }
    // Only the reserved header bytes and version hints may be flipped unnoticed.
    assert!(detected >= (bytes.len() - 10) * 3);
}

#[test]
fn unknown_frame_kinds_are_skipped() {
    let bytes = write_all(&sample_records(), &meta(), 1 << 16);
    let payload = b"from the future".to_vec();
    let header = FrameHeader {
        kind: 200,
        flags: 0,
        stored_len: payload.len() as u32,
        raw_len: 0,
        payload_crc: crc(&payload),
    };
    let mut b = bytes[..FILE_HEADER_LEN].to_vec();
    b.extend_from_slice(&header.to_bytes());
    b.extend_from_slice(&payload);
    b.extend_from_slice(&bytes[FILE_HEADER_LEN..]);
    let (read, end) = read_all(&b);
    assert_eq!(read, with_meta(&sample_records(), &meta()));
    assert_eq!(end.expect("clean"), None);
}

fn crc(b: &[u8]) -> u32 {
    // CRC-32/ISO-HDLC, bit by bit: independent of the crate's implementation on purpose.
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn newer_major_version_names_the_memtrail_that_reads_it() {
    let mut b = write_all(&sample_records(), &meta(), 1 << 16);
    let h = FileHeader {
        major: 2,
        minor: 1,
        reader_version: [3, 4, 5],
    };
    b[..FILE_HEADER_LEN].copy_from_slice(&h.to_bytes());
    let err = TraceReader::new(Cursor::new(&b)).err().expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("2.1") && msg.contains("memtrail 3.4.5"),
        "{msg}"
    );
}

/// A file of a newer minor version with a record kind this reader does not know: the reader
/// names the memtrail that reads it (from the header) instead of calling the file corrupt.
#[test]
fn a_newer_minors_unknown_record_names_the_memtrail_that_reads_it() {
    // The payload of one frame: the meta record, then tag 15 (no record kind in 1.1).
    let mut b = write_all(&[], &meta(), 1 << 16);
    let frame = FrameReader::new(Cursor::new(&b[FILE_HEADER_LEN..]))
        .next()
        .expect("a frame")
        .expect("valid");
    let mut payload = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::DeflateDecoder::new(&frame.payload[..]),
        &mut payload,
    )
    .expect("inflate");
    // Preamble: time unit 1, one record, 8 column lengths (one byte each here: only the bodies
    // column, last, is not empty); then the tags column.
    assert_eq!(payload[..3], [1, 1, 1], "one record, one tag");
    assert_eq!(
        usize::from(payload[9]),
        payload.len() - 11,
        "one-byte lengths"
    );
    payload[1] = 2;
    payload[2] = 2;
    payload.insert(11, 15);
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut deflate, &payload).expect("deflate");
    let stored = deflate.finish().expect("deflate");
    let header = FrameHeader {
        kind: 1,
        flags: 0,
        stored_len: stored.len() as u32,
        raw_len: payload.len() as u32,
        payload_crc: crc(&stored),
    };
    b.truncate(FILE_HEADER_LEN);
    b.extend_from_slice(&header.to_bytes());
    b.extend_from_slice(&stored);

    // In a 1.1 file, tag 15 is corruption.
    let (read, end) = read_all(&b);
    assert_eq!(read.len(), 1, "the meta record before it");
    let msg = end.expect_err("corrupt").to_string();
    assert!(
        msg.contains("corrupt") && msg.contains("unknown record tag"),
        "{msg}"
    );

    // In a 1.7 file that needs memtrail 0.9.1, it is a record kind of 1.7, both ways of reading.
    let h = FileHeader {
        major: 1,
        minor: 7,
        reader_version: [0, 9, 1],
    };
    b[..FILE_HEADER_LEN].copy_from_slice(&h.to_bytes());
    let (read, end) = read_all(&b);
    assert_eq!(read.len(), 1);
    let msg = end.expect_err("refused").to_string();
    assert!(
        msg.contains("format 1.7")
            && msg.contains("reads format 1.1")
            && msg.contains("memtrail 0.9.1"),
        "{msg}"
    );
    let frame = FrameReader::new(Cursor::new(&b[FILE_HEADER_LEN..]))
        .next()
        .expect("a frame")
        .expect("valid");
    let err = decode_frame_of(&h, &frame, &mut Vec::new(), |_| {}).expect_err("refused");
    assert_eq!(err.to_string(), msg);
}

/// The version written in the header as the one that reads this file is never newer than this
/// memtrail itself.
#[test]
fn the_reader_version_is_this_release_or_older() {
    let own: Vec<u16> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|v| v.parse().expect("a number"))
        .collect();
    assert!(frame::READER_VERSION[..] <= own[..], "{own:?}");
    assert_eq!(FileHeader::current().minor, 1);
}

#[test]
fn absurd_length_is_corruption_at_its_offset() {
    let mut b = write_all(&sample_records(), &meta(), 1 << 16);
    let h = FrameHeader {
        kind: 1,
        flags: 0,
        stored_len: u32::MAX,
        raw_len: 10,
        payload_crc: 0,
    };
    b[FILE_HEADER_LEN..FILE_HEADER_LEN + FRAME_HEADER_LEN].copy_from_slice(&h.to_bytes());
    let (_, end) = read_all(&b);
    let err = end.expect_err("absurd length");
    assert!(
        matches!(err, FormatError::Corrupt { offset, .. } if offset == FILE_HEADER_LEN as u64),
        "{err}"
    );
}

#[test]
fn garbage_is_not_a_trace() {
    let (_, end) = read_all(b"this is some text file, not a trace at all");
    assert!(matches!(end, Err(FormatError::NotATrace)));
    let (_, end) = read_all(b"");
    assert!(matches!(end, Err(FormatError::TooShort { .. })));
}

#[test]
fn missing_end_record_is_reported() {
    let mut records = sample_records();
    records.pop();
    let (_, end) = read_all(&write_all(&records, &meta(), 1 << 16));
    let t = end.expect("readable").expect("reported");
    assert!(t.reason.contains("no end record"), "{}", t.reason);
}

#[test]
fn interned_strings_are_written_once() {
    let mut w = TraceWriter::new(Vec::new(), &meta()).expect("writer");
    let a = w.intern("malloc").expect("intern");
    let b = w.intern("free").expect("intern");
    assert_eq!(w.intern("malloc").expect("intern"), a);
    assert_ne!(a, b);
    let (read, _) = read_all(&w.finish().expect("finish"));
    let strings = read
        .iter()
        .filter(|r| matches!(r, Record::String { .. }))
        .count();
    assert_eq!(strings, 2);
}

fn arb_string() -> impl Strategy<Value = String> {
    "[a-z/._ ]{0,12}"
}

fn arb_record() -> impl Strategy<Value = Record> {
    let api = (0u8..10).prop_map(|v| AllocApi::from_u8(v).expect("api"));
    let free_api = (0u8..2).prop_map(|v| FreeApi::from_u8(v).expect("api"));
    // Times and threads from narrow and full ranges: deltas must survive wrapping.
    let time = prop_oneof![0u64..10_000, any::<u64>()];
    let addr = prop_oneof![0x1000u64..0x1100, any::<u64>()];
    let thread = prop_oneof![1u32..4, any::<u32>()];
    let size = prop_oneof![0u64..64, any::<u64>()];
    let stack = prop_oneof![0u32..8, any::<u32>()];
    prop_oneof![
        6 => (time.clone(), thread.clone(), addr.clone(), size.clone(), stack.clone(), api.clone())
            .prop_map(|(time, thread, address, size, stack, api)| Record::Alloc {
                time, thread, address, size, stack, api
            }),
        6 => (time.clone(), thread.clone(), addr.clone(), free_api, size.clone())
            .prop_map(|(time, thread, address, api, size)| Record::Free {
                time, thread, address, api,
                // free() carries no size on the wire; munmap carries its length.
                size: if api == FreeApi::Munmap { size } else { 0 },
            }),
        2 => (time.clone(), thread, addr.clone(), addr.clone(), size, stack, api)
            .prop_map(|(time, thread, old_address, new_address, size, stack, api)| Record::Realloc {
                time, thread, old_address, new_address, size, stack, api
            }),
        1 => (any::<u32>(), arb_string()).prop_map(|(id, value)| Record::String { id, value }),
        1 => (any::<u32>(), arb_string(), proptest::collection::vec(any::<u8>(), 0..21),
              proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..3))
            .prop_map(|(id, path, build_id, ranges)| Record::Module(Box::new(Module {
                id, path, build_id,
                ranges: ranges.into_iter().map(|(start, end, file_offset)| MappingRange { start, end, file_offset }).collect(),
            }))),
        1 => (any::<u32>(), any::<bool>(), proptest::collection::vec((any::<u32>(), any::<u64>(), any::<u64>()), 0..12))
            .prop_map(|(id, truncated, frames)| Record::Stack(Stack {
                id, unwinder: Unwinder::Dwarf, truncated,
                frames: frames.into_iter().map(|(module, offset, address)| StackFrame { module, offset, address }).collect(),
            })),
        1 => (any::<u32>(), any::<u64>(), proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..4))
            .prop_map(|(module, offset, frames)| Record::Symbol(Symbol {
                module, offset,
                frames: frames.into_iter().map(|(function, file, line)| SymbolFrame { function, file, line }).collect(),
            })),
        1 => (time.clone(), any::<u64>()).prop_map(|(time, count)| Record::Lost { time, count, reason: LostReason::Recorder }),
        1 => (time.clone(), any::<u64>(), any::<u64>()).prop_map(|(time, rss_bytes, anon_bytes)| Record::Rss { time, rss_bytes, anon_bytes }),
        1 => (time.clone(), any::<Option<i32>>(), any::<Option<i32>>()).prop_map(|(time, code, signal)| Record::Exit { time, code, signal }),
        1 => (time.clone(), any::<u64>()).prop_map(|(time, allocations)| Record::End { time, totals: EndTotals { allocations, frees: 1, reallocs: 2, lost: 3 } }),
        1 => (time.clone(), any::<u32>(), any::<u32>(), prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(255)], proptest::collection::vec(arb_string(), 0..4))
            .prop_map(|(time, pid, parent_pid, origin, command_line)| Record::Process(Box::new(ProcessInfo {
                pid, parent_pid, time, origin: ProcessOrigin::from_u8(origin), command_line,
            }))),
        1 => (time.clone(), any::<u32>(), proptest::collection::vec(arb_string(), 0..4))
            .prop_map(|(time, pid, command_line)| Record::Exec { time, pid, command_line }),
        1 => (time.clone(), any::<u32>(), any::<Option<i32>>(), any::<Option<i32>>())
            .prop_map(|(time, pid, code, signal)| Record::ProcessExit { time, pid, code, signal }),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(thread, pid)| Record::Thread { thread, pid }),
        1 => (time, any::<u32>(), any::<u32>(), arb_string())
            .prop_map(|(time, pid, parent_pid, reason)| Record::Unfollowed { time, pid, parent_pid, reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_streams_round_trip(
        records in proptest::collection::vec(arb_record(), 0..300),
        frame_bytes in prop_oneof![1usize..200, 200usize..100_000],
        argv in proptest::collection::vec(arb_string(), 0..4),
    ) {
        let m = TraceMeta { command_line: argv, ..meta() };
        let bytes = write_all(&records, &m, frame_bytes);
        let (read, end) = read_all(&bytes);
        prop_assert!(end.is_ok(), "read failed: {:?}", end);
        prop_assert_eq!(read, with_meta(&records, &m));
    }
}

/// Writes the fuzzer's seed corpus (format/fuzz/seeds). Run after a format change:
/// `cargo test -p memtrail-format --test roundtrip -- --ignored write_fuzz_seeds`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    std::fs::create_dir_all(&dir).expect("seed dir");
    let records = sample_records();
    for (name, frame_bytes) in [("one-frame.trace", 1 << 16), ("many-frames.trace", 96)] {
        std::fs::write(dir.join(name), write_all(&records, &meta(), frame_bytes)).expect("seed");
    }
    let cut = write_all(&records, &meta(), 200);
    std::fs::write(dir.join("truncated.trace"), &cut[..cut.len() - 7]).expect("seed");
}

#[test]
fn a_frame_older_than_the_flush_interval_is_written() {
    let options = WriterOptions {
        flush_interval: Some(std::time::Duration::from_millis(1)),
        ..WriterOptions::default()
    };
    let mut w = TraceWriter::with_options(Vec::new(), &meta(), options).expect("writer");
    w.write(&sample_records()[0]).expect("write");
    assert!(w.bytes_written() == FILE_HEADER_LEN as u64);
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(w.flush_if_due().expect("flush"));
    assert!(w.bytes_written() > FILE_HEADER_LEN as u64);
    assert!(!w.flush_if_due().expect("nothing pending"));
}
