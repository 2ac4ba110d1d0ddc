//! nodb's access tokens.
//!
//! A token is a standard JWT signed with HS256, so any backend in any
//! language can mint one with its JWT library and a key file. Its claims
//! ([`Claims`]) say who the bearer is and what it may do:
//!
//! - `sub`: the client it acts as; it may number actions `<sub>:<n>` or
//!   `<sub>.<anything>:<n>` (one id per browser tab);
//! - `dispatch`: the action type prefixes it may dispatch (none: read-only);
//! - `read`: the views it may read, each `view` or `view/<JSON Pointer>` for
//!   a subtree, or `*` for every view;
//! - `log`: it may read the raw log (data views, envoys);
//! - `admin`: everything, control actions (`@@nodb/*`) and metrics included;
//! - `envoy`: the token of an envoy; client ids `envoy-*` need it;
//! - `exp` (required), `iat`, `nbf`: times in Unix seconds.
//!
//! - [`key`]: [`Key`], a JWK (`kty: oct`, `alg: HS256`, `kid`) that signs,
//!   and [`KeySet`], the keys a service accepts (several at once, by key
//!   id, for rotation);
//! - [`claims`]: [`Claims`] and the read scopes;
//! - [`grant`]: [`Grant`], what a request may do — everything on a service
//!   without keys, or what a verified token's claims allow — and
//!   [`Denied`], the right it lacks.

pub mod checkpoint;
pub mod claims;
pub mod grant;
pub mod key;

pub use checkpoint::Checkpoint;
pub use claims::{Claims, ReadScope};
pub use grant::{Denied, Grant};
pub use key::{Key, KeyError, KeySet, TokenError};
