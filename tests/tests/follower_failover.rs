//! `ViewFollower` on two replicas: one chronicler, two data views of the
//! warehouse app following it. The follower uses the first; it is killed
//! (SIGKILL) while actions keep coming; the follower resumes on the other
//! with `since` and `version`. The first is restarted on its address, the
//! other is killed, and the follower comes back. Across both failovers the
//! follower's replica equals the survivor's `GET /views/stock` at the head,
//! and every seq came exactly once: the updates' `from..=seq` ranges are
//! contiguous, and no snapshot came after the first.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nodb_client::{Change, FollowEvent, FollowSettings, ServiceUrl, ViewClient, ViewFollower};
use nodb_shared::Tree;
use nodb_tests::{Service, dispatch, eventually, free_addr, get, wait_for_seq};
use tokio_util::sync::CancellationToken;

/// What the follower did, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// Connected to this stream URL.
    Connected(String),
    /// An update covering `from..=seq`; a snapshot when `snapshot`.
    Update { from: u64, seq: u64, snapshot: bool },
    /// Anything else, described.
    Other(String),
}

/// What the follower's task shares with the test.
#[derive(Debug, Default)]
struct Followed {
    seen: Vec<Seen>,
    /// The replica's seq and state after the latest update.
    at: Option<(u64, Tree)>,
}

/// Starts a warehouse data view following `chronicler` on `addr`, its
/// snapshots in `snapshots`.
fn start_view(chronicler: &str, addr: &str, snapshots: &std::path::Path) -> Service {
    let snapshots = snapshots.to_str().unwrap();
    let args =
        ["dataview", "--app", "warehouse", "--chronicler", chronicler, "--listen", addr, "--snapshots", snapshots];
    Service::start(&args).unwrap()
}

/// Dispatches actions `from..=to` one at a time, a few milliseconds apart,
/// on a thread of its own.
fn keep_dispatching(chronicler: &str, from: u64, to: u64) -> JoinHandle<()> {
    let url = chronicler.to_string();
    std::thread::spawn(move || {
        for k in from..=to {
            dispatch(&url, &nodb_tests::warehouse_sales(k, k));
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// Waits until the follower's replica is at `seq`, then checks it against
/// `GET /views/stock` on `survivor` (at `seq` too).
fn same_state_at(followed: &Mutex<Followed>, survivor: &Service, seq: u64) {
    eventually(&format!("the follower at seq {seq}"), || {
        followed.lock().unwrap().at.as_ref().is_some_and(|(s, _)| *s == seq)
    });
    wait_for_seq(survivor, seq);
    let server = get(&format!("{}/views/stock", survivor.url())).unwrap().json();
    assert_eq!(server["seq"], seq);
    let followed = followed.lock().unwrap();
    assert_eq!(followed.at.as_ref().map(|(_, s)| s), Some(&Tree::from(server["state"].clone())));
}

/// Every seq from the first snapshot's to `head` came once, in order, and
/// the first update was the only snapshot.
fn each_seq_once(seen: &[Seen], head: u64) {
    let updates: Vec<(u64, u64, bool)> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Update { from, seq, snapshot } => Some((*from, *seq, *snapshot)),
            _ => None,
        })
        .collect();
    let Some(&(_, mut at, true)) = updates.first() else { panic!("no snapshot first: {seen:?}") };
    for &(from, seq, snapshot) in &updates[1..] {
        assert!(!snapshot, "a snapshot after the first at {seq}: {seen:?}");
        assert_eq!(from, at + 1, "seqs {from}..={seq} after {at}: {seen:?}");
        assert!(seq >= from, "{seen:?}");
        at = seq;
    }
    assert_eq!(at, head, "{seen:?}");
}

/// The stream URLs the follower connected to, in order.
fn connections(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Connected(url) => Some(url.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_follower_fails_over_between_two_data_views_without_losing_or_repeating_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let chronicler =
        Service::start(&["chronicler", "--data", log.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let (snap_a, snap_b) = (dir.path().join("snapshots-a"), dir.path().join("snapshots-b"));
    let mut a = start_view(chronicler.url(), &addr_a, &snap_a);
    let mut b = start_view(chronicler.url(), &addr_b, &snap_b);
    dispatch(chronicler.url(), &nodb_tests::warehouse_sales(1, 20));

    // The follower runs on a runtime of its own while the test, which is
    // synchronous, starts and kills processes and dispatches.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let views: Vec<ViewClient> =
        [&a, &b].iter().map(|s| ViewClient::new(ServiceUrl::parse(s.url()).unwrap(), "stock")).collect();
    let settings = FollowSettings {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        resume_grace: Duration::from_secs(30),
        ..FollowSettings::default()
    };
    let mut follower = ViewFollower::on_replicas(views, settings);
    let followed = Arc::new(Mutex::new(Followed::default()));
    let stop = CancellationToken::new();
    let task = runtime.spawn({
        let (followed, stop) = (followed.clone(), stop.clone());
        async move {
            loop {
                let event = tokio::select! {
                    event = follower.next() => event,
                    () = stop.cancelled() => break,
                };
                let mut f = followed.lock().unwrap();
                let seen = match event {
                    FollowEvent::Connected { url, .. } => Seen::Connected(url),
                    FollowEvent::Update(u) => {
                        f.at = Some((u.seq, u.state));
                        Seen::Update { from: u.from, seq: u.seq, snapshot: u.change == Change::Replaced }
                    }
                    other => Seen::Other(format!("{other:?}")),
                };
                f.seen.push(seen);
            }
            follower.close().await;
        }
    });
    same_state_at(&followed, &a, 20);
    let on = |addr: &str| format!("ws://{addr}/views/stock/stream");
    assert!(connections(&followed.lock().unwrap().seen)[0].starts_with(&on(&addr_a)), "the first given first");

    // Kill the one in use while actions keep coming.
    let dispatching = keep_dispatching(chronicler.url(), 21, 60);
    std::thread::sleep(Duration::from_millis(150));
    a.kill();
    dispatching.join().unwrap();
    same_state_at(&followed, &b, 60);
    let urls = connections(&followed.lock().unwrap().seen);
    assert!(urls.last().unwrap().starts_with(&on(&addr_b)), "{urls:?}");
    assert!(urls.last().unwrap().contains("since=") && urls.last().unwrap().contains("version="), "resumed: {urls:?}");

    // Restart it on its address, let it catch up, kill the other.
    a = start_view(chronicler.url(), &addr_a, &snap_a);
    wait_for_seq(&a, 60);
    let dispatching = keep_dispatching(chronicler.url(), 61, 100);
    std::thread::sleep(Duration::from_millis(150));
    b.kill();
    dispatching.join().unwrap();
    same_state_at(&followed, &a, 100);
    let urls = connections(&followed.lock().unwrap().seen);
    assert!(urls.last().unwrap().starts_with(&on(&addr_a)), "{urls:?}");
    assert!(urls.last().unwrap().contains("since=") && urls.last().unwrap().contains("version="), "resumed: {urls:?}");

    stop.cancel();
    runtime.block_on(task).unwrap();
    let seen = followed.lock().unwrap().seen.clone();
    // What happened besides updates: connections and failures.
    println!("{:#?}", seen.iter().filter(|s| !matches!(s, Seen::Update { .. })).collect::<Vec<_>>());
    each_seq_once(&seen, 100);
    assert!(!seen.iter().any(|s| matches!(s, Seen::Other(o) if o.starts_with("Resync"))), "{seen:?}");
    drop((a, chronicler));
}
