//! Replaying a batch of history with each view of the app on its own
//! thread, for start-up: the views of an app are independent except that
//! they change together (an action one view rejects changes none). So each
//! view's reducer runs over the whole batch on its own; if no view rejected
//! or panicked on any action, those are the states the sequential replay
//! would have reached. Otherwise — or for a batch with a control action,
//! which the engine handles itself — the caller applies the batch one
//! action at a time.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use nodb_shared::Tree;
use nodb_shared::draft::{Draft, UndoLog};
use nodb_shared::protocol::CommittedAction;
use nodb_shared::read_ahead::Reads;
use nodb_shared::tree::limits::{LimitError, Limits, bytes_of, dispose};

use crate::app::App;
use crate::engine::{Applied, check_view, is_control, let_go, panic_message};
use crate::reducer::{ReadHint, Rejection};

/// How many actions a batch holds.
pub const BATCH: usize = 1024;

/// The states of `app`'s views after `actions`, starting from `states`, if
/// every view took every action within the default tree limits; `None` if
/// any view rejected or panicked on one, or if one is a control action
/// (then nothing has changed). `actions` must be the consecutive seqs that
/// follow `states`.
pub fn replay_views(app: &App, states: &[Tree], actions: &[CommittedAction]) -> Option<Vec<Tree>> {
    let bytes: Vec<u64> = states.iter().map(bytes_of).collect();
    replay_views_within(app, states, &bytes, &Limits::default(), actions).map(|(states, _)| states)
}

/// [`replay_views`] for states of known sizes (`bytes`, as
/// [`crate::engine::Engine::bytes`] gives them) within `limits`: the new
/// states and their sizes. A state that would break the limits is a
/// rejection, as in the engine.
pub fn replay_views_within(
    app: &App,
    states: &[Tree],
    bytes: &[u64],
    limits: &Limits,
    actions: &[CommittedAction],
) -> Option<(Vec<Tree>, Vec<u64>)> {
    if actions.iter().any(|a| is_control(&a.kind)) || bytes.len() != states.len() {
        return None;
    }
    let run = |i: usize| -> Option<(Tree, u64)> {
        let reducer = &app.views[i].reducer;
        let (mut state, mut size) = (states[i].clone(), bytes[i]);
        if let Some(drafted) = &app.views[i].draft {
            // In place: after the first edit of each path, nothing else
            // holds what it changes.
            for action in actions {
                let mut draft = Draft::new(state, size, *limits);
                catch_unwind(AssertUnwindSafe(|| drafted(&mut draft, action))).map_err(let_go).ok()?.ok()?;
                (state, size, _) = draft.finish().ok()?;
            }
            return Some((state, size));
        }
        for action in actions {
            let next = catch_unwind(AssertUnwindSafe(|| reducer(&state, action))).map_err(let_go).ok()?.ok()?;
            match check_view(&state, &next, size, limits) {
                Ok(b) => size = b,
                Err(e) => {
                    if matches!(e, LimitError::TooDeep { .. }) {
                        dispose(next);
                    }
                    return None;
                }
            }
            state = next;
        }
        Some((state, size))
    };
    let all: Option<Vec<(Tree, u64)>> =
        each_view((0..app.views.len()).collect(), |i, _| run(i)).into_iter().map(Option::flatten).collect();
    all.map(|all| all.into_iter().unzip())
}

