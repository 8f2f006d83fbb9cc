//! The container: the file header and the self-delimiting, checksummed frames that follow it.
//!
//! This layer knows nothing about records; it moves opaque payloads. See SPEC.md, "File
//! header" and "Frames".

use std::io::Read;

use crate::error::{FormatError, Truncation};
use crate::wire::MAX_RAW_PAYLOAD;

/// The first 8 bytes of every trace. The high byte and the CR/LF catch files mangled by text
/// transfers, as PNG's magic does.
pub const MAGIC: [u8; 8] = *b"\x89MTRACE\n";
/// The format version this crate writes. Readers accept any minor of the same major.
pub const FORMAT_MAJOR: u16 = 1;
/// 1.1 added the process records (SPEC.md 3.4, 4.5).
pub const FORMAT_MINOR: u16 = 1;
/// The oldest memtrail release that reads what this crate writes: 0.2.0, the first to know the
/// process records of format 1.1.
pub const READER_VERSION: [u16; 3] = [0, 2, 0];
pub const FILE_HEADER_LEN: usize = 20;

pub const FRAME_HEADER_LEN: usize = 20;
/// Frame kind 1: a payload of records, compressed with raw DEFLATE (RFC 1951).
pub const FRAME_RECORDS_DEFLATE: u8 = 1;
/// Largest stored (compressed) payload a reader accepts. DEFLATE can expand incompressible data
/// by a few bytes per 64 KiB block, hence the slack.
pub const MAX_STORED_PAYLOAD: usize = MAX_RAW_PAYLOAD + (1 << 16);

/// The fixed header at the start of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub major: u16,
    pub minor: u16,
    /// The oldest memtrail version (major, minor, patch) that reads this file.
    pub reader_version: [u16; 3],
}

impl FileHeader {
    pub fn current() -> FileHeader {
        FileHeader {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
            reader_version: READER_VERSION,
        }
    }

    pub fn to_bytes(self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        for (i, v) in self.reader_version.iter().enumerate() {
            b[12 + 2 * i..14 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        // bytes 18..20 are reserved, zero
        b
    }

    /// Parses and checks a header: the magic, and a major version this crate reads.
    pub fn parse(b: &[u8; FILE_HEADER_LEN]) -> Result<FileHeader, FormatError> {
        if b[..8] != MAGIC {
            return Err(FormatError::NotATrace);
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let header = FileHeader {
            major: u16_at(8),
            minor: u16_at(10),
            reader_version: [u16_at(12), u16_at(14), u16_at(16)],
        };
        if header.major > FORMAT_MAJOR {
            let [a, b, c] = header.reader_version;
            return Err(FormatError::NewerVersion {
                major: header.major,
                minor: header.minor,
                reads: FORMAT_MAJOR,
                needs: format!("{a}.{b}.{c}"),
            });
        }
        if header.major == 0 {
            return Err(FormatError::corrupt(
                8,
                "format major version 0 does not exist",
            ));
        }
        Ok(header)
    }
}

/// The fixed header in front of each frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub flags: u8,
    /// Bytes of payload stored after the header.
    pub stored_len: u32,
    /// Bytes the payload decompresses to.
    pub raw_len: u32,
    /// CRC-32 (IEEE) of the stored payload.
    pub payload_crc: u32,
}

impl FrameHeader {
    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0] = self.kind;
        b[1] = self.flags;
        // 2..4 reserved
        b[4..8].copy_from_slice(&self.stored_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&b[..16]);
        b[16..20].copy_from_slice(&header_crc.to_le_bytes());
        b
    }

    /// Parses a frame header found at `offset`, checking its own CRC and its lengths.
    pub fn parse(b: &[u8; FRAME_HEADER_LEN], offset: u64) -> Result<FrameHeader, FormatError> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if crc32fast::hash(&b[..16]) != u32_at(16) {
            return Err(FormatError::corrupt(
                offset,
                "frame header checksum mismatch",
            ));
        }
        let header = FrameHeader {
            kind: b[0],
            flags: b[1],
            stored_len: u32_at(4),
            raw_len: u32_at(8),
            payload_crc: u32_at(12),
        };
        if header.stored_len as usize > MAX_STORED_PAYLOAD {
            return Err(FormatError::corrupt(
                offset,
                format!(
                    "frame claims {} stored bytes, more than the {} byte limit",
                    header.stored_len, MAX_STORED_PAYLOAD
                ),
            ));
        }
        if header.raw_len as usize > MAX_RAW_PAYLOAD {
            return Err(FormatError::corrupt(
                offset,
                format!(
                    "frame claims {} uncompressed bytes, more than the {} byte limit",
                    header.raw_len, MAX_RAW_PAYLOAD
                ),
            ));
        }
        Ok(header)
    }
}

/// One frame as stored: its header, its file offset and its still-compressed payload.
/// Frames are independent, so a caller may decode many of them on different threads.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub offset: u64,
    pub header: FrameHeader,
    pub payload: Vec<u8>,
}

/// Reads `buf.len()` bytes unless the stream ends first; returns how many were read.
fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads the header of a trace from the start of a stream.
pub fn read_file_header<R: Read>(r: &mut R) -> Result<FileHeader, FormatError> {
    let mut b = [0u8; FILE_HEADER_LEN];
    let n = read_up_to(r, &mut b)?;
    if n < FILE_HEADER_LEN {
        if n >= 8 && b[..8] != MAGIC || n < 8 && b[..n] != MAGIC[..n] {
            return Err(FormatError::NotATrace);
        }
        return Err(FormatError::TooShort {
            len: n as u64,
            header: FILE_HEADER_LEN as u64,
        });
    }
    FileHeader::parse(&b)
}

