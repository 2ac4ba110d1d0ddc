//! The hostile-input suite (issue 20): 68 cases, each sent to the real
//! binaries — a chronicler and a warehouse data view, on ports chosen at
//! run time — as an attacker would send it. Each case asserts the clear
//! answer (a status and a JSON error code, an `error` message on a socket,
//! or a close frame with its code), and then, through
//! [`Services::still_serves_and_lost_nothing`], that the services still
//! serve and have lost nothing: a normal action is acknowledged with the
//! next seq, every action acknowledged before is in the log at its seq,
//! and the data view reaches the new head.
//!
//! | module | cases | what |
//! |---|---|---|
//! | [`requests`] | 38 | huge, deeply nested, malformed (UTF-8, JSON) and wrongly shaped bodies; absurd ids, seqs (`?from=`, `?to=`, `?at=`, `?since=`: `u64::MAX`, negatives, words) and JSON pointers; unknown views and routes; wrong methods |
//! | [`sockets`] | 13 | the same on the chronicler's `/ws` and `GET /actions` sockets and a view stream: binary, malformed, unknown and deeply nested messages, invalid UTF-8, messages over the size limit (close `1009` on a view stream) |
//! | [`floods`] | 12 | slow senders (silent socket, headers and body at a crawl, a stalled body), 2,000 idle sockets against the connection cap and too many from one address (`503`, counted in `/metrics`), floods of dispatches per client, per address, in one batch and relayed by a data view (`429` + `Retry-After`, counted), and of as-of reads (`503` + `Retry-After`) |
//! | [`state`] | 5 | corrupted snapshot files at a restart (truncated, garbage, a digit changed that only the checksum catches), and SIGTERM to a chronicler and a data view whose stdout and stderr are closed |
//!
//! The 60 MiB message in 8 MiB fragments stays in `limits.rs`, which
//! measures the memory it costs.
//!
//! Every limit is made small with its flag, so floods are cheap; the time
//! bounds asserted are generous multiples of the limits, never
//! performance claims.

#[path = "hostile/floods.rs"]
mod floods;
#[path = "hostile/requests.rs"]
mod requests;
#[path = "hostile/sockets.rs"]
mod sockets;
#[path = "hostile/state.rs"]
mod state;

use std::time::Duration;

use nodb_tests::raw::{self, RawResponse};
pub use nodb_tests::raw::{RawSocket as Socket, dispatch_message, next_json as read_json};
use nodb_tests::{Service, committed_actions, get, post};
use serde_json::{Value, json};

/// Which service a case is sent to.
#[derive(Clone, Copy, Debug)]
pub enum At {
    /// The chronicler.
    Chronicler,
    /// The data view.
    View,
}

/// A chronicler and a warehouse data view following it, each with the
/// flags of the case, and every action acknowledged so far.
pub struct Services {
    /// Their data: `log/` and `snapshots/`.
    pub dir: tempfile::TempDir,
    /// The chronicler.
    pub chronicler: Service,
    /// The data view.
    pub view: Service,
    view_flags: Vec<String>,
    /// `(id, seq)` of every action acknowledged, in seq order.
    acked: Vec<(String, u64)>,
    /// The keeper's last action number.
    keeper: u64,
}

impl Services {
    /// Starts a chronicler with `chronicler_flags` and a data view with
    /// `view_flags`.
    pub fn start(chronicler_flags: &[&str], view_flags: &[&str]) -> Services {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut args = vec!["chronicler", "--data", log.to_str().unwrap(), "--listen", "127.0.0.1:0"];
        args.extend_from_slice(chronicler_flags);
        let chronicler = Service::start(&args).unwrap();
        let view_flags: Vec<String> = view_flags.iter().map(|f| (*f).to_string()).collect();
        let view = start_view(&dir, &chronicler, &view_flags);
        Services { dir, chronicler, view, view_flags, acked: Vec::new(), keeper: 0 }
    }

    /// `host:port` of a service.
    pub fn addr(&self, at: At) -> String {
        self.service(at).url().trim_start_matches("http://").to_string()
    }

    fn service(&self, at: At) -> &Service {
        match at {
            At::Chronicler => &self.chronicler,
            At::View => &self.view,
        }
    }

    /// The chronicler's head.
    pub fn head(&self) -> u64 {
        get(&format!("{}/health", self.chronicler.url())).unwrap().json()["head"].as_u64().unwrap()
    }

    /// Notes an action the log acknowledged outside
    /// [`Services::dispatch`] (on a socket, relayed by the data view).
    pub fn record(&mut self, id: &str, seq: u64) {
        self.acked.push((id.to_string(), seq));
        self.acked.sort_by_key(|a| a.1);
    }

    /// Records the acks of a `POST /actions` answer or of an `ack` message.
    pub fn record_acks(&mut self, answer: &Value) {
        let acks = answer["acks"].as_array().cloned().unwrap_or_else(|| vec![answer.clone()]);
        for ack in acks {
            if let (Some(id), Some(seq), false) = (ack["id"].as_str(), ack["seq"].as_u64(), ack["duplicate"] == true) {
                self.record(id, seq);
            }
        }
    }

