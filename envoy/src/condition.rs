//! Following a view condition seq by seq: which keys hold now, and which
//! turned true at each seq. A [`Trigger::View`] selector is run on the
//! whole state whenever it changed; a [`Trigger::Entries`] pick is run only
//! on the entries that a seq's patch touched, so a burst of updates to a
//! large view costs what the updates changed, not the view's size.

use std::collections::BTreeMap;

use nodb_shared::{Path, Segment, Tree};

use crate::definition::{Pick, Selector, Trigger};

/// A view condition and the keys for which it holds, with their values.
pub(crate) struct Condition {
    kind: Kind,
    holds: BTreeMap<String, Tree>,
}

enum Kind {
    Whole(Selector),
    Entries { under: Vec<String>, pick: Pick },
}

impl Condition {
    /// The condition of `trigger` (`None` for an action trigger, or a
    /// collection pointer that does not parse) as it stands in `state`.
    pub(crate) fn new(trigger: &Trigger, state: &Tree) -> Option<Condition> {
        let kind = match trigger {
            Trigger::Types(_) => return None,
            Trigger::View { select, .. } => Kind::Whole(select.clone()),
            Trigger::Entries { under, pick, .. } => {
                let path = Path::parse(under).ok()?;
                let under = path
                    .segments()
                    .iter()
                    .map(|s| match s {
                        Segment::Key(k) => k.to_string(),
                        Segment::Index(i) => i.to_string(),
                    })
                    .collect();
                Kind::Entries { under, pick: pick.clone() }
            }
        };
        let mut condition = Condition { kind, holds: BTreeMap::new() };
        condition.holds = condition.evaluate_all(state);
        Some(condition)
    }

    /// Moves to `state`, reached by `ops` (`None`: by a snapshot, so
    /// anything may have changed); the keys that turned true, with their
    /// values.
    pub(crate) fn step(&mut self, state: &Tree, ops: Option<&json_patch::Patch>) -> Vec<(String, Tree)> {
        let touched = match (&self.kind, ops) {
            (_, Some(ops)) if ops.0.is_empty() => return Vec::new(),
            (Kind::Entries { under, .. }, Some(ops)) => touched_keys(under, ops),
            _ => None,
        };
        let now = match touched {
            None => self.evaluate_all(state),
            Some(keys) => {
                let mut now = self.holds.clone();
                for key in keys {
                    match self.evaluate_one(state, &key) {
                        Some(value) => now.insert(key, value),
                        None => now.remove(&key),
                    };
                }
                now
            }
        };
        let fired =
            now.iter().filter(|(k, _)| !self.holds.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        self.holds = now;
        fired
    }

    fn evaluate_all(&self, state: &Tree) -> BTreeMap<String, Tree> {
        match &self.kind {
            Kind::Whole(select) => select(state),
            Kind::Entries { under, pick } => match collection(state, under) {
                Some(Tree::Object(entries)) => {
                    entries.iter().filter_map(|(k, v)| pick(v).map(|picked| (k.to_string(), picked))).collect()
                }
                _ => BTreeMap::new(),
            },
        }
    }

    fn evaluate_one(&self, state: &Tree, key: &str) -> Option<Tree> {
        match &self.kind {
            Kind::Whole(select) => select(state).remove(key),
            Kind::Entries { under, pick } => match collection(state, under) {
                Some(Tree::Object(entries)) => entries.get(key).and_then(|v| pick(v)),
                _ => None,
            },
        }
    }
}

fn collection<'a>(state: &'a Tree, under: &[String]) -> Option<&'a Tree> {
    under.iter().try_fold(state, |node, key| match node {
        Tree::Object(map) => map.get(key.as_str()),
        _ => None,
    })
}

