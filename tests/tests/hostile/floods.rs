//! Clients that hold or flood a service: slow senders, thousands of idle
//! sockets, too many connections from one address, floods of dispatches
//! (per client, per address, in one batch, relayed by a data view) and of
//! as-of reads. Each limit bites with a clear answer, is counted in the
//! service's `/metrics`, and other clients are served meanwhile. 12 cases.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nodb_tests::get;
use nodb_tests::raw::{self, RawResponse, closed_within};
use serde_json::{Value, json};

use super::{At, Services, dispatch_message, metric, read_answer, read_json};

fn action(id: &str) -> Value {
    json!({"id": id, "type": "stock/corrected", "payload": {"product": "fig", "location": "shelf", "quantity": 1}})
}

#[test]
fn slow_senders_are_cut_off() {
    let mut s = Services::start(&["--header-timeout", "1", "--body-timeout", "1", "--request-timeout", "2"], &[]);
    let addr = s.addr(At::Chronicler);
    // A silent socket, and headers at a crawl: closed within the header
    // timeout.
    let mut silent = TcpStream::connect(&addr).unwrap();
    let mut crawling = TcpStream::connect(&addr).unwrap();
    crawling.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(10)), "a silent socket stays open");
    s.still_serves_and_lost_nothing("a silent socket");
    assert!(closed_within(&mut crawling, Duration::from_secs(10)), "headers at a crawl stay open");
    assert!(t.elapsed() < Duration::from_secs(10));
    s.still_serves_and_lost_nothing("headers at a crawl");
    // A body at a byte every 300 ms: never idle for the body timeout, so
    // the request timeout ends it with 408.
    let head = format!(
        "POST /actions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
    );
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.write_all(head.as_bytes()).unwrap();
    let mut writer = tcp.try_clone().unwrap();
    let drip = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    let answer = RawResponse::parse(&out).unwrap_or_else(|| panic!("a body at a crawl: {out:?}"));
    assert_eq!(answer.status, 408, "a body at a crawl: {answer:?}");
    drop(tcp);
    let _ = drip.join();
    s.still_serves_and_lost_nothing("a body at a crawl");
    // A body that stops: given up after the body timeout.
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.write_all(format!("{head}[").as_bytes()).unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(10)), "a stalled body stays open");
    s.still_serves_and_lost_nothing("a stalled body");
}

/// Connects `n` idle sockets to `addr`: those the service keeps, and the
/// answers of those it refused.
fn idle_sockets(addr: &str, n: usize) -> (Vec<TcpStream>, Vec<RawResponse>) {
    let sockets: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    for mut tcp in sockets {
        tcp.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = vec![0u8; 4096];
        match tcp.read(&mut buf) {
            Ok(0) => refused.push(RawResponse { status: 0, headers: Vec::new(), body: String::new() }),
            Ok(k) => refused.push(RawResponse::parse(&buf[..k]).expect("an HTTP answer")),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                kept.push(tcp);
            }
            Err(_) => refused.push(RawResponse { status: 0, headers: Vec::new(), body: String::new() }),
        }
    }
    (kept, refused)
}

