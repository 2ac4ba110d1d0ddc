//! The `json` application: a general JSON document store.
//!
//! One view, `doc`, starting as `{}`. The action `json/patch` carries RFC
//! 6902 operations as its payload (an array); `test` operations give
//! optimistic concurrency. A failing patch is rejected and changes nothing.
//! The document may be any JSON value (a patch may replace its root), so
//! `@@nodb/set_state` may import any JSON value into it.
//!
//! The document is held to the tree limits (`nodb_shared::tree::limits`:
//! 64 levels, 256 MiB of JSON): a patch operation that would nest it
//! deeper, or copy more than that, fails like any other, and the engine
//! checks the patched document as a whole.

use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;

use crate::app::App;
use crate::reducer::{Reduced, Rejection, View, payload};

/// The application.
pub fn app() -> App {
    App { name: "json".into(), views: vec![View::new("doc", Tree::object(), reduce).with_check(|_| Ok(()))] }
}

/// The `doc` reducer.
///
/// # Errors
/// A rejection naming the failing operation, or a payload that is not a
/// JSON Patch.
pub fn reduce(state: &Tree, action: &CommittedAction) -> Reduced {
    if action.kind != "json/patch" {
        return Ok(state.clone());
    }
    let patch: json_patch::Patch = payload(action)?;
    nodb_shared::patch::apply(state, &patch).map_err(Rejection::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn act(kind: &str, payload: serde_json::Value) -> CommittedAction {
        CommittedAction { seq: 1, ts: 1, id: "c:1".into(), kind: kind.into(), payload, meta: None, client: None }
    }

    #[test]
    fn patches_apply_and_failing_ones_are_rejected() {
        let s = Tree::object();
        let s = reduce(&s, &act("json/patch", json!([{"op": "add", "path": "/n", "value": 1}]))).unwrap();
        assert_eq!(s, Tree::from(json!({"n": 1})));
        // Optimistic concurrency: the test op fails, nothing changes.
        let err = reduce(
            &s,
            &act(
                "json/patch",
                json!([{"op": "replace", "path": "/n", "value": 5}, {"op": "test", "path": "/n", "value": 2}]),
            ),
        )
        .unwrap_err();
        assert!(err.0.contains("operation 1") && err.0.contains("test"), "{err}");
        assert!(reduce(&s, &act("json/patch", json!({"not": "a patch"}))).unwrap_err().0.contains("json/patch"));
        assert!(reduce(&s, &act("stock/moved", json!({}))).unwrap().ptr_eq(&s));
    }
}
