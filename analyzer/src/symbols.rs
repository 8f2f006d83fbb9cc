//! Symbol tables: turning a stack id into source-level frames.
//!
//! Owns the interned strings, modules, stacks and symbols of a trace, and their resolution into
//! [`Frame`]s (function, file, line, module basename, address), inlined frames expanded,
//! innermost first. Must not do any accounting and must not guess names it was not given: an
//! unsymbolized frame is shown as `module+0xoffset` (or the raw address).
//!
//! A stack keeps at most [`MAX_REPORT_FRAMES`] frames (the innermost) and a symbol at most
//! [`MAX_INLINED_FRAMES`]: the recorder walks at most 127 frames, so only a crafted trace has
//! more, and reports stay readable and small whatever a trace declares. A stack cut there
//! resolves with a last frame `[N outer frames not shown]`.

use memtrail_format::{NO_MODULE, NO_STRING, Record, StackFrame, SymbolFrame};

use crate::aggregate::IntMap;

/// One source-level frame.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Frame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Basename of the module's path.
    pub module: Option<String>,
    pub address: u64,
    /// True for a function inlined into the next frame (same address).
    pub inlined: bool,
}

impl Frame {
    /// Where the frame is in the source, as reports print it after the function:
    /// ` file:line`, ` file`, or nothing.
    pub fn place(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!(" {file}:{line}"),
            (Some(file), None) => format!(" {file}"),
            _ => String::new(),
        }
    }

    /// The module, as reports print it last: ` [module]`, or nothing.
    pub fn module_tag(&self) -> String {
        self.module
            .as_deref()
            .map(|m| format!(" [{m}]"))
            .unwrap_or_default()
    }
}

/// The most frames a stack keeps, and a report shows, innermost first (inlined frames
/// count).
pub const MAX_REPORT_FRAMES: usize = 1024;
/// The most inlined frames a symbol keeps.
pub const MAX_INLINED_FRAMES: usize = 256;

#[derive(Debug, Clone)]
struct StackEntry {
    frames: Vec<StackFrame>,
    truncated: bool,
    /// Frames beyond `MAX_REPORT_FRAMES` that were not kept.
    dropped: usize,
}

/// The names a trace carries.
#[derive(Debug, Default, Clone)]
pub struct SymbolTable {
    strings: IntMap<u32, String>,
    modules: IntMap<u32, String>,
    stacks: IntMap<u32, StackEntry>,
    symbols: std::collections::HashMap<(u32, u64), Vec<SymbolFrame>>,
}

impl SymbolTable {
    /// Takes the record if it is a name record (string, module, stack, symbol); gives it back
    /// otherwise.
    pub fn take(&mut self, record: Record) -> Option<Record> {
        match record {
            Record::String { id, value } => {
                self.strings.insert(id, value);
                None
            }
            Record::Module(m) => {
                self.modules.insert(m.id, m.path);
                None
            }
            Record::Stack(s) => {
                let mut frames = s.frames;
                let dropped = frames.len().saturating_sub(MAX_REPORT_FRAMES);
                if dropped > 0 {
                    frames.truncate(MAX_REPORT_FRAMES);
                    frames.shrink_to_fit();
                }
                self.stacks.insert(
                    s.id,
                    StackEntry {
                        frames,
                        truncated: s.truncated,
                        dropped,
                    },
                );
                None
            }
            Record::Symbol(s) => {
                let mut frames = s.frames;
                if frames.len() > MAX_INLINED_FRAMES {
                    frames.truncate(MAX_INLINED_FRAMES);
                    frames.shrink_to_fit();
                }
                self.symbols.insert((s.module, s.offset), frames);
                None
            }
            other => Some(other),
        }
    }

    pub fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    pub fn module_count(&self) -> usize {
        self.modules.len()
    }

    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// True when the recorder stopped unwinding this stack early.
    pub fn is_truncated(&self, stack: u32) -> bool {
        self.stacks.get(&stack).is_some_and(|s| s.truncated)
    }

    /// Whether a stack record exists for this id.
    pub fn has_stack(&self, stack: u32) -> bool {
        self.stacks.contains_key(&stack)
    }

    fn string(&self, id: u32) -> Option<&str> {
        if id == NO_STRING {
            return None;
        }
        self.strings.get(&id).map(String::as_str)
    }

    fn module_name(&self, id: u32) -> Option<String> {
        if id == NO_MODULE {
            return None;
        }
        let path = self.modules.get(&id)?;
        Some(path.rsplit('/').next().unwrap_or(path).to_owned())
    }

    /// What [`SymbolTable::resolve`] builds for `stack`, without building it: (frames, bytes of
    /// names). For the memory budget.
    pub fn resolved_size(&self, stack: u32) -> (u64, u64) {
        let Some(entry) = self.stacks.get(&stack) else {
            return (1, 16);
        };
        let (mut frames, mut bytes) = (0u64, 0u64);
        for f in &entry.frames {
            if frames >= MAX_REPORT_FRAMES as u64 {
                break;
            }
            let module = if f.module == NO_MODULE {
                0
            } else {
                self.modules.get(&f.module).map_or(0, String::len)
            };
            match self.symbols.get(&(f.module, f.offset)) {
                Some(sym) if !sym.is_empty() => {
                    for s in sym {
                        let name = |id| self.string(id).map_or(0, str::len);
                        frames += 1;
                        bytes += (module + name(s.function) + name(s.file) + 20) as u64;
                    }
                }
                _ => {
                    frames += 1;
                    bytes += (2 * module + 20) as u64;
                }
            }
        }
        (frames.min(MAX_REPORT_FRAMES as u64) + 1, bytes)
    }

