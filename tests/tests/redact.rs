//! Redaction (`@@nodb/redact`) against the real chronicler and data view:
//!
//! - Random warehouse histories with random redactions and undos: every
//!   view equals a fresh replay of the log that leaves the redacted seqs
//!   out (computed here, independently of the data view's code for it);
//!   a client following the stream holds exactly what `GET` says; the
//!   views at a seq before a redaction are still what they were; a
//!   restart from the snapshots gives the same views; `log verify` passes.
//! - A redaction that makes later actions fail: their senders are told
//!   (`rejected`) just before the patch at the redaction's seq, and an undo
//!   brings the views back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodb_client::{FollowEvent, FollowSettings, ServiceUrl, StreamOptions, ViewClient, ViewFollower};
use nodb_dataview::engine::Engine;
use nodb_shared::Tree;
use nodb_shared::protocol::{CommittedAction, ServerMessage};
use nodb_tests::{Rng, Service, committed_actions, dispatch, get, run, wait_for_seq};
use serde_json::{Value, json};

const PRODUCTS: [&str; 3] = ["apple", "pear", "fig"];

fn start(dir: &std::path::Path) -> (Service, Service) {
    let data = dir.join("log");
    let chronicler =
        Service::start(&["chronicler", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let view = start_view(&chronicler, dir);
    (chronicler, view)
}

/// The data view keeps 16 seqs in memory and a checkpoint every 40, so
/// rebuilds start from checkpoints and `?at` reads replay.
fn start_view(chronicler: &Service, dir: &std::path::Path) -> Service {
    nodb_tests::start_warehouse_view(chronicler, &dir.join("snapshots"), &["--history", "16", "--snapshot-every", "40"])
}

fn stock_action(id: &str, rng: &mut Rng) -> Value {
    let product = PRODUCTS[rng.below(3) as usize];
    let (kind, quantity) = match rng.below(3) {
        0 => ("stock/corrected", 1 + rng.below(8)),
        _ => ("stock/sold", 1 + rng.below(3)),
    };
    json!({"id": id, "type": kind, "payload": {"product": product, "location": "shelf", "quantity": quantity}})
}

/// The views of the warehouse app after `log`, leaving out the seqs its
/// redactions have in force at the end: each such action, and each
/// redaction, replaced by one that changes nothing. The redactions are
/// read here from the log with a rule of their own: in seq order, a
/// redaction puts its seqs in the set and an undo takes them out.
fn replay_without_redacted(log: &[Value]) -> (Vec<Tree>, BTreeMap<u64, u64>) {
    let mut redacted = BTreeMap::new();
    for a in log.iter().filter(|a| a["type"] == "@@nodb/redact") {
        for s in a["payload"]["seqs"].as_array().unwrap() {
            let s = s.as_u64().unwrap();
            if a["payload"]["undo"] == true {
                redacted.remove(&s);
            } else {
                redacted.insert(s, a["seq"].as_u64().unwrap());
            }
        }
    }
    let mut engine = Engine::new(nodb_warehouse::views::app());
    for a in log {
        let mut action: CommittedAction = serde_json::from_value(a.clone()).unwrap();
        if action.kind == "@@nodb/redact" || redacted.contains_key(&action.seq) {
            action.kind = "@@nodb/snapshot".into();
            action.payload = Value::Null;
        }
        engine.apply(&action).unwrap();
    }
    (engine.states().to_vec(), redacted)
}

fn view_json(view: &Service, name: &str, at: Option<u64>) -> Value {
    let url = match at {
        Some(at) => format!("{}/views/{name}?at={at}", view.url()),
        None => format!("{}/views/{name}", view.url()),
    };
    let resp = get(&url).unwrap();
    assert_eq!(resp.status, 200, "{url}: {}", resp.body);
    resp.json()
}

/// The latest seq and state a client holds.
type Latest = Arc<Mutex<Option<(u64, Tree)>>>;

/// A client following view `name` on its own thread: its latest state, the
/// thread, and what keeps it going (drop it to stop the client).
fn follow(view: &Service, name: &str) -> (Latest, std::thread::JoinHandle<()>, Arc<()>) {
    let latest = Arc::new(Mutex::new(None));
    let alive = Arc::new(());
    let (out, watch) = (latest.clone(), Arc::downgrade(&alive));
    let client = ViewClient::new(ServiceUrl::parse(view.url()).unwrap(), name);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut follower = ViewFollower::new(client, FollowSettings::default());
            while watch.upgrade().is_some() {
                let Ok(event) = tokio::time::timeout(Duration::from_millis(200), follower.next()).await else {
                    continue;
                };
                if let FollowEvent::Update(u) = event {
                    *out.lock().unwrap() = Some((u.seq, u.state));
                }
            }
        });
    });
    (latest, thread, alive)
}

