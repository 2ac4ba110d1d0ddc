//! `nodb-bench cascade`: what a cascade hop adds to a view's latency, and
//! how many derived updates per second the `marketing` cascade makes over
//! an `activity` view with 100,000 entries.
//!
//! The chronicler, the data view and the first two hops are real processes
//! on loopback: `nodb cascade --cascade marketing` (activity → marketing)
//! and `nodb cascade --cascade lowstock` (stock + marketing → lowstock); the
//! third hop (lowstock → `pending`, the products with a pending reorder) is
//! a cascade written with the library inside this process. This process
//! subscribes to every view and stamps each message when it arrives; a
//! hop's latency is the time between the upstream message with seq `s`
//! and the first cascade message whose `sources` reach `s`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use nodb_shared::Tree;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::stats::{RunStats, fmt_duration};
use super::{start_chronicler, start_nodb};

/// Cascade hop latency and derived updates per second.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench cascade

Compare ratios, not absolute numbers: the machine is shared and times drift.")]
pub struct CascadeArgs {
    /// Where to put the data (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: std::path::PathBuf,
    /// Sales dispatched per second while latency is measured.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds of dispatching for the latency rows.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Activity entries before the throughput burst.
    #[arg(long, default_value_t = 100_000)]
    entries: u64,
    /// Sales in the throughput burst, dispatched as fast as they are acknowledged.
    #[arg(long, default_value_t = 10_000)]
    burst: u64,
}

type Socket = nodb_client::WebSocket;

/// One message a client received: when, the seqs it covers, its sources.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    from: u64,
    seq: u64,
    sources: BTreeMap<String, u64>,
}

