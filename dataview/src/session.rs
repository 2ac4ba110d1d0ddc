//! The data view's client sessions on the ordinary stream: the shared
//! session of [`nodb_viewserver`] (catch-up, pings, sends with a time
//! limit), fed by the hub, with the data view's own hooks — a client's
//! rejections before the patch covering them, and dispatches relayed to the
//! chronicler over one `/ws` connection per client, so a browser needs one
//! socket.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use nodb_shared::protocol::{ErrorCode, ServerMessage};
use nodb_viewserver::session::{serve_session, text};
use nodb_viewserver::{CatchUp, Feed, Hooks};
use serde::Deserialize;
use tokio::sync::watch;

use crate::hub::Hub;
use crate::server::AppState;
use nodb_auth::ReadScope;
use nodb_server::{Caller, DispatchGate};

/// Who one stream client is and what it asked for.
pub(crate) struct Client {
    /// The view.
    pub view: usize,
    /// How much of it the client may read.
    pub scope: ReadScope,
    /// The seq it has (`None`: nothing yet).
    pub since: Option<u64>,
    /// The client id it named, for its rejections.
    pub id: Option<String>,
    /// Its rights and token (dispatches are relayed with the token).
    pub caller: Caller,
    /// The dispatch rate limit of its address, checked before a dispatch
    /// is relayed: the chronicler sees every relayed dispatch come from
    /// this data view's address, so only the data view can hold one
    /// browser's address to its limit.
    pub gate: DispatchGate,
}

/// Serves one stream client: its view (or subtree), and its rejections if
/// it named itself.
pub(crate) async fn serve_client(socket: WebSocket, s: AppState, c: Client) {
    let Client { view, scope, since, id: client, caller, gate } = c;
    s.hub.metrics.clients.fetch_add(1, Relaxed);
    // A new client of a view that is still replaying history gets its
    // snapshot once the view has caught up, not a stream of catch-up patches.
    if since.is_none() {
        let mut seq_rx = s.hub.seq();
        while s.follow.connected.load(Relaxed) && s.hub.current_seq() < s.follow.head.load(Relaxed) {
            tokio::select! {
                _ = seq_rx.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = s.shutdown.cancelled() => { s.hub.metrics.clients.fetch_sub(1, Relaxed); return; }
            }
        }
    }
    let pointer = match scope {
        ReadScope::Whole => None,
        ReadScope::Subtree(p) => Some(p),
    };
    let feed = ViewFeed { hub: s.hub.clone(), view, pointer };
    let grant = caller.grant.clone();
    let mut hooks = ViewHooks { s: s.clone(), client, relay: None, token: caller.token, gate };
    serve_session(socket, &feed, &mut hooks, since, s.ping, &s.shutdown, &grant).await;
    s.hub.metrics.clients.fetch_sub(1, Relaxed);
}

/// One view of the hub, or the subtree at `pointer` of it.
struct ViewFeed {
    hub: Arc<Hub>,
    view: usize,
    pointer: Option<String>,
}

impl Feed for ViewFeed {
    fn seq(&self) -> watch::Receiver<u64> {
        self.hub.seq()
    }

    fn catch_up(&self, since: Option<u64>) -> (CatchUp, Option<u64>) {
        let (catch_up, seq) = match &self.pointer {
            None => self.hub.catch_up(self.view, since),
            Some(pointer) => self.hub.catch_up_subtree(self.view, pointer, since),
        };
        (catch_up, Some(seq))
    }
}

/// What a data view adds to a session: rejections and the relay.
struct ViewHooks {
    s: AppState,
    client: Option<String>,
    relay: Option<Relay>,
    /// The client's token, which its relayed dispatches carry.
    token: Option<String>,
    /// The rate limit of the client's address.
    gate: DispatchGate,
}

impl Hooks for ViewHooks {
    fn before_catch_up(&mut self, after: Option<u64>, upto: u64) -> Vec<Message> {
        let Some(client) = &self.client else { return Vec::new() };
        self.s
            .hub
            .rejections(client, after.unwrap_or(upto), upto)
            .into_iter()
            .map(|(seq, r)| text(&ServerMessage::Rejected { seq, id: r.id, reason: r.reason }))
            .collect()
    }

    async fn on_message(&mut self, message: Message) -> Option<Message> {
        match message {
            // Dispatches are relayed to the chronicler; the acks come back
            // through `next_outside`.
            Message::Text(t) => relay_dispatch(&self.s, &mut self.relay, self.token.as_deref(), &self.gate, t.as_str())
                .await
                .err()
                .map(|m| text(&m)),
            _ => Some(text(&ServerMessage::Error {
                id: None,
                code: ErrorCode::BadRequest,
                message: "send dispatches as text frames of JSON".into(),
            })),
        }
    }

