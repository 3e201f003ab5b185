//! `cargo xtask nostd`: proves the runtime is `no_std` and cannot panic.
//!
//! 1. `kiln-runtime` builds for thumbv6m-none-eabi, a target without `std`, so the
//!    build fails if anything in its dependency graph links `std`.
//! 2. `runtime-nostd/nopanic-check` links only if no panic path survives
//!    optimization in loading or running a model.

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
        .status()
        .context("cannot run cargo")?;
    ensure!(
        status.success(),
        "cargo {} failed (are the targets installed? `rustup target add {TARGET} thumbv7em-none-eabihf`)",
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
    // Both kernel families: the reference (thumbv6m) and the DSP kernel (thumbv7em).
    for target in [TARGET, "thumbv7em-none-eabihf"] {
        cargo(&[
            "build",
            "--release",
            "--target",
            target,
            "--manifest-path",
            "runtime-nostd/nopanic-check/Cargo.toml",
        ])?;
    }
    println!(
        "cargo xtask nostd: kiln-runtime builds for {TARGET} and has no reachable panic \
         (reference kernel on thumbv6m, DSP kernel on thumbv7em)"
    );
    Ok(())
}
