//! The quantization arithmetic of `docs/quantization.md`, on the host side:
//! fixed-point multipliers, weight, bias and activation parameters, lookup
//! tables and the integer input stage.
//!
//! Every rounding of a real value to an integer goes through
//! [`round_half_even`], the one rounding rule of the specification.

use super::QuantError;

/// Rounds to the nearest integer, ties to even (ONNX `QuantizeLinear`'s rule).
/// The one rounding helper for real values in the quantizer.
pub fn round_half_even(value: f64) -> f64 {
    value.round_ties_even()
}

/// `round_half_even(value)` saturated to the i8 range.
pub fn round_sat8(value: f64) -> i8 {
    // `as` saturates (and maps NaN to 0); the clamp keeps the intent explicit.
    round_half_even(value).clamp(-128.0, 127.0) as i8
}

/// `round_half_even(value)` saturated to the i32 range.
pub fn round_sat32(value: f64) -> i32 {
    round_half_even(value).clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

use kiln_runtime::fixed::{SHIFT_MAX, SHIFT_MIN};

/// Writes a positive real scale as `M * 2^-t` with `M` in `[2^30, 2^31)` and
/// `t` in `[1, 62]`: `e = m * 2^k` with `m` in `[0.5, 1)` (frexp),
/// `M = round_half_even(m * 2^31)` (renormalized to `2^30` with `k + 1` when it
/// rounds up to `2^31`), `t = 31 - k`.
pub fn quantize_multiplier(effective_scale: f64) -> Result<(i32, u8), QuantError> {
    let e = effective_scale;
    if !(e.is_finite() && e > 0.0) {
        return Err(QuantError::Multiplier {
            scale: e,
            detail: "expected a positive finite scale".into(),
        });
    }
    let (mantissa, mut exponent) = frexp(e);
    let mut m = round_half_even(mantissa * 2f64.powi(31));
    if m >= 2f64.powi(31) {
        m = 2f64.powi(30);
        exponent += 1;
    }
    let t = 31 - exponent;
    if !(i64::from(SHIFT_MIN)..=i64::from(SHIFT_MAX)).contains(&t) {
        return Err(QuantError::Multiplier {
            scale: e,
            detail: format!("needs a shift of {t}, outside [{SHIFT_MIN}, {SHIFT_MAX}]"),
        });
    }
    Ok((m as i32, t as u8))
}

/// The grid both inputs of a residual add are put on: `W = round(s_x / max(s_a, s_b) 2^bits)`,
/// with `bits` the finest of these whose requantization shift fits. On `2^22` each weight is off
/// by at most half a grid step, so a sum is within `255 / 2^23` of the larger input's step of
/// the exact one. The `2^16` grid of blob versions 5 to 7 left MLCommons' ResNet-8 one output
/// step from exact (float64) arithmetic on 34 of 75 rows; `2^22` on none.
pub const ADD_GRID_BITS: std::ops::RangeInclusive<i32> = 16..=22;

/// A residual add's integers (`docs/layer-graph.md`): `acc = W_a (a - zp_a) + W_b (b - zp_b)`,
/// `y = zp_out + rq(acc, M, t)`. Both inputs go on one grid of `2^-22` of the larger input
/// step (coarser only if the output's step is so much larger that `t` would pass 62), so the
/// sum is exact to a `2^-23` relative error and rounds once, as a float engine's add followed
/// by its quantize does. The larger input's weight is the grid's `2^bits` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddParams {
    pub weights: [i32; 2],
    pub multiplier: i32,
    pub shift: u8,
}

/// The [`AddParams`] of `a + b` quantized to `output`.
pub fn add_params(
    a: ActivationParams,
    b: ActivationParams,
    output: ActivationParams,
) -> Result<AddParams, QuantError> {
    let larger = f64::from(a.scale.max(b.scale));
    let on_grid = |bits: i32| {
        let unit = f64::from(1u32 << bits);
        let weight = |s: f32| round_half_even(f64::from(s) / larger * unit) as i32;
        let (multiplier, shift) = quantize_multiplier(larger / (unit * f64::from(output.scale)))?;
        Ok(AddParams {
            weights: [weight(a.scale), weight(b.scale)],
            multiplier,
            shift,
        })
    };
    // the finest grid whose shift fits, else the coarsest one's error
    let coarsest = *ADD_GRID_BITS.start();
    ADD_GRID_BITS
        .rev()
        .filter(|&bits| bits > coarsest)
        .find_map(|bits| on_grid(bits).ok())
        .map_or_else(|| on_grid(coarsest), Ok)
}

