//! Files the memtrail programs write and read, opened so that a path cannot be turned against
//! them: the recorder runs as root, often in directories other users can write to.
//!
//! Owns: creating an output as a new temporary file next to its final name (a new inode,
//! mode 0600, owned by the writer, created with `O_CREAT | O_EXCL | O_NOFOLLOW`), publishing
//! it by `rename` over the final name (which never follows a symbolic link there and never
//! writes through an existing inode), removing it when it is dropped unpublished; telling
//! what is at the final name now ([`OutputFile::existing`]); and opening an input only when it
//! is a regular file ([`open_input`]), without blocking on a FIFO.
//!
//! Must not: decide which existing files may be replaced (that is each program's policy), or
//! know anything about records. Every operation on the output goes through one descriptor of
//! its directory, so the directory cannot be swapped between the steps.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::FormatError;
use crate::frame::MAGIC;

/// What kind of file a path names (without following a symbolic link at it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Symlink,
    Directory,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl FileKind {
    fn from_mode(mode: libc::mode_t) -> FileKind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            _ => FileKind::Socket,
        }
    }

    /// "a regular file", "a FIFO", ...: for messages.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Regular => "a regular file",
            FileKind::Symlink => "a symbolic link",
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// What is at an output's final name before it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    /// The entry itself (a symbolic link is not followed).
    pub kind: FileKind,
    /// Device and inode of the entry itself.
    pub dev: u64,
    pub ino: u64,
    /// For a regular file: whether it starts with the trace file magic.
    pub is_trace: bool,
    /// For a symbolic link: what it points to (`None` when it dangles).
    pub link_target: Option<FileKind>,
}

/// An output being written: a temporary file in the final name's directory until
/// [`OutputFile::publish`] renames it over the final name. Dropped unpublished, it is removed
/// and whatever was at the final name stays as it was.
#[derive(Debug)]
pub struct OutputFile {
    file: File,
    dir: OwnedFd,
    temp_name: CString,
    final_name: CString,
    path: PathBuf,
    published: bool,
}

/// Attempts at a fresh temporary name before giving up (someone else may hold the names).
const TEMP_ATTEMPTS: u32 = 64;
/// Bytes of the final name kept in the temporary one (a file name has at most 255 bytes).
const TEMP_STEM_MAX: usize = 200;

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// A random 64-bit number for temporary names (the time and pid if the kernel has none).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into an 8-byte buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// `stat` of `name` in directory `dir`, following a symbolic link or not.
fn stat_at(dir: &OwnedFd, name: &CString, follow: bool) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data filled by fstatat; both pointers are valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

