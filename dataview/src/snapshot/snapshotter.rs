//! The snapshotter: the task that writes the hub's views to the snapshot
//! store as the policy says, and prunes the old ones.

use std::sync::Arc;

use super::Snapshots;
use crate::hub::ViewsAt;

/// When the snapshotter writes.
#[derive(Clone, Debug)]
pub struct SnapshotPolicy {
    /// The checkpoint interval: a snapshot at every multiple of this seq,
    /// kept for good (the hub hands the states over as it passes them).
    pub every_seqs: u64,
    /// And one after this long, if anything changed.
    pub every: std::time::Duration,
}

/// Writes snapshots of the hub's views: the checkpoints and the
/// `@@nodb/snapshot`s the hub hands over (each at exactly its seq; once a
/// write took [`crate::hub::SLOW_WRITE`] or more, the hub skips the
/// checkpoints a view catching up reaches while it writes and for
/// [`crate::hub::CHECKPOINT_REST`] times as long after), one every
/// `policy.every` if anything changed, and a last one at shutdown;
/// prunes old ones after each round. Each write is logged at debug level,
/// with a summary line at most once a minute.
pub async fn run_snapshotter(
    hub: Arc<crate::hub::Hub>,
    snapshots: Snapshots,
    policy: SnapshotPolicy,
    mut last_written: u64,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let names = hub.view_names();
    let mut seq_rx = hub.seq();
    let mut tick = tokio::time::interval(policy.every);
    tick.tick().await;
    let mut summary = WriteSummary::new();
    loop {
        let (ticked, stopping) = tokio::select! {
            _ = seq_rx.changed() => (false, false),
            _ = tick.tick() => (true, false),
            () = shutdown.cancelled() => (false, true),
        };
        let mut due = hub.take_snapshot_requests();
        if ticked || stopping {
            let now = hub.current_views();
            if now.seq > last_written && due.iter().all(|v| v.seq != now.seq) {
                due.push(now);
            }
        }
        let wrote = !due.is_empty();
        for ViewsAt { seq, states, redactions } in due {
            let started = std::time::Instant::now();
            // After a slow write, a view catching up skips its checkpoints
            // meanwhile and for a while after (see `Hub::request_snapshot`).
            hub.snapshot_writing();
            // The write lets the states go once they are serialised, on a
            // blocking thread: they may be the last holders of a version
            // the views have since moved on from, and freeing it is as long
            // as writing it.
            let written = snapshots.write(seq, &names, states, &redactions).await;
            hub.snapshot_written(started.elapsed());
            match written {
                Ok(written) => {
                    last_written = last_written.max(seq);
                    if written {
                        tracing::debug!(seq, took = ?started.elapsed(), "snapshot written");
                        summary.wrote(seq, started.elapsed());
                    }
                }
                Err(e) => tracing::error!(seq, error = %e, "could not write a snapshot"),
            }
        }
        // The snapshots at redactions stay, like checkpoints: they are the
        // bases of reads after them (see `crate::redaction`). Those past
        // the views' seq, which other data views sharing the store wrote,
        // stay too: this one cannot know yet whether they are at
        // redactions.
        let at = hub.current_seq();
        let redactions = hub.redactions();
        if wrote && let Err(e) = snapshots.prune(|seq| seq > at || redactions.has(seq)).await {
            tracing::warn!(error = %e, "could not prune old snapshots");
        }
        summary.report(stopping);
        if stopping {
            return;
        }
    }
}

/// Snapshot writes since the last summary line.
struct WriteSummary {
    since: std::time::Instant,
    written: u64,
    latest: u64,
    slowest: std::time::Duration,
}

impl WriteSummary {
    fn new() -> WriteSummary {
        WriteSummary { since: std::time::Instant::now(), written: 0, latest: 0, slowest: Default::default() }
    }

    fn wrote(&mut self, seq: u64, took: std::time::Duration) {
        self.written += 1;
        self.latest = self.latest.max(seq);
        self.slowest = self.slowest.max(took);
    }

    /// A summary line once a minute (and at shutdown) if anything was written.
    fn report(&mut self, now: bool) {
        if self.written > 0 && (now || self.since.elapsed() >= std::time::Duration::from_secs(60)) {
            tracing::info!(written = self.written, latest = self.latest, slowest = ?self.slowest, "snapshots written");
            *self = WriteSummary::new();
        }
    }
}
