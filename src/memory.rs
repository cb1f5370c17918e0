//! Returning freed heap to the operating system after a config load.
//!
//! The allocator is the binary's choice (`src/main.rs` sets mimalloc), so
//! tests, benchmarks and dependants keep their own. What the binary's
//! allocator can do to give memory back it registers here, once, at start.

use std::sync::OnceLock;

static RELEASE_FREE_HEAP: OnceLock<fn()> = OnceLock::new();

/// Registers how the global allocator returns free pages to the system.
/// Only the first registration counts.
pub fn on_release_free_heap(release: fn()) {
    let _ = RELEASE_FREE_HEAP.set(release);
}

/// Gives the calling thread's free heap pages back to the system now, if the
/// binary registered a way to (a no-op otherwise). Loading a large config
/// allocates several times the engine's size (YAML tree, spec, positions)
/// and frees it on the loading thread, so that is where to call this.
pub fn release_free_heap() {
    if let Some(release) = RELEASE_FREE_HEAP.get() {
        release();
    }
}
