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
//! - [`cascades`]: the `marketing` and `lowstock` cascaded views.
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
