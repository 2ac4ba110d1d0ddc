//! `@@nodb/redact`: the control action that takes earlier actions out of
//! the history's effect, and puts them back.
//!
//! `{"seqs": [N, …], "reason": "…"}` redacts the actions at those seqs:
//! from the redaction's own seq on, every view is as if they had never
//! been applied (later actions are re-evaluated without them).
//! `{"seqs": [N, …], "undo": true}` restores them. The log keeps every
//! action, the redacted ones and the redaction included; only their effect
//! changes. Only an admin may send it, like every `@@nodb/*` action.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The action type.
pub const REDACT: &str = "@@nodb/redact";

/// At most how many seqs one redaction names.
pub const MAX_SEQS: usize = 10_000;

/// At most how long a reason is, in bytes.
pub const MAX_REASON: usize = 1024;

/// A redaction's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redact {
    /// The seqs whose actions it redacts (or, with `undo`, restores).
    pub seqs: Vec<u64>,
    /// Why, for the people who read the history later. Required to redact.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Whether it restores the seqs rather than redacting them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo: bool,
}

/// Why a redaction's payload is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    /// The payload is not `{"seqs": […], "reason": "…"[, "undo": true]}`.
    #[error("{REDACT} takes {{\"seqs\": [N, …], \"reason\": \"…\"}} or {{\"seqs\": [N, …], \"undo\": true}}: {0}")]
    Shape(String),
    /// No seqs.
    #[error("{REDACT} names no seqs")]
    Empty,
    /// Too many seqs.
    #[error("{REDACT} names {0} seqs; at most {MAX_SEQS} at once")]
    TooMany(usize),
    /// A seq named twice.
    #[error("{REDACT} names seq {0} twice")]
    Repeated(u64),
    /// Seq 0, or a seq not before the redaction itself.
    #[error("{REDACT} can only name seqs from 1 to {last}, not {seq}")]
    OutOfRange {
        /// The seq named.
        seq: u64,
        /// The last seq it may name (the one before its own).
        last: u64,
    },
    /// A redaction without a reason.
    #[error("{REDACT} needs a \"reason\" (an undo does not)")]
    NoReason,
    /// The reason is too long.
    #[error("{REDACT}'s reason has {0} bytes; at most {MAX_REASON}")]
    LongReason(usize),
    /// It names a redaction (or undo) that took effect, which cannot be
    /// left out: the log's index and the data views know which seqs those
    /// are, the payload alone does not.
    #[error("{REDACT} cannot name seq {0}: it is a redaction itself (undo it instead)")]
    NamesARedaction(u64),
}

impl Redact {
    /// Reads and checks a redaction's payload; `last` is the last seq it
    /// may name (the one before its own, or the log's head at ingest).
    ///
    /// # Errors
    /// A [`RedactError`] naming what is wrong.
    pub fn parse(payload: &Value, last: u64) -> Result<Redact, RedactError> {
        let redact = Redact::deserialize(payload).map_err(|e| RedactError::Shape(e.to_string()))?;
        if redact.seqs.is_empty() {
            return Err(RedactError::Empty);
        }
        if redact.seqs.len() > MAX_SEQS {
            return Err(RedactError::TooMany(redact.seqs.len()));
        }
        let mut seen = BTreeSet::new();
        for &seq in &redact.seqs {
            if seq == 0 || seq > last {
                return Err(RedactError::OutOfRange { seq, last });
            }
            if !seen.insert(seq) {
                return Err(RedactError::Repeated(seq));
            }
        }
        if !redact.undo && redact.reason.trim().is_empty() {
            return Err(RedactError::NoReason);
        }
        if redact.reason.len() > MAX_REASON {
            return Err(RedactError::LongReason(redact.reason.len()));
        }
        Ok(redact)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_redaction_names_earlier_seqs_once_with_a_reason() {
        let ok = Redact::parse(&json!({"seqs": [3, 1], "reason": "typo"}), 5).unwrap();
        assert_eq!((ok.seqs, ok.undo), (vec![3, 1], false));
        assert!(Redact::parse(&json!({"seqs": [5], "undo": true}), 5).unwrap().undo);
        let refused = [
            (json!([1]), "takes"),
            (json!({"seqs": [1], "reason": "r", "extra": 1}), "unknown field"),
            (json!({"seqs": [], "reason": "r"}), "no seqs"),
            (json!({"seqs": [0], "reason": "r"}), "from 1 to 5, not 0"),
            (json!({"seqs": [6], "reason": "r"}), "from 1 to 5, not 6"),
            (json!({"seqs": [2, 2], "reason": "r"}), "twice"),
            (json!({"seqs": [2]}), "needs a \"reason\""),
            (json!({"seqs": [2], "reason": " "}), "needs a \"reason\""),
            (json!({"seqs": [2], "reason": "x".repeat(MAX_REASON + 1)}), "at most 1024"),
            (json!({"seqs": (1..=MAX_SEQS as u64 + 1).collect::<Vec<_>>(), "reason": "r"}), "at most 10000"),
        ];
        for (payload, words) in refused {
            let e = Redact::parse(&payload, if words.contains("10000") { u64::MAX } else { 5 }).unwrap_err();
            assert!(e.to_string().contains(words), "{payload}: {e}");
        }
    }
}
