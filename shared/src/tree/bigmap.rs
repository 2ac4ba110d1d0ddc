//! [`BigMap`]: a prototype persistent B+tree map from [`Key`] to [`Tree`],
//! laid out for few cache misses per search (not yet used by `Object`).
//!
//! Like `imbl::OrdMap` it is copy-on-write: nodes are shared behind `Arc`s,
//! cloning the map is O(1), and an edit copies only the path to what it
//! changes while another version shares that path (in place when unique,
//! through `Arc::make_mut`). What differs is the layout of a node:
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
//! # What the node size costs (`examples/bigmap_bench.rs`)
//!
//! Searches gain from the discriminators at every node size (1.2-1.5x
//! against `imbl` at 1M keys) and a little more from larger nodes. But
//! copying a path (an edit while an older version is kept) must clone each
//! node on it, which increments the count of every child (and in a leaf,
//! of every value that is an object, array or string): a cache miss each,
//! in proportion to the node sizes summed over the path. At 64/64 such an
//! edit costs twice what it does in `imbl`; at 16/16 or 32/16 about 10%
//! more. Hence the small inner nodes of the default.
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
//! sizes along their paths. It returns a `Vec` for now, not a lazy
//! iterator as `Object::diff` does.

use std::cmp::Ordering;
use std::sync::Arc;

use super::object::{DiffItem, compare};
use super::{Key, Tree};

/// The most bytes of common prefix a node keeps (two words).
pub const PMAX: usize = 16;
/// The deepest a tree can be (every inner node but the root has at least
/// two children).
const MAX_DEPTH: usize = 64;

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

enum Node<const L: usize, const I: usize> {
    Leaf(Arc<Leaf<L>>),
    Inner(Arc<Inner<L, I>>),
}

impl<const L: usize, const I: usize> Clone for Node<L, I> {
    fn clone(&self) -> Self {
        match self {
            Node::Leaf(l) => Node::Leaf(l.clone()),
            Node::Inner(n) => Node::Inner(n.clone()),
        }
    }
}

impl<const L: usize, const I: usize> Node<L, I> {
    /// Under half full (a root may be).
    fn underfull(&self) -> bool {
        match self {
            Node::Leaf(l) => l.len() < L / 2,
            Node::Inner(n) => n.len() < (I / 2).max(2),
        }
    }
}

/// A node's length and the common prefix of its keys.
#[derive(Clone)]
struct Header {
    /// Entries (leaf) or children (inner node).
    len: u16,
    /// Bytes of `prefix` in use.
    plen: u8,
    /// The common prefix, big-endian, zero padded.
    prefix: [u64; 2],
}

/// The up to eight bytes of `s` from `at`, big-endian, zero padded.
#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    if s.len() >= at + 8 {
        u64::from_be_bytes(s[at..at + 8].try_into().expect("eight bytes"))
    } else if at >= s.len() {
        0
    } else {
        let mut w = 0u64;
        for (k, &b) in s[at..].iter().enumerate() {
            w |= u64::from(b) << (56 - 8 * k);
        }
        w
    }
}

/// The length of the common prefix of `a` and `b`, at most [`PMAX`].
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take(PMAX).take_while(|(x, y)| x == y).count()
}

impl Header {
    fn new() -> Header {
        Header { len: 0, plen: 0, prefix: [0; 2] }
    }

    /// Where `key` stands against the node's prefix: `Less` (below every
    /// key of the node), `Greater` (above every key) or `Equal` (it has the
    /// prefix; then it is at least `plen` bytes long).
    #[inline(always)]
    fn check(&self, key: &[u8]) -> Ordering {
        let p = self.plen as usize;
        if p == 0 {
            return Ordering::Equal;
        }
        let k = &key[..p.min(key.len())];
        let w0 = word(k, 0);
        let o = w0.cmp(&self.prefix[0]);
        if o != Ordering::Equal {
            return o;
        }
        if p > 8 {
            let o = word(k, 8).cmp(&self.prefix[1]);
            if o != Ordering::Equal {
                return o;
            }
        }
        // Equal words: `k` is the prefix, or a shorter string padded to it.
        if key.len() < p { Ordering::Less } else { Ordering::Equal }
    }

