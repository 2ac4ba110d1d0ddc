//! The exact stream (`/views/{name}/stream?exact=true`): one patch message
//! per seq, in order, never combined, for clients that need every
//! transition — envoys, cascades and audit tools.
//!
//! Within the history in memory each seq's message is the shared,
//! pre-serialised one ([`crate::hub::Hub::exact`]). A client older than that history
//! is fed by a replay from the checkpoint before its seq
//! ([`crate::history::Replayer`]), seq by seq, until it reaches the
//! history again. Either way the session sends one chunk at a time and
//! waits for the socket: a slow client slows only its own replay (memory
//! stays bounded by one chunk), and nothing is coalesced or dropped. A
//! client that takes no message for two ping periods is disconnected and
//! resumes with `since`.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::ws::{Message, WebSocket};
use nodb_shared::protocol::{ErrorCode, ServerMessage};

use crate::history::Replayer;
use crate::hub::{Exact, RejectedAction};
use crate::server::AppState;
use nodb_viewserver::CatchUp;
use nodb_viewserver::session::{send, text};

/// Messages taken from the history in one go.
const CHUNK: usize = 256;

/// Serves one exact client of view `view` that has seq `since` (`None`:
/// nothing yet, so it gets a snapshot first).
pub async fn serve_exact(
    mut socket: WebSocket,
    s: AppState,
    view: usize,
    since: Option<u64>,
    client: Option<String>,
    grant: nodb_auth::Grant,
) {
    let limit = s.ping * 2;
    s.hub.metrics.clients.fetch_add(1, Relaxed);
    s.hub.metrics.exact_clients.fetch_add(1, Relaxed);
    let mut session = Session { s: &s, view, client, limit, replay: None, grant };
    let _ = session.run(&mut socket, since).await;
    s.hub.metrics.exact_clients.fetch_sub(1, Relaxed);
    s.hub.metrics.clients.fetch_sub(1, Relaxed);
}

/// Why a session ended.
enum End {
    /// The client went away, did not take a message in time, or asked to
    /// close; or the service is stopping.
    Closed,
}

struct Session<'a> {
    s: &'a AppState,
    view: usize,
    client: Option<String>,
    limit: std::time::Duration,
    /// A replay, while the client is older than the history in memory.
    replay: Option<Replayer>,
    /// The client's rights: the session closes when its token expires.
    grant: nodb_auth::Grant,
}

