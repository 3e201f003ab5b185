//! Loss functions: their value and their gradient with respect to the logits.

use nalgebra::{DMatrix, RealField};
use serde::{Deserialize, Serialize};

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Softmax followed by the negative log-likelihood of the true class.
    CrossEntropy,
    /// Mean squared error over every output of every sample (PyTorch's MSELoss).
    MeanSquaredError,
}

/// What a batch is compared against: one column per sample.
#[derive(Debug, Clone, Copy)]
pub enum BatchTargets<'a> {
    Classes(&'a [u32]),
    /// Row-major, n_samples x n_outputs.
    Values(&'a [f32]),
}

impl Loss {
    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross-entropy",
            Loss::MeanSquaredError => "mse",
        }
    }

    /// Returns the mean loss over the batch and writes dL/dlogits into `grad`.
    /// `logits` has one column per sample.
    pub fn value_and_gradient<T: RealField + Copy>(
        self,
        logits: &DMatrix<T>,
        targets: BatchTargets<'_>,
        grad: &mut DMatrix<T>,
    ) -> T {
        let (n_outputs, n_samples) = logits.shape();
        grad.resize_mut(n_outputs, n_samples, T::zero());
        let batch: T = nalgebra::convert(n_samples as f64);
        let mut total = T::zero();
        match (self, targets) {
            (Loss::CrossEntropy, BatchTargets::Classes(labels)) => {
                for (col_idx, &label) in labels.iter().enumerate() {
                    let column = logits.column(col_idx);
                    let max = column.max();
                    let mut sum = T::zero();
                    for row_idx in 0..n_outputs {
                        let e = (column[row_idx] - max).exp();
                        grad[(row_idx, col_idx)] = e;
                        sum += e;
                    }
                    let label = label as usize;
                    // log p_label = z_label - max - ln(sum), which stays finite.
                    total -= column[label] - max - sum.ln();
                    for row_idx in 0..n_outputs {
                        let p = grad[(row_idx, col_idx)] / sum;
                        let indicator = if row_idx == label {
                            T::one()
                        } else {
                            T::zero()
                        };
                        grad[(row_idx, col_idx)] = (p - indicator) / batch;
                    }
                }
                total / batch
            }
            (Loss::MeanSquaredError, targets) => {
                let count: T = nalgebra::convert((n_samples * n_outputs) as f64);
                let two: T = nalgebra::convert(2.0);
                for col_idx in 0..n_samples {
                    for row_idx in 0..n_outputs {
                        let target: T = match targets {
                            BatchTargets::Classes(labels) => {
                                if labels[col_idx] as usize == row_idx {
                                    T::one()
                                } else {
                                    T::zero()
                                }
                            }
                            BatchTargets::Values(values) => {
                                nalgebra::convert(f64::from(values[col_idx * n_outputs + row_idx]))
                            }
                        };
                        let diff = logits[(row_idx, col_idx)] - target;
                        total += diff * diff;
                        grad[(row_idx, col_idx)] = two * diff / count;
                    }
                }
                total / count
            }
            (Loss::CrossEntropy, BatchTargets::Values(_)) => {
                // The trainer rejects this pairing before training starts.
                grad.fill(T::zero());
                T::zero()
            }
        }
    }
}
