//! The `nodb` binary: the whole command line lives in the library, so that
//! applications can build the same binary with their own views.

fn main() -> std::process::ExitCode {
    nodb::main()
}
