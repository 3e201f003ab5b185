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

/// Same contract as [`super::reference::fully_connected_i8`].
pub fn fully_connected_i8(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    fully_connected_with(params, input, output, dot4)
}

/// [`fully_connected_i8`] with the portable inner loop, whatever the target: the host tests
/// hold it to the reference as well as the loop this target compiled in.
#[cfg(test)]
pub fn fully_connected_i8_portable(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    fully_connected_with(params, input, output, dot4_portable)
}

#[inline(always)]
fn fully_connected_with(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
    dot4: impl Fn(&[u8], usize, &[i8], usize, &mut [i32; 4]),
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
    // The blocks of four rows take the inputs eight at a time (the assembly's unrolling), then
    // one by one.
    let n_dot = n_in & !7;
    let (input_dot, input_rest) = input
        .split_at_checked(n_dot)
        .ok_or(Error::KernelArguments)?;
    let mut bias = params.bias.chunks_exact(4).map(le_i32);
    let mut multipliers = params.multipliers.chunks_exact(4).map(le_i32);
    let mut shifts = params.shifts.iter().copied();
    let mut outputs = output.chunks_exact_mut(4);
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
        dot4(block, n_in, input_dot, n_dot, &mut acc);
        // The last one to seven inputs.
        let mut block_rows = block.chunks_exact(n_in);
        let mut accs = [0i32; 4];
        for (out_acc, acc) in accs.iter_mut().zip(acc) {
            let tail = block_rows
                .next()
                .and_then(|row| row.get(n_dot..))
                .unwrap_or(&[]);
            *out_acc = tail_dot(tail, input_rest, acc);
        }
        // Indexed, not zipped: a chain of zipped iterators costs stack on every call.
        for (r, out) in out4.iter_mut().enumerate() {
            let (Some(&acc), Some(m), Some(t)) = (accs.get(r), multipliers.next(), shifts.next())
            else {
                break;
            };
            *out = requantize(params, acc, m, t);
        }
    }
    // The last one to three rows, one at a time.
    let mut rows = blocks.remainder().chunks_exact(n_in);
    for out in outputs.into_remainder() {
        let (Some(row), Some(b), Some(m), Some(t)) =
            (rows.next(), bias.next(), multipliers.next(), shifts.next())
        else {
            break;
        };
        let mut acc = b;
        let mut words = row.chunks_exact(4);
        for x in input_body.chunks_exact(4) {
            let Some(w) = words.next() else { break };
            acc = mac4(acc, w, x);
        }
        *out = requantize(params, tail_dot(words.remainder(), input_tail, acc), m, t);
    }
    Ok(())
}
