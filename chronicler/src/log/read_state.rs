//! What readers of the log see, published by the writer after each
//! durable write: each segment's sparse index, the in-memory tail of recent
//! actions, every client's last number and seq, the redaction index
//! ([`Redactions`]) and the durable head.
//! Readers never touch the writer; the writer only ever publishes here.
//!
//! The tail is bounded twice: by count and by bytes (the JSON of its
//! entries plus [`ENTRY_OVERHEAD`] each), so a burst of large actions
//! cannot hold more than the byte bound in memory. Whatever falls out of
//! the tail is read from the segment files.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::RwLock;

use bytes::Bytes;
use tokio::sync::watch;

use super::record::Hash;
use super::redactions::Redactions;
use super::segment::HEADER_LEN;
use super::{LogEntry, ReadLimits};

/// The default byte bound of the in-memory tail: 64 MiB.
pub const DEFAULT_RECENT_BYTES: usize = 64 * 1024 * 1024;

/// What one tail entry costs besides its JSON: its slot in the queue and
/// the shared buffer's header.
pub const ENTRY_OVERHEAD: usize = 64;

/// Where readers find records: the in-memory tail, and `W`, where the
/// older ones are (the segments' indexes for the file log).
pub struct Shared<W = Vec<SegmentIndex>> {
    state: RwLock<ReadState<W>>,
    head_tx: watch::Sender<u64>,
    /// At most this many entries in the tail.
    recent_cap: usize,
    /// At most this many bytes in the tail, counted as [`entry_cost`] does.
    recent_bytes_cap: usize,
}

/// Where one segment's records are: its first seq, its file, and the
/// offsets of every [`INDEX_EVERY`](super::limits::INDEX_EVERY)th record.
pub(crate) struct SegmentIndex {
    /// The seq of its first record.
    pub first_seq: u64,
    /// Its file.
    pub path: PathBuf,
    /// `(seq, offset)` of every 64th record.
    pub index: Vec<(u64, u64)>,
}

struct ReadState<W> {
    /// Where the records older than the tail are.
    places: W,
    recent: VecDeque<(u64, Bytes)>,
    /// What `recent` costs, counted as [`entry_cost`] does.
    recent_bytes: usize,
    durable_hash: Hash,
    /// Per client, the number and seq of its last durable action (boxed
    /// names: a million clients make every byte of a slot count).
    clients: HashMap<Box<str>, (u64, u64)>,
    /// Which seqs are redacted now, up to the durable head.
    redactions: Redactions,
}

impl<W> Shared<W> {
    /// The read state of a log just recovered: where its records are
    /// (`places`), each client's last number and seq, the head and its
    /// chain hash, keeping up to `recent_cap` actions in memory and at most
    /// [`DEFAULT_RECENT_BYTES`] of them (see [`Shared::with_recent_bytes`]).
    pub(crate) fn new(
        places: W,
        clients: HashMap<String, (u64, u64)>,
        head: u64,
        hash: Hash,
        recent_cap: usize,
    ) -> Self {
        Shared {
            state: RwLock::new(ReadState {
                places,
                recent: VecDeque::new(),
                recent_bytes: 0,
                durable_hash: hash,
                clients: clients.into_iter().map(|(c, last)| (c.into_boxed_str(), last)).collect(),
                redactions: Redactions::default(),
            }),
            head_tx: watch::channel(head).0,
            recent_cap,
            recent_bytes_cap: DEFAULT_RECENT_BYTES,
        }
    }

    /// Bounds the in-memory tail to `bytes` (JSON plus [`ENTRY_OVERHEAD`]
    /// per entry) as well as to its count; entries that do not fit are
    /// served from disk. Set before the first publish.
    pub(crate) fn with_recent_bytes(mut self, bytes: usize) -> Self {
        self.recent_bytes_cap = bytes;
        self
    }

    /// Starts from the redaction index recovery built (up to the head it
    /// recovered). Set before the first publish.
    pub(crate) fn with_redactions(self, redactions: Redactions) -> Self {
        self.state.write().unwrap_or_else(|e| e.into_inner()).redactions = redactions;
        self
    }

