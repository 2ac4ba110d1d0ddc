//! The redaction index: which seqs are redacted now, and by which
//! `@@nodb/redact` action, so `GET /actions` can mark their lines with
//! `"redacted_by": R` (see `server::stream`).
//!
//! The log stores every action as it came, the redactions included; this
//! index is derived from the log alone. Redactions and undos apply in seq
//! order: a redaction at seq R maps each seq it names to R (a later one
//! naming a seq again takes it over); an undo removes the seqs it names.
//! Two kinds of `@@nodb/redact` record change nothing, as in the data
//! view (`nodb_dataview::redaction`): one whose payload [`Redact::parse`]
//! refuses with `last` = its seq − 1, and one that names a redaction (or
//! undo) that took effect, which cannot be left out (undo it instead).
//! Ingest refuses both, so only a log written before it checked them
//! holds such records.
//!
//! # How it is kept, and what it costs
//!
//! [`FileLog`](super::FileLog) builds it during recovery's scan, which
//! already reads and chain-checks every record at every start: each record
//! costs one search for `,"type":"` in its first bytes (the type is the
//! fourth field, after the numbers `seq` and `ts` and the string `id`, and a
//! JSON string never holds `,"`), and only `@@nodb/redact` records are
//! parsed. There is no file to go stale: the index is always the log's. The
//! writer then applies each committed redaction under the same lock that
//! publishes its record, before the head moves past it, so a reader that
//! sees a redaction's seq as durable also sees its effect.
//!
//! Memory: one `BTreeMap` entry (two `u64`s, about 16 to 32 bytes with the
//! tree's nodes) per seq redacted *now*, and one `u64` (8 to 16 bytes) per
//! redaction or undo that took effect; nothing for seqs never redacted or
//! restored by an undo, nothing when there are no redactions. Each
//! redaction names at most [`MAX_SEQS`](nodb_shared::protocol::redact::MAX_SEQS)
//! seqs, so it adds at most 10,000 entries (about 300 KiB); a million
//! redacted seqs cost about 30 MiB.

use std::collections::{BTreeMap, BTreeSet};

use nodb_shared::protocol::{REDACT, Redact, RedactError};
use serde::Deserialize;

/// Which seqs are redacted now, and by which redaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redactions {
    /// Redacted seq → the seq of the redaction in force over it.
    by: BTreeMap<u64, u64>,
    /// The seqs of the redactions and undos that took effect.
    ledger: BTreeSet<u64>,
}

impl Redactions {
    /// Takes the next committed record (its seq and its stored JSON), in
    /// seq order: applies it if it is a redaction whose payload passes the
    /// checks. Returns whether it changed the index.
    pub fn record(&mut self, seq: u64, json: &[u8]) -> bool {
        match redaction_in(seq, json) {
            Some(Ok(redact)) => self.apply(seq, &redact),
            Some(Err(e)) => {
                tracing::debug!(seq, error = %e, "a redaction in the log that its checks refuse changes nothing");
                false
            }
            None => false,
        }
    }

    /// Applies the redaction (or undo) `redact` committed at seq `seq`, the
    /// latest so far. Returns `false`, changing nothing, when it names a
    /// redaction that took effect.
    pub fn apply(&mut self, seq: u64, redact: &Redact) -> bool {
        if let Some(named) = self.redaction_among(&redact.seqs) {
            tracing::debug!(seq, named, "a redaction in the log that names a redaction changes nothing");
            return false;
        }
        for &named in &redact.seqs {
            if redact.undo {
                self.by.remove(&named);
            } else {
                self.by.insert(named, seq);
            }
        }
        self.ledger.insert(seq);
        true
    }

    /// The first of `seqs` that is a redaction (or undo) that took effect:
    /// a redaction naming it would be refused.
    pub fn redaction_among(&self, seqs: &[u64]) -> Option<u64> {
        if self.ledger.is_empty() {
            return None;
        }
        seqs.iter().copied().find(|s| self.ledger.contains(s))
    }

    /// The seq of the redaction in force over `seq`, if it is redacted.
    pub fn redacted_by(&self, seq: u64) -> Option<u64> {
        self.by.get(&seq).copied()
    }

    /// The redacted seqs from `from` to `to` (inclusive) with the seqs of
    /// their redactions, in seq order.
    pub fn in_range(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        if from > to || self.by.is_empty() {
            return Vec::new();
        }
        self.by.range(from..=to).map(|(s, r)| (*s, *r)).collect()
    }

    /// How many seqs are redacted now.
    pub fn len(&self) -> usize {
        self.by.len()
    }

    /// Whether no seq is redacted now.
    pub fn is_empty(&self) -> bool {
        self.by.is_empty()
    }
}

