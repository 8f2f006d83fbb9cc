//! Feeding the eBPF unwinder: unwind tables and the target's mappings into BPF maps, and
//! reading back the stacks it unwound.
//!
//! Owns: building each module's table once (cached by GNU build-id, else by path), placing it
//! in `UNWIND_ROWS` (shared by every process), giving each traced process a slot of
//! `UNWIND_MAPPINGS` and keeping it equal to that process's executable mappings (libraries
//! loaded later with dlopen included), and taking stacks out of `DWARF_STACKS`.
//! Must not: write trace records (the session does).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use aya::Ebpf;
use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use memtrail_ebpf_abi as abi;

use crate::elf_file::build_id_of;
use crate::modules::{ExecMapping, read_exec_mappings};
use crate::unwind_tables::{build_unwind_table, mapping_bias};

#[derive(Debug, thiserror::Error)]
pub enum UnwindLoadError {
    #[error("eBPF map {0} is missing or has the wrong type")]
    Map(&'static str),
}

/// `aya::Pod` wrappers of the ABI types (the ABI crate has no aya dependency).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct RowValue(abi::UnwindRow);
// SAFETY: repr(C) plain integers, no padding (12 bytes, checked in the ABI crate).
unsafe impl aya::Pod for RowValue {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct MappingValue(abi::UnwindMapping);
// SAFETY: repr(C) plain integers, no padding.
unsafe impl aya::Pod for MappingValue {}

#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct StackValue(pub abi::DwarfStack);
// SAFETY: repr(C) plain integers, no padding.
unsafe impl aya::Pod for StackValue {}

/// Where one module's rows sit in `UNWIND_ROWS` (len 0: no table, frame pointers), and its
/// executable segments (to place each mapping of it).
#[derive(Debug, Clone)]
struct LoadedTable {
    rows_start: u32,
    rows_len: u32,
    /// Executable segments: (file offset, file size, address).
    segments: Vec<(u64, u64, u64)>,
}

/// What the loader did, for the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnwindStats {
    pub modules_with_cfi: u32,
    pub modules_without_cfi: u32,
    pub rows_loaded: u32,
    /// Modules whose table did not fit in `UNWIND_ROWS` (frame pointers used instead).
    pub modules_over_capacity: u32,
}

impl UnwindStats {
    pub fn line(&self) -> String {
        let mut text = format!(
            "memtrail-record: stacks unwound with the CFI of {} modules ({} table rows)",
            self.modules_with_cfi, self.rows_loaded
        );
        if self.modules_without_cfi > 0 {
            text += &format!(
                ", frame pointers in {} without CFI",
                self.modules_without_cfi
            );
        }
        if self.modules_over_capacity > 0 {
            text += &format!(
                ", and in {} whose tables did not fit",
                self.modules_over_capacity
            );
        }
        text
    }
}

/// One traced process's slot of `UNWIND_MAPPINGS`.
#[derive(Default)]
struct ProcessSlot {
    index: u32,
    /// The mappings as last written to the kernel.
    written: Vec<abi::UnwindMapping>,
    /// Each mapping seen (range, file offset, path) and its kernel entry, so a refresh
    /// reads no file twice.
    seen: HashMap<(u64, u64, u64, String), Option<abi::UnwindMapping>>,
}

pub struct UnwindLoader {
    /// The process given slot 0 (`FIRST_TGID` in the program: no lookup for it).
    first_pid: u32,
    /// `UNWIND_ROWS`, kept as the untyped map: rows are written in batches through its fd.
    rows: aya::maps::Map,
    mappings: Array<MapData, MappingValue>,
    state: Array<MapData, u32>,
    /// `UNWIND_SLOTS`: the slot of every process but the first.
    slot_of: BpfHashMap<MapData, u32, u32>,
    /// Set on every rewrite of any slot's mapping list (its `UNWIND_STATE` generation), so a
    /// generation names one process's list at one time.
    generation: u32,
    stacks: BpfHashMap<MapData, u64, StackValue>,
    rows_capacity: u32,
    next_row: u32,
    /// By build-id (hex) or, without one, by path.
    tables: HashMap<String, LoadedTable>,
    slots: HashMap<u32, ProcessSlot>,
    free_slots: Vec<u32>,
    pub stats: UnwindStats,
}

impl UnwindLoader {
    /// Takes the unwinder's maps out of the loaded object.
    pub fn new(
        ebpf: &mut Ebpf,
        first_pid: u32,
        rows_capacity: u32,
    ) -> Result<UnwindLoader, UnwindLoadError> {
        fn take<T>(
            ebpf: &mut Ebpf,
            name: &'static str,
            convert: impl FnOnce(aya::maps::Map) -> Option<T>,
        ) -> Result<T, UnwindLoadError> {
            ebpf.take_map(name)
                .and_then(convert)
                .ok_or(UnwindLoadError::Map(name))
        }
        let slot_count = abi::UNWIND_PROCESS_SLOTS;
        Ok(UnwindLoader {
            first_pid,
            rows: take(ebpf, abi::UNWIND_ROWS_MAP, |m| {
                matches!(m, aya::maps::Map::Array(_)).then_some(m)
            })?,
            mappings: take(ebpf, abi::UNWIND_MAPPINGS_MAP, |m| Array::try_from(m).ok())?,
            state: take(ebpf, abi::UNWIND_STATE_MAP, |m| Array::try_from(m).ok())?,
            slot_of: take(ebpf, abi::UNWIND_SLOTS_MAP, |m| {
                BpfHashMap::try_from(m).ok()
            })?,
            generation: 0,
            stacks: take(ebpf, abi::DWARF_STACKS_MAP, |m| {
                BpfHashMap::try_from(m).ok()
            })?,
            rows_capacity,
            next_row: 0,
            tables: HashMap::new(),
            slots: HashMap::new(),
            // Slot 0 is the first process's; the others are handed out lowest first.
            free_slots: (1..slot_count).rev().collect(),
            stats: UnwindStats::default(),
        })
    }

