//! The kernels, and the one place that chooses which implementation the runtime calls.
//!
//! `reference` holds the scalar reference kernels: they *are* the specification of
//! `docs/quantization.md` (dense) and `docs/layer-graph.md` (convolutions, pooling and the
//! residual add). Optimized kernels (per architecture, chosen by `cfg` here) must match
//! it bit for bit; `kernel_tests!` (tests only) checks an implementation against it.

pub mod add;
pub mod compact;
pub mod conv;
#[cfg(kiln_kernel = "dsp")]
mod dsp_asm;
pub mod dwconv;
pub mod dwplane;
pub mod fc16;
pub mod im2col;
pub mod inplace;
#[cfg(kiln_kernel = "m0")]
mod m0_asm;
pub mod packed;
pub mod pairs;
pub mod reference;
pub mod rows4;
#[cfg(kiln_kernel = "rv32")]
mod rv32_asm;
mod simd32;
#[cfg(kiln_kernel = "sse2")]
mod sse2;
pub mod stem;

use crate::Error;

#[cfg(kiln_small)]
pub use compact::fully_connected_i8;
/// On Cortex-M0 the whole layer is one assembly routine, output stage included.
#[cfg(all(kiln_kernel = "m0", not(kiln_small)))]
pub use m0_asm::fully_connected_i8;
/// The kernel the runtime uses, chosen here and nowhere else (`build.rs` sets `kiln_kernel`
/// from the target): the packed SMLAD kernel where the DSP instructions exist (Cortex-M4/M7),
/// the four-row scalar kernel elsewhere, and the reference when asked for (`KILN_KERNEL`).
#[cfg(kiln_kernel = "dsp")]
pub use packed::fully_connected_i8;
#[cfg(all(kiln_kernel = "reference", not(kiln_small)))]
pub use reference::fully_connected_i8;
#[cfg(any(kiln_kernel = "rows4", kiln_kernel = "rv32", kiln_kernel = "sse2"))]
pub use rows4::fully_connected_i8;

/// The kernel the runtime uses when the caller gives it a workspace (the scratch bytes past
/// `scratch_len`): on Armv7E-M the packed kernel widens each layer's input into it once
/// ([`packed::widened_len`] bytes); every other kernel ignores it. Same results either way.
#[inline(always)]
pub fn fully_connected_i8_workspace(
    params: &FcParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    #[cfg(kiln_kernel = "dsp")]
    return packed::fully_connected_i8_widened(params, input, workspace, output);
    #[cfg(not(kiln_kernel = "dsp"))]
    {
        let _ = workspace;
        fully_connected_i8(params, input, output)
    }
}

/// What `Model` calls for a dense layer: [`fully_connected_i8_workspace`], whose bias and
/// multipliers a loaded blob has word-aligned (`Model` refuses a blob off a 4-byte boundary and
/// every array starts at a multiple of 4 in it). So on Cortex-M0/M3 the assembly routine runs
/// without the compact fallback for arrays off a word boundary (about 500 bytes of flash); such
/// arrays get [`Error::KernelArguments`] here instead.
#[inline(always)]
pub(crate) fn fully_connected_i8_aligned(
    params: &FcParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    #[cfg(all(kiln_kernel = "m0", not(kiln_small)))]
    {
        let _ = workspace;
        if m0_asm::fully_connected(params, input, output) {
            Ok(())
        } else {
            Err(Error::KernelArguments)
        }
    }
    #[cfg(not(all(kiln_kernel = "m0", not(kiln_small))))]
    fully_connected_i8_workspace(params, input, workspace, output)
}

/// The input stage's identity map (`model.rs`) for the first values, eight per step, on
/// Armv7E-M; the number written (0 elsewhere: the portable loop in `model.rs` does them all).
#[cfg(all(kiln_kernel = "dsp", not(kiln_small)))]
pub(crate) use dsp_asm::identity_input_groups;

/// See the Armv7E-M version above.
#[cfg(all(not(kiln_kernel = "dsp"), not(kiln_small)))]
#[inline(always)]
pub(crate) fn identity_input_groups(_raw: &[i32], _offset: i32, _out: &mut [i8]) -> usize {
    0
}

/// The int16-activation dense kernel the runtime uses: four rows per pass over the input
/// (their inner loop in `SMLAD` lanes on Armv7E-M), two on Cortex-M0, whose eight low
/// registers four rows overflow; the reference under `KILN_KERNEL=reference`.
#[cfg(not(any(kiln_kernel = "reference", kiln_kernel = "m0")))]
pub use fc16::fully_connected_i16;
#[cfg(kiln_kernel = "m0")]
pub use fc16::fully_connected_i16_pairs as fully_connected_i16;
/// The activation table the runtime uses.
pub use reference::apply_lut_i8;
#[cfg(kiln_kernel = "reference")]
pub use reference::fully_connected_i16;

