//! The cascades' HTTP and WebSocket service — the data view protocol, with
//! `sources`:
//!
//! - `GET /views` — the cascades with their seq, upstreams and sources.
//! - `GET /views/{name}[?at=N]` — `{"seq", "hash", "state", "sources"}`.
//! - `GET /views/{name}/state/<JSON pointer>` — a subtree.
//! - `GET /views/{name}/stream?since=N` (WebSocket) — a snapshot or the
//!   missed updates, then one patch message per update (or one combined
//!   message when the client fell behind), each with `sources`.
//! - `GET /health` (per upstream: caught up, behind, reconnecting) and
//!   `GET /metrics`.
//!
//! The routes of each cascade are registered under its own literal path
//! (`/views/marketing`, …), so [`view_routes`] merges into a data view's
//! router, whose `/views/{name}` then serves every other name.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nodb_auth::ReadScope;
use nodb_server::Caller;
use nodb_server::metrics::Labels;
use nodb_shared::protocol::{ErrorCode, ServerMessage};
use nodb_viewserver::session::{serve_session, text};
use nodb_viewserver::{ApiError, CatchUp, Feed, Hooks};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{AtError, CascadeStats, Hub};
use crate::upstream::UpstreamStatus;

/// One cascade as the routes see it.
#[derive(Debug)]
pub struct Served {
    /// Its states.
    pub hub: Arc<Hub>,
    /// Its upstreams, in the cascade's order.
    pub upstreams: Vec<Arc<UpstreamStatus>>,
    /// Its reducer's counters.
    pub stats: Arc<CascadeStats>,
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct ServerState {
    /// The cascades.
    pub cascades: Arc<Vec<Served>>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// The client sessions, waited for on shutdown.
    pub tasks: TaskTracker,
    /// How often to ping a client, and how long a pong may take.
    pub ping: Duration,
    /// Who may read the cascades: tokens, Host and Origin.
    pub access: nodb_server::Access,
}

fn bad_request(message: String) -> ApiError {
    ApiError::bad_request(message)
}

/// Every route: the views, `/views`, `/health`, `/metrics`, and a 404 for
/// the rest, behind the access check. What `nodb cascade` serves.
pub fn router(state: ServerState) -> Router {
    let names: Vec<String> = state.cascades.iter().map(|c| c.hub.name().to_string()).collect();
    let access = state.access.clone();
    let list = Router::new()
        .route(
            "/views",
            get(|State(s): State<ServerState>, caller: Caller| async move {
                axum::Json(json!({"views": listing(&s, &caller)}))
            }),
        )
        .with_state(state.clone())
        .method_not_allowed_fallback(nodb_server::method_not_allowed);
    let routes = view_routes(state.clone()).merge(status_routes(state)).merge(list);
    access.layer(routes.fallback(move |uri: axum::http::Uri| {
        let names = names.join(", ");
        async move {
            let path = uri.path();
            match path.strip_prefix("/views/") {
                Some(rest) => {
                    let name = rest.split('/').next().unwrap_or(rest);
                    ApiError::new(ErrorCode::UnknownView, format!("no view {name:?}; this server has: {names}"))
                }
                None => ApiError::new(ErrorCode::NotFound, format!("no such endpoint: {path} (try GET /views)")),
            }
        }
    }))
}

/// The routes under `/views/{name}` of each cascade, and nothing else (no
/// fallback), to merge with other routes.
pub fn view_routes(state: ServerState) -> Router {
    let mut r = Router::new();
    for (i, c) in state.cascades.iter().enumerate() {
        let base = format!("/views/{}", c.hub.name());
        r = r
            .route(
                &base,
                get(
                    move |State(s): State<ServerState>,
                          caller: Caller,
                          q: Result<Query<AtQuery>, QueryRejection>| async move { get_view(&s, &caller, i, q) },
                ),
            )
            .route(
                &format!("{base}/state"),
                get(move |State(s): State<ServerState>, caller: Caller| async move { subtree(&s, &caller, i, "") }),
            )
            .route(
                &format!("{base}/state/{{*pointer}}"),
                get(move |State(s): State<ServerState>, caller: Caller, Path(p): Path<String>| async move {
                    subtree(&s, &caller, i, &format!("/{p}"))
                }),
            )
            .route(
                &format!("{base}/stream"),
                get(
                    move |State(s): State<ServerState>,
                          caller: Caller,
                          q: Result<Query<StreamQuery>, QueryRejection>,
                          limits: nodb_server::SocketLimits,
                          up: Result<WebSocketUpgrade, WebSocketUpgradeRejection>| async move {
                        stream(s, caller, i, q, up.map(|u| limits.apply(u)))
                    },
                ),
            );
    }
    r.with_state(state).method_not_allowed_fallback(nodb_server::method_not_allowed)
}

/// `GET /health` and `GET /metrics` (nest them elsewhere to serve them
/// beside another service's).
pub fn status_routes(state: ServerState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
        .method_not_allowed_fallback(nodb_server::method_not_allowed)
}

/// `router` with its `GET /views` answer (a JSON `{"views": [...]}`) also
/// listing the cascades, for serving them beside a data view.
pub fn with_listing(router: Router, state: ServerState) -> Router {
    router.layer(axum::middleware::from_fn_with_state(state, add_to_listing))
}

async fn add_to_listing(
    State(s): State<ServerState>,
    caller: Result<Caller, ApiError>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::GET || req.uri().path() != "/views" {
        return next.run(req).await;
    }
    let Ok(caller) = caller else { return next.run(req).await };
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let Ok(bytes) = axum::body::to_bytes(resp.into_body(), 16 << 20).await else {
        return ApiError::new(ErrorCode::Internal, "cannot list the views").into_response();
    };
    let mut body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"views": []}));
    if let Some(views) = body["views"].as_array_mut() {
        views.extend(listing(&s, &caller));
    }
    axum::Json(body).into_response()
}

