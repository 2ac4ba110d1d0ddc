//! `nodb-bench cluster`: the chronicler on a replicated JetStream log
//! (issue 17), reported, never asserted.
//!
//! It starts a real three-node `nats-server` cluster on loopback
//! ([`NatsCluster`]), two chroniclers A and B sharing the R3 stream `NODB`
//! (`nodb chronicler --log <urls> --replicas 3`), and one chronicler on a
//! local log, all with their limits off. For each client count it
//! measures, row after row in one run: WebSocket (pipelined) through A;
//! the same split over A and B (two writers contending for the stream's
//! tail); HTTP (one in flight) through A; WebSocket on the local log; and
//! raw publishes to an R3 stream `BENCH` on the same cluster, one in
//! flight (a synchronous ack) and pipelined with the same window. It
//! prints acks/s and ack latency p50/p99 per row, and the ratios nodb/raw.
//!
//! Then the failover figure: one HTTP client dispatches continuously
//! through A (one in flight, retrying an error with the same id); every
//! round, after 2 s, the node leading `NODB` is killed (SIGKILL), the time
//! to the next acknowledged action is taken, and the node is restarted.
//! Last, `nodb log verify --log <urls>` checks the stream.
//!
//! ```text
//! cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench cluster
//! ```

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::future::BoxFuture;
use nodb_tests::Service;
use nodb_tests::nats::NatsCluster;
use tokio::task::block_in_place;

use super::stats::{RunStats, fmt_duration};
use super::{limits, load, measure_run, nats, nats_payload, nodb_bin, print_row, start_chronicler_at, start_nodb};

/// The chronicler on a three-node JetStream cluster (R3): acks/s and
/// p50/p99 at 1, 16 and 64 clients beside raw R3 publishes and the local
/// log, and the time from a stream leader's kill to the next ack.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench cluster
  target/release/nodb-bench cluster --clients 64 --failovers 10

Needs nats-server (Debian's /usr/sbin/nats-server, or $NATS_SERVER). Compare ratios,
not absolute numbers: the machine is shared and times drift.")]
pub struct ClusterArgs {
    /// Seconds to measure each row (after a warm-up of a quarter of it).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    seconds: f64,
    /// Dispatches (or publishes) in flight per pipelining client.
    #[arg(long, value_name = "N", default_value_t = 64)]
    window: usize,
    /// Client counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// How many times to kill the stream's leader (0: no failover figure).
    #[arg(long, value_name = "N", default_value_t = 5)]
    failovers: usize,
}

/// A row of the throughput table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    WsA,
    WsAb,
    HttpA,
    WsLocal,
    RawSync,
    RawPipelined,
}

const KINDS: [Kind; 6] = [Kind::WsA, Kind::WsAb, Kind::HttpA, Kind::WsLocal, Kind::RawSync, Kind::RawPipelined];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::WsA => "nodb ws, A (R3)",
            Kind::WsAb => "nodb ws, A+B (R3)",
            Kind::HttpA => "nodb http, A (R3)",
            Kind::WsLocal => "nodb ws, local log",
            Kind::RawSync => "raw R3, sync",
            Kind::RawPipelined => "raw R3, pipelined",
        }
    }

    /// In-flight dispatches per client.
    fn window(self, window: usize) -> usize {
        if matches!(self, Kind::HttpA | Kind::RawSync) { 1 } else { window }
    }
}

/// What the rows need: the three chroniclers' addresses and pids, a NATS
/// node's address, and the payloads.
struct Targets {
    a: String,
    b: String,
    local: String,
    pid_a: u32,
    pid_local: u32,
    nats: String,
    payload: Arc<String>,
    raw: Arc<Vec<u8>>,
}

