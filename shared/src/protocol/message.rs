//! Acknowledgements, socket messages and view responses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Action, ErrorCode};
use crate::tree::Tree;

/// The chronicler's answer for one accepted (or re-sent) action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The action's id.
    pub id: String,
    /// The sequence number it got (the original one for a re-send). Absent
    /// only for a re-send of an action older than the chronicler's memory of
    /// that client's latest actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Whether the action had been accepted before.
    pub duplicate: bool,
}

/// The body of a `POST /actions` answer: `{"acks": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acks {
    /// One ack per action, in the order sent.
    pub acks: Vec<Ack>,
}

/// Upstream view name → the upstream seq a cascaded state reflects.
pub type Sources = BTreeMap<String, u64>;

/// What a client sends on a socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Dispatch an action: `{"type": "dispatch", "action": {…}}`.
    Dispatch {
        /// The action.
        action: Action,
    },
}

/// What a server sends on a socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// An action was accepted (or was a re-send of an accepted one).
    Ack(Ack),
    /// Something the client sent was refused; the socket stays open.
    Error {
        /// The id of the action concerned, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The machine-readable code.
        code: ErrorCode,
        /// What is wrong, for people.
        message: String,
    },
    /// A view's whole state at `seq`.
    Snapshot {
        /// The seq the state reflects.
        seq: u64,
        /// The state.
        state: Tree,
        /// For a cascaded view, the upstream seqs this state reflects.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sources: Option<Sources>,
        /// The version of the code that made the state (a data view's
        /// app version). A client resuming with `since` sends it back as
        /// `version=`, so a data view running other code sends it a
        /// snapshot rather than a patch from a state it never had.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// The change of a view over seqs `from..=seq` (`from` absent: just `seq`).
    Patch {
        /// The first seq covered, when the message covers more than one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
        /// The last seq covered; the state now reflects it.
        seq: u64,
        /// RFC 6902 operations; empty when nothing changed in this view.
        ops: json_patch::Patch,
        /// For a cascaded view, the upstream seqs the new state reflects.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sources: Option<Sources>,
    },
    /// A reducer rejected one of this client's own actions.
    Rejected {
        /// The seq of the rejected action.
        seq: u64,
        /// Its id.
        id: String,
        /// Why the reducer rejected it.
        reason: String,
    },
}

/// The answer to `GET /views/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewState {
    /// The seq the state reflects.
    pub seq: u64,
    /// A hash of the state's deterministic serialisation, so replicas can be
    /// compared.
    pub hash: String,
    /// The state.
    pub state: Tree,
    /// For a cascaded view, the upstream seqs this state reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Sources>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(msg: &ServerMessage, expected: serde_json::Value) {
        assert_eq!(serde_json::to_value(msg).unwrap(), expected);
        assert_eq!(&serde_json::from_value::<ServerMessage>(expected).unwrap(), msg);
    }

    #[test]
    fn server_message_shapes() {
        round_trip(
            &ServerMessage::Ack(Ack { id: "c:1".into(), seq: Some(4), duplicate: false }),
            json!({"type": "ack", "id": "c:1", "seq": 4, "duplicate": false}),
        );
        round_trip(
            &ServerMessage::Error {
                id: Some("c:9".into()),
                code: ErrorCode::OutOfOrder,
                message: "expected c:2".into(),
            },
            json!({"type": "error", "id": "c:9", "code": "out_of_order", "message": "expected c:2"}),
        );
        round_trip(
            &ServerMessage::Snapshot { seq: 3, state: Tree::from(json!({"a": 1})), sources: None, version: None },
            json!({"type": "snapshot", "seq": 3, "state": {"a": 1}}),
        );
        round_trip(
            &ServerMessage::Patch {
                from: Some(4),
                seq: 6,
                ops: serde_json::from_value(json!([{"op": "add", "path": "/b", "value": 2}])).unwrap(),
                sources: Some([("stock".to_string(), 812)].into()),
            },
            json!({"type": "patch", "from": 4, "seq": 6, "ops": [{"op": "add", "path": "/b", "value": 2}], "sources": {"stock": 812}}),
        );
        round_trip(
            &ServerMessage::Patch { from: None, seq: 7, ops: json_patch::Patch(vec![]), sources: None },
            json!({"type": "patch", "seq": 7, "ops": []}),
        );
        round_trip(
            &ServerMessage::Rejected { seq: 8, id: "c:3".into(), reason: "only 2 left".into() },
            json!({"type": "rejected", "seq": 8, "id": "c:3", "reason": "only 2 left"}),
        );
    }

    #[test]
    fn client_message_shape() {
        let m: ClientMessage =
            serde_json::from_value(json!({"type": "dispatch", "action": {"id": "c:1", "type": "t", "payload": {}}}))
                .unwrap();
        let ClientMessage::Dispatch { action } = m;
        assert_eq!(action.kind, "t");
        assert!(serde_json::from_value::<ClientMessage>(json!({"type": "shout"})).is_err());
    }

    #[test]
    fn acks_and_view_state() {
        let acks = Acks { acks: vec![Ack { id: "c:1".into(), seq: Some(1), duplicate: true }] };
        assert_eq!(serde_json::to_value(&acks).unwrap(), json!({"acks": [{"id": "c:1", "seq": 1, "duplicate": true}]}));
        let v = ViewState { seq: 2, hash: "ab".into(), state: Tree::Null, sources: None };
        assert_eq!(serde_json::to_value(&v).unwrap(), json!({"seq": 2, "hash": "ab", "state": null}));
    }
}
