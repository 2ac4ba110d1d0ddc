//! The state hash as `docs/protocol.md` defines it ("The state hash").
//!
//! - The test vectors are read from the doc itself, so the doc and the code
//!   cannot drift: each `sent` state, taken through the data view as a
//!   committed `@@nodb/set_state` action, must serialise to the doc's
//!   `hashed` bytes and hash to the doc's `blake3`, in `GET /views/{name}`'s
//!   answer and in a `snapshot` message alike.
//! - A client written from the doc's rule alone ([`client`] below: BLAKE3
//!   over a serialiser that follows the doc's wording, numbers and escapes
//!   included) must reproduce the doc's vectors and the server's hash of
//!   arbitrary states, floats included.

use nodb_dataview::engine::Engine;
use nodb_dataview::hub::{CatchUp, Hub, hash};
use nodb_shared::Tree;
use nodb_shared::protocol::CommittedAction;
use proptest::prelude::*;
use serde_json::Value;

/// One test vector of the doc.
#[derive(Debug)]
struct Vector {
    sent: String,
    hashed: String,
    blake3: String,
}

/// The vectors of `docs/protocol.md`: the fenced block after the comment
/// that names this file, in lines `sent …`, `hashed …`, `blake3 …`.
fn doc_vectors() -> Vec<Vector> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let marker =
        doc.find("dataview/tests/protocol_hash.rs reads the block below").expect("the vectors' marker comment");
    let after = &doc[marker..];
    let start = after.find("```text\n").expect("a ```text block after the marker") + "```text\n".len();
    let block = &after[start..];
    let block = &block[..block.find("\n```").expect("the end of the block")];
    let mut vectors = Vec::new();
    let mut lines = block.lines().filter(|l| !l.trim().is_empty());
    let field = |label: &str, line: Option<&str>| -> String {
        let line = line.unwrap_or_else(|| panic!("the block ends where a `{label}` line is due"));
        let rest = line.strip_prefix(label).unwrap_or_else(|| panic!("expected a `{label}` line, found {line:?}"));
        assert!(rest.starts_with(' '), "no space after `{label}` in {line:?}");
        rest.trim_start_matches(' ').to_string()
    };
    while let Some(first) = lines.next() {
        let sent = field("sent", Some(first));
        let hashed = field("hashed", lines.next());
        let blake3 = field("blake3", lines.next());
        vectors.push(Vector { sent, hashed, blake3 });
    }
    vectors
}

/// The state a data view holds after `sent` arrives as a `@@nodb/set_state`
/// action, parsed from the chronicler's stream line as the follower parses
/// it; the hub, for its `GET /views/{name}` answer and its snapshot.
fn through_the_data_view(sent: &str) -> std::sync::Arc<Hub> {
    let line = format!(
        r#"{{"seq":1,"ts":1795000000000,"id":"c:1","type":"@@nodb/set_state","payload":{{"view":"doc","state":{sent}}}}}"#
    );
    let action: CommittedAction = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
    let hub = Hub::new(Engine::new(nodb_dataview::json_doc::app()), 4);
    hub.apply(&action).unwrap();
    hub
}

