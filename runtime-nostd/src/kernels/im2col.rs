//! `Conv2d` as a matrix product over output pixels: each pixel's patch is gathered (im2col) into
//! the caller's workspace, then multiplied by the OHWI weights (which are the dense layout
//! `[oc][kh * kw * c]`) with the dense kernels' four-row inner loops: the packed `SMLAD` loop
//! on its widened 16-bit lanes on Cortex-M4/M7, the Thumb-1 / RV32 / SSE2 / portable four-row
//! loop elsewhere, and the dense kernels' output stage.
//!
//! The zero point: a padded tap is gathered as `zp_in`, and every channel starts from
//! `bias[o] - zp_in * sum(w[o])` (computed once per call, into the workspace). A padded tap then
//! adds `w * zp_in`, which the start value takes away again, and an interior tap adds
//! `w * x - w * zp_in`: the reference's `sum w * (x - zp_in)` over the interior taps, in the ring
//! of wrapping `i32` (the reference wraps too), so the result is the reference's bit for bit.
//!
//! A 1x1 convolution without padding gathers nothing: the HWC input pixel is the column.
//! A workspace shorter than [`conv_workspace_len`] is not an error: the kernel then runs the
//! reference, with the same results.

use super::conv::{valid_taps, ConvParams};
#[cfg(doc)]
use super::requantize;
use super::{le_i32, reference, tail_dot, FcParams};
use crate::Error;

/// Whether the input pixel itself is the column (1x1 kernel, no padding).
#[inline(always)]
pub(crate) fn pointwise(p: &ConvParams<'_>) -> bool {
    p.kernel == [1, 1] && p.pad == [0, 0]
}

/// `kh * kw * c`: the length of a column (saturating; `check` refuses what does not fit).
#[inline(always)]
pub(crate) fn taps(p: &ConvParams<'_>) -> usize {
    p.kernel[0]
        .saturating_mul(p.kernel[1])
        .saturating_mul(p.input_shape[2])
}

/// The zero bytes around a gathered column: `taps` rounded up to a multiple of 8, less `taps`
/// (none for a pointwise layer, whose column is the input pixel itself).
#[inline(always)]
fn column_pad(p: &ConvParams<'_>) -> usize {
    if pointwise(p) {
        0
    } else {
        taps(p).wrapping_neg() & 7
    }
}

/// The workspace bytes the convolution needs: 4 per output channel (the start values), the
/// gathered column between `column_pad` zeros on each side (none for a pointwise layer) and,
/// with `widened`, the 16-bit lanes of the column rounded up to a multiple of 8
/// ([`super::packed::widened_len`]).
pub fn workspace_len(p: &ConvParams<'_>, widened: bool) -> usize {
    let taps = taps(p);
    let pad = column_pad(p);
    let column = if pointwise(p) {
        0
    } else {
        taps.saturating_add(pad.wrapping_mul(2))
    };
    let lanes = if widened {
        super::packed::widened_len(taps.saturating_add(pad))
    } else {
        0
    };
    p.output_shape[2]
        .saturating_mul(4)
        .saturating_add(column)
        .saturating_add(lanes)
}

/// The workspace bytes the fastest `conv2d_i8_workspace` needs for `p`: a pure function of the
/// layer's parameters, and the same on every target (the widened lanes of Armv7E-M count
/// everywhere), so that a host that bakes a model sizes the scratch of any device. With fewer
/// bytes a Cortex-M4 ran the KWS DS-CNN's first and pointwise layers through the reference.
pub fn conv_workspace_len(p: &ConvParams<'_>) -> usize {
    workspace_len(p, true)
}

/// A little-endian `i32` from four workspace bytes.
#[inline(always)]
fn le_i32_i8(chunk: &[i8]) -> i32 {
    match *chunk {
        [a, b, c, d] => i32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0,
    }
}

/// `first .. first + n` of `s`, or an empty slice.
#[inline(always)]
pub(crate) fn range<T>(s: &[T], first: usize, n: usize) -> &[T] {
    first
        .checked_add(n)
        .and_then(|end| s.get(first..end))
        .unwrap_or(&[])
}

