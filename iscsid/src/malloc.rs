//! Allocator tuning for the data path.
//!
//! Every command moves its data in freshly allocated buffers (64 KiB to a
//! few MiB). glibc hands the top of the heap back to the kernel as soon as
//! such a buffer is freed and maps large ones anew each time, so the next
//! command faults the same pages in again: measured as 12-16% of iscsid's
//! CPU on 64 KiB transfers. Keeping freed memory (up to the limits below)
//! removes that. OpenBSD's malloc has its own cache; nothing is tuned there.

/// Called once in each child before its loop starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    // SAFETY: mallopt(3) takes two ints and only changes allocator
    // thresholds; it is called before the process starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// Hands free memory back to the system, past the thresholds above: after
/// a burst of control clients, which the data path does not reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release() {
    // SAFETY: malloc_trim(3) takes a size and only returns free memory of
    // the allocator to the kernel; the process is single-threaded.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// OpenBSD's malloc(3) returns memory on its own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release() {}
