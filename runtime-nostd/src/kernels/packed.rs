//! The packed kernel: four output rows per pass, four inputs per step, two multiply-accumulates
//! per instruction (`SMLAD` on sign-extended byte pairs). On Armv7E-M (Cortex-M4/M7) it runs on
//! the DSP instructions; elsewhere on their exact portable equivalents, so the host tests hold it
//! to the reference bit for bit.
//!
//! The lanes line up without reordering anything: `sxtb16` of a weight word pairs weights 0 and
//! 2, `sxtb16_ror8` weights 1 and 3, and the input word is split the same way once per step and
//! shared by the four rows. The sums are the reference's, in another order; `i32` wrapping
//! addition is associative, so the result is identical.

use super::simd32::{smlad, sxtb16, sxtb16_ror8};
use super::{le_i32, requantize, tail_dot, FcParams};

#[cfg(kiln_kernel = "dsp")]
use super::dsp_asm::dot4;

/// Adds to `acc[r]` the dot product of `input[..8 * n_pairs]` with row `r` of the four rows at
/// `rows` (`stride` bytes apart): the portable twin of the assembly in `dsp_asm.rs`.
#[cfg(not(kiln_kernel = "dsp"))]
fn dot4(rows: &[u8], stride: usize, input: &[i8], n_pairs: usize, acc: &mut [i32; 4]) {
    let span = n_pairs.saturating_mul(8);
    let Some(input) = input.get(..span) else {
        return;
    };
    let mut row_chunks = rows.chunks_exact(stride.max(1));
    for acc in acc.iter_mut() {
        let Some(row) = row_chunks.next().and_then(|row| row.get(..span)) else {
            return;
        };
        *acc = words_dot(row, input, *acc);
    }
}
use crate::Error;

#[inline(always)]
fn word(chunk: &[u8]) -> u32 {
    match *chunk {
        [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

#[inline(always)]
fn input_word(chunk: &[i8]) -> u32 {
    match *chunk {
        [a, b, c, d] => u32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0,
    }
}

/// `acc + sum(row[i] * input[i])` over the scalar tail (fewer than four inputs).
/// `acc + sum(w[i] * x[i])` over whole words, two lanes per `smlad`. The chunk iterators are
/// advanced by hand: zipping two `ChunksExact` keeps a dead division-by-zero panic in
/// `Zip::new` (see the reference kernel).
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
    let n_in = input.len();
    params.check(n_in, output.len())?;
    if n_in == 0 {
        return Err(Error::KernelArguments);
    }
    let n_body = n_in & !3;
    let (input_body, input_tail) = input
        .split_at_checked(n_body)
        .ok_or(Error::KernelArguments)?;

    let mut bias = params.bias.chunks_exact(4).map(le_i32);
    let mut multipliers = params.multipliers.chunks_exact(4).map(le_i32);
    let mut shifts = params.shifts.iter().copied();
    let mut outputs = output.chunks_exact_mut(4);

    // Four rows per pass: the input word is loaded and split once for all four. The first
    // `8 * n_pairs` inputs go through `dot4` (assembly on Armv7E-M), the rest word by word.
    let n_pairs = n_in / 8;
    let n_paired = n_body & !7; // 8 * n_pairs
    let (input_paired, _) = input_body
        .split_at_checked(n_paired)
        .ok_or(Error::KernelArguments)?;
    let input_words = input_body.get(n_paired..).unwrap_or(&[]);
    // Never zero (n_in >= 1), stated where the optimizer must see it: a zero chunk size panics.
    let block_len = n_in
        .checked_mul(4)
        .filter(|&len| len > 0)
        .ok_or(Error::KernelArguments)?;
    let mut blocks = params.weights.chunks_exact(block_len);
    for out4 in outputs.by_ref() {
        let Some(block) = blocks.next() else {
            break; // lengths were checked: never taken
        };
        let (Some(b0), Some(b1), Some(b2), Some(b3)) =
            (bias.next(), bias.next(), bias.next(), bias.next())
        else {
            break;
        };
        let mut acc = [b0, b1, b2, b3];
        dot4(block, n_in, input_paired, n_pairs, &mut acc);
        let mut block_rows = block.chunks_exact(n_in);
        // Only when n_in is not a multiple of 8: the last word and the last bytes.
        for acc in acc.iter_mut().take(if n_paired < n_in { 4 } else { 0 }) {
            let Some(row) = block_rows.next() else { break };
            let rest = row.get(n_paired..).unwrap_or(&[]);
            let (words, tail) = rest
                .split_at_checked(rest.len() & !3)
                .unwrap_or((rest, &[]));
            *acc = tail_dot(tail, input_tail, words_dot(words, input_words, *acc));
        }
        for (out, acc) in out4.iter_mut().zip(acc) {
            let (Some(m), Some(t)) = (multipliers.next(), shifts.next()) else {
                break;
            };
            *out = requantize(params, acc, m, t);
        }
    }
    // The rows after the last block of four (`blocks` and `rows` walk the same weights).
    let mut rows = blocks.remainder().chunks_exact(n_in);
    // The last one to three rows, one at a time.
    for out in outputs.into_remainder() {
        let (Some(row), Some(b), Some(m), Some(t)) =
            (rows.next(), bias.next(), multipliers.next(), shifts.next())
        else {
            break;
        };
        let (body, tail) = row.split_at(n_body.min(row.len()));
        *out = requantize(
            params,
            tail_dot(tail, input_tail, words_dot(body, input_body, b)),
            m,
            t,
        );
    }
    Ok(())
}
