//! The quantizer's arithmetic on small inputs with exact expected values
//! (`docs/quantization.md`).

use kiln_trainer::quant::math::{
    activation_params, activation_table, fold_bias, input_affine, multiplier_value, percentile,
    quantize_bias, quantize_multiplier, quantize_weights, round_half_even, weight_scale_floor,
    ActivationParams, TableFunction,
};

/// `M * 2^-t` is within `2^-31` (relative) of `e`, with `M` and `t` in range.
fn assert_round_trip(e: f64) -> (i32, u8) {
    let (m, t) = quantize_multiplier(e).unwrap_or_else(|err| panic!("{e:e}: {err}"));
    assert!((1 << 30..=i32::MAX).contains(&m), "{e:e}: M = {m}");
    assert!((1..=62).contains(&t), "{e:e}: t = {t}");
    let back = multiplier_value(m, t);
    assert!(
        ((back - e) / e).abs() <= 2f64.powi(-31),
        "{e:e}: {m} * 2^-{t} = {back:e}"
    );
    (m, t)
}

#[test]
fn multipliers_round_trip() {
    assert_eq!(assert_round_trip(0.5), (1 << 30, 31));
    assert_eq!(assert_round_trip(1.0), (1 << 30, 30));
    assert_eq!(assert_round_trip(0.75), (1_610_612_736, 31));
    assert_eq!(assert_round_trip(255.0 / 4096.0), (2_139_095_040, 35));
    // The extremes of the shift range: e = 2^-32 needs t = 62; e just below 2^30 needs t = 1.
    assert_eq!(assert_round_trip(2f64.powi(-32)), (1 << 30, 62));
    assert_eq!(assert_round_trip(2f64.powi(30) * 0.75).1, 1);
    // A wide sweep of scales, including awkward mantissas.
    let mut e = 3.1e-9;
    while e < 1e8 {
        assert_round_trip(e);
        assert_round_trip(e * std::f64::consts::PI);
        e *= 1.37;
    }
}

#[test]
fn a_multiplier_that_rounds_up_to_2_pow_31_is_renormalized() {
    // m = 1 - 2^-40 rounds to 2^31: it becomes 2^30 with one shift less.
    let e = 1.0 - 2f64.powi(-40);
    assert_eq!(quantize_multiplier(e).unwrap(), (1 << 30, 30));
    let e = 0.5 * (1.0 - 2f64.powi(-35));
    assert_eq!(quantize_multiplier(e).unwrap(), (1 << 30, 31));
    assert_round_trip(e);
}

#[test]
fn multipliers_outside_the_shift_range_are_errors() {
    for e in [
        0.0,
        -0.5,
        f64::NAN,
        f64::INFINITY,
        2f64.powi(30),
        1e12,
        2f64.powi(-33),
        1e-300,
    ] {
        let err = quantize_multiplier(e).expect_err(&format!("{e:e} should fail"));
        assert!(err.to_string().contains("multiplier"), "{e:e}: {err}");
    }
}

#[test]
fn round_half_even_is_the_one_rounding() {
    assert_eq!(
        [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001].map(round_half_even),
        [0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 2.0, 3.0]
    );
}

#[test]
fn weights_are_symmetric_per_channel_with_ties_to_even() {
    // Row 0: max |w| = 15.875 = 127 * 0.125, so s_w = 0.125 exactly and
    // -0.1875 = -1.5 steps -> -2, 0.0625 = 0.5 -> 0, 0.3125 = 2.5 -> 2.
    // Row 1: all zeros -> scale 1. Row 2: a tiny row gets its own scale.
    let w = [
        15.875,
        -0.1875,
        0.0625,
        0.3125,
        -15.875,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        2.0f32.powi(-20),
    ];
    let q = quantize_weights(&w, 3, 5, 0.0, false);
    assert_eq!(q.scales[..2], [0.125, 1.0]);
    assert_eq!(q.scales[2], (2f64.powi(-20) / 127.0) as f32);
    assert_eq!(
        q.values,
        [127, -2, 0, 2, -127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 127]
    );
    assert!(!q.values.contains(&-128));
    assert_eq!(q.floored, 0);
}

#[test]
fn vanishing_weight_rows_get_the_floor_scale() {
    // s_in = 0.5, s_target = 2: the floor is 2^-16 * 4 = 2^-14.
    let floor = weight_scale_floor(0.5, 2.0);
    assert_eq!(floor, 2f64.powi(-14));
    // Row 0 is ordinary (127 * 0.125); row 1 has all but vanished (1e-38, like a dead unit
    // after weight decay); row 2 sits just above the floor in steps: 3 * 2^-14 = 3 steps.
    let w = [
        15.875,
        1.0,
        1e-38,
        -1e-38,
        3.0 * 2f32.powi(-14),
        -2f32.powi(-15),
    ];
    let q = quantize_weights(&w, 3, 2, floor, false);
    assert_eq!(q.scales, [0.125, 2f32.powi(-14), 2f32.powi(-14)]);
    assert_eq!(q.values, [127, 8, 0, 0, 3, 0]);
    assert_eq!(q.floored, 2);
    // Every floored row now has a representable multiplier and bias.
    for &s_w in &q.scales {
        quantize_multiplier(0.5 * f64::from(s_w) / 2.0).unwrap();
    }
    assert_eq!(quantize_bias(&[-20.0], 0.5, &q.scales[1..2]), [-655_360]);
}

