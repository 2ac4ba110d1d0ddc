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
//! the cuts change nothing in what is read. The checksum covers the body,
//! not the header, so the cuts carry a checksum of their own ([`seal`]):
//! cuts that do not match it are passed over (a cut's path is taken on
//! trust: pointed at another empty object, it would move the big one
//! there). Sealed offsets cannot mislead either: a piece that is not a run
//! of whole entries cannot parse (a string or an object cut in two stays
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

/// The checksum of `cuts`, kept beside them in the header.
pub(crate) fn seal(cuts: &[Cut]) -> String {
    blake3::hash(&serde_json::to_vec(cuts).unwrap_or_default()).to_hex().to_string()
}

/// `cuts` if `seal` is theirs, else none (the body is then read whole).
pub(crate) fn sealed<'c>(cuts: &'c [Cut], seal: Option<&str>) -> &'c [Cut] {
    if !cuts.is_empty() && seal == Some(self::seal(cuts).as_str()) { cuts } else { &[] }
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

/// Reads a body written by [`write`] with its `cuts` (their paths as
/// written: see [`sealed`]), on up to `threads` threads, after `verify`
/// (the checksum, run beside the parsing) passes.
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
    // Each job's result in its place; `None` for a job whose thread
    // panicked (then the body is read here, whole, as without cuts).
    let mut results: Vec<Option<Result<Job, ()>>> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads.min(jobs)).map(|_| scope.spawn(work)).collect();
        let mut all: Vec<Option<Result<Job, ()>>> = (0..jobs).map(|_| None).collect();
        let mine = work();
        for (job, result) in others.into_iter().filter_map(|o| o.join().ok()).flatten().chain(mine) {
            all[job] = Some(result);
        }
        all
    });
    if results.iter().any(Option::is_none) {
        drop(results);
        return if verify() { whole() } else { Err("checksum mismatch".into()) };
    }
    if !matches!(results[0], Some(Ok(Job::Verified(true)))) {
        return Err("checksum mismatch".into());
    }
    match join(cuts, &mut results) {
        Some(views) => Ok(views),
        None => {
            // What was read goes before the body is read again.
            drop(results);
            whole()
        }
    }
}

