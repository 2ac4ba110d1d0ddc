//! The limits every service puts on its clients, so that a slow, silent or
//! greedy client cannot hold the service's sockets, memory or writes:
//!
//! - **time**: the request line and headers must arrive within
//!   [`Limits::header_timeout`] (which also bounds how long a kept-alive
//!   connection may sit idle between requests), a request body may pause
//!   at most [`Limits::body_timeout`] between chunks, and a handler —
//!   reading the body included, up to the `101` of a WebSocket handshake —
//!   must answer within [`Limits::request_timeout`] (408 otherwise);
//! - **connections**: at most [`Limits::max_connections`] open at once,
//!   and [`Limits::max_connections_per_ip`] from one address; further
//!   connections get a `503` and are closed at once;
//! - **WebSocket messages**: at most [`Limits::max_ws_message`] bytes,
//!   refused by the WebSocket library while reading the frame headers,
//!   before the message is buffered (close code 1009);
//! - **dispatch rates**: [`DispatchRates`], per client id, per token
//!   subject and per address (see [`rate`](crate::rate)).
//!
//! The defaults are sized for a service on one machine; every limit has a
//! `nodb` flag (see `docs/limits.md`).

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::http::request::Parts;

use crate::serve::Enforcer;

/// The limits of one service (or of all the services of one process).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// The longest the request line and headers may take to arrive, and
    /// the longest a kept-alive connection may wait for its next request.
    pub header_timeout: Duration,
    /// The longest a request body may pause between two chunks.
    pub body_timeout: Duration,
    /// The longest a handler may take to answer, reading the body
    /// included (a stream's answer is its first line, a WebSocket's its
    /// `101`).
    pub request_timeout: Duration,
    /// The most connections open at once; `None`: sized from the file
    /// descriptors the process may open ([`default_max_connections`]).
    pub max_connections: Option<usize>,
    /// The most connections open at once from one IP address (`0`: no
    /// limit of its own).
    pub max_connections_per_ip: usize,
    /// The largest WebSocket message (and frame) a client may send on a
    /// stream, in bytes.
    pub max_ws_message: usize,
    /// The dispatch rate limits.
    pub rates: DispatchRates,
    /// How long requests in flight get to finish at shutdown before their
    /// connections are dropped.
    pub drain_timeout: Duration,
}

/// Dispatch rate limits: actions per second with a burst, per client id
/// (and per token subject), and per remote address. `None`: no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DispatchRates {
    /// Per client id (the part of an action id before `:`), and per token
    /// subject (`sub`) on a service with tokens.
    pub per_client: Option<Rate>,
    /// Per remote IP address.
    pub per_ip: Option<Rate>,
}

/// A rate: `per_second` actions on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// The sustained rate, actions per second (at least 1).
    pub per_second: u32,
    /// How many actions may come at once (at least 1).
    pub burst: u32,
}

/// The default header timeout: 10 s, enough for any client that means to
/// send a request.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default body timeout: 10 s without a byte of the body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The default request timeout: 60 s, far above any legitimate request
/// (the largest body is 16 MiB) yet bounded.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The default largest stream message: 2 MiB, twice the default largest
/// action payload, so any dispatch the chronicler would take fits.
pub const DEFAULT_MAX_WS_MESSAGE: usize = 2 * 1024 * 1024;
/// The default drain time at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept for the process's own work (log segments,
/// snapshots, its own outgoing connections) whatever the limit.
pub const RESERVED_FDS: u64 = 256;

impl Default for DispatchRates {
    /// Generous enough that the benchmarks (tens of thousands of actions a
    /// second from a few clients) are never throttled: 50,000 actions/s
    /// per client (bursts of 100,000), 200,000/s per address (bursts of
    /// 400,000).
    fn default() -> Self {
        DispatchRates {
            per_client: Some(Rate { per_second: 50_000, burst: 100_000 }),
            per_ip: Some(Rate { per_second: 200_000, burst: 400_000 }),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: None,
            max_connections_per_ip: 0,
            max_ws_message: DEFAULT_MAX_WS_MESSAGE,
            rates: DispatchRates::default(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// Why limits cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// A time limit of zero.
    #[error("the {0} must be more than zero")]
    ZeroTime(&'static str),
    /// A size or count of zero.
    #[error("the {0} must be at least 1")]
    Zero(&'static str),
}

impl Limits {
    /// Checks the limits make sense.
    ///
    /// # Errors
    /// A zero time limit, connection cap, message size or rate.
    pub fn validate(&self) -> Result<(), LimitsError> {
        for (d, name) in [
            (self.header_timeout, "header timeout"),
            (self.body_timeout, "body timeout"),
            (self.request_timeout, "request timeout"),
        ] {
            if d.is_zero() {
                return Err(LimitsError::ZeroTime(name));
            }
        }
        if self.max_connections == Some(0) {
            return Err(LimitsError::Zero("connection limit"));
        }
        if self.max_ws_message == 0 {
            return Err(LimitsError::Zero("WebSocket message limit"));
        }
        for rate in [self.rates.per_client, self.rates.per_ip].into_iter().flatten() {
            if rate.per_second == 0 || rate.burst == 0 {
                return Err(LimitsError::Zero("dispatch rate and burst"));
            }
        }
        Ok(())
    }

    /// The connection cap: [`Limits::max_connections`], or the default for
    /// the file descriptors this process may open.
    pub fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| default_max_connections(open_files_limit()))
    }
}

/// The default connection cap for a process that may open `fds` files:
/// half of what is left after [`RESERVED_FDS`] and an eighth kept for the
/// process's own work, since a connection can cost two descriptors (a data
/// view relays a client's dispatches over a connection of its own; `nodb
/// up` accepts that connection too). At least 16.
pub fn default_max_connections(fds: u64) -> usize {
    let spare = fds.saturating_sub(RESERVED_FDS + fds / 8) / 2;
    usize::try_from(spare).unwrap_or(usize::MAX).clamp(16, 1 << 20)
}

/// Raises this process's soft limit on open files to the hard limit, so
/// that the connection cap can be sized from it; returns the soft limit
/// now in force. Call it once at start.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open files limit");
        }
    }
    open_files_limit()
}

