//! The check every request to a nodb service passes, before any handler:
//!
//! 1. **Host.** A service listening on loopback answers only requests for a
//!    loopback name (`localhost`, `*.localhost`, `127.0.0.1`, `[::1]`), so
//!    a web page cannot reach it by pointing its own domain at 127.0.0.1
//!    (DNS rebinding).
//! 2. **Origin.** A browser names the page's origin on every WebSocket
//!    upgrade and cross-origin request; it must be the service's own
//!    origin (the `Host` asked for) or one allowed with
//!    [`Access::allow_origins`]. Allowed foreign origins get CORS headers
//!    and preflight answers. Requests without `Origin` (not from a page)
//!    pass.
//! 3. **Token.** `Authorization: Bearer <jwt>`, or `?token=<jwt>` where a
//!    browser cannot set headers (WebSockets). With keys, it is verified;
//!    without keys the service is open and every request may do anything.
//!
//! Handlers that need rights take a [`Caller`]: a missing or refused token
//! is a 401 there, so what takes no `Caller` (the health check, the static
//! files) is public.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nodb_auth::{Grant, KeySet};
use nodb_shared::protocol::ErrorCode;

use crate::error::ApiError;

/// The access settings of one service.
#[derive(Clone, Debug, Default)]
pub struct Access {
    inner: Arc<Settings>,
}

#[derive(Debug, Default)]
struct Settings {
    keys: Option<KeySet>,
    /// Allowed foreign origins, as `scheme://host[:port]`.
    origins: Vec<String>,
    any_origin: bool,
    loopback: bool,
    /// Tokens verified already, so a client that sends the same token with
    /// every request pays for the signature once.
    verified: Verified,
}

/// The most tokens remembered as verified; past it the memory starts over.
const VERIFIED_CAPACITY: usize = 4096;

/// Tokens whose signature and claims have been checked, with their claims
/// (the times are still checked on every use).
#[derive(Debug, Default)]
struct Verified(std::sync::Mutex<std::collections::HashMap<Box<str>, Arc<nodb_auth::Claims>>>);

impl Verified {
    fn get(&self, token: &str) -> Option<Arc<nodb_auth::Claims>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned()
    }

    fn insert(&self, token: &str, claims: Arc<nodb_auth::Claims>) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= VERIFIED_CAPACITY {
            map.clear();
        }
        map.insert(token.into(), claims);
    }
}

/// The outcome of the token check, left for [`Caller`].
#[derive(Clone)]
enum Authn {
    Granted(Caller),
    Refused(ApiError),
}

/// Who is calling: the rights of the request's token (everything when the
/// service is open), and the token itself, for requests made on its
/// behalf (a data view relays a browser's dispatches with its token).
#[derive(Clone, Debug)]
pub struct Caller {
    /// What the request may do.
    pub grant: Grant,
    /// The token it came with.
    pub token: Option<String>,
}

impl Access {
    /// A service without keys: every request may do anything.
    pub fn open() -> Access {
        Access::default()
    }

    /// A service that verifies tokens with `keys` (`None`: open).
    pub fn new(keys: Option<KeySet>) -> Access {
        Access { inner: Arc::new(Settings { keys, ..Settings::default() }) }
    }

    /// Also allows pages of these origins (`https://app.example`, or `*`
    /// for any) besides the service's own.
    ///
    /// # Errors
    /// An origin that is not `scheme://host[:port]`.
    pub fn allow_origins(self, origins: &[String]) -> Result<Access, String> {
        let mut settings =
            Settings { keys: self.inner.keys.clone(), loopback: self.inner.loopback, ..Settings::default() };
        for origin in origins {
            if origin == "*" {
                settings.any_origin = true;
                continue;
            }
            let url = url::Url::parse(origin).map_err(|e| format!("allowed origin {origin:?}: {e}"))?;
            let exact = url.origin().ascii_serialization();
            if !matches!(url.scheme(), "http" | "https") || exact.trim_end_matches('/') != origin.trim_end_matches('/')
            {
                return Err(format!("allowed origin {origin:?} must be scheme://host[:port], e.g. {exact}"));
            }
            settings.origins.push(exact);
        }
        Ok(Access { inner: Arc::new(settings) })
    }

    /// Refuses requests whose `Host` is not a loopback name: for a service
    /// listening on loopback.
    #[must_use]
    pub fn loopback_only(self, loopback: bool) -> Access {
        let s = &self.inner;
        let settings = Settings {
            keys: s.keys.clone(),
            origins: s.origins.clone(),
            any_origin: s.any_origin,
            loopback,
            verified: Verified::default(),
        };
        Access { inner: Arc::new(settings) }
    }

