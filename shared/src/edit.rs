//! The reducer-friendly path API, in the style of Immutable.js's `getIn`,
//! `setIn`, `updateIn`, `deleteIn`, `mergeIn` and `push`.
//!
//! Every edit returns a new tree that shares every subtree it did not touch:
//! only the nodes on the path are copied. Paths are anything that
//! implements [`ToPath`]: a JSON Pointer string, a [`Path`](crate::Path), or
//! [`path!`](crate::path!)`["stock", product, 0]`.

use std::sync::Arc;

use crate::path::{PathError, Segment, Slot, ToPath, pointer_of};
use crate::tree::{Kind, Tree};

/// Whether a walk may create missing objects on the way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Missing intermediate keys become empty objects (Immutable.js).
    Create,
    /// A missing intermediate value is an error (RFC 6902).
    Fail,
}

impl Tree {
    /// The value at `path`, or `None` if there is none (or the path is not
    /// valid; [`Tree::lookup`] says why).
    pub fn get(&self, path: impl ToPath) -> Option<&Tree> {
        // No error values on this hot path: a miss is just `None`.
        let segs = path.to_path().ok()?;
        let mut node = self;
        for seg in segs.iter() {
            node = match (node, seg) {
                (Tree::Object(o), Segment::Key(k)) => o.get(k)?,
                (Tree::Object(o), Segment::Index(i)) => o.get(i.to_string().as_str())?,
                (Tree::Array(a), seg) => match seg.slot()? {
                    Slot::At(i) => a.get(i)?,
                    Slot::End => return None,
                },
                _ => return None,
            };
        }
        Some(node)
    }

    /// The value at `path`.
    ///
    /// # Errors
    /// [`PathError::NotFound`], [`PathError::ThroughScalar`],
    /// [`PathError::BadIndex`] or [`PathError::InvalidPointer`], naming where.
    pub fn lookup(&self, path: impl ToPath) -> Result<&Tree, PathError> {
        let segs = path.to_path()?;
        let mut node = self;
        for depth in 0..segs.len() {
            node = child(node, &segs, depth)?.ok_or_else(|| not_found(&segs, depth))?;
        }
        Ok(node)
    }

    /// A tree with `value` at `path`. Missing objects along the way are
    /// created; at an array the index must name an element, or the end
    /// (index = length, or `-`) to append.
    ///
    /// # Errors
    /// A [`PathError`] naming the path through a scalar or past an array.
    pub fn set(&self, path: impl ToPath, value: impl Into<Tree>) -> Result<Tree, PathError> {
        let value = value.into();
        let segs = path.to_path()?;
        if segs.is_empty() {
            return Ok(value);
        }
        edit_parent(self, &segs, 0, Missing::Create, &mut |parent, seg, at| {
            store(parent, seg, value.clone(), at, Store::Set)
        })
    }

    /// A tree with the value at `path` replaced by `f(current)`, where
    /// `current` is `None` if nothing is there yet.
    ///
    /// # Errors
    /// As for [`Tree::set`].
    pub fn update(&self, path: impl ToPath, f: impl FnOnce(Option<&Tree>) -> Tree) -> Result<Tree, PathError> {
        let segs = path.to_path()?;
        let value = f(self.get(&*segs));
        self.set(&*segs, value)
    }

    /// A tree without the value at `path`. Removing what is not there
    /// returns the tree unchanged; an array element's removal shifts the
    /// ones after it.
    ///
    /// # Errors
    /// [`PathError::Root`] for the root; a [`PathError`] naming a path
    /// through a scalar or a malformed index.
    pub fn remove(&self, path: impl ToPath) -> Result<Tree, PathError> {
        let segs = path.to_path()?;
        if segs.is_empty() {
            return Err(PathError::Root { op: "remove" });
        }
        match edit_parent(self, &segs, 0, Missing::Fail, &mut |parent, seg, at| remove_child(parent, seg, at)) {
            Err(PathError::NotFound { .. }) | Err(PathError::IndexOutOfRange { .. }) => Ok(self.clone()),
            other => other,
        }
    }

