//! [`BigMap`]: a persistent B+tree map from [`Key`] to [`Tree`], laid out
//! for few cache misses per search: the form of an [`Object`] of more than
//! [`SMALL`] entries (a view's big maps: products, the sales ledger's
//! buckets).
//!
//! [`Object`]: super::Object
//! [`SMALL`]: super::object::SMALL
//!
//! It replaced `imbl::OrdMap` there. Like it, it is copy-on-write: nodes
//! are shared behind `Arc`s, cloning the map is O(1), and an edit copies
//! only the path to what it changes while another version shares that
//! path (in place when unique, through `Arc::make_mut`). What differs is
//! the layout of a node:
//!
//! - **Node sizes as parameters**: `L` slots per leaf, `I` children per
//!   inner node (32 and 16 by default; each in 4..=64).
//! - **Discriminators searched apart from keys.** Every node keeps the
//!   longest common prefix of its keys (up to [`PMAX`] bytes, inline in its
//!   header) and, in an array of its own, a `u64` per key: the eight bytes
//!   that follow that prefix, big-endian, zero padded. A discriminator
//!   orders like its key (a smaller one means a smaller key), so a search
//!   compares the probe's prefix once, then counts the discriminators below
//!   the probe's over the node's contiguous array (see `lower`: loads that do
//!   not depend on one another, so a node costs about one miss for its
//!   discriminators whatever its size), and compares whole keys only where
//!   discriminators tie (in a leaf, the one key it finds, to confirm it).
//!   Unused slots hold `u64::MAX`, which no UTF-8 key can produce, so the
//!   count needs no bound.
//! - **Leaf entries** are `(key, value)` pairs, so confirming the key and
//!   reading its value touch the same line or two.
//! - **Bulk build** ([`BigMap::from_sorted`]) fills every node.
//!
//! A removal that leaves a node under half full borrows from a sibling or
//! merges with it, so a client inserting then deleting many keys cannot
//! leave the tree full of near-empty nodes.
//!
//! No `unsafe` (the workspace forbids it): unused slots hold empty keys,
//! `Tree::Null` and `None` children, written when a node is made and
//! skipped when it is cloned.
//!
//! # What the node size costs
//!
//! Searches gain from the discriminators at every node size, and a little
//! more from larger nodes. But copying a path (an edit while an older
//! version is kept) must clone each node on it, which increments the count
//! of every child (and in a leaf, of every value that is an object, array
//! or string): a cache miss each, in proportion to the node sizes summed
//! over the path. With the default 32/16, an edit in place (the engine's
//! usual case: a drafted view's states are held by nothing else) is faster
//! than with `imbl`, and one that copies its path slower; figures in
//! `docs/ARCHITECTURE.md` ("Where the time goes"). 16/16 and 64/64 were
//! slower in place in the warehouse bench.
//!
//! # Structural diff
//!
//! [`BigMap::diff`] skips nodes both versions hold (the same `Arc`), pairs
//! the children of inner nodes with the same separators (the usual case:
//! an edit copied the path and split or merged nothing) and merges the
//! entries of paired leaves in key order. Where the shapes differ (a split,
//! a merge, a new level), it walks both subtrees down level by level,
//! holding the nodes of each level that may differ: nodes both sides hold
//! are dropped from both lists (their entries are the same on both sides,
//! and no key of theirs is anywhere else), the rest are replaced by their
//! children, and at the leaves the two lists' entries are merged. (A taller
//! tree is expanded alone until the heights match.)
//! Since an edit copies only its path, all but the paths of the edits is
//! shared and dropped: the cost is the number of edits times the node
//! sizes along their paths. It returns a `Vec` of the differences.

use std::sync::Arc;

use super::object::DiffItem;
use super::{Key, Tree};

use diff::{diff_levels, diff_nodes};
use inner::{insert_rec, remove_rec};
use node::{Inner, Leaf, Node, check_node};

/// The most bytes of common prefix a node keeps (two words).
pub const PMAX: usize = 16;
/// The deepest a tree can be (every inner node but the root has at least
/// two children).
const MAX_DEPTH: usize = 64;

/// A search of a [`BigMap`] for one key, one node per [`Walk::step`]: a
/// caller that has several keys to find advances their walks in turn, so
/// that the memory fetches the nodes of one level for all of them at once
/// rather than one after the other (see [`crate::read_ahead`]). Each step
/// asks the memory for what the next one reads (a prefetch, which does not
/// wait): the node it goes down to, or in a leaf, the entry its search
/// compares first.
pub struct Walk<'a, const L: usize = 32, const I: usize = 16> {
    node: Option<&'a Node<L, I>>,
    key: &'a str,
    /// At the leaf, its entry asked for: the next step compares it.
    in_leaf: bool,
}

