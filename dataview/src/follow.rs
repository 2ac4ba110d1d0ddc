//! Following the chronicler: its action stream over a WebSocket
//! (`/actions?from=N`), from the seq after the views' own, applied in
//! order; on any failure, reconnect with back-off and resume at the right
//! seq.
//!
//! A data view may be given several chroniclers ([`Chroniclers`]) that
//! serve one log (chroniclers sharing a replicated JetStream stream have
//! the same seqs and chain hashes): when the one it follows cannot be
//! reached, refuses, or its stream fails, the follower moves on to the next
//! in the list and resumes there from the views' seq. The other readers of
//! the chronicler (the history replays, the snapshots' chain hashes) start
//! from the one the follower is on and fall back along the list.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use futures_util::StreamExt;
use nodb_client::{Chronicler, ServiceUrl};
use nodb_shared::protocol::{CommittedAction, StreamLine};
use tokio_util::sync::CancellationToken;

use crate::engine::{EngineError, REDACT, UNREADABLE};

mod batches;
use crate::history::{History, HistoryError};
use crate::hub::{Hub, RejectedAction};
use crate::redaction::Redaction;
use batches::Batches;

/// How long the stream stays quiet before the follower applies the batch
/// it is gathering.
const PAUSE: Duration = Duration::from_millis(20);

/// The chroniclers a data view may follow, in the order given, all serving
/// one log, and the one the follower is on now. With one chronicler it is
/// that one, always.
#[derive(Debug)]
pub struct Chroniclers {
    list: Vec<Chronicler>,
    current: AtomicUsize,
}

impl Chroniclers {
    /// `first`, then `rest` in turn; the follower starts on `first`.
    pub fn new(first: ServiceUrl, rest: impl IntoIterator<Item = ServiceUrl>) -> Chroniclers {
        let list = std::iter::once(first).chain(rest).map(Chronicler::new).collect();
        Chroniclers { list, current: AtomicUsize::new(0) }
    }

    /// The one chronicler at `url`.
    pub fn one(url: ServiceUrl) -> Chroniclers {
        Chroniclers::new(url, [])
    }

    /// How many there are (at least one).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Never: there is at least one.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The one the follower is on.
    pub fn current(&self) -> &Chronicler {
        &self.list[self.current.load(Relaxed) % self.list.len()]
    }

    /// Moves the follower on to the next one after `from` (the one it gave
    /// up on), unless it has moved already; the one it is on now.
    fn advance(&self, from: &Chronicler) -> &Chronicler {
        let n = self.list.len();
        let at = self.current.load(Relaxed) % n;
        if std::ptr::eq(&self.list[at], from) {
            self.current.store((at + 1) % n, Relaxed);
        }
        self.current()
    }

    /// Each chronicler once, the follower's first, then the others in turn.
    pub fn in_turn(&self) -> impl Iterator<Item = &Chronicler> {
        let n = self.list.len();
        let at = self.current.load(Relaxed) % n;
        (0..n).map(move |k| &self.list[(at + k) % n])
    }

    /// The first answer of `ask`, put to each chronicler in turn (see
    /// [`Chroniclers::in_turn`]) until one answers.
    ///
    /// # Errors
    /// The last chronicler's error, if none answers.
    pub async fn ask<T, F>(&self, ask: impl Fn(Chronicler) -> F) -> Result<T, nodb_client::Error>
    where
        F: Future<Output = Result<T, nodb_client::Error>>,
    {
        let mut failed = None;
        for chronicler in self.in_turn() {
            match ask(chronicler.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    if self.len() > 1 {
                        tracing::debug!(chronicler = %chronicler.url(), error = %e, "trying the next chronicler");
                    }
                    failed = Some(e);
                }
            }
        }
        Err(failed.expect("at least one chronicler"))
    }
}

/// What the follower knows about the chronicler.
#[derive(Debug, Default)]
pub struct FollowStatus {
    /// The chronicler's head, from its heartbeats and actions.
    pub head: AtomicU64,
    /// Whether the stream is connected.
    pub connected: AtomicBool,
    /// Times the stream was (re)connected.
    pub connects: AtomicU64,
    /// Committed actions this view could not read (a payload or meta it
    /// cannot decode), reported and rejected without running a reducer.
    pub unreadable: AtomicU64,
    /// Why the view will not follow this chronicler (its log is behind the
    /// views, or differs from theirs), while that is so.
    pub refused: std::sync::Mutex<Option<String>>,
    /// The seq the views were restored at and the chain hash their
    /// snapshot recorded there, which the chronicler must agree with.
    pub anchor: Option<(u64, String)>,
}

impl FollowStatus {
    /// Why the view refuses to follow the chronicler, if it does.
    pub fn refusal(&self) -> Option<String> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_refusal(&self, why: Option<String>) {
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }
}

