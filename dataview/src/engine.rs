//! The engine: an application's views at one seq, moved forward one
//! committed action at a time. Pure: no I/O, no clock.
//!
//! For each action it runs the app's reducers (catching a panic as a
//! rejection), handles the control actions, and returns the patch of every
//! view for that seq — empty when the view did not change — so the service
//! can send exactly one update per seq per view.
//!
//! Every state a reducer or `@@nodb/set_state` returns is checked against
//! the tree [`Limits`] (depth and size, `nodb_shared::tree::limits`) in time
//! proportional to the change; one that would break them rejects the action
//! like any other rejection, so no action can make a view too deep to
//! serialise or too large to send.

use std::panic::{AssertUnwindSafe, catch_unwind};

use nodb_shared::Tree;
use nodb_shared::diff::diff;
use nodb_shared::draft::{Draft, Op, Record, to_patch};
use nodb_shared::protocol::CommittedAction;
use nodb_shared::tree::limits::{LimitError, Limits, bytes_of, check_change, dispose};
use serde::Deserialize;

use crate::app::App;
use crate::redaction::{Redaction, Redactions};
use crate::reducer::Rejection;

/// Makes every view write a snapshot at this seq.
pub const SNAPSHOT: &str = "@@nodb/snapshot";
/// Replaces one view's state: `{"view": name, "state": …}`. Rejected for
/// an unknown view, and for a state of another kind of JSON value than the
/// view's initial state (an array for a view that starts as an object) —
/// or, for a view with a [check](crate::reducer::View::with_check) of its
/// own, for a state that check turns down.
pub const SET_STATE: &str = "@@nodb/set_state";
/// Stands for a committed action this data view could not read (its
/// payload nested too deep, a number out of range): the follower reports
/// it and hands it on under this type, with `{"type": original type,
/// "error": why}` as its payload, and the engine rejects it without
/// running a reducer — a reducer never sees a payload that is not the
/// action's. It keeps its seq, so every seq still gets its update.
pub const UNREADABLE: &str = "@@nodb/unreadable";

/// Leaves earlier actions out of the views (or puts them back): see
/// [`crate::redaction`].
pub use nodb_shared::protocol::REDACT;

/// Whether `kind` is a control action, which the engine handles itself.
pub fn is_control(kind: &str) -> bool {
    kind == SNAPSHOT || kind == SET_STATE || kind == UNREADABLE || kind == REDACT
}

/// What applying one action did.
#[derive(Debug)]
pub struct Applied {
    /// The action's seq, which the views now reflect.
    pub seq: u64,
    /// One patch per view, in the app's view order (empty if unchanged).
    pub patches: Vec<json_patch::Patch>,
    /// How each view's patch is had, in the app's view order, when the
    /// action changed the states (empty when it changed nothing): the
    /// edits a drafted view recorded, or a diff of its old and new state.
    pub edits: Vec<Edits>,
    /// Why the action was rejected, if it was (nothing changed then).
    pub rejection: Option<Rejection>,
    /// Whether a reducer panicked on it (counted as a rejection too).
    pub panicked: bool,
    /// Whether the action asks for a snapshot.
    pub snapshot_requested: bool,
}

/// How a view's patch for one seq is had.
#[derive(Debug, Clone)]
pub enum Edits {
    /// The operations its draft reducer recorded: they are the patch.
    Recorded(Vec<Op>),
    /// None recorded: the patch is the diff of the old and new state.
    Diff,
}

/// One view's state after an action.
struct Change {
    state: Tree,
    bytes: u64,
    edits: Edits,
}

/// Whether [`Engine::apply_with`] computes the patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diffs {
    /// One patch per view.
    Compute,
    /// None; the drafted views' recorded edits are still in
    /// [`Applied::edits`] (the hub writes its patch messages from them).
    Skip,
    /// Neither patches nor edits ([`Applied::edits`] stays empty): the
    /// drafts keep only what undoes them ([`Record::Undo`]). Replays and
    /// rebuilds that want the new states alone.
    Nothing,
}

