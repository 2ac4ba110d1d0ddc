use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::tree::limits::tests::value;

/// One edit: a path of keys and indices and what to do there.
#[derive(Clone, Debug)]
enum Edit {
    Set(Vec<String>, serde_json::Value),
    Push(Vec<String>, serde_json::Value),
    Remove(Vec<String>),
    /// Writes back a changed copy of what is at the first path: the
    /// second path in it set to the value.
    Derive(Vec<String>, Vec<String>, serde_json::Value),
    /// Within the first path, sets the second to the value.
    Within(Vec<String>, Vec<String>, serde_json::Value),
}

fn path() -> impl Strategy<Value = Vec<String>> {
    // Keys with the characters a JSON Pointer (`~`, `/`) or a JSON string
    // (`"`, `\`, control characters) escapes, now and then.
    let key = prop_oneof![4 => "[a-c0-2-]{1,2}", 1 => r#"[a~/"\\\n\x01é]{1,2}"#];
    prop::collection::vec(key, 0..4)
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        3 => (path(), value()).prop_map(|(p, v)| Edit::Set(p, v)),
        1 => (path(), value()).prop_map(|(p, v)| Edit::Push(p, v)),
        2 => path().prop_map(Edit::Remove),
        2 => (path(), path(), value()).prop_map(|(p, q, v)| Edit::Derive(p, q, v)),
        2 => (path(), path(), value()).prop_map(|(p, q, v)| Edit::Within(p, q, v)),
    ];
    prop::collection::vec(edit, 1..8)
}

fn segments(path: &[String]) -> Vec<Segment> {
    path.iter().map(|k| Segment::Key(k.as_str().into())).collect()
}

/// Runs `edit` on `draft`, its outcome (`Within` sets the second path
/// within the first; a second path of two segments or more, through a
/// `within` of its first segment nested in the first).
fn perform(draft: &mut Draft, edit: &Edit) -> Result<(), DraftError> {
    match edit.clone() {
        Edit::Set(p, v) => draft.set(&*segments(&p), Tree::from(v)),
        Edit::Push(p, v) => draft.push(&*segments(&p), Tree::from(v)),
        Edit::Remove(p) => draft.remove(&*segments(&p)).map(|_| ()),
        Edit::Derive(p, q, v) => {
            let (p, q) = (segments(&p), segments(&q));
            let Some(current) = draft.get(&*p).cloned() else { return Ok(()) };
            let Ok(derived) = current.set(&*q, Tree::from(v)) else { return Ok(()) };
            draft.set(&*p, derived)
        }
        Edit::Within(p, q, v) => {
            let q = segments(&q);
            draft.within(&*segments(&p), |sub| match q.split_first() {
                Some((first, rest)) if !rest.is_empty() => {
                    sub.within([first.clone()], |inner| inner.set(rest, Tree::from(v)))
                }
                _ => sub.set(&*q, Tree::from(v)),
            })
        }
    }
}