/// The views from [`read`]'s job results (the rest of the body, then
/// each cut's pieces), or `None` if a job failed or a cut's object is not
/// where its path says.
fn join(cuts: &[Cut], results: &mut [Option<Result<Job, ()>>]) -> Option<BTreeMap<String, Tree>> {
    let mut results = results.iter_mut().skip(1).map(Option::take);
    let Some(Some(Ok(Job::Rest(mut views)))) = results.next() else { return None };
    for cut in cuts {
        let mut parts = Vec::with_capacity(cut.at.len() + 1);
        for _ in 0..=cut.at.len() {
            let Some(Some(Ok(Job::Piece(part)))) = results.next() else { return None };
            parts.push(part);
        }
        // Straight into the map: one list of all the entries would be
        // copied into fresh pages (twice over, grown by doubling).
        let object = Tree::Object(Object::from_sorted_runs(parts));
        place(&mut views, &cut.path, object)?;
    }
    Some(views)
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
    // Each span of `close - open + 1` bytes becomes the two of `{}`.
    let mut text = Vec::with_capacity(body.len() + cuts.len() - cuts.iter().map(|c| c.close - c.open).sum::<usize>());
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

    /// `{"name": state, …}` as `serde_json` writes it, the names in the
    /// order given.
    fn by_hand(names: &[String], states: &[Tree]) -> Vec<u8> {
        let parts: Vec<String> = names
            .iter()
            .zip(states)
            .map(|(n, s)| format!("{}:{}", serde_json::to_string(n).unwrap(), serde_json::to_string(s).unwrap()))
            .collect();
        format!("{{{}}}", parts.join(",")).into_bytes()
    }

    /// The value at `path` (a view's name, then keys).
    fn at<'t>(views: &'t BTreeMap<String, Tree>, path: &[String]) -> &'t Tree {
        let mut t = &views[&path[0]];
        for k in &path[1..] {
            let Tree::Object(o) = t else { panic!("{path:?} is not an object") };
            t = o.get(k.as_str()).unwrap();
        }
        t
    }

    /// Views and keys that need escaping, names out of order, a view that
    /// is itself a big object (a cut's path of one), big objects whose
    /// values hold big objects (not cut again), big objects in arrays (not
    /// cut), empty objects and scalars: the body is `serde_json`'s, each
    /// cut is where a big object is, with one offset per `every` entries
    /// after the first, and the pieces read back to the whole.
    #[test]
    fn escapes_and_every_shape_of_view_read_back_in_pieces() {
        let odd = ["", "\"", "\\", "\n", "\u{0}", "\u{1f}", "\u{7f}", "é", "\u{2028}", "/", "a,\"b\":{", "}", "ü"];
        let long = |i: usize| format!("{}{i:03}", "x".repeat(70));
        let keyed = |n: usize, f: &dyn Fn(usize) -> Tree| -> Tree {
            Tree::from_entries((0..n).map(|i| (if i < odd.len() { format!("{}{i}", odd[i]) } else { long(i) }, f(i))))
        };
        let inner = keyed(7, &|i| Tree::from(i as u64));
        let empty = Tree::from_entries(Vec::<(String, Tree)>::new());
        let states = vec![
            keyed(20, &|i| if i % 2 == 0 { inner.clone() } else { empty.clone() }),
            Tree::from_entries([
                ("a\"b", keyed(5, &|i| Tree::from(i as u64))),
                ("big", keyed(17, &|i| Tree::from(format!("{i},\"k\":{{}}")))),
                ("e", empty.clone()),
                ("list", Tree::from_items([inner.clone(), empty.clone()])),
            ]),
            Tree::from_items([inner.clone()]),
            Tree::from(3),
            empty.clone(),
        ];
        let names: Vec<String> = ["z\"\\\n", "", "é/\u{1}", "a", "m"].iter().map(|s| s.to_string()).collect();
        for every in [1, 2, 5, 7, 16, 17, 20, 21] {
            let mut body = Vec::new();
            let cuts = write(&mut body, &names, &states, every);
            assert_eq!(body, by_hand(&names, &states), "every {every}");
            let whole: BTreeMap<String, Tree> = serde_json::from_slice(&body).unwrap();
            assert!(fits(&body, &cuts), "every {every}");
            for c in &cuts {
                let Tree::Object(o) = at(&whole, &c.path) else { panic!("{:?}", c.path) };
                assert!(o.len() >= every);
                assert_eq!(c.at.len(), (o.len() - 1) / every, "every {every}: {:?}", c.path);
                let text: Vec<u8> = serde_json::to_vec(at(&whole, &c.path)).unwrap();
                assert_eq!(&body[c.open..=c.close], &text[..], "every {every}: {:?}", c.path);
            }
            let paths: Vec<&[String]> = cuts.iter().map(|c| &c.path[..]).collect();
            match every {
                1..=20 => assert!(paths.contains(&&names[..1]), "every {every}: the first view is cut"),
                _ => assert!(cuts.is_empty(), "every {every}"),
            }
            for threads in 1..5 {
                assert_eq!(read(&body, &cuts, threads, || true).unwrap(), whole, "every {every}, {threads} threads");
            }
        }
    }

    proptest! {
        /// Cuts whose offsets are anything at all (their paths kept):
        /// the body reads to what reading it whole gives, never to another
        /// state, however many pass `fits`.
        #[test]
        fn cuts_with_any_offsets_read_the_same(
            states in prop::collection::vec(tree(), 1..4),
            every in 1usize..4,
            offsets in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 2..6), 0..6),
        ) {
            let names = names(states.len());
            let mut body = Vec::new();
            let mut cuts = write(&mut body, &names, &states, every);
            let whole: BTreeMap<String, Tree> = serde_json::from_slice(&body).unwrap();
            // Offsets drawn from the places a cut can fit: `{`, `}`, and
            // just after a `,`, wherever they are (in strings too).
            let opens: Vec<usize> = (0..body.len()).filter(|&i| body[i] == b'{').collect();
            let closes: Vec<usize> = (0..body.len()).filter(|&i| body[i] == b'}').collect();
            let afters: Vec<usize> = (1..body.len()).filter(|&i| body[i - 1] == b',').collect();
            for (c, o) in cuts.iter_mut().zip(&offsets) {
                c.open = opens[o[0].index(opens.len())];
                c.close = closes[o[1].index(closes.len())];
                c.at = o[2..].iter().filter(|_| !afters.is_empty()).map(|i| afters[i.index(afters.len())]).collect();
                c.at.sort_unstable();
                c.at.dedup();
            }
            prop_assert_eq!(read(&body, &cuts, 3, || true).unwrap(), whole);
        }
    }

    /// With cuts that fit or not, and a body that parses or not, a failed
    /// checksum is what is reported.
    #[test]
    fn a_failed_checksum_is_reported_whatever_the_cuts() {
        let names = names(2);
        let states = [Tree::from_entries((0..40).map(|i| (format!("k{i:02}"), Tree::from(i)))), Tree::from(1)];
        let mut body = Vec::new();
        let cuts = write(&mut body, &names, &states, 8);
        let mut unfit = cuts.clone();
        unfit[0].close += 1;
        let mut broken = body.clone();
        let last = broken.len() - 1;
        broken[last] = b' ';
        for (body, cuts) in [(&body, &cuts), (&body, &unfit), (&broken, &cuts), (&broken, &unfit)] {
            for threads in 1..4 {
                assert_eq!(read(body, cuts, threads, || false).unwrap_err(), "checksum mismatch");
            }
        }
    }

    /// A cut's path is taken on trust by `read`, so the cuts carry a
    /// seal: one whose path names another, empty, object (which would
    /// move the big object's entries there) no longer matches it, is
    /// passed over, and the body reads as read whole.
    #[test]
    fn a_cut_whose_path_names_another_empty_object_is_not_sealed_and_is_passed_over() {
        let names = names(1);
        let big = Tree::from_entries((0..6).map(|i| (format!("p{i}"), Tree::from(i))));
        let states = [Tree::from_entries([("a", Tree::from_entries(Vec::<(String, Tree)>::new())), ("b", big)])];
        let mut body = Vec::new();
        let mut cuts = write(&mut body, &names, &states, 4);
        assert_eq!(cuts.len(), 1);
        assert_eq!(cuts[0].path, ["v0", "b"]);
        let whole: BTreeMap<String, Tree> = serde_json::from_slice(&body).unwrap();
        let sealed_as_written = seal(&cuts);
        assert_eq!(sealed(&cuts, Some(&sealed_as_written)), &cuts[..]);
        cuts[0].path[1] = "a".into();
        assert!(sealed(&cuts, Some(&sealed_as_written)).is_empty(), "the seal covers the paths");
        assert!(sealed(&cuts, None).is_empty());
        let read_back = read(&body, sealed(&cuts, Some(&sealed_as_written)), 2, || true).unwrap();
        assert_eq!(read_back, whole, "the cut's path moved from b to a");
    }

    /// One byte of a written snapshot's header changed (`"b"` to `"a"` in
    /// a cut's path; the body's checksum does not cover the header) is
    /// refused or reads the same, as the snapshot's fuzz test says of any
    /// byte: the cuts' own seal no longer matches. (On one core the body is
    /// read whole and this passes either way.)
    #[test]
    fn one_byte_of_a_cuts_path_changed_is_refused_or_reads_the_same() {
        use super::super::{Redactions, decode, encode};
        let big = Tree::from_entries((0..CUT_EVERY).map(|i| (format!("p{i:05}"), Tree::from(i as u64))));
        let state = Tree::from_entries([("a", Tree::from_entries(Vec::<(String, Tree)>::new())), ("b", big)]);
        let names: Vec<String> = vec!["stock".into()];
        let states = vec![state];
        let mut bytes = encode("warehouse", 7, &names, &states, None, &Redactions::default());
        let path = br#""path":["stock","b"]"#;
        let i = bytes.windows(path.len()).position(|w| w == path).expect("the cut's path in the header");
        bytes[i + path.len() - 3] = b'a';
        if let Ok((got, _)) = decode(&bytes, "warehouse", 7, &names) {
            let Some(Tree::Object(o)) = &got[0] else { panic!("not an object") };
            let sizes: Vec<usize> =
                ["a", "b"].iter().map(|k| o.get(*k).and_then(Tree::as_object).map_or(0, |o| o.len())).collect();
            assert!(
                got == [Some(states[0].clone())],
                "a damaged header read to another state: a, b of {sizes:?} entries"
            );
        }
    }
}
