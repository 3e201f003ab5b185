//! Runs a baked kiln model on every embedded test image, under QEMU, and proves the result
//! equals the host's: the CRC-32 of all int8 logits must match the one `cargo xtask firmware`
//! computed with the same runtime on the host. Output goes over semihosting; the exit status
//! is 0 only on a match.
//!
//! Variant 1 (default) links the model in its Rust-source form (`kiln bake --rust`).
//! Variant 2 (feature `blob-partition`) links no model: it reads the `.kiln` blob from the
//! flash partition `_kiln_model_partition`, where QEMU's loader put it.
//!
//! The inputs are 8-bit images (zero-run-length coded, widened to the raw `i32` values the
//! runtime takes) or, for a model over real-valued features (`images::RAW_SAMPLES`), the raw
//! `i32` values themselves, `round(x * 2^bits)` with the blob's input fraction bits, converted
//! on the host. For those `cargo xtask firmware` builds feature `whole-run`: the measured
//! inference is one whole `Model::run` call (raw values to outputs, as a product calls it)
//! instead of `run_quantized`. A regression model
//! (`images::CLASSIFIER` false: the anomaly-detection autoencoder) has no accuracy: only the
//! CRC-32 of its outputs is compared.
//!
//! Variant `lean` is what a product ships: load and run only. It skips the on-device reference
//! check and kernel cases, and measures the peak stack of each `run_quantized` (or `run`) call
//! alone.
//!
//! The panic handler calls an undefined symbol, so the firmware links only if no panic path
//! is reachable anywhere in it, inference included.

#![no_std]
#![no_main]

mod arch;
mod console;
#[cfg(not(any(feature = "no-inference", feature = "lean")))]
mod kernel_check;
mod rle;
mod stack;

#[cfg(not(feature = "blob-partition"))]
#[path = "generated/model.rs"]
mod model;

#[path = "generated/images.rs"]
mod images;

#[path = "generated/expected.rs"]
mod expected;

use core::ptr::addr_of_mut;
use kiln_runtime::crc32::Crc32;
#[cfg(not(feature = "no-inference"))]
use kiln_runtime::Model;

/// The model type: only the layer kinds the model uses are linked (`kiln_runtime::kinds`).
#[cfg(not(feature = "no-inference"))]
type Net = Model<'static, { images::LAYER_KINDS }>;

/// The bytes the `Model` value takes (reported, and held to 128 B on 32-bit cores).
#[cfg(not(feature = "no-inference"))]
const MODEL_BYTES: usize = core::mem::size_of::<Net>();
#[cfg(feature = "no-inference")]
const MODEL_BYTES: usize = 0;

extern "C" {
    /// Defined nowhere: referencing it fails the link, which is the point.
    fn kiln_firmware_has_a_reachable_panic() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe { kiln_firmware_has_a_reachable_panic() }
}

/// Marks the start of one measured inference for the instruction counter.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_start() {
    unsafe { core::arch::asm!("nop") }
}

/// Marks the end of one measured inference.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_stop() {
    unsafe { core::arch::asm!("nop", "nop") }
}

/// One activation: int8, or int16 for a 16x8 model (feature `int16`).
#[cfg(not(feature = "int16"))]
type Q = i8;
#[cfg(feature = "int16")]
type Q = i16;

/// The buffers live in static RAM, so the painted stack measures the runtime's own frames.
struct Buffers {
    pixels: [u8; images::N_PIXELS],
    raw: [i32; images::N_INPUTS],
    quantized: [Q; images::N_INPUTS],
    scratch: [i8; images::SCRATCH_LEN],
    logits: [Q; images::N_OUTPUTS],
    reference_logits: [Q; images::N_OUTPUTS],
}

static mut BUFFERS: Buffers = Buffers {
    pixels: [0; images::N_PIXELS],
    raw: [0; images::N_INPUTS],
    quantized: [0; images::N_INPUTS],
    scratch: [0; images::SCRATCH_LEN],
    logits: [0; images::N_OUTPUTS],
    reference_logits: [0; images::N_OUTPUTS],
};

#[cfg(all(not(feature = "blob-partition"), not(feature = "no-inference")))]
fn load_model() -> Result<Net, kiln_runtime::Error> {
    model::model()
}

/// Reads the blob's length from its header (offset 8) and parses exactly that many bytes.
#[cfg(all(feature = "blob-partition", not(feature = "no-inference")))]
fn load_model() -> Result<Net, kiln_runtime::Error> {
    let partition = arch::model_partition();
    let header_len = match partition.get(8..12) {
        Some(&[b0, b1, b2, b3]) => u32::from_le_bytes([b0, b1, b2, b3]) as usize,
        _ => 0,
    };
    let blob = partition.get(..header_len).unwrap_or(partition);
    Net::with_kinds(blob)
}

