//! Running cascades: one follower task per upstream of each cascade, and
//! one task per cascade that folds the followers' changes into its state.
//!
//! The combining task waits until every upstream has sent its first state,
//! then, for each batch of changes (whatever is queued when it gets to
//! them), runs the reducer once — the incremental one where the cascade has
//! one and every change is a patch — and records one update in the hub
//! with the upstream seqs it reflects. A reducer that panics is caught and
//! logged; the update is skipped and the next one is computed in full.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use json_patch::PatchOperation;
use nodb_shared::Tree;
use nodb_shared::protocol::Sources;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::definition::{Cascade, Change};
use crate::error::ConfigError;
use crate::hub::{CascadeStats, Hub};
use crate::server::ServerState;
use crate::upstream::{Event, EventChange, UpstreamStatus, follow};

/// How cascades run and serve.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How many recent updates each cascade keeps, for clients that fall
    /// behind and for `?at=N`.
    pub history: usize,
    /// How often to ping each client; a client that misses a pong is
    /// disconnected.
    pub ping: Duration,
    /// How long an upstream stream may stay silent (data views ping every
    /// 15 s) before it is reopened.
    pub idle_timeout: Duration,
    /// How long an upstream may refuse to resume from the replica's seq
    /// (as a data view does while it replays its history after a restart)
    /// before the replica is replaced by a fresh snapshot.
    pub resume_grace: Duration,
    /// The seq of each cascade's first update. By default the microseconds
    /// since 1970 at start-up, so seqs keep growing across restarts and a
    /// client's `since` from an earlier run is never mistaken for one of
    /// this run (it gets a snapshot).
    pub first_seq: u64,
    /// The token sent to the upstreams, if they want one (the `read` right
    /// on the views followed).
    pub token: Option<nodb_client::TokenSource>,
    /// Who may read the cascades.
    pub access: nodb_server::Access,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            token: None,
            access: nodb_server::Access::open(),
            history: 4096,
            ping: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            resume_grace: Duration::from_secs(10),
            first_seq: clock_first_seq(),
        }
    }
}

/// A first seq from the clock: microseconds since 1970 (at least 1).
pub fn clock_first_seq() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.as_micros() as u64).max(1)
}

