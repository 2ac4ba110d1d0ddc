//! The history page's endpoints with the real processes: a chronicler and
//! a data view that keeps only 16 seqs in memory (checkpoints every 50), and
//! `nodb up --auth-key` for the rights.
//!
//! - `GET /history` pages through the whole log (every action once, in
//!   order, as the chronicler committed it), filters by exact type, type
//!   prefix, client (exact, so `bob` is not `bobby`, or `bob*`) and seq
//!   range, marks the actions a reducer rejected (and only those), answers
//!   400 to bad parameters, and pages a sparse filter through the bound on
//!   one request's scan (10,000 seqs) with `next`.
//! - `GET /views/{name}/patch?seq=N` equals the ops an exact stream sends
//!   for seq N, from memory and far beyond it (replayed from a
//!   checkpoint), and takes the state at N − 1 to the state at N.
//! - Rights: `/history` needs `log` (403 `forbidden`, `right: "log"`,
//!   without it), `/patch` the view's `read` right on the whole view, and
//!   the page is public.

use std::path::Path;
use std::time::Duration;

use nodb_tests::{Response, Service, committed_actions, dispatch, eventually, get, run, send};
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;

/// `--history`: the seqs the data view keeps in memory.
const MEMORY: u64 = 16;

fn start(dir: &Path) -> (Service, Service) {
    let data = dir.to_str().unwrap();
    let chronicler = Service::start(&["chronicler", "--data", data, "--listen", "127.0.0.1:0"]).unwrap();
    let args = ["--history", "16", "--snapshot-every", "50", "--snapshot-interval", "0.2", "--keep-snapshots", "1"];
    let view = nodb_tests::start_warehouse_view(&chronicler, &dir.join("snapshots"), &args);
    (chronicler, view)
}

fn wait_for_head(view: &Service, seq: u64) {
    let url = format!("{}/health", view.url());
    eventually(&format!("the view reaches seq {seq}"), || get(&url).is_ok_and(|r| r.json()["seq"] == seq));
}

/// The actions of the test log: two clients with similar names, types
/// that share a prefix, and sales that are always refused. Returns whether
/// each (by index) is refused.
fn actions(n: u64) -> (Vec<Value>, Vec<bool>) {
    let mut numbers = std::collections::HashMap::new();
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for k in 1..=n {
        let client = match k % 5 {
            0 => "bobby",
            1 | 3 => "bob",
            _ => "ana",
        };
        let p = format!("p{}", k % 4);
        let (kind, payload, no) = match k % 6 {
            0 => ("stock/sold", json!({"product": p, "location": "shelf", "quantity": 1_000_000}), true),
            1 | 4 => ("stock/corrected", json!({"product": p, "location": "shelf", "quantity": k % 9 + 1}), false),
            2 => ("audit/note", json!({"k": k}), false),
            3 => ("audit/note-2", json!({"k": k}), false),
            _ => ("stock/moved", json!({"product": p, "from": "shelf", "to": "shelf", "quantity": 1}), true),
        };
        let number: &mut u64 = numbers.entry(client).or_default();
        *number += 1;
        out.push(json!({"id": format!("{client}:{number}"), "type": kind, "payload": payload}));
        refused.push(no);
    }
    (out, refused)
}

fn history(view: &Service, query: &str) -> Value {
    let r = get(&format!("{}/history?{query}", view.url())).unwrap();
    assert_eq!(r.status, 200, "GET /history?{query}: {r:?}");
    r.json()
}

/// Every action `/history?{query}` gives, following `next` page by page;
/// checks each page's size against `limit`.
fn all_pages(view: &Service, query: &str, limit: usize) -> Vec<Value> {
    let mut from = 1;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = history(view, &format!("from={from}&limit={limit}&{query}"));
        let actions = page["actions"].as_array().unwrap();
        assert!(actions.len() <= limit, "a page of {} for limit {limit}", actions.len());
        out.extend(actions.iter().cloned());
        match page["next"].as_u64() {
            Some(next) => {
                assert!(next > from, "`next` moves on: {next} after {from}");
                from = next;
            }
            None => return out,
        }
    }
    panic!("/history?{query} never ended");
}

fn seqs(actions: &[Value]) -> Vec<u64> {
    actions.iter().map(|a| a["seq"].as_u64().unwrap()).collect()
}

