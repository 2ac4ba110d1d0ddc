//! [`DispatchSocket`]: the chronicler's dispatch socket (`/ws`) — send
//! actions without waiting, read each one's [`Reply`] (an `ack`, or an
//! `error` with what the HTTP error body would say).

use nodb_shared::protocol::{Ack, Action, ClientMessage, ServerMessage};

use crate::error::Error;
use crate::websocket::{Socket, WebSocket};

/// The chronicler's answer on its dispatch socket, one per message sent:
/// an `ack` or an `error` message, with what the HTTP error body would add.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    /// [`ServerMessage::Ack`] or [`ServerMessage::Error`].
    #[serde(flatten)]
    pub message: ServerMessage,
    /// For `out_of_order`: the action number expected next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// For `forbidden`: the right the token lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<String>,
}

impl Reply {
    /// The ack, if the action was accepted.
    pub fn ack(&self) -> Option<&Ack> {
        match &self.message {
            ServerMessage::Ack(ack) => Some(ack),
            _ => None,
        }
    }
}

/// An open dispatch socket (from [`crate::Chronicler::dispatcher`]). A
/// client may keep many actions in flight: each reply names its action's
/// id, and replies may come in any order (the log keeps the order sent).
/// After a disconnect it re-sends the unacknowledged ones with the same
/// ids (a re-send of an accepted one is acknowledged as a duplicate).
#[derive(Debug)]
pub struct DispatchSocket {
    socket: Socket,
}

impl DispatchSocket {
    pub(crate) fn new(ws: WebSocket, url: &url::Url) -> DispatchSocket {
        DispatchSocket { socket: Socket::new(ws, url) }
    }

    /// The socket's URL.
    pub fn url(&self) -> &str {
        self.socket.url()
    }

    /// Sends `action` (`{"type": "dispatch", "action": …}`) without waiting
    /// for its reply.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the connection failed.
    pub async fn send(&mut self, action: &Action) -> Result<(), Error> {
        self.socket.send(&ClientMessage::Dispatch { action: action.clone() }).await
    }

    /// The next reply. Cancel-safe: a reply is never lost when the future
    /// is dropped.
    ///
    /// # Errors
    /// [`Error::Ended`] when the chronicler closed the socket,
    /// [`Error::Unreachable`] when the connection failed,
    /// [`Error::Protocol`] for a message that is not a reply.
    pub async fn next_reply(&mut self) -> Result<Reply, Error> {
        self.socket.next("reply", || {}).await
    }

    /// Closes the socket, waiting at most a second for the chronicler.
    pub async fn close(mut self) {
        self.socket.close().await;
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use nodb_shared::protocol::ErrorCode;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    #[test]
    fn replies_read_the_wire_and_write_it_back() {
        let cases = [
            r#"{"type":"ack","id":"c:1","seq":7,"duplicate":false}"#,
            r#"{"type":"ack","id":"c:1","duplicate":true}"#,
            r#"{"type":"error","id":"c:5","code":"out_of_order","message":"expected c:3 next","expected":3}"#,
            r#"{"type":"error","code":"bad_request","message":"not JSON"}"#,
            r#"{"type":"error","id":"c:1","code":"forbidden","message":"no","right":"dispatch"}"#,
        ];
        for text in cases {
            let reply: Reply = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&reply).unwrap(), text);
        }
        let reply: Reply = serde_json::from_str(cases[2]).unwrap();
        let ServerMessage::Error { code, .. } = &reply.message else { panic!("{reply:?}") };
        assert_eq!((*code, reply.expected, reply.ack()), (ErrorCode::OutOfOrder, Some(3), None));
    }

    /// Against a socket that answers each dispatch with an ack, then closes.
    #[tokio::test]
    async fn sends_dispatches_and_reads_replies_until_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut got = Vec::new();
            while let Some(Ok(Message::Text(t))) = ws.next().await {
                let m: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                let id = m["action"]["id"].clone();
                got.push(m);
                let ack = serde_json::json!({"type": "ack", "id": id, "seq": got.len(), "duplicate": false});
                ws.send(Message::text(ack.to_string())).await.unwrap();
                if got.len() == 2 {
                    ws.send(Message::text("not a reply")).await.unwrap();
                    ws.close(None).await.unwrap();
                    break;
                }
            }
            got
        });
        let url: url::Url = format!("ws://{addr}/ws").parse().unwrap();
        let ws = crate::websocket::connect(&url).await.unwrap();
        let mut socket = DispatchSocket::new(ws, &url);
        let action = |n: u64| Action { id: format!("c:{n}"), kind: "a/b".into(), payload: n.into(), meta: None };
        socket.send(&action(1)).await.unwrap();
        socket.send(&action(2)).await.unwrap();
        for n in 1..=2 {
            let ack = Ack { id: format!("c:{n}"), seq: Some(n), duplicate: false };
            assert_eq!(socket.next_reply().await.unwrap().ack(), Some(&ack));
        }
        assert!(matches!(socket.next_reply().await, Err(Error::Protocol { .. })));
        assert!(matches!(socket.next_reply().await, Err(Error::Ended { .. })));
        let sent = server.await.unwrap();
        assert_eq!(
            sent[0],
            serde_json::json!({"type": "dispatch", "action": {"id": "c:1", "type": "a/b", "payload": 1}})
        );
    }
}
