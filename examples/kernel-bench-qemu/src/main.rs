//! Each convolution and pooling kernel of kiln-runtime alone, on the shapes of the CMSIS-NN
//! bench (`../shared/tools/cmsis-nn-bench`), under QEMU: for every shape the reference kernel
//! and the dispatched (optimized) kernel run once each between `bench_start` and `bench_stop`
//! (regions 2k and 2k+1 of the qemu-insncount plugin), on deterministic data (xorshift32,
//! weights and inputs `const` in flash, the output and the workspace in RAM). The firmware
//! prints one line per shape with the CRC-32 of both outputs and exits with failure unless
//! every pair is identical.
//!
//! The panic handler calls an undefined symbol, so it links only if no panic is reachable.

#![no_std]
#![no_main]

use core::ptr::addr_of_mut;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use kiln_runtime::crc32::crc32;
use kiln_runtime::kernels::{self, reference, AddParams, ConvParams, FcParams, PoolParams};
use kiln_runtime::Error;

extern "C" {
    /// Defined nowhere: referencing it fails the link, which is the point.
    fn kiln_kernel_bench_has_a_reachable_panic() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe { kiln_kernel_bench_has_a_reachable_panic() }
}

/// Marks the start of one measured kernel call for the instruction counter.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_start() {
    unsafe { core::arch::asm!("nop") }
}

/// Marks the end of one measured kernel call.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_stop() {
    unsafe { core::arch::asm!("nop", "nop") }
}

/// A fault must end the run with a failure, not hang QEMU until its timeout.
#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    write(b"error: hard fault\n");
    exit(false)
}

fn write(bytes: &[u8]) {
    if let Ok(mut stdout) = cortex_m_semihosting::hio::hstdout() {
        let _ = stdout.write_all(bytes);
    }
}

fn exit(success: bool) -> ! {
    let status = if success {
        cortex_m_semihosting::debug::EXIT_SUCCESS
    } else {
        cortex_m_semihosting::debug::EXIT_FAILURE
    };
    cortex_m_semihosting::debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

fn decimal(mut value: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            *digit = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    write(digits.get(start..).unwrap_or(&[]));
}

fn hex(value: u32) {
    let mut digits = *b"0x00000000";
    for (idx, digit) in digits.iter_mut().skip(2).enumerate() {
        let nibble = (value >> (28 - 4 * idx)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize & 0xf];
    }
    write(&digits);
}

/// `N` bytes of xorshift32 from `seed`, at compile time.
const fn bytes<const N: usize>(seed: u32) -> [u8; N] {
    let mut out = [0u8; N];
    let mut s = seed;
    let mut i = 0;
    while i < N {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        out[i] = (s >> 24) as u8;
        i += 1;
    }
    out
}

/// Word arrays (biases, multipliers) at a word boundary, as a blob at an aligned address has
/// them: the Cortex-M0 dense routine needs that (and takes the compact kernel otherwise).
#[repr(C, align(4))]
struct Words<const N: usize>([u8; N]);

/// `N` little-endian words: biases in `[-2^12, 2^12)` or multipliers in `[2^30, 2^31)`.
const fn words<const N: usize>(seed: u32, multipliers: bool) -> [u8; N] {
    let mut out = [0u8; N];
    let mut s = seed;
    let mut i = 0;
    while i + 4 <= N {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let v = if multipliers {
            (s >> 1) | (1 << 30)
        } else {
            ((s >> 19) as i32 - (1 << 12)) as u32
        };
        let b = v.to_le_bytes();
        out[i] = b[0];
        out[i + 1] = b[1];
        out[i + 2] = b[2];
        out[i + 3] = b[3];
        i += 4;
    }
    out
}

/// [`words`] multipliers with every other one exactly `2^30`: its products have a zero low
/// half whenever the accumulator is a multiple of 4, the output stages' rare branch.
const fn tie_multipliers<const N: usize>(seed: u32) -> [u8; N] {
    let mut out = words::<N>(seed, true);
    let mut i = 0;
    while i + 4 <= N {
        out[i] = 0;
        out[i + 1] = 0;
        out[i + 2] = 0;
        out[i + 3] = 0x40;
        i += 8;
    }
    out
}

/// `N` bytes counting up from 0 (wrapping).
const fn ramp<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = i as u8;
        i += 1;
    }
    out
}

/// The little-endian word `v`, `N / 4` times.
const fn repeat_word<const N: usize>(v: u32) -> [u8; N] {
    let mut out = [0u8; N];
    let b = v.to_le_bytes();
    let mut i = 0;
    while i + 4 <= N {
        out[i] = b[0];
        out[i + 1] = b[1];
        out[i + 2] = b[2];
        out[i + 3] = b[3];
        i += 4;
    }
    out
}

