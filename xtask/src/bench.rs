//! `cargo xtask bench-train`: seconds per epoch and accuracy of the MNIST
//! configurations, measured side by side in one run with the release build.
//!
//! This is a benchmark, not a test: it prints figures and asserts nothing
//! about time, because this machine is shared and noisy.

use crate::ci::{workspace_root, CLASSIC_FLAGS};
use anyhow::{bail, ensure, Context, Result};
use std::path::PathBuf;
use std::process::Command;

struct Config {
    name: &'static str,
    /// Flags after the shared ones (`CLASSIC_FLAGS` for SGD, the same shape for Adam).
    base: &'static [&'static str],
    epochs: &'static str,
}

const CONFIGS: &[Config] = &[
    Config {
        name: "classic sgd, 5 epochs",
        base: CLASSIC_FLAGS,
        epochs: "5",
    },
    Config {
        name: "adam, 20 epochs",
        base: &["--hidden", "128", "--optimizer", "adam", "--batch", "64"],
        epochs: "20",
    },
];

pub fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let mut mnist = root.join("../shared/data/mnist");
    let mut only: Option<usize> = None;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "--mnist" => mnist = PathBuf::from(iter.next().context("--mnist needs a folder")?),
            "--only" => {
                only = Some(
                    iter.next()
                        .context("--only needs 1 or 2")?
                        .parse::<usize>()?
                        .saturating_sub(1),
                )
            }
            other => bail!(
                "cargo xtask bench-train: unknown flag {other}; expected --mnist DIR or --only 1|2"
            ),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--package",
            "kiln-trainer",
            "--bin",
            "kiln",
        ])
        .status()?;
    ensure!(status.success(), "the release build failed");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let kiln = target_dir.join("release/kiln");
    let mut rows = Vec::new();
    for (idx, config) in CONFIGS.iter().enumerate() {
        if only.is_some_and(|o| o != idx) {
            continue;
        }
        let out = root.join(format!("kiln-out/bench-{idx}"));
        let mut command = Command::new(&kiln);
        command
            .arg("train")
            .arg("--data")
            .arg(format!("mnist:{}", mnist.display()))
            .args(config.base)
            .args(["--epochs", config.epochs]);
        command.args(["--quiet", "--json", "-o"]).arg(&out);
        println!(
            "$ kiln train --data mnist:{} {} --epochs {} -o {}",
            mnist.display(),
            config.base.join(" "),
            config.epochs,
            out.display()
        );
        let output = command.output().context("cannot run kiln")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "{}: kiln failed: {}",
            config.name,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_str(&stdout).context("kiln --json printed no JSON")?;
        let seconds = report["seconds_per_epoch"]
            .as_f64()
            .context("no seconds_per_epoch")?;
        let accuracy = report["test_accuracy"]
            .as_f64()
            .context("no test_accuracy")?;
        let max_diff = report["check"]["max_abs_diff"].as_f64().unwrap_or(f64::NAN);
        rows.push((config.name, seconds, accuracy, max_diff));
    }
    println!(
        "\n{:<24} {:>14} {:>14} {:>16}",
        "configuration", "s per epoch", "test accuracy", "tract max|diff|"
    );
    for (name, seconds, accuracy, max_diff) in rows {
        println!("{name:<24} {seconds:>14.3} {accuracy:>14.4} {max_diff:>16.2e}");
    }
    Ok(())
}
