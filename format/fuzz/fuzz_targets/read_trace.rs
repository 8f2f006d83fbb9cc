//! Feeds arbitrary bytes to the trace reader: it must never panic, hang, or allocate past its
//! caps, whatever the bytes say. Run: `cd format/fuzz && cargo +nightly fuzz run read_trace seeds`.
//!
//! Checksums stop random bytes at the frame layer, so half the inputs are first wrapped in a
//! valid header and a frame with correct checksums: the record decoder then sees them as an
//! inflated payload.
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

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&mode, payload)) if mode & 1 == 1 => {
            let mut deflate =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            if deflate.write_all(payload).is_err() {
                return;
            }
            let Ok(stored) = deflate.finish() else { return };
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
            read(&file);
        }
        _ => read(data),
    }
});
