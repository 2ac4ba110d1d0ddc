//! The wire contract's rules for actions: ids, sizes, depth, meta.
use super::*;
use proptest::prelude::*;
use serde_json::json;

#[test]
fn ids() {
    assert_eq!("web-1:3".parse(), Ok(ActionId { client: "web-1".into(), n: 3 }));
    assert_eq!("a:b:12".parse::<ActionId>().unwrap().client, "a:b");
    for bad in ["", "abc", ":1", "a:", "a:0", "a:01", "a:-1", "a:1.0", "a:99999999999999999999", "a\n:1"] {
        assert!(matches!(bad.parse::<ActionId>(), Err(ActionError::InvalidId { .. })), "{bad}");
    }
}

#[test]
fn validation() {
    let limits = Limits { max_payload_bytes: 10, ..Limits::default() };
    let ok: Action = serde_json::from_value(json!({"id": "c:1", "type": "t", "payload": [1]})).unwrap();
    assert_eq!(ok.validate(&limits).unwrap().n, 1);
    let empty = Action { kind: String::new(), ..ok.clone() };
    assert_eq!(empty.validate(&limits), Err(ActionError::EmptyType));
    let big = Action { payload: json!("0123456789"), ..ok.clone() };
    assert_eq!(big.validate(&limits), Err(ActionError::PayloadTooLarge { size: 12, limit: 10 }));
    assert_eq!(big.validate(&limits).unwrap_err().field(), "payload");
}

#[test]
fn type_and_meta_are_bounded_like_the_payload() {
    let limits = Limits {
        max_type_bytes: 4,
        max_meta_key_bytes: 2,
        max_meta_value_bytes: 3,
        max_meta_bytes: 20,
        ..Limits::default()
    };
    let ok: Action = serde_json::from_value(json!({"id": "c:1", "type": "abcd", "meta": {"ab": "xyz"}})).unwrap();
    assert!(ok.validate(&limits).is_ok());
    let long_type = Action { kind: "abcde".into(), ..ok.clone() };
    assert_eq!(long_type.validate(&limits), Err(ActionError::TypeTooLong { size: 5, limit: 4 }));
    assert_eq!(long_type.validate(&limits).unwrap_err().field(), "type");
    let meta = |pairs: &[(&str, &str)]| Action {
        meta: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..ok.clone()
    };
    assert_eq!(meta(&[("abc", "x")]).validate(&limits), Err(ActionError::MetaKeyTooLong { size: 3, limit: 2 }));
    assert_eq!(
        meta(&[("a", "wxyz")]).validate(&limits),
        Err(ActionError::MetaValueTooLong { key: "a".into(), size: 4, limit: 3 })
    );
    // {"a":"xyz","b":"xyz"} is 21 bytes.
    let err = meta(&[("a", "xyz"), ("b", "xyz")]).validate(&limits).unwrap_err();
    assert_eq!(err, ActionError::MetaTooLarge { size: 21, limit: 20 });
    assert_eq!((err.field(), err.code()), ("meta", ErrorCode::PayloadTooLarge));
    assert!(meta(&[("a", "xyz"), ("b", "xy")]).validate(&limits).is_ok());
}

fn nested(depth: usize) -> String {
    format!(
        "{}1{}",
        "[{\"a\":".repeat(depth / 2) + &"[".repeat(depth % 2),
        "]".repeat(depth % 2) + &"}]".repeat(depth / 2)
    )
}

