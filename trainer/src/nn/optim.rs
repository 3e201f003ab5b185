//! Optimisers: SGD with (Nesterov) momentum, Adam and AdamW.
//!
//! The update rules follow PyTorch's `torch.optim` so that hyperparameters carry
//! over: SGD and Adam add `weight_decay * w` to the gradient (L2), AdamW decays
//! the weights directly. Weight decay applies to weights, not to biases.

use super::{Dense, DenseGradients};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// The optimiser and its hyperparameters (the learning rate comes from the schedule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    Sgd {
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
    },
    AdamW {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd { .. } => "sgd",
            OptimizerConfig::Adam { .. } => "adam",
            OptimizerConfig::AdamW { .. } => "adamw",
        }
    }
}

/// Per-parameter optimiser memory, flattened row-major like the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamState {
    /// Momentum buffer (SGD) or first moment (Adam).
    pub first: Vec<f32>,
    /// Second moment (Adam only; empty for SGD).
    pub second: Vec<f32>,
}

/// The optimiser's state; it is saved with the model so `--resume` continues exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    pub config: OptimizerConfig,
    /// Number of updates applied so far.
    pub step: u64,
    /// Two entries per layer: weights, then bias.
    pub params: Vec<ParamState>,
}

impl OptimizerState {
    pub fn new(config: OptimizerConfig, layers: &[Dense<f32>]) -> Self {
        Self::for_tensors(
            config,
            layers
                .iter()
                .map(|layer| (layer.weights.len(), layer.bias.len())),
        )
    }

    /// A fresh state for trainable layers with these `(weights, biases)` counts, in order
    /// (every layer of a graph that has parameters: dense and convolution layers alike).
    fn for_tensors(
        config: OptimizerConfig,
        sizes: impl IntoIterator<Item = (usize, usize)>,
    ) -> Self {
        let uses_second = !matches!(config, OptimizerConfig::Sgd { .. });
        let params = sizes
            .into_iter()
            .flat_map(|(n_weights, n_biases)| [n_weights, n_biases])
            .map(|len| ParamState {
                first: vec![0.0; len],
                second: if uses_second {
                    vec![0.0; len]
                } else {
                    Vec::new()
                },
            })
            .collect();
        Self {
            config,
            step: 0,
            params,
        }
    }

    /// Whether this state fits the given layers (used when resuming).
    pub fn matches(&self, layers: &[Dense<f32>]) -> bool {
        self.matches_tensors(
            layers
                .iter()
                .map(|layer| (layer.weights.len(), layer.bias.len())),
        )
    }

    /// Whether this state fits trainable layers with these `(weights, biases)` counts.
    fn matches_tensors(&self, sizes: impl IntoIterator<Item = (usize, usize)>) -> bool {
        let mut n_tensors = 0;
        for (n_weights, n_biases) in sizes {
            let fits = |idx: usize, len: usize| {
                self.params
                    .get(idx)
                    .is_some_and(|state| state.first.len() == len)
            };
            if !(fits(n_tensors, n_weights) && fits(n_tensors + 1, n_biases)) {
                return false;
            }
            n_tensors += 2;
        }
        n_tensors == self.params.len()
    }

    /// Applies one update with learning rate `lr`.
    pub fn step(&mut self, layers: &mut [Dense<f32>], grads: &[DenseGradients<f32>], lr: f32) {
        self.step_tensors(
            layers
                .iter_mut()
                .map(|layer| (&mut layer.weights, &mut layer.bias)),
            grads,
            lr,
        );
    }

    /// Applies one update to the `(weights, bias)` of every trainable layer, in order, with
    /// one gradient per layer.
    fn step_tensors<'p>(
        &mut self,
        tensors: impl IntoIterator<Item = (&'p mut DMatrix<f32>, &'p mut DVector<f32>)>,
        grads: &[DenseGradients<f32>],
        lr: f32,
    ) {
        self.step += 1;
        let rule = Rule::new(self.config, self.step, lr);
        for (layer_idx, ((weights, bias), grad)) in tensors.into_iter().zip(grads).enumerate() {
            let (weight_state, bias_state) = {
                let (head, tail) = self.params.split_at_mut(2 * layer_idx + 1);
                (&mut head[2 * layer_idx], &mut tail[0])
            };
            // nalgebra stores column-major; the state only needs a fixed order, so
            // parameters and gradients are walked in the same storage order.
            update(
                &rule,
                true,
                weights.as_mut_slice(),
                grad.weights.as_slice(),
                &mut weight_state.first,
                &mut weight_state.second,
            );
            update(
                &rule,
                false,
                bias.as_mut_slice(),
                grad.bias.as_slice(),
                &mut bias_state.first,
                &mut bias_state.second,
            );
        }
    }
}

