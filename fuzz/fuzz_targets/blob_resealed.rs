//! The input is a blob body (everything but the CRC). The target writes the right total
//! length into the header (bytes 8..12) and appends the right CRC-32, so random bodies get
//! past the framing checks and exercise the structural validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut blob = data.to_vec();
    let total = blob.len() + 4;
    if blob.len() >= 12 {
        if let Ok(total) = u32::try_from(total) {
            blob[8..12].copy_from_slice(&total.to_le_bytes());
        }
    }
    let crc = kiln_runtime::crc32::crc32(&blob);
    blob.extend_from_slice(&crc.to_le_bytes());
    common::exercise(&blob);
});
