//! `nodb-bench history`: as-of reads (`GET /views/{name}?at=N`) at random
//! seqs over a long history, side by side with the live `GET`.
//!
//! A chronicler and the warehouse data view run as their own processes on
//! loopback. This process commits the history (HTTP batches from a few
//! clients in parallel), waits for the view and its checkpoint snapshots
//! to reach the head, then reads the `stock` view at uniformly random seqs
//! (seeded), one at a time and from several clients at once, and the
//! current state the same number of times. It reports latency quantiles,
//! the actions each answer replayed (`nodb-replayed`), what the cache of
//! past states saves, and what the checkpoints cost on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::stats::fmt_duration;
use super::{start_chronicler, start_nodb};

/// As-of reads over a long history, against the live `GET`.
///
/// Commits --actions warehouse actions (sales, moves and corrections over
/// --products products), then times `GET /views/stock?at=N` at uniformly
/// random N, sequentially and from --concurrency clients, and as many live
/// `GET /views/stock`. The data view runs with --snapshot-every, so a read
/// replays fewer actions than that from the checkpoint before N.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench history
  target/release/nodb-bench history --actions 100000 --reads 50     (a quick run)

Targets (issue 12): ?at p50 <= 50 ms and p99 <= 500 ms on 1,000,000 actions.

Compare ratios, not absolute numbers: the machine is shared and times drift.")]
pub struct HistoryArgs {
    /// Where to put the data directories (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: std::path::PathBuf,
    /// Actions in the history.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    actions: u64,
    /// Distinct products the actions touch (the size of the `stock` view).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    products: u64,
    /// The data view's checkpoint interval (`nodb dataview --snapshot-every`).
    #[arg(long, value_name = "SEQS", default_value_t = 10_000)]
    snapshot_every: u64,
    /// Reads in each row.
    #[arg(long, value_name = "N", default_value_t = 200)]
    reads: usize,
    /// Clients of the concurrent as-of row (0 skips it).
    #[arg(long, value_name = "N", default_value_t = 4)]
    concurrency: usize,
    /// Clients committing the history in parallel (batches of 1,000).
    #[arg(long, value_name = "N", default_value_t = 4)]
    ingest_clients: usize,
    /// Seed of the random seqs (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
}

/// Actions per `POST /actions`.
const BATCH: u64 = 1_000;
/// Re-reads in the cache rows.
const REREADS: usize = 50;

