//! Feeds arbitrary bytes to the trace reader: it must never panic, hang, or allocate past its
//! caps, whatever the bytes say. Run: `cd format/fuzz && cargo +nightly fuzz run read_trace seeds`.
//!
//! Checksums stop random bytes at the frame layer, so most inputs are first wrapped in a valid
//! header and a frame with correct checksums: deflated by the writer's library, the record
//! decoder sees them as an inflated payload; taken as the frame's stored bytes, the reader's
//! inflater (fdeflate) sees them as a compressed stream.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use memtrail_format::frame::{FRAME_RECORDS_DEFLATE, FileHeader, FrameHeader};

fn read(bytes: &[u8]) {
    if let Ok(mut reader) = memtrail_format::TraceReader::new(std::io::Cursor::new(bytes)) {
        for record in &mut reader {
            if record.is_err() {
                break;
            }
        }
        let _ = reader.truncation();
    }
}

/// A trace of one records frame holding `stored` (compressed) bytes, with correct checksums.
fn one_frame_trace(stored: &[u8], raw_len: u32) -> Vec<u8> {
    let header = FrameHeader {
        kind: FRAME_RECORDS_DEFLATE,
        flags: 0,
        stored_len: stored.len() as u32,
        raw_len,
        payload_crc: crc32fast::hash(stored),
    };
    let mut file = FileHeader::current().to_bytes().to_vec();
    file.extend_from_slice(&header.to_bytes());
    file.extend_from_slice(stored);
    file
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&mode, payload)) if mode & 3 == 1 || mode & 3 == 3 => {
            let mut deflate =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            if deflate.write_all(payload).is_err() {
                return;
            }
            let Ok(stored) = deflate.finish() else { return };
            read(&one_frame_trace(&stored, payload.len() as u32));
        }
        Some((&mode, rest)) if mode & 3 == 2 && rest.len() >= 2 => {
            // The first two bytes: the uncompressed length the header claims.
            let raw_len = u32::from(u16::from_le_bytes([rest[0], rest[1]]));
            read(&one_frame_trace(&rest[2..], raw_len));
        }
        _ => read(data),
    }
});
