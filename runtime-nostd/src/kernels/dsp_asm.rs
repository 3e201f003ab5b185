//! The packed kernel's inner loop for Armv7E-M, in assembly: four rows, eight inputs per
//! iteration, every register in use (the compiler spills accumulators when it has to allocate
//! fourteen values itself).
#![allow(unsafe_code)]

use super::{bytes4, FcParams};

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
    ".section .text.kiln_dot4_widened_body,\"ax\",%progbits",
    ".type kiln_dot4_widened_body,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dot4_widened_body:",
    // Not AAPCS: the loop of `kiln_dot4_dsp_widened` (rows at any alignment).
    // In: r0 row 0, r1 stride (bytes between rows), r2 the widened input (word-aligned, 16
    // bytes per 8 inputs), r3 groups of 8 inputs (> 0), r4-r7 the four accumulators.
    // Out: r4-r7 with the four dot products added, r0 advanced by 8 * groups. Clobbers r2,
    // r3, r8-r12. Sixteen inputs per iteration; an odd group count enters at the second half.
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
    "bx lr",
    ".size kiln_dot4_widened_body, . - kiln_dot4_widened_body",
);

/// Eight inputs of `kiln_dot2_widened_body`: their four widened words (lanes 0/2 and 1/3 of
/// inputs 0-3, then of 4-7) in one `LDM`, and eight weights of each row in one `LDRD`, so each
/// row pays one load per eight MACs where the four-row loop pays one per four.
macro_rules! dot2_step {
    () => {
        concat!(
            "ldm r2!, {{r8-r11}}\n",
            "ldrd r6, r7, [r0], #8\n",
            "sxtb16 r12, r6\n",
            "smlad r4, r12, r8, r4\n",
            "sxtb16 r6, r6, ror #8\n",
            "smlad r4, r6, r9, r4\n",
            "sxtb16 r12, r7\n",
            "smlad r4, r12, r10, r4\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad r4, r7, r11, r4\n",
            "ldrd r6, r7, [r1], #8\n",
            "sxtb16 r12, r6\n",
            "smlad r5, r12, r8, r5\n",
            "sxtb16 r6, r6, ror #8\n",
            "smlad r5, r6, r9, r5\n",
            "sxtb16 r12, r7\n",
            "smlad r5, r12, r10, r5\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad r5, r7, r11, r5\n",
        )
    };
}

core::arch::global_asm!(
    ".section .text.kiln_dot2_widened_body,\"ax\",%progbits",
    ".type kiln_dot2_widened_body,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dot2_widened_body:",
    // Not AAPCS: the dense blocks' loop, two rows at a time. In: r0 row A, r1 row B (both
    // word-aligned: LDRD), r2 the widened input (word-aligned, 16 bytes per 8 inputs), r3
    // groups of 8 inputs (> 0), r4/r5 the two accumulators. Out: r4/r5 with the dot products
    // added, r0 and r1 advanced by 8 * groups. Clobbers r2, r3, r6-r12. Sixteen inputs per
    // iteration: four steps were 0.028 instructions per MAC faster on MNIST 784-128-10 but
    // 164 B more code on the Cortex-M4F (above issue 18's 6,144 B). An odd group count enters
    // at the second step.
    "lsls r12, r3, #31",      // Z clear when the group count is odd
    "add r3, r2, r3, lsl #4", // the widened input's end
    "bne 2f",
    "1:",
    dot2_step!(),
    "2:",
    dot2_step!(),
    "cmp r2, r3",
    "bne 1b",
    "bx lr",
    ".size kiln_dot2_widened_body, . - kiln_dot2_widened_body",
);

core::arch::global_asm!(
    ".section .text.kiln_dot4_dsp_widened,\"ax\",%progbits",
    ".global kiln_dot4_dsp_widened",
    ".type kiln_dot4_dsp_widened,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dot4_dsp_widened:",
    // r0: row 0, r1: stride, r2: the widened input, r3: groups of 8 inputs (> 0), [sp]: the
    // four accumulators (read, then written back).
    "push {{r4-r11, lr}}",
    "ldr lr, [sp, #36]",
    "push {{lr}}",
    "ldm lr, {{r4-r7}}",
    "bl kiln_dot4_widened_body",
    "pop {{lr}}",
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
    // [sp]: minus the input zero point in both 16-bit lanes. acc[i] += w[i] * (x[i] - zp).
    "push {{r4-r11, lr}}",
    "ldr lr, [sp, #36]",
    "1:",
    "ldr r4, [r1], #4",
    "ldr r5, [r2], #4",
    "ldm r0, {{r6-r9}}",
    "sxtab16 r10, lr, r4",        // x0 - zp, x2 - zp: exact in 16 bits
    "sxtab16 r4, lr, r4, ror #8", // x1 - zp, x3 - zp
    "sxtb16 r11, r5",             // w0, w2
    "sxtb16 r5, r5, ror #8",      // w1, w3
    "smlabb r6, r10, r11, r6",    // channel 0
    "smlatt r8, r10, r11, r8",    // channel 2
    "smlabb r7, r4, r5, r7",      // channel 1
    "smlatt r9, r4, r5, r9",      // channel 3
    "stm r0!, {{r6-r9}}",
    "subs r3, #1",
    "bne 1b",
    "pop {{r4-r11, pc}}",
    ".size kiln_dw_mac_dsp, . - kiln_dw_mac_dsp",
);

/// The multiply-accumulates of one depthwise tap: the input word in r8 split into 16-bit
/// lanes and added to `-zp` (r12, both lanes: `SXTAB16` extends and adds in one, and `x - zp`
/// fits 16 bits), times the weight lanes `w02` in r10 and `w13` in r11, into the accumulators
/// r4-r7 (channels 0-3).
macro_rules! dw_tap_macs {
    () => {
        concat!(
            "sxtab16 r9, r12, r8, ror #8\n", // x1 - zp, x3 - zp
            "sxtab16 r8, r12, r8\n",         // x0 - zp, x2 - zp
            "smlabb r4, r8, r10, r4\n",
            "smlatt r6, r8, r10, r6\n",
            "smlabb r5, r9, r11, r5\n",
            "smlatt r7, r9, r11, r7\n",
        )
    };
}

/// One tap of `kiln_dw_pixel_dsp`: the input word at `$x`, the weight word at `$w` split into
/// its 16-bit lanes, then `dw_tap_macs!`: 10 instructions per four multiply-accumulates.
macro_rules! dw_tap {
    ($x:literal, $w:literal) => {
        concat!(
            "ldr r8, ",
            $x,
            "\n",
            "ldr r10, ",
            $w,
            "\n",
            "sxtb16 r11, r10, ror #8\n",
            "sxtb16 r10, r10\n",
            dw_tap_macs!(),
        )
    };
}

/// One tap of `kiln_dw_pixel_wide_dsp`: as `dw_tap!`, with the weights already in their
/// 16-bit lanes, `w02` and `w13` in the two words at `$w` (one `LDRD`, no `SXTB16`): 8
/// instructions per four multiply-accumulates instead of 10.
macro_rules! dw_tap_wide {
    ($x:literal, $w:literal) => {
        concat!(
            "ldr r8, ",
            $x,
            "\n",
            "ldrd r10, r11, ",
            $w,
            "\n",
            dw_tap_macs!(),
        )
    };
}

/// The end of a tap row of `kiln_dw_pixel_dsp`: both pointers one row on, the next row while
/// rows remain (`$label` the row's start), else on to the output stage.
macro_rules! dw_row_end {
    ($label:literal) => {
        concat!(
            "ldr r8, [lr, #36]\n",
            "add r0, r0, r8\n",
            "ldr r8, [lr, #40]\n",
            "add r2, r2, r8\n",
            "subs r3, r3, #1\n",
            "bne ",
            $label,
            "\n",
        )
    };
}

/// `sat8(zp + rq_acc(acc, M, t))` of accumulator `$acc` into `$acc`, as `fixed::rq_high_zp`
/// computes it, M in `$m` and `s - 1 = t - 33` in r12, 2 zp + 1 in r8; r2, r3 and `$m` are
/// scratch. `rq_high_zp`'s `hi + up - 1` is `hi` itself whenever the product's low half is not
/// 0 (then `up` is 1), so only a zero low half branches to `$slow` (an
/// `rq_high_zp_slow!("r3", ..)` block, within 126 bytes after), which comes back to `$back`.
macro_rules! rq_high_zp_fast {
    ($acc:literal, $m:literal, $slow:literal, $back:literal) => {
        concat!(
            "smull r2, r3, ",
            $acc,
            ", ",
            $m,
            "\n",
            "cbz r2, ",
            $slow,
            "f\n",
            $back,
            ":\n",
            "asr r3, r3, r12\n",
            "add r3, r3, r8\n", // + 2 zp + 1
            "ssat ",
            $acc,
            ", #8, r3, asr #1\n",
        )
    };
}

/// The zero-low-half case of [`rq_high_zp_fast`]: `hi + odd - 1` in `$hi` (r3 there), `odd`
/// bit `s` of the high half (`$m`: a scratch register, `s - 1` in r12), then back to `$back`.
macro_rules! rq_high_zp_slow {
    ($hi:literal, $m:literal, $slow:literal, $back:literal) => {
        concat!(
            $slow,
            ":\n",
            "lsr ",
            $m,
            ", ",
            $hi,
            ", r12\n",
            "ubfx ",
            $m,
            ", ",
            $m,
            ", #1, #1\n", // odd: bit s of the high half
            "add ",
            $hi,
            ", ",
            $hi,
            ", ",
            $m,
            "\n",
            "sub ",
            $hi,
            ", ",
            $hi,
            ", #1\n",
            "b ",
            $back,
            "b\n",
        )
    };
}

/// r4-r7's low bytes packed into r4 (lane k from r(4+k)), then both clamps on the four lanes
/// at once ([`clamp4`]). Clobbers r9 and r10.
macro_rules! pack4_clamp {
    ($min:literal, $max:literal) => {
        concat!(
            "bfi r4, r5, #8, #8\n",
            "bfi r4, r6, #16, #8\n",
            "bfi r4, r7, #24, #8\n",
            clamp4!($min, $max),
        )
    };
}

/// Both clamps on the four byte lanes of r4 at once (`SSUB8` sets the lanes' GE flags, `SEL`
/// picks): `$min` and `$max` address the clamps, each in every byte. Clobbers r9 and r10.
macro_rules! clamp4 {
    ($min:literal, $max:literal) => {
        concat!(
            "ldr r9, ",
            $min,
            "\n",
            "ssub8 r10, r4, r9\n",
            "sel r4, r4, r9\n", // max(q, clamp_min)
            "ldr r9, ",
            $max,
            "\n",
            "ssub8 r10, r4, r9\n",
            "sel r4, r9, r4\n", // min(q, clamp_max)
        )
    };
}

/// [`rq_high_zp_fast`] for the next channel of a block: its M (r11, from r9) and `t - 33`
/// (r12, from the shift byte at r10), both pointers advanced.
macro_rules! rq_high_zp_next {
    ($acc:literal, $slow:literal, $back:literal) => {
        concat!(
            "ldr r11, [r9], #4\n",
            "ldrb r12, [r10], #1\n",
            "sub r12, r12, #33\n", // s - 1
            rq_high_zp_fast!($acc, "r11", $slow, $back),
        )
    };
}

