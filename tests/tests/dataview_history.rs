//! The data view's past, with the real processes: a chronicler, a data view
//! that keeps only 64 seqs in memory and writes a checkpoint at every
//! multiple of 500 (other snapshots every 0.2 s, pruned to one), and
//! clients.
//!
//! - An exact stream (`/views/stock/stream?exact=true`) opened far behind
//!   the memory gets every seq once, in order, one `patch` message each
//!   (never one with `from`): replayed from a checkpoint, then from the
//!   memory, then live; the `rejected` messages of its client's actions
//!   come just before the patch of their seq, for exactly those seqs; and
//!   a client that does not read for a while still gets every seq.
//! - `GET /views/stock?at=N` at random seqs, several at once while actions
//!   arrive and snapshots are written and pruned, equals the state an
//!   exact client replicated at N, and replays fewer actions than the
//!   checkpoint interval (header `nodb-replayed`); the checkpoints stay
//!   while the other snapshots are pruned.
//! - With a single history reader, concurrent reads far back wait their
//!   turn and all succeed.
//!
//! Clients apply the patches with an independent RFC 6902 implementation
//! (the `json-patch` crate). Random seqs come from a seeded generator whose
//! seed is printed (`NODB_TEST_SEED=…` replays a run).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use nodb_client::{StreamOptions, ViewStream};
use nodb_tests::client::{apply_patch, next_json_within, view};
use nodb_tests::{Rng, Service, block_on, eventually, get, post};
use serde_json::{Value, json};

/// `--snapshot-every`: the checkpoint interval, which bounds a replay.
const EVERY: u64 = 500;
/// `--history`: the seqs the data view keeps in memory.
const MEMORY: u64 = 64;
/// The client whose refused actions the exact streams report.
const REJECTER: &str = "rej";

/// Shuffling, for the random reads.
trait Shuffle {
    fn shuffle<T>(&mut self, v: &mut [T]);
}

impl Shuffle for Rng {
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Posts warehouse actions from two clients: `load`, whose stock changes
/// are mostly accepted (a few impossible sales are refused), and `rej`
/// ([`REJECTER`]), whose corrections are always accepted and whose huge
/// sales are always refused. Remembers the seqs of `rej`'s refused
/// actions.
struct Writer {
    chronicler: String,
    k: u64,
    numbers: HashMap<&'static str, u64>,
    /// Seq → id of each of `rej`'s actions that the reducer refuses.
    refused: BTreeMap<u64, String>,
    /// The last seq acknowledged.
    head: u64,
}

impl Writer {
    fn new(chronicler: &Service) -> Writer {
        Writer {
            chronicler: chronicler.url().to_string(),
            k: 0,
            numbers: HashMap::new(),
            refused: BTreeMap::new(),
            head: 0,
        }
    }

    /// The next action, and whether it is one of `rej`'s refused ones.
    fn action(&mut self) -> (Value, bool) {
        self.k += 1;
        let k = self.k;
        let p = format!("p{}", k % 7);
        let (client, kind, payload) = if k.is_multiple_of(97) {
            (REJECTER, "stock/sold", json!({"product": p, "location": "shelf", "quantity": 1_000_000}))
        } else if k.is_multiple_of(89) {
            (REJECTER, "stock/corrected", json!({"product": p, "location": "back", "quantity": k % 5}))
        } else if k.is_multiple_of(83) {
            ("load", "stock/sold", json!({"product": p, "location": "back", "quantity": 1_000_000}))
        } else {
            match k % 4 {
                0 => ("load", "stock/corrected", json!({"product": p, "location": "shelf", "quantity": k % 9})),
                1 => ("load", "stock/moved", json!({"product": p, "from": "shelf", "to": "back", "quantity": 1})),
                2 => ("load", "stock/sold", json!({"product": p, "location": "back", "quantity": 1})),
                _ => ("load", "unrelated/event", json!(k)),
            }
        };
        let n = self.numbers.entry(client).or_default();
        *n += 1;
        let refused = client == REJECTER && kind == "stock/sold";
        (json!({"id": format!("{client}:{n}"), "type": kind, "payload": payload}), refused)
    }

