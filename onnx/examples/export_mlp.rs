//! Exports a small fixed MLP and the outputs it should produce, for checking
//! the file with an independent runtime.
//!
//! ```text
//! cargo run -p kiln-onnx --example export_mlp -- OUT.onnx [OPSET] [none|scale|standardize] [--probabilities]
//! ```
//!
//! Writes `OUT.onnx` and `OUT.onnx.expected.json`, which holds an input batch
//! and the logits (and probabilities) computed directly in Rust, e.g. for:
//!
//! ```text
//! import json, numpy as np, onnx, onnxruntime as ort
//! onnx.checker.check_model(onnx.load("OUT.onnx"), full_check=True)
//! e = json.load(open("OUT.onnx.expected.json"))
//! out = ort.InferenceSession("OUT.onnx").run(None, {"input": np.array(e["input"], np.float32)})
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_onnx::builder::Producer;
use kiln_onnx::mlp::{
    mlp_to_model, write_model_atomic, Activation, DenseLayer, InputNormalization, MlpExportOptions,
};

/// Deterministic values in `[-amplitude, amplitude]`.
fn values(n: usize, seed: f32, amplitude: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 + 1.0) * seed).sin() * amplitude)
        .collect()
}

fn layer(n_inputs: usize, n_outputs: usize, activation: Activation, seed: f32) -> DenseLayer {
    DenseLayer {
        n_inputs,
        n_outputs,
        weights: values(n_inputs * n_outputs, seed, 0.9),
        bias: values(n_outputs, seed * 1.7, 0.3),
        activation,
    }
}

/// The forward pass in plain Rust, in the same order as the graph.
fn forward(layers: &[DenseLayer], normalization: &InputNormalization, row: &[f32]) -> Vec<f32> {
    let mut x: Vec<f32> = match normalization {
        InputNormalization::None => row.to_vec(),
        InputNormalization::Scale { scale } => row.iter().map(|v| v * scale).collect(),
        InputNormalization::Standardize { mean, inv_std } => row
            .iter()
            .zip(mean)
            .zip(inv_std)
            .map(|((v, m), s)| (v - m) * s)
            .collect(),
    };
    for layer in layers {
        x = (0..layer.n_outputs)
            .map(|o| {
                let w = &layer.weights[o * layer.n_inputs..(o + 1) * layer.n_inputs];
                let z = w.iter().zip(&x).fold(0.0f32, |acc, (w, x)| acc + w * x) + layer.bias[o];
                match layer.activation {
                    Activation::Relu => z.max(0.0),
                    Activation::LeakyRelu { alpha } => {
                        if z < 0.0 {
                            alpha * z
                        } else {
                            z
                        }
                    }
                    Activation::Tanh => z.tanh(),
                    Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
                    Activation::Identity => z,
                }
            })
            .collect();
    }
    x
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

fn json_rows(rows: &[Vec<f32>]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r.iter().map(|v| format!("{v:?}")).collect();
            format!("[{}]", cells.join(", "))
        })
        .collect();
    format!("[{}]", rows.join(", "))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_probabilities = args.iter().any(|a| a == "--probabilities");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(out) = positional.first().map(PathBuf::from) else {
        eprintln!("usage: export_mlp OUT.onnx [OPSET] [none|scale|standardize] [--probabilities]");
        return ExitCode::FAILURE;
    };
    let opset = match positional.get(1).map(|s| s.parse::<i64>()) {
        None => 17,
        Some(Ok(opset)) => opset,
        Some(Err(_)) => {
            eprintln!("OPSET must be an integer");
            return ExitCode::FAILURE;
        }
    };
    let n_features = 4;
    let normalization = match positional.get(2).map(|s| s.as_str()) {
        None | Some("standardize") => InputNormalization::Standardize {
            mean: values(n_features, 1.3, 1.0),
            inv_std: values(n_features, 2.9, 1.0)
                .iter()
                .map(|v| 0.5 + v.abs())
                .collect(),
        },
        Some("scale") => InputNormalization::Scale { scale: 0.25 },
        Some("none") => InputNormalization::None,
        Some(other) => {
            eprintln!("unknown normalization `{other}`");
            return ExitCode::FAILURE;
        }
    };

    // Every activation appears once, and the shapes are not square, so a
    // transposed weight layout could not go unnoticed.
    let layers = vec![
        layer(n_features, 6, Activation::Relu, 0.31),
        layer(6, 5, Activation::LeakyRelu { alpha: 0.1 }, 0.47),
        layer(5, 5, Activation::Tanh, 0.53),
        layer(5, 3, Activation::Sigmoid, 0.71),
        layer(3, 3, Activation::Identity, 0.83),
    ];
    let options = MlpExportOptions {
        opset,
        with_probabilities,
        producer: Producer {
            name: "kiln".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        doc_string: "kiln-onnx example model".to_owned(),
        metadata: vec![("source".to_owned(), "examples/export_mlp.rs".to_owned())],
    };
    let model = match mlp_to_model(&layers, &normalization, &options) {
        Ok(model) => model,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = write_model_atomic(&out, &model) {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }

    let batch: Vec<Vec<f32>> = (0..6)
        .map(|r| values(n_features, 0.7 + r as f32 * 0.61, 2.5))
        .collect();
    let logits: Vec<Vec<f32>> = batch
        .iter()
        .map(|row| forward(&layers, &normalization, row))
        .collect();
    let mut json = format!(
        "{{\"input\": {}, \"logits\": {}",
        json_rows(&batch),
        json_rows(&logits)
    );
    if with_probabilities {
        let probabilities: Vec<Vec<f32>> = logits.iter().map(|l| softmax(l)).collect();
        json.push_str(&format!(
            ", \"probabilities\": {}",
            json_rows(&probabilities)
        ));
    }
    json.push_str("}\n");
    let expected = PathBuf::from(format!("{}.expected.json", out.display()));
    if let Err(err) = std::fs::write(&expected, json) {
        eprintln!("error: cannot write {}: {err}", expected.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {} and {}", out.display(), expected.display());
    ExitCode::SUCCESS
}
