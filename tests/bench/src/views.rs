//! `nodb-bench views`: end-to-end fan-out of a data view. Many WebSocket
//! clients subscribe to the warehouse `stock` view while a dispatcher
//! pushes actions at a steady rate through the chronicler; the clients
//! count the seqs delivered and the time from dispatch to patch. With
//! `--auth compare`, the same with and without access control, side by
//! side; with `--limits compare`, with the default limits and without.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::auth::{AuthMode, BenchKey, Side, round_order};
use super::cpu::cpu_time;
use super::limits::{self, LimitsMode};
use super::stats::{RunStats, fmt_duration};
use nodb_tests::Service;

use super::{start_chronicler_at, start_nodb_bin, websocket};

/// Fan-out: WebSocket clients of one view against a steady stream of
/// actions; deliveries per second and dispatch-to-patch latency.
///
/// With `--auth on` the chronicler and the data view check tokens: the
/// data view reads the chronicler with a `log` token (`--token-file`), the
/// dispatcher has a token that dispatches `stock/*`, and each client one
/// that reads `stock`, sent as `?token=`. With `--auth compare` each round
/// measures both, back to back (alternating which goes first), each with
/// services of its own, and prints the ratio on / off. `--limits compare`
/// does the same with the services' default limits and with them off.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench views --clients 1000 --rate 500
  target/release/nodb-bench views --auth compare --rounds 2     access control off and on, side by side
  target/release/nodb-bench views --limits compare --rounds 2   the default limits on and off, side by side")]
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
    /// Access control: `off` (open services), `on` (`--auth-key`, every
    /// client with a token), or `compare` (both in each round).
    #[arg(long, value_enum, value_name = "MODE", default_value = "off")]
    auth: AuthMode,
    /// Limits: `on` (the defaults), `off` (dispatch rates and per-address
    /// connection cap off, connection cap out of reach), or `compare`
    /// (both in each round).
    #[arg(long, value_enum, value_name = "MODE", default_value = "on")]
    limits: LimitsMode,
    /// How many times to measure each side.
    #[arg(long, value_name = "N", default_value_t = 1)]
    rounds: usize,
}

/// A figure read from an [`Outcome`], where known.
type Figure = dyn Fn(&Outcome) -> Option<f64>;

/// What one measurement of the fan-out found.
struct Outcome {
    clients: usize,
    /// Time for every client to connect and receive its snapshot.
    subscribe: Duration,
    /// Seq-updates delivered, and expected.
    covered: u64,
    expected: u64,
    /// Seq-updates delivered per second of dispatching.
    deliveries_per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Where the latency goes (p50, p99): dispatch to the chronicler's
    /// ack; dispatch to the first client that received the seq; and that
    /// first client to each other one.
    ack: (Duration, Duration),
    first: (Duration, Duration),
    spread: (Duration, Duration),
    /// CPU time of the data view and the chronicler from the first dispatch
    /// until every client had the last seq, where known.
    view_cpu: Option<Duration>,
    chronicler_cpu: Option<Duration>,
}

/// Runs the benchmark.
pub async fn run(args: &ViewsArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.rate == 0 || args.seconds.is_nan() || args.seconds <= 0.0 || args.rounds == 0 {
        bail!("--clients, --rate, --seconds and --rounds must be positive");
    }
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let key = BenchKey::new(tmp.path())?;
    let total = (args.rate as f64 * args.seconds) as u64;
    println!(
        "{} clients on /views/stock, {} actions/s for {:.1} s ({total} actions, {} expected deliveries)",
        args.clients,
        args.rate,
        args.seconds,
        total * args.clients as u64
    );
    let sides = limits::sides(args.auth, args.limits);
    let mut outcomes: Vec<(Side, Outcome)> = Vec::new();
    for round in 0..args.rounds {
        for side in round_order(&sides, round) {
            let dir = tmp.path().join(format!("round{round}-{}", side.label().replace([' ', ','], "-")));
            std::fs::create_dir(&dir)?;
            let key = (side == Side::Auth).then_some(&key);
            println!("\nround {} {}:", round + 1, side.label());
            let outcome = measure(args, &dir, key, limits::flags(side), total).await?;
            report(&outcome);
            outcomes.push((side, outcome));
        }
    }
    for (on, off, title) in limits::comparisons(args.auth, args.limits) {
        // Round by round, each ratio of two runs made back to back; the
        // median of the rounds, with the smallest and largest.
        println!("\n{title}, median of {} paired rounds [min, max]:", args.rounds);
        let figures: [(&str, &Figure); 6] = [
            ("deliveries/s", &|o| Some(o.deliveries_per_second)),
            ("dispatch-to-patch p50", &|o| Some(o.p50.as_secs_f64())),
            ("dispatch-to-patch p99", &|o| Some(o.p99.as_secs_f64())),
            ("subscribe (connect + snapshot, all clients)", &|o| Some(o.subscribe.as_secs_f64())),
            ("data view CPU per delivery", &|o| Some(o.view_cpu?.as_secs_f64() / o.covered.max(1) as f64)),
            ("chronicler CPU", &|o| Some(o.chronicler_cpu?.as_secs_f64())),
        ];
        for (name, f) in figures {
            let ratios: Vec<f64> = outcomes
                .chunks(sides.len())
                .filter_map(|round| {
                    let side = |s: Side| round.iter().find(|(x, _)| *x == s).map(|(_, o)| o);
                    Some(f(side(on)?)? / f(side(off)?)?.max(1e-12))
                })
                .collect();
            println!("  {name:<44} {}", limits::summary(ratios));
        }
    }
    Ok(())
}

