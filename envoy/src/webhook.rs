//! The generic webhook envoy: delivers committed actions whose type matches
//! to a URL, in order, at least once, with `Idempotency-Key:
//! <envoy>:<seq>`; records `webhook/delivered {seq, url}` after each
//! delivery (so it resumes from where it stopped, with no state of its
//! own).
//!
//! While the receiver is down (connection refused, timeout, 5xx, 408,
//! 429) it keeps retrying the same action, one attempt at a time, with
//! exponential back-off and full jitter capped at [`MAX_BACKOFF`], so the
//! feed waits in order rather than skipping ahead; the outage is logged
//! once, summarised at most every 30 s, and its end is logged. A
//! [`GiveUp`] policy may limit how long one action is retried: then, and
//! at once after a refusal (a 4xx other than 408 and 429), it records
//! `webhook/failed {seq, type, url, reason}` and moves on.

mod outage;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;

use self::outage::{Outages, Report, secs};
use crate::definition::{Envoy, Event, ResultAction, Trigger};
use crate::effects::{EffectError, Effects, RetryPolicy};

/// The longest wait between two attempts at one delivery.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long the webhook retries one action while its receiver is down
/// before recording `webhook/failed` and moving on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GiveUp {
    /// Retry until the receiver answers: the feed waits.
    #[default]
    Never,
    /// Give up on an action this long after its first failed attempt.
    After(Duration),
}

/// A give-up policy that is neither `never` nor a positive number of
/// seconds.
#[derive(Debug, thiserror::Error)]
#[error("expected a positive number of seconds (such as 300 or 2.5) or `never`, not {0:?}")]
pub struct BadGiveUp(String);

impl std::str::FromStr for GiveUp {
    type Err = BadGiveUp;

    /// `never`, or a positive number of seconds.
    fn from_str(s: &str) -> Result<GiveUp, BadGiveUp> {
        let s = s.trim();
        if s == "never" {
            return Ok(GiveUp::Never);
        }
        match s.parse::<f64>().ok().filter(|n| *n > 0.0).and_then(|n| Duration::try_from_secs_f64(n).ok()) {
            Some(d) => Ok(GiveUp::After(d)),
            None => Err(BadGiveUp(s.to_string())),
        }
    }
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUp::Never => f.write_str("never"),
            GiveUp::After(d) => write!(f, "{}", d.as_secs_f64()),
        }
    }
}

/// A webhook envoy named `name` (client `envoy-<name>`) delivering actions
/// whose type starts with one of `types` to `url`, retrying each while the
/// receiver is down as `give_up` says.
pub fn webhook(name: &str, types: Vec<String>, url: &str, give_up: GiveUp) -> Envoy {
    let hook = Arc::new(Hook { name: name.to_string(), url: url.to_string(), give_up, outages: Outages::default() });
    let handler = Arc::new(move |event: Event, effects: Effects| {
        let hook = hook.clone();
        Box::pin(async move { vec![hook.deliver(&effects, &event).await] })
            as futures_util::future::BoxFuture<'static, Vec<ResultAction>>
    });
    Envoy::new(name, Trigger::Types(types), handler)
}

/// One webhook envoy's settings and its receiver's outages.
#[derive(Debug)]
struct Hook {
    name: String,
    url: String,
    give_up: GiveUp,
    outages: Outages,
}

