//! `nodb-bench idle`: the memory of a data view holding many idle streams.
//! It starts a chronicler and a warehouse data view (with the connection
//! cap raised to fit the streams), reads the view's resident memory,
//! opens the streams — each reads its snapshot, then only answers pings —
//! and reads the memory again once they are all open.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::{start_chronicler_at, views::start_dataview};

/// Memory of a data view holding `--streams` idle streams of the `stock`
/// view: resident memory before and after, and per stream.
///
/// The streams come from this process, so it needs a file descriptor per
/// stream: it raises its soft limit to the hard one (raise the hard one
/// with `ulimit -Hn` as root if it is too low). The data view is started
/// with `--max-connections` above the streams and no per-address cap,
/// since every stream comes from 127.0.0.1.
#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo build --release -p nodb -p nodb-bench && target/release/nodb-bench idle --streams 10000")]
pub struct IdleArgs {
    /// Where to put the data (a temporary folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: std::path::PathBuf,
    /// Idle streams to open.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    streams: usize,
    /// Products in the `stock` view (the size of each stream's snapshot).
    #[arg(long, value_name = "N", default_value_t = 100)]
    products: usize,
    /// Seconds to hold the streams open before reading the memory again.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    hold: f64,
}

/// A figure of `/proc/PID/status`, in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Runs the benchmark.
///
/// # Errors
/// Too few file descriptors, or a service that does not start or answer.
pub async fn run(args: &IdleArgs) -> anyhow::Result<()> {
    if args.streams == 0 || args.hold.is_nan() || args.hold < 0.0 {
        bail!("--streams must be positive and --hold not negative");
    }
    let fds = nodb_server::limits::raise_open_files_limit();
    let needed = args.streams as u64 + 256;
    if fds < needed {
        bail!(
            "{} streams need about {needed} open files, and this process may open {fds}: raise `ulimit -n`",
            args.streams
        );
    }
    let tmp = tempfile::Builder::new().prefix("nodb-bench-").tempdir_in(&args.dir)?;
    let (_chronicler, chronicler_addr) = start_chronicler_at(&tmp.path().join("nodb"), None, &[])?;
    let cap = (args.streams + 1000).to_string();
    let (view, view_addr) = start_dataview(
        tmp.path(),
        &chronicler_addr,
        None,
        &["--max-connections", &cap, "--max-connections-per-ip", "0"],
    )?;

    // The stock: one correction per product, then wait for the view.
    let url = format!("http://{chronicler_addr}/actions");
    let actions: Vec<serde_json::Value> = (1..=args.products)
        .map(|k| {
            serde_json::json!({"id": format!("seed:{k}"), "type": "stock/corrected",
                "payload": {"product": format!("product-{k:05}"), "location": "shelf", "quantity": k}})
        })
        .collect();
    let client = reqwest::Client::new();
    let acks: serde_json::Value = client.post(&url).json(&actions).send().await?.error_for_status()?.json().await?;
    let head = acks["acks"].as_array().and_then(|a| a.last()).and_then(|a| a["seq"].as_u64()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let snapshot_bytes = loop {
        let body = client.get(format!("http://{view_addr}/views/stock")).send().await?.text().await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        if v["seq"].as_u64() >= Some(head) {
            break body.len();
        }
        if Instant::now() > deadline {
            bail!("the data view did not reach seq {head}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = view.pid();
    let before = status_bytes(pid, "VmRSS:").context("no /proc: this benchmark needs Linux")?;
    println!(
        "data view at seq {head}, stock view of {} products ({snapshot_bytes} bytes as JSON); resident memory {}",
        args.products,
        mib(before)
    );

    // The streams, 64 handshakes at a time; each then only reads (the
    // library answers the data view's pings).
    let started = Instant::now();
    let opened = futures_util::stream::iter(0..args.streams)
        .map(|_| {
            let view_addr = view_addr.clone();
            async move {
                let mut ws = super::websocket(&view_addr, "/views/stock/stream", None).await?;
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.as_str().contains("\"snapshot\"") => {}
                    other => bail!("expected a snapshot, got {other:?}"),
                }
                Ok(tokio::spawn(async move {
                    while let Some(Ok(m)) = ws.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                    let _ = ws.close(None).await;
                }))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<anyhow::Result<tokio::task::JoinHandle<()>>>>()
        .await;
    let readers = opened.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let open_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after = status_bytes(pid, "VmRSS:").unwrap_or(0);
    let peak = status_bytes(pid, "VmHWM:").unwrap_or(0);
    let fds_open = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let grown = after.saturating_sub(before);
    println!("{} idle streams opened in {:.1} s (each read its snapshot)", readers.len(), open_time.as_secs_f64());
    println!(
        "data view resident memory: {} before, {} with the streams open (peak {}), {} open files",
        mib(before),
        mib(after),
        mib(peak),
        fds_open
    );
    println!("  grown by {}: {:.1} KiB per idle stream", mib(grown), grown as f64 / 1024.0 / readers.len() as f64);

    // One more action reaches every stream: they are alive, not only open.
    let t = Instant::now();
    let one = serde_json::json!({"id": format!("seed:{}", args.products + 1), "type": "stock/corrected",
        "payload": {"product": "product-00001", "location": "shelf", "quantity": 7}});
    let mut probe = super::websocket(&view_addr, "/views/stock/stream", None).await?;
    probe.next().await;
    client.post(&url).json(&one).send().await?.error_for_status()?;
    let _ = tokio::time::timeout(Duration::from_secs(30), probe.next()).await;
    println!("  an action still reaches a new stream beside them in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let _ = probe.close(None).await;
    for r in readers {
        r.abort();
    }
    Ok(())
}
