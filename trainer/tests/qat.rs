//! Quantization-aware training through the `kiln` binary: `kiln train --qat` and
//! `kiln quantize --qat-epochs` train with the device's int8 arithmetic, so the int8 accuracy
//! training reports is the runtime's, sample for sample; the ranges QAT tracked are the
//! model's; interrupting and resuming a QAT run is bit-identical to an uninterrupted one.

mod common;
use common::*;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

fn model_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap()
}

fn f64_at(value: &Value, field: &str) -> f64 {
    value[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing from {value}"))
}

#[test]
fn qat_accuracy_is_the_devices_and_its_ranges_are_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qat");
    let train = json(&kiln(&[
        "train",
        "--hidden",
        "16",
        "--epochs",
        "15",
        "--lr",
        "0.003",
        "--qat",
        "--qat-epochs",
        "3",
        "--no-plot",
        "--quiet",
        "--json",
        "-o",
        s(&out),
    ]));
    assert_eq!(train["epochs"], 18, "15 float epochs, then 3 QAT epochs");
    let qat_accuracy = f64_at(&train, "int8_test_accuracy");
    assert!(qat_accuracy > 0.85, "{train}");
    let model = model_json(&out);
    assert_eq!(model["format_version"], 4);
    assert_eq!(model["config"]["qat"]["epochs"], 3);
    assert_eq!(model["state"]["qat"]["epochs_done"], 3);
    let ranges = &model["state"]["qat"]["ranges"];
    assert_eq!(ranges["layers"].as_array().unwrap().len(), 2, "{ranges}");

    let quantize = json(&kiln(&[
        "quantize",
        s(&out.join("model.json")),
        "--json",
        "-o",
        s(&dir.path().join("int8")),
    ]));
    // One number: what training reported is what the runtime scores.
    assert_eq!(
        f64_at(&quantize, "int8_accuracy"),
        qat_accuracy,
        "{quantize}"
    );
    assert_eq!(quantize["trainer_identical"], quantize["test_samples"]);
    assert_eq!(quantize["calib_samples"], 0);
    assert_eq!(
        quantize["calibration"],
        "tracked by quantization-aware training"
    );
    let report_ranges = &quantize["report"]["calibration"]["layers"];
    for (layer, (reported, tracked)) in report_ranges
        .as_array()
        .unwrap()
        .iter()
        .zip(ranges["layers"].as_array().unwrap())
        .enumerate()
    {
        // The quantizer used the tracked ranges (stored as f32) as they are.
        assert_eq!(
            f64_at(&reported["output"], "hi") as f32,
            tracked["output"][1].as_f64().unwrap() as f32,
            "layer {layer}"
        );
    }
    assert_eq!(quantize["tract_passed"], true);

    // The ranges belong to these weights: other scales are refused, naming the fix.
    let other = kiln(&[
        "quantize",
        s(&out.join("model.json")),
        "--pow2-scales",
        "-o",
        s(&dir.path().join("pow2")),
    ]);
    assert_fails(
        &other,
        2,
        &["trained (--qat) for the default scales: quantize it without --pow2-scales"],
    );
}

#[test]
fn quantize_fine_tunes_a_float_model_and_power_of_two_qat_is_exact_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let float = dir.path().join("float");
    json(&kiln(&[
        "train",
        "--hidden",
        "16",
        "--epochs",
        "10",
        "--lr",
        "0.003",
        "--no-plot",
        "--no-check",
        "--quiet",
        "--json",
        "-o",
        s(&float),
    ]));
    let tuned = dir.path().join("tuned");
    let quantize = json(&kiln(&[
        "quantize",
        s(&float.join("model.json")),
        "--qat-epochs",
        "2",
        "--pow2-scales",
        "--json",
        "-o",
        s(&tuned),
    ]));
    let model = model_json(&tuned);
    assert_eq!(model["state"]["epochs_done"], 12);
    assert_eq!(model["state"]["qat"]["epochs_done"], 2);
    assert_eq!(model["config"]["qat"]["pow2_scales"], true);
    assert_eq!(
        quantize["files"]["model"].as_str().unwrap(),
        s(&tuned.join("model.json"))
    );
    assert_eq!(quantize["trainer_identical"], quantize["test_samples"]);
    // Power-of-two scales make tract's float arithmetic exact: every row identical.
    assert_eq!(quantize["tract_identical"], quantize["test_samples"]);
    // The input model is untouched.
    assert!(model_json(&float)["state"].get("qat").is_none());

    // Fine-tuning continues a QAT model for more epochs.
    let again = dir.path().join("again");
    json(&kiln(&[
        "quantize",
        s(&tuned.join("model.json")),
        "--qat-epochs",
        "1",
        "--pow2-scales",
        "--json",
        "-o",
        s(&again),
    ]));
    assert_eq!(model_json(&again)["state"]["qat"]["epochs_done"], 3);

    let zero = kiln(&[
        "quantize",
        s(&float.join("model.json")),
        "--qat-epochs",
        "0",
        "-o",
        s(&dir.path().join("zero")),
    ]);
    assert_fails(&zero, 2, &["--qat-epochs: expected at least 1 epoch"]);
    assert!(!dir.path().join("zero").join("model.kiln").exists());
}

