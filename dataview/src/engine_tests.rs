//! The engine's own tests: rejections, panics, control actions, patches.

use super::*;
use crate::reducer::View;
use proptest::prelude::*;
use serde_json::json;

use crate::test_app::{act, action};

#[test]
fn one_patch_per_view_per_seq() {
    let mut e = Engine::new(crate::test_app::app());
    let a = e.apply(&act(1, "tally/add", json!({"item": "a", "n": 3}))).unwrap();
    assert_eq!(a.patches.len(), 2);
    assert!(a.patches.iter().all(|p| !p.0.is_empty()));
    let a = e.apply(&act(2, "noise", json!(null))).unwrap();
    assert!(a.patches.iter().all(|p| p.0.is_empty()) && a.rejection.is_none());
    let a = e.apply(&act(3, "tally/take", json!({"item": "a", "n": 9}))).unwrap();
    assert!(a.patches.iter().all(|p| p.0.is_empty()));
    assert!(a.rejection.unwrap().0.contains("only 3"));
    assert_eq!(e.seq(), 3);
    assert_eq!(e.apply(&act(5, "noise", json!(null))).unwrap_err(), EngineError::OutOfSequence { expected: 4, got: 5 });
}

#[test]
fn control_actions() {
    let mut e = Engine::new(crate::json_doc::app());
    let a = e.apply(&act(1, SET_STATE, json!({"view": "doc", "state": {"imported": true}}))).unwrap();
    assert_eq!(
        serde_json::to_value(&a.patches[0]).unwrap(),
        json!([{"op": "add", "path": "/imported", "value": true}])
    );
    assert_eq!(e.states()[0], Tree::from(json!({"imported": true})));
    let a = e.apply(&act(2, SNAPSHOT, json!(null))).unwrap();
    assert!(a.snapshot_requested && a.patches[0].0.is_empty());
    let a = e.apply(&act(3, SET_STATE, json!({"view": "nope", "state": 1}))).unwrap();
    assert!(a.rejection.unwrap().0.contains("no view \"nope\""));
    // A JSON document may hold any JSON value, as a `json/patch` of the
    // root may make it.
    for (seq, state) in (4..).zip([json!([1]), json!("text"), json!(null), json!(2.5), json!({})]) {
        let a = e.apply(&act(seq, SET_STATE, json!({"view": "doc", "state": state.clone()}))).unwrap();
        assert!(a.rejection.is_none(), "{state}: {:?}", a.rejection);
        assert_eq!(e.states()[0], Tree::from(state));
    }
}

#[test]
fn set_state_takes_only_the_kind_of_the_initial_state_and_what_the_check_allows() {
    let app = App {
        name: "kinds".into(),
        views: vec![
            View::new("doc", Tree::object(), |s: &Tree, _: &CommittedAction| Ok(s.clone())),
            View::new("list", Tree::from(json!([])), |s: &Tree, _: &CommittedAction| Ok(s.clone())),
            View::new("count", Tree::from(0), |s: &Tree, _: &CommittedAction| Ok(s.clone())).with_check(|s| {
                if s.as_i64().is_some_and(|n| n >= 0) {
                    Ok(())
                } else {
                    Err(Rejection::new("a count is a whole number of 0 or more"))
                }
            }),
        ],
    };
    let mut e = Engine::new(app);
    let before = e.states().to_vec();
    let refused = [
        (
            json!({"view": "doc", "state": [1, 2]}),
            "view \"doc\" must be an object, like its initial state, not an array",
        ),
        (json!({"view": "doc", "state": null}), "view \"doc\" must be an object, like its initial state, not null"),
        (
            json!({"view": "list", "state": {"a": 1}}),
            "view \"list\" must be an array, like its initial state, not an object",
        ),
        // The view's own check decides instead of the kind rule.
        (json!({"view": "count", "state": "7"}), "view \"count\": a count is a whole number of 0 or more"),
        (json!({"view": "count", "state": -3}), "view \"count\": a count is a whole number of 0 or more"),
        (json!({"view": "count", "state": 1.5}), "view \"count\": a count is a whole number of 0 or more"),
    ];
    for (seq, (payload, reason)) in (1..).zip(refused) {
        let a = e.apply(&act(seq, SET_STATE, payload.clone())).unwrap();
        let rejection = a.rejection.unwrap_or_else(|| panic!("{payload} should be rejected"));
        assert!(rejection.0.starts_with(SET_STATE) && rejection.0.contains(reason), "{payload}: {rejection}");
        assert!(a.patches.iter().all(|p| p.0.is_empty()), "{payload}: nothing changes");
        assert_eq!(e.states(), &before[..], "{payload}: nothing changes");
    }
    let taken = [
        json!({"view": "doc", "state": {"imported": true}}),
        json!({"view": "doc", "state": {}}),
        json!({"view": "list", "state": [1, {"a": 2}]}),
        json!({"view": "count", "state": 7}),
    ];
    for (seq, payload) in (7..).zip(taken) {
        let a = e.apply(&act(seq, SET_STATE, payload.clone())).unwrap();
        assert!(a.rejection.is_none(), "{payload}: {:?}", a.rejection);
    }
    assert_eq!(e.states()[0], Tree::object());
    assert_eq!(e.states()[1], Tree::from(json!([1, {"a": 2}])));
    assert_eq!(e.states()[2], Tree::from(7));
}

