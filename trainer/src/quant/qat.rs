//! Quantization-aware training (`docs/quantization.md`, "Quantization-aware training").
//!
//! The forward pass is the device's: every batch, the current float weights and the tracked
//! ranges are quantized by the same code as `kiln quantize` ([`super::quantize_layers`]), and
//! the network runs on int8 values with int32 accumulators and the runtime's own
//! requantization ([`kiln_runtime::fixed::rq`]). The products and sums are exact: they run in
//! f64 on integer values, through the trainer's own layer code ([`IntModel`]). The backward
//! pass is the float one on the dequantized values and weights (the straight-through
//! estimator), with the gradient cut where an int8 value saturated. So the accuracy QAT
//! reports is the device's, sample for sample.

use super::calibrate::{Calibration, LayerRanges, Range, RangeMethod};
use super::math::ActivationParams;
use super::{QuantError, QuantLayer};
use crate::data::Dataset;
use crate::nn::network::{layer_forward, Cache, Layer, Network, NetworkTrace};
use crate::nn::{Activation, Dense};
use kiln_runtime::encode::ActivationSpec;
use kiln_runtime::fixed::{rq, sat16, sat8};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// How much of a tracked range each batch moves: `range <- DECAY range + (1 - DECAY) batch`.
pub const RANGE_DECAY: f32 = 0.99;

/// A tracked range, `[lo, hi]`. f32, so a model file round-trips it exactly.
pub type TrackedRange = [f32; 2];

/// The ranges of one layer, as [`LayerRanges`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrackedLayerRanges {
    pub pre_activation: TrackedRange,
    pub output: TrackedRange,
}

/// The ranges QAT tracks: the input's stays where calibration put it; each layer's follows
/// the batches (an exponential moving average of their extremes). They are part of the model:
/// `kiln quantize` uses them instead of calibrating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QatRanges {
    pub input: TrackedRange,
    pub layers: Vec<TrackedLayerRanges>,
}

fn tracked(range: Range) -> TrackedRange {
    [range.lo as f32, range.hi as f32]
}

fn range(tracked: TrackedRange) -> Range {
    Range {
        lo: f64::from(tracked[0]),
        hi: f64::from(tracked[1]),
    }
}

impl QatRanges {
    pub fn from_calibration(calibration: &Calibration) -> Self {
        Self {
            input: tracked(calibration.input),
            layers: calibration
                .layers
                .iter()
                .map(|layer| TrackedLayerRanges {
                    pre_activation: tracked(layer.pre_activation),
                    output: tracked(layer.output),
                })
                .collect(),
        }
    }

    /// The ranges as `kiln quantize` takes them (widened under `--pow2-scales`).
    pub fn calibration(&self, pow2_scales: bool) -> Calibration {
        let mut calibration = Calibration {
            n_samples: 0,
            method: RangeMethod::Qat,
            input: range(self.input),
            layers: self
                .layers
                .iter()
                .map(|layer| LayerRanges {
                    pre_activation: range(layer.pre_activation),
                    output: range(layer.output),
                })
                .collect(),
        };
        if pow2_scales {
            calibration.widen_to_pow2();
        }
        calibration
    }

    /// Moves every layer's range towards the batch's.
    pub fn track(&mut self, batch: &[TrackedLayerRanges]) {
        let follow = |range: &mut TrackedRange, seen: TrackedRange| {
            for (value, seen) in range.iter_mut().zip(seen) {
                if seen.is_finite() {
                    *value = RANGE_DECAY * *value + (1.0 - RANGE_DECAY) * seen;
                }
            }
        };
        for (layer, seen) in self.layers.iter_mut().zip(batch) {
            follow(&mut layer.pre_activation, seen.pre_activation);
            follow(&mut layer.output, seen.output);
        }
    }
}

/// The int8 model the device runs, as the trainer computes it: the quantized layers and a
/// copy of the network holding their integer weights and biases, whose float layer code
/// computes the exact int32 accumulators (every product and sum of integers below 2^53 is
/// exact in f64).
pub(crate) struct IntModel {
    layers: Vec<QuantLayer>,
    integers: Network<f64>,
    /// The input's parameters, then each layer's output's.
    params: Vec<ActivationParams>,
    /// int16 activations (the 16x8 scheme): values saturate to int16.
    int16: bool,
}

/// What [`IntModel::forward`] computes for a batch.
pub(crate) struct IntTrace {
    /// The int8 (or int16) input, then each layer's output (one column per sample, CHW).
    pub values: Vec<DMatrix<i32>>,
    /// Per layer: the accumulators of a layer with weights, the window sums of an average
    /// (exact integers); `None` for the others.
    pub accumulators: Vec<Option<DMatrix<f64>>>,
    /// Per layer: 1 where the requantized value was in the int8 range, 0 where it saturated.
    pub in_range: Vec<Option<DMatrix<f32>>>,
    /// Per layer, what the float layer code keeps for its backward pass, on centred integers.
    caches: Vec<Cache<f64>>,
}

