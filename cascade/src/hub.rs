//! A cascade's recent updates, shared by every client: what a client that
//! has update `since` should be sent to catch up.
//!
//! This is the data view's hub (`nodb_dataview::hub`) for a state that
//! comes with `sources` instead of from an engine: a client one update
//! behind gets that update's patch message (diffed and serialised once, by
//! the first client that asks), a client further behind within the history
//! gets one combined patch (`from..=seq`), and a new client, or one beyond
//! the history (a `since` from before a restart), gets a snapshot. Every
//! message carries the `sources` of the state it brings the client to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{OnceLock, RwLock};

use bytes::Bytes;
use nodb_shared::Tree;
use nodb_shared::diff::diff;
use nodb_shared::protocol::{ServerMessage, Sources, ViewState};
use tokio::sync::watch;

pub use nodb_viewserver::CatchUp;

/// Why `GET /views/{name}?at=N` has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtError {
    /// No state yet: an upstream has not sent its first one.
    NoState,
    /// `at` is beyond the cascade's seq.
    Ahead {
        /// The cascade's seq.
        seq: u64,
    },
    /// `at` is older than the history kept (a cascade keeps no snapshots).
    Gone {
        /// The oldest seq kept.
        oldest: u64,
    },
}

/// The hub's counters.
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// Updates made.
    pub updates: AtomicU64,
    /// Messages that covered more than one update.
    pub coalesced: AtomicU64,
    /// Clients sent a snapshot because they were too far behind (or came
    /// back with a `since` from an earlier run).
    pub resynced: AtomicU64,
    /// Connected stream clients.
    pub clients: AtomicU64,
    /// Nanoseconds spent diffing and serialising patches.
    pub diff_nanos: AtomicU64,
}

/// A cascade's counters beyond the hub's.
#[derive(Debug, Default)]
pub struct CascadeStats {
    /// Nanoseconds spent in the reducer.
    pub reduce_nanos: AtomicU64,
    /// Reducer panics caught.
    pub panics: AtomicU64,
    /// Upstream changes folded into updates.
    pub changes: AtomicU64,
}

struct Update {
    seq: u64,
    state: Tree,
    sources: Sources,
    /// The patch message from the previous update: made when a client
    /// first needs it, then shared.
    patch: OnceLock<Bytes>,
}

/// One cascade's recent states.
pub struct Hub {
    name: String,
    history: RwLock<VecDeque<Update>>,
    history_len: usize,
    first_seq: u64,
    seq_tx: watch::Sender<u64>,
    /// The counters.
    pub metrics: HubMetrics,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("name", &self.name).field("seq", &self.current_seq()).finish()
    }
}

impl Hub {
    /// A hub for the cascade `name` keeping `history_len` updates, whose
    /// first update will be numbered `first_seq` (at least 1).
    pub fn new(name: &str, history_len: usize, first_seq: u64) -> Hub {
        Hub {
            name: name.to_string(),
            history: RwLock::new(VecDeque::new()),
            history_len: history_len.max(1),
            first_seq: first_seq.max(1),
            seq_tx: watch::channel(0).0,
            metrics: HubMetrics::default(),
        }
    }

    /// The cascade's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, VecDeque<Update>> {
        self.history.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The seq of the latest update (0 before the first), watchable.
    pub fn seq(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }

    /// The seq of the latest update, 0 before the first.
    pub fn current_seq(&self) -> u64 {
        *self.seq_tx.borrow()
    }

    /// The latest state and its sources, if there is one.
    pub fn current(&self) -> Option<(u64, Tree, Sources)> {
        self.read().back().map(|u| (u.seq, u.state.clone(), u.sources.clone()))
    }

    /// Records the next update; its seq.
    pub fn push(&self, state: Tree, sources: Sources) -> u64 {
        let mut evicted = None;
        let seq = {
            let mut h = self.history.write().unwrap_or_else(|e| e.into_inner());
            let seq = h.back().map_or(self.first_seq, |u| u.seq + 1);
            if h.len() == self.history_len {
                evicted = h.pop_front();
            }
            h.push_back(Update { seq, state, sources, patch: OnceLock::new() });
            seq
        };
        // Freeing what only the evicted state held need not hold the lock.
        drop(evicted);
        self.metrics.updates.fetch_add(1, Relaxed);
        self.seq_tx.send_replace(seq);
        seq
    }

