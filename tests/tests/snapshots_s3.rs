//! Snapshots in S3: a data view started with `--snapshots s3://bucket/prefix`
//! against a real S3-compatible server (moto's `moto_server`, installed by
//! `.ci/run` from PyPI) writes its snapshots there, never overwrites one,
//! and restarts from the newest.

use nodb_tests::s3::S3Server;
use nodb_tests::{Service, dispatch, get, nodb_bin, wait_for_seq};
use serde_json::json;

#[test]
fn a_dataview_keeps_its_snapshots_in_s3_and_restarts_from_them() {
    let s3 = S3Server::start();
    s3.create_bucket("snaps");
    let env = s3.env();
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let args = [
        "dataview",
        "--chronicler",
        chronicler.url(),
        "--listen",
        "127.0.0.1:0",
        "--snapshots",
        "s3://snaps/team/prod",
    ];
    let mut view = Service::start_with_env(&nodb_bin(), &args, &env).unwrap();
    let sell = |n: u64| json!({"id": format!("s3:{n}"), "type": "stock/corrected", "payload": {"product": format!("p{n}"), "location": "shelf", "quantity": n}});
    dispatch(chronicler.url(), &[sell(1), sell(2), json!({"id": "ops:1", "type": "@@nodb/snapshot"}), sell(3)]);
    wait_for_seq(&view, 4);
    // The snapshot action wrote seq 3; a clean stop writes seq 4.
    assert_eq!(view.terminate(10_000), Some(0), "{}", view.stderr());
    let keys = s3.keys("snaps");
    assert_eq!(
        keys,
        [format!("team/prod/warehouse/{:020}.snapshot", 3), format!("team/prod/warehouse/{:020}.snapshot", 4)],
        "snapshots under the URL's prefix"
    );
    // A restart restores seq 4 from S3, then follows the chronicler.
    dispatch(chronicler.url(), &[sell(4)]);
    let mut view = Service::start_with_env(&nodb_bin(), &args, &env).unwrap();
    wait_for_seq(&view, 5);
    let log = view.stderr();
    assert!(log.contains("restored the views from a snapshot") && log.contains("seq=4"), "{log}");
    let state = get(&format!("{}/views/stock", view.url())).unwrap().json();
    assert_eq!(state["state"]["total"], json!(10));
    // Stopping at seq 5 writes a new snapshot; one at an existing seq is
    // never overwritten (the store refuses the create).
    dispatch(chronicler.url(), &[json!({"id": "ops:2", "type": "@@nodb/snapshot"})]);
    wait_for_seq(&view, 6);
    assert_eq!(view.terminate(10_000), Some(0), "{}", view.stderr());
    let log = view.stderr();
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "no snapshot write or prune failed:\n{log}");
    assert_eq!(s3.keys("snaps").len(), 3, "the newest three are kept: {:?}", s3.keys("snaps"));
}

#[test]
fn a_bad_snapshot_url_is_a_clear_error() {
    let out = nodb_tests::run(
        std::path::Path::new("."),
        &["dataview", "--snapshots", "nosuch://x/y", "--listen", "127.0.0.1:0"],
        "",
    );
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("cannot open snapshot storage \"nosuch://x/y\""), "{}", out.stderr);
}