fn integer_matrix(rows: usize, cols: usize, values: impl Iterator<Item = f64>) -> DMatrix<f64> {
    DMatrix::from_iterator(cols, rows, values).transpose()
}

impl IntModel {
    pub(crate) fn new(
        network: &Network<f32>,
        calibration: &Calibration,
        input: ActivationParams,
        (pow2_scales, int16): (bool, bool),
    ) -> Result<Self, QuantError> {
        let layers =
            super::quantize_layers(network, &calibration.layers, input, (pow2_scales, int16))?;
        let params = super::value_params(network, &layers, input);
        let integer_layers = network
            .layers
            .iter()
            .zip(&layers)
            .map(|(layer, quant)| integer_layer(layer, quant))
            .collect();
        Ok(Self {
            layers,
            integers: Network {
                input_shape: network.input_shape,
                layers: integer_layers,
            },
            params,
            int16,
        })
    }

    /// The parameters of the input (`0`) and of each layer's output (`1..`).
    pub(crate) fn params(&self) -> &[ActivationParams] {
        &self.params
    }

    /// The network's layers with the int8 weights dequantized (`s_w q_w`): the network the
    /// straight-through backward pass differentiates.
    pub(crate) fn dequantized(&self, network: &Network<f32>) -> Network<f32> {
        let mut dequantized = network.clone();
        for (layer, quant) in dequantized.layers.iter_mut().zip(&self.layers) {
            if let (Some((weights, _)), QuantLayer::Tensor(q)) = (layer.params_mut(), quant) {
                let n_inputs = weights.ncols();
                for (row, &scale) in q.weights.scales.iter().enumerate() {
                    for col in 0..n_inputs {
                        weights[(row, col)] =
                            f32::from(q.weights.values[row * n_inputs + col]) * scale;
                    }
                }
            }
        }
        dequantized
    }

    /// The logits (one column per sample) of a batch of inputs.
    pub(crate) fn logits(&self, input: DMatrix<i32>) -> DMatrix<i32> {
        let mut trace = self.forward(input, false);
        trace.values.pop().unwrap_or_else(|| DMatrix::zeros(0, 0))
    }

