//! kiln-trainer: trains multilayer perceptrons with nalgebra, exports them to
//! ONNX through `kiln-onnx`, and checks every exported file with tract.

pub mod data;
pub mod rng;
pub mod fsutil;
pub mod model;
pub mod nn;
pub mod train;
pub mod check;
pub mod export;
pub mod npy;
pub mod quant;
pub mod cli;