    /// A tree where the object at `path` (created if missing) has every
    /// entry of the object `other` (shallow: `other`'s entries win).
    ///
    /// # Errors
    /// [`PathError::WrongKind`] if the target or `other` is not an object.
    pub fn merge(&self, path: impl ToPath, other: impl Into<Tree>) -> Result<Tree, PathError> {
        let segs = path.to_path()?;
        let at = pointer_of(&segs);
        let other = other.into();
        let Tree::Object(add) = other else {
            return Err(PathError::WrongKind { path: at, expected: Kind::Object, found: other.kind() });
        };
        self.try_update(&segs, |current| match current {
            None => Ok(Tree::Object(add)),
            Some(Tree::Object(o)) => Ok(Tree::Object(add.union(o.clone()))),
            Some(t) => Err(PathError::WrongKind { path: at.clone(), expected: Kind::Object, found: t.kind() }),
        })
    }

    /// A tree where the array at `path` (created if missing) has `value`
    /// appended.
    ///
    /// # Errors
    /// [`PathError::WrongKind`] if the target is not an array.
    pub fn push(&self, path: impl ToPath, value: impl Into<Tree>) -> Result<Tree, PathError> {
        let segs = path.to_path()?;
        let value = value.into();
        self.try_update(&segs, |current| match current {
            None => Ok(Tree::from_items([value])),
            Some(Tree::Array(a)) => {
                let mut a = a.clone();
                Arc::make_mut(&mut a).push_back(value);
                Ok(Tree::Array(a))
            }
            Some(t) => Err(PathError::WrongKind { path: pointer_of(&segs), expected: Kind::Array, found: t.kind() }),
        })
    }

