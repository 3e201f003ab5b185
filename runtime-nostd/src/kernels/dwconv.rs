//! `DepthwiseConv2d` and pooling over HWC activations, channels innermost: for each output
//! pixel the window's valid taps are computed once (no per-tap border test).
//!
//! Depthwise, the usual case (every shift in `33..=62`, windows of 1 to 3 valid columns), goes
//! a block of four channels at a time with its four accumulators in registers over all the
//! window's taps, then the output stage, four bytes out (`dw_pixel_blocks`). On Cortex-M4/M7
//! that loop is assembly (`kiln_dw_pixel_dsp`): per tap one word of inputs and one of weights,
//! split into 16-bit lanes, the inputs' with `-zp_in` added on both lanes at once (`SXTAB16`;
//! `x - zp_in` fits 16 bits), the weights' with `SXTB16`, and each lane multiplied and added
//! (`SMLABB`/`SMLATT`): 10 instructions per four multiply-accumulates, no accumulator
//! traffic. With the caller's workspace ([`depthwise_conv2d_i8_lanes_workspace`]) the weights
//! are split into their lanes once per call instead, each block's taps together
//! ([`widen_weights`]), and a tap loads its two weight words with one `LDRD`
//! (`kiln_dw_pixel_wide_dsp`): 8 instructions per four (KWS 4,001,408 -> 3,911,084
//! instructions per inference on the M4F). The host runs its portable twin; the byte-by-byte
//! kernel of the other cores keeps the group loop below for every channel.
//!
//! Every other case (the last one to three channels, wider windows, other shifts) keeps up to
//! 64 accumulators on the stack and adds a whole pixel's channels per tap, a word of four
//! channels at a time (`dsp_asm::dw_mac` on Cortex-M4/M7), then the dense kernels' output
//! stage. Either way every accumulator is the reference's `bias + sum w * (x - zp_in)` over
//! the same taps, in the same order, in wrapping `i32`: the reference's bytes.

use super::conv::{valid_taps, ConvParams, PoolParams};
use super::simd32::{ssub16, sxtb16, sxtb16_ror8};
#[cfg(not(kiln_kernel = "dsp"))]
use super::{im2col::range, word_i8};
use super::{le_i32, requantize, FcParams};
#[cfg(not(kiln_kernel = "dsp"))]
use crate::fixed::{round_zp, rq_high_zp};
use crate::Error;

#[cfg(kiln_kernel = "dsp")]
pub(crate) use super::dsp_asm::{dw_pixel_blocks, dw_pixel_run};

/// Adds `w[i] * (x[i] - zp)` to `acc[i]` for the four byte lanes of `x` and `w`, on 16-bit lanes (`SXTB16`, `SSUB16`, `SMLABB`/`SMLATT` on Armv7E-M).
#[cfg_attr(kiln_kernel = "dsp", allow(dead_code))]
#[inline(always)]
fn mac4_lanes(acc: &mut [i32; 4], x: u32, w: u32, zp: i32) {
    mac4_widened(acc, x, (sxtb16(w), sxtb16_ror8(w)), zp);
}

