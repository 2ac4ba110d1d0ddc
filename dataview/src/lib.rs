//! Data views: named state trees computed from the chronicler's history by
//! pure reducers over [`nodb_shared::Tree`].
//!
//! A data view follows the chronicler's stream from the seq after its last
//! snapshot, applies each action with its reducers, diffs old and new state
//! with [`nodb_shared::diff::diff`], and streams exactly one patch per seq
//! to every client over WebSockets; it snapshots to object storage. It never
//! writes history except by relaying dispatches to the chronicler.
//!
//! # Modules
//!
//! - [`reducer`]: the reducer API — [`reducer::View`], [`reducer::Rejection`],
//!   [`reducer::combine`] (Redux's `combineReducers`), typed payloads.
//! - [`app`]: [`app::App`], what an application gives a data view: its
//!   views, which change together. Applications live in their own crates
//!   (the demo's is `apps/warehouse`); [`json_doc`] is the generic `json`
//!   app, a JSON document patched with RFC 6902, which needs no code.
//! - [`engine`]: an app's views at one seq, moved forward one action at a
//!   time: reducers, control actions, caught panics, one patch per view.
//!
//! - [`hub`]: the views' recent history, shared by every client: catch-up
//!   patches, coalescing and snapshots for clients that fall behind.
//! - [`follow`]: following the chronicler's stream, with back-off.
//! - [`history`]: past states in bounded time (checkpoints, a cache, a
//!   limit on concurrent replays), for `?at=N` and exact streams.
//! - [`exact`]: the exact stream, one message per seq and never combined,
//!   for clients that need every transition (envoys, audit tools).
//! - [`snapshot`]: snapshots in object storage, and recovery from them.
//! - [`replay`]: healing: replay the history with this binary's reducers
//!   and compare every view, seq by seq, with a running data view.
//! - [`service`]: [`service::Settings`] (with `validate`) and
//!   [`service::start`], which wire the parts above together.
//! - `session`: a client's session on the ordinary stream (the shared
//!   session of `nodb_viewserver`, with rejections and the dispatch relay).
//! - [`server`]: the HTTP and WebSocket service; [`web`]: the client
//!   library and the demo page it serves.
//! - [`inspect`]: the history page `/inspect` and what it reads,
//!   `GET /history` and `GET /views/{name}/patch?seq=N`.

pub mod app;
pub mod batch;
pub mod engine;
pub mod exact;
pub mod follow;
pub mod history;
pub mod hub;
pub mod inspect;
pub mod json_doc;
pub mod redaction;
pub mod reducer;
pub mod replay;
#[cfg(test)]
mod router_tests;
pub mod server;
pub mod service;
mod session;
pub mod snapshot;
#[cfg(test)]
mod test_app;
pub mod web;