/// The output stage of four channels' accumulators r4-r7, each channel's `(M, s - 1)` a word
/// pair at `[$base, #$at]` (`LDRD` into r11/r12; 2 zp + 1 in r8, r2/r3 scratch), the rare
/// zero-low-half paths after a branch over them, ending at label `21`.
macro_rules! rq4_at {
    ($base:literal, $at0:literal, $at1:literal, $at2:literal, $at3:literal) => {
        concat!(
            "ldrd r11, r12, [",
            $base,
            ", #",
            $at0,
            "]\n",
            rq_high_zp_fast!("r4", "r11", "31", "41"),
            "ldrd r11, r12, [",
            $base,
            ", #",
            $at1,
            "]\n",
            rq_high_zp_fast!("r5", "r11", "32", "42"),
            "ldrd r11, r12, [",
            $base,
            ", #",
            $at2,
            "]\n",
            rq_high_zp_fast!("r6", "r11", "33", "43"),
            "ldrd r11, r12, [",
            $base,
            ", #",
            $at3,
            "]\n",
            rq_high_zp_fast!("r7", "r11", "34", "44"),
            "b 21f\n",
            rq_high_zp_slow!("r3", "r11", "31", "41"),
            rq_high_zp_slow!("r3", "r11", "32", "42"),
            rq_high_zp_slow!("r3", "r11", "33", "43"),
            rq_high_zp_slow!("r3", "r11", "34", "44"),
            "21:\n",
        )
    };
}

/// One element `$ror` bits into the words of `kiln_add_words_dsp` (a in r4, b in r5):
/// `acc = K + W_a a + W_b b`, then `fixed::rq_high_zp` (the zero-low-half adjustment out of
/// line at `$slow`, an [`rq_high_zp_slow`] block on r7), into byte `$ror / 8` of r4 (a's byte
/// there is read by then).
macro_rules! add_element {
    ($sxtb_a:literal, $sxtb_b:literal, $bfi:literal, $slow:literal, $back:literal) => {
        concat!(
            $sxtb_a,
            "\n",
            $sxtb_b,
            "\n",
            "mla r6, r6, r8, r10\n",
            "mla r6, r7, r9, r6\n",
            "smull r6, r7, r6, r11\n",
            "cbz r6, ",
            $slow,
            "f\n",
            $back,
            ":\n",
            "asr r7, r7, r12\n",
            "add r7, r7, lr\n", // + 2 zp + 1
            "ssat r7, #8, r7, asr #1\n",
            $bfi,
            "\n",
        )
    };
}

/// The directives that open the Thumb routine `$name` (a `global_asm!` generated by a macro):
/// its own section, global, a function, word-aligned, then its label.
macro_rules! thumb_routine_start {
    ($name:literal) => {
        concat!(
            ".section .text.",
            $name,
            ",\"ax\",%progbits\n",
            ".global ",
            $name,
            "\n",
            ".type ",
            $name,
            ",%function\n",
            ".p2align 2\n",
            ".thumb_func\n",
            $name,
            ":"
        )
    };
}

/// One pixel's blocks of four depthwise channels (`kiln_dw_pixel_dsp`, or `wide`:
/// `kiln_dw_pixel_wide_dsp`, on weights widened once per call, `DwArgs::w_block` bytes per
/// block and 8 per tap).
macro_rules! dw_pixel_routine {
    ($name:literal, $tap:ident, $w1:literal, $w2:literal, $next_w:literal) => {
        core::arch::global_asm!(
            thumb_routine_start!($name),
            // r0: a `DwArgs` (offsets in its definition), read and advanced block by block. A
            // block is four channels of one output pixel: accumulators r4-r7 from the bias,
            // every valid tap of the window (rows of 1, 2 or 3 taps, `c` bytes apart in the
            // input; `c` or 8 in the weights), the output stage, four bytes out. Tap loop
            // registers: r0 the input row, r1 c, r2 the weight row, r3 the rows left, r8-r11 a
            // tap's lanes, r12 minus the input zero point in both lanes, lr the arguments
            // (`LDRD` and `STRD` on its adjacent fields: the struct is word-aligned).
            "push {{r4-r11, lr}}",
            "mov lr, r0",
            "ldr r12, [lr, #48]",
            "1:",
            "ldrd r0, r2, [lr, #0]",  // this block's input and weights
            "ldrd r1, r3, [lr, #24]", // c, rows
            "ldr r8, [lr, #8]",
            "ldr r4, [r8], #4",
            "ldr r5, [r8], #4",
            "ldr r6, [r8], #4",
            "ldr r7, [r8], #4",
            "str r8, [lr, #8]",
            "ldr r8, [lr, #32]",
            "cmp r8, #2",
            "beq 12f",
            "blo 11f",
            "13:",
            $tap!("[r0]", "[r2]"),
            $tap!("[r0, r1]", $w1),
            $tap!("[r0, r1, lsl #1]", $w2),
            dw_row_end!("13b"),
            "b 20f",
            "12:",
            $tap!("[r0]", "[r2]"),
            $tap!("[r0, r1]", $w1),
            dw_row_end!("12b"),
            "b 20f",
            "11:",
            $tap!("[r0]", "[r2]"),
            dw_row_end!("11b"),
            "20:",
            "ldrd r9, r10, [lr, #12]", // multipliers, shifts
            "ldr r8, [lr, #52]",       // 2 zp + 1
            rq_high_zp_next!("r4", "31", "41"),
            rq_high_zp_next!("r5", "32", "42"),
            rq_high_zp_next!("r6", "33", "43"),
            rq_high_zp_next!("r7", "34", "44"),
            "b 21f",
            rq_high_zp_slow!("r3", "r11", "31", "41"),
            rq_high_zp_slow!("r3", "r11", "32", "42"),
            rq_high_zp_slow!("r3", "r11", "33", "43"),
            rq_high_zp_slow!("r3", "r11", "34", "44"),
            "21:",
            "strd r9, r10, [lr, #12]",
            pack4_clamp!("[lr, #56]", "[lr, #60]"),
            "ldr r9, [lr, #20]",
            "str r4, [r9], #4",
            "str r9, [lr, #20]",
            // The next block: four channels on, and its weights.
            "ldrd r0, r2, [lr, #0]",
            "add r0, r0, #4",
            $next_w,
            "strd r0, r2, [lr, #0]",
            "ldr r12, [lr, #48]",
            "ldr r3, [lr, #44]",
            "subs r3, r3, #1",
            "str r3, [lr, #44]",
            "bne 1b",
            "pop {{r4-r11, pc}}",
            concat!(".size ", $name, ", . - ", $name),
        );
    };
}

dw_pixel_routine!(
    "kiln_dw_pixel_dsp",
    dw_tap,
    "[r2, r1]",
    "[r2, r1, lsl #1]",
    "add r2, r2, #4"
);
dw_pixel_routine!(
    "kiln_dw_pixel_wide_dsp",
    dw_tap_wide,
    "[r2, #8]",
    "[r2, #16]",
    "ldr r9, [lr, #64]\nadd r2, r2, r9"
);

core::arch::global_asm!(
    ".section .text.kiln_add_words_dsp,\"ax\",%progbits",
    ".global kiln_add_words_dsp",
    ".type kiln_add_words_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_add_words_dsp:",
    // r0: an `AddArgs` (offsets in its definition). Per word of four elements of a and b:
    // the four outputs into one word, both clamps on all four lanes, one word out.
    // Loop registers: r0 a, r1 b, r2 the output, r3 a's end, r4 a's word (then the outputs),
    // r5 b's word, r6 r7 scratch, r8 W_a, r9 W_b, r10 K, r11 M, r12 s - 1, lr 2 zp + 1;
    // the clamps on the stack.
    "push {{r4-r11, lr}}",
    "sub sp, sp, #8",
    "ldr r4, [r0, #36]",
    "ldr r5, [r0, #40]",
    "strd r4, r5, [sp]",
    "ldrd r8, r9, [r0, #16]",
    "ldrd r10, r11, [r0, #24]",
    "ldr r12, [r0, #32]",
    "ldr lr, [r0, #44]",
    "ldr r3, [r0, #12]",
    "ldrd r1, r2, [r0, #4]",
    "ldr r0, [r0]",
    "add r3, r0, r3, lsl #2",
    "1:",
    "ldr r4, [r0], #4",
    "ldr r5, [r1], #4",
    add_element!(
        "sxtb r6, r4",
        "sxtb r7, r5",
        "bfi r4, r7, #0, #8",
        "30",
        "40"
    ),
    add_element!(
        "sxtb r6, r4, ror #8",
        "sxtb r7, r5, ror #8",
        "bfi r4, r7, #8, #8",
        "31",
        "41"
    ),
    // (cbz reaches 126 bytes forward: the first two elements' rare paths sit here.)
    "b 5f",
    rq_high_zp_slow!("r7", "r6", "30", "40"),
    rq_high_zp_slow!("r7", "r6", "31", "41"),
    "5:",
    add_element!(
        "sxtb r6, r4, ror #16",
        "sxtb r7, r5, ror #16",
        "bfi r4, r7, #16, #8",
        "32",
        "42"
    ),
    add_element!(
        "sxtb r6, r4, ror #24",
        "sxtb r7, r5, ror #24",
        "bfi r4, r7, #24, #8",
        "33",
        "43"
    ),
    "ldr r5, [sp]",
    "ssub8 r6, r4, r5",
    "sel r4, r4, r5", // max(q, clamp_min)
    "ldr r5, [sp, #4]",
    "ssub8 r6, r4, r5",
    "sel r4, r5, r4", // min(q, clamp_max)
    "str r4, [r2], #4",
    "cmp r0, r3",
    "bne 1b",
    "add sp, sp, #8",
    "pop {{r4-r11, pc}}",
    rq_high_zp_slow!("r7", "r6", "32", "42"),
    rq_high_zp_slow!("r7", "r6", "33", "43"),
    ".size kiln_add_words_dsp, . - kiln_add_words_dsp",
);

