//! The four-row kernel's inner loop on x86-64 with SSE2 (every x86-64 core has it): sixteen
//! inputs per step, sign-extended to 16-bit lanes once and shared by the four rows, eight
//! multiply-accumulates per `pmaddwd`. Each pair sum is at most `2 * 128 * 128 = 2^15` in
//! magnitude and the lanes add with wrapping, like the reference's `i32` accumulator, so the
//! result is the reference's bit for bit.
#![allow(unsafe_code)]

use core::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_cvtsi128_si32, _mm_loadl_epi64, _mm_loadu_si128, _mm_madd_epi16,
    _mm_setzero_si128, _mm_shuffle_epi32, _mm_srai_epi16, _mm_unpackhi_epi8, _mm_unpacklo_epi8,
};

/// Bytes 0-7 of `v` as eight sign-extended 16-bit lanes.
#[inline]
#[target_feature(enable = "sse2")]
fn widen_lo(v: __m128i) -> __m128i {
    _mm_srai_epi16::<8>(_mm_unpacklo_epi8(v, v))
}

/// Bytes 8-15 of `v` as eight sign-extended 16-bit lanes.
#[inline]
#[target_feature(enable = "sse2")]
fn widen_hi(v: __m128i) -> __m128i {
    _mm_srai_epi16::<8>(_mm_unpackhi_epi8(v, v))
}

/// The wrapping sum of the four 32-bit lanes.
#[inline]
#[target_feature(enable = "sse2")]
fn lanes_sum(v: __m128i) -> i32 {
    let v = _mm_add_epi32(v, _mm_shuffle_epi32::<0b01_00_11_10>(v));
    let v = _mm_add_epi32(v, _mm_shuffle_epi32::<0b10_11_00_01>(v));
    _mm_cvtsi128_si32(v)
}

/// Adds to `acc[r]` the dot product of `input[..n]` with row `r` of the four rows at `rows`
/// (`stride` bytes apart), `n` a positive multiple of 8 (the portable twin is `dot4_portable`
/// in `rows4.rs`). Returns without reading when the rows or the input are too short.
#[inline(always)]
pub fn dot4(rows: &[u8], stride: usize, input: &[i8], n: usize, acc: &mut [i32; 4]) {
    if super::dot4_in_bounds(rows, stride, input, n, 8) {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 core runs this code.
        unsafe { dot4_in_bounds_sse2(rows, stride, input, n, acc) }
    }
}

/// [`dot4`] once `dot4_in_bounds` holds.
#[inline]
#[target_feature(enable = "sse2")]
fn dot4_in_bounds_sse2(rows: &[u8], stride: usize, input: &[i8], n: usize, acc: &mut [i32; 4]) {
    let mut sums = [_mm_setzero_si128(); 4];
    let x = input.as_ptr();
    // The four rows' starts (in bounds: `3 * stride + n <= rows.len()`).
    let row_starts: [*const u8; 4] =
        core::array::from_fn(|row_idx| rows.as_ptr().wrapping_add(row_idx.wrapping_mul(stride)));
    let n_16 = n & !15;
    // SAFETY (every load below): the caller's `dot4_in_bounds` proved `input.len() >= n` and
    // `rows.len() >= 3 * stride + n`, so the 16 bytes at `idx` (`idx + 16 <= n`) and the 8 bytes
    // at `n_16` (`n_16 + 8 == n`) lie inside `input` and inside each of the four rows; the
    // loads are unaligned loads.
    for idx in (0..n_16).step_by(16) {
        let xv = unsafe { _mm_loadu_si128(x.add(idx).cast()) };
        let (x_lo, x_hi) = (widen_lo(xv), widen_hi(xv));
        for (sum, row) in sums.iter_mut().zip(row_starts) {
            let w = unsafe { _mm_loadu_si128(row.add(idx).cast()) };
            let products = _mm_add_epi32(
                _mm_madd_epi16(widen_lo(w), x_lo),
                _mm_madd_epi16(widen_hi(w), x_hi),
            );
            *sum = _mm_add_epi32(*sum, products);
        }
    }
    if n_16 < n {
        let x_lo = widen_lo(unsafe { _mm_loadl_epi64(x.add(n_16).cast()) });
        for (sum, row) in sums.iter_mut().zip(row_starts) {
            let w = unsafe { _mm_loadl_epi64(row.add(n_16).cast()) };
            *sum = _mm_add_epi32(*sum, _mm_madd_epi16(widen_lo(w), x_lo));
        }
    }
    for (acc, sum) in acc.iter_mut().zip(sums) {
        *acc = acc.wrapping_add(lanes_sum(sum));
    }
}
