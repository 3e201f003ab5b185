//! A validated model borrowed from its blob, and inference with caller-provided buffers.

use core::fmt;

use crate::blob::INPUT_ENTRY_LEN;
use crate::error::u32_sat;
use crate::fixed::{clamp_raw, rq, sat8};
use crate::kernels::{self, le_i32, FcParams};
use crate::Error;

/// The most layers a model can have: the layer views live in a fixed-size array.
pub const MAX_LAYERS: usize = 16;

/// The activation of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Requantize straight to the output parameters.
    Identity,
    /// Identity, then clamp below at the output zero point.
    Relu,
    /// Requantize to the pre-activation zero point, then a 256-entry table.
    Lut,
}

/// The shape and activation of one layer, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    pub n_inputs: usize,
    pub n_outputs: usize,
    pub activation: Activation,
    /// The zero point of the layer's output (after the table for [`Activation::Lut`]).
    pub output_zero_point: i8,
}

/// The input stage: `q[j] = sat8(zp + rq(256 * clamp(x[j]) - mu[j], M[j], t[j]))`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InputStage<'a> {
    pub(crate) zero_point: i8,
    /// 12-byte entries `{i32 mu, i32 M, u8 t, 3 zero bytes}`: one shared, or one per input.
    pub(crate) entries: &'a [u8],
    /// With one shared entry: the quantized value of every raw byte 0..=255 (pixels, most
    /// sensors), computed once at load by the same `affine` as every other value.
    pub(crate) byte_table: Option<[i8; 256]>,
}

impl<'a> InputStage<'a> {
    pub(crate) fn new(zero_point: i8, entries: &'a [u8]) -> Self {
        let byte_table = if entries.len() == INPUT_ENTRY_LEN {
            let entry = decode_entry(entries);
            let mut table = [0i8; 256];
            for (raw, value) in (0i32..).zip(table.iter_mut()) {
                *value = affine(raw, entry, i64::from(zero_point));
            }
            Some(table)
        } else {
            None
        };
        Self {
            zero_point,
            entries,
            byte_table,
        }
    }
}

/// One layer's views into the blob.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layer<'a> {
    pub(crate) n_inputs: usize,
    pub(crate) n_outputs: usize,
    pub(crate) activation: Activation,
    /// After the table for a LUT layer.
    pub(crate) output_zero_point: i8,
    /// The kernel's parameters (requantizing to the pre-activation zero point for a LUT layer).
    pub(crate) params: FcParams<'a>,
    pub(crate) lut: Option<&'a [u8; 256]>,
}

impl Layer<'_> {
    pub(crate) const EMPTY: Layer<'static> = Layer {
        n_inputs: 0,
        n_outputs: 0,
        activation: Activation::Identity,
        output_zero_point: 0,
        params: FcParams {
            weights: &[],
            bias: &[],
            multipliers: &[],
            shifts: &[],
            output_zero_point: 0,
            clamp_min: i8::MIN,
            clamp_max: i8::MAX,
        },
        lut: None,
    };
}

/// A model blob, validated once and borrowed without copying.
///
/// # Buffers and the ping-pong scheme
///
/// Inference needs one caller-provided `i8` scratch buffer of at least
/// [`scratch_len`](Model::scratch_len) bytes, the largest `n_inputs + n_outputs` over the layers.
/// Only its first `scratch_len` bytes are used. Layer `k`'s activations alternate ends:
///
/// - the quantized input is written at the front, `scratch[0..n_inputs]`;
/// - an even layer (0, 2, ...) reads its input at the front and writes its output at the back,
///   `scratch[S - n_out..S]` with `S = scratch_len`;
/// - an odd layer reads its input at the back, `scratch[S - n_in..S]`, and writes its output at
///   the front, `scratch[0..n_out]`.
///
/// A layer's input and output never overlap since `n_in + n_out <= S`, so the peak RAM of the
/// activations is the largest pair of adjacent tensors, not their sum. The last layer's output
/// is then copied to the caller's `logits` (`n_outputs` bytes).
#[derive(Clone, Copy)]
pub struct Model<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) n_inputs: usize,
    pub(crate) n_outputs: usize,
    pub(crate) n_layers: usize,
    pub(crate) scratch_len: usize,
    pub(crate) input: InputStage<'a>,
    pub(crate) layers: [Layer<'a>; MAX_LAYERS],
    pub(crate) output_scale_bits: u32,
    pub(crate) output_zero_point: i8,
}

