//! The residual `Add` four elements at a time: `acc = K + W_a a + W_b b` with the zero points
//! folded once into `K = -(W_a zp_a + W_b zp_b)` (the same `i32` as the reference's
//! `W_a (a - zp_a) + W_b (b - zp_b)`: wrapping sums are exact modulo 2^32), then
//! `fixed::rq_high_zp` and the clamps. On Cortex-M4/M7 the word loop is assembly
//! (`kiln_add_words_dsp` in `dsp_asm.rs`: two word loads, per element two `SXTB`, two `MLA`
//! and the output stage, one word out); elsewhere [`add_words`] is its portable twin, which the
//! host tests hold to the reference. A layer whose shift is outside `33..=62` runs the
//! reference, as does the last one to three elements' arithmetic of every layer here.

use super::reference;
use super::AddParams;
use crate::fixed::{round_zp, rq_acc_is_high, rq_high_zp};
use crate::Error;

#[cfg(kiln_kernel = "dsp")]
pub(crate) use super::dsp_asm::{add_words, add_words_in_place};

/// What one call of [`add_words`] needs besides the slices: the constants of the output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddWords {
    pub weights: [i32; 2],
    /// `-(W_a zp_a + W_b zp_b)`, wrapping.
    pub start: i32,
    pub multiplier: i32,
    pub shift: u8,
    pub output_zero_point: i8,
    pub clamp_min: i8,
    pub clamp_max: i8,
}

impl AddWords {
    fn new(p: &AddParams) -> Self {
        let [wa, wb] = p.weights;
        let [zpa, zpb] = p.input_zero_points.map(i32::from);
        Self {
            weights: p.weights,
            start: wa
                .wrapping_mul(zpa)
                .wrapping_add(wb.wrapping_mul(zpb))
                .wrapping_neg(),
            multiplier: p.multiplier,
            shift: p.shift,
            output_zero_point: p.output_zero_point,
            clamp_min: p.clamp_min,
            clamp_max: p.clamp_max,
        }
    }

    /// One element: `clamp(rq_high_zp(K + W_a a + W_b b))`.
    #[inline(always)]
    fn element(&self, a: i8, b: i8) -> i8 {
        let [wa, wb] = self.weights;
        let acc = self
            .start
            .wrapping_add(wa.wrapping_mul(i32::from(a)))
            .wrapping_add(wb.wrapping_mul(i32::from(b)));
        rq_high_zp(
            acc,
            self.multiplier,
            self.shift,
            round_zp(self.output_zero_point),
        )
        .max(self.clamp_min)
        .min(self.clamp_max)
    }
}

