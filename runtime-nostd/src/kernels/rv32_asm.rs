//! The four-row kernel's inner loop for RV32IM, in assembly: eight inputs per iteration, every
//! value in a caller-saved register. The compiler's own schedule of the same loop spills and
//! recomputes addresses, and changes with unrelated edits; this one does not.
//!
//! `kiln_fc_blocks_rv32` runs a dense layer's whole blocks of eight rows (inputs a multiple of
//! 16) in one call: sixteen inputs per iteration, so that each input byte serves eight
//! multiply-accumulates and the nine pointer steps are paid once per 128 (3.2 instructions per
//! MAC against the four-row loop's 3.44), then the output stage of `rq_high_zp` with `MULH`.
#![allow(unsafe_code)]

use super::FcParams;

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

/// Input `$j` of the eight-row loop: `x = input[j]` (t0: the input), eight multiply-accumulates
/// (rows in a0-a7, accumulators in s0-s7).
macro_rules! rv_step8 {
    ($j:literal) => {
        concat!(
            "lb t2, ",
            $j,
            "(t0)\n",
            "lb t3, ",
            $j,
            "(a0)\n",
            "mul t3, t3, t2\n",
            "add s0, s0, t3\n",
            "lb t3, ",
            $j,
            "(a1)\n",
            "mul t3, t3, t2\n",
            "add s1, s1, t3\n",
            "lb t3, ",
            $j,
            "(a2)\n",
            "mul t3, t3, t2\n",
            "add s2, s2, t3\n",
            "lb t3, ",
            $j,
            "(a3)\n",
            "mul t3, t3, t2\n",
            "add s3, s3, t3\n",
            "lb t3, ",
            $j,
            "(a4)\n",
            "mul t3, t3, t2\n",
            "add s4, s4, t3\n",
            "lb t3, ",
            $j,
            "(a5)\n",
            "mul t3, t3, t2\n",
            "add s5, s5, t3\n",
            "lb t3, ",
            $j,
            "(a6)\n",
            "mul t3, t3, t2\n",
            "add s6, s6, t3\n",
            "lb t3, ",
            $j,
            "(a7)\n",
            "mul t3, t3, t2\n",
            "add s7, s7, t3\n",
        )
    };
}

core::arch::global_asm!(
    ".option push",
    ".option arch, +m",
    ".section .text.kiln_fc_blocks_rv32,\"ax\",@progbits",
    ".global kiln_fc_blocks_rv32",
    ".type kiln_fc_blocks_rv32,@function",
    ".p2align 2",
    "kiln_fc_blocks_rv32:",
    // a0: a `Blocks8` (offsets in its definition), read and advanced block by block.
    "addi sp, sp, -80",
    "sw s0, 0(sp)",
    "sw s1, 4(sp)",
    "sw s2, 8(sp)",
    "sw s3, 12(sp)",
    "sw s4, 16(sp)",
    "sw s5, 20(sp)",
    "sw s6, 24(sp)",
    "sw s7, 28(sp)",
    "sw s8, 32(sp)",
    "sw s9, 36(sp)",
    "sw s10, 40(sp)",
    "sw s11, 44(sp)",
    // 48(sp)..80(sp): the eight accumulators between the loop and the output stage
    "mv s8, a0",
    "lw s9, 32(s8)",  // 2 zp + 1
    "lw s10, 36(s8)", // clamp_min
    "lw s11, 40(s8)", // clamp_max
    "3:",
    "lw t4, 28(s8)", // blocks left
    "beqz t4, 9f",
    // bias (word-aligned) into the accumulators
    "lw t4, 12(s8)",
    "lw s0, 0(t4)",
    "lw s1, 4(t4)",
    "lw s2, 8(t4)",
    "lw s3, 12(t4)",
    "lw s4, 16(t4)",
    "lw s5, 20(t4)",
    "lw s6, 24(t4)",
    "lw s7, 28(t4)",
    "lw t5, 4(s8)", // stride = inputs
    "lw a0, 0(s8)",
    "add a1, a0, t5",
    "add a2, a1, t5",
    "add a3, a2, t5",
    "add a4, a3, t5",
    "add a5, a4, t5",
    "add a6, a5, t5",
    "add a7, a6, t5",
    "lw t0, 8(s8)",   // input
    "add t1, t0, t5", // its end
    "1:",
    rv_step8!("0"),
    rv_step8!("1"),
    rv_step8!("2"),
    rv_step8!("3"),
    rv_step8!("4"),
    rv_step8!("5"),
    rv_step8!("6"),
    rv_step8!("7"),
    rv_step8!("8"),
    rv_step8!("9"),
    rv_step8!("10"),
    rv_step8!("11"),
    rv_step8!("12"),
    rv_step8!("13"),
    rv_step8!("14"),
    rv_step8!("15"),
    "addi a0, a0, 16",
    "addi a1, a1, 16",
    "addi a2, a2, 16",
    "addi a3, a3, 16",
    "addi a4, a4, 16",
    "addi a5, a5, 16",
    "addi a6, a6, 16",
    "addi a7, a7, 16",
    "addi t0, t0, 16",
    "bne t0, t1, 1b",
    // a7 has moved one row on: the next block's row 0
    "sw a7, 0(s8)",
    "sw s0, 48(sp)",
    "sw s1, 52(sp)",
    "sw s2, 56(sp)",
    "sw s3, 60(sp)",
    "sw s4, 64(sp)",
    "sw s5, 68(sp)",
    "sw s6, 72(sp)",
    "sw s7, 76(sp)",
    // The output stage, row by row: `rq_high_zp` for t in 33..=62; any other shift ends the
    // call with the block unfinished (the caller finishes the layer).
    "addi a0, sp, 48", // accumulators
    "addi a1, sp, 80", // their end
    "lw a2, 16(s8)",   // multipliers
    "lw a3, 20(s8)",   // shifts
    "lw a4, 24(s8)",   // output
    "li a5, 30",
    "2:",
    "lbu t4, 0(a3)",
    "addi t4, t4, -33", // s1 = t - 33
    "bgeu t4, a5, 9f",
    "lw t2, 0(a0)",
    "lw t3, 0(a2)",
    "mul t5, t2, t3",  // lo
    "mulh t6, t2, t3", // hi
    "bnez t5, 4f",
    // a zero low half rounds by odd = bit 1 of hi >> s1: hi + odd - 1
    "sra t5, t6, t4",
    "srli t5, t5, 1",
    "andi t5, t5, 1",
    "add t6, t6, t5",
    "addi t6, t6, -1",
    "4:",
    "sra t6, t6, t4",
    "add t6, t6, s9",
    "srai t6, t6, 1",
    "bge t6, s10, 5f",
    "mv t6, s10",
    "5:",
    "bge s11, t6, 6f",
    "mv t6, s11",
    "6:",
    "sb t6, 0(a4)",
    "addi a0, a0, 4",
    "addi a2, a2, 4",
    "addi a3, a3, 1",
    "addi a4, a4, 1",
    "bne a0, a1, 2b",
    "sw a2, 16(s8)",
    "sw a3, 20(s8)",
    "sw a4, 24(s8)",
    "lw t4, 12(s8)",
    "addi t4, t4, 32",
    "sw t4, 12(s8)",
    "lw t4, 28(s8)",
    "addi t4, t4, -1",
    "sw t4, 28(s8)",
    "j 3b",
    "9:",
    "lw s0, 0(sp)",
    "lw s1, 4(sp)",
    "lw s2, 8(sp)",
    "lw s3, 12(sp)",
    "lw s4, 16(sp)",
    "lw s5, 20(sp)",
    "lw s6, 24(sp)",
    "lw s7, 28(sp)",
    "lw s8, 32(sp)",
    "lw s9, 36(sp)",
    "lw s10, 40(sp)",
    "lw s11, 44(sp)",
    "addi sp, sp, 80",
    "ret",
    ".size kiln_fc_blocks_rv32, . - kiln_fc_blocks_rv32",
    ".option pop",
);

