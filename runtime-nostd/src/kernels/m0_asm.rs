//! The four-row kernel's inner loop for Armv6-M (Cortex-M0/M0+), in assembly. Thumb-1 loads
//! and multiplies work only on r0-r7, which the four row pointers, the input pointer, the
//! index and two temporaries fill; the four accumulators live in r8-r11 (a high-register ADD
//! takes any register), which the compiler does not do by itself.
//!
//! `kiln_fc_m0` is the whole dense layer in one call: blocks of four rows through that loop,
//! the last one to three rows two at a time, any input length (the first `n_in % 8` inputs
//! enter the unrolled loop part way through), and the output stage with the 32x32 -> 64-bit
//! product in four 16-bit multiplies: no `__aeabi_lmul`, no 64-bit shift, about 43
//! instructions per output (one subroutine for every row, 440 B less than six inlined copies)
//! where the compiled stage took over a hundred.
#![allow(unsafe_code)]

use super::FcParams;
use crate::Error;

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

/// The output stage of one row, a subroutine at `70:` (`bl 70f`, one copy for the six rows of
/// the two loops: 500 bytes less than inlining it, about 6 instructions more per output). In:
/// r0 the accumulator, r5 the row's multiplier, r6 its shift, r7 the `FcArgs`, r12 `2 zp + 1`.
/// It writes the byte `clamp(zp + rq_acc(acc + bias, M, t))` to the output and moves r5, r6 and
/// the output on by one row; r0-r4 and lr are free. Shifts in `33..=62` take `rq_high_zp`'s
/// operations (`fixed.rs`); any other goes to `80:` (`rq_acc` in general).
///
/// `hi:lo = acc * M` from `a = ah 2^16 + al`, `m = mh 2^16 + ml` (`ah`, `mh` signed): `al ml`
/// is the low word, `ah mh` the high one, and the cross products (each within `i32`) are added
/// at bit 16 with the carry: exact for every `acc` and `M`.
macro_rules! m0_output {
    () => {
        concat!(
            "70:\n",
            "push {{lr}}\n",
            "ldr r1, [r5, #0]\n",
            "asrs r4, r0, #16\n",
            "uxth r0, r0\n",
            "asrs r3, r1, #16\n",
            "uxth r1, r1\n",
            "movs r2, r0\n",
            "muls r2, r1, r2\n", // lo = al ml
            "muls r0, r3, r0\n", // al mh
            "muls r1, r4, r1\n", // ah ml
            "muls r4, r3, r4\n", // hi = ah mh
            "lsls r3, r0, #16\n",
            "asrs r0, r0, #16\n",
            "adds r2, r2, r3\n",
            "adcs r4, r0\n",
            "lsls r3, r1, #16\n",
            "asrs r1, r1, #16\n",
            "adds r2, r2, r3\n",
            "adcs r4, r1\n",
            // s1 = t - 33; outside 0..=29 the general stage
            "ldrb r3, [r6, #0]\n",
            "subs r3, #33\n",
            "cmp r3, #29\n",
            "bls 1f\n",
            "bl 80f\n",
            "b 2f\n",
            "1:\n",
            // a zero low half rounds by `odd`: hi + odd - 1 (else hi + 1 - 1)
            "cmp r2, #0\n",
            "bne 1f\n",
            "movs r1, #0\n",
            "mvns r1, r1\n",
            "movs r0, r4\n",
            "asrs r0, r3\n",
            "lsrs r0, r0, #2\n", // carry: bit 1 of hi >> s1, odd
            "adcs r4, r1\n",
            "1:\n",
            "asrs r4, r3\n",
            "add r4, r12\n",
            "asrs r4, r4, #1\n",
            "2:\n",
            "ldr r3, [r7, #36]\n", // max(q, clamp_min)
            "cmp r4, r3\n",
            "bge 1f\n",
            "mov r4, r3\n",
            "1:\n",
            "ldr r3, [r7, #40]\n", // min(q, clamp_max)
            "cmp r4, r3\n",
            "ble 1f\n",
            "mov r4, r3\n",
            "1:\n",
            "ldr r3, [r7, #24]\n",
            "strb r4, [r3, #0]\n",
            "adds r3, #1\n",
            "str r3, [r7, #24]\n",
            "adds r5, #4\n",
            "adds r6, #1\n",
            "pop {{pc}}\n",
        )
    };
}

