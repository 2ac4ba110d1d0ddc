//! Paths into a [`Tree`](crate::Tree): JSON Pointers (RFC 6901) or lists of
//! keys and indices, and the typed errors of walking them.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use crate::tree::{Key, Kind};

/// One step of a path: an object key or an array index.
///
/// A pointer's tokens are all [`Segment::Key`]s; at an array a key that
/// reads as an RFC 6901 index (`0`, `17`, no leading zeros) or `-` (the end)
/// selects that element. An [`Segment::Index`] at an object selects the key
/// spelled by its decimal digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object key (or an array index spelled as text).
    Key(Key),
    /// An array index (or an object key spelled as digits).
    Index(usize),
}

impl From<&str> for Segment {
    fn from(s: &str) -> Self {
        Segment::Key(s.into())
    }
}

impl From<String> for Segment {
    fn from(s: String) -> Self {
        Segment::Key(s.into())
    }
}

impl From<&String> for Segment {
    fn from(s: &String) -> Self {
        Segment::Key(s.as_str().into())
    }
}

impl From<Key> for Segment {
    fn from(k: Key) -> Self {
        Segment::Key(k)
    }
}

impl From<&Key> for Segment {
    fn from(k: &Key) -> Self {
        Segment::Key(k.clone())
    }
}

impl From<usize> for Segment {
    fn from(i: usize) -> Self {
        Segment::Index(i)
    }
}

impl fmt::Display for Segment {
    /// The segment as one escaped JSON Pointer token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Index(i) => write!(f, "{i}"),
            Segment::Key(k) if !needs_escape(k) => f.write_str(k),
            Segment::Key(k) => {
                for c in k.chars() {
                    match c {
                        '~' => f.write_str("~0")?,
                        '/' => f.write_str("~1")?,
                        c => f.write_char(c)?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Where an array segment points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// An existing or prospective element index.
    At(usize),
    /// `-`: one past the last element.
    End,
}

impl Segment {
    /// The object key this segment names.
    pub(crate) fn key(&self) -> Key {
        match self {
            Segment::Key(k) => k.clone(),
            Segment::Index(i) => i.to_string().into(),
        }
    }

    /// The array slot this segment names, or `None` if it is not a valid
    /// RFC 6901 array index (`01`, `1e3`, `foo`).
    pub(crate) fn slot(&self) -> Option<Slot> {
        match self {
            Segment::Index(i) => Some(Slot::At(*i)),
            Segment::Key(k) => {
                let s: &str = k;
                if s == "-" {
                    return Some(Slot::End);
                }
                let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if !digits || (s.len() > 1 && s.starts_with('0')) {
                    return None;
                }
                s.parse().ok().map(Slot::At)
            }
        }
    }
}

/// A path into a tree: a list of segments, empty for the root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path(Vec<Segment>);

impl Path {
    /// The path to the root (the empty pointer `""`).
    pub fn root() -> Self {
        Path(Vec::new())
    }

    /// Parses a JSON Pointer (RFC 6901): `""` is the root, otherwise each
    /// token follows a `/`, with `~1` for `/` and `~0` for `~`.
    ///
    /// # Errors
    /// [`PathError::InvalidPointer`] if the text does not start with `/` or
    /// has a `~` not followed by `0` or `1`.
    pub fn parse(pointer: &str) -> Result<Path, PathError> {
        if pointer.is_empty() {
            return Ok(Path::root());
        }
        let bad = |reason| PathError::InvalidPointer { pointer: pointer.to_string(), reason };
        let rest = pointer.strip_prefix('/').ok_or_else(|| bad("a JSON Pointer must be empty or start with '/'"))?;
        let mut segments = Vec::new();
        for token in rest.split('/') {
            let mut key = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => key.push('~'),
                        Some('1') => key.push('/'),
                        _ => return Err(bad("'~' must be followed by '0' or '1'")),
                    }
                } else {
                    key.push(c);
                }
            }
            segments.push(Segment::Key(key.into()));
        }
        Ok(Path(segments))
    }

    /// The segments, first to last.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a segment.
    pub fn push(&mut self, segment: impl Into<Segment>) {
        self.0.push(segment.into());
    }

    /// This path with one more segment.
    #[must_use]
    pub fn child(&self, segment: impl Into<Segment>) -> Path {
        let mut p = self.clone();
        p.push(segment);
        p
    }

    /// The path as a JSON Pointer string.
    pub fn to_pointer(&self) -> String {
        pointer_of(&self.0)
    }
}

/// The JSON Pointer string of a list of segments.
pub(crate) fn pointer_of(segments: &[Segment]) -> String {
    let room = segments.iter().map(|seg| 1 + if let Segment::Key(k) = seg { k.len() } else { 4 }).sum();
    let mut s = String::with_capacity(room);
    for seg in segments {
        s.push('/');
        match seg {
            // The common case, without the formatting machinery.
            Segment::Key(k) if !needs_escape(k) => s.push_str(k),
            // Writing to a String cannot fail.
            seg => _ = write!(s, "{seg}"),
        }
    }
    s
}

/// Whether a key holds a character a JSON Pointer token escapes.
fn needs_escape(key: &str) -> bool {
    key.bytes().any(|b| b == b'~' || b == b'/')
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seg in &self.0 {
            write!(f, "/{seg}")?;
        }
        Ok(())
    }
}

impl FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Path, PathError> {
        Path::parse(s)
    }
}

