//! The `latchkey` binary as a user runs it: exit codes, one-line errors, and
//! the policy commands end to end. These live beside the binary because only
//! its own package's tests can run it (`CARGO_BIN_EXE_latchkey`); library-level
//! integration tests are in the workspace's `tests/` crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod audit;
mod config;
mod demo;
mod keys;
mod loadtest;
mod policy;
mod receipt;
mod replay;
mod serve;
mod sim;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The result of one run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `latchkey` with these arguments in `dir`.
pub fn latchkey_in(dir: &Path, args: &[&str]) -> Run {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `latchkey` in the repository root.
pub fn latchkey(args: &[&str]) -> Run {
    latchkey_in(&root(), args)
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Asserts a bad-input failure: exit code 2 and exactly one line on stderr,
/// with no panic or backtrace.
pub fn assert_usage_error(run: &Run, mentions: &str) {
    assert_eq!(run.code, 2, "stdout: {} stderr: {}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {:?}", run.stderr);
    assert!(lines[0].starts_with("latchkey: "), "{}", lines[0]);
    assert!(
        lines[0].contains(mentions),
        "{:?} does not mention {mentions:?}",
        lines[0]
    );
    assert!(!run.stderr.contains("panicked") && !run.stderr.contains("backtrace"));
}

/// The default policy, built once with `latchkey policy build`.
pub fn default_module() -> &'static Path {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| {
        let run = latchkey(&[
            "policy",
            "build",
            "policies/default",
            "--target-dir",
            "target/test-modules",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let (hash, path) = run.stdout.trim().split_once("  ").unwrap();
        assert_eq!(hash.len(), 64);
        PathBuf::from(path)
    })
}
