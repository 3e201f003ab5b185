//! The kernels, and the one place that chooses which implementation the runtime calls.
//!
//! `reference` is the scalar reference kernel: it *is* the specification of
//! `docs/quantization.md`. Optimized kernels (per architecture, chosen by `cfg` here) must match
//! it bit for bit; `kernel_tests!` (tests only) checks an implementation against it.

#[cfg(kiln_kernel = "dsp")]
mod dsp_asm;
#[cfg(kiln_kernel = "m0")]
mod m0_asm;
pub mod packed;
pub mod reference;
pub mod rows4;
#[cfg(kiln_kernel = "rv32")]
mod rv32_asm;
mod simd32;

use crate::Error;

/// The kernel the runtime uses, chosen here and nowhere else (`build.rs` sets `kiln_kernel`
/// from the target): the packed SMLAD kernel where the DSP instructions exist (Cortex-M4/M7),
/// the four-row scalar kernel elsewhere, and the reference when asked for (`KILN_KERNEL`).
#[cfg(kiln_kernel = "dsp")]
pub use packed::fully_connected_i8;
#[cfg(kiln_kernel = "reference")]
pub use reference::fully_connected_i8;
#[cfg(any(kiln_kernel = "rows4", kiln_kernel = "m0", kiln_kernel = "rv32"))]
pub use rows4::fully_connected_i8;

/// The activation table the runtime uses.
pub use reference::apply_lut_i8;

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
    /// Checks that the slices fit `n_in` inputs and `n_out` outputs (`n_in >= 1`) and that
    /// `clamp_min <= clamp_max`. Every kernel calls this first, so a wrong call is an error,
    /// never a panic or an out-of-bounds read.
    pub fn check(&self, n_in: usize, n_out: usize) -> Result<(), Error> {
        let n_weights = n_in.checked_mul(n_out);
        let n_words = n_out.checked_mul(4);
        let ok = n_in >= 1
            && n_weights == Some(self.weights.len())
            && n_words == Some(self.bias.len())
            && n_words == Some(self.multipliers.len())
            && self.shifts.len() == n_out
            && self.clamp_min <= self.clamp_max;
        if ok {
            Ok(())
        } else {
            Err(Error::KernelArguments)
        }
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
/// computes it, with `rq` first clamped to +-512: the same value (|zp| <= 128, so any larger
/// result saturates either way), in 32-bit arithmetic.
#[inline(always)]
pub(crate) fn requantize(params: &FcParams<'_>, acc: i32, multiplier: i32, shift: u8) -> i8 {
    let scaled = crate::fixed::rq(i64::from(acc), multiplier, shift).clamp(-512, 512) as i32;
    let y = crate::fixed::sat8(i64::from(
        i32::from(params.output_zero_point).wrapping_add(scaled),
    ));
    y.max(params.clamp_min).min(params.clamp_max)
}

/// Whether four rows of `stride` bytes starting at `rows` hold `n` weights each past their
/// start and `input` holds `n` values, `n` a positive multiple of `multiple`: what the assembly
/// inner loops read.
#[cfg(any(kiln_kernel = "dsp", kiln_kernel = "m0", kiln_kernel = "rv32"))]
#[inline(always)]
pub(crate) fn dot4_in_bounds(
    rows: &[u8],
    stride: usize,
    input: &[i8],
    n: usize,
    multiple: usize,
) -> bool {
    n > 0
        && n % multiple == 0
        && input.len() >= n
        && stride
            .checked_mul(3)
            .and_then(|last_row| last_row.checked_add(n))
            .is_some_and(|end| end <= rows.len())
}

/// Reads a little-endian `i32` from a 4-byte chunk (0 for any other length; never happens with
/// `chunks_exact(4)`).
#[inline(always)]
pub(crate) fn le_i32(chunk: &[u8]) -> i32 {
    match *chunk {
        [a, b, c, d] => i32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Tests an implementation of `fully_connected_i8` (same signature as the reference) against
/// the reference on random shapes, extreme values, tie-heavy requantization and bad lengths.
///
/// `kernel_tests!(module_name, path::to::impl_fn);`
#[cfg(test)]
macro_rules! kernel_tests {
    ($name:ident, $impl_fn:path) => {
        mod $name {
            #[test]
            fn random_shapes_match_reference() {
                $crate::kernels::harness::random_cases($impl_fn, 0x4b31_0001, 3000, 40);
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
    reference_vs_reference,
    crate::kernels::reference::fully_connected_i8
);

#[cfg(test)]
kernel_tests!(
    packed_vs_reference,
    crate::kernels::packed::fully_connected_i8
);

#[cfg(test)]
kernel_tests!(
    rows4_vs_reference,
    crate::kernels::rows4::fully_connected_i8
);
