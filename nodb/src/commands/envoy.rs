//! `nodb envoy`: an app's envoys, or the generic webhook envoy.

use std::time::Duration;

use anyhow::Context;
use nodb_envoy::Config;
use nodb_envoy::lease::{LeaseConfig, Leases, Replicas};
use nodb_envoy::webhook::GiveUp;
use nodb_envoy::{Effects, Envoy, RetryPolicy, Settings};

use crate::{Registry, service};

/// Run an app's envoys: side effects on the outside world whose results
/// come back through the chronicler, exactly once in the log.
///
/// Each envoy dispatches as the client `envoy-<name>`, numbering its
/// results and putting the seq that caused each in `meta.cause`; on start it
/// finds where it stopped from the log itself and needs no state of its own.
/// A new envoy starts at the head of the log: it never acts on history.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Envoys of the built-in apps:
  warehouse   reorder: when a product's stock falls below its threshold (stock/threshold_set),
              POST {product, quantity} to SUPPLIER/orders and record reorder/placed or
              reorder/failed; needs --dataview and --set supplier=URL

Example:
  nodb supplier --listen 127.0.0.1:7403 &
  nodb envoy --app warehouse --chronicler http://127.0.0.1:7401 --dataview http://127.0.0.1:7402 \\
      --set supplier=http://127.0.0.1:7403
  nodb envoy webhook --types stock/ --url https://example.com/hook --chronicler http://127.0.0.1:7401

Calls carry `Idempotency-Key: <envoy>:<cause seq>`; an app envoy's failed calls are retried with
exponential back-off and jitter (--attempts, --timeout), then recorded as a …/failed action (the
webhook instead waits for its receiver: see `nodb envoy webhook --help`).

With --lease nats://H:P[,H:P…] each envoy runs only while this process holds its lease (key NAME
in the JetStream KV bucket nodb_envoy_leases, renewed every --lease-ttl/3): run the same envoys in
several processes and one acts while the others wait, taking over within --lease-ttl if it dies.

