//! Post-training int8 quantization (see `docs/quantization.md`).
//!
//! [`quantize`] calibrates a trained model on training samples and derives
//! every int8 parameter once; from those same numbers it builds both the
//! runtime's model description ([`kiln_runtime::encode::ModelSpec`], encoded
//! into the `.kiln` blob) and the QDQ ONNX model ([`kiln_onnx::qdq::QdqMlp`]),
//! whose f32 scales are exactly the values whose ratios the runtime's
//! fixed-point multipliers encode. [`host`] runs the blob with the runtime on
//! the host and compares it with tract on the QDQ file; [`rust_source`] writes
//! the blob as Rust source for firmware.

pub mod calibrate;
pub mod host;
pub mod math;
pub mod qat;
pub mod rust_source;

use crate::data::{Dataset, Normalization};
use crate::export;
use crate::model::ModelFile;
use crate::nn::network::{Layer, Network};
use crate::nn::shape::Padding;
use crate::nn::Activation;
use calibrate::{Calibration, LayerRanges, RangeMethod};
use kiln_onnx::qdq::{QdqActivation, QdqLayer, QdqMlp, QuantParams};
use kiln_onnx::qdq_cnn::{QdqCnn, QdqCnnLayer, QdqConv};
use kiln_runtime::encode::{
    ActivationSpec, AddSpec, AffineSpec, ConvSpec, DenseSpec, InputStageSpec, LayerSpec, ModelSpec,
    NodeSpec, PoolSpec,
};
use math::{ActivationParams, TableFunction};
use nalgebra::{DMatrix, DVector};

/// The default number of calibration samples.
pub const DEFAULT_CALIB_SAMPLES: usize = 1000;

/// Why a model cannot be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("the scale {scale:e} cannot be a fixed-point multiplier: {detail}")]
    Multiplier { scale: f64, detail: String },
    #[error("the range [{lo}, {hi}] cannot be quantized")]
    Range { lo: f64, hi: f64 },
    #[error("{what} does not fit in an int32")]
    Overflow { what: String },
    #[error("calibration: {detail}")]
    Calibration { detail: String },
    #[error("layer {layer}: {error}")]
    Layer {
        layer: usize,
        error: Box<QuantError>,
    },
    #[error("the runtime refuses the quantized model: {detail}")]
    Encode { detail: String },
    #[error("--activations int16: {detail}")]
    Int16 { detail: String },
    #[error("cannot build the QDQ ONNX model: {0}")]
    Onnx(#[from] kiln_onnx::OnnxError),
    #[error("{}", if *.trained_pow2 {
        "the model was trained (--qat) for power-of-two scales: quantize it with --pow2-scales"
    } else {
        "the model was trained (--qat) for the default scales: quantize it without --pow2-scales, or fine-tune it for them with --qat-epochs N --pow2-scales"
    })]
    QatScales { trained_pow2: bool },
}

/// How to quantize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantOptions {
    /// How many training samples (the first ones) calibrate the ranges.
    pub calib_samples: usize,
    pub method: RangeMethod,
    /// Every scale a power of two (`--pow2-scales`): each calibrated range widened to the
    /// next power-of-two step, each weight row's scale rounded up to one
    /// (`math::pow2_range`, `math::quantize_weights`). A float QDQ engine's arithmetic is
    /// then exact (see docs/quantization.md).
    pub pow2_scales: bool,
    /// int16 activations with int8 weights, the 16x8 scheme (`--activations int16`): every
    /// activation symmetric (zero point 0) with `max |range| / 32767` as its scale.
    pub int16: bool,
    /// Plan the arena with layers computed in place where that lowers its peak (`--in-place`:
    /// depthwise, pointwise and add layers write their output over their input); otherwise
    /// every layer's input and output apart, which the fastest kernels take.
    pub in_place: bool,
}

impl Default for QuantOptions {
    fn default() -> Self {
        Self {
            calib_samples: DEFAULT_CALIB_SAMPLES,
            method: RangeMethod::MinMax,
            pow2_scales: false,
            int16: false,
            in_place: false,
        }
    }
}

/// What was decided for one layer with weights, for reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerReport {
    /// The layer's `--layers` token, e.g. `conv3x3:16:relu` or `dense:10:identity`.
    pub layer: String,
    /// The values one output channel reads (a convolution's `in_channels * kh * kw`).
    pub n_inputs: usize,
    /// Output channels.
    pub n_outputs: usize,
    pub activation: String,
    /// The pre-activation parameters (table activations only).
    pub pre_activation: Option<ActivationParams>,
    pub output: ActivationParams,
    pub weight_scale_min: f32,
    pub weight_scale_max: f32,
    /// The smallest and largest requantization shift.
    pub shift_min: u8,
    pub shift_max: u8,
    /// Biases that saturated when rounded to int32 (normally 0).
    pub saturated_biases: usize,
    /// Channels whose weights are so small that their scale was raised to the
    /// floor (`math::quantize_weights`): dead or nearly dead units.
    pub floored_channels: usize,
}