/// Runs the benchmark.
pub async fn run(args: &ClusterArgs) -> anyhow::Result<()> {
    if args.seconds.is_nan() || args.seconds <= 0.0 || args.window == 0 || args.clients.contains(&0) {
        bail!("--seconds, --window and --clients must be positive");
    }
    let nodb = nodb_bin()?; // fail early, before starting a cluster
    let tmp = tempfile::Builder::new().prefix("nodb-bench-cluster-").tempdir()?;
    let mut cluster = block_in_place(|| std::panic::catch_unwind(NatsCluster::start))
        .map_err(|_| anyhow::anyhow!("the NATS cluster did not start (see above)"))?;
    let urls = cluster.urls();
    println!("3-node nats-server cluster: {urls}");

    let mut with_log = vec!["chronicler", "--listen", "127.0.0.1:0", "--log", urls.as_str(), "--replicas", "3"];
    with_log.extend_from_slice(&limits::NO_LIMITS);
    // A and B; started again after a row that fails (a chronicler that
    // finds the log damaged takes no more writes until it restarts).
    let start_pair =
        || -> anyhow::Result<[(Service, String); 2]> { Ok([start_nodb(&with_log)?, start_nodb(&with_log)?]) };
    let mut pair = start_pair()?;
    let (a, b) = (pair[0].1.clone(), pair[1].1.clone());
    let (service_local, local) = start_chronicler_at(&tmp.path().join("local"), None, &limits::NO_LIMITS)?;
    let nats_addr = cluster.url(0).trim_start_matches("nats://").to_string();
    nats::Conn::connect(&nats_addr).await?.create_stream_replicated("BENCH", "bench.>", 3).await?;
    let leaders = block_in_place(|| {
        let wait =
            |s: &str| cluster.wait_until(&format!("a leader of {s}"), Duration::from_secs(30), |c| c.stream_leader(s));
        (wait("NODB"), wait("BENCH"))
    });
    println!(
        "chroniclers A {a} and B {b} on stream NODB (R3, leader n{}); local-log chronicler {local}\n\
         raw publishes to stream BENCH (R3, leader n{}) through n0; every chronicler with its limits off",
        leaders.0, leaders.1
    );
    // A committed action of about 128 bytes, as `ingest` sends.
    let payload = Arc::new(format!("\"{}\"", "x".repeat(64)));
    let raw = Arc::new(nats_payload(&payload));
    let mut targets =
        Targets { a, b, local, pid_a: pair[0].0.pid(), pid_local: service_local.pid(), nats: nats_addr, payload, raw };

    println!(
        "\n{:<22} {:>7} {:>6} {:>12} {:>10} {:>10} {:>13}",
        "system / transport", "clients", "window", "acks/s", "p50", "p99", "server CPU/ack"
    );
    let measure = Duration::from_secs_f64(args.seconds);
    let mut rates: Vec<(Kind, usize, f64)> = Vec::new();
    let mut run_id = 0;
    let mut failed = 0;
    for &clients in &args.clients {
        for kind in KINDS {
            if kind == Kind::WsAb && clients < 2 {
                continue; // one client cannot be split over two chroniclers
            }
            run_id += 1;
            let mut stats = match row(kind, clients, args.window, measure, &targets, run_id).await {
                Ok(stats) => stats,
                Err(e) => {
                    let e: String = format!("{e:#}").chars().take(220).collect();
                    println!("{:<22} {clients:>7} {:>6}   FAILED: {e}", kind.label(), kind.window(args.window));
                    failed += 1;
                    if matches!(kind, Kind::WsA | Kind::WsAb | Kind::HttpA) {
                        drop(pair);
                        pair = start_pair()?;
                        (targets.a, targets.b, targets.pid_a) = (pair[0].1.clone(), pair[1].1.clone(), pair[0].0.pid());
                        println!("{:<22} (chroniclers A and B restarted: A {}, B {})", "", targets.a, targets.b);
                    }
                    continue;
                }
            };
            print_row(kind.label(), clients, kind.window(args.window), &mut stats);
            rates.push((kind, clients, stats.rate()));
        }
    }
    if failed > 0 {
        println!("{failed} row(s) FAILED (the chroniclers' stderr above says why)");
    }
    println!("\nratios (acks/s):");
    for &clients in &args.clients {
        let rate = |kind| rates.iter().find(|r| r.0 == kind && r.1 == clients).map(|r| r.2);
        for (ours, theirs) in [
            (Kind::WsA, Kind::RawPipelined),
            (Kind::WsAb, Kind::RawPipelined),
            (Kind::HttpA, Kind::RawSync),
            (Kind::WsA, Kind::WsLocal),
        ] {
            if let (Some(n), Some(r)) = (rate(ours), rate(theirs)) {
                println!(
                    "  {clients:>3} clients: {:<19} / {:<19} = {:.2}x",
                    ours.label(),
                    theirs.label(),
                    n / r.max(1e-9)
                );
            }
        }
    }

    if args.failovers > 0 {
        failover(&mut cluster, &targets, args.failovers).await?;
    }

    println!("\nnodb log verify --log {urls}:");
    let out = block_in_place(|| std::process::Command::new(&nodb).args(["log", "verify", "--log", &urls]).output())
        .context("cannot run nodb log verify")?;
    print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("(exit status {})", out.status.code().map_or_else(|| "none".into(), |c| c.to_string()));
    // The chroniclers first, then the NATS nodes (the cluster's Drop).
    drop((pair, service_local));
    drop(cluster);
    Ok(())
}

