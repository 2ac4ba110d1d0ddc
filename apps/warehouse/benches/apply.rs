//! Benchmark (a) and (d) of the data view: apply + diff + serialise rate of
//! the warehouse reducer on a state of 100,000 products, on one core; and
//! the bytes a client receives per seq as a patch versus the full state
//! (what a "send the whole state each time" server such as the Full-Stack
//! Redux tutorial's would send).
//!
//! Run with `cargo bench -p nodb-warehouse --bench apply`.

use std::hint::black_box;
use std::time::Instant;

use nodb_dataview::engine::Engine;
use nodb_shared::protocol::{CommittedAction, ServerMessage};
use serde_json::json;

const PRODUCTS: u64 = 100_000;
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
fn workload(start_seq: u64, n: u64) -> Vec<CommittedAction> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let p = format!("product{}", x % PRODUCTS);
            let seq = start_seq + i;
            match i % 4 {
                0 => act(seq, "stock/corrected", json!({"product": p, "location": "shelf", "quantity": 50 + x % 50})),
                1 => act(seq, "stock/moved", json!({"product": p, "from": "back", "to": "shelf", "quantity": 1})),
                _ => act(seq, "stock/sold", json!({"product": p, "location": "shelf", "quantity": 1})),
            }
        })
        .collect()
}

fn main() {
    let app = nodb_warehouse::views::app();
    let mut engine = Engine::new(app);
    let t = Instant::now();
    let mut seq = 0;
    for p in 0..PRODUCTS {
        for (loc, q) in [("shelf", 40), ("back", 1_000_000)] {
            seq += 1;
            let a =
                act(seq, "stock/corrected", json!({"product": format!("product{p}"), "location": loc, "quantity": q}));
            engine.apply(&a).expect("in sequence");
        }
    }
    println!("built a state of {PRODUCTS} products ({seq} actions) in {:.2?}", t.elapsed());

    let actions = workload(seq + 1, ACTIONS);

    // Where the time goes: the reducers alone, then the diffs alone.
    let states = engine.states().to_vec();
    let t = Instant::now();
    let mut next_states = Vec::with_capacity(actions.len() / 10);
    for a in actions.iter().take(actions.len() / 10) {
        next_states.push(engine.app().reduce(&states, a).unwrap_or_else(|_| states.clone()));
    }
    let reduce_each = t.elapsed() / next_states.len() as u32;
    let t = Instant::now();
    for next in &next_states {
        for (old, new) in states.iter().zip(next) {
            black_box(nodb_shared::diff::diff(old, new));
        }
    }
    let diff_each = t.elapsed() / next_states.len() as u32;
    drop(next_states);
    println!("    reducers alone: {reduce_each:.2?} per action; diffs alone (2 views): {diff_each:.2?} per action");
    let mut patch_bytes = 0usize;
    let mut rejected = 0u64;
    let t = Instant::now();
    for a in &actions {
        let applied = engine.apply(a).expect("in sequence");
        rejected += u64::from(applied.rejection.is_some());
        // Serialised once per seq and view, as the service does for all clients.
        for ops in applied.patches {
            let msg = ServerMessage::Patch { from: None, seq: applied.seq, ops, sources: None };
            let bytes = serde_json::to_vec(&msg).expect("serialise");
            patch_bytes += bytes.len();
            black_box(bytes);
        }
    }
    let elapsed = t.elapsed();
    let rate = ACTIONS as f64 / elapsed.as_secs_f64();
    println!(
        "(a) apply + diff + serialise, 2 views, one thread: {ACTIONS} actions in {elapsed:.2?} = {rate:.0} actions/s \
         ({rejected} rejected; target ≥ 1,000,000/s)"
    );

    let stock = engine.state(0).expect("stock view");
    let full = stock.to_json_string().len();
    let per_seq = patch_bytes as f64 / ACTIONS as f64 / 2.0;
    println!(
        "(d) bytes per seq to a client of one view: patch {per_seq:.0} B vs full `stock` state {full} B \
         = {:.0}× less with patches",
        full as f64 / per_seq
    );
}
