//! Access control end to end: `nodb up --auth-key` and a rights matrix —
//! every endpoint × {no token, expired, wrong key, read-only, a client's
//! own token (used against another client, type and view), a subtree
//! reader, admin} — each cell the status (and for refusals the error
//! code) it must answer; then the browser's own attacks (a foreign Origin
//! or Host), and `nodb keygen`/`nodb token` themselves.

use std::path::Path;

use nodb_tests::raw::{self, RawSocket};
use nodb_tests::{Service, eventually, run, send};
use serde_json::{Value, json};

/// The token columns of the matrix.
const COLUMNS: [&str; 7] = ["none", "expired", "wrong_key", "readonly", "alice", "subtree", "admin"];

struct Tokens {
    by_column: Vec<Option<String>>,
}

impl Tokens {
    fn get(&self, column: &str) -> Option<&str> {
        let i = COLUMNS.iter().position(|c| *c == column).unwrap();
        self.by_column[i].as_deref()
    }
}

/// Mints a token with the CLI, as an operator would.
fn token(dir: &Path, key: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "--key", key];
    all.extend_from_slice(args);
    let out = run(dir, &all, "");
    assert_eq!(out.code, Some(0), "nodb {all:?}: {}", out.stderr);
    out.stdout.trim().to_string()
}