#[test]
fn depth_is_counted_outside_strings() {
    assert_eq!(json_depth(b"1"), 0);
    assert_eq!(json_depth(b"[]"), 1);
    assert_eq!(json_depth(br#"{"a": [1, {"b": 2}], "c": []}"#), 3);
    assert_eq!(json_depth(br#"["[[[{{", "\"[["]"#), 1);
    for d in 0..20 {
        let text = nested(d);
        assert_eq!(json_depth(text.as_bytes()), d, "{text}");
        assert_eq!(value_depth(&serde_json::from_str(&text).unwrap()), d, "{text}");
    }
    let limits = Limits::default();
    let at_limit: Value = serde_json::from_str(&nested(MAX_PAYLOAD_DEPTH)).unwrap();
    let ok = Action { id: "c:1".into(), kind: "t".into(), payload: at_limit, meta: None };
    assert!(ok.validate(&limits).is_ok());
    let deeper = Action { payload: Value::Array(vec![ok.payload.clone()]), ..ok };
    let err = deeper.validate(&limits).unwrap_err();
    assert_eq!(err, ActionError::PayloadTooDeep { limit: MAX_PAYLOAD_DEPTH });
    assert_eq!((err.field(), err.code()), ("payload", ErrorCode::InvalidAction));
}

#[test]
fn shapes() {
    let a: Action = serde_json::from_value(json!({"id": "c:1", "type": "stock/moved"})).unwrap();
    assert_eq!(a.payload, Value::Null);
    let err = serde_json::from_value::<Action>(json!({"id": "c:1", "type": "t", "paylod": 1})).unwrap_err();
    assert!(err.to_string().contains("paylod"), "{err}");
    let c = a.commit(7, 1_700_000_000_000, Some("alice".into()));
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"seq": 7, "ts": 1_700_000_000_000u64, "id": "c:1", "type": "stock/moved", "payload": null, "client": "alice"})
    );
}

#[test]
fn invisible_formatting_characters_are_refused_in_the_client() {
    let refused = [
        '\u{202A}',
        '\u{202B}',
        '\u{202C}',
        '\u{202D}',
        '\u{202E}',
        '\u{2066}',
        '\u{2067}',
        '\u{2068}',
        '\u{2069}',
        '\u{200E}',
        '\u{200F}',
        '\u{061C}',
        '\u{200B}',
        '\u{200C}',
        '\u{200D}',
        '\u{FEFF}',
        '\u{2060}',
        '\u{00AD}',
        '\u{2028}',
        '\u{2029}',
        '\u{E0041}',
    ];
    for c in refused {
        for id in [format!("{c}web:1"), format!("we{c}b:1"), format!("web{c}:1")] {
            match id.parse::<ActionId>() {
                Err(ActionError::InvalidId { reason, .. }) => assert!(reason.contains("invisible"), "{reason}"),
                other => panic!("U+{:04X} in {id:?} should be refused, got {other:?}", c as u32),
            }
        }
    }
    // Visible non-ASCII is fine, and so are the characters next to the
    // refused ranges.
    for ok in ["café:1", "日本:2", "😀:3", "a\u{202F}b:4", "a\u{2065}b:5", "web-7f3a.tab:1"] {
        assert_eq!(ok.parse::<ActionId>().map(|id| id.to_string()).as_deref(), Ok(ok));
    }
    let message = "a\u{202E}b:1".parse::<ActionId>().unwrap_err().to_string();
    assert!(message.contains("\\u{202e}"), "the message shows the character escaped: {message}");
}

/// Strings made mostly of what ids are made of — and of the characters
/// they must not hold — so that both valid and nearly valid ids come up.
fn id_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<char>(),
        4 => proptest::char::range('a', 'z'),
        3 => proptest::char::range('0', '9'),
        2 => Just(':'),
        1 => proptest::sample::select(vec![
            '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{200D}', '\u{200E}', '\u{200F}',
            '\u{061C}', '\u{FEFF}', '\u{2028}', '\u{E0020}', '\n', '\u{7F}', '\u{85}',
        ]),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    /// Parsing never panics, and what parses prints back as the same
    /// id, with a client free of control and invisible characters.
    #[test]
    fn id_parse_never_panics_and_round_trips(s in prop_oneof![".{0,40}", id_like()]) {
        if let Ok(id) = s.parse::<ActionId>() {
            prop_assert_eq!(id.to_string(), s.clone());
            prop_assert_eq!(id.to_string().parse::<ActionId>(), Ok(id.clone()));
            prop_assert!(id.n >= 1 && !id.client.is_empty() && id.client.len() <= MAX_CLIENT_LEN);
            prop_assert!(!id.client.chars().any(|c| c.is_control() || is_invisible_format(c)), "{:?}", s);
        }
    }

    /// A client made of visible characters parses with any number, and
    /// one invisible formatting character anywhere in it refuses it.
    #[test]
    fn one_invisible_character_refuses_a_good_id(
        client in "[a-zA-Z0-9._:é日😀-]{1,30}",
        n in 1u64..,
        at in any::<proptest::sample::Index>(),
        bad in proptest::sample::select(vec![
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
            '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{FEFF}',
        ]),
    ) {
        let good = format!("{client}:{n}");
        prop_assert_eq!(good.parse::<ActionId>(), Ok(ActionId { client: client.clone(), n }));
        let mut chars: Vec<char> = client.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad);
        let tainted: String = chars.into_iter().collect();
        let refused = format!("{tainted}:{n}").parse::<ActionId>();
        prop_assert!(matches!(refused, Err(ActionError::InvalidId { .. })), "{:?}", refused);
    }
}
