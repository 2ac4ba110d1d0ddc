//! How deep and how large a state tree may grow, and the walks that check
//! it without recursing over the tree.
//!
//! A tree is persistent, so one action can make it much larger than the
//! action itself: an RFC 6902 `copy` of the root into the root doubles its
//! size (as JSON text) at the cost of one node, and a `copy` of the root
//! into a child nests it one level deeper. Every walk over a tree —
//! serialising, diffing, comparing, dropping — recurses over its depth and
//! takes time in its size as JSON text, so both are bounded wherever trees
//! are built from untrusted input: [`crate::patch::apply`] checks each
//! operation, and the data view's engine checks every state a reducer (or
//! `@@nodb/set_state`) returns with [`check_change`], in time proportional
//! to the change.
//!
//! Sizes are *estimates of the compact JSON text*: strings and keys count
//! their UTF-8 bytes plus quotes (escapes are not counted), integers their
//! digits, other numbers 24 bytes, and each element one byte of separator.
//! The estimate is additive over subtrees, so a state's size can be kept up
//! to date from the changes alone ([`check_change`]).

use super::Tree;

/// The deepest a state tree may nest, counted in arrays and objects: `1`
/// is 0 deep, `[]` 1, `{"a": [1]}` 2. It leaves room below `serde_json`'s
/// recursion limit of 128 for every message that wraps a state or a piece
/// of one (a snapshot file, a socket's snapshot and patch messages, a
/// `@@nodb/set_state` inside a committed action), and keeps every
/// recursive walk over a tree far from the end of a thread's stack.
pub const MAX_DEPTH: usize = 64;

/// The largest a state tree may be, as an estimate of its compact JSON
/// text: 256 MiB. About four million products of the warehouse demo; far
/// more than a browser wants in one snapshot, and small enough that
/// serialising it (a snapshot, a new client) cannot exhaust memory.
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The bounds on a tree: see [`MAX_DEPTH`] and [`MAX_BYTES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most arrays and objects nested in one another.
    pub max_depth: usize,
    /// The largest estimated size of its JSON text, in bytes.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: MAX_DEPTH, max_bytes: MAX_BYTES }
    }
}

impl Limits {
    /// No bounds at all (for trees that are trusted, such as an app's
    /// initial states).
    pub const NONE: Limits = Limits { max_depth: usize::MAX, max_bytes: u64::MAX };
}

/// A tree that would break its [`Limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Arrays and objects nested deeper than the limit.
    #[error("the state would nest more than {limit} arrays and objects deep")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Over the size limit.
    #[error("the state would be over {limit} bytes of JSON")]
    TooLarge {
        /// The limit, in bytes of JSON text (estimated).
        limit: u64,
    },
}

/// How deep and how large a tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measure {
    /// Arrays and objects nested, counting the tree's own root.
    pub depth: usize,
    /// The estimated size of its compact JSON text.
    pub bytes: u64,
}

/// The bytes a node adds by itself (its children not included).
fn own_bytes(t: &Tree) -> u64 {
    match t {
        Tree::Null | Tree::Bool(true) => 4,
        Tree::Bool(false) => 5,
        Tree::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => u64::from(i < 0) + u64::from(i.unsigned_abs().checked_ilog10().unwrap_or(0)) + 1,
            (None, Some(u)) => u64::from(u.checked_ilog10().unwrap_or(0)) + 1,
            _ => 24,
        },
        Tree::String(s) => s.len() as u64 + 2,
        Tree::Array(_) | Tree::Object(_) => 2,
    }
}

/// The separator of an object entry with key `k`: quotes, colon, comma.
pub(crate) fn entry_bytes(k: &str) -> u64 {
    k.len() as u64 + 4
}

