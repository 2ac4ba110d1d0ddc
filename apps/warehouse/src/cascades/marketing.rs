//! `marketing`: per product, the units sold in the last hour, day and week,
//! and the fastest movers — from the `activity` view alone.
//!
//! The `activity` view keeps a compact sales ledger, `sales`:
//! `{"latest_ts": T, "minutes": {START: {PRODUCT: units}}, "hours": {START: {…}}}`,
//! minute buckets for the last hour and hour buckets for the last week,
//! keyed by the bucket's start in unix milliseconds (13 digits). "Now" is
//! `latest_ts`, the newest action timestamp the view has seen — never a
//! clock — so the same activity state always gives the same marketing
//! state. Windows are whole buckets ending with the current one: the last
//! hour is the latest 60 minute buckets, the last day the latest 24 hour
//! buckets, the last week the latest 168. The current hour has no hour
//! bucket until it ends (the ledger folds its minutes then), so the day and
//! the week count it from its minute buckets.
//!
//! State: `{"now": T, "windows": {"hour": START, "day": START, "week": START},
//! "products": {P: {"hour": n, "day": n, "week": n}}, "totals": {…},
//! "fastest": [{"product": P, "hour": n, "day": n, "week": n}, …]}`, with
//! only products sold in the last week, and at most [`TOP`] fastest movers
//! (ranked by the last hour, then day, then week, then name).

use std::collections::{BTreeMap, BTreeSet};

use json_patch::PatchOperation;
use nodb_shared::{Path, Segment, Tree};

use super::{count, entries};
use crate::keys::key;
use nodb_cascade::{Cascade, Change};

pub use crate::views::sales::{HOUR, MINUTE};
/// How many fastest movers are listed.
pub const TOP: usize = 5;

/// The cascade: `marketing` over `activity`, with an incremental reducer
/// for changes within the same minute (the common case: a sale or two).
pub fn cascade() -> Cascade {
    Cascade::new("marketing", ["activity"], |up: &[&Tree]| reduce(up[0]))
        .with_incremental(|previous, up, changes| update(previous, up[0], changes[0]))
}

/// Units sold in the three windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sold {
    hour: u64,
    day: u64,
    week: u64,
}

impl Sold {
    fn tree(self) -> Tree {
        Tree::from_entries([
            ("hour", Tree::from(self.hour)),
            ("day", Tree::from(self.day)),
            ("week", Tree::from(self.week)),
        ])
    }

    fn of(entry: &Tree) -> Sold {
        Sold { hour: count(Some(entry), "hour"), day: count(Some(entry), "day"), week: count(Some(entry), "week") }
    }

    fn add(self, other: Sold) -> Sold {
        Sold {
            hour: self.hour.saturating_add(other.hour),
            day: self.day.saturating_add(other.day),
            week: self.week.saturating_add(other.week),
        }
    }
}

/// "Now" and the first bucket of each window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Windows {
    now: u64,
    hour: u64,
    day: u64,
    week: u64,
}

impl Windows {
    fn at(now: u64) -> Windows {
        Windows {
            now,
            hour: (now - now % MINUTE).saturating_sub(59 * MINUTE),
            day: (now - now % HOUR).saturating_sub(23 * HOUR),
            week: (now - now % HOUR).saturating_sub(167 * HOUR),
        }
    }

    /// The start of a bucket keyed `key`, if it is in the week so far.
    fn start(&self, key: &str, from: u64) -> Option<u64> {
        key.parse::<u64>().ok().filter(|s| *s >= from && *s <= self.now)
    }