/// Runs the benchmark.
pub async fn run(args: &CascadeArgs) -> anyhow::Result<()> {
    if args.rate == 0 || args.seconds.is_nan() || args.seconds <= 0.0 || args.entries == 0 || args.burst == 0 {
        bail!("--rate, --seconds, --entries and --burst must be positive");
    }
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let (_chronicler, chronicler) = start_chronicler(tmp.path())?;
    let snapshots = tmp.path().join("snapshots");
    let (_view, view) = start_nodb(&[
        "dataview",
        "--listen",
        "127.0.0.1:0",
        "--chronicler",
        &format!("http://{chronicler}"),
        "--snapshots",
        &snapshots.to_string_lossy(),
    ])?;
    let (_marketing, marketing) = start_nodb(&[
        "cascade",
        "--cascade",
        "marketing",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("activity=http://{view}"),
    ])?;
    let (_lowstock, lowstock) = start_nodb(&[
        "cascade",
        "--cascade",
        "lowstock",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("stock=http://{view}"),
        "--upstream",
        &format!("marketing=http://{marketing}"),
    ])?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pending = start_pending(&lowstock, shutdown.clone()).await?;
    let mut dispatcher = Dispatcher::connect(&chronicler).await?;
    // Plenty of stock under a threshold it never reaches: every sale
    // changes activity, marketing, stock and lowstock, and none is refused.
    let seed: Vec<Value> = (0..20)
        .flat_map(|p| {
            [
                ("stock/corrected", json!({"product": format!("p{p}"), "location": "shelf", "quantity": 1u64 << 40})),
                ("stock/threshold_set", json!({"product": format!("p{p}"), "threshold": 1u64 << 41, "quantity": 1})),
            ]
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|(t, p)| json!({"type": t, "payload": p}))
        .collect();
    dispatcher.send_all(seed).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Latency: every view's stream, stamped on arrival.
    let total = (args.rate as f64 * args.seconds) as u64;
    println!("latency: {total} sales at {}/s, each through activity → marketing → lowstock → pending", args.rate);
    let stop = Instant::now() + Duration::from_secs_f64(args.seconds) + Duration::from_secs(3);
    let listeners = [
        (view.clone(), "activity"),
        (marketing.clone(), "marketing"),
        (lowstock.clone(), "lowstock"),
        (pending.clone(), "pending"),
    ]
    .map(|(addr, name)| tokio::spawn(async move { record(&addr, name, stop).await }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    for k in 0..total {
        tick.tick().await;
        dispatcher.send(sale(k)).await?;
    }
    let mut got = Vec::new();
    for l in listeners {
        got.push(l.await??);
    }
    let [activity, marketing_got, lowstock_got, pending_got] = <[Vec<Got>; 4]>::try_from(got).unwrap_or_default();
    let mut hop1 = hop(&activity, &marketing_got, "activity");
    let mut hop2 = hop(&marketing_got, &lowstock_got, "marketing");
    let mut hop3 = hop(&lowstock_got, &pending_got, "lowstock");
    let mut three =
        chain(&[&activity, &marketing_got, &lowstock_got, &pending_got], &["activity", "marketing", "lowstock"]);
    println!(
        "\n{:<44} {:>8} {:>10} {:>10}",
        "upstream patch received → cascade patch received", "samples", "p50", "p99"
    );
    for (name, s) in [
        ("1 hop: activity → marketing (process)", &mut hop1),
        ("hop 2: marketing → lowstock (process)", &mut hop2),
        ("hop 3: lowstock → pending (in this process)", &mut hop3),
        ("3 hops: activity → … → pending, end to end", &mut three),
    ] {
        println!(
            "{name:<44} {:>8} {:>10} {:>10}",
            s.latencies.len(),
            fmt_duration(s.quantile(0.5)),
            fmt_duration(s.quantile(0.99))
        );
    }
    let per_hop = three.quantile(0.5).as_secs_f64() / 3.0;
    println!("3 hops p50 / 3 = {} per hop", fmt_duration(Duration::from_secs_f64(per_hop)));

    // Throughput: fill activity to `entries`, then a burst.
    let already = 40 + total;
    let fill = args.entries.saturating_sub(already);
    let started = Instant::now();
    let head = dispatcher.send_all((0..fill).map(|k| sale(total + k)).collect()).await?;
    let mut watcher = connect(&marketing, "/views/marketing/stream").await?;
    let first_seq = wait_sources(&mut watcher, "activity", head).await?.seq;
    println!(
        "\nthroughput: activity filled to {} entries; marketing caught up {:.1} s after the first of {fill} more sales",
        already + fill,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let head = dispatcher.send_all((0..args.burst).map(|k| sale(already + fill + k)).collect()).await?;
    let last = wait_sources(&mut watcher, "activity", head).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "burst of {} sales: marketing made {} updates in {took:.2} s: {:.0} derived updates/s, reflecting {:.0} activity seqs/s",
        args.burst,
        last.seq - first_seq,
        (last.seq - first_seq) as f64 / took,
        args.burst as f64 / took
    );
    reducer_only(args.entries);
    shutdown.cancel();
    Ok(())
}

/// `stock/sold` number `k`.
fn sale(k: u64) -> Value {
    json!({"type": "stock/sold", "payload": {"product": format!("p{}", k % 20), "location": "shelf", "quantity": 1}})
}

/// The third hop: `pending`, the lowstock products with a pending reorder,
/// served by this process on a port of its own.
async fn start_pending(lowstock: &str, shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<String> {
    let cascade = nodb_cascade::Cascade::new("pending", ["lowstock"], |up: &[&Tree]| {
        let products = up[0].get("/products").and_then(Tree::as_object).into_iter().flatten();
        let sold = products
            .filter(|(_, e)| e.get("/reorder/status").and_then(Tree::as_str) == Some("pending"))
            .map(|(p, e)| (p.clone(), e.get("/sold_week").cloned().unwrap_or_default()));
        Tree::from_entries(sold)
    });
    let upstreams = BTreeMap::from([("lowstock".to_string(), format!("http://{lowstock}"))]);
    let running = nodb_cascade::start(vec![cascade], &upstreams, &nodb_cascade::Settings::default(), shutdown.clone())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let router = nodb_cascade::server::router(running.state.clone());
    tokio::spawn(async move { nodb_server::serve(listener, router, None, shutdown).await });
    Ok(addr)
}

async fn connect(addr: &str, path: &str) -> anyhow::Result<Socket> {
    super::websocket(addr, path, None).await
}

fn parse(text: &str, at: Instant) -> Option<Got> {
    let v: Value = serde_json::from_str(text).ok()?;
    let seq = v["seq"].as_u64()?;
    let sources = serde_json::from_value(v["sources"].clone()).unwrap_or_default();
    Some(Got { at, from: v["from"].as_u64().unwrap_or(seq), seq, sources })
}

/// Every message of view `name` at `addr` until `stop`.
async fn record(addr: &str, name: &str, stop: Instant) -> anyhow::Result<Vec<Got>> {
    let mut ws = connect(addr, &format!("/views/{name}/stream")).await?;
    let mut got = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(stop.into(), ws.next()).await {
        let at = Instant::now();
        if let Message::Text(t) = msg
            && let Some(g) = parse(t.as_str(), at)
        {
            got.push(g);
        }
    }
    Ok(got)
}

/// Reads `ws` until a message's `sources[upstream]` reaches `seq`.
async fn wait_sources(ws: &mut Socket, upstream: &str, seq: u64) -> anyhow::Result<Got> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(300), ws.next()).await.context("no progress in 300 s")?;
        let Some(Ok(Message::Text(t))) = msg else { bail!("the cascade closed its stream") };
        if let Some(g) = parse(t.as_str(), Instant::now())
            && g.sources.get(upstream).copied().unwrap_or(0) >= seq
        {
            return Ok(g);
        }
    }
}

/// When `up` had seq `s`: the arrival of the message that covered it.
fn covered_at(up: &[Got], s: u64) -> Option<&Got> {
    let i = up.partition_point(|g| g.seq < s);
    up.get(i).filter(|g| g.from <= s)
}

/// The messages of `down` that moved `sources[name]` on, each with the
/// upstream message it follows.
fn advances<'a>(up: &'a [Got], down: &'a [Got], name: &str) -> Vec<(&'a Got, &'a Got)> {
    let mut last = None;
    down.iter()
        .filter_map(|d| {
            let s = *d.sources.get(name)?;
            if last.is_some_and(|l| s <= l) {
                return None;
            }
            let first = last.is_none();
            last = Some(s);
            // The first message is the snapshot, not a reaction.
            if first { None } else { covered_at(up, s).map(|u| (u, d)) }
        })
        .collect()
}