impl fmt::Debug for Model<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_struct("Model");
        list.field("len", &self.bytes.len())
            .field("n_inputs", &self.n_inputs)
            .field("n_outputs", &self.n_outputs)
            .field("scratch_len", &self.scratch_len);
        for (i, layer) in self.layer_slice().iter().enumerate() {
            list.field(
                "layer",
                &format_args!(
                    "{i}: {} -> {} {:?}",
                    layer.n_inputs, layer.n_outputs, layer.activation
                ),
            );
        }
        list.finish()
    }
}

impl<'a> Model<'a> {
    /// Validates a blob and borrows it. Checks everything listed in `docs/blob-format.md`: magic,
    /// version, total length, CRC-32, section lengths, the chain of shapes and zero points,
    /// multiplier and shift ranges, the worst-case accumulator of every channel, the layer count,
    /// reserved and padding bytes, and that no byte trails.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        crate::blob::parse(bytes)
    }

    /// The blob this model borrows.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The number of raw (or quantized) input values.
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// The number of logits.
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// The number of layers, 1 to [`MAX_LAYERS`].
    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    /// The scratch bytes [`run`](Model::run) needs: the largest `n_inputs + n_outputs` over the
    /// layers (see the ping-pong scheme above).
    pub fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// A scratch length that lets the fastest kernel run: [`scratch_len`](Model::scratch_len)
    /// plus a workspace of `2 * n_inputs + 3` bytes for the widest layer (rounded down to whole
    /// groups of 8 inputs). On Cortex-M4/M7 the packed kernel then widens each layer's input to
    /// 16-bit lanes once, instead of once per four output rows (MNIST 784-128-10: 1,571 bytes
    /// more RAM, about 8% fewer instructions). Other targets ignore the extra bytes; the results
    /// are the same bits with either length.
    pub fn fast_scratch_len(&self) -> usize {
        let widest = self
            .layer_slice()
            .iter()
            .map(|layer| layer.n_inputs)
            .max()
            .unwrap_or(0);
        self.scratch_len
            .saturating_add(kernels::packed::widened_len(widest))
    }

    /// The zero point of the logits.
    pub fn output_zero_point(&self) -> i8 {
        self.output_zero_point
    }

    /// The logits' scale as IEEE 754 single-precision bits (positive, finite, non-zero).
    pub fn output_scale_bits(&self) -> u32 {
        self.output_scale_bits
    }

    /// The shape and activation of layer `index`.
    pub fn layer(&self, index: usize) -> Option<LayerInfo> {
        self.layer_slice().get(index).map(|l| LayerInfo {
            n_inputs: l.n_inputs,
            n_outputs: l.n_outputs,
            activation: l.activation,
            output_zero_point: l.output_zero_point,
        })
    }

    fn layer_slice(&self) -> &[Layer<'a>] {
        self.layers.get(..self.n_layers).unwrap_or(&[])
    }

    /// The input stage: `out[j] = sat8(zp_in + rq(256 * clamp(raw[j]) - mu[j], M[j], t[j]))`
    /// with `raw` clamped to `[-2^23, 2^23 - 1]`.
    ///
    /// Errors: [`Error::InputLength`] if `raw.len() != n_inputs`, [`Error::OutputLength`] if
    /// `out.len() != n_inputs`. Nothing is written on error.
    pub fn quantize_input(&self, raw: &[i32], out: &mut [i8]) -> Result<(), Error> {
        self.check_input(raw.len())?;
        if out.len() != self.n_inputs {
            return Err(Error::OutputLength {
                expected: u32_sat(self.n_inputs),
                got: u32_sat(out.len()),
            });
        }
        self.quantize_unchecked(raw, out);
        Ok(())
    }

    fn quantize_unchecked(&self, raw: &[i32], out: &mut [i8]) {
        let zp = i64::from(self.input.zero_point);
        let mut entries = self
            .input
            .entries
            .chunks_exact(INPUT_ENTRY_LEN)
            .map(decode_entry);
        if self.input.entries.len() == INPUT_ENTRY_LEN {
            // one shared entry
            if let Some(entry) = entries.next() {
                let table = self.input.byte_table.as_ref();
                for (o, &x) in out.iter_mut().zip(raw) {
                    let cached = match (table, u8::try_from(x)) {
                        (Some(table), Ok(byte)) => table.get(usize::from(byte)).copied(),
                        _ => None,
                    };
                    *o = cached.unwrap_or_else(|| affine(x, entry, zp));
                }
            }
        } else {
            // `entries` is advanced by hand: zipping a `ChunksExact` keeps a dead
            // division-by-zero panic in some optimized builds (see the reference kernel)
            for (o, &x) in out.iter_mut().zip(raw) {
                let Some(entry) = entries.next() else { break };
                *o = affine(x, entry, zp);
            }
        }
    }

    fn check_input(&self, got: usize) -> Result<(), Error> {
        if got == self.n_inputs {
            Ok(())
        } else {
            Err(Error::InputLength {
                expected: u32_sat(self.n_inputs),
                got: u32_sat(got),
            })
        }
    }

    /// Checks the scratch and logits lengths; returns the part of `scratch` the activations use
    /// and the rest, the kernels' workspace (see [`fast_scratch_len`](Model::fast_scratch_len)).
    fn check_buffers<'s>(
        &self,
        scratch: &'s mut [i8],
        logits: &[i8],
    ) -> Result<(&'s mut [i8], &'s mut [i8]), Error> {
        let got = scratch.len();
        let scratch =
            scratch
                .split_at_mut_checked(self.scratch_len)
                .ok_or(Error::BufferTooSmall {
                    needed: u32_sat(self.scratch_len),
                    got: u32_sat(got),
                })?;
        if logits.len() != self.n_outputs {
            return Err(Error::OutputLength {
                expected: u32_sat(self.n_outputs),
                got: u32_sat(logits.len()),
            });
        }
        Ok(scratch)
    }

    /// Runs the model on raw inputs: quantizes them into `scratch`, runs every layer, writes the
    /// int8 logits and returns their argmax (the first maximum wins a tie).
    ///
    /// Errors, all checked before any work: [`Error::InputLength`] if `raw.len() != n_inputs`,
    /// [`Error::BufferTooSmall`] if `scratch.len() < scratch_len`, [`Error::OutputLength`] if
    /// `logits.len() != n_outputs`. No other error is possible.
    pub fn run(&self, raw: &[i32], scratch: &mut [i8], logits: &mut [i8]) -> Result<usize, Error> {
        self.check_input(raw.len())?;
        let (scratch, workspace) = self.check_buffers(scratch, logits)?;
        let s = scratch.len();
        let first = scratch.get_mut(..self.n_inputs).ok_or(self.internal(s))?;
        self.quantize_unchecked(raw, first);
        self.forward_with(
            kernels::fully_connected_i8_workspace,
            scratch,
            workspace,
            logits,
        )
    }

    /// Like [`run`](Model::run) for input that is already quantized (`n_inputs` int8 values with
    /// the input stage's zero point).
    pub fn run_quantized(
        &self,
        input: &[i8],
        scratch: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        self.run_quantized_with(
            kernels::fully_connected_i8_workspace,
            input,
            scratch,
            logits,
        )
    }

    /// [`run_quantized`](Model::run_quantized) with the reference kernel instead of the
    /// optimized one this target compiled in: the specification, so that firmware can check on
    /// the device that the two agree bit for bit.
    pub fn run_quantized_reference(
        &self,
        input: &[i8],
        scratch: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        self.run_quantized_with(
            |params, input, _workspace, output| {
                kernels::reference::fully_connected_i8(params, input, output)
            },
            input,
            scratch,
            logits,
        )
    }

    #[inline(always)]
    fn run_quantized_with(
        &self,
        kernel: impl Fn(&FcParams<'_>, &[i8], &mut [i8], &mut [i8]) -> Result<(), Error>,
        input: &[i8],
        scratch: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        self.check_input(input.len())?;
        let (scratch, workspace) = self.check_buffers(scratch, logits)?;
        let s = scratch.len();
        let first = scratch.get_mut(..self.n_inputs).ok_or(self.internal(s))?;
        // Same lengths (checked above): a word-wise copy.
        if first.len() == input.len() {
            first.copy_from_slice(input);
        }
        self.forward_with(kernel, scratch, workspace, logits)
    }

    /// The error for a buffer split that validation makes impossible.
    fn internal(&self, got: usize) -> Error {
        Error::BufferTooSmall {
            needed: u32_sat(self.scratch_len),
            got: u32_sat(got),
        }
    }

    /// The layers over `scratch` (exactly `scratch_len` bytes, the input at the front) with the
    /// given dense kernel and its workspace.
    #[inline(always)]
    fn forward_with(
        &self,
        kernel: impl Fn(&FcParams<'_>, &[i8], &mut [i8], &mut [i8]) -> Result<(), Error>,
        scratch: &mut [i8],
        workspace: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        let s = scratch.len();
        let mut at_front = true; // where the current activations start
        for layer in self.layer_slice() {
            let (n_in, n_out) = (layer.n_inputs, layer.n_outputs);
            let (input, output): (&[i8], &mut [i8]) = if at_front {
                // input [0, n_in), output [s - n_out, s)
                let split = s.checked_sub(n_out).ok_or(self.internal(s))?;
                let (lo, hi) = scratch
                    .split_at_mut_checked(split)
                    .ok_or(self.internal(s))?;
                (lo.get(..n_in).ok_or(self.internal(s))?, hi)
            } else {
                // input [s - n_in, s), output [0, n_out)
                let (lo, hi) = scratch
                    .split_at_mut_checked(n_out)
                    .ok_or(self.internal(s))?;
                let start = hi.len().checked_sub(n_in).ok_or(self.internal(s))?;
                (hi.get(start..).ok_or(self.internal(s))?, lo)
            };
            kernel(&layer.params, input, workspace, output)?;
            if let Some(table) = layer.lut {
                kernels::apply_lut_i8(table, output);
            }
            at_front = !at_front;
        }
        let last = if at_front {
            scratch.get(..self.n_outputs)
        } else {
            s.checked_sub(self.n_outputs)
                .and_then(|start| scratch.get(start..))
        };
        for (l, &v) in logits.iter_mut().zip(last.ok_or(self.internal(s))?) {
            *l = v;
        }
        Ok(argmax(logits))
    }

    /// The logits' real values: `out[i] = s_out * (logits[i] - zp_out)` in f32.
    ///
    /// Errors: [`Error::InputLength`] if `logits.len() != n_outputs`, [`Error::OutputLength`] if
    /// `out.len() != n_outputs`.
    #[cfg(feature = "f32-output")]
    pub fn dequantize(&self, logits: &[i8], out: &mut [f32]) -> Result<(), Error> {
        if logits.len() != self.n_outputs {
            return Err(Error::InputLength {
                expected: u32_sat(self.n_outputs),
                got: u32_sat(logits.len()),
            });
        }
        if out.len() != self.n_outputs {
            return Err(Error::OutputLength {
                expected: u32_sat(self.n_outputs),
                got: u32_sat(out.len()),
            });
        }
        let scale = self.output_scale();
        let zp = i16::from(self.output_zero_point);
        for (o, &q) in out.iter_mut().zip(logits) {
            *o = scale * f32::from(i16::from(q).wrapping_sub(zp)); // in [-255, 255]
        }
        Ok(())
    }

    /// The logits' scale.
    #[cfg(feature = "f32-output")]
    pub fn output_scale(&self) -> f32 {
        f32::from_bits(self.output_scale_bits)
    }
}

/// `{i32 mu, i32 M, u8 t, ...}` from a 12-byte entry.
fn decode_entry(entry: &[u8]) -> (i32, i32, u8) {
    match *entry {
        [a, b, c, d, e, f, g, h, t, ..] => (le_i32(&[a, b, c, d]), le_i32(&[e, f, g, h]), t),
        _ => (0, crate::fixed::MULTIPLIER_MIN, crate::fixed::SHIFT_MIN),
    }
}

/// `sat8(zp + rq(256 * clamp(x) - mu, M, t))`.
#[inline(always)]
fn affine(x: i32, (mu, m, t): (i32, i32, u8), zp: i64) -> i8 {
    // |256 * x| <= 2^31 after the clamp, so the product is exact in i32; the subtraction of
    // `mu` stays in i32 whenever it can, which lets `rq` use one 32x32->64 multiply.
    let scaled = clamp_raw(x).wrapping_mul(256);
    let v = match scaled.checked_sub(mu) {
        Some(v) => i64::from(v),
        None => i64::from(scaled).wrapping_sub(i64::from(mu)),
    };
    sat8(zp.saturating_add(rq(v, m, t)))
}

/// The index of the first maximum (0 for an empty slice).
fn argmax(values: &[i8]) -> usize {
    let mut best = 0;
    let mut best_value = i8::MIN;
    for (i, &v) in values.iter().enumerate() {
        if i == 0 || v > best_value {
            best = i;
            best_value = v;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_first_max_wins() {
        assert_eq!(argmax(&[1, 5, 5, 2]), 1);
        assert_eq!(argmax(&[-128, -128]), 0);
        assert_eq!(argmax(&[-128, -127]), 1);
        assert_eq!(argmax(&[3]), 0);
        assert_eq!(argmax(&[0, 0, 127, 127]), 2);
        assert_eq!(argmax(&[]), 0);
    }
}
