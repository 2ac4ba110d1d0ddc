//! Healing: `nodb replay` replays the history with this binary's reducers
//! and compares every view, seq by seq, with a running data view.
//!
//! - The same reducers: every view identical, exit 0.
//! - Changed reducers (a `stock` reducer that counts every sale twice, run
//!   in-process through the library): the first differing seq, its action,
//!   the patch from old to new, and the number of differing seqs, each
//!   checked against the old view's `?at` states and an engine replay.

use nodb_client::{Chronicler, ServiceUrl};
use nodb_dataview::engine::Engine;
use nodb_dataview::replay::{ReplaySettings, replay};
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;
use nodb_tests::{Service, dispatch, get, run, wait_for_seq};
use serde_json::{Value, json};

const ACTIONS: u64 = 120;

fn actions() -> Vec<Value> {
    (1..=ACTIONS)
        .map(|k| {
            let p = format!("p{}", (k / 3) % 3);
            let id = format!("c:{k}");
            match k % 3 {
                0 => json!({"id": id, "type": "stock/corrected", "payload": {"product": p, "location": "shelf", "quantity": 5 + k % 7}}),
                1 => json!({"id": id, "type": "stock/sold", "payload": {"product": p, "location": "shelf", "quantity": 1}}),
                _ => json!({"id": id, "type": "unrelated/event", "payload": k}),
            }
        })
        .collect()
}

fn start(dir: &std::path::Path) -> (Service, Service) {
    let data = dir.to_str().unwrap();
    let chronicler = Service::start(&["chronicler", "--data", data, "--listen", "127.0.0.1:0"]).unwrap();
    let flags = ["--history", "16", "--snapshot-every", "50"];
    let view = nodb_tests::start_warehouse_view(&chronicler, &dir.join("snapshots"), &flags);
    assert_eq!(dispatch(chronicler.url(), &actions()), ACTIONS);
    wait_for_seq(&view, ACTIONS);
    (chronicler, view)
}

#[test]
fn the_same_reducers_are_identical_at_every_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path());
    let out = run(
        dir.path(),
        &["replay", "--app", "warehouse", "--chronicler", chronicler.url(), "--against", view.url()],
        "",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    for name in ["stock", "activity"] {
        assert!(out.stdout.contains(&format!("{name}: identical through seq {ACTIONS}")), "{out:?}");
    }
    // Without --against it replays and prints each view's hash, which is
    // the running view's.
    let out = run(dir.path(), &["replay", "--app", "warehouse", "--chronicler", chronicler.url()], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    let hash = get(&format!("{}/views/stock", view.url())).unwrap().json()["hash"].as_str().unwrap().to_string();
    assert!(out.stdout.contains(&format!("stock: hash {hash} at seq {ACTIONS}")), "{out:?}");
}

/// The warehouse app with a `stock` reducer that applies every sale twice.
fn changed_app() -> nodb_dataview::app::App {
    let mut app = nodb_warehouse::views::app();
    let stock = app.views.iter_mut().find(|v| v.name == "stock").unwrap();
    let old = stock.reducer.clone();
    // The engine runs a drafted view's draft reducer: this view is pure now.
    stock.draft = None;
    stock.reducer = std::sync::Arc::new(move |state: &Tree, action: &CommittedAction| {
        let once = old(state, action)?;
        if action.kind == "stock/sold" { old(&once, action) } else { Ok(once) }
    });
    app
}

#[test]
fn changed_reducers_name_the_first_differing_seq_and_count_them() {
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let chronicler_url = ServiceUrl::parse(chronicler.url()).unwrap();
    let against = ServiceUrl::parse(view.url()).unwrap();
    let from = 10;
    let report = runtime
        .block_on(replay(
            changed_app(),
            &Chronicler::new(chronicler_url),
            Some(&against),
            &ReplaySettings { from, to: None },
        ))
        .unwrap();
    assert_eq!(report.through, ACTIONS);
    assert!(!report.identical());

    // The oracle: the old view's state at each seq (`?at`), against the
    // changed app's state from an engine replay.
    let committed: Vec<CommittedAction> = nodb_tests::committed_actions(chronicler.url())
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let mut engine = Engine::new(changed_app());
    let (mut differing, mut first) = (0, None);
    for action in &committed {
        engine.apply(action).unwrap();
        if action.seq < from {
            continue;
        }
        let old = get(&format!("{}/views/stock?at={}", view.url(), action.seq)).unwrap().json();
        let old: Tree = serde_json::from_value(old["state"].clone()).unwrap();
        if &old != engine.state(0).unwrap() {
            differing += 1;
            first.get_or_insert((action.seq, old));
        }
    }
    let stock = report.views.iter().find(|v| v.view == "stock").unwrap();
    assert_eq!(stock.differing, differing);
    let (first_seq, old_at_first) = first.unwrap();
    let reported = stock.first.as_ref().unwrap();
    assert_eq!(reported.seq, first_seq);
    assert_eq!(reported.action.kind, "stock/sold");
    // The reported patch takes the old state to the new one at that seq.
    let mut new_at_first = Engine::new(changed_app());
    for action in committed.iter().take_while(|a| a.seq <= first_seq) {
        new_at_first.apply(action).unwrap();
    }
    let patched = nodb_shared::patch::apply(&old_at_first, &reported.diff).unwrap();
    assert_eq!(&patched, new_at_first.state(0).unwrap());
    // The activity view's reducer did not change.
    let activity = report.views.iter().find(|v| v.view == "activity").unwrap();
    assert_eq!((activity.differing, activity.first.is_none()), (0, true));
}
