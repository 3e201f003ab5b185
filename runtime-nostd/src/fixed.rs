//! The fixed-point arithmetic of `docs/quantization.md`, defined once for the host and the device.
//!
//! - [`rq`]`(x, M, t) = round_half_even(x * M / 2^t)`, exact.
//! - [`sat8`] clamps to `[-128, 127]`.
//! - The ranges a model loader accepts: multiplier `M` in `[2^30, 2^31)`
//!   ([`MULTIPLIER_MIN`]..=[`MULTIPLIER_MAX`]), shift `t` in `[1, 62]` ([`SHIFT_MIN`]..=[`SHIFT_MAX`]),
//!   raw inputs clamped to `[-2^23, 2^23 - 1]` ([`RAW_MIN`]..=[`RAW_MAX`]).
//!
//! # Why i64 is enough on the inference path
//!
//! `rq` is called with two kinds of `x`:
//! - a layer accumulator, an `i32` (the loader proves it cannot overflow), so `|x| <= 2^31`;
//! - the input stage's `256 * raw - mu` with `raw` clamped to `[-2^23, 2^23 - 1]` and `mu` an
//!   `i32`, so `-2^32 < x < 2^32`.
//!
//! With `|M| < 2^31` the product satisfies `|x * M| < 2^63`: it fits in `i64`, and the
//! rounding shift of an `i64` is exact. `rq` still accepts every `i64` and every shift, so it
//! is total: when the product would overflow `i64` (or the shift is outside `[0, 62]`) it
//! takes an exact `i128` path, and a result beyond `i64` (possible only for `t = 0` or
//! unvalidated huge `x`) saturates. Neither can happen for a validated model.

/// Smallest accepted requantization multiplier (`2^30`): `M` is a Q0.31 number in `[0.5, 1)`.
pub const MULTIPLIER_MIN: i32 = 1 << 30;
/// Largest accepted requantization multiplier (`2^31 - 1`).
pub const MULTIPLIER_MAX: i32 = i32::MAX;
/// Smallest accepted right shift.
pub const SHIFT_MIN: u8 = 1;
/// Largest accepted right shift.
pub const SHIFT_MAX: u8 = 62;
/// Raw inputs are clamped to `[RAW_MIN, RAW_MAX]` = `[-2^23, 2^23 - 1]` before the input stage.
pub const RAW_MIN: i32 = -(1 << 23);
/// See [`RAW_MIN`].
pub const RAW_MAX: i32 = (1 << 23) - 1;

/// Whether `multiplier` is in `[2^30, 2^31)`.
pub const fn multiplier_is_valid(multiplier: i32) -> bool {
    multiplier >= MULTIPLIER_MIN
}

/// Whether `shift` is in `[1, 62]`.
pub const fn shift_is_valid(shift: u8) -> bool {
    shift >= SHIFT_MIN && shift <= SHIFT_MAX
}

/// `round_half_even(x * multiplier / 2^shift)`, computed exactly.
///
/// This is the only rounding function in Kiln. It is total (no panic, no overflow) for every
/// argument; see the module documentation for why the `i64` path is the one taken by every
/// validated model, and for the saturation that only unvalidated arguments can reach.
#[inline]
pub const fn rq(x: i64, multiplier: i32, shift: u8) -> i64 {
    // The path every validated model takes: `x` fits i32 (a layer accumulator, or the input
    // stage for raw values below 2^23 / 256) and the shift is in range. Then the product of two
    // i32 fits i64, one 32x32->64 multiply on a 32-bit core, and the rounding is branch-free.
    if x >= i32::MIN as i64 && x <= i32::MAX as i64 && shift >= SHIFT_MIN && shift <= SHIFT_MAX {
        // |x * M| <= 2^62: no overflow.
        #[allow(clippy::arithmetic_side_effects)]
        let product = (x as i32 as i64) * (multiplier as i64);
        return round_shift_i64_fast(product, shift);
    }
    rq_wide(x, multiplier, shift)
}

