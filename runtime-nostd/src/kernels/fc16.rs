//! The optimized dense kernel on int16 activations (the 16x8 scheme): four output rows per pass
//! over the input, so each int16 input is loaded once for four multiply-accumulates. The
//! products and the output stage are the reference's (`reference::fully_connected_i16`): the
//! same integers, and an `i32` sum whose order cannot matter (the loader proves it never
//! overflows), so the same bits.
//!
//! On Armv7E-M the inner loop takes four inputs at a time in `SMLAD`'s 16-bit lanes, in
//! assembly (`dsp_asm::dot4_i16`, eight inputs per iteration): the inputs `[x0, x1]`,
//! `[x2, x3]` are already int16 lanes, repacked once to `[x0, x2]`, `[x1, x3]` (`PKHBT`,
//! `PKHTB`) for the four rows, and each row's four int8 weights become `[w0, w2]`, `[w1, w3]`
//! with `SXTB16`: two `SMLAD`s per row for four multiply-accumulates. Its portable twin
//! (`dot4_lanes`, tests only) is held to the plain loop on the host, and the firmware holds
//! the assembly to the reference on the device. Elsewhere a plain multiply-accumulate per
//! weight ([`dot4_scalar`]) is the loop.

#[cfg(test)]
use super::simd32::{smlad, sxtb16, sxtb16_ror8};
use super::{le_i16, le_i32, put_i16, Fc16Params};
use crate::fixed::{rq_acc, sat16};
use crate::Error;

/// Writes `max(sat16(rq(acc, M, t)), clamp_min)` into an output pair: `rq_acc` is `rq`
/// saturated to `i32`, which saturates to the same `i16`.
#[inline(always)]
fn write_output(pair: &mut [i8], acc: i32, (multiplier, shift): (&[u8], u8), clamp_min: i16) {
    let y = sat16(i64::from(rq_acc(acc, le_i32(multiplier), shift))).max(clamp_min);
    put_i16(pair, y);
}

/// `n_in` once the slices fit (`Fc16Params::check_lengths`, and at least one input).
#[inline(always)]
fn checked_inputs(params: &Fc16Params<'_>, input: &[i8], output: &[i8]) -> Result<usize, Error> {
    let n_in = params.check_lengths(input, output)?;
    if n_in == 0 {
        return Err(Error::KernelArguments);
    }
    Ok(n_in)
}

/// The int16 value of a little-endian pair, widened for the products.
#[inline(always)]
fn value(pair: &[i8]) -> i32 {
    i32::from(le_i16(pair))
}

/// The four rows' dot products with `input` (little-endian int16), added to `acc`: the
/// target's loop. `rows` are the four rows' `n_in` weights each.
#[inline(always)]
fn dot4(input: &[i8], rows: [&[u8]; 4], block: &[u8], acc: &mut [i32; 4]) {
    #[cfg(kiln_kernel = "dsp")]
    {
        // Whole groups of eight inputs in assembly, the rest one weight at a time.
        let n_in = rows[0].len();
        let n_groups = n_in / 8;
        super::dsp_asm::dot4_i16(block, n_in, input, n_groups, acc);
        let done = n_groups.wrapping_mul(8);
        let rest = input.get(done.wrapping_mul(2)..).unwrap_or(&[]);
        let [w0, w1, w2, w3] = rows;
        let tails = [
            w0.get(done..).unwrap_or(&[]),
            w1.get(done..).unwrap_or(&[]),
            w2.get(done..).unwrap_or(&[]),
            w3.get(done..).unwrap_or(&[]),
        ];
        dot4_scalar(rest, tails, acc);
    }
    #[cfg(not(kiln_kernel = "dsp"))]
    {
        let _ = block;
        dot4_scalar(input, rows, acc);
    }
}

/// One multiply-accumulate per weight.
#[inline(always)]
pub(crate) fn dot4_scalar(input: &[i8], [w0, w1, w2, w3]: [&[u8]; 4], acc: &mut [i32; 4]) {
    for ((((x, &a), &b), &c), &d) in input.chunks_exact(2).zip(w0).zip(w1).zip(w2).zip(w3) {
        // |w * x| <= 2^22; the loader proves the sums fit
        let x = value(x);
        acc[0] = acc[0].wrapping_add(i32::from(a as i8).wrapping_mul(x));
        acc[1] = acc[1].wrapping_add(i32::from(b as i8).wrapping_mul(x));
        acc[2] = acc[2].wrapping_add(i32::from(c as i8).wrapping_mul(x));
        acc[3] = acc[3].wrapping_add(i32::from(d as i8).wrapping_mul(x));
    }
}

