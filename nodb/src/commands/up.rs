//! `nodb up`: the whole system in one process on one address — the
//! chronicler, the app's data view, its envoys (with the demo supplier for
//! the warehouse), its cascaded views, the client library and the demo
//! page.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Registry;
use anyhow::Context;
use nodb_auth::Claims;
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
    /// good: `?at=N` replays fewer actions than this (unless checkpoints
    /// were skipped while the view caught up faster than they were written).
    #[arg(long, value_name = "SEQS", default_value_t = 10_000)]
    snapshot_every: u64,
    /// Write a snapshot after this many seconds, if anything changed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    snapshot_interval: f64,
    #[command(flatten)]
    guard: crate::guard::Guard,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
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
    let guarded = args.guard.load(args.listen)?;
    let mint = crate::guard::Minter::new(guarded.keys.as_ref());
    let enforcer = args.limits.enforcer()?;
    service::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signal(args.limits.shutdown());
        let log_config = LogConfig::new(args.data.join("log"));
        let access = guarded.access.clone();
        let history = chronicler::open(
            chronicler::LogChoice::File(log_config),
            ServerConfig::default(),
            access.clone(),
            shutdown.clone(),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // The parts reach each other over HTTP on this address, or, when
        // it speaks TLS (its certificate names the public host, not this
        // address), on a second, plain listener on loopback.
        let inner = match guarded.tls {
            None => None,
            Some(_) => Some(tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?),
        };
        let here = match &inner {
            None => format!("http://{addr}"),
            Some(l) => format!("http://{}", l.local_addr()?),
        };
        let here_url = nodb_client::ServiceUrl::parse(&here)?;
        // The data view follows the chronicler through its public stream,
        // on this same address, exactly as it would on another machine.
        let part = |sub: &str, log: bool| Claims { sub: sub.into(), log, read: vec!["*".into()], ..Claims::default() };
        let settings = dataview::Settings {
            app,
            chronicler: here_url.clone().with_token_source(mint.source(part("nodb-dataview", true))),
            history: 4096,
            ping: Duration::from_secs(15),
            snapshots,
            policy: SnapshotPolicy {
                every_seqs: args.snapshot_every,
                every: Duration::from_secs_f64(args.snapshot_interval),
            },
            history_settings: nodb_dataview::history::HistorySettings::default(),
            assets: apps.assets(&args.app),
            access: access.clone(),
            version: apps.version(&args.app).map(String::from),
        };
        let views = dataview::start(settings, shutdown.clone(), tokio_util::task::TaskTracker::new()).await?;
        let mut router = api_router(history.state.clone())
            .nest("/chronicler", status_router(history.state.clone()))
            .merge(nodb_dataview::server::routes(views.state.clone()));
        // The services the app's envoys talk to (the warehouse's demo
        // supplier), on this same address, unless --supplier points elsewhere.
        let mut config = nodb_envoy::Config::new();
        if let Some(make) = apps.services(&args.app) {
            let (path, services, settings) = make(&here);
            // Their control endpoints are the operator's: admin only.
            router = router.nest(path, services.route_layer(axum::middleware::from_fn(admin_for_control)));
            config.extend(settings);
        }
        if let Some(supplier) = &args.supplier {
            config.insert("supplier".into(), supplier.clone());
        }
        // The app's envoys, against this same address.
        let envoys = apps.envoys(&args.app, &config).map_err(anyhow::Error::msg)?;
        let status_token = mint.source(part("nodb-envoys", true));
        let envoy_settings = nodb_envoy::Settings {
            chronicler: here_url.clone().with_token_source(status_token.clone()),
            more_chroniclers: Vec::new(),
            dataview: Some(here_url.clone().with_token_source(status_token)),
            effects: nodb_envoy::Effects::new(super::envoy::retry_policy(args.attempts, 10.0)?),
        };
        // Each envoy acts as its own client, envoy-NAME.
        let envoy_token = |name: &str| {
            let claims = Claims { envoy: true, dispatch: vec![String::new()], ..part(&format!("envoy-{name}"), true) };
            mint.source(claims).unwrap_or_else(|| nodb_client::TokenSource::Fixed(String::new()))
        };
        let token_for: Option<&dyn Fn(&str) -> nodb_client::TokenSource> =
            if guarded.keys.is_some() { Some(&envoy_token) } else { None };
        let envoys = super::envoy::start_all(envoys, envoy_settings, token_for, shutdown.clone());
        let router = router.nest("/envoys", nodb_envoy::status::router(envoys.status.clone()));
        // The app's cascades, reading the views (and each other) on this same address.
        let cascade_settings = nodb_cascade::Settings {
            token: mint.source(part("nodb-cascades", false)),
            access: access.clone(),
            ..nodb_cascade::Settings::default()
        };
        let cascades =
            super::cascade::start_for_up(apps.cascades(&args.app), &here, cascade_settings, shutdown.clone())?;
        let router = access.layer(super::cascade::mount(router, cascades.as_ref()));
        service::announce("up", addr, guarded.tls.is_some());
        let scheme = if guarded.tls.is_some() { "https" } else { "http" };
        // The operator's own link: every right, for a day, in the URL's
        // fragment (never sent to a server, never in a log).
        let operator = Claims { admin: true, dispatch: vec![String::new()], ..part("operator", true) };
        match mint.once(operator, 86_400) {
            Some(token) => service::say(&format!("open {scheme}://{addr}/#token={token} in a browser; Ctrl-C stops")),
            None => service::say(&format!("open {scheme}://{addr}/ in a browser; Ctrl-C stops")),
        }
        // Both listeners share one set of limits (one process, one cap).
        let inner_server = inner.map(|l| {
            let (router, shutdown, enforcer) = (router.clone(), shutdown.clone(), enforcer.clone());
            tokio::spawn(async move { nodb_server::serve_with(l, router, None, shutdown, &enforcer).await })
        });
        nodb_server::serve_with(listener, router, guarded.tls.as_ref(), shutdown.clone(), &enforcer)
            .await
            .context("the server failed")?;
        if let Some(s) = inner_server {
            let _ = s.await;
        }
        let _ = envoys.wait().await;
        if let Some(c) = cascades {
            c.finish().await;
        }
        views.finish().await;
        history.finish().await;
        Ok(())
    })
}

/// Lets only admins reach an app service's `…/control` endpoints (the
/// demo supplier's fault switches).
async fn admin_for_control(
    caller: Result<nodb_server::Caller, nodb_server::ApiError>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if req.uri().path().ends_with("/control") {
        let allowed = caller.and_then(|c| c.grant.must_be_admin("the demo's control endpoints").map_err(Into::into));
        if let Err(e) = allowed {
            return e.into_response();
        }
    }
    next.run(req).await
}
