//! A snapshot's body, written with the places where it can be cut, and
//! read on several threads.
//!
//! Loading a big state is start-up time: parsing the JSON, allocating the
//! tree, and the kernel handing the process fresh pages, all on one
//! thread while the other cores wait. So the writer notes, in the header,
//! each big object's span (an object of at least [`CUT_EVERY`] entries,
//! not inside another one) and the offset of every [`CUT_EVERY`]th entry
//! after its first. The reader then parses the pieces between those
//! offsets on threads of their own (and the rest of the body, with each
//! big object left out, beside them, and the checksum), and joins each big
//! object's entries in order.
//!
//! The body's bytes are exactly those of writing the states whole, and
//! the cuts change nothing in what is read: a piece that is not a run of
//! whole entries cannot parse (a string or an object cut in two stays
//! open), and if any piece fails, or the cuts do not fit the body, the
//! body is read whole, as before cuts existed. (One difference: a piece
//! starts `serde_json`'s nesting count afresh, so a value nested past its
//! limit of 128 inside a big object reads in a piece where the whole body
//! would not; states within the engine's depth limit never come near.)
//! Objects inside arrays are never cut.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use nodb_shared::Tree;
use nodb_shared::tree::{Entries, Key, Object};
use serde::{Deserialize, Serialize};

/// How many entries of a big object each piece holds; an object with
/// fewer is never cut.
pub(crate) const CUT_EVERY: usize = 32_768;

/// Where a big object of a snapshot's body can be cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cut {
    /// The object's place: the view's name, then the keys down to it.
    pub path: Vec<String>,
    /// The body offset of its `{`.
    pub open: usize,
    /// The body offset of its `}`.
    pub close: usize,
    /// The body offsets where every [`CUT_EVERY`]th entry after the
    /// first begins (each just after a `,`).
    pub at: Vec<usize>,
}

/// Writes `{"view": state, …}` into `out` as `serde_json` writes it, and
/// returns the cuts of its big objects.
pub(crate) fn write(out: &mut Vec<u8>, names: &[String], states: &[Tree], every: usize) -> Vec<Cut> {
    let mut cuts = Vec::new();
    let mut path: Vec<&str> = Vec::new();
    out.push(b'{');
    for (i, (name, state)) in names.iter().zip(states).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        key(out, name);
        path.push(name);
        value(out, state, &mut path, &mut cuts, every);
        path.pop();
    }
    out.push(b'}');
    cuts
}

fn key(out: &mut Vec<u8>, key: &str) {
    // Writing into a `Vec` cannot fail: keys are strings, numbers finite.
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
}

/// Writes `tree` at `path`, noting a cut for each big object not inside
/// another.
fn value<'t>(out: &mut Vec<u8>, tree: &'t Tree, path: &mut Vec<&'t str>, cuts: &mut Vec<Cut>, every: usize) {
    let Tree::Object(o) = tree else {
        let _ = serde_json::to_writer(&mut *out, tree);
        return;
    };
    let big = o.len() >= every;
    let open = out.len();
    let mut at = Vec::new();
    out.push(b'{');
    for (i, (k, v)) in o.iter().enumerate() {
        if i > 0 {
            out.push(b',');
            if big && i % every == 0 {
                at.push(out.len());
            }
        }
        key(out, k);
        if big {
            let _ = serde_json::to_writer(&mut *out, v);
        } else {
            path.push(k);
            value(out, v, path, cuts, every);
            path.pop();
        }
    }
    out.push(b'}');
    if big {
        cuts.push(Cut { path: path.iter().map(|s| s.to_string()).collect(), open, close: out.len() - 1, at });
    }
}

