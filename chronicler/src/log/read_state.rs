//! What readers of the log see, published by the writer after each
//! durable write: each segment's sparse index, the in-memory tail of recent
//! actions, every client's last number and seq, and the durable head.
//! Readers never touch the writer; the writer only ever publishes here.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::RwLock;

use bytes::Bytes;
use tokio::sync::watch;

use super::record::Hash;
use super::segment::HEADER_LEN;
use super::{LogEntry, ReadLimits};

/// Where readers find records: segment index and the in-memory tail.
pub struct Shared {
    state: RwLock<ReadState>,
    head_tx: watch::Sender<u64>,
    recent_cap: usize,
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

struct ReadState {
    segments: Vec<SegmentIndex>,
    recent: VecDeque<(u64, Bytes)>,
    durable_hash: Hash,
    /// Per client, the number and seq of its last durable action.
    clients: HashMap<String, (u64, u64)>,
}

impl Shared {
    /// The read state of a log just recovered: its segments, each client's last number and seq, the head
    /// and its chain hash, keeping up to `recent_cap` actions in memory.
    pub(crate) fn new(
        segments: Vec<SegmentIndex>,
        clients: HashMap<String, (u64, u64)>,
        head: u64,
        hash: Hash,
        recent_cap: usize,
    ) -> Shared {
        Shared {
            state: RwLock::new(ReadState { segments, recent: VecDeque::new(), durable_hash: hash, clients }),
            head_tx: watch::channel(head).0,
            recent_cap,
        }
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

    pub(crate) fn add_segment(&self, first_seq: u64, path: PathBuf) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.segments.push(SegmentIndex { first_seq, path, index: Vec::new() });
    }

    pub(crate) fn publish<'a>(
        &self,
        segment_first: u64,
        index: Vec<(u64, u64)>,
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
                        s.clients.insert(client.to_string(), last);
                    }
                }
            }
            if let Some(seg) = s.segments.iter_mut().rev().find(|seg| seg.first_seq == segment_first) {
                seg.index.extend(index);
            }
            for e in entries {
                if s.recent.len() == self.recent_cap {
                    s.recent.pop_front();
                }
                s.recent.push_back(e);
            }
            s.durable_hash = hash;
        }
        self.head_tx.send_replace(head);
    }

    /// Entries from `from` in memory, or where on disk to find it.
    pub(crate) fn locate(&self, from: u64, head: u64, limits: ReadLimits) -> Located {
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
            return Located::Memory(out);
        }
        let Some(i) = s.segments.iter().rposition(|seg| seg.first_seq <= from) else {
            return Located::Memory(Vec::new());
        };
        let SegmentIndex { path, index, .. } = &s.segments[i];
        let offset = match index.partition_point(|(seq, _)| *seq <= from) {
            0 => HEADER_LEN,
            k => index[k - 1].1,
        };
        Located::Disk { path: path.clone(), offset }
    }
}

pub(crate) enum Located {
    Memory(Vec<LogEntry>),
    Disk { path: PathBuf, offset: u64 },
}
