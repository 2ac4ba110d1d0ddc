//! `nodb diff OLD NEW`: the RFC 6902 patch from one JSON document to another.

use nodb_shared::Tree;

use crate::input::{at_most_one_stdin, print_json, read_json};

/// Print the RFC 6902 JSON Patch that turns OLD into NEW.
///
/// The patch is minimal where it matters: a changed leaf is one `replace`,
/// an appended array element one `add …/-`, an inserted or removed element
/// one operation. Object keys are compared in sorted order.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  echo '{\"a\":1,\"b\":[1]}' > old.json\n  echo '{\"a\":2,\"b\":[1,2]}' > new.json\n  nodb diff old.json new.json\n  [{\"op\":\"replace\",\"path\":\"/a\",\"value\":2},{\"op\":\"add\",\"path\":\"/b/-\",\"value\":2}]\n\nExit status: 0 on success, 2 on any error (unreadable file, invalid JSON)."
)]
pub struct Args {
    /// The original document (`-` for standard input).
    old: String,
    /// The changed document (`-` for standard input).
    new: String,
    /// Print the patch indented over several lines.
    #[arg(long)]
    pretty: bool,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    at_most_one_stdin(&[&args.old, &args.new])?;
    let old: Tree = read_json(&args.old, "JSON document")?;
    let new: Tree = read_json(&args.new, "JSON document")?;
    print_json(&nodb_shared::diff::diff(&old, &new), args.pretty)
}