    fn try_update(
        &self,
        segs: &[Segment],
        f: impl FnOnce(Option<&Tree>) -> Result<Tree, PathError>,
    ) -> Result<Tree, PathError> {
        let current = match self.lookup(segs) {
            Ok(t) => Some(t),
            Err(PathError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let value = f(current)?;
        self.set(segs, value)
    }
}

/// How [`store`] treats the slot it writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    /// Object: insert or overwrite. Array: overwrite an element or append.
    Set,
    /// RFC 6902 `add`. Object: insert or overwrite. Array: insert, shifting.
    Add,
    /// RFC 6902 `replace`: the slot must already hold a value.
    Replace,
}

/// `parent` with `value` stored under `seg`. `segs[..=at]` is the full path
/// of the slot, for errors.
pub(crate) fn store(parent: &Tree, seg: &Segment, value: Tree, at: &[Segment], mode: Store) -> Result<Tree, PathError> {
    match parent {
        Tree::Object(o) => {
            let key = seg.key();
            if mode == Store::Replace && !o.contains_key(&key) {
                return Err(PathError::NotFound { path: pointer_of(at) });
            }
            Ok(Tree::Object(o.update(key, value)))
        }
        Tree::Array(a) => {
            let len = a.len();
            let allow_end = mode != Store::Replace;
            let index = match array_slot(seg, at, allow_end)? {
                Slot::End => len,
                Slot::At(i) => i,
            };
            let limit = if mode == Store::Replace { len } else { len + 1 };
            if index >= limit {
                return Err(PathError::IndexOutOfRange { path: pointer_of(at), index, len });
            }
            let mut a = a.clone();
            let v = Arc::make_mut(&mut a);
            if index == len {
                v.push_back(value);
            } else if mode == Store::Add {
                v.insert(index, value);
            } else {
                v.set(index, value);
            }
            Ok(Tree::Array(a))
        }
        scalar => Err(through_scalar(&at[..at.len() - 1], scalar)),
    }
}

/// `parent` without the child under `seg`.
pub(crate) fn remove_child(parent: &Tree, seg: &Segment, at: &[Segment]) -> Result<Tree, PathError> {
    match parent {
        Tree::Object(o) => {
            let key = seg.key();
            if !o.contains_key(&key) {
                return Err(PathError::NotFound { path: pointer_of(at) });
            }
            Ok(Tree::Object(o.without(&key)))
        }
        Tree::Array(a) => {
            let index = match array_slot(seg, at, false)? {
                Slot::At(i) => i,
                Slot::End => a.len(),
            };
            if index >= a.len() {
                return Err(PathError::IndexOutOfRange { path: pointer_of(at), index, len: a.len() });
            }
            let mut a = a.clone();
            Arc::make_mut(&mut a).remove(index);
            Ok(Tree::Array(a))
        }
        scalar => Err(through_scalar(&at[..at.len() - 1], scalar)),
    }
}

/// The edit [`edit_parent`] makes at the parent: `(parent, last segment,
/// full path) -> new parent`.
pub(crate) type EditFn<'f> = dyn FnMut(&Tree, &Segment, &[Segment]) -> Result<Tree, PathError> + 'f;

/// Walks `segs[depth..]` from `node` to the parent of the last segment,
/// calls `f(parent, last_segment, full_path)` there, and rebuilds the path
/// back up with the parent `f` returned. Only the nodes on the path are
/// copied.
pub(crate) fn edit_parent(
    node: &Tree,
    segs: &[Segment],
    depth: usize,
    missing: Missing,
    f: &mut EditFn<'_>,
) -> Result<Tree, PathError> {
    if depth + 1 == segs.len() {
        return f(node, &segs[depth], segs);
    }
    let new_child = match child(node, segs, depth)? {
        Some(c) => edit_parent(c, segs, depth + 1, missing, f)?,
        None if missing == Missing::Create && matches!(node, Tree::Object(_)) => {
            edit_parent(&Tree::object(), segs, depth + 1, missing, f)?
        }
        None => return Err(not_found(segs, depth)),
    };
    store(node, &segs[depth], new_child, &segs[..=depth], Store::Set)
}

/// The child of `node` under `segs[depth]`: `Ok(None)` if the key or index
/// is absent, an error if `node` is a scalar or the index is malformed.
pub(crate) fn child<'t>(node: &'t Tree, segs: &[Segment], depth: usize) -> Result<Option<&'t Tree>, PathError> {
    let seg = &segs[depth];
    match node {
        Tree::Object(o) => Ok(match seg {
            Segment::Key(k) => o.get(k),
            Segment::Index(i) => o.get(i.to_string().as_str()),
        }),
        Tree::Array(a) => match array_slot(seg, &segs[..=depth], false)? {
            Slot::At(i) => Ok(a.get(i)),
            Slot::End => Ok(None),
        },
        scalar => Err(through_scalar(&segs[..depth], scalar)),
    }
}

fn array_slot(seg: &Segment, at: &[Segment], allow_end: bool) -> Result<Slot, PathError> {
    match seg.slot() {
        Some(Slot::End) if !allow_end => Err(bad_index(seg, at, "")),
        Some(slot) => Ok(slot),
        None => Err(bad_index(seg, at, if allow_end { ", or - for the end" } else { "" })),
    }
}

pub(crate) fn bad_index(seg: &Segment, at: &[Segment], end: &'static str) -> PathError {
    PathError::BadIndex { path: pointer_of(at), token: seg.key().to_string(), end }
}

pub(crate) fn through_scalar(at: &[Segment], scalar: &Tree) -> PathError {
    PathError::ThroughScalar { path: pointer_of(at), kind: scalar.kind() }
}

