//! The one error answer of every nodb service: `{"error": {"code",
//! "message"}}` with the status the code fixes, `expected` for
//! `out_of_order`, `right` for `forbidden`, and `Retry-After` when trying
//! again later may work.

use axum::http::{Method, StatusCode, header};
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

/// The answer to a method a path does not take, e.g. `DELETE /actions`:
/// 405 `method_not_allowed`, naming the method; the router adds the
/// `Allow` header. Give it to each router with
/// `Router::method_not_allowed_fallback` once its routes are added: it
/// applies to the routes the router has then, and stays with them when the
/// router is merged or nested into another.
pub async fn method_not_allowed(method: Method) -> ApiError {
    // No path in the message: in a nested router the handler sees the path
    // without its prefix (and axum's `OriginalUri` is not built in here).
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("this endpoint does not take {method}; the Allow header lists the methods it takes"),
    )
}

/// Gives a plain-text error answer from axum itself — an extractor's
/// rejection, such as a path segment that is not UTF-8 (`/views/%FF`) —
/// the JSON error body, for use with `axum::middleware::map_response`.
/// Only statuses that have a code are rewritten (400, 404, 405, 413, 415),
/// keeping the status, the text as the message and the other headers;
/// every other answer passes unchanged.
pub async fn rejections_as_json(response: Response) -> Response {
    let code = match response.status().as_u16() {
        400 => ErrorCode::BadRequest,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        _ => return response,
    };
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("text/plain"));
    if !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => parts.status.canonical_reason().unwrap_or("refused").to_string(),
        t => t.to_string(),
    };
    let json = ApiError::new(code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Response::from_parts(parts, json.into_body())
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
    async fn a_wrong_method_is_405_with_the_error_body_and_allow() {
        use axum::routing::{get, post};
        use tower::ServiceExt as _;
        let inner = axum::Router::new().route("/b", post(|| async { "posted" }));
        let app = axum::Router::new()
            .route("/a", get(|| async { "got" }).post(|| async { "posted" }))
            .method_not_allowed_fallback(method_not_allowed)
            .nest("/n", inner.method_not_allowed_fallback(method_not_allowed));
        for (method, path, allow) in
            [("DELETE", "/a", "GET,HEAD,POST"), ("PUT", "/a", "GET,HEAD,POST"), ("GET", "/n/b", "POST")]
        {
            let req = axum::http::Request::builder().method(method).uri(path).body(axum::body::Body::empty()).unwrap();
            let r = app.clone().oneshot(req).await.unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            assert_eq!(r.headers()[header::ALLOW], allow, "{method} {path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
            let b = body(r).await;
            assert_eq!(b["error"]["code"], "method_not_allowed", "{b}");
            assert!(b["error"]["message"].as_str().unwrap().contains(&format!("does not take {method}")), "{b}");
        }
        let ok = axum::http::Request::builder().uri("/a").body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.oneshot(ok).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn axum_rejections_get_the_error_body() {
        use axum::extract::Path;
        use axum::routing::get;
        use tower::ServiceExt as _;
        let app = axum::Router::new()
            .route("/v/{name}", get(|Path(name): Path<String>| async move { name }))
            .route("/plain", get(|| async { (StatusCode::UNPROCESSABLE_ENTITY, "left alone") }))
            .route("/json", get(|| async { ApiError::bad_request("mine") }))
            .layer(axum::middleware::map_response(rejections_as_json));
        let call = |uri: &str| {
            let req = axum::http::Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
            app.clone().oneshot(req)
        };
        let r = call("/v/%FF").await.unwrap();
        assert_eq!(
            (r.status(), r.headers()[header::CONTENT_TYPE].to_str().unwrap()),
            (StatusCode::BAD_REQUEST, "application/json")
        );
        let b = body(r).await;
        assert_eq!(b["error"]["code"], "bad_request", "{b}");
        assert!(b["error"]["message"].as_str().unwrap().contains("UTF-8"), "{b}");
        let r = call("/v/ok").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(axum::body::to_bytes(r.into_body(), 100).await.unwrap(), "ok");
        assert_eq!(call("/plain").await.unwrap().status(), 422, "statuses without a code pass unchanged");
        assert_eq!(body(call("/json").await.unwrap()).await["error"]["message"], "mine");
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
