//! The router's error mapping, driven through `oneshot` (no sockets): each
//! failure answers with its status and `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use nodb_shared::protocol::Limits;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{AppState, ServerConfig, router};
use crate::log::{FileLog, LogConfig};
use crate::metrics::Metrics;

/// A router over a fresh log in a temporary directory (kept alive by the
/// returned guard), with a small body limit.
fn app() -> (axum::Router, tempfile::TempDir) {
    app_with(nodb_server::Access::open())
}

fn app_with(access: nodb_server::Access) -> (axum::Router, tempfile::TempDir) {
    let config = ServerConfig {
        limits: Limits { max_payload_bytes: 512, ..Limits::default() },
        max_body_bytes: 1024,
        ..Default::default()
    };
    let (app, dir, _) = app_config(config, access);
    (app, dir)
}

/// A router with these settings, and its metrics.
fn app_config(config: ServerConfig, access: nodb_server::Access) -> (axum::Router, tempfile::TempDir, Arc<Metrics>) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let (log, _) = FileLog::open(&LogConfig::new(dir.path()), metrics.clone()).unwrap();
    config.validate().unwrap();
    let state = AppState {
        log,
        metrics: metrics.clone(),
        config: Arc::new(config),
        shutdown: tokio_util::sync::CancellationToken::new(),
        tasks: tokio_util::task::TaskTracker::new(),
        access,
    };
    (router(state), dir, metrics)
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/actions").header(header::CONTENT_TYPE, "application/json").body(body.into()).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Asserts the error body's code, that its message is a sentence, and that
/// it holds nothing but `code`, `message` (and `expected` when given).
#[track_caller]
fn assert_error(body: &Value, code: &str) {
    let err = body.get("error").unwrap_or_else(|| panic!("no `error` in {body}"));
    assert_eq!(err["code"], code, "{body}");
    let message = err["message"].as_str().unwrap_or_else(|| panic!("no message in {body}"));
    assert!(!message.is_empty(), "{body}");
    let keys: Vec<&str> = err.as_object().unwrap().keys().map(String::as_str).collect();
    assert!(keys.iter().all(|k| ["code", "message", "expected", "right"].contains(k)), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (app, _dir) = app();
    let (status, body) = send(&app, post(r#"{"id": "c:1", "type": "#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "malformed_json");
    let (status, body) = send(&app, post("{not json}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "malformed_json");
}

#[tokio::test]
async fn wrong_shape_is_422_invalid_action() {
    let (app, _dir) = app();
    // Valid JSON, but no `type`.
    let (status, body) = send(&app, post(r#"{"id": "c:1"}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_action");
    // An id that is not `<client>:<n>`.
    let (status, body) = send(&app, post(r#"{"id": "nocolon", "type": "t/x"}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_action");
    // An empty batch.
    let (status, body) = send(&app, post("[]")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_action");
}

#[tokio::test]
async fn oversize_is_413() {
    let (app, _dir) = app();
    // The body is over the 1024-byte body limit.
    let big = json!({"id": "c:1", "type": "t/x", "payload": "x".repeat(2000)}).to_string();
    let (status, body) = send(&app, post(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large");
    // The body fits, but the payload is over the 512-byte payload limit.
    let big = json!({"id": "c:1", "type": "t/x", "payload": "x".repeat(600)}).to_string();
    let (status, body) = send(&app, post(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large");
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let (app, _dir) = app();
    let req = Request::post("/actions")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"id": "c:1", "type": "t/x"}"#))
        .unwrap();
    let (status, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&body, "unsupported_media_type");
    let req = Request::post("/actions").body(Body::from(r#"{"id": "c:1", "type": "t/x"}"#)).unwrap();
    let (status, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&body, "unsupported_media_type");
    // A charset parameter is fine.
    let req = Request::post("/actions")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(r#"{"id": "c:1", "type": "t/x"}"#))
        .unwrap();
    let (status, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acks"][0]["seq"], 1, "{body}");
}

#[tokio::test]
async fn out_of_order_is_409_with_expected() {
    let (app, _dir) = app();
    let (status, body) = send(&app, post(r#"{"id": "c:1", "type": "t/x"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(&app, post(r#"{"id": "c:3", "type": "t/x"}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "out_of_order");
    assert_eq!(body["error"]["expected"], 2, "{body}");
    // A new client's first action must be number 1.
    let (status, body) = send(&app, post(r#"[{"id": "d:2", "type": "t/x"}]"#)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "out_of_order");
    assert_eq!(body["error"]["expected"], 1, "{body}");
}

#[tokio::test]
async fn other_errors_have_no_expected() {
    let (app, _dir) = app();
    let (_, body) = send(&app, post("{not json}")).await;
    assert!(body["error"].get("expected").is_none(), "{body}");
}

#[tokio::test]
async fn unknown_route_is_404() {
    let (app, _dir) = app();
    let (status, body) = send(&app, get("/nowhere")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("/nowhere"), "{body}");
    let (status, body) = send(&app, get("/clients/nobody")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
}

#[tokio::test]
async fn bad_from_and_to_are_400() {
    let (app, _dir) = app();
    for uri in ["/actions?from=0", "/actions?from=abc", "/actions?from=-1", "/actions?from=5&to=4", "/actions?to=x"] {
        let (status, body) = send(&app, get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_error(&body, "bad_request");
    }
}

#[tokio::test]
async fn health_and_client_answer_json() {
    let (app, _dir) = app();
    let (status, body) = send(&app, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok", "head": 0}));
    let (status, _) = send(&app, post(r#"{"id": "c:1", "type": "t/x"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&app, get("/clients/c")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"client": "c", "last": 1, "seq": 1}));
}

/// With keys, each action is checked against the token: its client, its
/// type, control actions for admins only; the log and metrics need rights.
#[tokio::test]
async fn tokens_decide_who_may_dispatch_and_read() {
    use nodb_auth::{Claims, Key, KeySet};
    let key = Key::generate();
    let (app, _dir) = app_with(nodb_server::Access::new(Some(KeySet::new(vec![key.clone()]))));
    let exp = nodb_auth::key::now() + 600;
    let token = |c: Claims| format!("Bearer {}", key.mint(&Claims { exp, ..c }).unwrap());
    let alice = token(Claims { sub: "alice".into(), dispatch: vec!["cart/".into()], ..Claims::default() });
    let reader = token(Claims { sub: "r".into(), read: vec!["*".into()], ..Claims::default() });
    let admin = token(Claims { sub: "ops".into(), admin: true, ..Claims::default() });
    let with = |auth: &str, body: &str| {
        let mut r = post(body.to_string());
        r.headers_mut().insert(header::AUTHORIZATION, auth.parse().unwrap());
        r
    };
    let (status, body) = send(&app, post(r#"{"id": "alice:1", "type": "cart/add"}"#)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let (status, _) = send(&app, with(&alice, r#"{"id": "alice.tab:1", "type": "cart/add"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    for (auth, body, right) in [
        (&alice, r#"{"id": "bob:1", "type": "cart/add"}"#, "client:bob"),
        (&alice, r#"{"id": "alice:1", "type": "stock/restock"}"#, "dispatch:stock/restock"),
        (&alice, r#"{"id": "alice:1", "type": "@@nodb/set_state", "payload": {}}"#, "admin"),
        (&reader, r#"{"id": "r:1", "type": "x"}"#, "dispatch"),
        // One forbidden action refuses the whole request.
        (&alice, r#"[{"id": "alice:1", "type": "cart/add"}, {"id": "alice:2", "type": "x"}]"#, "dispatch:x"),
    ] {
        let (status, body) = send(&app, with(auth, body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_error(&body, "forbidden");
        assert_eq!(body["error"]["right"], right);
    }
    let (status, _) = send(&app, with(&admin, r#"{"id": "ops:1", "type": "@@nodb/snapshot", "payload": {}}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let get_as = |uri: &str, auth: &str| {
        let mut r = get(uri);
        r.headers_mut().insert(header::AUTHORIZATION, auth.parse().unwrap());
        r
    };
    let (status, body) = send(&app, get_as("/actions?from=1&to=1", &alice)).await;
    assert_eq!((status, body["error"]["right"].as_str()), (StatusCode::FORBIDDEN, Some("log")));
    let (status, body) = send(&app, get_as("/metrics", &alice)).await;
    assert_eq!((status, body["error"]["right"].as_str()), (StatusCode::FORBIDDEN, Some("admin")));
    let (status, body) = send(&app, get_as("/clients/alice.tab", &alice)).await;
    assert_eq!((status, body["last"].as_u64()), (StatusCode::OK, Some(1)));
    let (status, _) = send(&app, get_as("/clients/ops", &alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let res = app.clone().oneshot(get_as("/actions?from=1&to=1", &admin)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.clone().oneshot(get("/health")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "health needs no token");
}

/// Regression (issue 15): an action's type and meta escaped the size
/// limits (a 15 MiB type was stored). Each is refused with 413 and a
/// sentence naming the field, like an oversized payload.
#[tokio::test]
async fn type_and_meta_over_their_limits_are_413() {
    let limits = Limits {
        max_payload_bytes: 1024,
        max_meta_key_bytes: 8,
        max_meta_value_bytes: 16,
        max_meta_bytes: 64,
        ..Limits::default()
    };
    let config = ServerConfig { limits, max_body_bytes: 4096, ..Default::default() };
    let (app, _dir, _) = app_config(config, nodb_server::Access::open());
    let long_type = "t".repeat(257);
    for (body, field) in [
        (json!({"id": "c:1", "type": long_type}), "type"),
        (json!({"id": "c:1", "type": "t", "meta": {"k": "v".repeat(17)}}), "meta"),
        (json!({"id": "c:1", "type": "t", "meta": {"key-of-9b": "v"}}), "meta"),
        (
            json!({"id": "c:1", "type": "t", "meta": {"a": "0123456789", "b": "0123456789", "c": "0123456789", "d": "0123456789"}}),
            "meta",
        ),
    ] {
        let (status, answer) = send(&app, post(body.to_string())).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}: {answer}");
        assert_error(&answer, "payload_too_large");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("field `{field}`")) && message.contains("over the limit"), "{message}");
    }
    // At the limits, it is accepted.
    let at_limits = json!({"id": "c:1", "type": "t".repeat(256), "meta": {"a": "0123456789abcdef", "key-of-8": "v"}});
    let (status, answer) = send(&app, post(at_limits.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Regression (issue 15): a payload nested 127 deep was accepted, but its
/// committed action could not be read by consumers (serde_json's limit is
/// 128 levels). Deeper than 100 is refused; what is accepted reads back.
#[tokio::test]
async fn a_payload_nested_too_deep_is_422_and_one_at_the_limit_reads_back() {
    let (app, _dir) = app();
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    for depth in [101, 127] {
        let body = format!(r#"{{"id": "c:1", "type": "t", "payload": {}}}"#, nested(depth));
        let (status, answer) = send(&app, post(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_error(&answer, "invalid_action");
        assert!(answer["error"]["message"].as_str().unwrap().contains("100 levels"), "{answer}");
    }
    let body = format!(r#"{{"id": "c:1", "type": "t", "payload": {}}}"#, nested(100));
    let (status, answer) = send(&app, post(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let res = app.clone().oneshot(get("/actions?from=1&to=1")).await.unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let line = bytes.split(|b| *b == b'\n').find(|l| l.starts_with(b"{\"seq\"")).unwrap();
    let committed: nodb_shared::protocol::CommittedAction = serde_json::from_slice(line).unwrap();
    assert_eq!(nodb_shared::protocol::action::value_depth(&committed.payload), 100);
}

/// Regression (issue 15): stream readers that never read held up to 64 MiB
/// each. A consumer that takes nothing for the stall time is cut off,
/// counted and its buffer dropped; one that reads slowly gets everything.
#[tokio::test]
async fn a_consumer_that_stops_reading_is_cut_off_and_a_slow_one_is_not() {
    let stall = std::time::Duration::from_millis(400);
    let limits = Limits { max_payload_bytes: 200 * 1024, ..Limits::default() };
    let config = ServerConfig { limits, max_body_bytes: 1024 * 1024, stream_stall: stall, ..Default::default() };
    let (app, _dir, metrics) = app_config(config, nodb_server::Access::open());
    // 24 actions of 150 KiB: more than the chunks a consumer may hold.
    for batch in 0..6 {
        let actions: Vec<Value> = (1..=4)
            .map(|i| json!({"id": format!("c:{}", batch * 4 + i), "type": "t", "payload": "x".repeat(150 * 1024)}))
            .collect();
        let (status, answer) = send(&app, post(Value::from(actions).to_string())).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    // A consumer that never reads its body.
    let stalled = app.clone().oneshot(get("/actions?from=1")).await.unwrap();
    // A consumer that reads, but pauses between chunks (for less than the
    // stall time).
    let slow = app.clone().oneshot(get("/actions?from=1&to=24")).await.unwrap();
    let mut body = slow.into_body();
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        text.extend_from_slice(&frame.unwrap().into_data().unwrap());
        tokio::time::sleep(stall / 3).await;
    }
    let seqs: Vec<u64> = text
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"{\"seq\""))
        .map(|l| serde_json::from_slice::<Value>(l).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=24).collect::<Vec<_>>());
    // By now the stalled consumer has been cut off, and its body ends in an
    // error (which closes the connection) as soon as it is read.
    let deadline = std::time::Instant::now() + 10 * stall;
    while metrics.stalled_consumers.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the stalled consumer was never cut off");
        tokio::time::sleep(stall / 4).await;
    }
    assert_eq!(metrics.stalled_consumers.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(stalled.into_body().collect().await.is_err());
}
