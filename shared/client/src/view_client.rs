//! [`ViewClient`]: one view of a data view (or cascade) — its state now or
//! at a seq (`GET /views/{name}[?at=N]`) and its stream
//! (`/views/{name}/stream`, a WebSocket, as a [`ViewStream`]).

use nodb_shared::protocol::{ClientMessage, ServerMessage, ViewState};
use tokio::time::Instant;
use url::Url;

use crate::error::Error;
use crate::failover::ReadyAnswer;
use crate::http::{Http, protocol, refusal};
use crate::service_url::ServiceUrl;
use crate::websocket::{Socket, WsConnector};

/// One view of the service at a base URL.
#[derive(Clone, Debug)]
pub struct ViewClient {
    base: ServiceUrl,
    view: String,
    http: Http,
    ws: WsConnector,
}

/// What a stream asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// The seq the client already has: it gets what came after (or a
    /// snapshot if the server cannot say). `None`: a snapshot first.
    pub since: Option<u64>,
    /// One `patch` message per seq, never combined (`exact=true`).
    pub exact: bool,
    /// The client id whose rejected actions to be told of (`client=ID`).
    pub client: Option<String>,
    /// With `since`: the version named by the snapshot the client's state
    /// began from (`version=V`), so a data view running other code sends
    /// a snapshot instead of a patch from a state the client never had.
    pub version: Option<String>,
}

impl ViewClient {
    /// View `view` of the service at `base` (sharing the process's default
    /// HTTP client, made on first use).
    pub fn new(base: ServiceUrl, view: &str) -> ViewClient {
        ViewClient { base, view: view.to_string(), http: Http::default(), ws: WsConnector::default() }
    }

    /// View `view` of the service at `base`, sharing `http`.
    pub fn with_http(base: ServiceUrl, view: &str, http: reqwest::Client) -> ViewClient {
        ViewClient { base, view: view.to_string(), http: Http::new(Some(http)), ws: WsConnector::default() }
    }

    /// The same, opening its streams with `ws`.
    pub fn with_ws(mut self, ws: WsConnector) -> ViewClient {
        self.ws = ws;
        self
    }

    /// The service's base URL.
    pub fn base(&self) -> &ServiceUrl {
        &self.base
    }

    /// The view's name.
    pub fn view(&self) -> &str {
        &self.view
    }

    /// The view's state now.
    ///
    /// # Errors
    /// If the service cannot be asked or refuses (`503` while a cascade
    /// has no state yet).
    pub async fn state(&self) -> Result<ViewState, Error> {
        self.get(self.view_url(&[])).await
    }

    /// The view's state at seq `at`.
    ///
    /// # Errors
    /// If the service cannot be asked or refuses (`400` for a seq it has
    /// not reached, `404` for one a cascade no longer keeps).
    pub async fn state_at(&self, at: u64) -> Result<ViewState, Error> {
        self.get(self.view_url(&[("at", &at.to_string())])).await
    }

    async fn get(&self, url: Url) -> Result<ViewState, Error> {
        let resp = self.http.get(&url, self.base.bearer()?.as_deref()).await?;
        if resp.status() != 200 {
            return Err(refusal(url.as_str(), resp).await.into());
        }
        resp.json().await.map_err(|e| protocol(url.as_str(), &e))
    }

    /// What the service's `GET /ready` says, whatever its status. Asked
    /// without a token: `/ready` needs none.
    ///
    /// # Errors
    /// If the service cannot be asked.
    pub async fn ready(&self) -> Result<ReadyAnswer, Error> {
        let url = self.base.http("ready");
        let resp = self.http.get(&url, None).await?;
        let code = resp.status().as_u16();
        // A body that is not JSON leaves the status alone.
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let status = body.get("status").and_then(serde_json::Value::as_str).map(str::to_string);
        Ok(ReadyAnswer { code, status, seq: body.get("seq").and_then(serde_json::Value::as_u64) })
    }

    fn view_url(&self, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.http_with("views", query);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(&self.view);
        }
        url
    }

    /// The `ws(s)://` URL of the view's stream with `options`.
    pub fn stream_url(&self, options: &StreamOptions) -> Url {
        let since = options.since.map(|s| s.to_string());
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(since) = &since {
            query.push(("since", since));
        }
        if options.exact {
            query.push(("exact", "true"));
        }
        if let Some(client) = &options.client {
            query.push(("client", client));
        }
        if let (Some(_), Some(version)) = (&since, &options.version) {
            query.push(("version", version));
        }
        let mut url = self.base.ws("views", &query);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(&self.view).push("stream");
        }
        url
    }

    /// Opens the view's stream.
    ///
    /// # Errors
    /// If it cannot be opened; a data view still replaying its history
    /// refuses a `since` it has not reached ([`Error::refusal`], `400`).
    pub async fn open(&self, options: &StreamOptions) -> Result<ViewStream, Error> {
        let url = self.stream_url(options);
        let ws = self.ws.connect_with_token(&url, self.base.bearer()?.as_deref()).await?;
        Ok(ViewStream { socket: Socket::new(ws, &url), heard: Instant::now() })
    }
}

/// An open view stream.
#[derive(Debug)]
pub struct ViewStream {
    socket: Socket,
    /// When the last frame (a ping too) came.
    heard: Instant,
}

impl ViewStream {
    /// The stream's URL.
    pub fn url(&self) -> &str {
        self.socket.url()
    }

    /// When the server was last heard from: the last frame received, pings
    /// included (or the opening).
    pub fn heard_at(&self) -> Instant {
        self.heard
    }

    /// The next message. Cancel-safe: a message is never lost when the
    /// future is dropped.
    ///
    /// # Errors
    /// [`Error::Ended`] when the server closed the stream,
    /// [`Error::Unreachable`] when the connection failed,
    /// [`Error::Protocol`] for a message that is not the protocol.
    pub async fn next_message(&mut self) -> Result<ServerMessage, Error> {
        let heard = &mut self.heard;
        self.socket.next("message", || *heard = Instant::now()).await
    }

    /// Sends a message (a dispatch, which the data view relays to the
    /// chronicler; its `ack` or `error` comes back on this stream).
    ///
    /// # Errors
    /// If the connection failed.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), Error> {
        self.socket.send(message).await
    }

    /// Closes the stream, waiting at most a second for the server.
    pub async fn close(&mut self) {
        self.socket.close().await;
    }
}
