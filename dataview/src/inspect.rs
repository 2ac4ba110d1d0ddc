//! The history page and what it reads: every data view serves `/inspect`,
//! a page in the spirit of Redux DevTools over the durable history, and
//! the two endpoints behind it.
//!
//! - `GET /history?from=N[&to=M][&limit=K][&type=T][&client=C]` (the `log`
//!   right): the committed actions, ascending, filtered, each annotated
//!   with what the data view knows of it (its rejection). One request reads
//!   a bounded window of the chronicler's log ([`SCAN_SEQS`] seqs,
//!   [`SCAN_BYTES`] of payload, [`SCAN_TIME`]) and says where to
//!   continue (`next`), so a page of a million actions costs what it shows.
//! - `GET /views/{name}/patch?seq=N` (the `read` right on the whole view):
//!   the RFC 6902 patch seq N made to the view, from the history in memory
//!   or replayed from a checkpoint as the exact stream does.
//! - `GET /inspect` and `/inspect/*.js|css`: the page (`web/inspect/`,
//!   compiled in), public like the client library; it sends the token from
//!   its URL's `#token=` fragment as `Authorization: Bearer`.
//!
//! Modules: `query` reads and checks the parameters of `/history`, `scan`
//! reads the chronicler and annotates each action (the one place an entry
//! gets what the data view knows of it), `patch` serves one seq's patch,
//! `page` the page's files.

mod page;
mod patch;
mod query;
mod scan;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nodb_server::Caller;
use nodb_viewserver::ApiError;

use crate::server::AppState;

pub use page::PAGE_FILES;
pub use query::{HistoryQuery, HistoryRequest, Match, QueryError};
pub use scan::{HistoryEntry, HistoryPage, InspectError, SCAN_BYTES, SCAN_SEQS, SCAN_TIME, SCAN_WAIT, SCANS};

/// The routes of the history page: `/history`, `/views/{name}/patch`, and
/// the page's files (`/inspect`, `/inspect/*`). Merged into the data view's
/// routes, behind the same access check.
pub fn routes() -> Router<AppState> {
    page::router().route("/history", get(history)).route("/views/{name}/patch", get(patch::get_patch))
}

/// `GET /history`: needs the `log` right, as the chronicler's raw log does.
async fn history(
    State(s): State<AppState>,
    caller: Caller,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.grant.may_read_log()?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let request = q.parse()?;
    let page = scan::scan(&s, &request).await?;
    Ok(axum::Json(page).into_response())
}