    /// The device's forward pass over a batch of int8 inputs (CHW, one column per sample);
    /// with `keep`, also what the backward pass needs.
    pub(crate) fn forward(&self, input: DMatrix<i32>, keep: bool) -> IntTrace {
        let n_layers = self.layers.len();
        let mut trace = IntTrace {
            values: Vec::with_capacity(n_layers + 1),
            accumulators: Vec::with_capacity(n_layers),
            in_range: Vec::with_capacity(n_layers),
            caches: Vec::with_capacity(n_layers),
        };
        trace.values.push(input);
        for (index, (layer, quant)) in self.integers.layers.iter().zip(&self.layers).enumerate() {
            let first = layer.input_value(index);
            let (input_params, output_params) = (self.params[first], self.params[index + 1]);
            let zp_in = f64::from(input_params.zero_point);
            let centred = trace.values[first].map(|q| f64::from(q) - zp_in);
            // The output stage's saturation: int8, or int16 for the 16x8 scheme.
            let (lo, hi) = if self.int16 {
                (i64::from(i16::MIN), i64::from(i16::MAX))
            } else {
                (i64::from(i8::MIN), i64::from(i8::MAX))
            };
            let saturate = |y: i64| -> i32 {
                if self.int16 {
                    i32::from(sat16(y))
                } else {
                    i32::from(sat8(y))
                }
            };
            // An add's second value, centred; its sums are computed below.
            let other = match (quant, layer) {
                (QuantLayer::Add(add), Layer::Add(layer)) => {
                    let zp = f64::from(add.inputs[1].zero_point);
                    Some(trace.values[layer.from].map(|q| f64::from(q) - zp))
                }
                _ => None,
            };
            let (sums, cache) = match quant {
                QuantLayer::Add(_) => (DMatrix::zeros(0, 0), Cache::None),
                _ => layer_forward(layer, &centred, None, keep),
            };
            let shape = layer.output_shape();
            let plane = shape.h * shape.w;
            let (values, accumulator, in_range) = match quant {
                QuantLayer::Tensor(q) => {
                    let (zp, clamp_min, table) = match &q.activation {
                        ActivationSpec::Relu => (q.output.zero_point, q.output.zero_point, None),
                        ActivationSpec::Lut {
                            pre_zero_point,
                            table,
                        } => (*pre_zero_point, i8::MIN, Some(table)),
                        ActivationSpec::Identity => (q.output.zero_point, i8::MIN, None),
                    };
                    // int16 values are symmetric: identity saturates, ReLU clamps at 0
                    let clamp_min = match (self.int16, &q.activation) {
                        (true, ActivationSpec::Relu) => 0,
                        (true, _) => i32::from(i16::MIN),
                        (false, _) => i32::from(clamp_min),
                    };
                    let mut mask = DMatrix::<f32>::zeros(sums.nrows(), sums.ncols());
                    let values = DMatrix::from_fn(sums.nrows(), sums.ncols(), |row, col| {
                        // A dense layer's rows are its channels; a convolution's are CHW.
                        let channel = if plane > 1 { row / plane } else { row };
                        let acc = saturate_i32(sums[(row, col)]);
                        let y = i64::from(zp).saturating_add(rq(
                            i64::from(acc),
                            q.multipliers[channel],
                            q.shifts[channel],
                        ));
                        mask[(row, col)] = f32::from(u8::from((lo..=hi).contains(&y)));
                        let y = saturate(y).max(clamp_min);
                        match table {
                            Some(table) => i32::from(table[usize::from((y as u8) ^ 0x80)]),
                            None => y,
                        }
                    });
                    (values, Some(sums), Some(mask))
                }
                QuantLayer::Average(average) => {
                    let taps = window_taps(layer);
                    // The float layer code averages; the device sums. The sum of integers is
                    // recovered exactly by rounding.
                    let sums = sums.map(|mean| (mean * taps).round());
                    let mut mask = DMatrix::<f32>::zeros(sums.nrows(), sums.ncols());
                    let values = DMatrix::from_fn(sums.nrows(), sums.ncols(), |row, col| {
                        let acc = saturate_i32(sums[(row, col)]);
                        let y = i64::from(output_params.zero_point).saturating_add(rq(
                            i64::from(acc),
                            average.multiplier,
                            average.shift,
                        ));
                        mask[(row, col)] = f32::from(u8::from((lo..=hi).contains(&y)));
                        saturate(y)
                    });
                    (values, Some(sums), Some(mask))
                }
                // A maximum or a reshape of centred integers, centred again.
                QuantLayer::MaxPool | QuantLayer::Flatten | QuantLayer::Tap => {
                    (sums.map(|v| saturate((v + zp_in) as i64)), None, None)
                }
                // `acc = W_a (a - zp_a) + W_b (b - zp_b)`, exact in f64 (|acc| < 2^31).
                QuantLayer::Add(add) => {
                    let other = other.unwrap_or_else(|| DMatrix::zeros(0, 0));
                    let [w_a, w_b] = add.params.weights.map(f64::from);
                    let sums = centred.zip_map(&other, |a, b| w_a * a + w_b * b);
                    let zp = add.output.zero_point;
                    let clamp_min = if add.relu {
                        i32::from(zp)
                    } else {
                        i32::from(i8::MIN)
                    };
                    let mut mask = DMatrix::<f32>::zeros(sums.nrows(), sums.ncols());
                    let values = DMatrix::from_fn(sums.nrows(), sums.ncols(), |row, col| {
                        let acc = saturate_i32(sums[(row, col)]);
                        let y = i64::from(zp).saturating_add(rq(
                            i64::from(acc),
                            add.params.multiplier,
                            add.params.shift,
                        ));
                        mask[(row, col)] = f32::from(u8::from((lo..=hi).contains(&y)));
                        saturate(y).max(clamp_min)
                    });
                    (values, Some(sums), Some(mask))
                }
            };
            trace.values.push(values);
            trace.accumulators.push(accumulator);
            trace.in_range.push(in_range);
            trace.caches.push(cache);
        }
        trace
    }