    async fn next_outside(&mut self) -> Message {
        match relay_reply(&mut self.relay).await {
            Some(t) => Message::Text(t.into()),
            None => {
                self.relay = None;
                text(&ServerMessage::Error {
                    id: None,
                    code: ErrorCode::Unavailable,
                    message:
                        "the connection to the chronicler was lost; re-send unacknowledged actions with the same ids"
                            .into(),
                })
            }
        }
    }
}

/// One client's connection to the chronicler's `/ws`, opened on its first
/// dispatch: messages to forward, and the chronicler's answers.
struct Relay {
    to_chronicler: tokio::sync::mpsc::Sender<String>,
    answers: tokio::sync::mpsc::Receiver<String>,
}

/// The next answer from the chronicler; never resolves without a relay.
async fn relay_reply(relay: &mut Option<Relay>) -> Option<String> {
    match relay {
        Some(r) => r.answers.recv().await,
        None => std::future::pending().await,
    }
}

/// Forwards one dispatch message, opening the relay if needed. An error
/// message for the client if the text is not a dispatch, its address is
/// over its dispatch rate (`rate_limited`), or the chronicler cannot be
/// reached.
async fn relay_dispatch(
    s: &AppState,
    relay: &mut Option<Relay>,
    token: Option<&str>,
    gate: &DispatchGate,
    text: &str,
) -> Result<(), ServerMessage> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "type")]
        kind: String,
        action: Option<serde_json::Value>,
    }
    let bad = |message: String| ServerMessage::Error { id: None, code: ErrorCode::BadRequest, message };
    let peek: Peek = serde_json::from_str(text).map_err(|e| bad(format!("malformed message: {e}")))?;
    if peek.kind != "dispatch" {
        return Err(bad(format!(
            "unknown message type {:?}: send {{\"type\": \"dispatch\", \"action\": {{...}}}}",
            peek.kind
        )));
    }
    let id = peek.action.as_ref().and_then(|a| a["id"].as_str()).map(String::from);
    // The client id and token subject are the chronicler's to limit: it
    // sees them on the relay.
    gate.check_address(1).map_err(|e| ServerMessage::Error { id: id.clone(), code: e.code, message: e.message })?;
    if relay.is_none() {
        *relay = Some(open_relay(s.chroniclers.current().url(), token).await.map_err(|e| {
            // The chronicler's refusal (a token that may not dispatch, or
            // has expired) is passed on as it is: retrying would not help.
            match e.refusal().and_then(|r| r.code.map(|code| (code, r.message.clone()))) {
                Some((code @ (ErrorCode::Unauthorized | ErrorCode::Forbidden), message)) => {
                    ServerMessage::Error { id: id.clone(), code, message }
                }
                _ => ServerMessage::Error {
                    id: id.clone(),
                    code: ErrorCode::Unavailable,
                    message: format!("cannot reach the chronicler to dispatch: {e}"),
                },
            }
        })?);
    }
    let sent = match relay {
        Some(r) => r.to_chronicler.send(text.to_string()).await.is_ok(),
        None => false,
    };
    if !sent {
        *relay = None;
        return Err(ServerMessage::Error {
            id,
            code: ErrorCode::Unavailable,
            message: "the connection to the chronicler was lost; re-send with the same id".into(),
        });
    }
    Ok(())
}

/// Opens the chronicler's dispatch socket (`/ws`) with the client's own
/// token (the chronicler checks each dispatch against it) and a task that
/// pumps messages both ways.
async fn open_relay(chronicler: &nodb_client::ServiceUrl, token: Option<&str>) -> Result<Relay, nodb_client::Error> {
    use futures_util::{SinkExt, StreamExt};
    let base = chronicler.clone().with_token(token.map(String::from));
    let ws = nodb_client::Chronicler::new(base).dispatch_socket().await?;
    let (mut sink, mut stream) = ws.split();
    let (to_chronicler, mut outgoing) = tokio::sync::mpsc::channel::<String>(256);
    let (answer_tx, answers) = tokio::sync::mpsc::channel::<String>(256);
    tokio::spawn(async move {
        use tokio_tungstenite::tungstenite::Message as M;
        loop {
            tokio::select! {
                out = outgoing.recv() => match out {
                    Some(t) => if sink.send(M::text(t)).await.is_err() { break },
                    None => break,
                },
                msg = stream.next() => match msg {
                    Some(Ok(M::Text(t))) => if answer_tx.send(t.as_str().to_string()).await.is_err() { break },
                    Some(Ok(M::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = sink.close().await;
    });
    Ok(Relay { to_chronicler, answers })
}
