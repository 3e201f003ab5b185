//! The 3x3 stride-1 `DepthwiseConv2d` of MobileNet over channel planes, with the caller's
//! workspace (TinyEngine's layout for depthwise: one channel's pixels side by side, so that a
//! word holds neighbouring taps of one channel). Rows narrower than `MIN_WIDTH` (the
//! DS-CNN's 25 x 5, MobileNet's 6 x 6 and 3 x 3) stay with `dwconv.rs`.
//!
//! Channels go four at a time (one word of the HWC input). For each output row, the one new
//! input row of the window is widened once into a ring of three plane rows per channel:
//! `x - zp_in` as `i16`, the padding columns 0 (so no tap is ever tested for the border).
//! Then per channel two output pixels at a time: per kernel row one `LDRD` of four
//! neighbouring inputs, `SMLAD` with the weight pairs `(w0, w1)` and `(w1, w2)` and two
//! halfword multiplies for the taps left over, 23 instructions for 18 multiply-accumulates
//! with the loop (`kiln_dwp_mac_dsp`), against 10 per 4 for the one-pixel kernel of
//! `dwconv.rs`. The accumulators of a row (four channels interleaved) then take the output
//! stage four channels per word (`kiln_dwp_out_dsp`).
//!
//! The ring's rows do not move: output row `oy` reads padded input row `oy + r` from slot
//! `(oy + r) % 3`, so each channel's weight table holds its kernel rows 0, 1, 2, 0, 1 and the
//! routine starts where `oy % 3` puts the rows in slot order (`TABLE_BYTES`).
//!
//! Every accumulator is the reference's `bias + sum w * (x - zp_in)` over the valid taps in
//! wrapping `i32` (a padding tap adds 0), and the output stage is `fixed::rq_high_zp` (every
//! shift in `33..=62`, checked per call; otherwise the caller's other kernel runs): the
//! reference's bytes. The portable twins of the three routines run the same layout on every
//! target for the tests.

use super::conv::ConvParams;
use super::le_i32;
use crate::fixed::{round_zp, rq_high_zp};
use crate::Error;

/// Bytes of one channel's weight table: kernel rows 0, 1, 2, 0, 1, each `(W01, W12, W02)`.
/// Output row `oy` reads slots 0 to 2, which hold kernel rows `(s - oy) mod 3`: the three rows
/// from entry [`phase_entry`]`(oy % 3)` on.
pub(crate) const TABLE_BYTES: usize = 60;

/// The table entry where phase `oy % 3` starts: rows (0, 1, 2), (2, 0, 1) or (1, 2, 0).
fn phase_entry(phase: usize) -> usize {
    match phase {
        0 => 0,
        1 => 2,
        _ => 1,
    }
}

/// The narrowest output rows the planes take. Narrower ones go through `dwconv.rs`: a block
/// of four channels costs its tables and ring and each row four calls, which rows of 6 pixels
/// or fewer do not pay back (measured on MobileNetV1 0.25 on the Cortex-M4F: planes for its
/// 6 x 6 and 3 x 3 layers too, 465 K instructions more per inference; for its 12 x 12 ones
/// too, 72 K fewer).
pub(crate) const MIN_WIDTH: usize = 7;

/// The plane geometry of a layer the kernel takes.
#[derive(Clone, Copy)]
struct Planes {
    oh: usize,
    ow: usize,
    c: usize,
    ih: usize,
    iw: usize,
    pad_top: usize,
    pad_left: usize,
    /// Output pixels in pairs (the last one may be half used).
    n_pairs: usize,
    /// Input columns that land in a plane row (the rest no window reads).
    n_in: usize,
    /// Bytes of one plane row: `2 n_pairs + 2` entries of `i16` (a multiple of 4).
    row_bytes: usize,
}

