//! `nodb-bench`'s help answers questions: every benchmark has an example,
//! and the top level says to build the release binaries first.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nodb-bench")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?} exited with {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_benchmark_explains_itself_with_an_example() {
    let top = help(&["--help"]);
    assert!(top.contains("cargo build --release"), "nodb-bench --help says to build first:\n{top}");
    for cmd in ["ingest", "views", "envoy", "cascade", "history", "token", "idle", "pipeline", "redact"] {
        assert!(top.contains(cmd), "nodb-bench --help lists {cmd}:\n{top}");
        let text = help(&[cmd, "--help"]);
        assert!(text.contains("Example"), "nodb-bench {cmd} --help has an example:\n{text}");
        assert!(text.contains("target/release/nodb-bench"), "nodb-bench {cmd} --help runs nodb-bench:\n{text}");
    }
}
