//! The engine's tree limits (issue 15): no action can make a view too deep
//! or too large, and the view moves on to the next action.

use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;
use nodb_shared::tree::limits::{Limits, MAX_DEPTH, bytes_of, measure};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::reducer::View;
use crate::test_app::{act, action};

fn json_engine() -> Engine {
    Engine::new(crate::json_doc::app())
}

fn patch(seq: u64, ops: Value) -> CommittedAction {
    act(seq, "json/patch", ops)
}

/// Applies a poison action at seq 2 over `{"n": 1}`, expects it rejected
/// for `words` with nothing changed, then a normal patch at seq 3.
#[track_caller]
fn rejected_then_moves_on(mut e: Engine, poison: CommittedAction, words: &str) {
    e.apply(&patch(1, json!([{"op": "add", "path": "/n", "value": 1}]))).unwrap();
    let before = e.states().to_vec();
    let a = e.apply(&poison).unwrap();
    let why = a.rejection.unwrap_or_else(|| panic!("{} should be rejected", poison.kind)).0;
    assert!(why.contains(words), "{why}");
    assert!(a.patches.iter().all(|p| p.0.is_empty()));
    assert_eq!(e.states(), &before[..]);
    e.apply(&patch(3, json!([{"op": "replace", "path": "/n", "value": 2}]))).unwrap();
    assert_eq!(e.states()[0], Tree::from(json!({"n": 2})));
    assert_eq!(e.bytes()[0], bytes_of(&e.states()[0]));
    // Serialising the state is fine.
    assert_eq!(e.states()[0].to_json_string(), r#"{"n":2}"#);
}

#[test]
fn a_copy_bomb_is_rejected_and_the_view_moves_on() {
    let bomb: Vec<Value> = (0..20_000).map(|_| json!({"op": "copy", "from": "", "path": "/a"})).collect();
    rejected_then_moves_on(json_engine(), patch(2, json!(bomb)), "nest more than 64");
}

#[test]
fn a_doubling_patch_is_rejected_and_the_view_moves_on() {
    let doubling: Vec<Value> = (0..64).map(|i| json!({"op": "copy", "from": "", "path": format!("/{i}")})).collect();
    let started = std::time::Instant::now();
    rejected_then_moves_on(json_engine(), patch(2, json!(doubling)), "over 268435456 bytes");
    eprintln!("a doubling patch rejected in {:?}", started.elapsed());
}

#[test]
fn the_document_as_a_whole_is_held_to_the_size_limit() {
    // Each patch adds 1 KB more than the limit allows in all.
    let limits = Limits { max_depth: MAX_DEPTH, max_bytes: 10_000 };
    let mut e = json_engine().with_limits(limits);
    let mut seq = 0;
    let refused = loop {
        seq += 1;
        let a = e
            .apply(&patch(seq, json!([{"op": "add", "path": format!("/k{seq}"), "value": "x".repeat(1000)}])))
            .unwrap();
        if let Some(r) = a.rejection {
            break r;
        }
        assert!(e.bytes()[0] <= 10_000);
    };
    assert_eq!(seq, 10, "{refused}");
    assert!(refused.0.contains("over 10000 bytes"), "{refused}");
    // Removing makes room again.
    e.apply(&patch(seq + 1, json!([{"op": "remove", "path": "/k1"}]))).unwrap();
    let a = e.apply(&patch(seq + 2, json!([{"op": "add", "path": "/again", "value": "y".repeat(900)}]))).unwrap();
    assert!(a.rejection.is_none(), "{:?}", a.rejection);
    assert_eq!(e.bytes()[0], bytes_of(&e.states()[0]));
}

#[test]
fn set_state_is_held_to_the_limits() {
    let deep = |n: usize| (0..n).fold(json!(1), |inner, _| json!([inner]));
    // The view's root object counts as one level: 63 more fit.
    let fits = act(2, SET_STATE, json!({"view": "doc", "state": {"a": deep(63)}}));
    let mut e = json_engine();
    e.apply(&patch(1, json!([]))).unwrap();
    assert!(e.apply(&fits).unwrap().rejection.is_none());
    assert_eq!(measure(&e.states()[0], &Limits::default()).unwrap().depth, MAX_DEPTH);
    rejected_then_moves_on(
        json_engine(),
        act(2, SET_STATE, json!({"view": "doc", "state": {"a": deep(64)}})),
        "nest more than 64",
    );
}

#[test]
fn a_reducer_that_builds_a_tree_a_million_deep_is_rejected_without_a_crash() {
    let app = App {
        name: "deep".into(),
        views: vec![View::new("doc", Tree::object(), |s: &Tree, a: &CommittedAction| {
            let depth = a.payload.as_u64().unwrap_or(0) as usize;
            let deep = (0..depth).fold(Tree::from(1), |inner, _| Tree::from_items([inner]));
            s.set("/n", deep).map_err(Rejection::from)
        })],
    };
    let mut e = Engine::new(app);
    e.apply(&act(1, "deepen", json!(3))).unwrap();
    let before = e.states().to_vec();
    // Dropped on a thread with a small stack, as a tokio worker's is.
    let e = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let a = e.apply(&act(2, "deepen", json!(1_000_000))).unwrap();
            assert!(a.rejection.unwrap().0.contains("view \"doc\": the state would nest more than 64"));
            e
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(e.states(), &before[..]);
    // Exactly at the limit: the root object and 63 arrays.
    let mut e = e;
    assert!(e.apply(&act(3, "deepen", json!(63))).unwrap().rejection.is_none());
    assert!(e.apply(&act(4, "deepen", json!(64))).unwrap().rejection.is_some());
}

#[test]
fn an_unreadable_action_is_rejected_without_running_a_reducer() {
    // A reducer for which `null` means something: it must never see one in
    // place of a payload it could not be given.
    let app = App {
        name: "reset".into(),
        views: vec![View::new("count", Tree::from(5), |s: &Tree, a: &CommittedAction| {
            Ok(if a.payload.is_null() { Tree::from(0) } else { s.clone() })
        })],
    };
    let mut e = Engine::new(app);
    let unreadable = act(1, UNREADABLE, json!({"type": "counter/reset", "error": "recursion limit exceeded"}));
    let a = e.apply(&unreadable).unwrap();
    let why = a.rejection.unwrap().0;
    assert!(why.contains("cannot read this counter/reset action (recursion limit exceeded)"), "{why}");
    assert_eq!(e.states()[0], Tree::from(5));
    assert_eq!(e.seq(), 1);
    // Nor in a batch.
    assert!(crate::batch::replay_views(e.app(), e.states(), &[act(2, UNREADABLE, json!({}))]).is_none());
}

proptest! {
    /// The size the engine keeps up to date from each change is the size
    /// of the state, whatever the history.
    #[test]
    fn the_size_kept_is_the_size_measured(history in proptest::collection::vec(action(), 1..60)) {
        let mut e = Engine::new(crate::test_app::app());
        for (i, (kind, payload)) in history.into_iter().enumerate() {
            e.apply(&act(i as u64 + 1, &kind, payload)).unwrap();
            let measured: Vec<u64> = e.states().iter().map(bytes_of).collect();
            prop_assert_eq!(e.bytes(), &measured[..]);
        }
    }

    /// Depth at every level around the limit, through `json/patch`: a value
    /// `depth` deep added `above` levels down is taken exactly when the
    /// document stays within the limit, and the document serialises.
    #[test]
    fn patch_depth_around_the_limit(above in 0usize..3, depth in 55usize..70) {
        let mut e = json_engine();
        let path: String = "/k".repeat(above);
        let mut ops: Vec<Value> = (0..above).map(|i| json!({"op": "add", "path": "/k".repeat(i + 1), "value": {}})).collect();
        ops.push(json!({"op": "add", "path": format!("{path}/v"), "value": (0..depth).fold(json!(1), |inner, _| json!([inner]))}));
        let a = e.apply(&patch(1, json!(ops))).unwrap();
        // The root object, `above` objects, then the value.
        prop_assert_eq!(a.rejection.is_none(), 1 + above + depth <= MAX_DEPTH, "{:?}", a.rejection);
        let text = e.states()[0].to_json_string();
        prop_assert!(serde_json::from_str::<Tree>(&text).is_ok());
    }
}
