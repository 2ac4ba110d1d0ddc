//! `nodb-bench`: nodb's benchmarks, a binary of their own so that `nodb`
//! ships no benchmark code.
//!
//! Every subcommand starts the services it measures as their own processes
//! on loopback, through the end-to-end tests' harness
//! ([`nodb_tests::Service`]), running the `nodb` binary found next to this
//! one (`target/release/nodb` after `cargo build --release -p nodb -p
//! nodb-bench`). The load comes from this process.
//!
//! `nodb-bench ingest` (in this file): durable ingest throughput and ack
//! latency of the chronicler, side by side with NATS JetStream, in one run.
//! Both servers run as their own processes on loopback: `nodb chronicler`
//! and `nats-server -js` when it is installed. Each configuration runs for
//! a warm-up and a measured window; the report gives acknowledged actions
//! per second and ack latency p50/p99, and the ratios between the two
//! systems.

mod cascade;
mod envoy;
mod history;
mod load;
mod nats;
mod stats;
mod views;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use nodb_tests::Service;

use stats::{RunStats, fmt_duration};

/// nodb's benchmarks. Each starts the services it measures from the
/// `nodb` binary next to this one: build both in release first.
#[derive(Parser)]
#[command(
    name = "nodb-bench",
    version,
    after_help = "Build the release binaries first; nodb-bench runs the `nodb` next to it:
  cargo build --release -p nodb -p nodb-bench
  target/release/nodb-bench ingest

Run `nodb-bench <command> --help` for the details of each benchmark."
)]
struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    Ingest(IngestArgs),
    Views(views::ViewsArgs),
    /// Cascades: latency added per hop, derived updates per second.
    Cascade(cascade::CascadeArgs),
    /// Envoys: trigger-to-result latency and effects per second.
    Envoy(envoy::EnvoyArgs),
    /// As-of reads (`?at=N`) over a long history, against the live `GET`.
    History(history::HistoryArgs),
}

/// Durable ingest: acks/s and ack latency at 1, 16 and 64 clients, over
/// WebSocket (pipelined) and HTTP, against NATS JetStream.
///
/// Starts `nodb chronicler` and, if `nats-server` is on the PATH,
/// `nats-server -js` (file storage, one replica, synchronous publish acks),
/// each with a fresh data directory under a temporary folder on the same
/// filesystem as --dir. It also measures one raw 128-byte write + fdatasync
/// there, the floor for a durable ack.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench ingest

Compare ratios, not absolute numbers: the machine is shared and times drift.")]
struct IngestArgs {
    /// Where to put the data directories (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: std::path::PathBuf,
    /// Seconds to measure each configuration (after a warm-up of a quarter of it).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    seconds: f64,
    /// Dispatches in flight per pipelining client (and actions per request
    /// in the HTTP batch rows).
    #[arg(long, value_name = "N", default_value_t = 64)]
    window: usize,
    /// Client counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Skip NATS JetStream even if it is installed.
    #[arg(long)]
    no_nats: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the chain: "nodb-bench: outer: inner".
            eprintln!("nodb-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match &args.command {
        BenchCommand::Ingest(a) => runtime.block_on(ingest(a)),
        BenchCommand::Views(a) => runtime.block_on(views::run(a)),
        BenchCommand::Cascade(a) => runtime.block_on(cascade::run(a)),
        BenchCommand::Envoy(a) => runtime.block_on(envoy::run(a)),
        BenchCommand::History(a) => runtime.block_on(history::run(a)),
    }
}

