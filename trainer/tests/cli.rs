//! End-to-end tests of the `kiln` binary: the pipeline on the bundled digits,
//! and one clear line plus the right exit code for every kind of bad input.

mod common;
use common::*;

use std::path::Path;

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn small_run<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train", "--hidden", "16", "--epochs", "2", "--quiet", "-o", out,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn train_exports_checks_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let output = kiln(&small_run(
        out,
        &["--lr", "0.01", "--json", "--opset", "21", "--probabilities"],
    ));
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints one JSON object");
    assert_eq!(report["epochs"], 2);
    assert!(report["test_accuracy"].as_f64().unwrap() > 0.5, "{report}");
    assert!(report["seconds_per_epoch"].as_f64().unwrap() > 0.0);
    assert_eq!(report["check_passed"], true);
    assert!(report["check"]["max_abs_diff"].as_f64().unwrap() <= 1e-4);
    assert_eq!(
        files_in(dir.path()),
        vec![
            "model.input.npy",
            "model.json",
            "model.logits.npy",
            "model.onnx",
            "training.png",
            "training.svg"
        ]
    );
    for key in ["model", "onnx", "reference_input", "reference_logits"] {
        assert!(
            Path::new(report["files"][key].as_str().unwrap()).exists(),
            "{key}"
        );
    }
}

#[test]
fn same_seed_gives_bit_identical_models_and_resume_continues_exactly() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let outs: Vec<&str> = dirs.iter().map(|d| d.path().to_str().unwrap()).collect();
    // A constant rate: cosine re-plans its curve when --resume raises the total.
    let flags = [
        "--optimizer",
        "adam",
        "--schedule",
        "constant",
        "--seed",
        "11",
        "--no-check",
    ];
    // Two uninterrupted 3-epoch runs.
    for out in &outs[..2] {
        let mut args = small_run(out, &flags);
        args[4] = "3";
        assert!(kiln(&args).status.success());
    }
    // One run of 2 epochs, resumed to 3.
    assert!(kiln(&small_run(outs[2], &flags)).status.success());
    let resumed = kiln(&[
        "train",
        "--resume",
        "--epochs",
        "3",
        "--quiet",
        "--no-check",
        "-o",
        outs[2],
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let layers = |out: &str| {
        let model: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Path::new(out).join("model.json")).unwrap())
                .unwrap();
        assert_eq!(model["state"]["epochs_done"], 3);
        model["layers"].clone()
    };
    assert_eq!(layers(outs[0]), layers(outs[1]));
    assert_eq!(
        layers(outs[0]),
        layers(outs[2]),
        "a resumed run must match an uninterrupted one"
    );
}

#[test]
fn a_diverging_run_keeps_the_last_good_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let output = kiln(&small_run(
        out,
        &["--optimizer", "sgd", "--lr", "1e30", "--no-check"],
    ));
    assert_fails(&output, 5, &["model.json", "diverged", "last good model"]);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("model.json")).unwrap()).unwrap();
    assert_eq!(model["state"]["epochs_done"], 0);
    assert!(!dir.path().join("model.onnx").exists());
}

#[test]
fn bad_data_gets_one_line_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let non_numeric = write("non_numeric.csv", b"1,2,0\n3,abc,1\n");
    let ragged = write("ragged.csv", b"1,2,0\n3,4\n");
    let nan = write("nan.csv", b"1,2,0\n3,NaN,1\n");
    let empty = write("empty.csv", b"");
    let bad_magic = write("bad-images", &[0, 0, 8, 1, 0, 0, 0, 1, 7]);
    let labels = write("labels", &[0, 0, 8, 1, 0, 0, 0, 2, 1, 3]);
    let images = write(
        "images",
        &[0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 5, 6],
    );
    let truncated = write(
        "truncated-images",
        &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 5],
    );
    let big_label = write("big.csv", b"1,2,0\n3,4,1\n5,6,2\n7,8,0\n");
    let cases: Vec<(Vec<String>, i32, Vec<String>)> = vec![
        (
            vec!["--data".into(), "csv:/no/such/file.csv".into()],
            2,
            vec!["/no/such/file.csv".into()],
        ),
        (
            vec!["--data".into(), format!("csv:{non_numeric}")],
            2,
            vec!["non_numeric.csv".into(), "line 2".into(), "abc".into()],
        ),
        (
            vec!["--data".into(), format!("csv:{ragged}")],
            2,
            vec!["ragged.csv".into(), "line 2".into()],
        ),
        (
            vec!["--data".into(), format!("csv:{nan}")],
            2,
            vec!["nan.csv".into(), "line 2".into()],
        ),
        (
            vec!["--data".into(), format!("csv:{empty}")],
            2,
            vec!["empty.csv".into()],
        ),
        (
            vec!["--data".into(), format!("idx:{bad_magic},{labels}")],
            2,
            vec!["bad-images".into(), "magic".into()],
        ),
        (
            vec!["--data".into(), format!("idx:{images},{labels}")],
            2,
            vec!["images".into(), "labels".into()],
        ),
        (
            vec!["--data".into(), format!("idx:{truncated},{labels}")],
            2,
            vec!["truncated-images".into()],
        ),
        (
            vec![
                "--data".into(),
                format!("csv:{big_label}"),
                "--classes".into(),
                "2".into(),
            ],
            2,
            vec!["big.csv".into(), "label".into()],
        ),
        (
            vec!["--optimizer".into(), "rmsprop".into()],
            2,
            vec!["rmsprop".into()],
        ),
        (
            vec!["--hidden".into(), "12,x".into()],
            2,
            vec!["--hidden".into()],
        ),
    ];
    for (extra, code, needles) in cases {
        let mut args: Vec<&str> = vec!["train", "--quiet", "-o", out];
        args.extend(extra.iter().map(String::as_str));
        let output = kiln(&args);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        if code == 2 && extra[0] == "--optimizer" {
            // clap reports unknown values itself, with usage lines after the error.
            assert_eq!(output.status.code(), Some(2));
            assert!(stderr(&output).contains("rmsprop"));
        } else {
            assert_fails(&output, code, &needles);
        }
        assert!(
            files_in(Path::new(out)).iter().all(|f| !f.starts_with('.')),
            "temp files left behind for {extra:?}"
        );
        assert!(
            !Path::new(out).join("model.onnx").exists(),
            "{extra:?} wrote an ONNX file"
        );
    }
}

