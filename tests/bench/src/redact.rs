//! `nodb-bench redact`: what a redaction (`@@nodb/redact`) costs over a
//! long warehouse history, and how fast `nodb replay` and a data view's
//! recovery from scratch go over the same history.
//!
//! A chronicler (its dispatch rate limits off) and the warehouse data view
//! following it run as their own processes on loopback. This process
//! commits the history — a `stock/corrected` per product (a billion on the
//! shelf), then `stock/sold` and, one in ten, `stock/corrected` across the
//! products, in HTTP batches from a few clients — and waits for the view
//! and its checkpoints to reach the head. Then:
//!
//! 1. `nodb replay --app warehouse --chronicler URL` runs as a process over
//!    that history, timed from its start to its exit; and a second data
//!    view, with an empty snapshot directory, is timed from its start to
//!    the head (then stopped).
//! 2. A client opens the `stock` view's stream, and for each depth D (10
//!    first, for scale, then `--depths`) an admin redacts the seq D before
//!    the head: the time from the dispatch, and from the chronicler's ack,
//!    to the patch at the redaction's seq reaching the client; with what
//!    the data view logged of its rebuild (`redaction: the views are
//!    rebuilt`: actions replayed, time taken), its `/metrics`
//!    (`nodb_dataview_history_replayed`) and its CPU time meanwhile.
//!
//! Everything is reported, nothing asserted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use nodb_client::{ServiceUrl, StreamOptions, ViewClient, ViewStream};
use nodb_shared::protocol::ServerMessage;
use nodb_tests::Service;

use super::cpu::cpu_time;
use super::history::wait_for_seq;
use super::limits::NO_LIMITS;
use super::pipeline::{batch_body, post};
use super::stats::fmt_duration;
use super::{nodb_bin, start_chronicler_bin};

/// Redaction latency at several depths, and `nodb replay` speed, over one
/// long warehouse history.
///
/// Commits --products corrections, then --actions sales and corrections
/// (raised so that the deepest depth lands after the corrections of the
/// seed), and waits for the data view and its checkpoints
/// (--snapshot-every). Times `nodb replay --app warehouse --chronicler URL`
/// over that history, and a second data view recovering it from scratch.
/// Then, with a client on the `stock` view's stream, redacts the seq 10
/// before the head, then the seq each of --depths before the head, one at
/// a time, and reports the time from the dispatch (and from the ack) to the
/// patch at the redaction's seq, the actions the data view's rebuild
/// replayed and the time it took.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench redact
  target/release/nodb-bench redact --actions 100000 --depths 10000,50000     (a quick run)

A rebuild replays from the newest checkpoint before the redacted seq, so it
replays about the depth plus (redacted seq mod --snapshot-every) actions, each
twice (with and without the redaction, side by side). Target for `nodb replay`:
300,000 actions/s. Compare ratios, not absolute numbers: the machine is shared.")]
pub struct RedactArgs {
    /// Where to put the data directories (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Actions committed after the seed: at least the deepest depth plus
    /// 4,321 (so the deepest redaction names a sale, not the seed, and
    /// lands off a checkpoint).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    actions: u64,
    /// How far behind the head the redacted seqs are, one redaction each
    /// (a redaction 10 behind the head always runs first).
    #[arg(long, value_name = "SEQS", value_delimiter = ',', default_value = "10000,1000000")]
    depths: Vec<u64>,
    /// Products (the size of the `stock` view); one correction each first.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    products: u64,
    /// The data views' checkpoint interval (`--snapshot-every`).
    #[arg(long, value_name = "SEQS", default_value_t = 10_000)]
    snapshot_every: u64,
    /// Clients committing the history at once, one request in flight each.
    #[arg(long, value_name = "N", default_value_t = 4)]
    clients: usize,
    /// Actions per `POST /actions` while committing the history.
    #[arg(long, value_name = "N", default_value_t = 500)]
    batch: u64,
    /// Skip the second data view's recovery from scratch.
    #[arg(long)]
    no_recovery: bool,
}

/// The redaction measured first, for scale: a seq just behind the head.
const SCALE_DEPTH: u64 = 10;

/// What the history holds after the deepest depth, at least: the seed's
/// corrections stay out of reach, and the redacted seq is off a checkpoint.
const DEPTH_MARGIN: u64 = 4_321;

