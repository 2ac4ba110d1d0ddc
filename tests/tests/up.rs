//! `nodb up`: the chronicler, the data view, the client library and the
//! demo page on one address; a restart continues the same history.

use nodb_tests::{Service, dispatch, get, wait_for_seq};
use serde_json::json;

fn start_up(data: &std::path::Path, listen: &str) -> Service {
    Service::start(&["up", "--data", data.to_str().unwrap(), "--listen", listen]).unwrap()
}

#[test]
fn one_address_serves_the_page_the_library_the_views_and_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = start_up(dir.path(), "127.0.0.1:0");
    let url = up.url().to_string();
    let page = get(&format!("{url}/")).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("nodb warehouse") && page.body.contains("/demo.js"), "{}", page.body);
    for file in ["/nodb.js", "/nodb.d.ts", "/demo.js", "/demo.css"] {
        let r = get(&format!("{url}{file}")).unwrap();
        assert_eq!(r.status, 200, "{file}");
        assert!(!r.body.is_empty(), "{file}");
    }
    assert!(get(&format!("{url}/nodb.js")).unwrap().body.contains("export function connect"));
    // The chronicler's API and the views on the same address.
    let sale = json!({"id": "t:1", "type": "stock/corrected", "payload": {"product": "apple", "location": "shelf", "quantity": 4}});
    // `nodb up` runs the envoys, whose first start is itself recorded
    // (`envoy/started`); wait for that so the history is predictable.
    let started = (0..400).any(|_| {
        let found = get(&format!("{url}/clients/envoy-reorder")).is_ok_and(|r| r.status == 200);
        if !found {
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        found
    });
    assert!(started, "the reorder envoy never recorded its start");
    let first = dispatch(&url, &[sale]);
    assert_eq!(first, 2);
    wait_for_seq(&up, first);
    let stock = get(&format!("{url}/views/stock")).unwrap().json();
    assert_eq!(stock["state"]["products"]["apple"]["total"], json!(4));
    let health = get(&format!("{url}/chronicler/health")).unwrap().json();
    assert_eq!(health["head"], json!(first));
    assert_eq!(get(&format!("{url}/health")).unwrap().status, 200);
    // Ctrl-C (here SIGTERM) stops cleanly; a restart continues the history.
    assert_eq!(up.terminate(15_000), Some(0), "{}", up.stderr());
    let up = start_up(dir.path(), "127.0.0.1:0");
    wait_for_seq(&up, first);
    let again = get(&format!("{}/views/stock", up.url())).unwrap().json();
    assert_eq!(again["hash"], stock["hash"]);
    let second = dispatch(
        up.url(),
        &[
            json!({"id": "t:2", "type": "stock/sold", "payload": {"product": "apple", "location": "shelf", "quantity": 1}}),
        ],
    );
    assert_eq!(second, first + 1, "the restart recorded nothing new");
    wait_for_seq(&up, second);
    let after = get(&format!("{}/views/stock", up.url())).unwrap().json();
    assert_eq!(after["state"]["products"]["apple"]["total"], json!(3));
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = nodb_tests::run(dir.path(), &["up", "--data", "d", "--listen", &addr], "");
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains(&format!("cannot listen on {addr}")), "{}", out.stderr);
}
