//! The `ingress-authz` binary: the allocator, then [`ingress_authz::run`].

use std::process::ExitCode;

use clap::Parser;

/// Every check allocates and frees a few dozen small blocks (the decoded
/// CheckRequest's header map above all) on whichever runtime worker runs
/// it; mimalloc's per-thread free lists make that markedly cheaper than
/// glibc's arenas (in the benchmark, CPU per check fell by about a fifth).
/// It is built without transparent huge pages (`no_thp` in Cargo.toml):
/// with them, touching one 4 KiB page can make 2 MiB resident, which added
/// about 3 MiB to the resident set of a 10,000-rule config.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands mimalloc's free pages back now rather than after its purge delay.
#[allow(unsafe_code)]
fn mimalloc_collect() {
    // SAFETY: mi_collect only walks mimalloc's own structures; it has no
    // preconditions and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

fn main() -> ExitCode {
    ingress_authz::memory::on_release_free_heap(mimalloc_collect);
    ingress_authz::run(ingress_authz::cli::Cli::parse())
}
