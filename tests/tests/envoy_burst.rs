//! Issue 12: the warehouse's `reorder` envoy after a burst, with the real
//! processes (a chronicler, the warehouse data view, the demo supplier and
//! `nodb envoy`).
//!
//! After a burst of 40,000 committed actions over 2,000 other products (a
//! big `stock` view), a product that falls below its reorder threshold right
//! after the burst is ordered exactly once, attributed to the seq that
//! crossed the threshold, within a generous bound (the measured times are
//! printed, not asserted). And when the envoy is killed with SIGKILL and
//! restarted at random moments while bursts of 10,000 actions run, with
//! threshold crossings at random points inside them, every crossing is
//! still ordered exactly once with the right cause, and the supplier holds
//! one order per crossing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nodb_tests::{Rng, Service, get, post, read_actions};
use serde_json::{Value, json};

/// The products the filler actions spread over.
const FILLER_PRODUCTS: u64 = 2_000;
/// Actions per `POST /actions`.
const BATCH: usize = 1_000;

struct System {
    _dir: tempfile::TempDir,
    chronicler: Service,
    dataview: Service,
    supplier: Service,
}

/// A chronicler, a warehouse data view on a fixed address (so a restarted
/// envoy finds it at the same URL) and the demo supplier.
fn system() -> System {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let chronicler = Service::start(&["chronicler", "--data", data, "--listen", "127.0.0.1:0"]).unwrap();
    let snapshots = dir.path().join("snapshots");
    let dataview = Service::start(&[
        "dataview",
        "--chronicler",
        chronicler.url(),
        "--listen",
        &nodb_tests::free_addr(),
        "--snapshots",
        snapshots.to_str().unwrap(),
    ])
    .unwrap();
    let supplier = Service::start(&["supplier", "--listen", "127.0.0.1:0"]).unwrap();
    System { _dir: dir, chronicler, dataview, supplier }
}

impl System {
    fn envoy(&self) -> Service {
        let supplier = format!("supplier={}", self.supplier.url());
        let (chronicler, dataview) = (self.chronicler.url(), self.dataview.url());
        let args = ["envoy", "--app", "warehouse", "--chronicler", chronicler, "--dataview", dataview];
        let rest = ["--set", &supplier, "--attempts", "5", "--listen", "127.0.0.1:0"];
        Service::start(&[&args[..], &rest[..]].concat()).unwrap()
    }

