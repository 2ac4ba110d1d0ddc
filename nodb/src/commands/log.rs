//! `nodb log verify`, `nodb log tail` and `nodb log set-head`: looking at a log on disk, or (verify) in a JetStream stream.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use nodb_chronicler::log::LogError;
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
    SetHead(SetHeadArgs),
}

/// Record the log's current end in its HEAD file, after making sure the log
/// is whole.
///
/// The HEAD file records how far the log has reached, so that missing or
/// shortened segments are noticed. When it is lost or damaged the
/// chronicler refuses to start, since it can no longer tell. If the
/// segments are known to be complete (restored together from a backup,
/// say), this makes a new HEAD file at their end. It refuses while a
/// chronicler runs, and on damaged segments.
#[derive(clap::Args)]
#[command(after_help = "Example:
  nodb log set-head --data ./nodb-data
  head file: seq 1042, chain hash 5f1c…

Exit status: 0 when the head file was written, 2 on any error.")]
struct SetHeadArgs {
    /// The data directory (the log is in DIR/log).
    #[arg(long, value_name = "DIR", default_value = "./nodb-data")]
    data: PathBuf,
}

/// Check every record's checksum, the whole hash chain, the commit mark
/// that ends each write, and that the log reaches as far as its HEAD file
/// says (with --log: that the JetStream stream has every message).
///
/// Prints the head seq and the chain hash after it, or the first damage:
/// its segment file, byte offset and seq. With `--expect SEQ:HASH` it also
/// checks the log against a checkpoint kept elsewhere (the `seq` and `hash`
/// that `GET /head` answered, or a `chain hash` this command printed).
#[derive(clap::Args)]
#[command(after_help = "Example:
  nodb log verify --data ./nodb-data --expect 1000:3b7a…
  ok: 2 segments, 1042 records
  head seq: 1042
  chain hash: 5f1c…
  head file: seq 1042 (the log reaches it)
  checkpoint seq 1000: matches

  nodb log verify --log nats://127.0.0.1:4222
  ok: stream NODB, 310 writes, 1042 records
  head seq: 1042
  chain hash: 5f1c…

Exit status: 0 if the log is intact, 2 if it is damaged, does not match a
checkpoint, or cannot be read.")]
struct VerifyArgs {
    /// The data directory (the log is in DIR/log).
    #[arg(long, value_name = "DIR", default_value = "./nodb-data")]
    data: PathBuf,
    /// Verify the replicated log in a NATS JetStream stream instead
    /// (`nodb chronicler --log`): nats://HOST:PORT, comma-separated.
    #[arg(long, value_name = "nats://HOST:PORT[,…]")]
    log: Option<String>,
    /// The JetStream stream's name (with --log).
    #[arg(long, value_name = "NAME", default_value = "NODB", requires = "log")]
    stream: String,
    /// A checkpoint the log must match: the chain hash (hex) at a seq.
    #[arg(long, value_name = "SEQ:HASH", value_parser = parse_checkpoint)]
    expect: Vec<(u64, String)>,
    /// A signed checkpoint the log must match: the `signed` token of `GET
    /// /head`, checked with --auth-key first.
    #[arg(long, value_name = "TOKEN", requires = "auth_key")]
    expect_signed: Vec<String>,
    /// The key file(s) that signed the --expect-signed checkpoints.
    #[arg(long, value_name = "FILE")]
    auth_key: Vec<PathBuf>,
}

