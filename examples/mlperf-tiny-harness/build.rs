//! Puts memory.x on the linker's path and checks that the generated model exists.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let memory = manifest_dir.join("memory.x");
    std::fs::copy(&memory, out_dir.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rerun-if-changed={}", memory.display());
    for file in ["model.rs", "harness.rs"] {
        let path = manifest_dir.join("src/generated").join(file);
        assert!(
            path.exists(),
            "{} is missing: run `cargo xtask tiny-harness` in the Kiln workspace first, or \
             write it by hand (see README.md)",
            path.display()
        );
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