/// Whether `acc * M / 2^t` is exactly halfway between two integers for some window sum
/// `0 < |acc| <= 255 taps`: the value has `2^(t - tz(M))` as its denominator divided by the
/// powers of two in `acc`, so it is a half exactly when `acc` holds `t - tz(M) - 1` of them.
pub fn average_can_tie(multiplier: i32, shift: u8, taps: usize) -> bool {
    let halving = i64::from(shift) - i64::from(multiplier.trailing_zeros()) - 1;
    let largest_sum = 255i64.saturating_mul(i64::try_from(taps).unwrap_or(i64::MAX));
    (0..62).contains(&halving) && (1i64 << halving) <= largest_sum
}

/// The output parameters and requantization of an average of `taps` int8 values with
/// parameters `input`, for the calibrated output range `[lo, hi]`.
///
/// The calibrated parameters, unless their ratio `M / 2^t = s_in / (taps s_out)` lands some
/// window sums exactly halfway between two output steps: as when the output's scale is the
/// input's (a 2x2 average of a range it cannot widen, such as uniform image regions) and a
/// quarter of all sums are ties. The device rounds a tie to even; a float QDQ engine computes
/// it with f32 error and rounds it either way. Then the scale grows by the first step of
/// `2^-12` whose ratio has no exact tie: every such sum then lies at least
/// `|acc| 2^-14` output steps from the tie, about a thousand times a float engine's error.
pub fn average_params(
    input: ActivationParams,
    lo: f64,
    hi: f64,
    taps: usize,
) -> Result<(ActivationParams, (i32, u8)), QuantError> {
    let calibrated = activation_params(lo, hi)?;
    let ratio = |scale: f32| f64::from(input.scale) / (f64::from(scale) * taps as f64);
    let first = quantize_multiplier(ratio(calibrated.scale))?;
    let mut chosen = (calibrated, first);
    for step in 1..=64u32 {
        if !average_can_tie(chosen.1 .0, chosen.1 .1, taps) {
            break;
        }
        let scale = (f64::from(calibrated.scale) * (1.0 + f64::from(step) / 4096.0)) as f32;
        let params = ActivationParams {
            scale,
            zero_point: round_sat8(-128.0 - lo.min(0.0) / f64::from(scale)),
        };
        chosen = (params, quantize_multiplier(ratio(scale))?);
    }
    Ok(chosen)
}

/// The real value `M * 2^-t` stands for.
pub fn multiplier_value(multiplier: i32, shift: u8) -> f64 {
    f64::from(multiplier) * 2f64.powi(-i32::from(shift))
}

/// `x = m * 2^k` with `m` in `[0.5, 1)`, for finite positive `x` (subnormals too).
fn frexp(x: f64) -> (f64, i64) {
    debug_assert!(x.is_finite() && x > 0.0);
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    if biased == 0 {
        // Subnormal: scale into the normal range first.
        let (m, k) = frexp(x * 2f64.powi(64));
        return (m, k - 64);
    }
    let k = biased - 1022;
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (m, k)
}

/// Per-channel symmetric int8 weights.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeights {
    /// Row-major `[n_outputs][n_inputs]`, each in `[-127, 127]`.
    pub values: Vec<i8>,
    /// One scale per output channel (row).
    pub scales: Vec<f32>,
    /// Rows whose scale is the floor rather than `max |W| / 127`.
    pub floored: usize,
}

/// The smallest effective scale `s_in * s_w[o] / s_target` a weight row gets:
/// `2^-16`. See [`quantize_weights`].
pub const MIN_EFFECTIVE_SCALE: f64 = 1.0 / 65536.0;

