//! Backpropagation checked against central finite differences, in f64, for
//! every activation and every loss.

#![allow(clippy::needless_range_loop)]

use super::*;

const ACTIVATIONS: [Activation; 5] = [
    Activation::Relu,
    Activation::LeakyRelu { alpha: 0.1 },
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Identity,
];

fn random_matrix(rng: &mut Rng, rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| rng.normal_f64())
}

fn loss_of(mlp: &Mlp<f64>, input: &DMatrix<f64>, targets: BatchTargets<'_>, loss: Loss) -> f64 {
    let mut scratch = DMatrix::zeros(0, 0);
    loss.value_and_gradient(&mlp.forward(input), targets, &mut scratch)
}

/// Returns the largest relative error between analytic and numeric gradients.
fn max_gradient_error(
    mlp: &Mlp<f64>,
    input: &DMatrix<f64>,
    targets: BatchTargets<'_>,
    loss: Loss,
) -> f64 {
    let (_, grads) = mlp.loss_and_gradients(input.clone(), targets, loss);
    let step = 1e-6;
    let mut worst: f64 = 0.0;
    let mut probe = mlp.clone();
    for layer_idx in 0..mlp.layers.len() {
        let n_weights = mlp.layers[layer_idx].weights.len();
        let n_bias = mlp.layers[layer_idx].bias.len();
        for param_idx in 0..n_weights + n_bias {
            let analytic = if param_idx < n_weights {
                grads[layer_idx].weights.as_slice()[param_idx]
            } else {
                grads[layer_idx].bias.as_slice()[param_idx - n_weights]
            };
            let original = {
                let layer = &probe.layers[layer_idx];
                if param_idx < n_weights {
                    layer.weights.as_slice()[param_idx]
                } else {
                    layer.bias.as_slice()[param_idx - n_weights]
                }
            };
            let set = |net: &mut Mlp<f64>, value: f64| {
                let layer = &mut net.layers[layer_idx];
                if param_idx < n_weights {
                    layer.weights.as_mut_slice()[param_idx] = value;
                } else {
                    layer.bias.as_mut_slice()[param_idx - n_weights] = value;
                }
            };
            set(&mut probe, original + step);
            let plus = loss_of(&probe, input, targets, loss);
            set(&mut probe, original - step);
            let minus = loss_of(&probe, input, targets, loss);
            set(&mut probe, original);
            let numeric = (plus - minus) / (2.0 * step);
            // A small absolute floor keeps round-off on near-zero gradients from dominating.
            let error = (analytic - numeric).abs() / (analytic.abs() + numeric.abs()).max(1e-4);
            worst = worst.max(error);
        }
    }
    worst
}

#[test]
fn backprop_matches_finite_differences_for_every_activation_and_loss() {
    let mut rng = Rng::new(42);
    let widths = [5, 7, 6, 4];
    let n_samples = 3;
    let labels = [0u32, 3, 1];
    let values: Vec<f32> = (0..n_samples * 4)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    for hidden in ACTIVATIONS {
        for output in ACTIVATIONS {
            let mlp = Mlp::<f64>::new(&widths, hidden, output, Init::Xavier, &mut rng);
            let mut mlp = mlp;
            // Non-zero biases exercise the bias path; offsets keep ReLU inputs away from the kink.
            for layer in &mut mlp.layers {
                layer.bias = DVector::from_fn(layer.bias.len(), |i, _| 0.05 * (i as f64 + 1.0));
            }
            let input = random_matrix(&mut rng, widths[0], n_samples);
            let cases: [(Loss, BatchTargets<'_>); 3] = [
                (Loss::CrossEntropy, BatchTargets::Classes(&labels)),
                (Loss::MeanSquaredError, BatchTargets::Values(&values)),
                (Loss::MeanSquaredError, BatchTargets::Classes(&labels)),
            ];
            for (loss, targets) in cases {
                let error = max_gradient_error(&mlp, &input, targets, loss);
                assert!(
                    error < 1e-5,
                    "hidden {hidden}, output {output}, loss {}: relative gradient error {error:e}",
                    loss.name()
                );
            }
        }
    }
}

#[test]
fn a_wrong_gradient_is_detected() {
    // Guards the checker itself: corrupting the analytic gradient must be noticed.
    let mut rng = Rng::new(1);
    let mlp = Mlp::<f64>::new(
        &[3, 4, 2],
        Activation::Tanh,
        Activation::Identity,
        Init::Xavier,
        &mut rng,
    );
    let input = random_matrix(&mut rng, 3, 2);
    let labels = [1u32, 0];
    let (_, mut grads) = mlp.loss_and_gradients(
        input.clone(),
        BatchTargets::Classes(&labels),
        Loss::CrossEntropy,
    );
    grads[0].weights[(0, 0)] += 0.1;
    let mut probe = mlp.clone();
    let original = probe.layers[0].weights[(0, 0)];
    probe.layers[0].weights[(0, 0)] = original + 1e-6;
    let plus = loss_of(
        &probe,
        &input,
        BatchTargets::Classes(&labels),
        Loss::CrossEntropy,
    );
    probe.layers[0].weights[(0, 0)] = original - 1e-6;
    let minus = loss_of(
        &probe,
        &input,
        BatchTargets::Classes(&labels),
        Loss::CrossEntropy,
    );
    let numeric = (plus - minus) / 2e-6;
    assert!((grads[0].weights[(0, 0)] - numeric).abs() > 0.05);
}

#[test]
fn cross_entropy_is_stable_for_huge_logits() {
    let logits = DMatrix::from_column_slice(3, 1, &[1000.0f64, -1000.0, 0.0]);
    let mut grad = DMatrix::zeros(0, 0);
    let value =
        Loss::CrossEntropy.value_and_gradient(&logits, BatchTargets::Classes(&[1]), &mut grad);
    assert!((value - 2000.0).abs() < 1e-9, "{value}");
    assert!(grad.iter().all(|g| g.is_finite()));
}

#[test]
fn initialisation_has_the_promised_spread() {
    let mut rng = Rng::new(9);
    let he = Mlp::<f64>::new(
        &[400, 300],
        Activation::Relu,
        Activation::Relu,
        Init::He,
        &mut rng,
    );
    let var = he.layers[0].weights.iter().map(|w| w * w).sum::<f64>() / 120_000.0;
    assert!(
        (var - 2.0 / 400.0).abs() < 0.05 * 2.0 / 400.0,
        "He variance {var}"
    );
    let xavier = Mlp::<f64>::new(
        &[400, 300],
        Activation::Tanh,
        Activation::Tanh,
        Init::Xavier,
        &mut rng,
    );
    let bound = (6.0f64 / 700.0).sqrt();
    assert!(xavier.layers[0].weights.iter().all(|w| w.abs() <= bound));
    let var = xavier.layers[0].weights.iter().map(|w| w * w).sum::<f64>() / 120_000.0;
    assert!(
        (var - 2.0 / 700.0).abs() < 0.05 * 2.0 / 700.0,
        "Xavier variance {var}"
    );
}
