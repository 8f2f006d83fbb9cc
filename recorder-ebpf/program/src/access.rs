//! Safe wrappers for what the program does that Rust cannot check: BPF helper calls, the
//! globals user space writes at load time, the probe's saved registers, map values reached
//! through the pointers lookups return, atomics on them, and `bpf_loop`.
//!
//! Owns: nearly all of the program's `unsafe`, each block with the reason it holds. The other
//! modules' few `unsafe` blocks are field projections of a [`MapPtr`] ([`MapPtr::project`]),
//! exclusive borrows of per-CPU walk state ([`MapPtr::as_exclusive`]) and the ring-buffer
//! entry's fields (`emit`). Must not: hold program logic, or hand out a reference to a map
//! value that another program can reach at the same time.

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    bindings::pt_regs,
    cty::{c_long, c_void},
    helpers::generated::bpf_get_current_task,
    helpers::generated::bpf_probe_read_user as read_user_bytes,
    helpers::{
        bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_loop, bpf_probe_read_kernel,
        bpf_probe_read_user, bpf_send_signal,
    },
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};

/// A global user space sets at load time (`memtrail_ebpf_abi::GLOBAL_*`). Read volatile: the
/// compiler would otherwise fold the initializer, which user space rewrites in the object.
#[inline(always)]
pub fn global<T: Copy>(value: &'static T) -> T {
    // SAFETY: a reference to a static is non-null, aligned and valid for reads.
    unsafe { core::ptr::read_volatile(value) }
}

/// `bpf_get_prandom_u32`.
#[inline(always)]
pub fn random_u32() -> u32 {
    // SAFETY: the helper takes no arguments and cannot fail.
    unsafe { bpf_get_prandom_u32() }
}

/// `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: the helper takes no arguments and cannot fail.
    unsafe { bpf_ktime_get_ns() }
}

/// Sends `signal` to the current process (`bpf_send_signal`); true when it was sent.
#[inline(always)]
pub fn send_signal(signal: u32) -> bool {
    // SAFETY: the helper takes a signal number and touches no memory of ours.
    unsafe { bpf_send_signal(signal) == 0 }
}

/// The value of `key` in a `u32 -> u32` hash map, copied out.
#[inline(always)]
pub fn lookup_u32(map: &HashMap<u32, u32>, key: u32) -> Option<u32> {
    // SAFETY: the value is a plain u32, copied out at once; no reference outlives the lookup
    // (another program may update or delete the entry at any time).
    unsafe { map.get(&key) }.copied()
}

/// The address of the current task's `struct task_struct` (`bpf_get_current_task`).
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: the helper takes no arguments and cannot fail.
    unsafe { bpf_get_current_task() }
}

/// The kernel `u32` at `address` (`bpf_probe_read_kernel`); `None` if the read faults.
#[inline(always)]
pub fn read_kernel_u32(address: u64) -> Option<u32> {
    // SAFETY: the helper copies with fault handling, so any address is allowed: a bad one
    // makes it fail, which is returned; any 4 bytes are a valid u32.
    unsafe { bpf_probe_read_kernel(address as *const u32) }.ok()
}

/// The kernel `u64` at `address` (`bpf_probe_read_kernel`); `None` if the read faults.
#[inline(always)]
pub fn read_kernel_u64(address: u64) -> Option<u64> {
    // SAFETY: as for `read_kernel_u32`.
    unsafe { bpf_probe_read_kernel(address as *const u64) }.ok()
}

/// The user registers of the probed task (uprobe and uretprobe contexts are its `pt_regs`).
#[inline(always)]
pub fn user_regs<C: EbpfContext>(ctx: &C) -> &pt_regs {
    // SAFETY: the context of a (ret)probe program is the `pt_regs` of the probed task, which
    // the kernel keeps valid and unchanged while the program runs (the borrow of `ctx`).
    unsafe { &*(ctx.as_ptr() as *const pt_regs) }
}

/// The user word at `address` (`bpf_probe_read_user`); `None` if the read faults.
#[inline(always)]
pub fn read_user_u64(address: u64) -> Option<u64> {
    // SAFETY: the helper copies with fault handling, so any address is allowed: an unmapped
    // one makes it fail, which is returned; any 8 bytes are a valid u64.
    unsafe { bpf_probe_read_user(address as *const u64) }.ok()
}

/// Two adjacent user words at `address`, with one read (each user read is a helper call with
/// fault handling); `None` if the read faults.
#[inline(always)]
pub fn read_user_pair(address: u64) -> Option<[u64; 2]> {
    // SAFETY: as for `read_user_u64`.
    unsafe { bpf_probe_read_user(address as *const [u64; 2]) }.ok()
}

/// Copies `len` bytes of user memory at `address` into the start of `words`; false (and
/// nothing copied that may be used) if `len` exceeds `words` or the read faults.
#[inline(always)]
pub fn copy_from_user<const N: usize>(words: &mut [u64; N], address: u64, len: u64) -> bool {
    // Callers' lengths are bounded already (the compiler removes this check where it can see
    // that), but the bound is what makes the copy below sound.
    if len > (N * 8) as u64 {
        return false;
    }
    // SAFETY: `words` is an exclusive borrow of at least `len` bytes (checked above); the
    // helper handles faults on the user side and reports them.
    let read = unsafe {
        read_user_bytes(
            words.as_mut_ptr() as *mut c_void,
            len as u32,
            address as *const c_void,
        )
    };
    read == 0
}

