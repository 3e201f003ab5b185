//! Value shapes, padding and the output-size formulas of `docs/layer-graph.md`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The shape of one value (one sample): height, width, channels.
///
/// A feature vector of `n` numbers is `[1, 1, n]`. The trainer stores a sample in CHW order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c }
    }

    /// A feature vector of `n` numbers: `[1, 1, n]`.
    pub const fn vector(n: usize) -> Self {
        Self { h: 1, w: 1, c: n }
    }

    /// The number of values: `h * w * c`.
    pub const fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a feature vector (`h == w == 1`).
    pub const fn is_vector(&self) -> bool {
        self.h == 1 && self.w == 1
    }

    /// The number of values of one channel: `h * w`.
    pub const fn plane(&self) -> usize {
        self.h * self.w
    }
}

/// `HxWxC`, e.g. `28x28x1`.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// How a convolution treats the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// TensorFlow's `SAME` (ONNX `SAME_UPPER`): `out = ceil(in / s)`, the extra padding at the end.
    Same,
    /// No padding: `out = (in - k) / s + 1` (floor), needs `in >= k`.
    Valid,
}

/// The output size and padding of one spatial dimension of a convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub output: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
}

/// The output size of one dimension, or `None` when a valid window does not fit
/// (`input < kernel`). `kernel` and `stride` must be at least 1.
pub fn output_extent(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Option<Extent> {
    debug_assert!(kernel > 0 && stride > 0);
    match padding {
        Padding::Valid => (input >= kernel).then(|| Extent {
            output: (input - kernel) / stride + 1,
            pad_begin: 0,
            pad_end: 0,
        }),
        Padding::Same => {
            let output = input.div_ceil(stride);
            let pad_total = ((output.max(1) - 1) * stride + kernel).saturating_sub(input);
            let pad_begin = pad_total / 2;
            Some(Extent {
                output,
                pad_begin,
                pad_end: pad_total - pad_begin,
            })
        }
    }
}

/// `order[i]` is the CHW index of the value the runtime holds at HWC index `i`: the runtime
/// keeps activations channels-last (as a Keras model's data is), the trainer and ONNX
/// channel-major.
pub fn hwc_order(shape: Shape) -> Vec<usize> {
    let (h, w, c) = (shape.h, shape.w, shape.c);
    let mut order = Vec::with_capacity(shape.len());
    for y in 0..h {
        for x in 0..w {
            for channel in 0..c {
                order.push((channel * h + y) * w + x);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_and_valid_follow_the_tensorflow_formulas() {
        let e = |i, k, s, p| output_extent(i, k, s, p).map(|e| (e.output, e.pad_begin, e.pad_end));
        assert_eq!(e(28, 3, 1, Padding::Same), Some((28, 1, 1)));
        assert_eq!(e(28, 3, 2, Padding::Same), Some((14, 0, 1)));
        assert_eq!(e(7, 4, 2, Padding::Same), Some((4, 1, 2)));
        assert_eq!(e(5, 2, 1, Padding::Same), Some((5, 0, 1)));
        assert_eq!(e(1, 3, 1, Padding::Same), Some((1, 1, 1)));
        assert_eq!(e(28, 5, 1, Padding::Valid), Some((24, 0, 0)));
        assert_eq!(e(28, 3, 2, Padding::Valid), Some((13, 0, 0)));
        assert_eq!(e(4, 5, 1, Padding::Valid), None);
        assert_eq!(Shape::new(28, 28, 1).len(), 784);
        assert_eq!(Shape::vector(10), Shape::new(1, 1, 10));
        assert_eq!(Shape::new(7, 5, 3).to_string(), "7x5x3");
    }
}
