//! The packed kernel: four output rows per pass, four inputs per step, two multiply-accumulates
//! per instruction (`SMLAD` on sign-extended byte pairs). On Armv7E-M (Cortex-M4/M7) it runs on
//! the DSP instructions; elsewhere on their exact portable equivalents, so the host tests hold it
//! to the reference bit for bit.
//!
//! The lanes line up without reordering anything: `sxtb16` of a weight word pairs weights 0 and
//! 2, `sxtb16_ror8` weights 1 and 3, and the input word is split the same way once per step and
//! shared by the four rows. The sums are the reference's, in another order; `i32` wrapping
//! addition is associative, so the result is identical.
//!
//! [`fully_connected_i8_widened`] does the split once per layer instead of once per four rows:
//! given a workspace of [`widened_len`] bytes it writes the input's 16-bit lanes there first
//! (one load per four inputs in the inner loop instead of a load and two `sxtb16`).

#[cfg(not(kiln_kernel = "dsp"))]
use super::simd32::{smlad, sxtb16, sxtb16_ror8};
use super::FcParams;
#[cfg(not(kiln_kernel = "dsp"))]
use super::{le_i32, requantize, tail_dot};
#[cfg(not(kiln_kernel = "dsp"))]
use crate::fixed::rq_high_zp;

#[cfg(kiln_kernel = "dsp")]
pub(crate) use super::dsp_asm::{dot4, dot4_widened, fc_layer, widen_groups};

/// Adds to `acc[r]` the dot product of `input[..8 * n_pairs]` with row `r` of the four rows at
/// `rows` (`stride` bytes apart): the portable twin of the assembly in `dsp_asm.rs`.
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn dot4(rows: &[u8], stride: usize, input: &[i8], n_pairs: usize, acc: &mut [i32; 4]) {
    let span = n_pairs.saturating_mul(8);
    let Some(input) = input.get(..span) else {
        return;
    };
    for (r, acc) in acc.iter_mut().enumerate() {
        let Some(row) = super::four_rows_row(rows, stride, r, span) else {
            return;
        };
        *acc = words_dot(row, input, *acc);
    }
}
/// Adds to `acc[r]` the dot product of the first `8 * n_pairs` inputs, given widened (four
/// words per eight inputs: lanes 0/2, 1/3, 4/6, 5/7, see [`widen`]), with row `r` of the four
/// rows at `rows`: the portable twin of the assembly in `dsp_asm.rs`.
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn dot4_widened(
    rows: &[u8],
    stride: usize,
    widened: &[i8],
    n_pairs: usize,
    acc: &mut [i32; 4],
) {
    let span = n_pairs.saturating_mul(8);
    let Some(widened) = widened.get(..span.saturating_mul(2)) else {
        return;
    };
    for (r, acc) in acc.iter_mut().enumerate() {
        let Some(row) = super::four_rows_row(rows, stride, r, span) else {
            return;
        };
        *acc = dot1_widened(row, widened, n_pairs, *acc);
    }
}

/// `acc` plus the dot product of the row's first `8 * n_groups` weights with the widened input:
/// the portable twin of the assembly in `dsp_asm.rs`.
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn dot1_widened(row: &[u8], widened: &[i8], n_groups: usize, mut acc: i32) -> i32 {
    let span = n_groups.saturating_mul(8);
    let (Some(row), Some(widened)) = (row.get(..span), widened.get(..span.saturating_mul(2)))
    else {
        return acc;
    };
    for (w, x) in row.chunks_exact(4).zip(widened.chunks_exact(8)) {
        let (x02, x13) = x.split_at(4);
        let (w, x02, x13) = (word(w), input_word(x02), input_word(x13));
        acc = smlad(sxtb16_ror8(w), x13, smlad(sxtb16(w), x02, acc));
    }
    acc
}

use crate::Error;

