//! The chronicler's API with the real process: every bad input with its
//! status and code, socket errors that keep the socket open, pipelined
//! dispatch, the stream (NDJSON and WebSocket, filters, heartbeats), and a
//! clean shutdown on SIGTERM.

use nodb_tests::raw::{self, Message};
use nodb_tests::{Service, get, post, read_actions, read_ndjson};
use serde_json::{Value, json};

fn start(data: &std::path::Path, extra: &[&str]) -> Service {
    let mut args = vec!["chronicler", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Service::start(&args).unwrap()
}

fn post_json(s: &Service, body: &str) -> nodb_tests::Response {
    post(&format!("{}/actions", s.url()), "application/json", body.as_bytes()).unwrap()
}

#[test]
fn every_bad_input_gets_its_status_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &["--max-payload", "1000", "--max-body", "5000"]);
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("malformed JSON", r#"{"id": "a:1", "type": "t",,}"#.into(), 400, "malformed_json", "line 1 column 27"),
        ("truncated JSON", r#"{"id": "a:1""#.into(), 400, "malformed_json", "line 1"),
        ("missing type", r#"{"id": "a:1"}"#.into(), 422, "invalid_action", "`type`"),
        ("empty type", r#"{"id": "a:1", "type": ""}"#.into(), 422, "invalid_action", "`type`"),
        ("bad id", r#"{"id": "a1", "type": "t"}"#.into(), 422, "invalid_action", "`id`"),
        ("zero n", r#"{"id": "a:0", "type": "t"}"#.into(), 422, "invalid_action", "`id`"),
        ("unknown field", r#"{"id": "a:1", "type": "t", "paylod": 1}"#.into(), 422, "invalid_action", "paylod"),
        ("meta not strings", r#"{"id": "a:1", "type": "t", "meta": {"k": 1}}"#.into(), 422, "invalid_action", "line 1"),
        ("not an action", "42".into(), 422, "invalid_action", "invalid action"),
        ("empty array", "[]".into(), 422, "invalid_action", "no actions"),
        (
            "second of a batch bad",
            r#"[{"id": "a:1", "type": "t"}, {"id": "a:2"}]"#.into(),
            422,
            "invalid_action",
            "`type`",
        ),
        (
            "payload over the limit",
            format!(r#"{{"id": "a:1", "type": "t", "payload": "{}"}}"#, "x".repeat(2000)),
            413,
            "payload_too_large",
            "limit of 1000",
        ),
        (
            "body over the limit",
            format!(r#"{{"id": "a:1", "type": "t", "payload": "{}"}}"#, "x".repeat(6000)),
            413,
            "payload_too_large",
            "limit of 5000",
        ),
        ("out of order", r#"{"id": "a:2", "type": "t"}"#.into(), 409, "out_of_order", "number 1"),
        (
            "number out of range",
            r#"{"id": "a:1", "type": "t", "payload": [1e400]}"#.into(),
            422,
            "invalid_action",
            "`payload`",
        ),
    ];
    for (what, body, status, code, needle) in &cases {
        let r = post_json(&s, body);
        assert_eq!(r.status, *status, "{what}: {r:?}");
        assert_eq!(r.error_code(), *code, "{what}: {r:?}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(needle), "{what}: message {message:?} should mention {needle:?}");
    }
    let many: Vec<String> = (1..=10_001).map(|n| format!(r#"{{"id":"m:{n}","type":"t"}}"#)).collect();
    let s2 = start(&dir.path().join("second"), &[]);
    let r = post_json(&s2, &format!("[{}]", many.join(",")));
    assert_eq!((r.status, r.error_code().as_str()), (413, "payload_too_large"), "{r:?}");
    assert!(r.body.contains("10000"), "{r:?}");
    let r = post(&format!("{}/actions", s.url()), "text/plain", br#"{"id": "a:1", "type": "t"}"#).unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (415, "unsupported_media_type"), "{r:?}");
    let r = get(&format!("{}/actions?from=zero", s.url())).unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_request"), "{r:?}");
    let r = get(&format!("{}/nope", s.url())).unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"), "{r:?}");
    // Nothing bad was recorded, and the service still works.
    let r = post_json(&s, r#"{"id": "a:1", "type": "t"}"#);
    assert_eq!(r.json(), json!({"acks": [{"id": "a:1", "seq": 1, "duplicate": false}]}));
    assert_eq!(get(&format!("{}/health", s.url())).unwrap().json()["head"], 1);
}

#[test]
fn batches_are_all_or_nothing_and_resends_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    let r = post_json(&s, r#"[{"id": "a:1", "type": "t"}, {"id": "b:1", "type": "t"}, {"id": "a:2", "type": "t"}]"#);
    assert_eq!(
        r.json()["acks"].as_array().unwrap().iter().map(|a| a["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // One action out of order refuses the whole batch: b:2 is not recorded.
    let r = post_json(&s, r#"[{"id": "b:2", "type": "t"}, {"id": "a:9", "type": "t"}]"#);
    assert_eq!((r.status, r.error_code().as_str()), (409, "out_of_order"));
    assert_eq!(r.json()["error"]["expected"], 3, "the number expected next, as a field");
    let r = post_json(&s, r#"[{"id": "a:2", "type": "t"}, {"id": "b:2", "type": "t"}]"#);
    assert_eq!(
        r.json()["acks"],
        json!([{"id": "a:2", "seq": 3, "duplicate": true}, {"id": "b:2", "seq": 4, "duplicate": false}])
    );
}

#[test]
fn the_socket_pipelines_and_survives_bad_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &["--max-payload", "100"]);
    let mut ws = raw::websocket(&format!("{}/ws", s.ws_url()), &[]).unwrap();
    let send = |ws: &mut raw::RawSocket, v: Value| ws.send(Message::text(v.to_string())).unwrap();
    // Bad messages first: each gets an error, the socket stays open.
    ws.send(Message::text("{not json")).unwrap();
    ws.send(Message::text(r#"{"type": "shout"}"#)).unwrap();
    send(&mut ws, json!({"type": "dispatch", "action": {"id": "w:1", "type": ""}}));
    send(&mut ws, json!({"type": "dispatch", "action": {"id": "w:1", "type": "t", "payload": "x".repeat(200)}}));
    send(&mut ws, json!({"type": "dispatch", "action": {"id": "w:5", "type": "t"}}));
    let mut errors = Vec::new();
    while errors.len() < 5 {
        let m = raw::next_json(&mut ws, "the socket");
        assert_eq!(m["type"], "error", "{m}");
        if m["code"] == "out_of_order" {
            assert_eq!(m["expected"], 1, "the number expected next, as a field: {m}");
        }
        errors.push((m["code"].as_str().unwrap().to_string(), m.get("id").cloned()));
    }
    let codes: Vec<&str> = errors.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["malformed_json", "bad_request", "invalid_action", "payload_too_large", "out_of_order"]);
    assert_eq!(errors[2].1, Some(json!("w:1")), "an error names the action's id");
    // 200 dispatches in flight at once, acked in any order, all in order in the log.
    for n in 1..=200 {
        send(&mut ws, json!({"type": "dispatch", "action": {"id": format!("w:{n}"), "type": "t", "payload": n}}));
    }
    let mut acked = std::collections::BTreeMap::new();
    while acked.len() < 200 {
        let m = raw::next_json(&mut ws, "the socket");
        assert_eq!(m["type"], "ack", "{m}");
        acked.insert(m["id"].as_str().unwrap().to_string(), m["seq"].as_u64().unwrap());
    }
    for n in 1..=200u64 {
        assert_eq!(acked[&format!("w:{n}")], n, "the client's order is the log's order");
    }
    // A re-send on the socket is a duplicate with the original seq; the
    // same id with another body is refused (id_reused); a re-send older
    // than the latest 64 of the client is still never appended, but its
    // ack carries no seq (and its body is no longer compared).
    send(&mut ws, json!({"type": "dispatch", "action": {"id": "w:190", "type": "t", "payload": 190}}));
    let m = raw::next_json(&mut ws, "the socket");
    assert_eq!(m, json!({"type": "ack", "id": "w:190", "seq": 190, "duplicate": true}));
    send(&mut ws, json!({"type": "dispatch", "action": {"id": "w:190", "type": "t"}}));
    let m = raw::next_json(&mut ws, "the socket");
    assert_eq!(
        (&m["type"], &m["id"], &m["code"], &m["expected"]),
        (&json!("error"), &json!("w:190"), &json!("id_reused"), &json!(201)),
        "{m}"
    );
    send(&mut ws, json!({"type": "dispatch", "action": {"id": "w:7", "type": "t"}}));
    let m = raw::next_json(&mut ws, "the socket");
    assert_eq!(m, json!({"type": "ack", "id": "w:7", "duplicate": true}));
    assert_eq!(get(&format!("{}/health", s.url())).unwrap().json()["head"], 200);
}

#[test]
fn the_stream_replays_then_follows_with_filters_and_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &["--heartbeat", "0.2"]);
    let batch: Vec<Value> = (1..=30)
        .map(|n| json!({"id": format!("s:{n}"), "type": if n % 3 == 0 { "order/placed" } else { "stock/moved" }, "payload": n}))
        .collect();
    assert_eq!(post_json(&s, &Value::Array(batch).to_string()).status, 200);

    // From 11: replay 11..=30, then the live tail brings 31.
    let url = s.url().to_string();
    let follower =
        std::thread::spawn(move || read_ndjson(&format!("{url}/actions?from=11"), |v| v["seq"] == 31).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(post_json(&s, r#"{"id": "s:31", "type": "stock/sold"}"#).status, 200);
    let lines = follower.join().unwrap();
    let seqs: Vec<u64> = lines.iter().filter_map(|v| v["seq"].as_u64()).collect();
    assert_eq!(seqs, (11..=31).collect::<Vec<_>>(), "every seq once, in order");
    assert!(lines.iter().any(|v| v.get("heartbeat").is_some()), "an idle stream sends heartbeats");
    let first = lines.iter().find(|v| v.get("seq").is_some()).unwrap();
    assert_eq!(first["type"], "stock/moved");
    assert!(first["ts"].as_u64().unwrap() > 0);

    // A filtered stream keeps only order/ actions, and heartbeats say how far it is.
    let lines =
        read_ndjson(&format!("{}/actions?from=1&types=order/", s.url()), |v| v["heartbeat"]["seen"] == 31).unwrap();
    assert!(lines.iter().filter_map(|v| v.get("heartbeat")).all(|h| h["head"] == 31), "{lines:?}");
    let seqs: Vec<u64> = lines.iter().filter_map(|v| v["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=30).filter(|n| n % 3 == 0).collect::<Vec<_>>());

    // The WebSocket form sends one line per message; with `lines=many`, a
    // chunk of the log per message (its lines newline-ended); the client
    // (which asks for many) reads either.
    let ws = s.ws_url();
    let messages = |query: &str| -> Vec<String> {
        let mut socket = raw::websocket(&format!("{ws}/actions?{query}"), &[]).unwrap();
        let mut texts = Vec::new();
        loop {
            match socket.read().unwrap() {
                Message::Text(t) => texts.push(t.as_str().to_string()),
                Message::Close(_) => return texts,
                _ => {}
            }
        }
    };
    let seqs_in = |texts: &[String]| -> Vec<u64> {
        let lines = texts.iter().flat_map(|t| t.lines()).filter(|l| !l.is_empty());
        lines.filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_u64()).collect()
    };
    let one = messages("from=1&to=31");
    assert!(one.iter().all(|t| !t.trim_end().contains('\n')), "one line per message: {one:?}");
    assert_eq!(seqs_in(&one), (1..=31).collect::<Vec<_>>());
    let many = messages("from=1&to=31&lines=many");
    assert!(many.len() < one.len() && many.iter().any(|t| t.lines().count() > 1), "{many:?}");
    assert!(many.iter().all(|t| t.ends_with('\n')), "each line ends with a newline: {many:?}");
    assert_eq!(seqs_in(&many), (1..=31).collect::<Vec<_>>());
    let bad = get(&format!("{}/actions?from=1&lines=all", s.url())).unwrap();
    assert_eq!((bad.status, bad.error_code().as_str()), (400, "bad_request"), "{bad:?}");
    let mut got = Vec::new();
    read_actions(s.url(), 29, None, &[], |m| {
        if let Some(seq) = m["seq"].as_u64() {
            got.push(seq);
        }
        got.len() == 3
    });
    assert_eq!(got, [29, 30, 31]);
}

/// A consumer far behind learns the head while it reads, not only when the
/// stream goes quiet: after each chunk of the log (4,096 actions) that
/// leaves it behind, a heartbeat says where the head is.
#[test]
fn a_consumer_far_behind_hears_the_head_while_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    for chunk in 0..10 {
        let batch: Vec<Value> =
            (1..=1000).map(|n| json!({"id": format!("f:{}", chunk * 1000 + n), "type": "t", "payload": n})).collect();
        assert_eq!(post_json(&s, &Value::Array(batch).to_string()).status, 200);
    }
    let lines = read_ndjson(&format!("{}/actions?from=1&to=10000", s.url()), |v| v["seq"] == 10000).unwrap();
    let mut last_seq = 0;
    let mut heard = Vec::new();
    for line in &lines {
        match (line["seq"].as_u64(), line.get("heartbeat")) {
            (Some(seq), _) => last_seq = seq,
            (None, Some(h)) => heard.push((last_seq, h["head"].as_u64().unwrap(), h["seen"].as_u64().unwrap())),
            _ => {}
        }
    }
    let midway: Vec<_> = heard.iter().filter(|(at, _, _)| *at > 0 && *at < 10000).collect();
    assert!(!midway.is_empty(), "a heartbeat between the actions: {heard:?}");
    for (at, head, seen) in midway {
        assert_eq!((*head, *seen), (10000, *at), "the head, and how far the consumer has been sent");
    }
}

#[test]
fn sigterm_shuts_down_cleanly_and_restart_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), &[]);
    assert_eq!(post_json(&s, r#"{"id": "t:1", "type": "t"}"#).status, 200);
    // A consumer following the tail must not hold up the shutdown.
    let url = s.url().to_string();
    let follower = std::thread::spawn(move || read_ndjson(&format!("{url}/actions?from=1"), |_| false));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(s.terminate(10_000), Some(0), "clean exit; stderr:\n{}", s.stderr());
    assert!(s.stderr().contains("chronicler stopped"), "{}", s.stderr());
    let _ = follower.join();
    let s = start(dir.path(), &[]);
    let r = post_json(&s, r#"[{"id": "t:1", "type": "t"}, {"id": "t:2", "type": "t"}]"#);
    assert_eq!(
        r.json()["acks"],
        json!([{"id": "t:1", "seq": 1, "duplicate": true}, {"id": "t:2", "seq": 2, "duplicate": false}])
    );
    // After a restart the stream is served from disk.
    let lines = read_ndjson(&format!("{}/actions?from=1", s.url()), |v| v["seq"] == 2).unwrap();
    let ids: Vec<&str> = lines.iter().filter_map(|v| v["id"].as_str()).collect();
    assert_eq!(ids, ["t:1", "t:2"]);
    let m = get(&format!("{}/metrics", s.url())).unwrap();
    assert!(m.body.contains("nodb_chronicler_appends_total 1\n"), "{}", m.body);
    assert!(m.body.contains("nodb_chronicler_head_seq 2\n"), "{}", m.body);
    assert!(m.body.contains("nodb_chronicler_fsync_seconds_bucket"), "{}", m.body);
}

#[test]
fn a_client_finds_its_last_action_and_a_range_of_the_stream_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), &[]);
    let missing = get(&format!("{}/clients/envoy-x", s.url())).unwrap();
    assert_eq!((missing.status, missing.error_code()), (404, "not_found".to_string()));
    let body = r#"[{"id": "a:1", "type": "t"}, {"id": "envoy-x:1", "type": "t"}, {"id": "a:2", "type": "t"},
                   {"id": "envoy-x:2", "type": "t"}, {"id": "a:3", "type": "t"}]"#;
    assert_eq!(post_json(&s, body).status, 200);
    let last = get(&format!("{}/clients/envoy-x", s.url())).unwrap().json();
    assert_eq!(last, json!({"client": "envoy-x", "last": 2, "seq": 4}));
    // `to` ends the stream: seqs 2..=3 and then the end of the body.
    let lines = read_ndjson(&format!("{}/actions?from=2&to=3", s.url()), |_| false).unwrap();
    let seqs: Vec<u64> = lines.iter().filter_map(|v| v["seq"].as_u64()).collect();
    assert_eq!(seqs, [2, 3]);
    let lines = read_ndjson(&format!("{}/actions?from=1&to=5&types=zzz", s.url()), |_| false).unwrap();
    assert!(lines.iter().all(|v| v.get("heartbeat").is_some()), "{lines:?}");
    let bad = get(&format!("{}/actions?from=3&to=2", s.url())).unwrap();
    assert_eq!((bad.status, bad.error_code()), (400, "bad_request".to_string()));
    // After a restart the positions come from the log itself.
    assert_eq!(s.terminate(10_000), Some(0));
    let s = start(dir.path(), &[]);
    let last = get(&format!("{}/clients/envoy-x", s.url())).unwrap().json();
    assert_eq!(last, json!({"client": "envoy-x", "last": 2, "seq": 4}));
}