impl Settings {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError::Setting`] naming the setting out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.history == 0 {
            return Err(ConfigError::Setting("the history must keep at least 1 update".into()));
        }
        if self.ping.is_zero() || self.idle_timeout.is_zero() {
            return Err(ConfigError::Setting("the ping interval and the idle timeout must be positive".into()));
        }
        Ok(())
    }
}

/// Started cascades: what their routes serve, and their tasks.
#[derive(Debug)]
pub struct Running {
    /// What the routes serve ([`crate::server::router`]).
    pub state: ServerState,
    tasks: TaskTracker,
}

impl Running {
    /// After the server has stopped (and `shutdown` was cancelled): waits
    /// for the client sessions and the cascades' tasks.
    pub async fn finish(self) {
        self.state.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.state.tasks.wait()).await;
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
        tracing::info!("cascades stopped");
    }
}

/// Checks `cascades` against the upstream URLs in `upstreams` (view name →
/// base URL of the server that has it).
///
/// # Errors
/// The first problem: a bad or duplicate name, a missing or bad URL.
pub fn check(cascades: &[Cascade], upstreams: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if cascades.is_empty() {
        return Err(ConfigError::Empty);
    }
    for (i, c) in cascades.iter().enumerate() {
        c.validate()?;
        if cascades[..i].iter().any(|o| o.name == c.name) {
            return Err(ConfigError::Duplicate(c.name.clone()));
        }
        for up in &c.upstreams {
            let url = upstreams
                .get(up)
                .ok_or_else(|| ConfigError::MissingUpstream { cascade: c.name.clone(), upstream: up.clone() })?;
            // Replicas of one view (data views of one app) are separated by
            // commas.
            for one in url.split(',') {
                nodb_client::ServiceUrl::parse(one.trim())
                    .map_err(|_| ConfigError::BadUrl { upstream: up.clone(), url: one.to_string() })?;
            }
        }
    }
    Ok(())
}

/// Starts `cascades`, following their upstreams at the URLs in
/// `upstreams`, until `shutdown`. Call it inside a tokio runtime; serve
/// [`Running::state`] with [`crate::server::router`].
///
/// # Errors
/// A [`ConfigError`] from [`check`] or [`Settings::validate`].
pub fn start(
    cascades: Vec<Cascade>,
    upstreams: &BTreeMap<String, String>,
    settings: &Settings,
    shutdown: CancellationToken,
) -> Result<Running, ConfigError> {
    check(&cascades, upstreams)?;
    settings.validate()?;
    let tasks = TaskTracker::new();
    let mut served = Vec::new();
    for cascade in cascades {
        let hub = Arc::new(Hub::new(&cascade.name, settings.history, settings.first_seq));
        let statuses: Vec<Arc<UpstreamStatus>> = cascade
            .upstreams
            .iter()
            .map(|u| Arc::new(UpstreamStatus::new(u, upstreams.get(u).map_or("", String::as_str))))
            .collect();
        let (tx, rx) = mpsc::channel(256);
        for (i, status) in statuses.iter().enumerate() {
            let span = tracing::info_span!("upstream", cascade = %cascade.name, view = %status.name);
            let timing = (settings.idle_timeout, settings.resume_grace);
            let task = follow(i, status.clone(), settings.token.clone(), tx.clone(), timing, shutdown.clone());
            tasks.spawn(tracing::Instrument::instrument(task, span));
        }
        let stats = Arc::new(CascadeStats::default());
        let span = tracing::info_span!("cascade", name = %cascade.name);
        let combine = combine(cascade.clone(), hub.clone(), stats.clone(), rx, shutdown.clone());
        tasks.spawn(tracing::Instrument::instrument(combine, span));
        served.push(crate::server::Served { upstreams: statuses, hub, stats });
    }
    let state = ServerState {
        cascades: Arc::new(served),
        shutdown,
        tasks: TaskTracker::new(),
        ping: settings.ping,
        access: settings.access.clone(),
    };
    Ok(Running { state, tasks })
}

/// What happened to one upstream since the last update.
#[derive(Clone, Debug)]
enum Pending {
    Unchanged,
    Ops(Vec<PatchOperation>),
    Replaced,
}

/// At most this many queued changes go into one update, so a long queue
/// still produces updates as it drains.
const BATCH: usize = 256;

async fn combine(
    cascade: Cascade,
    hub: Arc<Hub>,
    stats: Arc<CascadeStats>,
    mut events: mpsc::Receiver<Event>,
    shutdown: CancellationToken,
) {
    let n = cascade.upstreams.len();
    let mut replicas: Vec<Option<(u64, Tree)>> = vec![None; n];
    let mut pending = vec![Pending::Unchanged; n];
    let mut derived: Option<Tree> = None;
    let mut waiting_logged = false;
    loop {
        let first = tokio::select! {
            e = events.recv() => e,
            () = shutdown.cancelled() => return,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        stats.changes.fetch_add(batch.len() as u64, Relaxed);
        for Event { upstream, seq, state, change } in batch {
            pending[upstream] = match (std::mem::replace(&mut pending[upstream], Pending::Unchanged), change) {
                (Pending::Replaced, _) | (_, EventChange::Replaced) => Pending::Replaced,
                (Pending::Unchanged, EventChange::Patched(ops)) => Pending::Ops(ops),
                (Pending::Ops(mut before), EventChange::Patched(ops)) => {
                    before.extend(ops);
                    Pending::Ops(before)
                }
            };
            replicas[upstream] = Some((seq, state));
        }
        let states: Vec<&Tree> = replicas.iter().filter_map(|r| r.as_ref().map(|(_, s)| s)).collect();
        if states.len() < n {
            if !waiting_logged {
                let missing: Vec<&str> = cascade
                    .upstreams
                    .iter()
                    .zip(&replicas)
                    .filter(|(_, r)| r.is_none())
                    .map(|(u, _)| u.as_str())
                    .collect();
                tracing::info!(waiting_for = ?missing, "waiting for every upstream's first state");
                waiting_logged = true;
            }
            continue;
        }
        let changes: Vec<Change<'_>> = pending
            .iter()
            .map(|p| match p {
                Pending::Unchanged => Change::Unchanged,
                Pending::Ops(ops) => Change::Patched(ops),
                Pending::Replaced => Change::Replaced,
            })
            .collect();
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| cascade.update(derived.as_ref(), &states, &changes)));
        stats.reduce_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        match result {
            Ok(next) => {
                pending.fill(Pending::Unchanged);
                let sources: Sources = cascade
                    .upstreams
                    .iter()
                    .zip(&replicas)
                    .map(|(u, r)| (u.clone(), r.as_ref().map_or(0, |(seq, _)| *seq)))
                    .collect();
                let seq = hub.push(next.clone(), sources);
                if derived.is_none() {
                    tracing::info!(seq, "first state computed; serving");
                }
                derived = Some(next);
            }
            Err(panic) => {
                // Its payload's drop may panic too.
                nodb_shared::panic::let_go(panic);
                // The next update starts from scratch: the changes folded so
                // far are not in any state.
                pending.fill(Pending::Replaced);
                stats.panics.fetch_add(1, Relaxed);
                tracing::error!("the reducer panicked; this update is skipped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_checked_with_sentences() {
        let c = || Cascade::new("sum", ["a", "b"], |_: &[&Tree]| Tree::Null);
        let urls: BTreeMap<String, String> =
            [("a".to_string(), "http://127.0.0.1:1".to_string()), ("b".to_string(), "http://h:2/x".to_string())].into();
        assert_eq!(check(&[c()], &urls), Ok(()));
        assert_eq!(check(&[], &urls), Err(ConfigError::Empty));
        assert_eq!(check(&[c(), c()], &urls), Err(ConfigError::Duplicate("sum".into())));
        let mut missing = urls.clone();
        missing.remove("b");
        let e = check(&[c()], &missing).unwrap_err();
        assert!(e.to_string().contains("--upstream b=http://HOST:PORT"), "{e}");
        let mut bad = urls.clone();
        bad.insert("a".into(), "localhost".into());
        assert!(check(&[c()], &bad).unwrap_err().to_string().contains("http://HOST:PORT"));
        let s = Settings { history: 0, ..Settings::default() };
        assert!(s.validate().is_err());
        assert!(Settings::default().first_seq > 1_000_000_000_000_000);
    }
}
