//! The log never forgets what it acknowledged, tried as an operator would
//! on the real binaries:
//!
//! - one flipped bit early in the active segment, with hundreds of
//!   acknowledged writes after it: the chronicler refuses to start and
//!   `nodb log verify` exits 2, both naming the damage; nothing is cut;
//! - `GET /head` gives a checkpoint that `nodb log verify --expect` checks;
//! - a data view whose snapshot is ahead of the chronicler's log, or was
//!   taken from another history, refuses to follow it and says why in
//!   `/health`; the log it was taken from it follows.

use nodb_tests::{Service, eventually, get, post, run};
use serde_json::json;

fn post_one(url: &str, n: u64) {
    let body = json!({"id": format!("c:{n}"), "type": "t/x", "payload": {"n": n}}).to_string();
    let r = post(&format!("{url}/actions"), "application/json", body.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn a_flipped_bit_before_acknowledged_writes_refuses_start_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let args = ["chronicler", "--data", data, "--listen", "127.0.0.1:0"];
    let mut s = Service::start(&args).unwrap();
    for n in 1..=300 {
        post_one(s.url(), n);
    }
    let anchor = get(&format!("{}/head", s.url())).unwrap().json();
    assert_eq!(anchor["seq"], 300, "{anchor}");
    let at_100 = get(&format!("{}/head?at=100", s.url())).unwrap().json();
    assert_eq!(at_100["seq"], 100);
    assert_eq!(get(&format!("{}/head?at=301", s.url())).unwrap().status, 404);
    assert_eq!(s.terminate(10_000), Some(0));

    let checkpoint = format!("{}:{}", anchor["seq"], anchor["hash"].as_str().unwrap());
    let early = format!("100:{}", at_100["hash"].as_str().unwrap());
    let out = run(dir.path(), &["log", "verify", "--data", data, "--expect", &checkpoint, "--expect", &early], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("checkpoint seq 300: matches"), "{out:?}");
    let wrong = format!("300:{}", "0".repeat(64));
    let out = run(dir.path(), &["log", "verify", "--data", data, "--expect", &wrong], "");
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("rewritten"), "{out:?}");

    // One bit of record 10 (the active segment holds them all).
    let seg = dir.path().join("log").join(format!("{:020}.seg", 1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let needle = br#""id":"c:10","#;
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("record 10") + 3;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let err = Service::start(&args).err().expect("the chronicler must refuse a damaged log");
    for needle in ["seq 10", "not a torn write", "nodb log verify"] {
        assert!(err.contains(needle), "start-up error names {needle:?}:\n{err}");
    }
    let out = run(dir.path(), &["log", "verify", "--data", data], "");
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("seq 10"), "{out:?}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the damaged log is left as found");
}

#[test]
fn a_data_view_refuses_a_log_behind_its_snapshot_or_another_history() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let view_args = |chronicler: &str| {
        vec![
            "dataview".to_string(),
            "--app".into(),
            "warehouse".into(),
            "--chronicler".into(),
            chronicler.to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--snapshots".into(),
            snapshots.to_str().unwrap().into(),
        ]
    };
    let first = dir.path().join("first");
    let first_args = ["chronicler", "--data", first.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    let mut chronicler = Service::start(&first_args).unwrap();
    for n in 1..=50 {
        post_one(chronicler.url(), n);
    }
    let args = view_args(chronicler.url());
    let mut view = Service::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let health = format!("{}/health", view.url());
    eventually("the view reaches seq 50", || get(&health).is_ok_and(|r| r.json()["seq"] == 50));
    // Stopping writes a snapshot at seq 50.
    assert_eq!(view.terminate(10_000), Some(0));
    assert_eq!(chronicler.terminate(10_000), Some(0));

    // Another log, shorter than the snapshot, behind the same kind of URL.
    let second = dir.path().join("second");
    let chronicler =
        Service::start(&["chronicler", "--data", second.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    for n in 1..=5 {
        post_one(chronicler.url(), n);
    }
    let refusal = |chronicler: &Service| {
        let args = view_args(chronicler.url());
        let mut view = Service::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        let health = format!("{}/health", view.url());
        eventually("the view refuses the log", || get(&health).is_ok_and(|r| r.status == 503));
        let body = get(&health).unwrap().json();
        assert_eq!(body["status"], "refused", "{body}");
        assert_eq!(get(&format!("{}/ready", view.url())).unwrap().status, 503);
        // It never claims the log's actions as its own.
        assert_eq!(body["seq"], 50);
        assert_eq!(view.terminate(10_000), Some(0));
        body["reason"].as_str().unwrap().to_string()
    };
    let reason = refusal(&chronicler);
    assert!(reason.contains("ends at seq 5") && reason.contains("seq 50"), "{reason}");
    drop(chronicler);

    // Another history, longer than the snapshot.
    let third = dir.path().join("third");
    let chronicler =
        Service::start(&["chronicler", "--data", third.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    for n in 1..=60 {
        post_one(chronicler.url(), n);
    }
    let reason = refusal(&chronicler);
    assert!(reason.contains("differs") && reason.contains("seq 50"), "{reason}");
    drop(chronicler);

    // The history the snapshot was taken from: followed, and on it goes.
    let chronicler = Service::start(&first_args).unwrap();
    post_one(chronicler.url(), 51);
    let args = view_args(chronicler.url());
    let view = Service::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let health = format!("{}/health", view.url());
    eventually("the view follows its own log", || get(&health).is_ok_and(|r| r.json()["seq"] == 51));
    assert_eq!(get(&health).unwrap().json()["status"], "caught_up");
}

#[test]
fn a_signed_checkpoint_is_checked_with_the_key_that_signed_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["key.jwk", "other.jwk"] {
        assert_eq!(run(d, &["keygen", k], "").code, Some(0));
    }
    let key = d.join("key.jwk");
    let key = key.to_str().unwrap();
    let out = run(d, &["token", "--key", key, "--client", "ops", "--admin"], "");
    let bearer = format!("Bearer {}", out.stdout.trim());
    let data = d.join("data");
    let data = data.to_str().unwrap();
    let mut s = Service::start(&["chronicler", "--data", data, "--listen", "127.0.0.1:0", "--auth-key", key]).unwrap();
    for n in 1..=20 {
        let body = json!({"id": format!("ops:{n}"), "type": "t/x", "payload": n}).to_string();
        let r = nodb_tests::send(
            "POST",
            &format!("{}/actions", s.url()),
            &[("authorization", &bearer), ("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
    }
    let head = nodb_tests::send("GET", &format!("{}/head?at=15", s.url()), &[("authorization", &bearer)], b"").unwrap();
    let signed = head.json()["signed"].as_str().expect("a signed checkpoint with keys").to_string();
    assert_eq!(nodb_tests::send("GET", &format!("{}/head", s.url()), &[], b"").unwrap().status, 401);
    assert_eq!(s.terminate(10_000), Some(0));
    let verify = |signed: &str, key: &str| {
        run(d, &["log", "verify", "--data", data, "--expect-signed", signed, "--auth-key", key], "")
    };
    let out = verify(&signed, key);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("checkpoint seq 15: matches"), "{out:?}");
    let other = d.join("other.jwk");
    assert_eq!(verify(&signed, other.to_str().unwrap()).code, Some(2), "another key did not sign it");
    let mut forged = signed.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert_eq!(verify(&forged, key).code, Some(2), "a changed signature");
}
