//! The reducer API: how an application says what its views are.
//!
//! A reducer is a pure function `(&Tree, &CommittedAction) -> Result<Tree,
//! Rejection>`: the state before an action and the action, to the state
//! after it — or a [`Rejection`] saying why the action means nothing here
//! (the chronicler recorded the intention; the reducer decides what it
//! means). Reducers build new states with the path API of
//! [`nodb_shared::Tree`], which shares every subtree they do not touch, and
//! take time only from the action's `ts`, never from a clock, so the same
//! history gives byte-identical states everywhere.
//!
//! [`combine`] composes slice reducers the way Redux's `combineReducers`
//! does; [`payload`] and [`typed`] read an action's payload into Rust types.

use std::fmt;
use std::sync::Arc;

use nodb_shared::Tree;
use nodb_shared::draft::{Draft, DraftError};
use nodb_shared::protocol::CommittedAction;
use nodb_shared::read_ahead::Reads;
use nodb_shared::tree::limits::Limits;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Why a reducer refused an action. The state stays as it was, and the
/// client that sent the action is told the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection(pub String);

impl Rejection {
    /// A rejection with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Rejection(reason.into())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Rejection {}

impl From<nodb_shared::PathError> for Rejection {
    fn from(e: nodb_shared::PathError) -> Self {
        Rejection(e.to_string())
    }
}

impl From<DraftError> for Rejection {
    fn from(e: DraftError) -> Self {
        Rejection(e.to_string())
    }
}

impl From<nodb_shared::patch::PatchError> for Rejection {
    fn from(e: nodb_shared::patch::PatchError) -> Self {
        Rejection(e.to_string())
    }
}

/// What a reducer returns.
pub type Reduced = Result<Tree, Rejection>;

/// A reducer as a shareable function object.
pub type Reducer = Arc<dyn Fn(&Tree, &CommittedAction) -> Reduced + Send + Sync>;

/// A reducer that edits its view's state in place through a [`Draft`],
/// which records the RFC 6902 operations it performs: `Ok` keeps the edits,
/// a [`Rejection`] (or a panic) undoes them.
pub type DraftReducer = Arc<dyn Fn(&mut Draft, &CommittedAction) -> Result<(), Rejection> + Send + Sync>;

/// A view's check of a state imported with `@@nodb/set_state`: `Ok` to
/// take it, or the [`Rejection`] saying why it is no state of this view.
pub type StateCheck = Arc<dyn Fn(&Tree) -> Result<(), Rejection> + Send + Sync>;

/// A view's hint of what an action will read: it adds those paths of the
/// view's state to the [`Reads`], and the engine reads them ahead of a
/// run of actions (see [`View::reading_ahead`]).
pub type ReadHint = Arc<dyn Fn(&CommittedAction, &mut Reads) + Send + Sync>;

/// One named view of an application: its initial state and its reducer.
#[derive(Clone)]
pub struct View {
    /// The view's name, as in `/views/{name}`.
    pub name: String,
    /// The state before any action.
    pub initial: Tree,
    /// The reducer, as a function from the state before to the state
    /// after (for a drafted view, its draft reducer run on a copy). The
    /// engine runs it only for a view without a `draft`.
    pub reducer: Reducer,
    /// The draft reducer of a view made with [`View::drafted`], which the
    /// engine runs in place of `reducer`, taking the seq's patch from its
    /// record, with no diff. (To give a drafted view another pure reducer,
    /// set this to `None` as well.)
    pub draft: Option<DraftReducer>,
    /// The view's own check of a state imported with `@@nodb/set_state`,
    /// in place of the default rule (the same kind of JSON value as
    /// `initial`); see [`View::with_check`].
    pub check: Option<StateCheck>,
    /// The view's hint of the paths an action will read, for a drafted
    /// view; see [`View::reading_ahead`].
    pub read_ahead: Option<ReadHint>,
}

impl View {
    /// A view called `name` starting at `initial`, changed by `reducer`.
    pub fn new(
        name: impl Into<String>,
        initial: Tree,
        reducer: impl Fn(&Tree, &CommittedAction) -> Reduced + Send + Sync + 'static,
    ) -> View {
        View { name: name.into(), initial, reducer: Arc::new(reducer), check: None, draft: None, read_ahead: None }
    }