proptest! {
    /// A draft keeping only what undoes its edits ([`Record::Undo`]) edits
    /// as one keeping the patch: the same outcome of each edit (errors
    /// included, and within a sub-draft that fails: all or nothing), the
    /// same state and size after each, under limits tight enough to refuse
    /// some; undoing puts back the same state before; it hands back no
    /// edits.
    #[test]
    fn keeping_only_the_undo_edits_and_undoes_alike(
        start in value(),
        edits in edits(),
        max_depth in 1usize..6,
        undo_at in 0usize..8,
    ) {
        let before = Tree::from(start);
        let limits = Limits { max_depth, max_bytes: u64::MAX };
        let bytes = bytes_of(&before);
        let mut patch = Draft::new(before.clone(), bytes, limits);
        let mut undo = Draft::new(before.clone(), bytes, limits).recording(Record::Undo);
        prop_assert_eq!(undo.record(), Record::Undo);
        for edit in edits.iter().take(undo_at) {
            let (mine, theirs) = (perform(&mut undo, edit), perform(&mut patch, edit));
            prop_assert_eq!(mine, theirs, "{:?}", edit);
            prop_assert_eq!(undo.state(), patch.state());
            prop_assert_eq!(undo.bytes(), patch.bytes());
            prop_assert_eq!(undo.is_changed(), patch.is_changed());
        }
        if undo_at % 2 == 0 {
            let (mine, theirs) = (undo.undo(), patch.undo());
            prop_assert_eq!(&mine, &theirs);
            prop_assert_eq!(mine.0.to_json_string(), before.to_json_string());
        } else {
            let (state, bytes, ops) = undo.into_parts();
            let (their_state, their_bytes, _) = patch.into_parts();
            prop_assert!(ops.is_empty());
            prop_assert_eq!((state, bytes), (their_state, their_bytes));
        }
    }

    /// Whatever the edits: each does what the persistent path API does (or
    /// fails as it does, changing nothing); the recorded operations,
    /// applied as an RFC 6902 patch to the state before, give the state
    /// after (and serialise to the same bytes written directly); the size kept from the edits is the size of the state;
    /// `unapply` of them on a copy of the state after gives the state
    /// before, leaving the state after as it was; and undoing puts back
    /// the state before, byte for byte.
    #[test]
    fn edits_record_their_patch_keep_the_size_and_undo(start in value(), edits in edits()) {
        let before = Tree::from(start);
        let mut draft = Draft::of(before.clone());
        let mut expected = before.clone();
        for edit in &edits {
            let (mine, theirs) = match edit.clone() {
                Edit::Set(p, v) => {
                    let p = segments(&p);
                    (draft.set(&*p, Tree::from(v.clone())).map(|_| ()), expected.set(&*p, Tree::from(v.clone())))
                }
                Edit::Push(p, v) => {
                    let p = segments(&p);
                    (draft.push(&*p, Tree::from(v.clone())).map(|_| ()), expected.push(&*p, Tree::from(v.clone())))
                }
                Edit::Remove(p) => {
                    let p = segments(&p);
                    (draft.remove(&*p).map(|_| ()), expected.remove(&*p))
                }
                Edit::Within(..) => (Ok(()), Ok(expected.clone())),
                Edit::Derive(p, q, v) => {
                    let (p, q) = (segments(&p), segments(&q));
                    let Some(current) = expected.get(&*p).cloned() else { continue };
                    let Ok(derived) = current.set(&*q, Tree::from(v)) else { continue };
                    (draft.set(&*p, derived.clone()).map(|_| ()), expected.set(&*p, derived))
                }
            };
            if let Edit::Within(p, q, v) = edit {
                // Errors name paths within the value: compare outcomes.
                let (p, q) = (segments(p), segments(q));
                let whole: Vec<Segment> = p.iter().chain(&q).cloned().collect();
                let mine = draft.within(&*p, |sub| sub.set(&*q, Tree::from(v.clone())));
                let theirs = if expected.get(&*p).is_some() { expected.set(&*whole, Tree::from(v)) } else { Err(PathError::Root { op: "x" }) };
                prop_assert_eq!(mine.is_ok(), theirs.is_ok(), "{:?} vs {:?}", mine, theirs);
                if let Ok(t) = theirs {
                    expected = t;
                }
                prop_assert_eq!(draft.state().to_json_string(), expected.to_json_string());
                prop_assert_eq!(draft.bytes(), bytes_of(draft.state()));
                continue;
            }
            match theirs {
                Ok(t) => {
                    prop_assert!(mine.is_ok(), "{edit:?}: {mine:?}");
                    expected = t;
                }
                Err(e) => prop_assert_eq!(mine, Err(DraftError::Path(e))),
            }
            prop_assert_eq!(draft.state().to_json_string(), expected.to_json_string());
            prop_assert_eq!(draft.bytes(), bytes_of(draft.state()));
        }
        let patch = to_patch(draft.ops());
        let mut written = Vec::new();
        RecordedPatch(draft.ops()).write_json(&mut written).unwrap();
        prop_assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&patch).unwrap());
        let patched = crate::patch::apply(&before, &patch).expect("the record applies");
        prop_assert_eq!(patched.to_json_string(), expected.to_json_string());
        // The recorded ops undone on a copy that shares the state after:
        // the state before, and the state after untouched.
        let mut rebuilt = draft.state().clone();
        unapply(draft.ops(), &mut rebuilt);
        prop_assert_eq!(rebuilt.to_json_string(), before.to_json_string());
        prop_assert_eq!(draft.state().to_json_string(), expected.to_json_string());
        let (undone, bytes) = draft.undo();
        prop_assert_eq!(undone.to_json_string(), before.to_json_string());
        prop_assert_eq!(bytes, bytes_of(&before));
    }
}

