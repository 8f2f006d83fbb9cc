//! Feeds arbitrary bytes to the trace reader: it must never panic, hang, or allocate past its
//! caps, whatever the bytes say. Run: `cd format/fuzz && cargo +nightly fuzz run read_trace seeds`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = memtrail_format::TraceReader::new(std::io::Cursor::new(data)) {
        for record in &mut reader {
            if record.is_err() {
                break;
            }
        }
        let _ = reader.truncation();
    }
});
