//! Reading the past: the views at any seq older than the history kept in
//! memory, in bounded time, for `GET /views/{name}?at=N` and for exact
//! streams that are far behind.
//!
//! A past state is the nearest *base* at or before the seq — a state in
//! the small cache, or the checkpoint snapshot at the last multiple of the
//! checkpoint interval (kept for good, see [`crate::snapshot`]) — plus the
//! actions after it, read from the chronicler and replayed. So a read
//! replays fewer actions than the checkpoint interval (unless a checkpoint
//! is missing, say for history older than the snapshot store). Replays run
//! on the blocking pool, at most `readers` at once: the others wait their
//! turn for a while, then get [`HistoryError::Busy`], so history reads
//! never starve live work. A snapshot pruned while a read runs is passed
//! over for an older one; checkpoints are never pruned.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use nodb_client::{ActionStream, ServiceUrl};
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::engine::{Diffs, Engine, EngineError};
use crate::follow::{Chroniclers, committed};
use crate::hub::{Hub, RejectedAction};
use crate::redaction::Redactions;
use crate::snapshot::{SnapshotError, Snapshots};

/// How many actions are read from the chronicler and replayed in one go.
const CHUNK: usize = 1024;

/// How history reads are bounded.
#[derive(Clone, Debug)]
pub struct HistorySettings {
    /// How many replays may run at once.
    pub readers: usize,
    /// How long a read waits for its turn before [`HistoryError::Busy`].
    pub wait: Duration,
    /// How many past states the cache keeps.
    pub cache: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings { readers: 2, wait: Duration::from_secs(10), cache: 16 }
    }
}

