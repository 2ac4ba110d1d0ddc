//! The data view with the real processes: a chronicler, a dataview, and
//! WebSocket clients that apply the patches they receive with an
//! independent RFC 6902 implementation (the `json-patch` crate) and must
//! end byte-equal to `GET /views/{name}` at the same seq, with every seq
//! covered exactly once; a client that stops reading catches up with one
//! combined message; a restarted dataview serves clients that reconnect
//! with `since`; `?at=N` matches what clients had at N; and bad input gets
//! clear errors.

use std::time::Duration;

use nodb_client::{StreamOptions, ViewStream};
use nodb_shared::protocol::ClientMessage;
use nodb_tests::raw::{self, RawSocket};
use nodb_tests::{Service, block_on, dispatch, get, wait_for_seq};
use serde_json::{Value, json};

/// Where a replica's messages come from.
enum Socket {
    /// A stream opened by `nodb-client`.
    Client(ViewStream),
    /// A raw socket, which can also send what is not the protocol.
    Raw(RawSocket),
}

impl Socket {
    /// The next message, as the JSON the server sent.
    fn next(&mut self) -> Value {
        match self {
            Socket::Client(stream) => nodb_tests::client::next_json(stream),
            Socket::Raw(ws) => raw::next_json(ws, "the view stream"),
        }
    }
}

/// A client's replica of one view.
struct Replica {
    ws: Socket,
    state: Value,
    seq: u64,
    /// Every seq covered, in order (a combined message covers several).
    covered: Vec<u64>,
    /// The replica's state at each seq it reached.
    history: Vec<(u64, Value)>,
    rejected: Vec<Value>,
}

impl Replica {
    /// A replica of view `name` of the data view at `url` over a stream
    /// opened with `options`.
    fn connect(url: &str, name: &str, options: StreamOptions) -> Replica {
        let resumes = options.since.is_some();
        let stream = block_on(nodb_tests::client::view(url, name).open(&options)).unwrap();
        Replica::over(Socket::Client(stream), resumes)
    }

    /// A replica over a raw socket to `stream_url`.
    fn connect_raw(stream_url: &str) -> Replica {
        Replica::over(Socket::Raw(raw::websocket(stream_url, &[]).unwrap()), false)
    }

    fn over(ws: Socket, resumes: bool) -> Replica {
        let mut r =
            Replica { ws, state: Value::Null, seq: 0, covered: Vec::new(), history: Vec::new(), rejected: Vec::new() };
        if !resumes {
            // A new client's first message is its snapshot.
            r.read_one();
        }
        r
    }

    fn read_one(&mut self) {
        let before = self.covered.len();
        while self.covered.len() == before {
            self.read_message();
        }
    }

    /// Reads messages until the replica reaches `seq`.
    fn read_until(&mut self, seq: u64) {
        while self.seq < seq {
            self.read_message();
        }
    }

    fn read_message(&mut self) {
        {
            let m = self.ws.next();
            match m["type"].as_str().unwrap() {
                "snapshot" => {
                    self.state = m["state"].clone();
                    self.seq = m["seq"].as_u64().unwrap();
                    self.covered.clear();
                    self.covered.push(self.seq);
                }
                "patch" => {
                    let covered = nodb_tests::client::apply_patch(&mut self.state, self.seq, &m);
                    self.seq = *covered.end();
                    self.covered.extend(covered);
                }
                "rejected" => {
                    self.rejected.push(m);
                    return;
                }
                other => panic!("unexpected message {other}: {m}"),
            }
            self.history.push((self.seq, self.state.clone()));
        }
    }
}

fn start_dataview(chronicler: &Service, snapshots: &std::path::Path) -> Service {
    start_dataview_with(chronicler, snapshots, &[])
}

fn start_dataview_with(chronicler: &Service, snapshots: &std::path::Path, extra: &[&str]) -> Service {
    nodb_tests::start_warehouse_view(chronicler, snapshots, extra)
}

