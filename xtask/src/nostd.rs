//! `cargo xtask nostd`: proves the runtime is `no_std` and cannot panic.
//!
//! 1. `kiln-runtime` builds for thumbv6m-none-eabi, a target without `std`, so the
//!    build fails if anything in its dependency graph links `std`.
//! 2. `runtime-nostd/nopanic-check` links only if no panic path survives
//!    optimization in loading or running a model.
//! 3. Clippy's no-panic lints (`runtime-nostd/src/lib.rs`: no indexing, unwrap, panic or
//!    unchecked arithmetic) pass on each kernel family's target, warnings denied.

use crate::ci::workspace_root;
use anyhow::{ensure, Context, Result};
use std::process::Command;

const TARGET: &str = "thumbv6m-none-eabi";

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(args)
        // cargo's target probe runs `rustc -`, which must not read the caller's stdin.
        .stdin(std::process::Stdio::null())
        .status()
        .context("cannot run cargo")?;
    ensure!(
        status.success(),
        "cargo {} failed (are the targets installed? `rustup target add {TARGET} thumbv7em-none-eabihf riscv32imc-unknown-none-elf`)",
        args.join(" ")
    );
    Ok(())
}

pub fn run() -> Result<()> {
    cargo(&["build", "--package", "kiln-runtime", "--target", TARGET])?;
    cargo(&[
        "build",
        "--package",
        "kiln-runtime",
        "--features",
        "f32-output",
        "--release",
        "--target",
        TARGET,
    ])?;
    // Every kernel family: the M0 assembly (thumbv6m), the DSP kernel (thumbv7em) and the
    // portable four-row kernel (riscv32imc).
    for target in [
        TARGET,
        "thumbv7em-none-eabihf",
        "riscv32imc-unknown-none-elf",
    ] {
        cargo(&[
            "build",
            "--release",
            "--target",
            target,
            "--manifest-path",
            "runtime-nostd/nopanic-check/Cargo.toml",
        ])?;
        // and the `small` build's compact kernels
        cargo(&[
            "build",
            "--release",
            "--target",
            target,
            "--features",
            "small",
            "--manifest-path",
            "runtime-nostd/nopanic-check/Cargo.toml",
        ])?;
        cargo(&[
            "clippy",
            "--release",
            "--package",
            "kiln-runtime",
            "--target",
            target,
            "--",
            "--deny",
            "warnings",
        ])?;
    }
    println!(
        "cargo xtask nostd: kiln-runtime builds for {TARGET} and has no reachable panic \
         (the kernels of thumbv6m, thumbv7em and riscv32imc, default and `small`; clippy's \
         no-panic lints clean on each)"
    );
    Ok(())
}