/// One inference, or a stand-in without the runtime (feature `no-inference`, for code size).
/// Two measured regions per image: the input stage (raw values to int8), then the network
/// (int8 input to int8 logits); with feature `whole-run` the second is the whole inference,
/// `Model::run` from the raw values (the quantized input is then only for the on-device
/// reference check).
#[cfg(not(feature = "no-inference"))]
fn infer(
    model: &Net,
    raw: &[i32],
    quantized: &mut [Q],
    scratch: &mut [i8],
    logits: &mut [Q],
    inference_stack: &mut usize,
) -> Result<usize, kiln_runtime::Error> {
    bench_start();
    let staged = kiln_input_stage(model, raw, quantized);
    bench_stop();
    staged?;
    let window = stack::paint_window();
    bench_start();
    #[cfg(not(feature = "whole-run"))]
    let result = kiln_network(model, quantized, scratch, logits);
    #[cfg(feature = "whole-run")]
    let result = kiln_run(model, raw, scratch, logits);
    bench_stop();
    *inference_stack = (*inference_stack).max(stack::window_peak(window));
    result
}

/// The whole inference (`Model::run`: the input stage into the arena, then every layer) behind
/// one symbol, in place of `kiln_network` (only one of them is linked: a `no_mangle` function
/// stays in the firmware even if nothing calls it).
#[cfg(all(not(feature = "no-inference"), feature = "whole-run"))]
#[no_mangle]
#[inline(never)]
fn kiln_run(
    model: &Net,
    raw: &[i32],
    scratch: &mut [i8],
    logits: &mut [Q],
) -> Result<usize, kiln_runtime::Error> {
    #[cfg(not(feature = "int16"))]
    return model.run(raw, scratch, logits);
    #[cfg(feature = "int16")]
    return model.run_i16(raw, scratch, logits);
}

/// The input stage behind one symbol, so `cargo xtask bench-mcu` can size the code it runs
/// (this function and everything it calls).
#[cfg(not(feature = "no-inference"))]
#[no_mangle]
#[inline(never)]
fn kiln_input_stage(
    model: &Net,
    raw: &[i32],
    quantized: &mut [Q],
) -> Result<(), kiln_runtime::Error> {
    #[cfg(not(feature = "int16"))]
    return model.quantize_input(raw, quantized);
    #[cfg(feature = "int16")]
    return model.quantize_input_i16(raw, quantized);
}

/// The network (int8 input to int8 logits) behind one symbol, sized like the input stage.
#[cfg(all(not(feature = "no-inference"), not(feature = "whole-run")))]
#[no_mangle]
#[inline(never)]
fn kiln_network(
    model: &Net,
    quantized: &[Q],
    scratch: &mut [i8],
    logits: &mut [Q],
) -> Result<usize, kiln_runtime::Error> {
    #[cfg(not(feature = "int16"))]
    return model.run_quantized(quantized, scratch, logits);
    #[cfg(feature = "int16")]
    return model.run_quantized_i16(quantized, scratch, logits);
}

/// The same network through the reference kernel (not measured): the optimized kernel must
/// give the same logits on the device, bit for bit.
#[cfg(not(any(feature = "no-inference", feature = "lean", feature = "int16")))]
fn reference_agrees(
    model: &Net,
    quantized: &[i8],
    scratch: &mut [i8],
    logits: &[i8],
    reference_logits: &mut [i8],
) -> bool {
    model
        .run_quantized_reference(quantized, scratch, reference_logits)
        .is_ok()
        && logits == reference_logits
}

/// [`reference_agrees`] for an int16 model: the int16 reference kernel.
#[cfg(all(feature = "int16", not(any(feature = "no-inference", feature = "lean"))))]
fn reference_agrees(
    model: &Net,
    quantized: &[i16],
    scratch: &mut [i8],
    logits: &[i16],
    reference_logits: &mut [i16],
) -> bool {
    model
        .run_quantized_i16_reference(quantized, scratch, reference_logits)
        .is_ok()
        && logits == reference_logits
}

/// Without the check (variants `lean` and `no-inference`): the other variant of the same
/// board and model runs it.
#[cfg(any(feature = "no-inference", feature = "lean"))]
fn reference_agrees<M>(_: &M, _: &[Q], _: &mut [i8], _: &[Q], _: &mut [Q]) -> bool {
    true
}

/// The kernels against the reference on synthetic layers (see kernel_check.rs).
#[cfg(not(any(feature = "no-inference", feature = "lean")))]
fn kernel_cases() -> (u32, u32) {
    kernel_check::run()
}

#[cfg(any(feature = "no-inference", feature = "lean"))]
fn kernel_cases() -> (u32, u32) {
    (0, 0)
}

/// Without the runtime there is no model to load.
#[cfg(feature = "no-inference")]
fn load_model() -> Result<(), kiln_runtime::Error> {
    Ok(())
}

