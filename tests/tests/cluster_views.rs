//! Data views following any chronicler of a replicated log and sharing
//! snapshots in S3 (issue 17), with real processes: a three-node NATS
//! JetStream cluster (`nodb_tests::nats`), two chroniclers on its R3 stream,
//! moto's S3 server (`nodb_tests::s3`), and two warehouse data views given
//! both chroniclers in opposite orders (`--chronicler A,B` and `B,A`) and
//! the same `--snapshots s3://views/cluster`.
//!
//! Chronicler A is killed for good (SIGKILL) while actions keep coming
//! through B: the data view that followed A moves on to B, and both reach
//! the head with the same hash. Their snapshots share one prefix without a
//! failed write (both write the same checkpoint keys) or a differing one.
//! A third data view on the same prefix following B alone starts from a
//! shared snapshot and reaches the same hash.

use nodb_tests::nats::NatsCluster;
use nodb_tests::s3::S3Server;
use nodb_tests::{Service, dispatch, eventually, free_addr, get, nodb_bin, wait_for_seq, warehouse_sales};
use serde_json::Value;

/// Where the data views keep their snapshots.
const SNAPSHOTS: &str = "s3://views/cluster";

/// A chronicler on the cluster's stream, listening on `addr`.
fn chronicler(nats: &NatsCluster, addr: &str) -> Service {
    Service::start(&["chronicler", "--log", &nats.urls(), "--replicas", "3", "--listen", addr])
        .unwrap_or_else(|e| panic!("chronicler on {addr}: {e}\n{}", nats.logs()))
}

/// A warehouse data view following `chroniclers` (comma-separated), its
/// snapshots in S3: a checkpoint every 25 seqs, a timed one every 0.3 s;
/// each snapshot write logged.
fn dataview(chroniclers: &str, s3: &S3Server) -> Service {
    let args = [
        "dataview",
        "--app",
        "warehouse",
        "--chronicler",
        chroniclers,
        "--listen",
        "127.0.0.1:0",
        "--snapshots",
        SNAPSHOTS,
        "--snapshot-every",
        "25",
        "--snapshot-interval",
        "0.3",
    ];
    let mut env = s3.env().to_vec();
    env.push(("RUST_LOG", "info,nodb_dataview::snapshot=debug"));
    Service::start_with_env(&nodb_bin(), &args, &env).unwrap_or_else(|e| panic!("data view: {e}"))
}

/// Whether `log` has a line saying `what` with the field `seq={seq}`.
fn logged(log: &str, what: &str, seq: u64) -> bool {
    let field = format!("seq={seq}");
    log.lines().any(|l| l.contains(what) && l.split_whitespace().any(|w| w == field))
}

/// `GET /views/stock`: `{seq, hash, state}`.
fn stock(view: &Service) -> Value {
    get(&format!("{}/views/stock", view.url())).unwrap().json()
}

/// The snapshot key of seq `seq`.
fn key(seq: u64) -> String {
    format!("cluster/warehouse/{seq:020}.snapshot")
}

/// No snapshot write failed in `view`, and none found different states
/// at a seq the other data view wrote first.
fn snapshots_agree(name: &str, view: &Service) {
    let log = view.stderr();
    for bad in ["could not write a snapshot", "wrote different states", "replacing a damaged snapshot"] {
        assert!(!log.contains(bad), "{name}: {bad}:\n{log}");
    }
}

#[test]
fn data_views_move_on_to_another_chronicler_and_share_snapshots_in_s3() {
    let nats = NatsCluster::start();
    let s3 = S3Server::start();
    s3.create_bucket("views");
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let mut a = chronicler(&nats, &addr_a);
    let b = chronicler(&nats, &addr_b);
    let (url_a, url_b) = (a.url().to_string(), b.url().to_string());
    let first = dataview(&format!("{url_a},{url_b}"), &s3);
    let second = dataview(&format!("{url_b},{url_a}"), &s3);

    // Through either chronicler: one log, one seq for each.
    dispatch(&url_a, &warehouse_sales(1, 20));
    let head = dispatch(&url_b, &warehouse_sales(21, 40));
    assert_eq!(head, 40);
    for view in [&first, &second] {
        wait_for_seq(view, head);
    }
    let log = first.stderr();
    assert!(log.lines().any(|l| l.contains("following the chronicler") && l.contains(&url_a)), "{log}");

    // A dies for good; the actions keep coming through B.
    a.kill();
    let mut head = head;
    for from in (41..=100).step_by(10) {
        head = dispatch(&url_b, &warehouse_sales(from, from + 9));
    }
    assert_eq!(head, 100);
    for view in [&first, &second] {
        wait_for_seq(view, head);
    }
    let log = first.stderr();
    assert!(log.contains("moving on to the next chronicler") && log.contains(&format!("to={url_b}")), "{log}");
    let (one, two) = (stock(&first), stock(&second));
    assert_eq!(one["seq"], head);
    assert_eq!((&one["seq"], &one["hash"]), (&two["seq"], &two["hash"]), "the data views agree");

    // Both wrote the checkpoints at 25, 50, 75 and 100 to the same keys:
    // one create won, the other found the same states there.
    eventually("the checkpoints in S3", || {
        let keys = s3.keys("views");
        [25, 50, 75, 100].iter().all(|seq| keys.contains(&key(*seq)))
    });
    for seq in [25, 50, 75, 100] {
        eventually(&format!("both data views wrote the checkpoint at {seq}"), || {
            let logs = [first.stderr(), second.stderr()];
            let written = logs.iter().filter(|l| logged(l, "snapshot written", seq)).count();
            let there = logs.iter().filter(|l| logged(l, "the same snapshot is already there", seq)).count();
            (written, there) == (1, 1)
        });
    }
    snapshots_agree("first", &first);
    snapshots_agree("second", &second);

    // A third data view on the same prefix starts from a shared snapshot.
    let third = dataview(&url_b, &s3);
    let more = dispatch(&url_b, &warehouse_sales(101, 110));
    for view in [&first, &second, &third] {
        wait_for_seq(view, more);
    }
    let log = third.stderr();
    let restored: u64 = log
        .lines()
        .find(|l| l.contains("restored the views from a snapshot"))
        .and_then(|l| l.split("seq=").nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the third data view did not restore a snapshot:\n{log}"));
    assert!(restored >= 100, "restored at seq {restored}, at or after the last checkpoint:\n{log}");
    let three = [&first, &second, &third].map(stock);
    for other in &three[1..] {
        assert_eq!((&three[0]["seq"], &three[0]["hash"]), (&other["seq"], &other["hash"]), "the data views agree");
    }
    for (name, view) in [("first", &first), ("second", &second), ("third", &third)] {
        snapshots_agree(name, view);
    }
}