    /// The key that signs what the service signs (checkpoints of the log),
    /// when it has keys.
    pub fn signing_key(&self) -> Option<&nodb_auth::Key> {
        self.inner.keys.as_ref().and_then(|k| k.signing_key())
    }

    /// Whether the service checks tokens.
    pub fn is_open(&self) -> bool {
        self.inner.keys.is_none()
    }

    /// The rights of `token` (everything when open).
    ///
    /// # Errors
    /// 401: no token on a service with keys, or one that does not verify.
    pub fn grant(&self, token: Option<&str>) -> Result<Grant, ApiError> {
        let Some(keys) = &self.inner.keys else { return Ok(Grant::Open) };
        let token = token.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "this service needs a token: send `Authorization: Bearer <token>` (or `?token=` on a WebSocket)",
            )
        })?;
        let now = nodb_auth::key::now();
        if let Some(claims) = self.inner.verified.get(token) {
            // Verified before: only time can have made it invalid.
            if claims.exp <= now {
                return Err(nodb_auth::TokenError::Expired.into());
            }
            if claims.nbf.is_none_or(|nbf| nbf <= now) {
                return Ok(Grant::Token(claims));
            }
        }
        let claims = Arc::new(keys.verify(token, now)?);
        self.inner.verified.insert(token, claims.clone());
        Ok(Grant::Token(claims))
    }

    /// Adds the check to every route of `router`, and gives axum's own
    /// plain-text rejections (a path segment that is not UTF-8, …) the
    /// JSON error body.
    pub fn layer<S: Clone + Send + Sync + 'static>(&self, router: axum::Router<S>) -> axum::Router<S> {
        router
            .layer(axum::middleware::map_response(crate::error::rejections_as_json))
            .layer(axum::middleware::from_fn_with_state(self.clone(), check))
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let s = &self.inner;
        if s.any_origin || s.origins.iter().any(|o| o == origin) {
            return true;
        }
        // The service's own origin: the page was served by the Host asked for.
        let Ok(url) = url::Url::parse(origin) else { return false };
        let authority = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return false,
        };
        host.is_some_and(|h| h.eq_ignore_ascii_case(&authority))
    }
}

/// The WebSocket close code sent when a stream's token expires (4000-4999
/// are the application's; 4401 echoes HTTP 401). The client gets a fresh
/// token and reconnects with `since`.
pub const EXPIRED_CLOSE_CODE: u16 = 4401;

/// Resolves when `grant`'s token expires; never for an open service.
pub async fn expiry(grant: &Grant) {
    match grant.expires() {
        None => std::future::pending().await,
        Some(exp) => {
            let left = exp.saturating_sub(nodb_auth::key::now());
            tokio::time::sleep(std::time::Duration::from_secs(left)).await;
        }
    }
}

/// The close frame of a stream whose token expired.
pub fn expired_close() -> axum::extract::ws::Message {
    axum::extract::ws::Message::Close(Some(axum::extract::ws::CloseFrame {
        code: EXPIRED_CLOSE_CODE,
        reason: "token expired".into(),
    }))
}

/// Whether a `Host` header names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name.starts_with("127.") && name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The token of a request: the bearer header, else `?token=`.
fn token_of(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(token.trim().to_string());
        }
    }
    url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
}