/// What is left to do in [`measure_below`]'s walk.
enum Work<'t> {
    /// Measure this node, below `above` containers; `extra` is what its
    /// place adds (an element's separator, an entry's key).
    Visit(&'t Tree, usize, u64),
    /// Every child of this container is measured: close its frame.
    Close(&'t Tree, u64),
}

/// What a container measured so far: the bytes below it, the depth of its
/// deepest child, and its nodes (as a tree, shared ones counted each time).
#[derive(Clone, Copy)]
struct Frame {
    bytes: u64,
    depth: usize,
    nodes: u64,
}

/// Containers of fewer nodes than this are not remembered: walking them
/// again costs little, and most containers of a state are small, so the
/// walk of a state without shared subtrees keeps its memory of them empty.
const REMEMBER_FROM: u64 = 64;

/// Where a container is in memory, to find it again when it is shared (a
/// copy of a subtree is the same node): the `Arc` of an array, the first
/// key of an object (confirmed with [`Tree::ptr_eq`], as two objects may
/// share their first node and differ after it).
fn address(t: &Tree) -> Option<(usize, usize)> {
    match t {
        Tree::Array(a) => Some((std::sync::Arc::as_ptr(a) as usize, usize::MAX)),
        Tree::Object(o) => o.iter().next().map(|(k, _)| (std::ptr::from_ref(k) as usize, o.len())),
        _ => None,
    }
}

/// A hasher for [`address`]es: they are already well spread.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|b| self.write_u64(u64::from(*b)));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// The big containers already measured in one walk, by [`address`].
type Seen<'t> =
    std::collections::HashMap<(usize, usize), (&'t Tree, Frame), std::hash::BuildHasherDefault<AddressHasher>>;

/// Trees of up to this many nodes (and [`SMALL_DEPTH`] levels) are
/// measured by a plain recursive walk: most values a reducer writes are
/// small, and the full walk's memory of shared nodes costs more than they.
const SMALL_TREE: u32 = 64;

/// See [`SMALL_TREE`].
const SMALL_DEPTH: usize = 8;

/// [`measure_below`] for a small tree: `None` once it has seen more than
/// `fuel` nodes or [`SMALL_DEPTH`] levels (the caller walks it in full).
fn measure_small(
    t: &Tree,
    above: usize,
    max_depth: usize,
    fuel: &mut u32,
    level: usize,
) -> Option<Result<Measure, LimitError>> {
    *fuel = fuel.checked_sub(1)?;
    let mut m = Measure { depth: 0, bytes: own_bytes(t) };
    if !matches!(t, Tree::Object(_) | Tree::Array(_)) {
        return Some(Ok(m));
    }
    if above >= max_depth {
        return Some(Err(LimitError::TooDeep { limit: max_depth }));
    }
    if level >= SMALL_DEPTH {
        return None;
    }
    let mut child = |extra: u64, c: &Tree| -> Option<Result<(), LimitError>> {
        match measure_small(c, above + 1, max_depth, fuel, level + 1)? {
            Ok(c) => {
                m.bytes = m.bytes.saturating_add(extra).saturating_add(c.bytes);
                m.depth = m.depth.max(c.depth);
                Some(Ok(()))
            }
            Err(e) => Some(Err(e)),
        }
    };
    match t {
        Tree::Object(o) => {
            for (k, v) in o {
                if let Err(e) = child(entry_bytes(k), v)? {
                    return Some(Err(e));
                }
            }
        }
        Tree::Array(a) => {
            for v in a.iter() {
                if let Err(e) = child(1, v)? {
                    return Some(Err(e));
                }
            }
        }
        _ => {}
    }
    m.depth += 1;
    Some(Ok(m))
}

/// Measures `tree`, which sits below `above` arrays and objects, stopping
/// as soon as it would nest deeper than `max_depth` in all or pass
/// `budget` bytes. Iterative, so any depth is safe; a big container that
/// occurs several times (shared, as after a copy) is walked once, so the
/// walk costs time in the nodes in memory, not in the size of the JSON
/// text.
fn measure_below(tree: &Tree, above: usize, max_depth: usize, budget: u64) -> Result<Measure, LimitError> {
    let mut fuel = SMALL_TREE;
    if let Some(measured) = measure_small(tree, above, max_depth, &mut fuel, 0) {
        let m = measured?;
        if m.bytes > budget {
            return Err(LimitError::TooLarge { limit: budget });
        }
        return Ok(m);
    }
    measure_walk(tree, above, max_depth, budget)
}

/// [`measure_below`]'s full walk, for trees of any size and depth.
fn measure_walk(tree: &Tree, above: usize, max_depth: usize, budget: u64) -> Result<Measure, LimitError> {
    let too_deep = LimitError::TooDeep { limit: max_depth };
    let too_large = LimitError::TooLarge { limit: budget };
    let mut seen = Seen::default();
    let mut work = vec![Work::Visit(tree, above, 0)];
    // The frame of every container being measured, under the root's.
    let mut frames = vec![Frame { bytes: 0, depth: 0, nodes: 0 }];
    // Every byte found so far, counted once.
    let mut total = 0u64;
    while let Some(step) = work.pop() {
        // What the step adds to its parent's frame.
        let done = match step {
            Work::Visit(t, d, extra) => {
                if !matches!(t, Tree::Object(_) | Tree::Array(_)) {
                    Frame { bytes: extra + own_bytes(t), depth: 0, nodes: 1 }
                } else {
                    if d >= max_depth {
                        return Err(too_deep);
                    }
                    let known = if seen.is_empty() {
                        None
                    } else {
                        address(t).and_then(|at| seen.get(&at)).filter(|(node, _)| node.ptr_eq(t)).map(|(_, f)| *f)
                    };
                    if let Some(f) = known {
                        if d + f.depth > max_depth {
                            return Err(too_deep);
                        }
                        Frame { bytes: extra + f.bytes, ..f }
                    } else {
                        work.push(Work::Close(t, extra));
                        match t {
                            Tree::Object(o) => {
                                work.extend(o.iter().map(|(k, v)| Work::Visit(v, d + 1, entry_bytes(k))));
                            }
                            Tree::Array(a) => work.extend(a.iter().map(|v| Work::Visit(v, d + 1, 1))),
                            _ => {}
                        }
                        let bytes = own_bytes(t);
                        total = total.saturating_add(extra).saturating_add(bytes);
                        if total > budget {
                            return Err(too_large);
                        }
                        frames.push(Frame { bytes, depth: 0, nodes: 1 });
                        continue;
                    }
                }
            }
            Work::Close(t, extra) => {
                let Some(frame) = frames.pop() else { break };
                let f = Frame { depth: frame.depth + 1, ..frame };
                if f.nodes >= REMEMBER_FROM
                    && let Some(at) = address(t)
                {
                    seen.insert(at, (t, f));
                }
                // Its bytes were counted in `total` on the way down.
                let Some(parent) = frames.last_mut() else { break };
                parent.bytes = parent.bytes.saturating_add(extra).saturating_add(f.bytes);
                parent.depth = parent.depth.max(f.depth);
                parent.nodes = parent.nodes.saturating_add(f.nodes);
                continue;
            }
        };
        total = total.saturating_add(done.bytes);
        if total > budget {
            return Err(too_large);
        }
        let Some(parent) = frames.last_mut() else { break };
        parent.bytes = parent.bytes.saturating_add(done.bytes);
        parent.depth = parent.depth.max(done.depth);
        parent.nodes = parent.nodes.saturating_add(done.nodes);
    }
    let root = frames.pop().unwrap_or(Frame { bytes: 0, depth: 0, nodes: 0 });
    Ok(Measure { depth: root.depth, bytes: root.bytes })
}

/// Measures `tree` within `limits`, in time proportional to its size as
/// JSON text (so at most to `limits.max_bytes`, however much of it is
/// shared).
///
/// # Errors
/// [`LimitError`] as soon as the tree is found to break a limit.
pub fn measure(tree: &Tree, limits: &Limits) -> Result<Measure, LimitError> {
    measure_below(tree, 0, limits.max_depth, limits.max_bytes)
}

/// Measures `tree` as if it were placed below `above` arrays and objects:
/// its own depth, checked so that `above` plus it stays within
/// `limits.max_depth`.
///
/// # Errors
/// As for [`measure`].
pub fn measure_at(tree: &Tree, above: usize, limits: &Limits) -> Result<Measure, LimitError> {
    if !matches!(tree, Tree::Object(_) | Tree::Array(_)) {
        // A scalar has no depth of its own (and the walk's memory costs
        // more than measuring it).
        let bytes = own_bytes(tree);
        if bytes > limits.max_bytes {
            return Err(LimitError::TooLarge { limit: limits.max_bytes });
        }
        return Ok(Measure { depth: 0, bytes });
    }
    measure_below(tree, above, limits.max_depth, limits.max_bytes)
}

/// The estimated size of `tree`'s JSON text, with no limit.
pub fn bytes_of(tree: &Tree) -> u64 {
    measure_below(tree, 0, usize::MAX, u64::MAX).map_or(u64::MAX, |m| m.bytes)
}

/// Checks that `new`, a state made from `old` (which measures `old_bytes`),
/// stays within `limits`, and returns its size. Like [`crate::diff::diff`]
/// it skips every subtree the two share, so it costs time in the change:
/// what was added is measured (up to the limits), what was removed is
/// counted. `old` is assumed to be within the depth limit; `new` then is
/// if everything added is.
///
/// # Errors
/// [`LimitError`] if `new` breaks a limit.
pub fn check_change(old: &Tree, new: &Tree, old_bytes: u64, limits: &Limits) -> Result<u64, LimitError> {
    let mut change = Change { limits, added: 0, removed: 0 };
    change.walk(old, new, 0)?;
    let bytes = old_bytes.saturating_sub(change.removed).saturating_add(change.added);
    if bytes > limits.max_bytes {
        return Err(LimitError::TooLarge { limit: limits.max_bytes });
    }
    Ok(bytes)
}

/// The bytes added and the bytes removed when `new` replaces `old` below
/// `above` arrays and objects, checking what is added against `limits`
/// (alone: the rest of the tree is the caller's to count). Costs time in
/// the change, as [`check_change`] does.
///
/// # Errors
/// [`LimitError`] if what is added nests too deep or is over the size
/// limit by itself.
pub fn change_at(old: &Tree, new: &Tree, above: usize, limits: &Limits) -> Result<(u64, u64), LimitError> {
    let mut change = Change { limits, added: 0, removed: 0 };
    change.walk(old, new, above)?;
    Ok((change.added, change.removed))
}

/// Up to how many element pairs an array change is searched for elements
/// that only moved.
const SHIFT_SEARCH: usize = 4096;

/// The elements of `old` and of `new` that are not the same node in the
/// other (each node matched once), in order.
fn unmoved<'t>(old: &[&'t Tree], new: &[&'t Tree]) -> (Vec<&'t Tree>, Vec<&'t Tree>) {
    let mut matched = vec![false; new.len()];
    let mut old_left = Vec::new();
    for ov in old {
        match (0..new.len()).find(|&j| !matched[j] && ov.ptr_eq(new[j])) {
            Some(j) => matched[j] = true,
            None => old_left.push(*ov),
        }
    }
    let new_left = new.iter().zip(&matched).filter(|(_, m)| !**m).map(|(nv, _)| *nv).collect();
    (old_left, new_left)
}

/// The bytes added and removed so far by one change.
struct Change<'l> {
    limits: &'l Limits,
    added: u64,
    removed: u64,
}

