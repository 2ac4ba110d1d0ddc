//! Drafts: a state edited in place, each edit recorded as the RFC 6902
//! operation it performs.
//!
//! A reducer written against a [`Draft`] changes the state where it is —
//! `imbl`'s copy-on-write copies a node only while another version still
//! shares it, so a state nobody else holds (a replay, a batch) is edited
//! with no copying at all — and the operations it records *are* the seq's
//! patch: no structural diff of the old and new states is needed. The
//! draft keeps the state's size (the estimate of [`crate::tree::limits`])
//! up to date from the edits and checks each written value's depth, so the
//! limits cost time in the change too.
//!
//! The record also undoes: [`Draft::undo`] puts the state back as it was
//! when the draft began (a rejection, a panic, a view over its limits), in
//! time proportional to the edits.
//!
//! The edits follow [`Tree`]'s path API: `set` creates missing objects on
//! the way (recorded as one `add` of the nested value where the path first
//! leaves the tree), an array index equal to the length appends, removing
//! what is not there changes nothing, and writing a value equal to the one
//! there (the same shared node, or an equal scalar) records nothing.

use std::sync::Arc;

pub use json::RecordedPatch;

#[path = "draft_json.rs"]
mod json;
#[path = "draft_op.rs"]
mod op;
use op::is_container;
pub use op::{EditPath, Op, to_patch};
#[path = "draft_undo.rs"]
mod undo;
use crate::edit::{bad_index, child, not_found, through_scalar};
use crate::path::{PathError, Segment, Slot, ToPath, pointer_of};
use crate::tree::limits::{LimitError, Limits, bytes_of, change_at, entry_bytes, measure_at};
use crate::tree::{Kind, Tree};
pub use undo::{UndoLog, unapply};

/// Why an edit of a draft failed. The draft is as it was before that edit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    /// The path cannot be followed or written (see [`PathError`]).
    #[error(transparent)]
    Path(#[from] PathError),
    /// The value would nest the state deeper than its limit, or is larger
    /// than the whole size limit by itself.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// What a [`Draft`] keeps of its edits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Record {
    /// Each edit as the operation it performs: the seq's patch, and what
    /// undoes it.
    #[default]
    Patch,
    /// Only what undoes the edits: the values written are not kept, and
    /// [`Draft::into_parts`] and [`Draft::finish`] hand back no edits. For
    /// a caller that wants the new state and no patch (a replay, a
    /// rebuild). The state, its size, the limits and [`Draft::undo`] are
    /// as with [`Record::Patch`].
    Undo,
}

/// A state being edited in place, with the record of its edits. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct Draft {
    tree: Tree,
    /// The edits; with [`Record::Undo`], their `value`s are `Null`.
    ops: Vec<Op>,
    record: Record,
    bytes: u64,
    /// The size before the first edit, for [`Draft::undo`].
    start_bytes: u64,
    limits: Limits,
    /// How many segments the [`Draft::within`]s around this draft put in
    /// front of each path it records: room reserved up front, so that
    /// doing so moves the segments and allocates nothing.
    prefix_room: usize,
    /// An empty list with room, lent to the next [`Draft::within`]'s
    /// draft to record into (its edits then join `ops`), so that a draft
    /// that comes with one (an [`UndoLog`]'s) allocates none.
    spare: Vec<Op>,
}

impl Draft {
    /// A draft of `tree`, which measures `bytes` (as
    /// [`bytes_of`] gives it), within `limits`.
    pub fn new(tree: Tree, bytes: u64, limits: Limits) -> Draft {
        Draft {
            tree,
            ops: Vec::new(),
            record: Record::Patch,
            bytes,
            start_bytes: bytes,
            limits,
            prefix_room: 0,
            spare: Vec::new(),
        }
    }

    /// This draft, keeping `record` of its edits from now on.
    pub fn recording(self, record: Record) -> Draft {
        Draft { record, ..self }
    }

    /// What the draft keeps of its edits.
    pub fn record(&self) -> Record {
        self.record
    }

    /// A draft of `tree` without limits, measuring it first (for tests and
    /// tools; the engine knows its states' sizes).
    pub fn of(tree: Tree) -> Draft {
        let bytes = bytes_of(&tree);
        Draft::new(tree, bytes, Limits::NONE)
    }