#[test]
fn random_redactions_leave_every_view_as_a_replay_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, mut view) = start(dir.path());
    let (client_state, client_thread, client_alive) = follow(&view, "stock");
    let mut rng = Rng::new();
    let (mut n, mut seq) = (0u64, 0u64);
    let mut in_force: Vec<u64> = Vec::new();
    let mut redactions: Vec<u64> = Vec::new();
    let mut before_last_redaction = None;
    for round in 0..12 {
        let batch: Vec<Value> = (0..(5 + rng.below(30)))
            .map(|_| {
                n += 1;
                stock_action(&format!("c:{n}"), &mut rng)
            })
            .collect();
        seq = dispatch(chronicler.url(), &batch);
        // Redact one to three earlier stock actions, or undo some.
        let candidates: Vec<u64> = (1..=seq).filter(|s| !redactions.contains(s) && !in_force.contains(s)).collect();
        let payload = if round % 4 == 3 && !in_force.is_empty() {
            let undo: Vec<u64> = in_force.iter().copied().filter(|_| rng.below(2) == 0).take(3).collect();
            let undo = if undo.is_empty() { vec![in_force[0]] } else { undo };
            in_force.retain(|s| !undo.contains(s));
            json!({"seqs": undo, "undo": true})
        } else {
            let picked: Vec<u64> =
                (0..1 + rng.below(3)).map(|_| candidates[rng.below(candidates.len() as u64) as usize]).collect();
            let mut picked = picked;
            picked.sort_unstable();
            picked.dedup();
            in_force.extend(&picked);
            json!({"seqs": picked, "reason": format!("round {round}")})
        };
        wait_for_seq(&view, seq);
        before_last_redaction = Some((seq, view_json(&view, "stock", None)));
        n += 1;
        seq =
            dispatch(chronicler.url(), &[json!({"id": format!("c:{n}"), "type": "@@nodb/redact", "payload": payload})]);
        redactions.push(seq);
    }
    wait_for_seq(&view, seq);

    let log = committed_actions(chronicler.url());
    assert_eq!(log.len() as u64, seq);
    let (expected, redacted) = replay_without_redacted(&log);
    let expected_set: Vec<u64> =
        in_force.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    assert_eq!(redacted.keys().copied().collect::<Vec<_>>(), expected_set, "the test's own ledger");
    for (i, name) in ["stock", "activity"].into_iter().enumerate() {
        let got = view_json(&view, name, None);
        assert_eq!(got["seq"], seq);
        assert_eq!(Tree::from(got["state"].clone()), expected[i], "view {name} is a replay without the redacted seqs");
    }
    // `?at` gives the views as they were at each seq (the redactions up to
    // it left out), from a base no further back than a checkpoint
    // interval: the snapshot at each redaction is one.
    for at in (1..=seq).step_by(3) {
        let (then, _) = replay_without_redacted(&log[..at as usize]);
        for (i, name) in ["stock", "activity"].into_iter().enumerate() {
            let resp = get(&format!("{}/views/{name}?at={at}", view.url())).unwrap();
            assert_eq!(resp.status, 200, "{}", resp.body);
            assert_eq!(Tree::from(resp.json()["state"].clone()), then[i], "view {name} at {at}");
            let replayed: u64 = resp.header("nodb-replayed").unwrap_or("0").parse().unwrap();
            assert!(replayed < 40, "?at={at} replayed {replayed} actions");
        }
    }
    // The history page's list marks what is redacted, and by which seq.
    let page = get(&format!("{}/history?from=1&limit=1000", view.url())).unwrap().json();
    let marked: BTreeMap<u64, u64> = page["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| Some((a["seq"].as_u64()?, a.get("redacted_by")?.as_u64()?)))
        .collect();
    assert_eq!(marked, redacted, "GET /history's redacted_by");
    // The views before the last redaction are still what they were then.
    let (at, then) = before_last_redaction.unwrap();
    assert_eq!(view_json(&view, "stock", Some(at))["state"], then["state"], "?at={at}");
    // A client that followed the stream holds what GET says.
    let now = view_json(&view, "stock", None);
    nodb_tests::eventually("the client reaches the head", || {
        client_state.lock().unwrap().as_ref().is_some_and(|(s, _)| *s == seq)
    });
    assert_eq!(client_state.lock().unwrap().as_ref().unwrap().1, Tree::from(now["state"].clone()));
    drop(client_alive);
    client_thread.join().unwrap();

    // A restart from the snapshots gives the same views.
    assert_eq!(view.terminate(10_000), Some(0));
    let view = start_view(&chronicler, dir.path());
    wait_for_seq(&view, seq);
    assert_eq!(view_json(&view, "stock", None)["hash"], now["hash"], "after a restart");
    // A redaction after the restart still knows the ones before it: undo
    // them all, and the views are a replay of everything.
    let all: Vec<u64> = redacted.keys().copied().collect();
    let undo = json!({"id": "c:undo-all:1", "type": "@@nodb/redact", "payload": {"seqs": all, "undo": true}});
    let seq = dispatch(chronicler.url(), &[undo]);
    wait_for_seq(&view, seq);
    let (expected, redacted) = replay_without_redacted(&committed_actions(chronicler.url()));
    assert!(redacted.is_empty());
    assert_eq!(Tree::from(view_json(&view, "stock", None)["state"].clone()), expected[0]);

    drop(view);
    drop(chronicler);
    let out = run(dir.path(), &["log", "verify", "--data", dir.path().join("log").to_str().unwrap()], "");
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn actions_a_redaction_makes_fail_are_told_to_their_senders_and_an_undo_restores() {
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path());
    let shelf = |id: &str, kind: &str, quantity: u64| json!({"id": id, "type": kind, "payload": {"product": "apple", "location": "shelf", "quantity": quantity}});
    dispatch(
        chronicler.url(),
        &[
            shelf("ops:1", "stock/corrected", 5),
            shelf("ops:2", "stock/corrected", 2),
            shelf("carol:1", "stock/sold", 4),
        ],
    );
    wait_for_seq(&view, 3);
    // The shelf was counted at 5, then at 2: carol's sale of 4 was
    // rejected at once.
    let before = view_json(&view, "stock", None);
    assert_eq!(before["state"]["products"]["apple"]["total"], 2, "{before}");

    // Redact the count of 2: carol's sale of 4 now applies (5 on the shelf).
    let redact = json!({"id": "ops:3", "type": "@@nodb/redact", "payload": {"seqs": [2], "reason": "miscount"}});
    assert_eq!(dispatch(chronicler.url(), &[redact]), 4);
    wait_for_seq(&view, 4);
    assert_eq!(view_json(&view, "stock", None)["state"]["products"]["apple"]["total"], 1);

    // Redact the first count too: carol's sale is now rejected, and she
    // is told so, before the patch at the redaction's seq.
    let client = ViewClient::new(ServiceUrl::parse(view.url()).unwrap(), "stock");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut stream = rt
        .block_on(client.open(&StreamOptions { since: Some(4), client: Some("carol".into()), ..Default::default() }))
        .unwrap();
    let redact = json!({"id": "ops:4", "type": "@@nodb/redact", "payload": {"seqs": [1], "reason": "wrong shelf"}});
    assert_eq!(dispatch(chronicler.url(), &[redact]), 5);
    let mut told = None;
    loop {
        let m = rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), stream.next_message()).await });
        let m = m.expect("a message within 20 s").unwrap();
        match m {
            ServerMessage::Rejected { id, reason, .. } => told = Some((id, reason)),
            ServerMessage::Patch { seq: 5, .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let (id, reason) = told.expect("carol is told before the patch");
    assert_eq!(id, "carol:1");
    assert!(reason.contains("seq 3") && reason.contains("redaction at seq 5"), "{reason}");
    let state = view_json(&view, "stock", None)["state"].clone();
    assert!(state["products"].get("apple").is_none_or(|a| a["total"] == 0), "{state}");

    // Undo both: back to the views before any redaction.
    let undo = json!({"id": "ops:5", "type": "@@nodb/redact", "payload": {"seqs": [1, 2], "undo": true}});
    assert_eq!(dispatch(chronicler.url(), &[undo]), 6);
    wait_for_seq(&view, 6);
    assert_eq!(view_json(&view, "stock", None)["state"], before["state"]);
    let metrics = get(&format!("{}/metrics", view.url())).unwrap().body;
    assert!(metrics.contains("nodb_dataview_redactions_total 3"), "{metrics}");
    // A redaction of a redaction is refused at the door.
    let bad = json!({"id": "ops:6", "type": "@@nodb/redact", "payload": {"seqs": [4], "reason": "no"}});
    let resp =
        nodb_tests::post(&format!("{}/actions", chronicler.url()), "application/json", bad.to_string().as_bytes());
    assert_eq!(resp.unwrap().status, 400);
}