/// `s_w[o] = max(max_i |W[o][i]| / 127, min_scale)` (1.0 for an all-zero row),
/// stored as f32; `q_w[o][i] = clamp(round_half_even(W[o][i] / s_w[o]), -127, 127)`
/// computed with the stored f32 scale, so dequantizing with it is exactly the
/// model the integers represent.
///
/// `min_scale` is `MIN_EFFECTIVE_SCALE * s_target / s_in` (see
/// [`weight_scale_floor`]). Without it a row whose weights have all but
/// vanished (weight decay drives the rows of dead units towards 1e-38) would
/// need a requantization shift far beyond 62 and a bias far beyond i32. With it
/// such a row's weights quantize to a few levels (or 0); the error this adds is
/// at most `0.5 * 2^-16 * sum_i |q_in[i] - zp_in|` output steps, far below the
/// rounding error of an ordinary row (whose effective scale is around 2^-10).
pub fn quantize_weights(
    weights: &[f32],
    n_outputs: usize,
    n_inputs: usize,
    min_scale: f64,
    pow2: bool,
) -> QuantizedWeights {
    assert_eq!(
        weights.len(),
        n_outputs * n_inputs,
        "weights do not match the shape"
    );
    let mut values = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(n_outputs);
    let mut floored = 0;
    for row in weights.chunks_exact(n_inputs.max(1)).take(n_outputs) {
        let max = row
            .iter()
            .fold(0.0f64, |max, &w| max.max(f64::from(w).abs()));
        floored += usize::from(max > 0.0 && max / 127.0 < min_scale);
        let scale = match (max > 0.0, pow2) {
            (true, false) => (max / 127.0).max(min_scale) as f32,
            // The next power of two: every weight still fits in 127 steps.
            (true, true) => next_pow2((max / 127.0).max(min_scale)) as f32,
            (false, _) => 1.0,
        };
        let s = f64::from(scale);
        values.extend(
            row.iter()
                .map(|&w| round_half_even(f64::from(w) / s).clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    QuantizedWeights {
        values,
        scales,
        floored,
    }
}

/// The floor of a layer's weight scales: `MIN_EFFECTIVE_SCALE * s_target / s_in`,
/// where `s_target` is the scale the layer requantizes to (its output, or its
/// pre-activation for table activations).
pub fn weight_scale_floor(input_scale: f32, target_scale: f32) -> f64 {
    MIN_EFFECTIVE_SCALE * f64::from(target_scale) / f64::from(input_scale)
}

/// `q_b[o] = round_half_even(b[o] / (s_in * s_w[o]))`, saturated to i32.
pub fn quantize_bias(bias: &[f32], input_scale: f32, weight_scales: &[f32]) -> Vec<i32> {
    assert_eq!(bias.len(), weight_scales.len(), "one weight scale per bias");
    bias.iter()
        .zip(weight_scales)
        .map(|(&b, &s_w)| round_sat32(f64::from(b) / (f64::from(input_scale) * f64::from(s_w))))
        .collect()
}

/// `bias_eff[o] = q_b[o] - zp_in * sum_i q_w[o][i]`: the zero point folded into
/// the bias (the same integer accumulator). Errors if it leaves i32.
pub fn fold_bias(
    bias: &[i32],
    weights: &[i8],
    n_inputs: usize,
    input_zero_point: i8,
) -> Result<Vec<i32>, QuantError> {
    bias.iter()
        .zip(weights.chunks_exact(n_inputs.max(1)))
        .enumerate()
        .map(|(channel, (&q_b, row))| {
            let sum: i64 = row.iter().map(|&w| i64::from(w)).sum();
            let folded = i64::from(q_b) - i64::from(input_zero_point) * sum;
            i32::try_from(folded).map_err(|_| QuantError::Overflow {
                what: format!("channel {channel}: the folded bias {folded}"),
            })
        })
        .collect()
}

/// An int8 scale and zero point: `r = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ActivationParams {
    pub scale: f32,
    pub zero_point: i8,
}

/// The smallest power of two at or above `x` (> 0).
pub fn next_pow2(x: f64) -> f64 {
    let p = 2f64.powi(x.log2().ceil() as i32);
    // log2's rounding can land one power low.
    if p < x {
        2.0 * p
    } else {
        p
    }
}

/// `[lo, hi]` widened (to include 0, then upwards) to a range of exactly 255 steps of a power
/// of two: [`activation_params`] then gives that step as the scale, exactly. The step is the
/// smallest power of two at or above `(hi - lo) / 255`, so the range costs at most one bit of
/// resolution.
pub fn pow2_range(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return (lo, hi);
    }
    let step = next_pow2((hi - lo) / 255.0);
    (lo, lo + 255.0 * step)
}

/// Parameters for the calibrated range `[lo, hi]`: the range is widened to
/// include 0, `s = (hi - lo) / 255` (1.0 if `hi == lo`), stored as f32, and
/// `zp = clamp(round_half_even(-128 - lo / s), -128, 127)`.
pub fn activation_params(lo: f64, hi: f64) -> Result<ActivationParams, QuantError> {
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(QuantError::Range { lo, hi });
    }
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi > lo {
        ((hi - lo) / 255.0) as f32
    } else {
        1.0
    };
    if !(scale.is_finite() && scale > 0.0) {
        return Err(QuantError::Range { lo, hi });
    }
    let zero_point = round_sat8(-128.0 - lo / f64::from(scale));
    Ok(ActivationParams { scale, zero_point })
}

