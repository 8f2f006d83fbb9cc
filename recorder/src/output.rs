//! The trace file's place: which existing file at `-o` the recorder may replace.
//!
//! Owns the policy, decided before anything else happens: the trace is written into a new
//! temporary file beside the final name (memtrail-format's `OutputFile`: mode 0600, owned by
//! the recorder, whatever existed), so creating it also proves the directory is writable. At
//! the final name, a memtrail trace is replaced (users record again to the same name); a
//! regular file of another kind or a symbolic link only with `--force`; a directory, FIFO,
//! device or socket never; nor the program being traced. Replacing is always a rename: never
//! following a link, never writing into an existing inode.
//!
//! Must not: publish the trace (`recording` does once the target has started) or write it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use memtrail_format::{FileKind, OutputFile};

/// Why the trace cannot go to `-o`.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot check what is at {}", path.display())]
    Check {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is the program being traced ({}): refusing to replace it, even with --force; name another output",
        path.display(),
        program.display()
    )]
    TracedProgram { path: PathBuf, program: PathBuf },
    #[error(
        "{} exists and is not a memtrail trace: remove it, or pass --force to replace it",
        path.display()
    )]
    NotATrace { path: PathBuf },
    #[error(
        "{} is a symbolic link (to {link_target}), which memtrail-record never follows: remove it, or pass --force to replace the link itself",
        path.display()
    )]
    Symlink {
        path: PathBuf,
        link_target: &'static str,
    },
    #[error(
        "{} is {kind}, not a file: name another output (memtrail-record replaces only files and symbolic links, even with --force)",
        path.display()
    )]
    NotAFile { path: PathBuf, kind: FileKind },
}

/// Creates the temporary trace file for `path`, after checking what is there now. `program`
/// is the file the target runs (the launched executable, or /proc/PID/exe).
pub fn open_output(
    path: &Path,
    force: bool,
    program: Option<&Path>,
) -> Result<OutputFile, OutputError> {
    let owned = || path.to_path_buf();
    let output = OutputFile::create(path).map_err(|source| OutputError::Create {
        path: owned(),
        source,
    })?;
    let existing = output.existing().map_err(|source| OutputError::Check {
        path: owned(),
        source,
    })?;
    let Some(existing) = existing else {
        return Ok(output);
    };
    if let Some(program) = program
        && let Ok(meta) = std::fs::metadata(program)
        && (meta.dev(), meta.ino()) == (existing.dev, existing.ino)
    {
        return Err(OutputError::TracedProgram {
            path: owned(),
            program: program.to_path_buf(),
        });
    }
    match existing.kind {
        FileKind::Regular if existing.is_trace || force => Ok(output),
        FileKind::Regular => Err(OutputError::NotATrace { path: owned() }),
        FileKind::Symlink if force => Ok(output),
        FileKind::Symlink => Err(OutputError::Symlink {
            path: owned(),
            link_target: existing
                .link_target
                .map_or("nothing: it dangles", FileKind::describe),
        }),
        kind => Err(OutputError::NotAFile {
            path: owned(),
            kind,
        }),
    }
}