    /// A view called `name` starting at `initial`, changed in place by
    /// `reducer` through a [`Draft`] — the fast form: the engine edits the
    /// state where it is (copying only what an older version still
    /// shares) and sends the operations the draft recorded as the seq's
    /// patch, so no structural diff is needed. Like any reducer it must be
    /// pure: the same state and action give the same edits, everywhere.
    pub fn drafted(
        name: impl Into<String>,
        initial: Tree,
        reducer: impl Fn(&mut Draft, &CommittedAction) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> View {
        let draft: DraftReducer = Arc::new(reducer);
        let run = draft.clone();
        let pure = move |state: &Tree, action: &CommittedAction| -> Reduced {
            let mut d = Draft::new(state.clone(), 0, Limits::NONE);
            run(&mut d, action)?;
            Ok(d.into_state())
        };
        View { name: name.into(), initial, reducer: Arc::new(pure), check: None, draft: Some(draft), read_ahead: None }
    }

    /// This view, deciding with `check` which states `@@nodb/set_state` may
    /// import: a refused one rejects the action and the state stays as it
    /// was. It replaces the default rule — the same kind of JSON value as
    /// the initial state — so a view that may hold any JSON value passes
    /// `|_| Ok(())`, and one with a stricter rule checks the kind itself.
    /// The check must be pure, like a reducer: replays run it again.
    #[must_use]
    pub fn with_check(mut self, check: impl Fn(&Tree) -> Result<(), Rejection> + Send + Sync + 'static) -> View {
        self.check = Some(Arc::new(check));
        self
    }

    /// This drafted view, naming with `hint` the paths of its state that
    /// an action will read (a product's entry in a big map, say). When
    /// the data view applies a batch in place (catching up, for an app
    /// whose views are all drafted), it reads the paths of the next eight
    /// actions together before running their reducers, so that the memory
    /// fetches the nodes of several searches at once rather than one after
    /// another, and the reducers find them in the cache. A hint changes no
    /// result: a path it gets wrong, or leaves out, only costs the reducer
    /// its own search, and a hint that panics is passed over for the rest
    /// of the batch. It must be cheap: it runs once per action, beside the
    /// reducer. A pure view's hint is never asked.
    #[must_use]
    pub fn reading_ahead(mut self, hint: impl Fn(&CommittedAction, &mut Reads) + Send + Sync + 'static) -> View {
        self.read_ahead = Some(Arc::new(hint));
        self
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("name", &self.name)
            .field("check", &self.check.is_some())
            .field("drafted", &self.draft.is_some())
            .field("reading_ahead", &self.read_ahead.is_some())
            .finish_non_exhaustive()
    }
}

/// Composes slice reducers into one reducer over an object whose keys are
/// the slices, like Redux's `combineReducers`. Each slice reducer sees only
/// its slice (its initial state when the key is missing); a slice that
/// returns the same node leaves the object untouched. If any slice rejects
/// the action, the whole action is rejected and nothing changes.
pub fn combine(slices: Vec<(String, Tree, Reducer)>) -> impl Fn(&Tree, &CommittedAction) -> Reduced + Send + Sync {
    let slices: Vec<(nodb_shared::Segment, Tree, Reducer)> =
        slices.into_iter().map(|(k, i, r)| (nodb_shared::Segment::Key(k.into()), i, r)).collect();
    move |state, action| {
        let mut next = state.clone();
        for (key, initial, reducer) in &slices {
            let existing = state.get(std::slice::from_ref(key));
            let current = existing.unwrap_or(initial);
            let updated = reducer(current, action)?;
            if existing.is_none() || !updated.ptr_eq(current) {
                next = next.set(std::slice::from_ref(key), updated)?;
            }
        }
        Ok(next)
    }
}

/// Reads an action's payload as `T`, which may borrow its strings from the
/// payload (`&'a str` fields: no copy of them is made).
///
/// # Errors
/// A [`Rejection`] naming the action type and what is wrong with the payload.
pub fn payload<'a, T: Deserialize<'a>>(action: &'a CommittedAction) -> Result<T, Rejection> {
    T::deserialize(&action.payload).map_err(|e| Rejection(format!("invalid payload for {}: {e}", action.kind)))
}

/// Reads an action as a typed enum: a serde enum tagged by `type` with its
/// `payload` as content, e.g.
///
/// ```
/// #[derive(serde::Deserialize)]
/// #[serde(tag = "type", content = "payload")]
/// enum Counter {
///     #[serde(rename = "counter/added")]
///     Added { by: i64 },
///     #[serde(other)]
///     Unknown,
/// }
/// ```
///
/// Give the enum a `#[serde(other)]` unit variant to ignore types it does
/// not know; a known type with a bad payload is a rejection.
///
/// # Errors
/// A [`Rejection`] naming the action type and what is wrong.
pub fn typed<A: DeserializeOwned>(action: &CommittedAction) -> Result<A, Rejection> {
    let envelope = serde_json::json!({"type": action.kind, "payload": action.payload});
    A::deserialize(&envelope).map_err(|e| Rejection(format!("invalid {} action: {e}", action.kind)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn act(kind: &str, payload: serde_json::Value) -> CommittedAction {
        CommittedAction { seq: 1, ts: 1000, id: "c:1".into(), kind: kind.into(), payload, meta: None, client: None }
    }

    #[derive(serde::Deserialize)]
    #[serde(tag = "type", content = "payload")]
    enum Counter {
        #[serde(rename = "counter/added")]
        Added { by: i64 },
        #[serde(other)]
        Unknown,
    }

    fn counter(state: &Tree, a: &CommittedAction) -> Reduced {
        match typed::<Counter>(a)? {
            Counter::Added { by } if by < 0 => Err(Rejection::new("cannot add a negative amount")),
            Counter::Added { by } => Ok(Tree::from(state.as_i64().unwrap_or(0) + by)),
            Counter::Unknown => Ok(state.clone()),
        }
    }

    #[test]
    fn typed_actions_ignore_unknown_types_and_reject_bad_payloads() {
        let s = Tree::from(1);
        assert_eq!(counter(&s, &act("counter/added", json!({"by": 2}))).unwrap(), Tree::from(3));
        assert!(counter(&s, &act("other/thing", json!(null))).unwrap().ptr_eq(&s));
        let err = counter(&s, &act("counter/added", json!({"by": "x"}))).unwrap_err();
        assert!(err.0.contains("counter/added"), "{err}");
    }

    #[test]
    fn combine_is_atomic_and_shares_untouched_slices() {
        let always_one: Reducer = Arc::new(|s: &Tree, _: &CommittedAction| Ok(s.clone()));
        let root =
            combine(vec![("a".into(), Tree::from(0), Arc::new(counter)), ("b".into(), Tree::object(), always_one)]);
        let s0 = Tree::object();
        let s1 = root(&s0, &act("counter/added", json!({"by": 5}))).unwrap();
        assert_eq!(s1, Tree::from(json!({"a": 5, "b": {}})));
        let s2 = root(&s1, &act("noise", json!(null))).unwrap();
        assert!(s2.ptr_eq(&s1) || s2 == s1);
        assert!(s2.get("/b").unwrap().ptr_eq(s1.get("/b").unwrap()));
        // A rejection in one slice rejects the action for all.
        assert!(root(&s1, &act("counter/added", json!({"by": -1}))).is_err());
    }
}
