//! Facts read from ELF files on disk: symbol file offsets, code bytes, GNU build-ids.
//!
//! Owns: parsing ELF (via `object`) for what the recorder needs before and while tracing.
//! Must not: attach probes or interpret the code it returns (see `free_probe`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSegment, ObjectSymbol};

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a readable ELF file: {source}")]
    Parse {
        path: PathBuf,
        source: object::Error,
    },
}

/// An ELF file held in memory.
pub struct ElfFile {
    path: PathBuf,
    data: Vec<u8>,
}

/// What a module's dynamic section says about linking (see [`ElfFile::dynamic_names`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicNames {
    pub soname: Option<String>,
    pub needed: Vec<String>,
    pub search_path: Option<String>,
}

/// Where a function symbol lives in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionLocation {
    /// Offset of the first instruction in the file (what uprobes attach to).
    pub file_offset: u64,
    pub size: u64,
}

impl ElfFile {
    pub fn read(path: &Path) -> Result<ElfFile, ElfError> {
        let data = std::fs::read(path).map_err(|source| ElfError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = ElfFile {
            path: path.to_owned(),
            data,
        };
        file.parse()?;
        Ok(file)
    }

    fn parse(&self) -> Result<object::File<'_>, ElfError> {
        object::File::parse(&*self.data).map_err(|source| ElfError::Parse {
            path: self.path.clone(),
            source,
        })
    }

    /// The GNU build-id note, empty when there is none.
    pub fn build_id(&self) -> Vec<u8> {
        self.parse()
            .ok()
            .and_then(|file| file.build_id().ok().flatten().map(<[u8]>::to_vec))
            .unwrap_or_default()
    }

    /// Finds a defined function named `name` (dynamic symbols first, then the symbol table;
    /// version suffixes such as `@@GLIBC_2.2.5` are ignored).
    pub fn function(&self, name: &str) -> Option<FunctionLocation> {
        let file = self.parse().ok()?;
        let symbol = file.dynamic_symbols().chain(file.symbols()).find(|s| {
            s.is_definition()
                && s.kind() == object::SymbolKind::Text
                && s.name().is_ok_and(|n| n.split('@').next() == Some(name))
        })?;
        let address = symbol.address();
        let file_offset = file.segments().find_map(|segment| {
            let (offset, file_size) = segment.file_range();
            let start = segment.address();
            (address >= start && address < start + file_size).then(|| address - start + offset)
        })?;
        Some(FunctionLocation {
            file_offset,
            size: symbol.size(),
        })
    }

    /// Every defined function, by name (version suffixes dropped): `(exported, all)`, the
    /// dynamic symbols (what other modules can bind to) and those together with the symbol
    /// table (what the module's own code calls, e.g. in a static executable). The first
    /// symbol of a name wins.
    pub fn functions(
        &self,
    ) -> (
        HashMap<String, FunctionLocation>,
        HashMap<String, FunctionLocation>,
    ) {
        let mut exported = HashMap::new();
        let mut all = HashMap::new();
        let Ok(file) = self.parse() else {
            return (exported, all);
        };
        let segments: Vec<(u64, u64, u64)> = file
            .segments()
            .map(|segment| {
                let (offset, file_size) = segment.file_range();
                (segment.address(), file_size, offset)
            })
            .collect();
        let locate = |symbol: &object::Symbol<'_, '_>| {
            let address = symbol.address();
            segments
                .iter()
                .find(|&&(start, size, _)| address >= start && address < start + size)
                .map(|&(start, _, offset)| FunctionLocation {
                    file_offset: address - start + offset,
                    size: symbol.size(),
                })
        };
        let add = |table: &mut HashMap<String, FunctionLocation>, symbol: &object::Symbol| {
            if !symbol.is_definition() || symbol.kind() != object::SymbolKind::Text {
                return;
            }
            let Some(name) = symbol.name().ok().and_then(|n| n.split('@').next()) else {
                return;
            };
            if !table.contains_key(name)
                && let Some(location) = locate(symbol)
            {
                table.insert(name.to_owned(), location);
            }
        };
        for symbol in file.dynamic_symbols() {
            add(&mut exported, &symbol);
            add(&mut all, &symbol);
        }
        for symbol in file.symbols() {
            add(&mut all, &symbol);
        }
        (exported, all)
    }

    /// The dynamic section's `DT_SONAME`, `DT_NEEDED` names (in order) and library search
    /// path (`DT_RUNPATH`, else `DT_RPATH`, `:`-separated); empty for a static executable.
    pub fn dynamic_names(&self) -> DynamicNames {
        let mut names = DynamicNames::default();
        let Ok(file) = object::read::elf::ElfFile64::<object::Endianness>::parse(&*self.data)
        else {
            return names;
        };
        let endian = file.endian();
        let sections = file.elf_section_table();
        let Ok(Some((entries, strings_index))) = sections.dynamic(endian, &*self.data) else {
            return names;
        };
        let Ok(strings) = sections.strings(endian, &*self.data, strings_index) else {
            return names;
        };
        let mut rpath = None;
        for entry in entries {
            use object::read::elf::Dyn;
            let tag = entry.tag32(endian);
            let Some(value) = entry.val32(endian) else {
                continue;
            };
            let text = || {
                strings
                    .get(value)
                    .ok()
                    .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            };
            match tag.map(i64::from) {
                Some(object::elf::DT_NEEDED) => names.needed.extend(text()),
                Some(object::elf::DT_SONAME) => names.soname = text(),
                Some(object::elf::DT_RUNPATH) => names.search_path = text(),
                Some(object::elf::DT_RPATH) => rpath = text(),
                _ => {}
            }
        }
        if names.search_path.is_none() {
            names.search_path = rpath;
        }
        names
    }

    /// File offset of the entry point (`e_entry`), where a program starts once the dynamic
    /// loader has mapped every library it needs.
    pub fn entry_point_offset(&self) -> Option<u64> {
        let file = self.parse().ok()?;
        let address = file.entry();
        file.segments().find_map(|segment| {
            let (offset, file_size) = segment.file_range();
            let start = segment.address();
            (address >= start && address < start + file_size).then(|| address - start + offset)
        })
    }

    /// The program interpreter (PT_INTERP, the dynamic loader) a dynamic executable names.
    pub fn interpreter(&self) -> Option<PathBuf> {
        use object::ObjectSection;
        let file = self.parse().ok()?;
        let data = file.section_by_name(".interp")?.data().ok()?;
        let path = data.split(|&b| b == 0).next()?;
        (!path.is_empty()).then(|| PathBuf::from(String::from_utf8_lossy(path).into_owned()))
    }

    /// Up to `len` bytes of the file starting at `file_offset`.
    pub fn bytes_at(&self, file_offset: u64, len: usize) -> &[u8] {
        let start = usize::try_from(file_offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let end = start.saturating_add(len).min(self.data.len());
        &self.data[start..end]
    }
}

/// The GNU build-id of the ELF file at `path`, empty if unreadable or absent.
pub fn build_id_of(path: &Path) -> Vec<u8> {
    ElfFile::read(path)
        .map(|f| f.build_id())
        .unwrap_or_default()
}