fn report(o: &Outcome) {
    println!("  {} clients subscribed (connected, snapshot received) in {}", o.clients, fmt_duration(o.subscribe));
    println!(
        "  {:.0} deliveries/s ({:.1}% of {} delivered)",
        o.deliveries_per_second,
        100.0 * o.covered as f64 / o.expected as f64,
        o.expected
    );
    println!(
        "  dispatch-to-patch latency at the clients: p50 {}, p99 {} (targets: every delivery, p99 <= 25 ms)",
        fmt_duration(o.p50),
        fmt_duration(o.p99)
    );
    let pair = |(p50, p99): (Duration, Duration)| format!("p50 {}, p99 {}", fmt_duration(p50), fmt_duration(p99));
    println!(
        "    made of: dispatch to ack {}; dispatch to the first client {}; the first client to each other {}",
        pair(o.ack),
        pair(o.first),
        pair(o.spread)
    );
    if let (Some(view), Some(chronicler)) = (o.view_cpu, o.chronicler_cpu) {
        println!(
            "  CPU from the first dispatch to the last delivery: data view {} ({:.2} µs per delivery), chronicler {}",
            fmt_duration(view),
            view.as_secs_f64() * 1e6 / o.covered.max(1) as f64,
            fmt_duration(chronicler)
        );
    }
}

