//! An application's own views, envoys and cascades run with the whole
//! `nodb` command line: the `counter_app` example adds an app to the
//! registry and runs `dataview`, `envoy` and `cascade --app counter`
//! against a real chronicler.

use nodb_tests::{Service, dispatch, eventually, example_bin, get, post, read_actions};
use serde_json::json;

#[test]
fn an_application_runs_its_own_views_envoys_and_cascades_with_the_nodb_command_line() {
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
            return own_envoy_and_cascade(&bin, &chronicler, &view);
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the counter view never reached seq 3");
}

/// The app's envoy fires when the count passes 10 and records its outcome;
/// its cascade derives the milestones from the view.
fn own_envoy_and_cascade(bin: &std::path::Path, chronicler: &Service, view: &Service) {
    let _envoy = Service::start_bin(
        bin,
        &["envoy", "--app", "counter", "--chronicler", chronicler.url(), "--dataview", view.url()],
    )
    .unwrap();
    let client = format!("{}/clients/envoy-milestone", chronicler.url());
    eventually("the envoy has started", || get(&client).is_ok_and(|r| r.status == 200));
    let cascade = Service::start_bin(
        bin,
        &["cascade", "--app", "counter", "--upstream", &format!("count={}", view.url()), "--listen", "127.0.0.1:0"],
    )
    .unwrap();

    let cause = dispatch(chronicler.url(), &[json!({"id": "c:4", "type": "counter/added", "payload": {"by": 7}})]);
    let log = read_actions(chronicler.url(), cause, None, &[], |a| a["type"] == "counter/milestone");
    let result = log.last().unwrap();
    assert_eq!(result["type"], "counter/milestone", "{log:?}");
    assert_eq!(result["payload"], json!({"milestone": "10", "notified": false}));
    assert_eq!(result["meta"]["cause"], cause.to_string(), "meta values are strings: {result}");
    assert!(result["id"].as_str().unwrap().starts_with("envoy-milestone:"), "{result}");

    eventually("the cascade reflects the count of 12", || {
        let v = get(&format!("{}/views/progress", cascade.url())).map(|r| r.json()).unwrap_or_default();
        v["state"] == json!({"reached": [10], "next": 100}) && v["sources"]["count"].as_u64() >= Some(cause)
    });
}