/// Little-endian words 0, 1, 2, ...
const fn counting_words<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i + 4 <= N {
        out[i] = (i / 4) as u8;
        i += 4;
    }
    out
}

/// Rows of 8 weights, row `j` all 0 but a 1 at `j % 8`.
const fn one_hot_rows<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut j = 0;
    while j * 8 < N {
        out[j * 8 + j % 8] = 1;
        j += 1;
    }
    out
}

const fn fill<const N: usize>(v: u8) -> [u8; N] {
    [v; N]
}

/// Reinterprets flash bytes as `i8` activations.
fn activations(bytes: &'static [u8]) -> &'static [i8] {
    // Safety: u8 and i8 have the same size and alignment, and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len()) }
}

/// One convolution shape: its data in flash and its geometry.
struct ConvShape {
    name: &'static [u8],
    depthwise: bool,
    input_shape: [usize; 3],
    output_shape: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    weights: &'static [u8],
    bias: &'static [u8],
    multipliers: &'static [u8],
    shifts: &'static [u8],
    input: &'static [u8],
}

impl ConvShape {
    fn params(&self) -> ConvParams<'static> {
        ConvParams {
            input_shape: self.input_shape,
            output_shape: self.output_shape,
            kernel: self.kernel,
            stride: self.stride,
            pad: self.pad,
            weights: self.weights,
            bias: self.bias,
            multipliers: self.multipliers,
            shifts: self.shifts,
            input_zero_point: -7,
            output_zero_point: 5,
            clamp_min: -128,
            clamp_max: 127,
        }
    }

    /// Multiply-accumulates as CMSIS-NN counts them: outputs x kernel area x input channels
    /// per group (padded taps included).
    fn macs(&self) -> u32 {
        let [oh, ow, oc] = self.output_shape;
        let per_output = if self.depthwise {
            1
        } else {
            self.input_shape[2]
        };
        (oh * ow * oc * self.kernel[0] * self.kernel[1] * per_output) as u32
    }
}

macro_rules! conv_shape {
    ($name:expr, $dw:expr, [$h:expr, $w:expr, $c:expr], [$oh:expr, $ow:expr, $oc:expr],
     [$kh:expr, $kw:expr], $stride:expr, $pad:expr, $seed:expr) => {{
        const N_W: usize = if $dw {
            $kh * $kw * $c
        } else {
            $oc * $kh * $kw * $c
        };
        static WEIGHTS: [u8; N_W] = bytes::<N_W>($seed);
        static BIAS: Words<{ $oc * 4 }> = Words(words::<{ $oc * 4 }>($seed ^ 0x1111, false));
        static MULT: Words<{ $oc * 4 }> = Words(words::<{ $oc * 4 }>($seed ^ 0x2222, true));
        // about 7 + 8 + log2(taps) / 2 bits of accumulator down to 8 bits
        static SHIFTS: [u8; $oc] = fill::<$oc>(if N_W / $oc > 64 { 41 } else { 39 });
        static INPUT: [u8; $h * $w * $c] = bytes::<{ $h * $w * $c }>($seed ^ 0x3333);
        ConvShape {
            name: $name,
            depthwise: $dw,
            input_shape: [$h, $w, $c],
            output_shape: [$oh, $ow, $oc],
            kernel: [$kh, $kw],
            stride: $stride,
            pad: $pad,
            weights: &WEIGHTS,
            bias: &BIAS.0,
            multipliers: &MULT.0,
            shifts: &SHIFTS,
            input: &INPUT,
        }
    }};
}

/// The largest output (MNIST conv1, 28x28x16) and a workspace for every layer here: on the
/// Cortex-M4F the two-pixel convolution's with its rows widened (MNIST conv2, 32 rows of 144
/// taps: 9,216 bytes of them), on the Cortex-M0 the dense 784 -> 128's (its input widened into
/// 1,571 bytes) and the one-pixel convolution's.
const OUTPUT_LEN: usize = 28 * 28 * 16;
#[cfg(feature = "board-microbit")]
const WORKSPACE_LEN: usize = 1600;
#[cfg(not(feature = "board-microbit"))]
const WORKSPACE_LEN: usize = 12 * 1024;

/// The workspace the target's convolution kernel needs to run its fastest path.
fn conv_workspace_needed(p: &ConvParams<'_>) -> usize {
    if cfg!(feature = "board-microbit") {
        kernels::im2col::conv_workspace_len(p)
    } else {
        kernels::conv_workspace_len(p)
    }
}