/// Checks that the chronicler's log reaches the views' seq: a log that went
/// back (lost segments, a different log behind the same address) must not
/// be followed as if the views were caught up. Unreachable or refusing
/// chroniclers are the stream's business, so only a log that answers and
/// is behind is refused.
async fn log_reaches(chronicler: &Chronicler, seq: u64, anchor: Option<&(u64, String)>) -> Result<(), String> {
    if seq == 0 {
        return Ok(());
    }
    if let Ok(Some(head)) = chronicler.anchor(None).await
        && head.seq < seq
    {
        return Err(format!(
            "the chronicler's log ends at seq {}, behind these views at seq {seq} (restored from a snapshot): \
             the log lost acknowledged history, or it is not the log these snapshots were taken from. \
             Refusing to follow it until it reaches seq {seq}",
            head.seq
        ));
    }
    if let Some((at, recorded)) = anchor
        && let Ok(Some(found)) = chronicler.anchor(Some(*at)).await
        && &found.hash != recorded
    {
        return Err(format!(
            "the chronicler's log differs from the history these views were computed from: its chain hash at \
             seq {at} is {}, but the snapshot the views were restored from recorded {recorded}. Refusing to \
             follow it",
            found.hash
        ));
    }
    Ok(())
}

/// How many snapshots may wait for the snapshotter before the follower
/// pauses.
const MAX_PENDING_SNAPSHOTS: usize = 4;

