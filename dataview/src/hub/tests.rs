use super::*;
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;

fn act(seq: u64, kind: &str, payload: Value) -> CommittedAction {
    CommittedAction {
        seq,
        ts: seq,
        id: format!("c{}:{seq}", seq % 2),
        kind: kind.into(),
        payload,
        meta: None,
        client: None,
    }
}

fn parse(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn catch_up_sends_one_patch_a_combined_patch_or_a_snapshot() {
    let hub = Hub::new(Engine::new(crate::json_doc::app()), 3);
    for seq in 1..=5 {
        let p = json!([{"op": "add", "path": format!("/k{seq}"), "value": seq}]);
        hub.apply(&act(seq, "json/patch", p)).unwrap();
    }
    let (c, seq) = hub.catch_up(0, Some(4));
    assert_eq!(seq, 5);
    let CatchUp::Patch(b) = c else { panic!("{c:?}") };
    assert_eq!(parse(&b), json!({"type": "patch", "seq": 5, "ops": [{"op": "add", "path": "/k5", "value": 5}]}));
    let CatchUp::Combined(b) = hub.catch_up(0, Some(3)).0 else { panic!() };
    assert_eq!(parse(&b)["from"], 4);
    assert_eq!(parse(&b)["ops"].as_array().unwrap().len(), 2);
    // Seq 2 is older than the 3 kept: a snapshot.
    let CatchUp::Snapshot(b) = hub.catch_up(0, Some(1)).0 else { panic!() };
    assert_eq!(parse(&b)["state"]["k1"], 1);
    assert!(matches!(hub.catch_up(0, Some(5)).0, CatchUp::Nothing));
    assert_eq!(hub.view_state(0, Some(4)).unwrap().state.get("/k5"), None);
    assert!(matches!(hub.view_state(0, Some(9)), Err(AtError::Ahead { .. })));
    assert!(matches!(hub.view_state(0, Some(1)), Err(AtError::Gone { .. })));
    // The body, built with one serialisation, is what ViewState gives.
    let (seq, state) = hub.state_at(0, Some(4)).unwrap();
    let body: ViewState = serde_json::from_str(&view_body(seq, &state)).unwrap();
    assert_eq!(body, hub.view_state(0, Some(4)).unwrap());
}

#[test]
fn an_exact_client_gets_one_message_per_seq_from_the_history() {
    let hub = Hub::new(Engine::new(crate::json_doc::app()), 4);
    for seq in 1..=6 {
        let p = if seq == 5 {
            json!([{"op": "test", "path": "/nope", "value": 1}])
        } else {
            json!([{"op": "add", "path": format!("/k{seq}"), "value": seq}])
        };
        hub.apply(&act(seq, "json/patch", p)).unwrap();
    }
    // The history holds seqs 3..=6: from 3 on, one message per seq.
    let Exact::Patches(steps) = hub.exact(0, 3, 10) else { panic!() };
    assert_eq!(steps.iter().map(|s| s.seq).collect::<Vec<_>>(), [4, 5, 6]);
    for step in &steps {
        let m = parse(&step.message);
        assert_eq!((m["seq"].as_u64(), m.get("from")), (Some(step.seq), None));
    }
    assert_eq!(parse(&steps[0].message)["ops"], json!([{"op": "add", "path": "/k4", "value": 4}]));
    assert_eq!(parse(&steps[1].message)["ops"], json!([]));
    assert_eq!(steps[1].rejected.first().map(|r| r.client.as_str()), Some("c1"));
    // At most `max` at a time; nothing past the head; older than the
    // history: the caller replays.
    let Exact::Patches(steps) = hub.exact(0, 3, 1) else { panic!() };
    assert_eq!(steps.len(), 1);
    assert!(matches!(hub.exact(0, 6, 10), Exact::Nothing));
    assert!(matches!(hub.exact(0, 2, 10), Exact::NotInHistory));
}

#[test]
fn checkpoints_are_handed_over_even_inside_a_batch() {
    let hub = Hub::with_checkpoints(Engine::new(crate::json_doc::app()), 8, Some(4));
    let actions: Vec<_> =
        (1..=10).map(|seq| act(seq, "json/patch", json!([{"op": "add", "path": "/n", "value": seq}]))).collect();
    hub.apply_batch(&actions[..9]).unwrap();
    hub.apply(&actions[9]).unwrap();
    // Not taken by a snapshotter in time, checkpoint 4 gave way to 8.
    let taken = hub.take_snapshot_requests();
    assert_eq!(taken.iter().map(|v| v.seq).collect::<Vec<_>>(), [8]);
    assert_eq!(taken[0].states[0], Tree::from(json!({"n": 8})));
    assert_eq!(hub.pending_snapshots(), 0);
    assert_eq!(hub.metrics.checkpoints_skipped.load(Relaxed), 1);
}

/// A checkpoint reached in a batch and waiting for the snapshotter gives
/// way to a newer one; an `@@nodb/snapshot` never does, nor does a
/// checkpoint reached one action at a time.
#[test]
fn a_waiting_checkpoint_of_a_batch_gives_way_to_a_newer_one() {
    let hub = Hub::with_checkpoints(Engine::new(crate::json_doc::app()), 8, Some(4));
    let patch = |seq| act(seq, "json/patch", json!([{"op": "add", "path": "/n", "value": seq}]));
    let mut actions: Vec<_> = (1..=21).map(patch).collect();
    actions[5] = act(6, crate::engine::SNAPSHOT, json!({}));
    hub.apply_batch(&actions[..7]).unwrap();
    hub.apply_batch(&actions[7..13]).unwrap();
    // 4 gave way to 8, and 8 to 12; the snapshot at 6 stays.
    assert_eq!(hub.pending_snapshots(), 2);
    assert_eq!(hub.metrics.checkpoints_skipped.load(Relaxed), 2);
    // One at a time, 16 and 20 stay, and 12 (of a batch) gives way to
    // neither.
    for a in &actions[13..] {
        hub.apply(a).unwrap();
    }
    let taken = hub.take_snapshot_requests();
    assert_eq!(taken.iter().map(|v| v.seq).collect::<Vec<_>>(), [6, 12, 16, 20]);
    assert_eq!(taken[0].states[0], Tree::from(json!({"n": 5})));
    assert_eq!(taken[1].states[0], Tree::from(json!({"n": 12})));
    assert_eq!(hub.metrics.checkpoints_skipped.load(Relaxed), 2);
}

/// Once a snapshot write was slow, the checkpoints a batch reaches are
/// skipped while the snapshotter writes the next and for `CHECKPOINT_REST`
/// times as long as the last write after (so they share no state with
/// the batches after them); after a quick write, none are.
/// `@@nodb/snapshot`s and checkpoints reached one action at a time never
/// are.
#[test]
fn checkpoints_of_batches_are_skipped_while_the_snapshotter_writes_and_rests() {
    let hub = Hub::with_checkpoints(Engine::new(crate::json_doc::app()), 8, Some(4));
    let patch = |seq| act(seq, "json/patch", json!([{"op": "add", "path": "/n", "value": seq}]));
    let mut actions: Vec<_> = (1..=16).map(patch).collect();
    actions[5] = act(6, crate::engine::SNAPSHOT, json!({}));
    // A write of an hour: a rest of hours.
    hub.snapshot_written(std::time::Duration::from_secs(3600));
    hub.apply_batch(&actions[..7]).unwrap();
    assert_eq!(hub.metrics.checkpoints_skipped.load(Relaxed), 1, "4, while it rests");
    // A slow write rested out, then the next being written.
    hub.snapshot_written(SLOW_WRITE);
    std::thread::sleep(SLOW_WRITE * (CHECKPOINT_REST + 1));
    hub.snapshot_writing();
    hub.apply_batch(&actions[7..11]).unwrap();
    hub.apply(&actions[11]).unwrap();
    assert_eq!(hub.metrics.checkpoints_skipped.load(Relaxed), 2, "8 in a batch; 12 one at a time stays");
    // A quick write: no rest, and no pause while writing the next.
    hub.snapshot_written(SLOW_WRITE / 2);
    hub.snapshot_writing();
    hub.apply_batch(&actions[12..]).unwrap();
    let taken = hub.take_snapshot_requests();
    assert_eq!(taken.iter().map(|v| v.seq).collect::<Vec<_>>(), [6, 12, 16]);
    assert_eq!(taken[1].states[0], Tree::from(json!({"n": 12})));
    assert_eq!(hub.metrics.checkpoints_skipped.load(Relaxed), 2);
}

#[test]
fn rejections_are_kept_for_their_client() {
    let hub = Hub::new(Engine::new(crate::json_doc::app()), 10);
    hub.apply(&act(1, "json/patch", json!([{"op": "test", "path": "/x", "value": 1}]))).unwrap();
    hub.apply(&act(2, "json/patch", json!([]))).unwrap();
    assert_eq!(hub.rejections("c1", 0, 2).len(), 1);
    assert!(hub.rejections("c0", 0, 2).is_empty());
    assert_eq!(hub.metrics.rejected.load(Relaxed), 1);
}

/// A rebuild's base from the in-memory history: the newest kept seq at or
/// before the one asked for that fits, with its states.
#[test]
fn the_newest_fitting_base_comes_from_the_history() {
    let hub = Hub::new(Engine::new(crate::json_doc::app()), 3);
    for seq in 1..=5 {
        hub.apply(&act(seq, "json/patch", json!([{"op": "add", "path": format!("/k{seq}"), "value": seq}]))).unwrap();
    }
    let (seq, states) = hub.newest_base(10, |_| true).unwrap();
    assert_eq!((seq, states[0].get("/k5").is_some()), (5, true));
    let (seq, states) = hub.newest_base(5, |s| s < 5).unwrap();
    assert_eq!((seq, states[0].get("/k4").is_some(), states[0].get("/k5").is_some()), (4, true, false));
    assert_eq!(hub.newest_base(5, |s| s < 3), None, "seq 2 is no longer kept");
    assert_eq!(hub.newest_base(2, |_| true), None);
}

/// A seq's patch message written from recorded edits is byte for byte the
/// `ServerMessage::Patch` of their patch, escapes and all.
#[test]
fn a_recorded_patch_message_is_the_bytes_of_the_patch_message() {
    use nodb_shared::draft::{Draft, to_patch};
    use nodb_shared::path;
    let before = Tree::from(json!({"a/b": {"x~y": [1, 2]}, "q\"": 1, "list": [0], "o": {"k": 1}}));
    let mut d = Draft::of(before.clone());
    d.set(path!["a/b", "x~y"], Tree::from(json!({"deep": "line\nbreak \"quoted\" \u{7f}"}))).unwrap();
    for key in ["q\"", "b\\s", "n\n", "c\u{1}", "é", "t~", "s/"] {
        d.set(path![key], 2u64).unwrap();
    }
    d.push(path!["list"], Tree::from("tab\t")).unwrap();
    d.remove(path!["list", 0]).unwrap();
    d.set(path!["o"], Tree::from(json!({"k": 2, "n": null}))).unwrap();
    d.set(path!["new", "nested"], 3u64).unwrap();
    let (state, ops) = (d.state().clone(), d.ops().to_vec());
    for seq in [0, 7, u64::MAX] {
        let written = seq_patch_message(seq, Some(&Edits::Recorded(ops.clone())), &before, &state);
        let expected = patch_message(seq, to_patch(&ops));
        assert_eq!(std::str::from_utf8(&written).unwrap(), std::str::from_utf8(&expected).unwrap());
    }
}
