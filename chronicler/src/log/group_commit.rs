//! Group commit: one writer thread owns the active segment. Every append
//! queued while a write is in flight goes into the next write; one
//! `fdatasync` covers the whole batch, and only then is anyone answered.
//!
//! The writer also owns the exactly-once table, so deciding whether an
//! action is new, a re-send or out of order happens in log order. A batch
//! that fails to write changes nothing: its table updates are undone, its
//! seqs are reused, and the bytes it may have left are overwritten (or
//! zeroed) by the next write.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::head::{HeadFile, Recorded};
use super::limits::INDEX_EVERY;
use super::read_state::{SegmentIndex, Shared};
use super::record::{self, Hash};
use super::segment::{self, HEADER_LEN};
use super::stage::{AckResult, Staged, Stager, encoded_size};
use super::{AppendBatch, AppendError};
use crate::metrics::Metrics;

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
    /// The exactly-once table and the head of the chain.
    pub(crate) stager: Stager,
    /// The latest `ts` given (or found in the log at start): time in the
    /// log never goes backwards, even when the clock does.
    pub(crate) last_ts: u64,
    pub(crate) head_file: HeadFile,
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: Arc<Metrics>,
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
        if let Err(e) =
            super::dedup::checkpoint::save(&self.dir, &self.stager.table, self.stager.head, &self.stager.hash)
        {
            tracing::warn!(error = %e, "could not save the exactly-once checkpoint; the next start rebuilds it from the log");
        }
        tracing::info!(head = self.stager.head, "log writer stopped");
    }

    fn write_batch(&mut self, requests: Vec<(AppendBatch, Reply)>) {
        let mut batch = self.stager.begin();
        let ts = now_ms().max(self.last_ts);
        let mut replies = Vec::with_capacity(requests.len());
        for (req, reply) in requests {
            let result = self.stager.stage(&req, ts, &mut batch);
            replies.push((reply, result));
        }
        if batch.records.is_empty() {
            // Only duplicates and refusals: nothing to write.
            return answer(replies);
        }
        match self.persist(&mut batch) {
            Ok(()) => {
                self.last_ts = ts;
                // Before anyone is answered, so the head file never trails
                // an acknowledged write (short of a power cut).
                let now = Recorded { seq: self.stager.head, hash: self.stager.hash };
                if let Err(e) = self.head_file.write(now) {
                    tracing::warn!(error = %e, "could not record the head in the HEAD file");
                }
                self.publish(&batch);
                answer(replies);
            }
            Err(e) => {
                tracing::error!(error = %e, "writing a batch to the log failed; nothing of it is acknowledged");
                self.metrics.write_errors.fetch_add(1, Relaxed);
                self.stager.undo(&mut batch);
                let message = if e.kind() == std::io::ErrorKind::StorageFull {
                    "the disk is full".to_string()
                } else {
                    format!("I/O error ({e}); the write may or may not have reached the disk")
                };
                let replies = replies
                    .into_iter()
                    .map(|(tx, r)| (tx, r.and(Err(AppendError::Unavailable(message.clone())))))
                    .collect();
                answer(replies);
            }
        }
    }

    /// Ends the batch with its commit mark, writes it and syncs it; rolls
    /// the segment first if full.
    fn persist(&mut self, batch: &mut Staged) -> std::io::Result<()> {
        let write_len = (batch.buf.len() + record::COMMIT_LEN) as u64;
        if self.pos > HEADER_LEN && self.pos + write_len > self.segment_size {
            self.roll(batch.records[0].0, batch.start().1)?;
        }
        record::encode_commit(&mut batch.buf, self.stager.head, &self.stager.hash, self.pos);
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
    fn publish(&mut self, batch: &Staged) {
        let index: Vec<(u64, u64)> = batch
            .records
            .iter()
            .filter(|(seq, _, _)| (seq - self.segment_first).is_multiple_of(INDEX_EVERY))
            .map(|(seq, off, _)| (*seq, self.pos + *off as u64))
            .collect();
        self.pos += records_end(batch) as u64 + record::COMMIT_LEN as u64;
        self.dirty_end = self.dirty_end.max(self.pos);
        let entries = batch.records.iter().map(|(seq, _, json)| (*seq, json.clone()));
        let clients = batch.touched.iter().filter_map(|c| self.stager.table.last(c).map(|l| (c.as_str(), l)));
        let segment_first = self.segment_first;
        let place = |segments: &mut Vec<SegmentIndex>| {
            if let Some(seg) = segments.iter_mut().rev().find(|seg| seg.first_seq == segment_first) {
                seg.index.extend(index);
            }
        };
        self.shared.publish(place, entries, clients, self.stager.head, self.stager.hash);
        self.metrics.appends.fetch_add(batch.records.len() as u64, Relaxed);
        self.metrics.batch_size.observe(batch.records.len() as f64);
        self.metrics.head_seq.store(self.stager.head, Relaxed);
    }
}

/// [`Log::submit`](super::Log::submit) for a log whose writer takes
/// [`Request`]s on `tx`: queued once sent, answered once durable.
pub(crate) fn submit(
    tx: mpsc::Sender<Request>,
    batch: AppendBatch,
) -> futures_util::future::BoxFuture<'static, Result<super::PendingAcks, AppendError>> {
    Box::pin(async move {
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(Request::Append(batch, reply_tx)).await.map_err(|_| AppendError::ShuttingDown)?;
        let pending: super::PendingAcks =
            Box::pin(async move { reply_rx.await.map_err(|_| AppendError::ShuttingDown)? });
        Ok(pending)
    })
}

/// Sends each requester its answer.
pub(crate) fn answer(replies: Vec<(Reply, AckResult)>) {
    for (tx, result) in replies {
        // The requester may have gone away; the action is durable anyway.
        let _ = tx.send(result);
    }
}

/// Where the batch's records end in `buf` (before the commit mark and any
/// zero padding).
fn records_end(batch: &Staged) -> usize {
    let (_, last_off, _) = &batch.records[batch.records.len() - 1];
    let last_len = u32::from_le_bytes(batch.buf[*last_off..*last_off + 4].try_into().unwrap_or_default()) as usize;
    *last_off + record::FRAME_HEADER + last_len
}

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
