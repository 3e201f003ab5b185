//! The scalar reference kernel: the specification of `docs/quantization.md`, one output
//! channel at a time. No float, no panic, no allocation.

use super::conv::{ConvParams, PoolParams};
use super::{le_i16, le_i32, put_i16, AddParams, Fc16Params, FcParams};
use crate::fixed::{rq, sat16, sat8};
use crate::Error;

/// The one output stage: `clamp(sat8(zp + rq(acc, M, t)), lo, hi)`.
#[inline(always)]
pub(crate) fn requantize(acc: i32, multiplier: i32, shift: u8, zp: i8, lo: i8, hi: i8) -> i8 {
    let y = sat8(i64::from(zp).saturating_add(rq(i64::from(acc), multiplier, shift)));
    y.max(lo).min(hi)
}

/// One dense int8 layer: `output[o] = clamp(sat8(zp + rq(acc[o], M[o], t[o])))` with
/// `acc[o] = bias[o] + sum_i w[o][i] * input[i]` (see [`FcParams`]).
///
/// `n_in = input.len()` and `n_out = output.len()`; every slice of `params` must fit them
/// ([`FcParams::check`]), or the call returns [`Error::KernelArguments`] and writes nothing.
///
/// The accumulator is an `i32`. A model loader proves `|bias| + 128 * sum |w| <= i32::MAX` per
/// channel, so it never overflows; for unvalidated direct calls the sum wraps instead of
/// panicking.
pub fn fully_connected_i8(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let n_in = input.len();
    params.check(n_in, output.len())?;
    if n_in == 0 {
        // already refused by `check`; repeated here so that every optimization level sees that
        // `chunks_exact` cannot panic
        return Err(Error::KernelArguments);
    }
    // The chunk iterators are advanced by hand: zipping two `ChunksExact` goes through
    // `Zip::new`'s random-access path, whose division by the chunk size keeps a (dead)
    // division-by-zero panic in optimized firmware builds.
    let mut rows = params.weights.chunks_exact(n_in);
    let mut bias = params.bias.chunks_exact(4).map(le_i32);
    let mut multipliers = params.multipliers.chunks_exact(4).map(le_i32);
    for (out, &t) in output.iter_mut().zip(params.shifts) {
        let (Some(row), Some(b), Some(m)) = (rows.next(), bias.next(), multipliers.next()) else {
            break; // lengths were checked: never taken
        };
        let mut acc = b;
        for (&w, &x) in row.iter().zip(input) {
            // |w * x| <= 2^14
            acc = acc.wrapping_add(i32::from(w as i8).wrapping_mul(i32::from(x)));
        }
        *out = requantize(
            acc,
            m,
            t,
            params.output_zero_point,
            params.clamp_min,
            params.clamp_max,
        );
    }
    Ok(())
}

/// One dense layer on int16 activations (see [`Fc16Params`]): `output[o] =
/// max(sat16(rq(acc[o], M[o], t[o])), clamp_min)` with `acc[o] = bias[o] + sum_i w[o][i] x[i]`;
/// `input` and `output` hold little-endian int16 values (`n_in = input.len() / 2`,
/// `n_out = output.len() / 2`).
///
/// The slices must fit ([`Fc16Params::check`]; the input and output an even number of bytes),
/// or the call returns [`Error::KernelArguments`] and writes nothing. A model loader proves
/// `|bias| + 32768 * sum |w| <= i32::MAX` per channel; unvalidated calls wrap.
pub fn fully_connected_i16(
    params: &Fc16Params<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let n_in = params.check_lengths(input, output)?;
    if n_in == 0 {
        // already refused by `check`; repeated so that `chunks_exact` cannot panic
        return Err(Error::KernelArguments);
    }
    let mut rows = params.weights.chunks_exact(n_in);
    let mut bias = params.bias.chunks_exact(4).map(le_i32);
    let mut multipliers = params.multipliers.chunks_exact(4).map(le_i32);
    for (out, &t) in output.chunks_exact_mut(2).zip(params.shifts) {
        let (Some(row), Some(b), Some(m)) = (rows.next(), bias.next(), multipliers.next()) else {
            break; // lengths were checked: never taken
        };
        let mut acc = b;
        for (&w, x) in row.iter().zip(input.chunks_exact(2)) {
            // |w * x| <= 2^22
            acc = acc.wrapping_add(i32::from(w as i8).wrapping_mul(i32::from(le_i16(x))));
        }
        put_i16(out, sat16(rq(i64::from(acc), m, t)).max(params.clamp_min));
    }
    Ok(())
}

