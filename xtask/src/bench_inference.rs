//! `cargo xtask bench-inference`: batch-1 inference time of kiln-runtime (int8) against
//! tract on the same MNIST model, as the float ONNX file and as the QDQ file, measured by
//! the criterion bench `trainer/benches/inference.rs` in one run, and their ratios.
//!
//! A benchmark, not a test: it prints figures and asserts nothing about time.

use crate::ci::{workspace_root, CLASSIC_FLAGS};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bench's function names, as criterion stores them under `target/criterion/inference`.
const ENGINES: &[(&str, &str)] = &[
    ("kiln_runtime_int8", "kiln-runtime int8"),
    ("tract_f32", "tract, float ONNX"),
    ("tract_qdq", "tract, QDQ ONNX"),
];

pub fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let mut mnist = root.join("../shared/data/mnist");
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "--mnist" => mnist = PathBuf::from(iter.next().context("--mnist needs a folder")?),
            other => {
                bail!("cargo xtask bench-inference: unknown flag {other}; expected --mnist DIR")
            }
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));

    // The model: one classic epoch on MNIST, quantized, with the reference test inputs.
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
    let kiln = target_dir.join("release/kiln");
    let out = root.join("kiln-out/bench-inference");
    let out_str = out.to_str().context("the output folder is not UTF-8")?;
    let data = format!("mnist:{}", mnist.display());
    let mut train = vec!["train", "--data", &data];
    train.extend_from_slice(CLASSIC_FLAGS);
    train.extend_from_slice(&["--epochs", "1", "--quiet", "-o", out_str]);
    run_kiln(&kiln, &train)?;
    let model_json = out.join("model.json");
    run_kiln(
        &kiln,
        &[
            "quantize",
            model_json.to_str().context("the model path is not UTF-8")?,
            "-o",
            out_str,
            "--quiet",
        ],
    )?;

    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["bench", "--package", "kiln-trainer", "--bench", "inference"])
        .env("KILN_BENCH_MODEL_DIR", &out)
        .status()?;
    ensure!(status.success(), "the inference bench failed");

    let mut means = Vec::new();
    for (id, label) in ENGINES {
        means.push((*label, mean_ns(&target_dir, id)?));
    }
    println!(
        "\nbatch 1, the model in {} (784-128-10, MNIST)",
        out.display()
    );
    println!(
        "{:<22} {:>14} {:>24}",
        "engine", "time per row", "time / kiln-runtime"
    );
    let kiln_ns = means[0].1;
    for (label, ns) in &means {
        println!(
            "{label:<22} {:>11.2} µs {:>23.2}x",
            ns / 1000.0,
            ns / kiln_ns
        );
    }
    Ok(())
}

fn run_kiln(kiln: &Path, args: &[&str]) -> Result<()> {
    println!("$ kiln {}", args.join(" "));
    let output = Command::new(kiln)
        .args(args)
        .output()
        .context("cannot run kiln")?;
    ensure!(
        output.status.success(),
        "kiln {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The time per iteration (ns) criterion measured for `id` in the last run: the slope of
/// its linear fit, the figure it prints as `time`, or the mean where it fit none.
fn mean_ns(target_dir: &Path, id: &str) -> Result<f64> {
    let path = target_dir.join(format!("criterion/inference/{id}/new/estimates.json"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let estimates: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    estimates["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| estimates["mean"]["point_estimate"].as_f64())
        .with_context(|| format!("{}: no slope or mean point_estimate", path.display()))
}
