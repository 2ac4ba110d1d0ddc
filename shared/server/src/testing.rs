//! Helpers for the router tests of every service: a request through
//! `oneshot` (no socket), and the check of the one error answer. They
//! panic with the request and the body when something is off, as a test
//! wants.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

/// `GET uri` on `app`: the status and the body as JSON.
///
/// # Panics
/// If the router fails or the body is not JSON.
pub async fn get_json(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::get(uri).body(Body::empty()).expect("a request");
    let res = app.clone().oneshot(req).await.expect("the router answers");
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.expect("the body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

/// Asserts the answer is `{"error": {"code", "message"}}` with this status
/// and code, and a message that contains `words`.
///
/// # Panics
/// When it is not.
#[track_caller]
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, words: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body.as_object().map(serde_json::Map::len), Some(1), "{body}");
    let err = body["error"].as_object().unwrap_or_else(|| panic!("no `error` in {body}"));
    assert_eq!(err.len(), 2, "only code and message: {body}");
    assert_eq!(err["code"], code, "{body}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{message:?} should contain {words:?}");
}
