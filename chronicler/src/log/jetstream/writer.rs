//! The replicated log's writer: one task per chronicler that owns the
//! exactly-once table and the head, follows the stream, and appends.
//!
//! Several chroniclers may write one stream. Each write is one message
//! published with `Nats-Expected-Last-Sequence` set to the last message
//! this chronicler has applied, so JetStream stores it only if no other
//! write came in between: the writer decided it against the whole
//! history. A write that loses that race is undone, the writer reads the
//! messages it missed (which may hold the same client's actions, now
//! re-sends), and decides again. A publish whose answer is lost is sent
//! again unchanged (same `Nats-Msg-Id`, same expected sequence): it lands
//! once or is found among the missed messages by its id.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::message::{GENESIS_BODY, decode_write, encode_write};
use crate::log::dedup::content_hash;
use crate::log::file_log::stored_ts;
use crate::log::group_commit::{Reply, Request, answer, now_ms};
use crate::log::read_state::Shared;
use crate::log::stage::{AckResult, Stager, encoded_size};
use crate::log::{AppendBatch, AppendError};
use crate::metrics::Metrics;

/// Where each write is: `(first seq, stream sequence)`, in order.
pub type Places = Vec<(u64, u64)>;

/// How long a write keeps trying through a lost leader or connection
/// before its actions are answered "unavailable, retry".
const WRITE_DEADLINE: Duration = Duration::from_secs(20);

/// The longest pause between two tries of a publish or a read: short, so a
/// write lands soon after a new stream leader is elected (the election
/// itself takes seconds).
const RETRY_CAP: Duration = Duration::from_millis(250);

/// How long the consumer that follows the stream may yield nothing before
/// the writer asks the stream whether it has missed a message. A consumer
/// whose NATS server died stays silent, and the client notices only after
/// two missed idle heartbeats, 15 s apart and 30 s late each (about a
/// minute); meanwhile a chronicler that does not write would not see the
/// others' writes. While the stream is quiet this costs one stream info
/// request per period.
const FOLLOW_CHECK: Duration = Duration::from_secs(2);

/// The writer's state.
pub struct Writer {
    pub(super) js: jetstream::Context,
    pub(super) stream: jetstream::stream::Stream,
    pub(super) subject: String,
    pub(super) stager: Stager,
    /// The last message applied (stream sequence).
    pub(super) msg_seq: u64,
    /// The latest `ts` in the log: time in the log never goes backwards.
    pub(super) last_ts: u64,
    pub(super) shared: Arc<Shared<Places>>,
    pub(super) metrics: Arc<Metrics>,
    /// This chronicler's name in its writes' `Nats-Msg-Id`s.
    pub(super) instance: String,
    /// How many writes it has published.
    pub(super) writes: u64,
    /// The largest write, in bytes (below the server's `max_payload`).
    pub(super) max_write_bytes: usize,
    /// Set once the stream turned out damaged: no more writes.
    pub(super) damaged: Arc<std::sync::Mutex<Option<String>>>,
}

/// What became of one publish.
enum Published {
    /// Stored at this stream sequence.
    At(u64),
    /// Another write came first: catch up and decide again.
    Conflict,
    /// Not stored, or not known to be (after [`WRITE_DEADLINE`]).
    Failed(String),
}

impl Writer {
    /// An ordered consumer of the stream from the message after the last
    /// one applied.
    pub(super) async fn follow(&self) -> Result<consumer::pull::Ordered, String> {
        let config = consumer::pull::OrderedConfig {
            filter_subject: self.subject.clone(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: self.msg_seq + 1 },
            ..Default::default()
        };
        let consumer = self.stream.create_consumer(config).await.map_err(|e| e.to_string())?;
        consumer.messages().await.map_err(|e| e.to_string())
    }

