//! The errors a caller of this crate can get.

/// Why cascades cannot start as configured. Each message is a sentence
/// that says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A cascade or upstream name that cannot be a URL segment.
    #[error("{0:?} cannot be a view name: use letters, digits, `_` and `-`")]
    BadName(String),
    /// A cascade that reads no upstream.
    #[error("the cascade {0:?} reads no upstream view")]
    NoUpstreams(String),
    /// Two cascades with one name.
    #[error("two cascades are called {0:?}")]
    Duplicate(String),
    /// Nothing to run.
    #[error("there are no cascades to run")]
    Empty,
    /// An upstream with no URL.
    #[error(
        "the cascade {cascade:?} reads the view {upstream:?}: say where it is with --upstream {upstream}=http://HOST:PORT"
    )]
    MissingUpstream {
        /// The cascade.
        cascade: String,
        /// The upstream view it reads.
        upstream: String,
    },
    /// An upstream URL that is not `http://host:port[/prefix]`.
    #[error("the URL of upstream {upstream:?} must look like http://HOST:PORT (got {url:?})")]
    BadUrl {
        /// The upstream view.
        upstream: String,
        /// The URL given.
        url: String,
    },
    /// A setting out of range.
    #[error("{0}")]
    Setting(String),
}
