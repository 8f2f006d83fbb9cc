//! Test support (the `test-support` feature, on only in the workspace's dev-dependencies):
//! [`TraceBuilder`] writes a synthetic trace in a few lines, and [`escapes`] is the trace whose
//! every text is hostile to terminals, JSON, XML/HTML and spreadsheets.
//!
//! This module is for tests, fuzz seeds and examples only: it panics on any error instead of
//! returning it, and nothing in the recorder or the analyzer may use it. It writes through the
//! real [`TraceWriter`], so a trace built here is byte for byte one a recorder could write.

use std::path::Path;

use crate::{
    AllocApi, EndTotals, FreeApi, LostReason, Module, ProcessInfo, ProcessOrigin, Record, Stack,
    StackFrame, Symbol, SymbolFrame, TraceMeta, TraceWriter, Unwinder, WriterOptions,
};

pub mod escapes;

/// Where [`TraceBuilder::named_stack`] puts the frames of a stack and what source it names:
/// frame `i` of stack `id` is at offset `id * 0x1000 + i * 0x10` of `module`, at address
/// `load + offset`, and its symbol is at line `first_line + i` of `file`.
#[derive(Debug, Clone)]
pub struct StackLayout {
    pub module: u32,
    pub load: u64,
    pub file: String,
    pub first_line: u32,
}

impl Default for StackLayout {
    fn default() -> Self {
        StackLayout {
            module: 1,
            load: 0x5555_0000_0000,
            file: "src/app.c".into(),
            first_line: 10,
        }
    }
}

/// A trace under construction, in memory. Events are on thread 1 unless
/// [`TraceBuilder::on_thread`] says otherwise or they are written with [`TraceBuilder::record`]; the builder remembers the latest event time so that
/// [`TraceBuilder::end`] can close the trace no earlier than its last event.
///
/// ```
/// use memtrail_format::TraceMeta;
/// use memtrail_format::testing::TraceBuilder;
///
/// let mut t = TraceBuilder::new(&TraceMeta::default());
/// t.module(1, "/usr/bin/app", &[1, 2, 3])
///     .named_stack(1, &["make", "main"])
///     .alloc(1000, 0xa0, 100, 1)
///     .free(5000, 0xa0)
///     .end(10_000);
/// let bytes = t.bytes();
/// assert!(bytes.starts_with(b"\x89MTRACE\n"));
/// ```
pub struct TraceBuilder {
    writer: TraceWriter<Vec<u8>>,
    layout: StackLayout,
    latest: u64,
    thread: u32,
}

impl TraceBuilder {
    /// A trace with the writer's default options (frames flushed by size and time).
    pub fn new(meta: &TraceMeta) -> TraceBuilder {
        let writer = TraceWriter::new(Vec::new(), meta).expect("a writer on a Vec");
        TraceBuilder::from_writer(writer)
    }

    /// A trace written with `options`, e.g. without time-based flushes, so that the bytes
    /// depend only on the records.
    pub fn with_options(meta: &TraceMeta, options: WriterOptions) -> TraceBuilder {
        let writer =
            TraceWriter::with_options(Vec::new(), meta, options).expect("a writer on a Vec");
        TraceBuilder::from_writer(writer)
    }

    fn from_writer(writer: TraceWriter<Vec<u8>>) -> TraceBuilder {
        TraceBuilder {
            writer,
            layout: StackLayout::default(),
            latest: 0,
            thread: 1,
        }
    }

    /// Sets where the next [`TraceBuilder::named_stack`]s put their frames.
    pub fn layout(&mut self, layout: StackLayout) -> &mut Self {
        self.layout = layout;
        self
    }

    /// The thread the next events are on (1 at the start).
    pub fn on_thread(&mut self, thread: u32) -> &mut Self {
        self.thread = thread;
        self
    }

    /// Writes any record. An event's time counts for [`TraceBuilder::end`].
    pub fn record(&mut self, record: Record) -> &mut Self {
        if record.is_event()
            && let Some(time) = record.time()
        {
            self.latest = self.latest.max(time);
        }
        self.writer.write(&record).expect("writing to a Vec");
        self
    }