/// The redaction a committed record at `seq` holds: `None` when it is not
/// a `@@nodb/redact` action, its checked payload otherwise (checked with
/// `last` = `seq` − 1, the last seq it may name).
pub fn redaction_in(seq: u64, json: &[u8]) -> Option<Result<Redact, RedactError>> {
    if !has_redact_type(json) {
        return None;
    }
    #[derive(Deserialize)]
    struct Stored {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        payload: serde_json::Value,
    }
    // The quick look said so; a full parse makes sure.
    let stored: Stored = serde_json::from_slice(json).ok()?;
    (stored.kind == REDACT).then(|| Redact::parse(&stored.payload, seq.saturating_sub(1)))
}

/// Whether a committed record's JSON (`{"seq":N,"ts":T,"id":"…","type":"…",…}`)
/// has the type `@@nodb/redact`, without parsing it: its first `,"type":"`
/// is the type's key (before it come two numbers and a JSON string, which
/// never holds `,"`: a quote inside a string is escaped), and the committed
/// JSON writes the type `@@nodb/redact` without escapes.
fn has_redact_type(json: &[u8]) -> bool {
    const KEY: &[u8] = b",\"type\":\"";
    const VALUE: &[u8] = b"@@nodb/redact\"";
    json.windows(KEY.len()).position(|w| w == KEY).is_some_and(|at| json[at + KEY.len()..].starts_with(VALUE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::IncomingAction;

    /// A committed record's JSON, as the writer stores it.
    fn committed(seq: u64, id: &str, kind: &str, payload: &str) -> Vec<u8> {
        let action: IncomingAction = serde_json::from_value(serde_json::json!({
            "id": id, "type": kind, "payload": serde_json::from_str::<serde_json::Value>(payload).unwrap(),
        }))
        .unwrap();
        action.committed_json(seq, 1_795_000_000_000, None)
    }

    #[test]
    fn redactions_and_undos_apply_in_seq_order() {
        let mut r = Redactions::default();
        let log = [
            committed(1, "c:1", "t", "1"),
            committed(2, "c:2", "t", "2"),
            committed(3, "c:3", "t", "3"),
            committed(4, "ops:1", REDACT, r#"{"seqs": [1, 2], "reason": "typo"}"#),
            committed(5, "ops:2", REDACT, r#"{"seqs": [2], "undo": true}"#),
            committed(6, "ops:3", REDACT, r#"{"seqs": [1, 3], "reason": "again"}"#),
            // Refused by the checks (seq 7 is its own): changes nothing.
            committed(7, "ops:4", REDACT, r#"{"seqs": [7], "reason": "self"}"#),
            committed(8, "ops:5", REDACT, r#"{"seqs": [3], "reason": ""}"#),
        ];
        let changed: Vec<bool> = log.iter().enumerate().map(|(i, json)| r.record(i as u64 + 1, json)).collect();
        assert_eq!(changed, [false, false, false, true, true, true, false, false]);
        assert_eq!(r.in_range(1, 100), vec![(1, 6), (3, 6)]);
        assert_eq!((r.redaction_among(&[1, 2, 3, 7, 8]), r.redaction_among(&[9, 5])), (None, Some(5)));
        assert_eq!((r.redacted_by(2), r.redacted_by(3), r.len()), (None, Some(6), 2));
        assert_eq!(r.in_range(2, 2), vec![]);
        assert_eq!(r.in_range(3, 1), vec![]);
        // An undo of a seq that is not redacted changes nothing either way.
        assert!(r.record(9, &committed(9, "ops:6", REDACT, r#"{"seqs": [2, 3], "undo": true}"#)));
        assert_eq!(r.in_range(1, 100), vec![(1, 6)]);
        // A redaction or undo that took effect cannot be named (the one at
        // 6 and the undo at 9), and the one naming it is no redaction
        // either; one that was refused (7) can be named.
        let before = r.clone();
        assert!(!r.record(10, &committed(10, "ops:7", REDACT, r#"{"seqs": [2, 6], "reason": "r"}"#)));
        assert!(!r.record(10, &committed(10, "ops:7", REDACT, r#"{"seqs": [9], "undo": true}"#)));
        assert_eq!(r, before);
        assert!(r.record(10, &committed(10, "ops:7", REDACT, r#"{"seqs": [7], "reason": "r"}"#)));
        assert_eq!(r.in_range(1, 100), vec![(1, 6), (7, 10)]);
        assert!(r.record(11, &committed(11, "ops:8", REDACT, r#"{"seqs": [8], "reason": "r"}"#)));
        assert_eq!(r.redaction_among(&[8, 10, 11]), Some(10));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// The index the writer keeps as it appends, and the one recovery
        /// builds from the segments, both equal a plain fold over the
        /// actions read back (redactions and undos in seq order, refused
        /// ones — bad seqs, no reason, naming a redaction — changing
        /// nothing), across segment rolls and restarts.
        #[test]
        fn the_kept_index_and_the_recovered_one_are_the_logs(
            steps in proptest::collection::vec((0u8..6, proptest::collection::vec(0u64..40, 1..4)), 1..40),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let config = crate::log::LogConfig { segment_size: 4096, ..crate::log::LogConfig::new(dir.path()) };
                let open = || crate::log::FileLog::open(&config, Default::default()).unwrap().0;
                let mut log = open();
                let mut n = 0;
                for (kind, seqs) in steps {
                    if kind == 5 {
                        log.shutdown().await;
                        drop(log);
                        log = open();
                        continue;
                    }
                    n += 1;
                    // Mostly earlier seqs; 0 and the action's own now and then.
                    let seqs: Vec<u64> = seqs.iter().map(|s| s % (n + 1)).collect();
                    let payload = match kind {
                        0 | 1 => serde_json::json!({"n": n}),
                        2 => serde_json::json!({"seqs": seqs, "reason": "r"}),
                        3 => serde_json::json!({"seqs": seqs, "undo": true}),
                        _ => serde_json::json!({"seqs": seqs}),
                    };
                    let kind = if kind < 2 { "t" } else { REDACT };
                    let action: IncomingAction =
                        serde_json::from_value(serde_json::json!({"id": format!("c:{n}"), "type": kind, "payload": payload}))
                            .unwrap();
                    let batch = crate::log::AppendBatch {
                        actions: vec![(action.id.parse().unwrap(), action)],
                        client: None,
                        atomicity: crate::log::Atomicity::AllOrNothing,
                    };
                    crate::log::Log::append(&*log, batch).await.unwrap();
                }
                let expected = fold(&crate::log::tests::read_all(&log).await);
                proptest::prop_assert_eq!(crate::log::Log::redacted(&*log, 1, u64::MAX), expected.clone());
                log.shutdown().await;
                drop(log);
                let log = open();
                proptest::prop_assert_eq!(crate::log::Log::redacted(&*log, 1, u64::MAX), expected);
                log.shutdown().await;
                Ok(())
            })?;
        }
    }

    /// What is redacted after `actions`, folded the plain way.
    fn fold(actions: &[serde_json::Value]) -> Vec<(u64, u64)> {
        let mut in_force = BTreeMap::new();
        let mut ledger = Vec::new();
        for a in actions.iter().filter(|a| a["type"] == REDACT) {
            let seq = a["seq"].as_u64().unwrap();
            let Ok(r) = Redact::parse(&a["payload"], seq - 1) else { continue };
            if r.seqs.iter().any(|s| ledger.contains(s)) {
                continue;
            }
            ledger.push(seq);
            for s in r.seqs {
                if r.undo {
                    in_force.remove(&s);
                } else {
                    in_force.insert(s, seq);
                }
            }
        }
        in_force.into_iter().collect()
    }

    #[test]
    fn only_the_type_field_makes_a_redaction() {
        let payload = r#"{"type": "@@nodb/redact", "x": ",\"type\":\"@@nodb/redact\"", "seqs": [1], "reason": "r"}"#;
        assert!(redaction_in(5, &committed(5, "c:1", "t", payload)).is_none());
        // An id holding the words (quotes escaped) is not the type either.
        let sneaky = committed(5, r#"x","type":"@@nodb/redact":1"#, "t", r#"{"seqs": [1], "reason": "r"}"#);
        assert!(redaction_in(5, &sneaky).is_none(), "{}", String::from_utf8_lossy(&sneaky));
        // A type that merely starts with it is another type.
        assert!(redaction_in(5, &committed(5, "c:1", "@@nodb/redacted", r#"{"seqs": [1], "reason": "r"}"#)).is_none());
        // The type spelt with escapes is stored without them.
        let escaped: IncomingAction = serde_json::from_str(
            r#"{"id": "c:1", "type": "@@nodb\/red\u0061ct", "payload": {"seqs": [1], "reason": "r"}}"#,
        )
        .unwrap();
        let found = redaction_in(5, &escaped.committed_json(5, 1, Some("ana"))).unwrap().unwrap();
        assert_eq!(found.seqs, vec![1]);
        // With meta and a payload sent over several lines.
        let with_meta: IncomingAction = serde_json::from_str(
            "{\"id\": \"c:2\", \"type\": \"@@nodb/redact\", \"payload\": {\n\"seqs\": [2,\n 3], \"undo\": true}, \"meta\": {\"k\": \"v\"}}",
        )
        .unwrap();
        let found = redaction_in(9, &with_meta.committed_json(9, 1, None)).unwrap().unwrap();
        assert_eq!((found.seqs, found.undo), (vec![2, 3], true));
        // Checked against the seq before its own.
        let err = redaction_in(3, &committed(3, "c:1", REDACT, r#"{"seqs": [3], "reason": "r"}"#)).unwrap();
        assert_eq!(err.unwrap_err(), RedactError::OutOfRange { seq: 3, last: 2 });
    }
}