/// What `quantize` decided.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuantReport {
    pub calibration: Calibration,
    pub input: ActivationParams,
    /// 1 (shared) or one per feature.
    pub input_affines: usize,
    /// The raw inputs' fraction bits: the device takes `round(x * 2^bits)` (0: integer data).
    pub input_frac_bits: u8,
    /// One per layer with weights.
    pub layers: Vec<LayerReport>,
}

/// The int8 ONNX form: the MLP graph for a chain of dense layers over a feature vector, the
/// layer graph otherwise.
#[derive(Debug, Clone)]
pub enum Qdq {
    Mlp(QdqMlp),
    Cnn(QdqCnn),
}

/// A quantized model in both forms, from the same numbers.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub spec: ModelSpec,
    pub qdq: Qdq,
    /// `kiln_runtime::encode::encode(&spec)`.
    pub blob: Vec<u8>,
    pub report: QuantReport,
}

/// The int8 input tensor's quantization, for callers that quantize real values themselves and
/// call `Model::run_quantized` (as TFLM users do): `q = clamp(round(x / scale) + zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct InputQuantization {
    /// The real value (in the data's own units) of one int8 step.
    pub scale: f32,
    pub zero_point: i8,
}

/// [`InputQuantization`] of a blob whose input stage is one shared map with no offset (scale or
/// no normalization); `None` for per-feature maps (standardize: every feature has its own
/// scale and offset; such callers pass raw values to `run`) or a blob the runtime refuses.
///
/// The map `q = zp + rq(256 x - mu, M, t)` on raw `x = value * 2^bits` has one step every
/// `2^t / (256 2^bits M)` of the value.
pub fn input_quantization(blob: &[u8]) -> Option<InputQuantization> {
    let model = kiln_runtime::Model::from_bytes(blob).ok()?;
    if model.activation_bits() != 8 {
        return None;
    }
    let (mu, multiplier, shift) = model.shared_input_map()?;
    let zero_point = model.input_zero_point();
    if mu != 0 || multiplier <= 0 {
        return None;
    }
    let step = 2f64.powi(i32::from(shift))
        / (256.0 * 2f64.powi(i32::from(model.input_frac_bits())) * f64::from(multiplier));
    Some(InputQuantization {
        scale: step as f32,
        zero_point,
    })
}

fn table_function(activation: Activation) -> Option<TableFunction> {
    match activation {
        Activation::Tanh => Some(TableFunction::Tanh),
        Activation::Sigmoid => Some(TableFunction::Sigmoid),
        Activation::LeakyRelu { alpha } => Some(TableFunction::LeakyRelu { alpha }),
        Activation::Relu | Activation::Relu6 | Activation::Identity => None,
    }
}

fn quant_params(params: ActivationParams) -> QuantParams {
    QuantParams {
        scale: params.scale,
        zero_point: params.zero_point,
    }
}

fn affine_spec(affine: math::InputAffine) -> AffineSpec {
    AffineSpec {
        offset: affine.offset,
        multiplier: affine.multiplier,
        shift: affine.shift,
    }
}

/// The int8 numbers of one layer with weights, in ONNX's layout (`[O][fan_in]`, fan-in in
/// `(c, ky, kx)` order for a convolution); the blob's layout is derived from them.
pub(crate) struct TensorLayer {
    pub weights: math::QuantizedWeights,
    /// `q_b`, not folded.
    pub bias: Vec<i32>,
    pub multipliers: Vec<i32>,
    pub shifts: Vec<u8>,
    pub activation: ActivationSpec,
    qdq_activation: QdqActivation,
    pub output: ActivationParams,
    pub report: LayerReport,
}

