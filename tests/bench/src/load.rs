//! Load clients for the chronicler: pipelined WebSocket dispatch and
//! one-request-at-a-time HTTP, each measuring ack throughput and latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use super::stats::RunStats;

/// One WebSocket client keeping up to `window` dispatches in flight,
/// sending `token` (if any) as `?token=` on the upgrade.
pub async fn ws_client(
    addr: String,
    client: String,
    token: Option<String>,
    payload: Arc<String>,
    window: usize,
    measure_from: Instant,
    stop: Instant,
) -> anyhow::Result<RunStats> {
    let ws = super::websocket(&addr, "/ws", token.as_deref()).await?;
    let (mut sink, mut stream) = ws.split();
    let permits = Arc::new(Semaphore::new(window));
    let ring: Arc<Vec<AtomicU64>> = Arc::new((0..window * 2).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let sender = {
        let (permits, ring, client) = (permits.clone(), ring.clone(), client.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            'run: while Instant::now() < stop {
                let Ok(p) = permits.acquire().await else { break };
                p.forget();
                // Send every dispatch the window allows, then flush once.
                let mut more = 1;
                while more > 0 {
                    more -= 1;
                    n += 1;
                    ring[(n as usize) % ring.len()].store(origin.elapsed().as_nanos() as u64, Relaxed);
                    let msg = format!(
                        r#"{{"type":"dispatch","action":{{"id":"{client}:{n}","type":"bench/tick","payload":{payload}}}}}"#
                    );
                    if sink.feed(Message::text(msg)).await.is_err() {
                        break 'run;
                    }
                    if let Ok(p) = permits.try_acquire() {
                        p.forget();
                        more += 1;
                    }
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
            sink
        })
    };
    let mut stats = RunStats::default();
    let deadline = stop + Duration::from_secs(2);
    loop {
        let msg = match tokio::time::timeout_at(deadline.into(), stream.next()).await {
            Ok(Some(m)) => m?,
            Ok(None) | Err(_) => break,
        };
        let Message::Text(text) = msg else { continue };
        let now = Instant::now();
        let n = ack_number(text.as_str()).with_context(|| format!("the chronicler answered {text}"))?;
        if now >= measure_from && now < stop {
            stats.acks += 1;
            let sent = ring[(n as usize) % ring.len()].load(Relaxed);
            stats.latencies.push((origin.elapsed().as_nanos() as u64).saturating_sub(sent));
        }
        permits.add_permits(1);
        if now >= stop && permits.available_permits() >= window {
            break;
        }
    }
    let _ = sender.await;
    Ok(stats)
}

/// One HTTP/1.1 keep-alive connection posting `batch` actions per request
/// (an array when more than one), one request at a time, each with
/// `Authorization: Bearer <token>` when there is a token.
pub async fn http_client(
    addr: String,
    client: String,
    token: Option<String>,
    payload: Arc<String>,
    batch: usize,
    measure_from: Instant,
    stop: Instant,
) -> anyhow::Result<RunStats> {
    let tcp = TcpStream::connect(&addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (r, mut w) = tcp.into_split();
    let mut reader = BufReader::new(r);
    let mut stats = RunStats::default();
    let mut n = 0u64;
    let mut line = String::new();
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    while Instant::now() < stop {
        let mut actions = Vec::with_capacity(batch);
        for _ in 0..batch {
            n += 1;
            actions.push(format!(r#"{{"id":"{client}:{n}","type":"bench/tick","payload":{payload}}}"#));
        }
        let body = if batch == 1 { actions.pop().unwrap_or_default() } else { format!("[{}]", actions.join(",")) };
        let req = format!(
            "POST /actions HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        w.write_all(req.as_bytes()).await?;
        let mut length = 0usize;
        let mut status_ok = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                bail!("the chronicler closed the connection");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if l.starts_with("HTTP/1.1 ") {
                status_ok = l.starts_with("HTTP/1.1 200");
            } else if let Some(v) = l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
                length = v.1.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        if !status_ok {
            bail!("the chronicler answered {}", String::from_utf8_lossy(&body));
        }
        let now = Instant::now();
        if now >= measure_from && now < stop {
            stats.acks += batch as u64;
            stats.latencies.push(now.duration_since(sent).as_nanos() as u64);
        }
    }
    Ok(stats)
}

/// The action number of an ack `{"type":"ack","id":"client:N",…}`, without
/// building a JSON tree (the load generator must stay cheap).
fn ack_number(text: &str) -> Option<u64> {
    if !text.starts_with(r#"{"type":"ack","id":""#) {
        return None;
    }
    let rest = &text[r#"{"type":"ack","id":""#.len()..];
    let id = &rest[..rest.find('"')?];
    id.rsplit_once(':')?.1.parse().ok()
}
