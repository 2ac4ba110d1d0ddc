//! `@@nodb/redact` on the real chronicler: actions are redacted, one is
//! restored, one redacted again; `GET /actions` marks exactly the redacted
//! lines with `redacted_by` (NDJSON and WebSocket) while the log keeps the
//! bytes it stored (`nodb log tail`, `nodb log verify`); the marks are the
//! same after a restart and follow a redaction appended after it; malformed
//! redactions are refused over HTTP and the dispatch socket; and readers
//! through `nodb-client` (as data views and envoys read) still read every
//! line whole, and a real data view follows them to the head.

use nodb_shared::protocol::{REDACT, RedactError};
use nodb_tests::raw::{self, Message};
use nodb_tests::{Service, dispatch, post, read_actions, read_ndjson, run, start_warehouse_view, wait_for_seq};
use serde_json::{Value, json};

fn start(data: &std::path::Path) -> Service {
    Service::start(&["chronicler", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap()
}

fn redact(n: u64, payload: Value) -> Value {
    json!({"id": format!("ops:{n}"), "type": REDACT, "payload": payload})
}

/// The action lines of the NDJSON stream from seq 1 to `head`.
fn ndjson(s: &Service, head: u64) -> Vec<Value> {
    let url = format!("{}/actions?from=1&to={head}", s.url());
    let lines = read_ndjson(&url, |v| v["seq"] == head).unwrap();
    lines.into_iter().filter(|v| v.get("seq").is_some()).collect()
}

/// The action lines of the WebSocket stream from seq 1 to `head`.
fn websocket(s: &Service, head: u64) -> Vec<Value> {
    let url = format!("{}/actions?from=1&to={head}", s.ws_url());
    let mut ws = raw::websocket(&url, &[]).unwrap_or_else(|r| panic!("{url}: {r:?}"));
    let mut out = Vec::new();
    while out.last().is_none_or(|v: &Value| v["seq"] != head) {
        let line = raw::next_json(&mut ws, "the action stream");
        if line.get("seq").is_some() {
            out.push(line);
        }
    }
    out
}

/// `(seq, redacted_by)` of each line.
fn marks(lines: &[Value]) -> Vec<(u64, Option<u64>)> {
    lines.iter().map(|v| (v["seq"].as_u64().unwrap(), v.get("redacted_by").map(|r| r.as_u64().unwrap()))).collect()
}

/// Seqs 1 to `head`, each with the redaction `redacted` says is in force.
fn expected(head: u64, redacted: &[(u64, u64)]) -> Vec<(u64, Option<u64>)> {
    (1..=head).map(|seq| (seq, redacted.iter().find(|(s, _)| *s == seq).map(|(_, by)| *by))).collect()
}

/// Both forms of the stream mark exactly the `redacted` seqs.
#[track_caller]
fn assert_marks(s: &Service, head: u64, redacted: &[(u64, u64)]) -> Vec<Value> {
    let lines = ndjson(s, head);
    assert_eq!(marks(&lines), expected(head, redacted), "NDJSON");
    assert_eq!(marks(&websocket(s, head)), expected(head, redacted), "WebSocket");
    lines
}

/// A POST refused with 400 `bad_request` and exactly `message`.
#[track_caller]
fn assert_refused(s: &Service, body: &Value, message: &str) {
    let r = post(&format!("{}/actions", s.url()), "application/json", body.to_string().as_bytes()).unwrap();
    assert_eq!((r.status, r.error_code()), (400, "bad_request".to_string()), "{body}: {r:?}");
    assert_eq!(r.json()["error"]["message"], message, "{body}");
}

#[test]
fn redacted_lines_are_marked_across_restarts_and_the_log_keeps_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut s = start(dir.path());
    let notes: Vec<Value> =
        (1..=10).map(|n| json!({"id": format!("c:{n}"), "type": "note/add", "payload": {"n": n}})).collect();
    assert_eq!(dispatch(s.url(), &notes), 10);
    assert_eq!(dispatch(s.url(), &[redact(1, json!({"seqs": [2, 4, 6], "reason": "typo"}))]), 11);
    assert_eq!(dispatch(s.url(), &[redact(2, json!({"seqs": [4], "undo": true}))]), 12);
    assert_eq!(dispatch(s.url(), &[redact(3, json!({"seqs": [4, 8], "reason": "again"}))]), 13);

    // Malformed redactions are refused over HTTP, nothing appended...
    assert_refused(&s, &redact(4, json!({"seqs": [], "reason": "r"})), &RedactError::Empty.to_string());
    let beyond = RedactError::OutOfRange { seq: 14, last: 13 }.to_string();
    assert_refused(
        &s,
        &json!([{"id": "c:11", "type": "note/add"}, redact(4, json!({"seqs": [14], "reason": "r"}))]),
        &format!("action 1 (\"ops:4\"): {beyond}"),
    );
    // ...and on the dispatch socket, which stays open.
    let mut ws = raw::websocket(&format!("{}/ws", s.ws_url()), &[]).unwrap();
    ws.send(raw::dispatch_message(&redact(4, json!({"seqs": [2], "reason": "r", "undo": 1})))).unwrap();
    let answer = raw::next_json(&mut ws, "the socket's answer");
    assert_eq!((answer["type"].as_str(), answer["id"].as_str()), (Some("error"), Some("ops:4")), "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");
    assert!(answer["message"].as_str().unwrap().starts_with(&format!("{REDACT} takes")), "{answer}");
    ws.send(raw::dispatch_message(&redact(4, json!({"seqs": [99], "reason": "r"})))).unwrap();
    let answer = raw::next_json(&mut ws, "the socket's answer");
    assert_eq!(answer["message"], RedactError::OutOfRange { seq: 99, last: 13 }.to_string(), "{answer}");
    ws.send(raw::dispatch_message(&redact(4, json!({"seqs": [10], "reason": "over the socket"})))).unwrap();
    let answer = raw::next_json(&mut ws, "the socket's answer");
    assert_eq!((answer["type"].as_str(), answer["seq"].as_u64()), (Some("ack"), Some(14)), "{answer}");
    ws.send(Message::Close(None)).unwrap();

    let redacted = [(2, 11), (4, 13), (6, 11), (8, 13), (10, 14)];
    let served = assert_marks(&s, 14, &redacted);
    // Readers through nodb-client (the data view's and the envoys' way)
    // read every line whole: the same payload, not an unreadable line.
    let read = read_actions(s.url(), 1, Some(14), &[], |v| v["seq"] == 14);
    let read: Vec<&Value> = read.iter().filter(|v| v.get("seq").is_some()).collect();
    assert_eq!(read.len(), 14);
    for (line, served) in read.iter().zip(&served) {
        assert_eq!(
            (&line["seq"], &line["type"], &line["payload"]),
            (&served["seq"], &served["type"], &served["payload"])
        );
    }
    assert_eq!(s.terminate(10_000), Some(0), "stderr:\n{}", s.stderr());

    // The log holds the actions as they were stored: no marks, and the
    // chain holds.
    let out = run(dir.path(), &["log", "verify", "--data", data], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("14 records"), "{out:?}");
    let out = run(dir.path(), &["log", "tail", "--data", data], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    let stored: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!out.stdout.contains("redacted_by"), "{}", out.stdout);
    let unmarked: Vec<Value> = served
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("redacted_by");
            v
        })
        .collect();
    assert_eq!(stored, unmarked);

    // After a restart the marks are the same, and a redaction appended
    // after it counts; one naming a redaction is refused.
    let mut s = start(dir.path());
    assert_marks(&s, 14, &redacted);
    assert_eq!(dispatch(s.url(), &[redact(5, json!({"seqs": [2], "undo": true}))]), 15);
    let names_a_redaction = format!("{REDACT} cannot name seq 12: it is a redaction itself (undo it instead)");
    assert_refused(&s, &redact(6, json!({"seqs": [1, 12], "reason": "r"})), &names_a_redaction);
    assert_eq!(dispatch(s.url(), &[redact(6, json!({"seqs": [1, 6], "reason": "after the restart"}))]), 16);
    let redacted = [(1, 16), (4, 13), (6, 16), (8, 13), (10, 14)];
    assert_marks(&s, 16, &redacted);
    // A data view follows the marked lines to the head.
    let snapshots = tempfile::tempdir().unwrap();
    let view = start_warehouse_view(&s, snapshots.path(), &[]);
    wait_for_seq(&view, 16);
    assert!(!view.stderr().contains("cannot read"), "{}", view.stderr());
    drop(view);
    assert_eq!(s.terminate(10_000), Some(0), "stderr:\n{}", s.stderr());
    let out = run(dir.path(), &["log", "verify", "--data", data], "");
    assert_eq!(out.code, Some(0), "{out:?}");

    // And once more, from a log whose last write is the redaction.
    let s = start(dir.path());
    assert_marks(&s, 16, &redacted);
}
