//! `nodb bench envoy`: what an envoy adds between a triggering action's
//! commit and its result's commit, and how many effects per second it
//! sustains, beside the same calls made directly.
//!
//! Every process is real and on loopback: `nodb chronicler`, `nodb
//! dataview`, `nodb supplier` and the `nodb envoy` processes under test. The
//! effects go to an instant receiver inside this process (webhook rows) or
//! to `nodb supplier` with no delay (reorder rows). Commit times are the
//! moments this process sees the actions in the chronicler's stream, so the
//! stream's own delay cancels out of each difference.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::stats::{RunStats, fmt_duration};
use super::{Proc, start_chronicler, start_nodb};

/// Envoy latency and throughput.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release && target/release/nodb bench envoy

Compare ratios, not absolute numbers: the machine is shared and times drift.")]
pub struct EnvoyArgs {
    /// Where to put the data directories (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: std::path::PathBuf,
    /// Triggers timed one at a time, per latency row.
    #[arg(long, value_name = "N", default_value_t = 300)]
    samples: usize,
    /// Triggers in the throughput burst.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    burst: usize,
    /// Effects in flight for the independent throughput row.
    #[arg(long, value_name = "N", default_value_t = 64)]
    concurrency: usize,
}

/// An action seen in the chronicler's stream.
struct Seen {
    at: Instant,
    seq: u64,
    action: Value,
}

