//! The exactly-once table: per client, the last action number accepted,
//! and the seqs and content hashes of its latest actions while it is
//! recently active.
//!
//! The content hash ([`content_hash`]) is taken over a committed record's
//! JSON as the log stores it, less its `seq` and `ts`, so recovery rebuilds
//! exactly the hashes the writer recorded, and a re-send is hashed the same
//! way from the action as received.
//!
//! # What the table keeps, and what a re-send gets
//!
//! - **Every client, always**: its last number, that action's seq and its
//!   content hash (40 bytes with the ring's pointer, plus the client's
//!   name). A re-send of a client's *last* action is always acknowledged
//!   with its seq, and one with another body under that id is always
//!   refused (`id_reused`), however long ago it was sent.
//! - **Recently active clients**: the seqs and content hashes of up to
//!   [`RECENT`] − 1 actions before the last (a *ring*), so a re-sent
//!   window of pipelined actions gets the same answers. Rings live in two
//!   generations within a memory budget ([`RECENT_BYTES`] by default): a
//!   client's ring joins the young generation whenever the client records
//!   an action; when the young rings have grown by half the budget, the
//!   old generation's rings are dropped and the young generation becomes
//!   the old one. So a ring survives at least until the other clients'
//!   rings have grown by half the budget since its client's last action:
//!   some 87,000 new rings of a few acks, or 10,000 full ones.
//! - **Older re-sends** — a number below the last whose ring was dropped,
//!   or more than [`RECENT`] behind — are still recognised as re-sends by
//!   their number (never recorded twice), but acknowledged as duplicates
//!   *without* a seq and *without* comparing their content.
//!
//! A million clients cost about 145 MiB whatever they sent
//! (`memory_of_a_million_clients` measures it: 300 MiB before the rings
//! were bounded); the rings are bounded by their budget, however many
//! clients there are.
//!
//! [`checkpoint`] saves the table beside the log, so start-up need not
//! hash every record again.

pub mod checkpoint;

use std::collections::{HashMap, VecDeque};

use nodb_shared::protocol::ActionId;

/// How many of each client's latest actions (the last included) keep their
/// seq and content hash while the client is recently active.
pub const RECENT: usize = 64;

/// The default memory budget for the rings of recently active clients'
/// acks, both generations together.
pub const RECENT_BYTES: usize = 32 * 1024 * 1024;

/// What one ring costs besides its entries: its boxed slot and the
/// allocator's overhead, counted generously.
const RING_OVERHEAD: usize = 96;

/// A hash of an action's content: its id, type, payload, meta and stamped
/// client, as stored. 128 bits of BLAKE3: a client could only ever collide
/// with its own actions, and then merely get a duplicate's ack.
pub type ContentHash = [u8; 16];

/// The [`ContentHash`] of a committed record's JSON (as
/// `IncomingAction::committed_json` writes it and the log stores it).
///
/// The leading `{"seq":N,"ts":T,` is left out, so the same action hashes
/// alike whatever seq and time it got, and whitespace between tokens is
/// skipped, so a re-send that differs only in the spacing of its payload is
/// still the same action. Everything else counts, byte for byte: the order
/// of keys and the spelling of numbers and strings in the payload as sent.
pub fn content_hash(json: &[u8]) -> ContentHash {
    let mut h = blake3::Hasher::new();
    let body = strip_seq_ts(json);
    let mut from = 0;
    for (i, b) in nodb_shared::protocol::action::outside_strings(body) {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            h.update(&body[from..i]);
            from = i + 1;
        }
    }
    h.update(&body[from..]);
    let mut out = [0; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// `json` without its leading `{"seq":N,"ts":T,` (every record the writer
/// makes starts so; any other JSON is taken whole).
fn strip_seq_ts(json: &[u8]) -> &[u8] {
    fn number<'a>(rest: &'a [u8], field: &[u8]) -> Option<&'a [u8]> {
        let rest = rest.strip_prefix(field)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest[digits..].strip_prefix(b",")
    }
    number(json, b"{\"seq\":").and_then(|rest| number(rest, b"\"ts\":")).unwrap_or(json)
}

/// What the table says about an incoming action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The client's next number: accept it.
    Next,
    /// Accepted before; its seq and content hash if it is the client's
    /// last, or among its latest [`RECENT`] while it is recently active.
    Duplicate(Option<Recent>),
    /// Skips ahead: the client's next number is `expected`.
    OutOfOrder {
        /// The number the chronicler expects next from this client.
        expected: u64,
    },
}

