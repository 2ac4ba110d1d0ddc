//! The built-in applications, chosen with `--app`.
//!
//! An [`App`] is a list of views. Its views change together: every view's
//! reducer sees every action, and if any of them rejects it, no view
//! changes (so the `activity` view never records a sale that the `stock`
//! view refused).

pub mod json_doc;
pub mod reorder;
pub mod sales;
pub mod warehouse;

use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;

use crate::reducer::{Rejection, View};

/// An application: named views over one history.
#[derive(Clone, Debug)]
pub struct App {
    /// The name given to `--app`.
    pub name: String,
    /// Its views, in a fixed order.
    pub views: Vec<View>,
}

/// The names of the built-in applications.
pub const BUILT_IN: &[&str] = &["warehouse", "json"];

/// The applications a `nodb` binary can run with `--app NAME`: the built-in
/// ones plus any an application adds (see `docs/apps.md`).
#[derive(Clone)]
pub struct Registry {
    apps: Vec<(String, fn() -> App)>,
}

impl Registry {
    /// The built-in applications.
    pub fn built_in() -> Registry {
        Registry { apps: vec![("warehouse".into(), warehouse::app as fn() -> App), ("json".into(), json_doc::app)] }
    }

    /// This registry with one more application (replacing one of that name).
    #[must_use]
    pub fn with(mut self, name: &str, make: fn() -> App) -> Registry {
        self.apps.retain(|(n, _)| n != name);
        self.apps.push((name.to_string(), make));
        self
    }

    /// The application called `name`.
    pub fn get(&self, name: &str) -> Option<App> {
        self.apps.iter().find(|(n, _)| n == name).map(|(_, make)| make())
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.apps.iter().map(|(n, _)| n.as_str()).collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("apps", &self.names()).finish()
    }
}

impl App {
    /// The built-in application called `name`.
    pub fn built_in(name: &str) -> Option<App> {
        Registry::built_in().get(name)
    }

    /// Every view's state before any action.
    pub fn initial_states(&self) -> Vec<Tree> {
        self.views.iter().map(|v| v.initial.clone()).collect()
    }

    /// Applies `action` to every view's state: the new states, or the first
    /// rejection (and then no view changes).
    ///
    /// # Errors
    /// The [`Rejection`] of the first view that refused the action.
    pub fn reduce(&self, states: &[Tree], action: &CommittedAction) -> Result<Vec<Tree>, Rejection> {
        self.views.iter().zip(states).map(|(view, state)| (view.reducer)(state, action)).collect()
    }

    /// The index of the view called `name`.
    pub fn view_index(&self, name: &str) -> Option<usize> {
        self.views.iter().position(|v| v.name == name)
    }
}
