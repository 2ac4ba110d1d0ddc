//! A full disk with the real chronicler on a real (small tmpfs) filesystem:
//! appends are refused with 503 and a clear message, nothing partial is
//! left behind, and the chronicler recovers by itself once space returns.
//!
//! The test mounts a 4 MiB tmpfs, which needs root (CAP_SYS_ADMIN); CI and
//! the development machines run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use nodb_tests::client::chronicler;
use nodb_tests::{Service, block_on, post, run};
use serde_json::json;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_with_503_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(dir.path(), "4m");
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let s = Service::start(&["chronicler", "--data", data_s, "--listen", "127.0.0.1:0", "--segment-size", "1048576"])
        .unwrap();
    // Take all the space that is left.
    let filler = dir.path().join("filler");
    let _ = Command::new("dd").args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=64k"]).output();
    let url = format!("{}/actions", s.url());
    let pad = "x".repeat(4000);
    let mut acked = 0u64;
    let mut refused = None;
    for n in 1..=400u64 {
        let body = json!({"id": format!("d:{n}"), "type": "t", "payload": pad}).to_string();
        let r = post(&url, "application/json", body.as_bytes()).unwrap();
        if r.status == 200 {
            acked = n;
        } else {
            refused = Some((n, r));
            break;
        }
    }
    let (n, r) = refused.expect("the disk filled up");
    assert!(acked > 100, "the preallocated segment took {acked} actions before the disk was full");
    assert_eq!((r.status, r.error_code().as_str()), (503, "unavailable"), "{r:?}");
    assert!(r.body.contains("disk is full"), "{r:?}");
    // Still full: still refused, and the service stays up.
    let body = json!({"id": format!("d:{n}"), "type": "t", "payload": pad}).to_string();
    assert_eq!(post(&url, "application/json", body.as_bytes()).unwrap().status, 503);
    // On a socket, each pipelined dispatch gets its own error, with its id:
    // the first cannot be written, and the ones after it (if they were not
    // in the same write) are out of order behind it.
    let mut ws = block_on(chronicler(s.url()).dispatcher()).unwrap();
    for k in 1..=3 {
        let action = json!({"id": format!("w:{k}"), "type": "t", "payload": pad});
        block_on(ws.send(&serde_json::from_value(action).unwrap())).unwrap();
    }
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let m = serde_json::to_value(block_on(ws.next_reply()).unwrap()).unwrap();
        assert_eq!(m["type"], "error", "{m}");
        let code = m["code"].as_str().unwrap().to_string();
        assert!(code == "unavailable" || (code == "out_of_order" && m["id"] != "w:1"), "{m}");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    assert_eq!(ids, ["w:1", "w:2", "w:3"]);
    // Space returns: the same action goes through, no restart needed.
    std::fs::remove_file(&filler).unwrap();
    let r = post(&url, "application/json", body.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["acks"][0]["seq"], n, "no seq was lost or used twice");
    drop(s);
    let out = run(dir.path(), &["log", "verify", "--data", data_s], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(&format!("head seq: {n}")), "{out:?}");
}
