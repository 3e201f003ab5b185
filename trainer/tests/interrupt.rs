//! Interrupting `kiln train` loses nothing: a stop after any mini-batch saves a checkpoint,
//! exits with 130, and `--resume` reproduces the uninterrupted run bit for bit. A killed
//! process never leaves a torn model file.
//!
//! Most tests use the `KILN_INTERRUPT_AFTER_BATCHES` hook, which behaves exactly like a
//! SIGINT arriving during the N-th mini-batch of the process, so they have no timing races.

use kiln_trainer::model::ModelFile;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const HOOK: &str = "KILN_INTERRUPT_AFTER_BATCHES";
/// The bundled digits have 1348 training samples: 22 batches of 64 per epoch.
const BATCHES_PER_EPOCH: usize = 22;
const EPOCHS: &str = "4";

fn kiln(args: &[&str], hook: Option<usize>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args).env_remove(HOOK);
    if let Some(after) = hook {
        command.env(HOOK, after.to_string());
    }
    command.output().expect("the kiln binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn train_args<'a>(out: &'a str, schedule: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--hidden",
        "16",
        "--optimizer",
        "adam",
        "--schedule",
        schedule,
        "--seed",
        "7",
        "--epochs",
        EPOCHS,
        "--quiet",
        "--no-check",
        "-o",
        out,
    ]
}

fn resume_args(out: &str) -> Vec<&str> {
    vec!["train", "--resume", "--quiet", "--no-check", "-o", out]
}

fn model_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap()
}

/// Asserts an interrupted run: exit 130, the one documented line, a loadable checkpoint
/// and no ONNX file.
fn assert_interrupted(output: &Output, dir: &Path) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(130), "stderr: {message}");
    let out = dir.to_str().unwrap();
    assert!(message.contains("interrupted at epoch"), "{message}");
    assert!(
        message.contains(&format!("checkpoint saved to {out}/model.json")),
        "{message}"
    );
    assert!(
        message.contains(&format!("continue with `kiln train --resume -o {out}`")),
        "{message}"
    );
    ModelFile::load(&dir.join("model.json")).expect("the checkpoint loads");
    assert!(
        !dir.join("model.onnx").exists(),
        "an interrupted run exported ONNX"
    );
}

/// The parts of a finished model file that must not depend on interruptions: everything
/// except the wall-clock seconds in the history.
fn comparable(model: &Value) -> Value {
    let mut state = model["state"].clone();
    for record in state["history"].as_array_mut().unwrap() {
        record.as_object_mut().unwrap().remove("seconds");
    }
    serde_json::json!({
        "layers": model["layers"],
        "state": state,
    })
}

/// Trains with interruptions after each count in `stops` (batches run by that process),
/// resuming after each one, then resumes to the end; returns the final model.
fn interrupted_run(schedule: &str, stops: &[usize]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let mut done = 0;
    for (idx, &stop) in stops.iter().enumerate() {
        let output = if idx == 0 {
            kiln(&train_args(out, schedule), Some(stop))
        } else {
            kiln(&resume_args(out), Some(stop))
        };
        assert_interrupted(&output, dir.path());
        done += stop;
        let model = model_json(dir.path());
        let epoch = done.div_ceil(BATCHES_PER_EPOCH);
        let batch = done - (epoch - 1) * BATCHES_PER_EPOCH;
        assert!(
            stderr(&output).contains(&format!("interrupted at epoch {epoch}, batch {batch};")),
            "{}",
            stderr(&output)
        );
        let progress = &model["state"]["epoch_progress"];
        if done % BATCHES_PER_EPOCH == 0 {
            // At an epoch boundary the epoch is completed and saved as usual.
            assert_eq!(model["state"]["epochs_done"], done / BATCHES_PER_EPOCH);
            assert!(progress.is_null(), "{progress}");
        } else {
            assert_eq!(model["state"]["epochs_done"], done / BATCHES_PER_EPOCH);
            assert_eq!(progress["batches_done"], done % BATCHES_PER_EPOCH);
            assert_eq!(progress["seen"], 64 * (done % BATCHES_PER_EPOCH));
        }
    }
    let output = kiln(&resume_args(out), None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join("model.onnx").exists());
    let model = model_json(dir.path());
    assert_eq!(model["state"]["epochs_done"], 4);
    assert!(model["state"].get("epoch_progress").is_none());
    model
}

fn uninterrupted_run(schedule: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let output = kiln(&train_args(dir.path().to_str().unwrap(), schedule), None);
    assert!(output.status.success(), "{}", stderr(&output));
    model_json(dir.path())
}

