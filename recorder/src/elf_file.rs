//! Facts read from ELF files on disk: symbol file offsets, code bytes, GNU build-ids.
//!
//! Owns: parsing ELF (via `object`) for what the recorder needs before and while tracing.
//! Must not: attach probes or interpret the code it returns (see `free_probe`).

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
