//! `Conv2d` two output pixels at a time: the matrix product of [`im2col`](super::im2col) in
//! blocks of two output channels by two output pixels, so that each weight word is loaded and
//! split into 16-bit lanes once for two pixels' columns (four `SMLAD` per weight word instead of
//! two). On Cortex-M4/M7 the block loop, its output stage included, is `kiln_conv_pairs_dsp`
//! in `dsp_asm.rs`; elsewhere [`pair_blocks`] is its portable twin, which the host tests hold to
//! the reference.
//!
//! Where the workspace holds them (layers whose rows take at most [`WIDE_MAX`] bytes widened),
//! every row is widened once per call, as the lanes are ([`widen_rows`]), and the blocks read
//! each four taps of a row as two words with one `LDRD`: 11 instructions per 16
//! multiply-accumulates instead of 15 (`kiln_conv_pairs_wide_dsp`; KWS's pointwise layer 1.313
//! -> 1.071 instructions per MAC). The rows are then `k` taps long, zeros past `taps`, so every
//! pair of channels reads forwards.
//!
//! Why two channels and not four: a block of two pixels by four channels needs eight
//! accumulators, the four lane words of the two columns and the two halves of a weight word:
//! fourteen registers, all that Thumb-2 has besides `sp` and `pc`, with none left for the
//! pointers. Two by two keeps the four lane words of the current four taps in registers (one
//! `LDM` per four taps), so each weight word costs one load, two `SXTB16` and four `SMLAD`:
//! 15 instructions per 16 multiply-accumulates, against 21 for one pixel by four channels.
//!
//! Per pair of output pixels (A, B; the last pixel of an odd count pairs with itself and writes
//! its outputs twice): both columns gathered as `im2col` gathers them (a pointwise layer whose
//! channels are a multiple of 8 reads the input pixels themselves), widened and interleaved
//! into the workspace (per four taps the words A02, A13, B02, B13), then every pair of channels
//! in one call. The zero point is the start value's, as in `im2col`: every channel starts from
//! `bias - zp_in * sum(w)`, and a padded tap is gathered as `zp_in`. The columns are zero-padded
//! to a multiple of 8 taps (`k`), so a block's rows are read `k` bytes each, running into the
//! next row, which the zeros cancel; the last pairs, whose reads would pass the weights' end,
//! read from `k - taps` bytes before their rows instead, against the columns with the zeros in
//! front. A pair of channels that cannot do either (tiny layers) and the last channel of an odd
//! count take the scalar loop. The output stage is `fixed::rq_high_zp` (every shift in
//! `33..=62`, checked once per call) and the clamps; any other layer runs
//! [`im2col::conv2d_i8_packed`](super::im2col::conv2d_i8_packed), as does a layer of one output
//! pixel or one channel, or a workspace shorter than [`workspace_len`].

use super::conv::ConvParams;
use super::im2col::{self, gather, pointwise, range, taps};
use super::simd32::usada8;
#[cfg(not(kiln_kernel = "dsp"))]
use super::simd32::{smlad, sxtb16, sxtb16_ror8};
use super::{aligned, le_i32, tail_dot, word_i8};
use crate::fixed::{round_zp, rq_high_zp};
use crate::Error;

#[cfg(kiln_kernel = "dsp")]
pub(crate) use super::dsp_asm::{pair_blocks, widen_pair, widen_weights, BandRunner};

/// The bytes of one block's record: `start[o]`, `start[o + 1]`, then `M` and `t - 33` of row
/// `o` and of row `o + 1`, six little-endian words.
const RECORD: usize = 24;

/// What one call of the block loop reads and writes: `n_blocks` blocks of two channels (rows
/// `stride` bytes apart in `rows`, the first block's first row at its start, each next block two
/// rows on), `8 * n_groups` taps each, over the interleaved `lanes` of pixels A and B; the
/// records from `records`; block `i`'s two outputs of pixel A at `at_a + 2 i` and of pixel B
/// `delta` bytes after them.
pub(crate) struct PairBlocks<'a> {
    pub rows: &'a [u8],
    pub stride: usize,
    pub lanes: &'a [i8],
    pub records: &'a [i8],
    pub n_groups: usize,
    pub at_a: usize,
    pub delta: usize,
    pub n_blocks: usize,
    pub output_zero_point: i8,
    pub clamp_min: i8,
    pub clamp_max: i8,
    /// The rows widened once per call ([`widen_rows`]), read instead of `rows`: `2 k` bytes
    /// each, the words w02, w13 per four taps (the lanes' format), word-aligned, `stride` bytes
    /// apart (`2 k`).
    pub wide: Option<&'a [i8]>,
}