fn client_of(id: &str) -> &str {
    id.rsplit_once(':').map_or(id, |(c, _)| c)
}

/// The ops of the first patch an exact stream of `stock` sends after `since`.
fn exact_ops(view: &Service, since: u64) -> Value {
    let url = format!("{}/views/stock/stream?exact=true&since={since}", view.ws_url());
    let (mut ws, _) = tungstenite::connect(&url).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    loop {
        if let tungstenite::Message::Text(t) = ws.read().expect("a message of the exact stream") {
            let m: Value = serde_json::from_str(t.as_str()).unwrap();
            if m["type"] == "patch" {
                assert_eq!(m["seq"], since + 1, "{m}");
                let _ = ws.close(None);
                return m["ops"].clone();
            }
        }
    }
}

#[test]
fn history_pages_filters_and_marks_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path());
    let (sent, refused) = actions(240);
    let head = dispatch(chronicler.url(), &sent);
    assert_eq!(head, 240);
    wait_for_head(&view, head);
    let log = committed_actions(chronicler.url());
    assert_eq!(log.len(), 240);

    // The whole log, page by page, exactly as committed.
    let paged = all_pages(&view, "", 7);
    assert_eq!(paged.len(), log.len());
    for (entry, (committed, refused)) in paged.iter().zip(log.iter().zip(&refused)) {
        for field in ["seq", "id", "type", "ts", "payload"] {
            assert_eq!(entry[field], committed[field], "{field} of {entry}");
        }
        assert_eq!(entry["client"], client_of(committed["id"].as_str().unwrap()), "{entry}");
        // Rejected: exactly the refused ones, with the reducer's reason.
        match (entry.get("rejected"), refused) {
            (Some(reason), true) => {
                let why = if entry["type"] == "stock/sold" { "cannot sell" } else { "from and to are both" };
                assert!(reason.as_str().unwrap().contains(why), "{entry}");
            }
            (None, false) => {}
            (r, _) => panic!("seq {}: rejected {r:?}, but refused is {refused}", entry["seq"]),
        }
    }
    let first = history(&view, "");
    assert_eq!((first["head"].as_u64(), first["actions"].as_array().unwrap().len()), (Some(head), 100));
    assert_eq!(first["next"], 101, "100 by default, then `next`");

    // Filters, each against the log filtered here.
    let expect = |keep: &dyn Fn(&Value) -> bool| seqs(&log.iter().filter(|a| keep(a)).cloned().collect::<Vec<_>>());
    let kind = |a: &Value| a["type"].as_str().unwrap().to_string();
    let client = |a: &Value| client_of(a["id"].as_str().unwrap()).to_string();
    for (query, keep) in [
        ("type=audit/note", &(|a: &Value| kind(a) == "audit/note") as &dyn Fn(&Value) -> bool),
        ("type=audit/*", &|a: &Value| kind(a).starts_with("audit/")),
        ("type=stock/*", &|a: &Value| kind(a).starts_with("stock/")),
        ("type=stock/sold", &|a: &Value| kind(a) == "stock/sold"),
        ("client=bob", &|a: &Value| client(a) == "bob"),
        ("client=bob*", &|a: &Value| client(a).starts_with("bob")),
        ("client=bob&type=audit/note-2", &|a: &Value| client(a) == "bob" && kind(a) == "audit/note-2"),
        ("type=nothing/here", &|_: &Value| false),
    ] {
        let got = all_pages(&view, query, 9);
        let wanted = expect(keep);
        assert!(query.contains("nothing") || !wanted.is_empty(), "{query} should match something");
        assert_eq!(seqs(&got), wanted, "/history?{query}");
    }

    // Seq ranges.
    let range = history(&view, "from=10&to=20");
    assert_eq!(seqs(range["actions"].as_array().unwrap()), (10..=20).collect::<Vec<_>>());
    assert_eq!(range["next"], Value::Null);
    let part = history(&view, "from=10&to=20&limit=5");
    assert_eq!(seqs(part["actions"].as_array().unwrap()), (10..=14).collect::<Vec<_>>());
    assert_eq!(part["next"], 15);
    let sold = history(&view, "from=100&to=130&type=stock/sold");
    let wanted: Vec<u64> = (100..=130).filter(|s| s % 6 == 0).collect();
    assert_eq!(seqs(sold["actions"].as_array().unwrap()), wanted);
    // Beyond the view's seq: nothing, and `to` is cut to the view's seq.
    let beyond = history(&view, "from=241");
    assert_eq!((beyond["actions"].as_array().unwrap().len(), &beyond["next"]), (0, &Value::Null));
    let cut = history(&view, "from=230&to=999999");
    assert_eq!(seqs(cut["actions"].as_array().unwrap()), (230..=240).collect::<Vec<_>>());
    assert_eq!(cut["next"], Value::Null);
    // A larger limit is cut to 1000.
    assert_eq!(history(&view, "limit=5000")["actions"].as_array().unwrap().len(), 240);

    // Bad parameters.
    for query in [
        "from=0",
        "from=x",
        "from=-3",
        "to=0",
        "from=20&to=10",
        "limit=0",
        "limit=many",
        &format!("type={}", "t".repeat(300)),
        &format!("client={}", "c".repeat(300)),
    ] {
        let r = get(&format!("{}/history?{query}", view.url())).unwrap();
        assert_eq!((r.status, r.error_code()), (400, "bad_request".to_string()), "/history?{query}: {r:?}");
    }
}