/// What the table keeps of one of a client's latest actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recent {
    /// The action's seq.
    pub seq: u64,
    /// Its [`content_hash`].
    pub content: ContentHash,
}

/// The seqs and hashes of the actions just before a client's last, oldest
/// first: the one at the back is number `last - 1`, and so on.
type Ring = VecDeque<Recent>;

/// A client's ring and the generation it was last added to.
#[derive(Clone, Debug)]
struct Slot {
    generation: u64,
    ring: Ring,
}

/// What is kept of every client: its last action, and its ring while it is
/// recently active.
#[derive(Clone, Debug)]
struct Last {
    n: u64,
    recent: Recent,
    slot: Option<Box<Slot>>,
}

/// One client's entry, as saved for an undo log ([`DedupTable::entry`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientEntry {
    /// The last number accepted.
    pub last_n: u64,
    last: Recent,
    ring: Option<Ring>,
}

/// The table, rebuilt from the log (or a [`checkpoint`]) on start.
#[derive(Clone, Debug)]
pub struct DedupTable {
    /// Every client's last action, and the rings of the recently active.
    clients: HashMap<Box<str>, Last>,
    /// The young generation's number.
    generation: u64,
    /// What the young rings cost, counted as [`ring_cost`] does.
    young_bytes: usize,
    /// When the young generation turns old.
    generation_bytes: usize,
}

impl Default for DedupTable {
    fn default() -> Self {
        DedupTable::with_recent_bytes(RECENT_BYTES)
    }
}

/// What a ring is counted as costing: its entries' room and its slot.
fn ring_cost(ring: &Ring) -> usize {
    RING_OVERHEAD + ring.capacity() * std::mem::size_of::<Recent>()
}

impl DedupTable {
    /// An empty table whose rings of recent acks use about `bytes` in all
    /// (two generations of half each).
    pub fn with_recent_bytes(bytes: usize) -> Self {
        DedupTable { clients: HashMap::new(), generation: 1, young_bytes: 0, generation_bytes: (bytes / 2).max(1) }
    }

    /// What to do with action `id`.
    pub fn check(&self, id: &ActionId) -> Check {
        let Some(last) = self.clients.get(id.client.as_str()) else {
            return if id.n == 1 { Check::Next } else { Check::OutOfOrder { expected: 1 } };
        };
        if id.n == last.n + 1 {
            Check::Next
        } else if id.n == last.n {
            Check::Duplicate(Some(last.recent))
        } else if id.n < last.n {
            let back = (last.n - 1 - id.n) as usize;
            let ring = last.slot.as_ref().map(|s| &s.ring);
            Check::Duplicate(ring.and_then(|r| r.len().checked_sub(back + 1).map(|i| r[i])))
        } else {
            Check::OutOfOrder { expected: last.n + 1 }
        }
    }

    /// The last number accepted from `client` (0 if none).
    pub fn last_n(&self, client: &str) -> u64 {
        self.clients.get(client).map_or(0, |l| l.n)
    }

    /// Records that `id` was accepted as `seq`, with this [`content_hash`].
    pub fn record(&mut self, id: &ActionId, seq: u64, content: ContentHash) {
        let now = Recent { seq, content };
        let Some(last) = self.clients.get_mut(id.client.as_str()) else {
            self.clients.insert(Box::from(id.client.as_str()), Last { n: id.n, recent: now, slot: None });
            return;
        };
        let before = std::mem::replace(&mut last.recent, now);
        let follows = id.n == last.n + 1;
        last.n = id.n;
        if !follows {
            // Numbers that do not follow on (never so from the writer):
            // the ring would no longer line up with them.
            if let Some(slot) = last.slot.take()
                && slot.generation == self.generation
            {
                self.young_bytes = self.young_bytes.saturating_sub(ring_cost(&slot.ring));
            }
            return;
        }
        match &mut last.slot {
            Some(slot) if slot.generation == self.generation => {
                let cost = ring_cost(&slot.ring);
                push(&mut slot.ring, before);
                self.young_bytes += ring_cost(&slot.ring) - cost;
            }
            other => {
                // A new ring, or one of the old generation: it joins the
                // young one.
                let mut slot = other.take().unwrap_or_else(|| Box::new(Slot { generation: 0, ring: Ring::new() }));
                slot.generation = self.generation;
                push(&mut slot.ring, before);
                self.young_bytes += ring_cost(&slot.ring);
                *other = Some(slot);
            }
        }
        self.turn_if_full();
    }

