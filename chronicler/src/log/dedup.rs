//! The exactly-once table: per client, the last action number accepted and
//! the seqs and content hashes of its latest few actions.
//!
//! The content hash ([`content_hash`]) is taken over a committed record's
//! JSON as the log stores it, less its `seq` and `ts`, so recovery rebuilds
//! exactly the hashes the writer recorded, and a re-send is hashed the same
//! way from the action as received.

use std::collections::{HashMap, VecDeque};

use nodb_shared::protocol::ActionId;

/// How many of each client's latest actions keep their seq for duplicate
/// acks, and their content hash for telling a re-send from a different
/// action under a used id. Older re-sends are still recognised, but
/// acknowledged without a seq and without comparing their content.
pub const RECENT: usize = 64;

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
    let mut in_string = false;
    let mut escaped = false;
    let mut from = 0;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
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
    /// Accepted before; its seq and content hash if it is among the latest
    /// few.
    Duplicate(Option<Recent>),
    /// Skips ahead: the client's next number is `expected`.
    OutOfOrder {
        /// The number the chronicler expects next from this client.
        expected: u64,
    },
}

/// What the table keeps of one of a client's latest actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recent {
    /// The action's seq.
    pub seq: u64,
    /// Its [`content_hash`].
    pub content: ContentHash,
}

/// One client's entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientEntry {
    /// The last number accepted.
    pub last_n: u64,
    /// `(n, seq and content)` of the latest accepted actions, oldest first.
    recent: VecDeque<(u64, Recent)>,
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
            let recent = entry.and_then(|e| e.recent.iter().find(|(n, _)| *n == id.n).map(|(_, r)| *r));
            Check::Duplicate(recent)
        } else {
            Check::OutOfOrder { expected: last + 1 }
        }
    }

    /// The last number accepted from `client` (0 if none).
    pub fn last_n(&self, client: &str) -> u64 {
        self.clients.get(client).map_or(0, |e| e.last_n)
    }

    /// Records that `id` was accepted as `seq`, with this [`content_hash`].
    pub fn record(&mut self, id: &ActionId, seq: u64, content: ContentHash) {
        let e = self.clients.entry(id.client.clone()).or_default();
        e.last_n = id.n;
        if e.recent.len() == RECENT {
            e.recent.pop_front();
        }
        e.recent.push_back((id.n, Recent { seq, content }));
    }

    /// The number and seq of `client`'s last accepted action.
    pub fn last(&self, client: &str) -> Option<(u64, u64)> {
        self.clients.get(client).and_then(|e| e.recent.back().map(|(n, r)| (*n, r.seq)))
    }

    /// Every client with the number and seq of its last accepted action.
    pub fn lasts(&self) -> impl Iterator<Item = (&str, (u64, u64))> {
        self.clients.iter().filter_map(|(c, e)| e.recent.back().map(|(n, r)| (c.as_str(), (*n, r.seq))))
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

    const C: ContentHash = [7; 16];

    fn dup(seq: u64) -> Check {
        Check::Duplicate(Some(Recent { seq, content: C }))
    }

    #[test]
    fn next_duplicate_out_of_order() {
        let mut t = DedupTable::default();
        assert_eq!(t.check(&id("a:1")), Check::Next);
        assert_eq!(t.check(&id("a:2")), Check::OutOfOrder { expected: 1 });
        t.record(&id("a:1"), 10, C);
        assert_eq!(t.check(&id("a:1")), dup(10));
        assert_eq!(t.check(&id("a:2")), Check::Next);
        assert_eq!(t.check(&id("b:1")), Check::Next);
        for n in 2..=(RECENT as u64 + 5) {
            t.record(&id(&format!("a:{n}")), 100 + n, C);
        }
        assert_eq!(t.check(&id("a:1")), Check::Duplicate(None));
        assert_eq!(t.check(&id("a:20")), dup(120));
        assert_eq!(t.last("a"), Some((RECENT as u64 + 5, 100 + RECENT as u64 + 5)));
        let saved = t.entry("a");
        t.record(&id(&format!("a:{}", RECENT + 6)), 999, C);
        t.restore("a", saved);
        assert_eq!(t.check(&id(&format!("a:{}", RECENT + 6))), Check::Next);
    }

    #[test]
    fn the_content_hash_ignores_seq_ts_and_spacing_but_nothing_else() {
        let stored =
            br#"{"seq":12,"ts":1700000000000,"id":"c:1","type":"t","payload":{"a": [1, "x y"]},"meta":{"k":"v"}}"#;
        let resent = br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x y"]},"meta":{"k":"v"}}"#;
        assert_eq!(content_hash(stored), content_hash(resent));
        let spaced = b"{\"seq\":0,\"ts\":0,\"id\":\"c:1\",\"type\":\"t\",\"payload\":{ \"a\" :\t[1 ,\r\n\"x y\"] },\"meta\":{\"k\":\"v\"}}";
        assert_eq!(content_hash(stored), content_hash(spaced));
        for other in [
            &br#"{"seq":0,"ts":0,"id":"c:1","type":"u","payload":{"a":[1,"x y"]},"meta":{"k":"v"}}"#[..],
            br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"xy"]},"meta":{"k":"v"}}"#,
            br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x  y"]},"meta":{"k":"v"}}"#,
            br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[2,"x y"]},"meta":{"k":"v"}}"#,
            br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x y"]}}"#,
            br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x y"]},"meta":{"k":"w"}}"#,
            br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x y"]},"meta":{"k":"v"},"client":"ana"}"#,
            br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x\" y"]},"meta":{"k":"v"}}"#,
        ] {
            assert_ne!(content_hash(stored), content_hash(other), "{}", String::from_utf8_lossy(other));
        }
        // A string holding an escaped quote keeps its spaces.
        let a = br#"{"seq":1,"ts":1,"id":"c:1","type":"t","payload":"\" a"}"#;
        let b = br#"{"seq":1,"ts":1,"id":"c:1","type":"t","payload":"\"a"}"#;
        assert_ne!(content_hash(a), content_hash(b));
    }
}
