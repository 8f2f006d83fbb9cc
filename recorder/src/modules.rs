//! The traced process's executable mappings: which module an address belongs to.
//!
//! Owns: parsing `/proc/PID/maps`, giving each mapped file (and the vdso) a module id shared
//! by every traced process, and turning a process's addresses into (module id, file offset). Must not: write records (the session
//! does, from what `refresh` reports as new) or symbolize.

use std::collections::HashMap;
use std::path::PathBuf;

use memtrail_format::MappingRange;

/// One executable mapping line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecMapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    /// The path column (`[vdso]` for the vdso).
    pub path: String,
}

/// Process `pid`'s executable mappings, read from `/proc/PID/maps` now. Fails only if the
/// maps file cannot be read (the process is gone).
pub fn read_exec_mappings(pid: u32) -> std::io::Result<Vec<ExecMapping>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(parse_exec_mappings(&maps))
}

/// Parses the executable, file-backed (or vdso) lines of a maps file.
pub fn parse_exec_mappings(maps: &str) -> Vec<ExecMapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let offset = fields.next()?;
            let _dev = fields.next()?;
            let _inode = fields.next()?;
            let path = fields.collect::<Vec<_>>().join(" ");
            if !perms.contains('x') || !(path.starts_with('/') || path == "[vdso]") {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(ExecMapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                file_offset: u64::from_str_radix(offset, 16).ok()?,
                path,
            })
        })
        .collect()
}

/// A module as first seen, with where to read its file while the process lives.
#[derive(Debug, Clone)]
pub struct KnownModule {
    pub path: String,
    pub ranges: Vec<MappingRange>,
    /// `/proc/PID/map_files/START-END`: the mapped file itself, even in another mount
    /// namespace or after it was deleted or replaced on disk.
    pub file_for_reading: PathBuf,
}

/// All executable mappings seen so far, by module, for every traced process: module ids are
/// shared (one id per mapped path), address ranges are per process.
pub struct ModuleTable {
    modules: Vec<KnownModule>,
    by_path: HashMap<String, u32>,
    /// Per process: (start, end, file_offset, module id), sorted by start.
    ranges: HashMap<u32, Vec<(u64, u64, u64, u32)>>,
}

impl ModuleTable {
    pub fn new() -> ModuleTable {
        ModuleTable {
            modules: Vec::new(),
            by_path: HashMap::new(),
            ranges: HashMap::new(),
        }
    }

    pub fn module(&self, id: u32) -> Option<&KnownModule> {
        self.modules.get(id as usize)
    }

    /// Takes in process `pid`'s current executable mappings; returns the ids of modules seen
    /// for the first time (in any process).
    pub fn apply(&mut self, pid: u32, mappings: &[ExecMapping]) -> Vec<u32> {
        let mut new_modules = Vec::new();
        let ranges = self.ranges.entry(pid).or_default();
        for mapping in mappings {
            let id = match self.by_path.get(&mapping.path) {
                Some(&id) => id,
                None => {
                    let id = self.modules.len() as u32;
                    self.modules.push(KnownModule {
                        path: mapping.path.clone(),
                        ranges: Vec::new(),
                        file_for_reading: if mapping.path.starts_with('/') {
                            PathBuf::from(format!(
                                "/proc/{}/map_files/{:x}-{:x}",
                                pid, mapping.start, mapping.end
                            ))
                        } else {
                            PathBuf::new()
                        },
                    });
                    self.by_path.insert(mapping.path.clone(), id);
                    new_modules.push(id);
                    id
                }
            };
            let range = MappingRange {
                start: mapping.start,
                end: mapping.end,
                file_offset: mapping.file_offset,
            };
            let module = &mut self.modules[id as usize];
            if !module.ranges.contains(&range) {
                module.ranges.push(range);
            }
            if !ranges
                .iter()
                .any(|r| r.0 == mapping.start && r.1 == mapping.end && r.3 == id)
            {
                // A new mapping over an old range (dlclose then dlopen) replaces it.
                ranges.retain(|r| r.1 <= mapping.start || r.0 >= mapping.end);
                ranges.push((mapping.start, mapping.end, mapping.file_offset, id));
            }
        }
        ranges.sort_unstable_by_key(|r| r.0);
        new_modules
    }

    /// Forgets process `pid`'s mappings (it exec'ed a new image, or ended).
    pub fn forget(&mut self, pid: u32) {
        self.ranges.remove(&pid);
    }

    /// The module and file offset of `address` in process `pid`, if it falls in a known
    /// executable mapping.
    pub fn resolve(&self, pid: u32, address: u64) -> Option<(u32, u64)> {
        let ranges = self.ranges.get(&pid)?;
        let index = ranges.partition_point(|r| r.0 <= address);
        let &(start, end, file_offset, id) = ranges.get(index.checked_sub(1)?)?;
        (address < end).then(|| (id, address - start + file_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 123 /usr/bin/sample
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 123 /usr/bin/sample
7f0000000000-7f0000026000 r--p 00000000 08:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000026000-7f000017c000 r-xp 00026000 08:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 rw-p 00000000 00:00 0 [heap]
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
7ffd10000000-7ffd10002000 rwxp 00000000 00:00 0
";

    #[test]
    fn executable_file_mappings_and_vdso_only() {
        let mappings = parse_exec_mappings(MAPS);
        let paths: Vec<_> = mappings.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr/bin/sample",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "[vdso]"
            ]
        );
    }

    #[test]
    fn resolves_addresses_to_file_offsets() {
        let mut table = ModuleTable::new();
        let new = table.apply(1, &parse_exec_mappings(MAPS));
        assert_eq!(new, [0, 1, 2]);
        assert_eq!(table.resolve(1, 0x55d0c0a01010), Some((0, 0x1010)));
        assert_eq!(table.resolve(1, 0x7f0000026000 + 5), Some((1, 0x26005)));
        assert_eq!(table.resolve(1, 0x7f0000200010), None);
        assert_eq!(table.resolve(1, 0x55d0c0a02000), None);
        assert_eq!(table.resolve(1, 0), None);
        assert!(table.apply(1, &parse_exec_mappings(MAPS)).is_empty());
    }

    #[test]
    fn processes_share_module_ids_but_not_addresses() {
        let mut table = ModuleTable::new();
        table.apply(1, &parse_exec_mappings(MAPS));
        // Process 2 maps libc elsewhere and nothing at the first process's addresses.
        let other = "7e0000000000-7e0000156000 r-xp 00026000 08:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6\n";
        assert!(table.apply(2, &parse_exec_mappings(other)).is_empty());
        assert_eq!(table.resolve(2, 0x7e0000000010), Some((1, 0x26010)));
        assert_eq!(table.resolve(2, 0x55d0c0a01010), None);
        assert_eq!(table.resolve(1, 0x7e0000000010), None);
        // An exec: the old image's addresses no longer resolve.
        table.forget(1);
        assert_eq!(table.resolve(1, 0x55d0c0a01010), None);
    }
}
