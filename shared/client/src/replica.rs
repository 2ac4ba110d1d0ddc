//! [`Replica`]: a view's state kept from its stream's `snapshot` and
//! `patch` messages, checking that each patch starts right after the
//! replica's seq and applies. No I/O: [`crate::ViewFollower`] feeds it
//! from a connection, and tests feed it by hand.

use json_patch::Patch;
use nodb_shared::Tree;
use nodb_shared::patch::apply;
use nodb_shared::protocol::{ServerMessage, Sources};

/// A replica of one view's state.
#[derive(Clone, Debug, Default)]
pub struct Replica {
    /// The seq and state, once there is one.
    current: Option<(u64, Tree)>,
    /// The view's `sources`, for a cascaded view.
    sources: Option<Sources>,
    /// Whether the next message must be a snapshot (a stream opened
    /// without `since` starts with one).
    expect_snapshot: bool,
    /// Whether each patch must cover one seq (an exact stream).
    exact: bool,
    /// The version of the code that made the state, as the last snapshot
    /// named it.
    version: Option<String>,
}

/// How a message changed the replica.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A snapshot replaced the state.
    Replaced,
    /// These operations took the state from the previous seq to the new.
    Patched(Patch),
}

/// The replica after a message that changed its seq.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The first seq the message covers (the seq itself, for a snapshot or
    /// a patch of one seq).
    pub from: u64,
    /// The replica's new seq.
    pub seq: u64,
    /// The new state (a cheap clone of the replica's).
    pub state: Tree,
    /// How it got there.
    pub change: Change,
}

/// Why the replica cannot take a message: it must resync from a snapshot.
/// Nothing of the message was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// A patch when a snapshot was due (the stream's first message, or the
    /// replica has no state yet).
    #[error("a patch for seq {seq} before the snapshot the stream starts with")]
    PatchBeforeSnapshot {
        /// The patch's seq.
        seq: u64,
    },
    /// A patch that does not start right after the replica's seq.
    #[error("a patch for seqs {from}..={seq} when the replica is at seq {at}")]
    Gap {
        /// The replica's seq.
        at: u64,
        /// The first seq the patch covers.
        from: u64,
        /// Its last seq.
        seq: u64,
    },
    /// On an exact stream, a patch covering several seqs.
    #[error("the exact stream sent seqs {from}..={seq} in one message; it must send each seq alone")]
    Combined {
        /// The first seq covered.
        from: u64,
        /// The last.
        seq: u64,
    },
    /// A patch whose operations fail on the replica's state.
    #[error("the patch for seq {seq} does not apply: {reason}")]
    DoesNotApply {
        /// The patch's seq.
        seq: u64,
        /// Which operation failed, and why.
        reason: String,
    },
}

impl Replica {
    /// An empty replica, waiting for a snapshot.
    pub fn new() -> Replica {
        Replica { expect_snapshot: true, ..Replica::default() }
    }

    /// A replica that starts from `state` at `seq` (read with `?at`, say),
    /// to follow a stream opened with `since = seq`.
    pub fn at(seq: u64, state: Tree) -> Replica {
        Replica { current: Some((seq, state)), ..Replica::default() }
    }

    /// The same, refusing patches that cover more than one seq (for an
    /// exact stream, where each seq's change must stand alone).
    pub fn exact(mut self) -> Replica {
        self.exact = true;
        self
    }

    /// The replica's seq; `None` before its first state.
    pub fn seq(&self) -> Option<u64> {
        self.current.as_ref().map(|(seq, _)| *seq)
    }

    /// The replica's state; `None` before its first.
    pub fn state(&self) -> Option<&Tree> {
        self.current.as_ref().map(|(_, state)| state)
    }

    /// The view's `sources` (a cascaded view's upstream seqs), as last sent.
    pub fn sources(&self) -> Option<&Sources> {
        self.sources.as_ref()
    }

    /// The version of the code that made the state, as the last snapshot
    /// named it: sent back when resuming (`version=`), so a data view
    /// running other code answers with a snapshot.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Says that the next message must be a snapshot: the stream was
    /// (re)opened without `since`.
    pub fn expect_snapshot(&mut self) {
        self.expect_snapshot = true;
    }

