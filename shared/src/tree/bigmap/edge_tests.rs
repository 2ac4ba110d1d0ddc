//! More property tests of [`BigMap`], from an adversarial review: keys
//! around the prefix and discriminator widths (empty, NUL bytes, prefixes
//! of one another, ties past prefix + 8 bytes, non-ASCII), values shared
//! between versions, the exact diff against a model that leaves out only
//! the same shared values, both ends of the iterator interleaved, bulk
//! builds of every size up to 600, and `Object`'s `==` and `diff`.
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::tree::Object;
use crate::tree::object::DiffItem;

const BASES: [&str; 9] = [
    "",
    "a",
    "abcdefg",
    "abcdefgh",
    "abcdefghijklmno",
    "abcdefghijklmnop",
    "abcdefghijklmnopq",
    "abcdefghijklmnopqrstuvwx",
    "abcdefghijklmnopqrstuvwxyz0123",
];
const ATOMS: [&str; 8] = ["", "\0", "a", "\u{7f}", "é", "\u{10FFFF}", "b", "\0\0"];

fn key_of(i: u32) -> Key {
    let base = BASES[(i % 9) as usize];
    let mut s = String::from(base);
    let mut j = i / 9;
    // up to 4 atoms
    let n = j % 5;
    j /= 5;
    for _ in 0..n {
        s.push_str(ATOMS[(j % 8) as usize]);
        j /= 8;
    }
    Key::from(s)
}

fn val(i: u32, n: usize) -> Tree {
    match n % 3 {
        0 => Tree::from(i64::from(i)),
        1 => Tree::from(format!("s{i}")),
        _ => {
            Tree::from(Object::from_iter((0..(i % 12)).map(|j| (Key::from(format!("o{j}")), Tree::from(i64::from(j))))))
        }
    }
}

fn check<const L: usize, const I: usize>(m: &BigMap<L, I>, model: &BTreeMap<Key, Tree>, probes: &[Key]) {
    m.check_invariants();
    assert_eq!(m.len(), model.len());
    let got: Vec<(Key, Tree)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let want: Vec<(Key, Tree)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(got, want);
    for (k, v) in model {
        assert!(m.get(k).unwrap().ptr_eq(v), "get {k:?}");
    }
    for p in probes {
        assert_eq!(m.get(p).is_some(), model.contains_key(p), "probe {p:?}");
    }
}

/// Exact diff: entries whose values are not the same node.
fn model_diff(a: &BTreeMap<Key, Tree>, b: &BTreeMap<Key, Tree>) -> Vec<(Key, Option<Tree>, Option<Tree>)> {
    let mut keys: Vec<&Key> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| match (a.get(*k), b.get(*k)) {
            (Some(x), Some(y)) => !x.ptr_eq(y),
            _ => true,
        })
        .map(|k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
        .collect()
}

fn changes(items: &[DiffItem<'_>]) -> Vec<(Key, Option<Tree>, Option<Tree>)> {
    items
        .iter()
        .map(|d| match d {
            DiffItem::Add(k, v) => ((*k).clone(), None, Some((*v).clone())),
            DiffItem::Remove(k, v) => ((*k).clone(), Some((*v).clone()), None),
            DiffItem::Update { old, new } => {
                assert_eq!(old.0, new.0);
                (old.0.clone(), Some(old.1.clone()), Some(new.1.clone()))
            }
        })
        .collect()
}

fn check_diff<const L: usize, const I: usize>(
    a: &BigMap<L, I>,
    ma: &BTreeMap<Key, Tree>,
    b: &BigMap<L, I>,
    mb: &BTreeMap<Key, Tree>,
) {
    assert_eq!(changes(&a.diff(b)), model_diff(ma, mb), "diff a->b");
    assert_eq!(changes(&b.diff(a)), model_diff(mb, ma), "diff b->a");
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u32),
    Remove(u32),
    GetMut(u32),
    Keep,
    Restore(usize),
    RemoveFirst,
    RemoveLast,
}

fn op(keys: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..keys).prop_map(Op::Insert),
        4 => (0..keys).prop_map(Op::Remove),
        2 => (0..keys).prop_map(Op::GetMut),
        1 => Just(Op::Keep),
        1 => any::<usize>().prop_map(Op::Restore),
        1 => Just(Op::RemoveFirst),
        1 => Just(Op::RemoveLast),
    ]
}

