use proptest::prelude::*;

use super::*;
use crate::tree::Tree;
use crate::tree::object::SMALL;

/// A state with objects small and big (up to a few hundred keys, so maps
/// of several levels), arrays, and values of other kinds on the way.
fn state(seed: &[u16]) -> Tree {
    let mut products = Vec::new();
    for (i, &n) in seed.iter().enumerate() {
        let locations = Tree::from_entries((0..n % 4).map(|l| (format!("loc{l}"), Tree::from(u64::from(l)))));
        let entry = Tree::from_entries([
            ("locations", locations),
            ("total", Tree::from(u64::from(n))),
            ("tags", Tree::from(serde_json::json!(["a", {"b": i}]))),
        ]);
        products.push((format!("p{}", u32::from(n) * 7 % 997), entry));
    }
    // Keys made of digits, which an index segment also names.
    let digits = Tree::from_entries((0..40u64).map(|d| (d.to_string(), Tree::from(d))));
    Tree::from_entries([
        ("products", Tree::from_entries(products)),
        ("n", Tree::from(1u64)),
        ("digits", digits),
        ("few", Tree::from(serde_json::json!({"0": "zero", "2": "two"}))),
    ])
}

/// Paths into such a state, some there and some not.
fn path() -> impl Strategy<Value = Vec<Segment>> {
    let seg = prop_oneof![
        Just(Segment::from("products")),
        (0u32..1000).prop_map(|n| Segment::from(format!("p{n}").as_str())),
        Just(Segment::from("locations")),
        (0u32..5).prop_map(|l| Segment::from(format!("loc{l}").as_str())),
        Just(Segment::from("tags")),
        Just(Segment::from("total")),
        (0usize..3).prop_map(Segment::Index),
        Just(Segment::from("1")),
        Just(Segment::from("-")),
        Just(Segment::from("b")),
        Just(Segment::from("digits")),
        Just(Segment::from("few")),
        (0usize..45).prop_map(Segment::Index),
        (0u32..45).prop_map(|d| Segment::from(d.to_string().as_str())),
    ];
    prop::collection::vec(seg, 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `read` finds the same paths as `Tree::get`, one at a time and all
    /// together, and changes nothing.
    #[test]
    fn reads_find_what_get_finds(
        seed in prop::collection::vec(any::<u16>(), 0..400),
        paths in prop::collection::vec(path(), 0..40),
        steer in prop::collection::vec((0usize..400, 0u32..3), 0..40),
    ) {
        let tree = state(&seed);
        // Steer some paths to products that are there.
        let mut paths = paths;
        for (p, (i, depth)) in paths.iter_mut().zip(steer) {
            if let Some(&n) = seed.get(i % seed.len().max(1)) {
                let product = format!("p{}", u32::from(n) * 7 % 997);
                let mut at = vec![Segment::from("products"), Segment::from(product.as_str())];
                at.extend(p.iter().take(depth as usize).cloned());
                *p = at;
            }
        }
        let mut all = Reads::new();
        for p in &paths {
            let mut one = Reads::new();
            one.add(p.iter().cloned());
            prop_assert_eq!(one.read(&tree), usize::from(tree.get(p.as_slice()).is_some()), "{:?}", p);
            all.add(p.iter().cloned());
        }
        prop_assert_eq!(all.len(), paths.len());
        // Each path found is the very value `get` finds, and no other.
        let mut ends: Vec<Option<&Tree>> = vec![None; paths.len()];
        all.walk(&tree, |i, t| {
            assert!(ends[i].is_none(), "path {i} ends once");
            ends[i] = Some(t);
        });
        for (p, end) in paths.iter().zip(&ends) {
            let want = tree.get(p.as_slice());
            prop_assert!(want.map(std::ptr::from_ref) == end.map(std::ptr::from_ref), "{:?}", p);
        }
        let there = paths.iter().filter(|p| tree.get(p.as_slice()).is_some()).count();
        prop_assert_eq!(all.read(&tree), there);
        all.clear();
        prop_assert!(all.is_empty());
        prop_assert_eq!(all.read(&tree), 0);
    }
}

#[test]
fn the_state_has_big_maps() {
    let tree = state(&(0..600).collect::<Vec<u16>>());
    let Some(Tree::Object(products)) = tree.get([Segment::from("products")]) else { panic!("an object") };
    assert!(products.len() > 2 * SMALL);
    assert!(products.form().is_err(), "a big map");
}

#[test]
fn paths_past_the_limits_are_dropped() {
    let tree = state(&[1, 2, 3]);
    let mut reads = Reads::new();
    for _ in 0..MAX_PATHS + 10 {
        reads.add(["n"]);
    }
    assert_eq!(reads.len(), MAX_PATHS);
    assert_eq!(reads.read(&tree), MAX_PATHS);
    let mut reads = Reads::new();
    reads.add(std::iter::repeat_n("n", MAX_SEGMENTS + 1));
    assert!(reads.is_empty(), "too long a path is dropped");
    reads.add(std::iter::repeat_n("n", MAX_SEGMENTS));
    reads.add(std::iter::repeat_n("n", 1_000_000));
    reads.add(["n"]);
    assert_eq!(reads.len(), 2, "the longest path allowed, then the next after the dropped one");
    assert_eq!(reads.read(&tree), 1, "a number has no keys");
    assert_eq!(reads.segs.len(), MAX_SEGMENTS + 1);
}
