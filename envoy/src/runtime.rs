//! Running an envoy: find where it stopped from the log itself, follow its
//! trigger live, perform the effects, and record each outcome exactly once.
//!
//! The envoy dispatches as the client `envoy-<name>`, numbering its results
//! 1, 2, 3, … with the seq that caused each in `meta.cause` (and the key in
//! `meta.key` for a view condition). On start it asks the chronicler for its
//! last result (`GET /clients/envoy-<name>`) and reads that result's cause:
//! everything up to there is done, everything after is still to do. A crash
//! between an effect and its acknowledged result therefore repeats the
//! effect with the same idempotency key and dispatches the same numbered
//! result, which the chronicler acknowledges as a duplicate if it had
//! already recorded it. A brand-new envoy starts at the head of the log
//! and records `envoy/started {envoy, head}` so that it knows where it
//! started even if it crashes before its first result.
//!
//! It never acts on replayed history: it reads the chronicler's live stream
//! (not a data view's replay), a view condition fires only on a transition
//! the envoy sees between two states it has itself followed, and never at
//! the seq of a control action (`@@nodb/set_state`, `@@nodb/snapshot`).
//! A view is followed through its *exact* stream (one message per seq,
//! never combined, fed from a replay when the envoy is far behind), so each
//! transition is attributed to the seq that caused it without reading any
//! past state but the one it resumes from.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use nodb_client::{Change, Chronicler, Replica, ReplicaError, ServiceUrl, StreamOptions, ViewClient};
use nodb_shared::Tree;
use nodb_shared::protocol::{Action, Meta, StreamLine};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::condition::Condition;
use crate::definition::{Envoy, Event, ResultAction, Trigger};
use crate::effects::Effects;
use crate::status::EnvoyStats;

/// Where an envoy's services are.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The chronicler.
    pub chronicler: ServiceUrl,
    /// More chroniclers of the same replicated log, tried in turn after
    /// `chronicler` when the one in use fails (the envoy resumes from the
    /// log on each, so nothing is done twice in the log).
    pub more_chroniclers: Vec<ServiceUrl>,
    /// The data view, for envoys triggered by a view condition.
    pub dataview: Option<ServiceUrl>,
    /// HTTP and retries for the effects.
    pub effects: Effects,
}

/// Why an envoy stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    /// A view-condition envoy was started without a data view URL.
    #[error("envoy {0:?} watches a view: give the data view's URL (--dataview)")]
    NoDataview(String),
}

