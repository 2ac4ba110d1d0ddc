//! Outside HTTP calls done properly: a timeout per attempt, retries with
//! exponential back-off and full jitter, and the `Idempotency-Key` header on
//! every attempt.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde_json::Value;

/// How calls are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. Default 5.
    pub attempts: u32,
    /// The back-off before the second attempt; it doubles each time, and
    /// each wait is drawn uniformly below it (full jitter). Default 200 ms.
    pub base: Duration,
    /// The longest back-off. Default 5 s.
    pub max: Duration,
    /// The timeout of one attempt. Default 10 s.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (2, 3, …): uniform in
    /// `[0, min(max, base * 2^(attempt-2))]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(2).min(16)).min(self.max);
        exp.mul_f64(random_unit())
    }
}

/// A number in [0, 1), from the standard library's per-process random keys.
fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Why an effect failed after its last attempt.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// The other side refused the request (a 4xx other than 408 and 429):
    /// retrying would not help.
    #[error("{url} refused the request with status {status}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// One attempt failed in a way a later attempt may not (connection,
    /// timeout, 5xx, 408, 429): the other side is unavailable for now.
    #[error("{url} is unavailable: {reason}")]
    Unavailable {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Every attempt failed (connection, timeout, 5xx, 408, 429).
    #[error("{url} failed {attempts} times; last: {last}")]
    GaveUp {
        /// The URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

impl EffectError {
    /// Whether the other side refused the request: retrying the same
    /// request would not help.
    pub fn is_refusal(&self) -> bool {
        matches!(self, EffectError::Refused { .. })
    }
}

/// What a handler uses to reach the outside world.
#[derive(Clone, Debug)]
pub struct Effects {
    /// The HTTP client (connection pooling).
    pub http: reqwest::Client,
    /// How calls are retried.
    pub retry: RetryPolicy,
    /// Counts the attempts after a call's first (an envoy's `retries`).
    pub retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Effects {
    /// Effects with a new client and `retry`.
    pub fn new(retry: RetryPolicy) -> Effects {
        Effects { http: reqwest::Client::new(), retry, retries: Default::default() }
    }

    /// The same effects, counting their retries in `retries`.
    #[must_use]
    pub fn counting_retries(mut self, retries: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Effects {
        self.retries = retries;
        self
    }

    /// Notes one retry of a call.
    pub fn note_retry(&self) {
        self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// POSTs `body` as JSON to `url` with `Idempotency-Key: key`, retrying
    /// as the policy says; the answer's JSON (or `null` for an empty body).
    ///
    /// # Errors
    /// [`EffectError::Refused`] after a refusal, [`EffectError::GaveUp`]
    /// after the last failed attempt.
    pub async fn post_json(&self, url: &str, key: &str, body: &Value) -> Result<Value, EffectError> {
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(self.retry.backoff(attempt)).await;
                self.note_retry();
            }
            match self.post_json_once(url, key, body).await {
                Err(EffectError::Unavailable { reason, .. }) => {
                    tracing::debug!(url, attempt, error = %reason, "an effect's call failed; retrying");
                    last = reason;
                }
                done => return done,
            }
        }
        Err(EffectError::GaveUp { url: url.to_string(), attempts: self.retry.attempts.max(1), last })
    }

    /// One attempt at what [`Effects::post_json`] does, with the policy's
    /// timeout and no retry.
    ///
    /// # Errors
    /// [`EffectError::Refused`] after a refusal (a 4xx other than 408 and
    /// 429), [`EffectError::Unavailable`] after any other failure.
    pub async fn post_json_once(&self, url: &str, key: &str, body: &Value) -> Result<Value, EffectError> {
        let sent =
            self.http.post(url).header("Idempotency-Key", key).timeout(self.retry.timeout).json(body).send().await;
        let resp = sent.map_err(|e| EffectError::Unavailable { url: url.to_string(), reason: error_chain(&e) })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            });
        }
        let short: String = text.chars().take(300).collect();
        if (400..500).contains(&status) && status != 408 && status != 429 {
            return Err(EffectError::Refused { url: url.to_string(), status, body: short });
        }
        Err(EffectError::Unavailable { url: url.to_string(), reason: format!("status {status}: {short}") })
    }
}

/// An error with its sources, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_stays_under_the_cap_and_is_jittered() {
        let p =
            RetryPolicy { base: Duration::from_millis(100), max: Duration::from_millis(1000), ..Default::default() };
        for attempt in 2..12 {
            let cap = Duration::from_millis(100 * (1 << (attempt - 2))).min(Duration::from_millis(1000));
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= cap);
            }
        }
        let draws: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(5)).collect();
        assert!(draws.len() > 10, "jittered: {draws:?}");
    }
}
