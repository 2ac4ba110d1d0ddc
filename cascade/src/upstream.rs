//! Following one upstream view through its public stream
//! (`/views/{name}/stream`, a WebSocket), keeping a replica of its state.
//!
//! The replica starts from the stream's snapshot and moves on with each
//! patch, applied with [`nodb_shared::patch::apply`]. On a dropped
//! connection the follower reconnects with back-off and `since` = the
//! replica's seq, so the upstream sends only what was missed (or, if it
//! cannot, a snapshot). A message it cannot read, a patch that does not
//! start right after the replica's seq, or one that does not apply means
//! the replica can no longer be trusted: the follower logs it and resyncs
//! from a snapshot (reconnects without `since`); until then the cascade
//! keeps serving the state of the last good replica. A connection silent
//! for longer than the idle timeout (data views ping every 15 s) is
//! dropped and reopened.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use json_patch::PatchOperation;
use nodb_shared::Tree;
use nodb_shared::patch::apply;
use nodb_shared::protocol::{ServerMessage, Sources};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

/// The `host:port` and path prefix (without slashes at either end) of an
/// upstream's base URL, `http://HOST:PORT[/PREFIX]`.
///
/// `None` when the URL is not of that form.
pub fn parse_base_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let port_ok = authority.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !port_ok || authority.contains(['?', '#', '@']) || path.contains(['?', '#']) {
        return None;
    }
    Some((authority.to_string(), path.trim_matches('/').to_string()))
}

/// What a cascade knows of one upstream: for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct UpstreamStatus {
    /// The upstream view's name.
    pub name: String,
    /// Its server's base URL.
    pub url: String,
    /// Whether the stream is open.
    pub connected: AtomicBool,
    /// Whether the replica has had a state.
    pub has_state: AtomicBool,
    /// The seq of the replica.
    pub seq: AtomicU64,
    /// Snapshot and patch messages applied.
    pub messages: AtomicU64,
    /// Times the stream was opened.
    pub connects: AtomicU64,
    /// Times the replica was resynced from a snapshot after bad data.
    pub resyncs: AtomicU64,
    /// The upstream's own `sources`, when it is a cascade.
    pub sources: Mutex<Option<Sources>>,
    /// The latest problem, for people.
    pub last_error: Mutex<Option<String>>,
}

impl UpstreamStatus {
    /// The status of upstream `name` at `url`.
    pub fn new(name: &str, url: &str) -> UpstreamStatus {
        UpstreamStatus { name: name.to_string(), url: url.trim_end_matches('/').to_string(), ..Default::default() }
    }

    fn problem(&self, text: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }
}

/// A change of one upstream's replica, for the cascade.
#[derive(Debug)]
pub(crate) struct Event {
    /// Which upstream, by its index in the cascade's list.
    pub upstream: usize,
    /// The replica's new seq.
    pub seq: u64,
    /// The replica's new state.
    pub state: Tree,
    /// How it got there.
    pub change: EventChange,
}

/// How a replica changed.
#[derive(Debug)]
pub(crate) enum EventChange {
    /// By these operations.
    Patched(Vec<PatchOperation>),
    /// Replaced by a snapshot.
    Replaced,
}

/// How a session with the upstream ended.
enum Ended {
    Shutdown,
    /// The connection closed or failed: resume with `since`.
    Dropped(String),
    /// The upstream sent something the replica cannot take: resync.
    BadData(String),
}

type Socket = WebSocketStream<TcpStream>;

