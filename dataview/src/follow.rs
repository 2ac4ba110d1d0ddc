//! Following the chronicler: its action stream over a WebSocket
//! (`/actions?from=N`), from the seq after the views' own, applied in
//! order; on any failure, reconnect with back-off and resume at the right
//! seq.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::StreamExt;
use nodb_shared::protocol::CommittedAction;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// What the follower knows about the chronicler.
#[derive(Debug, Default)]
pub struct FollowStatus {
    /// The chronicler's head, from its heartbeats and actions.
    pub head: AtomicU64,
    /// Whether the stream is connected.
    pub connected: AtomicBool,
    /// Times the stream was (re)connected.
    pub connects: AtomicU64,
}

/// The `host:port` and path prefix of an `http://` URL.
///
/// # Errors
/// A sentence saying what is wrong with the URL.
pub fn parse_http_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("the chronicler URL must start with http:// (got {url:?})"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    if authority.is_empty() || !authority.contains(':') {
        return Err(format!("the chronicler URL needs a host and port, like http://127.0.0.1:7401 (got {url:?})"));
    }
    Ok((authority.to_string(), path.trim_end_matches('/').to_string()))
}

/// How many snapshots may wait for the snapshotter before the follower
/// pauses.
const MAX_PENDING_SNAPSHOTS: usize = 4;

/// Follows the chronicler at `url` until `shutdown`.
pub async fn follow(hub: Arc<Hub>, url: String, status: Arc<FollowStatus>, shutdown: CancellationToken) {
    let (authority, prefix) = match parse_http_url(&url) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let from = hub.current_seq() + 1;
        let ws_url = format!(
            "ws://{authority}/{}actions?from={from}",
            if prefix.is_empty() { String::new() } else { format!("{prefix}/") }
        );
        let connected = tokio::select! {
            r = connect(&authority, &ws_url) => r,
            () = shutdown.cancelled() => return,
        };
        match connected {
            Ok(mut ws) => {
                status.connected.store(true, Relaxed);
                status.connects.fetch_add(1, Relaxed);
                tracing::info!(from, chronicler = %url, "following the chronicler");
                backoff = Duration::from_millis(100);
                let mut progress = Progress::new(hub.current_seq());
                // Far behind the head, actions are gathered into batches
                // and replayed view by view (see `crate::batch`); a batch
                // is applied when full, when the head comes near, or when
                // the stream pauses. On a reconnect an unapplied batch is
                // dropped: the stream resumes after the last applied seq.
                let mut batch: Vec<CommittedAction> = Vec::new();
                loop {
                    let msg = tokio::select! {
                        m = ws.next() => Some(m),
                        () = tokio::time::sleep(Duration::from_millis(20)), if !batch.is_empty() => None,
                        () = shutdown.cancelled() => return,
                    };
                    let Some(msg) = msg else {
                        if !apply_batch(&hub, &mut batch) {
                            break;
                        }
                        continue;
                    };
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the chronicler stream failed");
                            break;
                        }
                        Some(Ok(_)) => continue,
                    };
                    let action = match read_line(&status, text.as_str()) {
                        Line::Heartbeat(_) => continue,
                        Line::Unreadable => break,
                        Line::Action(a) => a,
                    };
                    if action.seq <= hub.current_seq() + batch.len() as u64 {
                        continue; // already applied (a resumed stream may overlap)
                    }
                    // Checkpoints the snapshotter has not written yet hold
                    // their states: past a few, wait for it.
                    while hub.pending_snapshots() >= MAX_PENDING_SNAPSHOTS {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(10)) => {}
                            () = shutdown.cancelled() => return,
                        }
                    }
                    let margin = (hub.history_len() + crate::batch::BATCH) as u64;
                    let far_behind = status.head.load(Relaxed) > action.seq + margin;
                    if far_behind || !batch.is_empty() {
                        batch.push(action);
                        if (batch.len() >= crate::batch::BATCH || !far_behind) && !apply_batch(&hub, &mut batch) {
                            break;
                        }
                    } else if let Err(e) = hub.apply(&action) {
                        tracing::error!(error = %e, "the stream skipped a seq; reconnecting to resume");
                        break;
                    }
                    progress.report(hub.current_seq(), status.head.load(Relaxed));
                }
                status.connected.store(false, Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, chronicler = %url, retry_in = ?backoff, "cannot reach the chronicler"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Progress lines while a long history is replayed.
struct Progress {
    started: std::time::Instant,
    from: u64,
    last: std::time::Instant,
    replaying: bool,
}

impl Progress {
    fn new(from: u64) -> Progress {
        let now = std::time::Instant::now();
        Progress { started: now, from, last: now, replaying: false }
    }

    fn report(&mut self, seq: u64, head: u64) {
        if seq < head && self.last.elapsed() >= Duration::from_secs(2) {
            self.last = std::time::Instant::now();
            self.replaying = true;
            let rate = (seq - self.from) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                seq,
                head,
                rate = rate as u64,
                "replaying history ({:.0}%)",
                100.0 * seq as f64 / head as f64
            );
        } else if self.replaying && seq >= head {
            self.replaying = false;
            tracing::info!(seq, took = ?self.started.elapsed(), "caught up with the chronicler");
        }
    }
}