/// The data views' log filter: warnings, and the follower's lines (the
/// rebuild of a redaction, catching up).
const LOG_FILTER: &str = "warn,nodb_dataview::follow=info";

/// The longest the benchmark waits for one thing (the view to catch up, a
/// rebuild, a replay).
const PATIENCE: Duration = Duration::from_secs(1800);

/// The line the data view logs when a redaction's rebuild is done.
const REBUILT: &str = "redaction: the views are rebuilt";

/// Runs the benchmark.
pub async fn run(args: &RedactArgs) -> anyhow::Result<()> {
    if args.products == 0 || args.snapshot_every == 0 || args.clients == 0 || args.batch == 0 {
        bail!("--products, --snapshot-every, --clients and --batch must be positive");
    }
    if args.depths.contains(&0) {
        bail!("a depth must be positive");
    }
    let deepest = args.depths.iter().copied().chain([SCALE_DEPTH]).max().unwrap_or(SCALE_DEPTH);
    let actions = args.actions.max(deepest + DEPTH_MARGIN);
    let bin = nodb_bin()?;
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let (_chronicler, chronicler_addr) = start_chronicler_bin(&bin, &tmp.path().join("nodb"), None, &NO_LIMITS)?;
    let chronicler = format!("http://{chronicler_addr}");
    let snapshots = tmp.path().join("snapshots");
    let view = start_dataview(&bin, &chronicler, &snapshots, args.snapshot_every)?;
    let dataview = view.url().to_string();
    let http = reqwest::Client::new();
    println!(
        "redact: {} corrections, then {actions} sales and corrections over {} products; checkpoint every {} seqs",
        args.products, args.products, args.snapshot_every
    );
    if actions > args.actions {
        println!("  (--actions raised from {} so the deepest depth, {deepest}, lands after the seed)", args.actions);
    }

    // The history.
    let started = Instant::now();
    let head = commit_history(&http, &chronicler, args, actions).await?;
    let ingest = started.elapsed();
    println!(
        "ingest: {head} actions committed in {:.1} s ({:.0} actions/s, {} clients, batches of {}); head seq {head}",
        ingest.as_secs_f64(),
        head as f64 / ingest.as_secs_f64().max(1e-9),
        args.clients,
        args.batch
    );
    wait_for_seq(&http, &dataview, head, PATIENCE).await?;
    let checkpoints = head / args.snapshot_every;
    let waited = Instant::now();
    while count_checkpoints(&snapshots, args.snapshot_every) < checkpoints && waited.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "the data view reached the head {:.1} s after the first action; {} of {checkpoints} checkpoints written",
        started.elapsed().as_secs_f64(),
        count_checkpoints(&snapshots, args.snapshot_every)
    );

    // `nodb replay` and a recovery from scratch, over the history as it is.
    println!("\nreplay over the {head} actions (no redaction in them yet):");
    let replay = run_replay(&bin, &chronicler, tmp.path()).await?;
    let replay_wall_rate = head as f64 / replay.wall.as_secs_f64().max(1e-9);
    let replay_rate = replay.rate.unwrap_or(replay_wall_rate);
    println!("  nodb replay --app warehouse --chronicler {chronicler}");
    println!("    its report: {}", replay.line);
    println!(
        "    start to exit {:.2} s ({replay_wall_rate:.0} actions/s); CPU {} ({})",
        replay.wall.as_secs_f64(),
        opt_secs(replay.cpu),
        per_action(replay.cpu, head)
    );
    println!(
        "    target >= 300000 actions/s: {} ({replay_rate:.0}/s by its own clock; {} of a core while it ran)",
        if replay_rate >= 300_000.0 { "met" } else { "missed" },
        replay.cpu.map_or_else(
            || "-".into(),
            |c| format!("{:.0}%", 100.0 * c.as_secs_f64() / replay.wall.as_secs_f64().max(1e-9))
        )
    );
    if !args.no_recovery {
        let (took, cpu) = recover(&bin, &chronicler, &tmp.path().join("recovery"), args.snapshot_every, head).await?;
        let rate = head as f64 / took.as_secs_f64().max(1e-9);
        println!("  a second data view from scratch (empty snapshot dir), from its start to /health at seq {head}:");
        println!(
            "    {:.2} s ({rate:.0} actions/s); CPU {} ({})",
            took.as_secs_f64(),
            opt_secs(cpu),
            per_action(cpu, head)
        );
        println!(
            "  nodb replay / data view recovery: {:.2}x the speed (start to exit against start to head)",
            replay_wall_rate / rate
        );
        if let (Some(r), Some(v)) = (replay.cpu, cpu) {
            println!("    CPU per action: data view / replay = {:.2}x", v.as_secs_f64() / r.as_secs_f64().max(1e-9));
        }
    }

    // The redactions, one at a time, with a client on the stream.
    let stock = ViewClient::new(ServiceUrl::parse(&dataview)?, "stock");
    let mut stream = stock.open(&StreamOptions::default()).await?;
    match stream.next_message().await? {
        ServerMessage::Snapshot { seq, .. } if seq == head => {}
        other => bail!("the stream opened with {other:?}, not the snapshot at seq {head}"),
    }
    let (tx, mut seen) = tokio::sync::mpsc::channel(1024);
    let reader = tokio::spawn(read_stream(stream, tx));
    println!(
        "\n{:>8} {:>9} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>4}",
        "depth",
        "redacted",
        "at seq R",
        "dispatch→R",
        "ack→R",
        "ack",
        "rebuild",
        "replayed",
        "replayed/s",
        "metrics",
        "view CPU",
        "ops"
    );
    let mut head = head;
    let depths: Vec<u64> = [SCALE_DEPTH].into_iter().chain(args.depths.iter().copied()).collect();
    let mut outcomes = Vec::new();
    for (i, &depth) in depths.iter().enumerate() {
        let Some(target) = head.checked_sub(depth).filter(|&s| s > 0) else {
            println!("{depth:>8} skipped: the history is only {head} seqs long");
            continue;
        };
        let o = redact(&http, &chronicler, &view, &mut seen, i + 1, depth, target).await?;
        print_row(&o);
        head = o.at;
        outcomes.push(o);
    }
    reader.abort();

    println!("\nnotes:");
    println!(
        "  dispatch→R: from sending the redaction to the client holding the patch at its seq R; ack→R: from the \
         chronicler's ack; rebuild, replayed: the data view's `{REBUILT}` line (each action is replayed twice, side \
         by side: with the redaction and without); metrics: the growth of nodb_dataview_history_replayed; view CPU: \
         the data view's CPU time from the dispatch to the patch; ops: the operations in the `stock` patch at R"
    );
    for o in outcomes.iter().filter(|o| o.newly_rejected.is_some_and(|n| n > 0) || o.via_snapshot) {
        println!(
            "  depth {}: {} newly rejected; {}",
            o.depth,
            o.newly_rejected.unwrap_or(0),
            if o.via_snapshot { "the client got a snapshot, not a patch" } else { "one patch" }
        );
    }
    let warnings: Vec<String> =
        view.stderr().lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).map(str::to_string).collect();
    if !warnings.is_empty() {
        println!("  the data view warned {} times; the first:", warnings.len());
        for w in warnings.iter().take(5) {
            println!("    {w}");
        }
    }
    Ok(())
}