#[test]
fn a_panicking_reducer_is_a_rejection_and_the_view_moves_on() {
    let app = App {
        name: "fragile".into(),
        views: vec![View::new("v", Tree::from(0), |s: &Tree, a: &CommittedAction| {
            if a.kind == "boom" {
                panic!("kaboom at {}", a.seq);
            }
            Ok(Tree::from(s.as_i64().unwrap_or(0) + 1))
        })],
    };
    let mut e = Engine::new(app);
    e.apply(&act(1, "inc", json!(null))).unwrap();
    let a = e.apply(&act(2, "boom", json!(null))).unwrap();
    assert!(a.panicked && a.rejection.unwrap().0.contains("kaboom at 2"));
    e.apply(&act(3, "inc", json!(null))).unwrap();
    assert_eq!(e.states()[0], Tree::from(2));
}

proptest! {
    /// Replaying a history from zero and from a snapshot taken at any
    /// seq gives byte-identical states, and every patch turns the old
    /// state into the new one.
    #[test]
    fn replay_from_any_snapshot_is_byte_identical(
        history in proptest::collection::vec(action(), 1..60),
        cut in 0usize..60,
    ) {
        let actions: Vec<CommittedAction> =
            history.into_iter().enumerate().map(|(i, (k, p))| act(i as u64 + 1, &k, p)).collect();
        let app = crate::test_app::app();
        let mut full = Engine::new(app.clone());
        let cut = cut.min(actions.len());
        let mut snapshot = None;
        for a in &actions {
            if full.seq() as usize == cut {
                // A snapshot goes through its serialised form.
                let text: Vec<String> = full.states().iter().map(Tree::to_json_string).collect();
                snapshot = Some((full.seq(), text));
            }
            let before = full.states().to_vec();
            let applied = full.apply(a).unwrap();
            for ((old, new), p) in before.iter().zip(full.states()).zip(&applied.patches) {
                prop_assert_eq!(&nodb_shared::patch::apply(old, p).unwrap(), new);
            }
        }
        let (seq, text) = snapshot.unwrap_or_else(|| (full.seq(), full.states().iter().map(Tree::to_json_string).collect()));
        let states = text.iter().map(|t| serde_json::from_str::<Tree>(t).unwrap()).collect();
        let mut resumed = Engine::restore(app, seq, states);
        for a in actions.iter().skip(seq as usize) {
            resumed.apply(a).unwrap();
        }
        prop_assert_eq!(resumed.seq(), full.seq());
        for (x, y) in resumed.states().iter().zip(full.states()) {
            prop_assert_eq!(x.to_json_string(), y.to_json_string());
        }
    }
}
