//! [`Chronicler`]: the chronicler's public API as a client — dispatch,
//! the action stream, a client's position, the head, ranges, and the
//! dispatch socket (raw, or as a [`DispatchSocket`]).

use std::time::Duration;

use nodb_shared::protocol::{Ack, Acks, Action, CommittedAction, StreamLine};
use tokio_util::sync::CancellationToken;

use crate::action_stream::ActionStream;
use crate::dispatch_socket::DispatchSocket;
use crate::error::Error;
use crate::http::{Http, protocol, refusal};
use crate::service_url::ServiceUrl;
use crate::websocket::{WebSocket, WsConnector};

/// A client of one chronicler.
#[derive(Clone, Debug)]
pub struct Chronicler {
    base: ServiceUrl,
    http: Http,
    ws: WsConnector,
}

/// Where a client stopped: the number and seq of its last durable action
/// (`GET /clients/{client}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Position {
    /// The number of its last action (`n` of `client:n`).
    pub last: u64,
    /// That action's seq.
    pub seq: u64,
}

/// A seq of the log and the chain hash after it (`GET /head`): kept
/// elsewhere, it anchors the history before it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Anchor {
    /// The seq.
    pub seq: u64,
    /// The chain hash after it, hex.
    pub hash: String,
    /// The log's head when asked.
    pub head: u64,
}

impl Chronicler {
    /// A client of the chronicler at `base` (sharing the process's default
    /// HTTP client, made on first use).
    pub fn new(base: ServiceUrl) -> Chronicler {
        Chronicler { base, http: Http::default(), ws: WsConnector::default() }
    }

    /// A client of the chronicler at `base` sharing `http` (its connection
    /// pool and settings).
    pub fn with_http(base: ServiceUrl, http: reqwest::Client) -> Chronicler {
        Chronicler { base, http: Http::new(Some(http)), ws: WsConnector::default() }
    }

    /// The same, opening its WebSockets with `ws`.
    pub fn with_ws(mut self, ws: WsConnector) -> Chronicler {
        self.ws = ws;
        self
    }

    /// The chronicler's base URL.
    pub fn url(&self) -> &ServiceUrl {
        &self.base
    }