/// Symmetric int16 parameters for the calibrated range `[lo, hi]` (the 16x8 scheme):
/// `s = max(|lo|, |hi|) / 32767` (1.0 if both are 0), stored as f32, zero point 0; with
/// `pow2`, the smallest power of two at or above that.
pub fn activation_params16(lo: f64, hi: f64, pow2: bool) -> Result<ActivationParams, QuantError> {
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(QuantError::Range { lo, hi });
    }
    let largest = lo.abs().max(hi.abs());
    let step = if largest > 0.0 {
        largest / 32767.0
    } else {
        1.0
    };
    let scale = if pow2 { next_pow2(step) } else { step } as f32;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(QuantError::Range { lo, hi });
    }
    Ok(ActivationParams {
        scale,
        zero_point: 0,
    })
}

/// A function tabulated by an activation lookup table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TableFunction {
    Tanh,
    Sigmoid,
    LeakyRelu { alpha: f32 },
}

impl TableFunction {
    pub fn eval(self, z: f64) -> f64 {
        match self {
            TableFunction::Tanh => z.tanh(),
            TableFunction::Sigmoid => 1.0 / (1.0 + (-z).exp()),
            TableFunction::LeakyRelu { alpha } => {
                if z >= 0.0 {
                    z
                } else {
                    f64::from(alpha) * z
                }
            }
        }
    }
}

/// `lut[q + 128] = sat8(round_half_even(f(s_z * (q - zp_z)) / s_out) + zp_out)`, in f64.
pub fn activation_table(
    function: TableFunction,
    pre: ActivationParams,
    out: ActivationParams,
) -> [i8; 256] {
    let mut table = [0i8; 256];
    for (slot, q) in table.iter_mut().zip(-128i32..=127) {
        let z = f64::from(pre.scale) * f64::from(q - i32::from(pre.zero_point));
        let y = function.eval(z);
        *slot = round_sat8(round_half_even(y / f64::from(out.scale)) + f64::from(out.zero_point));
    }
    table
}

/// One feature's (or every feature's) integer input affine map:
/// `q_in = sat8(zp_in + rq(256 * x - offset, multiplier, shift))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct InputAffine {
    pub offset: i32,
    pub multiplier: i32,
    pub shift: u8,
}

/// `offset = round_half_even(256 * mean)`, `multiplier * 2^-shift = inv_std / (256 * s_in)`.
pub fn input_affine(
    mean: f32,
    inv_std: f32,
    input_scale: f32,
    frac_bits: u8,
) -> Result<InputAffine, QuantError> {
    // The device's raw value is `x * 2^frac_bits`: the mean moves with it, the scale shrinks.
    let unit = f64::from(1u32 << frac_bits.min(30));
    let offset = 256.0 * f64::from(mean) * unit;
    if !(offset.is_finite() && offset.abs() <= f64::from(i32::MAX)) {
        return Err(QuantError::Overflow {
            what: format!("the input offset 256 * {mean} * 2^{frac_bits}"),
        });
    }
    let (multiplier, shift) =
        quantize_multiplier(f64::from(inv_std) / (256.0 * unit * f64::from(input_scale)))?;
    Ok(InputAffine {
        offset: round_half_even(offset) as i32,
        multiplier,
        shift,
    })
}

/// The largest magnitude a raw input keeps below the runtime's clamp (`2^23`) with room to
/// spare: real inputs up to twice the training data's largest magnitude pass unclamped.
const RAW_HEADROOM: f64 = (1u32 << 22) as f64;

