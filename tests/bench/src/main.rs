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
//! systems. With `--auth compare` it also runs a chronicler that checks
//! tokens beside the open one and gives the ratio auth on / off; with
//! `--limits compare` ([`limits`]), one with its limits off beside the one
//! with the default limits, and the ratio on / off.
//!
//! `nodb-bench idle` ([`idle`]): the memory of a data view holding many
//! idle streams.
//!
//! `nodb-bench token` ([`auth`]): the cost of one token check in this
//! process, and over HTTP against a chronicler.
//!
//! `nodb-bench pipeline` ([`pipeline`]): whether a data view keeps pace
//! with the chronicler at full ingest, for one `nodb` binary or several
//! side by side.
//!
//! `nodb-bench recovery` ([`recovery`]): how long a data view that starts
//! takes to serve the head: its snapshot loaded, a long tail applied.
//!
//! `nodb-bench redact` ([`redact`]): redaction latency by depth, and
//! `nodb replay` speed, over a long warehouse history.
//!
//! `nodb-bench cluster` ([`cluster`]): the chronicler on a three-node
//! JetStream cluster (R3) beside raw R3 publishes and the local log, and
//! the time from a stream leader's kill to the next ack.

mod auth;
mod cascade;
mod cluster;
mod cpu;
mod envoy;
mod history;
mod idle;
mod limits;
mod load;
mod nats;
mod pipeline;
mod recovery;
mod redact;
mod stats;
mod views;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use nodb_tests::Service;

use auth::{AuthMode, BenchKey, Side};
use limits::LimitsMode;
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
    /// The cost of one token check (`KeySet::verify`, `Access::grant`) and its parts.
    Token(auth::TokenArgs),
    /// The memory of a data view holding many idle streams.
    Idle(idle::IdleArgs),
    Pipeline(pipeline::PipelineArgs),
    Recovery(recovery::RecoveryArgs),
    /// Redaction latency by depth, and `nodb replay` speed, over a long history.
    Redact(redact::RedactArgs),
    Cluster(cluster::ClusterArgs),
}

/// Durable ingest: acks/s and ack latency at 1, 16 and 64 clients, over
/// WebSocket (pipelined) and HTTP, against NATS JetStream.
///
/// Starts `nodb chronicler` and, if `nats-server` is on the PATH,
/// `nats-server -js` (file storage, one replica, synchronous publish acks),
/// each with a fresh data directory under a temporary folder on the same
/// filesystem as --dir. It also measures one raw 128-byte write + fdatasync
/// there, the floor for a durable ack.
///
/// With `--auth compare` it runs a second chronicler with `--auth-key`
/// (each client with a token of its own, on every HTTP request and on the
/// socket's upgrade) and measures the two back to back, row by row. With
/// `--limits compare`, likewise a chronicler with its limits off beside
/// one with the default limits.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench ingest
  target/release/nodb-bench ingest --auth compare --no-nats     access control off and on, side by side
  target/release/nodb-bench ingest --limits compare --no-nats   the default limits on and off, side by side

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
    /// Access control: `off` (open chronicler), `on` (`--auth-key`, every
    /// client with a token), or `compare` (both in one run, back to back,
    /// with the ratio on / off).
    #[arg(long, value_enum, value_name = "MODE", default_value = "off")]
    auth: AuthMode,
    /// Limits: `on` (the defaults), `off` (dispatch rates and per-address
    /// connection cap off, connection cap out of reach), or `compare`
    /// (both in one run, back to back, with the ratio on / off).
    #[arg(long, value_enum, value_name = "MODE", default_value = "on")]
    limits: LimitsMode,
    /// How many times to measure each row (with `--auth compare` or
    /// `--limits compare`, each round runs every side back to back,
    /// alternating which goes first).
    #[arg(long, value_name = "N", default_value_t = 1)]
    rounds: usize,
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
        BenchCommand::Token(a) => runtime.block_on(auth::token(a)),
        BenchCommand::Idle(a) => runtime.block_on(idle::run(a)),
        BenchCommand::Pipeline(a) => runtime.block_on(pipeline::run(a)),
        BenchCommand::Recovery(a) => runtime.block_on(recovery::run(a)),
        BenchCommand::Redact(a) => runtime.block_on(redact::run(a)),
        BenchCommand::Cluster(a) => runtime.block_on(cluster::run(a)),
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

/// One chronicler measured by `ingest`: open, or checking tokens signed
/// with `key`.
struct Chronicler {
    side: Side,
    addr: String,
    key: Option<Arc<BenchKey>>,
    /// The process, for its CPU time.
    pid: u32,
    _service: Service,
}

