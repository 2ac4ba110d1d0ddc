//! Benchmark (a) and (d) of the data view: the rate at which the engine
//! applies warehouse actions, makes each seq's patch and serialises it, on
//! one core, on a state of 100,000 and of 1,000,000 products; and the
//! bytes a client receives per seq as a patch versus the full state (what
//! a "send the whole state each time" server such as the Full-Stack Redux
//! tutorial's would send).
//!
//! The ways, side by side in one run, over the same actions from the
//! same state:
//! - **pure + diff**: the reducers as functions from the state before to
//!   the state after (`App::without_drafts`), each patch a structural diff and each
//!   state checked against the limits by comparing it with the one before;
//!   the engine before drafted views;
//! - **drafted, versions kept**: the warehouse's drafted reducers
//!   (`View::drafted`) with every seq's states kept until the next one, as
//!   a live data view's history keeps them: each edit copies the path to
//!   what it changes;
//! - **drafted, in place**: the same with nothing else holding the states,
//!   as in a replay or a catch-up batch: edits copy nothing;
//! - **drafted, replay**: in place with no patch at all
//!   (`Diffs::Nothing`: the drafts keep only what undoes their edits), as
//!   `nodb replay` and a rebuild apply actions;
//! - **drafted, replay, threads** (not on one core): the replay in
//!   batches of 1,024 through `Engine::apply_run`, each view on a thread
//!   of its own, as a data view applies a batch when it is behind;
//! - **drafted, replay, lanes** (not on one core): the same batches as a
//!   series through `Engine::apply_runs`, each view going from batch to
//!   batch on a thread of its own, as a data view applies the batches
//!   waiting for it;
//! - **each view alone, read ahead** (`read-ahead`, not in the default
//!   run): each view in the threads way by itself, without and with its
//!   read-ahead hint (`View::reading_ahead`), and over 1,000 products;
//! - **live, through the hub**: one action at a time through
//!   `Hub::apply`, with its history of 4,096 seqs, and each seq's patch
//!   message for both views as a client one seq behind asks for it
//!   (`Hub::catch_up`), as a data view at the head applies actions.
//!
//! Run with `cargo bench -p nodb-warehouse --bench apply [-- PRODUCTS…]`;
//! `-- --only in-place 100000` runs one way alone (`pure`, `kept`,
//! `in-place`, `replay`, `threads`, `lanes`, `live` or `read-ahead`), for
//! a profiler.

/// The allocator the `nodb` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use nodb_dataview::engine::{Diffs, Engine};
use nodb_dataview::hub::{CatchUp, Hub, seq_patch_message};
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;

const ACTIONS: u64 = 200_000;

fn act(seq: u64, kind: &str, payload: serde_json::Value) -> CommittedAction {
    CommittedAction {
        seq,
        ts: 1_700_000_000_000 + seq,
        id: format!("bench:{seq}"),
        kind: kind.into(),
        payload,
        meta: None,
        client: None,
    }
}

/// A deterministic mix: corrections, moves and sales on random products.
fn workload(products: u64, start_seq: u64, n: u64) -> Vec<CommittedAction> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let p = format!("product{}", x % products);
            let seq = start_seq + i;
            match i % 4 {
                0 => act(seq, "stock/corrected", json!({"product": p, "location": "shelf", "quantity": 50 + x % 50})),
                1 => act(seq, "stock/moved", json!({"product": p, "from": "back", "to": "shelf", "quantity": 1})),
                _ => act(seq, "stock/sold", json!({"product": p, "location": "shelf", "quantity": 1})),
            }
        })
        .collect()
}

/// What one way measured.
struct Run {
    elapsed: Duration,
    serialise: Duration,
    patch_bytes: usize,
    rejected: u64,
}

/// Applies `actions` to `engine` and writes every seq's patch message as
/// the data view's hub does (once per seq and view, for all clients: from
/// the recorded edits, or by a diff); with `keep`, every seq's states stay
/// alive until the next seq's.
fn run(engine: &mut Engine, actions: &[CommittedAction], keep: bool) -> Run {
    let (mut patch_bytes, mut rejected, mut serialise) = (0usize, 0u64, Duration::ZERO);
    let diffs = engine.app().views.iter().any(|v| v.draft.is_none());
    let mut kept = Vec::new();
    let nothing = Tree::Null;
    let t = Instant::now();
    for a in actions {
        if keep || diffs {
            kept = engine.states().to_vec();
        }
        let applied = engine.apply_with(a, Diffs::Skip).expect("in sequence");
        rejected += u64::from(applied.rejection.is_some());
        let s = Instant::now();
        for (v, new) in engine.states().iter().enumerate() {
            let old = kept.get(v).unwrap_or(&nothing);
            let bytes = seq_patch_message(applied.seq, applied.edits.get(v), old, new);
            patch_bytes += bytes.len();
            black_box(bytes);
        }
        serialise += s.elapsed();
    }
    let elapsed = t.elapsed();
    drop(kept);
    Run { elapsed, serialise, patch_bytes, rejected }
}