/// Measures one row: `clients` clients of `kind`, each named after
/// `run_id` so that every run's action numbers start at 1.
async fn row(
    kind: Kind,
    clients: usize,
    window: usize,
    measure: Duration,
    t: &Targets,
    run_id: usize,
) -> anyhow::Result<RunStats> {
    let window = kind.window(window);
    let server = match kind {
        Kind::WsA | Kind::HttpA => Some(t.pid_a),
        Kind::WsLocal => Some(t.pid_local),
        Kind::WsAb | Kind::RawSync | Kind::RawPipelined => None,
    };
    let (a, b, local, nats_addr) = (t.a.clone(), t.b.clone(), t.local.clone(), t.nats.clone());
    let (payload, raw) = (t.payload.clone(), t.raw.clone());
    measure_run(clients, measure, server, move |k, from, stop| -> BoxFuture<'static, anyhow::Result<RunStats>> {
        let client = format!("c{run_id}-{k}");
        let p = payload.clone();
        match kind {
            Kind::WsA => Box::pin(load::ws_client(a.clone(), client, None, p, window, from, stop)),
            // Even clients on A, odd on B.
            Kind::WsAb => {
                let addr = if k % 2 == 0 { a.clone() } else { b.clone() };
                Box::pin(load::ws_client(addr, client, None, p, window, from, stop))
            }
            Kind::HttpA => Box::pin(load::http_client(a.clone(), client, None, p, 1, from, stop)),
            Kind::WsLocal => Box::pin(load::ws_client(local.clone(), client, None, p, window, from, stop)),
            Kind::RawSync | Kind::RawPipelined => {
                Box::pin(nats::publisher(nats_addr.clone(), format!("b{run_id}x{k}"), raw.clone(), window, from, stop))
            }
        }
    })
    .await
}

/// One acknowledged action of the failover client: when it was first
/// sent and when its ack came.
#[derive(Clone, Copy)]
struct Acked {
    sent: Instant,
    acked: Instant,
}

