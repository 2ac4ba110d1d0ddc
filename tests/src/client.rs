//! `nodb-client`, the one protocol client, for the end-to-end tests, which
//! are synchronous: [`block_on`] runs its futures on a runtime of the
//! harness's own, and the helpers here do what many tests do — dispatch
//! and wait for the acks, wait for a view's seq, read the committed
//! actions, read a view stream's next message as JSON.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::StreamExt;
use nodb_client::{Chronicler, ServiceUrl, ViewClient, ViewStream};
use nodb_shared::protocol::Action;
use serde_json::Value;

/// How long a helper here waits before it gives up (and panics).
const PATIENCE: Duration = Duration::from_secs(30);

/// The harness's runtime: two worker threads, which also drive the
/// sockets opened on it while a test does something else.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nodb-tests-client")
            .enable_all()
            .build()
            .expect("the test client's runtime")
    })
}

/// Runs `f` to completion on the harness's runtime, from a synchronous
/// test or (on a thread of its own) from inside another runtime.
pub fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(|| runtime().block_on(f)).join().expect("the client thread"))
    } else {
        runtime().block_on(f)
    }
}

/// Runs `f` as [`block_on`] does, for at most `within`: `None` when the
/// time ran out first.
pub fn block_on_within<F>(within: Duration, f: F) -> Option<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    block_on(async move { tokio::time::timeout(within, f).await.ok() })
}

/// The service at `url` (`http://HOST:PORT`).
///
/// # Panics
/// If `url` is not a service URL.
fn service_url(url: &str) -> ServiceUrl {
    ServiceUrl::parse(url).unwrap_or_else(|e| panic!("{e}"))
}

/// A client of the chronicler at `url`.
///
/// # Panics
/// If `url` is not a service URL (`http://HOST:PORT`).
pub fn chronicler(url: &str) -> Chronicler {
    Chronicler::new(service_url(url))
}

/// A client of view `name` of the data view (or cascade) at `url`.
///
/// # Panics
/// If `url` is not a service URL (`http://HOST:PORT`).
pub fn view(url: &str, name: &str) -> ViewClient {
    ViewClient::new(service_url(url), name)
}

/// The next message of `stream` as the JSON the server sent.
///
/// # Panics
/// If none comes within 30 s, the stream ends or fails, or the message is
/// not the protocol.
pub fn next_json(stream: &mut ViewStream) -> Value {
    next_json_within(stream, PATIENCE)
}

/// [`next_json`], waiting at most `within`.
///
/// # Panics
/// As for [`next_json`].
pub fn next_json_within(stream: &mut ViewStream, within: Duration) -> Value {
    let url = stream.url().to_string();
    match block_on_within(within, stream.next_message()) {
        Some(Ok(m)) => serde_json::to_value(&m).expect("a message is JSON"),
        Some(Err(e)) => panic!("{e}"),
        None => panic!("no message from {url} within {within:?}"),
    }
}

/// Applies the `patch` message `m` to `state`, a replica at `seq`, with an
/// RFC 6902 implementation independent of nodb's (the `json-patch`
/// crate): the seqs it covers (`from..=seq`).
///
/// # Panics
/// If it does not start right after `seq`, or does not apply.
pub fn apply_patch(state: &mut Value, seq: u64, m: &Value) -> std::ops::RangeInclusive<u64> {
    let to = m["seq"].as_u64().unwrap_or_else(|| panic!("a patch without a seq: {m}"));
    let from = m["from"].as_u64().unwrap_or(to);
    assert_eq!(from, seq + 1, "the next message starts right after the last (seq {seq}): {m}");
    let ops: json_patch::Patch = serde_json::from_value(m["ops"].clone()).unwrap_or_else(|e| panic!("{e}: {m}"));
    json_patch::patch(state, &ops).unwrap_or_else(|e| panic!("the patch of seq {to} does not apply: {e}: {m}"));
    from..=to
}

/// Dispatches `actions` to the chronicler at `url` as one batch; panics
/// unless all are acknowledged. Returns the highest seq among the acks (0
/// when every action was a duplicate).
///
/// # Panics
/// If an action is not one, the chronicler refuses them, or they are not
/// acknowledged within 30 s (a `503` is retried until then).
pub fn dispatch(url: &str, actions: &[Value]) -> u64 {
    let actions: Vec<Action> = serde_json::from_value(Value::from(actions.to_vec())).expect("actions");
    let cancel = tokio_util::sync::CancellationToken::new();
    let client = chronicler(url);
    let acks = block_on(async {
        tokio::select! {
            acks = client.dispatch(&actions, &cancel) => acks,
            () = tokio::time::sleep(PATIENCE) => Err(nodb_client::Error::Cancelled),
        }
    });
    let acks = acks.unwrap_or_else(|e| panic!("dispatch to {url}: {e}"));
    acks.iter().filter_map(|a| a.seq).max().unwrap_or(0)
}

/// Waits (up to 10 s) until `view`'s `stock` view is at `seq`.
///
/// # Panics
/// If it does not get there.
pub fn wait_for_seq(dataview: &crate::Service, seq: u64) {
    let stock = view(dataview.url(), "stock");
    for _ in 0..400 {
        if block_on(stock.state()).is_ok_and(|s| s.seq == seq) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the view did not reach seq {seq}");
}

/// The lines of the chronicler's action stream at `url` from `from` (to
/// `to`, or on into the live tail), of the types starting with one of
/// `types` (all when empty), as the JSON the chronicler sends (heartbeats
/// too), until `stop` says enough or the stream ends.
///
/// # Panics
/// If the stream cannot be read, or `stop` is not satisfied within 30 s
/// (a stream with a `to` may end before).
pub fn read_actions(
    url: &str,
    from: u64,
    to: Option<u64>,
    types: &[&str],
    mut stop: impl FnMut(&Value) -> bool + Send,
) -> Vec<Value> {
    let client = chronicler(url);
    let read = block_on_within(PATIENCE, async {
        let mut stream = client.stream(from, to, types).await.unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        while let Some(line) = stream.next().await {
            let line = serde_json::to_value(line.unwrap_or_else(|e| panic!("{e}"))).expect("a line is JSON");
            let done = stop(&line);
            out.push(line);
            if done {
                break;
            }
        }
        out
    });
    read.unwrap_or_else(|| panic!("the action stream of {url} did not say enough within {PATIENCE:?}"))
}

/// Every action (an unreadable one too) the chronicler at `url` has
/// committed, up to its head when asked.
///
/// # Panics
/// If the chronicler cannot be read.
pub fn committed_actions(url: &str) -> Vec<Value> {
    let head = block_on(chronicler(url).head()).unwrap_or_else(|e| panic!("the head of {url}: {e}"));
    if head == 0 {
        return Vec::new();
    }
    read_actions(url, 1, Some(head), &[], |_| false).into_iter().filter(is_action).collect()
}

/// Whether a line of the action stream is an action (not a heartbeat).
fn is_action(line: &Value) -> bool {
    line.get("seq").is_some()
}