/// Applies `actions` one at a time through a hub over `engine` (its
/// history as long as a data view's by default), and has each seq's patch
/// message for every view as a client one seq behind does.
fn live(engine: Engine, actions: &[CommittedAction]) -> Run {
    let views = engine.states().len();
    let hub = Hub::new(engine, 4096);
    let (mut patch_bytes, mut serialise) = (0usize, Duration::ZERO);
    let t = Instant::now();
    for a in actions {
        hub.apply(a).expect("in sequence");
        let s = Instant::now();
        for v in 0..views {
            if let (CatchUp::Patch(bytes), _) = hub.catch_up(v, Some(a.seq - 1)) {
                patch_bytes += bytes.len();
                black_box(bytes);
            }
        }
        serialise += s.elapsed();
    }
    let elapsed = t.elapsed();
    // A client further behind gets one combined patch, built on its first
    // request.
    let head = actions.last().map_or(0, |a| a.seq);
    for behind in [16, 256, 4000] {
        let s = Instant::now();
        let sizes: Vec<usize> =
            (0..views).map(|v| hub.catch_up(v, Some(head - behind)).0.into_message().map_or(0, |m| m.len())).collect();
        println!("      combined patch from {behind} seqs behind: {:.2?} for both views, {sizes:?} bytes", s.elapsed());
    }
    Run { elapsed, serialise, patch_bytes, rejected: hub.metrics.rejected.load(Relaxed) }
}

/// Applies `actions` to `engine` as a replay does: states only, no patch.
fn replay(engine: &mut Engine, actions: &[CommittedAction]) -> Run {
    let mut rejected = 0;
    let t = Instant::now();
    for a in actions {
        let applied = engine.apply_with(a, Diffs::Nothing).expect("in sequence");
        rejected += u64::from(applied.rejection.is_some());
    }
    Run { elapsed: t.elapsed(), serialise: Duration::ZERO, patch_bytes: 0, rejected }
}

/// [`replay`] in batches of 1,024 through `Engine::apply_run`, as a data
/// view catching up applies them: each view on a thread of its own.
fn replay_on_threads(engine: &mut Engine, actions: &[CommittedAction]) -> Run {
    let mut rejected = 0;
    let t = Instant::now();
    for batch in actions.chunks(1024) {
        let applied = engine.apply_run(batch).expect("in sequence");
        rejected += applied.iter().filter(|a| a.rejection.is_some()).count() as u64;
    }
    Run { elapsed: t.elapsed(), serialise: Duration::ZERO, patch_bytes: 0, rejected }
}

/// [`replay_on_threads`]'s batches as one series through the lanes
/// (`Engine::apply_runs`), as a data view applies the batches waiting for
/// it.
fn replay_in_lanes(engine: &mut Engine, actions: &[CommittedAction]) -> Run {
    let rejected = std::cell::Cell::new(0);
    let count = |applied: &[nodb_dataview::engine::Applied]| {
        rejected.set(rejected.get() + applied.iter().filter(|a| a.rejection.is_some()).count() as u64);
    };
    // Built, and kept to the end, outside the time, as `actions` are.
    let runs: Vec<_> = actions.chunks(1024).map(|b| std::sync::Arc::new(b.to_vec())).collect();
    let t = Instant::now();
    let mut batches = runs.iter().cloned();
    while let Some(first) = batches.next() {
        for left in engine.apply_runs(first, &mut || batches.next(), &mut |_, applied| count(&applied)) {
            count(&engine.apply_run(&left).expect("in sequence"));
        }
    }
    let rejected = rejected.get();
    Run { elapsed: t.elapsed(), serialise: Duration::ZERO, patch_bytes: 0, rejected }
}

fn report(name: &str, r: &Run, baseline: Option<f64>) -> f64 {
    let rate = ACTIONS as f64 / r.elapsed.as_secs_f64();
    let each = r.elapsed / ACTIONS as u32;
    let ser = r.serialise / ACTIONS as u32;
    let ratio = baseline.map(|b| format!(" = {:.1}× pure + diff", rate / b)).unwrap_or_default();
    println!(
        "    {name:<24} {rate:>9.0} actions/s ({each:.2?} per action: apply {:.2?}, patch message {ser:.2?}; \
         {} rejected){ratio}",
        each.saturating_sub(ser),
        r.rejected
    );
    rate
}