/// The little-endian `i32` number `i` of `words` (0 past the end; never after a `check`).
#[inline(always)]
pub(crate) fn word(words: &[u8], i: usize) -> i32 {
    let at = i.wrapping_mul(4);
    words.get(at..at.wrapping_add(4)).map_or(0, le_i32)
}

/// `i * n .. (i + 1) * n` of `s`, or an empty slice (never after a `check`).
#[inline(always)]
fn block<T>(s: &[T], i: usize, n: usize) -> &[T] {
    let at = i.wrapping_mul(n);
    s.get(at..at.wrapping_add(n)).unwrap_or(&[])
}

/// The input row (or column) of window position `o` and tap `k`, if it is inside `0..len`.
/// `check` proved that `o * stride + k` fits usize for every position and tap.
#[inline(always)]
pub(crate) fn tap(o: usize, stride: usize, k: usize, pad: usize, len: usize) -> Option<usize> {
    o.wrapping_mul(stride)
        .wrapping_add(k)
        .checked_sub(pad)
        .filter(|&i| i < len)
}

/// `acc + sum_i w[i] * (x[i] - zp)`, wrapping (a model loader proves it cannot overflow).
#[inline(always)]
fn dot_centered(acc: i32, w: &[u8], x: &[i8], zp: i32) -> i32 {
    w.iter().zip(x).fold(acc, |acc, (&w, &x)| {
        // |w * (x - zp)| <= 128 * 255
        acc.wrapping_add(i32::from(w as i8).wrapping_mul(i32::from(x).wrapping_sub(zp)))
    })
}

/// One `Conv2d` layer on HWC activations (see [`ConvParams`]): for every output pixel and
/// channel `o`, `acc = bias[o] + sum_{ky, kx, c} w[o][ky][kx][c] (x[iy][ix][c] - zp_in)` over
/// the taps inside the input, then `clamp(sat8(zp_out + rq(acc, M[o], t[o])))`.
///
/// The lengths must fit the shapes ([`ConvParams::check`] with `depthwise = false`), or the call
/// returns [`Error::KernelArguments`] and writes nothing. A model loader proves
/// `|bias| + 255 * sum |w| <= i32::MAX` per channel; unvalidated calls wrap instead of panicking.
pub fn conv2d_i8(params: &ConvParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    params.check(false, input.len(), output.len())?;
    let [h, w, c] = params.input_shape;
    let [oh, ow, oc] = params.output_shape;
    let [kh, kw] = params.kernel;
    let [sh, sw] = params.stride;
    let [top, left] = params.pad;
    let zp = i32::from(params.input_zero_point);
    // every product below is at most a checked slice length
    let taps = kh.wrapping_mul(kw).wrapping_mul(c);
    let mut out = output.iter_mut();
    for oy in 0..oh {
        for ox in 0..ow {
            for (o, &t) in (0..oc).zip(params.shifts) {
                let filter = block(params.weights, o, taps);
                let mut acc = word(params.bias, o);
                for ky in 0..kh {
                    let Some(iy) = tap(oy, sh, ky, top, h) else {
                        continue;
                    };
                    let filter_row = block(filter, ky, kw.wrapping_mul(c));
                    for kx in 0..kw {
                        let Some(ix) = tap(ox, sw, kx, left, w) else {
                            continue;
                        };
                        let pixel = block(input, iy.wrapping_mul(w).wrapping_add(ix), c);
                        acc = dot_centered(acc, block(filter_row, kx, c), pixel, zp);
                    }
                }
                let Some(y) = out.next() else {
                    return Ok(()); // lengths were checked: never taken
                };
                *y = requantize(
                    acc,
                    word(params.multipliers, o),
                    t,
                    params.output_zero_point,
                    params.clamp_min,
                    params.clamp_max,
                );
            }
        }
    }
    Ok(())
}

