//! Group commit: one writer thread owns the active segment. Every append
//! queued while a write is in flight goes into the next write; one
//! `fdatasync` covers the whole batch, and only then is anyone answered.
//!
//! The writer also owns the exactly-once table, so deciding whether an
//! action is new, a re-send or out of order happens in log order. A batch
//! that fails to write changes nothing: its table updates are undone, its
//! seqs are reused, and the bytes it may have left are overwritten (or
//! zeroed) by the next write.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use nodb_shared::protocol::Ack;
use tokio::sync::{mpsc, oneshot};

use super::dedup::{Check, ClientEntry, DedupTable, content_hash};
use super::head::{HeadFile, Recorded};
use super::limits::{INDEX_EVERY, MAX_REQUEST_BYTES};
use super::read_state::Shared;
use super::record::{self, Hash};
use super::segment::{self, HEADER_LEN};
use super::{AppendBatch, AppendError, Atomicity, Outcome};
use crate::action::IncomingAction;
use crate::metrics::Metrics;

/// At most how many bytes a request encodes to (record framing, committed
/// fields and the action itself, with every string escaped as JSON
/// escapes it). Recovery relies on writes being no larger than the limits
/// say, so this may overestimate, never under.
fn encoded_size(batch: &AppendBatch) -> usize {
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

/// What the writer answers for one request.
pub type AckResult = Result<Vec<Outcome>, AppendError>;

/// Where the writer sends that answer.
pub type Reply = oneshot::Sender<AckResult>;

/// A message to the writer.
pub enum Request {
    /// Append a batch and answer on `reply` once durable.
    Append(AppendBatch, Reply),
    /// Finish what is queued before this, then stop.
    Stop,
}

/// The writer's state: the active segment and the head of the chain.
pub struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) file: File,
    pub(crate) segment_first: u64,
    /// Where the next record goes in the active segment.
    pub(crate) pos: u64,
    /// How far bytes may have been written (by a failed write) beyond `pos`.
    pub(crate) dirty_end: u64,
    pub(crate) segment_size: u64,
    pub(crate) max_batch_bytes: usize,
    pub(crate) spin: std::time::Duration,
    pub(crate) head: u64,
    pub(crate) hash: Hash,
    /// The latest `ts` given (or found in the log at start): time in the
    /// log never goes backwards, even when the clock does.
    pub(crate) last_ts: u64,
    pub(crate) head_file: HeadFile,
    pub(crate) table: DedupTable,
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: Arc<Metrics>,
}

/// Per-batch scratch space.
struct Batch {
    buf: Vec<u8>,
    /// `(seq, offset in buf, json)` of every new record.
    records: Vec<(u64, usize, Bytes)>,
    /// Table entries as they were before this batch touched them.
    undo: Vec<(String, Option<ClientEntry>)>,
    touched: HashSet<String>,
    replies: Vec<(Reply, AckResult)>,
}

