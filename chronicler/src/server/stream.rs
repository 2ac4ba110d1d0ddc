//! `GET /actions?from=N[&to=M][&types=P,Q][&lines=many]`: committed
//! actions from seq N, then the live tail (or up to seq M, then the end) —
//! as newline-delimited JSON, or as a WebSocket when the request asks to
//! upgrade: one line per text message, or with `lines=many` each chunk
//! read from the log as one message of newline-ended lines (a consumer
//! far behind then takes a message per chunk, not per action).
//!
//! Each consumer has its own task that reads from the log (the in-memory
//! tail, or disk when it is behind) and feeds a bounded channel. A slow
//! consumer only slows its own task: the writer never waits for it, and it
//! never misses or repeats a seq.
//!
//! What a consumer holds is bounded: chunks of at most [`CHUNK_BYTES`] (or
//! one action), at most [`BUFFERED_CHUNKS`] of them waiting, plus what the
//! connection buffers. A consumer that takes nothing from its channel for
//! the configured stall time (`ServerConfig::stream_stall`) is cut off and
//! counted (`nodb_chronicler_stalled_consumers`): its task ends, its
//! waiting chunks are dropped, and its connection is closed (a WebSocket at
//! once; an NDJSON response as soon as the connection moves again, until
//! then holding only what HTTP had buffered). A consumer that reads slowly
//! is never cut off: it takes one chunk per stall time at least, and when
//! it falls behind the in-memory tail it is read from disk. Heartbeat lines
//! `{"heartbeat":{"head":H,"seen":S}}` give the log's head and say that every
//! seq up to S has been considered for this consumer, so a consumer with a
//! type filter knows where it is even when nothing matches.
//!
//! The line of an action that is redacted when it is read (by a later
//! `@@nodb/redact` not since undone, see [`crate::log::redactions`]) gets
//! `"redacted_by": R` added as its last field; every other line is served
//! as the log stores it.

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use nodb_shared::protocol::{ErrorCode, StreamLine};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::AppState;
use super::error::ApiError;
use crate::log::ReadLimits;

/// The most bytes of actions one chunk of a stream holds (a single larger
/// action is sent alone).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// How many chunks may wait for a consumer to take them.
pub const BUFFERED_CHUNKS: usize = 4;

/// How far behind the head a consumer is, at least, when a heartbeat
/// follows a chunk of the log.
const BEHIND: u64 = 1024;

/// What one read for a stream may return.
const STREAM_READ: ReadLimits = ReadLimits { max_entries: 4096, max_bytes: CHUNK_BYTES };

/// The query of `GET /actions`.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// The first seq to send (default 1).
    from: Option<String>,
    /// Comma-separated action type prefixes to keep.
    types: Option<String>,
    /// The last seq to send; the stream ends after it (default: never).
    to: Option<String>,
    /// `many`: a WebSocket message may carry several lines (each ended by
    /// a newline); `one` (the default): one line per message.
    lines: Option<String>,
}

/// `GET /actions`: needs the `log` right; the stream ends (a WebSocket
/// closes with code 4401) when the token expires.
pub async fn get_actions(
    State(state): State<AppState>,
    caller: nodb_server::Caller,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    socket_limits: nodb_server::SocketLimits,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.grant.may_read_log()?;
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let from = match q.from.as_deref() {
        None | Some("") => 1,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("`from` must be a seq of 1 or more, not {s:?}"),
                ));
            }
        },
    };
    let to = match q.to.as_deref() {
        None | Some("") => u64::MAX,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n >= from => n,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("`to` must be a seq no smaller than `from` ({from}), not {s:?}"),
                ));
            }
        },
    };
    let many = match q.lines.as_deref() {
        None | Some("" | "one") => false,
        Some("many") => true,
        Some(s) => {
            return Err(ApiError::new(ErrorCode::BadRequest, format!("`lines` must be `one` or `many`, not {s:?}")));
        }
    };
    let filter = Filter::parse(q.types.as_deref());
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFERED_CHUNKS);
    let rx = Arc::new(Mutex::new(rx));
    let cut = CancellationToken::new();
    let producer = Producer {
        state: state.clone(),
        next: from,
        to,
        filter,
        tx,
        rx: rx.clone(),
        cut: cut.clone(),
        grant: caller.grant,
    };
    // Not a WebSocket handshake: newline-delimited JSON.
    if let Ok(upgrade) = upgrade {
        let tasks = state.tasks.clone();
        let upgrade = socket_limits.apply(upgrade);
        return Ok(upgrade.on_upgrade(move |socket| tasks.track_future(serve_socket(socket, producer, rx, cut, many))));
    }
    let span = tracing::debug_span!("stream", from, transport = "ndjson");
    tokio::spawn(producer.run(b'\n').instrument(span));
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        if cut.is_cancelled() {
            // An error ends the response by closing the connection.
            return std::task::Poll::Ready(Some(Err(std::io::Error::other("the consumer stopped reading"))));
        }
        lock(&rx).poll_recv(cx).map(|o| o.map(Ok))
    }));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// The channel's receiving end, shared by the connection (which takes
