//! The views at a past seq of the history.
//!
//! An app whose views are all drafted keeps no states in its history, only
//! each seq's recorded edits: states kept for past seqs would share their
//! nodes with the current ones, so that every edit of the next action
//! copied its path first (about four times the cost of the edit done in
//! place). The views at a seq N of the history are then the current ones
//! with the edits of the seqs after N undone, newest first
//! (`nodb_shared::draft::unapply`): the copies are made when someone asks
//! (`?at=N`, a subtree client), and only of what changed since N. A
//! client further behind than one seq needs no past state: its combined
//! patch is each seq's patch in turn ([`Hub::concatenated`]).
//!
//! An entry keeps its states where they cannot be had so: always in an app
//! with a pure view (its patches are diffs of whole states), and, in a
//! drafted app, at a seq whose patch is such a diff (a `@@nodb/set_state`,
//! a redaction), which keeps the states before it too.

use std::sync::Arc;

use bytes::Bytes;
use nodb_shared::Tree;
use nodb_shared::draft::unapply;

use super::{Hub, HubState};
use crate::engine::Edits;

impl Hub {
    /// The combined patch message of view `view` from `base` (a seq the
    /// history holds) to the current seq, for a drafted app: the ops of
    /// each seq's patch message in turn — written once per seq and shared,
    /// so a client far behind costs copying them, not rebuilding its state
    /// and diffing it. Applied in order, they give what the diff of the
    /// two states would. `None` if a seq's message is not of the form
    /// [`crate::hub::seq_patch_message`] writes.
    pub(super) fn concatenated(&self, s: &HubState, view: usize, base: u64) -> Option<Bytes> {
        const OPS: &[u8] = b",\"ops\":[";
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"type\":\"patch\",\"from\":");
        out.extend_from_slice(itoa::Buffer::new().format(base + 1).as_bytes());
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(s.engine.seq()).as_bytes());
        out.extend_from_slice(OPS);
        let mut first = true;
        for (prev, entry) in s.history.after(base) {
            let message = self.patches(s, prev, entry).get(view)?;
            // `{"type":"patch","seq":N,"ops":[…]}`: the ops between the brackets.
            let rest = message.strip_prefix(b"{\"type\":\"patch\",\"seq\":".as_slice())?;
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let ops = rest[digits..].strip_prefix(OPS)?.strip_suffix(b"]}".as_slice())?;
            if !ops.is_empty() {
                if !first {
                    out.push(b',');
                }
                out.extend_from_slice(ops);
                first = false;
            }
        }
        out.extend_from_slice(b"]}");
        Some(Bytes::from(out))
    }
}

/// What gives the views at a past seq: the states to start from, and the
/// edits to undo on them, newest first. Taken under the hub's lock (O(1)
/// clones); undone after it, so that the next action need not wait.
pub(super) struct Rebuild {
    start: Vec<Tree>,
    undo: Vec<Arc<Vec<Edits>>>,
}

impl Rebuild {
    /// The views at the seq; `None` if an edit to undo is a diff (which
    /// cannot happen: a diff keeps the states before it).
    pub(super) fn run(self) -> Option<Vec<Tree>> {
        let mut states = self.start;
        for edits in &self.undo {
            for (state, edits) in states.iter_mut().zip(edits.iter()) {
                match edits {
                    Edits::Recorded(ops) => unapply(ops, state),
                    Edits::Diff => return None,
                }
            }
        }
        Some(states)
    }
}

impl HubState {
    /// Every view's state at `seq`, which the history holds (`None` for
    /// one it does not, or one it cannot rebuild). O(1) for the current
    /// seq and for an entry that keeps its states; otherwise the edits
    /// after `seq` are undone on a copy of the current states.
    pub(super) fn states_at(&self, seq: u64) -> Option<Vec<Tree>> {
        self.rebuild_of(seq)?.run()
    }

    /// What gives every view's state at `seq` (see [`HubState::states_at`]).
    pub(super) fn rebuild_of(&self, seq: u64) -> Option<Rebuild> {
        let head = self.engine.seq();
        let entry = self.history.get(seq)?;
        if seq == head {
            return Some(Rebuild { start: self.engine.states().to_vec(), undo: Vec::new() });
        }
        if let Some(states) = &entry.states {
            return Some(Rebuild { start: states.clone(), undo: Vec::new() });
        }
        // Back from the newest: each entry's edits to undo, or the states
        // before it where it keeps them.
        let mut rebuild = Rebuild { start: self.engine.states().to_vec(), undo: Vec::new() };
        for at in (seq + 1..=head).rev() {
            let entry = self.history.get(at)?;
            if let Some(before) = &entry.before {
                rebuild = Rebuild { start: before.clone(), undo: Vec::new() };
            } else if let Some(kept) = self.history.get(at - 1).and_then(|e| e.states.as_ref()) {
                rebuild = Rebuild { start: kept.clone(), undo: Vec::new() };
            } else {
                rebuild.undo.push(entry.edits.clone());
            }
        }
        Some(rebuild)
    }
}

#[cfg(test)]
#[path = "states_tests.rs"]
mod tests;