#[test]
fn qat_on_a_regression_model_trains_the_devices_outputs() {
    let dir = tempfile::tempdir().unwrap();
    // Two targets, smooth functions of six features in [-1, 1].
    let mut csv = String::new();
    let mut state = 12345u64;
    for _ in 0..600 {
        let x: Vec<f64> = (0..6)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect();
        let targets = [x[0] * x[1] + x[2], (x[3] - x[4]).tanh() + 0.5 * x[5]];
        let row: Vec<String> = x
            .iter()
            .chain(&targets)
            .map(|v| format!("{v:.4}"))
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    let csv_path = dir.path().join("data.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let data = format!("csv:{}", s(&csv_path));
    let out = dir.path().join("regression");
    let train = json(&kiln(&[
        "train",
        "--data",
        &data,
        "--targets",
        "6-7",
        "--hidden",
        "24",
        "--epochs",
        "10",
        "--lr",
        "0.003",
        "--qat",
        "--qat-epochs",
        "2",
        "--no-plot",
        "--quiet",
        "--json",
        "-o",
        s(&out),
    ]));
    let int8_loss = f64_at(&train, "int8_test_loss");
    let quantize = json(&kiln(&[
        "quantize",
        s(&out.join("model.json")),
        "--json",
        "-o",
        s(&dir.path().join("int8")),
    ]));
    assert_eq!(quantize["trainer_identical"], quantize["test_samples"]);
    // The runtime's dequantized outputs have the error QAT reported.
    let mse = f64_at(&quantize["int8_regression"], "mse");
    assert!(
        (mse - int8_loss).abs() <= 1e-4 * mse,
        "runtime MSE {mse} vs QAT's {int8_loss}"
    );
}

const HOOK: &str = "KILN_INTERRUPT_AFTER_BATCHES";
/// The bundled digits' 1348 training samples in batches of 64.
const BATCHES_PER_EPOCH: usize = 22;

fn kiln_hooked(args: &[&str], hook: Option<usize>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args).env_remove(HOOK);
    if let Some(after) = hook {
        command.env(HOOK, after.to_string());
    }
    command.output().expect("the kiln binary runs")
}

fn qat_run(stops: &[usize]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = s(dir.path());
    let first = [
        "train",
        "--layers",
        "conv3x3:4,maxpool2,dense:16",
        "--epochs",
        "2",
        "--qat",
        "--qat-epochs",
        "2",
        "--seed",
        "7",
        "--quiet",
        "--no-check",
        "--no-plot",
        "-o",
        out,
    ];
    let resume = [
        "train",
        "--resume",
        "--quiet",
        "--no-check",
        "--no-plot",
        "-o",
        out,
    ];
    for (idx, &stop) in stops.iter().enumerate() {
        let args: &[&str] = if idx == 0 { &first } else { &resume };
        let output = kiln_hooked(args, Some(stop));
        assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    }
    let args: &[&str] = if stops.is_empty() { &first } else { &resume };
    let output = kiln_hooked(args, None);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut model = model_json(dir.path());
    for record in model["state"]["history"].as_array_mut().unwrap() {
        record.as_object_mut().unwrap().remove("seconds");
    }
    model
}

#[test]
fn an_interrupted_qat_run_resumes_bit_for_bit() {
    let reference = qat_run(&[]);
    assert_eq!(reference["state"]["qat"]["epochs_done"], 2);
    for (name, stops) in [
        ("at the start of QAT", &[2 * BATCHES_PER_EPOCH][..]),
        ("mid the first QAT epoch", &[2 * BATCHES_PER_EPOCH + 5][..]),
        (
            "mid the float epochs, then mid QAT",
            &[9, 3 * BATCHES_PER_EPOCH + 3][..],
        ),
    ] {
        let resumed = qat_run(stops);
        assert!(
            resumed["layers"] == reference["layers"],
            "{name}: the weights differ from the uninterrupted run"
        );
        assert!(
            resumed["state"] == reference["state"],
            "{name}: the training state (ranges, optimizer, history) differs"
        );
    }
}
