//! The `activity` view's sales ledger, `sales`: units sold per product in
//! minute buckets for the last hour and hour buckets for the last week, by
//! the actions' own `ts` (never a clock), and `latest_ts`, the newest `ts`
//! seen. The `marketing` cascade derives its figures from it.
//!
//! `{"latest_ts": ms, "minutes": {BUCKET: {P: units}}, "hours": {BUCKET: {P: units}}}`,
//! where `BUCKET` is the bucket's start in unix ms as 13 digits, so keys
//! sort in time order.
//!
//! Every sale goes into its minute's bucket. The hour of `latest_ts`, the
//! current hour, has no hour bucket yet: its sales are its minute buckets.
//! When `latest_ts` enters a later hour, the hour it leaves is folded into
//! its hour bucket in one write, a merge of its minute buckets in key
//! order. So a sale searches one big map (its minute's bucket), not two,
//! and an hour's bucket is built once, in order, rather than by a random
//! insert per product sold. A late sale, for an hour before the current
//! one, goes into that hour's bucket too.
//!
//! A ledger written before hours were folded (an older snapshot) has the
//! current hour's bucket as well, with the same sales as its minutes: the
//! fold overwrites it (or removes it, if the hour has no minute bucket),
//! and `marketing` counts the current hour from the minutes either way.
//!
//! The hour's bucket sits beside its minutes until they age out, so the
//! fold grows the state. Where that would take `activity` over its size
//! limit, the ended hour's minute buckets go at the fold instead of over
//! the next hour (the last hour's figures lose them early): otherwise every
//! action, of any view, would be refused until they aged out.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use nodb_shared::tree::{Key, Object};
use nodb_shared::{Segment, Tree};

use super::names as n;
use crate::keys::key;
use nodb_dataview::reducer::Rejection;
use nodb_shared::draft::Draft;

/// How many minute buckets `activity.sales.minutes` keeps: the last hour.
pub const SALES_MINUTES: u64 = 60;
/// How many hour buckets `activity.sales.hours` keeps: the last week.
pub const SALES_HOURS: u64 = 168;
// The fold reads the whole ended hour from the minute buckets kept.
const _: () = assert!(SALES_MINUTES * MINUTE >= HOUR, "the minutes must cover an hour");
/// A minute in milliseconds: the width of a minute bucket.
pub const MINUTE: u64 = 60_000;
/// An hour in milliseconds: the width of an hour bucket.
pub const HOUR: u64 = 3_600_000;

/// An empty ledger.
pub fn initial() -> Tree {
    Tree::from_entries([("latest_ts", Tree::from(0u64)), ("minutes", Tree::object()), ("hours", Tree::object())])
}

/// The key of the sales bucket starting at `start` (unix ms): 13 digits,
/// so keys sort in time order.
pub fn sales_bucket(start: u64) -> String {
    bucket_text(start, &mut [0; 20]).to_string()
}

/// [`sales_bucket`]`(start)` as a path segment, with no allocation (a sale
/// names its minute's bucket every time).
fn bucket_key(start: u64) -> Segment {
    Segment::Key(bucket_text(start, &mut [0; 20]).into())
}

/// `start` in decimal, zero padded to at least 13 digits, written into
/// `digits` without a formatter.
fn bucket_text(start: u64, digits: &mut [u8; 20]) -> &str {
    digits.fill(b'0');
    let (mut rest, mut at) = (start, digits.len());
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[at.min(digits.len() - 13)..]).expect("ASCII digits")
}

/// Whether the bucket keyed `key` starts in the hour starting at `start`.
fn in_hour(key: &str, start: u64) -> bool {
    key.parse::<u64>().is_ok_and(|s| s >= start && s - start < HOUR)
}

