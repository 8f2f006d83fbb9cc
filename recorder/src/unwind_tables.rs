//! Compact unwind tables for the eBPF unwinder, derived from a module's DWARF CFI.
//!
//! Owns: reading `.eh_frame` (or, failing that, `.debug_frame`) of an x86-64 ELF file with
//! gimli and flattening every FDE's rows into sorted [`memtrail_ebpf_abi::UnwindRow`]s (CFA = rsp+n, rbp+n, the
//! PLT expression, end of stack; where rbp was saved), plus the file's load segments so a
//! mapping's bias can be computed. Must not: touch BPF maps or processes (see
//! `unwind_loader`).
//!
//! Anything the eBPF side cannot evaluate (other CFA registers or expressions, a return
//! address not at CFA-8) becomes a [`abi::CFA_UNKNOWN`] row: the walk stops there and the
//! stack is marked truncated, never guessed. Code no FDE covers gets the frame-pointer rule.

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, DebugFrame, EhFrame, LittleEndian, RegisterRule,
    UnwindContext, UnwindSection, X86_64,
};
use memtrail_ebpf_abi as abi;
use object::{Object, ObjectSection, ObjectSegment};

#[derive(Debug, thiserror::Error)]
pub enum UnwindTableError {
    #[error("not a readable ELF file: {0}")]
    Parse(#[from] object::Error),
    #[error("not an x86-64 ELF file")]
    Architecture,
    #[error("code address {0:#x} does not fit the 32-bit table format")]
    AddressTooHigh(u64),
}

/// A module's unwind table and what is needed to place it in a process.
#[derive(Debug, Clone, Default)]
pub struct ModuleUnwindTable {
    /// Sorted by `pc`; empty when the file has no CFI (frame pointers are then followed).
    pub rows: Vec<abi::UnwindRow>,
    /// Executable PT_LOAD segments: (file offset, file size, virtual address).
    pub segments: Vec<(u64, u64, u64)>,
}

/// Page size used to find the segment a mapping comes from (x86-64).
const PAGE_SIZE: u64 = 4096;

/// Process address minus module address for an executable mapping of `file_offset` at
/// `start`, given the module's executable segments (file offset, file size, address), or None
/// when none holds that offset. The mapping starts at the segment's offset rounded down to a
/// page, so `file_offset` may lie before it.
pub fn mapping_bias(segments: &[(u64, u64, u64)], start: u64, file_offset: u64) -> Option<u64> {
    segments
        .iter()
        .find(|&&(offset, size, _)| {
            offset & !(PAGE_SIZE - 1) <= file_offset && file_offset < offset + size
        })
        .map(|&(offset, _, vaddr)| {
            // Same distance between file offset and address all through the segment.
            let module_address = vaddr.wrapping_sub(offset).wrapping_add(file_offset);
            start.wrapping_sub(module_address)
        })
}

/// DW_OP bytes of the CFA expression GNU ld and lld give PLT entries (`.plt`): CFA = rsp + 8,
/// plus 8 once rip & 15 reaches the threshold (the `lit` before `ge`, 10 or 11).
fn plt_threshold(expression: &[u8]) -> Option<i16> {
    // breg7 8, breg16 0, lit15, and, litN, ge, lit3, shl, plus
    match expression {
        [
            0x77,
            0x08,
            0x80,
            0x00,
            0x3f,
            0x1a,
            lit,
            0x2a,
            0x33,
            0x24,
            0x22,
        ] if (0x30..=0x4f).contains(lit) => Some(i16::from(*lit - 0x30)),
        _ => None,
    }
}

/// Code no FDE covers (hand-written assembly, objects built without unwind tables): the
/// frame-pointer rule, as `--unwind fp` would walk it.
const NO_CFI_ROW: abi::UnwindRow = abi::UnwindRow {
    pc: 0,
    cfa_offset: 16,
    rbp_offset: -16,
    cfa_kind: abi::CFA_FRAME_POINTER,
    rbp_kind: abi::RBP_AT_CFA,
};

const UNKNOWN_ROW: abi::UnwindRow = abi::UnwindRow {
    pc: 0,
    cfa_offset: 0,
    rbp_offset: 0,
    cfa_kind: abi::CFA_UNKNOWN,
    rbp_kind: abi::RBP_UNKNOWN,
};

/// Converts one gimli row into the compact form (pc filled in by the caller).
fn compact_row<R: gimli::Reader, S: UnwindSection<R>>(
    row: &gimli::UnwindTableRow<R::Offset>,
    section: &S,
) -> abi::UnwindRow {
    let mut compact = UNKNOWN_ROW;
    match row.register(X86_64::RA) {
        Some(RegisterRule::Offset(-8)) => {}
        Some(RegisterRule::Undefined) => {
            compact.cfa_kind = abi::CFA_END;
            return compact;
        }
        _ => return compact,
    }
    match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let Ok(offset) = i32::try_from(*offset) else {
                return compact;
            };
            compact.cfa_offset = offset;
            compact.cfa_kind = match *register {
                X86_64::RSP => abi::CFA_RSP,
                X86_64::RBP => abi::CFA_RBP,
                _ => return UNKNOWN_ROW,
            };
        }
        CfaRule::Expression(expression) => {
            let Ok(expression) = expression.get(section) else {
                return compact;
            };
            let Ok(bytes) = expression.0.to_slice() else {
                return compact;
            };
            let Some(threshold) = plt_threshold(&bytes) else {
                return compact;
            };
            compact.cfa_kind = abi::CFA_PLT;
            compact.cfa_offset = 8;
            // For CFA_PLT, rbp_offset carries the threshold; rbp is unchanged in a PLT entry.
            compact.rbp_offset = threshold;
            compact.rbp_kind = abi::RBP_SAME;
            return compact;
        }
    }
    (compact.rbp_kind, compact.rbp_offset) = match rbp_rule(row.register(X86_64::RBP)) {
        Some(rule) => rule,
        None => (abi::RBP_UNKNOWN, 0),
    };
    compact
}

