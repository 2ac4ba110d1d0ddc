//! The view follower on several replicas, against fake data views in the
//! test's own runtime: a refusal moves it on to the next replica in turn,
//! a snapshot is asked for only once the refusals have lasted the resume
//! grace and numbered one per replica, and `GET /ready` steers it to a
//! replica that is ready and not behind.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodb_client::{FollowEvent, FollowSettings, Replica, ServiceUrl, ViewClient, ViewFollower};
use nodb_shared::Tree;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MS: Duration = Duration::from_millis(1);

/// The request lines every fake replica got, tagged with its name.
type Log = Arc<Mutex<Vec<String>>>;

/// A fake data view called `name` that answers `GET /ready` with `ready`
/// (status and body), refuses a stream with `since` (400, as a data view
/// that has not reached it) and answers 503 to one without; its view.
async fn replica(name: &'static str, ready: (&'static str, &'static str), log: Log) -> ViewClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = ServiceUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                // The request is small: one read takes it whole.
                let mut buf = vec![0; 16 * 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string();
                let (status, body) = if line.starts_with("GET /ready") {
                    ready
                } else if line.contains("since=") {
                    ("400 Bad Request", r#"{"error":{"code":"bad_request","message":"`since` 5 is ahead"}}"#)
                } else {
                    ("503 Service Unavailable", r#"{"error":{"code":"unavailable","message":"not now"}}"#)
                };
                log.lock().unwrap().push(format!("{name} {line}"));
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    ViewClient::new(url, "doc")
}

const READY_5: (&str, &str) = ("200 OK", r#"{"status":"ready","seq":5,"lag":0}"#);
const BEHIND: (&str, &str) = ("200 OK", r#"{"status":"ready","seq":3,"lag":0}"#);
const RECOVERING: (&str, &str) = ("503 Service Unavailable", r#"{"status":"recovering","seq":4,"lag":9}"#);

/// The stream requests in `log` (not `/ready`), shortened to the replica's
/// name and whether it asked with `since`.
fn streams(log: &Log) -> Vec<String> {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|l| l.contains("/stream"))
        .map(|l| format!("{} {}", &l[..1], if l.contains("since=5") { "since" } else { "snapshot" }))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_refusal_moves_on_in_turn_and_a_snapshot_waits_for_the_grace_and_one_refusal_per_replica() {
    let log = Log::default();
    let views = [
        replica("a", READY_5, log.clone()).await,
        replica("b", READY_5, log.clone()).await,
        replica("c", READY_5, log.clone()).await,
    ];
    // Round robin, without asking /ready; a grace of 0: the count decides.
    let settings = FollowSettings {
        min_backoff: 100 * MS,
        max_backoff: 1000 * MS,
        resume_grace: Duration::ZERO,
        ready_timeout: None,
        ..FollowSettings::default()
    };
    let first = views[0].clone();
    let mut follower =
        ViewFollower::from_replica(first, settings, Replica::at(5, Tree::object())).with_replicas(views[1..].to_vec());
    assert_eq!(follower.views().len(), 3);
    for (expected, retry) in [(0, Some(100 * MS)), (1, Some(200 * MS)), (2, None)] {
        let event = follower.next().await;
        let FollowEvent::ResumeRefused { retry_in, .. } = event else { panic!("{event:?}") };
        assert_eq!(retry_in, retry, "refusal by replica {expected}");
    }
    // The snapshot is asked for at once, of the next in turn (a again).
    let event = follower.next().await;
    assert!(matches!(event, FollowEvent::Disconnected { .. }), "{event:?}");
    assert_eq!(follower.replica_index(), 0);
    assert_eq!(streams(&log), ["a since", "b since", "c since", "a snapshot"]);
    assert!(!log.lock().unwrap().iter().any(|l| l.contains("/ready")), "ready_timeout None never asks");
}

#[tokio::test]
async fn ready_steers_the_follower_to_a_replica_that_is_ready_and_not_behind() {
    let log = Log::default();
    let views = [
        replica("a", RECOVERING, log.clone()).await,
        replica("b", BEHIND, log.clone()).await,
        replica("c", READY_5, log.clone()).await,
        // Nobody listens on d: no answer, still a candidate after the ready ones.
        ViewClient::new(ServiceUrl::parse(&format!("http://127.0.0.1:{}", closed_port())).unwrap(), "doc"),
    ];
    let settings = FollowSettings {
        min_backoff: MS,
        max_backoff: 10 * MS,
        resume_grace: Duration::from_secs(60),
        ready_timeout: Some(Duration::from_secs(5)),
        ..FollowSettings::default()
    };
    // A replica at 5, so each stream asks with `since=5`.
    let first = views[0].clone();
    let mut follower =
        ViewFollower::from_replica(first, settings, Replica::at(5, Tree::object())).with_replicas(views[1..].to_vec());
    for _ in 0..3 {
        let event = follower.next().await;
        assert!(matches!(event, FollowEvent::ResumeRefused { retry_in: Some(_), .. }), "{event:?}");
    }
    // a first (the first given, no asking); then c each time: b is behind
    // and a recovering, d silent.
    assert_eq!(streams(&log), ["a since", "c since", "c since"]);
    assert_eq!(follower.replica_index(), 2);
    // Each move asked /ready (the others' answers may be cut short once
    // the choice is clear).
    let asked = log.lock().unwrap().iter().filter(|l| l.starts_with("c GET /ready")).count();
    assert_eq!(asked, 2, "c asked at each of the two moves");
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
