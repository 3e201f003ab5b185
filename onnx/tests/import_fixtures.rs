//! The committed exporter fixtures (PyTorch legacy and dynamo, scikit-learn
//! with and without ZipMap, tf2onnx) through the importer: each folds into
//! dense layers that reproduce the exporter's own outputs within 1e-5, and the
//! float evaluator running the original graph agrees too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_onnx::eval::{self, Tensor};
use kiln_onnx::import::{self, ImportedMlp, OutputKind};
use kiln_onnx::mlp::{Activation, InputNormalization};

const TOLERANCE: f64 = 1e-5;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/import")
}

struct Expected {
    inputs: Vec<(String, Vec<usize>, Vec<f64>)>,
    outputs: Vec<(String, Vec<usize>, Vec<f64>)>,
}

fn entries(value: &serde_json::Value) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    value
        .as_object()
        .expect("an object of tensors")
        .iter()
        .map(|(name, entry)| {
            let shape = entry["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let data = entry["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (name.clone(), shape, data)
        })
        .collect()
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(data_dir().join(format!("{name}.expected.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format"], "kiln-expected-outputs");
    Expected {
        inputs: entries(&json["inputs"]),
        outputs: entries(&json["outputs"]),
    }
}

/// kiln's float forward pass: normalisation, then `W x + b` and the activation per layer, in f32.
fn forward(mlp: &ImportedMlp, row: &[f32]) -> Vec<f32> {
    let mut x: Vec<f32> = match &mlp.normalization {
        InputNormalization::None => row.to_vec(),
        InputNormalization::Scale { scale } => row.iter().map(|v| v * scale).collect(),
        InputNormalization::Standardize { mean, inv_std } => row
            .iter()
            .zip(mean)
            .zip(inv_std)
            .map(|((v, m), s)| (v - m) * s)
            .collect(),
    };
    for layer in &mlp.layers {
        x = (0..layer.n_outputs)
            .map(|o| {
                let z = layer.weights[o * layer.n_inputs..(o + 1) * layer.n_inputs]
                    .iter()
                    .zip(&x)
                    .fold(0.0f32, |acc, (w, v)| acc + w * v)
                    + layer.bias[o];
                match layer.activation {
                    Activation::Relu => z.max(0.0),
                    Activation::LeakyRelu { alpha } => {
                        if z >= 0.0 {
                            z
                        } else {
                            alpha * z
                        }
                    }
                    Activation::Tanh => z.tanh(),
                    Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
                    Activation::Relu6 => z.clamp(0.0, 6.0),
                    Activation::Identity => z,
                }
            })
            .collect();
    }
    x
}

fn head(kind: &OutputKind, logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&v| (f64::from(v - max)).exp()).sum();
    let argmax = logits
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best });
    match kind {
        OutputKind::Logits => logits.iter().map(|&v| f64::from(v)).collect(),
        OutputKind::Probabilities => logits
            .iter()
            .map(|&v| f64::from(v - max).exp() / sum)
            .collect(),
        OutputKind::LogProbabilities => logits
            .iter()
            .map(|&v| f64::from(v - max) - sum.ln())
            .collect(),
        OutputKind::Label { classes } => {
            vec![classes.as_ref().map_or(argmax as f64, |c| c[argmax] as f64)]
        }
        OutputKind::Dropped => Vec::new(),
    }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Imports a fixture and checks the folded MLP and the original graph against
/// the exporter's outputs. Returns the imported MLP for further checks.
fn check_fixture(name: &str) -> ImportedMlp {
    let path = data_dir().join(format!("{name}.onnx"));
    let (mlp, loaded) = import::import_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let expected = expected(name);
    let (input_name, input_shape, input_data) = &expected.inputs[0];
    assert_eq!(input_name, &mlp.input.name);
    assert_eq!(&input_shape[1..], mlp.input.dims.as_slice());
    let n_rows = input_shape[0];
    let rows: Vec<f32> = input_data.iter().map(|&v| v as f32).collect();
    let logits: Vec<Vec<f32>> = rows
        .chunks_exact(mlp.n_inputs)
        .map(|row| forward(&mlp, row))
        .collect();
    let mut compared = 0;
    for (out_name, _, values) in &expected.outputs {
        let output = mlp
            .outputs
            .iter()
            .find(|o| &o.name == out_name)
            .unwrap_or_else(|| panic!("{name}: no output {out_name}"));
        let ours: Vec<f64> = logits.iter().flat_map(|l| head(&output.kind, l)).collect();
        let diff = max_diff(&ours, values);
        assert!(
            diff <= TOLERANCE,
            "{name} `{out_name}` ({:?}): max |diff| {diff:e}",
            output.kind
        );
        compared += 1;
    }
    assert_eq!(compared, expected.outputs.len());

    // The original graph through the float evaluator (without the dropped tail).
    let engine = import::engine_model(&loaded, &mlp);
    let graph = engine.graph.as_ref().unwrap();
    let feeds = HashMap::from([(
        input_name.clone(),
        Tensor::f32(input_shape.clone(), rows.clone()),
    )]);
    let results = eval::run_graph(graph, loaded.opset, &loaded.initializers, &feeds)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for (output, result) in graph.output.iter().zip(results) {
        let engine_name = output.name.as_deref().unwrap();
        // Compare the engine tensor with the expected output it stands for, unless the
        // dropped tail maps it (a label through its classes).
        let Some(imported) = mlp.outputs.iter().find(|o| {
            o.engine_tensor.as_deref() == Some(engine_name)
                && !matches!(o.kind, OutputKind::Label { classes: Some(_) })
        }) else {
            continue;
        };
        let (_, _, values) = expected
            .outputs
            .iter()
            .find(|(n, _, _)| n == &imported.name)
            .unwrap();
        let got: Vec<f64> = result
            .to_f64()
            .or_else(|| {
                result
                    .to_i64()
                    .map(|v| v.iter().map(|&x| x as f64).collect())
            })
            .unwrap();
        let diff = max_diff(&got, values);
        assert!(
            diff <= TOLERANCE,
            "{name} evaluator `{engine_name}`: {diff:e}"
        );
    }
    assert_eq!(n_rows, logits.len());
    mlp
}