struct Buffers {
    output: [i8; OUTPUT_LEN],
    workspace: [i8; WORKSPACE_LEN],
}

static mut BUFFERS: Buffers = Buffers {
    output: [0; OUTPUT_LEN],
    workspace: [0; WORKSPACE_LEN],
};

/// The dense kernel against the reference on `input`, `n_out` outputs: whether the CRCs agree.
fn dense_case(
    name: &[u8],
    fc: &FcParams<'_>,
    input: &[i8],
    n_out: usize,
    buffers: &mut Buffers,
) -> bool {
    let output = buffers.output.get_mut(..n_out).unwrap_or(&mut []);
    let workspace = &mut buffers.workspace;
    let r = measured(output, |out| reference::fully_connected_i8(fc, input, out));
    let o = measured(output, |out| {
        kernels::fully_connected_i8_workspace(fc, input, workspace, out)
    });
    report(name, (input.len() * n_out) as u32, r, o)
}

/// Runs `kernel` in a measured region and returns its result and the output's CRC-32.
#[inline(never)]
fn measured(output: &mut [i8], kernel: impl FnOnce(&mut [i8]) -> Result<(), Error>) -> (bool, u32) {
    output.fill(0x55);
    bench_start();
    let result = kernel(&mut *output);
    bench_stop();
    let bytes: &[u8] =
        // Safety: as in `activations`.
        unsafe { core::slice::from_raw_parts(output.as_ptr().cast(), output.len()) };
    (result.is_ok(), crc32(bytes))
}

/// Prints `KERNEL name macs=N crc_ref=.. crc_opt=.. ok|MISMATCH` and returns whether it matched.
fn report(name: &[u8], macs: u32, reference: (bool, u32), optimized: (bool, u32)) -> bool {
    let ok = reference.0 && optimized.0 && reference.1 == optimized.1;
    write(b"KERNEL ");
    write(name);
    write(b" macs=");
    decimal(macs);
    write(b" crc_ref=");
    hex(reference.1);
    write(b" crc_opt=");
    hex(optimized.1);
    write(if ok { b" ok\n" } else { b" MISMATCH\n" });
    ok
}