    /// The float trace of an integer forward pass, for [`Network::backward`] on
    /// [`IntModel::dequantized`]: every value dequantized (`s (q - zp)`), each pre-activation
    /// the dequantized accumulator (`s_in s_w acc`), the gradient cut where a value saturated.
    /// Also the batch's extremes of every tensor before it was clamped to int8, for
    /// [`QatRanges::track`].
    pub(crate) fn float_trace(
        &self,
        network: &Network<f32>,
        trace: IntTrace,
    ) -> (NetworkTrace<f32>, Vec<TrackedLayerRanges>) {
        let n_layers = self.layers.len();
        let mut activations = Vec::with_capacity(n_layers + 1);
        let mut pre_activations = Vec::with_capacity(n_layers);
        let mut caches = Vec::with_capacity(n_layers);
        let mut seen = Vec::with_capacity(n_layers);
        let dequantize = |values: &DMatrix<i32>, params: ActivationParams| {
            let zp = f32::from(params.zero_point);
            values.map(|q| params.scale * (q as f32 - zp))
        };
        for (values, &params) in trace.values.iter().zip(&self.params) {
            activations.push(dequantize(values, params));
        }
        for (index, ((layer, quant), (accumulator, cache))) in network
            .layers
            .iter()
            .zip(&self.layers)
            .zip(trace.accumulators.iter().zip(trace.caches))
            .enumerate()
        {
            let input_scale = self.params[layer.input_value(index)].scale;
            let shape = layer.output_shape();
            let plane = shape.h * shape.w;
            let (pre, layer_seen) = match (quant, accumulator) {
                // The sum in real units: `s_a (a - zp_a) + s_b (b - zp_b)` is `acc` on the grid
                // of the larger input step / 2^bits, whose weight is that 2^bits.
                (QuantLayer::Add(add), Some(acc)) => {
                    let [w_a, w_b] = add.params.weights.map(i32::unsigned_abs);
                    let step = f64::from(add.inputs[0].scale.max(add.inputs[1].scale))
                        / f64::from(w_a.max(w_b).max(1));
                    with_activation(layer, acc.map(|a| (a * step) as f32))
                }
                (QuantLayer::Tensor(q), Some(acc)) => {
                    let pre = DMatrix::from_fn(acc.nrows(), acc.ncols(), |row, col| {
                        let channel = if plane > 1 { row / plane } else { row };
                        let scale = f64::from(input_scale) * f64::from(q.weights.scales[channel]);
                        (acc[(row, col)] * scale) as f32
                    });
                    with_activation(layer, pre)
                }
                (QuantLayer::Average(_), Some(sums)) => {
                    let taps = window_taps(layer);
                    let output = sums.map(|sum| (sum * f64::from(input_scale) / taps) as f32);
                    let range = extremes(&output);
                    (
                        DMatrix::zeros(0, 0),
                        TrackedLayerRanges {
                            pre_activation: range,
                            output: range,
                        },
                    )
                }
                _ => {
                    let range = extremes(&activations[index + 1]);
                    (
                        DMatrix::zeros(0, 0),
                        TrackedLayerRanges {
                            pre_activation: range,
                            output: range,
                        },
                    )
                }
            };
            pre_activations.push(pre);
            seen.push(layer_seen);
            caches.push(match cache {
                Cache::Columns(columns) => {
                    Cache::Columns(columns.map(|v| (v * f64::from(input_scale)) as f32))
                }
                Cache::Argmax(argmax) => Cache::Argmax(argmax),
                Cache::None => Cache::None,
            });
        }
        let trace = NetworkTrace::from_parts(pre_activations, activations, caches, trace.in_range);
        (trace, seen)
    }
}

/// The quantized input the device computes for every sample (row-major, CHW per sample):
/// int8, or int16 for a 16x8 model.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceInputs {
    Int8(Vec<i8>),
    Int16(Vec<i16>),
}

impl DeviceInputs {
    /// The samples `rows` (`n_inputs` values each) as a batch matrix, one column per sample.
    pub(crate) fn batch(&self, n_inputs: usize, rows: &[usize]) -> DMatrix<i32> {
        DMatrix::from_fn(n_inputs, rows.len(), |i, col| {
            let at = rows[col] * n_inputs + i;
            match self {
                DeviceInputs::Int8(values) => i32::from(values[at]),
                DeviceInputs::Int16(values) => i32::from(values[at]),
            }
        })
    }
}

/// The quantized input the device computes for every sample of `data`: the runtime's own input
/// stage of `blob`. `source` names the data in errors.
pub fn device_inputs(
    blob: &[u8],
    data: &Dataset,
    source: &str,
) -> Result<DeviceInputs, QuantError> {
    let model = kiln_runtime::Model::from_bytes(blob).map_err(|e| QuantError::Encode {
        detail: format!("{e}"),
    })?;
    let n_inputs = data.n_features;
    let raw = super::host::raw_inputs(data, source, model.input_frac_bits()).map_err(|e| {
        QuantError::Calibration {
            detail: e.to_string(),
        }
    })?;
    let hwc = super::host::device_order(&model, &raw, n_inputs);
    // HWC position `i` holds CHW index `order[i]` (`None`: the two are the same).
    let order = super::host::hwc_permutation(&model, n_inputs);
    let refused = |e: kiln_runtime::Error| QuantError::Encode {
        detail: format!("{e}"),
    };
    fn quantize_rows<T: Copy + Default>(
        hwc: &[i32],
        n_inputs: usize,
        order: Option<&[usize]>,
        mut quantize: impl FnMut(&[i32], &mut [T]) -> Result<(), QuantError>,
    ) -> Result<Vec<T>, QuantError> {
        let mut quantized = vec![T::default(); hwc.len()];
        let mut row_hwc = vec![T::default(); n_inputs];
        for (row, out) in hwc
            .chunks_exact(n_inputs.max(1))
            .zip(quantized.chunks_exact_mut(n_inputs.max(1)))
        {
            quantize(row, &mut row_hwc)?;
            match order {
                Some(order) => {
                    for (&value, &chw) in row_hwc.iter().zip(order) {
                        out[chw] = value;
                    }
                }
                None => out.copy_from_slice(&row_hwc),
            }
        }
        Ok(quantized)
    }
    Ok(if model.activation_bits() == 16 {
        DeviceInputs::Int16(quantize_rows(
            &hwc,
            n_inputs,
            order.as_deref(),
            |row, out| model.quantize_input_i16(row, out).map_err(refused),
        )?)
    } else {
        DeviceInputs::Int8(quantize_rows(
            &hwc,
            n_inputs,
            order.as_deref(),
            |row, out| model.quantize_input(row, out).map_err(refused),
        )?)
    })
}

