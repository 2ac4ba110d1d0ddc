//! [`Object`]: the map behind a JSON object, in key order.
//!
//! Most objects of a state are small — a product's entry, its locations,
//! an entry of a list — and a B-tree spends a whole leaf on each, however
//! few keys it holds. So an object of up to [`SMALL`] entries is one
//! shared, sorted slice (an allocation of 16 bytes plus 48 per entry),
//! searched in place; one that grows past that becomes a [`BigMap`], a
//! persistent B+tree whose edits copy only the path to what they change.
//! Both are persistent: cloning is O(1), and an edit copies the slice or
//! the path only while another version shares it.
//!
//! The form is not part of the value: equality, iteration and serialising
//! see the same entries in the same order either way. An object that
//! shrinks stays a map until it is built again (a snapshot load, an
//! import), which changes nothing but the memory it takes.

use std::cmp::Ordering;
use std::sync::Arc;

use super::bigmap::BigMap;

use super::{Key, Tree};

/// How many entries an object holds as a sorted slice before it becomes a
/// B-tree map: sixteen entries are a slice of 784 bytes, where a
/// [`BigMap`] leaf is a 2 KiB allocation however few it holds.
pub const SMALL: usize = 16;

/// A JSON object: entries in key order, persistent (see the module doc).
#[derive(Clone)]
pub struct Object(Repr);

#[derive(Clone)]
enum Repr {
    /// Up to [`SMALL`] entries, sorted by key, no key twice.
    Small(Arc<[(Key, Tree)]>),
    /// Any number of entries.
    Big(BigMap),
}

/// One difference between two objects, in key order (see [`Object::diff`]).
#[derive(Debug)]
pub enum DiffItem<'a> {
    /// An entry only the second object has.
    Add(&'a Key, &'a Tree),
    /// An entry only the first object has.
    Remove(&'a Key, &'a Tree),
    /// A key both have, with values that may differ (they are not the
    /// same shared node).
    Update {
        /// The first object's entry.
        old: (&'a Key, &'a Tree),
        /// The second object's entry.
        new: (&'a Key, &'a Tree),
    },
}

