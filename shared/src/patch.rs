//! Applying RFC 6902 JSON Patches to a [`Tree`].
//!
//! Patches use the `json-patch` crate's types so every part of nodb speaks
//! the same patch type. Application is atomic: the input tree is persistent
//! and never modified, so a failing operation simply means the new tree is
//! dropped and the caller keeps the old one.
//!
//! Each operation is checked against the tree [`Limits`] before it is
//! applied: a value added, replaced, copied or moved may not nest the tree
//! deeper than the depth limit, nor be larger alone than the size limit. So
//! no patch builds a tree deeper than the limit, even for a moment (a run
//! of `copy "" → /a` would otherwise nest the document one level deeper per
//! operation), and a run of copies that doubles the document is refused
//! after a walk of at most the size limit. The whole document's size is the
//! caller's to check ([`crate::tree::limits::check_change`]).

use json_patch::jsonptr::Pointer;
use json_patch::{Patch, PatchOperation};

use crate::edit::{Missing, Store, edit_parent, remove_child, store};
use crate::path::{PathError, Segment};
use crate::tree::Tree;
use crate::tree::limits::{LimitError, Limits, measure_at};

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
    /// The value would nest the tree too deep, or is too large alone.
    #[error("{0}")]
    Limit(#[from] LimitError),
}

/// Applies `patch` to `doc` within the default [`Limits`], returning the
/// patched tree.
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
    apply_within(doc, ops, &Limits::default())
}

/// Applies a slice of operations, checking each against `limits`; see
/// [`apply`].
///
/// # Errors
/// As for [`apply`]; [`PatchFailure::Limit`] for an operation that would
/// break a limit.
pub fn apply_within(doc: &Tree, ops: &[PatchOperation], limits: &Limits) -> Result<Tree, PatchError> {
    let mut current = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        current = apply_one(&current, op, limits).map_err(|reason| PatchError {
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

/// Checks that `value`, placed at `path`, keeps the tree within `limits`
/// (its own size included; the rest of the tree is the caller's).
fn fits(value: &Tree, path: &[Segment], limits: &Limits) -> Result<(), PatchFailure> {
    measure_at(value, path.len(), limits)?;
    Ok(())
}

/// A value of the patch itself, checked for its place.
fn new_value(value: &serde_json::Value, path: &[Segment], limits: &Limits) -> Result<Tree, PatchFailure> {
    let value = Tree::from(value);
    fits(&value, path, limits)?;
    Ok(value)
}

fn apply_one(doc: &Tree, op: &PatchOperation, limits: &Limits) -> Result<Tree, PatchFailure> {
    match op {
        PatchOperation::Add(o) => {
            let segs = segments(&o.path);
            let value = new_value(&o.value, &segs, limits)?;
            add(doc, &segs, value)
        }
        PatchOperation::Remove(o) => remove(doc, &segments(&o.path)),
        PatchOperation::Replace(o) => {
            let segs = segments(&o.path);
            let value = new_value(&o.value, &segs, limits)?;
            if segs.is_empty() {
                return Ok(value);
            }
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
            // Moved no deeper, the value fits where it goes as it fitted
            // where it was: no need to walk it.
            if to.len() > from.len() {
                fits(&value, &to, limits)?;
            }
            add(&remove(doc, &from)?, &to, value)
        }
        PatchOperation::Copy(o) => {
            let to = segments(&o.path);
            let value = doc.lookup(&*segments(&o.from))?.clone();
            // A copy is one node in memory but the whole value again as
            // JSON: it is measured wherever it goes.
            fits(&value, &to, limits)?;
            add(doc, &to, value)
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

    /// Issue 15: 20,000 `copy "" -> /a` made the document 20,000 levels
    /// deep, and serialising it overflowed the stack. The copy that would
    /// pass the depth limit is refused, before anything that deep exists.
    #[test]
    fn a_copy_bomb_stops_at_the_depth_limit() {
        let bomb: Vec<serde_json::Value> =
            (0..20_000).map(|_| json!({"op": "copy", "from": "", "path": "/a"})).collect();
        let err = apply(&Tree::object(), &patch(json!(bomb))).unwrap_err();
        // `{}` is 1 deep; each copy nests it one more: the 64th copy would
        // make it 65.
        assert_eq!((err.index, err.op), (63, "copy"));
        assert_eq!(err.reason, PatchFailure::Limit(LimitError::TooDeep { limit: crate::tree::limits::MAX_DEPTH }));
        let fine: Vec<serde_json::Value> = bomb[..63].to_vec();
        let doc = apply(&Tree::object(), &patch(json!(fine))).unwrap();
        assert_eq!(crate::tree::limits::measure(&doc, &Limits::default()).unwrap().depth, 64);
    }

    /// Issue 15: a 1.7 KB patch copying the document into itself again and
    /// again asked for a 4 GiB allocation when the view was serialised.
    #[test]
    fn a_doubling_patch_stops_at_the_size_limit() {
        let mut ops = vec![json!({"op": "add", "path": "/s", "value": "x".repeat(1000)})];
        ops.extend((0..40).map(|i| json!({"op": "copy", "from": "", "path": format!("/d{i}")})));
        let started = std::time::Instant::now();
        let err = apply(&Tree::object(), &patch(json!(ops))).unwrap_err();
        assert_eq!(err.reason, PatchFailure::Limit(LimitError::TooLarge { limit: crate::tree::limits::MAX_BYTES }));
        // The 20th copy would copy 1 KB doubled 19 times: past 256 MiB.
        assert_eq!(err.index, 20, "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    proptest::proptest! {
        /// A value of any depth placed at any depth: taken exactly when the
        /// document stays within the depth limit, by every operation that
        /// places a value.
        #[test]
        fn depth_around_the_limit_for_every_operation(above in 0usize..4, depth in 58usize..70, op in 0usize..4) {
            use crate::tree::limits::MAX_DEPTH;
            let deep = (0..depth).fold(json!(1), |inner, _| json!([inner]));
            // A document with `above` objects on the way to `/k/k…`.
            let doc = (0..above).fold(json!({"src": deep.clone()}), |inner, _| json!({"k": inner}));
            let path: String = "/k".repeat(above);
            let src = format!("{path}/src");
            let ops = match op {
                0 => json!([{"op": "add", "path": format!("{path}/new"), "value": deep}]),
                1 => json!([{"op": "replace", "path": src, "value": deep}]),
                2 => json!([{"op": "copy", "from": src, "path": format!("{path}/new")}]),
                _ => json!([{"op": "move", "from": src, "path": format!("{path}/new")}]),
            };
            let doc = Tree::from(doc);
            // The value sits below `above` objects and the one holding it.
            let fits = above + 1 + depth <= MAX_DEPTH;
            let fitted_before = crate::tree::limits::measure(&doc, &Limits::default()).is_ok();
            let result = apply(&doc, &patch(ops));
            if fitted_before {
                proptest::prop_assert_eq!(result.is_ok(), fits, "{:?}", result.err());
            } else if op == 0 || op == 2 {
                proptest::prop_assert!(result.is_err());
            }
        }
    }
}