impl Chronicler {
    /// The token for `client` (may dispatch `bench/*`), when this one checks tokens.
    fn token(&self, client: &str) -> anyhow::Result<Option<String>> {
        self.key.as_ref().map(|k| k.dispatcher(client, "bench/")).transpose()
    }
}

/// A measured row: transport, clients, side, round, acks/s, p50, the
/// chronicler's CPU per ack.
struct Row {
    name: &'static str,
    clients: usize,
    round: usize,
    cpu_per_ack: Option<Duration>,
    side: Side,
    rate: f64,
    p50: Duration,
}

async fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    if args.seconds.is_nan() || args.seconds <= 0.0 || args.window == 0 || args.clients.is_empty() || args.rounds == 0 {
        bail!("--seconds, --window, --clients and --rounds must be positive");
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

    // One chronicler per side, each with its own log on the same filesystem.
    let sides = limits::sides(args.auth, args.limits);
    let mut chroniclers = Vec::new();
    for &side in &sides {
        let key = match side {
            Side::Open | Side::NoLimits => None,
            Side::Auth => Some(Arc::new(BenchKey::new(tmp.path())?)),
        };
        let data = tmp.path().join(format!("nodb-{}", side.label().replace([' ', ','], "-")));
        let (service, addr) = start_chronicler_at(&data, key.as_deref(), limits::flags(side))?;
        let pid = service.pid();
        chroniclers.push(Chronicler { side, addr, key, pid, _service: service });
    }
    let nats = if args.no_nats { None } else { start_nats(tmp.path()).await? };
    if nats.is_none() && !args.no_nats {
        println!("nats-server not found on PATH (Debian package `nats-server`): JetStream columns skipped");
    }
    if args.auth == AuthMode::Compare {
        println!(
            "auth off and auth on (+auth: every request and socket carries a token) run back to back, alternating"
        );
    }
    if args.limits == LimitsMode::Compare {
        println!(
            "the default limits on and off (-limits: {}) run back to back, alternating",
            limits::NO_LIMITS.join(" ")
        );
    }

    println!(
        "\n{:<22} {:>7} {:>6} {:>12} {:>10} {:>10} {:>13}",
        "system / transport", "clients", "window", "acks/s", "p50", "p99", "server CPU/ack"
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut run_id = 0;
    let mut turn = 0;
    for &clients in &args.clients {
        for (name, window) in [("nodb websocket", args.window), ("nodb http", 1), ("nodb http batch", args.window)] {
            for round in 0..args.rounds {
                let order: Vec<&Chronicler> = auth::round_order(&sides, turn)
                    .into_iter()
                    .filter_map(|side| chroniclers.iter().find(|c| c.side == side))
                    .collect();
                turn += 1;
                for chronicler in order {
                    run_id += 1;
                    let tokens = (0..clients)
                        .map(|k| chronicler.token(&format!("bench{run_id}-{k}")))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let tokens = Arc::new(tokens);
                    let addr = chronicler.addr.clone();
                    let payload = payload.clone();
                    let mut stats = measure_run(clients, measure, Some(chronicler.pid), move |k, from, stop| {
                        let (addr, payload, token) = (addr.clone(), payload.clone(), tokens[k].clone());
                        let client = format!("bench{run_id}-{k}");
                        async move {
                            if name.starts_with("nodb http") {
                                load::http_client(addr, client, token, payload, window, from, stop).await
                            } else {
                                load::ws_client(addr, client, token, payload, window, from, stop).await
                            }
                        }
                    })
                    .await?;
                    print_row(&format!("{name}{}", chronicler.side.suffix()), clients, window, &mut stats);
                    rows.push(Row {
                        name,
                        clients,
                        round,
                        cpu_per_ack: stats.cpu_per_ack(),
                        side: chronicler.side,
                        rate: stats.rate(),
                        p50: stats.quantile(0.5),
                    });
                }
            }
        }
        if let Some((_, nats_addr)) = &nats {
            // Synchronous publish acks (one in flight per client, as
            // `js.publish()` awaits its ack), and pipelined for reference.
            for (name, window) in [("jetstream sync", 1), ("jetstream async", args.window)] {
                run_id += 1;
                let addr = nats_addr.clone();
                let bytes = Arc::new(nats_payload(&payload));
                let mut stats = measure_run(clients, measure, None, move |k, from, stop| {
                    let (addr, bytes) = (addr.clone(), bytes.clone());
                    nats::publisher(addr, format!("b{run_id}x{k}"), bytes, window, from, stop)
                })
                .await?;
                print_row(name, clients, window, &mut stats);
                rows.push(Row {
                    name,
                    clients,
                    round: 0,
                    cpu_per_ack: None,
                    side: Side::Open,
                    rate: stats.rate(),
                    p50: stats.quantile(0.5),
                });
            }
        }
    }

    // Single-client latency with one action in flight: the cost of one ack.
    println!("\nsingle client, one action in flight (latency of one durable ack):");
    let mut single: Vec<(Side, Duration)> = Vec::new();
    for chronicler in &chroniclers {
        run_id += 1;
        let addr = chronicler.addr.clone();
        let p = payload.clone();
        let client = format!("lat{run_id}");
        let token = chronicler.token(&client)?;
        let mut one = measure_run(1, measure, Some(chronicler.pid), move |_, from, stop| {
            load::ws_client(addr.clone(), client.clone(), token.clone(), p.clone(), 1, from, stop)
        })
        .await?;
        print_row(&format!("nodb websocket{}", chronicler.side.suffix()), 1, 1, &mut one);
        single.push((chronicler.side, one.quantile(0.5)));
        if let Ok((sum, count)) = fsync_totals(&chronicler.addr, chronicler.key.as_deref()).await {
            println!(
                "  (the chronicler's own fdatasync over the whole run: mean {} over {count} syncs)",
                fmt_duration(Duration::from_secs_f64(sum / count.max(1) as f64))
            );
        }
    }
    if let Some((_, nats_addr)) = &nats {
        run_id += 1;
        let addr = nats_addr.clone();
        let bytes = Arc::new(nats_payload(&payload));
        let mut js = measure_run(1, measure, None, move |_, from, stop| {
            nats::publisher(addr.clone(), format!("lat{run_id}"), bytes.clone(), 1, from, stop)
        })
        .await?;
        print_row("jetstream", 1, 1, &mut js);
    }

    println!("\nratios:");
    for &clients in &args.clients {
        let row = |name: &str, side: Side| {
            rows.iter().find(|r| r.name == name && r.clients == clients && r.side == side && r.round == 0)
        };
        for (ours, theirs) in [
            ("nodb websocket", "jetstream sync"),
            ("nodb http", "jetstream sync"),
            ("nodb http batch", "jetstream sync"),
            ("nodb websocket", "jetstream async"),
        ] {
            if let (Some(n), Some(j)) = (row(ours, Side::Open), row(theirs, Side::Open)) {
                println!("  {clients:>3} clients: {ours:<16} / {theirs:<16} = {:.2}x", n.rate / j.rate);
            }
        }
    }
    for (on, off, title) in limits::comparisons(args.auth, args.limits) {
        side_ratios(&rows, args, on, off, title);
    }
    for (side, p50) in &single {
        println!(
            "  single-client p50 ack latency / raw fdatasync p50 = {:.2}x ({})",
            p50.as_secs_f64() / fsync.0.as_secs_f64().max(1e-9),
            side.label()
        );
    }
    if nats.is_some() {
        println!(
            "\nnote: JetStream acknowledges once a message is written to its file store, but by default\n\
             (sync_interval 2 minutes) it does not fsync each message: a power loss can lose acknowledged\n\
             messages. nodb acknowledges only after fdatasync, so its durability is stronger."
        );
    }
    Ok(())
}

/// Side `on` against side `off` for each transport and client count: the
/// median over the rounds of each round's ratio (the sides of a round ran
/// back to back), with the smallest and largest.
fn side_ratios(rows: &[Row], args: &IngestArgs, on: Side, off: Side, title: &str) {
    println!("\n{title}, median of {} paired rounds [min, max]:", args.rounds);
    println!("{:<22} {:>7} {:>28} {:>28} {:>28}", "transport", "clients", "acks/s", "ack p50", "server CPU/ack");
    for &clients in &args.clients {
        for name in ["nodb websocket", "nodb http", "nodb http batch"] {
            let pairs: Vec<(&Row, &Row)> = (0..args.rounds)
                .filter_map(|round| {
                    let find = |side| {
                        rows.iter()
                            .find(|r| r.name == name && r.clients == clients && r.round == round && r.side == side)
                    };
                    Some((find(on)?, find(off)?))
                })
                .collect();
            let ratio = |f: &dyn Fn(&Row) -> Option<f64>| {
                limits::summary(pairs.iter().filter_map(|(on, off)| Some(f(on)? / f(off)?.max(1e-12))).collect())
            };
            println!(
                "{name:<22} {clients:>7} {:>28} {:>28} {:>28}",
                ratio(&|r| Some(r.rate)),
                ratio(&|r| Some(r.p50.as_secs_f64())),
                ratio(&|r| r.cpu_per_ack.map(|d| d.as_secs_f64())),
            );
        }
    }
}

fn print_row(name: &str, clients: usize, window: usize, s: &mut RunStats) {
    println!(
        "{:<22} {:>7} {:>6} {:>12.0} {:>10} {:>10} {:>13}",
        name,
        clients,
        window,
        s.rate(),
        fmt_duration(s.quantile(0.5)),
        fmt_duration(s.quantile(0.99)),
        s.cpu_per_ack().map_or_else(|| "-".into(), |d| format!("{:.1} µs", d.as_secs_f64() * 1e6))
    );
}

/// The same committed-action-sized message for JetStream: what nodb stores
/// for one bench action (seq, ts, id, type, payload).
fn nats_payload(payload: &str) -> Vec<u8> {
    format!(r#"{{"seq":1000000,"ts":1795000000000,"id":"bench0-0:1000000","type":"bench/tick","payload":{payload}}}"#)
        .into_bytes()
}

/// Runs `clients` clients for a warm-up and `measure`, merging their
/// stats, with the CPU time of the server process `server` (if given)
/// inside the measured window.
async fn measure_run<F, Fut>(
    clients: usize,
    measure: Duration,
    server: Option<u32>,
    make: F,
) -> anyhow::Result<RunStats>
where
    F: Fn(usize, Instant, Instant) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<RunStats>> + Send + 'static,
{
    let from = Instant::now() + measure / 4 + Duration::from_millis(100);
    let stop = from + measure;
    let cpu = server.map(|pid| cpu::during(pid, from, stop));
    let tasks: Vec<_> = (0..clients).map(|k| tokio::spawn(make(k, from, stop))).collect();
    let mut total = RunStats { elapsed: measure, ..RunStats::default() };
    for t in tasks {
        total.merge(t.await??);
    }
    if let Some(cpu) = cpu {
        total.server_cpu = cpu.await?;
    }
    Ok(total)
}

/// The sum and count of the chronicler's fdatasync histogram (metrics need
/// an admin token when the chronicler checks tokens).
async fn fsync_totals(addr: &str, key: Option<&BenchKey>) -> anyhow::Result<(f64, u64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authorization = match key {
        Some(k) => format!(
            "Authorization: Bearer {}\r\n",
            k.mint(nodb_auth::Claims { sub: "bench-metrics".into(), admin: true, ..nodb_auth::Claims::default() })?
        ),
        None => String::new(),
    };
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n").as_bytes(),
    )
    .await?;
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
    start_chronicler_at(&dir.join("nodb"), None, &[])
}

/// A WebSocket to `path` at `addr` (`HOST:PORT`), with `?token=` when
/// there is a token (as a browser sends it), opened by `nodb-client`
/// (Nagle off; a minute for the handshake, as a loaded machine may need).
async fn websocket(addr: &str, path: &str, token: Option<&str>) -> anyhow::Result<nodb_client::WebSocket> {
    let base = nodb_client::ServiceUrl::parse(&format!("http://{addr}"))?;
    let query: Vec<(&str, &str)> = token.map(|t| ("token", t)).into_iter().collect();
    let url = base.ws(path, &query);
    let connector = nodb_client::WsConnector::new().timeout(Duration::from_secs(60));
    Ok(connector.connect(&url).await?)
}

/// Starts a chronicler with its log in `data`, checking tokens signed with
/// `key` when given, with the `extra` flags.
fn start_chronicler_at(data: &Path, key: Option<&BenchKey>, extra: &[&str]) -> anyhow::Result<(Service, String)> {
    start_chronicler_bin(&nodb_bin()?, data, key, extra)
}

/// [`start_chronicler_at`] with the `nodb` binary `bin`.
fn start_chronicler_bin(
    bin: &Path,
    data: &Path,
    key: Option<&BenchKey>,
    extra: &[&str],
) -> anyhow::Result<(Service, String)> {
    let data = data.to_string_lossy();
    let mut args = vec!["chronicler", "--listen", "127.0.0.1:0", "--data", &data];
    args.extend_from_slice(extra);
    let key_file = key.map(|k| k.file().to_string_lossy().into_owned());
    if let Some(file) = &key_file {
        args.extend(["--auth-key", file]);
    }
    start_nodb_bin(bin, &args)
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
    start_nodb_bin(&nodb_bin()?, args)
}

/// [`start_nodb`] with the `nodb` binary `bin`.
fn start_nodb_bin(bin: &Path, args: &[&str]) -> anyhow::Result<(Service, String)> {
    let service = Service::start_passing_stderr(bin, args, &[("RUST_LOG", "warn")])
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