#[test]
fn thousands_of_idle_sockets_hit_the_connection_cap_while_streams_are_served() {
    let mut s = Services::start(
        &["--max-connections-per-ip", "12"],
        &["--max-connections", "100", "--max-connections-per-ip", "0", "--header-timeout", "60"],
    );
    s.still_serves_and_lost_nothing("start");
    // A stream client, then 2,000 idle sockets at the data view.
    let mut stream = s.socket(At::View, "/views/stock/stream");
    let snapshot = read_json(&mut stream, "a stream");
    let (kept, refused) = idle_sockets(&s.addr(At::View), 2000);
    // The cap of 100 holds, with the stream (and, for a moment, the
    // connections of the requests before).
    assert!((95..=99).contains(&kept.len()), "{} kept", kept.len());
    for r in refused.iter().filter(|r| r.status != 0) {
        assert_eq!(
            (r.status, r.error_code().as_str(), r.header("retry-after")),
            (503, "unavailable", Some("1")),
            "{r:?}"
        );
    }
    assert!(refused.iter().filter(|r| r.status == 503).count() > 1500, "the refused are told why");
    // The stream client is served: a new action reaches it.
    let seq = s.dispatch(&json!([action("busy:1")]))["acks"][0]["seq"].as_u64().unwrap();
    let patch = read_json(&mut stream, "the stream under the cap");
    assert_eq!((patch["type"].as_str(), patch["seq"].as_u64()), (Some("patch"), Some(seq)), "{snapshot} then {patch}");
    drop(kept);
    nodb_tests::eventually("the idle sockets' slots are given back", || {
        get(&format!("{}/health", s.view.url())).is_ok_and(|r| r.status == 200)
    });
    let counted = metric(&s.view, "nodb_refused_connections_total{reason=\"max_connections\"}");
    assert!(counted.is_some_and(|n| n >= 1800), "counted in /metrics: {counted:?}");
    s.still_serves_and_lost_nothing("2,000 idle sockets");

    // Too many connections from one address at the chronicler (the data
    // view follows it from this address too).
    let (kept, refused) = idle_sockets(&s.addr(At::Chronicler), 20);
    assert!(kept.len() < 12 && refused.len() > 8, "{} kept", kept.len());
    let r = refused.iter().find(|r| r.status != 0).expect("an answer");
    assert_eq!((r.status, r.error_code().as_str()), (503, "unavailable"), "{r:?}");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("per address"), "{r:?}");
    drop(kept);
    std::thread::sleep(Duration::from_millis(300));
    let counted = metric(&s.chronicler, "nodb_refused_connections_total{reason=\"max_connections_per_ip\"}");
    assert!(counted.is_some_and(|n| n >= 8), "counted in /metrics: {counted:?}");
    s.still_serves_and_lost_nothing("too many connections from one address");
}

/// `POST /actions` with `body`: the answer.
fn post_raw(s: &Services, body: &Value) -> RawResponse {
    raw::request(
        &s.addr(At::Chronicler),
        "POST",
        "/actions",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .unwrap()
}

fn assert_rate_limited(r: &RawResponse, case: &str) {
    assert_eq!((r.status, r.error_code().as_str()), (429, "rate_limited"), "{case}: {r:?}");
    let wait: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=60).contains(&wait), "{case}: Retry-After: {r:?}");
}

#[test]
fn floods_of_dispatches_get_429_with_retry_after_and_are_counted() {
    let mut s =
        Services::start(&["--client-rate", "1", "--client-burst", "5", "--ip-rate", "2", "--ip-burst", "30"], &[]);
    s.still_serves_and_lost_nothing("start");
    // One client, over its burst: 429; another client is served.
    let burst: Vec<Value> = (1..=5).map(|n| action(&format!("flood:{n}"))).collect();
    s.dispatch(&Value::from(burst));
    let r = post_raw(&s, &json!(action("flood:6")));
    assert_rate_limited(&r, "a flood from one client");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("flood"), "{r:?}");
    s.dispatch(&json!([action("calm:1")]));
    s.still_serves_and_lost_nothing("a flood from one client");
    // More than a burst in one batch: 413, since waiting would not help.
    let batch: Vec<Value> = (1..=6).map(|n| action(&format!("batch:{n}"))).collect();
    let r = post_raw(&s, &Value::from(batch));
    assert_eq!((r.status, r.error_code().as_str(), r.header("retry-after")), (413, "payload_too_large", None), "{r:?}");
    s.still_serves_and_lost_nothing("a batch larger than the burst");
    // On the dispatch socket: each action over the limit gets an error
    // with its id; the socket stays open.
    let mut ws = s.socket(At::Chronicler, "/ws");
    for n in 7..=13 {
        ws.send(dispatch_message(&action(&format!("flood:{n}")))).unwrap();
    }
    let answers: Vec<Value> = (0..7).map(|_| read_answer(&mut ws, "a flood on /ws")).collect();
    let limited = answers.iter().filter(|a| a["code"] == "rate_limited").count();
    assert!(limited >= 3, "{answers:?}");
    for a in &answers {
        if a["type"] == "ack" {
            s.record_acks(a);
        } else {
            assert!(a["id"].as_str().is_some_and(|id| id.starts_with("flood:")), "{a}");
        }
    }
    s.still_serves_and_lost_nothing("a flood on /ws");
    // Many clients from one address: the address's own limit.
    let mut limited = None;
    for n in 0..40 {
        let r = post_raw(&s, &json!(action(&format!("many{n}:1"))));
        match r.status {
            200 => s.record_acks(&r.json()),
            _ => {
                limited = Some(r);
                break;
            }
        }
    }
    let r = limited.expect("the address's limit bites");
    assert_rate_limited(&r, "many clients from one address");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("address"), "{r:?}");
    std::thread::sleep(Duration::from_millis(1100));
    s.still_serves_and_lost_nothing("many clients from one address");
    for (reason, at_least) in [("client_rate", 4), ("ip_rate", 1), ("over_burst", 1)] {
        let n = metric(&s.chronicler, &format!("nodb_refused_dispatches_total{{reason=\"{reason}\"}}"));
        assert!(n.is_some_and(|n| n >= at_least), "{reason}: {n:?}");
    }
}