/// Runs the benchmark.
pub async fn run(args: &HistoryArgs) -> anyhow::Result<()> {
    if args.actions == 0 || args.products == 0 || args.snapshot_every == 0 || args.reads == 0 {
        bail!("--actions, --products, --snapshot-every and --reads must be positive");
    }
    if args.ingest_clients == 0 {
        bail!("--ingest-clients must be positive");
    }
    let products = args.products.min(args.actions);
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let (_chronicler, addr) = start_chronicler(tmp.path())?;
    let chronicler = format!("http://{addr}");
    let snapshots = tmp.path().join("snapshots");
    let every = args.snapshot_every.to_string();
    let (_dataview, view_addr) = start_nodb(&[
        "dataview",
        "--app",
        "warehouse",
        "--chronicler",
        &chronicler,
        "--snapshots",
        &snapshots.to_string_lossy(),
        "--snapshot-every",
        &every,
        "--listen",
        "127.0.0.1:0",
    ])?;
    let dataview = format!("http://{view_addr}");
    let http = reqwest::Client::new();
    println!(
        "history: {} warehouse actions over {products} products, checkpoint every {} seqs, seed {seed}",
        args.actions, args.snapshot_every
    );

    // The history: a correction per product first (so no sale is ever
    // refused), then sales, moves and corrections of random products.
    let started = Instant::now();
    let setup = post_actions(&http, &chronicler, 0, products, products, seed, args.ingest_clients).await?;
    let head = post_actions(&http, &chronicler, products, args.actions, products, seed, args.ingest_clients).await?;
    let head = head.max(setup);
    let ingest = started.elapsed();
    println!(
        "ingest: {} actions committed in {:.1} s ({:.0} actions/s, {} clients, batches of {BATCH}); head seq {head}",
        args.actions,
        ingest.as_secs_f64(),
        args.actions as f64 / ingest.as_secs_f64(),
        args.ingest_clients
    );
    wait_for_seq(&http, &dataview, head, Duration::from_secs(1800)).await?;
    let caught_up = started.elapsed();
    println!(
        "the data view reached the head {:.1} s after the ingest ended ({:.1} s from the first action)",
        (caught_up - ingest).as_secs_f64(),
        caught_up.as_secs_f64()
    );
    let checkpoints = head / args.snapshot_every;
    let dir = snapshots.join("warehouse");
    let waited = Instant::now();
    while snapshot_files(&dir, args.snapshot_every).1 < checkpoints && waited.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (files, found, bytes) = snapshot_files(&dir, args.snapshot_every);
    println!(
        "checkpoints: {found} of {checkpoints} written ({:.1} s after the view caught up); {files} snapshot files, \
         {:.1} MB in all, {:.2} MB each on average",
        waited.elapsed().as_secs_f64(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / files.max(1) as f64
    );

    // The reads.
    let mut rng = SplitMix(seed);
    let seqs: Vec<u64> = (0..args.reads).map(|_| 1 + rng.next_u64() % head).collect();
    let url = format!("{dataview}/views/stock");
    println!(
        "\n{:<42} {:>6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>6} {:>6}",
        "GET /views/stock", "reads", "p50", "p99", "max", "replayed", "repl max", "repl=0", "errors"
    );
    let mut at = Reads::default();
    for &n in &seqs {
        at.push(read(&http, &url, Some(n)).await);
    }
    at.print("?at=N, random N, 1 client", true);
    let last = *seqs.last().unwrap_or(&1);
    let mut same = Reads::default();
    for _ in 0..REREADS {
        same.push(read(&http, &url, Some(last)).await);
    }
    same.print(&format!("?at=N, the last N again x{REREADS} (cache)"), true);
    let mut again = Reads::default();
    for &n in seqs.iter().rev().take(REREADS) {
        again.push(read(&http, &url, Some(n)).await);
    }
    again.print(&format!("?at=N, the last {} N again, newest first", REREADS.min(seqs.len())), true);
    let mut live = Reads::default();
    for _ in 0..args.reads {
        live.push(read(&http, &url, None).await);
    }
    live.print("live (no ?at), 1 client", false);
    let concurrent = if args.concurrency > 0 {
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let seqs = Arc::new(seqs.clone());
        let clients: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (http, url, next, seqs) = (http.clone(), url.clone(), next.clone(), seqs.clone());
                tokio::spawn(async move {
                    let mut r = Reads::default();
                    while let Some(&n) = seqs.get(next.fetch_add(1, Relaxed) as usize) {
                        r.push(read(&http, &url, Some(n)).await);
                    }
                    r
                })
            })
            .collect();
        let mut all = Reads::default();
        for c in clients {
            all.merge(c.await?);
        }
        let wall = started.elapsed();
        all.print(&format!("?at=N, same N, {} clients", args.concurrency), true);
        Some((all, wall))
    } else {
        None
    };
    if let Some(e) = [&at, &same, &again, &live].into_iter().find_map(|r| r.first_error.as_ref()) {
        println!("first error: {e}");
    }

    println!("\nratios and totals:");
    println!(
        "  ?at p50 / live p50 = {:.2}x   (?at p99 / live p99 = {:.2}x)",
        at.quantile(0.5).as_secs_f64() / live.quantile(0.5).as_secs_f64().max(1e-9),
        at.quantile(0.99).as_secs_f64() / live.quantile(0.99).as_secs_f64().max(1e-9)
    );
    if let Some((all, wall)) = &concurrent {
        println!(
            "  {} clients: {:.1} as-of reads/s (1 client: {:.1}/s); the data view runs at most --history-readers \
             (default 2) replays at once",
            args.concurrency,
            all.ok as f64 / wall.as_secs_f64(),
            at.ok as f64 / at.total.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "  checkpoint storage: {:.1} MB for {head} actions = {:.0} bytes per action",
        bytes as f64 / 1e6,
        bytes as f64 / head.max(1) as f64
    );
    println!(
        "  targets (1,000,000 actions): ?at p50 <= 50 ms ({}), p99 <= 500 ms ({})",
        fmt_duration(at.quantile(0.5)),
        fmt_duration(at.quantile(0.99))
    );
    Ok(())
}