/// The cascades the caller may read, with their seqs and sources.
fn listing(s: &ServerState, caller: &Caller) -> Vec<Value> {
    s.cascades
        .iter()
        .filter(|c| caller.grant.may_read(c.hub.name()).is_ok())
        .map(|c| {
            // One read, so that the seq and the sources belong together.
            let (seq, sources) = c
                .hub
                .current()
                .map_or_else(|| (c.hub.current_seq(), Default::default()), |(seq, _, sources)| (seq, sources));
            let upstreams: Vec<&str> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
            json!({"name": c.hub.name(), "seq": seq, "cascade": true, "upstreams": upstreams, "sources": sources})
        })
        .collect()
}

/// `?at=N`.
#[derive(Deserialize)]
pub struct AtQuery {
    at: Option<String>,
}

/// `?since=N` (and `client`, accepted for the data view's sake: a cascade
/// rejects nothing).
#[derive(Deserialize)]
pub struct StreamQuery {
    since: Option<String>,
}

fn parse_seq(name: &str, text: Option<&str>) -> Result<Option<u64>, ApiError> {
    match text {
        None | Some("") => Ok(None),
        Some(t) => t.parse::<u64>().map(Some).map_err(|_| bad_request(format!("`{name}` must be a seq, not {t:?}"))),
    }
}

fn no_state(hub: &Hub) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("the cascade {:?} has no state yet: it is waiting for its upstreams (see /health)", hub.name()),
    )
}

fn get_view(
    s: &ServerState,
    caller: &Caller,
    i: usize,
    query: Result<Query<AtQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let hub = &s.cascades[i].hub;
    let scope = caller.grant.may_read(hub.name())?;
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let at = parse_seq("at", q.at.as_deref())?;
    match hub.view_state(at) {
        Ok(state) => match scope {
            ReadScope::Whole => Ok(axum::Json(state).into_response()),
            // A subtree reader's state is its subtree, hashed as such.
            ReadScope::Subtree(pointer) => {
                let sub = state.state.lookup(&pointer).cloned().unwrap_or_default();
                let hash = blake3::hash(sub.to_json_string().as_bytes()).to_hex().to_string();
                Ok(axum::Json(nodb_shared::protocol::ViewState { hash, state: sub, ..state }).into_response())
            }
        },
        Err(AtError::NoState) => Err(no_state(hub)),
        Err(AtError::Ahead { seq }) => {
            Err(bad_request(format!("`at` {} is beyond the cascade's seq {seq}", at.unwrap_or(0))))
        }
        Err(AtError::Gone { oldest }) => Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "seq {} is older than the updates this cascade keeps (from {oldest}); a cascade keeps no snapshots",
                at.unwrap_or(0)
            ),
        )),
    }
}

