//! The bounds of one write, shared by the writer (which keeps to them) and
//! recovery (which relies on them to tell a torn write from damage).

/// The largest request the writer takes, in encoded bytes; larger ones
/// are refused (the HTTP body limit keeps requests far below this).
pub const MAX_REQUEST_BYTES: usize = 24 * 1024 * 1024;

/// The largest `max_batch_bytes` a log may be configured with.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The largest single write: a full batch plus one request. Recovery
/// never treats more than this as a torn write.
pub const MAX_WRITE_BYTES: usize = MAX_BATCH_BYTES + MAX_REQUEST_BYTES;

/// Every how many records a segment's sparse index keeps an offset.
pub const INDEX_EVERY: u64 = 64;