/// Iterates over the frames of a stream, after its file header, checking each one's checksums
/// but not decompressing it. Frames of unknown kinds are skipped. A stream that ends inside a
/// frame ends the iteration and leaves a [`Truncation`] in [`FrameReader::truncation`].
pub struct FrameReader<R> {
    inner: R,
    offset: u64,
    truncation: Option<Truncation>,
    done: bool,
    skipped_unknown: u64,
}

impl<R: Read> FrameReader<R> {
    /// `inner` must be positioned just after the file header.
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            offset: FILE_HEADER_LEN as u64,
            truncation: None,
            done: false,
            skipped_unknown: 0,
        }
    }

    /// Set when the stream ended inside a frame. Its `records_read`/`events_read` are zero
    /// here: this layer does not count records.
    pub fn truncation(&self) -> Option<&Truncation> {
        self.truncation.as_ref()
    }

    /// Frames skipped because their kind is newer than this reader.
    pub fn skipped_unknown_frames(&self) -> u64 {
        self.skipped_unknown
    }

    /// The offset of the next frame (the file length, once the iteration is over).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn truncated(&mut self, reason: String) {
        self.truncation = Some(Truncation {
            offset: self.offset,
            reason,
            records_read: 0,
            events_read: 0,
        });
        self.done = true;
    }

    fn next_frame(&mut self) -> Result<Option<RawFrame>, FormatError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let mut hb = [0u8; FRAME_HEADER_LEN];
            let n = read_up_to(&mut self.inner, &mut hb)?;
            if n == 0 {
                self.done = true;
                return Ok(None);
            }
            if n < FRAME_HEADER_LEN {
                self.truncated(format!(
                    "the file ends {n} bytes into a {FRAME_HEADER_LEN} byte frame header"
                ));
                return Ok(None);
            }
            let header = FrameHeader::parse(&hb, self.offset).inspect_err(|_| self.done = true)?;
            // Read into reserved room rather than a zeroed buffer (the zeroing is wasted work);
            // the length is already checked against `MAX_STORED_PAYLOAD`.
            let stored_len = header.stored_len as usize;
            let mut payload = Vec::with_capacity(stored_len);
            let got = (&mut self.inner)
                .take(stored_len as u64)
                .read_to_end(&mut payload)?;
            if got < stored_len {
                self.truncated(format!(
                    "the file ends {got} bytes into a frame payload of {stored_len} bytes"
                ));
                return Ok(None);
            }
            if crc32fast::hash(&payload) != header.payload_crc {
                self.done = true;
                return Err(FormatError::corrupt(
                    self.offset,
                    "frame payload checksum mismatch",
                ));
            }
            let offset = self.offset;
            self.offset += (FRAME_HEADER_LEN + payload.len()) as u64;
            if header.kind != FRAME_RECORDS_DEFLATE {
                self.skipped_unknown += 1;
                continue;
            }
            return Ok(Some(RawFrame {
                offset,
                header,
                payload,
            }));
        }
    }
}

impl<R: Read> Iterator for FrameReader<R> {
    type Item = Result<RawFrame, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// The zlib header fdeflate expects in front of a stream: deflate, 32 KiB window, no preset
/// dictionary (RFC 1950; 0x7801 is a multiple of 31, as the header check wants).
const ZLIB_HEADER: [u8; 2] = [0x78, 0x01];

/// Decompresses a frame's payload into `out` (its old contents replaced), checking that it has
/// exactly the length the header promised.
///
/// The reader inflates with fdeflate, the writer deflates with flate2: fdeflate decodes up to
/// two literals per table lookup, which suits these literal-heavy payloads (zlib-rs took 9-23%
/// more time here, see bench/README.md, "Trace format size and speed"). It reads zlib streams only, so the raw
/// stream is given a zlib header in front and four bytes of checksum behind, which it is told
/// to ignore (the frame's CRC-32 already covers the stored bytes).
pub fn inflate_frame(frame: &RawFrame, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let raw_len = frame.header.raw_len as usize;
    let bad = |what: String| FormatError::corrupt(frame.offset, what);
    // `FrameHeader::parse` refuses such lengths; a frame built by hand may still claim one.
    if raw_len > MAX_RAW_PAYLOAD {
        return Err(bad(format!(
            "frame claims {raw_len} uncompressed bytes, more than the {MAX_RAW_PAYLOAD} byte limit"
        )));
    }
    // One byte of room past the promised length, so that a longer stream is noticed rather
    // than silently cut. `resize` zeroes only what grows past the previous frame's length:
    // the inflater overwrites the rest.
    out.resize(raw_len + 1, 0);
    let mut inflater = fdeflate::Decompressor::new();
    inflater.ignore_adler32();
    let mut written = 0;
    let inputs: [(&[u8], bool); 3] = [
        (&ZLIB_HEADER, false),
        (&frame.payload, false),
        (&[0; 4], true),
    ];
    'inputs: for (mut input, last) in inputs {
        loop {
            let (used, n) = inflater
                .read(input, out, written, last)
                .map_err(|e| bad(format!("frame payload does not inflate: {e:?}")))?;
            written += n;
            input = input.get(used..).unwrap_or_default();
            if inflater.is_done() || written == out.len() {
                break 'inputs;
            }
            if input.is_empty() || (used, n) == (0, 0) {
                break;
            }
        }
    }
    if !inflater.is_done() || written != raw_len {
        return Err(bad(format!(
            "frame payload inflates to {}{written} bytes, not the {raw_len} its header says",
            if inflater.is_done() { "" } else { "at least " },
        )));
    }
    out.truncate(raw_len);
    Ok(())
}
