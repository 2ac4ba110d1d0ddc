//! The recent versions of a view, and the one catch-up decision every view
//! server makes from them.
//!
//! A service keeps the latest states it made, each numbered by its seq, in
//! a [`History`]; the newest entry is always the current state. A client
//! that has some seq is then sent one of four things ([`Plan`]): nothing,
//! the next seq's patch (built once and shared by every client at that
//! point), one combined patch from the state it has (when that state is
//! still in the history), or a snapshot (a new client, or one further
//! behind than the history — or ahead of it, as a client of an earlier
//! run is). The data view, a subtree reader of it and a cascade all decide
//! this way; only what an entry holds and how a message is written differ.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use nodb_shared::Tree;
use nodb_shared::protocol::ServerMessage;

/// An entry of a [`History`]: a state (or several views' states) after
/// some seq.
pub trait Versioned {
    /// The seq the entry's state is after.
    fn seq(&self) -> u64;
}

/// The latest entries, oldest first, at most `capacity` of them, with
/// consecutive seqs.
#[derive(Debug)]
pub struct History<E> {
    entries: VecDeque<E>,
    capacity: usize,
}

/// What a client that has some seq should be sent, as read from a
/// [`History`] (see [`History::plan`]).
#[derive(Debug)]
pub enum Plan<'a, E> {
    /// No state yet.
    NoState,
    /// The client is up to date.
    Nothing,
    /// One seq behind: the patch of `last`, made from `prev`.
    Next {
        /// The entry the client has.
        prev: &'a E,
        /// The current one.
        last: &'a E,
    },
    /// Further behind, within the history: one combined patch from
    /// `base` (the client's state) to `last` covering `base.seq()+1..=last.seq()`.
    Combined {
        /// The entry the client has.
        base: &'a E,
        /// The current one.
        last: &'a E,
    },
    /// A snapshot of `last`: the client is new (`resync` false), or has a
    /// seq the history does not hold (`resync` true).
    Snapshot {
        /// The current entry.
        last: &'a E,
        /// Whether the client had a seq the history no longer (or never)
        /// held.
        resync: bool,
    },
}

/// Why an entry at some seq is not at hand ([`History::at`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtError {
    /// No state yet.
    #[error("no state yet")]
    NoState,
    /// The seq is beyond the current one.
    #[error("`at` is beyond the view's seq {seq}")]
    Ahead {
        /// The current seq.
        seq: u64,
    },
    /// The seq is older than the history kept.
    #[error("`at` is older than the updates kept in memory (from seq {oldest})")]
    Gone {
        /// The oldest seq kept.
        oldest: u64,
    },
}

impl<E: Versioned> History<E> {
    /// An empty history that keeps at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> History<E> {
        History { entries: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// How many entries it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The current entry.
    pub fn last(&self) -> Option<&E> {
        self.entries.back()
    }

    /// The seq of the oldest entry kept.
    pub fn oldest(&self) -> Option<u64> {
        self.entries.front().map(E::seq)
    }

    /// The entry after `seq`, if kept.
    pub fn get(&self, seq: u64) -> Option<&E> {
        let i = usize::try_from(seq.checked_sub(self.oldest()?)?).ok()?;
        self.entries.get(i).filter(|e| e.seq() == seq)
    }

    /// The entries after `seq`, oldest first, while their seqs follow on.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = (&E, &E)> {
        let start = self.get(seq).and_then(|_| usize::try_from(seq - self.oldest()?).ok());
        let pairs = start.map(|i| self.entries.range(i..).zip(self.entries.range(i + 1..)));
        pairs.into_iter().flatten().take_while(|(prev, next)| next.seq() == prev.seq() + 1)
    }

    /// Adds the next entry; the one that fell out, if the history was full.
    pub fn push(&mut self, entry: E) -> Option<E> {
        let evicted = if self.entries.len() >= self.capacity { self.entries.pop_front() } else { None };
        self.entries.push_back(entry);
        evicted
    }

    /// Starts again from `entry` alone; the entries let go of.
    pub fn restart(&mut self, entry: E) -> VecDeque<E> {
        std::mem::replace(&mut self.entries, VecDeque::from([entry]))
    }

    /// Lets go of every entry (until the next [`History::push`]).
    pub fn take(&mut self) -> VecDeque<E> {
        std::mem::take(&mut self.entries)
    }

    /// The entry at `at`, or the current one (`None`).
    ///
    /// # Errors
    /// An [`AtError`] when there is no such entry.
    pub fn at(&self, at: Option<u64>) -> Result<&E, AtError> {
        let last = self.last().ok_or(AtError::NoState)?;
        match at {
            None => Ok(last),
            Some(at) if at > last.seq() => Err(AtError::Ahead { seq: last.seq() }),
            Some(at) => self.get(at).ok_or(AtError::Gone { oldest: self.oldest().unwrap_or(last.seq()) }),
        }
    }