/// The convolution and pooling kernels the runtime uses. `conv2d_i8_workspace` is im2col into
/// the caller's workspace ([`conv_workspace_len`] bytes; shorter runs the reference, same bits)
/// and a matrix product: on Cortex-M4/M7 blocks of two channels by two output pixels in `SMLAD`
/// lanes (`pairs`, falling back to the packed kernel's four-row loop), the target's scalar
/// four-row loop elsewhere. Depthwise and pooling go four channels per word (16-bit lanes on
/// Cortex-M4/M7). `KILN_KERNEL=reference` keeps the reference everywhere.
#[cfg(kiln_kernel = "reference")]
pub use reference::{avg_pool_i8, conv2d_i8, depthwise_conv2d_i8, max_pool_i8};

#[cfg(not(kiln_kernel = "reference"))]
pub use dwconv::{avg_pool_i8, max_pool_i8};

#[cfg(not(any(kiln_kernel = "dsp", kiln_kernel = "reference")))]
pub use dwconv::depthwise_conv2d_i8_bytes as depthwise_conv2d_i8;
#[cfg(kiln_kernel = "dsp")]
pub use dwconv::depthwise_conv2d_i8_lanes as depthwise_conv2d_i8;
/// The ring depthwise kernel in place the runtime uses (see
/// [`inplace::depthwise_conv2d_i8_ring_in_place`]): each pixel as `depthwise_conv2d_i8`
/// computes it.
#[cfg(not(any(kiln_kernel = "dsp", kiln_kernel = "reference")))]
pub use dwconv::depthwise_ring_in_place_bytes as depthwise_conv2d_i8_ring_in_place;
#[cfg(kiln_kernel = "dsp")]
pub use dwconv::depthwise_ring_in_place_lanes as depthwise_conv2d_i8_ring_in_place;
#[cfg(kiln_kernel = "reference")]
pub use inplace::depthwise_conv2d_i8_ring_in_place;

/// The workspace bytes [`depthwise_conv2d_i8_workspace`] needs for a layer: the channel
/// planes of [`dwplane`] for a 3x3 stride-1 layer of whole words of channels, or the weights
/// widened once per call for the register blocks of every other layer of at least four
/// channels ([`dwconv::widened_len`]), whichever is larger. The same on every target, like
/// [`conv_workspace_len`].
pub fn depthwise_workspace_len(params: &ConvParams<'_>) -> usize {
    dwplane::workspace_len(params).max(dwconv::widened_len(params))
}

/// The `DepthwiseConv2d` kernel the runtime uses, with the caller's workspace: on Cortex-M4/M7
/// a 3x3 stride-1 layer goes over channel planes ([`dwplane`]), every other layer through
/// register blocks on weights widened once into the workspace
/// ([`dwconv::depthwise_conv2d_i8_lanes_workspace`]; with [`depthwise_workspace_len`] bytes);
/// elsewhere, and with a shorter workspace, through [`depthwise_conv2d_i8`]. Same bits either
/// way.
#[inline(always)]
pub fn depthwise_conv2d_i8_workspace(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    #[cfg(kiln_kernel = "dsp")]
    {
        if dwplane::depthwise_conv2d_i8_planes::<dsp_asm::DwPlanes>(
            params, input, workspace, output,
        )? {
            return Ok(());
        }
        dwconv::depthwise_conv2d_i8_lanes_workspace(params, input, workspace, output)
    }
    #[cfg(not(kiln_kernel = "dsp"))]
    {
        let _ = workspace;
        depthwise_conv2d_i8(params, input, output)
    }
}

/// The workspace bytes [`conv2d_i8_workspace`] needs for a layer: a pure function of its
/// parameters, the same on every target so that the baking host sizes a device's scratch
/// (the two-pixel kernel's and the one-pixel kernel's it falls back to, whichever is more).
pub fn conv_workspace_len(params: &ConvParams<'_>) -> usize {
    im2col::conv_workspace_len(params)
        .max(pairs::workspace_len(params))
        .max(stem::workspace_len(params))
}

