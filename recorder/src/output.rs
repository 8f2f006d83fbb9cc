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
use std::path::Path;

use anyhow::{Context, bail};
use memtrail_format::{FileKind, OutputFile};

/// Creates the temporary trace file for `path`, after checking what is there now. `program`
/// is the file the target runs (the launched executable, or /proc/PID/exe).
pub fn open_output(path: &Path, force: bool, program: Option<&Path>) -> anyhow::Result<OutputFile> {
    let shown = path.display();
    let output = OutputFile::create(path).with_context(|| format!("cannot create {shown}"))?;
    let Some(existing) = output
        .existing()
        .with_context(|| format!("cannot check what is at {shown}"))?
    else {
        return Ok(output);
    };
    if let Some(program) = program
        && let Ok(meta) = std::fs::metadata(program)
        && (meta.dev(), meta.ino()) == (existing.dev, existing.ino)
    {
        bail!(
            "{shown} is the program being traced ({}): refusing to replace it, even with --force; name another output",
            program.display()
        );
    }
    match existing.kind {
        FileKind::Regular if existing.is_trace || force => Ok(output),
        FileKind::Regular => bail!(
            "{shown} exists and is not a memtrail trace: remove it, or pass --force to replace it"
        ),
        FileKind::Symlink if force => Ok(output),
        FileKind::Symlink => bail!(
            "{shown} is a symbolic link (to {}), which memtrail-record never follows: remove it, or pass --force to replace the link itself",
            existing
                .link_target
                .map_or("nothing: it dangles", FileKind::describe)
        ),
        kind => bail!(
            "{shown} is {kind}, not a file: name another output (memtrail-record replaces only files and symbolic links, even with --force)"
        ),
    }
}