#[test]
fn sklearn_mlp_classifier_without_zipmap() {
    let mlp = check_fixture("sklearn_mlp");
    assert_eq!(mlp.layers.len(), 3);
    assert_eq!(mlp.layers[0].activation, Activation::Relu);
    assert_eq!(mlp.layers[2].activation, Activation::Identity);
    assert!(matches!(mlp.normalization, InputNormalization::None));
    let kinds: Vec<&OutputKind> = mlp.outputs.iter().map(|o| &o.kind).collect();
    assert_eq!(
        kinds,
        [
            &OutputKind::Label { classes: None },
            &OutputKind::Probabilities
        ]
    );
    assert!(mlp
        .notices
        .iter()
        .any(|n| n.contains("ArrayFeatureExtractor")));
}

#[test]
fn sklearn_mlp_classifier_with_zipmap() {
    let mlp = check_fixture("sklearn_mlp_zipmap");
    assert!(mlp.notices.iter().any(|n| n.contains("ZipMap")));
    // The engine model ends before the ZipMap and the ArrayFeatureExtractor.
    assert!(mlp
        .outputs
        .iter()
        .all(|o| o.engine_tensor.as_ref() != Some(&o.name)));
    assert_eq!(import::engine_outputs(&mlp).len(), 2);
}

#[test]
fn keras_dense_through_tf2onnx() {
    let mlp = check_fixture("keras_dense");
    let activations: Vec<Activation> = mlp.layers.iter().map(|l| l.activation).collect();
    assert_eq!(
        activations,
        [Activation::Relu, Activation::Tanh, Activation::Identity]
    );
    // Rescaling(1/16, offset -0.5) becomes (x - 8) / 16.
    let InputNormalization::Standardize { mean, inv_std } = &mlp.normalization else {
        panic!("{:?}", mlp.normalization)
    };
    assert!(mean.iter().all(|&m| m == 8.0), "{mean:?}");
    assert!(inv_std.iter().all(|&s| s == 0.0625), "{inv_std:?}");
    assert_eq!(mlp.outputs[0].kind, OutputKind::Probabilities);
}

#[test]
fn torch_legacy_export_flatten_gemm_batchnorm_opset_13() {
    let mlp = check_fixture("torch_legacy");
    assert_eq!(mlp.opset, 13);
    assert_eq!(mlp.input.dims, [1, 8, 8]);
    assert_eq!(mlp.n_inputs, 64);
    let activations: Vec<Activation> = mlp.layers.iter().map(|l| l.activation).collect();
    assert_eq!(
        activations,
        [
            Activation::Relu,
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::Identity
        ]
    );
    // (x - mean) / std per pixel.
    assert!(matches!(
        mlp.normalization,
        InputNormalization::Standardize { .. }
    ));
    assert_eq!(mlp.outputs[0].kind, OutputKind::Logits);
}

#[test]
fn torch_dynamo_export_reshape_gemm_opset_18_with_external_data() {
    let path = data_dir().join("torch_dynamo.onnx");
    assert!(path.with_extension("onnx.data").exists());
    let mlp = check_fixture("torch_dynamo");
    assert_eq!(mlp.opset, 18);
    assert_eq!(mlp.input.dims, [8, 8]);
    let activations: Vec<Activation> = mlp.layers.iter().map(|l| l.activation).collect();
    assert_eq!(
        activations,
        [
            Activation::Relu6,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Identity
        ]
    );
    assert_eq!(
        mlp.normalization,
        InputNormalization::Scale { scale: 0.0625 }
    );
    assert_eq!(mlp.outputs[0].kind, OutputKind::LogProbabilities);
}