fn tokens(dir: &Path) -> Tokens {
    let key = dir.join("key.jwk");
    let other = dir.join("other.jwk");
    for k in [&key, &other] {
        let out = run(dir, &["keygen", k.to_str().unwrap()], "");
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let key = key.to_str().unwrap();
    // Expired: minted with the library, an hour in the past.
    let keys = nodb_auth::KeySet::load(&[key]).unwrap();
    let past = nodb_auth::key::now() - 3600;
    let expired = keys
        .signing_key()
        .unwrap()
        .mint(&nodb_auth::Claims { sub: "alice".into(), admin: true, exp: past, ..Default::default() })
        .unwrap();
    Tokens {
        by_column: vec![
            None,
            Some(expired),
            Some(token(dir, other.to_str().unwrap(), &["--client", "alice", "--admin"])),
            Some(token(dir, key, &["--client", "reader", "--read", "*"])),
            Some(token(dir, key, &["--client", "alice", "--dispatch", "stock/", "--read", "stock"])),
            Some(token(dir, key, &["--client", "alice", "--read", "stock/products/apple"])),
            Some(token(dir, key, &["--client", "ops", "--admin", "--ttl", "10m"])),
        ],
    }
}

/// Status and error code of one request with one column's token (as a
/// bearer header; `?token=` for WebSocket upgrades).
fn call(url: &str, method: &str, path: &str, body: &Value, token: Option<&str>) -> (u16, String) {
    if method == "WS" {
        return upgrade(url, path, token);
    }
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let r = send(method, &format!("{url}{path}"), &headers, body.to_string().as_bytes()).unwrap();
    let code = if r.status >= 400 { r.error_code() } else { String::new() };
    (r.status, code)
}

/// A WebSocket upgrade: 101, or the refusal's status and code.
fn upgrade(url: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut ws = format!("{}{path}", url.replacen("http://", "ws://", 1));
    if let Some(t) = token {
        ws = format!("{ws}{sep}token={t}");
    }
    match raw::websocket(&ws, &[]) {
        Ok(mut socket) => {
            let _ = socket.close(None);
            (101, String::new())
        }
        Err(refused) => (refused.status, refused.error_code()),
    }
}

/// One row of the matrix: method, path, body, and each column's answer.
type Row = (&'static str, &'static str, Value, Vec<(u16, &'static str)>);

/// One row: what every column must answer. `A` allowed (the status given),
/// `U` 401 unauthorized, `F` 403 forbidden.
fn expect(cells: &str, allowed: u16) -> Vec<(u16, &'static str)> {
    cells
        .split_whitespace()
        .map(|c| match c {
            "A" => (allowed, ""),
            "U" => (401, "unauthorized"),
            "F" => (403, "forbidden"),
            other => panic!("bad cell {other}"),
        })
        .collect()
}

#[test]
fn every_endpoint_answers_each_token_as_its_rights_say() {
    let dir = tempfile::tempdir().unwrap();
    let t = tokens(dir.path());
    let key = dir.path().join("key.jwk");
    let data = dir.path().join("data");
    let up = Service::start(&[
        "up",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--auth-key",
        key.to_str().unwrap(),
    ])
    .unwrap();
    let url = up.url().to_string();
    // nodb up's own parts hold tokens: the envoy records its start, the
    // cascades get their state.
    let admin = t.get("admin");
    eventually("the reorder envoy recorded its start", || {
        call(&url, "GET", "/clients/envoy-reorder", &Value::Null, admin).0 == 200
    });
    eventually("the marketing cascade has a state", || {
        call(&url, "GET", "/views/marketing", &Value::Null, admin).0 == 200
    });
    let correct = |id: &str| json!({"id": id, "type": "stock/corrected", "payload": {"product": "apple", "location": "shelf", "quantity": 4}});
    // Apple in the stock, so that its subtree exists.
    assert_eq!(call(&url, "POST", "/actions", &correct("ops:1"), admin).0, 200);
    eventually("the stock view has apple", || {
        call(&url, "GET", "/views/stock/state/products/apple", &Value::Null, admin).0 == 200
    });
    let none = Value::Null;
    //                                          none expired wrong readonly alice subtree admin
    let rows: Vec<Row> = vec![
        ("POST", "/actions", correct("alice:1"), expect("U U U F A F F", 200)),
        ("POST", "/actions", correct("alice.tab-2:1"), expect("U U U F A F F", 200)),
        // Another client's number, another type, a control action.
        ("POST", "/actions", correct("bob:1"), expect("U U U F F F F", 200)),
        (
            "POST",
            "/actions",
            json!({"id": "alice:2", "type": "reorder/placed", "payload": {}}),
            expect("U U U F F F F", 200),
        ),
        (
            "POST",
            "/actions",
            json!({"id": "ops:2", "type": "@@nodb/snapshot", "payload": {}}),
            expect("U U U F F F A", 200),
        ),
        ("WS", "/ws", none.clone(), expect("U U U F A F A", 101)),
        ("GET", "/actions?from=1&to=1", none.clone(), expect("U U U F F F A", 200)),
        ("GET", "/clients/alice", none.clone(), expect("U U U F A A A", 200)),
        ("GET", "/views", none.clone(), expect("U U U A A A A", 200)),
        ("GET", "/views/stock", none.clone(), expect("U U U A A A A", 200)),
        ("GET", "/views/stock?at=1", none.clone(), expect("U U U A A A A", 200)),
        ("GET", "/views/stock/state/products", none.clone(), expect("U U U A A F A", 200)),
        ("GET", "/views/stock/state/products/apple", none.clone(), expect("U U U A A A A", 200)),
        ("WS", "/views/stock/stream", none.clone(), expect("U U U A A A A", 101)),
        ("WS", "/views/stock/stream?client=alice.tab", none.clone(), expect("U U U F A A F", 101)),
        ("WS", "/views/stock/stream?exact=true", none.clone(), expect("U U U A A F A", 101)),
        ("GET", "/views/activity", none.clone(), expect("U U U A F F A", 200)),
        ("GET", "/views/marketing", none.clone(), expect("U U U A F F A", 200)),
        ("WS", "/views/marketing/stream", none.clone(), expect("U U U A F F A", 101)),
        ("GET", "/metrics", none.clone(), expect("U U U F F F A", 200)),
        ("GET", "/chronicler/metrics", none.clone(), expect("U U U F F F A", 200)),
        ("GET", "/envoys/metrics", none.clone(), expect("U U U F F F A", 200)),
        ("GET", "/cascades/metrics", none.clone(), expect("U U U F F F A", 200)),
        ("POST", "/supplier/control", json!({}), expect("U U U F F F A", 200)),
        // Public: the health checks and the page.
        ("GET", "/health", none.clone(), expect("A A A A A A A", 200)),
        ("GET", "/chronicler/health", none.clone(), expect("A A A A A A A", 200)),
        ("GET", "/nodb.js", none.clone(), expect("A A A A A A A", 200)),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, cells) in &rows {
        for (column, (status, code)) in COLUMNS.iter().zip(cells) {
            let got = call(&url, method, path, body, t.get(column));
            if got != (*status, (*code).to_string()) {
                wrong.push(format!("{method} {path} as {column}: expected {status} {code}, got {} {}", got.0, got.1));
            }
        }
    }
    assert!(wrong.is_empty(), "{} cells wrong:\n{}", wrong.len(), wrong.join("\n"));
    // A subtree reader's view is the subtree, hashed as such.
    let sub = send(
        "GET",
        &format!("{url}/views/stock"),
        &[("Authorization", &format!("Bearer {}", t.get("subtree").unwrap()))],
        b"",
    )
    .unwrap()
    .json();
    let whole =
        send("GET", &format!("{url}/views/stock"), &[("Authorization", &format!("Bearer {}", admin.unwrap()))], b"")
            .unwrap()
            .json();
    assert_eq!(sub["state"], whole["state"]["products"]["apple"]);
    assert_ne!(sub["hash"], whole["hash"]);
    // A dispatch relayed by the data view is checked against the sender's
    // own token: a read-only token is told `forbidden`, not to retry.
    let ws = format!("{}/views/stock/stream?token={}", url.replacen("http://", "ws://", 1), t.get("readonly").unwrap());
    let mut socket = raw::websocket(&ws, &[]).unwrap();
    socket.send(raw::dispatch_message(&correct("reader:1"))).unwrap();
    let error = loop {
        let m = raw::next_json(&mut socket, "the relayed dispatch");
        if m["type"] == "error" {
            break m;
        }
    };
    assert_eq!((error["code"].as_str(), error["id"].as_str()), (Some("forbidden"), Some("reader:1")), "{error}");
}

#[test]
fn browsers_other_origins_and_hosts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Service::start(&["up", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
    let url = up.url().to_string();
    let own = url.clone();
    let get = |headers: &[(&str, &str)]| send("GET", &format!("{url}/views/stock"), headers, b"").unwrap();
    assert_eq!(get(&[]).status, 200, "open on loopback without --auth-key");
    assert_eq!(get(&[("Origin", &own)]).status, 200, "the page's own origin");
    let evil = get(&[("Origin", "https://evil.example")]);
    assert_eq!((evil.status, evil.error_code()), (403, "forbidden".to_string()));
    let rebound = get(&[("Host", "evil.example")]);
    assert_eq!((rebound.status, rebound.error_code()), (403, "forbidden".to_string()), "DNS rebinding");
    // A WebSocket from another page is refused at the upgrade.
    let ws = url.replacen("http://", "ws://", 1) + "/views/stock/stream";
    match raw::websocket(&ws, &[("Origin", "https://evil.example")]) {
        Err(refused) => assert_eq!(refused.status, 403),
        Ok(_) => panic!("a foreign page's WebSocket was not refused"),
    }
}

#[test]
fn a_service_beyond_loopback_needs_keys_or_insecure_open() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["chronicler", "--data", "d", "--listen", "0.0.0.0:0"], "");
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--auth-key") && out.stderr.contains("--insecure-open"), "{}", out.stderr);
    // Any page's origin without tokens is refused the same way.
    let any = run(dir.path(), &["chronicler", "--data", "d", "--listen", "127.0.0.1:0", "--allow-origin", "*"], "");
    assert_eq!(any.code, Some(2));
    assert!(any.stderr.contains("--allow-origin '*'"), "{}", any.stderr);
    let data = dir.path().join("d2");
    let mut open =
        Service::start(&["chronicler", "--data", data.to_str().unwrap(), "--listen", "0.0.0.0:0", "--insecure-open"]);
    let open = open.as_mut().unwrap();
    assert_eq!(open.terminate(10_000), Some(0));
}

#[test]
fn keygen_writes_a_private_key_once_and_token_checks_its_claims() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["keygen", "k.jwk"], "");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(dir.path().join("k.jwk")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(run(dir.path(), &["keygen", "k.jwk"], "").code, Some(2), "never overwrites a key");
    let bad = run(dir.path(), &["token", "--key", "k.jwk", "--client", "envoy-reorder"], "");
    assert_eq!(bad.code, Some(2), "an envoy id needs --envoy");
    assert!(bad.stderr.contains("envoy"), "{}", bad.stderr);
    assert_eq!(run(dir.path(), &["token", "--key", "k.jwk", "--client", "a", "--read", "x/"], "").code, Some(2));
    let ok = run(dir.path(), &["token", "--key", "k.jwk", "--client", "envoy-reorder", "--envoy", "--ttl", "90s"], "");
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let keys = nodb_auth::KeySet::load(&[dir.path().join("k.jwk")]).unwrap();
    let claims = keys.verify(ok.stdout.trim(), nodb_auth::key::now()).unwrap();
    assert!(claims.envoy && claims.sub == "envoy-reorder");
    assert!((85..=90).contains(&(claims.exp - nodb_auth::key::now())));
}

/// Reads messages until a close frame; its code and reason.
fn close_of(socket: &mut RawSocket) -> (u16, String) {
    match raw::close_frame(socket, std::time::Duration::from_secs(60), "the stream") {
        Ok(frame) => frame.unwrap_or((1005, String::new())),
        Err(e) => panic!("the stream ended without a close frame: {e}"),
    }
}

#[test]
fn a_stream_closes_when_its_token_expires_and_a_follower_renews_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(run(d, &["keygen", "key.jwk"], "").code, Some(0));
    let key = d.join("key.jwk");
    let key = key.to_str().unwrap();
    let chronicler = Service::start(&[
        "chronicler",
        "--data",
        d.join("log").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--auth-key",
        key,
    ])
    .unwrap();
    // The data view starts with a token that lives 3 s; the file is then
    // rewritten with a longer one, which it must pick up on reconnecting.
    let file = d.join("dataview.token");
    std::fs::write(&file, token(d, key, &["--client", "nodb-dataview", "--log", "--ttl", "3s"])).unwrap();
    let view = Service::start(&[
        "dataview",
        "--app",
        "json",
        "--chronicler",
        chronicler.url(),
        "--listen",
        "127.0.0.1:0",
        "--snapshots",
        d.join("snapshots").to_str().unwrap(),
        "--auth-key",
        key,
        "--token-file",
        file.to_str().unwrap(),
    ])
    .unwrap();
    std::fs::write(&file, token(d, key, &["--client", "nodb-dataview", "--log", "--ttl", "1h"])).unwrap();
    // A reader whose token lives 2 s is closed with 4401 when it expires.
    let short = token(d, key, &["--client", "reader", "--read", "*", "--ttl", "2s"]);
    let ws = format!("{}/views/doc/stream?token={short}", view.url().replacen("http://", "ws://", 1));
    let mut socket = raw::websocket(&ws, &[]).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(close_of(&mut socket), (4401, "token expired".to_string()));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "closed after {:?}", started.elapsed());
    // After the data view's first token has expired, it still follows.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let writer = token(d, key, &["--client", "w", "--dispatch", "json/"]);
    let action = json!({"id": "w:1", "type": "json/patch", "payload": [{"op": "add", "path": "/n", "value": 1}]});
    let auth = format!("Bearer {writer}");
    let posted = send(
        "POST",
        &format!("{}/actions", chronicler.url()),
        &[("Content-Type", "application/json"), ("Authorization", &auth)],
        action.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(posted.status, 200, "{}", posted.body);
    let reader = format!("Bearer {}", token(d, key, &["--client", "reader", "--read", "doc"]));
    eventually("the data view shows the action after renewing its token", || {
        send("GET", &format!("{}/views/doc", view.url()), &[("Authorization", &reader)], b"")
            .is_ok_and(|r| r.status == 200 && r.json()["state"] == json!({"n": 1}))
    });
}