fn subtree(s: &ServerState, caller: &Caller, i: usize, pointer: &str) -> Result<Response, ApiError> {
    let hub = &s.cascades[i].hub;
    caller.grant.may_read_at(hub.name(), pointer)?;
    let (seq, state, _) = hub.current().ok_or_else(|| no_state(hub))?;
    match state.lookup(pointer) {
        Ok(t) => Ok(([(header::CONTENT_TYPE, "application/json")], t.to_json_string()).into_response()),
        Err(e @ nodb_shared::PathError::InvalidPointer { .. }) => Err(bad_request(e.to_string())),
        Err(e) => Err(ApiError::new(ErrorCode::NotFound, format!("{e} in view {:?} at seq {seq}", hub.name()))),
    }
}

fn stream(
    s: ServerState,
    caller: Caller,
    i: usize,
    query: Result<Query<StreamQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let name = s.cascades[i].hub.name().to_string();
    if caller.grant.may_read(&name)? != ReadScope::Whole {
        return Err(nodb_auth::Denied {
            right: format!("read:{name}"),
            message: format!(
                "a cascaded view streams only whole: this token may read a subtree of {name:?}; read it with GET"
            ),
        }
        .into());
    }
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let since = parse_seq("since", q.since.as_deref())?;
    let upgrade = upgrade.map_err(|e| bad_request(format!("this endpoint is a WebSocket: {e}")))?;
    let tasks = s.tasks.clone();
    Ok(upgrade.on_upgrade(move |socket| tasks.track_future(serve_client(socket, s, i, since, caller.grant))))
}

/// One cascade's hub, as a session sees it.
struct CascadeFeed(Arc<Hub>);

impl Feed for CascadeFeed {
    fn seq(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.seq()
    }

    fn catch_up(&self, since: Option<u64>) -> (CatchUp, Option<u64>) {
        let (catch_up, seq) = self.0.catch_up(since);
        (catch_up, Some(seq).filter(|s| *s != 0))
    }
}

/// A cascade is read-only: every message from a client is refused.
struct ReadOnly;

impl Hooks for ReadOnly {
    async fn on_message(&mut self, _: Message) -> Option<Message> {
        Some(text(&ServerMessage::Error {
            id: None,
            code: ErrorCode::BadRequest,
            message: "a cascaded view is read-only: dispatch actions to the data view".into(),
        }))
    }
}

/// One client: catch up, then one message each time the cascade moves on
/// (or one for several, if it fell behind meanwhile). A client of a cascade
/// that has no state yet waits for it.
async fn serve_client(socket: WebSocket, s: ServerState, i: usize, since: Option<u64>, grant: nodb_auth::Grant) {
    let hub = s.cascades[i].hub.clone();
    hub.metrics.clients.fetch_add(1, Relaxed);
    serve_session(socket, &CascadeFeed(hub.clone()), &mut ReadOnly, since, s.ping, &s.shutdown, &grant).await;
    hub.metrics.clients.fetch_sub(1, Relaxed);
}

/// How one upstream stands: `caught_up` (everything it sent is reflected),
/// `behind` (the reducer has not caught up with it), `reconnecting`, or
/// `connecting` (no state from it yet).
fn upstream_status(u: &UpstreamStatus, reflected: u64) -> &'static str {
    let connected = u.connected.load(Relaxed);
    if !u.has_state.load(Relaxed) {
        "connecting"
    } else if !connected {
        "reconnecting"
    } else if u.seq.load(Relaxed) != reflected {
        "behind"
    } else {
        "caught_up"
    }
}

/// `GET /ready`: 200 when every cascade has caught up with its upstreams,
/// 503 otherwise (starting, behind): what a load balancer should ask.
async fn ready(state: State<ServerState>) -> Response {
    let health = health(state).await;
    let status = health.0["status"].as_str().unwrap_or_default().to_string();
    let code = if status == "caught_up" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(json!({"status": if code == StatusCode::OK { "ready" } else { status.as_str() }})))
        .into_response()
}