    /// The number and seq of `client`'s last accepted action.
    pub fn last(&self, client: &str) -> Option<(u64, u64)> {
        self.clients.get(client).map(|l| (l.n, l.recent.seq))
    }

    /// Every client with the number and seq of its last accepted action.
    pub fn lasts(&self) -> impl Iterator<Item = (&str, (u64, u64))> {
        self.clients.iter().map(|(c, l)| (&**c, (l.n, l.recent.seq)))
    }

    /// The entry of `client`, for an undo log.
    pub fn entry(&self, client: &str) -> Option<ClientEntry> {
        let last = self.clients.get(client)?;
        Some(ClientEntry { last_n: last.n, last: last.recent, ring: last.slot.as_ref().map(|s| s.ring.clone()) })
    }

    /// Puts back an entry saved with [`DedupTable::entry`].
    pub fn restore(&mut self, client: &str, entry: Option<ClientEntry>) {
        let removed = match entry {
            Some(e) => {
                let ring = e.ring;
                let last = Last { n: e.last_n, recent: e.last, slot: None };
                let old = match self.clients.get_mut(client) {
                    Some(l) => std::mem::replace(l, last),
                    None => {
                        self.clients.insert(Box::from(client), last);
                        Last { n: 0, recent: Recent::default(), slot: None }
                    }
                };
                if let Some(ring) = ring {
                    self.insert_young(client, ring);
                }
                Some(old)
            }
            None => self.clients.remove(client),
        };
        if let Some(slot) = removed.and_then(|l| l.slot)
            && slot.generation == self.generation
        {
            self.young_bytes = self.young_bytes.saturating_sub(ring_cost(&slot.ring));
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

    /// How many clients have a ring of recent acks, and what the rings are
    /// counted as costing (both generations). Walks every client.
    pub fn recent_usage(&self) -> (usize, usize) {
        let rings = self.clients.values().filter_map(|l| l.slot.as_ref());
        rings.fold((0, 0), |(n, bytes), s| (n + 1, bytes + ring_cost(&s.ring)))
    }

    /// Gives `client` (which must be in the table) `ring`, in the young
    /// generation.
    fn insert_young(&mut self, client: &str, ring: Ring) {
        self.young_bytes += ring_cost(&ring);
        if let Some(last) = self.clients.get_mut(client) {
            debug_assert!(last.slot.is_none());
            last.slot = Some(Box::new(Slot { generation: self.generation, ring }));
        }
        self.turn_if_full();
    }

    /// Turns the generations once the young one has used its half: the old
    /// generation's rings (those not added to since) go, and the young one
    /// becomes old.
    fn turn_if_full(&mut self) {
        if self.young_bytes <= self.generation_bytes {
            return;
        }
        // One pass over every client, at most once per half budget of
        // ring growth (at least some 87,000 actions): cheaper than finding
        // each old ring by name.
        let gone = self.generation - 1;
        for last in self.clients.values_mut() {
            if last.slot.as_ref().is_some_and(|s| s.generation <= gone) {
                last.slot = None;
            }
        }
        self.generation += 1;
        self.young_bytes = 0;
    }

    /// Every client's last action and ring, for [`checkpoint::save`].
    fn clients_for_save(&self) -> impl Iterator<Item = (&str, u64, Recent, Option<&Ring>)> {
        self.clients.iter().map(|(c, l)| (&**c, l.n, l.recent, l.slot.as_ref().map(|s| &s.ring)))
    }

    /// Makes room for `clients` more clients.
    fn reserve(&mut self, clients: usize) {
        self.clients.reserve(clients);
    }

    /// Adds a client as [`checkpoint::load`] read it.
    fn insert_loaded(&mut self, client: &str, n: u64, recent: Recent, ring: Ring) {
        self.clients.insert(Box::from(client), Last { n, recent, slot: None });
        if !ring.is_empty() {
            self.insert_young(client, ring);
        }
    }
}

/// Adds `recent` at the back of `ring`, dropping its oldest when full.
fn push(ring: &mut Ring, recent: Recent) {
    if ring.len() >= RECENT - 1 {
        ring.pop_front();
    }
    ring.push_back(recent);
}

#[cfg(test)]
mod tests;
