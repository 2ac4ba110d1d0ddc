//! Hostile WebSocket messages on the chronicler's dispatch socket (`/ws`)
//! and consumer socket (`GET /actions`), and on a data view's stream:
//! binary, malformed, unknown and deeply nested messages, invalid UTF-8,
//! messages over the size limit. A socket that can go on does (a normal
//! dispatch on it is acknowledged); one that cannot is closed, with the
//! code 1009 for a message too big. 13 cases.

use nodb_tests::raw::{Message, text_frame};

use super::{At, Services, Socket, dispatch_message, nested, read_answer, read_until_closed};
use serde_json::{Value, json};

/// What a case expects of the socket.
enum Expect {
    /// An `error` message with this code (and the action's id when the
    /// message named one); the socket stays open.
    Error(&'static str, Option<&'static str>),
    /// The socket is closed: with this close code, or (`None`) dropped
    /// with or without a close frame.
    Closed(Option<u16>),
    /// The service never reads what is sent on this socket (so never
    /// buffers it), and the stream goes on.
    Unread,
}

/// A text frame of raw bytes, UTF-8 or not.
fn raw_text(bytes: &[u8]) -> Message {
    text_frame(bytes, false, true)
}

/// One hostile message on a new socket to `path`, the answer checked;
/// then, if the socket stays open, a normal dispatch on it is
/// acknowledged; then [`Services::still_serves_and_lost_nothing`].
fn on_socket(s: &mut Services, at: At, path: &str, case: &str, message: Message, expect: Expect, next: &mut u64) {
    let mut ws = s.socket(at, path);
    if matches!(at, At::View) {
        let snapshot = super::read_json(&mut ws, case);
        assert_eq!(snapshot["type"], "snapshot", "{case}: {snapshot}");
    }
    let sent = ws.send(message);
    match expect {
        Expect::Error(code, id) => {
            sent.unwrap_or_else(|e| panic!("{case}: {e}"));
            let m = read_answer(&mut ws, case);
            assert_eq!((m["type"].as_str(), m["code"].as_str()), (Some("error"), Some(code)), "{case}: {m}");
            assert_eq!(m["id"].as_str(), id, "{case}: {m}");
            assert!(m["message"].as_str().is_some_and(|t| !t.is_empty()), "{case}: {m}");
            still_dispatches(s, &mut ws, case, next);
        }
        Expect::Unread => {
            sent.unwrap_or_else(|e| panic!("{case}: {e}"));
            s.still_serves_and_lost_nothing(case);
            let head = s.head();
            loop {
                let m = super::read_json(&mut ws, case);
                if m["seq"].as_u64() == Some(head) {
                    return;
                }
            }
        }
        Expect::Closed(code) => {
            let closed = if sent.is_ok() { read_until_closed(&mut ws, case) } else { None };
            match code {
                Some(code) => assert_eq!(closed.as_ref().map(|c| c.0), Some(code), "{case}: closed with {closed:?}"),
                None => eprintln!("{case}: closed with {closed:?}"),
            }
        }
    }
    s.still_serves_and_lost_nothing(case);
}

/// A normal dispatch on `ws` is acknowledged with the next seq.
fn still_dispatches(s: &mut Services, ws: &mut Socket, case: &str, next: &mut u64) {
    *next += 1;
    let id = format!("sock:{next}");
    let action = json!({"id": id, "type": "stock/corrected",
        "payload": {"product": "pear", "location": "shelf", "quantity": *next}});
    ws.send(dispatch_message(&action)).unwrap();
    let ack: Value = read_answer(ws, case);
    assert_eq!((ack["type"].as_str(), ack["id"].as_str()), (Some("ack"), Some(id.as_str())), "{case}: {ack}");
    s.record_acks(&ack);
}

#[test]
fn hostile_socket_messages_get_an_error_or_a_close_frame() {
    let mut s = Services::start(
        &["--max-body", "65536", "--max-payload", "4096", "--max-ws-message", "65536"],
        &["--max-ws-message", "65536"],
    );
    s.still_serves_and_lost_nothing("start");
    let mut next = 0;
    let deep = dispatch_message(
        &json!({"id": "deep:1", "type": "t", "payload": serde_json::from_str::<Value>(&nested(100)).unwrap()}),
    );
    let deep_text = deep.to_text().unwrap().replace(&nested(100), &nested(1000));
    let too_big = Message::text(format!(
        r#"{{"type":"dispatch","action":{{"id":"big:1","type":"t","payload":"{}"}}}}"#,
        "x".repeat(70_000)
    ));
    let cases: Vec<(At, &str, &str, Message, Expect)> = vec![
        (
            At::Chronicler,
            "/ws",
            "a binary message on /ws",
            Message::binary(vec![0u8, 159, 146, 150]),
            Expect::Error("bad_request", None),
        ),
        (
            At::Chronicler,
            "/ws",
            "malformed JSON on /ws",
            Message::text("{\"type\":\"dispatch\","),
            Expect::Error("malformed_json", None),
        ),
        (
            At::Chronicler,
            "/ws",
            "an unknown message type on /ws",
            Message::text(r#"{"type":"subscribe","view":"stock"}"#),
            Expect::Error("bad_request", None),
        ),
        (
            At::Chronicler,
            "/ws",
            "a payload nested 1,000 deep on /ws",
            Message::text(deep_text.clone()),
            Expect::Error("invalid_action", Some("deep:1")),
        ),
        (
            At::Chronicler,
            "/ws",
            "invalid UTF-8 on /ws",
            raw_text(b"{\"type\":\"dispatch\xff\"}"),
            Expect::Closed(Some(1007)),
        ),
        (At::Chronicler, "/ws", "a message over --max-body on /ws", too_big.clone(), Expect::Closed(Some(1009))),
        (
            At::Chronicler,
            "/actions?from=1",
            "a message over --max-ws-message on GET /actions",
            too_big.clone(),
            Expect::Unread,
        ),
        (
            At::View,
            "/views/stock/stream",
            "a binary message on a view stream",
            Message::binary(vec![1u8, 2, 3]),
            Expect::Error("bad_request", None),
        ),
        (
            At::View,
            "/views/stock/stream",
            "malformed JSON on a view stream",
            Message::text("[{"),
            Expect::Error("bad_request", None),
        ),
        (
            At::View,
            "/views/stock/stream",
            "an unknown message type on a view stream",
            Message::text(r#"{"type":"delete_view"}"#),
            Expect::Error("bad_request", None),
        ),
        (
            At::View,
            "/views/stock/stream",
            "a payload nested 1,000 deep, relayed",
            Message::text(deep_text),
            Expect::Error("bad_request", None),
        ),
        (
            At::View,
            "/views/stock/stream",
            "invalid UTF-8 on a view stream",
            raw_text(b"{\"type\":\"\xc3\x28\"}"),
            Expect::Closed(Some(1007)),
        ),
        (
            At::View,
            "/views/stock/stream",
            "a message over --max-ws-message on a view stream",
            too_big,
            Expect::Closed(Some(1009)),
        ),
    ];
    for (at, path, case, message, expect) in cases {
        on_socket(&mut s, at, path, case, message, expect, &mut next);
    }
}
