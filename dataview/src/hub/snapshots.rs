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

/// After the snapshotter wrote a snapshot that took [`SLOW_WRITE`] or
/// more, for how many times as long as that took the checkpoints reached
/// in catch-up batches are skipped: so that, catching up on a large state,
/// it spends at most about a twentieth of the time writing (a checkpoint
/// written while the batches run costs them more than its write: see
/// `Hub::request_snapshot`).
pub const CHECKPOINT_REST: u32 = 19;

/// A snapshot write this long or longer makes the checkpoints of catch-up
/// batches wait out the next write and the rest after it. Below it,
/// writing costs the batches little, and every checkpoint is kept, so a
/// read `?at=N` replays fewer than `--snapshot-every` actions.
pub const SLOW_WRITE: Duration = Duration::from_millis(100);

/// Whether checkpoints reached in catch-up batches are skipped now.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CheckpointPause {
    /// The last write took [`SLOW_WRITE`] or more.
    slow: bool,
    /// The snapshotter is writing.
    writing: bool,
    /// Until when it rests after its last write.
    rest_until: Option<Instant>,
}

impl CheckpointPause {
    fn now(&self) -> bool {
        self.slow && (self.writing || self.rest_until.is_some_and(|at| Instant::now() < at))
    }
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

    /// Hands `views` to the snapshotter. Once a write took
    /// [`SLOW_WRITE`] or more (most of a second for a state of a million
    /// keys), a checkpoint reached in a catch-up batch is skipped while
    /// the snapshotter writes and for [`CHECKPOINT_REST`] times as long as
    /// the last write after; and one it has not taken yet gives way to a
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
    pub(super) fn checkpoints_paused(&self) -> bool {
        self.checkpoint_pause.lock().unwrap_or_else(|e| e.into_inner()).now()
    }

    /// The snapshotter starts writing: if its last write was slow,
    /// checkpoints reached in catch-up batches are skipped until it is
    /// done.
    pub fn snapshot_writing(&self) {
        self.checkpoint_pause.lock().unwrap_or_else(|e| e.into_inner()).writing = true;
    }

    /// The snapshotter is done writing, which took `took`: if that is
    /// [`SLOW_WRITE`] or more, checkpoints reached in catch-up batches are
    /// skipped for [`CHECKPOINT_REST`] times as long.
    pub fn snapshot_written(&self, took: Duration) {
        *self.checkpoint_pause.lock().unwrap_or_else(|e| e.into_inner()) = CheckpointPause {
            slow: took >= SLOW_WRITE,
            writing: false,
            rest_until: Instant::now().checked_add(took.saturating_mul(CHECKPOINT_REST)),
        };
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