/// `round_half_even(p / 2^t)` for `|p| <= 2^62` and `1 <= t <= 62`, as
/// `floor((p + 2^(t-1) - 1 + q0 % 2) / 2^t)` with `q0 = floor(p / 2^t)`: below half it stays
/// `q0`, above half it becomes `q0 + 1`, and at exactly half it adds 1 only to an odd `q0`.
/// Equal to `round_shift_i64`.
// |p| + 2^61 < 2^63, every shift amount is in 0..=61, and q0 + 1 cannot overflow: no side effects.
#[allow(clippy::arithmetic_side_effects)]
#[inline(always)]
const fn round_shift_i64_fast(p: i64, t: u8) -> i64 {
    if t >= 32 {
        // The usual layer shift: work on the 32-bit halves, as a 32-bit core does.
        let hi = (p >> 32) as i32;
        return round_shift_halves(hi, p as u32, t as u32 - 32) as i64;
    }
    round_shift_carry(p, t)
}

/// `floor((p + 2^(t-1) - 1 + q0 % 2) / 2^t)` on the whole `i64`, for `|p| <= 2^62` and
/// `1 <= t <= 62`: the formula of `round_shift_i64_fast` without its two-halves branch.
// |p| + 2^61 < 2^63 and every shift amount is in 0..=61: no side effects.
#[allow(clippy::arithmetic_side_effects)]
#[inline(always)]
const fn round_shift_carry(p: i64, t: u8) -> i64 {
    let t = t as u32;
    let odd = (p >> t) & 1;
    (p + (1i64 << (t - 1)) - 1 + odd) >> t
}

/// `round_half_even((hi * 2^32 + lo) / 2^(32 + s))` for `|hi| <= 2^30` and `s <= 30`: the same
/// `floor((p + 2^(t-1) - 1 + q0 % 2) / 2^t)` with the constant added to the two halves with a
/// carry, then one arithmetic shift of the high half. With `q0` odd the constant is
/// `2^(t-1)`, else `2^(t-1) - 1`; for `s >= 1` that is `{hi: 2^(s-1) - 1 + odd, lo: odd - 1}`,
/// for `s = 0` `{hi: 0, lo: 2^31 - 1 + odd}`. The result has `|q| <= 2^30`.
// |hi| + 2^29 + 1 < 2^31 and every shift amount is in 0..=30: no side effects.
#[allow(clippy::arithmetic_side_effects)]
#[inline(always)]
const fn round_shift_halves(hi: i32, lo: u32, s: u32) -> i32 {
    let odd = (hi >> s) & 1;
    let (add_hi, add_lo) = if s == 0 {
        (0, (1u32 << 31) - 1 + odd as u32)
    } else {
        ((1i32 << (s - 1)) - 1 + odd, (odd as u32).wrapping_sub(1))
    };
    let (_, carry) = lo.overflowing_add(add_lo);
    (hi + add_hi + carry as i32) >> s
}

/// [`rq`] of a layer accumulator, saturated to `i32`: the optimized kernels' output stage.
///
/// For the usual shift (`t >= 32`) this is the two-halves rounding of `rq` in its shortest form
/// ([`round_shift_high`]) with no 64-bit result at all (`|rq| <= 2^30` there); a smaller shift
/// takes `rq`'s other fast path. Shifts a validated model never has are still exact, without
/// `rq`'s wide path: with `|acc * M| <= 2^62`, `t = 0` is the product itself and `t >= 63`
/// rounds to 0 (at most one half, and half rounds to even). So a kernel that uses it stays bit-exact with the reference for every argument.
// |acc * M| <= 2^62 fits i64: no side effects.
#[allow(clippy::arithmetic_side_effects)]
#[inline(always)]
pub fn rq_acc(acc: i32, multiplier: i32, shift: u8) -> i32 {
    if (32..=SHIFT_MAX).contains(&shift) {
        let product = i64::from(acc) * i64::from(multiplier);
        round_shift_high(
            (product >> 32) as i32,
            product as u32,
            u32::from(shift) - 32,
        )
    } else {
        rq_acc_small_shift(acc, multiplier, shift)
    }
}

