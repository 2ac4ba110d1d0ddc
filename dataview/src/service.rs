//! Starting a data view: its settings, checked with [`Settings::validate`],
//! and [`start`], which restores the views from the newest snapshot and
//! starts the follower and the snapshotter. The caller serves
//! [`crate::server::router`] of [`Running::state`] with `nodb_server::serve`
//! (or `serve_with` and its limits, as `nodb dataview` does; or merges the
//! router into one of its own, as `nodb up` does) until
//! `Running::state.shutdown`, and calls [`Running::finish`] once the server
//! has stopped. [`start_following`] takes more chroniclers of the same log
//! to fall back on (see [`crate::follow::Chroniclers`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::engine::Engine;
use crate::follow::{Chroniclers, FollowStatus, follow};
use crate::history::{History, HistorySettings};
use crate::hub::Hub;
use crate::server::AppState;
use crate::snapshot::{Loaded, SnapshotError, SnapshotPolicy, Snapshots, run_snapshotter};

/// What a data view needs to start.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The application.
    pub app: App,
    /// The chronicler (`http(s)://HOST:PORT[/prefix]`), with the data view's
    /// own token if the chronicler wants one (the `log` right).
    pub chronicler: nodb_client::ServiceUrl,
    /// How many recent seqs to keep in memory.
    pub history: usize,
    /// How often to ping clients.
    pub ping: Duration,
    /// Where the snapshots are.
    pub snapshots: Snapshots,
    /// When to write snapshots.
    pub policy: SnapshotPolicy,
    /// How past states are read.
    pub history_settings: HistorySettings,
    /// The application's own files (its page), served beside the client.
    pub assets: &'static [crate::web::Asset],
    /// Who may do what on this data view.
    pub access: nodb_server::Access,
    /// The application's version, reported in `/views` and `/health`.
    pub version: Option<String>,
}

/// Why a data view cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that can never work; the message says what to change.
    #[error("{0}")]
    Setting(String),
    /// The snapshots could not be read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl Settings {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`StartError::Setting`] naming the first bad one.
    pub fn validate(&self) -> Result<(), StartError> {
        let bad = |s: &str| Err(StartError::Setting(s.to_string()));
        if self.ping.is_zero() {
            return bad("--ping must be a positive number of seconds");
        }
        if self.history == 0 {
            return bad("--history must be at least 1");
        }
        if self.history_settings.readers == 0 {
            return bad("--history-readers must be at least 1");
        }
        if self.policy.every_seqs == 0 || self.policy.every.is_zero() {
            return bad("--snapshot-every and --snapshot-interval must be positive");
        }
        Ok(())
    }
}

/// A started data view: the state its routes serve, and its background
/// tasks.
pub struct Running {
    /// What the routes serve.
    pub state: AppState,
    follower: tokio::task::JoinHandle<()>,
    snapshotter: tokio::task::JoinHandle<()>,
}

/// Restores the views from the newest valid snapshot and starts following
/// the chronicler and writing snapshots; the caller serves
/// [`Running::state`]. Client sessions are tracked in `tasks`.
///
/// # Errors
/// A bad setting, or snapshots that cannot be read.
pub async fn start(settings: Settings, shutdown: CancellationToken, tasks: TaskTracker) -> Result<Running, StartError> {
    start_following(settings, Vec::new(), shutdown, tasks).await
}

