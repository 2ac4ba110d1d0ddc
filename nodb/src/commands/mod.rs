//! One module per subcommand: each has its `Args` and a `run`.

pub mod diff;
pub mod patch;
