//! `DepthwiseConv2d` and pooling over HWC activations, channels innermost: for each output
//! pixel the window's valid taps are computed once (no per-tap border test), up to 64
//! accumulators live on the stack, and each tap adds a whole pixel's channels, a word of four
//! channels at a time.
//!
//! On Cortex-M4/M7 the word is split into 16-bit lanes with `SXTB16`, the zero point taken
//! away on both lanes at once (`SSUB16`, `x - zp_in` fits 16 bits), and each lane multiplied
//! and added (`SMLABB`/`SMLATT`): 16 instructions per four multiply-accumulates; elsewhere
//! byte by byte. Every accumulator is the reference's
//! `bias + sum w * (x - zp_in)` over the same taps, in the same order, in wrapping `i32`, and
//! goes through the dense kernels' output stage: the reference's bytes.
//!
//! A channel count not a multiple of four finishes its last one to three channels byte by
//! byte. The word loop is assembly on Cortex-M4/M7 (`dsp_asm::dw_mac`); its portable twin
//! (`mac_words_lanes` off that target) is the one the host tests hold to the reference.

use super::conv::{valid_taps, ConvParams, PoolParams};
use super::simd32::{ssub16, sxtb16, sxtb16_ror8};
use super::{le_i32, requantize, FcParams};
use crate::Error;

/// Adds `w[i] * (x[i] - zp)` to `acc[i]` for the four byte lanes of `x` and `w`, on 16-bit lanes (`SXTB16`, `SSUB16`, `SMLABB`/`SMLATT` on Armv7E-M).
#[cfg_attr(kiln_kernel = "dsp", allow(dead_code))]
#[inline(always)]
fn mac4_lanes(acc: &mut [i32; 4], x: u32, w: u32, zp: i32) {
    let zp2 = (zp as u16 as u32).wrapping_mul(0x0001_0001);
    let x02 = ssub16(sxtb16(x), zp2);
    let x13 = ssub16(sxtb16_ror8(x), zp2);
    let (w02, w13) = (sxtb16(w), sxtb16_ror8(w));
    let lo = |v: u32| i32::from(v as u16 as i16);
    let hi = |v: u32| i32::from((v >> 16) as u16 as i16);
    let [a0, a1, a2, a3] = acc;
    *a0 = a0.wrapping_add(lo(x02).wrapping_mul(lo(w02)));
    *a1 = a1.wrapping_add(lo(x13).wrapping_mul(lo(w13)));
    *a2 = a2.wrapping_add(hi(x02).wrapping_mul(hi(w02)));
    *a3 = a3.wrapping_add(hi(x13).wrapping_mul(hi(w13)));
}

/// [`mac4_lanes`] byte by byte.
#[inline(always)]
fn mac4_bytes(acc: &mut [i32; 4], x: u32, w: u32, zp: i32) {
    for (i, a) in acc.iter_mut().enumerate() {
        let shift = (i as u32).wrapping_mul(8);
        let xi = i32::from((x >> shift) as u8 as i8);
        let wi = i32::from((w >> shift) as u8 as i8);
        *a = a.wrapping_add(wi.wrapping_mul(xi.wrapping_sub(zp)));
    }
}

/// Channels per pass: the accumulators of one output pixel's group live on the stack.
const GROUP: usize = 64;

/// `acc[i] += w[i] * (x[i] - zp)` for the first `4 * (acc.len() / 4)` channels, a word of
/// four channels at a time through `mac4`: the portable twin of `dsp_asm::dw_mac`.
#[inline(always)]
fn mac_words_with(
    acc: &mut [i32],
    x: &[i8],
    w: &[u8],
    zp: i32,
    mac4: impl Fn(&mut [i32; 4], u32, u32, i32),
) {
    let words = acc
        .chunks_exact_mut(4)
        .zip(x.chunks_exact(4))
        .zip(w.chunks_exact(4));
    for ((a, x), w) in words {
        if let (Ok(a), &[x0, x1, x2, x3], &[w0, w1, w2, w3]) = (<&mut [i32; 4]>::try_from(a), x, w)
        {
            let xw = u32::from_le_bytes([x0 as u8, x1 as u8, x2 as u8, x3 as u8]);
            mac4(a, xw, u32::from_le_bytes([w0, w1, w2, w3]), zp);
        }
    }
}

