//! The body of `kernel_tests!`: an implementation against the reference kernel.

use super::{reference, ConvKernelFn, ConvParams, FcParams, PoolKernelFn, PoolParams};
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
    case_of_shape(rng, n_in, n_out, 1)
}

/// A random case of `n_in` inputs and `n_out` outputs whose shifts are all at least
/// `min_shift` (33 keeps every row on the block kernels' fast output stage).
pub fn case_of_shape(rng: &mut Rng, n_in: usize, n_out: usize, min_shift: u8) -> Case {
    let min_k = i64::from(min_shift).saturating_sub(31).max(0);
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
                let k = rng.range_i64(min_k, 6.max(min_k));
                let j = rng.range_i64(-60, 60);
                let target = (2 * j + 1) << k; // (j + 1/2) * 2^(k+1)
                bias.push((target - dot) as i32);
                mults.push(1 << 30);
                shifts.push((31 + k) as u8);
            }
            1 => {
                bias.push(rng.range_i64(-(1 << 21), 1 << 21) as i32);
                mults.push(rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32);
                shifts.push(rng.range_i64(i64::from(min_shift), 62) as u8);
            }
            _ => {
                bias.push(rng.range_i64(-(1 << 21), 1 << 21) as i32);
                mults.push(rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32);
                let typical = 31 + 7 + log_in / 2 + rng.range_i64(-3, 3);
                shifts.push(typical.max(i64::from(min_shift)) as u8);
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

/// Whole blocks of four rows over inputs in groups of 8, every shift in `33..=62`: what the
/// block kernels run in one call (ties, every clamp kind, odd and even group counts).
pub fn block_cases(impl_fn: KernelFn, seed: u64, cases: usize) {
    let mut rng = Rng::new(seed);
    for i in 0..cases {
        let n_in = 8 * rng.usize_in(1, 24);
        let n_out = rng.usize_in(4, 22);
        let case = case_of_shape(&mut rng, n_in, n_out, 33);
        compare(
            impl_fn,
            &case,
            &std::format!("block case {i} (n_in {n_in}, n_out {n_out})"),
        );
    }
}

/// The block cases with the weights, bias and multipliers one byte past a word boundary, as in
/// a blob at an odd address: the block routines that need aligned arrays (Armv7E-M's `LDRD` of
/// weights, the Cortex-M0 routine's word loads of bias and multipliers) must leave such a layer
/// to their fallbacks, with the reference's bits.
pub fn misaligned_block_cases(impl_fn: KernelFn, seed: u64, cases: usize) {
    let mut rng = Rng::new(seed);
    for i in 0..cases {
        let n_in = 8 * rng.usize_in(1, 24);
        let n_out = rng.usize_in(4, 22);
        let case = case_of_shape(&mut rng, n_in, n_out, 33);
        // One byte in front, then the array: the slice from byte 1 is misaligned whenever the
        // allocation is word-aligned (it is on every host allocator).
        let shifted = |bytes: &[u8]| -> Vec<u8> {
            core::iter::once(0).chain(bytes.iter().copied()).collect()
        };
        let (weights, bias, multipliers) = (
            shifted(&case.weights),
            shifted(&case.bias),
            shifted(&case.multipliers),
        );
        let params = FcParams {
            weights: &weights[1..],
            bias: &bias[1..],
            multipliers: &multipliers[1..],
            ..case.params()
        };
        assert_ne!(
            params.weights.as_ptr().align_offset(4),
            0,
            "misaligned weights"
        );
        let mut expected = std::vec![0x5Ai8; n_out];
        let mut got = expected.clone();
        let r_expected = reference::fully_connected_i8(&params, &case.input, &mut expected);
        let r_got = impl_fn(&params, &case.input, &mut got);
        let what = std::format!("misaligned block case {i} (n_in {n_in}, n_out {n_out})");
        assert_eq!(
            r_got, r_expected,
            "{what}: result differs from the reference"
        );
        assert_eq!(got, expected, "{what}: outputs differ from the reference");
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

/// An owned convolution case.
#[derive(Debug, Clone)]
pub struct ConvCase {
    pub input_shape: [usize; 3],
    pub output_shape: [usize; 3],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub weights: Vec<u8>,
    pub bias: Vec<u8>,
    pub multipliers: Vec<u8>,
    pub shifts: Vec<u8>,
    pub input_zero_point: i8,
    pub output_zero_point: i8,
    pub clamp_min: i8,
    pub clamp_max: i8,
    pub input: Vec<i8>,
}

impl ConvCase {
    pub fn params(&self) -> ConvParams<'_> {
        ConvParams {
            input_shape: self.input_shape,
            output_shape: self.output_shape,
            kernel: self.kernel,
            stride: self.stride,
            pad: self.pad,
            weights: &self.weights,
            bias: &self.bias,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
            input_zero_point: self.input_zero_point,
            output_zero_point: self.output_zero_point,
            clamp_min: self.clamp_min,
            clamp_max: self.clamp_max,
        }
    }

    pub fn output_len(&self) -> usize {
        self.output_shape.iter().product()
    }
}

/// `(out, pad_begin)` of one spatial axis by docs/layer-graph.md "Padding and output sizes",
/// written out here independently of the loader.
pub fn axis(n: usize, k: usize, s: usize, same: bool) -> Option<(usize, usize)> {
    if same {
        let out = n.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(n);
        Some((out, total / 2))
    } else if n >= k {
        Some(((n - k) / s + 1, 0))
    } else {
        None
    }
}

/// A random spatial axis of an input: length, kernel, stride, padding; kernel = input, 1x1 and
/// stride 2 all occur often.
fn random_axis(rng: &mut Rng) -> (usize, usize, usize, bool) {
    let n = rng.usize_in(1, 9);
    let k = match rng.below(5) {
        0 => 1,
        1 => n,
        _ => rng.usize_in(1, n.min(5)),
    };
    let s = match rng.below(4) {
        0 | 1 => 1,
        2 => 2,
        _ => rng.usize_in(1, 3),
    };
    (n, k, s, rng.bool())
}

/// A random convolution case (`depthwise` picks the weight layout). A quarter of the channels
/// have `M = 2^30`, `t = 31 + k`, so ties are frequent and a wrong rounding shows.
pub fn conv_case(rng: &mut Rng, depthwise: bool) -> ConvCase {
    let (h, kh, sh, same) = random_axis(rng);
    let (w, kw, sw, _) = random_axis(rng);
    let (oh, top) = axis(h, kh, sh, same).unwrap_or((1, 0));
    let (ow, left) = axis(w, kw, sw, same).unwrap_or((1, 0));
    // one channel, a few, or enough for the optimized kernels' four-row and eight-input blocks
    let c = match rng.below(8) {
        0 | 1 => 1,
        2 => rng.usize_in(7, 20),
        _ => rng.usize_in(1, 6),
    };
    let oc = match (depthwise, rng.below(4)) {
        (true, _) => c,
        (false, 0) => rng.usize_in(4, 13),
        _ => rng.usize_in(1, 6),
    };
    let n_weights = if depthwise {
        kh * kw * c
    } else {
        oc * kh * kw * c
    };
    let weights = (0..n_weights).map(|_| rng.i8() as u8).collect();
    let (mut bias, mut mults, mut shifts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..oc {
        if rng.below(4) == 0 {
            bias.push(rng.range_i64(-300, 300) as i32);
            mults.push(1 << 30);
            shifts.push(rng.range_i64(31, 36) as u8);
        } else {
            bias.push(rng.range_i64(-(1 << 18), 1 << 18) as i32);
            mults.push(rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32);
            shifts.push(rng.range_i64(36, 46) as u8);
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
    ConvCase {
        input_shape: [h, w, c],
        output_shape: [oh, ow, oc],
        kernel: [kh, kw],
        stride: [sh, sw],
        pad: [top, left],
        weights,
        bias: words(bias),
        multipliers: words(mults),
        shifts,
        input_zero_point: rng.i8(),
        output_zero_point,
        clamp_min,
        clamp_max,
        input: (0..h * w * c).map(|_| rng.i8()).collect(),
    }
}

/// A random convolution with channel counts anywhere in `1..=70` (in and out), a 1x1 or 3x3
/// kernel (sometimes 1xk or kx1, or as large as the input), strides 1 to 3, same or valid
/// padding, odd and even output pixel counts, any zero points, and every shift in `33..=62` with
/// a quarter of the channels on exact ties (`M = 2^30`): the shapes on which the block kernels
/// take their fast paths, and their edges.
pub fn conv_channel_case(rng: &mut Rng) -> ConvCase {
    channel_case(rng, false)
}

/// `wide`: layers whose widened rows take more than [`WIDE_MAX`](super::pairs::WIDE_MAX)
/// bytes (1x1 on 100 to 180 channels or 3x3 on 20 to 40, to 60 to 140 channels), which the
/// two-pixel kernel runs in bands of channels.
pub(crate) fn channel_case(rng: &mut Rng, wide: bool) -> ConvCase {
    let axis_of = |rng: &mut Rng, k: usize| {
        let n = rng.usize_in(1, 7);
        let k = if rng.below(8) == 0 { n } else { k.min(n) };
        let s = match rng.below(5) {
            0..=2 => 1,
            3 => 2,
            _ => 3,
        };
        let same = rng.bool();
        let (out, pad) = axis(n, k, s, same).unwrap_or((1, 0));
        (n, k, s, out, pad)
    };
    let k = match rng.below(6) {
        _ if wide => 1 + 2 * (rng.below(2) as usize),
        0..=2 => 1,
        3 | 4 => 3,
        _ => rng.usize_in(1, 4),
    };
    let (h, kh, sh, oh, top) = axis_of(rng, k);
    let kw = if rng.below(6) == 0 && !wide { 1 } else { k };
    let (w, kw, sw, ow, left) = axis_of(rng, kw);
    let channels = |rng: &mut Rng| match rng.below(4) {
        0 => rng.usize_in(1, 9),
        1 => 8 * rng.usize_in(1, 8),
        _ => rng.usize_in(1, 70),
    };
    let (c, oc) = if !wide {
        (channels(rng), channels(rng))
    } else if k == 1 {
        (rng.usize_in(100, 180), rng.usize_in(60, 140))
    } else {
        (rng.usize_in(20, 40), rng.usize_in(60, 140))
    };
    let weights = (0..oc * kh * kw * c).map(|_| rng.i8() as u8).collect();
    let (mut bias, mut mults, mut shifts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..oc {
        if rng.below(4) == 0 {
            bias.push(rng.range_i64(-300, 300) as i32);
            mults.push(1 << 30);
            shifts.push(rng.range_i64(33, 36) as u8);
        } else {
            bias.push(rng.range_i64(-(1 << 20), 1 << 20) as i32);
            mults.push(rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32);
            shifts.push(rng.range_i64(36, 62) as u8);
        }
    }
    let output_zero_point = rng.i8();
    let (clamp_min, clamp_max) = match rng.below(3) {
        0 => (-128, 127),
        1 => (output_zero_point, 127),
        _ => {
            let (a, b) = (rng.i8(), rng.i8());
            (a.min(b), a.max(b))
        }
    };
    ConvCase {
        input_shape: [h, w, c],
        output_shape: [oh, ow, oc],
        kernel: [kh, kw],
        stride: [sh, sw],
        pad: [top, left],
        weights,
        bias: words(bias),
        multipliers: words(mults),
        shifts,
        input_zero_point: rng.i8(),
        output_zero_point,
        clamp_min,
        clamp_max,
        input: (0..h * w * c).map(|_| rng.i8()).collect(),
    }
}

/// A convolution kernel against the reference on [`conv_channel_case`]s.
pub fn conv_channel_cases(impl_fn: ConvKernelFn, seed: u64, cases: usize) {
    let mut rng = Rng::new(seed);
    for i in 0..cases {
        let case = conv_channel_case(&mut rng);
        conv_compare(
            impl_fn,
            false,
            &case,
            &std::format!("conv channel case {i} {case:?}"),
        );
    }
}

/// [`conv_channel_cases`] on layers too wide for one band of widened rows.
pub fn conv_wide_cases(impl_fn: ConvKernelFn, seed: u64, cases: usize) {
    let mut rng = Rng::new(seed);
    for i in 0..cases {
        let case = channel_case(&mut rng, true);
        conv_compare(
            impl_fn,
            false,
            &case,
            &std::format!("conv wide case {i} {case:?}"),
        );
    }
}

fn conv_reference(depthwise: bool) -> ConvKernelFn {
    if depthwise {
        reference::depthwise_conv2d_i8
    } else {
        reference::conv2d_i8
    }
}

/// Runs both kernels on `case` (outputs pre-filled with the same sentinel) and compares.
pub fn conv_compare(impl_fn: ConvKernelFn, depthwise: bool, case: &ConvCase, what: &str) {
    let params = case.params();
    let mut expected = std::vec![0x5Ai8; case.output_len()];
    let mut got = expected.clone();
    let r_expected = conv_reference(depthwise)(&params, &case.input, &mut expected);
    let r_got = impl_fn(&params, &case.input, &mut got);
    assert_eq!(
        r_got, r_expected,
        "{what}: result differs from the reference"
    );
    assert_eq!(got, expected, "{what}: outputs differ from the reference");
}

pub fn conv_cases(impl_fn: ConvKernelFn, depthwise: bool, seed: u64, cases: usize) {
    let mut rng = Rng::new(seed);
    for i in 0..cases {
        let case = conv_case(&mut rng, depthwise);
        assert_eq!(
            conv_reference(depthwise)(
                &case.params(),
                &case.input,
                &mut std::vec![0; case.output_len()]
            ),
            Ok(())
        );
        conv_compare(
            impl_fn,
            depthwise,
            &case,
            &std::format!("conv case {i} {case:?}"),
        );
    }
}

/// Every kind of wrong length or shape gives [`Error::KernelArguments`] and writes nothing.
pub fn conv_bad_lengths(impl_fn: ConvKernelFn, depthwise: bool) {
    let mut rng = Rng::new(0xBAD2);
    for i in 0..300 {
        let mut case = conv_case(&mut rng, depthwise);
        let mut n_out = case.output_len();
        match i % 10 {
            0 => {
                case.weights.pop();
            }
            1 => case.weights.push(0),
            2 => {
                case.bias.pop();
            }
            3 => {
                case.multipliers.truncate(case.multipliers.len() - 4);
            }
            4 => case.shifts.push(31),
            5 => n_out += 1,
            6 => {
                case.input.pop();
            }
            7 => case.stride[rng.usize_in(0, 1)] = 0,
            8 => case.kernel[rng.usize_in(0, 1)] = 0,
            _ => {
                case.clamp_min = 10;
                case.clamp_max = 9;
            }
        }
        let mut got = std::vec![0x5Ai8; n_out];
        assert_eq!(
            impl_fn(&case.params(), &case.input, &mut got),
            Err(Error::KernelArguments),
            "bad conv case {i}"
        );
        assert!(
            got.iter().all(|&v| v == 0x5A),
            "bad conv case {i} wrote output"
        );
    }
}

/// A random pooling case: valid windows, the stride dividing `in - k`, kernel = input often.
pub fn pool_case(rng: &mut Rng) -> (PoolParams, Vec<i8>) {
    let axis_of = |rng: &mut Rng| {
        let k = rng.usize_in(1, 4);
        let s = rng.usize_in(1, 3);
        let out = rng.usize_in(1, 4);
        let n = (out - 1) * s + k;
        if rng.below(4) == 0 {
            (n, n, 1, 1) // a global pool over this axis
        } else {
            (n, k, s, out)
        }
    };
    let (h, kh, sh, oh) = axis_of(rng);
    let (w, kw, sw, ow) = axis_of(rng);
    let c = if rng.below(3) == 0 {
        1
    } else {
        rng.usize_in(1, 6)
    };
    let ties = rng.bool();
    let params = PoolParams {
        input_shape: [h, w, c],
        output_shape: [oh, ow, c],
        kernel: [kh, kw],
        stride: [sh, sw],
        input_zero_point: rng.i8(),
        output_zero_point: rng.i8_in(-60, 60),
        multiplier: if ties {
            1 << 30
        } else {
            rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32
        },
        shift: if ties {
            rng.range_i64(31, 34) as u8
        } else {
            rng.range_i64(31, 40) as u8
        },
        clamp_min: -128,
        clamp_max: 127,
    };
    let input = (0..h * w * c).map(|_| rng.i8()).collect();
    (params, input)
}

/// A pooling implementation against its reference on random shapes and bad lengths.
pub fn pool_cases(impl_fn: PoolKernelFn, reference: PoolKernelFn, seed: u64, cases: usize) {
    let mut rng = Rng::new(seed);
    for i in 0..cases {
        let (mut params, input) = pool_case(&mut rng);
        if i % 5 == 0 {
            let (a, b) = (rng.i8(), rng.i8());
            (params.clamp_min, params.clamp_max) = (a.min(b), a.max(b));
        }
        let n_out: usize = params.output_shape.iter().product();
        let mut expected = std::vec![0x5Ai8; n_out];
        let mut got = expected.clone();
        assert_eq!(reference(&params, &input, &mut expected), Ok(()));
        assert_eq!(impl_fn(&params, &input, &mut got), Ok(()), "pool case {i}");
        assert_eq!(
            got, expected,
            "pool case {i} {params:?}: outputs differ from the reference"
        );
        // wrong lengths and shapes
        let mut bad = params;
        match i % 5 {
            0 => bad.output_shape[2] += 1,
            1 => bad.kernel[0] = params.input_shape[0] + 1,
            2 => bad.stride[1] = 0,
            3 => bad.output_shape[0] += 1,
            _ => (bad.clamp_min, bad.clamp_max) = (5, 4),
        }
        let n_bad: usize = bad.output_shape.iter().product();
        let mut out = std::vec![0x5Ai8; n_bad];
        assert_eq!(
            impl_fn(&bad, &input, &mut out),
            Err(Error::KernelArguments),
            "bad pool case {i}"
        );
        assert!(out.iter().all(|&v| v == 0x5A));
        let mut out = std::vec![0x5Ai8; n_out];
        assert_eq!(
            impl_fn(&params, &input[1..], &mut out),
            Err(Error::KernelArguments)
        );
    }
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
