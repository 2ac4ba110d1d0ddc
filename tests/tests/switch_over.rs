//! The switch-over of healing: a client that followed a data view running
//! one version of the reducers resumes, with `since`, on a data view
//! running another version. It must be sent a snapshot of the new state —
//! never a patch computed against the new code's state at its seq, which
//! it never had — and a client of the same version still gets a patch.
//!
//! The old data view is the real `nodb dataview` binary (the warehouse app
//! at its crate's version); the new one runs in this process with a
//! changed `stock` reducer and another version, since the binary holds
//! one version of each app.

use std::sync::Arc;
use std::time::Duration;

use nodb_client::{Change, FollowEvent, FollowSettings, Replica, ServiceUrl, StreamOptions, ViewClient, ViewFollower};
use nodb_dataview::history::HistorySettings;
use nodb_dataview::service::{Settings, start};
use nodb_dataview::snapshot::{SnapshotPolicy, Snapshots};
use nodb_shared::Tree;
use nodb_shared::protocol::{CommittedAction, ServerMessage};
use nodb_tests::{Service, dispatch, wait_for_seq};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const NEW_VERSION: &str = "0.0.0-fixed";

/// The warehouse app with a `stock` reducer that applies every sale twice.
fn changed_app() -> nodb_dataview::app::App {
    let mut app = nodb_warehouse::views::app();
    let stock = app.views.iter_mut().find(|v| v.name == "stock").unwrap();
    let old = stock.reducer.clone();
    stock.draft = None;
    stock.reducer = Arc::new(move |state: &Tree, action: &CommittedAction| {
        let once = old(state, action)?;
        if action.kind == "stock/sold" { old(&once, action) } else { Ok(once) }
    });
    app
}

/// A data view of the changed app, served on a port chosen now; its URL.
async fn start_new_view(chronicler: &str, snapshots: &std::path::Path, shutdown: &CancellationToken) -> String {
    let settings = Settings {
        app: changed_app(),
        chronicler: chronicler.parse().unwrap(),
        history: 64,
        ping: Duration::from_secs(15),
        snapshots: Snapshots::local(snapshots, "warehouse", 3).unwrap(),
        policy: SnapshotPolicy { every_seqs: 1_000, every: Duration::from_secs(600) },
        history_settings: HistorySettings::default(),
        assets: &[],
        access: nodb_server::Access::open(),
        version: Some(NEW_VERSION.into()),
    };
    let running = start(settings, shutdown.clone(), TaskTracker::new()).await.unwrap();
    let router = nodb_dataview::server::router(running.state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let _ = nodb_server::serve(listener, router, None, shutdown).await;
        running.finish().await;
    });
    url
}

async fn wait_until_at(view: &ViewClient, seq: u64) {
    for _ in 0..600 {
        if view.state().await.is_ok_and(|s| s.seq >= seq) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never reached seq {seq}", view.base());
}

/// The first snapshot or patch a stream sends.
async fn first_update(view: &ViewClient, options: &StreamOptions) -> ServerMessage {
    let mut stream = view.open(options).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), stream.next_message()).await.unwrap().unwrap();
        if matches!(m, ServerMessage::Snapshot { .. } | ServerMessage::Patch { .. }) {
            stream.close().await;
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moved_to_other_code_gets_a_snapshot_and_one_of_the_same_code_a_patch() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let old_view = nodb_tests::start_warehouse_view(&chronicler, &dir.path().join("snapshots"), &[]);
    assert_eq!(dispatch(chronicler.url(), &nodb_tests::warehouse_sales(1, 40)), 40);
    wait_for_seq(&old_view, 40);

    // A client of the old code: its replica, from the old view's stream.
    let old = ViewClient::new(ServiceUrl::parse(old_view.url()).unwrap(), "stock");
    let mut replica = Replica::new();
    replica.apply(first_update(&old, &StreamOptions::default()).await).unwrap();
    assert_eq!(replica.seq(), Some(40));
    let old_version = replica.version().expect("the old view names its version").to_string();
    assert_eq!(old_version, nodb_warehouse::VERSION);

    let shutdown = CancellationToken::new();
    let new_url = start_new_view(chronicler.url(), &dir.path().join("new-snapshots"), &shutdown).await;
    let new = ViewClient::new(ServiceUrl::parse(&new_url).unwrap(), "stock");
    wait_until_at(&new, 40).await;
    assert_eq!(dispatch(chronicler.url(), &nodb_tests::warehouse_sales(41, 45)), 45);
    wait_until_at(&new, 45).await;
    let new_state = new.state().await.unwrap();
    assert_ne!(old.state_at(40).await.unwrap().state, new.state_at(40).await.unwrap().state, "the codes differ");

    // Moved over: the client's follower resumes on the new view with
    // `since` and the version its state came from, and gets one snapshot
    // of the new state.
    let mut follower = ViewFollower::from_replica(new.clone(), FollowSettings::default(), replica);
    let FollowEvent::Connected { url, since: Some(40) } = follower.next().await else { panic!("connected") };
    assert!(url.contains(&format!("version={old_version}")), "{url}");
    let FollowEvent::Update(update) = follower.next().await else { panic!("an update") };
    assert_eq!((update.seq, update.change), (45, Change::Replaced), "a snapshot, not a patch");
    assert_eq!(follower.replica().state(), Some(&new_state.state));
    assert_eq!(follower.replica().version(), Some(NEW_VERSION));
    follower.close().await;
    let resume = StreamOptions { since: Some(40), version: Some(old_version), ..StreamOptions::default() };
    let m = first_update(&new, &resume).await;
    assert!(matches!(&m, ServerMessage::Snapshot { seq: 45, version: Some(v), .. } if v == NEW_VERSION), "{m:?}");

    // Without `version` (an older client) the server cannot tell: a patch
    // from its own state at 40, which is why clients send it.
    let blind = StreamOptions { since: Some(40), ..StreamOptions::default() };
    assert!(matches!(first_update(&new, &blind).await, ServerMessage::Patch { from: Some(41), seq: 45, .. }));
    // A client of the new code resuming on it gets the patch, as always.
    let same = StreamOptions { since: Some(40), version: Some(NEW_VERSION.into()), ..StreamOptions::default() };
    let m = first_update(&new, &same).await;
    let ServerMessage::Patch { from: Some(41), seq: 45, .. } = m else { panic!("a combined patch, not {m:?}") };
    let mut same_code = Replica::at(40, new.state_at(40).await.unwrap().state);
    same_code.apply(m).unwrap();
    assert_eq!(same_code.state(), Some(&new_state.state));

    shutdown.cancel();
}
