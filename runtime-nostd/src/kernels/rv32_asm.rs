//! The four-row kernel's inner loop for RV32IM, in assembly: eight inputs per iteration, every
//! value in a caller-saved register. The compiler's own schedule of the same loop spills and
//! recomputes addresses, and changes with unrelated edits; this one does not.
#![allow(unsafe_code)]

core::arch::global_asm!(
    // The target has the M extension; the assembler is told so for this block only.
    ".option push",
    ".option arch, +m",
    ".section .text.kiln_dot4_rv32,\"ax\",@progbits",
    ".global kiln_dot4_rv32",
    ".type kiln_dot4_rv32,@function",
    ".p2align 2",
    "kiln_dot4_rv32:",
    // a0: row 0, a1: stride, a2: input, a3: inputs (a multiple of 8, > 0), a4: the four
    // accumulators (read, then written back).
    "addi sp, sp, -16",
    "sw a4, 0(sp)",
    "add t0, a0, a1", // row 1
    "add t1, t0, a1", // row 2
    "add t2, t1, a1", // row 3
    "add a3, a2, a3", // the input's end
    "lw a5, 0(a4)",
    "lw a6, 4(a4)",
    "lw a7, 8(a4)",
    "lw a1, 12(a4)",
    "1:",
    // Inputs 0-3.
    "lb t3, 0(a2)",
    "lb t4, 1(a2)",
    "lb t5, 2(a2)",
    "lb t6, 3(a2)",
    "lb a4, 0(a0)",
    "mul a4, a4, t3",
    "add a5, a5, a4",
    "lb a4, 1(a0)",
    "mul a4, a4, t4",
    "add a5, a5, a4",
    "lb a4, 2(a0)",
    "mul a4, a4, t5",
    "add a5, a5, a4",
    "lb a4, 3(a0)",
    "mul a4, a4, t6",
    "add a5, a5, a4",
    "lb a4, 0(t0)",
    "mul a4, a4, t3",
    "add a6, a6, a4",
    "lb a4, 1(t0)",
    "mul a4, a4, t4",
    "add a6, a6, a4",
    "lb a4, 2(t0)",
    "mul a4, a4, t5",
    "add a6, a6, a4",
    "lb a4, 3(t0)",
    "mul a4, a4, t6",
    "add a6, a6, a4",
    "lb a4, 0(t1)",
    "mul a4, a4, t3",
    "add a7, a7, a4",
    "lb a4, 1(t1)",
    "mul a4, a4, t4",
    "add a7, a7, a4",
    "lb a4, 2(t1)",
    "mul a4, a4, t5",
    "add a7, a7, a4",
    "lb a4, 3(t1)",
    "mul a4, a4, t6",
    "add a7, a7, a4",
    "lb a4, 0(t2)",
    "mul a4, a4, t3",
    "add a1, a1, a4",
    "lb a4, 1(t2)",
    "mul a4, a4, t4",
    "add a1, a1, a4",
    "lb a4, 2(t2)",
    "mul a4, a4, t5",
    "add a1, a1, a4",
    "lb a4, 3(t2)",
    "mul a4, a4, t6",
    "add a1, a1, a4",
    // Inputs 4-7.
    "lb t3, 4(a2)",
    "lb t4, 5(a2)",
    "lb t5, 6(a2)",
    "lb t6, 7(a2)",
    "lb a4, 4(a0)",
    "mul a4, a4, t3",
    "add a5, a5, a4",
    "lb a4, 5(a0)",
    "mul a4, a4, t4",
    "add a5, a5, a4",
    "lb a4, 6(a0)",
    "mul a4, a4, t5",
    "add a5, a5, a4",
    "lb a4, 7(a0)",
    "mul a4, a4, t6",
    "add a5, a5, a4",
    "lb a4, 4(t0)",
    "mul a4, a4, t3",
    "add a6, a6, a4",
    "lb a4, 5(t0)",
    "mul a4, a4, t4",
    "add a6, a6, a4",
    "lb a4, 6(t0)",
    "mul a4, a4, t5",
    "add a6, a6, a4",
    "lb a4, 7(t0)",
    "mul a4, a4, t6",
    "add a6, a6, a4",
    "lb a4, 4(t1)",
    "mul a4, a4, t3",
    "add a7, a7, a4",
    "lb a4, 5(t1)",
    "mul a4, a4, t4",
    "add a7, a7, a4",
    "lb a4, 6(t1)",
    "mul a4, a4, t5",
    "add a7, a7, a4",
    "lb a4, 7(t1)",
    "mul a4, a4, t6",
    "add a7, a7, a4",
    "lb a4, 4(t2)",
    "mul a4, a4, t3",
    "add a1, a1, a4",
    "lb a4, 5(t2)",
    "mul a4, a4, t4",
    "add a1, a1, a4",
    "lb a4, 6(t2)",
    "mul a4, a4, t5",
    "add a1, a1, a4",
    "lb a4, 7(t2)",
    "mul a4, a4, t6",
    "add a1, a1, a4",
    "addi a0, a0, 8",
    "addi t0, t0, 8",
    "addi t1, t1, 8",
    "addi t2, t2, 8",
    "addi a2, a2, 8",
    "bne a2, a3, 1b",
    "lw a4, 0(sp)",
    "sw a5, 0(a4)",
    "sw a6, 4(a4)",
    "sw a7, 8(a4)",
    "sw a1, 12(a4)",
    "addi sp, sp, 16",
    "ret",
    ".size kiln_dot4_rv32, . - kiln_dot4_rv32",
    ".option pop",
);

extern "C" {
    fn kiln_dot4_rv32(
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
        // routine uses only caller-saved registers and its own stack slot, and writes only `acc`.
        unsafe { kiln_dot4_rv32(rows.as_ptr(), stride, input.as_ptr(), n, acc) };
    }
}
