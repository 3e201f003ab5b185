//! kiln-runtime: runs models baked by `kiln` on microcontrollers.
//!
//! The crate is `#![no_std]`, never allocates, never panics and uses no float on
//! the inference path. It depends on no other workspace crate. The int8
//! fixed-point kernels and the model formats arrive with the quantization work;
//! until then the crate only pins these rules in place.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;