    /// Applies the message at stream sequence `seq` (the one after the
    /// last applied): checks it, records its actions in the table, and
    /// publishes them to readers.
    ///
    /// # Errors
    /// What is wrong with the message: the stream is damaged.
    pub(super) fn apply(&mut self, seq: u64, body: &[u8]) -> Result<(), String> {
        if seq != self.msg_seq + 1 {
            return Err(format!("message {seq} came after message {}", self.msg_seq));
        }
        if seq == 1 {
            if body != GENESIS_BODY {
                return Err("message 1 is not a nodb log's first message: the stream is not a nodb log".into());
            }
            self.msg_seq = 1;
            return Ok(());
        }
        let records =
            decode_write(body, self.stager.head, &self.stager.hash).map_err(|e| format!("message {seq} {e}"))?;
        let mut touched = Vec::new();
        for rec in &records {
            if let Ok(id) = rec.id.parse::<nodb_shared::protocol::ActionId>() {
                self.stager.table.record(&id, rec.seq, content_hash(&rec.json));
                touched.push(id.client);
            }
        }
        let (Some(first), Some(last)) = (records.first(), records.last()) else { return Ok(()) };
        if let Some(ts) = stored_ts(&last.json) {
            self.last_ts = self.last_ts.max(ts);
        }
        let first = first.seq;
        (self.stager.head, self.stager.hash) = (last.seq, last.hash);
        self.msg_seq = seq;
        self.publish(first, records.iter().map(|r| (r.seq, r.json.clone())), touched.iter().map(String::as_str));
        Ok(())
    }

