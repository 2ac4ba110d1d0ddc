//! `@@nodb/redact` through the router (`oneshot`, no sockets): malformed
//! redactions are refused at the door, only admins may send one, and
//! `GET /actions` marks the lines of redacted actions with `redacted_by`,
//! also after the log is opened again.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use nodb_shared::protocol::redact::{MAX_REASON, MAX_SEQS};
use nodb_shared::protocol::{Limits, REDACT, Redact, RedactError, StreamLine};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{AppState, ServerConfig, router};
use crate::log::{FileLog, Log, LogConfig};
use crate::metrics::Metrics;

/// A router over the log in `dir` (opened, or recovered), with room for a
/// redaction of 10,001 seqs; and the log, to shut it down.
fn open(dir: &std::path::Path, access: nodb_server::Access) -> (axum::Router, Arc<FileLog>) {
    let config = ServerConfig {
        limits: Limits { max_payload_bytes: 256 * 1024, ..Limits::default() },
        max_body_bytes: 512 * 1024,
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::default());
    let (log, _) = FileLog::open(&LogConfig::new(dir), metrics.clone()).unwrap();
    let state = AppState {
        log: log.clone(),
        metrics,
        config: Arc::new(config),
        shutdown: tokio_util::sync::CancellationToken::new(),
        tasks: tokio_util::task::TaskTracker::new(),
        access,
    };
    (router(state), log)
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

fn post(body: &Value, auth: Option<&str>) -> Request<Body> {
    let mut r = Request::post("/actions").header(header::CONTENT_TYPE, "application/json");
    if let Some(auth) = auth {
        r = r.header(header::AUTHORIZATION, auth);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

/// Posts `body`; panics unless it is acknowledged.
async fn append(app: &axum::Router, body: Value) {
    let (status, answer) = send(app, post(&body, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}: {answer}");
}

async fn head(app: &axum::Router) -> u64 {
    let (_, body) = send(app, Request::get("/health").body(Body::empty()).unwrap()).await;
    body["head"].as_u64().unwrap()
}

/// The lines `GET uri` serves (heartbeats left out), as text.
async fn lines(app: &axum::Router, uri: &str) -> Vec<String> {
    let res = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap().lines().filter(|l| l.starts_with("{\"seq\"")).map(String::from).collect()
}

/// `(seq, redacted_by)` of each served line.
fn marks(lines: &[String]) -> Vec<(u64, Option<u64>)> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["seq"].as_u64().unwrap(), v.get("redacted_by").map(|r| r.as_u64().unwrap()))
        })
        .collect()
}

fn redact(n: u64, payload: Value) -> Value {
    json!({"id": format!("ops:{n}"), "type": REDACT, "payload": payload})
}

