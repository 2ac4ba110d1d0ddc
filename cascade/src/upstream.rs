//! Following one upstream view through its public stream
//! (`/views/{name}/stream`, a WebSocket), keeping a replica of its state,
//! with [`nodb_client::ViewFollower`]: it starts from the stream's
//! snapshot and applies each patch; on a dropped connection it resumes
//! with `since` = the replica's seq; after bad data (a message it cannot
//! read, a gap, a patch that does not apply) it resyncs from a snapshot,
//! while the cascade keeps serving the state of the last good replica; a
//! data view that refuses the `since` (restarted, still replaying) is
//! waited for up to the resume grace; a connection silent for longer than
//! the idle timeout (data views ping every 15 s) is reopened. This module
//! turns what happens into the upstream's status, log lines and the
//! cascade's events.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use json_patch::PatchOperation;
use nodb_client::{Change, FollowEvent, FollowSettings, ServiceUrl, ViewClient, ViewFollower};
use nodb_shared::Tree;
use nodb_shared::protocol::Sources;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a cascade knows of one upstream: for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct UpstreamStatus {
    /// The upstream view's name.
    pub name: String,
    /// Its server's base URL, or several replicas' separated by commas
    /// (followed one at a time, failing over in turn).
    pub url: String,
    /// Whether the stream is open.
    pub connected: AtomicBool,
    /// Whether the replica has had a state.
    pub has_state: AtomicBool,
    /// The seq of the replica.
    pub seq: AtomicU64,
    /// Snapshot and patch messages applied.
    pub messages: AtomicU64,
    /// Times the stream was opened.
    pub connects: AtomicU64,
    /// Times the replica was resynced from a snapshot after bad data.
    pub resyncs: AtomicU64,
    /// The upstream's own `sources`, when it is a cascade.
    pub sources: Mutex<Option<Sources>>,
    /// The latest problem, for people.
    pub last_error: Mutex<Option<String>>,
}

impl UpstreamStatus {
    /// The status of upstream `name` at `url`.
    pub fn new(name: &str, url: &str) -> UpstreamStatus {
        UpstreamStatus { name: name.to_string(), url: url.trim_end_matches('/').to_string(), ..Default::default() }
    }

    fn problem(&self, text: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }
}

/// A change of one upstream's replica, for the cascade.
#[derive(Debug)]
pub(crate) struct Event {
    /// Which upstream, by its index in the cascade's list.
    pub upstream: usize,
    /// The replica's new seq.
    pub seq: u64,
    /// The replica's new state.
    pub state: Tree,
    /// How it got there.
    pub change: EventChange,
}

/// How a replica changed.
#[derive(Debug)]
pub(crate) enum EventChange {
    /// By these operations.
    Patched(Vec<PatchOperation>),
    /// Replaced by a snapshot.
    Replaced,
}

/// Follows `status.name` at `status.url` until `shutdown`, sending each
/// change of the replica to `events` (waiting when the cascade is busy, so
/// the upstream coalesces for it).
pub(crate) async fn follow(
    index: usize,
    status: Arc<UpstreamStatus>,
    token: Option<nodb_client::TokenSource>,
    events: mpsc::Sender<Event>,
    (idle_timeout, resume_grace): (Duration, Duration),
    shutdown: CancellationToken,
) {
    let mut views = Vec::new();
    for url in status.url.split(',').map(str::trim) {
        match ServiceUrl::parse(url) {
            Ok(base) => views.push(ViewClient::new(base.with_token_source(token.clone()), &status.name)),
            Err(e) => {
                tracing::error!(%url, error = %e, "not an upstream URL");
                return;
            }
        }
    }
    let settings = FollowSettings { idle_timeout, resume_grace, ..FollowSettings::default() };
    // Replicas of one view: resumed on the next with `since` when one fails.
    let mut follower = ViewFollower::on_replicas(views, settings);
    let name = &status.name;
    loop {
        let event = tokio::select! {
            event = follower.next() => event,
            () = shutdown.cancelled() => break,
        };
        match event {
            FollowEvent::Connected { url, .. } => {
                status.connected.store(true, Relaxed);
                status.connects.fetch_add(1, Relaxed);
                tracing::info!(upstream = %name, %url, "following the upstream view");
            }
            FollowEvent::Update(update) => {
                status.messages.fetch_add(1, Relaxed);
                status.seq.store(update.seq, Relaxed);
                status.has_state.store(true, Relaxed);
                if let Some(sources) = follower.replica().sources() {
                    *status.sources.lock().unwrap_or_else(|e| e.into_inner()) = Some(sources.clone());
                }
                let change = match update.change {
                    Change::Replaced => EventChange::Replaced,
                    Change::Patched(ops) => EventChange::Patched(ops.0),
                };
                let event = Event { upstream: index, seq: update.seq, state: update.state, change };
                tokio::select! {
                    sent = events.send(event) => if sent.is_err() { break },
                    () = shutdown.cancelled() => break,
                }
            }
            FollowEvent::Rejected { .. } => {}
            FollowEvent::ServerError { code, message } => {
                tracing::warn!(upstream = %name, %code, %message, "the upstream sent an error");
            }
            FollowEvent::Disconnected { error, retry_in } => {
                status.connected.store(false, Relaxed);
                let text = error.to_string();
                if matches!(error, nodb_client::Error::Connect(_)) {
                    tracing::warn!(upstream = %name, error = %text, ?retry_in, "cannot reach the upstream");
                } else {
                    tracing::warn!(upstream = %name, reason = %text, ?retry_in, "the upstream stream ended; resuming");
                }
                status.problem(text);
            }
            FollowEvent::Resync { reason, .. } => {
                status.connected.store(false, Relaxed);
                tracing::error!(upstream = %name, %reason, "bad data from the upstream; resyncing it from a snapshot");
                status.resyncs.fetch_add(1, Relaxed);
                status.problem(reason);
            }
            FollowEvent::ResumeRefused { refusal, waited, retry_in } => {
                // A data view refuses a `since` it has not reached. Most
                // likely it restarted and is replaying its history: a
                // snapshot now could be older than the replica, and the
                // cascade would go back in time. So the follower waits for
                // it to catch up; only if it never does (it lost seqs)
                // does it take a fresh snapshot.
                let (code, body) = (refusal.status, &refusal.message);
                status.problem(format!("refused to resume (HTTP {code}): {body}"));
                match retry_in {
                    Some(retry_in) => {
                        tracing::info!(upstream = %name, code, %body, ?retry_in, "the upstream has not reached the replica's seq (recovering?); waiting for it")
                    }
                    None => {
                        tracing::warn!(upstream = %name, code, %body, ?waited, "the upstream still refuses to resume; taking a fresh snapshot")
                    }
                }
            }
        }
    }
    follower.close().await;
}