/// The whole blocks of four rows of a layer whose `n_in` is a positive multiple of 8, from the
/// widened input, into `output[..4 * blocks]`, up to the first block with a shift outside
/// `33..=62`: the portable twin of the assembly in `dsp_asm.rs`, in its order (bias,
/// [`dot4_widened`], the output stage of [`rq_high_zp`], then both clamps). Returns the rows
/// written (0 when the slices are short or the weights not word-aligned, as the assembly's
/// wrapper does).
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn fc_blocks(
    params: &FcParams<'_>,
    n_in: usize,
    widened: &[i8],
    output: &mut [i8],
) -> usize {
    let n_rows = output.len() & !3;
    let in_bounds = n_rows > 0
        && n_in > 0
        && n_in % 8 == 0
        && widened.len() >= n_in.saturating_mul(2)
        && params.weights.as_ptr().align_offset(4) == 0
        && params.holds_rows(n_rows, n_in);
    if !in_bounds {
        return 0;
    }
    let round_zp = crate::fixed::round_zp(params.output_zero_point);
    let mut first = 0usize;
    for out4 in output.chunks_exact_mut(4) {
        let (rows, bias, multipliers, shifts) = (
            tail_from(params.weights, first.wrapping_mul(n_in)),
            tail_from(params.bias, first.wrapping_mul(4)),
            tail_from(params.multipliers, first.wrapping_mul(4)),
            tail_from(params.shifts, first),
        );
        let high = shifts
            .iter()
            .take(4)
            .all(|&t| crate::fixed::rq_acc_is_high(t));
        if !high {
            return first;
        }
        let mut acc = [0i32; 4];
        for (acc, bias) in acc.iter_mut().zip(bias.chunks_exact(4)) {
            *acc = le_i32(bias);
        }
        dot4_widened(rows, n_in, widened, n_in / 8, &mut acc);
        let stage = acc.iter().zip(multipliers.chunks_exact(4)).zip(shifts);
        for (out, ((&acc, multiplier), &shift)) in out4.iter_mut().zip(stage) {
            let q = rq_high_zp(acc, le_i32(multiplier), shift, round_zp);
            *out = q.max(params.clamp_min).min(params.clamp_max);
        }
        first = first.wrapping_add(4);
    }
    n_rows
}

/// `bytes[start..]`, empty past the end.
#[cfg(not(kiln_kernel = "dsp"))]
fn tail_from(bytes: &[u8], start: usize) -> &[u8] {
    bytes.get(start..).unwrap_or(&[])
}

/// The workspace bytes [`fully_connected_i8_widened`] needs for `n_in` inputs: two bytes per
/// input of the first `8 * (n_in / 8)`, plus up to three to reach a word boundary.
pub const fn widened_len(n_in: usize) -> usize {
    (n_in / 8).saturating_mul(16).saturating_add(3)
}

/// Writes the 16-bit lanes of `input` (a multiple of four bytes) into the word-aligned part of
/// `workspace`, two words per input word (`sxtb16` and `sxtb16_ror8` of it), and returns that
/// part; `None` when the workspace is too short.
pub(crate) fn widen<'w>(input: &[i8], workspace: &'w mut [i8]) -> Option<&'w [i8]> {
    let skip = workspace.as_ptr().align_offset(4);
    let len = input.len().checked_mul(2)?;
    let end = skip.checked_add(len)?;
    let lanes = workspace.get_mut(skip..end)?;
    widen_groups(input, lanes, input.len() / 8);
    Some(lanes)
}

/// Writes the 16-bit lanes of `input[..8 * n_pairs]` into `widened` (16 bytes per eight
/// inputs): the portable twin of the assembly in `dsp_asm.rs`.
#[cfg(not(kiln_kernel = "dsp"))]
fn widen_groups(input: &[i8], widened: &mut [i8], n_pairs: usize) {
    let words = input.chunks_exact(4).map(input_word);
    write_lanes(words.take(n_pairs.saturating_mul(2)), widened);
}

/// Per word, its lanes 0/2 and 1/3 (`sxtb16`, `sxtb16_ror8`) into the next 8 bytes of `out`:
/// the widened layout the `SMLAD` loops read, for inputs and for a convolution's weight rows.
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn write_lanes(words: impl Iterator<Item = u32>, out: &mut [i8]) {
    for (x, out) in words.zip(out.chunks_exact_mut(8)) {
        let pair = (u64::from(sxtb16_ror8(x)) << 32) | u64::from(sxtb16(x));
        for (o, b) in out.iter_mut().zip(pair.to_le_bytes()) {
            *o = b as i8;
        }
    }
}

