//! [`Touches`]: paths in a state that the next actions are about to read,
//! read ahead of them all at once.
//!
//! A view over a big state spends much of each action waiting for memory:
//! the search of a 1,000,000-key map is four or five nodes down, then the
//! entry it finds and an object inside it, each a cache miss, one after
//! the other because each address comes from the read before. Several
//! actions' searches do not depend on one another, though. So a view may
//! name the paths its next actions will read (its *hint*), and
//! [`Touches::read`] walks all of them together, one level at a time: at
//! each level it reads one node for every path before reading any node
//! below, so the memory fetches those nodes side by side, and the reducers
//! then find them in the cache.
//!
//! Reading ahead changes nothing: it only reads, and a path that is not
//! there, or goes through a value that is not an object or an array, is
//! simply dropped.

use crate::path::{Segment, Slot};
use crate::tree::Tree;
use crate::tree::bigmap::{Step, Walk};
use crate::tree::object::find;

/// Paths in a state to read ahead (see the module doc).
#[derive(Debug, Default)]
pub struct Touches {
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

impl Touches {
    /// No paths.
    pub fn new() -> Touches {
        Touches::default()
    }

    /// Adds the path `path`.
    pub fn path<S: Into<Segment>>(&mut self, path: impl IntoIterator<Item = S>) {
        self.segs.extend(path.into_iter().map(Into::into));
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

    /// Reads every path in `tree`, one level of all of them at a time:
    /// each node a step reads, it has first asked the memory for (a
    /// prefetch, which does not wait), one step of every other path
    /// before. The slice of each small object found on the way is asked
    /// for too. Returns how many of the paths are there.
    pub fn read(&self, tree: &Tree) -> usize {
        let mut at: Vec<At<'_>> = Vec::with_capacity(self.ends.len());
        let mut start = 0;
        for &end in &self.ends {
            at.push(At::Tree(tree, start));
            start = end;
        }
        let mut found = 0;
        let mut going = at.len();
        while going > 0 {
            going = 0;
            for (slot, &end) in at.iter_mut().zip(&self.ends) {
                *slot = match std::mem::replace(slot, At::Done) {
                    At::Done => continue,
                    At::Tree(_, next) if next == end => {
                        found += 1;
                        continue;
                    }
                    At::Tree(t, next) => self.step(t, next),
                    At::Map(mut walk, next) => match walk.step() {
                        Step::On => At::Map(walk, next),
                        Step::Found(t) => {
                            prefetch_small(t);
                            At::Tree(t, next)
                        }
                        Step::Missing => At::Done,
                    },
                };
                going += 1;
            }
        }
        found
    }

    /// One segment down from `t`, at `self.segs[next]` (the same step as
    /// [`Tree::get`]'s).
    fn step<'a>(&'a self, t: &'a Tree, next: usize) -> At<'a> {
        let found = |v: &'a Tree| {
            prefetch_small(v);
            At::Tree(v, next + 1)
        };
        match (t, &self.segs[next]) {
            (Tree::Object(o), Segment::Key(k)) => match o.form() {
                Ok(small) => find(small, k).map_or(At::Done, |i| found(&small[i].1)),
                Err(map) => At::Map(map.walk(k), next + 1),
            },
            (Tree::Object(o), Segment::Index(i)) => o.get(i.to_string().as_str()).map_or(At::Done, found),
            (Tree::Array(a), seg) => match seg.slot() {
                Some(Slot::At(i)) => a.get(i).map_or(At::Done, found),
                _ => At::Done,
            },
            _ => At::Done,
        }
    }
}

/// Asks the memory for the slice of a small object (which the next step,
/// or the reducer, searches next).
fn prefetch_small(t: &Tree) {
    if let Tree::Object(o) = t
        && let Ok(small) = o.form()
    {
        prefetch_all(small);
    }
}

/// Asks the memory for the cache line that holds `value`, without waiting
/// for it (nothing, where the processor has no such instruction).
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    safe_arch::prefetch_t0(value);
    #[cfg(not(target_arch = "x86_64"))]
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
#[path = "touch_tests.rs"]
mod tests;
