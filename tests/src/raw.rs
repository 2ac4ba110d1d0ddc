//! Raw HTTP/1.1 exchanges over a plain TCP socket, for requests an HTTP
//! client library refuses to send (malformed bodies, wrong methods, slow
//! or partial requests) and answers it would hide (a connection refused
//! with a `503` before the request is read).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What a server answered: the status, the headers (names in lower case)
/// and the body as text.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The body (of a `Content-Length` answer; a chunked one as it came).
    pub body: String,
}

impl RawResponse {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `error.code` of an error body (empty when there is none).
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }

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