/// The trainer's integer model of `quantized` and the device's quantized inputs of `data`.
fn int_model_and_inputs(
    network: &Network<f32>,
    quantized: &super::Quantized,
    data: &Dataset,
    options: super::QuantOptions,
) -> Result<(IntModel, DeviceInputs), QuantError> {
    let int_model = IntModel::new(
        network,
        &quantized.report.calibration,
        quantized.report.input,
        (options.pow2_scales, options.int16),
    )?;
    Ok((int_model, device_inputs(&quantized.blob, data, "the data")?))
}

/// The logits (row-major, one row per sample of `data`; int8 or int16 values) of `model`
/// quantized as `quantized` (what [`super::quantize`] made of it), computed by the trainer's
/// integer forward pass: the device's arithmetic without the device's code, except its input
/// stage.
pub fn int_logits(
    model: &crate::model::ModelFile,
    quantized: &super::Quantized,
    data: &Dataset,
    options: super::QuantOptions,
) -> Result<Vec<i32>, QuantError> {
    let network = model.network();
    let (int_model, inputs) = int_model_and_inputs(&network, quantized, data, options)?;
    let n_inputs = data.n_features;
    let n_samples = data.n_samples();
    let mut logits = Vec::with_capacity(n_samples * network.n_outputs());
    let all: Vec<usize> = (0..n_samples).collect();
    for rows in all.chunks(256) {
        let batch = int_model.logits(inputs.batch(n_inputs, rows));
        // One column per sample: column-major storage is sample-major.
        logits.extend_from_slice(batch.as_slice());
    }
    Ok(logits)
}

/// Loss and accuracy (for classes) on `data` of `model` quantized as `kiln quantize`
/// quantizes it (calibrated on `calibration`): the device's outputs, dequantized.
pub fn evaluate(
    model: &crate::model::ModelFile,
    calibration: &Dataset,
    data: &Dataset,
    options: super::QuantOptions,
) -> Result<(f64, Option<f64>), QuantError> {
    let quantized = super::quantize(model, calibration, options)?;
    let (int_model, inputs) = int_model_and_inputs(&model.network(), &quantized, data, options)?;
    let n_inputs = data.n_features;
    Ok(crate::train::evaluate_outputs(
        &data.targets,
        model.config.loss,
        |start, end| dequantized_outputs(&int_model, &inputs, n_inputs, (start, end)),
    ))
}

/// The values an average layer sums.
/// A dequantized pre-activation and the extremes, before and after the layer's activation, that
/// quantization-aware training tracks.
fn with_activation(layer: &Layer<f32>, pre: DMatrix<f32>) -> (DMatrix<f32>, TrackedLayerRanges) {
    let mut output = pre.clone();
    layer
        .activation()
        .unwrap_or(Activation::Identity)
        .forward_in_place(&mut output);
    let seen = TrackedLayerRanges {
        pre_activation: extremes(&pre),
        output: extremes(&output),
    };
    (pre, seen)
}

fn window_taps<T: nalgebra::RealField + Copy>(layer: &Layer<T>) -> f64 {
    match layer {
        Layer::AvgPool2d(pool) => (pool.kernel[0] * pool.kernel[1]) as f64,
        Layer::GlobalAvgPool(pool) => (pool.input_shape.h * pool.input_shape.w) as f64,
        _ => 1.0,
    }
}

/// The smallest and largest value of `values` (`[inf, -inf]` for none).
fn extremes(values: &DMatrix<f32>) -> TrackedRange {
    values
        .iter()
        .fold([f32::INFINITY, f32::NEG_INFINITY], |[lo, hi], &v| {
            [lo.min(v), hi.max(v)]
        })
}

