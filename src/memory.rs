//! The allocator, and returning freed heap to the operating system.
//!
//! Every binary built from this crate allocates with mimalloc. A check
//! allocates and frees a few dozen small blocks (the decoded CheckRequest's
//! header map above all) on whichever runtime worker runs it; mimalloc's
//! per-thread free lists make that markedly cheaper than glibc's arenas
//! (in the benchmark, CPU per check fell by about a fifth).
//!
//! It is built without transparent huge pages (`no_thp` in Cargo.toml):
//! with them, touching one 4 KiB page can make 2 MiB resident, which added
//! about 3 MiB to the resident set of a 10,000-rule config.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives the calling thread's free heap pages back to the system now rather
/// than after mimalloc's purge delay. Loading a large config allocates
/// several times the engine's size (YAML tree, spec, positions) and frees
/// it on the loading thread, so that is where to call this.
pub fn release_free_heap() {
    // SAFETY: mi_collect only walks mimalloc's own structures; it has no
    // preconditions and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
