//! The webhook's back-off under a paused clock (no real waiting): while the
//! receiver answers 503, each wait before the next attempt is jittered
//! below the doubling back-off and never over `MAX_BACKOFF` (30 s), even
//! when the envoys' retry policy allows longer waits. The receiver is a
//! listener in the test's own runtime.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodb_envoy::webhook::{GiveUp, MAX_BACKOFF, webhook};
use nodb_envoy::{Effects, Event, RetryPolicy};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

/// A receiver answering 503 `failures` times, then 200; its URL and the
/// (paused) time of each request.
async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let times = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            // The request is small: one read takes it whole.
            let mut buf = vec![0; 64 * 1024];
            let _ = s.read(&mut buf).await;
            let n = {
                let mut t = times.lock().unwrap();
                t.push(Instant::now());
                t.len()
            };
            let status = if n <= failures { "503 Service Unavailable" } else { "200 OK" };
            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    (url, got)
}

#[tokio::test(start_paused = true)]
async fn the_webhook_s_back_off_is_capped_at_thirty_seconds() {
    let failures = 8;
    let (url, got) = receiver(failures).await;
    let envoy = webhook("hook", vec!["stock/".into()], &url, GiveUp::Never);
    // Uncapped, the back-off before attempt n would be 20 s * 2^(n-2):
    // 2560 s before the ninth; the policy's own cap is 10 minutes.
    let effects = Effects::new(RetryPolicy {
        attempts: 1,
        base: Duration::from_secs(20),
        max: Duration::from_secs(600),
        timeout: Duration::from_secs(3600),
    });
    let event = Event {
        cause: 7,
        key: None,
        action: Some(json!({"seq": 7, "type": "stock/sold"})),
        data: None,
        idempotency_key: "hook:7".into(),
    };
    let start = Instant::now();
    let results = (envoy.handler)(event, effects.clone()).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].kind, "webhook/delivered");
    assert_eq!(results[0].payload, json!({"seq": 7, "url": url}));
    assert_eq!(effects.retries.load(Relaxed), failures as u64);

    let times = got.lock().unwrap().clone();
    assert_eq!(times.len(), failures + 1);
    assert_eq!(times[0], start, "the first attempt at once");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Before the second attempt: at most the base (20 s); after: at most
    // the cap.
    assert!(gaps[0] <= Duration::from_secs(20), "{gaps:?}");
    assert!(gaps.iter().all(|g| *g <= MAX_BACKOFF), "{gaps:?}");
    assert_eq!(MAX_BACKOFF, Duration::from_secs(30));
    assert!(start.elapsed() <= MAX_BACKOFF * failures as u32, "{:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn give_up_after_records_failed_only_once_that_long_has_passed() {
    // A receiver that never answers 2xx.
    let (url, got) = receiver(usize::MAX).await;
    let limit = Duration::from_secs(120);
    let envoy = webhook("hook", vec!["stock/".into()], &url, GiveUp::After(limit));
    let effects = Effects::new(RetryPolicy {
        attempts: 1,
        base: Duration::from_secs(1),
        max: Duration::from_secs(600),
        timeout: Duration::from_secs(60),
    });
    let event = Event {
        cause: 9,
        key: None,
        action: Some(json!({"seq": 9, "type": "stock/sold"})),
        data: None,
        idempotency_key: "hook:9".into(),
    };
    let start = Instant::now();
    let results = (envoy.handler)(event, effects.clone()).await;
    let took = start.elapsed();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].kind, "webhook/failed", "{:?}", results[0]);
    let reason = results[0].payload["reason"].as_str().unwrap();
    assert!(reason.starts_with("gave up after"), "{reason}");
    // Not before the policy's time, and the last wait was cut to it.
    assert!(took >= limit, "gave up after {took:?}");
    assert!(took < limit + MAX_BACKOFF, "gave up after {took:?}");
    let attempts = got.lock().unwrap().len();
    assert!(attempts >= 2, "{attempts} attempts");
    assert_eq!(effects.retries.load(Relaxed), attempts as u64 - 1);
}
