//! The one error type of the chronicler's HTTP API: every failure becomes
//! `{"error": {"code", "message"}}` with the matching status (and, for
//! `out_of_order`, `expected`: the action number expected next).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nodb_shared::protocol::{ActionError, ErrorBody, ErrorCode};

use crate::log::AppendError;

/// An API error: a code (which fixes the HTTP status) and a message that
/// names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The sentence for people.
    pub message: String,
    /// For `out_of_order`: the action number expected next.
    pub expected: Option<u64>,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), expected: None }
    }

    /// A JSON parse error: malformed JSON (with line and column) or valid
    /// JSON of the wrong shape (naming the field).
    pub fn from_json(e: &serde_json::Error, what: &str) -> Self {
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
    pub fn from_action(e: &ActionError, index: Option<usize>, id: &str) -> Self {
        let at = match index {
            Some(i) => format!("action {i} ({id:?})"),
            None => format!("action {id:?}"),
        };
        ApiError::new(e.code(), format!("{at}: field `{}`: {e}", e.field()))
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        let (code, expected) = match e {
            AppendError::OutOfOrder { expected, .. } => (ErrorCode::OutOfOrder, Some(expected)),
            AppendError::TooLarge { .. } => (ErrorCode::PayloadTooLarge, None),
            AppendError::Unavailable(_) | AppendError::ShuttingDown => (ErrorCode::Unavailable, None),
        };
        ApiError { expected, ..ApiError::new(code, e.to_string()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = %self.code, message = %self.message, "request failed");
        }
        (status, axum::Json(ErrorBody::new(self.code, self.message).with_expected(self.expected))).into_response()
    }
}