/// Why a past state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Every reader is busy, and stayed busy for the whole wait.
    #[error("too many history reads at once; retry in a moment")]
    Busy,
    /// The snapshot store failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The chronicler could not be read.
    #[error("cannot read the chronicler's history: {0}")]
    Chronicler(#[from] nodb_client::Error),
    /// A replay task failed.
    #[error("the replay failed: {0}")]
    Replay(String),
    /// The chronicler's history ends before the seq asked for.
    #[error("the chronicler's history ended before seq {0}")]
    Ended(u64),
    /// The chronicler's stream skipped or repeated a seq.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Counters of history reads.
#[derive(Debug, Default)]
pub struct HistoryMetrics {
    /// Past states read (`?at` older than the memory).
    pub reads: AtomicU64,
    /// Reads answered from the cache.
    pub cache_hits: AtomicU64,
    /// Actions replayed, by reads and exact streams.
    pub replayed: AtomicU64,
    /// The most actions one read replayed.
    pub replayed_max: AtomicU64,
    /// Reads refused because every reader stayed busy.
    pub busy: AtomicU64,
}

/// A past state and what it cost.
#[derive(Debug)]
pub struct AsOf {
    /// Every view's state at the seq asked for.
    pub states: Vec<Tree>,
    /// How many actions were replayed to get it.
    pub replayed: u64,
}

/// Reads an app's past states (see the module docs).
pub struct History {
    app: App,
    names: Vec<String>,
    snapshots: Option<Snapshots>,
    /// The chroniclers: the follower's first, then the others in turn.
    chroniclers: Arc<Chroniclers>,
    settings: HistorySettings,
    permits: Semaphore,
    /// Recent past states, most recently used first.
    cache: Mutex<VecDeque<(u64, Vec<Tree>)>>,
    /// The hub whose past this is, for the redactions its views reflect.
    hub: Option<Arc<Hub>>,
    /// The counters.
    pub metrics: HistoryMetrics,
}

impl History {
    /// Past states of `app`'s views, from `snapshots` (if any) and the
    /// chronicler at `chronicler`.
    pub fn new(app: App, snapshots: Option<Snapshots>, chronicler: ServiceUrl, settings: HistorySettings) -> History {
        let names = app.views.iter().map(|v| v.name.clone()).collect();
        History {
            app,
            names,
            snapshots,
            chroniclers: Arc::new(Chroniclers::one(chronicler)),
            permits: Semaphore::new(settings.readers.max(1)),
            settings,
            cache: Mutex::new(VecDeque::new()),
            hub: None,
            metrics: HistoryMetrics::default(),
        }
    }

    /// Reads the history from the chronicler the follower is on, falling
    /// back on the others in turn (see [`Chroniclers`]), instead of the one
    /// given to [`History::new`].
    #[must_use]
    pub fn with_chroniclers(mut self, chroniclers: Arc<Chroniclers>) -> History {
        self.chroniclers = chroniclers;
        self
    }

    /// The past of `hub`'s views: reads honour the redactions they reflect
    /// (a past state is the views as they were then, see
    /// [`crate::redaction`]).
    #[must_use]
    pub fn of_hub(mut self, hub: Arc<Hub>) -> History {
        self.hub = Some(hub);
        self
    }

    /// The redactions the views reflect now.
    fn redactions(&self) -> Redactions {
        self.hub.as_ref().map(|h| h.redactions()).unwrap_or_default()
    }

    /// The checkpoint interval, which bounds the actions a read replays.
    pub fn checkpoint_every(&self) -> Option<u64> {
        self.snapshots.as_ref().and_then(Snapshots::checkpoint_every)
    }

    /// Every view's state at seq `at` (which the chronicler must have).
    ///
    /// # Errors
    /// [`HistoryError`]: busy, or the snapshots or the chronicler failed.
    pub async fn states_at(&self, at: u64) -> Result<AsOf, HistoryError> {
        self.states_at_after(at, Turn::Timed).await
    }

    /// [`History::states_at`], waiting for a reader as `turn` says.
    async fn states_at_after(&self, at: u64, turn: Turn) -> Result<AsOf, HistoryError> {
        self.metrics.reads.fetch_add(1, Relaxed);
        if let Some((seq, states)) = self.cached(at, |_| true)
            && seq == at
        {
            self.metrics.cache_hits.fetch_add(1, Relaxed);
            return Ok(AsOf { states, replayed: 0 });
        }
        let _turn = match turn {
            Turn::Timed => self.turn().await?,
            Turn::Wait => self.permits.acquire().await.map_err(|_| HistoryError::Busy)?,
        };
        let replay = self.replay_to(at, &[self.redactions().as_of(at)], u64::MAX).await?;
        let states = replay.engines.into_iter().next().map(|e| e.states().to_vec()).unwrap_or_default();
        self.remember(at, states.clone());
        Ok(AsOf { states, replayed: replay.replayed })
    }

    /// The views at seq `at` rebuilt under `redactions` (which hold a
    /// redaction at `at` that the views do not reflect yet), and the
    /// actions from `first` on that they now reject but did not under
    /// `before` (the redactions up to `at - 1`): the latest
    /// [`REJECTIONS_TOLD`] of them, and how many there are. Both replays
    /// start from one base that fits both, and run side by side. It takes
    /// no reader's turn: the follower alone rebuilds, and must not wait
    /// behind `?at` reads.
    ///
    /// # Errors
    /// As for [`History::states_at`], but never busy.
    pub async fn rebuild(
        &self,
        at: u64,
        before: &Redactions,
        redactions: &Redactions,
        first: u64,
    ) -> Result<Rebuilt, HistoryError> {
        // The redaction itself changes no view: the views at `at` are
        // those at `at - 1` without what it redacts.
        let ledgers = [redactions.as_of(at), before.as_of(at.saturating_sub(1))];
        let replay = self.replay_to(at.saturating_sub(1), &ledgers, first).await?;
        let states = replay.engines.into_iter().next().map(|e| e.states().to_vec()).unwrap_or_default();
        self.remember(at, states.clone());
        Ok(Rebuilt {
            states,
            rejected: replay.newly_rejected.into(),
            rejected_total: replay.newly_rejected_total,
            replayed: replay.replayed,
        })
    }

    /// Replays to `at` once per ledger, each engine leaving out what its
    /// ledger redacts, from one base that fits every ledger (no redaction
    /// in it after the base changed a seq at or before the base). With
    /// two ledgers, the actions from `keep_from` on that the first engine
    /// rejects and the second does not are kept (the latest
    /// [`REJECTIONS_TOLD`]) and counted, chunk by chunk.
    async fn replay_to(&self, at: u64, ledgers: &[Redactions], keep_from: u64) -> Result<Replayed, HistoryError> {
        let fits = |base: u64| ledgers.iter().all(|l| l.base_fits(base, u64::MAX));
        let base = self.base(at, &fits).await?;
        let from = base.seq();
        let mut engines: Vec<Engine> = ledgers.iter().map(|l| base.clone().with_redactions(l.clone())).collect();
        let mut newly_rejected = VecDeque::new();
        let mut newly_rejected_total = 0;
        if from < at {
            let mut actions = self.actions(from + 1, Some(at)).await?;
            let mut seq = from;
            while seq < at {
                let chunk = actions.next_chunk(at - seq).await?;
                if chunk.is_empty() {
                    return Err(HistoryError::Ended(at));
                }
                let stepped = replay(engines, Arc::new(chunk), keep_from).await?;
                let (next, mut rejections): (Vec<_>, Vec<_>) = stepped.into_iter().unzip();
                engines = next;
                if let [now, was] = &mut rejections[..] {
                    let before: std::collections::BTreeSet<u64> = was.iter().map(|(s, _)| *s).collect();
                    for r in now.drain(..).filter(|(s, _)| !before.contains(s)) {
                        newly_rejected_total += 1;
                        if newly_rejected.len() == REJECTIONS_TOLD {
                            newly_rejected.pop_front();
                        }
                        newly_rejected.push_back(r);
                    }
                }
                seq = engines.first().map_or(at, Engine::seq);
            }
        }
        let replayed = at - from;
        self.metrics.replayed.fetch_add(replayed, Relaxed);
        self.metrics.replayed_max.fetch_max(replayed, Relaxed);
        Ok(Replayed { engines, newly_rejected, newly_rejected_total, replayed })
    }

    /// A replay positioned at seq `since`, to stream each seq after it.
    ///
    /// # Errors
    /// As for [`History::states_at`].
    pub async fn replayer(&self, since: u64) -> Result<Replayer, HistoryError> {
        let states = self.states_at(since).await?.states;
        let redactions = self.redactions().as_of(since);
        let engine = Engine::restore(self.app.clone(), since, states).with_redactions(redactions);
        let actions = self.actions(since + 1, None).await?;
        Ok(Replayer { engine: Some(engine), actions, pending: Vec::new() })
    }

    /// Waits for a reader to be free, at most `settings.wait`.
    async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, HistoryError> {
        match tokio::time::timeout(self.settings.wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.metrics.busy.fetch_add(1, Relaxed);
                Err(HistoryError::Busy)
            }
        }
    }

    /// The engine at the nearest base at or before `at` that `fits` (one
    /// the redactions made since leave as it was): a cached state or one
    /// in the hub's in-memory history, the
    /// checkpoint at the last multiple of the interval, the newest
    /// snapshot at or before `at`, or the initial states.
    async fn base(&self, at: u64, fits: &(impl Fn(u64) -> bool + Sync)) -> Result<Engine, HistoryError> {
        // The hub's in-memory history is a cache too (a rebuild at a recent
        // redaction starts just before the first seq it changes).
        let in_memory = self.hub.as_ref().and_then(|h| h.newest_base(at, fits));
        let cached = match (self.cached(at, fits), in_memory) {
            (Some(c), Some(m)) => Some(if m.0 > c.0 { m } else { c }),
            (c, m) => c.or(m),
        };
        let restore = |seq: u64, states: Vec<Tree>| Engine::restore(self.app.clone(), seq, states);
        let checkpoint = self.checkpoint_every().map_or(0, |every| at / every * every);
        if let Some((seq, states)) = cached.clone()
            && seq >= checkpoint
        {
            return Ok(restore(seq, states));
        }
        let Some(snapshots) = &self.snapshots else {
            return Ok(cached.map_or_else(|| Engine::new(self.app.clone()), |(seq, states)| restore(seq, states)));
        };
        let found = match snapshots.load(&self.names, checkpoint).await? {
            Some(states) if checkpoint > 0 && fits(checkpoint) => Some((checkpoint, states)),
            _ => snapshots.load_newest(&self.names, at, fits).await?.map(|l| (l.seq, l.states)),
        };
        let found = found.map(|(seq, states)| (seq, self.fill(states)));
        let best = match (found, cached) {
            (Some(f), Some(c)) => Some(if c.0 > f.0 { c } else { f }),
            (f, c) => f.or(c),
        };
        Ok(match best {
            Some((seq, states)) => {
                self.remember(seq, states.clone());
                restore(seq, states)
            }
            None => Engine::new(self.app.clone()),
        })
    }

    /// A snapshot's states, with the initial state for a view it lacks.
    fn fill(&self, states: Vec<Option<Tree>>) -> Vec<Tree> {
        states.into_iter().zip(self.app.initial_states()).map(|(s, i)| s.unwrap_or(i)).collect()
    }

    /// The newest cached state at or before `at` that `fits`.
    fn cached(&self, at: u64, fits: impl Fn(u64) -> bool) -> Option<(u64, Vec<Tree>)> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let usable = |seq: u64| seq <= at && fits(seq);
        let (i, _) = cache.iter().enumerate().filter(|(_, (seq, _))| usable(*seq)).max_by_key(|(_, (seq, _))| *seq)?;
        let hit = cache.remove(i)?;
        cache.push_front(hit.clone());
        Some(hit)
    }

    fn remember(&self, seq: u64, states: Vec<Tree>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(s, _)| *s != seq);
        cache.push_front((seq, states));
        cache.truncate(self.settings.cache.max(1));
    }

    /// The chronicler's actions from seq `from` (to `to`, or on).
    async fn actions(&self, from: u64, to: Option<u64>) -> Result<ActionReader, HistoryError> {
        let stream = self.chroniclers.ask(|c| async move { c.stream(from, to, &[]).await }).await?;
        Ok(ActionReader { stream })
    }
}