/// The hour bucket of the hour starting at `start`, from the minute
/// buckets of `minutes` in that hour: each product's units summed
/// (saturating; a value that is not a count adds 0), or `None` when no
/// minute of the hour sold anything. A merge of the buckets in key order,
/// so the map is built in order.
pub fn fold_hour(minutes: &Tree, start: u64) -> Option<Tree> {
    let buckets: Vec<&Object> = minutes
        .as_object()?
        .iter()
        .filter(|(k, _)| in_hour(k, start))
        .filter_map(|(_, bucket)| bucket.as_object())
        .collect();
    let mut iters: Vec<_> = buckets.iter().map(|b| b.iter().map(|(k, v)| (k, v.as_u64().unwrap_or(0)))).collect();
    // The next entry of each bucket, smallest key first.
    let mut heads = BinaryHeap::new();
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some((k, units)) = it.next() {
            heads.push(Reverse((k, i, units)));
        }
    }
    let mut sums: Vec<(Key, u64)> = Vec::new();
    while let Some(Reverse((k, i, units))) = heads.pop() {
        match sums.last_mut() {
            Some((last, sum)) if last == k => *sum = sum.saturating_add(units),
            _ => sums.push((k.clone(), units)),
        }
        if let Some((k, units)) = iters[i].next() {
            heads.push(Reverse((k, i, units)));
        }
    }
    (!sums.is_empty()).then(|| Tree::Object(sums.into_iter().map(|(k, n)| (k, Tree::from(n))).collect()))
}

/// Folds the hour starting at `ended` into its hour bucket, or removes a
/// bucket of it when none of its minutes sold anything (the minutes are
/// its figures).
fn fold(d: &mut Draft, ended: u64) -> Result<(), Rejection> {
    let at = [n::HOURS.clone(), key(&sales_bucket(ended))];
    match d.get([n::MINUTES.clone()]).and_then(|m| fold_hour(m, ended)) {
        Some(hour) => d.set(at, hour)?,
        None => {
            d.remove(at)?;
        }
    }
    Ok(())
}

/// After a fold that took the state over its size limit, drops the ended
/// hour's minute buckets now rather than over the next hour: the hour's
/// bucket is no larger than its minutes, so the fold then never grows the
/// state, and an action that fits without it is not refused for it (which
/// would refuse every action until those minutes went). The last hour's
/// figures lose those minutes early.
fn make_room(d: &mut Draft, ended: u64) -> Result<(), Rejection> {
    let minutes: Vec<Key> = d
        .get([n::MINUTES.clone()])
        .and_then(Tree::as_object)
        .into_iter()
        .flat_map(|m| m.keys())
        .filter(|k| in_hour(k, ended))
        .cloned()
        .collect();
    for minute in minutes {
        d.remove([n::MINUTES.clone(), Segment::Key(minute)])?;
    }
    Ok(())
}

/// Records `sold` (product, units) at `ts` in the draft's sales ledger,
/// moves its `latest_ts` on, folds the hour it leaves (see the module
/// doc), and drops the buckets that fell out of the hour and the week
/// before it. Time is the actions' own `ts`, never a clock. Writes only
/// what changes: the ledger's buckets are big maps.
///
/// # Errors
/// If the state or a bucket is not an object.
pub fn record(d: &mut Draft, ts: u64, sold: Option<(&str, u64)>) -> Result<(), Rejection> {
    if !d.get([n::SALES.clone()]).is_some_and(object) {
        d.set([n::SALES.clone()], Tree::object())?;
    }
    // Every path below starts at the ledger: one walk to it.
    d.within([n::SALES.clone()], |ledger| record_in(ledger, ts, sold))
}

fn object(t: &Tree) -> bool {
    matches!(t, Tree::Object(_))
}

