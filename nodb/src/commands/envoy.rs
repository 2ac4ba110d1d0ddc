//! `nodb envoy`: an app's envoys, or the generic webhook envoy.

use std::time::Duration;

use anyhow::Context;
use nodb_envoy::apps::Config;
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

Calls carry `Idempotency-Key: <envoy>:<cause seq>`; failures are retried with exponential
back-off and jitter (--attempts, --timeout), then recorded as a …/failed action.
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
    /// The chronicler's URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7401", global = true)]
    chronicler: String,
    /// Attempts per outside call, the first included.
    #[arg(long, value_name = "N", default_value_t = 5, global = true)]
    attempts: u32,
    /// Seconds one attempt may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, global = true)]
    timeout: f64,
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
without acting twice. After each delivery the envoy records webhook/delivered {seq, url};
after the last retry, webhook/failed {seq, type, url, reason}. Restarted, it resumes after
the last action it recorded.

Example:
  nodb envoy webhook --types stock/,reorder/ --url http://127.0.0.1:9000/hook \\
    --chronicler http://127.0.0.1:7401 --attempts 8")]
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
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                anyhow::bail!("--url must be an http:// or https:// URL, not {:?}", w.url);
            }
            if w.concurrency == 0 {
                anyhow::bail!("--concurrency must be at least 1");
            }
            (vec![nodb_envoy::webhook::webhook(&w.name, types, &w.url).independent(w.concurrency)], None)
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
            (envoys, Some(args.dataview.clone()))
        }
    };
    let settings = Settings { chronicler: args.common.chronicler.clone(), dataview, effects: Effects::new(retry) };
    service::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signal();
        let names: Vec<&str> = envoys.iter().map(|e| e.name.as_str()).collect();
        println!("nodb envoy running {}", names.join(", "));
        run_all(envoys, settings, shutdown).await
    })
}

/// Runs `envoys` until `shutdown`.
///
/// # Errors
/// The first envoy that cannot run.
pub(crate) async fn run_all(
    envoys: Vec<Envoy>,
    settings: Settings,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let tasks: Vec<_> =
        envoys.into_iter().map(|e| tokio::spawn(nodb_envoy::run(e, settings.clone(), shutdown.clone()))).collect();
    for t in tasks {
        t.await.context("an envoy task failed")??;
    }
    Ok(())
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