fn run<const L: usize, const I: usize>(ops: &[Op], bulk: Vec<u32>, keys: u32) {
    let probes: Vec<Key> = (0..keys).map(key_of).collect();
    let mut model: BTreeMap<Key, Tree> = bulk.iter().map(|&i| (key_of(i), val(i, i as usize))).collect();
    let mut m: BigMap<L, I> = BigMap::from_sorted(model.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    check(&m, &model, &probes);
    let mut kept: Vec<(BigMap<L, I>, BTreeMap<Key, Tree>)> = vec![(m.clone(), model.clone())];
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Insert(k) => {
                let v = val(*k, n);
                let a = m.insert(key_of(*k), v.clone());
                let b = model.insert(key_of(*k), v);
                assert_eq!(a.is_some(), b.is_some());
                if let (Some(a), Some(b)) = (a, b) {
                    assert!(a.ptr_eq(&b));
                }
            }
            Op::Remove(k) => {
                let a = m.remove(&key_of(*k));
                let b = model.remove(&key_of(*k));
                assert_eq!(a.is_some(), b.is_some());
            }
            Op::RemoveFirst => {
                if let Some(k) = model.keys().next().cloned() {
                    assert!(m.remove(&k).is_some());
                    model.remove(&k);
                }
            }
            Op::RemoveLast => {
                if let Some(k) = model.keys().next_back().cloned() {
                    assert!(m.remove(&k).is_some());
                    model.remove(&k);
                }
            }
            Op::GetMut(k) => {
                let v = val(*k, n);
                let got = m.get_mut(&key_of(*k)).map(|t| std::mem::replace(t, v.clone()));
                let want = model.get_mut(&key_of(*k)).map(|t| std::mem::replace(t, v));
                assert_eq!(got.is_some(), want.is_some());
            }
            Op::Keep => kept.push((m.clone(), model.clone())),
            Op::Restore(i) => {
                let (km, kmodel) = kept[i % kept.len()].clone();
                m = km;
                model = kmodel;
            }
        }
        if n % 16 == 0 {
            check(&m, &model, &probes);
        }
    }
    check(&m, &model, &probes);
    let rebuilt = BigMap::<L, I>::from_sorted(model.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    check(&rebuilt, &model, &probes);
    check_diff(&rebuilt, &model, &m, &model);
    for (km, kmodel) in &kept {
        check(km, kmodel, &probes);
        check_diff(km, kmodel, &m, &model);
        // Object equality through diff.
        let oa = Object::from_iter(km.iter().map(|(k, v)| (k.clone(), v.clone())));
        let ob = Object::from_iter(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        assert_eq!(oa == ob, kmodel == &model);
    }
    // Interleaved double-ended iteration.
    let want: Vec<&Key> = model.keys().collect();
    for pattern in [0u64, 1, 0x5555_5555_5555_5555, 0x3333_3333_3333_3333, 0xf0f0_f0f0_f0f0_f0f0, 0xdead_beef_1234_5678]
    {
        let mut it = m.iter();
        let (mut lo, mut hi) = (0usize, want.len());
        let mut bit = 0;
        loop {
            assert_eq!(it.size_hint(), (hi - lo, Some(hi - lo)));
            assert_eq!(it.len(), hi - lo);
            let back = (pattern >> (bit % 64)) & 1 == 1;
            bit += 1;
            if back {
                let g = it.next_back().map(|(k, _)| k);
                if hi == lo {
                    assert!(g.is_none());
                    break;
                }
                hi -= 1;
                assert_eq!(g, Some(want[hi]));
            } else {
                let g = it.next().map(|(k, _)| k);
                if hi == lo {
                    assert!(g.is_none());
                    break;
                }
                assert_eq!(g, Some(want[lo]));
                lo += 1;
            }
        }
        assert!(it.next().is_none() && it.next_back().is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn odd_keys_4_4(ops in prop::collection::vec(op(3000), 0..1500), bulk in prop::collection::vec(0..3000u32, 0..300)) {
        let mut bulk = bulk;
        bulk.sort_by_key(|&i| key_of(i));
        bulk.dedup_by_key(|i| key_of(*i));
        run::<4, 4>(&ops, bulk, 3000);
    }

    #[test]
    fn odd_keys_5_7(ops in prop::collection::vec(op(3000), 0..1500), bulk in prop::collection::vec(0..3000u32, 0..600)) {
        let mut bulk = bulk;
        bulk.sort_by_key(|&i| key_of(i));
        bulk.dedup_by_key(|i| key_of(*i));
        run::<5, 7>(&ops, bulk, 3000);
    }

    #[test]
    fn odd_keys_default(ops in prop::collection::vec(op(3000), 0..2500), bulk in prop::collection::vec(0..3000u32, 0..1500)) {
        let mut bulk = bulk;
        bulk.sort_by_key(|&i| key_of(i));
        bulk.dedup_by_key(|i| key_of(*i));
        run::<32, 16>(&ops, bulk, 3000);
    }
}

#[test]
fn from_sorted_sizes() {
    let mut sizes: Vec<usize> = (0..=600).collect();
    for base in [32usize * 16, 32 * 16 * 16, 4 * 4 * 4 * 4, 5 * 7 * 7] {
        for d in 0..3usize {
            sizes.push(base - d);
            sizes.push(base + d);
        }
    }
    let probes: Vec<Key> = (0..9000).map(|i| Key::from(format!("{i:05}"))).collect();
    for n in sizes {
        let model: BTreeMap<Key, Tree> =
            (0..n).map(|i| (Key::from(format!("{:05}", i * 2)), Tree::from(i as i64))).collect();
        let entries: Vec<(Key, Tree)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let m = BigMap::<32, 16>::from_sorted(entries.clone());
        check(&m, &model, &probes[..probes.len().min(2 * n + 2)]);
        let m4 = BigMap::<4, 4>::from_sorted(entries.clone());
        m4.check_invariants();
        let m57 = BigMap::<5, 7>::from_sorted(entries);
        m57.check_invariants();
        // Remove every key from alternate ends on a clone; original intact.
        if n <= 600 {
            let mut c = m.clone();
            let mut cm = model.clone();
            let mut front = true;
            while let Some(k) = if front { cm.keys().next().cloned() } else { cm.keys().next_back().cloned() } {
                assert!(c.remove(&k).is_some());
                cm.remove(&k);
                front = !front;
                c.check_invariants();
            }
            check(&m, &model, &[]);
        }
    }
}

#[derive(Debug, Clone)]
enum OEdit {
    Insert(u32, u8),
    Remove(u32),
    Bump(u32),
    Share,
    Restore(usize),
}

fn oedit() -> impl Strategy<Value = OEdit> {
    prop_oneof![
        5 => (0..400u32, 0..3u8).prop_map(|(k, v)| OEdit::Insert(k, v)),
        3 => (0..400u32).prop_map(OEdit::Remove),
        2 => (0..400u32).prop_map(OEdit::Bump),
        1 => Just(OEdit::Share),
        1 => any::<usize>().prop_map(OEdit::Restore),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn object_level(edits in prop::collection::vec(oedit(), 0..1500)) {
        let mut o = Object::new();
        let mut model: BTreeMap<Key, Tree> = BTreeMap::new();
        let mut kept: Vec<(Object, BTreeMap<Key, Tree>)> = vec![(o.clone(), model.clone())];
        for e in edits {
            match e {
                OEdit::Insert(k, v) => {
                    let t = match v { 0 => Tree::from(i64::from(k % 3)), 1 => Tree::from(format!("{}", k % 2)), _ => Tree::Null };
                    assert_eq!(o.insert(key_of(k), t.clone()).is_some(), model.insert(key_of(k), t).is_some());
                }
                OEdit::Remove(k) => assert_eq!(o.remove(key_of(k).as_str()).is_some(), model.remove(&key_of(k)).is_some()),
                OEdit::Bump(k) => {
                    let a = o.get_mut(key_of(k).as_str());
                    let b = model.get_mut(&key_of(k));
                    assert_eq!(a.is_some(), b.is_some());
                    if let (Some(a), Some(b)) = (a, b) { *a = Tree::from("x"); *b = Tree::from("x"); }
                }
                OEdit::Share => kept.push((o.clone(), model.clone())),
                OEdit::Restore(i) => { let (a, b) = kept[i % kept.len()].clone(); o = a; model = b; }
            }
        }
        let got: Vec<(Key, Tree)> = o.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let want: Vec<(Key, Tree)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(got, want);
        assert_eq!(o.iter().rev().count(), model.len());
        for (ko, km) in &kept {
            let got: Vec<(Key, Tree)> = ko.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let want: Vec<(Key, Tree)> = km.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(&got, &want);
            assert_eq!(ko == &o, km == &model);
            assert_eq!(&o == ko, km == &model);
            // diff applied gives the other
            let mut out = ko.clone();
            let mut last: Option<Key> = None;
            for d in ko.diff(&o) {
                let k = match &d { DiffItem::Add(k, _) | DiffItem::Remove(k, _) => (*k).clone(), DiffItem::Update { old, .. } => old.0.clone() };
                if let Some(l) = &last { assert!(l < &k, "diff order"); }
                last = Some(k);
                match d {
                    DiffItem::Add(k, v) | DiffItem::Update { new: (k, v), .. } => { out.insert(k.clone(), v.clone()); }
                    DiffItem::Remove(k, _) => { out.remove(k); }
                }
            }
            assert!(out == o);
        }
    }
}