/// Reads a body written by [`write`] with its `cuts`, on up to `threads`
/// threads, after `verify` (the checksum, run beside the parsing) passes.
///
/// # Errors
/// `checksum mismatch` if `verify` fails; `bad body: …` if the body is not
/// a JSON object of views, as reading it whole says.
pub(crate) fn read(
    body: &[u8],
    cuts: &[Cut],
    threads: usize,
    verify: impl Fn() -> bool + Sync,
) -> Result<BTreeMap<String, Tree>, String> {
    let whole = || serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"));
    if cuts.is_empty() || threads < 2 || !fits(body, cuts) {
        return if verify() { whole() } else { Err("checksum mismatch".into()) };
    }
    // Job 0 checks the sum, job 1 reads the rest of the body, the others
    // each read one piece of a big object.
    let pieces: Vec<(usize, usize)> = cuts.iter().flat_map(|c| spans(c).into_iter()).collect();
    let next = AtomicUsize::new(0);
    let jobs = pieces.len() + 2;
    let work = || {
        let mut done: Vec<(usize, Result<Job, ()>)> = Vec::new();
        let mut buf = Vec::new();
        loop {
            let job = next.fetch_add(1, Relaxed);
            let result = match job {
                0 => Ok(Job::Verified(verify())),
                1 => rest(body, cuts).map(Job::Rest),
                j if j < jobs => piece(body, pieces[j - 2], &mut buf).map(Job::Piece),
                _ => return done,
            };
            done.push((job, result));
        }
    };
    let mut results: Vec<(usize, Result<Job, ()>)> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads.min(jobs)).map(|_| scope.spawn(work)).collect();
        let mut all = work();
        for other in others {
            all.extend(other.join().unwrap_or_default());
        }
        all
    });
    results.sort_by_key(|(job, _)| *job);
    let mut results = results.into_iter().map(|(_, r)| r);
    if !matches!(results.next(), Some(Ok(Job::Verified(true)))) {
        return Err("checksum mismatch".into());
    }
    let Some(Ok(Job::Rest(mut views))) = results.next() else { return whole() };
    let mut pieces = results;
    for cut in cuts {
        let mut parts = Vec::with_capacity(cut.at.len() + 1);
        for _ in 0..=cut.at.len() {
            match pieces.next() {
                Some(Ok(Job::Piece(part))) => parts.push(part),
                _ => return whole(),
            }
        }
        // Straight into the map: one list of all the entries would be
        // copied into fresh pages (twice over, grown by doubling).
        let object = Tree::Object(Object::from_sorted_runs(parts));
        if place(&mut views, &cut.path, object).is_none() {
            return whole();
        }
    }
    Ok(views)
}

/// What one job of [`read`] gave.
enum Job {
    Verified(bool),
    Rest(BTreeMap<String, Tree>),
    Piece(Vec<(Key, Tree)>),
}

/// Whether `cuts` can be the cuts of `body`: in order and apart, each an
/// object's span with its offsets inside it, in order, each after a `,`.
fn fits(body: &[u8], cuts: &[Cut]) -> bool {
    let mut after = 0;
    cuts.iter().all(|c| {
        let inside = c.open >= after && c.open < c.close && c.close < body.len();
        let ok = inside
            && body[c.open] == b'{'
            && body[c.close] == b'}'
            && c.at.windows(2).all(|w| w[0] < w[1])
            && c.at.iter().all(|&a| a > c.open + 1 && a < c.close && body[a - 1] == b',')
            && !c.path.is_empty();
        after = c.close + 1;
        ok
    })
}

/// The byte ranges of `cut`'s pieces, each a run of entries without the
/// braces or the commas around it.
fn spans(cut: &Cut) -> Vec<(usize, usize)> {
    let starts = std::iter::once(cut.open + 1).chain(cut.at.iter().copied());
    let ends = cut.at.iter().map(|a| a - 1).chain(std::iter::once(cut.close));
    starts.zip(ends).collect()
}

/// Reads the entries in `body[span]`, wrapped in braces in `buf`.
fn piece(body: &[u8], (start, end): (usize, usize), buf: &mut Vec<u8>) -> Result<Vec<(Key, Tree)>, ()> {
    buf.clear();
    buf.push(b'{');
    buf.extend_from_slice(&body[start..end]);
    buf.push(b'}');
    serde_json::from_slice::<Entries>(buf).map(|Entries(e)| e).map_err(drop)
}

/// Reads the body with each cut's object as `{}`.
fn rest(body: &[u8], cuts: &[Cut]) -> Result<BTreeMap<String, Tree>, ()> {
    let mut text = Vec::with_capacity(body.len() - cuts.iter().map(|c| c.close - c.open).sum::<usize>());
    let mut from = 0;
    for c in cuts {
        text.extend_from_slice(&body[from..c.open]);
        text.extend_from_slice(b"{}");
        from = c.close + 1;
    }
    text.extend_from_slice(&body[from..]);
    serde_json::from_slice(&text).map_err(drop)
}