/// Each view alone, in batches of 1,024 on one thread: without its
/// read-ahead hint and with it, twice, then the same over 1,000 of the
/// products (whose nodes stay in the cache: what reading ahead could win
/// at most).
fn read_ahead(app: &nodb_dataview::app::App, products: u64, seq: u64) {
    println!("(e) each view alone, batches of 1,024 on one thread, {ACTIONS} actions, without and with read-ahead:");
    for (v, view) in app.views.iter().enumerate() {
        let mut states = vec![build(app, products).0.states()[v].clone()];
        let mut at = seq;
        for (hint, over) in
            [(false, products), (true, products), (false, products), (true, products), (false, 1_000), (true, 1_000)]
        {
            let mut one = app.clone();
            one.views = vec![view.clone()];
            if !hint {
                one.views[0].read_ahead = None;
            }
            let mut engine = Engine::restore(one, at, states);
            let actions = workload(over, at + 1, ACTIONS);
            let name = format!("{} {}, {over}", view.name, if hint { "read ahead" } else { "plain" });
            report(&name, &replay_on_threads(&mut engine, &actions), None);
            at += ACTIONS;
            states = engine.states().to_vec();
        }
    }
}

/// An engine whose `stock` holds `products` products (two locations
/// each), and the seq it is at.
fn build(app: &nodb_dataview::app::App, products: u64) -> (Engine, u64) {
    let mut engine = Engine::new(app.clone());
    let mut seq = 0;
    for p in 0..products {
        for (loc, q) in [("shelf", 40), ("back", 1_000_000)] {
            seq += 1;
            let a =
                act(seq, "stock/corrected", json!({"product": format!("product{p}"), "location": loc, "quantity": q}));
            engine.apply(&a).expect("in sequence");
        }
    }
    (engine, seq)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let sizes: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![100_000, 1_000_000] } else { sizes };
    for products in sizes {
        let app = nodb_warehouse::views::app();
        let t = Instant::now();
        let (mut engine, seq) = build(&app, products);
        println!("{products} products: built the state ({seq} actions) in {:.2?}", t.elapsed());
        let actions = workload(products, seq + 1, ACTIONS);

        let wanted = |way: &str| only.as_deref().is_none_or(|o| o == way);
        if only.as_deref() == Some("read-ahead") {
            read_ahead(&app, products, seq);
            continue;
        }
        println!("(a) apply + patch message, 2 views, one thread, {ACTIONS} actions:");
        let mut base_rate = None;
        if wanted("pure") {
            // The pure engine shares the built states; it copies paths anyway.
            let mut diffing = Engine::restore(app.without_drafts(), seq, engine.states().to_vec());
            base_rate = Some(report("pure + diff", &run(&mut diffing, &actions, false), None));
        }
        if wanted("kept") {
            let mut kept = engine.clone();
            report("drafted, versions kept", &run(&mut kept, &actions, true), base_rate);
        }
        // The same states built apart, sharing no node with `engine`'s, so
        // that both are edited in place.
        let mut replayed = wanted("replay").then(|| build(&app, products).0);
        if let Some(replayed) = &mut replayed {
            report("drafted, replay", &replay(replayed, &actions), base_rate);
        }
        if wanted("threads") {
            let mut threaded = build(&app, products).0;
            report("drafted, replay, threads", &replay_on_threads(&mut threaded, &actions), base_rate);
            if let Some(replayed) = &replayed {
                assert_eq!(replayed.states(), threaded.states(), "the same states with the views on threads");
            }
        }
        if wanted("lanes") {
            let mut laned = build(&app, products).0;
            report("drafted, replay, lanes", &replay_in_lanes(&mut laned, &actions), base_rate);
            if let Some(replayed) = &replayed {
                assert_eq!(replayed.states(), laned.states(), "the same states with the views in lanes");
            }
        }
        if wanted("live") {
            // States of their own, as the hub applies in place when nothing
            // else holds them.
            report("live, through the hub", &live(build(&app, products).0, &actions), base_rate);
        }
        if !wanted("in-place") {
            continue;
        }
        let in_place = run(&mut engine, &actions, false);
        report("drafted, in place", &in_place, base_rate);
        if let Some(replayed) = &replayed {
            assert_eq!(replayed.states(), engine.states(), "the same states with or without patches");
        }

        let stock = engine.state(0).expect("stock view");
        let full = stock.to_json_string().len();
        let per_seq = in_place.patch_bytes as f64 / ACTIONS as f64 / 2.0;
        println!(
            "(d) bytes per seq to a client of one view: patch {per_seq:.0} B vs full `stock` state {full} B \
             = {:.0}× less with patches",
            full as f64 / per_seq
        );
    }
}
