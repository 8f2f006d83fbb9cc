//! Symbol resolution at record time, so traces read elsewhere show function names.
//!
//! Owns: turning (module file, file offset) into source-level frames with blazesym (ELF
//! symbols, DWARF line info and inlined functions, demangled names). Must not: write records
//! or decide which offsets need resolving (the session does both).
//!
//! Offsets passed in are return addresses; the instruction looked up is the byte before, the
//! call itself, so the line reported is the line of the call.

use std::path::Path;

use blazesym::symbolize::{Input, Symbolized, Symbolizer, source::Elf, source::Source};

/// One source-level frame: function, file and line (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFrame {
    pub function: String,
    pub file: Option<String>,
    pub line: u32,
}

pub struct SymbolResolver {
    symbolizer: Symbolizer,
}

impl Default for SymbolResolver {
    fn default() -> Self {
        SymbolResolver::new()
    }
}

impl SymbolResolver {
    pub fn new() -> SymbolResolver {
        SymbolResolver {
            symbolizer: Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
        }
    }

    /// Resolves return-address file offsets of one module. Each result lists the innermost
    /// inlined function first and the function containing the code last; empty if unknown.
    pub fn resolve(&self, module_file: &Path, offsets: &[u64]) -> Vec<Vec<SourceFrame>> {
        let lookups: Vec<u64> = offsets.iter().map(|o| o.saturating_sub(1)).collect();
        let source = Source::Elf(Elf::new(module_file));
        let Ok(results) = self
            .symbolizer
            .symbolize(&source, Input::FileOffset(&lookups))
        else {
            return vec![Vec::new(); offsets.len()];
        };
        results
            .into_iter()
            .map(|result| match result {
                Symbolized::Sym(sym) => {
                    let mut frames: Vec<SourceFrame> = sym
                        .inlined
                        .iter()
                        .rev()
                        .map(|inlined| {
                            let (file, line) = code_location(inlined.code_info.as_ref());
                            SourceFrame {
                                function: inlined.name.to_string(),
                                file,
                                line,
                            }
                        })
                        .collect();
                    let (file, line) = code_location(sym.code_info.as_deref());
                    frames.push(SourceFrame {
                        function: sym.name.to_string(),
                        file,
                        line,
                    });
                    frames
                }
                Symbolized::Unknown(_) => Vec::new(),
            })
            .collect()
    }
}

fn code_location(info: Option<&blazesym::symbolize::CodeInfo<'_>>) -> (Option<String>, u32) {
    match info {
        Some(info) => (
            Some(info.to_path().to_string_lossy().into_owned()),
            info.line.unwrap_or(0),
        ),
        None => (None, 0),
    }
}