core::arch::global_asm!(
    ".section .text.kiln_fc_dsp,\"ax\",%progbits",
    ".global kiln_fc_dsp",
    ".type kiln_fc_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_fc_dsp:",
    // The whole dense layer. r0: an `Fc` (offsets in its definition), read and advanced as
    // the rows go. First the whole blocks of four rows (`n_blocks` of them: the caller gives
    // none unless the input is widened and the weights word-aligned): bias, the widened loop
    // above, the output stage, four bytes out. A block with a shift outside 33..=62 ends
    // them. Then every row left, one at a time, with the output stage of any shift.
    "push {{r4-r11, lr}}",
    "sub sp, sp, #4", // where `fc` waits while the loop uses lr
    "mov lr, r0",
    "str lr, [sp]",
    "ldr r0, [lr, #0]", // row 0 of the block
    "ldr r9, [lr, #32]",
    "cmp r9, #0",
    "beq 4f",
    "3:",
    // bytes t - 33 (wrapping) above 29, found four at a time
    "ldr r9, [lr, #24]",
    "ldr r9, [r9]",
    "mov r10, #0x21212121", // 33 in every byte
    "usub8 r9, r9, r10",
    "mov r10, #0x1d1d1d1d", // 29 in every byte
    "uqsub8 r9, r9, r10",
    "cmp r9, #0",
    "bne 4f",
    // Rows 0 and 1, then rows 2 and 3 (rows 0 and 1's sums wait on the stack).
    "ldr r9, [lr, #16]",
    "ldr r4, [r9]",
    "ldr r5, [r9, #4]",
    "ldr r1, [lr, #4]",  // the stride
    "add r1, r0, r1",    // row 1
    "ldr r2, [lr, #8]",  // the widened input
    "ldr r3, [lr, #12]", // its groups of 8 inputs
    "bl kiln_dot2_widened_body",
    // r0 and r1 have moved one row on: rows 2 and 3 start at r1 and one stride further.
    "sub r8, r1, r0",
    "mov r0, r1",
    "add r1, r1, r8",
    "push {{r4, r5}}",
    "ldr lr, [sp, #8]",
    "ldr r9, [lr, #16]",
    "ldr r4, [r9, #8]",
    "ldr r5, [r9, #12]",
    "add r9, r9, #16",
    "str r9, [lr, #16]",
    "ldr r2, [lr, #8]",
    "ldr r3, [lr, #12]",
    "bl kiln_dot2_widened_body",
    // the four sums on the stack in row order (rows 0 and 1's were there already)
    "pop {{r6, r7}}",
    "push {{r4, r5}}",
    "push {{r6, r7}}",
    "ldr lr, [sp, #16]",
    "mov r0, r1",         // the next block's row 0
    "ldr r9, [lr, #20]",  // multipliers
    "ldr r10, [lr, #24]", // shifts
    "ldr r8, [lr, #36]",  // 2 zp + 1
    // the output stage two rows per iteration (two copies of it, not four: about 75 bytes
    // less code for two instructions more per row), their bytes entering r6 from the top
    "movs r7, #2",
    "22:",
    "pop {{r4, r5}}",
    rq_high_zp_next!("r4", "31", "41"),
    rq_high_zp_next!("r5", "32", "42"),
    "lsr r6, r6, #16",
    "bfi r6, r4, #16, #8",
    "bfi r6, r5, #24, #8",
    "subs r7, #1",
    "bne 22b",
    "b 21f",
    rq_high_zp_slow!("r3", "r11", "31", "41"),
    rq_high_zp_slow!("r3", "r11", "32", "42"),
    "21:",
    "str r9, [lr, #20]",
    "str r10, [lr, #24]",
    "mov r4, r6",
    clamp4!("[lr, #40]", "[lr, #44]"),
    "ldr r9, [lr, #28]",
    "str r4, [r9], #4",
    "str r9, [lr, #28]",
    "ldr r9, [lr, #52]",
    "sub r9, r9, #4",
    "str r9, [lr, #52]",
    "ldr r9, [lr, #32]",
    "subs r9, r9, #1",
    "str r9, [lr, #32]",
    "bne 3b",
    "4:",
    // ---- One row at a time (r0: its weights, any alignment: LDR). acc (r4) = bias + the
    // dot product over the groups of 8 inputs (from the widened input, or from the inputs
    // split as they are read), then over the last n_in % 8 inputs byte by byte. `fc` in r7:
    // low registers keep most of these instructions at two bytes.
    "mov r7, lr",
    "40:",
    "ldr r3, [r7, #52]", // rows left
    "cbnz r3, 41f",
    "add sp, sp, #4",
    "pop {{r4-r11, pc}}",
    "41:",
    "subs r3, #1",
    "str r3, [r7, #52]",
    "ldr r3, [r7, #16]",
    "ldr r4, [r3], #4", // the bias
    "str r3, [r7, #16]",
    "ldr r1, [r7, #48]", // the int8 input
    "ldr r2, [r7, #8]",  // the widened input, or 0
    "ldr r3, [r7, #12]", // groups of 8 inputs
    "cbz r3, 7f",
    "cbz r2, 6f",
    "add r1, r1, r3, lsl #3", // the tail's inputs
    "add r3, r2, r3, lsl #4", // the widened input's end
    "5:",
    "ldrd r5, r6, [r2], #8", // inputs 0-3: lanes 0/2 and 1/3
    "ldr r12, [r0], #4",
    "sxtb16 r8, r12",
    "smlad r4, r8, r5, r4",
    "sxtb16 r12, r12, ror #8",
    "smlad r4, r12, r6, r4",
    "ldrd r5, r6, [r2], #8", // inputs 4-7
    "ldr r12, [r0], #4",
    "sxtb16 r8, r12",
    "smlad r4, r8, r5, r4",
    "sxtb16 r12, r12, ror #8",
    "smlad r4, r12, r6, r4",
    "cmp r2, r3",
    "bne 5b",
    "b 7f",
    "6:",
    "lsls r3, r3, #1", // words of 4 inputs
    "61:",
    "ldr r5, [r1], #4",
    "ldr r12, [r0], #4",
    "sxtb16 r6, r5",
    "sxtb16 r5, r5, ror #8",
    "sxtb16 r8, r12",
    "sxtb16 r12, r12, ror #8",
    "smlad r4, r8, r6, r4",
    "smlad r4, r12, r5, r4",
    "subs r3, #1",
    "bne 61b",
    "7:",
    "ldr r3, [r7, #4]",
    "ands r3, r3, #7", // the inputs past the last group
    "beq 8f",
    "71:",
    "ldrsb r5, [r1], #1",
    "ldrsb r6, [r0], #1",
    "smlabb r4, r5, r6, r4",
    "subs r3, #1",
    "bne 71b",
    "8:",
    // r0 is the next row. The output stage: M (r5), t - 33 (r12).
    "ldr r3, [r7, #20]",
    "ldr r5, [r3], #4",
    "str r3, [r7, #20]",
    "ldr r3, [r7, #24]",
    "ldrb r12, [r3], #1",
    "str r3, [r7, #24]",
    "sub r12, r12, #33",
    "cmp r12, #29",
    "bhi 80f",
    "ldr r8, [r7, #36]", // 2 zp + 1
    rq_high_zp_fast!("r4", "r5", "51", "52"),
    "85:",
    // both clamps on zp + q (any i32 here: the general stage does not saturate to 8 bits)
    "ldr r3, [r7, #56]",
    "cmp r4, r3",
    "it lt",
    "movlt r4, r3",
    "ldr r3, [r7, #60]",
    "cmp r4, r3",
    "it gt",
    "movgt r4, r3",
    "ldr r3, [r7, #28]",
    "strb r4, [r3], #1",
    "str r3, [r7, #28]",
    "b 40b",
    rq_high_zp_slow!("r3", "r5", "51", "52"),
    // ---- `rq_acc` for a shift outside 33..=62, as `fixed.rs` defines it: 1..=32 round half
    // to even, 0 the product itself, 63 and more 0; saturated to i32, then the zero point
    // added with saturation (the reference's `zp.saturating_add(q)`).
    "80:",
    "add r3, r12, #33", // t
    "smull r2, r5, r4, r5",
    "movs r4, #0",
    "cmp r3, #62",
    "bhi 86f", // q = 0
    "mov r4, r2",
    "cbz r3, 84f", // q = the product
    // odd: bit 0 of floor(p / 2^t), the low word of p >> t (LSR by 32 gives 0)
    "rsb r6, r3, #32",
    "lsr r8, r2, r3",
    "lsl r12, r5, r6",
    "orr r8, r8, r12",
    "and r8, r8, #1",
    // p += 2^(t-1) - 1 + odd (2^(t-1) - 1 is 2^31 - 1 shifted right by 32 - t)
    "mvn r1, #0x80000000",
    "lsr r1, r1, r6",
    "add r1, r1, r8",
    "adds r2, r2, r1",
    "adc r5, r5, #0",
    // p >> t: the low word in r4, the high word in r5
    "lsr r4, r2, r3",
    "lsl r12, r5, r6",
    "orr r4, r4, r12",
    "asr r5, r5, r3",
    "84:",
    // outside i32 (the high word not the low word's sign): the high word's sign says which way
    "cmp r5, r4, asr #31",
    "beq 86f",
    "mvn r4, #0x80000000",
    "eor r4, r4, r5, asr #31",
    "86:",
    "ldr r3, [r7, #64]", // zp
    "qadd r4, r4, r3",
    "b 85b",
    ".size kiln_fc_dsp, . - kiln_fc_dsp",
);

core::arch::global_asm!(
    ".section .text.kiln_identity_input_dsp,\"ax\",%progbits",
    ".global kiln_identity_input_dsp",
    ".type kiln_identity_input_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_identity_input_dsp:",
    // The input stage's identity map: r0 raw i32 values (word-aligned), r1 the int8 output,
    // r2 groups of 8 values (> 0), r3 the offset. out = sat8(raw.saturating_add(offset)).
    "push {{r4-r11}}",
    "1:",
    "ldm r0!, {{r4-r11}}",
    "qadd r4, r4, r3",
    "ssat r4, #8, r4",
    "strb r4, [r1], #1",
    "qadd r5, r5, r3",
    "ssat r5, #8, r5",
    "strb r5, [r1], #1",
    "qadd r6, r6, r3",
    "ssat r6, #8, r6",
    "strb r6, [r1], #1",
    "qadd r7, r7, r3",
    "ssat r7, #8, r7",
    "strb r7, [r1], #1",
    "qadd r8, r8, r3",
    "ssat r8, #8, r8",
    "strb r8, [r1], #1",
    "qadd r9, r9, r3",
    "ssat r9, #8, r9",
    "strb r9, [r1], #1",
    "qadd r10, r10, r3",
    "ssat r10, #8, r10",
    "strb r10, [r1], #1",
    "qadd r11, r11, r3",
    "ssat r11, #8, r11",
    "strb r11, [r1], #1",
    "subs r2, r2, #1",
    "bne 1b",
    "pop {{r4-r11}}",
    "bx lr",
    ".size kiln_identity_input_dsp, . - kiln_identity_input_dsp",
);

core::arch::global_asm!(
    ".section .text.kiln_dot4_i16_dsp,\"ax\",%progbits",
    ".global kiln_dot4_i16_dsp",
    ".type kiln_dot4_i16_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dot4_i16_dsp:",
    // The int16-activation twin of `kiln_dot4_dsp`: the inputs are already 16-bit lanes.
    // r0: row 0, r1: stride (bytes between rows), r2: input (little-endian int16, any even
    // address: single-word loads only), r3: groups of 8 inputs (> 0), [sp]: the four
    // accumulators (read, then written back).
    "push {{r4-r11, lr}}",
    "ldr lr, [sp, #36]",
    "ldm lr, {{r4-r7}}",
    "add r8, r0, r1, lsl #1", // row 2; row 3 is row 2 + stride
    "add r3, r2, r3, lsl #4", // the input's end: 16 bytes per group
    "1:",
    // Inputs 0-3: [x0, x1] and [x2, x3] repacked to [x0, x2] (r10) and [x1, x3] (r9), shared
    // by the four rows.
    "ldr r12, [r2, #4]",
    "ldr r9, [r2], #8",
    "pkhbt r10, r9, r12, lsl #16",
    "pkhtb r9, r12, r9, asr #16",
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
    "ldr r12, [r2, #4]",
    "ldr r9, [r2], #8",
    "pkhbt r10, r9, r12, lsl #16",
    "pkhtb r9, r12, r9, asr #16",
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
    ".size kiln_dot4_i16_dsp, . - kiln_dot4_i16_dsp",
);

/// Four taps of a block of `kiln_conv_pairs_dsp` (`narrow`: rows o and o + 1 of the int8
/// weights at r0 and r0 + r1, each weight word loaded and split once for both pixels) or of
/// `kiln_conv_pairs_wide_dsp` (`wide`: rows o and o + 1 widened once per call, at r0 and r1, two
/// `LDRD` and no split: 11 instructions per 16 MACs instead of 15). The lanes of the four taps:
/// r8 A02, r9 A13, r10 B02, r11 B13; accumulators r4/r5 pixel A rows o/o+1, r6/r7 pixel B.
macro_rules! pairs_quad {
    (narrow) => {
        concat!(
            "ldm r2!, {{r8-r11}}\n",
            "ldr r12, [r0, r1]\n",
            "sxtb16 lr, r12\n",
            "sxtb16 r12, r12, ror #8\n",
            "smlad r5, lr, r8, r5\n",
            "smlad r5, r12, r9, r5\n",
            "smlad r7, lr, r10, r7\n",
            "smlad r7, r12, r11, r7\n",
            "ldr r12, [r0], #4\n",
            "sxtb16 lr, r12\n",
            "sxtb16 r12, r12, ror #8\n",
            "smlad r4, lr, r8, r4\n",
            "smlad r4, r12, r9, r4\n",
            "smlad r6, lr, r10, r6\n",
            "smlad r6, r12, r11, r6\n",
        )
    };
    (wide) => {
        concat!(
            "ldm r2!, {{r8-r11}}\n",
            "ldrd r12, lr, [r0], #8\n", // row o: w02, w13
            "smlad r4, r12, r8, r4\n",
            "smlad r4, lr, r9, r4\n",
            "smlad r6, r12, r10, r6\n",
            "smlad r6, lr, r11, r6\n",
            "ldrd r12, lr, [r1], #8\n", // row o + 1
            "smlad r5, r12, r8, r5\n",
            "smlad r5, lr, r9, r5\n",
            "smlad r7, r12, r10, r7\n",
            "smlad r7, lr, r11, r7\n",
        )
    };
}

