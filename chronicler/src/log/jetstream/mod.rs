//! [`JetStreamLog`]: the log in a replicated NATS JetStream stream, which
//! any number of chroniclers may share.
//!
//! - The stream (default `NODB`, subject `<stream>.log`, file storage,
//!   `--replicas` copies, deletes and purges denied) holds one message
//!   per write (`message.rs`): the write's framed, checksummed,
//!   hash-chained records and its commit mark, exactly as a segment file
//!   holds them. Message 1 is the genesis message.
//! - Seqs are gap-free and in the stream's order: a write is published
//!   with `Nats-Expected-Last-Sequence` naming the last message its
//!   chronicler applied, so it lands only right after the history it was
//!   decided against (`writer.rs`). That is also what makes exactly-once
//!   acceptance hold across chroniclers, forever and not only within
//!   JetStream's deduplication window: the exactly-once table is the
//!   whole history's.
//! - An append is acknowledged once JetStream has acknowledged the
//!   publish: the write is in the stream's replicated log on a quorum of
//!   its servers.
//! - Each chronicler rebuilds the table, the redaction index and an index
//!   of where each write is by reading the stream at start, then follows
//!   it with an ordered consumer; readers get recent actions from memory
//!   and older ones from the stream.

mod message;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::dedup::DedupTable;
use super::group_commit::Request;
use super::read_state::Shared;
use super::record::{GENESIS, Hash};
use super::stage::Stager;
use super::{AppendBatch, AppendError, ClientPosition, Log, LogEntry, LogError, PendingAcks, ReadLimits};
use crate::metrics::Metrics;
use message::{GENESIS_BODY, GENESIS_ID, read_write};
use writer::{Places, Writer};

/// Settings of the replicated log.
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// The NATS servers to connect to (`nats://host:port`); any one will
    /// do, the client learns the rest of the cluster from it.
    pub servers: Vec<String>,
    /// The stream's name. Default `NODB`.
    pub stream: String,
    /// How many servers keep a copy (1 to 5). Default 3.
    pub replicas: usize,
    /// The largest write, in bytes; the server's `max_payload` caps it.
    /// Default 4 MiB.
    pub max_write_bytes: usize,
    /// How many recent actions to keep in memory. Default 65,536.
    pub recent_entries: usize,
    /// At most this many bytes of recent actions in memory. Default 64 MiB.
    pub recent_bytes: usize,
}

impl JetStreamConfig {
    /// The defaults, for the servers of a `nats://host:port[,host:port…]`
    /// list (a bare `host:port` is taken as `nats://host:port`).
    ///
    /// # Errors
    /// A sentence saying what is wrong with the list.
    pub fn parse(servers: &str) -> Result<JetStreamConfig, String> {
        let servers: Vec<String> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| if s.contains("://") { s.to_string() } else { format!("nats://{s}") })
            .collect();
        if servers.is_empty() {
            return Err("no NATS server given: use nats://HOST:PORT[,HOST:PORT…]".into());
        }
        for s in &servers {
            let url = url::Url::parse(s).map_err(|e| format!("{s} is not a NATS server address: {e}"))?;
            if !matches!(url.scheme(), "nats" | "tls") || url.host_str().is_none() {
                return Err(format!("{s} is not a NATS server address: use nats://HOST:PORT"));
            }
        }
        Ok(JetStreamConfig {
            servers,
            stream: "NODB".into(),
            replicas: 3,
            max_write_bytes: 4 * 1024 * 1024,
            recent_entries: 65_536,
            recent_bytes: 64 * 1024 * 1024,
        })
    }

    /// The subject the log's messages are published on.
    pub fn subject(&self) -> String {
        format!("{}.log", self.stream)
    }

    fn error(&self, reason: impl std::fmt::Display) -> LogError {
        LogError::JetStream { stream: self.stream.clone(), reason: reason.to_string() }
    }
}

/// What reading the whole stream found.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// The last seq.
    pub head: u64,
    /// The chain hash after it.
    pub hash: Hash,
    /// How many writes (messages after the genesis message).
    pub writes: u64,
    /// How many clients the exactly-once table knows.
    pub clients: usize,
}