/// Derives every int8 number of a layer `W x + b` with `activation` that reads a value with
/// parameters `input` (per-channel weights, int32 bias, multipliers and shifts, the output
/// parameters and, for table activations, the pre-activation's and the table).
fn quantize_tensor_layer(
    token: String,
    (weights, bias): (&DMatrix<f32>, &DVector<f32>),
    activation: Activation,
    input: ActivationParams,
    ranges: &LayerRanges,
    (pow2_scales, int16): (bool, bool),
) -> Result<TensorLayer, QuantError> {
    let (n_outputs, n_inputs) = weights.shape();
    let output = if int16 {
        math::activation_params16(ranges.output.lo, ranges.output.hi, pow2_scales)?
    } else {
        math::activation_params(ranges.output.lo, ranges.output.hi)?
    };
    let (pre, activation_spec, qdq_activation) = match table_function(activation) {
        // Relu6 is a ReLU here: its calibrated output range ends at or below 6, and the
        // int8 output saturates at the range's top, so the clamp at 6 costs nothing.
        None if matches!(activation, Activation::Relu | Activation::Relu6) => {
            (None, ActivationSpec::Relu, QdqActivation::Relu)
        }
        None => (None, ActivationSpec::Identity, QdqActivation::Identity),
        Some(function) => {
            let range = ranges.pre_activation;
            let pre = math::activation_params(range.lo, range.hi)?;
            (
                Some(pre),
                ActivationSpec::Lut {
                    pre_zero_point: pre.zero_point,
                    table: math::activation_table(function, pre, output),
                },
                QdqActivation::Table {
                    function: export::onnx_activation(activation),
                    pre: quant_params(pre),
                },
            )
        }
    };
    // Identity and relu requantize straight to the output; tables go through `pre`.
    let target = pre.unwrap_or(output);
    let floor = math::weight_scale_floor(input.scale, target.scale);
    let row_major: Vec<f32> = weights.transpose().iter().copied().collect();
    let weights = math::quantize_weights(&row_major, n_outputs, n_inputs, floor, pow2_scales);
    let bias: Vec<f32> = bias.iter().copied().collect();
    let bias = math::quantize_bias(&bias, input.scale, &weights.scales);
    let saturated_biases = bias
        .iter()
        .filter(|&&b| b == i32::MIN || b == i32::MAX)
        .count();
    let (multipliers, shifts): (Vec<i32>, Vec<u8>) = weights
        .scales
        .iter()
        .map(|&s_w| {
            math::quantize_multiplier(
                f64::from(input.scale) * f64::from(s_w) / f64::from(target.scale),
            )
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let report = LayerReport {
        layer: token,
        n_inputs,
        n_outputs,
        activation: activation.to_string(),
        pre_activation: pre,
        output,
        weight_scale_min: weights.scales.iter().copied().fold(f32::INFINITY, f32::min),
        weight_scale_max: weights.scales.iter().copied().fold(0.0, f32::max),
        shift_min: shifts.iter().copied().min().unwrap_or(0),
        shift_max: shifts.iter().copied().max().unwrap_or(0),
        saturated_biases,
        floored_channels: weights.floored,
    };
    Ok(TensorLayer {
        weights,
        bias,
        multipliers,
        shifts,
        activation: activation_spec,
        qdq_activation,
        output,
        report,
    })
}

/// An average's requantization: the window's sum of input steps to `output`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Average {
    pub output: ActivationParams,
    pub multiplier: i32,
    pub shift: u8,
}

/// One layer's int8 numbers, in the trainer's (ONNX's) layout. The blob, the QDQ graph and
/// quantization-aware training's integer forward pass ([`qat`]) are all built from these.
pub(crate) enum QuantLayer {
    /// Dense, Conv2d or DepthwiseConv2d.
    Tensor(Box<TensorLayer>),
    /// A maximum keeps its input's parameters.
    MaxPool,
    /// AvgPool2d or GlobalAvgPool.
    Average(Average),
    Flatten,
    /// A tap passes its value on, parameters and all.
    Tap,
    /// A residual add, requantized to `output`.
    Add(AddQuant),
}

/// A residual add's int8 numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AddQuant {
    /// The parameters of the previous value and of the added one.
    pub inputs: [ActivationParams; 2],
    pub params: math::AddParams,
    /// ReLU (the clamp at the output's zero point) or identity.
    pub relu: bool,
    pub output: ActivationParams,
}

impl QuantLayer {
    /// The parameters of the layer's output, given those of the value it reads first
    /// (`Layer::input_value`).
    pub(crate) fn output(&self, input: ActivationParams) -> ActivationParams {
        match self {
            QuantLayer::Tensor(q) => q.output,
            QuantLayer::Average(average) => average.output,
            QuantLayer::Add(add) => add.output,
            QuantLayer::MaxPool | QuantLayer::Flatten | QuantLayer::Tap => input,
        }
    }
}

/// The parameters of every value: the input's, then each layer's output's.
pub(crate) fn value_params(
    network: &Network<f32>,
    layers: &[QuantLayer],
    input: ActivationParams,
) -> Vec<ActivationParams> {
    let mut params = vec![input];
    for (index, (layer, quant)) in network.layers.iter().zip(layers).enumerate() {
        let first = params[layer.input_value(index)];
        params.push(quant.output(first));
    }
    params
}

