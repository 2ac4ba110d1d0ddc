//! The warehouse's views under the data view's replay laws, for random
//! histories (with rejections, snapshots and unknown types): replaying from
//! a snapshot at any seq, or in batches view by view, gives byte-identical
//! states to replaying one action at a time from zero.

use nodb_dataview::batch::replay_views;
use nodb_dataview::engine::{Diffs, Engine, SNAPSHOT};
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;
use proptest::prelude::*;
use serde_json::{Value, json};

fn act(seq: u64, kind: &str, payload: Value) -> CommittedAction {
    CommittedAction { seq, ts: seq * 10, id: format!("c:{seq}"), kind: kind.into(), payload, meta: None, client: None }
}

/// A random warehouse action (some rejected), a snapshot request or an
/// action of a type no view knows.
fn warehouse_action() -> impl Strategy<Value = (String, Value)> {
    let name = || prop_oneof![Just("a"), Just("b"), Just("c")];
    let place = || prop_oneof![Just("shelf"), Just("back"), Just("van")];
    prop_oneof![
        (name(), place(), 0u64..20)
            .prop_map(|(p, l, q)| ("stock/corrected".to_string(), json!({"product": p, "location": l, "quantity": q}))),
        (name(), place(), place(), 0u64..8).prop_map(|(p, f, t, q)| (
            "stock/moved".to_string(),
            json!({"product": p, "from": f, "to": t, "quantity": q})
        )),
        (name(), place(), 0u64..8)
            .prop_map(|(p, l, q)| ("stock/sold".to_string(), json!({"product": p, "location": l, "quantity": q}))),
        (name(), 1u64..20)
            .prop_map(|(p, t)| ("stock/threshold_set".to_string(), json!({"product": p, "threshold": t}))),
        Just((SNAPSHOT.to_string(), Value::Null)),
        Just(("other/thing".to_string(), json!(1))),
    ]
}

fn history(actions: Vec<(String, Value)>) -> Vec<CommittedAction> {
    actions.into_iter().enumerate().map(|(i, (k, p))| act(i as u64 + 1, &k, p)).collect()
}

proptest! {
    #[test]
    fn replay_from_any_snapshot_is_byte_identical(
        actions in proptest::collection::vec(warehouse_action(), 1..60),
        cut in 0usize..60,
    ) {
        let actions = history(actions);
        let app = nodb_warehouse::views::app();
        let mut full = Engine::new(app.clone());
        let cut = cut.min(actions.len());
        let mut snapshot = None;
        for a in &actions {
            if full.seq() as usize == cut {
                let text: Vec<String> = full.states().iter().map(Tree::to_json_string).collect();
                snapshot = Some((full.seq(), text));
            }
            let before = full.states().to_vec();
            let applied = full.apply(a).unwrap();
            for ((old, new), p) in before.iter().zip(full.states()).zip(&applied.patches) {
                prop_assert_eq!(&nodb_shared::patch::apply(old, p).unwrap(), new);
            }
        }
        let (seq, text) =
            snapshot.unwrap_or_else(|| (full.seq(), full.states().iter().map(Tree::to_json_string).collect()));
        let states = text.iter().map(|t| serde_json::from_str::<Tree>(t).unwrap()).collect();
        let mut resumed = Engine::restore(app, seq, states);
        for a in actions.iter().skip(seq as usize) {
            resumed.apply(a).unwrap();
        }
        for (x, y) in resumed.states().iter().zip(full.states()) {
            prop_assert_eq!(x.to_json_string(), y.to_json_string());
        }
    }

    #[test]
    fn batches_replay_like_one_action_at_a_time(
        actions in proptest::collection::vec(warehouse_action(), 1..120),
        batch in 1usize..40,
    ) {
        let actions = history(actions);
        let app = nodb_warehouse::views::app();
        let mut sequential = Engine::new(app.clone());
        for a in &actions {
            sequential.apply_with(a, Diffs::Skip).unwrap();
        }
        let mut states = app.initial_states();
        for chunk in actions.chunks(batch) {
            states = match replay_views(&app, &states, chunk) {
                Some(next) => next,
                None => {
                    let mut e = Engine::restore(app.clone(), chunk[0].seq - 1, states);
                    for a in chunk {
                        e.apply_with(a, Diffs::Skip).unwrap();
                    }
                    e.states().to_vec()
                }
            };
        }
        for (a, b) in states.iter().zip(sequential.states()) {
            prop_assert_eq!(a.to_json_string(), b.to_json_string());
        }
    }
}
