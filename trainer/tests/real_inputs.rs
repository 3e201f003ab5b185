//! Real-valued features reach the integer runtime: the model records the raw inputs' fraction
//! bits, the CLI converts at the boundary, and the int8 model still agrees with tract.

mod common;

use common::{kiln, s, stderr};
use std::fmt::Write as _;

/// Three classes of 8 real-valued features (centres apart, deterministic jitter), with negative
/// values and fractions: none of them is an integer.
fn write_real_csv(path: &std::path::Path, n_rows: usize, seed: u64) {
    let mut rng = kiln_trainer::rng::Rng::new(seed);
    // Uniform in [-1, 1).
    let mut next = || (rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0;
    let mut text = String::new();
    for row in 0..n_rows {
        let class = row % 3;
        for feature in 0..8 {
            let centre = -40.0 + 7.5 * ((class * 3 + feature) % 5) as f64;
            let _ = write!(text, "{:.3},", centre + 4.0 * next() + 0.001);
        }
        let _ = writeln!(text, "{class}");
    }
    std::fs::write(path, text).unwrap();
}

/// `kiln train` on the two files with `flags`, into `out`; it must succeed.
fn train_on(
    train: &std::path::Path,
    test: &std::path::Path,
    flags: &[&str],
    out: &std::path::Path,
) {
    let data = format!("csv:{}", s(train));
    let mut args = vec![
        "train",
        "--data",
        &data,
        "--test-data",
        s(test),
        "--quiet",
        "-o",
        s(out),
    ];
    args.extend_from_slice(flags);
    let trained = kiln(&args);
    assert!(trained.status.success(), "{}", stderr(&trained));
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn real_valued_features_quantize_with_fraction_bits_and_agree_with_tract() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    write_real_csv(&train, 300, 1);
    write_real_csv(&test, 90, 2);
    let data = format!("csv:{}", s(&train));
    let model_dir = dir.path().join("m");
    let flags = [
        "--hidden",
        "16",
        "--normalize",
        "standardize",
        "--epochs",
        "20",
        "--lr",
        "0.01",
    ];
    train_on(&train, &test, &flags, &model_dir);
    let model = model_dir.join("model.json");
    let out = dir.path().join("int8");
    let report = json(&kiln(&["quantize", s(&model), "-o", s(&out), "--json"]));
    // |x| < 47: 47 * 2^16 = 3.1e6 <= 2^22 < 47 * 2^17.
    assert_eq!(report["report"]["input_frac_bits"], 16, "{report}");
    assert_eq!(report["tract_passed"], true, "{report}");
    let (float, int8) = (
        report["float_accuracy"].as_f64().unwrap(),
        report["int8_accuracy"].as_f64().unwrap(),
    );
    assert!(float > 0.9, "the classes are separable: {float}");
    assert!((float - int8).abs() <= 0.03, "float {float}, int8 {int8}");

    // The Rust source publishes the fraction bits, read from the blob.
    let source = std::fs::read_to_string(out.join("model.rs")).unwrap();
    assert!(
        source.contains("pub const INPUT_FRAC_BITS: u8 = 16;"),
        "{source:.2000}"
    );
    // inspect says how the raw inputs are made, and names the blob's own format version (the
    // committed digits blob is version 2).
    let inspected = kiln(&["inspect", s(&out.join("model.kiln"))]);
    let text = common::stdout(&inspected);
    assert!(text.contains("format version 3"), "{text}");
    assert!(
        text.contains("raw inputs in fixed point: round(x * 2^16) as i32"),
        "{text}"
    );
    let digits_v2 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/digits-model/model.kiln"
    );
    let text = common::stdout(&kiln(&["inspect", digits_v2]));
    assert!(text.contains("format version 2"), "{text}");
    assert!(!text.contains("fixed point"), "{text}");
    assert!(text.contains("int8 input scale "), "{text}");
    // `kiln run` converts the same real values the same way: the same int8 accuracy.
    let run = json(&kiln(&[
        "run",
        s(&out.join("model.kiln")),
        "--data",
        &data,
        "--test-data",
        s(&test),
        "--json",
    ]));
    assert_eq!(run["int8_accuracy"], report["int8_accuracy"], "{run}");
}