/// Why an action could not be applied at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The action is not the next seq.
    #[error("expected seq {expected}, got seq {got}: the history has a gap or repeats")]
    OutOfSequence {
        /// The seq the engine needs next.
        expected: u64,
        /// The seq it was given.
        got: u64,
    },
    /// A redaction the engine's ledger does not hold yet: the views at its
    /// seq are rebuilt (see [`crate::redaction`]), which the engine alone
    /// cannot do; it is unchanged.
    #[error("the redaction at seq {seq} needs the views rebuilt")]
    Rebuild {
        /// The redaction's seq.
        seq: u64,
        /// The redaction.
        redaction: Box<Redaction>,
    },
}

/// An app's views at one seq.
#[derive(Clone, Debug)]
pub struct Engine {
    app: App,
    seq: u64,
    states: Vec<Tree>,
    /// Each view's size as JSON text (estimated, see
    /// `nodb_shared::tree::limits`), kept up to date from each change.
    bytes: Vec<u64>,
    limits: Limits,
    /// The redactions the states reflect: a seq they redact is passed
    /// over as if it changed nothing.
    redactions: Redactions,
    /// The last batch's undo records, freed during the next batch.
    leftovers: crate::batch::Leftovers,
    /// Each view's cleared undo logs, for the lanes' next series.
    spare_logs: lanes::SpareLogs,
}

impl Engine {
    /// The app's views before any action (seq 0).
    pub fn new(app: App) -> Engine {
        let states = app.initial_states();
        let bytes = states.iter().map(bytes_of).collect();
        Engine::at(app, 0, states, bytes)
    }

    /// The app's views as a snapshot left them at `seq`. Measuring them
    /// takes a walk of each (a snapshot written before the limits, or
    /// under larger ones, is taken as it is).
    ///
    /// # Panics
    /// Never; a snapshot with fewer states than the app has views gets the
    /// initial state for the missing ones.
    pub fn restore(app: App, seq: u64, states: Vec<Tree>) -> Engine {
        let states = Engine::complete(&app, states);
        let bytes = states.iter().map(bytes_of).collect();
        Engine::at(app, seq, states, bytes)
    }

    /// [`Engine::restore`] for states whose sizes are known (`bytes`, as
    /// [`Engine::bytes`] gives them): no walk.
    pub fn restore_measured(app: App, seq: u64, states: Vec<Tree>, bytes: Vec<u64>) -> Engine {
        let states = Engine::complete(&app, states);
        let bytes = if bytes.len() == states.len() { bytes } else { states.iter().map(bytes_of).collect() };
        Engine::at(app, seq, states, bytes)
    }

    /// The engine at `seq` with `states` of sizes `bytes`, the default
    /// limits and no redactions.
    fn at(app: App, seq: u64, states: Vec<Tree>, bytes: Vec<u64>) -> Engine {
        let (limits, redactions, leftovers, spare_logs) = Default::default();
        Engine { app, seq, states, bytes, limits, redactions, leftovers, spare_logs }
    }

    fn complete(app: &App, mut states: Vec<Tree>) -> Vec<Tree> {
        let initial = app.initial_states();
        states.truncate(initial.len());
        let have = states.len();
        states.extend(initial.into_iter().skip(have));
        states
    }

    /// This engine with states that reflect `redactions` (as a snapshot
    /// recorded them, or as of the seq a replay is to reach).
    #[must_use]
    pub fn with_redactions(mut self, redactions: Redactions) -> Engine {
        self.redactions = redactions;
        self
    }

    /// The redactions the states reflect.
    pub fn redactions(&self) -> &Redactions {
        &self.redactions
    }

