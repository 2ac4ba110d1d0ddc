//! Redactions: which earlier actions the views leave out, as of each seq.
//!
//! `@@nodb/redact {"seqs": [N, …], "reason": "…"}` at seq R takes the
//! actions at those seqs out of the history's effect from R on, and
//! `{"seqs": [N, …], "undo": true}` puts them back (see
//! [`nodb_shared::protocol::redact`]). The views at any seq S are the fold
//! of every action up to S except the ones redacted *as of S*; so the
//! views at seqs before R stay what they were (`?at` still shows them),
//! and at R every view is rebuilt: from a base state that these
//! redactions leave as it was ([`Redactions::base_fits`]), replaying the
//! actions after it without the redacted ones. Each client then receives
//! one patch at R, from the views it had to the rebuilt ones.
//!
//! [`Redactions`] is the ledger of every redaction and undo up to some
//! seq, in order, with the seqs in force. It travels with the states: in
//! the engine (which passes over a redacted seq as if it changed nothing)
//! and in every snapshot, so a data view restored from one knows what its
//! states leave out.

use std::collections::BTreeMap;
use std::sync::Arc;

use nodb_shared::protocol::{CommittedAction, Redact, RedactError};
use serde::{Deserialize, Serialize};

/// One redaction (or undo), at the seq of its action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    /// The seq of the `@@nodb/redact` action.
    pub seq: u64,
    /// The seqs it names.
    pub seqs: Vec<u64>,
    /// Whether it restores them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo: bool,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Redaction {
    /// The redaction `action` makes.
    ///
    /// # Errors
    /// [`RedactError`] when its payload is not a redaction of earlier seqs.
    pub fn of(action: &CommittedAction) -> Result<Redaction, RedactError> {
        let Redact { seqs, reason, undo } = Redact::parse(&action.payload, action.seq.saturating_sub(1))?;
        Ok(Redaction { seq: action.seq, seqs, undo, reason })
    }
}

/// Every redaction up to some seq, and the seqs redacted by them (each
/// with the seq of the redaction in force). Clones share the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redactions {
    ledger: Arc<Vec<Redaction>>,
    /// For each redaction of the ledger, the first seq whose effect it
    /// changed (`None`: it changed none — it redacted what was redacted,
    /// or restored what was not).
    changed: Arc<Vec<Option<u64>>>,
    /// Redacted seq → the redaction in force.
    in_force: Arc<BTreeMap<u64, u64>>,
}

impl Redactions {
    /// The ledger made of `ledger` (in seq order, as a snapshot keeps it).
    pub fn from_ledger(ledger: Vec<Redaction>) -> Redactions {
        let mut ledger = ledger;
        ledger.sort_by_key(|r| r.seq);
        let mut in_force = BTreeMap::new();
        let mut changed = Vec::with_capacity(ledger.len());
        for r in &ledger {
            let mut first: Option<u64> = None;
            for &seq in &r.seqs {
                let flipped =
                    if r.undo { in_force.remove(&seq).is_some() } else { in_force.insert(seq, r.seq).is_none() };
                if flipped {
                    first = Some(first.map_or(seq, |f| f.min(seq)));
                }
            }
            changed.push(first);
        }
        Redactions { ledger: Arc::new(ledger), changed: Arc::new(changed), in_force: Arc::new(in_force) }
    }

    /// The redactions, in seq order.
    pub fn ledger(&self) -> &[Redaction] {
        &self.ledger
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ledger.is_empty()
    }

    /// The seq of the redaction in force on `seq`, if it is redacted.
    pub fn redacted_by(&self, seq: u64) -> Option<u64> {
        self.in_force.get(&seq).copied()
    }

    /// Every redacted seq in `from..=to`, with the redaction in force.
    pub fn redacted_in(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.in_force.range(from..=to.max(from)).map(|(s, by)| (*s, *by))
    }

    /// Whether the redaction at `seq` is in the ledger.
    pub fn has(&self, seq: u64) -> bool {
        self.ledger.binary_search_by_key(&seq, |r| r.seq).is_ok()
    }

