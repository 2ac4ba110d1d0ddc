//! The warehouse views' own tests, and the helpers the other test
//! modules of `views` share (`act`, `run`).

use super::*;
use serde_json::{Value, json};

/// A committed action at `seq` (its `ts` is `1000 + seq`).
pub(crate) fn act(seq: u64, kind: &str, payload: Value) -> CommittedAction {
    CommittedAction {
        seq,
        ts: 1000 + seq,
        id: format!("c:{seq}"),
        kind: kind.into(),
        payload,
        meta: None,
        client: None,
    }
}

/// The app's states after `actions`, and the rejected seqs with why.
pub(crate) fn run(actions: &[CommittedAction]) -> (Vec<Tree>, Vec<(u64, String)>) {
    let app = app();
    let mut states = app.initial_states();
    let mut rejected = Vec::new();
    for a in actions {
        match app.reduce(&states, a) {
            Ok(next) => states = next,
            Err(r) => rejected.push((a.seq, r.0)),
        }
    }
    (states, rejected)
}

#[test]
fn the_stock_hint_names_the_locations_the_reducer_reads() {
    let (states, _) = run(&[act(1, "stock/corrected", json!({"product": "apple", "location": "back", "quantity": 3}))]);
    let named = |kind: &str, product: &str| {
        let mut reads = Reads::new();
        stock_reads(&act(2, kind, json!({"product": product, "location": "back", "quantity": 1})), &mut reads);
        (reads.len(), reads.read(&states[0]))
    };
    assert_eq!(named("stock/sold", "apple"), (1, 1), "apple's locations are there");
    assert_eq!(named("stock/moved", "pear"), (1, 0), "no pear yet");
    let mut reads = Reads::new();
    stock_reads(&act(3, "stock/sold", json!({"location": "back"})), &mut reads);
    assert!(reads.is_empty(), "no product, no path");
}

