//! `nodb-bench recovery`: how long a data view that starts takes to serve
//! the head, end to end.
//!
//! A chronicler and the warehouse data view run as their own processes on
//! loopback, each measurement with a fresh data directory. This process
//! seeds --products products with `stock/corrected` and waits for the
//! view's snapshot at the seed's last seq (a checkpoint: the seed ends on
//! a multiple of the view's checkpoint interval); then it kills the view,
//! posts a tail of --tail `stock/sold` actions (each product once, as
//! `cargo bench -p nodb-warehouse --bench recovery` does), starts the view
//! again on the same snapshots, and times it from the spawn to the first
//! `GET /health` that says it is at the tail's last seq. That is the
//! snapshot's load, the tail read from the chronicler over its stream,
//! parsed and applied, and the checkpoints the view writes meanwhile: all
//! a restart costs. The in-process bench times the load and the apply
//! alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::cpu::cpu_time;
use super::history::wait_for_seq;
use super::limits::NO_LIMITS;
use super::pipeline::{batch_body, binaries, metric, post, run_order, supported_flags};
use super::start_chronicler_bin;
use super::views::start_dataview_bin;

/// A data view's restart: its snapshot loaded, then a long tail applied.
///
/// Starts `nodb chronicler` (its dispatch rate limits off) and `nodb
/// dataview --app warehouse` with a fresh data directory; seeds --products
/// products and waits for the view's checkpoint at the seed's last seq;
/// kills the view; posts --tail sales; starts the view again and reports
/// the time from its spawn until `GET /health` shows the tail's last seq,
/// with the view's CPU time over it, the time its reducers took, the
/// checkpoints it skipped, and the first `/health` answer's time and seq.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench recovery
  target/release/nodb-bench recovery --nodb /tmp/old/nodb --nodb target/release/nodb --rounds 2

Target: 1,000,000 products and a 1,000,000-action tail served at the head
in <= 3 s. The time is known to within one poll (--poll-ms).")]
pub struct RecoveryArgs {
    /// Where to put the data directories (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// A `nodb` binary to measure; repeat to measure several side by side
    /// (default: the `nodb` next to nodb-bench).
    #[arg(long = "nodb", value_name = "PATH")]
    binaries: Vec<PathBuf>,
    /// Products seeded, and in the snapshot: a multiple of --checkpoint-every.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    products: u64,
    /// `stock/sold` actions after the snapshot.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    tail: u64,
    /// The data view's checkpoint interval (`--snapshot-every`).
    #[arg(long, value_name = "SEQS", default_value_t = 10_000)]
    checkpoint_every: u64,
    /// Actions per `POST /actions`.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    batch: u64,
    /// Measurements of each binary.
    #[arg(long, value_name = "N", default_value_t = 1)]
    rounds: usize,
    /// Milliseconds between polls of the view's seq.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    poll_ms: u64,
}

/// The most a seed, a snapshot or a restart may take.
const LIMIT: Duration = Duration::from_secs(600);

/// What one restart took.
struct Restart {
    /// Spawn to the first `/health` at the tail's last seq.
    total: Duration,
    /// Spawn to the first `/health` answer, and the seq it gave.
    first_answer: Duration,
    first_seq: u64,
    /// The view's CPU time from its spawn to the head.
    cpu: Option<Duration>,
    /// Of that, the time its reducers took, counted as each batch's wall
    /// time (`nodb_dataview_apply_seconds`), and the checkpoints it skipped.
    apply: Option<f64>,
    skipped: Option<f64>,
}

