//! The body of `kernel_tests!`: an implementation against the reference kernel.

use super::{reference, FcParams};
use crate::testutil::Rng;
use crate::Error;
use std::vec::Vec;

pub use super::KernelFn;

/// Owned parameters, so tests can build them freely.
#[derive(Debug, Clone)]
pub struct Case {
    pub weights: Vec<u8>,
    pub bias: Vec<u8>,
    pub multipliers: Vec<u8>,
    pub shifts: Vec<u8>,
    pub output_zero_point: i8,
    pub clamp_min: i8,
    pub clamp_max: i8,
    pub input: Vec<i8>,
    pub n_out: usize,
}

impl Case {
    pub fn params(&self) -> FcParams<'_> {
        FcParams {
            weights: &self.weights,
            bias: &self.bias,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
            output_zero_point: self.output_zero_point,
            clamp_min: self.clamp_min,
            clamp_max: self.clamp_max,
        }
    }
}

fn words(v: impl IntoIterator<Item = i32>) -> Vec<u8> {
    v.into_iter().flat_map(i32::to_le_bytes).collect()
}

/// A random case. A quarter of the channels use `M = 2^30`, `t = 31 + k` (a division by
/// `2^(k+1)`) and a bias chosen so that the accumulator is an exact tie `(j + 1/2) * 2^(k+1)`
/// with a small `j`: a kernel that rounds ties any other way than half to even is caught.
pub fn random_case(rng: &mut Rng, max_in: usize) -> Case {
    let n_in = rng.usize_in(1, max_in);
    let n_out = rng.usize_in(1, 20);
    let weights: Vec<u8> = (0..n_in * n_out).map(|_| rng.i8() as u8).collect();
    let input: Vec<i8> = (0..n_in).map(|_| rng.i8()).collect();
    let mut bias = Vec::new();
    let mut mults = Vec::new();
    let mut shifts = Vec::new();
    let log_in = (usize::BITS - n_in.leading_zeros()) as i64;
    for o in 0..n_out {
        match rng.below(4) {
            0 => {
                let dot: i64 = weights[o * n_in..(o + 1) * n_in]
                    .iter()
                    .zip(&input)
                    .map(|(&w, &x)| i64::from(w as i8) * i64::from(x))
                    .sum();
                let k = rng.range_i64(0, 6);
                let j = rng.range_i64(-60, 60);
                let target = (2 * j + 1) << k; // (j + 1/2) * 2^(k+1)
                bias.push((target - dot) as i32);
                mults.push(1 << 30);
                shifts.push((31 + k) as u8);
            }
            1 => {
                bias.push(rng.range_i64(-(1 << 21), 1 << 21) as i32);
                mults.push(rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32);
                shifts.push(rng.range_i64(1, 62) as u8);
            }
            _ => {
                bias.push(rng.range_i64(-(1 << 21), 1 << 21) as i32);
                mults.push(rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32);
                shifts.push((31 + 7 + log_in / 2 + rng.range_i64(-3, 3)) as u8);
            }
        }
    }
    let output_zero_point = rng.i8_in(-60, 60);
    let (clamp_min, clamp_max) = match rng.below(3) {
        0 => (-128, 127),
        1 => (output_zero_point, 127),
        _ => {
            let (a, b) = (rng.i8(), rng.i8());
            (a.min(b), a.max(b))
        }
    };
    Case {
        weights,
        bias: words(bias),
        multipliers: words(mults),
        shifts,
        output_zero_point,
        clamp_min,
        clamp_max,
        input,
        n_out,
    }
}

/// Runs both kernels on `case` (outputs pre-filled with the same sentinel) and compares the
/// results and the outputs.
pub fn compare(impl_fn: KernelFn, case: &Case, what: &str) {
    let params = case.params();
    let mut expected = std::vec![0x5Ai8; case.n_out];
    let mut got = expected.clone();
    let r_expected = reference::fully_connected_i8(&params, &case.input, &mut expected);
    let r_got = impl_fn(&params, &case.input, &mut got);
    assert_eq!(
        r_got, r_expected,
        "{what}: result differs from the reference"
    );
    assert_eq!(got, expected, "{what}: outputs differ from the reference");
}

