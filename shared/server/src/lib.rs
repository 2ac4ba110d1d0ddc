//! What every nodb HTTP service shares:
//!
//! - [`error`]: [`ApiError`], the one error answer of every service,
//!   `{"error": {"code", "message"}}` (plus `expected` for `out_of_order`
//!   and `right` for `forbidden`) with the status the code fixes, and
//!   [`method_not_allowed`], the 405 every router gives a wrong method
//!   (and [`error::rejections_as_json`] for axum's plain-text rejections);
//! - [`access`]: [`Access`], the check every request passes — the `Host`
//!   on loopback, the `Origin` of browsers, and the token — and
//!   [`Caller`], the extractor that gives a handler the request's
//!   [`Grant`](nodb_auth::Grant) or answers 401;
//! - [`metrics`]: [`Scrape`], the answer of `GET /metrics`, through the
//!   `prometheus-client` crate;
//! - [`tls`]: [`Tls`], a certificate and key, and the listener that
//!   terminates TLS;
//! - [`limits`]: [`Limits`], the time, connection, WebSocket message and
//!   dispatch rate limits of a service, with their defaults;
//! - [`rate`]: the dispatch rate limiters (`governor`) and
//!   [`DispatchGate`], the extractor a dispatching handler checks;
//! - [`serve`](mod@serve): [`serve_with()`], a router on a listener within
//!   an [`Enforcer`]'s limits until shutdown (hyper's HTTP/1 server, for
//!   the header read timeout), and [`serve()`] with the default limits;
//! - [`testing`]: the router tests' request through `oneshot` and check of
//!   the error answer.

pub mod access;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod rate;
pub mod serve;
pub mod testing;
pub mod tls;

pub use access::{Access, Caller};
pub use error::{ApiError, method_not_allowed};
pub use limits::{Limits, SocketLimits};
pub use metrics::Scrape;
pub use rate::DispatchGate;
pub use serve::{Enforcer, serve, serve_with};
pub use tls::Tls;
