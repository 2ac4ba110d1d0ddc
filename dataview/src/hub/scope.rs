//! Catch-up for a client whose token may read only a subtree of a view
//! (`read: ["orders/alice"]`): it is sent the subtree as its whole state —
//! a snapshot of the subtree, then patches rebased under it — and never an
//! operation outside it.
//!
//! The patches are the diff between the subtree before and after (the diff
//! stops at nodes the two share, so its cost follows the change inside the
//! subtree). A subtree that does not exist reads as `null`.

use super::states::Rebuild;
use super::{CatchUp, Hub, Plan, ServerMessage, Tree, diff, message};

/// What a subtree client is sent, with what gives the states it needs
/// (taken under the hub's lock, worked out after it).
enum Send {
    Nothing,
    Snapshot(Option<Rebuild>),
    /// A patch from the state it has (`from` the seq after it, if more
    /// than one) to the current one.
    Patch {
        from: Option<u64>,
        before: Option<Rebuild>,
        now: Option<Rebuild>,
    },
}

impl Hub {
    /// What a client of the subtree at `pointer` of view `view` that has
    /// seq `since` (`None`: nothing yet) should receive now, and the seq it
    /// will then have. The states are rebuilt, and the subtrees diffed,
    /// after the hub's lock is released.
    pub fn catch_up_subtree(&self, view: usize, pointer: &str, since: Option<u64>) -> (CatchUp, u64) {
        let (seq, send) = {
            let s = self.read();
            let rebuild = |seq: u64| s.rebuild_of(seq);
            let send = match s.history.plan(since) {
                Plan::NoState | Plan::Nothing => Send::Nothing,
                Plan::Snapshot { last, .. } => Send::Snapshot(rebuild(last.seq)),
                Plan::Next { prev, last } => {
                    Send::Patch { from: None, before: rebuild(prev.seq), now: rebuild(last.seq) }
                }
                Plan::Combined { base, last } => {
                    Send::Patch { from: Some(base.seq + 1), before: rebuild(base.seq), now: rebuild(last.seq) }
                }
            };
            (s.engine.seq(), send)
        };
        let at = |r: Option<Rebuild>| {
            subtree(r.and_then(Rebuild::run).as_ref().and_then(|states| states.get(view)), pointer)
        };
        let catch_up = match send {
            Send::Nothing => CatchUp::Nothing,
            Send::Snapshot(now) => {
                let version = self.version().map(str::to_string);
                CatchUp::Snapshot(message(&ServerMessage::Snapshot { seq, state: at(now), sources: None, version }))
            }
            Send::Patch { from, before, now } => {
                let ops = diff(&at(before), &at(now));
                let patch = message(&ServerMessage::Patch { from, seq, ops, sources: None });
                if from.is_some() { CatchUp::Combined(patch) } else { CatchUp::Patch(patch) }
            }
        };
        (catch_up, seq)
    }
}

/// The subtree of `state` at `pointer`, `null` where there is none.
pub fn subtree(state: Option<&Tree>, pointer: &str) -> Tree {
    state.and_then(|t| t.lookup(pointer).ok()).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use nodb_shared::protocol::CommittedAction;
    use serde_json::{Value, json};

    use crate::hub::Hub;

    fn set(seq: u64, pointer: &str, value: Value) -> CommittedAction {
        serde_json::from_value(json!({
            "seq": seq, "ts": 0, "id": format!("c:{seq}"), "type": "json/patch",
            "payload": [{"op": "add", "path": pointer, "value": value}],
        }))
        .unwrap()
    }

    fn parse(c: nodb_viewserver::CatchUp) -> Value {
        serde_json::from_slice(&c.into_message().unwrap()).unwrap()
    }

    /// A subtree client sees its subtree only: a snapshot of it, patches
    /// rebased under it, empty patches for changes elsewhere, and the
    /// whole subtree replaced when an ancestor changes.
    #[test]
    fn a_subtree_client_sees_only_its_subtree() {
        let hub = Hub::new(crate::engine::Engine::new(crate::json_doc::app()), 16);
        hub.apply(&set(1, "/alice", json!({"cart": []}))).unwrap();
        hub.apply(&set(2, "/bob", json!({"secret": 1}))).unwrap();
        let (c, seq) = hub.catch_up_subtree(0, "/alice", None);
        assert_eq!((parse(c), seq), (json!({"type": "snapshot", "seq": 2, "state": {"cart": []}}), 2));
        hub.apply(&set(3, "/alice/cart/0", json!("apple"))).unwrap();
        let (c, _) = hub.catch_up_subtree(0, "/alice", Some(2));
        assert_eq!(
            parse(c),
            json!({"type": "patch", "seq": 3, "ops": [{"op": "add", "path": "/cart/-", "value": "apple"}]})
        );
        hub.apply(&set(4, "/bob/secret", json!(2))).unwrap();
        let (c, _) = hub.catch_up_subtree(0, "/alice", Some(3));
        assert_eq!(parse(c), json!({"type": "patch", "seq": 4, "ops": []}), "nothing of bob's leaks");
        hub.apply(&set(5, "", json!({"alice": {"cart": ["pear"]}}))).unwrap();
        let (c, _) = hub.catch_up_subtree(0, "/alice", Some(3));
        let m = parse(c);
        assert_eq!((m["from"].as_u64(), m["seq"].as_u64()), (Some(4), Some(5)));
        let mut doc = json!({"cart": ["apple"]});
        json_patch::patch(&mut doc, &serde_json::from_value::<json_patch::Patch>(m["ops"].clone()).unwrap()).unwrap();
        assert_eq!(doc, json!({"cart": ["pear"]}));
        let (c, _) = hub.catch_up_subtree(0, "/carol", None);
        assert_eq!(parse(c)["state"], Value::Null, "a missing subtree reads as null");
    }
}
