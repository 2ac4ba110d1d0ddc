//! A redaction reaching the hub: the views at its seq, rebuilt elsewhere
//! (see [`crate::redaction`]), take the place of the current ones as that
//! seq's entry — so every client gets one patch at the redaction's seq,
//! from the views it had to the rebuilt ones — and the actions the rebuild
//! now rejects are told to their senders with that patch.

use std::sync::atomic::Ordering::Relaxed;

use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;

use super::{Entry, Hub, RejectedAction, ViewsAt};
use crate::engine::{Engine, EngineError};
use crate::redaction::Redactions;

impl Hub {
    /// Applies the redaction `action` (the next seq): the views become
    /// `rebuilt` (`None`: they stay as they are — the redaction changes no
    /// seq's effect), now reflecting `redactions`; each of `rejected` (an
    /// action the rebuild now rejects) is kept for its sender at this seq.
    ///
    /// # Errors
    /// [`EngineError::OutOfSequence`] if `action` is not the next seq.
    pub fn apply_redaction(
        &self,
        action: &CommittedAction,
        redactions: Redactions,
        rebuilt: Option<Vec<Tree>>,
        rejected: Vec<RejectedAction>,
    ) -> Result<(), EngineError> {
        let evicted = {
            let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
            let e = &s.engine;
            // The patch at a redaction is the diff from the views before.
            let before = e.states().to_vec();
            if action.seq != e.seq() + 1 {
                return Err(EngineError::OutOfSequence { expected: e.seq() + 1, got: action.seq });
            }
            let (app, limits) = (e.app().clone(), *e.limits());
            let engine = match rebuilt {
                Some(states) => Engine::restore(app, action.seq, states),
                None => Engine::restore_measured(app, action.seq, e.states().to_vec(), e.bytes().to_vec()),
            };
            s.engine = engine.with_limits(limits).with_redactions(redactions);
            for r in &rejected {
                self.metrics.rejected.fetch_add(1, Relaxed);
                self.keep_rejection(&mut s, action.seq, r.clone());
            }
            // A snapshot at every redaction, kept like a checkpoint: the
            // base of later reads, which no earlier base fits any more.
            self.request_snapshot(ViewsAt::of(&s.engine), super::Keep::Always);
            let states = s.engine.states().to_vec();
            // No edits: each view's patch at this seq is the diff from the
            // views before, both kept.
            s.history.push(Entry { rejected, before: Some(before), ..Entry::at(action.seq, Some(states)) })
        };
        if let Some(entry) = evicted {
            self.free(entry);
        }
        self.metrics.applied.fetch_add(1, Relaxed);
        self.metrics.redactions.fetch_add(1, Relaxed);
        self.seq_tx.send_replace(action.seq);
        Ok(())
    }
}

impl Hub {
    /// The newest views in the in-memory history at or before `at` whose
    /// seq `fits`: a base for a rebuild or a past read that replays only
    /// what came after it.
    pub fn newest_base(&self, at: u64, fits: impl Fn(u64) -> bool) -> Option<(u64, Vec<Tree>)> {
        let s = self.read();
        let mut seq = at.min(s.engine.seq());
        let oldest = s.history.oldest()?;
        while seq >= oldest {
            if s.history.get(seq).is_some() && fits(seq) {
                return Some((seq, s.states_at(seq)?));
            }
            seq = seq.checked_sub(1)?;
        }
        None
    }
}
