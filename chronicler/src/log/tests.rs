//! Tests of the embedded log as a whole: append, read, restart, roll,
//! torn writes and corruption.

use std::sync::Arc;

use nodb_shared::protocol::ActionId;

use crate::action::IncomingAction;
use serde_json::json;

use super::record::{GENESIS, chain_hash};
use super::scan::scan;
use super::segment::{self, HEADER_LEN};
use super::*;
use crate::metrics::Metrics;

pub(super) fn action(id: &str) -> (ActionId, IncomingAction) {
    let a: IncomingAction = serde_json::from_value(json!({"id": id, "type": "t/x", "payload": {"id": id}})).unwrap();
    (id.parse().unwrap(), a)
}

pub(super) fn batch(ids: &[&str]) -> AppendBatch {
    AppendBatch { actions: ids.iter().map(|i| action(i)).collect(), client: None, atomicity: Atomicity::AllOrNothing }
}

pub(super) fn open(config: &LogConfig) -> Arc<FileLog> {
    FileLog::open(config, Arc::new(Metrics::default())).unwrap().0
}

pub(super) fn seqs(acks: &[nodb_shared::protocol::Ack]) -> Vec<(Option<u64>, bool)> {
    acks.iter().map(|a| (a.seq, a.duplicate)).collect()
}

pub(super) async fn read_all(log: &FileLog) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let got = log.read(from, ReadLimits { max_entries: 7, max_bytes: 1 << 20 }).await.unwrap();
        if got.is_empty() {
            return out;
        }
        for e in got {
            assert_eq!(e.seq, from, "reads are gap-free");
            from += 1;
            out.push(serde_json::from_slice(&e.json).unwrap());
        }
    }
}

#[tokio::test]
async fn exactly_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(dir.path());
    let log = open(&config);
    assert_eq!(
        seqs(&log.append(batch(&["a:1", "a:2", "b:1"])).await.unwrap()),
        [(Some(1), false), (Some(2), false), (Some(3), false)]
    );
    // A re-send inside a batch, and of an earlier batch.
    assert_eq!(
        seqs(&log.append(batch(&["a:3", "a:3", "a:1"])).await.unwrap()),
        [(Some(4), false), (Some(4), true), (Some(1), true)]
    );
    // Skipping ahead refuses the whole request.
    let err = log.append(batch(&["b:2", "b:4"])).await.unwrap_err();
    assert_eq!(err, AppendError::OutOfOrder { id: "b:4".into(), client: "b".into(), expected: 3 });
    assert_eq!(*log.head().borrow(), 4);
    log.shutdown().await;
    drop(log);

    let log = open(&config);
    assert_eq!(*log.head().borrow(), 4);
    assert_eq!(
        seqs(&log.append(batch(&["b:1", "b:2", "a:4"])).await.unwrap()),
        [(Some(3), true), (Some(5), false), (Some(6), false)]
    );
    let all = read_all(&log).await;
    let ids: Vec<&str> = all.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a:1", "a:2", "b:1", "a:3", "b:2", "a:4"]);
    assert!(all.iter().all(|v| v["ts"].as_u64().unwrap() > 1_600_000_000_000));
    assert_eq!(all[4]["seq"], 5);
    log.shutdown().await;
}

#[tokio::test]
async fn a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(dir.path());
    let _log = open(&config);
    let second = FileLog::open(&config, Arc::new(Metrics::default()));
    assert!(matches!(second, Err(LogError::Locked(_))));
}

#[tokio::test]
async fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_size: 4096, recent_entries: 5, ..LogConfig::new(dir.path()) };
    let log = open(&config);
    for n in 1..=300u64 {
        log.append(batch(&[&format!("c:{n}")])).await.unwrap();
    }
    let listed = segment::list(dir.path()).unwrap();
    assert!(listed.len() > 5, "rolled into {} segments", listed.len());
    for (_, p) in &listed[..listed.len() - 1] {
        assert!(std::fs::metadata(p).unwrap().permissions().readonly(), "sealed");
    }
    // Reads from disk (the memory tail holds only 5) cross every segment.
    assert_eq!(read_all(&log).await.len(), 300);
    log.shutdown().await;
    drop(log);
    let log = open(&config);
    assert_eq!(read_all(&log).await.len(), 300);
    let mid = log.read(150, ReadLimits::default()).await.unwrap();
    assert_eq!(mid.first().unwrap().seq, 150);
    assert_eq!(mid.last().unwrap().seq, 300);
    log.shutdown().await;
}

