//! `nodb-bench envoy`: what an envoy adds between a triggering action's
//! commit and its result's commit, and how many effects per second it
//! sustains, beside the same calls made directly.
//!
//! Every process is real and on loopback: `nodb chronicler`, `nodb
//! dataview`, `nodb supplier` and the `nodb envoy` processes under test. The
//! effects go to an instant receiver inside this process (webhook rows) or
//! to `nodb supplier` with no delay (reorder rows). Commit times are the
//! moments this process sees the actions in the chronicler's stream, so the
//! stream's own delay cancels out of each difference.
//!
//! The burst rows (`--bursts`) commit N filler actions as fast as possible
//! and then one reorder trigger, and time from the trigger's commit (its
//! ack or its arrival in the stream, whichever is first) to the data view
//! reaching its seq (its `/health`, polled every 5 ms, or its stream) and
//! to the envoy's `reorder/placed`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::stats::{RunStats, fmt_duration};
use nodb_tests::Service;

use super::{start_chronicler, start_nodb};

/// Envoy latency and throughput.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench envoy

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
    /// Bursts of filler actions committed right before a reorder trigger,
    /// comma-separated (0 or empty: no burst rows).
    #[arg(long, value_name = "N,N", default_value = "10000,100000")]
    bursts: String,
    /// Triggers timed per burst size (the no-burst baseline takes at least 10).
    #[arg(long, value_name = "N", default_value_t = 3)]
    burst_samples: usize,
}

/// An action seen in the chronicler's stream.
struct Seen {
    at: Instant,
    seq: u64,
    action: Value,
}