impl OptimizerState {
    /// The state for any list of trainable layers' weights and biases, e.g.
    /// [`Network::params`](super::network::Network::params): two entries per layer, weights
    /// then bias, as [`OptimizerState::new`] makes for dense layers.
    pub fn for_params(config: OptimizerConfig, params: &[(&DMatrix<f32>, &DVector<f32>)]) -> Self {
        Self::for_tensors(config, params.iter().map(|(w, b)| (w.len(), b.len())))
    }

    /// Whether this state fits the given weights and biases (used when resuming).
    pub fn matches_params(&self, params: &[(&DMatrix<f32>, &DVector<f32>)]) -> bool {
        self.matches_tensors(params.iter().map(|(w, b)| (w.len(), b.len())))
    }

    /// [`OptimizerState::step`] on any list of weights and biases, e.g.
    /// [`Network::params_mut`](super::network::Network::params_mut); the same update, bit
    /// for bit, as `step` on dense layers with the same parameters.
    pub fn step_params(
        &mut self,
        params: Vec<(&mut DMatrix<f32>, &mut DVector<f32>)>,
        grads: &[DenseGradients<f32>],
        lr: f32,
    ) {
        assert_eq!(
            params.len(),
            grads.len(),
            "one gradient per trainable layer"
        );
        self.step_tensors(params, grads, lr);
    }
}

impl OptimizerConfig {
    /// Whether a zero gradient leaves a parameter and its state unchanged (plain SGD: no
    /// momentum, no weight decay), so that updates with zero gradients can be skipped.
    pub fn zero_gradient_is_no_op(&self) -> bool {
        matches!(
            *self,
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
                ..
            } if momentum == 0.0 && weight_decay == 0.0
        )
    }
}

/// The update rule of one optimiser step: the configuration with the step's learning rate
/// and, for Adam, its bias corrections, computed once for all parameters.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    config: OptimizerConfig,
    lr: f32,
    /// Adam: lr / (1 - beta1^step).
    step_size: f32,
    /// Adam: sqrt(1 - beta2^step).
    bias2_sqrt: f32,
}

impl Rule {
    /// The rule of step `step` (1 for the first update) with learning rate `lr`.
    pub fn new(config: OptimizerConfig, step: u64, lr: f32) -> Self {
        let (step_size, bias2_sqrt) = match config {
            OptimizerConfig::Sgd { .. } => (lr, 1.0),
            OptimizerConfig::Adam { beta1, beta2, .. }
            | OptimizerConfig::AdamW { beta1, beta2, .. } => {
                let exponent = i32::try_from(step).unwrap_or(i32::MAX);
                let bias1 = 1.0 - beta1.powi(exponent);
                let bias2 = 1.0 - beta2.powi(exponent);
                (lr / bias1, bias2.sqrt())
            }
        };
        Self {
            config,
            lr,
            step_size,
            bias2_sqrt,
        }
    }

    pub fn config(&self) -> OptimizerConfig {
        self.config
    }
}

/// One update of `params` by `rule`; `first` and `second` are their slices of the
/// optimiser state (`second` is empty for SGD); `decays` says whether weight decay applies
/// (weights, not biases). Every parameter is updated on its own, so updating a slice at a
/// time gives the bits of updating them all at once.
///
/// The loops are built for AVX2 too, chosen at run time: its divisions and square roots are
/// correctly rounded like SSE2's, and nothing is fused, so both give the same bits.
pub fn update(
    rule: &Rule,
    decays: bool,
    params: &mut [f32],
    grads: &[f32],
    first: &mut [f32],
    second: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe {
            update_avx2(rule, decays, params, grads, first, second);
        }
        return;
    }
    update_body(rule, decays, params, grads, first, second);
}

/// [`update`] compiled for AVX2 (no FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_avx2(
    rule: &Rule,
    decays: bool,
    params: &mut [f32],
    grads: &[f32],
    first: &mut [f32],
    second: &mut [f32],
) {
    update_body(rule, decays, params, grads, first, second);
}