/// The middleware: Host, Origin, then the token, left in the request's
/// extensions for [`Caller`].
async fn check(State(access): State<Access>, mut req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string);
    if access.inner.loopback
        && let Some(h) = &host
        && !is_loopback_host(h)
    {
        let message = format!(
            "this service listens on loopback and answers only requests for localhost, not {h:?} (a page on another domain must not reach it)"
        );
        return ApiError { right: Some("host".into()), ..ApiError::new(ErrorCode::Forbidden, message) }.into_response();
    }
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
    let mut cors = None;
    if let Some(origin) = &origin {
        if !access.origin_allowed(origin, host.as_deref()) {
            let message = format!("requests from pages of {origin:?} are not allowed here (see --allow-origin)");
            return ApiError { right: Some("origin".into()), ..ApiError::new(ErrorCode::Forbidden, message) }
                .into_response();
        }
        cors = HeaderValue::from_str(origin).ok();
        if req.method() == Method::OPTIONS {
            return preflight(cors);
        }
    }
    let token = token_of(req.headers(), req.uri().query());
    let authn = match access.grant(token.as_deref()) {
        Ok(grant) => Authn::Granted(Caller { grant, token }),
        Err(e) => Authn::Refused(e),
    };
    req.extensions_mut().insert(authn);
    let mut response = next.run(req).await;
    if let Some(origin) = cors {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The answer to a CORS preflight from an allowed origin.
fn preflight(origin: Option<HeaderValue>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    r
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        match parts.extensions.get::<Authn>() {
            Some(Authn::Granted(caller)) => Ok(caller.clone()),
            Some(Authn::Refused(e)) => Err(e.clone()),
            // Fails closed: a route outside the access layer is a bug.
            None => Err(ApiError::new(ErrorCode::Internal, "this route is not behind the access check")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use nodb_auth::{Claims, Key};
    use tower::ServiceExt as _;

    async fn who(caller: Caller) -> String {
        caller.grant.claims().map_or("open".into(), |c| c.sub.clone())
    }

    fn app(access: &Access) -> axum::Router {
        access.layer(axum::Router::new().route("/who", get(who)).route("/health", get(|| async { "ok" })))
    }

    async fn call(app: &axum::Router, uri: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut req = Request::builder().uri(uri).header("host", "localhost:7400");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = r.status().as_u16();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn tokens_come_as_a_bearer_header_or_a_query_parameter() {
        let key = Key::generate();
        let app = app(&Access::new(Some(KeySet::new(vec![key.clone()]))));
        let token =
            key.mint(&Claims { sub: "alice".into(), exp: nodb_auth::key::now() + 60, ..Claims::default() }).unwrap();
        assert_eq!(call(&app, "/who", &[("authorization", &format!("Bearer {token}"))]).await, (200, "alice".into()));
        assert_eq!(call(&app, &format!("/who?x=1&token={token}"), &[]).await, (200, "alice".into()));
        let (status, body) = call(&app, "/who", &[]).await;
        assert_eq!(status, 401);
        assert!(body.contains("unauthorized"), "{body}");
        assert_eq!(call(&app, "/who?token=garbage", &[]).await.0, 401);
        let expired = key.mint(&Claims { sub: "alice".into(), exp: 1, ..Claims::default() }).unwrap();
        let (status, body) = call(&app, &format!("/who?token={expired}"), &[]).await;
        assert_eq!(status, 401);
        assert!(body.contains("expired"), "{body}");
        assert_eq!(call(&app, "/health", &[]).await, (200, "ok".into()), "public without a token");
        assert_eq!(call(&self::app(&Access::open()), "/who", &[]).await, (200, "open".into()));
    }

    #[tokio::test]
    async fn foreign_hosts_and_origins_are_refused() {
        let app = app(&Access::open().loopback_only(true));
        assert_eq!(call(&app, "/health", &[]).await.0, 200);
        let r = app
            .clone()
            .oneshot(Request::builder().uri("/health").header("host", "evil.example").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(call(&app, "/who", &[("origin", "http://localhost:7400")]).await.0, 200);
        assert_eq!(call(&app, "/who", &[("origin", "https://evil.example")]).await.0, 403);
        assert_eq!(call(&app, "/who", &[("origin", "null")]).await.0, 403);
        let allowed = self::app(&Access::open().allow_origins(&["https://app.example".into()]).unwrap());
        assert_eq!(call(&allowed, "/who", &[("origin", "https://app.example")]).await.0, 200);
        assert_eq!(call(&allowed, "/who", &[("origin", "https://app.example:8443")]).await.0, 403);
        assert!(Access::open().allow_origins(&["app.example".into()]).is_err());
        assert!(Access::open().allow_origins(&["https://app.example/path".into()]).is_err());
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let key = Key::generate();
        let access = Access::new(Some(KeySet::new(vec![key.clone()])));
        let exp = nodb_auth::key::now() + 1;
        let token = key.mint(&Claims { sub: "a".into(), exp, ..Claims::default() }).unwrap();
        assert!(access.grant(Some(&token)).is_ok());
        assert!(access.grant(Some(&token)).is_ok(), "from memory");
        let other = Key::generate().mint(&Claims { sub: "a".into(), exp, ..Claims::default() }).unwrap();
        assert!(access.grant(Some(&other)).is_err(), "another key's token is not remembered as good");
        while nodb_auth::key::now() < exp {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let e = access.grant(Some(&token)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert!(e.message.contains("expired"), "{}", e.message);
    }

    #[test]
    fn loopback_names() {
        for h in ["localhost", "localhost:7400", "127.0.0.1:1", "[::1]:80", "a.localhost", "127.1.2.3"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["evil.example", "127.0.0.1.evil.example", "localhost.evil", "10.0.0.1:80", "[::2]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
