//! `nodb up`: the whole system in one process on one address — the
//! chronicler, the app's data view, its envoys (with the demo supplier for
//! the warehouse), its cascaded views, the client library and the demo
//! page.

use axum::serve::ListenerExt as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Registry;
use anyhow::Context;
use nodb_chronicler::log::LogConfig;
use nodb_chronicler::server::{ServerConfig, api_router, status_router};
use nodb_dataview::snapshot::{SnapshotPolicy, Snapshots};

use super::chronicler;
use crate::service;
use nodb_dataview::service as dataview;

/// Run nodb on one machine with nothing to set up: the durable history, the
/// app's views and the web demo, all on one address.
///
/// Everything is stored under --data (the log in DATA/log, snapshots in
/// DATA/snapshots); running `nodb up` again continues from the same history.
#[derive(clap::Args)]
#[command(after_help = "On the one address:
  GET  /                          the warehouse demo (open it in a browser)
  GET  /nodb.js, /nodb.d.ts       the client library and its TypeScript declarations
  GET  /views, /views/{name}[?at=N], /views/{name}/state/<pointer>, /views/{name}/stream
                                  the data view protocol (see `nodb dataview --help`); the
                                  cascades marketing and lowstock too, with `sources`
  POST /actions, GET /ws, GET /actions?from=N
                                  the chronicler's API (see `nodb chronicler --help`)
  GET  /health, /metrics          the data view's status; the chronicler's are under /chronicler/,
                                  the envoys' (lag, effects in flight, retries, failures) under
                                  /envoys/, the cascades' (marketing, lowstock) under /cascades/
  /supplier/orders, /supplier/control
                                  the demo supplier the warehouse's reorder envoy orders from
                                  (see `nodb supplier --help`)

Example:
  nodb up                         then open http://127.0.0.1:7400/
  nodb up --listen 0.0.0.0:8080 --data /var/lib/nodb

Once ready it prints `nodb up listening on http://HOST:PORT` on stdout; logs go to stderr
(RUST_LOG=debug for more). Ctrl-C or SIGTERM acknowledges the writes in flight, writes a
snapshot and exits.

Exit status: 0 after a clean shutdown, 2 on any error (bad option, damaged log, port in use).")]
pub struct Args {
    /// Where to keep everything: the log in DATA/log, snapshots in
    /// DATA/snapshots (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./nodb-data")]
    data: PathBuf,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// The application: warehouse (the demo), json, or one an application
    /// binary added.
    #[arg(long, default_value = "warehouse")]
    app: String,
    /// Where to keep snapshots, if not in DATA/snapshots: a directory or an
    /// object store URL (see `nodb dataview --help`).
    #[arg(long, value_name = "DIR|URL")]
    snapshots: Option<String>,
    /// The supplier the warehouse's reorder envoy orders from; by default
    /// the demo supplier served under /supplier on the same address.
    #[arg(long, value_name = "URL")]
    supplier: Option<String>,
    /// Attempts per outside call of an envoy, the first included.
    #[arg(long, value_name = "N", default_value_t = 5)]
    attempts: u32,
    /// Write a checkpoint snapshot at every multiple of this seq, kept for
    /// good: `?at=N` replays fewer actions than this.
    #[arg(long, value_name = "SEQS", default_value_t = 10_000)]
    snapshot_every: u64,
    /// Write a snapshot after this many seconds, if anything changed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    snapshot_interval: f64,
}

/// Runs the command.
pub fn run(args: &Args, apps: &Registry) -> anyhow::Result<()> {
    let app = apps
        .get(&args.app)
        .with_context(|| format!("no app {:?}; this nodb knows {}", args.app, apps.names().join(", ")))?;
    if !(args.snapshot_interval.is_finite() && args.snapshot_interval > 0.0) || args.snapshot_every == 0 {
        anyhow::bail!("--snapshot-every and --snapshot-interval must be positive");
    }
    let snapshots = match &args.snapshots {
        Some(location) => Snapshots::open(location, &args.app, 3)?,
        None => Snapshots::local(&args.data.join("snapshots"), &args.app, 3)?,
    };
    service::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signal();
        let log_config = LogConfig::new(args.data.join("log"));
        let history = chronicler::open(log_config, ServerConfig::default(), shutdown.clone()).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // The data view follows the chronicler through its public stream,
        // on this same address, exactly as it would on another machine.
        let settings = dataview::Settings {
            app,
            chronicler: format!("http://{addr}"),
            history: 4096,
            ping: Duration::from_secs(15),
            snapshots,
            policy: SnapshotPolicy {
                every_seqs: args.snapshot_every,
                every: Duration::from_secs_f64(args.snapshot_interval),
            },
            history_settings: nodb_dataview::history::HistorySettings::default(),
            assets: apps.assets(&args.app),
        };
        let views = dataview::start(settings, shutdown.clone(), tokio_util::task::TaskTracker::new()).await?;
        let mut router = api_router(history.state.clone())
            .nest("/chronicler", status_router(history.state.clone()))
            .merge(nodb_dataview::server::router(views.state.clone()));
        // The services the app's envoys talk to (the warehouse's demo
        // supplier), on this same address, unless --supplier points elsewhere.
        let mut config = nodb_envoy::Config::new();
        if let Some(make) = apps.services(&args.app) {
            let (path, services, settings) = make(&format!("http://{addr}"));
            router = router.nest(path, services);
            config.extend(settings);
        }
        if let Some(supplier) = &args.supplier {
            config.insert("supplier".into(), supplier.clone());
        }
        // The app's envoys, against this same address.
        let envoys = apps.envoys(&args.app, &config).map_err(anyhow::Error::msg)?;
        let here = nodb_client::ServiceUrl::parse(&format!("http://{addr}"))?;
        let envoy_settings = nodb_envoy::Settings {
            chronicler: here.clone(),
            dataview: Some(here),
            effects: nodb_envoy::Effects::new(super::envoy::retry_policy(args.attempts, 10.0)?),
        };
        let envoys = super::envoy::start_all(envoys, envoy_settings, shutdown.clone());
        let router = router.nest("/envoys", nodb_envoy::status::router(envoys.status.clone()));
        // The app's cascades, reading the views (and each other) on this same address.
        let cascades =
            super::cascade::start_for_up(apps.cascades(&args.app), &format!("http://{addr}"), shutdown.clone())?;
        let router = super::cascade::mount(router, cascades.as_ref());
        service::announce("up", addr);
        println!("open http://{addr}/ in a browser; Ctrl-C stops");
        axum::serve(listener.tap_io(no_delay), router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("the server failed")?;
        let _ = envoys.wait().await;
        if let Some(c) = cascades {
            c.finish().await;
        }
        views.finish().await;
        history.finish().await;
        Ok(())
    })
}

/// Turns off Nagle's algorithm on an accepted socket: a stream sends small
/// messages (an ack, then a patch) that must not wait for the peer's ACK.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}