    /// Sets the prefix to that of the sorted `keys` (first and last).
    fn set_prefix(&mut self, first: &[u8], last: &[u8]) {
        let p = common_prefix(first, last);
        self.plen = p as u8;
        let pre = &first[..p];
        self.prefix = [word(pre, 0), word(pre, 8)];
    }
}

/// The position of the first discriminator not below `d` (`discs` sorted,
/// unused slots `u64::MAX`): a count over the whole array, whose loads do
/// not depend on one another (faster than a binary search, or a summary
/// line of every eighth then one block of eight, by 3-8% at a million
/// keys).
#[inline(always)]
fn lower<const B: usize>(discs: &[u64; B], d: u64) -> usize {
    discs.iter().map(|&x| usize::from(x < d)).sum()
}

struct Leaf<const L: usize> {
    hdr: Header,
    discs: [u64; L],
    entries: [(Key, Tree); L],
}

struct Inner<const L: usize, const I: usize> {
    /// `len` counts children; there is one separator fewer.
    hdr: Header,
    /// Of the separators.
    discs: [u64; I],
    /// `keys[i]` is at most every key of `children[i + 1]` and above every
    /// key of `children[i]`.
    keys: [Key; I],
    children: [Option<Node<L, I>>; I],
}

/// Clones the entries in use only (the others are empty).
impl<const L: usize> Clone for Leaf<L> {
    fn clone(&self) -> Self {
        let n = self.len();
        Leaf {
            hdr: self.hdr.clone(),
            discs: self.discs,
            entries: std::array::from_fn(
                |i| if i < n { self.entries[i].clone() } else { (Key::default(), Tree::Null) },
            ),
        }
    }
}

/// Clones the separators and children in use only.
impl<const L: usize, const I: usize> Clone for Inner<L, I> {
    fn clone(&self) -> Self {
        let c = self.len();
        Inner {
            hdr: self.hdr.clone(),
            discs: self.discs,
            keys: std::array::from_fn(|i| if i + 1 < c { self.keys[i].clone() } else { Key::default() }),
            children: std::array::from_fn(|i| if i < c { self.children[i].clone() } else { None }),
        }
    }
}

impl<const L: usize> Leaf<L> {
    fn empty() -> Leaf<L> {
        assert!((4..=64).contains(&L), "BigMap: L must be in 4..=64");
        Leaf {
            hdr: Header::new(),
            discs: [u64::MAX; L],
            entries: std::array::from_fn(|_| (Key::default(), Tree::Null)),
        }
    }

    fn from_entries(entries: impl IntoIterator<Item = (Key, Tree)>) -> Leaf<L> {
        let mut l = Leaf::empty();
        let mut n = 0;
        for e in entries {
            l.entries[n] = e;
            n += 1;
        }
        l.hdr.len = n as u16;
        l.reprefix();
        l
    }

    fn len(&self) -> usize {
        self.hdr.len as usize
    }

    /// Recomputes the prefix and the discriminators.
    fn reprefix(&mut self) {
        let n = self.len();
        if n == 0 {
            self.hdr.plen = 0;
            self.hdr.prefix = [0; 2];
        } else {
            let (first, last) = (self.entries[0].0.as_bytes(), self.entries[n - 1].0.as_bytes());
            self.hdr.set_prefix(first, last);
        }
        let p = self.hdr.plen as usize;
        for i in 0..L {
            self.discs[i] = if i < n { word(self.entries[i].0.as_bytes(), p) } else { u64::MAX };
        }
    }

    /// After a removal at an end, the prefix may have grown.
    fn maybe_grow_prefix(&mut self) {
        let n = self.len();
        if n > 0 && (self.hdr.plen as usize) < PMAX {
            let p = common_prefix(self.entries[0].0.as_bytes(), self.entries[n - 1].0.as_bytes());
            if p > self.hdr.plen as usize {
                self.reprefix();
            }
        }
    }