/// `x = input[i]` and the multiply-accumulates of rows 0 and 1 (r0, r1 into r8, r9): the head
/// both loops share.
macro_rules! m0_rows01 {
    () => {
        concat!(
            "ldrsb r7, [r2, r6]\n",
            "ldrsb r3, [r0, r6]\n",
            "muls r3, r7, r3\n",
            "add r8, r3\n",
            "ldrsb r3, [r1, r6]\n",
            "muls r3, r7, r3\n",
            "add r9, r3\n",
        )
    };
}

/// One input of the four-row loop: `x = input[i]`, four multiply-accumulates, `i += 1`.
macro_rules! m0_step4 {
    () => {
        concat!(
            m0_rows01!(),
            "ldrsb r3, [r4, r6]\n",
            "muls r3, r7, r3\n",
            "add r10, r3\n",
            "ldrsb r3, [r5, r6]\n",
            "muls r3, r7, r3\n",
            "add r11, r3\n",
            "adds r6, #1\n",
        )
    };
}

/// One input of the two-row loop.
macro_rules! m0_step2 {
    () => {
        concat!(m0_rows01!(), "adds r6, #1\n")
    };
}

core::arch::global_asm!(
    ".section .text.kiln_fc_m0,\"ax\",%progbits",
    ".global kiln_fc_m0",
    ".type kiln_fc_m0,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_fc_m0:",
    // r0: an `FcArgs` (offsets in its definition), read and advanced block by block.
    "push {{r4-r7, lr}}",
    "mov r4, r8",
    "mov r5, r9",
    "mov r6, r10",
    "mov r7, r11",
    "push {{r4-r7}}",
    "mov r7, r0",
    // Where each loop is entered: `8 - n_in % 8` steps before its end, so that the first pass
    // takes the odd inputs (with `n_in % 8 == 0`, the end: the loop then goes round whole).
    "ldr r1, [r7, #4]",
    "lsls r1, r1, #29",
    "lsrs r1, r1, #29",
    "movs r2, #8",
    "subs r2, r2, r1",
    "movs r3, #28", // bytes per step of four rows
    "muls r3, r2, r3",
    "adr r0, 12f",
    "adds r0, r0, r3",
    "adds r0, #1",
    "str r0, [r7, #44]",
    "lsls r2, r2, #4", // bytes per step of two rows
    "adr r0, 22f",
    "adds r0, r0, r2",
    "adds r0, #1",
    "str r0, [r7, #48]",
    "mov lr, r7",
    "10:",
    "mov r7, lr",
    "ldr r3, [r7, #28]", // rows left
    "cmp r3, #4",
    "bhs 11f",
    "cmp r3, #0",
    "bne 19f",
    "b 90f",
    "19:",
    "b 20f",
    // ---- four rows
    "11:",
    "ldr r3, [r7, #12]", // bias, word-aligned
    "ldm r3!, {{r0, r1, r2, r4}}",
    "str r3, [r7, #12]",
    "mov r8, r0",
    "mov r9, r1",
    "mov r10, r2",
    "mov r11, r4",
    "ldr r0, [r7, #0]", // row 0
    "ldr r3, [r7, #4]", // stride = inputs
    "mov r12, r3",
    "adds r1, r0, r3",  // row 1
    "adds r4, r1, r3",  // row 2
    "adds r5, r4, r3",  // row 3
    "ldr r2, [r7, #8]", // input
    "movs r6, #0",
    "ldr r3, [r7, #44]",
    "bx r3",
    ".p2align 2",
    "12:",
    ".rept 8",
    m0_step4!(),
    ".endr",
    "cmp r6, r12",
    "bne 12b",
    "add r5, r12", // the next block's row 0
    "mov r7, lr",
    "str r5, [r7, #0]",
    "ldr r0, [r7, #32]",
    "mov r12, r0", // 2 zp + 1
    "ldr r5, [r7, #16]",
    "ldr r6, [r7, #20]",
    "mov r0, r8",
    "bl 70f",
    "mov r0, r9",
    "bl 70f",
    "mov r0, r10",
    "bl 70f",
    "mov r0, r11",
    "bl 70f",
    "str r5, [r7, #16]",
    "str r6, [r7, #20]",
    "ldr r3, [r7, #28]",
    "subs r3, #4",
    "str r3, [r7, #28]",
    "mov lr, r7",
    "b 10b",
    // ---- the last one to three rows, two at a time (one: row 1 repeats row 0, not stored)
    "20:",
    "ldr r0, [r7, #0]",
    "ldr r2, [r7, #4]",
    "mov r12, r2",
    "adds r1, r0, r2",
    "ldr r4, [r7, #12]",
    "ldr r5, [r4, #0]",
    "mov r8, r5",
    "cmp r3, #1",
    "bne 21f",
    "movs r1, r0",
    "subs r4, #4", // row 0's bias again: nothing read past the array
    "21:",
    "ldr r5, [r4, #4]",
    "mov r9, r5",
    "ldr r2, [r7, #8]",
    "movs r6, #0",
    "ldr r3, [r7, #48]",
    "bx r3",
    ".p2align 2",
    "22:",
    ".rept 8",
    m0_step2!(),
    ".endr",
    "cmp r6, r12",
    "bne 22b",
    "add r1, r12",
    "mov r7, lr",
    "str r1, [r7, #0]",
    "ldr r0, [r7, #32]",
    "mov r12, r0",
    "ldr r5, [r7, #16]",
    "ldr r6, [r7, #20]",
    "mov r0, r8",
    "bl 70f",
    "ldr r0, [r7, #28]",
    "cmp r0, #1",
    "beq 90f",
    "mov r0, r9",
    "bl 70f",
    "ldr r0, [r7, #12]",
    "adds r0, #8",
    "str r0, [r7, #12]",
    "str r5, [r7, #16]",
    "str r6, [r7, #20]",
    "ldr r3, [r7, #28]",
    "subs r3, #2",
    "str r3, [r7, #28]",
    "mov lr, r7",
    "b 10b",
    "90:",
    "pop {{r4-r7}}",
    "mov r8, r4",
    "mov r9, r5",
    "mov r10, r6",
    "mov r11, r7",
    "pop {{r4-r7, pc}}",
    m0_output!(),
    // ---- `rq_acc` for a shift outside 33..=62, from hi:lo (r4:r2) and `t - 33` (r3), as
    // `fixed.rs` defines it: 1..=32 round half to even, 0 the product itself, 63 and more 0.
    // Returns in r4 `zp + q`, with `q` saturated to +-2^16 (the clamps that follow make that
    // the reference's `i32` saturation). Keeps r5-r7 and r12.
    "80:",
    "push {{r5, r6, lr}}",
    "adds r3, #33", // t
    "movs r0, #0",
    "cmp r3, #62",
    "bhi 86f", // q = 0
    "movs r0, r2",
    "cmp r3, #0",
    "beq 85f", // q = the product
    // odd: bit 0 of floor(p / 2^t), the low word of p >> t
    "lsrs r0, r3",
    "movs r1, #32",
    "subs r1, r1, r3",
    "movs r5, r4",
    "lsls r5, r1",
    "orrs r0, r5",
    "movs r6, #1",
    "ands r0, r6",
    // p += 2^(t-1) - 1 + odd
    "subs r5, r3, #1",
    "lsls r6, r5",
    "subs r6, #1",
    "adds r6, r6, r0",
    "movs r0, #0",
    "adds r2, r2, r6",
    "adcs r4, r0",
    // p >> t: low word in r0, high word in r4
    "movs r0, r2",
    "lsrs r0, r3",
    "movs r5, r4",
    "lsls r5, r1",
    "orrs r0, r5",
    "asrs r4, r3",
    "85:",
    // r4:r0 within i32 (the high word the low word's sign): clamp to +-2^16; else its sign
    "movs r5, #1",
    "lsls r5, r5, #16",
    "asrs r6, r0, #31",
    "cmp r6, r4",
    "beq 1f",
    // outside i32: the high word's sign says which way
    "movs r0, r5",
    "cmp r4, #0",
    "bge 86f",
    "negs r0, r0",
    "b 86f",
    "1:",
    "cmp r0, r5",
    "ble 1f",
    "movs r0, r5",
    "1:",
    "negs r5, r5",
    "cmp r0, r5",
    "bge 86f",
    "movs r0, r5",
    "86:",
    "ldr r4, [r7, #52]", // zp
    "adds r4, r4, r0",
    "pop {{r5, r6, pc}}",
    ".size kiln_fc_m0, . - kiln_fc_m0",
);