    /// The ledger as it was at `seq`: the redactions up to it.
    pub fn as_of(&self, seq: u64) -> Redactions {
        if self.ledger.last().is_none_or(|r| r.seq <= seq) {
            return self.clone();
        }
        Redactions::from_ledger(self.ledger.iter().filter(|r| r.seq <= seq).cloned().collect())
    }

    /// The ledger with `redaction` (the next one) added, and the first seq
    /// whose effect it changes (`None`: it changes none — it redacts what
    /// was redacted, or restores what was not).
    ///
    /// # Errors
    /// [`RedactError::NamesARedaction`] when it names a redaction.
    pub fn with(&self, redaction: Redaction) -> Result<(Redactions, Option<u64>), RedactError> {
        if let Some(&seq) = redaction.seqs.iter().find(|s| self.has(**s)) {
            return Err(RedactError::NamesARedaction(seq));
        }
        let changes = |seq: &&u64| self.in_force.contains_key(seq) == redaction.undo;
        let first = redaction.seqs.iter().filter(changes).min().copied();
        let mut ledger = self.ledger.to_vec();
        ledger.push(redaction);
        Ok((Redactions::from_ledger(ledger), first))
    }

    /// Whether the views at `base` (made under the ledger as of `base`)
    /// are a base for the views at `to` under this ledger: no redaction
    /// after `base`, up to `to`, changed the effect of a seq at or before
    /// it (one that changed nothing does not count).
    pub fn base_fits(&self, base: u64, to: u64) -> bool {
        self.ledger
            .iter()
            .zip(self.changed.iter())
            .filter(|(r, _)| r.seq > base && r.seq <= to)
            .all(|(_, first)| first.is_none_or(|f| f > base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(seq: u64, seqs: &[u64], undo: bool) -> Redaction {
        Redaction { seq, seqs: seqs.to_vec(), undo, reason: if undo { String::new() } else { "r".into() } }
    }

    #[test]
    fn the_ledger_says_what_is_redacted_as_of_each_seq() {
        let none = Redactions::default();
        let (one, first) = none.with(r(10, &[3, 7], false)).unwrap();
        assert_eq!((first, one.redacted_by(3), one.redacted_by(4)), (Some(3), Some(10), None));
        // Redacting a redacted seq again changes nothing but who redacts it.
        let (two, first) = one.with(r(12, &[7], false)).unwrap();
        assert_eq!((first, two.redacted_by(7)), (None, Some(12)));
        // An undo restores; one of a seq not redacted changes nothing.
        let (three, first) = two.with(r(15, &[3, 9], true)).unwrap();
        assert_eq!(
            (first, three.redacted_by(3), three.redacted_in(1, 20).collect::<Vec<_>>()),
            (Some(3), None, vec![(7, 12)])
        );
        assert_eq!(three.with(r(16, &[9], true)).unwrap().1, None);
        // A redaction cannot be redacted.
        assert_eq!(three.with(r(16, &[12], false)).unwrap_err(), RedactError::NamesARedaction(12));
        // As of a seq, the ledger is what it was then.
        assert_eq!(three.as_of(12), two);
        assert_eq!(three.as_of(11), one);
        assert_eq!(three.as_of(9), none);
        assert_eq!(Redactions::from_ledger(three.ledger().iter().rev().cloned().collect()), three);
    }

    #[test]
    fn a_base_fits_unless_a_later_redaction_reaches_back_before_it() {
        let (l, _) = Redactions::default().with(r(10, &[3], false)).unwrap();
        let (l, _) = l.with(r(20, &[15], false)).unwrap();
        // Redacting seq 3 again changes nothing: it does not count.
        let (l, _) = l.with(r(25, &[3], false)).unwrap();
        assert!(l.base_fits(2, 9), "no redaction in (2, 9]");
        assert!(!l.base_fits(5, 10), "the one at 10 names 3");
        assert!(l.base_fits(10, 19));
        assert!(l.base_fits(14, 30));
        assert!(!l.base_fits(15, 30), "the one at 20 names 15");
        assert!(l.base_fits(0, 30));
        assert!(l.base_fits(20, 30), "the one at 25 changes nothing");
    }
}