/// Writes the column of output pixel `(oy, ox)` into `column` (`kh * kw * c` bytes, HWC patch
/// order, `zp` for padded taps).
#[inline(always)]
pub(crate) fn gather(p: &ConvParams<'_>, input: &[i8], oy: usize, ox: usize, column: &mut [i8]) {
    let [h, w, c] = p.input_shape;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let [top, left] = p.pad;
    let zp = p.input_zero_point;
    let row_len = kw.wrapping_mul(c).max(1);
    let (ky_lo, ky_hi) = valid_taps(oy, sh, top, kh, h);
    let (kx_lo, kx_hi) = valid_taps(ox, sw, left, kw, w);
    let (pre, run) = (
        kx_lo.wrapping_mul(c),
        (kx_hi.wrapping_sub(kx_lo)).wrapping_mul(c),
    );
    let ix_lo = ox.wrapping_mul(sw).wrapping_add(kx_lo).wrapping_sub(left);
    if ky_lo == 0 && ky_hi == kh && kx_lo == 0 && kx_hi == kw {
        // an interior window: row after row of the input, no padding
        let iy = oy.wrapping_mul(sh).wrapping_sub(top);
        let mut at = iy.wrapping_mul(w).wrapping_add(ix_lo).wrapping_mul(c);
        let step = w.wrapping_mul(c);
        // short rows, and cores without unaligned word access (Cortex-M0): byte by byte (the
        // host tests take the word path too)
        if row_len < 8 || !cfg!(any(kiln_kernel = "dsp", test)) {
            for row in column.chunks_exact_mut(row_len) {
                for (d, &s) in row.iter_mut().zip(range(input, at, row_len)) {
                    *d = s;
                }
                at = at.wrapping_add(step);
            }
            return;
        }
        for row in column.chunks_exact_mut(row_len) {
            // word by word (unaligned word loads and stores where the core has them), then
            // the last one to three bytes
            let src = range(input, at, row_len);
            let mut dst_words = row.chunks_exact_mut(4);
            let mut src_words = src.chunks_exact(4);
            for (d, s) in dst_words.by_ref().zip(src_words.by_ref()) {
                d.copy_from_slice(s);
            }
            let dst_tail = dst_words.into_remainder();
            for (d, &s) in dst_tail.iter_mut().zip(src_words.remainder()) {
                *d = s;
            }
            at = at.wrapping_add(step);
        }
        return;
    }
    for (ky, row) in column.chunks_mut(row_len).enumerate() {
        if ky < ky_lo || ky >= ky_hi {
            row.fill(zp);
            continue;
        }
        let iy = oy.wrapping_mul(sh).wrapping_add(ky).wrapping_sub(top);
        let at = iy.wrapping_mul(w).wrapping_add(ix_lo).wrapping_mul(c);
        let src = range(input, at, run);
        let (head, rest) = row.split_at_mut(pre.min(row.len()));
        head.fill(zp);
        let (mid, tail) = rest.split_at_mut(run.min(rest.len()));
        for (d, &s) in mid.iter_mut().zip(src) {
            *d = s;
        }
        tail.fill(zp);
    }
}

/// The inner loop: `dot4(block, stride, column, lanes, n, acc)` adds to `acc[r]` the dot
/// product of the first `n` (a positive multiple of 8) column bytes with row `r` of the four
/// rows at `block`, from `lanes` (the column's 16-bit lanes) when given.
pub(crate) type Dot4 = fn(&[u8], usize, &[i8], Option<&[i8]>, usize, &mut [i32; 4]);

/// The four-row loop of the Cortex-M4/M7 packed kernel (portable twin elsewhere).
#[inline(always)]
fn dot4_packed(
    block: &[u8],
    stride: usize,
    column: &[i8],
    lanes: Option<&[i8]>,
    n: usize,
    acc: &mut [i32; 4],
) {
    match lanes {
        Some(lanes) => super::packed::dot4_widened(block, stride, lanes, n / 8, acc),
        None => super::packed::dot4(block, stride, column, n / 8, acc),
    }
}

/// The four-row loop of this target's scalar kernel (Thumb-1, RV32, SSE2 or portable).
#[inline(always)]
fn dot4_rows4(
    block: &[u8],
    stride: usize,
    column: &[i8],
    _lanes: Option<&[i8]>,
    n: usize,
    acc: &mut [i32; 4],
) {
    super::rows4::dot4(block, stride, column, n, acc);
}

/// The portable four-row loop, whatever the target (tests).
#[cfg(test)]
#[inline(always)]
fn dot4_portable(
    block: &[u8],
    stride: usize,
    column: &[i8],
    _lanes: Option<&[i8]>,
    n: usize,
    acc: &mut [i32; 4],
) {
    super::rows4::dot4_portable(block, stride, column, n, acc);
}

