//! `DepthwiseConv2d` and pooling over HWC activations, four channels per word: one word load
//! of four inputs and one of four weights per tap, four accumulators per block of channels,
//! and the window's valid taps computed once per output pixel (no per-tap border test).
//!
//! On Cortex-M4/M7 the word is split into 16-bit lanes with `SXTB16`, the zero point taken
//! away on both lanes at once (`SSUB16`, `x - zp_in` fits 16 bits), and each lane multiplied
//! and added (`SMLABB`/`SMLATT`); elsewhere byte by byte. Every accumulator is the reference's
//! `bias + sum w * (x - zp_in)` over the same taps, in the same order, in wrapping `i32`, and
//! goes through the dense kernels' output stage: the reference's bytes.
//!
//! The last block of a channel count not a multiple of four reads whole words where they fit
//! (the extra lanes are the next pixel's channels: computed, then dropped) and a partial word,
//! zero-filled, at the very end of a tensor.

use super::conv::{ConvParams, PoolParams};
use super::simd32::{ssub16, sxtb16, sxtb16_ror8};
use super::{le_i32, requantize, FcParams};
use crate::Error;

/// Up to four bytes of `s` from `at` as a little-endian word, missing bytes 0.
#[inline(always)]
fn word_u8(s: &[u8], at: usize) -> u32 {
    if let Some(&[a, b, c, d]) = at.checked_add(4).and_then(|end| s.get(at..end)) {
        return u32::from_le_bytes([a, b, c, d]);
    }
    let mut bytes = [0u8; 4];
    for (d, &v) in bytes.iter_mut().zip(s.get(at..).unwrap_or(&[])) {
        *d = v;
    }
    u32::from_le_bytes(bytes)
}

/// [`word_u8`] of `i8` bytes.
#[inline(always)]
fn word_at(s: &[i8], at: usize) -> u32 {
    if let Some(&[a, b, c, d]) = at.checked_add(4).and_then(|end| s.get(at..end)) {
        return u32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]);
    }
    let mut bytes = [0u8; 4];
    for (d, &v) in bytes.iter_mut().zip(s.get(at..).unwrap_or(&[])) {
        *d = v as u8;
    }
    u32::from_le_bytes(bytes)
}

/// Adds `w[i] * (x[i] - zp)` to `acc[i]` for the four byte lanes of `x` and `w`, on 16-bit lanes (`SXTB16`, `SSUB16`, `SMLABB`/`SMLATT` on Armv7E-M).
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

/// The valid taps `lo..hi` of window position `o` along an axis of `len` (padding `pad`).
#[inline(always)]
fn valid_taps(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = o.wrapping_mul(stride); // fits: `check` proved the span fits usize
    let lo = pad.saturating_sub(start).min(k);
    let hi = len.saturating_add(pad).saturating_sub(start).min(k).max(lo);
    (lo, hi)
}

#[inline(always)]
fn depthwise_with(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
    mac4: impl Fn(&mut [i32; 4], u32, u32, i32),
) -> Result<(), Error> {
    params.check(true, input.len(), output.len())?;
    let [h, w, c] = params.input_shape;
    let [oh, ow, _] = params.output_shape;
    let [kh, kw] = params.kernel;
    let [sh, sw] = params.stride;
    let [top, left] = params.pad;
    let zp = i32::from(params.input_zero_point);
    let fc = FcParams {
        weights: params.weights,
        bias: params.bias,
        multipliers: params.multipliers,
        shifts: params.shifts,
        output_zero_point: params.output_zero_point,
        clamp_min: params.clamp_min,
        clamp_max: params.clamp_max,
    };
    // every product below is at most a checked length or index
    let row_step = w.wrapping_mul(c);
    let mut outputs = output.chunks_exact_mut(c.max(1));
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
            let mut ch0 = 0usize;
            for out4 in out.chunks_mut(4) {
                let mut acc = [0i32; 4];
                for (i, a) in acc.iter_mut().enumerate().take(out4.len()) {
                    *a = word(params.bias, ch0.wrapping_add(i));
                }
                let mut x_row = x_first.wrapping_add(ch0);
                let mut w_row = w_first.wrapping_add(ch0);
                for _ in ky_lo..ky_hi {
                    let (mut xa, mut wa) = (x_row, w_row);
                    for _ in kx_lo..kx_hi {
                        mac4(
                            &mut acc,
                            word_at(input, xa),
                            word_u8(params.weights, wa),
                            zp,
                        );
                        xa = xa.wrapping_add(c);
                        wa = wa.wrapping_add(c);
                    }
                    x_row = x_row.wrapping_add(row_step);
                    w_row = w_row.wrapping_add(kw.wrapping_mul(c));
                }
                for (i, (y, a)) in out4.iter_mut().zip(acc).enumerate() {
                    let ch = ch0.wrapping_add(i);
                    let t = params.shifts.get(ch).copied().unwrap_or(0);
                    *y = requantize(&fc, a, word(params.multipliers, ch), t);
                }
                ch0 = ch0.wrapping_add(4);
            }
        }
    }
    Ok(())
}

