//! Skip connections (`docs/layer-graph.md`): [`Tap`] hands an earlier value to the next layer,
//! [`Add`] sums the previous value and an earlier one. Neither has weights; together they
//! express residual blocks (ResNet's identity and projection shortcuts) on the layer list.

use super::shape::Shape;
use super::Activation;
use nalgebra::{DMatrix, RealField};

/// Value `value` again, for the next layer to read: its forward pass is a copy and its backward
/// pass adds the gradient to that value's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tap {
    pub value: usize,
    pub shape: Shape,
}

/// `activation(previous + value[from])`, both of shape `shape`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Add {
    pub from: usize,
    pub shape: Shape,
    pub activation: Activation,
}

/// The pre-activation sum of an [`Add`]: one sample per column, both inputs of one shape.
pub fn add_forward<T: RealField + Copy>(previous: &DMatrix<T>, other: &DMatrix<T>) -> DMatrix<T> {
    assert_eq!(previous.shape(), other.shape(), "add input shapes");
    previous + other
}