    #[inline]
    fn search(&self, key: &str) -> Result<usize, usize> {
        let (n, s) = (self.len(), key);
        let key = s.as_bytes();
        match self.hdr.check(key) {
            Ordering::Less => return Err(0),
            Ordering::Greater => return Err(n),
            Ordering::Equal => {}
        }
        let d = word(key, self.hdr.plen as usize);
        let mut i = lower(&self.discs, d);
        while i < n && self.discs[i] == d {
            match compare(&self.entries[i].0, s) {
                Ordering::Less => i += 1,
                Ordering::Equal => return Ok(i),
                Ordering::Greater => return Err(i),
            }
        }
        Err(i)
    }

    /// Inserts at `i` (the leaf is not full).
    fn insert_at(&mut self, i: usize, key: Key, value: Tree) {
        let n = self.len();
        debug_assert!(n < L);
        let shares = self.hdr.check(key.as_bytes()) == Ordering::Equal;
        let d = if shares { word(key.as_bytes(), self.hdr.plen as usize) } else { 0 };
        self.entries[n] = (key, value);
        self.entries[i..=n].rotate_right(1);
        self.hdr.len += 1;
        if shares && n > 0 {
            self.discs[n] = d;
            self.discs[i..=n].rotate_right(1);
        } else {
            self.reprefix();
        }
    }

    fn remove_at(&mut self, i: usize) -> (Key, Tree) {
        let n = self.len();
        self.entries[i..n].rotate_left(1);
        let e = std::mem::replace(&mut self.entries[n - 1], (Key::default(), Tree::Null));
        self.discs[i..n].rotate_left(1);
        self.discs[n - 1] = u64::MAX;
        self.hdr.len -= 1;
        if i == 0 || i == n - 1 {
            self.maybe_grow_prefix();
        }
        e
    }

    /// Moves the entries from `at` on into a new leaf.
    fn split_off(&mut self, at: usize) -> Leaf<L> {
        let n = self.len();
        let right = Leaf::from_entries(self.entries[at..n].iter_mut().map(take_entry));
        self.hdr.len = at as u16;
        self.reprefix();
        right
    }
}

/// Moves an entry out, leaving an empty one.
fn take_entry(e: &mut (Key, Tree)) -> (Key, Tree) {
    std::mem::replace(e, (Key::default(), Tree::Null))
}

impl<const L: usize, const I: usize> Inner<L, I> {
    fn empty() -> Inner<L, I> {
        assert!((4..=64).contains(&I), "BigMap: I must be in 4..=64");
        Inner {
            hdr: Header::new(),
            discs: [u64::MAX; I],
            keys: std::array::from_fn(|_| Key::default()),
            children: std::array::from_fn(|_| None),
        }
    }

    /// A node of these children and the separators between them.
    fn from_parts(keys: impl IntoIterator<Item = Key>, children: impl IntoIterator<Item = Node<L, I>>) -> Inner<L, I> {
        let mut n = Inner::empty();
        let mut c = 0;
        for child in children {
            n.children[c] = Some(child);
            c += 1;
        }
        let mut k = 0;
        for key in keys {
            n.keys[k] = key;
            k += 1;
        }
        debug_assert_eq!(k + 1, c);
        n.hdr.len = c as u16;
        n.reprefix();
        n
    }

    fn len(&self) -> usize {
        self.hdr.len as usize
    }

    #[inline(always)]
    fn child(&self, i: usize) -> &Node<L, I> {
        match &self.children[i] {
            Some(c) => c,
            None => unreachable!("a child slot below len is filled"),
        }
    }

    #[inline(always)]
    fn child_mut(&mut self, i: usize) -> &mut Node<L, I> {
        match &mut self.children[i] {
            Some(c) => c,
            None => unreachable!("a child slot below len is filled"),
        }
    }

    fn reprefix(&mut self) {
        let s = self.len().saturating_sub(1);
        if s == 0 {
            self.hdr.plen = 0;
            self.hdr.prefix = [0; 2];
        } else {
            let (first, last) = (self.keys[0].as_bytes(), self.keys[s - 1].as_bytes());
            self.hdr.set_prefix(first, last);
        }
        let p = self.hdr.plen as usize;
        for i in 0..I {
            self.discs[i] = if i < s { word(self.keys[i].as_bytes(), p) } else { u64::MAX };
        }
    }