/// One `DepthwiseConv2d` layer (multiplier 1) on HWC activations: for every output pixel and
/// channel `c`, `acc = bias[c] + sum_{ky, kx} w[ky][kx][c] (x[iy][ix][c] - zp_in)` over the taps
/// inside the input, then the output stage of [`conv2d_i8`].
///
/// The lengths must fit the shapes ([`ConvParams::check`] with `depthwise = true`), or the call
/// returns [`Error::KernelArguments`] and writes nothing.
pub fn depthwise_conv2d_i8(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    params.check(true, input.len(), output.len())?;
    let [oh, ow, c] = params.output_shape;
    let mut pixels = output.chunks_exact_mut(c.max(1));
    for oy in 0..oh {
        for ox in 0..ow {
            let Some(out) = pixels.next() else {
                return Ok(()); // lengths were checked: never taken
            };
            depthwise_pixel(params, input, (oy, ox), out);
        }
    }
    Ok(())
}

/// Output pixel `(oy, ox)` of a depthwise layer into `out` (its `c` channels), as
/// [`depthwise_conv2d_i8`] computes it. The lengths are the caller's to check.
pub(crate) fn depthwise_pixel(
    params: &ConvParams<'_>,
    input: &[i8],
    (oy, ox): (usize, usize),
    out: &mut [i8],
) {
    let [h, w, c] = params.input_shape;
    let [kh, kw] = params.kernel;
    let [sh, sw] = params.stride;
    let [top, left] = params.pad;
    let zp = i32::from(params.input_zero_point);
    for ((ch, y), &t) in out.iter_mut().enumerate().zip(params.shifts) {
        let mut acc = word(params.bias, ch);
        for ky in 0..kh {
            let Some(iy) = tap(oy, sh, ky, top, h) else {
                continue;
            };
            for kx in 0..kw {
                let Some(ix) = tap(ox, sw, kx, left, w) else {
                    continue;
                };
                let at = iy.wrapping_mul(w).wrapping_add(ix).wrapping_mul(c);
                let x = input.get(at.wrapping_add(ch)).copied().unwrap_or(0);
                let wat = ky.wrapping_mul(kw).wrapping_add(kx).wrapping_mul(c);
                let wv = params
                    .weights
                    .get(wat.wrapping_add(ch))
                    .copied()
                    .unwrap_or(0);
                acc = dot_centered(acc, &[wv], &[x], zp);
            }
        }
        *y = requantize(
            acc,
            word(params.multipliers, ch),
            t,
            params.output_zero_point,
            params.clamp_min,
            params.clamp_max,
        );
    }
}

/// Calls `f(first_element_index)` for every tap of the pooling window at `(oy, ox)`.
#[inline(always)]
fn for_window(p: &PoolParams, oy: usize, ox: usize, mut f: impl FnMut(usize)) {
    let [_, w, c] = p.input_shape;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    for ky in 0..kh {
        // windows lie inside the input (`check`): no padding, no overflow
        let iy = oy.wrapping_mul(sh).wrapping_add(ky);
        for kx in 0..kw {
            let ix = ox.wrapping_mul(sw).wrapping_add(kx);
            f(iy.wrapping_mul(w).wrapping_add(ix).wrapping_mul(c));
        }
    }
}

/// One `MaxPool2d` layer on HWC activations: every output is the maximum of its window,
/// clamped to `[clamp_min, clamp_max]` (see [`PoolParams`]).
///
/// The lengths must fit the shapes ([`PoolParams::check`]), or the call returns
/// [`Error::KernelArguments`] and writes nothing.
pub fn max_pool_i8(params: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    params.check(input.len(), output.len())?;
    let [oh, ow, c] = params.output_shape;
    let mut out = output.iter_mut();
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..c {
                let mut best = i8::MIN;
                for_window(params, oy, ox, |at| {
                    if let Some(&x) = input.get(at.wrapping_add(ch)) {
                        best = best.max(x);
                    }
                });
                let Some(y) = out.next() else {
                    return Ok(()); // lengths were checked: never taken
                };
                *y = best.max(params.clamp_min).min(params.clamp_max);
            }
        }
    }
    Ok(())
}

/// One `AvgPool2d` layer on HWC activations: `acc = sum (x - zp_in)` over the window, then
/// `clamp(sat8(zp_out + rq(acc, M, t)))` with one multiplier and shift for the tensor (see
/// [`PoolParams`]). A model loader proves `255 kh kw <= i32::MAX`.
///
/// The lengths must fit the shapes ([`PoolParams::check`]), or the call returns
/// [`Error::KernelArguments`] and writes nothing.
pub fn avg_pool_i8(params: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    params.check(input.len(), output.len())?;
    let [oh, ow, c] = params.output_shape;
    let zp = i32::from(params.input_zero_point);
    let mut out = output.iter_mut();
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..c {
                let mut acc = 0i32;
                for_window(params, oy, ox, |at| {
                    if let Some(&x) = input.get(at.wrapping_add(ch)) {
                        acc = acc.wrapping_add(i32::from(x).wrapping_sub(zp));
                    }
                });
                let Some(y) = out.next() else {
                    return Ok(()); // lengths were checked: never taken
                };
                *y = requantize(
                    acc,
                    params.multiplier,
                    params.shift,
                    params.output_zero_point,
                    params.clamp_min,
                    params.clamp_max,
                );
            }
        }
    }
    Ok(())
}

