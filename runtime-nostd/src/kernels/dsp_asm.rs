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

core::arch::global_asm!(
    ".section .text.kiln_dot4_dsp_widened,\"ax\",%progbits",
    ".global kiln_dot4_dsp_widened",
    ".type kiln_dot4_dsp_widened,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dot4_dsp_widened:",
    // r0: row 0, r1: stride, r2: the widened input (word-aligned, 16 bytes per 8 inputs),
    // r3: groups of 8 inputs (> 0), [sp]: the four accumulators (read, then written back).
    // Sixteen inputs per iteration; an odd group count enters at the second half.
    "push {{r4-r11, lr}}",
    "ldr lr, [sp, #36]",
    "ldm lr, {{r4-r7}}",
    "add r8, r0, r1, lsl #1", // row 2; row 3 is row 2 + stride
    "lsls r12, r3, #31",      // Z clear when the group count is odd
    "add r3, r2, r3, lsl #4", // the widened input's end
    "bne 2f",
    "1:",
    // Inputs 0-3: their lanes 0/2 and 1/3, widened once per layer.
    "ldrd r9, r10, [r2], #8",
    "ldr r11, [r0, r1]",
    "sxtb16 r12, r11",
    "smlad r5, r12, r9, r5",
    "sxtb16 r11, r11, ror #8",
    "smlad r5, r11, r10, r5",
    "ldr r11, [r0], #4",
    "sxtb16 r12, r11",
    "smlad r4, r12, r9, r4",
    "sxtb16 r11, r11, ror #8",
    "smlad r4, r11, r10, r4",
    "ldr r11, [r8, r1]",
    "sxtb16 r12, r11",
    "smlad r7, r12, r9, r7",
    "sxtb16 r11, r11, ror #8",
    "smlad r7, r11, r10, r7",
    "ldr r11, [r8], #4",
    "sxtb16 r12, r11",
    "smlad r6, r12, r9, r6",
    "sxtb16 r11, r11, ror #8",
    "smlad r6, r11, r10, r6",
    // Inputs 4-7: their lanes 0/2 and 1/3, widened once per layer.
    "ldrd r9, r10, [r2], #8",
    "ldr r11, [r0, r1]",
    "sxtb16 r12, r11",
    "smlad r5, r12, r9, r5",
    "sxtb16 r11, r11, ror #8",
    "smlad r5, r11, r10, r5",
    "ldr r11, [r0], #4",
    "sxtb16 r12, r11",
    "smlad r4, r12, r9, r4",
    "sxtb16 r11, r11, ror #8",
    "smlad r4, r11, r10, r4",
    "ldr r11, [r8, r1]",
    "sxtb16 r12, r11",
    "smlad r7, r12, r9, r7",
    "sxtb16 r11, r11, ror #8",
    "smlad r7, r11, r10, r7",
    "ldr r11, [r8], #4",
    "sxtb16 r12, r11",
    "smlad r6, r12, r9, r6",
    "sxtb16 r11, r11, ror #8",
    "smlad r6, r11, r10, r6",
    "2:",
    // Inputs 8-11: their lanes 0/2 and 1/3, widened once per layer.
    "ldrd r9, r10, [r2], #8",
    "ldr r11, [r0, r1]",
    "sxtb16 r12, r11",
    "smlad r5, r12, r9, r5",
    "sxtb16 r11, r11, ror #8",
    "smlad r5, r11, r10, r5",
    "ldr r11, [r0], #4",
    "sxtb16 r12, r11",
    "smlad r4, r12, r9, r4",
    "sxtb16 r11, r11, ror #8",
    "smlad r4, r11, r10, r4",
    "ldr r11, [r8, r1]",
    "sxtb16 r12, r11",
    "smlad r7, r12, r9, r7",
    "sxtb16 r11, r11, ror #8",
    "smlad r7, r11, r10, r7",
    "ldr r11, [r8], #4",
    "sxtb16 r12, r11",
    "smlad r6, r12, r9, r6",
    "sxtb16 r11, r11, ror #8",
    "smlad r6, r11, r10, r6",
    // Inputs 12-15: their lanes 0/2 and 1/3, widened once per layer.
    "ldrd r9, r10, [r2], #8",
    "ldr r11, [r0, r1]",
    "sxtb16 r12, r11",
    "smlad r5, r12, r9, r5",
    "sxtb16 r11, r11, ror #8",
    "smlad r5, r11, r10, r5",
    "ldr r11, [r0], #4",
    "sxtb16 r12, r11",
    "smlad r4, r12, r9, r4",
    "sxtb16 r11, r11, ror #8",
    "smlad r4, r11, r10, r4",
    "ldr r11, [r8, r1]",
    "sxtb16 r12, r11",
    "smlad r7, r12, r9, r7",
    "sxtb16 r11, r11, ror #8",
    "smlad r7, r11, r10, r7",
    "ldr r11, [r8], #4",
    "sxtb16 r12, r11",
    "smlad r6, r12, r9, r6",
    "sxtb16 r11, r11, ror #8",
    "smlad r6, r11, r10, r6",
    "cmp r2, r3",
    "bne 1b",
    "stm lr, {{r4-r7}}",
    "pop {{r4-r11, pc}}",
    ".size kiln_dot4_dsp_widened, . - kiln_dot4_dsp_widened",
);