/// Why one run of an envoy ended; it resumes from the log after (but for
/// shutdown).
#[derive(Debug, thiserror::Error)]
enum Stopped {
    /// The chronicler or the data view failed, or shutdown cancelled a call.
    #[error(transparent)]
    Client(#[from] nodb_client::Error),
    /// The view's exact stream sent what its replica cannot take.
    #[error("the view stream: {0}")]
    ViewStream(#[from] ReplicaError),
    /// The task recording results failed.
    #[error("the recorder failed: {0}")]
    Recorder(String),
    /// A view trigger without a data view (checked before running).
    #[error("no data view to watch")]
    NoDataview,
    /// The envoy is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Where the envoy stopped, from its own results in the log.
#[derive(Debug)]
struct Resume {
    /// The number of its next result.
    next_n: u64,
    /// The cause (and key) of its last result.
    after: Option<(u64, Option<String>)>,
}

/// Runs `envoy` until `shutdown`, reconnecting after failures.
///
/// # Errors
/// [`EnvoyError`] for a setting that can never work.
pub async fn run(envoy: Envoy, settings: Settings, shutdown: CancellationToken) -> Result<(), EnvoyError> {
    run_with_stats(envoy, settings, Arc::default(), shutdown).await
}

/// Like [`run`], keeping `stats` up to date (see [`crate::status`]).
///
/// # Errors
/// As for [`run`].
pub async fn run_with_stats(
    envoy: Envoy,
    settings: Settings,
    stats: Arc<EnvoyStats>,
    shutdown: CancellationToken,
) -> Result<(), EnvoyError> {
    if envoy.trigger.view().is_some() && settings.dataview.is_none() {
        return Err(EnvoyError::NoDataview(envoy.name.clone()));
    }
    let logs: Vec<Chronicler> = std::iter::once(&settings.chronicler)
        .chain(&settings.more_chroniclers)
        .map(|url| Chronicler::with_http(url.clone(), settings.effects.http.clone()))
        .collect();
    let mut at = 0;
    let settings = Settings { effects: settings.effects.clone().counting_retries(stats.retries.clone()), ..settings };
    let mut wait = Duration::from_millis(100);
    // The same failure is logged once, with how often it repeated when it
    // changes or clears, not at every reconnect.
    let mut failing: Option<(String, u32)> = None;
    while !shutdown.is_cancelled() {
        let run =
            Run { envoy: &envoy, log: &logs[at % logs.len()], settings: &settings, stats: &stats, shutdown: &shutdown };
        let result = match &envoy.trigger {
            Trigger::Types(types) => run.types(types).await,
            Trigger::View { view, .. } | Trigger::Entries { view, .. } => run.view(view).await,
        };
        stats.following.store(false, Relaxed);
        match result {
            Ok(()) => wait = Duration::from_millis(100),
            Err(Stopped::ShuttingDown | Stopped::Client(nodb_client::Error::Cancelled)) => break,
            Err(e) => {
                stats.resumed.fetch_add(1, Relaxed);
                // The next chronicler of the log, if there are several.
                at += 1;
                let why = e.to_string();
                match &mut failing {
                    Some((last, times)) if *last == why => *times += 1,
                    _ => {
                        if let Some((_, times)) = failing.take().filter(|(_, n)| *n > 1) {
                            tracing::info!(envoy = %envoy.name, times, "the previous failure repeated");
                        }
                        tracing::warn!(envoy = %envoy.name, error = %why, "the envoy lost its connection; resuming from the log");
                        failing = Some((why, 1));
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => break,
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    tracing::info!(envoy = %envoy.name, "envoy stopped");
    Ok(())
}

async fn resume(envoy: &Envoy, log: &Chronicler, shutdown: &CancellationToken) -> Result<Resume, Stopped> {
    let Some(nodb_client::Position { last, seq }) = log.position(&envoy.client()).await? else {
        // A brand-new envoy starts at the head, and records that it did:
        // from then on the log says where it stands, even if it crashes
        // before its first result.
        let head = log.head().await?;
        let started = Action {
            id: format!("{}:1", envoy.client()),
            kind: "envoy/started".into(),
            payload: json!({"envoy": envoy.name, "head": head}),
            meta: Some(Meta::from([("cause".into(), head.to_string()), ("envoy".into(), envoy.name.clone())])),
        };
        log.dispatch(&[started], shutdown).await?;
        tracing::info!(envoy = %envoy.name, head, "a new envoy starts at the head of the log");
        return Ok(Resume { next_n: 2, after: Some((head, None)) });
    };
    let meta = log.range(seq, seq, &[]).await?.into_iter().next().and_then(|a| a.meta).unwrap_or_default();
    let cause = meta.get("cause").and_then(|c| c.parse::<u64>().ok()).unwrap_or(seq);
    let key = meta.get("key").cloned();
    Ok(Resume { next_n: last + 1, after: Some((cause, key)) })
}

/// The most finished effects whose results go to the chronicler in one
/// request (one durable commit).
const MAX_RECORD_BATCH: usize = 256;

/// An effect that has finished: its event and the results to record.
type Done = (Event, Vec<ResultAction>);

/// Records the results of finished effects, in their order, as one request.
/// The results are numbered consecutively, so if only a prefix of them
/// were ever durable, a restart resumes right after that prefix.
async fn record(
    name: &str,
    log: &Chronicler,
    next_n: &mut u64,
    done: Vec<Done>,
    stats: &EnvoyStats,
    shutdown: &CancellationToken,
) -> Result<(), Stopped> {
    let client = format!("envoy-{name}");
    let mut actions: Vec<Action> = Vec::new();
    for (event, results) in done {
        if results.is_empty() {
            tracing::warn!(envoy = %name, cause = event.cause, "a handler returned no result; nothing is recorded");
            continue;
        }
        let mut meta = Meta::from([("cause".into(), event.cause.to_string()), ("envoy".into(), name.to_string())]);
        if let Some(key) = &event.key {
            meta.insert("key".into(), key.clone());
        }
        for r in results {
            let n = *next_n + actions.len() as u64;
            let id = format!("{client}:{n}");
            actions.push(Action { id, kind: r.kind, payload: r.payload, meta: Some(meta.clone()) });
        }
    }
    if actions.is_empty() {
        return Ok(());
    }
    log.dispatch(&actions, shutdown).await?;
    *next_n += actions.len() as u64;
    stats.recorded.fetch_add(actions.len() as u64, Relaxed);
    let failures = actions.iter().filter(|a| a.kind.ends_with("/failed")).count();
    stats.failures.fetch_add(failures as u64, Relaxed);
    tracing::debug!(envoy = %name, results = actions.len(), "recorded");
    Ok(())
}

/// How many finished effects may wait for the recorder before the pipeline
/// stops starting new ones.
const RECORD_QUEUE: usize = 1024;

/// Records finished effects as they arrive (in order), batching whatever
/// has queued up meanwhile into one request. Ends when the queue closes, or
/// with the error that stopped it.
async fn recorder(
    name: String,
    log: Chronicler,
    mut next_n: u64,
    mut queue: tokio::sync::mpsc::Receiver<Done>,
    stats: Arc<EnvoyStats>,
    stop: CancellationToken,
) -> Result<(), Stopped> {
    while let Some(first) = queue.recv().await {
        let mut done = vec![first];
        while done.len() < MAX_RECORD_BATCH {
            match queue.try_recv() {
                Ok(next) => done.push(next),
                Err(_) => break,
            }
        }
        record(&name, &log, &mut next_n, done, &stats, &stop).await?;
    }
    Ok(())
}

impl Drop for Pipeline<'_> {
    /// Every path out of a run drains the pipeline first, so the recorder
    /// has finished by now; this only matters after a panic. (A recorder
    /// left running could record results after the next run has read the
    /// log to find where to resume.)
    fn drop(&mut self) {
        self.recorder.abort();
    }
}

/// The error of a recorder task that stopped while the pipeline ran.
fn recorder_error(stopped: Result<Result<(), Stopped>, tokio::task::JoinError>) -> Stopped {
    match stopped {
        Ok(Err(e)) => e,
        Ok(Ok(())) => Stopped::ShuttingDown,
        Err(e) => Stopped::Recorder(e.to_string()),
    }
}

/// Aborts a spawned effect when the pipeline that waits for it is dropped
/// (the envoy lost its connection: the effect is redone on resume, with
/// the same idempotency key).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the handler as its own task (so it makes progress while results
/// are being recorded); a panic becomes a `<envoy>/failed` result.
fn perform(envoy: &Envoy, event: Event, effects: Effects) -> futures_util::future::BoxFuture<'static, Done> {
    let name = envoy.name.clone();
    let fut = (envoy.handler)(event.clone(), effects);
    let task = tokio::spawn(async move {
        // A panic's payload is let go of here: its drop may panic too.
        std::panic::AssertUnwindSafe(fut).catch_unwind().await.map_err(nodb_shared::panic::let_go).ok()
    });
    let guard = AbortOnDrop(task.abort_handle());
    Box::pin(async move {
        let _guard = guard;
        match task.await.ok().flatten() {
            Some(results) => (event, results),
            None => {
                tracing::error!(envoy = %name, cause = event.cause, "the envoy's handler panicked");
                let failed = ResultAction::new(
                    format!("{name}/failed"),
                    json!({"cause": event.cause, "key": event.key, "reason": "the handler panicked"}),
                );
                (event, vec![failed])
            }
        }
    })
}

/// Runs events through the handler with up to `envoy.concurrency` at once
/// and hands the finished ones, in the order of the events, to a recorder
/// task: the next effects start while earlier results are being made
/// durable.
struct Pipeline<'a> {
    envoy: &'a Envoy,
    effects: &'a Effects,
    stats: Arc<EnvoyStats>,
    in_flight: FuturesOrdered<futures_util::future::BoxFuture<'static, Done>>,
    to_recorder: Option<tokio::sync::mpsc::Sender<Done>>,
    recorder: tokio::task::JoinHandle<Result<(), Stopped>>,
    /// Cancelled 10 s after shutdown: effects under way and results not
    /// yet recorded get that long to finish.
    grace: CancellationToken,
    _grace_timer: AbortOnDrop,
}

impl<'a> Pipeline<'a> {
    fn new(run: &Run<'a>, next_n: u64) -> Pipeline<'a> {
        let (envoy, log, effects, shutdown) = (run.envoy, run.log, &run.settings.effects, run.shutdown);
        let grace = CancellationToken::new();
        let timer = tokio::spawn({
            let (grace, shutdown) = (grace.clone(), shutdown.clone());
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(Duration::from_secs(10)).await;
                grace.cancel();
            }
        });
        let (tx, rx) = tokio::sync::mpsc::channel(RECORD_QUEUE);
        let stats = run.stats.clone();
        let recorder =
            tokio::spawn(recorder(envoy.name.clone(), log.clone(), next_n, rx, stats.clone(), grace.clone()));
        Pipeline {
            envoy,
            effects,
            stats,
            in_flight: FuturesOrdered::new(),
            to_recorder: Some(tx),
            recorder,
            grace,
            _grace_timer: AbortOnDrop(timer.abort_handle()),
        }
    }

    fn full(&self) -> bool {
        self.in_flight.len() >= self.envoy.concurrency
    }

    fn push(&mut self, event: Event) {
        tracing::debug!(envoy = %self.envoy.name, cause = event.cause, key = ?event.key, "acting");
        self.stats.started.fetch_add(1, Relaxed);
        self.stats.in_flight.fetch_add(1, Relaxed);
        self.in_flight.push_back(perform(self.envoy, event, self.effects.clone()));
    }

    /// Queues a finished effect for the recorder (waiting while its queue
    /// is full); fails with the recorder's error if it has stopped.
    async fn hand_over(&mut self, done: Done) -> Result<(), Stopped> {
        self.stats.in_flight.fetch_sub(1, Relaxed);
        let queued = match &self.to_recorder {
            Some(tx) => tx.send(done).await.is_ok(),
            None => false,
        };
        if queued { Ok(()) } else { Err(self.recorder_stopped().await) }
    }

    /// Why the recorder stopped (waiting for it).
    async fn recorder_stopped(&mut self) -> Stopped {
        self.to_recorder = None;
        recorder_error((&mut self.recorder).await)
    }

    /// Waits for the oldest effect and hands it to the recorder.
    /// Waits for the next item of the trigger (`next`, while there is room
    /// for another effect), meanwhile handing finished effects to the
    /// recorder: `Some(item)`, or `None` when an effect was handed over
    /// instead. Only cancel-safe futures race here; handing over comes
    /// after the race.
    ///
    /// # Errors
    /// The recorder's error if it stopped; [`Stopped::ShuttingDown`] (after
    /// draining) on shutdown.
    async fn next_or_progress<T>(
        &mut self,
        next: impl std::future::Future<Output = T>,
        shutdown: &CancellationToken,
    ) -> Result<Option<T>, Stopped> {
        tokio::select! {
            item = next, if !self.full() => Ok(Some(item)),
            done = self.in_flight.next(), if !self.in_flight.is_empty() => {
                if let Some(done) = done {
                    self.hand_over(done).await?;
                }
                Ok(None)
            }
            stopped = &mut self.recorder => Err(recorder_error(stopped)),
            () = shutdown.cancelled() => {
                self.drain().await?;
                Err(Stopped::ShuttingDown)
            }
        }
    }

    async fn finish_one(&mut self) -> Result<(), Stopped> {
        if let Some(done) = self.in_flight.next().await {
            self.hand_over(done).await?;
        }
        Ok(())
    }

    /// Finishes the effects under way and records every result (on
    /// shutdown, within the grace period).
    async fn drain(&mut self) -> Result<(), Stopped> {
        while !self.in_flight.is_empty() {
            let grace = self.grace.clone();
            tokio::select! {
                done = self.in_flight.next() => if let Some(done) = done { self.hand_over(done).await? },
                () = grace.cancelled() => break,
            }
        }
        self.to_recorder = None;
        match (&mut self.recorder).await {
            Ok(r) => r,
            Err(e) => Err(Stopped::Recorder(e.to_string())),
        }
    }
}

/// One run of an envoy: from resuming to losing a connection (or shutdown).
struct Run<'a> {
    envoy: &'a Envoy,
    log: &'a Chronicler,
    settings: &'a Settings,
    stats: &'a Arc<EnvoyStats>,
    shutdown: &'a CancellationToken,
}

impl<'a> Run<'a> {
    async fn types(&self, types: &[String]) -> Result<(), Stopped> {
        let (envoy, log, shutdown) = (self.envoy, self.log, self.shutdown);
        let resume = resume(envoy, log, shutdown).await?;
        let from = resume.after.as_ref().map_or(1, |(cause, _)| cause + 1);
        tracing::info!(envoy = %envoy.name, from, next = resume.next_n, "envoy following the chronicler");
        let own = format!("{}:", envoy.client());
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        let mut stream = log.stream(from, None, &types).await?;
        self.stats.following.store(true, Relaxed);
        self.stats.handled.fetch_max(from - 1, Relaxed);
        let mut pipe = Pipeline::new(self, resume.next_n);
        loop {
            let Some(line) = pipe.next_or_progress(stream.next(), shutdown).await? else { continue };
            match line {
                Some(Ok(StreamLine::Unreadable { action, error })) => {
                    self.stats.handled.fetch_max(action.seq, Relaxed);
                    if !action.kind.starts_with("@@nodb/") && !action.id.starts_with(&own) {
                        self.skip_unreadable(&action, &error);
                    }
                }
                Some(Ok(StreamLine::Action(action))) => {
                    let cause = action.seq;
                    self.stats.handled.fetch_max(cause, Relaxed);
                    if action.kind.starts_with("@@nodb/") || action.id.starts_with(&own) {
                        continue;
                    }
                    let idempotency_key = format!("{}:{cause}", envoy.name);
                    let action = serde_json::to_value(&action).ok();
                    pipe.push(Event { cause, key: None, action, data: None, idempotency_key });
                }
                Some(Ok(StreamLine::Heartbeat { seen, .. })) => {
                    self.stats.handled.fetch_max(seen, Relaxed);
                }
                Some(Err(e)) => {
                    pipe.drain().await?;
                    return Err(e.into());
                }
                None => {
                    pipe.drain().await?;
                    let url = stream.url().to_string();
                    return Err(nodb_client::Error::Ended { url, why: "the chronicler closed it".into() }.into());
                }
            }
        }
    }

    /// An action of the trigger that cannot be read: no handler sees it
    /// (not with a `null` in place of its payload, which would be another
    /// action), it is counted and reported once — the stream moves past
    /// it, so it comes again only after a restart that resumes before it.
    fn skip_unreadable(&self, action: &nodb_shared::protocol::CommittedAction, error: &str) {
        self.stats.unreadable.fetch_add(1, Relaxed);
        tracing::warn!(envoy = %self.envoy.name, seq = action.seq, id = %action.id, r#type = %action.kind, %error,
            "the envoy cannot read this committed action; skipped, no effect for it");
    }

    async fn view(&self, view: &str) -> Result<(), Stopped> {
        let (envoy, log, shutdown) = (self.envoy, self.log, self.shutdown);
        let base = self.settings.dataview.clone().ok_or(Stopped::NoDataview)?;
        let dataview = ViewClient::with_http(base, view, self.settings.effects.http.clone());
        let resume = resume(envoy, log, shutdown).await?;
        // Resuming: the state just before the last result's cause (one
        // as-of read); events at that cause up to its key are done.
        let done_upto = resume.after.clone();
        let since = done_upto.as_ref().map(|(cause, _)| cause.saturating_sub(1));
        // The exact stream: each seq's patch alone, or the replica resyncs.
        let mut replica = match since {
            Some(at) => Replica::at(at, dataview.state_at(at).await?.state),
            None => Replica::new(),
        }
        .exact();
        let mut condition = replica.state().and_then(|state| Condition::new(&envoy.trigger, state));
        tracing::info!(envoy = %envoy.name, view, since = ?since, next = resume.next_n, "envoy watching a view");
        let mut socket = dataview.open(&StreamOptions { since, exact: true, ..StreamOptions::default() }).await?;
        self.stats.following.store(true, Relaxed);
        let mut pipe = Pipeline::new(self, resume.next_n);
        loop {
            let Some(message) = pipe.next_or_progress(socket.next_message(), shutdown).await? else { continue };
            let applied = match message {
                Ok(m) => replica.apply(m).map_err(Stopped::from),
                Err(e) => Err(e.into()),
            };
            let update = match applied {
                Ok(Some(update)) => update,
                Ok(None) => continue, // not a state: rejections, errors
                Err(e) => {
                    pipe.drain().await?;
                    return Err(e);
                }
            };
            let (seq, state) = (update.seq, update.state);
            let ops = match update.change {
                Change::Patched(ops) => Some(ops),
                Change::Replaced => None,
            };
            let fired = match &mut condition {
                Some(c) => c.step(&state, ops.as_ref()),
                None => {
                    // A brand-new envoy: the first state is where it starts;
                    // what is true there already happened before it.
                    condition = Condition::new(&envoy.trigger, &state);
                    Vec::new()
                }
            };
            if !fired.is_empty() {
                let events = match self.events(seq, fired, done_upto.as_ref()).await {
                    Ok(events) => events,
                    Err(e) => {
                        pipe.drain().await?;
                        return Err(e);
                    }
                };
                for event in events {
                    while pipe.full() {
                        pipe.finish_one().await?;
                    }
                    pipe.push(event);
                }
            }
            self.stats.handled.fetch_max(seq, Relaxed);
        }
    }

    /// The events for the keys that turned true at seq `seq`: none at a
    /// control action's seq, none already done before a restart.
    async fn events(
        &self,
        seq: u64,
        fired: Vec<(String, Tree)>,
        done: Option<&(u64, Option<String>)>,
    ) -> Result<Vec<Event>, Stopped> {
        if !self.log.range(seq, seq, &["@@nodb/"]).await?.is_empty() {
            return Ok(Vec::new());
        }
        let name = &self.envoy.name;
        let several = fired.len() > 1;
        let already = |key: &String| {
            done.is_some_and(|(cause, last)| seq < *cause || (seq == *cause && last.as_ref().is_none_or(|l| key <= l)))
        };
        Ok(fired
            .into_iter()
            .filter(|(key, _)| !already(key))
            .map(|(key, data)| {
                let idempotency_key = if several { format!("{name}:{seq}:{key}") } else { format!("{name}:{seq}") };
                Event { cause: seq, key: Some(key), action: None, data: Some(data), idempotency_key }
            })
            .collect())
    }
}
