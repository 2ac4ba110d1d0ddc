//! Property tests for the laws the tree, diff and patch promise:
//! `apply(a, diff(a, b)) == b` (for trees that share structure and for
//! unrelated ones), agreement with the `json-patch` crate as an independent
//! oracle, serialisation round-trips and `diff(a, a) == []`.

use std::sync::Arc;

use nodb_shared::diff::diff;
use nodb_shared::patch::apply;
use nodb_shared::{Segment, Tree};
use proptest::prelude::*;

fn leaf() -> impl Strategy<Value = Tree> {
    prop_oneof![
        Just(Tree::Null),
        any::<bool>().prop_map(Tree::Bool),
        (-1000i64..1000).prop_map(Tree::from),
        any::<u64>().prop_map(Tree::from),
        (-1e6f64..1e6).prop_map(Tree::from),
        "[a-c~/]{0,3}".prop_map(Tree::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    "[a-f~/0-9]{0,2}"
}

fn tree() -> impl Strategy<Value = Tree> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Tree::from_items),
            proptest::collection::vec((key(), inner), 0..8).prop_map(Tree::from_entries),
        ]
    })
}

/// One edit of a script: where (a random walk) and what.
#[derive(Clone, Debug)]
struct Edit {
    walk: Vec<usize>,
    kind: u8,
    value: Tree,
    key: String,
}

fn edit() -> impl Strategy<Value = Edit> {
    (proptest::collection::vec(any::<usize>(), 0..5), 0u8..5, tree(), key()).prop_map(|(walk, kind, value, key)| Edit {
        walk,
        kind,
        value,
        key,
    })
}

/// Follows `walk` into `t`: each number picks a child, or stops there.
fn pick_path(t: &Tree, walk: &[usize]) -> Vec<Segment> {
    let mut path = Vec::new();
    let mut node = t;
    for &w in walk {
        let next = match node {
            Tree::Object(o) if w % (o.len() + 1) < o.len() => {
                let (k, v) = o.iter().nth(w % (o.len() + 1)).unwrap();
                (Segment::Key(k.clone()), v)
            }
            Tree::Array(a) if w % (a.len() + 1) < a.len() => {
                let i = w % (a.len() + 1);
                (Segment::Index(i), &a[i])
            }
            _ => break,
        };
        path.push(next.0);
        node = next.1;
    }
    path
}

/// Applies an edit with the path API, the way a reducer would.
fn apply_edit(t: &Tree, e: &Edit) -> Tree {
    let path = pick_path(t, &e.walk);
    let target = t.get(&*path).unwrap().clone();
    let result = match (e.kind, &target) {
        // Replace whatever is there.
        (0, _) => t.set(&*path, e.value.clone()),
        // Remove it.
        (1, _) if !path.is_empty() => t.remove(&*path),
        // Insert into an array in the middle, or append.
        (2, Tree::Array(a)) => {
            let mut a = (**a).clone();
            a.insert(e.walk.len() % (a.len() + 1), e.value.clone());
            t.set(&*path, Tree::Array(Arc::new(a)))
        }
        (3, Tree::Array(_)) => t.push(&*path, e.value.clone()),
        // Add or overwrite a key of an object.
        (_, Tree::Object(_)) => {
            let mut p = path.clone();
            p.push(Segment::Key(e.key.as_str().into()));
            t.set(&*p, e.value.clone())
        }
        _ => t.set(&*path, e.value.clone()),
    };
    result.unwrap()
}

fn check_diff_law(a: &Tree, b: &Tree) -> Result<(), TestCaseError> {
    let p = diff(a, b);
    let got = apply(a, &p).map_err(|e| TestCaseError::fail(format!("patch failed: {e}")))?;
    prop_assert_eq!(&got, b);
    prop_assert_eq!(got.to_json_string(), b.to_json_string());
    // The json-patch crate's own `patch` on the serde_json forms agrees.
    let mut oracle = a.to_value();
    json_patch::patch(&mut oracle, &p).map_err(|e| TestCaseError::fail(format!("oracle failed: {e}")))?;
    prop_assert_eq!(oracle, b.to_value());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn diff_of_derived_trees_applies(a in tree(), edits in proptest::collection::vec(edit(), 1..6)) {
        let mut b = a.clone();
        for e in &edits {
            b = apply_edit(&b, e);
        }
        check_diff_law(&a, &b)?;
    }

    #[test]
    fn diff_of_unrelated_trees_applies(a in tree(), b in tree()) {
        check_diff_law(&a, &b)?;
    }

    #[test]
    fn diff_with_itself_is_empty(a in tree()) {
        prop_assert!(diff(&a, &a).0.is_empty());
        let copy: Tree = serde_json::from_str(&a.to_json_string()).unwrap();
        prop_assert!(diff(&a, &copy).0.is_empty());
    }

    #[test]
    fn serialisation_round_trips(a in tree()) {
        let text = a.to_json_string();
        let back: Tree = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &a);
        prop_assert_eq!(back.to_json_string(), text.clone());
        // Through serde_json::Value too, and the same bytes as serde_json's
        // own (sorted-key) serialisation.
        prop_assert_eq!(Tree::from(a.to_value()), a.clone());
        prop_assert_eq!(serde_json::to_string(&a.to_value()).unwrap(), text);
    }

    #[test]
    fn edits_leave_the_original_alone(a in tree(), e in edit()) {
        let before = a.to_json_string();
        let _ = apply_edit(&a, &e);
        prop_assert_eq!(a.to_json_string(), before);
    }
}
