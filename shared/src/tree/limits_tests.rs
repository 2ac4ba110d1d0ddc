use super::*;
use proptest::prelude::*;
use serde_json::json;

fn t(v: serde_json::Value) -> Tree {
    Tree::from(v)
}

/// `[[…[leaf]…]]`: `depth` arrays around `leaf`.
fn nested(depth: usize, leaf: Tree) -> Tree {
    (0..depth).fold(leaf, |inner, _| Tree::from_items([inner]))
}

#[test]
fn the_estimate_is_the_json_text_plus_one_per_non_empty_container() {
    for (v, containers) in [
        (json!(null), 0),
        (json!(-120), 0),
        (json!(u64::MAX), 0),
        (json!("héllo"), 0),
        (json!([]), 0),
        (json!({"a": [1, 2, {"bc": false}], "d": {}}), 3),
    ] {
        let tree = t(v.clone());
        let text = serde_json::to_string(&v).unwrap().len() as u64;
        assert_eq!(bytes_of(&tree), text + containers, "{v}");
        assert_eq!(measure(&tree, &Limits::default()).unwrap().bytes, text + containers);
    }
    assert_eq!(measure(&t(json!({"a": [1, {"b": []}]})), &Limits::NONE).unwrap().depth, 4);
    assert_eq!(measure(&t(json!(1)), &Limits::NONE).unwrap().depth, 0);
}

#[test]
fn depth_at_every_level_around_the_limit() {
    for limit in [0, 1, 2, 5, 63, 64, 65, 127] {
        let limits = Limits { max_depth: limit, max_bytes: u64::MAX };
        for depth in limit.saturating_sub(2)..=limit + 2 {
            let tree = nested(depth, Tree::from(1));
            let got = measure(&tree, &limits);
            if depth <= limit {
                assert_eq!(got.map(|m| m.depth), Ok(depth), "limit {limit}, depth {depth}");
            } else {
                assert_eq!(got, Err(LimitError::TooDeep { limit }), "limit {limit}, depth {depth}");
            }
            // The same tree placed below one more level (a scalar has no
            // depth of its own: its container is checked where it is).
            let fits_below = depth == 0 || depth < limit;
            let below = measure_at(&tree, 1, &limits);
            assert_eq!(below.is_ok(), fits_below, "limit {limit}, depth {depth} below one level");
            // As a change from an empty object to one holding it.
            let change = check_change(&Tree::object(), &Tree::from_entries([("k", tree.clone())]), 2, &limits);
            assert_eq!(change.is_ok(), fits_below, "limit {limit}, depth {depth} added under a key");
        }
    }
}

#[test]
fn a_doubling_tree_is_refused_after_a_walk_of_at_most_the_limit() {
    // 2^40 leaves as JSON, 41 nodes in memory.
    let mut tree = Tree::from(1);
    for _ in 0..40 {
        tree = Tree::from_entries([("a", tree.clone()), ("b", tree)]);
    }
    let limits = Limits { max_depth: 64, max_bytes: 1 << 20 };
    let started = std::time::Instant::now();
    assert_eq!(measure(&tree, &limits), Err(LimitError::TooLarge { limit: 1 << 20 }));
    assert_eq!(check_change(&Tree::object(), &tree, 2, &limits), Err(LimitError::TooLarge { limit: 1 << 20 }));
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
}

