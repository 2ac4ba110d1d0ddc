//! One client's WebSocket session on a view: catch up, then one message
//! each time the view moves on (or one for several, if the client fell
//! behind meanwhile), with what differs between services behind [`Hooks`].
//!
//! Nobody queues for a client: the session remembers the last seq it sent
//! and asks its [`Feed`] for what it missed. It pings every `ping` and ends
//! the session when a pong does not come before the next ping, or when the
//! client does not take a message within two ping periods (so a client that
//! stopped reading cannot hold the session, or the server's shutdown,
//! forever). On shutdown it sends a close frame; when the client's token
//! expires, a close frame with code 4401 ("token expired"), so the client
//! renews it and resumes with `since`.

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use tokio_util::sync::CancellationToken;

use crate::catch_up::Feed;

/// What a service adds to a session.
pub trait Hooks: Send {
    /// Messages to send just before the catch-up that takes the client from
    /// `after` (`None`: nothing yet) to `upto` — a data view's rejections
    /// of the client's own actions come before the patch covering them.
    fn before_catch_up(&mut self, _after: Option<u64>, _upto: u64) -> Vec<Message> {
        Vec::new()
    }

    /// A text or binary message from the client: the answer to send, if
    /// any.
    fn on_message(&mut self, message: Message) -> impl Future<Output = Option<Message>> + Send;

    /// The next message to pass on from elsewhere (the chronicler's answers
    /// to relayed dispatches); never ready by default.
    fn next_outside(&mut self) -> impl Future<Output = Message> + Send {
        std::future::pending()
    }
}

/// Sends `message`, giving up (as if the socket had failed) when the client
/// holds it longer than `limit`.
///
/// # Errors
/// `Err(())` when the socket failed or the time ran out.
pub async fn send(socket: &mut WebSocket, limit: Duration, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(limit, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// A server message as a text frame.
pub fn text(m: &nodb_shared::protocol::ServerMessage) -> Message {
    Message::Text(serde_json::to_string(m).unwrap_or_default().into())
}

/// Sends a pre-serialised JSON message as a text frame.
///
/// # Errors
/// As for [`send`], or bytes that are not UTF-8.
pub async fn send_json(socket: &mut WebSocket, limit: Duration, json: bytes::Bytes) -> Result<(), ()> {
    let text = Utf8Bytes::try_from(json).map_err(|_| ())?;
    send(socket, limit, Message::Text(text)).await
}

/// Serves one client that has seq `since` (`None`: nothing yet) until it
/// leaves, fails to keep up, its token (`grant`) expires, or `shutdown`.
pub async fn serve_session<F: Feed, H: Hooks>(
    mut socket: WebSocket,
    feed: &F,
    hooks: &mut H,
    since: Option<u64>,
    ping_every: Duration,
    shutdown: &CancellationToken,
    grant: &nodb_auth::Grant,
) {
    let expiry = nodb_server::access::expiry(grant);
    tokio::pin!(expiry);
    let limit = ping_every * 2;
    let mut seq_rx = feed.seq();
    let mut last = since;
    let mut ping = tokio::time::interval(ping_every);
    // Ticks missed during a long send must not fire in a burst and drop a
    // client that answers.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut awaiting_pong = false;
    'session: loop {
        seq_rx.borrow_and_update();
        let (catch_up, seq) = feed.catch_up(last);
        if let Some(seq) = seq {
            for m in hooks.before_catch_up(last, seq) {
                if send(&mut socket, limit, m).await.is_err() {
                    break 'session;
                }
            }
        }
        if let Some(json) = catch_up.into_message()
            && send_json(&mut socket, limit, json).await.is_err()
        {
            break 'session;
        }
        if seq.is_some() {
            last = seq;
        }
        loop {
            tokio::select! {
                changed = seq_rx.changed() => {
                    if changed.is_err() { break 'session; }
                    break;
                }
                msg = socket.recv() => match msg {
                    // A message over the size limit (refused before it was
                    // buffered), or text that is not UTF-8: say why (1009,
                    // 1007) and end the session.
                    Some(Err(e)) if nodb_server::limits::close_for(&e).is_some() => {
                        tracing::debug!(error = %e, "a client sent a message that cannot be read; closing its stream");
                        if let Some(frame) = nodb_server::limits::close_for(&e) {
                            let _ = send(&mut socket, limit, frame).await;
                        }
                        break 'session;
                    }
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break 'session,
                    Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                        if let Some(answer) = hooks.on_message(m).await
                            && send(&mut socket, limit, answer).await.is_err()
                        {
                            break 'session;
                        }
                    }
                    Some(Ok(_)) => {}
                },
                out = hooks.next_outside() => {
                    if send(&mut socket, limit, out).await.is_err() { break 'session; }
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        tracing::debug!("a client did not answer a ping; closing its stream");
                        break 'session;
                    }
                    awaiting_pong = true;
                    if send(&mut socket, limit, Message::Ping(Default::default())).await.is_err() { break 'session; }
                }
                () = shutdown.cancelled() => {
                    let _ = send(&mut socket, limit, Message::Close(None)).await;
                    break 'session;
                }
                () = &mut expiry => {
                    let _ = send(&mut socket, limit, nodb_server::access::expired_close()).await;
                    break 'session;
                }
            }
        }
    }
}