extern "C" {
    fn kiln_fc_m0(args: *mut FcArgs);
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

/// What [`kiln_fc_m0`] reads and advances, at fixed offsets (checked below).
#[repr(C)]
struct FcArgs {
    rows: *const u8,
    n_in: usize,
    input: *const i8,
    bias: *const u8,
    multipliers: *const u8,
    shifts: *const u8,
    output: *mut i8,
    rows_left: usize,
    round_zp: i32,
    clamp_min: i32,
    clamp_max: i32,
    /// Where the routine enters its two loops (it writes them).
    entry4: usize,
    entry2: usize,
    zero_point: i32,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(FcArgs, rows) == 0 && offset_of!(FcArgs, n_in) == 4);
    assert!(offset_of!(FcArgs, input) == 8 && offset_of!(FcArgs, bias) == 12);
    assert!(offset_of!(FcArgs, multipliers) == 16 && offset_of!(FcArgs, shifts) == 20);
    assert!(offset_of!(FcArgs, output) == 24 && offset_of!(FcArgs, rows_left) == 28);
    assert!(offset_of!(FcArgs, round_zp) == 32 && offset_of!(FcArgs, clamp_min) == 36);
    assert!(offset_of!(FcArgs, clamp_max) == 40 && offset_of!(FcArgs, entry4) == 44);
    assert!(offset_of!(FcArgs, entry2) == 48 && offset_of!(FcArgs, zero_point) == 52);
};

