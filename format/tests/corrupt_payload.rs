//! Corrupt frame payloads behind valid checksums: what the record decoder itself must survive.
//!
//! Checksums stop a damaged file at the frame layer (the bit-flip test), so these tests build
//! frames whose checksums are right but whose payloads are not, as a writer bug or a crafted
//! file would. The reader must never panic, must report the bad record by payload byte, must
//! have returned the records before it, and its two ways of decoding (record by record through
//! `TraceReader`, whole frames through `decode_frame`) must agree.

use std::io::{Cursor, Read, Write};

use memtrail_format::frame::{FRAME_RECORDS_DEFLATE, FileHeader, FrameHeader};
use memtrail_format::*;
use proptest::prelude::*;

/// One frame of events (with a stack, a munmap and a realloc), uncompressed.
fn sample_payload() -> Vec<u8> {
    let meta = TraceMeta {
        time_resolution_ns: 1,
        ..TraceMeta::default()
    };
    let mut w = TraceWriter::new(Vec::new(), &meta).expect("writer");
    w.write(&Record::Stack(Stack {
        id: 3,
        unwinder: Unwinder::FramePointer,
        truncated: false,
        frames: vec![StackFrame {
            module: 0,
            offset: 0x40,
            address: 0x1040,
        }],
    }))
    .expect("write");
    for i in 0..200u64 {
        let thread = 7 + (i % 3) as u32;
        w.write(&Record::Alloc {
            time: 1000 + i * 900,
            thread,
            address: 0x10_0000 + (i % 17) * 48,
            size: if i % 4 == 0 { 300 + i } else { 24 },
            stack: (i % 5) as u32,
            api: AllocApi::Malloc,
        })
        .expect("write");
        w.write(&Record::Free {
            time: 1400 + i * 900,
            thread,
            address: 0x10_0000 + (i % 17) * 48,
            size: 0,
            api: FreeApi::Free,
        })
        .expect("write");
    }
    w.write(&Record::Realloc {
        time: 400_000,
        thread: 8,
        old_address: 0x10_0030,
        new_address: 0x20_0000,
        size: 70_000,
        stack: 2,
        api: AllocApi::Realloc,
    })
    .expect("write");
    w.write(&Record::Free {
        time: 400_100,
        thread: 8,
        address: 0x7f00_0000_0000,
        size: 1 << 20,
        api: FreeApi::Munmap,
    })
    .expect("write");
    let bytes = w.finish().expect("finish");
    let frame = FrameReader::new(Cursor::new(&bytes[frame::FILE_HEADER_LEN..]))
        .next()
        .expect("one frame")
        .expect("valid frame");
    let mut payload = Vec::new();
    flate2::read::DeflateDecoder::new(&frame.payload[..])
        .read_to_end(&mut payload)
        .expect("inflate");
    payload
}

/// A trace of one frame holding `payload`, with correct checksums.
fn trace_with_payload(payload: &[u8]) -> Vec<u8> {
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    deflate.write_all(payload).expect("deflate");
    let stored = deflate.finish().expect("deflate");
    let header = FrameHeader {
        kind: FRAME_RECORDS_DEFLATE,
        flags: 0,
        stored_len: stored.len() as u32,
        raw_len: payload.len() as u32,
        payload_crc: crc32fast::hash(&stored),
    };
    let mut file = FileHeader::current().to_bytes().to_vec();
    file.extend_from_slice(&header.to_bytes());
    file.extend_from_slice(&stored);
    file
}

/// A trace of one frame per payload, with correct checksums.
fn trace_with_payloads(payloads: &[&[u8]]) -> Vec<u8> {
    let mut file = FileHeader::current().to_bytes().to_vec();
    for payload in payloads {
        let one = trace_with_payload(payload);
        file.extend_from_slice(&one[frame::FILE_HEADER_LEN..]);
    }
    file
}

/// Records and the error message (if any), read record by record.
fn read_with_reader(trace: &[u8]) -> (Vec<Record>, Option<String>) {
    let mut records = Vec::new();
    for r in TraceReader::new(Cursor::new(trace)).expect("valid header") {
        match r {
            Ok(r) => records.push(r),
            Err(e) => return (records, Some(e.to_string())),
        }
    }
    (records, None)
}

