//! Picks the kernel family for the target, at compile time (stable Rust does not expose Arm
//! target features such as `dsp` to `cfg`). `src/kernels/mod.rs` is the one place that acts on
//! it. `KILN_KERNEL=reference` forces the reference kernel (for benchmarks against it).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kiln_kernel, values(\"reference\", \"dsp\"))");
    println!("cargo::rerun-if-env-changed=KILN_KERNEL");
    let target = std::env::var("TARGET").unwrap_or_default();
    let kernel = match std::env::var("KILN_KERNEL").ok().as_deref() {
        Some("reference") => "reference",
        Some("") | None => {
            // Armv7E-M (Cortex-M4/M7) always has the DSP extension.
            if target.starts_with("thumbv7em") {
                "dsp"
            } else {
                "reference"
            }
        }
        Some(other) => panic!("KILN_KERNEL={other}: expected `reference` or nothing"),
    };
    println!("cargo::rustc-cfg=kiln_kernel=\"{kernel}\"");
}
