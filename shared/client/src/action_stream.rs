//! [`ActionStream`]: the chronicler's action stream over a WebSocket, each
//! text message one [`StreamLine`] or several, each ended by a newline
//! (asked for with `lines=many`: a consumer far behind then reads a message
//! per chunk of the log rather than per action).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{Stream, StreamExt};
use nodb_shared::protocol::StreamLine;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::error::Error;
use crate::websocket::WebSocket;

/// An open action stream (from [`crate::Chronicler::stream`]). As a
/// [`Stream`] it yields each line, an error when the connection fails or a
/// line is not the protocol, and ends when the chronicler closes it (after
/// `to`, or when it stops). Reading the next line is cancel-safe.
pub struct ActionStream {
    ws: WebSocket,
    url: String,
    /// The message being read, and where its next line starts.
    message: Option<(Utf8Bytes, usize)>,
}

impl ActionStream {
    pub(crate) fn new(ws: WebSocket, url: String) -> ActionStream {
        ActionStream { ws, url, message: None }
    }

    /// The next line of the message being read, if one is left (blank
    /// lines skipped).
    fn next_line(&mut self) -> Option<Result<StreamLine, Error>> {
        loop {
            let (text, at) = self.message.as_mut()?;
            let rest = &text.as_str()[*at..];
            let line = match rest.find('\n') {
                Some(end) => {
                    *at += end + 1;
                    &rest[..end]
                }
                None => {
                    *at = text.len();
                    rest
                }
            };
            if !line.trim().is_empty() {
                let parsed = StreamLine::parse(line);
                return Some(parsed.map_err(|e| Error::Protocol { url: self.url.clone(), reason: e.to_string() }));
            }
            if *at >= text.len() {
                self.message = None;
            }
        }
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
            if let Some(line) = self.next_line() {
                return Poll::Ready(Some(line));
            }
            match ready!(self.ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Text(text))) => self.message = Some((text, 0)),
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(None),
                // Pings are answered by tungstenite; nothing else is sent.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Some(Err(Error::unreachable(&self.url, &e)))),
            }
        }
    }
}
