//! Pooling (max, average, global average) and flatten, forward and backward.
//!
//! Pooling windows are valid only (no padding); the network checks that the stride divides
//! `in - k` so that no row or column is dropped.

use super::conv::Window;
use super::shape::Shape;
use nalgebra::{DMatrix, RealField};

/// The geometry of a max or average pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    pub input_shape: Shape,
    pub output_shape: Shape,
}

impl Pool2d {
    fn window(&self) -> Window {
        Window::new(
            self.input_shape,
            self.output_shape,
            self.kernel,
            self.stride,
            [0, 0],
        )
    }
}

/// The mean of every channel: `[h, w, c]` -> `[1, 1, c]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalAvgPool {
    pub input_shape: Shape,
}

impl GlobalAvgPool {
    pub fn output_shape(&self) -> Shape {
        Shape::vector(self.input_shape.c)
    }
}

/// `[h, w, c]` -> `[1, 1, h w c]`; the values (CHW order) do not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flatten {
    pub input_shape: Shape,
}

impl Flatten {
    pub fn output_shape(&self) -> Shape {
        Shape::vector(self.input_shape.len())
    }
}

/// The maximum of every window, and for every output value (sample by sample, CHW) the index
/// of the input value it came from within its sample. The first maximum in row-major window
/// order wins ties.
pub fn max_pool2d_forward<T: RealField + Copy>(
    pool: &Pool2d,
    input: &DMatrix<T>,
) -> (DMatrix<T>, Vec<u32>) {
    assert_eq!(
        input.nrows(),
        pool.input_shape.len(),
        "max pool input length"
    );
    let window = pool.window();
    let batch = input.ncols();
    let channels = pool.input_shape.c;
    let (in_plane, out_plane) = (window.in_plane(), window.out_plane());
    let out_len = pool.output_shape.len();
    let mut output = DMatrix::zeros(out_len, batch);
    let mut argmax = vec![0u32; out_len * batch];
    let src = input.as_slice();
    let dst = output.as_mut_slice();
    for bc in 0..batch * channels {
        let base = (bc % channels) * in_plane;
        let plane = &src[bc * in_plane..][..in_plane];
        let out = &mut dst[bc * out_plane..][..out_plane];
        let winners = &mut argmax[bc * out_plane..][..out_plane];
        for oy in 0..window.out_h {
            let y0 = oy * window.sh;
            for ox in 0..window.out_w {
                let x0 = ox * window.sw;
                let mut best_idx = y0 * window.in_w + x0;
                let mut best = plane[best_idx];
                for ky in 0..window.kh {
                    let start = (y0 + ky) * window.in_w + x0;
                    // Selects rather than branches: which value wins is data, not a pattern.
                    for (kx, &v) in plane[start..start + window.kw].iter().enumerate() {
                        let wins = v > best;
                        best_idx = if wins { start + kx } else { best_idx };
                        best = if wins { v } else { best };
                    }
                }
                out[oy * window.out_w + ox] = best;
                winners[oy * window.out_w + ox] = (base + best_idx) as u32;
            }
        }
    }
    (output, argmax)
}

/// Routes every output gradient to the input value that won its window.
pub fn max_pool2d_backward<T: RealField + Copy>(
    pool: &Pool2d,
    argmax: &[u32],
    output_grad: &DMatrix<T>,
) -> DMatrix<T> {
    let batch = output_grad.ncols();
    let (in_len, out_len) = (pool.input_shape.len(), pool.output_shape.len());
    assert_eq!(output_grad.nrows(), out_len, "max pool gradient length");
    assert_eq!(argmax.len(), out_len * batch, "max pool argmax length");
    let mut input_grad = DMatrix::zeros(in_len, batch);
    let dst = input_grad.as_mut_slice();
    for (o, (&g, &idx)) in output_grad.as_slice().iter().zip(argmax).enumerate() {
        dst[(o / out_len) * in_len + idx as usize] += g;
    }
    input_grad
}