/// Commits actions `from..to` of the history (numbered from 0) in batches
/// of [`BATCH`], from `clients` clients at once; returns the highest seq.
async fn post_actions(
    http: &reqwest::Client,
    chronicler: &str,
    from: u64,
    to: u64,
    products: u64,
    seed: u64,
    clients: usize,
) -> anyhow::Result<u64> {
    let batches = (to - from).div_ceil(BATCH);
    let tasks: Vec<_> = (0..clients as u64)
        .map(|k| {
            let (http, url) = (http.clone(), format!("{chronicler}/actions"));
            tokio::spawn(async move {
                let mut head = 0;
                let mut n = 0;
                for b in (k..batches).step_by(clients) {
                    let start = from + b * BATCH;
                    let end = (start + BATCH).min(to);
                    let mut body = String::with_capacity(150 * BATCH as usize);
                    body.push('[');
                    for i in start..end {
                        n += 1;
                        if i > start {
                            body.push(',');
                        }
                        body.push_str(&action(i, products, seed, &format!("hist{from}-{k}:{n}")));
                    }
                    body.push(']');
                    let resp = http.post(&url).header("content-type", "application/json").body(body).send().await?;
                    if !resp.status().is_success() {
                        bail!("the chronicler answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
                    }
                    let acks: serde_json::Value = resp.json().await?;
                    let seq = acks["acks"].as_array().and_then(|a| a.last()).and_then(|a| a["seq"].as_u64());
                    head = head.max(seq.context("no seq in the acks")?);
                }
                anyhow::Ok(head)
            })
        })
        .collect();
    let mut head = 0;
    for t in tasks {
        head = head.max(t.await??);
    }
    Ok(head)
}

/// Action `i` of the history, as JSON: the first `products` correct one
/// product each (a billion on the shelf), the rest sell or move one unit or
/// correct the returns shelf, of a product picked at random.
fn action(i: u64, products: u64, seed: u64, id: &str) -> String {
    if i < products {
        return format!(
            r#"{{"id":"{id}","type":"stock/corrected","payload":{{"product":"p{i}","location":"shelf","quantity":1000000000}}}}"#
        );
    }
    let r = SplitMix(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
    let p = r % products;
    match (r >> 32) % 4 {
        0 | 1 => format!(
            r#"{{"id":"{id}","type":"stock/sold","payload":{{"product":"p{p}","location":"shelf","quantity":1}}}}"#
        ),
        2 => format!(
            r#"{{"id":"{id}","type":"stock/moved","payload":{{"product":"p{p}","from":"shelf","to":"back","quantity":1}}}}"#
        ),
        _ => format!(
            r#"{{"id":"{id}","type":"stock/corrected","payload":{{"product":"p{p}","location":"returns","quantity":{}}}}}"#,
            (r >> 40) % 100
        ),
    }
}

/// Waits until the data view's `/health` shows `seq` or more.
pub async fn wait_for_seq(http: &reqwest::Client, dataview: &str, seq: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = 0;
    loop {
        if let Ok(resp) = http.get(format!("{dataview}/health")).send().await
            && let Ok(health) = resp.json::<serde_json::Value>().await
        {
            last = health["seq"].as_u64().unwrap_or(0);
            if last >= seq {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the data view is at seq {last}, not {seq}, after {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The snapshot files in `dir`: how many, how many are checkpoints (at a
/// multiple of `every`), and their total size in bytes.
fn snapshot_files(dir: &std::path::Path, every: u64) -> (u64, u64, u64) {
    let (mut files, mut checkpoints, mut bytes) = (0, 0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(seq) = name.strip_suffix(".snapshot").and_then(|s| s.parse::<u64>().ok()) else { continue };
        files += 1;
        if seq > 0 && seq % every == 0 {
            checkpoints += 1;
        }
        bytes += entry.metadata().map_or(0, |m| m.len());
    }
    (files, checkpoints, bytes)
}

/// One read's outcome: its latency and the actions it replayed, or why it
/// failed.
type Read = Result<(Duration, u64), String>;

/// `GET url[?at=N]`, timed to the end of the body.
async fn read(http: &reqwest::Client, url: &str, at: Option<u64>) -> Read {
    let url = match at {
        Some(n) => format!("{url}?at={n}"),
        None => url.to_string(),
    };
    let started = Instant::now();
    let resp = http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let replayed = resp.headers().get("nodb-replayed").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    let took = started.elapsed();
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {}", String::from_utf8_lossy(&body)));
    }
    if at.is_some() && replayed.is_none() {
        return Err(format!("GET {url}: no nodb-replayed header"));
    }
    Ok((took, replayed.unwrap_or(0)))
}

/// The reads of one row.
#[derive(Default)]
struct Reads {
    latencies: Vec<u64>,
    replayed: Vec<u64>,
    ok: u64,
    errors: u64,
    total: Duration,
    first_error: Option<String>,
}

impl Reads {
    fn push(&mut self, r: Read) {
        match r {
            Ok((took, replayed)) => {
                self.ok += 1;
                self.total += took;
                self.latencies.push(took.as_nanos() as u64);
                self.replayed.push(replayed);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Reads) {
        self.latencies.extend(other.latencies);
        self.replayed.extend(other.replayed);
        self.ok += other.ok;
        self.errors += other.errors;
        self.total += other.total;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn quantile(&mut self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        Duration::from_nanos(self.latencies[i])
    }

    fn print(&mut self, name: &str, as_of: bool) {
        let n = self.replayed.len().max(1) as f64;
        let mean = self.replayed.iter().sum::<u64>() as f64 / n;
        let max = self.replayed.iter().max().copied().unwrap_or(0);
        let hits = self.replayed.iter().filter(|r| **r == 0).count().to_string();
        let (mean, max, hits) =
            if as_of { (format!("{mean:.0}"), max.to_string(), hits) } else { ("-".into(), "-".into(), "-".into()) };
        let max_latency = Duration::from_nanos(self.latencies.iter().max().copied().unwrap_or(0));
        let (p50, p99) = (self.quantile(0.5), self.quantile(0.99));
        println!(
            "{name:<42} {:>6} {:>10} {:>10} {:>10} {mean:>9} {max:>9} {hits:>6} {:>6}",
            self.ok,
            fmt_duration(p50),
            fmt_duration(p99),
            fmt_duration(max_latency),
            self.errors
        );
    }
}

/// SplitMix64: a small seeded generator, enough for picking seqs.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
