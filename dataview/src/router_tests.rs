//! The router's error mapping, driven through `oneshot` (no sockets): each
//! failure answers with its status and `{"error": {"code", "message"}}`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nodb_server::testing::{assert_error, get_json as get};
use nodb_shared::protocol::CommittedAction;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::engine::Engine;
use crate::follow::FollowStatus;
use crate::history::{History, HistorySettings};
use crate::hub::Hub;
use crate::server::{AppState, router};

/// A chronicler URL nobody listens on.
const NOWHERE: &str = "http://127.0.0.1:9";

/// The `json` app's one view, `doc`, after three patches (seq 3):
/// `{"a": {"b": 1}, "k2": 2, "k3": 3}`.
fn app() -> axum::Router {
    app_with(nodb_server::Access::open())
}

fn app_with(access: nodb_server::Access) -> axum::Router {
    app_following(access, Arc::new(FollowStatus::default()))
}

fn app_following(access: nodb_server::Access, follow: Arc<FollowStatus>) -> axum::Router {
    let hub = Hub::new(Engine::new(crate::json_doc::app()), 16);
    let patches = [
        json!([{"op": "add", "path": "/a", "value": {"b": 1}}]),
        json!([{"op": "add", "path": "/k2", "value": 2}]),
        json!([{"op": "add", "path": "/k3", "value": 3}]),
    ];
    for (seq, ops) in (1..).zip(patches) {
        let action = CommittedAction {
            seq,
            ts: seq,
            id: format!("c:{seq}"),
            kind: "json/patch".into(),
            payload: ops,
            meta: None,
            client: None,
        };
        hub.apply(&action).unwrap();
    }
    let history = Arc::new(History::new(hub.app(), None, NOWHERE.parse().unwrap(), HistorySettings::default()));
    router(AppState {
        hub,
        follow,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        ping: Duration::from_secs(15),
        chroniclers: Arc::new(crate::follow::Chroniclers::one(NOWHERE.parse().unwrap())),
        history,
        assets: &[],
        access,
        version: Some("1.2.3".into()),
    })
}

#[tokio::test]
async fn the_view_and_its_subtrees_answer() {
    let app = app();
    let (status, body) = get(&app, "/views/doc").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["seq"].clone(), body["state"].clone()), (json!(3), json!({"a": {"b": 1}, "k2": 2, "k3": 3})));
    let (status, body) = get(&app, "/views/doc?at=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["seq"].clone(), body["state"].clone()), (json!(1), json!({"a": {"b": 1}})));
    assert_eq!(get(&app, "/views/doc/state/a/b").await, (StatusCode::OK, json!(1)));
    assert_eq!(get(&app, "/views/doc/state").await.1["k3"], 3);
    let listing = json!({"app": "json", "version": "1.2.3", "views": [{"name": "doc", "seq": 3}]});
    assert_eq!(get(&app, "/views").await.1, listing);
}

#[tokio::test]
async fn unknown_view_is_404() {
    let app = app();
    for uri in ["/views/nope", "/views/nope?at=1", "/views/nope/state", "/views/nope/state/a", "/views/nope/stream"] {
        assert_error(&get(&app, uri).await, StatusCode::NOT_FOUND, "unknown_view", "doc");
    }
}

#[tokio::test]
async fn bad_at_is_400() {
    let app = app();
    assert_error(&get(&app, "/views/doc?at=abc").await, StatusCode::BAD_REQUEST, "bad_request", "`at`");
    assert_error(&get(&app, "/views/doc?at=-1").await, StatusCode::BAD_REQUEST, "bad_request", "`at`");
    // Beyond the view's seq (3).
    let answer = get(&app, "/views/doc?at=4").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", "beyond the view's seq 3");
}

#[tokio::test]
async fn bad_stream_queries_are_400() {
    let app = app();
    let bad = |uri: &'static str, words: &'static str| {
        let app = app.clone();
        async move { assert_error(&get(&app, uri).await, StatusCode::BAD_REQUEST, "bad_request", words) }
    };
    bad("/views/doc/stream?since=abc", "`since`").await;
    bad("/views/doc/stream?since=4", "ahead").await;
    bad("/views/doc/stream?exact=maybe", "`exact`").await;
    bad("/views/doc/stream?since=3&exact=maybe", "`exact`").await;
    // Good queries, but not a WebSocket handshake.
    bad("/views/doc/stream", "WebSocket").await;
    bad("/views/doc/stream?since=3&exact=true", "WebSocket").await;
}

#[tokio::test]
async fn bad_pointer_is_400_and_missing_subtree_404() {
    let app = app();
    assert_error(&get(&app, "/views/doc/state/a~2").await, StatusCode::BAD_REQUEST, "bad_request", "JSON Pointer");
    assert_error(&get(&app, "/views/doc/state/missing").await, StatusCode::NOT_FOUND, "not_found", "seq 3");
    assert_error(&get(&app, "/views/doc/state/a/c").await, StatusCode::NOT_FOUND, "not_found", "\"doc\"");
}