    /// Posts `n` actions in one batch; the head after them.
    fn post(&mut self, n: usize) -> u64 {
        let (actions, refused): (Vec<Value>, Vec<bool>) = (0..n).map(|_| self.action()).unzip();
        let body = Value::from(actions.clone()).to_string();
        let r =
            post(&format!("{}/actions", self.chronicler), "application/json", body.as_bytes()).expect("POST /actions");
        assert_eq!(r.status, 200, "{r:?}");
        let acks = r.json()["acks"].as_array().cloned().unwrap_or_default();
        assert_eq!(acks.len(), n, "{}", r.body);
        for ((ack, action), refused) in acks.iter().zip(&actions).zip(refused) {
            assert_eq!((&ack["id"], &ack["duplicate"]), (&action["id"], &json!(false)), "{ack}");
            let seq = ack["seq"].as_u64().unwrap();
            assert_eq!(seq, self.head + 1, "the seqs are gap-free: {ack}");
            self.head = seq;
            if refused {
                self.refused.insert(seq, action["id"].as_str().unwrap().to_string());
            }
        }
        self.head
    }

    /// `rej`'s refused actions in seqs `after+1..=upto`, as `(seq, id)`.
    fn refused_between(&self, after: u64, upto: u64) -> Vec<(u64, String)> {
        self.refused.range(after + 1..=upto).map(|(s, id)| (*s, id.clone())).collect()
    }
}

/// A client of an exact stream of view `stock` that replicates it and
/// checks every message as it comes.
struct ExactReplica {
    ws: ViewStream,
    seq: u64,
    state: Value,
    /// The seq of the first state kept.
    first: u64,
    /// The state at each seq from `first` on (`first + i` at index `i`).
    states: Vec<Value>,
    /// `(seq, id)` of each `rejected` message, in the order received.
    rejected: Vec<(u64, String)>,
}

impl ExactReplica {
    fn connect(dataview: &Service, since: Option<u64>, client: &str) -> ViewStream {
        let options =
            StreamOptions { since, exact: true, client: Some(client.to_string()), ..StreamOptions::default() };
        let stock = view(dataview.url(), "stock");
        block_on(stock.open(&options)).unwrap_or_else(|e| panic!("connect {}: {e}", stock.stream_url(&options)))
    }

    /// The next message (within a minute).
    fn next(&mut self) -> Value {
        next_json_within(&mut self.ws, Duration::from_secs(60))
    }

    /// An exact stream after seq `since`, where the client's state is `state`.
    fn since(view: &Service, since: u64, state: Value, client: &str) -> ExactReplica {
        let ws = ExactReplica::connect(view, Some(since), client);
        ExactReplica { ws, seq: since, first: since, states: vec![state.clone()], state, rejected: Vec::new() }
    }

    /// An exact stream without `since`: a snapshot first.
    fn fresh(view: &Service, client: &str) -> ExactReplica {
        let mut ws = ExactReplica::connect(view, None, client);
        let m = next_json_within(&mut ws, Duration::from_secs(60));
        assert_eq!(m["type"], "snapshot", "a new exact client gets a snapshot first: {m}");
        let seq = m["seq"].as_u64().unwrap();
        let state = m["state"].clone();
        ExactReplica { ws, seq, first: seq, states: vec![state.clone()], state, rejected: Vec::new() }
    }

    fn read_until(&mut self, seq: u64) {
        while self.seq < seq {
            self.read_message();
        }
    }

    fn read_message(&mut self) {
        let m = self.next();
        match m["type"].as_str() {
            Some("patch") => {
                assert!(m.get("from").is_none(), "an exact stream never combines seqs (after seq {}): {m}", self.seq);
                // Every seq once, in order: the patch starts right after the last.
                self.seq = *apply_patch(&mut self.state, self.seq, &m).end();
                self.states.push(self.state.clone());
            }
            Some("rejected") => {
                let seq = m["seq"].as_u64().unwrap();
                assert_eq!(
                    seq,
                    self.seq + 1,
                    "a rejection comes just before the patch of its seq (at {}): {m}",
                    self.seq
                );
                assert!(m["reason"].as_str().unwrap_or("").contains("cannot sell"), "{m}");
                self.rejected.push((seq, m["id"].as_str().unwrap().to_string()));
            }
            _ => panic!("unexpected message on an exact stream after seq {}: {m}", self.seq),
        }
    }

    fn state_at(&self, seq: u64) -> &Value {
        assert!(seq >= self.first && seq <= self.seq, "the replica has seqs {}..={}, not {seq}", self.first, self.seq);
        &self.states[(seq - self.first) as usize]
    }