    /// Posts `actions` (a JSON array), waiting out rate limits (`429`
    /// with `Retry-After`, up to 10 times); the answer, whose acks are
    /// recorded.
    pub fn dispatch(&mut self, actions: &Value) -> Value {
        for _ in 0..10 {
            let r =
                post(&format!("{}/actions", self.chronicler.url()), "application/json", actions.to_string().as_bytes())
                    .unwrap();
            if r.status == 429 {
                std::thread::sleep(Duration::from_millis(1100));
                continue;
            }
            assert_eq!(r.status, 200, "{actions}: {r:?}");
            let answer = r.json();
            self.record_acks(&answer);
            return answer;
        }
        panic!("{actions}: rate limited ten times in a row");
    }

    /// After a hostile `case`: the log holds exactly the actions
    /// acknowledged so far (nothing lost, nothing half-written, nothing
    /// the hostile input slipped in); a normal action is acknowledged with
    /// the next seq; and the data view reaches it.
    pub fn still_serves_and_lost_nothing(&mut self, case: &str) {
        let expected_head = self.acked.last().map_or(0, |a| a.1);
        assert_eq!(self.head(), expected_head, "{case}: the head moved by itself");
        self.keeper += 1;
        let id = format!("keeper:{}", self.keeper);
        let action = json!({"id": id, "type": "stock/corrected",
            "payload": {"product": "apple", "location": "shelf", "quantity": self.keeper}});
        let answer = self.dispatch(&json!([action]));
        assert_eq!(answer["acks"][0]["seq"], expected_head + 1, "{case}: the next action takes the next seq: {answer}");
        let committed = committed_actions(self.chronicler.url());
        let found: Vec<(String, u64)> = committed
            .iter()
            .map(|a| (a["id"].as_str().unwrap_or_default().to_string(), a["seq"].as_u64().unwrap_or_default()))
            .collect();
        assert_eq!(found, self.acked, "{case}: the log holds every acknowledged action, at its seq, and nothing else");
        self.wait_for_view(expected_head + 1, case);
    }

    /// Waits (up to 30 s) until the data view's `stock` view is at `seq`.
    pub fn wait_for_view(&self, seq: u64, case: &str) {
        let url = format!("{}/views/stock", self.view.url());
        nodb_tests::eventually(&format!("{case}: the data view reaches seq {seq}"), || {
            get(&url).is_ok_and(|r| r.status == 200 && r.json()["seq"] == seq)
        });
    }

    /// Sends `method target` with `headers` and `body` to a service, and
    /// checks the answer is `status` with error code `code` (and, when
    /// `code` is empty, a body that is not an error); then
    /// [`Services::still_serves_and_lost_nothing`]. The answer.
    #[allow(clippy::too_many_arguments)]
    pub fn refused(
        &mut self,
        case: &str,
        at: At,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        status: u16,
        code: &str,
    ) -> RawResponse {
        let r = raw::request(&self.addr(at), method, target, headers, body).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(r.status, status, "{case}: {r:?}");
        if status >= 400 {
            assert_eq!(r.error_code(), code, "{case}: {r:?}");
            assert!(!r.json()["error"]["message"].as_str().unwrap_or("").is_empty(), "{case}: a message: {r:?}");
            assert_eq!(r.header("content-type"), Some("application/json"), "{case}: {r:?}");
        }
        self.still_serves_and_lost_nothing(case);
        r
    }

    /// A WebSocket to `path` on a service.
    pub fn socket(&self, at: At, path: &str) -> Socket {
        let url = format!("{}{path}", self.service(at).ws_url());
        raw::websocket(&url, &[]).unwrap_or_else(|r| panic!("connect {url}: {r:?}"))
    }

    /// Stops the data view (SIGTERM: it writes a snapshot) and waits.
    pub fn stop_view(&mut self) {
        assert_eq!(self.view.terminate(30_000), Some(0), "the data view stops cleanly");
    }

    /// Starts the data view again, on the same snapshots.
    pub fn restart_view(&mut self) {
        self.view = start_view(&self.dir, &self.chronicler, &self.view_flags);
    }
}

fn start_view(dir: &tempfile::TempDir, chronicler: &Service, flags: &[String]) -> Service {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    nodb_tests::start_warehouse_view(chronicler, &dir.path().join("snapshots"), &flags)
}

/// The next message on `ws` that is not a patch (a view stream sends
/// patches as the log grows).
pub fn read_answer(ws: &mut Socket, case: &str) -> Value {
    loop {
        let m = read_json(ws, case);
        if m["type"] != "patch" && m["type"] != "snapshot" {
            return m;
        }
    }
}

/// Reads `ws` until it closes: the close frame's code and reason, or
/// `None` if the connection was dropped without one.
///
/// # Panics
/// If it is still open after 15 s.
pub fn read_until_closed(ws: &mut Socket, case: &str) -> Option<(u16, String)> {
    raw::close_frame(ws, Duration::from_secs(15), case).ok().flatten()
}

/// The value of the metric line `series` (name with labels) in a
/// service's `/metrics`.
pub fn metric(service: &Service, series: &str) -> Option<u64> {
    let text = get(&format!("{}/metrics", service.url())).unwrap().body;
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).map(|v| v as u64)
}

/// `n` nested arrays: `[[[…]]]`.
pub fn nested(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}