#[inline(always)]
fn update_body(
    rule: &Rule,
    decays: bool,
    params: &mut [f32],
    grads: &[f32],
    first: &mut [f32],
    second: &mut [f32],
) {
    let lr = rule.lr;
    match rule.config {
        OptimizerConfig::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } => {
            let weight_decay = if decays { weight_decay } else { 0.0 };
            for ((p, &g), v) in params.iter_mut().zip(grads).zip(first.iter_mut()) {
                let g = g + weight_decay * *p;
                if momentum == 0.0 {
                    *p -= lr * g;
                } else {
                    *v = momentum * *v + g;
                    let direction = if nesterov { g + momentum * *v } else { *v };
                    *p -= lr * direction;
                }
            }
        }
        OptimizerConfig::Adam {
            beta1,
            beta2,
            epsilon,
            weight_decay,
        }
        | OptimizerConfig::AdamW {
            beta1,
            beta2,
            epsilon,
            weight_decay,
        } => {
            let decoupled = matches!(rule.config, OptimizerConfig::AdamW { .. });
            let weight_decay = if decays { weight_decay } else { 0.0 };
            // PyTorch's arrangement: denom = sqrt(v) / sqrt(1 - beta2^t) + eps,
            // p -= lr / (1 - beta1^t) * (m / denom).
            let (step_size, bias2_sqrt) = (rule.step_size, rule.bias2_sqrt);
            for (((p, &g), m), v) in params
                .iter_mut()
                .zip(grads)
                .zip(first.iter_mut())
                .zip(second.iter_mut())
            {
                let g = if decoupled {
                    *p -= lr * weight_decay * *p;
                    g
                } else {
                    g + weight_decay * *p
                };
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                let denom = v.sqrt() / bias2_sqrt + epsilon;
                *p -= step_size * (*m / denom);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{DMatrix, DVector};

    fn one_param_layer(value: f32) -> Vec<Dense<f32>> {
        vec![Dense {
            weights: DMatrix::from_element(1, 1, value),
            bias: DVector::from_element(1, 0.0),
            activation: crate::nn::Activation::Identity,
        }]
    }

    /// Minimises f(w) = (w - 3)^2 and checks each optimiser converges.
    fn minimise(config: OptimizerConfig, lr: f32, steps: usize) -> f32 {
        let mut layers = one_param_layer(0.0);
        let mut state = OptimizerState::new(config, &layers);
        for _ in 0..steps {
            let w = layers[0].weights[(0, 0)];
            let grads = vec![DenseGradients {
                weights: DMatrix::from_element(1, 1, 2.0 * (w - 3.0)),
                bias: DVector::from_element(1, 0.0),
            }];
            state.step(&mut layers, &grads, lr);
        }
        layers[0].weights[(0, 0)]
    }

    #[test]
    fn every_optimizer_minimises_a_quadratic() {
        let configs = [
            OptimizerConfig::Sgd {
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
            },
            OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.0,
            },
            OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.0,
            },
            OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.0,
            },
        ];
        for config in configs {
            let lr = if matches!(config, OptimizerConfig::Sgd { .. }) {
                0.05
            } else {
                0.1
            };
            let w = minimise(config, lr, 500);
            assert!((w - 3.0).abs() < 1e-2, "{config:?} ended at {w}");
        }
    }

    #[test]
    fn first_steps_match_the_pytorch_formulas() {
        // Plain SGD: w1 = w0 - lr * g.
        let mut layers = one_param_layer(1.0);
        let grads = vec![DenseGradients {
            weights: DMatrix::from_element(1, 1, 0.5),
            bias: DVector::zeros(1),
        }];
        let mut sgd = OptimizerState::new(
            OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.1,
            },
            &layers,
        );
        sgd.step(&mut layers, &grads, 0.1);
        // g = 0.5 + 0.1 * 1 = 0.6; v = 0.6; nesterov direction = 0.6 + 0.9 * 0.6 = 1.14.
        assert!((layers[0].weights[(0, 0)] - (1.0 - 0.1 * 1.14)).abs() < 1e-7);

        // Adam's first step moves every parameter by about lr * sign(g).
        let mut layers = one_param_layer(1.0);
        let mut adam = OptimizerState::new(
            OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.0,
            },
            &layers,
        );
        adam.step(&mut layers, &grads, 0.01);
        assert!((layers[0].weights[(0, 0)] - 0.99).abs() < 1e-6);

        // AdamW shrinks the weight by lr * wd * w before the Adam step.
        let mut layers = one_param_layer(1.0);
        let mut adamw = OptimizerState::new(
            OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.5,
            },
            &layers,
        );
        adamw.step(&mut layers, &grads, 0.01);
        assert!((layers[0].weights[(0, 0)] - (1.0 - 0.005 - 0.01)).abs() < 1e-6);
        // Biases are not decayed.
        assert_eq!(layers[0].bias[0], 0.0);
    }
}
