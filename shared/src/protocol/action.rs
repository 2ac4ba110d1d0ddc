//! Actions as clients send them and as the chronicler commits them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ErrorCode;

/// Optional string headers of an action.
pub type Meta = BTreeMap<String, String>;

/// What a client sends: `{"id": "<client>:<n>", "type": …, "payload": …, "meta": {…}}`.
///
/// Unknown fields are refused, so a typo such as `"paylod"` is an error
/// rather than an action with a `null` payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// The idempotency key `<client>:<n>`; see [`ActionId`].
    pub id: String,
    /// What happened, e.g. `stock/moved`. Never empty.
    #[serde(rename = "type")]
    pub kind: String,
    /// Any JSON value; `null` when absent.
    #[serde(default)]
    pub payload: Value,
    /// Optional string headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// An action with the place and time the chronicler gave it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommittedAction {
    /// The global sequence number: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// When the chronicler accepted it, in unix milliseconds. Reducers take
    /// time from here, never from a clock.
    pub ts: u64,
    /// The action's idempotency key.
    pub id: String,
    /// The action type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload.
    #[serde(default)]
    pub payload: Value,
    /// Optional string headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// The authenticated client, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

impl Action {
    /// Checks the action against the wire contract and `limits`, returning
    /// its parsed id.
    ///
    /// # Errors
    /// The first [`ActionError`] found: id, then type, then payload size.
    pub fn validate(&self, limits: &Limits) -> Result<ActionId, ActionError> {
        limits.check(&self.id, &self.kind, json_size(&self.payload))
    }

    /// The committed form of this action.
    pub fn commit(self, seq: u64, ts: u64, client: Option<String>) -> CommittedAction {
        CommittedAction { seq, ts, id: self.id, kind: self.kind, payload: self.payload, meta: self.meta, client }
    }
}

impl CommittedAction {
    /// The action as the client sent it.
    pub fn action(&self) -> Action {
        Action { id: self.id.clone(), kind: self.kind.clone(), payload: self.payload.clone(), meta: self.meta.clone() }
    }
}

/// The length in bytes of a value's compact JSON text.
pub fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Size limits on what clients send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest accepted payload, as compact JSON bytes. Default 1 MiB.
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_payload_bytes: 1024 * 1024 }
    }
}

impl Limits {
    /// The contract's rules for an action with this id, type and payload
    /// size (bytes of JSON), returning the parsed id. [`Action::validate`]
    /// uses it, and so can a service that keeps payloads as raw JSON.
    ///
    /// # Errors
    /// The first [`ActionError`] found: id, then type, then payload size.
    pub fn check(&self, id: &str, kind: &str, payload_bytes: usize) -> Result<ActionId, ActionError> {
        let id = id.parse::<ActionId>()?;
        if kind.is_empty() {
            return Err(ActionError::EmptyType);
        }
        if payload_bytes > self.max_payload_bytes {
            return Err(ActionError::PayloadTooLarge { size: payload_bytes, limit: self.max_payload_bytes });
        }
        Ok(id)
    }

    /// Checks the limits make sense.
    ///
    /// # Errors
    /// A sentence naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_payload_bytes == 0 {
            return Err("the payload size limit must be at least 1 byte".into());
        }
        Ok(())
    }
}

/// A parsed action id: client `client` numbers its actions 1, 2, 3, …
/// and this is number `n`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionId {
    /// The client's name: everything before the last `:`.
    pub client: String,
    /// The client's sequence number for this action, from 1.
    pub n: u64,
}

/// The longest client name accepted in an action id.
pub const MAX_CLIENT_LEN: usize = 256;

impl FromStr for ActionId {
    type Err = ActionError;

