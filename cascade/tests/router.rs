//! The cascade router's error mapping, driven through `oneshot` (no
//! sockets): each failure answers with its status and
//! `{"error": {"code", "message"}}`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use nodb_cascade::hub::{CascadeStats, Hub};
use nodb_cascade::server::{Served, ServerState, router};
use nodb_cascade::upstream::UpstreamStatus;
use nodb_server::testing::{assert_error, get_json as get};
use nodb_shared::Tree;
use nodb_shared::protocol::Sources;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Two cascades: `ready`, at seq 2 with `{"n": 2, "a": {"b": 1}}`, and
/// `early`, which has had no state from its upstream yet.
fn app() -> axum::Router {
    app_with(&nodb_server::Access::open())
}

fn app_with(access: &nodb_server::Access) -> axum::Router {
    let served = |hub: Hub| Served {
        hub: Arc::new(hub),
        upstreams: vec![Arc::new(UpstreamStatus::new("orders", "http://127.0.0.1:9"))],
        stats: Arc::new(CascadeStats::default()),
    };
    let ready = Hub::new("ready", 8, 1);
    let sources = |seq| Sources::from([("orders".to_string(), seq)]);
    ready.push(Tree::from(json!({"n": 1})), sources(10));
    ready.push(Tree::from(json!({"n": 2, "a": {"b": 1}})), sources(11));
    router(ServerState {
        cascades: Arc::new(vec![served(ready), served(Hub::new("early", 8, 1))]),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        ping: Duration::from_secs(15),
        access: access.clone(),
    })
}

#[tokio::test]
async fn a_ready_cascade_answers_with_its_sources() {
    let app = app();
    let (status, body) = get(&app, "/views/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["seq"], 2);
    assert_eq!(body["state"], json!({"n": 2, "a": {"b": 1}}));
    assert_eq!(body["sources"], json!({"orders": 11}));
    let (status, body) = get(&app, "/views/ready?at=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["state"].clone(), body["sources"].clone()), (json!({"n": 1}), json!({"orders": 10})));
    assert_eq!(get(&app, "/views/ready/state/a/b").await, (StatusCode::OK, json!(1)));
}

#[tokio::test]
async fn unknown_view_is_404() {
    let app = app();
    for uri in ["/views/nope", "/views/nope/state/n", "/views/nope/stream?since=1"] {
        assert_error(&get(&app, uri).await, StatusCode::NOT_FOUND, "unknown_view", "\"nope\"");
    }
    assert_error(&get(&app, "/views/nope").await, StatusCode::NOT_FOUND, "unknown_view", "ready, early");
    assert_error(&get(&app, "/nowhere").await, StatusCode::NOT_FOUND, "not_found", "/nowhere");
}

#[tokio::test]
async fn no_state_yet_is_503() {
    let app = app();
    for uri in ["/views/early", "/views/early?at=1", "/views/early/state", "/views/early/state/n"] {
        assert_error(&get(&app, uri).await, StatusCode::SERVICE_UNAVAILABLE, "unavailable", "no state yet");
    }
    // The health says so too.
    let (status, body) = get(&app, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "starting");
    assert_eq!(body["cascades"]["early"]["status"], "starting");
    assert_eq!(body["cascades"]["early"]["upstreams"]["orders"]["status"], "connecting");
    let (status, body) = get(&app, "/ready").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("starting")));
}

#[tokio::test]
async fn bad_queries_are_400() {
    let app = app();
    let bad = [
        ("/views/ready/stream?since=abc", "`since`"),
        ("/views/ready/stream?since=-1", "`since`"),
        ("/views/ready?at=x", "`at`"),
        ("/views/ready?at=3", "beyond the cascade's seq 2"),
        ("/views/ready/state/a~2", "JSON Pointer"),
        // A good query, but not a WebSocket handshake.
        ("/views/ready/stream?since=1", "WebSocket"),
    ];
    for (uri, words) in bad {
        assert_error(&get(&app, uri).await, StatusCode::BAD_REQUEST, "bad_request", words);
    }
    assert_error(&get(&app, "/views/ready/state/zzz").await, StatusCode::NOT_FOUND, "not_found", "\"ready\"");
}

/// With keys, a token reads only the cascades it names (a subtree by GET
/// only), and `/views` lists only those.
#[tokio::test]
async fn tokens_decide_which_cascades_may_be_read() {
    use nodb_auth::{Claims, Key, KeySet};
    let key = Key::generate();
    let app = app_with(&nodb_server::Access::new(Some(KeySet::new(vec![key.clone()]))));
    let token = |read: &str| {
        let claims =
            Claims { sub: "u".into(), read: vec![read.into()], exp: nodb_auth::key::now() + 60, ..Claims::default() };
        key.mint(&claims).unwrap()
    };
    assert_eq!(get(&app, "/views/ready").await.0, StatusCode::UNAUTHORIZED);
    let whole = token("ready");
    assert_eq!(get(&app, &format!("/views/ready?token={whole}")).await.1["state"], json!({"n": 2, "a": {"b": 1}}));
    let listed = get(&app, &format!("/views?token={whole}")).await.1;
    assert_eq!(listed["views"].as_array().unwrap().len(), 1, "{listed}");
    let sub = token("ready/a");
    assert_eq!(get(&app, &format!("/views/ready?token={sub}")).await.1["state"], json!({"b": 1}));
    assert_eq!(get(&app, &format!("/views/ready/state/n?token={sub}")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, &format!("/views/ready/stream?token={sub}")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, &format!("/views/early?token={whole}")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, &format!("/metrics?token={whole}")).await.0, StatusCode::FORBIDDEN);
}
