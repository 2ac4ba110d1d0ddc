//! The persistent JSON tree that reducers transform.
//!
//! [`Tree`] is a JSON value built from persistent collections: objects are
//! [`Object`]s keyed by [`Key`]s (short strings inline) — a shared sorted
//! slice while small, a [`bigmap::BigMap`] past that — so iteration, and with
//! it serialisation, is in key order and deterministic; arrays are `imbl`
//! [`Vector`]s. Cloning a tree is O(1); changing one leaf copies only the
//! path to it and shares everything else, which is what makes
//! [`crate::diff`] cost time proportional to the change.
//!
//! [`limits`] bounds how deep and how large a state may grow (see
//! `docs/limits.md`), so that no walk over a tree — serialising, diffing,
//! comparing, dropping, all recursive over its depth — can run out of stack
//! or memory.

pub mod bigmap;
pub mod limits;
mod number;
pub mod object;
mod serde_impl;

use std::fmt;
use std::sync::Arc;

use imbl::Vector;

pub use number::Number;
pub use object::Object;
pub use serde_impl::Entries;

/// An object key: an immutable string, stored inline up to 23 bytes (so a
/// search of a big object compares keys without following a pointer to
/// each, and making a short key allocates nothing), shared behind an `Arc`
/// when longer. Cloning is O(1) either way.
pub type Key = smol_str::SmolStr;

/// The vector behind a JSON array.
pub type Array = Vector<Tree>;

/// A persistent JSON value.
///
/// Equality is structural, compares numbers numerically (`1 == 1.0`, as
/// RFC 6902 §4.6 asks) and short-circuits on subtrees that are the same
/// shared node, so comparing a state with a slightly changed copy of itself
/// costs time proportional to the change.
#[derive(Clone, Default)]
pub enum Tree {
    /// `null`.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, in canonical form (see [`Number`]).
    Number(Number),
    /// A string.
    String(Arc<str>),
    /// An array. Behind an `Arc` because an `imbl::Vector` header is large
    /// and most values in a state are not arrays: this keeps every `Tree`
    /// at 24 bytes.
    Array(Arc<Array>),
    /// An object, keys in sorted order.
    Object(Object),
}

/// The kind of a JSON value, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// a boolean
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        })
    }
}

impl Tree {
    /// An empty object.
    pub fn object() -> Self {
        Tree::Object(Object::new())
    }

    /// An empty array.
    pub fn array() -> Self {
        Tree::Array(Arc::new(Vector::new()))
    }

    /// A string value.
    pub fn string(s: impl Into<Arc<str>>) -> Self {
        Tree::String(s.into())
    }

    /// An array holding `items`.
    pub fn from_items(items: impl IntoIterator<Item = Tree>) -> Self {
        Tree::Array(Arc::new(items.into_iter().collect()))
    }

    /// An object holding `entries` (a later duplicate key wins).
    pub fn from_entries<K: Into<Key>>(entries: impl IntoIterator<Item = (K, Tree)>) -> Self {
        Tree::Object(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// What kind of value this is.
    pub fn kind(&self) -> Kind {
        match self {
            Tree::Null => Kind::Null,
            Tree::Bool(_) => Kind::Bool,
            Tree::Number(_) => Kind::Number,
            Tree::String(_) => Kind::String,
            Tree::Array(_) => Kind::Array,
            Tree::Object(_) => Kind::Object,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Tree::Null)
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Tree::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<Number> {
        match self {
            Tree::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value as an `i64`, if it is an integer in that range.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(|n| n.as_i64())
    }

    /// The value as a `u64`, if it is a non-negative integer in that range.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_number().and_then(|n| n.as_u64())
    }

    /// The value as an `f64`, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        self.as_number().map(|n| n.as_f64())
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Tree::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Tree::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Tree::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Whether both are the very same shared node (or equal scalars that are
    /// cheap to compare). `true` implies `==`; `false` says nothing.
    pub fn ptr_eq(&self, other: &Tree) -> bool {
        match (self, other) {
            (Tree::Object(a), Tree::Object(b)) => a.ptr_eq(b),
            (Tree::Array(a), Tree::Array(b)) => Arc::ptr_eq(a, b) || a.ptr_eq(b),
            (Tree::String(a), Tree::String(b)) => Arc::ptr_eq(a, b),
            (Tree::Null, Tree::Null) => true,
            (Tree::Bool(a), Tree::Bool(b)) => a == b,
            (Tree::Number(a), Tree::Number(b)) => a == b,
            _ => false,
        }
    }

    /// Converts to a `serde_json::Value` (copies the whole tree).
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Tree::Null => Value::Null,
            Tree::Bool(b) => Value::Bool(*b),
            Tree::Number(n) => Value::Number(n.to_json()),
            Tree::String(s) => Value::String(s.to_string()),
            Tree::Array(a) => Value::Array(a.iter().map(Tree::to_value).collect()),
            Tree::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.to_string(), v.to_value())).collect()),
        }
    }

    /// Serialises to compact JSON text. Equal trees give identical bytes.
    pub fn to_json_string(&self) -> String {
        // Serialising a tree cannot fail: keys are strings, numbers finite.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl PartialEq for Tree {
    fn eq(&self, other: &Tree) -> bool {
        match (self, other) {
            (Tree::Null, Tree::Null) => true,
            (Tree::Bool(a), Tree::Bool(b)) => a == b,
            (Tree::Number(a), Tree::Number(b)) => a == b,
            (Tree::String(a), Tree::String(b)) => a == b,
            (Tree::Object(a), Tree::Object(b)) => a == b,
            (Tree::Array(a), Tree::Array(b)) => {
                Arc::ptr_eq(a, b) || a.ptr_eq(b) || (a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x == y))
            }
            _ => false,
        }
    }
}

