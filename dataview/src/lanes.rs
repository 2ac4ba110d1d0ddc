//! Lanes: the views of an app whose views are all drafted, each going
//! from one run of actions to the next on a thread of its own, for a
//! series of catch-up batches.
//!
//! `batch::apply_views_in_place` runs each view over one batch
//! on a thread of its own and waits for them all before the next batch.
//! On a machine with as many cores as views, a view that finished early
//! then waits, its core idle, while the slowest one finishes; and the
//! thread that waited must be woken for the next batch, which took about
//! a millisecond a batch in the recovery bench (on two cores, the view
//! thread waited behind the follower). Here each view goes on to the next
//! run as soon as it is done with one; the views' decisions on each run
//! are compared as they come in (`batch::settle`), in order, and
//! a run all views agree on is handed to the caller, while the views
//! work on the runs after it.
//!
//! The first view runs on the calling thread, between taking runs in;
//! each other view on a thread started for the series. The views are at
//! most [`DEPTH`] runs apart. Each view keeps what undoes the runs not yet
//! settled; when the views disagree on an action (some took it, others
//! refused it), every view is undone to just before it once all have
//! stopped, and the rest of that run is applied one action at a time by
//! the engine, as [`Engine::apply_run`] does. The runs taken after it
//! are handed back unapplied.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use nodb_shared::Tree;
use nodb_shared::draft::UndoLog;
use nodb_shared::protocol::CommittedAction;
use nodb_shared::tree::limits::Limits;

use super::{Applied, Diffs, Engine, is_control};
use crate::app::App;
use crate::batch::{Decision, run_view, settle};

/// A run of committed actions, shared by the views that apply it.
pub type Run = Arc<Vec<CommittedAction>>;

/// How many runs the views may be apart: the runs taken in and not yet
/// settled.
pub const DEPTH: usize = 4;

/// How often the first view, waiting for the others' reports, checks
/// that their threads are still there.
const LANE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// What undoes each action a view took in one run, by the run's number.
type Kept = VecDeque<(u64, UndoLog)>;

/// Drops what `kept` holds for the runs up to `through`, settled: their
/// logs, cleared, go to `spare` for the runs to come (see [`recycle`]).
fn let_go_settled(kept: &mut Kept, through: u64, spare: &mut Vec<UndoLog>) {
    while kept.front().is_some_and(|(n, _)| *n <= through) {
        let (_, log) = kept.pop_front().expect("a front");
        recycle(spare, log);
    }
}

/// At most how many edits a spare undo log keeps room for (a batch of
/// 1,024 warehouse sales grows `activity`'s log to room for 8,192, and
/// `stock`'s to 4,096): a larger one, grown by a run of unusually many
/// edits, is let go.
const SPARE_ROOM: usize = 1 << 14;

/// Clears `log` and keeps it in `spare` for a run to come, its room kept,
/// so that once the logs have grown a run's drafts allocate nothing for
/// their undo records: at most one more than the runs a view keeps, and
/// none with room for more than [`SPARE_ROOM`] edits.
fn recycle(spare: &mut Vec<UndoLog>, mut log: UndoLog) {
    if spare.len() <= DEPTH && log.room() <= SPARE_ROOM {
        log.clear();
        spare.push(log);
    }
}

/// Each view's spare undo logs, kept by the engine from one series to the
/// next (a lane's thread lasts a series). A clone holds none.
#[derive(Default)]
pub(crate) struct SpareLogs(Vec<Vec<UndoLog>>);

impl Clone for SpareLogs {
    fn clone(&self) -> SpareLogs {
        SpareLogs::default()
    }
}

impl std::fmt::Debug for SpareLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpareLogs")
    }
}

/// A view at the end of a series: its state, its size, what undoes the
/// runs not yet settled, and its spare undo logs.
type LaneEnd = (Tree, u64, Kept, Vec<UndoLog>);

/// A view's state, its size, and its spare undo logs, as a series starts.
type LaneStart = (Tree, u64, Vec<UndoLog>);

/// A view's report on one run: the view, the run's number, and its
/// decision on each action.
type Report = (usize, u64, Vec<Decision>);

