//! The numbers of the hot columns: bincode 2 varints (`config::standard()`: one byte below
//! 251, then 251, 252, 253 followed by a little-endian u16, u32, u64) and zigzag for signed
//! deltas, written and read without going through bincode's `Write`/`Reader` traits.
//! Byte-for-byte what bincode itself writes, which the bodies column still goes through.

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` as a bincode varint (`config::standard()`), byte for byte what `put!` writes,
/// without going through `std::io::Write`: the hot columns take one per event field.
#[inline(always)]
pub(super) fn push_varint(column: &mut Vec<u8>, v: u64) {
    if v < 251 {
        column.push(v as u8);
    } else if v <= u64::from(u16::MAX) {
        column.push(251);
        column.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        column.push(252);
        column.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        column.push(253);
        column.extend_from_slice(&v.to_le_bytes());
    }
}

/// Decodes one bincode varint (`config::standard()`) at `*pos` of a column and advances past
/// it: the hot path of every event field, written out so it inlines. Byte `b < 251` is the
/// value; 251, 252 and 253 are followed by a little-endian u16, u32 and u64.
#[inline(always)]
pub(super) fn take_varint(column: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    if let Some(&b) = column.get(*pos) {
        if b < 251 {
            *pos += 1;
            return Ok(u64::from(b));
        }
        if b == 251
            && let Some(&[b0, b1]) = column.get(*pos + 1..*pos + 3)
        {
            *pos += 3;
            return Ok(u64::from(u16::from_le_bytes([b0, b1])));
        }
    }
    take_long_varint(column, pos)
}

/// The rarer varints: 32 and 64 bits, and the errors.
#[inline(never)]
fn take_long_varint(column: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    const SHORT: &str = "its column ends too early";
    let rest = column.get(*pos..).unwrap_or(&[]);
    let (v, used) = match *rest {
        [252, ref x @ ..] => match x.first_chunk::<4>() {
            Some(&b) => (u64::from(u32::from_le_bytes(b)), 5),
            None => return Err(SHORT),
        },
        [253, ref x @ ..] => match x.first_chunk::<8>() {
            Some(&b) => (u64::from_le_bytes(b), 9),
            None => return Err(SHORT),
        },
        // A 251 without its two bytes; 254 (u128) and 255 never encode a value that fits the
        // hot columns' u64.
        [251, ..] => return Err(SHORT),
        [_, ..] => return Err("varint does not fit 64 bits"),
        [] => return Err(SHORT),
    };
    *pos += used;
    Ok(v)
}
