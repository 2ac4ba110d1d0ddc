//! Actions as the chronicler handles them: payload and meta stay raw JSON.
//!
//! The chronicler never interprets an action, so it never builds a JSON
//! tree of the payload: it checks the envelope (id, type, size) against the
//! wire contract and splices the payload's text into the committed record.

use nodb_shared::protocol::action::json_depth;
use nodb_shared::protocol::{ActionError, ActionId, Limits, Meta};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// An action as a client sent it, with its payload as raw JSON text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingAction {
    /// The idempotency key `<client>:<n>`.
    pub id: String,
    /// The action type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload as sent (`None` when absent or `null`).
    #[serde(default)]
    pub payload: Option<Box<RawValue>>,
    /// Optional string headers.
    #[serde(default)]
    pub meta: Option<Meta>,
}

impl IncomingAction {
    /// Checks the action against the wire contract, returning its id.
    ///
    /// # Errors
    /// The first [`ActionError`]: id, then type, then payload size, depth
    /// and numbers, then meta.
    pub fn validate(&self, limits: &Limits) -> Result<ActionId, ActionError> {
        let size = self.payload.as_ref().map_or(4, |p| p.get().len());
        let id = limits.check(&self.id, &self.kind, size)?;
        // Before the parse below, which would stop at serde_json's own
        // recursion limit with a less helpful message.
        limits.check_depth(self.payload.as_ref().map_or(0, |p| json_depth(p.get().as_bytes())))?;
        // Valid JSON can still hold a number no reader can represent
        // (`1e400`): refuse it here rather than store what consumers cannot
        // parse. This pass allocates nothing.
        if let Some(p) = &self.payload
            && let Err(e) = serde_json::from_str::<Readable>(p.get())
        {
            return Err(ActionError::InvalidPayload { reason: e.to_string() });
        }
        limits.check_meta(self.meta.as_ref())?;
        Ok(id)
    }

    /// The committed action's JSON, on one line: the same shape as
    /// [`nodb_shared::protocol::CommittedAction`].
    pub fn committed_json(&self, seq: u64, ts: u64, client: Option<&str>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Committed<'a> {
            seq: u64,
            ts: u64,
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            payload: &'a RawValue,
            #[serde(skip_serializing_if = "Option::is_none")]
            meta: Option<&'a Meta>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client: Option<&'a str>,
        }
        let raw = self.payload.as_deref().unwrap_or(RawValue::NULL);
        // A payload sent with line breaks between tokens would break the
        // one-action-per-line stream. JSON strings cannot hold a raw line
        // break, so every CR or LF is whitespace between tokens: turning it
        // into a space changes nothing else.
        let flattened;
        let payload = if raw.get().contains(['\n', '\r']) {
            flattened = flatten(raw);
            &*flattened
        } else {
            raw
        };
        let c = Committed { seq, ts, id: &self.id, kind: &self.kind, payload, meta: self.meta.as_ref(), client };
        // Serialising strings, numbers and valid raw JSON cannot fail.
        serde_json::to_vec(&c).unwrap_or_default()
    }
}

/// Deserialises any JSON value and keeps nothing, but — unlike
/// `serde::de::IgnoredAny` — makes the parser read every number, so a
/// number out of range is an error.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Readable, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Readable;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_unit<E>(self) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Readable, A::Error> {
                while seq.next_element::<Readable>()?.is_some() {}
                Ok(Readable)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, Readable>()?.is_some() {}
                Ok(Readable)
            }
        }
        d.deserialize_any(V)
    }
}

