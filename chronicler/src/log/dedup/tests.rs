//! The table's semantics: what every client keeps, what the recently
//! active keep, the memory budget, undo, and the memory a million clients
//! cost.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn id(s: &str) -> ActionId {
    s.parse().unwrap()
}

const C: ContentHash = [7; 16];

fn dup(seq: u64) -> Check {
    Check::Duplicate(Some(Recent { seq, content: C }))
}

#[test]
fn next_duplicate_out_of_order() {
    let mut t = DedupTable::default();
    assert_eq!(t.check(&id("a:1")), Check::Next);
    assert_eq!(t.check(&id("a:2")), Check::OutOfOrder { expected: 1 });
    t.record(&id("a:1"), 10, C);
    assert_eq!(t.check(&id("a:1")), dup(10));
    assert_eq!(t.check(&id("a:2")), Check::Next);
    assert_eq!(t.check(&id("a:3")), Check::OutOfOrder { expected: 2 });
    assert_eq!(t.check(&id("b:1")), Check::Next);
    for n in 2..=(RECENT as u64 + 5) {
        t.record(&id(&format!("a:{n}")), 100 + n, C);
    }
    assert_eq!(t.check(&id("a:1")), Check::Duplicate(None));
    assert_eq!(t.check(&id("a:5")), Check::Duplicate(None));
    assert_eq!(t.check(&id("a:6")), dup(106), "the 64th latest is kept");
    assert_eq!(t.check(&id("a:20")), dup(120));
    assert_eq!(t.last("a"), Some((RECENT as u64 + 5, 100 + RECENT as u64 + 5)));
    let saved = t.entry("a");
    t.record(&id(&format!("a:{}", RECENT + 6)), 999, C);
    t.restore("a", saved);
    assert_eq!(t.check(&id(&format!("a:{}", RECENT + 6))), Check::Next);
    assert_eq!(t.check(&id("a:20")), dup(120));
    // Undoing a client's first action forgets it.
    let saved = t.entry("c");
    t.record(&id("c:1"), 1000, C);
    t.restore("c", saved);
    assert_eq!((t.check(&id("c:1")), t.len()), (Check::Next, 1));
}

/// Regression (issue 15): every client kept 64 acks forever, so a million
/// client ids cost 300 MiB. Now a client that has gone quiet keeps only its
/// last action — still with seq and content, so its most likely re-send
/// (the last, whose ack was lost) is answered exactly — and older re-sends
/// are acknowledged without a seq and without comparing content.
#[test]
fn a_quiet_client_keeps_its_last_action_and_loses_its_ring() {
    let mut t = DedupTable::with_recent_bytes(64 * 1024);
    for n in 1..=10 {
        t.record(&id(&format!("quiet:{n}")), n, [n as u8; 16]);
    }
    assert_eq!(t.check(&id("quiet:9")), Check::Duplicate(Some(Recent { seq: 9, content: [9; 16] })));
    // Others' activity turns the generations twice.
    let mut seq = 100;
    for c in 0..200 {
        for n in 1..=20 {
            seq += 1;
            t.record(&id(&format!("busy{c}:{n}")), seq, C);
        }
    }
    assert_eq!(t.check(&id("quiet:10")), Check::Duplicate(Some(Recent { seq: 10, content: [10; 16] })));
    assert_eq!(t.check(&id("quiet:9")), Check::Duplicate(None));
    assert_eq!(t.check(&id("quiet:11")), Check::Next);
    assert_eq!(t.last("quiet"), Some((10, 10)));
    let (_, bytes) = t.recent_usage();
    assert!(bytes <= 64 * 1024 + ring_cost(&Ring::with_capacity(RECENT)), "{bytes}");
    // Recording again starts a new ring.
    t.record(&id("quiet:11"), seq + 1, C);
    assert_eq!(t.check(&id("quiet:10")), Check::Duplicate(Some(Recent { seq: 10, content: [10; 16] })));
    assert_eq!(t.check(&id("quiet:9")), Check::Duplicate(None));
}

/// A client's ring of recent acks survives while it records at least once
/// per half budget of the others' activity, however many others there are.
#[test]
fn an_active_client_keeps_its_ring() {
    // Each round, 50 others start rings of 4 (about 10 KiB): less than a
    // generation (32 KiB) between two of the active client's actions.
    let mut t = DedupTable::with_recent_bytes(64 * 1024);
    let mut seq = 0;
    for round in 1..=100u64 {
        seq += 1;
        t.record(&id(&format!("active:{round}")), seq, C);
        for c in 0..50 {
            seq += 1;
            t.record(&id(&format!("other{round}-{c}:1")), seq, C);
            seq += 1;
            t.record(&id(&format!("other{round}-{c}:2")), seq, C);
        }
    }
    for n in (100 - RECENT as u64 + 1)..=100 {
        assert!(matches!(t.check(&id(&format!("active:{n}"))), Check::Duplicate(Some(_))), "active:{n}");
    }
    assert_eq!(t.len(), 1 + 100 * 50);
}

/// What the table must answer: every action of every client, kept forever.
#[derive(Default)]
struct Model(HashMap<String, Vec<Recent>>);

impl Model {
    fn check(&self, id: &ActionId) -> (Check, Option<Recent>) {
        let acks = self.0.get(&id.client).map_or(&[][..], Vec::as_slice);
        let last = acks.len() as u64;
        if id.n == last + 1 {
            (Check::Next, None)
        } else if id.n > last + 1 {
            (Check::OutOfOrder { expected: last + 1 }, None)
        } else {
            (Check::Duplicate(None), Some(acks[id.n as usize - 1]))
        }
    }
}

