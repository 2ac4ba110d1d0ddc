//! `nodb cascade`: an app's cascaded views, derived from other views'
//! public streams and served over the same protocol.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use nodb_cascade::{Cascade, Settings, server};

use crate::Registry;

use crate::service;

/// Run an app's cascaded views: views computed from other views (data views
/// or cascades), read through the same public stream a browser uses.
///
/// A cascade keeps a replica of each upstream view by applying the patches
/// of its stream (`/views/{name}/stream`), runs its pure reducer over them,
/// and serves the result exactly like a data view — a snapshot, then one
/// patch per update — with `sources`, the upstream seqs each state
/// reflects. It needs no storage: on start it is computed from the
/// upstreams' current states.
#[derive(clap::Args)]
#[command(after_help = "Cascades of the built-in apps:
  warehouse   marketing  units sold per product in the last hour, day and week, and the fastest
                         movers (upstream: activity)
              lowstock   products under their threshold with their reorder status and stock cover
                         (upstreams: stock, marketing)

An upstream that is a cascade run by this same process (lowstock's marketing) is read from this
process's own address unless --upstream names another.

Endpoints (the data view protocol, plus \"sources\" on snapshot and patch messages and on GET):
  GET /views                              the cascades, their seq, upstreams and sources
  GET /views/{name}[?at=N]                {\"seq\", \"hash\", \"state\", \"sources\"}
  GET /views/{name}/state/<pointer>       a subtree
  GET /views/{name}/stream?since=N        WebSocket: snapshot or missed updates, then a patch per update
  GET /health, /metrics                   per upstream: caught_up, behind, reconnecting

A cascade numbers its updates from the microseconds since 1970 at start-up, so seqs keep growing
across restarts and a client coming back with a `since` from before a restart gets a snapshot.

Example:
  nodb dataview --app warehouse --listen 127.0.0.1:7402 &
  nodb cascade --app warehouse --upstream stock=http://127.0.0.1:7402 \\
      --upstream activity=http://127.0.0.1:7402 --listen 127.0.0.1:7404
  curl -s http://127.0.0.1:7404/views/marketing

Exit status: 0 after a clean shutdown (Ctrl-C or SIGTERM), 2 on any error.")]
pub struct Args {
    /// The application whose cascades to run.
    #[arg(long, default_value = "warehouse")]
    app: String,
    /// Where an upstream view is: its name and the base URL of the data view
    /// or cascade server that has it (repeatable). Replicas of one view (data
    /// views of one app) may be listed with commas: NAME=URL,URL; the
    /// cascade follows one and resumes on the next when it fails.
    #[arg(long = "upstream", value_name = "NAME=URL[,URL…]")]
    upstreams: Vec<String>,
    /// Run only this cascade of the app (repeatable; default: all of them).
    #[arg(long = "cascade", value_name = "NAME")]
    only: Vec<String>,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7404")]
    listen: SocketAddr,
    /// How many recent updates to keep in memory, for clients that fall
    /// behind and for `?at=N`.
    #[arg(long, value_name = "UPDATES", default_value_t = 4096)]
    history: usize,
    /// Seconds between pings to each client; a client that misses a pong is
    /// disconnected.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    ping: f64,
    /// Seconds to wait for an upstream that refuses to resume from where
    /// the cascade is (a data view replaying its history after a restart)
    /// before taking a fresh snapshot from it instead.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    resume_grace: f64,
    #[command(flatten)]
    guard: crate::guard::Guard,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
    #[command(flatten)]
    token: crate::guard::TokenFile,
}

/// Runs the command.
pub fn run(args: &Args, apps: &Registry) -> anyhow::Result<()> {
    let cascades = select(apps, &args.app, &args.only)?;
    let mut upstreams = parse_upstreams(&args.upstreams)?;
    let wanted: Vec<&String> = cascades.iter().flat_map(|c| &c.upstreams).collect();
    if let Some(extra) = upstreams.keys().find(|u| !wanted.contains(u)) {
        let names: Vec<&str> = cascades.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "no cascade run here reads a view called {extra:?} (running {}, which read {})",
            names.join(", "),
            dedup(wanted).join(", ")
        );
    }
    if !(args.ping.is_finite() && args.ping > 0.0) {
        anyhow::bail!("--ping must be a positive number of seconds");
    }
    if !(args.resume_grace.is_finite() && args.resume_grace >= 0.0) {
        anyhow::bail!("--resume-grace must be a number of seconds, 0 or more");
    }
    let guarded = args.guard.load(args.listen)?;
    let settings = Settings {
        history: args.history,
        ping: Duration::from_secs_f64(args.ping),
        resume_grace: Duration::from_secs_f64(args.resume_grace),
        token: args.token.source()?,
        access: guarded.access,
        ..Settings::default()
    };
    settings.validate()?;
    let enforcer = args.limits.enforcer()?;
    service::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signal(args.limits.shutdown());
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // An upstream that is one of these cascades is read from here.
        let scheme = if guarded.tls.is_some() { "https" } else { "http" };
        for c in &cascades {
            upstreams.entry(c.name.clone()).or_insert_with(|| format!("{scheme}://{addr}"));
        }
        let running = nodb_cascade::start(cascades, &upstreams, &settings, shutdown.clone())?;
        service::announce("cascade", addr, guarded.tls.is_some());
        let router = server::router(running.state.clone());
        nodb_server::serve_with(listener, router, guarded.tls.as_ref(), shutdown, &enforcer)
            .await
            .context("the server failed")?;
        running.finish().await;
        Ok(())
    })
}

