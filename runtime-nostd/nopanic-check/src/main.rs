//! Link-time proof that no panic path is reachable in the runtime.
//!
//! The panic handler calls a symbol that is defined nowhere. If any panic (bounds check,
//! overflow, unwrap, slice split...) survives optimization anywhere in the code below, the
//! handler is referenced and linking fails with `undefined symbol: kiln_panic_path_is_reachable`.
//! Every input comes through volatile reads, so the optimizer cannot fold anything away.
//! (Checked to fail when a real out-of-bounds read is added.)

#![no_std]
#![no_main]

use core::panic::PanicInfo;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use kiln_runtime::Model;

extern "C" {
    fn kiln_panic_path_is_reachable() -> !;
}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    unsafe { kiln_panic_path_is_reachable() }
}

// `static mut`: the optimizer cannot assume its contents.
static mut BLOB: [u8; 4096] = [0; 4096];
static mut SCRATCH: [i8; 2048] = [0; 2048];
static mut LOGITS: [i8; 64] = [0; 64];
static mut RAW: [i32; 256] = [0; 256];
static mut OUT: [f32; 64] = [0.0; 64];

fn knob(i: usize) -> usize {
    unsafe { read_volatile(addr_of!(BLOB[i % 8])) as usize }
}

/// `&mut s[..n]` or an empty slice: no panic in this harness itself.
fn head<T>(s: &mut [T], n: usize) -> &mut [T] {
    match s.get_mut(..n) {
        Some(h) => h,
        None => &mut [],
    }
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let blob = unsafe { &*addr_of!(BLOB) };
    let blob = blob.get(..knob(0) * 16).unwrap_or(&[]);
    let mut result = 0usize;
    if let Ok(m) = Model::from_bytes(blob) {
        let raw = unsafe { &mut *addr_of_mut!(RAW) };
        let scratch = unsafe { &mut *addr_of_mut!(SCRATCH) };
        let logits = unsafe { &mut *addr_of_mut!(LOGITS) };
        let out = unsafe { &mut *addr_of_mut!(OUT) };
        let raw = head(raw, knob(1));
        result = m
            .run(raw, head(scratch, knob(2) * 8), head(logits, knob(3)))
            .unwrap_or(1);
        let mut q = [0i8; 300];
        let mut l = [0i8; 7];
        result ^= m
            .run_quantized(
                head(logits, knob(3)),
                head(&mut q, knob(4)),
                head(&mut l, knob(5)),
            )
            .unwrap_or(2);
        // the reference kernels (every layer kind, the Add's included)
        result ^= m
            .run_quantized_reference(
                head(logits, knob(3)),
                head(&mut q, knob(4)),
                head(&mut l, knob(5)),
            )
            .unwrap_or(13);
        let mut qi = [0i8; 16];
        result ^= m
            .quantize_input(raw, head(&mut qi, knob(6)))
            .map_or(3, |_| qi[0] as usize);
        result ^= m.dequantize(&l, head(out, knob(7))).map_or(4, |_| 5);
        // int16 activations: the input stage, both entry points and the dequantization.
        let mut l16 = [0i16; 9];
        let mut q16 = [0i16; 40];
        result ^= m
            .quantize_input_i16(raw, head(&mut q16, knob(6)))
            .map_or(7, |_| q16[0] as usize);
        result ^= m
            .run_i16(raw, head(scratch, knob(2) * 8), head(&mut l16, knob(3)))
            .unwrap_or(8);
        result ^= m
            .run_quantized_i16(
                head(&mut q16, knob(4)),
                head(scratch, knob(2) * 8),
                head(&mut l16, knob(5)),
            )
            .unwrap_or(9);
        result ^= m
            .run_quantized_i16_reference(
                head(&mut q16, knob(4)),
                head(scratch, knob(2) * 8),
                head(&mut l16, knob(5)),
            )
            .unwrap_or(12);
        result ^= m
            .dequantize_i16(&l16, head(out, knob(7)))
            .map_or(10, |_| 11);
    }
    // The dense-only kind set: its own monomorphized loader and node loop.
    if let Ok(m) = Model::<{ kiln_runtime::kinds::DENSE }>::with_kinds(blob) {
        let scratch = unsafe { &mut *addr_of_mut!(SCRATCH) };
        let logits = unsafe { &mut *addr_of_mut!(LOGITS) };
        let mut q = [0i8; 300];
        result ^= m
            .run_quantized(
                head(&mut q, knob(4)),
                head(scratch, knob(2) * 8),
                head(logits, knob(3)),
            )
            .unwrap_or(6);
    }
    // A set with the residual Add: its own loader (the second input, the Add record) and node
    // loop (two inputs out of the arena).
    if let Ok(m) = Model::<{ kiln_runtime::kinds::CONV2D | kiln_runtime::kinds::ADD }>::with_kinds(blob) {
        let scratch = unsafe { &mut *addr_of_mut!(SCRATCH) };
        let logits = unsafe { &mut *addr_of_mut!(LOGITS) };
        let mut q = [0i8; 300];
        result ^= m
            .run_quantized(
                head(&mut q, knob(4)),
                head(scratch, knob(2) * 8),
                head(logits, knob(3)),
            )
            .unwrap_or(14);
    }
    unsafe { write_volatile(addr_of_mut!(LOGITS[0]), result as i8) };
    loop {}
}