/// [`round_shift_halves`] in fewer operations, for `s <= 30`: its constant added with a carry is
/// `2^(s-1) - 1 + odd` on the high half plus the carry of `odd - 1` on the low half for
/// `s >= 1`, which together add `2^(s-1) - 1 + (odd | lo != 0)`; for `s = 0` the low half's
/// `2^31 - 1 + odd` carries exactly when `lo >= 2^31 + 1 - odd`, that is `lo > 2^31` or
/// `lo = 2^31` with `odd`. The result is the same.
// |hi| + 2^29 + 1 < 2^31 and every shift amount is in 0..=30: no side effects.
#[allow(clippy::arithmetic_side_effects)]
#[inline(always)]
const fn round_shift_high(hi: i32, lo: u32, s: u32) -> i32 {
    let odd = (hi >> s) & 1;
    if s == 0 {
        let up = (lo > 1 << 31) | ((lo == 1 << 31) & (odd == 1));
        return hi + up as i32;
    }
    round_shift_high_pos(hi, lo, s)
}

/// [`round_shift_high`] for `1 <= s <= 30` (what it computes there). Other shifts give some
/// value, never a panic: the shifts wrap.
#[inline(always)]
const fn round_shift_high_pos(hi: i32, lo: u32, s: u32) -> i32 {
    let odd = hi.wrapping_shr(s) & 1;
    let up = odd | (lo != 0) as i32;
    let half = 1i32.wrapping_shl(s.wrapping_sub(1)).wrapping_sub(1);
    hi.wrapping_add(half).wrapping_add(up).wrapping_shr(s)
}

/// [`rq_acc`] for a shift the caller has checked to be in `33..=62` ([`rq_acc_is_high`], once
/// per layer rather than once per output): the same value, without the test of the shift. Any
/// other shift gives some value, never a panic.
#[inline(always)]
pub fn rq_acc_high(acc: i32, multiplier: i32, shift: u8) -> i32 {
    let product = i64::from(acc).wrapping_mul(i64::from(multiplier));
    round_shift_high_pos(
        (product >> 32) as i32,
        product as u32,
        u32::from(shift).wrapping_sub(32),
    )
}

/// Whether [`rq_acc_high`] equals [`rq_acc`] for this shift.
#[inline(always)]
pub const fn rq_acc_is_high(shift: u8) -> bool {
    shift >= 33 && shift <= SHIFT_MAX
}

/// `sat8(zp + rq_acc(acc, M, t))` for a shift in `33..=62`, in the operations of the Armv7E-M
/// block kernel (`dsp_asm.rs`), which this function specifies for the portable twin. With
/// `s = t - 32`, `hi:lo` the product and `up = odd | (lo != 0)` as in [`round_shift_high`],
/// `floor((hi + 2^(s-1) - 1 + up) / 2^s) = floor((floor((hi + up - 1) / 2^(s-1)) + 1) / 2)`,
/// so the rounding constant and the zero point join in one addition of `round_zp = 2 zp + 1`
/// before a final halving that the saturation (`SSAT #8, .., ASR #1`) performs.
/// `hi + up - 1` is `hi` whenever `lo != 0`, so the assembly computes `up` only for a zero low
/// half, out of line (one `CBZ` on the common path).
/// `|hi| <= 2^30`, so no step wraps. Other shifts give some value, never a panic.
#[inline(always)]
pub fn rq_high_zp(acc: i32, multiplier: i32, shift: u8, round_zp: i32) -> i8 {
    let product = i64::from(acc).wrapping_mul(i64::from(multiplier));
    let (hi, lo) = ((product >> 32) as i32, product as u32);
    let s1 = u32::from(shift).wrapping_sub(33);
    let odd = (hi.wrapping_shr(s1) >> 1) & 1;
    let up = if lo != 0 { 1 } else { odd };
    let halves = hi.wrapping_add(up).wrapping_sub(1).wrapping_shr(s1);
    (halves.wrapping_add(round_zp) >> 1).clamp(-128, 127) as i8
}

/// The `round_zp` argument of [`rq_high_zp`] for output zero point `zp`.
#[inline(always)]
pub const fn round_zp(zp: i8) -> i32 {
    (zp as i32).wrapping_mul(2).wrapping_add(1)
}