/// A run taken in, with the decisions the views have reported on it.
struct Pending {
    number: u64,
    run: Run,
    decisions: Vec<Option<Vec<Decision>>>,
}

/// A view beyond the first: its state comes in, then runs; it reports its
/// decisions on each and keeps what undoes them until they are settled
/// (`settled` is the number of the last run settled). When the runs
/// stop coming, it hands back its state and what it still keeps.
fn lane(
    app: &App,
    view: usize,
    limits: &Limits,
    start: mpsc::Receiver<LaneStart>,
    runs: mpsc::Receiver<(u64, Run)>,
    reports: mpsc::Sender<Report>,
    settled: &AtomicU64,
) -> Option<LaneEnd> {
    let (mut state, mut bytes, mut spare) = start.recv().ok()?;
    let mut kept = Kept::new();
    while let Ok((number, run)) = runs.recv() {
        let_go_settled(&mut kept, settled.load(Ordering::Acquire), &mut spare);
        let done = run_view(app, view, state, bytes, limits, &run, spare.pop().unwrap_or_default());
        drop(run);
        (state, bytes) = (done.state, done.bytes);
        kept.push_back((number, done.undos));
        if reports.send((view, number, done.decisions)).is_err() {
            break;
        }
    }
    Some((state, bytes, kept, spare))
}

/// Undoes, in `kept`, every run after `number` and that run's actions
/// from `agreed` on, newest first.
fn undo_back_to(state: &mut Tree, bytes: &mut u64, kept: &mut Kept, number: u64, agreed: usize) {
    while let Some((n, mut undos)) = kept.pop_back() {
        if n < number {
            break;
        }
        let keep = if n == number { agreed } else { 0 };
        undos.undo_from(state, bytes, keep);
        if n == number {
            break;
        }
    }
}

impl Engine {
    /// Whether `run` can go through the lanes after seq `expected` - 1:
    /// ordinary actions (no control action, nothing redacted) whose seqs
    /// follow on from it.
    fn fits_lanes(&self, run: &[CommittedAction], expected: u64) -> bool {
        !run.is_empty()
            && run
                .iter()
                .zip(expected..)
                .all(|(a, seq)| a.seq == seq && !is_control(&a.kind) && self.redactions.redacted_by(seq).is_none())
    }

    /// Whether this engine applies runs through lanes: every view is
    /// drafted, and there are two or more.
    pub fn has_lanes(&self) -> bool {
        self.app.views.len() > 1 && self.app.views.iter().all(|v| v.draft.is_some())
    }

    /// Whether [`Engine::apply_runs`] would take `run` as its first: the
    /// engine has lanes and the run fits them, after the engine's seq.
    pub fn takes_into_lanes(&self, run: &[CommittedAction]) -> bool {
        self.has_lanes() && self.fits_lanes(run, self.seq + 1)
    }