    /// Which child `key` belongs in: the number of separators at most it.
    #[inline]
    fn child_index(&self, key: &str) -> usize {
        let (s, ks) = (self.len() - 1, key);
        let key = ks.as_bytes();
        match self.hdr.check(key) {
            Ordering::Less => 0,
            Ordering::Greater => s,
            Ordering::Equal => {
                let d = word(key, self.hdr.plen as usize);
                let mut i = lower(&self.discs, d);
                while i < s && self.discs[i] == d && compare(&self.keys[i], ks) != Ordering::Greater {
                    i += 1;
                }
                i
            }
        }
    }

    /// Inserts separator `key` at `i` and `child` after it (not full).
    fn insert_at(&mut self, i: usize, key: Key, child: Node<L, I>) {
        let c = self.len();
        debug_assert!(c < I);
        let s = c - 1;
        let shares = s > 0 && self.hdr.check(key.as_bytes()) == Ordering::Equal;
        let d = if shares { word(key.as_bytes(), self.hdr.plen as usize) } else { 0 };
        self.keys[s] = key;
        self.keys[i..=s].rotate_right(1);
        self.children[c] = Some(child);
        self.children[i + 1..=c].rotate_right(1);
        self.hdr.len += 1;
        if shares {
            self.discs[s] = d;
            self.discs[i..=s].rotate_right(1);
        } else {
            self.reprefix();
        }
    }

    /// Removes separator `i` and the child after it.
    fn remove_at(&mut self, i: usize) -> (Key, Node<L, I>) {
        let c = self.len();
        let s = c - 1;
        self.keys[i..s].rotate_left(1);
        let key = std::mem::take(&mut self.keys[s - 1]);
        self.children[i + 1..c].rotate_left(1);
        let child = self.children[c - 1].take().expect("a child");
        self.hdr.len -= 1;
        if i == 0 || i == s - 1 {
            self.reprefix();
        } else {
            self.discs[i..s].rotate_left(1);
            self.discs[s - 1] = u64::MAX;
        }
        (key, child)
    }

    /// Splits a full node: returns the separator that goes up and the
    /// right half.
    fn split(&mut self, mid: usize) -> (Key, Inner<L, I>) {
        let c = self.len();
        let up = std::mem::take(&mut self.keys[mid - 1]);
        let keys: Vec<Key> = self.keys[mid..c - 1].iter_mut().map(std::mem::take).collect();
        let children: Vec<Node<L, I>> = self.children[mid..c].iter_mut().map(|c| c.take().expect("a child")).collect();
        self.hdr.len = mid as u16;
        self.reprefix();
        (up, Inner::from_parts(keys, children))
    }

    /// The separators and children, moved out if unique, else cloned.
    fn drain(this: Arc<Inner<L, I>>) -> (Vec<Key>, Vec<Node<L, I>>) {
        match Arc::try_unwrap(this) {
            Ok(mut n) => {
                let c = n.len();
                let keys = n.keys[..c - 1].iter_mut().map(std::mem::take).collect();
                let children = n.children[..c].iter_mut().map(|c| c.take().expect("a child")).collect();
                (keys, children)
            }
            Err(shared) => {
                let c = shared.len();
                (shared.keys[..c - 1].to_vec(), (0..c).map(|i| shared.child(i).clone()).collect())
            }
        }
    }

