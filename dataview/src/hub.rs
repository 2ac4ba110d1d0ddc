//! The hub: the engine behind a lock, the recent history, and a
//! notification when the views move on.
//!
//! Clients do not get queues. Each client task remembers the last seq it
//! sent and, when it can send again, asks the hub for what it missed: the
//! pre-serialised patch when it is one seq behind, one combined patch
//! (`from..=seq`: each seq's patch in turn for a drafted app, else the
//! diff between the state it has and the current one) when it is further
//! behind, or a fresh snapshot when it is behind more than
//! the history kept. So every seq is covered exactly once per client, a slow
//! client costs one message rather than thousands, and nobody waits for it.
//! An app whose views are all drafted keeps each recent seq's recorded
//! edits rather than its states, so that its reducers edit the current
//! states in place; a past state is rebuilt when asked by undoing the
//! edits since (`hub/states.rs`). An app with a pure view keeps the
//! states: persistent trees, so keeping the recent ones costs only what
//! changed between them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use nodb_shared::Tree;
use nodb_shared::diff::diff;
use nodb_shared::draft::RecordedPatch;
use nodb_shared::protocol::{CommittedAction, ServerMessage, ViewState};
use nodb_viewserver::{History, Plan, SharedMessages, Versioned, message};
use tokio::sync::watch;

use crate::engine::{Diffs, Edits, Engine, EngineError};
use crate::redaction::Redactions;

/// A rejected action, kept to tell the client that sent it.
#[derive(Clone, Debug)]
pub struct RejectedAction {
    /// The action's id.
    pub id: String,
    /// The client part of the id.
    pub client: String,
    /// Why.
    pub reason: String,
}

impl RejectedAction {
    /// `action`, rejected for `reason`.
    pub fn of(action: &CommittedAction, reason: String) -> RejectedAction {
        let client = action.id.rsplit_once(':').map_or(action.id.as_str(), |(c, _)| c).to_string();
        RejectedAction { id: action.id.clone(), client, reason }
    }
}

/// One seq of the recent history.
#[derive(Clone, Debug)]
struct Entry {
    seq: u64,
    /// Every view's state after this seq, where it is kept: always for an
    /// app with a pure view; for an app whose views are all drafted, only
    /// at a seq whose patch is a diff of whole states (a
    /// `@@nodb/set_state`, a redaction). Otherwise the states are rebuilt
    /// from the current ones when asked (see `hub/states.rs`).
    states: Option<Vec<Tree>>,
    /// Every view's state before this seq, kept with `states` where a
    /// drafted app's patch at this seq is such a diff.
    before: Option<Vec<Tree>>,
    /// How each view's patch for this seq is had: the edits a drafted view
    /// recorded, or a diff (empty: a diff of states that did not change).
    /// Shared, so that a past state is rebuilt off the lock.
    edits: Arc<Vec<Edits>>,
    /// Every view's patch message for this seq: computed when a client
    /// first needs it (never during a replay nobody watches), then shared.
    patches: std::sync::OnceLock<Vec<Bytes>>,
    /// The actions rejected at this seq: the seq's own, or (at a
    /// redaction) those the rebuild now rejects.
    rejected: Vec<RejectedAction>,
}

pub use nodb_viewserver::{AtError, CatchUp, hash};

mod redact;
mod scope;
mod series;
mod snapshots;
mod states;

pub use scope::subtree;
pub use snapshots::{CHECKPOINT_REST, SLOW_WRITE, ViewsAt};
use snapshots::{CheckpointPause, Keep};

/// Counters of the hub.
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// Actions applied.
    pub applied: AtomicU64,
    /// Of those, actions applied in catch-up batches (in place, without
    /// an entry per seq in the history).
    pub batched: AtomicU64,
    /// Actions rejected by a reducer.
    pub rejected: AtomicU64,
    /// Reducer panics caught.
    pub panics: AtomicU64,
    /// Redactions applied (`@@nodb/redact`, undos included).
    pub redactions: AtomicU64,
    /// Messages that covered more than one seq.
    pub coalesced: AtomicU64,
    /// Clients sent a fresh snapshot because they were too far behind.
    pub resynced: AtomicU64,
    /// Connected stream clients.
    pub clients: AtomicU64,
    /// Of those, exact clients (one message per seq).
    pub exact_clients: AtomicU64,
    /// Nanoseconds spent applying actions (the reducers).
    pub apply_nanos: AtomicU64,
    /// Nanoseconds spent diffing states and serialising patches.
    pub diff_nanos: AtomicU64,
    /// Checkpoints not written: reached in catch-up batches while the
    /// snapshotter wrote or rested after a slow write, or a newer one came
    /// while they waited for it.
    pub checkpoints_skipped: AtomicU64,
}

