//! Envoys with the real processes: a chronicler, the warehouse data view,
//! the demo supplier and `nodb envoy`. The envoy is killed with SIGKILL at
//! random points and the log still holds exactly one outcome per trigger;
//! rebuilds, snapshot restores, redactions and `@@nodb/set_state` never
//! trigger it; a
//! new envoy ignores history; failures are retried, then recorded; and the
//! webhook envoy delivers in order and resumes after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nodb_tests::{Rng, Service, committed_actions, dispatch, get, post, webhook_receiver};
use serde_json::{Value, json};

struct System {
    dir: tempfile::TempDir,
    chronicler: Service,
    dataview: Service,
    supplier: Service,
}

/// A data view on `listen` (the same address across restarts, as envoys
/// keep its URL).
fn start_dataview(chronicler: &Service, snapshots: &std::path::Path, listen: &str) -> Service {
    Service::start(&[
        "dataview",
        "--chronicler",
        chronicler.url(),
        "--listen",
        listen,
        "--snapshots",
        snapshots.to_str().unwrap(),
    ])
    .unwrap()
}

fn system() -> System {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dataview = start_dataview(&chronicler, &dir.path().join("snapshots"), &format!("127.0.0.1:{port}"));
    let supplier = Service::start(&["supplier", "--listen", "127.0.0.1:0"]).unwrap();
    System { dir, chronicler, dataview, supplier }
}

impl System {
    fn envoy(&self, attempts: &str) -> Service {
        let supplier = format!("supplier={}", self.supplier.url());
        Service::start(&[
            "envoy",
            "--app",
            "warehouse",
            "--chronicler",
            self.chronicler.url(),
            "--dataview",
            self.dataview.url(),
            "--set",
            &supplier,
            "--attempts",
            attempts,
        ])
        .unwrap()
    }

    fn control(&self, body: Value) {
        let r = post(&format!("{}/control", self.supplier.url()), "application/json", body.to_string().as_bytes());
        assert_eq!(r.unwrap().status, 200);
    }

    fn supplier_book(&self) -> Value {
        get(&format!("{}/orders", self.supplier.url())).unwrap().json()
    }

    /// Every committed action.
    fn log(&self) -> Vec<Value> {
        committed_actions(self.chronicler.url())
    }

    fn envoy_actions(&self, kind: &str) -> Vec<Value> {
        self.log().into_iter().filter(|a| a["type"] == kind).collect()
    }

