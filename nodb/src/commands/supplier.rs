//! `nodb supplier`: the demo supplier that envoys place reorders with.

use std::net::SocketAddr;

use anyhow::Context;
use nodb_warehouse::supplier::Supplier;

use crate::service;

/// Run a demo supplier: a stand-in for the outside service the warehouse's
/// `reorder` envoy places orders with. It keeps everything in memory.
///
/// Each order needs an `Idempotency-Key` header. A repeat with the same key
/// answers the first order again (200, `Idempotent-Replayed: true`) and
/// creates nothing; the same key with another body is refused (422). Every
/// call is kept in a log, and `POST /control` injects failures and delays,
/// so tests can check that retries are safe.
#[derive(clap::Args)]
#[command(after_help = "Endpoints:
  POST /orders    {\"product\": \"apple\", \"quantity\": 20} with an Idempotency-Key header;
                  201 and the order, or 200 and the same order for a repeated key
  GET  /orders    {\"orders\": [...], \"calls\": [...]}: the orders and every call made
  POST /control   {\"fail_next\": N, \"delay_ms\": M, \"fail_always\": true|false}, each optional:
                  fail the next N orders with 503, answer every order M ms late, or fail all
  GET  /control   the current fault settings
  GET  /health    {\"status\": \"ok\", \"orders\": N}

Example:
  nodb supplier --listen 127.0.0.1:7403
  curl -s -H 'Idempotency-Key: reorder-apple-1' -d '{\"product\":\"apple\",\"quantity\":20}' http://127.0.0.1:7403/orders
  {\"supplier_ref\":\"SUP-000001\",\"product\":\"apple\",\"quantity\":20,\"idempotency_key\":\"reorder-apple-1\"}
  curl -s -d '{\"fail_next\":2}' http://127.0.0.1:7403/control

Once ready it prints `nodb supplier listening on http://HOST:PORT` on stdout; logs go to
stderr. Ctrl-C or SIGTERM stops it; the orders are forgotten.

Exit status: 0 after a clean shutdown, 2 on any error (bad option, port in use).")]
pub struct Args {
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7403")]
    listen: SocketAddr,
    #[command(flatten)]
    guard: crate::guard::Guard,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if !args.guard.auth_keys.is_empty() {
        anyhow::bail!(
            "the demo supplier stands for an outside service and takes no tokens; \
             it listens on loopback unless given --insecure-open"
        );
    }
    let guarded = args.guard.load(args.listen)?;
    let enforcer = args.limits.enforcer()?;
    service::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signal(args.limits.shutdown());
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        service::announce("supplier", listener.local_addr()?, guarded.tls.is_some());
        let router = guarded.access.layer(Supplier::new().app());
        nodb_server::serve_with(listener, router, guarded.tls.as_ref(), shutdown, &enforcer)
            .await
            .context("the server failed")?;
        tracing::info!("supplier stopped");
        Ok(())
    })
}
