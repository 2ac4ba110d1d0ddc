//! Snapshots in S3: a data view started with `--snapshots s3://bucket/prefix`
//! against a real S3-compatible server (moto's `moto_server`, installed by
//! `.ci/run` from PyPI) writes its snapshots there, never overwrites one,
//! and restarts from the newest.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nodb_tests::{Service, dispatch, get, nodb_bin, send, wait_for_seq};
use serde_json::json;

/// The S3-compatible server, killed when dropped.
struct S3Server {
    child: Child,
    url: String,
}

impl S3Server {
    fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; .ci/run installs it)");
        let server = S3Server { child, url: format!("http://127.0.0.1:{port}") };
        for _ in 0..200 {
            if get(&server.url).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not start on port {port}");
    }

    /// The keys in `bucket`, from a ListObjectsV2 answer.
    fn keys(&self, bucket: &str) -> Vec<String> {
        let body = get(&format!("{}/{bucket}?list-type=2", self.url)).unwrap().body;
        body.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>")).map(|(k, _)| k.to_string()).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_dataview_keeps_its_snapshots_in_s3_and_restarts_from_them() {
    let s3 = S3Server::start();
    let put = send("PUT", &format!("{}/snaps", s3.url), &[], b"").unwrap();
    assert_eq!(put.status, 200, "create the bucket");
    let env = [
        ("AWS_ENDPOINT", s3.url.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
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
