//! Inference at batch 1 and in batches of 64 rows: kiln-runtime (int8, the host build of the
//! no_std runtime) against tract on the same trained model, as the float ONNX file and as the
//! QDQ ONNX file. (`cargo xtask bench-inference` adds onnxruntime beside them.)
//!
//! The model comes from `KILN_BENCH_MODEL_DIR` (a folder holding `model.onnx`,
//! `model.qdq.onnx`, `model.kiln` and `model.input.npy`, as `kiln train` and
//! `kiln quantize` write them; `cargo xtask bench-inference` makes one from MNIST), or,
//! without it, is trained here on the bundled digits with the `kiln` binary.
//! Every engine gets the same raw test rows, one per iteration, in the same order.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tract_onnx::prelude::*;

/// How many test rows the engines cycle through.
const N_ROWS: usize = 256;

fn kiln(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("the kiln binary runs");
    assert!(
        output.status.success(),
        "kiln {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The folder with the model files, trained on the bundled digits if none is given.
fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_BENCH_MODEL_DIR") {
        return PathBuf::from(dir);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-inference-digits");
    let out = dir.to_str().expect("the target folder is UTF-8");
    kiln(&["train", "--epochs", "20", "--quiet", "-o", out]);
    kiln(&[
        "quantize",
        &format!("{out}/model.json"),
        "-o",
        out,
        "--quiet",
    ]);
    dir
}

/// Rows per call in the batched group.
const BATCH: usize = 64;

/// A tract plan for `batch` rows of `n_features` raw f32 features.
fn tract_plan(path: &Path, batch: usize, n_features: usize) -> std::sync::Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|model| {
            model.with_input_fact(
                0,
                InferenceFact::dt_shape(f32::datum_type(), tvec!(batch, n_features)),
            )
        })
        .and_then(|model| model.into_optimized())
        .and_then(|model| model.into_runnable())
        .unwrap_or_else(|e| panic!("{}: tract cannot load it: {e:#}", path.display()))
}

fn inference(c: &mut Criterion) {
    let dir = model_dir();
    let input_path = dir.join("model.input.npy");
    let bytes =
        std::fs::read(&input_path).unwrap_or_else(|e| panic!("{}: {e}", input_path.display()));
    let (n_rows, n_features, features) = kiln_trainer::npy::decode_f32(&bytes)
        .unwrap_or_else(|| panic!("{}: not a 2-D f32 .npy file", input_path.display()));
    let n_rows = n_rows.min(N_ROWS);
    let rows_f32: Vec<&[f32]> = features.chunks_exact(n_features).take(n_rows).collect();
    // The device feeds the raw integer features; the test rows are integers (pixels).
    let rows_i32: Vec<Vec<i32>> = rows_f32
        .iter()
        .map(|row| row.iter().map(|&v| v as i32).collect())
        .collect();

    let blob_path = dir.join("model.kiln");
    let blob = std::fs::read(&blob_path).unwrap_or_else(|e| panic!("{}: {e}", blob_path.display()));
    let model = kiln_runtime::Model::from_bytes(&blob)
        .unwrap_or_else(|e| panic!("{}: the runtime rejects it: {e:?}", blob_path.display()));
    assert_eq!(
        model.n_inputs(),
        n_features,
        "{}: input width",
        blob_path.display()
    );
    let mut scratch = vec![0i8; model.scratch_len()];
    let mut logits = vec![0i8; model.n_outputs()];

    let float_plan = tract_plan(&dir.join("model.onnx"), 1, n_features);
    let qdq_plan = tract_plan(&dir.join("model.qdq.onnx"), 1, n_features);
    let tensors: Vec<TValue> = rows_f32
        .iter()
        .map(|row| {
            Tensor::from_shape(&[1, n_features], row)
                .expect("a row is n_features long")
                .into()
        })
        .collect();

    let mut group = c.benchmark_group("inference");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut row_idx = 0;
    group.bench_function("kiln_runtime_int8", |b| {
        b.iter(|| {
            row_idx = (row_idx + 1) % n_rows;
            let class = model
                .run(black_box(&rows_i32[row_idx]), &mut scratch, &mut logits)
                .expect("the runtime runs a valid row");
            black_box(class)
        })
    });
    for (name, plan) in [("tract_f32", &float_plan), ("tract_qdq", &qdq_plan)] {
        let mut row_idx = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                row_idx = (row_idx + 1) % n_rows;
                let outputs = plan
                    .run(tvec!(black_box(tensors[row_idx].clone())))
                    .expect("tract runs a valid row");
                black_box(outputs)
            })
        });
    }
    group.finish();

    // Batches of 64 rows: the runtime runs them one after another (a microcontroller has one
    // core and no batch dimension); tract gets them as one [64, n] tensor. Per call.
    let n_batches = n_rows / BATCH;
    assert!(
        n_batches > 0,
        "{}: fewer than {BATCH} test rows",
        input_path.display()
    );
    let float_plan = tract_plan(&dir.join("model.onnx"), BATCH, n_features);
    let qdq_plan = tract_plan(&dir.join("model.qdq.onnx"), BATCH, n_features);
    let batches: Vec<TValue> = features
        .chunks_exact(BATCH * n_features)
        .take(n_batches)
        .map(|rows| {
            Tensor::from_shape(&[BATCH, n_features], rows)
                .expect("a batch is BATCH rows")
                .into()
        })
        .collect();
    let mut group = c.benchmark_group("inference_batch64");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut batch_idx = 0;
    group.bench_function("kiln_runtime_int8", |b| {
        b.iter(|| {
            batch_idx = (batch_idx + 1) % n_batches;
            for row in &rows_i32[batch_idx * BATCH..(batch_idx + 1) * BATCH] {
                let class = model
                    .run(black_box(row), &mut scratch, &mut logits)
                    .expect("the runtime runs a valid row");
                black_box(class);
            }
        })
    });
    for (name, plan) in [("tract_f32", &float_plan), ("tract_qdq", &qdq_plan)] {
        let mut batch_idx = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                batch_idx = (batch_idx + 1) % n_batches;
                let outputs = plan
                    .run(tvec!(black_box(batches[batch_idx].clone())))
                    .expect("tract runs a valid batch");
                black_box(outputs)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