    /// `refresh` with the mappings read from `/proc/PID/maps` now; quietly does nothing if the
    /// process is gone.
    pub fn refresh_from_proc(&mut self, pid: u32) {
        if let Ok(mappings) = read_exec_mappings(pid) {
            self.refresh(pid, &mappings);
        }
    }

    /// The slot of process `pid`, given one if it has none; `None` when every slot is taken.
    fn slot_mut(&mut self, pid: u32) -> Option<&mut ProcessSlot> {
        if !self.slots.contains_key(&pid) {
            let index = if pid == self.first_pid {
                0
            } else {
                let index = self.free_slots.pop()?;
                if self.slot_of.insert(pid, index, 0).is_err() {
                    self.free_slots.push(index);
                    return None;
                }
                index
            };
            self.slots.insert(
                pid,
                ProcessSlot {
                    index,
                    ..ProcessSlot::default()
                },
            );
        }
        self.slots.get_mut(&pid)
    }

    /// Whether process `pid` has a slot (its stacks are unwound with the tables).
    pub fn has_slot(&self, pid: u32) -> bool {
        self.slots.contains_key(&pid)
    }

    /// Takes in process `pid`'s current executable mappings, loads the tables of modules not
    /// seen before and rewrites the process's mapping list in the kernel if it changed. False
    /// when the process has no slot (all are taken): its stacks stop at the first frame.
    pub fn refresh(&mut self, pid: u32, mappings: &[ExecMapping]) -> bool {
        let Some(slot) = self.slot_mut(pid) else {
            return false;
        };
        let mut seen = std::mem::take(&mut slot.seen);
        let mut wanted = Vec::new();
        for mapping in mappings {
            let key = (
                mapping.start,
                mapping.end,
                mapping.file_offset,
                mapping.path.clone(),
            );
            let entry = match seen.get(&key) {
                Some(entry) => *entry,
                None => {
                    let entry = self.mapping_entry(pid, mapping);
                    seen.insert(key, entry);
                    entry
                }
            };
            wanted.extend(entry);
        }
        wanted.sort_by_key(|m| m.start);
        wanted.truncate(abi::UNWIND_MAPPINGS_CAPACITY as usize);
        let Some(slot) = self.slots.get_mut(&pid) else {
            return false;
        };
        slot.seen = seen;
        if wanted == slot.written {
            return true;
        }
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let first = slot.index * abi::UNWIND_MAPPINGS_CAPACITY;
        for (index, mapping) in wanted.iter().enumerate() {
            if slot.written.get(index) != Some(mapping) {
                let _ = self
                    .mappings
                    .set(first + index as u32, MappingValue(*mapping), 0);
            }
        }
        // Entries first, then the count: the program never reads past what is written. Then
        // a new generation: rows the program cached for the old list are not used again.
        let _ = self.state.set(2 * slot.index, wanted.len() as u32, 0);
        let _ = self.state.set(2 * slot.index + 1, generation, 0);
        slot.written = wanted;
        true
    }

    /// Forgets process `pid`'s mappings: after an exec (the new image's are taken in next) or
    /// when it ended (its slot is freed for another process).
    pub fn forget(&mut self, pid: u32, ended: bool) {
        let Some(slot) = self.slots.get_mut(&pid) else {
            return;
        };
        let index = slot.index;
        let _ = self.state.set(2 * index, 0, 0);
        slot.written.clear();
        slot.seen.clear();
        if ended {
            self.slots.remove(&pid);
            if index != 0 {
                let _ = self.slot_of.remove(&pid);
                self.free_slots.push(index);
            }
        }
    }