fn actions(start: u64, n: u64, client: &str) -> Vec<Value> {
    (start..start + n)
        .map(|k| {
            let p = format!("p{}", k % 5);
            match k % 4 {
                0 => json!({"id": format!("{client}:{k}"), "type": "stock/corrected", "payload": {"product": p, "location": "shelf", "quantity": k % 9}}),
                1 => json!({"id": format!("{client}:{k}"), "type": "stock/moved", "payload": {"product": p, "from": "shelf", "to": "back", "quantity": 1}}),
                2 => json!({"id": format!("{client}:{k}"), "type": "stock/sold", "payload": {"product": p, "location": "back", "quantity": 1}}),
                _ => json!({"id": format!("{client}:{k}"), "type": "unrelated/event", "payload": k}),
            }
        })
        .collect()
}

#[test]
fn clients_replicate_every_seq_and_match_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let view = start_dataview(&chronicler, &dir.path().join("snapshots1"));
    let fresh = StreamOptions::default;
    let mut clients: Vec<Replica> = (0..8).map(|_| Replica::connect(view.url(), "stock", fresh())).collect();
    let mut own = Replica::connect(view.url(), "stock", StreamOptions { client: Some("web".into()), ..fresh() });
    let mut slow = Replica::connect(view.url(), "activity", fresh());
    // Everybody starts from the snapshot at seq 0, then 200 actions in batches.
    for start in (1..=200).step_by(20) {
        dispatch(chronicler.url(), &actions(start, 20, "web"));
        for c in clients.iter_mut() {
            c.read_until(start + 19);
        }
        own.read_until(start + 19);
    }
    wait_for_seq(&view, 200);
    let server = get(&format!("{}/views/stock", view.url())).unwrap().json();
    assert_eq!(server["seq"], 200);
    for c in &clients {
        assert_eq!(c.seq, 200);
        assert_eq!(c.covered, (0..=200).collect::<Vec<_>>(), "every seq exactly once, in order");
        assert_eq!(c.state.to_string(), server["state"].to_string(), "byte-equal to GET at the same seq");
    }
    // The client that named itself hears of its own rejected actions.
    assert!(!own.rejected.is_empty(), "some sales were refused");
    assert!(own.rejected.iter().all(|r| r["reason"].as_str().unwrap().contains("cannot")), "{:?}", own.rejected);
    // `?at=N` is the state clients had at N.
    for (seq, state) in clients[0].history.iter().filter(|(s, _)| s % 40 == 0) {
        let at = get(&format!("{}/views/stock?at={seq}", view.url())).unwrap().json();
        assert_eq!(&at["state"], state, "state at {seq}");
    }
    // The client that read nothing so far catches up with one combined patch.
    slow.read_until(200);
    assert_eq!(slow.covered, (0..=200).collect::<Vec<_>>());
    let activity = get(&format!("{}/views/activity", view.url())).unwrap().json();
    assert_eq!(slow.state, activity["state"]);
    let metrics = get(&format!("{}/metrics", view.url())).unwrap().body;
    assert!(!metrics.contains("nodb_dataview_coalesced_total 0\n"), "{metrics}");
}

#[test]
fn a_restarted_dataview_sends_reconnecting_clients_only_what_they_missed() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let snapshots = dir.path().join("snapshots2");
    let mut view = start_dataview(&chronicler, &snapshots);
    let mut c = Replica::connect(view.url(), "stock", StreamOptions::default());
    dispatch(chronicler.url(), &actions(1, 50, "r"));
    c.read_until(50);
    // A clean stop writes a snapshot; the restart starts from it.
    assert_eq!(view.terminate(10_000), Some(0), "{}", view.stderr());
    assert!(snapshots.join("warehouse").join(format!("{:020}.snapshot", 50)).exists());
    dispatch(chronicler.url(), &actions(51, 10, "r"));
    let view = start_dataview(&chronicler, &snapshots);
    wait_for_seq(&view, 60);
    let log = view.stderr();
    assert!(log.contains("restored the views from a snapshot") && log.contains("seq=50"), "{log}");
    // Reconnect with `since`: one message covering 51..=60, no snapshot.
    let mut again =
        Replica::connect(view.url(), "stock", StreamOptions { since: Some(50), ..StreamOptions::default() });
    again.state = c.state.clone();
    again.seq = 50;
    again.read_until(60);
    assert_eq!(again.covered, (51..=60).collect::<Vec<_>>());
    let server = get(&format!("{}/views/stock", view.url())).unwrap().json();
    assert_eq!(again.state, server["state"]);
}