/// Objects with at most this many entries between them are compared by
/// walking both in key order (as [`crate::diff`] does).
const SMALL_OBJECT: usize = 64;

impl Change<'_> {
    /// `new` replaces `old` below `above` arrays and objects.
    fn walk(&mut self, old: &Tree, new: &Tree, above: usize) -> Result<(), LimitError> {
        if old.ptr_eq(new) {
            return Ok(());
        }
        match (old, new) {
            (Tree::Object(a), Tree::Object(b)) => {
                use crate::tree::object::DiffItem;
                if a.len() + b.len() <= SMALL_OBJECT {
                    let (mut ia, mut ib) = (a.iter().peekable(), b.iter().peekable());
                    loop {
                        match (ia.peek(), ib.peek()) {
                            (None, None) => return Ok(()),
                            (Some((ka, _)), Some((kb, _))) if ka == kb => {
                                let (Some((_, ov)), Some((_, nv))) = (ia.next(), ib.next()) else { return Ok(()) };
                                self.walk(ov, nv, above + 1)?;
                            }
                            (Some((ka, _)), Some((kb, _))) if ka < kb => {
                                let Some((k, v)) = ia.next() else { return Ok(()) };
                                self.remove(entry_bytes(k), v);
                            }
                            (Some(_), None) => {
                                let Some((k, v)) = ia.next() else { return Ok(()) };
                                self.remove(entry_bytes(k), v);
                            }
                            (_, Some(_)) => {
                                let Some((k, v)) = ib.next() else { return Ok(()) };
                                self.add(entry_bytes(k), v, above + 1)?;
                            }
                        }
                    }
                }
                for item in a.diff(b) {
                    match item {
                        DiffItem::Add(k, v) => self.add(entry_bytes(k), v, above + 1)?,
                        DiffItem::Remove(k, v) => self.remove(entry_bytes(k), v),
                        DiffItem::Update { old: (_, ov), new: (_, nv) } => self.walk(ov, nv, above + 1)?,
                    }
                }
                Ok(())
            }
            (Tree::Array(a), Tree::Array(b)) => {
                let prefix = a.iter().zip(b.iter()).take_while(|(x, y)| x.ptr_eq(y)).count();
                let max_suffix = a.len().min(b.len()) - prefix;
                let suffix =
                    a.iter().rev().zip(b.iter().rev()).take(max_suffix).take_while(|(x, y)| x.ptr_eq(y)).count();
                let old_mid: Vec<&Tree> = a.iter().skip(prefix).take(a.len() - prefix - suffix).collect();
                let new_mid: Vec<&Tree> = b.iter().skip(prefix).take(b.len() - prefix - suffix).collect();
                // Elements that only moved (an insert or a removal before
                // them, as in a capped list of latest entries) are the same
                // nodes: neither added nor removed. Looked for while the
                // search stays cheap; elements in the same place are
                // compared; the rest were added or removed.
                let (old_left, new_left) = if old_mid.len() * new_mid.len() <= SHIFT_SEARCH {
                    unmoved(&old_mid, &new_mid)
                } else {
                    (old_mid, new_mid)
                };
                let mut new_left = new_left.into_iter();
                for ov in old_left {
                    match new_left.next() {
                        Some(nv) => self.walk(ov, nv, above + 1)?,
                        None => self.remove(1, ov),
                    }
                }
                new_left.try_for_each(|nv| self.add(1, nv, above + 1))
            }
            _ => {
                self.remove(0, old);
                self.add(0, new, above)
            }
        }
    }

    fn remove(&mut self, separator: u64, old: &Tree) {
        self.removed = self.removed.saturating_add(separator).saturating_add(bytes_of(old));
    }

    fn add(&mut self, separator: u64, new: &Tree, above: usize) -> Result<(), LimitError> {
        // Whatever is removed, the new tree holds at least everything
        // added: past the limit, it is too large already.
        let budget = self.limits.max_bytes.saturating_sub(self.added);
        let m = measure_below(new, above, self.limits.max_depth, budget).map_err(|e| match e {
            LimitError::TooLarge { .. } => LimitError::TooLarge { limit: self.limits.max_bytes },
            deep => deep,
        })?;
        self.added = self.added.saturating_add(separator).saturating_add(m.bytes);
        if self.added > self.limits.max_bytes {
            return Err(LimitError::TooLarge { limit: self.limits.max_bytes });
        }
        Ok(())
    }
}

/// Drops `tree` without recursing deeper than a few dozen levels, however
/// deep it is: the nodes every 32 levels down are held apart while the
/// levels above them are dropped. For a tree that broke the depth limit
/// (a reducer's result that is refused); it costs a walk of the tree.
pub fn dispose(tree: Tree) {
    const CUT: usize = 32;
    let mut pending = vec![tree];
    while let Some(top) = pending.pop() {
        let mut cut = Vec::new();
        {
            let mut stack: Vec<(&Tree, usize)> = vec![(&top, 0)];
            while let Some((t, d)) = stack.pop() {
                let is_container = matches!(t, Tree::Object(_) | Tree::Array(_));
                if d == CUT {
                    if is_container {
                        cut.push(t.clone());
                    }
                    continue;
                }
                match t {
                    Tree::Object(o) => stack.extend(o.values().map(|v| (v, d + 1))),
                    Tree::Array(a) => stack.extend(a.iter().map(|v| (v, d + 1))),
                    _ => {}
                }
            }
        }
        // The nodes 32 levels down are still held in `cut`: dropping `top`
        // stops there.
        drop(top);
        pending.extend(cut);
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
pub(crate) mod tests;
