//! What an envoy asks of the chronicler, through its public HTTP API: where
//! the envoy stopped, single actions and ranges, the stream, and dispatch.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::effects::error_chain;

/// Errors talking to the chronicler.
#[derive(Debug, thiserror::Error)]
pub enum LogClientError {
    /// The request did not get through, or the answer was cut short.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The chronicler answered with an error.
    #[error("the chronicler answered {status} to {url}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The answer.
        body: String,
    },
    /// The service is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// One line of the action stream.
#[derive(Debug)]
pub enum StreamLine {
    /// A committed action.
    Action(Value),
    /// A heartbeat: every seq up to `seen` has been considered.
    Heartbeat {
        /// The log's head.
        head: u64,
        /// The last seq considered.
        seen: u64,
    },
}

/// The chronicler's HTTP API.
#[derive(Clone, Debug)]
pub struct LogClient {
    base: String,
    http: reqwest::Client,
}

impl LogClient {
    /// A client of the chronicler at `base` (`http://host:port`).
    pub fn new(base: &str, http: reqwest::Client) -> LogClient {
        LogClient { base: base.trim_end_matches('/').to_string(), http }
    }

    fn unreachable(&self, url: &str, e: &reqwest::Error) -> LogClientError {
        LogClientError::Unreachable { url: url.to_string(), reason: error_chain(e) }
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, LogClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).send().await.map_err(|e| self.unreachable(&url, &e))?;
        Ok(resp)
    }

    /// The number and seq of `client`'s last action; `None` if it has none.
    ///
    /// # Errors
    /// If the chronicler cannot be asked.
    pub async fn position(&self, client: &str) -> Result<Option<(u64, u64)>, LogClientError> {
        let path = format!("/clients/{client}");
        let resp = self.get(&path).await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => {
                let v: Value = resp.json().await.map_err(|e| self.unreachable(&path, &e))?;
                Ok(Some((v["last"].as_u64().unwrap_or(0), v["seq"].as_u64().unwrap_or(0))))
            }
            status => Err(LogClientError::Status { url: path, status, body: resp.text().await.unwrap_or_default() }),
        }
    }

    /// The committed actions `from..=to` whose type starts with one of
    /// `types` (all if empty).
    ///
    /// # Errors
    /// If the chronicler cannot be asked.
    pub async fn range(&self, from: u64, to: u64, types: &[&str]) -> Result<Vec<Value>, LogClientError> {
        let mut path = format!("/actions?from={from}&to={to}");
        if !types.is_empty() {
            path.push_str(&format!("&types={}", types.join(",")));
        }
        let resp = self.get(&path).await?;
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            return Err(LogClientError::Status { url: path, status, body: resp.text().await.unwrap_or_default() });
        }
        let text = resp.text().await.map_err(|e| self.unreachable(&path, &e))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("seq").is_some())
            .collect())
    }

    /// The seqs of control actions (`@@nodb/…`) in `from..=to`.
    ///
    /// # Errors
    /// If the chronicler cannot be asked.
    pub async fn control_seqs(&self, from: u64, to: u64) -> Result<BTreeSet<u64>, LogClientError> {
        Ok(self.range(from, to, &["@@nodb/"]).await?.iter().filter_map(|a| a["seq"].as_u64()).collect())
    }

    /// The log's head, from the first heartbeat of a stream that starts
    /// past it.
    ///
    /// # Errors
    /// If the chronicler cannot be asked.
    pub async fn head(&self) -> Result<u64, LogClientError> {
        let path = format!("/actions?from={}", 1u64 << 62);
        let resp = self.get(&path).await?;
        let mut body = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| self.unreachable(&path, &e))?);
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let v: Value = serde_json::from_slice(&buf[..nl]).unwrap_or(Value::Null);
                if let Some(head) = v["heartbeat"]["head"].as_u64() {
                    return Ok(head);
                }
                break;
            }
        }
        Err(LogClientError::Unreachable { url: path, reason: "no heartbeat at the start of the stream".into() })
    }

    /// The stream of committed actions from `from` whose type starts with
    /// one of `types`, then the live tail; ends on a broken connection.
    ///
    /// # Errors
    /// If the stream cannot be opened.
    pub async fn stream(
        &self,
        from: u64,
        types: &[String],
    ) -> Result<impl futures_util::Stream<Item = Result<StreamLine, LogClientError>> + use<>, LogClientError> {
        let mut path = format!("/actions?from={from}");
        if !types.is_empty() {
            path.push_str(&format!("&types={}", types.join(",")));
        }
        let resp = self.get(&path).await?;
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            return Err(LogClientError::Status { url: path, status, body: resp.text().await.unwrap_or_default() });
        }
        let url = format!("{}{path}", self.base);
        let bytes = resp.bytes_stream();
        Ok(futures_util::stream::unfold((bytes, Vec::<u8>::new(), url), |(mut bytes, mut buf, url)| async move {
            loop {
                if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let v: Value = match serde_json::from_slice(&line) {
                        Ok(v) => v,
                        Err(e) => {
                            let err =
                                LogClientError::Unreachable { url: url.clone(), reason: format!("bad line: {e}") };
                            return Some((Err(err), (bytes, buf, url)));
                        }
                    };
                    let item = match v["heartbeat"].as_object() {
                        Some(h) => StreamLine::Heartbeat {
                            head: h.get("head").and_then(Value::as_u64).unwrap_or(0),
                            seen: h.get("seen").and_then(Value::as_u64).unwrap_or(0),
                        },
                        None => StreamLine::Action(v),
                    };
                    return Some((Ok(item), (bytes, buf, url)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let err = LogClientError::Unreachable { url: url.clone(), reason: error_chain(&e) };
                        return Some((Err(err), (bytes, buf, url)));
                    }
                    None => return None,
                }
            }
        }))
    }

    /// Appends `actions` as one all-or-nothing batch and waits until they
    /// are durable (re-sends are acknowledged as duplicates). Transport
    /// failures and `503` are retried with back-off until `shutdown`.
    ///
    /// # Errors
    /// A refusal (`409 out_of_order`, `422`), or shutdown.
    pub async fn dispatch(&self, actions: &[Value], shutdown: &CancellationToken) -> Result<(), LogClientError> {
        let url = format!("{}/actions", self.base);
        let mut wait = Duration::from_millis(100);
        loop {
            let sent = self.http.post(&url).json(&json!(actions)).send().await;
            match sent {
                Ok(r) if r.status() == 200 => return Ok(()),
                Ok(r) if r.status() != 503 => {
                    let status = r.status().as_u16();
                    return Err(LogClientError::Status { url, status, body: r.text().await.unwrap_or_default() });
                }
                Ok(_) => tracing::warn!("the chronicler cannot take writes now; retrying"),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot reach the chronicler to record a result; retrying")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return Err(LogClientError::ShuttingDown),
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}
