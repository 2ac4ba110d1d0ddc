//! Hostile HTTP requests: bodies (huge, deeply nested, malformed, of the
//! wrong shape), absurd ids, seqs and pointers, unknown views and routes,
//! wrong methods. 38 cases.

use super::{At, Services, nested};
use serde_json::json;

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A body case: its name, the body, its content type, and the status and
/// error code it must get.
type BodyCase<'a> = (&'a str, &'a [u8], (&'a str, &'a str), u16, &'a str);

/// A chronicler with small body and payload limits, so that "huge" is cheap.
fn services() -> Services {
    Services::start(&["--max-body", "65536", "--max-payload", "4096"], &[])
}

#[test]
fn hostile_bodies_get_a_clear_error_and_nothing_is_recorded() {
    let mut s = services();
    s.still_serves_and_lost_nothing("start");
    let huge = vec![b' '; 70_000];
    let deep_payload = format!(r#"{{"id":"a:1","type":"t","payload":{}}}"#, nested(1000));
    let deep_body = nested(30_000);
    let long_client = format!(r#"{{"id":"{}:1","type":"t"}}"#, "a".repeat(5000));
    let big_payload = format!(r#"{{"id":"a:1","type":"t","payload":"{}"}}"#, "x".repeat(5000));
    let cases: [BodyCase<'_>; 17] = [
        ("a body over --max-body", &huge, JSON, 413, "payload_too_large"),
        ("a payload over --max-payload", big_payload.as_bytes(), JSON, 413, "payload_too_large"),
        ("a payload nested 1,000 deep", deep_payload.as_bytes(), JSON, 422, "invalid_action"),
        ("a body nested 30,000 deep", deep_body.as_bytes(), JSON, 422, "invalid_action"),
        ("malformed UTF-8", b"{\"id\":\"a:1\",\"type\":\"t\xff\xfe\"}", JSON, 400, "malformed_json"),
        ("truncated JSON", br#"{"id":"a:1","type":"#, JSON, 400, "malformed_json"),
        ("an empty body", b"", JSON, 400, "malformed_json"),
        ("a body that is not JSON", b"id=a:1&type=t", JSON, 400, "malformed_json"),
        (
            "JSON sent as text/plain",
            br#"{"id":"a:1","type":"t"}"#,
            ("Content-Type", "text/plain"),
            415,
            "unsupported_media_type",
        ),
        ("a number instead of an action", b"42", JSON, 422, "invalid_action"),
        ("an unknown field", br#"{"id":"a:1","type":"t","paylod":1}"#, JSON, 422, "invalid_action"),
        ("an empty type", br#"{"id":"a:1","type":""}"#, JSON, 422, "invalid_action"),
        ("a number out of range", br#"{"id":"a:1","type":"t","payload":1e999}"#, JSON, 422, "invalid_action"),
        ("a control character in an id", b"{\"id\":\"a\\u0007:1\",\"type\":\"t\"}", JSON, 422, "invalid_action"),
        ("an id number over u64::MAX", br#"{"id":"a:18446744073709551616","type":"t"}"#, JSON, 422, "invalid_action"),
        ("an id number 0", br#"{"id":"a:0","type":"t"}"#, JSON, 422, "invalid_action"),
        ("a 5,000-character client id", long_client.as_bytes(), JSON, 422, "invalid_action"),
    ];
    for (case, body, content_type, status, code) in cases {
        s.refused(case, At::Chronicler, "POST", "/actions", &[content_type], body, status, code);
    }
    // An id that skips ahead: out_of_order, naming the number expected.
    let r = s.refused(
        "an id that skips ahead",
        At::Chronicler,
        "POST",
        "/actions",
        &[JSON],
        br#"{"id":"a:5","type":"t"}"#,
        409,
        "out_of_order",
    );
    assert_eq!(r.json()["error"]["expected"], 1, "{r:?}");
}

#[test]
fn absurd_seqs_ids_pointers_views_routes_and_methods_get_a_clear_error() {
    let mut s = services();
    s.still_serves_and_lost_nothing("start");
    let long_client = format!("/clients/{}", "a".repeat(5000));
    let deep_pointer = format!("/views/stock/state/{}", vec!["x"; 5000].join("/"));
    let cases: [(&str, At, &str, &str, u16, &str); 19] = [
        ("?from= a negative seq", At::Chronicler, "GET", "/actions?from=-1", 400, "bad_request"),
        ("?from= a word", At::Chronicler, "GET", "/actions?from=abc", 400, "bad_request"),
        ("?from= over u64::MAX", At::Chronicler, "GET", "/actions?from=18446744073709551616", 400, "bad_request"),
        ("?to= a negative seq", At::Chronicler, "GET", "/actions?from=1&to=-3", 400, "bad_request"),
        ("a 5,000-character client", At::Chronicler, "GET", &long_client, 404, "not_found"),
        ("a client with a NUL", At::Chronicler, "GET", "/clients/a%00b", 404, "not_found"),
        ("an unknown route", At::Chronicler, "GET", "/admin/../../etc/passwd", 404, "not_found"),
        ("a wrong method", At::Chronicler, "DELETE", "/actions", 405, "method_not_allowed"),
        ("an unknown view", At::View, "GET", "/views/nope", 404, "unknown_view"),
        ("?at= u64::MAX", At::View, "GET", "/views/stock?at=18446744073709551615", 400, "bad_request"),
        ("?at= a negative seq", At::View, "GET", "/views/stock?at=-1", 400, "bad_request"),
        ("?at= a word", At::View, "GET", "/views/stock?at=abc", 400, "bad_request"),
        ("a pointer with a bad escape", At::View, "GET", "/views/stock/state/~2", 400, "bad_request"),
        ("a pointer 5,000 deep", At::View, "GET", &deep_pointer, 404, "not_found"),
        ("?since= u64::MAX", At::View, "GET", "/views/stock/stream?since=18446744073709551615", 400, "bad_request"),
        ("?since= a negative seq", At::View, "GET", "/views/stock/stream?since=-5", 400, "bad_request"),
        ("?exact= neither true nor false", At::View, "GET", "/views/stock/stream?exact=maybe", 400, "bad_request"),
        ("the stream of an unknown view", At::View, "GET", "/views/nope/stream", 404, "unknown_view"),
        ("a wrong method on a view", At::View, "DELETE", "/views/stock", 405, "method_not_allowed"),
    ];
    for (case, at, method, target, status, code) in cases {
        s.refused(case, at, method, target, &[], b"", status, code);
    }
    // ?from= u64::MAX is a seq, far ahead: the stream starts with a
    // heartbeat giving the head, and waits.
    let head = s.head();
    let url = format!("{}/actions?from=18446744073709551615", s.chronicler.url());
    let lines = nodb_tests::read_ndjson(&url, |_| true).unwrap();
    assert_eq!(lines.len(), 1, "?from= u64::MAX: {lines:?}");
    assert_eq!(lines[0]["heartbeat"]["head"], json!(head), "?from= u64::MAX: {lines:?}");
    s.still_serves_and_lost_nothing("?from= u64::MAX");
}