    /// The redacted seqs from `from` to `to` and the seqs of their
    /// redactions, in seq order (see [`Redactions::in_range`]).
    pub(crate) fn redacted(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).redactions.in_range(from, to)
    }

    /// The first of `seqs` that is a redaction that took effect (see
    /// [`Redactions::redaction_among`]).
    pub(crate) fn redaction_among(&self, seqs: &[u64]) -> Option<u64> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).redactions.redaction_among(seqs)
    }

    /// The durable head, watchable.
    pub(crate) fn head(&self) -> watch::Receiver<u64> {
        self.head_tx.subscribe()
    }

    /// The durable head now.
    pub(crate) fn head_now(&self) -> u64 {
        *self.head_tx.borrow()
    }

    /// `client`'s last durable number and its seq.
    pub(crate) fn client(&self, client: &str) -> Option<(u64, u64)> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clients.get(client).copied()
    }

    /// Reads where the older records are.
    pub(crate) fn places<R>(&self, f: impl FnOnce(&W) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()).places)
    }

    /// Makes a durable write visible: `place` records where its records
    /// are, `entries` join the tail (and the redaction index), `clients`
    /// their new last numbers; then the head moves to `head`.
    pub(crate) fn publish<'a>(
        &self,
        place: impl FnOnce(&mut W),
        entries: impl Iterator<Item = (u64, Bytes)>,
        clients: impl Iterator<Item = (&'a str, (u64, u64))>,
        head: u64,
        hash: Hash,
    ) {
        {
            let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
            for (client, last) in clients {
                match s.clients.get_mut(client) {
                    Some(l) => *l = last,
                    None => {
                        s.clients.insert(client.into(), last);
                    }
                }
            }
            place(&mut s.places);
            for e in entries {
                // Under the lock that publishes the record, before the head
                // moves past it: whoever sees its seq sees its effect.
                s.redactions.record(e.0, &e.1);
                s.recent_bytes += entry_cost(&e.1);
                s.recent.push_back(e);
                while s.recent.len() > self.recent_cap || s.recent_bytes > self.recent_bytes_cap {
                    let Some((_, old)) = s.recent.pop_front() else { break };
                    s.recent_bytes -= entry_cost(&old);
                }
            }
            s.durable_hash = hash;
        }
        self.head_tx.send_replace(head);
    }

    /// Entries from `from` on in memory, up to `head` and `limits`; `None`
    /// when `from` is older than the tail (read it from where
    /// [`Shared::places`] says).
    pub(crate) fn locate(&self, from: u64, head: u64, limits: ReadLimits) -> Option<Vec<LogEntry>> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        if let Some((front, _)) = s.recent.front()
            && from >= *front
        {
            let skip = ((from - front) as usize).min(s.recent.len());
            let mut out = Vec::new();
            let mut bytes = 0;
            for (seq, json) in s.recent.range(skip..) {
                if *seq > head || out.len() >= limits.max_entries || (bytes >= limits.max_bytes && !out.is_empty()) {
                    break;
                }
                bytes += json.len();
                out.push(LogEntry { seq: *seq, json: json.clone() });
            }
            return Some(out);
        }
        None
    }
}

impl Shared<Vec<SegmentIndex>> {
    /// A new segment from `first_seq` on, in `path`.
    pub(crate) fn add_segment(&self, first_seq: u64, path: PathBuf) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.places.push(SegmentIndex { first_seq, path, index: Vec::new() });
    }

    /// The segment holding `seq`, and a record boundary at or before it.
    pub(crate) fn on_disk(&self, seq: u64) -> Option<(PathBuf, u64)> {
        self.places(|segments| on_disk(segments, seq))
    }
}

fn on_disk(segments: &[SegmentIndex], seq: u64) -> Option<(PathBuf, u64)> {
    let i = segments.iter().rposition(|seg| seg.first_seq <= seq)?;
    let SegmentIndex { path, index, .. } = &segments[i];
    let offset = match index.partition_point(|(s, _)| *s <= seq) {
        0 => HEADER_LEN,
        k => index[k - 1].1,
    };
    Some((path.clone(), offset))
}

/// What a tail entry is counted as costing.
fn entry_cost(json: &Bytes) -> usize {
    json.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(entries: usize, bytes: usize) -> Shared {
        let segment = SegmentIndex { first_seq: 1, path: PathBuf::from("1.seg"), index: vec![(1, HEADER_LEN)] };
        Shared::new(vec![segment], HashMap::new(), 0, [0; 32], entries).with_recent_bytes(bytes)
    }

    fn publish(s: &Shared, seqs: std::ops::RangeInclusive<u64>, size: usize) {
        let head = *seqs.end();
        let entries = seqs.map(|seq| (seq, Bytes::from(vec![b'x'; size])));
        s.publish(|_| {}, entries, std::iter::empty(), head, [0; 32]);
    }

    fn tail(s: &Shared) -> (usize, usize, Option<u64>) {
        let st = s.state.read().unwrap();
        (st.recent.len(), st.recent_bytes, st.recent.front().map(|(seq, _)| *seq))
    }

    /// Regression (issue 15): the tail was bounded by count only, so 65,536
    /// actions of a MiB each were all kept in memory.
    #[test]
    fn the_tail_is_bounded_by_bytes_as_well_as_count() {
        let s = shared(65_536, 1024 * 1024);
        publish(&s, 1..=100, 100 * 1024);
        let (len, bytes, front) = tail(&s);
        assert!(bytes <= 1024 * 1024, "{bytes}");
        assert_eq!((len, front), (10, Some(91)));
        // The newest entries are served from memory, the older from disk.
        let all = ReadLimits { max_entries: 1000, max_bytes: usize::MAX };
        let entries = s.locate(95, 100, all).expect("seq 95 should be in memory");
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (95..=100).collect::<Vec<_>>());
        assert!(s.locate(90, 100, all).is_none());
        assert_eq!(s.on_disk(90).map(|(_, offset)| offset), Some(HEADER_LEN));
        // Many small entries: the count bound bites first.
        let s = shared(50, 1024 * 1024);
        publish(&s, 1..=1000, 10);
        assert_eq!(tail(&s), (50, 50 * (10 + ENTRY_OVERHEAD), Some(951)));
        // An entry larger than the whole bound is not kept at all.
        let s = shared(100, 1000);
        publish(&s, 1..=3, 5000);
        assert_eq!(tail(&s), (0, 0, None));
        assert!(s.locate(3, 3, all).is_none());
    }
}