/// How many past states the data view has read (`?at` and replays).
fn history_reads(view: &Service) -> u64 {
    let metrics = get(&format!("{}/metrics", view.url())).unwrap().body;
    let line = metrics.lines().find(|l| l.starts_with("nodb_dataview_history_reads_total ")).expect("the counter");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_patch_is_the_exact_streams_from_memory_and_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path());
    let (sent, _) = actions(180);
    // In several writes, so the view applies them one by one at the end.
    let mut head = 0;
    for chunk in sent.chunks(30) {
        head = dispatch(chronicler.url(), chunk);
    }
    wait_for_head(&view, head);
    let patch = |seq: u64| -> Response { get(&format!("{}/views/stock/patch?seq={seq}", view.url())).unwrap() };
    let state_at = |seq: u64| -> Value {
        let r = get(&format!("{}/views/stock?at={seq}", view.url())).unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["state"].clone()
    };
    // In memory (the last 16 seqs), just beyond, and far back, before and
    // on a checkpoint (every 50).
    for seq in [head, head - 3, head - MEMORY - 2, 120, 101, 100, 51, 7, 2, 1] {
        let reads = history_reads(&view);
        let r = patch(seq);
        assert_eq!(r.status, 200, "patch?seq={seq}: {r:?}");
        // From memory while the history holds seq - 1, else replayed.
        let replayed = history_reads(&view) > reads;
        assert_eq!(replayed, seq + MEMORY - 1 <= head, "patch?seq={seq} replayed: {replayed}");
        let body = r.json();
        assert_eq!(body["seq"], seq, "{body}");
        assert_eq!(body["ops"], exact_ops(&view, seq - 1), "the patch of seq {seq} is the exact stream's");
        // And it takes the state before to the state after.
        let ops: json_patch::Patch = serde_json::from_value(body["ops"].clone()).unwrap();
        if seq > 1 {
            let mut state = state_at(seq - 1);
            json_patch::patch(&mut state, &ops).unwrap_or_else(|e| panic!("seq {seq}'s patch does not apply: {e}"));
            assert_eq!(state, state_at(seq), "the patch of seq {seq} leads to the state at {seq}");
        }
    }
    // A rejected action's seq changed nothing.
    assert_eq!(patch(6).json()["ops"], json!([]));
    // Bad seqs, an unknown view.
    for query in ["seq=0", &format!("seq={}", head + 1), "seq=x", ""] {
        let r = get(&format!("{}/views/stock/patch?{query}", view.url())).unwrap();
        assert_eq!((r.status, r.error_code()), (400, "bad_request".to_string()), "patch?{query}: {r:?}");
    }
    let r = get(&format!("{}/views/nope/patch?seq=1", view.url())).unwrap();
    assert_eq!((r.status, r.error_code()), (404, "unknown_view".to_string()), "{r:?}");
}

