//! The limits every service puts on its clients (issue 20), against the
//! real binary: a silent or slow client is cut off, connections over the
//! cap are refused while existing clients are served, an oversized
//! WebSocket message is refused before it is buffered, a flood of
//! dispatches from one client is throttled while others are served, and
//! shutdown completes when stderr has gone away.
//!
//! Each test shortens its limit with a flag; the time bounds asserted are
//! generous multiples of it, never performance claims.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nodb_tests::{Service, get, nodb_bin};

fn chronicler(dir: &tempfile::TempDir, extra: &[&str]) -> Service {
    let data = dir.path().to_str().unwrap();
    let mut args = vec!["chronicler", "--data", data, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Service::start(&args).unwrap()
}

fn host_port(service: &Service) -> String {
    service.url().trim_start_matches("http://").to_string()
}

/// Sends `request` on a new connection and reads until the server closes
/// it (or 10 s pass): the whole answer.
fn exchange(addr: &str, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A `POST /actions` with `body`, closing the connection after.
fn post_actions(addr: &str, body: &str) -> String {
    exchange(
        addr,
        &format!(
            "POST /actions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Whether the peer closed `tcp` (EOF or reset) within `within`.
fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    tcp.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
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

#[test]
fn a_silent_connection_is_closed_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let service = chronicler(&dir, &["--header-timeout", "1"]);
    let mut silent = TcpStream::connect(host_port(&service)).unwrap();
    // Headers at a crawl: one line, then nothing more.
    let mut crawling = TcpStream::connect(host_port(&service)).unwrap();
    crawling.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(10)), "a silent connection stays open");
    assert!(closed_within(&mut crawling, Duration::from_secs(10)), "a crawling request stays open");
    assert!(t.elapsed() < Duration::from_secs(10));
    // Clients that speak are served.
    assert_eq!(get(&format!("{}/health", service.url())).unwrap().status, 200);
}

#[test]
fn a_slow_body_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let service = chronicler(&dir, &["--body-timeout", "1", "--request-timeout", "2"]);
    let addr = host_port(&service);
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.write_all(
        format!(
            "POST /actions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    // One byte every 300 ms: never idle for the body timeout, so the
    // request timeout ends it.
    let mut writer = tcp.try_clone().unwrap();
    let drip = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    let answer = String::from_utf8_lossy(&out);
    assert!(t.elapsed() < Duration::from_secs(10), "the slow body was not cut off: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    drop(tcp);
    let _ = drip.join();
    // A body that stops altogether: cut off by the body timeout.
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.write_all(
        format!(
            "POST /actions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n["
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(10)), "a stalled body stays open");
    assert_eq!(get(&format!("{}/health", service.url())).unwrap().status, 200);
}

#[test]
fn over_the_connection_cap_a_new_connection_is_refused_while_existing_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let service = chronicler(&dir, &["--max-connections", "3", "--max-connections-per-ip", "0"]);
    let addr = host_port(&service);
    let request = format!("GET /health HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    let mut client = TcpStream::connect(&addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    client.write_all(request.as_bytes()).unwrap();
    let n = client.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let _idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = exchange(&addr, &request);
    assert!(refused.is_empty() || refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    assert!(refused.is_empty() || refused.contains("retry-after: 1"), "{refused:?}");
    // The client already connected is still served, on its connection.
    client.write_all(request.as_bytes()).unwrap();
    let n = client.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A slot freed is a slot taken again.
    drop(client);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&format!("{}/health", service.url())).unwrap().status, 200);
}

/// The peak resident memory of process `pid`, in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn a_60_mib_websocket_message_is_refused_and_the_service_still_serves() {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::{Frame, coding::CloseCode};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let service = Service::start(&["up", "--data", data, "--listen", "127.0.0.1:0"]).unwrap();
    let before = peak_memory(service.pid());
    let ws = format!("{}/views/stock/stream", service.ws_url());
    let (mut socket, _) = tungstenite::connect(ws.as_str()).unwrap();
    let _snapshot = socket.read().unwrap();
    // 60 MiB of text in 8 MiB fragments, as the attacker sent it.
    let fragment = vec![b' '; 8 << 20];
    let mut sent = 0;
    let mut send_failed = false;
    for k in 0..8 {
        let last = k == 7;
        let len = if last { (60 << 20) - sent } else { fragment.len() };
        let opcode = if k == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        let frame = Frame::message(fragment[..len].to_vec(), opcode, last);
        if let Err(e) = socket.send(tungstenite::Message::Frame(frame)) {
            eprintln!("sending fragment {k} failed: {e}");
            send_failed = true;
            break;
        }
        sent += len;
    }
    // The service says why (close 1009) or, if the close frame was lost
    // with the connection, has at least dropped it.
    let mut closed_with = None;
    if !send_failed {
        loop {
            match socket.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    closed_with = frame.map(|f| f.code);
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    eprintln!("sent {sent} bytes before the refusal; closed with {closed_with:?}");
    // Refused: the close frame says so, or the connection was dropped
    // before the whole message was sent.
    assert!(
        closed_with == Some(CloseCode::Size) || (closed_with.is_none() && sent < 60 << 20),
        "sent {sent} bytes, closed with {closed_with:?}"
    );
    let grown = peak_memory(service.pid()).saturating_sub(before);
    assert!(grown < 40 << 20, "the message was buffered: the peak memory grew by {grown} bytes");
    assert_eq!(get(&format!("{}/views/stock", service.url())).unwrap().status, 200);
    let (mut again, _) = tungstenite::connect(ws.as_str()).unwrap();
    assert!(again.read().unwrap().is_text(), "a new stream gets its snapshot");
}

#[test]
fn a_flood_of_dispatches_from_one_client_gets_429_while_another_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let service = chronicler(&dir, &["--client-rate", "1", "--client-burst", "5"]);
    let addr = host_port(&service);
    let action = |id: &str| format!(r#"{{"id":"{id}","type":"hello","payload":{{}}}}"#);
    let batch: Vec<String> = (1..=5).map(|n| action(&format!("flood:{n}"))).collect();
    let ok = post_actions(&addr, &format!("[{}]", batch.join(",")));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let limited = post_actions(&addr, &action("flood:6"));
    assert!(limited.starts_with("HTTP/1.1 429"), "{limited}");
    let headers = limited.to_ascii_lowercase();
    assert!(headers.contains("\r\nretry-after: "), "{limited}");
    assert!(limited.contains(r#""code":"rate_limited""#), "{limited}");
    // Another client is served meanwhile.
    let calm = post_actions(&addr, &action("calm:1"));
    assert!(calm.starts_with("HTTP/1.1 200"), "{calm}");
    // On the dispatch socket: more than a burst at once, then another
    // client's action. Over the limit, an error naming each action.
    let (mut socket, _) = tungstenite::connect(format!("{}/ws", service.ws_url()).as_str()).unwrap();
    for n in 6..=12 {
        let dispatch = format!(r#"{{"type":"dispatch","action":{}}}"#, action(&format!("flood:{n}")));
        socket.send(tungstenite::Message::text(dispatch)).unwrap();
    }
    let dispatch = format!(r#"{{"type":"dispatch","action":{}}}"#, action("calm:2"));
    socket.send(tungstenite::Message::text(dispatch)).unwrap();
    let mut answers = Vec::new();
    while answers.len() < 8 {
        let text = socket.read().unwrap();
        let Ok(text) = text.to_text() else { continue };
        answers.push(serde_json::from_str::<serde_json::Value>(text).unwrap());
    }
    let limited: Vec<&serde_json::Value> = answers.iter().filter(|a| a["code"] == "rate_limited").collect();
    assert!(!limited.is_empty(), "{answers:?}");
    assert!(
        limited.iter().all(|a| a["type"] == "error" && a["id"].as_str().is_some_and(|id| id.starts_with("flood:")))
    );
    let calm = answers.iter().find(|a| a["id"] == "calm:2").expect("an answer for calm:2");
    assert_eq!(calm["type"], "ack", "{answers:?}");
}

#[test]
fn shutdown_completes_when_stdout_and_stderr_are_closed() {
    // Regression: with stderr a closed pipe (`nodb … 2>&1 | head -c 10`),
    // logging "shutting down" panicked in the signal task and SIGTERM was
    // ignored.
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(nodb_bin())
        .args(["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"nodb chron");
    drop(out);
    drop(child.stderr.take());
    std::thread::sleep(Duration::from_millis(200));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = status.expect("the service ignored SIGTERM with its stderr closed");
    assert_eq!(status.code(), Some(0));
}
