//! The WebSocket message limit (issue 20), against the real binary: a
//! 60 MiB message in 8 MiB fragments on a view stream is refused before it
//! is buffered, and the service's memory does not grow with it.
//!
//! The other limits — slow senders, the connection caps, dispatch floods,
//! shutdown with closed pipes — are cases of the hostile-input suite,
//! `hostile.rs`, with the answer each gets.

use std::time::Duration;

use nodb_tests::{Service, get};

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
    use nodb_tests::raw;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let service = Service::start(&["up", "--data", data, "--listen", "127.0.0.1:0"]).unwrap();
    let before = peak_memory(service.pid());
    let ws = format!("{}/views/stock/stream", service.ws_url());
    let mut socket = raw::websocket(&ws, &[]).unwrap();
    let _snapshot = socket.read().unwrap();
    // 60 MiB of text in 8 MiB fragments, as the attacker sent it.
    let fragment = vec![b' '; 8 << 20];
    let mut sent = 0;
    let mut send_failed = false;
    for k in 0..8 {
        let last = k == 7;
        let len = if last { (60 << 20) - sent } else { fragment.len() };
        if let Err(e) = socket.send(raw::text_frame(&fragment[..len], k > 0, last)) {
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
        let closed = raw::close_frame(&mut socket, Duration::from_secs(120), "the 60 MiB message");
        closed_with = closed.ok().flatten().map(|(code, _)| code);
    }
    eprintln!("sent {sent} bytes before the refusal; closed with {closed_with:?}");
    // Refused: the close frame says so, or the connection was dropped
    // before the whole message was sent.
    assert!(
        closed_with == Some(1009) || (closed_with.is_none() && sent < 60 << 20),
        "sent {sent} bytes, closed with {closed_with:?}"
    );
    let grown = peak_memory(service.pid()).saturating_sub(before);
    assert!(grown < 40 << 20, "the message was buffered: the peak memory grew by {grown} bytes");
    assert_eq!(get(&format!("{}/views/stock", service.url())).unwrap().status, 200);
    let mut again = raw::websocket(&ws, &[]).unwrap();
    assert!(again.read().unwrap().is_text(), "a new stream gets its snapshot");
}