fn rbp_rule<T: gimli::ReaderOffset>(rule: Option<RegisterRule<T>>) -> Option<(u8, i16)> {
    match rule {
        None | Some(RegisterRule::SameValue) => Some((abi::RBP_SAME, 0)),
        Some(RegisterRule::Offset(offset)) => Some((abi::RBP_AT_CFA, i16::try_from(offset).ok()?)),
        Some(_) => None,
    }
}

/// (start, end, row) of every CFI row of one section, in FDE order.
fn section_rows<R, S>(
    section: &S,
    bases: &BaseAddresses,
) -> Result<Vec<(u64, u64, abi::UnwindRow)>, UnwindTableError>
where
    R: gimli::Reader,
    S: UnwindSection<R>,
{
    let mut rows = Vec::new();
    let mut context = Box::new(UnwindContext::new());
    let mut entries = section.entries(bases);
    // A malformed entry ends the walk over the section: the rows read so far stay.
    while let Ok(Some(entry)) = entries.next() {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let Ok(fde) = partial.parse(S::cie_from_offset) else {
            continue;
        };
        let Ok(mut table) = fde.rows(section, bases, &mut context) else {
            continue;
        };
        while let Ok(Some(row)) = table.next_row() {
            if row.start_address() >= row.end_address() {
                continue;
            }
            rows.push((
                row.start_address(),
                row.end_address(),
                compact_row(row, section),
            ));
        }
    }
    Ok(rows)
}

/// Sorts rows by address, gives the gaps between FDEs and the end the frame-pointer rule, and
/// drops rows that repeat the previous one's rules.
fn flatten(
    mut rows: Vec<(u64, u64, abi::UnwindRow)>,
) -> Result<Vec<abi::UnwindRow>, UnwindTableError> {
    rows.sort_by_key(|r| r.0);
    let mut flat: Vec<abi::UnwindRow> = Vec::with_capacity(rows.len());
    let mut covered_until = 0u64;
    let same_rules = |a: &abi::UnwindRow, b: &abi::UnwindRow| {
        (a.cfa_offset, a.rbp_offset, a.cfa_kind, a.rbp_kind)
            == (b.cfa_offset, b.rbp_offset, b.cfa_kind, b.rbp_kind)
    };
    let push = |flat: &mut Vec<abi::UnwindRow>, pc: u64, row: abi::UnwindRow| {
        let pc = u32::try_from(pc).map_err(|_| UnwindTableError::AddressTooHigh(pc))?;
        match flat.last_mut() {
            Some(last) if same_rules(last, &row) => {}
            Some(last) if last.pc == pc => *last = abi::UnwindRow { pc, ..row },
            _ => flat.push(abi::UnwindRow { pc, ..row }),
        }
        Ok::<(), UnwindTableError>(())
    };
    for (start, end, row) in rows {
        if start < covered_until {
            continue; // overlapping FDEs: the first one wins
        }
        if !flat.is_empty() && start > covered_until {
            push(&mut flat, covered_until, NO_CFI_ROW)?;
        }
        push(&mut flat, start, row)?;
        covered_until = end;
    }
    if !flat.is_empty() {
        push(&mut flat, covered_until, NO_CFI_ROW)?;
    }
    Ok(flat)
}

