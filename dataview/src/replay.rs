//! Healing: replay the history with this binary's reducers and compare each
//! view, seq by seq, with a running data view (the old code).
//!
//! The new states come from an in-process [`Engine`] fed by the
//! chronicler's action stream; the old ones from the running data view's
//! exact stream (`?exact=true`: one patch per seq) applied to a replica.
//! Comparing whole states at every seq would cost the size of the state per
//! seq, so [`Differences`] compares only where something changed: the paths
//! either side's patch touched, plus the paths known to differ so far. That
//! is exact, because both sides start equal (or are compared whole once)
//! and a patch changes nothing outside the paths it names.

use std::collections::BTreeSet;
use std::time::Instant;

use futures_util::StreamExt;
use nodb_client::{Chronicler, Replica, ServiceUrl, StreamOptions, ViewClient, ViewStream};
use nodb_shared::Tree;
use nodb_shared::protocol::{CommittedAction, ServerMessage};

use crate::app::App;
use crate::engine::{Diffs, Engine, EngineError};
use crate::follow::committed;
use crate::history::{History, HistoryError, HistorySettings};

/// What to replay and compare.
#[derive(Clone, Debug)]
pub struct ReplaySettings {
    /// The first seq to compare (the replay itself always starts at seq 1).
    pub from: u64,
    /// The last seq; `None`: the chronicler's head when the replay starts.
    pub to: Option<u64>,
}

/// How one view compares.
#[derive(Clone, Debug)]
pub struct ViewReport {
    /// The view's name.
    pub view: String,
    /// How many seqs in the compared range leave the two states different.
    pub differing: u64,
    /// The first seq where they differ, if any.
    pub first: Option<FirstDifference>,
    /// The new state's hash at the last seq.
    pub hash: String,
}

/// The first seq at which a view's old and new states differ.
#[derive(Clone, Debug)]
pub struct FirstDifference {
    /// The seq.
    pub seq: u64,
    /// The action at that seq.
    pub action: CommittedAction,
    /// The RFC 6902 patch from the old state to the new one at that seq.
    pub diff: json_patch::Patch,
}

/// The outcome of a replay.
#[derive(Clone, Debug)]
pub struct Report {
    /// The last seq replayed.
    pub through: u64,
    /// Actions replayed.
    pub actions: u64,
    /// How long the replay took, in seconds.
    pub seconds: f64,
    /// One report per view (compared only with a running data view).
    pub views: Vec<ViewReport>,
    /// Whether the views were compared with a running data view.
    pub compared: bool,
}

impl Report {
    /// Whether every view is identical through the last seq.
    pub fn identical(&self) -> bool {
        self.views.iter().all(|v| v.differing == 0)
    }
}