/// [`rq_acc`] for shifts below 32 (rare: a scale of at least 1/2) and the shifts a validated
/// model never has; out of line so that every inlined output stage stays small.
// |acc * M| <= 2^62 fits i64: no side effects.
#[allow(clippy::arithmetic_side_effects)]
#[inline(never)]
#[cold]
fn rq_acc_small_shift(acc: i32, multiplier: i32, shift: u8) -> i32 {
    let product = i64::from(acc) * i64::from(multiplier);
    let wide = match shift {
        // The caller already took the two-halves branch for t >= 32.
        SHIFT_MIN..=SHIFT_MAX => round_shift_carry(product, shift),
        0 => product,
        _ => 0,
    };
    if wide > i32::MAX as i64 {
        i32::MAX
    } else if wide < i32::MIN as i64 {
        i32::MIN
    } else {
        wide as i32
    }
}

/// `rq` for the arguments a validated model never passes: wide `x` or a shift outside `[1, 62]`.
#[inline(never)]
const fn rq_wide(x: i64, multiplier: i32, shift: u8) -> i64 {
    if shift <= SHIFT_MAX {
        if let Some(product) = x.checked_mul(multiplier as i64) {
            return round_shift_i64(product, shift);
        }
    }
    // |x| <= 2^63 and |multiplier| <= 2^31: |product| <= 2^94, far inside i128.
    round_shift_i128((x as i128).wrapping_mul(multiplier as i128), shift)
}

/// [`rq`] for the input stage: `x = 256 * clamp(raw) - mu`, so `|x| < 2^32` and `|x * M| < 2^63`
/// fits `i64` for every `i32` multiplier; with a shift in `[1, 62]` (a validated model) the result
/// is `rq`'s, with no 128-bit fallback linked. Other shifts give some value, never a panic.
#[inline(always)]
pub const fn rq_input(x: i64, multiplier: i32, shift: u8) -> i64 {
    // Outside the documented range the product wraps: some value, no panic.
    let product = x.wrapping_mul(multiplier as i64);
    if shift >= SHIFT_MIN && shift <= SHIFT_MAX {
        round_shift_i64(product, shift)
    } else {
        product
    }
}

/// `round_half_even(p / 2^t)` for `t <= 62`.
// Every shift amount is in range and `q + 1` cannot overflow (|q| <= 2^62): no side effects.
#[allow(clippy::arithmetic_side_effects)]
const fn round_shift_i64(p: i64, t: u8) -> i64 {
    if t == 0 {
        return p;
    }
    let t = t as u32; // 1..=62: every shift below is in range
    let q = p >> t; // floor(p / 2^t)
    let r = p & ((1i64 << t) - 1); // p - q * 2^t, in [0, 2^t)
    let half = 1i64 << (t - 1);
    if r > half || (r == half && q & 1 != 0) {
        // |q| <= 2^62 since t >= 1: no overflow
        q + 1
    } else {
        q
    }
}

/// `round_half_even(p / 2^t)` saturated to `i64`, for `|p| <= 2^94` and any `t`.
// Shift amounts are in 1..=126 and |q| <= 2^94: no side effects.
#[allow(clippy::arithmetic_side_effects)]
const fn round_shift_i128(p: i128, t: u8) -> i64 {
    let rounded: i128 = if t == 0 {
        p
    } else if t >= 127 {
        // |p / 2^t| <= 2^-33: rounds to 0
        0
    } else {
        let t = t as u32; // 1..=126
        let q = p >> t;
        let r = p & ((1i128 << t) - 1);
        let half = 1i128 << (t - 1);
        if r > half || (r == half && q & 1 != 0) {
            q + 1
        } else {
            q
        }
    };
    if rounded > i64::MAX as i128 {
        i64::MAX
    } else if rounded < i64::MIN as i128 {
        i64::MIN
    } else {
        rounded as i64
    }
}

/// Clamps `v` to `[-128, 127]`.
#[inline(always)]
pub const fn sat8(v: i64) -> i8 {
    if v < i8::MIN as i64 {
        i8::MIN
    } else if v > i8::MAX as i64 {
        i8::MAX
    } else {
        v as i8
    }
}

/// Clamps `v` to `[-32768, 32767]`: the int16 activations' saturation.
#[inline(always)]
pub const fn sat16(v: i64) -> i16 {
    if v < i16::MIN as i64 {
        i16::MIN
    } else if v > i16::MAX as i64 {
        i16::MAX
    } else {
        v as i16
    }
}

