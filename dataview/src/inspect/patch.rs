//! `GET /views/{name}/patch?seq=N`: the RFC 6902 patch seq N made to a
//! view, `{"seq": N, "ops": [...]}` — the ops an exact stream sends for
//! that seq. From the history in memory ([`Hub::exact`]) when it still
//! holds seq N − 1, otherwise replayed from the checkpoint before it by a
//! [`crate::history::Replayer`], as the exact stream does.
//!
//! [`Hub::exact`]: crate::hub::Hub::exact

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use nodb_auth::ReadScope;
use nodb_server::Caller;
use nodb_shared::protocol::ErrorCode;
use nodb_viewserver::ApiError;
use serde::Deserialize;

use crate::history::HistoryError;
use crate::hub::Exact;
use crate::server::AppState;

/// How long a replayed patch may take, its turn for a history reader
/// included.
const REPLAY_TIME: Duration = Duration::from_secs(30);

/// The query of `GET /views/{name}/patch`.
#[derive(Debug, Deserialize)]
pub struct PatchQuery {
    seq: Option<String>,
}

/// A patch message of the hub (`{"type":"patch","seq":…,"ops":[…]}`),
/// its ops kept as written.
#[derive(Deserialize)]
struct Message<'a> {
    seq: u64,
    #[serde(borrow)]
    ops: &'a serde_json::value::RawValue,
}

/// `GET /views/{name}/patch?seq=N`: the same `read` right as the view, on
/// the whole view (as an exact stream needs).
pub async fn get_patch(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<PatchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = caller.grant.may_read(&name)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let view = s.hub.view_index(&name).ok_or_else(|| {
        let names = s.hub.view_names().join(", ");
        ApiError::new(ErrorCode::UnknownView, format!("no view {name:?}; this app has: {names}"))
    })?;
    if scope != ReadScope::Whole {
        return Err(nodb_auth::Denied {
            right: format!("read:{name}"),
            message: format!("a patch is of the whole view; this token may read only {scope} of {name:?}"),
        }
        .into());
    }
    let current = s.hub.current_seq();
    let seq = match q.seq.as_deref().map(str::parse::<u64>) {
        Some(Ok(n)) if (1..=current).contains(&n) => n,
        Some(Ok(n)) if n > current => {
            return Err(ApiError::bad_request(format!("`seq` {n} is beyond view {name:?}, which is at seq {current}")));
        }
        _ => return Err(ApiError::bad_request(format!("`seq` must be a seq from 1 to {current}"))),
    };
    let body = match s.hub.exact(view, seq - 1, 1) {
        Exact::Patches(steps) if steps.first().is_some_and(|step| step.seq == seq) => {
            let message: Message<'_> = serde_json::from_slice(&steps[0].message)
                .map_err(|e| ApiError::new(ErrorCode::Internal, format!("a patch message does not parse: {e}")))?;
            format!("{{\"seq\":{},\"ops\":{}}}", message.seq, message.ops.get())
        }
        // Older than the memory (or the memory moved on meanwhile).
        _ => replayed(&s, view, seq).await?,
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Seq `seq`'s patch of view `view`, replayed from the checkpoint before it.
async fn replayed(s: &AppState, view: usize, seq: u64) -> Result<String, ApiError> {
    let unavailable = |e: HistoryError| {
        let busy = matches!(e, HistoryError::Busy);
        let error = ApiError::new(ErrorCode::Unavailable, format!("cannot replay the history to seq {seq}: {e}"));
        if busy { error.retry_after(1) } else { error }
    };
    let replay = async {
        let mut replayer = s.history.replayer(seq - 1).await?;
        replayer.next(&s.history, view, seq).await
    };
    let steps = tokio::time::timeout(REPLAY_TIME, replay)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("replaying the history to seq {seq} took over {REPLAY_TIME:?}"),
            )
            .retry_after(1)
        })?
        .map_err(unavailable)?;
    let step = steps.into_iter().find(|step| step.seq == seq).ok_or_else(|| {
        ApiError::new(ErrorCode::Unavailable, format!("the replay of the history did not reach seq {seq}"))
    })?;
    let ops = serde_json::to_string(&step.ops)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("a patch does not serialise: {e}")))?;
    Ok(format!("{{\"seq\":{seq},\"ops\":{ops}}}"))
}
