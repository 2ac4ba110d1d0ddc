//! The webhook envoy (`nodb envoy webhook`) with its receiver down, with the
//! real processes: by default it waits, retrying the same action, and
//! delivers the whole feed in order once the receiver is back; with
//! `--give-up-after` it records `webhook/failed` for each action only after
//! trying it that long, and the feed goes on in order; SIGTERM stops it
//! while it waits, and the abandoned delivery is redone on restart.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nodb_tests::{Deliveries, Service, committed_actions, dispatch, free_addr, webhook_receiver};
use serde_json::{Value, json};

/// A chronicler on a fresh data directory.
struct Feed {
    _dir: tempfile::TempDir,
    chronicler: Service,
}

fn feed() -> Feed {
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    Feed { _dir: dir, chronicler }
}

impl Feed {
    /// A webhook envoy delivering `stock/` actions to `url`.
    fn webhook(&self, url: &str, extra: &[&str]) -> Service {
        let mut args =
            vec!["envoy", "webhook", "--types", "stock/", "--url", url, "--chronicler", self.chronicler.url()];
        args.extend_from_slice(extra);
        let hook = Service::start(&args).unwrap();
        wait_until("the webhook has started", Duration::from_secs(20), || !self.of_type("envoy/started").is_empty());
        hook
    }

    /// Every committed action.
    fn log(&self) -> Vec<Value> {
        committed_actions(self.chronicler.url())
    }

    fn of_type(&self, kind: &str) -> Vec<Value> {
        self.log().into_iter().filter(|a| a["type"] == kind).collect()
    }

