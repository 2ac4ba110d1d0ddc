//! What the hub hands to the snapshotter: the views at each checkpoint,
//! `@@nodb/snapshot` and redaction, and which requests give way to newer
//! ones while the snapshotter is busy.

use std::sync::atomic::Ordering::Relaxed;

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
    /// catch-up batch that it has not taken yet gives way to a newer one:
    /// while it writes one (most of a second for a state of a million
    /// keys), a view catching up passes many more, and writing each would
    /// hold the view to the snapshotter's pace. The newest is written, and
    /// `?at=N` for a seq between replays from an older base. Checkpoints
    /// reached one action at a time (near the head), `@@nodb/snapshot`s
    /// and redactions' snapshots are always written.
    pub(super) fn request_snapshot(&self, views: ViewsAt, keep: Keep) {
        let mut requests = self.snapshot_requests.lock().unwrap_or_else(|e| e.into_inner());
        if keep == Keep::UntilNewer {
            let before = requests.len();
            requests.retain(|(k, _)| *k == Keep::Always);
            self.metrics.checkpoints_skipped.fetch_add((before - requests.len()) as u64, Relaxed);
        }
        requests.push((keep, views));
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