    /// Child `i` fell under half full: borrow from or merge with a sibling.
    fn rebalance(&mut self, i: usize) {
        let l = if i > 0 { i - 1 } else { i };
        let r = l + 1;
        if r >= self.len() {
            return;
        }
        if let [Some(Node::Leaf(a)), Some(Node::Leaf(b))] = &mut self.children[l..=r] {
            // Leaves: in place (copied first where shared).
            let (a, b) = (Arc::make_mut(a), Arc::make_mut(b));
            let (na, nb) = (a.len(), b.len());
            if na + nb <= L {
                for k in 0..nb {
                    a.entries[na + k] = take_entry(&mut b.entries[k]);
                }
                a.hdr.len = (na + nb) as u16;
                a.reprefix();
                b.hdr.len = 0;
                self.remove_at(l);
            } else {
                let h = (na + nb) / 2;
                if na < h {
                    // Move the first `h - na` entries of the right one over.
                    let m = h - na;
                    for k in 0..m {
                        a.entries[na + k] = take_entry(&mut b.entries[k]);
                    }
                    b.entries[..nb].rotate_left(m);
                } else {
                    // Move the last `na - h` entries of the left one over.
                    let m = na - h;
                    b.entries[..nb + m].rotate_right(m);
                    for k in 0..m {
                        b.entries[k] = take_entry(&mut a.entries[h + k]);
                    }
                }
                a.hdr.len = h as u16;
                b.hdr.len = (na + nb - h) as u16;
                a.reprefix();
                b.reprefix();
                let sep = b.entries[0].0.clone();
                self.set_key(l, sep);
            }
            return;
        }
        let right = self.children[r].take().expect("a child");
        let left = self.children[l].take().expect("a child");
        match (left, right) {
            (Node::Inner(a), Node::Inner(b)) => {
                let (mut keys, mut children) = Inner::drain(a);
                let (kb, cb) = Inner::drain(b);
                keys.push(self.keys[l].clone());
                keys.extend(kb);
                children.extend(cb);
                if children.len() <= I {
                    self.children[l] = Some(Node::Inner(Arc::new(Inner::from_parts(keys, children))));
                    self.children[r] = Some(Node::Leaf(Arc::new(Leaf::empty())));
                    self.remove_at(l);
                } else {
                    let h = children.len() / 2;
                    let c2 = children.split_off(h);
                    let k2 = keys.split_off(h);
                    let up = keys.pop().expect("a separator");
                    self.children[l] = Some(Node::Inner(Arc::new(Inner::from_parts(keys, children))));
                    self.children[r] = Some(Node::Inner(Arc::new(Inner::from_parts(k2, c2))));
                    self.set_key(l, up);
                }
            }
            _ => unreachable!("siblings are at the same level"),
        }
    }

    fn set_key(&mut self, i: usize, key: Key) {
        self.keys[i] = key;
        self.reprefix();
    }
}

/// What an insert into a subtree returns: the value replaced, and a
/// separator and new right sibling if the subtree split.
type Split<const L: usize, const I: usize> = Option<(Key, Node<L, I>)>;

fn insert_rec<const L: usize, const I: usize>(
    node: &mut Node<L, I>,
    key: Key,
    value: Tree,
) -> (Option<Tree>, Split<L, I>) {
    match node {
        Node::Leaf(leaf) => {
            let leaf = Arc::make_mut(leaf);
            match leaf.search(&key) {
                Ok(i) => (Some(std::mem::replace(&mut leaf.entries[i].1, value)), None),
                Err(i) => {
                    if leaf.len() < L {
                        leaf.insert_at(i, key, value);
                        return (None, None);
                    }
                    let mid = L / 2;
                    let mut right = leaf.split_off(mid);
                    if i <= mid {
                        leaf.insert_at(i, key, value);
                    } else {
                        right.insert_at(i - mid, key, value);
                    }
                    let sep = right.entries[0].0.clone();
                    (None, Some((sep, Node::Leaf(Arc::new(right)))))
                }
            }
        }
        Node::Inner(inner) => {
            let inner = Arc::make_mut(inner);
            let i = inner.child_index(&key);
            let (old, split) = insert_rec(inner.child_mut(i), key, value);
            let Some((sep, child)) = split else { return (old, None) };
            if inner.len() < I {
                inner.insert_at(i, sep, child);
                return (old, None);
            }
            let mid = I / 2;
            let (up, mut right) = inner.split(mid);
            if i < mid {
                inner.insert_at(i, sep, child);
            } else {
                right.insert_at(i - mid, sep, child);
            }
            (old, Some((up, Node::Inner(Arc::new(right)))))
        }
    }
}

