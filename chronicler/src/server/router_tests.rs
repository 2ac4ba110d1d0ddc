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
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let (log, _) = FileLog::open(&LogConfig::new(dir.path()), metrics.clone()).unwrap();
    let config = ServerConfig { limits: Limits { max_payload_bytes: 512 }, max_body_bytes: 1024, ..Default::default() };
    config.validate().unwrap();
    let state = AppState {
        log,
        metrics,
        config: Arc::new(config),
        shutdown: tokio_util::sync::CancellationToken::new(),
        tasks: tokio_util::task::TaskTracker::new(),
        access,
    };
    (router(state), dir)
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