/// Every layer's int8 numbers for the ranges `ranges` (one per layer) and the input
/// parameters `input`.
pub(crate) fn quantize_layers(
    network: &Network<f32>,
    ranges: &[LayerRanges],
    input: ActivationParams,
    (pow2_scales, int16): (bool, bool),
) -> Result<Vec<QuantLayer>, QuantError> {
    let shapes = network.shapes();
    let mut params = vec![input];
    let mut layers = Vec::with_capacity(network.layers.len());
    for (layer_idx, (layer, layer_ranges)) in network.layers.iter().zip(ranges).enumerate() {
        let in_layer = |source: QuantError| QuantError::Layer {
            layer: layer_idx,
            error: Box::new(source),
        };
        let input_shape = shapes[layer.input_value(layer_idx)];
        let current = params[layer.input_value(layer_idx)];
        // An average gets its own output parameters, calibrated and, where their ratio to the
        // input's would put window sums exactly on rounding ties (which a float QDQ engine
        // rounds either way), nudged off them (`math::average_params`). Power-of-two scales
        // keep theirs: a float engine's arithmetic is then exact, ties included.
        let average = |taps: usize| -> Result<QuantLayer, QuantError> {
            let (lo, hi) = (layer_ranges.output.lo, layer_ranges.output.hi);
            let (output, (multiplier, shift)) = if pow2_scales {
                let output = math::activation_params(lo, hi).map_err(in_layer)?;
                (
                    output,
                    average_multiplier(current, output, taps).map_err(in_layer)?,
                )
            } else {
                math::average_params(current, lo, hi, taps).map_err(in_layer)?
            };
            Ok(QuantLayer::Average(Average {
                output,
                multiplier,
                shift,
            }))
        };
        let tensor = |params, activation| -> Result<QuantLayer, QuantError> {
            quantize_tensor_layer(
                layer.token(),
                params,
                activation,
                current,
                layer_ranges,
                (pow2_scales, int16),
            )
            .map(|q| QuantLayer::Tensor(Box::new(q)))
            .map_err(in_layer)
        };
        let quant = match layer {
            Layer::Dense(d) => tensor((&d.weights, &d.bias), d.activation)?,
            Layer::Conv2d(c) => tensor((&c.weights, &c.bias), c.activation)?,
            Layer::DepthwiseConv2d(c) => tensor((&c.weights, &c.bias), c.activation)?,
            Layer::MaxPool2d(_) => QuantLayer::MaxPool,
            Layer::AvgPool2d(pool) => average(pool.kernel[0] * pool.kernel[1])?,
            Layer::GlobalAvgPool(_) => average(input_shape.h * input_shape.w)?,
            Layer::Flatten(_) => QuantLayer::Flatten,
            Layer::Tap(_) => QuantLayer::Tap,
            Layer::Add(add) => {
                let relu = match add.activation {
                    Activation::Relu | Activation::Relu6 => true,
                    Activation::Identity => false,
                    other => {
                        return Err(in_layer(QuantError::Encode {
                            detail: format!(
                                "an add quantizes with relu or identity, not {other} (give the \
                                 add `:relu` or `:identity`)"
                            ),
                        }))
                    }
                };
                let output =
                    math::activation_params(layer_ranges.output.lo, layer_ranges.output.hi)
                        .map_err(in_layer)?;
                let inputs = [current, params[add.from]];
                let add_params =
                    math::add_params(inputs[0], inputs[1], output).map_err(in_layer)?;
                QuantLayer::Add(AddQuant {
                    inputs,
                    params: add_params,
                    relu,
                    output,
                })
            }
        };
        params.push(quant.output(current));
        layers.push(quant);
    }
    Ok(layers)
}

pub use crate::nn::shape::hwc_order;

/// A row-major `[rows][cols]` matrix with its columns taken in `order`.
fn permute_columns(values: &[i8], cols: usize, order: &[usize]) -> Vec<i8> {
    values
        .chunks_exact(cols.max(1))
        .flat_map(|row| order.iter().map(move |&col| row[col]))
        .collect()
}

fn pool_spec(
    kernel: [usize; 2],
    stride: [usize; 2],
    (input, output): (ActivationParams, ActivationParams),
    (multiplier, shift): (i32, u8),
) -> Result<PoolSpec, QuantError> {
    Ok(PoolSpec {
        kernel: [dim(kernel[0])?, dim(kernel[1])?],
        stride: [dim(stride[0])?, dim(stride[1])?],
        input_zero_point: input.zero_point,
        output_zero_point: output.zero_point,
        multiplier,
        shift,
    })
}

/// `M / 2^t = s_in / (s_out * taps)`: the mean of `taps` input steps in output steps.
fn average_multiplier(
    input: ActivationParams,
    output: ActivationParams,
    taps: usize,
) -> Result<(i32, u8), QuantError> {
    math::quantize_multiplier(f64::from(input.scale) / (f64::from(output.scale) * taps as f64))
}