impl PairBlocks<'_> {
    /// `at_a` when every read and write of the call lies inside its slice (output `out_len`
    /// bytes) and `lanes` and `records` are word-aligned; `None` otherwise.
    #[inline(always)]
    pub(crate) fn in_bounds(&self, out_len: usize) -> Option<usize> {
        let k = self.n_groups.checked_mul(8)?;
        let (row_len, rows_len) = match self.wide {
            Some(wide) => (k.checked_mul(2)?, wide.len()),
            None => (k, self.rows.len()),
        };
        let rows_end = self
            .n_blocks
            .checked_mul(2)?
            .checked_sub(1)?
            .checked_mul(self.stride)?
            .checked_add(row_len)?;
        let out_end = self
            .at_a
            .checked_add(self.delta)?
            .checked_add(self.n_blocks.checked_mul(2)?)?;
        let ok = self.n_groups > 0
            && self.lanes.len() >= k.checked_mul(4)?
            && self.lanes.as_ptr().align_offset(4) == 0
            && self.records.len() >= self.n_blocks.checked_mul(RECORD)?
            && self.records.as_ptr().align_offset(4) == 0
            && rows_len >= rows_end
            && self
                .wide
                .is_none_or(|wide| wide.as_ptr().align_offset(4) == 0 && self.stride % 4 == 0)
            && out_end <= out_len;
        ok.then_some(self.at_a)
    }
}

/// The portable twin of `kiln_conv_pairs_dsp` (`dsp_asm::pair_blocks`), in its order: for each
/// block, both rows' accumulators of both pixels from the record's start values, per weight word
/// `SMLAD` of its even lanes with the pixel's 02 lanes then of its odd lanes with the 13 lanes,
/// then `rq_high_zp`, `max(clamp_min)`, `min(clamp_max)`; pixel A's two bytes, then pixel B's
/// (the same bytes again when `delta` is 0). Returns the blocks written: 0, writing nothing,
/// unless [`PairBlocks::in_bounds`].
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn pair_blocks(args: &PairBlocks<'_>, output: &mut [i8]) -> usize {
    let Some(at_a) = args.in_bounds(output.len()) else {
        return 0;
    };
    let k = args.n_groups.wrapping_mul(8);
    let round_zp = round_zp(args.output_zero_point);
    let mut records = args.records.chunks_exact(RECORD);
    let mut out_at = at_a;
    for block in 0..args.n_blocks {
        let Some(record) = records.next() else {
            break; // checked: never taken
        };
        let mut words = record.chunks_exact(4).map(word_i8);
        let mut next = || words.next().unwrap_or(0);
        let (start0, start1, m0, s0, m1, s1) = (next(), next(), next(), next(), next(), next());
        let first = block.wrapping_mul(2).wrapping_mul(args.stride);
        let mut acc = [[start0, start1], [start0, start1]]; // [pixel][row]
        for (r, &start_row) in [first, first.wrapping_add(args.stride)].iter().enumerate() {
            // Per four taps their even and odd lanes: split here, or read as widened once.
            let (narrow, wide) = match args.wide {
                Some(wide) => (&[][..], range(wide, start_row, k.wrapping_mul(2))),
                None => (range(args.rows, start_row, k), &[][..]),
            };
            let split = narrow.chunks_exact(4).map(|w| {
                let w = le_i32(w) as u32;
                (sxtb16(w), sxtb16_ror8(w))
            });
            let read = wide.chunks_exact(8).map(|w| {
                (
                    word_i8(range(w, 0, 4)) as u32,
                    word_i8(range(w, 4, 4)) as u32,
                )
            });
            let mut lanes = args.lanes.chunks_exact(16);
            for (even, odd) in split.chain(read) {
                let Some(x) = lanes.next() else { break };
                let lane = |i: usize| word_i8(range(x, i.wrapping_mul(4), 4)) as u32;
                for (pixel, acc) in acc.iter_mut().enumerate() {
                    let x02 = lane(pixel.wrapping_mul(2));
                    let x13 = lane(pixel.wrapping_mul(2).wrapping_add(1));
                    if let Some(acc) = acc.get_mut(r) {
                        *acc = smlad(odd, x13, smlad(even, x02, *acc));
                    }
                }
            }
        }
        let stage = |acc: i32, m: i32, s1: i32| {
            rq_high_zp(acc, m, (s1 as u8).wrapping_add(33), round_zp)
                .max(args.clamp_min)
                .min(args.clamp_max)
        };
        for (pixel, at) in [(0, out_at), (1, out_at.wrapping_add(args.delta))] {
            let [a0, a1] = acc.get(pixel).copied().unwrap_or([0, 0]);
            if let Some([y0, y1]) = output.get_mut(at..at.wrapping_add(2)) {
                *y0 = stage(a0, m0, s0);
                *y1 = stage(a1, m1, s1);
            }
        }
        out_at = out_at.wrapping_add(2);
    }
    args.n_blocks
}

