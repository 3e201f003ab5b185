//! The four-row kernel's inner loop for Armv6-M (Cortex-M0/M0+), in assembly. Thumb-1 loads
//! and multiplies work only on r0-r7, which the four row pointers, the input pointer, the
//! index and two temporaries fill; the four accumulators live in r8-r11 (a high-register ADD
//! takes any register), which the compiler does not do by itself.
#![allow(unsafe_code)]

core::arch::global_asm!(
    ".section .text.kiln_dot4_m0,\"ax\",%progbits",
    ".global kiln_dot4_m0",
    ".type kiln_dot4_m0,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dot4_m0:",
    // r0: row 0, r1: stride, r2: input, r3: inputs (a multiple of 8, > 0),
    // [sp]: the four accumulators (read, then written back).
    "push {{r4-r7, lr}}",
    "mov r4, r8",
    "mov r5, r9",
    "mov r6, r10",
    "mov r7, r11",
    "push {{r4-r7}}",
    "ldr r7, [sp, #36]",
    "ldr r4, [r7, #0]",
    "mov r8, r4",
    "ldr r4, [r7, #4]",
    "mov r9, r4",
    "ldr r4, [r7, #8]",
    "mov r10, r4",
    "ldr r4, [r7, #12]",
    "mov r11, r4",
    "mov r12, r3",     // end index
    "mov r3, r1",      // stride
    "adds r1, r0, r3", // row 1
    "adds r4, r1, r3", // row 2
    "adds r5, r4, r3", // row 3
    "movs r6, #0",     // index
    "1:",
    ".rept 8",
    "ldrsb r7, [r2, r6]",
    "ldrsb r3, [r0, r6]",
    "muls r3, r7, r3",
    "add r8, r3",
    "ldrsb r3, [r1, r6]",
    "muls r3, r7, r3",
    "add r9, r3",
    "ldrsb r3, [r4, r6]",
    "muls r3, r7, r3",
    "add r10, r3",
    "ldrsb r3, [r5, r6]",
    "muls r3, r7, r3",
    "add r11, r3",
    "adds r6, #1",
    ".endr",
    "cmp r6, r12",
    "bne 1b",
    "ldr r7, [sp, #36]",
    "mov r4, r8",
    "str r4, [r7, #0]",
    "mov r4, r9",
    "str r4, [r7, #4]",
    "mov r4, r10",
    "str r4, [r7, #8]",
    "mov r4, r11",
    "str r4, [r7, #12]",
    "pop {{r4-r7}}",
    "mov r8, r4",
    "mov r9, r5",
    "mov r10, r6",
    "mov r11, r7",
    "pop {{r4-r7, pc}}",
    ".size kiln_dot4_m0, . - kiln_dot4_m0",
);

extern "C" {
    fn kiln_dot4_m0(
        row0: *const u8,
        stride: usize,
        input: *const i8,
        n_inputs: usize,
        acc: *mut [i32; 4],
    );
}

/// Adds to `acc[r]` the dot product of `input[..n]` (`n` a multiple of 8) with row `r` of the
/// four rows that start at `rows` and lie `stride` bytes apart.
///
/// Returns without reading unless `n > 0`, `n % 8 == 0`, `input.len() >= n` and
/// `rows.len() >= 3 * stride + n`.
#[inline(always)]
pub fn dot4(rows: &[u8], stride: usize, input: &[i8], n: usize, acc: &mut [i32; 4]) {
    let in_bounds = super::dot4_in_bounds(rows, stride, input, n, 8);
    if in_bounds {
        // SAFETY: every address read is inside `rows` or `input` (checked just above); the
        // routine follows the AAPCS, restores r4-r11, and writes only `acc`.
        unsafe { kiln_dot4_m0(rows.as_ptr(), stride, input.as_ptr(), n, acc) };
    }
}