pub(crate) fn not_found(segs: &[Segment], depth: usize) -> PathError {
    PathError::NotFound { path: pointer_of(&segs[..=depth]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path;
    use serde_json::json;

    fn t(v: serde_json::Value) -> Tree {
        Tree::from(v)
    }

    #[test]
    fn get_and_lookup() {
        let s = t(json!({"a": {"b": [10, {"c/d": true}]}}));
        assert_eq!(s.get("/a/b/0"), Some(&Tree::from(10)));
        assert_eq!(s.get(path!["a", "b", 1, "c/d"]), Some(&Tree::Bool(true)));
        assert_eq!(s.get("/a/b/1/c~1d"), Some(&Tree::Bool(true)));
        assert_eq!(s.get("/a/x"), None);
        assert_eq!(s.lookup("/a/b/0/z"), Err(PathError::ThroughScalar { path: "/a/b/0".into(), kind: Kind::Number }));
        assert_eq!(s.lookup("/a/b/7"), Err(PathError::NotFound { path: "/a/b/7".into() }));
        assert!(matches!(s.lookup("/a/b/01"), Err(PathError::BadIndex { .. })));
        assert!(matches!(s.lookup("a"), Err(PathError::InvalidPointer { .. })));
    }

    #[test]
    fn set_creates_objects_and_shares_the_rest() {
        let s = t(json!({"a": {"x": 1}, "big": {"k": [1, 2, 3]}}));
        let s2 = s.set("/a/new/deep", 5).unwrap();
        assert_eq!(s2, t(json!({"a": {"x": 1, "new": {"deep": 5}}, "big": {"k": [1, 2, 3]}})));
        // The untouched subtree is the same node, not a copy.
        assert!(s.get("/big").unwrap().ptr_eq(s2.get("/big").unwrap()));
        // The original is unchanged.
        assert_eq!(s.get("/a/new"), None);
    }

    #[test]
    fn set_on_arrays() {
        let s = t(json!({"l": [1, 2]}));
        assert_eq!(s.set("/l/0", 9).unwrap(), t(json!({"l": [9, 2]})));
        assert_eq!(s.set("/l/2", 3).unwrap(), t(json!({"l": [1, 2, 3]})));
        assert_eq!(s.set("/l/-", 3).unwrap(), t(json!({"l": [1, 2, 3]})));
        assert_eq!(s.set("/l/5", 3), Err(PathError::IndexOutOfRange { path: "/l/5".into(), index: 5, len: 2 }));
        assert_eq!(s.set("/l/0/x", 3), Err(PathError::ThroughScalar { path: "/l/0".into(), kind: Kind::Number }));
        assert_eq!(s.set("", 3).unwrap(), Tree::from(3));
    }

    #[test]
    fn update_remove_merge_push() {
        let s = t(json!({"n": 1, "l": [1, 2, 3], "o": {"a": 1, "b": 2}}));
        let inc = |v: Option<&Tree>| Tree::from(v.and_then(Tree::as_i64).unwrap_or(0) + 1);
        assert_eq!(s.update("/n", inc).unwrap().get("/n"), Some(&Tree::from(2)));
        assert_eq!(s.update("/m", inc).unwrap().get("/m"), Some(&Tree::from(1)));
        assert_eq!(s.remove("/l/1").unwrap().get("/l"), Some(&t(json!([1, 3]))));
        assert_eq!(s.remove("/o/zz").unwrap(), s);
        assert_eq!(s.remove("/l/9").unwrap(), s);
        assert_eq!(s.remove(""), Err(PathError::Root { op: "remove" }));
        assert_eq!(s.remove("/n/x"), Err(PathError::ThroughScalar { path: "/n".into(), kind: Kind::Number }));
        let m = s.merge("/o", t(json!({"b": 3, "c": 4}))).unwrap();
        assert_eq!(m.get("/o"), Some(&t(json!({"a": 1, "b": 3, "c": 4}))));
        assert!(matches!(s.merge("/n", t(json!({}))), Err(PathError::WrongKind { .. })));
        assert!(matches!(s.merge("/o", 1), Err(PathError::WrongKind { .. })));
        assert_eq!(s.push("/l", 4).unwrap().get("/l"), Some(&t(json!([1, 2, 3, 4]))));
        assert_eq!(s.push("/new", 4).unwrap().get("/new"), Some(&t(json!([4]))));
        assert!(matches!(s.push("/o", 4), Err(PathError::WrongKind { .. })));
    }
}