/// Records and the error message (if any), read a whole frame at a time.
fn read_with_frames(trace: &[u8]) -> (Vec<Record>, Option<String>) {
    let mut records = Vec::new();
    let mut scratch = Vec::new();
    for frame in FrameReader::new(Cursor::new(&trace[frame::FILE_HEADER_LEN..])) {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return (records, Some(e.to_string())),
        };
        if let Err(e) = decode_frame(&frame, &mut scratch, |r| records.push(r)) {
            return (records, Some(e.to_string()));
        }
    }
    (records, None)
}

/// Reads a bincode varint as the preamble stores it; returns (value, bytes used).
fn varint(b: &[u8]) -> (u64, usize) {
    match b[0] {
        251 => (u64::from(u16::from_le_bytes([b[1], b[2]])), 3),
        252 => (u64::from(u32::from_le_bytes([b[1], b[2], b[3], b[4]])), 5),
        253 => (u64::from_le_bytes(b[1..9].try_into().expect("8 bytes")), 9),
        v => (u64::from(v), 1),
    }
}

/// Where the tags column starts: after the time unit, the record count and 8 column lengths.
fn tags_offset(payload: &[u8]) -> usize {
    let mut pos = 0;
    for _ in 0..10 {
        pos += varint(&payload[pos..]).1;
    }
    pos
}

#[test]
fn the_sample_payload_reads_back_whole_both_ways() {
    let trace = trace_with_payload(&sample_payload());
    let (records, error) = read_with_reader(&trace);
    assert_eq!(error, None);
    // Meta, stack, 400 events, realloc, munmap (no end record: finish writes none).
    assert_eq!(records.len(), 404);
    assert_eq!(read_with_frames(&trace), (records, None));
}

#[test]
fn an_unknown_tag_mid_frame_names_its_byte_after_the_records_before_it() {
    let mut payload = sample_payload();
    let tags = tags_offset(&payload);
    // Record 100 (meta, stack, then events): tag 0x3f is no record kind.
    payload[tags + 100] = 0x3f;
    let trace = trace_with_payload(&payload);
    let (records, error) = read_with_reader(&trace);
    assert_eq!(
        records.len(),
        100,
        "the records before the bad one are returned"
    );
    let error = error.expect("an unknown tag is corruption");
    assert!(
        error.contains(&format!("record with tag at payload byte {}", tags + 100))
            && error.contains("unknown record tag"),
        "{error}"
    );
    assert_eq!(read_with_frames(&trace), (records, Some(error)));
}

#[test]
fn a_flag_on_a_tag_that_takes_none_is_corruption() {
    let mut payload = sample_payload();
    let tags = tags_offset(&payload);
    // Record 1 is the stack (tag 3): the new-thread flag belongs to events only.
    assert_eq!(payload[tags + 1], 3);
    payload[tags + 1] |= 0x80;
    let (records, error) = read_with_reader(&trace_with_payload(&payload));
    assert_eq!(records.len(), 1);
    assert!(error.expect("corrupt").contains("unknown record tag"));
}

#[test]
fn a_column_cut_short_is_corruption_not_a_panic() {
    let payload = sample_payload();
    // Claim one record more than there are tags, and give the tags column the byte.
    let mut pre = Vec::new();
    let mut pos = 0;
    let mut fields = Vec::new();
    for _ in 0..10 {
        let (v, n) = varint(&payload[pos..]);
        fields.push(v);
        pos += n;
    }
    fields[1] += 1; // records
    fields[2] += 1; // tags column length
    for v in &fields {
        bincode::encode_into_std_write(v, &mut pre, bincode::config::standard()).expect("encode");
    }
    let tags_end = pos + fields[2] as usize - 1;
    let mut forged = pre;
    forged.extend_from_slice(&payload[pos..tags_end]);
    forged.push(16); // one more malloc, whose time, address, size and stack are missing
    forged.extend_from_slice(&payload[tags_end..]);
    let trace = trace_with_payload(&forged);
    let (records, error) = read_with_reader(&trace);
    assert_eq!(records.len(), 404);
    let error = error.expect("a missing field is corruption");
    assert!(error.contains("ends too early"), "{error}");
    assert_eq!(read_with_frames(&trace), (records, Some(error)));
}

