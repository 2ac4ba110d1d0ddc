//! The warehouse's views: stock per product and location, and activity.
//!
//! Actions (payload fields in braces):
//!
//! - `stock/corrected {product, location, quantity}` — a count sets the
//!   quantity at a location;
//! - `stock/moved {product, from, to, quantity}`;
//! - `stock/sold {product, location, quantity}`;
//! - `stock/destroyed {product, location, quantity, reason}`;
//! - `stock/threshold_set {product, threshold, quantity?}` — reorder when
//!   the total falls below the threshold (see [`reorder`]);
//! - `reorder/placed {product, quantity, supplier_ref}` and
//!   `reorder/failed {product, reason}`, recorded by the `reorder` envoy.
//!
//! Views:
//!
//! - `stock`: `{"products": {P: {"locations": {L: qty}, "total": n, …}}, "total": n}`,
//!   with a product's `threshold`, `reorder_quantity` and `reorder` status
//!   when it has a threshold;
//! - `activity`: the latest 50 moves, sales, losses and corrections
//!   (`recent`, oldest first), counts per kind, units sold and destroyed,
//!   and a compact sales ledger (`sales`: units sold per product in minute
//!   buckets for the last hour and hour buckets for the last week, by the
//!   actions' own `ts`, an hour's bucket folded from its minutes when it
//!   ends), from which the `marketing` cascade derives its figures (see
//!   [`sales`]).
//!
//! `stock` names each action's product entry as what it will read
//! (`View::reading_ahead`), so that a catch-up finds several products'
//! entries in its big map at once.
//!
//! Moving, selling or destroying more than is at a location is rejected:
//! the chronicler records the intention, the reducer decides what it means.

use crate::keys::key;
use nodb_shared::protocol::CommittedAction;
use nodb_shared::tree::{Key, Object};
use nodb_shared::{Segment, Tree};
use serde::Deserialize;

use nodb_dataview::app::App;
use nodb_dataview::reducer::{Rejection, View, payload};
use nodb_shared::draft::Draft;
use nodb_shared::read_ahead::Reads;

mod names;
pub mod reorder;
pub mod sales;

use names as n;

use reorder::{ReorderFailed, ReorderPlaced, ThresholdSet};

/// How many entries `activity.recent` keeps.
pub const RECENT: usize = 50;

/// The application.
pub fn app() -> App {
    App {
        name: "warehouse".into(),
        views: vec![
            View::drafted("stock", initial_stock(), reduce_stock).reading_ahead(stock_reads),
            View::drafted("activity", initial_activity(), reduce_activity),
        ],
    }
}

fn initial_stock() -> Tree {
    Tree::from_entries([("products", Tree::object()), ("total", Tree::from(0u64))])
}

fn initial_activity() -> Tree {
    let counts = Tree::from_entries(["corrected", "moved", "sold", "destroyed"].map(|k| (k, Tree::from(0u64))));
    Tree::from_entries([
        ("recent", Tree::array()),
        ("counts", counts),
        ("sold_units", Tree::from(0u64)),
        ("destroyed_units", Tree::from(0u64)),
        ("sales", sales::initial()),
    ])
}

/// `stock/corrected`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corrected<'a> {
    /// The product.
    pub product: &'a str,
    /// The location.
    pub location: &'a str,
    /// The quantity counted there.
    pub quantity: u64,
}

/// `stock/moved`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moved<'a> {
    /// The product.
    pub product: &'a str,
    /// Where it is taken from.
    pub from: &'a str,
    /// Where it goes.
    pub to: &'a str,
    /// How many.
    pub quantity: u64,
}

/// `stock/sold`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sold<'a> {
    /// The product.
    pub product: &'a str,
    /// Where it was sold from.
    pub location: &'a str,
    /// How many.
    pub quantity: u64,
}

/// `stock/destroyed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destroyed<'a> {
    /// The product.
    pub product: &'a str,
    /// Where it was.
    pub location: &'a str,
    /// How many.
    pub quantity: u64,
    /// Why (broken, expired, …).
    pub reason: &'a str,
}

