//! The kernel for cores without SIMD (Cortex-M0/M0+/M3, RISC-V rv32imc): four output rows per
//! pass, so each input byte is loaded once for four multiply-accumulates, and four inputs per
//! step, so the loop and pointer overhead is paid once per sixteen. Plain `i32` arithmetic in
//! the reference's operations, summed in another order (wrapping addition is associative), so
//! the result is the reference's bit for bit.

use super::{le_i32, requantize, tail_dot, FcParams};
use crate::Error;

#[cfg(kiln_kernel = "m0")]
pub(crate) use super::m0_asm::dot4;
#[cfg(kiln_kernel = "rv32")]
pub(crate) use super::rv32_asm::dot4;
#[cfg(kiln_kernel = "sse2")]
pub(crate) use super::sse2::dot4;
#[cfg(not(any(kiln_kernel = "m0", kiln_kernel = "rv32", kiln_kernel = "sse2")))]
pub(crate) use dot4_portable as dot4;

/// Adds to `acc[r]` the dot product of `input[..n]` with row `r` of the four rows at `rows`
/// (`stride` bytes apart), four inputs per step (`n` is a multiple of 8): the portable twin of
/// `m0_asm.rs`, `rv32_asm.rs` and `sse2.rs` (the host tests run it too).
#[cfg(any(
    test,
    not(any(kiln_kernel = "m0", kiln_kernel = "rv32", kiln_kernel = "sse2"))
))]
#[inline(always)]
pub(crate) fn dot4_portable(
    rows: &[u8],
    stride: usize,
    input: &[i8],
    n: usize,
    acc: &mut [i32; 4],
) {
    let Some(input) = input.get(..n) else { return };
    let row = |r: usize| super::four_rows_row(rows, stride, r, n);
    let (Some(r0), Some(r1), Some(r2), Some(r3)) = (row(0), row(1), row(2), row(3)) else {
        return;
    };
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    // The chunk iterators are advanced by hand (see the reference kernel).
    let (mut w0, mut w1, mut w2, mut w3) = (
        r0.chunks_exact(4),
        r1.chunks_exact(4),
        r2.chunks_exact(4),
        r3.chunks_exact(4),
    );
    for x in input.chunks_exact(4) {
        let (Some(c0), Some(c1), Some(c2), Some(c3)) = (w0.next(), w1.next(), w2.next(), w3.next())
        else {
            break;
        };
        a0 = mac4(a0, c0, x);
        a1 = mac4(a1, c1, x);
        a2 = mac4(a2, c2, x);
        a3 = mac4(a3, c3, x);
    }
    *acc = [a0, a1, a2, a3];
}

#[inline(always)]
fn mac4(acc: i32, w: &[u8], x: &[i8]) -> i32 {
    match (w, x) {
        (&[w0, w1, w2, w3], &[x0, x1, x2, x3]) => acc
            .wrapping_add(i32::from(w0 as i8).wrapping_mul(i32::from(x0)))
            .wrapping_add(i32::from(w1 as i8).wrapping_mul(i32::from(x1)))
            .wrapping_add(i32::from(w2 as i8).wrapping_mul(i32::from(x2)))
            .wrapping_add(i32::from(w3 as i8).wrapping_mul(i32::from(x3))),
        _ => acc,
    }
}

/// Same contract as [`super::reference::fully_connected_i8`]. On RV32 the whole blocks of eight
/// rows of a layer with inputs in sixteens go through one assembly call first
/// (`rv32_asm::fc_blocks8`), output stage included, and the other rows one at a time.
pub fn fully_connected_i8(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    #[cfg(kiln_kernel = "rv32")]
    return blocks_then_rows(params, input, output, super::rv32_asm::fc_blocks8);
    #[cfg(not(kiln_kernel = "rv32"))]
    fully_connected_with(params, input, output, dot4, |_, _, _| 0)
}

