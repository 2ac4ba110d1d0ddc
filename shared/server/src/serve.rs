//! Serving a router: plain TCP or TLS, Nagle off, within the process's
//! [`Limits`], until shutdown; then the requests in flight get
//! [`Limits::drain_timeout`] to finish.
//!
//! Connections are served with hyper's HTTP/1 server directly (not
//! `axum::serve`, which cannot set a header read timeout). Each accepted
//! connection first takes a slot of the [`Enforcer`]: over the total or
//! the per-address cap it gets a `503` (plain TCP) or is closed at once
//! (TLS, after the handshake), is counted, and logged at debug. Every
//! request carries the caller's address ([`ConnectInfo`]) and the
//! [`Enforcer`], for the [`DispatchGate`](crate::rate::DispatchGate) and
//! [`SocketLimits`](crate::limits::SocketLimits) extractors.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::limits::{Limits, LimitsError};
use crate::metrics::Scrape;
use crate::rate::{DispatchLimiter, Refused};
use crate::tls::{Tls, TlsListener};

/// The limits of a process and their counters: the open connections (in
/// all, and per address) and the dispatch rate limiters. Clones share
/// them, so the listeners of one process (`nodb up` has two with TLS)
/// share one cap.
#[derive(Clone, Debug)]
pub struct Enforcer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: Limits,
    cap: usize,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connections refused over the total cap, and over the per-address one.
    refused: [AtomicU64; 2],
    dispatch: Arc<DispatchLimiter>,
}