/// The failover figure: `rounds` times, kill the leader of `NODB` after
/// 2 s of dispatching through A, time the next ack, restart the node.
async fn failover(cluster: &mut NatsCluster, t: &Targets, rounds: usize) -> anyhow::Result<()> {
    println!("\nfailover: one HTTP client through A, one in flight, retrying errors with the same id;");
    println!("each round, after 2 s, SIGKILL the node leading stream NODB, then restart it");
    let acks: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let errors: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client =
        tokio::spawn(dispatch_until(t.a.clone(), t.payload.clone(), acks.clone(), errors.clone(), stop.clone()));
    let mut times = Vec::new();
    println!(
        "{:>5} {:>7} {:>12} {:>14} {:>18} {:>7}",
        "round", "killed", "meta leader", "next ack", "next fresh ack", "errors"
    );
    for round in 1..=rounds {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (leader, meta) = block_in_place(|| {
            let leader = cluster.wait_until("a leader of NODB", Duration::from_secs(30), |c| c.stream_leader("NODB"));
            (leader, cluster.meta_leader())
        });
        let killed_at = Instant::now();
        block_in_place(|| cluster.kill(leader));
        let dead_at = Instant::now();
        // The first ack after the node is gone, and the first of an action
        // first sent after that (no ack of the dead leader's can be in it).
        let deadline = killed_at + Duration::from_secs(60);
        let (next, fresh) = loop {
            let found = {
                let acks = acks.lock().unwrap_or_else(|e| e.into_inner());
                let next = acks.iter().find(|a| a.acked > dead_at).map(|a| a.acked - killed_at);
                let fresh = acks.iter().find(|a| a.sent > dead_at).map(|a| a.acked - killed_at);
                next.zip(fresh)
            };
            if let Some(found) = found {
                break found;
            }
            if Instant::now() > deadline || client.is_finished() {
                bail!("no action acknowledged within 60 s of killing n{leader}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let failed = errors.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|e| e.0 > killed_at).count();
        let meta = meta.map_or_else(|| "?".into(), |m| format!("n{m}"));
        println!(
            "{round:>5} {:>7} {meta:>12} {:>14} {:>18} {failed:>7}",
            format!("n{leader}"),
            fmt_duration(next),
            fmt_duration(fresh)
        );
        times.push((next, fresh));
        if let Some((_, e)) = errors.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|e| e.0 > killed_at) {
            println!("      first error: {}", e.chars().take(160).collect::<String>());
        }
        block_in_place(|| {
            cluster.restart(leader);
            wait_replicas_current(cluster, "NODB");
        });
    }
    stop.store(true, Relaxed);
    let sent = tokio::time::timeout(Duration::from_secs(35), client).await.ok().and_then(|r| r.ok());
    let median = |f: fn(&(Duration, Duration)) -> Duration| {
        let mut v: Vec<Duration> = times.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "median over {rounds} kills: next ack {}, next fresh ack {} (max {}){}",
        fmt_duration(median(|t| t.0)),
        fmt_duration(median(|t| t.1)),
        fmt_duration(times.iter().map(|t| t.0).max().unwrap_or_default()),
        sent.map_or_else(String::new, |n| format!("; {n} actions acknowledged in all")),
    );
    Ok(())
}

/// Dispatches `failover:1`, `failover:2`, … to the chronicler at `addr`,
/// one at a time, until `stop`; an error (a status other than 200, or no
/// answer within 30 s) is sent again with the same id after 25 ms.
/// Returns how many were acknowledged.
async fn dispatch_until(
    addr: String,
    payload: Arc<String>,
    acks: Arc<Mutex<Vec<Acked>>>,
    errors: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let Ok(http) = reqwest::Client::builder().timeout(Duration::from_secs(30)).build() else { return 0 };
    let url = format!("http://{addr}/actions");
    let mut n = 1u64;
    let mut sent = Instant::now();
    while !stop.load(Relaxed) {
        let body = format!(r#"{{"id":"failover:{n}","type":"bench/tick","payload":{payload}}}"#);
        let answer = http.post(&url).header("content-type", "application/json").body(body).send().await;
        let error = match answer {
            Ok(r) if r.status().is_success() => {
                acks.lock().unwrap_or_else(|e| e.into_inner()).push(Acked { sent, acked: Instant::now() });
                n += 1;
                sent = Instant::now();
                continue;
            }
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        errors.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), error));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    n - 1
}

/// Waits (up to 30 s, then goes on with a note) until the leader of
/// `stream` reports both other replicas current, so that the next kill
/// leaves a quorum.
fn wait_replicas_current(cluster: &NatsCluster, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let current = cluster.stream_leader(stream).and_then(|leader| {
            let jsz = cluster.jsz(leader, "?streams=true")?;
            let detail = jsz["account_details"]
                .as_array()?
                .iter()
                .filter_map(|a| a["stream_detail"].as_array())
                .flatten()
                .find(|s| s["name"].as_str() == Some(stream))?
                .clone();
            let replicas = detail["cluster"]["replicas"].as_array()?.clone();
            Some(replicas.len() == 2 && replicas.iter().all(|r| r["current"].as_bool() == Some(true)))
        });
        if current == Some(true) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("  (the replicas of {stream} were not all current 30 s after the restart; going on)");
}
