//! Hostile state: corrupted snapshot files found at a restart (the data
//! view says why it passes over each, starts from an older one or from the
//! log, and reaches the same state), and shutdown with stdout and stderr
//! closed. 5 cases.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nodb_tests::{get, nodb_bin};
use serde_json::{Value, json};

use super::Services;

/// The snapshot files of the warehouse app, oldest first.
fn snapshots(s: &Services) -> Vec<PathBuf> {
    let dir = s.dir.path().join("snapshots").join("warehouse");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "snapshot"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A way to corrupt a snapshot file: its name, what it does to the bytes,
/// and what the data view says of the file at its restart.
type Corruption = (&'static str, fn(&mut Vec<u8>), &'static str);

#[test]
fn corrupted_snapshots_are_passed_over_at_a_restart_and_the_state_is_the_same() {
    let mut s = Services::start(&[], &["--snapshot-every", "5"]);
    let mut next = 0;
    let corruptions: [Corruption; 3] = [
        ("a snapshot truncated in the middle", |b| b.truncate(b.len() / 2), ""),
        (
            "a snapshot overwritten with garbage",
            |b| b.iter_mut().enumerate().for_each(|(k, x)| *x = (k * 7919 % 251) as u8),
            "bad header",
        ),
        (
            // Still valid JSON, another state: only the checksum tells.
            "a snapshot with a digit of its body changed",
            |b| {
                let at = b.iter().rposition(u8::is_ascii_digit).unwrap();
                b[at] = b'0' + (b[at] - b'0' + 1) % 10;
            },
            "checksum mismatch",
        ),
    ];
    for (case, corrupt, logged) in corruptions {
        let actions: Vec<Value> = (0..7)
            .map(|_| {
                next += 1;
                json!({"id": format!("snap:{next}"), "type": "stock/corrected",
                    "payload": {"product": format!("p{next}"), "location": "shelf", "quantity": next}})
            })
            .collect();
        s.dispatch(&Value::from(actions));
        let head = s.head();
        s.wait_for_view(head, case);
        let before = get(&format!("{}/views/stock", s.view.url())).unwrap().json();
        s.stop_view();
        let newest = snapshots(&s).pop().unwrap_or_else(|| panic!("{case}: no snapshot written"));
        let mut bytes = std::fs::read(&newest).unwrap();
        corrupt(&mut bytes);
        std::fs::write(&newest, &bytes).unwrap();
        s.restart_view();
        s.wait_for_view(head, case);
        let after = get(&format!("{}/views/stock", s.view.url())).unwrap().json();
        assert_eq!((&after["hash"], &after["state"]), (&before["hash"], &before["state"]), "{case}");
        assert!(s.view.stderr().contains(logged), "{case}: the data view says why: {}", s.view.stderr());
        s.still_serves_and_lost_nothing(case);
    }
}

/// Starts `nodb args…` with stdout and stderr pipes, reads the start of
/// its ready line, closes both pipes, sends SIGTERM: its exit code, or
/// `None` if it did not exit within 20 s.
fn terminate_with_pipes_closed(args: &[&str], ready: &[u8; 10]) -> Option<i32> {
    let mut child = std::process::Command::new(nodb_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first, ready);
    drop(out);
    drop(child.stderr.take());
    std::thread::sleep(Duration::from_millis(200));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shutdown_completes_when_stdout_and_stderr_are_closed() {
    // Regression: with stderr a closed pipe (`nodb … 2>&1 | head -c 10`),
    // logging "shutting down" panicked in the signal task and SIGTERM was
    // ignored.
    let mut s = Services::start(&[], &[]);
    s.still_serves_and_lost_nothing("start");
    let data = s.dir.path().join("other-log");
    let args = ["chronicler", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    assert_eq!(terminate_with_pipes_closed(&args, b"nodb chron"), Some(0), "a chronicler with its pipes closed");
    s.still_serves_and_lost_nothing("a chronicler's shutdown with its pipes closed");
    let snapshots = s.dir.path().join("other-snapshots");
    let args = [
        "dataview",
        "--chronicler",
        s.chronicler.url(),
        "--listen",
        "127.0.0.1:0",
        "--snapshots",
        snapshots.to_str().unwrap(),
    ];
    assert_eq!(terminate_with_pipes_closed(&args, b"nodb datav"), Some(0), "a data view with its pipes closed");
    s.still_serves_and_lost_nothing("a data view's shutdown with its pipes closed");
}
