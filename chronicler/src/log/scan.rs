//! Reading a log directory from start to end: every record's checksum, the
//! hash chain across records and segments, and the torn tail a crash can
//! leave. Both start-up recovery and `nodb log verify` use this one pass.
//!
//! A torn tail is only possible at the end of the last segment, and only
//! as large as one write ([`MAX_WRITE_BYTES`]): a damaged record followed by
//! more data than that is reported as corruption, so recovery never cuts
//! away acknowledged history.

use std::fs;
use std::path::{Path, PathBuf};

use super::LogError;
use super::limits::{INDEX_EVERY, MAX_WRITE_BYTES};
use super::record::{Decoded, GENESIS, Hash, StoredRecord, decode};
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
    /// Where its records end.
    pub data_end: u64,
    /// The file's length on disk (more than `data_end` while preallocated).
    pub file_len: u64,
}

/// Bytes at the end of the last segment that are not whole records: what a
/// crash in the middle of a write leaves behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub segment: PathBuf,
    /// Where the last whole record ends.
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
}

/// Scans every segment in `dir`, calling `on_record` for each record in
/// order.
///
/// # Errors
/// [`LogError::Corrupt`] for a bad header, a checksum or chain mismatch
/// before the tail, or a seq out of place; [`LogError::Io`] for I/O errors.
pub fn scan(dir: &Path, on_record: &mut dyn FnMut(&StoredRecord)) -> Result<Scanned, LogError> {
    scan_with_bound(dir, MAX_WRITE_BYTES as u64, on_record)
}

/// [`scan`], treating at most `max_torn` bytes after the last whole record
/// of the last segment as a torn write.
///
/// # Errors
/// As for [`scan`].
pub fn scan_with_bound(
    dir: &Path,
    max_torn: u64,
    on_record: &mut dyn FnMut(&StoredRecord),
) -> Result<Scanned, LogError> {
    let listed = segment::list(dir).map_err(|source| LogError::Io { path: dir.to_path_buf(), source })?;
    let mut out = Scanned { segments: Vec::new(), head: 0, hash: GENESIS, torn: None };
    let count = listed.len();
    for (i, (first_seq, path)) in listed.into_iter().enumerate() {
        let last = i + 1 == count;
        let bytes = fs::read(&path).map_err(|source| LogError::Io { path: path.clone(), source })?;
        let corrupt =
            |offset: u64, seq: u64, reason: String| LogError::Corrupt { segment: path.clone(), offset, seq, reason };
        let header = segment::Header::decode(&bytes).map_err(|e| corrupt(0, out.head + 1, e.to_string()))?;
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
        let mut info = SegmentInfo {
            first_seq,
            path: path.clone(),
            index: Vec::new(),
            last_seq: first_seq - 1,
            data_end: HEADER_LEN,
            file_len: bytes.len() as u64,
        };
        let mut pos = HEADER_LEN as usize;
        loop {
            let expected = out.head + 1;
            match decode(&bytes[pos..]) {
                Decoded::Record(rec, used) => {
                    if rec.seq != expected {
                        return Err(corrupt(
                            pos as u64,
                            expected,
                            format!("found seq {} where seq {expected} belongs", rec.seq),
                        ));
                    }
                    if !rec.chains_from(&out.hash) {
                        return Err(corrupt(
                            pos as u64,
                            expected,
                            "hash chain mismatch: the record was altered".into(),
                        ));
                    }
                    if (rec.seq - first_seq).is_multiple_of(INDEX_EVERY) {
                        info.index.push((rec.seq, pos as u64));
                    }
                    on_record(&rec);
                    out.head = rec.seq;
                    out.hash = rec.hash;
                    pos += used;
                }
                found => {
                    let rest = &bytes[pos..];
                    let clean = matches!(found, Decoded::End) && rest.iter().all(|&b| b == 0);
                    if !clean {
                        let reason = match found {
                            Decoded::Invalid(r) => r,
                            Decoded::Incomplete => "record cut short",
                            _ => "unexpected data after the last record",
                        };
                        if !last {
                            return Err(corrupt(pos as u64, expected, reason.to_string()));
                        }
                        let nonzero = rest.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                        // Only the last write can be torn, and no write is
                        // larger than `max_torn`: more damaged data than
                        // that is corruption of acknowledged records.
                        if nonzero as u64 > max_torn {
                            return Err(corrupt(
                                pos as u64,
                                expected,
                                format!(
                                    "{reason}, followed by {nonzero} bytes of data: more than one write \
                                     ({max_torn} bytes at most) can leave, so this is damage, not a torn write"
                                ),
                            ));
                        }
                        out.torn =
                            Some(TornTail { segment: path.clone(), offset: pos as u64, bytes: nonzero as u64, reason });
                    }
                    break;
                }
            }
        }
        info.last_seq = out.head;
        info.data_end = pos as u64;
        out.segments.push(info);
    }
    Ok(out)
}
