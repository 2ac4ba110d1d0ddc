//! Tests of the snapshot format and store.

mod fuzz {
    use super::super::*;
    use proptest::prelude::*;

    fn names() -> Vec<String> {
        vec!["stock".into(), "activity".into()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any bytes at all: the snapshot decoder answers, never panics
        /// (deep nesting included: serde_json stops at 128 levels).
        #[test]
        fn any_bytes_are_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, "warehouse", 7, &names());
        }

        /// A written snapshot with one byte changed is refused, or (a change
        /// in the header's whitespace or key order that means the same)
        /// decodes to the same states and redactions; never to others.
        #[test]
        fn a_damaged_snapshot_is_refused(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            n in 0u64..1000,
            redacted in any::<bool>(),
        ) {
            let states = vec![Tree::from(serde_json::json!({"products": {"apple": {"total": n}}})), Tree::from(serde_json::json!([n]))];
            let redactions = if redacted {
                Redactions::from_ledger(vec![Redaction { seq: 6, seqs: vec![2, 4], undo: false, reason: "typo".into() }])
            } else {
                Redactions::default()
            };
            let mut bytes = encode("warehouse", 7, &names(), &states, None, &redactions);
            let i = at.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            if let Ok(decoded) = decode(&bytes, "warehouse", 7, &names()) {
                prop_assert_eq!(decoded, (states.into_iter().map(Some).collect::<Vec<_>>(), redactions));
            }
        }

        /// Nesting far deeper than serde's limit is refused, not a crash.
        #[test]
        fn deep_nesting_is_refused(depth in 100usize..5000) {
            let body = format!("{{\"stock\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
            let header = serde_json::json!({
                "format": FORMAT, "app": "warehouse", "seq": 7, "views": names(),
                "blake3": blake3::hash(body.as_bytes()).to_hex().to_string(),
            });
            let bytes = format!("{header}\n{body}").into_bytes();
            let decoded = decode(&bytes, "warehouse", 7, &names());
            prop_assert_eq!(decoded.is_ok(), depth < 127, "depth {}", depth);
        }
    }
}

mod cases {
    use super::super::*;
    use serde_json::json;

    /// A state with a big object is written with its cuts in the header
    /// and read back in pieces to the same state; the cuts' offsets
    /// damaged, digit by digit, it reads the same (whole) or, where the
    /// header is no longer JSON, is refused: never to another state.
    #[test]
    fn a_big_object_is_written_with_its_cuts_and_read_back_whatever_they_say() {
        let products =
            Tree::from_entries((0..body::CUT_EVERY * 2 + 5).map(|i| (format!("p{i:06}"), Tree::from(i as u64))));
        let states =
            vec![Tree::from_entries([("products", products), ("total", Tree::from(1))]), Tree::from(json!([]))];
        let names: Vec<String> = vec!["stock".into(), "activity".into()];
        let bytes = encode("warehouse", 7, &names, &states, None, &Redactions::default());
        let head = header(&bytes).unwrap();
        assert_eq!(head.cuts.len(), 1);
        assert_eq!(head.cuts[0].path, ["stock", "products"]);
        assert_eq!(head.cuts[0].at.len(), 2);
        let read = |bytes: &[u8]| decode(bytes, "warehouse", 7, &names).map(|(s, _)| s);
        let want: Vec<Option<Tree>> = states.into_iter().map(Some).collect();
        assert_eq!(read(&bytes).unwrap(), want);
        let line = bytes.iter().position(|b| *b == b'\n').unwrap();
        let cuts = bytes.windows(7).position(|w| w == b"\"cuts\":").unwrap();
        let mut same = 0;
        for i in (cuts..line).filter(|&i| bytes[i].is_ascii_digit()) {
            for digit in [b'0', b'5', b'9'] {
                let mut damaged = bytes.clone();
                damaged[i] = digit;
                if let Ok(got) = read(&damaged) {
                    assert_eq!(got, want, "byte {i} as {}", digit as char);
                    same += 1;
                }
            }
        }
        assert!(same > 20, "most damaged offsets still parse as a header ({same})");
    }

    /// A ledger with one redaction before `seq`.
    fn ledger(seq: u64) -> Redactions {
        Redactions::from_ledger(vec![Redaction {
            seq: seq - 1,
            seqs: vec![1, seq - 2],
            undo: false,
            reason: "r".into(),
        }])
    }

