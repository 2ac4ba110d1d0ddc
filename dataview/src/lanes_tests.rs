//! Series of runs through the lanes against one action at a time (the
//! oracle): the engine's, and the hub's [`Hub::apply_batches`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::hub::Hub;
use crate::test_app::{act, action, drafted_app};

fn history(actions: Vec<(String, serde_json::Value)>) -> Vec<CommittedAction> {
    actions.into_iter().enumerate().map(|(i, (kind, payload))| act(i as u64 + 1, &kind, payload)).collect()
}

/// An action every view refuses (its payload is not a change): the views
/// agree on it, so it stays within a series.
fn refused_by_both() -> impl Strategy<Value = (String, serde_json::Value)> {
    Just(("tally/add".to_string(), json!({"item": 5})))
}

/// `actions` cut into runs of the lengths `cuts` gives, in turn.
fn runs(actions: &[CommittedAction], cuts: &[usize]) -> VecDeque<Run> {
    let mut out = VecDeque::new();
    let mut rest = actions;
    for cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (run, after) = rest.split_at((*cut).min(rest.len()));
        out.push_back(Arc::new(run.to_vec()));
        rest = after;
    }
    out
}

proptest! {
    /// [`Engine::apply_runs`] — each view going from run to run on its
    /// own — gives what one action at a time gives: the same rejection
    /// (its reason too) and panic flag for every seq, each run handed back
    /// once, in order, applied or not, and the same states, sizes and seq
    /// at the end. The histories mix actions one view refuses and the
    /// other takes (`take` of too many), actions both refuse, panics
    /// after an edit (`boom`), views over the size limit (`big`), snapshot
    /// requests (which end a series) and actions no view knows.
    #[test]
    fn series_through_the_lanes_equal_one_action_at_a_time(
        actions in prop::collection::vec(prop_oneof![6 => action(), 1 => Just(("tally/big".to_string(), json!({}))), 1 => refused_by_both()], 1..200),
        cuts in prop::collection::vec(1usize..40, 1..8),
        max_bytes in 200u64..2_000,
        gaps in prop::collection::vec(any::<bool>(), 1..12),
    ) {
        let limits = nodb_shared::tree::limits::Limits { max_depth: 64, max_bytes };
        let actions = history(actions);
        let mut one = Engine::new(drafted_app()).with_limits(limits);
        let mut lanes = Engine::new(drafted_app()).with_limits(limits);
        let mut queue = runs(&actions, &cuts);
        let mut got: Vec<(Run, Vec<Applied>)> = Vec::new();
        // `next` has nothing to give at times, as a follower not yet
        // done with the next batch.
        let mut gap = gaps.iter().cycle();
        while let Some(first) = queue.pop_front() {
            let mut next = || if *gap.next().expect("cycles") { None } else { queue.pop_front() };
            let left = lanes.apply_runs(first, &mut next, &mut |run, applied| got.push((run.clone(), applied)));
            // Taken and not applied: applied as without lanes, in order.
            for run in left {
                let applied = lanes.apply_run(&run).unwrap();
                got.push((run, applied));
            }
        }
        let seqs: Vec<u64> = got.iter().flat_map(|(run, _)| run.iter().map(|a| a.seq)).collect();
        prop_assert_eq!(seqs, (1..=actions.len() as u64).collect::<Vec<_>>(), "each run once, in order");
        for (run, applied) in &got {
            prop_assert_eq!(applied.len(), run.len());
            for (a, mine) in run.iter().zip(applied) {
                let theirs = one.apply_with(a, Diffs::Nothing).unwrap();
                prop_assert_eq!(mine.seq, a.seq);
                prop_assert_eq!(&mine.rejection, &theirs.rejection, "seq {}", a.seq);
                prop_assert_eq!(mine.panicked, theirs.panicked, "seq {}", a.seq);
            }
        }
        prop_assert_eq!(lanes.seq(), one.seq());
        prop_assert_eq!(lanes.bytes(), one.bytes());
        for (x, y) in lanes.states().iter().zip(one.states()) {
            prop_assert_eq!(x.to_json_string(), y.to_json_string());
        }
    }

    /// A hub applying random batches with [`Hub::apply_batches`] (series
    /// through the lanes where they follow on) ends with the states of
    /// one action at a time, reports on every batch once, keeps every
    /// rejection for its sender, and hands over the same snapshots as
    /// batches applied one by one: every `@@nodb/snapshot` and the newest
    /// checkpoint (a batch that reaches one is applied outside a series).
    #[test]
    fn batches_in_series_equal_one_action_at_a_time(
        actions in prop::collection::vec(prop_oneof![6 => action(), 1 => refused_by_both()], 1..200),
        cut in 1usize..50,
    ) {
        let actions = history(actions);
        let one_by_one = Hub::with_checkpoints(Engine::new(drafted_app()), 4, Some(16));
        let batched = Hub::with_checkpoints(Engine::new(drafted_app()), 4, Some(16));
        let series = Hub::with_checkpoints(Engine::new(drafted_app()), 4, Some(16));
        for a in &actions {
            one_by_one.apply(a).unwrap();
        }
        for chunk in actions.chunks(cut) {
            batched.apply_batch(chunk).unwrap();
        }
        prop_assert_eq!(in_series(&series, &actions, cut), actions.chunks(cut).count());
        let (seq, states) = series.current();
        let (seq1, states1) = one_by_one.current();
        prop_assert_eq!(seq, seq1);
        for (x, y) in states.iter().zip(&states1) {
            prop_assert_eq!(x.to_json_string(), y.to_json_string());
        }
        let last = actions.len() as u64;
        let reasons = |hub: &Hub| -> Vec<(u64, String)> {
            hub.rejections("c", 0, last).into_iter().map(|(s, r)| (s, r.reason)).collect()
        };
        prop_assert_eq!(reasons(&series), reasons(&one_by_one));
        let seqs = |hub: &Hub| hub.take_snapshot_requests().iter().map(|v| v.seq).collect::<Vec<_>>();
        prop_assert_eq!(seqs(&series), seqs(&batched));
        prop_assert_eq!(counts(&series), counts(&batched));
        prop_assert_eq!(series.metrics.applied.load(Relaxed), last);
        prop_assert_eq!(series.state_at(0, None).map(|s| s.0), batched.state_at(0, None).map(|s| s.0));
    }

    /// While checkpoints in catch-up batches are skipped (the snapshotter
    /// slow, and writing), a series skips and counts them as batches
    /// applied one by one do, and keeps and counts the same.
    #[test]
    fn series_skip_checkpoints_as_batches_do_while_the_snapshotter_rests(
        actions in prop::collection::vec(prop_oneof![6 => action(), 1 => refused_by_both()], 1..200),
        cut in 1usize..50,
    ) {
        let actions = history(actions);
        let batched = Hub::with_checkpoints(Engine::new(drafted_app()), 4, Some(16));
        let series = Hub::with_checkpoints(Engine::new(drafted_app()), 4, Some(16));
        for hub in [&batched, &series] {
            hub.snapshot_written(std::time::Duration::from_secs(1000));
            hub.snapshot_writing();
        }
        for chunk in actions.chunks(cut) {
            batched.apply_batch(chunk).unwrap();
        }
        prop_assert_eq!(in_series(&series, &actions, cut), actions.chunks(cut).count());
        let ((seq, states), (seq1, states1)) = (series.current(), batched.current());
        prop_assert_eq!(seq, seq1);
        for (x, y) in states.iter().zip(&states1) {
            prop_assert_eq!(x.to_json_string(), y.to_json_string());
        }
        prop_assert_eq!(counts(&series), counts(&batched));
        let seqs = |hub: &Hub| hub.take_snapshot_requests().iter().map(|v| v.seq).collect::<Vec<_>>();
        prop_assert_eq!(seqs(&series), seqs(&batched));
    }
}