    /// The id of string `s`, written as a string record the first time.
    pub fn string(&mut self, s: &str) -> u32 {
        self.writer.intern(s).expect("writing to a Vec")
    }

    /// A module record without mapping ranges.
    pub fn module(&mut self, id: u32, path: &str, build_id: &[u8]) -> &mut Self {
        self.record(Record::Module(Box::new(Module {
            id,
            path: path.into(),
            build_id: build_id.to_vec(),
            ranges: vec![],
        })))
    }

    /// A symbol with one frame: `function` at `file:line`, for `module` + `offset`. The
    /// function's name is interned before the file's.
    pub fn symbol(
        &mut self,
        module: u32,
        offset: u64,
        function: &str,
        file: &str,
        line: u32,
    ) -> &mut Self {
        let function = self.string(function);
        let file = self.string(file);
        self.record(Record::Symbol(Symbol {
            module,
            offset,
            frames: vec![SymbolFrame {
                function,
                file,
                line,
            }],
        }))
    }

    /// A stack record (frame-pointer unwound, not truncated), frames innermost first.
    pub fn stack(&mut self, id: u32, frames: Vec<StackFrame>) -> &mut Self {
        self.record(Record::Stack(Stack {
            id,
            unwinder: Unwinder::FramePointer,
            truncated: false,
            frames,
        }))
    }

    /// Stack `id` whose frames are the functions `names`, innermost first, each with a symbol,
    /// placed as the current [`StackLayout`] says.
    pub fn named_stack(&mut self, id: u32, names: &[&str]) -> &mut Self {
        let frames = self.named_frames(id, names);
        self.stack(id, frames)
    }

