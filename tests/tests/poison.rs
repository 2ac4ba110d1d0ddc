//! No action can kill a service (issue 15, item 4), against the real
//! binaries: a `json/patch` that would nest the document 20,000 levels deep
//! (which overflowed the stack when the view was serialised) and a short
//! patch that doubles the document again and again (which asked for a
//! 4 GiB allocation) are rejected like any other rejection. The data view
//! keeps serving, the next normal action applies, snapshots are written
//! and a restart from them comes back — the poison stays in the log, and
//! replaying it changes nothing.

use std::time::Duration;

use nodb_tests::{Service, dispatch, eventually, free_addr, get};
use serde_json::{Value, json};

fn patch(id: &str, ops: Value) -> Value {
    json!({"id": id, "type": "json/patch", "payload": ops})
}

/// 20,000 `copy "" -> /a`: 840 KB.
fn copy_bomb() -> Value {
    let ops: Vec<Value> = (0..20_000).map(|_| json!({"op": "copy", "from": "", "path": "/a"})).collect();
    json!(ops)
}

/// The document copied into itself 40 times: 1.7 KB asking for 2^40 times
/// the document.
fn doubling() -> Value {
    let ops: Vec<Value> = (0..40).map(|i| json!({"op": "copy", "from": "", "path": format!("/{i}")})).collect();
    json!(ops)
}

fn start_dataview(chronicler: &Service, snapshots: &std::path::Path, listen: &str) -> Service {
    Service::start(&[
        "dataview",
        "--app",
        "json",
        "--chronicler",
        chronicler.url(),
        "--listen",
        listen,
        "--snapshots",
        snapshots.to_str().unwrap(),
    ])
    .unwrap()
}

/// The `doc` view, once it is at `seq`.
fn doc_at(view: &Service, seq: u64) -> Value {
    let url = format!("{}/views/doc", view.url());
    let mut last = Value::Null;
    eventually(&format!("the doc view at seq {seq}"), || {
        last = get(&url).map(|r| r.json()).unwrap_or(Value::Null);
        last["seq"] == seq
    });
    last["state"].clone()
}

fn metric(view: &Service, name: &str) -> u64 {
    let text = get(&format!("{}/metrics", view.url())).unwrap().body;
    // `name 2` or `name_total 2`.
    text.lines()
        .filter(|l| l.starts_with(name))
        .find_map(|l| l.split_whitespace().last().and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn poison_patches_are_rejected_and_the_view_keeps_serving_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().join("log").to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .unwrap();
    let snapshots = dir.path().join("snapshots");
    let listen = free_addr();
    let mut view = start_dataview(&chronicler, &snapshots, &listen);
    let c = chronicler.url();

    assert_eq!(dispatch(c, &[patch("t:1", json!([{"op": "add", "path": "/n", "value": 1}]))]), 1);
    assert_eq!(dispatch(c, &[patch("t:2", copy_bomb())]), 2);
    assert_eq!(doc_at(&view, 2), json!({"n": 1}));
    assert_eq!(dispatch(c, &[patch("t:3", json!([{"op": "replace", "path": "/n", "value": 2}]))]), 3);
    assert_eq!(doc_at(&view, 3), json!({"n": 2}));

    let started = std::time::Instant::now();
    assert_eq!(dispatch(c, &[patch("t:4", doubling())]), 4);
    assert_eq!(doc_at(&view, 4), json!({"n": 2}));
    eprintln!("the doubling patch was rejected within {:?}", started.elapsed());
    // A snapshot now, with the poison behind it in the log.
    assert_eq!(dispatch(c, &[json!({"id": "t:5", "type": "@@nodb/snapshot"})]), 5);
    assert_eq!(dispatch(c, &[patch("t:6", json!([{"op": "add", "path": "/after", "value": true}]))]), 6);
    assert_eq!(doc_at(&view, 6), json!({"n": 2, "after": true}));
    assert_eq!(metric(&view, "nodb_dataview_rejections"), 2);
    assert_eq!(get(&format!("{}/health", view.url())).unwrap().status, 200);

    // Restarted, from the snapshot and from nothing: the same state.
    view.kill();
    view = start_dataview(&chronicler, &snapshots, &listen);
    assert_eq!(doc_at(&view, 6), json!({"n": 2, "after": true}));
    view.kill();
    std::fs::remove_dir_all(&snapshots).unwrap();
    view = start_dataview(&chronicler, &snapshots, &listen);
    assert_eq!(doc_at(&view, 6), json!({"n": 2, "after": true}));
    assert_eq!(metric(&view, "nodb_dataview_rejections"), 2);
    // Past states around the poison read as they were.
    for (at, state) in [(1, json!({"n": 1})), (2, json!({"n": 1})), (4, json!({"n": 2}))] {
        let r = get(&format!("{}/views/doc?at={at}", view.url())).unwrap();
        assert_eq!((r.status, r.json()["state"].clone()), (200, state), "at {at}");
    }
    // And the next action still applies.
    assert_eq!(dispatch(c, &[patch("t:7", json!([{"op": "remove", "path": "/after"}]))]), 7);
    assert_eq!(doc_at(&view, 7), json!({"n": 2}));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!view.stderr().contains("panicked"), "{}", view.stderr());
}

/// Depth around the limit, end to end: a value that makes the document 64
/// levels deep is taken and served; one more level is rejected.
#[test]
fn the_depth_limit_holds_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().join("log").to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .unwrap();
    let view = start_dataview(&chronicler, &dir.path().join("snapshots"), "127.0.0.1:0");
    let nested = |n: usize| (0..n).fold(json!(1), |inner, _| json!([inner]));
    // The root object is one level: 63 more fit.
    dispatch(chronicler.url(), &[patch("t:1", json!([{"op": "add", "path": "/v", "value": nested(63)}]))]);
    assert_eq!(doc_at(&view, 1)["v"], nested(63));
    dispatch(chronicler.url(), &[patch("t:2", json!([{"op": "add", "path": "/w", "value": nested(64)}]))]);
    let state = doc_at(&view, 2);
    assert!(state.get("w").is_none(), "one level too deep is rejected");
    assert_eq!(metric(&view, "nodb_dataview_rejections"), 1);
}
