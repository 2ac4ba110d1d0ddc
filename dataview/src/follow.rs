//! Following the chronicler: its action stream over a WebSocket
//! (`/actions?from=N`), from the seq after the views' own, applied in
//! order; on any failure, reconnect with back-off and resume at the right
//! seq.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::StreamExt;
use nodb_client::{Chronicler, ServiceUrl};
use nodb_shared::protocol::{CommittedAction, StreamLine};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// What the follower knows about the chronicler.
#[derive(Debug, Default)]
pub struct FollowStatus {
    /// The chronicler's head, from its heartbeats and actions.
    pub head: AtomicU64,
    /// Whether the stream is connected.
    pub connected: AtomicBool,
    /// Times the stream was (re)connected.
    pub connects: AtomicU64,
}

/// How many snapshots may wait for the snapshotter before the follower
/// pauses.
const MAX_PENDING_SNAPSHOTS: usize = 4;

/// Follows the chronicler at `url` until `shutdown`.
pub async fn follow(hub: Arc<Hub>, url: ServiceUrl, status: Arc<FollowStatus>, shutdown: CancellationToken) {
    let chronicler = Chronicler::new(url.clone());
    let mut backoff = Duration::from_millis(100);
    loop {
        let from = hub.current_seq() + 1;
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
                let mut progress = Progress::new(hub.current_seq());
                // Far behind the head, actions are gathered into batches
                // and replayed view by view (see `crate::batch`); a batch
                // is applied when full, when the head comes near, or when
                // the stream pauses. On a reconnect an unapplied batch is
                // dropped: the stream resumes after the last applied seq.
                let mut batch: Vec<CommittedAction> = Vec::new();
                loop {
                    let next = tokio::select! {
                        line = stream.next() => Some(line),
                        () = tokio::time::sleep(Duration::from_millis(20)), if !batch.is_empty() => None,
                        () = shutdown.cancelled() => return,
                    };
                    let Some(next) = next else {
                        if !apply_batch(&hub, &mut batch) {
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
                    status.head.fetch_max(line.head(), Relaxed);
                    let Some(action) = committed(line) else { continue };
                    if action.seq <= hub.current_seq() + batch.len() as u64 {
                        continue; // already applied (a resumed stream may overlap)
                    }
                    // Checkpoints the snapshotter has not written yet hold
                    // their states: past a few, wait for it.
                    while hub.pending_snapshots() >= MAX_PENDING_SNAPSHOTS {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(10)) => {}
                            () = shutdown.cancelled() => return,
                        }
                    }
                    let margin = (hub.history_len() + crate::batch::BATCH) as u64;
                    let far_behind = status.head.load(Relaxed) > action.seq + margin;
                    if far_behind || !batch.is_empty() {
                        batch.push(action);
                        if (batch.len() >= crate::batch::BATCH || !far_behind) && !apply_batch(&hub, &mut batch) {
                            break;
                        }
                    } else if let Err(e) = hub.apply(&action) {
                        tracing::error!(error = %e, "the stream skipped a seq; reconnecting to resume");
                        break;
                    }
                    progress.report(hub.current_seq(), status.head.load(Relaxed));
                }
                status.connected.store(false, Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, chronicler = %url, retry_in = ?backoff, "cannot reach the chronicler"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
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
/// payload cannot be read keeps its seq, with a `null` payload, so every
/// reader of the history — the follower and the replays of
/// [`crate::history`] — reaches the same states: the view must move on,
/// and every seq must get its update. The reducers reject the `null`, and
/// the error is logged.
pub(crate) fn committed(line: StreamLine) -> Option<CommittedAction> {
    match line {
        StreamLine::Action(action) => Some(action),
        StreamLine::Heartbeat { .. } => None,
        StreamLine::Unreadable { action, error } => {
            tracing::error!(seq = action.seq, id = %action.id, %error, "an action's payload cannot be read; applying it without one");
            Some(action)
        }
    }
}

/// Applies and empties `batch`; `false` to reconnect.
fn apply_batch(hub: &Hub, batch: &mut Vec<CommittedAction>) -> bool {
    let result = hub.apply_batch(batch);
    batch.clear();
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "the stream skipped a seq; reconnecting to resume");
            false
        }
    }
}
