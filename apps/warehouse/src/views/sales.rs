//! The `activity` view's sales ledger, `sales`: units sold per product in
//! minute buckets for the last hour and hour buckets for the last week, by
//! the actions' own `ts` (never a clock), and `latest_ts`, the newest `ts`
//! seen. The `marketing` cascade derives its figures from it.
//!
//! `{"latest_ts": ms, "minutes": {BUCKET: {P: units}}, "hours": {BUCKET: {P: units}}}`,
//! where `BUCKET` is the bucket's start in unix ms as 13 digits, so keys
//! sort in time order.

use nodb_shared::Tree;

use super::names as n;
use crate::keys::key;
use nodb_dataview::reducer::Rejection;
use nodb_shared::Segment;
use nodb_shared::draft::Draft;

/// How many minute buckets `activity.sales.minutes` keeps: the last hour.
pub const SALES_MINUTES: u64 = 60;
/// How many hour buckets `activity.sales.hours` keeps: the last week.
pub const SALES_HOURS: u64 = 168;

/// An empty ledger.
pub fn initial() -> Tree {
    Tree::from_entries([("latest_ts", Tree::from(0u64)), ("minutes", Tree::object()), ("hours", Tree::object())])
}

/// The key of the sales bucket starting at `start` (unix ms): 13 digits,
/// so keys sort in time order.
pub fn sales_bucket(start: u64) -> String {
    format!("{start:013}")
}

/// Records `sold` (product, units) at `ts` in the draft's sales ledger,
/// moves its `latest_ts` on, and drops the buckets that fell out of the
/// hour and the week before it. Time is the actions' own `ts`, never a
/// clock. Writes only what changes: the ledger's buckets are big maps.
///
/// # Errors
/// If the state or a bucket is not an object.
pub fn record(d: &mut Draft, ts: u64, sold: Option<(&str, u64)>) -> Result<(), Rejection> {
    let object = |t: &Tree| matches!(t, Tree::Object(_));
    if !d.get([n::SALES.clone()]).is_some_and(object) {
        d.set([n::SALES.clone()], Tree::object())?;
    }
    let latest = d.get([n::SALES.clone(), n::LATEST_TS.clone()]).and_then(Tree::as_u64).unwrap_or(0).max(ts);
    d.set([n::SALES.clone(), n::LATEST_TS.clone()], latest)?;
    for (field, width, keep) in [(&n::MINUTES, 60_000, SALES_MINUTES), (&n::HOURS, 3_600_000, SALES_HOURS)] {
        let at = [n::SALES.clone(), Segment::clone(field)];
        if !d.get(&at).is_some_and(object) {
            d.set(&at, Tree::object())?;
        }
        if let Some((product, units)) = sold {
            let cell = [n::SALES.clone(), Segment::clone(field), key(&sales_bucket(ts - ts % width)), key(product)];
            d.update(cell, |n| Tree::from(n.and_then(Tree::as_u64).unwrap_or(0).saturating_add(units)))?;
        }
        // Keys sort in time order, so the stale ones are at the front:
        // the first goes while it is stale.
        let oldest_kept = (latest - latest % width).saturating_sub((keep - 1) * width);
        let stale = |d: &Draft| {
            let (first, _) = d.get(&at).and_then(Tree::as_object)?.get_min()?;
            first.parse::<u64>().is_ok_and(|start| start < oldest_kept).then(|| first.clone())
        };
        while let Some(first) = stale(d) {
            d.remove([n::SALES.clone(), Segment::clone(field), Segment::Key(first)])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views as warehouse;
    use crate::views::tests::{act, run};
    use nodb_shared::protocol::CommittedAction;
    use serde_json::json;

    #[test]
    fn the_sales_ledger_keeps_the_last_hour_by_minute_and_the_last_week_by_hour() {
        const H: u64 = 3_600_000;
        let t0 = 1_794_999_600_000; // a whole hour
        let sale = |seq: u64, ts: u64, p: &str, q: u64| CommittedAction {
            ts,
            ..act(seq, "stock/sold", json!({"product": p, "location": "s", "quantity": q}))
        };
        let mut actions = vec![
            CommittedAction {
                ts: t0 - 200 * H,
                ..act(1, "stock/corrected", json!({"product": "a", "location": "s", "quantity": 100}))
            },
            CommittedAction {
                ts: t0 - 200 * H,
                ..act(2, "stock/corrected", json!({"product": "b", "location": "s", "quantity": 100}))
            },
        ];
        actions.push(sale(3, t0 - 168 * H, "a", 1)); // a week and an hour before the end: pruned
        actions.push(sale(4, t0 - 167 * H + 5, "a", 2));
        actions.push(sale(5, t0 - 61 * 60_000, "b", 3)); // out of the last hour's minutes
        actions.push(sale(6, t0 - 59 * 60_000, "b", 4));
        actions.push(sale(7, t0 + 30_000, "a", 5));
        actions.push(sale(8, t0 + 40_000, "a", 6));
        let (states, rejected) = run(&actions);
        assert!(rejected.is_empty(), "{rejected:?}");
        let sales = states[1].to_value()["sales"].clone();
        let b = |start: u64| sales_bucket(start);
        assert_eq!(sales["latest_ts"], json!(t0 + 40_000));
        assert_eq!(sales["minutes"], json!({ b(t0 - 59 * 60_000): {"b": 4}, b(t0): {"a": 11} }));
        assert_eq!(
            sales["hours"],
            json!({ b(t0 - 167 * H): {"a": 2}, b(t0 - 2 * H): {"b": 3}, b(t0 - H): {"b": 4}, b(t0): {"a": 11} })
        );
        // Any later action moves "now" on and prunes, sale or not.
        let mut later = actions.clone();
        later.push(CommittedAction {
            ts: t0 + 2 * H,
            ..act(9, "stock/moved", json!({"product": "a", "from": "s", "to": "t", "quantity": 1}))
        });
        let sales = run(&later).0[1].to_value()["sales"].clone();
        assert_eq!(sales["minutes"], json!({}));
        assert_eq!(sales["hours"], json!({ b(t0 - 2 * H): {"b": 3}, b(t0 - H): {"b": 4}, b(t0): {"a": 11} }));
        // A state without a ledger (an older snapshot) gets one.
        let bare = warehouse::app().views[1].initial.remove("/sales").unwrap();
        let mut d = Draft::of(bare);
        warehouse::reduce_activity(&mut d, &sale(10, t0, "a", 1)).unwrap();
        let next = d.into_state().to_value();
        assert_eq!(next["sales"]["hours"], json!({ b(t0): {"a": 1} }));
    }
}
