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
pub mod rust_source;

use crate::data::{Dataset, Normalization};
use crate::export;
use crate::model::ModelFile;
use crate::nn::Activation;
use calibrate::{Calibration, RangeMethod};
use kiln_onnx::qdq::{QdqActivation, QdqLayer, QdqMlp, QuantParams};
use kiln_runtime::encode::{
    chain, ActivationSpec, AffineSpec, DenseSpec, InputStageSpec, LayerSpec, ModelSpec,
};
use math::{ActivationParams, TableFunction};

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
    #[error("cannot build the QDQ ONNX model: {0}")]
    Onnx(#[from] kiln_onnx::OnnxError),
}

/// How to quantize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantOptions {
    /// How many training samples (the first ones) calibrate the ranges.
    pub calib_samples: usize,
    pub method: RangeMethod,
}

impl Default for QuantOptions {
    fn default() -> Self {
        Self {
            calib_samples: DEFAULT_CALIB_SAMPLES,
            method: RangeMethod::MinMax,
        }
    }
}

/// What was decided for one layer, for reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerReport {
    pub n_inputs: usize,
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
    pub layers: Vec<LayerReport>,
}

/// A quantized model in both forms, from the same numbers.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub spec: ModelSpec,
    pub qdq: QdqMlp,
    /// `kiln_runtime::encode::encode(&spec)`.
    pub blob: Vec<u8>,
    pub report: QuantReport,
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

