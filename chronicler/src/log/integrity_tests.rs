//! The log never forgets what it acknowledged: damage before the last
//! complete write, missing or shortened segments, and rewritten history are
//! refused by recovery (and `verify`, which runs the same scan); only an
//! unfinished last write is cut away. Time never goes backwards.

use std::path::Path;
use std::sync::Arc;

use super::head;
use super::record::{self, GENESIS};
use super::scan::scan;
use super::segment::{self, HEADER_LEN};
use super::tests::{batch, open, read_all, seqs};
use super::*;
use crate::metrics::Metrics;

/// A log of `writes` separately acknowledged writes, one action each, in
/// one segment; returns the directory.
async fn log_of(writes: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&LogConfig { segment_size: 4096, ..LogConfig::new(dir.path()) });
    for n in 1..=writes {
        log.append(batch(&[&format!("c:{n}")])).await.unwrap();
    }
    log.shutdown().await;
    dir
}

/// A copy of the log directory `from` with `f` applied to its first segment.
fn damaged_copy(from: &Path, f: impl FnOnce(&mut Vec<u8>)) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.path().join(p.file_name().unwrap())).unwrap();
    }
    let seg = segment::path_for(to.path(), 1);
    let mut bytes = std::fs::read(&seg).unwrap();
    f(&mut bytes);
    std::fs::write(&seg, &bytes).unwrap();
    to
}

/// The chain hash after seq `seq` of the log in `dir`.
fn hash_at(dir: &Path, seq: u64) -> record::Hash {
    let mut hash = GENESIS;
    scan(dir, &mut |r| {
        if r.seq == seq {
            hash = r.hash
        }
    })
    .unwrap();
    hash
}

/// Replaces the head file in `dir` with one that records `seq`.
fn record_head(dir: &Path, seq: u64, hash: record::Hash) {
    std::fs::remove_file(head::path(dir)).unwrap();
    drop(head::HeadFile::open(dir, head::Recorded { seq, hash }).unwrap());
}

#[tokio::test]
async fn a_flipped_bit_before_the_last_complete_write_is_refused_at_every_position() {
    let dir = log_of(8).await;
    let ends = write_ends(&std::fs::read(segment::path_for(dir.path(), 1)).unwrap());
    let (end, last_write) = (ends[7], ends[6]);
    let hash_1 = hash_at(dir.path(), 1);
    for current_head in [true, false] {
        for at in HEADER_LEN as usize..end {
            // With a head file that trails the log (a power cut before its
            // sync), commit marks alone must tell: any byte before the last
            // write, whose damage looks like that write torn in flight.
            if !current_head && at >= last_write {
                continue;
            }
            let copy = damaged_copy(dir.path(), |b| b[at] ^= 1 << (at % 8));
            if !current_head {
                record_head(copy.path(), 1, hash_1);
            }
            match scan(copy.path(), &mut |_| {}) {
                Err(LogError::Corrupt { .. } | LogError::Shortened { .. }) => {}
                other => panic!("flip at {at} (current head file: {current_head}): {other:?}"),
            }
        }
    }
    // Recovery refuses it too, naming the damage, and leaves it as found.
    let copy = damaged_copy(dir.path(), |b| b[HEADER_LEN as usize + 30] ^= 4);
    let before = std::fs::read(segment::path_for(copy.path(), 1)).unwrap();
    let err = FileLog::open(&LogConfig::new(copy.path()), Arc::new(Metrics::default())).err().unwrap();
    assert!(matches!(err, LogError::Corrupt { seq: 1, .. }), "{err}");
    assert!(err.to_string().contains("not a torn write"), "{err}");
    assert_eq!(std::fs::read(segment::path_for(copy.path(), 1)).unwrap(), before);
}

/// Where each write ends in a segment's bytes (one record and its mark
/// per write).
fn write_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = HEADER_LEN as usize;
    while let record::Decoded::Record(_, used) = record::decode(&bytes[pos..]) {
        pos += used + record::COMMIT_LEN;
        ends.push(pos);
    }
    ends
}

#[tokio::test]
async fn a_torn_final_write_is_cut_to_the_last_complete_write_at_every_byte() {
    let dir = log_of(3).await;
    let ends = write_ends(&std::fs::read(segment::path_for(dir.path(), 1)).unwrap());
    let (end_of_2, end_of_3) = (ends[1], ends[2]);
    let hash_of_2 = hash_at(dir.path(), 2);
    let full = std::fs::read(segment::path_for(dir.path(), 1)).unwrap();
    for cut in end_of_2..end_of_3 {
        // The third write stopped after `cut` bytes, so it was never
        // acknowledged and the head file still says 2. (Cut inside the
        // zero bytes that end its mark, it is whole.)
        if full[cut..end_of_3].iter().all(|&b| b == 0) {
            continue;
        }
        let copy = damaged_copy(dir.path(), |b| b[cut..end_of_3].iter_mut().for_each(|b| *b = 0));
        record_head(copy.path(), 2, hash_of_2);
        let config = LogConfig::new(copy.path());
        let (log, rec) = FileLog::open(&config, Arc::new(Metrics::default())).unwrap();
        assert_eq!(rec.head, 2, "cut at {cut}");
        assert_eq!(rec.torn_bytes > 0, cut > end_of_2, "cut at {cut}");
        assert_eq!(seqs(&log.append(batch(&["c:3"])).await.unwrap()), [(Some(3), false)], "cut at {cut}");
        log.shutdown().await;
        drop(log);
        let s = scan(copy.path(), &mut |_| {}).unwrap();
        assert_eq!((s.head, s.torn.is_none()), (3, true), "cut at {cut}");
    }
}

