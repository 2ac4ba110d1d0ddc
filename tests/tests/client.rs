//! `nodb-client` against the real `nodb chronicler` and `nodb dataview`:
//! dispatch (with the structured `out_of_order`), position, head, ranges,
//! the action stream, a view's state at a seq, and a replica that follows a
//! view across a data view's restart.

use std::time::Duration;

use futures_util::StreamExt;
use nodb_client::{
    Change, Chronicler, FollowEvent, FollowSettings, Position, ServiceUrl, StreamOptions, ViewClient, ViewFollower,
};
use nodb_shared::Tree;
use nodb_shared::protocol::{Action, ErrorCode, StreamLine};
use nodb_tests::{Service, get};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn start_chronicler(dir: &std::path::Path) -> Service {
    Service::start(&["chronicler", "--data", dir.join("log").to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap()
}

fn action(client: &str, n: u64, kind: &str, payload: serde_json::Value) -> Action {
    Action { id: format!("{client}:{n}"), kind: kind.into(), payload, meta: None }
}

/// `json/patch` actions `from..from+count` of client `c`, each setting
/// `/n` to its number and appending it to `/list`.
fn patches(from: u64, count: u64) -> Vec<Action> {
    (from..from + count)
        .map(|n| {
            let mut ops = vec![json!({"op": "replace", "path": "/n", "value": n})];
            ops.push(json!({"op": "add", "path": "/list/-", "value": n}));
            if n == 1 {
                ops = vec![
                    json!({"op": "add", "path": "/n", "value": 1}),
                    json!({"op": "add", "path": "/list", "value": [1]}),
                ];
            }
            action("c", n, "json/patch", json!(ops))
        })
        .collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chronicler_client_dispatches_reads_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let chronicler = blocking(move || start_chronicler(&path)).await;
    let client = Chronicler::new(ServiceUrl::parse(chronicler.url()).unwrap());
    let cancel = CancellationToken::new();
    assert_eq!(client.head().await.unwrap(), 0);
    assert_eq!(client.position("c").await.unwrap(), None);

    let acks = client.dispatch(&[action("c", 1, "a/x", json!(1)), action("c", 2, "b/y", json!(2))], &cancel).await;
    let acks = acks.unwrap();
    assert_eq!(acks.iter().map(|a| (a.seq, a.duplicate)).collect::<Vec<_>>(), [(Some(1), false), (Some(2), false)]);
    let again = client.dispatch(&[action("c", 2, "b/y", json!(2))], &cancel).await.unwrap();
    assert_eq!((again[0].seq, again[0].duplicate), (Some(2), true), "a re-send is a duplicate");

    // Out of order: refused with the number expected next, as a field.
    let e = client.dispatch(&[action("c", 9, "a/x", json!(9))], &cancel).await.unwrap_err();
    assert_eq!(e.expected(), Some(3), "{e}");
    let refusal = e.refusal().unwrap();
    assert_eq!((refusal.status, refusal.code), (409, Some(ErrorCode::OutOfOrder)));
    assert!(e.to_string().contains("409"), "{e}");

    assert_eq!(client.position("c").await.unwrap(), Some(Position { last: 2, seq: 2 }));
    assert_eq!(client.head().await.unwrap(), 2);
    let all = client.range(1, 2, &[]).await.unwrap();
    assert_eq!(all.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2]);
    let only_b = client.range(1, 2, &["b/"]).await.unwrap();
    assert_eq!(only_b.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(), ["b/y"]);

    // A bounded stream: a heartbeat, the actions, then the end.
    let lines: Vec<StreamLine> = client.stream(1, Some(2), &[]).await.unwrap().map(Result::unwrap).collect().await;
    assert!(matches!(lines[0], StreamLine::Heartbeat { head: 2, seen: 0 }), "{lines:?}");
    assert_eq!(lines.iter().filter_map(StreamLine::seq).collect::<Vec<_>>(), [1, 2]);

    // The live tail, filtered: the heartbeat says where the log is.
    let mut live = client.stream(3, None, &["a/"]).await.unwrap();
    let first = live.next().await.unwrap().unwrap();
    assert_eq!(first, StreamLine::Heartbeat { head: 2, seen: 2 });
    client.dispatch(&[action("c", 3, "b/z", json!(3)), action("c", 4, "a/w", json!(4))], &cancel).await.unwrap();
    let next = loop {
        match live.next().await.unwrap().unwrap() {
            StreamLine::Heartbeat { .. } => continue,
            line => break line,
        }
    };
    let StreamLine::Action(a) = next else { panic!("{next:?}") };
    assert_eq!((a.seq, a.kind.as_str(), a.payload.clone()), (4, "a/w", json!(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_retries_while_the_chronicler_is_away_until_cancelled() {
    // A port with nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Chronicler::new(ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
    });
    let started = std::time::Instant::now();
    let e = client.dispatch(&[action("c", 1, "t", json!(null))], &cancel).await.unwrap_err();
    assert!(matches!(e, nodb_client::Error::Cancelled), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(400), "it retried until cancelled");
    let e = client.head().await.unwrap_err();
    assert!(e.to_string().contains(&format!("cannot reach http://127.0.0.1:{port}/actions")), "{e}");
}

/// The follower's next event, described in `events` for the assertions.
async fn next(follower: &mut ViewFollower, events: &mut Vec<String>) {
    let event = tokio::time::timeout(Duration::from_secs(30), follower.next()).await.expect("an event within 30 s");
    events.push(match &event {
        FollowEvent::Connected { since, .. } => format!("connected since {since:?}"),
        FollowEvent::Update(u) => format!("update {}..={} {}", u.from, u.seq, matches!(u.change, Change::Replaced)),
        FollowEvent::Resync { reason, .. } => format!("resync: {reason}"),
        other => format!("{other:?}"),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_a_view_across_a_data_view_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let chronicler = blocking(move || start_chronicler(&path)).await;
    let log = Chronicler::new(ServiceUrl::parse(chronicler.url()).unwrap());
    let cancel = CancellationToken::new();
    log.dispatch(&patches(1, 20), &cancel).await.unwrap();
    // A fixed port, so the restarted data view has the same URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let snapshots = dir.path().join("snapshots").to_str().unwrap().to_string();
    let args: Vec<String> = ["dataview", "--app", "json", "--chronicler", chronicler.url(), "--listen", &listen]
        .into_iter()
        .map(String::from)
        .chain(["--snapshots".to_string(), snapshots])
        .collect();
    let start = move || Service::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let start_again = start.clone();
    let mut dataview = blocking(start).await;
    let view = ViewClient::new(ServiceUrl::parse(dataview.url()).unwrap(), "doc");
    let settings = FollowSettings { resume_grace: Duration::from_secs(30), ..FollowSettings::default() };
    let mut follower = ViewFollower::new(view.clone(), settings);
    let mut events = Vec::new();
    // Connect, then a snapshot at 20 (the view may still be replaying).
    while follower.replica().seq() < Some(20) {
        next(&mut follower, &mut events).await;
    }
    assert!(events[0].starts_with("connected since None"), "{events:?}");
    log.dispatch(&patches(21, 10), &cancel).await.unwrap();
    while follower.replica().seq() < Some(30) {
        next(&mut follower, &mut events).await;
    }
    // The data view dies; more history is written meanwhile; it restarts
    // (from no snapshot: it replays the log) on the same address.
    blocking(move || dataview.kill()).await;
    log.dispatch(&patches(31, 10), &cancel).await.unwrap();
    let restarted = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        blocking(start_again).await
    });
    while follower.replica().seq() < Some(40) {
        next(&mut follower, &mut events).await;
    }
    dataview = restarted.await.unwrap();
    println!("{events:#?}");
    // It resumed with `since` = 30: no snapshot after the first, no resync.
    assert!(events.iter().any(|e| e == "connected since Some(30)"), "{events:?}");
    assert_eq!(events.iter().filter(|e| e.ends_with("true")).count(), 1, "one snapshot only: {events:?}");
    assert!(!events.iter().any(|e| e.starts_with("resync")), "{events:?}");
    let server = blocking({
        let url = format!("{}/views/doc", dataview.url());
        move || get(&url).unwrap().json()
    })
    .await;
    assert_eq!(server["seq"], 40);
    assert_eq!(follower.replica().state(), Some(&Tree::from(server["state"].clone())));
    assert_eq!(server["state"], json!({"n": 40, "list": (1..=40).collect::<Vec<_>>()}));
    // `?at` and a `since` stream agree with the replica's history.
    assert_eq!(
        view.state_at(25).await.unwrap().state,
        Tree::from(json!({"n": 25, "list": (1..=25).collect::<Vec<_>>()}))
    );
    let mut exact =
        view.open(&StreamOptions { since: Some(38), exact: true, ..StreamOptions::default() }).await.unwrap();
    let mut replica = nodb_client::Replica::at(38, view.state_at(38).await.unwrap().state).exact();
    for seq in [39, 40] {
        let update = replica.apply(exact.next_message().await.unwrap()).unwrap().unwrap();
        assert_eq!((update.from, update.seq), (seq, seq));
    }
    assert_eq!(replica.state(), follower.replica().state());
    follower.close().await;
}