#[test]
fn a_frame_cannot_use_what_the_previous_frame_taught_the_decoder() {
    // Decoders keep their tables from frame to frame; frames must still decode alone. This
    // second frame's one malloc (tag 16 + same-size flag, thread 0, literal address, stack 0)
    // takes its size from stack 0's last size, which only the first frame has: corruption.
    let first = sample_payload();
    #[rustfmt::skip]
    let second: [u8; 15] = [
        1, 1,                   // time unit, records
        1, 1, 0, 1, 1, 0, 1, 0, // column lengths: tags, times, threads, addresses,
                                // literals, sizes, stacks, bodies
        16 | 0x40, 2, 0, 2, 0,  // tag, time +1, literal address, address +1, stack +0
    ];
    let trace = trace_with_payloads(&[&first, &second]);
    let (records, error) = read_with_reader(&trace);
    assert_eq!(records.len(), 404, "the first frame reads back whole");
    let error = error.expect("a size from another frame is corruption");
    assert!(error.contains("stack not seen in this frame"), "{error}");
    assert_eq!(read_with_frames(&trace), (records, Some(error)));
    // The same second frame with the size stored (no flag, sizes column [24]) is valid.
    let mut valid = second.to_vec();
    valid[7] = 1;
    valid[10] = 16;
    valid.insert(14, 24);
    let trace = trace_with_payloads(&[&first, &valid]);
    let (records, error) = read_with_reader(&trace);
    assert_eq!(error, None);
    assert!(matches!(
        records.last(),
        Some(Record::Alloc {
            size: 24,
            stack: 0,
            thread: 0,
            address: 1,
            time: 1,
            ..
        })
    ));
    assert_eq!(read_with_frames(&trace), (records, None));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any byte of a real payload changed to any value: no panic, and the two ways of reading
    /// agree on the records and on the error.
    #[test]
    fn a_changed_payload_byte_reads_the_same_both_ways(at in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut payload = sample_payload();
        let i = at.index(payload.len());
        payload[i] = value;
        let trace = trace_with_payload(&payload);
        prop_assert_eq!(read_with_reader(&trace), read_with_frames(&trace));
    }

    /// Random payloads behind valid checksums: errors, never panics.
    #[test]
    fn random_payloads_never_panic(payload in prop::collection::vec(any::<u8>(), 0..600)) {
        let trace = trace_with_payload(&payload);
        prop_assert_eq!(read_with_reader(&trace), read_with_frames(&trace));
    }
}

/// One frame's payload of a single record with tag `tag` and (if `timed`) a time delta of 0,
/// whose body is `body`.
fn one_record_payload(tag: u8, timed: bool, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    let lens = [1, u64::from(timed), 0, 0, 0, 0, 0, body.len() as u64];
    for v in [1u64, 1].iter().chain(&lens) {
        bincode::encode_into_std_write(v, &mut payload, bincode::config::standard())
            .expect("encode");
    }
    payload.push(tag);
    if timed {
        payload.push(0);
    }
    payload.extend_from_slice(body);
    payload
}

fn encoded<T: bincode::Encode>(values: &[T]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in values {
        bincode::encode_into_std_write(v, &mut b, bincode::config::standard()).expect("encode");
    }
    b
}