#[test]
fn biases_round_half_even_and_saturate() {
    // s_b = s_in * s_w = [0.125, 0.0625, 0.125, 0.125].
    let q = quantize_bias(
        &[0.3125, -0.09375, 1e10, -1e10],
        0.5,
        &[0.25, 0.125, 0.25, 0.25],
    );
    assert_eq!(q, [2, -2, i32::MAX, i32::MIN]);
    // The zero point folds in as q_b - zp_in * sum(q_w).
    assert_eq!(
        fold_bias(&[10, -5], &[1, 2, 3, -1, 0, 0], 3, -128).unwrap(),
        [778, -133]
    );
    assert_eq!(fold_bias(&[10], &[1, 2, 3], 3, 0).unwrap(), [10]);
    assert!(
        fold_bias(&[i32::MAX - 10], &[127, 127], 2, -128).is_err(),
        "an overflowing fold is an error"
    );
}

#[test]
fn activation_params_include_zero_and_round_the_zero_point_half_even() {
    let p = |lo, hi| activation_params(lo, hi).unwrap();
    // s = 63.75 / 255 = 0.25; zp = -128 + 64.
    assert_eq!(
        p(-16.0, 47.75),
        ActivationParams {
            scale: 0.25,
            zero_point: -64
        }
    );
    // zp = round(-128 + 63.5) = round(-64.5) = -64 (to even).
    assert_eq!(
        p(-15.875, 47.875),
        ActivationParams {
            scale: 0.25,
            zero_point: -64
        }
    );
    // zp = round(-128 + 62.5) = round(-65.5) = -66 (to even).
    assert_eq!(
        p(-15.625, 48.125),
        ActivationParams {
            scale: 0.25,
            zero_point: -66
        }
    );
    // Post-relu ranges start at 0: zp = -128.
    assert_eq!(p(0.0, 2.55).zero_point, -128);
    // Widened to include 0.
    assert_eq!(
        p(1.0, 2.0),
        ActivationParams {
            scale: (2.0f64 / 255.0) as f32,
            zero_point: -128
        }
    );
    assert_eq!(p(-3.0, -1.0).zero_point, 127);
    // A constant zero tensor.
    assert_eq!(
        p(0.0, 0.0),
        ActivationParams {
            scale: 1.0,
            zero_point: -128
        }
    );
    assert!(activation_params(f64::NAN, 1.0).is_err());
    assert!(activation_params(2.0, 1.0).is_err());
}

#[test]
fn input_affine_folds_the_normalization() {
    let a = input_affine(0.0, 1.0 / 16.0, 1.0 / 255.0, 0).unwrap();
    assert_eq!(a.offset, 0);
    let e = (1.0f64 / 16.0) / (256.0 * f64::from(1.0f32 / 255.0));
    assert!((multiplier_value(a.multiplier, a.shift) / e - 1.0).abs() <= 2f64.powi(-31));
    // mu = round_half_even(256 * mean).
    assert_eq!(input_affine(3.3, 1.0, 0.1, 0).unwrap().offset, 845);
    assert_eq!(input_affine(0.5 / 256.0, 1.0, 0.1, 0).unwrap().offset, 0);
    assert_eq!(input_affine(1.5 / 256.0, 1.0, 0.1, 0).unwrap().offset, 2);
    assert_eq!(input_affine(-1.5 / 256.0, 1.0, 0.1, 0).unwrap().offset, -2);
    // Every digits pixel (0..=16, scale 1/16, s_in = 1/255): the integer map
    // gives the nearest int8 step of the normalized value.
    for x in 0..=16i64 {
        let q = kiln_runtime::fixed::sat8(
            -128 + kiln_runtime::fixed::rq(256 * x, a.multiplier, a.shift),
        );
        let ideal = x as f64 / 16.0 / f64::from(1.0f32 / 255.0);
        assert!(
            (f64::from(q) + 128.0 - ideal).abs() <= 0.5 + 1e-6,
            "x = {x}: q = {q}, ideal {ideal}"
        );
    }
}

