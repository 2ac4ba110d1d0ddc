//! Ingest: `POST /actions` and the `/ws` socket.
//!
//! Both validate each action against the wire contract (a `@@nodb/redact`
//! also against its checks: a well-formed payload naming only seqs already
//! in the log, none of them a redaction), hand it to the log and answer
//! only once the log says it is durable. On the socket many dispatches may
//! be in flight at once; each ack carries its action's id.
//! Dispatches already received travel to the log as one group (each still
//! accepted or refused on its own), and the socket's answers are written in
//! bursts with one flush.

use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::{FutureExt, SinkExt, StreamExt};
use nodb_shared::protocol::{Acks, ActionId, ErrorCode, REDACT, Redact, RedactError, ServerMessage};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, action_error, append_error, json_error, redact_error};
use crate::action::IncomingAction;
use crate::log::{AppendBatch, Atomicity, Outcome, PendingAcks};
use nodb_auth::Grant;
use nodb_server::Caller;

/// How many dispatches one socket may have in flight.
const SOCKET_IN_FLIGHT: usize = 4096;

/// `POST /actions`: one action or an array, acknowledged after one durable
/// write.
pub async fn post_actions(
    State(state): State<AppState>,
    caller: Caller,
    gate: nodb_server::DispatchGate,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.grant.may_dispatch_some()?;
    require_json(&headers)?;
    let limit = state.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(ErrorCode::PayloadTooLarge, format!("the request body is over the limit of {limit} bytes"))
    })?;
    let batch = parse_batch(&bytes, &state, &caller.grant)?;
    check_rate(&gate, &caller.grant, &batch.actions)?;
    let acks = state.log.append(batch).await.map_err(append_error)?;
    Ok(axum::Json(Acks { acks }).into_response())
}

/// Takes a batch's actions from its clients' rate limits (and the
/// caller's token and address).
fn check_rate(
    gate: &nodb_server::DispatchGate,
    grant: &Grant,
    actions: &[(ActionId, IncomingAction)],
) -> Result<(), ApiError> {
    let mut counts: Vec<(&str, u32)> = Vec::new();
    for (id, _) in actions {
        match counts.iter_mut().find(|(c, _)| *c == id.client) {
            Some((_, n)) => *n += 1,
            None => counts.push((&id.client, 1)),
        }
    }
    counts.into_iter().try_for_each(|(client, n)| gate.check(grant, client, n))
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

/// Parses and validates the body: an action object or an array of them,
/// each one the caller may dispatch.
fn parse_batch(bytes: &[u8], state: &AppState, grant: &Grant) -> Result<AppendBatch, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let actions: Vec<IncomingAction> = if first == Some(&b'[') {
        serde_json::from_slice(bytes).map_err(|e| json_error(&e, "actions"))?
    } else {
        vec![serde_json::from_slice(bytes).map_err(|e| json_error(&e, "action"))?]
    };
    if actions.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidAction, "the array holds no actions"));
    }
    if actions.len() > super::MAX_ACTIONS_PER_REQUEST {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{} actions in one request, over the limit of {}; send them in several requests",
                actions.len(),
                super::MAX_ACTIONS_PER_REQUEST
            ),
        ));
    }
    let many = actions.len() > 1 || first == Some(&b'[');
    let mut out = Vec::with_capacity(actions.len());
    // The head, read once for the batch's redactions if it has any.
    let mut head = None;
    for (i, a) in actions.into_iter().enumerate() {
        let id = a.validate(&state.config.limits).map_err(|e| action_error(&e, many.then_some(i), &a.id))?;
        grant.may_dispatch(&id.client, &a.kind).map_err(|d| {
            let at = if many { format!("action {i} ({:?})", a.id) } else { format!("action {:?}", a.id) };
            ApiError::from(nodb_auth::Denied { message: format!("{at}: {}", d.message), ..d })
        })?;
        if a.kind == REDACT {
            let head = *head.get_or_insert_with(|| *state.log.head().borrow());
            check_redaction(&a, head, &*state.log).map_err(|e| redact_error(&e, many.then_some(i), &a.id))?;
        }
        out.push((id, a));
    }
    Ok(AppendBatch { actions: out, client: None, atomicity: Atomicity::AllOrNothing })
}