/// The columns of one output pixel. `tight` holds the `taps` values; `ahead` is the column
/// followed by zeros up to `n_fast` bytes (a multiple of 8) and `behind` is the column preceded
/// by as many zeros (`n_fast` bytes too, or empty). A weight row read `n_fast` bytes from its
/// start runs into the next row, which `ahead`'s zeros cancel; read from `n_fast - taps` bytes
/// before its start, it runs into the previous row, which `behind`'s zeros cancel. So every block
/// of four rows but the last takes `ahead` and the last takes `behind`, all in the inner loop
/// with no scalar tail; without room on either side, the tight column and the tail.
struct Columns<'a> {
    tight: &'a [i8],
    ahead: &'a [i8],
    behind: &'a [i8],
    lanes: Option<&'a [i8]>,
    n_fast: usize,
}

/// The dot products of the block of four rows at `at` that the `ahead` column cannot take (the
/// last one when its reads would pass the weights' end): from `before` bytes before it with the
/// `behind` column, or else the tight column's multiples of 8 and the scalar tail.
#[inline(never)]
fn edge_block(weights: &[u8], at: usize, cols: &Columns<'_>, dot4: Dot4, acc: &mut [i32; 4]) {
    let column = cols.tight;
    let n_in = column.len();
    let n_fast = cols.n_fast;
    let before = n_fast.wrapping_sub(n_in); // n_fast >= n_in when n_fast > 0
    if n_fast > 0 && !cols.behind.is_empty() && at >= before {
        let rows = weights.get(at.wrapping_sub(before)..).unwrap_or(&[]);
        dot4(rows, n_in, cols.behind, None, n_fast, acc);
        return;
    }
    let block = range(weights, at, n_in.saturating_mul(4));
    let n_dot = n_in & !7;
    if n_dot > 0 {
        let column_dot = column.get(..n_dot).unwrap_or(&[]);
        dot4(block, n_in, column_dot, cols.lanes, n_dot, acc);
    }
    let column_rest = column.get(n_dot..).unwrap_or(&[]);
    if !column_rest.is_empty() {
        // the last one to seven column bytes
        let mut rows = block.chunks_exact(n_in.max(1));
        for acc in acc.iter_mut() {
            let tail = rows.next().and_then(|r| r.get(n_dot..)).unwrap_or(&[]);
            *acc = tail_dot(tail, column_rest, *acc);
        }
    }
}

/// The output stage, [`requantize`] with its constants in registers: `zp + rq_acc` saturated,
/// then clamped to `lo..=hi` (both within `i8`, so the saturation to `i8` is part of the clamp;
/// `max` before `min`, as `requantize` does).
#[inline(always)]
fn stage<const HIGH: bool>(acc: i32, multiplier: i32, shift: u8, zp: i32, lo: i32, hi: i32) -> i8 {
    let scaled = if HIGH {
        crate::fixed::rq_acc_high(acc, multiplier, shift)
    } else {
        crate::fixed::rq_acc(acc, multiplier, shift)
    };
    let y = zp.saturating_add(scaled);
    y.max(lo).min(hi) as i8
}

