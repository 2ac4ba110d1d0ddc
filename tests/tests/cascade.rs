//! Cascaded views with the real processes: a chronicler, the warehouse data
//! view and `nodb cascade`. Clients of the cascades apply their patches with
//! an independent RFC 6902 implementation (the `json-patch` crate) and must
//! match `GET`; every state a client saw must equal the cascade's reducer
//! applied to the upstream states at the `sources` it reported (read back
//! with the upstreams' `GET …?at=N`) — for random histories, across an
//! upstream restarted mid-run, a cascade restarted mid-run, and a cascade
//! of a cascade in another process. A fake upstream that sends a malformed
//! message and a patch that does not apply makes the cascade resync from a
//! snapshot, log it and keep serving. `nodb up` serves the cascades beside
//! the views, and bad command lines get clear errors.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodb_client::{StreamOptions, ViewClient, ViewStream};
use nodb_shared::Tree;
use nodb_tests::client::{apply_patch, next_json, view};
use nodb_tests::{Rng, Service, block_on, dispatch, eventually, free_addr, get};
use serde_json::{Value, json};

type Sources = BTreeMap<String, u64>;

/// One update a client reached: its seq, state and sources.
#[derive(Clone, Debug)]
struct Seen {
    seq: u64,
    state: Value,
    sources: Sources,
}

/// A client of one cascaded view, replicating it with `json_patch`.
struct Client {
    ws: ViewStream,
    view: ViewClient,
    state: Value,
    seq: u64,
    sources: Sources,
    seen: Vec<Seen>,
    snapshots: usize,
}

impl Client {
    /// A client of `name` at the server `base` (`http://…`), after its
    /// snapshot.
    fn connect(base: &str, name: &str) -> Client {
        let view = view(base, name);
        let ws = block_on(view.open(&StreamOptions::default())).unwrap();
        let mut c =
            Client { ws, view, state: Value::Null, seq: 0, sources: Sources::new(), seen: Vec::new(), snapshots: 0 };
        c.read_message();
        assert_eq!(c.snapshots, 1, "a new client starts with a snapshot");
        c
    }