/// One redaction, measured.
struct Outcome {
    depth: u64,
    /// The redacted seq, and the redaction's own.
    target: u64,
    at: u64,
    /// Dispatch to ack, and dispatch to the patch at `at`.
    ack: Duration,
    patch: Duration,
    /// The operations in the patch at `at` (`None`: a snapshot came instead).
    ops: Option<usize>,
    /// Whether the client got a snapshot at `at` or later instead of a patch.
    via_snapshot: bool,
    /// From the data view's log line: actions replayed, time taken, actions
    /// newly rejected.
    replayed: Option<u64>,
    took: Option<Duration>,
    newly_rejected: Option<u64>,
    /// The growth of `nodb_dataview_history_replayed`.
    metric: Option<u64>,
    /// The data view's CPU time from the dispatch to the patch.
    cpu: Option<Duration>,
}

/// A CPU time in seconds, or `-`.
fn opt_secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// A CPU time per action, in microseconds, or `-`.
fn per_action(cpu: Option<Duration>, actions: u64) -> String {
    cpu.map_or_else(|| "-".into(), |c| format!("{:.1} µs/action", c.as_secs_f64() * 1e6 / actions.max(1) as f64))
}

fn print_row(o: &Outcome) {
    let opt = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), fmt_duration);
    let rate = match (o.replayed, o.took) {
        (Some(n), Some(t)) => format!("{:.0}", n as f64 / t.as_secs_f64().max(1e-9)),
        _ => "-".into(),
    };
    println!(
        "{:>8} {:>9} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>4}",
        o.depth,
        o.target,
        o.at,
        fmt_duration(o.patch),
        fmt_duration(o.patch.saturating_sub(o.ack)),
        fmt_duration(o.ack),
        opt(o.took),
        o.replayed.map_or_else(|| "-".into(), |n| n.to_string()),
        rate,
        o.metric.map_or_else(|| "-".into(), |n| n.to_string()),
        opt(o.cpu),
        o.ops.map_or_else(|| "-".into(), |n| n.to_string()),
    );
}

