//! The parameters of the convolution and pooling kernels (`docs/layer-graph.md`), borrowed
//! zero-copy from a model blob like [`FcParams`](super::FcParams).
//!
//! Activations are HWC: element `(y, x, ch)` of an `[h, w, c]` tensor is at `(y * w + x) * c + ch`.

use crate::Error;

/// The parameters of one `Conv2d` or `DepthwiseConv2d` layer.
///
/// - `input_shape`, `output_shape`: `[h, w, c]`; a depthwise layer has as many output channels
///   as input channels;
/// - `kernel`: `[kh, kw]`, `stride`: `[sh, sw]`, both at least 1;
/// - `pad`: `[top, left]`; output `(oy, ox)` reads input row `oy * sh + ky - top` and column
///   `ox * sw + kx - left`. A tap outside the input contributes nothing (bottom and right padding
///   follow from the output shape);
/// - `weights`: `i8` bytes, OHWI `[oc][kh][kw][c]` for `Conv2d`, `[kh][kw][c]` for
///   `DepthwiseConv2d`;
/// - `bias`, `multipliers`: one little-endian `i32` per output channel; `shifts`: one byte each.
///   The bias is NOT folded: `acc[o] = bias[o] + sum w * (x - input_zero_point)`;
/// - output `clamp(sat8(output_zero_point + rq(acc, M[o], t[o])), clamp_min, clamp_max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams<'a> {
    pub input_shape: [usize; 3],
    pub output_shape: [usize; 3],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub weights: &'a [u8],
    pub bias: &'a [u8],
    pub multipliers: &'a [u8],
    pub shifts: &'a [u8],
    pub input_zero_point: i8,
    pub output_zero_point: i8,
    pub clamp_min: i8,
    pub clamp_max: i8,
}

/// The parameters of one `MaxPool2d` or `AvgPool2d` layer (valid windows only).
///
/// `MaxPool2d`: the window's maximum, clamped to `[clamp_min, clamp_max]`; the zero points,
/// multiplier and shift are unused (its output has the input's scale and zero point).
/// `AvgPool2d`: `acc = sum (x - input_zero_point)` over the window, then
/// `clamp(sat8(output_zero_point + rq(acc, multiplier, shift)))`, with
/// `multiplier / 2^shift = s_in / (s_out kh kw)`. A global average pool is an average pool
/// whose kernel is the whole input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolParams {
    pub input_shape: [usize; 3],
    pub output_shape: [usize; 3],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub input_zero_point: i8,
    pub output_zero_point: i8,
    pub multiplier: i32,
    pub shift: u8,
    pub clamp_min: i8,
    pub clamp_max: i8,
}

/// `h * w * c`, if every dimension is at least 1 and the product fits.
pub(crate) fn volume([h, w, c]: [usize; 3]) -> Option<usize> {
    if h == 0 || w == 0 || c == 0 {
        return None;
    }
    h.checked_mul(w)?.checked_mul(c)
}

/// `(out - 1) * stride + kernel`: the input extent the windows span, if it fits.
fn span(out: usize, stride: usize, kernel: usize) -> Option<usize> {
    out.checked_sub(1)?.checked_mul(stride)?.checked_add(kernel)
}

fn ok(condition: bool) -> Result<(), Error> {
    if condition {
        Ok(())
    } else {
        Err(Error::KernelArguments)
    }
}

impl<'a> ConvParams<'a> {
    /// A layer's geometry alone, `(input, output)` shapes, kernel, stride and the padding
    /// before: no arrays, zero points 0, no clamp. What the workspace lengths read, which are
    /// pure functions of the shapes.
    pub fn shapes(
        (input_shape, output_shape): ([usize; 3], [usize; 3]),
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    ) -> Self {
        ConvParams {
            input_shape,
            output_shape,
            kernel,
            stride,
            pad,
            weights: &[],
            bias: &[],
            multipliers: &[],
            shifts: &[],
            input_zero_point: 0,
            output_zero_point: 0,
            clamp_min: i8::MIN,
            clamp_max: i8::MAX,
        }
    }

    /// The per-channel part as a dense layer's parameters: the optimized kernels reuse the
    /// dense output stage.
    pub(crate) fn fc(&self) -> super::FcParams<'a> {
        super::FcParams {
            weights: self.weights,
            bias: self.bias,
            multipliers: self.multipliers,
            shifts: self.shifts,
            output_zero_point: self.output_zero_point,
            clamp_min: self.clamp_min,
            clamp_max: self.clamp_max,
        }
    }

    /// Whether every channel's shift takes `rq_acc_high` (checked once per call).
    pub(crate) fn shifts_all_high(&self) -> bool {
        self.shifts.iter().all(|&t| crate::fixed::rq_acc_is_high(t))
    }

    /// Checks that the shapes are non-empty and match `input_len` and `output_len`, that kernel
    /// and stride are at least 1, that every index a kernel computes fits `usize`, that the
    /// slices fit the shapes (`depthwise` picks the weight layout) and that
    /// `clamp_min <= clamp_max`. Every kernel calls this first, so a wrong call is an error,
    /// never a panic or an out-of-bounds read.
    pub fn check(&self, depthwise: bool, input_len: usize, output_len: usize) -> Result<(), Error> {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let [oh, ow, oc] = self.output_shape;
        let c = self.input_shape[2];
        ok(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1)?;
        ok(volume(self.input_shape) == Some(input_len))?;
        ok(volume(self.output_shape) == Some(output_len))?;
        ok(!depthwise || oc == c)?;
        // every row and column index a window reaches fits usize
        ok(span(oh, sh, kh).is_some() && span(ow, sw, kw).is_some())?;
        let taps = kh.checked_mul(kw).and_then(|t| t.checked_mul(c));
        let n_weights = if depthwise {
            taps
        } else {
            taps.and_then(|t| t.checked_mul(oc))
        };
        let n_words = oc.checked_mul(4);
        ok(n_weights == Some(self.weights.len())
            && n_words == Some(self.bias.len())
            && n_words == Some(self.multipliers.len())
            && self.shifts.len() == oc
            && self.clamp_min <= self.clamp_max)
    }
}

impl PoolParams {
    /// Checks that the shapes are non-empty, match `input_len` and `output_len` and have the
    /// same channels, that kernel and stride are at least 1, that every window lies inside the
    /// input and that `clamp_min <= clamp_max`.
    pub fn check(&self, input_len: usize, output_len: usize) -> Result<(), Error> {
        let [h, w, c] = self.input_shape;
        let [oh, ow, oc] = self.output_shape;
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        ok(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1)?;
        ok(volume(self.input_shape) == Some(input_len))?;
        ok(volume(self.output_shape) == Some(output_len))?;
        ok(oc == c)?;
        ok(span(oh, sh, kh).is_some_and(|e| e <= h) && span(ow, sw, kw).is_some_and(|e| e <= w))?;
        ok(self.clamp_min <= self.clamp_max)
    }
}

/// The valid taps `lo..hi` of window position `o` along an axis of `len` (padding `pad`).
#[inline(always)]
pub(crate) fn valid_taps(
    o: usize,
    stride: usize,
    pad: usize,
    k: usize,
    len: usize,
) -> (usize, usize) {
    let start = o.wrapping_mul(stride); // fits: `check` proved the span fits usize
    let lo = pad.saturating_sub(start).min(k);
    let hi = len.saturating_add(pad).saturating_sub(start).min(k).max(lo);
    (lo, hi)
}
