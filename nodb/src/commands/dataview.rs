//! `nodb dataview`: views computed from the chronicler's history, served
//! to clients as a snapshot and one patch per seq.

use std::net::SocketAddr;
use std::time::Duration;

use crate::Registry;
use anyhow::Context;
use nodb_dataview::history::HistorySettings;
use nodb_dataview::service::{Settings, start_following};
use nodb_dataview::snapshot::{SnapshotPolicy, Snapshots};

use crate::service;

/// Run a data view: an application's views, computed from the chronicler's
/// history by pure reducers, streamed to clients as RFC 6902 patches.
///
/// The view follows the chronicler's action stream (reconnecting with
/// back-off and resuming at the right seq; given several chroniclers of one
/// log, moving on to the next when one fails), applies each action to every
/// view, and sends each client exactly one update per seq: a patch (empty
/// when the view did not change), or one combined patch when the client fell
/// behind, or a fresh snapshot when it fell too far behind.
#[derive(clap::Args)]
#[command(after_help = "Endpoints:
  GET /views                              the views and their seq
  GET /views/{name}[?at=N]                {\"seq\", \"hash\", \"state\"}; an ?at older than the memory
                                          replays from the checkpoint before N (header nodb-replayed)
  GET /views/{name}/state/<pointer>       a subtree
  GET /views/{name}/stream?since=N&client=ID   WebSocket: snapshot or missed patches, then a patch per seq;
                                          it also takes {\"type\":\"dispatch\",\"action\":{...}} and relays the
                                          chronicler's ack, so a browser needs one socket;
                                          with &exact=true: one message per seq, never combined (for envoys)
  GET /health, /metrics                   status (public), Prometheus metrics (admin)

With --auth-key, every request but /health and the client files needs a token (Authorization:
Bearer, or ?token= on a WebSocket) that may read the view (a token that reads a subtree gets
that subtree as its state); a stream's dispatches are relayed with the client's own token.
The data view reads the chronicler with --token-file (a token with `log`).

Example:
  nodb chronicler --data ./nodb-data --listen 127.0.0.1:7401 &
  nodb dataview --app warehouse --chronicler http://127.0.0.1:7401 --listen 127.0.0.1:7402
  curl -s http://127.0.0.1:7402/views/stock

Several chroniclers sharing one replicated log (`nodb chronicler --log nats://… --replicas 3`)
have the same seqs, so a data view may follow any of them:
  nodb dataview --app warehouse --chronicler http://10.0.0.1:7401,http://10.0.0.2:7401 \\
    --snapshots s3://bucket/views --listen 127.0.0.1:7402
It follows the first; when the one it follows cannot be reached, refuses, or its stream fails,
it moves on to the next in the list and resumes at its own seq. History replays (?at) ask the
one it follows first, then the others; dispatches relayed from client sockets go to the one it
follows.
Data views of one app may share a --snapshots location: each writes the same snapshot at the
same seq (an existing one is kept), and each restarts from the newest valid one.

Start-up is the newest valid snapshot plus the tail of the history from the chronicler.
Snapshots are written at every multiple of --snapshot-every (checkpoints, kept for good, one
per --snapshot-every actions), every --snapshot-interval seconds, at each @@nodb/snapshot
action, and on shutdown; of those not checkpoints the newest --keep-snapshots are kept. While the
view catches up in batches, once a snapshot write took 100 ms or more, the checkpoints it
reaches while the snapshotter writes, or for nineteen times as long after, are skipped (a view
started from a snapshot rests for nineteen times its load, as after a write), and one
still waiting gives way to a newer one (on a large state it passes checkpoints faster than they
can be written); nodb_dataview_checkpoints_skipped counts them.

As-of reads: GET /views/{name}?at=N older than the --history seqs in memory starts from the
checkpoint at or before N (or a cached state) and replays at most --snapshot-every - 1
actions (more where checkpoints were skipped: from the newest snapshot before N); at most
--history-readers such replays run at once.

Exit status: 0 after a clean shutdown (Ctrl-C or SIGTERM), 2 on any error.")]
pub struct Args {
    /// The application: warehouse (the demo), json (a JSON document), or
    /// one an application binary added.
    #[arg(long, default_value = "warehouse")]
    app: String,
    /// The chronicler's URL, or several chroniclers of one log separated by
    /// commas: followed one at a time, in turn.
    #[arg(long, value_name = "URL[,URL…]", default_value = "http://127.0.0.1:7401")]
    chronicler: String,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7402")]
    listen: SocketAddr,
    /// How many recent seqs to keep in memory, for clients that fall behind
    /// and for `?at=N`.
    #[arg(long, value_name = "SEQS", default_value_t = 4096)]
    history: usize,
    /// Seconds between pings to each client; a client that misses a pong is
    /// disconnected.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    ping: f64,
    /// Where to keep snapshots: a local directory (written with fsync), or
    /// an object store URL such as s3://bucket/prefix (configured by the
    /// AWS_* environment variables; AWS_ENDPOINT and AWS_ALLOW_HTTP=true
    /// for an S3-compatible server).
    #[arg(long, value_name = "DIR|URL", default_value = "./nodb-data/snapshots")]
    snapshots: String,
    /// Write a checkpoint snapshot at every multiple of this seq, kept for
    /// good: `?at=N` replays fewer actions than this (unless checkpoints
    /// were skipped while the view caught up faster than they were written).
    #[arg(long, value_name = "SEQS", default_value_t = 10_000)]
    snapshot_every: u64,
    /// Write a snapshot after this many seconds, if anything changed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    snapshot_interval: f64,
    /// How many snapshots to keep besides the checkpoints.
    #[arg(long, value_name = "N", default_value_t = 3)]
    keep_snapshots: usize,
    /// How many history replays (`?at=N` older than the memory, exact
    /// streams far behind) may run at once; a read waits up to 10 s for its
    /// turn, then gets 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 2)]
    history_readers: usize,
    #[command(flatten)]
    guard: crate::guard::Guard,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
    #[command(flatten)]
    token: crate::guard::TokenFile,
}

/// Runs the command.
pub fn run(args: &Args, apps: &Registry) -> anyhow::Result<()> {
    let app = apps
        .get(&args.app)
        .with_context(|| format!("no app {:?}; this nodb knows {}", args.app, apps.names().join(", ")))?;
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(args.ping) || !positive(args.snapshot_interval) {
        anyhow::bail!("--ping and --snapshot-interval must be positive numbers of seconds");
    }
    let guarded = args.guard.load(args.listen)?;
    let token = args.token.source()?;
    let mut chroniclers = Vec::new();
    for url in args.chronicler.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let url = nodb_client::ServiceUrl::parse(url).context("--chronicler")?;
        chroniclers.push(url.with_token_source(token.clone()));
    }
    if chroniclers.is_empty() {
        anyhow::bail!("--chronicler needs at least one URL, like http://127.0.0.1:7401");
    }
    let more = chroniclers.split_off(1);
    let chronicler = chroniclers.remove(0);
    let settings = Settings {
        app,
        chronicler,
        history: args.history,
        ping: Duration::from_secs_f64(args.ping),
        snapshots: Snapshots::open(&args.snapshots, &args.app, args.keep_snapshots)?,
        policy: SnapshotPolicy {
            every_seqs: args.snapshot_every,
            every: Duration::from_secs_f64(args.snapshot_interval),
        },
        history_settings: HistorySettings { readers: args.history_readers, ..HistorySettings::default() },
        assets: apps.assets(&args.app),
        access: guarded.access,
        version: apps.version(&args.app).map(String::from),
    };
    settings.validate()?;
    let enforcer = args.limits.enforcer()?;
    service::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signal(args.limits.shutdown());
        let tasks = tokio_util::task::TaskTracker::new();
        let running = start_following(settings, more, shutdown.clone(), tasks).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        service::announce("dataview", listener.local_addr()?, guarded.tls.is_some());
        let router = nodb_dataview::server::router(running.state.clone());
        nodb_server::serve_with(listener, router, guarded.tls.as_ref(), shutdown, &enforcer)
            .await
            .context("the server failed")?;
        running.finish().await;
        Ok(())
    })
}
