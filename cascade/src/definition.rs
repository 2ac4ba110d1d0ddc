//! What a cascade is: a name, the upstream views it reads (in a fixed
//! order), and a pure reducer from their states to its own.

use std::sync::Arc;

use json_patch::PatchOperation;
use nodb_shared::Tree;

use crate::error::ConfigError;

/// The full reducer: the upstream states, in the declared order, to the
/// cascade's state.
pub type Reduce = Arc<dyn Fn(&[&Tree]) -> Tree + Send + Sync>;

/// The incremental reducer: the previous state, the upstream states and
/// what changed in each since the previous state, to the new state — or
/// `None` to fall back to the full reducer.
pub type Incremental = Arc<dyn Fn(&Tree, &[&Tree], &[Change<'_>]) -> Option<Tree> + Send + Sync>;

/// What happened to one upstream since the cascade's previous state.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// Nothing.
    Unchanged,
    /// These RFC 6902 operations, applied in order, took it there.
    Patched(&'a [PatchOperation]),
    /// It was replaced by a snapshot: anything may have changed.
    Replaced,
}

/// A cascaded view.
///
/// The reducer must be pure and deterministic — the same upstream states
/// give the same state, byte for byte, on every replica and after every
/// restart — and take time only from the upstream states, never from a
/// clock. An incremental reducer, where there is one, must give exactly
/// what the full one gives; it is only a shortcut.
#[derive(Clone)]
pub struct Cascade {
    /// The view's name, as in `/views/{name}`.
    pub name: String,
    /// The upstream views it reads, by name, in the order the reducer gets
    /// their states.
    pub upstreams: Vec<String>,
    reduce: Reduce,
    incremental: Option<Incremental>,
}

impl std::fmt::Debug for Cascade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cascade")
            .field("name", &self.name)
            .field("upstreams", &self.upstreams)
            .field("incremental", &self.incremental.is_some())
            .finish()
    }
}

impl Cascade {
    /// A cascade called `name` over `upstreams`, computed by `reduce`.
    pub fn new<S: Into<String>>(
        name: impl Into<String>,
        upstreams: impl IntoIterator<Item = S>,
        reduce: impl Fn(&[&Tree]) -> Tree + Send + Sync + 'static,
    ) -> Cascade {
        Cascade {
            name: name.into(),
            upstreams: upstreams.into_iter().map(Into::into).collect(),
            reduce: Arc::new(reduce),
            incremental: None,
        }
    }

    /// This cascade with an incremental reducer, used when the cascade has
    /// a previous state and every upstream change is a patch.
    #[must_use]
    pub fn with_incremental(
        mut self,
        incremental: impl Fn(&Tree, &[&Tree], &[Change<'_>]) -> Option<Tree> + Send + Sync + 'static,
    ) -> Cascade {
        self.incremental = Some(Arc::new(incremental));
        self
    }

    /// The state for these upstream states (the full reducer).
    pub fn reduce(&self, upstreams: &[&Tree]) -> Tree {
        (self.reduce)(upstreams)
    }

    /// The state after `changes`: the incremental reducer when there is a
    /// previous state, no upstream was replaced and it gives an answer;
    /// else the full one.
    pub fn update(&self, previous: Option<&Tree>, upstreams: &[&Tree], changes: &[Change<'_>]) -> Tree {
        if let (Some(previous), Some(incremental)) = (previous, &self.incremental)
            && !changes.iter().any(|c| matches!(c, Change::Replaced))
            && let Some(next) = incremental(previous, upstreams, changes)
        {
            return next;
        }
        self.reduce(upstreams)
    }

    /// Checks the name and the upstream names.
    ///
    /// # Errors
    /// [`ConfigError::BadName`] for a name that cannot be a URL segment,
    /// [`ConfigError::NoUpstreams`] when it reads nothing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for name in std::iter::once(&self.name).chain(&self.upstreams) {
            if !valid_name(name) {
                return Err(ConfigError::BadName(name.clone()));
            }
        }
        if self.upstreams.is_empty() {
            return Err(ConfigError::NoUpstreams(self.name.clone()));
        }
        Ok(())
    }
}

/// Whether `name` can be a view name: letters, digits, `_` and `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_incremental_path_is_used_only_when_it_can_be() {
        let c = Cascade::new("sum", ["a"], |s: &[&Tree]| Tree::from(s[0].as_u64().unwrap_or(0) * 2))
            .with_incremental(|_, _, _| Some(Tree::from("incremental")));
        let a = Tree::from(3);
        assert_eq!(c.update(None, &[&a], &[Change::Patched(&[])]), Tree::from(6));
        assert_eq!(c.update(Some(&Tree::Null), &[&a], &[Change::Replaced]), Tree::from(6));
        assert_eq!(c.update(Some(&Tree::Null), &[&a], &[Change::Unchanged]), Tree::from("incremental"));
        assert!(c.validate().is_ok());
        assert!(Cascade::new("a/b", ["x"], |_: &[&Tree]| Tree::Null).validate().is_err());
        assert!(Cascade::new("a", Vec::<String>::new(), |_: &[&Tree]| Tree::Null).validate().is_err());
        assert_eq!(Tree::from(json!(1)), Tree::from(1));
    }
}