/// The raw inputs' fraction bits for data like `features` (the training set): 0 when every
/// value is an integer (pixels, counts: the device passes them as they are), otherwise the
/// most bits, up to [`kiln_runtime::MAX_INPUT_FRAC_BITS`], that keep `|x| * 2^bits` within
/// [`RAW_HEADROOM`].
pub fn input_frac_bits(features: &[f32]) -> u8 {
    if features.iter().all(|x| x.fract() == 0.0) {
        return 0;
    }
    let max_abs = features
        .iter()
        .fold(0.0f64, |acc, &x| acc.max(f64::from(x).abs()));
    let mut bits = 0u8;
    while bits < kiln_runtime::MAX_INPUT_FRAC_BITS
        && max_abs * f64::from(1u32 << (bits + 1)) <= RAW_HEADROOM
    {
        bits += 1;
    }
    bits
}

/// The input quantization of real-valued features under a shared normalization `x * k`: the
/// scale `k * 2^-bits` with the most fraction bits (up to the runtime's maximum) whose 255 steps
/// still span the calibrated range `[lo, hi]` (widened to include 0), and its zero point.
/// Then `round(x * 2^bits)` already is the int8 input less its zero point, and the device's
/// input stage is one saturating addition (the runtime's identity map, `M = 2^30, t = 38`),
/// at the cost of at most one bit of input resolution against `(hi - lo) / 255`. `None` when
/// no bits fit (the range spans more than 255 raw units) or the range is not finite.
pub fn pow2_input_params(lo: f64, hi: f64, k: f32) -> Option<(ActivationParams, u8)> {
    if !(lo.is_finite() && hi.is_finite() && k.is_finite() && k > 0.0) {
        return None;
    }
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let fits = |bits: u8| 255.0 * f64::from(k) / f64::from(1u32 << bits) >= hi - lo;
    let bits = (0..=kiln_runtime::MAX_INPUT_FRAC_BITS)
        .rev()
        .find(|&bits| fits(bits))?;
    // A power of two times k: exact in f32 unless it underflows.
    let scale = k / (1u32 << bits) as f32;
    (scale.is_normal() && f64::from(scale) * f64::from(1u32 << bits) == f64::from(k)).then(|| {
        let zero_point = round_sat8(-128.0 - lo / f64::from(scale));
        (ActivationParams { scale, zero_point }, bits)
    })
}

/// The raw integer the device takes for the real input `x`: `round_half_even(x * 2^frac_bits)`,
/// or `None` when it is not finite or outside `i32` (the runtime clamps to `±2^23` itself).
pub fn raw_input(x: f32, frac_bits: u8) -> Option<i32> {
    let scaled = f64::from(x) * f64::from(1u32 << frac_bits.min(30));
    let raw = round_half_even(scaled);
    (raw.is_finite() && raw.abs() <= f64::from(i32::MAX)).then_some(raw as i32)
}