/// Runs the benchmark.
pub async fn run(args: &EnvoyArgs) -> anyhow::Result<()> {
    if args.samples == 0 || args.burst == 0 || args.concurrency == 0 || args.burst_samples == 0 {
        bail!("--samples, --burst, --concurrency and --burst-samples must be positive");
    }
    let bursts = parse_bursts(&args.bursts)?;
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
    if let Ok((sum, count)) = super::fsync_totals(&addr, None).await {
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
    if !bursts.is_empty() {
        burst_rows(&mut bench, &mut seen, &dataview, &bursts, args.burst_samples).await?;
    }
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
            // The burst rows' filler is skipped unparsed, so that this
            // reader keeps up with a burst.
            if line.windows(FILL_MARK.len()).any(|w| w == FILL_MARK) {
                continue;
            }
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
    wait_for_within(seen, Duration::from_secs(30), matches).await
}

/// The next action in the stream that `matches` (skipping others); fails
/// after `limit`.
async fn wait_for_within(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    limit: Duration,
    matches: impl Fn(&Value) -> bool,
) -> anyhow::Result<Seen> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .with_context(|| format!("waited {} s for an action", limit.as_secs()))?;
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
fn start_envoy(args: &[&str], chronicler: &str) -> anyhow::Result<Service> {
    let mut all = vec!["envoy"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--chronicler", chronicler]);
    Ok(start_nodb(&all)?.0)
}

/// The id prefix of the burst rows' filler actions (`fill<run>-<k>:<n>`),
/// as it appears in a committed action's JSON.
const FILL_MARK: &[u8] = b"\"id\":\"fill";
/// The products the filler actions correct, round-robin: the `stock` view
/// grows by this many entries.
const FILL_PRODUCTS: u64 = 10_000;
/// Actions per `POST /actions` in a burst.
const FILL_BATCH: u64 = 1_000;
/// Clients committing a burst at once.
const FILL_CLIENTS: u64 = 4;
/// How long a burst row waits for the view and for the envoy.
const BURST_WAIT: Duration = Duration::from_secs(180);

/// `--bursts`: the sizes, without zeros.
fn parse_bursts(text: &str) -> anyhow::Result<Vec<usize>> {
    let mut sizes = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: usize =
            part.replace('_', "").parse().with_context(|| format!("--bursts: {part:?} is not a number of actions"))?;
        if n > 0 {
            sizes.push(n);
        }
    }
    Ok(sizes)
}

/// A reorder trigger committed right after a burst of filler actions: the
/// time from its commit to the data view reaching its seq, to the envoy's
/// `reorder/placed`, and between the two; and the same with no burst.
async fn burst_rows(
    bench: &mut Bench,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    dataview: &str,
    bursts: &[usize],
    samples: usize,
) -> anyhow::Result<()> {
    // The view's progress, from its `/health` (polled every 5 ms) and its
    // stream: whichever shows a seq first.
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let poll = tokio::spawn(poll_health(bench.http.clone(), format!("http://{dataview}/health"), progress_tx.clone()));
    let stream = tokio::spawn(follow_view(dataview.to_string(), progress_tx));
    let sizes: Vec<(usize, usize)> =
        std::iter::once((0, samples.max(10))).chain(bursts.iter().map(|&n| (n, samples))).collect();
    let mut setup = Vec::new();
    for &(n, count) in &sizes {
        for k in 0..count {
            let p = format!("burst{n}-{k}");
            setup.push(
                json!({"type": "stock/corrected", "payload": {"product": p, "location": "shelf", "quantity": 10}}),
            );
            setup.push(
                json!({"type": "stock/threshold_set", "payload": {"product": p, "threshold": 5, "quantity": 20}}),
            );
        }
    }
    for chunk in setup.chunks(500) {
        bench.dispatch(chunk.to_vec()).await?;
    }

    println!(
        "\nreorder trigger right after a burst of N stock/corrected over {FILL_PRODUCTS} products \
         (POSTs of {FILL_BATCH}, {FILL_CLIENTS} clients);\n\
         times from the trigger's commit: (a) the data view at its seq, (b) reorder/placed committed, (c) = b - a"
    );
    let mut table = Vec::new();
    let (mut run, mut offset) = (0u64, 0u64);
    for &(n, count) in &sizes {
        let mut row = BurstRow::default();
        for k in 0..count {
            run += 1;
            let started = Instant::now();
            post_fillers(&bench.http, &bench.chronicler, run, offset, n as u64).await?;
            offset += n as u64;
            let posting = started.elapsed();
            let product = format!("burst{n}-{k}");
            let sale =
                json!({"type": "stock/sold", "payload": {"product": product, "location": "shelf", "quantity": 6}});
            let cause = bench.dispatch(vec![sale]).await?;
            let acked = Instant::now();
            // The commit: the ack or the chronicler's stream, whichever came first.
            let trigger = wait_for_within(seen, BURST_WAIT, |a| a["seq"] == cause).await?;
            let commit = acked.min(trigger.at);
            let view = match reached(&mut progress, cause, BURST_WAIT).await {
                Ok(at) => signed_secs(at, commit),
                Err(e) => {
                    println!("  N={n} #{}: {e:#}", k + 1);
                    row.failures += 1;
                    continue;
                }
            };
            let result = wait_for_within(seen, BURST_WAIT, |a| {
                (a["type"] == "reorder/placed" || a["type"] == "reorder/failed") && a["payload"]["product"] == *product
            })
            .await;
            let result = match result {
                Ok(r) if r.action["type"] == "reorder/placed" => r,
                Ok(r) => {
                    println!("  N={n} #{}: the envoy recorded {}", k + 1, r.action);
                    row.failures += 1;
                    continue;
                }
                Err(e) => {
                    println!("  N={n} #{}: no reorder/placed for {product} (seq {cause}): {e:#}", k + 1);
                    row.failures += 1;
                    continue;
                }
            };
            let named = &result.action["meta"]["cause"];
            if named.as_u64().or_else(|| named.as_str()?.parse().ok()) != Some(cause) {
                println!(
                    "  N={n} #{}: reorder/placed names cause {}, not {cause}",
                    k + 1,
                    result.action["meta"]["cause"]
                );
            }
            let placed = signed_secs(result.at, commit);
            if n > 0 {
                println!(
                    "  N={n} #{}: burst committed in {:.2} s ({:.0} actions/s); (a) {}  (b) {}  (c) {}",
                    k + 1,
                    posting.as_secs_f64(),
                    n as f64 / posting.as_secs_f64(),
                    fmt_secs(view),
                    fmt_secs(placed),
                    fmt_secs(placed - view)
                );
            }
            row.post.push(posting.as_secs_f64());
            row.view.push(view);
            row.placed.push(placed);
            row.envoy.push(placed - view);
        }
        table.push((n, row));
    }
    poll.abort();
    stream.abort();

    println!(
        "\n{:<26} {:>7} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "trigger commit →", "samples", "burst s", "(a) p50", "(a) max", "(b) p50", "(b) max", "(c) p50", "(c) max"
    );
    for (n, mut row) in table {
        let name = if n == 0 { "no burst (baseline)".to_string() } else { format!("after a burst of {n}") };
        let (v50, vmax) = p50_max(&mut row.view);
        let (p50, pmax) = p50_max(&mut row.placed);
        let (e50, emax) = p50_max(&mut row.envoy);
        let (post, _) = p50_max(&mut row.post);
        let post = if n == 0 { "-".to_string() } else { format!("{post:.2}") };
        let failed = if row.failures > 0 { format!("  ({} failed)", row.failures) } else { String::new() };
        println!(
            "{name:<26} {:>7} {post:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}{failed}",
            row.view.len(),
            fmt_secs(v50),
            fmt_secs(vmax),
            fmt_secs(p50),
            fmt_secs(pmax),
            fmt_secs(e50),
            fmt_secs(emax)
        );
    }
    println!(
        "target: after a 100,000-action burst, (c) <= 2 s (the envoy acts within 2 s of the view reaching the trigger)"
    );
    Ok(())
}

/// What one burst size measured, in seconds.
#[derive(Default)]
struct BurstRow {
    post: Vec<f64>,
    view: Vec<f64>,
    placed: Vec<f64>,
    envoy: Vec<f64>,
    failures: usize,
}

/// Commits `n` filler actions (filler numbers `offset..offset + n`) from
/// [`FILL_CLIENTS`] clients at once, in POSTs of [`FILL_BATCH`]; each sets
/// the shelf quantity of one of [`FILL_PRODUCTS`] products to a new value.
async fn post_fillers(http: &reqwest::Client, chronicler: &str, run: u64, offset: u64, n: u64) -> anyhow::Result<()> {
    let batches = n.div_ceil(FILL_BATCH);
    let tasks: Vec<_> = (0..FILL_CLIENTS)
        .map(|k| {
            let (http, url) = (http.clone(), format!("{chronicler}/actions"));
            tokio::spawn(async move {
                let mut id = 0;
                for b in (k..batches).step_by(FILL_CLIENTS as usize) {
                    let (start, end) = (b * FILL_BATCH, ((b + 1) * FILL_BATCH).min(n));
                    let mut body = String::with_capacity(140 * FILL_BATCH as usize);
                    body.push('[');
                    for i in (offset + start)..(offset + end) {
                        id += 1;
                        if body.len() > 1 {
                            body.push(',');
                        }
                        body.push_str(&format!(
                            r#"{{"id":"fill{run}-{k}:{id}","type":"stock/corrected","payload":{{"product":"f{}","location":"shelf","quantity":{}}}}}"#,
                            i % FILL_PRODUCTS,
                            i / FILL_PRODUCTS + 1
                        ));
                    }
                    body.push(']');
                    let resp = http.post(&url).header("content-type", "application/json").body(body).send().await?;
                    if !resp.status().is_success() {
                        bail!("the chronicler answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Sends `(seq, when)` each time the data view's `/health` shows a higher seq.
async fn poll_health(http: reqwest::Client, url: String, tx: mpsc::UnboundedSender<(u64, Instant)>) {
    let mut last = 0;
    loop {
        if let Ok(resp) = http.get(&url).send().await
            && let Ok(health) = resp.json::<Value>().await
        {
            let at = Instant::now();
            let seq = health["seq"].as_u64().unwrap_or(0);
            if seq > last {
                last = seq;
                if tx.send((seq, at)).is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `(seq, when)` for each message of the data view's `stock` stream
/// (reconnecting if it ends).
async fn follow_view(dataview: String, tx: mpsc::UnboundedSender<(u64, Instant)>) {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        if let Ok(mut ws) = super::websocket(&dataview, "/views/stock/stream", None).await {
            while let Some(Ok(msg)) = ws.next().await {
                let at = Instant::now();
                if let Message::Text(t) = msg
                    && let Some(seq) = message_seq(t.as_str())
                    && tx.send((seq, at)).is_err()
                {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seq of a snapshot or patch message: its first `"seq":` (the field
/// comes before the state and the operations).
fn message_seq(text: &str) -> Option<u64> {
    if !(text.starts_with("{\"type\":\"patch\"") || text.starts_with("{\"type\":\"snapshot\"")) {
        return None;
    }
    let at = text.find("\"seq\":")? + "\"seq\":".len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// When the data view first showed `seq` or later.
async fn reached(
    progress: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    seq: u64,
    limit: Duration,
) -> anyhow::Result<Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, progress.recv())
            .await
            .with_context(|| format!("the data view did not reach seq {seq} within {} s", limit.as_secs()))?;
        let (at_seq, at) = next.context("lost the data view's progress")?;
        if at_seq >= seq {
            return Ok(at);
        }
    }
}

/// `later - earlier` in seconds, negative if `later` is earlier.
fn signed_secs(later: Instant, earlier: Instant) -> f64 {
    if later >= earlier { (later - earlier).as_secs_f64() } else { -(earlier - later).as_secs_f64() }
}

/// The median and the largest of `v` (zeros when empty).
fn p50_max(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    (v[(v.len() - 1) / 2], v[v.len() - 1])
}

/// Seconds, shown as milliseconds below one second.
fn fmt_secs(s: f64) -> String {
    if s.abs() >= 1.0 { format!("{s:.2} s") } else { format!("{:.1} ms", s * 1e3) }
}