#[tokio::test]
async fn missing_shortened_and_rewritten_logs_are_refused() {
    let config_of = |d: &Path| LogConfig { segment_size: 4096, ..LogConfig::new(d) };
    let dir = tempfile::tempdir().unwrap();
    let log = open(&config_of(dir.path()));
    for n in 1..=100u64 {
        log.append(batch(&[&format!("c:{n}")])).await.unwrap();
    }
    log.shutdown().await;
    drop(log);
    let segs = segment::list(dir.path()).unwrap();
    assert!(segs.len() > 3);
    let refuse = |d: &Path| FileLog::open(&config_of(d), Arc::new(Metrics::default())).err().expect("must refuse");

    // The last segment deleted.
    let copy = damaged_copy(dir.path(), |_| {});
    std::fs::remove_file(copy.path().join(segs.last().unwrap().1.file_name().unwrap())).unwrap();
    let err = refuse(copy.path());
    assert!(matches!(err, LogError::Shortened { recorded: 100, .. }), "{err}");
    assert!(err.to_string().contains("missing or were cut short"), "{err}");

    // The active segment cut at a record boundary (after write 99).
    let copy = damaged_copy(dir.path(), |_| {});
    let last = copy.path().join(segs.last().unwrap().1.file_name().unwrap());
    let mut bytes = std::fs::read(&last).unwrap();
    let ends = write_ends(&bytes);
    bytes.truncate(ends[ends.len() - 2]);
    std::fs::write(&last, &bytes).unwrap();
    assert!(matches!(refuse(copy.path()), LogError::Shortened { recorded: 100, found: 99, .. }));

    // Everything rewritten with valid checksums and a valid chain, but the
    // head file still holds the chain hash the log had.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(head::path(dir.path()), head::path(copy.path())).unwrap();
    let mut file = segment::Header::new(1, GENESIS).encode().to_vec();
    let mut hash = GENESIS;
    for n in 1..=100u64 {
        let json = format!(r#"{{"seq":{n},"ts":1,"id":"c:{n}","type":"t/forged"}}"#);
        hash = record::encode(&mut file, &hash, n, &format!("c:{n}"), json.as_bytes());
        let start = (file.len() - (record::FRAME_HEADER + 8 + 32 + 2 + format!("c:{n}").len() + json.len())) as u64;
        record::encode_commit(&mut file, n, &hash, start);
    }
    std::fs::write(segment::path_for(copy.path(), 1), &file).unwrap();
    assert!(matches!(refuse(copy.path()), LogError::Rewritten { seq: 100, .. }));

    // A head file that is itself damaged refuses start, naming it.
    let copy = damaged_copy(dir.path(), |_| {});
    std::fs::write(head::path(copy.path()), [7u8; 1024]).unwrap();
    assert!(matches!(refuse(copy.path()), LogError::Head { .. }));
}

#[tokio::test]
async fn version_1_segments_are_read_and_never_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    // A log as the first format wrote it: no commit marks, no head file.
    let mut file = segment::Header { version: 1, ..segment::Header::new(1, GENESIS) }.encode().to_vec();
    let mut hash = GENESIS;
    let future = super::group_commit::now_ms() + 86_400_000;
    for n in 1..=2u64 {
        let json = format!(r#"{{"seq":{n},"ts":{future},"id":"c:{n}","type":"t/x"}}"#);
        hash = record::encode(&mut file, &hash, n, &format!("c:{n}"), json.as_bytes());
    }
    std::fs::write(segment::path_for(dir.path(), 1), &file).unwrap();
    let config = LogConfig::new(dir.path());
    let log = open(&config);
    assert_eq!(seqs(&log.append(batch(&["c:3"])).await.unwrap()), [(Some(3), false)]);
    let all = read_all(&log).await;
    assert_eq!(all.len(), 3);
    // The clock is a day behind the log: time in the log still goes on.
    assert!(all[2]["ts"].as_u64().unwrap() >= future, "{}", all[2]);
    log.shutdown().await;
    drop(log);
    let segs = segment::list(dir.path()).unwrap();
    assert_eq!(segs.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 3], "a new segment took the appends");
    assert_eq!(segment::read_header(&segs[0].1).unwrap().version, 1);
    assert_eq!(segment::read_header(&segs[1].1).unwrap().version, segment::VERSION);
    let s = scan(dir.path(), &mut |_| {}).unwrap();
    assert_eq!((s.head, s.recorded.map(|r| r.seq)), (3, Some(3)));
}