fn flatten(raw: &RawValue) -> Box<RawValue> {
    let text: String = raw.get().chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    RawValue::from_string(text).unwrap_or_else(|_| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodb_shared::protocol::CommittedAction;
    use nodb_shared::protocol::action::MAX_PAYLOAD_DEPTH;

    #[test]
    fn committed_json_is_one_line_in_the_wire_shape() {
        let a: IncomingAction = serde_json::from_str(
            "{\"id\": \"c:1\", \"type\": \"t\", \"payload\": {\n  \"a\": [1,\n 2]\n}, \"meta\": {\"k\": \"v\"}}",
        )
        .unwrap();
        let json = a.committed_json(5, 1000, Some("ana"));
        assert!(!json.contains(&b'\n'));
        let c: CommittedAction = serde_json::from_slice(&json).unwrap();
        assert_eq!((c.seq, c.ts, c.id.as_str(), c.kind.as_str()), (5, 1000, "c:1", "t"));
        assert_eq!(c.payload, serde_json::json!({"a": [1, 2]}));
        assert_eq!(c.meta.unwrap()["k"], "v");
        assert_eq!(c.client.as_deref(), Some("ana"));
        let bare: IncomingAction = serde_json::from_str(r#"{"id": "c:2", "type": "t"}"#).unwrap();
        assert_eq!(
            String::from_utf8(bare.committed_json(6, 1, None)).unwrap(),
            r#"{"seq":6,"ts":1,"id":"c:2","type":"t","payload":null}"#
        );
    }

    #[test]
    fn validation_follows_the_contract() {
        let limits = Limits { max_payload_bytes: 8, ..Limits::default() };
        let a: IncomingAction = serde_json::from_str(r#"{"id": "c:1", "type": "t", "payload": "12345678"}"#).unwrap();
        assert!(matches!(a.validate(&limits), Err(ActionError::PayloadTooLarge { size: 10, limit: 8 })));
        let a: IncomingAction = serde_json::from_str(r#"{"id": "c1", "type": "t"}"#).unwrap();
        assert_eq!(a.validate(&limits).unwrap_err().field(), "id");
        assert!(serde_json::from_str::<IncomingAction>(r#"{"id": "c:1", "type": "t", "x": 1}"#).is_err());
        let huge: IncomingAction = serde_json::from_str(r#"{"id": "c:1", "type": "t", "payload": [1e400]}"#).unwrap();
        assert_eq!(huge.validate(&Limits::default()).unwrap_err().field(), "payload");
    }

    #[test]
    fn type_and_meta_are_refused_over_their_limits() {
        let limits = Limits::default();
        let long_type = format!(r#"{{"id": "c:1", "type": "{}"}}"#, "t".repeat(257));
        let a: IncomingAction = serde_json::from_str(&long_type).unwrap();
        assert_eq!(a.validate(&limits), Err(ActionError::TypeTooLong { size: 257, limit: 256 }));
        let a: IncomingAction = serde_json::from_str(&long_type.replace(&"t".repeat(257), &"t".repeat(256))).unwrap();
        assert!(a.validate(&limits).is_ok());
        let big_meta = format!(r#"{{"id": "c:1", "type": "t", "meta": {{"k": "{}"}}}}"#, "v".repeat(4097));
        let a: IncomingAction = serde_json::from_str(&big_meta).unwrap();
        assert_eq!(a.validate(&limits).unwrap_err().field(), "meta");
        let many: String = (0..1000).map(|i| format!(r#""k{i}": "{}","#, "v".repeat(20))).collect();
        let a: IncomingAction = serde_json::from_str(&format!(
            r#"{{"id": "c:1", "type": "t", "meta": {{{}}}}}"#,
            many.trim_end_matches(',')
        ))
        .unwrap();
        assert!(matches!(a.validate(&limits), Err(ActionError::MetaTooLarge { limit: 16384, .. })));
    }

    /// A payload nested `depth` levels deep: `[[…1…]]`.
    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn a_payload_deeper_than_the_limit_is_refused_with_a_sentence() {
        let limits = Limits::default();
        for depth in [MAX_PAYLOAD_DEPTH + 1, 127, 128, 5000] {
            let a: IncomingAction =
                serde_json::from_str(&format!(r#"{{"id": "c:1", "type": "t", "payload": {}}}"#, nested(depth)))
                    .unwrap();
            let err = a.validate(&limits).unwrap_err();
            assert_eq!(err, ActionError::PayloadTooDeep { limit: MAX_PAYLOAD_DEPTH }, "depth {depth}");
            assert!(err.to_string().contains("100 levels"), "{err}");
        }
    }

    proptest::proptest! {
        /// Regression (issue 15): a payload nested 127 deep was accepted but
        /// its committed action could not be parsed. Every accepted payload,
        /// around the limit, now gives a committed action that parses with
        /// serde_json's default limit — alone and inside a dispatch message.
        #[test]
        fn every_accepted_payload_is_readable_once_committed(
            depth in (MAX_PAYLOAD_DEPTH - 3)..(MAX_PAYLOAD_DEPTH + 30),
            shape in proptest::collection::vec(proptest::bool::ANY, 130),
            spaces in proptest::bool::ANY,
        ) {
            // A mix of arrays and objects, as deep as `depth`.
            let mut payload = String::from("1");
            for (i, object) in shape.iter().take(depth).enumerate() {
                payload = match (object, spaces) {
                    (true, false) => format!(r#"{{"k{i}":{payload}}}"#),
                    (true, true) => format!("{{ \"k{i}\" :\n {payload} }}"),
                    (false, false) => format!("[0,{payload}]"),
                    (false, true) => format!("[ 0 ,\n{payload} ]"),
                };
            }
            let text = format!(r#"{{"id": "c:1", "type": "t", "payload": {payload}}}"#);
            let a: IncomingAction = serde_json::from_str(&text).unwrap();
            match a.validate(&Limits::default()) {
                Ok(_) => {
                    proptest::prop_assert!(depth <= MAX_PAYLOAD_DEPTH);
                    let json = a.committed_json(1, 1, Some("ana"));
                    let parsed = serde_json::from_slice::<CommittedAction>(&json);
                    proptest::prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
                    let dispatch = format!(r#"{{"type":"dispatch","action":{}}}"#, String::from_utf8(json).unwrap());
                    proptest::prop_assert!(serde_json::from_str::<serde_json::Value>(&dispatch).is_ok());
                }
                Err(e) => proptest::prop_assert_eq!(
                    (depth > MAX_PAYLOAD_DEPTH, e),
                    (true, ActionError::PayloadTooDeep { limit: MAX_PAYLOAD_DEPTH })
                ),
            }
        }
    }

    #[test]
    fn line_breaks_are_flattened_not_reinterpreted() {
        let a: IncomingAction =
            serde_json::from_str("{\"id\": \"c:1\", \"type\": \"t\", \"payload\": [18446744073709551616123,\r\n 0.1000000000000000055511151231257827]}")
                .unwrap();
        let json = String::from_utf8(a.committed_json(1, 1, None)).unwrap();
        assert!(json.contains("[18446744073709551616123,   0.1000000000000000055511151231257827]"), "{json}");
    }
}