/// [`mac4_lanes`] with the weights already in their 16-bit lanes: `(w02, w13)` are
/// `sxtb16(w)` and `sxtb16_ror8(w)` (weights widened once per call, [`widen_weights`]).
#[cfg_attr(kiln_kernel = "dsp", allow(dead_code))]
#[inline(always)]
fn mac4_widened(acc: &mut [i32; 4], x: u32, (w02, w13): (u32, u32), zp: i32) {
    let zp2 = (zp as u16 as u32).wrapping_mul(0x0001_0001);
    let x02 = ssub16(sxtb16(x), zp2);
    let x13 = ssub16(sxtb16_ror8(x), zp2);
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

/// One output pixel's whole blocks of four channels over its window's valid taps, `rows` by
/// `cols` (`cols` in 1..=3): what one call of `dw_pixel_blocks` reads and writes. Tap `(r, k)` of
/// block `b` reads the input word at `x_first + r x_row + k c + 4 b` and the weights at
/// `w_first + r w_row + k w_tap + b w_block`: one word of four int8 weights (`w_tap = c`,
/// `w_block = 4`: the layer's own `[kh][kw][c]` weights), or with `wide` the two words
/// `sxtb16(w)`, `sxtb16_ror8(w)` of that word ([`widen_weights`]: `w_tap = 8`,
/// `w_block = 8 kh kw`); block `b` takes bias, multiplier and shift of channels
/// `4 b..4 b + 4` and writes `out[4 b..4 b + 4]`.
#[derive(Clone, Copy)]
pub(crate) struct DwPixel<'a> {
    pub input: &'a [i8],
    pub x_first: usize,
    pub weights: &'a [u8],
    pub w_first: usize,
    pub bias: &'a [u8],
    pub multipliers: &'a [u8],
    pub shifts: &'a [u8],
    pub c: usize,
    pub rows: usize,
    pub cols: usize,
    pub x_row: usize,
    pub w_row: usize,
    pub w_tap: usize,
    pub w_block: usize,
    pub wide: bool,
    pub n_blocks: usize,
    pub input_zero_point: i8,
    pub output_zero_point: i8,
    pub clamp_min: i8,
    pub clamp_max: i8,
}

impl DwPixel<'_> {
    /// Whether the call has work (`rows`, `n_blocks` at least 1, `cols` in 1..=3) and every read
    /// and write lies inside its slice (output `out_len` bytes).
    #[inline(always)]
    pub(crate) fn in_bounds(&self, out_len: usize) -> bool {
        // the end of the last block's last tap: `word` bytes from its start
        #[inline(always)]
        fn span(
            p: &DwPixel<'_>,
            first: usize,
            (row, tap, block, word): (usize, usize, usize, usize),
        ) -> Option<usize> {
            let last_row = p.rows.checked_sub(1)?.checked_mul(row)?;
            let last_col = p.cols.checked_sub(1)?.checked_mul(tap)?;
            let last_block = p.n_blocks.checked_sub(1)?.checked_mul(block)?;
            first
                .checked_add(last_row)?
                .checked_add(last_col)?
                .checked_add(last_block)?
                .checked_add(word)
        }
        let x_steps = (self.x_row, self.c, 4, 4);
        let w_steps = (
            self.w_row,
            self.w_tap,
            self.w_block,
            if self.wide { 8 } else { 4 },
        );
        let words = self.n_blocks.checked_mul(16);
        self.rows > 0
            && self.n_blocks > 0
            && (1..=3).contains(&self.cols)
            && span(self, self.x_first, x_steps).is_some_and(|end| end <= self.input.len())
            && span(self, self.w_first, w_steps).is_some_and(|end| end <= self.weights.len())
            && words.is_some_and(|n| n <= self.bias.len() && n <= self.multipliers.len())
            && self
                .n_blocks
                .checked_mul(4)
                .is_some_and(|n| n <= self.shifts.len() && n <= out_len)
    }
}