/// The whole dense layer in [`kiln_fc_m0`]; `false` (nothing written) unless the arguments
/// pass [`FcParams::check`] and the bias and multipliers are word-aligned (a blob at a
/// 4-byte-aligned address has them so), for the caller to run another kernel.
#[inline(always)]
pub fn fully_connected(params: &FcParams<'_>, input: &[i8], output: &mut [i8]) -> bool {
    if !params.words_aligned() || params.check(input.len(), output.len()).is_err() {
        return false;
    }
    let mut args = FcArgs {
        rows: params.weights.as_ptr(),
        n_in: input.len(),
        input: input.as_ptr(),
        bias: params.bias.as_ptr(),
        multipliers: params.multipliers.as_ptr(),
        shifts: params.shifts.as_ptr(),
        output: output.as_mut_ptr(),
        rows_left: output.len(),
        round_zp: crate::fixed::round_zp(params.output_zero_point),
        clamp_min: i32::from(params.clamp_min),
        clamp_max: i32::from(params.clamp_max),
        entry4: 0,
        entry2: 0,
        zero_point: i32::from(params.output_zero_point),
    };
    // SAFETY: `check` proved `n_out` rows of `n_in >= 1` weights, `n_out` biases, multipliers
    // and shifts for the `n_out` output bytes; the routine reads exactly those (a lone last row
    // reads row 0's bias and weights again, never past them) and the `n_in` inputs, with word
    // loads only on the bias and multipliers (aligned: checked above). It follows the AAPCS,
    // restores r4-r11, and writes only `args` and the output.
    unsafe { kiln_fc_m0(&mut args) };
    true
}

/// Same contract as [`super::reference::fully_connected_i8`]: [`kiln_fc_m0`], or the compact
/// kernel for bias or multipliers off a word boundary.
pub fn fully_connected_i8(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    if fully_connected(params, input, output) {
        return Ok(());
    }
    super::compact::fully_connected_i8(params, input, output)
}