/// Runs the benchmark.
pub async fn run(args: &EnvoyArgs) -> anyhow::Result<()> {
    if args.samples == 0 || args.burst == 0 || args.concurrency == 0 {
        bail!("--samples, --burst and --concurrency must be positive");
    }
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let (receiver, delivered) = start_receiver().await?;
    let (_chronicler, addr) = start_chronicler(tmp.path())?;
    let chronicler = format!("http://{addr}");
    let http = reqwest::Client::new();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let tail = tokio::spawn(follow(http.clone(), chronicler.clone(), tx));
    let mut bench = Bench { http, chronicler: chronicler.clone(), next_id: 0 };

    println!("{:<44} {:>8} {:>10} {:>10} {:>10}", "trigger commit → result commit", "samples", "p50", "p90", "p99");
    // Webhook envoy, action trigger, in order.
    let hook = format!("http://{receiver}/hook");
    let _lat = start_envoy(&["webhook", "--name", "lat", "--types", "bench/lat", "--url", &hook], &chronicler)?;
    wait_for(&mut seen, |a| a["type"] == "envoy/started" && a["payload"]["envoy"] == "lat").await?;
    let mut webhook = RunStats::default();
    for i in 0..args.samples + 20 {
        let cause = bench.dispatch(vec![json!({"type": "bench/lat", "payload": {}})]).await?;
        let trigger = next_is(&mut seen, cause).await?;
        let result = wait_for(&mut seen, |a| a["type"] == "webhook/delivered" && a["payload"]["seq"] == cause).await?;
        if i >= 20 {
            webhook.latencies.push((result.at - trigger.at).as_nanos() as u64);
        }
    }
    print_latency("webhook envoy (action trigger, instant receiver)", &mut webhook);

    // The warehouse reorder envoy: a view trigger, through the data view.
    let (_supplier, supplier) = start_nodb(&["supplier", "--listen", "127.0.0.1:0"])?;
    let snapshots = tmp.path().join("snapshots");
    let (_dataview, dataview) = start_nodb(&[
        "dataview",
        "--app",
        "warehouse",
        "--chronicler",
        &chronicler,
        "--snapshots",
        &snapshots.to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ])?;
    let products: Vec<String> = (0..args.samples + 20).map(|i| format!("p{i}")).collect();
    let mut setup = Vec::new();
    for p in &products {
        setup.push(json!({"type": "stock/corrected", "payload": {"product": p, "location": "shelf", "quantity": 10}}));
        setup.push(json!({"type": "stock/threshold_set", "payload": {"product": p, "threshold": 5, "quantity": 20}}));
    }
    for chunk in setup.chunks(500) {
        bench.dispatch(chunk.to_vec()).await?;
    }
    let _reorder = start_envoy(
        &[
            "--app",
            "warehouse",
            "--dataview",
            &format!("http://{dataview}"),
            "--set",
            &format!("supplier=http://{supplier}"),
        ],
        &chronicler,
    )?;
    wait_for(&mut seen, |a| a["type"] == "envoy/started" && a["payload"]["envoy"] == "reorder").await?;
    let mut reorder = RunStats::default();
    for (i, p) in products.iter().enumerate() {
        let sale = json!({"type": "stock/sold", "payload": {"product": p, "location": "shelf", "quantity": 6}});
        let cause = bench.dispatch(vec![sale]).await?;
        let trigger = next_is(&mut seen, cause).await?;
        let result = wait_for(&mut seen, |a| a["type"] == "reorder/placed" && a["payload"]["product"] == **p).await?;
        if i >= 20 {
            reorder.latencies.push((result.at - trigger.at).as_nanos() as u64);
        }
    }
    print_latency("reorder envoy (view trigger, nodb supplier)", &mut reorder);
    if let Ok((sum, count)) = super::fsync_totals(&addr).await {
        println!(
            "  (one durable commit, the chronicler's mean fdatasync: {} over {count} syncs)",
            fmt_duration(Duration::from_secs_f64(sum / count.max(1) as f64))
        );
    }

    // Throughput: a burst of triggers through the webhook envoy, in order and
    // independent, and the same calls made directly by 64 tasks.
    println!("\n{:<44} {:>8} {:>12} {:>10}", "sustained effects", "effects", "effects/s", "seconds");
    let mut rates = Vec::new();
    for (name, concurrency) in [("ordered", 1), ("independent", args.concurrency)] {
        let types = format!("bench/{name}");
        let c = concurrency.to_string();
        let _envoy = start_envoy(
            &["webhook", "--name", name, "--types", &types, "--url", &hook, "--concurrency", &c],
            &chronicler,
        )?;
        wait_for(&mut seen, |a| a["type"] == "envoy/started" && a["payload"]["envoy"] == name).await?;
        let burst: Vec<Value> = (0..args.burst).map(|_| json!({"type": types, "payload": {}})).collect();
        let sent = tokio::spawn({
            let mut b = bench.clone();
            async move {
                for chunk in burst.chunks(250) {
                    b.dispatch(chunk.to_vec()).await?;
                }
                anyhow::Ok(b.next_id)
            }
        });
        let (first, last) = burst_window(&mut seen, &types, args.burst).await?;
        bench.next_id = sent.await??;
        let secs = (last - first).as_secs_f64();
        let label = format!("webhook envoy, {name} (concurrency {concurrency})");
        println!("{label:<44} {:>8} {:>12.0} {:>10.2}", args.burst, args.burst as f64 / secs, secs);
        rates.push(args.burst as f64 / secs);
    }
    let before = delivered.load(Relaxed);
    let started = Instant::now();
    direct_calls(&bench.http, &hook, args.burst, args.concurrency).await?;
    let secs = started.elapsed().as_secs_f64();
    if delivered.load(Relaxed) - before != args.burst as u64 {
        bail!("the receiver did not count {} direct POSTs", args.burst);
    }
    let label = format!("direct POSTs, {} tasks (no log, no retry)", args.concurrency);
    println!("{label:<44} {:>8} {:>12.0} {:>10.2}", args.burst, args.burst as f64 / secs, secs);
    let direct = args.burst as f64 / secs;
    println!("\nratios:");
    println!("  independent / ordered envoy          = {:.2}x", rates[1] / rates[0]);
    println!("  independent envoy / direct POSTs     = {:.2}x", rates[1] / direct);
    println!(
        "  webhook p50 latency / reorder p50    = {:.2}x",
        webhook.quantile(0.5).as_secs_f64() / reorder.quantile(0.5).as_secs_f64().max(1e-9)
    );
    tail.abort();
    Ok(())
}

fn print_latency(name: &str, s: &mut RunStats) {
    println!(
        "{name:<44} {:>8} {:>10} {:>10} {:>10}",
        s.latencies.len(),
        fmt_duration(s.quantile(0.5)),
        fmt_duration(s.quantile(0.9)),
        fmt_duration(s.quantile(0.99))
    );
}