/// The shared view state.
pub struct Hub {
    state: RwLock<HubState>,
    /// `(view, since)` → the combined patch from `since`, or (`since`
    /// `None`) the snapshot, shared by the clients at that point.
    shared: std::sync::Mutex<SharedMessages<(usize, Option<u64>)>>,
    /// Each `@@nodb/snapshot` (and checkpoint) not yet taken by the
    /// snapshotter, with the views at its seq (kept here, since the history
    /// may move past it).
    snapshot_requests: std::sync::Mutex<Vec<(Keep, ViewsAt)>>,
    /// Whether checkpoints reached in catch-up batches are skipped now
    /// (see [`Hub::snapshot_written`]).
    checkpoint_pause: std::sync::Mutex<CheckpointPause>,
    seq_tx: watch::Sender<u64>,
    /// The checkpoint interval: the states at each multiple of it are
    /// handed to the snapshotter like a `@@nodb/snapshot`'s.
    checkpoint_every: Option<u64>,
    /// Where entries that fall out of the history go to be dropped, on a
    /// thread of their own (see [`Hub::apply`]).
    freer: std::sync::mpsc::SyncSender<Entry>,
    /// The app's version, sent with every snapshot.
    version: Option<Arc<str>>,
    /// The app's name, for `/health` without the lock.
    app_name: String,
    /// Whether every view of the app is drafted: then the history keeps
    /// each seq's recorded edits rather than its states, so that nothing
    /// but the engine holds the current states and each edit changes them
    /// in place, copying nothing (see `hub/states.rs`).
    drafted: bool,
    /// The counters.
    pub metrics: HubMetrics,
}

struct HubState {
    engine: Engine,
    /// The recent seqs; the last is always the engine's.
    history: History<Entry>,
    /// The latest rejections, oldest first (at most [`REJECTIONS_KEPT`] or
    /// the history's length): a batch applied in place keeps no entry per
    /// seq, but its senders are still told.
    rejections: VecDeque<(u64, RejectedAction)>,
}

/// At least how many rejections the hub keeps for their senders.
const REJECTIONS_KEPT: usize = 1024;

/// Keeps `rejected` (at `seq`) in `rejections`, dropping the oldest past
/// [`REJECTIONS_KEPT`] or `history_len`, whichever is more.
fn keep_rejection(
    rejections: &mut VecDeque<(u64, RejectedAction)>,
    history_len: usize,
    seq: u64,
    rejected: RejectedAction,
) {
    if rejections.len() >= history_len.max(REJECTIONS_KEPT) {
        rejections.pop_front();
    }
    rejections.push_back((seq, rejected));
}

impl Hub {
    /// A hub over `engine`, keeping the last `history_len` seqs.
    pub fn new(engine: Engine, history_len: usize) -> Arc<Hub> {
        Hub::with_checkpoints(engine, history_len, None)
    }

    /// A hub that also hands the states at every multiple of
    /// `checkpoint_every` to the snapshotter (see
    /// [`Hub::take_snapshot_requests`]).
    pub fn with_checkpoints(engine: Engine, history_len: usize, checkpoint_every: Option<u64>) -> Arc<Hub> {
        Hub::versioned(engine, history_len, checkpoint_every, None)
    }