/// One residual `Add` of two int8 values of one shape (see [`AddParams`]): output `i` is
/// `clamp(sat8(zp_out + rq(acc, M, t)))` with `acc = W_a (a[i] - zp_a) + W_b (b[i] - zp_b)`.
/// Both inputs are put on one grid (`2^16` steps of the larger input scale) by their integer
/// weights, and rounded once.
///
/// The three slices must have one length ([`AddParams::check`]), or the call returns
/// [`Error::KernelArguments`] and writes nothing. A model loader proves `|W| <= 2^16`, so
/// `|acc| < 2^26`; unvalidated calls wrap.
pub fn add_i8(params: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) -> Result<(), Error> {
    params.check(a.len(), b.len(), output.len())?;
    let [wa, wb] = params.weights;
    let [zpa, zpb] = params.input_zero_points.map(i32::from);
    for ((y, &x), &z) in output.iter_mut().zip(a).zip(b) {
        // |x - zp| <= 255
        let acc = wa
            .wrapping_mul(i32::from(x).wrapping_sub(zpa))
            .wrapping_add(wb.wrapping_mul(i32::from(z).wrapping_sub(zpb)));
        *y = requantize(
            acc,
            params.multiplier,
            params.shift,
            params.output_zero_point,
            params.clamp_min,
            params.clamp_max,
        );
    }
    Ok(())
}

