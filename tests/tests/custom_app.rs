//! An application's own views run with the whole `nodb` command line: the
//! `counter_app` example adds an app to the registry and runs
//! `dataview --app counter` against a real chronicler.

use nodb_tests::{Service, example_bin, get, post};
use serde_json::json;

#[test]
fn an_application_runs_its_own_views_with_the_nodb_command_line() {
    let bin = example_bin("counter_app");
    assert!(bin.exists(), "cargo test builds the example at {}", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let snapshots = dir.path().join("snapshots");
    let view = Service::start_bin(
        &bin,
        &[
            "dataview",
            "--app",
            "counter",
            "--chronicler",
            chronicler.url(),
            "--listen",
            "127.0.0.1:0",
            "--snapshots",
            snapshots.to_str().unwrap(),
        ],
    )
    .unwrap();
    let body = json!([
        {"id": "c:1", "type": "counter/added", "payload": {"by": 2}},
        {"id": "c:2", "type": "counter/added", "payload": {"by": -5}},
        {"id": "c:3", "type": "counter/added", "payload": {"by": 3}}
    ]);
    let r = post(&format!("{}/actions", chronicler.url()), "application/json", body.to_string().as_bytes()).unwrap();
    assert_eq!(r.status, 200);
    for _ in 0..200 {
        let v = get(&format!("{}/views/count", view.url())).unwrap().json();
        if v["seq"] == 3 {
            assert_eq!(v["state"], json!({"value": 5}), "the rejected action changed nothing");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the counter view never reached seq 3");
}