/// The RV32 layer: the rows `blocks` writes, then every other row alone through
/// [`row_output`]. Four rows at a time (`fully_connected_with`) would share each input byte,
/// but their frame, inlined or not, adds to the blocks' call: MNIST 784-128-10's inference
/// stack is 256 B this way, 352 B with the four-row loop, and the code 992 B less.
#[cfg(any(kiln_kernel = "rv32", test))]
#[inline(always)]
fn blocks_then_rows(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
    blocks: impl Fn(&FcParams<'_>, &[i8], &mut [i8]) -> usize,
) -> Result<(), Error> {
    params.check(input.len(), output.len())?;
    let done_rows = blocks(params, input, output);
    for (row, out) in output.iter_mut().enumerate().skip(done_rows) {
        // `check` proved every row's slices, so `row_output` never gives `None`
        *out = row_output(params, input, row).unwrap_or(0);
    }
    Ok(())
}

/// Row `row` of a checked layer: bias, dot product word by word then byte by byte, output
/// stage. `None` if its slices are short. Out of line: a small frame of its own.
#[cfg(any(kiln_kernel = "rv32", test))]
#[inline(never)]
fn row_output(params: &FcParams<'_>, input: &[i8], row: usize) -> Option<i8> {
    let n_in = input.len();
    let n_body = n_in & !3;
    let at = row.wrapping_mul(4);
    let start = row.wrapping_mul(n_in);
    let weights = params.weights.get(start..start.wrapping_add(n_in))?;
    let bias = params.bias.get(at..at.wrapping_add(4))?;
    let multiplier = params.multipliers.get(at..at.wrapping_add(4))?;
    let shift = *params.shifts.get(row)?;
    let (body_in, tail_in) = input.split_at_checked(n_body)?;
    let (body_w, tail_w) = weights.split_at_checked(n_body)?;
    let mut acc = le_i32(bias);
    for (w, x) in body_w.chunks_exact(4).zip(body_in.chunks_exact(4)) {
        acc = mac4(acc, w, x);
    }
    acc = tail_dot(tail_w, tail_in, acc);
    Some(requantize(params, acc, le_i32(multiplier), shift))
}

/// [`fully_connected_i8`] with the portable inner loop, whatever the target: the host tests
/// hold it to the reference as well as the loop this target compiled in.
#[cfg(test)]
pub fn fully_connected_i8_portable(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    fully_connected_with(params, input, output, dot4_portable, |_, _, _| 0)
}

/// [`fully_connected_i8`] as it runs on RV32, with the portable twin of the eight-row blocks.
#[cfg(test)]
pub fn fully_connected_i8_blocks8_portable(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    blocks_then_rows(params, input, output, fc_blocks8_portable)
}

/// The whole blocks of eight rows of a layer whose input is a positive multiple of 16 long,
/// into `output[..8 * blocks]`, up to the first block with a shift outside `33..=62`: the
/// portable twin of `rv32_asm::fc_blocks8`, in its order (bias, the dot product, the output
/// stage of [`crate::fixed::rq_high_zp`], then both clamps). Returns the rows written (0 when
/// the slices are short, as the assembly's wrapper does).
#[cfg(test)]
pub(crate) fn fc_blocks8_portable(params: &FcParams<'_>, input: &[i8], output: &mut [i8]) -> usize {
    let n_in = input.len();
    let n_rows = output.len() & !7;
    let in_bounds = n_rows > 0 && n_in > 0 && n_in % 16 == 0 && params.holds_rows(n_rows, n_in);
    if !in_bounds {
        return 0;
    }
    let round_zp = crate::fixed::round_zp(params.output_zero_point);
    for (block, out8) in output.chunks_exact_mut(8).enumerate() {
        let first = block * 8;
        let shifts = &params.shifts[first..first + 8];
        if !shifts.iter().all(|&t| crate::fixed::rq_acc_is_high(t)) {
            return first;
        }
        for (r, out) in out8.iter_mut().enumerate() {
            let row = first + r;
            let weights = &params.weights[row * n_in..(row + 1) * n_in];
            let acc = tail_dot(weights, input, le_i32(&params.bias[row * 4..row * 4 + 4]));
            let multiplier = le_i32(&params.multipliers[row * 4..row * 4 + 4]);
            let q = crate::fixed::rq_high_zp(acc, multiplier, shifts[r], round_zp);
            *out = q.max(params.clamp_min).min(params.clamp_max);
        }
    }
    n_rows
}

/// The portable twin of the Cortex-M0 layer routine (`m0_asm.rs`), in its order: blocks of four
/// rows, then the last one to three two at a time (a lone row paired with row 0 again, its
/// output not stored), each row's bias, dot product and output stage: `rq_high_zp` for a shift
/// in `33..=62`, else `rq_acc`, then both clamps. The host tests hold it to the reference.
#[cfg(test)]
pub fn fully_connected_i8_m0_portable(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let n_in = input.len();
    params.check(n_in, output.len())?;
    let n_out = output.len();
    let round_zp = crate::fixed::round_zp(params.output_zero_point);
    let mut first = 0;
    while first < n_out {
        let block = if n_out - first >= 4 { 4 } else { 2 };
        let stored = block.min(n_out - first);
        let mut acc = [0i32; 4];
        for (r, acc) in acc.iter_mut().enumerate().take(block) {
            let row = first + if r < stored { r } else { 0 };
            let weights = &params.weights[row * n_in..(row + 1) * n_in];
            let bias = le_i32(&params.bias[row * 4..row * 4 + 4]);
            *acc = tail_dot(weights, input, bias);
        }
        for (r, &acc) in acc.iter().enumerate().take(stored) {
            let row = first + r;
            let multiplier = le_i32(&params.multipliers[row * 4..row * 4 + 4]);
            let shift = params.shifts[row];
            output[row] = if crate::fixed::rq_acc_is_high(shift) {
                crate::fixed::rq_high_zp(acc, multiplier, shift, round_zp)
                    .max(params.clamp_min)
                    .min(params.clamp_max)
            } else {
                requantize(params, acc, multiplier, shift)
            };
        }
        first += stored;
    }
    Ok(())
}

/// The rows from the first one `blocks` did not write (all of them where it writes none): four
/// at a time through `dot4`, then word by word and byte by byte, and one output stage.
#[cfg(any(not(kiln_kernel = "rv32"), test))]
#[inline(always)]
fn fully_connected_with(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
    dot4: impl Fn(&[u8], usize, &[i8], usize, &mut [i32; 4]),
    blocks: impl Fn(&FcParams<'_>, &[i8], &mut [i8]) -> usize,
) -> Result<(), Error> {
    let n_in = input.len();
    params.check(n_in, output.len())?;
    let done_rows = blocks(params, input, output);
    let n_body = n_in & !3;
    // Whole blocks of four rows take the inputs eight at a time (the assembly's unrolling);
    // every row then finishes word by word and byte by byte, through one output stage: one
    // copy of each loop, whatever the shape.
    let n_dot = n_in & !7;
    let input_dot = input.get(..n_dot).unwrap_or(&[]);
    let mut first = done_rows;
    for out4 in output.get_mut(done_rows..).unwrap_or(&mut []).chunks_mut(4) {
        // `check` proved `n_out * n_in` weights and `4 * n_out` bias and multiplier bytes: no
        // product below overflows, and every `get` below is in bounds.
        let block = params
            .weights
            .get(first.wrapping_mul(n_in)..)
            .unwrap_or(&[]);
        let words = first.wrapping_mul(4);
        let bias = params.bias.get(words..).unwrap_or(&[]);
        let mut acc = [0i32; 4];
        for (acc, bias) in acc.iter_mut().zip(bias.chunks_exact(4)) {
            *acc = le_i32(bias);
        }
        let mut done = 0; // inputs already in `acc`
        if out4.len() == 4 && n_dot > 0 {
            dot4(block, n_in, input_dot, n_dot, &mut acc);
            done = n_dot;
        }
        if done < n_in {
            let words_in = input.get(done..n_body).unwrap_or(&[]);
            let tail_in = input.get(n_body..).unwrap_or(&[]);
            let rows = block.chunks_exact(n_in.max(1)).take(out4.len());
            for (acc, row) in acc.iter_mut().zip(rows) {
                let mut sum = *acc;
                let mut weights = row.get(done..n_body).unwrap_or(&[]).chunks_exact(4);
                for x in words_in.chunks_exact(4) {
                    let Some(w) = weights.next() else { break };
                    sum = mac4(sum, w, x);
                }
                *acc = tail_dot(row.get(n_body..).unwrap_or(&[]), tail_in, sum);
            }
        }
        let multipliers = params.multipliers.get(words..).unwrap_or(&[]);
        let shifts = params.shifts.get(first..).unwrap_or(&[]);
        // Indexed, not zipped: a chain of zipped iterators costs stack on every call.
        for (r, out) in out4.iter_mut().enumerate() {
            let at = r.wrapping_mul(4);
            let (Some(&acc), Some(m), Some(&t)) = (
                acc.get(r),
                multipliers.get(at..at.wrapping_add(4)),
                shifts.get(r),
            ) else {
                break;
            };
            *out = requantize(params, acc, le_i32(m), t);
        }
        first = first.wrapping_add(4);
    }
    Ok(())
}