/// The `p`-th percentile of `values` (sorted in place), interpolated linearly
/// between order statistics. `values` must be non-empty; `p` in `[0, 100]`.
pub fn percentile(sorted: &[f32], p: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let position = p / 100.0 * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    f64::from(sorted[below]) + (f64::from(sorted[above]) - f64::from(sorted[below])) * fraction
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_average_whose_scale_is_its_inputs_is_moved_off_the_ties() {
        use super::{average_can_tie, average_params, quantize_multiplier, ActivationParams};
        // A 2x2 average at the input's scale: M / 2^t = 1/4, a tie at every sum 2 mod 4.
        let (m, t) = quantize_multiplier(0.25).unwrap();
        assert!(average_can_tie(m, t, 4));
        // 1/49 is no dyadic fraction: no sum lands on a tie, however many.
        let (m, t) = quantize_multiplier(1.0 / 49.0).unwrap();
        assert!(!average_can_tie(m, t, 49));
        // 3/8 ties at odd multiples of 4 (3 * 4 / 8 = 1.5), which a 2x2 window reaches.
        let (m, t) = quantize_multiplier(3.0 / 8.0).unwrap();
        assert!(average_can_tie(m, t, 4));

        let input = ActivationParams {
            scale: 0.05,
            zero_point: -128,
        };
        // The output range is the input's, [0, 12.75]: the scale grows just enough.
        let (output, (m, t)) = average_params(input, 0.0, 12.75, 4).unwrap();
        assert!(!average_can_tie(m, t, 4));
        assert!(output.scale > 0.05 && output.scale < 0.05 * (1.0 + 64.0 / 4096.0));
        assert_eq!(output.zero_point, -128);
        // Every sum of 2 mod 4, an exact tie before, now keeps a visible distance from it.
        let ratio = super::multiplier_value(m, t);
        for acc in (2..=1020).step_by(4) {
            let v = f64::from(acc) * ratio;
            assert!(
                (v - v.floor() - 0.5).abs() >= f64::from(acc) * 2f64.powi(-15),
                "{acc}"
            );
        }
        // A ratio without ties keeps the calibrated parameters.
        let (output, _) = average_params(input, 0.0, 10.0, 4).unwrap();
        assert_eq!(output, super::activation_params(0.0, 10.0).unwrap());
    }

    use super::*;

    #[test]
    fn input_fraction_bits_and_raw_values() {
        assert_eq!(
            input_frac_bits(&[0.0, 255.0, 16.0]),
            0,
            "integers pass as they are"
        );
        // |x| <= 86.07: 86.07 * 2^15 = 2.8e6 <= 2^22, 86.07 * 2^16 > 2^22.
        assert_eq!(input_frac_bits(&[-86.07, -13.5, -40.25]), 15);
        assert_eq!(input_frac_bits(&[0.5, 1.0]), 22);
        assert_eq!(
            input_frac_bits(&[1e-6, -1e-7]),
            kiln_runtime::MAX_INPUT_FRAC_BITS
        );
        assert_eq!(input_frac_bits(&[1e9, 0.5]), 0);
    }

    #[test]
    fn pow2_input_params_span_the_range() {
        // dB features in [-86.07, -13.5]: 0 joins the range, 86.07 / 255 = 0.338 -> 0.5.
        let (params, bits) = pow2_input_params(-86.07, -13.5, 1.0).unwrap();
        assert_eq!((params.scale, bits), (0.5, 1));
        assert_eq!(params.zero_point, round_sat8(-128.0 + 86.07 / 0.5));
        // The scale keeps k's factor: raw = x * 2^bits, scale = k * 2^-bits.
        let (params, bits) = pow2_input_params(0.0, 1.0, 1.0 / 255.0).unwrap();
        assert_eq!((params.scale, bits), (1.0 / 255.0, 0));
        let (params, bits) = pow2_input_params(-0.01, 0.02, 1.0).unwrap();
        assert_eq!(bits, 13);
        assert!(255.0 * params.scale >= 0.03 && 255.0 * params.scale < 0.06);
        // More than 255 raw units, or nothing finite: the calibrated map instead.
        assert_eq!(pow2_input_params(0.0, 300.0, 1.0), None);
        assert_eq!(pow2_input_params(f64::NAN, 1.0, 1.0), None);
        assert_eq!(pow2_input_params(0.0, 1.0, 0.0), None);
        assert_eq!(raw_input(-68.28, 15), Some(-2_237_399));
        assert_eq!(raw_input(1.5, 0), Some(2), "ties to even");
        assert_eq!(raw_input(2.5, 0), Some(2));
        assert_eq!(raw_input(0.25, 1), Some(0));
        assert_eq!(raw_input(f32::NAN, 4), None);
        assert_eq!(raw_input(3e9, 0), None);
        // The device's value, divided back, is within half a step of x.
        for x in [-86.07f32, -0.013, 3.3, 42.0] {
            let raw = raw_input(x, 15).unwrap();
            assert!((f64::from(raw) / 32768.0 - f64::from(x)).abs() <= 0.5 / 32768.0);
        }
    }

    #[test]
    fn frexp_matches_the_definition() {
        for x in [1.0, 0.5, 0.75, 3.0, 1e-300, 5e-324, 1e300, 0.1] {
            let (m, k) = frexp(x);
            assert!((0.5..1.0).contains(&m), "{x}: {m}");
            // Scaled by 2^100 so that 2^k stays representable for subnormal x.
            assert_eq!(m * 2f64.powi(k as i32 + 100), x * 2f64.powi(100), "{x}");
        }
    }
}
