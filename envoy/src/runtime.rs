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

use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use nodb_shared::Tree;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::definition::{Envoy, Event, ResultAction, Trigger};
use crate::effects::Effects;
use crate::log_client::{LogClient, LogClientError, StreamLine};
use crate::view_stream::{ViewClient, ViewMessage};

/// Where an envoy's services are.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The chronicler's URL.
    pub chronicler: String,
    /// The data view's URL, for envoys triggered by a view condition.
    pub dataview: Option<String>,
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

/// The longest range of seqs a coalesced view update is refined over, one
/// state per seq; past it a transition is attributed to the range's end.
const MAX_REFINE: u64 = 1000;

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
    if matches!(envoy.trigger, Trigger::View { .. }) && settings.dataview.is_none() {
        return Err(EnvoyError::NoDataview(envoy.name.clone()));
    }
    let log = LogClient::new(&settings.chronicler, settings.effects.http.clone());
    let mut wait = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let result = match &envoy.trigger {
            Trigger::Types(types) => run_types(&envoy, types, &log, &settings, &shutdown).await,
            Trigger::View { view, .. } => run_view(&envoy, view, &log, &settings, &shutdown).await,
        };
        match result {
            Ok(()) => wait = Duration::from_millis(100),
            Err(LogClientError::ShuttingDown) => break,
            Err(e) => {
                tracing::warn!(envoy = %envoy.name, error = %e, "the envoy lost its connection; resuming from the log")
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

async fn resume(envoy: &Envoy, log: &LogClient, shutdown: &CancellationToken) -> Result<Resume, LogClientError> {
    let Some((last, seq)) = log.position(&envoy.client()).await? else {
        // A brand-new envoy starts at the head, and records that it did:
        // from then on the log says where it stands, even if it crashes
        // before its first result.
        let head = log.head().await?;
        let started = json!({"id": format!("{}:1", envoy.client()), "type": "envoy/started",
            "payload": {"envoy": envoy.name, "head": head},
            "meta": {"cause": head.to_string(), "envoy": envoy.name}});
        log.dispatch(&[started], shutdown).await?;
        tracing::info!(envoy = %envoy.name, head, "a new envoy starts at the head of the log");
        return Ok(Resume { next_n: 2, after: Some((head, None)) });
    };
    let action = log.range(seq, seq, &[]).await?.into_iter().next().unwrap_or(Value::Null);
    let cause = action["meta"]["cause"].as_str().and_then(|c| c.parse::<u64>().ok()).unwrap_or(seq);
    let key = action["meta"]["key"].as_str().map(String::from);
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
    log: &LogClient,
    next_n: &mut u64,
    done: Vec<Done>,
    shutdown: &CancellationToken,
) -> Result<(), LogClientError> {
    let client = format!("envoy-{name}");
    let mut actions: Vec<Value> = Vec::new();
    for (event, results) in done {
        if results.is_empty() {
            tracing::warn!(envoy = %name, cause = event.cause, "a handler returned no result; nothing is recorded");
            continue;
        }
        let mut meta = json!({"cause": event.cause.to_string(), "envoy": name});
        if let Some(key) = &event.key {
            meta["key"] = json!(key);
        }
        for r in results {
            let n = *next_n + actions.len() as u64;
            actions.push(json!({"id": format!("{client}:{n}"), "type": r.kind, "payload": r.payload, "meta": meta}));
        }
    }
    if actions.is_empty() {
        return Ok(());
    }
    log.dispatch(&actions, shutdown).await?;
    *next_n += actions.len() as u64;
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
    log: LogClient,
    mut next_n: u64,
    mut queue: tokio::sync::mpsc::Receiver<Done>,
    stop: CancellationToken,
) -> Result<(), LogClientError> {
    while let Some(first) = queue.recv().await {
        let mut done = vec![first];
        while done.len() < MAX_RECORD_BATCH {
            match queue.try_recv() {
                Ok(next) => done.push(next),
                Err(_) => break,
            }
        }
        record(&name, &log, &mut next_n, done, &stop).await?;
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
fn recorder_error(stopped: Result<Result<(), LogClientError>, tokio::task::JoinError>) -> LogClientError {
    match stopped {
        Ok(Err(e)) => e,
        Ok(Ok(())) => LogClientError::ShuttingDown,
        Err(e) => LogClientError::Unreachable { url: "the recorder".into(), reason: e.to_string() },
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
    let task = tokio::spawn(async move { std::panic::AssertUnwindSafe(fut).catch_unwind().await.ok() });
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
    in_flight: FuturesOrdered<futures_util::future::BoxFuture<'static, Done>>,
    to_recorder: Option<tokio::sync::mpsc::Sender<Done>>,
    recorder: tokio::task::JoinHandle<Result<(), LogClientError>>,
    /// Cancelled 10 s after shutdown: effects under way and results not
    /// yet recorded get that long to finish.
    grace: CancellationToken,
    _grace_timer: AbortOnDrop,
}

impl<'a> Pipeline<'a> {
    fn new(
        envoy: &'a Envoy,
        log: &LogClient,
        effects: &'a Effects,
        next_n: u64,
        shutdown: &CancellationToken,
    ) -> Pipeline<'a> {
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
        let recorder = tokio::spawn(recorder(envoy.name.clone(), log.clone(), next_n, rx, grace.clone()));
        Pipeline {
            envoy,
            effects,
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
        tracing::info!(envoy = %self.envoy.name, cause = event.cause, key = ?event.key, "acting");
        self.in_flight.push_back(perform(self.envoy, event, self.effects.clone()));
    }

    /// Queues a finished effect for the recorder (waiting while its queue
    /// is full); fails with the recorder's error if it has stopped.
    async fn hand_over(&mut self, done: Done) -> Result<(), LogClientError> {
        let queued = match &self.to_recorder {
            Some(tx) => tx.send(done).await.is_ok(),
            None => false,
        };
        if queued { Ok(()) } else { Err(self.recorder_stopped().await) }
    }

    /// Why the recorder stopped (waiting for it).
    async fn recorder_stopped(&mut self) -> LogClientError {
        self.to_recorder = None;
        match (&mut self.recorder).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => LogClientError::ShuttingDown,
            Err(e) => LogClientError::Unreachable { url: "the recorder".into(), reason: e.to_string() },
        }
    }

    /// Waits for the oldest effect and hands it to the recorder.
    async fn finish_one(&mut self) -> Result<(), LogClientError> {
        if let Some(done) = self.in_flight.next().await {
            self.hand_over(done).await?;
        }
        Ok(())
    }

    /// Finishes the effects under way and records every result (on
    /// shutdown, within the grace period).
    async fn drain(&mut self) -> Result<(), LogClientError> {
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
            Err(e) => Err(LogClientError::Unreachable { url: "the recorder".into(), reason: e.to_string() }),
        }
    }
}

async fn run_types(
    envoy: &Envoy,
    types: &[String],
    log: &LogClient,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<(), LogClientError> {
    let resume = resume(envoy, log, shutdown).await?;
    let from = resume.after.as_ref().map_or(1, |(cause, _)| cause + 1);
    tracing::info!(envoy = %envoy.name, from, next = resume.next_n, "envoy following the chronicler");
    let own = format!("{}:", envoy.client());
    let mut stream = Box::pin(log.stream(from, types).await?);
    let mut pipe = Pipeline::new(envoy, log, &settings.effects, resume.next_n, shutdown);
    loop {
        // Only cancel-safe futures race here; handing over comes after.
        let line = tokio::select! {
            line = stream.next(), if !pipe.full() => line,
            done = pipe.in_flight.next(), if !pipe.in_flight.is_empty() => {
                if let Some(done) = done {
                    pipe.hand_over(done).await?;
                }
                continue;
            }
            stopped = &mut pipe.recorder => return Err(recorder_error(stopped)),
            () = shutdown.cancelled() => {
                pipe.drain().await?;
                return Err(LogClientError::ShuttingDown);
            }
        };
        match line {
            Some(Ok(StreamLine::Action(action))) => {
                let kind = action["type"].as_str().unwrap_or("");
                let id = action["id"].as_str().unwrap_or("");
                if kind.starts_with("@@nodb/") || id.starts_with(&own) {
                    continue;
                }
                let cause = action["seq"].as_u64().unwrap_or(0);
                let idempotency_key = format!("{}:{cause}", envoy.name);
                pipe.push(Event { cause, key: None, action: Some(action), data: None, idempotency_key });
            }
            Some(Ok(StreamLine::Heartbeat { .. })) => {}
            Some(Err(e)) => {
                pipe.drain().await?;
                return Err(e);
            }
            None => {
                pipe.drain().await?;
                return Err(LogClientError::Unreachable { url: "the action stream".into(), reason: "it ended".into() });
            }
        }
    }
}

/// A view condition's state: the state the envoy last saw, at `seq`.
struct Watched {
    seq: u64,
    state: Tree,
}

async fn run_view(
    envoy: &Envoy,
    view: &str,
    log: &LogClient,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<(), LogClientError> {
    let Trigger::View { select, .. } = &envoy.trigger else { return Ok(()) };
    let dataview =
        ViewClient::new(settings.dataview.as_deref().unwrap_or_default(), view, settings.effects.http.clone());
    let resume = resume(envoy, log, shutdown).await?;
    // Resuming: the state just before the last result's cause; events at
    // that cause up to its key are done.
    let mut watched = match &resume.after {
        Some((cause, _)) => {
            let at = cause.saturating_sub(1);
            Some(Watched { seq: at, state: dataview.state_at(at).await? })
        }
        None => None,
    };
    let done_upto = resume.after.clone();
    tracing::info!(envoy = %envoy.name, view, since = ?watched.as_ref().map(|w| w.seq), next = resume.next_n, "envoy watching a view");
    let mut socket = dataview.connect(watched.as_ref().map(|w| w.seq)).await?;
    let mut pipe = Pipeline::new(envoy, log, &settings.effects, resume.next_n, shutdown);
    loop {
        // Only cancel-safe futures race here; handing over comes after.
        let message = tokio::select! {
            m = socket.next_message(), if !pipe.full() => m,
            done = pipe.in_flight.next(), if !pipe.in_flight.is_empty() => {
                if let Some(done) = done {
                    pipe.hand_over(done).await?;
                }
                continue;
            }
            stopped = &mut pipe.recorder => return Err(recorder_error(stopped)),
            () = shutdown.cancelled() => {
                pipe.drain().await?;
                return Err(LogClientError::ShuttingDown);
            }
        };
        let (from, seq, next) = match message {
            Err(e) => {
                pipe.drain().await?;
                return Err(e);
            }
            Ok(ViewMessage::Snapshot { seq, state }) => (watched.as_ref().map_or(seq, |w| w.seq + 1), seq, state),
            Ok(ViewMessage::Patch { from, seq, ops }) => {
                let Some(w) = &watched else { continue };
                match nodb_shared::patch::apply(&w.state, &ops) {
                    Ok(next) => (from.unwrap_or(seq), seq, next),
                    Err(e) => {
                        pipe.drain().await?;
                        return Err(LogClientError::Unreachable {
                            url: "the view stream".into(),
                            reason: format!("a patch did not apply: {e}"),
                        });
                    }
                }
            }
        };
        let Some(old) = watched.take() else {
            // A brand-new envoy: the first state is where it starts; what
            // is true there already happened before it.
            watched = Some(Watched { seq, state: next });
            continue;
        };
        let events =
            match transitions(envoy, select, &dataview, log, from, seq, old.state, &next, done_upto.as_ref()).await {
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
        watched = Some(Watched { seq, state: next });
    }
}

/// The events for the keys that became true between `old` (at `from - 1`)
/// and `new` (at `to`): one state per seq when the update covers several,
/// none at a control action's seq, none already done.
#[allow(clippy::too_many_arguments)]
async fn transitions(
    envoy: &Envoy,
    select: &crate::definition::Selector,
    dataview: &ViewClient,
    log: &LogClient,
    from: u64,
    to: u64,
    old: Tree,
    new: &Tree,
    done: Option<&(u64, Option<String>)>,
) -> Result<Vec<Event>, LogClientError> {
    let mut steps: Vec<(u64, Tree)> = Vec::new();
    if from < to && to - from < MAX_REFINE {
        for k in from..to {
            steps.push((k, dataview.state_at(k).await?));
        }
    } else if from < to {
        tracing::warn!(envoy = %envoy.name, from, to, "a long gap in the view: transitions in it are attributed to its end");
    }
    steps.push((to, new.clone()));
    let mut before = select(&old);
    let mut events = Vec::new();
    for (k, state) in steps {
        let after = select(&state);
        let fired: Vec<(&String, &Tree)> = after.iter().filter(|(key, _)| !before.contains_key(*key)).collect();
        if !fired.is_empty() && log.control_seqs(k, k).await?.is_empty() {
            let several = fired.len() > 1;
            for (key, data) in fired {
                let already = done
                    .is_some_and(|(cause, last)| k < *cause || (k == *cause && last.as_ref().is_none_or(|l| key <= l)));
                if already {
                    continue;
                }
                let idempotency_key =
                    if several { format!("{}:{k}:{key}", envoy.name) } else { format!("{}:{k}", envoy.name) };
                events.push(Event {
                    cause: k,
                    key: Some(key.clone()),
                    action: None,
                    data: Some(data.clone()),
                    idempotency_key,
                });
            }
        }
        before = after;
    }
    Ok(events)
}
