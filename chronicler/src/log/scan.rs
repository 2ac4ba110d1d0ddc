//! Reading a log directory from start to end: every record's checksum, the
//! hash chain across records and segments, the commit marks that end each
//! write, the head file, and the torn tail a crash can leave. Both start-up
//! recovery and `nodb log verify` use this one pass.
//!
//! A torn tail is only possible at the end of the last segment, after its
//! last commit mark. Damage counts as a torn write only when nothing after
//! it completed: no valid commit mark follows it, the head file does not
//! say the log reached further, and it is no larger than one write
//! ([`MAX_WRITE_BYTES`]). Anything else is damage to acknowledged history,
//! and is refused, so recovery never cuts it away.

use std::fs;
use std::path::{Path, PathBuf};

use super::LogError;
use super::head::{self, Recorded};
use super::limits::{INDEX_EVERY, MAX_WRITE_BYTES};
use super::record::{COMMIT_LEN, Decoded, GENESIS, Hash, StoredRecord, decode, find_commit_after, hex};
use super::segment::{self, HEADER_LEN};

/// What the scan learnt about one segment.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The seq of its first record.
    pub first_seq: u64,
    /// Its file.
    pub path: PathBuf,
    /// `(seq, offset)` of every [`INDEX_EVERY`]th record, and the first.
    pub index: Vec<(u64, u64)>,
    /// The seq of its last record (`first_seq - 1` when empty).
    pub last_seq: u64,
    /// Where its records end (after the last complete write).
    pub data_end: u64,
    /// Its format version (see [`segment::VERSION`]).
    pub version: u32,
    /// The file's length on disk (more than `data_end` while preallocated).
    pub file_len: u64,
}

/// Bytes at the end of the last segment after its last complete write:
/// what a crash in the middle of a write leaves behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub segment: PathBuf,
    /// Where the last complete write ends.
    pub offset: u64,
    /// How many non-zero bytes follow (the partial write).
    pub bytes: u64,
    /// What the decoder found there.
    pub reason: &'static str,
}

/// The result of a scan.
#[derive(Clone, Debug)]
pub struct Scanned {
    /// The segments in order.
    pub segments: Vec<SegmentInfo>,
    /// The last seq in the log (0 when empty).
    pub head: u64,
    /// The chain hash after the last record.
    pub hash: Hash,
    /// The torn tail, if the last segment has one.
    pub torn: Option<TornTail>,
    /// What the head file recorded (`None` without one).
    pub recorded: Option<Recorded>,
}

/// Scans every segment in `dir`, calling `on_record` for each record in
/// order.
///
/// # Errors
/// [`LogError::Corrupt`] for a bad header, a checksum or chain mismatch
/// before the tail, or a seq out of place; [`LogError::Io`] for I/O errors.
pub fn scan(dir: &Path, on_record: &mut dyn FnMut(&StoredRecord)) -> Result<Scanned, LogError> {
    scan_with(dir, ScanOptions::default(), on_record)
}

/// How a scan judges what it finds.
#[derive(Clone, Copy, Debug)]
pub struct ScanOptions {
    /// At most this many bytes after the last complete write of the last
    /// segment may be a torn write.
    pub max_torn: u64,
    /// Whether a log of version 2 segments must have its head file (only
    /// `nodb log set-head`, which writes a new one, does without).
    pub require_head: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { max_torn: MAX_WRITE_BYTES as u64, require_head: true }
    }
}