/// An autoencoder over real-valued features, exported to ONNX and imported back as another
/// framework's file would be: import (with its tract check), quantize, bake and run on the
/// float CSV all succeed, with no hand-made scaling node.
#[test]
fn an_imported_autoencoder_over_real_values_goes_from_onnx_to_the_int8_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    write_real_csv(&train, 300, 3);
    write_real_csv(&test, 60, 4);
    let data = format!("csv:{}", s(&train));
    // Every column, the class included, is a real-valued feature and a target.
    let ae_dir = dir.path().join("ae");
    let flags = [
        "--autoencoder",
        "--hidden",
        "12,4,12",
        "--normalize",
        "none",
        "--epochs",
        "3",
    ];
    train_on(&train, &test, &flags, &ae_dir);
    let onnx = ae_dir.join("model.onnx");
    let imported = dir.path().join("imported.json");
    let import = kiln(&[
        "import",
        s(&onnx),
        "--data",
        &data,
        "--test-data",
        s(&test),
        "--autoencoder",
        "-o",
        s(&imported),
    ]);
    assert!(import.status.success(), "{}", stderr(&import));
    let text = common::stdout(&import);
    assert!(text.contains("regression, 9 outputs"), "{text}");
    assert!(text.contains("check          PASS"), "{text}");
    let out = dir.path().join("int8");
    let report = json(&kiln(&["quantize", s(&imported), "-o", s(&out), "--json"]));
    assert_eq!(report["tract_passed"], true, "{report}");
    assert!(report["report"]["input_frac_bits"].as_u64().unwrap() > 0);
    let baked = kiln(&[
        "bake",
        s(&imported),
        "--rust",
        s(&dir.path().join("model.rs")),
    ]);
    assert!(baked.status.success(), "{}", stderr(&baked));
    check_published_input_quantization(
        &std::fs::read_to_string(dir.path().join("model.rs")).unwrap(),
        &std::fs::read(out.join("model.kiln")).unwrap(),
        &test,
    );
    let run = json(&kiln(&[
        "run",
        s(&out.join("model.kiln")),
        "--data",
        &data,
        "--test-data",
        s(&test),
        "--autoencoder",
        "--json",
    ]));
    assert_eq!(
        run["regression"]["mse"], report["int8_regression"]["mse"],
        "{run}"
    );
}

/// The Rust source's `INPUT_SCALE` and `INPUT_ZERO_POINT` let code that quantizes real values
/// itself (and calls `run_quantized`) feed what `run`'s input stage computes from raw values:
/// the same int8 input but for rounding at step boundaries (at most 1 LSB, rarely).
fn check_published_input_quantization(source: &str, blob: &[u8], test_csv: &std::path::Path) {
    let constant = |name: &str| -> String {
        let line = source
            .lines()
            .find(|l| l.starts_with(&format!("pub const {name}:")))
            .unwrap_or_else(|| panic!("no {name} in the Rust source"));
        line.split('=')
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(';')
            .to_owned()
    };
    let scale: f32 = constant("INPUT_SCALE").parse().unwrap();
    let zero_point: i8 = constant("INPUT_ZERO_POINT").parse().unwrap();
    let model = kiln_runtime::Model::from_bytes(blob).unwrap();
    let bits = model.input_frac_bits();
    let (mut identical, mut total) = (0usize, 0usize);
    for line in std::fs::read_to_string(test_csv).unwrap().lines() {
        let values: Vec<f32> = line.split(',').map(|v| v.parse().unwrap()).collect();
        let raw: Vec<i32> = values
            .iter()
            .map(|&x| kiln_trainer::quant::math::raw_input(x, bits).unwrap())
            .collect();
        let mut device = vec![0i8; raw.len()];
        model.quantize_input(&raw, &mut device).unwrap();
        for (&x, &q) in values.iter().zip(&device) {
            let caller = ((x / scale).round() + f32::from(zero_point)).clamp(-128.0, 127.0) as i8;
            assert!(
                (i32::from(caller) - i32::from(q)).abs() <= 1,
                "x {x}: {caller} vs {q}"
            );
            identical += usize::from(caller == q);
            total += 1;
        }
    }
    assert!(total >= 500, "{total} values compared");
    assert!(
        identical * 100 >= total * 99,
        "{identical} of {total} identical"
    );
    eprintln!("published input quantization: {identical} of {total} int8 inputs identical");
}
