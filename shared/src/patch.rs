//! Applying RFC 6902 JSON Patches to a [`Tree`].
//!
//! Patches use the `json-patch` crate's types so every part of nodb speaks
//! the same patch type. Application is atomic: the input tree is persistent
//! and never modified, so a failing operation simply means the new tree is
//! dropped and the caller keeps the old one.

use json_patch::jsonptr::Pointer;
use json_patch::{Patch, PatchOperation};

use crate::edit::{Missing, Store, edit_parent, remove_child, store};
use crate::path::{PathError, Segment};
use crate::tree::Tree;

/// Why operation number `index` of a patch failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("operation {index} ({op} {path:?}) failed: {reason}")]
pub struct PatchError {
    /// Zero-based index of the failing operation in the patch.
    pub index: usize,
    /// The operation's name: `add`, `remove`, `replace`, `move`, `copy`, `test`.
    pub op: &'static str,
    /// The operation's `path`.
    pub path: String,
    /// What went wrong.
    pub reason: PatchFailure,
}

/// What made a patch operation fail.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PatchFailure {
    /// The path (or `from`) could not be followed or written.
    #[error("{0}")]
    Path(#[from] PathError),
    /// A `test` operation found a different value.
    #[error("test failed: the value at the path is {actual}, not the expected value")]
    TestFailed {
        /// The value found (as compact JSON, cut at 200 characters).
        actual: String,
    },
    /// A `move` whose target is inside its source.
    #[error("cannot move {from:?} into one of its own children")]
    MoveIntoChild {
        /// The `from` of the move.
        from: String,
    },
}

/// Applies `patch` to `doc`, returning the patched tree.
///
/// # Errors
/// The first failing operation, with its index, path and reason; `doc` is
/// untouched either way.
pub fn apply(doc: &Tree, patch: &Patch) -> Result<Tree, PatchError> {
    apply_ops(doc, &patch.0)
}

/// Applies a slice of operations; see [`apply`].
///
/// # Errors
/// As for [`apply`].
pub fn apply_ops(doc: &Tree, ops: &[PatchOperation]) -> Result<Tree, PatchError> {
    let mut current = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        current = apply_one(&current, op).map_err(|reason| PatchError {
            index,
            op: op_name(op),
            path: op.path().as_str().to_string(),
            reason,
        })?;
    }
    Ok(current)
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

fn segments(p: &Pointer) -> Vec<Segment> {
    p.tokens().map(|t| Segment::Key(t.decoded().as_ref().into())).collect()
}

fn apply_one(doc: &Tree, op: &PatchOperation) -> Result<Tree, PatchFailure> {
    match op {
        PatchOperation::Add(o) => add(doc, &segments(&o.path), Tree::from(&o.value)),
        PatchOperation::Remove(o) => remove(doc, &segments(&o.path)),
        PatchOperation::Replace(o) => {
            let segs = segments(&o.path);
            if segs.is_empty() {
                return Ok(Tree::from(&o.value));
            }
            let value = Tree::from(&o.value);
            Ok(edit_parent(doc, &segs, 0, Missing::Fail, &mut |p, s, at| {
                store(p, s, value.clone(), at, Store::Replace)
            })?)
        }
        PatchOperation::Move(o) => {
            let from = segments(&o.from);
            let to = segments(&o.path);
            let value = doc.lookup(&*from)?.clone();
            if from == to {
                return Ok(doc.clone());
            }
            if to.len() > from.len() && to.starts_with(&from) {
                return Err(PatchFailure::MoveIntoChild { from: o.from.as_str().to_string() });
            }
            add(&remove(doc, &from)?, &to, value)
        }
        PatchOperation::Copy(o) => {
            let value = doc.lookup(&*segments(&o.from))?.clone();
            add(doc, &segments(&o.path), value)
        }
        PatchOperation::Test(o) => {
            let actual = doc.lookup(&*segments(&o.path))?;
            if *actual == Tree::from(&o.value) {
                Ok(doc.clone())
            } else {
                let mut shown = actual.to_json_string();
                if shown.len() > 200 {
                    let cut = (0..=200).rev().find(|&i| shown.is_char_boundary(i)).unwrap_or(0);
                    shown.truncate(cut);
                    shown.push('…');
                }
                Err(PatchFailure::TestFailed { actual: shown })
            }
        }
    }
}

fn add(doc: &Tree, segs: &[Segment], value: Tree) -> Result<Tree, PatchFailure> {
    if segs.is_empty() {
        return Ok(value);
    }
    Ok(edit_parent(doc, segs, 0, Missing::Fail, &mut |p, s, at| store(p, s, value.clone(), at, Store::Add))?)
}

fn remove(doc: &Tree, segs: &[Segment]) -> Result<Tree, PatchFailure> {
    if segs.is_empty() {
        return Err(PathError::Root { op: "remove" }.into());
    }
    Ok(edit_parent(doc, segs, 0, Missing::Fail, &mut remove_child)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(v: serde_json::Value) -> Patch {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn failing_op_is_named_and_nothing_changes() {
        let doc = Tree::from(json!({"a": [1, 2]}));
        let p = patch(json!([
            {"op": "add", "path": "/b", "value": 1},
            {"op": "remove", "path": "/a/5"}
        ]));
        let err = apply(&doc, &p).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.op, "remove");
        assert_eq!(err.path, "/a/5");
        assert!(err.to_string().contains("out of range"), "{err}");
        assert_eq!(doc, Tree::from(json!({"a": [1, 2]})));
    }

    #[test]
    fn move_copy_test() {
        let doc = Tree::from(json!({"a": {"b": 1}, "l": [1, 2, 3]}));
        let p = patch(json!([
            {"op": "move", "from": "/a/b", "path": "/c"},
            {"op": "copy", "from": "/l", "path": "/m"},
            {"op": "move", "from": "/l/0", "path": "/l/-"},
            {"op": "test", "path": "/c", "value": 1.0}
        ]));
        assert_eq!(apply(&doc, &p).unwrap(), Tree::from(json!({"a": {}, "c": 1, "l": [2, 3, 1], "m": [1, 2, 3]})));
        let bad = patch(json!([{"op": "move", "from": "/a", "path": "/a/x"}]));
        assert!(matches!(apply(&doc, &bad).unwrap_err().reason, PatchFailure::MoveIntoChild { .. }));
        let bad = patch(json!([{"op": "test", "path": "/l", "value": [1]}]));
        assert!(matches!(apply(&doc, &bad).unwrap_err().reason, PatchFailure::TestFailed { .. }));
    }
}