/// `GET /ws`: dispatch over a WebSocket, with pipelining.
/// Needs a token that may dispatch something; each dispatch is checked on
/// its own, and the socket closes (code 4401) when the token expires.
pub async fn ws(
    State(state): State<AppState>,
    caller: Caller,
    gate: nodb_server::DispatchGate,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.grant.may_dispatch_some()?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!("GET /ws is a WebSocket for dispatching actions: {}", e.body_text()))
    })?;
    let max = state.config.max_body_bytes;
    let tasks = state.tasks.clone();
    Ok(upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(nodb_server::limits::DISPATCH_READ_BUFFER)
        .on_upgrade(move |socket| {
            tasks.track_future(
                serve_socket(socket, state, caller.grant, gate).instrument(tracing::debug_span!("ingest_socket")),
            )
        }))
}

/// What the socket's writer sends next: an answer now, or the acks of a
/// group of dispatches once they are durable.
enum Outgoing {
    Now(Answer),
    /// Close the socket with this frame (after the acks before it): the
    /// token expired, or a message was over the size limit.
    Close(Message),
    /// The ids of a group's dispatches, in order, and their acks to come.
    Later(Vec<String>, PendingAcks),
}

/// How many already-received dispatches travel to the log together.
const GROUP: usize = 512;

async fn serve_socket(socket: WebSocket, state: AppState, grant: Grant, gate: nodb_server::DispatchGate) {
    let (sink, mut stream) = socket.split();
    // Bounded: a client that sends faster than its acks can be written waits.
    let (tx, rx) = mpsc::channel::<Outgoing>(SOCKET_IN_FLIGHT / GROUP.min(SOCKET_IN_FLIGHT));
    let writer = tokio::spawn(write_answers(sink, rx).instrument(tracing::debug_span!("socket_writer")));
    let shutdown = state.shutdown.clone();
    let expiry = nodb_server::access::expiry(&grant);
    tokio::pin!(expiry);
    'socket: loop {
        let first = tokio::select! {
            m = stream.next() => m,
            () = shutdown.cancelled() => break,
            () = &mut expiry => {
                let _ = tx.send(Outgoing::Close(nodb_server::access::expired_close())).await;
                break;
            }
        };
        // Every dispatch already received joins one group: one trip to the
        // log, one wake-up for all their acks.
        let mut group = Vec::new();
        let mut next = first;
        loop {
            let text = match next {
                Some(Ok(Message::Text(t))) => Some(t),
                Some(Ok(Message::Binary(_))) => {
                    let err = ApiError::bad_request("send dispatches as text frames of JSON");
                    if tx.send(Outgoing::Now(Answer::error(None, err))).await.is_err() {
                        break 'socket;
                    }
                    None
                }
                // A message over the size limit (refused before it was
                // buffered), or text that is not UTF-8: say why (1009,
                // 1007) after the acks before it.
                Some(Err(e)) if nodb_server::limits::close_for(&e).is_some() => {
                    submit_group(&state, &tx, group).await;
                    if let Some(frame) = nodb_server::limits::close_for(&e) {
                        let _ = tx.send(Outgoing::Close(frame)).await;
                    }
                    break 'socket;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    submit_group(&state, &tx, group).await;
                    break 'socket;
                }
                Some(Ok(_)) => None, // ping/pong are answered by the library
            };
            if let Some(text) = text {
                let parsed = parse_dispatch(text.as_str(), &state, &grant).and_then(|(id, action)| {
                    match gate.check(&grant, &id.client, 1) {
                        Ok(()) => Ok((id, action)),
                        Err(e) => Err((Some(action.id.clone()), e)),
                    }
                });
                match parsed {
                    Ok(parsed) => group.push(parsed),
                    Err((id, e)) => {
                        if tx.send(Outgoing::Now(Answer::error(id, e))).await.is_err() {
                            break 'socket;
                        }
                    }
                }
            }
            if group.len() >= GROUP {
                break;
            }
            match stream.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        if !submit_group(&state, &tx, group).await {
            break;
        }
    }
    drop(tx);
    // Acks still in flight are delivered before the socket closes.
    let _ = writer.await;
}

/// Hands a group of independent dispatches to the log, in the socket's
/// order. `false` if the socket's writer is gone.
async fn submit_group(state: &AppState, tx: &mpsc::Sender<Outgoing>, group: Vec<(ActionId, IncomingAction)>) -> bool {
    if group.is_empty() {
        return true;
    }
    let ids: Vec<String> = group.iter().map(|(_, a)| a.id.clone()).collect();
    let batch = AppendBatch { actions: group, client: None, atomicity: Atomicity::EachAlone };
    let pending = match state.log.submit(batch).await {
        Ok(pending) => pending,
        // Nothing was queued: every dispatch of the group gets the error.
        Err(e) => Box::pin(async move { Err(e) }),
    };
    let out = Outgoing::Later(ids, pending);
    tx.send(out).await.is_ok()
}

