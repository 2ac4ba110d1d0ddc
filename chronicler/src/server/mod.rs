//! The chronicler's HTTP service: the router and its state. A host serves
//! [`router`] with `nodb_server::serve` (or `serve_with` and its limits,
//! as `nodb chronicler` does), which shuts down gracefully.
//!
//! - `POST /actions`, `GET /ws` — ingest ([`ingest`]).
//! - `GET /actions?from=N[&to=M]` — the stream, NDJSON or WebSocket ([`stream`]).
//! - `GET /clients/{client}` — a client's last durable action.
//! - `GET /health`, `GET /metrics`.

pub mod error;
pub mod ingest;
#[cfg(test)]
mod redact_tests;
#[cfg(test)]
mod router_tests;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nodb_shared::protocol::Limits;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::Log;
use crate::metrics::Metrics;

/// Settings of the HTTP service.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Limits on each action (payload size).
    pub limits: Limits,
    /// The largest request body or socket message. Default 16 MiB.
    pub max_body_bytes: usize,
    /// How often an idle stream sends a heartbeat line. Default 5 s.
    pub heartbeat: Duration,
    /// A stream consumer that takes nothing for this long while actions
    /// wait for it is cut off ([`stream`]). Default 60 s.
    pub stream_stall: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            max_body_bytes: 16 * 1024 * 1024,
            heartbeat: Duration::from_secs(5),
            stream_stall: Duration::from_secs(60),
        }
    }
}

impl ServerConfig {
    /// Checks the settings make sense.
    ///
    /// # Errors
    /// A sentence naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate()?;
        if self.max_body_bytes < self.limits.max_payload_bytes {
            return Err(format!(
                "the body limit ({} bytes) must be at least the payload limit ({} bytes)",
                self.max_body_bytes, self.limits.max_payload_bytes
            ));
        }
        if self.max_body_bytes > MAX_BODY_LIMIT {
            return Err(format!(
                "the body limit must be at most {MAX_BODY_LIMIT} bytes (16 MiB), not {}",
                self.max_body_bytes
            ));
        }
        if self.heartbeat.is_zero() {
            return Err("the heartbeat interval must not be zero".into());
        }
        if self.stream_stall.is_zero() {
            return Err("the stream stall time must not be zero".into());
        }
        Ok(())
    }
}

/// The largest body limit that may be configured: every request must fit
/// one write of the log.
pub const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The most actions one `POST /actions` may carry.
pub const MAX_ACTIONS_PER_REQUEST: usize = 10_000;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The log.
    pub log: Arc<dyn Log>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The settings.
    pub config: Arc<ServerConfig>,
    /// Cancelled when the service shuts down; long-lived streams end then.
    pub shutdown: CancellationToken,
    /// The WebSocket sessions, so shutdown can wait for their last acks.
    pub tasks: TaskTracker,
    /// Who may do what: tokens, Host and Origin.
    pub access: nodb_server::Access,
}

/// The chronicler's routes.
pub fn router(state: AppState) -> Router {
    let access = state.access.clone();
    access.layer(api_router(state.clone()).merge(status_router(state)).fallback(not_found))
}

/// The history's own routes, `/actions` and `/ws`, without a fallback, so
/// that `nodb up` can serve them beside a data view on one address.
pub fn api_router(state: AppState) -> Router {
    Router::new()
        .route("/actions", post(ingest::post_actions).get(stream::get_actions))
        .route("/ws", get(ingest::ws))
        .route("/clients/{client}", get(client))
        .route("/head", get(head))
        .with_state(state)
        .method_not_allowed_fallback(nodb_server::method_not_allowed)
}

/// `GET /clients/{client}`: the number and seq of the client's last durable
/// action, so a client that keeps no state of its own (an envoy) can find
/// where it stopped. Its own client, or the `log` right.
async fn client(
    State(state): State<AppState>,
    caller: nodb_server::Caller,
    axum::extract::Path(client): axum::extract::Path<String>,
) -> Result<axum::Json<serde_json::Value>, error::ApiError> {
    if let Err(denied) = caller.grant.may_act_as(&client) {
        caller.grant.may_read_log().map_err(|_| denied)?;
    }
    match state.log.client(&client) {
        Some(p) => Ok(axum::Json(serde_json::json!({"client": client, "last": p.last, "seq": p.seq}))),
        None => Err(error::ApiError::new(
            nodb_shared::protocol::ErrorCode::NotFound,
            format!("no actions from client {client:?}"),
        )),
    }
}

/// `?at=N` on `GET /head`.
#[derive(serde::Deserialize)]
struct HeadQuery {
    at: Option<u64>,
}

/// `GET /head[?at=N]`: the head seq (or seq N) and the chain hash after it,
/// and with keys, the pair signed (`signed`, a checkpoint token). Kept
/// somewhere else, it anchors the history before it: `nodb log verify
/// --expect SEQ:HASH` (or `--expect-signed TOKEN`) checks a log against it,
/// and a data view checks the chronicler against the hash its snapshot
/// recorded. Needs the `log` right.
async fn head(
    State(state): State<AppState>,
    caller: nodb_server::Caller,
    axum::extract::Query(q): axum::extract::Query<HeadQuery>,
) -> Result<axum::Json<serde_json::Value>, error::ApiError> {
    caller.grant.may_read_log()?;
    let head = *state.log.head().borrow();
    let seq = q.at.unwrap_or(head);
    let hash = state.log.hash_at(seq).await.map_err(|e| {
        tracing::error!(error = %e, seq, "reading a chain hash failed");
        error::ApiError::new(nodb_shared::protocol::ErrorCode::Internal, "the log could not be read")
    })?;
    match hash {
        Some(h) => {
            let hash = crate::log::record::hex(&h);
            let mut body = serde_json::json!({"seq": seq, "hash": hash, "head": head});
            if let Some(key) = state.access.signing_key() {
                let checkpoint = nodb_auth::Checkpoint { chain_seq: seq, chain_hash: hash, iat: nodb_auth::key::now() };
                body["signed"] = key.sign_checkpoint(&checkpoint).into();
            }
            Ok(axum::Json(body))
        }
        None => Err(error::ApiError::new(
            nodb_shared::protocol::ErrorCode::NotFound,
            format!("the log has not reached seq {seq} (its head is seq {head})"),
        )),
    }
}

/// `/health` and `/metrics`, without a fallback (`nodb up` nests them under
/// `/chronicler`).
pub fn status_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
        .method_not_allowed_fallback(nodb_server::method_not_allowed)
}

/// `GET /health`: 200 `{"status": "ok", "head"}`, or 503 with `"status":
/// "unavailable"` and the reason while the log cannot take appends (a
/// replicated log whose servers are unreachable, or damaged).
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let head = *state.log.head().borrow();
    match state.log.trouble() {
        None => (axum::http::StatusCode::OK, axum::Json(serde_json::json!({"status": "ok", "head": head}))),
        Some(reason) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "head": head, "reason": reason})),
        ),
    }
}

async fn metrics(State(state): State<AppState>, caller: nodb_server::Caller) -> Result<Response, error::ApiError> {
    caller.grant.must_be_admin("reading metrics")?;
    Ok(state.metrics.scrape().into_response())
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        nodb_shared::protocol::ErrorCode::NotFound,
        format!("no such endpoint: {} (try POST /actions, GET /actions?from=1, GET /ws, GET /health)", uri.path()),
    )
}