    /// What the buckets of `sales` say about one product (`units` reads a
    /// bucket's units of it).
    fn sold(&self, sales: &Tree, mut units: impl FnMut(&Tree, &mut dyn FnMut(&str, u64))) -> BTreeMap<String, Sold> {
        let mut sold: BTreeMap<String, Sold> = BTreeMap::new();
        let current_hour = self.now - self.now % HOUR;
        for (start, bucket) in entries(sales, "minutes") {
            let Some(start) = self.start(start, self.hour) else { continue };
            units(bucket, &mut |p, n| {
                let e = sold.entry(p.to_string()).or_default();
                e.hour = e.hour.saturating_add(n);
                if start >= current_hour {
                    e.day = e.day.saturating_add(n);
                    e.week = e.week.saturating_add(n);
                }
            });
        }
        for (start, bucket) in entries(sales, "hours") {
            // The current hour is counted from its minutes (above).
            let Some(start) = self.start(start, self.week).filter(|s| *s < current_hour) else { continue };
            units(bucket, &mut |p, n| {
                let e = sold.entry(p.to_string()).or_default();
                e.week = e.week.saturating_add(n);
                if start >= self.day {
                    e.day = e.day.saturating_add(n);
                }
            });
        }
        sold
    }
}

/// The marketing state for this `activity` state.
pub fn reduce(activity: &Tree) -> Tree {
    let sales = activity.get([key("sales")]).cloned().unwrap_or_default();
    let w = Windows::at(count(Some(&sales), "latest_ts"));
    let sold = w.sold(&sales, |bucket, add| {
        for (p, n) in bucket.as_object().into_iter().flatten() {
            add(p, n.as_u64().unwrap_or(0));
        }
    });
    let products = sold.into_iter().filter(|(_, s)| *s != Sold::default()).map(|(p, s)| (p, s.tree()));
    assemble(w, Tree::from_entries(products))
}

/// The whole state from the windows and the per-product figures.
fn assemble(w: Windows, products: Tree) -> Tree {
    let sold: Vec<(&str, Sold)> =
        products.as_object().into_iter().flatten().map(|(p, e)| (&**p, Sold::of(e))).collect();
    let totals = sold.iter().fold(Sold::default(), |t, (_, s)| t.add(*s));
    let mut ranked = sold.clone();
    ranked.sort_by(|(pa, a), (pb, b)| (b.hour, b.day, b.week).cmp(&(a.hour, a.day, a.week)).then_with(|| pa.cmp(pb)));
    let fastest = ranked.iter().take(TOP).map(|(p, s)| {
        Tree::from_entries([
            ("product", Tree::from(*p)),
            ("hour", Tree::from(s.hour)),
            ("day", Tree::from(s.day)),
            ("week", Tree::from(s.week)),
        ])
    });
    let windows = [("hour", w.hour), ("day", w.day), ("week", w.week)].map(|(k, v)| (k, Tree::from(v)));
    Tree::from_entries([
        ("now", Tree::from(w.now)),
        ("windows", Tree::from_entries(windows)),
        ("totals", totals.tree()),
        ("fastest", Tree::from_items(fastest)),
        ("products", products),
    ])
}

/// The incremental reducer: when the windows have not moved (same minute)
/// and the activity patch only added units to some products' buckets,
/// recomputes just those products. `None` (compute in full) otherwise —
/// at least once a minute, when the windows move and old buckets go.
pub fn update(previous: &Tree, activity: &Tree, change: Change<'_>) -> Option<Tree> {
    let ops = match change {
        Change::Unchanged => return Some(previous.clone()),
        Change::Replaced => return None,
        Change::Patched(ops) => ops,
    };
    let sales = activity.get([key("sales")])?;
    let w = Windows::at(count(Some(sales), "latest_ts"));
    let before = previous.get([key("windows")]);
    if [("hour", w.hour), ("day", w.day), ("week", w.week)].iter().any(|(k, v)| count(before, k) != *v) {
        return None;
    }
    let mut touched = BTreeSet::new();
    for op in ops {
        let path = Path::parse(op.path().as_str()).ok()?;
        let in_sales = match path.segments() {
            [Segment::Key(s), rest @ ..] if &**s == "sales" => rest,
            [] => return None,
            _ => continue, // recent, counts, …: not marketing's business
        };
        let ledger = |f: &Segment| matches!(f, Segment::Key(k) if &**k == "minutes" || &**k == "hours");
        match in_sales {
            [Segment::Key(k)] if &**k == "latest_ts" => {}
            [f, _, product, ..] if ledger(f) => {
                touched.insert(segment(product));
            }
            // A new bucket: its products. (Buckets go only when the windows move.)
            [f, bucket] if ledger(f) && matches!(op, PatchOperation::Add(_)) => {
                let added = sales.get([f.clone(), bucket.clone()])?;
                touched.extend(added.as_object()?.keys().map(|p| p.to_string()));
            }
            [f, ..] if !ledger(f) && !matches!(f, Segment::Key(k) if &**k == "latest_ts") => {}
            _ => return None,
        }
    }
    let mut products = previous.get([key("products")]).cloned().unwrap_or_else(Tree::object);
    for p in touched {
        let sold = w.sold(sales, |bucket, add| add(&p, count(Some(bucket), &p))).remove(&p).unwrap_or_default();
        products = if sold == Sold::default() {
            products.remove([key(&p)]).ok()?
        } else {
            products.set([key(&p)], sold.tree()).ok()?
        };
    }
    Some(assemble(w, products))
}