#[test]
fn check_rejects_a_tampered_file_and_a_missing_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    assert!(kiln(&small_run(out, &[])).status.success());
    let onnx = dir.path().join("model.onnx");
    let onnx_str = onnx.to_str().unwrap();
    assert!(kiln(&["check", onnx_str]).status.success());

    // Shift one bias in the ONNX file: the check must notice.
    let mut model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("model.json")).unwrap()).unwrap();
    let bias = model["layers"][1]["bias"][0].as_f64().unwrap();
    model["layers"][1]["bias"][0] = serde_json::json!(bias + 0.5);
    let tampered_model = dir.path().join("tampered.json");
    std::fs::write(&tampered_model, serde_json::to_vec(&model).unwrap()).unwrap();
    let tampered_onnx = dir.path().join("tampered.onnx");
    assert!(kiln(&[
        "export",
        tampered_model.to_str().unwrap(),
        "-o",
        tampered_onnx.to_str().unwrap()
    ])
    .status
    .success());
    let output = kiln(&["check", tampered_onnx.to_str().unwrap()]);
    assert_fails(&output, 1, &["tampered.onnx", "max |diff|"]);

    let output = kiln(&["check", onnx_str, "--model", "/no/such/model.json"]);
    assert_fails(&output, 2, &["/no/such/model.json"]);
    assert_fails(
        &kiln(&["check", "/no/such/file.onnx"]),
        2,
        &["/no/such/file.onnx"],
    );
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"not a protobuf").unwrap();
    let output = kiln(&[
        "check",
        garbage.to_str().unwrap(),
        "--model",
        dir.path().join("model.json").to_str().unwrap(),
    ]);
    assert_fails(&output, 2, &["garbage.onnx"]);
}

#[test]
fn resume_refuses_changed_settings_and_a_missing_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    assert_fails(&kiln(&["train", "--resume", "-o", out]), 2, &["model.json"]);
    assert_fails(
        &kiln(&["train", "--resume", "--lr", "0.5", "-o", out]),
        2,
        &["--lr"],
    );
}

#[test]
fn early_stopping_stops_and_keeps_the_best_validated_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    // A high constant rate overfits the small digits set quickly, so the validation loss stalls.
    let output = kiln(&[
        "train",
        "--hidden",
        "64",
        "--lr",
        "0.01",
        "--schedule",
        "constant",
        "--weight-decay",
        "0",
        "--epochs",
        "200",
        "--patience",
        "3",
        "--val-split",
        "0.2",
        "--quiet",
        "--json",
        "--no-check",
        "-o",
        out,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["stopped_early"], true, "{report}");
    let epochs = report["epochs"].as_u64().unwrap();
    assert!(epochs < 200, "ran all {epochs} epochs");
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("model.json")).unwrap()).unwrap();
    let best = &model["state"]["best"];
    assert_eq!(
        best["epoch"].as_u64().unwrap() + 3,
        epochs,
        "stops `patience` epochs after the best one"
    );
    assert_eq!(
        model["layers"], best["layers"],
        "the saved weights are the best validated ones"
    );
    let history = model["state"]["history"].as_array().unwrap();
    let best_val = best["val_loss"].as_f64().unwrap();
    assert!(history
        .iter()
        .all(|r| r["val_loss"].as_f64().unwrap() >= best_val));
}

#[test]
fn exit_codes_are_in_the_help_and_an_unwritable_output_is_not_a_failed_check() {
    let help = stdout(&kiln(&["--help"]));
    for needle in [
        "0 ok",
        "1 a check failed",
        "2 bad input or usage",
        "5 training diverged",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from: {help}");
    }
    // An output "folder" that is a regular file cannot be written: the command could not
    // answer, which is code 2, never the 1 of a failed check.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").unwrap();
    let output = kiln(&small_run(s(&blocker), &[]));
    assert_fails(&output, 2, &["not-a-folder"]);
}

/// A batch larger than the training set is the whole set (said once, recorded in the model
/// file), never an allocation of the requested size.
#[test]
fn a_batch_larger_than_the_training_set_is_the_whole_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let output = kiln(&[
        "train",
        "--batch",
        "1000000000000",
        "--epochs",
        "1",
        "--no-plot",
        "-o",
        out,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "note: --batch 1000000000000 is more than the 1348 training rows: batches of 1348"
        ),
        "{}",
        stderr(&output)
    );
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/model.json")).unwrap())
            .unwrap();
    assert_eq!(model["config"]["batch_size"], 1348, "{}", model["config"]);
}
