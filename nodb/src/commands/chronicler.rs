//! `nodb chronicler`: the durable history as a service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nodb_chronicler::log::{FileLog, JetStreamConfig, JetStreamLog, Log, LogConfig};
use nodb_chronicler::metrics::Metrics;
use nodb_chronicler::server::{AppState, ServerConfig};
use nodb_shared::protocol::Limits;

use crate::service;

/// Run the chronicler: the durable, exactly-once, totally ordered history of
/// actions.
///
/// Actions are acknowledged only once they are on disk (fdatasync, with
/// group commit). Each client numbers its actions 1, 2, 3, … in their ids
/// (`<client>:<n>`); re-sends are acknowledged again and never recorded
/// twice, and a number that skips ahead is refused. The log lives in
/// segment files under DATA/log; on start the chronicler recovers from
/// whatever a crash left and refuses to start on a damaged history.
///
/// With --log nats://HOST:PORT[,…] the log is a replicated NATS JetStream
/// stream instead, which any number of chroniclers share: an action is
/// acknowledged once the stream's servers have stored it (a quorum of
/// --replicas), seqs stay gap-free, and exactly-once holds across all of
/// them.
#[derive(clap::Args)]
#[command(after_help = "Endpoints:
  POST /actions              one action or an array; answers {\"acks\": [...]} once durable
  GET  /ws                   WebSocket: send {\"type\":\"dispatch\",\"action\":{...}}, get acks
  GET  /actions?from=N       committed actions from seq N, then the live tail (NDJSON,
                             or a WebSocket on upgrade); &types=stock/,order/ filters by prefix
  GET  /clients/{client}     a client's last durable action number and seq
  GET  /health, /metrics     status (public; 503 with a reason while the log cannot take
                             appends), and Prometheus metrics (admin)

With --auth-key, every request but /health needs a token (Authorization: Bearer, or
?token= on a WebSocket): dispatching needs the action type's prefix and the action id's
client, GET /actions needs `log`, /metrics `admin` (see `nodb token --help`).

Example:
  nodb chronicler --data ./nodb-data --listen 127.0.0.1:7401
  nodb chronicler --log nats://10.0.0.1:4222,nats://10.0.0.2:4222 --replicas 3
  curl -s -H 'Content-Type: application/json' -d '{\"id\":\"me:1\",\"type\":\"hello\",\"payload\":{}}' http://127.0.0.1:7401/actions
  {\"acks\":[{\"id\":\"me:1\",\"seq\":1,\"duplicate\":false}]}
  curl -sN 'http://127.0.0.1:7401/actions?from=1'

Once ready it prints `nodb chronicler listening on http://HOST:PORT` on stdout; logs go to
stderr (set RUST_LOG=debug for more). Ctrl-C or SIGTERM finishes the write in flight,
acknowledges it and exits.

Exit status: 0 after a clean shutdown, 2 on any error (bad option, damaged log, port in use).")]
pub struct Args {
    /// The data directory; the log goes in DATA/log (created if missing).
    /// Not used with --log.
    #[arg(long, value_name = "DIR", default_value = "./nodb-data")]
    data: PathBuf,
    /// Keep the log in a NATS JetStream stream on these servers instead
    /// of in DATA/log: nats://HOST:PORT, comma-separated (any one of the
    /// cluster will do). Several chroniclers may share the stream.
    #[arg(long, value_name = "nats://HOST:PORT[,…]")]
    log: Option<String>,
    /// The JetStream stream's name (with --log); created if missing.
    #[arg(long, value_name = "NAME", default_value = "NODB", requires = "log")]
    stream: String,
    /// How many NATS servers keep a copy of the stream, when it is created
    /// (with --log): 1, 3 or 5.
    #[arg(long, value_name = "N", default_value_t = 3, requires = "log")]
    replicas: usize,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7401")]
    listen: SocketAddr,
    /// Roll to a new segment file past this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    segment_size: u64,
    /// The largest action payload accepted, in bytes of compact JSON.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    max_payload: usize,
    /// The largest request body or socket message accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    max_body: usize,
    /// Seconds between heartbeat lines on an idle stream.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    heartbeat: f64,
    /// Seconds a stream consumer may take nothing while actions wait for
    /// it before it is cut off (its buffer is bounded).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    stream_stall_timeout: f64,
    #[command(flatten)]
    guard: crate::guard::Guard,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let log_config = match &args.log {
        None => LogChoice::File(LogConfig { segment_size: args.segment_size, ..LogConfig::new(args.data.join("log")) }),
        Some(servers) => {
            if !matches!(args.replicas, 1 | 3 | 5) {
                anyhow::bail!("--replicas must be 1, 3 or 5, not {}", args.replicas);
            }
            let config = JetStreamConfig::parse(servers).map_err(|e| anyhow::anyhow!("--log: {e}"))?;
            LogChoice::JetStream(JetStreamConfig { stream: args.stream.clone(), replicas: args.replicas, ..config })
        }
    };
    if !(args.heartbeat.is_finite() && args.heartbeat > 0.0) {
        anyhow::bail!("--heartbeat must be a positive number of seconds");
    }
    if !(args.stream_stall_timeout.is_finite() && args.stream_stall_timeout > 0.0) {
        anyhow::bail!("--stream-stall-timeout must be a positive number of seconds");
    }
    let server_config = ServerConfig {
        limits: Limits { max_payload_bytes: args.max_payload, ..Limits::default() },
        max_body_bytes: args.max_body,
        heartbeat: Duration::from_secs_f64(args.heartbeat),
        stream_stall: Duration::from_secs_f64(args.stream_stall_timeout),
    };
    let guarded = args.guard.load(args.listen)?;
    let enforcer = args.limits.enforcer()?;
    service::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signal(args.limits.shutdown());
        let chronicler = open(log_config, server_config, guarded.access, shutdown.clone()).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        service::announce("chronicler", listener.local_addr()?, guarded.tls.is_some());
        let router = nodb_chronicler::server::router(chronicler.state.clone());
        nodb_server::serve_with(listener, router, guarded.tls.as_ref(), shutdown, &enforcer)
            .await
            .context("the server failed")?;
        chronicler.finish().await;
        Ok(())
    })
}

/// Where the log is kept.
pub(crate) enum LogChoice {
    /// Segment files in a local directory.
    File(LogConfig),
    /// A replicated NATS JetStream stream.
    JetStream(JetStreamConfig),
}

/// An open log, to shut down at the end.
enum OpenLog {
    File(Arc<FileLog>),
    JetStream(Arc<JetStreamLog>),
}

/// An open chronicler: the state its routes serve, and its log.
pub(crate) struct Chronicler {
    /// What the routes serve.
    pub state: AppState,
    log: OpenLog,
}

/// Checks the settings and recovers the log; the caller serves the state.
pub(crate) async fn open(
    log_config: LogChoice,
    server_config: ServerConfig,
    access: nodb_server::Access,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Chronicler> {
    server_config.validate().map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let (log, served): (OpenLog, Arc<dyn Log>) = match log_config {
        LogChoice::File(log_config) => {
            log_config.validate().map_err(anyhow::Error::msg)?;
            let dir = log_config.dir.display().to_string();
            let (log, recovered) = tokio::task::spawn_blocking(move || FileLog::open(&log_config, m)).await??;
            tracing::info!(
                head = recovered.head,
                segments = recovered.segments,
                clients = recovered.clients,
                torn_bytes = recovered.torn_bytes,
                log = %dir,
                "log recovered"
            );
            (OpenLog::File(log.clone()), log)
        }
        LogChoice::JetStream(config) => {
            let (log, recovered) = JetStreamLog::open(&config, m).await?;
            tracing::info!(
                head = recovered.head,
                writes = recovered.writes,
                clients = recovered.clients,
                stream = %config.stream,
                servers = %config.servers.join(","),
                "log read from JetStream"
            );
            (OpenLog::JetStream(log.clone()), log)
        }
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let state = AppState { log: served, metrics, config: Arc::new(server_config), shutdown, tasks, access };
    Ok(Chronicler { state, log })
}

impl Chronicler {
    /// After the server has stopped: finishes every append already queued,
    /// then lets the sockets deliver their last acks.
    pub async fn finish(self) {
        match &self.log {
            OpenLog::File(log) => log.shutdown().await,
            OpenLog::JetStream(log) => log.shutdown().await,
        }
        self.state.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.state.tasks.wait()).await.is_err() {
            tracing::warn!("some sockets did not finish within 10 s of shutdown");
        }
        tracing::info!("chronicler stopped");
    }
}