/// Puts `object` at `path` in `views`, where the rest of the body left an
/// empty object; `None` if that is not there.
fn place(views: &mut BTreeMap<String, Tree>, path: &[String], object: Tree) -> Option<()> {
    let (view, keys) = path.split_first()?;
    let mut at = views.get_mut(view)?;
    for k in keys {
        let Tree::Object(o) = at else { return None };
        at = o.get_mut(k.as_str())?;
    }
    match at {
        Tree::Object(o) if o.is_empty() => {
            *at = object;
            Some(())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree() -> impl Strategy<Value = Tree> {
        let leaf = prop_oneof![
            Just(Tree::Null),
            any::<u32>().prop_map(Tree::from),
            "[a-c\"\\\\,:{}]{0,3}".prop_map(Tree::from)
        ];
        leaf.prop_recursive(4, 200, 12, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Tree::from_items),
                prop::collection::vec(("[a-e,\"{}:]{0,3}", inner), 0..12).prop_map(Tree::from_entries),
            ]
        })
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("v{i}")).collect()
    }

    proptest! {
        /// Whatever the states, the body is what writing them whole gives,
        /// and reading it on threads gives what reading it whole does.
        #[test]
        fn a_body_read_in_pieces_is_the_body_read_whole(
            states in prop::collection::vec(tree(), 1..4),
            every in 1usize..5,
            threads in 1usize..4,
        ) {
            let names = names(states.len());
            let mut body = Vec::new();
            let cuts = write(&mut body, &names, &states, every);
            let whole: BTreeMap<String, Tree> = names.iter().cloned().zip(states.iter().cloned()).collect();
            prop_assert_eq!(&body, &serde_json::to_vec(&whole).unwrap());
            let read = read(&body, &cuts, threads, || true).unwrap();
            prop_assert_eq!(read, whole);
        }
    }

    #[test]
    fn a_big_object_is_cut_every_so_many_entries_and_read_back_in_order() {
        let products = Tree::from_entries((0..100).map(|i| (format!("p{i:03}"), Tree::from(i))));
        let stock = Tree::from_entries([("products", products.clone()), ("total", Tree::from(7))]);
        let names = names(1);
        let mut body = Vec::new();
        let cuts = write(&mut body, &names, std::slice::from_ref(&stock), 16);
        assert_eq!(cuts.len(), 1);
        assert_eq!(cuts[0].path, ["v0", "products"]);
        assert_eq!(cuts[0].at.len(), 6, "100 entries in pieces of 16");
        let read = read(&body, &cuts, 3, || true).unwrap();
        assert_eq!(read["v0"], stock);
    }

    #[test]
    fn cuts_that_do_not_fit_the_body_are_passed_over() {
        let products = Tree::from_entries((0..50).map(|i| (format!("p{i:02}"), Tree::from(format!("a,\"p{i}\":1")))));
        let names = names(1);
        let states = [Tree::from_entries([("products", products)])];
        let mut body = Vec::new();
        let cuts = write(&mut body, &names, &states, 8);
        let whole: BTreeMap<String, Tree> = serde_json::from_slice(&body).unwrap();
        // Each offset moved into the strings, onto a comma inside them,
        // or just past one: the pieces cannot all parse, and the body is
        // read whole.
        for shift in 1..12 {
            let mut wrong = cuts.clone();
            for a in &mut wrong[0].at {
                *a += shift;
            }
            assert_eq!(read(&body, &wrong, 2, || true).unwrap(), whole, "shifted by {shift}");
        }
        let mut wrong = cuts.clone();
        wrong[0].path = vec!["v0".into(), "elsewhere".into()];
        assert_eq!(read(&body, &wrong, 2, || true).unwrap(), whole);
        wrong[0].close = body.len() + 5;
        assert_eq!(read(&body, &wrong, 2, || true).unwrap(), whole);
    }

    #[test]
    fn a_failed_checksum_or_a_bad_body_is_reported_as_before() {
        let names = names(1);
        let states = [Tree::from_entries((0..40).map(|i| (format!("k{i:02}"), Tree::from(i))))];
        let mut body = Vec::new();
        let cuts = write(&mut body, &names, &states, 8);
        assert_eq!(read(&body, &cuts, 2, || false).unwrap_err(), "checksum mismatch");
        let cut = body.len() - 10;
        let err = read(&body[..cut], &cuts[..0], 2, || true).unwrap_err();
        assert!(err.starts_with("bad body: "), "{err}");
    }
}