/// [`record`] in a draft of the ledger itself.
fn record_in(d: &mut Draft, ts: u64, sold: Option<(&str, u64)>) -> Result<(), Rejection> {
    let current = d.get([n::LATEST_TS.clone()]);
    let before = current.and_then(Tree::as_u64).unwrap_or(0);
    let latest = before.max(ts);
    // Most actions leave it as it is: no write then (a write of the same
    // value would change nothing either, but walks to it to find out).
    if current != Some(&Tree::from(latest)) {
        d.set([n::LATEST_TS.clone()], latest)?;
    }
    for field in [&n::MINUTES, &n::HOURS] {
        let at = [Segment::clone(field)];
        if !d.get(&at).is_some_and(object) {
            d.set(&at, Tree::object())?;
        }
    }
    for (field, width) in [(&n::MINUTES, MINUTE), (&n::HOURS, HOUR)] {
        // A sale in the current hour waits in its minute for the fold.
        if let Some((product, units)) = sold.filter(|_| width == MINUTE || ts / HOUR < latest / HOUR) {
            let cell = [Segment::clone(field), bucket_key(ts - ts % width), key(product)];
            d.update(cell, |n| Tree::from(n.and_then(Tree::as_u64).unwrap_or(0).saturating_add(units)))?;
        }
    }
    let ended = before - before % HOUR;
    let crossed = ended < latest - latest % HOUR;
    if crossed {
        fold(d, ended)?;
    }
    for (field, width, keep) in [(&n::MINUTES, MINUTE, SALES_MINUTES), (&n::HOURS, HOUR, SALES_HOURS)] {
        let at = [Segment::clone(field)];
        // Keys sort in time order, so the stale ones are at the front:
        // the first goes while it is stale.
        let oldest_kept = (latest - latest % width).saturating_sub((keep - 1) * width);
        let stale = |d: &Draft| {
            let (first, _) = d.get(&at).and_then(Tree::as_object)?.get_min()?;
            first.parse::<u64>().is_ok_and(|start| start < oldest_kept).then(|| first.clone())
        };
        while let Some(first) = stale(d) {
            d.remove([Segment::clone(field), Segment::Key(first)])?;
        }
    }
    if crossed && d.is_over_limit() {
        make_room(d, ended)?;
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

    proptest::proptest! {
        #[test]
        fn a_bucket_is_its_start_in_13_or_more_digits(start in proptest::prop_oneof![0..100_000u64, proptest::num::u64::ANY]) {
            proptest::prop_assert_eq!(sales_bucket(start), format!("{start:013}"));
            proptest::prop_assert_eq!(bucket_key(start), key(&format!("{start:013}")));
        }
    }

    #[test]
    fn bucket_keys_at_the_edges_of_their_width() {
        for start in [0, 9, 10, 999_999_999_999, 1_000_000_000_000, 9_999_999_999_999, 10_000_000_000_000, u64::MAX] {
            assert_eq!(sales_bucket(start), format!("{start:013}"));
            assert_eq!(bucket_key(start), key(&format!("{start:013}")), "{start}");
        }
    }

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
        // The current hour (t0's) is in its minutes until it ends.
        assert_eq!(sales["hours"], json!({ b(t0 - 167 * H): {"a": 2}, b(t0 - 2 * H): {"b": 3}, b(t0 - H): {"b": 4} }));
        // A late sale, for an hour before the current one, goes into that
        // hour's bucket as well as its minute's.
        let mut late = actions.clone();
        late.push(sale(9, t0 - 30 * 60_000, "b", 1));
        let sales = run(&late).0[1].to_value()["sales"].clone();
        assert_eq!(sales["hours"][b(t0 - H)], json!({"b": 5}));
        assert_eq!(sales["minutes"][b(t0 - 30 * 60_000)], json!({"b": 1}));
        assert_eq!(sales["latest_ts"], json!(t0 + 40_000));
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
        assert_eq!(next["sales"]["minutes"], json!({ b(t0): {"a": 1} }));
        assert_eq!(next["sales"]["hours"], json!({}));
    }

    #[test]
    fn a_ledger_from_before_the_fold_keeps_its_figures() {
        // An older ledger has the current hour's bucket beside its minutes,
        // with the same sales: the fold overwrites it with the same sums.
        const H: u64 = 3_600_000;
        let t0 = 1_794_999_600_000;
        let b = |start: u64| sales_bucket(start);
        let old = json!({"latest_ts": t0 + 90_000, "hours": {b(t0): {"a": 3, "b": 1}},
            "minutes": {b(t0): {"a": 1}, b(t0 + 60_000): {"a": 2, "b": 1}}});
        let mut d = Draft::of(Tree::from(json!({ "sales": old })));
        // A sale after the upgrade, in the same hour: in its minute alone.
        record(&mut d, t0 + 100_000, Some(("b", 2))).unwrap();
        record(&mut d, t0 + H, Some(("a", 5))).unwrap();
        let sales = d.into_state().to_value()["sales"].clone();
        assert_eq!(sales["hours"], json!({ b(t0): {"a": 3, "b": 3} }));
        assert_eq!(sales["minutes"], json!({ b(t0 + 60_000): {"a": 2, "b": 3}, b(t0 + H): {"a": 5} }));
        // An hour bucket of the current hour without minutes (an imported
        // state): the minutes are the hour's figures, so it goes.
        let imported = json!({"latest_ts": t0 + 600_000, "minutes": {}, "hours": {b(t0): {"a": 5}}});
        let mut d = Draft::of(Tree::from(json!({ "sales": imported })));
        record(&mut d, t0 + H, None).unwrap();
        assert_eq!(d.into_state().to_value()["sales"]["hours"], json!({}));
    }

    #[test]
    fn a_fold_over_the_size_limit_makes_room_instead_of_refusing_the_next_hour() {
        use nodb_dataview::engine::Engine;
        use nodb_shared::tree::limits::Limits;
        const C: u64 = 1_794_999_600_000; // a whole hour
        const H: u64 = HOUR;
        let name = |i: u64| format!("product-with-a-rather-long-name-{i:04}");
        let mut seq = 0;
        let mut at = |ts: u64, kind: &str, payload: serde_json::Value| {
            seq += 1;
            CommittedAction { ts, ..act(seq, kind, payload) }
        };
        let corrections: Vec<_> = (0..200)
            .map(|i| at(C - 2 * H, "stock/corrected", json!({"product": name(i), "location": "s", "quantity": 10})))
            .collect();
        // Each product sold once in hour C, then actions of the next hour.
        let sales: Vec<_> = (0..200)
            .map(|i| at(C + i * 17_000, "stock/sold", json!({"product": name(i), "location": "s", "quantity": 1})))
            .collect();
        let next: Vec<_> = [0u64, 1, 5, 10, 20, 30, 40, 50, 59, 61]
            .map(|m| {
                at(
                    C + H + m * 60_000 + 1,
                    "stock/corrected",
                    json!({"product": name(0), "location": "s", "quantity": 5}),
                )
            })
            .to_vec();
        // Unlimited: the size of `activity` when hour C ends.
        let mut free = Engine::new(warehouse::app());
        for a in corrections.iter().chain(&sales) {
            assert!(free.apply(a).unwrap().rejection.is_none());
        }
        let end_of_hour = free.bytes()[1];
        assert!(free.apply(&next[0]).unwrap().rejection.is_none());
        assert!(free.bytes()[1] > end_of_hour + 200, "the fold alone would go over the limit below");
        // Room for every sale of hour C, not for the fold beside its minutes.
        let mut tight =
            Engine::new(warehouse::app()).with_limits(Limits { max_bytes: end_of_hour + 200, ..Limits::default() });
        for a in corrections.iter().chain(&sales) {
            assert!(tight.apply(a).unwrap().rejection.is_none(), "seq {}", a.seq);
        }
        for a in &next {
            let applied = tight.apply(a).unwrap();
            assert_eq!(applied.rejection, None, "ts C+1h+{} min", (a.ts - C - H) / 60_000);
        }
        // The hour's figures are kept, in its hour bucket.
        let activity = tight.states()[1].to_value();
        assert_eq!(activity["sales"]["hours"][sales_bucket(C)].as_object().map(|o| o.len()), Some(200));
        assert!(tight.bytes()[1] <= end_of_hour + 200);
    }

    proptest::proptest! {
        /// The fold of an hour is its minutes' units summed per product,
        /// whatever else the minutes hold.
        #[test]
        fn the_fold_of_an_hour_sums_its_minute_buckets(
            buckets in proptest::collection::vec(
                (-3i64..65, proptest::collection::btree_map("p[0-9]{1,2}", 0u64..5, 0..12)), 0..40),
            huge in proptest::bool::ANY,
        ) {
            let start = 1_794_999_600_000u64;
            let mut minutes = serde_json::Map::new();
            let mut want = std::collections::BTreeMap::<String, u64>::new();
            for (minute, bucket) in buckets {
                let at = start.checked_add_signed(minute * 60_000).unwrap();
                let mut bucket: serde_json::Map<String, serde_json::Value> =
                    bucket.into_iter().map(|(p, n)| (p, json!(n))).collect();
                if huge && !bucket.is_empty() {
                    bucket.insert("p0".into(), json!(u64::MAX));
                }
                if minutes.contains_key(&sales_bucket(at)) {
                    continue;
                }
                if (0..60).contains(&minute) {
                    for (p, n) in &bucket {
                        let sum = want.entry(p.clone()).or_default();
                        *sum = sum.saturating_add(n.as_u64().unwrap());
                    }
                }
                minutes.insert(sales_bucket(at), serde_json::Value::Object(bucket));
            }
            minutes.insert("not a time".into(), json!({"p1": 7}));
            let folded = fold_hour(&Tree::from(serde_json::Value::Object(minutes)), start);
            let want = (!want.is_empty()).then(|| json!(want));
            proptest::prop_assert_eq!(folded.map(|t| t.to_value()), want);
        }
    }
}