    /// Makes `product`'s stock fall below its threshold; the seq where it
    /// did (the cause of its reorder).
    fn trigger(&self, client: &str, product: &str) -> u64 {
        let p = |n: u64, kind: &str, payload: Value| json!({"id": format!("{client}:{n}"), "type": kind, "payload": payload});
        let base = self
            .log()
            .iter()
            .filter(|a| a["id"].as_str().is_some_and(|i| i.starts_with(&format!("{client}:"))))
            .count() as u64;
        dispatch(
            self.chronicler.url(),
            &[
                p(base + 1, "stock/corrected", json!({"product": product, "location": "shelf", "quantity": 10})),
                p(base + 2, "stock/threshold_set", json!({"product": product, "threshold": 5, "quantity": 20})),
                p(base + 3, "stock/sold", json!({"product": product, "location": "shelf", "quantity": 6})),
            ],
        );
        self.log().iter().find(|a| a["id"] == format!("{client}:{}", base + 3)).unwrap()["seq"].as_u64().unwrap()
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_at_random_points_never_records_an_outcome_twice() {
    let sys = system();
    let mut envoy = sys.envoy("5");
    wait_until("the envoy has started", Duration::from_secs(20), || !sys.envoy_actions("envoy/started").is_empty());
    let mut causes = BTreeMap::new();
    // Once for certain: killed after the supplier took the order, before the
    // result was recorded. The restarted envoy repeats the call with the
    // same key and records the one outcome.
    sys.control(json!({"delay_ms": 1500}));
    let cause = sys.trigger("shop", "first");
    causes.insert("first".to_string(), cause);
    let key = format!("reorder:{cause}");
    let calls_for = |key: &str| -> Vec<String> {
        let book = sys.supplier_book();
        let calls = book["calls"].as_array().unwrap().iter();
        calls.filter(|c| c["idempotency_key"] == key).map(|c| c["outcome"].as_str().unwrap().to_string()).collect()
    };
    wait_until("the supplier has the call", Duration::from_secs(20), || !calls_for(&key).is_empty());
    envoy.kill();
    assert!(sys.envoy_actions("reorder/placed").is_empty());
    sys.control(json!({"delay_ms": 120}));
    envoy = sys.envoy("5");
    wait_until("the repeated call", Duration::from_secs(20), || calls_for(&key).len() == 2);
    assert_eq!(calls_for(&key), ["created", "replayed"]);
    let mut rng = Rng::new();
    for round in 0..12 {
        let product = format!("p{round}");
        causes.insert(product.clone(), sys.trigger("shop", &product));
        // Kill it before, during or after the call to the supplier, or
        // after the result was recorded; sometimes twice.
        for _ in 0..=rng.below(2) {
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            envoy.kill();
            envoy = sys.envoy("5");
        }
    }
    let start = Instant::now();
    while sys.envoy_actions("reorder/placed").len() < causes.len() {
        let said = envoy.stderr();
        assert!(start.elapsed() < Duration::from_secs(60), "not every reorder placed; the envoy said:\n{said}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let placed = sys.envoy_actions("reorder/placed");
    let mut by_product: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for a in &placed {
        by_product.entry(a["payload"]["product"].as_str().unwrap().to_string()).or_default().push(a);
    }
    assert_eq!(by_product.keys().collect::<Vec<_>>(), causes.keys().collect::<Vec<_>>());
    for (product, results) in &by_product {
        assert_eq!(results.len(), 1, "{product} placed exactly once: {results:?}");
        assert_eq!(results[0]["meta"]["cause"], json!(causes[product].to_string()));
    }
    // The envoy's ids are 1, 2, 3, … with no gap: a result was never skipped.
    let ids: Vec<u64> =
        sys.log().iter().filter_map(|a| a["id"].as_str()?.strip_prefix("envoy-reorder:")?.parse().ok()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    // The supplier made one order per trigger, whatever the repeats, and
    // every repeated call had the same idempotency key.
    let book = sys.supplier_book();
    let orders = book["orders"].as_array().unwrap();
    assert_eq!(orders.len(), causes.len(), "{book}");
    let expected_keys: BTreeSet<String> = causes.values().map(|c| format!("reorder:{c}")).collect();
    let order_keys: BTreeSet<String> =
        orders.iter().map(|o| o["idempotency_key"].as_str().unwrap().to_string()).collect();
    assert_eq!(order_keys, expected_keys);
    for call in book["calls"].as_array().unwrap() {
        assert!(expected_keys.contains(call["idempotency_key"].as_str().unwrap()), "{call}");
    }
    let replays = book["calls"].as_array().unwrap().iter().filter(|c| c["outcome"] == "replayed").count();
    println!("{} calls, {replays} repeats answered from the idempotency key", book["calls"].as_array().unwrap().len());
}

#[test]
fn rebuilds_restores_redactions_and_set_state_never_trigger_the_envoy() {
    let mut sys = system();
    let envoy = sys.envoy("3");
    wait_until("the envoy has started", Duration::from_secs(20), || !sys.envoy_actions("envoy/started").is_empty());
    sys.trigger("shop", "apple");
    sys.trigger("shop", "pear");
    wait_until("two reorders", Duration::from_secs(20), || sys.envoy_actions("reorder/placed").len() == 2);
    // Rebuild the view from seq 1 (no snapshots) while the envoy runs.
    let listen = sys.dataview.url().trim_start_matches("http://").to_string();
    sys.dataview.kill();
    std::fs::remove_dir_all(sys.dir.path().join("snapshots")).unwrap();
    sys.dataview = start_dataview(&sys.chronicler, &sys.dir.path().join("snapshots"), &listen);
    // Restore from a snapshot: stop cleanly (writes one), start again.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sys.dataview.terminate(10_000), Some(0));
    sys.dataview = start_dataview(&sys.chronicler, &sys.dir.path().join("snapshots"), &listen);
    // Redact apple's recorded order: its reorder is pending again in the
    // rebuilt view, but a redaction is history corrected, not something
    // that happened now.
    let placed = sys.envoy_actions("reorder/placed");
    let apple = placed.iter().find(|a| a["payload"]["product"] == "apple").unwrap()["seq"].as_u64().unwrap();
    let redact = json!({"id": "ops:1", "type": "@@nodb/redact", "payload": {"seqs": [apple], "reason": "test"}});
    let seq = dispatch(sys.chronicler.url(), &[redact]);
    nodb_tests::wait_for_seq(&sys.dataview, seq);
    let stock = get(&format!("{}/views/stock", sys.dataview.url())).unwrap().json();
    assert_eq!(stock["state"]["products"]["apple"]["reorder"]["status"], "pending", "{stock}");
    // Replace the stock with a state where a product is pending: an
    // import, not something that happened.
    let imported = json!({"products": {"kiwi": {"locations": {"shelf": 1}, "total": 1, "threshold": 5,
        "reorder_quantity": 10, "reorder": {"status": "pending", "seq": 1, "quantity": 10}}}, "total": 1});
    dispatch(
        sys.chronicler.url(),
        &[json!({"id": "ops:2", "type": "@@nodb/set_state", "payload": {"view": "stock", "state": imported}})],
    );
    std::thread::sleep(Duration::from_millis(2500));
    let book = sys.supplier_book();
    assert_eq!(book["orders"].as_array().unwrap().len(), 2, "nothing new reached the supplier: {book}");
    assert_eq!(sys.envoy_actions("reorder/placed").len(), 2);
    assert!(sys.envoy_actions("reorder/failed").is_empty());
    // Still live: a real transition after all that is acted on.
    let cause = sys.trigger("shop", "plum");
    let start = Instant::now();
    while sys.envoy_actions("reorder/placed").len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(20), "no plum reorder; the envoy said:\n{}", envoy.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sys.envoy_actions("reorder/placed")[2]["meta"]["cause"], json!(cause.to_string()));
    drop(envoy);
}

#[test]
fn a_new_envoy_ignores_history_and_failures_are_retried_then_recorded() {
    let sys = system();
    // A long history with reorders pending before any envoy existed.
    for i in 0..20 {
        sys.trigger("old", &format!("old{i}"));
    }
    let envoy = sys.envoy("3");
    wait_until("the envoy has started", Duration::from_secs(20), || !sys.envoy_actions("envoy/started").is_empty());
    let started = &sys.envoy_actions("envoy/started")[0];
    assert_eq!(started["payload"]["head"], json!(60));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(sys.supplier_book()["calls"].as_array().unwrap().is_empty(), "it acted on history");
    // Failing, then recovering: the retries succeed.
    sys.control(json!({"fail_next": 2}));
    let cause = sys.trigger("shop", "fig");
    wait_until("the fig reorder", Duration::from_secs(20), || sys.envoy_actions("reorder/placed").len() == 1);
    let key = format!("reorder:{cause}");
    let calls: Vec<Value> = sys.supplier_book()["calls"].as_array().unwrap().clone();
    let outcomes: Vec<&str> =
        calls.iter().filter(|c| c["idempotency_key"] == key).map(|c| c["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "failed", "created"]);
    // Failing for good: one reorder/failed after the configured 3 attempts.
    sys.control(json!({"fail_always": true}));
    let cause = sys.trigger("shop", "lime");
    wait_until("the lime failure", Duration::from_secs(30), || sys.envoy_actions("reorder/failed").len() == 1);
    let failed = &sys.envoy_actions("reorder/failed")[0];
    assert_eq!(failed["payload"]["product"], json!("lime"));
    assert!(failed["payload"]["reason"].as_str().unwrap().contains("failed 3 times"), "{failed}");
    let key = format!("reorder:{cause}");
    let tries = sys.supplier_book()["calls"].as_array().unwrap().iter().filter(|c| c["idempotency_key"] == key).count();
    assert_eq!(tries, 3);
    let stock = get(&format!("{}/views/stock/state/products/lime/reorder", sys.dataview.url())).unwrap().json();
    assert_eq!(stock["status"], json!("failed"));
    drop(envoy);
}

#[test]
fn the_webhook_delivers_in_order_and_resumes_after_a_restart() {
    let sys = system();
    let (url, got) = webhook_receiver("127.0.0.1:0");
    let start = || {
        Service::start(&["envoy", "webhook", "--types", "stock/", "--url", &url, "--chronicler", sys.chronicler.url()])
            .unwrap()
    };
    let mut hook = start();
    wait_until("the webhook has started", Duration::from_secs(20), || !sys.envoy_actions("envoy/started").is_empty());
    let sale = |n: u64| json!({"id": format!("w:{n}"), "type": "stock/corrected", "payload": {"product": "a", "location": "s", "quantity": n}});
    let other = |n: u64| json!({"id": format!("o:{n}"), "type": "other/thing", "payload": n});
    dispatch(sys.chronicler.url(), &[sale(1), other(1), sale(2), sale(3)]);
    wait_until("three deliveries", Duration::from_secs(20), || got.lock().unwrap().len() >= 3);
    hook.kill();
    dispatch(sys.chronicler.url(), &[sale(4), other(2), sale(5)]);
    let _hook = start();
    let expected: Vec<u64> =
        sys.log().iter().filter(|a| a["type"] == "stock/corrected").map(|a| a["seq"].as_u64().unwrap()).collect();
    assert_eq!(expected.len(), 5);
    wait_until("every delivery", Duration::from_secs(20), || {
        let seen: BTreeSet<u64> = got.lock().unwrap().iter().filter_map(|(_, b)| b["seq"].as_u64()).collect();
        seen.len() == 5
    });
    let deliveries = got.lock().unwrap().clone();
    // In order, no gaps; a delivery may repeat after a crash (at least once).
    let mut firsts = Vec::new();
    for (key, body) in &deliveries {
        let seq = body["seq"].as_u64().unwrap();
        assert_eq!(key, &format!("webhook:{seq}"));
        if !firsts.contains(&seq) {
            firsts.push(seq);
        }
    }
    assert_eq!(firsts, expected);
    wait_until("every receipt", Duration::from_secs(20), || sys.envoy_actions("webhook/delivered").len() == 5);
    let receipts: Vec<u64> =
        sys.envoy_actions("webhook/delivered").iter().map(|a| a["payload"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(receipts, expected, "one receipt per delivered action, in order");
}