/// Runs the benchmark.
pub async fn run(args: &RecoveryArgs) -> anyhow::Result<()> {
    if args.products == 0 || args.tail == 0 || args.batch == 0 || args.rounds == 0 || args.poll_ms == 0 {
        bail!("--products, --tail, --batch, --rounds and --poll-ms must be positive");
    }
    if args.checkpoint_every == 0 || !args.products.is_multiple_of(args.checkpoint_every) {
        bail!("--products must be a multiple of --checkpoint-every, so that the seed ends on a checkpoint");
    }
    let binaries = binaries(&args.binaries)?;
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    println!(
        "recovery: a snapshot of {} products, then {} stock/sold actions after it; the data view restarted \
         (checkpoints every {} seqs), its seq polled every {} ms",
        args.products, args.tail, args.checkpoint_every, args.poll_ms
    );
    for (i, bin) in binaries.iter().enumerate() {
        println!("  [{}] {}", i + 1, bin.display());
    }
    println!(
        "\n{:<5} {:>5} {:>12} {:>22} {:>12} {:>10} {:>10} {:>8}",
        "nodb", "round", "to the head", "first /health (seq)", "tail a/s", "view CPU", "applying", "skipped"
    );
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); binaries.len()];
    for round in 0..args.rounds {
        for bin in run_order(binaries.len(), round) {
            let dir = tmp.path().join(format!("round{round}-nodb{bin}"));
            std::fs::create_dir(&dir)?;
            let r = measure(args, &binaries[bin], &dir)
                .await
                .with_context(|| format!("[{}] {}, round {}", bin + 1, binaries[bin].display(), round + 1))?;
            let secs = |s: Option<f64>| s.map_or_else(|| "-".into(), |s| format!("{s:.2} s"));
            println!(
                "{:<5} {:>5} {:>12} {:>22} {:>12.0} {:>10} {:>10} {:>8}",
                format!("[{}]", bin + 1),
                round + 1,
                format!("{:.2} s", r.total.as_secs_f64()),
                format!("{:.2} s ({})", r.first_answer.as_secs_f64(), r.first_seq),
                args.tail as f64 / r.total.as_secs_f64(),
                secs(r.cpu.map(|c| c.as_secs_f64())),
                secs(r.apply),
                r.skipped.map_or_else(|| "-".into(), |n| format!("{n:.0}")),
            );
            totals[bin].push(r.total.as_secs_f64());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("\ntarget: at the head in <= 3 s");
    for (i, mut t) in totals.into_iter().enumerate() {
        t.sort_by(f64::total_cmp);
        let (Some(best), Some(worst)) = (t.first(), t.last()) else { continue };
        println!(
            "  [{}] {:.2}–{:.2} s: {}",
            i + 1,
            best,
            worst,
            if *worst <= 3.0 { "met in every round" } else { "missed" }
        );
    }
    Ok(())
}

/// One measurement with `bin` in `dir`: seed, snapshot, tail, restart.
async fn measure(args: &RecoveryArgs, bin: &Path, dir: &Path) -> anyhow::Result<Restart> {
    let no_limits = supported_flags(bin, "chronicler", &NO_LIMITS);
    let (_chronicler, chronicler_addr) = start_chronicler_bin(bin, &dir.join("nodb"), None, &no_limits)?;
    let every = args.checkpoint_every.to_string();
    let view_flags = ["--snapshot-every", every.as_str()];
    let actions_url = format!("http://{chronicler_addr}/actions");
    let http = reqwest::Client::new();

    // The seed, and the view's checkpoint at its last seq.
    let (view, view_addr) = start_dataview_bin(bin, dir, &chronicler_addr, None, &view_flags)?;
    let mut head = 0;
    for start in (0..args.products).step_by(args.batch as usize) {
        let end = (start + args.batch).min(args.products);
        let body = batch_body((start..end).map(|p| {
            format!(
                r#"{{"id":"seed:{}","type":"stock/corrected","payload":{{"product":"product{p}","location":"shelf","quantity":1000000000}}}}"#,
                p + 1
            )
        }));
        head = head.max(post(&http, &actions_url, body).await?);
    }
    if head != args.products {
        bail!("the seed ended at seq {head}, not {}: did something else write to the chronicler?", args.products);
    }
    wait_for_seq(&http, &format!("http://{view_addr}"), head, LIMIT).await?;
    let snapshot = dir.join("snapshots").join("warehouse").join(format!("{head:020}.snapshot"));
    let waited = Instant::now();
    while !snapshot.is_file() {
        if waited.elapsed() > LIMIT {
            bail!("no snapshot at seq {head} after {} s", LIMIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Killed: a restart reads the snapshot, not anything the view had.
    drop(view);

    // The tail, each product sold once.
    for start in (0..args.tail).step_by(args.batch as usize) {
        let end = (start + args.batch).min(args.tail);
        let body = batch_body((start..end).map(|i| {
            let p = i.wrapping_mul(7919) % args.products;
            format!(
                r#"{{"id":"sale:{}","type":"stock/sold","payload":{{"product":"product{p}","location":"shelf","quantity":1}}}}"#,
                i + 1
            )
        }));
        head = head.max(post(&http, &actions_url, body).await?);
    }

    // The restart, timed from the spawn.
    let started = Instant::now();
    let (view, view_addr) = start_dataview_bin(bin, dir, &chronicler_addr, None, &view_flags)?;
    let health = format!("http://{view_addr}/health");
    let poll = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = None;
    loop {
        tick.tick().await;
        let Ok(resp) = poll.get(&health).send().await else { continue };
        let Ok(body) = resp.json::<serde_json::Value>().await else { continue };
        let at = started.elapsed();
        let seq = body["seq"].as_u64().unwrap_or(0);
        let (first_answer, first_seq) = *first.get_or_insert((at, seq));
        if seq >= head {
            let cpu = cpu_time(view.pid());
            let dataview = format!("http://{view_addr}");
            let apply = metric(&poll, &dataview, "nodb_dataview_apply_seconds_total").await;
            let skipped = metric(&poll, &dataview, "nodb_dataview_checkpoints_skipped_total").await;
            return Ok(Restart { total: at, first_answer, first_seq, cpu, apply, skipped });
        }
        if at > LIMIT {
            bail!("the restarted data view is at seq {seq}, not {head}, after {} s", at.as_secs());
        }
    }
    // `view` and the chronicler drop here, and on every early return: both
    // processes are killed.
}