fn hop(up: &[Got], down: &[Got], name: &str) -> RunStats {
    let latencies = advances(up, down, name)
        .into_iter()
        .map(|(u, d)| d.at.saturating_duration_since(u.at).as_nanos() as u64)
        .collect();
    RunStats { latencies, ..RunStats::default() }
}

/// End to end over a chain of views: from the first view's message to the
/// last view's, following each reaction back through `names`.
fn chain(views: &[&Vec<Got>], names: &[&str]) -> RunStats {
    // Per step, each reacting message → the upstream message it reacted to.
    let steps: Vec<std::collections::HashMap<*const Got, &Got>> = (0..views.len() - 1)
        .map(|k| advances(views[k], views[k + 1], names[k]).into_iter().map(|(u, d)| (d as *const Got, u)).collect())
        .collect();
    let last = steps.len() - 1;
    let latencies = steps[last]
        .iter()
        .filter_map(|(d, u)| {
            // Walk back while each step was a reaction to the step before.
            let origin = (0..last).rev().try_fold(*u, |u, k| steps[k].get(&(u as *const Got)).copied())?;
            let end = views[last + 1].iter().find(|g| std::ptr::eq(*g, *d))?;
            Some(end.at.saturating_duration_since(origin.at).as_nanos() as u64)
        })
        .collect();
    RunStats { latencies, ..RunStats::default() }
}

/// Pipelined dispatches over the chronicler's `/ws`.
struct Dispatcher {
    ws: Socket,
    next: u64,
}

impl Dispatcher {
    async fn connect(chronicler: &str) -> anyhow::Result<Dispatcher> {
        Ok(Dispatcher { ws: connect(chronicler, "/ws").await?, next: 0 })
    }

    /// Sends one action without waiting (acks are read by `send_all`).
    async fn send(&mut self, action: Value) -> anyhow::Result<()> {
        self.next += 1;
        let mut action = action;
        action["id"] = json!(format!("bench-cascade:{}", self.next));
        self.ws.send(Message::text(json!({"type": "dispatch", "action": action}).to_string())).await?;
        // Drain acks that are already there, so the socket never backs up.
        while let Some(Some(Ok(_))) = futures_util::FutureExt::now_or_never(self.ws.next()) {}
        Ok(())
    }