impl<const L: usize, const I: usize> std::fmt::Debug for Walk<'_, L, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walk").field("key", &self.key).field("done", &self.node.is_none()).finish_non_exhaustive()
    }
}

/// Where a [`Walk`] is after a step.
#[derive(Debug)]
pub enum Step<'a> {
    /// Still on its way down.
    On,
    /// At the value under the key.
    Found(&'a Tree),
    /// The key is not there (and every step after `Found` or `Missing`).
    Missing,
}

impl<'a, const L: usize, const I: usize> Walk<'a, L, I> {
    /// Reads the next node down, or confirms the key in its leaf.
    #[inline]
    pub fn step(&mut self) -> Step<'a> {
        match self.node {
            None => Step::Missing,
            Some(Node::Inner(n)) => {
                let child = n.child(n.child_index(self.key));
                child.prefetch();
                self.node = Some(child);
                Step::On
            }
            Some(Node::Leaf(l)) if !self.in_leaf => {
                // The discriminators say which entry the search compares
                // first; it is fetched while the other walks step.
                match l.first_slot(self.key) {
                    Some(i) => {
                        crate::read_ahead::prefetch(&l.entries[i]);
                        self.in_leaf = true;
                        Step::On
                    }
                    None => {
                        self.node = None;
                        Step::Missing
                    }
                }
            }
            Some(Node::Leaf(l)) => {
                self.node = None;
                match l.search(self.key) {
                    Ok(i) => Step::Found(&l.entries[i].1),
                    Err(_) => Step::Missing,
                }
            }
        }
    }
}

/// A persistent ordered map from [`Key`] to [`Tree`] with leaves of `L`
/// entries and inner nodes of `I` children (each in 4..=64). See the
/// module doc.
pub struct BigMap<const L: usize = 32, const I: usize = 16> {
    root: Option<Node<L, I>>,
    len: usize,
}

impl<const L: usize, const I: usize> Clone for BigMap<L, I> {
    fn clone(&self) -> Self {
        BigMap { root: self.root.clone(), len: self.len }
    }
}

impl<const L: usize, const I: usize> Default for BigMap<L, I> {
    fn default() -> Self {
        BigMap::new()
    }
}

impl<const L: usize, const I: usize> BigMap<L, I> {
    /// An empty map.
    pub fn new() -> Self {
        BigMap { root: None, len: 0 }
    }