/// Runs `run(i, input)` for each view's input: the first on this thread,
/// the others beside it on the view threads, and returns the results in
/// order (`None` for a run beside this thread that panicked).
///
/// The view threads are kept from batch to batch (a pool with a thread
/// per core but one: more, and those idle spin beside the views). A
/// thread started for each batch began 0.8 ms after it was asked for, on
/// average, in the recovery bench (where a batch of 1,024 took about
/// 5 ms); with a stack of 256 KiB instead of 2 MiB, half that.
fn each_view<I: Send, T: Send>(inputs: Vec<I>, run: impl Fn(usize, I) -> T + Sync) -> Vec<Option<T>> {
    let mut inputs = inputs.into_iter().enumerate();
    let Some((_, first)) = inputs.next() else { return Vec::new() };
    let run = &run;
    let mut others: Vec<Option<T>> = Vec::with_capacity(inputs.len());
    others.resize_with(inputs.len(), || None);
    let first = match view_threads() {
        Some(pool) => pool.in_place_scope(|scope| {
            for ((i, input), slot) in inputs.zip(others.iter_mut()) {
                scope.spawn(move |_| *slot = catch_unwind(AssertUnwindSafe(|| run(i, input))).map_err(let_go).ok());
            }
            run(0, first)
        }),
        None => std::thread::scope(|scope| {
            for ((i, input), slot) in inputs.zip(others.iter_mut()) {
                scope.spawn(move || *slot = catch_unwind(AssertUnwindSafe(|| run(i, input))).map_err(let_go).ok());
            }
            run(0, first)
        }),
    };
    std::iter::once(Some(first)).chain(others).collect()
}

/// The view threads: started on first use, one per core but one (`None`,
/// and threads of their own each time, if they could not be started).
fn view_threads() -> Option<&'static rayon_core::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon_core::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        // The thread that applies the batch runs the first view.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let built = rayon_core::ThreadPoolBuilder::new()
            .num_threads(cores.saturating_sub(1).max(1))
            .thread_name(|i| format!("nodb-view-{i}"))
            .build();
        built.map_err(|e| tracing::warn!(error = %e, "no view threads; a batch starts threads of its own")).ok()
    })
    .as_ref()
}

/// How one view took one action of a run (see [`run_view`]).
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// Taken.
    Took,
    /// Refused by the reducer (or a panic in it), then undone.
    Refused { rejection: Rejection, panicked: bool },
    /// Taken, but the state grew past the size limit, then undone.
    TooLarge,
}

/// One view's run: its state and size after it, each action's decision,
/// and what undoes each action (a draft per action in `undos`).
pub(crate) struct ViewRun {
    pub(crate) state: Tree,
    pub(crate) bytes: u64,
    pub(crate) decisions: Vec<Decision>,
    pub(crate) undos: UndoLog,
}

/// The undo records of the last run of [`apply_views_in_place`], kept
/// until the next (one run's worth): freeing them costs about a tenth of
/// a run, and the view that finishes the next run first frees them while
/// the slower ones still work, instead of the thread that applies after
/// them all. A clone holds none.
#[derive(Default)]
pub(crate) struct Leftovers(Option<Vec<ViewRun>>);

impl Clone for Leftovers {
    fn clone(&self) -> Leftovers {
        Leftovers(None)
    }
}

impl std::fmt::Debug for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Leftovers")
    }
}

/// Runs view `i`'s drafted reducer over `actions`, editing `state` in
/// place, each action in a draft of its own that is undone if the
/// reducer refuses it, panics, or leaves the state over the size limit.
/// What undoes each action goes into `undos`, cleared first (a log from
/// an earlier run keeps its room, so the run allocates nothing for it).
pub(crate) fn run_view(
    app: &App,
    i: usize,
    mut state: Tree,
    mut bytes: u64,
    limits: &Limits,
    actions: &[CommittedAction],
    mut undos: UndoLog,
) -> ViewRun {
    undos.clear();
    let reducer = app.views[i].draft.as_ref().expect("every view is drafted");
    let mut decisions = Vec::with_capacity(actions.len());
    let mut reads = Reads::new();
    let mut hint = app.views[i].read_ahead.as_ref();
    for (k, action) in actions.iter().enumerate() {
        if let Some(h) = hint
            && k % READ_AHEAD == 0
            && read_ahead(h, &state, &actions[k..actions.len().min(k + READ_AHEAD)], &mut reads).is_none()
        {
            hint = None;
        }
        let mut draft = undos.draft(state, bytes, *limits);
        let result = catch_unwind(AssertUnwindSafe(|| reducer(&mut draft, action)));
        let decision = match result {
            Ok(Ok(())) if draft.bytes() <= limits.max_bytes => {
                (state, bytes) = undos.keep(draft);
                decisions.push(Decision::Took);
                continue;
            }
            Ok(Ok(())) => Decision::TooLarge,
            Ok(Err(rejection)) => Decision::Refused { rejection, panicked: false },
            Err(panic) => Decision::Refused {
                rejection: Rejection::new(format!("the reducer failed on this action: {}", panic_message(panic))),
                panicked: true,
            },
        };
        (state, bytes) = undos.discard(draft);
        decisions.push(decision);
    }
    ViewRun { state, bytes, decisions, undos }
}