fn assert_resume_is_bit_identical(schedule: &str) {
    let reference = uninterrupted_run(schedule);
    let cases: [(&str, &[usize]); 5] = [
        ("mid first epoch", &[5]),
        ("after the first batch", &[1]),
        ("exactly at an epoch boundary", &[BATCHES_PER_EPOCH]),
        ("mid a later epoch", &[2 * BATCHES_PER_EPOCH + 7]),
        ("twice in a row", &[9, 30]),
    ];
    for (name, stops) in cases {
        let resumed = interrupted_run(schedule, stops);
        assert!(
            resumed["layers"] == reference["layers"],
            "{schedule}, {name}: the weights differ from the uninterrupted run"
        );
        assert!(
            resumed["state"]["optimizer"] == reference["state"]["optimizer"],
            "{schedule}, {name}: the optimizer state differs"
        );
        assert!(
            comparable(&resumed) == comparable(&reference),
            "{schedule}, {name}: the training state differs"
        );
    }
}

#[test]
fn resume_after_any_interruption_is_bit_identical_with_a_constant_schedule() {
    assert_resume_is_bit_identical("constant");
}

#[test]
fn resume_after_any_interruption_is_bit_identical_with_the_cosine_schedule() {
    assert_resume_is_bit_identical("cosine");
}

#[test]
fn a_stop_after_the_last_batch_keeps_the_finished_model_and_exports_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let total = 4 * BATCHES_PER_EPOCH;
    let output = kiln(&train_args(out, "constant"), Some(total));
    assert_interrupted(&output, dir.path());
    assert_eq!(model_json(dir.path())["state"]["epochs_done"], 4);
    let output = kiln(&resume_args(out), None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join("model.onnx").exists());
    assert!(comparable(&model_json(dir.path())) == comparable(&uninterrupted_run("constant")));
}

#[test]
fn a_bad_hook_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    let output = command
        .args(train_args(dir.path().to_str().unwrap(), "constant"))
        .env(HOOK, "soon")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains(HOOK), "{}", stderr(&output));
}

/// A long run on the digits: small batches, many epochs, a checkpoint after each.
fn spawn_long_run(out: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "train",
            "--hidden",
            "32",
            "--batch",
            "4",
            "--epochs",
            "100000",
            "--quiet",
            "--no-check",
            "-o",
            out,
        ])
        .env_remove(HOOK)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the kiln binary starts")
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("kiln did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(unix)]
#[test]
fn a_real_sigint_or_sigterm_saves_a_checkpoint_and_exits_130() {
    for signal in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let mut child = spawn_long_run(out);
        // The handler is installed before the first checkpoint is written.
        let started = Instant::now();
        while !dir.path().join("model.json").exists() {
            assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        let sent = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = wait_with_timeout(&mut child, Duration::from_secs(30));
        let mut message = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut message).unwrap();
        assert_eq!(status.code(), Some(130), "SIG{signal}: {message}");
        assert!(message.contains("interrupted at epoch"), "{message}");
        let model = ModelFile::load(&dir.path().join("model.json")).expect("a loadable checkpoint");
        assert!(!dir.path().join("model.onnx").exists());
        // Finishing the interrupted epoch works and exports.
        let epochs = (model.state.epochs_done + 1).to_string();
        let output = kiln(
            &[
                "train",
                "--resume",
                "--epochs",
                &epochs,
                "--quiet",
                "--no-check",
                "-o",
                out,
            ],
            None,
        );
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(dir.path().join("model.onnx").exists());
    }
}

#[test]
fn a_killed_run_never_leaves_a_torn_model_file() {
    for delay_ms in [50, 150, 300, 700] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_long_run(dir.path().to_str().unwrap());
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let path = dir.path().join("model.json");
        if path.exists() {
            if let Err(error) = ModelFile::load(&path) {
                panic!("killed after {delay_ms} ms: a torn model file: {error}");
            }
        }
        // Only the model file and, at worst, this process's hidden temp file remain.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                name == "model.json" || name == format!(".model.json.tmp-{}", child.id()),
                "unexpected file {name} after a kill at {delay_ms} ms"
            );
        }
    }
}

#[test]
fn the_next_run_removes_stale_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let stale = [".model.json.tmp-999999999", ".model.onnx.tmp-999999999-3"];
    for name in stale {
        std::fs::write(dir.path().join(name), b"{\"format\": \"kil").unwrap();
    }
    let unrelated = dir.path().join(".notes.tmp-1");
    std::fs::write(&unrelated, b"keep").unwrap();
    let output = kiln(&train_args(out, "constant"), Some(3));
    assert_interrupted(&output, dir.path());
    for name in stale {
        assert!(!dir.path().join(name).exists(), "{name} was not removed");
    }
    assert!(unrelated.exists(), "a file kiln did not write was removed");
}
