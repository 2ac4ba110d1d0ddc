//! `nodb diff` and `nodb patch`, run as a user would: real binary, real
//! files, every error case with its message and exit code.

use nodb_tests::{Output, run};
use serde_json::{Value, json};

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn assert_one_line_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, Some(2), "exit code 2 expected: {out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line on stderr: {out:?}");
    for n in needles {
        assert!(out.stderr.contains(n), "stderr names {n:?}: {out:?}");
    }
}

#[test]
fn diff_then_patch_round_trips() {
    let old = json!({"stock": {"apple": {"shelf": 3, "back": 10}}, "log": [1, 2, 3]});
    let new = json!({"stock": {"apple": {"shelf": 2, "back": 10}, "pear": {"shelf": 1}}, "log": [1, 2, 3, 4]});
    let dir = dir_with(&[("old.json", &old.to_string()), ("new.json", &new.to_string())]);
    let out = run(dir.path(), &["diff", "old.json", "new.json"], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    let patch: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/log/-", "value": 4},
            {"op": "replace", "path": "/stock/apple/shelf", "value": 2},
            {"op": "add", "path": "/stock/pear", "value": {"shelf": 1}}
        ])
    );
    // The patch through standard input turns old into new.
    let out = run(dir.path(), &["patch", "old.json", "-"], &out.stdout);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap(), new);
}

#[test]
fn diff_reads_standard_input_and_pretty_prints() {
    let dir = dir_with(&[("new.json", "[1, 2]")]);
    let out = run(dir.path(), &["diff", "--pretty", "-", "new.json"], "[1]");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.lines().count() > 1, "pretty output spans lines: {out:?}");
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap(), json!([{"op": "add", "path": "/-", "value": 2}]));
}

#[test]
fn invalid_json_names_file_line_and_column() {
    let dir = dir_with(&[("old.json", "{}"), ("bad.json", "{\"a\": 1,\n \"b\": [1,,]}")]);
    let out = run(dir.path(), &["diff", "old.json", "bad.json"], "");
    assert_one_line_error(&out, &["bad.json:2:10", "invalid JSON"]);
    let out = run(dir.path(), &["diff", "-", "old.json"], "[1, 2");
    assert_one_line_error(&out, &["<stdin>:1:5", "end of input"]);
}

#[test]
fn missing_file_is_named() {
    let dir = dir_with(&[("old.json", "{}")]);
    let out = run(dir.path(), &["diff", "old.json", "nope.json"], "");
    assert_one_line_error(&out, &["nope.json"]);
}

#[test]
fn failing_patch_names_op_index_path_and_reason() {
    let dir = dir_with(&[
        ("doc.json", r#"{"a": {"b": [1, 2]}}"#),
        ("patch.json", r#"[{"op": "test", "path": "/a/b/0", "value": 1}, {"op": "remove", "path": "/a/b/5"}]"#),
        ("test.json", r#"[{"op": "test", "path": "/a/b/0", "value": 9}]"#),
    ]);
    let out = run(dir.path(), &["patch", "doc.json", "patch.json"], "");
    assert_one_line_error(&out, &["operation 1", "remove", "/a/b/5", "out of range"]);
    let out = run(dir.path(), &["patch", "doc.json", "test.json"], "");
    assert_one_line_error(&out, &["operation 0", "test", "/a/b/0", "test failed"]);
}

#[test]
fn malformed_patch_is_refused() {
    let dir = dir_with(&[("doc.json", "{}"), ("patch.json", r#"[{"op": "spam", "path": "/a"}]"#)]);
    let out = run(dir.path(), &["patch", "doc.json", "patch.json"], "");
    assert_one_line_error(&out, &["patch.json:1:", "not a valid JSON Patch", "spam"]);
    let out = run(dir.path(), &["patch", "doc.json", "-"], r#"{"op": "add"}"#);
    assert_one_line_error(&out, &["<stdin>", "JSON Patch"]);
}

#[test]
fn usage_errors_exit_2() {
    let dir = dir_with(&[]);
    let out = run(dir.path(), &["diff", "-", "-"], "{}");
    assert_one_line_error(&out, &["standard input"]);
    let out = run(dir.path(), &["diff", "only-one.json"], "");
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = run(dir.path(), &["frobnicate"], "");
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = run(dir.path(), &["envoy", "--app", "json"], "");
    assert_one_line_error(&out, &["the app \"json\" has no envoys; the apps with envoys are: warehouse"]);
    let out = run(dir.path(), &["envoy", "--app", "warehouse"], "");
    assert_one_line_error(&out, &["needs the supplier's URL: --set supplier=http://HOST:PORT"]);
}