/// The `Conv2d` kernel the runtime uses, with the caller's workspace (the scratch bytes past
/// `scratch_len`). A workspace shorter than [`conv_workspace_len`] runs the reference.
#[inline(always)]
pub fn conv2d_i8_workspace(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    #[cfg(kiln_kernel = "dsp")]
    {
        if dsp_asm::conv2d_i8_stem(params, input, workspace, output)? {
            return Ok(());
        }
        pairs::conv2d_i8_pairs(params, input, workspace, output)
    }
    #[cfg(kiln_kernel = "reference")]
    {
        let _ = workspace;
        reference::conv2d_i8(params, input, output)
    }
    #[cfg(not(any(kiln_kernel = "dsp", kiln_kernel = "reference")))]
    return im2col::conv2d_i8_rows4(params, input, workspace, output);
}

/// The in-place pointwise convolution the runtime uses (the contract of
/// [`inplace::pointwise_conv2d_i8_in_place`]), with the caller's workspace: the start values
/// once, then each pixel through the convolution's inner loop (packed `SMLAD` on Cortex-M4/M7,
/// the target's four-row loop elsewhere). A workspace shorter than [`conv_workspace_len`], and
/// `KILN_KERNEL=reference`, run the in-place kernel of the reference arithmetic: same bits.
#[inline(always)]
pub fn pointwise_conv2d_i8_in_place_workspace(
    params: &ConvParams<'_>,
    (data, input_at): (&mut [i8], usize),
    pixel: &mut [i8],
    workspace: &mut [i8],
) -> Result<(), Error> {
    #[cfg(kiln_kernel = "dsp")]
    return im2col::pointwise_in_place_packed(params, (data, input_at), pixel, workspace);
    #[cfg(kiln_kernel = "reference")]
    {
        let _ = workspace;
        inplace::pointwise_conv2d_i8_in_place(params, data, input_at, pixel)
    }
    #[cfg(not(any(kiln_kernel = "dsp", kiln_kernel = "reference")))]
    return im2col::pointwise_in_place_rows4(params, (data, input_at), pixel, workspace);
}

/// `conv2d_i8_workspace` without a workspace: the reference (kept for the `ConvKernelFn`
/// signature; the runtime calls the workspace variant).
#[cfg(not(kiln_kernel = "reference"))]
pub use reference::conv2d_i8;

pub use conv::{ConvParams, PoolParams};

/// The signature of `conv2d_i8` and `depthwise_conv2d_i8`.
pub type ConvKernelFn = fn(&ConvParams<'_>, &[i8], &mut [i8]) -> Result<(), Error>;
/// The signature of `max_pool_i8` and `avg_pool_i8`.
pub type PoolKernelFn = fn(&PoolParams, &[i8], &mut [i8]) -> Result<(), Error>;

/// The residual `Add` the runtime uses: four elements at a time with the zero points folded
/// into one start value (assembly on Cortex-M4/M7, [`add::add_i8`]); the reference under
/// `KILN_KERNEL=reference`.
#[cfg(not(kiln_kernel = "reference"))]
pub use add::{add_i8, add_i8_in_place};
#[cfg(kiln_kernel = "reference")]
pub use inplace::add_i8_in_place;
#[cfg(kiln_kernel = "reference")]
pub use reference::add_i8;

/// The parameters of one elementwise `Add` of two int8 values of one shape
/// (`docs/layer-graph.md`): output `i` is
/// `clamp(sat8(output_zero_point + rq(acc, multiplier, shift)), clamp_min, clamp_max)` with
/// `acc = W_a (a[i] - zp_a) + W_b (b[i] - zp_b)` in `i32`.
///
/// - `weights`: `[W_a, W_b]`, `|W| <= 2^16` for a validated model, so `|acc| < 2^26`; the
///   exporter picks `W = round(s_x / max(s_a, s_b) 2^16)`: both inputs on one grid;
/// - `input_zero_points`: `[zp_a, zp_b]`;
/// - `multiplier`, `shift`: `M / 2^t = max(s_a, s_b) / (2^16 s_out)`, `M` in `[2^30, 2^31)`,
///   `t` in `[1, 62]` for a validated model;
/// - `clamp_min`, `clamp_max`: `-128`/`127` for identity, `zp_out`/`127` for a fused relu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddParams {
    pub weights: [i32; 2],
    pub input_zero_points: [i8; 2],
    pub output_zero_point: i8,
    pub multiplier: i32,
    pub shift: u8,
    pub clamp_min: i8,
    pub clamp_max: i8,
}

impl AddParams {
    /// Checks that the two inputs and the output have one length and that
    /// `clamp_min <= clamp_max`.
    pub fn check(&self, a: usize, b: usize, out: usize) -> Result<(), Error> {
        if a == out && b == out && self.clamp_min <= self.clamp_max {
            Ok(())
        } else {
            Err(Error::KernelArguments)
        }
    }
}

