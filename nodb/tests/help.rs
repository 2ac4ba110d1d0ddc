//! The binary's help answers questions. (Also: having an integration test
//! here makes `cargo test` build the real `nodb` binary that the
//! end-to-end tests in `tests/` start.)

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nodb")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?} exited with {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_command_explains_itself_with_an_example() {
    let top = help(&["--help"]);
    for cmd in ["up", "chronicler", "dataview", "envoy", "supplier", "cascade", "log", "diff", "patch"] {
        assert!(top.contains(cmd), "nodb --help lists {cmd}:\n{top}");
    }
    for cmd in [
        &["chronicler"][..],
        &["dataview"],
        &["log", "verify"],
        &["log", "tail"],
        &["diff"],
        &["patch"],
        &["up"],
        &["envoy"],
        &["envoy", "webhook"],
        &["supplier"],
        &["cascade"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let text = help(&args);
        assert!(text.contains("Example"), "nodb {cmd:?} --help has an example:\n{text}");
    }
    for cmd in [
        &["up"][..],
        &["chronicler"],
        &["dataview"],
        &["envoy"],
        &["supplier"],
        &["cascade"],
        &["log", "verify"],
        &["diff"],
        &["patch"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let text = help(&args);
        assert!(text.contains("Exit status"), "nodb {cmd:?} --help documents its exit status:\n{text}");
    }
}
