//! The chronicler: the accepted, ordered, durable history of actions, and
//! the only writer of it.
//!
//! It owns the log (segment files on local disk by default, NATS JetStream
//! in scale-out mode), assigns every accepted action its gap-free `seq` and
//! `ts`, enforces exactly-once acceptance per client (`<client>:<n>`), and
//! acknowledges only what is durable. It serves `POST /actions`, the `/ws`
//! socket and the `GET /actions?from=N` stream. It never interprets actions
//! or runs reducers.
//!
//! This crate is filled by the issue "The chronicler"; it is empty until then.