impl Default for Object {
    fn default() -> Self {
        Object::new()
    }
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object(Repr::Small(Arc::new([])))
    }

    /// How many entries it has.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Small(s) => s.len(),
            Repr::Big(m) => m.len(),
        }
    }

    /// The entries of a small object (a sorted slice), or the map of a
    /// big one.
    pub(crate) fn form(&self) -> Result<&[(Key, Tree)], &BigMap> {
        match &self.0 {
            Repr::Small(s) => Ok(s),
            Repr::Big(m) => Err(m),
        }
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value under `key`.
    pub fn get<Q: AsRef<str> + ?Sized>(&self, key: &Q) -> Option<&Tree> {
        let key = key.as_ref();
        match &self.0 {
            Repr::Small(s) => find(s, key).ok().map(|i| &s[i].1),
            Repr::Big(m) => m.get(key),
        }
    }

    /// Whether there is a value under `key`.
    pub fn contains_key<Q: AsRef<str> + ?Sized>(&self, key: &Q) -> bool {
        self.get(key).is_some()
    }

    /// The value under `key`, to change where it is (the object is made
    /// unique first: copied only while another version shares it).
    pub fn get_mut<Q: AsRef<str> + ?Sized>(&mut self, key: &Q) -> Option<&mut Tree> {
        let key = key.as_ref();
        match &mut self.0 {
            Repr::Small(s) => {
                let i = find(s, key).ok()?;
                Some(&mut Arc::make_mut(s)[i].1)
            }
            Repr::Big(m) => m.get_mut(key),
        }
    }

    /// Stores `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: Key, value: Tree) -> Option<Tree> {
        let s = match &mut self.0 {
            Repr::Big(m) => return m.insert(key, value),
            Repr::Small(s) => s,
        };
        match find(s, &key) {
            Ok(i) => Some(std::mem::replace(&mut Arc::make_mut(s)[i].1, value)),
            Err(i) => {
                let mut entries = take_entries(s);
                entries.insert(i, (key, value));
                self.0 = repr_of_sorted(entries);
                None
            }
        }
    }

    /// Removes the entry under `key`, returning its value.
    pub fn remove<Q: AsRef<str> + ?Sized>(&mut self, key: &Q) -> Option<Tree> {
        let key = key.as_ref();
        match &mut self.0 {
            Repr::Big(m) => m.remove(key),
            Repr::Small(s) => {
                let i = find(s, key).ok()?;
                let mut entries = take_entries(s);
                let (_, old) = entries.remove(i);
                *s = entries.into();
                Some(old)
            }
        }
    }

    /// A copy with `value` under `key`.
    #[must_use]
    pub fn update(&self, key: Key, value: Tree) -> Object {
        let mut o = self.clone();
        o.insert(key, value);
        o
    }

    /// A copy without the entry under `key`.
    #[must_use]
    pub fn without<Q: AsRef<str> + ?Sized>(&self, key: &Q) -> Object {
        let mut o = self.clone();
        o.remove(key);
        o
    }

    /// The entries of both; where both have a key, this one's value wins.
    #[must_use]
    pub fn union(self, other: Object) -> Object {
        let (mut big, small, small_wins) =
            if other.len() > self.len() { (other, self, true) } else { (self, other, false) };
        for (k, v) in &small {
            if small_wins || !big.contains_key(k) {
                big.insert(k.clone(), v.clone());
            }
        }
        big
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(match &self.0 {
            Repr::Small(s) => IterRepr::Small(s.iter()),
            Repr::Big(m) => IterRepr::Big(m.iter()),
        })
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Key> {
        self.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Tree> {
        self.iter().map(|(_, v)| v)
    }

    /// The entry with the smallest key.
    pub fn get_min(&self) -> Option<(&Key, &Tree)> {
        self.iter().next()
    }

    /// The entry with the largest key.
    pub fn get_max(&self) -> Option<(&Key, &Tree)> {
        self.iter().next_back()
    }

    /// Whether both are the very same shared node. `true` implies equal
    /// entries; `false` says nothing.
    pub fn ptr_eq(&self, other: &Object) -> bool {
        match (&self.0, &other.0) {
            (Repr::Small(a), Repr::Small(b)) => Arc::ptr_eq(a, b) || (a.is_empty() && b.is_empty()),
            (Repr::Big(a), Repr::Big(b)) => a.ptr_eq(b),
            _ => false,
        }
    }

    /// What turns this object into `other`, in key order. Two maps skip
    /// the B-tree nodes they share; otherwise both are walked side by side
    /// (an entry whose values are the same shared node is left out).
    pub fn diff<'a>(&'a self, other: &'a Object) -> Box<dyn Iterator<Item = DiffItem<'a>> + 'a> {
        if let (Repr::Big(a), Repr::Big(b)) = (&self.0, &other.0) {
            return Box::new(a.diff(b).into_iter());
        }
        let (mut a, mut b) = (self.iter().peekable(), other.iter().peekable());
        Box::new(std::iter::from_fn(move || {
            loop {
                let next = match (a.peek(), b.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => a.next().map(|(k, v)| DiffItem::Remove(k, v)),
                    (None, Some(_)) => b.next().map(|(k, v)| DiffItem::Add(k, v)),
                    (Some((ka, _)), Some((kb, _))) => match ka.cmp(kb) {
                        std::cmp::Ordering::Less => a.next().map(|(k, v)| DiffItem::Remove(k, v)),
                        std::cmp::Ordering::Greater => b.next().map(|(k, v)| DiffItem::Add(k, v)),
                        std::cmp::Ordering::Equal => {
                            let (old, new) = (a.next()?, b.next()?);
                            if old.1.ptr_eq(new.1) {
                                continue;
                            }
                            Some(DiffItem::Update { old, new })
                        }
                    },
                };
                return next;
            }
        }))
    }
}

/// Where `key` is in the sorted `entries`, or where it would go.
fn find(entries: &[(Key, Tree)], key: &str) -> Result<usize, usize> {
    // A linear scan: at most `SMALL` keys, side by side in one allocation.
    for (i, (k, _)) in entries.iter().enumerate() {
        match compare(k, key) {
            Ordering::Less => {}
            Ordering::Equal => return Ok(i),
            Ordering::Greater => return Err(i),
        }
    }
    Err(entries.len())
}

/// `a.cmp(b)`, for the short keys of a state: eight bytes at a time as
/// big-endian words, inline. (`str`'s own order calls `memcmp`, whose
/// call and dispatch cost more than the compare for keys of a dozen
/// bytes; searches of big objects are mostly key comparisons.)
#[inline]
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    if n > 64 {
        return a.cmp(b);
    }
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("eight bytes"));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

