//! One module per subcommand: each has its `Args` and a `run`.

pub mod cascade;
pub mod chronicler;
pub mod dataview;
pub mod diff;
pub mod envoy;
pub mod log;
pub mod patch;
pub mod replay;
pub mod supplier;
pub mod token;
pub mod up;