/// Why a replay could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The chronicler or the running data view could not be read.
    #[error(transparent)]
    Client(#[from] nodb_client::Error),
    /// The running data view sent something other than one patch per seq.
    #[error("the running data view's stream of view {view:?}: {reason}")]
    Stream {
        /// The view.
        view: String,
        /// What went wrong.
        reason: String,
    },
    /// The action stream skipped or repeated a seq.
    #[error("the chronicler's stream skipped a seq: {0}")]
    Engine(#[from] crate::engine::EngineError),
    /// The stream ended before the last seq.
    #[error("the chronicler's stream ended at seq {0}, before the last seq to replay")]
    Ended(u64),
    /// The views could not be rebuilt at a redaction.
    #[error("cannot rebuild the views at a redaction: {0}")]
    Rebuild(#[from] HistoryError),
}

/// Replays the history from the chronicler through `app`'s reducers, and
/// with `against`, compares every view at every seq from `settings.from`
/// with the data view there.
///
/// # Errors
/// [`ReplayError`] when the chronicler or the data view cannot be read.
pub async fn replay(
    app: App,
    chronicler: &Chronicler,
    against: Option<&ServiceUrl>,
    settings: &ReplaySettings,
) -> Result<Report, ReplayError> {
    let to = match settings.to {
        Some(to) => to,
        None => chronicler.head().await?,
    };
    let names: Vec<String> = app.views.iter().map(|v| v.name.clone()).collect();
    // A redaction rebuilds the views from the start (there are no
    // snapshots here), the way a data view does from its checkpoints.
    let past = History::new(app.clone(), None, chronicler.url().clone(), HistorySettings::default());
    let mut engine = Engine::new(app);
    let from = settings.from.max(1);
    let mut old: Vec<OldView> = Vec::new();
    let started = Instant::now();
    let mut actions = 0;
    let mut stream = if to == 0 { None } else { Some(chronicler.stream(1, Some(to), &[]).await?) };
    while engine.seq() < to {
        // Up to the first compared seq, only the new states are needed.
        if engine.seq() + 1 == from
            && let Some(url) = against
        {
            old = open_old(url, &names, &engine, from - 1).await?;
        }
        let line = match stream.as_mut() {
            Some(s) => s.next().await,
            None => None,
        };
        let Some(line) = line else { return Err(ReplayError::Ended(engine.seq())) };
        let Some(action) = committed(line?) else { continue };
        let comparing = !old.is_empty();
        let patches = match engine.apply_with(&action, if comparing { Diffs::Compute } else { Diffs::Nothing }) {
            Ok(applied) => applied.patches,
            Err(EngineError::Rebuild { redaction, .. }) => {
                let before = engine.redactions().clone();
                let (after, first) = before.with(*redaction).map_err(|e| HistoryError::Replay(e.to_string()))?;
                let states = match first {
                    Some(first) => past.rebuild(action.seq, &before, &after, first).await?.states,
                    None => engine.states().to_vec(),
                };
                let rebuilt = Engine::restore(engine.app().clone(), action.seq, states).with_redactions(after);
                let old = std::mem::replace(&mut engine, rebuilt);
                old.states().iter().zip(engine.states()).map(|(o, n)| nodb_shared::diff::diff(o, n)).collect()
            }
            Err(e) => return Err(e.into()),
        };
        actions += 1;
        for (i, view) in old.iter_mut().enumerate() {
            let ops = view.next(action.seq).await?;
            let new_state = &engine.states()[i];
            let new_ops = patches.get(i).map_or(&[][..], |p| &p.0[..]);
            if view.differences.after(view.replica.state().unwrap_or(&Tree::Null), new_state, &ops, new_ops) {
                view.differing += 1;
                if view.first.is_none() {
                    let old_state = view.replica.state().cloned().unwrap_or(Tree::Null);
                    let diff = nodb_shared::diff::diff(&old_state, new_state);
                    view.first = Some(FirstDifference { seq: action.seq, action: action.clone(), diff });
                }
            }
        }
    }
    let compared = !old.is_empty();
    let views = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let hash = crate::hub::hash(&engine.states()[i]);
            match old.get_mut(i) {
                Some(v) => ViewReport { view: name.clone(), differing: v.differing, first: v.first.take(), hash },
                None => ViewReport { view: name.clone(), differing: 0, first: None, hash },
            }
        })
        .collect();
    Ok(Report { through: engine.seq(), actions, seconds: started.elapsed().as_secs_f64(), views, compared })
}

/// One view of the running data view, followed seq by seq.
struct OldView {
    name: String,
    stream: ViewStream,
    replica: Replica,
    differences: Differences,
    differing: u64,
    first: Option<FirstDifference>,
}

impl OldView {
    /// The old view's operations for `seq`.
    async fn next(&mut self, seq: u64) -> Result<Vec<json_patch::PatchOperation>, ReplayError> {
        let bad = |reason: String| ReplayError::Stream { view: self.name.clone(), reason };
        loop {
            let message = self.stream.next_message().await?;
            match &message {
                ServerMessage::Patch { seq: got, from: None, ops, .. } if *got == seq => {
                    let ops = ops.0.clone();
                    self.replica.apply(message).map_err(|e| bad(e.to_string()))?;
                    return Ok(ops);
                }
                ServerMessage::Patch { .. } | ServerMessage::Snapshot { .. } => {
                    return Err(bad(format!("expected the patch of seq {seq} alone, got {message:?}")));
                }
                ServerMessage::Error { message, .. } => return Err(bad(message.clone())),
                _ => {}
            }
        }
    }
}

/// Opens every view's exact stream after `seq`, starting from its state at
/// `seq` (`?at`), and compares that state with the engine's whole.
async fn open_old(url: &ServiceUrl, names: &[String], engine: &Engine, seq: u64) -> Result<Vec<OldView>, ReplayError> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let client = ViewClient::new(url.clone(), name);
        let at = client.state_at(seq).await?;
        let stream = client.open(&StreamOptions { since: Some(seq), exact: true, ..StreamOptions::default() }).await?;
        let mut differences = Differences::default();
        differences.start(&at.state, &engine.states()[i]);
        let replica = Replica::at(seq, at.state).exact();
        out.push(OldView { name: name.clone(), stream, replica, differences, differing: 0, first: None });
    }
    Ok(out)
}

