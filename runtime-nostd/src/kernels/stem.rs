//! The first convolution of an image or audio network (MobileNet's and ResNet's 3x3 over RGB,
//! the DS-CNN's 10x4 over MFCCs): one to four input channels, so an output pixel's window is a
//! few short rows (`kw * c_in <= 16` bytes each) and the pair kernel's im2col, its widened
//! columns and its two-channel blocks cost more than the multiplies.
//!
//! Per output pixel (`kiln_stem_pixel_dsp` on Cortex-M4/M7): the window's rows copied into a
//! column 16 bytes at a time (a window over the padding is gathered with `zp_in` first), the
//! column widened once into `x - zp_in` lanes (`SXTAB16`: taps `4 j, 4 j + 2` and
//! `4 j + 1, 4 j + 3`), then four channels per pass: each lane pair against each channel's
//! weight lanes (`LDRD`, two `SMLAD`), the four accumulators through the output stage into one
//! word. The weights are arranged once per call in the workspace in that order, zero past the
//! taps (so the column's pad bytes add nothing), with each channel's bias, multiplier and
//! shift. Every accumulator is the reference's `bias + sum w * (x - zp_in)` in wrapping `i32`,
//! the output stage `fixed::rq_high_zp` (every shift in `33..=62`; otherwise the caller's other
//! kernel runs): the reference's bytes.

use super::conv::ConvParams;
use super::im2col::gather;
use super::le_i32;
use crate::fixed::{round_zp, rq_high_zp};
use crate::Error;

/// The longest window row (`kw * c_in` bytes) the kernel takes: one 16-byte copy per row.
pub(crate) const MAX_ROW: usize = 16;

/// The most output channels the kernel takes. With more, the pair kernel's two-pixel blocks
/// (one widened weight row for two pixels) win over this kernel's per-pixel lanes: measured
/// on the DS-CNN's 10x4 layer into 64 channels, 77 K instructions more per inference with it;
/// MobileNet's 8 and ResNet-8's 16, 246 K and 70 K fewer.
pub(crate) const MAX_CHANNELS: usize = 16;

/// Bytes read and written past a window row's start (one copy of [`MAX_ROW`] bytes).
const COPY: usize = 16;

/// A layer's layout in the kernel's workspace.
#[derive(Clone, Copy)]
pub(crate) struct Stem {
    pub taps: usize,
    pub row_len: usize,
    pub kh: usize,
    /// Words of the column the lanes widen (`taps` rounded up to 4 bytes).
    pub n_words: usize,
    pub oc: usize,
    /// The column: `kh` rows of `row_len` bytes, and the last row's 16-byte copy.
    pub column_len: usize,
}

impl Stem {
    /// The layer's layout, if the kernel takes it: 1 to 4 input channels, window rows of at
    /// most [`MAX_ROW`] bytes, whole words of output channels.
    pub(crate) fn of(p: &ConvParams<'_>) -> Option<Self> {
        let c = p.input_shape[2];
        let oc = p.output_shape[2];
        let [kh, kw] = p.kernel;
        let row_len = kw.checked_mul(c)?;
        let taps = row_len.checked_mul(kh)?;
        let fits = (1..=4).contains(&c)
            && oc <= MAX_CHANNELS
            && row_len <= MAX_ROW
            && taps > 0
            && oc > 0
            && oc % 4 == 0
            && p.input_shape[0] > 0
            && p.input_shape[1] > 0;
        if !fits {
            return None;
        }
        let column_len = kh.checked_sub(1)?.checked_mul(row_len)?.checked_add(COPY)?;
        Some(Stem {
            taps,
            row_len,
            kh,
            n_words: taps.div_ceil(4),
            oc,
            column_len: column_len.checked_next_multiple_of(4)?,
        })
    }

    /// The workspace's parts after up to 3 bytes to a word boundary: the column, the lanes
    /// (8 bytes per word), the weight lanes (8 bytes per word and channel), the records
    /// (bias, multiplier, `shift - 33` per channel).
    fn lens(&self) -> Option<[usize; 4]> {
        Some([
            self.column_len,
            self.n_words.checked_mul(8)?,
            self.n_words.checked_mul(8)?.checked_mul(self.oc)?,
            self.oc.checked_mul(12)?,
        ])
    }
}

