//! [`Reads`]: paths in a state that the next actions are about to read,
//! read ahead of them all at once.
//!
//! A view over a big state spends much of each action waiting for memory:
//! the search of a 1,000,000-key map is four or five nodes down, then the
//! entry it finds and an object inside it, each a cache miss, one after
//! the other because each address comes from the read before. Several
//! actions' searches do not depend on one another, though. So a view may
//! name the paths its next actions will read (its *hint*), and
//! [`Reads::read`] walks all of them together, one level at a time: each
//! step asks the memory for what the path's next step reads (a prefetch,
//! which does not wait), and takes that next step only after one step of
//! every other path, so the memory fetches the nodes of all the paths side
//! by side, and the reducers then find them in the cache.
//!
//! Reading ahead changes nothing: it only reads, and a path that is not
//! there, or goes through a value that is not an object or an array, is
//! simply dropped. So are paths past [`MAX_PATHS`] and paths longer than
//! [`MAX_SEGMENTS`]: a hint can cost a reducer its own search, never the
//! memory of the process.

use crate::edit::child;
use crate::path::Segment;
use crate::tree::Tree;
use crate::tree::bigmap::{Step, Walk};

/// The most paths a [`Reads`] holds; more are dropped.
pub const MAX_PATHS: usize = 1024;

/// The most segments a path may have; a longer one is dropped.
pub const MAX_SEGMENTS: usize = 64;

/// Paths in a state to read ahead (see the module doc).
#[derive(Debug, Default)]
pub struct Reads {
    segs: Vec<Segment>,
    ends: Vec<usize>,
}

/// Where one path's read is.
enum At<'a> {
    /// At `tree`, with the path's segments from `next` still to go.
    Tree(&'a Tree, usize),
    /// Inside a big object's map, looking for the segment before `next`.
    Map(Walk<'a>, usize),
    /// Read, or not there.
    Done,
}

impl Reads {
    /// No paths.
    pub fn new() -> Reads {
        Reads::default()
    }

    /// Adds `path`, unless there are [`MAX_PATHS`] already or it has more
    /// than [`MAX_SEGMENTS`] segments.
    pub fn add<S: Into<Segment>>(&mut self, path: impl IntoIterator<Item = S>) {
        if self.ends.len() >= MAX_PATHS {
            return;
        }
        let start = self.segs.len();
        self.segs.extend(path.into_iter().take(MAX_SEGMENTS + 1).map(Into::into));
        if self.segs.len() - start > MAX_SEGMENTS {
            self.segs.truncate(start);
            return;
        }
        self.ends.push(self.segs.len());
    }

    /// How many paths there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Forgets every path, keeping the memory.
    pub fn clear(&mut self) {
        self.segs.clear();
        self.ends.clear();
    }

    /// Reads every path in `tree`, all together (see the module doc).
    /// Returns how many of the paths are there.
    pub fn read(&self, tree: &Tree) -> usize {
        let mut found = 0;
        self.walk(tree, |_, _| found += 1);
        found
    }

    /// Reads every path in `tree`, one step of each in turn, and calls
    /// `end` with the index and value of each path that is there.
    fn walk<'a>(&'a self, tree: &'a Tree, mut end: impl FnMut(usize, &'a Tree)) {
        let mut at: Vec<At<'_>> = Vec::with_capacity(self.ends.len());
        let mut start = 0;
        for &end in &self.ends {
            at.push(At::Tree(tree, start));
            start = end;
        }
        let mut going = at.len();
        while going > 0 {
            going = 0;
            for (p, (slot, &last)) in at.iter_mut().zip(&self.ends).enumerate() {
                *slot = match std::mem::replace(slot, At::Done) {
                    At::Done => continue,
                    At::Tree(t, next) if next == last => {
                        end(p, t);
                        continue;
                    }
                    At::Tree(t, next) => self.step(t, next),
                    At::Map(mut walk, next) => match walk.step() {
                        Step::On => At::Map(walk, next),
                        Step::Found(t) => found_at(t, next),
                        Step::Missing => At::Done,
                    },
                };
                going += usize::from(!matches!(slot, At::Done));
            }
        }
    }

    /// One segment down from `t`, at `self.segs[next]`: the same step as
    /// [`Tree::get`]'s, but a key in a big object is walked to one node
    /// per step.
    fn step<'a>(&'a self, t: &'a Tree, next: usize) -> At<'a> {
        let seg = &self.segs[next];
        if let (Tree::Object(o), Segment::Key(k)) = (t, seg)
            && let Err(map) = o.form()
        {
            return At::Map(map.walk(k), next + 1);
        }
        match child(t, &self.segs, next) {
            Ok(Some(v)) => found_at(v, next + 1),
            Ok(None) | Err(_) => At::Done,
        }
    }
}

/// A path's step that reached `t`, with the segments from `next` to go:
/// asks the memory for the slice of `t` if it is a small object (which the
/// next step, or the reducer, searches).
fn found_at(t: &Tree, next: usize) -> At<'_> {
    if let Tree::Object(o) = t
        && let Ok(small) = o.form()
    {
        prefetch_all(small);
    }
    At::Tree(t, next)
}

/// Asks the memory for the cache line that holds `value`, without waiting
/// for it (nothing, where the processor has no such instruction).
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = value;
}

/// [`prefetch`] for every cache line of `values`.
#[inline(always)]
pub(crate) fn prefetch_all<T>(values: &[T]) {
    let per_line = (64 / std::mem::size_of::<T>().max(1)).max(1);
    for v in values.iter().step_by(per_line) {
        prefetch(v);
    }
    if let Some(last) = values.last() {
        prefetch(last);
    }
}

#[cfg(test)]
#[path = "read_ahead_tests.rs"]
mod tests;
