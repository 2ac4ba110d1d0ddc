//! The engine with drafted views against the same app with pure ones (the
//! oracle), and the hub's batches applied in place against one action at
//! a time.

use nodb_shared::tree::limits::bytes_of;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::hub::Hub;
use crate::test_app::{act, action, app, drafted_app};
use std::sync::atomic::Ordering::Relaxed;

fn history(actions: Vec<(String, serde_json::Value)>) -> Vec<CommittedAction> {
    actions.into_iter().enumerate().map(|(i, (kind, payload))| act(i as u64 + 1, &kind, payload)).collect()
}

proptest! {
    /// Drafted views and pure ones reject the same actions (panics
    /// included: a drafted view's edits before the panic are undone) and
    /// reach the same states; each seq's recorded patch turns the states
    /// before into the states after; the sizes kept are the states' sizes.
    #[test]
    fn drafted_views_equal_pure_ones(actions in prop::collection::vec(action(), 1..80)) {
        let mut drafted = Engine::new(drafted_app());
        let mut pure = Engine::new(app());
        for a in history(actions) {
            let before = drafted.states().to_vec();
            let mine = drafted.apply(&a).unwrap();
            let theirs = pure.apply(&a).unwrap();
            prop_assert_eq!(mine.rejection.is_some(), theirs.rejection.is_some(), "seq {}: {:?}", a.seq, mine.rejection);
            prop_assert_eq!(mine.panicked, theirs.panicked);
            for (v, old) in before.iter().enumerate() {
                prop_assert_eq!(drafted.states()[v].to_json_string(), pure.states()[v].to_json_string());
                let patched = nodb_shared::patch::apply(old, &mine.patches[v]).unwrap();
                prop_assert_eq!(&patched, &drafted.states()[v]);
                prop_assert_eq!(drafted.bytes()[v], bytes_of(&drafted.states()[v]));
            }
        }
    }

    /// Applied with [`Diffs::Nothing`] (drafts that keep only what undoes
    /// their edits), the same actions reach the same states and sizes and
    /// reject (or panic on) the same actions as with patches — under a
    /// size limit too, so that some drafts are undone — and hand back no
    /// patches or edits.
    #[test]
    fn applying_without_edits_reaches_the_same_states(
        actions in prop::collection::vec(action(), 1..80),
        max_bytes in 40u64..400,
    ) {
        let limits = nodb_shared::tree::limits::Limits { max_depth: 64, max_bytes };
        let mut recorded = Engine::new(drafted_app()).with_limits(limits);
        let mut bare = Engine::new(drafted_app()).with_limits(limits);
        for a in history(actions) {
            let mine = bare.apply_with(&a, Diffs::Nothing).unwrap();
            let theirs = recorded.apply_with(&a, Diffs::Compute).unwrap();
            prop_assert_eq!(&mine.rejection, &theirs.rejection, "seq {}", a.seq);
            prop_assert_eq!(mine.panicked, theirs.panicked);
            prop_assert!(mine.patches.is_empty() && mine.edits.is_empty());
            prop_assert_eq!(bare.states(), recorded.states(), "seq {}", a.seq);
            prop_assert_eq!(bare.bytes(), recorded.bytes());
        }
    }

    /// [`Engine::apply_run`] — each view over a run on a thread of its
    /// own, undone from the first action the views disagree on — gives
    /// what applying one action at a time gives: the same rejection (its
    /// reason too) and panic flag for every seq, and the same states,
    /// sizes and seq after every run. The histories mix actions one view
    /// refuses and the other takes (`take` of too many), panics after an
    /// edit (`boom`), views over the size limit (`big`), snapshot
    /// requests and actions no view knows.
    #[test]
    fn runs_on_threads_equal_one_action_at_a_time(
        actions in prop::collection::vec(prop_oneof![6 => action(), 1 => Just(("tally/big".to_string(), json!({})))], 1..150),
        cuts in prop::collection::vec(1usize..60, 1..8),
        max_bytes in 200u64..2_000,
    ) {
        let limits = nodb_shared::tree::limits::Limits { max_depth: 64, max_bytes };
        let actions = history(actions);
        let mut one = Engine::new(drafted_app()).with_limits(limits);
        let mut runs = Engine::new(drafted_app()).with_limits(limits);
        let mut rest = actions.as_slice();
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (run, after) = rest.split_at((*cut).min(rest.len()));
            rest = after;
            let got = runs.apply_run(run).unwrap();
            prop_assert_eq!(got.len(), run.len());
            for (a, mine) in run.iter().zip(got) {
                let theirs = one.apply_with(a, Diffs::Nothing).unwrap();
                prop_assert_eq!(mine.seq, a.seq);
                prop_assert_eq!(&mine.rejection, &theirs.rejection, "seq {}", a.seq);
                prop_assert_eq!(mine.panicked, theirs.panicked, "seq {}", a.seq);
                prop_assert_eq!(mine.snapshot_requested, theirs.snapshot_requested);
            }
            prop_assert_eq!(runs.seq(), one.seq());
            prop_assert_eq!(runs.bytes(), one.bytes());
            for (x, y) in runs.states().iter().zip(one.states()) {
                prop_assert_eq!(x.to_json_string(), y.to_json_string());
            }
        }
    }

    /// A hub applying random batches in place ends with the states of one
    /// action at a time, keeps every rejection for its sender, and hands
    /// over the snapshots inside the batches: every `@@nodb/snapshot` and
    /// the newest checkpoint, each with the states one action at a time
    /// has at its seq (older checkpoints not taken yet gave way to newer
    /// ones, and are counted).
    #[test]
    fn batches_in_place_equal_one_action_at_a_time(
        actions in prop::collection::vec(action(), 1..120),
        cut in 1usize..50,
    ) {
        let actions = history(actions);
        let one_by_one = Hub::with_checkpoints(Engine::new(drafted_app()), 4, Some(16));
        let batched = Hub::with_checkpoints(Engine::new(drafted_app()), 4, Some(16));
        for a in &actions {
            one_by_one.apply(a).unwrap();
        }
        for chunk in actions.chunks(cut) {
            batched.apply_batch(chunk).unwrap();
        }
        let (seq, states) = batched.current();
        let (seq1, states1) = one_by_one.current();
        prop_assert_eq!(seq, seq1);
        for (x, y) in states.iter().zip(&states1) {
            prop_assert_eq!(x.to_json_string(), y.to_json_string());
        }
        let last = actions.len() as u64;
        // Every action's client is `c`.
        let reasons = |hub: &Hub| -> Vec<(u64, String)> {
            hub.rejections("c", 0, last).into_iter().map(|(s, r)| (s, r.reason)).collect()
        };
        let (a, b) = (reasons(&batched), reasons(&one_by_one));
        prop_assert_eq!(a, b);
        let (all, kept) = (one_by_one.take_snapshot_requests(), batched.take_snapshot_requests());
        let asked = |seq: u64| actions[seq as usize - 1].kind == crate::engine::SNAPSHOT;
        let must: Vec<u64> = all
            .iter()
            .map(|v| v.seq)
            .filter(|seq| asked(*seq) || Some(*seq) == all.iter().map(|v| v.seq).filter(|s| !asked(*s)).max())
            .collect();
        prop_assert_eq!(kept.iter().map(|v| v.seq).collect::<Vec<_>>(), must);
        for v in &kept {
            let same = all.iter().find(|w| w.seq == v.seq).expect("asked one at a time too");
            for (x, y) in v.states.iter().zip(&same.states) {
                prop_assert_eq!(x.to_json_string(), y.to_json_string());
            }
        }
        prop_assert_eq!(batched.metrics.checkpoints_skipped.load(Relaxed), (all.len() - kept.len()) as u64);
    }
}