/// Starts a chronicler and a data view in `dir` (checking tokens signed
/// with `key`, if given), subscribes the clients, dispatches `total`
/// actions and measures what reaches the clients.
async fn measure(
    args: &ViewsArgs,
    dir: &std::path::Path,
    key: Option<&BenchKey>,
    extra: &[&str],
    total: u64,
) -> anyhow::Result<Outcome> {
    let (chronicler, chronicler_addr) = start_chronicler_at(&dir.join("nodb"), key, extra)?;
    let (view, view_addr) = start_dataview(dir, &chronicler_addr, key, extra)?;

    // Stock to sell, so that no action is rejected.
    let dispatcher_token = key.map(|k| k.dispatcher("bench", "stock/")).transpose()?;
    let mut dispatcher = websocket(&chronicler_addr, "/ws", dispatcher_token.as_deref()).await?;
    let seed = serde_json::json!({"type": "dispatch", "action": {"id": "bench.seed:1", "type": "stock/corrected",
        "payload": {"product": "apple", "location": "shelf", "quantity": 1_000_000_000u64}}});
    dispatcher.send(Message::text(seed.to_string())).await?;
    let first_seq = loop {
        let Some(Ok(Message::Text(t))) = dispatcher.next().await else { bail!("the chronicler closed the socket") };
        let v: serde_json::Value = serde_json::from_str(t.as_str())?;
        if let Some(seq) = v["seq"].as_u64() {
            break seq + 1;
        }
        if v["type"] == "error" {
            bail!("the chronicler refused the seed: {t}");
        }
    };
    let last_seq = first_seq + total - 1;

    // Every client: a socket to the view with a token of its own, reading
    // its snapshot first.
    let tokens = (0..args.clients)
        .map(|k| key.map(|key| key.reader(&format!("reader{k}"), "stock")).transpose())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let origin = Instant::now();
    let mut sockets = Vec::with_capacity(args.clients);
    for token in &tokens {
        let mut ws = websocket(&view_addr, "/views/stock/stream", token.as_deref()).await?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"snapshot\"") => {}
            other => bail!("expected a snapshot, got {other:?}"),
        }
        sockets.push(ws);
    }
    let subscribe = origin.elapsed();
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
        let mut ack_latencies = RunStats::default();
        while n < total {
            let Some(Ok(Message::Text(t))) = acks.next().await else { break };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            let (Some(seq), Some(k)) =
                (v["seq"].as_u64(), v["id"].as_str().and_then(|i| i.rsplit_once(':')?.1.parse::<u64>().ok()))
            else {
                continue;
            };
            if let (Some(slot), Some(t)) = (sent.get(seq as usize), times.get(k as usize)) {
                let t = t.load(Relaxed);
                slot.store(t, Relaxed);
                ack_latencies.latencies.push((origin.elapsed().as_nanos() as u64).saturating_sub(t));
            }
            n += 1;
        }
        ack_latencies
    });
    let started = Instant::now();
    let cpu_before = (cpu_time(view.pid()), cpu_time(chronicler.pid()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    for k in 1..=total {
        tick.tick().await;
        dispatch_times[k as usize].store(origin.elapsed().as_nanos() as u64, Relaxed);
        let m = serde_json::json!({"type": "dispatch", "action": {"id": format!("bench:{k}"), "type": "stock/sold",
            "payload": {"product": "apple", "location": "shelf", "quantity": 1}}});
        sink.send(Message::text(m.to_string())).await?;
    }
    let dispatching = started.elapsed();
    let mut ack = ack_reader.await?;
    let mut stats = RunStats { elapsed: dispatching, ..RunStats::default() };
    let mut messages = 0;
    let mut covered = 0;
    let mut seen_all = Vec::with_capacity(clients.len());
    for c in clients {
        seen_all.push(c.await?);
    }
    let cpu_after = (cpu_time(view.pid()), cpu_time(chronicler.pid()));
    let used = |before: Option<Duration>, after: Option<Duration>| Some(after?.saturating_sub(before?));
    // The first client to receive each seq (as the last of a message).
    let mut first_at = vec![u64::MAX; sent_at.len()];
    for (_, _, seen) in &seen_all {
        for &(seq, received) in seen {
            if let Some(f) = first_at.get_mut(seq as usize) {
                *f = (*f).min(received);
            }
        }
    }
    let (mut first, mut spread) = (RunStats::default(), RunStats::default());
    for (seq, &f) in first_at.iter().enumerate() {
        let sent = sent_at[seq].load(Relaxed);
        if f != u64::MAX && sent > 0 {
            first.latencies.push(f.saturating_sub(sent));
        }
    }
    for c in seen_all {
        let (cov, msgs, seen) = c;
        covered += cov;
        messages += msgs;
        for (seq, received) in seen {
            let sent = sent_at.get(seq as usize).map_or(0, |s| s.load(Relaxed));
            if sent > 0 {
                stats.latencies.push(received.saturating_sub(sent));
                spread.latencies.push(received.saturating_sub(first_at[seq as usize]));
            }
        }
    }
    let expected = total * args.clients as u64;
    stats.acks = covered;
    println!(
        "  delivered {covered} of {expected} seq-updates ({:.1}%) in {messages} messages",
        100.0 * covered as f64 / expected as f64,
    );
    Ok(Outcome {
        clients: args.clients,
        subscribe,
        covered,
        expected,
        deliveries_per_second: covered as f64 / dispatching.as_secs_f64(),
        p50: stats.quantile(0.5),
        p99: stats.quantile(0.99),
        ack: (ack.quantile(0.5), ack.quantile(0.99)),
        first: (first.quantile(0.5), first.quantile(0.99)),
        spread: (spread.quantile(0.5), spread.quantile(0.99)),
        view_cpu: used(cpu_before.0, cpu_after.0),
        chronicler_cpu: used(cpu_before.1, cpu_after.1),
    })
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

/// The warehouse data view following `chronicler`, with the `extra`
/// flags; with `key`, checking tokens and reading the chronicler with a
/// `log` token.
pub fn start_dataview(
    dir: &std::path::Path,
    chronicler: &str,
    key: Option<&BenchKey>,
    extra: &[&str],
) -> anyhow::Result<(Service, String)> {
    start_dataview_bin(&super::nodb_bin()?, dir, chronicler, key, extra)
}

/// [`start_dataview`] with the `nodb` binary `bin`.
pub fn start_dataview_bin(
    bin: &std::path::Path,
    dir: &std::path::Path,
    chronicler: &str,
    key: Option<&BenchKey>,
    extra: &[&str],
) -> anyhow::Result<(Service, String)> {
    let url = format!("http://{chronicler}");
    let snapshots = dir.join("snapshots").to_string_lossy().into_owned();
    let mut args = vec![
        "dataview",
        "--app",
        "warehouse",
        "--listen",
        "127.0.0.1:0",
        "--chronicler",
        &url,
        "--snapshots",
        &snapshots,
    ];
    let files = match key {
        Some(k) => Some((k.file().to_string_lossy().into_owned(), k.log_reader_file(dir, "bench-dataview")?)),
        None => None,
    };
    let token_file = files.as_ref().map(|(_, t)| t.to_string_lossy().into_owned());
    if let (Some((key_file, _)), Some(token_file)) = (&files, &token_file) {
        args.extend(["--auth-key", key_file, "--token-file", token_file]);
    }
    args.extend_from_slice(extra);
    start_nodb_bin(bin, &args)
}