/// A convolution's kernel, stride, padding and ONNX pads.
type ConvGeometry = ([usize; 2], [usize; 2], Padding, [usize; 4]);

/// The blob's and the QDQ graph's form of a convolution (full or depthwise) from its int8
/// numbers, `blob_weights` already in the runtime's order; and its output parameters.
fn conv_forms(
    q: TensorLayer,
    (kernel, stride, padding, pads): ConvGeometry,
    in_channels: usize,
    blob_weights: Vec<i8>,
    input: ActivationParams,
) -> Result<(ConvSpec, QdqConv, ActivationParams), QuantError> {
    let out_channels = q.weights.scales.len();
    let spec = ConvSpec {
        kernel: [dim(kernel[0])?, dim(kernel[1])?],
        stride: [dim(stride[0])?, dim(stride[1])?],
        padding: conv_padding(padding),
        n_outputs: dim(out_channels)?,
        input_zero_point: input.zero_point,
        output_zero_point: q.output.zero_point,
        weights: blob_weights,
        bias: q.bias.clone(),
        multipliers: q.multipliers,
        shifts: q.shifts,
        activation: q.activation,
    };
    let qdq = QdqConv {
        out_channels,
        in_channels,
        kernel,
        stride,
        pads,
        weights: q.weights.values,
        weight_scales: q.weights.scales,
        bias: q.bias,
        activation: q.qdq_activation,
        output: quant_params(q.output),
    };
    Ok((spec, qdq, q.output))
}

fn conv_padding(padding: Padding) -> kiln_runtime::encode::Padding {
    match padding {
        Padding::Same => kiln_runtime::encode::Padding::Same,
        Padding::Valid => kiln_runtime::encode::Padding::Valid,
    }
}

/// The input stage's loop `quantize` will give a model with this normalization, calibrated on
/// `calibration` (the training set): known before any network is trained, since it depends on
/// the data and the normalization only. `kiln fit` sizes candidates with it.
pub fn input_stage_for(
    normalization: &Normalization,
    calibration: &Dataset,
    options: QuantOptions,
) -> Result<kiln_runtime::InputStage, QuantError> {
    use kiln_runtime::InputStage;
    let mut range = calibrate::input_range(
        normalization,
        calibration,
        options.calib_samples,
        options.method,
    )?;
    if options.pow2_scales {
        (range.lo, range.hi) = math::pow2_range(range.lo, range.hi);
    }
    let (_, frac_bits, identity) = input_params(normalization, calibration, range)?;
    Ok(match normalization {
        Normalization::Standardize { .. } => InputStage::PerFeature,
        _ if frac_bits == 0 => InputStage::ByteTable,
        _ if identity => InputStage::Identity,
        _ => InputStage::FixedPoint,
    })
}

/// The input quantization for the calibrated `range` of the normalized input: its parameters,
/// the raw inputs' fraction bits (0 for integer data), and whether the scale is the
/// power-of-two one that makes the device's input stage the identity (real values under a
/// shared normalization, `math::pow2_input_params`).
fn input_params(
    normalization: &Normalization,
    calibration: &Dataset,
    range: calibrate::Range,
) -> Result<(ActivationParams, u8, bool), QuantError> {
    let shared_factor = match normalization {
        Normalization::None => Some(1.0),
        Normalization::Scale { scale } => Some(*scale),
        Normalization::Standardize { .. } => None,
    };
    let calibrated_bits = math::input_frac_bits(&calibration.features);
    let pow2 = shared_factor
        .filter(|_| calibrated_bits > 0)
        .and_then(|k| math::pow2_input_params(range.lo, range.hi, k));
    Ok(match pow2 {
        Some((params, bits)) => (params, bits, true),
        None => (
            math::activation_params(range.lo, range.hi)?,
            calibrated_bits,
            false,
        ),
    })
}

