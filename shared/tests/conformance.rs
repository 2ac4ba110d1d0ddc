//! The public RFC 6902 conformance suite (json-patch-tests), run against
//! [`nodb_shared::patch::apply`]. The two JSON files are copied from
//! `../shared/conformance/json-patch-tests/` into `tests/data/`.

use nodb_shared::Tree;
use nodb_shared::patch;
use serde_json::Value;

fn run_suite(name: &str, text: &str) -> (usize, Vec<String>) {
    let records: Vec<Value> = serde_json::from_str(text).expect("suite is valid JSON");
    let mut ran = 0;
    let mut failures = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        if rec.get("disabled").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let (Some(doc), Some(ops)) = (rec.get("doc"), rec.get("patch")) else {
            continue; // a comment-only record
        };
        ran += 1;
        let label = format!("{name} #{i}: {}", rec.get("comment").and_then(Value::as_str).unwrap_or("(no comment)"));
        let doc = Tree::from(doc);
        // A patch that does not even parse (unknown op, missing field, bad
        // pointer) counts as a failing patch.
        let result = serde_json::from_value::<json_patch::Patch>(ops.clone())
            .map_err(|e| e.to_string())
            .and_then(|p| patch::apply(&doc, &p).map_err(|e| e.to_string()));
        match (rec.get("expected"), rec.get("error"), result) {
            (Some(expected), _, Ok(got)) => {
                if got != Tree::from(expected) {
                    failures.push(format!("{label}: got {got}, expected {expected}"));
                }
            }
            (Some(_), _, Err(e)) => failures.push(format!("{label}: unexpected error {e}")),
            (None, Some(_), Ok(got)) => failures.push(format!("{label}: expected an error, got {got}")),
            (None, Some(_), Err(_)) => {}
            // No expectation: the patch must merely apply.
            (None, None, Ok(_)) => {}
            (None, None, Err(e)) => failures.push(format!("{label}: unexpected error {e}")),
        }
    }
    (ran, failures)
}

#[test]
fn rfc6902_conformance_suite() {
    let (ran_a, mut failures) = run_suite("tests.json", include_str!("data/tests.json"));
    let (ran_b, more) = run_suite("spec_tests.json", include_str!("data/spec_tests.json"));
    failures.extend(more);
    assert!(ran_a > 80 && ran_b > 10, "suite too small: {ran_a} + {ran_b} records");
    assert!(failures.is_empty(), "{} of {} records failed:\n{}", failures.len(), ran_a + ran_b, failures.join("\n"));
}