/// A child process (`nats-server`) killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    if args.seconds.is_nan() || args.seconds <= 0.0 || args.window == 0 || args.clients.is_empty() {
        bail!("--seconds, --window and --clients must be positive");
    }
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let measure = Duration::from_secs_f64(args.seconds);
    // A committed action of about 128 bytes: id, type, a 64-byte payload.
    let payload = Arc::new(format!("\"{}\"", "x".repeat(64)));

    let fsync = raw_fdatasync(tmp.path())?;
    println!(
        "raw 128-byte write + fdatasync on this filesystem: p50 {} (p99 {})",
        fmt_duration(fsync.0),
        fmt_duration(fsync.1)
    );

    let (_chronicler, nodb_addr) = start_chronicler(tmp.path())?;
    let nats = if args.no_nats { None } else { start_nats(tmp.path()).await? };
    if nats.is_none() && !args.no_nats {
        println!("nats-server not found on PATH (Debian package `nats-server`): JetStream columns skipped");
    }

    println!(
        "\n{:<22} {:>7} {:>6} {:>12} {:>10} {:>10}",
        "system / transport", "clients", "window", "acks/s", "p50", "p99"
    );
    let mut rows: Vec<(String, usize, f64, Duration)> = Vec::new();
    let mut run_id = 0;
    for &clients in &args.clients {
        for (name, window) in [("nodb websocket", args.window), ("nodb http", 1), ("nodb http batch", args.window)] {
            run_id += 1;
            let addr = nodb_addr.clone();
            let payload = payload.clone();
            let mut stats = measure_run(clients, measure, move |k, from, stop| {
                let (addr, payload) = (addr.clone(), payload.clone());
                let client = format!("bench{run_id}-{k}");
                async move {
                    if name.starts_with("nodb http") {
                        load::http_client(addr, client, payload, window, from, stop).await
                    } else {
                        load::ws_client(addr, client, payload, window, from, stop).await
                    }
                }
            })
            .await?;
            print_row(name, clients, window, &mut stats);
            rows.push((name.to_string(), clients, stats.rate(), stats.quantile(0.5)));
        }
        if let Some((_, nats_addr)) = &nats {
            // Synchronous publish acks (one in flight per client, as
            // `js.publish()` awaits its ack), and pipelined for reference.
            for (name, window) in [("jetstream sync", 1), ("jetstream async", args.window)] {
                run_id += 1;
                let addr = nats_addr.clone();
                let bytes = Arc::new(nats_payload(&payload));
                let mut stats = measure_run(clients, measure, move |k, from, stop| {
                    let (addr, bytes) = (addr.clone(), bytes.clone());
                    nats::publisher(addr, format!("b{run_id}x{k}"), bytes, window, from, stop)
                })
                .await?;
                print_row(name, clients, window, &mut stats);
                rows.push((name.into(), clients, stats.rate(), stats.quantile(0.5)));
            }
        }
    }

    // Single-client latency with one action in flight: the cost of one ack.
    println!("\nsingle client, one action in flight (latency of one durable ack):");
    run_id += 1;
    let addr = nodb_addr.clone();
    let p = payload.clone();
    let mut one = measure_run(1, measure, move |_, from, stop| {
        load::ws_client(addr.clone(), format!("lat{run_id}"), p.clone(), 1, from, stop)
    })
    .await?;
    print_row("nodb websocket", 1, 1, &mut one);
    let nodb_p50 = one.quantile(0.5);
    if let Ok((sum, count)) = fsync_totals(&nodb_addr).await {
        println!(
            "  (the chronicler's own fdatasync over the whole run: mean {} over {count} syncs)",
            fmt_duration(Duration::from_secs_f64(sum / count.max(1) as f64))
        );
    }
    if let Some((_, nats_addr)) = &nats {
        run_id += 1;
        let addr = nats_addr.clone();
        let bytes = Arc::new(nats_payload(&payload));
        let mut js = measure_run(1, measure, move |_, from, stop| {
            nats::publisher(addr.clone(), format!("lat{run_id}"), bytes.clone(), 1, from, stop)
        })
        .await?;
        print_row("jetstream", 1, 1, &mut js);
    }

    println!("\nratios (throughput):");
    for &clients in &args.clients {
        let rate = |name: &str| rows.iter().find(|r| r.0 == name && r.1 == clients).map(|r| r.2);
        for (ours, theirs) in [
            ("nodb websocket", "jetstream sync"),
            ("nodb http", "jetstream sync"),
            ("nodb http batch", "jetstream sync"),
            ("nodb websocket", "jetstream async"),
        ] {
            if let (Some(n), Some(j)) = (rate(ours), rate(theirs)) {
                println!("  {clients:>3} clients: {ours:<16} / {theirs:<16} = {:.2}x", n / j);
            }
        }
    }
    println!(
        "  single-client p50 ack latency / raw fdatasync p50 = {:.2}x",
        nodb_p50.as_secs_f64() / fsync.0.as_secs_f64().max(1e-9)
    );
    if nats.is_some() {
        println!(
            "\nnote: JetStream acknowledges once a message is written to its file store, but by default\n\
             (sync_interval 2 minutes) it does not fsync each message: a power loss can lose acknowledged\n\
             messages. nodb acknowledges only after fdatasync, so its durability is stronger."
        );
    }
    Ok(())
}