#[test]
fn edits_change_a_shared_state_without_touching_the_other_version() {
    let before = Tree::from(json!({"a": {"b": [1, 2]}, "c": 1}));
    let kept = before.clone();
    let mut draft = Draft::of(before);
    draft.push("/a/b", 3).unwrap();
    draft.set("/x/y/z", true).unwrap();
    draft.remove("/c").unwrap();
    assert_eq!(kept, Tree::from(json!({"a": {"b": [1, 2]}, "c": 1})));
    assert_eq!(draft.state(), &Tree::from(json!({"a": {"b": [1, 2, 3]}, "x": {"y": {"z": true}}})));
    assert_eq!(
        serde_json::to_value(to_patch(draft.ops())).unwrap(),
        json!([
            {"op": "add", "path": "/a/b/2", "value": 3},
            {"op": "add", "path": "/x", "value": {"y": {"z": true}}},
            {"op": "remove", "path": "/c"},
        ])
    );
}

#[test]
fn writing_what_is_there_records_nothing() {
    let mut draft = Draft::of(Tree::from(json!({"n": 1, "o": {}})));
    let o = draft.get("/o").unwrap().clone();
    draft.set("/n", 1).unwrap();
    draft.set("/o", o).unwrap();
    draft.remove("/missing").unwrap();
    assert!(!draft.is_changed());
    draft.set("/n", 2).unwrap();
    assert_eq!(
        serde_json::to_value(to_patch(draft.ops())).unwrap(),
        json!([{"op": "replace", "path": "/n", "value": 2}])
    );
}

#[test]
fn a_value_too_deep_is_refused_and_a_state_too_large_is_handed_back() {
    let limits = Limits { max_depth: 3, max_bytes: 40 };
    let start = Tree::from(json!({"a": {}}));
    let mut draft = Draft::new(start.clone(), bytes_of(&start), limits);
    assert!(matches!(draft.set("/a/b", json!({"c": {}})), Err(DraftError::Limit(LimitError::TooDeep { .. }))));
    assert!(!draft.is_changed(), "a refused edit changes nothing");
    draft.set("/a/b", json!({"c": 1})).unwrap();
    draft.set("/long", "x".repeat(30)).unwrap();
    let Err((LimitError::TooLarge { limit: 40 }, draft)) = draft.finish() else { panic!("over the size limit") };
    assert_eq!(draft.undo().0, start);
}