pub fn random_cases(impl_fn: KernelFn, seed: u64, cases: usize, max_in: usize) {
    let mut rng = Rng::new(seed);
    for i in 0..cases {
        let case = random_case(&mut rng, max_in);
        compare(
            impl_fn,
            &case,
            &std::format!(
                "random case {i} (n_in {}, n_out {})",
                case.input.len(),
                case.n_out
            ),
        );
    }
}

/// All-extreme weights, inputs, biases and parameters (the accumulator bound is met).
pub fn extremes(impl_fn: KernelFn) {
    let mut rng = Rng::new(0xE7);
    for &n_in in &[1usize, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 64, 1000] {
        for &wv in &[-128i8, -127, 127, 0, 1, -1] {
            for &xv in &[-128i8, 127, 0] {
                let n_out = 3;
                let max_bias = i64::from(i32::MAX) - 128 * 128 * n_in as i64;
                let case = Case {
                    weights: std::vec![wv as u8; n_in * n_out],
                    bias: words([max_bias as i32, -(max_bias as i32), 0]),
                    multipliers: words([
                        i32::MAX,
                        1 << 30,
                        rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32,
                    ]),
                    shifts: std::vec![1, 62, rng.range_i64(20, 45) as u8],
                    output_zero_point: rng.i8(),
                    clamp_min: -128,
                    clamp_max: 127,
                    input: std::vec![xv; n_in],
                    n_out,
                };
                compare(
                    impl_fn,
                    &case,
                    &std::format!("extremes n_in {n_in} w {wv} x {xv}"),
                );
            }
        }
    }
}

/// Every kind of wrong length gives the reference's error and writes nothing.
pub fn bad_lengths(impl_fn: KernelFn) {
    let mut rng = Rng::new(0xBAD);
    for i in 0..200 {
        let mut case = random_case(&mut rng, 12);
        match i % 7 {
            0 => {
                case.weights.pop();
            }
            1 => case.weights.push(0),
            2 => {
                case.bias.pop();
            }
            3 => {
                case.multipliers.pop();
            }
            4 => case.shifts.push(31),
            5 => case.n_out += 1,
            _ => {
                case.clamp_min = 10;
                case.clamp_max = 9;
            }
        }
        let mut got = std::vec![0x5Ai8; case.n_out];
        assert_eq!(
            impl_fn(&case.params(), &case.input, &mut got),
            Err(Error::KernelArguments),
            "bad case {i}"
        );
        assert!(got.iter().all(|&v| v == 0x5A), "bad case {i} wrote output");
        compare(impl_fn, &case, "bad lengths");
    }
    let case = random_case(&mut rng, 12);
    let mut out = std::vec![0i8; case.n_out];
    assert_eq!(
        impl_fn(&case.params(), &[], &mut out),
        Err(Error::KernelArguments)
    );
}

/// The harness itself can fail: a kernel that rounds ties half up, or forgets the clamp, is
/// caught.
#[cfg(test)]
mod self_test {
    use super::*;
    use crate::fixed::sat8;
    use crate::kernels::le_i32;

    fn half_up(p: &FcParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        p.check(input.len(), output.len())?;
        for (o, out) in output.iter_mut().enumerate() {
            let mut acc = i64::from(le_i32(&p.bias[o * 4..o * 4 + 4]));
            for (i, &x) in input.iter().enumerate() {
                acc += i64::from(p.weights[o * input.len() + i] as i8) * i64::from(x);
            }
            let m = i128::from(le_i32(&p.multipliers[o * 4..o * 4 + 4]));
            let t = p.shifts[o];
            let r = ((i128::from(acc) * m + (1i128 << (t - 1))) >> t) as i64; // ties up
            *out = sat8(i64::from(p.output_zero_point) + r)
                .max(p.clamp_min)
                .min(p.clamp_max);
        }
        Ok(())
    }

    fn no_clamp(p: &FcParams<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        let q = FcParams {
            clamp_min: -128,
            clamp_max: 127,
            ..*p
        };
        reference::fully_connected_i8(&q, input, output)
    }

    #[test]
    #[should_panic(expected = "outputs differ from the reference")]
    fn catches_round_half_up() {
        random_cases(half_up, 1, 200, 40);
    }

    #[test]
    #[should_panic(expected = "outputs differ from the reference")]
    fn catches_missing_clamp() {
        random_cases(no_clamp, 2, 200, 40);
    }
}