/// The dense kernels' output stage over a group: `out[i] = requantize(acc[i], M[i], t[i])`.
/// Out of line, so that its loop keeps the zero point and the clamps in registers.
/// With `high` (every shift of the layer in `33..=62`, checked once per call) the loop takes
/// [`crate::fixed::rq_acc_high`], the same values without the test of the shift.
#[inline(never)]
fn output_stage(
    fc: &FcParams<'_>,
    acc: &[i32],
    multipliers: &[u8],
    shifts: &[u8],
    out: &mut [i8],
    high: bool,
) {
    let stage = multipliers.chunks_exact(4).zip(shifts);
    if high {
        let zp = i32::from(fc.output_zero_point);
        let (lo, hi) = (i32::from(fc.clamp_min), i32::from(fc.clamp_max));
        for ((y, &a), (m, &t)) in out.iter_mut().zip(acc).zip(stage) {
            let scaled = crate::fixed::rq_acc_high(a, le_i32(m), t);
            *y = zp.saturating_add(scaled).max(lo).min(hi) as i8;
        }
    } else {
        for ((y, &a), (m, &t)) in out.iter_mut().zip(acc).zip(stage) {
            *y = requantize(fc, a, le_i32(m), t);
        }
    }
}

/// The whole words on 16-bit lanes: the assembly loop on Cortex-M4/M7.
#[cfg(kiln_kernel = "dsp")]
fn mac_words_lanes(acc: &mut [i32], x: &[i8], w: &[u8], zp: i32) {
    super::dsp_asm::dw_mac(acc, x, w, zp);
}

/// The whole words on 16-bit lanes: the portable twin of the assembly loop.
#[cfg(not(kiln_kernel = "dsp"))]
fn mac_words_lanes(acc: &mut [i32], x: &[i8], w: &[u8], zp: i32) {
    mac_words_with(acc, x, w, zp, mac4_lanes);
}

/// The whole words byte by byte.
fn mac_words_bytes(acc: &mut [i32], x: &[i8], w: &[u8], zp: i32) {
    mac_words_with(acc, x, w, zp, mac4_bytes);
}

/// `acc[i] += w[i] * (x[i] - zp)` over a group's channels: whole words through `words`, the
/// last one to three channels byte by byte. Out of line, so that its loop has the registers to
/// itself.
#[inline(never)]
fn mac_group(
    acc: &mut [i32],
    x: &[i8],
    w: &[u8],
    zp: i32,
    words: fn(&mut [i32], &[i8], &[u8], i32),
) {
    words(acc, x, w, zp);
    let whole = acc.len() & !3;
    let rest = acc
        .get_mut(whole..)
        .unwrap_or(&mut [])
        .iter_mut()
        .zip(x.get(whole..).unwrap_or(&[]))
        .zip(w.get(whole..).unwrap_or(&[]));
    for ((a, &x), &w) in rest {
        *a = a.wrapping_add(i32::from(w as i8).wrapping_mul(i32::from(x).wrapping_sub(zp)));
    }
}

#[inline(always)]
fn depthwise_with(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
    words: fn(&mut [i32], &[i8], &[u8], i32),
) -> Result<(), Error> {
    params.check(true, input.len(), output.len())?;
    let [h, w, c] = params.input_shape;
    let [oh, ow, _] = params.output_shape;
    let [kh, kw] = params.kernel;
    let [sh, sw] = params.stride;
    let [top, left] = params.pad;
    let zp = i32::from(params.input_zero_point);
    let fc = params.fc();
    // every product below is at most a checked length or index
    let row_step = w.wrapping_mul(c);
    let w_row_step = kw.wrapping_mul(c);
    let mut outputs = output.chunks_exact_mut(c.max(1));
    let mut acc_buffer = [0i32; GROUP];
    let high = params.shifts_all_high();
    for oy in 0..oh {
        let (ky_lo, ky_hi) = valid_taps(oy, sh, top, kh, h);
        let iy_lo = oy.wrapping_mul(sh).wrapping_add(ky_lo).wrapping_sub(top);
        for ox in 0..ow {
            let Some(out) = outputs.next() else {
                return Ok(()); // lengths were checked: never taken
            };
            let (kx_lo, kx_hi) = valid_taps(ox, sw, left, kw, w);
            let ix_lo = ox.wrapping_mul(sw).wrapping_add(kx_lo).wrapping_sub(left);
            let x_first = iy_lo.wrapping_mul(w).wrapping_add(ix_lo).wrapping_mul(c);
            let w_first = ky_lo.wrapping_mul(kw).wrapping_add(kx_lo).wrapping_mul(c);
            let mut g0 = 0usize;
            for out_g in out.chunks_mut(GROUP) {
                let n = out_g.len();
                let Some(acc) = acc_buffer.get_mut(..n) else {
                    break;
                };
                let bias = params.bias.get(g0.wrapping_mul(4)..).unwrap_or(&[]);
                for (a, b) in acc.iter_mut().zip(bias.chunks_exact(4)) {
                    *a = le_i32(b);
                }
                let mut x_row = x_first.wrapping_add(g0);
                let mut w_row = w_first.wrapping_add(g0);
                for _ in ky_lo..ky_hi {
                    let (mut xa, mut wa) = (x_row, w_row);
                    for _ in kx_lo..kx_hi {
                        let x = input.get(xa..xa.wrapping_add(n)).unwrap_or(&[]);
                        let wt = params.weights.get(wa..wa.wrapping_add(n)).unwrap_or(&[]);
                        mac_group(acc, x, wt, zp, words);
                        xa = xa.wrapping_add(c);
                        wa = wa.wrapping_add(c);
                    }
                    x_row = x_row.wrapping_add(row_step);
                    w_row = w_row.wrapping_add(w_row_step);
                }
                let mults = params.multipliers.get(g0.wrapping_mul(4)..).unwrap_or(&[]);
                let shifts = params.shifts.get(g0..).unwrap_or(&[]);
                output_stage(&fc, acc, mults, shifts, out_g, high);
                g0 = g0.wrapping_add(GROUP);
            }
        }
    }
    Ok(())
}