/// The rows' registers at the start of a pairs routine (lr: the `Pairs`): `narrow` row o in r0
/// and the stride in r1; `wide` row o in r0 and row o + 1 (`stride` = one widened row on) in r1.
macro_rules! pairs_rows_first {
    (narrow) => {
        concat!("ldr r0, [lr, #0]\n", "ldr r1, [lr, #4]\n")
    };
    (wide) => {
        concat!(
            "ldr r0, [lr, #0]\n",
            "ldr r1, [lr, #4]\n",
            "add r1, r0, r1\n"
        )
    };
}

/// The rows of the next block, after the loop moved r0 (and r1) one row's taps on: `narrow`
/// two rows after this block's row o; `wide` rows o + 2 and o + 3, from r1 where it stopped.
macro_rules! pairs_rows_next {
    (narrow) => {
        concat!(
            "ldr r2, [lr, #16]\n",
            "sub r0, r0, r2, lsl #3\n",
            "add r0, r0, r1, lsl #1\n",
        )
    };
    (wide) => {
        concat!("ldr r2, [lr, #4]\n", "mov r0, r1\n", "add r1, r1, r2\n")
    };
}

/// One pairs routine: `$name` with the rows as `$rows` (`narrow` or `wide`) says.
macro_rules! conv_pairs_routine {
    ($name:literal, $rows:ident) => {
        core::arch::global_asm!(
            thumb_routine_start!($name),
            // r0: a `Pairs` (offsets in its definition), read and advanced block by block. A
            // block is two output channels (rows o, o + 1) of two output pixels A and B, whose
            // columns are widened and interleaved in `lanes`: per four taps the words A02, A13,
            // B02, B13. Then the output stage of both rows for both pixels, and two bytes out
            // per pixel. Inner loop registers: r0/r1 the rows (`pairs_quad`), r2 the lanes, r3
            // their end, r4-r7 the accumulators, r8-r11 the lanes of four taps, r12 and lr a
            // weight word split in two.
            "push {{r4-r11, lr}}",
            "sub sp, sp, #4", // where `pairs` waits while the loop uses lr
            "str r0, [sp]",
            "mov lr, r0",
            pairs_rows_first!($rows),
            "3:",
            "ldr r9, [lr, #12]", // this block's record: start[o], start[o + 1], M, s - 1, M, s - 1
            "ldrd r4, r5, [r9]",
            "mov r6, r4",
            "mov r7, r5",
            "ldr r2, [lr, #8]",       // the lanes
            "ldr r3, [lr, #16]",      // groups of 8 taps (> 0)
            "lsls r12, r3, #31",      // Z clear when the group count is odd
            "add r3, r2, r3, lsl #5", // the lanes' end: 32 bytes per group
            "bne 2f",
            "1:",
            pairs_quad!($rows),
            pairs_quad!($rows),
            "2:",
            pairs_quad!($rows),
            pairs_quad!($rows),
            "cmp r2, r3",
            "bne 1b",
            "ldr lr, [sp]",
            pairs_rows_next!($rows),
            "ldr r9, [lr, #12]",
            "ldr r8, [lr, #28]",       // 2 zp + 1
            "ldrd r11, r12, [r9, #8]", // row o: M, s - 1
            rq_high_zp_fast!("r4", "r11", "31", "41"),
            rq_high_zp_fast!("r6", "r11", "32", "42"),
            "b 21f",
            rq_high_zp_slow!("r3", "r10", "31", "41"),
            rq_high_zp_slow!("r3", "r10", "32", "42"),
            "21:",
            "ldrd r11, r12, [r9, #16]", // row o + 1: M, s - 1
            rq_high_zp_fast!("r5", "r11", "33", "43"),
            rq_high_zp_fast!("r7", "r11", "34", "44"),
            "b 22f",
            rq_high_zp_slow!("r3", "r10", "33", "43"),
            rq_high_zp_slow!("r3", "r10", "34", "44"),
            "22:",
            "add r9, r9, #24",
            "str r9, [lr, #12]",
            // [A o, A o+1, B o, B o+1] in one word, then both clamps on all four lanes.
            pack4_clamp!("[lr, #32]", "[lr, #36]"),
            "ldr r9, [lr, #20]",  // pixel A's two outputs
            "ldr r10, [lr, #24]", // pixel B's, from A's (0 when B is A)
            "strh r4, [r9]",
            "lsr r4, r4, #16",
            "strh r4, [r9, r10]",
            "add r9, r9, #2",
            "str r9, [lr, #20]",
            "ldr r9, [lr, #40]",
            "subs r9, r9, #1",
            "str r9, [lr, #40]",
            "bne 3b",
            "add sp, sp, #4",
            "pop {{r4-r11, pc}}",
            concat!(".size ", $name, ", . - ", $name),
        );
    };
}

conv_pairs_routine!("kiln_conv_pairs_dsp", narrow);
conv_pairs_routine!("kiln_conv_pairs_wide_dsp", wide);

core::arch::global_asm!(
    ".section .text.kiln_widen_pair_dsp,\"ax\",%progbits",
    ".global kiln_widen_pair_dsp",
    ".type kiln_widen_pair_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_widen_pair_dsp:",
    // r0: pixel A's int8 column, r1: pixel B's, r2: the output (word-aligned, 32 bytes per 8
    // taps), r3: groups of 8 taps (> 0). Writes A02, A13, B02, B13 per four taps: what
    // `kiln_conv_pairs_dsp` loads.
    "push {{r4-r7}}",
    "add r3, r0, r3, lsl #3", // A's end
    "1:",
    "ldr r4, [r0], #4",
    "ldr r6, [r1], #4",
    "sxtb16 r5, r4, ror #8",
    "sxtb16 r4, r4",
    "sxtb16 r7, r6, ror #8",
    "sxtb16 r6, r6",
    "stm r2!, {{r4-r7}}",
    "ldr r4, [r0], #4",
    "ldr r6, [r1], #4",
    "sxtb16 r5, r4, ror #8",
    "sxtb16 r4, r4",
    "sxtb16 r7, r6, ror #8",
    "sxtb16 r6, r6",
    "stm r2!, {{r4-r7}}",
    "cmp r0, r3",
    "bne 1b",
    "pop {{r4-r7}}",
    "bx lr",
    ".size kiln_widen_pair_dsp, . - kiln_widen_pair_dsp",
);

extern "C" {
    fn kiln_conv_pairs_dsp(pairs: *mut Pairs);
    fn kiln_conv_pairs_wide_dsp(pairs: *mut Pairs);
    fn kiln_widen_pair_dsp(a: *const i8, b: *const i8, lanes: *mut i8, n_groups: usize);
    fn kiln_dot4_i16_dsp(
        row0: *const u8,
        stride: usize,
        input: *const i8,
        n_groups: usize,
        acc: *mut [i32; 4],
    );
    fn kiln_identity_input_dsp(raw: *const i32, out: *mut i8, n_groups: usize, offset: i32);
    fn kiln_fc_dsp(fc: *mut Fc);
    fn kiln_dw_pixel_dsp(args: *mut DwArgs);
    fn kiln_dw_pixel_wide_dsp(args: *mut DwArgs);
    fn kiln_add_words_dsp(args: *const AddArgs);
    fn kiln_dw_mac_dsp(
        acc: *mut i32,
        input: *const i8,
        weights: *const u8,
        steps: usize,
        neg_zp2: u32,
    );
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

/// `out[i] = sat8(raw[i].saturating_add(offset))` for the first `8 * (len / 8)` values (the
/// input stage's identity map, `model.rs`); returns how many it wrote.
#[inline(always)]
pub fn identity_input_groups(raw: &[i32], offset: i32, out: &mut [i8]) -> usize {
    let n_groups = raw.len().min(out.len()) / 8;
    if n_groups > 0 {
        // SAFETY: reads `8 * n_groups` values of `raw` (an `i32` slice: word-aligned for LDM)
        // and writes as many bytes of `out`, both within their lengths; AAPCS.
        unsafe { kiln_identity_input_dsp(raw.as_ptr(), out.as_mut_ptr(), n_groups, offset) };
    }
    n_groups.wrapping_mul(8)
}

/// What [`kiln_fc_dsp`] reads and advances, at fixed offsets (checked below).
#[repr(C)]
struct Fc {
    rows: *const u8,
    stride: usize,
    /// The widened input, or null: the routine then splits the inputs as it reads them.
    widened: *const i8,
    n_groups: usize,
    bias: *const u8,
    multipliers: *const u8,
    shifts: *const u8,
    output: *mut i8,
    /// Whole blocks of four rows for the block loop (0 unless it may run).
    n_blocks: usize,
    round_zp: i32,
    clamp_min4: u32,
    clamp_max4: u32,
    input: *const i8,
    n_rows: usize,
    clamp_min: i32,
    clamp_max: i32,
    zero_point: i32,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Fc, rows) == 0 && offset_of!(Fc, stride) == 4);
    assert!(offset_of!(Fc, widened) == 8 && offset_of!(Fc, n_groups) == 12);
    assert!(offset_of!(Fc, bias) == 16 && offset_of!(Fc, multipliers) == 20);
    assert!(offset_of!(Fc, shifts) == 24 && offset_of!(Fc, output) == 28);
    assert!(offset_of!(Fc, n_blocks) == 32 && offset_of!(Fc, round_zp) == 36);
    assert!(offset_of!(Fc, clamp_min4) == 40 && offset_of!(Fc, clamp_max4) == 44);
    assert!(offset_of!(Fc, input) == 48 && offset_of!(Fc, n_rows) == 52);
    assert!(offset_of!(Fc, clamp_min) == 56 && offset_of!(Fc, clamp_max) == 60);
    assert!(offset_of!(Fc, zero_point) == 64);
};

