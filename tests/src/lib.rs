//! Helpers for nodb's end-to-end tests, which start the real `nodb` binary.
//!
//! The tests themselves are under `tests/tests/`. [`nodb_bin`] finds the
//! binary that `cargo test` / `cargo nextest` built for this workspace
//! (building it if it is missing), and [`run`] runs it to completion.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The path of the `nodb` binary of this workspace, built with the same
/// profile as the running test.
///
/// # Panics
/// If the binary is missing and `cargo build` cannot make it.
pub fn nodb_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The test runs from target/<profile>/deps/<test>-<hash>.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile>");
        let bin = profile_dir.join(format!("nodb{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            // `cargo test` builds it already, as the `nodb` package has
            // integration tests; this covers running one test binary alone.
            let profile = profile_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("debug");
            let profile = if profile == "debug" { "dev" } else { profile };
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "nodb", "--bin", "nodb", "--profile", profile])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build of nodb failed");
        }
        bin
    })
    .clone()
}

/// What a finished `nodb` run printed and how it exited.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output, as text.
    pub stdout: String,
    /// Standard error, as text.
    pub stderr: String,
}

/// Runs `nodb args…` with `stdin` as its standard input, in directory `dir`.
///
/// # Panics
/// If the process cannot be started.
pub fn run(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(nodb_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nodb");
    // The child may exit before reading its input; that is not our error.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait for nodb");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
