//! Replaying a batch of history with each view of the app on its own
//! thread, for start-up: the views of an app are independent except that
//! they change together (an action one view rejects changes none). So each
//! view's reducer runs over the whole batch on its own; if no view rejected
//! or panicked on any action, those are the states the sequential replay
//! would have reached. Otherwise — or for a batch with a control action,
//! which the engine handles itself — the caller applies the batch one
//! action at a time.

use std::panic::{AssertUnwindSafe, catch_unwind};

use nodb_shared::Tree;
use nodb_shared::draft::Draft;
use nodb_shared::protocol::CommittedAction;
use nodb_shared::tree::limits::{LimitError, Limits, bytes_of, dispose};

use crate::app::App;
use crate::engine::{check_view, is_control};

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
                catch_unwind(AssertUnwindSafe(|| drafted(&mut draft, action))).ok()?.ok()?;
                (state, size, _) = draft.finish().ok()?;
            }
            return Some((state, size));
        }
        for action in actions {
            let next = catch_unwind(AssertUnwindSafe(|| reducer(&state, action))).ok()?.ok()?;
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
    if app.views.len() == 1 {
        let (state, size) = run(0)?;
        return Some((vec![state], vec![size]));
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..app.views.len()).map(|i| scope.spawn(move || run(i))).collect();
        // The first view on this thread, the others beside it.
        let first = run(0);
        let rest: Vec<Option<(Tree, u64)>> = handles.into_iter().map(|h| h.join().ok().flatten()).collect();
        let all: Option<Vec<(Tree, u64)>> = std::iter::once(first).chain(rest).collect();
        all.map(|all| all.into_iter().unzip())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Diffs, Engine};
    use crate::test_app::{act, action};
    use proptest::prelude::*;
    use serde_json::json;

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
