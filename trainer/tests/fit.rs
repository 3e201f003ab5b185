//! `kiln fit` end to end on the bundled digits: the winner fits by `kiln inspect`'s own check,
//! no candidate over a budget is trained, the footprint estimated before training equals what
//! inspect measures on every baked blob, the search is deterministic across `--jobs`, and an
//! interrupted or out-of-time search resumes to the result of an uninterrupted one.

mod common;

use common::{assert_fails, kiln, s, stdout};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const HOOK: &str = "KILN_INTERRUPT_AFTER_BATCHES";

/// A small search: one hidden layer at most, few epochs, so a debug build runs it in seconds.
/// The budgets are 9K of flash and 2K of RAM, 6 epochs, unless `extra` gives its own.
fn fit_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["fit", "--data", "digits"];
    for (flag, default) in [
        ("--flash", "9K"),
        ("--ram", "2K"),
        ("--max-hidden-layers", "1"),
        ("--epochs", "6"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend(["--seed", "3", "--quiet", "-o", out]);
    args.extend_from_slice(extra);
    args
}

fn kiln_with_hook(args: &[&str], hook: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env(HOOK, hook.to_string())
        .output()
        .expect("the kiln binary runs")
}

fn record(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("fit.json")).unwrap()).unwrap()
}

/// The candidates with what may differ between runs (the training time) removed.
fn results(record: &Value) -> Vec<Value> {
    record["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if let Some(result) = c.get_mut("result").and_then(Value::as_object_mut) {
                result.remove("train_seconds");
            }
            c
        })
        .collect()
}