#[test]
fn a_sparse_filter_pages_through_the_scan_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (chronicler, view) = start(dir.path());
    // 12,000 actions the views ignore, one rare one at seq 11,000.
    let mut head = 0;
    for batch in 0..3u64 {
        let actions: Vec<Value> = (1..=4000u64)
            .map(|i| {
                let n = batch * 4000 + i;
                let kind = if n == 11_000 { "rare/event" } else { "noise/event" };
                json!({"id": format!("noise:{n}"), "type": kind, "payload": n})
            })
            .collect();
        head = dispatch(chronicler.url(), &actions);
    }
    assert_eq!(head, 12_000);
    wait_for_head(&view, head);
    // One request reads at most 10,000 seqs: the first answers none and
    // says where to go on; the second finds it.
    for filter in ["type=rare/event", "type=rare/*", "client=rare"] {
        let page = history(&view, &format!("from=1&{filter}"));
        assert_eq!(page["actions"], json!([]), "{filter}");
        assert_eq!(page["next"], 10_001, "{filter}");
    }
    let page = history(&view, "from=10001&type=rare/event");
    assert_eq!(seqs(page["actions"].as_array().unwrap()), vec![11_000]);
    assert_eq!(page["next"], Value::Null);
    // Unfiltered, a page is `limit` actions.
    let page = history(&view, "from=1&limit=1000");
    assert_eq!(seqs(page["actions"].as_array().unwrap()), (1..=1000).collect::<Vec<_>>());
    assert_eq!(page["next"], 1001);
}

/// Mints a token with the CLI.
fn token(dir: &Path, key: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "--key", key];
    all.extend_from_slice(args);
    let out = run(dir, &all, "");
    assert_eq!(out.code, Some(0), "nodb {all:?}: {}", out.stderr);
    out.stdout.trim().to_string()
}

#[test]
fn history_needs_the_log_right_and_a_patch_the_whole_view() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("key.jwk");
    assert_eq!(run(d, &["keygen", key.to_str().unwrap()], "").code, Some(0));
    let key = key.to_str().unwrap();
    let data = d.join("data");
    let up = Service::start(&["up", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0", "--auth-key", key])
        .unwrap();
    let admin = token(d, key, &["--client", "ops", "--admin"]);
    let log = token(d, key, &["--client", "auditor", "--log", "--read", "*"]);
    let reader = token(d, key, &["--client", "reader", "--read", "*"]);
    let subtree = token(d, key, &["--client", "reader", "--read", "stock/products"]);
    let call = |path: &str, token: Option<&str>| -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| ("Authorization", a)).into_iter().collect();
        send("GET", &format!("{}{path}", up.url()), &headers, b"").unwrap()
    };
    let body = json!([{"id": "ops:1", "type": "stock/corrected", "payload": {"product": "apple", "location": "shelf", "quantity": 4}}]);
    let r = send(
        "POST",
        &format!("{}/actions", up.url()),
        &[("Authorization", &format!("Bearer {admin}")), ("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    eventually("the view has the correction", || {
        call("/history?type=stock/corrected", Some(&admin)).json()["actions"].as_array().is_some_and(|a| a.len() == 1)
    });

    let h = "/history?from=1";
    assert_eq!(call(h, None).status, 401);
    let refused = call(h, Some(&reader));
    assert_eq!((refused.status, refused.error_code()), (403, "forbidden".to_string()), "{refused:?}");
    assert_eq!(refused.json()["error"]["right"], "log", "{refused:?}");
    for allowed in [&log, &admin] {
        let r = call(h, Some(allowed));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.json()["actions"].as_array().unwrap().iter().any(|a| a["id"] == "ops:1"), "{r:?}");
    }

    let seq = call("/history?type=stock/corrected", Some(&admin)).json()["actions"][0]["seq"].as_u64().unwrap();
    let p = format!("/views/stock/patch?seq={seq}");
    assert_eq!(call(&p, None).status, 401);
    for allowed in [&reader, &log, &admin] {
        let r = call(&p, Some(allowed));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.json()["ops"].as_array().is_some_and(|ops| !ops.is_empty()), "{r:?}");
    }
    let r = call(&p, Some(&subtree));
    assert_eq!((r.status, r.error_code()), (403, "forbidden".to_string()), "{r:?}");
    assert_eq!(r.json()["error"]["right"], "read:stock", "{r:?}");

    // The page itself is public, like the client library.
    let page = call("/inspect", None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/inspect/main.js"), "{}", page.body);
    for file in
        ["/inspect/main.js", "/inspect/api.js", "/inspect/actions.js", "/inspect/tree.js", "/inspect/inspect.css"]
    {
        assert_eq!(call(file, None).status, 200, "{file}");
    }
}