impl Writer {
    /// Runs until [`Request::Stop`] or until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut stopping = false;
        while !stopping {
            let first = {
                // Waking a sleeping thread costs tens of microseconds on a
                // busy machine; a client waiting for its ack usually sends
                // again within a round trip, so poll briefly before sleeping.
                let spin_until = Instant::now() + self.spin;
                loop {
                    match rx.try_recv() {
                        Ok(r) => break Some(r),
                        Err(mpsc::error::TryRecvError::Disconnected) => break None,
                        Err(mpsc::error::TryRecvError::Empty) if Instant::now() < spin_until => std::hint::spin_loop(),
                        Err(mpsc::error::TryRecvError::Empty) => break rx.blocking_recv(),
                    }
                }
            };
            let Some(first) = first else { break };
            let mut requests = Vec::new();
            let mut queued_bytes;
            match first {
                Request::Append(b, r) => {
                    queued_bytes = encoded_size(&b);
                    requests.push((b, r));
                }
                Request::Stop => break,
            }
            // Everything already queued joins this write, up to the batch
            // size (so one write is at most a batch plus one request).
            while queued_bytes < self.max_batch_bytes {
                match rx.try_recv() {
                    Ok(Request::Append(b, r)) => {
                        queued_bytes += encoded_size(&b);
                        requests.push((b, r));
                    }
                    Ok(Request::Stop) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.write_batch(requests);
            if let Err(e) = self.head_file.sync_if_due() {
                tracing::warn!(error = %e, "could not sync the HEAD file");
            }
        }
        if let Err(e) = self.head_file.sync() {
            tracing::warn!(error = %e, "could not sync the HEAD file");
        }
        // Failed batches were undone, so the table is the log's at `head`;
        // the next start loads it instead of hashing every record.
        if let Err(e) = super::dedup::checkpoint::save(&self.dir, &self.table, self.head, &self.hash) {
            tracing::warn!(error = %e, "could not save the exactly-once checkpoint; the next start rebuilds it from the log");
        }
        tracing::info!(head = self.head, "log writer stopped");
    }

    fn write_batch(&mut self, requests: Vec<(AppendBatch, Reply)>) {
        let mut batch = Batch {
            buf: Vec::with_capacity(64 * 1024),
            records: Vec::new(),
            undo: Vec::new(),
            touched: HashSet::new(),
            replies: Vec::with_capacity(requests.len()),
        };
        let start_head = self.head;
        let start_hash = self.hash;
        let ts = now_ms().max(self.last_ts);
        for (req, reply) in requests {
            let result = if encoded_size(&req) > MAX_REQUEST_BYTES {
                Err(AppendError::TooLarge { limit: MAX_REQUEST_BYTES })
            } else {
                self.stage(req, ts, &mut batch)
            };
            batch.replies.push((reply, result));
        }
        if batch.records.is_empty() {
            // Only duplicates and refusals: nothing to write.
            return self.answer(batch.replies);
        }
        match self.persist(&mut batch, start_hash) {
            Ok(()) => {
                self.last_ts = ts;
                // Before anyone is answered, so the head file never trails
                // an acknowledged write (short of a power cut).
                if let Err(e) = self.head_file.write(Recorded { seq: self.head, hash: self.hash }) {
                    tracing::warn!(error = %e, "could not record the head in the HEAD file");
                }
                self.publish(&batch);
                self.answer(batch.replies);
            }
            Err(e) => {
                tracing::error!(error = %e, "writing a batch to the log failed; nothing of it is acknowledged");
                self.metrics.write_errors.fetch_add(1, Relaxed);
                for (client, entry) in batch.undo.drain(..).rev() {
                    self.table.restore(&client, entry);
                }
                self.head = start_head;
                self.hash = start_hash;
                let message = if e.kind() == std::io::ErrorKind::StorageFull {
                    "the disk is full".to_string()
                } else {
                    format!("I/O error ({e}); the write may or may not have reached the disk")
                };
                let replies = batch
                    .replies
                    .into_iter()
                    .map(|(tx, r)| (tx, r.and(Err(AppendError::Unavailable(message.clone())))))
                    .collect();
                self.answer(replies);
            }
        }
    }

    /// Decides every action of one request and encodes the new ones. The
    /// request is all or nothing: one action out of order, or re-using an
    /// id for a different action, refuses it whole.
    fn stage(&mut self, req: AppendBatch, ts: u64, batch: &mut Batch) -> AckResult {
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
        for ((id, action), decision) in req.actions.into_iter().zip(decisions) {
            let ack = match decision {
                Decision::New => {
                    if batch.touched.insert(id.client.clone()) {
                        batch.undo.push((id.client.clone(), self.table.entry(&id.client)));
                    }
                    let seq = self.head + 1;
                    let json = Bytes::from(action.committed_json(seq, ts, req.client.as_deref()));
                    let offset = batch.buf.len();
                    self.hash = record::encode(&mut batch.buf, &self.hash, seq, &action.id, &json);
                    self.table.record(&id, seq, content_hash(&json));
                    batch.records.push((seq, offset, json));
                    self.head = seq;
                    Ok(Ack { id: action.id, seq: Some(seq), duplicate: false })
                }
                Decision::Duplicate(seq) => Ok(Ack { id: action.id, seq, duplicate: true }),
                Decision::DuplicateOf(j) => {
                    let seq = acks[j].as_ref().ok().and_then(|a| a.seq);
                    Ok(Ack { id: action.id, seq, duplicate: true })
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

    /// Ends the batch with its commit mark, writes it and syncs it; rolls
    /// the segment first if full. `prev_hash` is the chain hash before the
    /// batch.
    fn persist(&mut self, batch: &mut Batch, prev_hash: Hash) -> std::io::Result<()> {
        let write_len = (batch.buf.len() + record::COMMIT_LEN) as u64;
        if self.pos > HEADER_LEN && self.pos + write_len > self.segment_size {
            self.roll(batch.records[0].0, prev_hash)?;
        }
        record::encode_commit(&mut batch.buf, self.head, &self.hash, self.pos);
        let end = self.pos + batch.buf.len() as u64;
        if end < self.dirty_end {
            // A failed write left bytes past here: zero them in this write,
            // so recovery never mistakes them for records.
            batch.buf.resize((self.dirty_end - self.pos) as usize, 0);
        }
        self.dirty_end = self.dirty_end.max(self.pos + batch.buf.len() as u64);
        self.file.write_all_at(&batch.buf, self.pos)?;
        let t = Instant::now();
        self.file.sync_data()?;
        self.metrics.fsync_seconds.observe(t.elapsed().as_secs_f64());
        Ok(())
    }

    /// Starts a new segment at `first_seq`, then seals the full one.
    fn roll(&mut self, first_seq: u64, prev_hash: Hash) -> std::io::Result<()> {
        // A failed write may have left bytes after the last record: the
        // full segment must end cleanly before the log moves on, or it
        // would read as damaged once it is no longer the last.
        if self.dirty_end > self.pos {
            let zeros = vec![0u8; (self.dirty_end - self.pos) as usize];
            self.file.write_all_at(&zeros, self.pos)?;
            self.file.sync_data()?;
            self.dirty_end = self.pos;
        }
        let header = segment::Header::new(first_seq, prev_hash);
        let file = segment::create(&self.dir, header, self.segment_size)?;
        if let Err(e) = self.head_file.sync() {
            tracing::warn!(error = %e, "could not sync the HEAD file");
        }
        let old = segment::path_for(&self.dir, self.segment_first);
        if let Err(e) = segment::seal(&old, self.pos) {
            // The data is safe and synced; the next start finishes the seal.
            tracing::warn!(segment = %old.display(), error = %e, "could not seal a full segment");
        }
        tracing::debug!(first_seq, "rolled to a new segment");
        self.file = file;
        self.segment_first = first_seq;
        self.pos = HEADER_LEN;
        self.dirty_end = HEADER_LEN;
        self.shared.add_segment(first_seq, segment::path_for(&self.dir, first_seq));
        Ok(())
    }

    /// Makes the written batch visible to readers and updates metrics.
    fn publish(&mut self, batch: &Batch) {
        let index: Vec<(u64, u64)> = batch
            .records
            .iter()
            .filter(|(seq, _, _)| (seq - self.segment_first).is_multiple_of(INDEX_EVERY))
            .map(|(seq, off, _)| (*seq, self.pos + *off as u64))
            .collect();
        self.pos += batch.records_end() as u64 + record::COMMIT_LEN as u64;
        self.dirty_end = self.dirty_end.max(self.pos);
        let entries = batch.records.iter().map(|(seq, _, json)| (*seq, json.clone()));
        let clients = batch.touched.iter().filter_map(|c| self.table.last(c).map(|l| (c.as_str(), l)));
        self.shared.publish(self.segment_first, index, entries, clients, self.head, self.hash);
        self.metrics.appends.fetch_add(batch.records.len() as u64, Relaxed);
        self.metrics.batch_size.observe(batch.records.len() as f64);
        self.metrics.head_seq.store(self.head, Relaxed);
    }

    fn answer(&self, replies: Vec<(Reply, AckResult)>) {
        for (tx, result) in replies {
            // The requester may have gone away; the action is durable anyway.
            let _ = tx.send(result);
        }
    }
}

impl Batch {
    /// Where the batch's records end in `buf` (before the commit mark and
    /// any zero padding).
    fn records_end(&self) -> usize {
        let (_, last_off, _) = &self.records[self.records.len() - 1];
        let last_len = u32::from_le_bytes(self.buf[*last_off..*last_off + 4].try_into().unwrap_or_default()) as usize;
        *last_off + record::FRAME_HEADER + last_len
    }
}

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
            let batch = AppendBatch { actions, client: client.clone(), atomicity: super::super::Atomicity::AllOrNothing };
            let mut buf = Vec::new();
            for (_, a) in &batch.actions {
                let json = a.committed_json(u64::MAX, u64::MAX, client.as_deref());
                record::encode(&mut buf, &[0; 32], u64::MAX, &a.id, &json);
            }
            prop_assert!(encoded_size(&batch) >= buf.len(), "estimate {} < actual {}", encoded_size(&batch), buf.len());
        }
    }
}
