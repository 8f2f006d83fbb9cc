#![no_std]
//! The kernel/user ABI of memtrail's eBPF program: plain `#[repr(C)]` types only.