impl OutputFile {
    /// Creates a new, empty temporary file (mode 0600) in the directory of `path`.
    /// Nothing at `path` itself is looked at or touched.
    pub fn create(path: impl AsRef<Path>) -> io::Result<OutputFile> {
        let path = path.as_ref();
        let final_name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the output path does not end in a file name",
            )
        })?;
        let dir_path = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir_c = cstring(dir_path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
        let dir_fd = check(unsafe {
            libc::open(
                dir_c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: open returned a fresh descriptor nothing else owns.
        let dir = unsafe { OwnedFd::from_raw_fd(dir_fd) };

        let stem = final_name.as_bytes();
        let stem = &stem[..stem.len().min(TEMP_STEM_MAX)];
        let mut last_error = None;
        for _ in 0..TEMP_ATTEMPTS {
            let mut name = Vec::with_capacity(stem.len() + 32);
            name.push(b'.');
            name.extend_from_slice(stem);
            name.extend_from_slice(format!(".{:016x}.tmp", random_u64()).as_bytes());
            let temp_name = cstring(&name)?;
            // SAFETY: a valid directory descriptor and NUL-terminated name.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    temp_name.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC
                        | libc::O_NOCTTY,
                    0o600 as libc::c_uint,
                )
            };
            if fd < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::AlreadyExists {
                    last_error = Some(error);
                    continue;
                }
                return Err(error);
            }
            // SAFETY: openat returned a fresh descriptor nothing else owns.
            let file = unsafe { File::from_raw_fd(fd) };
            let output = OutputFile {
                file,
                dir,
                temp_name,
                final_name: cstring(final_name.as_bytes())?,
                path: path.to_owned(),
                published: false,
            };
            // A umask that takes the owner's write bit away would leave a file the writer
            // cannot reopen: make the mode exactly 0600.
            // SAFETY: fchmod on a descriptor we own.
            check(unsafe { libc::fchmod(output.file.as_raw_fd(), 0o600) })?;
            return Ok(output);
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary name")))
    }

    /// The final path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file being written.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// What is at the final name now, if anything: its kind (a symbolic link not followed),
    /// its device and inode and, for a regular file, whether it is a memtrail trace (read
    /// with `O_NOFOLLOW | O_NONBLOCK`, so a FIFO swapped in cannot block).
    pub fn existing(&self) -> io::Result<Option<Existing>> {
        let st = match stat_at(&self.dir, &self.final_name, false) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let kind = FileKind::from_mode(st.st_mode);
        let mut existing = Existing {
            kind,
            dev: st.st_dev,
            ino: st.st_ino,
            is_trace: false,
            link_target: None,
        };
        match kind {
            FileKind::Regular => existing.is_trace = self.starts_with_magic(&existing)?,
            FileKind::Symlink => {
                existing.link_target = stat_at(&self.dir, &self.final_name, true)
                    .ok()
                    .map(|t| FileKind::from_mode(t.st_mode));
            }
            _ => {}
        }
        Ok(Some(existing))
    }

    fn starts_with_magic(&self, seen: &Existing) -> io::Result<bool> {
        // SAFETY: a valid directory descriptor and NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                self.final_name.as_ptr(),
                libc::O_RDONLY
                    | libc::O_NOFOLLOW
                    | libc::O_NONBLOCK
                    | libc::O_CLOEXEC
                    | libc::O_NOCTTY,
            )
        };
        if fd < 0 {
            let error = io::Error::last_os_error();
            // Swapped for a link, or gone, since the stat: not a trace.
            return match error.raw_os_error() {
                Some(libc::ELOOP | libc::ENOENT) => Ok(false),
                _ => Err(error),
            };
        }
        // SAFETY: openat returned a fresh descriptor nothing else owns.
        let mut file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || meta.dev() != seen.dev || meta.ino() != seen.ino {
            return Ok(false);
        }
        let mut head = [0u8; MAGIC.len()];
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled == head.len() && head == MAGIC)
    }

    /// Puts the file at its final name: fsyncs it, renames it over whatever is there (a
    /// symbolic link is replaced, not followed; an existing file's inode is not written to)
    /// and fsyncs the directory. Writes after this go on into the same file, now at its final
    /// name. Calling it again does nothing.
    pub fn publish(&mut self) -> io::Result<()> {
        if self.published {
            return Ok(());
        }
        self.file.sync_all()?;
        // SAFETY: valid directory descriptor and NUL-terminated names.
        check(unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                self.temp_name.as_ptr(),
                self.dir.as_raw_fd(),
                self.final_name.as_ptr(),
            )
        })?;
        self.published = true;
        // The rename is durable once the directory is: a crash now keeps the new file.
        // SAFETY: fsync on a descriptor we own.
        check(unsafe { libc::fsync(self.dir.as_raw_fd()) })?;
        Ok(())
    }

    /// Publishes (if not yet) and makes everything written durable: for an output that must
    /// appear only when complete, call this once it is.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.published {
            self.file.sync_all()
        } else {
            self.publish()
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.published {
            // SAFETY: valid directory descriptor and NUL-terminated name. Best effort: there
            // is nobody to report a failure to.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.temp_name.as_ptr(), 0) };
        }
    }
}