/// Removes the entry at `slot` of the leaf that `path` leads to.
fn remove_rec<const L: usize, const I: usize>(node: &mut Node<L, I>, path: &[u8], slot: usize) -> Tree {
    match node {
        Node::Leaf(leaf) => Arc::make_mut(leaf).remove_at(slot).1,
        Node::Inner(inner) => {
            let inner = Arc::make_mut(inner);
            let i = path[0] as usize;
            let old = remove_rec(inner.child_mut(i), &path[1..], slot);
            if inner.child(i).underfull() {
                inner.rebalance(i);
            }
            old
        }
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
        let len = entries.len();
        if len == 0 {
            return BigMap::new();
        }
        // Leaves: as few as can hold them, sizes as even as can be (every
        // one full when `B` divides the count).
        let mut level: Vec<(Key, Node<L, I>)> = Vec::with_capacity(len / L + 1);
        let mut it = entries.into_iter();
        for size in even_sizes(len, L) {
            let leaf = Leaf::from_entries(it.by_ref().take(size));
            level.push((leaf.entries[0].0.clone(), Node::Leaf(Arc::new(leaf))));
        }
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

fn same<const L: usize, const I: usize>(a: &Node<L, I>, b: &Node<L, I>) -> bool {
    match (a, b) {
        (Node::Leaf(x), Node::Leaf(y)) => Arc::ptr_eq(x, y),
        (Node::Inner(x), Node::Inner(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

/// The diff of two nodes at the same level. Inner nodes with the same
/// separators (the usual case: an edit copied the path and split or merged
/// nothing) are paired child by child; otherwise, level by level.
fn diff_nodes<'a, const L: usize, const I: usize>(a: &'a Node<L, I>, b: &'a Node<L, I>, out: &mut Vec<DiffItem<'a>>) {
    if same(a, b) {
        return;
    }
    match (a, b) {
        (Node::Leaf(x), Node::Leaf(y)) => merge_entries(entries_of(x), entries_of(y), out),
        (Node::Inner(x), Node::Inner(y)) if x.len() == y.len() && x.keys[..x.len() - 1] == y.keys[..y.len() - 1] => {
            for i in 0..x.len() {
                diff_nodes(x.child(i), y.child(i), out);
            }
        }
        _ => {
            let h = height(a);
            diff_levels(vec![a], h, vec![b], h, out);
        }
    }
}

fn height<const L: usize, const I: usize>(mut node: &Node<L, I>) -> usize {
    let mut h = 1;
    while let Node::Inner(n) = node {
        node = n.child(0);
        h += 1;
    }
    h
}

fn entries_of<const L: usize>(l: &Leaf<L>) -> impl Iterator<Item = (&Key, &Tree)> {
    l.entries[..l.len()].iter().map(|(k, t)| (k, t))
}

/// The diff of two lists of nodes (`a` of height `ha`, `b` of `hb`): down
/// level by level, dropping the nodes both hold, merging entries at the
/// leaves.
fn diff_levels<'a, const L: usize, const I: usize>(
    mut a: Vec<&'a Node<L, I>>,
    mut ha: usize,
    mut b: Vec<&'a Node<L, I>>,
    mut hb: usize,
    out: &mut Vec<DiffItem<'a>>,
) {
    loop {
        // An empty side has no height of its own.
        if a.is_empty() {
            ha = hb;
        }
        if b.is_empty() {
            hb = ha;
        }
        if ha == hb {
            drop_shared(&mut a, &mut b);
        }
        if a.is_empty() && b.is_empty() {
            return;
        }
        if ha > hb {
            a = expand(&a);
            ha -= 1;
        } else if hb > ha {
            b = expand(&b);
            hb -= 1;
        } else if ha <= 1 {
            let leaves = |nodes: Vec<&'a Node<L, I>>| {
                nodes
                    .into_iter()
                    .flat_map(|n| -> &'a [(Key, Tree)] {
                        match n {
                            Node::Leaf(l) => &l.entries[..l.len()],
                            Node::Inner(_) => &[],
                        }
                    })
                    .map(|(k, t)| (k, t))
            };
            merge_entries(leaves(a), leaves(b), out);
            return;
        } else {
            a = expand(&a);
            b = expand(&b);
            ha -= 1;
            hb -= 1;
        }
    }
}

/// Removes from both lists (of nodes at one level, in key order) the nodes
/// that both hold.
fn drop_shared<const L: usize, const I: usize>(a: &mut Vec<&Node<L, I>>, b: &mut Vec<&Node<L, I>>) {
    let ptr = |n: &Node<L, I>| match n {
        Node::Leaf(l) => Arc::as_ptr(l) as usize,
        Node::Inner(i) => Arc::as_ptr(i) as usize,
    };
    let in_a: std::collections::HashSet<usize> = a.iter().map(|n| ptr(n)).collect();
    let shared: std::collections::HashSet<usize> = b.iter().map(|n| ptr(n)).filter(|p| in_a.contains(p)).collect();
    if !shared.is_empty() {
        a.retain(|n| !shared.contains(&ptr(n)));
        b.retain(|n| !shared.contains(&ptr(n)));
    }
}

/// The children of these inner nodes, in order.
fn expand<'a, const L: usize, const I: usize>(nodes: &[&'a Node<L, I>]) -> Vec<&'a Node<L, I>> {
    let mut out = Vec::new();
    for n in nodes {
        if let Node::Inner(n) = n {
            out.extend((0..n.len()).map(|i| n.child(i)));
        }
    }
    out
}

