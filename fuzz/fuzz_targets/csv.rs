//! Any bytes as a CSV file through `data::load`. Errors are fine; panics are not.
#![no_main]

use kiln_trainer::data::{load, DataOptions, DataSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("kiln-fuzz-csv-{}.csv", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = load(&DataSpec::Csv(path), &DataOptions::default());
});