/// The portable twin of `kiln_widen_pair_dsp` (`dsp_asm::widen_pair`): per four taps of the two
/// columns, the words `sxtb16(a)`, `sxtb16_ror8(a)`, `sxtb16(b)`, `sxtb16_ror8(b)`. Writes
/// nothing unless both columns hold `8 * n_groups` bytes and `lanes` is word-aligned with room
/// for `32 * n_groups`.
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn widen_pair(a: &[i8], b: &[i8], lanes: &mut [i8], n_groups: usize) {
    let n = n_groups.saturating_mul(8);
    let in_bounds = n_groups > 0
        && a.len() >= n
        && b.len() >= n
        && lanes.len() >= n.saturating_mul(4)
        && lanes.as_ptr().align_offset(4) == 0;
    if !in_bounds {
        return;
    }
    let words = a.chunks_exact(4).zip(b.chunks_exact(4)).take(n / 4);
    for ((a, b), out) in words.zip(lanes.chunks_exact_mut(16)) {
        let (a, b) = (word_i8(a) as u32, word_i8(b) as u32);
        let four = [sxtb16(a), sxtb16_ror8(a), sxtb16(b), sxtb16_ror8(b)];
        for (dst, value) in out.chunks_exact_mut(4).zip(four) {
            for (d, byte) in dst.iter_mut().zip(value.to_le_bytes()) {
                *d = byte as i8;
            }
        }
    }
}

/// One band of a layer with widened rows, for [`BandRunner`]: its pixel pairs with the
/// checks made once per band instead of once per pair of pixels.
pub(crate) struct PairBand<'a> {
    /// The band's widened rows (`16 n_groups` bytes each, `32 n_groups` apart per block).
    pub wide: &'a [i8],
    /// The band's records, from its first block.
    pub records: &'a [i8],
    pub n_groups: usize,
    /// The band's first output channel.
    pub first_channel: usize,
    /// Output channels per pixel.
    pub oc: usize,
    pub n_blocks: usize,
    pub n_pixels: usize,
    pub output_zero_point: i8,
    pub clamp_min: i8,
    pub clamp_max: i8,
}

impl PairBand<'_> {
    /// The blocks of the pixel pair `(a, b)` (`b` is `a` for an odd last pixel).
    #[inline(always)]
    pub(crate) fn blocks<'s>(&'s self, lanes: &'s [i8], a: usize, b: usize) -> PairBlocks<'s> {
        PairBlocks {
            rows: &[],
            stride: self.n_groups.wrapping_mul(16),
            lanes,
            records: self.records,
            n_groups: self.n_groups,
            at_a: a.wrapping_mul(self.oc).wrapping_add(self.first_channel),
            delta: b.wrapping_sub(a).wrapping_mul(self.oc),
            n_blocks: self.n_blocks,
            output_zero_point: self.output_zero_point,
            clamp_min: self.clamp_min,
            clamp_max: self.clamp_max,
            wide: Some(self.wide),
        }
    }
}

/// The portable twin of `dsp_asm::BandRunner`: one band's pixel pairs, each its two columns
/// widened into `lanes` ([`widen_pair`]) and the band's blocks ([`pair_blocks`]).
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) struct BandRunner<'a> {
    band: &'a PairBand<'a>,
    lanes: &'a mut [i8],
    output: &'a mut [i8],
    last: usize,
}

#[cfg(not(kiln_kernel = "dsp"))]
impl<'a> BandRunner<'a> {
    /// `None` unless the band's rows, records and lanes hold what its blocks read and `output`
    /// what its pixel pairs write (the check of the pair of pixels 0 and `n_pixels - 1`).
    pub(crate) fn new(
        band: &'a PairBand<'a>,
        lanes: &'a mut [i8],
        output: &'a mut [i8],
    ) -> Option<Self> {
        let last = band.n_pixels.checked_sub(1)?;
        band.blocks(lanes, 0, last).in_bounds(output.len())?;
        Some(Self {
            band,
            lanes,
            output,
            last,
        })
    }

    /// Every pair of pixels of a stride-1 layer whose columns are the input pixels
    /// themselves, pixel `p`'s at `input[p k..]` (nothing unless `input` holds them all).
    pub(crate) fn input_pixels(&mut self, input: &[i8]) {
        let k = self.band.n_groups.wrapping_mul(8);
        let n_pixels = self.last.wrapping_add(1);
        if n_pixels.checked_mul(k).is_none_or(|len| len > input.len()) {
            return;
        }
        for pair in 0..n_pixels.div_ceil(2) {
            let a = pair.wrapping_mul(2);
            let b = a.wrapping_add(1).min(self.last);
            let col = |p: usize| range(input, p.wrapping_mul(k), k);
            self.pair(a, b, col(a), col(b));
        }
    }