    /// The state as the edits so far have left it.
    pub fn state(&self) -> &Tree {
        &self.tree
    }

    /// The edits so far, in order (with [`Record::Undo`], each written
    /// value is left out, as `Null`).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The estimated size of the state's JSON text now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the state is now over its size limit, so that
    /// [`Draft::finish`] would refuse it: for a reducer that can make room.
    pub fn is_over_limit(&self) -> bool {
        self.bytes > self.limits.max_bytes
    }

    /// Whether any edit was recorded.
    pub fn is_changed(&self) -> bool {
        !self.ops.is_empty()
    }

    /// The value at `path`, if there is one.
    pub fn get(&self, path: impl ToPath) -> Option<&Tree> {
        self.tree.get(path)
    }

    /// The state as the edits have left it (the record dropped).
    pub fn into_state(self) -> Tree {
        self.tree
    }

    /// The state, its size and the edits that made it (none with
    /// [`Record::Undo`]; the size limit unchecked: see [`Draft::finish`]).
    pub fn into_parts(self) -> (Tree, u64, Vec<Op>) {
        let ops = match self.record {
            Record::Patch => self.ops,
            Record::Undo => Vec::new(),
        };
        (self.tree, self.bytes, ops)
    }

    /// The state, its size and the edits that made it (none with
    /// [`Record::Undo`]).
    ///
    /// # Errors
    /// [`LimitError::TooLarge`] if the state ended over the size limit (the
    /// draft is handed back, to be undone).
    #[allow(clippy::result_large_err, reason = "the draft comes back whole, to be undone; boxing it would allocate")]
    pub fn finish(self) -> Result<(Tree, u64, Vec<Op>), (LimitError, Draft)> {
        if self.bytes > self.limits.max_bytes {
            return Err((LimitError::TooLarge { limit: self.limits.max_bytes }, self));
        }
        Ok(self.into_parts())
    }

    /// Puts the state back as it was before the first edit, and returns it
    /// with its size then.
    pub fn undo(mut self) -> (Tree, u64) {
        self.unwind();
        (self.tree, self.bytes)
    }

    /// Undoes this draft's edits where it is, newest first, keeping the
    /// list's room: the state and its size are as they were before them.
    fn unwind(&mut self) {
        for op in self.ops.drain(..).rev() {
            undo::undo_op(&mut self.tree, op);
        }
        self.bytes = self.start_bytes;
    }

    /// Writes `value` at `path`: a new key of an object (missing objects on
    /// the way are created), or an element of an array (an index equal to
    /// the length, or `-`, appends). The root may be replaced with the
    /// empty path.
    ///
    /// # Errors
    /// A [`DraftError`] for a path through a scalar or past an array's end,
    /// or a value that would nest the state too deep.
    pub fn set(&mut self, path: impl ToPath, value: impl Into<Tree>) -> Result<(), DraftError> {
        let segs = path.to_path()?;
        let value = value.into();
        self.write(&segs, |_| value)
    }

    /// Replaces the value at `path` with `f(current)` (`None` when nothing
    /// is there yet), as [`Draft::set`].
    ///
    /// # Errors
    /// As for [`Draft::set`].
    pub fn update(&mut self, path: impl ToPath, f: impl FnOnce(Option<&Tree>) -> Tree) -> Result<(), DraftError> {
        let segs = path.to_path()?;
        self.write(&segs, f)
    }