/// The signature every implementation of `fully_connected_i8` has.
pub type KernelFn = fn(&FcParams<'_>, &[i8], &mut [i8]) -> Result<(), Error>;

/// The parameters of one dense int8 layer, borrowed zero-copy from a model blob.
///
/// For `n_in` inputs and `n_out` outputs:
/// - `weights`: `n_out * n_in` bytes, row-major `[n_out][n_in]`, each byte an `i8` (`b as i8`);
/// - `bias`: `n_out` little-endian `i32` (4 bytes each): the folded bias
///   `q_b[o] - zp_in * sum_i q_w[o][i]`;
/// - `multipliers`: `n_out` little-endian `i32`, in `[2^30, 2^31)` for a validated model;
/// - `shifts`: `n_out` bytes, in `[1, 62]` for a validated model;
/// - `output_zero_point`: the zero point the accumulator is requantized to;
/// - `clamp_min`, `clamp_max`: the activation clamp (`-128`/`127` for identity, `zp_out`/`127`
///   for a fused relu).
///
/// Output `o` is `clamp(sat8(output_zero_point + rq(acc[o], M[o], t[o])))` with
/// `acc[o] = bias[o] + sum_i w[o][i] * input[i]` in `i32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcParams<'a> {
    pub weights: &'a [u8],
    pub bias: &'a [u8],
    pub multipliers: &'a [u8],
    pub shifts: &'a [u8],
    pub output_zero_point: i8,
    pub clamp_min: i8,
    pub clamp_max: i8,
}

impl FcParams<'_> {
    /// Whether the biases and multipliers start at a word boundary (as in a blob at a
    /// 4-byte-aligned address), for the routines that load them as words on cores that fault
    /// on an unaligned load.
    #[cfg(any(kiln_kernel = "m0", kiln_kernel = "rv32"))]
    #[inline(always)]
    pub(crate) fn words_aligned(&self) -> bool {
        self.bias.as_ptr().align_offset(4) == 0 && self.multipliers.as_ptr().align_offset(4) == 0
    }

    /// Whether the arrays hold the first `n_rows` rows of `n_in` weights, with their biases,
    /// multipliers and shifts: what the block routines read (they run on the first rows of a
    /// layer whose full lengths `check` has proved, or on any slices their wrappers are given).
    #[cfg(not(kiln_kernel = "dsp"))]
    #[inline(always)]
    pub(crate) fn holds_rows(&self, n_rows: usize, n_in: usize) -> bool {
        let words = n_rows.checked_mul(4);
        n_rows
            .checked_mul(n_in)
            .is_some_and(|len| self.weights.len() >= len)
            && words.is_some_and(|len| self.bias.len() >= len && self.multipliers.len() >= len)
            && self.shifts.len() >= n_rows
    }

    /// Checks that the slices fit `n_in` inputs and `n_out` outputs (`n_in >= 1`) and that
    /// `clamp_min <= clamp_max`. Every kernel calls this first, so a wrong call is an error,
    /// never a panic or an out-of-bounds read.
    #[inline(always)]
    pub fn check(&self, n_in: usize, n_out: usize) -> Result<(), Error> {
        if self.fits(n_in, n_out) {
            Ok(())
        } else {
            Err(Error::KernelArguments)
        }
    }

    /// What [`check`](FcParams::check) checks, as a `bool`.
    #[inline(always)]
    pub(crate) fn fits(&self, n_in: usize, n_out: usize) -> bool {
        let n_weights = n_in.checked_mul(n_out);
        let n_words = n_out.checked_mul(4);
        n_in >= 1
            && n_weights == Some(self.weights.len())
            && n_words == Some(self.bias.len())
            && n_words == Some(self.multipliers.len())
            && self.shifts.len() == n_out
            && self.clamp_min <= self.clamp_max
    }
}

/// The parameters of one dense layer on int16 activations (the 16x8 scheme): the slices of
/// [`FcParams`], symmetric activations (no zero point), and the lower clamp (`-32768` for
/// identity, `0` for a fused relu).
///
/// Output `o` is `max(sat16(rq(acc[o], M[o], t[o])), clamp_min)` with
/// `acc[o] = bias[o] + sum_i w[o][i] * input[i]` in `i32`; input and output are little-endian
/// int16 values, two bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fc16Params<'a> {
    pub weights: &'a [u8],
    pub bias: &'a [u8],
    pub multipliers: &'a [u8],
    pub shifts: &'a [u8],
    pub clamp_min: i16,
}