/// Quantizes `model`, calibrating on the first `options.calib_samples` rows of
/// `calibration` (the training set).
pub fn quantize(
    model: &ModelFile,
    calibration: &Dataset,
    options: QuantOptions,
) -> Result<Quantized, QuantError> {
    let network = model.network();
    if options.int16 {
        check_int16(&network)?;
    }
    // A QAT model's ranges are part of it: its weights were trained for exactly them.
    let ranges = match (&model.state.qat, &model.config.qat) {
        (Some(qat), Some(config)) if config.pow2_scales != options.pow2_scales => {
            return Err(QuantError::QatScales {
                trained_pow2: config.pow2_scales,
            })
        }
        (Some(qat), Some(_)) => qat.ranges.calibration(options.pow2_scales),
        _ => {
            let mut ranges = calibrate::calibrate(
                model,
                &network,
                calibration,
                options.calib_samples,
                options.method,
            )?;
            // int16's power-of-two scales round the step itself (`activation_params16`).
            if options.pow2_scales && !options.int16 {
                ranges.widen_to_pow2();
            }
            ranges
        }
    };
    // The input stage: the normalization and the input quantization in one integer map, from
    // raw integers with the fraction bits that real-valued training data needs. Real values
    // under a shared normalization get a power-of-two input scale, which makes that map the
    // identity plus the zero point on the device (`math::pow2_input_params`).
    let (input, frac_bits) = if options.int16 {
        (
            math::activation_params16(ranges.input.lo, ranges.input.hi, options.pow2_scales)?,
            math::input_frac_bits(&calibration.features),
        )
    } else {
        let (input, frac_bits, _) = input_params(&model.normalization, calibration, ranges.input)?;
        (input, frac_bits)
    };
    let shapes = network.shapes();
    let input_order = hwc_order(network.input_shape);

    let affines = match &model.normalization {
        Normalization::None => vec![math::input_affine(0.0, 1.0, input.scale, frac_bits)?],
        Normalization::Scale { scale } => {
            vec![math::input_affine(0.0, *scale, input.scale, frac_bits)?]
        }
        Normalization::Standardize { mean, inv_std } => mean
            .iter()
            .zip(inv_std)
            .map(|(&m, &s)| math::input_affine(m, s, input.scale, frac_bits))
            .collect::<Result<_, _>>()?,
    };
    let input_stage = InputStageSpec {
        zero_point: input.zero_point,
        frac_bits,
        // The runtime's input is HWC.
        features: if affines.len() == 1 {
            vec![affine_spec(affines[0])]
        } else {
            input_order
                .iter()
                .map(|&i| affine_spec(affines[i]))
                .collect()
        },
    };

    let quant_layers = quantize_layers(
        &network,
        &ranges.layers,
        input,
        (options.pow2_scales, options.int16),
    )?;
    let params = value_params(&network, &quant_layers, input);
    let mut nodes: Vec<NodeSpec> = Vec::with_capacity(network.layers.len());
    let mut qdq_layers = Vec::with_capacity(network.layers.len());
    let mut reports = Vec::new();
    // Per trainer value: the runtime's value id (a flatten or a tap computes nothing on the
    // device, so its value is the one it reads) and the shape whose HWC order its bytes follow
    // (a flatten reshapes only in ONNX).
    let mut runtime_values = vec![0usize];
    let mut byte_shapes = vec![network.input_shape];
    for (layer_idx, (layer, quant)) in network.layers.iter().zip(quant_layers).enumerate() {
        let in_layer = |source: QuantError| QuantError::Layer {
            layer: layer_idx,
            error: Box::new(source),
        };
        let first = layer.input_value(layer_idx);
        let input_shape = shapes[first];
        let byte_shape = byte_shapes[first];
        let current = params[first];
        // The device's node, if the layer computes anything there.
        let mut node = None;
        match (layer, quant) {
            (Layer::Dense(dense), QuantLayer::Tensor(q)) => {
                let n_inputs = dense.n_inputs();
                // The runtime reads a spatial input in HWC order: the columns follow it.
                let blob_weights = if byte_shape.c > 1 && byte_shape.h * byte_shape.w > 1 {
                    permute_columns(&q.weights.values, n_inputs, &hwc_order(byte_shape))
                } else {
                    q.weights.values.clone()
                };
                let folded = math::fold_bias(&q.bias, &blob_weights, n_inputs, current.zero_point)
                    .map_err(in_layer)?;
                node = Some(LayerSpec::Dense(DenseSpec {
                    n_inputs: dim(n_inputs)?,
                    n_outputs: dim(dense.n_outputs())?,
                    input_zero_point: current.zero_point,
                    output_zero_point: q.output.zero_point,
                    weights: blob_weights,
                    bias: folded,
                    multipliers: q.multipliers,
                    shifts: q.shifts,
                    activation: q.activation,
                }));
                qdq_layers.push(QdqCnnLayer::Dense(QdqLayer {
                    n_inputs,
                    n_outputs: dense.n_outputs(),
                    weights: q.weights.values,
                    weight_scales: q.weights.scales,
                    bias: q.bias,
                    activation: q.qdq_activation,
                    output: quant_params(q.output),
                }));
                reports.push(q.report);
            }
            (Layer::Conv2d(conv), QuantLayer::Tensor(q)) => {
                let (in_c, taps) = (conv.in_channels(), conv.kernel[0] * conv.kernel[1]);
                // ONNX's [O][C][kh][kw] to the runtime's OHWI [O][kh][kw][C].
                let order: Vec<usize> = (0..taps)
                    .flat_map(|tap| (0..in_c).map(move |c| c * taps + tap))
                    .collect();
                let blob_weights = permute_columns(&q.weights.values, in_c * taps, &order);
                let geometry = (conv.kernel, conv.stride, conv.padding, conv.onnx_pads());
                reports.push(q.report.clone());
                let (spec, qdq, _) = conv_forms(*q, geometry, in_c, blob_weights, current)?;
                node = Some(LayerSpec::Conv2d(spec));
                qdq_layers.push(QdqCnnLayer::Conv2d(qdq));
            }
            (Layer::DepthwiseConv2d(conv), QuantLayer::Tensor(q)) => {
                let (channels, taps) = (conv.channels(), conv.kernel[0] * conv.kernel[1]);
                // ONNX's [C][1][kh][kw] to the runtime's [kh][kw][C]: a transpose.
                let order: Vec<usize> = (0..channels * taps)
                    .map(|i| (i % channels) * taps + i / channels)
                    .collect();
                let blob_weights = permute_columns(&q.weights.values, channels * taps, &order);
                let geometry = (conv.kernel, conv.stride, conv.padding, conv.onnx_pads());
                reports.push(q.report.clone());
                let (spec, qdq, _) = conv_forms(*q, geometry, channels, blob_weights, current)?;
                node = Some(LayerSpec::DepthwiseConv2d(spec));
                qdq_layers.push(QdqCnnLayer::DepthwiseConv2d(qdq));
            }
            // A maximum keeps its input's scale and zero point; the multiplier is unused.
            (Layer::MaxPool2d(pool), QuantLayer::MaxPool) => {
                let unused = math::quantize_multiplier(1.0).map_err(in_layer)?;
                node = Some(LayerSpec::MaxPool2d(pool_spec(
                    pool.kernel,
                    pool.stride,
                    (current, current),
                    unused,
                )?));
                qdq_layers.push(QdqCnnLayer::MaxPool2d {
                    kernel: pool.kernel,
                    stride: pool.stride,
                });
            }
            (Layer::AvgPool2d(pool), QuantLayer::Average(average)) => {
                node = Some(LayerSpec::AvgPool2d(pool_spec(
                    pool.kernel,
                    pool.stride,
                    (current, average.output),
                    (average.multiplier, average.shift),
                )?));
                qdq_layers.push(QdqCnnLayer::AvgPool2d {
                    kernel: pool.kernel,
                    stride: pool.stride,
                    output: quant_params(average.output),
                });
            }
            (Layer::GlobalAvgPool(_), QuantLayer::Average(average)) => {
                node = Some(LayerSpec::AvgPool2d(pool_spec(
                    [input_shape.h, input_shape.w],
                    [1, 1],
                    (current, average.output),
                    (average.multiplier, average.shift),
                )?));
                qdq_layers.push(QdqCnnLayer::GlobalAvgPool {
                    output: quant_params(average.output),
                });
            }
            // The runtime's values are flat bytes already; only ONNX reshapes.
            (Layer::Flatten(_), QuantLayer::Flatten) => qdq_layers.push(QdqCnnLayer::Flatten),
            (Layer::Tap(tap), QuantLayer::Tap) => {
                qdq_layers.push(QdqCnnLayer::Tap { value: tap.value })
            }
            (Layer::Add(add), QuantLayer::Add(q)) => {
                // The device's bytes of both values must be in one order.
                if byte_shapes[add.from] != byte_shape {
                    return Err(in_layer(QuantError::Encode {
                        detail: format!(
                            "value {} and the previous value are laid out differently on the \
                             device (one is flattened): add them before the flatten",
                            add.from
                        ),
                    }));
                }
                node = Some(LayerSpec::Add(AddSpec {
                    other: runtime_values[add.from],
                    input_zero_points: [q.inputs[0].zero_point, q.inputs[1].zero_point],
                    output_zero_point: q.output.zero_point,
                    weights: q.params.weights,
                    multiplier: q.params.multiplier,
                    shift: q.params.shift,
                    activation: if q.relu {
                        ActivationSpec::Relu
                    } else {
                        ActivationSpec::Identity
                    },
                }));
                qdq_layers.push(QdqCnnLayer::Add {
                    other: add.from,
                    activation: if q.relu {
                        QdqActivation::Relu
                    } else {
                        QdqActivation::Identity
                    },
                    output: quant_params(q.output),
                });
            }
            _ => {
                return Err(in_layer(QuantError::Encode {
                    detail: "the quantized layer is not of the layer's kind".into(),
                }))
            }
        }
        match node {
            Some(spec) => {
                nodes.push(NodeSpec {
                    input: runtime_values[first],
                    layer: spec,
                });
                runtime_values.push(nodes.len());
                byte_shapes.push(shapes[layer_idx + 1]);
            }
            None => {
                runtime_values.push(runtime_values[first]);
                byte_shapes.push(byte_shape);
            }
        }
    }
    let output = params[network.layers.len()];

    let spec = ModelSpec {
        activations: if options.int16 {
            kiln_runtime::encode::Activations::Int16
        } else {
            kiln_runtime::encode::Activations::Int8
        },
        input: input_stage,
        input_shape: [
            dim(network.input_shape.h)?,
            dim(network.input_shape.w)?,
            dim(network.input_shape.c)?,
        ],
        nodes,
        output_scale: output.scale,
        output_zero_point: output.zero_point,
    };
    let blob = if options.in_place {
        kiln_runtime::encode::encode(&spec)
    } else {
        kiln_runtime::encode::encode_layer_by_layer(&spec)
    }
    .map_err(|e| QuantError::Encode {
        detail: format!("{e}"),
    })?;
    // The QDQ graph normalizes with the means the runtime uses, `mu / (256 * 2^frac_bits)`
    // (exact in f32 while |mu| < 2^24), not the float model's: both forms are one int8 model.
    let offset_unit = 256.0 * f64::from(1u32 << frac_bits);
    let normalization = match &model.normalization {
        Normalization::Standardize { inv_std, .. } => {
            kiln_onnx::mlp::InputNormalization::Standardize {
                mean: affines
                    .iter()
                    .map(|a| (f64::from(a.offset) / offset_unit) as f32)
                    .collect(),
                inv_std: inv_std.clone(),
            }
        }
        other => export::onnx_normalization(other),
    };
    let qdq = if model.is_mlp() {
        let layers = qdq_layers
            .into_iter()
            .filter_map(|layer| match layer {
                QdqCnnLayer::Dense(dense) => Some(dense),
                _ => None,
            })
            .collect();
        Qdq::Mlp(QdqMlp {
            int16: options.int16,
            input_frac_bits: frac_bits,
            normalization,
            input: quant_params(input),
            layers,
        })
    } else {
        let cnn = export::cnn_model(&network);
        Qdq::Cnn(QdqCnn {
            input_frac_bits: frac_bits,
            input_shape: cnn.input_shape,
            spatial_rank: cnn.spatial_rank,
            normalization,
            input: quant_params(input),
            layers: qdq_layers,
        })
    };
    let report = QuantReport {
        calibration: ranges,
        input,
        input_affines: affines.len(),
        input_frac_bits: frac_bits,
        layers: reports,
    };
    Ok(Quantized {
        spec,
        qdq,
        blob,
        report,
    })
}