/// Quantizes `model`, calibrating on the first `options.calib_samples` rows of
/// `calibration` (the training set).
pub fn quantize(
    model: &ModelFile,
    calibration: &Dataset,
    options: QuantOptions,
) -> Result<Quantized, QuantError> {
    let ranges = calibrate::calibrate(model, calibration, options.calib_samples, options.method)?;
    let input = math::activation_params(ranges.input.lo, ranges.input.hi)?;

    // The input stage: the normalization and the input quantization in one integer map.
    let affines = match &model.normalization {
        Normalization::None => vec![math::input_affine(0.0, 1.0, input.scale)?],
        Normalization::Scale { scale } => vec![math::input_affine(0.0, *scale, input.scale)?],
        Normalization::Standardize { mean, inv_std } => mean
            .iter()
            .zip(inv_std)
            .map(|(&m, &s)| math::input_affine(m, s, input.scale))
            .collect::<Result<_, _>>()?,
    };
    let input_stage = InputStageSpec {
        zero_point: input.zero_point,
        features: affines.iter().copied().map(affine_spec).collect(),
    };

    let mut layer_specs = Vec::with_capacity(model.layers.len());
    let mut qdq_layers = Vec::with_capacity(model.layers.len());
    let mut reports = Vec::with_capacity(model.layers.len());
    let mut layer_input = input;
    for (layer_idx, (layer, layer_ranges)) in model.layers.iter().zip(&ranges.layers).enumerate() {
        let in_layer = |source: QuantError| QuantError::Layer {
            layer: layer_idx,
            error: Box::new(source),
        };
        let output = math::activation_params(layer_ranges.output.lo, layer_ranges.output.hi)
            .map_err(in_layer)?;
        let (pre, activation_spec, qdq_activation) = match table_function(layer.activation) {
            // Relu6 is a ReLU here: its calibrated output range ends at or below 6, and the
            // int8 output saturates at the range's top, so the clamp at 6 costs nothing.
            None if matches!(layer.activation, Activation::Relu | Activation::Relu6) => {
                (None, ActivationSpec::Relu, QdqActivation::Relu)
            }
            None => (None, ActivationSpec::Identity, QdqActivation::Identity),
            Some(function) => {
                let range = layer_ranges.pre_activation;
                let pre = math::activation_params(range.lo, range.hi).map_err(in_layer)?;
                (
                    Some(pre),
                    ActivationSpec::Lut {
                        pre_zero_point: pre.zero_point,
                        table: math::activation_table(function, pre, output),
                    },
                    QdqActivation::Table {
                        function: export::onnx_activation(layer.activation),
                        pre: quant_params(pre),
                    },
                )
            }
        };
        // Identity and relu requantize straight to the output; tables go through `pre`.
        let target = pre.unwrap_or(output);
        let floor = math::weight_scale_floor(layer_input.scale, target.scale);
        let weights =
            math::quantize_weights(&layer.weights, layer.n_outputs, layer.n_inputs, floor);
        let bias = math::quantize_bias(&layer.bias, layer_input.scale, &weights.scales);
        let saturated_biases = bias
            .iter()
            .filter(|&&b| b == i32::MIN || b == i32::MAX)
            .count();
        let (multipliers, shifts): (Vec<i32>, Vec<u8>) = weights
            .scales
            .iter()
            .map(|&s_w| {
                math::quantize_multiplier(
                    f64::from(layer_input.scale) * f64::from(s_w) / f64::from(target.scale),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(in_layer)?
            .into_iter()
            .unzip();
        let folded = math::fold_bias(
            &bias,
            &weights.values,
            layer.n_inputs,
            layer_input.zero_point,
        )
        .map_err(in_layer)?;
        reports.push(LayerReport {
            n_inputs: layer.n_inputs,
            n_outputs: layer.n_outputs,
            activation: layer.activation.to_string(),
            pre_activation: pre,
            output,
            weight_scale_min: weights.scales.iter().copied().fold(f32::INFINITY, f32::min),
            weight_scale_max: weights.scales.iter().copied().fold(0.0, f32::max),
            shift_min: shifts.iter().copied().min().unwrap_or(0),
            shift_max: shifts.iter().copied().max().unwrap_or(0),
            saturated_biases,
            floored_channels: weights.floored,
        });
        layer_specs.push(LayerSpec::Dense(DenseSpec {
            n_inputs: dim(layer.n_inputs)?,
            n_outputs: dim(layer.n_outputs)?,
            input_zero_point: layer_input.zero_point,
            output_zero_point: output.zero_point,
            weights: weights.values.clone(),
            bias: folded,
            multipliers,
            shifts,
            activation: activation_spec,
        }));
        qdq_layers.push(QdqLayer {
            n_inputs: layer.n_inputs,
            n_outputs: layer.n_outputs,
            weights: weights.values,
            weight_scales: weights.scales,
            bias,
            activation: qdq_activation,
            output: quant_params(output),
        });
        layer_input = output;
    }

    let spec = ModelSpec {
        input: input_stage,
        // an MLP: a chain of dense nodes over a feature vector
        input_shape: [1, 1, dim(model.n_inputs)?],
        nodes: chain(layer_specs),
        output_scale: layer_input.scale,
        output_zero_point: layer_input.zero_point,
    };
    let blob = kiln_runtime::encode::encode(&spec).map_err(|e| QuantError::Encode {
        detail: format!("{e}"),
    })?;
    // The QDQ graph normalizes with the means the runtime uses, `mu / 256`
    // (exact in f32 while |mu| < 2^24), not the float model's: both forms are one int8 model.
    let normalization = match &model.normalization {
        Normalization::Standardize { inv_std, .. } => {
            kiln_onnx::mlp::InputNormalization::Standardize {
                mean: affines
                    .iter()
                    .map(|a| (f64::from(a.offset) / 256.0) as f32)
                    .collect(),
                inv_std: inv_std.clone(),
            }
        }
        other => export::onnx_normalization(other),
    };
    let qdq = QdqMlp {
        normalization,
        input: quant_params(input),
        layers: qdq_layers,
    };
    let report = QuantReport {
        calibration: ranges,
        input,
        input_affines: affines.len(),
        layers: reports,
    };
    Ok(Quantized {
        spec,
        qdq,
        blob,
        report,
    })
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
        export::ExportOptions { opset: kiln_onnx::builder::MIN_OPSET, with_probabilities: false },
        &format!(
            "int8 QDQ form of the model: every tensor the kiln runtime quantizes is a QuantizeLinear/DequantizeLinear \
             pair here, calibrated on {} training samples ({}). Output `logits` is dequantized f32; `logits_q` is the int8 logits.",
            quantized.report.calibration.n_samples, quantized.report.calibration.method
        ),
    );
    Ok(kiln_onnx::qdq::qdq_mlp_to_model(&quantized.qdq, &options)?)
}