impl Planes {
    fn of(p: &ConvParams<'_>) -> Option<Self> {
        let [ih, iw, c] = p.input_shape;
        let [oh, ow, oc] = p.output_shape;
        let fits = p.kernel == [3, 3]
            && p.stride == [1, 1]
            && oc == c
            && c > 0
            && c % 4 == 0
            && oh > 0
            && ow >= MIN_WIDTH;
        if !fits {
            return None;
        }
        let [pad_top, pad_left] = p.pad;
        let n_pairs = ow.div_ceil(2);
        let entries = n_pairs.checked_mul(2)?.checked_add(2)?;
        Some(Planes {
            oh,
            ow,
            c,
            ih,
            iw,
            pad_top,
            pad_left,
            n_pairs,
            // padded columns `0..ow + 2` are read by the outputs kept
            n_in: iw.min(ow.checked_add(2)?.saturating_sub(pad_left)),
            row_bytes: entries.checked_mul(2)?,
        })
    }

    /// The ring's row geometry, as the routines take it.
    fn ring(&self) -> Ring {
        Ring {
            row_bytes: self.row_bytes,
            n_pairs: self.n_pairs,
        }
    }

    /// The ring (4 channels x 3 slots), the accumulators of a row (4 per pixel, `2 n_pairs`
    /// pixels) and the weight tables, after up to 3 bytes to a word boundary.
    fn lens(&self) -> Option<[usize; 3]> {
        Some([
            self.row_bytes.checked_mul(12)?,
            self.n_pairs.checked_mul(32)?,
            TABLE_BYTES * 4,
        ])
    }
}

/// The workspace bytes [`depthwise_conv2d_i8_planes`] needs for a layer (0 for a layer it does
/// not take): a pure function of the parameters, the same on every target.
pub fn workspace_len(p: &ConvParams<'_>) -> usize {
    Planes::of(p)
        .and_then(|g| g.lens())
        .and_then(|[ring, acc, table]| ring.checked_add(acc)?.checked_add(table)?.checked_add(3))
        .unwrap_or(0)
}

/// The ring's rows: channel `k`'s row of slot `s` starts at byte `(3 k + s) row_bytes`.
#[derive(Clone, Copy)]
pub(crate) struct Ring {
    pub row_bytes: usize,
    pub n_pairs: usize,
}

impl Ring {
    /// Whether a ring of `len` bytes holds the 12 rows, each with the entries a pair reads.
    pub(crate) fn fits(&self, len: usize) -> bool {
        let read = self.n_pairs.checked_mul(4).and_then(|n| n.checked_add(4));
        read.is_some_and(|r| r <= self.row_bytes)
            && self.row_bytes.checked_mul(12).is_some_and(|n| n <= len)
    }
}

/// The three routines of the kernel: the portable twins, or Armv7E-M assembly. Each returns
/// whether it ran: an implementation that cannot take its arguments writes nothing and returns
/// false, and the whole layer then goes through the caller's other kernel (which writes every
/// output), so the assembly's build links no second copy of the arithmetic.
pub(crate) trait PlaneOps {
    /// Widens `n` input pixels of four channels (`src` at channel 0 of the first pixel, pixels
    /// `c` bytes apart) into `x - zp` at entries `at..at + n` of ring slot `slot`'s four rows.
    fn widen(
        src: &[i8],
        pixels: (usize, usize, i8),
        ring: &mut [i8],
        r: Ring,
        slot_at: (usize, usize),
    ) -> bool;
    /// The four channels' accumulators of an output row: channel `k` reads slots 0 to 2 with
    /// the weights at byte `60 k` of `tables` (3 slots x `(W01, W12, W02)`); for each
    /// pixel pair `x = 2 i`, `bias[k]` plus the taps, into `acc` bytes `32 i + 4 k` and
    /// `32 i + 16 + 4 k`.
    fn mac(ring: &[i8], r: Ring, tables: &[i8], bias: &[i32; 4], acc: &mut [i8]) -> bool;
    /// The output stage of a row: pixel `x`'s four accumulators (`acc` bytes `16 x`) through
    /// channel `k`'s `(M, shift)`, the zero point and both clamps, into `out[x c + k]`.
    fn out(acc: &[i8], stage: &OutStage, out: &mut [i8], c: usize, ow: usize) -> bool;
}

