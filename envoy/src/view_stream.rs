//! What an envoy asks of a data view, through its public protocol: a
//! view's state at a seq (`GET /views/{name}?at=N`) and its stream
//! (`/views/{name}/stream?since=N[&exact=true]`, a WebSocket).

use futures_util::StreamExt;
use nodb_shared::Tree;
use nodb_shared::protocol::ServerMessage;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::effects::error_chain;
use crate::log_client::LogClientError;

/// A message of the view stream that changes the state.
#[derive(Debug)]
pub enum ViewMessage {
    /// The whole state at `seq`.
    Snapshot {
        /// Its seq.
        seq: u64,
        /// The state.
        state: Tree,
    },
    /// The patch from the previous message's seq to `seq` (covering
    /// `from..=seq` when `from` is given).
    Patch {
        /// The first seq covered, when more than one.
        from: Option<u64>,
        /// The last seq covered.
        seq: u64,
        /// RFC 6902 operations.
        ops: json_patch::Patch,
    },
}

/// One view of a data view.
#[derive(Clone, Debug)]
pub struct ViewClient {
    base: String,
    view: String,
    http: reqwest::Client,
}

fn unreachable(url: &str, reason: String) -> LogClientError {
    LogClientError::Unreachable { url: url.to_string(), reason }
}

impl ViewClient {
    /// The view `view` of the data view at `base` (`http://host:port`).
    pub fn new(base: &str, view: &str, http: reqwest::Client) -> ViewClient {
        ViewClient { base: base.trim_end_matches('/').to_string(), view: view.to_string(), http }
    }

    /// The view's state at seq `at`.
    ///
    /// # Errors
    /// If the data view cannot be asked, or is not yet at `at`.
    pub async fn state_at(&self, at: u64) -> Result<Tree, LogClientError> {
        let url = format!("{}/views/{}?at={at}", self.base, self.view);
        let resp = self.http.get(&url).send().await.map_err(|e| unreachable(&url, error_chain(&e)))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.text().await.unwrap_or_default();
            return Err(LogClientError::Status { url, status, body });
        }
        #[derive(serde::Deserialize)]
        struct At {
            state: Tree,
        }
        let at: At = resp.json().await.map_err(|e| unreachable(&url, error_chain(&e)))?;
        Ok(at.state)
    }

    /// Opens the stream: a snapshot without `since`, else the updates after
    /// it.
    ///
    /// # Errors
    /// If the data view refuses or cannot be reached (a data view still
    /// recovering refuses a `since` it has not reached yet).
    pub async fn connect(&self, since: Option<u64>) -> Result<ViewSocket, LogClientError> {
        self.open(since, false).await
    }

    /// Opens the exact stream (`exact=true`): like [`ViewClient::connect`],
    /// but one message per seq, never combined, however far behind.
    ///
    /// # Errors
    /// As for [`ViewClient::connect`].
    pub async fn connect_exact(&self, since: Option<u64>) -> Result<ViewSocket, LogClientError> {
        self.open(since, true).await
    }

    async fn open(&self, since: Option<u64>, exact: bool) -> Result<ViewSocket, LogClientError> {
        let authority = self
            .base
            .strip_prefix("http://")
            .ok_or_else(|| unreachable(&self.base, "the data view's URL must start with http://".into()))?;
        let (authority, prefix) = authority.split_once('/').unwrap_or((authority, ""));
        let mut path = format!("/views/{}/stream", self.view);
        if !prefix.is_empty() {
            path = format!("/{prefix}{path}");
        }
        let mut query = Vec::new();
        if let Some(since) = since {
            query.push(format!("since={since}"));
        }
        if exact {
            query.push("exact=true".to_string());
        }
        if !query.is_empty() {
            path.push_str(&format!("?{}", query.join("&")));
        }
        let url = format!("ws://{authority}{path}");
        let tcp = TcpStream::connect(authority).await.map_err(|e| unreachable(&url, e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (ws, _) =
            tokio_tungstenite::client_async(url.as_str(), tcp).await.map_err(|e| unreachable(&url, error_chain(&e)))?;
        Ok(ViewSocket { ws, url })
    }
}

/// An open view stream.
pub struct ViewSocket {
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    url: String,
}

impl ViewSocket {
    /// The next snapshot or patch (other messages are skipped).
    ///
    /// # Errors
    /// When the stream ends or sends something that is not the protocol.
    pub async fn next_message(&mut self) -> Result<ViewMessage, LogClientError> {
        loop {
            let text = match self.ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None => return Err(unreachable(&self.url, "the stream closed".into())),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(unreachable(&self.url, error_chain(&e))),
            };
            let message: ServerMessage = serde_json::from_str(text.as_str())
                .map_err(|e| unreachable(&self.url, format!("not a view message ({e}): {}", text.as_str())))?;
            match message {
                ServerMessage::Snapshot { seq, state, .. } => return Ok(ViewMessage::Snapshot { seq, state }),
                ServerMessage::Patch { from, seq, ops, .. } => return Ok(ViewMessage::Patch { from, seq, ops }),
                _ => continue,
            }
        }
    }
}
