//! kiln-trainer: trains multilayer perceptrons with nalgebra, exports them to
//! ONNX through `kiln-onnx`, and checks every exported file with tract.

pub mod data;
pub mod rng;