core::arch::global_asm!(
    ".section .text.kiln_widen_dsp,\"ax\",%progbits",
    ".global kiln_widen_dsp",
    ".type kiln_widen_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_widen_dsp:",
    // r0: the int8 input, r1: the output (word-aligned, 16 bytes per 8 inputs), r2: groups of
    // 8 inputs (> 0). Writes lanes 0/2, 1/3, 4/6, 5/7 of each group: what the loop above loads.
    "push {{r4, r5}}",
    "add r2, r0, r2, lsl #3", // the input's end
    "1:",
    "ldr r4, [r0], #4",
    "ldr r12, [r0], #4",
    "sxtb16 r3, r4",
    "sxtb16 r4, r4, ror #8",
    "sxtb16 r5, r12",
    "sxtb16 r12, r12, ror #8",
    "stm r1!, {{r3, r4, r5, r12}}",
    "cmp r0, r2",
    "bne 1b",
    "pop {{r4, r5}}",
    "bx lr",
    ".size kiln_widen_dsp, . - kiln_widen_dsp",
);

core::arch::global_asm!(
    ".section .text.kiln_dw_mac_dsp,\"ax\",%progbits",
    ".global kiln_dw_mac_dsp",
    ".type kiln_dw_mac_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dw_mac_dsp:",
    // The depthwise inner loop: r0: accumulators (word-aligned, four per step, read and
    // written back), r1: four inputs per step, r2: four weights per step, r3: steps (> 0),
    // [sp]: the input zero point in both 16-bit lanes. acc[i] += w[i] * (x[i] - zp).
    "push {{r4-r11, lr}}",
    "ldr lr, [sp, #36]",
    "1:",
    "ldr r4, [r1], #4",
    "ldr r5, [r2], #4",
    "ldm r0, {{r6-r9}}",
    "sxtb16 r10, r4",        // x0, x2
    "sxtb16 r4, r4, ror #8", // x1, x3
    "ssub16 r10, r10, lr",   // x - zp, exact in 16 bits
    "ssub16 r4, r4, lr",
    "sxtb16 r11, r5",          // w0, w2
    "sxtb16 r5, r5, ror #8",   // w1, w3
    "smlabb r6, r10, r11, r6", // channel 0
    "smlatt r8, r10, r11, r8", // channel 2
    "smlabb r7, r4, r5, r7",   // channel 1
    "smlatt r9, r4, r5, r9",   // channel 3
    "stm r0!, {{r6-r9}}",
    "subs r3, #1",
    "bne 1b",
    "pop {{r4-r11, pc}}",
    ".size kiln_dw_mac_dsp, . - kiln_dw_mac_dsp",
);