impl Session<'_> {
    async fn run(&mut self, socket: &mut WebSocket, since: Option<u64>) -> Result<(), End> {
        let mut seq_rx = self.s.hub.seq();
        let mut last = match since {
            Some(since) => since,
            None => {
                let (catch_up, seq) = self.s.hub.catch_up(self.view, None);
                if let CatchUp::Snapshot(b) = catch_up {
                    self.send_bytes(socket, b).await?;
                }
                seq
            }
        };
        let mut ping = tokio::time::interval(self.s.ping);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut awaiting_pong = false;
        let grant = self.grant.clone();
        let expiry = nodb_server::access::expiry(&grant);
        tokio::pin!(expiry);
        loop {
            if self.s.shutdown.is_cancelled() {
                let _ = self.send(socket, Message::Close(None)).await;
                return Err(End::Closed);
            }
            if grant.expires().is_some_and(|exp| exp <= nodb_auth::key::now()) {
                let _ = self.send(socket, nodb_server::access::expired_close()).await;
                return Err(End::Closed);
            }
            seq_rx.borrow_and_update();
            match self.s.hub.exact(self.view, last, CHUNK) {
                Exact::Patches(steps) => {
                    self.replay = None;
                    for step in steps {
                        self.send_rejection(socket, step.seq, step.rejected).await?;
                        self.send_bytes(socket, step.message).await?;
                        last = step.seq;
                    }
                    continue;
                }
                Exact::NotInHistory => {
                    last = self.replay_chunk(socket, last).await?;
                    continue;
                }
                Exact::Nothing => {}
            }
            // Caught up: wait for the next seq, answering pings and refusing
            // anything else (an exact stream does not relay dispatches).
            loop {
                tokio::select! {
                    changed = seq_rx.changed() => {
                        if changed.is_err() { return Err(End::Closed); }
                        break;
                    }
                    msg = socket.recv() => match msg {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Err(End::Closed),
                        Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                        Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                            let m = ServerMessage::Error {
                                id: None,
                                code: ErrorCode::BadRequest,
                                message: "an exact stream takes no messages; dispatch on a stream without exact=true or to the chronicler".into(),
                            };
                            self.send(socket, text(&m)).await?;
                        }
                        Some(Ok(_)) => {}
                    },
                    _ = ping.tick() => {
                        if awaiting_pong {
                            tracing::debug!("an exact client did not answer a ping; closing its stream");
                            return Err(End::Closed);
                        }
                        awaiting_pong = true;
                        self.send(socket, Message::Ping(Default::default())).await?;
                    }
                    () = self.s.shutdown.cancelled() => {
                        let _ = self.send(socket, Message::Close(None)).await;
                        return Err(End::Closed);
                    }
                    () = &mut expiry => {
                        let _ = self.send(socket, nodb_server::access::expired_close()).await;
                        return Err(End::Closed);
                    }
                }
            }
        }
    }

    /// Replays the next chunk of seqs after `last` and sends them; the seq
    /// reached.
    async fn replay_chunk(&mut self, socket: &mut WebSocket, last: u64) -> Result<u64, End> {
        if self.replay.as_ref().is_none_or(|r| r.seq() != last) {
            self.replay = None;
            let opened = tokio::select! {
                r = self.s.history.replayer(last) => r,
                () = self.s.shutdown.cancelled() => return Err(End::Closed),
            };
            match opened {
                Ok(r) => self.replay = Some(r),
                Err(e) => return Err(self.fail(socket, last, &e.to_string()).await),
            }
        }
        let Some(replay) = self.replay.as_mut() else { return Err(End::Closed) };
        let upto = self.s.hub.current_seq();
        let steps = tokio::select! {
            r = replay.next(&self.s.history, self.view, upto) => r,
            () = self.s.shutdown.cancelled() => return Err(End::Closed),
        };
        let steps = match steps {
            Ok(steps) => steps,
            Err(e) => {
                self.replay = None;
                return Err(self.fail(socket, last, &e.to_string()).await);
            }
        };
        let mut reached = last;
        for step in steps {
            self.send_rejection(socket, step.seq, step.rejected).await?;
            let message = crate::hub::patch_message(step.seq, step.ops);
            self.send_bytes(socket, message).await?;
            reached = step.seq;
        }
        Ok(reached)
    }

    /// Tells the client its stream cannot go on, and ends it; it resumes
    /// with `since`.
    async fn fail(&self, socket: &mut WebSocket, last: u64, why: &str) -> End {
        tracing::warn!(after = last, error = why, "an exact stream could not replay the history");
        let m = ServerMessage::Error {
            id: None,
            code: ErrorCode::Unavailable,
            message: format!("cannot replay the history after seq {last}: {why}; reconnect with since={last}"),
        };
        let _ = self.send(socket, text(&m)).await;
        End::Closed
    }

    async fn send_rejection(
        &self,
        socket: &mut WebSocket,
        seq: u64,
        rejected: impl IntoIterator<Item = RejectedAction>,
    ) -> Result<(), End> {
        let Some(client) = &self.client else { return Ok(()) };
        for r in rejected.into_iter().filter(|r| &r.client == client) {
            self.send(socket, text(&ServerMessage::Rejected { seq, id: r.id, reason: r.reason })).await?;
        }
        Ok(())
    }

    async fn send_bytes(&self, socket: &mut WebSocket, bytes: bytes::Bytes) -> Result<(), End> {
        let text = axum::extract::ws::Utf8Bytes::try_from(bytes).map_err(|_| End::Closed)?;
        self.send(socket, Message::Text(text)).await
    }

    async fn send(&self, socket: &mut WebSocket, message: Message) -> Result<(), End> {
        send(socket, self.limit, message).await.map_err(|()| End::Closed)
    }
}
