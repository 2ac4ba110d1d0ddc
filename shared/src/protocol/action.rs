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
    /// The first [`ActionError`] found: id, then type, then payload size
    /// and depth, then meta.
    pub fn validate(&self, limits: &Limits) -> Result<ActionId, ActionError> {
        let id = limits.check(&self.id, &self.kind, json_size(&self.payload))?;
        limits.check_depth(value_depth(&self.payload))?;
        limits.check_meta(self.meta.as_ref())?;
        Ok(id)
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
    json_size_of(v)
}

/// The length in bytes of anything's compact JSON text.
fn json_size_of<T: Serialize + ?Sized>(v: &T) -> usize {
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
    // Writing a Value or a map of strings to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// How deeply a payload may nest arrays and objects: `1` is 0 levels deep,
/// `[1]` one, `{"a": [1]}` two.
///
/// Readers parse the committed action with a recursion limit (serde_json's
/// is 128 levels, the payload's own and those of whatever wraps it), and
/// the payload is wrapped before anyone reads it: one level in the
/// committed action, two in a dispatch message (`{"type": "dispatch",
/// "action": {…}}`), a few more in the data view's patch messages. 100
/// leaves 27 levels for wrapping, so every accepted action is readable by
/// every consumer with serde_json's default limit.
pub const MAX_PAYLOAD_DEPTH: usize = 100;

/// Size limits on what clients send. Each bounds what a stored action may
/// cost, since the type and meta are stored and served with every action
/// just like its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest accepted payload, as compact JSON bytes. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// The deepest accepted payload nesting. Default (and most)
    /// [`MAX_PAYLOAD_DEPTH`].
    pub max_payload_depth: usize,
    /// The longest accepted action type, in bytes. Default 256.
    pub max_type_bytes: usize,
    /// The longest key in `meta`, in bytes. Default 256.
    pub max_meta_key_bytes: usize,
    /// The longest value in `meta`, in bytes. Default 4,096.
    pub max_meta_value_bytes: usize,
    /// The largest `meta` in all, as compact JSON bytes. Default 16 KiB.
    pub max_meta_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_payload_depth: MAX_PAYLOAD_DEPTH,
            max_type_bytes: 256,
            max_meta_key_bytes: 256,
            max_meta_value_bytes: 4096,
            max_meta_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    /// The contract's rules for an action with this id, type and payload
    /// size (bytes of JSON), returning the parsed id. [`Action::validate`]
    /// uses it, and so can a service that keeps payloads as raw JSON (which
    /// then checks [`Limits::check_depth`] and [`Limits::check_meta`] too).
    ///
    /// # Errors
    /// The first [`ActionError`] found: id, then type, then payload size.
    pub fn check(&self, id: &str, kind: &str, payload_bytes: usize) -> Result<ActionId, ActionError> {
        let id = id.parse::<ActionId>()?;
        if kind.is_empty() {
            return Err(ActionError::EmptyType);
        }
        if kind.len() > self.max_type_bytes {
            return Err(ActionError::TypeTooLong { size: kind.len(), limit: self.max_type_bytes });
        }
        if payload_bytes > self.max_payload_bytes {
            return Err(ActionError::PayloadTooLarge { size: payload_bytes, limit: self.max_payload_bytes });
        }
        Ok(id)
    }

    /// Checks a payload's nesting depth (from [`json_depth`] or
    /// [`value_depth`]).
    ///
    /// # Errors
    /// [`ActionError::PayloadTooDeep`] past `max_payload_depth`.
    pub fn check_depth(&self, depth: usize) -> Result<(), ActionError> {
        if depth > self.max_payload_depth {
            return Err(ActionError::PayloadTooDeep { limit: self.max_payload_depth });
        }
        Ok(())
    }

    /// Checks an action's `meta`: each key, each value, then the whole as
    /// compact JSON.
    ///
    /// # Errors
    /// The first [`ActionError`] found, in key order.
    pub fn check_meta(&self, meta: Option<&Meta>) -> Result<(), ActionError> {
        let Some(meta) = meta else { return Ok(()) };
        for (k, v) in meta {
            if k.len() > self.max_meta_key_bytes {
                return Err(ActionError::MetaKeyTooLong { size: k.len(), limit: self.max_meta_key_bytes });
            }
            if v.len() > self.max_meta_value_bytes {
                return Err(ActionError::MetaValueTooLong {
                    key: k.clone(),
                    size: v.len(),
                    limit: self.max_meta_value_bytes,
                });
            }
        }
        let size = json_size_of(meta);
        if size > self.max_meta_bytes {
            return Err(ActionError::MetaTooLarge { size, limit: self.max_meta_bytes });
        }
        Ok(())
    }

    /// Checks the limits make sense.
    ///
    /// # Errors
    /// A sentence naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_payload_bytes == 0 {
            return Err("the payload size limit must be at least 1 byte".into());
        }
        if self.max_payload_depth > MAX_PAYLOAD_DEPTH {
            return Err(format!(
                "the payload depth limit must be at most {MAX_PAYLOAD_DEPTH} levels (readers need the rest for \
                 wrapping), not {}",
                self.max_payload_depth
            ));
        }
        if self.max_type_bytes == 0 {
            return Err("the type length limit must be at least 1 byte".into());
        }
        Ok(())
    }
}

