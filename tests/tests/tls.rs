//! TLS end to end (`--tls-cert`, `--tls-key`), with a test CA and a server
//! certificate for `localhost` and `127.0.0.1` made at run time:
//!
//! - a chronicler serving TLS takes `POST /actions` over `https://` from a
//!   client that trusts the CA, refuses a client that trusts another CA,
//!   and never answers plain HTTP on the same port;
//! - a data view serving TLS follows it over `https://`, trusting the CA
//!   through `SSL_CERT_FILE` (read by rustls-platform-verifier through
//!   rustls-native-certs), serves the view over `https://` and streams it
//!   over `wss://`, and relays a dispatch over its socket to the chronicler
//!   (a `wss://` connection of its own);
//! - a data view that does not trust the CA (the platform's roots, or
//!   another CA) never follows: TLS verification is on.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nodb_client::{ServiceUrl, StreamOptions, ViewClient, WsConnector};
use nodb_shared::Tree;
use nodb_shared::protocol::{Action, ClientMessage, ServerMessage};
use nodb_tests::{Service, eventually, get, nodb_bin};
use serde_json::{Value, json};

/// A test CA and a server certificate it signed for `localhost` and
/// `127.0.0.1`, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("nodb {name} test CA"));
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();

        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Pki { dir, ca }
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `--tls-cert FILE --tls-key FILE`.
    fn flags(&self) -> Vec<String> {
        let file = |name: &str| self.dir.path().join(name).to_str().unwrap().to_string();
        vec!["--tls-cert".into(), file("server.pem"), "--tls-key".into(), file("server.key")]
    }

    /// An HTTPS client that trusts this CA and nothing else.
    fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_der(self.ca.der()).unwrap();
        reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(30)).build().unwrap()
    }

    /// A WebSocket connector that trusts this CA and nothing else.
    fn ws(&self) -> WsConnector {
        WsConnector::new().trust_only(vec![self.ca.der().clone()]).unwrap()
    }
}

/// Starts `nodb args…` with `env` added to its environment (and, when
/// `unset` is given, those variables removed, through `env -u`).
async fn start(args: Vec<String>, env: Vec<(String, String)>, unset: &[&str]) -> Service {
    let mut argv: Vec<String> = unset.iter().flat_map(|v| ["-u".to_string(), v.to_string()]).collect();
    let bin = if unset.is_empty() {
        nodb_bin()
    } else {
        argv.push(nodb_bin().to_str().unwrap().to_string());
        PathBuf::from("env")
    };
    argv.extend(args);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Service::start_with_env(&bin, &args, &env).unwrap()
    })
    .await
    .unwrap()
}

async fn start_chronicler(dir: &Path, pki: &Pki) -> Service {
    let mut args = vec!["chronicler".to_string(), "--data".into(), path(&dir.join("log")), "--listen".into()];
    args.push("127.0.0.1:0".into());
    args.extend(pki.flags());
    let chronicler = start(args, Vec::new(), &[]).await;
    assert!(chronicler.url().starts_with("https://127.0.0.1:"), "{}", chronicler.url());
    chronicler
}

/// `nodb dataview --app json` following `chronicler`, with `extra` flags.
fn dataview_args(dir: &Path, name: &str, chronicler: &str, extra: Vec<String>) -> Vec<String> {
    let mut args: Vec<String> = vec!["dataview".into(), "--app".into(), "json".into(), "--chronicler".into()];
    args.extend([chronicler.to_string(), "--listen".into(), "127.0.0.1:0".into()]);
    args.extend(["--snapshots".into(), path(&dir.join(name))]);
    args.extend(extra);
    args
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A `json/patch` action of client `c`.
fn patch(n: u64, ops: Value) -> Action {
    Action { id: format!("c:{n}"), kind: "json/patch".into(), payload: ops, meta: None }
}

/// `POST {chronicler}/actions` with `actions` over `http`; the seqs.
async fn post_actions(http: &reqwest::Client, chronicler: &str, actions: &[Action]) -> Vec<u64> {
    let resp = http.post(format!("{chronicler}/actions")).json(actions).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["acks"].as_array().unwrap().iter().map(|a| a["seq"].as_u64().unwrap()).collect()
}

/// `GET url` over `http`, as JSON.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {}", error_chain(&e)));
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.unwrap()
}

