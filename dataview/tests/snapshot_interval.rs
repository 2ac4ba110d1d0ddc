//! The snapshotter's interval under a paused clock (no real waiting): a
//! snapshot of what changed is written each `every`, not before, none when
//! nothing changed, and a last one at once on shutdown. The snapshots go to
//! an in-memory object store.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::ObjectStore as _;

use nodb_dataview::engine::Engine;
use nodb_dataview::hub::Hub;
use nodb_dataview::snapshot::{SnapshotPolicy, Snapshots, run_snapshotter};
use nodb_shared::protocol::CommittedAction;
use serde_json::json;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

const MS: Duration = Duration::from_millis(1);
const EVERY: Duration = Duration::from_secs(60);

fn apply(hub: &Hub, seq: u64) {
    let ops = json!([{"op": "add", "path": format!("/k{seq}"), "value": seq}]);
    let action = CommittedAction {
        seq,
        ts: seq,
        id: format!("c:{seq}"),
        kind: "json/patch".into(),
        payload: ops,
        meta: None,
        client: None,
    };
    hub.apply(&action).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_is_written_each_interval_if_anything_changed_and_on_shutdown() {
    let hub = Hub::new(Engine::new(nodb_dataview::json_doc::app()), 16);
    let names = hub.view_names();
    let store = Arc::new(object_store::memory::InMemory::new());
    let snapshots = Snapshots::new(store.clone(), "json", 10);
    let count = || {
        let store = store.clone();
        async move { store.list(None).collect::<Vec<_>>().await.len() }
    };
    let latest = || {
        let (snapshots, names) = (snapshots.clone(), names.clone());
        async move { snapshots.load_latest(&names).await.unwrap().map(|l| l.seq) }
    };
    let shutdown = CancellationToken::new();
    // Checkpoints far apart: only the interval writes.
    let policy = SnapshotPolicy { every_seqs: 1_000_000, every: EVERY };
    let start = Instant::now();
    let snapshotter = tokio::spawn(run_snapshotter(hub.clone(), snapshots.clone(), policy, 0, shutdown.clone()));

    apply(&hub, 1);
    sleep_until(start + EVERY - MS).await;
    assert_eq!(latest().await, None, "not before the interval");
    sleep_until(start + EVERY + MS).await;
    assert_eq!(latest().await, Some(1), "at the interval");

    apply(&hub, 2);
    apply(&hub, 3);
    sleep_until(start + 2 * EVERY - MS).await;
    assert_eq!(latest().await, Some(1));
    sleep_until(start + 2 * EVERY + MS).await;
    assert_eq!(latest().await, Some(3), "the state at the tick, not one per seq");

    // Nothing changed in the third interval: nothing written.
    assert_eq!(count().await, 2);
    sleep_until(start + 3 * EVERY + MS).await;
    assert_eq!(count().await, 2, "nothing new to write");
    assert_eq!(latest().await, Some(3));

    // On shutdown, what changed since is written at once.
    apply(&hub, 4);
    sleep_until(start + 3 * EVERY + 10 * MS).await;
    shutdown.cancel();
    snapshotter.await.unwrap();
    assert_eq!(start.elapsed(), 3 * EVERY + 10 * MS, "no wait for the next tick");
    assert_eq!(latest().await, Some(4));
    assert_eq!(count().await, 3);
}