/// The replicated [`Log`] on NATS JetStream.
pub struct JetStreamLog {
    tx: mpsc::Sender<Request>,
    client: async_nats::Client,
    damaged: Arc<Mutex<Option<String>>>,
    shared: Arc<Shared<Places>>,
    stream: stream::Stream,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl JetStreamLog {
    /// Connects, creates the stream if it does not exist, reads it whole
    /// (checking every write) and starts the writer.
    ///
    /// # Errors
    /// [`LogError::JetStream`]: no server reachable, the stream cannot be
    /// created, or it is damaged, shortened or not a nodb log.
    pub async fn open(
        config: &JetStreamConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<JetStreamLog>, Recovered), LogError> {
        let (writer, follow, recovered) = recover(config, metrics, true).await?;
        let shared = writer.shared.clone();
        let stream = writer.stream.clone();
        let (client, damaged) = (writer.js.client(), writer.damaged.clone());
        let (tx, rx) = mpsc::channel(16 * 1024);
        let handle = tokio::spawn(writer.run(rx, follow));
        let log = JetStreamLog { tx, client, damaged, shared, stream, writer: Mutex::new(Some(handle)) };
        Ok((Arc::new(log), recovered))
    }

    /// Finishes every append queued so far and stops the writer.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Request::Stop).await;
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

/// Reads the stream whole, checking every write, and reports its head
/// and the chain hash at each of `seqs` (`None` past the head): `nodb log
/// verify --log nats://…`. Creates nothing.
///
/// # Errors
/// As [`JetStreamLog::open`], and when the stream does not exist.
pub async fn verify(config: &JetStreamConfig, seqs: &[u64]) -> Result<(Recovered, Vec<Option<Hash>>), LogError> {
    let (writer, _, recovered) = recover(config, Arc::new(Metrics::default()), false).await?;
    let mut hashes = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let hash = match writer.shared.places(|p| place_of(p, seq)) {
            _ if seq == 0 => Some(GENESIS),
            _ if seq > recovered.head => None,
            None => None,
            Some((_, msg_seq)) => fetch(&writer.stream, msg_seq, seq).await?.first().map(|r| r.hash),
        };
        hashes.push(hash);
    }
    Ok((recovered, hashes))
}

/// How long one JetStream request (a publish's ack, a read) may take
/// before it is sent again. Acks take milliseconds, and under heavy load
/// well under a second; a request in flight to a server that just died
/// waits this long, so it bounds the time to the next ack after a leader's
/// crash (beside the election). Sending again is safe: the same id and
/// expected sequence land once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long opening waits for JetStream to answer (a cluster electing a
/// leader, a server restarting) before it gives up.
const OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// [`try_recover`], again while JetStream does not answer, for up to
/// [`OPEN_PATIENCE`]; damage is never retried.
async fn recover(
    config: &JetStreamConfig,
    metrics: Arc<Metrics>,
    create: bool,
) -> Result<(Writer, consumer::pull::Ordered, Recovered), LogError> {
    let deadline = std::time::Instant::now() + OPEN_PATIENCE;
    loop {
        match try_recover(config, metrics.clone(), create).await {
            Ok(done) => return Ok(done),
            Err(Failure::Damage(e)) => return Err(e),
            Err(Failure::Unanswered(e)) if std::time::Instant::now() > deadline => return Err(e),
            Err(Failure::Unanswered(e)) => {
                tracing::warn!(error = %e, "JetStream does not answer yet; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Why opening failed.
enum Failure {
    /// JetStream did not answer (or not yet): worth another try.
    Unanswered(LogError),
    /// The stream is damaged, shortened or not a nodb log.
    Damage(LogError),
}

/// Connects, finds (or creates) the stream, and applies every message.
async fn try_recover(
    config: &JetStreamConfig,
    metrics: Arc<Metrics>,
    create: bool,
) -> Result<(Writer, consumer::pull::Ordered, Recovered), Failure> {
    let damage = |e: LogError| Failure::Damage(e);
    let unanswered = |e: LogError| Failure::Unanswered(e);
    let addrs: Vec<async_nats::ServerAddr> =
        config.servers.iter().map(|s| s.parse()).collect::<Result<_, _>>().map_err(|e| damage(config.error(e)))?;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name("nodb chronicler")
        .connect(addrs)
        .await
        .map_err(|e| unanswered(config.error(format!("cannot connect to {}: {e}", config.servers.join(",")))))?;
    let max_payload = client.server_info().max_payload;
    let mut js = jetstream::new(client);
    js.set_timeout(REQUEST_TIMEOUT);
    let subject = config.subject();
    let mut stream = if create {
        let wanted = stream::Config {
            name: config.stream.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        js.get_or_create_stream(wanted)
            .await
            .map_err(|e| unanswered(config.error(format!("cannot create the stream: {e}"))))?
    } else {
        js.get_stream(&config.stream).await.map_err(|e| damage(config.error(format!("cannot find the stream: {e}"))))?
    };
    let info = stream.info().await.map_err(|e| unanswered(config.error(e)))?.clone();
    if !info.config.subjects.contains(&subject) {
        return Err(damage(config.error(format!("the stream exists but does not take the subject {subject}"))));
    }
    if create {
        keeps_history(&info.config, config.replicas).map_err(|e| damage(config.error(e)))?;
    }
    let mut last = info.state.last_sequence;
    if last == 0 && create {
        // Two chroniclers creating the stream at once write it once: by its
        // id (within the deduplication window), and by the expected last
        // sequence where the server honours 0.
        let genesis = jetstream::message::PublishMessage::build()
            .payload(GENESIS_BODY.into())
            .message_id(GENESIS_ID)
            .expected_last_sequence(0);
        let ack = js.send_publish(subject.clone(), genesis).await.map_err(|e| unanswered(config.error(e)))?;
        match ack.await {
            Ok(_) => {}
            // Another chronicler wrote it first.
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {}
            Err(e) => return Err(unanswered(config.error(format!("cannot write the first message: {e}")))),
        }
        last = stream.get_info().await.map_err(|e| unanswered(config.error(e)))?.state.last_sequence;
    }
    let state = stream.get_info().await.map_err(|e| unanswered(config.error(e)))?.state;
    if last > 0 && (state.first_sequence != 1 || state.deleted_count.unwrap_or(0) > 0 || state.messages < last) {
        return Err(damage(config.error(format!(
            "acknowledged history is missing: the stream holds {} messages of 1..={} (first {}, {} deleted). \
             The chronicler will not start on a shortened history",
            state.messages,
            state.last_sequence,
            state.first_sequence,
            state.deleted_count.unwrap_or(0)
        ))));
    }
    let shared = Arc::new(
        Shared::new(Places::new(), Default::default(), 0, GENESIS, config.recent_entries)
            .with_recent_bytes(config.recent_bytes),
    );
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut writer = Writer {
        js,
        stream,
        subject,
        stager: Stager { table: DedupTable::default(), head: 0, hash: GENESIS, metrics: metrics.clone() },
        msg_seq: 0,
        last_ts: 0,
        shared,
        metrics,
        instance: format!("{:x}-{nanos:x}", std::process::id()),
        writes: 0,
        // Headers and framing fit in the slack.
        max_write_bytes: config.max_write_bytes.min(max_payload.saturating_sub(4096)).max(4096),
        damaged: Arc::default(),
    };
    let mut follow =
        writer.follow().await.map_err(|e| unanswered(config.error(format!("cannot read the stream: {e}"))))?;
    while writer.msg_seq < last {
        let msg = match follow.next().await {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                return Err(unanswered(config.error(format!("reading message {}: {e}", writer.msg_seq + 1))));
            }
            None => return Err(unanswered(config.error(format!("the stream ended at message {}", writer.msg_seq)))),
        };
        let seq = msg.info().map_err(|e| unanswered(config.error(e)))?.stream_sequence;
        writer.apply(seq, &msg.payload).map_err(|e| damage(config.error(format!("the stream is damaged: {e}"))))?;
    }
    let recovered = Recovered {
        head: writer.stager.head,
        hash: writer.stager.hash,
        writes: writer.msg_seq.saturating_sub(1),
        clients: writer.stager.table.len(),
    };
    Ok((writer, follow, recovered))
}

/// Checks that an existing stream keeps what is acknowledged on it: file
/// storage, at least `replicas` copies, and no limit that would drop
/// messages (age, count, bytes, per subject, or a retention other than
/// limits). Deletes and purges allowed are only warned about.
///
/// # Errors
/// What about the stream would lose or weaken acknowledged history.
fn keeps_history(c: &stream::Config, replicas: usize) -> Result<(), String> {
    if c.storage != stream::StorageType::File {
        return Err("the stream keeps its messages in memory, not in files: a restart of its servers loses them. \
                    Give the chronicler a stream with file storage"
            .into());
    }
    if c.num_replicas < replicas {
        return Err(format!(
            "the stream has {} copies, fewer than --replicas {replicas}: start with --replicas {} or add copies \
             to the stream",
            c.num_replicas, c.num_replicas
        ));
    }
    let limits = [
        (!c.max_age.is_zero()).then(|| format!("max age {:?}", c.max_age)),
        (c.max_messages > 0).then(|| format!("max messages {}", c.max_messages)),
        (c.max_bytes > 0).then(|| format!("max bytes {}", c.max_bytes)),
        (c.max_messages_per_subject > 0).then(|| format!("max messages per subject {}", c.max_messages_per_subject)),
        (c.retention != stream::RetentionPolicy::Limits).then(|| format!("retention {:?}", c.retention)),
    ];
    let limits: Vec<String> = limits.into_iter().flatten().collect();
    if !limits.is_empty() {
        return Err(format!(
            "the stream drops messages by its limits ({}): acknowledged history would be lost. Remove them",
            limits.join(", ")
        ));
    }
    if !c.deny_delete || !c.deny_purge {
        tracing::warn!(
            "the stream allows deleting or purging messages: anyone with that right can shorten the history"
        );
    }
    Ok(())
}

impl Log for JetStreamLog {
    fn submit(&self, batch: AppendBatch) -> BoxFuture<'static, Result<PendingAcks, AppendError>> {
        super::group_commit::submit(self.tx.clone(), batch)
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.shared.head()
    }

    fn client(&self, client: &str) -> Option<ClientPosition> {
        self.shared.client(client).map(|(last, seq)| ClientPosition { last, seq })
    }

    fn hash_at(&self, seq: u64) -> BoxFuture<'static, Result<Option<Hash>, LogError>> {
        let (shared, stream) = (self.shared.clone(), self.stream.clone());
        Box::pin(async move {
            if seq == 0 {
                return Ok(Some(GENESIS));
            }
            if seq > shared.head_now() {
                return Ok(None);
            }
            let Some((_, msg_seq)) = shared.places(|p| place_of(p, seq)) else { return Ok(None) };
            let records = fetch(&stream, msg_seq, seq).await?;
            Ok(records.first().filter(|r| r.seq == seq).map(|r| r.hash))
        })
    }

    fn read(&self, from: u64, limits: ReadLimits) -> BoxFuture<'static, Result<Vec<LogEntry>, LogError>> {
        let (shared, stream) = (self.shared.clone(), self.stream.clone());
        Box::pin(async move {
            let head = shared.head_now();
            let mut out: Vec<LogEntry> = Vec::new();
            let mut bytes = 0;
            loop {
                let next = out.last().map_or(from, |e| e.seq + 1);
                if next == 0 || next > head || out.len() >= limits.max_entries || bytes >= limits.max_bytes {
                    return Ok(out);
                }
                let left =
                    ReadLimits { max_entries: limits.max_entries - out.len(), max_bytes: limits.max_bytes - bytes };
                if let Some(entries) = shared.locate(next, head, left) {
                    out.extend(entries);
                    return Ok(out);
                }
                let Some((_, msg_seq)) = shared.places(|p| place_of(p, next)) else { return Ok(out) };
                let records = fetch(&stream, msg_seq, next).await?;
                if records.is_empty() {
                    return Ok(out);
                }
                for rec in records {
                    if rec.seq > head
                        || out.len() >= limits.max_entries
                        || (bytes >= limits.max_bytes && !out.is_empty())
                    {
                        break;
                    }
                    bytes += rec.json.len();
                    out.push(LogEntry { seq: rec.seq, json: rec.json });
                }
            }
        })
    }

    fn redacted(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        self.shared.redacted(from, to)
    }

    fn redaction_among(&self, seqs: &[u64]) -> Option<u64> {
        self.shared.redaction_among(seqs)
    }

    fn trouble(&self) -> Option<String> {
        if let Some(reason) = self.damaged.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(format!("the JetStream log is damaged: {reason}"));
        }
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            _ => Some("no NATS server is reachable: appends wait, then fail".into()),
        }
    }
}

/// The write holding `seq`: its first seq and stream sequence.
fn place_of(places: &Places, seq: u64) -> Option<(u64, u64)> {
    match places.partition_point(|(first, _)| *first <= seq) {
        0 => None,
        i => Some(places[i - 1]),
    }
}

/// The records from seq `from` on of the write at stream sequence `msg_seq`.
async fn fetch(stream: &stream::Stream, msg_seq: u64, from: u64) -> Result<Vec<super::record::StoredRecord>, LogError> {
    let name = || stream.cached_info().config.name.clone();
    let msg = stream
        .get_raw_message(msg_seq)
        .await
        .map_err(|e| LogError::JetStream { stream: name(), reason: format!("reading message {msg_seq}: {e}") })?;
    read_write(&msg.payload, from)
        .map_err(|e| LogError::JetStream { stream: name(), reason: format!("message {msg_seq} {e}") })
}