/// How many actions' paths [`run_view`] reads at once, ahead of running
/// their reducer (for a view with a hint, [`View::reading_ahead`]).
///
/// [`View::reading_ahead`]: crate::reducer::View::reading_ahead
const READ_AHEAD: usize = 8;

/// Reads the paths that `hint` names for `actions` in `state`, all at
/// once, and returns how many are there; `None` if the hint panicked.
fn read_ahead(hint: &ReadHint, state: &Tree, actions: &[CommittedAction], reads: &mut Reads) -> Option<usize> {
    reads.clear();
    match catch_unwind(AssertUnwindSafe(|| actions.iter().for_each(|a| hint(a, reads)))) {
        Ok(()) => Some(reads.read(state)),
        Err(panic) => {
            static TOLD: AtomicBool = AtomicBool::new(false);
            let text = panic_message(panic);
            if !TOLD.swap(true, Relaxed) {
                tracing::warn!(
                    panic = %text,
                    "a view's read-ahead hint panicked: it is passed over for the rest of the batch (told once)"
                );
            }
            None
        }
    }
}

/// Compares the views' `decisions` on `actions` (one list per view, in
/// the app's view order): up to the first action that some views took
/// and others refused, every view made the same decisions as the
/// one-at-a-time engine would have, and those actions stand. Pushes an
/// [`Applied`] for each action that stands (with the rejection the engine
/// would give: the first refusing reducer's in view order, else the first
/// view over its size limit) and returns how many stood.
pub(crate) fn settle(
    app: &App,
    limits: &Limits,
    actions: &[CommittedAction],
    decisions: &[&[Decision]],
    applied: &mut Vec<Applied>,
) -> usize {
    let n = decisions.len();
    let took = |d: &[Decision], k: usize| matches!(d[k], Decision::Took);
    let agreed = (0..actions.len())
        .find(|&k| {
            let count = decisions.iter().filter(|d| took(d, k)).count();
            count != 0 && count != n
        })
        .unwrap_or(actions.len());
    for (k, action) in actions[..agreed].iter().enumerate() {
        let refused = decisions.iter().find_map(|d| match &d[k] {
            Decision::Refused { rejection, panicked } => Some((rejection.clone(), *panicked)),
            _ => None,
        });
        let rejection = if took(decisions[0], k) {
            None
        } else {
            Some(refused.unwrap_or_else(|| {
                let name =
                    &app.views[decisions.iter().position(|d| matches!(d[k], Decision::TooLarge)).unwrap_or(0)].name;
                (Rejection::new(format!("view {name:?}: {}", LimitError::TooLarge { limit: limits.max_bytes })), false)
            }))
        };
        applied.push(Applied {
            seq: action.seq,
            patches: Vec::new(),
            edits: Vec::new(),
            panicked: rejection.as_ref().is_some_and(|(_, p)| *p),
            rejection: rejection.map(|(r, _)| r),
            snapshot_requested: false,
        });
    }
    agreed
}

