//! How the envoys are doing: per envoy, the last seq whose trigger it has
//! handled against the heads of the log and of the view it watches, effects
//! in flight, results recorded, retries and failures. Served as `/health`
//! (JSON) and `/metrics` (Prometheus text) by `nodb envoy --listen` and, under
//! `/envoys/`, by `nodb up`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nodb_client::{Chronicler, ServiceUrl};
use nodb_server::ApiError;
use nodb_server::metrics::Labels;
use nodb_shared::protocol::ErrorCode;
use serde_json::{Value, json};

/// The counters of one envoy, updated by its runtime.
#[derive(Debug, Default)]
pub struct EnvoyStats {
    /// The last seq whose trigger the envoy has handled (seen, and acted on
    /// if it fired).
    pub handled: AtomicU64,
    /// Whether it follows its trigger now (between reconnects it does not).
    pub following: AtomicBool,
    /// Effects started.
    pub started: AtomicU64,
    /// Effects under way.
    pub in_flight: AtomicU64,
    /// Result actions recorded.
    pub recorded: AtomicU64,
    /// Failure results recorded (`…/failed`).
    pub failures: AtomicU64,
    /// Outside calls retried (shared with the envoy's [`crate::Effects`]).
    pub retries: Arc<AtomicU64>,
    /// Times the envoy lost its trigger or the chronicler and resumed.
    pub resumed: AtomicU64,
    /// Committed actions of its trigger it could not read (a payload
    /// nested too deep, a number out of range), reported and skipped.
    pub unreadable: AtomicU64,
    /// Under `--lease`, whether this process holds the envoy's lease.
    pub lease: crate::lease::LeaseFlag,
}

/// One envoy as the status routes see it.
#[derive(Clone, Debug)]
pub struct Watched {
    /// Its name.
    pub name: String,
    /// The view it watches, for a view trigger.
    pub view: Option<String>,
    /// Its counters.
    pub stats: Arc<EnvoyStats>,
}

/// What the status routes serve.
#[derive(Clone)]
pub struct StatusState {
    /// The envoys.
    pub envoys: Vec<Watched>,
    /// The chronicler, for the log's head.
    pub log: Chronicler,
    /// The data view, for its seq.
    pub dataview: Option<ServiceUrl>,
    /// For asking the data view.
    pub http: reqwest::Client,
}

/// `/health` (public) and `/metrics` (admin) for the envoys, without the
/// access check: the caller puts it in front (see
/// `nodb_server::Access::layer`).
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::new(ErrorCode::NotFound, format!("no such endpoint: {} (try GET /health)", uri.path()))
        })
        .with_state(state)
        .method_not_allowed_fallback(nodb_server::method_not_allowed)
}

/// The heads the envoys are compared with: the log's and the data view's
/// (`None` when they cannot be asked within a second).
async fn heads(s: &StatusState) -> (Option<u64>, Option<u64>) {
    let limit = Duration::from_secs(1);
    let log = async { tokio::time::timeout(limit, s.log.head()).await.ok().and_then(Result::ok) };
    let view = async {
        let url = s.dataview.as_ref()?.http("health");
        let resp = tokio::time::timeout(limit, s.http.get(url).send()).await.ok()?.ok()?;
        let v: Value = tokio::time::timeout(limit, resp.json()).await.ok()?.ok()?;
        v["seq"].as_u64()
    };
    tokio::join!(log, view)
}

fn report(w: &Watched, log_head: Option<u64>, view_head: Option<u64>) -> Value {
    let st = &w.stats;
    let handled = st.handled.load(Relaxed);
    let head = if w.view.is_some() { view_head } else { log_head };
    json!({
        "name": w.name,
        "view": w.view,
        "following": st.following.load(Relaxed),
        "handled": handled,
        "lag": head.map(|h| h.saturating_sub(handled)),
        "log_head": log_head,
        "view_seq": if w.view.is_some() { view_head } else { None },
        "started": st.started.load(Relaxed),
        "in_flight": st.in_flight.load(Relaxed),
        "recorded": st.recorded.load(Relaxed),
        "failures": st.failures.load(Relaxed),
        "retries": st.retries.load(Relaxed),
        "resumed": st.resumed.load(Relaxed),
        "unreadable": st.unreadable.load(Relaxed),
        "lease": st.lease.get().map(crate::lease::LeaseState::as_str),
    })
}

async fn health(State(s): State<StatusState>) -> impl IntoResponse {
    let (log_head, view_head) = heads(&s).await;
    let envoys: Vec<Value> = s.envoys.iter().map(|w| report(w, log_head, view_head)).collect();
    // A standby is as it should be: it follows nothing until it holds the
    // lease.
    let standby = |w: &Watched| w.stats.lease.get() == Some(crate::lease::LeaseState::Waiting);
    let status = if !s.envoys.is_empty() && s.envoys.iter().all(standby) {
        "standby"
    } else if s.envoys.iter().all(|w| w.stats.following.load(Relaxed) || standby(w)) {
        "following"
    } else {
        "resuming"
    };
    axum::Json(json!({"status": status, "envoys": envoys}))
}

/// A counter or gauge per envoy: name, help, and how to read it off the
/// counters.
type Family = (&'static str, &'static str, fn(&EnvoyStats) -> u64);

async fn metrics(State(s): State<StatusState>, caller: nodb_server::Caller) -> Result<Response, ApiError> {
    caller.grant.must_be_admin("reading metrics")?;
    let (log_head, view_head) = heads(&s).await;
    let mut out = nodb_server::Scrape::new();
    let per_envoy = |value: fn(&EnvoyStats) -> u64| -> Vec<(Labels, u64)> {
        s.envoys.iter().map(|w| (vec![("envoy", w.name.clone())], value(&w.stats))).collect()
    };
    let gauges: [Family; 2] = [
        ("nodb_envoy_handled_seq", "The last seq whose trigger the envoy handled.", |s| s.handled.load(Relaxed)),
        ("nodb_envoy_effects_in_flight", "Effects under way.", |s| s.in_flight.load(Relaxed)),
    ];
    for (name, help, value) in gauges {
        out.gauges(name, help, per_envoy(value));
    }
    let counters: [Family; 6] = [
        ("nodb_envoy_effects_started", "Effects started.", |s| s.started.load(Relaxed)),
        ("nodb_envoy_results_recorded", "Result actions recorded.", |s| s.recorded.load(Relaxed)),
        ("nodb_envoy_failures", "Failure results recorded.", |s| s.failures.load(Relaxed)),
        ("nodb_envoy_retries", "Outside calls retried.", |s| s.retries.load(Relaxed)),
        ("nodb_envoy_resumed", "Times the envoy resumed after losing a connection.", |s| s.resumed.load(Relaxed)),
        ("nodb_envoy_unreadable", "Committed actions the envoy could not read, skipped.", |s| {
            s.unreadable.load(Relaxed)
        }),
    ];
    for (name, help, value) in counters {
        out.counters(name, help, per_envoy(value));
    }
    let lag = s.envoys.iter().filter_map(|w| {
        let head = if w.view.is_some() { view_head } else { log_head }?;
        Some((vec![("envoy", w.name.clone())], head.saturating_sub(w.stats.handled.load(Relaxed))))
    });
    out.gauges("nodb_envoy_lag", "Seqs between the head the envoy follows and the last it handled.", lag);
    Ok(out.into_response())
}
