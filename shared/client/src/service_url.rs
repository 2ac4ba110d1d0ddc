//! [`ServiceUrl`]: where a nodb service is, `http://HOST:PORT[/PREFIX]` or
//! `https://…`, and the HTTP and WebSocket URLs of its endpoints.

use std::fmt;
use std::str::FromStr;

use url::Url;

/// The base URL of a nodb service (a chronicler, a data view, a cascade):
/// `http://HOST[:PORT][/PREFIX]` or `https://…`, without user, query or
/// fragment. A missing port is the scheme's (80, 443); a trailing `/` is
/// dropped.
///
/// ```
/// # use nodb_client::ServiceUrl;
/// let base: ServiceUrl = "https://nodb.example.com/api/".parse().unwrap();
/// assert_eq!(base.to_string(), "https://nodb.example.com/api");
/// assert_eq!(base.http("views/stock").as_str(), "https://nodb.example.com/api/views/stock");
/// assert_eq!(base.ws("actions", &[("from", "7")]).as_str(), "wss://nodb.example.com/api/actions?from=7");
/// ```
///
/// It may carry a token source ([`ServiceUrl::with_token_source`]): every
/// request and WebSocket made from it then sends `Authorization: Bearer …`.
/// Two service URLs are equal when their URLs are, whatever their tokens.
#[derive(Clone)]
pub struct ServiceUrl {
    /// The parsed URL, its path without a trailing `/` (empty at the root).
    base: Url,
    /// The token every request to it carries, if it needs one.
    token: Option<crate::token::TokenSource>,
}

impl PartialEq for ServiceUrl {
    fn eq(&self, other: &ServiceUrl) -> bool {
        self.base == other.base
    }
}

impl Eq for ServiceUrl {}

impl std::hash::Hash for ServiceUrl {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.base.hash(state);
    }
}

/// Why a text is not a service URL. Each message is a sentence saying
/// what is wrong, with the text given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The text is not a URL at all.
    #[error("{url:?} is not a URL ({reason}); give one like http://127.0.0.1:7401")]
    Unparsable {
        /// The text given.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// A scheme other than `http` or `https`.
    #[error("{url:?} must start with http:// or https://, like http://127.0.0.1:7401")]
    Scheme {
        /// The text given.
        url: String,
    },
    /// A part a service URL does not take.
    #[error("{url:?} must not have {part}: give only http://HOST:PORT and perhaps a path prefix")]
    Extra {
        /// The text given.
        url: String,
        /// The part: `a user name or password`, `a query` or `a fragment`.
        part: &'static str,
    },
}

impl ServiceUrl {
    /// Parses a service's base URL.
    ///
    /// # Errors
    /// [`UrlError`] saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<ServiceUrl, UrlError> {
        let mut base = Url::parse(text.trim())
            .map_err(|e| UrlError::Unparsable { url: text.to_string(), reason: e.to_string() })?;
        let extra = |part| Err(UrlError::Extra { url: text.to_string(), part });
        if !matches!(base.scheme(), "http" | "https") {
            return Err(UrlError::Scheme { url: text.to_string() });
        }
        if !base.username().is_empty() || base.password().is_some() {
            return extra("a user name or password");
        }
        if base.query().is_some() {
            return extra("a query");
        }
        if base.fragment().is_some() {
            return extra("a fragment");
        }
        let path = base.path().trim_end_matches('/').to_string();
        base.set_path(&path);
        Ok(ServiceUrl { base, token: None })
    }

    /// The same service, with requests carrying this token (`None`: none).
    #[must_use]
    pub fn with_token(self, token: Option<String>) -> ServiceUrl {
        self.with_token_source(token.map(crate::token::TokenSource::Fixed))
    }

    /// The same service, with requests carrying tokens from `source`.
    #[must_use]
    pub fn with_token_source(mut self, source: Option<crate::token::TokenSource>) -> ServiceUrl {
        self.token = source;
        self
    }

    /// The token to send now, if the service is given one.
    ///
    /// # Errors
    /// A token file that cannot be read.
    pub fn bearer(&self) -> Result<Option<String>, crate::token::TokenFileError> {
        self.token.as_ref().map(crate::token::TokenSource::token).transpose()
    }

    /// Whether the service is reached over TLS (`https`, so `wss`).
    pub fn is_tls(&self) -> bool {
        self.base.scheme() == "https"
    }

    /// `HOST:PORT`, the port made explicit.
    pub fn authority(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    /// The `http(s)://` URL of `path` (relative to the prefix; a leading `/`
    /// is ignored).
    pub fn http(&self, path: &str) -> Url {
        self.endpoint(path, &[])
    }

    /// The `http(s)://` URL of `path` with `query` (names and values are
    /// percent-encoded as needed).
    pub fn http_with(&self, path: &str, query: &[(&str, &str)]) -> Url {
        self.endpoint(path, query)
    }

    /// The `ws://` (or, for `https`, `wss://`) URL of `path` with `query`.
    pub fn ws(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.endpoint(path, query);
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        // Both schemes are "special" with the same default ports, so this
        // cannot fail.
        let _ = url.set_scheme(scheme);
        url
    }

    fn endpoint(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}/{}", self.base.path().trim_end_matches('/'), path.trim_start_matches('/')));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

impl fmt::Display for ServiceUrl {
    /// The URL without a trailing `/`: `http://127.0.0.1:7401`,
    /// `https://example.com/nodb`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceUrl({self})")
    }
}