/// Dispatches through the chronicler's HTTP API.
#[derive(Clone)]
struct Bench {
    http: reqwest::Client,
    chronicler: String,
    next_id: u64,
}

impl Bench {
    /// Dispatches `actions` (given ids here) and returns the last seq.
    async fn dispatch(&mut self, mut actions: Vec<Value>) -> anyhow::Result<u64> {
        for a in &mut actions {
            self.next_id += 1;
            a["id"] = json!(format!("bench:{}", self.next_id));
        }
        let resp = self.http.post(format!("{}/actions", self.chronicler)).json(&actions).send().await?;
        if !resp.status().is_success() {
            bail!("the chronicler answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        let acks: Value = resp.json().await?;
        acks["acks"].as_array().and_then(|a| a.last()).and_then(|a| a["seq"].as_u64()).context("no seq in the acks")
    }
}

/// Sends every committed action, with the time it arrived, to `tx`.
async fn follow(http: reqwest::Client, chronicler: String, tx: mpsc::UnboundedSender<Seen>) -> anyhow::Result<()> {
    let resp = http.get(format!("{chronicler}/actions?from=1")).send().await?;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let at = Instant::now();
        buf.extend_from_slice(&chunk?);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let Ok(action) = serde_json::from_slice::<Value>(&line) else { continue };
            if let Some(seq) = action["seq"].as_u64() {
                let _ = tx.send(Seen { at, seq, action });
            }
        }
    }
    Ok(())
}

/// The next action in the stream that `matches` (skipping others); fails
/// after 30 s.
async fn wait_for(seen: &mut mpsc::UnboundedReceiver<Seen>, matches: impl Fn(&Value) -> bool) -> anyhow::Result<Seen> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, seen.recv()).await.context("waited 30 s for an action")?;
        let s = next.context("the chronicler's stream ended")?;
        if matches(&s.action) {
            return Ok(s);
        }
    }
}

/// The next action in the stream, which must be `seq`.
async fn next_is(seen: &mut mpsc::UnboundedReceiver<Seen>, seq: u64) -> anyhow::Result<Seen> {
    let s = wait_for(seen, |_| true).await?;
    if s.seq != seq {
        bail!("expected seq {seq} next in the log, saw {}: {}", s.seq, s.action);
    }
    Ok(s)
}

/// When the first of `n` triggers of type `kind` was committed and when the
/// last of their results was.
async fn burst_window(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    kind: &str,
    n: usize,
) -> anyhow::Result<(Instant, Instant)> {
    let mut first = None;
    let mut pending: HashMap<u64, ()> = HashMap::new();
    let mut results = 0;
    loop {
        let s = wait_for(seen, |_| true).await?;
        if s.action["type"] == kind {
            first.get_or_insert(s.at);
            pending.insert(s.seq, ());
        } else if s.action["type"] == "webhook/delivered"
            && s.action["payload"]["seq"].as_u64().is_some_and(|c| pending.remove(&c).is_some())
        {
            results += 1;
            if results == n {
                return Ok((first.unwrap_or(s.at), s.at));
            }
        } else if s.action["type"] == "webhook/failed" {
            bail!("a delivery failed: {}", s.action);
        }
    }
}

/// `n` POSTs to `url`, `tasks` at a time.
async fn direct_calls(http: &reqwest::Client, url: &str, n: usize, tasks: usize) -> anyhow::Result<()> {
    let left = Arc::new(AtomicU64::new(n as u64));
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (http, url, left) = (http.clone(), url.to_string(), left.clone());
            tokio::spawn(async move {
                while left.fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1)).is_ok() {
                    let body = json!({"seq": 1, "type": "bench/direct", "payload": {}});
                    http.post(&url).header("Idempotency-Key", "direct").json(&body).send().await?.error_for_status()?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// An HTTP server that answers every POST at once; returns its address and
/// the count of requests.
async fn start_receiver() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            c.fetch_add(1, Relaxed);
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, count))
}

/// Starts `nodb envoy ARGS --chronicler URL` and waits for its ready line.
fn start_envoy(args: &[&str], chronicler: &str) -> anyhow::Result<Proc> {
    let mut all = vec!["envoy"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--chronicler", chronicler]);
    Ok(start_nodb(&all)?.0)
}
