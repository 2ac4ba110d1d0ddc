//! The `nodb` command line, as a library: the `nodb` binary is
//! `nodb::main()`, and an application with views, envoys or cascades of its
//! own runs the same command line with
//! `nodb::main_with(Registry::built_in().with(…).with_envoys(…).with_cascades(…))`
//! (see `docs/apps.md`).
//!
//! [`main_with`] parses the command line and hands each subcommand to its
//! module under `commands/`. Every error ends the process with exit code 2
//! and one line on stderr that names what is wrong.

mod commands;
mod guard;
mod input;
mod limits;
mod registry;
mod service;

use std::io::Write as _;
use std::process::ExitCode;

pub use nodb_dataview::app::App;
pub use registry::{Bundle, MakeCascades, MakeEnvoys, MakeServices, Registry};

use clap::{Parser, Subcommand};

/// nodb: a Redux-style state server. Clients dispatch actions; a durable,
/// exactly-once history of them is the data; views computed from it by pure
/// reducers stream JSON patches to every client.
#[derive(Parser)]
#[command(
    name = "nodb",
    version,
    after_help = "Examples:\n  nodb up                            the demo on http://127.0.0.1:7400/ (everything in one process)\n  nodb chronicler --data ./nodb-data   run the durable history on 127.0.0.1:7401\n  nodb log verify --data ./nodb-data  check every checksum and the hash chain\n  nodb keygen nodb-key.jwk           make a signing key; then `nodb up --auth-key nodb-key.jwk`\n  nodb diff old.json new.json        print the RFC 6902 patch from old to new\n  nodb patch doc.json patch.json     print doc.json with the patch applied\n  nodb replay --against URL          replay the history with this binary's reducers and compare\n\nRun `nodb <command> --help` for the details of each command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Up(commands::up::Args),
    Chronicler(commands::chronicler::Args),
    Dataview(commands::dataview::Args),
    Envoy(commands::envoy::Args),
    Cascade(commands::cascade::Args),
    Supplier(commands::supplier::Args),
    Log(commands::log::Args),
    Diff(commands::diff::Args),
    Patch(commands::patch::Args),
    Replay(commands::replay::Args),
    Keygen(commands::token::KeygenArgs),
    Token(commands::token::TokenArgs),
}

/// Runs the `nodb` command line with the built-in applications.
pub fn main() -> ExitCode {
    main_with(Registry::built_in())
}

/// Runs the `nodb` command line with the applications in `apps`, so that
/// `nodb dataview`, `envoy`, `cascade` and `up` with `--app NAME` run an
/// application's own views, envoys and cascades.
pub fn main_with(apps: Registry) -> ExitCode {
    let cli = Cli::parse();
    service::init_logging();
    let result = match cli.command {
        Command::Up(args) => commands::up::run(&args, &apps),
        Command::Chronicler(args) => commands::chronicler::run(&args),
        Command::Dataview(args) => commands::dataview::run(&args, &apps),
        Command::Envoy(args) => commands::envoy::run(&args, &apps),
        Command::Cascade(args) => commands::cascade::run(&args, &apps),
        Command::Supplier(args) => commands::supplier::run(&args),
        Command::Log(args) => commands::log::run(&args),
        Command::Diff(args) => commands::diff::run(&args),
        Command::Patch(args) => commands::patch::run(&args),
        Command::Replay(args) => commands::replay::run(&args, &apps),
        Command::Keygen(args) => commands::token::keygen(&args),
        Command::Token(args) => commands::token::token(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `nodb replay` found views that differ; it has said how.
        Err(e) if e.is::<commands::replay::Differs>() => ExitCode::from(1),
        Err(e) => {
            // One line, whatever the chain: "nodb: outer: inner" (and no
            // panic when stderr has gone away).
            let _ = writeln!(std::io::stderr(), "nodb: {e:#}");
            ExitCode::from(2)
        }
    }
}