#[test]
fn every_entry_of_recent_is_the_payload_with_seq_ts_and_type() {
    let payloads = [
        ("stock/corrected", json!({"product": "apple", "location": "back", "quantity": 10})),
        ("stock/moved", json!({"product": "apple", "from": "back", "to": "shelf", "quantity": 4})),
        ("stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 3})),
        ("stock/destroyed", json!({"product": "apple", "location": "back", "quantity": 1, "reason": "bruised"})),
        ("stock/threshold_set", json!({"product": "apple", "threshold": 5})),
        ("reorder/placed", json!({"product": "apple", "quantity": 10, "supplier_ref": "po-1"})),
        ("reorder/failed", json!({"product": "apple", "reason": "closed"})),
    ];
    let actions: Vec<_> = payloads.iter().zip(1..).map(|((kind, p), seq)| act(seq, kind, p.clone())).collect();
    let (states, rejected) = run(&actions);
    assert!(rejected.is_empty(), "{rejected:?}");
    let recent = states[1].get("/recent").and_then(Tree::as_array).expect("recent");
    assert_eq!(recent.len(), payloads.len());
    for ((a, entry), (kind, payload)) in actions.iter().zip(recent.iter()).zip(&payloads) {
        let mut expected = payload.as_object().expect("an object").clone();
        expected.extend([("seq".into(), json!(a.seq)), ("ts".into(), json!(a.ts)), ("type".into(), json!(kind))]);
        assert_eq!(entry, &Tree::from(serde_json::Value::Object(expected)), "{kind}");
    }
}

#[test]
fn a_day_in_the_warehouse() {
    let (states, rejected) = run(&[
        act(1, "stock/corrected", json!({"product": "apple", "location": "back", "quantity": 10})),
        act(2, "stock/moved", json!({"product": "apple", "from": "back", "to": "shelf", "quantity": 4})),
        act(3, "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 3})),
        act(4, "stock/destroyed", json!({"product": "apple", "location": "back", "quantity": 1, "reason": "bruised"})),
        act(5, "stock/corrected", json!({"product": "pear", "location": "shelf", "quantity": 2})),
        act(6, "unrelated/thing", json!({"x": 1})),
    ]);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(
        states[0],
        Tree::from(json!({
            "products": {
                "apple": {"locations": {"back": 5, "shelf": 1}, "total": 6},
                "pear": {"locations": {"shelf": 2}, "total": 2}
            },
            "total": 8
        }))
    );
    let activity = states[1].to_value();
    assert_eq!(activity["counts"], json!({"corrected": 2, "moved": 1, "sold": 1, "destroyed": 1}));
    assert_eq!((activity["sold_units"].clone(), activity["destroyed_units"].clone()), (json!(3), json!(1)));
    assert_eq!(activity["recent"].as_array().unwrap().len(), 5);
    assert_eq!(
        activity["recent"][3],
        json!({"seq": 4, "ts": 1004, "type": "stock/destroyed", "product": "apple", "location": "back", "quantity": 1, "reason": "bruised"})
    );
}

#[test]
fn falling_below_the_threshold_marks_a_reorder_pending_until_restocked() {
    let product = |states: &[Tree]| states[0].to_value()["products"]["apple"].clone();
    let (states, rejected) = run(&[
        act(1, "stock/corrected", json!({"product": "apple", "location": "shelf", "quantity": 10})),
        act(2, "stock/threshold_set", json!({"product": "apple", "threshold": 5, "quantity": 20})),
        act(3, "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 4})),
    ]);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(
        product(&states),
        json!({"locations": {"shelf": 6}, "total": 6, "threshold": 5, "reorder_quantity": 20})
    );
    let (states, _) = run(&[
        act(1, "stock/corrected", json!({"product": "apple", "location": "shelf", "quantity": 10})),
        act(2, "stock/threshold_set", json!({"product": "apple", "threshold": 5, "quantity": 20})),
        act(3, "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 6})),
        act(4, "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 1})),
    ]);
    // Pending from the seq it fell below, and only that one.
    assert_eq!(product(&states)["reorder"], json!({"status": "pending", "seq": 3, "quantity": 20}));
    let placed = act(5, "reorder/placed", json!({"product": "apple", "quantity": 20, "supplier_ref": "SUP-1"}));
    let (states, _) = run(&[
        act(1, "stock/corrected", json!({"product": "apple", "location": "shelf", "quantity": 10})),
        act(2, "stock/threshold_set", json!({"product": "apple", "threshold": 5, "quantity": 20})),
        act(3, "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 6})),
        placed.clone(),
    ]);
    assert_eq!(
        product(&states)["reorder"],
        json!({"status": "placed", "seq": 3, "quantity": 20, "supplier_ref": "SUP-1"})
    );
    let (states, _) = run(&[
        act(1, "stock/corrected", json!({"product": "apple", "location": "shelf", "quantity": 10})),
        act(2, "stock/threshold_set", json!({"product": "apple", "threshold": 5})),
        act(3, "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 6})),
        act(4, "reorder/failed", json!({"product": "apple", "reason": "supplier down"})),
    ]);
    assert_eq!(
        product(&states)["reorder"],
        json!({"status": "failed", "seq": 3, "quantity": 10, "reason": "supplier down"})
    );
    // Restocked: no reorder under way; an outcome arriving late changes nothing.
    let (states, _) = run(&[
        act(1, "stock/corrected", json!({"product": "apple", "location": "shelf", "quantity": 10})),
        act(2, "stock/threshold_set", json!({"product": "apple", "threshold": 5, "quantity": 20})),
        act(3, "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 6})),
        act(4, "stock/corrected", json!({"product": "apple", "location": "shelf", "quantity": 30})),
        placed,
    ]);
    assert_eq!(product(&states).get("reorder"), None);
    let activity = states[1].to_value();
    assert_eq!(activity["recent"][4]["supplier_ref"], json!("SUP-1"));
}

#[test]
fn taking_more_than_is_there_is_rejected_in_every_view() {
    let (states, rejected) = run(&[
        act(1, "stock/corrected", json!({"product": "apple", "location": "shelf", "quantity": 2})),
        act(2, "stock/sold", json!({"product": "apple", "location": "shelf", "quantity": 3})),
        act(3, "stock/moved", json!({"product": "apple", "from": "back", "to": "shelf", "quantity": 1})),
        act(4, "stock/destroyed", json!({"product": "kiwi", "location": "shelf", "quantity": 1, "reason": "x"})),
    ]);
    assert_eq!(
        rejected,
        vec![
            (2, "only 2 of apple at shelf, cannot sell 3".to_string()),
            (3, "only 0 of apple at back, cannot move 1".to_string()),
            (4, "only 0 of kiwi at shelf, cannot destroy 1".to_string()),
        ]
    );
    assert_eq!(states[0].get("/total"), Some(&Tree::from(2)));
    // The activity view did not record what the stock view refused.
    assert_eq!(states[1].get("/counts/sold"), Some(&Tree::from(0)));
    assert_eq!(states[1].get("/recent").and_then(Tree::as_array).map(|a| a.len()), Some(1));
}

#[test]
fn bad_payloads_are_rejected_with_the_reason() {
    let cases = [
        (json!({"product": "apple", "location": "shelf"}), "missing field `quantity`"),
        (json!({"product": "apple", "location": "shelf", "quantity": -1}), "invalid value"),
        (json!({"product": "", "location": "shelf", "quantity": 1}), "must not be empty"),
        (json!({"product": "a", "location": "shelf", "quantity": 1, "colour": "red"}), "unknown field"),
    ];
    for (p, needle) in cases {
        let (_, rejected) = run(&[act(1, "stock/corrected", p.clone())]);
        assert!(rejected.len() == 1 && rejected[0].1.contains(needle), "{p}: {rejected:?}");
    }
    let (_, rejected) = run(&[act(1, "stock/sold", json!({"product": "a", "location": "s", "quantity": 0}))]);
    assert!(rejected[0].1.contains("at least 1"), "{rejected:?}");
    let (_, rejected) = run(&[act(1, "stock/moved", json!({"product": "a", "from": "s", "to": "s", "quantity": 1}))]);
    assert!(rejected[0].1.contains("both"), "{rejected:?}");
    // An empty place, wherever it is named.
    for (kind, p) in [
        ("stock/corrected", json!({"product": "a", "location": "", "quantity": 1})),
        ("stock/sold", json!({"product": "a", "location": "", "quantity": 1})),
        ("stock/moved", json!({"product": "a", "from": "s", "to": "", "quantity": 1})),
        ("stock/moved", json!({"product": "a", "from": "", "to": "s", "quantity": 1})),
        ("stock/destroyed", json!({"product": "a", "location": "", "quantity": 1, "reason": "x"})),
    ] {
        let (_, rejected) = run(&[act(1, kind, p.clone())]);
        assert!(rejected.len() == 1 && rejected[0].1.contains("must not be empty"), "{p}: {rejected:?}");
    }
    let (_, rejected) =
        run(&[act(1, "stock/destroyed", json!({"product": "a", "location": "s", "quantity": 1, "reason": " "}))]);
    assert!(rejected[0].1.contains("reason"), "{rejected:?}");
}

#[test]
fn quantities_never_wrap() {
    let (states, rejected) = run(&[
        act(1, "stock/corrected", json!({"product": "a", "location": "x", "quantity": u64::MAX})),
        act(2, "stock/corrected", json!({"product": "a", "location": "y", "quantity": 1})),
    ]);
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].1.contains("exceed"));
    assert_eq!(states[0].get("/total"), Some(&Tree::from(u64::MAX)));
}

#[test]
fn activity_keeps_the_latest_entries() {
    let mut actions = vec![act(1, "stock/corrected", json!({"product": "a", "location": "s", "quantity": 1000}))];
    for seq in 2..=80 {
        actions.push(act(seq, "stock/sold", json!({"product": "a", "location": "s", "quantity": 1})));
    }
    let (states, rejected) = run(&actions);
    assert!(rejected.is_empty());
    let recent = states[1].get("/recent").and_then(Tree::as_array).unwrap();
    assert_eq!(recent.len(), RECENT);
    assert_eq!(recent[RECENT - 1].get("/seq"), Some(&Tree::from(80)));
    assert_eq!(states[1].get("/sold_units"), Some(&Tree::from(79)));
}

#[test]
fn the_same_history_gives_byte_identical_states() {
    let actions: Vec<CommittedAction> = (1..=200)
        .map(|seq| {
            let p = format!("p{}", seq % 7);
            if seq % 3 == 0 {
                act(seq, "stock/sold", json!({"product": p, "location": "s", "quantity": 1}))
            } else {
                act(seq, "stock/corrected", json!({"product": p, "location": "s", "quantity": seq % 5}))
            }
        })
        .collect();
    let (a, ra) = run(&actions);
    let (b, rb) = run(&actions);
    assert_eq!(ra, rb);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.to_json_string(), y.to_json_string());
    }
}
