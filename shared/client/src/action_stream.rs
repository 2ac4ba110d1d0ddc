//! [`ActionStream`]: the chronicler's action stream over a WebSocket, one
//! [`StreamLine`] per text message.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{Stream, StreamExt};
use nodb_shared::protocol::StreamLine;
use tokio_tungstenite::tungstenite::Message;

use crate::error::Error;
use crate::websocket::WebSocket;

/// An open action stream (from [`crate::Chronicler::stream`]). As a
/// [`Stream`] it yields each line, an error when the connection fails or a
/// line is not the protocol, and ends when the chronicler closes it (after
/// `to`, or when it stops). Reading the next line is cancel-safe.
pub struct ActionStream {
    ws: WebSocket,
    url: String,
}

impl ActionStream {
    pub(crate) fn new(ws: WebSocket, url: String) -> ActionStream {
        ActionStream { ws, url }
    }

    /// The stream's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the stream (the chronicler stops feeding it).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

impl std::fmt::Debug for ActionStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionStream").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Stream for ActionStream {
    type Item = Result<StreamLine, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let line = match ready!(self.ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Text(text))) => StreamLine::parse(text.as_str())
                    .map_err(|e| Error::Protocol { url: self.url.clone(), reason: e.to_string() }),
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(None),
                // Pings are answered by tungstenite; nothing else is sent.
                Some(Ok(_)) => continue,
                Some(Err(e)) => Err(Error::unreachable(&self.url, &e)),
            };
            return Poll::Ready(Some(line));
        }
    }
}
