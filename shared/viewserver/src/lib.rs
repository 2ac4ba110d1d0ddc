//! What every nodb service that serves views shares — the data view and the
//! cascaded views speak the same client protocol, so they share one
//! implementation of it:
//!
//! - [`history`]: the recent versions of a view ([`History`]) and the one
//!   catch-up decision made from them ([`Plan`]), messages shared by the
//!   clients at the same point, the state hash;
//! - [`catch_up`]: [`CatchUp`], what a client that has some seq is sent
//!   next (nothing, one patch, one combined patch, or a snapshot), and the
//!   [`Feed`] a service gives the session to ask for it;
//! - [`session`]: one client's WebSocket session — catch up, then one
//!   message each time the view moves on, pings, sends with a time limit,
//!   a close frame on shutdown — with [`Hooks`] for what differs (a data
//!   view's rejections and dispatch relay; a cascade refuses messages);
//!
//! The error answer ([`ApiError`]) and the access check are every
//! service's, in `nodb-server`.

pub mod catch_up;
pub mod history;
pub mod session;

pub use catch_up::{CatchUp, Feed};
pub use history::{AtError, History, Plan, SharedMessages, Versioned, hash, message};
pub use nodb_server::ApiError;
pub use session::{Hooks, serve_session};
