//! Raw HTTP/1.1 exchanges over a plain TCP socket, for requests an HTTP
//! client library refuses to send (malformed bodies, wrong methods, slow
//! or partial requests) and answers it would hide (a connection refused
//! with a `503` before the request is read); and raw WebSockets
//! ([`websocket`]), for frames and handshakes `nodb-client` would not
//! send (binary, malformed or oversized messages, tokens in the query,
//! foreign origins) and close frames a test checks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub use tungstenite::Message;
use tungstenite::client::IntoClientRequest as _;
use tungstenite::stream::MaybeTlsStream;

/// A WebSocket opened by [`websocket`], sending whatever frames a test
/// gives it (`tungstenite`'s `send` and `read`).
pub type RawSocket = tungstenite::WebSocket<MaybeTlsStream<TcpStream>>;

/// What a server answered: the status, the headers (names in lower case)
/// and the body as text (of a `Content-Length` answer; a chunked one as it
/// came).
pub use crate::Response as RawResponse;

impl RawResponse {
    /// Parses what a server sent: `None` if it is not an HTTP answer.
    pub fn parse(bytes: &[u8]) -> Option<RawResponse> {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines.next()?.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(RawResponse { status, headers, body: body.to_string() })
    }
}

/// Writes `request` on a new connection to `addr` (`host:port`) and reads
/// until the server closes it, or `within` passes: all that came back.
///
/// # Errors
/// The connection cannot be made.
pub fn exchange_bytes(addr: &str, request: &[u8], within: Duration) -> Result<Vec<u8>, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_read_timeout(Some(within)).map_err(|e| e.to_string())?;
    // The server may answer and close before reading it all (413).
    let _ = tcp.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok(out)
}

/// `method target` to `addr` with `Host`, `Content-Length` and
/// `Connection: close`, the extra `headers` and `body`; the answer.
///
/// # Errors
/// The connection cannot be made, or what came back is not HTTP.
pub fn request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<RawResponse, String> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let answer = exchange_bytes(addr, &bytes, Duration::from_secs(15))?;
    RawResponse::parse(&answer)
        .ok_or_else(|| format!("no HTTP answer to {method} {target}: {:?}", String::from_utf8_lossy(&answer)))
}

/// Whether the peer closed `tcp` (end of stream or reset) within `within`,
/// reading and dropping whatever it sent before.
pub fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Opens a WebSocket to `url` (`ws://HOST:PORT/PATH?QUERY`) with the extra
/// handshake `headers`; a read on it waits at most 20 s.
///
/// # Errors
/// The server's answer when it refused the upgrade (status and body; no
/// headers).
///
/// # Panics
/// If no connection or handshake can be made at all.
pub fn websocket(url: &str, headers: &[(&str, &str)]) -> Result<RawSocket, RawResponse> {
    let mut request = url.into_client_request().unwrap_or_else(|e| panic!("{url}: {e}"));
    for (name, value) in headers {
        let name: tungstenite::http::HeaderName = name.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        request.headers_mut().insert(name, value.parse().unwrap_or_else(|e| panic!("{value}: {e}")));
    }
    match tungstenite::connect(request) {
        Ok((ws, _)) => {
            if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
            }
            Ok(ws)
        }
        Err(tungstenite::Error::Http(answer)) => Err(RawResponse {
            status: answer.status().as_u16(),
            headers: Vec::new(),
            body: String::from_utf8_lossy(answer.body().as_deref().unwrap_or_default()).into_owned(),
        }),
        Err(e) => panic!("cannot open a WebSocket to {url}: {e}"),
    }
}

/// The next text message on `ws`, as JSON (pings and pongs skipped).
///
/// # Panics
/// On a close, an error, a read that times out or text that is not JSON,
/// naming `what`.
pub fn next_json(ws: &mut RawSocket, what: &str) -> serde_json::Value {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                return serde_json::from_str(t.as_str()).unwrap_or_else(|e| panic!("{what}: {e}: {t}"));
            }
            Ok(Message::Close(c)) => panic!("{what}: the socket closed: {c:?}"),
            Ok(_) => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Reads `ws` (dropping what comes) until the peer closes it, for at most
/// `within`: `Ok(Some((code, reason)))` for a close frame with a code,
/// `Ok(None)` for one without, `Err` when the connection ended without a
/// close frame.
///
/// # Panics
/// If it is still open after `within`, naming `what`.
pub fn close_frame(ws: &mut RawSocket, within: Duration, what: &str) -> Result<Option<(u16, String)>, String> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Close(frame)) => return Ok(frame.map(|f| (u16::from(f.code), f.reason.to_string()))),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    panic!("{what}: the socket is still open after {within:?}");
}

/// The socket message `{"type": "dispatch", "action": action}`, whatever
/// `action` holds.
pub fn dispatch_message(action: &serde_json::Value) -> Message {
    Message::text(serde_json::json!({"type": "dispatch", "action": action}).to_string())
}

/// A text frame of raw bytes, UTF-8 or not, final or not; `continues`
/// makes it a continuation frame.
pub fn text_frame(bytes: &[u8], continues: bool, last: bool) -> Message {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let opcode = if continues { OpCode::Data(Data::Continue) } else { OpCode::Data(Data::Text) };
    Message::Frame(Frame::message(bytes.to_vec(), opcode, last))
}
