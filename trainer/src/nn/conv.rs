//! Convolutions: `Conv2d` (im2col and one GEMM per batch) and `DepthwiseConv2d` (one filter
//! per channel, direct loops), forward and backward.
//!
//! A batch is a matrix with one sample per column, each sample in CHW order. The functions
//! here compute the pre-activation `z`; the network applies the fused activation.

use super::shape::{output_extent, Padding, Shape};
use super::{Activation, DenseGradients};
use nalgebra::{DMatrix, DVector, RealField};
use ndarray::{s, ArrayView3, ArrayView4, ArrayViewMut3, ArrayViewMut4, Axis, Slice, Zip};

/// A 2-D convolution: `z[o][y][x] = b[o] + sum_{c, ky, kx} w[o][c][ky][kx] in[c][y s + ky - p][x s + kx - p]`,
/// padded taps reading 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d<T: RealField + Copy> {
    /// `out_channels x (in_channels * kh * kw)`, columns in `(c, ky, kx)` order: the ONNX Conv
    /// weight `[O][C][kH][kW]` read row-major.
    pub weights: DMatrix<T>,
    pub bias: DVector<T>,
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    pub padding: Padding,
    pub activation: Activation,
    pub input_shape: Shape,
    pub output_shape: Shape,
}

/// A depthwise convolution (multiplier 1): channel `c` of the output reads channel `c` of the
/// input only.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseConv2d<T: RealField + Copy> {
    /// `channels x (kh * kw)`, columns in `(ky, kx)` order: the ONNX Conv weight `[C][1][kH][kW]`
    /// (group = C) read row-major.
    pub weights: DMatrix<T>,
    pub bias: DVector<T>,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub activation: Activation,
    pub input_shape: Shape,
    pub output_shape: Shape,
}

/// The padding `[top, left]` and `[bottom, right]` of a window over `input`.
fn pads(input: Shape, kernel: [usize; 2], stride: [usize; 2], padding: Padding) -> [[usize; 2]; 2] {
    let extent = |dim: usize| {
        let size = if dim == 0 { input.h } else { input.w };
        output_extent(size, kernel[dim], stride[dim], padding)
            .map_or((0, 0), |e| (e.pad_begin, e.pad_end))
    };
    let (top, bottom) = extent(0);
    let (left, right) = extent(1);
    [[top, left], [bottom, right]]
}

macro_rules! window_methods {
    () => {
        /// The padding before the first row and column: `[top, left]`.
        pub fn pad_begin(&self) -> [usize; 2] {
            pads(self.input_shape, self.kernel, self.stride, self.padding)[0]
        }

        /// The padding after the last row and column: `[bottom, right]`.
        pub fn pad_end(&self) -> [usize; 2] {
            pads(self.input_shape, self.kernel, self.stride, self.padding)[1]
        }

        /// ONNX `pads`: `[top, left, bottom, right]`.
        pub fn onnx_pads(&self) -> [usize; 4] {
            let [[top, left], [bottom, right]] =
                pads(self.input_shape, self.kernel, self.stride, self.padding);
            [top, left, bottom, right]
        }

        pub fn n_parameters(&self) -> usize {
            self.weights.len() + self.bias.len()
        }

        fn window(&self) -> Window {
            Window::new(
                self.input_shape,
                self.output_shape,
                self.kernel,
                self.stride,
                self.pad_begin(),
            )
        }
    };
}

impl<T: RealField + Copy> Conv2d<T> {
    window_methods!();

    pub fn in_channels(&self) -> usize {
        self.input_shape.c
    }

    pub fn out_channels(&self) -> usize {
        self.output_shape.c
    }

    /// Multiply-accumulates per sample, every kernel tap counted (also the padded ones).
    pub fn macs(&self) -> usize {
        self.output_shape.len() * self.weights.ncols()
    }
}

impl<T: RealField + Copy> DepthwiseConv2d<T> {
    window_methods!();

    pub fn channels(&self) -> usize {
        self.input_shape.c
    }

    /// Multiply-accumulates per sample, every kernel tap counted (also the padded ones).
    pub fn macs(&self) -> usize {
        self.output_shape.len() * self.kernel[0] * self.kernel[1]
    }
}

