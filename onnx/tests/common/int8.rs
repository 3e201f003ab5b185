//! The integer arithmetic of `docs/quantization.md` and
//! `docs/layer-graph.md`, written independently of the exported graphs:
//! exact requantization, saturation, activation tables, and a tally of the
//! rare cases a test's data must reach.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use kiln_onnx::mlp::Activation;
use kiln_onnx::qdq::QuantParams;

/// What the integer computation went through, so a test can prove that its
/// data exercised ties, saturation and clamps.
#[derive(Debug, Default, Clone, Copy)]
pub struct Coverage {
    /// Requantizations that fell exactly halfway between two integers.
    pub ties: usize,
    /// Values clamped by `sat8`.
    pub saturated: usize,
    /// ReLU outputs raised to the zero point.
    pub relu_clamped: usize,
    /// Table lookups below the pre-activation zero point (negative inputs).
    pub negative_table_inputs: usize,
}

pub fn sat8(v: i64, coverage: &mut Coverage) -> i8 {
    let clamped = v.clamp(-128, 127);
    if clamped != v {
        coverage.saturated += 1;
    }
    clamped as i8
}

/// `e = M * 2^-t` with `M` in `[2^30, 2^31)`.
pub fn multiplier(e: f64) -> (i64, u32) {
    assert!(e.is_finite() && e > 0.0, "effective scale {e}");
    let (lo, hi) = ((1u64 << 30) as f64, (1u64 << 31) as f64);
    let (mut m, mut t) = (e, 0i32);
    while m < lo {
        m *= 2.0;
        t += 1;
    }
    while m >= hi {
        m /= 2.0;
        t -= 1;
    }
    let mut m = m.round_ties_even() as i64;
    if m == 1 << 31 {
        m = 1 << 30;
        t -= 1;
    }
    assert!((1..=62).contains(&t), "effective scale {e} needs shift {t}");
    (m, t as u32)
}

/// `rq(x, M, t) = round_half_even(x * M / 2^t)`, exact.
pub fn rq(x: i64, m: i64, t: u32, coverage: &mut Coverage) -> i64 {
    let p = i128::from(x) * i128::from(m);
    let floor = p >> t;
    let rest = p - (floor << t);
    let half = 1i128 << (t - 1);
    if rest == half {
        coverage.ties += 1;
    }
    let rounded = if rest > half || (rest == half && floor & 1 == 1) {
        floor + 1
    } else {
        floor
    };
    i64::try_from(rounded).unwrap()
}

/// The scale products of the spec, "written at export time" from the f32
/// parameters, computed in f64.
pub fn effective(s_in: f32, s_w: f32, s_out: f32) -> (i64, u32) {
    multiplier(f64::from(s_in) * f64::from(s_w) / f64::from(s_out))
}

pub fn activation_f64(function: Activation, v: f64) -> f64 {
    match function {
        Activation::Tanh => v.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Activation::LeakyRelu { alpha } => {
            if v < 0.0 {
                f64::from(alpha) * v
            } else {
                v
            }
        }
        other => panic!("{other:?} is not a table function"),
    }
}

/// `lut[q + 128] = sat8(round_half_even(f(s_z * (q - zp_z)) / s_out) + zp_out)`.
pub fn table(function: Activation, pre: QuantParams, out: QuantParams) -> Vec<i8> {
    let mut ignored = Coverage::default();
    (-128i64..=127)
        .map(|q| {
            let v = f64::from(pre.scale) * (q - i64::from(pre.zero_point)) as f64;
            let y = (activation_f64(function, v) / f64::from(out.scale)).round_ties_even();
            sat8(y as i64 + i64::from(out.zero_point), &mut ignored)
        })
        .collect()
}
