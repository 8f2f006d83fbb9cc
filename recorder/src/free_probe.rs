//! Where to put the probe on `free`.
//!
//! Owns: choosing an offset into `free` at which every non-NULL free passes and whose
//! instruction the kernel emulates instead of single-stepping. Must not: read files or attach
//! anything (callers hand it the function's first bytes), or guess: only the exact prologue
//! shapes recognised below give a non-zero offset; anything else means "probe the entry".
//!
//! glibc's free begins with `test %rdi,%rdi; je <return>`. The kernel single-steps `test`
//! (about 15x the cost of an emulated instruction on the machines measured), but emulates
//! `push`. The first instruction after the NULL check's branch is reached by every call with a
//! non-NULL pointer and only by those, with `%rdi` unchanged, so a probe there sees every free
//! that matters and reads the same argument.

/// The chosen attach point, as an offset from the start of `free`, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeProbePlacement {
    pub offset: u64,
    pub reason: &'static str,
}

/// Decodes the first bytes of `free` (x86-64 machine code) and returns where to attach.
pub fn choose_free_probe_offset(code: &[u8]) -> FreeProbePlacement {
    match null_check_skip_offset(code) {
        Some(offset) => FreeProbePlacement {
            offset,
            reason: "after the NULL check, at an emulated push",
        },
        None => FreeProbePlacement {
            offset: 0,
            reason: "unrecognised prologue: function entry",
        },
    }
}

fn null_check_skip_offset(code: &[u8]) -> Option<u64> {
    let mut at = 0usize;
    // endbr64 (CET builds).
    if code.get(at..at + 4)? == [0xf3, 0x0f, 0x1e, 0xfa] {
        at += 4;
    }
    // test %rdi,%rdi
    if code.get(at..at + 3)? != [0x48, 0x85, 0xff] {
        return None;
    }
    at += 3;
    // je rel8 | je rel32: the NULL case branches away.
    match *code.get(at)? {
        0x74 => at += 2,
        0x0f if *code.get(at + 1)? == 0x84 => at += 6,
        _ => return None,
    }
    // push %r64 (50+r) or push %r8-%r15 (41 50+r): emulated by the kernel's uprobe code.
    match *code.get(at)? {
        0x50..=0x57 => {}
        0x41 if (0x50..=0x57).contains(code.get(at + 1)?) => {}
        _ => return None,
    }
    Some(at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_2_36_free_skips_test_and_je_rel32() {
        // Debian 12 glibc 2.36: test %rdi,%rdi; je +0xbf; push %rbp; lea ...
        let code = [
            0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0x00, 0x00, 0x00, 0x55, 0x48, 0x8d, 0x77, 0xf0,
        ];
        assert_eq!(choose_free_probe_offset(&code).offset, 9);
    }

    #[test]
    fn endbr64_and_short_je_and_r12_push() {
        let code = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x85, 0xff, 0x74, 0x30, 0x41, 0x54, 0x55,
        ];
        assert_eq!(choose_free_probe_offset(&code).offset, 9);
    }

    #[test]
    fn anything_else_is_the_entry() {
        let cases: [&[u8]; 5] = [
            &[],
            &[0x48, 0x85, 0xff],
            &[0x55, 0x48, 0x89, 0xe5],
            // test then jne: the fall-through is the NULL case.
            &[0x48, 0x85, 0xff, 0x75, 0x10, 0x55],
            // je then a mov, not a push.
            &[0x48, 0x85, 0xff, 0x74, 0x10, 0x48, 0x89, 0xe5],
        ];
        for code in cases {
            assert_eq!(choose_free_probe_offset(code).offset, 0, "{code:x?}");
        }
    }
}