/// Follows the chroniclers until `shutdown`, one at a time: the one it is
/// on until it cannot be reached, refuses, or its stream fails, then the
/// next in turn (see [`Chroniclers`]); `past` rebuilds the views at a
/// redaction. The back-off (100 ms doubling to 5 s, or 5 s after a
/// refusal) applies once every chronicler has failed in a row; moving on
/// to the next waits 100 ms.
pub async fn follow(
    hub: Arc<Hub>,
    past: Arc<History>,
    chroniclers: Arc<Chroniclers>,
    status: Arc<FollowStatus>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    // Chroniclers that failed in a row since the last stream was opened.
    let mut failed = 0usize;
    loop {
        let chronicler = chroniclers.current();
        let url = chronicler.url();
        let seq = hub.current_seq();
        let from = seq.saturating_add(1);
        let checked = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), log_reaches(chronicler, seq, status.anchor.as_ref())) => {
                // A chronicler too slow to answer is the stream's business.
                r.unwrap_or(Ok(()))
            }
            () = shutdown.cancelled() => return,
        };
        if let Err(why) = checked {
            if status.refusal().as_deref() != Some(why.as_str()) {
                tracing::error!(chronicler = %url, "{why}");
            }
            status.set_refusal(Some(why));
            failed += 1;
            let wait = if failed.is_multiple_of(chroniclers.len()) { Duration::from_secs(5) } else { NEXT };
            move_on(&chroniclers, chronicler);
            tokio::select! {
                () = tokio::time::sleep(wait) => continue,
                () = shutdown.cancelled() => return,
            }
        }
        status.set_refusal(None);
        let connected = tokio::select! {
            r = chronicler.stream(from, None, &[]) => r,
            () = shutdown.cancelled() => return,
        };
        match connected {
            Ok(mut stream) => {
                status.connected.store(true, Relaxed);
                status.connects.fetch_add(1, Relaxed);
                tracing::info!(from, chronicler = %url, "following the chronicler");
                backoff = Duration::from_millis(100);
                failed = 0;
                let mut progress = Progress::new(hub.current_seq());
                // Far behind the head, actions are gathered into batches
                // and replayed view by view (see `crate::batch`); a batch
                // is applied when full (while the next is read), when the
                // head comes near, or when the stream pauses. On a
                // reconnect an unapplied batch is dropped: the stream
                // resumes after the last applied seq.
                let mut batches = Batches::default();
                let mut head = HeadProbe::default();
                // Asked once: it takes the hub's lock, which a batch being
                // applied holds.
                let margin = (hub.history_len() + crate::batch::BATCH) as u64;
                // The stream has paused once it has been waited on for
                // `PAUSE` with no line (the time spent on the last one does
                // not count). One timer, moved on when it fires early: a
                // timer set for each line cost a sixth of the follower's
                // CPU in a catch-up (registering it, and waking the driver
                // for it).
                let pause = tokio::time::sleep(PAUSE);
                tokio::pin!(pause);
                let mut waiting_since = tokio::time::Instant::now();
                let mut still_waiting = false;
                loop {
                    if !still_waiting {
                        waiting_since = tokio::time::Instant::now();
                    }
                    still_waiting = false;
                    let next = tokio::select! {
                        line = stream.next() => Some(line),
                        () = &mut pause, if !batches.is_empty() => None,
                        () = shutdown.cancelled() => return,
                    };
                    let Some(next) = next else {
                        let quiet_from = waiting_since + PAUSE;
                        if tokio::time::Instant::now() < quiet_from {
                            pause.as_mut().reset(quiet_from);
                            still_waiting = true;
                        } else if !batches.flush(&hub).await {
                            break;
                        }
                        continue;
                    };
                    let line = match next {
                        Some(Ok(line)) => line,
                        None => break,
                        Some(Err(e @ nodb_client::Error::Protocol { .. })) => {
                            tracing::error!(error = %e, "the chronicler sent a line this view cannot read; reconnecting");
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the chronicler stream failed");
                            break;
                        }
                    };
                    // Lines already read arrive without a wait, and a run of
                    // them applied one at a time would hold this runtime
                    // worker (and `/health`, and the clients queued on it)
                    // for seconds: yield whenever the task's budget is spent.
                    tokio::task::coop::consume_budget().await;
                    status.head.fetch_max(line.head(), Relaxed);
                    let unreadable = match &line {
                        StreamLine::Unreadable { error, .. } => Some(error.clone()),
                        _ => None,
                    };
                    let Some(action) = committed(line) else { continue };
                    if action.seq <= hub.current_seq().max(batches.last_seq()) {
                        continue; // already applied (a resumed stream may overlap)
                    }
                    if let Some(error) = unreadable {
                        // Once: the follower never reads a seq twice in a run.
                        status.unreadable.fetch_add(1, Relaxed);
                        let kind = action.payload.get("type").and_then(|t| t.as_str()).unwrap_or_default();
                        tracing::warn!(seq = action.seq, id = %action.id, r#type = kind, %error,
                            "the data view cannot read this committed action; no view applies it (rejected, as {UNREADABLE})");
                    }
                    // Checkpoints the snapshotter has not written yet hold
                    // their states: past a few, wait for it.
                    while hub.pending_snapshots() >= MAX_PENDING_SNAPSHOTS {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(10)) => {}
                            () = shutdown.cancelled() => return,
                        }
                    }
                    if action.kind == REDACT {
                        // The views are rebuilt at a redaction, after what
                        // came before it.
                        if !batches.flush(&hub).await {
                            break;
                        }
                        let redacted = tokio::select! {
                            r = redact(&hub, &past, &action) => r,
                            () = shutdown.cancelled() => return,
                        };
                        if let Err(e) = redacted {
                            tracing::error!(seq = action.seq, error = %e, "could not apply a redaction; retrying");
                            break;
                        }
                        progress.report(hub.current_seq(), status.head.load(Relaxed));
                        continue;
                    }
                    let far_behind = status.head.load(Relaxed) > action.seq + margin;
                    if far_behind || !batches.gathering.is_empty() {
                        batches.gathering.push(action);
                        let applied = if !far_behind {
                            batches.flush(&hub).await
                        } else if batches.gathering.len() >= crate::batch::BATCH {
                            batches.launch(&hub).await
                        } else {
                            true
                        };
                        if !applied {
                            break;
                        }
                    } else if !batches.settle().await {
                        break;
                    } else if let Err(e) = hub.apply(&action) {
                        tracing::error!(error = %e, "the stream skipped a seq; reconnecting to resume");
                        break;
                    } else {
                        head.applied_alone(chronicler, &status);
                    }
                    progress.report(hub.current_seq(), status.head.load(Relaxed));
                }
                head.stop();
                // The batch being applied ends before the stream resumes
                // after it.
                batches.settle().await;
                status.connected.store(false, Relaxed);
            }
            Err(e) => {
                let retry_in = if (failed + 1).is_multiple_of(chroniclers.len()) { backoff } else { NEXT };
                tracing::warn!(error = %e, chronicler = %url, ?retry_in, "cannot reach the chronicler");
            }
        }
        failed += 1;
        move_on(&chroniclers, chronicler);
        // Once every chronicler has failed in a row, back off.
        let wait = if failed.is_multiple_of(chroniclers.len()) {
            let wait = backoff;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            wait
        } else {
            NEXT
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The follower's check on the log's head while it applies actions one at
/// a time. The head a stream line tells is as old as the line: when the
/// view falls behind a fast writer, tens of thousands of lines wait in the
/// stream's buffers and sockets, each saying the head is about where the
/// view is, so the follower would go on applying one at a time (keeping a
/// version per seq, about twice the cost of a catch-up batch) while the
/// log runs away. So after every [`HEAD_PROBE_EVERY`] actions applied
/// alone it asks the chronicler its head (`GET /head`), one question at a
/// time, and batches once that shows it far behind.
#[derive(Default)]
struct HeadProbe {
    alone: usize,
    asking: Option<tokio::task::JoinHandle<()>>,
}

/// After how many actions applied one at a time the follower asks the
/// chronicler its head.
const HEAD_PROBE_EVERY: usize = 1024;

impl HeadProbe {
    /// Counts an action applied alone; asks the head when it is time.
    fn applied_alone(&mut self, chronicler: &Chronicler, status: &Arc<FollowStatus>) {
        self.alone += 1;
        if self.alone < HEAD_PROBE_EVERY || self.asking.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.alone = 0;
        let (chronicler, status) = (chronicler.clone(), status.clone());
        self.asking = Some(tokio::spawn(async move {
            if let Ok(Ok(Some(anchor))) = tokio::time::timeout(Duration::from_secs(5), chronicler.anchor(None)).await {
                status.head.fetch_max(anchor.head, Relaxed);
            }
        }));
    }

    /// Drops a question still open (the stream it was for has ended).
    fn stop(&mut self) {
        if let Some(t) = self.asking.take() {
            t.abort();
        }
    }
}

/// How long the follower waits before it tries the next chronicler.
const NEXT: Duration = Duration::from_millis(100);

/// After `from` failed, moves the follower on to the next chronicler (if
/// there are others), saying so.
fn move_on(chroniclers: &Chroniclers, from: &Chronicler) {
    if chroniclers.len() > 1 {
        let next = chroniclers.advance(from);
        tracing::warn!(from = %from.url(), to = %next.url(), "moving on to the next chronicler");
    }
}

/// Progress lines while a long history is replayed.
struct Progress {
    started: std::time::Instant,
    from: u64,
    last: std::time::Instant,
    replaying: bool,
}

impl Progress {
    fn new(from: u64) -> Progress {
        let now = std::time::Instant::now();
        Progress { started: now, from, last: now, replaying: false }
    }

    fn report(&mut self, seq: u64, head: u64) {
        if seq < head && self.last.elapsed() >= Duration::from_secs(2) {
            self.last = std::time::Instant::now();
            self.replaying = true;
            let rate = (seq - self.from) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                seq,
                head,
                rate = rate as u64,
                "replaying history ({:.0}%)",
                100.0 * seq as f64 / head as f64
            );
        } else if self.replaying && seq >= head {
            self.replaying = false;
            tracing::info!(seq, took = ?self.started.elapsed(), "caught up with the chronicler");
        }
    }
}

