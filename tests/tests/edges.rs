//! Validation at the edges, against the real `nodb up` (issue 20): a
//! re-used id with another body is `id_reused`, ids with invisible
//! formatting characters are refused, `@@nodb/set_state` must keep the
//! kind of a view's state, and every error nodb answers — a wrong method
//! and `GET /ws` without a handshake included — carries the JSON error
//! body. What hyper answers before nodb sees the request (an over-long
//! URI) is pinned too, as `docs/protocol.md` describes it.

use std::time::Duration;

use nodb_client::StreamOptions;
use nodb_tests::client::{chronicler, next_json, view};
use nodb_tests::raw::{self, RawResponse};
use nodb_tests::{Service, block_on, dispatch, get, post, wait_for_seq};
use serde_json::{Value, json};

/// `nodb up` in `data`, once its envoy has recorded its start (so no
/// `envoy/started` comes between the seqs a test counts on).
fn start_up(data: &std::path::Path) -> Service {
    let up = Service::start(&["up", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let started = (0..400).any(|_| {
        let found = get(&format!("{}/clients/envoy-reorder", up.url())).is_ok_and(|r| r.status == 200);
        if !found {
            std::thread::sleep(Duration::from_millis(25));
        }
        found
    });
    assert!(started, "the reorder envoy never recorded its start");
    up
}

fn head(s: &Service) -> u64 {
    get(&format!("{}/chronicler/health", s.url())).unwrap().json()["head"].as_u64().unwrap()
}

fn post_json(s: &Service, body: &str) -> nodb_tests::Response {
    post(&format!("{}/actions", s.url()), "application/json", body.as_bytes()).unwrap()
}

/// A raw HTTP/1.1 exchange (`Connection: close`) with the extra `headers`.
fn raw(s: &Service, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    let addr = s.url().trim_start_matches("http://");
    raw::request(addr, method, target, headers, b"").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_error_answer_carries_the_json_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path());
    // A wrong method, on every part `nodb up` serves: the chronicler, its
    // status, the data view, the client files, the cascades, the envoys.
    for (method, path, allow) in [
        ("DELETE", "/actions", "POST"),
        ("PUT", "/actions", "GET"),
        ("POST", "/ws", "GET"),
        ("DELETE", "/clients/web", "GET"),
        ("POST", "/chronicler/health", "GET"),
        ("PUT", "/views/stock", "GET"),
        ("POST", "/views", "GET"),
        ("DELETE", "/views/stock/state/products", "GET"),
        ("POST", "/views/stock/stream", "GET"),
        ("POST", "/health", "GET"),
        ("PUT", "/nodb.js", "GET"),
        ("POST", "/", "GET"),
        ("PUT", "/views/marketing", "GET"),
        ("POST", "/cascades/health", "GET"),
        ("DELETE", "/envoys/metrics", "GET"),
    ] {
        let r = raw(&up, method, path, &[]);
        let body = &r.body;
        assert_eq!(r.status, 405, "{method} {path}: {body}");
        let v: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
        assert_eq!(v["error"]["code"], "method_not_allowed", "{method} {path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(method), "{method} {path}: {v}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{method} {path}");
        let allowed = r.header("allow").unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        assert!(allowed.split(',').any(|m| m == allow), "{method} {path}: Allow: {allowed}");
    }
    // `GET /ws` without a WebSocket handshake.
    let r = get(&format!("{}/ws", up.url())).unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_request"), "{r:?}");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("WebSocket"), "{r:?}");
    // What hyper answers itself, before nodb sees the request: a URI over
    // 65,534 bytes is 414 with no body (docs/protocol.md, Errors).
    let long = format!("/actions?from=1&x={}", "a".repeat(70_000));
    let r = raw(&up, "GET", &long, &[]);
    assert_eq!(r.status, 414, "{}", r.body);
    assert_eq!(r.body, "", "hyper's own answer has no body");
    assert!(matches!(r.header("content-length"), None | Some("0")), "{:?}", r.headers);
    // And more than 100 headers is 431, also with no body.
    let names: Vec<(String, String)> = (0..120).map(|i| (format!("x-h{i}"), i.to_string())).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = raw(&up, "GET", "/chronicler/health", &many);
    assert_eq!((r.status, r.body.as_str()), (431, ""));
    // The service is none the worse.
    assert_eq!(get(&format!("{}/chronicler/health", up.url())).unwrap().status, 200);
}

#[test]
fn a_reused_id_with_another_body_is_refused_over_http_and_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path());
    let url = up.url().to_string();
    let sale = json!({"id": "ana:1", "type": "stock/corrected", "payload": {"product": "apple", "location": "shelf", "quantity": 4}});
    let seq = dispatch(&url, std::slice::from_ref(&sale));
    // The same action again (spaced differently): a duplicate with its seq.
    let again = post_json(&up, &serde_json::to_string_pretty(&sale).unwrap());
    assert_eq!(again.json()["acks"], json!([{"id": "ana:1", "seq": seq, "duplicate": true}]));
    // The same id with another payload, type or meta: 409 id_reused, with
    // the number to use next.
    for other in [
        json!({"id": "ana:1", "type": "stock/corrected", "payload": {"product": "apple", "location": "shelf", "quantity": 5}}),
        json!({"id": "ana:1", "type": "stock/sold", "payload": {"product": "apple", "location": "shelf", "quantity": 4}}),
        json!({"id": "ana:1", "type": "stock/corrected", "payload": {"product": "apple", "location": "shelf", "quantity": 4}, "meta": {"user": "ana"}}),
    ] {
        let r = post_json(&up, &other.to_string());
        assert_eq!((r.status, r.error_code().as_str()), (409, "id_reused"), "{other}: {r:?}");
        assert_eq!(r.json()["error"]["expected"], 2, "{r:?}");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("ana:1"), "{r:?}");
    }
    // A batch holding one is refused whole.
    let batch = json!([{"id": "ana:2", "type": "t"}, {"id": "ana:1", "type": "t"}]);
    assert_eq!(post_json(&up, &batch.to_string()).status, 409);
    // On the socket: an `error` with the id, and the socket stays open.
    let mut ws = block_on(chronicler(up.url()).dispatcher()).unwrap();
    let mut send = |a: Value| {
        block_on(ws.send(&serde_json::from_value(a).unwrap())).unwrap();
        serde_json::to_value(block_on(ws.next_reply()).unwrap()).unwrap()
    };
    let m = send(json!({"id": "ana:1", "type": "stock/corrected", "payload": 1}));
    assert_eq!(
        (&m["type"], &m["id"], &m["code"], &m["expected"]),
        (&json!("error"), &json!("ana:1"), &json!("id_reused"), &json!(2)),
        "{m}"
    );
    assert_eq!(send(sale.clone()), json!({"type": "ack", "id": "ana:1", "seq": seq, "duplicate": true}));
    let m = send(json!({"id": "ana:2", "type": "t"}));
    assert_eq!((&m["type"], &m["id"], &m["duplicate"]), (&json!("ack"), &json!("ana:2"), &json!(false)), "{m}");
}