    fn from_str(id: &str) -> Result<ActionId, ActionError> {
        let bad = |reason| ActionError::InvalidId { id: id.to_string(), reason };
        let (client, n) = id.rsplit_once(':').ok_or_else(|| bad("expected <client>:<n>, found no ':'"))?;
        if client.is_empty() {
            return Err(bad("the client part before ':' is empty"));
        }
        if client.len() > MAX_CLIENT_LEN {
            return Err(bad("the client part is longer than 256 bytes"));
        }
        if client.chars().any(char::is_control) {
            return Err(bad("the client part contains control characters"));
        }
        if client.chars().any(is_invisible_format) {
            return Err(bad("the client part contains an invisible formatting character (a bidirectional control, a \
                 zero-width character, a byte order mark, a tag or a line separator), which can make an id \
                 display as another"));
        }
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0')) {
            return Err(bad("the number after ':' must be a positive integer without leading zeros"));
        }
        let n: u64 = n.parse().map_err(|_| bad("the number after ':' is too large"))?;
        if n == 0 {
            return Err(bad("clients number their actions from 1, not 0"));
        }
        Ok(ActionId { client: client.to_string(), n })
    }
}

/// Whether `c` is an invisible formatting character refused in a client
/// name: every character of Unicode 15's `Format` category (`Cf`) — among
/// them the bidirectional controls U+061C, U+200E, U+200F, U+202A–U+202E
/// and U+2066–U+2069, the zero-width U+200B–U+200D and U+2060, the byte
/// order mark U+FEFF, the soft hyphen U+00AD and the tags U+E0000–U+E007F —
/// and the line and paragraph separators U+2028 and U+2029. They show as
/// nothing (or reorder the text around them), so two ids that print alike
/// could name different clients, and a log line could read backwards.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.client, self.n)
    }
}