/// One output pixel: `out[o] = stage::<HIGH>(start[o] + sum_i w[o][i] * column[i])`.
#[inline(always)]
fn pixel<const HIGH: bool>(
    fc: &FcParams<'_>,
    start: &[i8],
    cols: &Columns<'_>,
    dot4: Dot4,
    out: &mut [i8],
) {
    let column = cols.tight;
    let n_in = column.len();
    let n_fast = cols.n_fast;
    let weights = fc.weights;
    let block_len = n_in.saturating_mul(4).max(1);
    // The blocks whose four rows, read `n_fast` bytes each, stay inside the weights: all but
    // perhaps the last (the rows of a block end where the next block starts).
    let n_blocks = out.len() / 4;
    let n_ahead = if n_fast == 0 {
        0
    } else {
        let reach = n_blocks
            .saturating_mul(block_len)
            .saturating_add(n_fast.wrapping_sub(n_in));
        if reach <= weights.len() {
            n_blocks
        } else {
            n_blocks.saturating_sub(1)
        }
    };
    // The output stage's constants, once per pixel rather than once per output.
    let zp = i32::from(fc.output_zero_point);
    let (lo, hi) = (i32::from(fc.clamp_min), i32::from(fc.clamp_max));
    let mut outputs = out.chunks_exact_mut(4);
    let mut at = 0usize; // the block's first weight
    for (b, out4) in outputs.by_ref().enumerate() {
        let Ok(start4) = <&[i8; 16]>::try_from(range(start, b.wrapping_mul(16), 16)) else {
            break; // lengths were checked: never taken
        };
        let [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15] =
            start4.map(|v| v as u8);
        let mut acc = [
            i32::from_le_bytes([s0, s1, s2, s3]),
            i32::from_le_bytes([s4, s5, s6, s7]),
            i32::from_le_bytes([s8, s9, s10, s11]),
            i32::from_le_bytes([s12, s13, s14, s15]),
        ];
        if b < n_ahead {
            let rows = weights.get(at..).unwrap_or(&[]);
            dot4(rows, n_in, cols.ahead, cols.lanes, n_fast, &mut acc);
        } else if !cols.behind.is_empty() && at >= n_fast.wrapping_sub(n_in) {
            // the last block, from before its start (as `edge_block` would)
            let rows = weights.get(at.wrapping_sub(n_fast.wrapping_sub(n_in))..);
            dot4(
                rows.unwrap_or(&[]),
                n_in,
                cols.behind,
                None,
                n_fast,
                &mut acc,
            );
        } else {
            edge_block(weights, at, cols, dot4, &mut acc);
        }
        at = at.wrapping_add(block_len);
        // the block's four outputs in a straight line, from fixed-size views of its parameters
        let first = b.wrapping_mul(4);
        let mults = range(fc.multipliers, first.wrapping_mul(4), 16);
        let t4 = range(fc.shifts, first, 4);
        let (Ok(out4), Ok(mults), Ok(t4)) = (
            <&mut [i8; 4]>::try_from(out4),
            <&[u8; 16]>::try_from(mults),
            <&[u8; 4]>::try_from(t4),
        ) else {
            break; // lengths were checked: never taken
        };
        let [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15] = *mults;
        let [t0, t1, t2, t3] = *t4;
        let [a0, a1, a2, a3] = acc;
        let [y0, y1, y2, y3] = out4;
        *y0 = stage::<HIGH>(a0, i32::from_le_bytes([m0, m1, m2, m3]), t0, zp, lo, hi);
        *y1 = stage::<HIGH>(a1, i32::from_le_bytes([m4, m5, m6, m7]), t1, zp, lo, hi);
        *y2 = stage::<HIGH>(a2, i32::from_le_bytes([m8, m9, m10, m11]), t2, zp, lo, hi);
        *y3 = stage::<HIGH>(a3, i32::from_le_bytes([m12, m13, m14, m15]), t3, zp, lo, hi);
    }
    let done = n_blocks.wrapping_mul(4);
    let mut starts = start
        .get(done.wrapping_mul(4)..)
        .unwrap_or(&[])
        .chunks_exact(4)
        .map(le_i32_i8);
    let mut multipliers = fc
        .multipliers
        .get(done.wrapping_mul(4)..)
        .unwrap_or(&[])
        .chunks_exact(4)
        .map(le_i32);
    let mut shifts = fc.shifts.get(done..).unwrap_or(&[]).iter().copied();
    let mut rows = weights.get(at..).unwrap_or(&[]).chunks_exact(n_in.max(1));
    for out in outputs.into_remainder() {
        let (Some(row), Some(b), Some(m), Some(t)) = (
            rows.next(),
            starts.next(),
            multipliers.next(),
            shifts.next(),
        ) else {
            break;
        };
        *out = stage::<HIGH>(tail_dot(row, column, b), m, t, zp, lo, hi);
    }
}