/// The portable twin of `kiln_dw_pixel_dsp` (`dsp_asm::dw_pixel_blocks`), on 16-bit lanes
/// ([`mac4_lanes`]): for each block, the four accumulators from the bias, every valid tap row by row, then
/// `rq_high_zp` (every shift in `33..=62`: the caller checks), `max(clamp_min)`,
/// `min(clamp_max)`. Returns the blocks written: 0, writing nothing, unless
/// [`DwPixel::in_bounds`].
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn dw_pixel_blocks(p: &DwPixel<'_>, out: &mut [i8]) -> usize {
    if !p.in_bounds(out.len()) {
        return 0;
    }
    let zp = i32::from(p.input_zero_point);
    let round_zp = round_zp(p.output_zero_point);
    let mut outs = out.chunks_exact_mut(4);
    for b in 0..p.n_blocks {
        let Some(out4) = outs.next() else {
            break; // checked: never taken
        };
        let c4 = b.wrapping_mul(4);
        let mut acc = [0i32; 4];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = le_i32(range(p.bias, c4.wrapping_add(i).wrapping_mul(4), 4));
        }
        let w_first = p.w_first.wrapping_add(b.wrapping_mul(p.w_block));
        let (mut x_row, mut w_row) = (p.x_first.wrapping_add(c4), w_first);
        for _ in 0..p.rows {
            let (mut xa, mut wa) = (x_row, w_row);
            for _ in 0..p.cols {
                let x = word_i8(range(p.input, xa, 4)) as u32;
                let w = le_i32(range(p.weights, wa, 4)) as u32;
                if p.wide {
                    let w13 = le_i32(range(p.weights, wa.wrapping_add(4), 4)) as u32;
                    mac4_widened(&mut acc, x, (w, w13), zp);
                } else {
                    mac4_lanes(&mut acc, x, w, zp);
                }
                xa = xa.wrapping_add(p.c);
                wa = wa.wrapping_add(p.w_tap);
            }
            x_row = x_row.wrapping_add(p.x_row);
            w_row = w_row.wrapping_add(p.w_row);
        }
        for (i, (y, &a)) in out4.iter_mut().zip(acc.iter()).enumerate() {
            let channel = c4.wrapping_add(i);
            let m = le_i32(range(p.multipliers, channel.wrapping_mul(4), 4));
            let t = p.shifts.get(channel).copied().unwrap_or(0);
            *y = rq_high_zp(a, m, t, round_zp)
                .max(p.clamp_min)
                .min(p.clamp_max);
        }
    }
    p.n_blocks
}

/// No register blocks: the byte-by-byte kernel runs every channel through the group loop,
/// which is the faster one on cores without `SMULL` in one instruction (Cortex-M0: 34.3
/// against 42.1 instructions per MAC on the KWS depthwise shape).
fn no_pixel_blocks(_: &DwPixel<'_>, _: &mut [i8]) -> usize {
    0
}

/// Whether a run of `n_pixels` output pixels, `p` the first and each next one `x_step` input
/// bytes and `p.c` output bytes on, reads and writes inside its slices (output `out_len`
/// bytes), every pixel's blocks covering its `c` channels: its first and its last pixel do,
/// and the pixels between read and write between them.
pub(crate) fn run_in_bounds(
    p: &DwPixel<'_>,
    n_pixels: usize,
    x_step: usize,
    out_len: usize,
) -> bool {
    let Some(last) = n_pixels.checked_sub(1) else {
        return false;
    };
    let last_x = last
        .checked_mul(x_step)
        .and_then(|d| d.checked_add(p.x_first));
    let last_out = last.checked_mul(p.c).and_then(|at| out_len.checked_sub(at));
    let (Some(x_first), Some(last_len)) = (last_x, last_out) else {
        return false;
    };
    p.n_blocks.checked_mul(4) == Some(p.c)
        && p.in_bounds(out_len)
        && DwPixel { x_first, ..*p }.in_bounds(last_len)
}

/// The portable twin of `dsp_asm::dw_pixel_run`: [`dw_pixel_blocks`] on `n_pixels` pixels of
/// one output row, `p` the first and each next one `x_step` input bytes and `c` output bytes
/// on. Returns the pixels written: 0, writing nothing, unless [`run_in_bounds`].
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn dw_pixel_run(
    p: &DwPixel<'_>,
    n_pixels: usize,
    x_step: usize,
    out: &mut [i8],
) -> usize {
    if !run_in_bounds(p, n_pixels, x_step, out.len()) {
        return 0;
    }
    for i in 0..n_pixels {
        let pixel = DwPixel {
            x_first: p.x_first.wrapping_add(i.wrapping_mul(x_step)),
            ..*p
        };
        let at = i.wrapping_mul(p.c);
        dw_pixel_blocks(&pixel, out.get_mut(at..).unwrap_or(&mut []));
    }
    n_pixels
}

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