/// The workspace bytes the kernel needs for a layer (0 for a layer it does not take): a pure
/// function of the parameters, the same on every target.
pub fn workspace_len(p: &ConvParams<'_>) -> usize {
    Stem::of(p)
        .and_then(|s| s.lens())
        .and_then(|lens| lens.iter().try_fold(3usize, |sum, &n| sum.checked_add(n)))
        .unwrap_or(0)
}

/// The workspace's parts: column, lanes, weight lanes, records.
pub(crate) type Parts<'w> = (&'w mut [i8], &'w mut [i8], &'w mut [i8], &'w mut [i8]);

/// The workspace split into its parts (word-aligned), or `None` if it is too short.
pub(crate) fn split<'w>(workspace: &'w mut [i8], s: &Stem) -> Option<Parts<'w>> {
    let [column, lanes, weights, records] = s.lens()?;
    let ws = super::aligned(workspace);
    let (c, ws) = ws.split_at_mut_checked(column)?;
    let (l, ws) = ws.split_at_mut_checked(lanes)?;
    let (w, ws) = ws.split_at_mut_checked(weights)?;
    let r = ws.get_mut(..records)?;
    Some((c, l, w, r))
}

fn put(bytes: &mut [i8], at: usize, word: u32) {
    if let Some(slot) = bytes.get_mut(at..at.wrapping_add(4)) {
        for (to, from) in slot.iter_mut().zip(word.to_le_bytes()) {
            *to = from as i8;
        }
    }
}

fn get(bytes: &[i8], at: usize) -> u32 {
    match bytes.get(at..at.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0,
    }
}

/// Two 16-bit lanes: `lo` in the low half.
fn lanes(lo: i32, hi: i32) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

/// The weight lanes in the order the passes read them: for pass `q`, word `j`, channel
/// `4 q + k`: `(w[4 j], w[4 j + 2])` then `(w[4 j + 1], w[4 j + 3])`, zero past the taps.
/// Then each channel's record: bias, multiplier, `shift - 33`.
pub(crate) fn arrange(p: &ConvParams<'_>, s: &Stem, weights: &mut [i8], records: &mut [i8]) {
    let w = |ch: usize, t: usize| -> i32 {
        if t >= s.taps {
            return 0;
        }
        let at = ch.wrapping_mul(s.taps).wrapping_add(t);
        p.weights.get(at).map_or(0, |&b| i32::from(b as i8))
    };
    let mut at = 0usize;
    for q in 0..s.oc / 4 {
        for j in 0..s.n_words {
            for k in 0..4usize {
                let ch = q.wrapping_mul(4).wrapping_add(k);
                let t = j.wrapping_mul(4);
                put(weights, at, lanes(w(ch, t), w(ch, t.wrapping_add(2))));
                let odd = lanes(w(ch, t.wrapping_add(1)), w(ch, t.wrapping_add(3)));
                put(weights, at.wrapping_add(4), odd);
                at = at.wrapping_add(8);
            }
        }
    }
    for ch in 0..s.oc {
        let word = |bytes: &[u8]| {
            let at = ch.wrapping_mul(4);
            bytes.get(at..at.wrapping_add(4)).map_or(0, le_i32)
        };
        let shift = p.shifts.get(ch).copied().unwrap_or(33);
        let at = ch.wrapping_mul(12);
        put(records, at, word(p.bias) as u32);
        put(records, at.wrapping_add(4), word(p.multipliers) as u32);
        put(
            records,
            at.wrapping_add(8),
            i32::from(shift).wrapping_sub(33) as u32,
        );
    }
}

