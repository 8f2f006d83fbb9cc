//! Which allocators a process uses, and which of their functions to probe where.
//!
//! Owns: recognizing allocator families in module files (glibc, jemalloc plain, `je_` and
//! tikv-jemallocator's `_rjem_`, mimalloc's `mi_` API, gperftools' tcmalloc, or any module
//! defining `malloc`, such as a static executable), deciding which module the process's calls
//! to `malloc`, `free`, ... bind to, and the resulting plan: for each function, the entry
//! program (by argument layout), whether it has a return probe, and the probe offset
//! (`entry_probe`). Must not: attach anything (`probes` does) or read the target's memory.
//!
//! Which module is "in use" for an interposable name (`malloc`, `free`, `mallocx`, C++
//! `operator new`, ...) follows the dynamic linker's global scope: the executable, then
//! `LD_PRELOAD`, then the `DT_NEEDED` libraries breadth first; the first module defining the
//! name gets every call (a library dlopened later is not in that scope). The executable's own
//! symbol table counts too (a static binary's malloc). Prefixed APIs (`je_malloc`,
//! `_rjem_sdallocx`, `mi_free`, `tc_malloc`, ...) are never interposed: they are probed in every
//! module that defines them. Several allocators in one process are fine: a block is freed by
//! the allocator that made it, and each of its functions is probed once (aliases sharing an
//! address are one probe; a release that is only a jump to another one is skipped).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use memtrail_ebpf_abi::program;

use crate::elf_file::{DynamicNames, ElfError, ElfFile, FunctionLocation};
use crate::entry_probe::{self, ProbePoint, ReadsArguments};
use crate::modules;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot read the memory map of process {pid}: {source}")]
    Maps { pid: u32, source: std::io::Error },
    #[error(transparent)]
    Elf(#[from] ElfError),
}

/// An allocator implementation, recognized by symbols only it defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Glibc,
    Jemalloc,
    Tcmalloc,
    Mimalloc,
    /// A module defining `malloc` that is none of the above (a custom allocator).
    Other,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Glibc => "glibc",
            Family::Jemalloc => "jemalloc",
            Family::Tcmalloc => "tcmalloc",
            Family::Mimalloc => "mimalloc",
            Family::Other => "malloc",
        }
    }

    fn of(all: &HashMap<String, FunctionLocation>) -> Family {
        let has = |name: &str| all.contains_key(name);
        if has("mallctl") || has("je_mallctl") || has("_rjem_mallctl") {
            Family::Jemalloc
        } else if has("tc_malloc") {
            Family::Tcmalloc
        } else if has("mi_malloc") {
            Family::Mimalloc
        } else if has("gnu_get_libc_version") || has("__libc_malloc") {
            Family::Glibc
        } else {
            Family::Other
        }
    }
}

/// How a probed function is entered: its eBPF entry program and whether it returns a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub program: &'static str,
    /// Allocation-like: a return probe reads the result (and pins the probe at +0).
    pub returns_block: bool,
    /// For entry-only functions: the argument registers the program reads.
    pub reads: ReadsArguments,
}

const fn allocating(program: &'static str) -> Layout {
    Layout {
        program,
        returns_block: true,
        reads: ReadsArguments::First,
    }
}

const fn releasing(program: &'static str) -> Layout {
    Layout {
        program,
        returns_block: false,
        reads: ReadsArguments::First,
    }
}

/// Interposable names of the C library's API, in the order aliases are named (glibc makes
/// aligned_alloc an alias of memalign: the first name listed for an address is reported).
const LIBC_API: &[(&str, Layout)] = &[
    ("malloc", allocating(program::MALLOC_ENTRY)),
    ("calloc", allocating(program::CALLOC_ENTRY)),
    ("realloc", allocating(program::REALLOC_ENTRY)),
    ("reallocarray", allocating(program::REALLOCARRAY_ENTRY)),
    ("posix_memalign", allocating(program::POSIX_MEMALIGN_ENTRY)),
    ("memalign", allocating(program::MEMALIGN_ENTRY)),
    ("aligned_alloc", allocating(program::ALIGNED_ALLOC_ENTRY)),
    ("valloc", allocating(program::VALLOC_ENTRY)),
    ("pvalloc", allocating(program::PVALLOC_ENTRY)),
    ("mmap", allocating(program::MMAP_ENTRY)),
    ("free", releasing(program::FREE_ENTRY)),
    (
        "munmap",
        Layout {
            program: program::MUNMAP_ENTRY,
            returns_block: false,
            reads: ReadsArguments::FirstTwo,
        },
    ),
];

