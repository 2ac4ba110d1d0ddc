//! Helpers for nodb's end-to-end tests, which start the real `nodb` binary.
//!
//! The tests themselves are under `tests/tests/`. [`nodb_bin`] finds the
//! binary that `cargo test` / `cargo nextest` built for this workspace
//! (building it if it is missing), and [`run`] runs it to completion.
//!
//! How a test talks to a service:
//! - [`client`]: the protocol, through `nodb-client` (dispatch, view
//!   streams, the dispatch socket, the action stream) — for ordinary use.
//! - [`get`], [`post`], [`send`]: plain HTTP requests whose status,
//!   headers and body a test checks; [`read_ndjson`] reads the
//!   chronicler's NDJSON stream as it comes, for the tests of that
//!   endpoint.
//! - [`raw`]: raw HTTP/1.1 requests and raw WebSockets, for what a client
//!   library would not send (malformed, hostile or oversized input) and
//!   close frames.
//! - [`nats`]: a real three-node NATS JetStream cluster on loopback.

pub mod client;
pub mod nats;
pub mod raw;
pub mod s3;

pub use client::{block_on, committed_actions, dispatch, read_actions, wait_for_seq};

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The path of the `nodb` binary of this workspace, built with the same
/// profile as the running test.
///
/// # Panics
/// If the binary is missing and `cargo build` cannot make it.
pub fn nodb_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The test runs from target/<profile>/deps/<test>-<hash>.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
        let bin = profile_dir.join(format!("nodb{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            // `cargo test` builds it already, as the `nodb` package has
            // integration tests; this covers running one test binary alone.
            let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
            let profile = if profile == "debug" { "dev" } else { profile };
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "nodb", "--bin", "nodb", "--profile", profile])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build of nodb failed");
        }
        bin
    })
    .clone()
}

/// The path of an example binary of the `nodb` package (built by `cargo
/// test`), such as `counter_app`.
pub fn example_bin(name: &str) -> PathBuf {
    let bin = nodb_bin();
    bin.parent().map(|d| d.join("examples").join(name)).unwrap_or_default()
}

/// What a finished `nodb` run printed and how it exited.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output, as text.
    pub stdout: String,
    /// Standard error, as text.
    pub stderr: String,
}

