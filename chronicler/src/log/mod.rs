//! The log: where accepted actions become durable history.
//!
//! - [`record`]: the framed, checksummed, hash-chained record.
//! - [`segment`]: segment files (header, preallocation, sealing).
//! - [`scan`]: the one pass over a directory that recovery and `verify` share.
//! - [`head`]: the head file, recording how far the log has reached.
//! - [`dedup`]: the exactly-once table of the latest actions per client,
//!   with their content hashes.
//! - [`stage`]: deciding a write against the exactly-once table and
//!   encoding its records, for every backend's writer.
//! - [`group_commit`]: the writer thread that owns the active segment and
//!   makes each batch durable with one `fdatasync`; [`limits`]: the bounds
//!   of one write, which recovery relies on.
//! - `read_state`: what the writer publishes for readers (segment indexes,
//!   the in-memory tail, clients' positions, the redaction index, the
//!   durable head).
//! - [`redactions`]: which seqs `@@nodb/redact` actions redact now, built
//!   by recovery's scan and kept up to date by the writer.
//! - [`file_log`]: [`FileLog`], the embedded backend tying these together,
//!   with the in-memory tail and disk reads that serve consumers.
//!
//! - [`jetstream`]: [`JetStreamLog`], the replicated backend in a NATS
//!   JetStream stream that several chroniclers share.
//!
//! The service talks to a log only through the [`Log`] trait.

pub mod dedup;
pub mod file_log;
pub mod group_commit;
pub mod head;
#[cfg(test)]
mod integrity_tests;
pub mod jetstream;
pub mod limits;
mod read_state;
pub mod record;
pub mod redactions;
pub mod scan;
pub mod segment;
pub mod stage;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::action::IncomingAction;
use nodb_shared::protocol::{Ack, ActionId};
use tokio::sync::watch;

pub use file_log::{FileLog, LogConfig};
pub use jetstream::{JetStreamConfig, JetStreamLog};

/// Actions to append with one durable write.
#[derive(Debug)]
pub struct AppendBatch {
    /// Validated actions with their parsed ids, in order.
    pub actions: Vec<(ActionId, IncomingAction)>,
    /// The authenticated client, if any; stored with each action.
    pub client: Option<String>,
    /// Whether one refused action refuses them all.
    pub atomicity: Atomicity,
}

/// How the actions of one [`AppendBatch`] stand or fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atomicity {
    /// A `POST /actions` batch: one out-of-order action refuses the batch.
    AllOrNothing,
    /// Independent dispatches that merely travel together (a socket's
    /// pipelined messages): each is accepted or refused on its own.
    EachAlone,
}

/// What became of one action of a batch.
pub type Outcome = Result<Ack, AppendError>;

/// Why an append was refused. Nothing of the batch was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// An action's number skips ahead of the client's next one.
    #[error("action {id} is out of order: the next action expected from client {client:?} is number {expected}")]
    OutOfOrder {
        /// The action's id.
        id: String,
        /// Its client.
        client: String,
        /// The number expected next.
        expected: u64,
    },
    /// An action re-uses the id of an accepted action but differs from it
    /// (type, payload or meta). Checked against each client's last action,
    /// and against its latest [`RECENT`](dedup::RECENT) while it is recently
    /// active (see [`dedup`]).
    #[error(
        "action {id} re-uses the id of a different action already accepted from client {client:?}: a re-send must be the same action (type, payload and meta); the next new action from this client is number {expected}"
    )]
    IdReused {
        /// The action's id.
        id: String,
        /// Its client.
        client: String,
        /// The number expected next from this client.
        expected: u64,
    },
    /// The log cannot write now (disk full, I/O error); retry later with
    /// the same ids (re-sends are never recorded twice).
    #[error("the log cannot write now: {0}; retry later with the same ids")]
    Unavailable(String),
    /// The request is larger than one write may be.
    #[error("the request is too large for one write (limit {limit} bytes); send fewer actions at a time")]
    TooLarge {
        /// The limit in encoded bytes.
        limit: usize,
    },
    /// The chronicler is shutting down.
    #[error("the chronicler is shutting down")]
    ShuttingDown,
}

/// A committed action as read back: its seq and its JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The seq.
    pub seq: u64,
    /// The committed action as JSON text (no trailing newline).
    pub json: Bytes,
}

/// How much one read may return.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// At most this many entries.
    pub max_entries: usize,
    /// Stop once this many bytes of JSON are collected.
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits { max_entries: 4096, max_bytes: 4 * 1024 * 1024 }
    }
}