Exit status: 0 after a clean shutdown (Ctrl-C or SIGTERM), 2 on any error."
)]
pub struct Args {
    #[command(subcommand)]
    kind: Option<Kind>,
    /// The application whose envoys to run.
    #[arg(long, default_value = "warehouse")]
    app: String,
    #[command(flatten)]
    common: Common,
    /// The data view's URL, for envoys that watch a view.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7402")]
    dataview: String,
    /// A setting for the app's envoys, KEY=VALUE (repeatable), such as
    /// supplier=http://127.0.0.1:7403.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

/// Options every envoy takes.
#[derive(clap::Args)]
struct Common {
    /// The chronicler's URL, or several chroniclers of one replicated log
    /// separated by commas: when the one in use fails, the envoy resumes
    /// from the log on the next.
    #[arg(long, value_name = "URL[,URL…]", default_value = "http://127.0.0.1:7401", global = true)]
    chronicler: String,
    /// Attempts per outside call, the first included.
    #[arg(long, value_name = "N", default_value_t = 5, global = true)]
    attempts: u32,
    /// Seconds one attempt may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, global = true)]
    timeout: f64,
    /// Serve the envoys' status on this address: GET /health (JSON: per
    /// envoy the last seq handled, its lag behind the log or the view,
    /// effects in flight, results, retries, failures) and GET /metrics
    /// (Prometheus text). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Run each envoy only while this process holds its lease in the NATS
    /// JetStream key-value bucket nodb_envoy_leases (comma-separated
    /// servers); other processes running the same envoy wait and take over.
    #[arg(long, value_name = "nats://HOST:PORT[,…]", global = true)]
    lease: Option<String>,
    /// Seconds a lease outlives its holder's last renewal; it is renewed
    /// every third of that, and a holder that cannot renew stops its envoy
    /// before the lease can expire.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, global = true, requires = "lease")]
    lease_ttl: f64,
    /// Copies of the lease bucket, if this process creates it: `auto` (3
    /// when the server is in a cluster of 3 or more, else 1) or 1 to 5.
    #[arg(long, value_name = "N|auto", default_value = "auto", global = true, requires = "lease")]
    lease_replicas: String,
    #[command(flatten)]
    guard: crate::guard::Guard,
    #[command(flatten)]
    token: crate::guard::TokenFile,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
}

#[derive(clap::Subcommand)]
enum Kind {
    /// Deliver committed actions whose type matches to a URL, in order, at
    /// least once, recording webhook/delivered or webhook/failed.
    Webhook(WebhookArgs),
}

#[derive(clap::Args)]
#[command(after_help = "Each delivery is a POST of the committed action (JSON) with the header
Idempotency-Key: <name>:<seq>; a receiver that has seen the key should answer 2xx again
without acting twice. After each delivery the envoy records webhook/delivered {seq, url}.
Restarted, it resumes after the last action it recorded.

While the receiver is down (connection refused, timeout, 5xx, 408, 429) the envoy retries
the same action, one attempt at a time, with exponential back-off and full jitter (from
0.2 s, doubling, at most 30 s between attempts); later actions wait, so the feed stays in
order. By default it never gives up; with --give-up-after SECONDS it records
webhook/failed {seq, type, url, reason} once an action has been retried that long, and
moves on. A refusal (a 4xx other than 408 and 429) is recorded as webhook/failed at once:
retrying would not help. An outage is logged when it starts, summarised at most every
30 s while it lasts (failed attempts, how long), and logged when the receiver is back.
--timeout limits each attempt; --attempts does not apply to the webhook. On Ctrl-C or
SIGTERM a delivery still waiting for its receiver is abandoned within 10 s (the grace
period), to be redone, with the same key, when the envoy is started again.

Example:
  nodb envoy webhook --types stock/,reorder/ --url http://127.0.0.1:9000/hook \\
    --chronicler http://127.0.0.1:7401 --give-up-after 3600")]
struct WebhookArgs {
    /// Comma-separated type prefixes to deliver (stock/,order/).
    #[arg(long, value_name = "PREFIX[,PREFIX]")]
    types: String,
    /// Where to POST each action (as JSON).
    #[arg(long, value_name = "URL")]
    url: String,
    /// The envoy's name; it dispatches as envoy-NAME. Run several webhooks
    /// under different names.
    #[arg(long, default_value = "webhook")]
    name: String,
    /// Deliveries in flight at once. 1 (the default) delivers in commit
    /// order; above 1 they overlap and may arrive out of order.
    #[arg(long, value_name = "N", default_value_t = 1)]
    concurrency: usize,
    /// How long to keep retrying one action while the receiver is down
    /// before recording webhook/failed and moving on: a positive number of
    /// seconds, or `never` (the default: the feed waits for the receiver).
    #[arg(long, value_name = "SECONDS|never", default_value = "never")]
    give_up_after: GiveUp,
}

/// Runs the command.
pub fn run(args: &Args, apps: &Registry) -> anyhow::Result<()> {
    let retry = retry_policy(args.common.attempts, args.common.timeout)?;
    let (envoys, dataview) = match &args.kind {
        Some(Kind::Webhook(w)) => {
            let types: Vec<String> =
                w.types.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
            if types.is_empty() {
                anyhow::bail!("--types needs at least one type prefix, such as stock/");
            }
            // The receiver is any http(s) URL; a query is its own business.
            match url::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                _ => anyhow::bail!("--url must be an http:// or https:// URL, not {:?}", w.url),
            }
            if w.concurrency == 0 {
                anyhow::bail!("--concurrency must be at least 1");
            }
            let hook = nodb_envoy::webhook::webhook(&w.name, types, &w.url, w.give_up_after);
            (vec![hook.independent(w.concurrency)], None)
        }
        None => {
            let config = parse_settings(&args.settings)?;
            let envoys = apps.envoys(&args.app, &config).map_err(anyhow::Error::msg)?;
            if envoys.is_empty() {
                anyhow::bail!(
                    "the app {:?} has no envoys; the apps with envoys are: {}",
                    args.app,
                    apps.envoy_apps().join(", ")
                );
            }
            (envoys, Some(parse_url("--dataview", &args.dataview)?))
        }
    };
    let token = args.common.token.source()?;
    let mut chroniclers = Vec::new();
    for url in args.common.chronicler.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        chroniclers.push(parse_url("--chronicler", url)?.with_token_source(token.clone()));
    }
    if chroniclers.is_empty() {
        anyhow::bail!("--chronicler needs at least one URL, like http://127.0.0.1:7401");
    }
    let more_chroniclers = chroniclers.split_off(1);
    let chronicler = chroniclers.remove(0);
    let dataview = dataview.map(|d| d.with_token_source(token));
    let settings = Settings { chronicler, more_chroniclers, dataview, effects: Effects::new(retry) };
    let guarded = args.common.listen.map(|addr| args.common.guard.load(addr)).transpose()?;
    let leases = lease_config(&args.common)?.map(Leases::new).transpose()?;
    let enforcer = args.common.limits.enforcer()?;
    service::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signal(args.common.limits.shutdown());
        let names: Vec<String> = envoys.iter().map(|e| e.name.clone()).collect();
        let running = start_all_leased(envoys, settings, None, leases.as_ref(), shutdown.clone());
        let server = match (args.common.listen, guarded) {
            (Some(addr), Some(guarded)) => {
                let listener =
                    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
                service::announce("envoy", listener.local_addr()?, guarded.tls.is_some());
                let router = guarded.access.layer(nodb_envoy::status::router(running.status.clone()));
                let stop = shutdown.clone();
                Some(tokio::spawn(async move {
                    nodb_server::serve_with(listener, router, guarded.tls.as_ref(), stop, &enforcer).await
                }))
            }
            _ => None,
        };
        service::say(&format!("nodb envoy running {}", names.join(", ")));
        let result = running.wait().await;
        shutdown.cancel();
        if let Some(server) = server {
            server.await.context("the status server failed")?.context("the status server failed")?;
        }
        result
    })
}

