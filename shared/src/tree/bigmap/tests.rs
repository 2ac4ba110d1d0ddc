use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Keys of several shapes: long shared prefixes, 13-digit time buckets,
/// short ones, heap-allocated ones sharing more than `PMAX` bytes (their
/// discriminators tie), and ones ending in NUL bytes (which pad alike).
fn key(i: u32) -> Key {
    match i % 6 {
        0 | 1 => Key::from(format!("product{}", (i / 6).wrapping_mul(7919) % 100_000)),
        2 => Key::from(format!("{}", 1_794_999_600_000u64 + u64::from(i / 6) * 3_600_000)),
        3 => Key::from(format!("k{}", i / 6)),
        4 => Key::from(format!("a very long shared prefix, longer than twenty-three bytes {}", i / 6)),
        _ => Key::from(format!("x{}", "\0".repeat((i / 6 % 4) as usize))),
    }
}

fn check<const L: usize, const I: usize>(m: &BigMap<L, I>, model: &BTreeMap<Key, Tree>) {
    m.check_invariants();
    assert_eq!(m.len(), model.len());
    assert!(m.iter().map(|(k, v)| (k.clone(), v.clone())).eq(model.iter().map(|(k, v)| (k.clone(), v.clone()))));
    assert!(m.iter().rev().map(|(k, _)| k.clone()).eq(model.keys().rev().cloned()));
    for (k, v) in model {
        assert_eq!(m.get(k), Some(v), "get {k:?}");
        let got = m.get(k).expect("there");
        assert!(walked(m, k).is_some_and(|w| std::ptr::eq(w, got)), "walk to {k:?}");
    }
    // Meeting in the middle.
    let mut it = m.iter();
    let mut n = 0;
    loop {
        let a = it.next();
        let b = it.next_back();
        n += usize::from(a.is_some()) + usize::from(b.is_some());
        if b.is_none() {
            break;
        }
    }
    assert_eq!(n, model.len());
}

/// What a [`Walk`] for `key` ends at, stepping until it is found or not.
fn walked<'a, const L: usize, const I: usize>(m: &'a BigMap<L, I>, key: &'a str) -> Option<&'a Tree> {
    let mut walk = m.walk(key);
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps <= MAX_DEPTH + 1, "a walk ends within the tree's depth");
        match walk.step() {
            Step::On => {}
            Step::Found(t) => return Some(t),
            Step::Missing => return None,
        }
    }
}

/// A diff as (key, old value, new value).
type Changes = Vec<(Key, Option<Tree>, Option<Tree>)>;

fn changes(items: &[crate::tree::object::DiffItem<'_>]) -> Changes {
    use crate::tree::object::DiffItem as D;
    items
        .iter()
        .map(|d| match d {
            D::Add(k, v) => ((*k).clone(), None, Some((*v).clone())),
            D::Remove(k, v) => ((*k).clone(), Some((*v).clone()), None),
            D::Update { old, new } => (old.0.clone(), Some(old.1.clone()), Some(new.1.clone())),
        })
        .collect()
}

fn model_diff(a: &BTreeMap<Key, Tree>, b: &BTreeMap<Key, Tree>) -> Changes {
    let mut keys: Vec<&Key> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
        .collect()
}

fn check_diff<const L: usize, const I: usize>(
    a: &BigMap<L, I>,
    ma: &BTreeMap<Key, Tree>,
    b: &BigMap<L, I>,
    mb: &BTreeMap<Key, Tree>,
) {
    assert_eq!(changes(&a.diff(b)), model_diff(ma, mb));
    assert_eq!(changes(&b.diff(a)), model_diff(mb, ma));
    assert!(a.diff(a).is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u32, i64),
    Remove(u32),
    GetMut(u32, i64),
    Get(u32),
    Keep,
    Restore(usize),
}

fn op(keys: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..keys, any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        4 => (0..keys).prop_map(Op::Remove),
        2 => (0..keys, any::<i64>()).prop_map(|(k, v)| Op::GetMut(k, v)),
        1 => (0..keys).prop_map(Op::Get),
        1 => Just(Op::Keep),
        1 => any::<usize>().prop_map(Op::Restore),
    ]
}

