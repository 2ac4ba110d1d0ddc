//! Issue 15: a committed action no consumer can parse (its payload nested
//! 127 deep, 128 inside the committed action) reached a type-triggered
//! envoy — the webhook among them — as an action with a `null` payload.
//! It is now reported once, counted, and skipped with its seq: no handler
//! sees it, and the next action is handled. The chronicler is a stand-in
//! in the test's own runtime serving such a log (the real one now refuses
//! those payloads, but older logs hold them).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nodb_envoy::runtime::run_with_stats;
use nodb_envoy::status::EnvoyStats;
use nodb_envoy::{Effects, Envoy, Event, ResultAction, RetryPolicy, Settings, Trigger};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The log: the envoy's own last result at seq 1 (cause 0), an unreadable
/// `stock/sold` at seq 2, a readable one at seq 3.
fn log() -> Vec<String> {
    let deep = format!("{}1{}", "[".repeat(127), "]".repeat(127));
    vec![
        r#"{"seq":1,"ts":1,"id":"envoy-t:1","type":"envoy/started","payload":{},"meta":{"cause":"0","envoy":"t"}}"#
            .into(),
        format!(r#"{{"seq":2,"ts":2,"id":"c:1","type":"stock/sold","payload":{deep}}}"#),
        r#"{"seq":3,"ts":3,"id":"c:2","type":"stock/sold","payload":{"product":"apple"}}"#.into(),
    ]
}

/// What the stand-in chronicler was sent.
type Dispatched = Arc<Mutex<Vec<Value>>>;

async fn actions(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let from: usize = q.get("from").and_then(|f| f.parse().ok()).unwrap_or(1);
    let to: usize = q.get("to").and_then(|f| f.parse().ok()).unwrap_or(usize::MAX);
    let lines: Vec<String> =
        log().into_iter().enumerate().filter(|(i, _)| (from..=to).contains(&(i + 1))).map(|(_, l)| l).collect();
    match ws {
        Ok(ws) => ws.on_upgrade(move |mut socket| async move {
            for line in lines {
                if socket.send(Message::Text(line.into())).await.is_err() {
                    return;
                }
            }
            while let Some(Ok(_)) = socket.recv().await {}
        }),
        Err(_) => lines.join("\n").into_response(),
    }
}

async fn dispatch(State(got): State<Dispatched>, Json(batch): Json<Vec<Value>>) -> Json<Value> {
    let acks: Vec<Value> =
        batch.iter().zip(4u64..).map(|(a, seq)| json!({"id": a["id"], "seq": seq, "duplicate": false})).collect();
    got.lock().unwrap().extend(batch);
    Json(json!({"acks": acks}))
}

async fn chronicler() -> (String, Dispatched) {
    let got = Dispatched::default();
    let app = axum::Router::new()
        .route("/actions", get(actions).post(dispatch))
        .route("/clients/{client}", get(|| async { Json(json!({"last": 1, "seq": 1})) }))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn an_unreadable_action_is_reported_once_and_skipped_with_its_seq() {
    let (url, dispatched) = chronicler().await;
    let seen: Arc<Mutex<Vec<(u64, Value)>>> = Arc::default();
    let handler_seen = seen.clone();
    let envoy = Envoy::new(
        "t",
        Trigger::Types(vec!["stock/".into()]),
        Arc::new(move |event: Event, _effects: Effects| {
            let action = event.action.clone().unwrap_or_default();
            handler_seen.lock().unwrap().push((event.cause, action["payload"].clone()));
            Box::pin(async move { vec![ResultAction::new("t/done", json!({"cause": event.cause}))] })
                as futures_util::future::BoxFuture<'static, Vec<ResultAction>>
        }),
    );
    let settings = Settings {
        chronicler: url.parse().unwrap(),
        more_chroniclers: Vec::new(),
        dataview: None,
        effects: Effects::new(RetryPolicy { base: Duration::from_millis(10), ..Default::default() }),
    };
    let stats = Arc::new(EnvoyStats::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_with_stats(envoy, settings, stats.clone(), shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dispatched.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing recorded; handled {}", stats.handled.load(Relaxed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only seq 3 reached the handler, with its payload; seq 2 never did.
    assert_eq!(*seen.lock().unwrap(), vec![(3, json!({"product": "apple"}))]);
    let recorded = dispatched.lock().unwrap().clone();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["meta"]["cause"], "3");
    assert_eq!(stats.unreadable.load(Relaxed), 1);
    assert!(stats.handled.load(Relaxed) >= 3);
    // The stream stays where it is: seq 2 is not seen again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stats.unreadable.load(Relaxed), 1);
    assert_eq!(stats.resumed.load(Relaxed), 0);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
