//! The chronicler: the accepted, ordered, durable history of actions, and
//! the only writer of it.
//!
//! It owns the log (segment files on local disk by default; a replicated
//! backend can implement the same [`log::Log`] trait), assigns every accepted
//! action its gap-free `seq` and `ts`, enforces exactly-once acceptance per
//! client (`<client>:<n>`), and acknowledges only what is durable. It never
//! interprets actions or runs reducers.
//!
//! # Modules
//!
//! - [`action`]: actions with raw JSON payloads, validated and committed.
//! - [`log`]: the storage — records, segments, recovery, group commit, reads,
//!   and the index of the seqs `@@nodb/redact` actions redact.
//! - [`metrics`]: counters and histograms for `GET /metrics`.
//! - [`server`]: the HTTP API (ingest, stream, health, metrics) over a [`log::Log`].

pub mod action;
pub mod log;
pub mod metrics;
pub mod server;
