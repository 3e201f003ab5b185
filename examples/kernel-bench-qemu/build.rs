//! Picks the board's memory map.

use std::path::PathBuf;

const BOARDS: [&str; 2] = ["microbit", "mps2-an386"];

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
        panic!("select exactly one board feature (board-microbit or board-mps2-an386), got {selected:?}");
    };
    let memory = manifest_dir.join("memory").join(format!("{board}.x"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::copy(&memory, out_dir.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rerun-if-changed={}", memory.display());
}
