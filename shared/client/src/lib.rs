//! nodb's protocol client: what a Rust program needs to talk to nodb's
//! services over their public protocol (`docs/protocol.md`), over plain
//! HTTP and WebSockets or over TLS (`https://`, `wss://`, through rustls).
//! The data view's follower and history, the envoys and the cascades use
//! it. Nothing happens at import: no I/O until a call (the platform's TLS
//! roots load on the first `wss://` connection).
//!
//! # Modules
//!
//! - [`service_url`]: [`ServiceUrl`], a service's base URL
//!   (`http(s)://HOST:PORT[/PREFIX]`), and the HTTP and WebSocket URLs of
//!   its endpoints; [`UrlError`] says what is wrong with a bad one.
//! - [`websocket`]: [`WsConnector`], one way to open a WebSocket (`ws://`
//!   or `wss://`, Nagle off, a time limit).
//! - [`chronicler`]: [`Chronicler`] — dispatch with retry, a client's
//!   [`Position`], the head, ranges, and the action stream
//!   ([`action_stream::ActionStream`] of
//!   [`StreamLine`](nodb_shared::protocol::StreamLine)s).
//! - [`dispatch_socket`]: [`DispatchSocket`], the chronicler's `/ws` —
//!   actions sent without waiting, each answered by a typed [`Reply`].
//! - [`view_client`]: [`ViewClient`] — a view's state now or at a seq, and
//!   its stream ([`ViewStream`]) with `since`, `exact` and `client`.
//! - [`replica`]: [`Replica`], a view's state kept from snapshot and patch
//!   messages, refusing gaps and patches that do not apply (no I/O).
//! - [`view_follower`]: [`ViewFollower`], a replica kept up to date over the
//!   stream: reconnects with `since`, waits for a restarted data view,
//!   resyncs from a snapshot after bad data; given several data views of
//!   one app (replicas), fails over from one to the next.
//! - [`failover`]: which replica to go to next, from what each one's
//!   `GET /ready` says ([`ReadyAnswer`]; no I/O).
//! - [`error`]: [`Error`], [`ConnectError`] and [`Refusal`] (a service's
//!   error answer: status, code, message, `expected`).

pub mod action_stream;
pub mod chronicler;
pub mod dispatch_socket;
pub mod error;
pub mod failover;
mod http;
pub mod replica;
pub mod service_url;
pub mod token;
pub mod view_client;
pub mod view_follower;
pub mod websocket;

pub use action_stream::ActionStream;
pub use chronicler::{Anchor, Chronicler, Position};
pub use dispatch_socket::{DispatchSocket, Reply};
pub use error::{ConnectError, Error, Refusal};
pub use failover::ReadyAnswer;
pub use replica::{Change, Replica, ReplicaError, Update};
pub use service_url::{ServiceUrl, UrlError};
pub use token::{TokenFileError, TokenSource};
pub use view_client::{StreamOptions, ViewClient, ViewStream};
pub use view_follower::{FollowEvent, FollowSettings, ViewFollower};
pub use websocket::{WebSocket, WsConnector};