/// The keys of the collection at `under` whose entries `ops` may have
/// changed; `None` when an operation reaches the collection itself or
/// above it (then every entry is looked at again).
fn touched_keys(under: &[String], ops: &json_patch::Patch) -> Option<Vec<String>> {
    use json_patch::PatchOperation as Op;
    let mut keys = Vec::new();
    for op in &ops.0 {
        let from = match op {
            Op::Move(m) => Some(&m.from),
            Op::Copy(c) => Some(&c.from),
            _ => None,
        };
        // A copy's source is only read; a move's is removed.
        let paths = [Some(op.path()), from.filter(|_| matches!(op, Op::Move(_))).map(|p| &**p)];
        for path in paths.into_iter().flatten() {
            let tokens: Vec<String> = path.tokens().map(|t| t.decoded().into_owned()).collect();
            if tokens.len() <= under.len() {
                if under.starts_with(&tokens) {
                    return None;
                }
            } else if tokens[..under.len()] == *under {
                keys.push(tokens[under.len()].clone());
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn low(entry: &Tree) -> Option<Tree> {
        let n = entry.get([Segment::Key("n".into())])?.as_u64()?;
        (n < 5).then(|| entry.clone())
    }

    fn entries() -> Trigger {
        Trigger::Entries { view: "v".into(), under: "/items".into(), pick: Arc::new(low) }
    }

    fn patch(v: serde_json::Value) -> json_patch::Patch {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_touched_entries_are_looked_at_and_each_turn_fires_once() {
        let s0 = Tree::from(json!({"items": {"a": {"n": 9}, "b": {"n": 1}}}));
        let mut c = Condition::new(&entries(), &s0).unwrap();
        assert_eq!(c.holds.keys().collect::<Vec<_>>(), ["b"]);
        let ops = patch(json!([{"op": "replace", "path": "/items/a/n", "value": 2}]));
        let mut s1 = s0.clone();
        s1 = nodb_shared::patch::apply(&s1, &ops).unwrap();
        let fired = c.step(&s1, Some(&ops));
        assert_eq!(fired.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a"]);
        // Still true: nothing fires again.
        let ops = patch(json!([{"op": "replace", "path": "/items/a/n", "value": 3}]));
        let s2 = nodb_shared::patch::apply(&s1, &ops).unwrap();
        assert!(c.step(&s2, Some(&ops)).is_empty());
        // Replacing the whole collection looks at every entry.
        let ops = patch(json!([{"op": "replace", "path": "/items", "value": {"c": {"n": 0}}}]));
        let s3 = nodb_shared::patch::apply(&s2, &ops).unwrap();
        let fired = c.step(&s3, Some(&ops));
        assert_eq!(fired.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["c"]);
        assert_eq!(c.holds.keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn entries_and_a_whole_state_selector_agree_on_random_histories() {
        use proptest::prelude::*;
        let whole = Trigger::View {
            view: "v".into(),
            select: Arc::new(|state: &Tree| match collection(state, &["items".to_string()]) {
                Some(Tree::Object(m)) => m.iter().filter_map(|(k, v)| low(v).map(|p| (k.to_string(), p))).collect(),
                _ => BTreeMap::new(),
            }),
        };
        let op = (0..4u8, 0..6u8, 0..10u64).prop_map(|(kind, key, n)| {
            let key = format!("k{key}");
            match kind {
                0 => json!({"op": "add", "path": format!("/items/{key}"), "value": {"n": n}}),
                1 => json!({"op": "add", "path": format!("/items/{key}/n"), "value": n}),
                2 => json!({"op": "remove", "path": format!("/items/{key}")}),
                _ => json!({"op": "replace", "path": "/items", "value": {key: {"n": n}}}),
            }
        });
        proptest!(|(ops in proptest::collection::vec(op, 1..40))| {
            let mut state = Tree::from(json!({"items": {}}));
            let mut a = Condition::new(&entries(), &state).unwrap();
            let mut b = Condition::new(&whole, &state).unwrap();
            for op in ops {
                let p = patch(json!([op]));
                let Ok(next) = nodb_shared::patch::apply(&state, &p) else { continue };
                state = next;
                prop_assert_eq!(a.step(&state, Some(&p)), b.step(&state, Some(&p)));
                prop_assert_eq!(&a.holds, &b.holds);
            }
        });
    }
}
