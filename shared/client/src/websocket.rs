//! Opening a WebSocket: `ws://` or `wss://` (TLS through rustls), Nagle's
//! algorithm off, within a time limit, with a refusal's HTTP status and
//! error body kept apart from other failures.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::{Host, Url};

use crate::error::{ConnectError, Error, Refusal, cut, error_chain};

/// An open WebSocket, over TLS or not.
pub type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The read buffer of a WebSocket opened here: 16 KiB.
///
/// `tungstenite` zero-fills the whole free part of its read buffer before
/// every read of the socket (snapview/tungstenite-rs issue 547), so the
/// cost of each read follows the buffer's size, not the bytes read. With
/// its default of 128 KiB, a client receiving small messages spent most
/// of its CPU in that fill. A larger message is still read whole, in more
/// reads.
pub const READ_BUFFER: usize = 16 * 1024;

/// The largest message a WebSocket opened here accepts: 512 MiB, twice a
/// view's largest state (`nodb_shared::tree::limits::MAX_BYTES`) so that
/// a snapshot of any view a data view keeps can be read, in one frame or
/// many.
pub const MAX_MESSAGE: usize = 2 * nodb_shared::tree::limits::MAX_BYTES as usize;

/// How WebSockets are opened: a time limit, the certificates trusted for
/// `wss://`, the read buffer and the largest message accepted.
#[derive(Clone)]
pub struct WsConnector {
    timeout: Duration,
    /// `None`: the platform's roots, loaded on the first `wss://` connect.
    tls: Option<Arc<rustls::ClientConfig>>,
    config: WebSocketConfig,
}

impl Default for WsConnector {
    fn default() -> Self {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        WsConnector { timeout: Duration::from_secs(10), tls: None, config }
    }
}

impl std::fmt::Debug for WsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots = if self.tls.is_some() { "given" } else { "platform" };
        f.debug_struct("WsConnector")
            .field("timeout", &self.timeout)
            .field("roots", &roots)
            .field("read_buffer", &self.config.read_buffer_size)
            .field("max_message", &self.config.max_message_size)
            .finish()
    }
}

impl WsConnector {
    /// A connector with a 10 s time limit that trusts the platform's roots.
    pub fn new() -> WsConnector {
        WsConnector::default()
    }

    /// The same, with `timeout` for the TCP connection, TLS and the
    /// WebSocket handshake together.
    pub fn timeout(mut self, timeout: Duration) -> WsConnector {
        self.timeout = timeout;
        self
    }

    /// The same, refusing messages (and frames) larger than `bytes`
    /// (default [`MAX_MESSAGE`]).
    pub fn max_message(mut self, bytes: usize) -> WsConnector {
        self.config = self.config.max_message_size(Some(bytes)).max_frame_size(Some(bytes));
        self
    }

    /// The same, trusting only `roots` for `wss://` (a private CA, a test
    /// certificate) instead of the platform's.
    ///
    /// # Errors
    /// A certificate rustls cannot use as a root.
    pub fn trust_only(mut self, roots: Vec<CertificateDer<'static>>) -> Result<WsConnector, rustls::Error> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add(root)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(store)
            .with_no_client_auth();
        self.tls = Some(Arc::new(config));
        Ok(self)
    }

    /// Opens a WebSocket to `url` (`ws://` or `wss://`).
    ///
    /// # Errors
    /// [`ConnectError`]: the URL, the TCP connection, TLS or the handshake
    /// failed, the time ran out, or the server answered with an HTTP error
    /// instead ([`ConnectError::Refused`], with its status and error body).
    pub async fn connect(&self, url: &Url) -> Result<WebSocket, ConnectError> {
        self.connect_with_token(url, None).await
    }

    /// Opens a WebSocket to `url` whose handshake carries `bearer` as
    /// `Authorization: Bearer …`.
    ///
    /// # Errors
    /// As for [`WsConnector::connect`].
    pub async fn connect_with_token(&self, url: &Url, bearer: Option<&str>) -> Result<WebSocket, ConnectError> {
        match tokio::time::timeout(self.timeout, self.open(url, bearer)).await {
            Ok(opened) => opened,
            Err(_) => Err(ConnectError::TimedOut { url: url.to_string(), after: self.timeout }),
        }
    }