    /// The band's blocks of output pixels `a <= b <= n_pixels - 1` from their columns (at
    /// least `8 n_groups` bytes each; nothing is written otherwise).
    pub(crate) fn pair(&mut self, a: usize, b: usize, col_a: &[i8], col_b: &[i8]) {
        let k = self.band.n_groups.wrapping_mul(8);
        if a > b || b > self.last || col_a.len() < k || col_b.len() < k {
            return;
        }
        widen_pair(col_a, col_b, self.lanes, self.band.n_groups);
        pair_blocks(&self.band.blocks(self.lanes, a, b), self.output);
    }
}

/// The portable twin of `kiln_widen_dsp` on weights (`dsp_asm::widen_weights`): per four bytes
/// of `row[..8 * n_groups]` the words `sxtb16` and `sxtb16_ror8` of them, into `wide`. Writes
/// nothing unless `row` holds the bytes and `wide` is word-aligned with room for `16 *
/// n_groups`.
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn widen_weights(row: &[u8], wide: &mut [i8], n_groups: usize) {
    let n = n_groups.saturating_mul(8);
    let in_bounds = n_groups > 0
        && row.len() >= n
        && wide.len() >= n.saturating_mul(2)
        && wide.as_ptr().align_offset(4) == 0;
    if !in_bounds {
        return;
    }
    let words = row.chunks_exact(4).map(|w| le_i32(w) as u32);
    super::packed::write_lanes(words.take(n / 4), wide);
}

/// The pairs of channels one band of widened rows holds: every pair where all their rows fit
/// in [`WIDE_MAX`] bytes, else as many as fit (a larger layer runs band by band, each band's
/// rows widened once per call); 0 if not even one pair fits.
fn band_pairs(p: &ConvParams<'_>) -> usize {
    let pair_bytes = padded(taps(p)).saturating_mul(4); // two rows of `2 k` bytes
                                                        // `pair_bytes` is 0 only for a layer `check` refuses: then one band of them all
    let fit = WIDE_MAX.checked_div(pair_bytes).unwrap_or(usize::MAX);
    fit.min(p.output_shape[2] / 2)
}

/// The widened rows' bytes of a layer, when [`conv2d_i8_pairs`] widens its weights: one band
/// of [`band_pairs`] pairs of channels, `2 k` bytes per row (0: the rows split as they are
/// read).
fn wide_len(p: &ConvParams<'_>) -> usize {
    band_pairs(p).saturating_mul(padded(taps(p)).saturating_mul(4))
}

/// The most workspace the widened weights of one band may take: a layer of 64 by 128 channels
/// of 1x1 (16 KiB widened) is one band, and so is a 3x3 layer of up to 16 input by 32 output
/// channels; larger layers run in bands of this many bytes of widened rows.
pub const WIDE_MAX: usize = 16 * 1024;

/// Writes rows `0..n_rows` of `weights` (`taps` bytes each) widened into `wide`, `2 k` bytes
/// per row (`k` = `taps` rounded up to 8, the taps past `taps` zero). Returns whether it could
/// (`wide` word-aligned and long enough, `weights` holding the rows).
fn widen_rows(weights: &[u8], taps: usize, n_rows: usize, wide: &mut [i8]) -> bool {
    let k = padded(taps);
    let row_len = k.wrapping_mul(2);
    let full = taps / 8;
    let fits = n_rows
        .checked_mul(row_len)
        .is_some_and(|len| wide.len() >= len)
        && n_rows
            .checked_mul(taps)
            .is_some_and(|len| weights.len() >= len)
        && wide.as_ptr().align_offset(4) == 0
        && taps > 0;
    if !fits || row_len == 0 {
        return false;
    }
    for (r, out) in wide.chunks_exact_mut(row_len).take(n_rows).enumerate() {
        let row = range(weights, r.wrapping_mul(taps), taps);
        if full > 0 {
            widen_weights(row, out, full);
        }
        if taps % 8 != 0 {
            let mut tail = [0u8; 8];
            for (t, &w) in tail
                .iter_mut()
                .zip(row.get(full.wrapping_mul(8)..).unwrap_or(&[]))
            {
                *t = w;
            }
            let out_tail = out.get_mut(full.wrapping_mul(16)..).unwrap_or(&mut []);
            widen_weights(&tail, out_tail, 1);
        }
    }
    true
}

/// Whether the columns are the input pixels themselves: a pointwise layer whose channels are a
/// multiple of 8 (no gathering, no zero padding).
#[inline(always)]
fn direct(p: &ConvParams<'_>) -> bool {
    pointwise(p) && taps(p) % 8 == 0
}