    /// Appends `value` to the array at `path` (created if missing).
    ///
    /// # Errors
    /// [`PathError::WrongKind`] if something other than an array is there;
    /// otherwise as for [`Draft::set`].
    pub fn push(&mut self, path: impl ToPath, value: impl Into<Tree>) -> Result<(), DraftError> {
        let segs = path.to_path()?;
        let current = match self.tree.lookup(&*segs) {
            Ok(t) => Some(t),
            Err(PathError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        match current {
            None => {
                let value = Tree::from_items([value.into()]);
                self.write(&segs, |_| value)
            }
            Some(Tree::Array(a)) => {
                // Sized for the index (a copy grown by one reallocates),
                // and held in place up to four segments.
                let mut at = EditPath::with_capacity(segs.len() + 1);
                at.extend(segs.iter().cloned());
                at.push(Segment::Index(a.len()));
                let value = value.into();
                self.write(&at, |_| value)
            }
            Some(t) => {
                Err(PathError::WrongKind { path: pointer_of(&segs), expected: Kind::Array, found: t.kind() }.into())
            }
        }
    }

    /// Runs `f` on a draft of the value at `path`, edited where it is: the
    /// value is taken out of the state for the time (so, unless an older
    /// version shares it, its edits copy nothing), and `f`'s edits are
    /// recorded below `path`. All or nothing: if `f` fails (or panics),
    /// its edits are undone before the error is returned (or the panic
    /// goes on).
    ///
    /// # Errors
    /// [`PathError::NotFound`] (as a [`DraftError`]) if nothing is at
    /// `path`, or the error `f` returned.
    pub fn within<R, E: From<DraftError>>(
        &mut self,
        path: impl ToPath,
        f: impl FnOnce(&mut Draft) -> Result<R, E>,
    ) -> Result<R, E> {
        let segs = path.to_path().map_err(DraftError::from)?;
        let mut resolved = EditPath::with_capacity(segs.len());
        let limits = Limits { max_depth: self.limits.max_depth.saturating_sub(segs.len()), ..self.limits };
        let slot = walk_mut(&mut self.tree, &segs, &mut resolved).map_err(DraftError::from)?;
        // `f`'s draft records into this one's spare list (its own, so
        // that nothing `f` does to its draft reaches this one's edits).
        let mut sub = Draft {
            prefix_room: self.prefix_room + resolved.len(),
            ops: std::mem::take(&mut self.spare),
            ..Draft::new(std::mem::take(slot), self.bytes, limits).recording(self.record)
        };
        // `f` sees only its draft, so the slot stays at hand to put the
        // value back: one walk, whatever happens.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut sub)));
        if !matches!(result, Ok(Ok(_))) {
            sub.unwind();
        }
        *slot = std::mem::take(&mut sub.tree);
        let mut ops = std::mem::take(&mut sub.ops);
        let done = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.spare = ops;
                return Err(e);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        };
        self.bytes = sub.bytes;
        for mut op in ops.drain(..) {
            let path = match &mut op {
                Op::Add { path, .. } | Op::Replace { path, .. } | Op::Remove { path, .. } => path,
            };
            // The room is there (`prefix_room`): appended, then turned
            // to the front, which costs less than a splice.
            path.extend(resolved.iter().cloned());
            path.rotate_right(resolved.len());
            self.ops.push(op);
        }
        self.spare = ops;
        Ok(done)
    }

    /// Removes the value at `path` and returns it; removing what is not
    /// there changes nothing. An array element's removal shifts the ones
    /// after it.
    ///
    /// # Errors
    /// [`PathError::Root`] for the root, or a path through a scalar or with
    /// a malformed index.
    pub fn remove(&mut self, path: impl ToPath) -> Result<Option<Tree>, DraftError> {
        let segs = path.to_path()?;
        let Some((last, parents)) = segs.split_last() else {
            return Err(PathError::Root { op: "remove" }.into());
        };
        let mut resolved = EditPath::with_capacity(self.prefix_room + segs.len());
        let parent = match walk_mut(&mut self.tree, parents, &mut resolved) {
            Ok(parent) => parent,
            Err(PathError::NotFound { .. } | PathError::IndexOutOfRange { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let old = match parent {
            Tree::Object(o) => {
                let key = last.key();
                let old = o.remove(&key);
                resolved.push(Segment::Key(key));
                old
            }
            Tree::Array(a) => match last.slot() {
                Some(Slot::At(i)) if i < a.len() => {
                    resolved.push(Segment::Index(i));
                    Some(Arc::make_mut(a).remove(i))
                }
                Some(Slot::At(_)) => None,
                Some(Slot::End) | None => return Err(bad_index(last, &segs, "").into()),
            },
            scalar => return Err(through_scalar(parents, scalar).into()),
        };
        let Some(old) = old else { return Ok(None) };
        self.bytes = self.bytes.saturating_sub(place_bytes(&resolved) + bytes_of(&old));
        self.ops.push(Op::Remove { path: resolved, old: old.clone() });
        Ok(Some(old))
    }

    /// Writes `f(current)` at `segs`.
    fn write(&mut self, segs: &[Segment], f: impl FnOnce(Option<&Tree>) -> Tree) -> Result<(), DraftError> {
        if segs.is_empty() {
            let value = f(Some(&self.tree));
            if same(&self.tree, &value) {
                return Ok(());
            }
            let measured = measure_at(&value, 0, &self.limits)?;
            let kept = kept(self.record, &value);
            let old = std::mem::replace(&mut self.tree, value);
            // (Within a sub-draft the count is the whole state's.)
            self.bytes = (self.bytes + measured.bytes).saturating_sub(bytes_of(&old));
            self.ops.push(Op::Replace { path: EditPath::new(), value: kept, old });
            return Ok(());
        }
        let (f, missing_error) = match self.write_at(segs, f) {
            Err(Write::MissingParent(f, e)) => (f, e),
            Err(Write::Failed(e)) => return Err(e),
            Ok(()) => return Ok(()),
        };
        // Where the path first leaves the tree, the rest becomes one nested
        // value added there.
        let parents = &segs[..segs.len() - 1];
        let (have, missing) = existing_prefix(&self.tree, parents);
        if missing == 0 {
            return Err(missing_error.into());
        }
        let mut nested = f(None);
        for seg in segs[have + 1..].iter().rev() {
            nested = Tree::from_entries([(seg.key(), nested)]);
        }
        self.write_at(&segs[..have + 1], |_| nested).map_err(|e| match e {
            Write::Failed(e) => e,
            Write::MissingParent(_, e) => e.into(),
        })
    }

    /// Writes `f(current)` under the last segment of `segs`: one walk to
    /// the parent (made unique on the way), one search in it.
    fn write_at<F: FnOnce(Option<&Tree>) -> Tree>(&mut self, segs: &[Segment], f: F) -> Result<(), Write<F>> {
        let (last, parents) = segs.split_last().expect("a non-empty path");
        let record = self.record;
        let mut resolved = EditPath::with_capacity(self.prefix_room + segs.len());
        let parent = match walk_mut(&mut self.tree, parents, &mut resolved) {
            Ok(parent) => parent,
            Err(e @ PathError::NotFound { .. }) => return Err(Write::MissingParent(f, e)),
            Err(e) => return Err(Write::Failed(e.into())),
        };
        let limits = &self.limits;
        // What the write adds and removes: for a container written over a
        // container, in time proportional to the change between them.
        let account = |current: Option<&Tree>, value: &Tree| -> Result<(u64, u64), DraftError> {
            Ok(match current {
                Some(old) if is_container(old) && is_container(value) => change_at(old, value, segs.len(), limits)?,
                Some(old) => (measure_at(value, segs.len(), limits)?.bytes, bytes_of(old)),
                None => (measure_at(value, segs.len(), limits)?.bytes, 0),
            })
        };
        let (old, value, added, removed) = match parent {
            Tree::Object(o) => {
                let key = last.key();
                resolved.push(Segment::Key(key.clone()));
                match o.get_mut(&key) {
                    Some(slot) => {
                        let value = f(Some(slot));
                        if same(slot, &value) {
                            return Ok(());
                        }
                        let (added, removed) = account(Some(slot), &value).map_err(Write::Failed)?;
                        let kept = kept(record, &value);
                        (Some(std::mem::replace(slot, value)), kept, added, removed)
                    }
                    None => {
                        let value = f(None);
                        let (added, removed) = account(None, &value).map_err(Write::Failed)?;
                        let kept = kept(record, &value);
                        o.insert(key, value);
                        (None, kept, added, removed)
                    }
                }
            }
            Tree::Array(a) => {
                let len = a.len();
                let i = match last.slot() {
                    Some(Slot::At(i)) if i <= len => i,
                    Some(Slot::End) => len,
                    Some(Slot::At(i)) => {
                        let e = PathError::IndexOutOfRange { path: pointer_of(segs), index: i, len };
                        return Err(Write::Failed(e.into()));
                    }
                    None => return Err(Write::Failed(bad_index(last, segs, ", or - for the end").into())),
                };
                resolved.push(Segment::Index(i));
                let value = f(a.get(i));
                if i == len {
                    let (added, removed) = account(None, &value).map_err(Write::Failed)?;
                    let kept = kept(record, &value);
                    Arc::make_mut(a).push_back(value);
                    (None, kept, added, removed)
                } else {
                    if same(&a[i], &value) {
                        return Ok(());
                    }
                    let (added, removed) = account(Some(&a[i]), &value).map_err(Write::Failed)?;
                    let kept = kept(record, &value);
                    (Some(Arc::make_mut(a).set(i, value)), kept, added, removed)
                }
            }
            scalar => return Err(Write::Failed(through_scalar(parents, scalar).into())),
        };
        self.bytes = (self.bytes + added).saturating_sub(removed);
        match old {
            Some(old) => self.ops.push(Op::Replace { path: resolved, value, old }),
            None => {
                self.bytes += place_bytes(&resolved);
                self.ops.push(Op::Add { path: resolved, value });
            }
        }
        Ok(())
    }
}

/// Why [`Draft::write_at`] did not write.
enum Write<F> {
    /// A parent on the path is missing (what makes the value handed back,
    /// with the error that names it).
    MissingParent(F, PathError),
    /// Any other failure.
    Failed(DraftError),
}

/// A written value as the record keeps it: itself, or nothing when only
/// undoing is kept.
fn kept(record: Record, value: &Tree) -> Tree {
    match record {
        Record::Patch => value.clone(),
        Record::Undo => Tree::Null,
    }
}

/// Whether writing `new` over `old` changes nothing: the same shared node,
/// or equal scalars.
fn same(old: &Tree, new: &Tree) -> bool {
    old.ptr_eq(new)
        || match (old, new) {
            (Tree::Object(_) | Tree::Array(_), _) | (_, Tree::Object(_) | Tree::Array(_)) => false,
            _ => old == new,
        }
}

/// The bytes an entry or element's place adds beside its value: the key
/// and separators of an object entry, the separator of an element.
fn place_bytes(path: &[Segment]) -> u64 {
    match path.last() {
        Some(Segment::Key(k)) => entry_bytes(k),
        Some(Segment::Index(_)) => 1,
        None => 0,
    }
}

/// How many of `segs` lead through existing objects or arrays from
/// `tree`, and how many after them are missing keys of an object (the
/// rest of the path, from the first missing key). A path through a scalar
/// or an array's missing element counts as existing: the write reports it.
fn existing_prefix(tree: &Tree, segs: &[Segment]) -> (usize, usize) {
    let mut node = tree;
    for (depth, _) in segs.iter().enumerate() {
        match child(node, segs, depth) {
            Ok(Some(c)) => node = c,
            Ok(None) if matches!(node, Tree::Object(_)) => return (depth, segs.len() - depth),
            _ => return (segs.len(), 0),
        }
    }
    (segs.len(), 0)
}

/// The value at `segs` below `tree`, made unique on the way (copying a
/// node only while another version shares it), with the path resolved
/// into `resolved`.
fn walk_mut<'t>(tree: &'t mut Tree, segs: &[Segment], resolved: &mut EditPath) -> Result<&'t mut Tree, PathError> {
    let mut node = tree;
    for (depth, seg) in segs.iter().enumerate() {
        node = match node {
            Tree::Object(o) => {
                let key = seg.key();
                let next = o.get_mut(&key).ok_or_else(|| not_found(segs, depth))?;
                resolved.push(Segment::Key(key));
                next
            }
            Tree::Array(a) => match seg.slot() {
                Some(Slot::At(i)) if i < a.len() => {
                    resolved.push(Segment::Index(i));
                    Arc::make_mut(a).get_mut(i).expect("in range")
                }
                Some(Slot::At(_)) => return Err(not_found(segs, depth)),
                Some(Slot::End) | None => return Err(bad_index(seg, &segs[..=depth], "")),
            },
            scalar => return Err(through_scalar(&segs[..depth], scalar)),
        };
    }
    Ok(node)
}

#[cfg(test)]
#[path = "draft_tests.rs"]
mod tests;