    /// Asserts that the replica saw every seq from `first` to `seq`, once each.
    fn assert_complete(&self) {
        assert_eq!(self.states.len() as u64, self.seq - self.first + 1, "one state per seq");
    }
}

/// An answer to `GET /views/stock?at=N`.
#[derive(Debug)]
struct AtAnswer {
    status: u16,
    /// The `nodb-replayed` header.
    replayed: Option<u64>,
    /// The `Retry-After` header.
    retry_after: Option<String>,
    body: Value,
}

/// `GET {view}/views/stock?at={n}`, once.
fn at_once(view: &str, n: u64) -> AtAnswer {
    let resp = get(&format!("{view}/views/stock?at={n}")).expect("GET ?at");
    let replayed =
        resp.header("nodb-replayed").map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("nodb-replayed: {v}")));
    let retry_after = resp.header("retry-after").map(String::from);
    let body = serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.body));
    AtAnswer { status: resp.status, replayed, retry_after, body }
}

/// `GET {view}/views/stock?at={n}`, retried after a 503 (which must carry
/// Retry-After); the answer and how many 503s came first.
fn at(view: &str, n: u64) -> (AtAnswer, u32) {
    let mut busy = 0;
    loop {
        let a = at_once(view, n);
        if a.status == 503 {
            assert!(a.retry_after.is_some(), "a 503 says when to retry: {a:?}");
            assert_eq!(a.body["error"]["code"], "unavailable", "{a:?}");
            busy += 1;
            assert!(busy < 20, "?at={n} stayed busy: {a:?}");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        return (a, busy);
    }
}

/// Checks an answer to `?at=n`: 200, the seq asked for, and fewer than
/// [`EVERY`] actions replayed. The state.
fn checked(n: u64, a: &AtAnswer) -> Value {
    assert_eq!(a.status, 200, "?at={n}: {a:?}");
    assert_eq!(a.body["seq"], n, "?at={n}: {a:?}");
    let replayed = a.replayed.unwrap_or_else(|| panic!("?at={n} has a nodb-replayed header: {a:?}"));
    assert!(replayed < EVERY, "?at={n} replayed {replayed} actions, not fewer than {EVERY}");
    a.body["state"].clone()
}

fn start(dir: &Path, extra: &[&str]) -> (Service, Service) {
    let data = dir.to_str().unwrap();
    let chronicler = Service::start(&["chronicler", "--data", data, "--listen", "127.0.0.1:0"]).unwrap();
    let mut args =
        vec!["--history", "64", "--snapshot-every", "500", "--snapshot-interval", "0.2", "--keep-snapshots", "1"];
    args.extend_from_slice(extra);
    let view = nodb_tests::start_warehouse_view(&chronicler, &dir.join("snapshots"), &args);
    (chronicler, view)
}

/// Waits until the view is at seq `seq`.
fn wait_for_head(view: &Service, seq: u64) {
    let url = format!("{}/health", view.url());
    eventually(&format!("the view reaches seq {seq}"), || get(&url).is_ok_and(|r| r.json()["seq"] == seq));
}

/// Waits until every checkpoint (a snapshot every [`EVERY`] seqs) up to
/// `head` is in `dir`: checkpoints are written off the apply path, so they
/// can trail the view's seq.
fn wait_for_checkpoints(dir: &Path, head: u64) {
    let wanted: BTreeSet<u64> = (EVERY..=head).step_by(EVERY as usize).collect();
    eventually("every checkpoint up to the head is written", || snapshot_seqs(dir).is_superset(&wanted));
}

/// The `stock` view's initial state.
fn initial_stock() -> Value {
    json!({"products": {}, "total": 0})
}

/// The seqs of the snapshots in `dir` (`{seq:020}.snapshot`).
fn snapshot_seqs(dir: &Path) -> BTreeSet<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeSet::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".snapshot")?.parse().ok()).collect()
}

