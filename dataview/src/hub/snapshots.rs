//! What the hub hands to the snapshotter: the views at each checkpoint,
//! `@@nodb/snapshot` and redaction, and which checkpoints are skipped
//! while the snapshotter is busy.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use nodb_shared::Tree;

use super::Hub;
use crate::engine::Engine;
use crate::redaction::Redactions;

/// Whether a snapshot request may give way to a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keep {
    /// A checkpoint reached in a catch-up batch: a newer one of these
    /// replaces it while it waits.
    UntilNewer,
    /// A checkpoint reached one action at a time, an `@@nodb/snapshot`, or
    /// a redaction's snapshot: always written.
    Always,
}

/// After the snapshotter wrote a snapshot, for how many times as long as
/// that took the checkpoints reached in catch-up batches are skipped: so
/// that, catching up, it spends at most about a fifth of the time
/// writing.
pub const CHECKPOINT_REST: u32 = 4;

/// Whether checkpoints reached in catch-up batches are skipped now.
#[derive(Clone, Copy, Debug, Default)]
pub(super) enum CheckpointPause {
    /// They are taken.
    #[default]
    No,
    /// The snapshotter is writing.
    Writing,
    /// The snapshotter rests until then.
    Until(Instant),
}

/// Every view at one seq, with the redactions they reflect: what a
/// snapshot keeps.
#[derive(Clone, Debug)]
pub struct ViewsAt {
    /// The seq.
    pub seq: u64,
    /// Every view's state, in the app's order.
    pub states: Vec<Tree>,
    /// The redactions in force.
    pub redactions: Redactions,
}

impl ViewsAt {
    /// The views `engine` holds.
    pub fn of(engine: &Engine) -> ViewsAt {
        ViewsAt { seq: engine.seq(), states: engine.states().to_vec(), redactions: engine.redactions().clone() }
    }
}

impl Hub {
    pub(super) fn is_checkpoint(&self, seq: u64) -> bool {
        self.checkpoint_every.is_some_and(|every| seq.is_multiple_of(every))
    }

    /// Hands `views` to the snapshotter. A checkpoint reached in a
    /// catch-up batch is skipped while the snapshotter writes (most of a
    /// second for a state of a million keys) and for [`CHECKPOINT_REST`]
    /// times as long after; and one it has not taken yet gives way to a
    /// newer one. A view catching up passes many checkpoints meanwhile:
    /// writing each would hold it to the snapshotter's pace, and each
    /// waiting shares the states the batches then edit, so that they copy
    /// what they would have changed in place. `?at=N` for a seq between
    /// replays from an older base. Checkpoints reached one action at a
    /// time (near the head), `@@nodb/snapshot`s and redactions' snapshots
    /// are always written.
    pub(super) fn request_snapshot(&self, views: ViewsAt, keep: Keep) {
        if keep == Keep::UntilNewer && self.checkpoints_paused() {
            self.metrics.checkpoints_skipped.fetch_add(1, Relaxed);
            return;
        }
        let mut requests = self.snapshot_requests.lock().unwrap_or_else(|e| e.into_inner());
        if keep == Keep::UntilNewer {
            let before = requests.len();
            requests.retain(|(k, _)| *k == Keep::Always);
            self.metrics.checkpoints_skipped.fetch_add((before - requests.len()) as u64, Relaxed);
        }
        requests.push((keep, views));
    }

    /// Whether checkpoints reached in catch-up batches are skipped now.
    fn checkpoints_paused(&self) -> bool {
        match *self.checkpoint_pause.lock().unwrap_or_else(|e| e.into_inner()) {
            CheckpointPause::No => false,
            CheckpointPause::Writing => true,
            CheckpointPause::Until(at) => Instant::now() < at,
        }
    }

    /// The snapshotter starts writing: checkpoints reached in catch-up
    /// batches are skipped until it is done.
    pub fn snapshot_writing(&self) {
        *self.checkpoint_pause.lock().unwrap_or_else(|e| e.into_inner()) = CheckpointPause::Writing;
    }

    /// The snapshotter is done writing, which took `took`: checkpoints
    /// reached in catch-up batches are skipped for [`CHECKPOINT_REST`]
    /// times as long.
    pub fn snapshot_written(&self, took: Duration) {
        let rest = Instant::now().checked_add(took.saturating_mul(CHECKPOINT_REST));
        *self.checkpoint_pause.lock().unwrap_or_else(|e| e.into_inner()) =
            rest.map_or(CheckpointPause::Writing, CheckpointPause::Until);
    }

    /// How many snapshots wait for the snapshotter. The follower pauses
    /// while too many do, so the states they hold stay bounded.
    pub fn pending_snapshots(&self) -> usize {
        self.snapshot_requests.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Takes the snapshots `@@nodb/snapshot` and the checkpoints asked for.
    pub fn take_snapshot_requests(&self) -> Vec<ViewsAt> {
        let taken = std::mem::take(&mut *self.snapshot_requests.lock().unwrap_or_else(|e| e.into_inner()));
        taken.into_iter().map(|(_, views)| views).collect()
    }
}