/// Where two states known to have been equal outside some paths differ:
/// the smallest set of JSON Pointers whose subtrees differ.
#[derive(Clone, Debug, Default)]
pub struct Differences {
    differ: BTreeSet<String>,
}

/// Whether pointer `a` is `b` or an ancestor of it.
fn covers(a: &str, b: &str) -> bool {
    b == a || (b.starts_with(a) && b.as_bytes().get(a.len()) == Some(&b'/'))
}

fn touched(ops: &[json_patch::PatchOperation]) -> impl Iterator<Item = String> + '_ {
    use json_patch::PatchOperation as Op;
    ops.iter().flat_map(|op| match op {
        Op::Add(o) => vec![o.path.to_string()],
        Op::Remove(o) => vec![o.path.to_string()],
        Op::Replace(o) => vec![o.path.to_string()],
        Op::Move(o) => vec![o.from.to_string(), o.path.to_string()],
        Op::Copy(o) => vec![o.path.to_string()],
        Op::Test(_) => vec![],
    })
}

impl Differences {
    /// Starts from two states compared whole.
    pub fn start(&mut self, old: &Tree, new: &Tree) {
        self.differ.clear();
        if old != new {
            self.differ.insert(String::new());
        }
    }

    /// After one seq: `old` and `new` are the states once `old_ops` and
    /// `new_ops` took them there. Returns whether they differ.
    pub fn after(
        &mut self,
        old: &Tree,
        new: &Tree,
        old_ops: &[json_patch::PatchOperation],
        new_ops: &[json_patch::PatchOperation],
    ) -> bool {
        let touched: Vec<String> = touched(old_ops).chain(touched(new_ops)).collect();
        if touched.is_empty() {
            return !self.differ.is_empty();
        }
        // Differences can now lie only under the paths known to differ and
        // the paths touched; of those related to a touch, keep the
        // outermost and compare them again.
        let related = |p: &String| touched.iter().any(|t| covers(p, t) || covers(t, p));
        let mut candidates: Vec<String> = self.differ.iter().filter(|p| related(p)).cloned().collect();
        candidates.extend(touched.iter().cloned());
        candidates.sort();
        candidates.dedup();
        let outer: Vec<String> =
            candidates.iter().filter(|p| !candidates.iter().any(|q| q != *p && covers(q, p))).cloned().collect();
        self.differ.retain(|p| !related(p));
        for p in outer {
            if old.get(p.as_str()) != new.get(p.as_str()) {
                self.differ.insert(p);
            }
        }
        !self.differ.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn tree(v: serde_json::Value) -> Tree {
        serde_json::from_value(v).unwrap()
    }

    /// Random small edits to a small document.
    fn edits() -> impl Strategy<Value = Vec<(u8, u8, i64)>> {
        proptest::collection::vec((0u8..4, 0u8..4, 0i64..3), 0..30)
    }

    fn edit(doc: &Tree, (kind, key, value): (u8, u8, i64)) -> Tree {
        let path = format!("/k{}/v{}", key % 2, key);
        match kind {
            0 => doc.set(path.as_str(), Tree::from(json!(value))).unwrap_or_else(|_| doc.clone()),
            1 => doc.remove(path.as_str()).unwrap_or_else(|_| doc.clone()),
            2 => doc.set(format!("/k{}", key % 2).as_str(), Tree::from(json!({"x": value}))).unwrap(),
            _ => doc.clone(),
        }
    }

    proptest! {
        /// Tracking only the touched paths tells equal from different
        /// exactly as comparing the whole states would.
        #[test]
        fn touched_paths_decide_like_whole_states(a in edits(), b in edits()) {
            let start = tree(json!({"k0": {}, "k1": {}}));
            let (mut old, mut new) = (start.clone(), start.clone());
            let mut d = Differences::default();
            d.start(&old, &new);
            for i in 0..a.len().max(b.len()) {
                let o = a.get(i).map_or(old.clone(), |e| edit(&old, *e));
                let n = b.get(i).map_or(new.clone(), |e| edit(&new, *e));
                let (po, pn) = (nodb_shared::diff::diff(&old, &o), nodb_shared::diff::diff(&new, &n));
                (old, new) = (o, n);
                prop_assert_eq!(d.after(&old, &new, &po.0, &pn.0), old != new, "step {}", i);
            }
        }
    }

    #[test]
    fn pointers_cover_their_descendants_only() {
        assert!(covers("", "/a"));
        assert!(covers("/a", "/a/b"));
        assert!(covers("/a", "/a"));
        assert!(!covers("/a", "/ab"));
        assert!(!covers("/a/b", "/a"));
    }
}