fn metric(view: &Service, name: &str) -> u64 {
    let body = get(&format!("{}/metrics", view.url())).unwrap().body;
    let line = body.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {body}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn an_exact_client_far_behind_gets_every_seq_once_in_order() {
    let mut rng = Rng::new();
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path(), &[]);
    let mut w = Writer::new(&chronicler);
    for _ in 0..10 {
        w.post(500);
    }
    let head = w.head;
    wait_for_head(&view, head);

    // A client at seq 7, far older than the 64 seqs in memory and not at a
    // checkpoint, that sent some of the refused actions.
    let since = 7;
    let (start_at, _) = at(view.url(), since);
    let replayed_before = metric(&view, "nodb_dataview_history_replayed_total");
    let mut r = ExactReplica::since(&view, since, checked(since, &start_at), REJECTER);
    r.read_until(head / 2);
    // More actions while it reads: the stream goes on from the replay into
    // the memory, then live.
    let poster = std::thread::spawn(move || {
        for _ in 0..30 {
            w.post(50);
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    });
    r.read_until(head);
    let mut w = poster.join().unwrap();
    r.read_until(w.head);
    for _ in 0..20 {
        w.post(1 + rng.below(3) as usize);
        r.read_until(w.head);
    }
    wait_for_head(&view, w.head);
    assert_eq!(r.seq, w.head);
    r.assert_complete();
    let expected = w.refused_between(since, w.head);
    assert!(expected.len() > 50, "{expected:?}");
    assert_eq!(r.rejected, expected, "a rejected message for exactly the client's refused actions");
    let now = get(&format!("{}/views/stock", view.url())).unwrap().json();
    assert_eq!((&r.state, r.seq), (&now["state"], now["seq"].as_u64().unwrap()), "the replica ends equal to the view");
    // The seqs were replayed only while the client was older than the
    // memory: the last ones came from the memory.
    let replayed = metric(&view, "nodb_dataview_history_replayed_total") - replayed_before;
    println!("the exact client far behind: {} seqs, {replayed} replayed", r.seq - since);
    assert!(replayed >= head - MEMORY - since, "the seqs before the memory were replayed: {replayed}");
    assert!(replayed < r.seq - since, "not every seq was replayed: {replayed} of {}", r.seq - since);

    // The replica's state at random seqs is the view's at those seqs.
    let mut ks: Vec<u64> = (0..24).map(|_| since + 1 + rng.below(w.head - since)).collect();
    ks.extend([since + 1, EVERY - 1, EVERY, EVERY + 1, 7 * EVERY, w.head - 1, w.head]);
    for k in ks {
        let (a, _) = at(view.url(), k);
        assert_eq!(&checked(k, &a), r.state_at(k), "the state at seq {k}");
    }

    // A client that opens an exact stream and then does not read for a
    // while: still every seq once, in order, never a combined message.
    let mut slow = ExactReplica::fresh(&view, REJECTER);
    assert_eq!(slow.seq, w.head, "the snapshot is at the head");
    assert_eq!(slow.state, r.state);
    let from = w.head;
    for _ in 0..6 {
        w.post(500);
    }
    std::thread::sleep(Duration::from_secs(2));
    slow.read_until(w.head);
    slow.assert_complete();
    assert_eq!(slow.rejected, w.refused_between(from, w.head));
    wait_for_head(&view, w.head);
    let now = get(&format!("{}/views/stock", view.url())).unwrap().json();
    assert_eq!(slow.state, now["state"]);
    for _ in 0..5 {
        let k = from + 1 + rng.below(w.head - from);
        let (a, _) = at(view.url(), k);
        assert_eq!(&checked(k, &a), slow.state_at(k), "the state at seq {k}");
    }
    println!(
        "replayed for history reads and exact streams: {} actions; {} seqs streamed",
        metric(&view, "nodb_dataview_history_replayed_total"),
        (r.seq - r.first) + (slow.seq - slow.first)
    );
}

#[test]
fn as_of_reads_at_random_seqs_are_exact_and_bounded_while_snapshots_are_pruned() {
    let mut rng = Rng::new();
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path(), &[]);
    let snapshot_dir: PathBuf = dir.path().join("snapshots").join("warehouse");
    let mut w = Writer::new(&chronicler);
    for _ in 0..12 {
        w.post(500);
    }
    let head = w.head;
    wait_for_head(&view, head);

    wait_for_checkpoints(&snapshot_dir, head);

    // The seqs to read: `None` is the head at the time of the read.
    let mut targets: Vec<Option<u64>> = (0..34).map(|_| Some(1 + rng.below(head))).collect();
    targets.extend((0..4).map(|_| Some(1 + rng.below(2 * MEMORY))));
    targets.extend((EVERY..=head).step_by(EVERY as usize).map(Some));
    for m in [EVERY, 3 * EVERY, 8 * EVERY, 11 * EVERY] {
        targets.extend([Some(m - 1), Some(m + 1)]);
    }
    targets.extend([Some(1), Some(head), None, None, None]);
    rng.shuffle(&mut targets);
    assert!(targets.len() >= 60);

    // Actions keep arriving, and the snapshot interval keeps writing and
    // pruning; a watcher checks that no checkpoint ever disappears.
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                w.post(25);
                std::thread::sleep(Duration::from_millis(30));
            }
            w
        })
    };
    let watcher = {
        let (stop, dir) = (stop.clone(), snapshot_dir.clone());
        std::thread::spawn(move || {
            let (mut checkpoints, mut others, mut most_others) = (BTreeSet::new(), BTreeSet::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                let seqs = snapshot_seqs(&dir);
                let missing: Vec<&u64> = checkpoints.iter().filter(|c| !seqs.contains(c)).collect();
                assert!(missing.is_empty(), "checkpoints {missing:?} were deleted; the directory has {seqs:?}");
                let (c, o): (BTreeSet<u64>, BTreeSet<u64>) = seqs.iter().partition(|s| *s % EVERY == 0);
                most_others = most_others.max(o.len());
                checkpoints.extend(c);
                others.extend(o);
                std::thread::sleep(Duration::from_millis(50));
            }
            (checkpoints, others, most_others)
        })
    };

    // Four readers at once.
    let url = view.url().to_string();
    let readers: Vec<_> = targets
        .chunks(targets.len().div_ceil(4))
        .map(|chunk| {
            let (chunk, url) = (chunk.to_vec(), url.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                let mut busy = 0;
                for target in chunk {
                    let n = target
                        .unwrap_or_else(|| get(&format!("{url}/views/stock")).unwrap().json()["seq"].as_u64().unwrap());
                    let (a, b) = at(&url, n);
                    busy += b;
                    answers.push((n, checked(n, &a), a.replayed.unwrap_or_default()));
                }
                (answers, busy)
            })
        })
        .collect();
    let (mut answers, mut busy) = (Vec::new(), 0);
    for reader in readers {
        let (a, b) = reader.join().unwrap();
        answers.extend(a);
        busy += b;
    }
    stop.store(true, Ordering::Relaxed);
    let w = poster.join().unwrap();
    let (checkpoints_seen, others_seen, most_others) = watcher.join().unwrap();
    assert!(w.head > head, "actions arrived during the reads");
    wait_for_head(&view, w.head);

    // The reference: an exact client from the start.
    let mut reference = ExactReplica::since(&view, 0, initial_stock(), "nobody");
    reference.read_until(w.head);
    reference.assert_complete();
    assert!(reference.rejected.is_empty(), "no rejections for a client that sent nothing");
    assert_eq!(reference.state, get(&format!("{}/views/stock", view.url())).unwrap().json()["state"]);
    for (n, state, replayed) in &answers {
        assert_eq!(state, reference.state_at(*n), "the state at seq {n}");
        if n % EVERY == 0 {
            assert_eq!(*replayed, 0, "?at={n} starts from the checkpoint at {n}");
        }
    }
    let replayed: Vec<u64> = answers.iter().map(|a| a.2).collect();
    println!(
        "{} reads ({busy} answered 503 first); replayed per read: max {}, {} from memory or cache",
        answers.len(),
        replayed.iter().max().unwrap(),
        replayed.iter().filter(|r| **r == 0).count()
    );
    assert!(metric(&view, "nodb_dataview_history_replayed_max") < EVERY);

    // Every checkpoint up to the head is kept; the other snapshots stay few.
    wait_for_checkpoints(&snapshot_dir, w.head);
    let seqs = snapshot_seqs(&snapshot_dir);
    let others: Vec<&u64> = seqs.iter().filter(|s| *s % EVERY != 0).collect();
    println!(
        "snapshots: {seqs:?}; during the reads {} checkpoints and {} others seen, at most {most_others} others at once",
        checkpoints_seen.len(),
        others_seen.len()
    );
    assert!(others.len() <= 3, "the snapshots that are not checkpoints are pruned: {seqs:?}");
    assert!(most_others <= 3, "the snapshots that are not checkpoints stayed few: at most {most_others} at once");
}

#[test]
fn with_one_history_reader_concurrent_reads_far_back_wait_their_turn() {
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path(), &["--history-readers", "1"]);
    let mut w = Writer::new(&chronicler);
    for _ in 0..4 {
        w.post(500);
    }
    wait_for_head(&view, w.head);
    wait_for_checkpoints(&dir.path().join("snapshots").join("warehouse"), w.head);
    let ns = [137u64, 388, 499, 730, 1001, 1234, 1499, 1777];
    let barrier = Arc::new(Barrier::new(ns.len()));
    let readers: Vec<_> = ns
        .iter()
        .map(|&n| {
            let (url, barrier) = (view.url().to_string(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (n, at_once(&url, n))
            })
        })
        .collect();
    let answers: Vec<(u64, AtAnswer)> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let mut reference = ExactReplica::since(&view, 0, initial_stock(), "nobody");
    reference.read_until(w.head);
    reference.assert_complete();
    for (n, a) in &answers {
        assert_eq!(a.status, 200, "every read waits its turn rather than failing: ?at={n}: {a:?}");
        assert_eq!(&checked(*n, a), reference.state_at(*n), "the state at seq {n}");
    }
}
