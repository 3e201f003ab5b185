//! kiln-trainer: trains multilayer perceptrons with nalgebra, exports them to
//! ONNX through `kiln-onnx`, and checks every exported file with tract.

pub mod check;
pub mod cli;
pub mod data;
pub mod export;
pub mod fsutil;
pub mod import;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod npy;
pub mod plot;
pub mod quant;
pub mod rng;
pub mod train;