#[tokio::test]
async fn unknown_route_is_404() {
    let app = app();
    assert_error(&get(&app, "/nowhere").await, StatusCode::NOT_FOUND, "not_found", "/nowhere");
    assert_error(&get(&app, "/views/doc/other").await, StatusCode::NOT_FOUND, "not_found", "/views/doc/other");
}

#[tokio::test]
async fn health_says_recovering_while_the_chronicler_is_unreachable() {
    let app = app();
    let (status, body) = get(&app, "/health").await;
    assert_eq!(status, StatusCode::OK);
    let expected = json!({"status": "recovering", "app": "json", "version": "1.2.3", "seq": 3, "chronicler_head": 3, "lag": 0, "connected": false});
    assert_eq!(body, expected);
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert_eq!(
        get(&app, "/ready").await,
        (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "recovering", "seq": 3, "lag": 0}))
    );
}

/// `/ready` is 200 only when connected and at the chronicler's head; a
/// refused log is 503 in `/ready` and `/health`, with the reason.
#[tokio::test]
async fn ready_once_caught_up_and_never_on_a_refused_log() {
    use std::sync::atomic::Ordering::Relaxed;
    let follow = Arc::new(FollowStatus::default());
    let app = app_following(nodb_server::Access::open(), follow.clone());
    follow.connected.store(true, Relaxed);
    follow.head.store(5, Relaxed);
    assert_eq!(
        get(&app, "/ready").await,
        (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "recovering", "seq": 3, "lag": 2}))
    );
    follow.head.store(3, Relaxed);
    assert_eq!(get(&app, "/ready").await, (StatusCode::OK, json!({"status": "ready", "seq": 3, "lag": 0})));
    *follow.refused.lock().unwrap() = Some("the chronicler's log ends at seq 1".into());
    assert_eq!(get(&app, "/ready").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = get(&app, "/health").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("refused")));
    assert_eq!(body["reason"], "the chronicler's log ends at seq 1");
}

/// With keys, a token reads only the views (or the subtree) it names;
/// `/views` lists only those; metrics need admin; no token is a 401.
#[tokio::test]
async fn tokens_decide_what_may_be_read() {
    use nodb_auth::{Claims, Key, KeySet};
    let key = Key::generate();
    let app = app_with(nodb_server::Access::new(Some(KeySet::new(vec![key.clone()]))));
    let exp = nodb_auth::key::now() + 600;
    let token = |read: &[&str]| {
        let claims =
            Claims { sub: "u".into(), read: read.iter().map(|r| (*r).to_string()).collect(), exp, ..Claims::default() };
        key.mint(&claims).unwrap()
    };
    let get_as = |uri: String| {
        let app = app.clone();
        async move { get(&app, &uri).await }
    };
    let (whole, sub, none) = (token(&["doc"]), token(&["doc/a"]), token(&["other"]));
    assert_error(&get(&app, "/views/doc").await, StatusCode::UNAUTHORIZED, "unauthorized", "token");
    assert_eq!(get_as(format!("/views/doc?token={whole}")).await.1["state"]["k2"], 2);
    // A subtree reader's state is the subtree, now and at a past seq.
    let (status, body) = get_as(format!("/views/doc?token={sub}")).await;
    assert_eq!((status, body["state"].clone()), (StatusCode::OK, json!({"b": 1})));
    assert_eq!(body["hash"], crate::hub::hash(&serde_json::from_value(json!({"b": 1})).unwrap()));
    assert_eq!(get_as(format!("/views/doc?at=1&token={sub}")).await.1["state"], json!({"b": 1}));
    assert_eq!(get_as(format!("/views/doc/state/a/b?token={sub}")).await, (StatusCode::OK, json!(1)));
    let answer = get_as(format!("/views/doc/state/k2?token={sub}")).await;
    assert_eq!((answer.0, answer.1["error"]["right"].as_str()), (StatusCode::FORBIDDEN, Some("read:doc/k2")));
    let answer = get_as(format!("/views/doc/stream?exact=true&token={sub}")).await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN, "an exact stream is the whole view");
    let answer = get_as(format!("/views/doc?token={none}")).await;
    assert_eq!((answer.0, answer.1["error"]["right"].as_str()), (StatusCode::FORBIDDEN, Some("read:doc")));
    assert_eq!(get_as(format!("/views?token={none}")).await.1["views"], json!([]));
    let answer = get_as(format!("/views/doc/stream?client=someone-else&token={whole}")).await;
    assert_eq!((answer.0, answer.1["error"]["right"].as_str()), (StatusCode::FORBIDDEN, Some("client:someone-else")));
    assert_eq!(get_as(format!("/metrics?token={whole}")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/health").await.0, StatusCode::OK);
}