/// The app's cascades, or the ones named in `only`.
fn select(apps: &Registry, app: &str, only: &[String]) -> anyhow::Result<Vec<Cascade>> {
    let all = apps.cascades(app).with_context(|| {
        format!("no app {app:?} has cascades; the apps with cascades are: {}", apps.cascade_apps().join(", "))
    })?;
    if let Some(unknown) = only.iter().find(|n| !all.iter().any(|c| &c.name == *n)) {
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!("the app {app:?} has no cascade {unknown:?}; it has {}", names.join(", "));
    }
    Ok(all.into_iter().filter(|c| only.is_empty() || only.contains(&c.name)).collect())
}

fn parse_upstreams(specs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for spec in specs {
        let Some((name, url)) = spec.split_once('=').filter(|(n, u)| !n.is_empty() && !u.is_empty()) else {
            anyhow::bail!("--upstream takes NAME=URL, like stock=http://127.0.0.1:7402 (got {spec:?})");
        };
        let urls: Vec<&str> = url.split(',').map(|u| u.trim().trim_end_matches('/')).collect();
        if map.insert(name.to_string(), urls.join(",")).is_some() {
            anyhow::bail!("--upstream {name}=… is given twice");
        }
    }
    Ok(map)
}

fn dedup(names: Vec<&String>) -> Vec<&str> {
    let mut out: Vec<&str> = names.into_iter().map(String::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Starts an app's `cascades` for `nodb up`, reading every upstream from
/// `base` (the one address of `nodb up`); `None` when it has none.
///
/// # Errors
/// If the cascades cannot start.
pub(crate) fn start_for_up(
    cascades: Option<Vec<Cascade>>,
    base: &str,
    settings: Settings,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<nodb_cascade::Running>> {
    let Some(cascades) = cascades else { return Ok(None) };
    let upstreams = cascades.iter().flat_map(|c| &c.upstreams).map(|u| (u.clone(), base.to_string())).collect();
    Ok(Some(nodb_cascade::start(cascades, &upstreams, &settings, shutdown)?))
}

/// `router` with the cascades' views beside its own (`/views/{cascade}…`),
/// their `/health` and `/metrics` under `/cascades/`, and `GET /views`
/// listing them too.
pub(crate) fn mount(router: axum::Router, cascades: Option<&nodb_cascade::Running>) -> axum::Router {
    let Some(c) = cascades else { return router };
    let router =
        router.merge(server::view_routes(c.state.clone())).nest("/cascades", server::status_routes(c.state.clone()));
    server::with_listing(router, c.state.clone())
}
