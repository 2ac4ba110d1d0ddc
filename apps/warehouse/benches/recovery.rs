//! Benchmark (c) of the data view: recovery from a snapshot of 1,000,000
//! keys (warehouse products) plus a 1,000,000-action tail.
//!
//! It writes the snapshot through the real snapshot store (local files,
//! fsync), then times what start-up does: load and verify the newest
//! snapshot, then parse and apply every committed action of the tail (as
//! JSON lines, as they arrive from the chronicler; the network itself is
//! not included). Run with `cargo bench -p nodb-warehouse --bench recovery`;
//! `NODB_BENCH_KEYS` and `NODB_BENCH_TAIL` change the sizes, and
//! `NODB_BENCH_ONLY` (`fresh`, `one`, `batches` or `alone`) runs one part.
//! `fresh` loads the snapshot in new processes (this bench run again), as
//! a data view that starts does: in this one, the load reuses memory the
//! bench freed before it, and pays no page faults for it.

use std::time::Instant;

/// The allocator the `nodb` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use nodb_dataview::app::App;
use nodb_dataview::batch::BATCH;
use nodb_dataview::engine::{Diffs, Engine};
use nodb_dataview::hub::Hub;
use nodb_dataview::snapshot::Snapshots;
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;

fn size(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Set in the processes the `fresh` part starts: the snapshot folder to
/// load from, after which the process ends.
const LOAD_DIR: &str = "NODB_BENCH_LOAD_DIR";

fn main() {
    if let Ok(dir) = std::env::var(LOAD_DIR) {
        return load_fresh(std::path::Path::new(&dir));
    }
    let keys = size("NODB_BENCH_KEYS", 1_000_000);
    let tail = size("NODB_BENCH_TAIL", 1_000_000);
    let only = std::env::var("NODB_BENCH_ONLY").ok();
    let wanted = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let app = nodb_warehouse::views::app();
    let names: Vec<String> = app.views.iter().map(|v| v.name.clone()).collect();

    let t = Instant::now();
    let products = Tree::from_entries((0..keys).map(|p| {
        let entry = Tree::from_entries([
            ("locations", Tree::from_entries([("shelf", Tree::from(1_000_000u64))])),
            ("total", Tree::from(1_000_000u64)),
        ]);
        (format!("product{p}"), entry)
    }));
    let stock = Tree::from_entries([("products", products), ("total", Tree::from(keys * 1_000_000))]);
    let mut states = app.initial_states();
    states[0] = stock;
    println!("built a state of {keys} products in {:.2?}", t.elapsed());

    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = Snapshots::local(dir.path(), "warehouse", 3).expect("snapshots");
    let t = Instant::now();
    runtime.block_on(snapshots.write(1, &names, states.clone(), &Default::default())).expect("write");
    println!("wrote the snapshot (serialise + fsync) in {:.2?}", t.elapsed());
    drop(states);

    if wanted("fresh") {
        for _ in 0..3 {
            let out = std::process::Command::new(std::env::current_exe().expect("this bench"))
                .env(LOAD_DIR, dir.path())
                .output()
                .expect("the bench, run again");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }

    let lines: Vec<String> = (0..tail)
        .map(|i| {
            let seq = 2 + i;
            let p = (i * 7919) % keys;
            format!(
                r#"{{"seq":{seq},"ts":{},"id":"bench:{seq}","type":"stock/sold","payload":{{"product":"product{p}","location":"shelf","quantity":1}}}}"#,
                1_700_000_000_000u64 + seq
            )
        })
        .collect();

    let replay = |app: App, label: &str| {
        let started = Instant::now();
        let found = runtime.block_on(snapshots.load_latest(&names)).expect("load").expect("a snapshot");
        let (seq, loaded) = (found.seq, found.states);
        let states: Vec<Tree> = loaded
            .into_iter()
            .zip(nodb_warehouse::views::app().initial_states())
            .zip(&names)
            .filter(|(_, name)| app.views.iter().any(|v| &v.name == *name))
            .map(|((s, i), _)| s.unwrap_or(i))
            .collect();
        let mut engine = Engine::restore(app, seq, states);
        let loaded_in = started.elapsed();
        let t = Instant::now();
        for line in &lines {
            let action: CommittedAction = serde_json::from_str(line).expect("valid line");
            let applied = engine.apply_with(&action, Diffs::Skip).expect("in sequence");
            assert!(applied.rejection.is_none());
        }
        let replayed_in = t.elapsed();
        let total = started.elapsed();
        println!(
            "{label}: load + verify the snapshot {loaded_in:.2?}, replay {tail} actions {replayed_in:.2?} \
             ({:.0} actions/s); total {total:.2?}",
            tail as f64 / replayed_in.as_secs_f64()
        );
    };
    if wanted("one") {
        replay(app.without_drafts(), "(c) recovery, one action at a time, both views, pure reducers (before drafts)");
        replay(app.clone(), "(c) recovery, one action at a time, both views, drafted (target <= 3 s)");
    }
    // What the data view does when far behind the head: batches of actions
    // through the hub, which applies them in place (all views drafted),
    // each parsed then applied, or (as the follower does) each applied on
    // a thread while the next is parsed.
    for overlap in [false, true].into_iter().filter(|_| wanted("batches")) {
        let started = Instant::now();
        let found = runtime.block_on(snapshots.load_latest(&names)).expect("load").expect("a snapshot");
        let (seq, loaded) = (found.seq, found.states);
        let states: Vec<Tree> = loaded.into_iter().zip(app.initial_states()).map(|(s, i)| s.unwrap_or(i)).collect();
        let hub = Hub::new(Engine::restore(app.clone(), seq, states), 4096);
        let loaded_in = started.elapsed();
        let t = Instant::now();
        std::thread::scope(|s| {
            let mut applying: Option<std::thread::ScopedJoinHandle<'_, ()>> = None;
            for chunk in lines.chunks(BATCH) {
                let batch: Vec<CommittedAction> =
                    chunk.iter().map(|line| serde_json::from_str(line).expect("valid line")).collect();
                if let Some(previous) = applying.take() {
                    previous.join().expect("applied");
                }
                let hub = &hub;
                let apply = move || hub.apply_batch(&batch).expect("in sequence");
                if overlap {
                    applying = Some(s.spawn(apply));
                } else {
                    apply();
                }
            }
            if let Some(last) = applying {
                last.join().expect("applied");
            }
        });
        let replayed_in = t.elapsed();
        let how = if overlap { "the next parsed meanwhile" } else { "parsed, then applied" };
        println!(
            "(c) recovery, in batches of {BATCH} (in place, {how}): load + verify the snapshot {loaded_in:.2?}, \
             replay {tail} actions {replayed_in:.2?} ({:.0} actions/s); total {:.2?} (target <= 3 s)",
            tail as f64 / replayed_in.as_secs_f64(),
            started.elapsed()
        );
        assert_eq!(hub.current_seq(), 1 + tail);
        if !overlap {
            // The ledger folds an hour's minute buckets into its hour bucket
            // when the next hour begins: the tail's hour, once.
            let (_, states) = hub.current();
            let entries: usize = states[1]
                .get("/sales/minutes")
                .and_then(Tree::as_object)
                .map_or(0, |m| m.values().filter_map(Tree::as_object).map(|b| b.len()).sum());
            drop(states);
            let next_hour = (1_700_000_000_000u64 + 1 + tail) / 3_600_000 * 3_600_000 + 3_600_000;
            let line = format!(
                r#"{{"seq":{},"ts":{next_hour},"id":"bench:fold","type":"stock/sold","payload":{{"product":"product0","location":"shelf","quantity":1}}}}"#,
                2 + tail
            );
            let action: CommittedAction = serde_json::from_str(&line).expect("valid line");
            let t = Instant::now();
            hub.apply_batch(&[action]).expect("in sequence");
            println!(
                "    the next hour's first sale, folding {entries} minute entries into the hour: {:.2?}",
                t.elapsed()
            );
        }
    }
    // Where the time goes: each view on its own.
    for view in app.views.iter().filter(|_| wanted("alone")) {
        let alone = App { name: app.name.clone(), views: vec![view.clone()] };
        replay(alone, &format!("    the `{}` view alone", view.name));
    }
}

/// Loads and verifies the newest snapshot in `dir` in this new process,
/// and says how long that took and the memory it holds then.
fn load_fresh(dir: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let names: Vec<String> = nodb_warehouse::views::app().views.iter().map(|v| v.name.clone()).collect();
    let snapshots = Snapshots::local(dir, "warehouse", 3).expect("snapshots");
    let t = Instant::now();
    let found = runtime.block_on(snapshots.load_latest(&names)).expect("load").expect("a snapshot");
    let took = t.elapsed();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let resident = status.lines().find(|l| l.starts_with("VmRSS:")).map_or("", |l| l["VmRSS:".len()..].trim());
    println!("(c) the snapshot loaded + verified in a new process: {took:.2?}, resident {resident}");
    drop(found);
}