fn print_row(name: &str, clients: usize, window: usize, s: &mut RunStats) {
    println!(
        "{:<22} {:>7} {:>6} {:>12.0} {:>10} {:>10}",
        name,
        clients,
        window,
        s.rate(),
        fmt_duration(s.quantile(0.5)),
        fmt_duration(s.quantile(0.99))
    );
}

/// The same committed-action-sized message for JetStream: what nodb stores
/// for one bench action (seq, ts, id, type, payload).
fn nats_payload(payload: &str) -> Vec<u8> {
    format!(r#"{{"seq":1000000,"ts":1795000000000,"id":"bench0-0:1000000","type":"bench/tick","payload":{payload}}}"#)
        .into_bytes()
}

/// Runs `clients` clients for a warm-up and `measure`, merging their stats.
async fn measure_run<F, Fut>(clients: usize, measure: Duration, make: F) -> anyhow::Result<RunStats>
where
    F: Fn(usize, Instant, Instant) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<RunStats>> + Send + 'static,
{
    let from = Instant::now() + measure / 4 + Duration::from_millis(100);
    let stop = from + measure;
    let tasks: Vec<_> = (0..clients).map(|k| tokio::spawn(make(k, from, stop))).collect();
    let mut total = RunStats { elapsed: measure, ..RunStats::default() };
    for t in tasks {
        total.merge(t.await??);
    }
    Ok(total)
}

/// The sum and count of the chronicler's fdatasync histogram.
async fn fsync_totals(addr: &str) -> anyhow::Result<(f64, u64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    let value = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    Ok((value("nodb_chronicler_fsync_seconds_sum "), value("nodb_chronicler_fsync_seconds_count ") as u64))
}

/// p50 and p99 of a 128-byte write + fdatasync at the end of a file.
fn raw_fdatasync(dir: &Path) -> anyhow::Result<(Duration, Duration)> {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("fsync-probe"))?;
    let mut samples = Vec::new();
    let record = [7u8; 128];
    let start = Instant::now();
    while samples.len() < 2000 && start.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        f.write_all(&record)?;
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok((samples[samples.len() / 2], samples[samples.len() * 99 / 100]))
}

fn start_chronicler(dir: &Path) -> anyhow::Result<(Service, String)> {
    let data = dir.join("nodb");
    start_nodb(&["chronicler", "--listen", "127.0.0.1:0", "--data", &data.to_string_lossy()])
}

/// The `nodb` binary next to this one (`target/release/nodb` beside
/// `target/release/nodb-bench`).
fn nodb_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the nodb-bench binary")?;
    let bin = exe.with_file_name(format!("nodb{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!("no nodb binary at {}: build it first with `cargo build --release -p nodb -p nodb-bench`", bin.display());
    }
    Ok(bin)
}

/// Starts `nodb ARGS` through the test harness (its logs at `warn`, on
/// this process's stderr) and returns it with the `host:port` of its
/// ready line (empty for a service without a port, such as an envoy).
fn start_nodb(args: &[&str]) -> anyhow::Result<(Service, String)> {
    let service = Service::start_passing_stderr(&nodb_bin()?, args, &[("RUST_LOG", "warn")])
        .map_err(|e| anyhow::anyhow!("nodb {} did not start: {e}", args[0]))?;
    let url = service.url().trim_start_matches("http://").to_string();
    Ok((service, url))
}

async fn start_nats(dir: &Path) -> anyhow::Result<Option<(Proc, String)>> {
    let Ok(found) = which("nats-server") else { return Ok(None) };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(found)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start nats-server")?;
    let proc = Proc(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match nats::Conn::connect(&addr).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(e.context("nats-server did not come up")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    conn.create_stream("BENCH", "bench.>").await?;
    Ok(Some((proc, addr)))
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).ok_or(())
}