#[test]
fn process_records_with_hostile_lengths_are_corruption_not_allocations() {
    // Process: pid, parent pid, origin byte, then a command line claiming 2^40 arguments.
    let mut body = encoded(&[7u32, 1]);
    body.push(0);
    body.extend(encoded(&[1u64 << 40]));
    let (records, error) =
        read_with_reader(&trace_with_payload(&one_record_payload(9, true, &body)));
    assert!(records.is_empty());
    assert!(error.expect("corrupt").contains("list longer than"));

    // Exec: pid, then 65,536 arguments claimed and one present that claims a 1 GiB string.
    let mut body = encoded(&[7u32]);
    body.extend(encoded(&[65_536u64, 1 << 30]));
    let (_, error) = read_with_reader(&trace_with_payload(&one_record_payload(10, true, &body)));
    assert!(error.expect("corrupt").contains("1 MiB"));

    // Exec: 65,536 arguments claimed, 3 present: the column ends.
    let mut body = encoded(&[7u32]);
    body.extend(encoded(&[65_536u64, 1, 1, 1]));
    body.extend_from_slice(b"abc");
    let (_, error) = read_with_reader(&trace_with_payload(&one_record_payload(10, true, &body)));
    assert!(error.expect("corrupt").contains("ends too early"));

    // Unfollowed: a reason that is not UTF-8.
    let mut body = encoded(&[7u32, 1, 2]);
    body.extend_from_slice(&[0xff, 0xfe]);
    let (_, error) = read_with_reader(&trace_with_payload(&one_record_payload(13, true, &body)));
    assert!(error.expect("corrupt").contains("UTF-8"));

    // Thread takes no time and no flags; a thread record missing its pid ends the column.
    let (_, error) = read_with_reader(&trace_with_payload(&one_record_payload(
        12,
        false,
        &encoded(&[5u32]),
    )));
    assert!(error.expect("corrupt").contains("ends too early"));
    let (_, error) = read_with_reader(&trace_with_payload(&one_record_payload(
        12 | 0x80,
        false,
        &encoded(&[5u32, 6]),
    )));
    assert!(error.expect("corrupt").contains("unknown record tag"));

    // An unknown origin reads as "other"; a process exit reads its options.
    let mut body = encoded(&[7u32, 1]);
    body.push(77);
    body.extend(encoded(&[0u64]));
    let (records, error) =
        read_with_reader(&trace_with_payload(&one_record_payload(9, true, &body)));
    assert_eq!(error, None);
    assert!(
        matches!(&records[..], [Record::Process(p)] if p.origin == ProcessOrigin::Other && p.pid == 7)
    );
}

/// Every process record kind, as the writer encodes them, uncompressed.
fn process_payload() -> Vec<u8> {
    let meta = TraceMeta {
        time_resolution_ns: 1,
        ..TraceMeta::default()
    };
    let mut w = TraceWriter::new(Vec::new(), &meta).expect("writer");
    for pid in [100u32, 101] {
        w.write(&Record::Process(Box::new(ProcessInfo {
            pid,
            parent_pid: 99,
            time: u64::from(pid),
            origin: ProcessOrigin::Forked,
            command_line: vec!["/bin/worker".into(), format!("--id={pid}")],
        })))
        .expect("write");
        w.write(&Record::Thread { thread: pid, pid })
            .expect("write");
        w.write(&Record::Alloc {
            time: 200,
            thread: pid,
            address: 0x1000,
            size: 16,
            stack: 0,
            api: AllocApi::Malloc,
        })
        .expect("write");
    }
    w.write(&Record::Exec {
        time: 300,
        pid: 101,
        command_line: vec!["/bin/sh".into()],
    })
    .expect("write");
    w.write(&Record::Unfollowed {
        time: 310,
        pid: 102,
        parent_pid: 101,
        reason: "the process limit".into(),
    })
    .expect("write");
    w.write(&Record::ProcessExit {
        time: 320,
        pid: 101,
        code: Some(3),
        signal: None,
    })
    .expect("write");
    let bytes = w.finish().expect("finish");
    let frame = FrameReader::new(Cursor::new(&bytes[frame::FILE_HEADER_LEN..]))
        .next()
        .expect("one frame")
        .expect("valid frame");
    let mut payload = Vec::new();
    flate2::read::DeflateDecoder::new(&frame.payload[..])
        .read_to_end(&mut payload)
        .expect("inflate");
    payload
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any byte of a payload of process records changed to any value: no panic, and the two
    /// ways of reading agree.
    #[test]
    fn a_changed_process_payload_byte_reads_the_same_both_ways(at in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut payload = process_payload();
        prop_assert_eq!(read_with_reader(&trace_with_payload(&payload)).0.len(), 10);
        let i = at.index(payload.len());
        payload[i] = value;
        let trace = trace_with_payload(&payload);
        prop_assert_eq!(read_with_reader(&trace), read_with_frames(&trace));
    }
}