/// What int16 activations run so far: dense layers with relu or identity.
fn check_int16(network: &Network<f32>) -> Result<(), QuantError> {
    for (layer_idx, layer) in network.layers.iter().enumerate() {
        let detail = match layer {
            Layer::Dense(dense) => match dense.activation {
                Activation::Relu | Activation::Relu6 | Activation::Identity => continue,
                other => format!(
                    "layer {layer_idx} ({}): int16 activations take relu or identity layers so far, not {other}",
                    layer.token()
                ),
            },
            Layer::Flatten(_) => continue,
            other => format!(
                "layer {layer_idx} ({}): int16 activations take multilayer perceptrons (dense layers) so far",
                other.token()
            ),
        };
        return Err(QuantError::Int16 { detail });
    }
    Ok(())
}

fn dim(width: usize) -> Result<u32, QuantError> {
    u32::try_from(width).map_err(|_| QuantError::Overflow {
        what: format!("the layer width {width}"),
    })
}

/// The QDQ ONNX model (opset 13) for a quantized model.
pub fn qdq_onnx(
    model: &ModelFile,
    quantized: &Quantized,
) -> Result<kiln_onnx::proto::ModelProto, QuantError> {
    let options = export::mlp_export_options(
        model,
        // int16 QuantizeLinear/DequantizeLinear arrived in opset 21
        export::ExportOptions {
            opset: if matches!(&quantized.qdq, Qdq::Mlp(mlp) if mlp.int16) { 21 } else { kiln_onnx::builder::MIN_OPSET },
            with_probabilities: false,
        },
        &format!(
            "int8 QDQ form of the model: every tensor the kiln runtime quantizes is a QuantizeLinear/DequantizeLinear \
             pair here, calibrated on {} training samples ({}). Output `logits` is dequantized f32; `logits_q` is the int8 logits.",
            quantized.report.calibration.n_samples, quantized.report.calibration.method
        ),
    );
    Ok(match &quantized.qdq {
        Qdq::Mlp(mlp) => kiln_onnx::qdq::qdq_mlp_to_model(mlp, &options)?,
        Qdq::Cnn(cnn) => kiln_onnx::qdq_cnn::qdq_cnn_to_model(cnn, &options)?,
    })
}