/// Opens `path` for reading if it is a regular file (following symbolic links, as any
/// reader does). A FIFO, device, directory or socket is refused with
/// [`FormatError::NotARegularFile`]: it is opened with `O_NONBLOCK`, so a FIFO with no writer
/// cannot block, and looked at with `fstat` before anything is read.
pub fn open_input(path: impl AsRef<Path>) -> Result<File, FormatError> {
    let path_c = cstring(path.as_ref().as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
    let fd = check(unsafe {
        libc::open(
            path_c.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    })?;
    // SAFETY: open returned a fresh descriptor nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: stat is plain data filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(file.as_raw_fd(), &mut st) })?;
    let kind = FileKind::from_mode(st.st_mode);
    if kind != FileKind::Regular {
        return Err(FormatError::NotARegularFile(kind));
    }
    // Reads of a regular file never block anyway; clear the flag so the descriptor is plain.
    // SAFETY: fcntl on a descriptor we own.
    let flags = check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) })?;
    check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!(
                "memtrail-format-output-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn dropped_unpublished_leaves_nothing_and_keeps_the_old_file() {
        let dir = Dir::new("drop");
        let path = dir.0.join("out.trace");
        std::fs::write(&path, b"previous").unwrap();
        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"half of something").unwrap();
        assert_eq!(dir.names().len(), 2, "{:?}", dir.names());
        drop(out);
        assert_eq!(dir.names(), ["out.trace"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"previous");
    }

    #[test]
    fn a_new_file_has_mode_0600_and_a_new_inode() {
        let dir = Dir::new("mode");
        let path = dir.0.join("out.trace");
        std::fs::write(&path, b"previous").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let old = std::fs::metadata(&path).unwrap();
        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"new").unwrap();
        out.commit().unwrap();
        let new = std::fs::metadata(&path).unwrap();
        assert_eq!(new.permissions().mode() & 0o7777, 0o600);
        assert_ne!(new.ino(), old.ino());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(dir.names(), ["out.trace"]);
    }

    #[test]
    fn a_symlink_is_replaced_not_followed_and_a_hard_link_not_written_through() {
        let dir = Dir::new("links");
        let victim = dir.0.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.0.join("link.svg");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let dangling = dir.0.join("dangling.svg");
        std::os::unix::fs::symlink(dir.0.join("created-by-nobody"), &dangling).unwrap();
        let hard = dir.0.join("hard.svg");
        std::fs::hard_link(&victim, &hard).unwrap();

        for path in [&link, &dangling, &hard] {
            let mut out = OutputFile::create(path).unwrap();
            out.write_all(b"output").unwrap();
            out.commit().unwrap();
            let meta = std::fs::symlink_metadata(path).unwrap();
            assert!(meta.file_type().is_file(), "{}", path.display());
            assert_eq!(std::fs::read(path).unwrap(), b"output");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!dir.0.join("created-by-nobody").exists());
    }

    #[test]
    fn a_trace_appears_at_its_name_when_published() {
        use crate::{Record, TraceMeta, TraceReader, TraceWriter};
        let dir = Dir::new("writer");
        let path = dir.0.join("t.trace");
        std::fs::write(&path, b"previous").unwrap();
        let mut w = TraceWriter::create(&path, &TraceMeta::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"previous");
        w.publish().unwrap();
        // Published: the metadata frame is there, readable while the writer goes on.
        let records: Vec<Record> = TraceReader::open(&path)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(matches!(records.as_slice(), [Record::Meta(_)]));
        w.write(&Record::End {
            time: 1,
            totals: Default::default(),
        })
        .unwrap();
        w.finish_sync().unwrap();
        assert_eq!(TraceReader::open(&path).unwrap().count(), 2);
        assert_eq!(dir.names(), ["t.trace"]);

        // Never published: the previous trace stays, no temporary file is left.
        let before = std::fs::read(&path).unwrap();
        let w = TraceWriter::create(&path, &TraceMeta::default()).unwrap();
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(dir.names(), ["t.trace"]);
    }

    #[test]
    fn existing_tells_traces_from_other_files() {
        let dir = Dir::new("existing");
        let path = dir.0.join("x");
        let out = OutputFile::create(&path).unwrap();
        assert_eq!(out.existing().unwrap(), None);

        std::fs::write(&path, b"not a trace at all").unwrap();
        let e = out.existing().unwrap().unwrap();
        assert_eq!((e.kind, e.is_trace), (FileKind::Regular, false));

        let mut trace = MAGIC.to_vec();
        trace.extend_from_slice(&[0; 12]);
        std::fs::write(&path, &trace).unwrap();
        let e = out.existing().unwrap().unwrap();
        assert_eq!((e.kind, e.is_trace), (FileKind::Regular, true));
        assert_eq!(e.ino, std::fs::metadata(&path).unwrap().ino());

        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        let e = out.existing().unwrap().unwrap();
        assert_eq!(e.kind, FileKind::Symlink);
        assert_eq!(e.link_target, Some(FileKind::Regular));
        assert!(!e.is_trace);

        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.0.join("nothing"), &path).unwrap();
        assert_eq!(out.existing().unwrap().unwrap().link_target, None);

        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(out.existing().unwrap().unwrap().kind, FileKind::Directory);
        drop(out);
        assert_eq!(dir.names(), ["x"]);
    }

    #[test]
    fn a_fifo_at_the_final_name_does_not_block_the_check() {
        let dir = Dir::new("fifo-out");
        let path = dir.0.join("x");
        let c = cstring(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        let out = OutputFile::create(&path).unwrap();
        assert_eq!(out.existing().unwrap().unwrap().kind, FileKind::Fifo);
    }

    #[test]
    fn a_directory_cannot_be_replaced() {
        let dir = Dir::new("dir-out");
        let path = dir.0.join("x");
        std::fs::create_dir(&path).unwrap();
        let out = OutputFile::create(&path).unwrap();
        assert!(out.commit().is_err());
        assert!(path.is_dir());
        assert_eq!(dir.names(), ["x"]);
    }

    #[test]
    fn output_paths_that_name_no_file_are_refused() {
        assert!(OutputFile::create("/").is_err());
        assert!(OutputFile::create("/nonexistent-memtrail-dir/out.trace").is_err());
    }

    #[test]
    fn inputs_must_be_regular_files() {
        let dir = Dir::new("inputs");
        let fifo = dir.0.join("fifo");
        let c = cstring(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        // No writer: a blocking open would never return.
        assert!(matches!(
            open_input(&fifo),
            Err(FormatError::NotARegularFile(FileKind::Fifo))
        ));
        assert!(matches!(
            open_input(&dir.0),
            Err(FormatError::NotARegularFile(FileKind::Directory))
        ));
        assert!(matches!(
            open_input("/dev/null"),
            Err(FormatError::NotARegularFile(FileKind::CharDevice))
        ));
        let file = dir.0.join("file");
        std::fs::write(&file, b"data").unwrap();
        let mut text = String::new();
        open_input(&file)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "data");
        // SAFETY: F_GETFL on a descriptor the File owns.
        let flags = unsafe { libc::fcntl(open_input(&file).unwrap().as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
    }
}