#[test]
fn the_winner_fits_and_nothing_over_budget_is_trained() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fit");
    let run = kiln(&fit_args(s(&out), &["--jobs", "2", "--json"]));
    assert_eq!(run.status.code(), Some(0), "{}", common::stderr(&run));
    let report: Value = serde_json::from_str(&stdout(&run)).unwrap();
    let candidates = report["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 10, "{report}");
    let (mut fitting, mut over) = (0, 0);
    for c in candidates {
        let label = c["label"].as_str().unwrap();
        let trained_dir = out.join("candidates").join(label);
        if c["fits"].as_bool().unwrap() {
            fitting += 1;
            assert_eq!(c["status"], "trained", "{c}");
            // The size estimated before training is what inspect measures on the baked blob.
            assert_eq!(c["result"]["blob_cost"], c["cost"], "{label}");
            assert!(c["cost"]["flash_bytes"].as_u64().unwrap() <= 9216, "{c}");
            assert!(c["cost"]["ram_bytes"].as_u64().unwrap() <= 2048, "{c}");
            assert!(trained_dir.join("model.json").exists(), "{label}");
        } else {
            over += 1;
            assert_eq!(c["status"], "does_not_fit", "{c}");
            assert!(c.get("result").is_none(), "{c}");
            assert!(!trained_dir.exists(), "{label} was trained");
            let reasons = c["over"].as_array().unwrap();
            assert!(!reasons.is_empty(), "{c}");
        }
    }
    assert!(fitting >= 4 && over >= 4, "{fitting} fit, {over} do not");
    // The budget's edge is a candidate: the widest single hidden layer that fits is within
    // one hidden unit's bytes (64 weights, a bias, a multiplier, a shift and 10 output
    // weights: over 80) of the flash budget.
    let widest = candidates
        .iter()
        .filter(|c| c["fits"].as_bool().unwrap() && c["hidden"].as_array().unwrap().len() == 1)
        .max_by_key(|c| c["hidden"][0].as_u64().unwrap())
        .unwrap();
    let flash = widest["cost"]["flash_bytes"].as_u64().unwrap();
    assert!(9216 - flash < 80, "{widest}");

    // The winner: the best int8 validation accuracy among the trained.
    let winners: Vec<&Value> = candidates.iter().filter(|c| c["winner"] == true).collect();
    assert_eq!(winners.len(), 1, "{report}");
    let winner = winners[0];
    assert_eq!(report["winner"], winner["label"]);
    let best = candidates
        .iter()
        .filter_map(|c| c["result"]["int8_val_accuracy"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!(winner["result"]["int8_val_accuracy"].as_f64(), Some(best));
    assert!(best > 0.8, "{winner}");
    assert_eq!(report["quantization"]["tract_passed"], true, "{report}");

    // kiln inspect agrees that the winner's blob fits, with the same figures.
    let blob = out.join("model.kiln");
    let inspect = kiln(&[
        "inspect",
        s(&blob),
        "--flash",
        "9K",
        "--ram",
        "2K",
        "--core",
        "cortex-m4f",
        "--json",
    ]);
    assert_eq!(
        inspect.status.code(),
        Some(0),
        "{}",
        common::stderr(&inspect)
    );
    let inspect: Value = serde_json::from_str(&stdout(&inspect)).unwrap();
    let m4f = inspect["device"]["cores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["core"] == "Cortex-M4F")
        .unwrap();
    assert_eq!(m4f["flash_total_bytes"], winner["cost"]["flash_bytes"]);
    assert_eq!(m4f["ram_total_bytes"], winner["cost"]["ram_bytes"]);
    assert_eq!(
        std::fs::metadata(&blob).unwrap().len(),
        winner["cost"]["blob_bytes"].as_u64().unwrap()
    );
    for file in [
        "model.json",
        "model.onnx",
        "model.qdq.onnx",
        "model.rs",
        "fit.svg",
    ] {
        assert!(out.join(file).exists(), "no {file}");
    }
    let png = std::fs::read(out.join("fit.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "fit.png is not a PNG");

    // The same search with one job: the same candidates, bit for bit.
    let serial = dir.path().join("serial");
    let run = kiln(&fit_args(s(&serial), &["--jobs", "1"]));
    assert_eq!(run.status.code(), Some(0), "{}", common::stderr(&run));
    assert_eq!(results(&record(&serial)), results(&record(&out)));
}

#[test]
fn a_budget_nothing_fits_exits_1_and_names_the_smallest_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fit");
    let run = kiln(&fit_args(s(&out), &["--flash", "1K"]));
    let record = record(&out);
    let smallest = record["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .min_by_key(|c| c["cost"]["flash_bytes"].as_u64().unwrap())
        .unwrap();
    assert_fails(
        &run,
        1,
        &[
            "no candidate fits flash 1024 bytes, RAM 2048 bytes on Cortex-M4F",
            &format!(
                "the smallest, {}, needs flash {} bytes (model blob {}",
                smallest["label"].as_str().unwrap(),
                smallest["cost"]["flash_bytes"],
                smallest["cost"]["blob_bytes"]
            ),
        ],
    );
    assert!(!out.join("candidates").exists(), "a candidate was trained");
}

#[test]
fn bad_budgets_cores_and_records_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fit");
    let o = s(&out);
    for (extra, needle) in [
        (vec!["--flash", "12Q"], "--flash: expected a size in bytes"),
        (vec!["--ram", "0"], "--ram: expected a size above 0 bytes"),
        (
            vec!["--core", "cortex-m9"],
            "--core: unknown core 'cortex-m9'",
        ),
        (
            vec!["--latency", "5 fortnights", "--clock", "64MHz"],
            "--latency: expected a duration",
        ),
        (
            vec!["--latency", "5ms", "--clock", "fast"],
            "--clock: expected a frequency",
        ),
        (vec!["--jobs", "0"], "--jobs: expected at least 1"),
        (vec!["--max-hidden-layers", "4"], "--max-hidden-layers"),
        (
            vec!["--budget", "0s"],
            "--budget: expected a duration above 0",
        ),
        (
            vec!["--budget", "3 weeks"],
            "--budget: expected a duration such as",
        ),
        (vec!["--autoencoder"], "kiln fit searches classifiers"),
        (vec!["--resume"], "--resume:"),
    ] {
        let run = kiln(&fit_args(o, &extra));
        assert_fails(&run, 2, &[needle]);
        assert_eq!(
            common::stderr(&run).trim_end().lines().count(),
            1,
            "{extra:?}: {}",
            common::stderr(&run)
        );
    }
    // --latency needs --clock (clap's own message, which names it on the next line).
    let run = kiln(&fit_args(o, &["--latency", "5ms"]));
    assert_fails(&run, 2, &["required arguments were not provided"]);
    assert!(common::stderr(&run).contains("--clock <FREQUENCY>"));
    // No budget at all.
    let run = kiln(&["fit", "--data", "digits", "--quiet", "-o", o]);
    assert_fails(&run, 2, &["expected a budget"]);

    // A folder that holds a search is not overwritten, and a changed search is not resumed.
    let first = kiln(&fit_args(o, &["--flash", "1K"]));
    assert_eq!(first.status.code(), Some(1));
    assert_fails(
        &kiln(&fit_args(o, &[])),
        2,
        &["already holds a search; continue it with --resume"],
    );
    assert_fails(
        &kiln(&fit_args(o, &["--flash", "2K", "--resume"])),
        2,
        &["--resume:", "other settings (flash_budget changed)"],
    );
    // A record of another version is refused by its version.
    let path = out.join("fit.json");
    let mut old = record(&out);
    old["version"] = Value::from(0);
    std::fs::write(&path, serde_json::to_string(&old).unwrap()).unwrap();
    assert_fails(
        &kiln(&fit_args(o, &["--flash", "1K", "--resume"])),
        2,
        &["search record version 0, this kiln reads version 1"],
    );
}

#[test]
fn an_interrupted_or_timed_out_search_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let run = kiln(&fit_args(s(&whole), &["--jobs", "1"]));
    assert_eq!(run.status.code(), Some(0), "{}", common::stderr(&run));

    // Ctrl-C in the middle of the third candidate (19 mini-batches of 64 per epoch, 6 epochs).
    let cut = dir.path().join("cut");
    let interrupted = kiln_with_hook(&fit_args(s(&cut), &["--jobs", "1"]), 2 * 6 * 19 + 40);
    assert_fails(
        &interrupted,
        130,
        &["interrupted; 2 candidates finished", "kiln fit --resume"],
    );
    let statuses: Vec<Value> = record(&cut)["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].clone())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "trained").count(),
        2,
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&Value::from("interrupted")),
        "{statuses:?}"
    );
    let resumed = kiln(&fit_args(s(&cut), &["--jobs", "1", "--resume"]));
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        common::stderr(&resumed)
    );
    assert_eq!(results(&record(&cut)), results(&record(&whole)));

    // A budget spent before anything finishes: nothing to choose from, then --resume finishes.
    let slow = dir.path().join("slow");
    assert_fails(
        &kiln(&fit_args(s(&slow), &["--jobs", "1", "--budget", "1ms"])),
        2,
        &["the time budget (--budget) ended before any candidate finished training"],
    );
    assert!(record(&slow)["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "time_budget"));
    let finished = kiln(&fit_args(s(&slow), &["--jobs", "1", "--resume"]));
    assert_eq!(
        finished.status.code(),
        Some(0),
        "{}",
        common::stderr(&finished)
    );
    assert_eq!(results(&record(&slow)), results(&record(&whole)));
}

#[test]
fn cnn_candidates_are_sized_exactly_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fit");
    // 40K of flash leaves room for kiln-runtime with every layer kind on the Cortex-M4F (its
    // measured 35.0 KB: the first-convolution and depthwise-plane kernels take 5.3 KB of it)
    // and a small CNN.
    let run = kiln(&fit_args(
        s(&out),
        &["--flash", "40K", "--ram", "4K", "--epochs", "2", "--json"],
    ));
    assert_eq!(run.status.code(), Some(0), "{}", common::stderr(&run));
    let report: Value = serde_json::from_str(&stdout(&run)).unwrap();
    let cnns: Vec<&Value> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("layers").is_some())
        .collect();
    let trained: Vec<&&Value> = cnns.iter().filter(|c| c["status"] == "trained").collect();
    assert!(trained.len() >= 4, "{cnns:?}");
    for c in &trained {
        // Baked untrained and sized: the trained blob has the same length, plan and estimate.
        assert_eq!(c["result"]["blob_cost"], c["cost"], "{c}");
        assert!(c["layers"].as_str().unwrap().starts_with("conv3x3:"), "{c}");
        assert!(
            c["label"].as_str().unwrap().starts_with("8x8x1-conv3x3:"),
            "{c}"
        );
    }
    // Some are over the budget, and none of those was trained.
    assert!(
        cnns.iter().any(|c| c["status"] == "does_not_fit"),
        "{cnns:?}"
    );

    // --mlp-only leaves them out.
    let mlp = kiln(&fit_args(
        s(&dir.path().join("mlp")),
        &["--flash", "1K", "--mlp-only"],
    ));
    assert_eq!(mlp.status.code(), Some(1));
    assert!(!record(&dir.path().join("mlp"))["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.get("layers").is_some()));
}

#[test]
fn with_qat_every_candidate_is_scored_on_the_int8_model_qat_made() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fit");
    let run = kiln(&fit_args(
        s(&out),
        &["--qat", "--qat-epochs", "2", "--mlp-only", "--json"],
    ));
    assert_eq!(run.status.code(), Some(0), "{}", common::stderr(&run));
    let report: Value = serde_json::from_str(&stdout(&run)).unwrap();
    let settings = &record(&out)["settings"]["train"]["qat"];
    assert_eq!(settings["epochs"], 2, "{settings}");
    for c in report["candidates"].as_array().unwrap() {
        if c["status"] != "trained" {
            continue;
        }
        let label = c["label"].as_str().unwrap();
        let model: Value = serde_json::from_slice(
            &std::fs::read(out.join("candidates").join(label).join("model.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(model["state"]["qat"]["epochs_done"], 2, "{label}");
    }
    // The winner's files are the QAT model's: quantizing its model file again gives the int8
    // test accuracy the search reported for it.
    let winner = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["winner"] == true)
        .unwrap();
    let again = kiln(&[
        "quantize",
        s(&out.join("model.json")),
        "--json",
        "-o",
        s(&dir.path().join("again")),
    ]);
    assert!(again.status.success(), "{}", common::stderr(&again));
    let again: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(
        again["calibration"],
        "tracked by quantization-aware training"
    );
    assert_eq!(
        again["int8_accuracy"], winner["result"]["int8_test_accuracy"],
        "{winner}"
    );
}
