//! Calibration: runs the float model (the trainer's own forward pass) over the
//! first training samples and records the range of every tensor the int8 model
//! quantizes: the normalized input, and per layer the pre-activation and the
//! output (post-activation; the logits for the last layer).

use super::math::percentile;
use super::QuantError;
use crate::data::Dataset;
use crate::model::ModelFile;
use crate::nn::network::Network;
use nalgebra::DMatrix;

/// How a tensor's range is taken from its calibration values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RangeMethod {
    /// The smallest and largest value.
    MinMax,
    /// The `(100 - p)`-th and `p`-th percentiles, `p` in `(50, 100]`.
    Percentile { p: f64 },
    /// The ranges quantization-aware training tracked ([`super::qat::QatRanges`]): no
    /// calibration pass.
    Qat,
}

impl std::fmt::Display for RangeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeMethod::MinMax => f.write_str("min/max"),
            RangeMethod::Percentile { p } => write!(f, "percentile {p}"),
            RangeMethod::Qat => f.write_str("tracked by quantization-aware training"),
        }
    }
}

/// A calibrated range.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
}

/// The ranges around one layer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LayerRanges {
    /// `W x + b`, before the activation.
    pub pre_activation: Range,
    /// After the activation.
    pub output: Range,
}

/// Every range the quantizer needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Calibration {
    pub n_samples: usize,
    pub method: RangeMethod,
    /// The normalized input.
    pub input: Range,
    pub layers: Vec<LayerRanges>,
}

impl Calibration {
    /// Every range widened to 255 steps of a power of two (`--pow2-scales`).
    pub fn widen_to_pow2(&mut self) {
        let widen = |range: &mut Range| {
            (range.lo, range.hi) = super::math::pow2_range(range.lo, range.hi);
        };
        widen(&mut self.input);
        for layer in &mut self.layers {
            widen(&mut layer.pre_activation);
            widen(&mut layer.output);
        }
    }
}

/// Samples per forward pass.
const CHUNK_ROWS: usize = 1024;

/// Collects one tensor's values, or just its extremes for min/max.
#[derive(Debug)]
struct Collector {
    method: RangeMethod,
    lo: f32,
    hi: f32,
    values: Vec<f32>,
}

impl Collector {
    fn new(method: RangeMethod) -> Self {
        Self {
            method,
            lo: f32::INFINITY,
            hi: f32::NEG_INFINITY,
            values: Vec::new(),
        }
    }

    fn extend(&mut self, values: &[f32]) {
        for &v in values {
            self.lo = self.lo.min(v);
            self.hi = self.hi.max(v);
        }
        if matches!(self.method, RangeMethod::Percentile { .. }) {
            self.values.extend_from_slice(values);
        }
    }

    fn finish(mut self, tensor: &str) -> Result<Range, QuantError> {
        let range = match self.method {
            RangeMethod::MinMax | RangeMethod::Qat => Range {
                lo: f64::from(self.lo),
                hi: f64::from(self.hi),
            },
            RangeMethod::Percentile { p } => {
                if self.values.is_empty() {
                    Range {
                        lo: f64::INFINITY,
                        hi: f64::NEG_INFINITY,
                    }
                } else {
                    self.values.sort_unstable_by(f32::total_cmp);
                    Range {
                        lo: percentile(&self.values, 100.0 - p),
                        hi: percentile(&self.values, p),
                    }
                }
            }
        };
        if !(range.lo.is_finite() && range.hi.is_finite() && range.lo <= range.hi) {
            return Err(QuantError::Calibration {
                detail: format!("{tensor}: no finite range ({}, {})", range.lo, range.hi),
            });
        }
        Ok(range)
    }
}

/// The range of the normalized input over the first `n_samples` rows of `train`: the one
/// `calibrate` finds, without a network (`kiln fit` decides the input stage before training).
pub fn input_range(
    normalization: &crate::data::Normalization,
    train: &Dataset,
    n_samples: usize,
    method: RangeMethod,
) -> Result<Range, QuantError> {
    let n_features = train.n_features;
    let n = n_samples.min(train.n_samples());
    let mut input = Collector::new(method);
    for start in (0..n).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(n);
        let mut rows = train.features[start * n_features..end * n_features].to_vec();
        for row in rows.chunks_exact_mut(n_features) {
            normalization.apply_row(row);
        }
        input.extend(&rows);
    }
    input.finish("the normalized input")
}

/// Runs `network` (the float model of `model`) over the first `n_samples` rows of `train` (all of
/// them if there are fewer) and returns the ranges.
pub fn calibrate(
    model: &ModelFile,
    network: &Network<f32>,
    train: &Dataset,
    n_samples: usize,
    method: RangeMethod,
) -> Result<Calibration, QuantError> {
    if let RangeMethod::Percentile { p } = method {
        if !(p > 50.0 && p <= 100.0) {
            return Err(QuantError::Calibration {
                detail: format!("the percentile must be in (50, 100], got {p}"),
            });
        }
    }
    if train.n_features != model.n_inputs {
        return Err(QuantError::Calibration {
            detail: format!(
                "the data has {} features, the model takes {}",
                train.n_features, model.n_inputs
            ),
        });
    }
    let n = n_samples.min(train.n_samples());
    if n == 0 {
        return Err(QuantError::Calibration {
            detail: "no calibration samples".into(),
        });
    }
    let n_features = train.n_features;
    let mut input = Collector::new(method);
    let mut pre: Vec<Collector> = network
        .layers
        .iter()
        .map(|_| Collector::new(method))
        .collect();
    let mut out: Vec<Collector> = network
        .layers
        .iter()
        .map(|_| Collector::new(method))
        .collect();
    for start in (0..n).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(n);
        let mut rows = train.features[start * n_features..end * n_features].to_vec();
        for row in rows.chunks_exact_mut(n_features) {
            model.normalization.apply_row(row);
        }
        input.extend(&rows);
        // One column per sample: column-major storage is sample-major.
        let trace =
            network.forward_trace(DMatrix::from_column_slice(n_features, end - start, &rows));
        for (layer_idx, z) in trace.pre_activations.iter().enumerate() {
            // A pooling or flatten layer has no pre-activation: its output stands for both.
            let output = trace.activations[layer_idx + 1].as_slice();
            pre[layer_idx].extend(if z.is_empty() { output } else { z.as_slice() });
            out[layer_idx].extend(output);
        }
    }
    let layers = pre
        .into_iter()
        .zip(out)
        .enumerate()
        .map(|(layer_idx, (pre, out))| {
            Ok(LayerRanges {
                pre_activation: pre.finish(&format!("layer {layer_idx} pre-activation"))?,
                output: out.finish(&format!("layer {layer_idx} output"))?,
            })
        })
        .collect::<Result<_, QuantError>>()?;
    Ok(Calibration {
        n_samples: n,
        method,
        input: input.finish("the normalized input")?,
        layers,
    })
}