    /// The frames of [`TraceBuilder::named_stack`], their symbols written, for a caller that
    /// adds frames of its own before writing the stack.
    pub fn named_frames(&mut self, id: u32, names: &[&str]) -> Vec<StackFrame> {
        let layout = self.layout.clone();
        let mut frames = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let offset = u64::from(id) * 0x1000 + i as u64 * 0x10;
            frames.push(StackFrame {
                module: layout.module,
                offset,
                address: layout.load + offset,
            });
            let line = layout.first_line + i as u32;
            self.symbol(layout.module, offset, name, &layout.file, line);
        }
        frames
    }

    /// `malloc` of `size` bytes at `address` from `stack`.
    pub fn alloc(&mut self, time: u64, address: u64, size: u64, stack: u32) -> &mut Self {
        self.alloc_api(time, address, size, stack, AllocApi::Malloc)
    }

    /// An allocation by `api` (an `mmap` is a mapping of `size` bytes).
    pub fn alloc_api(
        &mut self,
        time: u64,
        address: u64,
        size: u64,
        stack: u32,
        api: AllocApi,
    ) -> &mut Self {
        self.record(Record::Alloc {
            time,
            thread: self.thread,
            address,
            size,
            stack,
            api,
        })
    }

    /// `free(address)`.
    pub fn free(&mut self, time: u64, address: u64) -> &mut Self {
        self.record(Record::Free {
            time,
            thread: self.thread,
            address,
            size: 0,
            api: FreeApi::Free,
        })
    }

    /// `munmap(address, length)`; a length of 0 unmaps to the end of the mapping.
    pub fn munmap(&mut self, time: u64, address: u64, length: u64) -> &mut Self {
        self.record(Record::Free {
            time,
            thread: self.thread,
            address,
            size: length,
            api: FreeApi::Munmap,
        })
    }

    /// `realloc(old, size)` returning `new`, from `stack`.
    pub fn realloc(&mut self, time: u64, old: u64, new: u64, size: u64, stack: u32) -> &mut Self {
        self.record(Record::Realloc {
            time,
            thread: self.thread,
            old_address: old,
            new_address: new,
            size,
            stack,
            api: AllocApi::Realloc,
        })
    }

    /// A sample of the process's resident and anonymous bytes.
    pub fn rss(&mut self, time: u64, rss_bytes: u64, anon_bytes: u64) -> &mut Self {
        self.record(Record::Rss {
            time,
            rss_bytes,
            anon_bytes,
        })
    }

    /// `count` events the recorder lost for `reason`.
    pub fn lost(&mut self, time: u64, count: u64, reason: LostReason) -> &mut Self {
        self.record(Record::Lost {
            time,
            count,
            reason,
        })
    }

    /// The traced process exited.
    pub fn exit(&mut self, time: u64, code: Option<i32>, signal: Option<i32>) -> &mut Self {
        self.record(Record::Exit { time, code, signal })
    }

    /// Process `pid` (child of `parent_pid`, 0: unknown) enters the trace at `time`.
    pub fn process(
        &mut self,
        time: u64,
        pid: u32,
        parent_pid: u32,
        origin: ProcessOrigin,
        command_line: &[&str],
    ) -> &mut Self {
        self.record(Record::Process(Box::new(ProcessInfo {
            pid,
            parent_pid,
            time,
            origin,
            command_line: command_line.iter().map(|s| s.to_string()).collect(),
        })))
    }

    /// Thread `thread` belongs to process `pid` from here on.
    pub fn thread(&mut self, thread: u32, pid: u32) -> &mut Self {
        self.record(Record::Thread { thread, pid })
    }

    /// Process `pid` replaced its image with `command_line`.
    pub fn exec(&mut self, time: u64, pid: u32, command_line: &[&str]) -> &mut Self {
        self.record(Record::Exec {
            time,
            pid,
            command_line: command_line.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Process `pid` ended.
    pub fn process_exit(
        &mut self,
        time: u64,
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
    ) -> &mut Self {
        self.record(Record::ProcessExit {
            time,
            pid,
            code,
            signal,
        })
    }

    /// Process `pid` (child of `parent_pid`) could not be traced, for `reason`.
    pub fn unfollowed(&mut self, time: u64, pid: u32, parent_pid: u32, reason: &str) -> &mut Self {
        self.record(Record::Unfollowed {
            time,
            pid,
            parent_pid,
            reason: reason.into(),
        })
    }

    /// The end record, at `time` or at the latest event if that is later, with zero totals.
    pub fn end(&mut self, time: u64) -> &mut Self {
        self.end_with(time.max(self.latest), EndTotals::default())
    }

    /// The end record at exactly `time`, with the recorder's `totals`.
    pub fn end_with(&mut self, time: u64, totals: EndTotals) -> &mut Self {
        self.record(Record::End { time, totals })
    }

    /// The trace's bytes: whatever was written, with or without an end record (a trace
    /// without one reads as cut short).
    pub fn bytes(self) -> Vec<u8> {
        self.writer.finish().expect("finishing a Vec")
    }

    /// Writes the trace to `path` and returns its bytes.
    pub fn write(self, path: &Path) -> Vec<u8> {
        let bytes = self.bytes();
        std::fs::write(path, &bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TraceReader;

    #[test]
    fn a_built_trace_reads_back_in_order() {
        let mut t = TraceBuilder::new(&TraceMeta::default());
        t.module(1, "/usr/bin/app", &[1])
            .named_stack(7, &["leaf", "main"])
            .alloc(100, 0x10, 8, 7)
            .realloc(200, 0x10, 0x20, 16, 7)
            .munmap(250, 0x9000, 0)
            .free(300, 0x20)
            .end(50);
        let bytes = t.bytes();
        let records: Vec<Record> = TraceReader::new(&bytes[..])
            .expect("a trace")
            .collect::<Result<_, _>>()
            .expect("records");
        let stack = records.iter().find_map(|r| match r {
            Record::Stack(s) => Some(s),
            _ => None,
        });
        let stack = stack.expect("the stack record");
        assert_eq!(stack.frames.len(), 2);
        assert_eq!(stack.frames[1].offset, 7 * 0x1000 + 0x10);
        assert_eq!(
            stack.frames[1].address,
            0x5555_0000_0000 + 7 * 0x1000 + 0x10
        );
        // Two strings per frame, interned once: leaf, src/app.c, main.
        let strings = records
            .iter()
            .filter(|r| matches!(r, Record::String { .. }))
            .count();
        assert_eq!(strings, 3);
        // The end is no earlier than the last event.
        assert!(matches!(
            records.last(),
            Some(Record::End { time: 300, .. })
        ));
    }
}
