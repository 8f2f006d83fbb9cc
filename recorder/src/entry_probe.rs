//! Where to put a probe in an allocator function: on an instruction the kernel emulates.
//!
//! Owns: decoding a function's entry block (x86-64, with iced-x86), knowing which
//! instructions the kernel's uprobes emulate, and choosing the offset of an entry-only probe
//! (free-like functions). Must not: read files or attach anything (callers hand it the
//! function's bytes), or guess: an offset other than 0 is chosen only where every call with a
//! non-NULL pointer passes exactly once with its argument registers unchanged.
//!
//! A uprobe on an instruction the kernel cannot emulate traps, then single-steps a copy of the
//! instruction: about 15x the cost of an emulated one on the machines measured (bench/README).
//! Linux 6.18 (arch/x86/kernel/uprobes.c, `branch_setup_xol_ops` and `push_setup_xol_ops`)
//! emulates: `push` of a 64-bit register (`50+r`, or `41 50+r` for r8-r15), `jmp rel8/rel32`,
//! `call rel32`, conditional jumps (`jcc rel8/rel32`, no 0x66 prefix), and NOPs (`90`,
//! `0f 1f /0`). Everything else (`test`, `mov`, `cmp`, `sub`, `endbr64`, ...) single-steps.
//!
//! Functions with a return probe must be probed at +0 (the return probe replaces the return
//! address on top of the stack, which is only there at the first instruction): for those the
//! decoder only says whether +0 is emulated. Entry-only probes (free, sdallocx, operator
//! delete, munmap) move to the first emulated instruction of the entry block, read in order:
//! every call passes through it until the first branch. One exception: `test %rdi,%rdi; je`
//! (the NULL check) is followed into its fall-through, reached by every non-NULL pointer, so a
//! probe there costs nothing for free(NULL).

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess,
    OpKind, Register,
};

/// Bytes of a function decoded at most (entry blocks are short; whole functions are decoded
/// only to find branches back into the entry block).
pub const DECODE_LIMIT: usize = 4096;

/// Where a probe goes in a function, and what it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePoint {
    /// Offset from the function's first byte.
    pub offset: u64,
    /// The kernel emulates the instruction there (else every call single-steps it).
    pub emulated: bool,
    /// Why this offset (for the trace's metadata and messages).
    pub reason: &'static str,
    /// The instruction at the probe, as text (`test rdi,rdi`), for messages.
    pub instruction: String,
}

/// The argument registers an entry-only program reads: they must hold the arguments still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadsArguments {
    /// Only the first (`rdi`): free, sdallocx, dallocx, operator delete.
    First,
    /// The first two (`rdi`, `rsi`): munmap.
    FirstTwo,
}

/// Whether Linux 6.18's uprobes emulate `instruction` (see the module doc).
pub fn is_emulated(instruction: &Instruction, bytes: &[u8]) -> bool {
    match instruction.code() {
        // push r64: one byte, or 41 (REX.B) + one byte; the kernel takes no other prefix.
        Code::Push_r64 => bytes.len() == 1 || (bytes.len() == 2 && bytes[0] == 0x41),
        Code::Call_rel32_64 | Code::Jmp_rel8_64 | Code::Jmp_rel32_64 => !bytes.contains(&0x66),
        Code::Nopd | Code::Nopq | Code::Nop_rm16 | Code::Nop_rm32 | Code::Nop_rm64 => {
            // 41 90 is `xchg r8d,eax`, which iced does not call a nop; 90 with REX.W is.
            true
        }
        _ => {
            instruction.is_jcc_short_or_near()
                && instruction.op0_kind() == OpKind::NearBranch64
                && bytes.first() != Some(&0x66)
        }
    }
}

/// The probe point of a function with a return probe: always +0; says whether it traps.
pub fn return_probe_point(code: &[u8]) -> ProbePoint {
    match decode(code).first() {
        Some((instruction, bytes)) => ProbePoint {
            offset: 0,
            emulated: is_emulated(instruction, bytes),
            reason: "function entry (a return probe needs it)",
            instruction: describe(instruction, bytes),
        },
        None => ProbePoint {
            offset: 0,
            emulated: false,
            reason: "function entry (not decodable)",
            instruction: String::new(),
        },
    }
}

/// True when the function starts with an unconditional jump elsewhere (after an optional
/// `endbr64`): a wrapper that tail-calls another function, such as jemalloc's
/// `operator delete(void*)` (`jmp free@plt`). Probing it as well as its target would report
/// every call twice.
pub fn is_tail_call_wrapper(code: &[u8]) -> bool {
    decode(code)
        .iter()
        .find(|(instruction, _)| instruction.code() != Code::Endbr64)
        .is_some_and(|(instruction, _)| {
            matches!(instruction.code(), Code::Jmp_rel8_64 | Code::Jmp_rel32_64)
        })
}

