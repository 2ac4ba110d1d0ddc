//! Envoys: side effects on the outside world, triggered by live actions or
//! view changes, whose results come back as new actions through the
//! chronicler with deterministic ids.
//!
//! An envoy never acts on history that is being replayed, rebuilt or
//! restored, and a crash and retry never records an outcome twice.
//!
//! # Modules
//!
//! - [`definition`]: what an application writes — [`Envoy`], [`Trigger`],
//!   the handler and its [`Event`].
//! - [`runtime`]: resuming from the log, following the trigger, recording
//!   results exactly once; it talks to the chronicler and the data view
//!   through `nodb_client`.
//! - [`effects`]: HTTP calls with timeouts, retries and idempotency keys.
//! - [`status`]: each envoy's lag, effects in flight, retries and failures,
//!   as `/health` and `/metrics`.
//! - [`webhook`]: the generic webhook envoy, which needs no code.
//! - [`lease`]: one active instance per envoy name (`--lease`): a lease in
//!   a NATS JetStream key-value bucket; the envoy runs only while its
//!   process holds it.
//!
//! Applications define their own envoys in their own crates (the demo's
//! `reorder` is in `apps/warehouse`).

mod condition;
pub mod definition;
pub mod effects;
pub mod lease;
pub mod runtime;
pub mod status;
pub mod webhook;

pub use definition::{Config, Envoy, Event, Handler, Pick, ResultAction, Selector, Trigger};
pub use effects::{Effects, RetryPolicy};
pub use runtime::{Settings, run};
