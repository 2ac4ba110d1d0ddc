//! The data view's HTTP and WebSocket service.
//!
//! - `GET /views` — the views with their seq.
//! - `GET /views/{name}[?at=N]` — `{"seq", "hash", "state"}`.
//! - `GET /views/{name}/state/<JSON pointer>` — a subtree.
//! - `GET /views/{name}/stream?since=N[&version=V][&client=ID][&exact=true]` (WebSocket)
//!   — a snapshot or the missed patches, then one patch message per seq (or
//!   one combined message when the client fell behind), and the client's own
//!   rejections; with `exact=true`, one message per seq, never combined
//!   ([`crate::exact`]).
//! - `GET /health`, `GET /ready` (200 once caught up), `GET /metrics`.
//! - `GET /history`, `GET /views/{name}/patch?seq=N` and the page
//!   `/inspect` ([`crate::inspect`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nodb_shared::protocol::ErrorCode;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::follow::FollowStatus;
use crate::hub::{AtError, Hub};
use nodb_auth::ReadScope;
use nodb_server::Caller;
use nodb_viewserver::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The views.
    pub hub: Arc<Hub>,
    /// The follower's view of the chronicler.
    pub follow: Arc<FollowStatus>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// The client sessions, waited for on shutdown.
    pub tasks: TaskTracker,
    /// How often to ping a client, and how long a pong may take.
    pub ping: Duration,
    /// The chroniclers of the log, for relaying dispatches (with each
    /// client's token) and reading history (with the data view's): the one
    /// the follower is on.
    pub chroniclers: Arc<crate::follow::Chroniclers>,
    /// Past states, for `?at=N` and exact streams.
    pub history: Arc<crate::history::History>,
    /// The application's own files (its page), served beside the client.
    pub assets: &'static [crate::web::Asset],
    /// Who may do what: tokens, Host and Origin.
    pub access: nodb_server::Access,
    /// The application's version, reported in `/views` and `/health`.
    pub version: Option<Arc<str>>,
}

fn unknown_view(hub: &Hub, name: &str) -> ApiError {
    ApiError::new(ErrorCode::UnknownView, format!("no view {name:?}; this app has: {}", hub.view_names().join(", ")))
}

/// The data view's routes, behind the access check.
pub fn router(state: AppState) -> Router {
    let access = state.access.clone();
    access.layer(routes(state))
}

/// The data view's routes without the access check, for `nodb up` to put
/// one check before everything it serves. The client files and the page
/// are public; `/health` too; the views need the `read` right, metrics
/// `admin`.
pub fn routes(state: AppState) -> Router {
    let web = crate::web::router(state.assets, state.hub.view_names());
    Router::new()
        .route("/views", get(list_views))
        .route("/views/{name}", get(get_view))
        .route("/views/{name}/state", get(get_root_state))
        .route("/views/{name}/state/{*pointer}", get(get_state))
        .route("/views/{name}/stream", get(stream))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::inspect::routes())
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::new(ErrorCode::NotFound, format!("no such endpoint: {} (try GET /views)", uri.path()))
        })
        .with_state(state)
        .merge(web)
        .method_not_allowed_fallback(nodb_server::method_not_allowed)
}

/// `GET /views`: the views the caller may read.
async fn list_views(State(s): State<AppState>, caller: Caller) -> impl IntoResponse {
    let seq = s.hub.current_seq();
    let views: Vec<_> = s
        .hub
        .view_names()
        .into_iter()
        .filter(|name| caller.grant.may_read(name).is_ok())
        .map(|name| serde_json::json!({"name": name, "seq": seq}))
        .collect();
    axum::Json(serde_json::json!({"app": s.hub.app_name(), "version": s.version.as_deref(), "views": views}))
}

#[derive(Deserialize)]
struct AtQuery {
    at: Option<String>,
}