/// Applies `actions` — ordinary actions (no control action, none
/// redacted), the consecutive seqs after `states` — to an app whose views
/// are all drafted, each view over the whole run on a thread of its own
/// (see [`each_view`]), in place. The views of an app change together: an
/// action that one view refuses changes none. So the runs are compared
/// afterwards ([`settle`]), and from the first action that some views
/// took and others refused, every view is undone. Pushes an [`Applied`]
/// for each action that stands and returns how many stood; `states` and
/// `bytes` are at the last of them.
pub(crate) fn apply_views_in_place(
    app: &App,
    states: &mut [Tree],
    bytes: &mut [u64],
    limits: &Limits,
    actions: &[CommittedAction],
    applied: &mut Vec<Applied>,
    leftovers: &mut Leftovers,
) -> usize {
    let n = states.len();
    let taken: Vec<Tree> = states.iter_mut().map(std::mem::take).collect();
    let mut runs: Vec<ViewRun> = if n == 1 {
        taken.into_iter().map(|state| run_view(app, 0, state, bytes[0], limits, actions, UndoLog::default())).collect()
    } else {
        let bytes: &[u64] = bytes;
        let garbage = std::sync::Mutex::new(leftovers.0.take());
        let runs = each_view(taken, |i, state| {
            let run = run_view(app, i, state, bytes[i], limits, actions, UndoLog::default());
            drop(garbage.lock().unwrap_or_else(|e| e.into_inner()).take());
            run
        });
        runs.into_iter().map(|r| r.expect("a view's run catches its reducer's panics")).collect()
    };
    let decisions: Vec<&[Decision]> = runs.iter().map(|r| r.decisions.as_slice()).collect();
    let agreed = settle(app, limits, actions, &decisions, applied);
    for (i, run) in runs.iter_mut().enumerate() {
        // Back to before `actions[agreed]`.
        run.undos.undo_from(&mut run.state, &mut run.bytes, agreed);
        states[i] = std::mem::take(&mut run.state);
        bytes[i] = run.bytes;
    }
    leftovers.0 = Some(runs);
    agreed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Diffs, Engine};
    use crate::test_app::{act, action};
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::Arc;

    proptest! {
        /// Batches replayed view by view (falling back to one action at a
        /// time when the fast path does not hold) give byte-identical
        /// states to the plain sequential replay.
        #[test]
        fn batches_replay_like_one_action_at_a_time(
            history in prop::collection::vec(action(), 1..120),
            batch in 1usize..40,
        ) {
            let app = crate::test_app::app();
            let actions: Vec<CommittedAction> = history
                .into_iter()
                .enumerate()
                .map(|(i, (kind, payload))| act(i as u64 + 1, &kind, payload))
                .collect();
            let mut sequential = Engine::new(app.clone());
            for a in &actions {
                sequential.apply_with(a, Diffs::Skip).unwrap();
            }
            let mut states = app.initial_states();
            let (mut fast, mut slow) = (0, 0);
            for chunk in actions.chunks(batch) {
                match replay_views(&app, &states, chunk) {
                    Some(next) => { states = next; fast += 1; }
                    None => {
                        let mut e = Engine::restore(app.clone(), chunk[0].seq - 1, states);
                        for a in chunk {
                            e.apply_with(a, Diffs::Skip).unwrap();
                        }
                        states = e.states().to_vec();
                        slow += 1;
                    }
                }
            }
            prop_assert!(fast + slow > 0);
            for (a, b) in states.iter().zip(sequential.states()) {
                prop_assert_eq!(a.to_json_string(), b.to_json_string());
            }
        }
    }

    #[test]
    fn the_views_beyond_the_first_run_on_view_threads_kept_from_batch_to_batch() {
        use crate::reducer::View;
        use std::collections::HashSet;
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<(std::thread::ThreadId, Option<String>)>> = Mutex::new(Vec::new());
        let count = |d: &mut Draft, _: &CommittedAction| {
            d.update("/n", |n| Tree::from(n.and_then(Tree::as_u64).unwrap_or(0) + 1)).map_err(Rejection::from)
        };
        let app = App {
            name: "threads".into(),
            views: vec![
                View::drafted("first", Tree::object(), count),
                View::drafted("second", Tree::object(), move |d: &mut Draft, a: &CommittedAction| {
                    let me = std::thread::current();
                    SEEN.lock().unwrap().push((me.id(), me.name().map(String::from)));
                    count(d, a)
                }),
            ],
        };
        let mut engine = Engine::new(app);
        let actions: Vec<CommittedAction> = (1..=48).map(|seq| act(seq, "t/x", json!({}))).collect();
        for batch in actions.chunks(16) {
            assert!(engine.apply_run(batch).unwrap().iter().all(|a| a.rejection.is_none()));
        }
        assert_eq!(engine.states()[1].get("/n"), Some(&Tree::from(48u64)));
        let seen = SEEN.lock().unwrap();
        assert_eq!(seen.len(), 48, "the second view took every action");
        assert!(seen.iter().all(|(_, name)| name.as_deref().is_some_and(|n| n.starts_with("nodb-view-"))), "{seen:?}");
        let threads: HashSet<_> = seen.iter().map(|(id, _)| *id).collect();
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert!(threads.len() <= cores.saturating_sub(1).max(1), "three batches on {} threads", threads.len());
        assert!(!threads.contains(&std::thread::current().id()));
    }

    #[test]
    fn a_read_ahead_hint_names_every_action_of_a_batch_and_changes_nothing() {
        use std::sync::atomic::AtomicUsize;
        static HINTED: AtomicUsize = AtomicUsize::new(0);
        let actions: Vec<CommittedAction> = (1..=50u64)
            .map(|seq| {
                let kind = if seq.is_multiple_of(7) { "tally/take" } else { "tally/add" };
                act(seq, kind, json!({"item": "a", "n": 2}))
            })
            .collect();
        // `None`: no view reads ahead; `Some(panics)`: `counts` does, with
        // a hint that panics on every third seq if `panics`.
        let run = |hint: Option<bool>| {
            let mut app = crate::test_app::drafted_app();
            for view in &mut app.views {
                view.read_ahead = None;
            }
            app.views[0].read_ahead = hint.map(|panics| -> ReadHint {
                Arc::new(move |a: &CommittedAction, reads: &mut Reads| {
                    HINTED.fetch_add(1, Relaxed);
                    assert!(!(panics && a.seq.is_multiple_of(3)), "a hint that panics");
                    reads.add([nodb_shared::Segment::from("items"), nodb_shared::Segment::from("a")]);
                })
            });
            let mut engine = Engine::new(app);
            let applied: Vec<_> = actions.chunks(20).flat_map(|batch| engine.apply_run(batch).unwrap()).collect();
            (applied.iter().map(|a| a.rejection.clone()).collect::<Vec<_>>(), engine.states().to_vec())
        };
        let plain = run(None);
        assert_eq!(HINTED.load(Relaxed), 0);
        assert_eq!(run(Some(false)), plain);
        assert_eq!(HINTED.swap(0, Relaxed), actions.len(), "each action hinted once");
        assert_eq!(run(Some(true)), plain);
        // Batches 1–20, 21–40 and 41–50: the hint is asked up to its
        // first panic in each (seqs 1–3, 21, 41–42), then passed over.
        assert_eq!(HINTED.load(Relaxed), 6);
    }

    #[test]
    fn read_ahead_finds_what_the_hint_names() {
        let app = crate::test_app::drafted_app();
        let state = Tree::from(json!({"items": {"a": 1, "b": 2}}));
        let hint = app.views[0].read_ahead.clone().expect("counts reads ahead");
        let actions = [
            act(1, "tally/add", json!({"item": "a", "n": 1})),
            act(2, "tally/take", json!({"item": "z", "n": 1})),
            act(3, "tally/add", json!({"item": "b", "n": 1})),
            act(4, "other/thing", json!(1)),
        ];
        let mut reads = Reads::new();
        assert_eq!(read_ahead(&hint, &state, &actions, &mut reads), Some(2), "a and b are there, z is not");
        assert_eq!(reads.len(), 3);
        let panicky = app.views[1].read_ahead.clone().expect("log reads ahead");
        let zero = [act(5, "tally/take", json!({"item": "a", "n": 0}))];
        assert_eq!(read_ahead(&panicky, &state, &zero, &mut reads), None);
    }

    #[test]
    fn a_rejection_or_a_control_action_takes_the_slow_path() {
        let app = crate::test_app::app();
        let states = app.initial_states();
        let fine = [act(1, "tally/add", json!({"item": "a", "n": 3}))];
        assert!(replay_views(&app, &states, &fine).is_some());
        let oversold = [fine[0].clone(), act(2, "tally/take", json!({"item": "a", "n": 9}))];
        assert!(replay_views(&app, &states, &oversold).is_none(), "counts rejects: no view may change");
        let control = [fine[0].clone(), act(2, "@@nodb/snapshot", json!({}))];
        assert!(replay_views(&app, &states, &control).is_none());
    }
}