/// The output stage of four channels, as `kiln_dwp_out_dsp` reads it.
#[repr(C)]
pub(crate) struct OutStage {
    /// Each channel's multiplier and `shift - 33`.
    pub mt: [i32; 8],
    /// `2 zp_out + 1` ([`round_zp`]).
    pub round_zp: i32,
    /// Each clamp in all four bytes.
    pub clamp_min4: u32,
    pub clamp_max4: u32,
}

/// The portable twins (and the kernel on targets without the assembly).
pub(crate) struct Portable;

fn get_i16(bytes: &[i8], at: usize) -> i32 {
    match bytes.get(at..at.wrapping_add(2)) {
        Some(&[lo, hi]) => i32::from(i16::from_le_bytes([lo as u8, hi as u8])),
        _ => 0,
    }
}

fn get_i32(bytes: &[i8], at: usize) -> i32 {
    match bytes.get(at..at.wrapping_add(4)) {
        Some(&[a, b, c, d]) => i32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => 0,
    }
}

fn put(bytes: &mut [i8], at: usize, value: &[u8]) {
    if let Some(slot) = bytes.get_mut(at..at.wrapping_add(value.len())) {
        for (to, &from) in slot.iter_mut().zip(value) {
            *to = from as i8;
        }
    }
}

impl PlaneOps for Portable {
    fn widen(
        src: &[i8],
        (c, n, zp): (usize, usize, i8),
        ring: &mut [i8],
        r: Ring,
        (slot, at): (usize, usize),
    ) -> bool {
        for k in 0..4usize {
            let row = k
                .wrapping_mul(3)
                .wrapping_add(slot)
                .wrapping_mul(r.row_bytes);
            for j in 0..n {
                let x = src
                    .get(j.wrapping_mul(c).wrapping_add(k))
                    .copied()
                    .unwrap_or(zp);
                let v = (i16::from(x)).wrapping_sub(i16::from(zp));
                let entry = row.wrapping_add(at.wrapping_add(j).wrapping_mul(2));
                put(ring, entry, &v.to_le_bytes());
            }
        }
        true
    }

    fn mac(ring: &[i8], r: Ring, tables: &[i8], bias: &[i32; 4], acc: &mut [i8]) -> bool {
        for (k, &b) in bias.iter().enumerate() {
            let table = tables.get(k.wrapping_mul(TABLE_BYTES)..).unwrap_or(&[]);
            for i in 0..r.n_pairs {
                let (mut a0, mut a1) = (b, b);
                for s in 0..3usize {
                    let row = k.wrapping_mul(3).wrapping_add(s).wrapping_mul(r.row_bytes);
                    // (W01, W12, W02): w0, w1, w2 are the low halves of W01, W12, the high of W02
                    let w = |byte: usize| get_i16(table, s.wrapping_mul(12).wrapping_add(byte));
                    let (w0, w1, w2) = (w(0), w(4), w(10));
                    let v = |e: usize| {
                        get_i16(
                            ring,
                            row.wrapping_add(i.wrapping_mul(4))
                                .wrapping_add(e.wrapping_mul(2)),
                        )
                    };
                    let (v0, v1, v2, v3) = (v(0), v(1), v(2), v(3));
                    a0 = a0
                        .wrapping_add(v0.wrapping_mul(w0))
                        .wrapping_add(v1.wrapping_mul(w1))
                        .wrapping_add(v2.wrapping_mul(w2));
                    a1 = a1
                        .wrapping_add(v1.wrapping_mul(w0))
                        .wrapping_add(v2.wrapping_mul(w1))
                        .wrapping_add(v3.wrapping_mul(w2));
                }
                let at = i.wrapping_mul(32).wrapping_add(k.wrapping_mul(4));
                put(acc, at, &a0.to_le_bytes());
                put(acc, at.wrapping_add(16), &a1.to_le_bytes());
            }
        }
        true
    }

