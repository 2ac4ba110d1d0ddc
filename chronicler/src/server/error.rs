//! How the chronicler's failures become the one error answer of every nodb
//! service ([`ApiError`]): JSON that does not parse, actions that break
//! the contract, redactions their checks refuse, and the log's refusals
//! (with `expected` for `out_of_order`).

pub use nodb_server::ApiError;
use nodb_shared::protocol::{ActionError, ErrorCode, RedactError};

use crate::log::AppendError;

/// A JSON parse error: malformed JSON (with line and column) or valid JSON
/// of the wrong shape (naming the field).
pub fn json_error(e: &serde_json::Error, what: &str) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::new(ErrorCode::InvalidAction, format!("invalid {what}: {e}")),
        Category::Eof => ApiError::new(
            ErrorCode::MalformedJson,
            format!("malformed JSON: the input ends early (line {}, column {})", e.line(), e.column()),
        ),
        _ => ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {e}")),
    }
}

/// An action that breaks the contract; `index` is its place in a batch.
pub fn action_error(e: &ActionError, index: Option<usize>, id: &str) -> ApiError {
    let at = match index {
        Some(i) => format!("action {i} ({id:?})"),
        None => format!("action {id:?}"),
    };
    ApiError::new(e.code(), format!("{at}: field `{}`: {e}", e.field()))
}

/// A `@@nodb/redact` action ingest refuses: 400 `bad_request` with the
/// check's sentence, after `action i ("id"): ` in a batch of several (so
/// the sender knows which).
pub fn redact_error(e: &RedactError, index: Option<usize>, id: &str) -> ApiError {
    match index {
        Some(i) => ApiError::bad_request(format!("action {i} ({id:?}): {e}")),
        None => ApiError::bad_request(e.to_string()),
    }
}

/// The log's refusal of an append.
pub fn append_error(e: AppendError) -> ApiError {
    let (code, expected) = match e {
        AppendError::OutOfOrder { expected, .. } => (ErrorCode::OutOfOrder, Some(expected)),
        AppendError::IdReused { expected, .. } => (ErrorCode::IdReused, Some(expected)),
        AppendError::TooLarge { .. } => (ErrorCode::PayloadTooLarge, None),
        AppendError::Unavailable(_) | AppendError::ShuttingDown => (ErrorCode::Unavailable, None),
    };
    ApiError::new(code, e.to_string()).expected(expected)
}
