//! `nodb-bench views`: end-to-end fan-out of a data view. Many WebSocket
//! clients subscribe to the warehouse `stock` view while a dispatcher
//! pushes actions at a steady rate through the chronicler; the clients
//! count the seqs delivered and the time from dispatch to patch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::stats::{RunStats, fmt_duration};
use nodb_tests::Service;

use super::{start_chronicler, start_nodb};

/// Fan-out: WebSocket clients of one view against a steady stream of
/// actions; deliveries per second and dispatch-to-patch latency.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench views --clients 1000 --rate 500")]
pub struct ViewsArgs {
    /// Where to put the data (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: std::path::PathBuf,
    /// Clients subscribed to the `stock` view.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Actions dispatched per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of dispatching.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// Runs the benchmark.
pub async fn run(args: &ViewsArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.rate == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("--clients, --rate and --seconds must be positive");
    }
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let (_chronicler, chronicler_addr) = start_chronicler(tmp.path())?;
    let (_view, view_addr) = start_dataview(tmp.path(), &chronicler_addr)?;
    let total = (args.rate as f64 * args.seconds) as u64;
    println!(
        "{} clients on /views/stock, {} actions/s for {:.1} s ({total} actions, {} expected deliveries)",
        args.clients,
        args.rate,
        args.seconds,
        total * args.clients as u64
    );

    // Stock to sell, so that no action is rejected.
    let mut dispatcher = connect(&chronicler_addr, "/ws").await?;
    let seed = serde_json::json!({"type": "dispatch", "action": {"id": "seed:1", "type": "stock/corrected",
        "payload": {"product": "apple", "location": "shelf", "quantity": 1_000_000_000u64}}});
    dispatcher.send(Message::text(seed.to_string())).await?;
    let first_seq = loop {
        let Some(Ok(Message::Text(t))) = dispatcher.next().await else { bail!("the chronicler closed the socket") };
        let v: serde_json::Value = serde_json::from_str(t.as_str())?;
        if let Some(seq) = v["seq"].as_u64() {
            break seq + 1;
        }
    };
    let last_seq = first_seq + total - 1;

    // Every client: a socket to the view, reading its snapshot first.
    let origin = Instant::now();
    let mut sockets = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let mut ws = connect(&view_addr, "/views/stock/stream").await?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"snapshot\"") => {}
            other => bail!("expected a snapshot, got {other:?}"),
        }
        sockets.push(ws);
    }
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..=last_seq + 1).map(|_| AtomicU64::new(0)).collect());
    let clients: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut seen: Vec<(u64, u64)> = Vec::new(); // (seq, received ns)
                let mut covered = 0u64;
                let mut messages = 0u64;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let msg = tokio::time::timeout_at(deadline, ws.next()).await;
                    let Ok(Some(Ok(Message::Text(t)))) = msg else { break };
                    let now = origin.elapsed().as_nanos() as u64;
                    let Some((from, seq)) = patch_range(t.as_str()) else { continue };
                    messages += 1;
                    covered += seq - from + 1;
                    seen.push((seq, now));
                    if seq >= last_seq {
                        break;
                    }
                }
                (covered, messages, seen)
            })
        })
        .collect();

    // The dispatcher: `rate` actions a second, pipelined; acks give seqs.
    let (mut sink, mut acks) = dispatcher.split();
    let dispatch_times: Arc<Vec<AtomicU64>> = Arc::new((0..=total).map(|_| AtomicU64::new(0)).collect());
    let times = dispatch_times.clone();
    let sent = sent_at.clone();
    let ack_reader = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            let Some(Ok(Message::Text(t))) = acks.next().await else { break };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            let (Some(seq), Some(k)) =
                (v["seq"].as_u64(), v["id"].as_str().and_then(|i| i.rsplit_once(':')?.1.parse::<u64>().ok()))
            else {
                continue;
            };
            if let (Some(slot), Some(t)) = (sent.get(seq as usize), times.get(k as usize)) {
                slot.store(t.load(Relaxed), Relaxed);
            }
            n += 1;
        }
    });
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    for k in 1..=total {
        tick.tick().await;
        dispatch_times[k as usize].store(origin.elapsed().as_nanos() as u64, Relaxed);
        let m = serde_json::json!({"type": "dispatch", "action": {"id": format!("bench:{k}"), "type": "stock/sold",
            "payload": {"product": "apple", "location": "shelf", "quantity": 1}}});
        sink.send(Message::text(m.to_string())).await?;
    }
    let dispatching = started.elapsed();
    ack_reader.await?;
    let mut stats = RunStats { elapsed: dispatching, ..RunStats::default() };
    let mut messages = 0;
    let mut covered = 0;
    for c in clients {
        let (cov, msgs, seen) = c.await?;
        covered += cov;
        messages += msgs;
        for (seq, received) in seen {
            let sent = sent_at.get(seq as usize).map_or(0, |s| s.load(Relaxed));
            if sent > 0 {
                stats.latencies.push(received.saturating_sub(sent));
            }
        }
    }
    let expected = total * args.clients as u64;
    stats.acks = covered;
    println!(
        "delivered {covered} of {expected} seq-updates ({:.1}%) in {messages} messages: {:.0} deliveries/s",
        100.0 * covered as f64 / expected as f64,
        covered as f64 / dispatching.as_secs_f64()
    );
    println!(
        "dispatch-to-patch latency at the clients: p50 {}, p99 {} (targets: every delivery, p99 <= 25 ms)",
        fmt_duration(stats.quantile(0.5)),
        fmt_duration(stats.quantile(0.99))
    );
    Ok(())
}

/// `(from, seq)` of a patch message, read without building a JSON tree.
fn patch_range(text: &str) -> Option<(u64, u64)> {
    if !text.starts_with("{\"type\":\"patch\"") {
        return None;
    }
    let num = |key: &str| -> Option<u64> {
        let at = text.find(key)? + key.len();
        let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let seq = num("\"seq\":")?;
    Some((num("\"from\":").unwrap_or(seq), seq))
}

async fn connect(addr: &str, path: &str) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp).await?;
    Ok(ws)
}

fn start_dataview(dir: &std::path::Path, chronicler: &str) -> anyhow::Result<(Service, String)> {
    let url = format!("http://{chronicler}");
    let snapshots = dir.join("snapshots");
    start_nodb(&[
        "dataview",
        "--app",
        "warehouse",
        "--listen",
        "127.0.0.1:0",
        "--chronicler",
        &url,
        "--snapshots",
        &snapshots.to_string_lossy(),
    ])
}