/// An exact integer accumulator as the device's `i32` (a loaded model cannot exceed it).
fn saturate_i32(value: f64) -> i32 {
    value.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

/// `layer` holding the integers of `quant`: its int8 weights and int32 biases as f64.
fn integer_layer(layer: &Layer<f32>, quant: &QuantLayer) -> Layer<f64> {
    let params = |weights: &DMatrix<f32>| match quant {
        QuantLayer::Tensor(q) => (
            integer_matrix(
                weights.nrows(),
                weights.ncols(),
                q.weights.values.iter().map(|&w| f64::from(w)),
            ),
            DVector::from_iterator(q.bias.len(), q.bias.iter().map(|&b| f64::from(b))),
        ),
        _ => (
            DMatrix::zeros(weights.nrows(), weights.ncols()),
            DVector::zeros(weights.nrows()),
        ),
    };
    match layer {
        Layer::Dense(dense) => {
            let (weights, bias) = params(&dense.weights);
            Layer::Dense(Dense {
                weights,
                bias,
                activation: Activation::Identity,
            })
        }
        Layer::Conv2d(conv) => {
            let (weights, bias) = params(&conv.weights);
            Layer::Conv2d(crate::nn::conv::Conv2d {
                weights,
                bias,
                kernel: conv.kernel,
                stride: conv.stride,
                padding: conv.padding,
                activation: Activation::Identity,
                input_shape: conv.input_shape,
                output_shape: conv.output_shape,
            })
        }
        Layer::DepthwiseConv2d(conv) => {
            let (weights, bias) = params(&conv.weights);
            Layer::DepthwiseConv2d(crate::nn::conv::DepthwiseConv2d {
                weights,
                bias,
                kernel: conv.kernel,
                stride: conv.stride,
                padding: conv.padding,
                activation: Activation::Identity,
                input_shape: conv.input_shape,
                output_shape: conv.output_shape,
            })
        }
        Layer::MaxPool2d(pool) => Layer::MaxPool2d(*pool),
        Layer::AvgPool2d(pool) => Layer::AvgPool2d(*pool),
        Layer::GlobalAvgPool(pool) => Layer::GlobalAvgPool(*pool),
        Layer::Flatten(flatten) => Layer::Flatten(*flatten),
        Layer::Tap(tap) => Layer::Tap(*tap),
        Layer::Add(add) => Layer::Add(crate::nn::residual::Add {
            activation: Activation::Identity,
            ..*add
        }),
    }
}

/// `kiln train --qat` / `kiln quantize --qat-epochs`: after the float epochs, this many epochs
/// of quantization-aware training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QatConfig {
    /// QAT epochs after the float ones (early stopping applies to them on its own).
    pub epochs: usize,
    /// The constant learning rate of the QAT epochs.
    pub learning_rate: f32,
    /// Train for power-of-two scales (`kiln quantize --pow2-scales`).
    pub pow2_scales: bool,
}

/// Where quantization-aware training is: stored in the model file with the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QatState {
    /// QAT epochs completed.
    pub epochs_done: usize,
    /// The ranges the current weights were trained with.
    pub ranges: QatRanges,
}

/// What a QAT run fixes at its start: the input's parameters and every sample's int8 input.
pub(crate) struct QatInputs {
    pub input: ActivationParams,
    /// Row-major, CHW per sample.
    pub train: DeviceInputs,
    pub val: Option<DeviceInputs>,
}

/// Quantizes `model` as `kiln quantize` does (calibrating on `calibration`, or with its QAT
/// ranges once it has them), and the int8 inputs of `train` and `val` through the blob's input
/// stage. Returns them with the ranges the quantizer used.
pub(crate) fn start(
    model: &crate::model::ModelFile,
    calibration: &Dataset,
    (train, val): (&Dataset, Option<&Dataset>),
    pow2_scales: bool,
) -> Result<(QatInputs, QatRanges), QuantError> {
    let options = super::QuantOptions {
        pow2_scales,
        ..super::QuantOptions::default()
    };
    let quantized = super::quantize(model, calibration, options)?;
    let inputs = QatInputs {
        input: quantized.report.input,
        train: device_inputs(&quantized.blob, train, "the training set")?,
        val: val
            .map(|val| device_inputs(&quantized.blob, val, "the validation split"))
            .transpose()?,
    };
    Ok((
        inputs,
        QatRanges::from_calibration(&quantized.report.calibration),
    ))
}

/// The training step of quantization-aware training: the device's forward pass, the float
/// backward pass on the dequantized network, the float weights updated. Its optimiser state
/// stays the caller's, as the plain step's does.
pub(crate) struct QatStep {
    pub network: Network<f32>,
    pub ranges: QatRanges,
    pow2_scales: bool,
    /// The input's parameters and every training and validation sample's int8 input.
    inputs: QatInputs,
    rows: Vec<usize>,
    /// The dequantized network and the trace of the last forward pass.
    pending: Option<(Network<f32>, NetworkTrace<f32>)>,
    output_grad: DMatrix<f32>,
}

