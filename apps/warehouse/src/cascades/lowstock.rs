//! `lowstock`: the products under their reorder threshold, with their
//! reorder status and how long their stock lasts at the past week's pace —
//! from the `stock` view and the `marketing` cascade (so a cascade of a
//! cascade).
//!
//! State: `{"products": {P: {"total", "threshold", "short", "reorder",
//! "sold_day", "sold_week", "cover_hours"}}, "count": n}` where `short` is
//! how many are missing to reach the threshold, `reorder` the `stock`
//! view's reorder status (`{"status": "pending"|"placed"|"failed", …}`, or
//! `null`), and `cover_hours` the total divided by the hourly pace of the
//! last week (`null` when nothing sold).
//!
//! Each product's entry depends only on that product's entries upstream,
//! so the incremental reducer recomputes just the products the upstream
//! patches touched.

use std::collections::BTreeSet;

use nodb_shared::{Path, Segment, Tree};

use super::{count, entries};
use crate::keys::key;
use nodb_cascade::{Cascade, Change};

/// The cascade: `lowstock` over `stock` and `marketing`.
pub fn cascade() -> Cascade {
    Cascade::new("lowstock", ["stock", "marketing"], |up: &[&Tree]| reduce(up[0], up[1]))
        .with_incremental(|previous, up, changes| update(previous, up[0], up[1], changes))
}

/// The lowstock state for these `stock` and `marketing` states.
pub fn reduce(stock: &Tree, marketing: &Tree) -> Tree {
    let sales = marketing.get([key("products")]);
    let products = entries(stock, "products")
        .filter_map(|(p, entry)| Some((p, product(entry, sales.and_then(|s| s.get([key(p)])))?)));
    state(Tree::from_entries(products))
}

fn state(products: Tree) -> Tree {
    let n = products.as_object().map_or(0, |o| o.len());
    Tree::from_entries([("products", products), ("count", Tree::from(n as u64))])
}

/// A product's entry, if its total is under its threshold.
fn product(entry: &Tree, sales: Option<&Tree>) -> Option<Tree> {
    let threshold = entry.get([key("threshold")]).and_then(Tree::as_u64)?;
    let total = count(Some(entry), "total");
    if total >= threshold {
        return None;
    }
    let (sold_day, sold_week) = (count(sales, "day"), count(sales, "week"));
    let cover = if sold_week == 0 {
        Tree::Null
    } else {
        Tree::from((u128::from(total) * 168 / u128::from(sold_week)).min(u128::from(u64::MAX)) as u64)
    };
    Some(Tree::from_entries([
        ("total", Tree::from(total)),
        ("threshold", Tree::from(threshold)),
        ("short", Tree::from(threshold - total)),
        ("reorder", entry.get([key("reorder")]).cloned().unwrap_or_default()),
        ("sold_day", Tree::from(sold_day)),
        ("sold_week", Tree::from(sold_week)),
        ("cover_hours", cover),
    ]))
}

/// Which product a patch path concerns: `Ok(Some(p))` for a path under
/// `/products/p`, `Ok(None)` for a path that no entry depends on, `Err`
/// when it may concern every product.
fn product_of(pointer: &str) -> Result<Option<String>, ()> {
    let path = Path::parse(pointer).map_err(|_| ())?;
    match path.segments() {
        [] => Err(()),
        [Segment::Key(k), rest @ ..] if &**k == "products" => match rest {
            [] => Err(()),
            [Segment::Key(p), ..] => Ok(Some(p.to_string())),
            [Segment::Index(i), ..] => Ok(Some(i.to_string())),
        },
        _ => Ok(None),
    }
}