/// The geometry of a sliding window over one channel plane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Window {
    pub fn new(
        input: Shape,
        output: Shape,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad_begin: [usize; 2],
    ) -> Self {
        Self {
            in_h: input.h,
            in_w: input.w,
            out_h: output.h,
            out_w: output.w,
            kh: kernel[0],
            kw: kernel[1],
            sh: stride[0],
            sw: stride[1],
            pad_top: pad_begin[0],
            pad_left: pad_begin[1],
        }
    }

    /// The output rows `oy` whose tap `ky` reads an input row (not padding).
    pub fn rows(&self, ky: usize) -> std::ops::Range<usize> {
        inside(self.out_h, self.sh, ky, self.pad_top, self.in_h)
    }

    /// The output columns `ox` whose tap `kx` reads an input column.
    pub fn cols(&self, kx: usize) -> std::ops::Range<usize> {
        inside(self.out_w, self.sw, kx, self.pad_left, self.in_w)
    }

    pub fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    pub fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }
}

/// The `o` in `0..out` with `0 <= o * stride + offset - pad < input`.
fn inside(
    out: usize,
    stride: usize,
    offset: usize,
    pad: usize,
    input: usize,
) -> std::ops::Range<usize> {
    let lo = if pad > offset {
        (pad - offset).div_ceil(stride)
    } else {
        0
    };
    let hi = if input + pad > offset {
        (input + pad - offset).div_ceil(stride)
    } else {
        0
    };
    let lo = lo.min(out);
    lo..hi.clamp(lo, out)
}

/// The input rows (or columns) tap `k` reads for the output range `out`, as an ndarray slice:
/// `out.start * stride + k - pad`, every `stride`-th, `out.len()` of them.
fn taps(out: &std::ops::Range<usize>, stride: usize, k: usize, pad: usize) -> Slice {
    let start = out.start * stride + k - pad;
    let end = start + (out.len() - 1) * stride + 1;
    Slice::new(start as isize, Some(end as isize), stride as isize)
}

/// The im2col matrix of a batch: `(batch * out_h * out_w) x (in_c * kh * kw)`, row
/// `b * out_plane + oy * out_w + ox` holding the patch of output pixel `(oy, ox)` of sample
/// `b`, column `(c * kh + ky) * kw + kx` the tap; padded taps are 0.
fn im2col<T: RealField + Copy>(window: &Window, in_c: usize, input: &DMatrix<T>) -> DMatrix<T> {
    let batch = input.ncols();
    let n = batch * window.out_plane();
    let mut columns = DMatrix::zeros(n, in_c * window.kh * window.kw);
    // One sample per column, CHW inside it: the storage is [batch][c][h][w].
    let input = ArrayView4::from_shape((batch, in_c, window.in_h, window.in_w), input.as_slice())
        .expect("the input holds batch x c x h x w values");
    for (k, column) in columns
        .as_mut_slice()
        .chunks_exact_mut(n.max(1))
        .enumerate()
    {
        let (c, ky, kx) = (
            k / (window.kh * window.kw),
            k / window.kw % window.kh,
            k % window.kw,
        );
        let (rows, cols) = (window.rows(ky), window.cols(kx));
        if rows.is_empty() || cols.is_empty() {
            continue;
        }
        let mut out = ArrayViewMut3::from_shape((batch, window.out_h, window.out_w), column)
            .expect("a column holds batch x out_h x out_w values");
        let source = input.slice(s![
            ..,
            c,
            taps(&rows, window.sh, ky, window.pad_top),
            taps(&cols, window.sw, kx, window.pad_left)
        ]);
        // Row by row: a stride-1 row is one contiguous copy.
        Zip::from(out.slice_mut(s![.., rows, cols]).lanes_mut(Axis(2)))
            .and(source.lanes(Axis(2)))
            .for_each(|mut to, from| match (to.as_slice_mut(), from.as_slice()) {
                (Some(to), Some(from)) => to.copy_from_slice(from),
                _ => to.assign(&from),
            });
    }
    columns
}