async fn health(State(s): State<ServerState>) -> axum::Json<Value> {
    let mut all = "caught_up";
    let mut cascades = serde_json::Map::new();
    for c in s.cascades.iter() {
        let current = c.hub.current();
        let sources = current.as_ref().map(|(_, _, s)| s.clone()).unwrap_or_default();
        let seq = current.as_ref().map_or_else(|| c.hub.current_seq(), |(seq, _, _)| *seq);
        let mut status = if current.is_some() { "caught_up" } else { "starting" };
        let mut upstreams = serde_json::Map::new();
        for u in &c.upstreams {
            let reflected = sources.get(&u.name).copied().unwrap_or(0);
            let st = upstream_status(u, reflected);
            if st != "caught_up" && status == "caught_up" {
                status = "behind";
            }
            let last_error = u.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let their_sources = u.sources.lock().unwrap_or_else(|e| e.into_inner()).clone();
            upstreams.insert(
                u.name.clone(),
                json!({
                    "url": u.url, "status": st, "connected": u.connected.load(Relaxed),
                    "seq": u.seq.load(Relaxed), "reflected": reflected,
                    "reconnects": u.connects.load(Relaxed).saturating_sub(1), "resyncs": u.resyncs.load(Relaxed),
                    "last_error": last_error, "sources": their_sources,
                }),
            );
        }
        // The worst of the cascades: starting, then behind, then caught up.
        if status == "starting" || (status == "behind" && all == "caught_up") {
            all = status;
        }
        cascades.insert(
            c.hub.name().to_string(),
            json!({"status": status, "seq": seq, "sources": sources, "upstreams": upstreams}),
        );
    }
    axum::Json(json!({"status": all, "cascades": cascades}))
}

async fn metrics(State(s): State<ServerState>, caller: Caller) -> Result<Response, ApiError> {
    caller.grant.must_be_admin("reading metrics")?;
    let mut out = nodb_server::Scrape::new();
    let per_cascade = |f: &dyn Fn(&Served) -> u64| -> Vec<(Labels, u64)> {
        s.cascades.iter().map(|c| (vec![("cascade", c.hub.name().to_string())], f(c))).collect()
    };
    out.gauges("nodb_cascade_seq", "The seq of the latest update.", per_cascade(&|c| c.hub.current_seq()));
    out.counters("nodb_cascade_updates", "Updates made.", per_cascade(&|c| c.hub.metrics.updates.load(Relaxed)));
    out.counters(
        "nodb_cascade_upstream_changes",
        "Upstream messages folded into updates.",
        per_cascade(&|c| c.stats.changes.load(Relaxed)),
    );
    out.counters(
        "nodb_cascade_reducer_panics",
        "Reducer panics caught.",
        per_cascade(&|c| c.stats.panics.load(Relaxed)),
    );
    out.seconds_by(
        "nodb_cascade_reduce_seconds",
        "Time spent in the reducer.",
        per_cascade(&|c| c.stats.reduce_nanos.load(Relaxed)),
    );
    out.seconds_by(
        "nodb_cascade_diff_seconds",
        "Time spent diffing and serialising patches.",
        per_cascade(&|c| c.hub.metrics.diff_nanos.load(Relaxed)),
    );
    out.gauges(
        "nodb_cascade_clients",
        "Connected stream clients.",
        per_cascade(&|c| c.hub.metrics.clients.load(Relaxed)),
    );
    out.counters(
        "nodb_cascade_coalesced",
        "Messages that covered several updates.",
        per_cascade(&|c| c.hub.metrics.coalesced.load(Relaxed)),
    );
    out.counters(
        "nodb_cascade_resynced",
        "Clients sent a fresh snapshot after falling behind or coming back from an earlier run.",
        per_cascade(&|c| c.hub.metrics.resynced.load(Relaxed)),
    );
    let per_upstream = |f: &dyn Fn(&UpstreamStatus) -> u64| -> Vec<(Labels, u64)> {
        s.cascades
            .iter()
            .flat_map(|c| {
                c.upstreams
                    .iter()
                    .map(move |u| (vec![("cascade", c.hub.name().to_string()), ("upstream", u.name.clone())], f(u)))
            })
            .collect()
    };
    out.gauges("nodb_cascade_upstream_seq", "The upstream seq of the replica.", per_upstream(&|u| u.seq.load(Relaxed)));
    out.gauges(
        "nodb_cascade_upstream_connected",
        "Whether the upstream stream is open.",
        per_upstream(&|u| u64::from(u.connected.load(Relaxed))),
    );
    out.counters(
        "nodb_cascade_upstream_connects",
        "Times the upstream stream was opened.",
        per_upstream(&|u| u.connects.load(Relaxed)),
    );
    out.counters(
        "nodb_cascade_upstream_resyncs",
        "Times the replica was resynced from a snapshot after bad data.",
        per_upstream(&|u| u.resyncs.load(Relaxed)),
    );
    Ok(out.into_response())
}