extern "C" {
    fn kiln_dw_mac_dsp(acc: *mut i32, input: *const i8, weights: *const u8, steps: usize, zp2: u32);
    fn kiln_widen_dsp(input: *const i8, widened: *mut i8, n_groups: usize);
    fn kiln_dot4_dsp_widened(
        row0: *const u8,
        stride: usize,
        widened: *const i8,
        n_groups: usize,
        acc: *mut [i32; 4],
    );
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

/// [`dot4`] over the widened input (`dot4_widened` in `packed.rs` is its portable twin): adds to
/// `acc[r]` the dot product of the first `8 * n_pairs` inputs, given as 16-bit lanes in
/// `widened` (16 bytes per 8 inputs, word-aligned), with row `r` of the four rows at `rows`.
///
/// The caller proves the reads in bounds: `widened` is word-aligned and holds `16 * n_pairs`
/// bytes, and `rows.len() >= 3 * stride + 8 * n_pairs`. Returns without reading otherwise.
#[inline(always)]
pub fn dot4_widened(
    rows: &[u8],
    stride: usize,
    widened: &[i8],
    n_pairs: usize,
    acc: &mut [i32; 4],
) {
    let in_bounds = n_pairs.checked_mul(16).is_some_and(|len| {
        widened.len() >= len
            && widened.as_ptr().align_offset(4) == 0
            && super::dot4_in_bounds(rows, stride, widened, len / 2, 8)
    });
    if in_bounds {
        // SAFETY: every address read is inside `rows` or `widened` (checked just above), the
        // doubleword loads are word-aligned; the routine follows the AAPCS, saves what it uses,
        // and writes only `acc`.
        unsafe { kiln_dot4_dsp_widened(rows.as_ptr(), stride, widened.as_ptr(), n_pairs, acc) };
    }
}

/// Writes the 16-bit lanes of `input` (eight inputs per group, `n_pairs` groups) into
/// `widened`, 16 bytes per group: the layout [`dot4_widened`] reads (`widen` in `packed.rs` is
/// the portable twin). Writes nothing unless `input` holds `8 * n_pairs` bytes and `widened` is
/// word-aligned with room for `16 * n_pairs`.
#[inline(always)]
pub fn widen_groups(input: &[i8], widened: &mut [i8], n_pairs: usize) {
    let in_bounds = n_pairs > 0
        && n_pairs.checked_mul(8).is_some_and(|len| input.len() >= len)
        && n_pairs
            .checked_mul(16)
            .is_some_and(|len| widened.len() >= len)
        && widened.as_ptr().align_offset(4) == 0;
    if in_bounds {
        // SAFETY: reads `8 * n_pairs` bytes of `input` and writes `16 * n_pairs` bytes of
        // `widened` (word-aligned for the multiple store), both checked just above; AAPCS.
        unsafe { kiln_widen_dsp(input.as_ptr(), widened.as_mut_ptr(), n_pairs) };
    }
}

/// `acc[i] += w[i] * (x[i] - zp)` for the first `4 * (acc.len() / 4)` channels (the portable
/// twin is `mac_words_portable` in `dwconv.rs`). Does nothing unless `x` and `w` hold as many.
#[inline(always)]
pub fn dw_mac(acc: &mut [i32], x: &[i8], w: &[u8], zp: i32) {
    let steps = acc.len() / 4;
    let in_bounds = steps > 0
        && steps
            .checked_mul(4)
            .is_some_and(|n| x.len() >= n && w.len() >= n);
    if in_bounds {
        let zp2 = (zp as u16 as u32).wrapping_mul(0x0001_0001);
        // SAFETY: reads `4 * steps` bytes of `x` and `w` and reads and writes `4 * steps`
        // accumulators of `acc` (an `i32` slice, so word-aligned for LDM/STM), all checked
        // just above; the routine follows the AAPCS and saves what it uses.
        unsafe { kiln_dw_mac_dsp(acc.as_mut_ptr(), x.as_ptr(), w.as_ptr(), steps, zp2) };
    }
}
