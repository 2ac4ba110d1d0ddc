//! `nodb supplier`, the demo supplier, with the real process: orders and
//! their idempotency keys (create, replay, mismatch, missing key), injected
//! failures and delays, and the call log that tests of envoys read.

use nodb_tests::{Service, get, post, send};
use serde_json::{Value, json};

/// An answer to `POST /orders`: status, the `Idempotent-Replayed` header,
/// and the body as JSON.
struct Answer {
    status: u16,
    replayed: Option<String>,
    body: Value,
}

/// `POST {url}/orders` with `body` and, if given, an `Idempotency-Key`.
fn order(s: &Service, key: Option<&str>, body: &Value) -> Answer {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(key.map(|key| ("Idempotency-Key", key)));
    let resp =
        send("POST", &format!("{}/orders", s.url()), &headers, body.to_string().as_bytes()).expect("POST /orders");
    let replayed = resp.header("idempotent-replayed").map(String::from);
    let body = serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.body));
    Answer { status: resp.status, replayed, body }
}

fn control(s: &Service, body: Value) -> Value {
    let r = post(&format!("{}/control", s.url()), "application/json", body.to_string().as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

#[test]
fn orders_are_idempotent_and_every_call_is_logged() {
    let s = Service::start(&["supplier", "--listen", "127.0.0.1:0"]).unwrap();
    let apples = json!({"product": "apple", "quantity": 20});

    // The first call with a key creates the order.
    let first = order(&s, Some("reorder-apple-1"), &apples);
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.replayed, None);
    let expected = json!({"supplier_ref": "SUP-000001", "product": "apple", "quantity": 20,
                          "idempotency_key": "reorder-apple-1"});
    assert_eq!(first.body, expected);

    // A repeat answers the same order and creates nothing.
    let again = order(&s, Some("reorder-apple-1"), &apples);
    assert_eq!((again.status, again.replayed.as_deref()), (200, Some("true")));
    assert_eq!(again.body, expected);

    // The same key with another body is refused.
    let other = order(&s, Some("reorder-apple-1"), &json!({"product": "apple", "quantity": 21}));
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.body["error"]["code"], "idempotency_mismatch");

    // No key: refused, and not in the log (there is no key to log).
    let no_key = order(&s, None, &apples);
    assert_eq!(no_key.status, 400, "{}", no_key.body);
    assert_eq!(no_key.body["error"]["code"], "bad_request");
    assert!(no_key.body["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{}", no_key.body);

    // A bad body with a key: refused with a reason, and logged.
    let bad = order(&s, Some("reorder-pear-0"), &json!({"product": "pear", "quantity": 0}));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body["error"]["message"].as_str().unwrap().contains("quantity"), "{}", bad.body);

    // Two injected failures, then the retry with the same key gets through.
    let settings = control(&s, json!({"fail_next": 2}));
    assert_eq!(settings, json!({"fail_next": 2, "delay_ms": 0, "fail_always": false}));
    let pears = json!({"product": "pear", "quantity": 5});
    for _ in 0..2 {
        let failed = order(&s, Some("reorder-pear-1"), &pears);
        assert_eq!(failed.status, 503, "{}", failed.body);
        assert_eq!(failed.body, json!({"error": {"code": "unavailable", "message": "supplier told to fail"}}));
    }
    let placed = order(&s, Some("reorder-pear-1"), &pears);
    assert_eq!((placed.status, placed.replayed), (201, None));
    assert_eq!(placed.body["supplier_ref"], "SUP-000002");

    // A slow supplier still answers (no timing is asserted).
    control(&s, json!({"delay_ms": 50}));
    let get_control = get(&format!("{}/control", s.url())).unwrap();
    assert_eq!(get_control.json(), json!({"fail_next": 0, "delay_ms": 50, "fail_always": false}));
    let slow = order(&s, Some("reorder-kiwi-1"), &json!({"product": "kiwi", "quantity": 3}));
    assert_eq!(slow.status, 201, "{}", slow.body);
    control(&s, json!({"delay_ms": 0}));

    // The orders, in creation order, and every call that had a key.
    let log = get(&format!("{}/orders", s.url())).unwrap();
    assert_eq!(log.status, 200);
    let log = log.json();
    let refs: Vec<_> = log["orders"].as_array().unwrap().iter().map(|o| o["supplier_ref"].clone()).collect();
    assert_eq!(refs, ["SUP-000001", "SUP-000002", "SUP-000003"]);
    assert_eq!(log["orders"][0], expected);
    let calls: Vec<_> = log["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["n"].as_u64().unwrap(), c["idempotency_key"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [
            (1, "reorder-apple-1", "created"),
            (2, "reorder-apple-1", "replayed"),
            (3, "reorder-apple-1", "rejected"),
            (4, "reorder-pear-0", "rejected"),
            (5, "reorder-pear-1", "failed"),
            (6, "reorder-pear-1", "failed"),
            (7, "reorder-pear-1", "created"),
            (8, "reorder-kiwi-1", "created"),
        ]
    );
    let statuses: Vec<_> = log["calls"].as_array().unwrap().iter().map(|c| c["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 200, 422, 400, 503, 503, 201, 201]);
    assert_eq!(
        log["calls"][2],
        json!({"n": 3, "idempotency_key": "reorder-apple-1", "product": "apple",
                                       "quantity": 21, "outcome": "rejected", "status": 422})
    );

    let health = get(&format!("{}/health", s.url())).unwrap();
    assert_eq!(health.json(), json!({"status": "ok", "orders": 3}));
    let missing = get(&format!("{}/nope", s.url())).unwrap();
    assert_eq!((missing.status, missing.error_code()), (404, "not_found".to_string()));
}

#[test]
fn fail_always_refuses_every_order_until_cleared_and_sigterm_stops_it() {
    let mut s = Service::start(&["supplier", "--listen", "127.0.0.1:0"]).unwrap();
    let body = json!({"product": "fig", "quantity": 1});
    control(&s, json!({"fail_always": true}));
    for _ in 0..3 {
        assert_eq!(order(&s, Some("fig-1"), &body).status, 503);
    }
    control(&s, json!({"fail_always": false}));
    assert_eq!(order(&s, Some("fig-1"), &body).status, 201);
    let bad = post(&format!("{}/control", s.url()), "application/json", br#"{"fail_nxt": 1}"#).unwrap();
    assert_eq!((bad.status, bad.error_code()), (400, "bad_request".to_string()));
    assert_eq!(s.terminate(10_000), Some(0), "{}", s.stderr());
}