    #[tokio::test]
    async fn write_load_prune_and_skip_damage() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::local(dir.path(), "warehouse", 2).unwrap();
        let names = vec!["stock".to_string(), "activity".to_string()];
        for seq in [10, 20, 30] {
            let states = vec![Tree::from(json!({"seq": seq})), Tree::from(json!([seq]))];
            assert!(snaps.write(seq, &names, states.clone(), &ledger(seq)).await.unwrap());
        }
        // Create-only: an existing snapshot is never overwritten.
        assert!(!snaps.write(30, &names, vec![Tree::Null, Tree::Null], &Redactions::default()).await.unwrap());
        let Loaded { seq, states, redactions, .. } = snaps.load_latest(&names).await.unwrap().unwrap();
        assert_eq!(seq, 30);
        assert_eq!(states[0], Some(Tree::from(json!({"seq": 30}))));
        assert_eq!(redactions, ledger(30), "the redactions come back with the states");
        // Damage the newest: the one before it is used.
        let path = dir.path().join("warehouse").join(format!("{:020}.snapshot", 30));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(snaps.load_latest(&names).await.unwrap().unwrap().seq, 20);
        assert_eq!(snaps.prune(|_| false).await.unwrap(), 1);
        assert_eq!(snaps.list().await.unwrap(), vec![30, 20]);
    }

    #[tokio::test]
    async fn checkpoints_are_never_pruned_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::local(dir.path(), "json", 1).unwrap().with_checkpoints(100);
        let names = vec!["doc".to_string()];
        for seq in [100, 150, 200, 250, 260, 300] {
            snaps.write(seq, &names, vec![Tree::from(json!({"seq": seq}))], &Redactions::default()).await.unwrap();
        }
        // 150 is kept as the caller asks (a redaction's, say).
        snaps.prune(|seq| seq == 150).await.unwrap();
        assert_eq!(snaps.list().await.unwrap(), vec![300, 260, 200, 150, 100]);
        snaps.prune(|_| false).await.unwrap();
        assert_eq!(snaps.list().await.unwrap(), vec![300, 260, 200, 100]);
        assert_eq!(snaps.load(&names, 200).await.unwrap(), Some(vec![Some(Tree::from(json!({"seq": 200})))]));
        assert_eq!(snaps.load(&names, 150).await.unwrap(), None);
        assert_eq!(snaps.load_at_or_before(&names, 299).await.unwrap().unwrap().seq, 260);
        assert_eq!(snaps.load_newest(&names, 299, |seq| seq < 200).await.unwrap().unwrap().seq, 100);
    }

    /// Issue 17: data views of one app sharing a store write the same
    /// snapshot at the same seq. The second write finds the first's, which
    /// is the same states (the same bytes but perhaps the chain hash), and
    /// keeps it; a damaged one there is replaced.
    #[tokio::test]
    async fn data_views_sharing_a_store_write_each_seq_once_and_replace_a_damaged_one() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let (one, two) = (Snapshots::new(store.clone(), "warehouse", 2), Snapshots::new(store.clone(), "warehouse", 2));
        let names = vec!["stock".to_string(), "activity".to_string()];
        let states = vec![Tree::from(json!({"b": 2, "a": [1, {"z": 0, "y": 1}]})), Tree::from(json!([7]))];
        let ledger = ledger(7);
        let a = encode("warehouse", 7, &names, &states, None, &ledger);
        // Keys in another order (as another data view may have built them):
        // the same bytes.
        let built_otherwise = vec![Tree::from(json!({"a": [1, {"y": 1, "z": 0}], "b": 2})), Tree::from(json!([7]))];
        assert_eq!(a, encode("warehouse", 7, &names, &built_otherwise, None, &ledger), "the same bytes");
        let (x, y) =
            tokio::join!(one.write(7, &names, states.clone(), &ledger), two.write(7, &names, states.clone(), &ledger));
        assert_eq!([x.unwrap(), y.unwrap()].iter().filter(|w| **w).count(), 1, "one write wins, the other is fine");
        assert_eq!(store.get(&one.path(7)).await.unwrap().bytes().await.unwrap().as_ref(), a.as_slice());
        // Damage it: the next write replaces it.
        store.put(&one.path(7), PutPayload::from(b"{} damaged".to_vec())).await.unwrap();
        assert!(one.load_latest(&names).await.unwrap().is_none());
        assert!(two.write(7, &names, states.clone(), &ledger).await.unwrap(), "a damaged snapshot is replaced");
        assert_eq!(one.load_latest(&names).await.unwrap().unwrap().states[0], Some(states[0].clone()));
    }
}
