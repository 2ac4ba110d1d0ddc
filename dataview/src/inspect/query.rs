//! The parameters of `GET /history`, read and checked: a bad one is a 400
//! `bad_request` naming it, before anything is read.

use nodb_viewserver::ApiError;
use serde::Deserialize;

/// How many actions one page holds when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most actions one page holds; a larger `limit` is cut to this.
pub const MAX_LIMIT: usize = 1000;
/// The longest `type` or `client` filter, in bytes: the longest type and
/// client part an action may have (`docs/protocol.md`).
pub const MAX_FILTER: usize = 256;

/// The query of `GET /history`, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    /// The first seq (default 1).
    pub from: Option<String>,
    /// The last seq (default and at most the data view's seq).
    pub to: Option<String>,
    /// The most matches to return (default 100, at most 1000).
    pub limit: Option<String>,
    /// An exact type, or a prefix ending in `*`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// An exact client (the part of the id before its last `:`), or a
    /// prefix ending in `*`.
    pub client: Option<String>,
}

/// A text filter: the whole text, or a prefix (written `prefix*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// Exactly this text.
    Exact(String),
    /// Any text starting with this.
    Prefix(String),
}

impl Match {
    /// `text*` is a prefix, anything else exact; `None` for an empty
    /// filter or a bare `*` (everything).
    fn parse(text: &str) -> Option<Match> {
        match text.strip_suffix('*') {
            Some("") => None,
            Some(prefix) => Some(Match::Prefix(prefix.to_string())),
            None if text.is_empty() => None,
            None => Some(Match::Exact(text.to_string())),
        }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Match::Exact(e) => text == e,
            Match::Prefix(p) => text.starts_with(p.as_str()),
        }
    }

    /// The prefix the chronicler's `types=` filter can be given for this
    /// filter, if its semantics allow: it keeps types that *start with*
    /// one of its comma-separated, whitespace-trimmed prefixes, so a filter
    /// holding a comma or surrounding whitespace is applied here only. An
    /// exact type is passed as a prefix too (it keeps a superset) and then
    /// checked exactly here.
    pub fn chronicler_prefix(&self) -> Option<&str> {
        let (Match::Exact(p) | Match::Prefix(p)) = self;
        (!p.is_empty() && !p.contains(',') && p.trim() == p).then_some(p.as_str())
    }
}

/// A checked `GET /history` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRequest {
    /// The first seq, at least 1.
    pub from: u64,
    /// The last seq asked for (cut to the data view's seq when read).
    pub to: Option<u64>,
    /// The most matches to return, 1 to 1,000.
    pub limit: usize,
    /// The type filter.
    pub kind: Option<Match>,
    /// The client filter.
    pub client: Option<Match>,
}

