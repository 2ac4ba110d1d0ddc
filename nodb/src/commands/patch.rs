//! `nodb patch DOC PATCH`: apply an RFC 6902 JSON Patch to a document.

use nodb_shared::Tree;

use crate::input::{at_most_one_stdin, print_json, read_json};

/// Print DOC with the RFC 6902 JSON Patch in PATCH applied.
///
/// All six operations are supported (add, remove, replace, move, copy,
/// test). The patch applies atomically: if any operation fails, nothing is
/// printed and the error names the operation's index, path and reason.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  echo '{\"stock\":{\"apple\":3}}' > doc.json\n  echo '[{\"op\":\"test\",\"path\":\"/stock/apple\",\"value\":3},{\"op\":\"replace\",\"path\":\"/stock/apple\",\"value\":2}]' > patch.json\n  nodb patch doc.json patch.json\n  {\"stock\":{\"apple\":2}}\n\nExit status: 0 on success, 2 on any error (unreadable file, invalid JSON or patch, failing operation)."
)]
pub struct Args {
    /// The document to patch (`-` for standard input).
    doc: String,
    /// The JSON Patch: an array of operations (`-` for standard input).
    patch: String,
    /// Print the document indented over several lines.
    #[arg(long)]
    pretty: bool,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    at_most_one_stdin(&[&args.doc, &args.patch])?;
    let doc: Tree = read_json(&args.doc, "JSON document")?;
    let patch: json_patch::Patch = read_json(&args.patch, "JSON Patch")?;
    let patched = nodb_shared::patch::apply(&doc, &patch)
        .map_err(|e| anyhow::anyhow!("patch failed at operation {} ({} {:?}): {}", e.index, e.op, e.path, e.reason))?;
    print_json(&patched, args.pretty)
}