    /// [`Hub::with_checkpoints`] for the app at `version`, which every
    /// snapshot message names (see [`Hub::version`]).
    pub fn versioned(
        engine: Engine,
        history_len: usize,
        checkpoint_every: Option<u64>,
        version: Option<Arc<str>>,
    ) -> Arc<Hub> {
        let (seq_tx, _) = watch::channel(engine.seq());
        let app_name = engine.app().name.clone();
        let drafted = engine.app().views.iter().all(|v| v.draft.is_some());
        // The history starts with the state the engine starts from, so a
        // client that has it can be sent a patch rather than a snapshot.
        let base = Entry::at(engine.seq(), (!drafted).then(|| engine.states().to_vec()));
        // Dropping an entry frees the nodes only its states still held —
        // what every later action copied — which costs about as much as
        // applying an action; a thread of its own does it beside the one
        // that applies. It ends when the hub is dropped.
        let (freer, evicted) = std::sync::mpsc::sync_channel::<Entry>(1024);
        let spawned = std::thread::Builder::new().name("nodb-hub-free".into()).spawn(move || {
            for entry in evicted {
                drop(entry);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread to free old history entries; they are freed in line");
        }
        let mut history = History::new(history_len);
        history.push(base);
        Arc::new(Hub {
            state: RwLock::new(HubState { engine, history, rejections: VecDeque::new() }),
            shared: std::sync::Mutex::new(SharedMessages::default()),
            snapshot_requests: std::sync::Mutex::new(Vec::new()),
            checkpoint_pause: std::sync::Mutex::default(),
            seq_tx,
            freer,
            checkpoint_every: checkpoint_every.filter(|e| *e > 0),
            version,
            app_name,
            drafted,
            metrics: HubMetrics::default(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HubState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The version of the app's code, as its snapshots name it: a client
    /// whose state another version made is sent a snapshot, not a patch.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The seq the views reflect, watchable.
    pub fn seq(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }

    /// The views' names, in order.
    pub fn view_names(&self) -> Vec<String> {
        self.read().engine.app().views.iter().map(|v| v.name.clone()).collect()
    }

    /// The index of a view.
    pub fn view_index(&self, name: &str) -> Option<usize> {
        self.read().engine.app().view_index(name)
    }

    /// Applies the next committed action.
    ///
    /// # Errors
    /// [`EngineError::OutOfSequence`] if it is not the next seq.
    pub fn apply(&self, action: &CommittedAction) -> Result<(), EngineError> {
        let started = std::time::Instant::now();
        // The entry that falls out of the history is dropped after the lock
        // is released (see `Hub::free`): neither readers nor the next
        // action need wait for it.
        let evicted;
        let seq = {
            let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
            // A control action's patch may be a diff of whole states: a
            // drafted app then keeps the states before it too.
            let before = (self.drafted && crate::engine::is_control(&action.kind)).then(|| s.engine.states().to_vec());
            let applied = s.engine.apply_with(action, Diffs::Skip)?;
            if let Some(r) = &applied.rejection {
                self.metrics.rejected.fetch_add(1, Relaxed);
                tracing::debug!(seq = applied.seq, id = %action.id, reason = %r, "action rejected");
            }
            if applied.snapshot_requested || self.is_checkpoint(applied.seq) {
                self.request_snapshot(ViewsAt::of(&s.engine), Keep::Always);
            }
            if applied.panicked {
                self.metrics.panics.fetch_add(1, Relaxed);
                tracing::error!(seq = applied.seq, id = %action.id, "a reducer panicked; the action is treated as rejected");
            }
            let rejected: Vec<_> = applied.rejection.map(|r| RejectedAction::of(action, r.0)).into_iter().collect();
            if let Some(r) = rejected.first() {
                self.keep_rejection(&mut s, applied.seq, r.clone());
            }
            // A drafted app keeps only the edits, unless the patch is a diff.
            let diffed = applied.edits.iter().any(|e| matches!(e, Edits::Diff));
            let (states, before) = match (self.drafted, diffed) {
                (true, false) => (None, None),
                (true, true) => (Some(s.engine.states().to_vec()), before),
                (false, _) => (Some(s.engine.states().to_vec()), None),
            };
            let entry = Entry { rejected, edits: Arc::new(applied.edits), before, ..Entry::at(applied.seq, states) };
            evicted = s.history.push(entry);
            applied.seq
        };
        if let Some(entry) = evicted {
            self.free(entry);
        }
        self.metrics.applied.fetch_add(1, Relaxed);
        self.metrics.apply_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        self.seq_tx.send_replace(seq);
        Ok(())
    }

    /// Applies `actions` (the consecutive seqs after the current one) in
    /// one go during a long replay: each view over the whole batch on its
    /// own thread (see [`crate::batch`]), or, if a view rejects one or one
    /// is a control action, one action at a time as [`Hub::apply`] does.
    /// The reducers run outside the lock; only the follower applies, so
    /// nothing moves meanwhile. A batch replayed in one go leaves only its
    /// last seq in the history, so a client that was further behind gets
    /// a snapshot — as it would once those seqs had fallen out of it.
    ///
    /// # Errors
    /// As for [`Hub::apply`].
    pub fn apply_batch(&self, actions: &[CommittedAction]) -> Result<(), EngineError> {
        // A redaction needs the views rebuilt (`Hub::apply_redaction`): the
        // batch stops before it, and the engine refuses it, unchanged.
        if let Some(at) = actions.iter().position(|a| a.kind == crate::engine::REDACT) {
            self.apply_batch(&actions[..at])?;
            return self.apply(&actions[at]);
        }
        // A batch ends at each checkpoint, so its states are at hand.
        if let Some(cut) = actions.iter().position(|a| self.is_checkpoint(a.seq))
            && cut + 1 < actions.len()
        {
            self.apply_batch(&actions[..=cut])?;
            return self.apply_batch(&actions[cut + 1..]);
        }
        let Some(last) = actions.last() else { return Ok(()) };
        if self.read().engine.app().views.iter().all(|v| v.draft.is_some()) {
            return self.apply_in_place(actions);
        }
        let started = std::time::Instant::now();
        let (app, states, seq, bytes, limits, redactions) = {
            let s = self.read();
            let e = &s.engine;
            (e.app().clone(), e.states().to_vec(), e.seq(), e.bytes().to_vec(), *e.limits(), e.redactions().clone())
        };
        if let Some(a) = actions.iter().zip(seq + 1..).find(|(a, expected)| a.seq != *expected) {
            return Err(EngineError::OutOfSequence { expected: a.1, got: a.0.seq });
        }
        let Some((next, bytes)) = crate::batch::replay_views_within(&app, &states, &bytes, &limits, actions) else {
            return actions.iter().try_for_each(|a| self.apply(a));
        };
        if self.is_checkpoint(last.seq) {
            let views = ViewsAt { seq: last.seq, states: next.clone(), redactions: redactions.clone() };
            self.request_snapshot(views, Keep::UntilNewer);
        }
        let entry = Entry::at(last.seq, Some(next.clone()));
        let evicted = {
            let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
            s.engine =
                Engine::restore_measured(app, last.seq, next, bytes).with_limits(limits).with_redactions(redactions);
            s.history.restart(entry)
        };
        drop(evicted);
        self.metrics.applied.fetch_add(actions.len() as u64, Relaxed);
        self.metrics.batched.fetch_add(actions.len() as u64, Relaxed);
        self.metrics.apply_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        self.seq_tx.send_replace(last.seq);
        Ok(())
    }

    /// [`Hub::apply_batch`] for an app whose views are all drafted: under
    /// the write lock, the history is let go of — so nothing else holds
    /// the states and each edit changes them where they are, copying
    /// nothing — and the actions are applied with [`Engine::apply_run`]
    /// (each view on a thread of its own); the history then starts again
    /// at the batch's last seq. Rejections are kept for their senders;
    /// checkpoints and `@@nodb/snapshot`s are handed to the snapshotter
    /// as usual, each with the states at its seq (the batch is applied in
    /// parts that end there). Readers wait for the batch (the old history
    /// freed, then the batch: about 20 ms for 1,024 warehouse actions).
    fn apply_in_place(&self, actions: &[CommittedAction]) -> Result<(), EngineError> {
        let started = std::time::Instant::now();
        let Some(last) = actions.last() else { return Ok(()) };
        {
            let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
            let seq = s.engine.seq();
            if let Some(a) = actions.iter().zip(seq + 1..).find(|(a, expected)| a.seq != *expected) {
                return Err(EngineError::OutOfSequence { expected: a.1, got: a.0.seq });
            }
            drop(s.history.take());
            let snapshot_at = |a: &CommittedAction| a.kind == crate::engine::SNAPSHOT || self.is_checkpoint(a.seq);
            for part in actions.split_inclusive(snapshot_at) {
                let cap = s.history.capacity();
                for (applied, action) in s.engine.apply_run(part)?.into_iter().zip(part) {
                    self.note_batched(&mut s.rejections, cap, applied, action);
                }
                match part.last() {
                    Some(a) if a.kind == crate::engine::SNAPSHOT => {
                        self.request_snapshot(ViewsAt::of(&s.engine), Keep::Always);
                    }
                    Some(a) if self.is_checkpoint(a.seq) => {
                        self.request_snapshot(ViewsAt::of(&s.engine), Keep::UntilNewer);
                    }
                    _ => {}
                }
            }
            // The batch's last seq starts the history again, with no states:
            // those are the engine's (see `hub/states.rs`).
            s.history.push(Entry::at(last.seq, None));
        }
        self.metrics.applied.fetch_add(actions.len() as u64, Relaxed);
        self.metrics.batched.fetch_add(actions.len() as u64, Relaxed);
        self.metrics.apply_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        self.seq_tx.send_replace(last.seq);
        Ok(())
    }

    /// Drops `entry`, fallen out of the history: one that keeps states on
    /// the freeing thread (in line if it is gone, or missing), since
    /// freeing the nodes only it still held takes about as long as an
    /// action; one that keeps only edits in line, since waking that thread
    /// costs more than freeing them.
    fn free(&self, entry: Entry) {
        if entry.states.is_none() && entry.before.is_none() {
            return drop(entry);
        }
        if let Err(std::sync::mpsc::SendError(entry)) = self.freer.send(entry) {
            drop(entry);
        }
    }

    fn keep_rejection(&self, s: &mut HubState, seq: u64, rejected: RejectedAction) {
        keep_rejection(&mut s.rejections, s.history.capacity(), seq, rejected);
    }

    /// Counts and logs what an action of a batch applied in place did, and
    /// keeps its rejection for its sender (`history_len`: the history's
    /// capacity).
    fn note_batched(
        &self,
        rejections: &mut VecDeque<(u64, RejectedAction)>,
        history_len: usize,
        applied: crate::engine::Applied,
        action: &CommittedAction,
    ) {
        if let Some(r) = applied.rejection {
            self.metrics.rejected.fetch_add(1, Relaxed);
            tracing::debug!(seq = applied.seq, id = %action.id, reason = %r, "action rejected");
            keep_rejection(rejections, history_len, applied.seq, RejectedAction::of(action, r.0));
        }
        if applied.panicked {
            self.metrics.panics.fetch_add(1, Relaxed);
            tracing::error!(seq = applied.seq, id = %action.id, "a reducer panicked; the action is treated as rejected");
        }
    }

    /// How many seqs the history keeps.
    pub fn history_len(&self) -> usize {
        self.read().history.capacity()
    }

    /// The next seqs after `since` for an exact client of view `view`: up
    /// to `max` patch messages, one per seq and never combined, from the
    /// history in memory; [`Exact::NotInHistory`] when `since` is older
    /// than the history (the caller replays from a checkpoint instead).
    pub fn exact(&self, view: usize, since: u64, max: usize) -> Exact {
        let s = self.read();
        if since >= s.engine.seq() {
            return Exact::Nothing;
        }
        if s.history.get(since).is_none() {
            return Exact::NotInHistory;
        }
        let steps = s.history.after(since).take(max.max(1)).map(|(prev, entry)| ExactStep {
            seq: entry.seq,
            message: self.patches(&s, prev, entry)[view].clone(),
            rejected: entry.rejected.clone(),
        });
        Exact::Patches(steps.collect())
    }

    /// Every view's patch message from `prev` to `entry` (the next seq):
    /// written from the recorded edits or diffed, and serialised once, by
    /// the first client that asks.
    fn patches<'a>(&self, s: &HubState, prev: &Entry, entry: &'a Entry) -> &'a Vec<Bytes> {
        entry.patches.get_or_init(|| {
            let started = std::time::Instant::now();
            let views = s.engine.states().len();
            // A drafted app's entry without edits changed nothing.
            let nothing = Edits::Recorded(Vec::new());
            let edits = |i: usize| match entry.edits.get(i) {
                None if self.drafted && entry.before.is_none() => Some(&nothing),
                edits => edits,
            };
            let diffed = (0..views).any(|i| !matches!(edits(i), Some(Edits::Recorded(_))));
            // Whole states only where a view's patch is a diff.
            let (old, new) = if diffed {
                let old = entry.before.clone().or_else(|| s.states_at(prev.seq));
                (old, entry.states.clone().or_else(|| s.states_at(entry.seq)))
            } else {
                (None, None)
            };
            let state = |states: &Option<Vec<Tree>>, i: usize| states.as_ref().and_then(|s| s.get(i)).cloned();
            let patches = (0..views)
                .map(|i| {
                    let (old, new) = (state(&old, i).unwrap_or_default(), state(&new, i).unwrap_or_default());
                    seq_patch_message(entry.seq, edits(i), &old, &new)
                })
                .collect();
            self.metrics.diff_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
            patches
        })
    }

    /// What a client of view `view` that has seq `since` (`None`: nothing
    /// yet) should receive now, and the seq it will then have.
    pub fn catch_up(&self, view: usize, since: Option<u64>) -> (CatchUp, u64) {
        let s = self.read();
        let seq = s.engine.seq();
        let catch_up = match s.history.plan(since) {
            Plan::NoState | Plan::Nothing => CatchUp::Nothing,
            Plan::Snapshot { resync, .. } => {
                if resync {
                    self.metrics.resynced.fetch_add(1, Relaxed);
                }
                CatchUp::Snapshot(self.shared_message(view, None, seq, || {
                    let state = s.engine.states().get(view).cloned().unwrap_or_default();
                    let version = self.version.as_deref().map(str::to_string);
                    message(&ServerMessage::Snapshot { seq, state, sources: None, version })
                }))
            }
            Plan::Next { prev, last } => match self.patches(&s, prev, last).get(view) {
                Some(p) => CatchUp::Patch(p.clone()),
                None => CatchUp::Nothing,
            },
            Plan::Combined { base, .. } => {
                self.metrics.coalesced.fetch_add(1, Relaxed);
                CatchUp::Combined(self.shared_message(view, Some(base.seq), seq, || {
                    let started = std::time::Instant::now();
                    // A drafted app's: each seq's patch in turn (see
                    // `hub/states.rs`); else the diff of the two states.
                    if let Some(msg) = self.drafted.then(|| self.concatenated(&s, view, base.seq)).flatten() {
                        self.metrics.diff_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
                        return msg;
                    }
                    let state =
                        |states: Option<Vec<Tree>>| states.and_then(|s| s.into_iter().nth(view)).unwrap_or_default();
                    let ops = diff(&state(s.states_at(base.seq)), &state(Some(s.engine.states().to_vec())));
                    let msg = message(&ServerMessage::Patch { from: Some(base.seq + 1), seq, ops, sources: None });
                    self.metrics.diff_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
                    msg
                }))
            }
        };
        (catch_up, seq)
    }

    /// The message for clients of `view` at `since` that are to reach
    /// `seq`: built once by `build`, then shared until the seq moves on.
    fn shared_message(&self, view: usize, since: Option<u64>, seq: u64, build: impl FnOnce() -> Bytes) -> Bytes {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).get_or_build((view, since), seq, build)
    }

    /// The rejections of `client`'s actions in seqs `after+1..=upto` that
    /// the hub still keeps (the latest thousand or more).
    pub fn rejections(&self, client: &str, after: u64, upto: u64) -> Vec<(u64, RejectedAction)> {
        self.read()
            .rejections
            .iter()
            .filter(|(seq, r)| *seq > after && *seq <= upto && r.client == client)
            .cloned()
            .collect()
    }

    /// Every rejection in seqs `after+1..=upto` that the hub still keeps
    /// (the latest thousand or more), oldest first, whoever sent it.
    pub fn rejections_between(&self, after: u64, upto: u64) -> Vec<(u64, RejectedAction)> {
        self.read().rejections.iter().filter(|(seq, _)| *seq > after && *seq <= upto).cloned().collect()
    }

    /// The app the views belong to.
    pub fn app(&self) -> crate::app::App {
        self.read().engine.app().clone()
    }

    /// View `view` as `GET /views/{name}` returns it, now or (from the
    /// history) at seq `at`.
    ///
    /// # Errors
    /// [`AtError::Ahead`] for a seq beyond the views, [`AtError::Gone`]
    /// for one older than the history kept.
    pub fn view_state(&self, view: usize, at: Option<u64>) -> Result<ViewState, AtError> {
        let (seq, state) = self.state_at(view, at)?;
        Ok(ViewState { seq, hash: hash(&state), state, sources: None })
    }

    /// View `view`'s state now or (from the history) at seq `at`, with its
    /// seq: O(1) clones taken under the lock; a drafted app's past state
    /// is rebuilt from them (`hub/states.rs`), and hashed and serialised,
    /// outside it.
    ///
    /// # Errors
    /// As for [`Hub::view_state`].
    pub fn state_at(&self, view: usize, at: Option<u64>) -> Result<(u64, Tree), AtError> {
        let (seq, rebuild, oldest) = {
            let s = self.read();
            let seq = s.history.at(at)?.seq;
            (seq, s.rebuild_of(seq), s.history.oldest().unwrap_or(seq))
        };
        // The edits since are undone off the lock: the next action need
        // not wait for them.
        let states = rebuild.and_then(states::Rebuild::run).ok_or(AtError::Gone { oldest })?;
        Ok((seq, states.into_iter().nth(view).unwrap_or_default()))
    }

    /// The seq and every view's state, consistently (O(1) clones).
    pub fn current(&self) -> (u64, Vec<Tree>) {
        let s = self.read();
        (s.engine.seq(), s.engine.states().to_vec())
    }

    /// The views now, with the redactions they reflect (O(1) clones).
    pub fn current_views(&self) -> ViewsAt {
        ViewsAt::of(&self.read().engine)
    }

    /// The redactions the views reflect now.
    pub fn redactions(&self) -> Redactions {
        self.read().engine.redactions().clone()
    }

    /// The seq the views reflect.
    pub fn current_seq(&self) -> u64 {
        // From the watch, not the lock: `/health` and `/ready` answer while
        // a batch is applied (the watch moves once the views have).
        *self.seq_tx.borrow()
    }

    /// The app's name.
    pub fn app_name(&self) -> &str {
        &self.app_name
    }
}

/// What an exact client gets next (see [`Hub::exact`]).
#[derive(Debug)]
pub enum Exact {
    /// Nothing new.
    Nothing,
    /// The next seqs, in order, one message each.
    Patches(Vec<ExactStep>),
    /// The client's seq is older than the history in memory.
    NotInHistory,
}

/// One seq for an exact client.
#[derive(Debug)]
pub struct ExactStep {
    /// The seq.
    pub seq: u64,
    /// Its patch message (`{"type":"patch","seq":…,"ops":[…]}`).
    pub message: Bytes,
    /// The actions rejected at this seq: its own, if a reducer rejected
    /// it, or (at a redaction) those the rebuild now rejects.
    pub rejected: Vec<RejectedAction>,
}

/// The body of `GET /views/{name}` — `{"seq", "hash", "state"}`, what
/// [`ViewState`] serialises to — with the state serialised once, for both
/// the hash and the body.
pub fn view_body(seq: u64, state: &Tree) -> String {
    let json = state.to_json_string();
    let hash = blake3::hash(json.as_bytes()).to_hex();
    format!("{{\"seq\":{seq},\"hash\":\"{hash}\",\"state\":{json}}}")
}

/// The patch message of one seq.
pub(crate) fn patch_message(seq: u64, ops: json_patch::Patch) -> Bytes {
    message(&ServerMessage::Patch { from: None, seq, ops, sources: None })
}

/// The patch message of one view at one seq, from `old` to `new`: written
/// straight from the edits its draft recorded (the same bytes as
/// [`ServerMessage::Patch`] with their patch), or a diff of the two states.
pub fn seq_patch_message(seq: u64, edits: Option<&Edits>, old: &Tree, new: &Tree) -> Bytes {
    match edits {
        Some(Edits::Recorded(ops)) => {
            // [`ServerMessage::Patch`] of one seq, written by hand around
            // the recorded ops, in a buffer with room for a typical seq's
            // message (growing from 128 bytes copied it twice).
            let mut out = Vec::with_capacity(512);
            out.extend_from_slice(b"{\"type\":\"patch\",\"seq\":");
            out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
            out.extend_from_slice(b",\"ops\":");
            match RecordedPatch(ops).write_json(&mut out) {
                Ok(()) => {
                    out.push(b'}');
                    Bytes::from(out)
                }
                Err(_) => Bytes::new(),
            }
        }
        _ => patch_message(seq, diff(old, new)),
    }
}

impl Versioned for Entry {
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl Entry {
    /// The entry of `seq` with `states` (if kept), no edits, no rejection.
    fn at(seq: u64, states: Option<Vec<Tree>>) -> Entry {
        Entry { seq, states, before: None, edits: Arc::default(), patches: Default::default(), rejected: Vec::new() }
    }
}

#[cfg(test)]
#[path = "hub/tests.rs"]
mod tests;
