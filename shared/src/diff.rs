//! Structural diff: the RFC 6902 patch that turns one [`Tree`] into another.
//!
//! The walk skips every subtree the two trees share (`imbl`'s
//! `OrdMap::diff` skips shared B-tree nodes; equal pointers end the descent
//! at once), so when `new` was made from `old` by a reducer, the cost is
//! proportional to the change, not to the size of the state.
//!
//! Arrays are compared by trimming the common prefix and suffix; what is
//! left in the middle is diffed element by element, and the difference in
//! length becomes `add`s or `remove`s at that place. So an append is one
//! `add …/-`, a removal or insertion at one place is one operation, and no
//! input costs more than linear time.

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};

use crate::path::Segment;
use crate::tree::{Array, Object, Tree};

/// The patch that turns `old` into `new`: applying it to `old` gives a tree
/// equal to `new`, and serialising both gives the same bytes.
pub fn diff(old: &Tree, new: &Tree) -> Patch {
    let mut ops = Vec::new();
    diff_into(old, new, &mut Vec::new(), &mut ops);
    Patch(ops)
}

fn diff_into(old: &Tree, new: &Tree, path: &mut Vec<Segment>, ops: &mut Vec<PatchOperation>) {
    if old.ptr_eq(new) {
        return;
    }
    match (old, new) {
        (Tree::Object(a), Tree::Object(b)) => diff_objects(a, b, path, ops),
        (Tree::Array(a), Tree::Array(b)) => diff_arrays(a, b, path, ops),
        _ if old == new => {}
        _ => ops.push(PatchOperation::Replace(ReplaceOperation { path: pointer(path), value: new.to_value() })),
    }
}

fn diff_objects(a: &Object, b: &Object, path: &mut Vec<Segment>, ops: &mut Vec<PatchOperation>) {
    use imbl::ordmap::DiffItem;
    for item in a.diff(b) {
        match item {
            DiffItem::Add(k, v) => {
                path.push(Segment::Key(k.clone()));
                ops.push(add(path, v));
                path.pop();
            }
            DiffItem::Remove(k, _) => {
                path.push(Segment::Key(k.clone()));
                ops.push(remove(path));
                path.pop();
            }
            DiffItem::Update { old: (k, ov), new: (_, nv) } => {
                path.push(Segment::Key(k.clone()));
                diff_into(ov, nv, path, ops);
                path.pop();
            }
        }
    }
}

fn diff_arrays(a: &Array, b: &Array, path: &mut Vec<Segment>, ops: &mut Vec<PatchOperation>) {
    let prefix = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a.iter().rev().zip(b.iter().rev()).take(max_suffix).take_while(|(x, y)| x == y).count();
    let old_mid = a.len() - prefix - suffix;
    let new_mid = b.len() - prefix - suffix;
    let common = old_mid.min(new_mid);

    // Changed elements in place.
    for (j, (x, y)) in a.iter().zip(b.iter()).skip(prefix).take(common).enumerate() {
        path.push(Segment::Index(prefix + j));
        diff_into(x, y, path, ops);
        path.pop();
    }
    // Extra new elements: inserted after the common part; at the very end
    // of the array an insertion is an append (`-`).
    for (j, v) in b.iter().skip(prefix + common).take(new_mid - common).enumerate() {
        let index = prefix + common + j;
        path.push(if suffix == 0 { Segment::Key("-".into()) } else { Segment::Index(index) });
        ops.push(add(path, v));
        path.pop();
    }
    // Surplus old elements: removed from the highest index down, so each
    // operation's index names an element of the original array.
    for index in (prefix + common..prefix + old_mid).rev() {
        path.push(Segment::Index(index));
        ops.push(remove(path));
        path.pop();
    }
}

fn pointer(path: &[Segment]) -> PointerBuf {
    PointerBuf::from_tokens(path.iter().map(|s| match s {
        Segment::Key(k) => Token::new(k.to_string()),
        Segment::Index(i) => Token::new(i.to_string()),
    }))
}

fn add(path: &[Segment], v: &Tree) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: pointer(path), value: v.to_value() })
}

fn remove(path: &[Segment]) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path: pointer(path) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::apply;
    use serde_json::json;

    fn ops(old: serde_json::Value, new: serde_json::Value) -> serde_json::Value {
        let (a, b) = (Tree::from(old), Tree::from(new));
        let p = diff(&a, &b);
        assert_eq!(apply(&a, &p).unwrap(), b);
        serde_json::to_value(&p).unwrap()
    }

    #[test]
    fn identical_is_empty() {
        assert_eq!(ops(json!({"a": [1, {"b": 2}]}), json!({"a": [1, {"b": 2}]})), json!([]));
    }

    #[test]
    fn object_changes() {
        assert_eq!(
            ops(json!({"a": 1, "b": {"c": 2}, "d": 0}), json!({"a": 1, "b": {"c": 3}, "e": 0})),
            json!([
                {"op": "replace", "path": "/b/c", "value": 3},
                {"op": "remove", "path": "/d"},
                {"op": "add", "path": "/e", "value": 0}
            ])
        );
    }

    #[test]
    fn array_append_insert_remove_are_one_op() {
        let long: Vec<i32> = (0..1000).collect();
        let mut appended = long.clone();
        appended.push(7);
        assert_eq!(ops(json!(long), json!(appended)), json!([{"op": "add", "path": "/-", "value": 7}]));
        let mut inserted = long.clone();
        inserted.insert(500, -1);
        assert_eq!(ops(json!(long), json!(inserted)), json!([{"op": "add", "path": "/500", "value": -1}]));
        let mut removed = long.clone();
        removed.remove(10);
        assert_eq!(ops(json!(long), json!(removed)), json!([{"op": "remove", "path": "/10"}]));
    }

    #[test]
    fn keys_are_escaped_and_kinds_replaced() {
        assert_eq!(
            ops(json!({"a/b": {"~": 1}, "x": [1]}), json!({"a/b": {"~": 2}, "x": {"0": 1}})),
            json!([
                {"op": "replace", "path": "/a~1b/~0", "value": 2},
                {"op": "replace", "path": "/x", "value": {"0": 1}}
            ])
        );
        assert_eq!(ops(json!(1), json!("1")), json!([{"op": "replace", "path": "", "value": "1"}]));
    }
}