#[tokio::test]
async fn a_flipped_byte_in_a_sealed_segment_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_size: 4096, ..LogConfig::new(dir.path()) };
    let log = open(&config);
    for n in 1..=100u64 {
        log.append(batch(&[&format!("c:{n}")])).await.unwrap();
    }
    log.shutdown().await;
    drop(log);
    let (_, first) = &segment::list(dir.path()).unwrap()[0];
    let mut bytes = std::fs::read(first).unwrap();
    let at = HEADER_LEN as usize + 100;
    bytes[at] ^= 0x01;
    let mut perms = std::fs::metadata(first).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(first, perms).unwrap();
    std::fs::write(first, &bytes).unwrap();
    match FileLog::open(&config, Arc::new(Metrics::default())) {
        Err(LogError::Corrupt { segment, offset, seq, .. }) => {
            assert_eq!(&segment, first);
            assert_eq!(offset, HEADER_LEN, "the first record holds byte {at}");
            assert_eq!(seq, 1);
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started on a corrupt log"),
    }
}

#[test]
fn an_altered_record_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = segment::Header::new(1, GENESIS).encode().to_vec();
    let h1 = record::encode(&mut file, &GENESIS, 1, "a:1", b"{}");
    // Record 2 claims a predecessor other than record 1: valid CRC, bad chain.
    let forged = chain_hash(&GENESIS, 0, "x", b"");
    record::encode(&mut file, &forged, 2, "a:2", b"{}");
    let _ = h1;
    std::fs::write(segment::path_for(dir.path(), 1), &file).unwrap();
    match scan(dir.path(), &mut |_| {}) {
        Err(LogError::Corrupt { seq: 2, reason, .. }) => {
            assert!(reason.contains("chain"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn damage_larger_than_one_write_in_the_last_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(dir.path());
    let log = open(&config);
    for n in 1..=100u64 {
        log.append(batch(&[&format!("c:{n}")])).await.unwrap();
    }
    log.shutdown().await;
    drop(log);
    let path = segment::path_for(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_LEN as usize + 500] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    // Many acknowledged records follow the damaged one: not a torn write.
    match super::scan::scan_with(
        dir.path(),
        super::scan::ScanOptions { max_torn: 1000, require_head: true },
        &mut |_| {},
    ) {
        Err(LogError::Corrupt { reason, .. }) => assert!(reason.contains("not a torn write"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Within one write's size it is still damage: later writes completed
    // (their commit marks follow), so they were acknowledged.
    match super::scan::scan_with(
        dir.path(),
        super::scan::ScanOptions { max_torn: 1 << 20, require_head: true },
        &mut |_| {},
    ) {
        Err(LogError::Corrupt { reason, .. }) => assert!(reason.contains("a write that completed later"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// `id` with this payload and meta, for comparing re-sends.
fn action_with(id: &str, payload: &str, meta: Option<&str>) -> (ActionId, IncomingAction) {
    let meta = meta.map_or(String::new(), |m| format!(r#", "meta": {m}"#));
    let text = format!(r#"{{"id": "{id}", "type": "t/x", "payload": {payload}{meta}}}"#);
    let a: IncomingAction = serde_json::from_str(&text).unwrap();
    (id.parse().unwrap(), a)
}

fn batch_of(actions: Vec<(ActionId, IncomingAction)>, atomicity: Atomicity) -> AppendBatch {
    AppendBatch { actions, client: None, atomicity }
}

#[tokio::test]
async fn a_different_action_under_a_used_id_is_refused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(dir.path());
    let mut log = open(&config);
    let first = vec![
        action_with("a:1", r#"{"n": 1, "s": "x y"}"#, Some(r#"{"k": "v"}"#)),
        action_with("a:2", "[1,\n 2]", None),
    ];
    assert_eq!(
        seqs(&log.append(batch_of(first, Atomicity::AllOrNothing)).await.unwrap()),
        [(Some(1), false), (Some(2), false)]
    );
    let reused = |id: &str, expected| AppendError::IdReused { id: id.into(), client: "a".into(), expected };
    // The same answers before and after a restart, which rebuilds the
    // hashes from the log.
    for restarts in 0..2 {
        // The same action, spaced differently, is a duplicate with its seq.
        let same =
            vec![action_with("a:1", r#"{"n":1,"s":"x y"}"#, Some(r#"{"k":"v"}"#)), action_with("a:2", "[1, 2]", None)];
        assert_eq!(
            seqs(&log.append(batch_of(same, Atomicity::AllOrNothing)).await.unwrap()),
            [(Some(1), true), (Some(2), true)],
            "after {restarts} restarts"
        );
        // Anything else under a used id is refused, naming the next number.
        for (payload, meta) in [
            (r#"{"n": 2, "s": "x y"}"#, Some(r#"{"k": "v"}"#)),
            (r#"{"n": 1, "s": "xy"}"#, Some(r#"{"k": "v"}"#)),
            (r#"{"s": "x y", "n": 1}"#, Some(r#"{"k": "v"}"#)),
            (r#"{"n": 1, "s": "x y"}"#, None),
            (r#"{"n": 1, "s": "x y"}"#, Some(r#"{"k": "w"}"#)),
        ] {
            let err = log.append(batch_of(vec![action_with("a:1", payload, meta)], Atomicity::AllOrNothing)).await;
            assert_eq!(err.unwrap_err(), reused("a:1", 3), "{payload} {meta:?} after {restarts} restarts");
        }
        let mut other_type = action_with("a:2", "[1, 2]", None);
        other_type.1.kind = "t/y".into();
        let err = log.append(batch_of(vec![other_type], Atomicity::AllOrNothing)).await.unwrap_err();
        assert_eq!(err, reused("a:2", 3));
        assert_eq!(*log.head().borrow(), 2, "nothing refused was appended");
        log.shutdown().await;
        drop(log);
        log = open(&config);
    }
    // All or nothing: a re-used id refuses the whole request, also when the
    // same new id comes twice in it with different bodies.
    let mixed = vec![action_with("a:3", "1", None), action_with("a:1", "2", None)];
    assert_eq!(log.append(batch_of(mixed, Atomicity::AllOrNothing)).await.unwrap_err(), reused("a:1", 4));
    let twice = vec![action_with("a:3", "1", None), action_with("a:3", "2", None)];
    assert_eq!(log.append(batch_of(twice, Atomicity::AllOrNothing)).await.unwrap_err(), reused("a:3", 4));
    assert_eq!(*log.head().borrow(), 2);
    // Dispatches that stand alone are each decided on their own.
    let alone = vec![action_with("a:3", "1", None), action_with("a:3", " 1 ", None), action_with("a:3", "2", None)];
    let outcomes = log.submit(batch_of(alone, Atomicity::EachAlone)).await.unwrap().await.unwrap();
    assert_eq!(outcomes[0].as_ref().map(|a| (a.seq, a.duplicate)), Ok((Some(3), false)));
    assert_eq!(outcomes[1].as_ref().map(|a| (a.seq, a.duplicate)), Ok((Some(3), true)));
    assert_eq!(outcomes[2], Err(reused("a:3", 4)));
    // Beyond the latest RECENT actions of a client only the number is
    // kept: an old id is acknowledged as a duplicate, without a seq, and
    // its content is not compared.
    let many: Vec<_> = (4..=3 + dedup::RECENT as u64).map(|n| action_with(&format!("a:{n}"), "0", None)).collect();
    log.append(batch_of(many, Atomicity::AllOrNothing)).await.unwrap();
    let old = log.append(batch_of(vec![action_with("a:1", "\"other\"", None)], Atomicity::AllOrNothing)).await;
    assert_eq!(seqs(&old.unwrap()), [(None, true)]);
    log.shutdown().await;
}
