//! Test helpers: a deterministic generator and the exact rational rounding reference.

/// SplitMix64: a fixed seed gives the same stream on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`, `n > 0` (the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[lo, hi]`.
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (u128::from(self.next_u64()) % span) as i128) as i64
    }

    pub fn usize_in(&mut self, lo: usize, hi: usize) -> usize {
        self.range_i64(lo as i64, hi as i64) as usize
    }

    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }

    pub fn i8_in(&mut self, lo: i8, hi: i8) -> i8 {
        self.range_i64(i64::from(lo), i64::from(hi)) as i8
    }
}

/// `num / den` rounded half to even, exactly, by Euclidean division (`den > 0`). Independent of
/// the shift-and-mask code in `fixed`.
pub fn rhe_div(num: i128, den: i128) -> i128 {
    let q = num.div_euclid(den);
    let r = num.rem_euclid(den);
    match (2 * r).cmp(&den) {
        core::cmp::Ordering::Less => q,
        core::cmp::Ordering::Greater => q + 1,
        core::cmp::Ordering::Equal => {
            if q % 2 == 0 {
                q
            } else {
                q + 1
            }
        }
    }
}

/// The docs' `rq` by the rational reference: `round_half_even(x * M / 2^t)`.
pub fn rq_ref(x: i64, m: i32, t: u8) -> i64 {
    rhe_div(i128::from(x) * i128::from(m), 1i128 << t) as i64
}

/// The docs' `sat8`, written independently.
pub fn sat8_ref(v: i64) -> i64 {
    v.clamp(-128, 127)
}
