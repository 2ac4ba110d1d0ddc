//! Two chroniclers writing one R3 stream of a three-node NATS cluster
//! at full speed, where their writes race:
//!
//! - sixteen writers (eight per chronicler) never see the sound log
//!   called damaged, and both chroniclers stay healthy (a catch-up that
//!   read "no message" just before the other's write landed once took
//!   that for a missing message);
//! - an action acknowledged by one chronicler and followed at once by the
//!   client's next action through the other is accepted, not refused as
//!   out of order (a chronicler once refused against its own table before
//!   it had read the other's write).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use nodb_tests::nats::NatsCluster;
use nodb_tests::{Service, get, post};
use serde_json::{Value, json};

fn chronicler(nats: &NatsCluster) -> Service {
    chronicler_r(nats, "3")
}

fn chronicler_r(nats: &NatsCluster, replicas: &str) -> Service {
    Service::start(&["chronicler", "--log", &nats.urls(), "--replicas", replicas, "--listen", "127.0.0.1:0"])
        .unwrap_or_else(|e| panic!("chronicler: {e}\n{}", nats.logs()))
}

fn send(url: &str, action: &Value) -> (u16, String) {
    let r = post(&format!("{url}/actions"), "application/json", action.to_string().as_bytes()).unwrap();
    (r.status, r.body.to_string())
}

#[test]
fn concurrent_writers_never_mark_a_sound_stream_damaged() {
    let nats = NatsCluster::start();
    let urls = [chronicler(&nats), chronicler(&nats)];
    let names: Vec<String> = urls.iter().map(|c| c.url().to_string()).collect();
    let damaged = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (url, damaged) = (names[t % 2].clone(), damaged.clone());
            std::thread::spawn(move || {
                for n in 1..=100 {
                    let (status, body) = send(&url, &json!({"id": format!("k{t}:{n}"), "type": "t/x", "payload": n}));
                    if body.contains("damaged") || body.contains("missing") {
                        damaged.fetch_add(1, Relaxed);
                        return;
                    }
                    assert_eq!(status, 200, "k{t}:{n}: {body}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for c in &names {
        let health = get(&format!("{c}/health")).unwrap();
        assert_eq!(health.status, 200, "{c}/health: {}", health.body);
    }
    assert_eq!(damaged.load(Relaxed), 0, "writers were told the (sound) log is damaged");
}

/// `POST /actions` over kept-alive connections to one chronicler.
struct Keep {
    agent: ureq::Agent,
    url: String,
}

impl Keep {
    fn new(url: &str) -> Keep {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Keep { agent, url: format!("{url}/actions") }
    }

    fn post(&mut self, action: &Value) -> (u16, String) {
        let r = self.agent.post(&self.url).header("content-type", "application/json").send(action.to_string()).unwrap();
        let status = r.status().as_u16();
        (status, r.into_body().read_to_string().unwrap())
    }
}

#[test]
fn an_action_one_chronicler_acknowledged_is_not_refused_by_the_other() {
    let nats = NatsCluster::start();
    // About 6 % of the second actions were refused before the fix.
    let (a, b) = (chronicler_r(&nats, "3"), chronicler_r(&nats, "3"));
    // Kept-alive connections: a new one per request is slow enough to
    // hide the window.
    let (mut ca, mut cb) = (Keep::new(a.url()), Keep::new(b.url()));
    let mut refused = Vec::new();
    for k in 0..1000 {
        let (s1, b1) = ca.post(&json!({"id": format!("s{k}:1"), "type": "t/x", "payload": 1}));
        assert_eq!(s1, 200, "{b1}");
        let (s2, b2) = cb.post(&json!({"id": format!("s{k}:2"), "type": "t/x", "payload": 2}));
        if s2 != 200 {
            refused.push(format!("s{k}:2 → {s2} {b2}"));
        }
    }
    assert!(refused.is_empty(), "{} of 1000 refused, e.g. {}", refused.len(), refused[0]);
}