/// Follows `status.name` at `status.url` until `shutdown`, sending each
/// change of the replica to `events` (waiting when the cascade is busy, so
/// the upstream coalesces for it).
pub(crate) async fn follow(
    index: usize,
    status: Arc<UpstreamStatus>,
    events: mpsc::Sender<Event>,
    (idle_timeout, resume_grace): (Duration, Duration),
    shutdown: CancellationToken,
) {
    let Some((authority, prefix)) = parse_base_url(&status.url) else {
        tracing::error!(url = %status.url, "not an upstream URL");
        return;
    };
    let path = format!(
        "{}/views/{}/stream",
        if prefix.is_empty() { String::new() } else { format!("/{prefix}") },
        status.name
    );
    let mut replica: Option<(u64, Tree)> = None;
    let mut resume = true;
    // Since when the upstream has refused to resume from the replica's seq.
    let mut refused_since: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let since = if resume { replica.as_ref().map(|r| r.0) } else { None };
        let target = match since {
            Some(s) => format!("ws://{authority}{path}?since={s}"),
            None => format!("ws://{authority}{path}"),
        };
        let connected = tokio::select! {
            c = connect(&authority, &target) => c,
            () = shutdown.cancelled() => return,
        };
        let mut wait = backoff;
        match connected {
            Ok(mut ws) => {
                status.connected.store(true, Relaxed);
                status.connects.fetch_add(1, Relaxed);
                tracing::info!(upstream = %status.name, url = %target, "following the upstream view");
                let mut session = Session { index, status: &status, events: &events, replica: &mut replica, got: 0 };
                let ended = session.run(&mut ws, since.is_none(), idle_timeout, &shutdown).await;
                let got = session.got;
                status.connected.store(false, Relaxed);
                if got > 0 {
                    backoff = Duration::from_millis(100);
                    wait = backoff;
                    refused_since = None;
                }
                match ended {
                    Ended::Shutdown => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        return;
                    }
                    Ended::Dropped(reason) => {
                        tracing::warn!(upstream = %status.name, %reason, retry_in = ?wait, "the upstream stream ended; resuming");
                        status.problem(reason);
                        resume = true;
                    }
                    Ended::BadData(reason) => {
                        tracing::error!(upstream = %status.name, %reason, "bad data from the upstream; resyncing it from a snapshot");
                        status.resyncs.fetch_add(1, Relaxed);
                        status.problem(reason);
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        // No `since`: a snapshot. (Soon if the upstream had
                        // sent good data first, else with back-off.)
                        resume = false;
                    }
                }
            }
            Err(Refused { status: code, body }) if since.is_some() => {
                // A data view refuses a `since` it has not reached. Most
                // likely it restarted and is replaying its history: a
                // snapshot now could be older than the replica, and the
                // cascade would go back in time. So wait for it to catch
                // up; only if it never does (it lost seqs) take a fresh
                // snapshot.
                status.problem(format!("refused to resume (HTTP {code}): {body}"));
                let first = *refused_since.get_or_insert_with(tokio::time::Instant::now);
                if first.elapsed() >= resume_grace {
                    tracing::warn!(upstream = %status.name, code, %body, waited = ?first.elapsed(), "the upstream still refuses to resume; taking a fresh snapshot");
                    refused_since = None;
                    resume = false;
                    continue;
                }
                tracing::info!(upstream = %status.name, code, %body, retry_in = ?wait, "the upstream has not reached the replica's seq (recovering?); waiting for it");
            }
            Err(e) => {
                let text = e.to_string();
                tracing::warn!(upstream = %status.name, url = %target, error = %text, retry_in = ?wait, "cannot reach the upstream");
                status.problem(text);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

struct Session<'a> {
    index: usize,
    status: &'a UpstreamStatus,
    events: &'a mpsc::Sender<Event>,
    replica: &'a mut Option<(u64, Tree)>,
    got: u64,
}

impl Session<'_> {
    async fn run(
        &mut self,
        ws: &mut Socket,
        expect_snapshot: bool,
        idle: Duration,
        shutdown: &CancellationToken,
    ) -> Ended {
        let mut expect_snapshot = expect_snapshot;
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout(idle, ws.next()) => n,
                () = shutdown.cancelled() => return Ended::Shutdown,
            };
            let text = match next {
                Err(_) => return Ended::Dropped(format!("nothing heard for {idle:?}")),
                Ok(None) => return Ended::Dropped("the stream closed".into()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ended::Dropped(format!("the upstream closed the stream ({frame:?})"));
                }
                Ok(Some(Err(e))) => return Ended::Dropped(e.to_string()),
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue, // pings (answered by tungstenite), pongs
            };
            let event = match self.take(text.as_str(), expect_snapshot) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(reason) => return Ended::BadData(reason),
            };
            expect_snapshot = false;
            self.got += 1;
            self.status.messages.fetch_add(1, Relaxed);
            self.status.seq.store(event.seq, Relaxed);
            self.status.has_state.store(true, Relaxed);
            tokio::select! {
                sent = self.events.send(event) => if sent.is_err() { return Ended::Shutdown },
                () = shutdown.cancelled() => return Ended::Shutdown,
            }
        }
    }

    /// Applies one message to the replica: the event to send, nothing (a
    /// message that changes no state), or why the replica must resync.
    fn take(&mut self, text: &str, expect_snapshot: bool) -> Result<Option<Event>, String> {
        let message: ServerMessage =
            serde_json::from_str(text).map_err(|e| format!("a malformed message ({e}): {}", cut(text)))?;
        let (seq, state, change, sources) = match message {
            ServerMessage::Snapshot { seq, state, sources } => (seq, state, EventChange::Replaced, sources),
            ServerMessage::Patch { from, seq, ops, sources } => {
                let Some((have, state)) = self.replica.as_ref().filter(|_| !expect_snapshot) else {
                    return Err(format!("a patch for seq {seq} before the snapshot the stream starts with"));
                };
                let first = from.unwrap_or(seq);
                if have.checked_add(1) != Some(first) || seq < first {
                    return Err(format!("a patch for seqs {first}..={seq} when the replica is at seq {have}"));
                }
                let next = apply(state, &ops).map_err(|e| format!("the patch for seq {seq} does not apply: {e}"))?;
                (seq, next, EventChange::Patched(ops.0), sources)
            }
            ServerMessage::Error { code, message, .. } => {
                tracing::warn!(upstream = %self.status.name, %code, %message, "the upstream sent an error");
                return Ok(None);
            }
            _ => return Ok(None),
        };
        if let Some(s) = sources {
            *self.status.sources.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
        }
        *self.replica = Some((seq, state.clone()));
        Ok(Some(Event { upstream: self.index, seq, state, change }))
    }
}