/// `taps` rounded up to a multiple of 8 (saturating).
#[inline(always)]
fn padded(taps: usize) -> usize {
    taps.saturating_add(7) & !7
}

/// The workspace bytes [`conv2d_i8_pairs`] needs: the records (24 bytes per pair of channels),
/// two gathered columns with `k - taps` zeros on each side (none when the columns are the input
/// pixels), the interleaved lanes of two columns of `k` taps (4 bytes per tap), the widened rows
/// ([`WIDE_MAX`] bytes at most; none for larger layers), and up to 3 bytes for each of the three
/// word boundaries.
pub fn workspace_len(p: &ConvParams<'_>) -> usize {
    let wide = match wide_len(p) {
        0 => 0,
        len => len.saturating_add(3),
    };
    narrow_workspace_len(p).saturating_add(wide)
}

/// [`workspace_len`] without the widened rows: with this many bytes (and fewer than
/// [`workspace_len`]) the kernel splits each weight word as it reads it.
pub(crate) fn narrow_workspace_len(p: &ConvParams<'_>) -> usize {
    let taps = taps(p);
    let k = padded(taps);
    let lead = k.wrapping_sub(taps);
    let records = p.output_shape[2]
        .div_ceil(2)
        .saturating_mul(RECORD)
        .saturating_add(3);
    let columns = if direct(p) {
        0
    } else {
        taps.saturating_add(lead.saturating_mul(2))
            .saturating_mul(2)
    };
    let lanes = k.saturating_mul(4).saturating_add(3);
    records.saturating_add(columns).saturating_add(lanes)
}

/// Row and column of output pixel `pixel` (raster order) in rows of `ow` pixels.
#[inline(always)]
fn pixel_yx(pixel: usize, ow: usize) -> (usize, usize) {
    (
        pixel.checked_div(ow).unwrap_or(0),
        pixel.checked_rem(ow).unwrap_or(0),
    )
}

/// The sum of a row's weights as `i8`, four at a time: with the sign bits flipped the bytes
/// are `w + 128` as unsigned bytes, which one `USADA8` sums per word (the records are written
/// on every call).
fn row_sum(row: &[u8]) -> i32 {
    const SIGNS: u32 = 0x8080_8080;
    let word = |w: &[u8]| le_i32(w) as u32 ^ SIGNS;
    // four words per step: the loop's own instructions once per 16 bytes
    let mut quads = row.chunks_exact(16);
    let mut biased = 0u32;
    for q in &mut quads {
        let (a, b) = (word(range(q, 0, 4)), word(range(q, 4, 4)));
        let (c, d) = (word(range(q, 8, 4)), word(range(q, 12, 4)));
        biased = usada8(d, 0, usada8(c, 0, usada8(b, 0, usada8(a, 0, biased))));
    }
    let mut words = quads.remainder().chunks_exact(4);
    for w in &mut words {
        biased = usada8(word(w), 0, biased);
    }
    // every word's four bytes were 128 too large
    let whole = (biased as i32).wrapping_sub((row.len() & !3).wrapping_mul(128) as i32);
    words
        .remainder()
        .iter()
        .fold(whole, |s, &w| s.wrapping_add(i32::from(w as i8)))
}

/// Writes the records of every pair of channels (the last one of an odd count alone, its second
/// half zero): `start = bias - zp_in * sum(w)`, `M`, `t - 33`.
fn write_records(p: &ConvParams<'_>, taps: usize, records: &mut [i8]) {
    let zp = i32::from(p.input_zero_point);
    // One pass over the four arrays. The zip's iterators are mapped by functions of this use
    // alone: a zip of two plain `chunks_exact` is the int16 dense loop's too, compiled once out
    // of line where its length division keeps a panic path (the no-panic proof refuses it).
    let mut channels = p
        .weights
        .chunks_exact(taps.max(1))
        .map(row_sum)
        .zip(p.bias.chunks_exact(4).map(le_i32))
        .zip(p.multipliers.chunks_exact(4).map(le_i32))
        .zip(p.shifts)
        .map(|(((sum, b), m), &t)| {
            let start = b.wrapping_sub(zp.wrapping_mul(sum));
            (start, m, i32::from(t).wrapping_sub(33))
        });
    for record in records.chunks_exact_mut(RECORD) {
        let (s0, m0, t0) = channels.next().unwrap_or((0, 0, 0));
        let (s1, m1, t1) = channels.next().unwrap_or((0, 0, 0));
        for (dst, word) in record.chunks_exact_mut(4).zip([s0, s1, m0, t0, m1, t1]) {
            if let [d0, d1, d2, d3] = dst {
                let [b0, b1, b2, b3] = word.to_le_bytes();
                (*d0, *d1, *d2, *d3) = (b0 as i8, b1 as i8, b2 as i8, b3 as i8);
            }
        }
    }
}

