//! The lines of the chronicler's action stream (`GET /actions`): a committed
//! action, or a heartbeat `{"heartbeat": {"head": H, "seen": S}}`.

use serde::{Deserialize, Serialize};

use super::{CommittedAction, Meta};

/// One line of the action stream.
///
/// [`StreamLine::parse`] reads a line; `Serialize` writes the same JSON the
/// chronicler sends, and `Deserialize` (from JSON) reads like `parse`.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamLine {
    /// The next committed action.
    Action(CommittedAction),
    /// Every seq up to `seen` has been considered for this consumer, and
    /// the log's head is `head`. A heartbeat has no `seq`.
    Heartbeat {
        /// The log's head when it was sent.
        head: u64,
        /// The last seq considered (matching or not the consumer's types).
        seen: u64,
    },
    /// A committed action whose payload or meta this reader cannot read
    /// (a number out of range, nesting too deep): its seq, ts, id and type,
    /// with a `null` payload. It keeps its place, so every reader of the
    /// history moves through the same seqs (a reducer rejects the `null`).
    Unreadable {
        /// The action, without its payload (and without its meta, if that
        /// is what could not be read).
        action: CommittedAction,
        /// Why the whole action could not be read.
        error: String,
    },
}

/// A line that is neither an action nor a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a line of the action stream ({reason}): {start}")]
pub struct StreamLineError {
    /// Why, as the JSON parser said it.
    pub reason: String,
    /// The start of the line (up to 200 bytes).
    pub start: String,
}

/// The heartbeat line's shape.
#[derive(Serialize, Deserialize)]
struct HeartbeatLine {
    heartbeat: HeartbeatBody,
}

#[derive(Serialize, Deserialize)]
struct HeartbeatBody {
    head: u64,
    seen: u64,
}

/// What is left of an action when its payload cannot be read.
#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    ts: u64,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    client: Option<String>,
}

/// An [`Envelope`] with its meta.
#[derive(Deserialize)]
struct EnvelopeWithMeta {
    seq: u64,
    ts: u64,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    meta: Option<Meta>,
}

impl StreamLine {
    /// Reads one line (without its newline).
    ///
    /// # Errors
    /// [`StreamLineError`] for a line without even an action's seq, ts, id
    /// and type, or a heartbeat's head and seen.
    pub fn parse(text: &str) -> Result<StreamLine, StreamLineError> {
        // Actions are the common case: try them first, whole.
        let error = match serde_json::from_str::<CommittedAction>(text) {
            Ok(action) => return Ok(StreamLine::Action(action)),
            Err(e) => e,
        };
        if let Ok(HeartbeatLine { heartbeat: HeartbeatBody { head, seen } }) = serde_json::from_str(text) {
            return Ok(StreamLine::Heartbeat { head, seen });
        }
        let (envelope, meta) = match serde_json::from_str::<EnvelopeWithMeta>(text) {
            Ok(e) => (Envelope { seq: e.seq, ts: e.ts, id: e.id, kind: e.kind, client: e.client }, e.meta),
            Err(_) => match serde_json::from_str::<Envelope>(text) {
                Ok(e) => (e, None),
                Err(_) => return Err(StreamLineError { reason: error.to_string(), start: start(text).to_string() }),
            },
        };
        let Envelope { seq, ts, id, kind, client } = envelope;
        let action = CommittedAction { seq, ts, id, kind, payload: serde_json::Value::Null, meta, client };
        Ok(StreamLine::Unreadable { action, error: error.to_string() })
    }

    /// The seq of an action line; `None` for a heartbeat.
    pub fn seq(&self) -> Option<u64> {
        match self {
            StreamLine::Action(a) | StreamLine::Unreadable { action: a, .. } => Some(a.seq),
            StreamLine::Heartbeat { .. } => None,
        }
    }

    /// The log's head as far as this line shows: a heartbeat's head, an
    /// action's seq.
    pub fn head(&self) -> u64 {
        match self {
            StreamLine::Heartbeat { head, .. } => *head,
            StreamLine::Action(a) | StreamLine::Unreadable { action: a, .. } => a.seq,
        }
    }
}

/// At most the first 200 bytes of `text`.
fn start(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Serialize for StreamLine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StreamLine::Action(a) | StreamLine::Unreadable { action: a, .. } => a.serialize(serializer),
            StreamLine::Heartbeat { head, seen } => {
                HeartbeatLine { heartbeat: HeartbeatBody { head: *head, seen: *seen } }.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for StreamLine {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        StreamLine::parse(raw.get()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(line: &StreamLine, text: &str) {
        assert_eq!(serde_json::to_string(line).unwrap(), text);
        assert_eq!(&StreamLine::parse(text).unwrap(), line);
        assert_eq!(&serde_json::from_str::<StreamLine>(text).unwrap(), line);
    }

    #[test]
    fn actions_and_heartbeats_round_trip() {
        let action = CommittedAction {
            seq: 7,
            ts: 1,
            id: "c:1".into(),
            kind: "t".into(),
            payload: json!({"a": [1, 2.5]}),
            meta: Some([("k".to_string(), "v".to_string())].into()),
            client: None,
        };
        round_trip(
            &StreamLine::Action(action),
            r#"{"seq":7,"ts":1,"id":"c:1","type":"t","payload":{"a":[1,2.5]},"meta":{"k":"v"}}"#,
        );
        round_trip(&StreamLine::Heartbeat { head: 812, seen: 790 }, r#"{"heartbeat":{"head":812,"seen":790}}"#);
        assert_eq!(StreamLine::Heartbeat { head: 9, seen: 3 }.seq(), None);
        assert_eq!(StreamLine::Heartbeat { head: 9, seen: 3 }.head(), 9);
        // A heartbeat may grow fields; it is still a heartbeat.
        let grown = StreamLine::parse(r#"{"heartbeat":{"head":2,"seen":1,"lag":0}}"#).unwrap();
        assert_eq!(grown, StreamLine::Heartbeat { head: 2, seen: 1 });
    }

    #[test]
    fn an_unreadable_payload_keeps_its_seq_and_meta() {
        let text = r#"{"seq":5,"ts":1,"id":"c:1","type":"t","payload":[1e400],"meta":{"cause":"4"}}"#;
        let StreamLine::Unreadable { action, error } = StreamLine::parse(text).unwrap() else { panic!() };
        assert_eq!((action.seq, action.kind.as_str(), &action.payload), (5, "t", &serde_json::Value::Null));
        assert_eq!(action.meta.unwrap()["cause"], "4");
        assert!(error.contains("number out of range"), "{error}");
        let no_meta = StreamLine::parse(r#"{"seq":5,"ts":1,"id":"c:1","type":"t","meta":{"k":1e400}}"#).unwrap();
        assert!(matches!(no_meta, StreamLine::Unreadable { action, .. } if action.meta.is_none()));
        assert_eq!(
            serde_json::to_string(&StreamLine::parse(text).unwrap()).unwrap(),
            r#"{"seq":5,"ts":1,"id":"c:1","type":"t","payload":null,"meta":{"cause":"4"}}"#
        );
    }

    #[test]
    fn other_lines_are_errors() {
        for bad in ["{}", "not json", r#"{"heartbeat":{"head":1}}"#, r#"{"seq":"x"}"#, ""] {
            let e = StreamLine::parse(bad).unwrap_err();
            assert_eq!(e.start, bad);
            assert!(e.to_string().starts_with("not a line of the action stream"), "{e}");
        }
        assert!(serde_json::from_str::<StreamLine>("{}").is_err());
    }
}