proptest! {
    /// Against a model that forgets nothing, under any budget: next and
    /// out-of-order answers are the same; a duplicate carries the right seq
    /// and content or none; the last action always carries them, and so do
    /// the latest [`RECENT`] when the budget never runs out; the rings stay
    /// within the budget; and an undo puts a client back exactly.
    #[test]
    fn compaction_only_forgets_what_it_may(
        ops in proptest::collection::vec((0u8..12, proptest::bool::weighted(0.05)), 1..600),
        budget in prop_oneof![Just(usize::MAX / 4), 0usize..20_000],
    ) {
        let mut t = DedupTable::with_recent_bytes(budget);
        let mut m = Model::default();
        let mut seq = 0;
        for (client, undo) in ops {
            let client = format!("c{client}");
            let n = m.0.get(&client).map_or(0, Vec::len) as u64 + 1;
            let saved = t.entry(&client);
            let before: Vec<Check> = (1..=n).map(|k| t.check(&id(&format!("{client}:{k}")))).collect();
            seq += 1;
            let recent = Recent { seq, content: [seq as u8; 16] };
            t.record(&id(&format!("{client}:{n}")), seq, recent.content);
            if undo {
                t.restore(&client, saved);
                let after: Vec<Check> = (1..=n).map(|k| t.check(&id(&format!("{client}:{k}")))).collect();
                prop_assert_eq!(before, after);
                continue;
            }
            m.0.entry(client).or_default().push(recent);
            let (_, bytes) = t.recent_usage();
            prop_assert!(bytes <= budget.max(1) + ring_cost(&Ring::with_capacity(RECENT)), "{} > {}", bytes, budget);
        }
        for (client, acks) in &m.0 {
            let last = acks.len() as u64;
            for k in 1..=last + 2 {
                let probe = id(&format!("{client}:{k}"));
                let (want, stored) = m.check(&probe);
                match (t.check(&probe), want) {
                    (Check::Duplicate(got), Check::Duplicate(_)) => {
                        if let Some(got) = got {
                            prop_assert_eq!(Some(got), stored);
                        }
                        let must_keep = k == last || (budget == usize::MAX / 4 && k + RECENT as u64 > last);
                        prop_assert!(!must_keep || got.is_some(), "{}:{} lost", client, k);
                    }
                    (got, want) => prop_assert_eq!(got, want),
                }
            }
        }
    }
}

#[test]
fn the_content_hash_ignores_seq_ts_and_spacing_but_nothing_else() {
    let stored = br#"{"seq":12,"ts":1700000000000,"id":"c:1","type":"t","payload":{"a": [1, "x y"]},"meta":{"k":"v"}}"#;
    let resent = br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x y"]},"meta":{"k":"v"}}"#;
    assert_eq!(content_hash(stored), content_hash(resent));
    let spaced = b"{\"seq\":0,\"ts\":0,\"id\":\"c:1\",\"type\":\"t\",\"payload\":{ \"a\" :\t[1 ,\r\n\"x y\"] },\"meta\":{\"k\":\"v\"}}";
    assert_eq!(content_hash(stored), content_hash(spaced));
    for other in [
        &br#"{"seq":0,"ts":0,"id":"c:1","type":"u","payload":{"a":[1,"x y"]},"meta":{"k":"v"}}"#[..],
        br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"xy"]},"meta":{"k":"v"}}"#,
        br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x  y"]},"meta":{"k":"v"}}"#,
        br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[2,"x y"]},"meta":{"k":"v"}}"#,
        br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x y"]}}"#,
        br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x y"]},"meta":{"k":"w"}}"#,
        br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x y"]},"meta":{"k":"v"},"client":"ana"}"#,
        br#"{"seq":0,"ts":0,"id":"c:1","type":"t","payload":{"a":[1,"x\" y"]},"meta":{"k":"v"}}"#,
    ] {
        assert_ne!(content_hash(stored), content_hash(other), "{}", String::from_utf8_lossy(other));
    }
    // A string holding an escaped quote keeps its spaces.
    let a = br#"{"seq":1,"ts":1,"id":"c:1","type":"t","payload":"\" a"}"#;
    let b = br#"{"seq":1,"ts":1,"id":"c:1","type":"t","payload":"\"a"}"#;
    assert_ne!(content_hash(a), content_hash(b));
}

/// The memory a million client ids cost (issue 15), run by hand:
/// `NODB_DEDUP_PER_CLIENT=4 cargo nextest run -p nodb-chronicler
/// --run-ignored only --no-capture million_clients` (`NODB_DEDUP_PER_CLIENT`
/// actions each, default 1).
#[test]
#[ignore = "a measurement, run by hand"]
fn memory_of_a_million_clients() {
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let per_client: u64 = std::env::var("NODB_DEDUP_PER_CLIENT").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let before = rss_kib();
    let start = std::time::Instant::now();
    let mut t = DedupTable::default();
    let mut seq = 0u64;
    for n in 1..=per_client {
        for c in 0..1_000_000u64 {
            seq += 1;
            let mut content = [0u8; 16];
            content[..8].copy_from_slice(&seq.to_le_bytes());
            t.record(&ActionId { client: format!("client-{c:07}"), n }, seq, content);
        }
    }
    let after = rss_kib();
    println!(
        "1M clients x {per_client} actions: {} clients, +{} MiB RSS, {:.2} s, rings {:?}",
        t.len(),
        (after - before) / 1024,
        start.elapsed().as_secs_f64(),
        t.recent_usage()
    );
}