/// The portable twin of `kiln_add_words_dsp` (`dsp_asm::add_words`): the first
/// `4 * (len / 4)` elements of `output`, element by element in its order. Writes nothing unless
/// `a` and `b` are as long as `output`.
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn add_words(w: &AddWords, a: &[i8], b: &[i8], output: &mut [i8]) {
    if a.len() != output.len() || b.len() != output.len() {
        return;
    }
    let whole = output.len() & !3;
    let out = output.get_mut(..whole).unwrap_or(&mut []);
    for ((y, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *y = w.element(a, b);
    }
}

/// The portable twin of `dsp_asm::add_words_in_place`: the first `4 * (len / 4)` elements of
/// `data` (operand `a` if `data_is_a`, else `b`) with `other` (the other operand, or `None`
/// for `x + x`), each element read before it is written. Writes nothing unless `other` is as
/// long as `data`.
#[cfg(not(kiln_kernel = "dsp"))]
pub(crate) fn add_words_in_place(
    w: &AddWords,
    data: &mut [i8],
    other: Option<&[i8]>,
    data_is_a: bool,
) {
    if other.is_some_and(|o| o.len() != data.len()) {
        return;
    }
    let whole = data.len() & !3;
    add_in_place_range(
        w,
        data.get_mut(..whole).unwrap_or(&mut []),
        other,
        data_is_a,
    );
}

/// `data[i] = w.element(a, b)` for every `i`, `data[i]` being `a` if `data_is_a`, else `b`,
/// and `other[i]` (or `data[i]` again) the other operand.
#[inline(always)]
fn add_in_place_range(w: &AddWords, data: &mut [i8], other: Option<&[i8]>, data_is_a: bool) {
    for (i, y) in data.iter_mut().enumerate() {
        let o = other.and_then(|o| o.get(i)).copied().unwrap_or(*y);
        *y = if data_is_a {
            w.element(*y, o)
        } else {
            w.element(o, *y)
        };
    }
}

/// The residual `Add` in place, four elements at a time: the contract (and the result) of
/// [`inplace::add_i8_in_place`](super::inplace::add_i8_in_place), `data` both an operand and
/// the output.
pub fn add_i8_in_place(
    params: &AddParams,
    data: &mut [i8],
    other: Option<&[i8]>,
    data_is_a: bool,
) -> Result<(), Error> {
    let n = data.len();
    params.check(n, other.map_or(n, <[i8]>::len), n)?;
    if !rq_acc_is_high(params.shift) {
        return super::inplace::add_i8_in_place(params, data, other, data_is_a);
    }
    let w = AddWords::new(params);
    add_words_in_place(&w, data, other, data_is_a);
    let whole = n & !3;
    let tail = data.get_mut(whole..).unwrap_or(&mut []);
    let other = other.map(|o| o.get(whole..).unwrap_or(&[]));
    add_in_place_range(&w, tail, other, data_is_a);
    Ok(())
}

/// The residual `Add` four elements at a time (see the module documentation). Same contract as
/// [`reference::add_i8`].
pub fn add_i8(params: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) -> Result<(), Error> {
    params.check(a.len(), b.len(), output.len())?;
    if !rq_acc_is_high(params.shift) {
        return reference::add_i8(params, a, b, output);
    }
    let w = AddWords::new(params);
    add_words(&w, a, b, output);
    let whole = output.len() & !3;
    let tail = output.get_mut(whole..).unwrap_or(&mut []);
    let (a, b) = (a.get(whole..).unwrap_or(&[]), b.get(whole..).unwrap_or(&[]));
    for ((y, &a), &b) in tail.iter_mut().zip(a).zip(b) {
        *y = w.element(a, b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    /// Random adds of every length to 40, weights up to `2^16`, any zero points, shifts on
    /// both sides of 33 and both clamps, against the reference; then wrong lengths.
    #[test]
    fn add_matches_reference() {
        let mut rng = Rng::new(0x1A_0004);
        for i in 0..3000 {
            let n = rng.usize_in(1, 40);
            let p = AddParams {
                weights: [
                    rng.range_i64(-(1 << 16), 1 << 16) as i32,
                    rng.range_i64(-(1 << 16), 1 << 16) as i32,
                ],
                input_zero_points: [rng.i8(), rng.i8()],
                output_zero_point: rng.i8_in(-100, 100),
                multiplier: if rng.below(4) == 0 {
                    1 << 30 // ties: a zero low half whenever the accumulator allows
                } else {
                    rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32
                },
                shift: rng.range_i64(30, 50) as u8,
                clamp_min: if rng.bool() { -128 } else { rng.i8_in(-20, 20) },
                clamp_max: if rng.bool() { 127 } else { 60 },
            };
            let a: std::vec::Vec<i8> = (0..n).map(|_| rng.i8()).collect();
            let b: std::vec::Vec<i8> = (0..n).map(|_| rng.i8()).collect();
            let mut expected = std::vec![0i8; n];
            reference::add_i8(&p, &a, &b, &mut expected).unwrap();
            let mut got = std::vec![0x55i8; n];
            add_i8(&p, &a, &b, &mut got).unwrap();
            assert_eq!(got, expected, "case {i}: {p:?}");
            assert_eq!(
                add_i8(&p, &a, &b[1..], &mut got[1..]),
                Err(Error::KernelArguments)
            );
            // in place, over either operand, and x + x
            crate::kernels::inplace::tests::check_add_in_place(&p, &a, &b, add_i8_in_place, i);
        }
    }
}