/// A connection's place under the caps; given back when dropped.
struct Slot {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.open.fetch_sub(1, Relaxed);
        if self.inner.limits.max_connections_per_ip > 0 {
            let mut per_ip = self.inner.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// A connection's socket with its slot: the slot lives as long as the
/// socket, through a WebSocket upgrade too, so open streams count.
struct Counted<I> {
    io: I,
    _slot: Slot,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total(usize),
    PerIp(usize),
}

impl Enforcer {
    /// Counters for `limits`.
    ///
    /// # Errors
    /// Limits that do not [validate](Limits::validate).
    pub fn new(limits: Limits) -> Result<Enforcer, LimitsError> {
        limits.validate()?;
        let cap = limits.connection_cap();
        let dispatch = Arc::new(DispatchLimiter::new(limits.rates));
        let inner = Inner {
            limits,
            cap,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused: Default::default(),
            dispatch,
        };
        Ok(Enforcer { inner: Arc::new(inner) })
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The connection cap in force.
    pub fn connection_cap(&self) -> usize {
        self.inner.cap
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.inner.open.load(Relaxed)
    }

    /// Connections refused so far, over either cap.
    pub fn refused_connections(&self) -> u64 {
        self.inner.refused.iter().map(|n| n.load(Relaxed)).sum()
    }

    /// The limits' counters, added to a scrape of `/metrics`: connections
    /// open and refused (label `reason`: `max_connections`,
    /// `max_connections_per_ip`), and dispatches refused (label `reason`:
    /// `ip_rate`, `subject_rate`, `client_rate`, `over_burst`). They count
    /// for the whole process (`nodb up` shares one enforcer among its
    /// services).
    pub fn scrape_into(&self, scrape: &mut Scrape) {
        let inner = &self.inner;
        scrape.gauge(
            "nodb_connections_open",
            "Connections open now, WebSocket streams included.",
            inner.open.load(Relaxed) as u64,
        );
        scrape.gauge("nodb_connections_max", "The connection cap (--max-connections).", inner.cap as u64);
        let label = |reason: &str| vec![("reason", reason.to_string())];
        scrape.counters(
            "nodb_refused_connections",
            "Connections refused over a connection cap, per cap.",
            [
                (label("max_connections"), inner.refused[0].load(Relaxed)),
                (label("max_connections_per_ip"), inner.refused[1].load(Relaxed)),
            ],
        );
        scrape.counters(
            "nodb_refused_dispatches",
            "Dispatches refused over a rate limit (429), or larger than a burst (413), per limit.",
            Refused::ALL.map(|r| (label(r.label()), inner.dispatch.refused_for(r))),
        );
    }

    /// The dispatch rate limiters.
    pub fn dispatch_limiter(&self) -> Arc<DispatchLimiter> {
        self.inner.dispatch.clone()
    }

    /// A slot for a connection from `ip`, or why there is none.
    fn admit(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        let inner = &self.inner;
        if inner.open.fetch_add(1, Relaxed) >= inner.cap {
            inner.open.fetch_sub(1, Relaxed);
            return Err(self.refused(Refusal::Total(inner.cap), ip));
        }
        let per_ip_cap = inner.limits.max_connections_per_ip;
        if per_ip_cap > 0 {
            let mut per_ip = inner.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= per_ip_cap {
                drop(per_ip);
                inner.open.fetch_sub(1, Relaxed);
                return Err(self.refused(Refusal::PerIp(per_ip_cap), ip));
            }
            *n += 1;
        }
        Ok(Slot { inner: inner.clone(), ip })
    }

    fn refused(&self, why: Refusal, ip: IpAddr) -> Refusal {
        let counter = match why {
            Refusal::Total(_) => &self.inner.refused[0],
            Refusal::PerIp(_) => &self.inner.refused[1],
        };
        let refused = counter.fetch_add(1, Relaxed) + 1;
        match why {
            Refusal::Total(cap) => tracing::debug!(%ip, cap, refused, "connection refused: too many open"),
            Refusal::PerIp(cap) => tracing::debug!(%ip, cap, refused, "connection refused: too many from its address"),
        }
        why
    }

    /// `router` with the time limits on each request, the enforcer in
    /// each request's extensions, and the limits' counters in each
    /// `/metrics` answer.
    fn wrap(&self, router: Router) -> Router {
        let limits = &self.inner.limits;
        router
            .layer(axum::middleware::from_fn_with_state(self.clone(), with_limit_metrics))
            .layer(axum::Extension(self.clone()))
            .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
            .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
    }
}

/// The largest `/metrics` answer the limits' counters are added to.
const MAX_METRICS_TEXT: usize = 16 << 20;

/// Adds [`Enforcer::scrape_into`] to a service's own `/metrics` answer
/// (any `GET` path ending in `/metrics` answered 200 in the OpenMetrics
/// format: `nodb up` serves several), before its `# EOF`. Each service
/// builds its own scrape from its own counters; the limits are the
/// enforcer's, which only the serving layer knows.
async fn with_limit_metrics(
    axum::extract::State(enforcer): axum::extract::State<Enforcer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let is_metrics = request.method() == axum::http::Method::GET && request.uri().path().ends_with("/metrics");
    let response = next.run(request).await;
    let openmetrics = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/openmetrics-text"));
    if !is_metrics || !openmetrics || response.status() != axum::http::StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_METRICS_TEXT).await else {
        return crate::ApiError::new(nodb_shared::protocol::ErrorCode::Internal, "the metrics could not be read")
            .into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    let own = text.trim_end().strip_suffix("# EOF").unwrap_or(&text);
    let mut limits = Scrape::new();
    enforcer.scrape_into(&mut limits);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = format!("{own}{}", limits.text());
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// The answer to a connection over a cap, written without reading the
/// request.
fn refusal_response(why: Refusal) -> Vec<u8> {
    let message = match why {
        Refusal::Total(cap) => format!("the service has {cap} connections open, its limit; try again shortly"),
        Refusal::PerIp(cap) => {
            format!("your address has {cap} connections open, the limit per address; close some or try again later")
        }
    };
    let body = serde_json::to_string(&nodb_shared::protocol::ErrorBody::new(
        nodb_shared::protocol::ErrorCode::Unavailable,
        message,
    ))
    .unwrap_or_default();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` (over TLS when `tls` is given) with the
/// default [`Limits`] until `shutdown` is cancelled, then waits (a while)
/// for in-flight requests.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<&Tls>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let enforcer = Enforcer::new(Limits::default()).map_err(std::io::Error::other)?;
    serve_with(listener, router, tls, shutdown, &enforcer).await
}

/// Serves `router` on `listener` (over TLS when `tls` is given) within the
/// limits of `enforcer` until `shutdown` is cancelled; then stops
/// accepting, asks each connection to finish its request in flight, and
/// waits for them at most [`Limits::drain_timeout`].
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    tls: Option<&Tls>,
    shutdown: CancellationToken,
    enforcer: &Enforcer,
) -> std::io::Result<()> {
    let router = enforcer.wrap(router);
    let connections = TaskTracker::new();
    let conn = Conn { router, enforcer: enforcer.clone(), shutdown: shutdown.clone(), tracker: connections.clone() };
    match tls {
        None => loop {
            let (mut tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as
                        // axum's own listener does.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            match enforcer.admit(peer.ip()) {
                Ok(slot) => {
                    no_delay(&mut tcp);
                    conn.spawn(tcp, peer, slot);
                }
                // Best effort, without waiting: the socket closes next.
                Err(why) => drop(tcp.try_write(&refusal_response(why))),
            }
        },
        Some(tls) => {
            let mut listener = TlsListener::new(listener, tls, no_delay)?;
            loop {
                let (io, peer) = tokio::select! {
                    c = axum::serve::Listener::accept(&mut listener) => c,
                    () = shutdown.cancelled() => break,
                };
                // Over a cap, a TLS connection is closed at once.
                if let Ok(slot) = enforcer.admit(peer.ip()) {
                    conn.spawn(io, peer, slot);
                }
            }
        }
    }
    connections.close();
    let drain = enforcer.limits().drain_timeout;
    if tokio::time::timeout(drain, connections.wait()).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "some connections did not finish within {} s of shutdown; dropping them",
            drain.as_secs_f64()
        );
    }
    Ok(())
}

/// What each connection's task needs.
#[derive(Clone)]
struct Conn {
    router: Router,
    enforcer: Enforcer,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Conn {
    /// Serves one connection in a task of its own, holding its slot.
    fn spawn<I>(&self, io: I, peer: SocketAddr, slot: Slot)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let shutdown = self.shutdown.clone();
        let limits = self.enforcer.limits();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
        let service = hyper::service::service_fn(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let io = Counted { io, _slot: slot };
        self.tracker.spawn(async move {
            let conn = http.serve_connection(TokioIo::new(io), service).with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Turns off Nagle's algorithm on an accepted socket: a stream sends small
/// messages (an ack, then a patch) that must not wait for the peer's ACK.
fn no_delay(tcp: &mut TcpStream) {
    let _ = tcp.set_nodelay(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (SocketAddr, Enforcer, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|body: String| async move { body }))
            .route("/metrics", get(|| async { Scrape::new() }))
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }));
        let enforcer = Enforcer::new(limits).unwrap();
        let shutdown = CancellationToken::new();
        let (e, s) = (enforcer.clone(), shutdown.clone());
        let task = tokio::spawn(async move { serve_with(listener, router, None, s, &e).await.unwrap() });
        (addr, enforcer, shutdown, task)
    }

    /// Reads until the peer closes (or 5 s pass), returning what came.
    async fn read_to_close(tcp: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_header_timeout() {
        let limits = Limits { header_timeout: Duration::from_millis(200), ..Limits::default() };
        let (addr, _, _, _) = start(limits).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let t = std::time::Instant::now();
        read_to_close(&mut tcp).await;
        assert!(t.elapsed() < Duration::from_secs(4), "closed by the server");
        // A kept-alive connection idle after its request: the same limit.
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let t = std::time::Instant::now();
        read_to_close(&mut tcp).await;
        assert!(t.elapsed() < Duration::from_secs(4), "an idle kept-alive connection is closed too");
    }

    #[tokio::test]
    async fn a_stalled_body_and_a_slow_handler_get_408() {
        let limits = Limits {
            body_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _, _, _) = start(limits).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab").await.unwrap();
        let answer = read_to_close(&mut tcp).await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
    }

    #[tokio::test]
    async fn over_the_cap_a_connection_gets_503_and_the_others_are_served() {
        let limits = Limits { max_connections: Some(4), max_connections_per_ip: 2, ..Limits::default() };
        let (addr, enforcer, _, _) = start(limits).await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let answer = read_to_close(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"unavailable\""), "{answer}");
        assert_eq!(enforcer.refused_connections(), 1);
        a.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        let n = a.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        for line in [
            "nodb_refused_connections_total{reason=\"max_connections_per_ip\"} 1",
            "nodb_refused_connections_total{reason=\"max_connections\"} 0",
            "nodb_refused_dispatches_total{reason=\"ip_rate\"} 0",
            "nodb_connections_open 2",
            "nodb_connections_max 4",
        ] {
            assert!(answer.lines().any(|l| l == line), "no {line:?} in the service's own /metrics: {answer}");
        }
        assert!(answer.trim_end().ends_with("# EOF") && answer.matches("# EOF").count() == 1, "{answer}");
        drop(a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(enforcer.open_connections(), 1, "a closed connection gives its slot back");
    }

    #[tokio::test]
    async fn shutdown_waits_at_most_the_drain_time() {
        let limits = Limits { drain_timeout: Duration::from_millis(200), ..Limits::default() };
        let (addr, _, shutdown, task) = start(limits).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("serve returned").unwrap();
    }
}
