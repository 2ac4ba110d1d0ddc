//! The stream's pings under a paused clock (no real waiting): a client that
//! answers pings stays, one that does not is dropped when the next ping is
//! due, one ping period after the unanswered one. The cascade's router is
//! served on a loopback listener in the test's own runtime.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::StreamExt as _;
use nodb_cascade::hub::{CascadeStats, Hub};
use nodb_cascade::server::{Served, ServerState, router};
use nodb_client::{FollowEvent, FollowSettings, ServiceUrl, StreamOptions, ViewClient, ViewFollower};
use nodb_shared::Tree;
use nodb_shared::protocol::{ServerMessage, Sources};
use serde_json::json;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const PING: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);

/// Serves one cascade, `ready` (at seq 1), pinging every [`PING`]; its hub
/// and base URL.
async fn serve() -> (Arc<Hub>, ServiceUrl) {
    serve_pinging(PING).await
}

/// The same, pinging every `ping`.
async fn serve_pinging(ping: Duration) -> (Arc<Hub>, ServiceUrl) {
    let hub = Arc::new(Hub::new("ready", 8, 1));
    hub.push(Tree::from(json!({"n": 1})), Sources::from([("orders".to_string(), 1)]));
    let state = ServerState {
        cascades: Arc::new(vec![Served {
            hub: hub.clone(),
            upstreams: vec![],
            stats: Arc::new(CascadeStats::default()),
        }]),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        ping,
        access: nodb_server::Access::open(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = ServiceUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    (hub, url)
}

fn clients(hub: &Hub) -> u64 {
    hub.metrics.clients.load(Relaxed)
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_answer_a_ping_is_dropped_at_the_next_one() {
    let (hub, url) = serve().await;
    let stream_url = ViewClient::new(url, "ready").stream_url(&StreamOptions::default());
    // A raw socket that is read only at the end, so it answers no ping.
    let mut ws = nodb_client::websocket::connect(&stream_url).await.unwrap();
    let start = Instant::now();
    sleep_until(start + MS).await;
    assert_eq!(clients(&hub), 1);
    // The first ping goes at 10 s; at 20 s it has not been answered.
    sleep_until(start + 2 * PING - MS).await;
    assert_eq!(clients(&hub), 1, "still there just before the second ping is due");
    sleep_until(start + 2 * PING + MS).await;
    assert_eq!(clients(&hub), 0, "dropped when the second ping was due");
    // What it got: the snapshot, one ping, then the end.
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.is_text(), "{first:?}");
    let second = ws.next().await.unwrap().unwrap();
    assert!(second.is_ping(), "{second:?}");
    assert!(!matches!(ws.next().await, Some(Ok(m)) if m.is_text() || m.is_ping()));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays() {
    let (hub, url) = serve().await;
    let mut stream = ViewClient::new(url, "ready").open(&StreamOptions::default()).await.unwrap();
    let start = Instant::now();
    let ServerMessage::Snapshot { seq, .. } = stream.next_message().await.unwrap() else { panic!() };
    assert_eq!(seq, 1);
    // Reading answers the pings; nothing else comes.
    let reader = tokio::spawn(async move { stream.next_message().await });
    sleep_until(start + 10 * PING + MS).await;
    assert_eq!(clients(&hub), 1, "ten ping periods on, still there");
    assert!(!reader.is_finished());
    // And it sees the next update.
    hub.push(Tree::from(json!({"n": 2})), Sources::from([("orders".to_string(), 2)]));
    let next = reader.await.unwrap().unwrap();
    assert!(matches!(next, ServerMessage::Patch { seq: 2, .. }), "{next:?}");
}

/// A follower with a 15 s idle timeout, connected to `url` and holding the
/// snapshot; the time it got it.
async fn follower(url: ServiceUrl) -> (ViewFollower, Instant) {
    let settings = FollowSettings { idle_timeout: Duration::from_secs(15), ..FollowSettings::default() };
    let mut follower = ViewFollower::new(ViewClient::new(url, "ready"), settings);
    let event = follower.next().await;
    assert!(matches!(event, FollowEvent::Connected { since: None, .. }), "{event:?}");
    let event = follower.next().await;
    assert!(matches!(event, FollowEvent::Update(_)), "{event:?}");
    (follower, Instant::now())
}

#[tokio::test(start_paused = true)]
async fn the_follower_counts_pings_as_heard() {
    // Pings every 10 s, under the follower's 15 s idle timeout.
    let (hub, url) = serve().await;
    let (mut follower, start) = follower(url).await;
    let push = tokio::spawn({
        let hub = hub.clone();
        async move {
            sleep_until(start + 10 * PING).await;
            hub.push(Tree::from(json!({"n": 2})), Sources::from([("orders".to_string(), 2)]));
        }
    });
    // Nothing but pings for 100 s, then an update: no idle disconnect.
    let event = follower.next().await;
    assert!(matches!(&event, FollowEvent::Update(u) if u.seq == 2), "{event:?}");
    assert_eq!(start.elapsed(), 10 * PING);
    assert!(follower.is_connected());
    push.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_follower_drops_a_silent_stream_after_its_idle_timeout() {
    // Pings every hour: the stream is silent past the 15 s idle timeout.
    let (_hub, url) = serve_pinging(Duration::from_secs(3600)).await;
    let (mut follower, start) = follower(url).await;
    let event = follower.next().await;
    let FollowEvent::Disconnected { error, retry_in } = event else { panic!("{event:?}") };
    assert!(error.to_string().contains("nothing heard for 15s"), "{error}");
    assert_eq!(start.elapsed(), Duration::from_secs(15), "dropped when the idle timeout ran out, not later");
    assert_eq!(
        retry_in,
        FollowSettings::default().min_backoff,
        "the session brought a message: back-off from the start"
    );
}