    /// The kernel's view of one mapping of process `pid`, loading its module's table the
    /// first time.
    fn mapping_entry(&mut self, pid: u32, mapping: &ExecMapping) -> Option<abi::UnwindMapping> {
        if !mapping.path.starts_with('/') {
            // The vdso: no file to read; the frame-pointer rule (its code keeps rbp).
            return Some(abi::UnwindMapping {
                start: mapping.start,
                end: mapping.end,
                bias: 0,
                rows_start: 0,
                rows_len: 0,
            });
        }
        let file = format!(
            "/proc/{}/map_files/{:x}-{:x}",
            pid, mapping.start, mapping.end
        );
        let file_path = if Path::new(&file).exists() {
            file
        } else {
            mapping.path.clone()
        };
        let build_id = build_id_of(Path::new(&file_path));
        let cache_key = if build_id.is_empty() {
            format!("path:{}", mapping.path)
        } else {
            build_id.iter().map(|b| format!("{b:02x}")).collect()
        };
        if !self.tables.contains_key(&cache_key) {
            let loaded = self.load_table(Path::new(&file_path))?;
            self.tables.insert(cache_key.clone(), loaded);
        }
        let loaded = self.tables.get(&cache_key)?;
        let bias = mapping_bias(&loaded.segments, mapping.start, mapping.file_offset)?;
        Some(abi::UnwindMapping {
            start: mapping.start,
            end: mapping.end,
            bias,
            rows_start: loaded.rows_start,
            rows_len: loaded.rows_len,
        })
    }

    /// Builds a module's table and appends its rows to `UNWIND_ROWS`.
    fn load_table(&mut self, file: &Path) -> Option<LoadedTable> {
        let data = std::fs::read(file).ok()?;
        // Not an x86-64 ELF file this can place: no entry, and frames there end the walk.
        let mut table = build_unwind_table(&data).ok()?;
        let rows = table.rows.len() as u64;
        let fits = rows <= 1 << abi::UNWIND_ROW_SEARCH_STEPS
            && u64::from(self.next_row) + rows <= u64::from(self.rows_capacity);
        let mut loaded = LoadedTable {
            rows_start: 0,
            rows_len: 0,
            segments: std::mem::take(&mut table.segments),
        };
        if rows == 0 {
            self.stats.modules_without_cfi += 1;
            return Some(loaded);
        }
        if !fits {
            self.stats.modules_over_capacity += 1;
            return Some(loaded);
        }
        let start = self.next_row;
        if self.write_rows(start, &table.rows).is_err() {
            // Rows written so far are never referenced: the module uses frame pointers.
            self.stats.modules_over_capacity += 1;
            return Some(loaded);
        }
        self.next_row += rows as u32;
        self.stats.modules_with_cfi += 1;
        self.stats.rows_loaded += rows as u32;
        loaded.rows_start = start;
        loaded.rows_len = rows as u32;
        Some(loaded)
    }

    /// Writes `rows` at index `start` of `UNWIND_ROWS`: with BPF_MAP_UPDATE_BATCH (a few
    /// system calls for a whole module instead of one per row), else one row at a time.
    fn write_rows(&mut self, start: u32, rows: &[abi::UnwindRow]) -> Result<(), ()> {
        let aya::maps::Map::Array(data) = &self.rows else {
            return Err(());
        };
        let fd = data.fd().as_fd().as_raw_fd();
        const CHUNK: usize = 1 << 16;
        let mut batched = true;
        for (chunk_index, chunk) in rows.chunks(CHUNK).enumerate() {
            let first = start + (chunk_index * CHUNK) as u32;
            let keys: Vec<u32> = (first..first + chunk.len() as u32).collect();
            if update_batch(fd, &keys, chunk).is_err() {
                batched = false;
                break;
            }
        }
        if batched {
            return Ok(());
        }
        let mut array =
            Array::<&mut MapData, RowValue>::try_from(&mut self.rows).map_err(|_| ())?;
        for (i, row) in rows.iter().enumerate() {
            array
                .set(start + i as u32, RowValue(*row), 0)
                .map_err(|_| ())?;
        }
        Ok(())
    }

    /// Takes the stack stored under `key` (the kernel stores it again if it recurs; the
    /// session remembers the key).
    pub fn take_stack(&mut self, key: u64) -> Option<abi::DwarfStack> {
        let stack = self.stacks.get(&key, 0).ok()?;
        let _ = self.stacks.remove(&key);
        Some(stack.0)
    }
}

/// `bpf(BPF_MAP_UPDATE_BATCH)`: `keys[i]` gets `values[i]`, all or an error.
fn update_batch(fd: RawFd, keys: &[u32], values: &[abi::UnwindRow]) -> std::io::Result<()> {
    /// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    let mut done = 0usize;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: (keys.len() - done) as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr is a valid bpf_attr prefix of the size given; keys and values hold
        // `count` elements of the map's key and value sizes (u32, 12-byte UnwindRow).
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The kernel reports how many elements it wrote in `count`.
        if attr.count == 0 {
            return Err(std::io::Error::other("batch update wrote nothing"));
        }
        done += attr.count as usize;
    }
    Ok(())
}

/// Whether the ELF file at `path` has a non-empty `.eh_frame` or `.debug_frame`; None when it
/// cannot be read as ELF.
pub fn has_cfi(path: &Path) -> Option<bool> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    Some(
        [".eh_frame", ".debug_frame"]
            .iter()
            .any(|name| file.section_by_name(name).is_some_and(|s| s.size() > 0)),
    )
}