    /// Applies a `snapshot` or `patch` message; other messages change
    /// nothing (`Ok(None)`).
    ///
    /// # Errors
    /// [`ReplicaError`] when the message cannot follow the replica's state;
    /// the replica is unchanged and should resync from a snapshot.
    pub fn apply(&mut self, message: ServerMessage) -> Result<Option<Update>, ReplicaError> {
        let (from, seq, state, change, sources) = match message {
            ServerMessage::Snapshot { seq, state, sources, version } => {
                self.version = version;
                (seq, seq, state, Change::Replaced, sources)
            }
            ServerMessage::Patch { from, seq, ops, sources } => {
                let Some((at, state)) = self.current.as_ref().filter(|_| !self.expect_snapshot) else {
                    return Err(ReplicaError::PatchBeforeSnapshot { seq });
                };
                let first = from.unwrap_or(seq);
                if at.checked_add(1) != Some(first) || seq < first {
                    return Err(ReplicaError::Gap { at: *at, from: first, seq });
                }
                if self.exact && first != seq {
                    return Err(ReplicaError::Combined { from: first, seq });
                }
                let next = apply(state, &ops).map_err(|e| ReplicaError::DoesNotApply { seq, reason: e.to_string() })?;
                (first, seq, next, Change::Patched(ops), sources)
            }
            _ => return Ok(None),
        };
        if sources.is_some() {
            self.sources = sources;
        }
        self.expect_snapshot = false;
        self.current = Some((seq, state.clone()));
        Ok(Some(Update { from, seq, state, change }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(v: serde_json::Value) -> ServerMessage {
        serde_json::from_value(v).unwrap()
    }

    fn patch(from: Option<u64>, seq: u64, ops: serde_json::Value) -> ServerMessage {
        let mut m = json!({"type": "patch", "seq": seq, "ops": ops});
        if let Some(f) = from {
            m["from"] = json!(f);
        }
        message(m)
    }

    #[test]
    fn follows_snapshots_and_contiguous_patches_and_refuses_the_rest() {
        let mut r = Replica::new();
        assert_eq!(r.apply(patch(None, 1, json!([]))), Err(ReplicaError::PatchBeforeSnapshot { seq: 1 }));
        let snapshot = message(json!({"type": "snapshot", "seq": 4, "state": {"a": 1}, "sources": {"up": 9}}));
        let u = r.apply(snapshot).unwrap().unwrap();
        assert_eq!((u.from, u.seq, u.change), (4, 4, Change::Replaced));
        assert_eq!(r.sources().unwrap()["up"], 9);
        let add = json!([{"op": "add", "path": "/b", "value": 2}]);
        let u = r.apply(patch(Some(5), 7, add)).unwrap().unwrap();
        assert_eq!((u.from, u.seq), (5, 7));
        assert_eq!(r.state(), Some(&Tree::from(json!({"a": 1, "b": 2}))));
        assert_eq!(r.apply(patch(None, 9, json!([]))), Err(ReplicaError::Gap { at: 7, from: 9, seq: 9 }));
        assert!(r.apply(patch(Some(9), 8, json!([]))).is_err(), "from after seq");
        let bad = r.apply(patch(None, 8, json!([{"op": "remove", "path": "/nothing"}]))).unwrap_err();
        assert!(bad.to_string().contains("the patch for seq 8 does not apply"), "{bad}");
        let rejected = message(json!({"type": "rejected", "seq": 3, "id": "c:1", "reason": "x"}));
        assert_eq!(r.apply(rejected), Ok(None));
        // Nothing bad was applied.
        assert_eq!(r.seq(), Some(7));
        assert_eq!(r.sources().unwrap()["up"], 9, "sources stay until a message brings new ones");
        // Reopened without `since`: a snapshot must come first.
        r.expect_snapshot();
        assert_eq!(r.apply(patch(None, 8, json!([]))), Err(ReplicaError::PatchBeforeSnapshot { seq: 8 }));
        assert!(r.apply(message(json!({"type": "snapshot", "seq": 2, "state": null}))).is_ok());
        assert_eq!(r.seq(), Some(2));
    }

    #[test]
    fn an_exact_replica_takes_one_seq_per_patch() {
        let mut r = Replica::at(10, Tree::from(json!({"n": 0}))).exact();
        let set = |n: u64| json!([{"op": "replace", "path": "/n", "value": n}]);
        let u = r.apply(patch(None, 11, set(1))).unwrap().unwrap();
        assert_eq!(u.change, Change::Patched(serde_json::from_value(set(1)).unwrap()));
        assert!(r.apply(patch(Some(11), 11, set(1))).is_err(), "a gap: 11 again");
        assert!(r.apply(patch(Some(12), 12, set(2))).is_ok(), "from == seq is one seq");
        assert_eq!(r.apply(patch(Some(13), 14, set(3))), Err(ReplicaError::Combined { from: 13, seq: 14 }));
        assert_eq!(r.state(), Some(&Tree::from(json!({"n": 2}))));
    }
}