    /// What a client that has seq `since` (`None`: nothing yet) should be
    /// sent now.
    pub fn plan(&self, since: Option<u64>) -> Plan<'_, E> {
        let Some(last) = self.last() else { return Plan::NoState };
        let Some(since) = since else { return Plan::Snapshot { last, resync: false } };
        if since == last.seq() {
            return Plan::Nothing;
        }
        match self.get(since) {
            Some(prev) if since + 1 == last.seq() => Plan::Next { prev, last },
            Some(base) => Plan::Combined { base, last },
            None => Plan::Snapshot { last, resync: true },
        }
    }
}

/// Messages built for one client that others at the same point reuse:
/// clients woken by the same new seq usually ask for the same catch-up.
/// Keyed by whatever tells two such messages apart (a view and a `since`).
#[derive(Debug)]
pub struct SharedMessages<K> {
    /// The seq the messages lead to; a new seq empties the map.
    seq: u64,
    messages: HashMap<K, Bytes>,
}

impl<K> Default for SharedMessages<K> {
    fn default() -> Self {
        SharedMessages { seq: 0, messages: HashMap::new() }
    }
}

impl<K: std::hash::Hash + Eq> SharedMessages<K> {
    /// The message `key` for clients that are to reach `seq`: built once by
    /// `build`, then shared until the seq moves on.
    pub fn get_or_build(&mut self, key: K, seq: u64, build: impl FnOnce() -> Bytes) -> Bytes {
        if self.seq != seq {
            self.seq = seq;
            self.messages.clear();
        }
        self.messages.entry(key).or_insert_with(build).clone()
    }
}

/// A message as sent on the wire.
pub fn message(m: &ServerMessage) -> Bytes {
    Bytes::from(serde_json::to_vec(m).unwrap_or_default())
}

/// The hex BLAKE3 hash of a state's canonical serialisation: what
/// `GET /views/{name}` reports as `hash`, the same in every service, so
/// replicas can be compared.
pub fn hash(state: &Tree) -> String {
    blake3::hash(state.to_json_string().as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Versioned for u64 {
        fn seq(&self) -> u64 {
            *self
        }
    }

    fn history(seqs: std::ops::RangeInclusive<u64>, capacity: usize) -> History<u64> {
        let mut h = History::new(capacity);
        seqs.for_each(|s| {
            h.push(s);
        });
        h
    }

    #[test]
    fn the_plan_is_nothing_next_combined_or_snapshot() {
        assert!(matches!(History::<u64>::new(3).plan(None), Plan::NoState));
        let h = history(1..=10, 3); // keeps 8, 9, 10
        assert!(matches!(h.plan(None), Plan::Snapshot { last: 10, resync: false }));
        assert!(matches!(h.plan(Some(10)), Plan::Nothing));
        assert!(matches!(h.plan(Some(9)), Plan::Next { prev: 9, last: 10 }));
        assert!(matches!(h.plan(Some(8)), Plan::Combined { base: 8, last: 10 }));
        for since in [7, 1, 0, 11, u64::MAX] {
            assert!(matches!(h.plan(Some(since)), Plan::Snapshot { last: 10, resync: true }), "{since}");
        }
    }

    #[test]
    fn entries_are_found_by_seq_and_fall_out_oldest_first() {
        let mut h = history(5..=7, 3);
        assert_eq!(h.push(8), Some(5));
        assert_eq!((h.oldest(), h.get(8), h.get(5), h.get(9)), (Some(6), Some(&8), None, None));
        assert_eq!(h.at(None), Ok(&8));
        assert_eq!(h.at(Some(7)), Ok(&7));
        assert_eq!(h.at(Some(9)), Err(AtError::Ahead { seq: 8 }));
        assert_eq!(h.at(Some(5)), Err(AtError::Gone { oldest: 6 }));
        assert_eq!(h.after(6).map(|(a, b)| (*a, *b)).collect::<Vec<_>>(), [(6, 7), (7, 8)]);
        assert_eq!(h.after(5).count(), 0);
        assert_eq!(h.restart(20), [6, 7, 8]);
        assert_eq!((h.plan(Some(8)).is_resync(), h.last()), (true, Some(&20)));
        assert_eq!(h.take(), [20]);
        assert_eq!(h.at(None), Err(AtError::NoState));
    }

    impl<E> Plan<'_, E> {
        fn is_resync(&self) -> bool {
            matches!(self, Plan::Snapshot { resync: true, .. })
        }
    }

    #[test]
    fn a_shared_message_is_built_once_per_seq() {
        let mut shared = SharedMessages::default();
        let mut built = 0;
        for _ in 0..3 {
            shared.get_or_build(("v", 1), 5, || {
                built += 1;
                Bytes::from_static(b"m")
            });
        }
        shared.get_or_build(("v", 1), 6, || {
            built += 1;
            Bytes::from_static(b"m2")
        });
        assert_eq!(built, 2);
    }
}