fn run<const L: usize, const I: usize>(ops: &[Op], bulk: Vec<u32>) {
    let mut model: BTreeMap<Key, Tree> = bulk.iter().map(|&i| (key(i), Tree::from(i64::from(i)))).collect();
    let mut m: BigMap<L, I> = BigMap::from_sorted(model.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    check(&m, &model);
    let mut kept: Vec<(BigMap<L, I>, BTreeMap<Key, Tree>)> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Insert(k, v) => {
                assert_eq!(m.insert(key(*k), Tree::from(*v)), model.insert(key(*k), Tree::from(*v)));
            }
            Op::Remove(k) => assert_eq!(m.remove(&key(*k)), model.remove(&key(*k))),
            Op::GetMut(k, v) => {
                let before = m.clone();
                let got = m.get_mut(&key(*k)).map(|t| std::mem::replace(t, Tree::from(*v)));
                let want = model.get_mut(&key(*k)).map(|t| std::mem::replace(t, Tree::from(*v)));
                assert_eq!(got, want);
                // An absent key copies nothing.
                if want.is_none() {
                    assert!(m.ptr_eq(&before));
                }
            }
            Op::Get(k) => {
                assert_eq!(m.get(&key(*k)), model.get(&key(*k)));
                assert_eq!(walked(&m, &key(*k)), model.get(&key(*k)), "walk to {:?}", key(*k));
            }
            Op::Keep => kept.push((m.clone(), model.clone())),
            Op::Restore(i) => {
                if !kept.is_empty() {
                    let (km, kmodel) = kept[i % kept.len()].clone();
                    m = km;
                    model = kmodel;
                }
            }
        }
        if n % 64 == 0 {
            check(&m, &model);
        }
    }
    check(&m, &model);
    for (km, kmodel) in &kept {
        check(km, kmodel);
        check_diff(km, kmodel, &m, &model);
    }
    check_diff(&m, &model, &BigMap::new(), &BTreeMap::new());
    let rebuilt = BigMap::<L, I>::from_sorted(model.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    check_diff(&rebuilt, &model, &m, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn small_nodes_match_btreemap(ops in prop::collection::vec(op(600), 0..3000), bulk in prop::collection::vec(0..600u32, 0..400)) {
        let mut bulk = bulk;
        bulk.sort_by_key(|&i| key(i));
        bulk.dedup_by_key(|i| key(*i));
        run::<4, 4>(&ops, bulk);
    }

    #[test]
    fn odd_node_sizes_match_btreemap(ops in prop::collection::vec(op(2000), 0..3000), bulk in prop::collection::vec(0..2000u32, 0..1500)) {
        let mut bulk = bulk;
        bulk.sort_by_key(|&i| key(i));
        bulk.dedup_by_key(|i| key(*i));
        run::<8, 5>(&ops, bulk);
    }

    #[test]
    fn real_size_matches_btreemap(ops in prop::collection::vec(op(600), 0..2000), bulk in prop::collection::vec(0..600u32, 0..500)) {
        let mut bulk = bulk;
        bulk.sort_by_key(|&i| key(i));
        bulk.dedup_by_key(|i| key(*i));
        run::<64, 64>(&ops, bulk);
    }
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Deep trees at the real node size: grow to three levels, keep versions,
/// then delete most keys (a hostile client) and check nodes stay full.
fn deep<const L: usize, const I: usize>(keys: u32, seed: u64) {
    let mut rng = Rng(seed);
    let mut m: BigMap<L, I> = BigMap::new();
    let mut model = BTreeMap::new();
    let mut kept = Vec::new();
    for n in 0..keys * 2 {
        let k = key(rng.next() as u32 % (keys * 3));
        let v = Tree::from(n as i64);
        assert_eq!(m.insert(k.clone(), v.clone()), model.insert(k, v));
        if n % (keys / 2) == 0 {
            kept.push((m.clone(), model.clone()));
        }
    }
    assert!(m.depth() >= 3, "depth {}", m.depth());
    check(&m, &model);
    for n in 0..keys * 4 {
        let k = key(rng.next() as u32 % (keys * 3));
        if n % 5 == 0 {
            let v = Tree::from(-(n as i64));
            assert_eq!(
                m.get_mut(&k).map(|t| std::mem::replace(t, v.clone())),
                model.get_mut(&k).map(|t| std::mem::replace(t, v))
            );
        } else {
            assert_eq!(m.remove(&k), model.remove(&k));
        }
        if n % (keys / 2) == 0 {
            kept.push((m.clone(), model.clone()));
        }
    }
    check(&m, &model);
    for (km, kmodel) in &kept {
        check(km, kmodel);
        check_diff(km, kmodel, &m, &model);
    }
    // Delete everything.
    let all: Vec<Key> = model.keys().cloned().collect();
    for k in &all {
        assert!(m.remove(k).is_some());
        model.remove(k);
    }
    check(&m, &model);
    assert!(m.is_empty() && m.depth() == 0);
    for (km, kmodel) in &kept {
        check(km, kmodel);
    }
}

#[test]
fn deep_real_size() {
    deep::<64, 64>(20_000, 1);
    deep::<32, 32>(8_000, 4);
    deep::<16, 64>(20_000, 5);
}

#[test]
fn deep_small_nodes() {
    deep::<4, 4>(3_000, 2);
    deep::<16, 16>(5_000, 3);
    deep::<5, 7>(3_000, 6);
}

/// One edit in a big map: the diff finds it, visiting only its path.
#[test]
fn diff_of_one_edit() {
    let entries: Vec<(Key, Tree)> =
        (0..200_000).map(|i| (Key::from(format!("p{i:07}")), Tree::from(i as i64))).collect();
    let a: BigMap = BigMap::from_sorted(entries);
    let mut b = a.clone();
    *b.get_mut("p0123456").unwrap() = Tree::Null;
    b.insert(Key::from("p0123456x"), Tree::Null);
    b.remove("p0000007");
    let d = changes(&a.diff(&b));
    assert_eq!(
        d,
        vec![
            (Key::from("p0000007"), Some(Tree::from(7)), None),
            (Key::from("p0123456"), Some(Tree::from(123_456)), Some(Tree::Null)),
            (Key::from("p0123456x"), None, Some(Tree::Null)),
        ]
    );
}

#[test]
fn default_sizes() {
    let mut m: BigMap = BigMap::new();
    let mut model = BTreeMap::new();
    let mut rng = Rng(9);
    for n in 0..30_000u32 {
        let k = key(rng.next() as u32 % 20_000);
        if n % 3 == 2 {
            assert_eq!(m.remove(&k), model.remove(&k));
        } else {
            assert_eq!(m.insert(k.clone(), Tree::from(i64::from(n))), model.insert(k, Tree::from(i64::from(n))));
        }
    }
    assert!(m.depth() >= 3);
    check(&m, &model);
}

#[test]
fn bulk_build_fills_nodes() {
    let mut entries: Vec<(Key, Tree)> =
        (0..100_000).map(|i| (Key::from(format!("product{i}")), Tree::from(i as i64))).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let model: BTreeMap<Key, Tree> = entries.iter().cloned().collect();
    let m: BigMap<64, 64> = BigMap::from_sorted(entries);
    check(&m, &model);
    // 100,000 entries: 1,563 leaves of 63 or 64, 25 inner nodes, a root.
    assert_eq!(m.depth(), 3);
    assert!(m.get("product").is_none() && m.get("product100000").is_none() && m.get("zz").is_none());
    for n in [0usize, 1, 2, 63, 64, 65, 4095, 4096, 4097] {
        let entries: Vec<(Key, Tree)> = (0..n).map(|i| (Key::from(format!("{i:06}")), Tree::Null)).collect();
        let model = entries.iter().cloned().collect();
        check(&BigMap::<64, 64>::from_sorted(entries.clone()), &model);
        check(&BigMap::<32, 16>::from_sorted(entries.clone()), &model);
        check(&BigMap::<4, 4>::from_sorted(entries), &model);
    }
}