/// Maps every value through a 256-entry table in place: `q <- table[q + 128] as i8`.
pub fn apply_lut_i8(table: &[u8; 256], data: &mut [i8]) {
    for v in data {
        let index = usize::from((*v as u8) ^ 0x80); // q + 128, in 0..=255
        if let Some(&t) = table.get(index) {
            *v = t as i8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rq_ref, sat8_ref, Rng};
    use std::vec::Vec;

    /// The layer exactly as written in docs/quantization.md, in plain i64, with the rational
    /// rounding reference.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        w: &[i8],
        bias: &[i32],
        m: &[i32],
        t: &[u8],
        zp: i8,
        lo: i8,
        hi: i8,
        input: &[i8],
    ) -> Vec<i8> {
        let n_in = input.len();
        (0..bias.len())
            .map(|o| {
                let mut acc = i64::from(bias[o]);
                for i in 0..n_in {
                    acc += i64::from(w[o * n_in + i]) * i64::from(input[i]);
                }
                let y = sat8_ref(i64::from(zp) + rq_ref(acc, m[o], t[o]));
                y.clamp(i64::from(lo), i64::from(hi)) as i8
            })
            .collect()
    }

    fn bytes_i32(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reference_matches_naive_formula() {
        let mut rng = Rng::new(0x4e41_4956);
        let mut saturated = 0;
        let mut clamped = 0;
        for case in 0..4000 {
            let n_in = rng.usize_in(1, if case % 10 == 0 { 500 } else { 24 });
            let n_out = rng.usize_in(1, 12);
            let w: Vec<i8> = (0..n_in * n_out).map(|_| rng.i8()).collect();
            let input: Vec<i8> = (0..n_in).map(|_| rng.i8()).collect();
            let bias: Vec<i32> = (0..n_out)
                .map(|_| rng.range_i64(-(1 << 20), 1 << 20) as i32)
                .collect();
            let m: Vec<i32> = (0..n_out)
                .map(|_| {
                    if rng.below(4) == 0 {
                        1 << 30
                    } else {
                        rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32
                    }
                })
                .collect();
            let log_acc = 7 + (n_in as f64).log2() as i64 / 2 + 7;
            let t: Vec<u8> = (0..n_out)
                .map(|_| {
                    if rng.below(8) == 0 {
                        rng.range_i64(1, 62) as u8
                    } else {
                        (24 + log_acc + rng.range_i64(-4, 4)) as u8
                    }
                })
                .collect();
            let zp = rng.i8();
            let (lo, hi) = match rng.below(3) {
                0 => (-128, 127),
                1 => (zp, 127),
                _ => {
                    let a = rng.i8();
                    let b = rng.i8();
                    (a.min(b), a.max(b))
                }
            };
            let wb: Vec<u8> = w.iter().map(|&x| x as u8).collect();
            let (bb, mb) = (bytes_i32(&bias), bytes_i32(&m));
            let params = FcParams {
                weights: &wb,
                bias: &bb,
                multipliers: &mb,
                shifts: &t,
                output_zero_point: zp,
                clamp_min: lo,
                clamp_max: hi,
            };
            let mut out = std::vec![0x55i8; n_out];
            fully_connected_i8(&params, &input, &mut out).unwrap();
            let expected = naive(&w, &bias, &m, &t, zp, lo, hi, &input);
            assert_eq!(out, expected, "case {case}");
            saturated += out.iter().filter(|&&v| v == 127 || v == -128).count();
            clamped += out.iter().filter(|&&v| v == lo && lo != -128).count();
        }
        // the sweep reaches saturation and clamping, and mostly stays in range
        assert!(
            saturated > 100 && clamped > 100,
            "saturated {saturated} clamped {clamped}"
        );
    }

    /// The harness's cases (many exact ties) against the naive formula too.
    #[test]
    fn reference_matches_naive_formula_on_ties() {
        let mut rng = Rng::new(0x7135);
        let mut ties = 0;
        for _ in 0..3000 {
            let case = crate::kernels::harness::random_case(&mut rng, 30);
            let dec = |b: &[u8]| {
                b.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
            };
            let (bias, m) = (dec(&case.bias), dec(&case.multipliers));
            let w: Vec<i8> = case.weights.iter().map(|&b| b as i8).collect();
            let mut out = std::vec![0i8; case.n_out];
            fully_connected_i8(&case.params(), &case.input, &mut out).unwrap();
            let expected = naive(
                &w,
                &bias,
                &m,
                &case.shifts,
                case.output_zero_point,
                case.clamp_min,
                case.clamp_max,
                &case.input,
            );
            assert_eq!(out, expected);
            for o in 0..case.n_out {
                let acc: i64 = i64::from(bias[o])
                    + (0..case.input.len())
                        .map(|i| i64::from(w[o * case.input.len() + i]) * i64::from(case.input[i]))
                        .sum::<i64>();
                let p = i128::from(acc) * i128::from(m[o]);
                let t = case.shifts[o];
                if p.rem_euclid(1i128 << t) == 1i128 << (t - 1) {
                    ties += 1;
                }
            }
        }
        assert!(ties > 2000, "{ties} ties");
    }

    /// A 2x3 layer computed by hand.
    #[test]
    fn hand_computed_layer() {
        // acc0 = 10 + 1*3 + 2*(-4) + 3*5 = 20; acc1 = -7 + (-1)*3 + 0 + 127*5 = 625
        let w: [i8; 6] = [1, 2, 3, -1, 0, 127];
        let wb = w.map(|x| x as u8);
        let bb = bytes_i32(&[10, -7]);
        // channel 0: * 2^30 / 2^33 = / 8: 20 / 8 = 2.5 -> 2; channel 1: / 4: 156.25 -> 156
        let mb = bytes_i32(&[1 << 30, 1 << 30]);
        let params = FcParams {
            weights: &wb,
            bias: &bb,
            multipliers: &mb,
            shifts: &[33, 32],
            output_zero_point: -3,
            clamp_min: -128,
            clamp_max: 127,
        };
        let mut out = [0i8; 2];
        fully_connected_i8(&params, &[3, -4, 5], &mut out).unwrap();
        assert_eq!(out, [-1, 127]); // -3 + 2, sat8(-3 + 156)
                                    // relu clamp at zp = 5: 5 + 2 = 7, sat8(5 + 156) = 127
        let relu = FcParams {
            output_zero_point: 5,
            clamp_min: 5,
            ..params
        };
        fully_connected_i8(&relu, &[3, -4, 5], &mut out).unwrap();
        assert_eq!(out, [7, 127]);
        // a negative result clamped by the relu
        let neg = FcParams {
            bias: &bytes_i32(&[-100, 0]),
            ..relu
        };
        fully_connected_i8(&neg, &[3, -4, 5], &mut out).unwrap();
        // acc0 = -100 + 10 = -90 -> -90/8 = -11.25 -> -11; 5 - 11 = -6 -> clamp 5
        // acc1 = 0 - 3 + 635 = 632 -> 158 -> 127
        assert_eq!(out, [5, 127]);
    }

    #[test]
    fn lut_maps_every_value() {
        let mut table = [0u8; 256];
        for (i, e) in table.iter_mut().enumerate() {
            let q = i as i16 - 128;
            *e = (-q - 1) as i8 as u8; // q -> -q - 1
        }
        let mut data: Vec<i8> = (-128..=127).collect();
        apply_lut_i8(&table, &mut data);
        let expected: Vec<i8> = (-128i16..=127).map(|q| (-q - 1) as i8).collect();
        assert_eq!(data, expected);
        let mut ident = [0u8; 256];
        for (i, e) in ident.iter_mut().enumerate() {
            *e = (i as i16 - 128) as i8 as u8;
        }
        let mut data: Vec<i8> = (-128..=127).collect();
        apply_lut_i8(&ident, &mut data);
        assert_eq!(data, (-128..=127).collect::<Vec<i8>>());
    }

    /// docs/layer-graph.md's convolution in plain i64, by coordinates: `out[oy][ox][o]` from
    /// the input rows `oy * sh + ky - top` and columns `ox * sw + kx - left` inside the input.
    fn naive_conv(case: &crate::kernels::harness::ConvCase, depthwise: bool) -> Vec<i8> {
        let [h, w, c] = case.input_shape;
        let [oh, ow, oc] = case.output_shape;
        let [kh, kw] = case.kernel;
        let dec = |b: &[u8], i: usize| {
            i64::from(i32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap()))
        };
        let mut out = Vec::new();
        for oy in 0..oh as i64 {
            for ox in 0..ow as i64 {
                for o in 0..oc {
                    let mut acc = dec(&case.bias, o);
                    for ky in 0..kh as i64 {
                        for kx in 0..kw as i64 {
                            let iy = oy * case.stride[0] as i64 + ky - case.pad[0] as i64;
                            let ix = ox * case.stride[1] as i64 + kx - case.pad[1] as i64;
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                continue; // padding: the real value 0
                            }
                            let (iy, ix, ky, kx) =
                                (iy as usize, ix as usize, ky as usize, kx as usize);
                            let channels: Vec<usize> = if depthwise {
                                std::vec![o]
                            } else {
                                (0..c).collect()
                            };
                            for ci in channels {
                                let wv = if depthwise {
                                    case.weights[(ky * kw + kx) * c + ci]
                                } else {
                                    case.weights[((o * kh + ky) * kw + kx) * c + ci]
                                } as i8;
                                let x = case.input[(iy * w + ix) * c + ci];
                                acc += i64::from(wv)
                                    * (i64::from(x) - i64::from(case.input_zero_point));
                            }
                        }
                    }
                    let r = rq_ref(acc, dec(&case.multipliers, o) as i32, case.shifts[o]);
                    let y = sat8_ref(i64::from(case.output_zero_point) + r);
                    out.push(y.clamp(i64::from(case.clamp_min), i64::from(case.clamp_max)) as i8);
                }
            }
        }
        out
    }

    #[test]
    fn conv_kernels_match_naive_formula() {
        let mut rng = Rng::new(0xC0_4E41);
        let (mut strided, mut same, mut whole, mut one_channel, mut pointwise) = (0, 0, 0, 0, 0);
        for case_index in 0..3000 {
            let depthwise = case_index % 2 == 1;
            let case = crate::kernels::harness::conv_case(&mut rng, depthwise);
            let mut out = std::vec![0x55i8; case.output_len()];
            let kernel = if depthwise {
                depthwise_conv2d_i8
            } else {
                conv2d_i8
            };
            kernel(&case.params(), &case.input, &mut out).unwrap();
            assert_eq!(
                out,
                naive_conv(&case, depthwise),
                "case {case_index} {case:?}"
            );
            strided += usize::from(case.stride.contains(&2));
            same += usize::from(case.pad != [0, 0]);
            whole += usize::from(case.kernel == [case.input_shape[0], case.input_shape[1]]);
            one_channel += usize::from(case.input_shape[2] == 1);
            pointwise += usize::from(case.kernel == [1, 1]);
        }
        assert!(
            [strided, same, whole, one_channel, pointwise]
                .iter()
                .all(|&n| n > 100),
            "{strided} {same} {whole} {one_channel} {pointwise}"
        );
    }

    /// docs/layer-graph.md's pooling in plain i64.
    fn naive_pool(p: &PoolParams, input: &[i8], max: bool) -> Vec<i8> {
        let [_, w, c] = p.input_shape;
        let [oh, ow, _] = p.output_shape;
        let mut out = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let window: Vec<i64> = (0..p.kernel[0])
                        .flat_map(|ky| (0..p.kernel[1]).map(move |kx| (ky, kx)))
                        .map(|(ky, kx)| {
                            let (iy, ix) = (oy * p.stride[0] + ky, ox * p.stride[1] + kx);
                            i64::from(input[(iy * w + ix) * c + ch])
                        })
                        .collect();
                    let y = if max {
                        *window.iter().max().unwrap()
                    } else {
                        let acc: i64 = window
                            .iter()
                            .map(|x| x - i64::from(p.input_zero_point))
                            .sum();
                        sat8_ref(
                            i64::from(p.output_zero_point) + rq_ref(acc, p.multiplier, p.shift),
                        )
                    };
                    out.push(y.clamp(i64::from(p.clamp_min), i64::from(p.clamp_max)) as i8);
                }
            }
        }
        out
    }

    #[test]
    fn pool_kernels_match_naive_formula() {
        let mut rng = Rng::new(0x9001);
        for case_index in 0..3000 {
            let (p, input) = crate::kernels::harness::pool_case(&mut rng);
            let n: usize = p.output_shape.iter().product();
            let mut out = std::vec![0x55i8; n];
            max_pool_i8(&p, &input, &mut out).unwrap();
            assert_eq!(
                out,
                naive_pool(&p, &input, true),
                "max case {case_index} {p:?}"
            );
            avg_pool_i8(&p, &input, &mut out).unwrap();
            assert_eq!(
                out,
                naive_pool(&p, &input, false),
                "avg case {case_index} {p:?}"
            );
        }
        // a global average pool of a hand-made 2x2x1 input: (1 + 2 + 3 + 6 - 4 * 2) / 4 = 1
        let p = PoolParams {
            input_shape: [2, 2, 1],
            output_shape: [1, 1, 1],
            kernel: [2, 2],
            stride: [1, 1],
            input_zero_point: 2,
            output_zero_point: -3,
            multiplier: 1 << 30,
            shift: 32,
            clamp_min: -128,
            clamp_max: 127,
        };
        let mut out = [0i8];
        avg_pool_i8(&p, &[1, 2, 3, 6], &mut out).unwrap();
        assert_eq!(out, [-2]);
        max_pool_i8(&p, &[1, 2, 3, 6], &mut out).unwrap();
        assert_eq!(out, [6]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let wb = [1u8; 6];
        let bb = bytes_i32(&[0, 0]);
        let mb = bytes_i32(&[1 << 30, 1 << 30]);
        let good = FcParams {
            weights: &wb,
            bias: &bb,
            multipliers: &mb,
            shifts: &[31, 31],
            output_zero_point: 0,
            clamp_min: -128,
            clamp_max: 127,
        };
        let input = [1i8; 3];
        let mut out = [9i8; 2];
        assert_eq!(fully_connected_i8(&good, &input, &mut out), Ok(()));
        let bad = [
            FcParams {
                weights: &wb[..5],
                ..good
            },
            FcParams {
                bias: &bb[..7],
                ..good
            },
            FcParams {
                multipliers: &mb[..4],
                ..good
            },
            FcParams {
                shifts: &[31],
                ..good
            },
            FcParams {
                clamp_min: 1,
                clamp_max: 0,
                ..good
            },
        ];
        for p in &bad {
            let mut out = [9i8; 2];
            assert_eq!(
                fully_connected_i8(p, &input, &mut out),
                Err(Error::KernelArguments)
            );
            assert_eq!(out, [9, 9], "nothing written on error");
        }
        let mut out = [9i8; 2];
        assert_eq!(
            fully_connected_i8(&good, &input[..2], &mut out),
            Err(Error::KernelArguments)
        );
        assert_eq!(
            fully_connected_i8(&good, &input, &mut out[..1]),
            Err(Error::KernelArguments)
        );
        // no input at all: an error, not a chunks_exact(0) panic
        let empty = FcParams {
            weights: &[],
            ..good
        };
        assert_eq!(
            fully_connected_i8(&empty, &[], &mut out),
            Err(Error::KernelArguments)
        );
    }
}