/// The adjoint of [`im2col`]: adds every patch value of `columns` back onto the input
/// position it was read from (`in_c * in_h * in_w` x `batch`).
fn col2im<T: RealField + Copy>(
    window: &Window,
    in_c: usize,
    batch: usize,
    columns: &DMatrix<T>,
) -> DMatrix<T> {
    let n = batch * window.out_plane();
    let mut input = DMatrix::zeros(in_c * window.in_plane(), batch);
    let mut grad = ArrayViewMut4::from_shape(
        (batch, in_c, window.in_h, window.in_w),
        input.as_mut_slice(),
    )
    .expect("the input holds batch x c x h x w values");
    for (k, column) in columns.as_slice().chunks_exact(n.max(1)).enumerate() {
        let (c, ky, kx) = (
            k / (window.kh * window.kw),
            k / window.kw % window.kh,
            k % window.kw,
        );
        let (rows, cols) = (window.rows(ky), window.cols(kx));
        if rows.is_empty() || cols.is_empty() {
            continue;
        }
        let patch = ArrayView3::from_shape((batch, window.out_h, window.out_w), column)
            .expect("a column holds batch x out_h x out_w values");
        let mut target = grad.slice_mut(s![
            ..,
            c,
            taps(&rows, window.sh, ky, window.pad_top),
            taps(&cols, window.sw, kx, window.pad_left)
        ]);
        Zip::from(target.lanes_mut(Axis(2)))
            .and(patch.slice(s![.., rows, cols]).lanes(Axis(2)))
            .for_each(|mut to, from| match (to.as_slice_mut(), from.as_slice()) {
                (Some(to), Some(from)) => to.iter_mut().zip(from).for_each(|(t, &f)| *t += f),
                _ => to += &from,
            });
    }
    input
}

/// The pre-activation of a batch and the im2col matrix that the backward pass reuses.
pub fn conv2d_forward<T: RealField + Copy>(
    layer: &Conv2d<T>,
    input: &DMatrix<T>,
) -> (DMatrix<T>, DMatrix<T>) {
    assert_eq!(
        input.nrows(),
        layer.input_shape.len(),
        "conv2d input length"
    );
    let window = layer.window();
    let batch = input.ncols();
    let columns = im2col(&window, layer.in_channels(), input);
    // (batch * out_plane) x out_c: one column per output channel, samples one after another.
    let z = &columns * layer.weights.transpose();
    let out_plane = window.out_plane();
    let n = batch * out_plane;
    let out_len = layer.output_shape.len();
    let mut output = DMatrix::zeros(out_len, batch);
    let src = z.as_slice();
    let dst = output.as_mut_slice();
    for b in 0..batch {
        for (o, &bias) in layer.bias.iter().enumerate() {
            let from = &src[o * n + b * out_plane..][..out_plane];
            let to = &mut dst[b * out_len + o * out_plane..][..out_plane];
            for (t, &f) in to.iter_mut().zip(from) {
                *t = f + bias;
            }
        }
    }
    (output, columns)
}

/// The gradients of the weights and bias from `z_grad` (dL/dz, `out_len x batch`) and the
/// forward pass's im2col matrix; with `input_grad`, also dL/d input (`in_len x batch`).
pub fn conv2d_backward<T: RealField + Copy>(
    layer: &Conv2d<T>,
    columns: &DMatrix<T>,
    z_grad: &DMatrix<T>,
    input_grad: bool,
) -> (DenseGradients<T>, Option<DMatrix<T>>) {
    let window = layer.window();
    let batch = z_grad.ncols();
    let out_plane = window.out_plane();
    let n = batch * out_plane;
    let out_c = layer.out_channels();
    let out_len = layer.output_shape.len();
    assert_eq!(z_grad.nrows(), out_len, "conv2d output gradient length");
    assert_eq!(columns.nrows(), n, "conv2d im2col rows");
    let src = z_grad.as_slice();
    let mut bias = DVector::zeros(out_c);
    for sample in src.chunks_exact(out_len) {
        for (o, plane) in sample.chunks_exact(out_plane).enumerate() {
            bias[o] += plane.iter().fold(T::zero(), |acc, &v| acc + v);
        }
    }
    // dL/dz as out_c x (batch * out_plane), the transpose of the forward GEMM's result, built
    // pixel by pixel (nalgebra's GEMM takes no transposed operand, and a strided view of the
    // other layout falls into its unchecked small-matrix path).
    let mut dz_t = DMatrix::zeros(out_c, n);
    for (b, sample) in src.chunks_exact(out_len).enumerate() {
        let dst = &mut dz_t.as_mut_slice()[b * out_plane * out_c..][..out_plane * out_c];
        for (p, pixel) in dst.chunks_exact_mut(out_c).enumerate() {
            for (o, v) in pixel.iter_mut().enumerate() {
                *v = sample[o * out_plane + p];
            }
        }
    }
    let weights = &dz_t * columns;
    let input = input_grad.then(|| {
        // The layout of the forward GEMM's result: (batch * out_plane) x out_c.
        let mut dz = DMatrix::zeros(n, out_c);
        let dst = dz.as_mut_slice();
        for b in 0..batch {
            for o in 0..out_c {
                dst[o * n + b * out_plane..][..out_plane]
                    .copy_from_slice(&src[b * out_len + o * out_plane..][..out_plane]);
            }
        }
        let column_grad = &dz * &layer.weights;
        col2im(&window, layer.in_channels(), batch, &column_grad)
    });
    (DenseGradients { weights, bias }, input)
}