/// Applies `actions` in batches of `cut` with [`Hub::apply_batches`],
/// each batch there as soon as asked for; how many batches were reported
/// on (each must have applied).
fn in_series(hub: &Hub, actions: &[CommittedAction], cut: usize) -> usize {
    let mut queue: VecDeque<Run> = actions.chunks(cut).map(|c| Arc::new(c.to_vec())).collect();
    let mut reported = 0;
    while let Some(first) = queue.pop_front() {
        hub.apply_batches(first, &mut || queue.pop_front(), &mut |r| {
            r.expect("a batch applies");
            reported += 1;
        });
    }
    reported
}

/// A hub's counts: checkpoints skipped, rejections, panics, actions
/// applied and applied in batches.
fn counts(hub: &Hub) -> [u64; 5] {
    let m = &hub.metrics;
    [&m.checkpoints_skipped, &m.rejected, &m.panics, &m.applied, &m.batched].map(|c| c.load(Relaxed))
}

fn adds(seqs: std::ops::RangeInclusive<u64>) -> Vec<CommittedAction> {
    seqs.map(|s| act(s, "tally/add", json!({"item": "a", "n": 1}))).collect()
}

/// A series whose first batch the lanes do not take (its seqs do not
/// follow on) fails as `apply_batch` would, and leaves the history as it
/// was: the views are still served.
#[test]
fn a_series_whose_first_batch_fails_keeps_the_history() {
    let hub = Hub::new(Engine::new(drafted_app()), 16);
    hub.apply_batch(&adds(1..=8)).unwrap();
    let mut queue: VecDeque<Run> = VecDeque::from([Arc::new(adds(18..=25))]);
    let mut results = Vec::new();
    hub.apply_batches(Arc::new(adds(10..=17)), &mut || queue.pop_front(), &mut |r| results.push(r.is_ok()));
    assert_eq!(results, [false], "the first fails, and nothing is tried after it");
    assert_eq!(hub.current().0, 8);
    assert!(hub.state_at(0, None).is_ok(), "after a failed series: {:?}", hub.state_at(0, None).err());
}