/// Each way a redaction's payload can be wrong is refused with 400
/// `bad_request` and the check's own sentence, and nothing is appended.
#[tokio::test]
async fn a_malformed_redaction_is_refused_with_the_checks_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _log) = open(dir.path(), nodb_server::Access::open());
    append(&app, json!([{"id": "c:1", "type": "t"}, {"id": "c:2", "type": "t"}, {"id": "c:3", "type": "t"}])).await;
    let too_many: Vec<u64> = (1..=MAX_SEQS as u64 + 1).collect();
    let cases = [
        (json!([1]), "Shape"),
        (json!({"seqs": [1], "reason": "r", "why": "x"}), "Shape"),
        (Value::Null, "Shape"),
        (json!({"seqs": [], "reason": "r"}), "Empty"),
        (json!({"seqs": too_many, "reason": "r"}), "TooMany"),
        (json!({"seqs": [2, 1, 2], "reason": "r"}), "Repeated"),
        (json!({"seqs": [0], "reason": "r"}), "OutOfRange"),
        // The log's head is 3: seq 4 would be the redaction's own.
        (json!({"seqs": [1, 4], "reason": "r"}), "OutOfRange"),
        (json!({"seqs": [1]}), "NoReason"),
        (json!({"seqs": [1], "reason": "  "}), "NoReason"),
        (json!({"seqs": [1], "reason": "é".repeat(MAX_REASON / 2 + 1)}), "LongReason"),
    ];
    let mut kinds = Vec::new();
    for (payload, kind) in cases {
        let expected = Redact::parse(&payload, 3).unwrap_err();
        assert!(format!("{expected:?}").starts_with(kind), "{payload}: {expected:?}");
        let (status, body) = send(&app, post(&redact(1, payload.clone()), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{payload}: {body}");
        assert_eq!(body, json!({"error": {"code": "bad_request", "message": expected.to_string()}}), "{payload}");
        kinds.push(kind);
    }
    kinds.dedup();
    assert_eq!(kinds, ["Shape", "Empty", "TooMany", "Repeated", "OutOfRange", "NoReason", "LongReason"]);
    // Without a payload at all.
    let (status, body) = send(&app, post(&json!({"id": "ops:1", "type": REDACT}), None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("@@nodb/redact takes"), "{body}");
    assert_eq!(head(&app).await, 3);
    // A good one is appended, and names the seqs up to the head.
    append(&app, redact(1, json!({"seqs": [3, 1], "reason": "typo"}))).await;
    append(&app, redact(2, json!({"seqs": [3, 1], "undo": true}))).await;
    assert_eq!(head(&app).await, 5);
    // None may name a redaction or undo that took effect.
    for (payload, named) in [(json!({"seqs": [2, 4], "reason": "r"}), 4), (json!({"seqs": [5], "undo": true}), 5)] {
        let (status, body) = send(&app, post(&redact(3, payload), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = format!("{REDACT} cannot name seq {named}: it is a redaction itself (undo it instead)");
        assert_eq!(body, json!({"error": {"code": "bad_request", "message": message}}));
    }
    assert_eq!(head(&app).await, 5);
}

/// A batch with one bad redaction is refused whole, and the message says
/// which action; a redaction may not name an action of its own batch
/// (not yet in the log when it is checked).
#[tokio::test]
async fn a_batch_with_a_bad_redaction_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _log) = open(dir.path(), nodb_server::Access::open());
    append(&app, json!({"id": "c:1", "type": "t"})).await;
    let batch = json!([{"id": "c:2", "type": "t"}, redact(1, json!({"seqs": [1, 1], "reason": "r"}))]);
    let (status, body) = send(&app, post(&batch, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = format!("action 1 (\"ops:1\"): {}", RedactError::Repeated(1));
    assert_eq!(body, json!({"error": {"code": "bad_request", "message": message}}));
    let batch = json!([{"id": "c:2", "type": "t"}, redact(1, json!({"seqs": [2], "reason": "r"}))]);
    let (status, body) = send(&app, post(&batch, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = format!("action 1 (\"ops:1\"): {}", RedactError::OutOfRange { seq: 2, last: 1 });
    assert_eq!(body["error"]["message"], message);
    assert_eq!(head(&app).await, 1);
    append(&app, json!([{"id": "c:2", "type": "t"}, redact(1, json!({"seqs": [1], "reason": "r"}))])).await;
    assert_eq!(head(&app).await, 3);
}

/// `@@nodb/redact` needs `admin`, like every control action, whatever the
/// token's dispatch prefixes; a non-admin is refused before its payload is
/// looked at.
#[tokio::test]
async fn only_an_admin_may_redact() {
    use nodb_auth::{Claims, Key, KeySet};
    let key = Key::generate();
    let dir = tempfile::tempdir().unwrap();
    let (app, _log) = open(dir.path(), nodb_server::Access::new(Some(KeySet::new(vec![key.clone()]))));
    let exp = nodb_auth::key::now() + 600;
    let token = |c: Claims| format!("Bearer {}", key.mint(&Claims { exp, ..c }).unwrap());
    let anyone = token(Claims { sub: "ops".into(), dispatch: vec![String::new()], ..Claims::default() });
    let prefixed = token(Claims { sub: "ops".into(), dispatch: vec!["@@nodb/".into()], ..Claims::default() });
    let admin = token(Claims { sub: "ops".into(), admin: true, ..Claims::default() });
    let (status, _) = send(&app, post(&json!({"id": "ops:1", "type": "t"}), Some(&anyone))).await;
    assert_eq!(status, StatusCode::OK);
    let good = redact(2, json!({"seqs": [1], "reason": "r"}));
    let bad = redact(2, json!({"seqs": [9]}));
    for (auth, body) in [(&anyone, &good), (&prefixed, &good), (&anyone, &bad)] {
        let (status, answer) = send(&app, post(body, Some(auth))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["error"]["right"], "admin", "{answer}");
    }
    let (status, answer) = send(&app, post(&bad, Some(&admin))).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (status, answer) = send(&app, post(&good, Some(&admin))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["acks"][0]["seq"], 2);
}

/// The served lines carry `redacted_by` exactly where a redaction is in
/// force (redactions and undos in seq order), the rest are the stored
/// bytes; the lines still read as actions; and opening the log again
/// rebuilds the same index, which then follows new redactions.
#[tokio::test]
async fn the_stream_marks_redacted_lines_also_after_the_log_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let (app, log) = open(dir.path(), nodb_server::Access::open());
    let actions: Vec<Value> = (1..=6)
        .map(|n| json!({"id": format!("c:{n}"), "type": if n % 2 == 0 { "even" } else { "odd" }, "payload": {"n": n}, "meta": {"k": "v"}}))
        .collect();
    append(&app, Value::from(actions)).await; // 1..=6
    let before = lines(&app, "/actions?from=1&to=6").await;
    append(&app, redact(1, json!({"seqs": [2, 3, 5], "reason": "typo"}))).await; // 7
    append(&app, redact(2, json!({"seqs": [3], "undo": true}))).await; // 8
    append(&app, redact(3, json!({"seqs": [5, 6], "reason": "again"}))).await; // 9
    // Two that ingest refuses, appended past it (as a log written before
    // it checked redactions may hold): they change nothing.
    let unchecked = |n: u64, payload: &str| {
        let action: crate::action::IncomingAction =
            serde_json::from_value(redact(n, serde_json::from_str(payload).unwrap())).unwrap();
        (action.id.parse().unwrap(), action)
    };
    let batch = crate::log::AppendBatch {
        actions: vec![unchecked(4, r#"{"seqs": [7], "reason": "a redaction"}"#), unchecked(5, r#"{"seqs": [1]}"#)],
        client: None,
        atomicity: crate::log::Atomicity::AllOrNothing,
    };
    log.append(batch).await.unwrap(); // 10, 11
    let expected = vec![
        (1, None),
        (2, Some(7)),
        (3, None),
        (4, None),
        (5, Some(9)),
        (6, Some(9)),
        (7, None),
        (8, None),
        (9, None),
        (10, None),
        (11, None),
    ];
    let served = lines(&app, "/actions?from=1&to=11").await;
    assert_eq!(marks(&served), expected);
    for (line, stored) in served.iter().zip(&before) {
        let v: Value = serde_json::from_str(line).unwrap();
        match v.get("redacted_by") {
            // The stored bytes, with the field added at the end.
            Some(by) => assert_eq!(*line, format!("{},\"redacted_by\":{by}}}", &stored[..stored.len() - 1])),
            None => assert_eq!(line, stored),
        }
        // Readers that know nothing of the field read the action as stored.
        let StreamLine::Action(read) = StreamLine::parse(line).unwrap() else { panic!("not an action: {line}") };
        let StreamLine::Action(stored) = StreamLine::parse(stored).unwrap() else { panic!() };
        assert_eq!(read, stored);
    }
    // A part of the log, and a type filter, get the same marks.
    assert_eq!(marks(&lines(&app, "/actions?from=4&to=5").await), [(4, None), (5, Some(9))]);
    let odd = lines(&app, "/actions?from=1&to=9&types=odd").await;
    assert_eq!(marks(&odd), [(1, None), (3, None), (5, Some(9))]);
    // Opened again: the index comes back from the log.
    log.shutdown().await;
    drop((app, log));
    let (app, log) = open(dir.path(), nodb_server::Access::open());
    assert_eq!(marks(&lines(&app, "/actions?from=1&to=11").await), expected);
    assert_eq!(log.redacted(1, 100), vec![(2, 7), (5, 9), (6, 9)]);
    assert_eq!((log.redaction_among(&[1, 10, 11]), log.redaction_among(&[3, 8, 7])), (None, Some(8)));
    append(&app, redact(6, json!({"seqs": [2, 4], "undo": true}))).await; // 12
    append(&app, redact(7, json!({"seqs": [1, 10], "reason": "late"}))).await; // 13
    let expected_now = [(1, Some(13)), (2, None), (5, Some(9)), (6, Some(9)), (10, Some(13)), (12, None), (13, None)];
    let now = marks(&lines(&app, "/actions?from=1&to=13").await);
    for (seq, by) in expected_now {
        assert_eq!(now[seq as usize - 1], (seq, by));
    }
    assert_eq!(now.iter().filter(|(_, by)| by.is_some()).count(), 4);
    log.shutdown().await;
}
