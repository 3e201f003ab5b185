//! The multilayer perceptron: forward and backward passes with nalgebra.
//!
//! Activations are stored one sample per column, so a row-major batch of
//! samples maps onto a column-major matrix without a transpose. The network is
//! generic over the scalar so gradients can be checked in f64; training uses f32.

pub mod activation;
pub mod conv;
pub mod layer_spec;
pub mod loss;
pub mod network;
pub mod optim;
pub mod parallel;
pub mod pool;
pub mod residual;
pub mod schedule;
pub mod shape;
pub mod sparse;

pub use activation::Activation;
pub use loss::{BatchTargets, Loss};

use crate::rng::Rng;
use nalgebra::{DMatrix, DVector, RealField};
use serde::{Deserialize, Serialize};

/// Weight initialisation schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// He (Kaiming) normal: N(0, 2 / fan_in). Suited to ReLU-like units.
    He,
    /// Xavier (Glorot) uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
    Xavier,
}

/// One dense layer: `a = activation(W x + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense<T: RealField + Copy> {
    /// n_outputs x n_inputs, the PyTorch `nn.Linear` and ONNX Gemm(transB=1) layout.
    pub weights: DMatrix<T>,
    pub bias: DVector<T>,
    pub activation: Activation,
}

impl<T: RealField + Copy> Dense<T> {
    pub fn n_inputs(&self) -> usize {
        self.weights.ncols()
    }

    pub fn n_outputs(&self) -> usize {
        self.weights.nrows()
    }

    /// `W x + b` for every column of `input`.
    pub fn linear_forward(&self, input: &DMatrix<T>) -> DMatrix<T> {
        let mut z = &self.weights * input;
        for mut column in z.column_iter_mut() {
            column += &self.bias;
        }
        z
    }
}

/// Parameter gradients of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseGradients<T: RealField + Copy> {
    pub weights: DMatrix<T>,
    pub bias: DVector<T>,
}

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Clone)]
pub struct ForwardTrace<T: RealField + Copy> {
    /// Pre-activations of every layer.
    pub pre_activations: Vec<DMatrix<T>>,
    /// The input followed by the output of every layer.
    pub activations: Vec<DMatrix<T>>,
}

impl<T: RealField + Copy> ForwardTrace<T> {
    pub fn output(&self) -> &DMatrix<T> {
        self.activations
            .last()
            .expect("a trace holds at least the input")
    }

    /// The input matrix, handed back so its storage can hold the next batch.
    pub fn into_input(mut self) -> DMatrix<T> {
        self.activations.swap_remove(0)
    }
}

/// A stack of dense layers.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp<T: RealField + Copy> {
    pub layers: Vec<Dense<T>>,
}

impl<T: RealField + Copy> Mlp<T> {
    /// A freshly initialised network with the given layer widths
    /// (`widths[0]` inputs, `widths.last()` outputs). Hidden layers use
    /// `hidden_activation`, the last one `output_activation`. Biases start at 0.
    pub fn new(
        widths: &[usize],
        hidden_activation: Activation,
        output_activation: Activation,
        init: Init,
        rng: &mut Rng,
    ) -> Self {
        assert!(
            widths.len() >= 2,
            "an MLP needs an input and an output width"
        );
        let n_layers = widths.len() - 1;
        let layers = (0..n_layers)
            .map(|layer_idx| {
                let (fan_in, fan_out) = (widths[layer_idx], widths[layer_idx + 1]);
                // Row-major draws make the weights independent of nalgebra's storage order.
                let mut values = Vec::with_capacity(fan_in * fan_out);
                for _ in 0..fan_in * fan_out {
                    let v = match init {
                        Init::He => rng.normal_f64() * (2.0 / fan_in as f64).sqrt(),
                        Init::Xavier => {
                            let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
                            (2.0 * rng.uniform_f64() - 1.0) * bound
                        }
                    };
                    values.push(nalgebra::convert::<f64, T>(v));
                }
                let activation = if layer_idx + 1 == n_layers {
                    output_activation
                } else {
                    hidden_activation
                };
                Dense {
                    weights: DMatrix::from_row_slice(fan_out, fan_in, &values),
                    bias: DVector::zeros(fan_out),
                    activation,
                }
            })
            .collect();
        Self { layers }
    }

