//! Regression reports through the `kiln` binary: a small autoencoder with an anomaly column,
//! trained, evaluated as a model file and as an int8 blob, quantized and run; train and eval
//! agree, the anomalies are found, and a classifier blob is refused regression data.

mod common;
use common::*;

use kiln_trainer::rng::Rng;
use std::path::Path;
use std::process::Output;

const N_FEATURES: usize = 40;

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `n` rows of 40 integer features (a sine of random phase and amplitude around 50, with a
/// little noise) and a 0/1 anomaly column; an anomalous row has 60 added to its first 20
/// features.
fn rows(rng: &mut Rng, n: usize, anomalous: impl Fn(usize) -> bool) -> String {
    let mut text = String::new();
    for row in 0..n {
        let phase = rng.uniform_f64() * std::f64::consts::TAU;
        let amplitude = 10.0 + 10.0 * rng.uniform_f64();
        let anomaly = anomalous(row);
        let mut fields: Vec<String> = (0..N_FEATURES)
            .map(|col| {
                let angle = std::f64::consts::TAU * 2.0 * col as f64 / N_FEATURES as f64 + phase;
                let noise = rng.below(3) as f64 - 1.0;
                let bump = if anomaly && col < 20 { 60.0 } else { 0.0 };
                ((50.0 + amplitude * angle.sin() + noise + bump).round() as i64).to_string()
            })
            .collect();
        fields.push(u8::from(anomaly).to_string());
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    text
}

fn write_data(dir: &Path) {
    let mut rng = Rng::new(3);
    std::fs::write(dir.join("train.csv"), rows(&mut rng, 300, |_| false)).unwrap();
    std::fs::write(
        dir.join("test.csv"),
        rows(&mut rng, 100, |row| row % 2 == 1),
    )
    .unwrap();
}

fn f64_at(value: &serde_json::Value, field: &str) -> f64 {
    value[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing from {value}"))
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn autoencoder_reports_errors_and_anomaly_auc_in_train_eval_quantize_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_data(root);
    let train_csv = format!("csv:{}", s(&root.join("train.csv")));
    let test_csv = root.join("test.csv");
    let data: [&str; 7] = [
        "--data",
        &train_csv,
        "--test-data",
        s(&test_csv),
        "--autoencoder",
        "--anomaly-column",
        "40",
    ];
    let out = root.join("ae");
    let mut args = vec!["train"];
    args.extend(data);
    args.extend([
        "--hidden",
        "16,4,16",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "30",
        "--batch",
        "32",
        "--no-plot",
        "--quiet",
        "--json",
        "-o",
        s(&out),
    ]);
    let train = json(&kiln(&args));
    let regression = &train["regression"];
    let (mse, mae, rmse) = (
        f64_at(regression, "mse"),
        f64_at(regression, "mae"),
        f64_at(regression, "rmse"),
    );
    assert!(mse > 0.0 && mae > 0.0, "{regression}");
    assert_close(rmse, mse.sqrt(), "rmse");
    // The loss is the same mean squared error, accumulated in f32.
    let test_loss = f64_at(&train, "test_loss");
    assert!(
        (test_loss - mse).abs() <= 1e-4 * mse,
        "{test_loss} vs {mse}"
    );
    let per_output = regression["per_output"].as_array().unwrap();
    assert_eq!(per_output.len(), N_FEATURES);
    let mean_of_outputs: f64 =
        per_output.iter().map(|o| f64_at(o, "mse")).sum::<f64>() / N_FEATURES as f64;
    assert_close(mean_of_outputs, mse, "the mean of the per-output MSE");
    let anomaly = &regression["anomaly"];
    assert_eq!(anomaly["n_anomalous"], 50, "{anomaly}");
    assert_eq!(anomaly["n_normal"], 50, "{anomaly}");
    let auc = f64_at(anomaly, "auc");
    assert!(auc > 0.9, "float AUC {auc}: {anomaly}");
    assert!(f64_at(anomaly, "mean_score_anomalous") > f64_at(anomaly, "mean_score_normal"));
    println!("autoencoder 40-16-4-16-40: test MSE {mse:.3}, MAE {mae:.3}, AUC {auc:.4}");

    // eval on the model file (its own data by default) reports the same figures.
    let model = out.join("model.json");
    let eval = json(&kiln(&["eval", s(&model), "--json"]));
    assert_eq!(eval["kind"], "float");
    assert_eq!(eval["samples"], 100);
    assert_eq!(eval["n_outputs"], N_FEATURES);
    for field in ["mse", "mae", "rmse"] {
        assert_close(
            f64_at(&eval["regression"], field),
            f64_at(regression, field),
            field,
        );
    }
    assert_close(f64_at(&eval["regression"]["anomaly"], "auc"), auc, "auc");
    assert!(eval.get("accuracy").is_none(), "{eval}");
    // The text report: the overall figures, the worst outputs and the AUC; no pictures.
    let text = kiln(&["eval", s(&model), "-o", s(&root.join("eval-out"))]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    for needle in ["test error     MSE ", "worst outputs  #", "anomaly AUC    "] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(
        !root.join("eval-out").exists(),
        "regression draws no pictures"
    );

    // quantize: the float and int8 errors on the test set.
    let int8_dir = root.join("int8");
    let quantized = kiln(&["quantize", s(&model), "-o", s(&int8_dir), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&quantized.stdout)
        .unwrap_or_else(|e| panic!("quantize printed no JSON ({e}): {}", stderr(&quantized)));
    assert!(quantized.status.success(), "{report}");
    assert_close(
        f64_at(&report["float_regression"], "mse"),
        mse,
        "quantize's float MSE",
    );
    let int8 = &report["int8_regression"];
    let int8_mse = f64_at(int8, "mse");
    let int8_auc = f64_at(&int8["anomaly"], "auc");
    assert_eq!(int8["per_output"].as_array().unwrap().len(), N_FEATURES);
    assert!(int8_auc > 0.9, "int8 AUC {int8_auc}: {int8}");
    assert!(report["float_accuracy"].is_null() && report["int8_accuracy"].is_null());
    println!("int8: test MSE {int8_mse:.3}, AUC {int8_auc:.4}");

    // eval and run on the blob: the same int8 figures; --outputs ends each row with its score.
    let blob = int8_dir.join("model.kiln");
    let mut args = vec!["eval", s(&blob)];
    args.extend(data);
    args.push("--json");
    let eval_blob = json(&kiln(&args));
    assert_eq!(eval_blob["kind"], "int8");
    assert_close(
        f64_at(&eval_blob["regression"], "mse"),
        int8_mse,
        "eval int8",
    );
    let outputs = root.join("outputs.csv");
    let mut args = vec!["run", s(&blob)];
    args.extend(data);
    args.extend(["--json", "--outputs", s(&outputs)]);
    let run = json(&kiln(&args));
    assert_close(f64_at(&run["regression"], "mse"), int8_mse, "run int8");
    assert_close(
        f64_at(&run["regression"]["anomaly"], "auc"),
        int8_auc,
        "run AUC",
    );
    let csv = std::fs::read_to_string(&outputs).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 100);
    let mut score_total = 0.0;
    for line in &lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), N_FEATURES + 1, "{line}");
        for field in &fields[..N_FEATURES] {
            field.parse::<i8>().unwrap();
        }
        score_total += fields[N_FEATURES].parse::<f64>().unwrap();
    }
    // The overall MSE is the mean of the rows' scores.
    assert!((score_total / 100.0 - int8_mse).abs() <= 1e-9 * int8_mse);

    // A classifier blob of 40 inputs and 2 outputs (the anomaly column as its label) cannot
    // be measured on 40 targets per row.
    let test_only = format!("csv:{}", s(&test_csv));
    let classifier = root.join("clf");
    let trained = kiln(&[
        "train",
        "--data",
        &test_only,
        "--label-column",
        "40",
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--no-check",
        "--no-plot",
        "--quiet",
        "-o",
        s(&classifier),
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let classifier_blob = classifier.join("model.kiln");
    let baked = kiln(&[
        "bake",
        s(&classifier.join("model.json")),
        "--blob",
        s(&classifier_blob),
    ]);
    assert!(baked.status.success(), "{}", stderr(&baked));
    let mut args = vec!["eval", s(&classifier_blob)];
    args.extend(data);
    let refused = kiln(&args);
    assert_fails(
        &refused,
        2,
        &[
            "model.kiln: the model has 2 outputs, but csv:",
            " has 40 targets per row",
        ],
    );
    assert_eq!(stderr(&refused).lines().count(), 1, "{}", stderr(&refused));
}