/// The little-endian `i32` number `i` of `words` (0 past the end; never after a `check`).
#[inline(always)]
fn word(words: &[u8], i: usize) -> i32 {
    let at = i.wrapping_mul(4);
    at.checked_add(4)
        .and_then(|end| words.get(at..end))
        .map_or(0, le_i32)
}

/// `DepthwiseConv2d` on 16-bit lanes (Cortex-M4/M7; the exact portable equivalents elsewhere).
/// Same contract as [`super::reference::depthwise_conv2d_i8`].
pub fn depthwise_conv2d_i8_lanes(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    depthwise_with(params, input, output, mac4_lanes)
}

/// `DepthwiseConv2d` four channels per word, byte by byte. Same contract as
/// [`super::reference::depthwise_conv2d_i8`].
pub fn depthwise_conv2d_i8_bytes(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    depthwise_with(params, input, output, mac4_bytes)
}

/// Calls `f(x)` with the four-channel word at channel `ch0` of every tap of the pooling window
/// at `(oy, ox)`.
#[inline(always)]
fn for_window_words(
    p: &PoolParams,
    input: &[i8],
    oy: usize,
    ox: usize,
    ch0: usize,
    mut f: impl FnMut(u32),
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
        .wrapping_add(ch0);
    for _ in 0..kh {
        let mut at = row;
        for _ in 0..kw {
            f(word_at(input, at));
            at = at.wrapping_add(c);
        }
        row = row.wrapping_add(w.wrapping_mul(c));
    }
}

/// `MaxPool2d` four channels per word. Same contract as [`super::reference::max_pool_i8`].
pub fn max_pool_i8(params: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    params.check(input.len(), output.len())?;
    let [oh, ow, c] = params.output_shape;
    let mut outputs = output.chunks_exact_mut(c.max(1));
    for oy in 0..oh {
        for ox in 0..ow {
            let Some(out) = outputs.next() else {
                return Ok(());
            };
            let mut ch0 = 0usize;
            for out4 in out.chunks_mut(4) {
                let mut best = [i8::MIN; 4];
                for_window_words(params, input, oy, ox, ch0, |x| {
                    for (b, v) in best.iter_mut().zip(x.to_le_bytes()) {
                        *b = (*b).max(v as i8);
                    }
                });
                for (y, b) in out4.iter_mut().zip(best) {
                    *y = b.max(params.clamp_min).min(params.clamp_max);
                }
                ch0 = ch0.wrapping_add(4);
            }
        }
    }
    Ok(())
}

/// `AvgPool2d` four channels per word. Same contract as [`super::reference::avg_pool_i8`].
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
    let mut outputs = output.chunks_exact_mut(c.max(1));
    for oy in 0..oh {
        for ox in 0..ow {
            let Some(out) = outputs.next() else {
                return Ok(());
            };
            let mut ch0 = 0usize;
            for out4 in out.chunks_mut(4) {
                let mut acc = [0i32; 4];
                for_window_words(params, input, oy, ox, ch0, |x| {
                    for (a, v) in acc.iter_mut().zip(x.to_le_bytes()) {
                        *a = a.wrapping_add(i32::from(v as i8).wrapping_sub(zp));
                    }
                });
                for (y, a) in out4.iter_mut().zip(acc) {
                    *y = requantize(&fc, a, params.multiplier, params.shift);
                }
                ch0 = ch0.wrapping_add(4);
            }
        }
    }
    Ok(())
}