async fn get_view(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<AtQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = caller.grant.may_read(&name)?;
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let view = s.hub.view_index(&name).ok_or_else(|| unknown_view(&s.hub, &name))?;
    let at = match q.at.as_deref() {
        None => None,
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| ApiError::new(ErrorCode::BadRequest, format!("`at` must be a seq, not {t:?}")))?,
        ),
    };
    let ((seq, state), replayed) = match s.hub.state_at(view, at) {
        Ok(found) => (found, 0),
        Err(AtError::Ahead { seq }) => {
            let msg = format!("`at` {} is beyond the view's seq {seq}", at.unwrap_or_default());
            return Err(ApiError::new(ErrorCode::BadRequest, msg));
        }
        Err(AtError::NoState) => return Err(ApiError::new(ErrorCode::Unavailable, "the views have no state yet")),
        Err(AtError::Gone { .. }) => {
            // Older than the history in memory: the checkpoint at or
            // before it (or a cached state), plus a bounded replay.
            let at = at.unwrap_or_default();
            let past = s.history.states_at(at).await.map_err(|e| {
                let busy = matches!(e, crate::history::HistoryError::Busy);
                let error = ApiError::new(ErrorCode::Unavailable, format!("cannot rebuild the state at seq {at}: {e}"));
                if busy { error.retry_after(1) } else { error }
            })?;
            ((at, past.states.into_iter().nth(view).unwrap_or_default()), past.replayed)
        }
    };
    // A subtree reader's state is its subtree.
    let state = match &scope {
        ReadScope::Whole => state,
        ReadScope::Subtree(pointer) => crate::hub::subtree(Some(&state), pointer),
    };
    // Serialised once, for the hash and the body, off the hub's lock (a
    // big state takes a while).
    let body = tokio::task::spawn_blocking(move || crate::hub::view_body(seq, &state))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("serialising the state failed: {e}")))?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if at.is_some() {
        // How many actions this answer replayed: less than the checkpoint
        // interval (`--snapshot-every`) unless checkpoints were skipped.
        response.headers_mut().insert("nodb-replayed", replayed.into());
    }
    Ok(response)
}

async fn get_root_state(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    subtree(&s, &caller, &name, "")
}

async fn get_state(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, pointer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    subtree(&s, &caller, &name, &format!("/{pointer}"))
}

/// `GET /views/{name}/state/<pointer>`: a subtree reader may read inside
/// its subtree only.
fn subtree(s: &AppState, caller: &Caller, name: &str, pointer: &str) -> Result<Response, ApiError> {
    caller.grant.may_read_at(name, pointer)?;
    let view = s.hub.view_index(name).ok_or_else(|| unknown_view(&s.hub, name))?;
    let (seq, state) =
        s.hub.state_at(view, None).map_err(|_| ApiError::new(ErrorCode::Internal, "no current state"))?;
    match state.lookup(pointer) {
        Ok(t) => Ok(([(header::CONTENT_TYPE, "application/json")], t.to_json_string()).into_response()),
        Err(e @ nodb_shared::PathError::InvalidPointer { .. }) => {
            Err(ApiError::new(ErrorCode::BadRequest, e.to_string()))
        }
        Err(e) => Err(ApiError::new(ErrorCode::NotFound, format!("{e} in view {name:?} at seq {seq}"))),
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    since: Option<String>,
    client: Option<String>,
    exact: Option<String>,
    /// The version named by the snapshot the client's state began from.
    version: Option<String>,
}

async fn stream(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    socket_limits: nodb_server::SocketLimits,
    gate: nodb_server::DispatchGate,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let scope = caller.grant.may_read(&name)?;
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    // A client's rejections are its own.
    if let Some(client) = &q.client {
        caller.grant.may_act_as(client)?;
    }
    let view = s.hub.view_index(&name).ok_or_else(|| unknown_view(&s.hub, &name))?;
    let since = match q.since.as_deref() {
        None | Some("") => None,
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| ApiError::new(ErrorCode::BadRequest, format!("`since` must be a seq, not {t:?}")))?,
        ),
    };
    // A state another version of the app made is not one this data view
    // can patch: such a client starts again from a snapshot.
    let since = match &q.version {
        Some(theirs) if since.is_some() && Some(theirs.as_str()) != s.hub.version() => {
            s.hub.metrics.resynced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
        _ => since,
    };
    let seq = s.hub.current_seq();
    if let Some(since) = since
        && since > seq
    {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "`since` {since} is ahead of view {name:?}, which is at seq {seq}; reconnect without `since` for a snapshot"
            ),
        ));
    }
    let exact = match q.exact.as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(t) => {
            return Err(ApiError::new(ErrorCode::BadRequest, format!("`exact` must be true or false, not {t:?}")));
        }
    };
    if exact && scope != ReadScope::Whole {
        return Err(nodb_auth::Denied {
            right: format!("read:{name}"),
            message: format!("an exact stream sends the whole view; this token may read only {scope} of {name:?}"),
        }
        .into());
    }
    let upgrade =
        upgrade.map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("this endpoint is a WebSocket: {e}")))?;
    let tasks = s.tasks.clone();
    Ok(socket_limits.apply(upgrade).on_upgrade(move |socket| async move {
        if exact {
            tasks.track_future(crate::exact::serve_exact(socket, s, view, since, q.client, caller.grant)).await;
        } else {
            let client = crate::session::Client { view, scope, since, id: q.client, caller, gate };
            tasks.track_future(crate::session::serve_client(socket, s, client)).await;
        }
    }))
}