/// The entries of a slice, moved out when nothing else shares it.
fn take_entries(s: &mut Arc<[(Key, Tree)]>) -> Vec<(Key, Tree)> {
    let mut entries = Vec::with_capacity(s.len() + 1);
    match Arc::get_mut(s) {
        Some(unique) => entries.extend(unique.iter_mut().map(std::mem::take)),
        None => entries.extend(s.iter().cloned()),
    }
    entries
}

/// The form for these entries (sorted, no key twice).
fn repr_of_sorted(entries: Vec<(Key, Tree)>) -> Repr {
    if entries.len() <= SMALL { Repr::Small(entries.into()) } else { Repr::Big(BigMap::from_sorted(entries)) }
}

impl Object {
    /// The object of `entries`, as [`Object::from_iter`] makes it; when
    /// they come sorted by key, no key twice, and few enough to be one
    /// slice, in one allocation, with nothing to sort (a reducer that
    /// writes a small object of known keys in key order saves the
    /// copies).
    pub fn from_array<const N: usize>(entries: [(Key, Tree); N]) -> Object {
        if N <= SMALL && entries.is_sorted_by(|a, b| compare(&a.0, &b.0) == Ordering::Less) {
            Object(Repr::Small(Arc::from(entries)))
        } else {
            entries.into_iter().collect()
        }
    }
}

impl Object {
    /// The object of `runs`, lists of entries one after the other, as
    /// [`Object::from_iter`] of them all in turn makes it; when each is
    /// sorted by key and every key is past the one before (a big object
    /// read in pieces, in order), the entries go straight into the map,
    /// with no list of them all made first.
    pub fn from_sorted_runs(runs: Vec<Vec<(Key, Tree)>>) -> Object {
        let less = |a: &(Key, Tree), b: &(Key, Tree)| compare(&a.0, &b.0) == Ordering::Less;
        let mut last: Option<&(Key, Tree)> = None;
        let in_order = runs.iter().all(|run| {
            let (Some(first), Some(end)) = (run.first(), run.last()) else { return true };
            let ok = last.is_none_or(|l| less(l, first)) && run.is_sorted_by(less);
            last = Some(end);
            ok
        });
        let len = runs.iter().map(Vec::len).sum();
        if !in_order || len <= SMALL {
            return runs.into_iter().flatten().collect();
        }
        Object(Repr::Big(BigMap::from_sorted_iter(len, runs.into_iter().flatten())))
    }
}

impl FromIterator<(Key, Tree)> for Object {
    /// The object of `entries`; a later duplicate key wins.
    fn from_iter<I: IntoIterator<Item = (Key, Tree)>>(entries: I) -> Object {
        let mut entries: Vec<(Key, Tree)> = entries.into_iter().collect();
        if !entries.is_sorted_by(|a, b| compare(&a.0, &b.0) == Ordering::Less) {
            // Stable, so duplicates stay in input order; the last one's
            // value moves into the one kept.
            entries.sort_by(|a, b| compare(&a.0, &b.0));
            entries.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(&mut later.1, &mut kept.1);
                }
                same
            });
        }
        Object(repr_of_sorted(entries))
    }
}

/// The entries of an [`Object`] in key order.
pub struct Iter<'a>(IterRepr<'a>);

enum IterRepr<'a> {
    Small(std::slice::Iter<'a, (Key, Tree)>),
    Big(super::bigmap::Iter<'a>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Key, &'a Tree);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Small(i) => i.next().map(|(k, v)| (k, v)),
            IterRepr::Big(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IterRepr::Small(i) => i.size_hint(),
            IterRepr::Big(i) => i.size_hint(),
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Small(i) => i.next_back().map(|(k, v)| (k, v)),
            IterRepr::Big(i) => i.next_back(),
        }
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = (&'a Key, &'a Tree);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for Object {
    /// The same entries. Two maps walk their diff, which skips the nodes
    /// they share; otherwise the entries are compared side by side.
    fn eq(&self, other: &Object) -> bool {
        if self.ptr_eq(other) {
            return true;
        }
        if self.len() != other.len() {
            return false;
        }
        match (&self.0, &other.0) {
            (Repr::Big(a), Repr::Big(b)) => {
                a.diff(b).iter().all(|d| matches!(d, DiffItem::Update { old, new } if old.1 == new.1))
            }
            _ => self.iter().zip(other.iter()).all(|((ka, va), (kb, vb))| ka == kb && va == vb),
        }
    }
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
#[path = "object_tests.rs"]
mod tests;
