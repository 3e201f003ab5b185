//! Element-wise activation functions and their derivatives.

use nalgebra::{DMatrix, RealField};
use serde::{Deserialize, Serialize};

/// An element-wise activation applied after a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activation {
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Tanh,
    Sigmoid,
    /// `min(max(x, 0), 6)`: PyTorch's ReLU6, ONNX `Clip(0, 6)`. Imported models only; the
    /// int8 model quantizes it as a ReLU whose calibrated output range ends at or below 6.
    Relu6,
    Identity,
}

impl Activation {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky-relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Relu6 => "relu6",
            Activation::Identity => "identity",
        }
    }

    fn scalar<T: RealField + Copy>(value: f32) -> T {
        nalgebra::convert(f64::from(value))
    }

    /// Applies the activation to `z` in place.
    pub fn forward_in_place<T: RealField + Copy>(self, z: &mut DMatrix<T>) {
        self.forward_slice(z.as_mut_slice());
    }

    /// Applies the activation to every value of `z` in place.
    pub fn forward_slice<T: RealField + Copy>(self, z: &mut [T]) {
        let zero = T::zero();
        let one = T::one();
        match self {
            Activation::Relu => z
                .iter_mut()
                .for_each(|v| *v = if *v > zero { *v } else { zero }),
            Activation::LeakyRelu { alpha } => {
                let alpha: T = Self::scalar(alpha);
                z.iter_mut()
                    .for_each(|v| *v = if *v >= zero { *v } else { alpha * *v });
            }
            Activation::Tanh => z.iter_mut().for_each(|v| *v = v.tanh()),
            // ONNX Sigmoid is 1 / (1 + exp(-x)); this is the same formula.
            Activation::Sigmoid => z.iter_mut().for_each(|v| *v = one / (one + (-*v).exp())),
            Activation::Relu6 => {
                let six: T = Self::scalar(6.0);
                z.iter_mut()
                    .for_each(|v| *v = if *v > zero { v.min(six) } else { zero });
            }
            Activation::Identity => {}
        }
    }

    /// Multiplies `grad` (dL/da) in place by da/dz, given the layer's
    /// pre-activation `z` and post-activation `a`.
    pub fn backward_in_place<T: RealField + Copy>(
        self,
        z: &DMatrix<T>,
        a: &DMatrix<T>,
        grad: &mut DMatrix<T>,
    ) {
        assert_eq!(
            z.shape(),
            grad.shape(),
            "z and the gradient differ in shape"
        );
        assert_eq!(
            a.shape(),
            grad.shape(),
            "a and the gradient differ in shape"
        );
        self.backward_slice(z.as_slice(), a.as_slice(), grad.as_mut_slice());
    }

    /// [`Activation::backward_in_place`] on matching slices of `z`, `a` and `grad`.
    pub fn backward_slice<T: RealField + Copy>(self, z: &[T], a: &[T], grad: &mut [T]) {
        let zero = T::zero();
        let one = T::one();
        match self {
            // Selects rather than conditional stores, so that the loops vectorise.
            Activation::Relu => {
                for (g, &zv) in grad.iter_mut().zip(z) {
                    *g = if zv <= zero { zero } else { *g };
                }
            }
            Activation::LeakyRelu { alpha } => {
                let alpha: T = Self::scalar(alpha);
                for (g, &zv) in grad.iter_mut().zip(z) {
                    *g = if zv < zero { *g * alpha } else { *g };
                }
            }
            Activation::Tanh => {
                for (g, &av) in grad.iter_mut().zip(a) {
                    *g *= one - av * av;
                }
            }
            Activation::Sigmoid => {
                for (g, &av) in grad.iter_mut().zip(a) {
                    *g *= av * (one - av);
                }
            }
            Activation::Relu6 => {
                let six: T = Self::scalar(6.0);
                for (g, &zv) in grad.iter_mut().zip(z) {
                    *g = if zv <= zero || zv >= six { zero } else { *g };
                }
            }
            Activation::Identity => {}
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Activation::LeakyRelu { alpha } => write!(f, "leaky-relu({alpha})"),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu6_clamps_to_0_and_6_and_passes_gradient_only_between() {
        let z = DMatrix::from_row_slice(1, 6, &[-1.0f64, 0.0, 0.5, 5.9, 6.0, 7.5]);
        let mut a = z.clone();
        Activation::Relu6.forward_in_place(&mut a);
        assert_eq!(a.as_slice(), &[0.0, 0.0, 0.5, 5.9, 6.0, 6.0]);
        let mut grad = DMatrix::from_element(1, 6, 2.0f64);
        Activation::Relu6.backward_in_place(&z, &a, &mut grad);
        assert_eq!(grad.as_slice(), &[0.0, 0.0, 2.0, 2.0, 0.0, 0.0]);
        assert_eq!(Activation::Relu6.to_string(), "relu6");
    }
}
