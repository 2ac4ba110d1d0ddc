//! A derived view built by someone outside the system: `shelf_gaps`, the
//! products with nothing on the shelf but stock elsewhere, and how many to
//! bring out — computed from a warehouse's `stock` view, which this program
//! reads at a URL through the public protocol and nothing else.
//!
//! ```text
//! cargo run -p nodb-cascade --example shelf_gaps -- --upstream http://127.0.0.1:7400 --listen 127.0.0.1:7405
//! curl -s http://127.0.0.1:7405/views/shelf_gaps
//! ```
//!
//! It serves the same protocol it reads (`/views/shelf_gaps`, its stream,
//! `/health`), so its own clients — or another cascade — can build on it in
//! turn. See `README.md` beside this file.

use std::collections::BTreeMap;

use nodb_cascade::{Cascade, Settings, server};
use nodb_shared::Tree;

/// Where products are sold from.
const SHELF: &str = "shelf";
/// At most this many are brought out at a time.
const CRATE: u64 = 12;

/// The reducer: a pure function of the upstream `stock` state
/// (`{"products": {P: {"locations": {L: qty}, "total": n, …}}, …}`).
fn shelf_gaps(stock: &Tree) -> Tree {
    let products = stock.get("/products").and_then(Tree::as_object).into_iter().flatten();
    let gaps: Vec<(&str, Tree)> = products
        .filter_map(|(name, entry)| {
            let locations = entry.get("/locations").and_then(Tree::as_object)?;
            let on_shelf = locations.get(SHELF).and_then(Tree::as_u64).unwrap_or(0);
            let elsewhere: u64 = locations.iter().filter(|(l, _)| &***l != SHELF).filter_map(|(_, q)| q.as_u64()).sum();
            (on_shelf == 0 && elsewhere > 0).then(|| {
                let gap = Tree::from_entries([
                    ("elsewhere", Tree::from(elsewhere)),
                    ("bring", Tree::from(elsewhere.min(CRATE))),
                ]);
                (&**name, gap)
            })
        })
        .collect();
    let count = gaps.len() as u64;
    Tree::from_entries([("products", Tree::from_entries(gaps)), ("count", Tree::from(count))])
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("shelf_gaps [--upstream URL_OF_THE_STOCK_VIEW_SERVER] [--listen ADDR]");
        return Ok(());
    }
    let upstream = arg(&args, "--upstream", "http://127.0.0.1:7400");
    let listen = arg(&args, "--listen", "127.0.0.1:7405");

    let cascade = Cascade::new("shelf_gaps", ["stock"], |up: &[&Tree]| shelf_gaps(up[0]));
    let upstreams = BTreeMap::from([("stock".to_string(), upstream)]);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let running = nodb_cascade::start(vec![cascade], &upstreams, &Settings::default(), shutdown)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("shelf_gaps listening on http://{}", listener.local_addr()?);
    let router = server::router(running.state.clone());
    nodb_server::serve(listener, router, None, running.state.shutdown.clone()).await?;
    running.finish().await;
    Ok(())
}
