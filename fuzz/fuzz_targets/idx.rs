//! Any bytes as IDX files: `read_images`, `read_labels`, and `load` with an `idx:` spec
//! whose images and labels are the two halves of the input (split at a point the first two
//! bytes choose). Errors are fine; panics and input-unbacked allocations are not.
#![no_main]

use kiln_trainer::data::{load, read_images, read_labels, DataOptions, DataSpec};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kiln-fuzz-idx-{}-{name}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let whole = tmp("whole");
    std::fs::write(&whole, data).unwrap();
    let _ = read_images(&whole);
    let _ = read_labels(&whole);

    if data.len() >= 2 {
        let cut = usize::from(u16::from_le_bytes([data[0], data[1]])) % (data.len() - 1);
        let rest = &data[2..];
        let cut = cut.min(rest.len());
        let images = tmp("images");
        let labels = tmp("labels");
        std::fs::write(&images, &rest[..cut]).unwrap();
        std::fs::write(&labels, &rest[cut..]).unwrap();
        let spec = DataSpec::Idx {
            train_images: images,
            train_labels: labels,
            test: None,
        };
        let _ = load(&spec, &DataOptions::default());
    }
});