/// Four inputs per step in 16-bit lanes (see the module documentation), the last few with
/// [`dot4_scalar`]: the portable twin of `dsp_asm::dot4_i16` (the same instructions' exact
/// equivalents, group by group), tested here against the plain loop.
#[cfg(test)]
pub(crate) fn dot4_lanes(input: &[i8], rows: [&[u8]; 4], acc: &mut [i32; 4]) {
    let word = |b: &[i8]| match *b {
        [a, b, c, d] => u32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0,
    };
    let weights = |b: &[u8]| match *b {
        [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    };
    let [w0, w1, w2, w3] = rows;
    let groups = input.chunks_exact(8);
    let done = input.len().wrapping_sub(groups.remainder().len());
    // The chunk iterators advance by hand: zipping `ChunksExact`s goes through `Zip::new`'s
    // random-access path, whose division by the chunk size keeps a (dead) panic.
    let (mut r0, mut r1, mut r2, mut r3) = (
        w0.chunks_exact(4),
        w1.chunks_exact(4),
        w2.chunks_exact(4),
        w3.chunks_exact(4),
    );
    for x in groups {
        // four weights per row for every four inputs, eight bytes per group: never taken
        let (Some(a), Some(b), Some(c), Some(d), &[x0, x1, x2, x3, x4, x5, x6, x7]) =
            (r0.next(), r1.next(), r2.next(), r3.next(), x)
        else {
            break;
        };
        let x01 = word(&[x0, x1, x2, x3]);
        let x23 = word(&[x4, x5, x6, x7]);
        // PKHBT and PKHTB: [x0, x2] and [x1, x3]
        let x02 = (x01 & 0xffff) | (x23 << 16);
        let x13 = (x23 & 0xffff_0000) | (x01 >> 16);
        for (acc, w) in acc.iter_mut().zip([a, b, c, d]) {
            let w = weights(w);
            *acc = smlad(sxtb16(w), x02, *acc);
            *acc = smlad(sxtb16_ror8(w), x13, *acc);
        }
    }
    fn tail(w: &[u8], from: usize) -> &[u8] {
        w.get(from..).unwrap_or(&[])
    }
    let from = done / 2;
    if let Some(rest) = input.get(done..) {
        let rows = [
            tail(w0, from),
            tail(w1, from),
            tail(w2, from),
            tail(w3, from),
        ];
        dot4_scalar(rest, rows, acc);
    }
}

/// One dense layer on int16 activations, four rows at a time (see the module documentation);
/// the arguments and errors are `reference::fully_connected_i16`'s.
pub fn fully_connected_i16(
    params: &Fc16Params<'_>,
    input: &[i8],
    output_bytes: &mut [i8],
) -> Result<(), Error> {
    let n_in = checked_inputs(params, input, output_bytes)?;
    let clamp_min = params.clamp_min;
    let mut rows = params.weights.chunks_exact(n_in.wrapping_mul(4));
    let mut bias = params.bias.chunks_exact(16);
    let mut multipliers = params.multipliers.chunks_exact(16);
    let mut shifts = params.shifts.chunks_exact(4);
    let mut outputs = output_bytes.chunks_exact_mut(8);
    for out in &mut outputs {
        let (Some(block), Some(b), Some(m), Some(t)) =
            (rows.next(), bias.next(), multipliers.next(), shifts.next())
        else {
            break; // lengths were checked: never taken
        };
        let Some((w0, rest)) = block.split_at_checked(n_in) else {
            break;
        };
        let Some((w1, rest)) = rest.split_at_checked(n_in) else {
            break;
        };
        let Some((w2, w3)) = rest.split_at_checked(n_in) else {
            break;
        };
        let mut acc = [0i32; 4];
        for (a, word) in acc.iter_mut().zip(b.chunks_exact(4)) {
            *a = le_i32(word);
        }
        dot4(input, [w0, w1, w2, w3], block, &mut acc);
        for (((pair, &acc), mk), &tk) in out
            .chunks_exact_mut(2)
            .zip(&acc)
            .zip(m.chunks_exact(4))
            .zip(t)
        {
            write_output(pair, acc, (mk, tk), clamp_min);
        }
    }
    // The last rows, one at a time.
    let rest_rows = rows.remainder().chunks_exact(n_in);
    let rest = bias
        .remainder()
        .chunks_exact(4)
        .zip(multipliers.remainder().chunks_exact(4))
        .zip(shifts.remainder());
    for ((row, ((b, m), &t)), pair) in rest_rows
        .zip(rest)
        .zip(outputs.into_remainder().chunks_exact_mut(2))
    {
        let mut acc = le_i32(b);
        for (x, &w) in input.chunks_exact(2).zip(row) {
            acc = acc.wrapping_add(i32::from(w as i8).wrapping_mul(value(x)));
        }
        write_output(pair, acc, (m, t), clamp_min);
    }
    Ok(())
}

/// One dense layer on int16 activations, two rows at a time: Cortex-M0's loop (its eight low
/// registers hold two rows' accumulators and pointers, the input pointer and the values; four
/// rows spill). The arguments and errors are `reference::fully_connected_i16`'s.
#[cfg_attr(not(any(kiln_kernel = "m0", test)), allow(dead_code))]
pub fn fully_connected_i16_pairs(
    params: &Fc16Params<'_>,
    input: &[i8],
    output_bytes: &mut [i8],
) -> Result<(), Error> {
    let n_in = checked_inputs(params, input, output_bytes)?;
    let clamp_min = params.clamp_min;
    let mut rows = params.weights.chunks_exact(n_in);
    let mut bias = params.bias.chunks_exact(4);
    let mut multipliers = params.multipliers.chunks_exact(4);
    let mut shifts = params.shifts.iter();
    let mut outputs = output_bytes.chunks_exact_mut(2);
    while let (Some(w0), Some(b0), Some(m0), Some(&t0), Some(o0)) = (
        rows.next(),
        bias.next(),
        multipliers.next(),
        shifts.next(),
        outputs.next(),
    ) {
        let mut acc0 = le_i32(b0);
        let second = (
            rows.next(),
            bias.next(),
            multipliers.next(),
            shifts.next(),
            outputs.next(),
        );
        if let (Some(w1), Some(b1), Some(m1), Some(&t1), Some(o1)) = second {
            let mut acc1 = le_i32(b1);
            for ((x, &a), &b) in input.chunks_exact(2).zip(w0).zip(w1) {
                let x = value(x);
                acc0 = acc0.wrapping_add(i32::from(a as i8).wrapping_mul(x));
                acc1 = acc1.wrapping_add(i32::from(b as i8).wrapping_mul(x));
            }
            write_output(o1, acc1, (m1, t1), clamp_min);
        } else {
            for (x, &a) in input.chunks_exact(2).zip(w0) {
                acc0 = acc0.wrapping_add(i32::from(a as i8).wrapping_mul(value(x)));
            }
        }
        write_output(o0, acc0, (m0, t0), clamp_min);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::reference;
    use super::*;
    use crate::testutil::Rng;
    use std::vec::Vec;

    /// Random layers of every row count (multiples of four and remainders), extreme weights,
    /// inputs and shifts: the same bytes as the reference.
    #[test]
    fn equals_the_reference_bit_for_bit() {
        let mut rng = Rng::new(1616);
        for case in 0..400 {
            let n_in = rng.usize_in(1, 40);
            let n_out = rng.usize_in(1, 13);
            let weights: Vec<u8> = (0..n_in * n_out)
                .map(|_| match case % 3 {
                    0 => rng.i8_in(-127, 127) as u8,
                    1 => [127i8, -127][rng.usize_in(0, 1)] as u8,
                    _ => rng.i8() as u8,
                })
                .collect();
            let bias: Vec<u8> = (0..n_out)
                .flat_map(|_| (rng.range_i64(-1 << 24, 1 << 24) as i32).to_le_bytes())
                .collect();
            let multipliers: Vec<u8> = (0..n_out)
                .flat_map(|_| (rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32).to_le_bytes())
                .collect();
            let shifts: Vec<u8> = (0..n_out).map(|_| rng.usize_in(1, 62) as u8).collect();
            let input: Vec<i8> = (0..n_in)
                .flat_map(|_| {
                    let x = if case % 5 == 0 {
                        [i16::MIN, i16::MAX][rng.usize_in(0, 1)]
                    } else {
                        rng.range_i64(-32768, 32767) as i16
                    };
                    x.to_le_bytes().map(|b| b as i8)
                })
                .collect();
            let params = Fc16Params {
                weights: &weights,
                bias: &bias,
                multipliers: &multipliers,
                shifts: &shifts,
                clamp_min: if case % 2 == 0 { 0 } else { i16::MIN },
            };
            let mut expected = std::vec![0i8; 2 * n_out];
            let mut actual = std::vec![1i8; 2 * n_out];
            reference::fully_connected_i16(&params, &input, &mut expected).unwrap();
            fully_connected_i16(&params, &input, &mut actual).unwrap();
            assert_eq!(actual, expected, "case {case}: {n_in} -> {n_out}");
            let mut pairs = std::vec![1i8; 2 * n_out];
            fully_connected_i16_pairs(&params, &input, &mut pairs).unwrap();
            assert_eq!(pairs, expected, "case {case}: two rows at a time");
            // Both inner loops, whichever this target dispatches to.
            if n_out >= 4 {
                let rows: [&[u8]; 4] = [0, 1, 2, 3].map(|r| &weights[r * n_in..(r + 1) * n_in]);
                let (mut lanes, mut scalar) = ([7i32; 4], [7i32; 4]);
                dot4_lanes(&input, rows, &mut lanes);
                dot4_scalar(&input, rows, &mut scalar);
                assert_eq!(lanes, scalar, "case {case}: {n_in} inputs");
            }
        }
        // and the same refusals
        let params = Fc16Params {
            weights: &[1, 2],
            bias: &[0; 4],
            multipliers: &[0, 0, 0, 64],
            shifts: &[31],
            clamp_min: 0,
        };
        assert_eq!(
            fully_connected_i16(&params, &[0, 0, 0], &mut [0, 0]),
            Err(Error::KernelArguments)
        );
        assert_eq!(
            fully_connected_i16(&params, &[0, 0], &mut [0, 0]),
            Err(Error::KernelArguments)
        );
    }
}