impl FromStr for ServiceUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_with_and_without_a_prefix() {
        let plain = ServiceUrl::parse("http://127.0.0.1:7401").unwrap();
        assert_eq!(plain.to_string(), "http://127.0.0.1:7401");
        assert!(!plain.is_tls());
        assert_eq!(plain.authority(), "127.0.0.1:7401");
        assert_eq!(plain.http("/actions").as_str(), "http://127.0.0.1:7401/actions");
        assert_eq!(
            plain.ws("actions", &[("from", "5"), ("types", "stock/,reorder/")]).as_str(),
            "ws://127.0.0.1:7401/actions?from=5&types=stock%2F%2Creorder%2F"
        );
        let prefixed = ServiceUrl::parse("http://h:1/base/").unwrap();
        assert_eq!(prefixed.to_string(), "http://h:1/base");
        assert_eq!(prefixed.http("views/stock").as_str(), "http://h:1/base/views/stock");
        assert_eq!(prefixed.ws("/ws", &[]).as_str(), "ws://h:1/base/ws");
        let tls = ServiceUrl::parse("https://nodb.example.com").unwrap();
        assert!(tls.is_tls());
        assert_eq!(tls.authority(), "nodb.example.com:443");
        assert_eq!(tls.http_with("views/stock", &[("at", "9")]).as_str(), "https://nodb.example.com/views/stock?at=9");
        assert_eq!(tls.ws("views/stock/stream", &[]).as_str(), "wss://nodb.example.com/views/stock/stream");
        let v6 = ServiceUrl::parse("http://[::1]:80/").unwrap();
        assert_eq!((v6.to_string().as_str(), v6.authority().as_str()), ("http://[::1]", "[::1]:80"));
        assert_eq!("http://h:1".parse::<ServiceUrl>().unwrap(), ServiceUrl::parse("http://h:1/").unwrap());
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let cases = [
            ("h:1", "must start with http:// or https://"),
            ("localhost:7401", "must start with http:// or https://"),
            ("ws://h:1", "must start with http:// or https://"),
            ("127.0.0.1:7401", "is not a URL"),
            ("http://h:x", "is not a URL (invalid port number)"),
            ("http://:1", "is not a URL (empty host)"),
            ("", "is not a URL"),
            ("http://u@h:1", "must not have a user name or password"),
            ("http://h:1/?x", "must not have a query"),
            ("http://h:1/#top", "must not have a fragment"),
        ];
        for (text, says) in cases {
            let e = ServiceUrl::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.contains(&format!("{text:?}")), "{text:?}: {e}");
        }
    }
}