    /// What a client that has update `since` (`None`: nothing yet) should
    /// be sent now, and the seq it will then have (0: no state yet).
    pub fn catch_up(&self, since: Option<u64>) -> (CatchUp, u64) {
        let h = self.read();
        let Some(last) = h.back() else { return (CatchUp::Nothing, since.unwrap_or(0)) };
        let snapshot = |last: &Update| {
            let m = ServerMessage::Snapshot {
                seq: last.seq,
                state: last.state.clone(),
                sources: Some(last.sources.clone()),
            };
            CatchUp::Snapshot(message(&m))
        };
        let Some(since) = since else { return (snapshot(last), last.seq) };
        if since == last.seq {
            return (CatchUp::Nothing, last.seq);
        }
        let oldest = h.front().map_or(last.seq, |u| u.seq);
        if since < oldest || since > last.seq {
            // Not a state of this run's history: most often a client of an
            // earlier run of this cascade.
            self.metrics.resynced.fetch_add(1, Relaxed);
            return (snapshot(last), last.seq);
        }
        let base = &h[(since - oldest) as usize];
        let started = std::time::Instant::now();
        let msg = if since + 1 == last.seq {
            last.patch
                .get_or_init(|| {
                    message(&ServerMessage::Patch {
                        from: None,
                        seq: last.seq,
                        ops: diff(&base.state, &last.state),
                        sources: Some(last.sources.clone()),
                    })
                })
                .clone()
        } else {
            self.metrics.coalesced.fetch_add(1, Relaxed);
            message(&ServerMessage::Patch {
                from: Some(since + 1),
                seq: last.seq,
                ops: diff(&base.state, &last.state),
                sources: Some(last.sources.clone()),
            })
        };
        self.metrics.diff_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        let catch_up = if since + 1 == last.seq { CatchUp::Patch(msg) } else { CatchUp::Combined(msg) };
        (catch_up, last.seq)
    }

    /// The state as `GET /views/{name}` returns it: now, or at seq `at`
    /// from the history.
    ///
    /// # Errors
    /// An [`AtError`] when there is no such state in memory.
    pub fn view_state(&self, at: Option<u64>) -> Result<ViewState, AtError> {
        let h = self.read();
        let last = h.back().ok_or(AtError::NoState)?;
        let oldest = h.front().map_or(last.seq, |u| u.seq);
        let update = match at {
            None => last,
            Some(at) if at > last.seq => return Err(AtError::Ahead { seq: last.seq }),
            Some(at) if at < oldest => return Err(AtError::Gone { oldest }),
            Some(at) => &h[(at - oldest) as usize],
        };
        Ok(ViewState {
            seq: update.seq,
            hash: hash(&update.state),
            state: update.state.clone(),
            sources: Some(update.sources.clone()),
        })
    }
}

/// The hex BLAKE3 hash of a state's deterministic serialisation (the same
/// hash a data view reports, so replicas can be compared).
pub fn hash(state: &Tree) -> String {
    blake3::hash(state.to_json_string().as_bytes()).to_hex().to_string()
}

fn message(m: &ServerMessage) -> Bytes {
    Bytes::from(serde_json::to_vec(m).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(c: &CatchUp) -> Value {
        match c {
            CatchUp::Patch(b) | CatchUp::Combined(b) | CatchUp::Snapshot(b) => serde_json::from_slice(b).unwrap(),
            CatchUp::Nothing => Value::Null,
        }
    }

    fn sources(n: u64) -> Sources {
        [("up".to_string(), n)].into()
    }

    #[test]
    fn clients_get_a_patch_a_combined_patch_or_a_snapshot_with_sources() {
        let hub = Hub::new("c", 3, 100);
        assert!(matches!(hub.catch_up(None).0, CatchUp::Nothing));
        assert_eq!(hub.view_state(None).unwrap_err(), AtError::NoState);
        for k in 1..=5u64 {
            assert_eq!(hub.push(Tree::from(json!({"k": k})), sources(k * 10)), 99 + k);
        }
        let (c, seq) = hub.catch_up(Some(103));
        assert_eq!(seq, 104);
        assert!(matches!(c, CatchUp::Patch(_)));
        assert_eq!(
            parse(&c),
            json!({"type": "patch", "seq": 104, "ops": [{"op": "replace", "path": "/k", "value": 5}], "sources": {"up": 50}})
        );
        let c = hub.catch_up(Some(102)).0;
        assert!(matches!(c, CatchUp::Combined(_)));
        assert_eq!(parse(&c)["from"], 103);
        // Older than the 3 kept, or from another run: a snapshot.
        for since in [Some(101), Some(7), Some(500), None] {
            let c = hub.catch_up(since).0;
            assert!(matches!(c, CatchUp::Snapshot(_)), "{since:?}");
            assert_eq!(parse(&c), json!({"type": "snapshot", "seq": 104, "state": {"k": 5}, "sources": {"up": 50}}));
        }
        assert!(matches!(hub.catch_up(Some(104)).0, CatchUp::Nothing));
        let at = hub.view_state(Some(103)).unwrap();
        assert_eq!((at.seq, at.state, at.sources), (103, Tree::from(json!({"k": 4})), Some(sources(40))));
        assert_eq!(hub.view_state(Some(105)).unwrap_err(), AtError::Ahead { seq: 104 });
        assert_eq!(hub.view_state(Some(101)).unwrap_err(), AtError::Gone { oldest: 102 });
        assert_eq!(hub.view_state(None).unwrap().hash, hash(&Tree::from(json!({"k": 5}))));
        assert_eq!(hub.metrics.resynced.load(Relaxed), 3);
    }
}