#[test]
fn the_snapshot_action_writes_a_snapshot_at_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let snapshots = dir.path().join("snaps");
    let view = start_dataview(&chronicler, &snapshots);
    dispatch(chronicler.url(), &actions(1, 7, "s"));
    dispatch(chronicler.url(), &[json!({"id": "ops:1", "type": "@@nodb/snapshot"})]);
    dispatch(chronicler.url(), &actions(8, 3, "s"));
    wait_for_seq(&view, 11);
    let file = snapshots.join("warehouse").join(format!("{:020}.snapshot", 8));
    for _ in 0..200 {
        if file.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let text = std::fs::read_to_string(&file).expect("a snapshot at seq 8");
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!((header["seq"].clone(), header["app"].clone()), (json!(8), json!("warehouse")));
    let at8 = get(&format!("{}/views/stock?at=8", view.url())).unwrap().json();
    let body: Value = serde_json::from_str(text.split_once('\n').unwrap().1).unwrap();
    assert_eq!(body["stock"], at8["state"], "the snapshot holds the state at its seq");
}

#[test]
fn bad_requests_get_clear_errors_and_the_view_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let view = start_dataview(&chronicler, &dir.path().join("snapshots4"));
    dispatch(chronicler.url(), &actions(1, 3, "b"));
    wait_for_seq(&view, 3);
    let cases = [
        ("/views/nope", 404, "unknown_view"),
        ("/views/stock/state/products/nothing", 404, "not_found"),
        ("/views/stock?at=99", 400, "bad_request"),
        ("/views/stock?at=x", 400, "bad_request"),
        ("/views/stock/stream?since=99", 400, "bad_request"),
        ("/views/nope/stream", 404, "unknown_view"),
        ("/nowhere", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let r = get(&format!("{}{path}", view.url())).unwrap();
        assert_eq!((r.status, r.error_code()), (status, code.to_string()), "{path}: {r:?}");
    }
    // A socket that sends garbage gets an error message and stays open.
    let mut c = Replica::connect_raw(&format!("{}/views/stock/stream", view.ws_url()));
    c.read_until(3);
    let Socket::Raw(ws) = &mut c.ws else { unreachable!("a raw socket") };
    ws.send(raw::Message::text("{garbage")).unwrap();
    let m = c.ws.next();
    assert_eq!(m["type"], "error");
    dispatch(chronicler.url(), &actions(4, 1, "b"));
    c.read_until(4);
    assert_eq!(get(&format!("{}/health", view.url())).unwrap().json()["status"], "caught_up");
    assert_eq!(get(&format!("{}/ready", view.url())).unwrap().status, 200, "ready once caught up");
}

#[test]
fn two_dataviews_fed_the_same_log_report_the_same_hash() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let first = start_dataview(&chronicler, &dir.path().join("snapshots5"));
    dispatch(chronicler.url(), &actions(1, 40, "h"));
    // The second one starts later and replays what the first saw live.
    let second = start_dataview(&chronicler, &dir.path().join("snapshots6"));
    dispatch(chronicler.url(), &actions(41, 40, "h"));
    wait_for_seq(&first, 80);
    wait_for_seq(&second, 80);
    for name in ["stock", "activity"] {
        let a = get(&format!("{}/views/{name}", first.url())).unwrap().json();
        let b = get(&format!("{}/views/{name}", second.url())).unwrap().json();
        assert_eq!(a["seq"], b["seq"]);
        assert_eq!(a["hash"], b["hash"], "{name}: replicas agree");
        assert_eq!(a["state"], b["state"]);
        let at_a = get(&format!("{}/views/{name}?at=40", first.url())).unwrap().json();
        let at_b = get(&format!("{}/views/{name}?at=40", second.url())).unwrap().json();
        assert_eq!(at_a["hash"], at_b["hash"], "{name} at 40");
    }
}