/// chunks) and the producer (which drops them if it cuts the consumer off).
type SharedRx = Arc<Mutex<mpsc::Receiver<Bytes>>>;

fn lock(rx: &SharedRx) -> std::sync::MutexGuard<'_, mpsc::Receiver<Bytes>> {
    rx.lock().unwrap_or_else(|e| e.into_inner())
}

/// Feeds a WebSocket consumer: each line as a message of its own (lines
/// are separated by NUL internally and split back into messages), or with
/// `many` each chunk as one message of newline-ended lines, as the NDJSON
/// body has them.
async fn serve_socket(mut socket: WebSocket, producer: Producer, rx: SharedRx, cut: CancellationToken, many: bool) {
    let span = tracing::debug_span!("stream", from = producer.next, transport = "websocket", many);
    let grant = producer.grant.clone();
    tokio::spawn(producer.run(if many { b'\n' } else { 0 }).instrument(span));
    let expiry = nodb_server::access::expiry(&grant);
    tokio::pin!(expiry);
    let next = || std::future::poll_fn(|cx| lock(&rx).poll_recv(cx));
    loop {
        let chunk = tokio::select! {
            // First: a consumer cut off also finds its channel closed, and
            // must not wait to send a close frame it will not read.
            biased;
            // Dropping the socket closes the connection.
            () = cut.cancelled() => return,
            c = next() => match c { Some(c) => c, None => break },
            () = &mut expiry => {
                let _ = socket.send(nodb_server::access::expired_close()).await;
                return;
            }
        };
        let write = async {
            // Stored lines are JSON, so UTF-8; a chunk that is not goes
            // line by line, as without `many`.
            if many && let Ok(text) = axum::extract::ws::Utf8Bytes::try_from(chunk.clone()) {
                socket.feed(Message::Text(text)).await?;
                return socket.flush().await;
            }
            let separator = if many { b'\n' } else { 0 };
            for line in chunk.split(|b| *b == separator).filter(|l| !l.is_empty()) {
                let Ok(text) = axum::extract::ws::Utf8Bytes::try_from(Bytes::copy_from_slice(line)) else {
                    continue;
                };
                socket.feed(Message::Text(text)).await?;
            }
            socket.flush().await
        };
        // A reader that stopped reading blocks the write: the producer
        // then cuts it off.
        tokio::select! {
            r = write => if r.is_err() { return },
            () = cut.cancelled() => return,
        }
    }
    let _ = socket.close().await;
}

/// Appends a stored action's JSON (`{…}`) with `"redacted_by":by` added
/// as its last field: only the served line changes, never the log.
fn push_redacted(chunk: &mut BytesMut, json: &[u8], by: u64) {
    match json.split_last() {
        Some((b'}', body)) => {
            chunk.extend_from_slice(body);
            chunk.extend_from_slice(format!(",\"redacted_by\":{by}}}").as_bytes());
        }
        // Every stored action is an object; anything else is served as is.
        _ => chunk.extend_from_slice(json),
    }
}

/// A type-prefix filter.
#[derive(Clone, Debug)]
struct Filter(Vec<String>);

impl Filter {
    fn parse(types: Option<&str>) -> Filter {
        Filter(types.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect())
    }

    fn keeps(&self, json: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct TypeOf<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
        }
        if self.0.is_empty() {
            return true;
        }
        match serde_json::from_slice::<TypeOf<'_>>(json) {
            Ok(t) => self.0.iter().any(|p| t.kind.starts_with(p.as_str())),
            Err(_) => false,
        }
    }
}

/// One consumer's reader task.
struct Producer {
    state: AppState,
    next: u64,
    /// The last seq to send.
    to: u64,
    filter: Filter,
    tx: mpsc::Sender<Bytes>,
    /// The other end of `tx`, to empty when the consumer is cut off.
    rx: SharedRx,
    /// Cancelled when the consumer is cut off for not reading.
    cut: CancellationToken,
    /// The reader's rights; the stream ends when its token expires.
    grant: nodb_auth::Grant,
}