/// The soft limit on open files (65,536 when unlimited or unknown).
pub fn open_files_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(65_536)
}

/// The read buffer of each stream's WebSocket, allocated up front for
/// every connection: 4 KiB. The library's default, 128 KiB, made an idle
/// view stream cost a data view about 157 KiB (1.5 GiB for 10,000); a
/// stream reads only small dispatches, and a larger message is still read
/// whole, in more steps. (`tungstenite` also zero-fills the free part of
/// the buffer before every read, so a small one costs less CPU too.)
pub const STREAM_READ_BUFFER: usize = 4 * 1024;

/// The read buffer of the chronicler's dispatch socket `/ws`: 16 KiB,
/// allocated up front for every connection (the library's default is 128
/// KiB). `tungstenite` zero-fills the free part of the buffer before every
/// read of the socket (snapview/tungstenite-rs issue 547); pipelined
/// dispatch measured the same with either size (`nodb-bench ingest`), so
/// the smaller one is kept for its memory.
pub const DISPATCH_READ_BUFFER: usize = 16 * 1024;

/// The close code of a WebSocket message over the size limit (RFC 6455
/// "Message Too Big").
pub const TOO_BIG_CLOSE_CODE: u16 = 1009;

/// The close code of a text message that is not UTF-8 (RFC 6455
/// "Invalid frame payload data").
pub const BAD_UTF8_CLOSE_CODE: u16 = 1007;

/// The tungstenite error behind a WebSocket receive error, if any.
fn cause(error: &axum::Error) -> Option<&tungstenite::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(t) = e.downcast_ref::<tungstenite::Error>() {
            return Some(t);
        }
        source = e.source();
    }
    None
}

/// The close frame a receive error calls for, if it is the client's fault:
/// 1009 for a message over the size limit, 1007 for a text message that is
/// not UTF-8. `None` for a connection that failed (nothing to say).
pub fn close_for(error: &axum::Error) -> Option<Message> {
    match cause(error) {
        Some(tungstenite::Error::Capacity(_)) => Some(too_big_close()),
        Some(tungstenite::Error::Utf8(_)) => Some(Message::Close(Some(CloseFrame {
            code: BAD_UTF8_CLOSE_CODE,
            reason: "text message is not UTF-8".into(),
        }))),
        _ => None,
    }
}

/// The close frame for a message over the size limit: code 1009.
pub fn too_big_close() -> Message {
    Message::Close(Some(CloseFrame { code: TOO_BIG_CLOSE_CODE, reason: "message too big".into() }))
}

/// The WebSocket limits of the request's service, as a handler applies
/// them to its upgrade. Without [`serve_with`](crate::serve::serve_with)
/// (a router driven by tests), the defaults.
#[derive(Clone, Copy, Debug)]
pub struct SocketLimits {
    /// The largest message (and frame) a client may send.
    pub max_message: usize,
}

impl SocketLimits {
    /// `upgrade` with the message and frame size limits set, so that an
    /// oversized message is refused while its frame headers are read, and
    /// a small read buffer ([`STREAM_READ_BUFFER`]), so that idle streams
    /// cost little memory.
    pub fn apply(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
        upgrade.max_message_size(self.max_message).max_frame_size(self.max_message).read_buffer_size(STREAM_READ_BUFFER)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SocketLimits {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let max_message =
            parts.extensions.get::<Enforcer>().map_or(DEFAULT_MAX_WS_MESSAGE, |e| e.limits().max_ws_message);
        Ok(SocketLimits { max_message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_process() {
        assert_eq!(default_max_connections(1024), (1024 - 256 - 128) / 2);
        assert_eq!(default_max_connections(100), 16);
        assert!(default_max_connections(1 << 20) < 1 << 19);
    }

    #[test]
    fn zero_limits_are_refused() {
        assert!(Limits::default().validate().is_ok());
        let l = Limits { header_timeout: Duration::ZERO, ..Limits::default() };
        assert_eq!(l.validate(), Err(LimitsError::ZeroTime("header timeout")));
        let l = Limits { max_connections: Some(0), ..Limits::default() };
        assert!(l.validate().is_err());
        let rates = DispatchRates { per_client: Some(Rate { per_second: 0, burst: 1 }), per_ip: None };
        assert!(Limits { rates, ..Limits::default() }.validate().is_err());
    }

    #[test]
    fn raising_the_limit_keeps_at_least_the_old_one() {
        let before = open_files_limit();
        assert!(raise_open_files_limit() >= before);
    }
}