#[test]
fn one_socket_dispatches_and_sees_its_patch_and_its_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let view = start_dataview(&chronicler, &dir.path().join("snapshots7"));
    let mut c =
        Replica::connect(view.url(), "stock", StreamOptions { client: Some("tab".into()), ..StreamOptions::default() });
    let send = |c: &mut Replica, id: &str, kind: &str, payload: Value| {
        let action = serde_json::from_value(json!({"id": id, "type": kind, "payload": payload})).unwrap();
        let Socket::Client(stream) = &mut c.ws else { unreachable!("a client's stream") };
        block_on(stream.send(&ClientMessage::Dispatch { action })).unwrap();
    };
    send(&mut c, "tab:1", "stock/corrected", json!({"product": "apple", "location": "shelf", "quantity": 2}));
    send(&mut c, "tab:2", "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 5}));
    send(&mut c, "tab:3", "nonsense", json!(null));
    let (mut acks, mut patches, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    while acks.len() < 3 || patches.len() < 3 || rejected.is_empty() {
        let m = c.ws.next();
        match m["type"].as_str().unwrap() {
            "ack" => acks.push((m["id"].as_str().unwrap().to_string(), m["seq"].as_u64().unwrap())),
            "patch" => {
                let to = m["seq"].as_u64().unwrap();
                patches.extend(m["from"].as_u64().unwrap_or(to)..=to);
            }
            "rejected" => {
                let seq = m["seq"].as_u64().unwrap();
                assert!(!patches.contains(&seq), "the rejection of seq {seq} comes before the patch covering it");
                rejected.push(m);
            }
            other => panic!("{other}: {m}"),
        }
    }
    acks.sort();
    assert_eq!(acks, [("tab:1".to_string(), 1), ("tab:2".to_string(), 2), ("tab:3".to_string(), 3)]);
    assert_eq!(patches, [1, 2, 3], "every seq covered once, including the rejected and the ignored action");
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0]["seq"].clone(), rejected[0]["id"].clone()), (json!(2), json!("tab:2")));
    assert!(rejected[0]["reason"].as_str().unwrap().contains("only 2 of apple"), "{}", rejected[0]);
    // A bad dispatch is refused by the chronicler, through the same socket.
    send(&mut c, "tab:9", "t", json!(null));
    let m = c.ws.next();
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str(), m["id"].as_str()),
        (Some("error"), Some("out_of_order"), Some("tab:9"))
    );
}

#[test]
fn at_n_older_than_the_memory_is_rebuilt_from_a_snapshot_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let view = start_dataview_with(&chronicler, &dir.path().join("snaps"), &["--history", "10"]);
    let mut c = Replica::connect(view.url(), "stock", StreamOptions::default());
    dispatch(chronicler.url(), &actions(1, 30, "t"));
    dispatch(chronicler.url(), &[json!({"id": "ops:1", "type": "@@nodb/snapshot"})]);
    dispatch(chronicler.url(), &actions(31, 70, "t"));
    c.read_until(101);
    // Every seq the client saw that the view no longer keeps in memory.
    let old: Vec<&(u64, Value)> = c.history.iter().filter(|(s, _)| *s > 0 && *s < 90).collect();
    assert!(!old.is_empty());
    for (at, state) in old {
        let r = get(&format!("{}/views/stock?at={at}", view.url())).unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(&r.json()["state"], state, "state at {at}");
        assert_eq!(r.json()["seq"], *at);
    }
    // And a seq the client never saw on its own, against the chronicler's log.
    let r = get(&format!("{}/views/stock?at=4", view.url())).unwrap().json();
    assert_eq!(r["state"]["products"]["p4"]["total"], 4, "{r}");
}

