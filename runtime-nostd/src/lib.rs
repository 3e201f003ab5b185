//! kiln-runtime: runs int8 models baked by `kiln` on microcontrollers.
//!
//! The crate is `#![no_std]`, never allocates, never panics and uses no float on
//! the inference path. It depends on no other workspace crate.
//!
//! - [`fixed`]: the fixed-point arithmetic of `docs/quantization.md` (`rq`, `sat8`), defined once.
//! - [`kernels`]: the int8 kernels of the layer graph (`docs/layer-graph.md`): dense,
//!   convolution, depthwise convolution, max and average pooling, the residual add (the scalar
//!   references are the specification), and the 256-entry activation table.
//! - [`Model`]: a model blob (`docs/blob-format.md`, a graph of layers with its buffer plan)
//!   validated once by [`Model::from_bytes`], borrowed without copying, then run with
//!   caller-provided buffers. After a successful load,
//!   inference can only fail on wrong buffer lengths, and those are checked before any work.
//! - [`crc32`]: the CRC-32 that seals a blob.
//! - `encode` (feature `encode`, uses `std`): the one writer of the blob format and the buffer
//!   planner.
//! - `Model::dequantize` (feature `f32-output`): the only float in the crate, for the final logits.
//!
//! Features only add items; they never change the arithmetic.
//!
//! ```
//! # #[cfg(feature = "encode")] {
//! use kiln_runtime::encode::{
//!     chain, encode, ActivationSpec, AffineSpec, DenseSpec, InputStageSpec, LayerSpec, ModelSpec,
//! };
//! use kiln_runtime::Model;
//!
//! // 2 inputs -> 2 logits; input q = rq(256 * x, 2^30, 39) = x / 2, weights the identity matrix.
//! let spec = ModelSpec {
//!     activations: kiln_runtime::encode::Activations::Int8,
//!     input: InputStageSpec {
//!         zero_point: 0,
//!         frac_bits: 0,
//!         features: vec![AffineSpec { offset: 0, multiplier: 1 << 30, shift: 39 }],
//!     },
//!     input_shape: [1, 1, 2],
//!     nodes: chain([LayerSpec::Dense(DenseSpec {
//!         n_inputs: 2,
//!         n_outputs: 2,
//!         input_zero_point: 0,
//!         output_zero_point: 0,
//!         weights: vec![1, 0, 0, 1],
//!         bias: vec![0, 0],
//!         multipliers: vec![1 << 30, 1 << 30],
//!         shifts: vec![30, 30], // * 2^30 / 2^30 = * 1
//!         activation: ActivationSpec::Identity,
//!     })]),
//!     output_scale: 0.5,
//!     output_zero_point: 0,
//! };
//! let blob = encode(&spec).unwrap();
//! let model = Model::from_bytes(&blob).unwrap();
//! let mut scratch = [0i8; 4];
//! assert_eq!(model.scratch_len(), scratch.len());
//! let mut logits = [0i8; 2];
//! let class = model.run(&[10, 30], &mut scratch, &mut logits).unwrap();
//! assert_eq!((class, logits), (1, [5, 15]));
//! # }
//! ```

#![no_std]
// Unsafe code only in the assembly and SIMD modules (kernels/*_asm.rs, simd32.rs, sse2.rs) and
// the blob's aligned word loads (words.rs).
#![deny(unsafe_code)]
// The no-panic rule, checked by clippy on everything but the tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::arithmetic_side_effects,
    )
)]

#[cfg(any(test, feature = "encode"))]
extern crate std;

mod blob;
pub mod crc32;
mod error;
pub mod fixed;
pub mod kernels;
pub mod kinds;
mod model;
mod words;

#[cfg(any(test, feature = "encode"))]
pub mod encode;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use blob::{FORMAT_VERSION, MAGIC, MAX_INPUT_FRAC_BITS, OLDEST_FORMAT_VERSION};
pub use error::Error;
pub use model::{Activation, InputStage, LayerInfo, LayerKind, Model, MAX_LAYERS};