/// Redacts `target` (the `n`th redaction) and waits for the patch at the
/// redaction's seq on the stream whose messages come on `seen`.
async fn redact(
    http: &reqwest::Client,
    chronicler: &str,
    view: &Service,
    seen: &mut tokio::sync::mpsc::Receiver<(Seen, Instant)>,
    n: usize,
    depth: u64,
    target: u64,
) -> anyhow::Result<Outcome> {
    // Whatever came before (heartbeats) is not the answer.
    while seen.try_recv().is_ok() {}
    let dataview = view.url();
    let metric_before = metric(http, dataview, "nodb_dataview_history_replayed").await;
    let cpu_before = cpu_time(view.pid());
    let body = format!(
        r#"[{{"id":"ops:{n}","type":"@@nodb/redact","payload":{{"seqs":[{target}],"reason":"nodb-bench redact: depth {depth}"}}}}]"#
    );
    let sent = Instant::now();
    let at = post(http, &format!("{chronicler}/actions"), body).await?;
    let ack = sent.elapsed();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (patch, ops, via_snapshot) = loop {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Err(_) => bail!("no patch at seq {at} within {} s of the redaction", PATIENCE.as_secs()),
            Ok(None) => bail!("the view stream ended before the patch at seq {at}"),
            Ok(Some((Seen::Patch { from, seq, ops }, when))) if from <= at && seq >= at => {
                break (when - sent, Some(ops), false);
            }
            Ok(Some((Seen::Snapshot(seq), when))) if seq >= at => break (when - sent, None, true),
            Ok(Some(_)) => {}
        }
    };
    let cpu = match (cpu_before, cpu_time(view.pid())) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    // The log line comes before the patch leaves; give the pipe a moment.
    let mut line = None;
    for _ in 0..50 {
        line = rebuilt_line(&view.stderr(), at);
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let field = |name: &str| line.as_deref().and_then(|l| log_field(l, name));
    let metric_after = metric(http, dataview, "nodb_dataview_history_replayed").await;
    Ok(Outcome {
        depth,
        target,
        at,
        ack,
        patch,
        ops,
        via_snapshot,
        replayed: field("replayed").and_then(|v| v.parse().ok()),
        took: field("took").and_then(parse_debug_duration),
        newly_rejected: field("newly_rejected").and_then(|v| v.parse().ok()),
        metric: metric_after.zip(metric_before).map(|(a, b)| a.saturating_sub(b)),
        cpu,
    })
}

/// What the stream client saw, in short.
#[derive(Debug)]
enum Seen {
    /// A patch covering seqs `from` to `seq`, with `ops` operations.
    Patch { from: u64, seq: u64, ops: usize },
    /// A snapshot at a seq (a client resent its state).
    Snapshot(u64),
    /// Anything else (a rejection, a heartbeat).
    Other,
}

/// Reads `stream` until it ends, passing each message on with the time it
/// arrived.
async fn read_stream(mut stream: ViewStream, tx: tokio::sync::mpsc::Sender<(Seen, Instant)>) -> anyhow::Result<()> {
    loop {
        let message = stream.next_message().await?;
        let when = Instant::now();
        let seen = match message {
            ServerMessage::Patch { from, seq, ops, .. } => {
                Seen::Patch { from: from.unwrap_or(seq), seq, ops: ops.0.len() }
            }
            ServerMessage::Snapshot { seq, .. } => Seen::Snapshot(seq),
            _ => Seen::Other,
        };
        if tx.send((seen, when)).await.is_err() {
            return Ok(());
        }
    }
}

