//! `nodb log verify` and `nodb log tail`: looking at a log on disk.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use nodb_chronicler::log::record::hex;
use nodb_chronicler::log::scan::scan;

/// Inspect the log in a data directory (safe while a chronicler runs).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Verify(VerifyArgs),
    Tail(TailArgs),
}

/// Check every record's checksum and the whole hash chain.
///
/// Prints the head seq and the chain hash after it, or the first bad record:
/// its segment file, byte offset and seq.
#[derive(clap::Args)]
#[command(after_help = "Example:
  nodb log verify --data ./nodb-data
  ok: 2 segments, 1042 records
  head seq: 1042
  chain hash: 5f1c…

Exit status: 0 if the log is intact, 2 if it is damaged or cannot be read.")]
struct VerifyArgs {
    /// The data directory (the log is in DIR/log).
    #[arg(long, value_name = "DIR", default_value = "./nodb-data")]
    data: PathBuf,
}

/// Print committed actions as JSON lines.
#[derive(clap::Args)]
#[command(after_help = "Example:
  nodb log tail --data ./nodb-data --from 100 | head

Exit status: 0 on success, 2 on any error.")]
struct TailArgs {
    /// The data directory (the log is in DIR/log).
    #[arg(long, value_name = "DIR", default_value = "./nodb-data")]
    data: PathBuf,
    /// The first seq to print.
    #[arg(long, value_name = "SEQ", default_value_t = 1)]
    from: u64,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Verify(a) => verify(a),
        Command::Tail(a) => tail(a),
    }
}

fn log_dir(data: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = data.join("log");
    if !dir.is_dir() {
        anyhow::bail!("no log at {}: is --data the chronicler's data directory?", dir.display());
    }
    Ok(dir)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let dir = log_dir(&args.data)?;
    let mut records = 0u64;
    let scanned = scan(&dir, &mut |_| records += 1)?;
    println!("ok: {} segments, {records} records", scanned.segments.len());
    println!("head seq: {}", scanned.head);
    println!("chain hash: {}", hex(&scanned.hash));
    if let Some(t) = scanned.torn {
        println!(
            "note: {} ends in {} bytes of an unfinished write at offset {} ({}); it was never acknowledged and the next start truncates it",
            t.segment.display(),
            t.bytes,
            t.offset,
            t.reason
        );
    }
    Ok(())
}

fn tail(args: &TailArgs) -> anyhow::Result<()> {
    let dir = log_dir(&args.data)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    scan(&dir, &mut |rec| {
        if rec.seq >= args.from
            && failed.is_none()
            && let Err(e) = out.write_all(&rec.json).and_then(|()| out.write_all(b"\n"))
        {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        // A closed pipe (`| head`) is not an error.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("cannot write to standard output");
        }
        return Ok(());
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
        _ => Ok(()),
    }
}