    pub fn n_inputs(&self) -> usize {
        self.layers[0].n_inputs()
    }

    pub fn n_outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].n_outputs()
    }

    /// Layer widths, input first.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths = vec![self.n_inputs()];
        widths.extend(self.layers.iter().map(Dense::n_outputs));
        widths
    }

    pub fn n_parameters(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weights.len() + l.bias.len())
            .sum()
    }

    /// The output for every column of `input`, without keeping intermediates.
    pub fn forward(&self, input: &DMatrix<T>) -> DMatrix<T> {
        let mut current = None::<DMatrix<T>>;
        for layer in &self.layers {
            let mut z = layer.linear_forward(current.as_ref().unwrap_or(input));
            layer.activation.forward_in_place(&mut z);
            current = Some(z);
        }
        current.unwrap_or_else(|| input.clone())
    }

    /// The forward pass, keeping what `backward` needs.
    pub fn forward_trace(&self, input: DMatrix<T>) -> ForwardTrace<T> {
        let mut pre_activations = Vec::with_capacity(self.layers.len());
        let mut activations = Vec::with_capacity(self.layers.len() + 1);
        activations.push(input);
        for layer in &self.layers {
            let z = layer.linear_forward(activations.last().expect("input is present"));
            let mut a = z.clone();
            layer.activation.forward_in_place(&mut a);
            pre_activations.push(z);
            activations.push(a);
        }
        ForwardTrace {
            pre_activations,
            activations,
        }
    }

    /// Backpropagates `output_grad` (dL/d output, one column per sample)
    /// through the network and returns the gradients of every layer.
    ///
    /// This is the plain reference the finite-difference tests check; training runs the
    /// same computation through [`parallel::TrainingStep`], whose tests compare it with this.
    pub fn backward(
        &self,
        trace: &ForwardTrace<T>,
        output_grad: DMatrix<T>,
    ) -> Vec<DenseGradients<T>> {
        let mut grads = Vec::with_capacity(self.layers.len());
        let mut grad = output_grad;
        for (layer_idx, layer) in self.layers.iter().enumerate().rev() {
            let z = &trace.pre_activations[layer_idx];
            let a = &trace.activations[layer_idx + 1];
            layer.activation.backward_in_place(z, a, &mut grad);
            let input = &trace.activations[layer_idx];
            grads.push(DenseGradients {
                weights: &grad * input.transpose(),
                bias: grad.column_sum(),
            });
            // The input layer needs no gradient with respect to its input.
            if layer_idx > 0 {
                grad = layer.weights.tr_mul(&grad);
            }
        }
        grads.reverse();
        grads
    }

    /// The mean loss of a batch and the gradients of every layer.
    pub fn loss_and_gradients(
        &self,
        input: DMatrix<T>,
        targets: BatchTargets<'_>,
        loss: Loss,
    ) -> (T, Vec<DenseGradients<T>>) {
        let trace = self.forward_trace(input);
        let mut output_grad = DMatrix::zeros(0, 0);
        let value = loss.value_and_gradient(trace.output(), targets, &mut output_grad);
        let grads = self.backward(&trace, output_grad);
        (value, grads)
    }

    /// Whether every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.layers.iter().all(|layer| {
            layer
                .weights
                .iter()
                .chain(layer.bias.iter())
                .all(|v| v.is_finite())
        })
    }
}

/// Builds the column-per-sample input matrix from row-major rows.
pub fn batch_matrix<T: RealField + Copy>(rows: &[f32], n_features: usize) -> DMatrix<T> {
    let n_samples = rows.len() / n_features;
    DMatrix::from_iterator(
        n_features,
        n_samples,
        rows.iter().map(|&v| nalgebra::convert(f64::from(v))),
    )
}

#[cfg(test)]
mod gradient_tests;
#[cfg(test)]
mod network_tests;