/// The whole dense layer (`fc_layer` in `packed.rs` is the portable twin), if the arguments
/// pass [`FcParams::check`] (else `false`, nothing written). Where the workspace holds 16 bytes
/// per group of 8 inputs past its first word boundary, the groups are widened there first
/// (`kiln_widen_dsp`); then whole blocks of four rows two at a time where `n_in % 8 == 0` and
/// the weights are word-aligned (`LDRD`), up to a block with a shift outside `33..=62`; every
/// other row one at a time, from the widened input or from the int8 input split as it is
/// read, with the output stage of any shift.
#[inline(always)]
pub fn fc_layer(
    params: &FcParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> bool {
    let (n_in, n_out) = (input.len(), output.len());
    if !params.fits(n_in, n_out) {
        return false;
    }
    let n_groups = n_in / 8;
    // `packed::widen`'s work, with one check instead of its two (`widen_bytes` checks again):
    // calling it measured 38 B more inference code, 8 B more stack and 22 instructions per layer.
    let skip = workspace.as_ptr().align_offset(4);
    // `16 * n_groups <= 2 * n_in`: no wrap for a slice's length
    let widened =
        if n_groups > 0 && workspace.len().saturating_sub(skip) >= n_groups.wrapping_mul(16) {
            let lanes = workspace.as_mut_ptr().wrapping_add(skip);
            // SAFETY: reads the first `8 * n_groups` inputs and writes `16 * n_groups` bytes of
            // the workspace from its first word boundary (for the multiple store), both checked
            // just above; AAPCS.
            unsafe { kiln_widen_dsp(input.as_ptr(), lanes, n_groups) };
            lanes.cast_const()
        } else {
            core::ptr::null()
        };
    let blocks_run =
        !widened.is_null() && n_in % 8 == 0 && params.weights.as_ptr().align_offset(4) == 0;
    let mut fc = Fc {
        rows: params.weights.as_ptr(),
        stride: n_in,
        widened,
        n_groups,
        bias: params.bias.as_ptr(),
        multipliers: params.multipliers.as_ptr(),
        shifts: params.shifts.as_ptr(),
        output: output.as_mut_ptr(),
        n_blocks: if blocks_run { n_out / 4 } else { 0 },
        round_zp: crate::fixed::round_zp(params.output_zero_point),
        clamp_min4: bytes4(params.clamp_min),
        clamp_max4: bytes4(params.clamp_max),
        input: input.as_ptr(),
        n_rows: n_out,
        clamp_min: i32::from(params.clamp_min),
        clamp_max: i32::from(params.clamp_max),
        zero_point: i32::from(params.output_zero_point),
    };
    // SAFETY: the routine reads `n_out` rows of `n_in` weights (single-word loads, any
    // alignment, which Armv7E-M allows; the block loop's doubleword loads only with the
    // weights word-aligned and `n_in % 8 == 0`, so every row is), `n_out` biases, multipliers
    // and shifts (`fits` above), the `n_in` inputs and, when given, `16 * n_groups`
    // word-aligned widened bytes (checked above), and writes the `n_out` output bytes. It
    // follows the AAPCS, saves what it uses and writes only `fc` and the output.
    unsafe { kiln_fc_dsp(&mut fc) };
    true
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

/// Adds to `acc[r]` the dot product of the first `8 * n_groups` int16 inputs (little-endian,
/// `16 * n_groups` bytes of `input`) with row `r` of the four rows at `rows` (`stride` bytes
/// apart): `fc16::dot4_groups` is the portable twin. Returns without reading unless
/// `input.len() >= 16 * n_groups` and `rows.len() >= 3 * stride + 8 * n_groups`.
#[inline(always)]
pub fn dot4_i16(rows: &[u8], stride: usize, input: &[i8], n_groups: usize, acc: &mut [i32; 4]) {
    let in_bounds = n_groups.checked_mul(16).is_some_and(|len| {
        input.len() >= len
            && stride
                .checked_mul(3)
                .and_then(|last_row| last_row.checked_add(len / 2))
                .is_some_and(|end| end <= rows.len())
    }) && n_groups > 0;
    if in_bounds {
        // SAFETY: every address read is inside `rows` or `input` (checked just above), with
        // single-word loads only (unaligned loads are allowed on Armv7E-M); the routine follows
        // the AAPCS, saves what it uses, and writes only `acc`.
        unsafe { kiln_dot4_i16_dsp(rows.as_ptr(), stride, input.as_ptr(), n_groups, acc) };
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
    widen_bytes((input.as_ptr(), input.len()), widened, n_pairs);
}

/// [`widen_groups`] on a row of weights: per four bytes of `row[..8 * n_groups]` the words
/// `sxtb16` and `sxtb16_ror8` of them, into `wide` (`pairs::widen_weights` is the portable
/// twin). Writes nothing unless `row` holds the bytes and `wide` is word-aligned with room for
/// `16 * n_groups`.
#[inline(always)]
pub fn widen_weights(row: &[u8], wide: &mut [i8], n_groups: usize) {
    // Bytes either way: the routine sign-extends them.
    widen_bytes((row.as_ptr().cast(), row.len()), wide, n_groups);
}

/// `kiln_widen_dsp` on `n_groups` groups of eight bytes at `bytes` (its pointer and length),
/// when the bytes are there and `widened` is word-aligned with room for `16 * n_groups`.
#[inline(always)]
fn widen_bytes((bytes, len): (*const i8, usize), widened: &mut [i8], n_groups: usize) {
    let in_bounds = n_groups > 0
        && n_groups.checked_mul(8).is_some_and(|need| len >= need)
        && n_groups
            .checked_mul(16)
            .is_some_and(|need| widened.len() >= need)
        && widened.as_ptr().align_offset(4) == 0;
    if in_bounds {
        // SAFETY: reads `8 * n_groups` bytes from `bytes` (a slice of `len` bytes) and writes
        // `16 * n_groups` bytes of `widened` (word-aligned for the multiple store), both checked
        // just above; AAPCS.
        unsafe { kiln_widen_dsp(bytes, widened.as_mut_ptr(), n_groups) };
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
        let neg_zp2 = halves2(zp.wrapping_neg());
        // SAFETY: reads `4 * steps` bytes of `x` and `w` and reads and writes `4 * steps`
        // accumulators of `acc` (an `i32` slice, so word-aligned for LDM/STM), all checked
        // just above; the routine follows the AAPCS and saves what it uses.
        unsafe { kiln_dw_mac_dsp(acc.as_mut_ptr(), x.as_ptr(), w.as_ptr(), steps, neg_zp2) };
    }
}

/// `v` (which fits 16 bits) in both 16-bit lanes: a zero point for `SXTAB16`.
#[inline(always)]
fn halves2(v: i32) -> u32 {
    (v as u16 as u32).wrapping_mul(0x0001_0001)
}

/// What [`kiln_add_words_dsp`] reads, at fixed offsets (checked below).
#[repr(C)]
struct AddArgs {
    a: *const i8,
    b: *const i8,
    out: *mut i8,
    n_words: usize,
    weight_a: i32,
    weight_b: i32,
    start: i32,
    multiplier: i32,
    shift_minus_33: u32,
    clamp_min4: u32,
    clamp_max4: u32,
    round_zp: i32,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(AddArgs, a) == 0 && offset_of!(AddArgs, b) == 4);
    assert!(offset_of!(AddArgs, out) == 8 && offset_of!(AddArgs, n_words) == 12);
    assert!(offset_of!(AddArgs, weight_a) == 16 && offset_of!(AddArgs, weight_b) == 20);
    assert!(offset_of!(AddArgs, start) == 24 && offset_of!(AddArgs, multiplier) == 28);
    assert!(offset_of!(AddArgs, shift_minus_33) == 32 && offset_of!(AddArgs, clamp_min4) == 36);
    assert!(offset_of!(AddArgs, clamp_max4) == 40 && offset_of!(AddArgs, round_zp) == 44);
};

/// The first `4 * (len / 4)` elements of a residual `Add` (`add::add_words` is the portable
/// twin, and says what they compute; the shift is in `33..=62`, which the caller checks).
/// Writes nothing unless `a` and `b` are as long as `output`.
#[inline(always)]
pub fn add_words(w: &super::add::AddWords, a: &[i8], b: &[i8], output: &mut [i8]) {
    let n_words = output.len() / 4;
    if a.len() != output.len() || b.len() != output.len() || n_words == 0 {
        return;
    }
    // SAFETY: reads `4 n_words` bytes of `a` and of `b` and writes `4 n_words` bytes of
    // `output`, all within their slices (checked just above).
    unsafe { add_words_raw(w, (a.as_ptr(), b.as_ptr()), output.as_mut_ptr(), n_words) };
}

/// [`add_words`] over one of its operands (`add::add_words_in_place` is the portable twin):
/// `data` is operand `a` if `data_is_a`, else `b`, and the output; `other` the other operand,
/// or `None` for `x + x`. Each word of both operands is read before the output word at the
/// same position is written, so the one slice may be both. Writes nothing unless `other` is as
/// long as `data`.
#[inline(always)]
pub fn add_words_in_place(
    w: &super::add::AddWords,
    data: &mut [i8],
    other: Option<&[i8]>,
    data_is_a: bool,
) {
    let n_words = data.len() / 4;
    if other.is_some_and(|o| o.len() != data.len()) || n_words == 0 {
        return;
    }
    let out = data.as_mut_ptr();
    let other = other.map_or(out.cast_const(), <[i8]>::as_ptr);
    let (a, b) = if data_is_a {
        (out.cast_const(), other)
    } else {
        (other, out.cast_const())
    };
    // SAFETY: reads `4 n_words` bytes of `data` and of `other` and writes `4 n_words` bytes of
    // `data`, all within their slices (checked just above); the routine reads each word of
    // both operands before it writes the output word at the same position.
    unsafe { add_words_raw(w, (a, b), out, n_words) };
}

/// Calls [`kiln_add_words_dsp`] on `n_words` words from `a`, `b` to `out`.
///
/// # Safety
/// `a` and `b` must be readable and `out` writable for `4 n_words` bytes; `out` may equal `a`
/// or `b` (each word is read before the same word is written), but not overlap them otherwise.
#[inline(always)]
unsafe fn add_words_raw(
    w: &super::add::AddWords,
    (a, b): (*const i8, *const i8),
    out: *mut i8,
    n_words: usize,
) {
    let args = AddArgs {
        a,
        b,
        out,
        n_words,
        weight_a: w.weights[0],
        weight_b: w.weights[1],
        start: w.start,
        multiplier: w.multiplier,
        shift_minus_33: u32::from(w.shift).wrapping_sub(33),
        clamp_min4: bytes4(w.clamp_min),
        clamp_max4: bytes4(w.clamp_max),
        round_zp: crate::fixed::round_zp(w.output_zero_point),
    };
    // SAFETY: the caller's; word loads and stores may be unaligned on Armv7E-M. The routine
    // follows the AAPCS and saves what it uses.
    unsafe { kiln_add_words_dsp(&args) };
}

/// What [`kiln_dw_pixel_dsp`] reads and advances, at fixed offsets (checked below).
#[repr(C)]
struct DwArgs {
    x: *const i8,
    w: *const u8,
    bias: *const u8,
    multipliers: *const u8,
    shifts: *const u8,
    out: *mut i8,
    c: usize,
    rows: usize,
    cols: usize,
    x_row: usize,
    w_row: usize,
    n_blocks: usize,
    neg_zp2: u32,
    round_zp: i32,
    clamp_min4: u32,
    clamp_max4: u32,
    /// Bytes from one block's weights to the next: 4, or `8 kh kw` widened.
    w_block: usize,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(DwArgs, w_block) == 64);
    assert!(offset_of!(DwArgs, x) == 0 && offset_of!(DwArgs, w) == 4);
    assert!(offset_of!(DwArgs, bias) == 8 && offset_of!(DwArgs, multipliers) == 12);
    assert!(offset_of!(DwArgs, shifts) == 16 && offset_of!(DwArgs, out) == 20);
    assert!(offset_of!(DwArgs, c) == 24 && offset_of!(DwArgs, rows) == 28);
    assert!(offset_of!(DwArgs, cols) == 32 && offset_of!(DwArgs, x_row) == 36);
    assert!(offset_of!(DwArgs, w_row) == 40 && offset_of!(DwArgs, n_blocks) == 44);
    assert!(offset_of!(DwArgs, neg_zp2) == 48 && offset_of!(DwArgs, round_zp) == 52);
    assert!(offset_of!(DwArgs, clamp_min4) == 56 && offset_of!(DwArgs, clamp_max4) == 60);
};

impl DwArgs {
    /// The arguments of one call on `p`'s layer: its input and weights from `x` and `w`, its
    /// output at `out`.
    #[inline(always)]
    fn new(p: &super::dwconv::DwPixel<'_>, (x, w): (*const i8, *const u8), out: *mut i8) -> Self {
        Self {
            x,
            w,
            bias: p.bias.as_ptr(),
            multipliers: p.multipliers.as_ptr(),
            shifts: p.shifts.as_ptr(),
            out,
            c: p.c,
            rows: p.rows,
            cols: p.cols,
            x_row: p.x_row,
            w_row: p.w_row,
            n_blocks: p.n_blocks,
            neg_zp2: halves2(i32::from(p.input_zero_point).wrapping_neg()),
            round_zp: crate::fixed::round_zp(p.output_zero_point),
            clamp_min4: bytes4(p.clamp_min),
            clamp_max4: bytes4(p.clamp_max),
            w_block: p.w_block,
        }
    }
}

/// The routine for `p`'s weights: the layer's own, or widened once per call.
#[inline(always)]
fn dw_pixel_routine(p: &super::dwconv::DwPixel<'_>) -> unsafe extern "C" fn(*mut DwArgs) {
    if p.wide {
        kiln_dw_pixel_wide_dsp
    } else {
        kiln_dw_pixel_dsp
    }
}

/// One output pixel's whole blocks of four depthwise channels (`dwconv::dw_pixel_blocks` is
/// the portable twin, and says what they compute). Returns the blocks written: 0, writing
/// nothing, unless [`DwPixel::in_bounds`](super::dwconv::DwPixel::in_bounds).
#[inline(always)]
pub fn dw_pixel_blocks(p: &super::dwconv::DwPixel<'_>, out: &mut [i8]) -> usize {
    if !p.in_bounds(out.len()) {
        return 0;
    }
    // SAFETY (the two `add`s): `in_bounds` proved both offsets within their slices.
    let (x, w) = unsafe {
        (
            p.input.as_ptr().add(p.x_first),
            p.weights.as_ptr().add(p.w_first),
        )
    };
    let mut args = DwArgs::new(p, (x, w), out.as_mut_ptr());
    // SAFETY: `in_bounds` proved every read (each tap's word of inputs and of weights, 16 bias
    // and multiplier bytes and 4 shift bytes per block) and every write (4 bytes per block)
    // inside its slice; word loads and stores may be unaligned on Armv7E-M. The routine follows
    // the AAPCS, saves what it uses and writes only `args` and the output.
    unsafe { dw_pixel_routine(p)(&mut args) };
    p.n_blocks
}

/// `n_pixels` output pixels of one row whose windows are whole, `p` the first and each next
/// one `x_step` input bytes and `c` output bytes on (`dwconv::dw_pixel_run` is the portable
/// twin): one bounds check for the run, then `kiln_dw_pixel_dsp` per pixel. Returns the pixels
/// written: 0, writing nothing, unless [`run_in_bounds`](super::dwconv::run_in_bounds).
pub fn dw_pixel_run(
    p: &super::dwconv::DwPixel<'_>,
    n_pixels: usize,
    x_step: usize,
    out: &mut [i8],
) -> usize {
    if !super::dwconv::run_in_bounds(p, n_pixels, x_step, out.len()) {
        return 0;
    }
    let mut args = DwArgs::new(p, (p.input.as_ptr(), p.weights.as_ptr()), out.as_mut_ptr());
    let routine = dw_pixel_routine(p);
    for i in 0..n_pixels {
        // SAFETY: `run_in_bounds` proved the first and the last pixel's reads and writes (each
        // tap's input and weight words, the blocks' bias, multiplier and shift bytes, `c`
        // output bytes) inside their slices; pixel `i` lies between them, its input `i x_step`
        // and its output `i c` bytes on. Word loads and stores may be unaligned on Armv7E-M.
        // The routine follows the AAPCS, saves what it uses and writes only `args` and the
        // output.
        unsafe {
            args.x = p
                .input
                .as_ptr()
                .add(p.x_first.wrapping_add(i.wrapping_mul(x_step)));
            args.w = p.weights.as_ptr().add(p.w_first);
            args.bias = p.bias.as_ptr();
            args.multipliers = p.multipliers.as_ptr();
            args.shifts = p.shifts.as_ptr();
            args.out = out.as_mut_ptr().add(i.wrapping_mul(p.c));
            args.n_blocks = p.n_blocks;
            routine(&mut args);
        }
    }
    n_pixels
}

/// What [`kiln_conv_pairs_dsp`] reads and advances, at fixed offsets (checked below).
#[repr(C)]
struct Pairs {
    rows: *const u8,
    stride: usize,
    lanes: *const i8,
    records: *const i8,
    n_groups: usize,
    out_a: *mut i8,
    delta: usize,
    round_zp: i32,
    clamp_min4: u32,
    clamp_max4: u32,
    n_blocks: usize,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Pairs, rows) == 0 && offset_of!(Pairs, stride) == 4);
    assert!(offset_of!(Pairs, lanes) == 8 && offset_of!(Pairs, records) == 12);
    assert!(offset_of!(Pairs, n_groups) == 16 && offset_of!(Pairs, out_a) == 20);
    assert!(offset_of!(Pairs, delta) == 24 && offset_of!(Pairs, round_zp) == 28);
    assert!(offset_of!(Pairs, clamp_min4) == 32 && offset_of!(Pairs, clamp_max4) == 36);
    assert!(offset_of!(Pairs, n_blocks) == 40);
};

