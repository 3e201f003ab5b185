//! Any bytes as a model blob: `from_bytes` must return Err or a model that runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::exercise(data);
});
