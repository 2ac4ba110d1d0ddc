//! What every nodb HTTP service shares:
//!
//! - [`error`]: [`ApiError`], the one error answer of every service,
//!   `{"error": {"code", "message"}}` (plus `expected` for `out_of_order`
//!   and `right` for `forbidden`) with the status the code fixes;
//! - [`access`]: [`Access`], the check every request passes — the `Host`
//!   on loopback, the `Origin` of browsers, and the token — and
//!   [`Caller`], the extractor that gives a handler the request's
//!   [`Grant`](nodb_auth::Grant) or answers 401;
//! - [`tls`]: [`Tls`], a certificate and key, and the listener that
//!   terminates TLS;
//! - [`serve`](mod@serve): [`serve()`], a router on a listener until
//!   shutdown.

pub mod access;
pub mod error;
pub mod serve;
pub mod tls;

pub use access::{Access, Caller};
pub use error::ApiError;
pub use serve::serve;
pub use tls::Tls;