impl QatStep {
    pub(crate) fn new(
        network: &Network<f32>,
        ranges: QatRanges,
        inputs: QatInputs,
        pow2_scales: bool,
    ) -> Self {
        Self {
            network: network.clone(),
            ranges,
            pow2_scales,
            inputs,
            rows: Vec::new(),
            pending: None,
            output_grad: DMatrix::zeros(0, 0),
        }
    }

    pub(crate) fn load_batch(&mut self, rows: &[usize]) {
        self.rows.clear();
        self.rows.extend_from_slice(rows);
    }

    /// The int8 model of the current weights and ranges.
    pub(crate) fn int_model(&self) -> Result<IntModel, QuantError> {
        IntModel::new(
            &self.network,
            &self.ranges.calibration(self.pow2_scales),
            self.inputs.input,
            (self.pow2_scales, false),
        )
    }

    /// The batch's loss on the dequantized int8 outputs; the ranges follow the batch.
    pub(crate) fn forward(
        &mut self,
        loss: crate::nn::Loss,
        targets: crate::nn::BatchTargets<'_>,
    ) -> Result<f32, QuantError> {
        let int_model = self.int_model()?;
        let batch = self.inputs.train.batch(self.network.n_inputs(), &self.rows);
        let int_trace = int_model.forward(batch, true);
        let (trace, seen) = int_model.float_trace(&self.network, int_trace);
        self.ranges.track(&seen);
        let value = loss.value_and_gradient(trace.output(), targets, &mut self.output_grad);
        self.pending = Some((int_model.dequantized(&self.network), trace));
        Ok(value)
    }

    /// The dequantized int8 outputs of the current weights and ranges on validation samples
    /// `start..end`, for [`crate::train::evaluate_outputs`]; `None` without a validation split.
    pub(crate) fn val_outputs(
        &self,
    ) -> Result<Option<impl Fn(usize, usize) -> DMatrix<f32> + '_>, QuantError> {
        let Some(val) = &self.inputs.val else {
            return Ok(None);
        };
        let int_model = self.int_model()?;
        let n_inputs = self.network.n_inputs();
        Ok(Some(move |start, end| {
            dequantized_outputs(&int_model, val, n_inputs, (start, end))
        }))
    }

    pub(crate) fn output(&self) -> &DMatrix<f32> {
        self.pending
            .as_ref()
            .map_or(&self.output_grad, |(_, trace)| trace.output())
    }

    pub(crate) fn backward(&mut self, optimizer: &mut crate::nn::optim::OptimizerState, lr: f32) {
        if let Some((dequantized, trace)) = self.pending.take() {
            let output_grad = std::mem::replace(&mut self.output_grad, DMatrix::zeros(0, 0));
            let grads = dequantized.backward(&trace, output_grad);
            optimizer.step_params(self.network.params_mut(), &grads, lr);
        }
    }
}