impl Fc16Params<'_> {
    /// The input count once `input` and `output` (little-endian int16, two bytes per value)
    /// fit the slices: every int16 dense kernel calls this first.
    #[inline(always)]
    pub fn check_lengths(&self, input: &[i8], output: &[i8]) -> Result<usize, Error> {
        if input.len() % 2 != 0 || output.len() % 2 != 0 {
            return Err(Error::KernelArguments);
        }
        let n_in = input.len() / 2;
        self.check(n_in, output.len() / 2)?;
        Ok(n_in)
    }

    /// Checks that the slices fit `n_in` inputs and `n_out` outputs (`n_in >= 1`).
    pub fn check(&self, n_in: usize, n_out: usize) -> Result<(), Error> {
        FcParams {
            weights: self.weights,
            bias: self.bias,
            multipliers: self.multipliers,
            shifts: self.shifts,
            output_zero_point: 0,
            clamp_min: i8::MIN,
            clamp_max: i8::MAX,
        }
        .check(n_in, n_out)
    }
}

/// `acc + sum(row[i] * input[i])`, one byte at a time: the optimized kernels' last few inputs.
#[inline(always)]
pub(crate) fn tail_dot(row: &[u8], input: &[i8], mut acc: i32) -> i32 {
    for (&w, &x) in row.iter().zip(input) {
        acc = acc.wrapping_add(i32::from(w as i8).wrapping_mul(i32::from(x)));
    }
    acc
}

/// The optimized kernels' output stage: `clamp(sat8(zp + rq(acc, M, t)))` as the reference
/// computes it, in 32-bit arithmetic: `rq_acc` is `rq` saturated to `i32`, and a saturating
/// `zp + rq` saturates to the same `i8` as the exact sum would. The clamps lie within `i8`, so
/// `max(clamp_min)` then `min(clamp_max)` on the `i32` gives what they give after saturating to
/// `i8` first (whatever the order of the clamps).
#[inline(always)]
pub(crate) fn requantize(params: &FcParams<'_>, acc: i32, multiplier: i32, shift: u8) -> i8 {
    let scaled = crate::fixed::rq_acc(acc, multiplier, shift);
    i32::from(params.output_zero_point)
        .saturating_add(scaled)
        .max(i32::from(params.clamp_min))
        .min(i32::from(params.clamp_max)) as i8
}

/// Whether four rows of `stride` bytes starting at `rows` hold `n` weights each past their
/// start and `input` holds `n` values, `n` a positive multiple of `multiple`: what the assembly
/// inner loops read.
#[cfg(any(
    kiln_kernel = "dsp",
    kiln_kernel = "m0",
    kiln_kernel = "rv32",
    kiln_kernel = "sse2"
))]
#[inline(always)]
pub(crate) fn dot4_in_bounds(
    rows: &[u8],
    stride: usize,
    input: &[i8],
    n: usize,
    multiple: usize,
) -> bool {
    n > 0
        && n.checked_rem(multiple) == Some(0)
        && input.len() >= n
        && stride
            .checked_mul(3)
            .and_then(|last_row| last_row.checked_add(n))
            .is_some_and(|end| end <= rows.len())
}

/// Row `r` of four rows `stride` bytes apart: its first `span` bytes, which may run into the
/// next row (`span > stride`; the convolution multiplies those bytes by zeros), or `None` past
/// the end of `rows`. What the assembly inner loops read, for their portable twins.
#[allow(dead_code)]
#[inline(always)]
pub(crate) fn four_rows_row(rows: &[u8], stride: usize, r: usize, span: usize) -> Option<&[u8]> {
    let first = r.checked_mul(stride)?;
    rows.get(first..first.checked_add(span)?)
}

/// The int16 value of a little-endian pair of arena bytes (0 for any other length; never
/// happens with `chunks_exact(2)`).
#[inline(always)]
pub(crate) fn le_i16(pair: &[i8]) -> i16 {
    match *pair {
        [lo, hi] => i16::from_le_bytes([lo as u8, hi as u8]),
        _ => 0,
    }
}

/// Writes `value` into a pair of arena bytes, little-endian (nothing for another length).
#[inline(always)]
pub(crate) fn put_i16(pair: &mut [i8], value: i16) {
    if let [lo, hi] = pair {
        let [a, b] = value.to_le_bytes();
        (*lo, *hi) = (a as i8, b as i8);
    }
}

/// The word-aligned part of a workspace from its first word boundary, or an empty slice: where
/// the kernels put what they read with `LDRD` or as whole words.
#[inline(always)]
pub(crate) fn aligned(s: &mut [i8]) -> &mut [i8] {
    let skip = s.as_ptr().align_offset(4);
    s.get_mut(skip..).unwrap_or(&mut [])
}