/// [`scan`] with `options`.
///
/// # Errors
/// As for [`scan`].
pub fn scan_with(
    dir: &Path,
    options: ScanOptions,
    on_record: &mut dyn FnMut(&StoredRecord),
) -> Result<Scanned, LogError> {
    let max_torn = options.max_torn;
    // The head file first: it only ever trails what is on disk, so reading
    // it before the segments never makes a running log look shortened.
    let recorded = head::read(dir).map_err(|reason| LogError::Head { path: head::path(dir), reason })?;
    let listed = segment::list(dir).map_err(|source| LogError::Io { path: dir.to_path_buf(), source })?;
    let mut out = Scanned { segments: Vec::new(), head: 0, hash: GENESIS, torn: None, recorded };
    let mut hash_at_recorded = None;
    let mut on_committed = |rec: &StoredRecord| {
        if recorded.is_some_and(|r| r.seq == rec.seq) {
            hash_at_recorded = Some(rec.hash);
        }
        on_record(rec);
    };
    let count = listed.len();
    for (i, (first_seq, path)) in listed.into_iter().enumerate() {
        let last = i + 1 == count;
        let bytes = fs::read(&path).map_err(|source| LogError::Io { path: path.clone(), source })?;
        let info = scan_segment(&bytes, first_seq, &path, last, max_torn, &mut out, &mut on_committed)?;
        out.segments.push(info);
    }
    match recorded {
        Some(r) => check_recorded(&out, r, hash_at_recorded)?,
        // A version 2 segment with records is never written before the
        // head file exists, so its absence is damage too.
        None if options.require_head && out.segments.iter().any(|s| s.version >= 2 && s.last_seq >= s.first_seq) => {
            return Err(LogError::Head {
                path: head::path(dir),
                reason: format!(
                    "{} is missing or empty, but the log holds version 2 segments, which are never written without \
                     it: it was lost or removed, so whether segments are missing cannot be told. If the log is \
                     known to be whole (restored from a backup, say), record its end with \
                     `nodb log set-head --data DIR`",
                    head::path(dir).display()
                ),
            });
        }
        None => {}
    }
    Ok(out)
}

