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
                loop {
                    let msg = tokio::select! {
                        m = ws.next() => m,
                        () = shutdown.cancelled() => return,
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
                    if !handle(&hub, &status, text.as_str()) {
                        break;
                    }
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

async fn connect(
    authority: &str,
    ws_url: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (ws, _) = tokio_tungstenite::client_async(ws_url, tcp).await.map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Applies one line of the stream; `false` to reconnect.
fn handle(hub: &Hub, status: &FollowStatus, text: &str) -> bool {
    if text.starts_with("{\"heartbeat\"") {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
            && let Some(head) = v["heartbeat"]["head"].as_u64()
        {
            status.head.fetch_max(head, Relaxed);
        }
        return true;
    }
    let action: CommittedAction = match serde_json::from_str(text) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "the chronicler sent an action this view cannot read; reconnecting");
            return false;
        }
    };
    status.head.fetch_max(action.seq, Relaxed);
    if action.seq <= hub.current_seq() {
        return true; // already applied (a resumed stream may overlap)
    }
    match hub.apply(&action) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "the stream skipped a seq; reconnecting to resume");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_http_url("http://127.0.0.1:7401").unwrap(), ("127.0.0.1:7401".into(), String::new()));
        assert_eq!(parse_http_url("http://h:1/base/").unwrap(), ("h:1".into(), "base".into()));
        assert!(parse_http_url("https://h:1").is_err());
        assert!(parse_http_url("http://nohostport").is_err());
    }
}