/// The mean of every window.
pub fn avg_pool2d_forward<T: RealField + Copy>(pool: &Pool2d, input: &DMatrix<T>) -> DMatrix<T> {
    assert_eq!(
        input.nrows(),
        pool.input_shape.len(),
        "avg pool input length"
    );
    let window = pool.window();
    let batch = input.ncols();
    let channels = pool.input_shape.c;
    let (in_plane, out_plane) = (window.in_plane(), window.out_plane());
    let scale = T::one() / nalgebra::convert::<f64, T>((window.kh * window.kw) as f64);
    let mut output = DMatrix::zeros(pool.output_shape.len(), batch);
    let src = input.as_slice();
    let dst = output.as_mut_slice();
    for bc in 0..batch * channels {
        let plane = &src[bc * in_plane..][..in_plane];
        let out = &mut dst[bc * out_plane..][..out_plane];
        for oy in 0..window.out_h {
            for ox in 0..window.out_w {
                let (y0, x0) = (oy * window.sh, ox * window.sw);
                let mut sum = T::zero();
                for ky in 0..window.kh {
                    let row = &plane[(y0 + ky) * window.in_w + x0..][..window.kw];
                    for &v in row {
                        sum += v;
                    }
                }
                out[oy * window.out_w + ox] = sum * scale;
            }
        }
    }
    output
}

/// Spreads every output gradient evenly over its window.
pub fn avg_pool2d_backward<T: RealField + Copy>(
    pool: &Pool2d,
    output_grad: &DMatrix<T>,
) -> DMatrix<T> {
    let window = pool.window();
    let batch = output_grad.ncols();
    let channels = pool.input_shape.c;
    let (in_plane, out_plane) = (window.in_plane(), window.out_plane());
    assert_eq!(
        output_grad.nrows(),
        pool.output_shape.len(),
        "avg pool gradient length"
    );
    let scale = T::one() / nalgebra::convert::<f64, T>((window.kh * window.kw) as f64);
    let mut input_grad = DMatrix::zeros(pool.input_shape.len(), batch);
    let src = output_grad.as_slice();
    let dst = input_grad.as_mut_slice();
    for bc in 0..batch * channels {
        let g = &src[bc * out_plane..][..out_plane];
        let plane = &mut dst[bc * in_plane..][..in_plane];
        for oy in 0..window.out_h {
            for ox in 0..window.out_w {
                let share = g[oy * window.out_w + ox] * scale;
                let (y0, x0) = (oy * window.sh, ox * window.sw);
                for ky in 0..window.kh {
                    for v in &mut plane[(y0 + ky) * window.in_w + x0..][..window.kw] {
                        *v += share;
                    }
                }
            }
        }
    }
    input_grad
}

/// The mean of every channel.
pub fn global_avg_pool_forward<T: RealField + Copy>(
    pool: &GlobalAvgPool,
    input: &DMatrix<T>,
) -> DMatrix<T> {
    let shape = pool.input_shape;
    assert_eq!(input.nrows(), shape.len(), "global avg pool input length");
    let plane = shape.plane();
    let scale = T::one() / nalgebra::convert::<f64, T>(plane as f64);
    let batch = input.ncols();
    DMatrix::from_iterator(
        shape.c,
        batch,
        input
            .as_slice()
            .chunks_exact(plane)
            .map(|values| values.iter().fold(T::zero(), |acc, &v| acc + v) * scale),
    )
}

/// Spreads every channel's gradient evenly over its plane.
pub fn global_avg_pool_backward<T: RealField + Copy>(
    pool: &GlobalAvgPool,
    output_grad: &DMatrix<T>,
) -> DMatrix<T> {
    let shape = pool.input_shape;
    let plane = shape.plane();
    let scale = T::one() / nalgebra::convert::<f64, T>(plane as f64);
    assert_eq!(
        output_grad.nrows(),
        shape.c,
        "global avg pool gradient length"
    );
    let mut input_grad = DMatrix::zeros(shape.len(), output_grad.ncols());
    for (values, &g) in input_grad
        .as_mut_slice()
        .chunks_exact_mut(plane)
        .zip(output_grad.as_slice())
    {
        values.fill(g * scale);
    }
    input_grad
}

/// Flatten moves no values: the trainer's CHW sample already is the flattened vector.
pub fn flatten_forward<T: RealField + Copy>(_flatten: &Flatten, input: &DMatrix<T>) -> DMatrix<T> {
    input.clone()
}

/// The gradient passes through unchanged.
pub fn flatten_backward<T: RealField + Copy>(
    _flatten: &Flatten,
    output_grad: &DMatrix<T>,
) -> DMatrix<T> {
    output_grad.clone()
}