async fn health(State(s): State<AppState>) -> Response {
    let seq = s.hub.current_seq();
    let head = s.follow.head.load(Relaxed).max(seq);
    let connected = s.follow.connected.load(Relaxed);
    if let Some(why) = s.follow.refusal() {
        let body = serde_json::json!({"status": "refused", "seq": seq, "connected": false, "reason": why});
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let caught_up = connected && seq >= head;
    axum::Json(serde_json::json!({
        "status": if caught_up { "caught_up" } else { "recovering" },
        "app": s.hub.app_name(),
        "version": s.version.as_deref(),
        "seq": seq,
        "chronicler_head": head,
        "lag": head - seq,
        "connected": connected,
    }))
    .into_response()
}

/// `GET /ready`: 200 once the views have caught up with the chronicler,
/// 503 while they replay, while the chronicler is unreachable, or while its
/// log is refused: what a load balancer should ask before sending clients.
async fn ready(State(s): State<AppState>) -> Response {
    let seq = s.hub.current_seq();
    let head = s.follow.head.load(Relaxed).max(seq);
    let connected = s.follow.connected.load(Relaxed);
    let status = if s.follow.refusal().is_some() {
        "refused"
    } else if connected && seq >= head {
        "ready"
    } else {
        "recovering"
    };
    let code = if status == "ready" { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(serde_json::json!({"status": status, "seq": seq, "lag": head - seq}))).into_response()
}

async fn metrics(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.grant.must_be_admin("reading metrics")?;
    let (m, h) = (&s.hub.metrics, &s.history.metrics);
    let seq = s.hub.current_seq();
    let head = s.follow.head.load(Relaxed).max(seq);
    let mut out = nodb_server::Scrape::new();
    out.gauge("nodb_dataview_seq", "The seq the views reflect.", seq);
    out.gauge("nodb_dataview_lag", "Seqs the views are behind the chronicler.", head - seq);
    for (name, help, v) in [
        ("nodb_dataview_applied", "Actions applied.", &m.applied),
        ("nodb_dataview_batched", "Of those, actions applied in catch-up batches.", &m.batched),
        ("nodb_dataview_rejections", "Actions rejected by a reducer.", &m.rejected),
        ("nodb_dataview_panics", "Reducer panics caught.", &m.panics),
        ("nodb_dataview_redactions", "Redactions applied (undos included).", &m.redactions),
        ("nodb_dataview_unreadable", "Committed actions the view could not read, skipped.", &s.follow.unreadable),
        ("nodb_dataview_history_reads", "Past states read (?at older than the memory).", &h.reads),
        ("nodb_dataview_history_cache_hits", "Past states read from the cache.", &h.cache_hits),
        ("nodb_dataview_history_replayed", "Actions replayed for past states and exact streams.", &h.replayed),
        ("nodb_dataview_history_busy", "Past state reads refused while every reader was busy.", &h.busy),
        ("nodb_dataview_coalesced", "Messages that covered several seqs.", &m.coalesced),
        ("nodb_dataview_resynced", "Clients resent a snapshot after falling behind.", &m.resynced),
        (
            "nodb_dataview_checkpoints_skipped",
            "Checkpoints not written: a newer one came while they waited for the snapshotter.",
            &m.checkpoints_skipped,
        ),
    ] {
        out.counter(name, help, v.load(Relaxed));
    }
    out.gauge("nodb_dataview_clients", "Connected stream clients.", m.clients.load(Relaxed));
    out.gauge("nodb_dataview_exact_clients", "Connected exact stream clients.", m.exact_clients.load(Relaxed));
    out.gauge(
        "nodb_dataview_history_replayed_max",
        "The most actions one past state read replayed.",
        h.replayed_max.load(Relaxed),
    );
    out.seconds("nodb_dataview_apply_seconds", "Time spent in reducers.", m.apply_nanos.load(Relaxed));
    out.seconds(
        "nodb_dataview_diff_seconds",
        "Time spent diffing and serialising patches.",
        m.diff_nanos.load(Relaxed),
    );
    Ok(out.into_response())
}
