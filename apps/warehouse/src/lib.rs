//! The warehouse: nodb's demo application, built on the framework crates
//! exactly as any application would be.
//!
//! # Modules
//!
//! - [`views`]: the `stock` and `activity` views (with the reorder status in
//!   [`views::reorder`] and the sales ledger in [`views::sales`]);
//! - [`envoys`]: the `reorder` envoy, which orders from a supplier when a
//!   product falls below its threshold;
//! - [`supplier`]: the demo supplier it orders from (`nodb supplier`, and
//!   `/supplier/` on `nodb up`);
//! - [`cascades`]: the `marketing` and `lowstock` cascaded views;
//! - [`ASSETS`]: the demo page (`web/`), served by the data view at `/`.
//!
//! The `nodb` binary registers these (see its `registry` module) under the
//! app name [`NAME`].

pub mod cascades;
pub mod envoys;
mod keys;
pub mod supplier;
pub mod views;

/// The app's name, given to `--app`.
pub const NAME: &str = "warehouse";

/// The app's version (this crate's), which its data views report in
/// `/views` and `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The demo page and its files, served by the data view at `/` (the page
/// uses the client library the data view serves at `/nodb.js`).
pub const ASSETS: &[nodb_dataview::web::Asset] = &[
    nodb_dataview::web::Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../web/index.html"),
    },
    nodb_dataview::web::Asset {
        path: "/demo.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/demo.css"),
    },
    nodb_dataview::web::Asset {
        path: "/demo.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/demo.js"),
    },
];