#[test]
fn measuring_and_disposing_of_a_million_levels_does_not_overflow_the_stack() {
    let deep = nested(1_000_000, Tree::from("leaf"));
    assert_eq!(measure(&deep, &Limits::default()), Err(LimitError::TooDeep { limit: MAX_DEPTH }));
    assert_eq!(measure(&deep, &Limits::NONE).unwrap().depth, 1_000_000);
    let shared = deep.clone();
    dispose(deep);
    // A tree still shared elsewhere is only let go of.
    assert_eq!(measure(&shared, &Limits::NONE).unwrap().depth, 1_000_000);
    dispose(shared);
    // Deep objects too, and in a thread with a small stack.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let deep =
                (0..200_000).fold(Tree::object(), |inner, i| Tree::from_entries([(format!("k{}", i % 3), inner)]));
            assert!(check_change(&Tree::object(), &deep, 2, &Limits::default()).is_err());
            dispose(deep);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn the_size_of_a_change_is_counted_exactly() {
    let old = t(json!({"keep": {"x": [1, 2, 3]}, "gone": "abc", "list": [1, 2, 3, 4], "n": 5}));
    let new = old
        .remove("/gone")
        .unwrap()
        .set("/added", t(json!({"deep": [true]})))
        .unwrap()
        .set("/list/1", "two")
        .unwrap()
        .push("/list", 5)
        .unwrap()
        .set("/n", 123456)
        .unwrap();
    assert_eq!(check_change(&old, &new, bytes_of(&old), &Limits::default()), Ok(bytes_of(&new)));
    let limits = Limits { max_depth: 64, max_bytes: bytes_of(&new) - 1 };
    assert_eq!(
        check_change(&old, &new, bytes_of(&old), &limits),
        Err(LimitError::TooLarge { limit: limits.max_bytes })
    );
}

/// A JSON value up to a few levels deep.
pub(crate) fn value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z]{0,6}".prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An edit of a tree: a path of keys and indexes, and a value to set there
/// (`None`: remove it).
fn edits() -> impl Strategy<Value = Vec<(Vec<String>, Option<serde_json::Value>)>> {
    prop::collection::vec((prop::collection::vec("[a-c0-2]{1,2}", 1..4), prop::option::of(value())), 1..6)
}

proptest! {
    /// Whatever the edits, the size kept up to date from the change alone
    /// is the size of the new tree, and the change is refused exactly when
    /// the new tree breaks a limit.
    #[test]
    fn check_change_agrees_with_measuring_the_whole(
        start in value(),
        edits in edits(),
        max_depth in 1usize..8,
        max_bytes in 1u64..400,
    ) {
        let old = Tree::from(start);
        let mut new = old.clone();
        for (path, v) in edits {
            let path: Vec<crate::Segment> = path.into_iter().map(|k| crate::Segment::Key(k.into())).collect();
            new = match v {
                Some(v) => new.set(&*path, Tree::from(v)).unwrap_or(new),
                None => new.remove(&*path).unwrap_or(new),
            };
        }
        prop_assert_eq!(check_change(&old, &new, bytes_of(&old), &Limits::NONE), Ok(bytes_of(&new)));
        let limits = Limits { max_depth, max_bytes };
        if measure(&old, &limits).is_ok() {
            let whole = measure(&new, &limits).map(|m| m.bytes);
            let change = check_change(&old, &new, bytes_of(&old), &limits);
            prop_assert_eq!(change.is_ok(), whole.is_ok(), "{:?} vs {:?}", change, whole);
            if let Ok(bytes) = change {
                prop_assert_eq!(Ok(bytes), whole);
            }
        }
    }
}

/// A capped list of latest entries (one pushed in front, the oldest
/// dropped): the entries that only moved are neither added nor removed, and
/// the size kept is the size of the new list, at every step.
#[test]
fn a_shifted_list_is_counted_by_what_entered_and_left() {
    let limits = Limits::default();
    let mut list = crate::Tree::from(serde_json::json!([]));
    let mut bytes = bytes_of(&list);
    for i in 0..120 {
        let entry = crate::Tree::from(serde_json::json!({"n": i, "what": "x".repeat(i % 7)}));
        let crate::Tree::Array(items) = &list else { unreachable!() };
        let mut items = (**items).clone();
        items.push_front(entry);
        if items.len() > 50 {
            items.pop_back();
        }
        let next = crate::Tree::Array(std::sync::Arc::new(items));
        bytes = check_change(&list, &next, bytes, &limits).unwrap();
        assert_eq!(bytes, bytes_of(&next), "step {i}");
        list = next;
    }
}

proptest! {
    /// The recursive walk of small trees measures what the full walk does,
    /// and refuses what it refuses.
    #[test]
    fn small_trees_measure_as_the_full_walk_does(v in value(), above in 0usize..4, max_depth in 0usize..8, budget in 0u64..300) {
        let t = Tree::from(v);
        let mut fuel = SMALL_TREE;
        if let Some(small) = measure_small(&t, above, max_depth, &mut fuel, 0) {
            let small = small.and_then(|m| if m.bytes > budget { Err(LimitError::TooLarge { limit: budget }) } else { Ok(m) });
            let full = measure_walk(&t, above, max_depth, budget);
            prop_assert_eq!(small.is_ok(), full.is_ok(), "{:?} vs {:?}", small, full);
            if let (Ok(a), Ok(b)) = (small, full) {
                prop_assert_eq!(a, b);
            }
        }
    }
}
