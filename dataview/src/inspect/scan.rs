//! One page of `GET /history`: a bounded read of the chronicler's log,
//! filtered, each action annotated with what the data view knows of it.
//!
//! A request reads at most [`SCAN_SEQS`] seqs of the log from `from` (the
//! chronicler applies a type filter it can read alike, so only matches
//! travel), stops at `limit` matches, at [`SCAN_BYTES`] of payload or after
//! [`SCAN_TIME`], and answers `next`: the seq to continue from. A sparse
//! filter over a long log is so paged through in bounded steps rather than
//! one unbounded scan. At most [`SCANS`] requests read at once; the others
//! wait [`SCAN_WAIT`], then get 503 with `Retry-After`.
//!
//! The data view reads the log with its own token (the one it follows the
//! chronicler with); the caller's `log` right is checked before.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use nodb_shared::protocol::{CommittedAction, ErrorCode, StreamLine};
use nodb_viewserver::ApiError;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout, timeout_at};

use super::query::{HistoryRequest, Match};
use crate::hub::Hub;
use crate::server::AppState;

/// The most seqs of the log one request reads.
pub const SCAN_SEQS: u64 = 10_000;
/// The most payload bytes (as JSON) one page holds; a page ends after the
/// action that reaches it.
pub const SCAN_BYTES: usize = 4 << 20;
/// How long one request reads before it answers with what it has.
pub const SCAN_TIME: Duration = Duration::from_secs(5);
/// How many requests read the log at once, per process.
pub const SCANS: usize = 4;
/// How long a request waits for its turn.
pub const SCAN_WAIT: Duration = Duration::from_secs(2);

/// The turns to read the log. Process-wide rather than per data view: it
/// bounds the connections this process opens to chroniclers, and one
/// process serves one data view.
static TURNS: Semaphore = Semaphore::const_new(SCANS);

/// One action of a page, as `GET /history` returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Its seq.
    pub seq: u64,
    /// Its id, `<client>:<n>`.
    pub id: String,
    /// The client part of the id.
    pub client: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the chronicler committed it, unix milliseconds.
    pub ts: u64,
    /// Its payload (`null` when this data view cannot read it).
    pub payload: serde_json::Value,
    /// Why a reducer rejected it, when the data view still knows (it keeps
    /// the latest thousand or more rejections); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// The seq of the `@@nodb/redact` that leaves it out of the views now,
    /// if one does; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted_by: Option<u64>,
}

/// The answer of `GET /history`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryPage {
    /// The data view's seq when the request was read.
    pub head: u64,
    /// The matching actions, ascending.
    pub actions: Vec<HistoryEntry>,
    /// The seq to continue from, or `None` when the range is exhausted.
    pub next: Option<u64>,
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Every turn stayed taken for [`SCAN_WAIT`].
    #[error("too many history reads at once; retry in a moment")]
    Busy,
    /// The chronicler could not be read.
    #[error("cannot read the chronicler's log: {0}")]
    Chronicler(#[from] nodb_client::Error),
    /// The chronicler sent nothing from `from` within [`SCAN_TIME`].
    #[error("the chronicler sent nothing from seq {from} within {SCAN_TIME:?}")]
    Timeout {
        /// The seq asked for.
        from: u64,
    },
    /// The log's stream ended before seq `at`, which the data view has
    /// applied (the chronicler stopped).
    #[error("the chronicler's stream ended before seq {at}")]
    Ended {
        /// The first seq not read.
        at: u64,
    },
}

impl From<InspectError> for ApiError {
    fn from(e: InspectError) -> ApiError {
        let error = ApiError::new(ErrorCode::Unavailable, e.to_string());
        if matches!(e, InspectError::Busy) { error.retry_after(1) } else { error }
    }
}

/// What the data view knows of the actions of one page, beside the log.
struct Annotations {
    /// Seq → why a reducer rejected it.
    rejected: HashMap<u64, String>,
    /// The redactions the views reflect now.
    redactions: crate::redaction::Redactions,
}

impl Annotations {
    /// What the hub knows of seqs `after+1..=upto`.
    fn between(hub: &Hub, after: u64, upto: u64) -> Annotations {
        let rejected = hub.rejections_between(after, upto).into_iter().map(|(seq, r)| (seq, r.reason)).collect();
        Annotations { rejected, redactions: hub.redactions() }
    }