extern "C" {
    fn kiln_fc_blocks_rv32(blocks: *mut Blocks8);
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

/// What [`kiln_fc_blocks_rv32`] reads and advances, at fixed offsets (checked below).
#[repr(C)]
struct Blocks8 {
    rows: *const u8,
    stride: usize,
    input: *const i8,
    bias: *const u8,
    multipliers: *const u8,
    shifts: *const u8,
    output: *mut i8,
    n_blocks: usize,
    round_zp: i32,
    clamp_min: i32,
    clamp_max: i32,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Blocks8, rows) == 0 && offset_of!(Blocks8, stride) == 4);
    assert!(offset_of!(Blocks8, input) == 8 && offset_of!(Blocks8, bias) == 12);
    assert!(offset_of!(Blocks8, multipliers) == 16 && offset_of!(Blocks8, shifts) == 20);
    assert!(offset_of!(Blocks8, output) == 24 && offset_of!(Blocks8, n_blocks) == 28);
    assert!(offset_of!(Blocks8, round_zp) == 32 && offset_of!(Blocks8, clamp_min) == 36);
    assert!(offset_of!(Blocks8, clamp_max) == 40);
};

/// The whole blocks of eight rows of a layer whose input is a positive multiple of 16 long,
/// into `output[..8 * blocks]`, up to the first block with a shift outside `33..=62`
/// (`rows4::fc_blocks8_portable` is the portable twin). Returns the rows written: 0 unless the
/// slices hold what the routine reads and writes and the bias and multipliers are word-aligned
/// (a blob at a 4-byte-aligned address has them so).
#[inline(always)]
pub fn fc_blocks8(params: &FcParams<'_>, input: &[i8], output: &mut [i8]) -> usize {
    let n_in = input.len();
    let n_blocks = output.len() / 8;
    let n_rows = n_blocks.wrapping_mul(8);
    let in_bounds = n_blocks > 0
        && n_in > 0
        && n_in % 16 == 0
        && params.holds_rows(n_rows, n_in)
        && params.words_aligned();
    if !in_bounds {
        return 0;
    }
    let mut blocks = Blocks8 {
        rows: params.weights.as_ptr(),
        stride: n_in,
        input: input.as_ptr(),
        bias: params.bias.as_ptr(),
        multipliers: params.multipliers.as_ptr(),
        shifts: params.shifts.as_ptr(),
        output: output.as_mut_ptr(),
        n_blocks,
        round_zp: crate::fixed::round_zp(params.output_zero_point),
        clamp_min: i32::from(params.clamp_min),
        clamp_max: i32::from(params.clamp_max),
    };
    // SAFETY: the routine reads `8 * n_blocks` rows of `n_in` weights, the `n_in` inputs,
    // `8 * n_blocks` word-aligned biases and multipliers and as many shifts, and writes
    // `8 * n_blocks` output bytes: all checked just above. It restores s0-s11 and sp, uses
    // only its own stack frame, and writes only `blocks` and the output.
    unsafe { kiln_fc_blocks_rv32(&mut blocks) };
    // The routine counts `n_blocks` down as it finishes each block.
    n_blocks.saturating_sub(blocks.n_blocks).wrapping_mul(8)
}
