//! [`Object`] against a `BTreeMap` model: the same entries in the same
//! order through any mix of edits, in both forms and across the change
//! from one to the other, with shared versions left untouched.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// An edit of an object.
#[derive(Clone, Debug)]
enum Edit {
    Insert(String, u64),
    Remove(String),
    /// Change the value under a key in place (`get_mut`).
    Bump(String),
    /// Keep a clone of this version: later edits must not change it.
    Share,
}

fn edit() -> impl Strategy<Value = Edit> {
    // Few keys, so that inserts, removes and hits on existing keys mix,
    // and objects cross the size where they change form both ways.
    let key = || (0u8..24).prop_map(|k| format!("k{k:02}"));
    prop_oneof![
        4 => (key(), any::<u64>()).prop_map(|(k, v)| Edit::Insert(k, v)),
        2 => key().prop_map(Edit::Remove),
        2 => key().prop_map(Edit::Bump),
        1 => Just(Edit::Share),
    ]
}

fn entries(o: &Object) -> Vec<(String, Tree)> {
    o.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn model_entries(m: &BTreeMap<String, u64>) -> Vec<(String, Tree)> {
    m.iter().map(|(k, v)| (k.clone(), Tree::from(*v))).collect()
}

/// The changes `diff` reports, applied to `from`, give `to`.
fn apply_diff(from: &Object, to: &Object) -> Object {
    let mut out = from.clone();
    for d in from.diff(to) {
        match d {
            DiffItem::Add(k, v) | DiffItem::Update { new: (k, v), .. } => {
                out.insert(k.clone(), v.clone());
            }
            DiffItem::Remove(k, _) => {
                out.remove(k);
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn edits_give_what_a_btreemap_gives(edits in prop::collection::vec(edit(), 0..80)) {
        let mut o = Object::new();
        let mut model = BTreeMap::new();
        let mut shared: Vec<(Object, BTreeMap<String, u64>)> = Vec::new();
        for e in edits {
            match e {
                Edit::Insert(k, v) => {
                    let old = o.insert(Key::from(k.as_str()), Tree::from(v));
                    prop_assert_eq!(old, model.insert(k, v).map(Tree::from));
                }
                Edit::Remove(k) => {
                    prop_assert_eq!(o.remove(k.as_str()), model.remove(&k).map(Tree::from));
                }
                Edit::Bump(k) => {
                    let slot = o.get_mut(k.as_str());
                    prop_assert_eq!(slot.is_some(), model.contains_key(&k));
                    if let (Some(slot), Some(m)) = (slot, model.get_mut(&k)) {
                        *m = m.wrapping_add(1);
                        *slot = Tree::from(*m);
                    }
                }
                Edit::Share => shared.push((o.clone(), model.clone())),
            }
            prop_assert_eq!(o.len(), model.len());
            prop_assert_eq!(entries(&o), model_entries(&model));
            for k in ["k00", "k07", "k13", "k23", "zz"] {
                prop_assert_eq!(o.get(k).cloned(), model.get(k).map(|v| Tree::from(*v)));
            }
            prop_assert_eq!(o.get_min().map(|(k, _)| k.to_string()), model.keys().next().cloned());
            prop_assert_eq!(o.get_max().map(|(k, _)| k.to_string()), model.keys().next_back().cloned());
        }
        // Versions kept along the way were not changed by later edits.
        for (version, model) in &shared {
            prop_assert_eq!(entries(version), model_entries(model));
            // Built again from its entries (a snapshot load): equal, and
            // each diff between versions turns one into the other.
            let rebuilt: Object = version.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(&rebuilt, version);
            prop_assert_eq!(&apply_diff(version, &o), &o);
            prop_assert_eq!(&apply_diff(&o, version), version);
            prop_assert_eq!(&apply_diff(&rebuilt, &o), &o);
            prop_assert_eq!(version == &o, model_entries(model) == entries(&o));
        }
    }

    #[test]
    fn a_big_object_built_from_entries_then_edited_gives_what_a_btreemap_gives(
        n in 0u32..3000,
        edits in prop::collection::vec((0u32..3200, any::<bool>()), 0..300),
    ) {
        // Built from sorted entries (as a snapshot load or the sales ledger's
        // fold does): B-tree nodes laid out by `BigMap::from_sorted`, then edited.
        let key = |i: u32| Key::from(format!("p{i:05}"));
        let mut o: Object = (0..n).map(|i| (key(i), Tree::from(u64::from(i)))).collect();
        let mut model: BTreeMap<String, u64> = (0..n).map(|i| (key(i).to_string(), u64::from(i))).collect();
        prop_assert_eq!(entries(&o), model_entries(&model));
        let before = o.clone();
        for (i, insert) in edits {
            if insert {
                o.insert(key(i), Tree::from(7u64));
                model.insert(key(i).to_string(), 7);
            } else {
                prop_assert_eq!(o.remove(key(i).as_str()), model.remove(key(i).as_str()).map(Tree::from));
            }
            prop_assert_eq!(o.get(key(i).as_str()).cloned(), model.get(key(i).as_str()).map(|v| Tree::from(*v)));
        }
        prop_assert_eq!(entries(&o), model_entries(&model));
        prop_assert_eq!(&apply_diff(&before, &o), &o);
    }

    #[test]
    fn built_from_entries_a_later_duplicate_wins(pairs in prop::collection::vec((0u8..12, any::<u64>()), 0..40)) {
        let o: Object = pairs.iter().map(|(k, v)| (Key::from(format!("k{k:02}")), Tree::from(*v))).collect();
        let model: BTreeMap<String, u64> = pairs.iter().map(|(k, v)| (format!("k{k:02}"), *v)).collect();
        prop_assert_eq!(entries(&o), model_entries(&model));
    }

    #[test]
    fn union_keeps_the_first_objects_values(
        a in prop::collection::btree_map(0u8..20, any::<u64>(), 0..14),
        b in prop::collection::btree_map(0u8..20, any::<u64>(), 0..14),
    ) {
        let object = |m: &BTreeMap<u8, u64>| -> Object {
            m.iter().map(|(k, v)| (Key::from(format!("k{k:02}")), Tree::from(*v))).collect()
        };
        let mut model: BTreeMap<String, u64> = b.iter().map(|(k, v)| (format!("k{k:02}"), *v)).collect();
        model.extend(a.iter().map(|(k, v)| (format!("k{k:02}"), *v)));
        prop_assert_eq!(entries(&object(&a).union(object(&b))), model_entries(&model));
    }
}

#[test]
fn small_objects_stay_slices_and_grow_into_maps() {
    let mut o = Object::new();
    for i in 0..SMALL {
        o.insert(Key::from(format!("k{i}")), Tree::from(i as u64));
        assert!(matches!(o.0, Repr::Small(_)), "{i}");
    }
    o.insert(Key::from("z"), Tree::Null);
    assert!(matches!(o.0, Repr::Big(_)));
    let rebuilt: Object = o.iter().take(3).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(matches!(rebuilt.0, Repr::Small(_)));
    assert_eq!(std::mem::size_of::<Tree>(), 24, "a tree stays three words");
}

/// Pairs of keys that share a prefix of any length (so that the word-wise
/// comparison meets its differences in every position of a word and in the
/// tail), with bytes from the whole range, a NUL among them, and lengths on
/// both sides of 64, where it hands over to `str`'s own order.
fn key_pair() -> impl Strategy<Value = (String, String)> {
    let part = || {
        prop_oneof![
            prop::collection::vec(prop_oneof![Just('\0'), Just('a'), Just('b'), Just('é'), any::<char>()], 0..12)
                .prop_map(|c| c.into_iter().collect::<String>()),
            "[a-c]{0,3}",
        ]
    };
    ("[a-z0-9]{0,70}", part(), part()).prop_map(|(prefix, a, b)| (format!("{prefix}{a}"), format!("{prefix}{b}")))
}

proptest! {
    /// `compare` is `str`'s order.
    #[test]
    fn compare_is_the_order_of_strings((a, b) in key_pair()) {
        prop_assert_eq!(compare(&a, &b), a.cmp(&b));
        prop_assert_eq!(compare(&b, &a), b.cmp(&a));
        prop_assert_eq!(compare(&a, &a), std::cmp::Ordering::Equal);
    }
}

proptest! {
    /// `from_array` gives what `from_iter` gives, whether its entries come
    /// sorted (one slice, as they are) or not (sorted, a later duplicate
    /// winning).
    #[test]
    fn from_array_is_from_iter(keys in prop::array::uniform6("[a-e]{0,2}"), sort in any::<bool>()) {
        let mut pairs: Vec<(Key, Tree)> =
            keys.iter().enumerate().map(|(i, k)| (Key::from(k.as_str()), Tree::from(i as u64))).collect();
        if sort {
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let array: [(Key, Tree); 6] = pairs.clone().try_into().expect("six");
        let made = Object::from_array(array);
        let expected: Object = pairs.into_iter().collect();
        prop_assert_eq!(entries(&made), entries(&expected));
    }

    /// Runs of entries make the object `from_iter` makes of them all in
    /// turn: in order (straight into a big map), or not (unsorted runs,
    /// runs that overlap, a key twice: sorted, a later duplicate winning).
    #[test]
    fn from_sorted_runs_is_from_iter(
        keys in prop::collection::btree_set(0u32..5000, 0..300),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        disorder in 0u8..4,
    ) {
        let mut pairs: Vec<(Key, Tree)> =
            keys.iter().map(|k| (Key::from(format!("k{k:05}")), Tree::from(u64::from(*k)))).collect();
        let n = pairs.len();
        match disorder {
            1 if n > 1 => pairs.swap(0, n - 1),
            2 if !pairs.is_empty() => pairs.push((pairs[0].0.clone(), Tree::from("again"))),
            _ => {}
        }
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(pairs.len() + 1)).collect();
        at.sort_unstable();
        let mut runs = Vec::new();
        let mut from = 0;
        for a in at.into_iter().chain([pairs.len()]) {
            runs.push(pairs[from..a].to_vec());
            from = a;
        }
        let made = Object::from_sorted_runs(runs);
        let expected: Object = pairs.into_iter().collect();
        prop_assert_eq!(entries(&made), entries(&expected));
        prop_assert!(made == expected);
    }
}

proptest! {
    /// Runs of keys of any shape (long shared prefixes, bytes past ASCII,
    /// a NUL), with empty runs between them and, at will, a run's last key
    /// again at the start of the next: `from_sorted_runs` gives what
    /// `from_iter` gives, in the same form, and a map it builds keeps its
    /// invariants through lookups and edits.
    #[test]
    fn from_sorted_runs_of_any_keys_is_from_iter(
        keys in prop::collection::btree_set(
            ("[a-c]{0,70}", prop_oneof![Just(String::new()), Just("\0".to_string()), Just("é".to_string()), "[a-z]{1,3}"])
                .prop_map(|(a, b)| format!("{a}{b}")),
            0..600,
        ),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        repeat in any::<bool>(),
    ) {
        let pairs: Vec<(Key, Tree)> =
            keys.iter().enumerate().map(|(i, k)| (Key::from(k.as_str()), Tree::from(i as u64))).collect();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(pairs.len() + 1)).collect();
        at.sort_unstable();
        let mut runs: Vec<Vec<(Key, Tree)>> = Vec::new();
        let mut from = 0;
        for a in at.into_iter().chain([pairs.len()]) {
            runs.push(pairs[from..a].to_vec());
            // Consecutive equal cuts leave empty runs between.
            from = a;
        }
        if repeat && let Some(i) = (1..runs.len()).find(|&i| !runs[i - 1].is_empty() && !runs[i].is_empty()) {
            let again = runs[i - 1].last().expect("non-empty").0.clone();
            runs[i].insert(0, (again, Tree::from("later")));
        }
        let all: Vec<(Key, Tree)> = runs.iter().flatten().cloned().collect();
        let made = Object::from_sorted_runs(runs);
        let expected: Object = all.into_iter().collect();
        prop_assert_eq!(entries(&made), entries(&expected));
        prop_assert_eq!(matches!(made.0, Repr::Big(_)), matches!(expected.0, Repr::Big(_)));
        let mut made = made;
        if let Repr::Big(m) = &made.0 {
            m.check_invariants();
        }
        for (k, v) in expected.iter() {
            prop_assert_eq!(made.get(k.as_str()), Some(v));
        }
        prop_assert_eq!(made.get("b\u{1}"), None);
        for k in keys.iter().step_by(3) {
            made.remove(k.as_str());
        }
        made.insert(Key::from("zz"), Tree::Null);
        if let Repr::Big(m) = &made.0 {
            m.check_invariants();
        }
    }
}