/// What every output pixel of one depthwise layer shares, worked out once per call.
pub(crate) struct DwLayer<'a> {
    params: ConvParams<'a>,
    fc: FcParams<'a>,
    high: bool,
    n_blocks: usize,
    zp: i32,
    row_step: usize,
    w_row_step: usize,
    /// The weights widened once per call for the register blocks ([`widen_weights`]), if the
    /// caller's workspace held them.
    wide: Option<&'a [u8]>,
    words: fn(&mut [i32], &[i8], &[u8], i32),
    blocks: fn(&DwPixel<'_>, &mut [i8]) -> usize,
}

/// A run of output pixels with whole windows ([`dw_pixel_run`]).
type RunFn = fn(&DwPixel<'_>, usize, usize, &mut [i8]) -> usize;

impl<'a> DwLayer<'a> {
    /// The layer of `params` (checked by the caller), whole words through `words` and
    /// register blocks through `blocks`, these on weights widened into `workspace` where it
    /// holds them ([`widen_weights`]; empty: the layer's own weights).
    #[inline(always)]
    fn new(
        params: &ConvParams<'a>,
        workspace: &'a mut [i8],
        words: fn(&mut [i32], &[i8], &[u8], i32),
        blocks: fn(&DwPixel<'_>, &mut [i8]) -> usize,
    ) -> Self {
        let high = params.shifts_all_high();
        // the blocks run only with the high shifts: no widening for the groups alone
        let wide = if high {
            widen_weights(params, workspace)
        } else {
            None
        };
        let [_, w, c] = params.input_shape;
        Self {
            params: *params,
            // Field by field: through `params.fc()` the KWS depthwise layer ran 5.138
            // instructions per MAC on the M4F instead of 5.090 (bench-kernels), the layer's
            // values laid out differently.
            fc: FcParams {
                weights: params.weights,
                bias: params.bias,
                multipliers: params.multipliers,
                shifts: params.shifts,
                output_zero_point: params.output_zero_point,
                clamp_min: params.clamp_min,
                clamp_max: params.clamp_max,
            },
            high,
            // The register blocks need the high shifts of `rq_high_zp`; without them every
            // channel takes the group loop.
            n_blocks: if high { c / 4 } else { 0 },
            zp: i32::from(params.input_zero_point),
            // every product here and below is at most a checked length or index
            row_step: w.wrapping_mul(c),
            w_row_step: params.kernel[1].wrapping_mul(c),
            wide,
            words,
            blocks,
        }
    }

    /// The register blocks' view of output pixel `(oy, ox)`: its window's valid taps in
    /// `input`, and the weights they meet; with the offset of its first tap in the layer's own
    /// weights, which the group loop reads.
    #[inline(always)]
    fn window<'i>(&self, input: &'i [i8], (oy, ox): (usize, usize)) -> (DwPixel<'i>, usize)
    where
        'a: 'i,
    {
        let params = &self.params;
        let [h, w, c] = params.input_shape;
        let [kh, kw] = params.kernel;
        let [sh, sw] = params.stride;
        let [top, left] = params.pad;
        let (ky_lo, ky_hi) = valid_taps(oy, sh, top, kh, h);
        let iy_lo = oy.wrapping_mul(sh).wrapping_add(ky_lo).wrapping_sub(top);
        let (kx_lo, kx_hi) = valid_taps(ox, sw, left, kw, w);
        let ix_lo = ox.wrapping_mul(sw).wrapping_add(kx_lo).wrapping_sub(left);
        let first_tap = ky_lo.wrapping_mul(kw).wrapping_add(kx_lo);
        let own_first = first_tap.wrapping_mul(c);
        // the layer's own weights, or the widened ones: 8 bytes per tap, a block's taps together
        let (weights, w_first, w_row, w_tap, w_block) = match self.wide {
            Some(wide) => (
                wide,
                first_tap.wrapping_mul(8),
                kw.wrapping_mul(8),
                8,
                kh.wrapping_mul(kw).wrapping_mul(8),
            ),
            None => (params.weights, own_first, self.w_row_step, c, 4),
        };
        let pixel = DwPixel {
            input,
            x_first: iy_lo.wrapping_mul(w).wrapping_add(ix_lo).wrapping_mul(c),
            weights,
            w_first,
            bias: params.bias,
            multipliers: params.multipliers,
            shifts: params.shifts,
            c,
            rows: ky_hi.wrapping_sub(ky_lo),
            cols: kx_hi.wrapping_sub(kx_lo),
            x_row: self.row_step,
            w_row,
            w_tap,
            w_block,
            wide: self.wide.is_some(),
            n_blocks: self.n_blocks,
            input_zero_point: params.input_zero_point,
            output_zero_point: params.output_zero_point,
            clamp_min: params.clamp_min,
            clamp_max: params.clamp_max,
        };
        (pixel, own_first)
    }

    /// The output pixels `ox_lo..ox_lo + n` of row `oy`, whose windows are whole, into `out`
    /// (`n c` bytes from pixel `ox_lo`'s) in one call of `run`. Returns whether it ran (else
    /// nothing is written, for the caller's pixel by pixel loop).
    #[inline(always)]
    fn row_run(
        &self,
        run: RunFn,
        input: &[i8],
        (oy, ox_lo, n): (usize, usize, usize),
        out: &mut [i8],
    ) -> bool {
        let x_step = self.params.stride[1].wrapping_mul(self.params.input_shape[2]);
        run(&self.window(input, (oy, ox_lo)).0, n, x_step, out) == n
    }

    /// Output pixel `(oy, ox)`'s `c` channels into `out`, from the whole `input` (lengths
    /// checked by the caller).
    #[inline(always)]
    pub(crate) fn pixel(
        &self,
        input: &[i8],
        (oy, ox): (usize, usize),
        out: &mut [i8],
        acc_buffer: &mut [i32; GROUP],
    ) {
        let params = &self.params;
        let c = params.input_shape[2];
        let (zp, row_step, w_row_step) = (self.zp, self.row_step, self.w_row_step);
        let (pixel, w_first) = self.window(input, (oy, ox));
        let x_first = pixel.x_first;
        // 0 when the window or the shifts do not suit the blocks: then the groups do all.
        let mut g0 = (self.blocks)(&pixel, out).wrapping_mul(4);
        for out_g in out.get_mut(g0..).unwrap_or(&mut []).chunks_mut(GROUP) {
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
            for _ in 0..pixel.rows {
                let (mut xa, mut wa) = (x_row, w_row);
                for _ in 0..pixel.cols {
                    let x = input.get(xa..xa.wrapping_add(n)).unwrap_or(&[]);
                    let wt = params.weights.get(wa..wa.wrapping_add(n)).unwrap_or(&[]);
                    mac_group(acc, x, wt, zp, self.words);
                    xa = xa.wrapping_add(c);
                    wa = wa.wrapping_add(c);
                }
                x_row = x_row.wrapping_add(row_step);
                w_row = w_row.wrapping_add(w_row_step);
            }
            let mults = params.multipliers.get(g0.wrapping_mul(4)..).unwrap_or(&[]);
            let shifts = params.shifts.get(g0..).unwrap_or(&[]);
            output_stage(&self.fc, acc, mults, shifts, out_g, self.high);
            g0 = g0.wrapping_add(GROUP);
        }
    }
}

#[inline(always)]
fn depthwise_with<'a>(
    params: &ConvParams<'a>,
    workspace: &'a mut [i8],
    input: &[i8],
    output: &mut [i8],
    words: fn(&mut [i32], &[i8], &[u8], i32),
    blocks: fn(&DwPixel<'_>, &mut [i8]) -> usize,
    run: Option<RunFn>,
) -> Result<(), Error> {
    params.check(true, input.len(), output.len())?;
    let [oh, ow, c] = params.output_shape;
    let mut acc_buffer = [0i32; GROUP];
    let layer = DwLayer::new(params, workspace, words, blocks);
    let Some(run) = run else {
        // pixel by pixel: the plain loop (the row runs' bookkeeping cost the byte-by-byte
        // kernel's tap loop registers: 140 instructions per pixel on the Cortex-M3)
        let mut outputs = output.chunks_exact_mut(c.max(1));
        for oy in 0..oh {
            for ox in 0..ow {
                let Some(out) = outputs.next() else {
                    return Ok(()); // lengths were checked: never taken
                };
                layer.pixel(input, (oy, ox), out, &mut acc_buffer);
            }
        }
        return Ok(());
    };
    // The columns whose windows are whole, the same in every row: one run per row.
    let [_, w, _] = params.input_shape;
    let whole = |ox: usize| valid_taps(ox, params.stride[1], params.pad[1], params.kernel[1], w);
    let kw = params.kernel[1];
    let ox_lo = (0..ow).find(|&ox| whole(ox) == (0, kw)).unwrap_or(ow);
    let ox_hi = (ox_lo..ow).find(|&ox| whole(ox) != (0, kw)).unwrap_or(ow);
    let row_len = ow.wrapping_mul(c);
    for (oy, row) in output.chunks_exact_mut(row_len.max(1)).take(oh).enumerate() {
        let mut ox = 0;
        while ox < ow {
            let at = ox.wrapping_mul(c);
            if ox == ox_lo && ox_hi > ox_lo {
                let n = ox_hi.wrapping_sub(ox_lo);
                let run_out = row.get_mut(at..at.wrapping_add(n.wrapping_mul(c)));
                if run_out.is_some_and(|out| layer.row_run(run, input, (oy, ox_lo, n), out)) {
                    ox = ox_hi;
                    continue;
                }
            }
            let Some(out) = row.get_mut(at..at.wrapping_add(c)) else {
                return Ok(()); // lengths were checked: never taken
            };
            layer.pixel(input, (oy, ox), out, &mut acc_buffer);
            ox = ox.wrapping_add(1);
        }
    }
    Ok(())
}

/// A shape-keeping stride-1 `DepthwiseConv2d` in place over a ring of pending output pixels
/// (the contract of [`inplace::depthwise_conv2d_i8_ring_in_place`](super::inplace::depthwise_conv2d_i8_ring_in_place)),
/// each pixel as [`depthwise_conv2d_i8_lanes`] computes it.
pub fn depthwise_ring_in_place_lanes(
    params: &ConvParams<'_>,
    data: &mut [i8],
    ring: &mut [i8],
) -> Result<(), Error> {
    ring_with(
        params,
        data,
        ring,
        DwLayer::new(params, &mut [], mac_words_lanes, dw_pixel_blocks),
    )
}

/// [`depthwise_ring_in_place_lanes`] with each pixel as [`depthwise_conv2d_i8_bytes`] computes
/// it.
pub fn depthwise_ring_in_place_bytes(
    params: &ConvParams<'_>,
    data: &mut [i8],
    ring: &mut [i8],
) -> Result<(), Error> {
    ring_with(
        params,
        data,
        ring,
        DwLayer::new(params, &mut [], mac_words_bytes, no_pixel_blocks),
    )
}

/// The ring driver with each pixel through `layer`.
#[inline(always)]
fn ring_with(
    params: &ConvParams<'_>,
    data: &mut [i8],
    ring: &mut [i8],
    layer: DwLayer<'_>,
) -> Result<(), Error> {
    let mut acc_buffer = [0i32; GROUP];
    super::inplace::depthwise_ring_driver(params, data, ring, |input, at, out| {
        layer.pixel(input, at, out, &mut acc_buffer)
    })
}

/// `DepthwiseConv2d` on 16-bit lanes (Cortex-M4/M7; the exact portable equivalents elsewhere).
/// Same contract as [`super::reference::depthwise_conv2d_i8`].
pub fn depthwise_conv2d_i8_lanes(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    // one instance of the driver: without a workspace the blocks read the layer's weights
    depthwise_conv2d_i8_lanes_workspace(params, input, &mut [], output)
}

/// [`depthwise_conv2d_i8_lanes`] with the register blocks' weights widened once per call into
/// `workspace` ([`widen_weights`], [`widened_len`] bytes; a shorter workspace, or a layer the
/// blocks do not take, runs without). On Cortex-M4/M7 a tap then costs one `LDRD` of weight
/// lanes instead of a load and two `SXTB16`: 8 instructions per four multiply-accumulates
/// instead of 10. Same bits either way.
pub fn depthwise_conv2d_i8_lanes_workspace(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    depthwise_with(
        params,
        workspace,
        input,
        output,
        mac_words_lanes,
        dw_pixel_blocks,
        Some(dw_pixel_run),
    )
}

/// The workspace bytes [`widen_weights`] needs for a layer whose register blocks can run
/// (at least four channels; the shifts are checked per call), with 3 bytes to reach a word
/// boundary; 0 otherwise. A pure function of the shapes, like every workspace length.
pub fn widened_len(params: &ConvParams<'_>) -> usize {
    let [kh, kw] = params.kernel;
    let blocks = params.input_shape[2] / 4;
    if blocks == 0 {
        return 0;
    }
    kh.saturating_mul(kw)
        .saturating_mul(blocks)
        .saturating_mul(8)
        .saturating_add(3)
}

/// The weights of the layer's whole blocks of four channels in 16-bit lanes, at the first word
/// boundary of `workspace`: block `b`'s taps together, tap `t = r kw + k` at
/// `8 (b kh kw + t)`, the words `sxtb16(w)` and `sxtb16_ror8(w)` of its weight word `w` (bytes
/// `t c + 4 b..t c + 4 b + 4`). `None`, writing nothing, if the workspace is shorter than
/// [`widened_len`] or the layer has no block.
fn widen_weights<'w>(params: &ConvParams<'_>, workspace: &'w mut [i8]) -> Option<&'w [u8]> {
    // the lanes themselves: `widened_len` without the bytes to a word boundary
    let len = widened_len(params).checked_sub(3)?;
    let wide = super::aligned(workspace).get_mut(..len)?;
    let [kh, kw] = params.kernel;
    let taps = kh.wrapping_mul(kw);
    let c = params.input_shape[2];
    // `params.check` proved `weights` holds `taps c` bytes: every tap's row is there
    let mut lanes = wide.chunks_exact_mut(8);
    for b in 0..c / 4 {
        let at = b.wrapping_mul(4);
        for row in params.weights.chunks_exact(c.max(1)).take(taps) {
            let (Some(word), Some(out)) = (row.get(at..at.wrapping_add(4)), lanes.next()) else {
                break;
            };
            let w = le_i32(word) as u32;
            let (lo, hi) = out.split_at_mut(4);
            lo.copy_from_slice(&sxtb16(w).to_le_bytes().map(|b| b as i8));
            hi.copy_from_slice(&sxtb16_ror8(w).to_le_bytes().map(|b| b as i8));
        }
    }
    Some(crate::words::as_u8(wide))
}

/// `DepthwiseConv2d` four channels per word, byte by byte. Same contract as
/// [`super::reference::depthwise_conv2d_i8`].
pub fn depthwise_conv2d_i8_bytes(
    params: &ConvParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    depthwise_with(
        params,
        &mut [],
        input,
        output,
        mac_words_bytes,
        no_pixel_blocks,
        None,
    )
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