fn segment(s: &Segment) -> String {
    match s {
        Segment::Key(k) => k.to_string(),
        Segment::Index(i) => i.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const T0: u64 = 1_794_999_600_000; // a whole hour

    fn count_of(payload: &Value) -> u64 {
        payload["quantity"].as_u64().unwrap()
    }

    fn bucket(start: u64) -> String {
        format!("{start:013}")
    }

    fn activity(latest: u64, minutes: Value, hours: Value) -> Tree {
        Tree::from(json!({"recent": [], "sales": {"latest_ts": latest, "minutes": minutes, "hours": hours}}))
    }

    #[test]
    fn windows_count_whole_buckets_ending_with_the_current_one() {
        assert_eq!(T0 % HOUR, 0);
        let now = T0 + 30 * MINUTE + 5_000;
        let mut minutes = serde_json::Map::new();
        // In the last hour: the current minute and 59 before it; not the 60th.
        minutes.insert(bucket(T0 + 30 * MINUTE), json!({"apple": 2}));
        minutes.insert(bucket(T0 + 30 * MINUTE - 59 * MINUTE), json!({"apple": 1, "pear": 4}));
        minutes.insert(bucket(T0 + 30 * MINUTE - 60 * MINUTE), json!({"apple": 100}));
        let mut hours = serde_json::Map::new();
        // The current hour counts from its minutes: a bucket of it (as a
        // ledger from before the fold has) is not counted twice.
        hours.insert(bucket(T0), json!({"apple": 2}));
        hours.insert(bucket(T0 - HOUR), json!({"apple": 101, "pear": 4}));
        hours.insert(bucket(T0 - 23 * HOUR), json!({"apple": 10}));
        hours.insert(bucket(T0 - 24 * HOUR), json!({"apple": 20, "kiwi": 1}));
        hours.insert(bucket(T0 - 167 * HOUR), json!({"kiwi": 5}));
        hours.insert(bucket(T0 - 168 * HOUR), json!({"fig": 9}));
        let m = reduce(&activity(now, Value::Object(minutes), Value::Object(hours))).to_value();
        assert_eq!(m["now"], json!(now));
        assert_eq!(m["products"]["apple"], json!({"hour": 3, "day": 113, "week": 133}));
        assert_eq!(m["products"]["pear"], json!({"hour": 4, "day": 4, "week": 4}));
        assert_eq!(m["products"]["kiwi"], json!({"hour": 0, "day": 0, "week": 6}));
        assert_eq!(m["products"].get("fig"), None, "older than a week");
        assert_eq!(m["totals"], json!({"hour": 7, "day": 117, "week": 143}));
        let fastest: Vec<&str> =
            m["fastest"].as_array().unwrap().iter().map(|f| f["product"].as_str().unwrap()).collect();
        assert_eq!(fastest, ["pear", "apple", "kiwi"]);
        assert_eq!(m["windows"]["week"], json!(T0 - 167 * HOUR));
    }

    #[test]
    fn the_top_is_bounded_and_ties_go_by_name() {
        let products: serde_json::Map<String, Value> = (0..8).map(|i| (format!("p{i}"), json!(1))).collect();
        let minutes = json!({ bucket(T0): products.clone() });
        let hours = json!({ bucket(T0): products });
        let m = reduce(&activity(T0, minutes, hours)).to_value();
        let fastest: Vec<&str> =
            m["fastest"].as_array().unwrap().iter().map(|f| f["product"].as_str().unwrap()).collect();
        assert_eq!(fastest, ["p0", "p1", "p2", "p3", "p4"]);
    }

    #[test]
    fn an_activity_without_a_ledger_sells_nothing() {
        let m = reduce(&Tree::from(json!({"recent": []}))).to_value();
        assert_eq!(m["products"], json!({}));
        assert_eq!(m["fastest"], json!([]));
        assert_eq!(m["now"], json!(0));
        // Buckets from the future of `now` (a hand-made state) do not count.
        let m = reduce(&activity(T0, json!({bucket(T0 + HOUR): {"a": 1}}), json!({}))).to_value();
        assert_eq!(m["products"], json!({}));
    }

    /// The figures counted straight from every sale made: what the ledger,
    /// minutes folded into hours, must give.
    fn counted(sales: &[(u64, String, u64)], now: u64) -> Value {
        let w = Windows::at(now);
        let mut sold = BTreeMap::<&str, Sold>::new();
        for (ts, p, n) in sales {
            let (minute, hour) = (ts - ts % MINUTE, ts - ts % HOUR);
            let e = sold.entry(p).or_default();
            if minute >= w.hour {
                e.hour += n;
            }
            if hour >= w.day {
                e.day += n;
            }
            if hour >= w.week {
                e.week += n;
            }
        }
        sold.retain(|_, s| *s != Sold::default());
        sold.into_iter().map(|(p, s)| (p.to_string(), s.tree().to_value())).collect()
    }

    #[test]
    fn the_incremental_reducer_gives_what_the_full_one_gives_over_the_real_activity_view() {
        use nodb_shared::diff::diff;
        use nodb_shared::protocol::CommittedAction;
        let app = crate::views::app();
        let mut states = app.initial_states();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut below = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut ts = T0;
        let mut previous = reduce(&states[1]);
        let mut incremental_steps = 0;
        let (mut sales, mut now) = (Vec::new(), 0);
        for seq in 1..=3000u64 {
            // Mostly seconds apart; now and then a jump of minutes or hours,
            // or a late action, up to three hours behind.
            ts += match below(100) {
                0 => below(30) * HOUR,
                1..=4 => below(90) * MINUTE,
                _ => below(20_000),
            };
            let at = if below(40) == 0 { ts - below(3 * HOUR) } else { ts };
            let p = format!("p{}", below(8));
            let (kind, payload) = if below(4) == 0 {
                ("stock/corrected", json!({"product": p, "location": "s", "quantity": 50}))
            } else {
                ("stock/sold", json!({"product": p, "location": "s", "quantity": 1 + below(3)}))
            };
            let action = CommittedAction {
                seq,
                ts: at,
                id: format!("c:{seq}"),
                kind: kind.into(),
                payload,
                meta: None,
                client: None,
            };
            let Ok(next) = app.reduce(&states, &action) else { continue };
            now = now.max(at);
            if kind == "stock/sold" {
                sales.push((at, action.payload["product"].as_str().unwrap().to_string(), count_of(&action.payload)));
            }
            let ops = diff(&states[1], &next[1]);
            let full = reduce(&next[1]);
            assert_eq!(full.to_value()["products"], counted(&sales, now), "seq {seq}");
            let next_state = match update(&previous, &next[1], Change::Patched(&ops.0)) {
                Some(incremental) => {
                    incremental_steps += 1;
                    assert_eq!(incremental.to_json_string(), full.to_json_string(), "seq {seq}");
                    incremental
                }
                None => full,
            };
            (states, previous) = (next, next_state);
        }
        assert!(incremental_steps > 1000, "the shortcut is taken most of the time: {incremental_steps}");
        assert!(previous.get("/products").and_then(Tree::as_object).is_some_and(|p| !p.is_empty()));
    }
}
