//! Cascaded views: views derived from other views' public streams.
//!
//! A cascade subscribes to upstream views over the same client protocol a
//! browser uses, keeps a replica of each by applying their patches, and
//! serves its own derived state over that same protocol, with `sources`
//! naming the upstream seqs it reflects. It never reads the log or another
//! service's storage: it is given URLs, nothing else, so it works against a
//! data view (or another cascade) on another machine.
//!
//! # Modules and how data flows
//!
//! ```text
//! upstream server ──/views/{up}/stream──▶ upstream::follow ──Event──▶ runtime::combine ──push──▶ hub::Hub ──▶ server (clients, GET)
//!   (data view or cascade)                  replica, since,             reducer over every      recent states,
//!                                           resync on bad data          upstream replica        catch-up messages
//! ```
//!
//! - [`definition`]: [`Cascade`] — a name, upstream view names and a pure
//!   reducer `fn(&[&Tree]) -> Tree` (plus an optional incremental one).
//! - [`upstream`]: following one upstream's stream into a replica, with
//!   back-off, `since` on reconnect and a resync from a snapshot when the
//!   upstream sends something that does not fit.
//! - [`runtime`]: [`start`] — the followers and, per cascade, the task that
//!   runs the reducer once per batch of upstream changes and numbers the
//!   cascade's updates.
//! - [`hub`]: a cascade's recent states; what to send a client that has
//!   update `since` (one patch, a combined patch or a snapshot).
//! - [`server`]: the data view protocol — `GET /views/{name}`, the stream,
//!   `/health`, `/metrics` — with `sources`.
//! - [`error`]: the configuration errors, [`ConfigError`].
//!
//! # Example
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use nodb_cascade::{Cascade, Settings, server, start};
//! use nodb_shared::Tree;
//!
//! # async fn run() -> std::io::Result<()> {
//! // How many products have stock: a view derived from `stock`.
//! let in_stock = Cascade::new("in_stock", ["stock"], |up: &[&Tree]| {
//!     let n = up[0].get("/products").and_then(Tree::as_object).map_or(0, |p| p.len());
//!     Tree::from(n as u64)
//! });
//! let upstreams = BTreeMap::from([("stock".to_string(), "http://127.0.0.1:7402".to_string())]);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let running = start(vec![in_stock], &upstreams, &Settings::default(), shutdown).expect("valid");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7404").await?;
//! let router = server::router(running.state.clone());
//! nodb_server::serve(listener, router, None, running.state.shutdown.clone()).await?;
//! running.finish().await;
//! # Ok(())
//! # }
//! ```

pub mod definition;
pub mod error;
pub mod hub;
pub mod runtime;
pub mod server;
pub mod upstream;

pub use definition::{Cascade, Change};
pub use error::ConfigError;
pub use runtime::{Running, Settings, start};