/// jemalloc's non-standard API (plain names in Debian's libjemalloc; also behind prefixes).
const JEMALLOC_API: &[(&str, Layout)] = &[
    ("mallocx", allocating(program::MALLOCX_ENTRY)),
    ("rallocx", allocating(program::RALLOCX_ENTRY)),
    ("xallocx", allocating(program::XALLOCX_ENTRY)),
    ("sdallocx", releasing(program::SDALLOCX_ENTRY)),
    ("dallocx", releasing(program::DALLOCX_ENTRY)),
];

/// C++ operators (mangled), probed only where an allocator other than glibc defines them:
/// libstdc++'s call malloc, which is probed already.
const CXX_OPERATORS: &[(&str, Layout)] = &[
    ("_Znwm", allocating(program::OPERATOR_NEW_ENTRY)),
    ("_Znam", allocating(program::OPERATOR_NEW_ENTRY)),
    (
        "_ZnwmRKSt9nothrow_t",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    (
        "_ZnamRKSt9nothrow_t",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    (
        "_ZnwmSt11align_val_t",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    (
        "_ZnamSt11align_val_t",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    (
        "_ZnwmSt11align_val_tRKSt9nothrow_t",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    (
        "_ZnamSt11align_val_tRKSt9nothrow_t",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    ("_ZdlPv", releasing(program::OPERATOR_DELETE_ENTRY)),
    ("_ZdaPv", releasing(program::OPERATOR_DELETE_ENTRY)),
    ("_ZdlPvm", releasing(program::OPERATOR_DELETE_ENTRY)),
    ("_ZdaPvm", releasing(program::OPERATOR_DELETE_ENTRY)),
    (
        "_ZdlPvRKSt9nothrow_t",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    (
        "_ZdaPvRKSt9nothrow_t",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    (
        "_ZdlPvSt11align_val_t",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    (
        "_ZdaPvSt11align_val_t",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    (
        "_ZdlPvmSt11align_val_t",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    (
        "_ZdaPvmSt11align_val_t",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
];

/// The jemalloc names behind the `je_` and `_rjem_` prefixes.
const JEMALLOC_PREFIXED: &[(&str, Layout)] = &[
    ("malloc", allocating(program::MALLOC_ENTRY)),
    ("calloc", allocating(program::CALLOC_ENTRY)),
    ("realloc", allocating(program::REALLOC_ENTRY)),
    ("posix_memalign", allocating(program::POSIX_MEMALIGN_ENTRY)),
    ("memalign", allocating(program::MEMALIGN_ENTRY)),
    ("aligned_alloc", allocating(program::ALIGNED_ALLOC_ENTRY)),
    ("valloc", allocating(program::VALLOC_ENTRY)),
    ("mallocx", allocating(program::MALLOCX_ENTRY)),
    ("rallocx", allocating(program::RALLOCX_ENTRY)),
    ("xallocx", allocating(program::XALLOCX_ENTRY)),
    ("free", releasing(program::FREE_ENTRY)),
    ("sdallocx", releasing(program::SDALLOCX_ENTRY)),
    ("dallocx", releasing(program::DALLOCX_ENTRY)),
];

/// mimalloc's API (what its override and the Rust `mimalloc` crate call), by layout.
const MIMALLOC_API: &[(&str, Layout)] = &[
    ("mi_malloc", allocating(program::MALLOC_ENTRY)),
    ("mi_zalloc", allocating(program::MALLOC_ENTRY)),
    ("mi_malloc_small", allocating(program::MALLOC_ENTRY)),
    ("mi_zalloc_small", allocating(program::MALLOC_ENTRY)),
    ("mi_malloc_aligned", allocating(program::MALLOC_ENTRY)),
    ("mi_zalloc_aligned", allocating(program::MALLOC_ENTRY)),
    ("mi_calloc", allocating(program::CALLOC_ENTRY)),
    ("mi_mallocn", allocating(program::CALLOC_ENTRY)),
    ("mi_calloc_aligned", allocating(program::CALLOC_ENTRY)),
    ("mi_realloc", allocating(program::REALLOC_ENTRY)),
    ("mi_reallocf", allocating(program::REALLOC_ENTRY)),
    ("mi_rezalloc", allocating(program::REALLOC_ENTRY)),
    ("mi_realloc_aligned", allocating(program::REALLOC_ENTRY)),
    ("mi_rezalloc_aligned", allocating(program::REALLOC_ENTRY)),
    ("mi_reallocn", allocating(program::REALLOCARRAY_ENTRY)),
    ("mi_recalloc", allocating(program::REALLOCARRAY_ENTRY)),
    (
        "mi_posix_memalign",
        allocating(program::POSIX_MEMALIGN_ENTRY),
    ),
    ("mi_memalign", allocating(program::MEMALIGN_ENTRY)),
    ("mi_aligned_alloc", allocating(program::ALIGNED_ALLOC_ENTRY)),
    ("mi_valloc", allocating(program::VALLOC_ENTRY)),
    ("mi_pvalloc", allocating(program::PVALLOC_ENTRY)),
    ("mi_new", allocating(program::OPERATOR_NEW_ENTRY)),
    ("mi_new_nothrow", allocating(program::OPERATOR_NEW_ENTRY)),
    ("mi_new_aligned", allocating(program::OPERATOR_NEW_ENTRY)),
    (
        "mi_new_aligned_nothrow",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    ("mi_free", releasing(program::FREE_ENTRY)),
    ("mi_free_size", releasing(program::FREE_ENTRY)),
    ("mi_free_aligned", releasing(program::FREE_ENTRY)),
    ("mi_free_size_aligned", releasing(program::FREE_ENTRY)),
];

/// gperftools' `tc_` API (aliases of its overrides in libtcmalloc, separate when prefixed
/// only).
const TCMALLOC_API: &[(&str, Layout)] = &[
    ("tc_malloc", allocating(program::MALLOC_ENTRY)),
    (
        "tc_malloc_skip_new_handler",
        allocating(program::MALLOC_ENTRY),
    ),
    ("tc_calloc", allocating(program::CALLOC_ENTRY)),
    ("tc_realloc", allocating(program::REALLOC_ENTRY)),
    (
        "tc_posix_memalign",
        allocating(program::POSIX_MEMALIGN_ENTRY),
    ),
    ("tc_memalign", allocating(program::MEMALIGN_ENTRY)),
    ("tc_valloc", allocating(program::VALLOC_ENTRY)),
    ("tc_pvalloc", allocating(program::PVALLOC_ENTRY)),
    ("tc_new", allocating(program::OPERATOR_NEW_ENTRY)),
    ("tc_newarray", allocating(program::OPERATOR_NEW_ENTRY)),
    ("tc_new_nothrow", allocating(program::OPERATOR_NEW_ENTRY)),
    (
        "tc_newarray_nothrow",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    ("tc_new_aligned", allocating(program::OPERATOR_NEW_ENTRY)),
    (
        "tc_newarray_aligned",
        allocating(program::OPERATOR_NEW_ENTRY),
    ),
    ("tc_free", releasing(program::FREE_ENTRY)),
    ("tc_cfree", releasing(program::FREE_ENTRY)),
    ("tc_free_sized", releasing(program::FREE_ENTRY)),
    ("tc_delete", releasing(program::OPERATOR_DELETE_ENTRY)),
    ("tc_deletearray", releasing(program::OPERATOR_DELETE_ENTRY)),
    (
        "tc_delete_nothrow",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    (
        "tc_deletearray_nothrow",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    ("tc_delete_sized", releasing(program::OPERATOR_DELETE_ENTRY)),
    (
        "tc_deletearray_sized",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    (
        "tc_delete_aligned",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
    (
        "tc_deletearray_aligned",
        releasing(program::OPERATOR_DELETE_ENTRY),
    ),
];

/// A module (executable or library) of the process, as it names it and as the recorder opens
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The path in the process's maps (what the trace and messages show).
    pub path: String,
    /// Where the recorder reads (and attaches to) it: `/proc/PID/map_files/START-END`, which
    /// works across mount namespaces and chroots and for deleted files, or a plain path.
    pub file: PathBuf,
}

/// One function to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionProbe {
    pub symbol: String,
    pub layout: Layout,
    /// File offset of the function's first instruction.
    pub function_offset: u64,
    /// Where the entry probe goes (relative to the function) and whether it traps.
    pub point: ProbePoint,
}

impl FunctionProbe {
    /// File offset of the entry probe.
    pub fn probe_offset(&self) -> u64 {
        self.function_offset + self.point.offset
    }
}

/// What to probe in one module.
#[derive(Debug, Clone)]
pub struct ModulePlan {
    pub module: Module,
    pub family: Family,
    pub probes: Vec<FunctionProbe>,
    /// "symbol=probed-as" for names sharing an address with a probed one.
    pub aliases: Vec<String>,
    /// Releases that only jump to another release (probing both would count calls twice).
    pub skipped_wrappers: Vec<String>,
}

/// Every module's probes, for one process.
#[derive(Debug, Clone, Default)]
pub struct AllocatorPlan {
    pub modules: Vec<ModulePlan>,
}

impl AllocatorPlan {
    /// `family:path` for each module with probes, `;`-separated (the trace's `allocators`).
    pub fn summary(&self) -> String {
        self.modules
            .iter()
            .map(|m| format!("{}:{}", m.family.name(), m.module.path))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The module whose `malloc` the process calls (the first module of the plan that probes
    /// `malloc`), else the first module probed.
    pub fn main_module(&self) -> Option<&ModulePlan> {
        self.modules
            .iter()
            .find(|m| m.probes.iter().any(|p| p.symbol == "malloc"))
            .or(self.modules.first())
    }

    /// Probes whose instruction the kernel single-steps: "symbol+offset (`insn`)"; with
    /// `hot_only`, only those on functions programs call often (not memalign, mmap, ...).
    pub fn single_stepping(&self, hot_only: bool) -> Vec<String> {
        const RARE: [&str; 8] = [
            "reallocarray",
            "posix_memalign",
            "memalign",
            "aligned_alloc",
            "valloc",
            "pvalloc",
            "mmap",
            "munmap",
        ];
        self.modules
            .iter()
            .flat_map(|m| m.probes.iter())
            .filter(|p| !p.point.emulated)
            .filter(|p| !hot_only || !RARE.iter().any(|rare| p.symbol.ends_with(rare)))
            .map(|p| format!("{}+{} ({})", p.symbol, p.point.offset, p.point.instruction))
            .collect()
    }

    /// The C library's allocation names that no module of the plan probes.
    pub fn missing_libc_names(&self) -> Vec<String> {
        let covers = |m: &ModulePlan, name: &str| {
            m.probes.iter().any(|p| p.symbol == name)
                || m.aliases.iter().any(|a| a.split('=').next() == Some(name))
        };
        LIBC_API
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !self.modules.iter().any(|m| covers(m, name)))
            .map(str::to_owned)
            .collect()
    }
}

/// A module file read, with what planning needs from it.
struct LoadedModule {
    module: Module,
    elf: ElfFile,
    exported: HashMap<String, FunctionLocation>,
    all: HashMap<String, FunctionLocation>,
    dynamic: DynamicNames,
    family: Family,
}

impl LoadedModule {
    fn read(module: Module) -> Result<LoadedModule, ElfError> {
        let elf = ElfFile::read(&module.file)?;
        let (exported, all) = elf.functions();
        let dynamic = elf.dynamic_names();
        let family = Family::of(&all);
        Ok(LoadedModule {
            module,
            elf,
            exported,
            all,
            dynamic,
            family,
        })
    }

    fn file_name(&self) -> &str {
        Path::new(&self.module.path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
    }
}

/// The plan for running process `pid`, from its current memory map.
pub fn plan_for_process(pid: u32) -> Result<AllocatorPlan, DiscoveryError> {
    let mappings =
        modules::read_exec_mappings(pid).map_err(|source| DiscoveryError::Maps { pid, source })?;
    let executable = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let mut seen = HashSet::new();
    let mut loaded = Vec::new();
    for mapping in &mappings {
        if !mapping.path.starts_with('/') || !seen.insert(mapping.path.clone()) {
            continue;
        }
        let map_file = PathBuf::from(format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            mapping.start, mapping.end
        ));
        let file = if map_file.exists() {
            map_file
        } else {
            PathBuf::from(format!("/proc/{pid}/root{}", mapping.path))
        };
        let module = Module {
            path: mapping.path.clone(),
            file,
        };
        // A mapping that is not a readable ELF file (a JIT's, a deleted one) is no allocator.
        if let Ok(module) = LoadedModule::read(module) {
            loaded.push(module);
        }
    }
    let executable_index = executable
        .as_deref()
        .and_then(|exe| loaded.iter().position(|m| m.module.path == exe));
    let preload = preload_of(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default());
    let order = scope_order(&loaded, executable_index, &preload);
    Ok(plan(&loaded, &order))
}

/// The plan for a command about to be launched from `executable`: its libraries resolved as
/// the dynamic linker will (its `DT_NEEDED`, `RUNPATH`, `LD_LIBRARY_PATH`, the standard
/// directories, and `LD_PRELOAD` from the recorder's environment, which the command inherits).
pub fn plan_for_command(executable: &Path) -> Result<AllocatorPlan, DiscoveryError> {
    let main = LoadedModule::read(module_at(executable))?;
    let mut loaded = vec![main];
    let mut preload = Vec::new();
    let preload_variable = std::env::var("LD_PRELOAD").unwrap_or_default();
    for entry in preload_variable
        .split([':', ' '])
        .filter(|entry| !entry.is_empty())
    {
        if let Some(path) = find_library(entry, None)
            && let Ok(module) = LoadedModule::read(module_at(&path))
        {
            preload.push(module.module.path.clone());
            loaded.push(module);
        }
    }
    // Resolve DT_NEEDED breadth first, reading each library once.
    let mut index = 0;
    while index < loaded.len() && loaded.len() < 256 {
        let needed = loaded[index].dynamic.needed.clone();
        let origin = Path::new(&loaded[index].module.path)
            .parent()
            .map(Path::to_path_buf);
        let search_path = loaded[index].dynamic.search_path.clone();
        for name in needed {
            let already = loaded
                .iter()
                .any(|m| m.dynamic.soname.as_deref() == Some(&name) || m.file_name() == name);
            if already {
                continue;
            }
            let search = search_path
                .as_deref()
                .map(|p| expand_origin(p, origin.as_deref()));
            if let Some(path) = find_library(&name, search.as_deref())
                && let Ok(module) = LoadedModule::read(module_at(&path))
            {
                loaded.push(module);
            }
        }
        index += 1;
    }
    let order = scope_order(&loaded, Some(0), &preload);
    Ok(plan(&loaded, &order))
}

/// The plan for one library named with `--lib`: everything it defines is probed in it, as if
/// it were first in the scope.
pub fn plan_for_library(path: &Path) -> Result<AllocatorPlan, DiscoveryError> {
    let loaded = vec![LoadedModule::read(module_at(path))?];
    Ok(plan(&loaded, &[0]))
}

/// A module read from `path` as the kernel will name it once mapped (symbolic links such as
/// /lib -> /usr/lib resolved, as in /proc/PID/maps).
fn module_at(path: &Path) -> Module {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    Module {
        path: path.to_string_lossy().into_owned(),
        file: path,
    }
}

/// `LD_PRELOAD`'s entries from a process's environment block (NUL-separated `NAME=value`).
fn preload_of(environ: &[u8]) -> Vec<String> {
    environ
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"LD_PRELOAD="))
        .flat_map(|value| {
            String::from_utf8_lossy(value)
                .split([':', ' '])
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Indices of `loaded` in the dynamic linker's global scope order: the executable, the
/// preloaded libraries, then `DT_NEEDED` breadth first. Modules not reached (dlopened) are
/// left out. Without a known executable (or for a static one), the order of `loaded`.
fn scope_order(
    loaded: &[LoadedModule],
    executable: Option<usize>,
    preload: &[String],
) -> Vec<usize> {
    let Some(executable) = executable else {
        return (0..loaded.len()).collect();
    };
    let find = |name: &str| {
        let file_name = Path::new(name).file_name().and_then(|n| n.to_str());
        loaded.iter().position(|m| {
            m.module.path == name
                || m.dynamic.soname.as_deref() == Some(name)
                || Some(m.file_name()) == file_name
        })
    };
    let mut order = vec![executable];
    for entry in preload {
        if let Some(index) = find(entry)
            && !order.contains(&index)
        {
            order.push(index);
        }
    }
    let mut next = 0;
    while next < order.len() {
        for name in &loaded[order[next]].dynamic.needed {
            if let Some(index) = find(name)
                && !order.contains(&index)
            {
                order.push(index);
            }
        }
        next += 1;
    }
    order
}

/// Builds the plan: interposable names from the first module in `order` defining them, then
/// prefixed APIs wherever they are.
fn plan(loaded: &[LoadedModule], order: &[usize]) -> AllocatorPlan {
    let mut plans: Vec<ModulePlan> = loaded
        .iter()
        .map(|m| ModulePlan {
            module: m.module.clone(),
            family: m.family,
            probes: Vec::new(),
            aliases: Vec::new(),
            skipped_wrappers: Vec::new(),
        })
        .collect();
    // (module, file offset) -> the symbol probed there.
    let mut probed: HashMap<(usize, u64), String> = HashMap::new();
    let mut add = |plans: &mut Vec<ModulePlan>,
                   index: usize,
                   name: &str,
                   layout: Layout,
                   location: FunctionLocation| {
        if let Some(first) = probed.get(&(index, location.file_offset)) {
            plans[index].aliases.push(format!("{name}={first}"));
            return;
        }
        probed.insert((index, location.file_offset), name.to_owned());
        let elf = &loaded[index].elf;
        // The whole function (capped) so the decoder can see branches into its entry block.
        let length = usize::try_from(location.size)
            .unwrap_or(entry_probe::DECODE_LIMIT)
            .clamp(32, entry_probe::DECODE_LIMIT);
        let code = elf.bytes_at(location.file_offset, length);
        if !layout.returns_block && entry_probe::is_tail_call_wrapper(code) {
            plans[index].skipped_wrappers.push(name.to_owned());
            return;
        }
        let point = if layout.returns_block {
            entry_probe::return_probe_point(code)
        } else {
            entry_probe::entry_probe_point(code, layout.reads)
        };
        plans[index].probes.push(FunctionProbe {
            symbol: name.to_owned(),
            layout,
            function_offset: location.file_offset,
            point,
        });
    };
    let executable = order.first().copied();
    let defined_in = |index: usize, name: &str| -> Option<FunctionLocation> {
        let module = &loaded[index];
        // The executable's own code calls its own functions, exported or not.
        if Some(index) == executable {
            module.all.get(name).copied()
        } else {
            module.exported.get(name).copied()
        }
    };
    // Modules outside the global scope (dlopened), searched for names no module in it defines.
    let outside: Vec<usize> = (0..loaded.len()).filter(|i| !order.contains(i)).collect();
    for (name, layout) in LIBC_API.iter().chain(JEMALLOC_API).chain(CXX_OPERATORS) {
        let Some((index, location)) = order
            .iter()
            .chain(&outside)
            .find_map(|&i| defined_in(i, name).map(|location| (i, location)))
        else {
            continue;
        };
        let is_operator = name.starts_with("_Z");
        if is_operator && matches!(loaded[index].family, Family::Glibc | Family::Other) {
            continue; // libstdc++'s operators call malloc
        }
        add(&mut plans, index, name, *layout, location);
    }
    for (index, module) in loaded.iter().enumerate() {
        let prefixed = JEMALLOC_PREFIXED
            .iter()
            .flat_map(|(name, layout)| {
                ["je_", "_rjem_"].map(|prefix| (format!("{prefix}{name}"), *layout))
            })
            .chain(
                MIMALLOC_API
                    .iter()
                    .chain(TCMALLOC_API)
                    .map(|(name, layout)| ((*name).to_owned(), *layout)),
            );
        for (name, layout) in prefixed {
            if let Some(location) = module.all.get(&name) {
                add(&mut plans, index, &name, layout, *location);
            }
        }
    }
    plans.retain(|p| !p.probes.is_empty());
    // The module the process's malloc binds to first, then the others in scope order.
    let rank = |p: &ModulePlan| {
        let has_malloc = p.probes.iter().any(|f| f.symbol == "malloc");
        let position = loaded
            .iter()
            .position(|m| m.module.path == p.module.path)
            .and_then(|i| order.iter().position(|&o| o == i))
            .unwrap_or(usize::MAX);
        (!has_malloc, position)
    };
    plans.sort_by_key(rank);
    AllocatorPlan { modules: plans }
}

/// `$ORIGIN` (and `${ORIGIN}`) of a search path replaced with the module's directory.
fn expand_origin(search_path: &str, origin: Option<&Path>) -> String {
    let origin = origin
        .map(|o| o.to_string_lossy().into_owned())
        .unwrap_or_default();
    search_path
        .replace("${ORIGIN}", &origin)
        .replace("$ORIGIN", &origin)
}

/// Where the dynamic linker finds library `name` (a path, or a file name searched in the
/// module's search path, `LD_LIBRARY_PATH`, then the standard directories of this
/// architecture). The linker's cache (/etc/ld.so.cache) is not read: directories only it lists
/// are missed.
fn find_library(name: &str, search_path: Option<&str>) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.is_file().then_some(path);
    }
    let library_path = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    let standard = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
        "/usr/local/lib",
    ];
    search_path
        .into_iter()
        .flat_map(|p| p.split(':'))
        .chain(library_path.split(':'))
        .chain(standard)
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_entries_from_an_environment_block() {
        let environ = b"PATH=/bin\0LD_PRELOAD=/a/libjemalloc.so.2:libx.so  liby.so\0HOME=/\0";
        assert_eq!(
            preload_of(environ),
            ["/a/libjemalloc.so.2", "libx.so", "liby.so"]
        );
        assert!(preload_of(b"").is_empty());
    }

    #[test]
    fn origin_is_expanded() {
        assert_eq!(
            expand_origin("$ORIGIN/../lib:${ORIGIN}", Some(Path::new("/opt/app/bin"))),
            "/opt/app/bin/../lib:/opt/app/bin"
        );
    }

    /// The installed allocator libraries (Debian's packages, see .ci/run), if present.
    fn installed(path: &str) -> Option<AllocatorPlan> {
        Path::new(path)
            .exists()
            .then(|| plan_for_library(Path::new(path)).expect("plan"))
    }

    fn probe<'p>(plan: &'p AllocatorPlan, symbol: &str) -> Option<&'p FunctionProbe> {
        plan.modules
            .iter()
            .flat_map(|m| m.probes.iter())
            .find(|p| p.symbol == symbol)
    }

    #[test]
    fn glibc_free_is_past_its_null_check_and_malloc_emulated() {
        let Some(plan) = installed("/usr/lib/x86_64-linux-gnu/libc.so.6") else {
            return;
        };
        assert_eq!(plan.modules[0].family, Family::Glibc);
        let free = probe(&plan, "free").expect("free");
        assert!(free.point.emulated && free.point.offset > 0, "{free:?}");
        let malloc = probe(&plan, "malloc").expect("malloc");
        assert!(malloc.point.emulated, "{malloc:?}");
        assert!(probe(&plan, "_Znwm").is_none());
        // aligned_alloc is memalign's alias in glibc.
        assert!(
            plan.modules[0]
                .aliases
                .contains(&"aligned_alloc=memalign".to_owned())
        );
    }

    #[test]
    fn jemalloc_releases_sit_on_emulated_instructions() {
        let Some(plan) = installed("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2") else {
            return;
        };
        assert_eq!(plan.modules[0].family, Family::Jemalloc);
        for symbol in ["free", "sdallocx", "dallocx", "_ZdlPvm"] {
            let release = probe(&plan, symbol).unwrap_or_else(|| panic!("{symbol}"));
            assert!(release.point.emulated, "{release:?}");
        }
        for symbol in ["malloc", "mallocx", "rallocx", "xallocx", "_Znwm"] {
            assert!(probe(&plan, symbol).is_some(), "{symbol}");
        }
        // operator delete(void*) is `jmp free@plt`.
        assert!(
            plan.modules[0]
                .skipped_wrappers
                .contains(&"_ZdlPv".to_owned())
        );
    }

    #[test]
    fn tcmalloc_names_are_one_probe_per_address() {
        let Some(plan) = installed("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4") else {
            return;
        };
        assert_eq!(plan.modules[0].family, Family::Tcmalloc);
        let free = probe(&plan, "free").expect("free");
        assert!(free.point.emulated, "{free:?}");
        assert!(probe(&plan, "tc_free").is_none(), "tc_free is free's alias");
        assert!(
            plan.modules[0]
                .aliases
                .contains(&"tc_malloc=malloc".to_owned())
        );
        // tcmalloc defines mmap and munmap too (its hooks).
        assert!(probe(&plan, "mmap").is_some());
    }

    #[test]
    fn mimalloc_api_and_override() {
        let Some(plan) = installed("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2") else {
            return;
        };
        assert_eq!(plan.modules[0].family, Family::Mimalloc);
        let free = probe(&plan, "free").expect("free");
        assert!(free.point.emulated, "{free:?}");
        assert!(
            plan.modules[0]
                .aliases
                .contains(&"mi_malloc=malloc".to_owned())
        );
        assert!(probe(&plan, "mi_malloc_aligned").is_some());
        assert!(probe(&plan, "mi_free_size").is_none(), "a jump to mi_free");
    }
}
