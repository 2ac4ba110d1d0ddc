//! What a draft records of each edit: an [`Op`] with its resolved path
//! ([`EditPath`]), and the RFC 6902 operations it performs.

use smallvec::SmallVec;

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};

use crate::diff::{diff_at, pointer};
use crate::path::Segment;
use crate::tree::Tree;

/// A recorded edit's path. Up to four segments are held in place, with
/// no allocation of their own: most edits are that shallow, and a batch
/// keeps every edit until the batch after it.
pub type EditPath = SmallVec<[Segment; 4]>;

/// What one recorded edit did.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A new object key or array element (later elements shift up).
    Add {
        /// Where, with array indices resolved.
        path: EditPath,
        /// The value written.
        value: Tree,
    },
    /// A value replaced.
    Replace {
        /// Where.
        path: EditPath,
        /// The value written.
        value: Tree,
        /// The value it replaced.
        old: Tree,
    },
    /// A value removed (later array elements shift down).
    Remove {
        /// Where.
        path: EditPath,
        /// The value removed.
        old: Tree,
    },
}

impl Op {
    /// This edit as RFC 6902 operations: one, or — for an object or array
    /// replaced by another — the diff between the two below its path, so
    /// a reducer that writes back a changed copy of a small subtree sends
    /// only what changed in it.
    pub fn patch_operations(&self, out: &mut Vec<PatchOperation>) {
        match self {
            Op::Add { path, value } => {
                out.push(PatchOperation::Add(AddOperation { path: pointer(path), value: value.to_value() }))
            }
            Op::Replace { path, value, old } if is_container(old) && is_container(value) => {
                out.extend(diff_at(old, value, path));
            }
            Op::Replace { path, value, .. } => {
                out.push(PatchOperation::Replace(ReplaceOperation { path: pointer(path), value: value.to_value() }));
            }
            Op::Remove { path, .. } => out.push(PatchOperation::Remove(RemoveOperation { path: pointer(path) })),
        }
    }
}

/// The RFC 6902 patch of a list of recorded edits.
pub fn to_patch(ops: &[Op]) -> Patch {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        op.patch_operations(&mut out);
    }
    Patch(out)
}

pub(crate) fn is_container(t: &Tree) -> bool {
    matches!(t, Tree::Object(_) | Tree::Array(_))
}