#[test]
fn the_docs_vectors_are_what_the_server_sends() {
    let vectors = doc_vectors();
    assert!(vectors.len() >= 10, "only {} vectors in the doc", vectors.len());
    // The cases the doc promises to cover stay covered.
    let sent: String = vectors.iter().map(|v| v.sent.as_str()).collect::<Vec<_>>().join("\n");
    for needed in [
        "1e-7",
        "0.1",
        "-0.0",
        "1.0",
        "1.5e300",
        "18446744073709551615",
        "18446744073709551616",
        "9007199254740993",
        "1500000000000000.75",
        r#"\""#,
        r"\n",
        r"\u001F",
        "é",
        "😀",
        r#""b":1,"a""#,
    ] {
        assert!(sent.contains(needed), "no vector in docs/protocol.md sends {needed}");
    }
    for v in &vectors {
        // The canonical form and the hash, through the real code.
        let tree: Tree = serde_json::from_str(&v.sent).unwrap_or_else(|e| panic!("{}: {e}", v.sent));
        assert_eq!(tree.to_json_string(), v.hashed, "the canonical form of {}", v.sent);
        assert_eq!(hash(&tree), v.blake3, "the server's hash of {}", v.sent);
        // The doc's rule: BLAKE3 of exactly the `hashed` bytes.
        assert_eq!(blake3::hash(v.hashed.as_bytes()).to_hex().as_str(), v.blake3, "BLAKE3 of {}", v.hashed);
        // What the data view serves once the state arrives as an action.
        let hub = through_the_data_view(&v.sent);
        let answer = serde_json::to_string(&hub.view_state(0, None).unwrap()).unwrap();
        assert_eq!(answer, format!(r#"{{"seq":1,"hash":"{}","state":{}}}"#, v.blake3, v.hashed), "GET /views/doc");
        let CatchUp::Snapshot(snapshot) = hub.catch_up(0, None).0 else { panic!("no snapshot") };
        assert_eq!(
            std::str::from_utf8(&snapshot).unwrap(),
            format!(r#"{{"type":"snapshot","seq":1,"state":{}}}"#, v.hashed),
            "the snapshot message"
        );
        // A client written from the doc alone agrees.
        let value: Value = serde_json::from_str(&v.sent).unwrap();
        assert_eq!(client::canonical(&value), v.hashed, "the doc's rule applied to {}", v.sent);
        assert_eq!(client::hash(&value), v.blake3);
    }
}

#[test]
fn lone_surrogates_are_refused() {
    assert!(serde_json::from_str::<Tree>(r#""\ud800""#).is_err());
    assert!(serde_json::from_str::<Tree>(r#""\ude00""#).is_err());
}

/// Floats at the edges of the doc's rule: the layout switch at 1e-5 and
/// 1e16, the integer range's ends, the float extremes.
#[test]
fn the_doc_rule_holds_at_the_edges() {
    let two63 = 9_223_372_036_854_775_808.0_f64;
    let two64 = 18_446_744_073_709_551_616.0_f64;
    let mut edges = vec![
        1e-5,
        1e-6,
        0.000_099_999_999_999_999_99,
        9.999_999_999_999_999e-6,
        9_007_199_254_740_991.0,
        9_007_199_254_740_992.0,
        4_503_599_627_370_495.5,
        999_999_999_999_999.9,
        1e15 + 0.5,
        1e16,
        two63,
        -two63,
        two64,
        -two64,
        f64::from_bits(two64.to_bits() - 1),
        f64::from_bits((-two63).to_bits() + 1),
        1e21,
        1e22,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324,
        0.0,
        -0.0,
        0.1 + 0.2,
        1.0 / 3.0,
        std::f64::consts::PI,
        // Ties between two shortest candidates: the even one.
        1.5e15 + 0.25,
        1.5e15 + 0.75,
        863_027_398_618_238.0 + 0.25,
        0.000_012_5,
    ];
    for k in -30..30 {
        edges.push(10f64.powi(k));
        edges.push(-1.5 * 10f64.powi(k));
    }
    for f in edges {
        for f in [f, -f, f64::from_bits(f.to_bits().wrapping_add(1)), f64::from_bits(f.to_bits().wrapping_sub(1))] {
            if f.is_finite() {
                check_float(f);
            }
        }
    }
}

/// The server and the doc's client agree on a float, alone and in a state.
fn check_float(f: f64) {
    let value = Value::Number(serde_json::Number::from_f64(f).unwrap());
    let tree = Tree::from(&value);
    assert_eq!(client::canonical(&value), tree.to_json_string(), "{f:e} ({:#x})", f.to_bits());
    assert_eq!(client::hash(&value), hash(&tree));
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-1e6f64..1e6, -12i32..24).prop_map(|(m, e)| m * 10f64.powi(e)),
        (any::<i64>(), 0u32..20).prop_map(|(m, d)| m as f64 / 10f64.powi(d as i32)),
        any::<u64>().prop_map(|u| u as f64 * 2.0),
    ]
}

fn text() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
        prop::sample::select(vec!['"', '\\', '/', '\u{7f}', '\u{2028}', '\u{2029}', 'é', 'Ａ', '😀', 'a', 'B', ' ']),
        any::<char>(),
    ];
    prop::collection::vec(c, 0..10).prop_map(String::from_iter)
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(|f| Value::Number(serde_json::Number::from_f64(f).unwrap())),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..8).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn a_client_following_the_doc_formats_floats_as_the_server(f in float()) {
        check_float(f);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_client_following_the_doc_hashes_as_the_server(value in json()) {
        let tree = Tree::from(&value);
        prop_assert_eq!(client::canonical(&value), tree.to_json_string());
        prop_assert_eq!(client::hash(&value), hash(&tree));
        // Sent as JSON text (as a client would send it), the same.
        let sent: Tree = serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap();
        prop_assert_eq!(hash(&sent), client::hash(&value));
    }
}

/// A client written from `docs/protocol.md`'s "The state hash" alone, over
/// the `serde_json::Value` a client would parse; it shares no code with
/// the server's serialiser.
mod client {
    use serde_json::Value;

    /// The hex BLAKE3 of the canonical serialisation.
    pub fn hash(v: &Value) -> String {
        blake3::hash(canonical(v).as_bytes()).to_hex().to_string()
    }

    /// The canonical serialisation.
    pub fn canonical(v: &Value) -> String {
        let mut out = String::new();
        write(v, &mut out);
        out
    }

    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&number(f)),
                _ => unreachable!("a JSON number is an integer or a float"),
            },
            Value::String(s) => string(s, out),
            Value::Array(a) => {
                out.push('[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Object(o) => {
                // Sorted by the bytes of the keys' UTF-8.
                let mut members: Vec<(&String, &Value)> = o.iter().collect();
                members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push('{');
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(k, out);
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
        }
    }

    fn string(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\u{c}' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u00{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }

    /// A float as the doc lays it out.
    pub fn number(f: f64) -> String {
        const TWO63: f64 = 9_223_372_036_854_775_808.0;
        const TWO64: f64 = 18_446_744_073_709_551_616.0;
        // An integral value in [-2^63, 2^64) is an integer.
        if f.fract() == 0.0 && (-TWO63..TWO64).contains(&f) {
            return if f < 0.0 { (f as i64).to_string() } else { (f as u64).to_string() };
        }
        let (digits, exp) = shortest(f.abs());
        let sign = if f < 0.0 { "-" } else { "" };
        if (-5..=15).contains(&exp) {
            if exp >= 0 {
                let point = exp as usize + 1;
                assert!(digits.len() > point, "an integral float in the positional range: {f}");
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            } else {
                format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
            }
        } else {
            let (first, rest) = digits.split_at(1);
            let point = if rest.is_empty() { "" } else { "." };
            let exp_sign = if exp < 0 { "-" } else { "+" };
            format!("{sign}{first}{point}{rest}e{exp_sign}{}", exp.abs())
        }
    }

    /// The shortest digits that read back as `x` (positive and finite), of
    /// several the nearest to its exact value, of two equally near the one
    /// whose last digit is even; and the exponent of the first digit.
    fn shortest(x: f64) -> (String, i32) {
        // The exact decimal value: a double has at most 767 significant digits.
        let exact = format!("{x:.800e}");
        let (mantissa, exp) = exact.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        let all: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').map(|b| b - b'0').collect();
        for p in 1..=17 {
            let (digits, first_exp) = round_half_even(&all, exp, p);
            let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
            if format!("{text}e{}", first_exp - (p as i32 - 1)).parse::<f64>() == Ok(x) {
                return (text.trim_end_matches('0').to_string(), first_exp);
            }
        }
        unreachable!("17 significant digits always read back")
    }

    /// `all` (digits d1 d2 … of d1.d2… × 10^exp) rounded to `p` digits,
    /// ties to even, and the exponent of the first digit after rounding.
    fn round_half_even(all: &[u8], exp: i32, p: usize) -> (Vec<u8>, i32) {
        let mut digits = all[..p].to_vec();
        let rest = &all[p..];
        let up = match rest.first() {
            Some(&r) if r > 5 => true,
            Some(&5) => rest[1..].iter().any(|&d| d != 0) || digits[p - 1] % 2 == 1,
            _ => false,
        };
        if !up {
            return (digits, exp);
        }
        for d in digits.iter_mut().rev() {
            if *d == 9 {
                *d = 0;
            } else {
                *d += 1;
                return (digits, exp);
            }
        }
        // 99…9 rounded up: 100…0, one place higher.
        digits.insert(0, 1);
        digits.pop();
        (digits, exp + 1)
    }
}
