//! Fuzzing the parsers at nodb's edges with proptest (cargo-fuzz needs a
//! nightly toolchain this build does not use): arbitrary bytes and
//! arbitrary JSON into the wire messages, action ids, JSON Pointers and
//! RFC 6902 patches. Each must answer — a value or an error — and never
//! panic; what parses must print back the same. Cases per property are set
//! below; `PROPTEST_CASES` overrides them.

use nodb_shared::protocol::{Action, ActionId, ClientMessage, CommittedAction, ServerMessage, StreamLine};
use nodb_shared::{Path, Tree};
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON, a few levels deep, with the keys and ops that matter.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![".{0,8}", "(/[a-z0-9~-]{0,3}){0,3}", Just("dispatch".to_string()), Just("add".to_string())]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    "[a-z]{0,4}",
                    Just("op".to_string()),
                    Just("path".to_string()),
                    Just("from".to_string()),
                    Just("value".to_string()),
                    Just("type".to_string()),
                    Just("id".to_string()),
                    Just("action".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An RFC 6902 operation, well-formed in shape, aimed at random paths.
fn op() -> impl Strategy<Value = Value> {
    let path = "(/([a-c0-9]|-|~0|~1)){0,3}";
    (prop_oneof!["add", "remove", "replace", "move", "copy", "test"], path, path, json())
        .prop_map(|(op, path, from, value)| serde_json::json!({"op": op, "path": path, "from": from, "value": value}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any bytes as a socket message, an action, a committed action or a
    /// stream line: an answer, never a panic.
    #[test]
    fn wire_messages_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<ClientMessage>(&bytes);
        let _ = serde_json::from_slice::<ServerMessage>(&bytes);
        let _ = serde_json::from_slice::<Action>(&bytes);
        let _ = serde_json::from_slice::<CommittedAction>(&bytes);
        let _ = StreamLine::parse(&String::from_utf8_lossy(&bytes));
    }

    /// Arbitrary JSON shaped like messages: an answer, and what parses as a
    /// client message serialises back to a message that parses the same.
    #[test]
    fn json_messages_round_trip(v in json()) {
        let text = v.to_string();
        if let Ok(m) = serde_json::from_str::<ClientMessage>(&text) {
            let again = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<ClientMessage>(&again).unwrap(), m);
        }
        let _ = serde_json::from_str::<ServerMessage>(&text);
        let _ = StreamLine::parse(&text);
    }

    /// Any string as an action id: an answer; what parses prints back the same.
    #[test]
    fn action_ids_round_trip(id in "\\PC{0,40}(:[0-9]{0,21})?") {
        if let Ok(parsed) = id.parse::<ActionId>() {
            prop_assert_eq!(parsed.to_string(), id);
        }
    }

    /// Any string as a JSON Pointer: an answer; what parses prints back the same.
    #[test]
    fn pointers_round_trip(text in "(/([a-z0-9]|~0|~1|~|~2|-|\\PC){0,4}){0,5}|\\PC{0,12}") {
        if let Ok(path) = Path::parse(&text) {
            prop_assert_eq!(path.to_string(), text);
        }
    }

    /// Random patches on random documents: applied or refused, never a
    /// panic, and a refused patch leaves the document as it was (the
    /// original tree is never changed either way).
    #[test]
    fn patches_apply_atomically(doc in json(), ops in proptest::collection::vec(op(), 1..6)) {
        let tree = Tree::from(doc.clone());
        let before = tree.to_json_string();
        let Ok(patch) = serde_json::from_value::<json_patch::Patch>(Value::Array(ops)) else { return Ok(()) };
        let result = nodb_shared::patch::apply(&tree, &patch);
        prop_assert_eq!(tree.to_json_string(), before, "the input tree is persistent");
        // Where the reference implementation (the json-patch crate, used
        // by nodb for the types only) also applies it, the results agree.
        // They may differ on whether to refuse edge cases such as a move
        // onto itself, which RFC 6902 allows and json-patch refuses
        // (shared/tests/conformance.rs pins the RFC's own cases); and
        // json-patch 5 itself panics undoing some failed patches, so its
        // answer is taken only when it has one.
        if let Ok(t) = result {
            let mut reference = doc;
            let theirs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                json_patch::patch(&mut reference, &patch).is_ok()
            }));
            if matches!(theirs, Ok(true)) {
                prop_assert_eq!(t, Tree::from(reference));
            }
        }
    }
}