impl Hook {
    /// Delivers the event's action, retrying while the receiver is down;
    /// the result to record.
    async fn deliver(&self, effects: &Effects, event: &Event) -> ResultAction {
        let (name, url, seq) = (&self.name, &self.url, event.cause);
        let action = event.action.clone().unwrap_or_default();
        let failed = |reason: String| {
            let kind = action["type"].as_str().unwrap_or("");
            ResultAction::new("webhook/failed", json!({"seq": seq, "type": kind, "url": url, "reason": reason}))
        };
        let backoff = RetryPolicy { max: MAX_BACKOFF, ..effects.retry.clone() };
        let first = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            attempts = attempts.saturating_add(1);
            let reason = match effects.post_json_once(url, &event.idempotency_key, &action).await {
                Ok(_) => {
                    self.answered();
                    return ResultAction::new("webhook/delivered", json!({"seq": seq, "url": url}));
                }
                Err(e) if e.is_refusal() => {
                    self.answered();
                    tracing::warn!(envoy = %name, url = %url, "the receiver refused seq {seq}: {e}; recorded webhook/failed");
                    return failed(e.to_string());
                }
                Err(EffectError::Unavailable { reason, .. }) => reason,
                Err(e) => e.to_string(),
            };
            self.attempt_failed(seq, &reason);
            let tried = first.elapsed();
            let mut wait = backoff.backoff(attempts.saturating_add(1));
            if let GiveUp::After(limit) = self.give_up {
                if tried >= limit {
                    tracing::warn!(envoy = %name, url = %url, "gave up on seq {seq} after {} and {attempts} attempts; \
                        recorded webhook/failed; last: {reason}", secs(tried));
                    return failed(format!("gave up after {} and {attempts} attempts; last: {reason}", secs(tried)));
                }
                wait = wait.min(limit - tried);
            }
            tokio::time::sleep(wait).await;
            effects.note_retry();
        }
    }

    /// Logs a failed attempt, once per outage and in a summary at most
    /// every 30 s.
    fn attempt_failed(&self, seq: u64, reason: &str) {
        let (name, url) = (&self.name, &self.url);
        match self.outages.failed(Instant::now()) {
            Report::Down => {
                let give_up = match self.give_up {
                    GiveUp::Never => "never giving up".to_string(),
                    GiveUp::After(limit) => format!("giving up after {}", secs(limit)),
                };
                tracing::warn!(envoy = %name, url = %url, "receiver unreachable: {reason}; retrying the delivery of \
                    seq {seq} (back-off up to {}, {give_up})", secs(MAX_BACKOFF));
            }
            Report::StillDown(down, failures) => tracing::warn!(envoy = %name, url = %url, "receiver still \
                unreachable after {}, {failures} failed attempts; last: {reason}; retrying the delivery of seq {seq}",
                secs(down)),
            Report::Quiet => {
                tracing::debug!(envoy = %name, url = %url, seq, error = %reason, "a delivery failed; retrying");
            }
        }
    }

    /// Logs the end of an outage, if there was one.
    fn answered(&self) {
        if let Some((down, failures)) = self.outages.answered(Instant::now()) {
            tracing::info!(envoy = %self.name, url = %self.url, "receiver back after {}, {failures} failed attempts",
                secs(down));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn give_up_is_never_or_positive_seconds() {
        assert_eq!("never".parse::<GiveUp>().ok(), Some(GiveUp::Never));
        assert_eq!("2".parse::<GiveUp>().ok(), Some(GiveUp::After(Duration::from_secs(2))));
        assert_eq!("0.5".parse::<GiveUp>().ok(), Some(GiveUp::After(Duration::from_millis(500))));
        for bad in ["0", "-1", "", "soon", "NaN", "inf", "1e300"] {
            let e = bad.parse::<GiveUp>().unwrap_err().to_string();
            assert!(e.contains("positive number of seconds") && e.contains("never"), "{bad}: {e}");
        }
        assert_eq!(GiveUp::After(Duration::from_secs(2)).to_string(), "2");
        assert_eq!(GiveUp::Never.to_string(), "never");
    }

    /// A receiver answering each request with the next status of
    /// `statuses` (the last one repeated); its URL and the requests it got.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<std::sync::Mutex<u32>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(std::sync::Mutex::new(0u32));
        let count = got.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                // The request is small: one read takes it whole.
                let mut buf = vec![0; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let n = {
                    let mut c = count.lock().unwrap();
                    *c += 1;
                    *c as usize
                };
                let status = statuses[(n - 1).min(statuses.len() - 1)];
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (url, got)
    }

    fn event() -> Event {
        Event {
            cause: 7,
            key: None,
            action: Some(json!({"seq": 7, "type": "stock/sold"})),
            data: None,
            idempotency_key: "webhook:7".into(),
        }
    }

    fn hook(url: &str, give_up: GiveUp) -> Hook {
        Hook { name: "webhook".into(), url: url.into(), give_up, outages: Outages::default() }
    }

    fn effects() -> Effects {
        Effects::new(RetryPolicy {
            base: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn retries_past_the_attempts_until_the_receiver_answers() {
        let (url, got) = receiver(vec![503, 503, 429, 408, 500, 503, 200]).await;
        let effects = Effects { retry: RetryPolicy { attempts: 2, ..effects().retry }, ..effects() };
        let r = hook(&url, GiveUp::Never).deliver(&effects, &event()).await;
        assert_eq!(r.kind, "webhook/delivered");
        assert_eq!(r.payload["seq"], 7);
        assert_eq!(*got.lock().unwrap(), 7);
        // Six retries after the first attempt, counted for the envoy's status.
        assert_eq!(effects.retries.load(std::sync::atomic::Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn a_refusal_fails_at_once() {
        let (url, got) = receiver(vec![400]).await;
        let r = hook(&url, GiveUp::Never).deliver(&effects(), &event()).await;
        assert_eq!(r.kind, "webhook/failed");
        assert_eq!(r.payload["type"], "stock/sold");
        assert!(r.payload["reason"].as_str().unwrap().contains("refused"), "{r:?}");
        assert_eq!(*got.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn gives_up_after_the_policy_s_time_with_the_last_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/hook");
        let started = Instant::now();
        let r = hook(&url, GiveUp::After(Duration::from_millis(300))).deliver(&effects(), &event()).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.kind, "webhook/failed");
        let reason = r.payload["reason"].as_str().unwrap();
        assert!(reason.starts_with("gave up after") && reason.contains("onnect"), "{reason}");
        assert_eq!(r.payload["url"], url);
    }
}