    /// This engine with other bounds on its states than the defaults.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Engine {
        self.limits = limits;
        self
    }

    /// The bounds on the views' states.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Each view's size as JSON text (estimated), in the app's view order.
    pub fn bytes(&self) -> &[u64] {
        &self.bytes
    }

    /// The seq the views reflect.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The app.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Every view's state, in the app's view order.
    pub fn states(&self) -> &[Tree] {
        &self.states
    }

    /// The state of view number `i`.
    pub fn state(&self, i: usize) -> Option<&Tree> {
        self.states.get(i)
    }

    /// Applies the next committed action.
    ///
    /// # Errors
    /// [`EngineError::OutOfSequence`] if `action.seq` is not the next seq;
    /// the engine is unchanged then.
    pub fn apply(&mut self, action: &CommittedAction) -> Result<Applied, EngineError> {
        self.apply_with(action, Diffs::Compute)
    }

    /// Applies the next committed action, computing the patches only if
    /// asked ([`Diffs::Skip`] leaves [`Applied::patches`] empty: the hub,
    /// which writes them on demand; [`Diffs::Nothing`] leaves the edits
    /// out too: replays, which need only the states).
    ///
    /// # Errors
    /// As for [`Engine::apply`].
    pub fn apply_with(&mut self, action: &CommittedAction, diffs: Diffs) -> Result<Applied, EngineError> {
        if action.seq != self.seq + 1 {
            return Err(EngineError::OutOfSequence { expected: self.seq + 1, got: action.seq });
        }
        let mut applied = Applied {
            seq: action.seq,
            patches: Vec::new(),
            edits: Vec::new(),
            rejection: None,
            panicked: false,
            snapshot_requested: action.kind == SNAPSHOT,
        };
        if self.redactions.redacted_by(action.seq).is_some() {
            // Left out: the seq passes, and no view changes.
            applied.patches = unchanged(diffs, &self.states);
            self.seq = action.seq;
            return Ok(applied);
        }
        let next = match action.kind.as_str() {
            SNAPSHOT => Ok(None),
            REDACT if self.redactions.has(action.seq) => Ok(None),
            REDACT => {
                let made = Redaction::of(action);
                match made.and_then(|r| self.redactions.with(r.clone()).map(|_| r)) {
                    Ok(redaction) => {
                        return Err(EngineError::Rebuild { seq: action.seq, redaction: Box::new(redaction) });
                    }
                    Err(refused) => Err(Rejection::new(refused.to_string())),
                }
            }
            SET_STATE => self.set_state(action).map(|states| Some(self.pure_changes(states))),
            UNREADABLE => Err(unreadable(action)),
            _ => Ok(Some(self.reduce(action, diffs, &mut applied.panicked))),
        };
        let next = match next {
            Ok(Some(Ok(changes))) => Ok(Some(changes)),
            Ok(Some(Err(r))) => Err(r),
            Ok(None) => Ok(None),
            Err(r) => Err(r),
        };
        match next {
            Ok(Some(changes)) => {
                let wanted = |d: Diffs| if diffs == d { changes.len() } else { 0 };
                let mut patches = Vec::with_capacity(wanted(Diffs::Compute));
                let mut edits = Vec::with_capacity(changes.len() - wanted(Diffs::Nothing));
                for (i, change) in changes.into_iter().enumerate() {
                    self.bytes[i] = change.bytes;
                    let old = std::mem::replace(&mut self.states[i], change.state);
                    if diffs == Diffs::Compute {
                        patches.push(match &change.edits {
                            Edits::Recorded(ops) => to_patch(ops.as_slice()),
                            Edits::Diff => diff(&old, &self.states[i]),
                        });
                    }
                    if diffs != Diffs::Nothing {
                        edits.push(change.edits);
                    }
                    // The old state is dropped here (freeing the nodes the
                    // reducers copied) unless the caller kept a clone.
                    drop(old);
                }
                applied.patches = patches;
                applied.edits = edits;
            }
            Ok(None) => applied.patches = unchanged(diffs, &self.states),
            Err(r) => {
                applied.patches = unchanged(diffs, &self.states);
                applied.rejection = Some(r);
            }
        }
        self.seq = action.seq;
        Ok(applied)
    }

    /// Applies `actions`, the consecutive seqs after the current one, as
    /// [`Engine::apply_with`] with [`Diffs::Nothing`] would one after
    /// another, and returns what each did. When every view is drafted,
    /// each run of at least 8 ordinary actions (no control action, nothing
    /// redacted) goes through each view on a thread of its own (the view
    /// threads, kept between batches: `batch::apply_views_in_place`): the views' decisions are
    /// compared afterwards, and from the first action that some views took
    /// and others did not, the views are undone and the rest of the run is
    /// applied one action at a time.
    ///
    /// # Errors
    /// [`EngineError::OutOfSequence`] if the seqs do not follow on (the
    /// engine is unchanged then); a redaction's [`EngineError::Rebuild`],
    /// with the actions before it applied.
    pub fn apply_run(&mut self, actions: &[CommittedAction]) -> Result<Vec<Applied>, EngineError> {
        if let Some((a, expected)) = actions.iter().zip(self.seq + 1..).find(|(a, expected)| a.seq != *expected) {
            return Err(EngineError::OutOfSequence { expected, got: a.seq });
        }
        let drafted = self.app.views.iter().all(|v| v.draft.is_some());
        let mut applied = Vec::with_capacity(actions.len());
        let mut at = 0;
        while at < actions.len() {
            let ordinary = actions[at..]
                .iter()
                .take_while(|a| !is_control(&a.kind) && self.redactions.redacted_by(a.seq).is_none())
                .count();
            // A thread per view costs tens of microseconds: not for a few.
            if !drafted || ordinary < 8 {
                applied.push(self.apply_with(&actions[at], Diffs::Nothing)?);
                at += 1;
                continue;
            }
            let run = &actions[at..at + ordinary];
            let agreed = crate::batch::apply_views_in_place(
                &self.app,
                &mut self.states,
                &mut self.bytes,
                &self.limits,
                run,
                &mut applied,
                &mut self.leftovers,
            );
            if agreed > 0 {
                self.seq = run[agreed - 1].seq;
            }
            // The views disagreed on `run[agreed]`: it and the rest of the
            // run one at a time (a run that disagrees once may well again).
            for action in &run[agreed..] {
                applied.push(self.apply_with(action, Diffs::Nothing)?);
            }
            at += ordinary;
        }
        Ok(applied)
    }

    /// Runs every view's reducer on `action`: drafted views edit their
    /// state in place (each taken out of `self.states` while it runs),
    /// the others return a new one. If any view rejects the action, panics
    /// or would break the limits, every draft is undone and the states are
    /// as they were.
    fn reduce(
        &mut self,
        action: &CommittedAction,
        diffs: Diffs,
        panicked: &mut bool,
    ) -> Result<Vec<Change>, Rejection> {
        let n = self.app.views.len();
        let record = if diffs == Diffs::Nothing { Record::Undo } else { Record::Patch };
        let mut drafts: Vec<Option<Draft>> = Vec::with_capacity(n);
        let mut pure: Vec<Option<Tree>> = Vec::with_capacity(n);
        let mut failed = None;
        for i in 0..n {
            let view = &self.app.views[i];
            let result = match &view.draft {
                Some(reducer) => {
                    let state = std::mem::take(&mut self.states[i]);
                    let mut draft = Draft::new(state, self.bytes[i], self.limits).recording(record);
                    let result = catch_unwind(AssertUnwindSafe(|| reducer(&mut draft, action)));
                    drafts.push(Some(draft));
                    pure.push(None);
                    result
                }
                None => {
                    drafts.push(None);
                    match catch_unwind(AssertUnwindSafe(|| (view.reducer)(&self.states[i], action))) {
                        Ok(Ok(state)) => {
                            pure.push(Some(state));
                            Ok(Ok(()))
                        }
                        Ok(Err(r)) => Ok(Err(r)),
                        Err(panic) => Err(panic),
                    }
                }
            };
            match result {
                Ok(Ok(())) => {}
                Ok(Err(r)) => {
                    failed = Some(r);
                    break;
                }
                Err(panic) => {
                    *panicked = true;
                    failed =
                        Some(Rejection::new(format!("the reducer failed on this action: {}", panic_message(panic))));
                    break;
                }
            }
        }
        if failed.is_none() {
            match self.finish(&mut drafts, pure) {
                Ok(changes) => return Ok(changes),
                Err(r) => failed = Some(r),
            }
        }
        for (i, draft) in drafts.into_iter().enumerate() {
            if let Some(draft) = draft {
                self.states[i] = draft.undo().0;
            }
        }
        Err(failed.unwrap_or_else(|| Rejection::new("rejected")))
    }

    /// The changes of a run in which every reducer took the action: each
    /// state checked against the limits, or the rejection of the first
    /// that breaks them (the drafts then stay in `drafts`, to be undone).
    fn finish(&mut self, drafts: &mut [Option<Draft>], pure: Vec<Option<Tree>>) -> Result<Vec<Change>, Rejection> {
        let mut changes = Vec::with_capacity(drafts.len());
        for (i, new) in pure.into_iter().enumerate() {
            let name = &self.app.views[i].name;
            if let Some(new) = new {
                match check_view(&self.states[i], &new, self.bytes[i], &self.limits) {
                    Ok(bytes) => changes.push(Change { state: new, bytes, edits: Edits::Diff }),
                    Err(e) => {
                        if matches!(e, LimitError::TooDeep { .. }) {
                            // Dropping a tree recurses over its depth: a
                            // reducer's result far past the limit is taken
                            // apart a few levels at a time.
                            dispose(new);
                        }
                        return Err(Rejection::new(format!("view {name:?}: {e}")));
                    }
                }
                continue;
            }
            let draft = drafts[i].as_ref().expect("a drafted view");
            if draft.bytes() > self.limits.max_bytes {
                return Err(Rejection::new(format!(
                    "view {name:?}: {}",
                    LimitError::TooLarge { limit: self.limits.max_bytes }
                )));
            }
            changes.push(Change { state: Tree::Null, bytes: draft.bytes(), edits: Edits::Diff });
        }
        for (i, draft) in drafts.iter_mut().enumerate() {
            if let Some(draft) = draft.take() {
                let (state, bytes, ops) = draft.into_parts();
                changes[i] = Change { state, bytes, edits: Edits::Recorded(ops) };
            }
        }
        Ok(changes)
    }

    /// `states` (all views, from a control action) as changes to be diffed
    /// and checked like a pure reducer's.
    fn pure_changes(&mut self, states: Vec<Tree>) -> Result<Vec<Change>, Rejection> {
        let mut drafts: Vec<Option<Draft>> = states.iter().map(|_| None).collect();
        self.finish(&mut drafts, states.into_iter().map(Some).collect())
    }

    fn set_state(&self, action: &CommittedAction) -> Result<Vec<Tree>, Rejection> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SetState {
            view: String,
            state: Tree,
        }
        let p: SetState = crate::reducer::payload(action)?;
        let i = self.app.view_index(&p.view).ok_or_else(|| {
            let names: Vec<&str> = self.app.views.iter().map(|v| v.name.as_str()).collect();
            Rejection::new(format!("{SET_STATE}: no view {:?} (this app has {})", p.view, names.join(", ")))
        })?;
        let view = &self.app.views[i];
        match &view.check {
            Some(check) => {
                check(&p.state).map_err(|r| Rejection::new(format!("{SET_STATE}: view {:?}: {r}", p.view)))?;
            }
            None => {
                let (expected, given) = (view.initial.kind(), p.state.kind());
                if given != expected {
                    return Err(Rejection::new(format!(
                        "{SET_STATE}: the state of view {:?} must be {expected}, like its initial state, not {given}",
                        p.view
                    )));
                }
            }
        }
        let mut states = self.states.clone();
        states[i] = p.state;
        Ok(states)
    }
}