/// A reducer that panics with a payload whose drop panics too, on a
/// lane: the action is rejected as a panic, like any other, and nothing
/// gets out of the series.
#[test]
fn a_panic_payload_that_panics_when_dropped_is_a_rejection() {
    use crate::reducer::{Rejection, View};
    use nodb_shared::draft::Draft;
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the payload's drop panics");
        }
    }
    let count = |d: &mut Draft, _: &CommittedAction| {
        d.update("/n", |n| Tree::from(n.and_then(Tree::as_u64).unwrap_or(0) + 1)).map_err(Rejection::from)
    };
    let app = App {
        name: "bomb".into(),
        views: vec![
            View::drafted("first", Tree::object(), count),
            View::drafted("second", Tree::object(), move |d: &mut Draft, a: &CommittedAction| {
                if a.kind == "t/bomb" {
                    std::panic::panic_any(Bomb);
                }
                count(d, a)
            }),
        ],
    };
    let hub = Hub::new(Engine::new(app), 16);
    let mut actions: Vec<CommittedAction> = (1..=16).map(|seq| act(seq, "t/x", json!({}))).collect();
    actions[11] = act(12, "t/bomb", json!({}));
    let mut queue: VecDeque<Run> = actions.chunks(8).map(|c| Arc::new(c.to_vec())).collect();
    let first = queue.pop_front().unwrap();
    let mut reported = Vec::new();
    hub.apply_batches(first, &mut || queue.pop_front(), &mut |r| reported.push(r.is_ok()));
    assert_eq!(reported, [true, true]);
    let (seq, states) = hub.current();
    assert_eq!((hub.current_seq(), seq), (16, 16));
    for state in &states {
        assert_eq!(state.get("/n"), Some(&Tree::from(15u64)), "every action but the bomb: {states:?}");
    }
    assert_eq!(hub.metrics.panics.load(Relaxed), 1);
}

/// The second view of a series runs on a lane of its own, and a series
/// reports every batch once, in order, before it returns.
#[test]
fn a_series_runs_the_second_view_on_a_lane() {
    use crate::reducer::{Rejection, View};
    use nodb_shared::draft::Draft;
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());
    let count = |d: &mut Draft, _: &CommittedAction| {
        d.update("/n", |n| Tree::from(n.and_then(Tree::as_u64).unwrap_or(0) + 1)).map_err(Rejection::from)
    };
    let app = App {
        name: "lanes".into(),
        views: vec![
            View::drafted("first", Tree::object(), count),
            View::drafted("second", Tree::object(), move |d: &mut Draft, a: &CommittedAction| {
                SEEN.lock().unwrap().push(std::thread::current().name().map(String::from));
                count(d, a)
            }),
        ],
    };
    let hub = Hub::new(Engine::new(app), 16);
    let actions: Vec<CommittedAction> = (1..=64).map(|seq| act(seq, "t/x", json!({}))).collect();
    let mut queue: VecDeque<Run> = actions.chunks(16).map(|c| Arc::new(c.to_vec())).collect();
    let first = queue.pop_front().unwrap();
    let mut reported = Vec::new();
    hub.apply_batches(first, &mut || queue.pop_front(), &mut |r| reported.push(r.is_ok()));
    assert_eq!(reported, [true; 4]);
    assert_eq!(hub.current().1[1].get("/n"), Some(&Tree::from(64u64)));
    let seen = SEEN.lock().unwrap();
    assert_eq!(seen.len(), 64);
    assert!(seen.iter().all(|name| name.as_deref() == Some("nodb-lane-1")), "{seen:?}");
}
