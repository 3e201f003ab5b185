//! Helpers shared by the tests that drive the `kiln` binary.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `kiln` binary with `args`.
pub fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("the kiln binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A temp path as a command-line argument.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Asserts a failure with `code` whose one error line contains every needle.
pub fn assert_fails(output: &Output, code: i32, needles: &[&str]) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {message}");
    let error_lines: Vec<&str> = message.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        error_lines.len(),
        1,
        "expected one error line, got: {message}"
    );
    for needle in needles {
        assert!(
            error_lines[0].contains(needle),
            "{needle:?} missing from: {}",
            error_lines[0]
        );
    }
}
