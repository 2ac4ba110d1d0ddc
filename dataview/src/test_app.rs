//! A small application for the data view's own tests: `tally`, with two
//! views that change together — `counts` (items and how many of each) and
//! `log` (how many changes, and the last few items changed). Taking more of
//! an item than there is is rejected, so neither view changes.

use nodb_shared::protocol::CommittedAction;
use nodb_shared::{Segment, Tree};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::engine::SNAPSHOT;
use crate::reducer::{Reduced, Rejection, View, payload};
use nodb_shared::draft::Draft;

#[derive(Deserialize)]
struct Change {
    item: String,
    n: u64,
}

fn items(item: &str) -> [Segment; 2] {
    [Segment::Key("items".into()), Segment::Key(item.into())]
}

fn counts(state: &Tree, action: &CommittedAction) -> Reduced {
    let sign = match action.kind.as_str() {
        "tally/add" => 1,
        "tally/take" => -1,
        _ => return Ok(state.clone()),
    };
    let c: Change = payload(action)?;
    let have = state.get(items(&c.item)).and_then(Tree::as_u64).unwrap_or(0);
    let next = if sign > 0 {
        have.saturating_add(c.n)
    } else {
        have.checked_sub(c.n).ok_or_else(|| Rejection::new(format!("only {have} {}", c.item)))?
    };
    state.set(items(&c.item), Tree::from(next)).map_err(Rejection::from)
}

fn log(state: &Tree, action: &CommittedAction) -> Reduced {
    if !action.kind.starts_with("tally/") {
        return Ok(state.clone());
    }
    if action.kind == "tally/boom" {
        panic!("boom");
    }
    let c: Change = payload(action)?;
    let changes = state.get([Segment::Key("changes".into())]).and_then(Tree::as_u64).unwrap_or(0);
    let s = state.set([Segment::Key("changes".into())], Tree::from(changes + 1)).map_err(Rejection::from)?;
    s.set([Segment::Key("last".into())], Tree::from(c.item.as_str())).map_err(Rejection::from)
}

/// The `tally` app.
pub(crate) fn app() -> App {
    App {
        name: "tally".into(),
        views: vec![
            View::new("counts", Tree::from(json!({"items": {}})), counts),
            View::new("log", Tree::from(json!({"changes": 0})), log),
        ],
    }
}

/// The `tally` app with drafted views: the same rules, edits in place.
/// `tally/boom` makes `log` panic after its first edit, and `tally/big`
/// makes `counts` write a value far larger than its limit in the tests
/// allows after changing a count, so both must be undone. Both views read
/// ahead (`View::reading_ahead`): `counts` names the item's count, `log`
/// a path that is never there, and its hint panics on `tally/take` of 0,
/// so that every test of the drafted views also shows that a hint changes
/// nothing.
pub(crate) fn drafted_app() -> App {
    fn counts(d: &mut Draft, action: &CommittedAction) -> Result<(), Rejection> {
        if action.kind == "tally/big" {
            d.set("/changed", true)?;
            return Ok(d.set("/big", "x".repeat(10_000))?);
        }
        let sign = match action.kind.as_str() {
            "tally/add" => 1,
            "tally/take" => -1,
            _ => return Ok(()),
        };
        let c: Change = payload(action)?;
        let have = d.get(items(&c.item)).and_then(Tree::as_u64).unwrap_or(0);
        let next = if sign > 0 {
            have.saturating_add(c.n)
        } else {
            have.checked_sub(c.n).ok_or_else(|| Rejection::new(format!("only {have} {}", c.item)))?
        };
        Ok(d.set(items(&c.item), Tree::from(next))?)
    }
    fn log(d: &mut Draft, action: &CommittedAction) -> Result<(), Rejection> {
        if !action.kind.starts_with("tally/") || action.kind == "tally/big" {
            return Ok(());
        }
        let changes = d.get("/changes").and_then(Tree::as_u64).unwrap_or(0);
        d.set("/changes", Tree::from(changes + 1))?;
        if action.kind == "tally/boom" {
            panic!("boom after an edit");
        }
        let c: Change = payload(action)?;
        Ok(d.set("/last", Tree::from(c.item.as_str()))?)
    }
    App {
        name: "tally".into(),
        views: vec![
            View::drafted("counts", Tree::from(json!({"items": {}})), counts).reading_ahead(|a, reads| {
                if let Some(item) = a.payload.get("item").and_then(Value::as_str) {
                    reads.add([Segment::from("items"), Segment::from(item)]);
                }
            }),
            View::drafted("log", Tree::from(json!({"changes": 0})), log).reading_ahead(|a, reads| {
                assert!(!(a.kind == "tally/take" && a.payload.get("n") == Some(&json!(0))), "a hint that panics");
                reads.add([Segment::from("nowhere"), Segment::Index(3)]);
            }),
        ],
    }
}

/// A committed action at `seq`.
pub(crate) fn act(seq: u64, kind: &str, payload: Value) -> CommittedAction {
    CommittedAction { seq, ts: seq * 10, id: format!("c:{seq}"), kind: kind.into(), payload, meta: None, client: None }
}

/// A random `tally` action (some rejected), a snapshot request or an
/// action of a type no view knows.
pub(crate) fn action() -> impl Strategy<Value = (String, Value)> {
    let item = || prop_oneof![Just("a"), Just("b"), Just("c")];
    prop_oneof![
        3 => (item(), 0u64..20).prop_map(|(i, n)| ("tally/add".to_string(), json!({"item": i, "n": n}))),
        3 => (item(), 0u64..12).prop_map(|(i, n)| ("tally/take".to_string(), json!({"item": i, "n": n}))),
        1 => Just((SNAPSHOT.to_string(), Value::Null)),
        1 => Just(("other/thing".to_string(), json!(1))),
        1 => Just(("tally/boom".to_string(), json!({"item": "a", "n": 1}))),
    ]
}