/// Checks view state `new`, made from `old` (which measures `old_bytes`),
/// against `limits`: its size, or why it breaks them. Costs time in the
/// change (see `nodb_shared::tree::limits::check_change`).
///
/// # Errors
/// The [`LimitError`] of a state too deep or too large.
pub fn check_view(old: &Tree, new: &Tree, old_bytes: u64, limits: &Limits) -> Result<u64, LimitError> {
    if old.ptr_eq(new) {
        return Ok(old_bytes);
    }
    check_change(old, new, old_bytes, limits)
}

/// One empty patch per view when asked for patches, none otherwise.
fn unchanged(diffs: Diffs, states: &[Tree]) -> Vec<json_patch::Patch> {
    match diffs {
        Diffs::Compute => states.iter().map(|_| json_patch::Patch(Vec::new())).collect(),
        Diffs::Skip | Diffs::Nothing => Vec::new(),
    }
}

/// What a caught panic says.
pub(crate) use nodb_shared::panic::{let_go, message as panic_message};

/// The rejection of an action the follower could not read.
fn unreadable(action: &CommittedAction) -> Rejection {
    let kind = action.payload.get("type").and_then(|t| t.as_str()).unwrap_or("?");
    let error = action.payload.get("error").and_then(|t| t.as_str()).unwrap_or("unknown");
    Rejection::new(format!("the data view cannot read this {kind} action ({error}); no view applied it"))
}

#[path = "lanes.rs"]
pub mod lanes;

#[cfg(test)]
#[path = "engine_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "engine_limits_tests.rs"]
mod limits_tests;

#[cfg(test)]
#[path = "engine_draft_tests.rs"]
mod draft_tests;