#[test]
fn a_flood_relayed_by_a_data_view_is_limited_per_browser_address() {
    let mut s = Services::start(&[], &["--ip-rate", "1", "--ip-burst", "3"]);
    s.still_serves_and_lost_nothing("start");
    let mut ws = s.socket(At::View, "/views/stock/stream");
    read_json(&mut ws, "relayed flood");
    for n in 1..=6 {
        ws.send(dispatch_message(&action(&format!("relayed:{n}")))).unwrap();
    }
    let answers: Vec<Value> = (0..6).map(|_| read_answer(&mut ws, "relayed flood")).collect();
    let (acks, limited): (Vec<&Value>, Vec<&Value>) = answers.iter().partition(|a| a["type"] == "ack");
    assert_eq!(acks.len(), 3, "the burst is relayed: {answers:?}");
    for a in &limited {
        assert_eq!((a["type"].as_str(), a["code"].as_str()), (Some("error"), Some("rate_limited")), "{a}");
        assert!(a["id"].as_str().is_some_and(|id| id.starts_with("relayed:")), "{a}");
        assert!(a["message"].as_str().unwrap().contains("address"), "{a}");
    }
    for a in acks {
        s.record_acks(a);
    }
    assert_eq!(metric(&s.view, "nodb_refused_dispatches_total{reason=\"ip_rate\"}"), Some(3));
    s.still_serves_and_lost_nothing("a flood relayed by a data view");
}

#[test]
fn a_flood_of_as_of_reads_gets_503_with_retry_after_while_live_reads_are_served() {
    let mut s = Services::start(&[], &["--history", "4", "--history-readers", "1", "--snapshot-every", "100000"]);
    let actions: Vec<Value> = (1..=30).map(|n| action(&format!("old:{n}"))).collect();
    s.dispatch(&Value::from(actions));
    s.still_serves_and_lost_nothing("start");
    // The chronicler stops answering (SIGSTOP): the one history reader
    // waits on its replay, and the reads behind it wait their turn.
    let pid = rustix::process::Pid::from_raw(s.chronicler.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let url = s.view.url().to_string();
    let readers: Vec<_> = (0..6)
        .map(|k| {
            let addr = url.trim_start_matches("http://").to_string();
            std::thread::spawn(move || {
                raw::request(&addr, "GET", &format!("/views/stock?at={}", 3 + k), &[], b"").unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Live reads are served meanwhile.
    let live = get(&format!("{url}/views/stock")).unwrap();
    assert_eq!(live.status, 200, "{live:?}");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(11) && !readers.iter().skip(1).all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(100));
    }
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    let answers: Vec<RawResponse> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let busy: Vec<&RawResponse> = answers.iter().filter(|a| a.status == 503).collect();
    assert!(busy.len() >= 4, "{answers:?}");
    for a in busy.iter().filter(|a| a.header("retry-after").is_some()) {
        assert_eq!((a.error_code().as_str(), a.header("retry-after")), ("unavailable", Some("1")), "{a:?}");
    }
    assert!(busy.iter().filter(|a| a.header("retry-after") == Some("1")).count() >= 4, "{answers:?}");
    assert!(metric(&s.view, "nodb_dataview_history_busy_total").is_some_and(|n| n >= 4));
    s.still_serves_and_lost_nothing("a flood of as-of reads");
    // And once free, the reader answers.
    let r = get(&format!("{url}/views/stock?at=5")).unwrap();
    assert_eq!((r.status, r.json()["seq"].as_u64()), (200, Some(5)), "{r:?}");
}