/// At most how many actions a rebuild at a redaction tells their senders
/// it now rejects (the latest; the hub keeps as many for them).
pub const REJECTIONS_TOLD: usize = 1024;

/// How a read waits for a reader's turn.
#[derive(Clone, Copy)]
enum Turn {
    /// At most `settings.wait`, then [`HistoryError::Busy`].
    Timed,
    /// As long as it takes (backpressure).
    Wait,
}

/// What [`History::replay_to`] ends with.
struct Replayed {
    /// One engine per ledger, at the seq asked for.
    engines: Vec<Engine>,
    /// The latest actions the first engine rejects and the second does not.
    newly_rejected: VecDeque<(u64, RejectedAction)>,
    /// How many there were.
    newly_rejected_total: u64,
    /// Actions replayed.
    replayed: u64,
}

/// Replays `actions` on each engine on the blocking pool (the reducers are
/// CPU work that must not hold up the service's tasks), the engines side
/// by side; each engine with the rejections it met from seq `keep_from`.
async fn replay(
    engines: Vec<Engine>,
    actions: Arc<Vec<CommittedAction>>,
    keep_from: u64,
) -> Result<Vec<(Engine, Vec<(u64, RejectedAction)>)>, HistoryError> {
    let run = move |mut engine: Engine, actions: &[CommittedAction]| {
        let mut rejected = Vec::new();
        for action in actions {
            let applied = engine.apply_with(action, Diffs::Nothing)?;
            if let Some(r) = applied.rejection
                && applied.seq >= keep_from
            {
                rejected.push((applied.seq, RejectedAction::of(action, r.0)));
            }
        }
        Ok::<_, HistoryError>((engine, rejected))
    };
    let tasks: Vec<_> = engines
        .into_iter()
        .map(|engine| {
            let actions = actions.clone();
            tokio::task::spawn_blocking(move || run(engine, &actions))
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.map_err(|e| HistoryError::Replay(e.to_string()))??);
    }
    Ok(out)
}