/// A service's URL given with `flag`.
fn parse_url(flag: &str, url: &str) -> anyhow::Result<nodb_client::ServiceUrl> {
    nodb_client::ServiceUrl::parse(url).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// Envoys running as tasks, and their status for `/health` and `/metrics`.
pub(crate) struct Running {
    tasks: Vec<tokio::task::JoinHandle<Result<(), nodb_envoy::runtime::EnvoyError>>>,
    /// What the status routes serve.
    pub status: nodb_envoy::status::StatusState,
}

/// The lease settings from the command line; `None` without `--lease`.
///
/// # Errors
/// A bad server list, TTL or replica count, named.
fn lease_config(common: &Common) -> anyhow::Result<Option<LeaseConfig>> {
    let Some(servers) = &common.lease else { return Ok(None) };
    if !(common.lease_ttl.is_finite() && common.lease_ttl >= 1.0) {
        anyhow::bail!("--lease-ttl must be a number of seconds, at least 1");
    }
    let replicas = match common.lease_replicas.as_str() {
        "auto" => Replicas::Auto,
        n => Replicas::Exactly(
            n.parse()
                .map_err(|_| anyhow::anyhow!("--lease-replicas takes `auto` or a number from 1 to 5, not {n:?}"))?,
        ),
    };
    let config = LeaseConfig {
        servers: servers.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
        ttl: Duration::from_secs_f64(common.lease_ttl),
        replicas,
        ..LeaseConfig::default()
    };
    config.validate()?;
    Ok(Some(config))
}

/// Starts `envoys` as tasks that run until `shutdown`.
pub(crate) fn start_all(
    envoys: Vec<Envoy>,
    settings: Settings,
    token_for: Option<&dyn Fn(&str) -> nodb_client::TokenSource>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Running {
    start_all_leased(envoys, settings, token_for, None, shutdown)
}

/// Like [`start_all`]; with `leases`, each envoy runs only while this
/// process holds its lease (see [`nodb_envoy::lease`]), each name on its own.
fn start_all_leased(
    envoys: Vec<Envoy>,
    settings: Settings,
    token_for: Option<&dyn Fn(&str) -> nodb_client::TokenSource>,
    leases: Option<&Leases>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Running {
    let mut watched = Vec::new();
    let mut tasks = Vec::new();
    for envoy in envoys {
        // Each envoy dispatches as its own client, envoy-NAME, so with a
        // token of its own when the caller can make one.
        let mut settings = settings.clone();
        if let Some(token_for) = token_for {
            let token = token_for(&envoy.name);
            settings.chronicler = settings.chronicler.with_token_source(Some(token.clone()));
            settings.more_chroniclers =
                settings.more_chroniclers.into_iter().map(|c| c.with_token_source(Some(token.clone()))).collect();
            settings.dataview = settings.dataview.map(|d| d.with_token_source(Some(token)));
        }
        let stats = std::sync::Arc::new(nodb_envoy::status::EnvoyStats::default());
        watched.push(nodb_envoy::status::Watched {
            name: envoy.name.clone(),
            view: envoy.trigger.view().map(String::from),
            stats: stats.clone(),
        });
        let task = match leases {
            None => tokio::spawn(nodb_envoy::runtime::run_with_stats(envoy, settings, stats, shutdown.clone())),
            Some(leases) => {
                let lease = leases.lease(&envoy.name);
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let run = |token| {
                        nodb_envoy::runtime::run_with_stats(envoy.clone(), settings.clone(), stats.clone(), token)
                    };
                    // Shut down while waiting for the lease: nothing ran.
                    lease.hold_while(&stats.lease, &shutdown, run).await.unwrap_or(Ok(()))
                })
            }
        };
        tasks.push(task);
    }
    let http = settings.effects.http.clone();
    let status = nodb_envoy::status::StatusState {
        envoys: watched,
        log: nodb_client::Chronicler::with_http(settings.chronicler.clone(), http.clone()),
        dataview: settings.dataview.clone(),
        http,
    };
    Running { tasks, status }
}

impl Running {
    /// Waits for every envoy to stop.
    ///
    /// # Errors
    /// The first envoy that could not run.
    pub(crate) async fn wait(self) -> anyhow::Result<()> {
        for t in self.tasks {
            t.await.context("an envoy task failed")??;
        }
        Ok(())
    }
}

/// The retry policy from the command line.
///
/// # Errors
/// A bad number, named.
pub(crate) fn retry_policy(attempts: u32, timeout: f64) -> anyhow::Result<RetryPolicy> {
    if attempts == 0 {
        anyhow::bail!("--attempts must be at least 1");
    }
    if !(timeout.is_finite() && timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    Ok(RetryPolicy { attempts, timeout: Duration::from_secs_f64(timeout), ..RetryPolicy::default() })
}

fn parse_settings(settings: &[String]) -> anyhow::Result<Config> {
    settings
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--set takes KEY=VALUE, not {s:?}"),
        })
        .collect()
}
