//! Deciding what to append: which actions of a request are new, which are
//! re-sends of accepted ones, and which are refused, in log order against
//! the exactly-once table, and the framed records of the new ones. Every
//! log backend's writer stages with a [`Stager`] and then makes the
//! [`Staged`] bytes durable its own way (a segment file and `fdatasync`,
//! or a replicated publish); a write that fails is undone with
//! [`Stager::undo`], so the table, head and hash are the log's again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use nodb_shared::protocol::Ack;

use super::dedup::{Check, ClientEntry, DedupTable, content_hash};
use super::limits::MAX_REQUEST_BYTES;
use super::record::{self, Hash};
use super::{AppendBatch, AppendError, Atomicity, Outcome};
use crate::action::IncomingAction;
use crate::metrics::Metrics;

/// At most how many bytes a request encodes to (record framing, committed
/// fields and the action itself, with every string escaped as JSON
/// escapes it). Recovery relies on writes being no larger than the limits
/// say, so this may overestimate, never under.
pub(crate) fn encoded_size(batch: &AppendBatch) -> usize {
    let client = batch.client.as_deref().map_or(0, |c| escaped_len(c) + 12);
    batch
        .actions
        .iter()
        .map(|(_, a)| {
            let meta: usize = a
                .meta
                .as_ref()
                .map_or(0, |m| 10 + m.iter().map(|(k, v)| escaped_len(k) + escaped_len(v) + 6).sum::<usize>());
            // Framing, seq, ts, hash, keys and punctuation; the id is stored
            // twice (beside the JSON and in it).
            192 + a.id.len()
                + escaped_len(&a.id)
                + escaped_len(&a.kind)
                + a.payload.as_ref().map_or(4, |p| p.get().len())
                + meta
                + client
        })
        .sum()
}

/// The length of `s` as a JSON string's contents: control characters take
/// six bytes (`\u0001`), quotes and backslashes two.
fn escaped_len(s: &str) -> usize {
    s.bytes()
        .map(|b| {
            if b < 0x20 {
                6
            } else if b == b'"' || b == b'\\' {
                2
            } else {
                1
            }
        })
        .sum()
}

/// What a writer answers for one request.
pub type AckResult = Result<Vec<Outcome>, AppendError>;

/// The state new actions are decided against: the exactly-once table and
/// the head of the chain.
pub struct Stager {
    /// The latest actions of every client.
    pub table: DedupTable,
    /// The last seq.
    pub head: u64,
    /// The chain hash after it.
    pub hash: Hash,
    /// Counts re-sends and refusals.
    pub metrics: Arc<Metrics>,
}

/// One write being staged: the encoded records and how to undo them.
pub struct Staged {
    /// The framed records, back to back.
    pub buf: Vec<u8>,
    /// `(seq, offset in buf, json)` of every new record.
    pub records: Vec<(u64, usize, Bytes)>,
    /// Table entries as they were before this write touched them.
    undo: Vec<(String, Option<ClientEntry>)>,
    /// The clients with new actions in this write.
    pub touched: HashSet<String>,
    /// The head and hash before this write.
    start: (u64, Hash),
}

impl Staged {
    /// The seq and chain hash before this write.
    pub fn start(&self) -> (u64, Hash) {
        self.start
    }
}

impl Stager {
    /// A new write at the current head.
    pub fn begin(&self) -> Staged {
        Staged {
            buf: Vec::with_capacity(64 * 1024),
            records: Vec::new(),
            undo: Vec::new(),
            touched: HashSet::new(),
            start: (self.head, self.hash),
        }
    }

    /// Undoes everything `batch` staged: the table, head and hash are as
    /// they were at [`Stager::begin`].
    pub fn undo(&mut self, batch: &mut Staged) {
        for (client, entry) in batch.undo.drain(..).rev() {
            self.table.restore(&client, entry);
        }
        (self.head, self.hash) = batch.start;
    }