#[test]
fn tables_are_monotonic_and_exact() {
    let pre = ActivationParams {
        scale: 0.0625,
        zero_point: 0,
    };
    let tanh = activation_table(
        TableFunction::Tanh,
        pre,
        ActivationParams {
            scale: 1.0 / 128.0,
            zero_point: 0,
        },
    );
    let sigmoid = activation_table(
        TableFunction::Sigmoid,
        pre,
        ActivationParams {
            scale: 1.0 / 256.0,
            zero_point: -128,
        },
    );
    for table in [&tanh, &sigmoid] {
        assert!(table.windows(2).all(|w| w[0] <= w[1]), "{table:?}");
    }
    let at = |table: &[i8; 256], q: i32| table[(q + 128) as usize];
    // tanh(0) = 0; tanh(1) * 128 = 97.48 -> 97; saturates at both ends.
    assert_eq!(
        [
            at(&tanh, 0),
            at(&tanh, 16),
            at(&tanh, -16),
            at(&tanh, 127),
            at(&tanh, -128)
        ],
        [0, 97, -97, 127, -128]
    );
    // sigmoid(0) * 256 - 128 = 0; sigmoid(1) * 256 = 187.15 -> 187 - 128 = 59; sigmoid(-8) * 256 = 0.086 -> -128.
    assert_eq!(
        [at(&sigmoid, 0), at(&sigmoid, 16), at(&sigmoid, -128)],
        [0, 59, -128]
    );
    // Leaky relu, alpha 1/8, pre and out scale 0.5: q = -8 -> -4 * 0.125 = -0.5 -> -1;
    // q = -4 -> -0.25 -> -0.5 steps -> 0 (to even); q = -12 -> -0.75 -> -1.5 -> -2.
    let half = ActivationParams {
        scale: 0.5,
        zero_point: 0,
    };
    let leaky = activation_table(TableFunction::LeakyRelu { alpha: 0.125 }, half, half);
    assert_eq!(
        [
            at(&leaky, -8),
            at(&leaky, -4),
            at(&leaky, -12),
            at(&leaky, 10),
            at(&leaky, 127)
        ],
        [-1, 0, -2, 10, 127]
    );
    // Zero points shift the index and the value.
    let shifted = activation_table(
        TableFunction::Tanh,
        ActivationParams {
            scale: 0.0625,
            zero_point: 10,
        },
        ActivationParams {
            scale: 1.0 / 128.0,
            zero_point: -5,
        },
    );
    assert_eq!(at(&shifted, 10), -5);
    assert_eq!(at(&shifted, 26), 92);
}

#[test]
fn percentiles_interpolate_between_order_statistics() {
    let values: Vec<f32> = (1..=100).map(|v| v as f32).collect();
    assert_eq!(percentile(&values, 100.0), 100.0);
    assert_eq!(percentile(&values, 0.0), 1.0);
    assert_eq!(percentile(&values, 50.0), 50.5);
    assert!((percentile(&values, 99.0) - 99.01).abs() < 1e-9);
}

/// `--pow2-scales`: a range widened to 255 steps of a power of two gives exactly that step as
/// its scale, still covers the calibrated range, and costs at most one bit; weight rows get
/// power-of-two scales with every value within 127 steps.
#[test]
fn pow2_scales_are_exact_powers_of_two_that_cover_the_range() {
    use kiln_trainer::quant::math::{activation_params, next_pow2, pow2_range};
    for x in [1e-9, 0.003, 1.0 / 255.0, 0.5, 1.0, 1.5, 3.0, 1000.0] {
        let p = next_pow2(x);
        assert!(p >= x && p / 2.0 < x, "{x}: {p}");
        assert_eq!(p.log2().fract(), 0.0, "{x}: {p}");
    }
    for (lo, hi) in [
        (0.0, 1.0),
        (-3.2, 7.9),
        (-0.01, 0.0),
        (2.0, 9.0),
        (-100.0, -1.0),
    ] {
        let (wlo, whi) = pow2_range(lo, hi);
        let params = activation_params(wlo, whi).unwrap();
        let scale = f64::from(params.scale);
        assert_eq!(scale.log2().fract(), 0.0, "[{lo}, {hi}]: scale {scale}");
        let plain = f64::from(activation_params(lo, hi).unwrap().scale);
        assert!(
            scale >= plain && scale < 2.0 * plain,
            "[{lo}, {hi}]: {scale} vs {plain}"
        );
        // Both ends (and 0) land inside the int8 range without saturating.
        let zp = f64::from(params.zero_point);
        for v in [lo.min(0.0), hi.max(0.0), 0.0] {
            let q = (v / scale).round() + zp;
            assert!((-128.0..=127.0).contains(&q), "[{lo}, {hi}]: {v} -> {q}");
        }
    }
    let w = [0.3f32, -0.7, 0.01, 0.0, 0.0, 0.0, 5.0, -4.99, 1.0];
    let q = quantize_weights(&w, 3, 3, 0.0, true);
    assert_eq!(q.scales[1], 1.0, "an all-zero row keeps scale 1");
    for (row, &scale) in q.scales.iter().enumerate() {
        assert_eq!(f64::from(scale).log2().fract(), 0.0, "row {row}: {scale}");
    }
    // 0.7 / 127 rounds up to 2^-7; 5.0 / 127 to 2^-4.
    assert_eq!(q.scales[0], 2f32.powi(-7));
    assert_eq!(q.scales[2], 2f32.powi(-4));
    assert_eq!(&q.values[6..], &[80, -80, 16]);
}
