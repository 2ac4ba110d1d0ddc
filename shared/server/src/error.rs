//! The one error answer of every nodb service: `{"error": {"code",
//! "message"}}` with the status the code fixes, `expected` for
//! `out_of_order`, `right` for `forbidden`, and `Retry-After` when trying
//! again later may work.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nodb_auth::{Denied, TokenError};
use nodb_shared::protocol::{ErrorBody, ErrorCode};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The machine-readable code; it fixes the HTTP status.
    pub code: ErrorCode,
    /// The sentence for people.
    pub message: String,
    /// For `out_of_order`: the action number expected next.
    pub expected: Option<u64>,
    /// For `forbidden`: the right the token lacks.
    pub right: Option<String>,
    /// Seconds after which trying again may work.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), expected: None, right: None, retry_after: None }
    }

    /// A `bad_request` (400) error.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    /// The same error, telling the client to retry after `seconds`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// The same error, naming the action number expected next.
    #[must_use]
    pub fn expected(mut self, expected: Option<u64>) -> ApiError {
        self.expected = expected;
        self
    }

    /// The body of this error, as sockets send it too.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone()).with_expected(self.expected).with_right(self.right.clone())
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        ApiError { right: Some(d.right), ..ApiError::new(ErrorCode::Forbidden, d.message) }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = %self.code, message = %self.message, "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> serde_json::Value {
        serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_body_and_status_follow_the_code() {
        let r = ApiError::new(ErrorCode::Unavailable, "busy").retry_after(1).into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(body(r).await, serde_json::json!({"error": {"code": "unavailable", "message": "busy"}}));
        assert_eq!(ApiError::bad_request("no").into_response().status(), 400);
        let r = ApiError::new(ErrorCode::OutOfOrder, "skip").expected(Some(4)).into_response();
        assert_eq!(body(r).await["error"]["expected"], 4);
    }

    #[tokio::test]
    async fn auth_errors_are_401_and_403_naming_the_right() {
        let r = ApiError::from(TokenError::Expired).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(body(r).await["error"]["code"], "unauthorized");
        let r = ApiError::from(Denied { right: "read:stock".into(), message: "no".into() }).into_response();
        assert_eq!(r.status(), 403);
        let b = body(r).await;
        assert_eq!(
            (b["error"]["code"].as_str(), b["error"]["right"].as_str()),
            (Some("forbidden"), Some("read:stock"))
        );
    }
}
