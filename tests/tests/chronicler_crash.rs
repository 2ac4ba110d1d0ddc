//! Crash safety of the real chronicler: SIGKILL it at random moments under
//! load from concurrent clients (HTTP batches and pipelined WebSockets, with
//! deliberate re-sends), restart it, again and again. Clients re-send
//! everything unacknowledged after each restart. In the end every
//! acknowledged action is in the log exactly once, at the seq it was
//! acknowledged with, seqs are gap-free, each client's actions are in its
//! own order, and `nodb log verify` passes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use nodb_client::DispatchSocket;
use nodb_tests::client::{block_on_within, chronicler};
use nodb_tests::{Service, post, run};
use serde_json::{Value, json};

const CYCLES: usize = 22;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct World {
    url: RwLock<String>,
    stop: AtomicBool,
    /// id → seq of every acknowledgement received.
    acked: Mutex<HashMap<String, u64>>,
}

impl World {
    fn url(&self) -> String {
        self.url.read().unwrap().clone()
    }

    /// Records an ack; a duplicate ack must agree with the first one.
    fn ack(&self, ack: &Value) {
        let id = ack["id"].as_str().unwrap().to_string();
        let mut acked = self.acked.lock().unwrap();
        match (ack["seq"].as_u64(), acked.get(&id)) {
            (Some(seq), Some(&first)) => assert_eq!(seq, first, "{id} acknowledged with two seqs"),
            (Some(seq), None) => {
                acked.insert(id, seq);
            }
            (None, _) => assert_eq!(ack["duplicate"], true, "only old duplicates lack a seq: {ack}"),
        }
    }
}

fn action(client: &str, n: u64) -> Value {
    json!({"id": format!("{client}:{n}"), "type": "crash/test", "payload": {"n": n, "pad": "x".repeat(64)}})
}

/// Sends batches of 1–4 actions over HTTP; re-sends a batch until it is
/// acknowledged, and now and then puts an old action in front (a re-send
/// the chronicler must recognise).
fn http_client(world: Arc<World>, name: String, mut rng: Rng) {
    let mut next = 1u64;
    let mut outbox: Vec<u64> = Vec::new();
    while !world.stop.load(Ordering::Relaxed) {
        if outbox.is_empty() {
            for _ in 0..=rng.below(4) {
                outbox.push(next);
                next += 1;
            }
        }
        let mut batch: Vec<Value> = outbox.iter().map(|n| action(&name, *n)).collect();
        if outbox[0] > 1 && rng.below(4) == 0 {
            batch.insert(0, action(&name, 1 + rng.below(outbox[0] - 1)));
        }
        match post(&format!("{}/actions", world.url()), "application/json", Value::Array(batch).to_string().as_bytes())
        {
            Ok(r) if r.status == 200 => {
                for ack in r.json()["acks"].as_array().unwrap() {
                    world.ack(ack);
                }
                outbox.clear();
            }
            Ok(r) => assert_eq!(r.status, 503, "unexpected answer {r:?}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)), // down: retry the same batch
        }
    }
}

/// Keeps 16 dispatches in flight on a socket; after a disconnect,
/// reconnects and re-sends every unacknowledged one, in order.
fn ws_client(world: Arc<World>, name: String) {
    let mut next = 1u64;
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    while !world.stop.load(Ordering::Relaxed) {
        let client = chronicler(&world.url());
        let Some(Ok(mut ws)) = block_on_within(Duration::from_secs(5), client.dispatcher()) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let resend: Vec<u64> = in_flight.iter().copied().collect();
        let mut ok = resend.iter().all(|n| send(&mut ws, &action(&name, *n)));
        while ok && !world.stop.load(Ordering::Relaxed) {
            while in_flight.len() < 16 && ok {
                ok = send(&mut ws, &action(&name, next));
                in_flight.push_back(next);
                next += 1;
            }
            match block_on_within(Duration::from_secs(5), ws.next_reply()) {
                Some(Ok(reply)) => {
                    let ack = reply.ack().unwrap_or_else(|| panic!("the socket answered {reply:?}"));
                    world.ack(&serde_json::to_value(ack).unwrap());
                    let n: u64 = ack.id.rsplit_once(':').unwrap().1.parse().unwrap();
                    in_flight.retain(|x| *x != n);
                }
                Some(Err(_)) | None => ok = false,
            }
        }
    }
}

fn send(ws: &mut DispatchSocket, action: &Value) -> bool {
    let action = serde_json::from_value(action.clone()).expect("an action");
    block_on_within(Duration::from_secs(5), ws.send(&action)).is_some_and(|sent| sent.is_ok())
}

fn start(data: &str) -> Service {
    Service::start(&["chronicler", "--data", data, "--listen", "127.0.0.1:0", "--segment-size", "65536"]).unwrap()
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged_and_duplicates_nothing() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut service = start(&data);
    let world = Arc::new(World {
        url: RwLock::new(service.url().to_string()),
        stop: AtomicBool::new(false),
        acked: Mutex::default(),
    });
    let mut clients = Vec::new();
    for k in 0..3 {
        let (w, r) = (world.clone(), Rng(seed.wrapping_mul(k + 7) | 1));
        clients.push(std::thread::spawn(move || http_client(w, format!("http{k}"), r)));
    }
    for k in 0..2 {
        let w = world.clone();
        clients.push(std::thread::spawn(move || ws_client(w, format!("ws{k}"))));
    }
    let started = Instant::now();
    let mut acked_at_kill = Vec::new();
    for _ in 0..CYCLES {
        std::thread::sleep(Duration::from_millis(40 + rng.below(200)));
        service.kill();
        acked_at_kill.push(world.acked.lock().unwrap().len());
        service = start(&data);
        *world.url.write().unwrap() = service.url().to_string();
    }
    // A last stretch of load on the final process, then stop.
    std::thread::sleep(Duration::from_millis(300));
    world.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    service.kill();
    println!("{CYCLES} kills in {:?}; acknowledged actions at each kill: {acked_at_kill:?}", started.elapsed());

    // The log as a person would read it.
    let out = run(dir.path(), &["log", "tail", "--data", &data], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    let log: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = log.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>(), "seqs are gap-free from 1");
    let mut at: HashMap<String, u64> = HashMap::new();
    let mut per_client: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for v in &log {
        let id = v["id"].as_str().unwrap().to_string();
        let (client, n) = id.rsplit_once(':').unwrap();
        per_client.entry(client.to_string()).or_default().push(n.parse().unwrap());
        assert!(at.insert(id.clone(), v["seq"].as_u64().unwrap()).is_none(), "{id} is in the log twice");
    }
    for (client, ns) in &per_client {
        assert_eq!(ns, &(1..=ns.len() as u64).collect::<Vec<_>>(), "{client}'s actions are 1, 2, 3, … in order");
    }
    let acked = world.acked.lock().unwrap();
    assert!(acked.len() > 100, "the clients made progress: {} acknowledged", acked.len());
    for (id, seq) in acked.iter() {
        assert_eq!(at.get(id), Some(seq), "acknowledged {id} (seq {seq}) is in the log at that seq");
    }
    let out = run(dir.path(), &["log", "verify", "--data", &data], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(&format!("head seq: {}", log.len())), "{out:?}");
    println!("{} actions in the log, {} acknowledged to clients", log.len(), acked.len());
}