fn cut(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Failed(String),
    #[error("HTTP {status}: {body}")]
    Refused { status: u16, body: String },
}

use ConnectError::Refused;

async fn connect(authority: &str, url: &str) -> Result<Socket, ConnectError> {
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(authority))
        .await
        .map_err(|_| ConnectError::Failed(format!("connecting to {authority} timed out")))?
        .map_err(|e| ConnectError::Failed(format!("cannot connect to {authority}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::client_async(url, tcp))
        .await
        .map_err(|_| ConnectError::Failed(format!("the WebSocket handshake with {url} timed out")))?;
    match handshake {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().map(|b| cut(&String::from_utf8_lossy(b)).to_string()).unwrap_or_default();
            Err(Refused { status: resp.status().as_u16(), body })
        }
        Err(e) => Err(ConnectError::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base_urls() {
        assert_eq!(parse_base_url("http://127.0.0.1:7402"), Some(("127.0.0.1:7402".into(), String::new())));
        assert_eq!(parse_base_url("http://h:1/base/"), Some(("h:1".into(), "base".into())));
        assert_eq!(parse_base_url("http://[::1]:80"), Some(("[::1]:80".into(), String::new())));
        for bad in ["https://h:1", "http://h", "http://:1", "http://h:x", "h:1", "http://h:1/?x", "http://u@h:1"] {
            assert!(parse_base_url(bad).is_none(), "{bad}");
        }
    }

    fn session_take(
        replica: &mut Option<(u64, Tree)>,
        text: &str,
        expect_snapshot: bool,
    ) -> Result<Option<u64>, String> {
        let status = UpstreamStatus::new("v", "http://h:1");
        let (tx, _rx) = mpsc::channel(1);
        let mut s = Session { index: 0, status: &status, events: &tx, replica, got: 0 };
        s.take(text, expect_snapshot).map(|e| e.map(|e| e.seq))
    }

    #[test]
    fn the_replica_follows_snapshots_and_contiguous_patches_and_refuses_the_rest() {
        let mut r = None;
        let patch = |from: Option<u64>, seq: u64, ops: serde_json::Value| {
            let mut m = json!({"type": "patch", "seq": seq, "ops": ops});
            if let Some(f) = from {
                m["from"] = json!(f);
            }
            m.to_string()
        };
        assert!(session_take(&mut r, &patch(None, 1, json!([])), true).unwrap_err().contains("before the snapshot"));
        assert_eq!(session_take(&mut r, r#"{"type":"snapshot","seq":4,"state":{"a":1}}"#, true), Ok(Some(4)));
        let add = json!([{"op": "add", "path": "/b", "value": 2}]);
        assert_eq!(session_take(&mut r, &patch(Some(5), 7, add.clone()), false), Ok(Some(7)));
        assert_eq!(r.as_ref().unwrap().1, Tree::from(json!({"a": 1, "b": 2})));
        assert!(session_take(&mut r, &patch(None, 9, json!([])), false).unwrap_err().contains("at seq 7")); // a gap
        let bad = json!([{"op": "remove", "path": "/nothing"}]);
        assert!(session_take(&mut r, &patch(None, 8, bad), false).unwrap_err().contains("does not apply"));
        assert!(session_take(&mut r, "{not json", false).unwrap_err().contains("malformed"));
        assert_eq!(session_take(&mut r, r#"{"type":"rejected","seq":3,"id":"c:1","reason":"x"}"#, false), Ok(None));
        // Nothing bad was applied.
        assert_eq!(r.as_ref().unwrap().0, 7);
    }
}
