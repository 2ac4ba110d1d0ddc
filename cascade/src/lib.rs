//! Cascaded views: views derived from other views' public streams.
//!
//! A cascade subscribes to upstream views over the same client protocol a
//! browser uses, keeps a replica of each by applying their patches, and
//! serves its own derived state over that same protocol, with `sources`
//! naming the upstream seqs it reflects. It never reads the log or another
//! service's storage.
//!
//! This crate is filled by the issue "Cascaded views"; it is empty until then.