/// [`start`], with `more` chroniclers of the same log to fall back on after
/// `settings.chronicler`, in turn: the follower moves on to the next when
/// the one it is on cannot be reached or its stream fails; the history
/// replays and the snapshots' chain hashes ask the one it is on first, and
/// dispatches relayed from client sockets (and inspections) go to it.
///
/// # Errors
/// A bad setting, or snapshots that cannot be read.
pub async fn start_following(
    settings: Settings,
    more: Vec<nodb_client::ServiceUrl>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> Result<Running, StartError> {
    settings.validate()?;
    let Settings { app, chronicler, history, ping, snapshots, policy, history_settings, assets, access, version } =
        settings;
    let names: Vec<String> = app.views.iter().map(|v| v.name.clone()).collect();
    let loading = std::time::Instant::now();
    let loaded = snapshots.load_latest(&names).await?;
    let load_took = loading.elapsed();
    let (engine, chain) = match loaded {
        Some(Loaded { seq, states, redactions, chain }) => {
            tracing::info!(seq, redactions = redactions.ledger().len(), "restored the views from a snapshot");
            let initial = app.initial_states();
            let states = states.into_iter().zip(initial).map(|(s, i)| s.unwrap_or(i)).collect();
            (Engine::restore(app, seq, states).with_redactions(redactions), chain)
        }
        None => (Engine::new(app), None),
    };
    let restored_at = engine.seq();
    // The chronicler must reach the restored seq with the chain hash the
    // snapshot recorded there, or it is not the history the views hold.
    // (Read with the snapshot: another data view sharing the store may
    // prune it meanwhile.)
    let anchor = chain.filter(|_| restored_at > 0).map(|hash| (restored_at, hash));
    let chroniclers = Arc::new(Chroniclers::new(chronicler.clone(), more));
    let snapshots = snapshots.with_anchor(chroniclers.clone());
    let version: Option<Arc<str>> = version.map(Arc::from);
    let hub = Hub::versioned(engine, history, Some(policy.every_seqs), version.clone());
    if restored_at > 0 {
        // Writing a snapshot of these states would take at least as long
        // as reading and decoding this one did (the read uses every core,
        // a write one): the catch-up that follows rests from checkpoints
        // as after a write that long (its first one,
        // written at once, cost a restart of a million products about a
        // second, the batches copying what it shared).
        hub.snapshot_written(load_took);
    }
    let snapshots = snapshots.with_checkpoints(policy.every_seqs);
    let past = History::new(hub.app(), Some(snapshots.clone()), chronicler.clone(), history_settings)
        .with_chroniclers(chroniclers.clone());
    let past = Arc::new(past.of_hub(hub.clone()));
    let status = Arc::new(FollowStatus { anchor, ..FollowStatus::default() });
    let follower =
        tokio::spawn(follow(hub.clone(), past.clone(), chroniclers.clone(), status.clone(), shutdown.clone()));
    let snapshotter =
        tokio::spawn(run_snapshotter(hub.clone(), snapshots.clone(), policy, restored_at, shutdown.clone()));
    let state =
        AppState { hub, follow: status, shutdown, tasks, ping, chroniclers, history: past, assets, access, version };
    Ok(Running { state, follower, snapshotter })
}

impl Running {
    /// After the server has stopped: waits (a few seconds at most) for the
    /// client sessions, then the follower, then the last snapshot.
    pub async fn finish(self) {
        self.state.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.state.tasks.wait()).await;
        let _ = self.follower.await;
        // The last snapshot is written once the follower has stopped.
        let _ = self.snapshotter.await;
        tracing::info!("dataview stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            app: crate::json_doc::app(),
            chronicler: "http://127.0.0.1:7401".parse().unwrap(),
            history: 16,
            ping: Duration::from_secs(15),
            snapshots: Snapshots::new(std::sync::Arc::new(object_store::memory::InMemory::new()), "json", 3),
            policy: SnapshotPolicy { every_seqs: 100, every: Duration::from_secs(60) },
            history_settings: HistorySettings::default(),
            assets: &[],
            access: nodb_server::Access::open(),
            version: None,
        }
    }

    #[test]
    fn validate_names_the_bad_setting() {
        assert!(settings().validate().is_ok());
        let check = |s: Settings, words: &str| {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(words), "{e:?} should name {words}");
        };
        check(Settings { ping: Duration::ZERO, ..settings() }, "--ping");
        check(Settings { history: 0, ..settings() }, "--history");
        let readers = HistorySettings { readers: 0, ..HistorySettings::default() };
        check(Settings { history_settings: readers, ..settings() }, "--history-readers");
        let policy = SnapshotPolicy { every_seqs: 0, every: Duration::from_secs(1) };
        check(Settings { policy, ..settings() }, "--snapshot-every");
    }
}