fn parse_checkpoint(s: &str) -> Result<(u64, String), String> {
    let (seq, hash) = s.split_once(':').ok_or("expected SEQ:HASH, as in 1000:3b7a…")?;
    let seq = seq.parse().map_err(|_| format!("{seq:?} is not a seq"))?;
    let hash = hash.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the hash must be 64 hex digits".into());
    }
    Ok((seq, hash))
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
        Command::SetHead(a) => {
            let r = nodb_chronicler::log::file_log::set_head(&log_dir(&a.data)?)?;
            println!("head file: seq {}, chain hash {}", r.seq, hex(&r.hash));
            Ok(())
        }
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
    let mut expect = args.expect.clone();
    if !args.expect_signed.is_empty() {
        let keys = nodb_auth::KeySet::load(&args.auth_key).context("--auth-key")?;
        for token in &args.expect_signed {
            let c = keys.verify_checkpoint(token).context("--expect-signed: not a checkpoint signed by --auth-key")?;
            expect.push((c.chain_seq, c.chain_hash.to_ascii_lowercase()));
        }
    }
    if let Some(servers) = &args.log {
        return verify_jetstream(servers, &args.stream, &expect);
    }
    let dir = log_dir(&args.data)?;
    let mut records = 0u64;
    let mut found: Vec<Option<String>> = vec![None; expect.len()];
    let pass = |records: &mut u64, found: &mut Vec<Option<String>>| {
        *records = 0;
        found.iter_mut().for_each(|f| *f = None);
        scan(&dir, &mut |rec| {
            *records += 1;
            for ((seq, _), f) in expect.iter().zip(found.iter_mut()) {
                if *seq == rec.seq {
                    *f = Some(hex(&rec.hash));
                }
            }
        })
    };
    // A running chronicler may be in the middle of a write while it is
    // read: damage that is gone on a second look was that write.
    let scanned = match pass(&mut records, &mut found) {
        Err(LogError::Corrupt { .. } | LogError::Shortened { .. }) => pass(&mut records, &mut found)?,
        Err(LogError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            pass(&mut records, &mut found)?
        }
        other => other?,
    };
    for f in found.iter_mut().zip(&expect).filter(|(_, (seq, _))| *seq == 0).map(|(f, _)| f) {
        *f = Some(hex(&nodb_chronicler::log::record::GENESIS));
    }
    check_expected(&expect, &found, scanned.head)?;
    println!("ok: {} segments, {records} records", scanned.segments.len());
    println!("head seq: {}", scanned.head);
    println!("chain hash: {}", hex(&scanned.hash));
    match scanned.recorded {
        Some(r) => println!("head file: seq {} (the log reaches it)", r.seq),
        None => println!("head file: none (a log written before head files, or the file was removed)"),
    }
    for (seq, _) in &expect {
        println!("checkpoint seq {seq}: matches");
    }
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

/// Fails unless each checkpoint's hash is the one `found` at its seq.
fn check_expected(expect: &[(u64, String)], found: &[Option<String>], head: u64) -> anyhow::Result<()> {
    for ((seq, expected), f) in expect.iter().zip(found) {
        match f {
            None => anyhow::bail!(
                "the log ends at seq {head}, before the checkpoint at seq {seq}: acknowledged history is missing"
            ),
            Some(h) if h != expected => anyhow::bail!(
                "the chain hash at seq {seq} is {h}, not {expected} as the checkpoint says: the log was rewritten"
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// `verify --log`: reads the stream whole through one connection.
fn verify_jetstream(servers: &str, stream: &str, expect: &[(u64, String)]) -> anyhow::Result<()> {
    use nodb_chronicler::log::jetstream::{JetStreamConfig, verify};
    let config =
        JetStreamConfig { stream: stream.to_string(), ..JetStreamConfig::parse(servers).map_err(anyhow::Error::msg)? };
    let seqs: Vec<u64> = expect.iter().map(|(seq, _)| *seq).collect();
    let (recovered, hashes) = crate::service::runtime()?.block_on(verify(&config, &seqs))?;
    let found: Vec<Option<String>> = hashes.iter().map(|h| h.as_ref().map(hex)).collect();
    check_expected(expect, &found, recovered.head)?;
    println!("ok: stream {stream}, {} writes, {} records", recovered.writes, recovered.head);
    println!("head seq: {}", recovered.head);
    println!("chain hash: {}", hex(&recovered.hash));
    for (seq, _) in expect {
        println!("checkpoint seq {seq}: matches");
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
