//! The error body every endpoint answers with: `{"error": {"code", "message"}}`,
//! plus `expected` for `out_of_order`.

use serde::{Deserialize, Serialize};

/// What went wrong, as a stable machine-readable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON (HTTP 400).
    MalformedJson,
    /// The request or message is valid JSON of the wrong shape (HTTP 400).
    BadRequest,
    /// An action breaks the wire contract (HTTP 422).
    InvalidAction,
    /// A body or payload is over the size limit (HTTP 413).
    PayloadTooLarge,
    /// The body is not `application/json` (HTTP 415).
    UnsupportedMediaType,
    /// An action's number skips ahead of the next one expected (HTTP 409).
    OutOfOrder,
    /// An action re-uses the id of an accepted action but differs from it
    /// (type, payload or meta): a re-send must be the same action (HTTP 409).
    IdReused,
    /// No token, or one that is malformed, expired or signed by an unknown
    /// key (HTTP 401).
    Unauthorized,
    /// The token lacks the right this request needs (HTTP 403).
    Forbidden,
    /// No such view (HTTP 404).
    UnknownView,
    /// No such resource (HTTP 404).
    NotFound,
    /// A JSON Patch failed to apply (HTTP 409).
    PatchFailed,
    /// A reducer rejected the action (HTTP 409).
    Rejected,
    /// Too many dispatches from one client, token or address: slow down
    /// and retry after `Retry-After` seconds (HTTP 429).
    RateLimited,
    /// The service cannot take writes now, e.g. the disk is full (HTTP 503).
    Unavailable,
    /// The path exists but not with this method, e.g. `DELETE /actions`
    /// (HTTP 405).
    MethodNotAllowed,
    /// A bug or unexpected failure; details are in the server log (HTTP 500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedJson | ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::UnknownView | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::OutOfOrder | ErrorCode::IdReused | ErrorCode::PatchFailed | ErrorCode::Rejected => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidAction => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The code as it appears on the wire, e.g. `payload_too_large`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidAction => "invalid_action",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::OutOfOrder => "out_of_order",
            ErrorCode::IdReused => "id_reused",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UnknownView => "unknown_view",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PatchFailed => "patch_failed",
            ErrorCode::Rejected => "rejected",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP error body: `{"error": {"code": "…", "message": "…"}}`, with
/// `"expected": N` added for `out_of_order` and `id_reused`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// A sentence for people, naming what is wrong.
    pub message: String,
    /// For `out_of_order` and `id_reused`: the action number the chronicler
    /// expects next from that client, so a client need not read it out of
    /// `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// For `forbidden`: the right the token lacks, e.g. `dispatch:stock/`
    /// or `read:orders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<String>,
}

impl ErrorBody {
    /// An error body with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { code, message: message.into(), expected: None, right: None } }
    }

    /// This body with `expected` (the next action number, for `out_of_order`).
    pub fn with_expected(mut self, expected: Option<u64>) -> Self {
        self.error.expected = expected;
        self
    }

    /// This body with `right` (the right a token lacks, for `forbidden`).
    pub fn with_right(mut self, right: Option<String>) -> Self {
        self.error.right = right;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_names() {
        for code in [
            ErrorCode::MalformedJson,
            ErrorCode::BadRequest,
            ErrorCode::InvalidAction,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::OutOfOrder,
            ErrorCode::IdReused,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::UnknownView,
            ErrorCode::NotFound,
            ErrorCode::PatchFailed,
            ErrorCode::Rejected,
            ErrorCode::Unavailable,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(code.as_str()));
        }
        assert_eq!((ErrorCode::IdReused.as_str(), ErrorCode::IdReused.http_status()), ("id_reused", 409));
        assert_eq!(
            (ErrorCode::MethodNotAllowed.as_str(), ErrorCode::MethodNotAllowed.http_status()),
            ("method_not_allowed", 405)
        );
        let body = ErrorBody::new(ErrorCode::PayloadTooLarge, "too big");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"payload_too_large","message":"too big"}}"#
        );
        let body = ErrorBody::new(ErrorCode::OutOfOrder, "expected c:3 next").with_expected(Some(3));
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(text, r#"{"error":{"code":"out_of_order","message":"expected c:3 next","expected":3}}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), body);
    }
}
