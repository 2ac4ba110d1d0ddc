//! A minimal NATS JetStream publisher, just enough for the benchmark: it
//! speaks the NATS text protocol over TCP, creates a file-backed stream,
//! and publishes with `Nats-Msg-Id` headers (JetStream's duplicate
//! detection, the nearest thing to nodb's exactly-once ids), counting the
//! publish acknowledgements.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::stats::RunStats;

/// One NATS connection.
pub struct Conn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

/// A message delivered to one of our subscriptions.
struct Msg {
    subject: String,
    payload: Vec<u8>,
}

impl Conn {
    /// Connects and handshakes.
    pub async fn connect(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to NATS at {addr}"))?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut c = Conn { reader: BufReader::new(r), writer: w };
        let mut line = String::new();
        c.reader.read_line(&mut line).await?;
        if !line.starts_with("INFO") {
            bail!("NATS did not greet with INFO: {line:?}");
        }
        c.writer
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\nPING\r\n")
            .await?;
        loop {
            line.clear();
            c.reader.read_line(&mut line).await?;
            match line.trim_end() {
                "PONG" => return Ok(c),
                l if l.starts_with("-ERR") => bail!("NATS refused the connection: {l}"),
                _ => {}
            }
        }
    }

    /// Creates (or keeps) the stream `name` on `subject`, file storage, one
    /// replica, with JetStream's default sync interval.
    pub async fn create_stream(&mut self, name: &str, subject: &str) -> anyhow::Result<()> {
        self.create_stream_replicated(name, subject, 1).await
    }

    /// [`Conn::create_stream`] with `replicas` copies (on a cluster).
    pub async fn create_stream_replicated(&mut self, name: &str, subject: &str, replicas: usize) -> anyhow::Result<()> {
        let config = serde_json::json!({
            "name": name, "subjects": [subject], "storage": "file", "num_replicas": replicas,
            "retention": "limits", "discard": "old", "duplicate_window": 120_000_000_000u64
        })
        .to_string();
        let req = format!(
            "SUB _INBOX.create 1\r\nPUB $JS.API.STREAM.CREATE.{name} _INBOX.create {}\r\n{config}\r\n",
            config.len()
        );
        self.writer.write_all(req.as_bytes()).await?;
        let msg = next_msg(&mut self.reader).await?;
        let answer: serde_json::Value = serde_json::from_slice(&msg.payload)?;
        if let Some(err) = answer.get("error") {
            bail!("JetStream refused to create the stream: {err}");
        }
        Ok(())
    }
}

/// Reads the next message delivered to a subscription. Server PINGs are
/// skipped: NATS sends one every two minutes, far longer than a run, and
/// answering would need the writer half.
async fn next_msg(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> anyhow::Result<Msg> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("NATS closed the connection");
        }
        let l = line.trim_end();
        if l.starts_with("-ERR") {
            bail!("NATS error: {l}");
        }
        if let Some(rest) = l.strip_prefix("MSG ") {
            let parts: Vec<&str> = rest.split(' ').collect();
            let len: usize = parts.last().and_then(|n| n.parse().ok()).context("bad MSG line")?;
            let mut payload = vec![0; len + 2];
            reader.read_exact(&mut payload).await?;
            payload.truncate(len);
            return Ok(Msg { subject: parts[0].to_string(), payload });
        }
    }
}

/// Publishes from one connection with up to `window` publishes awaiting
/// their ack, until `stop`; counts acks after `measure_from`.
pub async fn publisher(
    addr: String,
    client: String,
    payload: Arc<Vec<u8>>,
    window: usize,
    measure_from: Instant,
    stop: Instant,
) -> anyhow::Result<RunStats> {
    let conn = Conn::connect(&addr).await?;
    let Conn { mut reader, mut writer } = conn;
    writer.write_all(format!("SUB _INBOX.{client}.* 1\r\n").as_bytes()).await?;
    let permits = Arc::new(Semaphore::new(window));
    let ring: Arc<Vec<AtomicU64>> = Arc::new((0..window * 2).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let sender = {
        let (permits, ring, client, payload) = (permits.clone(), ring.clone(), client.clone(), payload.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop {
                let Ok(p) = permits.acquire().await else { break };
                p.forget();
                n += 1;
                ring[(n as usize) % ring.len()].store(origin.elapsed().as_nanos() as u64, Relaxed);
                let headers = format!("NATS/1.0\r\nNats-Msg-Id: {client}:{n}\r\n\r\n");
                let mut buf = format!(
                    "HPUB bench.{client} _INBOX.{client}.{n} {} {}\r\n{headers}",
                    headers.len(),
                    headers.len() + payload.len()
                )
                .into_bytes();
                buf.extend_from_slice(&payload);
                buf.extend_from_slice(b"\r\n");
                if writer.write_all(&buf).await.is_err() {
                    break;
                }
            }
            writer
        })
    };
    let mut stats = RunStats::default();
    let deadline = stop + Duration::from_secs(2);
    loop {
        let msg = match tokio::time::timeout_at(deadline.into(), next_msg(&mut reader)).await {
            Ok(m) => m?,
            Err(_) => break,
        };
        let now = Instant::now();
        let n: u64 = msg.subject.rsplit('.').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if msg.payload.windows(7).any(|w| w == b"\"error\"") {
            bail!("JetStream refused a publish: {}", String::from_utf8_lossy(&msg.payload));
        }
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
