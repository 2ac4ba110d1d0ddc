//! What every long-running `nodb` service shares: the runtime, logging,
//! the ready line and shutdown on Ctrl-C or SIGTERM.
//!
//! Nothing here may block or panic when stdout or stderr has gone away (a
//! service piped into `head`): a failed write is dropped, never reported
//! by printing (tracing-subscriber's own report of a failed write is an
//! `eprintln!`, which panics on a closed stderr — in the signal task, that
//! panic used to swallow SIGTERM). And shutdown is bounded: once signalled,
//! the process exits within `--shutdown-timeout` whatever is in flight.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

/// A multi-threaded tokio runtime.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); a line that
/// cannot be written (stderr closed) is dropped.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

/// Prints the ready line `nodb NAME listening on http(s)://ADDR` on stdout.
pub fn announce(name: &str, addr: SocketAddr, tls: bool) {
    let mut out = std::io::stdout().lock();
    let scheme = if tls { "https" } else { "http" };
    let _ = writeln!(out, "nodb {name} listening on {scheme}://{addr}");
    let _ = out.flush();
}

/// Prints a line on stdout; nothing happens if stdout is closed.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A token cancelled on the first SIGINT or SIGTERM; from then on the
/// process exits (code 1) if it has not finished within `bound`.
pub fn shutdown_on_signal(bound: std::time::Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        // Cancel first: nothing may stand between the signal and shutdown.
        t.cancel();
        exit_after(bound);
        tracing::info!("shutting down");
    });
    token
}

/// Ends the process after `bound`, from a thread of its own so that a
/// stuck runtime cannot hold it; a clean shutdown exits before.
fn exit_after(bound: std::time::Duration) {
    let spawned = std::thread::Builder::new().name("nodb-shutdown-bound".into()).spawn(move || {
        std::thread::sleep(bound);
        tracing::warn!("shutdown did not finish within {} s; exiting", bound.as_secs_f64());
        std::process::exit(1);
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot bound the shutdown time");
    }
}
