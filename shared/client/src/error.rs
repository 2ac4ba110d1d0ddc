//! The errors of this crate, with structured fields: [`Error`] for a
//! request or a stream, [`ConnectError`] for opening a WebSocket, and
//! [`Refusal`], a service's error answer (`{"error": {"code", "message",
//! "expected"}}`) with its status.

use std::time::Duration;

use nodb_shared::protocol::{ErrorBody, ErrorCode};

use crate::service_url::UrlError;

/// A service's error answer: its HTTP status and, when the body is the
/// protocol's error body, its code, message and `expected`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{url} answered HTTP {status}: {message}")]
pub struct Refusal {
    /// The URL asked.
    pub url: String,
    /// The HTTP status.
    pub status: u16,
    /// The error code, when the body had one.
    pub code: Option<ErrorCode>,
    /// The body's message, or the start of the body when it is not an
    /// error body.
    pub message: String,
    /// For `out_of_order`: the action number the chronicler expects next.
    pub expected: Option<u64>,
}

impl Refusal {
    /// The refusal of `url` with `status` and `body`.
    pub fn from_body(url: &str, status: u16, body: &[u8]) -> Refusal {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => Refusal {
                url: url.to_string(),
                status,
                code: Some(error.code),
                message: error.message,
                expected: error.expected,
            },
            Err(_) => Refusal {
                url: url.to_string(),
                status,
                code: None,
                message: cut(&String::from_utf8_lossy(body), 200).to_string(),
                expected: None,
            },
        }
    }
}

/// Why a WebSocket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No connection, a TLS or handshake failure.
    #[error("cannot open a WebSocket to {url}: {reason}")]
    Failed {
        /// The URL.
        url: String,
        /// Why, with the chain of causes.
        reason: String,
    },
    /// The connection and handshake took longer than the time limit.
    #[error("opening a WebSocket to {url} took longer than {after:?}")]
    TimedOut {
        /// The URL.
        url: String,
        /// The time limit.
        after: Duration,
    },
    /// The server answered with an HTTP error instead of the WebSocket
    /// (a data view refusing a `since` it has not reached, say).
    #[error(transparent)]
    Refused(Refusal),
}

/// Why a request or a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request did not get through, or its answer was cut short.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why, with the chain of causes.
        reason: String,
    },
    /// The service answered with an error.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A WebSocket could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The service sent something that is not the protocol.
    #[error("{url} sent something that is not the protocol: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The stream ended (the service closed it, or stopped).
    #[error("the stream from {url} ended: {why}")]
    Ended {
        /// The URL.
        url: String,
        /// How: closed by the server (with its close frame), or the
        /// connection ended.
        why: String,
    },
    /// A service URL that cannot be used.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The token to send cannot be read.
    #[error(transparent)]
    Token(#[from] crate::token::TokenFileError),
    /// Stopped by its cancellation token (shutting down).
    #[error("cancelled: shutting down")]
    Cancelled,
}

impl Error {
    /// The service's refusal, if that is what this is (an HTTP error answer,
    /// or one to a WebSocket handshake).
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused(r) | Error::Connect(ConnectError::Refused(r)) => Some(r),
            _ => None,
        }
    }

    /// For an `out_of_order` refusal, the action number expected next.
    pub fn expected(&self) -> Option<u64> {
        self.refusal().filter(|r| r.code == Some(ErrorCode::OutOfOrder)).and_then(|r| r.expected)
    }

    pub(crate) fn unreachable(url: &str, e: &dyn std::error::Error) -> Error {
        Error::Unreachable { url: url.to_string(), reason: error_chain(e) }
    }
}

/// An error and its causes, `outer: inner: …` (reqwest's own message
/// leaves out why a connection failed).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// At most the first `max` bytes of `text`, cut at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_the_error_body() {
        let body = br#"{"error":{"code":"out_of_order","message":"expected c:3 next","expected":3}}"#;
        let r = Refusal::from_body("http://h:1/actions", 409, body);
        assert_eq!(
            (r.code, r.expected, r.message.as_str()),
            (Some(ErrorCode::OutOfOrder), Some(3), "expected c:3 next")
        );
        assert_eq!(r.to_string(), "http://h:1/actions answered HTTP 409: expected c:3 next");
        assert_eq!(Error::Refused(r).expected(), Some(3));
        let other = Refusal::from_body("http://h:1/x", 502, b"Bad Gateway");
        assert_eq!((other.code, other.message.as_str()), (None, "Bad Gateway"));
        assert_eq!(Error::Refused(other).expected(), None);
    }
}
