//! Picks the board's memory map and checks that the generated model and images exist.

use std::path::PathBuf;

const BOARDS: [&str; 8] = [
    "microbit",
    "lm3s6965evb",
    "mps2-an385",
    "mps2-an386",
    "mps2-an500",
    "sifive-e",
    "microbit-tiny",
    "sifive-e-tiny",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let selected: Vec<&str> = BOARDS
        .iter()
        .copied()
        .filter(|board| {
            let feature = format!(
                "CARGO_FEATURE_BOARD_{}",
                board.replace('-', "_").to_uppercase()
            );
            std::env::var_os(feature).is_some()
        })
        .collect();
    let [board] = selected.as_slice() else {
        panic!(
            "select exactly one board feature (board-{}), got {selected:?}",
            BOARDS.join(", board-")
        );
    };
    let memory = manifest_dir.join("memory").join(format!("{board}.x"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::copy(&memory, out_dir.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rerun-if-changed={}", memory.display());

    let generated = manifest_dir.join("src/generated");
    for file in ["model.rs", "images.rs", "expected.rs"] {
        let path = generated.join(file);
        assert!(
            path.exists(),
            "{} is missing: run `cargo xtask firmware` in the Kiln workspace first (see README.md)",
            path.display()
        );
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