impl<S: Into<Segment>> FromIterator<S> for Path {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Path(iter.into_iter().map(Into::into).collect())
    }
}

impl From<Vec<Segment>> for Path {
    fn from(v: Vec<Segment>) -> Self {
        Path(v)
    }
}

/// Builds a [`Path`] from keys and indices: `path!["stock", "apple", 0]`.
#[macro_export]
macro_rules! path {
    () => { $crate::path::Path::root() };
    ($($seg:expr),+ $(,)?) => {
        $crate::path::Path::from(vec![$($crate::path::Segment::from($seg)),+])
    };
}

/// Anything that names a path: a [`Path`], a JSON Pointer string, or a
/// slice or array of segments.
pub trait ToPath {
    /// The path, or why the text is not a valid pointer.
    ///
    /// # Errors
    /// [`PathError::InvalidPointer`] for a malformed pointer string.
    fn to_path(&self) -> Result<std::borrow::Cow<'_, [Segment]>, PathError>;
}

impl ToPath for Path {
    fn to_path(&self) -> Result<std::borrow::Cow<'_, [Segment]>, PathError> {
        Ok(std::borrow::Cow::Borrowed(&self.0))
    }
}

impl ToPath for str {
    fn to_path(&self) -> Result<std::borrow::Cow<'_, [Segment]>, PathError> {
        Path::parse(self).map(|p| std::borrow::Cow::Owned(p.0))
    }
}

impl ToPath for String {
    fn to_path(&self) -> Result<std::borrow::Cow<'_, [Segment]>, PathError> {
        self.as_str().to_path()
    }
}

impl ToPath for [Segment] {
    fn to_path(&self) -> Result<std::borrow::Cow<'_, [Segment]>, PathError> {
        Ok(std::borrow::Cow::Borrowed(self))
    }
}

impl<const N: usize> ToPath for [Segment; N] {
    fn to_path(&self) -> Result<std::borrow::Cow<'_, [Segment]>, PathError> {
        Ok(std::borrow::Cow::Borrowed(self))
    }
}

impl<T: ToPath + ?Sized> ToPath for &T {
    fn to_path(&self) -> Result<std::borrow::Cow<'_, [Segment]>, PathError> {
        (**self).to_path()
    }
}

/// Why a path could not be followed or an edit could not be made. Every
/// variant names the path (as a JSON Pointer) where the problem is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The text is not a JSON Pointer.
    #[error("invalid JSON Pointer {pointer:?}: {reason}")]
    InvalidPointer {
        /// The text given.
        pointer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nothing is at this path.
    #[error("no value at {path:?}")]
    NotFound {
        /// The path that names nothing.
        path: String,
    },
    /// The path continues through a value that is neither object nor array.
    #[error("cannot go into {path:?}: it is {kind}, not an object or array")]
    ThroughScalar {
        /// The path of the scalar.
        path: String,
        /// What it is.
        kind: Kind,
    },
    /// An array index past the end.
    #[error("index {index} at {path:?} is out of range (array length {len})")]
    IndexOutOfRange {
        /// The path, ending in the index.
        path: String,
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// An array segment that is not a valid index.
    #[error("{token:?} at {path:?} is not an array index (expected 0, 1, 2, … without leading zeros{end})")]
    BadIndex {
        /// The path, ending in the token.
        path: String,
        /// The token given.
        token: String,
        /// A hint on whether `-` would be allowed here.
        end: &'static str,
    },
    /// The value at the path is of the wrong kind for the operation.
    #[error("{path:?} is {found}, expected {expected}")]
    WrongKind {
        /// The path of the value.
        path: String,
        /// The kind the operation needs.
        expected: Kind,
        /// The kind found.
        found: Kind,
    },
    /// The operation cannot apply to the whole document.
    #[error("cannot {op} the root of the document")]
    Root {
        /// The operation.
        op: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_escapes() {
        let p = Path::parse("/a~1b/c~0d/~01/").unwrap();
        assert_eq!(p, path!["a/b", "c~d", "~1", ""]);
        assert_eq!(p.to_pointer(), "/a~1b/c~0d/~01/");
        assert_eq!(Path::parse("").unwrap(), Path::root());
    }

    #[test]
    fn rejects_bad_pointers() {
        assert!(matches!(Path::parse("a/b"), Err(PathError::InvalidPointer { .. })));
        assert!(matches!(Path::parse("/a~2"), Err(PathError::InvalidPointer { .. })));
        assert!(matches!(Path::parse("/a~"), Err(PathError::InvalidPointer { .. })));
    }

    #[test]
    fn array_slots_follow_rfc6901() {
        assert_eq!(Segment::from("0").slot(), Some(Slot::At(0)));
        assert_eq!(Segment::from("12").slot(), Some(Slot::At(12)));
        assert_eq!(Segment::from("-").slot(), Some(Slot::End));
        assert_eq!(Segment::from("01").slot(), None);
        assert_eq!(Segment::from("").slot(), None);
        assert_eq!(Segment::from("1e2").slot(), None);
        assert_eq!(Segment::from("+1").slot(), None);
        assert_eq!(Segment::from(3).key().as_str(), "3");
    }

    proptest! {
        #[test]
        fn pointer_escapes_round_trip(keys in proptest::collection::vec(".*", 0..5)) {
            let p: Path = keys.iter().map(String::as_str).collect();
            let text = p.to_pointer();
            prop_assert_eq!(Path::parse(&text).unwrap(), p);
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = Path::parse(&s);
        }
    }
}
