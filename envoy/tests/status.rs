//! The envoys' status routes through `oneshot` (no server socket): `/health`
//! and `/metrics` answer even when the chronicler and the data view cannot
//! be reached, with their heads `null`. The clock is paused, so the
//! one-second limit on asking for the heads costs no real time.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use nodb_client::{Chronicler, ServiceUrl};
use nodb_envoy::status::{EnvoyStats, StatusState, Watched, router};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// A base URL nobody listens on.
fn nowhere() -> ServiceUrl {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

fn app() -> axum::Router {
    nodb_server::Access::open().layer(routes())
}

fn routes() -> axum::Router {
    let log_envoy = Arc::new(EnvoyStats::default());
    log_envoy.handled.store(7, Relaxed);
    log_envoy.following.store(true, Relaxed);
    log_envoy.recorded.store(3, Relaxed);
    let view_envoy = Arc::new(EnvoyStats::default());
    view_envoy.handled.store(2, Relaxed);
    router(StatusState {
        envoys: vec![
            Watched { name: "webhook".into(), view: None, stats: log_envoy },
            Watched { name: "reorder".into(), view: Some("stock".into()), stats: view_envoy },
        ],
        log: Chronicler::new(nowhere()),
        dataview: Some(nowhere()),
        http: reqwest::Client::new(),
    })
}

async fn get(uri: &str) -> (StatusCode, bytes::Bytes) {
    let res = app().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    (status, axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn health_lists_the_envoys_with_no_heads_when_nothing_answers() {
    let started = tokio::time::Instant::now();
    let (status, bytes) = get("/health").await;
    // At most the one-second limit on the heads (of the paused clock).
    assert!(started.elapsed() <= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    // One envoy is not following: the whole is resuming.
    assert_eq!(body["status"], "resuming", "{body}");
    let envoys = body["envoys"].as_array().unwrap();
    assert_eq!(envoys.len(), 2, "{body}");
    let (log, view) = (&envoys[0], &envoys[1]);
    assert_eq!(
        (&log["name"], &log["view"], &log["following"], &log["handled"], &log["recorded"]),
        (&json!("webhook"), &Value::Null, &json!(true), &json!(7), &json!(3))
    );
    assert_eq!((&log["log_head"], &log["lag"], &log["view_seq"]), (&Value::Null, &Value::Null, &Value::Null), "{body}");
    assert_eq!((&view["name"], &view["view"], &view["handled"]), (&json!("reorder"), &json!("stock"), &json!(2)));
    assert_eq!(
        (&view["log_head"], &view["lag"], &view["view_seq"]),
        (&Value::Null, &Value::Null, &Value::Null),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_answer_without_lag_when_nothing_answers() {
    let (status, bytes) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("nodb_envoy_handled_seq{envoy=\"webhook\"} 7"), "{text}");
    assert!(text.contains("nodb_envoy_handled_seq{envoy=\"reorder\"} 2"), "{text}");
    // No head, no lag series for either envoy.
    assert!(!text.contains("nodb_envoy_lag{"), "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text: {text}");
}

#[tokio::test(start_paused = true)]
async fn unknown_route_is_404_with_the_json_error_body() {
    let (status, body) = get("/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("/nowhere"), "{v}");
}