/// A power cut during a write's sync can leave its pages on disk out of
/// order: a hole inside the write, its commit mark after it. That write was
/// never acknowledged; only a later completed write makes it damage.
#[tokio::test]
async fn a_write_torn_out_of_order_is_cut_but_not_one_followed_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&LogConfig::new(dir.path()));
    log.append(batch(&["c:1"])).await.unwrap();
    // One write of many pages.
    let many: Vec<String> = (2..=60).map(|n| format!("c:{n}")).collect();
    let mut big = batch(&many.iter().map(String::as_str).collect::<Vec<_>>());
    for (_, a) in &mut big.actions {
        a.payload = Some(serde_json::value::RawValue::from_string(format!("\"{}\"", "x".repeat(300))).unwrap());
    }
    log.append(big).await.unwrap();
    log.shutdown().await;
    drop(log);
    let ends = write_ends_any(&std::fs::read(segment::path_for(dir.path(), 1)).unwrap());
    let (end_of_1, end_of_big) = (ends[0], ends[1]);
    assert!(end_of_big - end_of_1 > 3 * 4096);
    let hash_1 = hash_at(dir.path(), 1);
    // The page before the mark never reached the disk; the head file was
    // last written for seq 1.
    let hole = (end_of_big - 4096 - 100)..(end_of_big - 100);
    let copy = damaged_copy(dir.path(), |b| b[hole.clone()].iter_mut().for_each(|b| *b = 0));
    record_head(copy.path(), 1, hash_1);
    let (log, rec) = FileLog::open(&LogConfig::new(copy.path()), Arc::new(Metrics::default())).unwrap();
    assert_eq!(rec.head, 1);
    assert!(rec.torn_bytes > 0);
    log.shutdown().await;
    // The same hole with another completed write after it: refused.
    let copy = damaged_copy(dir.path(), |b| b[hole.clone()].iter_mut().for_each(|b| *b = 0));
    let config = LogConfig::new(copy.path());
    record_head(copy.path(), 1, hash_1);
    {
        let bytes = std::fs::read(segment::path_for(copy.path(), 1)).unwrap();
        let mut more = bytes[..end_of_big].to_vec();
        let json = br#"{"seq":61,"ts":1,"id":"c:61","type":"t/x"}"#;
        let h = record::encode(&mut more, &[9; 32], 61, "c:61", json);
        record::encode_commit(&mut more, 61, &h, end_of_big as u64);
        more.resize(bytes.len(), 0);
        std::fs::write(segment::path_for(copy.path(), 1), &more).unwrap();
    }
    let err = FileLog::open(&config, Arc::new(Metrics::default())).err().expect("must refuse");
    assert!(err.to_string().contains("not a torn write"), "{err}");
}

/// Where each write ends, for writes of any number of records.
fn write_ends_any(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = HEADER_LEN as usize;
    loop {
        match record::decode(&bytes[pos..]) {
            record::Decoded::Record(_, used) => pos += used,
            record::Decoded::Commit { .. } => {
                pos += record::COMMIT_LEN;
                ends.push(pos);
            }
            _ => return ends,
        }
    }
}

/// A version 2 log is never written without its head file: a missing or
/// emptied one is refused, and `set_head` (after the operator's check)
/// records the end of the segments again.
#[tokio::test]
async fn a_lost_head_file_is_refused_until_set_again() {
    let dir = log_of(5).await;
    for lose in [|p: &Path| std::fs::remove_file(p).unwrap(), |p: &Path| std::fs::write(p, b"").unwrap()] {
        let copy = damaged_copy(dir.path(), |_| {});
        lose(&head::path(copy.path()));
        let config = LogConfig::new(copy.path());
        let err = FileLog::open(&config, Arc::new(Metrics::default())).err().expect("must refuse");
        assert!(matches!(err, LogError::Head { .. }) && err.to_string().contains("set-head"), "{err}");
        let set = file_log::set_head(copy.path()).unwrap();
        assert_eq!(set.seq, 5);
        let (log, rec) = FileLog::open(&config, Arc::new(Metrics::default())).unwrap();
        assert_eq!(rec.head, 5);
        log.shutdown().await;
    }
    // Not while a chronicler holds the log.
    let copy = damaged_copy(dir.path(), |_| {});
    let log = open(&LogConfig::new(copy.path()));
    assert!(matches!(file_log::set_head(copy.path()), Err(LogError::Locked(_))));
    log.shutdown().await;
}