/// The pre-activation of a batch.
pub fn depthwise_conv2d_forward<T: RealField + Copy>(
    layer: &DepthwiseConv2d<T>,
    input: &DMatrix<T>,
) -> DMatrix<T> {
    assert_eq!(
        input.nrows(),
        layer.input_shape.len(),
        "depthwise input length"
    );
    let window = layer.window();
    let batch = input.ncols();
    let channels = layer.channels();
    let (in_plane, out_plane) = (window.in_plane(), window.out_plane());
    let mut output = DMatrix::zeros(layer.output_shape.len(), batch);
    let src = input.as_slice();
    let dst = output.as_mut_slice();
    for b in 0..batch {
        for c in 0..channels {
            let plane = &src[(b * channels + c) * in_plane..][..in_plane];
            let out = &mut dst[(b * channels + c) * out_plane..][..out_plane];
            out.fill(layer.bias[c]);
            for ky in 0..window.kh {
                for kx in 0..window.kw {
                    let w = layer.weights[(c, ky * window.kw + kx)];
                    let cols = window.cols(kx);
                    if cols.is_empty() {
                        continue;
                    }
                    for oy in window.rows(ky) {
                        let iy = oy * window.sh + ky - window.pad_top;
                        let row = &plane[iy * window.in_w..(iy + 1) * window.in_w];
                        let out_row = &mut out[oy * window.out_w..(oy + 1) * window.out_w];
                        let ix0 = cols.start * window.sw + kx - window.pad_left;
                        for (i, ox) in cols.clone().enumerate() {
                            out_row[ox] += w * row[ix0 + i * window.sw];
                        }
                    }
                }
            }
        }
    }
    output
}

/// The gradients of the weights and bias from `z_grad` (dL/dz) and the layer's input; with
/// `input_grad`, also dL/d input.
pub fn depthwise_conv2d_backward<T: RealField + Copy>(
    layer: &DepthwiseConv2d<T>,
    input: &DMatrix<T>,
    z_grad: &DMatrix<T>,
    input_grad: bool,
) -> (DenseGradients<T>, Option<DMatrix<T>>) {
    let window = layer.window();
    let batch = input.ncols();
    let channels = layer.channels();
    let (in_plane, out_plane) = (window.in_plane(), window.out_plane());
    assert_eq!(
        z_grad.shape(),
        (layer.output_shape.len(), batch),
        "depthwise output gradient shape"
    );
    let mut weights = DMatrix::zeros(channels, window.kh * window.kw);
    let mut bias = DVector::zeros(channels);
    let mut input_gradient = input_grad.then(|| DMatrix::zeros(input.nrows(), batch));
    let src = input.as_slice();
    let grad = z_grad.as_slice();
    for b in 0..batch {
        for c in 0..channels {
            let plane = &src[(b * channels + c) * in_plane..][..in_plane];
            let g = &grad[(b * channels + c) * out_plane..][..out_plane];
            bias[c] += g.iter().fold(T::zero(), |acc, &v| acc + v);
            for ky in 0..window.kh {
                for kx in 0..window.kw {
                    let k = ky * window.kw + kx;
                    let cols = window.cols(kx);
                    if cols.is_empty() {
                        continue;
                    }
                    let w = layer.weights[(c, k)];
                    let mut dw = T::zero();
                    for oy in window.rows(ky) {
                        let iy = oy * window.sh + ky - window.pad_top;
                        let row = &plane[iy * window.in_w..(iy + 1) * window.in_w];
                        let g_row = &g[oy * window.out_w..(oy + 1) * window.out_w];
                        let ix0 = cols.start * window.sw + kx - window.pad_left;
                        for (i, ox) in cols.clone().enumerate() {
                            dw += g_row[ox] * row[ix0 + i * window.sw];
                        }
                        if let Some(dx) = input_gradient.as_mut() {
                            let dx_row = &mut dx.as_mut_slice()
                                [(b * channels + c) * in_plane + iy * window.in_w..][..window.in_w];
                            for (i, ox) in cols.clone().enumerate() {
                                dx_row[ix0 + i * window.sw] += w * g_row[ox];
                            }
                        }
                    }
                    weights[(c, k)] += dw;
                }
            }
        }
    }
    (DenseGradients { weights, bias }, input_gradient)
}