/// `v` in all four byte lanes: the clamps of the Armv7E-M assembly's `SSUB8`/`SEL`.
#[inline(always)]
pub(crate) fn bytes4(v: i8) -> u32 {
    u32::from(v as u8).wrapping_mul(0x0101_0101)
}

/// Reads a little-endian `i32` from a 4-byte chunk (0 for any other length; never happens with
/// `chunks_exact(4)`). One word load where the core allows unaligned loads.
#[inline(always)]
pub(crate) fn le_i32(chunk: &[u8]) -> i32 {
    <[u8; 4]>::try_from(chunk).map_or(0, i32::from_le_bytes)
}

/// The little-endian word of four `i8` (0 for another length): [`le_i32`] of activations.
#[inline(always)]
pub(crate) fn word_i8(chunk: &[i8]) -> i32 {
    match *chunk {
        [a, b, c, d] => i32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0,
    }
}

/// Tests an implementation of `fully_connected_i8` (same signature as the reference) against
/// the reference on random shapes, extreme values, tie-heavy requantization and bad lengths.
///
/// `kernel_tests!(module_name, path::to::impl_fn);` for a dense kernel, and
/// `kernel_tests!(conv2d: module_name, path)`, `(depthwise: ...)`, `(max_pool: ...)`,
/// `(avg_pool: ...)` for a convolution or pooling kernel: random shapes (stride 1 to 3, same
/// and valid padding, kernel = input, one channel, 1x1), extreme values and bad lengths; a
/// convolution also on channel counts up to 70 with every shift in `33..=62`, and on layers
/// wider than one band of the two-pixel kernel's widened rows.
#[cfg(test)]
macro_rules! kernel_tests {
    (conv2d: $name:ident, $impl_fn:path) => {
        mod $name {
            #[test]
            fn random_shapes_match_reference() {
                $crate::kernels::harness::conv_cases($impl_fn, false, 0xC0_0001, 1500);
            }

            #[test]
            fn channel_counts_match_reference() {
                $crate::kernels::harness::conv_channel_cases($impl_fn, 0xC0_0005, 400);
            }

            #[test]
            fn wide_layers_match_reference() {
                $crate::kernels::harness::conv_wide_cases($impl_fn, 0xC0_0009, 24);
            }

            #[test]
            fn bad_lengths_match_reference() {
                $crate::kernels::harness::conv_bad_lengths($impl_fn, false);
            }
        }
    };
    (depthwise: $name:ident, $impl_fn:path) => {
        mod $name {
            #[test]
            fn random_shapes_match_reference() {
                $crate::kernels::harness::conv_cases($impl_fn, true, 0xC0_0002, 1500);
            }

            #[test]
            fn bad_lengths_match_reference() {
                $crate::kernels::harness::conv_bad_lengths($impl_fn, true);
            }
        }
    };
    (max_pool: $name:ident, $impl_fn:path) => {
        mod $name {
            #[test]
            fn random_shapes_match_reference() {
                $crate::kernels::harness::pool_cases(
                    $impl_fn,
                    $crate::kernels::reference::max_pool_i8,
                    0xC0_0003,
                    1500,
                );
            }
        }
    };
    (avg_pool: $name:ident, $impl_fn:path) => {
        mod $name {
            #[test]
            fn random_shapes_match_reference() {
                $crate::kernels::harness::pool_cases(
                    $impl_fn,
                    $crate::kernels::reference::avg_pool_i8,
                    0xC0_0004,
                    1500,
                );
            }
        }
    };
    ($name:ident, $impl_fn:path) => {
        mod $name {
            #[test]
            fn random_shapes_match_reference() {
                $crate::kernels::harness::random_cases($impl_fn, 0x4b31_0001, 3000, 40);
            }

            #[test]
            fn whole_blocks_match_reference() {
                $crate::kernels::harness::block_cases($impl_fn, 0x4b31_0003, 1500);
            }

            #[test]
            fn misaligned_blocks_match_reference() {
                $crate::kernels::harness::misaligned_block_cases($impl_fn, 0x4b31_0004, 300);
            }

            #[test]
            fn long_rows_match_reference() {
                $crate::kernels::harness::random_cases($impl_fn, 0x4b31_0002, 100, 2000);
            }

            #[test]
            fn extremes_match_reference() {
                $crate::kernels::harness::extremes($impl_fn);
            }

            #[test]
            fn bad_lengths_match_reference() {
                $crate::kernels::harness::bad_lengths($impl_fn);
            }
        }
    };
}