/// The blocks of two output channels by two output pixels of a convolution
/// (`pairs::pair_blocks` is the portable twin, and says what they compute). Returns the blocks
/// written: 0 unless the slices hold what the routine reads and writes.
#[inline(always)]
pub fn pair_blocks(args: &super::pairs::PairBlocks<'_>, output: &mut [i8]) -> usize {
    let Some(at_a) = args.in_bounds(output.len()) else {
        return 0;
    };
    let mut pairs = Pairs {
        rows: args
            .wide
            .map_or(args.rows.as_ptr(), |wide| wide.as_ptr().cast()),
        stride: args.stride,
        lanes: args.lanes.as_ptr(),
        records: args.records.as_ptr(),
        n_groups: args.n_groups,
        // SAFETY: `in_bounds` proved `at_a` within `output`.
        out_a: unsafe { output.as_mut_ptr().add(at_a) },
        delta: args.delta,
        round_zp: crate::fixed::round_zp(args.output_zero_point),
        clamp_min4: bytes4(args.clamp_min),
        clamp_max4: bytes4(args.clamp_max),
        n_blocks: args.n_blocks,
    };
    // SAFETY: `in_bounds` proved every read (the two rows of each block, `8 * n_groups` bytes
    // each, or `16 * n_groups` widened and word-aligned for LDRD, `stride` apart; `32 *
    // n_groups` word-aligned lane bytes for LDM; 24 word-aligned record bytes per block for
    // LDRD) and every write (two bytes per block at `at_a` and at `at_a + delta`) inside its
    // slice. Each routine follows the AAPCS, saves what it uses and writes only `pairs` and the
    // output.
    if args.wide.is_some() {
        unsafe { kiln_conv_pairs_wide_dsp(&mut pairs) };
    } else {
        unsafe { kiln_conv_pairs_dsp(&mut pairs) };
    }
    args.n_blocks
}

/// One band's pixel pairs after one bounds check (`pairs::BandRunner` is the portable twin,
/// and says what each pair computes): per pair of pixels `kiln_widen_pair_dsp` and
/// `kiln_conv_pairs_wide_dsp` on pointers into the checked slices.
pub struct BandRunner<'a> {
    pairs: Pairs,
    band: &'a super::pairs::PairBand<'a>,
    k: usize,
    last: usize,
    lanes: *mut i8,
    output: *mut i8,
    /// `lanes` and `output` stay borrowed while the runner writes them through pointers.
    _borrows: core::marker::PhantomData<(&'a mut [i8], &'a mut [i8])>,
}

impl<'a> BandRunner<'a> {
    /// `None` (nothing written) unless the band's rows, records and lanes hold what its
    /// blocks read and `output` what its pixel pairs write.
    #[inline(always)]
    pub fn new(
        band: &'a super::pairs::PairBand<'a>,
        lanes: &'a mut [i8],
        output: &'a mut [i8],
    ) -> Option<Self> {
        let n_groups = band.n_groups;
        let k = n_groups.wrapping_mul(8);
        let last = band.n_pixels.checked_sub(1)?;
        // The pair of pixels 0 and `last` reaches every byte any pair writes (each pair's A
        // and B lie between them) and reads the band's whole rows, records and lanes.
        band.blocks(lanes, 0, last).in_bounds(output.len())?;
        // one pointer for the widening's writes and the blocks' reads
        let lanes = lanes.as_mut_ptr();
        let pairs = Pairs {
            rows: band.wide.as_ptr().cast(),
            stride: k.wrapping_mul(2),
            lanes,
            records: band.records.as_ptr(),
            n_groups,
            out_a: output.as_mut_ptr(),
            delta: 0,
            round_zp: crate::fixed::round_zp(band.output_zero_point),
            clamp_min4: bytes4(band.clamp_min),
            clamp_max4: bytes4(band.clamp_max),
            n_blocks: band.n_blocks,
        };
        Some(Self {
            pairs,
            band,
            k,
            last,
            lanes,
            output: output.as_mut_ptr(),
            _borrows: core::marker::PhantomData,
        })
    }

    /// Every pair of pixels of a stride-1 layer whose columns are the input pixels
    /// themselves, pixel `p`'s at `input[p k..]`: one length check, then [`Self::pair`]'s
    /// calls on pointers.
    #[inline(always)]
    pub fn input_pixels(&mut self, input: &[i8]) {
        let k = self.k;
        let n_pixels = self.last.wrapping_add(1);
        if n_pixels.checked_mul(k).is_none_or(|len| len > input.len()) {
            return;
        }
        for pair in 0..n_pixels.div_ceil(2) {
            let a = pair.wrapping_mul(2);
            let b = a.wrapping_add(1).min(self.last);
            // SAFETY: `a <= b <= last`; both columns (`k` bytes at `a k` and `b k`) lie inside
            // `input` (`n_pixels k` bytes, checked just above).
            unsafe {
                self.pair_unchecked(
                    a,
                    b,
                    input.as_ptr().add(a.wrapping_mul(k)),
                    input.as_ptr().add(b.wrapping_mul(k)),
                );
            }
        }
    }

    /// The band's blocks of output pixels `a <= b <= n_pixels - 1` from their columns (at
    /// least `8 n_groups` bytes each; nothing is written otherwise).
    #[inline(always)]
    pub fn pair(&mut self, a: usize, b: usize, col_a: &[i8], col_b: &[i8]) {
        if a > b || b > self.last || col_a.len() < self.k || col_b.len() < self.k {
            return;
        }
        // SAFETY: the conditions just checked.
        unsafe { self.pair_unchecked(a, b, col_a.as_ptr(), col_b.as_ptr()) };
    }

    /// [`Self::pair`] without its checks.
    ///
    /// # Safety
    /// `a <= b <= n_pixels - 1`, and `col_a` and `col_b` each point at `8 n_groups` readable
    /// bytes.
    #[inline(always)]
    unsafe fn pair_unchecked(&mut self, a: usize, b: usize, col_a: *const i8, col_b: *const i8) {
        let band = self.band;
        self.pairs.rows = band.wide.as_ptr().cast();
        self.pairs.records = band.records.as_ptr();
        self.pairs.n_blocks = band.n_blocks;
        self.pairs.delta = b.wrapping_sub(a).wrapping_mul(band.oc);
        // SAFETY: the columns hold the `k` bytes the widening reads (the caller's contract),
        // and `lanes` the `32 n_groups` word-aligned bytes it writes (checked by `new`). With
        // `a <= b <= last`, pixel A's first output byte, `a oc + first_channel`, and B's,
        // `delta` further, lie within the span that `new` proved for the pair (0, last), with
        // the blocks' `2 n_blocks` bytes; the rows, records and lanes each call reads are the
        // ones `new` checked. Both routines follow the AAPCS and write only `lanes`, `pairs`
        // and the output.
        unsafe {
            kiln_widen_pair_dsp(col_a, col_b, self.lanes, band.n_groups);
            self.pairs.out_a = self
                .output
                .add(a.wrapping_mul(band.oc).wrapping_add(band.first_channel));
            kiln_conv_pairs_wide_dsp(&mut self.pairs);
        }
    }
}

/// Writes the 16-bit lanes of the first `8 * n_groups` bytes of two columns into `lanes`,
/// interleaved per four taps as A02, A13, B02, B13 (`pairs::widen_pair` is the portable twin).
/// Writes nothing unless both columns hold as many bytes and `lanes` is word-aligned with room
/// for `32 * n_groups`.
#[inline(always)]
pub fn widen_pair(a: &[i8], b: &[i8], lanes: &mut [i8], n_groups: usize) {
    let in_bounds = n_groups > 0
        && n_groups
            .checked_mul(8)
            .is_some_and(|n| a.len() >= n && b.len() >= n)
        && n_groups
            .checked_mul(32)
            .is_some_and(|len| lanes.len() >= len)
        && lanes.as_ptr().align_offset(4) == 0;
    if in_bounds {
        // SAFETY: reads `8 * n_groups` bytes of `a` and `b` and writes `32 * n_groups` bytes of
        // `lanes` (word-aligned for STM), all checked just above; AAPCS.
        unsafe { kiln_widen_pair_dsp(a.as_ptr(), b.as_ptr(), lanes.as_mut_ptr(), n_groups) };
    }
}