/// `DepthwiseConv2d` on 16-bit lanes (Cortex-M4/M7; the exact portable equivalents elsewhere).
/// Same contract as [`super::reference::depthwise_conv2d_i8`].
pub fn depthwise_conv2d_i8_lanes(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    depthwise_with(params, input, output, mac_words_lanes)
}

/// `DepthwiseConv2d` four channels per word, byte by byte. Same contract as
/// [`super::reference::depthwise_conv2d_i8`].
pub fn depthwise_conv2d_i8_bytes(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    depthwise_with(params, input, output, mac_words_bytes)
}

/// Calls `f(channels)` with the channels `first..first + n` of every tap of the pooling window
/// at `(oy, ox)`, row by row.
#[inline(always)]
fn for_window(
    p: &PoolParams,
    input: &[i8],
    oy: usize,
    ox: usize,
    (first, n): (usize, usize),
    mut f: impl FnMut(&[i8]),
) {
    let [_, w, c] = p.input_shape;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    // windows lie inside the input (`check`): no padding, no overflow
    let mut row = oy
        .wrapping_mul(sh)
        .wrapping_mul(w)
        .wrapping_add(ox.wrapping_mul(sw))
        .wrapping_mul(c)
        .wrapping_add(first);
    for _ in 0..kh {
        let mut at = row;
        for _ in 0..kw {
            f(input.get(at..at.wrapping_add(n)).unwrap_or(&[]));
            at = at.wrapping_add(c);
        }
        row = row.wrapping_add(w.wrapping_mul(c));
    }
}

/// `MaxPool2d`, channels innermost: the output pixel is the running maximum, tap by tap. Same
/// contract as [`super::reference::max_pool_i8`].
pub fn max_pool_i8(params: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    params.check(input.len(), output.len())?;
    let [oh, ow, c] = params.output_shape;
    let mut outputs = output.chunks_exact_mut(c.max(1));
    for oy in 0..oh {
        for ox in 0..ow {
            let Some(out) = outputs.next() else {
                return Ok(()); // lengths were checked: never taken
            };
            out.fill(i8::MIN);
            for_window(params, input, oy, ox, (0, c), |x| {
                for (o, &x) in out.iter_mut().zip(x) {
                    *o = (*o).max(x);
                }
            });
            for o in out.iter_mut() {
                *o = (*o).max(params.clamp_min).min(params.clamp_max);
            }
        }
    }
    Ok(())
}

/// `AvgPool2d`, channels innermost: up to 64 accumulators on the stack, tap by tap, then the
/// dense kernels' output stage. Same contract as [`super::reference::avg_pool_i8`].
pub fn avg_pool_i8(params: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    params.check(input.len(), output.len())?;
    let [oh, ow, c] = params.output_shape;
    let zp = i32::from(params.input_zero_point);
    let fc = FcParams {
        weights: &[],
        bias: &[],
        multipliers: &[],
        shifts: &[],
        output_zero_point: params.output_zero_point,
        clamp_min: params.clamp_min,
        clamp_max: params.clamp_max,
    };
    let mut acc_buffer = [0i32; GROUP];
    let mut outputs = output.chunks_exact_mut(c.max(1));
    for oy in 0..oh {
        for ox in 0..ow {
            let Some(out) = outputs.next() else {
                return Ok(()); // lengths were checked: never taken
            };
            let mut g0 = 0usize;
            for out_g in out.chunks_mut(GROUP) {
                let n = out_g.len();
                let Some(acc) = acc_buffer.get_mut(..n) else {
                    break;
                };
                acc.fill(0);
                for_window(params, input, oy, ox, (g0, n), |x| {
                    for (a, &x) in acc.iter_mut().zip(x) {
                        *a = a.wrapping_add(i32::from(x).wrapping_sub(zp));
                    }
                });
                for (y, &a) in out_g.iter_mut().zip(acc.iter()) {
                    *y = requantize(&fc, a, params.multiplier, params.shift);
                }
                g0 = g0.wrapping_add(GROUP);
            }
        }
    }
    Ok(())
}
