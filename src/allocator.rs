//! glibc's allocator, tuned once at startup for this proxy's pattern: every
//! forwarded answer borrows 64 KB read buffers and frees them again.
//!
//! By default glibc gives memory back to the kernel whenever the free top
//! of the heap passes its trim threshold, and it raises that threshold (and
//! its mmap threshold) as it sees large blocks freed. On this proxy that
//! meant, counted with `strace -c -f` and `/proc/PID/stat` over 5 s of
//! forwarded 90 KB scrapes (docs/performance.md, and benches/syscalls.sh):
//! - defaults: one `madvise` and 22 page faults per plain scrape, as the
//!   freed body buffers were trimmed and then faulted back in;
//! - `M_TRIM_THRESHOLD` alone (which also freezes the mmap threshold at
//!   128 KiB): the plain scrape clean, but one `mmap`, one `munmap` and 68
//!   page faults per gzip scrape, for the compressor's large buffers;
//! - both thresholds fixed, as here: no `madvise`, `mmap` or `munmap` per
//!   request, and about 0.1 page faults per request, on either.
//!
//! Freed memory stays with the process up to the trim threshold, so resident
//! memory stays near its peak instead of falling back after a burst; the
//! peak itself does not change (each of glibc's arenas, one per thread that
//! allocates, may keep up to the trim threshold). glibc reads the same
//! settings from `MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_` and
//! `GLIBC_TUNABLES` (`glibc.malloc.*`; see `mallopt(3)`, `tunables(7)`): when
//! the operator sets any of them, this leaves the allocator alone.

/// Free heap above this is returned to the kernel.
pub const TRIM_THRESHOLD: i32 = 64 << 20;
/// Blocks at least this large get their own mapping. The largest block on
/// the request path is a shared metrics response (8 MiB at most), rare.
pub const MMAP_THRESHOLD: i32 = 4 << 20;

/// Applies the thresholds, unless the environment sets either of them.
/// Call before any thread starts. Does nothing on other C libraries.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_operator = std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
        if !set_by_operator {
            // SAFETY: mallopt only changes glibc's allocator parameters; it
            // is called before any other thread exists.
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}
