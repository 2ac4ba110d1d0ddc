//! [`FileLog`]: the embedded log in segment files under a data directory.
//!
//! Opening runs recovery: scan every segment, check the chain, truncate a
//! torn tail, finish an interrupted seal, rebuild the exactly-once table,
//! the redaction index and the head. Then a writer thread
//! ([`group_commit`](super::group_commit)) owns the active segment. Readers
//! get recent actions from an in-memory tail and older ones from the
//! segment files, so a consumer that falls behind is served from disk and
//! never holds up the writer.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use super::dedup::checkpoint::Rebuild;
use super::group_commit::{Request, Writer};
use super::head::{HeadFile, Recorded};
use super::read_state::{SegmentIndex, Shared};
use super::record::{COMMIT_LEN, Decoded, FRAME_HEADER, GENESIS, Hash, StoredRecord, decode};
use super::redactions::Redactions;
use super::scan::{self, SegmentInfo};
use super::segment::{self, HEADER_LEN};
use super::stage::Stager;
use super::{AppendBatch, AppendError, ClientPosition, Log, LogEntry, LogError, PendingAcks, ReadLimits};
use crate::metrics::Metrics;

/// Settings of the embedded log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// Roll to a new segment past this size. Default 64 MiB.
    pub segment_size: u64,
    /// Stop adding requests to a write at about this many bytes. Default
    /// 4 MiB, at most 8 MiB (recovery relies on writes being bounded).
    pub max_batch_bytes: usize,
    /// How many recent actions to keep in memory for consumers at the tail.
    /// Default 65,536.
    pub recent_entries: usize,
    /// At most this many bytes of recent actions in memory. Default 64 MiB.
    pub recent_bytes: usize,
    /// How long the writer polls for the next append before it sleeps.
    /// Polling saves the wake-up latency of a sleeping thread (tens of
    /// microseconds per ack on a busy machine) at the cost of up to this
    /// much CPU after each write. Default 250 µs; zero never polls.
    pub spin: std::time::Duration,
}

impl LogConfig {
    /// The defaults, for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            segment_size: 64 * 1024 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            recent_entries: 65_536,
            recent_bytes: 64 * 1024 * 1024,
            spin: std::time::Duration::from_micros(250),
        }
    }

    /// Checks the settings make sense.
    ///
    /// # Errors
    /// A sentence naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_size < 4096 {
            return Err(format!("the segment size must be at least 4096 bytes, not {}", self.segment_size));
        }
        if self.max_batch_bytes > super::limits::MAX_BATCH_BYTES {
            return Err(format!(
                "the batch size must be at most {} bytes, not {}",
                super::limits::MAX_BATCH_BYTES,
                self.max_batch_bytes
            ));
        }
        if self.max_batch_bytes == 0 || self.recent_entries == 0 || self.recent_bytes == 0 {
            return Err("the batch size and the in-memory tail must not be zero".into());
        }
        Ok(())
    }
}

/// What recovery found, for the start-up log line.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// The last seq.
    pub head: u64,
    /// How many segments.
    pub segments: usize,
    /// How many clients the exactly-once table knows.
    pub clients: usize,
    /// Bytes of a torn final write that were cut off.
    pub torn_bytes: u64,
}

