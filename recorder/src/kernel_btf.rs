//! Field offsets of kernel structures, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`).
//!
//! The process-tracking programs read a few fields of `struct task_struct` (a new task's
//! thread and thread group ids, the exit code) with `bpf_probe_read_kernel`; their offsets change with
//! every kernel build, so user space looks them up here and hands them to the programs as
//! load-time globals (the programs have no CO-RE relocations).
//!
//! Owns: a minimal BTF type-section walk (enough to find a struct's members by name).
//! Must not: trust the file: every length and index is checked; a malformed file is an error.

use std::collections::HashMap;

/// Where the running kernel's BTF is.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read the kernel's BTF at {VMLINUX_BTF}: {0} (a kernel built with CONFIG_DEBUG_INFO_BTF is needed to follow child processes)"
    )]
    Read(std::io::Error),
    #[error("the kernel's BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no `{0}`")]
    Missing(String),
}

/// Offsets (bytes) of the `task_struct` fields the process-tracking programs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOffsets {
    pub pid: u32,
    pub tgid: u32,
    pub exit_code: u32,
}

impl TaskOffsets {
    /// Reads them from the running kernel.
    pub fn of_running_kernel() -> Result<TaskOffsets, BtfError> {
        let data = std::fs::read(VMLINUX_BTF).map_err(BtfError::Read)?;
        TaskOffsets::from_btf(&data)
    }

    pub fn from_btf(data: &[u8]) -> Result<TaskOffsets, BtfError> {
        let members = struct_members(data, "task_struct")?;
        let field = |name: &str| {
            members
                .get(name)
                .copied()
                .ok_or_else(|| BtfError::Missing(format!("task_struct.{name}")))
        };
        Ok(TaskOffsets {
            pid: field("pid")?,
            tgid: field("tgid")?,
            exit_code: field("exit_code")?,
        })
    }
}

/// Offsets (bytes) of the fields that lead from an exec's `struct linux_binprm` to the
/// inode number and device of the file it runs (`--exe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecFileOffsets {
    pub binprm_file: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
}

impl ExecFileOffsets {
    /// Reads them from the running kernel.
    pub fn of_running_kernel() -> Result<ExecFileOffsets, BtfError> {
        let data = std::fs::read(VMLINUX_BTF).map_err(BtfError::Read)?;
        ExecFileOffsets::from_btf(&data)
    }

    pub fn from_btf(data: &[u8]) -> Result<ExecFileOffsets, BtfError> {
        let field = |structure: &str, name: &str| -> Result<u32, BtfError> {
            struct_members(data, structure)?
                .get(name)
                .copied()
                .ok_or_else(|| BtfError::Missing(format!("{structure}.{name}")))
        };
        Ok(ExecFileOffsets {
            binprm_file: field("linux_binprm", "file")?,
            file_inode: field("file", "f_inode")?,
            inode_ino: field("inode", "i_ino")?,
            inode_sb: field("inode", "i_sb")?,
            sb_dev: field("super_block", "s_dev")?,
        })
    }
}

// BTF kinds (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// The byte offsets of the named, byte-aligned members of the struct `name` (the first
/// struct of that name; members inside anonymous unions/structs are not descended into,
/// which the fields memtrail reads do not need).
fn struct_members(data: &[u8], name: &str) -> Result<HashMap<String, u32>, BtfError> {
    let u16_at = |at: usize| -> Result<u16, BtfError> {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::Malformed("truncated"))
    };
    let u32_at = |at: usize| -> Result<u32, BtfError> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(BtfError::Malformed("truncated"))
    };
    if u16_at(0)? != 0xeb9f {
        return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
    }
    let header_len = u32_at(4)? as usize;
    let type_off = u32_at(8)? as usize;
    let type_len = u32_at(12)? as usize;
    let str_off = u32_at(16)? as usize;
    let str_len = u32_at(20)? as usize;
    let types_start = header_len
        .checked_add(type_off)
        .ok_or(BtfError::Malformed("type section offset"))?;
    let types_end = types_start
        .checked_add(type_len)
        .filter(|&end| end <= data.len())
        .ok_or(BtfError::Malformed("type section out of the file"))?;
    let strings_start = header_len
        .checked_add(str_off)
        .ok_or(BtfError::Malformed("string section offset"))?;
    let strings = strings_start
        .checked_add(str_len)
        .and_then(|end| data.get(strings_start..end))
        .ok_or(BtfError::Malformed("string section out of the file"))?;
    let string = |offset: u32| -> &str {
        let Some(rest) = strings.get(offset as usize..) else {
            return "";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    };

    let mut at = types_start;
    while at < types_end {
        let name_off = u32_at(at)?;
        let info = u32_at(at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31 == 1;
        at += 12;
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
            _ => 0,
        };
        if kind == KIND_STRUCT && string(name_off) == name {
            let mut members = HashMap::new();
            for i in 0..vlen {
                let member = at + 12 * i;
                let member_name = string(u32_at(member)?);
                let raw_offset = u32_at(member + 8)?;
                // With kind_flag, the low 24 bits are the bit offset (the high 8 a bitfield size).
                let bits = if kind_flag {
                    raw_offset & 0x00ff_ffff
                } else {
                    raw_offset
                };
                if !member_name.is_empty() && bits.is_multiple_of(8) {
                    members.insert(member_name.to_owned(), bits / 8);
                }
            }
            return Ok(members);
        }
        at = at
            .checked_add(extra)
            .ok_or(BtfError::Malformed("type length"))?;
    }
    Err(BtfError::Missing(format!("struct {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_task_struct_fields_of_the_running_kernel() {
        let Ok(data) = std::fs::read(VMLINUX_BTF) else {
            return; // no BTF on this machine: nothing to check
        };
        let offsets = TaskOffsets::from_btf(&data).expect("task_struct offsets");
        // pid and tgid are adjacent `pid_t`s.
        assert!(offsets.pid > 0 && offsets.pid.is_multiple_of(4));
        assert_eq!(offsets.tgid, offsets.pid + 4);
        assert!(offsets.exit_code > 0 && offsets.exit_code.is_multiple_of(4));
    }

    #[test]
    fn finds_the_exec_file_fields_of_the_running_kernel() {
        let Ok(data) = std::fs::read(VMLINUX_BTF) else {
            return;
        };
        let offsets = ExecFileOffsets::from_btf(&data).expect("exec file offsets");
        // Pointers and an unsigned long: 8-byte aligned; s_dev a dev_t (u32).
        for pointer in [
            offsets.binprm_file,
            offsets.file_inode,
            offsets.inode_ino,
            offsets.inode_sb,
        ] {
            assert!(pointer.is_multiple_of(8), "{offsets:?}");
        }
        assert!(offsets.sb_dev.is_multiple_of(4));
        assert_ne!(offsets.inode_ino, offsets.inode_sb);
    }

    #[test]
    fn malformed_btf_is_an_error_not_a_panic() {
        assert!(TaskOffsets::from_btf(&[]).is_err());
        assert!(TaskOffsets::from_btf(&[0x9f, 0xeb, 1, 0]).is_err());
        let mut header = vec![0x9f, 0xeb, 1, 0];
        header.extend_from_slice(&24u32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&u32::MAX.to_le_bytes()); // type_len far past the end
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        assert!(TaskOffsets::from_btf(&header).is_err());
    }
}