/// The differences between two runs of entries in key order.
fn merge_entries<'a>(
    a: impl Iterator<Item = (&'a Key, &'a Tree)>,
    b: impl Iterator<Item = (&'a Key, &'a Tree)>,
    out: &mut Vec<DiffItem<'a>>,
) {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    loop {
        let o = match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some(x), Some(y)) => compare(x.0, y.0),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
        };
        match o {
            Ordering::Less => {
                let (k, v) = a.next().expect("peeked");
                out.push(DiffItem::Remove(k, v));
            }
            Ordering::Greater => {
                let (k, v) = b.next().expect("peeked");
                out.push(DiffItem::Add(k, v));
            }
            Ordering::Equal => {
                let (old, new) = (a.next().expect("peeked"), b.next().expect("peeked"));
                if !old.1.ptr_eq(new.1) {
                    out.push(DiffItem::Update { old, new });
                }
            }
        }
    }
}

fn check_header(hdr: &Header, keys: &[&Key], discs: &[u64]) {
    let p = hdr.plen as usize;
    for k in keys {
        assert_eq!(hdr.check(k.as_bytes()), Ordering::Equal, "prefix of {k:?}");
    }
    let b = discs.len();
    for i in 0..b {
        let want = if i < keys.len() { word(keys[i].as_bytes(), p) } else { u64::MAX };
        assert_eq!(discs[i], want, "disc {i}");
    }
}

fn check_node<const L: usize, const I: usize>(
    node: &Node<L, I>,
    lo: Option<&Key>,
    hi: Option<&Key>,
    root: bool,
    depth: usize,
    leaf_depth: &mut Option<usize>,
) -> usize {
    match node {
        Node::Leaf(l) => {
            match leaf_depth {
                Some(d) => assert_eq!(*d, depth, "leaves at one depth"),
                None => *leaf_depth = Some(depth),
            }
            let n = l.len();
            assert!(n >= if root { 1 } else { L / 2 } && n <= L, "leaf len {n}");
            let keys: Vec<&Key> = l.entries[..n].iter().map(|e| &e.0).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "leaf sorted");
            if let Some(lo) = lo {
                assert!(keys[0] >= lo, "leaf lower bound");
            }
            if let Some(hi) = hi {
                assert!(keys[n - 1] < hi, "leaf upper bound");
            }
            check_header(&l.hdr, &keys, &l.discs);
            for e in &l.entries[n..] {
                assert!(e.0.is_empty() && e.1.is_null(), "unused slot");
            }
            n
        }
        Node::Inner(inner) => {
            let c = inner.len();
            assert!(c >= if root { 2 } else { (I / 2).max(2) } && c <= I, "inner len {c}");
            let keys: Vec<&Key> = inner.keys[..c - 1].iter().collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "separators sorted");
            check_header(&inner.hdr, &keys, &inner.discs);
            assert!(inner.children[c..].iter().all(Option::is_none), "unused child slot");
            let mut total = 0;
            for i in 0..c {
                let clo = if i == 0 { lo } else { Some(keys[i - 1]) };
                let chi = if i == c - 1 { hi } else { Some(keys[i]) };
                total += check_node(inner.child(i), clo, chi, false, depth + 1, leaf_depth);
            }
            total
        }
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

#[cfg(test)]
#[path = "bigmap_tests.rs"]
mod tests;