/// The embedded, file-backed [`Log`].
pub struct FileLog {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

impl FileLog {
    /// Opens (or creates) the log in `config.dir`, recovering from whatever
    /// a crash left, and starts the writer thread.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] if the history is damaged before its tail,
    /// [`LogError::Locked`] if another process uses the directory,
    /// [`LogError::Io`] otherwise.
    pub fn open(config: &LogConfig, metrics: Arc<Metrics>) -> Result<(Arc<FileLog>, Recovered), LogError> {
        let dir = &config.dir;
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = lock_dir(dir)?;
        segment::remove_leftovers(dir).map_err(io_err(dir))?;
        // The exactly-once table: from the checkpoint the last clean stop
        // saved, if it belongs to this log, plus the records after it.
        let mut rebuild = Rebuild::start(dir);
        let mut last_json = None;
        // The redaction index comes from the same pass: the scan reads every
        // record anyway, and a record that is no redaction costs one short
        // search (see `redactions`).
        let mut redactions = Redactions::default();
        let mut scanned = scan::scan(dir, &mut |rec| {
            rebuild.record(rec);
            redactions.record(rec.seq, &rec.json);
            last_json = Some(rec.json.clone());
        })?;
        if !redactions.is_empty() {
            tracing::info!(redacted = redactions.len(), "seqs redacted by @@nodb/redact actions in the log");
        }
        let table = match rebuild.finish() {
            Some(table) => table,
            None => {
                tracing::warn!(
                    "the exactly-once checkpoint is not of this log; rebuilding the table from every record"
                );
                let mut again = Rebuild::from_scratch();
                scan::scan(dir, &mut |rec| again.record(rec))?;
                again.finish().unwrap_or_default()
            }
        };
        if scanned.recorded.is_none() && scanned.head > 0 {
            tracing::warn!(
                head = scanned.head,
                "the log has no HEAD file (written by an older nodb, or deleted): starting one at the current head; \
                 until now, missing segments at the end could not have been noticed"
            );
        }
        let mut torn_bytes = 0;
        if let Some(torn) = &scanned.torn {
            tracing::warn!(
                segment = %torn.segment.display(), offset = torn.offset, bytes = torn.bytes, reason = torn.reason,
                "the last write before a crash was cut short; truncating it (it was never acknowledged)"
            );
            zero_from(&torn.segment, torn.offset).map_err(io_err(&torn.segment))?;
            torn_bytes = torn.bytes;
        }
        // A version 1 active segment (no commit marks) is never appended
        // to: it is sealed, or replaced when it holds nothing.
        if let Some(old) = scanned.segments.last()
            && old.version < segment::VERSION
        {
            if old.last_seq >= old.first_seq {
                segment::seal(&old.path, old.data_end).map_err(io_err(&old.path))?;
            } else {
                fs::remove_file(&old.path).map_err(io_err(&old.path))?;
                scanned.segments.pop();
            }
        }
        let next = scanned.head + 1;
        if scanned.segments.last().is_none_or(|s| s.version < segment::VERSION) {
            let header = segment::Header::new(next, scanned.hash);
            segment::create(dir, header, config.segment_size).map_err(io_err(dir))?;
            scanned.segments.push(SegmentInfo {
                first_seq: next,
                path: segment::path_for(dir, next),
                index: Vec::new(),
                last_seq: scanned.head,
                data_end: HEADER_LEN,
                file_len: config.segment_size,
                version: segment::VERSION,
            });
        }
        let head_file = HeadFile::open(dir, Recorded { seq: scanned.head, hash: scanned.hash }).map_err(io_err(dir))?;
        // Finish any seal a crash interrupted.
        let last = scanned.segments.len() - 1;
        for seg in &scanned.segments[..last] {
            let readonly = fs::metadata(&seg.path).map(|m| m.permissions().readonly()).unwrap_or(false);
            if seg.file_len != seg.data_end || !readonly {
                segment::seal(&seg.path, seg.data_end).map_err(io_err(&seg.path))?;
            }
        }
        let active = &scanned.segments[last];
        let file = segment::open_for_append(&active.path).map_err(io_err(&active.path))?;
        let recovered =
            Recovered { head: scanned.head, segments: scanned.segments.len(), clients: table.len(), torn_bytes };
        let segments = scanned
            .segments
            .iter()
            .map(|s| SegmentIndex { first_seq: s.first_seq, path: s.path.clone(), index: s.index.clone() })
            .collect();
        let clients = table.lasts().map(|(c, l)| (c.to_string(), l)).collect();
        let shared = Arc::new(
            Shared::new(segments, clients, scanned.head, scanned.hash, config.recent_entries)
                .with_recent_bytes(config.recent_bytes)
                .with_redactions(redactions),
        );
        metrics.head_seq.store(scanned.head, std::sync::atomic::Ordering::Relaxed);
        let writer = Writer {
            dir: dir.clone(),
            file,
            segment_first: active.first_seq,
            pos: active.data_end,
            dirty_end: active.data_end,
            segment_size: config.segment_size,
            max_batch_bytes: config.max_batch_bytes,
            spin: config.spin,
            stager: Stager { table, head: scanned.head, hash: scanned.hash, metrics: metrics.clone() },
            last_ts: last_json.as_deref().and_then(stored_ts).unwrap_or(0),
            head_file,
            shared: shared.clone(),
            metrics,
        };
        let (tx, rx) = mpsc::channel(16 * 1024);
        let handle = std::thread::Builder::new()
            .name("nodb-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(dir))?;
        let log = FileLog { tx, shared, writer: Mutex::new(Some(handle)), _lock: lock };
        Ok((Arc::new(log), recovered))
    }

    /// Finishes every append queued so far, acknowledges it, and stops the
    /// writer. Appends after this fail with [`AppendError::ShuttingDown`].
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Request::Stop).await;
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

impl Log for FileLog {
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
        let shared = self.shared.clone();
        Box::pin(async move {
            if seq == 0 {
                return Ok(Some(GENESIS));
            }
            if seq > shared.head_now() {
                return Ok(None);
            }
            tokio::task::spawn_blocking(move || hash_on_disk(&shared, seq))
                .await
                .map_err(|e| LogError::Io { path: PathBuf::new(), source: io::Error::other(e) })?
        })
    }