/// `Conv2d` in blocks of two channels by two pixels (see the module documentation). Same
/// contract as [`reference::conv2d_i8`](super::reference::conv2d_i8); the workspace as
/// [`workspace_len`] says (shorter: the one-pixel kernel, with the same results).
#[inline(never)]
pub fn conv2d_i8_pairs(
    params: &ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    params.check(false, input.len(), output.len())?;
    let [_, w, c] = params.input_shape;
    let [oh, ow, oc] = params.output_shape;
    let [sh, sw] = params.stride;
    let n_pixels = oh.wrapping_mul(ow); // `check` proved the output's volume fits
    if n_pixels < 2
        || oc < 2
        || workspace.len() < narrow_workspace_len(params)
        || !params.shifts_all_high()
    {
        return im2col::conv2d_i8_packed(params, input, workspace, output);
    }
    let taps = taps(params);
    let k = padded(taps);
    let lead = k.wrapping_sub(taps);
    let n_groups = k / 8;
    let direct = direct(params);
    // the workspace: records, two columns, lanes (`workspace_len` counted every byte)
    let workspace = aligned(workspace);
    let n_records = oc.div_ceil(2).wrapping_mul(RECORD);
    let (records, rest) = workspace.split_at_mut(n_records.min(workspace.len()));
    let column_len = if direct {
        0
    } else {
        taps.wrapping_add(lead.wrapping_mul(2))
    };
    let (col_a, rest) = rest.split_at_mut(column_len.min(rest.len()));
    let (col_b, rest) = rest.split_at_mut(column_len.min(rest.len()));
    let rest = aligned(rest);
    let (lanes, rest) = rest.split_at_mut(k.wrapping_mul(4).min(rest.len()));
    col_a.fill(0);
    col_b.fill(0); // the zeros around the gathered taps stay
    write_records(params, taps, records);
    let records: &[i8] = records;
    // Every pair of channels' rows widened once, band by band where the workspace holds a
    // band: each weight word is then split once per call instead of once per pair of pixels.
    let wide_rows = aligned(rest);
    let band = band_pairs(params);
    let banded = band > 0 && widen_rows(params.weights, taps, band.wrapping_mul(2), wide_rows);

    // Which pairs of channels go where: the first `n_ahead` read their rows forwards, the pairs
    // from `first_behind` on from `lead` bytes before their rows, the rest (and an odd last
    // channel) the scalar loop.
    let n_pairs = oc / 2;
    let total = oc.wrapping_mul(taps);
    let n_ahead = match total.checked_sub(taps.wrapping_add(k)) {
        Some(room) => room
            .checked_div(taps.wrapping_mul(2))
            .unwrap_or(0)
            .wrapping_add(1)
            .min(n_pairs),
        None => 0,
    };
    let mut first_behind = n_ahead;
    while first_behind < n_pairs && first_behind.wrapping_mul(2).wrapping_mul(taps) < lead {
        first_behind = first_behind.wrapping_add(1);
    }
    let behind_rows = first_behind
        .wrapping_mul(2)
        .wrapping_mul(taps)
        .wrapping_sub(lead);
    let round_zp = round_zp(params.output_zero_point);
    let (lo, hi) = (params.clamp_min, params.clamp_max);
    let call = |rows, records, at_a, n_blocks| (rows, records, at_a, n_blocks);
    // the narrow rows' blocks (widened rows go through the band runner)
    let run = |(rows, records, at_a, n_blocks): (&[u8], &[i8], usize, usize),
               lanes: &[i8],
               delta: usize,
               output: &mut [i8]| {
        let blocks = PairBlocks {
            rows,
            stride: taps,
            lanes,
            records,
            n_groups,
            at_a,
            delta,
            n_blocks,
            output_zero_point: params.output_zero_point,
            clamp_min: lo,
            clamp_max: hi,
            wide: None,
        };
        pair_blocks(&blocks, output)
    };
    // With widened rows every pair of the band reads forwards (the rows are `k` taps long).
    let n_bands = if banded {
        n_pairs.div_ceil(band.max(1))
    } else {
        1
    };
    for band_index in 0..n_bands {
        let first_pair = band_index.wrapping_mul(band);
        let (wide, n_ahead, first_behind) = if banded {
            // the first band is widened above; `check` proved every row is in the weights
            let n = band.min(n_pairs.wrapping_sub(first_pair));
            let rows = params
                .weights
                .get(first_pair.wrapping_mul(2).wrapping_mul(taps)..)
                .unwrap_or(&[]);
            if band_index > 0 && !widen_rows(rows, taps, n.wrapping_mul(2), wide_rows) {
                return Err(Error::KernelArguments);
            }
            (Some(&*wide_rows), n, n)
        } else {
            (None, n_ahead, first_behind)
        };
        let band_records = records
            .get(first_pair.wrapping_mul(RECORD)..)
            .unwrap_or(&[]);
        // the odd last channel once, with the last band
        let last_band = band_index.wrapping_add(1) == n_bands;
        let odd_channel = last_band && oc % 2 == 1;
        // With widened rows, the band's pixel pairs through one runner (its checks once per
        // band): the columns are the input pixels themselves (a stride-1 layer of whole
        // groups), or gathered; the loop below then only runs an odd last channel.
        if let Some(wide) = wide {
            let band = PairBand {
                wide,
                records: band_records,
                n_groups,
                first_channel: first_pair.wrapping_mul(2),
                oc,
                n_blocks: n_ahead,
                n_pixels,
                output_zero_point: params.output_zero_point,
                clamp_min: lo,
                clamp_max: hi,
            };
            let Some(mut runner) = BandRunner::new(&band, lanes, output) else {
                return Err(Error::KernelArguments); // `check` and the workspace's: never
            };
            if direct && params.stride == [1, 1] {
                runner.input_pixels(input);
            } else if direct {
                // a strided pointwise layer: pixel p's input pixel
                let col = |p: usize| {
                    let (oy, ox) = pixel_yx(p, ow);
                    let at = oy
                        .wrapping_mul(sh)
                        .wrapping_mul(w)
                        .wrapping_add(ox.wrapping_mul(sw))
                        .wrapping_mul(c);
                    range(input, at, k)
                };
                for pair in 0..n_pixels.div_ceil(2) {
                    let a = pair.wrapping_mul(2);
                    let b = a.wrapping_add(1).min(n_pixels.wrapping_sub(1));
                    runner.pair(a, b, col(a), col(b));
                }
            } else {
                // (oy, ox) of pixel A, stepped two pixels at a time
                let (mut oy, mut ox) = (0usize, 0usize);
                for pair in 0..n_pixels.div_ceil(2) {
                    let a = pair.wrapping_mul(2);
                    let b = a.wrapping_add(1).min(n_pixels.wrapping_sub(1));
                    let (oy_b, ox_b) = if b == a {
                        (oy, ox)
                    } else if ox.wrapping_add(1) == ow {
                        (oy.wrapping_add(1), 0)
                    } else {
                        (oy, ox.wrapping_add(1))
                    };
                    let end = lead.wrapping_add(taps);
                    let tight_a = col_a.get_mut(lead..end).unwrap_or(&mut []);
                    gather(params, input, oy, ox, tight_a);
                    let tight_b = col_b.get_mut(lead..end).unwrap_or(&mut []);
                    gather(params, input, oy_b, ox_b, tight_b);
                    runner.pair(a, b, range(col_a, lead, k), range(col_b, lead, k));
                    // pixel A of the next pair: one on from B
                    (oy, ox) = if ox_b.wrapping_add(1) == ow {
                        (oy_b.wrapping_add(1), 0)
                    } else {
                        (oy_b, ox_b.wrapping_add(1))
                    };
                }
            }
            if !odd_channel {
                continue;
            }
        }
        // with widened rows the band runner has run the blocks: only an odd last channel is
        // left for the loop below
        let narrow = wide.is_none();

        for pair in 0..n_pixels.div_ceil(2) {
            let a = pair.wrapping_mul(2);
            let b = a.wrapping_add(1).min(n_pixels.wrapping_sub(1));
            // the two tight columns (`taps` bytes) and their `k`-byte views with the zeros behind
            let mut tight = [&[][..], &[][..]];
            if direct {
                for (slot, pixel) in tight.iter_mut().zip([a, b]) {
                    let (oy, ox) = pixel_yx(pixel, ow);
                    let at = oy
                        .wrapping_mul(sh)
                        .wrapping_mul(w)
                        .wrapping_add(ox.wrapping_mul(sw))
                        .wrapping_mul(c);
                    *slot = range(input, at, c);
                }
            } else {
                for (column, pixel) in [&mut *col_a, &mut *col_b].into_iter().zip([a, b]) {
                    let (oy, ox) = pixel_yx(pixel, ow);
                    let end = lead.wrapping_add(taps);
                    gather(
                        params,
                        input,
                        oy,
                        ox,
                        column.get_mut(lead..end).unwrap_or(&mut []),
                    );
                }
                tight = [range(col_a, lead, taps), range(col_b, lead, taps)];
            }
            let ahead = |i: usize| -> &[i8] {
                if direct {
                    tight.get(i).copied().unwrap_or(&[])
                } else if i == 0 {
                    range(col_a, lead, k)
                } else {
                    range(col_b, lead, k)
                }
            };
            let at_a = a.wrapping_mul(oc);
            let delta = b.wrapping_sub(a).wrapping_mul(oc);
            if narrow && n_ahead > 0 {
                widen_pair(ahead(0), ahead(1), lanes, n_groups);
                let forwards = call(params.weights, records, at_a, n_ahead);
                run(forwards, lanes, delta, output);
            }
            if narrow && first_behind < n_pairs {
                widen_pair(range(col_a, 0, k), range(col_b, 0, k), lanes, n_groups);
                let behind = call(
                    params.weights.get(behind_rows..).unwrap_or(&[]),
                    records
                        .get(first_behind.wrapping_mul(RECORD)..)
                        .unwrap_or(&[]),
                    at_a.wrapping_add(first_behind.wrapping_mul(2)),
                    n_pairs.wrapping_sub(first_behind),
                );
                run(behind, lanes, delta, output);
            }
            // the scalar rows: the pairs between (none with widened rows), and the last channel
            // of an odd count
            let between = if narrow {
                n_ahead.wrapping_mul(2)..first_behind.wrapping_mul(2)
            } else {
                0..0
            };
            let scalar = between.chain(odd_channel.then(|| oc.wrapping_sub(1)));
            for o in scalar {
                let row = range(params.weights, o.wrapping_mul(taps), taps);
                let record = range(records, (o / 2).wrapping_mul(RECORD), RECORD);
                let word = |i: usize| word_i8(range(record, i.wrapping_mul(4), 4));
                let half = o % 2;
                let (start, m, s1) = (
                    word(half),
                    word(half.wrapping_mul(2).wrapping_add(2)),
                    word(half.wrapping_mul(2).wrapping_add(3)),
                );
                let t = (s1 as u8).wrapping_add(33);
                for (column, at) in tight.iter().zip([at_a, at_a.wrapping_add(delta)]) {
                    let acc = tail_dot(row, column, start);
                    let q = rq_high_zp(acc, m, t, round_zp).max(lo).min(hi);
                    if let Some(y) = output.get_mut(at.wrapping_add(o)) {
                        *y = q;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{band_pairs, wide_len, WIDE_MAX};
    use crate::kernels::harness::channel_case;
    use crate::testutil::Rng;

    /// The wide cases of the kernel tests (`conv_wide_cases`, same seed) run in several bands,
    /// each within `WIDE_MAX`: the banded path is what they test.
    #[test]
    fn wide_cases_run_in_bands() {
        let mut rng = Rng::new(0xC0_0009);
        let mut banded = 0;
        for _ in 0..24 {
            let case = channel_case(&mut rng, true);
            let p = case.params();
            let n_pairs = p.output_shape[2] / 2;
            assert!(band_pairs(&p) >= 1 && wide_len(&p) <= WIDE_MAX);
            if band_pairs(&p) < n_pairs {
                banded += 1;
            }
        }
        assert!(banded >= 20, "only {banded} of 24 wide cases run in bands");
    }

    /// `row_sum` is the plain sum of the bytes as `i8`, on every length (whole words and a
    /// remainder) and on the extremes.
    #[test]
    fn row_sums_are_plain_sums() {
        let mut rng = Rng::new(7);
        for len in 0..40 {
            for fill in [None, Some(0x80u8), Some(0x7f), Some(0xff)] {
                let row: std::vec::Vec<u8> = (0..len)
                    .map(|_| fill.unwrap_or_else(|| rng.i8() as u8))
                    .collect();
                let plain: i32 = row.iter().map(|&w| i32::from(w as i8)).sum();
                assert_eq!(super::row_sum(&row), plain, "{row:?}");
            }
        }
    }

    /// A layer whose rows fit is one band: KWS's pointwise 64 -> 64 (8 KiB widened), and 64 ->
    /// 128 at exactly `WIDE_MAX`; 128 -> 128 is two bands of 32 pairs.
    #[test]
    fn bands_of_pointwise_layers() {
        let mut rng = Rng::new(1);
        let mut case = channel_case(&mut rng, false);
        for (c, oc, pairs, len) in [
            (64, 64, 32, 8192),
            (64, 128, 64, WIDE_MAX),
            (128, 128, 32, WIDE_MAX),
        ] {
            case.input_shape = [2, 2, c];
            case.output_shape = [2, 2, oc];
            case.kernel = [1, 1];
            case.stride = [1, 1];
            case.pad = [0, 0];
            let p = case.params();
            assert_eq!((band_pairs(&p), wide_len(&p)), (pairs, len), "{c} -> {oc}");
        }
    }
}
