//! What an application writes to define an envoy: a name, a trigger and a
//! handler that performs the effect and returns the result actions.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use nodb_shared::Tree;
use serde_json::Value;

use crate::effects::Effects;

/// Settings an app's envoys read (`--set key=value`).
pub type Config = BTreeMap<String, String>;

/// A result action, numbered and sent by the runtime as the envoy's client.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultAction {
    /// Its type.
    pub kind: String,
    /// Its payload.
    pub payload: Value,
}

impl ResultAction {
    /// A result action of type `kind` with `payload`.
    pub fn new(kind: impl Into<String>, payload: Value) -> ResultAction {
        ResultAction { kind: kind.into(), payload }
    }
}

/// What triggered an effect.
#[derive(Clone, Debug)]
pub struct Event {
    /// The seq that caused it: the triggering action, or the view update
    /// where the condition became true.
    pub cause: u64,
    /// For a view condition, the key that became true (a product, say).
    pub key: Option<String>,
    /// For an action trigger, the committed action as JSON.
    pub action: Option<Value>,
    /// For a view condition, the selector's value for `key` at `cause`.
    pub data: Option<Tree>,
    /// `<envoy>:<cause>` (with `:<key>` when several keys became true at the
    /// same seq): the same on every retry and after a restart, so the other
    /// side can recognise a repeated call.
    pub idempotency_key: String,
}

/// Picks, from a view's state, the keys for which the condition holds,
/// with a value for each; the envoy fires for each key that enters the set.
pub type Selector = Arc<dyn Fn(&Tree) -> BTreeMap<String, Tree> + Send + Sync>;

/// For one entry of a collection in a view's state, its value when the
/// condition holds for it (`None` when it does not).
pub type Pick = Arc<dyn Fn(&Tree) -> Option<Tree> + Send + Sync>;

/// Performs one effect and returns the result actions to record (at least
/// one, or the event is handled again after a restart).
pub type Handler = Arc<dyn Fn(Event, Effects) -> BoxFuture<'static, Vec<ResultAction>> + Send + Sync>;

/// What makes an envoy act.
#[derive(Clone)]
pub enum Trigger {
    /// Committed actions whose type starts with one of these prefixes, read
    /// from the chronicler's stream.
    Types(Vec<String>),
    /// A condition on a data view's state, read from the view's stream:
    /// fires on the transition from false to true of each key. The selector
    /// sees the whole state at every seq, so its cost grows with the state;
    /// for a condition on each entry of a collection, [`Trigger::Entries`]
    /// costs only what each seq changed.
    View {
        /// The view's name.
        view: String,
        /// The condition.
        select: Selector,
    },
    /// A condition on each entry of a collection (an object) in a data
    /// view's state, such as each product of `/products`: fires for each key
    /// whose entry turns the condition true. Only the entries a seq's patch
    /// touches are looked at again.
    Entries {
        /// The view's name.
        view: String,
        /// The collection, as a JSON Pointer (`/products`).
        under: String,
        /// The condition on one entry, and its value for the handler.
        pick: Pick,
    },
}

impl Trigger {
    /// The view a view trigger watches.
    pub fn view(&self) -> Option<&str> {
        match self {
            Trigger::Types(_) => None,
            Trigger::View { view, .. } | Trigger::Entries { view, .. } => Some(view),
        }
    }
}

/// An envoy.
#[derive(Clone)]
pub struct Envoy {
    /// Its name; it dispatches as the client `envoy-<name>`.
    pub name: String,
    /// What makes it act.
    pub trigger: Trigger,
    /// The effect.
    pub handler: Handler,
    /// How many effects may run at once. 1 (the default) runs them in
    /// order; more declares them independent. Results are recorded in the
    /// order of their causes either way.
    pub concurrency: usize,
}

impl Envoy {
    /// An envoy that runs its effects one at a time, in order.
    pub fn new(name: impl Into<String>, trigger: Trigger, handler: Handler) -> Envoy {
        Envoy { name: name.into(), trigger, handler, concurrency: 1 }
    }

    /// Declares the effects independent: up to `n` run at once.
    #[must_use]
    pub fn independent(mut self, n: usize) -> Envoy {
        self.concurrency = n.max(1);
        self
    }

    /// The client id it dispatches as.
    pub fn client(&self) -> String {
        format!("envoy-{}", self.name)
    }
}