/// Errors opening or reading a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O error on a file or directory.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A damaged or altered record before the tail of the log.
    #[error(
        "the log is corrupt in segment {}, at offset {offset} (seq {seq}): {reason}. Run `nodb log verify --data DIR` for a report; the chronicler will not start on a damaged history",
        segment.display()
    )]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// The byte offset of the bad record or header.
        offset: u64,
        /// The seq that belongs there.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The segments end before the seq the head file says the log reached.
    #[error(
        "acknowledged history is missing: the log had reached seq {recorded} (its HEAD file says so) but its segments end at seq {found}: {detail}. Restore the segments from a backup; the chronicler will not start on a shortened history"
    )]
    Shortened {
        /// The head the head file recorded.
        recorded: u64,
        /// Where the readable segments end.
        found: u64,
        /// Why: missing segments, or damage that hides the rest.
        detail: String,
    },
    /// The chain hash at the recorded head differs from the head file's.
    #[error(
        "the log was rewritten: the chain hash at seq {seq} is {found}, but the HEAD file recorded {recorded} when it was written. The chronicler will not start on an altered history"
    )]
    Rewritten {
        /// The recorded head seq.
        seq: u64,
        /// The hash the head file recorded (hex).
        recorded: String,
        /// The hash the segments give at that seq (hex).
        found: String,
    },
    /// The head file exists but cannot be used.
    #[error("{reason}. The chronicler will not start without knowing how far the log reached")]
    Head {
        /// The head file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The replicated log (NATS JetStream) cannot be used: no server is
    /// reachable, or its stream is damaged, shortened or not a nodb log.
    #[error("the JetStream log (stream {stream}): {reason}")]
    JetStream {
        /// The stream's name.
        stream: String,
        /// What is wrong.
        reason: String,
    },
    /// The data directory is in use by another chronicler.
    #[error("the data directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
}

/// A client's last durable action (`GET /clients/{client}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClientPosition {
    /// Its number `n` in the id `<client>:<n>`.
    pub last: u64,
    /// Its seq.
    pub seq: u64,
}

/// The answer to a submitted batch, once it is durable: one outcome per
/// action, or why nothing of it was appended.
pub type PendingAcks = BoxFuture<'static, Result<Vec<Outcome>, AppendError>>;

/// A durable, totally ordered, exactly-once log of actions.
pub trait Log: Send + Sync + 'static {
    /// Queues `batch` for appending. When the returned future completes the
    /// batch has its place in the queue: batches submitted one after another
    /// by one caller are decided in that order (so a client may pipeline
    /// its actions 1, 2, 3 without waiting). The inner future answers once
    /// the batch is durable: one ack per action (re-sends get their original
    /// seq and `duplicate: true`; a different action under a used id is
    /// refused with [`AppendError::IdReused`]), or why nothing of it was
    /// appended.
    fn submit(&self, batch: AppendBatch) -> BoxFuture<'static, Result<PendingAcks, AppendError>>;

    /// Appends `batch` and answers once it is durable: the acks, or the
    /// first refusal.
    fn append(&self, batch: AppendBatch) -> BoxFuture<'static, Result<Vec<Ack>, AppendError>> {
        let submitted = self.submit(batch);
        Box::pin(async move { submitted.await?.await?.into_iter().collect() })
    }

    /// The seq of the last durable action, updated as the log grows.
    fn head(&self) -> watch::Receiver<u64>;

    /// Where `client`'s durable actions end: its last action's number and
    /// seq; `None` if it has none.
    fn client(&self, client: &str) -> Option<ClientPosition>;

    /// The chain hash after record `seq` (for 0, the hash before the first
    /// record); `None` when the log has not reached `seq`. The hash at the
    /// head, kept by someone else, anchors the whole history before it
    /// (`nodb log verify --expect SEQ:HASH`).
    fn hash_at(&self, seq: u64) -> BoxFuture<'static, Result<Option<record::Hash>, LogError>>;

    /// Committed actions from seq `from` on, up to the head and `limits`;
    /// empty when `from` is past the head.
    fn read(&self, from: u64, limits: ReadLimits) -> BoxFuture<'static, Result<Vec<LogEntry>, LogError>>;

    /// The seqs from `from` to `to` (inclusive) that are redacted now,
    /// each with the seq of the `@@nodb/redact` action in force over it,
    /// in seq order (see [`redactions`]). Every redaction up to the head a
    /// reader has seen is included.
    fn redacted(&self, from: u64, to: u64) -> Vec<(u64, u64)>;

    /// The first of `seqs` that is a `@@nodb/redact` action that took
    /// effect (a redaction or an undo), up to the head: a redaction may not
    /// name one (see [`redactions`]).
    fn redaction_among(&self, seqs: &[u64]) -> Option<u64>;

    /// Why the log cannot take appends now (its store is unreachable or
    /// damaged), for `/health`; `None` when it can.
    fn trouble(&self) -> Option<String> {
        None
    }
}
