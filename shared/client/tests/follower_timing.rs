//! The view follower's timing under a paused clock (no real waiting): the
//! back-off doubles up to its cap, each attempt waits for it, and a server
//! that refuses to resume is asked again only for the resume grace, after
//! which the follower reconnects at once for a snapshot.
//!
//! The "data view" is a listener in the test's own runtime that answers
//! every stream request with an HTTP error, so no attempt can succeed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodb_client::{FollowEvent, FollowSettings, Replica, ServiceUrl, ViewClient, ViewFollower};
use nodb_shared::Tree;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// A server that refuses a stream with `since` (400, the data view's
/// answer for a seq it has not reached) and answers 503 to one without;
/// its base URL and the request lines it got, with the (paused) time of
/// each.
async fn refusing_server() -> (ServiceUrl, Arc<Mutex<Vec<(Instant, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = ServiceUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let log = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            // The handshake request is small: one read takes it whole.
            let mut buf = vec![0; 16 * 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string();
            let (status, body) = if line.contains("since=") {
                (
                    "400 Bad Request",
                    r#"{"error":{"code":"bad_request","message":"`since` 5 is ahead of view \"doc\""}}"#,
                )
            } else {
                ("503 Service Unavailable", r#"{"error":{"code":"unavailable","message":"not now"}}"#)
            };
            log.lock().unwrap().push((Instant::now(), line));
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    (url, got)
}

fn settings() -> FollowSettings {
    FollowSettings {
        min_backoff: 100 * MS,
        max_backoff: 1000 * MS,
        resume_grace: 2000 * MS,
        ..FollowSettings::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_resume_is_retried_with_back_off_for_the_grace_then_a_snapshot_is_asked_for() {
    let (url, got) = refusing_server().await;
    let replica = Replica::at(5, Tree::object());
    let mut follower = ViewFollower::from_replica(ViewClient::new(url, "doc"), settings(), replica);

    let start = Instant::now();
    // Refused at 0, 100, 300, 700 and 1500 ms: each time asked again after
    // the back-off, doubling from 100 ms and capped at 1 s.
    let mut at = Duration::ZERO;
    for expected_wait in [100, 200, 400, 800, 1000] {
        let event = follower.next().await;
        let FollowEvent::ResumeRefused { refusal, waited, retry_in } = event else { panic!("{event:?}") };
        assert_eq!(refusal.status, 400);
        assert_eq!(retry_in, Some(expected_wait * MS), "at {at:?}");
        assert_eq!(waited, at, "the time since the first refusal");
        assert_eq!(start.elapsed(), at, "the attempt waited for the back-off, and no longer");
        at += expected_wait * MS;
    }
    // At 2.5 s the grace (2 s) is over: no more waiting for the server.
    let event = follower.next().await;
    let FollowEvent::ResumeRefused { waited, retry_in, .. } = event else { panic!("{event:?}") };
    assert_eq!((waited, retry_in), (2500 * MS, None));
    assert_eq!(start.elapsed(), 2500 * MS);
    // At once, a connection without `since`, for a snapshot; this server
    // answers 503 to it, and the next try waits for the capped back-off.
    let event = follower.next().await;
    let FollowEvent::Disconnected { retry_in, .. } = event else { panic!("{event:?}") };
    assert_eq!(retry_in, 1000 * MS);
    assert_eq!(start.elapsed(), 2500 * MS, "the snapshot is asked for without waiting");

    let got = got.lock().unwrap();
    let lines: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(lines[..6].iter().all(|l| l.contains("/views/doc/stream?since=5")), "{lines:?}");
    assert!(lines[6].contains("/views/doc/stream") && !lines[6].contains("since"), "{lines:?}");
    let times: Vec<Duration> = got.iter().map(|(t, _)| *t - start).collect();
    assert_eq!(times, [0, 100, 300, 700, 1500, 2500, 2500].map(|ms| ms * MS));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_view_is_retried_with_a_back_off_that_doubles_up_to_the_cap() {
    // A port nobody listens on: every attempt fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let mut follower = ViewFollower::new(ViewClient::new(url, "doc"), settings());
    let start = Instant::now();
    let mut at = Duration::ZERO;
    for expected_wait in [100, 200, 400, 800, 1000, 1000, 1000] {
        let event = follower.next().await;
        let FollowEvent::Disconnected { retry_in, .. } = event else { panic!("{event:?}") };
        assert_eq!(retry_in, expected_wait * MS, "at {at:?}");
        // Never earlier than the back-off said.
        assert!(start.elapsed() >= at, "{:?} < {at:?}", start.elapsed());
        at += expected_wait * MS;
    }
}