    fn redacted(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        self.shared.redacted(from, to)
    }

    fn redaction_among(&self, seqs: &[u64]) -> Option<u64> {
        self.shared.redaction_among(seqs)
    }

    fn read(&self, from: u64, limits: ReadLimits) -> BoxFuture<'static, Result<Vec<LogEntry>, LogError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let head = shared.head_now();
            if from > head || from == 0 {
                return Ok(Vec::new());
            }
            match shared.locate(from, head, limits) {
                Some(entries) => Ok(entries),
                None => tokio::task::spawn_blocking(move || read_from_disk(&shared, from, head, limits))
                    .await
                    .map_err(|e| LogError::Io { path: PathBuf::new(), source: io::Error::other(e) })?,
            }
        })
    }
}

/// Reads records `from..=head` up to `limits`, segment after segment,
/// switching to the in-memory tail when it reaches it.
fn read_from_disk(shared: &Shared, from: u64, head: u64, limits: ReadLimits) -> Result<Vec<LogEntry>, LogError> {
    let mut out: Vec<LogEntry> = Vec::new();
    let mut bytes = 0;
    loop {
        let next = out.last().map_or(from, |e| e.seq + 1);
        if next > head || out.len() >= limits.max_entries || bytes >= limits.max_bytes {
            return Ok(out);
        }
        let left = ReadLimits { max_entries: limits.max_entries - out.len(), max_bytes: limits.max_bytes - bytes };
        let more = match shared.locate(next, head, left) {
            Some(entries) => entries,
            None => match shared.on_disk(next) {
                Some((path, offset)) => read_segment(&path, offset, next, head, left)?,
                None => Vec::new(),
            },
        };
        if more.is_empty() {
            return Ok(out);
        }
        bytes += more.iter().map(|e| e.json.len()).sum::<usize>();
        out.extend(more);
    }
}

/// Reads records `from..=head` of the segment `path`, starting at `offset`
/// (a record boundary at or before `from`), up to `limits`.
fn read_segment(path: &Path, offset: u64, from: u64, head: u64, limits: ReadLimits) -> Result<Vec<LogEntry>, LogError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    each_record(path, offset, 1 << 20, &mut |rec| {
        if rec.seq > head {
            return false;
        }
        if rec.seq >= from {
            bytes += rec.json.len();
            out.push(LogEntry { seq: rec.seq, json: rec.json });
            if out.len() >= limits.max_entries || bytes >= limits.max_bytes || rec.seq == head {
                return false;
            }
        }
        true
    })?;
    Ok(out)
}