impl Eq for Tree {}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl fmt::Display for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

impl From<&serde_json::Value> for Tree {
    fn from(v: &serde_json::Value) -> Self {
        use serde_json::Value;
        match v {
            Value::Null => Tree::Null,
            Value::Bool(b) => Tree::Bool(*b),
            Value::Number(n) => Tree::Number(Number::from_json(n)),
            Value::String(s) => Tree::String(s.as_str().into()),
            Value::Array(a) => Tree::from_items(a.iter().map(Tree::from)),
            Value::Object(o) => Tree::Object(o.iter().map(|(k, v)| (Key::from(k.as_str()), Tree::from(v))).collect()),
        }
    }
}

impl From<serde_json::Value> for Tree {
    fn from(v: serde_json::Value) -> Self {
        Tree::from(&v)
    }
}

impl From<&Tree> for serde_json::Value {
    fn from(t: &Tree) -> Self {
        t.to_value()
    }
}

impl From<bool> for Tree {
    fn from(b: bool) -> Self {
        Tree::Bool(b)
    }
}

impl From<Number> for Tree {
    fn from(n: Number) -> Self {
        Tree::Number(n)
    }
}

impl From<&str> for Tree {
    fn from(s: &str) -> Self {
        Tree::String(s.into())
    }
}

impl From<String> for Tree {
    fn from(s: String) -> Self {
        Tree::String(s.into())
    }
}

impl From<Object> for Tree {
    fn from(o: Object) -> Self {
        Tree::Object(o)
    }
}

impl From<Array> for Tree {
    fn from(a: Array) -> Self {
        Tree::Array(Arc::new(a))
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Tree {
            fn from(v: $t) -> Self {
                Tree::Number(Number::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl From<f64> for Tree {
    /// A non-finite float (which JSON cannot hold) becomes `null`, as
    /// `JSON.stringify` does.
    fn from(f: f64) -> Self {
        Number::from_f64(f).map_or(Tree::Null, Tree::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tree_is_small() {
        assert!(std::mem::size_of::<Tree>() <= 24, "{}", std::mem::size_of::<Tree>());
    }

    #[test]
    fn equality_is_structural_and_numeric() {
        let a = Tree::from(json!({"a": [1, 2.5, {"b": null}], "c": "x"}));
        let b = Tree::from(json!({"c": "x", "a": [1.0, 2.5, {"b": null}]}));
        assert_eq!(a, b);
        assert_ne!(a, Tree::from(json!({"c": "x", "a": [1, 2.5, {"b": false}]})));
        assert_ne!(Tree::from(json!([1])), Tree::from(json!({"0": 1})));
    }

    #[test]
    fn value_round_trip() {
        let v = json!({"z": [true, null, -3, 18446744073709551615u64, 0.25, "s"], "a": {}});
        assert_eq!(Tree::from(&v).to_value(), v);
    }
}