/// Scans one segment's `bytes`, advancing `out` over its complete writes.
fn scan_segment(
    bytes: &[u8],
    first_seq: u64,
    path: &Path,
    last: bool,
    max_torn: u64,
    out: &mut Scanned,
    on_record: &mut dyn FnMut(&StoredRecord),
) -> Result<SegmentInfo, LogError> {
    let corrupt =
        |offset: u64, seq: u64, reason: String| LogError::Corrupt { segment: path.to_path_buf(), offset, seq, reason };
    let header = segment::Header::decode(bytes).map_err(|e| corrupt(0, out.head + 1, e.to_string()))?;
    if header.first_seq != first_seq || first_seq != out.head + 1 {
        return Err(corrupt(
            0,
            out.head + 1,
            format!("segment starts at seq {} but the log continues at seq {}", header.first_seq, out.head + 1),
        ));
    }
    if header.prev_hash != out.hash {
        return Err(corrupt(0, out.head + 1, "segment header does not continue the hash chain".into()));
    }
    let marks = header.has_commit_marks();
    let mut info = SegmentInfo {
        first_seq,
        path: path.to_path_buf(),
        index: Vec::new(),
        last_seq: first_seq - 1,
        data_end: HEADER_LEN,
        file_len: bytes.len() as u64,
        version: header.version,
    };
    // Records decoded since the last commit mark (in a version 1 segment
    // every record stands alone), and the chain as they leave it.
    let mut pending: Vec<StoredRecord> = Vec::new();
    let (mut seq_now, mut hash_now) = (out.head, out.hash);
    let mut pos = HEADER_LEN as usize;
    let mut commit = |pending: &mut Vec<StoredRecord>, out: &mut Scanned, end: usize, info: &mut SegmentInfo| {
        for rec in pending.drain(..) {
            on_record(&rec);
            out.head = rec.seq;
            out.hash = rec.hash;
        }
        info.data_end = end as u64;
    };
    loop {
        let expected = seq_now + 1;
        match decode(&bytes[pos..]) {
            Decoded::Record(rec, used) => {
                if rec.seq != expected {
                    return Err(corrupt(
                        pos as u64,
                        expected,
                        format!("found seq {} where seq {expected} belongs", rec.seq),
                    ));
                }
                if !rec.chains_from(&hash_now) {
                    return Err(corrupt(pos as u64, expected, "hash chain mismatch: the record was altered".into()));
                }
                if (rec.seq - first_seq).is_multiple_of(INDEX_EVERY) {
                    info.index.push((rec.seq, pos as u64));
                }
                (seq_now, hash_now) = (rec.seq, rec.hash);
                pos += used;
                pending.push(rec);
                if !marks {
                    commit(&mut pending, out, pos, &mut info);
                }
            }
            Decoded::Commit { seq, hash, start } => {
                if start != info.data_end {
                    return Err(corrupt(
                        pos as u64,
                        seq_now,
                        format!(
                            "a commit mark says its write began at offset {start}, but the write before it ended at offset {}",
                            info.data_end
                        ),
                    ));
                }
                if seq != seq_now || hash != hash_now {
                    return Err(corrupt(
                        pos as u64,
                        seq_now,
                        format!(
                            "a commit mark names seq {seq} (chain hash {}) but the records before it end at seq {seq_now} (chain hash {})",
                            hex(&hash),
                            hex(&hash_now)
                        ),
                    ));
                }
                pos += COMMIT_LEN;
                commit(&mut pending, out, pos, &mut info);
            }
            found => {
                let rest = &bytes[pos..];
                let clean = matches!(found, Decoded::End) && rest.iter().all(|&b| b == 0);
                if clean && pending.is_empty() {
                    break;
                }
                let kept = info.data_end as usize;
                let (at, seq, reason) = match found {
                    _ if clean => (kept, out.head + 1, "records whose write has no commit mark"),
                    Decoded::Invalid(r) => (pos, expected, r),
                    Decoded::Incomplete => (pos, expected, "record cut short"),
                    _ => (pos, expected, "unexpected data after the last record"),
                };
                let damage = |detail: String| corrupt(at as u64, seq, format!("{reason}, {detail}"));
                if !last {
                    return Err(damage("in a segment the log has moved past".into()));
                }
                // A write that completed after the damage was acknowledged,
                // and so was everything before it. The one exception is the
                // write in flight at a power cut: its pages can reach the
                // disk out of order, so its own mark may stand behind a
                // hole. That mark says its write began where the last
                // complete write ended, and nothing but zeros follows it.
                if let Some(mark) = find_commit_after(bytes, at + 1, out.head) {
                    let mark_end = mark.at + COMMIT_LEN;
                    let in_flight = mark.start == kept as u64
                        && bytes[mark_end..].iter().all(|&b| b == 0)
                        && find_commit_after(bytes, mark_end, mark.seq).is_none();
                    if !in_flight {
                        return Err(damage(format!(
                            "but a write that completed later (through seq {}, its commit mark at offset {}) \
                             follows it: acknowledged actions would be lost, so this is damage, not a torn write",
                            mark.seq, mark.at
                        )));
                    }
                }
                let nonzero = bytes[kept..].iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                // Only the last write can be torn, and no write is larger
                // than `max_torn`.
                if nonzero as u64 > max_torn {
                    return Err(damage(format!(
                        "followed by {nonzero} bytes of data: more than one write ({max_torn} bytes at most) \
                         can leave, so this is damage, not a torn write"
                    )));
                }
                out.torn =
                    Some(TornTail { segment: path.to_path_buf(), offset: kept as u64, bytes: nonzero as u64, reason });
                break;
            }
        }
    }
    info.index.retain(|(seq, _)| *seq <= out.head);
    info.last_seq = out.head;
    Ok(info)
}

/// Refuses a log that ends before the head file says it reached, or whose
/// chain hash at that seq differs from the recorded one.
fn check_recorded(out: &Scanned, recorded: Recorded, hash_at_recorded: Option<Hash>) -> Result<(), LogError> {
    if recorded.seq > out.head {
        let detail = match &out.torn {
            Some(t) => format!(
                "{} is damaged at offset {} ({}) and the records from there on cannot be read",
                t.segment.display(),
                t.offset,
                t.reason
            ),
            None => "the last segments are missing or were cut short".to_string(),
        };
        return Err(LogError::Shortened { recorded: recorded.seq, found: out.head, detail });
    }
    let found = if recorded.seq == 0 { Some(GENESIS) } else { hash_at_recorded };
    if found != Some(recorded.hash) {
        return Err(LogError::Rewritten {
            seq: recorded.seq,
            recorded: hex(&recorded.hash),
            found: found.map_or_else(|| "none".into(), |h| hex(&h)),
        });
    }
    Ok(())
}