/// A warehouse action, decoded and checked.
#[derive(Debug)]
pub enum Stock<'a> {
    /// `stock/corrected`.
    Corrected(Corrected<'a>),
    /// `stock/moved`.
    Moved(Moved<'a>),
    /// `stock/sold`.
    Sold(Sold<'a>),
    /// `stock/destroyed`.
    Destroyed(Destroyed<'a>),
    /// `stock/threshold_set`.
    ThresholdSet(ThresholdSet<'a>),
    /// `reorder/placed`.
    ReorderPlaced(ReorderPlaced<'a>),
    /// `reorder/failed`.
    ReorderFailed(ReorderFailed<'a>),
}

impl<'a> Stock<'a> {
    /// Decodes `action`: `None` for types this app does not know.
    ///
    /// # Errors
    /// A rejection for a bad payload: missing or unknown fields, empty
    /// names, a zero quantity where something must happen.
    pub fn decode(action: &'a CommittedAction) -> Result<Option<Stock<'a>>, Rejection> {
        let stock = match action.kind.as_str() {
            "stock/corrected" => Stock::Corrected(payload(action)?),
            "stock/moved" => Stock::Moved(payload(action)?),
            "stock/sold" => Stock::Sold(payload(action)?),
            "stock/destroyed" => Stock::Destroyed(payload(action)?),
            "stock/threshold_set" => Stock::ThresholdSet(payload(action)?),
            "reorder/placed" => Stock::ReorderPlaced(payload(action)?),
            "reorder/failed" => Stock::ReorderFailed(payload(action)?),
            _ => return Ok(None),
        };
        let (product, no_place, quantity) = match &stock {
            Stock::Corrected(c) => (c.product, c.location.is_empty(), 1),
            Stock::Moved(m) => (m.product, m.from.is_empty() || m.to.is_empty(), m.quantity),
            Stock::Sold(s) => (s.product, s.location.is_empty(), s.quantity),
            Stock::Destroyed(d) => (d.product, d.location.is_empty(), d.quantity),
            Stock::ThresholdSet(t) => (t.product, false, 1),
            Stock::ReorderPlaced(p) => (p.product, false, p.quantity),
            Stock::ReorderFailed(f) => (f.product, false, 1),
        };
        if product.is_empty() || no_place {
            return Err(Rejection::new(format!("{}: product and location must not be empty", action.kind)));
        }
        if quantity == 0 {
            return Err(Rejection::new(format!("{}: the quantity must be at least 1", action.kind)));
        }
        if let Stock::Moved(m) = &stock
            && m.from == m.to
        {
            return Err(Rejection::new(format!("stock/moved: from and to are both {:?}", m.from)));
        }
        if let Stock::Destroyed(d) = &stock
            && d.reason.trim().is_empty()
        {
            return Err(Rejection::new("stock/destroyed: give a reason"));
        }
        Ok(Some(stock))
    }
}

/// One product's entry while a stock action changes it, edited where it is
/// through a draft of the entry, with the product's total as it goes.
struct ProductEdit<'a, 'd> {
    product: &'a str,
    entry: &'d mut Draft,
    total: u64,
}

impl ProductEdit<'_, '_> {
    fn quantity(&self, location: &str) -> u64 {
        self.entry.get([n::LOCATIONS.clone(), key(location)]).and_then(Tree::as_u64).unwrap_or(0)
    }

    fn set(&mut self, location: &str, q: u64) -> Result<(), Rejection> {
        let old = self.quantity(location);
        self.put(location, old, q)
    }

    /// Writes `q` at `location`, where `old` is (as `quantity` read it).
    fn put(&mut self, location: &str, old: u64, q: u64) -> Result<(), Rejection> {
        self.entry.set([n::LOCATIONS.clone(), key(location)], q)?;
        // Saturating: a state imported with `@@nodb/set_state` may carry
        // totals that do not add up; they must not wrap around.
        self.total = self.total.saturating_sub(old).checked_add(q).ok_or_else(too_many)?;
        Ok(())
    }

    fn take(&mut self, location: &str, q: u64, verb: &str) -> Result<(), Rejection> {
        let have = self.quantity(location);
        if have < q {
            return Err(Rejection::new(format!("only {have} of {} at {location}, cannot {verb} {q}", self.product)));
        }
        self.put(location, have, have - q)
    }
}

pub(crate) fn too_many() -> Rejection {
    Rejection::new("the quantity would exceed what can be counted (2^64 - 1)")
}

/// The paths of `stock` that `action` reads: its product's locations
/// (through its entry), in a map of every product.
fn stock_reads(action: &CommittedAction, reads: &mut Reads) {
    if let Some(product) = product_of(action) {
        reads.add([n::PRODUCTS.clone(), key(product), n::LOCATIONS.clone()]);
    }
}

/// The `product` of a warehouse action's payload, read without decoding
/// the rest of it.
fn product_of(action: &CommittedAction) -> Option<&str> {
    action.payload.get("product")?.as_str()
}

/// The `stock` reducer. Every stock action changes one product's entry —
/// edited where it is, through a draft of the entry — then its totals, its
/// reorder status as of the action's seq, and the stock's total.
///
/// # Errors
/// A rejection for a bad payload, or for taking more than is there.
pub fn reduce_stock(d: &mut Draft, action: &CommittedAction) -> Result<(), Rejection> {
    let Some(stock) = Stock::decode(action)? else { return Ok(()) };
    let (product, seq) = (stock.product(), action.seq);
    let at = [n::PRODUCTS.clone(), key(product)];
    let edit = |entry: &mut Draft| -> Result<(u64, u64), Rejection> {
        // A product's entry is an object (one imported otherwise is replaced).
        if !matches!(entry.state(), Tree::Object(_)) {
            entry.set([], Tree::object())?;
        }
        let before = entry.get([n::TOTAL.clone()]).and_then(Tree::as_u64).unwrap_or(0);
        let mut edit = ProductEdit { product, entry, total: before };
        stock.edit(&mut edit, seq)?;
        let total = edit.total;
        if entry.get([n::LOCATIONS.clone()]).is_none() {
            entry.set([n::LOCATIONS.clone()], Tree::object())?;
        }
        entry.set([n::TOTAL.clone()], total)?;
        reorder::review(entry, seq)?;
        Ok((before, total))
    };
    let (before, after) = match d.within(at.clone(), edit) {
        Err(Rejection(_)) if d.get(at.clone()).is_none() => {
            // A new product: its entry is made apart, then written whole
            // (one `add` in the patch).
            let mut entry = Draft::of(Tree::object());
            let done = edit(&mut entry)?;
            d.set(at, entry.into_state())?;
            done
        }
        done => done?,
    };
    let total = d.get([n::TOTAL.clone()]).and_then(Tree::as_u64).unwrap_or(0);
    Ok(d.set([n::TOTAL.clone()], total.saturating_sub(before).checked_add(after).ok_or_else(too_many)?)?)
}

impl Stock<'_> {
    /// The product the action is about.
    pub fn product(&self) -> &str {
        match self {
            Stock::Corrected(c) => c.product,
            Stock::Moved(m) => m.product,
            Stock::Sold(x) => x.product,
            Stock::Destroyed(x) => x.product,
            Stock::ThresholdSet(t) => t.product,
            Stock::ReorderPlaced(p) => p.product,
            Stock::ReorderFailed(f) => f.product,
        }
    }

    /// What the action does to its product's entry, at `seq`.
    fn edit(&self, e: &mut ProductEdit<'_, '_>, seq: u64) -> Result<(), Rejection> {
        match self {
            Stock::Corrected(c) => e.set(c.location, c.quantity),
            Stock::Moved(m) => {
                e.take(m.from, m.quantity, "move")?;
                let there = e.quantity(m.to);
                e.put(m.to, there, there.checked_add(m.quantity).ok_or_else(too_many)?)
            }
            Stock::Sold(x) => e.take(x.location, x.quantity, "sell"),
            Stock::Destroyed(x) => e.take(x.location, x.quantity, "destroy"),
            Stock::ThresholdSet(t) => reorder::set_threshold(e.entry, t, seq),
            Stock::ReorderPlaced(p) => {
                let outcome = [
                    ("status", Tree::from("placed")),
                    ("quantity", Tree::from(p.quantity)),
                    ("supplier_ref", Tree::from(p.supplier_ref)),
                ];
                reorder::record(e.entry, &outcome)
            }
            Stock::ReorderFailed(f) => {
                let outcome = [("status", Tree::from("failed")), ("reason", Tree::from(f.reason))];
                reorder::record(e.entry, &outcome)
            }
        }
    }
}

/// The `activity` reducer. (It does not check quantities: the views of an
/// app change together, so an action the `stock` view rejects never
/// reaches `activity`'s state.)
///
/// # Errors
/// A rejection for a bad payload.
pub fn reduce_activity(d: &mut Draft, action: &CommittedAction) -> Result<(), Rejection> {
    let Some(stock) = Stock::decode(action)? else { return Ok(()) };
    let Activity { entry, kind, units, sold } = Activity::of(action, &stock);
    d.push([n::RECENT.clone()], entry)?;
    if let Some(Tree::Array(recent)) = d.get([n::RECENT.clone()])
        && recent.len() > RECENT
    {
        d.remove([n::RECENT.clone(), Segment::Index(0)])?;
    }
    d.update([n::COUNTS.clone(), key(kind)], |n| Tree::from(n.and_then(Tree::as_u64).unwrap_or(0).saturating_add(1)))?;
    if let Some((field, n)) = units {
        d.update([key(field)], |v| Tree::from(v.and_then(Tree::as_u64).unwrap_or(0).saturating_add(n)))?;
    }
    sales::record(d, action.ts, sold)
}

/// What one action adds to the `activity` view: its entry in `recent`,
/// the count it adds to, the units field it adds to, and the sale it
/// records in the ledger.
pub(crate) struct Activity<'a> {
    pub(crate) entry: Tree,
    pub(crate) kind: &'static str,
    pub(crate) units: Option<(&'static str, u64)>,
    pub(crate) sold: Option<(&'a str, u64)>,
}

impl<'a> Activity<'a> {
    pub(crate) fn of(action: &CommittedAction, stock: &'a Stock<'a>) -> Activity<'a> {
        // Each kind's entry: its own fields with `seq`, `ts` and `type`,
        // written in key order, so the object is made in one allocation
        // with nothing to sort (`Object::from_array`).
        let k = |key: &Key| Key::clone(key);
        let s = |v: &str| Tree::from(v);
        let q = Tree::from;
        let (seq, ts) = ((k(&n::SEQ), q(action.seq)), (k(&n::TS), q(action.ts)));
        // `decode` made the variant from the type, so this is `action.kind`.
        let ty = |t: &Tree| (k(&n::TYPE), Tree::clone(t));
        let (kind, units, entry) = match stock {
            Stock::Corrected(c) => (
                "corrected",
                None,
                Object::from_array([
                    (k(&n::LOCATION), s(c.location)),
                    (k(&n::PRODUCT), s(c.product)),
                    (k(&n::QUANTITY), q(c.quantity)),
                    seq,
                    ts,
                    ty(&n::CORRECTED_TYPE),
                ]),
            ),
            Stock::Moved(m) => (
                "moved",
                None,
                Object::from_array([
                    (k(&n::FROM), s(m.from)),
                    (k(&n::PRODUCT), s(m.product)),
                    (k(&n::QUANTITY), q(m.quantity)),
                    seq,
                    (k(&n::TO), s(m.to)),
                    ts,
                    ty(&n::MOVED_TYPE),
                ]),
            ),
            Stock::Sold(x) => (
                "sold",
                Some(("sold_units", x.quantity)),
                Object::from_array([
                    (k(&n::LOCATION), s(x.location)),
                    (k(&n::PRODUCT), s(x.product)),
                    (k(&n::QUANTITY), q(x.quantity)),
                    seq,
                    ts,
                    ty(&n::SOLD_TYPE),
                ]),
            ),
            Stock::Destroyed(d) => (
                "destroyed",
                Some(("destroyed_units", d.quantity)),
                Object::from_array([
                    (k(&n::LOCATION), s(d.location)),
                    (k(&n::PRODUCT), s(d.product)),
                    (k(&n::QUANTITY), q(d.quantity)),
                    (k(&n::REASON), s(d.reason)),
                    seq,
                    ts,
                    ty(&n::DESTROYED_TYPE),
                ]),
            ),
            Stock::ThresholdSet(t) => (
                "threshold_set",
                None,
                Object::from_array([
                    (k(&n::PRODUCT), s(t.product)),
                    seq,
                    (k(&n::THRESHOLD_KEY), q(t.threshold)),
                    ts,
                    ty(&n::THRESHOLD_SET_TYPE),
                ]),
            ),
            Stock::ReorderPlaced(p) => (
                "reorder_placed",
                None,
                Object::from_array([
                    (k(&n::PRODUCT), s(p.product)),
                    (k(&n::QUANTITY), q(p.quantity)),
                    seq,
                    (k(&n::SUPPLIER_REF), s(p.supplier_ref)),
                    ts,
                    ty(&n::REORDER_PLACED_TYPE),
                ]),
            ),
            Stock::ReorderFailed(f) => (
                "reorder_failed",
                None,
                Object::from_array([
                    (k(&n::PRODUCT), s(f.product)),
                    (k(&n::REASON), s(f.reason)),
                    seq,
                    ts,
                    ty(&n::REORDER_FAILED_TYPE),
                ]),
            ),
        };
        let sold = match stock {
            Stock::Sold(x) => Some((x.product, x.quantity)),
            _ => None,
        };
        Activity { entry: Tree::Object(entry), kind, units, sold }
    }
}

#[cfg(test)]
mod oracle;

#[cfg(test)]
pub(crate) mod tests;