/// A WebSocket to `ws_url` over a TCP connection to `authority`, with
/// Nagle's algorithm off.
///
/// # Errors
/// The connection's or the handshake's error, as a sentence.
pub(crate) async fn connect(
    authority: &str,
    ws_url: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (ws, _) = tokio_tungstenite::client_async(ws_url, tcp).await.map_err(|e| e.to_string())?;
    Ok(ws)
}

/// One line of the chronicler's stream.
pub(crate) enum Line {
    /// A heartbeat, with the head it reports.
    Heartbeat(Option<u64>),
    /// The next committed action.
    Action(CommittedAction),
    /// A line this view cannot read at all: reconnect.
    Unreadable,
}

/// Reads one line of the stream, recording the head it shows.
fn read_line(status: &FollowStatus, text: &str) -> Line {
    let line = parse_line(text);
    match &line {
        Line::Heartbeat(Some(head)) => status.head.fetch_max(*head, Relaxed),
        Line::Action(a) => status.head.fetch_max(a.seq, Relaxed),
        _ => 0,
    };
    line
}

/// Reads one line of the stream. An action whose payload cannot be read
/// keeps its seq (see below), so every reader of the history — the
/// follower and the replays of [`crate::history`] — reaches the same states.
pub(crate) fn parse_line(text: &str) -> Line {
    if text.starts_with("{\"heartbeat\"") {
        let head = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v["heartbeat"]["head"].as_u64());
        return Line::Heartbeat(head);
    }
    let action: CommittedAction = match serde_json::from_str(text) {
        Ok(a) => a,
        Err(e) => match envelope(text) {
            // The view must move on, and every seq must get its update: an
            // action whose payload cannot be read reaches the reducers with
            // a null payload (which they reject), and the error is logged.
            Some(a) => {
                tracing::error!(seq = a.seq, id = %a.id, error = %e, "an action's payload cannot be read; applying it without one");
                a
            }
            None => {
                tracing::error!(error = %e, "the chronicler sent a line this view cannot read; reconnecting");
                return Line::Unreadable;
            }
        },
    };
    Line::Action(action)
}

/// Applies and empties `batch`; `false` to reconnect.
fn apply_batch(hub: &Hub, batch: &mut Vec<CommittedAction>) -> bool {
    let result = hub.apply_batch(batch);
    batch.clear();
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "the stream skipped a seq; reconnecting to resume");
            false
        }
    }
}

/// The envelope of a committed action whose payload or meta cannot be read.
fn envelope(text: &str) -> Option<CommittedAction> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        seq: u64,
        ts: u64,
        id: String,
        #[serde(rename = "type")]
        kind: String,
    }
    let e: Envelope = serde_json::from_str(text).ok()?;
    Some(CommittedAction {
        seq: e.seq,
        ts: e.ts,
        id: e.id,
        kind: e.kind,
        payload: serde_json::Value::Null,
        meta: None,
        client: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_payload_keeps_its_seq() {
        let a = envelope(r#"{"seq":5,"ts":1,"id":"c:1","type":"t","payload":[1e400]}"#).unwrap();
        assert_eq!((a.seq, a.kind.as_str(), a.payload.clone()), (5, "t", serde_json::Value::Null));
        assert!(
            serde_json::from_str::<CommittedAction>(r#"{"seq":5,"ts":1,"id":"c:1","type":"t","payload":[1e400]}"#)
                .is_err()
        );
        assert!(envelope("{}").is_none());
    }

    #[test]
    fn urls() {
        assert_eq!(parse_http_url("http://127.0.0.1:7401").unwrap(), ("127.0.0.1:7401".into(), String::new()));
        assert_eq!(parse_http_url("http://h:1/base/").unwrap(), ("h:1".into(), "base".into()));
        assert!(parse_http_url("https://h:1").is_err());
        assert!(parse_http_url("http://nohostport").is_err());
    }
}