/// Where to put an entry-only probe in a function whose code is `code` (at least its entry
/// block; the whole function, up to [`DECODE_LIMIT`], to rule out branches back into the
/// entry block).
pub fn entry_probe_point(code: &[u8], reads: ReadsArguments) -> ProbePoint {
    let instructions = decode(code);
    let entry = |reason| ProbePoint {
        offset: 0,
        emulated: instructions
            .first()
            .is_some_and(|(instruction, bytes)| is_emulated(instruction, bytes)),
        reason,
        instruction: instructions
            .first()
            .map(|(instruction, bytes)| describe(instruction, bytes))
            .unwrap_or_default(),
    };
    let Some(chosen) = walk_entry_block(&instructions, reads) else {
        return entry("function entry: no emulated instruction in the entry block");
    };
    if chosen.offset == 0 {
        return chosen;
    }
    // A branch from elsewhere in the function landing at or before the chosen instruction
    // would pass the probe again, or skip it: keep the entry then.
    let lands_in_block = instructions.iter().any(|(instruction, _)| {
        instruction.flow_control() != FlowControl::Next
            && matches!(
                instruction.op0_kind(),
                OpKind::NearBranch64 | OpKind::NearBranch32
            )
            && (1..=chosen.offset).contains(&instruction.near_branch_target())
    });
    if lands_in_block {
        return entry("function entry: a branch lands in its entry block");
    }
    chosen
}

/// The first emulated instruction every call (with a non-NULL first argument) reaches with its
/// argument registers intact, following the entry block from the top.
fn walk_entry_block(
    instructions: &[(Instruction, &[u8])],
    reads: ReadsArguments,
) -> Option<ProbePoint> {
    let mut factory = InstructionInfoFactory::new();
    // The NULL check's branch, taken only by a NULL pointer: a fallback probe point (it
    // sees every call) while its fall-through is searched for a better one.
    let mut null_check_branch: Option<ProbePoint> = None;
    let mut previous_tests_first_argument = false;
    for (instruction, bytes) in instructions {
        let offset = instruction.ip();
        if is_emulated(instruction, bytes) {
            let point = ProbePoint {
                offset,
                emulated: true,
                reason: "",
                instruction: describe(instruction, bytes),
            };
            let is_null_check = previous_tests_first_argument
                && matches!(instruction.code(), Code::Je_rel8_64 | Code::Je_rel32_64)
                && null_check_branch.is_none();
            if is_null_check {
                null_check_branch = Some(ProbePoint {
                    reason: "the NULL check's branch, an emulated jcc",
                    ..point
                });
                previous_tests_first_argument = false;
                continue;
            }
            let reason = match (null_check_branch.is_some(), offset) {
                (_, 0) => "function entry, an emulated instruction",
                (true, _) => "after the NULL check, at an emulated instruction",
                (false, _) => "first emulated instruction of the entry block",
            };
            return Some(ProbePoint { reason, ..point });
        }
        let writes_argument = factory
            .info(instruction)
            .used_registers()
            .iter()
            .any(|used| {
                matches!(
                    used.access(),
                    OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite
                ) && match used.register().full_register() {
                    Register::RDI => true,
                    Register::RSI => reads == ReadsArguments::FirstTwo,
                    _ => false,
                }
            });
        if writes_argument || instruction.flow_control() != FlowControl::Next {
            // The arguments are gone, or the block ends in something not emulated.
            return null_check_branch;
        }
        previous_tests_first_argument = instruction.code() == Code::Test_rm64_r64
            && instruction.op0_register() == Register::RDI
            && instruction.op1_register() == Register::RDI;
    }
    null_check_branch
}

/// An instruction for messages: its mnemonic and bytes (`cmp 48 81 ff 00 10 00 00`).
fn describe(instruction: &Instruction, bytes: &[u8]) -> String {
    let mut text = format!("{:?}", instruction.mnemonic()).to_lowercase();
    for byte in bytes {
        text.push_str(&format!(" {byte:02x}"));
    }
    text
}

