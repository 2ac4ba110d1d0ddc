//! Data views: named state trees computed from the chronicler's history by
//! pure reducers over [`nodb_shared::Tree`].
//!
//! A data view follows the chronicler's stream from the seq after its last
//! snapshot, applies each action with its reducers, diffs old and new state
//! with [`nodb_shared::diff::diff`], and streams exactly one patch per seq
//! to every client over WebSockets; it snapshots to object storage. It never
//! writes history except by relaying dispatches to the chronicler.
//!
//! This crate is filled by the issue "Data views"; it is empty until then.
