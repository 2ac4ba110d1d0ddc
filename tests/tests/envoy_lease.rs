//! One active instance per envoy name (`nodb envoy --lease`), with the real
//! processes: two webhook envoys of the same name share a lease in a real
//! three-node NATS JetStream cluster. Only the holder delivers; when it is
//! killed (SIGKILL) the standby takes over once the lease expires, and when
//! it is stopped (SIGTERM) at once, because it gives the lease back; when
//! NATS is down no one acts, and one of them resumes once it is back. Every
//! action is delivered, and the log holds one receipt per action.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nodb_tests::nats::NatsCluster;
use nodb_tests::{Deliveries, Service, committed_actions, dispatch, get, webhook_receiver};
use serde_json::{Value, json};

/// A chronicler, a NATS cluster for the lease, and a receiver.
struct Setup {
    _dir: tempfile::TempDir,
    chronicler: Service,
    nats: NatsCluster,
    hook_url: String,
    got: Deliveries,
}

fn setup() -> Setup {
    let nats = NatsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let chronicler =
        Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let (url, got) = webhook_receiver("127.0.0.1:0");
    Setup { _dir: dir, chronicler, nats, hook_url: format!("{url}/hook"), got }
}

impl Setup {
    /// A webhook envoy named `hook` under the lease, with its status on a
    /// port of its own.
    fn envoy(&self, ttl: &str) -> Service {
        let urls = self.nats.urls();
        let args = [
            "envoy",
            "webhook",
            "--name",
            "hook",
            "--types",
            "stock/",
            "--url",
            &self.hook_url,
            "--chronicler",
            self.chronicler.url(),
            "--lease",
            &urls,
            "--lease-ttl",
            ttl,
            "--listen",
            "127.0.0.1:0",
        ];
        Service::start(&args).unwrap()
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
        let seqs: Vec<u64> = committed_actions(self.chronicler.url())
            .iter()
            .filter(|a| a["id"].as_str().is_some_and(|id| ids.contains(id)))
            .map(|a| a["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs.len() as u64, n);
        seqs
    }

    /// How many `webhook/delivered` receipts the log holds per seq.
    fn receipts(&self) -> BTreeMap<u64, usize> {
        let mut per_seq = BTreeMap::new();
        for a in committed_actions(self.chronicler.url()) {
            if a["type"] == "webhook/delivered" {
                *per_seq.entry(a["payload"]["seq"].as_u64().unwrap()).or_default() += 1;
            }
        }
        per_seq
    }

    /// The seqs the receiver got (at least once), checking each key.
    fn delivered(&self) -> BTreeSet<u64> {
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|(key, body)| {
                let seq = body["seq"].as_u64().unwrap();
                assert_eq!(key, &format!("hook:{seq}"), "the idempotency key of {body}");
                seq
            })
            .collect()
    }

    /// Waits until every one of `seqs` was delivered and has exactly one
    /// receipt in the log (and no other seq has one).
    fn all_delivered_once(&self, seqs: &[u64]) {
        let want: BTreeSet<u64> = seqs.iter().copied().collect();
        wait_until("every action delivered and recorded", Duration::from_secs(60), || {
            self.delivered().is_superset(&want) && self.receipts().len() == want.len()
        });
        // A moment for a stray second receipt to show up.
        std::thread::sleep(Duration::from_millis(500));
        let receipts = self.receipts();
        assert_eq!(receipts.keys().copied().collect::<BTreeSet<_>>(), want, "a receipt for each action");
        assert!(receipts.values().all(|&n| n == 1), "exactly one receipt per action: {receipts:?}");
        let failed = committed_actions(self.chronicler.url()).iter().filter(|a| a["type"] == "webhook/failed").count();
        assert_eq!(failed, 0);
    }
}

/// The envoy's entry in its `/health`.
fn health(envoy: &Service) -> Value {
    let body = get(&format!("{}/health", envoy.url())).unwrap().json();
    body["envoys"].as_array().and_then(|e| e.first()).cloned().unwrap_or(Value::Null)
}

/// `"held"` or `"waiting"`, from the envoy's status.
fn lease(envoy: &Service) -> String {
    health(envoy)["lease"].as_str().unwrap_or("none").to_string()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Starts the holder, waits until it holds, then the standby, and waits
/// until the standby says whom it waits for.
fn holder_and_standby(s: &Setup, ttl: &str) -> (Service, Service) {
    let holder = s.envoy(ttl);
    let start = Instant::now();
    while lease(&holder) != "held" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first envoy never held the lease:\n{}",
            holder.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let standby = s.envoy(ttl);
    wait_until("the standby waits", Duration::from_secs(30), || {
        standby.stderr().contains("waiting for the lease on envoy hook held by")
    });
    assert_eq!(lease(&standby), "waiting");
    let status = get(&format!("{}/health", standby.url())).unwrap().json();
    assert_eq!(status["status"], "standby", "{status}");
    (holder, standby)
}

#[test]
fn only_the_holder_delivers_and_the_standby_takes_over_when_it_is_killed() {
    let s = setup();
    let (mut holder, standby) = holder_and_standby(&s, "2");
    let mut seqs = s.sales(1, 20);
    s.all_delivered_once(&seqs);
    // Only the holder acted: the standby started no effect and recorded
    // nothing, and it still waits.
    let (h, w) = (health(&holder), health(&standby));
    assert_eq!((h["lease"].as_str(), w["lease"].as_str()), (Some("held"), Some("waiting")));
    assert_eq!(h["recorded"], 20, "{h}");
    assert_eq!((w["started"].as_u64(), w["recorded"].as_u64()), (Some(0), Some(0)), "{w}");

    holder.kill();
    let killed = Instant::now();
    // Actions keep coming while no one holds the lease.
    seqs.extend(s.sales(21, 10));
    wait_until("the standby takes over", Duration::from_secs(15), || lease(&standby) == "held");
    println!("took over {:.1} s after SIGKILL", killed.elapsed().as_secs_f64());
    seqs.extend(s.sales(31, 10));
    s.all_delivered_once(&seqs);
    let said = standby.stderr();
    assert!(said.contains("holding the lease"), "{said}");
}

#[test]
fn a_holder_stopped_cleanly_gives_the_lease_back_and_the_standby_takes_over_at_once() {
    let s = setup();
    // A long TTL: without the release, the takeover would wait for the
    // key to expire (at least 2/3 of the TTL after the exit).
    let (mut holder, standby) = holder_and_standby(&s, "15");
    let mut seqs = s.sales(1, 5);
    s.all_delivered_once(&seqs);
    assert_eq!(holder.terminate(30_000), Some(0), "a clean exit; it said:\n{}", holder.stderr());
    assert!(holder.stderr().contains("released the lease"), "{}", holder.stderr());
    let took = wait_until("the standby takes over", Duration::from_secs(15), || lease(&standby) == "held");
    println!("took over {:.1} s after the holder exited", took.as_secs_f64());
    // It retries every TTL/3 = 5 s; an expiry would take at least 10 s.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    seqs.extend(s.sales(6, 5));
    s.all_delivered_once(&seqs);
}

#[test]
fn without_nats_no_one_acts_and_one_envoy_resumes_when_it_is_back() {
    let mut s = setup();
    let (holder, standby) = holder_and_standby(&s, "2");
    let mut seqs = s.sales(1, 5);
    s.all_delivered_once(&seqs);
    for i in 0..3 {
        s.nats.kill(i);
    }
    // The holder cannot renew, so it stops before its lease could have
    // expired and a standby could have taken it.
    let lost = wait_until("the holder gives up", Duration::from_secs(10), || lease(&holder) == "waiting");
    println!("the holder stopped {:.1} s after NATS went down", lost.as_secs_f64());
    assert!(holder.stderr().contains("lost the lease"), "{}", holder.stderr());
    let before = s.got.lock().unwrap().len();
    let unheld = s.sales(6, 5);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.got.lock().unwrap().len(), before, "no delivery while no one holds the lease");
    assert_eq!((lease(&holder), lease(&standby)), ("waiting".into(), "waiting".into()));
    seqs.extend(unheld);

    for i in 0..3 {
        s.nats.restart(i);
    }
    wait_until("one envoy holds the lease again", Duration::from_secs(60), || {
        [lease(&holder), lease(&standby)].iter().filter(|l| *l == "held").count() == 1
    });
    seqs.extend(s.sales(11, 5));
    s.all_delivered_once(&seqs);
    let held: Vec<String> = [&holder, &standby].iter().map(|e| lease(e)).collect();
    assert_eq!(held.iter().filter(|l| *l == "held").count(), 1, "{held:?}");
}