    /// Applies `first`, then each run `next` gives, while it gives them,
    /// through the lanes (see the module doc): as [`Engine::apply_run`]
    /// would one run after another, but each view goes on to the next run
    /// without waiting for the others. `done` is called with each run
    /// applied and what each of its actions did, in order, as soon as the
    /// views agree on it (or once the engine has applied the rest of it
    /// one action at a time, after a disagreement). Returns the runs taken
    /// and not applied, in order: a run that does not fit (a control
    /// action, a redacted seq, seqs that do not follow on), and every run
    /// taken after a disagreement; the caller applies them as it would
    /// have without lanes. `first` itself comes back when the engine has
    /// no lanes, it does not fit, or a lane's thread cannot be started.
    pub fn apply_runs(
        &mut self,
        first: Run,
        next: &mut dyn FnMut() -> Option<Run>,
        done: &mut dyn FnMut(&Run, Vec<Applied>),
    ) -> Vec<Run> {
        if !self.takes_into_lanes(&first) {
            return vec![first];
        }
        // The last batch's undo records of `apply_views_in_place`.
        drop(std::mem::take(&mut self.leftovers));
        self.spare_logs.0.resize_with(self.states.len(), Vec::new);
        let taken: Vec<LaneStart> = (self.states.iter_mut().zip(&self.bytes).zip(&mut self.spare_logs.0))
            .map(|((s, b), spare)| (std::mem::take(s), *b, std::mem::take(spare)))
            .collect();
        let mut series = Series { settled: AtomicU64::new(0), last: self.seq, disagreed: None, unapplied: Vec::new() };
        let this = &*self;
        let given = std::thread::scope(|scope| this.run_series(scope, taken, first.clone(), next, done, &mut series));
        let given = match given {
            Ok(given) => given,
            Err(taken) => {
                for (i, (state, bytes, _)) in taken.into_iter().enumerate() {
                    (self.states[i], self.bytes[i]) = (state, bytes);
                }
                return vec![first];
            }
        };
        let Series { last, disagreed, mut unapplied, .. } = series;
        for (i, (mut state, mut bytes, mut kept, mut spare)) in given.into_iter().enumerate() {
            if let Some((number, agreed, _, _)) = &disagreed {
                undo_back_to(&mut state, &mut bytes, &mut kept, *number, *agreed);
            }
            (self.states[i], self.bytes[i]) = (state, bytes);
            for (_, log) in kept {
                recycle(&mut spare, log);
            }
            self.spare_logs.0[i] = spare;
        }
        self.seq = last;
        if let Some((_, agreed, run, mut applied)) = disagreed {
            self.seq = run[0].seq - 1 + agreed as u64;
            // A run that disagrees once may well again: the rest of it one
            // action at a time, as `apply_run` does.
            for (k, action) in run[agreed..].iter().enumerate() {
                match self.apply_with(action, Diffs::Nothing) {
                    Ok(a) => applied.push(a),
                    Err(e) => {
                        // Cannot happen for a run that fit; the caller
                        // applies it again and is told.
                        tracing::error!(error = %e, "a run left by the lanes could not be applied");
                        unapplied.insert(0, Arc::new(run[agreed + k..].to_vec()));
                        return unapplied;
                    }
                }
            }
            done(&run, applied);
        }
        unapplied
    }