    /// Reconnects with `since` = the last seq it has (the server may be
    /// restarting: retries for a while).
    fn reconnect(&mut self) {
        let options = StreamOptions { since: Some(self.seq), ..StreamOptions::default() };
        let deadline = Instant::now() + Duration::from_secs(30);
        self.ws = loop {
            match block_on(self.view.open(&options)) {
                Ok(ws) => break ws,
                Err(e) if Instant::now() > deadline => panic!("cannot reconnect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
    }

    fn read_message(&mut self) {
        let m = next_json(&mut self.ws);
        let sources: Sources = serde_json::from_value(m["sources"].clone())
            .unwrap_or_else(|e| panic!("every message of a cascade has sources ({e}): {m}"));
        match m["type"].as_str().unwrap() {
            "snapshot" => {
                self.state = m["state"].clone();
                self.seq = m["seq"].as_u64().unwrap();
                self.snapshots += 1;
            }
            "patch" => self.seq = *apply_patch(&mut self.state, self.seq, &m).end(),
            other => panic!("unexpected message {other}: {m}"),
        }
        self.sources = sources;
        self.seen.push(Seen { seq: self.seq, state: self.state.clone(), sources: self.sources.clone() });
    }

    /// Reads until `done` holds.
    fn read_until(&mut self, done: impl Fn(&Client) -> bool) {
        while !done(self) {
            self.read_message();
        }
    }

    fn source(&self, upstream: &str) -> u64 {
        self.sources.get(upstream).copied().unwrap_or(0)
    }
}

/// The built-in warehouse cascade called `name`.
fn definition(name: &str) -> nodb_cascade::Cascade {
    nodb_warehouse::cascades::cascades().into_iter().find(|c| c.name == name).unwrap()
}

/// Checks that each state in `seen` is `cascade`'s reducer applied to the
/// upstream states at its sources, read from `upstreams` (view → base URL)
/// with `GET /views/{view}?at=N`. States whose sources an upstream no
/// longer has (404, a cascade's earlier run) are skipped; the number
/// checked is returned.
fn check_reducer(cascade: &str, seen: &[Seen], upstreams: &BTreeMap<&str, String>) -> usize {
    let def = definition(cascade);
    let mut cache: HashMap<(String, u64), Option<Tree>> = HashMap::new();
    let mut checked = 0;
    'seen: for s in seen {
        let mut states = Vec::new();
        for up in &def.upstreams {
            let at = s.sources[up];
            let state = cache.entry((up.clone(), at)).or_insert_with(|| {
                let r = get(&format!("{}/views/{up}?at={at}", upstreams[up.as_str()])).unwrap();
                match r.status {
                    200 => Some(Tree::from(&r.json()["state"])),
                    404 => None,
                    _ => panic!("{up} at {at}: {r:?}"),
                }
            });
            match state {
                Some(t) => states.push(t.clone()),
                None => continue 'seen,
            }
        }
        let refs: Vec<&Tree> = states.iter().collect();
        let expected = def.reduce(&refs);
        assert_eq!(
            expected.to_json_string(),
            Tree::from(&s.state).to_json_string(),
            "{cascade} at seq {} is its reducer of the upstreams at {:?}",
            s.seq,
            s.sources
        );
        checked += 1;
    }
    checked
}

/// The client's state is what the server answers at the same seq.
fn assert_matches_get(c: &Client, base: &str, view: &str) {
    let g = get(&format!("{base}/views/{view}?at={}", c.seq)).unwrap().json();
    assert_eq!((&g["state"], g["seq"].as_u64()), (&c.state, Some(c.seq)), "{view}");
    assert_eq!(g["sources"], json!(c.sources), "{view}");
    let now = get(&format!("{base}/views/{view}")).unwrap().json();
    if now["seq"] == g["seq"] {
        assert_eq!(now["hash"], g["hash"]);
    }
}

/// `count` random warehouse actions of `client`, numbered from `*n + 1`.
fn random_actions(rng: &mut Rng, client: &str, n: &mut u64, count: u64) -> Vec<Value> {
    (0..count)
        .map(|_| {
            *n += 1;
            let p = format!("p{}", rng.below(6));
            let (kind, payload) = match rng.below(10) {
                0..=2 => ("stock/corrected", json!({"product": p, "location": "shelf", "quantity": rng.below(20)})),
                3..=5 => ("stock/sold", json!({"product": p, "location": "shelf", "quantity": 1 + rng.below(3)})),
                6 => ("stock/moved", json!({"product": p, "from": "shelf", "to": "back", "quantity": 1})),
                7 => ("stock/threshold_set", json!({"product": p, "threshold": 1 + rng.below(12)})),
                8 => ("stock/destroyed", json!({"product": p, "location": "shelf", "quantity": 1, "reason": "x"})),
                _ => ("unrelated/event", json!(*n)),
            };
            json!({"id": format!("{client}:{n}"), "type": kind, "payload": payload})
        })
        .collect()
}

/// A chronicler and a data view (on a fixed address, so it can restart).
struct System {
    dir: tempfile::TempDir,
    chronicler: Service,
    dataview: Service,
    dataview_at: String,
}

impl System {
    fn start() -> System {
        let dir = tempfile::tempdir().unwrap();
        let chronicler =
            Service::start(&["chronicler", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
        let dataview_at = free_addr();
        let dataview = start_dataview(&chronicler, dir.path(), &dataview_at);
        System { dir, chronicler, dataview, dataview_at }
    }

    fn restart_dataview(&mut self) {
        self.dataview = start_dataview(&self.chronicler, self.dir.path(), &self.dataview_at);
    }

    /// Dispatches `count` random actions; the head seq.
    fn dispatch_random(&self, rng: &mut Rng, n: &mut u64, count: u64) -> u64 {
        dispatch(self.chronicler.url(), &random_actions(rng, "r", n, count))
    }
}

fn start_dataview(chronicler: &Service, dir: &std::path::Path, listen: &str) -> Service {
    let snapshots = dir.join("snapshots");
    let args = ["dataview", "--chronicler", chronicler.url(), "--listen", listen, "--snapshots"];
    let mut args = args.to_vec();
    args.push(snapshots.to_str().unwrap());
    Service::start(&args).unwrap()
}

fn start_cascade(listen: &str, args: &[&str]) -> Service {
    let mut all = vec!["cascade", "--app", "warehouse", "--listen", listen];
    all.extend_from_slice(args);
    Service::start(&all).unwrap()
}

/// `--upstream NAME=URL` pairs.
fn upstream_args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().flat_map(|(n, u)| ["--upstream".to_string(), format!("{n}={u}")]).collect()
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Seed actions that make `p0` low on stock and sell some of it.
fn seed() -> Vec<Value> {
    vec![
        json!({"id": "seed:1", "type": "stock/corrected", "payload": {"product": "p0", "location": "shelf", "quantity": 30}}),
        json!({"id": "seed:2", "type": "stock/threshold_set", "payload": {"product": "p0", "threshold": 40}}),
        json!({"id": "seed:3", "type": "stock/sold", "payload": {"product": "p0", "location": "shelf", "quantity": 2}}),
    ]
}

#[test]
fn cascades_are_their_reducers_of_the_upstream_states_they_report() {
    let sys = System::start();
    let view = sys.dataview.url().to_string();
    let args = upstream_args(&[("stock", &view), ("activity", &view)]);
    let cascade = start_cascade("127.0.0.1:0", &as_strs(&args));
    let mut marketing = Client::connect(cascade.url(), "marketing");
    let mut lowstock = Client::connect(cascade.url(), "lowstock");
    dispatch(sys.chronicler.url(), &seed());
    let (mut rng, mut n) = (Rng::new(), 0);
    for _ in 0..10 {
        let head = sys.dispatch_random(&mut rng, &mut n, 25);
        marketing.read_until(|c| c.source("activity") >= head);
        let m = marketing.seq;
        lowstock.read_until(|c| c.source("stock") >= head && c.source("marketing") >= m);
    }
    // However the random history went, it ends with a product running low.
    let low = json!({"id": "end:1", "type": "stock/threshold_set", "payload": {"product": "p0", "threshold": 100_000}});
    let head = dispatch(sys.chronicler.url(), &[low]);
    marketing.read_until(|c| c.source("activity") >= head);
    let m = marketing.seq;
    lowstock.read_until(|c| c.source("stock") >= head && c.source("marketing") >= m);
    assert_matches_get(&marketing, cascade.url(), "marketing");
    assert_matches_get(&lowstock, cascade.url(), "lowstock");
    let upstreams = BTreeMap::from([("activity", view.clone()), ("stock", view.clone())]);
    assert_eq!(check_reducer("marketing", &marketing.seen, &upstreams), marketing.seen.len());
    let upstreams = BTreeMap::from([("stock", view.clone()), ("marketing", cascade.url().to_string())]);
    assert_eq!(check_reducer("lowstock", &lowstock.seen, &upstreams), lowstock.seen.len());
    assert!(marketing.state["products"]["p0"]["hour"].as_u64() >= Some(2), "{}", marketing.state);
    assert!(lowstock.state["count"].as_u64() >= Some(1), "{}", lowstock.state);
    // `?at=N` is what clients had at N; a late client's snapshot is GET's state.
    for s in marketing.seen.iter().step_by(5) {
        let at = get(&format!("{}/views/marketing?at={}", cascade.url(), s.seq)).unwrap().json();
        assert_eq!((&at["state"], json!(s.sources)), (&s.state, at["sources"].clone()));
    }
    let late = Client::connect(cascade.url(), "lowstock");
    assert_eq!((late.seq, &late.state), (lowstock.seq, &lowstock.state));
    let health = get(&format!("{}/health", cascade.url())).unwrap().json();
    assert_eq!(health["status"], "caught_up", "{health}");
    assert_eq!(get(&format!("{}/ready", cascade.url())).unwrap().status, 200, "ready once caught up");
    let views = get(&format!("{}/views", cascade.url())).unwrap().json();
    assert_eq!(views["views"][1]["upstreams"], json!(["stock", "marketing"]));
    let metrics = get(&format!("{}/metrics", cascade.url())).unwrap().body;
    assert!(metrics.contains("nodb_cascade_updates_total{cascade=\"lowstock\"}"), "{metrics}");
}

#[test]
fn an_upstream_restarted_mid_run_is_resumed_and_the_cascade_stays_exact() {
    let mut sys = System::start();
    let view = sys.dataview.url().to_string();
    let args = upstream_args(&[("stock", &view), ("activity", &view)]);
    let cascade = start_cascade("127.0.0.1:0", &as_strs(&args));
    let mut lowstock = Client::connect(cascade.url(), "lowstock");
    dispatch(sys.chronicler.url(), &seed());
    let (mut rng, mut n) = (Rng::new(), 0);
    // Enough history that the restarted data view takes a while to replay.
    for _ in 0..5 {
        sys.dispatch_random(&mut rng, &mut n, 400);
    }
    let head = sys.dispatch_random(&mut rng, &mut n, 40);
    lowstock.read_until(|c| c.source("stock") >= head);
    // The data view dies (no snapshot written); history goes on meanwhile.
    sys.dataview.kill();
    let health_url = format!("{}/health", cascade.url());
    eventually("the cascade says it is behind", || {
        let h = get(&health_url).unwrap().json();
        h["status"] == "behind" && h["cascades"]["lowstock"]["upstreams"]["stock"]["status"] == "reconnecting"
    });
    let head = sys.dispatch_random(&mut rng, &mut n, 40);
    assert_eq!(get(&format!("{}/views/lowstock", cascade.url())).unwrap().status, 200, "still serving");
    sys.restart_dataview();
    let head = head.max(sys.dispatch_random(&mut rng, &mut n, 20));
    nodb_tests::wait_for_seq(&sys.dataview, head);
    lowstock.read_until(|c| c.source("stock") >= head);
    let marketing_seq = get(&format!("{}/views/marketing", cascade.url())).unwrap().json()["seq"].as_u64().unwrap();
    lowstock.read_until(|c| c.source("marketing") >= marketing_seq);
    let upstreams = BTreeMap::from([("stock", view.clone()), ("marketing", cascade.url().to_string())]);
    assert_eq!(check_reducer("lowstock", &lowstock.seen, &upstreams), lowstock.seen.len());
    assert_matches_get(&lowstock, cascade.url(), "lowstock");
    // While the restarted data view replays its history, the cascade waits
    // for it rather than going back to an older state.
    let stock_sources: Vec<u64> = lowstock.seen.iter().map(|s| s.sources["stock"]).collect();
    assert!(stock_sources.is_sorted(), "the stock source never goes backwards: {stock_sources:?}");
    eventually("the cascade is caught up again", || get(&health_url).unwrap().json()["status"] == "caught_up");
    let h = get(&health_url).unwrap().json();
    assert!(h["cascades"]["lowstock"]["upstreams"]["stock"]["reconnects"].as_u64() >= Some(1), "{h}");
}

#[test]
fn a_cascade_on_two_replicas_of_its_upstreams_moves_to_the_other_when_one_dies() {
    let mut sys = System::start();
    let second_dir = sys.dir.path().join("second");
    let second = start_dataview(&sys.chronicler, &second_dir, "127.0.0.1:0");
    let both = format!("{},{}", sys.dataview.url(), second.url());
    let args = upstream_args(&[("stock", &both), ("activity", &both)]);
    let cascade = start_cascade("127.0.0.1:0", &as_strs(&args));
    let mut lowstock = Client::connect(cascade.url(), "lowstock");
    dispatch(sys.chronicler.url(), &seed());
    let (mut rng, mut n) = (Rng::new(), 0);
    let head = sys.dispatch_random(&mut rng, &mut n, 60);
    lowstock.read_until(|c| c.source("stock") >= head);
    // The first replica dies for good; history goes on.
    sys.dataview.kill();
    for _ in 0..3 {
        let head = sys.dispatch_random(&mut rng, &mut n, 30);
        nodb_tests::wait_for_seq(&second, head);
        lowstock.read_until(|c| c.source("stock") >= head);
    }
    let marketing_seq = get(&format!("{}/views/marketing", cascade.url())).unwrap().json()["seq"].as_u64().unwrap();
    lowstock.read_until(|c| c.source("marketing") >= marketing_seq);
    // Every state is the reducer of the upstream states it reported, read
    // back from the surviving replica.
    let upstreams = BTreeMap::from([("stock", second.url().to_string()), ("marketing", cascade.url().to_string())]);
    assert_eq!(check_reducer("lowstock", &lowstock.seen, &upstreams), lowstock.seen.len());
    assert_matches_get(&lowstock, cascade.url(), "lowstock");
    let stock_sources: Vec<u64> = lowstock.seen.iter().map(|s| s.sources["stock"]).collect();
    assert!(stock_sources.is_sorted(), "the stock source never goes backwards: {stock_sources:?}");
}

#[test]
fn a_restarted_cascade_gives_returning_clients_a_snapshot_and_stays_exact() {
    let sys = System::start();
    let view = sys.dataview.url().to_string();
    let args = upstream_args(&[("stock", &view), ("activity", &view)]);
    let listen = free_addr();
    let mut cascade = start_cascade(&listen, &as_strs(&args));
    let mut marketing = Client::connect(cascade.url(), "marketing");
    let (mut rng, mut n) = (Rng::new(), 0);
    let head = sys.dispatch_random(&mut rng, &mut n, 30);
    marketing.read_until(|c| c.source("activity") >= head);
    let before = marketing.seq;
    cascade.kill();
    let head = sys.dispatch_random(&mut rng, &mut n, 30);
    let cascade = start_cascade(&listen, &as_strs(&args));
    // The client comes back with a `since` of the earlier run: a snapshot.
    marketing.reconnect();
    marketing.read_message();
    assert_eq!(marketing.snapshots, 2, "a snapshot after the restart");
    assert!(marketing.seq > before, "seqs keep growing across restarts: {} then {}", before, marketing.seq);
    marketing.read_until(|c| c.source("activity") >= head);
    let head = sys.dispatch_random(&mut rng, &mut n, 10);
    marketing.read_until(|c| c.source("activity") >= head);
    let after: Vec<Seen> = marketing.seen.iter().filter(|s| s.seq > before).cloned().collect();
    let upstreams = BTreeMap::from([("activity", view.clone())]);
    assert_eq!(check_reducer("marketing", &after, &upstreams), after.len());
    assert_matches_get(&marketing, cascade.url(), "marketing");
}

#[test]
fn a_cascade_of_a_cascade_in_another_process_follows_its_restart() {
    let sys = System::start();
    let view = sys.dataview.url().to_string();
    let a_listen = free_addr();
    let a_args = upstream_args(&[("activity", &view)]);
    let mut a_args = as_strs(&a_args);
    a_args.extend(["--cascade", "marketing"]);
    let mut a = start_cascade(&a_listen, &a_args);
    let a_url = a.url().to_string();
    let b_args = upstream_args(&[("stock", &view), ("marketing", &a_url)]);
    let mut b_args = as_strs(&b_args);
    b_args.extend(["--cascade", "lowstock"]);
    let b = start_cascade("127.0.0.1:0", &b_args);
    assert_eq!(get(&format!("{}/views/marketing", b.url())).unwrap().error_code(), "unknown_view");
    let mut lowstock = Client::connect(b.url(), "lowstock");
    dispatch(sys.chronicler.url(), &seed());
    let (mut rng, mut n) = (Rng::new(), 0);
    let catch_up = |c: &mut Client, head: u64| {
        let m = get(&format!("{a_url}/views/marketing")).unwrap().json();
        let target = if m["sources"]["activity"].as_u64() >= Some(head) { m["seq"].as_u64().unwrap() } else { 0 };
        c.read_until(|c| c.source("stock") >= head && c.source("marketing") >= target.max(1));
        target > 0
    };
    let head = sys.dispatch_random(&mut rng, &mut n, 40);
    eventually("marketing reflects the history", || catch_up(&mut lowstock, head));
    let upstreams = BTreeMap::from([("stock", view.clone()), ("marketing", a_url.clone())]);
    assert_eq!(check_reducer("lowstock", &lowstock.seen, &upstreams), lowstock.seen.len());
    let h = get(&format!("{}/health", b.url())).unwrap().json();
    assert_eq!(h["cascades"]["lowstock"]["upstreams"]["marketing"]["sources"]["activity"], json!(head), "{h}");
    // The middle cascade restarts: its seqs move on, the one below resyncs.
    let seen_before = lowstock.seen.len();
    a.kill();
    let head = sys.dispatch_random(&mut rng, &mut n, 20);
    let _a = start_cascade(&a_listen, &a_args);
    eventually("marketing reflects the rest of the history", || catch_up(&mut lowstock, head));
    let after = &lowstock.seen[seen_before..];
    let checked = check_reducer("lowstock", after, &upstreams);
    assert!(checked >= 1, "the states after the restart are checked");
    assert_eq!(check_reducer("lowstock", &lowstock.seen[lowstock.seen.len() - 1..], &upstreams), 1);
    assert_matches_get(&lowstock, b.url(), "lowstock");
}

/// A fake upstream: a WebSocket server whose `stock` stream sends, on its
/// successive connections, a malformed message, a patch that does not
/// apply, a clean close, a good patch and a close again, a refusal of the
/// `since` asked for, and a snapshot; its `marketing` stream sends one
/// snapshot. Returns its URL and the paths it was asked for.
fn fake_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    use tungstenite::Message::Text;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = paths.clone();
    std::thread::spawn(move || {
        let mut stock_connections = 0;
        for tcp in listener.incoming().map_while(Result::ok) {
            let mut path = String::new();
            // The error type is tungstenite's, large or not.
            #[allow(clippy::result_large_err)]
            let cb = |req: &tungstenite::handshake::server::Request, resp| {
                path = req.uri().to_string();
                log.lock().unwrap().push(path.clone());
                if path.ends_with("?since=22") {
                    // As a data view that lost seqs refuses a `since` it has not reached.
                    let body = Some(r#"{"error":{"code":"bad_request","message":"`since` 22 is ahead"}}"#.into());
                    return Err(tungstenite::http::Response::builder().status(400).body(body).unwrap());
                }
                Ok(resp)
            };
            let Ok(mut ws) = tungstenite::accept_hdr(tcp, cb) else { continue };
            let stock = |total: u64| json!({"products": {"apple": {"total": total, "threshold": 5}}, "total": total});
            let replace = |seq: u64, total: u64| {
                json!({"type": "patch", "seq": seq, "ops": [
                    {"op": "replace", "path": "/products/apple/total", "value": total},
                    {"op": "replace", "path": "/total", "value": total}]})
                .to_string()
            };
            let script: Vec<String> = if path.contains("/views/marketing/") {
                vec![json!({"type": "snapshot", "seq": 1, "state": {"products": {"apple": {"hour": 1, "day": 2, "week": 3}}}}).to_string()]
            } else {
                stock_connections += 1;
                match stock_connections {
                    1 => vec![
                        json!({"type": "snapshot", "seq": 1, "state": stock(1)}).to_string(),
                        replace(2, 2),
                        "{malformed".to_string(),
                    ],
                    2 => vec![
                        json!({"type": "snapshot", "seq": 10, "state": stock(3)}).to_string(),
                        json!({"type": "patch", "seq": 11, "ops": [{"op": "remove", "path": "/products/nothing"}]})
                            .to_string(),
                    ],
                    3 => vec![json!({"type": "snapshot", "seq": 20, "state": stock(4)}).to_string(), replace(21, 6)],
                    4 => vec![replace(22, 1)],
                    _ => vec![json!({"type": "snapshot", "seq": 23, "state": stock(2)}).to_string()],
                }
            };
            let close_after = (stock_connections == 3 || stock_connections == 4) && !path.contains("/views/marketing/");
            std::thread::spawn(move || {
                for m in script {
                    if ws.send(Text(m.into())).is_err() {
                        return;
                    }
                }
                if close_after {
                    let _ = ws.close(None);
                }
                // Hold the stream (answering pings) until the cascade drops it.
                while ws.read().is_ok() {}
            });
        }
    });
    (url, paths)
}

#[test]
fn bad_upstream_data_is_logged_and_resynced_from_a_snapshot_while_serving() {
    let (fake, paths) = fake_upstream();
    let args = upstream_args(&[("stock", &fake), ("marketing", &fake)]);
    let mut args = as_strs(&args);
    args.extend(["--cascade", "lowstock", "--resume-grace", "1"]);
    let cascade = start_cascade("127.0.0.1:0", &args);
    let mut c = Client::connect(cascade.url(), "lowstock");
    c.read_until(|c| c.source("stock") == 23);
    let mut stock_paths: Vec<String> =
        paths.lock().unwrap().iter().filter(|p| p.contains("/views/stock/")).cloned().collect();
    // A refused `since` is asked again (the upstream may be recovering)
    // until the grace second has passed.
    let refused = stock_paths.iter().filter(|p| p.ends_with("?since=22")).count();
    assert!(refused >= 2, "a refused `since` is retried: {stock_paths:?}");
    stock_paths.dedup_by(|a, b| a == b && a.ends_with("?since=22"));
    assert_eq!(
        stock_paths,
        [
            "/views/stock/stream",
            "/views/stock/stream",
            "/views/stock/stream",
            "/views/stock/stream?since=21",
            "/views/stock/stream?since=22",
            "/views/stock/stream"
        ],
        "resyncs take a snapshot (no `since`); a dropped stream resumes with `since`, \
         or after a refusal that lasts, a snapshot"
    );
    // Every state the client saw is the reducer of the fake's states.
    let stock_at = |seq: u64| {
        let total = match seq {
            1 => 1,
            2 => 2,
            10 => 3,
            20 => 4,
            21 => 6,
            22 => 1,
            23 => 2,
            _ => panic!("the fake never had seq {seq}"),
        };
        Tree::from(json!({"products": {"apple": {"total": total, "threshold": 5}}, "total": total}))
    };
    let marketing = Tree::from(json!({"products": {"apple": {"hour": 1, "day": 2, "week": 3}}}));
    let def = definition("lowstock");
    for s in &c.seen {
        assert_eq!(s.sources["marketing"], 1);
        let expected = def.reduce(&[&stock_at(s.sources["stock"]), &marketing]);
        assert_eq!(Tree::from(&s.state), expected, "at {s:?}");
    }
    assert!(!c.seen.iter().any(|s| s.sources["stock"] == 11), "the patch that did not apply was not taken");
    assert_eq!(
        c.state["products"]["apple"],
        json!({"total": 2, "threshold": 5, "short": 3, "reorder": null, "sold_day": 2, "sold_week": 3, "cover_hours": 112})
    );
    assert_matches_get(&c, cascade.url(), "lowstock");
    let log = cascade.stderr();
    assert_eq!(log.matches("bad data from the upstream; resyncing it from a snapshot").count(), 2, "{log}");
    assert!(log.contains("malformed") && log.contains("does not apply"), "{log}");
    assert!(
        log.contains("waiting for it") && log.contains("the upstream still refuses to resume; taking a fresh snapshot"),
        "{log}"
    );
    let h = get(&format!("{}/health", cascade.url())).unwrap().json();
    assert_eq!(h["cascades"]["lowstock"]["upstreams"]["stock"]["resyncs"], 2, "{h}");
    assert_eq!(h["status"], "caught_up", "{h}");
}

#[test]
fn nodb_up_serves_the_cascades_beside_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let up = Service::start(&["up", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let url = up.url().to_string();
    let mut marketing = Client::connect(up.url(), "marketing");
    let head = dispatch(&url, &seed());
    marketing.read_until(|c| c.source("activity") >= head);
    assert_eq!(marketing.state["products"]["p0"]["hour"], 2, "{}", marketing.state);
    eventually("lowstock lists p0", || {
        let l = get(&format!("{url}/views/lowstock")).unwrap().json();
        l["state"]["products"]["p0"]["threshold"] == 40 && l["sources"]["stock"].as_u64() >= Some(head)
    });
    let views = get(&format!("{url}/views")).unwrap().json();
    let names: Vec<&str> = views["views"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["stock", "activity", "marketing", "lowstock"], "{views}");
    // (The reorder envoy of `nodb up` may have recorded an order since.)
    assert!(get(&format!("{url}/views/stock")).unwrap().json()["seq"].as_u64() >= Some(head));
    assert_eq!(get(&format!("{url}/views/marketing/state/products/p0/hour")).unwrap().body, "2");
    assert_eq!(get(&format!("{url}/views/nope")).unwrap().error_code(), "unknown_view");
    eventually("the cascades are caught up", || {
        get(&format!("{url}/cascades/health")).unwrap().json()["status"] == "caught_up"
    });
}

#[test]
fn bad_command_lines_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let listen = ["--listen", "127.0.0.1:0"];
    let cases: &[(&[&str], &str)] = &[
        (&["--app", "json"], "no app \"json\" has cascades; the apps with cascades are: warehouse"),
        (&[], "the cascade \"marketing\" reads the view \"activity\": say where it is with --upstream activity="),
        (&["--upstream", "activity"], "--upstream takes NAME=URL"),
        (&["--upstream", "activity=localhost:1", "--upstream", "stock=http://h:1"], "must look like http://HOST:PORT"),
        (&["--upstream", "nope=http://h:1"], "no cascade run here reads a view called \"nope\""),
        (&["--cascade", "nope"], "the app \"warehouse\" has no cascade \"nope\"; it has marketing, lowstock"),
        (
            &["--upstream", "activity=http://h:1", "--cascade", "marketing", "--resume-grace=-1"],
            "--resume-grace must be",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["cascade"];
        all.extend_from_slice(&listen);
        all.extend_from_slice(args);
        let out = nodb_tests::run(dir.path(), &all, "");
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn the_third_party_example_builds_a_view_from_a_url() {
    let bin = nodb_tests::package_example_bin("nodb-cascade", "shelf_gaps");
    let dir = tempfile::tempdir().unwrap();
    let up = Service::start(&["up", "--data", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let gaps = Service::start_bin(&bin, &["--upstream", up.url(), "--listen", "127.0.0.1:0"]).unwrap();
    let head = dispatch(
        up.url(),
        &[
            json!({"id": "t:1", "type": "stock/corrected", "payload": {"product": "apple", "location": "back", "quantity": 30}}),
        ],
    );
    eventually("shelf_gaps lists apple", || {
        let g = get(&format!("{}/views/shelf_gaps", gaps.url())).unwrap().json();
        g["sources"]["stock"].as_u64() >= Some(head)
            && g["state"]["products"]["apple"] == json!({"elsewhere": 30, "bring": 12})
    });
}