/// The views rebuilt at a redaction (see [`History::rebuild`]).
#[derive(Debug)]
pub struct Rebuilt {
    /// Every view's state.
    pub states: Vec<Tree>,
    /// The actions now rejected that were not before, with their seqs:
    /// the latest [`REJECTIONS_TOLD`].
    pub rejected: Vec<(u64, RejectedAction)>,
    /// How many actions are now rejected that were not before.
    pub rejected_total: u64,
    /// How many actions were replayed (twice: with and without it).
    pub replayed: u64,
}

/// Committed actions read from the chronicler's stream.
struct ActionReader {
    stream: ActionStream,
}

impl ActionReader {
    /// Up to `max` (and at most [`CHUNK`]) next actions: fewer only when the
    /// stream ended.
    async fn next_chunk(&mut self, max: u64) -> Result<Vec<CommittedAction>, HistoryError> {
        let want = max.min(CHUNK as u64) as usize;
        let mut chunk = Vec::with_capacity(want);
        while chunk.len() < want {
            match self.stream.next().await {
                Some(line) => chunk.extend(committed(line?)),
                None => break,
            }
        }
        Ok(chunk)
    }
}

/// One seq of a replay, for an exact stream.
#[derive(Debug)]
pub struct ReplayStep {
    /// The seq.
    pub seq: u64,
    /// The view's patch for it.
    pub ops: json_patch::Patch,
    /// The action, if a reducer rejected it.
    pub rejected: Option<RejectedAction>,
}