#[test]
fn within_is_all_or_nothing_even_through_a_panic() {
    let start = Tree::from(json!({"p": {"a": 1, "b": {"c": 2}}, "q": 0}));
    let mut draft = Draft::of(start.clone());
    let failed: Result<(), DraftError> = draft.within("/p", |sub| {
        sub.set("/a", 5)?;
        sub.set("/a/x", 1) // through a number
    });
    assert!(failed.is_err());
    assert_eq!(draft.state(), &start);
    assert!(!draft.is_changed());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = draft.within("/p", |sub| -> Result<(), DraftError> {
            sub.remove("/b")?;
            panic!("in the middle");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(draft.state(), &start, "the value is back, its edits undone");
    draft.within("/p", |sub| sub.set("/b/c", 3)).unwrap();
    assert_eq!(
        serde_json::to_value(to_patch(draft.ops())).unwrap(),
        json!([{"op": "replace", "path": "/p/b/c", "value": 3}])
    );
    assert_eq!(draft.bytes(), bytes_of(draft.state()));
}

proptest! {
    /// A run of drafts through an [`UndoLog`], each kept or discarded (as
    /// a view refusing an action discards its draft): a discarded draft
    /// leaves the state as before it; and undoing from any draft on gives
    /// back, byte for byte and with its size, the state after the drafts
    /// before it, however the log's room was used before (the log is
    /// cleared and used again for a second run).
    #[test]
    fn an_undo_log_takes_a_run_of_drafts_back_to_after_any_of_them(
        start in value(),
        drafts in prop::collection::vec((edits(), any::<bool>()), 1..8),
        keep in 0usize..8,
    ) {
        let limits = Limits { max_depth: 4, max_bytes: u64::MAX };
        let mut log = UndoLog::default();
        for _ in 0..2 {
            let mut state = Tree::from(start.clone());
            let mut bytes = bytes_of(&state);
            let mut after = vec![(state.to_json_string(), bytes)];
            for (edits, kept) in &drafts {
                let mut draft = log.draft(state, bytes, limits);
                prop_assert_eq!(draft.record(), Record::Undo);
                for edit in edits {
                    let _ = perform(&mut draft, edit);
                }
                (state, bytes) = if *kept { log.keep(draft) } else { log.discard(draft) };
                if !*kept {
                    prop_assert_eq!((state.to_json_string(), bytes), after.last().cloned().unwrap());
                }
                prop_assert_eq!(bytes, bytes_of(&state));
                after.push((state.to_json_string(), bytes));
            }
            prop_assert_eq!(log.len(), drafts.len());
            let keep = keep.min(drafts.len());
            log.undo_from(&mut state, &mut bytes, keep);
            prop_assert_eq!(log.len(), keep);
            prop_assert_eq!((state.to_json_string(), bytes), after[keep].clone());
            log.undo_from(&mut state, &mut bytes, 0);
            prop_assert_eq!((state.to_json_string(), bytes), after[0].clone());
            log.clear();
            prop_assert!(log.is_empty());
        }
    }
}

/// A `within` that fails or panics after its parent's edits leaves those
/// edits in the parent's record, so undoing the parent gives back the
/// start, byte for byte; so does one whose reducer swaps its draft for
/// another (of the same value), which cannot reach the parent's edits.
#[test]
fn a_within_that_fails_panics_or_swaps_its_draft_keeps_its_parents_edits() {
    let start = Tree::from(json!({"p": {"a": 1}, "q": [1, 2]}));
    let fail =
        |d: &mut Draft| d.within("/p", |s| s.set("/b", Tree::from(2)).and_then(|()| s.set("/a/x", Tree::from(3))));
    let panic = |d: &mut Draft| {
        let run = std::panic::AssertUnwindSafe(|| {
            let _ = d.within("/p", |s| {
                s.set("/b", Tree::from(2))?;
                panic!("a reducer's bug");
                #[allow(unreachable_code)]
                Ok::<(), DraftError>(())
            });
        });
        assert!(std::panic::catch_unwind(run).is_err());
        Ok(())
    };
    let swap = |d: &mut Draft| {
        d.within("/p", |s| {
            s.set("/b", Tree::from(2))?;
            let same = Draft::of(Tree::from(json!({"a": 1})));
            *s = same;
            s.set("/c", Tree::from(3))
        })
    };
    type Case<'a> = &'a dyn Fn(&mut Draft) -> Result<(), DraftError>;
    let cases: [Case<'_>; 3] = [&fail, &panic, &swap];
    for (i, case) in cases.into_iter().enumerate() {
        for record in [Record::Patch, Record::Undo] {
            let mut d = Draft::of(start.clone()).recording(record);
            d.set("/x", Tree::from(1)).unwrap();
            d.push("/q", Tree::from(3)).unwrap();
            let _ = case(&mut d);
            assert!(d.ops().len() >= 2, "case {i}: the parent's two edits are in its record");
            let (undone, bytes) = d.undo();
            assert_eq!(undone.to_json_string(), start.to_json_string(), "case {i}, {record:?}");
            assert_eq!(bytes, bytes_of(&start));
        }
    }
}