    /// Commits `actions` in one request; the seq of each, in order.
    fn post(&self, actions: &[Value]) -> Vec<u64> {
        let body = Value::from(actions.to_vec()).to_string();
        let r = post(&format!("{}/actions", self.chronicler.url()), "application/json", body.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let acks = r.json()["acks"].as_array().unwrap().clone();
        assert_eq!(acks.len(), actions.len());
        acks.iter().map(|a| a["seq"].as_u64().unwrap()).collect()
    }

    /// Commits `actions` in batches of [`BATCH`], calling `between` after
    /// each; the seq of each action, in order.
    fn post_batches(&self, actions: &[Value], mut between: impl FnMut(usize)) -> Vec<u64> {
        let mut seqs = Vec::with_capacity(actions.len());
        for (i, chunk) in actions.chunks(BATCH).enumerate() {
            seqs.extend(self.post(chunk));
            between(i);
        }
        seqs
    }

    /// The envoy's actions (`envoy/…`, `reorder/…`) in the log so far.
    fn envoy_log(&self) -> Vec<Value> {
        let head = get(&format!("{}/health", self.chronicler.url())).unwrap().json()["head"].as_u64().unwrap();
        let lines = read_actions(self.chronicler.url(), 1, Some(head), &["envoy/", "reorder/"], |_| false);
        lines.into_iter().filter(|v| v.get("seq").is_some()).collect()
    }

    fn outcomes(&self, kind: &str) -> Vec<Value> {
        self.envoy_log().into_iter().filter(|a| a["type"] == kind).collect()
    }

    fn dataview_seq(&self) -> u64 {
        get(&format!("{}/health", self.dataview.url())).unwrap().json()["seq"].as_u64().unwrap_or(0)
    }

    fn supplier_book(&self) -> Value {
        get(&format!("{}/orders", self.supplier.url())).unwrap().json()
    }

    /// Commits the stock of every filler product, and waits until the data
    /// view holds it (so the envoy starts on a view that is up to date).
    fn stock_fillers(&self, shop: &mut Client) {
        let last = *self.post_batches(&shop.stock_fillers(), |_| {}).last().unwrap();
        nodb_tests::eventually("the data view has the filler products", || self.dataview_seq() >= last);
    }

    fn wait_for_start(&self) {
        let start = Instant::now();
        while self.outcomes("envoy/started").is_empty() {
            assert!(start.elapsed() < Duration::from_secs(20), "the envoy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A client numbering its actions `client:1`, `client:2`, …
struct Client {
    name: &'static str,
    n: u64,
}

impl Client {
    fn new(name: &'static str) -> Client {
        Client { name, n: 0 }
    }

    fn action(&mut self, kind: &str, payload: Value) -> Value {
        self.n += 1;
        json!({"id": format!("{}:{}", self.name, self.n), "type": kind, "payload": payload})
    }

    /// Stocks every filler product, so that filler sales are valid.
    fn stock_fillers(&mut self) -> Vec<Value> {
        let stock = |p| json!({"product": format!("f{p}"), "location": "shelf", "quantity": 1_000_000});
        (0..FILLER_PRODUCTS).map(|p| self.action("stock/corrected", stock(p))).collect()
    }

    /// The `i`th filler action: a sale or a correction of a filler product,
    /// which has no threshold and plenty of stock.
    fn filler(&mut self, i: u64) -> Value {
        let product = format!("f{}", i % FILLER_PRODUCTS);
        if i.is_multiple_of(3) {
            self.action("stock/corrected", json!({"product": product, "location": "shelf", "quantity": 1_000_000}))
        } else {
            self.action("stock/sold", json!({"product": product, "location": "shelf", "quantity": 1}))
        }
    }

    /// `product` with 10 in stock and a threshold of 5 (a crossing sells 6).
    fn watched(&mut self, product: &str) -> [Value; 2] {
        [
            self.action("stock/corrected", json!({"product": product, "location": "shelf", "quantity": 10})),
            self.action("stock/threshold_set", json!({"product": product, "threshold": 5, "quantity": 20})),
        ]
    }

    /// The sale that takes `product` below its threshold.
    fn crossing(&mut self, product: &str) -> Value {
        self.action("stock/sold", json!({"product": product, "location": "shelf", "quantity": 6}))
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Asserts that the envoy placed exactly one order per product of `causes`
/// (product → the seq that crossed its threshold), with that seq as its
/// cause, and nothing else; and that the supplier holds exactly those
/// orders.
fn assert_one_order_each(sys: &System, causes: &BTreeMap<String, u64>) {
    let log = sys.envoy_log();
    let failed: Vec<&Value> =
        log.iter().filter(|a| a["type"] != "reorder/placed" && a["type"] != "envoy/started").collect();
    assert!(failed.is_empty(), "unexpected envoy results: {failed:?}");
    let mut by_product: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for a in log.iter().filter(|a| a["type"] == "reorder/placed") {
        assert_eq!(a["id"].as_str().unwrap().split(':').next(), Some("envoy-reorder"), "{a}");
        by_product.entry(a["payload"]["product"].as_str().unwrap().to_string()).or_default().push(a);
    }
    assert_eq!(by_product.keys().collect::<Vec<_>>(), causes.keys().collect::<Vec<_>>(), "products ordered");
    for (product, results) in &by_product {
        assert_eq!(results.len(), 1, "{product} placed exactly once: {results:?}");
        assert_eq!(results[0]["meta"]["cause"], json!(causes[product].to_string()), "{product}'s cause");
        assert_eq!(results[0]["meta"]["key"], json!(product));
    }
    // The envoy's ids are 1, 2, 3, … with no gap.
    let ids: Vec<u64> =
        log.iter().filter_map(|a| a["id"].as_str()?.strip_prefix("envoy-reorder:")?.parse().ok()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    // The supplier dedups by Idempotency-Key (`reorder:<cause>`): one order
    // per crossing, and no call with any other key.
    let book = sys.supplier_book();
    let expected: BTreeSet<(String, String)> =
        causes.iter().map(|(p, c)| (format!("reorder:{c}"), p.clone())).collect();
    let orders: BTreeSet<(String, String)> = book["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["idempotency_key"].as_str().unwrap().to_string(), o["product"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(book["orders"].as_array().unwrap().len(), causes.len(), "{book}");
    assert_eq!(orders, expected, "the supplier's orders");
    let keys: BTreeSet<String> = expected.into_iter().map(|(k, _)| k).collect();
    for call in book["calls"].as_array().unwrap() {
        assert!(keys.contains(call["idempotency_key"].as_str().unwrap()), "{call}");
    }
}

#[test]
fn a_threshold_crossed_right_after_a_burst_is_ordered_once_within_seconds() {
    let sys = system();
    let mut shop = Client::new("shop");
    sys.stock_fillers(&mut shop);
    let envoy = sys.envoy();
    sys.wait_for_start();
    let watched: Vec<Value> = ["apple", "pear", "plum"].iter().flat_map(|p| shop.watched(p)).collect();
    sys.post(&watched);
    let started = Instant::now();
    let burst: Vec<Value> = (0..40_000).map(|i| shop.filler(i)).collect();
    sys.post_batches(&burst, |_| {});
    let cause = sys.post(&[shop.crossing("apple")])[0];
    let committed = Instant::now();
    println!("burst of 40,000 committed in {:?}; the crossing is seq {cause}", committed - started);
    let (mut view_at, mut placed_at) = (None, None);
    let mut last_poll = Instant::now() - Duration::from_secs(1);
    while placed_at.is_none() {
        if view_at.is_none() && sys.dataview_seq() >= cause {
            view_at = Some(committed.elapsed());
        }
        if last_poll.elapsed() >= Duration::from_millis(250) {
            last_poll = Instant::now();
            if !sys.outcomes("reorder/placed").is_empty() {
                placed_at = Some(committed.elapsed());
            }
        }
        assert!(
            committed.elapsed() < Duration::from_secs(60),
            "no reorder 60 s after the crossing (the data view reached it after {view_at:?}, is at {}); \
             the envoy said:\n{}",
            sys.dataview_seq(),
            tail(&envoy.stderr(), 30),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let view_at = view_at.unwrap_or_else(|| committed.elapsed());
    let placed_at = placed_at.unwrap();
    println!(
        "from the crossing's commit: the data view reached it after {view_at:?}, the reorder was recorded after \
         {placed_at:?} ({:?} after the view; the issue's target is 2 s)",
        placed_at.saturating_sub(view_at)
    );
    // Nothing more arrives later.
    std::thread::sleep(Duration::from_millis(1000));
    assert_one_order_each(&sys, &BTreeMap::from([("apple".to_string(), cause)]));
    // The envoy's status says where it is: caught up with the view, one
    // result recorded, nothing in flight, nothing failed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let health: Value = get(&format!("{}/health", envoy.url())).unwrap().json();
        let reorder = health["envoys"][0].clone();
        if reorder["lag"] == 0 || Instant::now() > deadline {
            break reorder;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["name"], "reorder", "{status}");
    assert_eq!(status["lag"], 0, "{status}");
    assert!(status["handled"].as_u64().unwrap() >= cause, "{status}");
    assert_eq!(status["view_seq"], status["handled"], "{status}");
    assert_eq!((status["recorded"].as_u64(), status["in_flight"].as_u64()), (Some(1), Some(0)), "{status}");
    assert_eq!((status["failures"].as_u64(), status["following"].as_bool()), (Some(0), Some(true)), "{status}");
    let metrics = get(&format!("{}/metrics", envoy.url())).unwrap().body;
    assert!(metrics.contains("nodb_envoy_results_recorded_total{envoy=\"reorder\"} 1"), "{metrics}");
}

#[test]
fn sigkill_during_a_burst_still_orders_each_crossing_exactly_once() {
    const ROUNDS: u64 = 4;
    const BURST: u64 = 10_000;
    const CROSSINGS: u64 = 3;
    let sys = system();
    let mut shop = Client::new("shop");
    sys.stock_fillers(&mut shop);
    let mut envoy = sys.envoy();
    sys.wait_for_start();
    let mut rng = Rng::new();
    let mut causes = BTreeMap::new();
    let mut kills = 0;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let products: Vec<String> = (0..CROSSINGS).map(|i| format!("x{round}-{i}")).collect();
        sys.post(&products.iter().flat_map(|p| shop.watched(p)).collect::<Vec<_>>());
        // The burst, with each crossing at a random place inside it.
        let mut at: BTreeMap<u64, &String> = BTreeMap::new();
        for p in &products {
            let mut i = rng.below(BURST);
            while at.contains_key(&i) {
                i = rng.below(BURST);
            }
            at.insert(i, p);
        }
        let mut burst = Vec::new();
        let mut index = BTreeMap::new();
        for i in 0..BURST {
            if let Some(p) = at.get(&i) {
                index.insert((*p).clone(), burst.len());
                burst.push(shop.crossing(p));
            }
            burst.push(shop.filler(round * BURST + i));
        }
        // Killed at least once per round, between batches, after a random
        // pause; sometimes more often.
        let sure = rng.below(burst.len().div_ceil(BATCH) as u64) as usize;
        let seqs = sys.post_batches(&burst, |chunk| {
            if chunk == sure || rng.below(4) == 0 {
                std::thread::sleep(Duration::from_millis(rng.below(300)));
                envoy.kill();
                envoy = sys.envoy();
                kills += 1;
            }
        });
        for (p, i) in index {
            causes.insert(p, seqs[i]);
        }
    }
    let committed = Instant::now();
    println!(
        "{} actions in {ROUNDS} bursts committed in {:?}, the envoy killed {kills} times; crossings: {causes:?}",
        ROUNDS * (BURST + CROSSINGS),
        committed - started
    );
    loop {
        let log = sys.envoy_log();
        let products: BTreeSet<&str> = log.iter().filter_map(|a| a["payload"]["product"].as_str()).collect();
        if causes.keys().all(|p| products.contains(p.as_str())) {
            break;
        }
        assert!(
            committed.elapsed() < Duration::from_secs(90),
            "{} of {} crossings have an outcome 90 s after the last burst (the data view is at {}); the envoy \
             said:\n{}",
            causes.keys().filter(|p| products.contains(p.as_str())).count(),
            causes.len(),
            sys.dataview_seq(),
            tail(&envoy.stderr(), 30),
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("every crossing had its outcome {:?} after the last burst", committed.elapsed());
    std::thread::sleep(Duration::from_millis(1000));
    assert_one_order_each(&sys, &causes);
    let calls = sys.supplier_book()["calls"].as_array().unwrap().len();
    println!("{calls} calls to the supplier for {} orders", causes.len());
}