/// A replay from a past seq that yields each seq's patch of one view: how
/// an exact stream serves a client older than the history in memory.
pub struct Replayer {
    /// `None` only while a chunk is being replayed.
    engine: Option<Engine>,
    actions: ActionReader,
    /// Actions read but not replayed yet (those after a redaction).
    pending: Vec<CommittedAction>,
}

impl Replayer {
    /// The seq the replay has reached.
    pub fn seq(&self) -> u64 {
        self.engine.as_ref().map_or(0, Engine::seq)
    }

    /// The next seqs, at most `max` and never past `upto`, each with view
    /// `view`'s patch, replayed while holding one of `history`'s readers.
    /// At a redaction the views are rebuilt as the hub's past has them
    /// (see [`crate::redaction`]), and its patch is from the views before.
    ///
    /// # Errors
    /// As for [`History::states_at`] (a busy reader is waited for).
    pub async fn next(&mut self, history: &History, view: usize, upto: u64) -> Result<Vec<ReplayStep>, HistoryError> {
        let Some(seq) = self.engine.as_ref().map(Engine::seq) else { return Ok(Vec::new()) };
        if seq >= upto {
            return Ok(Vec::new());
        }
        let mut chunk = std::mem::take(&mut self.pending);
        if chunk.is_empty() {
            chunk = self.actions.next_chunk(upto - seq).await?;
        }
        if chunk.is_empty() {
            return Err(HistoryError::Ended(seq + 1));
        }
        // An exact stream waits for its turn as long as it takes: it is
        // backpressure, not a request to refuse.
        let turn = history.permits.acquire().await.map_err(|_| HistoryError::Busy)?;
        let mut engine = self.engine.take().ok_or(HistoryError::Ended(seq + 1))?;
        let stepped = tokio::task::spawn_blocking(move || {
            let mut steps = Vec::with_capacity(chunk.len());
            for (i, action) in chunk.iter().enumerate() {
                let old = engine.state(view).cloned().unwrap_or_default();
                let applied = match engine.apply_with(action, Diffs::Nothing) {
                    Ok(applied) => applied,
                    // A redaction: rebuilt below, the rest of the chunk after.
                    Err(EngineError::Rebuild { .. }) => return Ok((engine, steps, chunk.split_off(i))),
                    Err(e) => return Err(e.into()),
                };
                let new = engine.state(view).cloned().unwrap_or_default();
                let rejected = applied.rejection.map(|r| RejectedAction::of(action, r.0));
                steps.push(ReplayStep { seq: applied.seq, ops: nodb_shared::diff::diff(&old, &new), rejected });
            }
            Ok::<_, HistoryError>((engine, steps, Vec::new()))
        })
        .await
        .map_err(|e| HistoryError::Replay(e.to_string()))?;
        drop(turn);
        let (engine, mut steps, rest) = stepped?;
        history.metrics.replayed.fetch_add(steps.len() as u64, Relaxed);
        self.pending = rest;
        if steps.is_empty()
            && let Some(redaction) = self.pending.first().map(|a| a.seq)
        {
            let old = engine.state(view).cloned().unwrap_or_default();
            let states = history.states_at_after(redaction, Turn::Wait).await?.states;
            let ops = nodb_shared::diff::diff(&old, states.get(view).unwrap_or(&Tree::default()));
            steps.push(ReplayStep { seq: redaction, ops, rejected: None });
            let redactions = history.redactions().as_of(redaction);
            self.engine = Some(Engine::restore(engine.app().clone(), redaction, states).with_redactions(redactions));
            self.pending.remove(0);
        } else {
            self.engine = Some(engine);
        }
        Ok(steps)
    }
}