#[cfg(test)]
pub(crate) mod harness;

#[cfg(test)]
kernel_tests!(
    compact_vs_reference,
    crate::kernels::compact::fully_connected_i8
);

#[cfg(test)]
kernel_tests!(
    reference_vs_reference,
    crate::kernels::reference::fully_connected_i8
);

// The convolution and pooling kernels the runtime dispatches to, and every implementation with
// its portable twin, each with an exact-length misaligned workspace and a too-short one.
#[cfg(test)]
kernel_tests!(conv2d: conv2d_vs_reference, crate::kernels::conv2d_i8);
#[cfg(test)]
kernel_tests!(depthwise: depthwise_vs_reference, crate::kernels::depthwise_conv2d_i8);
#[cfg(test)]
kernel_tests!(max_pool: max_pool_vs_reference, crate::kernels::max_pool_i8);
#[cfg(test)]
kernel_tests!(avg_pool: avg_pool_vs_reference, crate::kernels::avg_pool_i8);
#[cfg(test)]
kernel_tests!(depthwise: depthwise_lanes_vs_reference, crate::kernels::dwconv::depthwise_conv2d_i8_lanes);
#[cfg(test)]
kernel_tests!(depthwise: depthwise_bytes_vs_reference, crate::kernels::dwconv::depthwise_conv2d_i8_bytes);
#[cfg(test)]
kernel_tests!(max_pool: max_pool_words_vs_reference, crate::kernels::dwconv::max_pool_i8);
#[cfg(test)]
kernel_tests!(avg_pool: avg_pool_words_vs_reference, crate::kernels::dwconv::avg_pool_i8);