    /// Dispatches `n` matching actions (`from`, `from + 1`, …), each
    /// followed by one that does not match; their seqs.
    fn sales(&self, from: u64, n: u64) -> Vec<u64> {
        let mut actions = Vec::new();
        for i in from..from + n {
            actions.push(json!({"id": format!("shop:{i}"), "type": "stock/corrected",
                "payload": {"product": "a", "location": "s", "quantity": i}}));
            actions.push(json!({"id": format!("other:{i}"), "type": "other/thing", "payload": i}));
        }
        dispatch(self.chronicler.url(), &actions);
        let ids: BTreeSet<String> = (from..from + n).map(|i| format!("shop:{i}")).collect();
        let seqs: Vec<u64> = self
            .log()
            .iter()
            .filter(|a| a["id"].as_str().is_some_and(|id| ids.contains(id)))
            .map(|a| a["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs.len() as u64, n);
        seqs
    }

    /// The `seq`s in the payloads of the webhook's results of `kind`, in
    /// the order they were recorded.
    fn results(&self, kind: &str) -> Vec<u64> {
        self.of_type(kind).iter().map(|a| a["payload"]["seq"].as_u64().unwrap()).collect()
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The seqs a receiver got, in the order they first arrived, checking
/// that every delivery carried its own idempotency key (a repeat is a
/// retry of the same key: at least once).
fn first_arrivals(got: &Deliveries) -> Vec<u64> {
    let mut firsts = Vec::new();
    for (key, body) in got.lock().unwrap().iter() {
        let seq = body["seq"].as_u64().unwrap();
        assert_eq!(key, &format!("webhook:{seq}"));
        if !firsts.contains(&seq) {
            firsts.push(seq);
        }
    }
    firsts
}

/// A receiver address with nothing listening: connections are refused
/// until a receiver is started on it.
fn down_receiver() -> (String, String) {
    let addr = free_addr();
    let url = format!("http://{addr}/hook");
    (addr, url)
}

#[test]
fn the_webhook_waits_for_a_receiver_that_is_down_then_delivers_everything_in_order() {
    let feed = feed();
    let (addr, url) = down_receiver();
    let hook = feed.webhook(&url, &[]);
    let expected = feed.sales(1, 50);
    // Several back-off rounds with the receiver down: nothing is given up,
    // and nothing is recorded as delivered.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(feed.results("webhook/failed"), Vec::<u64>::new());
    assert_eq!(feed.results("webhook/delivered"), Vec::<u64>::new());
    let said = hook.stderr();
    assert_eq!(said.matches("receiver unreachable").count(), 1, "one warning for the outage:\n{said}");
    assert!(said.contains(&format!("retrying the delivery of seq {}", expected[0])), "{said}");

    let (_, got) = webhook_receiver(&addr);
    wait_until("every delivery", Duration::from_secs(120), || {
        got.lock().unwrap().iter().filter_map(|(_, b)| b["seq"].as_u64()).collect::<BTreeSet<_>>().len() == 50
    });
    assert_eq!(first_arrivals(&got), expected, "first arrivals in seq order");
    wait_until("every receipt", Duration::from_secs(30), || feed.results("webhook/delivered").len() == 50);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(feed.results("webhook/delivered"), expected, "one receipt per action, in order");
    assert_eq!(feed.results("webhook/failed"), Vec::<u64>::new());
    let said = hook.stderr();
    assert_eq!(said.matches("receiver unreachable").count(), 1, "{said}");
    assert!(said.contains("receiver back after"), "{said}");
}

#[test]
fn with_give_up_after_each_action_fails_only_after_that_long_and_the_feed_goes_on_in_order() {
    let feed = feed();
    let (addr, url) = down_receiver();
    let hook = feed.webhook(&url, &["--give-up-after", "2"]);
    let given_up = feed.sales(1, 3);
    // Each action is tried for 2 s from its first attempt, which comes after
    // its commit: nothing can have failed yet.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(feed.results("webhook/failed"), Vec::<u64>::new());
    wait_until("three failures", Duration::from_secs(60), || feed.results("webhook/failed").len() == 3);
    assert_eq!(feed.results("webhook/failed"), given_up, "given up in order");
    let log = feed.log();
    for failed in log.iter().filter(|a| a["type"] == "webhook/failed") {
        let p = &failed["payload"];
        assert_eq!((&p["type"], &p["url"]), (&json!("stock/corrected"), &json!(url)), "{failed}");
        // Failed only after trying for 2 s: by its own account, and by the
        // chronicler's clock (from the commit of its cause).
        let reason = p["reason"].as_str().unwrap();
        let tried: f64 = reason
            .strip_prefix("gave up after ")
            .and_then(|r| r.split_once(" s and "))
            .and_then(|(s, _)| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected reason: {reason}"));
        assert!(tried >= 2.0, "{reason}");
        assert!(reason.contains("attempts; last: ") && reason.contains("onnect"), "{reason}");
        let cause = log.iter().find(|a| a["seq"] == p["seq"]).unwrap();
        let waited = failed["ts"].as_u64().unwrap() - cause["ts"].as_u64().unwrap();
        assert!(waited >= 2000, "failed {waited} ms after its cause: {failed}");
    }
    assert!(hook.stderr().contains("gave up on seq"), "{}", hook.stderr());

    // The receiver back: later actions are delivered, in order, after the
    // failures; what was given up is not delivered.
    let (_, got) = webhook_receiver(&addr);
    let delivered = feed.sales(4, 2);
    wait_until("two receipts", Duration::from_secs(60), || feed.results("webhook/delivered").len() == 2);
    assert_eq!(feed.results("webhook/delivered"), delivered);
    assert_eq!(first_arrivals(&got), delivered);
    let causes: Vec<u64> = feed
        .log()
        .iter()
        .filter(|a| a["id"].as_str().is_some_and(|id| id.starts_with("envoy-webhook:")))
        .filter(|a| a["type"] != "envoy/started")
        .map(|a| a["meta"]["cause"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(causes, [given_up, delivered].concat(), "one result per action, in feed order");
}

#[test]
fn sigterm_stops_a_webhook_waiting_for_a_dead_receiver_and_the_delivery_is_redone_on_restart() {
    let feed = feed();
    let (addr, url) = down_receiver();
    let mut hook = feed.webhook(&url, &[]);
    let seqs = feed.sales(1, 1);
    wait_until("the webhook retries", Duration::from_secs(20), || hook.stderr().contains("receiver unreachable"));
    let asked = Instant::now();
    assert_eq!(hook.terminate(60_000), Some(0), "a clean exit; the envoy said:\n{}", hook.stderr());
    println!("stopped {:.1} s after SIGTERM", asked.elapsed().as_secs_f64());
    // Abandoned, not failed: a restart delivers it.
    assert_eq!(feed.results("webhook/failed"), Vec::<u64>::new());
    assert_eq!(feed.results("webhook/delivered"), Vec::<u64>::new());
    let (_, got) = webhook_receiver(&addr);
    let _hook = feed.webhook(&url, &[]);
    wait_until("the receipt", Duration::from_secs(30), || feed.results("webhook/delivered").len() == 1);
    assert_eq!(feed.results("webhook/delivered"), seqs);
    assert_eq!(first_arrivals(&got), seqs);
}