core::arch::global_asm!(
    ".section .text.kiln_dwp_widen_dsp,\"ax\",%progbits",
    ".global kiln_dwp_widen_dsp",
    ".type kiln_dwp_widen_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dwp_widen_dsp:",
    // r0: a `DwpWiden`. Per two input pixels A and B (four channels each, `c` bytes apart):
    // `x - zp` in 16-bit lanes (`SXTAB16`), then channel k's pair (A_k, B_k) as one word into
    // plane row k (unaligned stores are allowed on Armv7E-M); an odd last pixel's four
    // halfwords one by one. Loop registers: r0 the input, r1 c, r2 the pixels left, r3 -zp
    // in both lanes, r4-r7 the lanes, r8-r11 the four rows, r12 the word out.
    "push {{r4-r11, lr}}",
    "ldrd r8, r9, [r0, #16]",
    "ldrd r10, r11, [r0, #24]",
    "ldrd r2, r3, [r0, #8]",
    "ldrd r0, r1, [r0, #0]",
    "subs r2, r2, #2",
    "blo 2f",
    "1:",
    "ldr r5, [r0, r1]",
    "ldr r4, [r0]",
    "add r0, r0, r1, lsl #1",
    "sxtab16 r6, r3, r4",         // A0, A2
    "sxtab16 r7, r3, r4, ror #8", // A1, A3
    "sxtab16 r4, r3, r5",         // B0, B2
    "sxtab16 r5, r3, r5, ror #8", // B1, B3
    "pkhbt r12, r6, r4, lsl #16", // A0, B0
    "str r12, [r8], #4",
    "pkhbt r12, r7, r5, lsl #16", // A1, B1
    "str r12, [r9], #4",
    "pkhtb r12, r4, r6, asr #16", // A2, B2
    "str r12, [r10], #4",
    "pkhtb r12, r5, r7, asr #16", // A3, B3
    "str r12, [r11], #4",
    "subs r2, r2, #2",
    "bhs 1b",
    "2:",
    "adds r2, r2, #2", // 0 or 1 pixel left
    "beq 3f",
    "ldr r4, [r0]",
    "sxtab16 r6, r3, r4",
    "sxtab16 r7, r3, r4, ror #8",
    "strh r6, [r8]",
    "strh r7, [r9]",
    "lsr r6, r6, #16",
    "strh r6, [r10]",
    "lsr r7, r7, #16",
    "strh r7, [r11]",
    "3:",
    "pop {{r4-r11, pc}}",
    ".size kiln_dwp_widen_dsp, . - kiln_dwp_widen_dsp",
);

core::arch::global_asm!(
    ".section .text.kiln_dwp_mac_dsp,\"ax\",%progbits",
    ".global kiln_dwp_mac_dsp",
    ".type kiln_dwp_mac_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dwp_mac_dsp:",
    // r0: a `DwpMac`. For each of the four channels (k at [sp, #4], the arguments at [sp]):
    // per output pixel pair (x, x + 1) and ring slot, one `LDRD` of the plane entries
    // v[x..x + 4] (word v01 in r6, v23 in r7) and the slot's weights (W01 r8, W12 r9, W02
    // r10; `LDM`): x += v01.W01 + v2 w2, x + 1 += v23.W12 + v1 w0. Loop registers: r0, r1,
    // r12 the slots, r2 the weights, r3 the accumulators, r4/r5 the pair's, r11 their end,
    // lr the bias.
    "push {{r4-r11, lr}}",
    "sub sp, sp, #8",
    "str r0, [sp]",
    "movs r1, #0",
    "str r1, [sp, #4]",
    "2:",
    "ldr lr, [sp]",
    "ldr r4, [sp, #4]",
    "ldrd r0, r1, [lr, #0]",  // the ring, row bytes
    "add r5, r4, r4, lsl #1", // 3 k
    "mla r0, r5, r1, r0",     // channel k's slot 0
    "add r12, r0, r1, lsl #1",
    "add r1, r0, r1",
    "ldrd r2, r5, [lr, #8]", // the tables, the biases
    "movs r6, #60",
    "mla r2, r6, r4, r2",
    "ldrd r3, r11, [lr, #16]", // the accumulators, 32 bytes per pair
    "add r3, r3, r4, lsl #2",
    "add r11, r3, r11",
    "ldr lr, [r5, r4, lsl #2]",
    "1:",
    "ldm r2!, {{r8-r10}}",
    "ldrd r6, r7, [r0], #4",
    "smlad r4, r6, r8, lr",
    "smlabt r4, r7, r10, r4",
    "smlad r5, r7, r9, lr",
    "smlatb r5, r6, r10, r5",
    "ldm r2!, {{r8-r10}}",
    "ldrd r6, r7, [r1], #4",
    "smlad r4, r6, r8, r4",
    "smlabt r4, r7, r10, r4",
    "smlad r5, r7, r9, r5",
    "smlatb r5, r6, r10, r5",
    "ldm r2, {{r8-r10}}",
    "sub r2, r2, #24",
    "ldrd r6, r7, [r12], #4",
    "smlad r4, r6, r8, r4",
    "smlabt r4, r7, r10, r4",
    "smlad r5, r7, r9, r5",
    "smlatb r5, r6, r10, r5",
    "str r5, [r3, #16]",
    "str r4, [r3], #32",
    "cmp r3, r11",
    "bne 1b",
    "ldr r4, [sp, #4]",
    "adds r4, r4, #1",
    "str r4, [sp, #4]",
    "cmp r4, #4",
    "bne 2b",
    "add sp, sp, #8",
    "pop {{r4-r11, pc}}",
    ".size kiln_dwp_mac_dsp, . - kiln_dwp_mac_dsp",
);
core::arch::global_asm!(
    ".section .text.kiln_dwp_out_dsp,\"ax\",%progbits",
    ".global kiln_dwp_out_dsp",
    ".type kiln_dwp_out_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_dwp_out_dsp:",
    // r0: a `DwpOut`. Per output pixel: its four channels' accumulators (`LDM`), each through
    // its (M, s - 1) from the `OutStage` (`rq_high_zp_fast`), packed into one word, both clamps
    // on the four lanes, one word out, `c` bytes on. Loop registers: r0 the accumulators, r1
    // their end, r2/r3 scratch, r4-r7 the four channels, r8 2 zp + 1, r9 the output, r10 c,
    // r11/r12 M and s - 1, lr the stage.
    "push {{r4-r11, lr}}",
    "mov lr, r0",
    "ldrd r0, r1, [lr, #0]",
    "ldrd r9, r10, [lr, #8]",
    "ldr lr, [lr, #16]",
    "ldr r8, [lr, #32]",
    "1:",
    "ldm r0!, {{r4-r7}}",
    rq4_at!("lr", "0", "8", "16", "24"),
    "bfi r4, r5, #8, #8",
    "bfi r4, r6, #16, #8",
    "bfi r4, r7, #24, #8",
    "ldr r2, [lr, #36]",
    "ssub8 r3, r4, r2",
    "sel r4, r4, r2", // max(q, clamp_min)
    "ldr r2, [lr, #40]",
    "ssub8 r3, r4, r2",
    "sel r4, r2, r4", // min(q, clamp_max)
    "str r4, [r9]",
    "add r9, r9, r10",
    "cmp r0, r1",
    "bne 1b",
    "pop {{r4-r11, pc}}",
    ".size kiln_dwp_out_dsp, . - kiln_dwp_out_dsp",
);

/// The arguments of `kiln_dwp_widen_dsp` (offsets fixed by `repr(C)`: the routine reads them).
#[repr(C)]
struct DwpWiden {
    src: *const i8,
    c: usize,
    n: usize,
    neg_zp2: u32,
    rows: [*mut i8; 4],
}

/// The arguments of `kiln_dwp_mac_dsp`.
#[repr(C)]
struct DwpMac {
    ring: *const i8,
    row_bytes: usize,
    tables: *const i8,
    bias: *const i32,
    acc: *mut i8,
    acc_span: usize,
}

/// The arguments of `kiln_dwp_out_dsp`.
#[repr(C)]
struct DwpOut {
    acc: *const i8,
    acc_end: *const i8,
    out: *mut i8,
    c: usize,
    stage: *const super::dwplane::OutStage,
}

// The routines read these fields at fixed offsets.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(DwpWiden, c) == 4 && offset_of!(DwpWiden, n) == 8);
    assert!(offset_of!(DwpWiden, neg_zp2) == 12 && offset_of!(DwpWiden, rows) == 16);
    assert!(offset_of!(DwpMac, row_bytes) == 4 && offset_of!(DwpMac, tables) == 8);
    assert!(offset_of!(DwpMac, bias) == 12 && offset_of!(DwpMac, acc) == 16);
    assert!(offset_of!(DwpMac, acc_span) == 20);
    assert!(offset_of!(DwpOut, out) == 8 && offset_of!(DwpOut, c) == 12);
    assert!(offset_of!(DwpOut, stage) == 16);
    use super::dwplane::OutStage;
    assert!(offset_of!(OutStage, round_zp) == 32 && offset_of!(OutStage, clamp_min4) == 36);
    assert!(offset_of!(OutStage, clamp_max4) == 40);
};

extern "C" {
    fn kiln_dwp_widen_dsp(args: *const DwpWiden);
    fn kiln_dwp_mac_dsp(args: *const DwpMac);
    fn kiln_dwp_out_dsp(args: *const DwpOut);
}

/// The depthwise planes' routines in assembly (`dwplane::Portable` is the twin of each; a call
/// whose slices fail a check returns false, and the layer goes through `dwconv.rs`).
pub(crate) struct DwPlanes;

use super::dwplane::Ring;

fn word_aligned(p: *const i8) -> bool {
    (p as usize) & 3 == 0
}

impl super::dwplane::PlaneOps for DwPlanes {
    fn widen(
        src: &[i8],
        (c, n, zp): (usize, usize, i8),
        ring: &mut [i8],
        r: Ring,
        (slot, at): (usize, usize),
    ) -> bool {
        // pixel j's word at j c (j < n), entries at..at + n of the slot's rows
        let src_ok = n
            .checked_sub(1)
            .and_then(|last| last.checked_mul(c))
            .and_then(|x| x.checked_add(4))
            .is_some_and(|end| end <= src.len());
        let row_ok = at
            .checked_add(n)
            .and_then(|e| e.checked_mul(2))
            .is_some_and(|end| end <= r.row_bytes);
        if !(slot < 3 && c >= 4 && src_ok && row_ok && r.fits(ring.len())) {
            return false;
        }
        let first = ring
            .as_mut_ptr()
            .wrapping_add(slot.wrapping_mul(r.row_bytes))
            .wrapping_add(at.wrapping_mul(2));
        let plane = r.row_bytes.wrapping_mul(3);
        let args = DwpWiden {
            src: src.as_ptr(),
            c,
            n,
            neg_zp2: halves2(i32::from(zp).wrapping_neg()),
            rows: [
                first,
                first.wrapping_add(plane),
                first.wrapping_add(plane.wrapping_mul(2)),
                first.wrapping_add(plane.wrapping_mul(3)),
            ],
        };
        // SAFETY: every read (a word at j c, j < n) lies in `src`; every write (entries at..at
        // + n of row 3 k + slot, k < 4) lies in the ring, whose 12 rows of `row_bytes` fit
        // (all checked above). Unaligned words are allowed on Armv7E-M. The routine follows
        // the AAPCS and writes only those entries.
        unsafe { kiln_dwp_widen_dsp(&args) };
        true
    }

