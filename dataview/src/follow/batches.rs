//! The follower's batches: the one it gathers, and those handed to an
//! applier of their own, which applies them in order on tokio's blocking
//! pool. A batch takes milliseconds, and a runtime worker held that long
//! leaves the tasks queued on it (`/health` among them) waiting; reading
//! and parsing the next batch overlaps applying this one (with the views
//! on threads of their own, the slowest view leaves a core to it).
//!
//! Up to [`AHEAD`] batches are with the applier: the one it applies and
//! those after it, so that it starts the next as soon as it is done,
//! rather than waiting for the follower to hear of it and hand the next
//! over (each hand-over is a wake-up of two threads, and a batch is a few
//! milliseconds). The batches waiting when the applier takes one go with
//! it as a series ([`Hub::apply_batches`]): each view goes from batch to
//! batch on a thread of its own, a few batches ahead of the slowest at
//! most, so the follower keeps more batches ahead than a series lets the
//! views be apart (with two, a view that got one batch ahead found
//! nothing waiting, and the series ended). The applied batches go back to
//! the follower, which
//! drops them while the applier goes on (on a runtime worker: about a
//! tenth of a millisecond for 1,024 warehouse actions, in a profile of the
//! restart bench). The applier is started with a connection's first batch
//! and holds one thread of the blocking pool, parked while it has nothing
//! to apply, until the connection ends.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use nodb_shared::protocol::CommittedAction;
use tokio::sync::mpsc;

use crate::engine::lanes::Run;
use crate::engine::panic_message;
use crate::hub::Hub;

/// How many batches may be with the applier at once: more than the runs
/// the views of a series may be apart (`crate::engine::lanes::DEPTH`).
pub(super) const AHEAD: usize = crate::engine::lanes::DEPTH + 2;

/// What became of a batch handed to the applier.
enum Outcome {
    Applied,
    /// Not applied, and why (the engine refused it, or a reducer's
    /// panic got out): the follower reconnects.
    Failed(String),
    /// Not tried, after one before it failed.
    Skipped,
}

/// The applier: batches go in, outcomes (with the batches, to be dropped
/// by the follower) come back in the same order.
struct Applier {
    batches: mpsc::Sender<Vec<CommittedAction>>,
    outcomes: mpsc::UnboundedReceiver<(Outcome, Run)>,
}

impl Applier {
    /// Starts the applier of `hub`'s batches; it stops when the follower
    /// lets go of it, after the batches it has taken in: the one it is
    /// applying, or those of a series, which takes up to
    /// [`crate::engine::lanes::DEPTH`] in before the first is settled. The
    /// batches waiting when it takes one go with it to
    /// [`Hub::apply_batches`], which applies batches that follow one
    /// another as a series.
    fn start(hub: Arc<Hub>) -> Applier {
        let (batches, mut inbox) = mpsc::channel::<Vec<CommittedAction>>(AHEAD);
        let (report, outcomes) = mpsc::unbounded_channel();
        tokio::task::spawn_blocking(move || {
            let mut failed = false;
            while let Some(batch) = inbox.blocking_recv() {
                // Taken in and not yet reported on, oldest first.
                let taken = RefCell::new(VecDeque::from([Arc::new(batch)]));
                if !failed {
                    let first = taken.borrow()[0].clone();
                    let mut more = || {
                        // The follower gone (shut down, or reconnecting),
                        // the batches still waiting are not taken into the
                        // series: they go with the channel, unapplied.
                        if report.is_closed() {
                            return None;
                        }
                        let batch = Arc::new(inbox.try_recv().ok()?);
                        taken.borrow_mut().push_back(batch.clone());
                        Some(batch)
                    };
                    let mut done = |result: Result<(), crate::engine::EngineError>| {
                        let Some(batch) = taken.borrow_mut().pop_front() else { return };
                        let outcome = match result {
                            Ok(()) => Outcome::Applied,
                            Err(e) => Outcome::Failed(e.to_string()),
                        };
                        failed |= matches!(outcome, Outcome::Failed(_));
                        let _ = report.send((outcome, batch));
                    };
                    let applied = catch_unwind(AssertUnwindSafe(|| hub.apply_batches(first, &mut more, &mut done)));
                    if let Err(panic) = applied {
                        failed = true;
                        let why = format!("applying a batch failed: {}", panic_message(panic));
                        if let Some(batch) = taken.borrow_mut().pop_front() {
                            let _ = report.send((Outcome::Failed(why), batch));
                        }
                    }
                }
                // Not tried: after a failure, or after the one that failed.
                for batch in taken.into_inner() {
                    let _ = report.send((Outcome::Skipped, batch));
                }
                if report.is_closed() {
                    break;
                }
            }
        });
        Applier { batches, outcomes }
    }
}