#[test]
fn a_view_over_its_limits_undoes_every_view() {
    let limits = nodb_shared::tree::limits::Limits { max_depth: 64, max_bytes: 1_000 };
    let mut e = Engine::new(drafted_app()).with_limits(limits);
    e.apply(&act(1, "tally/add", json!({"item": "a", "n": 3}))).unwrap();
    let before: Vec<String> = e.states().iter().map(Tree::to_json_string).collect();
    let a = e.apply(&act(2, "tally/big", json!(null))).unwrap();
    assert!(a.rejection.unwrap().0.contains("over 1000 bytes"), "the size limit rejects");
    let after: Vec<String> = e.states().iter().map(Tree::to_json_string).collect();
    assert_eq!(after, before, "the edit made before the big one is undone too");
    assert_eq!(e.bytes()[0], bytes_of(&e.states()[0]));
}

#[test]
fn a_panic_after_an_edit_leaves_every_view_as_it_was() {
    let mut e = Engine::new(drafted_app());
    e.apply(&act(1, "tally/add", json!({"item": "a", "n": 3}))).unwrap();
    let kept = e.states().to_vec();
    let a = e.apply(&act(2, "tally/boom", json!({"item": "a", "n": 1}))).unwrap();
    assert!(a.panicked && a.rejection.is_some());
    assert_eq!(e.states(), &kept[..]);
    assert!(a.patches.iter().all(|p| p.0.is_empty()));
    // The next action applies as usual.
    let a = e.apply(&act(3, "tally/add", json!({"item": "b", "n": 1}))).unwrap();
    assert!(a.rejection.is_none());
    assert_eq!(e.states()[1], Tree::from(json!({"changes": 2, "last": "b"})));
}

#[test]
fn the_hub_sends_the_recorded_patch_as_the_seqs_message() {
    let hub = Hub::new(Engine::new(drafted_app()), 8);
    hub.apply(&act(1, "tally/add", json!({"item": "a", "n": 3}))).unwrap();
    hub.apply(&act(2, "tally/add", json!({"item": "a", "n": 2}))).unwrap();
    let (crate::hub::CatchUp::Patch(msg), 2) = hub.catch_up(0, Some(1)) else { panic!("one patch") };
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&msg).unwrap(),
        json!({"type": "patch", "seq": 2, "ops": [{"op": "replace", "path": "/items/a", "value": 5}]})
    );
    let expected = serde_json::to_vec(&nodb_shared::protocol::ServerMessage::Patch {
        from: None,
        seq: 2,
        ops: serde_json::from_value(json!([{"op": "replace", "path": "/items/a", "value": 5}])).unwrap(),
        sources: None,
    })
    .unwrap();
    assert_eq!(&msg[..], &expected[..], "the same bytes as the protocol type's");
}