/// The convolution with a given inner loop; `widened` asks for the column's 16-bit lanes.
#[inline(never)]
pub(crate) fn conv2d_with(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
    widened: bool,
    dot4: Dot4,
) -> Result<(), Error> {
    params.check(false, input.len(), output.len())?;
    if workspace.len() < workspace_len(params, widened) {
        return reference::conv2d_i8(params, input, output);
    }
    let [_, w, c] = params.input_shape;
    let [oh, ow, oc] = params.output_shape;
    let [sh, sw] = params.stride;
    let taps = taps(params);
    let pointwise = pointwise(params);
    let pad = column_pad(params);
    let (start, rest) = workspace.split_at_mut(oc.wrapping_mul(4).min(workspace.len()));
    let column_len = if pointwise {
        0
    } else {
        taps.wrapping_add(pad.wrapping_mul(2))
    };
    let (column, lanes_ws) = rest.split_at_mut(column_len.min(rest.len()));
    column.fill(0); // the zeros around the gathered taps stay
    start_values(params, taps, start);
    let fc = params.fc();
    // The inner loop's length: the column padded to a multiple of 8 (a pointwise column is the
    // input pixel: padded only when it is a multiple of 8 already).
    let n_fast = if pad > 0 || taps % 8 == 0 {
        taps.wrapping_add(pad)
    } else {
        0
    };
    let n_paired = if n_fast > 0 { n_fast } else { taps & !7 };
    // every shift takes `rq_acc_high` (checked once per call)
    let high = params.shifts_all_high();
    let mut outputs = output.chunks_exact_mut(oc.max(1));
    for oy in 0..oh {
        for ox in 0..ow {
            let Some(out) = outputs.next() else {
                return Ok(()); // lengths were checked: never taken
            };
            let (tight, ahead, behind): (&[i8], &[i8], &[i8]) = if pointwise {
                let pix = oy.wrapping_mul(sh).wrapping_mul(w);
                let at = pix.wrapping_add(ox.wrapping_mul(sw)).wrapping_mul(c);
                let col = range(input, at, c);
                (col, col, &[])
            } else {
                let tight = column
                    .get_mut(pad..pad.wrapping_add(taps))
                    .unwrap_or(&mut []);
                gather(params, input, oy, ox, tight);
                (
                    range(column, pad, taps),
                    range(column, pad, n_fast),
                    range(column, 0, n_fast),
                )
            };
            // a column of 16 or fewer costs less split in the loop than widened per pixel
            let lanes = if widened && n_paired > 16 {
                ahead
                    .get(..n_paired)
                    .and_then(|paired| super::packed::widen(paired, lanes_ws))
            } else {
                None
            };
            let cols = Columns {
                tight,
                ahead,
                behind: if pad > 0 { behind } else { &[] },
                lanes,
                n_fast,
            };
            if high {
                pixel::<true>(&fc, start, &cols, dot4, out);
            } else {
                pixel::<false>(&fc, start, &cols, dot4, out);
            }
        }
    }
    Ok(())
}

/// `start[o] = bias[o] - zp_in * sum(w[o])` for every output channel, as little-endian words.
fn start_values(params: &ConvParams<'_>, taps: usize, start: &mut [i8]) {
    let zp = i32::from(params.input_zero_point);
    let mut rows = params.weights.chunks_exact(taps.max(1));
    for (dst, bias) in start.chunks_exact_mut(4).zip(params.bias.chunks_exact(4)) {
        let Some(row) = rows.next() else { break };
        let sum = row
            .iter()
            .fold(0i32, |s, &w| s.wrapping_add(i32::from(w as i8)));
        let value = le_i32(bias).wrapping_sub(zp.wrapping_mul(sum));
        for (d, b) in dst.iter_mut().zip(value.to_le_bytes()) {
            *d = b as i8;
        }
    }
}

