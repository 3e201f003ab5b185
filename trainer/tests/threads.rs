//! `--threads N` changes the speed of training, never its result: the weights, biases and
//! optimiser state are bit-identical to `--threads 1`.

mod common;

use common::{kiln, s, stderr};
use std::path::Path;

/// The model file's layers and optimiser state, the parts training computes.
fn trained_state(dir: &Path) -> (serde_json::Value, serde_json::Value) {
    let text = std::fs::read_to_string(dir.join("model.json")).expect("model.json is written");
    let model: serde_json::Value = serde_json::from_str(&text).expect("model.json is JSON");
    (model["layers"].clone(), model["state"]["optimizer"].clone())
}

fn train(dir: &Path, flags: &[&str], threads: &str) {
    let mut args = vec!["train", "--epochs", "2", "--no-check", "--quiet"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--threads", threads, "-o", s(dir)]);
    let output = kiln(&args);
    assert!(
        output.status.success(),
        "kiln {args:?}: {}",
        stderr(&output)
    );
}

#[test]
fn more_threads_give_bit_identical_weights() {
    // 512 hidden units make the first layer (forward, backward and update) run in two and
    // three blocks of units on as many threads; its input, the bundled digits, is
    // sparse enough to be kept in sparse form. The later layers run on the calling thread.
    let configurations: [&[&str]; 2] = [
        &["--hidden", "512", "--optimizer", "adam"],
        &[
            "--hidden",
            "512,64",
            "--optimizer",
            "sgd",
            "--momentum",
            "0.9",
            "--nesterov",
        ],
    ];
    let temp = tempfile::tempdir().expect("a temp folder");
    for (config_idx, flags) in configurations.iter().enumerate() {
        let single = temp.path().join(format!("{config_idx}-t1"));
        train(&single, flags, "1");
        let expected = trained_state(&single);
        assert!(
            expected
                .0
                .as_array()
                .is_some_and(|layers| !layers.is_empty()),
            "the model has layers"
        );
        for threads in ["2", "3"] {
            let multi = temp.path().join(format!("{config_idx}-t{threads}"));
            train(&multi, flags, threads);
            let actual = trained_state(&multi);
            assert!(
                actual.0 == expected.0,
                "{flags:?}: --threads {threads} changed the weights"
            );
            assert!(
                actual.1 == expected.1,
                "{flags:?}: --threads {threads} changed the optimiser state"
            );
        }
    }
}