/// The dequantized int8 outputs of `int_model` on the int8 inputs `inputs` (row-major,
/// `n_inputs` each), samples `start..end`.
pub(crate) fn dequantized_outputs(
    int_model: &IntModel,
    inputs: &DeviceInputs,
    n_inputs: usize,
    (start, end): (usize, usize),
) -> DMatrix<f32> {
    let rows: Vec<usize> = (start..end).collect();
    let logits = int_model.logits(inputs.batch(n_inputs, &rows));
    let params = int_model
        .params()
        .last()
        .copied()
        .unwrap_or(ActivationParams {
            scale: 1.0,
            zero_point: 0,
        });
    let zp = f32::from(params.zero_point);
    logits.map(|q| params.scale * (q as f32 - zp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{self, DataOptions, DataSpec, NormalizationKind, Split};
    use crate::model::ModelFile;
    use crate::nn::layer_spec::parse_layers;
    use crate::nn::optim::OptimizerConfig;
    use crate::nn::schedule::Schedule;
    use crate::nn::shape::Shape;
    use crate::nn::{Init, Loss};
    use crate::quant::{host, QuantOptions};
    use crate::train::{self, TrainConfig};

    fn digits() -> Split {
        data::load(&DataSpec::Digits, &DataOptions::default()).unwrap()
    }

    fn config(layers: &str, epochs: usize, qat: Option<QatConfig>) -> TrainConfig {
        TrainConfig {
            hidden: Vec::new(),
            layers: parse_layers(layers).unwrap(),
            input_shape: Some(Shape::new(8, 8, 1)),
            activation: Activation::Relu,
            output_activation: Activation::Identity,
            loss: Loss::CrossEntropy,
            init: Init::He,
            optimizer: OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.0,
            },
            learning_rate: 0.01,
            schedule: Schedule::Constant,
            epochs,
            batch_size: 32,
            seed: 5,
            val_split: 0.1,
            patience: 0,
            normalization: NormalizationKind::Scale,
            qat,
        }
    }

    fn trained(split: &Split, config: &TrainConfig) -> ModelFile {
        train::train(
            split,
            &DataSpec::Digits,
            &DataOptions::default(),
            config,
            1,
            None,
            &mut train::Silent,
            &mut |_| Ok(()),
            &|_| false,
        )
        .unwrap()
    }

    /// The runtime's logits (int8, or int16) on every test sample, and the trainer's.
    fn both_logits(
        model: &ModelFile,
        split: &Split,
        options: QuantOptions,
    ) -> (Vec<i32>, Vec<i32>) {
        let quantized = crate::quant::quantize(model, &split.train, options).unwrap();
        let runtime = kiln_runtime::Model::from_bytes(&quantized.blob).unwrap();
        let raw = host::raw_inputs(&split.test, "test", runtime.input_frac_bits()).unwrap();
        let n = (split.test.n_features, runtime.n_outputs());
        let logits: Vec<i32> = if options.int16 {
            let run = host::run_runtime_i16(&runtime, &raw, n.0, n.1).unwrap();
            run.logits.into_iter().map(i32::from).collect()
        } else {
            let run = host::run_runtime(&runtime, &raw, n.0, n.1).unwrap();
            run.logits.into_iter().map(i32::from).collect()
        };
        let trainer = int_logits(model, &quantized, &split.test, options).unwrap();
        (logits, trainer)
    }

    fn assert_same(model: &ModelFile, split: &Split, options: QuantOptions) {
        let (runtime, trainer) = both_logits(model, split, options);
        assert_eq!(runtime.len(), split.test.n_samples() * 10);
        let differ = runtime
            .chunks_exact(10)
            .zip(trainer.chunks_exact(10))
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differ, 0, "samples whose int8 logits differ");
    }

    #[test]
    fn the_trainers_integer_forward_pass_is_the_runtimes_for_every_layer_kind() {
        let split = digits();
        // Every kind the runtime runs: conv (same and valid, strided), depthwise, max and
        // average pooling, a global average, table activations and relu.
        for layers in [
            "dense:24:tanh,dense:16",
            "conv3x3:6,dw3x3:sigmoid,maxpool2,conv3x3s2v:8:leaky-relu,dense:12",
            "conv3x3:4,avgpool2,conv1x1:8:tanh,gap",
            // skip connections: a relu add of an identity shortcut, an identity add of a
            // projection shortcut (a tap and a strided 1x1 convolution)
            "conv3x3:6,conv3x3:6:identity,add@1:relu,conv3x3s2:8,@3,conv1x1s2:8:identity,\
             add@4:identity,gap",
        ] {
            let model = trained(&split, &config(layers, 2, None));
            for pow2_scales in [false, true] {
                let options = QuantOptions {
                    pow2_scales,
                    ..QuantOptions::default()
                };
                assert_same(&model, &split, options);
            }
        }
        // int16 activations (the 16x8 scheme): an MLP of relu and identity layers.
        let model = trained(&split, &config("dense:24,dense:16:identity", 2, None));
        for pow2_scales in [false, true] {
            let options = QuantOptions {
                pow2_scales,
                int16: true,
                ..QuantOptions::default()
            };
            assert_same(&model, &split, options);
        }
    }

    #[test]
    fn a_qat_model_quantizes_with_its_ranges_and_the_device_computes_its_evaluation() {
        let split = digits();
        let qat = QatConfig {
            epochs: 2,
            learning_rate: 0.001,
            pow2_scales: false,
        };
        for layers in [
            "dense:16",
            "conv3x3:4,maxpool2,dense:12",
            "conv3x3:4,conv3x3:4:identity,add@1:relu,gap",
        ] {
            let model = trained(&split, &config(layers, 2, Some(qat)));
            let state = model.state.qat.as_ref().expect("QAT ran");
            assert_eq!(state.epochs_done, 2);
            assert_eq!(model.state.epochs_done, 4);
            let quantized =
                crate::quant::quantize(&model, &split.train, QuantOptions::default()).unwrap();
            assert_eq!(quantized.report.calibration.method, RangeMethod::Qat);
            assert_eq!(
                QatRanges::from_calibration(&quantized.report.calibration),
                state.ranges,
                "the model's ranges, unchanged"
            );
            assert_same(&model, &split, QuantOptions::default());
            // The ranges are the model's: quantizing for other scales is refused.
            let pow2 = QuantOptions {
                pow2_scales: true,
                ..QuantOptions::default()
            };
            let err = crate::quant::quantize(&model, &split.train, pow2).unwrap_err();
            assert!(
                matches!(
                    err,
                    QuantError::QatScales {
                        trained_pow2: false
                    }
                ),
                "{err}"
            );
        }
    }
}