/// The stream's next message, within 30 s.
async fn next(stream: &mut nodb_client::ViewStream) -> ServerMessage {
    let message = tokio::time::timeout(Duration::from_secs(30), stream.next_message()).await;
    message.expect("a message within 30 s").unwrap()
}

fn error_chain(e: &reqwest::Error) -> String {
    nodb_client::error::error_chain(e)
}

/// What the port answers to a plain HTTP request: the bytes it sent back
/// before closing the connection (or before 15 s passed).
fn plain_http_answer(addr: &str) -> Vec<u8> {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut answer = Vec::new();
    // A reset after the server's alert is an answer too; what it sent
    // before is in `answer`.
    let _ = tcp.read_to_end(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_chronicler_takes_actions_over_https_and_does_not_speak_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("trusted");
    let chronicler = start_chronicler(dir.path(), &pki).await;
    let url = chronicler.url().to_string();
    let http = pki.client();

    let seqs = post_actions(&http, &url, &[patch(1, json!([{"op": "add", "path": "/a", "value": 1}]))]).await;
    assert_eq!(seqs, [1]);
    // The certificate names `localhost` too.
    let by_name = url.replacen("127.0.0.1", "localhost", 1);
    let seqs = post_actions(&http, &by_name, &[patch(2, json!([{"op": "add", "path": "/b", "value": 2}]))]).await;
    assert_eq!(seqs, [2]);
    assert_eq!(http.get(format!("{url}/metrics")).send().await.unwrap().status(), 200);

    // A client that trusts another CA is refused by its own verifier.
    let stranger = Pki::new("other").client();
    let e = stranger.get(format!("{url}/metrics")).send().await.unwrap_err();
    let e = error_chain(&e);
    assert!(e.contains("certificate") && e.contains("UnknownIssuer"), "{e}");

    // Plain HTTP on the TLS port gets no HTTP answer, and so no data.
    let addr = url.trim_start_matches("https://").to_string();
    let answer = tokio::task::spawn_blocking(move || plain_http_answer(&addr)).await.unwrap();
    // At most a TLS alert record (content type 21), never an HTTP answer.
    assert!(answer.is_empty() || answer[0] == 0x15, "not a TLS alert: {:?}", String::from_utf8_lossy(&answer));
    println!("plain HTTP on the TLS port got {} bytes back: {answer:02x?}", answer.len());
    let e = http.get(format!("http://{}/metrics", &url["https://".len()..])).send().await;
    assert!(e.is_err(), "plain HTTP answered: {e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_data_view_follows_a_tls_chronicler_and_streams_over_wss() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("trusted");
    let chronicler = start_chronicler(dir.path(), &pki).await;
    let env = vec![("SSL_CERT_FILE".to_string(), path(&pki.ca_pem()))];
    let args = dataview_args(dir.path(), "snapshots", chronicler.url(), pki.flags());
    let dataview = start(args, env, &[]).await;
    assert!(dataview.url().starts_with("https://127.0.0.1:"), "{}", dataview.url());
    let http = pki.client();

    // It follows the chronicler over https://.
    let health_url = format!("{}/health", dataview.url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = get_json(&http, &health_url).await;
        if health["connected"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never connected: {health}\n{}", dataview.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A client on wss:// gets the snapshot, then the patch of an action
    // posted to the chronicler.
    let base = ServiceUrl::parse(dataview.url()).unwrap();
    let view = ViewClient::with_http(base, "doc", http.clone()).with_ws(pki.ws());
    let options = StreamOptions { client: Some("c".into()), ..StreamOptions::default() };
    assert_eq!(view.stream_url(&options).scheme(), "wss");
    let mut stream = view.open(&options).await.unwrap();
    match next(&mut stream).await {
        ServerMessage::Snapshot { seq: 0, state, .. } => assert_eq!(state, Tree::from(json!({}))),
        other => panic!("{other:?}"),
    }
    let ops = json!([{"op": "add", "path": "/greeting", "value": "hello"}]);
    assert_eq!(post_actions(&http, chronicler.url(), &[patch(1, ops.clone())]).await, [1]);
    match next(&mut stream).await {
        ServerMessage::Patch { seq: 1, ops: got, .. } => assert_eq!(serde_json::to_value(got).unwrap(), ops),
        other => panic!("{other:?}"),
    }
    let doc = get_json(&http, &format!("{}/views/doc", dataview.url())).await;
    assert_eq!((doc["seq"].clone(), doc["state"].clone()), (json!(1), json!({"greeting": "hello"})));

    // A dispatch on the socket goes on to the chronicler over wss://.
    let ops = json!([{"op": "add", "path": "/n", "value": 2}]);
    stream.send(&ClientMessage::Dispatch { action: patch(2, ops.clone()) }).await.unwrap();
    let (mut acked, mut patched) = (false, false);
    while !(acked && patched) {
        match next(&mut stream).await {
            ServerMessage::Ack(ack) => {
                assert_eq!((ack.id.as_str(), ack.seq), ("c:2", Some(2)), "{ack:?}");
                acked = true;
            }
            ServerMessage::Patch { seq: 2, ops: got, .. } => {
                assert_eq!(serde_json::to_value(got).unwrap(), ops);
                patched = true;
            }
            other => panic!("{other:?}\n{}", dataview.stderr()),
        }
    }
    let doc = get_json(&http, &format!("{}/views/doc", dataview.url())).await;
    assert_eq!((doc["seq"].clone(), doc["state"].clone()), (json!(2), json!({"greeting": "hello", "n": 2})));
    stream.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_view_that_does_not_trust_the_ca_never_follows() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("trusted");
    let other = Pki::new("other");
    let chronicler = start_chronicler(dir.path(), &pki).await;
    let ops = json!([{"op": "add", "path": "/a", "value": 1}]);
    assert_eq!(post_actions(&pki.client(), chronicler.url(), &[patch(1, ops)]).await, [1]);

    // One with the platform's roots (SSL_CERT_FILE and SSL_CERT_DIR
    // removed from its environment), one trusting another CA; both serve
    // plain HTTP, so the test reads their health without TLS.
    let platform = start(
        dataview_args(dir.path(), "platform", chronicler.url(), Vec::new()),
        Vec::new(),
        &["SSL_CERT_FILE", "SSL_CERT_DIR"],
    )
    .await;
    let env = vec![("SSL_CERT_FILE".to_string(), path(&other.ca_pem()))];
    let stranger = start(dataview_args(dir.path(), "other", chronicler.url(), Vec::new()), env, &[]).await;

    for (name, view) in [("platform roots", &platform), ("another CA", &stranger)] {
        // It tried (and failed) at least twice: the first attempt is not
        // the only one.
        let failed = |s: &str| s.matches("cannot reach the chronicler").count() >= 2;
        let view_stderr = || view.stderr();
        tokio::task::block_in_place(|| eventually(&format!("{name}: two failed attempts"), || failed(&view_stderr())));
        let stderr = view.stderr();
        let line = stderr.lines().find(|l| l.contains("cannot reach the chronicler")).unwrap();
        assert!(line.contains("certificate"), "{name}: {line}");
        println!("{name}: {line}");

        let url = format!("{}/health", view.url());
        let health = tokio::task::spawn_blocking(move || get(&url).unwrap().json()).await.unwrap();
        assert_eq!((health["connected"].clone(), health["seq"].clone()), (json!(false), json!(0)), "{name}: {health}");
        assert!(!stderr.contains("following the chronicler"), "{name}: {stderr}");
    }
}