    /// The body of [`Engine::apply_runs`], with the lanes' threads in
    /// `scope`: the views' states and what they keep at the end, in view
    /// order, or the states as they were if a lane could not be started.
    fn run_series<'scope, 'env: 'scope>(
        &'env self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        mut taken: Vec<LaneStart>,
        first: Run,
        next: &mut dyn FnMut() -> Option<Run>,
        done: &mut dyn FnMut(&Run, Vec<Applied>),
        series: &'env mut Series,
    ) -> Result<Vec<LaneEnd>, Vec<LaneStart>> {
        let views = self.app.views.len();
        let (report, reports) = mpsc::channel::<Report>();
        let mut lanes = Vec::with_capacity(views - 1);
        for view in 1..views {
            let (start_tx, start) = mpsc::channel();
            let (runs_tx, runs) = mpsc::channel();
            let (report, settled) = (report.clone(), &series.settled);
            let (app, limits) = (&self.app, &self.limits);
            let spawned = std::thread::Builder::new()
                .name(format!("nodb-lane-{view}"))
                .spawn_scoped(scope, move || lane(app, view, limits, start, runs, report, settled));
            match spawned {
                Ok(handle) => lanes.push((start_tx, runs_tx, handle)),
                Err(e) => {
                    // The lanes started end when their start is dropped.
                    tracing::warn!(error = %e, "a view's lane could not be started; the batches go the usual way");
                    return Err(taken);
                }
            }
        }
        drop(report);
        let (mut state, mut bytes, mut spare) = {
            let mut others = taken.split_off(1).into_iter();
            for (start, _, _) in &lanes {
                let _ = start.send(others.next().expect("a state per view"));
            }
            taken.pop().expect("the first view's state")
        };
        let mut kept = Kept::new();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut numbered = 0;
        let mut expected = self.seq + 1;
        // Taken in, not yet through the first view.
        let mut first_view: VecDeque<(u64, Run)> = VecDeque::new();
        let mut incoming = Some(first);
        let mut taking = true;
        let record = |pending: &mut VecDeque<Pending>, (view, number, decisions): Report| {
            if let Some(p) = pending.iter_mut().find(|p| p.number == number) {
                p.decisions[view] = Some(decisions);
            }
        };
        loop {
            // Take in the runs there are, up to DEPTH unsettled: every
            // lane has each at once, so none waits for the first view.
            loop {
                let run = match incoming.take() {
                    Some(run) => run,
                    None if taking && pending.len() < DEPTH => match next() {
                        Some(run) if self.fits_lanes(&run, expected) => run,
                        Some(run) => {
                            series.unapplied.push(run);
                            taking = false;
                            break;
                        }
                        None => break,
                    },
                    None => break,
                };
                numbered += 1;
                for (_, runs, _) in &lanes {
                    let _ = runs.send((numbered, run.clone()));
                }
                expected = run.last().map_or(expected, |a| a.seq + 1);
                pending.push_back(Pending { number: numbered, run: run.clone(), decisions: vec![None; views] });
                first_view.push_back((numbered, run));
            }
            // The first view's next run, here.
            if let Some((number, run)) = first_view.pop_front() {
                let_go_settled(&mut kept, series.settled.load(Ordering::Relaxed), &mut spare);
                let undos = spare.pop().unwrap_or_default();
                let done0 = run_view(&self.app, 0, state, bytes, &self.limits, &run, undos);
                (state, bytes) = (done0.state, done0.bytes);
                kept.push_back((number, done0.undos));
                record(&mut pending, (0, number, done0.decisions));
            }
            while let Ok(r) = reports.try_recv() {
                record(&mut pending, r);
            }
            // Settle the runs every view has reported on, in order.
            while pending.front().is_some_and(|p| p.decisions.iter().all(Option::is_some)) {
                let p = pending.pop_front().expect("a run");
                let decisions: Vec<&[Decision]> = p.decisions.iter().flatten().map(Vec::as_slice).collect();
                let mut applied = Vec::with_capacity(p.run.len());
                let agreed = settle(&self.app, &self.limits, &p.run, &decisions, &mut applied);
                if agreed < p.run.len() {
                    series.disagreed = Some((p.number, agreed, p.run, applied));
                    break;
                }
                series.settled.store(p.number, Ordering::Release);
                series.last = p.run.last().map_or(series.last, |a| a.seq);
                done(&p.run, applied);
            }
            if series.disagreed.is_some() {
                // The runs after it, then the one that did not fit, if any.
                let after: Vec<Run> = pending.drain(..).map(|p| p.run).collect();
                series.unapplied.splice(0..0, after);
                break;
            }
            if first_view.is_empty() {
                if pending.is_empty() {
                    // All settled: the series goes on if another run is there.
                    match if taking { next() } else { None } {
                        Some(run) if self.fits_lanes(&run, expected) => incoming = Some(run),
                        Some(run) => series.unapplied.push(run),
                        None => {}
                    }
                    if incoming.is_none() {
                        break;
                    }
                    continue;
                }
                match reports.recv_timeout(LANE_CHECK) {
                    Ok(r) => record(&mut pending, r),
                    // A lane ends early only on a panic outside a reducer
                    // (a reducer's is caught): the join below passes it
                    // on, rather than waiting for its report for ever.
                    Err(mpsc::RecvTimeoutError::Timeout) if !lanes.iter().any(|(_, _, h)| h.is_finished()) => {}
                    Err(_) => break,
                }
            }
        }
        let mut given = vec![(state, bytes, kept, spare)];
        for (_, runs, handle) in lanes {
            drop(runs);
            match handle.join() {
                Ok(Some(lane)) => given.push(lane),
                Ok(None) => unreachable!("every lane was given its state"),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(given)
    }
}

/// What a series of runs through the lanes came to.
struct Series {
    /// The number of the last run settled.
    settled: AtomicU64,
    /// The seq the views reached with the runs settled.
    last: u64,
    /// The first run the views disagreed on: its number, how many of its
    /// actions they agreed on first, the run, and what those did.
    disagreed: Option<(u64, usize, Run, Vec<Applied>)>,
    /// The runs taken and not applied.
    unapplied: Vec<Run>,
}

#[cfg(test)]
#[path = "lanes_tests.rs"]
mod tests;