/// Builds the unwind table of an ELF file's bytes.
pub fn build_unwind_table(data: &[u8]) -> Result<ModuleUnwindTable, UnwindTableError> {
    let file = object::File::parse(data)?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(UnwindTableError::Architecture);
    }
    let segments = file
        .segments()
        .filter(|segment| match segment.flags() {
            object::SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
            _ => false,
        })
        .map(|segment| {
            let (offset, size) = segment.file_range();
            (offset, size, segment.address())
        })
        .collect();
    let section_data = |name: &str| {
        file.section_by_name(name)
            .and_then(|section| Some((section.address(), section.data().ok()?)))
    };
    let mut bases = BaseAddresses::default();
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    if let Some(got) = file.section_by_name(".got") {
        bases = bases.set_got(got.address());
    }
    if let Some((address, bytes)) = section_data(".eh_frame").filter(|(_, b)| !b.is_empty()) {
        let bases = bases.clone().set_eh_frame(address);
        let mut eh_frame = EhFrame::new(bytes, LittleEndian);
        eh_frame.set_address_size(8);
        let rows = flatten(section_rows(&eh_frame, &bases)?)?;
        if !rows.is_empty() {
            return Ok(ModuleUnwindTable { rows, segments });
        }
    }
    if let Some((_, bytes)) = section_data(".debug_frame").filter(|(_, b)| !b.is_empty()) {
        let mut debug_frame = DebugFrame::new(bytes, LittleEndian);
        debug_frame.set_address_size(8);
        let rows = flatten(section_rows(&debug_frame, &bases)?)?;
        if !rows.is_empty() {
            return Ok(ModuleUnwindTable { rows, segments });
        }
    }
    Ok(ModuleUnwindTable {
        rows: Vec::new(),
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_the_plt_expression() {
        let lit11 = [
            0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22,
        ];
        assert_eq!(plt_threshold(&lit11), Some(11));
        let mut other = lit11;
        other[1] = 0x10;
        assert_eq!(plt_threshold(&other), None);
    }

    #[test]
    fn flatten_sorts_fills_gaps_and_merges() {
        let rsp = |offset| abi::UnwindRow {
            pc: 0,
            cfa_offset: offset,
            rbp_offset: 0,
            cfa_kind: abi::CFA_RSP,
            rbp_kind: abi::RBP_SAME,
        };
        let rows = vec![
            (0x200, 0x210, rsp(8)),
            (0x100, 0x104, rsp(8)),
            (0x104, 0x110, rsp(16)),
            (0x110, 0x120, rsp(16)),
        ];
        let flat = flatten(rows).expect("small addresses");
        let summary: Vec<(u32, u8, i32)> = flat
            .iter()
            .map(|r| (r.pc, r.cfa_kind, r.cfa_offset))
            .collect();
        assert_eq!(
            summary,
            [
                (0x100, abi::CFA_RSP, 8),
                (0x104, abi::CFA_RSP, 16),
                (0x120, abi::CFA_FRAME_POINTER, 16),
                (0x200, abi::CFA_RSP, 8),
                (0x210, abi::CFA_FRAME_POINTER, 16),
            ]
        );
    }

    #[test]
    fn bias_uses_the_executable_segment_when_offsets_and_addresses_differ() {
        // As GNU ld lays out a Rust release binary: text at file 0x15430, address 0x16430,
        // mapped from the page at file offset 0x15000.
        let segments = [(0x15430, 0x40fd0, 0x16430)];
        let start = 0x5555_5556_a000;
        let bias = mapping_bias(&segments, start, 0x15000).expect("in the segment");
        assert_eq!(start.wrapping_sub(bias), 0x16000);
        assert_eq!(mapping_bias(&segments, start, 0x80000), None);
    }

    #[test]
    fn libc_has_a_table_with_an_end_of_stack_row() {
        let Ok(data) = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6") else {
            return; // not a Debian-layout x86-64 system
        };
        let table = build_unwind_table(&data).expect("libc parses");
        assert!(table.rows.len() > 1000, "{} rows", table.rows.len());
        assert!(table.rows.windows(2).all(|w| w[0].pc < w[1].pc));
        assert!(table.rows.iter().any(|r| r.cfa_kind == abi::CFA_END));
        assert!(table.rows.iter().any(|r| r.cfa_kind == abi::CFA_RSP));
    }
}