    /// The frames of `stack`, innermost first, inlined functions expanded, at most
    /// [`MAX_REPORT_FRAMES`] of them and a last one saying how many more there were. A stack
    /// id with no stack record gives one frame named `[stack N]`.
    pub fn resolve(&self, stack: u32) -> Vec<Frame> {
        let Some(entry) = self.stacks.get(&stack) else {
            return vec![Frame {
                function: format!("[stack {stack}]"),
                file: None,
                line: None,
                module: None,
                address: 0,
                inlined: false,
            }];
        };
        let mut out = Vec::with_capacity(entry.frames.len().min(MAX_REPORT_FRAMES) + 1);
        let mut not_shown = entry.dropped;
        for (k, f) in entry.frames.iter().enumerate() {
            if out.len() >= MAX_REPORT_FRAMES {
                not_shown += entry.frames.len() - k;
                break;
            }
            let module = self.module_name(f.module);
            match self.symbols.get(&(f.module, f.offset)) {
                Some(sym) if !sym.is_empty() => {
                    let last = sym.len() - 1;
                    let room = MAX_REPORT_FRAMES - out.len();
                    for (i, s) in sym.iter().enumerate().take(room) {
                        out.push(Frame {
                            function: self
                                .string(s.function)
                                .map_or_else(|| unknown(&module, f), str::to_owned),
                            file: self.string(s.file).map(str::to_owned),
                            line: (s.line != 0).then_some(s.line),
                            module: module.clone(),
                            address: f.address,
                            inlined: i < last,
                        });
                    }
                }
                _ => out.push(Frame {
                    function: unknown(&module, f),
                    file: None,
                    line: None,
                    module,
                    address: f.address,
                    inlined: false,
                }),
            }
        }
        if not_shown > 0 {
            out.push(Frame {
                function: format!("[{not_shown} outer frames not shown]"),
                file: None,
                line: None,
                module: None,
                address: 0,
                inlined: false,
            });
        }
        if out.is_empty() {
            out.push(Frame {
                function: "[empty stack]".into(),
                file: None,
                line: None,
                module: None,
                address: 0,
                inlined: false,
            });
        }
        out
    }
}

fn unknown(module: &Option<String>, f: &StackFrame) -> String {
    match module {
        Some(m) => format!("{m}+{:#x}", f.offset),
        None => format!("{:#x}", f.address),
    }
}

/// `function (file:line)` for one-line displays.
pub fn frame_label(f: &Frame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!(
            "{} ({}:{line})",
            f.function,
            file.rsplit('/').next().unwrap_or(file)
        ),
        (Some(file), None) => format!(
            "{} ({})",
            f.function,
            file.rsplit('/').next().unwrap_or(file)
        ),
        _ => f.function.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrail_format::{Module, Stack, Symbol, SymbolFrame, Unwinder};

    #[test]
    fn resolves_inlined_frames_innermost_first() {
        let mut t = SymbolTable::default();
        for (id, v) in [(0, "inner"), (1, "outer"), (2, "src/a.c"), (3, "main")] {
            assert!(
                t.take(Record::String {
                    id,
                    value: v.into()
                })
                .is_none()
            );
        }
        t.take(Record::Module(Box::new(Module {
            id: 7,
            path: "/usr/bin/app".into(),
            build_id: vec![],
            ranges: vec![],
        })));
        t.take(Record::Stack(Stack {
            id: 1,
            unwinder: Unwinder::FramePointer,
            truncated: false,
            frames: vec![
                StackFrame {
                    module: 7,
                    offset: 0x10,
                    address: 0x5010,
                },
                StackFrame {
                    module: 7,
                    offset: 0x20,
                    address: 0x5020,
                },
                StackFrame {
                    module: NO_MODULE,
                    offset: 0,
                    address: 0xdead,
                },
            ],
        }));
        t.take(Record::Symbol(Symbol {
            module: 7,
            offset: 0x10,
            frames: vec![
                SymbolFrame {
                    function: 0,
                    file: 2,
                    line: 3,
                },
                SymbolFrame {
                    function: 1,
                    file: 2,
                    line: 9,
                },
            ],
        }));
        t.take(Record::Symbol(Symbol {
            module: 7,
            offset: 0x20,
            frames: vec![SymbolFrame {
                function: 3,
                file: NO_STRING,
                line: 0,
            }],
        }));
        let f = t.resolve(1);
        let names: Vec<_> = f.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, ["inner", "outer", "main", "0xdead"]);
        assert!(f[0].inlined && !f[1].inlined);
        assert_eq!(f[0].file.as_deref(), Some("src/a.c"));
        assert_eq!(f[1].line, Some(9));
        assert_eq!(f[2].module.as_deref(), Some("app"));
        assert_eq!(f[2].file, None);
        assert_eq!(f[3].module, None);
        assert_eq!(frame_label(&f[0]), "inner (a.c:3)");
        assert_eq!(t.resolve(99)[0].function, "[stack 99]");
    }
}