    /// Appends `actions` as one all-or-nothing batch (`POST /actions`) and
    /// waits until they are durable; re-sends of accepted actions are
    /// acknowledged as duplicates. A `503` or a request that does not get
    /// through is retried with back-off (100 ms doubling to 5 s) until
    /// `cancel`.
    ///
    /// # Errors
    /// [`Error::Refused`] for a refusal (`409 out_of_order` with
    /// [`Error::expected`], `422 invalid_action`, …); [`Error::Cancelled`];
    /// [`Error::Protocol`] for an answer that is not `{"acks": […]}`.
    pub async fn dispatch(&self, actions: &[Action], cancel: &CancellationToken) -> Result<Vec<Ack>, Error> {
        let url = self.base.http("actions");
        let http = self.http.client(url.as_str())?;
        let mut wait = Duration::from_millis(100);
        loop {
            let mut request = http.post(url.clone()).json(actions);
            if let Some(token) = self.base.bearer()? {
                request = request.bearer_auth(token);
            }
            let sent = tokio::select! {
                sent = request.send() => sent,
                () = cancel.cancelled() => return Err(Error::Cancelled),
            };
            match sent {
                Ok(r) if r.status() == 200 => {
                    let acks: Acks = r.json().await.map_err(|e| protocol(url.as_str(), &e))?;
                    return Ok(acks.acks);
                }
                Ok(r) if r.status() != 503 => return Err(refusal(url.as_str(), r).await.into()),
                Ok(_) => tracing::warn!(chronicler = %self.base, "the chronicler cannot take writes now; retrying"),
                Err(e) => tracing::warn!(
                    chronicler = %self.base,
                    error = %crate::error::error_chain(&e),
                    "cannot reach the chronicler to dispatch; retrying"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return Err(Error::Cancelled),
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// The number and seq of `client`'s last durable action; `None` when it
    /// has none.
    ///
    /// # Errors
    /// If the chronicler cannot be asked or refuses.
    pub async fn position(&self, client: &str) -> Result<Option<Position>, Error> {
        let mut url = self.base.http("clients");
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(client);
        }
        let resp = self.http.get(&url, self.base.bearer()?.as_deref()).await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(resp.json().await.map_err(|e| protocol(url.as_str(), &e))?)),
            _ => Err(refusal(url.as_str(), resp).await.into()),
        }
    }

    /// The chain hash at seq `at` (the head when `None`): `GET /head`.
    /// `None` when the log has not reached `at`.
    ///
    /// # Errors
    /// If the chronicler cannot be asked or refuses.
    pub async fn anchor(&self, at: Option<u64>) -> Result<Option<Anchor>, Error> {
        let at = at.map(|s| s.to_string());
        let query: Vec<(&str, &str)> = at.as_deref().map(|a| ("at", a)).into_iter().collect();
        let url = self.base.http_with("head", &query);
        let resp = self.http.get(&url, self.base.bearer()?.as_deref()).await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(resp.json().await.map_err(|e| protocol(url.as_str(), &e))?)),
            _ => Err(refusal(url.as_str(), resp).await.into()),
        }
    }

    /// The log's head, from the first heartbeat of a stream that starts
    /// past it.
    ///
    /// # Errors
    /// If the chronicler cannot be asked, or starts with something else.
    pub async fn head(&self) -> Result<u64, Error> {
        let from = (1u64 << 62).to_string();
        let url = self.base.http_with("actions", &[("from", &from)]);
        let mut resp = self.http.get(&url, self.base.bearer()?.as_deref()).await?;
        if resp.status() != 200 {
            return Err(refusal(url.as_str(), resp).await.into());
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| Error::unreachable(url.as_str(), &e))? {
            buf.extend_from_slice(&chunk);
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(&buf[..nl]);
                return match StreamLine::parse(&line) {
                    Ok(StreamLine::Heartbeat { head, .. }) => Ok(head),
                    Ok(other) => Err(Error::Protocol {
                        url: url.to_string(),
                        reason: format!("the stream began with seq {:?}, not a heartbeat", other.seq()),
                    }),
                    Err(e) => Err(Error::Protocol { url: url.to_string(), reason: e.to_string() }),
                };
            }
        }
        Err(Error::Ended { url: url.to_string(), why: "no heartbeat came before the end".into() })
    }

    /// The committed actions `from..=to` whose type starts with one of
    /// `types` (all when empty), waiting for `to` if it is not written yet.
    /// An action whose payload cannot be read comes with a `null` payload.
    ///
    /// # Errors
    /// If the chronicler cannot be asked or refuses, or sends a line that is
    /// not the protocol.
    pub async fn range(&self, from: u64, to: u64, types: &[&str]) -> Result<Vec<CommittedAction>, Error> {
        let query = query(from, Some(to), types);
        let url = self.base.http_with("actions", &pairs(&query));
        let resp = self.http.get(&url, self.base.bearer()?.as_deref()).await?;
        if resp.status() != 200 {
            return Err(refusal(url.as_str(), resp).await.into());
        }
        let text = resp.text().await.map_err(|e| Error::unreachable(url.as_str(), &e))?;
        let mut actions = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match StreamLine::parse(line) {
                Ok(StreamLine::Action(a) | StreamLine::Unreadable { action: a, .. }) => actions.push(a),
                Ok(StreamLine::Heartbeat { .. }) => {}
                Err(e) => return Err(Error::Protocol { url: url.to_string(), reason: e.to_string() }),
            }
        }
        Ok(actions)
    }

    /// The action stream over a WebSocket: the committed actions from
    /// `from` (to `to`, then it ends; or on into the live tail) whose type
    /// starts with one of `types` (all when empty), with heartbeats.
    ///
    /// # Errors
    /// If the stream cannot be opened.
    pub async fn stream(&self, from: u64, to: Option<u64>, types: &[&str]) -> Result<ActionStream, Error> {
        let mut query = query(from, to, types);
        // Several lines per message: far behind, a message per chunk of
        // the log rather than per action.
        query.push(("lines", "many".to_string()));
        let url = self.base.ws("actions", &pairs(&query));
        let ws = self.ws.connect_with_token(&url, self.base.bearer()?.as_deref()).await?;
        Ok(ActionStream::new(ws, url.to_string()))
    }

    /// A WebSocket to the chronicler's `/ws`, where each text message
    /// `{"type": "dispatch", "action": {…}}` is answered by an `ack` or an
    /// `error` message (with `expected` for `out_of_order`).
    ///
    /// # Errors
    /// If the socket cannot be opened.
    pub async fn dispatch_socket(&self) -> Result<WebSocket, Error> {
        Ok(self.ws.connect_with_token(&self.base.ws("ws", &[]), self.base.bearer()?.as_deref()).await?)
    }

    /// The chronicler's `/ws` as a [`DispatchSocket`]: send actions without
    /// waiting, read each one's typed [`Reply`](crate::Reply).
    ///
    /// # Errors
    /// If the socket cannot be opened.
    pub async fn dispatcher(&self) -> Result<DispatchSocket, Error> {
        let url = self.base.ws("ws", &[]);
        let ws = self.ws.connect_with_token(&url, self.base.bearer()?.as_deref()).await?;
        Ok(DispatchSocket::new(ws, &url))
    }
}

/// The query of `GET /actions`.
fn query<'a>(from: u64, to: Option<u64>, types: &[&str]) -> Vec<(&'a str, String)> {
    let mut q = vec![("from", from.to_string())];
    if let Some(to) = to {
        q.push(("to", to.to_string()));
    }
    if !types.is_empty() {
        q.push(("types", types.join(",")));
    }
    q
}

/// `query` borrowed, as [`ServiceUrl`] takes it.
fn pairs<'a>(query: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    query.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
