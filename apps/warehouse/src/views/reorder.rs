//! The `warehouse` app's reorder thresholds: when a product's total stock
//! falls below its threshold, its entry in the `stock` view gets
//! `"reorder": {"status": "pending", "seq", "quantity"}`; the `reorder` envoy
//! watches for that, orders from the supplier and records the outcome
//! (`reorder/placed` or `reorder/failed`), which the reducer writes back.
//!
//! A product's entry then reads
//! `{"locations", "total", "threshold", "reorder_quantity", "reorder"}`;
//! `reorder` is absent while the total is at or above the threshold.

use super::names as n;
use crate::keys::key;
use nodb_shared::Tree;
use serde::Deserialize;

use nodb_dataview::reducer::Rejection;
use nodb_shared::draft::Draft;

/// `stock/threshold_set`: reorder `quantity` (default twice the threshold)
/// when the total falls below `threshold`; 0 removes the threshold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSet<'a> {
    /// The product.
    pub product: &'a str,
    /// Reorder when the total is below this.
    pub threshold: u64,
    /// How many to order.
    pub quantity: Option<u64>,
}

/// `reorder/placed`, recorded by the `reorder` envoy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderPlaced<'a> {
    /// The product.
    pub product: &'a str,
    /// How many were ordered.
    pub quantity: u64,
    /// The supplier's reference for the order.
    pub supplier_ref: &'a str,
}

/// `reorder/failed`, recorded by the `reorder` envoy after its last retry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderFailed<'a> {
    /// The product.
    pub product: &'a str,
    /// Why.
    pub reason: &'a str,
}

fn field(entry: &Tree, name: &str) -> Option<u64> {
    entry.get([key(name)]).and_then(Tree::as_u64)
}

/// Sets or clears the reorder status of `entry` (a draft of a product's
/// entry) after its total changed at `seq`: pending when it fell below the
/// threshold with none under way, absent when it is at or above it.
///
/// # Errors
/// If the entry is not an object.
pub fn review(entry: &mut Draft, seq: u64) -> Result<(), Rejection> {
    let e = entry.state();
    let total = e.get([n::TOTAL.clone()]).and_then(Tree::as_u64).unwrap_or(0);
    let below = e.get([n::THRESHOLD.clone()]).and_then(Tree::as_u64).is_some_and(|t| total < t);
    let active = e.get([n::REORDER.clone()]).is_some_and(|r| !matches!(r, Tree::Null));
    match (below, active) {
        (true, false) => {
            let quantity = field(e, "reorder_quantity").unwrap_or(1);
            let reorder = Tree::from_entries([
                ("status", Tree::from("pending")),
                ("seq", Tree::from(seq)),
                ("quantity", Tree::from(quantity)),
            ]);
            entry.set([key("reorder")], reorder)?;
        }
        (false, true) => {
            entry.remove([key("reorder")])?;
        }
        _ => {}
    }
    Ok(())
}

/// Applies `stock/threshold_set` to `entry`; a new threshold starts a new
/// reorder if the total is below it (after a failed one, say).
///
/// # Errors
/// If the entry is not an object, or the reorder quantity is 0.
pub fn set_threshold(entry: &mut Draft, t: &ThresholdSet<'_>, seq: u64) -> Result<(), Rejection> {
    entry.remove([key("reorder")])?;
    if t.threshold == 0 {
        for name in ["threshold", "reorder_quantity"] {
            entry.remove([key(name)])?;
        }
        return Ok(());
    }
    let quantity = t.quantity.unwrap_or(t.threshold.saturating_mul(2));
    if quantity == 0 {
        return Err(Rejection::new("stock/threshold_set: the reorder quantity must be at least 1"));
    }
    entry.set([key("threshold")], t.threshold)?;
    entry.set([key("reorder_quantity")], quantity)?;
    review(entry, seq)
}

/// Records the outcome of a pending reorder. An outcome for a product with
/// none under way (restocked meanwhile) changes nothing.
///
/// # Errors
/// If the entry is not an object.
pub fn record(entry: &mut Draft, outcome: &[(&str, Tree)]) -> Result<(), Rejection> {
    if entry.get([key("reorder")]).is_none_or(|r| matches!(r, Tree::Null)) {
        return Ok(());
    }
    for (name, value) in outcome {
        entry.set([key("reorder"), key(name)], value.clone())?;
    }
    Ok(())
}