#[test]
fn ids_with_invisible_formatting_characters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path());
    let before = head(&up);
    for client in ["ana\u{202E}", "\u{2066}ana", "an\u{200B}a", "\u{FEFF}ana", "ana\u{200F}", "a\u{061C}na"] {
        let action = json!({"id": format!("{client}:1"), "type": "t"});
        let r = post_json(&up, &action.to_string());
        assert_eq!((r.status, r.error_code().as_str()), (422, "invalid_action"), "{client:?}: {r:?}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("`id`") && message.contains("invisible"), "{client:?}: {message}");
    }
    assert_eq!(head(&up), before, "nothing recorded");
}

#[test]
fn set_state_is_rejected_unless_the_view_exists_and_the_state_keeps_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path());
    let url = up.url().to_string();
    let first = dispatch(
        &url,
        &[
            json!({"id": "ops:1", "type": "stock/corrected", "payload": {"product": "apple", "location": "shelf", "quantity": 4}}),
        ],
    );
    wait_for_seq(&up, first);
    let before = get(&format!("{url}/views/stock")).unwrap().json();
    let options = StreamOptions { since: Some(first), client: Some("ops".into()), ..StreamOptions::default() };
    let mut ws = block_on(view(up.url(), "stock").open(&options)).unwrap();
    let set = |n: u64, view: &str, state: Value| json!({"id": format!("ops:{n}"), "type": "@@nodb/set_state", "payload": {"view": view, "state": state}});
    let refused = [
        (set(2, "stock", json!([])), "view \"stock\" must be an object, like its initial state, not an array"),
        (set(3, "stock", json!(null)), "view \"stock\" must be an object, like its initial state, not null"),
        (set(4, "nope", json!({})), "no view \"nope\""),
    ];
    let mut last = first;
    for (action, reason) in &refused {
        let seq = dispatch(&url, std::slice::from_ref(action));
        last = seq;
        let m = loop {
            let m = next_json(&mut ws);
            if m["type"] == "rejected" {
                break m;
            }
            assert!(m["type"] == "patch" && m["ops"] == json!([]), "nothing changes before the rejection: {m}");
        };
        assert_eq!((&m["id"], &m["seq"]), (&action["id"], &json!(seq)), "{m}");
        assert!(m["reason"].as_str().unwrap().contains(reason), "{m}");
    }
    wait_for_seq(&up, last);
    let after = get(&format!("{url}/views/stock")).unwrap().json();
    assert_eq!(after["hash"], before["hash"], "the state is unchanged: {after}");
    // An object is taken.
    let seq = dispatch(&url, &[set(5, "stock", json!({"products": {}, "total": 0}))]);
    wait_for_seq(&up, seq);
    assert_eq!(get(&format!("{url}/views/stock")).unwrap().json()["state"], json!({"products": {}, "total": 0}));
}