/// Runs `step(i, context)` for i = 0, 1, ... up to `iterations` times, until it returns
/// nonzero (`bpf_loop`: the verifier checks `step` once, not once per iteration).
#[inline(always)]
pub fn run_loop<C>(iterations: u32, step: extern "C" fn(u64, &mut C) -> c_long, context: &mut C) {
    // SAFETY: bpf_loop calls `step` with the loop index and the context pointer, which is
    // what `step`'s signature takes (a reference is a pointer in the C ABI); it does so only
    // during this call, which the exclusive borrow of `context` covers.
    unsafe {
        bpf_loop(
            iterations,
            step as *mut c_void,
            context as *mut C as *mut c_void,
            0,
        )
    };
}

/// A value inside a BPF map, as a lookup returns it.
///
/// Invariant, which every `unsafe` block using a `MapPtr` relies on: the pointer is non-null,
/// aligned for `T` and valid for reads and writes of a `T` until the program returns. Array
/// and per-CPU array values live as long as their map; a hash-map value deleted meanwhile is
/// freed only after an RCU grace period, which cannot end while the program runs. The value
/// may be in use elsewhere at the same time (a program on another CPU, or a probe of another
/// thread preempting this one on a fully preemptible kernel), so a `MapPtr` only reads and
/// writes through the pointer; a reference is made only by [`MapPtr::as_exclusive`], whose
/// callers show that no one else can use the value.
pub struct MapPtr<T>(*mut T);

// Not derived: the derives would require `T: Clone`/`T: Copy`.
impl<T> Clone for MapPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MapPtr<T> {}

impl<T> MapPtr<T> {
    #[inline(always)]
    pub fn array(map: &Array<T>, index: u32) -> Option<Self> {
        map.get_ptr_mut(index).map(Self)
    }

    #[inline(always)]
    pub fn per_cpu(map: &PerCpuArray<T>, index: u32) -> Option<Self> {
        map.get_ptr_mut(index).map(Self)
    }

    #[inline(always)]
    pub fn lru_hash<K>(map: &LruHashMap<K, T>, key: &K) -> Option<Self> {
        map.get_ptr_mut(key).map(Self)
    }

    /// The `MapPtr` of a field of this value, given the projection `field`
    /// (`|value| &raw mut (*value).name`).
    ///
    /// # Safety
    /// `field` must return a pointer to a field of the value it is given (so inside it, and
    /// aligned for `F`), and do nothing else.
    #[inline(always)]
    pub unsafe fn project<F>(self, field: impl FnOnce(*mut T) -> *mut F) -> MapPtr<F> {
        MapPtr(field(self.0))
    }

    /// The value, borrowed exclusively for as long as the caller chooses.
    ///
    /// # Safety
    /// Nothing else (no other program, on this CPU or another, and no other `MapPtr` or
    /// borrow of the same value) may read or write the value while the borrow lives.
    #[inline(always)]
    pub unsafe fn as_exclusive<'a>(self) -> &'a mut T {
        // SAFETY: valid and aligned (the type's invariant); exclusive (the caller's promise).
        unsafe { &mut *self.0 }
    }

    /// Plain read: for values no other program writes meanwhile, or where a torn or stale
    /// value is harmless (a per-CPU counter).
    #[inline(always)]
    pub fn read(self) -> T
    where
        T: Copy,
    {
        // SAFETY: valid and aligned for reads (the type's invariant); `T: Copy` is plain data.
        unsafe { self.0.read() }
    }

    /// Plain write (see [`MapPtr::read`]).
    #[inline(always)]
    pub fn write(self, value: T) {
        // SAFETY: valid and aligned for writes (the type's invariant).
        unsafe { self.0.write(value) }
    }

    /// Volatile read: a value another thread's program may write meanwhile, read exactly once.
    #[inline(always)]
    pub fn read_volatile(self) -> T
    where
        T: Copy,
    {
        // SAFETY: valid and aligned for reads (the type's invariant).
        unsafe { self.0.read_volatile() }
    }

    /// Volatile write: emitted exactly as written, in program order with the other volatile
    /// accesses (field-by-field stores that must not become a `memset` or be merged).
    #[inline(always)]
    pub fn write_volatile(self, value: T) {
        // SAFETY: valid and aligned for writes (the type's invariant).
        unsafe { self.0.write_volatile(value) }
    }
}

impl MapPtr<u64> {
    /// Atomically adds `n` (relaxed): counters that probes of other threads may bump at the
    /// same time, even per CPU on a fully preemptible kernel.
    #[inline(always)]
    pub fn fetch_add(self, n: u64) {
        // SAFETY: valid and aligned (the type's invariant); the access is atomic.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(self.0, n) };
    }

    /// Atomically sets the value to `new` if it is `current` (BPF_CMPXCHG; acquire on
    /// success); true if it did.
    #[inline(always)]
    pub fn compare_exchange(self, current: u64, new: u64) -> bool {
        // SAFETY: valid and aligned (the type's invariant); the access is atomic.
        let (_, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Acquire }, { AtomicOrdering::Relaxed }>(
                self.0, current, new,
            )
        };
        swapped
    }
}