/// Writes answers in order, flushing once per burst rather than per message.
async fn write_answers(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next {
            let messages = match out {
                Outgoing::Now(answer) => vec![answer],
                Outgoing::Close(frame) => {
                    let _ = sink.send(frame).await;
                    return;
                }
                Outgoing::Later(ids, pending) => match pending.await {
                    Ok(outcomes) => ids.into_iter().zip(outcomes).map(|(id, o)| answer(id, o)).collect(),
                    // The whole group failed: each dispatch gets its own
                    // error, with its id, so a pipelining client knows.
                    Err(e) => ids.into_iter().map(|id| answer(id, Err(e.clone()))).collect(),
                },
            };
            for m in messages {
                let text = serde_json::to_string(&m).unwrap_or_default();
                if sink.feed(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

/// A socket answer: the message, and as in the HTTP error body, for an
/// `out_of_order` error the action number expected next (`"expected": N`),
/// for `forbidden` the right the token lacks (`"right": "…"`).
#[derive(serde::Serialize)]
struct Answer {
    #[serde(flatten)]
    message: ServerMessage,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    right: Option<String>,
}

impl Answer {
    fn error(id: Option<String>, e: ApiError) -> Answer {
        Answer {
            message: ServerMessage::Error { id, code: e.code, message: e.message },
            expected: e.expected,
            right: e.right,
        }
    }
}

fn answer(id: String, outcome: Outcome) -> Answer {
    match outcome {
        Ok(ack) => Answer { message: ServerMessage::Ack(ack), expected: None, right: None },
        Err(e) => Answer::error(Some(id), append_error(e)),
    }
}

/// The socket message `{"type": "dispatch", "action": {…}}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Dispatch {
    #[serde(rename = "type")]
    kind: String,
    action: IncomingAction,
}

/// Parses a socket message into a validated action, or an error naming the
/// action's id when it can be found.
fn parse_dispatch(
    text: &str,
    state: &AppState,
    grant: &Grant,
) -> Result<(ActionId, IncomingAction), (Option<String>, ApiError)> {
    let msg: Dispatch = serde_json::from_str(text).map_err(|e| {
        let v = serde_json::from_str::<serde_json::Value>(text).ok();
        let id = v.as_ref().and_then(|v| v.pointer("/action/id")).and_then(|i| i.as_str()).map(String::from);
        let mut err = json_error(&e, "message");
        if err.code == ErrorCode::InvalidAction && v.as_ref().is_some_and(|v| v["type"] != "dispatch") {
            err = ApiError::new(
                ErrorCode::BadRequest,
                "expected a message {\"type\": \"dispatch\", \"action\": {...}}".to_string(),
            );
        }
        (id, err)
    })?;
    if msg.kind != "dispatch" {
        return Err((
            None,
            ApiError::new(
                ErrorCode::BadRequest,
                format!("unknown message type {:?}: only \"dispatch\" is accepted", msg.kind),
            ),
        ));
    }
    let action = msg.action;
    match action.validate(&state.config.limits) {
        Ok(id) => match grant.may_dispatch(&id.client, &action.kind) {
            Ok(()) if action.kind == REDACT => {
                match check_redaction(&action, *state.log.head().borrow(), &*state.log) {
                    Ok(()) => Ok((id, action)),
                    Err(e) => Err((Some(action.id.clone()), redact_error(&e, None, &action.id))),
                }
            }
            Ok(()) => Ok((id, action)),
            Err(d) => Err((Some(action.id.clone()), ApiError::from(d))),
        },
        Err(e) => Err((Some(action.id.clone()), action_error(&e, None, &action.id))),
    }
}

/// Checks a `@@nodb/redact` action: its payload ([`Redact::parse`]) may
/// name only seqs already in the log, `head` being the log's head now (its
/// own seq will be later still), and none of them may be a redaction that
/// took effect (the data views could not leave it out).
///
/// # Errors
/// The [`RedactError`] naming what is wrong.
fn check_redaction(action: &IncomingAction, head: u64, log: &dyn crate::log::Log) -> Result<(), RedactError> {
    let payload = match &action.payload {
        // Valid JSON with readable numbers: `validate` made sure.
        Some(raw) => serde_json::from_str(raw.get()).map_err(|e| RedactError::Shape(e.to_string()))?,
        None => serde_json::Value::Null,
    };
    let redact = Redact::parse(&payload, head)?;
    match log.redaction_among(&redact.seqs) {
        Some(seq) => Err(RedactError::NamesARedaction(seq)),
        None => Ok(()),
    }
}
