//! The exactly-once table: per client, the last action number accepted and
//! the seqs of its latest few actions.

use std::collections::{HashMap, VecDeque};

use nodb_shared::protocol::ActionId;

/// How many of each client's latest actions keep their seq for duplicate
/// acks. Older re-sends are still recognised, but acknowledged without it.
pub const RECENT: usize = 64;

/// What the table says about an incoming action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The client's next number: accept it.
    Next,
    /// Accepted before, with this seq if it is among the latest few.
    Duplicate(Option<u64>),
    /// Skips ahead: the client's next number is `expected`.
    OutOfOrder {
        /// The number the chronicler expects next from this client.
        expected: u64,
    },
}

/// One client's entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientEntry {
    /// The last number accepted.
    pub last_n: u64,
    /// `(n, seq)` of the latest accepted actions, oldest first.
    recent: VecDeque<(u64, u64)>,
}

/// The table, rebuilt from the log on start.
#[derive(Clone, Debug, Default)]
pub struct DedupTable {
    clients: HashMap<String, ClientEntry>,
}

impl DedupTable {
    /// What to do with action `id`.
    pub fn check(&self, id: &ActionId) -> Check {
        let entry = self.clients.get(&id.client);
        let last = entry.map_or(0, |e| e.last_n);
        if id.n == last + 1 {
            Check::Next
        } else if id.n <= last {
            let seq = entry.and_then(|e| e.recent.iter().find(|(n, _)| *n == id.n).map(|(_, s)| *s));
            Check::Duplicate(seq)
        } else {
            Check::OutOfOrder { expected: last + 1 }
        }
    }

    /// The last number accepted from `client` (0 if none).
    pub fn last_n(&self, client: &str) -> u64 {
        self.clients.get(client).map_or(0, |e| e.last_n)
    }

    /// Records that `id` was accepted as `seq`.
    pub fn record(&mut self, id: &ActionId, seq: u64) {
        let e = self.clients.entry(id.client.clone()).or_default();
        e.last_n = id.n;
        if e.recent.len() == RECENT {
            e.recent.pop_front();
        }
        e.recent.push_back((id.n, seq));
    }

    /// The number and seq of `client`'s last accepted action.
    pub fn last(&self, client: &str) -> Option<(u64, u64)> {
        self.clients.get(client).and_then(|e| e.recent.back().copied())
    }

    /// Every client with the number and seq of its last accepted action.
    pub fn lasts(&self) -> impl Iterator<Item = (&str, (u64, u64))> {
        self.clients.iter().filter_map(|(c, e)| e.recent.back().map(|l| (c.as_str(), *l)))
    }

    /// The entry of `client`, for an undo log.
    pub fn entry(&self, client: &str) -> Option<ClientEntry> {
        self.clients.get(client).cloned()
    }

    /// Puts back an entry saved with [`DedupTable::entry`].
    pub fn restore(&mut self, client: &str, entry: Option<ClientEntry>) {
        match entry {
            Some(e) => {
                self.clients.insert(client.to_string(), e);
            }
            None => {
                self.clients.remove(client);
            }
        }
    }

    /// How many clients the table knows.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ActionId {
        s.parse().unwrap()
    }

    #[test]
    fn next_duplicate_out_of_order() {
        let mut t = DedupTable::default();
        assert_eq!(t.check(&id("a:1")), Check::Next);
        assert_eq!(t.check(&id("a:2")), Check::OutOfOrder { expected: 1 });
        t.record(&id("a:1"), 10);
        assert_eq!(t.check(&id("a:1")), Check::Duplicate(Some(10)));
        assert_eq!(t.check(&id("a:2")), Check::Next);
        assert_eq!(t.check(&id("b:1")), Check::Next);
        for n in 2..=(RECENT as u64 + 5) {
            t.record(&id(&format!("a:{n}")), 100 + n);
        }
        assert_eq!(t.check(&id("a:1")), Check::Duplicate(None));
        assert_eq!(t.check(&id("a:20")), Check::Duplicate(Some(120)));
        let saved = t.entry("a");
        t.record(&id(&format!("a:{}", RECENT + 6)), 999);
        t.restore("a", saved);
        assert_eq!(t.check(&id(&format!("a:{}", RECENT + 6))), Check::Next);
    }
}
