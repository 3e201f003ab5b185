//! Proves the semantics of the exported graphs without an ONNX runtime.
//!
//! A tiny interpreter (`common/mod.rs`) executes the decoded `ModelProto` node
//! by node, following the ONNX operator definitions (attributes, defaults,
//! broadcasting), and its outputs are compared with a direct computation of
//! the same MLP. A graph that applied the wrong layout, skipped the
//! normalisation or used the wrong activation would disagree.

mod common;

use common::{evaluate, export_options, Tensor};
use kiln_onnx::mlp::{
    decode_model, encode_model, mlp_to_model, Activation, DenseLayer, InputNormalization,
};
use kiln_onnx::proto::ModelProto;

/// Agreement demanded between the interpreter and the direct computation,
/// relative to the magnitude of the expected value.
const TOLERANCE: f32 = 1e-5;

/// The MLP computed directly from its parameters, one row at a time.
fn direct(
    layers: &[DenseLayer],
    normalization: &InputNormalization,
    row: &[f32],
) -> (Vec<f32>, Vec<f32>) {
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
                let dot = w.iter().zip(&x).fold(0.0f32, |acc, (w, x)| acc + w * x);
                let z = dot + layer.bias[o];
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
                    Activation::Relu6 => z.clamp(0.0, 6.0),
                    Activation::Identity => z,
                }
            })
            .collect();
    }
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let probabilities = exp.iter().map(|e| e / sum).collect();
    (x, probabilities)
}

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

fn close(actual: f32, expected: f32) -> bool {
    (actual - expected).abs() <= TOLERANCE * expected.abs().max(1.0)
}

/// Largest disagreement between the graph and the direct computation over a
/// batch, after checking output shapes. The model goes through the wire
/// format first so the encoding is covered too.
fn max_error(
    model: &ModelProto,
    layers: &[DenseLayer],
    normalization: &InputNormalization,
    batch: &[Vec<f32>],
    with_probabilities: bool,
) -> f32 {
    let model = decode_model(&encode_model(model)).unwrap();
    let n_features = layers[0].n_inputs;
    let n_out = layers.last().unwrap().n_outputs;
    let input = Tensor::f32(vec![batch.len(), n_features], batch.concat());
    let env = evaluate(&model, &input);
    let logits = &env["logits"];
    assert_eq!(logits.shape, [batch.len(), n_out]);
    let probabilities = env.get("probabilities");
    assert_eq!(probabilities.is_some(), with_probabilities);

    let mut worst = 0.0f32;
    for (r, row) in batch.iter().enumerate() {
        let (want_logits, want_probabilities) = direct(layers, normalization, row);
        let got = &logits.floats()[r * n_out..(r + 1) * n_out];
        let mut pairs: Vec<(f32, f32)> = got.iter().copied().zip(want_logits).collect();
        if let Some(p) = probabilities {
            assert_eq!(p.shape, [batch.len(), n_out]);
            let got = &p.floats()[r * n_out..(r + 1) * n_out];
            pairs.extend(got.iter().copied().zip(want_probabilities));
        }
        for (g, w) in pairs {
            worst = worst.max((g - w).abs() / w.abs().max(1.0));
        }
    }
    worst
}

/// Rows with both signs, so every activation's branches are exercised.
fn batch(n_features: usize) -> Vec<Vec<f32>> {
    (0..6)
        .map(|r| values(n_features, 0.7 + r as f32 * 0.61, 2.5))
        .collect()
}

fn assert_graph_matches(
    layers: &[DenseLayer],
    normalization: &InputNormalization,
    opset: i64,
    with_probabilities: bool,
) {
    let model = mlp_to_model(
        layers,
        normalization,
        &export_options(opset, with_probabilities),
    )
    .unwrap();
    let rows = batch(layers[0].n_inputs);
    let error = max_error(&model, layers, normalization, &rows, with_probabilities);
    assert!(
        close(error, 0.0),
        "graph and direct computation differ by {error}"
    );
}

fn standardize(n: usize) -> InputNormalization {
    InputNormalization::Standardize {
        mean: values(n, 1.3, 1.0),
        inv_std: values(n, 2.9, 1.0).iter().map(|v| 0.5 + v.abs()).collect(),
    }
}

#[test]
fn every_activation_with_standardization_and_probabilities() {
    let layers = vec![
        layer(4, 6, Activation::Relu, 0.31),
        layer(6, 5, Activation::LeakyRelu { alpha: 0.1 }, 0.47),
        layer(5, 5, Activation::Tanh, 0.53),
        layer(5, 3, Activation::Sigmoid, 0.71),
        layer(3, 3, Activation::Identity, 0.83),
    ];
    for opset in [13, 21] {
        assert_graph_matches(&layers, &standardize(4), opset, true);
    }
}

#[test]
fn scale_normalization_with_final_activation() {
    let layers = vec![
        layer(3, 4, Activation::Sigmoid, 0.29),
        layer(4, 2, Activation::LeakyRelu { alpha: 0.2 }, 0.61),
    ];
    let normalization = InputNormalization::Scale { scale: 1.0 / 16.0 };
    assert_graph_matches(&layers, &normalization, 17, true);
    assert_graph_matches(&layers, &normalization, 21, false);
}

#[test]
fn single_linear_layer_without_normalization() {
    let layers = vec![layer(5, 3, Activation::Identity, 0.37)];
    assert_graph_matches(&layers, &InputNormalization::None, 13, false);
    assert_graph_matches(&layers, &InputNormalization::None, 19, true);
}

#[test]
fn batch_of_one_row() {
    let layers = vec![
        layer(3, 4, Activation::Tanh, 0.41),
        layer(4, 2, Activation::Identity, 0.43),
    ];
    let model = mlp_to_model(&layers, &standardize(3), &export_options(13, true)).unwrap();
    let rows = vec![vec![0.25, -1.5, 3.0]];
    let error = max_error(&model, &layers, &standardize(3), &rows, true);
    assert!(close(error, 0.0), "differ by {error}");
}

/// The comparison must be able to fail: a graph whose parameters or
/// normalisation differ from the MLP's is caught.
#[test]
fn a_wrong_graph_is_detected() {
    let layers = vec![
        layer(3, 3, Activation::Relu, 0.31),
        layer(3, 2, Activation::Identity, 0.59),
    ];
    let normalization = standardize(3);
    let rows = batch(3);

    // Transposed weights keep every shape valid for a square layer.
    let mut transposed = layers.clone();
    let w = &layers[0].weights;
    transposed[0].weights = (0..9).map(|i| w[(i % 3) * 3 + i / 3]).collect();
    let model = mlp_to_model(&transposed, &normalization, &export_options(13, true)).unwrap();
    assert!(max_error(&model, &layers, &normalization, &rows, true) > 1e-3);

    // Dropping the normalisation from the graph.
    let model = mlp_to_model(
        &layers,
        &InputNormalization::None,
        &export_options(13, true),
    )
    .unwrap();
    assert!(max_error(&model, &layers, &normalization, &rows, true) > 1e-3);

    // A different activation.
    let mut tanh = layers.clone();
    tanh[0].activation = Activation::Tanh;
    let model = mlp_to_model(&tanh, &normalization, &export_options(13, true)).unwrap();
    assert!(max_error(&model, &layers, &normalization, &rows, true) > 1e-3);
}