/// A parameter of `GET /history` that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Not a number in range.
    #[error("`{name}` must be {what}, not {got:?}")]
    Invalid {
        /// The parameter.
        name: &'static str,
        /// What it must be.
        what: &'static str,
        /// What was sent.
        got: String,
    },
    /// `to` before `from`.
    #[error("`to` ({to}) must not be before `from` ({from})")]
    Backwards {
        /// The first seq asked for.
        from: u64,
        /// The last seq asked for.
        to: u64,
    },
    /// A filter longer than any type or client can be.
    #[error("`{name}` is {len} bytes, over the limit of {limit}")]
    TooLong {
        /// The parameter.
        name: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

/// A seq parameter: absent or empty is `None`; otherwise a number ≥ `min`.
fn seq(name: &'static str, text: Option<&str>, min: u64) -> Result<Option<u64>, QueryError> {
    let what = if min == 0 { "a seq" } else { "a seq of 1 or more" };
    match text {
        None | Some("") => Ok(None),
        Some(t) => match t.parse::<u64>() {
            Ok(n) if n >= min => Ok(Some(n)),
            _ => Err(QueryError::Invalid { name, what, got: t.to_string() }),
        },
    }
}

fn filter(name: &'static str, text: Option<&str>) -> Result<Option<Match>, QueryError> {
    let text = text.unwrap_or("");
    if text.len() > MAX_FILTER + 1 {
        return Err(QueryError::TooLong { name, len: text.len(), limit: MAX_FILTER });
    }
    Ok(Match::parse(text))
}

impl HistoryQuery {
    /// Checks the query.
    ///
    /// # Errors
    /// [`QueryError`] naming the first bad parameter.
    pub fn parse(&self) -> Result<HistoryRequest, QueryError> {
        let from = seq("from", self.from.as_deref(), 1)?.unwrap_or(1);
        let to = seq("to", self.to.as_deref(), 1)?;
        if let Some(to) = to
            && to < from
        {
            return Err(QueryError::Backwards { from, to });
        }
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_LIMIT,
            Some(t) => match t.parse::<u64>() {
                Ok(n) if n >= 1 => n.min(MAX_LIMIT as u64) as usize,
                _ => return Err(QueryError::Invalid { name: "limit", what: "a number of 1 or more", got: t.into() }),
            },
        };
        Ok(HistoryRequest {
            from,
            to,
            limit,
            kind: filter("type", self.kind.as_deref())?,
            client: filter("client", self.client.as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: &str, to: &str, limit: &str, kind: &str, client: &str) -> HistoryQuery {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        HistoryQuery { from: some(from), to: some(to), limit: some(limit), kind: some(kind), client: some(client) }
    }

    #[test]
    fn defaults_and_limits() {
        let r = q("", "", "", "", "").parse().unwrap();
        assert_eq!(r, HistoryRequest { from: 1, to: None, limit: DEFAULT_LIMIT, kind: None, client: None });
        assert_eq!(q("5", "9", "5000", "", "").parse().unwrap().limit, MAX_LIMIT);
        assert_eq!(q("5", "5", "1", "", "").parse().unwrap().to, Some(5));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, word) in [
            (q("0", "", "", "", ""), "`from`"),
            (q("x", "", "", "", ""), "`from`"),
            (q("-1", "", "", "", ""), "`from`"),
            (q("", "0", "", "", ""), "`to`"),
            (q("9", "5", "", "", ""), "`to`"),
            (q("", "", "0", "", ""), "`limit`"),
            (q("", "", "ten", "", ""), "`limit`"),
            (q("", "", "", &"t".repeat(300), ""), "`type`"),
            (q("", "", "", "", &"c".repeat(300)), "`client`"),
        ] {
            let e = query.parse().unwrap_err().to_string();
            assert!(e.contains(word), "{e:?} should name {word}");
        }
    }

    #[test]
    fn a_star_at_the_end_is_a_prefix() {
        assert_eq!(Match::parse("stock/*"), Some(Match::Prefix("stock/".into())));
        assert_eq!(Match::parse("stock/sold"), Some(Match::Exact("stock/sold".into())));
        assert_eq!(Match::parse("*"), None);
        assert_eq!(Match::parse(""), None);
        assert_eq!(Match::parse("a*b"), Some(Match::Exact("a*b".into())));
        let exact = Match::Exact("stock/sold".into());
        assert!(exact.matches("stock/sold") && !exact.matches("stock/sold-out") && !exact.matches("stock/"));
        let prefix = Match::Prefix("stock/".into());
        assert!(prefix.matches("stock/sold") && prefix.matches("stock/") && !prefix.matches("stockx"));
    }

    #[test]
    fn only_prefixes_the_chronicler_reads_alike_are_passed_on() {
        assert_eq!(Match::Exact("stock/sold".into()).chronicler_prefix(), Some("stock/sold"));
        assert_eq!(Match::Prefix("stock/".into()).chronicler_prefix(), Some("stock/"));
        assert_eq!(Match::Exact("a,b".into()).chronicler_prefix(), None);
        assert_eq!(Match::Exact(" a".into()).chronicler_prefix(), None);
        assert_eq!(Match::Prefix("a ".into()).chronicler_prefix(), None);
    }
}
