//! Returning freed heap to the operating system.
//!
//! glibc keeps freed memory in its arenas. After a config load (whose YAML
//! tree and spec are several times the size of the engine built from them),
//! that would stay in the resident set for the life of the process.

/// Gives free heap pages back to the system (glibc `malloc_trim`); a no-op
/// with other allocators.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is
    // thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