    fn out(acc: &[i8], stage: &OutStage, out: &mut [i8], c: usize, ow: usize) -> bool {
        let (lo, hi) = (stage.clamp_min4 as u8 as i8, stage.clamp_max4 as u8 as i8);
        for x in 0..ow {
            for (k, mt) in stage.mt.chunks_exact(2).enumerate() {
                let at = x.wrapping_mul(16).wrapping_add(k.wrapping_mul(4));
                let a = get_i32(acc, at);
                let (m, s) = match *mt {
                    [m, s] => (m, s.wrapping_add(33) as u8),
                    _ => (0, 33), // chunks of two: never taken
                };
                let q = rq_high_zp(a, m, s, stage.round_zp).max(lo).min(hi);
                if let Some(o) = out.get_mut(x.wrapping_mul(c).wrapping_add(k)) {
                    *o = q;
                }
            }
        }
        true
    }
}

/// The portable kernel: [`depthwise_conv2d_i8_planes`] with the twins.
pub fn depthwise_conv2d_i8_planes_portable(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<bool, Error> {
    depthwise_conv2d_i8_planes::<Portable>(params, input, workspace, output)
}

/// A 3x3 stride-1 depthwise convolution through the planes, when the layer has that shape,
/// four channels per word, every shift in `33..=62` and `workspace` holds
/// [`workspace_len`] bytes: `Ok(true)`. `Ok(false)` sends the caller to another kernel (which
/// writes every output: a routine that refused its arguments may have left a part written);
/// `Err` is a parameter error (`ConvParams::check`).
pub(crate) fn depthwise_conv2d_i8_planes<O: PlaneOps>(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<bool, Error> {
    // the shape first: the other layers go to the other kernel, which checks them
    let Some(g) = Planes::of(params) else {
        return Ok(false);
    };
    params.check(true, input.len(), output.len())?;
    if !params.shifts.iter().all(|s| (33..=62).contains(s)) {
        return Ok(false);
    }
    let Some([ring_len, acc_len, table_len]) = g.lens() else {
        return Ok(false);
    };
    // the offset to a word boundary, then three disjoint regions
    let skip = workspace.as_ptr().align_offset(4);
    let Some(ws) = workspace.get_mut(skip..) else {
        return Ok(false);
    };
    let Some((ring, rest)) = ws.split_at_mut_checked(ring_len) else {
        return Ok(false);
    };
    let Some((acc, rest)) = rest.split_at_mut_checked(acc_len) else {
        return Ok(false);
    };
    let Some(table) = rest.get_mut(..table_len) else {
        return Ok(false);
    };
    let (c, zp) = (g.c, params.input_zero_point);
    let r = g.ring();
    if !r.fits(ring.len()) {
        return Ok(false); // never: `lens` sized the ring
    }
    for c0 in (0..c).step_by(4) {
        // each channel's kernel rows 0, 1, 2, 0, 1 as (W01, W12, W02): the nine taps' words
        // of the four channels, then channel k's bytes of them
        let taps: [u32; 9] = core::array::from_fn(|t| {
            let at = t.wrapping_mul(c).wrapping_add(c0);
            params
                .weights
                .get(at..at.wrapping_add(4))
                .map_or(0, |w| le_i32(w) as u32)
        });
        for (k, entry) in table.chunks_exact_mut(TABLE_BYTES).enumerate() {
            let shift = (k as u32).wrapping_mul(8);
            let w = |t: &u32| i16::from((t >> shift) as u8 as i8) as u16 as u32;
            let rows: [[u32; 3]; 3] = core::array::from_fn(|r| {
                let row = taps.get(r.wrapping_mul(3)..).unwrap_or(&[]);
                match row {
                    [w0, w1, w2, ..] => [
                        w(w0) | (w(w1) << 16),
                        w(w1) | (w(w2) << 16),
                        w(w0) | (w(w2) << 16),
                    ],
                    _ => [0; 3], // nine taps: never taken
                }
            });
            let words = rows.iter().chain(rows.get(..2).unwrap_or(&[])).flatten();
            for (to, word) in entry.chunks_exact_mut(4).zip(words) {
                for (b, from) in to.iter_mut().zip(word.to_le_bytes()) {
                    *b = from as i8;
                }
            }
        }
        let mut mt = [0i32; 8];
        for (k, pair) in mt.chunks_exact_mut(2).enumerate() {
            let ch = c0.wrapping_add(k);
            let at = ch.wrapping_mul(4);
            let m = params
                .multipliers
                .get(at..at.wrapping_add(4))
                .map_or(0, le_i32);
            let s = params.shifts.get(ch).copied().unwrap_or(33);
            if let [to_m, to_s] = pair {
                (*to_m, *to_s) = (m, i32::from(s).wrapping_sub(33));
            }
        }
        let stage = OutStage {
            mt,
            round_zp: round_zp(params.output_zero_point),
            clamp_min4: super::bytes4(params.clamp_min),
            clamp_max4: super::bytes4(params.clamp_max),
        };
        let bias: [i32; 4] = core::array::from_fn(|k| {
            let at = c0.wrapping_add(k).wrapping_mul(4);
            params.bias.get(at..at.wrapping_add(4)).map_or(0, le_i32)
        });
        ring.fill(0);
        // padded rows 0 and 1, then one more per output row
        for pr in 0..g.oh.wrapping_add(2) {
            if !fill_row::<O>(&g, input, c0, zp, ring, pr) {
                return Ok(false);
            }
            let Some(oy) = pr.checked_sub(2) else {
                continue;
            };
            let tables = table
                .get(phase_entry(oy % 3).wrapping_mul(12)..)
                .unwrap_or(&[]);
            if !O::mac(ring, r, tables, &bias, acc) {
                return Ok(false);
            }
            let row = oy.wrapping_mul(g.ow).wrapping_mul(c).wrapping_add(c0);
            let Some(out) = output.get_mut(row..) else {
                return Ok(true); // never: the lengths were checked
            };
            if !O::out(acc, &stage, out, c, g.ow) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Padded input row `pr` of channels `c0..c0 + 4` into its ring slot `pr % 3`: the input row
/// `pr - pad_top` widened, or zeros outside the input. False if the widening refused.
fn fill_row<O: PlaneOps>(
    g: &Planes,
    input: &[i8],
    c0: usize,
    zp: i8,
    ring: &mut [i8],
    pr: usize,
) -> bool {
    let slot = pr % 3;
    let r = g.ring();
    let iy = pr.checked_sub(g.pad_top).filter(|&iy| iy < g.ih);
    match iy {
        Some(iy) if g.n_in > 0 => {
            let at = iy.wrapping_mul(g.iw).wrapping_mul(g.c).wrapping_add(c0);
            let src = input.get(at..).unwrap_or(&[]);
            O::widen(src, (g.c, g.n_in, zp), ring, r, (slot, g.pad_left))
        }
        _ => {
            for k in 0..4usize {
                let row = k
                    .wrapping_mul(3)
                    .wrapping_add(slot)
                    .wrapping_mul(g.row_bytes);
                if let Some(row) = ring.get_mut(row..row.wrapping_add(g.row_bytes)) {
                    row.fill(0);
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testutil::Rng;

    fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.next_u64() as u8).collect()
    }
    use crate::kernels::reference;
    use std::vec;
    use std::vec::Vec;

    /// Random 3x3 stride-1 layers (valid and same padding, odd and even widths, one-row and
    /// one-column planes, 4 to 24 channels) against the reference, byte for byte.
    #[test]
    fn planes_equal_the_reference() {
        let mut rng = Rng::new(7);
        let mut taken = 0;
        for case in 0..400 {
            let c = 4 * rng.usize_in(1, 6);
            let same = rng.bool();
            // widths from the narrowest the planes take, odd and even
            let (ih, iw) = if same {
                (rng.usize_in(1, 9), MIN_WIDTH + rng.usize_in(0, 11))
            } else {
                (3 + rng.usize_in(0, 6), MIN_WIDTH + 2 + rng.usize_in(0, 11))
            };
            let (oh, ow, pad) = if same {
                (ih, iw, [1, 1])
            } else {
                (ih - 2, iw - 2, [0, 0])
            };
            let weights = bytes(&mut rng, 9 * c);
            let bias: Vec<u8> = (0..c)
                .flat_map(|_| (rng.range_i64(-10000, 10000) as i32).to_le_bytes())
                .collect();
            let multipliers: Vec<u8> = (0..c)
                .flat_map(|_| (rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32).to_le_bytes())
                .collect();
            // mostly in 33..=62; now and then a small shift, which the planes refuse
            let shifts: Vec<u8> = (0..c)
                .map(|_| {
                    if case % 10 == 9 {
                        20
                    } else {
                        33 + rng.usize_in(0, 11) as u8
                    }
                })
                .collect();
            let input: Vec<i8> = (0..ih * iw * c).map(|_| rng.i8()).collect();
            let zp = rng.i8();
            let params = ConvParams {
                input_shape: [ih, iw, c],
                output_shape: [oh, ow, c],
                kernel: [3, 3],
                stride: [1, 1],
                pad,
                weights: &weights,
                bias: &bias,
                multipliers: &multipliers,
                shifts: &shifts,
                input_zero_point: zp,
                output_zero_point: rng.i8(),
                clamp_min: if case % 3 == 0 { 0 } else { i8::MIN },
                clamp_max: if case % 4 == 0 { 100 } else { i8::MAX },
            };
            let mut expected = vec![0i8; oh * ow * c];
            reference::depthwise_conv2d_i8(&params, &input, &mut expected).unwrap();
            // the workspace at every offset from a word boundary
            let len = workspace_len(&params);
            assert!(len > 0, "case {case}: a 3x3 stride-1 layer has a workspace");
            let mut workspace = vec![0i8; len + 3];
            let skew = case % 4;
            let mut got = vec![0x55i8; oh * ow * c];
            let ws = &mut workspace[skew..skew + len];
            let ran = depthwise_conv2d_i8_planes_portable(&params, &input, ws, &mut got).unwrap();
            if case % 10 == 9 {
                assert!(!ran, "case {case}: a shift below 33 takes the other kernel");
                assert!(
                    got.iter().all(|&b| b == 0x55),
                    "case {case}: nothing written"
                );
                continue;
            }
            assert!(ran, "case {case}: {ih}x{iw}x{c} same={same}");
            assert_eq!(got, expected, "case {case}: {ih}x{iw}x{c} same={same}");
            taken += 1;
        }
        assert!(taken > 300);
    }

    /// The twins, but the output stage refuses its third row: the layer has then written part of
    /// its output, reports `Ok(false)`, and the caller's other kernel writes every byte again.
    struct RefusesThirdRow;
    static OUT_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    impl PlaneOps for RefusesThirdRow {
        fn widen(
            src: &[i8],
            pixels: (usize, usize, i8),
            ring: &mut [i8],
            r: Ring,
            slot_at: (usize, usize),
        ) -> bool {
            Portable::widen(src, pixels, ring, r, slot_at)
        }
        fn mac(ring: &[i8], r: Ring, tables: &[i8], bias: &[i32; 4], acc: &mut [i8]) -> bool {
            Portable::mac(ring, r, tables, bias, acc)
        }
        fn out(acc: &[i8], stage: &OutStage, out: &mut [i8], c: usize, ow: usize) -> bool {
            let n = OUT_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            n != 2 && Portable::out(acc, stage, out, c, ow)
        }
    }

    #[test]
    fn a_refusing_routine_hands_the_layer_to_the_other_kernel() {
        let mut rng = Rng::new(11);
        let (h, w, c) = (5, 9, 8);
        let weights = bytes(&mut rng, 9 * c);
        let bias: Vec<u8> = (0..c)
            .flat_map(|k| (k as i32 * 37 - 100).to_le_bytes())
            .collect();
        let multipliers: Vec<u8> = (0..c).flat_map(|_| (1i32 << 30).to_le_bytes()).collect();
        let shifts = vec![40u8; c];
        let input: Vec<i8> = bytes(&mut rng, h * w * c)
            .into_iter()
            .map(|b| b as i8)
            .collect();
        let params = ConvParams {
            input_shape: [h, w, c],
            output_shape: [h, w, c],
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            weights: &weights,
            bias: &bias,
            multipliers: &multipliers,
            shifts: &shifts,
            input_zero_point: 3,
            output_zero_point: -5,
            clamp_min: i8::MIN,
            clamp_max: i8::MAX,
        };
        let mut expected = vec![0i8; h * w * c];
        reference::depthwise_conv2d_i8(&params, &input, &mut expected).unwrap();
        let mut workspace = vec![0i8; workspace_len(&params)];
        let mut got = vec![0x55i8; h * w * c];
        let ran = depthwise_conv2d_i8_planes::<RefusesThirdRow>(
            &params,
            &input,
            &mut workspace,
            &mut got,
        );
        assert_eq!(ran, Ok(false));
        assert!(
            got.iter().any(|&b| b != 0x55),
            "two rows were written before the refusal"
        );
        crate::kernels::dwconv::depthwise_conv2d_i8_lanes(&params, &input, &mut got).unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn other_layers_and_short_workspaces_are_not_taken() {
        let weights = [1u8; 36];
        let words = [0u8; 16];
        let shifts = [40u8; 4];
        let mut p = ConvParams {
            input_shape: [4, 8, 4],
            output_shape: [4, 8, 4],
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            weights: &weights,
            bias: &words,
            multipliers: &words,
            shifts: &shifts,
            input_zero_point: 0,
            output_zero_point: 0,
            clamp_min: i8::MIN,
            clamp_max: i8::MAX,
        };
        let input = [0i8; 128];
        let mut out = [0x55i8; 128];
        // 12 rows of 10 entries, 4 pairs of accumulators, 4 tables, 3 bytes to a word
        let len = workspace_len(&p);
        assert_eq!(len, 12 * 20 + 4 * 32 + 4 * 60 + 3);
        let mut ws = vec![0i8; len - 4];
        assert_eq!(
            depthwise_conv2d_i8_planes_portable(&p, &input, &mut ws, &mut out),
            Ok(false)
        );
        assert!(out.iter().all(|&b| b == 0x55));
        let mut ws = vec![0i8; len];
        assert_eq!(
            depthwise_conv2d_i8_planes_portable(&p, &input, &mut ws, &mut out),
            Ok(true)
        );
        // a bad length is still an error
        assert!(depthwise_conv2d_i8_planes_portable(&p, &input[..127], &mut ws, &mut out).is_err());
        // stride 2 and rows narrower than MIN_WIDTH: another kernel, no workspace
        p.stride = [2, 2];
        p.output_shape = [2, 4, 4];
        assert_eq!(workspace_len(&p), 0);
        p.stride = [1, 1];
        p.input_shape = [4, MIN_WIDTH - 1, 4];
        p.output_shape = [4, MIN_WIDTH - 1, 4];
        assert_eq!(workspace_len(&p), 0);
        // channels that are not whole words
        p.input_shape = [4, 8, 3];
        p.output_shape = [4, 8, 3];
        assert_eq!(workspace_len(&p), 0);
    }
}