#[cfg(not(kiln_kernel = "dsp"))]
#[inline(always)]
fn word(chunk: &[u8]) -> u32 {
    match *chunk {
        [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

#[cfg(not(kiln_kernel = "dsp"))]
#[inline(always)]
fn input_word(chunk: &[i8]) -> u32 {
    match *chunk {
        [a, b, c, d] => u32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0,
    }
}

/// `acc + sum(w[i] * x[i])` over whole words, two lanes per `smlad`. The chunk iterators are
/// advanced by hand: zipping two `ChunksExact` keeps a dead division-by-zero panic in
/// `Zip::new` (see the reference kernel).
#[cfg(not(kiln_kernel = "dsp"))]
#[inline(always)]
fn words_dot(weights: &[u8], input: &[i8], mut acc: i32) -> i32 {
    let mut inputs = input.chunks_exact(4);
    for w in weights.chunks_exact(4) {
        let Some(x) = inputs.next() else { break };
        let (w, x) = (word(w), input_word(x));
        acc = smlad(
            sxtb16_ror8(w),
            sxtb16_ror8(x),
            smlad(sxtb16(w), sxtb16(x), acc),
        );
    }
    acc
}

/// Same contract as [`super::reference::fully_connected_i8`].
pub fn fully_connected_i8(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    if fc_layer(params, input, &mut [], output) {
        Ok(())
    } else {
        Err(Error::KernelArguments)
    }
}

/// [`fully_connected_i8`] with the input split into 16-bit lanes once, into `workspace`, instead
/// of once per four rows. A workspace shorter than [`widened_len`]`(input.len())` bytes is not
/// an error: the kernel then splits as it goes, with the same results. Inlined: in a model's
/// run the compiler then drops the checks the record's split already made.
#[inline(always)]
pub fn fully_connected_i8_widened(
    params: &FcParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    if fc_layer(params, input, workspace, output) {
        Ok(())
    } else {
        Err(Error::KernelArguments)
    }
}

/// The whole layer, in the order of the assembly in `dsp_asm.rs` (its portable twin): the
/// groups of 8 inputs widened into the workspace where it has room ([`widen`]); then with the
/// widened input, inputs in groups of 8 and word-aligned weights, the whole blocks of four rows
/// go through [`fc_blocks`], up to a block with a shift outside `33..=62` (rare: a scale of at
/// least 1/4). Every other row (the last `n_out % 4`, the rows from that block on, or all of
/// them) goes one at a time: the groups of 8 inputs from the widened input where there is one
/// ([`dot1_widened`]), else two `SMLAD` per word of inputs split as they are read; then the
/// last `n_in % 8` inputs byte by byte and the output stage of any shift. Returns `true` if
/// the arguments pass [`FcParams::check`] (else `false`, nothing written).
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn fc_layer(
    params: &FcParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> bool {
    let n_in = input.len();
    if !params.fits(n_in, output.len()) {
        return false;
    }
    let n_groups = n_in / 8;
    let widened = input
        .get(..n_groups.wrapping_mul(8))
        .and_then(|groups| widen(groups, workspace))
        .filter(|lanes| !lanes.is_empty());
    let mut row_idx = match widened {
        Some(widened) if n_in % 8 == 0 => fc_blocks(params, n_in, widened, output),
        _ => 0,
    };
    let span = n_groups.wrapping_mul(8);
    let (input_groups, input_tail) = input.split_at(span);
    for out in output.get_mut(row_idx..).unwrap_or(&mut []) {
        let at = row_idx.wrapping_mul(4);
        let (Some(row), Some(bias), Some(multiplier), Some(&shift)) = (
            params.weights.get(row_idx.wrapping_mul(n_in)..),
            params.bias.get(at..at.wrapping_add(4)),
            params.multipliers.get(at..at.wrapping_add(4)),
            params.shifts.get(row_idx),
        ) else {
            break;
        };
        let (row_groups, row_tail) = row.split_at(span.min(row.len()));
        let acc = match widened {
            Some(widened) => dot1_widened(row_groups, widened, n_groups, le_i32(bias)),
            None => words_dot(row_groups, input_groups, le_i32(bias)),
        };
        *out = requantize(
            params,
            tail_dot(row_tail, input_tail, acc),
            le_i32(multiplier),
            shift,
        );
        row_idx = row_idx.wrapping_add(1);
    }
    true
}