/// Why an action breaks the wire contract.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The id is not `<client>:<n>` with n ≥ 1.
    #[error("invalid id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The type is the empty string.
    #[error("the action type must not be empty")]
    EmptyType,
    /// The payload holds something no reader can represent (a number out of
    /// range).
    #[error("the payload cannot be stored: {reason}")]
    InvalidPayload {
        /// What is wrong.
        reason: String,
    },
    /// The payload is over the limit.
    #[error("the payload is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size as compact JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl ActionError {
    /// The field of the action that is wrong.
    pub fn field(&self) -> &'static str {
        match self {
            ActionError::InvalidId { .. } => "id",
            ActionError::EmptyType => "type",
            ActionError::PayloadTooLarge { .. } | ActionError::InvalidPayload { .. } => "payload",
        }
    }

    /// The wire error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ActionError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::InvalidAction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn ids() {
        assert_eq!("web-1:3".parse(), Ok(ActionId { client: "web-1".into(), n: 3 }));
        assert_eq!("a:b:12".parse::<ActionId>().unwrap().client, "a:b");
        for bad in ["", "abc", ":1", "a:", "a:0", "a:01", "a:-1", "a:1.0", "a:99999999999999999999", "a\n:1"] {
            assert!(matches!(bad.parse::<ActionId>(), Err(ActionError::InvalidId { .. })), "{bad}");
        }
    }

    #[test]
    fn validation() {
        let limits = Limits { max_payload_bytes: 10 };
        let ok: Action = serde_json::from_value(json!({"id": "c:1", "type": "t", "payload": [1]})).unwrap();
        assert_eq!(ok.validate(&limits).unwrap().n, 1);
        let empty = Action { kind: String::new(), ..ok.clone() };
        assert_eq!(empty.validate(&limits), Err(ActionError::EmptyType));
        let big = Action { payload: json!("0123456789"), ..ok.clone() };
        assert_eq!(big.validate(&limits), Err(ActionError::PayloadTooLarge { size: 12, limit: 10 }));
        assert_eq!(big.validate(&limits).unwrap_err().field(), "payload");
    }

    #[test]
    fn shapes() {
        let a: Action = serde_json::from_value(json!({"id": "c:1", "type": "stock/moved"})).unwrap();
        assert_eq!(a.payload, Value::Null);
        let err = serde_json::from_value::<Action>(json!({"id": "c:1", "type": "t", "paylod": 1})).unwrap_err();
        assert!(err.to_string().contains("paylod"), "{err}");
        let c = a.commit(7, 1_700_000_000_000, Some("alice".into()));
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"seq": 7, "ts": 1_700_000_000_000u64, "id": "c:1", "type": "stock/moved", "payload": null, "client": "alice"})
        );
    }

    #[test]
    fn invisible_formatting_characters_are_refused_in_the_client() {
        let refused = [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{FEFF}',
            '\u{2060}',
            '\u{00AD}',
            '\u{2028}',
            '\u{2029}',
            '\u{E0041}',
        ];
        for c in refused {
            for id in [format!("{c}web:1"), format!("we{c}b:1"), format!("web{c}:1")] {
                match id.parse::<ActionId>() {
                    Err(ActionError::InvalidId { reason, .. }) => assert!(reason.contains("invisible"), "{reason}"),
                    other => panic!("U+{:04X} in {id:?} should be refused, got {other:?}", c as u32),
                }
            }
        }
        // Visible non-ASCII is fine, and so are the characters next to the
        // refused ranges.
        for ok in ["café:1", "日本:2", "😀:3", "a\u{202F}b:4", "a\u{2065}b:5", "web-7f3a.tab:1"] {
            assert_eq!(ok.parse::<ActionId>().map(|id| id.to_string()).as_deref(), Ok(ok));
        }
        let message = "a\u{202E}b:1".parse::<ActionId>().unwrap_err().to_string();
        assert!(message.contains("\\u{202e}"), "the message shows the character escaped: {message}");
    }

    /// Strings made mostly of what ids are made of — and of the characters
    /// they must not hold — so that both valid and nearly valid ids come up.
    fn id_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => any::<char>(),
            4 => proptest::char::range('a', 'z'),
            3 => proptest::char::range('0', '9'),
            2 => Just(':'),
            1 => proptest::sample::select(vec![
                '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{200D}', '\u{200E}', '\u{200F}',
                '\u{061C}', '\u{FEFF}', '\u{2028}', '\u{E0020}', '\n', '\u{7F}', '\u{85}',
            ]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        /// Parsing never panics, and what parses prints back as the same
        /// id, with a client free of control and invisible characters.
        #[test]
        fn id_parse_never_panics_and_round_trips(s in prop_oneof![".{0,40}", id_like()]) {
            if let Ok(id) = s.parse::<ActionId>() {
                prop_assert_eq!(id.to_string(), s.clone());
                prop_assert_eq!(id.to_string().parse::<ActionId>(), Ok(id.clone()));
                prop_assert!(id.n >= 1 && !id.client.is_empty() && id.client.len() <= MAX_CLIENT_LEN);
                prop_assert!(!id.client.chars().any(|c| c.is_control() || is_invisible_format(c)), "{:?}", s);
            }
        }

        /// A client made of visible characters parses with any number, and
        /// one invisible formatting character anywhere in it refuses it.
        #[test]
        fn one_invisible_character_refuses_a_good_id(
            client in "[a-zA-Z0-9._:é日😀-]{1,30}",
            n in 1u64..,
            at in any::<proptest::sample::Index>(),
            bad in proptest::sample::select(vec![
                '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
                '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{FEFF}',
            ]),
        ) {
            let good = format!("{client}:{n}");
            prop_assert_eq!(good.parse::<ActionId>(), Ok(ActionId { client: client.clone(), n }));
            let mut chars: Vec<char> = client.chars().collect();
            chars.insert(at.index(chars.len() + 1), bad);
            let tainted: String = chars.into_iter().collect();
            let refused = format!("{tainted}:{n}").parse::<ActionId>();
            prop_assert!(matches!(refused, Err(ActionError::InvalidId { .. })), "{:?}", refused);
        }
    }
}