#[entry]
fn main() -> ! {
    // Safety: the only reference to the buffers, taken once.
    let buffers = unsafe { &mut *addr_of_mut!(BUFFERS) };
    let convs = [
        conv_shape!(
            b"kws_conv1",
            false,
            [49, 10, 1],
            [25, 5, 64],
            [10, 4],
            [2, 2],
            [4, 1],
            0x1234_5678
        ),
        conv_shape!(
            b"kws_depthwise",
            true,
            [25, 5, 64],
            [25, 5, 64],
            [3, 3],
            [1, 1],
            [1, 1],
            0x2345_6789
        ),
        conv_shape!(
            b"kws_pointwise",
            false,
            [25, 5, 64],
            [25, 5, 64],
            [1, 1],
            [1, 1],
            [0, 0],
            0x3456_789a
        ),
        conv_shape!(
            b"mnist_conv1",
            false,
            [28, 28, 1],
            [28, 28, 16],
            [3, 3],
            [1, 1],
            [1, 1],
            0x4567_89ab
        ),
        conv_shape!(
            b"mnist_conv2",
            false,
            [14, 14, 16],
            [14, 14, 32],
            [3, 3],
            [1, 1],
            [1, 1],
            0x5678_9abc
        ),
        conv_shape!(
            b"conv1d",
            false,
            [1, 128, 3],
            [1, 124, 16],
            [1, 5],
            [1, 1],
            [0, 0],
            0x6789_abcd
        ),
        // Odd channel counts, borders and stride 2: no CMSIS-NN figure, on-device bit-exactness.
        // Every other channel's multiplier is 2^30: the output stages' zero-low-half branch.
        ConvShape {
            multipliers: {
                static TIES: Words<{ 7 * 4 }> = Words(tie_multipliers::<{ 7 * 4 }>(0x789a_bcde));
                &TIES.0
            },
            ..conv_shape!(
                b"odd_conv",
                false,
                [9, 7, 5],
                [5, 4, 7],
                [3, 3],
                [2, 2],
                [1, 1],
                0x789a_bcde
            )
        },
        ConvShape {
            multipliers: {
                static TIES: Words<{ 6 * 4 }> = Words(tie_multipliers::<{ 6 * 4 }>(0x89ab_cdef));
                &TIES.0
            },
            ..conv_shape!(
                b"odd_depthwise",
                true,
                [9, 7, 6],
                [5, 4, 6],
                [3, 3],
                [2, 2],
                [1, 1],
                0x89ab_cdef
            )
        },
    ];
    let mut all_ok = true;
    for shape in &convs {
        let p = shape.params();
        let input = activations(shape.input);
        let n_out = shape.output_shape.iter().product::<usize>();
        let output = buffers.output.get_mut(..n_out).unwrap_or(&mut []);
        let workspace = &mut buffers.workspace;
        if !shape.depthwise && conv_workspace_needed(&p) > workspace.len() {
            write(b"error: workspace too short\n");
            exit(false);
        }
        let (r, o) = if shape.depthwise {
            (
                measured(output, |out| reference::depthwise_conv2d_i8(&p, input, out)),
                measured(output, |out| kernels::depthwise_conv2d_i8(&p, input, out)),
            )
        } else {
            (
                measured(output, |out| reference::conv2d_i8(&p, input, out)),
                measured(output, |out| {
                    kernels::conv2d_i8_workspace(&p, input, workspace, out)
                }),
            )
        };
        all_ok &= report(shape.name, shape.macs(), r, o);
    }

    // Pooling: MNIST's 2x2 max pool on 28x28x16, and a global average pool on KWS's 25x5x64.
    static POOL_IN: [u8; 28 * 28 * 16] = bytes::<{ 28 * 28 * 16 }>(0x789a_bcde);
    let pools: [(&[u8], bool, PoolParams); 2] = [
        (
            b"mnist_maxpool",
            true,
            PoolParams {
                input_shape: [28, 28, 16],
                output_shape: [14, 14, 16],
                kernel: [2, 2],
                stride: [2, 2],
                input_zero_point: 0,
                output_zero_point: 0,
                multiplier: 1 << 30,
                shift: 31,
                clamp_min: -128,
                clamp_max: 127,
            },
        ),
        (
            b"kws_avgpool",
            false,
            PoolParams {
                input_shape: [25, 5, 64],
                output_shape: [1, 1, 64],
                kernel: [25, 5],
                stride: [1, 1],
                input_zero_point: -3,
                output_zero_point: 2,
                multiplier: 1_374_389_535, // 0.64 * 2^31: 1/125 = 0.64 / 2^6 -> shift 37
                shift: 37,
                clamp_min: -128,
                clamp_max: 127,
            },
        ),
    ];
    for (name, max, p) in &pools {
        let input = activations(POOL_IN.get(..p.input_shape.iter().product()).unwrap_or(&[]));
        let n_out = p.output_shape.iter().product::<usize>();
        let output = buffers.output.get_mut(..n_out).unwrap_or(&mut []);
        let (r, o) = if *max {
            (
                measured(output, |out| reference::max_pool_i8(p, input, out)),
                measured(output, |out| kernels::max_pool_i8(p, input, out)),
            )
        } else {
            (
                measured(output, |out| reference::avg_pool_i8(p, input, out)),
                measured(output, |out| kernels::avg_pool_i8(p, input, out)),
            )
        };
        // the window's taps, as for a convolution
        let macs = (n_out * p.kernel[0] * p.kernel[1]) as u32;
        all_ok &= report(name, macs, r, o);
    }
    // The dense kernel on CMSIS-NN's fully connected shape, for scale: 784 -> 128.
    static FC_WEIGHTS: [u8; 784 * 128] = bytes::<{ 784 * 128 }>(0x9abc_def0);
    static FC_BIAS: Words<{ 128 * 4 }> = Words(words::<{ 128 * 4 }>(0xabcd_ef01, false));
    static FC_MULT: Words<{ 128 * 4 }> = Words(words::<{ 128 * 4 }>(0xbcde_f012, true));
    static FC_SHIFTS: [u8; 128] = fill::<128>(41);
    let fc = FcParams {
        weights: &FC_WEIGHTS,
        bias: &FC_BIAS.0,
        multipliers: &FC_MULT.0,
        shifts: &FC_SHIFTS,
        output_zero_point: 5,
        clamp_min: -128,
        clamp_max: 127,
    };
    let input = activations(POOL_IN.get(..784).unwrap_or(&[]));
    all_ok &= dense_case(b"dense_784_128", &fc, input, 128, buffers);

    // Rounding ties through every output stage: multipliers 2^30 and shift 33 make the output
    // `round(acc / 8)`, with `acc` over a ramp of values, so the product's low half is 0 for
    // every fourth accumulator and half of those are ties, which round to even.
    static RAMP: [u8; 256] = ramp::<256>();
    static TIE_MULT: Words<{ 128 * 4 }> = Words(repeat_word::<{ 128 * 4 }>(1 << 30));
    static TIE_SHIFTS: [u8; 128] = fill::<128>(33);
    static TIE_BIAS: Words<{ 128 * 4 }> = Words(counting_words::<{ 128 * 4 }>());
    static DW_ONES: [u8; 4] = [1, 1, 1, 1];
    static CONV_IDENTITY: [u8; 16] = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
    // Pixel p's channel c is 4 p + c, so with the zero point -7 and these biases the
    // accumulators of channels 0-2 are 4 p + 8 (a zero low half, a tie for odd p) and channel
    // 3's is 4 p + 10.
    static TIE_CONV_BIAS: Words<16> =
        Words([1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0]);
    for (name, depthwise, weights) in [
        (&b"ties_depthwise"[..], true, &DW_ONES[..]),
        (&b"ties_conv"[..], false, &CONV_IDENTITY[..]),
    ] {
        let shape = ConvShape {
            name,
            depthwise,
            input_shape: [1, 64, 4],
            output_shape: [1, 64, 4],
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            weights,
            bias: &TIE_CONV_BIAS.0,
            multipliers: TIE_MULT.0.get(..16).unwrap_or(&[]),
            shifts: TIE_SHIFTS.get(..4).unwrap_or(&[]),
            input: &RAMP,
        };
        let p = shape.params();
        let input = activations(shape.input);
        let output = buffers.output.get_mut(..256).unwrap_or(&mut []);
        let workspace = &mut buffers.workspace;
        let (r, o) = if depthwise {
            (
                measured(output, |out| reference::depthwise_conv2d_i8(&p, input, out)),
                measured(output, |out| kernels::depthwise_conv2d_i8(&p, input, out)),
            )
        } else {
            (
                measured(output, |out| reference::conv2d_i8(&p, input, out)),
                measured(output, |out| {
                    kernels::conv2d_i8_workspace(&p, input, workspace, out)
                }),
            )
        };
        all_ok &= report(name, shape.macs(), r, o);
    }
    // The dense kernel: output j is round((j + x[j % 8]) / 8) over the ramp's first 8 inputs.
    static TIE_FC_WEIGHTS: [u8; 8 * 128] = one_hot_rows::<{ 8 * 128 }>();
    let fc = FcParams {
        weights: &TIE_FC_WEIGHTS,
        bias: &TIE_BIAS.0,
        multipliers: &TIE_MULT.0,
        shifts: &TIE_SHIFTS,
        output_zero_point: 5,
        clamp_min: -128,
        clamp_max: 127,
    };
    let input = activations(RAMP.get(..8).unwrap_or(&[]));
    all_ok &= dense_case(b"ties_dense", &fc, input, 128, buffers);

    // The residual Add: IC ResNet-8's second one (16x16x32) on realistic parameters, and rounding
    // ties (weights 1, multiplier 2^30, shift 33: round((a - zp_a + b - zp_b) / 8)).
    static ADD_B: [u8; 16 * 16 * 32] = bytes::<{ 16 * 16 * 32 }>(0x1357_9bdf);
    let adds: [(&[u8], usize, AddParams); 2] = [
        (
            b"ic_add",
            16 * 16 * 32,
            AddParams {
                weights: [1 << 16, 41_943],
                input_zero_points: [-3, 7],
                output_zero_point: -20,
                multiplier: 1_518_500_250,
                shift: 47,
                clamp_min: -20,
                clamp_max: 127,
            },
        ),
        (
            b"ties_add",
            256,
            AddParams {
                weights: [1, 1],
                input_zero_points: [-7, 2],
                output_zero_point: 5,
                multiplier: 1 << 30,
                shift: 33,
                clamp_min: -128,
                clamp_max: 127,
            },
        ),
    ];
    for (name, n, p) in &adds {
        let (a, b) = if *n == 256 {
            (
                activations(&RAMP),
                activations(TIE_FC_WEIGHTS.get(..256).unwrap_or(&[])),
            )
        } else {
            (
                activations(POOL_IN.get(..*n).unwrap_or(&[])),
                activations(ADD_B.get(..*n).unwrap_or(&[])),
            )
        };
        let a = a.get(..*n).unwrap_or(&[]);
        let output = buffers.output.get_mut(..*n).unwrap_or(&mut []);
        let r = measured(output, |out| reference::add_i8(p, a, b, out));
        let o = measured(output, |out| kernels::add_i8(p, a, b, out));
        all_ok &= report(name, *n as u32, r, o);
    }

    write(if all_ok {
        b"KILN-KERNELS ok\n"
    } else {
        b"KILN-KERNELS MISMATCH\n"
    });
    exit(all_ok)
}
