//! The nodes of a [`super::BigMap`]: their headers (length and common
//! prefix), the discriminators searched apart from the keys, leaves and
//! their edits, and the checks of their invariants.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::tree::object::compare;
use crate::tree::{Key, Tree};

use super::PMAX;

pub(super) enum Node<const L: usize, const I: usize> {
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
    /// The address of the node (for [`Inner::touch_children`]).
    #[inline(always)]
    pub(super) fn addr(&self) -> usize {
        match self {
            Node::Leaf(l) => Arc::as_ptr(l).addr(),
            Node::Inner(n) => Arc::as_ptr(n).addr(),
        }
    }

    /// Asks the memory for the parts of the node a search reads first (its
    /// header and discriminators, and an inner node's children), without
    /// waiting for them.
    #[inline(always)]
    pub(super) fn prefetch(&self) {
        use crate::read_ahead::{prefetch, prefetch_all};
        match self {
            Node::Leaf(l) => {
                prefetch(&l.hdr);
                prefetch_all(&l.discs);
            }
            Node::Inner(n) => {
                prefetch(&n.hdr);
                prefetch_all(&n.discs);
                prefetch_all(&n.children);
            }
        }
    }

    /// Under half full (a root may be).
    pub(super) fn underfull(&self) -> bool {
        match self {
            Node::Leaf(l) => l.len() < L / 2,
            Node::Inner(n) => n.len() < (I / 2).max(2),
        }
    }
}

/// A node's length and the common prefix of its keys.
#[derive(Clone)]
pub(super) struct Header {
    /// Entries (leaf) or children (inner node).
    pub(super) len: u16,
    /// Bytes of `prefix` in use.
    pub(super) plen: u8,
    /// The common prefix, big-endian, zero padded.
    pub(super) prefix: [u64; 2],
}

/// The up to eight bytes of `s` from `at`, big-endian, zero padded.
#[inline(always)]
pub(super) fn word(s: &[u8], at: usize) -> u64 {
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
pub(super) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take(PMAX).take_while(|(x, y)| x == y).count()
}

impl Header {
    pub(super) fn new() -> Header {
        Header { len: 0, plen: 0, prefix: [0; 2] }
    }

    /// Where `key` stands against the node's prefix: `Less` (below every
    /// key of the node), `Greater` (above every key) or `Equal` (it has the
    /// prefix; then it is at least `plen` bytes long).
    #[inline(always)]
    pub(super) fn check(&self, key: &[u8]) -> Ordering {
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
    pub(super) fn set_prefix(&mut self, first: &[u8], last: &[u8]) {
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
pub(super) fn lower<const B: usize>(discs: &[u64; B], d: u64) -> usize {
    discs.iter().map(|&x| usize::from(x < d)).sum()
}

pub(super) struct Leaf<const L: usize> {
    pub(super) hdr: Header,
    pub(super) discs: [u64; L],
    pub(super) entries: [(Key, Tree); L],
}

pub(super) struct Inner<const L: usize, const I: usize> {
    /// `len` counts children; there is one separator fewer.
    pub(super) hdr: Header,
    /// Of the separators.
    pub(super) discs: [u64; I],
    /// `keys[i]` is at most every key of `children[i + 1]` and above every
    /// key of `children[i]`.
    pub(super) keys: [Key; I],
    pub(super) children: [Option<Node<L, I>>; I],
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
    pub(super) fn empty() -> Leaf<L> {
        assert!((4..=64).contains(&L), "BigMap: L must be in 4..=64");
        Leaf {
            hdr: Header::new(),
            discs: [u64::MAX; L],
            entries: std::array::from_fn(|_| (Key::default(), Tree::Null)),
        }
    }

    pub(super) fn from_entries(entries: impl IntoIterator<Item = (Key, Tree)>) -> Leaf<L> {
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

    pub(super) fn len(&self) -> usize {
        self.hdr.len as usize
    }

    /// Recomputes the prefix and the discriminators.
    pub(super) fn reprefix(&mut self) {
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
    pub(super) fn maybe_grow_prefix(&mut self) {
        let n = self.len();
        if n > 0 && (self.hdr.plen as usize) < PMAX {
            let p = common_prefix(self.entries[0].0.as_bytes(), self.entries[n - 1].0.as_bytes());
            if p > self.hdr.plen as usize {
                self.reprefix();
            }
        }
    }

    /// The slot whose key [`Leaf::search`] compares first, from the
    /// prefix and discriminators alone; `None` if the key cannot be here.
    #[inline]
    pub(super) fn first_slot(&self, key: &str) -> Option<usize> {
        let key = key.as_bytes();
        if self.hdr.check(key) != Ordering::Equal {
            return None;
        }
        let i = lower(&self.discs, word(key, self.hdr.plen as usize));
        (i < self.len()).then_some(i)
    }

    #[inline]
    pub(super) fn search(&self, key: &str) -> Result<usize, usize> {
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
    pub(super) fn insert_at(&mut self, i: usize, key: Key, value: Tree) {
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

    pub(super) fn remove_at(&mut self, i: usize) -> (Key, Tree) {
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
    pub(super) fn split_off(&mut self, at: usize) -> Leaf<L> {
        let n = self.len();
        let right = Leaf::from_entries(self.entries[at..n].iter_mut().map(take_entry));
        self.hdr.len = at as u16;
        self.reprefix();
        right
    }
}

/// Moves an entry out, leaving an empty one.
pub(super) fn take_entry(e: &mut (Key, Tree)) -> (Key, Tree) {
    std::mem::replace(e, (Key::default(), Tree::Null))
}

pub(super) fn check_header(hdr: &Header, keys: &[&Key], discs: &[u64]) {
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

pub(super) fn check_node<const L: usize, const I: usize>(
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