    async fn open(&self, url: &Url, bearer: Option<&str>) -> Result<WebSocket, ConnectError> {
        let failed = |reason: String| ConnectError::Failed { url: url.to_string(), reason };
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => return Err(failed(format!("{other}:// is not a WebSocket scheme (ws:// or wss://)"))),
        };
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let tcp = match url.host() {
            Some(Host::Domain(domain)) => TcpStream::connect((domain, port)).await,
            Some(Host::Ipv4(ip)) => TcpStream::connect(SocketAddr::from((ip, port))).await,
            Some(Host::Ipv6(ip)) => TcpStream::connect(SocketAddr::from((ip, port))).await,
            None => return Err(failed("the URL has no host".into())),
        }
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
        // A stream's small messages must not wait for the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let connector = match (tls, &self.tls) {
            (false, _) => Connector::Plain,
            (true, Some(config)) => Connector::Rustls(config.clone()),
            (true, None) => Connector::Rustls(platform_config().map_err(|e| failed(e.clone()))?),
        };
        let mut request = url.as_str().into_client_request().map_err(|e| failed(e.to_string()))?;
        if let Some(token) = bearer {
            let value =
                format!("Bearer {token}").parse().map_err(|_| failed("the token is not a header value".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        let handshake =
            tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(self.config), Some(connector)).await;
        match handshake {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().as_deref().unwrap_or_default();
                Err(ConnectError::Refused(Refusal::from_body(url.as_str(), response.status().as_u16(), body)))
            }
            Err(e) => Err(ConnectError::Failed { url: url.to_string(), reason: error_chain(&e) }),
        }
    }
}

/// The crypto provider reqwest uses too, so the build has one.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The TLS configuration with the platform's roots, made on first use.
fn platform_config() -> Result<Arc<rustls::ClientConfig>, &'static String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| format!("cannot load the platform's TLS roots: {e}"))?;
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .as_ref()
        .cloned()
}

/// An open WebSocket and its URL, carrying JSON text messages: what
/// [`crate::ViewStream`] and [`crate::DispatchSocket`] read and write
/// through.
pub(crate) struct Socket {
    ws: WebSocket,
    url: String,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Socket {
    pub(crate) fn new(ws: WebSocket, url: &Url) -> Socket {
        Socket { ws, url: url.to_string() }
    }

    /// The socket's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Sends `message` as a JSON text message.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the connection failed.
    pub(crate) async fn send<T: serde::Serialize>(&mut self, message: &T) -> Result<(), Error> {
        let text = serde_json::to_string(message).unwrap_or_default();
        self.ws.send(Message::text(text)).await.map_err(|e| Error::unreachable(&self.url, &e))
    }

    /// The next text message read as a `T`, calling `heard` on every frame
    /// (pings too, which tungstenite answers). Cancel-safe.
    ///
    /// # Errors
    /// [`Error::Ended`] for a close or the end, [`Error::Unreachable`] for a
    /// failed connection, [`Error::Protocol`] naming `what` was malformed.
    pub(crate) async fn next<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &str,
        mut heard: impl FnMut(),
    ) -> Result<T, Error> {
        let url = &self.url;
        loop {
            let frame = self.ws.next().await;
            heard();
            let text = match frame {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(frame))) => {
                    let why = match frame {
                        Some(f) => format!("the server closed it ({} {})", f.code, f.reason),
                        None => "the server closed it".to_string(),
                    };
                    return Err(Error::Ended { url: url.clone(), why });
                }
                None => return Err(Error::Ended { url: url.clone(), why: "the connection closed".into() }),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Error::unreachable(url, &e)),
            };
            return serde_json::from_str(text.as_str()).map_err(|e| Error::Protocol {
                url: url.clone(),
                reason: format!("a malformed {what} ({e}): {}", cut(text.as_str(), 200)),
            });
        }
    }

    /// Closes the socket, waiting at most a second for the server.
    pub(crate) async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// Opens a WebSocket to `url` with the default [`WsConnector`].
///
/// # Errors
/// As for [`WsConnector::connect`].
pub async fn connect(url: &Url) -> Result<WebSocket, ConnectError> {
    WsConnector::default().connect(url).await
}