#[test]
fn the_view_resumes_after_the_chronicler_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    // A fixed port, chosen now, so the restarted chronicler has the same URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let start = || Service::start(&["chronicler", "--data", data.to_str().unwrap(), "--listen", &listen]).unwrap();
    let mut chronicler = start();
    let view = start_dataview(&chronicler, &dir.path().join("snaps"));
    let mut c = Replica::connect(view.url(), "stock", StreamOptions::default());
    dispatch(chronicler.url(), &actions(1, 20, "z"));
    c.read_until(20);
    chronicler.kill();
    std::thread::sleep(Duration::from_millis(300));
    let health = get(&format!("{}/health", view.url())).unwrap().json();
    assert_eq!(health["connected"], false, "{health}");
    let chronicler = start();
    dispatch(chronicler.url(), &actions(21, 20, "z"));
    // The view reconnects by itself and resumes at seq 21: the client sees
    // every seq once, with nothing repeated or skipped.
    c.read_until(40);
    assert_eq!(c.covered, (0..=40).collect::<Vec<_>>());
    let server = get(&format!("{}/views/stock", view.url())).unwrap().json();
    assert_eq!(c.state, server["state"]);
    assert_eq!(get(&format!("{}/health", view.url())).unwrap().json()["status"], "caught_up");
}

#[test]
fn a_long_replay_in_batches_gives_the_same_states_as_one_action_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    // Mostly actions every view takes (batches replayed view by view), one
    // that a view rejects and one control action (batches replayed one
    // action at a time).
    let history: Vec<Value> = (1..=3000u64)
        .map(|k| {
            let id = format!("b:{k}");
            match k {
                1500 => json!({"id": id, "type": "stock/sold", "payload": {"product": "p1", "location": "shelf", "quantity": 999}}),
                2000 => json!({"id": id, "type": "@@nodb/snapshot", "payload": {}}),
                _ if k % 3 == 0 => json!({"id": id, "type": "unrelated/event", "payload": k}),
                _ => json!({"id": id, "type": "stock/corrected", "payload": {"product": format!("p{}", k % 50), "location": "shelf", "quantity": k % 9}}),
            }
        })
        .collect();
    for chunk in history.chunks(500) {
        dispatch(chronicler.url(), chunk);
    }
    // A history of 8 seqs makes the first replay in batches; the default
    // (4,096) replays these 3,000 one at a time.
    let batched = start_dataview_with(&chronicler, &dir.path().join("snapshots-b"), &["--history", "8"]);
    let sequential = start_dataview(&chronicler, &dir.path().join("snapshots-s"));
    wait_for_seq(&batched, 3000);
    wait_for_seq(&sequential, 3000);
    dispatch(chronicler.url(), &actions(1, 20, "live"));
    wait_for_seq(&batched, 3020);
    wait_for_seq(&sequential, 3020);
    for name in ["stock", "activity"] {
        let a = get(&format!("{}/views/{name}", batched.url())).unwrap().json();
        let b = get(&format!("{}/views/{name}", sequential.url())).unwrap().json();
        assert_eq!((&a["seq"], &a["hash"]), (&b["seq"], &b["hash"]), "{name}: the same state either way");
        for at in [1499, 1500, 2500] {
            let a = get(&format!("{}/views/{name}?at={at}", batched.url())).unwrap().json();
            let b = get(&format!("{}/views/{name}?at={at}", sequential.url())).unwrap().json();
            assert_eq!(a["hash"], b["hash"], "{name} at {at}");
        }
    }
    let rejected = |s: &Service| {
        let m = get(&format!("{}/metrics", s.url())).unwrap().body;
        m.lines().find(|l| l.starts_with("nodb_dataview_rejections_total")).map(str::to_string)
    };
    assert_eq!(rejected(&batched), rejected(&sequential), "the rejection is counted either way");
    // The snapshot action wrote a snapshot at its seq in both.
    for d in ["snapshots-b", "snapshots-s"] {
        let file = dir.path().join(d).join("warehouse").join(format!("{:020}.snapshot", 2000));
        nodb_tests::eventually(&format!("a snapshot at seq 2000 in {d}"), || file.exists());
    }
}
