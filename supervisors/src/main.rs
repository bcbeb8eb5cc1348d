//! The `reco` binary: see `reco --help`.

/// A node holds a million small per-member allocations (actor, mailbox,
/// cache entry, recent events) and churns small buffers on every message:
/// mimalloc packs them tighter than the system allocator and is faster at
/// it (the resident-members and recommend scenarios of `reco-sim bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    reco_supervisors::cli::main()
}
