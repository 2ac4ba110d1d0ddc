//! Applying catch-up batches that follow one another as a series, through
//! the engine's lanes (`crate::engine::lanes`): each view of an app whose
//! views are all drafted goes from one batch to the next on a thread of
//! its own, rather than waiting for the others at the end of each.
//!
//! The series holds the write lock, as one batch applied in place does
//! (readers wait; `/health` and the seq do not, they read the watch), for
//! at most [`SERIES_MAX`] batches, then lets it go. Each batch, once the
//! views agree on it, is counted, its rejections kept, and the seq moved
//! on, as [`Hub::apply_batch`] does for one. A batch the lanes do not take
//! (a control action, a redacted seq, a checkpoint to be written) ends the
//! series and is applied as usual.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use super::{Entry, Hub, HubState};
use crate::engine::EngineError;
use crate::engine::lanes::Run;

/// At most how many batches one series applies before it lets the write
/// lock go, so that readers waiting for it get in (about 50 ms of
/// catch-up batches in the recovery bench).
pub const SERIES_MAX: usize = 16;

impl Hub {
    /// Applies `first`, then each batch `more` gives while it gives them,
    /// in order, telling `done` how each went, once for each batch and in
    /// order. Batches that follow one another with no gap (a data view far
    /// behind) go through the engine's lanes when the app's views are all
    /// drafted; the others as [`Hub::apply_batch`] applies them. Stops at
    /// the first batch that fails, and asks `more` for nothing after it.
    pub fn apply_batches(
        &self,
        first: Run,
        more: &mut dyn FnMut() -> Option<Run>,
        done: &mut dyn FnMut(Result<(), EngineError>),
    ) {
        let mut queue = VecDeque::from([first]);
        while let Some(batch) = queue.pop_front() {
            if queue.is_empty()
                && self.drafted
                && let Some(second) = more()
            {
                queue = self.apply_series(batch, second, more, done);
                continue;
            }
            let result = self.apply_batch(&batch);
            let failed = result.is_err();
            done(result);
            if failed {
                return;
            }
            if queue.is_empty()
                && let Some(next) = more()
            {
                queue.push_back(next);
            }
        }
    }

    /// Applies `first`, `second` and the batches `more` gives after them
    /// through the lanes, up to [`SERIES_MAX`] of them, calling `done` for
    /// each applied; returns those taken and not applied, in order.
    fn apply_series(
        &self,
        first: Run,
        second: Run,
        more: &mut dyn FnMut() -> Option<Run>,
        done: &mut dyn FnMut(Result<(), EngineError>),
    ) -> VecDeque<Run> {
        if self.writes_checkpoint(&first) {
            return VecDeque::from([first, second]);
        }
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        // A batch the lanes do not take goes the usual way, the history
        // untouched (it may fail: seqs that do not follow on).
        if !s.engine.takes_into_lanes(&first) {
            return VecDeque::from([first, second]);
        }
        // Nothing else may hold the states: each edit changes them in place.
        drop(s.history.take());
        let HubState { engine, history, rejections } = &mut *s;
        let history_len = history.capacity();
        let mut taken = 1;
        let mut second = Some(second);
        let mut held = None;
        let mut next = || {
            if taken >= SERIES_MAX || held.is_some() {
                return None;
            }
            let run = second.take().or_else(&mut *more)?;
            if self.writes_checkpoint(&run) {
                held = Some(run);
                return None;
            }
            taken += 1;
            Some(run)
        };
        let mut since = std::time::Instant::now();
        let mut applied_run = |run: &Run, applied: Vec<crate::engine::Applied>| {
            let Some(last) = run.last() else { return };
            for (applied, action) in applied.into_iter().zip(run.iter()) {
                self.note_batched(rejections, history_len, applied, action);
            }
            // Skipped, as a catch-up batch's checkpoint is while the
            // snapshotter rests (see `writes_checkpoint`).
            let skipped = run.iter().filter(|a| self.is_checkpoint(a.seq)).count();
            self.metrics.checkpoints_skipped.fetch_add(skipped as u64, Relaxed);
            // The history starts again at the batch's last seq, with no
            // states: those are the engine's (see `hub/states.rs`).
            drop(history.take());
            history.push(Entry::at(last.seq, None));
            self.metrics.applied.fetch_add(run.len() as u64, Relaxed);
            self.metrics.batched.fetch_add(run.len() as u64, Relaxed);
            self.metrics.apply_nanos.fetch_add(since.elapsed().as_nanos() as u64, Relaxed);
            since = std::time::Instant::now();
            self.seq_tx.send_replace(last.seq);
            done(Ok(()));
        };
        let mut left: VecDeque<Run> = engine.apply_runs(first, &mut next, &mut applied_run).into();
        // `second` is still here when the engine took nothing after `first`.
        left.extend(second);
        left.extend(held);
        left
    }

    /// Whether applying `batch` reaches a checkpoint that is written (one
    /// reached while checkpoints in catch-up batches are skipped is not).
    fn writes_checkpoint(&self, batch: &[nodb_shared::protocol::CommittedAction]) -> bool {
        batch.iter().any(|a| self.is_checkpoint(a.seq)) && !self.checkpoints_paused()
    }
}