/// Where output pixel `(oy, ox)`'s window starts in the input, if it lies inside the input
/// with room for every row's 16-byte copy (otherwise the window is gathered).
pub(crate) fn window_at(
    p: &ConvParams<'_>,
    s: &Stem,
    input_len: usize,
    oy: usize,
    ox: usize,
) -> Option<usize> {
    let [h, w, c] = p.input_shape;
    let iy = oy.checked_mul(p.stride[0])?.checked_sub(p.pad[0])?;
    let ix = ox.checked_mul(p.stride[1])?.checked_sub(p.pad[1])?;
    if iy.checked_add(s.kh)? > h || ix.checked_add(p.kernel[1])? > w {
        return None;
    }
    let at = iy.checked_mul(w)?.checked_add(ix)?.checked_mul(c)?;
    let last = s.kh.checked_sub(1)?.checked_mul(w.checked_mul(c)?)?;
    (at.checked_add(last)?.checked_add(COPY)? <= input_len).then_some(at)
}

/// The portable twin of `kiln_stem_pixel_dsp` over the whole layer, through the same
/// workspace layout: `Ok(false)` (nothing written) for a layer it does not take.
pub fn conv2d_i8_stem_portable(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<bool, Error> {
    let Some(s) = Stem::of(params) else {
        return Ok(false);
    };
    params.check(false, input.len(), output.len())?;
    if !params.shifts_all_high() {
        return Ok(false);
    }
    let Some((column, lane_words, weights, records)) = split(workspace, &s) else {
        return Ok(false);
    };
    arrange(params, &s, weights, records);
    let [_, w, c] = params.input_shape;
    let [oh, ow, _] = params.output_shape;
    let zp = i32::from(params.input_zero_point);
    let rz = round_zp(params.output_zero_point);
    let windows = (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox)));
    for ((oy, ox), out) in windows.zip(output.chunks_exact_mut(s.oc.max(1))) {
        // the window's rows into the column, as the routine copies them
        match window_at(params, &s, input.len(), oy, ox) {
            Some(at) => {
                for r in 0..s.kh {
                    let from = at.wrapping_add(r.wrapping_mul(w.wrapping_mul(c)));
                    let to = r.wrapping_mul(s.row_len);
                    for i in 0..COPY {
                        let x = input.get(from.wrapping_add(i)).copied().unwrap_or(0);
                        if let Some(slot) = column.get_mut(to.wrapping_add(i)) {
                            *slot = x;
                        }
                    }
                }
            }
            None => gather(
                params,
                input,
                oy,
                ox,
                column.get_mut(..s.taps).unwrap_or(&mut []),
            ),
        }
        // the lanes: x - zp, taps 4 j and 4 j + 2, then 4 j + 1 and 4 j + 3
        for j in 0..s.n_words {
            let x = |t: usize| {
                let b = column
                    .get(j.wrapping_mul(4).wrapping_add(t))
                    .copied()
                    .unwrap_or(0);
                i32::from(b).wrapping_sub(zp)
            };
            put(lane_words, j.wrapping_mul(8), lanes(x(0), x(2)));
            put(
                lane_words,
                j.wrapping_mul(8).wrapping_add(4),
                lanes(x(1), x(3)),
            );
        }
        for (ch, o) in out.iter_mut().enumerate() {
            let (q, k) = (ch / 4, ch % 4);
            let record = |i: usize| get(records, ch.wrapping_mul(12).wrapping_add(i)) as i32;
            let mut acc = record(0);
            for j in 0..s.n_words {
                let at = q
                    .wrapping_mul(s.n_words)
                    .wrapping_add(j)
                    .wrapping_mul(4)
                    .wrapping_add(k)
                    .wrapping_mul(8);
                for half in [0usize, 4] {
                    let x = get(lane_words, j.wrapping_mul(8).wrapping_add(half));
                    let wl = get(weights, at.wrapping_add(half));
                    // SMLAD: both 16-bit products added
                    let lo = |v: u32| i32::from(v as u16 as i16);
                    let hi = |v: u32| i32::from((v >> 16) as u16 as i16);
                    acc = acc
                        .wrapping_add(lo(x).wrapping_mul(lo(wl)))
                        .wrapping_add(hi(x).wrapping_mul(hi(wl)));
                }
            }
            let shift = record(8).wrapping_add(33) as u8;
            *o = rq_high_zp(acc, record(4), shift, rz)
                .max(params.clamp_min)
                .min(params.clamp_max);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::kernels::reference;
    use crate::testutil::Rng;
    use std::vec;
    use std::vec::Vec;

    /// Random stems (1 to 4 input channels, kernels up to 16 bytes a row, strides 1 and 2,
    /// valid and same padding, 4 to 16 output channels) against the reference, byte for byte.
    #[test]
    fn stems_equal_the_reference() {
        let mut rng = Rng::new(5);
        let mut taken = 0;
        for case in 0..300 {
            let c = rng.usize_in(1, 4);
            let kw = rng.usize_in(1, (MAX_ROW / c).min(5));
            let kh = rng.usize_in(1, 5);
            let stride = rng.usize_in(1, 2);
            let same = rng.bool();
            let (h, w) = (kh + rng.usize_in(0, 8), kw + rng.usize_in(0, 8));
            let axis = |n: usize, k: usize| {
                if same {
                    let o = n.div_ceil(stride);
                    let pad = ((o - 1) * stride + k).saturating_sub(n);
                    (o, pad / 2)
                } else {
                    ((n - k) / stride + 1, 0)
                }
            };
            let ((oh, top), (ow, left)) = (axis(h, kh), axis(w, kw));
            let oc = 4 * rng.usize_in(1, 4);
            let weights: Vec<u8> = (0..oc * kh * kw * c)
                .map(|_| rng.next_u64() as u8)
                .collect();
            let bias: Vec<u8> = (0..oc)
                .flat_map(|_| (rng.range_i64(-20000, 20000) as i32).to_le_bytes())
                .collect();
            let multipliers: Vec<u8> = (0..oc)
                .flat_map(|_| (rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32).to_le_bytes())
                .collect();
            let shifts: Vec<u8> = (0..oc)
                .map(|_| {
                    if case % 10 == 9 {
                        30
                    } else {
                        33 + rng.usize_in(0, 13) as u8
                    }
                })
                .collect();
            let input: Vec<i8> = (0..h * w * c).map(|_| rng.i8()).collect();
            let params = ConvParams {
                input_shape: [h, w, c],
                output_shape: [oh, ow, oc],
                kernel: [kh, kw],
                stride: [stride, stride],
                pad: [top, left],
                weights: &weights,
                bias: &bias,
                multipliers: &multipliers,
                shifts: &shifts,
                input_zero_point: rng.i8(),
                output_zero_point: rng.i8(),
                clamp_min: if case % 3 == 0 { 0 } else { i8::MIN },
                clamp_max: if case % 4 == 0 { 90 } else { i8::MAX },
            };
            let mut expected = vec![0i8; oh * ow * oc];
            reference::conv2d_i8(&params, &input, &mut expected).unwrap();
            let len = workspace_len(&params);
            assert!(len > 0, "case {case}");
            let skew = case % 4;
            let mut workspace = vec![0x33i8; len + skew];
            let mut got = vec![0x55i8; oh * ow * oc];
            let ran = conv2d_i8_stem_portable(&params, &input, &mut workspace[skew..], &mut got);
            if case % 10 == 9 {
                assert_eq!(ran, Ok(false), "case {case}: a shift below 33");
                continue;
            }
            assert_eq!(ran, Ok(true), "case {case}");
            assert_eq!(
                got, expected,
                "case {case}: {h}x{w}x{c} k {kh}x{kw} s {stride} same={same}"
            );
            taken += 1;
        }
        assert!(taken > 250);
    }

    #[test]
    fn other_layers_are_not_taken() {
        let p = |c: usize, kw: usize, oc: usize| {
            ConvParams::shapes(([8, 8, c], [6, 8 - kw + 1, oc]), [3, kw], [1, 1], [0, 0])
        };
        assert!(workspace_len(&p(3, 3, 8)) > 0);
        assert_eq!(workspace_len(&p(5, 3, 8)), 0, "five input channels");
        assert_eq!(workspace_len(&p(3, 6, 8)), 0, "rows of 18 bytes");
        assert_eq!(
            workspace_len(&p(3, 3, 6)),
            0,
            "output channels not whole words"
        );
        // 3x3x3 into 8: a column of 2 rows of 9 bytes and a 16-byte copy, 7 words of lanes
        assert_eq!(workspace_len(&p(3, 3, 8)), 3 + 36 + 56 + 448 + 96);
    }
}