    /// Makes a write at stream sequence `msg_seq` visible to readers.
    fn publish<'a>(
        &self,
        first: u64,
        entries: impl Iterator<Item = (u64, Bytes)>,
        touched: impl Iterator<Item = &'a str>,
    ) {
        let msg_seq = self.msg_seq;
        let table = &self.stager.table;
        let clients = touched.filter_map(|c| table.last(c).map(|l| (c, l)));
        self.shared.publish(
            |places| places.push((first, msg_seq)),
            entries,
            clients,
            self.stager.head,
            self.stager.hash,
        );
        self.metrics.head_seq.store(self.stager.head, Relaxed);
    }

    /// Runs until [`Request::Stop`] or until every sender is gone,
    /// following the stream with `follow` meanwhile.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Request>, follow: consumer::pull::Ordered) {
        let mut follow = Some(follow);
        let mut carried: Option<(AppendBatch, Reply)> = None;
        // When the consumer last yielded something (or was checked).
        let mut heard = tokio::time::Instant::now();
        loop {
            let first = match carried.take() {
                Some(r) => Some(Request::Append(r.0, r.1)),
                None => tokio::select! {
                    r = rx.recv() => r,
                    m = next_message(&mut follow) => {
                        heard = tokio::time::Instant::now();
                        self.on_message(m, &mut follow).await;
                        continue;
                    }
                    () = tokio::time::sleep_until(heard + FOLLOW_CHECK) => {
                        self.check_follow(&mut follow).await;
                        heard = tokio::time::Instant::now();
                        continue;
                    }
                },
            };
            let mut requests = Vec::new();
            let mut bytes = 0;
            match first {
                Some(Request::Append(b, r)) => {
                    bytes += encoded_size(&b);
                    requests.push((b, r));
                }
                Some(Request::Stop) | None => break,
            }
            // Whatever else is queued joins this write, while it fits.
            let mut stopping = false;
            while bytes < self.max_write_bytes {
                match rx.try_recv() {
                    Ok(Request::Append(b, r)) => {
                        let size = encoded_size(&b);
                        if bytes + size > self.max_write_bytes {
                            carried = Some((b, r));
                            break;
                        }
                        bytes += size;
                        requests.push((b, r));
                    }
                    Ok(Request::Stop) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.write(requests).await;
            if stopping {
                break;
            }
        }
        if let Some((_, reply)) = carried {
            answer(vec![(reply, Err(AppendError::ShuttingDown))]);
        }
        tracing::info!(head = self.stager.head, "log writer stopped");
    }

    /// A message (or the end) from the consumer that follows the stream.
    async fn on_message(
        &mut self,
        m: Option<Result<jetstream::Message, consumer::pull::OrderedError>>,
        follow: &mut Option<consumer::pull::Ordered>,
    ) {
        match m {
            Some(Ok(msg)) => {
                let Ok(seq) = msg.info().map(|i| i.stream_sequence) else { return };
                if seq <= self.msg_seq {
                    return; // Applied already (a write of ours, or a catch-up).
                }
                if seq > self.msg_seq + 1 {
                    // Behind the consumer (it should not be): read the gap.
                    if let Err(e) = self.catch_up::<()>(&[]).await {
                        tracing::warn!(error = %e, "could not read the stream");
                    }
                    return;
                }
                if let Err(e) = self.apply(seq, &msg.payload) {
                    self.damage(e);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "following the JetStream log failed; following again");
                *follow = None;
            }
            None => *follow = None,
        }
        if follow.is_none() {
            match self.follow().await {
                Ok(f) => *follow = Some(f),
                Err(e) => tracing::warn!(error = %e, "cannot follow the JetStream log yet"),
            }
        }
    }

    /// The consumer has yielded nothing for [`FOLLOW_CHECK`]: if the stream
    /// holds a message after the last one applied, the consumer has lost
    /// it (its server died), so follow anew from there.
    async fn check_follow(&mut self, follow: &mut Option<consumer::pull::Ordered>) {
        // Appends wait meanwhile: a second at most.
        let last = match tokio::time::timeout(Duration::from_secs(1), self.stream.get_info()).await {
            Ok(Ok(info)) => info.state.last_sequence,
            Ok(Err(e)) => return tracing::debug!(error = %e, "cannot check the consumer that follows the stream"),
            Err(_) => return tracing::debug!("no answer within a second about the stream's last message"),
        };
        if last <= self.msg_seq {
            return;
        }
        tracing::warn!(
            applied = self.msg_seq,
            last,
            "the consumer that follows the stream went silent; following again"
        );
        *follow = None;
        match self.follow().await {
            Ok(f) => *follow = Some(f),
            Err(e) => tracing::warn!(error = %e, "cannot follow the JetStream log yet"),
        }
    }

    fn damage(&mut self, reason: String) {
        tracing::error!(
            reason = %reason,
            "the JetStream log is damaged; this chronicler takes no more writes (run `nodb log verify --log nats://…`)"
        );
        *self.damaged.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Decides `requests` against the log, publishes the new actions as
    /// one message, and answers once JetStream has stored it.
    async fn write(&mut self, requests: Vec<(AppendBatch, Reply)>) {
        let deadline = Instant::now() + WRITE_DEADLINE;
        // Every attempt published for these requests, with its decisions:
        // an earlier one may turn out to have landed.
        let mut attempts: Vec<(String, Vec<AckResult>)> = Vec::new();
        let mut fresh = false;
        let unavailable = |requests: Vec<(AppendBatch, Reply)>, e: AppendError| {
            answer(requests.into_iter().map(|(_, r)| (r, Err(e.clone()))).collect())
        };
        loop {
            if let Some(reason) = self.damaged.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return unavailable(requests, AppendError::Unavailable(format!("the log is damaged: {reason}")));
            }
            if Instant::now() > deadline {
                let e = "the replicated log stayed busy with other chroniclers' writes; retry with the same ids";
                return unavailable(requests, AppendError::Unavailable(e.into()));
            }
            let mut batch = self.stager.begin();
            let ts = now_ms().max(self.last_ts);
            let limit = self.max_write_bytes;
            let results: Vec<AckResult> = requests
                .iter()
                .map(|(req, _)| {
                    if encoded_size(req) > limit {
                        Err(AppendError::TooLarge { limit })
                    } else {
                        self.stager.stage(req, ts, &mut batch)
                    }
                })
                .collect();
            // A number that looks skipped ahead may be the next one after
            // an action another chronicler has just written: refuse it
            // only against the stream as it is now.
            if !fresh && results.iter().any(refuses_out_of_order) {
                self.stager.undo(&mut batch);
                fresh = true;
                match self.catch_up(&attempts).await {
                    Ok(Some(k)) => {
                        return answer(requests.into_iter().map(|(_, r)| r).zip(attempts.swap_remove(k).1).collect());
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        return unavailable(requests, AppendError::Unavailable(format!("the log cannot be read: {e}")));
                    }
                }
            }
            if batch.records.is_empty() {
                return answer(requests.into_iter().map(|(_, r)| r).zip(results).collect());
            }
            let body = Bytes::from(encode_write(&batch.buf, self.stager.head, &self.stager.hash));
            self.writes += 1;
            let id = format!("{}-{}", self.instance, self.writes);
            match self.publish_write(&id, body, deadline).await {
                Published::At(seq) if seq == self.msg_seq + 1 => {
                    self.msg_seq = seq;
                    self.last_ts = ts;
                    let first = batch.records[0].0;
                    let entries = batch.records.iter().map(|(s, _, json)| (*s, json.clone()));
                    self.publish(first, entries, batch.touched.iter().map(String::as_str));
                    self.metrics.appends.fetch_add(batch.records.len() as u64, Relaxed);
                    self.metrics.batch_size.observe(batch.records.len() as f64);
                    return answer(requests.into_iter().map(|(_, r)| r).zip(results).collect());
                }
                Published::At(_) | Published::Conflict => {
                    self.stager.undo(&mut batch);
                    attempts.push((id, results));
                    match self.catch_up(&attempts).await {
                        // One of ours landed after all: its decisions stand.
                        Ok(Some(k)) => {
                            return answer(
                                requests.into_iter().map(|(_, r)| r).zip(attempts.swap_remove(k).1).collect(),
                            );
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            return unavailable(
                                requests,
                                AppendError::Unavailable(format!("the log cannot be read: {e}")),
                            );
                        }
                    }
                }
                Published::Failed(e) => {
                    self.stager.undo(&mut batch);
                    self.metrics.write_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "publishing to the JetStream log failed");
                    let e = AppendError::Unavailable(format!(
                        "the replicated log did not confirm the write ({e}); it may or may not have been recorded"
                    ));
                    return unavailable(requests, e);
                }
            }
        }
    }

    /// Publishes one write after the last applied message, sending it
    /// again unchanged through timeouts and leader changes until
    /// `deadline`.
    async fn publish_write(&self, id: &str, body: Bytes, deadline: Instant) -> Published {
        let mut delay = Duration::from_millis(25);
        loop {
            let message =
                PublishMessage::build().payload(body.clone()).message_id(id).expected_last_sequence(self.msg_seq);
            let result = match self.js.send_publish(self.subject.clone(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(ack) => return Published::At(ack.sequence),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => return Published::Conflict,
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => return Published::Failed(e.to_string()),
                Err(e) => e,
            };
            if Instant::now() + delay > deadline {
                return Published::Failed(error.to_string());
            }
            tracing::debug!(error = %error, "publish not confirmed; sending it again");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_CAP);
        }
    }

    /// Reads and applies every message after the last applied one.
    /// Answers which of `ours` (by their ids) is among them, if one is.
    async fn catch_up<T>(&mut self, ours: &[(String, T)]) -> Result<Option<usize>, String> {
        let mut found = None;
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut delay = Duration::from_millis(25);
        loop {
            let next = self.msg_seq + 1;
            match self.stream.get_raw_message(next).await {
                Ok(msg) => {
                    let id = msg.headers.get(NATS_MESSAGE_ID).map(|v| v.as_str().to_string());
                    if let Some(id) = id {
                        found = found.or(ours.iter().position(|(mine, _)| *mine == id));
                    }
                    if let Err(e) = self.apply(next, &msg.payload) {
                        self.damage(e.clone());
                        return Err(e);
                    }
                    delay = Duration::from_millis(25);
                }
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {
                    // The end of the stream, unless the message is missing,
                    // or another chronicler's write landed since.
                    let state = match self.stream.get_info().await {
                        Ok(info) => info.state,
                        Err(e) if Instant::now() + delay > deadline => return Err(e.to_string()),
                        Err(_) => {
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    };
                    if state.last_sequence < next {
                        return Ok(found);
                    }
                    if state.first_sequence > next || state.deleted_count.unwrap_or(0) > 0 {
                        let e = format!(
                            "message {next} is missing: the stream holds {} messages of 1..={} (first {}, {} deleted)",
                            state.messages,
                            state.last_sequence,
                            state.first_sequence,
                            state.deleted_count.unwrap_or(0)
                        );
                        self.damage(e.clone());
                        return Err(e);
                    }
                    // It landed meanwhile: read it.
                }
                Err(e) => {
                    if Instant::now() + delay > deadline {
                        return Err(e.to_string());
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_CAP);
                }
            }
        }
    }
}

/// The next message from the consumer; without one, `None` after a pause
/// (then a new consumer is made).
async fn next_message(
    follow: &mut Option<consumer::pull::Ordered>,
) -> Option<Result<jetstream::Message, consumer::pull::OrderedError>> {
    match follow {
        Some(f) => f.next().await,
        None => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

/// Whether a request's answer refuses an action as out of order.
fn refuses_out_of_order(result: &AckResult) -> bool {
    match result {
        Err(e) => matches!(e, AppendError::OutOfOrder { .. }),
        Ok(outcomes) => outcomes.iter().any(|o| matches!(o, Err(AppendError::OutOfOrder { .. }))),
    }
}
