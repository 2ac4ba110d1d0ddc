//! The one helper every part of the warehouse uses to name a key in a
//! state tree.

use nodb_shared::Segment;

/// The object key `s`, as a path segment.
pub(crate) fn key(s: &str) -> Segment {
    Segment::Key(s.into())
}