/// How deeply the JSON text `json` nests arrays and objects (`1`: 0,
/// `[1]`: 1, `{"a": [1]}`: 2), counting brackets outside strings. It reads
/// the text once, allocates nothing and never recurses, so it is safe on
/// any input; on text that is not JSON the answer means nothing.
pub fn json_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for (_, b) in outside_strings(json) {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The bytes of the JSON text `json` outside its strings (quotes
/// included), with their offsets: brackets, commas, colons, numbers,
/// literals and whitespace. One pass, no allocation.
pub fn outside_strings(json: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    json.iter().enumerate().filter_map(move |(i, &b)| {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            None
        } else if b == b'"' {
            in_string = true;
            None
        } else {
            Some((i, b))
        }
    })
}

/// How deeply `v` nests arrays and objects, as [`json_depth`] counts it,
/// without recursing (a value built in code may be deeper than any parser
/// would allow).
pub fn value_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    deepest
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
    /// The payload nests arrays and objects too deeply for readers.
    #[error(
        "the payload nests arrays and objects more than {limit} levels deep, which readers could not parse once \
         it is wrapped into the committed action"
    )]
    PayloadTooDeep {
        /// The limit, in levels.
        limit: usize,
    },
    /// The type is over the limit.
    #[error("the action type is {size} bytes, over the limit of {limit} bytes")]
    TypeTooLong {
        /// Its length in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A key of `meta` is over the limit.
    #[error("a meta key is {size} bytes, over the limit of {limit} bytes")]
    MetaKeyTooLong {
        /// The key's length in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A value of `meta` is over the limit.
    #[error("the meta value of {key:?} is {size} bytes, over the limit of {limit} bytes")]
    MetaValueTooLong {
        /// Its key.
        key: String,
        /// The value's length in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The whole `meta` is over the limit.
    #[error("the meta is {size} bytes as JSON, over the limit of {limit} bytes")]
    MetaTooLarge {
        /// Its size as compact JSON.
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
            ActionError::EmptyType | ActionError::TypeTooLong { .. } => "type",
            ActionError::PayloadTooLarge { .. }
            | ActionError::PayloadTooDeep { .. }
            | ActionError::InvalidPayload { .. } => "payload",
            ActionError::MetaKeyTooLong { .. }
            | ActionError::MetaValueTooLong { .. }
            | ActionError::MetaTooLarge { .. } => "meta",
        }
    }

    /// The wire error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            // Every size limit answers as a body over the limit does: 413.
            ActionError::PayloadTooLarge { .. }
            | ActionError::TypeTooLong { .. }
            | ActionError::MetaKeyTooLong { .. }
            | ActionError::MetaValueTooLong { .. }
            | ActionError::MetaTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ActionError::InvalidId { .. }
            | ActionError::EmptyType
            | ActionError::InvalidPayload { .. }
            | ActionError::PayloadTooDeep { .. } => ErrorCode::InvalidAction,
        }
    }
}

#[cfg(test)]
mod tests;
