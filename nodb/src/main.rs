//! The `nodb` binary: the whole command line lives in the library, so that
//! applications can build the same binary with their own views.

/// mimalloc rather than the system allocator: a data view applies a batch
/// with each view on a thread of its own, and glibc's allocator made those
/// threads contend for its arenas (slower than one thread).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nodb::main()
}
