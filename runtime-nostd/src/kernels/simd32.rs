//! The Armv7E-M DSP instructions the Rust kernels are built on, with exact portable
//! equivalents so that the same kernel runs, and is tested against the reference, on the host.
//!
//! - `sxtb16(x)`: sign-extends bytes 0 and 2 of `x` into two 16-bit lanes;
//!   `sxtb16_ror8(x)` does the same for bytes 1 and 3.
//! - `smlad(a, b, acc)`: `acc + a.lo * b.lo + a.hi * b.hi` on signed 16-bit lanes, wrapping
//!   like the reference kernel's `i32` accumulator.
//! - `ssub16(a, b)`: `a - b` on each 16-bit lane, wrapping.
//! - `usada8(a, b, acc)`: `acc` plus the sum of `|a_i - b_i|` over the four unsigned bytes,
//!   wrapping.

#[cfg(kiln_kernel = "dsp")]
mod imp {
    #![allow(unsafe_code)]
    use core::arch::asm;

    #[inline(always)]
    pub fn sxtb16(x: u32) -> u32 {
        let out: u32;
        // SAFETY: a register-only instruction of every Armv7E-M core (target feature `dsp`).
        unsafe {
            asm!("sxtb16 {0}, {1}", out(reg) out, in(reg) x, options(pure, nomem, nostack, preserves_flags))
        };
        out
    }

    #[inline(always)]
    pub fn sxtb16_ror8(x: u32) -> u32 {
        let out: u32;
        // SAFETY: as above.
        unsafe {
            asm!("sxtb16 {0}, {1}, ror #8", out(reg) out, in(reg) x, options(pure, nomem, nostack, preserves_flags))
        };
        out
    }

    #[inline(always)]
    pub fn ssub16(a: u32, b: u32) -> u32 {
        let out: u32;
        // SAFETY: register-only; SSUB16 sets the GE flags, which nothing reads.
        unsafe {
            asm!("ssub16 {0}, {1}, {2}", out(reg) out, in(reg) a, in(reg) b, options(pure, nomem, nostack))
        };
        out
    }

    #[inline(always)]
    pub fn usada8(a: u32, b: u32, acc: u32) -> u32 {
        let out: u32;
        // SAFETY: a register-only instruction of every Armv7E-M core; it sets no flags.
        unsafe {
            asm!("usada8 {0}, {1}, {2}, {3}", out(reg) out, in(reg) a, in(reg) b, in(reg) acc, options(pure, nomem, nostack, preserves_flags))
        };
        out
    }
}

#[cfg(not(kiln_kernel = "dsp"))]
mod imp {
    #[inline(always)]
    pub fn sxtb16(x: u32) -> u32 {
        let lo = u32::from(x as u8 as i8 as i16 as u16);
        let hi = u32::from((x >> 16) as u8 as i8 as i16 as u16);
        lo | (hi << 16)
    }

    #[inline(always)]
    pub fn sxtb16_ror8(x: u32) -> u32 {
        sxtb16(x.rotate_right(8))
    }

    #[inline(always)]
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let lo = i32::from(a as u16 as i16).wrapping_mul(i32::from(b as u16 as i16));
        let hi =
            i32::from((a >> 16) as u16 as i16).wrapping_mul(i32::from((b >> 16) as u16 as i16));
        acc.wrapping_add(lo).wrapping_add(hi)
    }

    #[inline(always)]
    pub fn ssub16(a: u32, b: u32) -> u32 {
        let lo = (a as u16).wrapping_sub(b as u16);
        let hi = ((a >> 16) as u16).wrapping_sub((b >> 16) as u16);
        u32::from(lo) | (u32::from(hi) << 16)
    }

    #[inline(always)]
    pub fn usada8(a: u32, b: u32, acc: u32) -> u32 {
        a.to_le_bytes()
            .into_iter()
            .zip(b.to_le_bytes())
            .fold(acc, |s, (x, y)| s.wrapping_add(u32::from(x.abs_diff(y))))
    }
}

/// (On Armv7E-M the assembly routines issue `SMLAD` themselves: only the portable twins that
/// the host tests hold to the reference call this.)
#[cfg(not(kiln_kernel = "dsp"))]
pub use imp::smlad;
pub use imp::{ssub16, sxtb16, sxtb16_ror8, usada8};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_the_documented_bytes() {
        let x = u32::from_le_bytes([0x80, 0x7f, 0xff, 0x01]);
        assert_eq!(sxtb16(x), 0xffff_ff80); // lanes -1 (byte 2), -128 (byte 0)
        assert_eq!(sxtb16_ror8(x), 0x0001_007f); // lanes 1 (byte 3), 127 (byte 1)
        assert_eq!(smlad(0x0002_fffd, 0x0005_0007, 100), 100 + (-3 * 7) + 2 * 5);
        // Wraps like the reference's i32 accumulator.
        assert_eq!(
            smlad(0x0000_7fff, 0x0000_7fff, i32::MAX),
            i32::MAX.wrapping_add(0x7fff * 0x7fff)
        );
        // |0x80 - 0| + |0x7f - 0xff| + |0xff - 0x01| + |0x01 - 0x80| = 128 + 128 + 254 + 127
        assert_eq!(usada8(x, 0x8001_ff00, 7), 7 + 128 + 128 + 254 + 127);
    }
}
