//! Undoing drafts: [`UndoLog`], what undoes each of a run of drafts of
//! one state, applied one after another; and [`unapply`], for a patch's
//! recorded edits.
//!
//! A run of drafts (a view applying a batch in place, each action in a
//! draft of its own) keeps what undoes each action until the batch is
//! settled. An [`UndoLog`] keeps those edits in one list for the whole
//! run, rather than a list per action, and lends each draft the same
//! spare lists to record into (one for the draft, one for its
//! [`Draft::within`]s): once the log has grown to a run's size and is
//! cleared for the next run, a draft allocates nothing for its record.

use std::sync::Arc;

use super::{Draft, EditPath, Op, Record, walk_mut};
use crate::path::Segment;
use crate::tree::Tree;
use crate::tree::limits::Limits;

/// Undoes `ops` — the edits a draft recorded ([`Record::Patch`]) — on
/// `tree`, the state they led to (or one edited since only by edits
/// already undone), last first: `tree` becomes the state before them. A
/// shared `tree` copies the paths it changes, so the states it shares
/// nodes with stay as they are.
pub fn unapply(ops: &[Op], tree: &mut Tree) {
    for op in ops.iter().rev() {
        match op {
            Op::Add { path, .. } => raw_remove(tree, path),
            Op::Replace { path, old, .. } => raw_write(tree, path, old.clone(), false),
            Op::Remove { path, old } => raw_write(tree, path, old.clone(), true),
        }
    }
}

/// Undoes one recorded edit on `tree`, moving the old value back.
pub(super) fn undo_op(tree: &mut Tree, op: Op) {
    match op {
        Op::Add { path, .. } => raw_remove(tree, &path),
        Op::Replace { path, old, .. } => raw_write(tree, &path, old, false),
        Op::Remove { path, old } => raw_write(tree, &path, old, true),
    }
}

/// What undoes each of a run of drafts of one state, applied one after
/// another ([`UndoLog::draft`], then [`UndoLog::keep`] or
/// [`UndoLog::discard`] for each): their edits in one list, and for each
/// draft where its edits begin and the state's size before it.
///
/// [`UndoLog::undo_from`] takes the state back to just after any draft of
/// the run; [`UndoLog::clear`] empties the log for the next run and keeps
/// its room.
#[derive(Debug, Default)]
pub struct UndoLog {
    /// The kept drafts' edits, in order.
    ops: Vec<Op>,
    /// Per draft, in order: where its edits begin in `ops` and the size
    /// before it; `None` for a draft discarded (undone at once).
    drafts: Vec<Option<(usize, u64)>>,
    /// An empty list with room, lent to the next draft to record into.
    spare: Vec<Op>,
    /// Another, lent to the next draft for its [`Draft::within`]s.
    within_spare: Vec<Op>,
}

impl UndoLog {
    /// A draft of `tree` (which measures `bytes`) within `limits`, keeping
    /// only what undoes its edits ([`Record::Undo`]), recording into the
    /// log's spare lists. End it with [`UndoLog::keep`] or
    /// [`UndoLog::discard`] (a draft dropped instead only costs the log its
    /// spare list).
    pub fn draft(&mut self, tree: Tree, bytes: u64, limits: Limits) -> Draft {
        let (ops, spare) = (std::mem::take(&mut self.spare), std::mem::take(&mut self.within_spare));
        Draft { ops, spare, ..Draft::new(tree, bytes, limits).recording(Record::Undo) }
    }

    /// Ends `draft` (one of [`UndoLog::draft`]'s) with its edits standing:
    /// they join the log, to be undone by [`UndoLog::undo_from`]. Returns
    /// the state and its size.
    pub fn keep(&mut self, draft: Draft) -> (Tree, u64) {
        let Draft { tree, mut ops, bytes, start_bytes, spare, .. } = draft;
        self.drafts.push(Some((self.ops.len(), start_bytes)));
        self.ops.append(&mut ops);
        (self.spare, self.within_spare) = (ops, spare);
        (tree, bytes)
    }

    /// Ends `draft` (one of [`UndoLog::draft`]'s) undone: returns the state
    /// as it was before the draft, and its size then.
    pub fn discard(&mut self, mut draft: Draft) -> (Tree, u64) {
        draft.unwind();
        self.drafts.push(None);
        self.spare = std::mem::take(&mut draft.ops);
        self.within_spare = std::mem::take(&mut draft.spare);
        (draft.tree, draft.bytes)
    }

    /// How many drafts the log has ended.
    pub fn len(&self) -> usize {
        self.drafts.len()
    }

    /// Whether the log has ended no draft.
    pub fn is_empty(&self) -> bool {
        self.drafts.is_empty()
    }

    /// Undoes the drafts from the `keep`th on, newest first: `tree` (the
    /// state after the last draft, of size `bytes`) becomes the state after
    /// the first `keep`, and `bytes` its size then. The log then holds the
    /// first `keep` drafts.
    pub fn undo_from(&mut self, tree: &mut Tree, bytes: &mut u64, keep: usize) {
        while self.drafts.len() > keep {
            if let Some(Some((start, before))) = self.drafts.pop() {
                for op in self.ops.drain(start..).rev() {
                    undo_op(tree, op);
                }
                *bytes = before;
            }
        }
    }

    /// How many edits the log has room for without growing, its spare
    /// lists' included.
    pub fn room(&self) -> usize {
        self.ops.capacity() + self.spare.capacity() + self.within_spare.capacity()
    }

    /// Empties the log (the drafts' edits stand for good), keeping its room
    /// for the next run.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.drafts.clear();
    }
}

/// The container at `path` (resolved, known to exist: undo retraces the
/// recorded edits).
fn parent_mut<'t>(tree: &'t mut Tree, path: &[Segment]) -> Option<&'t mut Tree> {
    walk_mut(tree, path, &mut EditPath::new()).ok()
}

/// Removes the entry or element at the resolved `path` (undoing an add).
fn raw_remove(tree: &mut Tree, path: &[Segment]) {
    let Some((last, parents)) = path.split_last() else { return };
    match (parent_mut(tree, parents), last) {
        (Some(Tree::Object(o)), Segment::Key(k)) => {
            o.remove(k);
        }
        (Some(Tree::Array(a)), Segment::Index(i)) if *i < a.len() => {
            Arc::make_mut(a).remove(*i);
        }
        _ => {}
    }
}

/// Writes `value` at the resolved `path`: inserting (`insert`, undoing a
/// removal) or replacing (undoing a replacement). The empty path is the
/// root.
fn raw_write(tree: &mut Tree, path: &[Segment], value: Tree, insert: bool) {
    let Some((last, parents)) = path.split_last() else {
        *tree = value;
        return;
    };
    match (parent_mut(tree, parents), last) {
        (Some(Tree::Object(o)), Segment::Key(k)) => {
            o.insert(k.clone(), value);
        }
        (Some(Tree::Array(a)), Segment::Index(i)) if insert && *i <= a.len() => {
            Arc::make_mut(a).insert(*i, value);
        }
        (Some(Tree::Array(a)), Segment::Index(i)) if *i < a.len() => {
            Arc::make_mut(a).set(*i, value);
        }
        _ => {}
    }
}