    /// Decides every action of one request and encodes the new ones into
    /// `batch`, at the head. The
    /// request is all or nothing: one action out of order, or re-using an
    /// id for a different action, refuses it whole.
    pub fn stage(&mut self, req: &AppendBatch, ts: u64, batch: &mut Staged) -> AckResult {
        if encoded_size(req) > MAX_REQUEST_BYTES {
            return Err(AppendError::TooLarge { limit: MAX_REQUEST_BYTES });
        }
        enum Decision {
            New,
            /// Skips ahead or re-uses an id (in a request whose actions
            /// stand alone).
            Refused(AppendError),
            /// Accepted before this request, with its seq if recent.
            Duplicate(Option<u64>),
            /// Accepted earlier in this same request, at that index.
            DuplicateOf(usize),
        }
        // A re-send is hashed as the log would store it (rare: only
        // re-sends pay for this second encoding).
        let content = |a: &IncomingAction| content_hash(&a.committed_json(0, 0, req.client.as_deref()));
        // First pass: decide, counting earlier actions of this request, and
        // refuse the whole request if any action skips ahead or re-uses an id.
        let mut last_n: HashMap<&str, u64> = HashMap::new();
        let mut first_new: HashMap<(&str, u64), usize> = HashMap::new();
        let mut decisions = Vec::with_capacity(req.actions.len());
        for (i, (id, action)) in req.actions.iter().enumerate() {
            let client = id.client.as_str();
            let before = self.table.last_n(client);
            let last = *last_n.get(client).unwrap_or(&before);
            let reused = || AppendError::IdReused { id: id.to_string(), client: id.client.clone(), expected: last + 1 };
            let decided = if id.n == last + 1 {
                last_n.insert(client, id.n);
                first_new.insert((client, id.n), i);
                Ok(Decision::New)
            } else if id.n <= before {
                match self.table.check(id) {
                    Check::Duplicate(Some(recent)) if recent.content != content(action) => Err(reused()),
                    Check::Duplicate(recent) => Ok(Decision::Duplicate(recent.map(|r| r.seq))),
                    _ => Ok(Decision::Duplicate(None)),
                }
            } else if id.n <= last {
                let j = first_new[&(client, id.n)];
                if content(&req.actions[j].1) == content(action) { Ok(Decision::DuplicateOf(j)) } else { Err(reused()) }
            } else {
                self.metrics.out_of_order.fetch_add(1, Relaxed);
                Err(AppendError::OutOfOrder { id: id.to_string(), client: id.client.clone(), expected: last + 1 })
            };
            match decided {
                Ok(decision) => decisions.push(decision),
                Err(refusal) => match req.atomicity {
                    Atomicity::AllOrNothing => return Err(refusal),
                    Atomicity::EachAlone => decisions.push(Decision::Refused(refusal)),
                },
            }
        }
        drop((last_n, first_new));
        // Second pass: encode the new actions; acknowledge the re-sends.
        let mut acks: Vec<Outcome> = Vec::with_capacity(req.actions.len());
        for ((id, action), decision) in req.actions.iter().zip(decisions) {
            let ack = match decision {
                Decision::New => {
                    if batch.touched.insert(id.client.clone()) {
                        batch.undo.push((id.client.clone(), self.table.entry(&id.client)));
                    }
                    let seq = self.head + 1;
                    let json = Bytes::from(action.committed_json(seq, ts, req.client.as_deref()));
                    let offset = batch.buf.len();
                    self.hash = record::encode(&mut batch.buf, &self.hash, seq, &action.id, &json);
                    self.table.record(id, seq, content_hash(&json));
                    batch.records.push((seq, offset, json));
                    self.head = seq;
                    Ok(Ack { id: action.id.clone(), seq: Some(seq), duplicate: false })
                }
                Decision::Duplicate(seq) => Ok(Ack { id: action.id.clone(), seq, duplicate: true }),
                Decision::DuplicateOf(j) => {
                    let seq = acks[j].as_ref().ok().and_then(|a| a.seq);
                    Ok(Ack { id: action.id.clone(), seq, duplicate: true })
                }
                Decision::Refused(e) => Err(e),
            };
            if matches!(&ack, Ok(a) if a.duplicate) {
                self.metrics.duplicates.fetch_add(1, Relaxed);
            }
            acks.push(ack);
        }
        Ok(acks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The estimate is never below the bytes a request takes on disk,
        /// whatever its strings hold (recovery's bound on a torn write
        /// rests on it).
        #[test]
        fn the_size_estimate_is_an_upper_bound(
            kind in "[\\x00-\\x7f\"\\\\]{1,40}",
            meta in proptest::collection::btree_map("[\\x00-\\x1f\"a]{0,10}", "[\\x00-\\x1f\"\\\\é]{0,30}", 0..6),
            payload in "[1-9][0-9]{0,19}",
            client in proptest::option::of("[a-z]{1,10}"),
            n in 1usize..5,
        ) {
            let actions: Vec<_> = (1..=n)
                .map(|i| {
                    let id = format!("c:{i}");
                    let action = IncomingAction {
                        id: id.clone(),
                        kind: kind.clone(),
                        payload: Some(serde_json::value::RawValue::from_string(payload.clone()).unwrap()),
                        meta: Some(meta.clone()),
                    };
                    (id.parse().unwrap(), action)
                })
                .collect();
            let batch = AppendBatch { actions, client: client.clone(), atomicity: Atomicity::AllOrNothing };
            let mut buf = Vec::new();
            for (_, a) in &batch.actions {
                let json = a.committed_json(u64::MAX, u64::MAX, client.as_deref());
                record::encode(&mut buf, &[0; 32], u64::MAX, &a.id, &json);
            }
            prop_assert!(encoded_size(&batch) >= buf.len(), "estimate {} < actual {}", encoded_size(&batch), buf.len());
        }
    }
}
