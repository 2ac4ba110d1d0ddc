//! Benchmark for the state tree and its structural diff, against
//! `serde_json::Value` and `json_patch::diff`, side by side in one run.
//!
//! Run with `cargo bench -p nodb-shared --bench diff`. For states of 10k,
//! 100k and 1M leaves, three levels deep, it changes one leaf with the path
//! API and reports:
//!
//! - `diff`: our structural diff vs `json_patch::diff` on the equivalent
//!   `serde_json::Value`s, and the ratio;
//! - how our diff time grows from 10k to 1M leaves;
//! - "clone + change one leaf": our tree vs `serde_json::Value`;
//! - memory of the whole state: resident memory grown by building it, each
//!   measured in a fresh child process so the two cannot disturb each other.
//!
//! Timings are medians of repeated runs; this machine is shared, so read the
//! ratios, not the absolute times.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use nodb_shared::{Tree, diff::diff, path};
use serde_json::Value;

/// (leaves, outer, middle, inner): outer × middle × inner = leaves.
const SIZES: [(usize, usize, usize, usize); 3] =
    [(10_000, 10, 10, 100), (100_000, 10, 100, 100), (1_000_000, 100, 100, 100)];

fn build_tree(outer: usize, middle: usize, inner: usize) -> Tree {
    Tree::from_entries((0..outer).map(|a| {
        let m = Tree::from_entries((0..middle).map(|b| {
            let leaves = Tree::from_entries((0..inner).map(|c| (format!("item{c}"), Tree::from((a * b + c) as u64))));
            (format!("loc{b}"), leaves)
        }));
        (format!("product{a}"), m)
    }))
}

fn build_value(outer: usize, middle: usize, inner: usize) -> Value {
    let mut root = serde_json::Map::new();
    for a in 0..outer {
        let mut m = serde_json::Map::new();
        for b in 0..middle {
            let mut leaves = serde_json::Map::new();
            for c in 0..inner {
                leaves.insert(format!("item{c}"), Value::from((a * b + c) as u64));
            }
            m.insert(format!("loc{b}"), Value::Object(leaves));
        }
        root.insert(format!("product{a}"), Value::Object(m));
    }
    Value::Object(root)
}

/// Median time of one call of `f`, over enough runs to fill ~`budget`.
fn median_time<R>(budget: Duration, max_runs: usize, mut f: impl FnMut() -> R) -> Duration {
    let start = Instant::now();
    black_box(f());
    let one = start.elapsed().max(Duration::from_nanos(1));
    let runs = ((budget.as_nanos() / one.as_nanos()) as usize).clamp(5, max_runs);
    // Time batches so that sub-microsecond calls are measurable.
    let batch = ((Duration::from_micros(20).as_nanos() / one.as_nanos()) as usize).max(1);
    let mut samples: Vec<Duration> = (0..runs.div_ceil(batch).max(5))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                black_box(f());
            }
            t.elapsed() / batch as u32
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// In a child process: build one structure and print how much resident
/// memory it added.
fn memory_child(which: &str, leaves: usize) {
    let (_, o, m, i) = SIZES.iter().copied().find(|s| s.0 == leaves).expect("known size");
    let before = resident_bytes();
    let grown = if which == "tree" {
        let t = build_tree(o, m, i);
        let after = resident_bytes();
        black_box(&t);
        after - before
    } else {
        let v = build_value(o, m, i);
        let after = resident_bytes();
        black_box(&v);
        after - before
    };
    println!("{grown}");
}

fn memory_of(which: &str, leaves: usize) -> Option<usize> {
    let out = Command::new(std::env::current_exe().ok()?)
        .env("NODB_BENCH_MEMORY", format!("{which}:{leaves}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn main() {
    if let Ok(spec) = std::env::var("NODB_BENCH_MEMORY") {
        let (which, leaves) = spec.split_once(':').expect("which:leaves");
        memory_child(which, leaves.parse().expect("leaves"));
        return;
    }

    println!("nodb-shared diff benchmark (medians; compare ratios, absolute times drift)\n");
    println!(
        "{:>9} | {:>11} {:>15} {:>9} | {:>16} {:>16} {:>7}",
        "leaves", "nodb diff", "json_patch diff", "speed-up", "nodb clone+set", "Value clone+set", "ratio"
    );
    let mut our_diff_times = Vec::new();
    let mut memory_rows = Vec::new();
    for (leaves, o, m, i) in SIZES {
        let old = build_tree(o, m, i);
        let leaf = path!["product3", "loc7", "item42"];
        let new = old.set(&leaf, 1_000_000u64).unwrap();
        let ours = median_time(Duration::from_millis(300), 200_000, || diff(&old, &new));
        assert_eq!(diff(&old, &new).0.len(), 1);

        let old_v = build_value(o, m, i);
        let mut new_v = old_v.clone();
        *new_v.pointer_mut("/product3/loc7/item42").unwrap() = Value::from(1_000_000u64);
        let theirs = median_time(Duration::from_secs(2), 20, || json_patch::diff(&old_v, &new_v));
        assert_eq!(json_patch::diff(&old_v, &new_v).0.len(), 1);

        let set_ours = median_time(Duration::from_millis(300), 200_000, || old.set(&leaf, 5u64).unwrap());
        let set_value = median_time(Duration::from_secs(2), 50, || {
            let mut v = old_v.clone();
            *v.pointer_mut("/product3/loc7/item42").unwrap() = Value::from(5u64);
            v
        });
        println!(
            "{:>9} | {:>11} {:>15} {:>8.0}× | {:>16} {:>16} {:>6.0}×",
            leaves,
            fmt(ours),
            fmt(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64(),
            fmt(set_ours),
            fmt(set_value),
            set_value.as_secs_f64() / set_ours.as_secs_f64(),
        );
        our_diff_times.push((leaves, ours));
        drop((old, new, old_v, new_v));
        memory_rows.push((leaves, memory_of("tree", leaves), memory_of("value", leaves)));
    }

    let (_, small) = our_diff_times[0];
    let (_, large) = our_diff_times[our_diff_times.len() - 1];
    println!(
        "\nnodb diff time at 1M leaves / at 10k leaves: {:.2}× (flat means the cost follows the change, not the state)",
        large.as_secs_f64() / small.as_secs_f64()
    );

    println!("\nmemory of the whole state (resident memory added by building it, fresh process each):");
    println!("{:>9} | {:>12} {:>18} {:>7}", "leaves", "nodb Tree", "serde_json::Value", "ratio");
    for (leaves, tree, value) in memory_rows {
        match (tree, value) {
            (Some(t), Some(v)) => println!(
                "{:>9} | {:>9.1} MiB {:>14.1} MiB {:>6.2}×",
                leaves,
                t as f64 / 1048576.0,
                v as f64 / 1048576.0,
                t as f64 / v as f64
            ),
            _ => println!("{leaves:>9} | (memory measurement unavailable: no /proc?)"),
        }
    }
}
