//! Format 1.0 traces read by this (1.1) reader: `fixtures/v1.0.trace` was written by the 1.0
//! writer (commit 7ed7cf4) from `records()` below, and must read back exactly, forever.
//! Writing the same records today gives the same bytes after the file header: 1.1 changed
//! nothing of how 1.0's records are encoded.

use memtrail_format::frame::FILE_HEADER_LEN;
use memtrail_format::*;

const FIXTURE: &[u8] = include_bytes!("fixtures/v1.0.trace");

#[test]
fn a_v1_0_trace_reads_back_whole() {
    let mut reader = TraceReader::new(FIXTURE).expect("a trace");
    assert_eq!((reader.header().major, reader.header().minor), (1, 0));
    assert_eq!(reader.header().reader_version, [0, 1, 0]);
    let read: Vec<Record> = (&mut reader).collect::<Result<_, _>>().expect("records");
    assert_eq!(reader.truncation(), None);
    let mut expected = vec![Record::Meta(Box::new(v1_0::meta()))];
    expected.extend(v1_0::records());
    assert_eq!(read, expected);
    assert!(
        !read
            .iter()
            .any(|r| matches!(r, Record::Process(_) | Record::Thread { .. }))
    );
}

#[test]
fn the_1_0_records_encode_as_they_did() {
    let today = v1_0::bytes();
    assert_eq!(
        FileHeader::parse(today[..FILE_HEADER_LEN].try_into().expect("20 bytes"))
            .expect("header")
            .minor,
        1
    );
    assert!(
        today[FILE_HEADER_LEN..] == FIXTURE[FILE_HEADER_LEN..],
        "1.0 records changed encoding"
    );
}

mod v1_0 {
    use super::*;
    pub fn bytes() -> Vec<u8> {
        let options = WriterOptions {
            frame_bytes: 1 << 16,
            level: 6,
            flush_interval: None,
        };
        let mut w = TraceWriter::with_options(Vec::new(), &meta(), options).unwrap();
        for r in records() {
            w.write(&r).unwrap();
        }
        w.finish().unwrap()
    }
    pub fn meta() -> TraceMeta {
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
            extra: vec![("mode".into(), "launch".into())],
        }
    }
    pub fn records() -> Vec<Record> {
        let mut v = vec![
            Record::String {
                id: 0,
                value: "leak".into(),
            },
            Record::String {
                id: 1,
                value: "main".into(),
            },
            Record::String {
                id: 2,
                value: "app.c".into(),
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
                id: 1,
                unwinder: Unwinder::FramePointer,
                truncated: false,
                frames: vec![
                    StackFrame {
                        module: 0,
                        offset: 0x1234,
                        address: 0x5555_0234,
                    },
                    StackFrame {
                        module: 0,
                        offset: 0x1300,
                        address: 0x5555_0300,
                    },
                ],
            }),
            Record::Stack(Stack {
                id: 2,
                unwinder: Unwinder::FramePointer,
                truncated: false,
                frames: vec![StackFrame {
                    module: 0,
                    offset: 0x1300,
                    address: 0x5555_0300,
                }],
            }),
            Record::Symbol(Symbol {
                module: 0,
                offset: 0x1234,
                frames: vec![SymbolFrame {
                    function: 0,
                    file: 2,
                    line: 10,
                }],
            }),
            Record::Symbol(Symbol {
                module: 0,
                offset: 0x1300,
                frames: vec![SymbolFrame {
                    function: 1,
                    file: 2,
                    line: 20,
                }],
            }),
        ];
        for i in 0..50u64 {
            v.push(Record::Alloc {
                time: 1_000_000 + i * 1000,
                thread: 4242 + (i % 2) as u32,
                address: 0x10_0000 + i * 64,
                size: 100,
                stack: 1,
                api: AllocApi::Malloc,
            });
            if i % 5 != 0 {
                v.push(Record::Free {
                    time: 1_000_500 + i * 1000,
                    thread: 4242,
                    address: 0x10_0000 + i * 64,
                    size: 0,
                    api: FreeApi::Free,
                });
            }
        }
        v.push(Record::Alloc {
            time: 2_000_000,
            thread: 4242,
            address: 0x20_0000,
            size: 4096,
            stack: 2,
            api: AllocApi::Calloc,
        });
        v.push(Record::Realloc {
            time: 2_100_000,
            thread: 4242,
            old_address: 0x20_0000,
            new_address: 0x30_0000,
            size: 8192,
            stack: 2,
            api: AllocApi::Realloc,
        });
        v.push(Record::Alloc {
            time: 2_200_000,
            thread: 4243,
            address: 0x7f00_0000_0000,
            size: 1 << 20,
            stack: 2,
            api: AllocApi::Mmap,
        });
        v.push(Record::Free {
            time: 2_300_000,
            thread: 4243,
            address: 0x7f00_0000_0000,
            size: 1 << 20,
            api: FreeApi::Munmap,
        });
        v.push(Record::Lost {
            time: 2_400_000,
            count: 3,
            reason: LostReason::RingBufferFull,
        });
        v.push(Record::Rss {
            time: 2_500_000,
            rss_bytes: 1 << 22,
            anon_bytes: 1 << 21,
        });
        v.push(Record::Exit {
            time: 3_000_000,
            code: Some(0),
            signal: None,
        });
        v.push(Record::End {
            time: 3_000_100,
            totals: EndTotals {
                allocations: 52,
                frees: 41,
                reallocs: 1,
                lost: 3,
            },
        });
        v
    }
}