/// The action of a stream line (`None` for a heartbeat). An action whose
/// payload (or meta) cannot be read keeps its seq and id but becomes an
/// [`UNREADABLE`] action, `{"type": its type, "error": why}`, which the
/// engine rejects without running a reducer: no reducer ever sees a `null`
/// in place of the payload (to a reducer, `null` may mean something). So
/// every reader of the history — the follower and the replays of
/// [`crate::history`] — moves through the same seqs to the same states.
/// The follower reports it, once; replays pass it quietly.
pub(crate) fn committed(line: StreamLine) -> Option<CommittedAction> {
    match line {
        StreamLine::Action(action) => Some(action),
        StreamLine::Heartbeat { .. } => None,
        StreamLine::Unreadable { mut action, error } => {
            let kind = std::mem::replace(&mut action.kind, UNREADABLE.to_string());
            action.payload = serde_json::json!({"type": kind, "error": error});
            Some(action)
        }
    }
}

/// Why a redaction could not be applied (it is tried again).
#[derive(Debug, thiserror::Error)]
enum RedactFailed {
    /// The views could not be rebuilt.
    #[error(transparent)]
    Rebuild(#[from] HistoryError),
    /// It is not the next seq.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Applies the redaction `action`: the views at its seq are rebuilt
/// without the actions it redacts (or with those it restores), and the
/// actions the rebuild now rejects are told to their senders. One the
/// engine refuses (a bad payload, naming a redaction) is rejected like any
/// action.
async fn redact(hub: &Hub, past: &History, action: &CommittedAction) -> Result<(), RedactFailed> {
    let before = hub.redactions();
    let Ok((after, first)) = Redaction::of(action).and_then(|r| before.with(r)) else {
        return Ok(hub.apply(action)?);
    };
    let Some(first) = first else {
        // It changes the effect of no seq: the views stay as they are.
        return Ok(hub.apply_redaction(action, after, None, Vec::new())?);
    };
    let started = std::time::Instant::now();
    let rebuilt = past.rebuild(action.seq, &before, &after, first).await?;
    tracing::info!(
        seq = action.seq,
        first,
        replayed = rebuilt.replayed,
        newly_rejected = rebuilt.rejected_total,
        took = ?started.elapsed(),
        "redaction: the views are rebuilt"
    );
    let rejected = rebuilt.rejected.into_iter().map(|(seq, r)| RejectedAction {
        reason: format!("the action at seq {seq} is rejected since the redaction at seq {}: {}", action.seq, r.reason),
        ..r
    });
    Ok(hub.apply_redaction(action, after, Some(rebuilt.states), rejected.collect())?)
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
