//! Ingest: `POST /actions` and the `/ws` socket.
//!
//! Both validate each action against the wire contract, hand it to the log
//! and answer only once the log says it is durable. On the socket many
//! dispatches may be in flight at once; each ack carries its action's id and
//! may overtake another.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use nodb_shared::protocol::{Acks, Action, ActionId, ClientMessage, ErrorCode, ServerMessage};
use tokio::sync::{Semaphore, mpsc};

use super::AppState;
use super::error::ApiError;
use crate::log::AppendBatch;

/// How many dispatches one socket may have in flight.
const SOCKET_IN_FLIGHT: usize = 4096;

/// `POST /actions`: one action or an array, acknowledged after one durable
/// write.
pub async fn post_actions(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let limit = state.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(ErrorCode::PayloadTooLarge, format!("the request body is over the limit of {limit} bytes"))
    })?;
    let batch = parse_batch(&bytes, &state)?;
    let acks = state.log.append(batch).await?;
    Ok(axum::Json(Acks { acks }).into_response())
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        let found = if ct.is_empty() { "no Content-Type".to_string() } else { format!("Content-Type {ct:?}") };
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("send actions as JSON with Content-Type: application/json (got {found})"),
        ))
    }
}

/// Parses and validates the body: an action object or an array of them.
fn parse_batch(bytes: &[u8], state: &AppState) -> Result<AppendBatch, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let actions: Vec<Action> = if first == Some(&b'[') {
        serde_json::from_slice(bytes).map_err(|e| ApiError::from_json(&e, "actions"))?
    } else {
        vec![serde_json::from_slice(bytes).map_err(|e| ApiError::from_json(&e, "action"))?]
    };
    if actions.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidAction, "the array holds no actions"));
    }
    let many = actions.len() > 1 || first == Some(&b'[');
    let mut out = Vec::with_capacity(actions.len());
    for (i, a) in actions.into_iter().enumerate() {
        let id = a.validate(&state.config.limits).map_err(|e| ApiError::from_action(&e, many.then_some(i), &a.id))?;
        out.push((id, a));
    }
    Ok(AppendBatch { actions: out, client: None })
}

/// `GET /ws`: dispatch over a WebSocket, with pipelining.
pub async fn ws(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let max = state.config.max_body_bytes;
    upgrade.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| serve_socket(socket, state))
}

async fn serve_socket(socket: WebSocket, state: AppState) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<ServerMessage>(1024);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let text = serde_json::to_string(&msg).unwrap_or_default();
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let in_flight = Arc::new(Semaphore::new(SOCKET_IN_FLIGHT));
    let shutdown = state.shutdown.clone();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            () = shutdown.cancelled() => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                let err = error(None, ErrorCode::BadRequest, "send dispatches as text frames of JSON");
                if tx.send(err).await.is_err() {
                    break;
                }
                continue;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue, // ping/pong are answered by the library
        };
        match parse_dispatch(text.as_str(), &state) {
            Ok((id, action)) => {
                let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
                let id_text = action.id.clone();
                let batch = AppendBatch { actions: vec![(id, action)], client: None };
                // Submitting in the socket's own order keeps a client's
                // pipelined actions in order; the acks come back as each
                // becomes durable.
                let pending = state.log.submit(batch).await;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = match pending {
                        Ok(p) => p.await,
                        Err(e) => Err(e),
                    };
                    let reply = match result {
                        Ok(mut acks) => match acks.pop() {
                            Some(ack) => ServerMessage::Ack(ack),
                            None => error(Some(id_text), ErrorCode::Internal, "no acknowledgement"),
                        },
                        Err(e) => {
                            let e = ApiError::from(e);
                            error(Some(id_text), e.code, e.message)
                        }
                    };
                    let _ = tx.send(reply).await;
                    drop(permit);
                });
            }
            Err((id, e)) => {
                if tx.send(error(id, e.code, e.message)).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    // Acks still in flight are delivered before the socket closes.
    let _ = writer.await;
}

fn error(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::Error { id, code, message: message.into() }
}

/// Parses a socket message into a validated action, or an error naming the
/// action's id when it can be found.
fn parse_dispatch(text: &str, state: &AppState) -> Result<(ActionId, Action), (Option<String>, ApiError)> {
    let msg: ClientMessage = serde_json::from_str(text).map_err(|e| {
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.pointer("/action/id").and_then(|i| i.as_str()).map(String::from));
        let mut err = ApiError::from_json(&e, "message");
        if err.code == ErrorCode::InvalidAction && !text.contains("\"dispatch\"") {
            err.code = ErrorCode::BadRequest;
        }
        (id, err)
    })?;
    let ClientMessage::Dispatch { action } = msg;
    match action.validate(&state.config.limits) {
        Ok(id) => Ok((id, action)),
        Err(e) => Err((Some(action.id.clone()), ApiError::from_action(&e, None, &action.id))),
    }
}
