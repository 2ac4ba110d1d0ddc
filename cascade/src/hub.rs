//! A cascade's recent updates, shared by every client: what a client that
//! has update `since` should be sent to catch up.
//!
//! The history and the catch-up decision are every view server's
//! (`nodb_viewserver::History`); what is the cascade's own is a state that
//! comes with `sources` instead of from an engine. A client one update
//! behind gets that update's patch message (diffed and serialised once, by
//! the first client that asks), a client further behind within the history
//! gets one combined patch (`from..=seq`), and a new client, or one beyond
//! the history (a `since` from before a restart), gets a snapshot. Every
//! message carries the `sources` of the state it brings the client to.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, RwLock};

use bytes::Bytes;
use nodb_shared::Tree;
use nodb_shared::diff::diff;
use nodb_shared::protocol::{ServerMessage, Sources, ViewState};
use nodb_viewserver::{History, Plan, SharedMessages, Versioned, message};
use tokio::sync::watch;

pub use nodb_viewserver::{AtError, CatchUp, hash};

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

impl Versioned for Update {
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// One cascade's recent states.
pub struct Hub {
    name: String,
    history: RwLock<History<Update>>,
    /// Combined patches and snapshots, shared by the clients at one point.
    shared: Mutex<SharedMessages<Option<u64>>>,
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
            history: RwLock::new(History::new(history_len)),
            shared: Mutex::default(),
            first_seq: first_seq.max(1),
            seq_tx: watch::channel(0).0,
            metrics: HubMetrics::default(),
        }
    }

    /// The cascade's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, History<Update>> {
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
        self.read().last().map(|u| (u.seq, u.state.clone(), u.sources.clone()))
    }

    /// Records the next update; its seq.
    pub fn push(&self, state: Tree, sources: Sources) -> u64 {
        let (seq, evicted) = {
            let mut h = self.history.write().unwrap_or_else(|e| e.into_inner());
            let seq = h.last().map_or(self.first_seq, |u| u.seq + 1);
            (seq, h.push(Update { seq, state, sources, patch: OnceLock::new() }))
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
        let started = std::time::Instant::now();
        let patch = |base: &Update, last: &Update, from: Option<u64>| {
            message(&ServerMessage::Patch {
                from,
                seq: last.seq,
                ops: diff(&base.state, &last.state),
                sources: Some(last.sources.clone()),
            })
        };
        let (catch_up, seq) = match h.plan(since) {
            Plan::NoState => return (CatchUp::Nothing, since.unwrap_or(0)),
            Plan::Nothing => return (CatchUp::Nothing, since.unwrap_or(0)),
            Plan::Snapshot { last, resync } => {
                if resync {
                    // Most often a client of an earlier run of this cascade.
                    self.metrics.resynced.fetch_add(1, Relaxed);
                }
                let msg = self.shared(None, last.seq, || {
                    let state = last.state.clone();
                    let sources = Some(last.sources.clone());
                    message(&ServerMessage::Snapshot { seq: last.seq, state, sources, version: None })
                });
                return (CatchUp::Snapshot(msg), last.seq);
            }
            Plan::Next { prev, last } => {
                (CatchUp::Patch(last.patch.get_or_init(|| patch(prev, last, None)).clone()), last.seq)
            }
            Plan::Combined { base, last } => {
                self.metrics.coalesced.fetch_add(1, Relaxed);
                let msg = self.shared(Some(base.seq), last.seq, || patch(base, last, Some(base.seq + 1)));
                (CatchUp::Combined(msg), last.seq)
            }
        };
        self.metrics.diff_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        (catch_up, seq)
    }

    fn shared(&self, since: Option<u64>, seq: u64, build: impl FnOnce() -> Bytes) -> Bytes {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).get_or_build(since, seq, build)
    }

    /// The state as `GET /views/{name}` returns it: now, or at seq `at`
    /// from the history.
    ///
    /// # Errors
    /// An [`AtError`] when there is no such state in memory.
    pub fn view_state(&self, at: Option<u64>) -> Result<ViewState, AtError> {
        let h = self.read();
        let update = h.at(at)?;
        Ok(ViewState {
            seq: update.seq,
            hash: hash(&update.state),
            state: update.state.clone(),
            sources: Some(update.sources.clone()),
        })
    }
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
