//! A drafted app's history keeps edits, not states: at every seq it holds,
//! the states, catch-up messages (whole and subtree) and exact streams it
//! gives equal those of an engine that kept every state — and an app with
//! pure views, whose history keeps its states, gives them alike.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::{AtError, CatchUp, Exact, Hub, subtree};
use crate::engine::{Diffs, Engine, SET_STATE};
use crate::test_app::{act, action, app, drafted_app};
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;

/// A `@@nodb/set_state` of the `counts` view: its patch is a diff.
fn set_state() -> impl Strategy<Value = (String, Value)> {
    (0u64..30).prop_map(|n| (SET_STATE.to_string(), json!({"view": "counts", "state": {"items": {"a": n}}})))
}

/// `state` with the ops of the patch message `message` applied.
fn patched(state: &Tree, message: &[u8]) -> Tree {
    let m: Value = serde_json::from_slice(message).unwrap();
    assert_eq!(m["type"], "patch", "{m}");
    let ops: json_patch::Patch = serde_json::from_value(m["ops"].clone()).unwrap();
    nodb_shared::patch::apply(state, &ops).unwrap()
}

/// The state in the snapshot message `message`.
fn snapshot(message: &[u8]) -> Tree {
    let m: Value = serde_json::from_slice(message).unwrap();
    assert_eq!(m["type"], "snapshot", "{m}");
    Tree::from(m["state"].clone())
}

proptest! {
    #[test]
    fn the_history_gives_every_past_state_and_patch_it_holds(
        actions in prop::collection::vec(prop_oneof![8 => action(), 1 => set_state()], 1..100),
        batches in prop::collection::vec((0usize..100, 1usize..30), 0..4),
        history_len in 2usize..40,
        drafted in any::<bool>(),
    ) {
        let app = if drafted { drafted_app() } else { app() };
        let history: Vec<CommittedAction> =
            actions.into_iter().enumerate().map(|(i, (kind, payload))| act(i as u64 + 1, &kind, payload)).collect();
        // The oracle: every state, after every seq.
        let mut oracle = Engine::new(app.clone());
        let mut states = vec![oracle.states().to_vec()];
        for a in &history {
            oracle.apply_with(a, Diffs::Nothing).unwrap();
            states.push(oracle.states().to_vec());
        }
        // The hub: one action at a time, but for a few batches.
        let hub = Hub::new(Engine::new(app), history_len);
        let mut at = 0;
        while at < history.len() {
            match batches.iter().find(|(start, _)| *start == at) {
                Some((_, len)) => {
                    let end = (at + len).min(history.len());
                    hub.apply_batch(&history[at..end]).unwrap();
                    at = end;
                }
                None => {
                    hub.apply(&history[at]).unwrap();
                    at += 1;
                }
            }
        }
        let head = history.len() as u64;
        let text = |t: &Tree| t.to_json_string();
        for view in 0..2 {
            let oracle = |k: u64| states[k as usize].get(view).expect("a view");
            for k in 0..=head {
                let held = match hub.state_at(view, Some(k)) {
                    Ok((seq, state)) => {
                        prop_assert_eq!(seq, k);
                        prop_assert_eq!(text(&state), text(oracle(k)), "view {} at {}", view, k);
                        true
                    }
                    Err(AtError::Gone { .. }) => false,
                    Err(e) => panic!("{e:?}"),
                };
                let (before, now) = (oracle(k), oracle(head));
                let (c, seq) = hub.catch_up(view, Some(k));
                prop_assert_eq!(seq, head);
                match c {
                    CatchUp::Nothing => prop_assert_eq!(k, head),
                    CatchUp::Patch(m) | CatchUp::Combined(m) => {
                        prop_assert!(held);
                        prop_assert_eq!(text(&patched(before, &m)), text(now), "view {} from {}", view, k);
                    }
                    CatchUp::Snapshot(m) => {
                        prop_assert!(!held);
                        prop_assert_eq!(text(&snapshot(&m)), text(now));
                    }
                }
                // A client that may read only `/items` of `counts`.
                if view == 0 && held && k < head {
                    let (c, _) = hub.catch_up_subtree(0, "/items", Some(k));
                    let m = c.into_message().expect("a patch");
                    let rebased = patched(&subtree(Some(before), "/items"), &m);
                    prop_assert_eq!(text(&rebased), text(&subtree(Some(now), "/items")));
                }
                match hub.exact(view, k, usize::MAX) {
                    Exact::Patches(steps) => {
                        prop_assert!(held);
                        let mut state = before.clone();
                        for step in steps {
                            state = patched(&state, &step.message);
                            prop_assert_eq!(text(&state), text(oracle(step.seq)), "exact, seq {}", step.seq);
                        }
                        prop_assert_eq!(text(&state), text(now));
                    }
                    Exact::Nothing => prop_assert_eq!(k, head),
                    Exact::NotInHistory => prop_assert!(!held),
                }
            }
        }
    }
}
