//! The claims of a nodb token, and what they mean for a view.

use serde::{Deserialize, Serialize};

/// The claims of a token (the JWT's payload).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The client the bearer acts as.
    pub sub: String,
    /// Action type prefixes it may dispatch; `""` is every type but the
    /// control actions (`@@nodb/*`, admin only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dispatch: Vec<String>,
    /// Views it may read: `view`, `view/<JSON Pointer>` (only that subtree),
    /// or `*` (every view).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// It may read the raw log (`GET /actions`) and any client's position.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log: bool,
    /// Every right: control actions, the raw log, metrics, every view.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// An envoy's token: the only kind whose client may be `envoy-*`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub envoy: bool,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// How much of one view a token may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadScope {
    /// The whole view.
    Whole,
    /// Only the subtree at this JSON Pointer (never `""`).
    Subtree(String),
}

impl std::fmt::Display for ReadScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadScope::Whole => f.write_str("the whole view"),
            ReadScope::Subtree(pointer) => write!(f, "the subtree at {pointer:?}"),
        }
    }
}

impl ReadScope {
    /// Whether `pointer` (a JSON Pointer into the view) lies inside this
    /// scope: the subtree's root or below it.
    pub fn covers(&self, pointer: &str) -> bool {
        match self {
            ReadScope::Whole => true,
            ReadScope::Subtree(root) => {
                pointer == root || (pointer.starts_with(root.as_str()) && pointer[root.len()..].starts_with('/'))
            }
        }
    }
}

/// Why the claims cannot be used, even with a good signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// `sub` is empty or not a valid client id.
    #[error(
        "the token's client (`sub`) {0:?} is not a valid client id (1-128 of a-z A-Z 0-9 _ - . @, not starting with @)"
    )]
    BadClient(String),
    /// An `envoy-*` client without the `envoy` claim, or the reverse.
    #[error(
        "client ids envoy-* belong to envoy tokens only (`envoy: true`), and envoy tokens to envoy-* ids; got {0:?}"
    )]
    EnvoyClient(String),
    /// A `read` entry that is not `view`, `view/<pointer>` or `*`.
    #[error("the read entry {0:?} is not `view`, `view/<JSON Pointer>` or `*`")]
    BadRead(String),
    /// Two subtrees of one view.
    #[error("the token names view {0:?} twice in `read`; a token reads one subtree of a view at most")]
    TwoScopes(String),
}

impl Claims {
    /// Checks the claims are coherent: a valid client id, envoy ids only
    /// on envoy tokens, read entries that parse, one scope per view.
    ///
    /// # Errors
    /// The first thing wrong.
    pub fn validate(&self) -> Result<(), ClaimsError> {
        if !valid_client(&self.sub) {
            return Err(ClaimsError::BadClient(self.sub.clone()));
        }
        if self.sub.starts_with("envoy-") != self.envoy {
            return Err(ClaimsError::EnvoyClient(self.sub.clone()));
        }
        let mut seen: Vec<&str> = Vec::new();
        for entry in &self.read {
            let (view, _) = parse_read(entry).ok_or_else(|| ClaimsError::BadRead(entry.clone()))?;
            if view != "*" {
                if seen.contains(&view) {
                    return Err(ClaimsError::TwoScopes(view.to_string()));
                }
                seen.push(view);
            }
        }
        Ok(())
    }
}

/// Whether `client` is a client id a token may name: 1 to 128 ASCII
/// letters, digits and `_ - . @`, not starting with `@`.
fn valid_client(client: &str) -> bool {
    (1..=128).contains(&client.len())
        && !client.starts_with('@')
        && client.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
}

/// Splits a read entry into its view and scope; `None` if malformed.
pub(crate) fn parse_read(entry: &str) -> Option<(&str, ReadScope)> {
    if entry == "*" {
        return Some(("*", ReadScope::Whole));
    }
    let (view, scope) = match entry.find('/') {
        None => (entry, ReadScope::Whole),
        Some(i) => {
            let pointer = &entry[i..];
            if pointer == "/" || nodb_shared::Path::parse(pointer).is_err() {
                return None;
            }
            (&entry[..i], ReadScope::Subtree(pointer.to_string()))
        }
    };
    let ok =
        !view.is_empty() && view.len() <= 128 && view.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    ok.then_some((view, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_entries_parse_into_a_view_and_a_scope() {
        assert_eq!(parse_read("stock"), Some(("stock", ReadScope::Whole)));
        assert_eq!(parse_read("orders/alice"), Some(("orders", ReadScope::Subtree("/alice".into()))));
        assert_eq!(parse_read("orders/a~1b/c"), Some(("orders", ReadScope::Subtree("/a~1b/c".into()))));
        assert_eq!(parse_read("*"), Some(("*", ReadScope::Whole)));
        for bad in ["", "/x", "orders/", "a b", "orders/~2"] {
            assert_eq!(parse_read(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_subtree_covers_itself_and_below_only() {
        let s = ReadScope::Subtree("/alice".into());
        assert!(s.covers("/alice") && s.covers("/alice/cart") && s.covers("/alice/"));
        assert!(!s.covers("/alicex") && !s.covers("") && !s.covers("/bob"));
        assert!(ReadScope::Whole.covers(""));
    }

    #[test]
    fn envoy_ids_need_envoy_tokens() {
        let c = |sub: &str, envoy| Claims { sub: sub.into(), envoy, exp: 1, ..Claims::default() };
        assert!(c("envoy-reorder", true).validate().is_ok());
        assert_eq!(c("envoy-reorder", false).validate(), Err(ClaimsError::EnvoyClient("envoy-reorder".into())));
        assert!(c("alice", true).validate().is_err());
        assert!(c("", false).validate().is_err());
        assert!(c("a:b", false).validate().is_err());
        let two = Claims { read: vec!["o/a".into(), "o".into()], ..c("alice", false) };
        assert_eq!(two.validate(), Err(ClaimsError::TwoScopes("o".into())));
    }
}