#[cfg(feature = "no-inference")]
fn infer(
    _model: &(),
    raw: &[i32],
    quantized: &mut [Q],
    _scratch: &mut [i8],
    logits: &mut [Q],
    _inference_stack: &mut usize,
) -> Result<usize, kiln_runtime::Error> {
    bench_start();
    for (q, value) in quantized.iter_mut().zip(raw) {
        *q = unsafe { core::ptr::read_volatile(value) } as Q;
    }
    bench_stop();
    // The same stack measurement as the real variants, so the code-size difference is the
    // runtime's alone.
    let window = stack::paint_window();
    bench_start();
    for (logit, value) in logits.iter_mut().zip(quantized.iter()) {
        *logit = unsafe { core::ptr::read_volatile(value) };
    }
    bench_stop();
    *_inference_stack = (*_inference_stack).max(stack::window_peak(window));
    Ok(0)
}

pub fn app() -> ! {
    stack::paint();
    console::text(b"kiln firmware: ");
    console::text(images::DESCRIPTION.as_bytes());
    console::text(b"\n");
    let (n_kernel_cases, n_kernel_case_mismatches) = kernel_cases();
    // Painted again after semihosting's first call, so the peak belongs to the inference loop.
    stack::paint();

    let Ok(model) = load_model() else {
        console::text(b"error: the model blob does not load (run `kiln inspect` on it)\n");
        arch::exit(false)
    };

    // Safety: the only reference to BUFFERS; no interrupt touches it.
    let buffers = unsafe { &mut *addr_of_mut!(BUFFERS) };
    let mut crc = Crc32::new();
    let mut n_correct: u32 = 0;
    let mut n_kernel_mismatches: u32 = 0;
    let mut inference_stack: usize = 0;
    let mut decoder = rle::Decoder::new(&images::PIXELS_RLE);
    for (sample, &label) in images::LABELS.iter().enumerate() {
        if images::RAW_SAMPLES {
            // Real-valued features: the host converted them to the raw i32 values.
            let Some(row) = images::RAW_INPUTS.get(sample) else {
                console::text(b"error: the embedded samples are missing\n");
                arch::exit(false)
            };
            buffers.raw = *row;
        } else {
            if !decoder.next_image(&mut buffers.pixels) {
                console::text(b"error: the embedded images are corrupt\n");
                arch::exit(false);
            }
            for (raw, &pixel) in buffers.raw.iter_mut().zip(buffers.pixels.iter()) {
                *raw = i32::from(pixel);
            }
        }
        match infer(
            &model,
            &buffers.raw,
            &mut buffers.quantized,
            &mut buffers.scratch,
            &mut buffers.logits,
            &mut inference_stack,
        ) {
            Ok(class) => {
                if images::CLASSIFIER && class == usize::from(label) {
                    n_correct += 1;
                }
            }
            Err(_) => {
                console::text(b"error: inference refused the buffers\n");
                arch::exit(false)
            }
        }
        for &logit in buffers.logits.iter() {
            crc.update(&logit.to_le_bytes());
        }
        if !reference_agrees(
            &model,
            &buffers.quantized,
            &mut buffers.scratch,
            &buffers.logits,
            &mut buffers.reference_logits,
        ) {
            n_kernel_mismatches += 1;
        }
    }
    let checksum = crc.finish();
    let stack_peak = stack::peak();
    let n_images = images::LABELS.len() as u32;
    let matches = checksum == expected::HOST_CRC32
        && n_correct == expected::HOST_CORRECT
        && n_kernel_mismatches == 0
        && n_kernel_case_mismatches == 0;

    console::text(b"KILN-RESULT images=");
    console::decimal(n_images);
    // A regression model's argmax means nothing: no accuracy, the CRC-32 is the check.
    console::text(b" correct=");
    if images::CLASSIFIER {
        console::decimal(n_correct);
    } else {
        console::text(b"-");
    }
    console::text(b" crc32=");
    console::hex(checksum);
    console::text(b" host_correct=");
    if images::CLASSIFIER {
        console::decimal(expected::HOST_CORRECT);
    } else {
        console::text(b"-");
    }
    console::text(b" host_crc32=");
    console::hex(expected::HOST_CRC32);
    console::text(b" kernel_vs_reference_mismatches=");
    console::decimal(n_kernel_mismatches);
    console::text(b" kernel_cases=");
    console::decimal(n_kernel_cases);
    console::text(b" kernel_case_mismatches=");
    console::decimal(n_kernel_case_mismatches);
    console::text(b" stack_peak=");
    console::decimal(stack_peak as u32);
    console::text(b" inference_stack=");
    console::decimal(inference_stack as u32);
    console::text(b" model_bytes=");
    console::decimal(MODEL_BYTES as u32);
    console::text(if matches {
        b" status=match\n" as &[u8]
    } else {
        b" status=MISMATCH\n"
    });
    arch::exit(matches)
}
