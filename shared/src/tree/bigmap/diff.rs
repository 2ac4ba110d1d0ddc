//! [`super::BigMap::diff`]: the entries two versions differ in, skipping
//! the nodes they share (see the module doc of [`super`]).

use std::cmp::Ordering;
use std::sync::Arc;

use crate::tree::object::{DiffItem, compare};
use crate::tree::{Key, Tree};

use super::node::*;

pub(super) fn same<const L: usize, const I: usize>(a: &Node<L, I>, b: &Node<L, I>) -> bool {
    match (a, b) {
        (Node::Leaf(x), Node::Leaf(y)) => Arc::ptr_eq(x, y),
        (Node::Inner(x), Node::Inner(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

/// The diff of two nodes at the same level. Inner nodes with the same
/// separators (the usual case: an edit copied the path and split or merged
/// nothing) are paired child by child; otherwise, level by level.
pub(super) fn diff_nodes<'a, const L: usize, const I: usize>(
    a: &'a Node<L, I>,
    b: &'a Node<L, I>,
    out: &mut Vec<DiffItem<'a>>,
) {
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

pub(super) fn height<const L: usize, const I: usize>(mut node: &Node<L, I>) -> usize {
    let mut h = 1;
    while let Node::Inner(n) = node {
        node = n.child(0);
        h += 1;
    }
    h
}

pub(super) fn entries_of<const L: usize>(l: &Leaf<L>) -> impl Iterator<Item = (&Key, &Tree)> {
    l.entries[..l.len()].iter().map(|(k, t)| (k, t))
}

/// The diff of two lists of nodes (`a` of height `ha`, `b` of `hb`): down
/// level by level, dropping the nodes both hold, merging entries at the
/// leaves.
pub(super) fn diff_levels<'a, const L: usize, const I: usize>(
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
pub(super) fn drop_shared<const L: usize, const I: usize>(a: &mut Vec<&Node<L, I>>, b: &mut Vec<&Node<L, I>>) {
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
pub(super) fn expand<'a, const L: usize, const I: usize>(nodes: &[&'a Node<L, I>]) -> Vec<&'a Node<L, I>> {
    let mut out = Vec::new();
    for n in nodes {
        if let Node::Inner(n) = n {
            out.extend((0..n.len()).map(|i| n.child(i)));
        }
    }
    out
}

/// The differences between two runs of entries in key order.
pub(super) fn merge_entries<'a>(
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
