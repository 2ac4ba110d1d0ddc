//! Structural diff: the RFC 6902 patch that turns one [`Tree`] into another.
//!
//! The walk skips every subtree the two trees share ([`Object::diff`]
//! skips shared B-tree nodes; equal pointers end the descent
//! at once), so when `new` was made from `old` by a reducer, the cost is
//! proportional to the change, not to the size of the state.
//!
//! Arrays are compared by trimming the common prefix and suffix, then
//! finding the shortest edit script of what is left (Myers' O(ND)
//! algorithm, with a bounded number of edits). Kept elements cost nothing;
//! each run of changes pairs old and new elements for a deep diff in place,
//! and the difference becomes `add`s or `remove`s at that place. So an
//! append is one `add …/-`, an insertion or removal anywhere is one
//! operation, and a sliding window (drop the first, append one) is two.
//! When the arrays are mostly different, the search gives up early and the
//! elements are paired in place, so no input costs more than about a
//! million comparisons per array beyond a linear pass.

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};

use crate::path::Segment;
use myers::Edit;

mod myers;
use crate::tree::{Array, Object, Tree};

/// The patch that turns `old` into `new`: applying it to `old` gives a tree
/// equal to `new`, and serialising both gives the same bytes.
pub fn diff(old: &Tree, new: &Tree) -> Patch {
    let mut ops = Vec::new();
    diff_into(old, new, &mut Vec::new(), &mut ops);
    Patch(ops)
}

/// The operations that turn `old`, found at `at`, into `new` there: the
/// diff with every path below `at`.
pub fn diff_at(old: &Tree, new: &Tree, at: &[crate::path::Segment]) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    diff_into(old, new, &mut at.to_vec(), &mut ops);
    ops
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

/// Objects with at most this many entries between them are diffed by
/// walking both in key order, each pair handed straight to [`diff_into`],
/// whose pointer test skips shared values. Bigger objects use
/// [`Object::diff`], which skips the B-tree nodes two maps share (it hands
/// back every pair under one key whose values are not the same shared
/// node, equal or not, and `diff_into` tells).
const SMALL_OBJECT: usize = 64;

fn diff_objects(a: &Object, b: &Object, path: &mut Vec<Segment>, ops: &mut Vec<PatchOperation>) {
    use crate::tree::object::DiffItem;
    use std::cmp::Ordering;
    if a.len() + b.len() <= SMALL_OBJECT {
        // The same operations in the same (key) order as below: keys only
        // in `a` are removed, keys only in `b` added, common keys diffed
        // (nothing for equal values).
        let (mut ia, mut ib) = (a.iter().peekable(), b.iter().peekable());
        loop {
            let order = match (ia.peek(), ib.peek()) {
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => return,
            };
            match order {
                Ordering::Less => {
                    let Some((k, _)) = ia.next() else { return };
                    path.push(Segment::Key(k.clone()));
                    ops.push(remove(path));
                    path.pop();
                }
                Ordering::Greater => {
                    let Some((k, v)) = ib.next() else { return };
                    path.push(Segment::Key(k.clone()));
                    ops.push(add(path, v));
                    path.pop();
                }
                Ordering::Equal => {
                    let (Some((k, ov)), Some((_, nv))) = (ia.next(), ib.next()) else { return };
                    if !ov.ptr_eq(nv) {
                        path.push(Segment::Key(k.clone()));
                        diff_into(ov, nv, path, ops);
                        path.pop();
                    }
                }
            }
        }
    }
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
    if old_mid == 0 && new_mid == 0 {
        return;
    }
    let old: Vec<&Tree> = a.iter().skip(prefix).take(old_mid).collect();
    let new: Vec<&Tree> = b.iter().skip(prefix).take(new_mid).collect();
    // The shortest edit script finds shifted runs (a sliding window, an
    // insertion and a removal in one change), but costs O((n + m) · d):
    // bound it so that mostly-different arrays fall back to pairing the
    // elements in place, which is linear.
    let max_d = (MYERS_BUDGET / (old_mid + new_mid)).min(MYERS_MAX_D);
    let script = if max_d > 0 { myers::edit_script(&old, &new, max_d) } else { None };
    // Without a script, the whole middle is one run of changes.
    let script = script.unwrap_or_else(|| {
        std::iter::repeat_n(Edit::Delete, old_mid).chain(std::iter::repeat_n(Edit::Insert, new_mid)).collect()
    });
    emit_script(&script, &old, &new, prefix, a.len(), path, ops);
}

/// Comparisons the edit-script search may spend on one array.
const MYERS_BUDGET: usize = 1 << 20;
/// The most edits the search looks for before falling back.
const MYERS_MAX_D: usize = 1024;

/// Turns an edit script over the middles of two arrays into operations.
/// Each run of edits between kept elements replaces old elements with new
/// ones: as many as pair up are diffed in place (so a changed element gets
/// a deep patch), the rest become `add`s (`/-` at the end) or `remove`s.
fn emit_script(
    script: &[Edit],
    old: &[&Tree],
    new: &[&Tree],
    prefix: usize,
    old_len: usize,
    path: &mut Vec<Segment>,
    ops: &mut Vec<PatchOperation>,
) {
    let (mut i, mut j, mut pos, mut len) = (0usize, 0usize, prefix, old_len);
    let mut k = 0;
    while k < script.len() {
        if script[k] == Edit::Keep {
            i += 1;
            j += 1;
            pos += 1;
            k += 1;
            continue;
        }
        let run_end = script[k..].iter().position(|e| *e == Edit::Keep).map_or(script.len(), |p| k + p);
        let dels = script[k..run_end].iter().filter(|e| **e == Edit::Delete).count();
        let ins = run_end - k - dels;
        let pairs = dels.min(ins);
        for t in 0..pairs {
            path.push(Segment::Index(pos));
            diff_into(old[i + t], new[j + t], path, ops);
            path.pop();
            pos += 1;
        }
        for t in pairs..ins {
            path.push(if pos == len { Segment::Key("-".into()) } else { Segment::Index(pos) });
            ops.push(add(path, new[j + t]));
            path.pop();
            pos += 1;
            len += 1;
        }
        for _ in pairs..dels {
            path.push(Segment::Index(pos));
            ops.push(remove(path));
            path.pop();
            len -= 1;
        }
        i += dels;
        j += ins;
        k = run_end;
    }
}

pub(crate) fn pointer(path: &[Segment]) -> PointerBuf {
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
    fn a_sliding_window_is_two_ops_and_changed_elements_get_deep_patches() {
        let old: Vec<serde_json::Value> = (0..50).map(|i| json!({"seq": i, "x": "y"})).collect();
        let mut new = old[1..].to_vec();
        new.push(json!({"seq": 50, "x": "y"}));
        assert_eq!(
            ops(json!(old), json!(new)),
            json!([{"op": "remove", "path": "/0"}, {"op": "add", "path": "/-", "value": {"seq": 50, "x": "y"}}])
        );
        let mut changed = old.clone();
        changed[7]["x"] = json!("z");
        changed[9]["x"] = json!("w");
        assert_eq!(
            ops(json!(old), json!(changed)),
            json!([{"op": "replace", "path": "/7/x", "value": "z"}, {"op": "replace", "path": "/9/x", "value": "w"}])
        );
        // Insert at the front and remove in the middle in one change.
        let mut both = old.clone();
        both.remove(20);
        both.insert(0, json!("first"));
        assert_eq!(
            ops(json!(old), json!(both)),
            json!([{"op": "add", "path": "/0", "value": "first"}, {"op": "remove", "path": "/21"}])
        );
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