/// Commits the history: a correction per product, then `actions` sales
/// and corrections from `args.clients` clients; the head seq.
async fn commit_history(
    http: &reqwest::Client,
    chronicler: &str,
    args: &RedactArgs,
    actions: u64,
) -> anyhow::Result<u64> {
    let url = format!("{chronicler}/actions");
    let mut head = 0;
    for start in (0..args.products).step_by(args.batch as usize) {
        let end = (start + args.batch).min(args.products);
        let body = batch_body((start..end).map(|p| {
            format!(
                r#"{{"id":"seed:{}","type":"stock/corrected","payload":{{"product":"p{p}","location":"shelf","quantity":1000000000}}}}"#,
                p + 1
            )
        }));
        head = head.max(post(http, &url, body).await?);
    }
    let clients = args.clients as u64;
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let (http, url, products, batch) = (http.clone(), url.clone(), args.products, args.batch as usize);
            tokio::spawn(async move {
                let mut head = 0;
                let mut n = 0;
                let mine: Vec<u64> = (k..actions).step_by(clients as usize).collect();
                for chunk in mine.chunks(batch) {
                    let body = batch_body(chunk.iter().map(|&i| {
                        n += 1;
                        history_action(&format!("load{k}:{n}"), i, products)
                    }));
                    head = head.max(post(&http, &url, body).await?);
                }
                anyhow::Ok(head)
            })
        })
        .collect();
    for t in tasks {
        head = head.max(t.await??);
    }
    Ok(head)
}

/// The `i`th action of the history after the seed: a sale of one unit of a
/// product picked by a hash of `i`, or one time in ten a correction that
/// puts a billion back on its shelf.
fn history_action(id: &str, i: u64, products: u64) -> String {
    let p = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % products;
    let (kind, quantity) = if i % 10 == 9 { ("stock/corrected", 1_000_000_000) } else { ("stock/sold", 1) };
    format!(
        r#"{{"id":"{id}","type":"{kind}","payload":{{"product":"p{p}","location":"shelf","quantity":{quantity}}}}}"#
    )
}

/// Starts `nodb dataview --app warehouse` following `chronicler`, its
/// snapshots in `snapshots`, keeping its log (see [`LOG_FILTER`]).
fn start_dataview(bin: &Path, chronicler: &str, snapshots: &Path, every: u64) -> anyhow::Result<Service> {
    let (snapshots, every) = (snapshots.to_string_lossy().into_owned(), every.to_string());
    let args = [
        "dataview",
        "--app",
        "warehouse",
        "--listen",
        "127.0.0.1:0",
        "--chronicler",
        chronicler,
        "--snapshots",
        &snapshots,
        "--snapshot-every",
        &every,
    ];
    Service::start_with_env(bin, &args, &[("RUST_LOG", LOG_FILTER)]).map_err(|e| anyhow!("nodb dataview: {e}"))
}

/// How many checkpoint snapshots (at a multiple of `every`) the warehouse
/// app has under `snapshots`.
fn count_checkpoints(snapshots: &Path, every: u64) -> u64 {
    std::fs::read_dir(snapshots.join("warehouse"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".snapshot")?.parse::<u64>().ok())
        .filter(|&seq| seq > 0 && seq % every == 0)
        .count() as u64
}

/// What one `nodb replay` run gave.
struct Replay {
    /// From the process's start to its exit.
    wall: Duration,
    /// The CPU time it used (user + system), where `/proc` tells.
    cpu: Option<Duration>,
    /// Its report's first line, and the rate in it.
    line: String,
    rate: Option<f64>,
}