/// The incremental reducer: recomputes the products the changes touched.
/// `None` (compute in full) when a change may concern every product.
pub fn update(previous: &Tree, stock: &Tree, marketing: &Tree, changes: &[Change<'_>]) -> Option<Tree> {
    let mut touched = BTreeSet::new();
    for change in changes {
        match change {
            Change::Unchanged => {}
            Change::Replaced => return None,
            Change::Patched(ops) => {
                for op in *ops {
                    let from = match op {
                        json_patch::PatchOperation::Move(m) => Some(&m.from),
                        json_patch::PatchOperation::Copy(c) => Some(&c.from),
                        json_patch::PatchOperation::Test(_) => continue,
                        _ => None,
                    };
                    for pointer in std::iter::once(op.path().as_str()).chain(from.map(|f| f.as_str())) {
                        touched.extend(product_of(pointer).ok()?);
                    }
                }
            }
        }
    }
    let mut products = previous.get([key("products")]).cloned().unwrap_or_else(Tree::object);
    for p in touched {
        let entry = stock.get([key("products"), key(&p)]);
        let sales = marketing.get([key("products"), key(&p)]);
        let had = products.get([key(&p)]).is_some();
        products = match (entry.and_then(|e| product(e, sales)), had) {
            (Some(e), _) => products.set([key(&p)], e).ok()?,
            (None, true) => products.remove([key(&p)]).ok()?,
            (None, false) => products,
        };
    }
    Some(state(products))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodb_shared::diff::diff;
    use serde_json::json;

    fn stock(products: serde_json::Value) -> Tree {
        Tree::from(json!({"products": products, "total": 0}))
    }

    fn marketing(products: serde_json::Value) -> Tree {
        Tree::from(json!({"now": 0, "products": products, "fastest": []}))
    }

    #[test]
    fn products_under_their_threshold_with_reorder_status_and_cover() {
        let s = stock(json!({
            "apple": {"locations": {"shelf": 3}, "total": 3, "threshold": 5, "reorder_quantity": 10,
                      "reorder": {"status": "placed", "seq": 4, "quantity": 10, "supplier_ref": "S-1"}},
            "pear": {"locations": {"shelf": 9}, "total": 9, "threshold": 5},
            "kiwi": {"locations": {}, "total": 0, "threshold": 2},
            "fig": {"locations": {"shelf": 1}, "total": 1}
        }));
        let m =
            marketing(json!({"apple": {"hour": 1, "day": 2, "week": 84}, "pear": {"hour": 0, "day": 1, "week": 1}}));
        let l = reduce(&s, &m).to_value();
        assert_eq!(
            l,
            json!({"count": 2, "products": {
                "apple": {"total": 3, "threshold": 5, "short": 2, "sold_day": 2, "sold_week": 84, "cover_hours": 6,
                          "reorder": {"status": "placed", "seq": 4, "quantity": 10, "supplier_ref": "S-1"}},
                "kiwi": {"total": 0, "threshold": 2, "short": 2, "sold_day": 0, "sold_week": 0, "cover_hours": null,
                         "reorder": null}
            }})
        );
    }

    /// A tiny deterministic generator, so the test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn the_incremental_reducer_gives_what_the_full_one_gives() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut s = stock(json!({}));
        let mut m = marketing(json!({}));
        let mut previous = reduce(&s, &m);
        for step in 0..2000 {
            let p = format!("p{}", rng.next(12));
            let (next_s, next_m) = match rng.next(4) {
                0 => {
                    let e = json!({"total": rng.next(10), "threshold": rng.next(8), "locations": {}});
                    (s.set([key("products"), key(&p)], Tree::from(e)).unwrap(), m.clone())
                }
                1 if s.get([key("products"), key(&p)]).is_some() => {
                    (s.remove([key("products"), key(&p)]).unwrap(), m.clone())
                }
                2 => {
                    let e = json!({"hour": 0, "day": rng.next(5), "week": rng.next(50)});
                    (s.clone(), m.set([key("products"), key(&p)], Tree::from(e)).unwrap())
                }
                _ => (s.set([key("total")], Tree::from(step as u64)).unwrap(), m.clone()),
            };
            let (ds, dm) = (diff(&s, &next_s), diff(&m, &next_m));
            let changes = [Change::Patched(&ds.0), Change::Patched(&dm.0)];
            let incremental = update(&previous, &next_s, &next_m, &changes).expect("product paths only");
            let full = reduce(&next_s, &next_m);
            assert_eq!(incremental.to_json_string(), full.to_json_string(), "step {step}");
            (s, m, previous) = (next_s, next_m, incremental);
        }
        // A change to every product at once falls back to the full reducer.
        let whole = diff(&Tree::object(), &s);
        assert!(update(&previous, &s, &m, &[Change::Patched(&whole.0), Change::Unchanged]).is_none());
        assert!(update(&previous, &s, &m, &[Change::Replaced, Change::Unchanged]).is_none());
    }
}