/// Runs `nodb args…` with `stdin` as its standard input, in directory `dir`.
///
/// # Panics
/// If the process cannot be started.
pub fn run(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(nodb_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nodb");
    // The child may exit before reading its input; that is not our error.
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait for nodb");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `nodb` service started by a test. Killed (SIGKILL) when
/// dropped, so no test leaves a process behind.
pub struct Service {
    child: std::process::Child,
    url: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Service {
    /// Starts `nodb args…` and waits (up to 30 s) for its ready line
    /// `nodb NAME listening on http://HOST:PORT` (or, for a service without
    /// a port, any first line starting with `nodb `).
    ///
    /// # Errors
    /// What the process printed on stderr if it exited or did not get
    /// ready.
    pub fn start(args: &[&str]) -> Result<Service, String> {
        Service::start_bin(&nodb_bin(), args)
    }

    /// Like [`Service::start`], with another binary built on the `nodb`
    /// library (an application's own, say).
    ///
    /// # Errors
    /// As for [`Service::start`].
    pub fn start_bin(bin: &std::path::Path, args: &[&str]) -> Result<Service, String> {
        Service::start_with_env(bin, args, &[])
    }

    /// Like [`Service::start_bin`], with extra environment variables.
    ///
    /// # Errors
    /// As for [`Service::start`].
    pub fn start_with_env(bin: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Result<Service, String> {
        Service::spawn(bin, args, env, true)
    }

    /// Like [`Service::start_with_env`], but the service writes its stderr
    /// to this process's stderr instead of keeping it for
    /// [`Service::stderr`]: for a long-running service whose warnings should
    /// be seen as they come (the benchmarks').
    ///
    /// # Errors
    /// As for [`Service::start`], without the stderr text.
    pub fn start_passing_stderr(bin: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Result<Service, String> {
        Service::spawn(bin, args, env, false)
    }

    fn spawn(bin: &std::path::Path, args: &[&str], env: &[(&str, &str)], keep_stderr: bool) -> Result<Service, String> {
        use std::io::BufRead;
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if keep_stderr { Stdio::piped() } else { Stdio::inherit() })
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err_reader = child.stderr.take().map(|err_pipe| {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(err_pipe).lines().map_while(Result::ok) {
                    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                    s.push_str(&line);
                    s.push('\n');
                }
            })
        });
        let out_pipe = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(out_pipe).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the service never blocks on a full pipe.
            for _ in lines {}
        });
        let ready = rx.recv_timeout(std::time::Duration::from_secs(30));
        let mut service = Service { child, url: String::new(), stderr };
        match ready {
            Ok(line) => match line.split_once(" listening on ") {
                Some((_, url)) => {
                    service.url = url.trim().to_string();
                    Ok(service)
                }
                // A service without a port of its own (an envoy) announces
                // itself with another line.
                None if line.starts_with("nodb ") => Ok(service),
                None => Err(format!("unexpected first line {line:?}; stderr:\n{}", service.stderr())),
            },
            Err(_) => {
                // Give stderr a moment to arrive. A process that exited has
                // closed its stderr: wait for the reader to take it all.
                let status = service.child.wait_timeout_ms(2000);
                if let (Some(_), Some(reader)) = (status, err_reader) {
                    let _ = reader.join();
                }
                Err(format!("no ready line (exit status {status:?}); stderr:\n{}", service.stderr()))
            }
        }
    }

    /// The base URL, `http://HOST:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The base URL with `ws://`.
    pub fn ws_url(&self) -> String {
        self.url.replacen("http://", "ws://", 1)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the service wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `ms` for the exit; the exit code.
    pub fn terminate(&mut self, ms: u64) -> Option<i32> {
        self.signal(rustix::process::Signal::TERM);
        self.child.wait_timeout_ms(ms).flatten()
    }

    fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

trait WaitTimeout {
    /// `Some(exit code)` if the child exited within `ms`, else `None`.
    fn wait_timeout_ms(&mut self, ms: u64) -> Option<Option<i32>>;
}

impl WaitTimeout for std::process::Child {
    fn wait_timeout_ms(&mut self, ms: u64) -> Option<Option<i32>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            if let Ok(Some(status)) = self.try_wait() {
                return Some(status.code());
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// An HTTP response: status, headers and body text (from [`send`], or
/// from a raw exchange, [`raw::request`]).
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// If it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error.code` of an error body (empty when there is none, or
    /// the body is not JSON).
    pub fn error_code(&self) -> String {
        let body: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        body["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}

/// `POST url` with `body` and the given content type.
///
/// # Errors
/// Transport errors (connection refused, reset).
pub fn post(url: &str, content_type: &str, body: &[u8]) -> Result<Response, String> {
    send("POST", url, &[("Content-Type", content_type)], body)
}

/// `method url` (`GET`, `DELETE`, `PUT` or `POST`) with these headers and
/// body (`GET` and `DELETE` send none); a body of up to 64 MiB is read.
///
/// # Errors
/// Transport errors.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
    fn with<B>(mut req: ureq::RequestBuilder<B>, headers: &[(&str, &str)]) -> ureq::RequestBuilder<B> {
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    }
    let agent = agent();
    let resp = match method {
        "GET" => with(agent.get(url), headers).call(),
        "DELETE" => with(agent.delete(url), headers).call(),
        "PUT" => with(agent.put(url), headers).send(body),
        _ => with(agent.post(url), headers).send(body),
    }
    .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.into_body().with_config().limit(64 * 1024 * 1024).read_to_string().map_err(|e| e.to_string())?;
    Ok(Response { status, headers, body })
}

/// `GET url`.
///
/// # Errors
/// Transport errors.
pub fn get(url: &str) -> Result<Response, String> {
    send("GET", url, &[], b"")
}

/// Reads newline-delimited JSON from `GET url` until `stop` says enough
/// (or 30 s pass), returning the lines read: for the tests of the
/// chronicler's NDJSON endpoint itself (others read the action stream with
/// [`read_actions`], through `nodb-client`).
///
/// # Errors
/// Transport errors.
pub fn read_ndjson(
    url: &str,
    mut stop: impl FnMut(&serde_json::Value) -> bool,
) -> Result<Vec<serde_json::Value>, String> {
    use std::io::BufRead;
    let resp = agent().get(url).call().map_err(|e| e.to_string())?;
    if resp.status().as_u16() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let reader = std::io::BufReader::new(resp.into_body().into_reader());
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        let done = stop(&v);
        out.push(v);
        if done {
            break;
        }
    }
    Ok(out)
}

/// A free `127.0.0.1:PORT` to listen on, for a service that must come back
/// on the same address after a restart.
///
/// # Panics
/// If no port can be bound.
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("addr").port();
    format!("127.0.0.1:{port}")
}

/// Waits (up to 30 s) until `f` holds, polling.
///
/// # Panics
/// If it never does, naming `what`.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// The path of example `name` of the workspace package `package`, built
/// with the test's profile (and built now if it is missing, as when one
/// test binary runs alone).
///
/// # Panics
/// If `cargo build` cannot make it.
pub fn package_example_bin(package: &str, name: &str) -> PathBuf {
    let bin = example_bin(name);
    if !bin.exists() {
        let profile_dir = bin.parent().and_then(|d| d.parent()).map(PathBuf::from).unwrap_or_default();
        let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let profile = if profile == "debug" { "dev" } else { profile };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--example", name, "--profile", profile])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of the example {name} failed");
    }
    bin
}

/// What a webhook receiver saw: `(Idempotency-Key, body)` of every POST,
/// in the order they arrived.
pub type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// A webhook receiver listening on `addr` (`127.0.0.1:0` for any free
/// port), answering 200 to every POST and recording it; its URL and what
/// it saw. It runs until the test process ends.
///
/// # Panics
/// If `addr` cannot be bound.
pub fn webhook_receiver(addr: &str) -> (String, Deliveries) {
    use std::io::{BufRead, Read};
    let listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let url = format!("http://{}", listener.local_addr().expect("the receiver's address"));
    let got = Deliveries::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(read_half) = stream.try_clone() else { continue };
            let mut reader = std::io::BufReader::new(read_half);
            let (mut key, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("idempotency-key:") {
                    key = line["idempotency-key:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok() {
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                sink.lock().unwrap_or_else(|e| e.into_inner()).push((key, body));
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// A small pseudo-random sequence (xorshift) for end-to-end tests, seeded
/// from the clock or `NODB_TEST_SEED`; the seed is printed so a failure can
/// be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// A sequence seeded from `NODB_TEST_SEED`, or the clock (printed).
    pub fn new() -> Rng {
        let seed = std::env::var("NODB_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
        });
        println!("NODB_TEST_SEED={seed}");
        Rng(seed)
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

impl Default for Rng {
    fn default() -> Rng {
        Rng::new()
    }
}

/// Starts `nodb dataview --app warehouse` following `chronicler`, with its
/// snapshots in `snapshots`, on a port chosen at run time, with `extra`
/// flags.
///
/// # Panics
/// If it does not start.
pub fn start_warehouse_view(chronicler: &Service, snapshots: &std::path::Path, extra: &[&str]) -> Service {
    let mut args = vec![
        "dataview",
        "--app",
        "warehouse",
        "--chronicler",
        chronicler.url(),
        "--listen",
        "127.0.0.1:0",
        "--snapshots",
        snapshots.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    Service::start(&args).expect("start the data view")
}

/// Warehouse actions with seqs `from..=to` of client `c` (ids `c:N`):
/// corrections of three products on even `N`, a sale of one on odd `N`.
pub fn warehouse_sales(from: u64, to: u64) -> Vec<serde_json::Value> {
    (from..=to)
        .map(|k| {
            let (id, product) = (format!("c:{k}"), format!("p{}", k % 3));
            match k % 2 {
                0 => serde_json::json!({"id": id, "type": "stock/corrected", "payload": {"product": product, "location": "shelf", "quantity": 50 + k}}),
                _ => serde_json::json!({"id": id, "type": "stock/sold", "payload": {"product": product, "location": "shelf", "quantity": 1}}),
            }
        })
        .collect()
}