impl Producer {
    async fn run(mut self, separator: u8) {
        self.state.metrics.consumers.fetch_add(1, Relaxed);
        let interval = self.state.config.heartbeat;
        if let Err(e) = self.feed(separator, interval).await {
            tracing::debug!(error = %e, "stream consumer ended");
        }
        self.state.metrics.consumers.fetch_sub(1, Relaxed);
    }

    async fn feed(&mut self, separator: u8, interval: Duration) -> Result<(), String> {
        let mut head_rx = self.state.log.head();
        let shutdown = self.state.shutdown.clone();
        let mut last_sent = Instant::now();
        let grant = self.grant.clone();
        let expiry = nodb_server::access::expiry(&grant);
        tokio::pin!(expiry);
        // A first heartbeat tells the consumer where the log is.
        let head = *head_rx.borrow();
        self.heartbeat(separator, head, (self.next - 1).min(head)).await?;
        loop {
            if self.next > self.to {
                return Ok(());
            }
            // A reader far behind never waits below, so its token's expiry
            // is checked here too.
            if grant.expires().is_some_and(|exp| exp <= nodb_auth::key::now()) {
                return Err("the reader's token expired".into());
            }
            let head = *head_rx.borrow_and_update();
            if self.next <= head {
                let entries = self.state.log.read(self.next, STREAM_READ).await.map_err(|e| e.to_string())?;
                let Some(last) = entries.iter().map(|e| e.seq).take_while(|s| *s <= self.to).last() else {
                    return Err(format!("the log returned nothing at seq {} below head {head}", self.next));
                };
                // Asked after the read: every redaction up to the head it
                // read to is in the index by now.
                let redacted = self.state.log.redacted(self.next, last);
                let mut chunk = BytesMut::new();
                for e in entries.iter().take_while(|e| e.seq <= self.to) {
                    if self.filter.keeps(&e.json) {
                        match redacted.binary_search_by_key(&e.seq, |(seq, _)| *seq) {
                            Ok(i) => push_redacted(&mut chunk, &e.json, redacted[i].1),
                            Err(_) => chunk.extend_from_slice(&e.json),
                        }
                        chunk.extend_from_slice(&[separator]);
                    }
                }
                self.next = last + 1;
                if !chunk.is_empty() {
                    self.send(chunk.freeze()).await?;
                    last_sent = Instant::now();
                    // Still far behind the head: say where it is, so a
                    // consumer catching up knows how far it has to go (a
                    // data view batches while far behind). Not on the live
                    // tail, where it would double the lines.
                    let head = *head_rx.borrow();
                    if head.saturating_sub(last) >= BEHIND && last < self.to {
                        self.heartbeat(separator, head, last).await?;
                    }
                } else if last_sent.elapsed() >= interval {
                    self.heartbeat(separator, head, last).await?;
                    last_sent = Instant::now();
                }
                continue;
            }
            tokio::select! {
                changed = head_rx.changed() => if changed.is_err() { return Ok(()) },
                () = tokio::time::sleep_until(last_sent + interval) => {
                    let head = *head_rx.borrow();
                    self.heartbeat(separator, head, (self.next - 1).min(head)).await?;
                    last_sent = Instant::now();
                }
                () = self.tx.closed() => return Ok(()),
                () = shutdown.cancelled() => return Ok(()),
                () = &mut expiry => return Err("the reader's token expired".into()),
            }
        }
    }

    async fn heartbeat(&self, separator: u8, head: u64, seen: u64) -> Result<(), String> {
        let mut line = serde_json::to_vec(&StreamLine::Heartbeat { head, seen }).map_err(|e| e.to_string())?;
        line.push(separator);
        self.send(Bytes::from(line)).await
    }

    /// Hands `chunk` to the consumer, or cuts it off if it takes nothing
    /// for the stall time.
    async fn send(&self, chunk: Bytes) -> Result<(), String> {
        let stall = self.state.config.stream_stall;
        tokio::select! {
            r = self.tx.send(chunk) => r.map_err(|_| "the consumer went away".to_string()),
            () = self.state.shutdown.cancelled() => Err("shutting down".into()),
            () = tokio::time::sleep(stall) => {
                self.state.metrics.stalled_consumers.fetch_add(1, Relaxed);
                tracing::info!(
                    next = self.next, stall_seconds = stall.as_secs_f64(),
                    "cutting off a stream consumer that stopped reading"
                );
                self.cut.cancel();
                // Free what waits for it now, not when its connection ends.
                let mut rx = lock(&self.rx);
                rx.close();
                while rx.try_recv().is_ok() {}
                Err("the consumer stopped reading".into())
            }
        }
    }
}