    fn mac(ring: &[i8], r: Ring, tables: &[i8], bias: &[i32; 4], acc: &mut [i8]) -> bool {
        // the 12 rows of the ring (each read to byte 4 n_pairs + 4 by `LDRD` at 4 i), the four
        // channels' tables (60 bytes apart, 36 read), the accumulators to byte 32 n_pairs;
        // `LDRD` and `LDM` need words (`row_bytes` is a multiple of 4)
        let span = r.n_pairs.checked_mul(32);
        let ok = r.n_pairs > 0
            && r.fits(ring.len())
            && r.row_bytes % 4 == 0
            && word_aligned(ring.as_ptr())
            && tables.len() >= 3 * super::dwplane::TABLE_BYTES + 36
            && word_aligned(tables.as_ptr())
            && span.is_some_and(|len| len <= acc.len());
        if !ok {
            return false;
        }
        let args = DwpMac {
            ring: ring.as_ptr(),
            row_bytes: r.row_bytes,
            tables: tables.as_ptr(),
            bias: bias.as_ptr(),
            acc: acc.as_mut_ptr(),
            acc_span: span.unwrap_or(0),
        };
        // SAFETY: the reads (8 bytes at 4 i of the 12 ring rows, 36 table bytes per channel,
        // four biases) and the writes (4 bytes at 32 i + 4 k and 32 i + 16 + 4 k, inside
        // 32 n_pairs) lie in their slices and the loaded ones are word-aligned, all checked
        // above. The routine follows the AAPCS and writes only `acc`.
        unsafe { kiln_dwp_mac_dsp(&args) };
        true
    }

    fn out(
        acc: &[i8],
        stage: &super::dwplane::OutStage,
        out: &mut [i8],
        c: usize,
        ow: usize,
    ) -> bool {
        let acc_len = ow.checked_mul(16);
        let out_end = ow
            .checked_sub(1)
            .and_then(|x| x.checked_mul(c))
            .and_then(|x| x.checked_add(4));
        let ok = acc_len.is_some_and(|len| len <= acc.len())
            && word_aligned(acc.as_ptr())
            && out_end.is_some_and(|end| end <= out.len());
        if !ok {
            return false;
        }
        let args = DwpOut {
            acc: acc.as_ptr(),
            acc_end: acc.as_ptr().wrapping_add(acc_len.unwrap_or(0)),
            out: out.as_mut_ptr(),
            c,
            stage,
        };
        // SAFETY: the reads (16 aligned bytes per pixel) lie in `acc` and the writes (a word at
        // x c) in `out`, checked above; unaligned stores are allowed on Armv7E-M. Every shift
        // is in 33..=62 (`dwplane` checks before it runs). The routine follows the AAPCS and
        // writes only `out`.
        unsafe { kiln_dwp_out_dsp(&args) };
        true
    }
}

core::arch::global_asm!(
    ".section .text.kiln_stem_pixel_dsp,\"ax\",%progbits",
    ".global kiln_stem_pixel_dsp",
    ".type kiln_stem_pixel_dsp,%function",
    ".p2align 2",
    ".thumb_func",
    "kiln_stem_pixel_dsp:",
    // r0: a `StemPixel` (offsets in its definition; lr holds it). One output pixel of
    // `stem.rs`: the window's rows into the column (16 bytes per row, unaligned words), the
    // column widened into lanes, then per pass of four channels the lanes against the weight
    // lanes (`LDRD`, `SMLAD`; accumulators r4-r7 from the biases), the output stage and one word
    // out. Pass loop registers: r0 the lanes, r1 their end, r8/r9 a lane pair, r10/r11 a
    // channel's weights, r12 the weight lanes (kept in the arguments across the output stage).
    "push {{r4-r11, lr}}",
    "mov lr, r0",
    "ldrd r0, r1, [lr, #0]", // the window, the input's row stride
    "ldrd r2, r3, [lr, #8]", // rows, row length
    "ldr r12, [lr, #16]",    // the column
    "1:",
    "ldr r4, [r0]",
    "ldr r5, [r0, #4]",
    "ldr r6, [r0, #8]",
    "ldr r7, [r0, #12]",
    "str r4, [r12]",
    "str r5, [r12, #4]",
    "str r6, [r12, #8]",
    "str r7, [r12, #12]",
    "add r0, r0, r1",
    "add r12, r12, r3",
    "subs r2, r2, #1",
    "bne 1b",
    "ldr r0, [lr, #16]",      // the column
    "ldrd r3, r2, [lr, #20]", // -zp in both lanes, words
    "ldr r1, [lr, #28]",      // the lanes
    "2:",
    "ldr r4, [r0], #4",
    "sxtab16 r5, r3, r4",         // taps 0, 2 - zp
    "sxtab16 r6, r3, r4, ror #8", // taps 1, 3 - zp
    "strd r5, r6, [r1], #8",
    "subs r2, r2, #1",
    "bne 2b",
    "ldr r12, [lr, #32]", // the weight lanes
    "3:",
    "ldr r1, [lr, #36]", // this pass's records: bias, M, s - 33 per channel
    "ldr r4, [r1, #0]",
    "ldr r5, [r1, #12]",
    "ldr r6, [r1, #24]",
    "ldr r7, [r1, #36]",
    "ldr r0, [lr, #28]",
    "ldr r2, [lr, #24]",
    "add r1, r0, r2, lsl #3", // the lanes' end
    "4:",
    "ldrd r8, r9, [r0], #8",
    "ldrd r10, r11, [r12], #8",
    "smlad r4, r8, r10, r4",
    "smlad r4, r9, r11, r4",
    "ldrd r10, r11, [r12], #8",
    "smlad r5, r8, r10, r5",
    "smlad r5, r9, r11, r5",
    "ldrd r10, r11, [r12], #8",
    "smlad r6, r8, r10, r6",
    "smlad r6, r9, r11, r6",
    "ldrd r10, r11, [r12], #8",
    "smlad r7, r8, r10, r7",
    "smlad r7, r9, r11, r7",
    "cmp r0, r1",
    "bne 4b",
    "str r12, [lr, #32]",
    "ldr r8, [lr, #56]", // 2 zp + 1
    "ldr r9, [lr, #36]",
    rq4_at!("r9", "4", "16", "28", "40"),
    "add r9, r9, #48",
    "str r9, [lr, #36]",
    pack4_clamp!("[lr, #48]", "[lr, #52]"),
    "ldr r9, [lr, #44]",
    "str r4, [r9], #4",
    "str r9, [lr, #44]",
    "ldr r12, [lr, #32]",
    "ldr r9, [lr, #40]",
    "subs r9, r9, #1",
    "str r9, [lr, #40]",
    "bne 3b",
    "pop {{r4-r11, pc}}",
    ".size kiln_stem_pixel_dsp, . - kiln_stem_pixel_dsp",
);

/// The arguments of `kiln_stem_pixel_dsp`; `records`, `weights`, `n_passes` and `out` are
/// advanced by the routine, the caller sets them again for each pixel.
#[repr(C)]
struct StemPixel {
    src: *const i8,
    src_stride: usize,
    kh: usize,
    row_len: usize,
    column: *mut i8,
    neg_zp2: u32,
    n_words: usize,
    lanes: *mut i8,
    weights: *const i8,
    records: *const i8,
    n_passes: usize,
    out: *mut i8,
    clamp_min4: u32,
    clamp_max4: u32,
    round_zp: i32,
}

// The routine reads these fields at fixed offsets.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(StemPixel, kh) == 8 && offset_of!(StemPixel, column) == 16);
    assert!(offset_of!(StemPixel, neg_zp2) == 20 && offset_of!(StemPixel, lanes) == 28);
    assert!(offset_of!(StemPixel, weights) == 32 && offset_of!(StemPixel, records) == 36);
    assert!(offset_of!(StemPixel, n_passes) == 40 && offset_of!(StemPixel, out) == 44);
    assert!(offset_of!(StemPixel, clamp_min4) == 48 && offset_of!(StemPixel, round_zp) == 56);
};

extern "C" {
    fn kiln_stem_pixel_dsp(args: *mut StemPixel);
}

/// `stem.rs`'s kernel with `kiln_stem_pixel_dsp` per output pixel: `Ok(false)` (nothing
/// written) for a layer it does not take or a workspace shorter than `stem::workspace_len`.
pub(crate) fn conv2d_i8_stem(
    params: &super::conv::ConvParams<'_>,
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<bool, crate::Error> {
    use super::stem::{arrange, split, Stem};
    let Some(s) = Stem::of(params) else {
        return Ok(false);
    };
    params.check(false, input.len(), output.len())?;
    if !params.shifts_all_high() {
        return Ok(false);
    }
    let Some((column, lanes, weights, records)) = split(workspace, &s) else {
        return Ok(false);
    };
    arrange(params, &s, weights, records);
    let [_, w, c] = params.input_shape;
    let [oh, ow, _] = params.output_shape;
    let row_stride = w.wrapping_mul(c);
    let mut args = StemPixel {
        src: input.as_ptr(),
        src_stride: row_stride,
        kh: s.kh,
        row_len: s.row_len,
        column: column.as_mut_ptr(),
        neg_zp2: halves2(i32::from(params.input_zero_point).wrapping_neg()),
        n_words: s.n_words,
        lanes: lanes.as_mut_ptr(),
        weights: weights.as_ptr(),
        records: records.as_ptr(),
        n_passes: s.oc / 4,
        out: output.as_mut_ptr(),
        clamp_min4: bytes4(params.clamp_min),
        clamp_max4: bytes4(params.clamp_max),
        round_zp: crate::fixed::round_zp(params.output_zero_point),
    };
    // The windows inside the input, row by row: columns `ox_lo..ox_hi` of the rows whose
    // window rows are all inside, whose last row's copy ends inside the input (`max_at`).
    let [h, _, _] = params.input_shape;
    let ([kh, kw], [sh, sw], [top, left]) = (params.kernel, params.stride, params.pad);
    let last_row = kh.wrapping_sub(1).wrapping_mul(row_stride);
    let max_at = input.len().checked_sub(last_row.wrapping_add(16));
    let ox_lo = left.div_ceil(sw.max(1));
    let ox_hi = (w.wrapping_add(left))
        .checked_sub(kw)
        .and_then(|span| span.checked_div(sw))
        .map_or(0, |n| n.wrapping_add(1).min(ow));
    let step = sw.wrapping_mul(c);
    let mut pixels = output.chunks_exact_mut(s.oc.max(1));
    for oy in 0..oh {
        let iy = oy
            .wrapping_mul(sh)
            .checked_sub(top)
            .filter(|&iy| iy.wrapping_add(kh) <= h);
        // the first inside window's offset, then `step` bytes on per pixel
        let mut at = iy.map(|iy| {
            let ix = ox_lo.wrapping_mul(sw).wrapping_sub(left);
            iy.wrapping_mul(w).wrapping_add(ix).wrapping_mul(c)
        });
        for ox in 0..ow {
            let Some(out) = pixels.next() else {
                return Ok(true); // never: `check` proved the output's length
            };
            let inside =
                at.filter(|&a| ox >= ox_lo && ox < ox_hi && max_at.is_some_and(|max| a <= max));
            (args.src, args.src_stride) = match inside {
                Some(a) => (input.as_ptr().wrapping_add(a), row_stride),
                None => {
                    // a window over the padding (or too near the input's end for the copies):
                    // gathered into the column, which the routine then copies onto itself
                    let taps = column.get_mut(..s.taps).unwrap_or(&mut []);
                    super::im2col::gather(params, input, oy, ox, taps);
                    (column.as_ptr(), s.row_len)
                }
            };
            if ox >= ox_lo {
                at = at.map(|a| a.wrapping_add(step));
            }
            args.column = column.as_mut_ptr();
            args.weights = weights.as_ptr();
            args.records = records.as_ptr();
            args.n_passes = s.oc / 4;
            args.out = out.as_mut_ptr();
            // SAFETY: reads: the window's `kh` rows of 16 bytes (`max_at` checked the last one
            // ends inside `input`; a gathered window is the column, whose `column_len` holds every
            // row's copy), the column's `n_words` words, the lanes, `oc * n_words * 8` weight bytes
            // and `12 oc` record bytes (`split` sized each part and aligned them for `LDRD`);
            // writes: the column's copies, the lanes and the pixel's `oc` output bytes (`out` is a
            // chunk of `oc`). Unaligned words are allowed on Armv7E-M. Every shift is in 33..=62
            // (checked above). The routine follows the AAPCS and writes only those bytes and `args`.
            unsafe { kiln_stem_pixel_dsp(&mut args) };
        }
    }
    Ok(true)
}
