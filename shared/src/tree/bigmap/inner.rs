//! The inner nodes of a [`super::BigMap`] and the edits that go down
//! through them: inserts that split full nodes, removals that borrow from
//! or merge with a sibling.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::tree::object::compare;
use crate::tree::{Key, Tree};

use super::node::*;

impl<const L: usize, const I: usize> Inner<L, I> {
    pub(super) fn empty() -> Inner<L, I> {
        assert!((4..=64).contains(&I), "BigMap: I must be in 4..=64");
        Inner {
            hdr: Header::new(),
            discs: [u64::MAX; I],
            keys: std::array::from_fn(|_| Key::default()),
            children: std::array::from_fn(|_| None),
        }
    }

    /// A node of these children and the separators between them.
    pub(super) fn from_parts(
        keys: impl IntoIterator<Item = Key>,
        children: impl IntoIterator<Item = Node<L, I>>,
    ) -> Inner<L, I> {
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

    pub(super) fn len(&self) -> usize {
        self.hdr.len as usize
    }

    #[inline(always)]
    pub(super) fn child(&self, i: usize) -> &Node<L, I> {
        match &self.children[i] {
            Some(c) => c,
            None => unreachable!("a child slot below len is filled"),
        }
    }

    #[inline(always)]
    pub(super) fn child_mut(&mut self, i: usize) -> &mut Node<L, I> {
        match &mut self.children[i] {
            Some(c) => c,
            None => unreachable!("a child slot below len is filled"),
        }
    }

    /// Loads one child pointer from each cache line of `children`, so
    /// that the memory fetches them while the search reads the
    /// discriminators, rather than the one it picks after: on a map too
    /// big for the cache, one wait for memory per level instead of two.
    #[inline(always)]
    fn touch_children(&self) {
        const PER_LINE: usize = 64 / std::mem::size_of::<Option<Node<4, 4>>>();
        let mut seen = 0usize;
        for c in self.children[..self.len()].iter().step_by(PER_LINE) {
            seen ^= c.as_ref().map_or(0, Node::addr);
        }
        std::hint::black_box(seen);
    }

    pub(super) fn reprefix(&mut self) {
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
    pub(super) fn child_index(&self, key: &str) -> usize {
        self.touch_children();
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
    pub(super) fn insert_at(&mut self, i: usize, key: Key, child: Node<L, I>) {
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
    pub(super) fn remove_at(&mut self, i: usize) -> (Key, Node<L, I>) {
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
    pub(super) fn split(&mut self, mid: usize) -> (Key, Inner<L, I>) {
        let c = self.len();
        let up = std::mem::take(&mut self.keys[mid - 1]);
        let keys: Vec<Key> = self.keys[mid..c - 1].iter_mut().map(std::mem::take).collect();
        let children: Vec<Node<L, I>> = self.children[mid..c].iter_mut().map(|c| c.take().expect("a child")).collect();
        self.hdr.len = mid as u16;
        self.reprefix();
        (up, Inner::from_parts(keys, children))
    }

    /// The separators and children, moved out if unique, else cloned.
    pub(super) fn drain(this: Arc<Inner<L, I>>) -> (Vec<Key>, Vec<Node<L, I>>) {
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
    pub(super) fn rebalance(&mut self, i: usize) {
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

    pub(super) fn set_key(&mut self, i: usize, key: Key) {
        self.keys[i] = key;
        self.reprefix();
    }
}

/// What an insert into a subtree returns: the value replaced, and a
/// separator and new right sibling if the subtree split.
pub(super) type Split<const L: usize, const I: usize> = Option<(Key, Node<L, I>)>;

pub(super) fn insert_rec<const L: usize, const I: usize>(
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
pub(super) fn remove_rec<const L: usize, const I: usize>(node: &mut Node<L, I>, path: &[u8], slot: usize) -> Tree {
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
