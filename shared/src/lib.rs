//! nodb's core, shared by every part. No I/O happens here.
//!
//! # Modules
//!
//! - [`tree`]: [`Tree`], the persistent JSON value (on `imbl`) that
//!   reducers transform; O(1) clones, structural sharing, deterministic
//!   serialisation.
//! - [`mod@path`] and [`edit`]: JSON Pointers and lists of keys, and the
//!   Immutable.js-style path API (`get`, `set`, `update`, `remove`,
//!   `merge`, `push`) that returns new trees sharing what they did not touch.
//! - [`diff`]: the RFC 6902 patch between two trees, in time proportional to
//!   the change when one was derived from the other.
//! - [`patch`]: applying an RFC 6902 patch to a tree, atomically.
//! - [`protocol`]: the wire types of DESIGN.md's contract.
//!
//! # How data flows
//!
//! A reducer takes the current [`Tree`] and a
//! [`CommittedAction`](protocol::CommittedAction) and returns a new tree
//! built with the path API. The data view calls [`diff::diff`] on the old
//! and new tree and sends the resulting patch to clients in a
//! [`ServerMessage::Patch`](protocol::ServerMessage); clients (and cascaded
//! views) apply it with [`patch::apply`].
//!
//! ```
//! use nodb_shared::{Tree, diff::diff, patch::apply, path};
//!
//! let state = Tree::object();
//! let next = state.set(path!["stock", "apple", "shelf"], 12).unwrap();
//! let ops = diff(&state, &next);
//! assert_eq!(serde_json::to_string(&ops).unwrap(),
//!            r#"[{"op":"add","path":"/stock","value":{"apple":{"shelf":12}}}]"#);
//! assert_eq!(apply(&state, &ops).unwrap(), next);
//! ```

pub mod diff;
pub mod draft;
pub mod edit;
pub mod panic;
pub mod patch;
pub mod path;
pub mod protocol;
pub mod read_ahead;
pub mod tree;

pub use path::{Path, PathError, Segment, ToPath};
pub use tree::{Key, Kind, Number, Tree};