/// A pointwise convolution in place (the contract of
/// [`super::inplace::pointwise_conv2d_i8_in_place`]: the output over `data` from its start, the
/// input from `input_at`, the `c_out`-byte temporary `pixel`) with this module's inner loops:
/// the start values once into the workspace, then pixel by pixel in increasing order the
/// column (the input pixel itself) through `dot4` into `pixel`, copied to the output. A
/// workspace shorter than [`workspace_len`] runs the in-place kernel of the reference
/// arithmetic; the bytes are the same.
#[inline(never)]
pub(crate) fn pointwise_in_place_with(
    params: &ConvParams<'_>,
    (data, input_at): (&mut [i8], usize),
    pixel: &mut [i8],
    workspace: &mut [i8],
    (widened, dot4): (bool, Dot4),
) -> Result<(), Error> {
    use super::inplace::{is_pointwise, pointwise_input_at};
    let (Some(n_in), Some(n_out)) = (
        super::conv::volume(params.input_shape),
        super::conv::volume(params.output_shape),
    ) else {
        return Err(Error::KernelArguments);
    };
    params.check(false, n_in, n_out)?;
    if workspace.len() < workspace_len(params, widened) {
        return super::inplace::pointwise_conv2d_i8_in_place(params, data, input_at, pixel);
    }
    let needed = input_at.checked_add(n_in).map(|end| end.max(n_out));
    let [h, w, c_in] = params.input_shape;
    let c_out = params.output_shape[2];
    let (Some(data), Some(pixel), true) = (
        needed.and_then(|n| data.get_mut(..n)),
        pixel.get_mut(..c_out),
        is_pointwise(params)
            && pointwise_input_at(params.input_shape, params.output_shape) == Some(input_at),
    ) else {
        return Err(Error::KernelArguments);
    };
    let (start, lanes_ws) = workspace.split_at_mut(c_out.wrapping_mul(4).min(workspace.len()));
    start_values(params, c_in, start);
    let fc = params.fc();
    // a pointwise column is the input pixel: the fast loop when it is a multiple of 8 long
    let n_fast = if c_in % 8 == 0 { c_in } else { 0 };
    let n_paired = if n_fast > 0 { n_fast } else { c_in & !7 };
    let high = params.shifts_all_high();
    let (mut x_at, mut y_at) = (input_at, 0usize);
    // every offset below is at most `needed`, which fits
    for _ in 0..h.wrapping_mul(w) {
        let column = range(data, x_at, c_in);
        let lanes = if widened && n_paired > 16 {
            column
                .get(..n_paired)
                .and_then(|paired| super::packed::widen(paired, lanes_ws))
        } else {
            None
        };
        let cols = Columns {
            tight: column,
            ahead: column,
            behind: &[],
            lanes,
            n_fast,
        };
        if high {
            pixel_stage::<true>(&fc, start, &cols, dot4, pixel);
        } else {
            pixel_stage::<false>(&fc, start, &cols, dot4, pixel);
        }
        // pixel `p`'s outputs end at `(p + 1) c_out`, at or before input pixel `p + 1`
        if let Some(y) = data.get_mut(y_at..y_at.wrapping_add(c_out)) {
            for (y, &v) in y.iter_mut().zip(pixel.iter()) {
                *y = v;
            }
        }
        x_at = x_at.wrapping_add(c_in);
        y_at = y_at.wrapping_add(c_out);
    }
    Ok(())
}

/// [`pixel`] out of line, for the in-place loop.
#[inline(never)]
fn pixel_stage<const HIGH: bool>(
    fc: &FcParams<'_>,
    start: &[i8],
    cols: &Columns<'_>,
    dot4: Dot4,
    out: &mut [i8],
) {
    pixel::<HIGH>(fc, start, cols, dot4, out);
}

/// [`pointwise_in_place_with`] on Cortex-M4/M7's packed `SMLAD` loop (portable twin elsewhere).
pub fn pointwise_in_place_packed(
    params: &ConvParams<'_>,
    (data, input_at): (&mut [i8], usize),
    pixel: &mut [i8],
    workspace: &mut [i8],
) -> Result<(), Error> {
    pointwise_in_place_with(
        params,
        (data, input_at),
        pixel,
        workspace,
        (true, dot4_packed),
    )
}

/// [`pointwise_in_place_with`] on this target's four-row scalar loop.
pub fn pointwise_in_place_rows4(
    params: &ConvParams<'_>,
    (data, input_at): (&mut [i8], usize),
    pixel: &mut [i8],
    workspace: &mut [i8],
) -> Result<(), Error> {
    pointwise_in_place_with(
        params,
        (data, input_at),
        pixel,
        workspace,
        (false, dot4_rows4),
    )
}

/// [`pointwise_in_place_with`] on the portable four-row loop (tests).
#[cfg(test)]
pub fn pointwise_in_place_portable(
    params: &ConvParams<'_>,
    (data, input_at): (&mut [i8], usize),
    pixel: &mut [i8],
    workspace: &mut [i8],
) -> Result<(), Error> {
    pointwise_in_place_with(
        params,
        (data, input_at),
        pixel,
        workspace,
        (false, dot4_portable),
    )
}

/// `Conv2d` on Cortex-M4/M7's packed `SMLAD` loop over the widened column (portable twin
/// elsewhere). Same contract as [`reference::conv2d_i8`]; the workspace as above.
pub fn conv2d_i8_packed(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    conv2d_with(params, input, workspace, output, true, dot4_packed)
}

/// `Conv2d` on this target's four-row scalar loop. Same contract as [`reference::conv2d_i8`].
pub fn conv2d_i8_rows4(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    conv2d_with(params, input, workspace, output, false, dot4_rows4)
}

/// `Conv2d` on the portable four-row loop (tests).
#[cfg(test)]
pub fn conv2d_i8_portable(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    conv2d_with(params, input, workspace, output, false, dot4_portable)
}