/// The signature of the workspace convolutions.
#[cfg(test)]
type ConvWorkspaceFn = fn(&ConvParams<'_>, &[i8], &mut [i8], &mut [i8]) -> Result<(), Error>;

/// Runs `f` with a workspace of `len` bytes (`short`: one byte less) starting one byte past a
/// word boundary.
#[cfg(test)]
fn with_workspace(
    f: ConvWorkspaceFn,
    len: usize,
    short: bool,
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let mut buffer = std::vec![0x55i8; len + 8];
    let skip = buffer.as_ptr().align_offset(4) + 1;
    let end = skip + len - usize::from(short && len > 0);
    f(params, input, &mut buffer[skip..end], output)
}

#[cfg(test)]
macro_rules! conv_workspace_variants {
    ($($name:ident, $short:ident: $f:path, $widened:expr;)*) => {
        $(
            #[cfg(test)]
            fn $name(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
                with_workspace($f, im2col::workspace_len(p, $widened), false, p, input, output)
            }
            #[cfg(test)]
            fn $short(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
                with_workspace($f, im2col::workspace_len(p, $widened), true, p, input, output)
            }
            #[cfg(test)]
            kernel_tests!(conv2d: $name, crate::kernels::$name);
            #[cfg(test)]
            kernel_tests!(conv2d: $short, crate::kernels::$short);
        )*
    };
}

#[cfg(test)]
conv_workspace_variants! {
    conv_packed, conv_packed_short: im2col::conv2d_i8_packed, true;
    conv_rows4, conv_rows4_short: im2col::conv2d_i8_rows4, false;
    conv_portable, conv_portable_short: im2col::conv2d_i8_portable, false;
}

/// The two-pixel kernel (its portable twin on the host) with the workspace it asks for (its rows
/// widened once, where the layer's fit [`pairs::WIDE_MAX`]), and with one byte less (the rows
/// then split as they are read, or, for a layer without widened rows, the one-pixel kernel).
#[cfg(test)]
fn conv_pairs(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    with_workspace(
        pairs::conv2d_i8_pairs,
        pairs::workspace_len(p),
        false,
        p,
        input,
        output,
    )
}

#[cfg(test)]
fn conv_pairs_short(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    with_workspace(
        pairs::conv2d_i8_pairs,
        pairs::workspace_len(p),
        true,
        p,
        input,
        output,
    )
}

/// The two-pixel kernel with the workspace of its narrow rows only (each weight word split as
/// it is read), and with one byte less (the one-pixel kernel).
#[cfg(test)]
fn conv_pairs_narrow(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    let len = pairs::narrow_workspace_len(p);
    with_workspace(pairs::conv2d_i8_pairs, len, false, p, input, output)
}

#[cfg(test)]
fn conv_pairs_narrow_short(
    p: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let len = pairs::narrow_workspace_len(p);
    with_workspace(pairs::conv2d_i8_pairs, len, true, p, input, output)
}

#[cfg(test)]
kernel_tests!(conv2d: conv_pairs_narrow_vs_reference, crate::kernels::conv_pairs_narrow);
#[cfg(test)]
kernel_tests!(conv2d: conv_pairs_narrow_short_vs_reference, crate::kernels::conv_pairs_narrow_short);
#[cfg(test)]
kernel_tests!(conv2d: conv_pairs_vs_reference, crate::kernels::conv_pairs);
#[cfg(test)]
kernel_tests!(conv2d: conv_pairs_short_vs_reference, crate::kernels::conv_pairs_short);

/// The dispatched workspace convolution with the length `conv_workspace_len` asks for.
#[cfg(test)]
fn conv_dispatched(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    with_workspace(
        conv2d_i8_workspace,
        conv_workspace_len(p),
        false,
        p,
        input,
        output,
    )
}

#[cfg(test)]
kernel_tests!(conv2d: conv_dispatched_vs_reference, crate::kernels::conv_dispatched);

/// The depthwise planes' portable twin with the workspace it asks for, starting one byte past
/// a word boundary (`dwconv`'s lanes for the layers it does not take; `dwplane`'s own tests
/// hold the layers it takes), and the dispatched workspace kernel.
#[cfg(test)]
fn depthwise_planes(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    fn planes_or_lanes(
        p: &ConvParams<'_>,
        input: &[i8],
        workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error> {
        if dwplane::depthwise_conv2d_i8_planes_portable(p, input, workspace, output)? {
            return Ok(());
        }
        dwconv::depthwise_conv2d_i8_lanes(p, input, output)
    }
    let len = dwplane::workspace_len(p);
    with_workspace(planes_or_lanes, len, false, p, input, output)
}

#[cfg(test)]
fn depthwise_dispatched(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    let len = depthwise_workspace_len(p);
    with_workspace(depthwise_conv2d_i8_workspace, len, false, p, input, output)
}

/// The register blocks on weights widened into the workspace they ask for, starting one byte
/// past a word boundary.
#[cfg(test)]
fn depthwise_wide(p: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    let len = dwconv::widened_len(p);
    with_workspace(
        dwconv::depthwise_conv2d_i8_lanes_workspace,
        len,
        false,
        p,
        input,
        output,
    )
}

#[cfg(test)]
kernel_tests!(depthwise: depthwise_wide_vs_reference, crate::kernels::depthwise_wide);
#[cfg(test)]
kernel_tests!(depthwise: depthwise_planes_vs_reference, crate::kernels::depthwise_planes);
#[cfg(test)]
kernel_tests!(depthwise: depthwise_dispatched_vs_reference, crate::kernels::depthwise_dispatched);

#[cfg(test)]
kernel_tests!(
    packed_vs_reference,
    crate::kernels::packed::fully_connected_i8
);

/// The widened packed kernel with a workspace of exactly the length it needs, starting one
/// byte past a word boundary (so the alignment step is exercised).
#[cfg(test)]
fn packed_widened_misaligned(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let mut buffer = std::vec![0x55i8; packed::widened_len(input.len()) + 4];
    let skip = buffer.as_ptr().align_offset(4) + 1;
    let workspace = &mut buffer[skip..skip + packed::widened_len(input.len())];
    packed::fully_connected_i8_widened(params, input, workspace, output)
}

/// The widened packed kernel with a workspace one byte too short: it must fall back, not fail.
#[cfg(test)]
fn packed_widened_short(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let mut buffer = std::vec![0x55i8; packed::widened_len(input.len()) + 3];
    let skip = buffer.as_ptr().align_offset(4) + 1;
    let end = skip + packed::widened_len(input.len()) - 1;
    packed::fully_connected_i8_widened(params, input, &mut buffer[skip..end], output)
}

#[cfg(test)]
kernel_tests!(
    packed_widened_vs_reference,
    crate::kernels::packed_widened_misaligned
);

#[cfg(test)]
kernel_tests!(
    packed_widened_short_vs_reference,
    crate::kernels::packed_widened_short
);

#[cfg(test)]
kernel_tests!(
    rows4_vs_reference,
    crate::kernels::rows4::fully_connected_i8
);

#[cfg(test)]
kernel_tests!(
    rows4_portable_vs_reference,
    crate::kernels::rows4::fully_connected_i8_portable
);

#[cfg(test)]
kernel_tests!(
    rows4_blocks8_portable_vs_reference,
    crate::kernels::rows4::fully_connected_i8_blocks8_portable
);

#[cfg(test)]
kernel_tests!(
    rows4_m0_portable_vs_reference,
    crate::kernels::rows4::fully_connected_i8_m0_portable
);
