//! Picks the kernel family for the target, at compile time (stable Rust does not expose Arm
//! target features such as `dsp` to `cfg`). `src/kernels/mod.rs` is the one place that acts on
//! it: `dsp` (the packed SMLAD kernel) on Armv7E-M; the four-row kernel with its inner loop in
//! Thumb-1 assembly (`m0`) on Armv6-M and Armv7-M, in RISC-V assembly (`rv32`) on RV32IM, with
//! SSE2 (`sse2`) on x86-64, and in portable Rust (`rows4`) everywhere else. `KILN_KERNEL=reference` forces
//! the reference kernel (for benchmarks against it). The `small` feature takes the reference
//! convolution and pooling kernels and the compact dense kernel (`kiln_small`): the least code,
//! the same bits.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kiln_kernel, values(\"reference\", \"dsp\", \"rows4\", \"m0\", \"rv32\", \"sse2\"))");
    println!("cargo::rerun-if-env-changed=KILN_KERNEL");
    let target = std::env::var("TARGET").unwrap_or_default();
    let small = std::env::var_os("CARGO_FEATURE_SMALL").is_some();
    let kernel = match std::env::var("KILN_KERNEL").ok().as_deref() {
        Some("reference") => "reference",
        Some("") | None if small => "reference",
        Some("") | None => {
            // Armv7E-M (Cortex-M4/M7) always has the DSP extension.
            if target.starts_with("thumbv7em") {
                "dsp"
            } else if target.starts_with("thumbv6m") || target.starts_with("thumbv7m") {
                // Armv6-M and Armv7-M without DSP (Cortex-M0/M0+/M3): the four-row kernel with
                // its inner loop in Thumb-1 assembly, which every Cortex-M runs.
                "m0"
            } else if target.starts_with("riscv32im") || target.starts_with("riscv32gc") {
                // RV32 with the M extension: the same, in RISC-V assembly.
                "rv32"
            } else if target.starts_with("x86_64") {
                // Every x86-64 core has SSE2: the four-row kernel with a `pmaddwd` inner loop.
                "sse2"
            } else {
                "rows4"
            }
        }
        Some(other) => panic!("KILN_KERNEL={other}: expected `reference` or nothing"),
    };
    println!("cargo::rustc-cfg=kiln_kernel=\"{kernel}\"");
    // `small` without an explicit KILN_KERNEL: the compact dense kernel (`kernels/compact.rs`)
    // instead of the reference one, the same bits in less code than either.
    println!("cargo::rustc-check-cfg=cfg(kiln_small)");
    if small
        && std::env::var("KILN_KERNEL")
            .ok()
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        println!("cargo::rustc-cfg=kiln_small");
    }
}
