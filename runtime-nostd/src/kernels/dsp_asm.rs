//! The packed kernel's inner loop for Armv7E-M, in assembly: four rows, eight inputs per
//! iteration, every register in use (the compiler spills accumulators when it has to allocate
//! fourteen values itself).
#![allow(unsafe_code)]

core::arch::global_asm!(
    ".section .text.kiln_dot4_dsp,\"ax\",%progbits",
    ".global kiln_dot4_dsp",
    ".type kiln_dot4_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dot4_dsp:",
    // r0: row 0, r1: stride (bytes between rows), r2: input, r3: pairs of input words (> 0),
    // [sp]: the four accumulators (read, then written back).
    "push {{r4-r11, lr}}",
    "ldr lr, [sp, #36]",
    "ldm lr, {{r4-r7}}",
    "add r8, r0, r1, lsl #1", // row 2; row 3 is row 2 + stride
    "add r3, r2, r3, lsl #3", // the input's end
    "1:",
    // Inputs 0-3: x02 and x13 lanes, shared by the four rows.
    "ldr r9, [r2], #4",
    "sxtb16 r10, r9",
    "sxtb16 r9, r9, ror #8",
    "ldr r11, [r0, r1]",
    "sxtb16 r12, r11",
    "smlad r5, r12, r10, r5",
    "sxtb16 r11, r11, ror #8",
    "smlad r5, r11, r9, r5",
    "ldr r11, [r0], #4",
    "sxtb16 r12, r11",
    "smlad r4, r12, r10, r4",
    "sxtb16 r11, r11, ror #8",
    "smlad r4, r11, r9, r4",
    "ldr r11, [r8, r1]",
    "sxtb16 r12, r11",
    "smlad r7, r12, r10, r7",
    "sxtb16 r11, r11, ror #8",
    "smlad r7, r11, r9, r7",
    "ldr r11, [r8], #4",
    "sxtb16 r12, r11",
    "smlad r6, r12, r10, r6",
    "sxtb16 r11, r11, ror #8",
    "smlad r6, r11, r9, r6",
    // Inputs 4-7.
    "ldr r9, [r2], #4",
    "sxtb16 r10, r9",
    "sxtb16 r9, r9, ror #8",
    "ldr r11, [r0, r1]",
    "sxtb16 r12, r11",
    "smlad r5, r12, r10, r5",
    "sxtb16 r11, r11, ror #8",
    "smlad r5, r11, r9, r5",
    "ldr r11, [r0], #4",
    "sxtb16 r12, r11",
    "smlad r4, r12, r10, r4",
    "sxtb16 r11, r11, ror #8",
    "smlad r4, r11, r9, r4",
    "ldr r11, [r8, r1]",
    "sxtb16 r12, r11",
    "smlad r7, r12, r10, r7",
    "sxtb16 r11, r11, ror #8",
    "smlad r7, r11, r9, r7",
    "ldr r11, [r8], #4",
    "sxtb16 r12, r11",
    "smlad r6, r12, r10, r6",
    "sxtb16 r11, r11, ror #8",
    "smlad r6, r11, r9, r6",
    "cmp r2, r3",
    "bne 1b",
    "stm lr, {{r4-r7}}",
    "pop {{r4-r11, pc}}",
    ".size kiln_dot4_dsp, . - kiln_dot4_dsp",
);

extern "C" {
    fn kiln_dot4_dsp(
        row0: *const u8,
        stride: usize,
        input: *const i8,
        n_pairs: usize,
        acc: *mut [i32; 4],
    );
}

/// Adds to `acc[r]` the dot product of `input[..8 * n_pairs]` with row `r` of the four rows that
/// start at `rows` and lie `stride` bytes apart (the blob's row-major weights).
///
/// The caller proves the reads in bounds: `input.len() >= 8 * n_pairs` and
/// `rows.len() >= 3 * stride + 8 * n_pairs`. Returns without reading when they do not hold.
#[inline(always)]
pub fn dot4(rows: &[u8], stride: usize, input: &[i8], n_pairs: usize, acc: &mut [i32; 4]) {
    let in_bounds = n_pairs
        .checked_mul(8)
        .is_some_and(|span| super::dot4_in_bounds(rows, stride, input, span, 8));
    if in_bounds {
        // SAFETY: every address read is inside `rows` or `input` (checked just above); the
        // routine follows the AAPCS, saves what it uses, and writes only `acc`.
        unsafe { kiln_dot4_dsp(rows.as_ptr(), stride, input.as_ptr(), n_pairs, acc) };
    }
}
