//! The files a command reads and writes, checked before the analysis and written safely.
//!
//! Owns: refusing inputs that are not regular files (a FIFO, a device, a directory, a socket:
//! checked without blocking, before anything is read) and outputs that would replace one of
//! the command's own input traces; writing every output file through memtrail-format's
//! `OutputFile` (a new 0600 temporary file beside it, renamed over the final name only once
//! complete, so a failed command leaves no half file and keeps the previous one; a symbolic
//! link there is replaced, never followed, and an existing file is never written through).
//! Must not: decide what goes into a file (`render/`) or read a trace (`analysis.rs`).

use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use memtrail_format::{FileKind, OutputFile, open_input};

use crate::error::{Error, Result};

/// Checks, before any analysis starts, that every input is a regular file and that no output
/// is one of the inputs (the same path, or another name of the same file).
pub fn check_inputs_and_outputs(inputs: &[&Path], outputs: &[&Path]) -> Result<()> {
    // (device, inode) of each input, and of the name itself when it is a symbolic link.
    let mut identities: Vec<((u64, u64), &Path)> = Vec::new();
    for &input in inputs {
        let file = open_input(input).map_err(|e| Error::trace(input, e))?;
        let meta = file.metadata().map_err(|e| Error::trace(input, e.into()))?;
        identities.push(((meta.dev(), meta.ino()), input));
        if let Ok(name) = std::fs::symlink_metadata(input) {
            identities.push(((name.dev(), name.ino()), input));
        }
    }
    for &output in outputs {
        let Ok(meta) = std::fs::symlink_metadata(output) else {
            continue;
        };
        if let Some((_, input)) = identities
            .iter()
            .find(|(id, _)| *id == (meta.dev(), meta.ino()))
        {
            return Err(Error::OutputIsInput {
                output: output.to_owned(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Writes `path` with `f`, publishing it only once `f` and every write succeeded.
pub fn write_file(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<&mut OutputFile>) -> std::io::Result<()>,
) -> Result<()> {
    write_output(path, |w| f(w).map_err(|e| Error::write(path, e)))
}

/// [`write_file`] for writers whose errors are already [`Error`]s (table exports).
pub fn write_output(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<&mut OutputFile>) -> Result<()>,
) -> Result<()> {
    let mut output = create_output(path)?;
    let mut w = BufWriter::new(&mut output);
    f(&mut w)?;
    w.flush().map_err(|e| Error::write(path, e))?;
    drop(w);
    output.commit().map_err(|e| Error::write(path, e))
}

/// The temporary file for `path`, unless what is there cannot sensibly be replaced by a file:
/// a directory, a FIFO, a device or a socket, or a symbolic link to one (renaming over
/// `/dev/null` or `/dev/stdout` would replace the system's own).
fn create_output(path: &Path) -> Result<OutputFile> {
    let output = OutputFile::create(path).map_err(|e| Error::write(path, e))?;
    let existing = output.existing().map_err(|e| Error::write(path, e))?;
    let refused = match existing {
        None => None,
        Some(e) => match (e.kind, e.link_target) {
            (FileKind::Regular, _) => None,
            (FileKind::Symlink, None | Some(FileKind::Regular)) => None,
            (FileKind::Symlink, Some(target)) => Some(format!("a symbolic link to {target}")),
            (kind, _) => Some(kind.to_string()),
        },
    };
    match refused {
        Some(what) => Err(Error::OutputNotAFile {
            path: PathBuf::from(path),
            what,
        }),
        None => Ok(output),
    }
}