    /// Annotates one entry: the one place where an entry gets what the
    /// data view knows of it (its rejection; its redaction, when the data
    /// view knows of those).
    fn annotate(&self, entry: &mut HistoryEntry) {
        entry.rejected = self.rejected.get(&entry.seq).cloned();
        entry.redacted_by = self.redactions.redacted_by(entry.seq);
    }
}

/// The entry of a committed action, before annotation.
fn entry(action: CommittedAction) -> HistoryEntry {
    let client = action.id.rsplit_once(':').map_or(action.id.as_str(), |(c, _)| c).to_string();
    HistoryEntry {
        seq: action.seq,
        id: action.id,
        client,
        kind: action.kind,
        ts: action.ts,
        payload: action.payload,
        rejected: None,
        redacted_by: None,
    }
}

/// Bytes of JSON, counted without keeping them.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len(value: &serde_json::Value) -> usize {
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Reads one page (see the module docs).
///
/// # Errors
/// [`InspectError`]: no turn, or the chronicler could not be read.
pub async fn scan(s: &AppState, r: &HistoryRequest) -> Result<HistoryPage, InspectError> {
    let head = s.hub.current_seq();
    // Up to the data view's seq: what it has applied, so what it knows of.
    let end = r.to.map_or(head, |to| to.min(head));
    if r.from > end {
        return Ok(HistoryPage { head, actions: Vec::new(), next: None });
    }
    let window_end = end.min(r.from.saturating_add(SCAN_SEQS - 1));
    let _turn = match timeout(SCAN_WAIT, TURNS.acquire()).await {
        Ok(Ok(turn)) => turn,
        _ => return Err(InspectError::Busy),
    };
    let deadline = Instant::now() + SCAN_TIME;
    let types: Vec<&str> = r.kind.as_ref().and_then(Match::chronicler_prefix).into_iter().collect();
    let chronicler = s.chroniclers.current().clone();
    let mut stream = timeout_at(deadline, chronicler.stream(r.from, Some(window_end), &types))
        .await
        .map_err(|_| InspectError::Timeout { from: r.from })??;
    let notes = Annotations::between(&s.hub, r.from - 1, window_end);
    let mut actions = Vec::new();
    let mut bytes = 0;
    // Every seq up to here has been considered.
    let mut seen = r.from - 1;
    loop {
        let line = match timeout_at(deadline, stream.next()).await {
            // Out of time: answer what was read, to continue after it.
            Err(_) => break,
            Ok(None) => {
                // The stream ends after `window_end`. Unfiltered, every seq
                // comes, so an earlier end is the chronicler stopping; a
                // filtered stream's end cannot be told apart from that.
                if types.is_empty() && seen < window_end {
                    return Err(InspectError::Ended { at: seen + 1 });
                }
                seen = window_end;
                break;
            }
            Ok(Some(line)) => line?,
        };
        let action = match line {
            StreamLine::Heartbeat { seen: upto, .. } => {
                seen = seen.max(upto.min(window_end));
                continue;
            }
            StreamLine::Action(action) => action,
            // Listed with its type and id, its payload unread.
            StreamLine::Unreadable { action, .. } => action,
        };
        if action.seq > window_end {
            break;
        }
        seen = action.seq;
        let mut e = entry(action);
        let wanted = r.kind.as_ref().is_none_or(|m| m.matches(&e.kind))
            && r.client.as_ref().is_none_or(|m| m.matches(&e.client));
        if !wanted {
            continue;
        }
        notes.annotate(&mut e);
        bytes += json_len(&e.payload);
        actions.push(e);
        if actions.len() >= r.limit || bytes >= SCAN_BYTES {
            break;
        }
    }
    drop(stream);
    if seen < r.from {
        return Err(InspectError::Timeout { from: r.from });
    }
    let next = (seen < end).then_some(seen + 1);
    Ok(HistoryPage { head, actions, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_its_client_and_keeps_its_payload() {
        let action = CommittedAction {
            seq: 7,
            ts: 1_795_000_000_000,
            id: "web.tab:1:12".into(),
            kind: "stock/sold".into(),
            payload: serde_json::json!({"product": "apple"}),
            meta: None,
            client: None,
        };
        let e = entry(action);
        assert_eq!((e.client.as_str(), e.seq, e.rejected.as_deref()), ("web.tab:1", 7, None));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"seq": 7, "id": "web.tab:1:12", "client": "web.tab:1", "type": "stock/sold",
                "ts": 1_795_000_000_000u64, "payload": {"product": "apple"}}),
            "no `rejected` unless known"
        );
        assert_eq!(json_len(&json), serde_json::to_vec(&json).unwrap().len());
    }
}