/// The chain hash after record `seq`, read from its segment.
fn hash_on_disk(shared: &Shared, seq: u64) -> Result<Option<Hash>, LogError> {
    let Some((path, offset)) = shared.on_disk(seq) else { return Ok(None) };
    let mut found = None;
    // A few records from an indexed offset: a small buffer (it grows for
    // a larger record).
    each_record(&path, offset, 64 * 1024, &mut |rec| {
        if rec.seq == seq {
            found = Some(rec.hash);
        }
        rec.seq < seq
    })?;
    Ok(found)
}

/// Calls `f` with each record of the segment `path` from `offset` (a
/// record boundary) until it returns false or the records end, reading
/// `chunk` bytes at a time to begin with.
fn each_record(
    path: &Path,
    offset: u64,
    chunk: usize,
    f: &mut dyn FnMut(StoredRecord) -> bool,
) -> Result<(), LogError> {
    let io_err = |source| LogError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_err)?;
    let mut buf = vec![0u8; chunk];
    let mut filled = 0usize;
    let mut file_pos = offset;
    let mut at = 0usize;
    loop {
        let avail = &buf[at..filled];
        match decode(avail) {
            Decoded::Record(rec, used) => {
                at += used;
                if !f(rec) {
                    return Ok(());
                }
            }
            Decoded::Commit { .. } => at += COMMIT_LEN,
            // A zero length: the end of this segment's records.
            Decoded::End if avail.len() >= FRAME_HEADER => return Ok(()),
            // Below the head every record is whole and valid; past it a
            // write may be in progress. Either way this segment ends here.
            Decoded::Invalid(_) => return Ok(()),
            Decoded::End | Decoded::Incomplete => {
                // Keep the partial record, make room, read on.
                buf.copy_within(at..filled, 0);
                filled -= at;
                at = 0;
                if filled == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                let n = file.read_at(&mut buf[filled..], file_pos).map_err(io_err)?;
                if n == 0 {
                    return Ok(());
                }
                file_pos += n as u64;
                filled += n;
            }
        }
    }
}

/// The `ts` of a committed record's JSON, which starts `{"seq":N,"ts":T,`.
pub(crate) fn stored_ts(json: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Ts {
        ts: u64,
    }
    serde_json::from_slice::<Ts>(json).ok().map(|t| t.ts)
}

/// Zeroes a segment from `offset` to its end (skipping what already is
/// zero) and syncs it: a torn write's remains must never be read as records.
fn zero_from(path: &Path, offset: u64) -> io::Result<()> {
    let file = segment::open_for_append(path)?;
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let mut pos = offset;
    while pos < len {
        let n = ((len - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|&b| b != 0) {
            file.write_all_at(&zeros[..n], pos)?;
        }
        pos += n as u64;
    }
    file.sync_data()
}

/// Records the end of the log in `dir` as its head (a new head file),
/// after an operator has made sure the log is whole: the way out of a
/// missing or damaged head file. Refuses while a chronicler runs, or if
/// the segments themselves are damaged (a torn final write is left for
/// the next start to cut).
///
/// # Errors
/// [`LogError::Locked`] while a chronicler uses the log, the scan's errors
/// otherwise.
pub fn set_head(dir: &Path) -> Result<Recorded, LogError> {
    let _lock = lock_dir(dir)?;
    let options = scan::ScanOptions { require_head: false, ..scan::ScanOptions::default() };
    // Whatever the old file says (it may be damaged), the segments decide.
    let path = super::head::path(dir);
    if path.exists() {
        fs::remove_file(&path).map_err(|source| LogError::Io { path: path.clone(), source })?;
    }
    let scanned = scan::scan_with(dir, options, &mut |_| {})?;
    let now = Recorded { seq: scanned.head, hash: scanned.hash };
    HeadFile::open(dir, now).map_err(|source| LogError::Io { path, source })?;
    Ok(now)
}

/// Takes an exclusive lock on the directory, so two chroniclers never
/// write one log.
fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LogError::Io { path: path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(LogError::Io { path, source }),
    }
}