/// Clamps a raw input to `[RAW_MIN, RAW_MAX]`.
#[inline(always)]
pub const fn clamp_raw(raw: i32) -> i32 {
    if raw < RAW_MIN {
        RAW_MIN
    } else if raw > RAW_MAX {
        RAW_MAX
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rhe_div, rq_ref, sat8_ref, Rng};

    /// The reference: exact rational `x * M / 2^t`, rounded half to even by Euclidean division,
    /// saturated to i64 like `rq`.
    fn reference(x: i64, m: i32, t: u8) -> i64 {
        let num = i128::from(x) * i128::from(m);
        let exact = if t >= 127 {
            // 2^t does not fit i128; |num| < 2^95 so the value is 0 after rounding
            0
        } else {
            rhe_div(num, 1i128 << t)
        };
        exact.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    fn check(x: i64, m: i32, t: u8) {
        let exact = reference(x, m, t);
        assert_eq!(rq(x, m, t), exact, "rq({x}, {m}, {t})");
        // The kernels' 32-bit output stage: the same value, saturated to i32.
        if let Ok(acc) = i32::try_from(x) {
            let saturated = exact.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            assert_eq!(rq_acc(acc, m, t), saturated, "rq_acc({acc}, {m}, {t})");
        }
    }

    const SPECIAL_X: [i64; 22] = [
        0,
        1,
        -1,
        2,
        -2,
        3,
        -3,
        127,
        -128,
        i32::MAX as i64,
        i32::MIN as i64,
        (1 << 32) - 256,
        -(1 << 32) + 1,
        1 << 32,
        -(1 << 32),
        i64::MAX,
        i64::MIN,
        i64::MAX - 1,
        i64::MIN + 1,
        1 << 62,
        -(1 << 62),
        (1 << 40) + 12345,
    ];
    const SPECIAL_M: [i32; 9] = [
        MULTIPLIER_MIN,
        MULTIPLIER_MIN + 1,
        MULTIPLIER_MAX,
        MULTIPLIER_MAX - 1,
        1_518_500_250, // ~ 2^30.5
        1,
        0,
        -1,
        i32::MIN,
    ];

    #[test]
    fn special_values_all_shifts() {
        for &x in &SPECIAL_X {
            for &m in &SPECIAL_M {
                for t in 0..=255u8 {
                    check(x, m, t);
                }
            }
        }
    }

    #[test]
    fn small_x_every_shift_sweep() {
        for x in -3000i64..=3000 {
            for &m in &SPECIAL_M[..5] {
                for t in SHIFT_MIN..=SHIFT_MAX {
                    check(x, m, t);
                }
            }
        }
    }

    /// Random x across every magnitude, random valid M and t, plus the full argument range.
    #[test]
    fn random_sweep() {
        let mut rng = Rng::new(0x5eed_0001);
        for _ in 0..400_000 {
            let bits = rng.below(64) as u32;
            let x = (rng.next_u64() >> (63 - bits.min(63))) as i64;
            let x = if rng.bool() { x } else { x.wrapping_neg() };
            let m = rng.range_i64(i64::from(MULTIPLIER_MIN), i64::from(MULTIPLIER_MAX)) as i32;
            let t = rng.range_i64(1, 62) as u8;
            check(x, m, t);
            // any i64, any multiplier, any shift: total and exact (saturated)
            check(
                rng.next_u64() as i64,
                rng.next_u64() as i32,
                rng.next_u64() as u8,
            );
        }
    }

    /// The inference-path domain: accumulators and input-stage values, valid M and t.
    #[test]
    fn inference_domain_sweep() {
        let mut rng = Rng::new(0x5eed_0002);
        for _ in 0..200_000 {
            let x = rng.range_i64(-(1 << 32) + 1, (1 << 32) - 256);
            let m = rng.range_i64(i64::from(MULTIPLIER_MIN), i64::from(MULTIPLIER_MAX)) as i32;
            let t = rng.range_i64(1, 62) as u8;
            // the i64 path is taken on this domain
            assert!(x.checked_mul(i64::from(m)).is_some());
            check(x, m, t);
        }
    }

    /// Exact ties: x * M == (2k + 1) * 2^(t-1). With M = odd * 2^a, that is x = odd' * 2^(t-1-a).
    /// Half to even means the result is always even, and the reference agrees.
    #[test]
    fn ties_round_to_even() {
        let mut rng = Rng::new(0x5eed_0003);
        let mut ups = 0;
        let mut downs = 0;
        for _ in 0..200_000 {
            let m = rng.range_i64(i64::from(MULTIPLIER_MIN), i64::from(MULTIPLIER_MAX)) as i32;
            let a = m.trailing_zeros() as u8;
            let t = rng.range_i64(i64::from(a) + 1, 62) as u8;
            let e = t - 1 - a;
            // odd multiplier, small enough that x fits the inference domain (|x| < 2^32)
            let max_odd_bits = 31u32.saturating_sub(u32::from(e)).max(1);
            let odd = (rng.next_u64() >> (64 - max_odd_bits)) as i64 | 1;
            let odd = if rng.bool() { odd } else { -odd };
            let x = odd << e;
            let product = i128::from(x) * i128::from(m);
            assert_eq!(
                product.rem_euclid(1i128 << t),
                1i128 << (t - 1),
                "not a tie"
            );
            let y = rq(x, m, t);
            assert_eq!(y % 2, 0, "tie rq({x}, {m}, {t}) = {y} is not even");
            let floor = (product >> t) as i64;
            if y == floor {
                downs += 1;
            } else {
                assert_eq!(y, floor + 1);
                ups += 1;
            }
            check(x, m, t);
        }
        // both directions occur
        assert!(ups > 10_000 && downs > 10_000, "ups {ups} downs {downs}");
    }

    /// The short form of the two-halves rounding equals the long one on its whole domain's
    /// edges and at random: |hi| <= 2^30, every lo, s in 0..=30.
    #[test]
    fn the_input_stage_affine_map_equals_its_definition() {
        // sat8(zp + rq(256 * clamp(x) - mu, M, t)) in i128, against the runtime's map, whose
        // common case is 32-bit arithmetic (rq_acc).
        let mut rng = Rng::new(0x5EED_1234_ABCD_0001);
        let mut next = || rng.next_u64();
        let xs = [
            0,
            1,
            -1,
            RAW_MIN,
            RAW_MAX,
            RAW_MIN - 1,
            RAW_MAX + 1,
            i32::MIN,
            i32::MAX,
        ];
        let mus = [0, 1, -1, i32::MIN, i32::MAX, 1 << 30, -(1 << 30)];
        for t in SHIFT_MIN..=SHIFT_MAX {
            for m in [MULTIPLIER_MIN, i32::MAX, (1 << 30) | 4321] {
                let check = |x: i32, mu: i32, zp: i64| {
                    let v = i64::from(clamp_raw(x)) * 256 - i64::from(mu);
                    let expected = sat8_ref(zp + rq_ref(v, m, t)) as i8;
                    assert_eq!(
                        crate::model::affine(x, (mu, m, t), zp),
                        expected,
                        "x={x} mu={mu} m={m} t={t} zp={zp}"
                    );
                };
                for &x in &xs {
                    for &mu in &mus {
                        check(x, mu, -128);
                        check(x, mu, 5);
                    }
                }
                for _ in 0..300 {
                    let x = next() as i32 >> (next() % 24);
                    let mu = next() as i32 >> (next() % 31);
                    check(x, mu, (next() % 256) as i64 - 128);
                }
            }
        }
    }

    #[test]
    fn rq_input_equals_rq() {
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next_u64();
        let edges = [
            0i64,
            1,
            -1,
            (1 << 31) - 1,
            -(1 << 31),
            (1 << 32) - 1,
            -(1 << 32) + 1,
        ];
        let multipliers = [MULTIPLIER_MIN, i32::MAX, 1 << 30 | 12345, 1, -1, i32::MIN];
        for shift in SHIFT_MIN..=SHIFT_MAX {
            for &m in &multipliers {
                for &x in &edges {
                    assert_eq!(
                        rq_input(x, m, shift),
                        rq(x, m, shift),
                        "x={x} m={m} t={shift}"
                    );
                }
            }
            for _ in 0..2000 {
                // 256 * clamp(raw) - mu for any raw and any i32 mu
                let raw = (next() as i32).clamp(RAW_MIN, RAW_MAX);
                let mu = next() as i32;
                let x = i64::from(raw) * 256 - i64::from(mu);
                let m = next() as i32;
                assert_eq!(
                    rq_input(x, m, shift),
                    rq(x, m, shift),
                    "x={x} m={m} t={shift}"
                );
            }
        }
    }

    /// xorshift64 from `state`: deterministic test values.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// An accumulator and a multiplier from one draw `r`: i32's edges one time in five, else
    /// random magnitudes up to `2^(47 - spread)`; multipliers at both ends of the range (2^30
    /// makes the low half zero for many accumulators: exact halves) or random.
    fn accumulator_and_multiplier(r: u64, spread: u64) -> (i32, i32) {
        const EDGES: [i32; 10] = [
            0,
            1,
            -1,
            2,
            -2,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
            1 << 20,
            -(1 << 20),
        ];
        let acc = if r % 5 == 0 {
            EDGES[(r >> 8) as usize % EDGES.len()]
        } else {
            (r >> 16) as i32 >> (r % spread)
        };
        let multiplier = match (r >> 50) % 4 {
            0 => MULTIPLIER_MIN,
            1 => MULTIPLIER_MAX,
            _ => (1 << 30) | ((r >> 3) as i32 & ((1 << 30) - 1)),
        };
        (acc, multiplier)
    }

    #[test]
    fn rq_acc_high_equals_rq_acc() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for shift in 0..=70u8 {
            assert_eq!(rq_acc_is_high(shift), (33..=62).contains(&shift));
            if !rq_acc_is_high(shift) {
                continue;
            }
            for _ in 0..2000 {
                let (acc, multiplier) = accumulator_and_multiplier(next(), 20);
                for m in [multiplier, -multiplier] {
                    assert_eq!(
                        rq_acc_high(acc, m, shift),
                        rq_acc(acc, m, shift),
                        "{acc} {m} {shift}"
                    );
                }
            }
            // exactly half, both parities of the quotient
            for acc in [1i32, 3, -1, -3, 1 << 20, 3 << 20, -(1 << 20), -(3 << 20)] {
                let m = 1 << 30;
                assert_eq!(rq_acc_high(acc, m, shift), rq_acc(acc, m, shift));
            }
        }
    }

    #[test]
    fn rq_high_zp_equals_the_output_stage() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for shift in 33..=62u8 {
            for _ in 0..3000 {
                let r = next();
                let (acc, multiplier) = accumulator_and_multiplier(r, 24);
                let zp = (r >> 40) as i8;
                let expected = sat8(i64::from(zp) + i64::from(rq_acc(acc, multiplier, shift)));
                assert_eq!(
                    rq_high_zp(acc, multiplier, shift, round_zp(zp)),
                    expected,
                    "{acc} {multiplier} {shift} {zp}"
                );
            }
            // exactly half, both parities of the quotient, every zero point parity
            // acc * 2^30 = (2k + 1) * 2^(t-1): a tie at this very shift.
            let ties = (-4i32..4)
                .filter_map(|k| (2 * k + 1).checked_mul(1 << (u32::from(shift) - 31).min(30)));
            for acc in ties.chain([1i32, 3, -1, -3, 5 << 20, 3 << 20, -(1 << 20), -(3 << 20)]) {
                for zp in [-128i8, -3, 0, 7, 127] {
                    let expected =
                        sat8(i64::from(zp) + i64::from(rq_acc(acc, MULTIPLIER_MIN, shift)));
                    assert_eq!(
                        rq_high_zp(acc, MULTIPLIER_MIN, shift, round_zp(zp)),
                        expected
                    );
                }
            }
        }
    }

    #[test]
    fn round_shift_high_equals_round_shift_halves() {
        let mut rng = Rng::new(0x5eed_0004);
        let edge_lo = [
            0,
            1,
            2,
            (1 << 31) - 1,
            1 << 31,
            (1 << 31) + 1,
            u32::MAX - 1,
            u32::MAX,
        ];
        let edge_hi = [
            0,
            1,
            -1,
            2,
            -2,
            3,
            1 << 30,
            -(1 << 30),
            (1 << 30) - 1,
            -(1 << 30) + 1,
        ];
        for s in 0..=30u32 {
            for &hi in &edge_hi {
                for &lo in &edge_lo {
                    assert_eq!(round_shift_high(hi, lo, s), round_shift_halves(hi, lo, s));
                }
            }
            for _ in 0..20_000 {
                let hi = rng.range_i64(-(1 << 30), 1 << 30) as i32;
                let lo = if rng.bool() {
                    rng.next_u64() as u32
                } else {
                    edge_lo[rng.below(8) as usize]
                };
                // ties and near-ties of the high half too
                let hi = if rng.below(4) == 0 && s > 0 {
                    (hi & !((1 << s) - 1)) | (1 << (s - 1))
                } else {
                    hi
                };
                assert_eq!(
                    round_shift_high(hi, lo, s),
                    round_shift_halves(hi, lo, s),
                    "({hi}, {lo}, {s})"
                );
            }
        }
    }

    #[test]
    fn hand_checked_values() {
        // M = 2^30, t = 31: x / 2
        let half = |x| rq(x, 1 << 30, 31);
        assert_eq!(
            [half(1), half(3), half(5), half(-1), half(-3), half(-5)],
            [0, 2, 2, 0, -2, -2]
        );
        assert_eq!([half(2), half(7), half(-7)], [1, 4, -4]);
        // x / 4: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, -0.75 -> -1, 1.5 -> 2, 2.5 -> 2
        let quarter = |x| rq(x, 1 << 30, 32);
        assert_eq!(
            [
                quarter(1),
                quarter(3),
                quarter(5),
                quarter(-3),
                quarter(6),
                quarter(10)
            ],
            [0, 1, 1, -1, 2, 2]
        );
        // the largest multiplier with the largest accumulator, t = 31: just under x
        assert_eq!(
            rq(i64::from(i32::MAX), i32::MAX, 31),
            i64::from(i32::MAX) - 1
        );
        assert_eq!(
            rq(i64::from(i32::MIN), i32::MAX, 31),
            i64::from(i32::MIN) + 1
        );
        // t = 62: (2^32 - 256) * (2^31 - 1) / 2^62 ~ 1.99: rounds to 2
        assert_eq!(rq((1 << 32) - 256, i32::MAX, 62), 2);
        // out of the validated range, still exact or saturated
        assert_eq!(rq(i64::MAX, i32::MAX, 0), i64::MAX);
        assert_eq!(rq(i64::MIN, i32::MAX, 0), i64::MIN);
        assert_eq!(rq(-7, 1, 0), -7);
        assert_eq!(rq(i64::MAX, i32::MAX, 255), 0);
        assert_eq!(rq(i64::MIN, i32::MIN, 94), 1); // 2^94 / 2^94
        assert_eq!(rq(i64::MIN, i32::MIN, 95), 0); // 0.5: tie to even
        assert_eq!(rq(3 << 40, i32::MIN, 72), -2); // -1.5: tie to even
    }

    #[test]
    fn sat8_clamps() {
        for v in -1000i64..=1000 {
            assert_eq!(i64::from(sat8(v)), v.clamp(-128, 127));
        }
        assert_eq!(sat8(i64::MAX), 127);
        assert_eq!(sat8(i64::MIN), -128);
        assert_eq!(sat8(128), 127);
        assert_eq!(sat8(-129), -128);
        assert_eq!(sat8(127), 127);
        assert_eq!(sat8(-128), -128);
    }

    #[test]
    fn ranges() {
        assert!(!multiplier_is_valid((1 << 30) - 1));
        assert!(multiplier_is_valid(1 << 30));
        assert!(multiplier_is_valid(i32::MAX));
        assert!(!multiplier_is_valid(-1));
        assert!(!multiplier_is_valid(i32::MIN));
        assert!(!shift_is_valid(0));
        assert!(shift_is_valid(1));
        assert!(shift_is_valid(62));
        assert!(!shift_is_valid(63));
        assert_eq!(clamp_raw(i32::MAX), (1 << 23) - 1);
        assert_eq!(clamp_raw(i32::MIN), -(1 << 23));
        assert_eq!(clamp_raw(-5), -5);
    }
}