/// The batch the follower gathers, and those with the applier.
#[derive(Default)]
pub(super) struct Batches {
    /// The batch being gathered.
    pub(super) gathering: Vec<CommittedAction>,
    /// Started with the first batch handed over.
    applier: Option<Applier>,
    /// Batches handed over whose outcome has not come back.
    out: usize,
    /// The last seq handed over.
    last_handed: u64,
}

impl Batches {
    /// Whether every action received is applied.
    pub(super) fn is_empty(&self) -> bool {
        self.gathering.is_empty() && self.out == 0
    }

    /// The last seq received into a batch (gathered, or with the applier —
    /// possibly applied by now); 0 if none is.
    pub(super) fn last_seq(&self) -> u64 {
        let handed = (self.out > 0).then_some(self.last_handed);
        self.gathering.last().map(|a| a.seq).or(handed).unwrap_or(0)
    }

    /// Takes in the outcomes that have come back, waiting for them while
    /// more than `keep` batches are out; `false` (to reconnect) if a batch
    /// failed or the applier is gone.
    async fn collect(&mut self, keep: usize) -> bool {
        let Some(applier) = &mut self.applier else { return true };
        while self.out > 0 {
            let next = if self.out > keep {
                applier.outcomes.recv().await
            } else {
                match applier.outcomes.try_recv() {
                    Ok(next) => Some(next),
                    Err(mpsc::error::TryRecvError::Empty) => return true,
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some((outcome, spent)) = next else {
                tracing::error!("the batch applier stopped; reconnecting to resume");
                self.out = 0;
                return false;
            };
            self.out -= 1;
            drop(spent);
            match outcome {
                Outcome::Applied => {}
                Outcome::Failed(why) => {
                    tracing::error!(error = %why, "a batch was not applied; reconnecting to resume");
                    return false;
                }
                Outcome::Skipped => return false,
            }
        }
        true
    }

    /// Waits for every batch with the applier; `false` to reconnect.
    pub(super) async fn settle(&mut self) -> bool {
        self.collect(0).await
    }

    /// Hands the gathered batch to the applier, once fewer than [`AHEAD`]
    /// are with it, and returns; `false` to reconnect.
    pub(super) async fn launch(&mut self, hub: &Arc<Hub>) -> bool {
        if !self.collect(AHEAD - 1).await {
            return false;
        }
        if self.gathering.is_empty() {
            return true;
        }
        // The next batch's room at once: grown from empty, it was copied
        // ten times over.
        let batch = std::mem::replace(&mut self.gathering, Vec::with_capacity(crate::batch::BATCH));
        let last = batch.last().map_or(0, |a| a.seq);
        let applier = self.applier.get_or_insert_with(|| Applier::start(hub.clone()));
        if applier.batches.send(batch).await.is_err() {
            tracing::error!("the batch applier stopped; reconnecting to resume");
            return false;
        }
        self.out += 1;
        self.last_handed = last;
        true
    }

    /// Applies every action received; `false` to reconnect.
    pub(super) async fn flush(&mut self, hub: &Arc<Hub>) -> bool {
        self.launch(hub).await && self.settle().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::test_app::act;
    use serde_json::json;

    fn batch(seqs: std::ops::RangeInclusive<u64>) -> Vec<CommittedAction> {
        seqs.map(|seq| act(seq, "tally/add", json!({"item": format!("i{}", seq % 7), "n": 1}))).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_applied_in_the_order_handed_over_with_at_most_ahead_out() {
        let hub = Hub::new(Engine::new(crate::test_app::drafted_app()), 64);
        let mut batches = Batches::default();
        for k in 0..20u64 {
            batches.gathering = batch(k * 50 + 1..=k * 50 + 50);
            assert!(batches.launch(&hub).await);
            assert!(batches.out <= AHEAD, "{} out", batches.out);
            assert_eq!(batches.last_seq(), k * 50 + 50);
        }
        assert!(batches.settle().await);
        assert!(batches.is_empty());
        assert_eq!(hub.current_seq(), 1000);
        assert_eq!(batches.last_seq(), 0, "nothing received is unapplied");
        let expected = {
            let mut e = Engine::new(crate::test_app::drafted_app());
            for a in batch(1..=1000) {
                e.apply(&a).unwrap();
            }
            e.states().to_vec()
        };
        assert_eq!(hub.current(), (1000, expected));
    }

    /// Once the follower lets go of the applier (shut down, or
    /// reconnecting), the applier ends the batch it is applying and takes
    /// none of those still waiting for it. A view that holds its first
    /// action until the test lets it go makes the order certain: the other
    /// batches wait in the channel, and the follower is gone, before the
    /// first batch is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_the_follower_is_gone_the_applier_takes_no_waiting_batch() {
        use crate::reducer::View;
        use nodb_shared::Tree;
        use nodb_shared::draft::Draft;
        use std::sync::Mutex;
        let (started, is_started) = std::sync::mpsc::channel::<()>();
        let (go, gone) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(Some((started, gone)));
        let count = |d: &mut Draft| {
            let n = d.get("/n").and_then(Tree::as_u64).unwrap_or(0);
            d.set("/n", Tree::from(n + 1)).map_err(crate::reducer::Rejection::from)
        };
        let app = crate::app::App {
            name: "gate".into(),
            views: vec![
                View::drafted("held", Tree::object(), move |d: &mut Draft, a: &CommittedAction| {
                    if a.seq == 1
                        && let Some((started, gone)) = gate.lock().unwrap().take()
                    {
                        started.send(()).unwrap();
                        gone.recv().unwrap();
                    }
                    count(d)
                }),
                View::drafted("other", Tree::object(), move |d: &mut Draft, _: &CommittedAction| count(d)),
            ],
        };
        let hub = Hub::new(Engine::new(app), 64);
        let applier = Applier::start(hub.clone());
        applier.batches.send(batch(1..=10)).await.unwrap();
        tokio::task::spawn_blocking(move || is_started.recv().unwrap()).await.unwrap();
        for b in [batch(11..=20), batch(21..=30)] {
            applier.batches.send(b).await.unwrap();
        }
        drop(applier);
        go.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), hub.seq().wait_for(|s| *s >= 10))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(hub.current_seq(), 10, "the batches waiting when the follower let go are not applied");
    }

    /// After a batch fails, the applier applies none handed to it after:
    /// the three batches are all with it before any outcome is read, so
    /// the third reaches it whatever the timing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_batches_after_a_failed_one_are_skipped() {
        let hub = Hub::new(Engine::new(crate::test_app::drafted_app()), 64);
        let mut applier = Applier::start(hub.clone());
        // Seq 11 is missing from the second; the third would follow on
        // from the first.
        for b in [batch(1..=10), batch(12..=20), batch(11..=11)] {
            applier.batches.send(b).await.unwrap();
        }
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let (outcome, _) = applier.outcomes.recv().await.unwrap();
            outcomes.push(match outcome {
                Outcome::Applied => "applied",
                Outcome::Failed(_) => "failed",
                Outcome::Skipped => "skipped",
            });
        }
        assert_eq!(outcomes, ["applied", "failed", "skipped"]);
        assert_eq!(hub.current_seq(), 10, "seq 11, handed over after the failure, is not applied");
        // A new connection's batches go on from the hub's seq.
        let mut batches = Batches { gathering: batch(11..=30), ..Batches::default() };
        assert!(batches.flush(&hub).await);
        assert_eq!(hub.current_seq(), 30);
    }
}