/// Decodes `code` (up to [`DECODE_LIMIT`] bytes) until the first invalid instruction.
fn decode(code: &[u8]) -> Vec<(Instruction, &[u8])> {
    let code = &code[..code.len().min(DECODE_LIMIT)];
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut instructions = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            break;
        }
        let start = instruction.ip() as usize;
        let end = start + instruction.len();
        instructions.push((instruction, &code[start..end]));
    }
    instructions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_point(code: &[u8]) -> ProbePoint {
        entry_probe_point(code, ReadsArguments::First)
    }

    #[test]
    fn glibc_2_36_free_skips_test_and_je_rel32() {
        // Debian 12 glibc 2.36: test %rdi,%rdi; je +0xbf; push %rbp; lea ...
        let code = [
            0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0x00, 0x00, 0x00, 0x55, 0x48, 0x8d, 0x77, 0xf0,
        ];
        let point = free_point(&code);
        assert_eq!(point.offset, 9);
        assert!(point.emulated);
    }

    #[test]
    fn endbr64_and_short_je_and_r12_push() {
        let code = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x85, 0xff, 0x74, 0x30, 0x41, 0x54, 0x55,
        ];
        assert_eq!(free_point(&code).offset, 9);
    }

    #[test]
    fn null_check_without_emulated_fall_through_probes_the_branch() {
        // mimalloc 2.0 mi_free: mov %rdi,%rcx; test %rdi,%rdi; je; lea -0x1(%rdi),%rdi
        let code = [
            0x48, 0x89, 0xf9, 0x48, 0x85, 0xff, 0x74, 0x5d, 0x48, 0x8d, 0x7f, 0xff,
        ];
        let point = free_point(&code);
        assert_eq!(point.offset, 6);
        assert!(point.emulated);
    }

    #[test]
    fn first_branch_of_a_block_that_keeps_rdi() {
        // tcmalloc tc_free: mov 0x..(%rip),%rax; test %rax,%rax; jne; mov %rdi,%rdx
        let code = [
            0x48, 0x8b, 0x05, 0x59, 0xb1, 0x1b, 0x00, 0x48, 0x85, 0xc0, 0x0f, 0x85, 0x90, 0x00,
            0x00, 0x00, 0x48, 0x89, 0xfa,
        ];
        let point = free_point(&code);
        assert_eq!(point.offset, 10);
        assert_eq!(
            point.reason,
            "first emulated instruction of the entry block"
        );
    }

    #[test]
    fn a_write_to_rdi_before_any_emulated_instruction_keeps_the_entry() {
        // mov %rsi,%rdi; ret
        let code = [0x48, 0x89, 0xf7, 0xc3];
        let point = free_point(&code);
        assert_eq!(point.offset, 0);
        assert!(!point.emulated);
    }

    #[test]
    fn munmap_needs_rsi_too() {
        // mov $0xb,%eax (writes rax only), then xor %esi,%esi; je
        let code = [
            0xb8, 0x0b, 0x00, 0x00, 0x00, 0x31, 0xf6, 0x74, 0x02, 0x90, 0x90,
        ];
        assert_eq!(free_point(&code).offset, 7);
        assert_eq!(entry_probe_point(&code, ReadsArguments::FirstTwo).offset, 0);
    }

    #[test]
    fn a_branch_back_into_the_entry_block_keeps_the_entry() {
        // 0: mov %rdi,%rax; 3: jne 3 (target 3, inside the chosen range)
        let code = [0x48, 0x89, 0xf8, 0x75, 0xfe];
        assert_eq!(free_point(&code).offset, 0);
    }

    #[test]
    fn return_probes_stay_at_the_entry_and_say_whether_it_traps() {
        // push %rbp; mov %rsp,%rbp
        let point = return_probe_point(&[0x55, 0x48, 0x89, 0xe5]);
        assert_eq!((point.offset, point.emulated), (0, true));
        // cmp $0x1000,%rdi (jemalloc's malloc)
        let point = return_probe_point(&[0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00]);
        assert_eq!((point.offset, point.emulated), (0, false));
        assert!(
            point.instruction.starts_with("cmp"),
            "{}",
            point.instruction
        );
    }

    #[test]
    fn tail_call_wrappers() {
        assert!(is_tail_call_wrapper(&[0xe9, 0x00, 0x00, 0x00, 0x00]));
        assert!(is_tail_call_wrapper(&[0xf3, 0x0f, 0x1e, 0xfa, 0xeb, 0x00]));
        assert!(!is_tail_call_wrapper(&[0x55, 0xe9, 0x00, 0x00, 0x00, 0x00]));
    }

    #[test]
    fn emulated_instructions_per_linux_6_18() {
        let cases: [(&[u8], bool); 12] = [
            (&[0x55], true),                         // push %rbp
            (&[0x41, 0x57], true),                   // push %r15
            (&[0xe8, 0, 0, 0, 0], true),             // call rel32
            (&[0xeb, 0], true),                      // jmp rel8
            (&[0x0f, 0x84, 0, 0, 0, 0], true),       // je rel32
            (&[0x90], true),                         // nop
            (&[0x0f, 0x1f, 0x44, 0x00, 0x00], true), // nopl 0x0(%rax,%rax,1)
            (&[0x48, 0x85, 0xff], false),            // test %rdi,%rdi
            (&[0xf3, 0x0f, 0x1e, 0xfa], false),      // endbr64
            (&[0x48, 0x83, 0xec, 0x08], false),      // sub $8,%rsp
            (&[0xc3], false),                        // ret
            (&[0xff, 0x25, 0, 0, 0, 0], false),      // jmp *rel(%rip)
        ];
        for (code, expected) in cases {
            let decoded = decode(code);
            let (instruction, bytes) = decoded.first().expect("decodes");
            assert_eq!(is_emulated(instruction, bytes), expected, "{code:x?}");
        }
    }
}
