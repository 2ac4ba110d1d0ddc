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

impl HubState {
    /// Every view's state at `seq`, which the history holds (`None` for
    /// one it does not, or one it cannot rebuild). O(1) for the current
    /// seq and for an entry that keeps its states; otherwise the edits
    /// after `seq` are undone on a copy of the current states.
    pub(super) fn states_at(&self, seq: u64) -> Option<Vec<Tree>> {
        let head = self.engine.seq();
        if seq == head {
            return Some(self.engine.states().to_vec());
        }
        if let Some(states) = &self.history.get(seq)?.states {
            return Some(states.clone());
        }
        let mut states = self.engine.states().to_vec();
        let mut at = head;
        while at > seq {
            let entry = self.history.get(at)?;
            if let Some(before) = &entry.before {
                states.clone_from(before);
            } else if let Some(kept) = self.history.get(at - 1).and_then(|e| e.states.as_ref()) {
                states.clone_from(kept);
            } else {
                for (state, edits) in states.iter_mut().zip(&entry.edits) {
                    match edits {
                        Edits::Recorded(ops) => unapply(ops, state),
                        // Cannot happen: a diff keeps the states before.
                        Edits::Diff => return None,
                    }
                }
            }
            at -= 1;
        }
        Some(states)
    }
}

#[cfg(test)]
#[path = "states_tests.rs"]
mod tests;