    /// Sends `actions`, windowed, and waits for every ack; the last seq.
    async fn send_all(&mut self, actions: Vec<Value>) -> anyhow::Result<u64> {
        let last_id = self.next + actions.len() as u64;
        let mut head = 0;
        for chunk in actions.chunks(512) {
            for a in chunk {
                self.next += 1;
                let mut a = a.clone();
                a["id"] = json!(format!("bench-cascade:{}", self.next));
                self.ws.feed(Message::text(json!({"type": "dispatch", "action": a}).to_string())).await?;
            }
            self.ws.flush().await?;
            let want = format!("bench-cascade:{}", self.next);
            loop {
                let Some(Ok(Message::Text(t))) = self.ws.next().await else {
                    bail!("the chronicler closed the socket")
                };
                let v: Value = serde_json::from_str(t.as_str())?;
                if v["type"] == "error" {
                    bail!("the chronicler refused a dispatch: {v}");
                }
                head = head.max(v["seq"].as_u64().unwrap_or(0));
                if v["id"] == want.as_str() {
                    break;
                }
            }
        }
        debug_assert_eq!(self.next, last_id);
        Ok(head)
    }
}

/// The reducer alone: `marketing` over an activity state built from
/// `entries` sales spread over a week (so its sales ledger is full), one
/// more sale at a time — reduce, diff and serialise, as a cascade update.
fn reducer_only(entries: u64) {
    use nodb_shared::protocol::CommittedAction;
    let app = nodb_warehouse::views::app();
    let mut states = app.initial_states();
    let t0 = 1_795_000_000_000u64;
    let step = 7 * 24 * 3_600_000 / entries.max(1);
    let action = |seq: u64, kind: &str, payload: Value| CommittedAction {
        seq,
        ts: t0 + seq * step,
        id: format!("b:{seq}"),
        kind: kind.into(),
        payload,
        meta: None,
        client: None,
    };
    for p in 0..50 {
        let a =
            action(0, "stock/corrected", json!({"product": format!("p{p}"), "location": "s", "quantity": 1u64 << 40}));
        states = app.reduce(&states, &a).unwrap_or(states);
    }
    let measured = 2000.min(entries);
    let mut activity_states = Vec::new();
    for seq in 1..=entries {
        let a =
            action(seq, "stock/sold", json!({"product": format!("p{}", seq * 7 % 50), "location": "s", "quantity": 1}));
        states = app.reduce(&states, &a).unwrap_or(states);
        if seq > entries - measured {
            activity_states.push(states[1].clone());
        }
    }
    let buckets =
        ["/sales/minutes", "/sales/hours"].map(|p| states[1].get(p).and_then(Tree::as_object).map_or(0, |o| o.len()));
    println!(
        "reducer alone, {entries} sales over a week ({} minute + {} hour buckets, 50 products), \
         per update (reduce + diff + serialise):",
        buckets[0], buckets[1]
    );
    // The activity patches, as the cascade receives them from upstream.
    let patches: Vec<json_patch::Patch> =
        activity_states.windows(2).map(|w| nodb_shared::diff::diff(&w[0], &w[1])).collect();
    let marketing = nodb_warehouse::cascades::marketing::cascade();
    for incremental in [false, true] {
        let started = Instant::now();
        let mut previous = marketing.reduce(&[&activity_states[0]]);
        let mut bytes = 0;
        for (a, ops) in activity_states[1..].iter().zip(&patches) {
            let change =
                if incremental { nodb_cascade::Change::Patched(&ops.0) } else { nodb_cascade::Change::Replaced };
            let next = marketing.update(Some(&previous), &[a], &[change]);
            bytes += serde_json::to_vec(&nodb_shared::diff::diff(&previous, &next)).map_or(0, |v| v.len());
            previous = next;
        }
        let per = started.elapsed() / (patches.len() as u32).max(1);
        println!(
            "  {:<40} {:>10} per update, {:>4} bytes of patch on average: {:.0} updates/s",
            if incremental { "incremental (from the activity patch)" } else { "full (from the activity state)" },
            fmt_duration(per),
            bytes / patches.len().max(1),
            1.0 / per.as_secs_f64().max(1e-9)
        );
    }
}
