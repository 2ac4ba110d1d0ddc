//! [`App`]: what an application gives a data view — its views.
//!
//! The views of an app change together: every view's reducer sees every
//! action, and if any of them rejects it, no view changes (so an `activity`
//! view never records a sale that a `stock` view refused).

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

impl App {
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

    /// This app with every drafted view run as a pure reducer (its draft
    /// reducer on a copy of the state, the patch a diff): the engine
    /// before drafts, for comparisons.
    pub fn without_drafts(&self) -> App {
        let views = self.views.iter().map(|v| View { draft: None, ..v.clone() }).collect();
        App { name: self.name.clone(), views }
    }

    /// The index of the view called `name`.
    pub fn view_index(&self, name: &str) -> Option<usize> {
        self.views.iter().position(|v| v.name == name)
    }
}