    /// How many entries it has.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether both are the very same shared tree.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.root, &other.root) {
            (None, None) => true,
            (Some(Node::Leaf(a)), Some(Node::Leaf(b))) => Arc::ptr_eq(a, b),
            (Some(Node::Inner(a)), Some(Node::Inner(b))) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The value under `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Tree> {
        let k = key;
        let mut node = self.root.as_ref()?;
        loop {
            match node {
                Node::Leaf(l) => return l.search(k).ok().map(|i| &l.entries[i].1),
                Node::Inner(n) => node = n.child(n.child_index(k)),
            }
        }
    }

    /// Whether there is a value under `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value under `key`, to change in place; the path to it is copied
    /// first where another version shares it (and not at all when the key
    /// is absent).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Tree> {
        let (path, depth, slot) = self.locate(key)?;
        let mut node = self.root.as_mut()?;
        for &i in &path[..depth] {
            node = match node {
                Node::Inner(n) => Arc::make_mut(n).child_mut(i as usize),
                Node::Leaf(_) => unreachable!(),
            };
        }
        match node {
            Node::Leaf(l) => Some(&mut Arc::make_mut(l).entries[slot].1),
            Node::Inner(_) => unreachable!(),
        }
    }

    /// A search for `key` that goes down one node per [`Walk::step`].
    pub fn walk<'a>(&'a self, key: &'a str) -> Walk<'a, L, I> {
        if let Some(root) = &self.root {
            root.prefetch();
        }
        Walk { node: self.root.as_ref(), key, in_leaf: false }
    }

    /// Where `key` is: the child taken at each inner node, how many inner
    /// nodes, and the slot in the leaf. Nothing is copied.
    #[inline]
    fn locate(&self, key: &str) -> Option<([u8; MAX_DEPTH], usize, usize)> {
        let mut path = [0u8; MAX_DEPTH];
        let mut depth = 0;
        let mut node = self.root.as_ref()?;
        loop {
            match node {
                Node::Leaf(l) => return Some((path, depth, l.search(key).ok()?)),
                Node::Inner(n) => {
                    let i = n.child_index(key);
                    path[depth] = i as u8;
                    depth += 1;
                    node = n.child(i);
                }
            }
        }
    }

    /// Stores `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: Key, value: Tree) -> Option<Tree> {
        let Some(root) = &mut self.root else {
            self.root = Some(Node::Leaf(Arc::new(Leaf::from_entries([(key, value)]))));
            self.len = 1;
            return None;
        };
        let (old, split) = insert_rec(root, key, value);
        if let Some((sep, right)) = split {
            let left = self.root.take().expect("a root");
            self.root = Some(Node::Inner(Arc::new(Inner::from_parts([sep], [left, right]))));
        }
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the entry under `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Tree> {
        // Only copy the path once the key is known to be there.
        let (path, depth, slot) = self.locate(key)?;
        let root = self.root.as_mut()?;
        let old = remove_rec(root, &path[..depth], slot);
        self.len -= 1;
        // Collapse a root left with one child, or empty.
        loop {
            match self.root.take() {
                Some(Node::Inner(n)) if n.len() == 1 => {
                    self.root = Some(match Arc::try_unwrap(n) {
                        Ok(mut n) => n.children[0].take().expect("a child"),
                        Err(n) => n.child(0).clone(),
                    });
                }
                Some(Node::Leaf(l)) if l.len() == 0 => {
                    self.root = None;
                    break;
                }
                other => {
                    self.root = other;
                    break;
                }
            }
        }
        Some(old)
    }

    /// The map of `entries`, which must be sorted by key with no key twice
    /// (checked in debug builds), every node filled.
    pub fn from_sorted(entries: Vec<(Key, Tree)>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "from_sorted: entries not sorted");
        Self::from_sorted_iter(entries.len(), entries)
    }

    /// [`BigMap::from_sorted`] of the `len` entries `entries` yields, moved
    /// straight into the leaves (from several lists in turn, say, with no
    /// list of them all made first).
    ///
    /// # Panics
    /// If `entries` does not yield exactly `len` entries.
    pub fn from_sorted_iter(len: usize, entries: impl IntoIterator<Item = (Key, Tree)>) -> Self {
        if len == 0 {
            return BigMap::new();
        }
        // Leaves: as few as can hold them, sizes as even as can be (every
        // one full when `B` divides the count).
        let mut level: Vec<(Key, Node<L, I>)> = Vec::with_capacity(len / L + 1);
        let mut it = entries.into_iter();
        for size in even_sizes(len, L) {
            let leaf = Leaf::from_entries(it.by_ref().take(size));
            assert!(leaf.len() == size, "from_sorted_iter: fewer entries than {len}");
            level.push((leaf.entries[0].0.clone(), Node::Leaf(Arc::new(leaf))));
        }
        assert!(it.next().is_none(), "from_sorted_iter: more entries than {len}");
        while level.len() > 1 {
            let mut up = Vec::with_capacity(level.len() / I + 1);
            let mut it = level.into_iter();
            for size in even_sizes(it.len(), I) {
                let group: Vec<(Key, Node<L, I>)> = it.by_ref().take(size).collect();
                let first = group[0].0.clone();
                let mut keys = Vec::with_capacity(size - 1);
                let mut children = Vec::with_capacity(size);
                for (i, (k, c)) in group.into_iter().enumerate() {
                    if i > 0 {
                        keys.push(k);
                    }
                    children.push(c);
                }
                up.push((first, Node::Inner(Arc::new(Inner::from_parts(keys, children)))));
            }
            level = up;
        }
        BigMap { root: level.pop().map(|(_, n)| n), len }
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_, L, I> {
        let mut it =
            Iter { front: Vec::new(), back: Vec::new(), front_leaf: None, back_leaf: None, remaining: self.len };
        if let Some(root) = &self.root {
            it.front_leaf = Some((descend(root, &mut it.front, true), 0));
            let l = descend(root, &mut it.back, false);
            it.back_leaf = Some((l, l.len()));
        }
        it
    }

    /// What turns this map into `other`, in key order (an entry whose
    /// values are the same shared node is left out). Subtrees both share
    /// are skipped: the walk goes down level by level, dropping the nodes
    /// both sides hold, so it costs the edits between the two versions
    /// times the node sizes on their paths, not the size of the maps.
    pub fn diff<'a>(&'a self, other: &'a Self) -> Vec<DiffItem<'a>> {
        let mut out = Vec::new();
        let (ha, hb) = (self.depth(), other.depth());
        match (&self.root, &other.root) {
            (Some(a), Some(b)) if ha == hb => diff_nodes(a, b, &mut out),
            _ => diff_levels(self.root.iter().collect(), ha, other.root.iter().collect(), hb, &mut out),
        }
        out
    }

    /// The depth of the tree (0 when empty), for tests and figures.
    pub fn depth(&self) -> usize {
        let mut d = 0;
        let mut node = self.root.as_ref();
        while let Some(n) = node {
            d += 1;
            node = match n {
                Node::Leaf(_) => None,
                Node::Inner(i) => Some(i.child(0)),
            };
        }
        d
    }

    /// Checks the invariants (sorted keys, separators bound their children,
    /// nodes at least half full but the root, discriminators and prefixes
    /// right, all leaves at one depth); panics if one fails.
    pub fn check_invariants(&self) {
        let Some(root) = &self.root else {
            assert_eq!(self.len, 0);
            return;
        };
        let mut leaf_depth = None;
        let n = check_node(root, None, None, true, 0, &mut leaf_depth);
        assert_eq!(n, self.len, "len");
    }
}

/// `count` split into as few parts of at most `cap` as can hold it, their
/// sizes as even as can be.
fn even_sizes(count: usize, cap: usize) -> impl Iterator<Item = usize> {
    let parts = count.div_ceil(cap).max(1);
    let (base, extra) = (count / parts, count % parts);
    (0..parts).map(move |i| base + usize::from(i < extra))
}

/// Walks from `node` to its first (or last) leaf, pushing the inner nodes
/// passed and the child taken.
fn descend<'a, const L: usize, const I: usize>(
    mut node: &'a Node<L, I>,
    stack: &mut Vec<(&'a Inner<L, I>, usize)>,
    first: bool,
) -> &'a Leaf<L> {
    loop {
        match node {
            Node::Leaf(l) => return l,
            Node::Inner(n) => {
                let i = if first { 0 } else { n.len() - 1 };
                stack.push((n, i));
                node = n.child(i);
            }
        }
    }
}

/// The entries of a [`BigMap`] in key order, from both ends.
pub struct Iter<'a, const L: usize = 32, const I: usize = 16> {
    front: Vec<(&'a Inner<L, I>, usize)>,
    back: Vec<(&'a Inner<L, I>, usize)>,
    /// The front leaf and the next entry to yield in it.
    front_leaf: Option<(&'a Leaf<L>, usize)>,
    /// The back leaf and one past the next entry to yield in it.
    back_leaf: Option<(&'a Leaf<L>, usize)>,
    remaining: usize,
}

impl<'a, const L: usize, const I: usize> Iterator for Iter<'a, L, I> {
    type Item = (&'a Key, &'a Tree);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            let (leaf, i) = self.front_leaf?;
            if i < leaf.len() {
                self.front_leaf = Some((leaf, i + 1));
                self.remaining -= 1;
                let e = &leaf.entries[i];
                return Some((&e.0, &e.1));
            }
            loop {
                let top = self.front.last_mut()?;
                top.1 += 1;
                let (n, ci) = *top;
                if ci < n.len() {
                    let child = n.child(ci);
                    self.front_leaf = Some((descend(child, &mut self.front, true), 0));
                    break;
                }
                self.front.pop();
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<const L: usize, const I: usize> DoubleEndedIterator for Iter<'_, L, I> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            let (leaf, i) = self.back_leaf?;
            if i > 0 {
                self.back_leaf = Some((leaf, i - 1));
                self.remaining -= 1;
                let e = &leaf.entries[i - 1];
                return Some((&e.0, &e.1));
            }
            loop {
                let top = self.back.last_mut()?;
                if top.1 > 0 {
                    top.1 -= 1;
                    let (n, ci) = *top;
                    let child = n.child(ci);
                    let l = descend(child, &mut self.back, false);
                    self.back_leaf = Some((l, l.len()));
                    break;
                }
                self.back.pop();
            }
        }
    }
}

impl<const L: usize, const I: usize> ExactSizeIterator for Iter<'_, L, I> {}

impl<'a, const L: usize, const I: usize> IntoIterator for &'a BigMap<L, I> {
    type Item = (&'a Key, &'a Tree);
    type IntoIter = Iter<'a, L, I>;

    fn into_iter(self) -> Iter<'a, L, I> {
        self.iter()
    }
}

impl<const L: usize, const I: usize> FromIterator<(Key, Tree)> for BigMap<L, I> {
    fn from_iter<T: IntoIterator<Item = (Key, Tree)>>(entries: T) -> Self {
        let mut m = BigMap::new();
        for (k, v) in entries {
            m.insert(k, v);
        }
        m
    }
}

impl<const L: usize, const I: usize> std::fmt::Debug for BigMap<L, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

mod diff;
mod inner;
mod node;

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
mod tests;
