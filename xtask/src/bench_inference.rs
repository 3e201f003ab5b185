//! `cargo xtask bench-inference`: inference time per row of kiln-runtime (int8) against tract
//! and onnxruntime on the same MNIST model, as the float ONNX file and as the QDQ file, at batch
//! 1 and in batches of 64, in one run, and their ratios. kiln-runtime and tract are measured by
//! the criterion bench `trainer/benches/inference.rs`; onnxruntime (one thread, its default
//! optimizations) by `scripts/bench_ort.py` in the pinned venv of `scripts/requirements.txt`.
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

/// The criterion groups: batch 1 (per call = per row) and batches of 64 rows (per call).
const GROUPS: [(&str, usize); 2] = [("inference", 1), ("inference_batch64", 64)];

pub fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let mut mnist = root.join("../shared/data/mnist");
    let mut python = std::env::var_os("KILN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "--mnist" => mnist = PathBuf::from(iter.next().context("--mnist needs a folder")?),
            "--python" => python = PathBuf::from(iter.next().context("--python needs a path")?),
            other => {
                bail!(
                    "cargo xtask bench-inference: unknown flag {other}; expected --mnist DIR or \
                     --python PATH"
                )
            }
        }
    }
    ensure!(
        python.exists(),
        "{}: no Python for onnxruntime (create a venv with xtask/scripts/requirements.txt, \
         or pass --python PATH)",
        python.display()
    );
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

    // Per row, [batch 1, batch 64], for every engine.
    let mut rows: Vec<(String, [f64; 2])> = Vec::new();
    for (id, label) in ENGINES {
        let mut per_row = [0.0; 2];
        for (slot, (group, batch)) in per_row.iter_mut().zip(GROUPS) {
            *slot = mean_ns(&target_dir, group, id)? / batch as f64;
        }
        rows.push((label.to_string(), per_row));
    }
    for (file, label) in [
        ("model.onnx", "onnxruntime, float ONNX"),
        ("model.qdq.onnx", "onnxruntime, QDQ ONNX"),
    ] {
        let mut per_row = [0.0; 2];
        for (slot, (_, batch)) in per_row.iter_mut().zip(GROUPS) {
            *slot = ort_ns_per_row(
                &python,
                &out.join("model.input.npy"),
                batch,
                &out.join(file),
            )?;
        }
        rows.push((label.to_string(), per_row));
    }
    println!(
        "\none thread, time per row, the model in {} (784-128-10, MNIST; kiln-runtime runs a batch \
         row by row)",
        out.display()
    );
    println!(
        "{:<24} {:>12} {:>14} {:>13} {:>14}",
        "engine", "batch 1", "/ kiln-runtime", "batch 64", "/ kiln-runtime"
    );
    let kiln = rows[0].1;
    for (label, [one, many]) in &rows {
        println!(
            "{label:<24} {:>9.2} µs {:>13.2}x {:>10.2} µs {:>13.2}x",
            one / 1000.0,
            one / kiln[0],
            many / 1000.0,
            many / kiln[1]
        );
    }
    Ok(())
}

/// onnxruntime's time per row on `model` in batches of `batch`, by `scripts/bench_ort.py`.
fn ort_ns_per_row(python: &Path, input: &Path, batch: usize, model: &Path) -> Result<f64> {
    let script = workspace_root().join("xtask/scripts/bench_ort.py");
    let output = Command::new(python)
        .arg(&script)
        .arg(input)
        .arg(batch.to_string())
        .arg(model)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    ensure!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{}: not one JSON line", script.display()))?;
    line["ns_per_row"]
        .as_f64()
        .with_context(|| format!("{}: no ns_per_row", script.display()))
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
fn mean_ns(target_dir: &Path, group: &str, id: &str) -> Result<f64> {
    let path = target_dir.join(format!("criterion/{group}/{id}/new/estimates.json"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let estimates: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    estimates["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| estimates["mean"]["point_estimate"].as_f64())
        .with_context(|| format!("{}: no slope or mean point_estimate", path.display()))
}