/// Runs `nodb replay --app warehouse --chronicler URL` to its end, its
/// output in `dir`.
async fn run_replay(bin: &Path, chronicler: &str, dir: &Path) -> anyhow::Result<Replay> {
    let out = dir.join("replay.out");
    let mut command = std::process::Command::new(bin);
    command
        .args(["replay", "--app", "warehouse", "--chronicler", chronicler])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out)?);
    let (wall, cpu, status) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = command.spawn()?;
        // Its CPU time is read while it is a zombie, before it is reaped.
        let pid = child.id();
        while !is_zombie(pid) && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let wall = started.elapsed();
        let cpu = cpu_time(pid);
        let status = child.wait()?;
        anyhow::Ok((wall, cpu, status))
    })
    .await??;
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    if !status.success() {
        bail!("nodb replay failed ({status}): {stdout}");
    }
    let line = stdout.lines().next().unwrap_or_default().to_string();
    // "replayed N actions through seq S in X s (R/s)"
    let rate = line.rsplit_once('(').and_then(|(_, r)| r.strip_suffix("/s)")?.parse().ok());
    Ok(Replay { wall, cpu, line, rate })
}

/// Whether process `pid` has exited and waits to be reaped.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat[stat.rfind(')')? + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Starts a data view with an empty snapshot directory in `dir` and times
/// it from its start to `/health` at `head`, with the CPU time it used;
/// then stops it.
async fn recover(
    bin: &Path,
    chronicler: &str,
    dir: &Path,
    every: u64,
    head: u64,
) -> anyhow::Result<(Duration, Option<Duration>)> {
    let started = Instant::now();
    let view = start_dataview(bin, chronicler, dir, every)?;
    let health = format!("{}/health", view.url());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    loop {
        if let Ok(resp) = http.get(&health).send().await
            && let Ok(body) = resp.json::<serde_json::Value>().await
            && body["seq"].as_u64().is_some_and(|s| s >= head)
        {
            return Ok((started.elapsed(), cpu_time(view.pid())));
        }
        if started.elapsed() > PATIENCE {
            bail!("the recovering data view did not reach seq {head} in {} s", PATIENCE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `view` drops here: the process is killed.
}

/// The data view's `REBUILT` line for the redaction at `seq`, if logged.
fn rebuilt_line(log: &str, seq: u64) -> Option<String> {
    log.lines()
        .filter(|l| l.contains(REBUILT))
        .find(|l| log_field(l, "seq").is_some_and(|s| s == seq.to_string()))
        .map(str::to_string)
}

/// The value of field `name` in a log line (`name=value`).
fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// A `Duration` as `{:?}` prints it: `1.5s`, `12.3ms`, `40µs`, `7ns`.
fn parse_debug_duration(text: &str) -> Option<Duration> {
    let units = [("ns", 1e-9), ("µs", 1e-6), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    let (number, scale) = units.iter().find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, *scale)))?;
    let value: f64 = number.parse().ok()?;
    Some(Duration::from_secs_f64(value * scale))
}

/// The value of counter `name` (or `name_total`) in the service's
/// `/metrics`, summed over its labels.
async fn metric(http: &reqwest::Client, service: &str, name: &str) -> Option<u64> {
    let text = http.get(format!("{service}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let key = key.split('{').next()?;
            (key == name || key.strip_suffix("_total") == Some(name)).then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_durations_read_back() {
        assert_eq!(parse_debug_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_debug_duration("12.5ms"), Some(Duration::from_micros(12_500)));
        assert_eq!(parse_debug_duration("40µs"), Some(Duration::from_micros(40)));
        assert_eq!(parse_debug_duration("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_debug_duration("soon"), None);
    }

    #[test]
    fn the_rebuilt_line_of_a_seq() {
        let log = "2026-11-28T01:00:00Z  INFO nodb_dataview::follow: redaction: the views are rebuilt seq=12 first=3 \
                   replayed=9 newly_rejected=0 took=1.2ms\n\
                   2026-11-28T01:00:01Z  INFO nodb_dataview::follow: redaction: the views are rebuilt seq=120 first=3 \
                   replayed=117 newly_rejected=2 took=3.5ms\n";
        let line = rebuilt_line(log, 120).unwrap_or_default();
        assert_eq!(log_field(&line, "replayed"), Some("117"));
        assert_eq!(log_field(&line, "newly_rejected"), Some("2"));
        assert_eq!(log_field(&line, "took"), Some("3.5ms"));
        assert!(rebuilt_line(log, 1).is_none());
    }

    #[test]
    fn history_actions_are_json() {
        for i in 0..20 {
            let v: serde_json::Value = serde_json::from_str(&history_action("a:1", i, 7)).unwrap_or_default();
            assert!(v["payload"]["quantity"].as_u64().is_some());
        }
    }
}
