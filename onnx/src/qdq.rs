//! Int8 QDQ export: the int8 twin of the float MLP graph.
//!
//! The model is the one `docs/quantization.md` specifies, written with the
//! standard `QuantizeLinear` / `DequantizeLinear` operators (opset 13 and
//! later) so that any ONNX runtime can execute it:
//!
//! - the raw `input` is normalised exactly as in the float graph (the same
//!   nodes, from [`crate::mlp`]), then quantized to int8 (`input_q`);
//! - each layer dequantizes its int8 input, its int8 weights (symmetric, one
//!   scale per output channel, `axis = 0`) and its int32 bias (scale
//!   `s_in * s_w[o]`, zero point 0), runs a float `Gemm` with `transB = 1`,
//!   and quantizes the result to the layer's int8 output parameters. ReLU
//!   runs before that quantization; tanh, sigmoid and leaky ReLU run between
//!   a quantization to the pre-activation parameters and the output
//!   quantization, which is what the runtime's 256-entry table computes;
//! - `logits` (FLOAT) dequantizes the last int8 tensor, `logits_q` (INT8) is
//!   that tensor itself.
//!
//! There is no `Softmax`: a softmax between quantized tensors is not portable
//! (tract has been seen to return all ones for `DQ -> Softmax -> Q`).
//!
//! ```
//! use kiln_onnx::builder::Producer;
//! use kiln_onnx::mlp::{InputNormalization, MlpExportOptions};
//! use kiln_onnx::qdq::{qdq_mlp_to_model, QdqActivation, QdqLayer, QdqMlp, QuantParams};
//!
//! let mlp = QdqMlp {
//!     int16: false,
//!     input_frac_bits: 0,
//!     normalization: InputNormalization::Scale { scale: 1.0 / 255.0 },
//!     input: QuantParams { scale: 1.0 / 255.0, zero_point: -128 },
//!     layers: vec![QdqLayer {
//!         n_inputs: 2,
//!         n_outputs: 1,
//!         weights: vec![127, -64],
//!         weight_scales: vec![0.01],
//!         bias: vec![300],
//!         activation: QdqActivation::Identity,
//!         output: QuantParams { scale: 0.05, zero_point: 3 },
//!     }],
//! };
//! let options = MlpExportOptions {
//!     opset: 13,
//!     with_probabilities: false,
//!     producer: Producer { name: "kiln".into(), version: "0.1.0".into() },
//!     doc_string: "A one-neuron int8 example.".into(),
//!     metadata: Vec::new(),
//! };
//! let model = qdq_mlp_to_model(&mlp, &options)?;
//! let outputs: Vec<_> = model.graph.unwrap().output.iter().map(|o| o.name().to_owned()).collect();
//! assert_eq!(outputs, ["logits", "logits_q"]);
//! # Ok::<(), kiln_onnx::OnnxError>(())
//! ```

use crate::builder::{attr_float, attr_int, ir_version_for_opset, Dim, GraphBuilder};
use crate::mlp::{
    add_input_fixed_point, add_normalization_from, build_model, dim, validate_metadata,
    validate_normalization, Activation, InputNormalization, MlpExportOptions, BATCH_DIM,
    INPUT_NAME, LOGITS_NAME,
};
use crate::proto::{tensor_proto::DataType, ModelProto};
use crate::OnnxError;

/// Name of the INT8 graph output holding the last layer's quantized values.
pub const LOGITS_Q_NAME: &str = "logits_q";

/// Name of the int8 tensor holding the quantized, normalised input.
const INPUT_Q_NAME: &str = "input_q";

const LOGITS_Q_DOC: &str = "Int8 logits (scale logits_q.scale, zero point logits_q.zero_point): \
     comparable integer for integer with kiln-runtime's int8 logits. The float arithmetic of a \
     QDQ runtime can differ from kiln-runtime's exact integer requantization by one step where \
     a value falls on a rounding boundary.";

const LOGITS_DOC: &str =
    "The int8 logits dequantized to float: logits_q.scale * (logits_q - logits_q.zero_point).";

const INPUT_QUANTIZE_DOC: &str = "Quantizes the normalized features to int8 with the input \
     parameters calibrated on the training set (round half to even, saturating).";

/// An int8 quantization's parameters: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    /// Real value of one step; finite and greater than 0.
    pub scale: f32,
    /// The int8 value that represents 0.0.
    pub zero_point: i8,
}

/// The nonlinearity of one int8 layer.
#[derive(Debug, Clone, PartialEq)]
pub enum QdqActivation {
    /// The layer requantizes straight to its output parameters.
    Identity,
    /// `Relu` in float before the output quantization; the runtime's clamp at
    /// the output zero point is the same integer.
    Relu,
    /// tanh, sigmoid or leaky relu, computed in float between a QuantizeLinear to the
    /// pre-activation params and a QuantizeLinear to the layer's output params.
    Table {
        /// [`Activation::Tanh`], [`Activation::Sigmoid`] or
        /// [`Activation::LeakyRelu`].
        function: Activation,
        /// Parameters of the pre-activation values, the table's index.
        pre: QuantParams,
    },
}

/// One int8 dense layer, as `docs/quantization.md` defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct QdqLayer {
    /// Width of the layer's input.
    pub n_inputs: usize,
    /// Width of the layer's output.
    pub n_outputs: usize,
    /// Row-major `[n_outputs][n_inputs]`, symmetric: zero point 0, values in
    /// `[-127, 127]`.
    pub weights: Vec<i8>,
    /// One scale per output channel (row of `weights`).
    pub weight_scales: Vec<f32>,
    /// `q_b[o]`, not folded with the input zero point; its scale is the input
    /// scale times `weight_scales[o]`.
    pub bias: Vec<i32>,
    /// Applied before the output quantization.
    pub activation: QdqActivation,
    /// Parameters of the layer's int8 output.
    pub output: QuantParams,
}

/// A whole int8 MLP: normalisation, input quantization and layers.
#[derive(Debug, Clone, PartialEq)]
pub struct QdqMlp {
    /// int16 activations (zero points 0) with int8 weights, the 16x8 scheme: every
    /// quantized tensor but the weights and biases is INT16 (opset 21), `logits_q` too.
    pub int16: bool,
    /// The device's raw inputs are `round(x * 2^input_frac_bits)`: for bits above 0 the graph
    /// rounds its float input the same way first (0: integer data, no rounding nodes).
    pub input_frac_bits: u8,
    /// The float model's normalisation, applied in float before quantizing.
    pub normalization: InputNormalization,
    /// Parameters of the quantized, normalised input.
    pub input: QuantParams,
    /// The layers, first to last; the last one's output is the logits.
    pub layers: Vec<QdqLayer>,
}

/// Builds the int8 QDQ ONNX model of `mlp`.
///
/// The graph takes `input` FLOAT `[N, n_features]` (raw feature values) and
/// returns `logits` FLOAT `[N, n_out]` and `logits_q` INT8 `[N, n_out]`, in
/// that order. Everything is validated first: opset (13 to 21), shapes and
/// chaining, one weight scale and one bias per output, scales finite and
/// positive (including every bias scale `s_in * s_w[o]`), symmetric weights,
/// table functions, normalisation and metadata keys.
/// `options.with_probabilities` must be false.
pub fn qdq_mlp_to_model(mlp: &QdqMlp, options: &MlpExportOptions) -> Result<ModelProto, OnnxError> {
    validate(mlp, options)?;
    let layers = &mlp.layers;
    let n_features = layers[0].n_inputs;
    let n_out = layers[layers.len() - 1].n_outputs;
    let batch = || Dim::Param(BATCH_DIM.to_owned());

    let mut graph = GraphBuilder::new("kiln_mlp_int8");
    graph.doc_string(&describe(mlp));
    graph.input_f32(INPUT_NAME, &[batch(), Dim::Fixed(dim(n_features))]);

    let fixed = add_input_fixed_point(&mut graph, mlp.input_frac_bits)?;
    let normalized =
        add_normalization_from(&mut graph, &fixed, &mlp.normalization, &[dim(n_features)])?;
    let mut q_in = add_input_quantize(&mut graph, &normalized, mlp.input, mlp.int16)?;

    for (i, layer) in layers.iter().enumerate() {
        let out_name = if i + 1 == layers.len() {
            LOGITS_Q_NAME.to_owned()
        } else {
            format!("layer{i}.output_q")
        };
        let affine = Affine {
            weights: &layer.weights,
            weight_dims: vec![dim(layer.n_outputs), dim(layer.n_inputs)],
            weight_scales: &layer.weight_scales,
            bias: &layer.bias,
            activation: &layer.activation,
            output: layer.output,
        };
        q_in = add_affine(
            &mut graph,
            i,
            &q_in,
            &affine,
            &out_name,
            |graph, inputs, linear| {
                graph.node(
                    "Gemm",
                    &format!("layer{i}_gemm"),
                    &inputs,
                    &[linear],
                    vec![attr_int("transB", 1)],
                );
            },
        )?;
    }

    add_int8_outputs(&mut graph, &q_in, &[batch(), Dim::Fixed(dim(n_out))]);
    build_model(graph, options)
}

/// Quantizes the normalised input `normalized` to the int8 tensor `input_q`.
pub(crate) fn add_input_quantize(
    graph: &mut GraphBuilder,
    normalized: &str,
    params: QuantParams,
    int16: bool,
) -> Result<Quantized, OnnxError> {
    let q = Quantized::new(graph, INPUT_Q_NAME, params, int16)?;
    graph.node_with_doc(
        "QuantizeLinear",
        "input_quantize",
        &[normalized, &q.scale, &q.zero_point],
        &[&q.tensor],
        Vec::new(),
        INPUT_QUANTIZE_DOC,
    );
    Ok(q)
}

/// Dequantizes the last int8 tensor `q` (named [`LOGITS_Q_NAME`]) to
/// `logits` and declares both outputs with `dims`.
pub(crate) fn add_int8_outputs(graph: &mut GraphBuilder, q: &Quantized, dims: &[Dim]) {
    graph.node_with_doc(
        "DequantizeLinear",
        "logits_dequantize",
        &[&q.tensor, &q.scale, &q.zero_point],
        &[LOGITS_NAME],
        Vec::new(),
        LOGITS_DOC,
    );
    graph.output_with_doc(LOGITS_NAME, DataType::Float, dims, LOGITS_DOC);
    let data_type = if q.int16 {
        DataType::Int16
    } else {
        DataType::Int8
    };
    graph.output_with_doc(LOGITS_Q_NAME, data_type, dims, LOGITS_Q_DOC);
}

/// `layer{i}.input = DequantizeLinear(q_in)`, with the same scale and zero
/// point tensors as the quantization that produced `q_in`; returns the name.
pub(crate) fn add_dequantize_input(graph: &mut GraphBuilder, i: usize, q_in: &Quantized) -> String {
    let x = format!("layer{i}.input");
    graph.node(
        "DequantizeLinear",
        &format!("layer{i}_dequantize_input"),
        &[&q_in.tensor, &q_in.scale, &q_in.zero_point],
        &[&x],
        Vec::new(),
    );
    x
}

/// The int8 parameters of one affine layer (`Gemm` or `Conv`).
pub(crate) struct Affine<'a> {
    /// Symmetric int8 weights, output channel first.
    pub weights: &'a [i8],
    /// Their ONNX shape, output channels first.
    pub weight_dims: Vec<i64>,
    /// One scale per output channel.
    pub weight_scales: &'a [f32],
    /// Int32 biases with scale `s_in * weight_scales[o]`.
    pub bias: &'a [i32],
    /// Applied before the output quantization.
    pub activation: &'a QdqActivation,
    /// The layer's int8 output parameters.
    pub output: QuantParams,
}

/// Emits int8 layer `i`: dequantizes its input `q_in`, its per-channel
/// weights and its bias, lets `emit_linear` write the float linear node
/// (given the input, weight and bias tensor names and the tensor to write),
/// applies the activation and quantizes to the int8 tensor `out_name`, which
/// it returns.
pub(crate) fn add_affine(
    graph: &mut GraphBuilder,
    i: usize,
    q_in: &Quantized,
    layer: &Affine<'_>,
    out_name: &str,
    emit_linear: impl FnOnce(&mut GraphBuilder, [&str; 3], &str),
) -> Result<Quantized, OnnxError> {
    let n_o = layer.weight_dims[0];
    let n_outputs = layer.weight_scales.len();

    let x = add_dequantize_input(graph, i, q_in);

    // W_f = DequantizeLinear(w_q), per output channel (axis 0).
    let weight_q = format!("layer{i}.weight_q");
    let weight_scale = format!("layer{i}.weight_scale");
    let weight_zero_point = format!("layer{i}.weight_zero_point");
    let weight = format!("layer{i}.weight");
    graph
        .initializer_i8(&weight_q, &layer.weight_dims, layer.weights)?
        .initializer_f32(&weight_scale, &[n_o], layer.weight_scales)?
        .initializer_i8(&weight_zero_point, &[n_o], &vec![0; n_outputs])?;
    graph.node_with_doc(
        "DequantizeLinear",
        &format!("layer{i}_dequantize_weight"),
        &[&weight_q, &weight_scale, &weight_zero_point],
        &[&weight],
        vec![attr_int("axis", 0)],
        "Symmetric int8 weights, one scale per output channel (row).",
    );

    // b_f = DequantizeLinear(b_q), scale s_in * s_w[o] computed in f32.
    let bias_q = format!("layer{i}.bias_q");
    let bias_scale = format!("layer{i}.bias_scale");
    let bias_zero_point = format!("layer{i}.bias_zero_point");
    let bias = format!("layer{i}.bias");
    let bias_scales: Vec<f32> = layer
        .weight_scales
        .iter()
        .map(|&s_w| q_in.params.scale * s_w)
        .collect();
    graph
        .initializer_i32(&bias_q, &[n_o], layer.bias)?
        .initializer_f32(&bias_scale, &[n_o], &bias_scales)?
        .initializer_i32(&bias_zero_point, &[n_o], &vec![0; n_outputs])?;
    graph.node_with_doc(
        "DequantizeLinear",
        &format!("layer{i}_dequantize_bias"),
        &[&bias_q, &bias_scale, &bias_zero_point],
        &[&bias],
        vec![attr_int("axis", 0)],
        "Int32 bias with scale input scale x weight scale, per output channel.",
    );

    let linear = format!("layer{i}.linear");
    emit_linear(graph, [&x, &weight, &bias], &linear);
    add_activation_quantize(
        graph,
        i,
        linear,
        layer.activation,
        layer.output,
        q_in.int16,
        out_name,
    )
}

/// Emits layer `i`'s activation on the float tensor `linear` and the
/// quantization of the result to the int8 tensor `out_name` with `output`'s
/// parameters, which it returns: ReLU before the output quantization, a
/// table function between a quantization to the pre-activation parameters
/// and the output's. Shared by the affine layers and the CNN's residual Add.
pub(crate) fn add_activation_quantize(
    graph: &mut GraphBuilder,
    i: usize,
    linear: String,
    activation: &QdqActivation,
    output: QuantParams,
    int16: bool,
    out_name: &str,
) -> Result<Quantized, OnnxError> {
    // The float tensor that the output quantization reads.
    let to_quantize = match activation {
        QdqActivation::Identity => linear,
        QdqActivation::Relu => {
            let activated = format!("layer{i}.activated");
            graph.node(
                "Relu",
                &format!("layer{i}_relu"),
                &[&linear],
                &[&activated],
                Vec::new(),
            );
            activated
        }
        QdqActivation::Table { function, pre } => {
            let pre_q = Quantized::new(graph, &format!("layer{i}.pre_activation_q"), *pre, int16)?;
            graph.node_with_doc(
                "QuantizeLinear",
                &format!("layer{i}_quantize_pre_activation"),
                &[&linear, &pre_q.scale, &pre_q.zero_point],
                &[&pre_q.tensor],
                Vec::new(),
                "The int8 pre-activation: the index of kiln-runtime's activation table.",
            );
            let pre_activation = format!("layer{i}.pre_activation");
            graph.node(
                "DequantizeLinear",
                &format!("layer{i}_dequantize_pre_activation"),
                &[&pre_q.tensor, &pre_q.scale, &pre_q.zero_point],
                &[&pre_activation],
                Vec::new(),
            );
            // Validation guarantees a table function, which has an op.
            let (op_type, suffix) = function.op().ok_or(OnnxError::NotATableFunction {
                layer: i,
                function: "Identity",
            })?;
            let attributes = match function {
                Activation::LeakyRelu { alpha } => vec![attr_float("alpha", *alpha)],
                _ => Vec::new(),
            };
            let activated = format!("layer{i}.activated");
            graph.node(
                op_type,
                &format!("layer{i}_{suffix}"),
                &[&pre_activation],
                &[&activated],
                attributes,
            );
            activated
        }
    };

    let q_out = Quantized::new(graph, out_name, output, int16)?;
    graph.node(
        "QuantizeLinear",
        &format!("layer{i}_quantize_output"),
        &[&to_quantize, &q_out.scale, &q_out.zero_point],
        &[&q_out.tensor],
        Vec::new(),
    );
    Ok(q_out)
}

/// An int8 tensor's name and the names of its rank-0 scale and zero point
/// initializers, `<tensor>.scale` and `<tensor>.zero_point`.
#[derive(Debug, Clone)]
pub(crate) struct Quantized {
    pub tensor: String,
    pub scale: String,
    pub zero_point: String,
    pub params: QuantParams,
    /// An INT16 tensor (its zero point initializer INT16), else INT8.
    pub int16: bool,
}

impl Quantized {
    /// Adds the parameter initializers for the int8 tensor `tensor`.
    pub(crate) fn new(
        graph: &mut GraphBuilder,
        tensor: &str,
        params: QuantParams,
        int16: bool,
    ) -> Result<Self, OnnxError> {
        let scale = format!("{tensor}.scale");
        let zero_point = format!("{tensor}.zero_point");
        graph.initializer_f32(&scale, &[], &[params.scale])?;
        if int16 {
            graph.initializer_i16(&zero_point, &[], &[i16::from(params.zero_point)])?;
        } else {
            graph.initializer_i8(&zero_point, &[], &[params.zero_point])?;
        }
        Ok(Self {
            tensor: tensor.to_owned(),
            scale,
            zero_point,
            params,
            int16,
        })
    }

    /// The int8 tensor `tensor` with this one's scale and zero point (the
    /// same initializers), for an operation that keeps the quantization.
    pub(crate) fn renamed(&self, tensor: &str) -> Self {
        Self {
            tensor: tensor.to_owned(),
            scale: self.scale.clone(),
            zero_point: self.zero_point.clone(),
            params: self.params,
            int16: self.int16,
        }
    }
}

fn validate(mlp: &QdqMlp, options: &MlpExportOptions) -> Result<(), OnnxError> {
    ir_version_for_opset(options.opset)?;
    if options.with_probabilities {
        return Err(OnnxError::QdqProbabilities);
    }
    let layers = &mlp.layers;
    let first = layers.first().ok_or(OnnxError::NoLayers)?;
    check_scale(mlp.input.scale, || "input quantization scale".to_owned())?;
    if mlp.int16 {
        if options.opset < 21 {
            return Err(OnnxError::Int16(format!(
                "int16 QuantizeLinear/DequantizeLinear need opset 21, not {}",
                options.opset
            )));
        }
        let zero_points = std::iter::once(mlp.input.zero_point)
            .chain(layers.iter().map(|layer| layer.output.zero_point));
        if zero_points.into_iter().any(|zp| zp != 0) {
            return Err(OnnxError::Int16(
                "int16 activations are symmetric: every zero point is 0".into(),
            ));
        }
        if let Some(li) = layers
            .iter()
            .position(|layer| matches!(layer.activation, QdqActivation::Table { .. }))
        {
            return Err(OnnxError::Int16(format!(
                "layer {li}: int16 activations take identity or relu, not a table activation"
            )));
        }
    }

    let mut s_in = mlp.input.scale;
    for (li, layer) in layers.iter().enumerate() {
        let previous_outputs = li.checked_sub(1).map(|prev| layers[prev].n_outputs);
        crate::mlp::check_layer_shape(
            li,
            crate::mlp::LayerShape {
                n_inputs: layer.n_inputs,
                n_outputs: layer.n_outputs,
                n_weights: layer.weights.len(),
                n_biases: layer.bias.len(),
            },
            previous_outputs,
        )?;
        validate_affine(
            li,
            &layer.weights,
            &layer.weight_scales,
            layer.n_outputs,
            s_in,
            &layer.activation,
            layer.output,
        )?;
        s_in = layer.output.scale;
    }

    validate_normalization(&mlp.normalization, first.n_inputs)?;
    validate_metadata(options)
}

/// Checks one int8 affine layer's parameters beyond its shape: one weight
/// scale per output, symmetric weights, finite positive scales (including
/// every bias scale `s_in * s_w[o]`), a table activation's function and
/// parameters, and the output scale. Shared by the MLP and CNN QDQ exports.
pub(crate) fn validate_affine(
    li: usize,
    weights: &[i8],
    weight_scales: &[f32],
    n_outputs: usize,
    s_in: f32,
    activation: &QdqActivation,
    output: QuantParams,
) -> Result<(), OnnxError> {
    if weight_scales.len() != n_outputs {
        return Err(OnnxError::WeightScaleCount {
            layer: li,
            actual: weight_scales.len(),
            expected: n_outputs,
        });
    }
    if let Some(index) = weights.iter().position(|&w| w == i8::MIN) {
        return Err(OnnxError::WeightOutOfRange {
            layer: li,
            index,
            value: i8::MIN,
        });
    }
    for (o, &s_w) in weight_scales.iter().enumerate() {
        check_scale(s_w, || format!("layer {li} weight_scales[{o}]"))?;
        // The bias scale is computed in f32 and can underflow or
        // overflow even when both factors are valid.
        check_scale(s_in * s_w, || {
            format!(
                "layer {li} bias scale[{o}] (input scale {s_in:e} x weight_scales[{o}] {s_w:e})"
            )
        })?;
    }
    validate_activation(li, activation)?;
    check_scale(output.scale, || format!("layer {li} output scale"))?;
    Ok(())
}

/// Checks an int8 activation: a table's function is Tanh, Sigmoid or
/// LeakyRelu (with a finite alpha) and its pre-activation scale is valid.
pub(crate) fn validate_activation(li: usize, activation: &QdqActivation) -> Result<(), OnnxError> {
    if let QdqActivation::Table { function, pre } = activation {
        match function {
            Activation::Tanh | Activation::Sigmoid => {}
            Activation::LeakyRelu { alpha } => {
                if !alpha.is_finite() {
                    return Err(OnnxError::NonFinite {
                        location: format!("layer {li} LeakyRelu alpha"),
                        value: *alpha,
                    });
                }
            }
            Activation::Relu => {
                return Err(OnnxError::NotATableFunction {
                    layer: li,
                    function: "Relu",
                })
            }
            Activation::Identity => {
                return Err(OnnxError::NotATableFunction {
                    layer: li,
                    function: "Identity",
                })
            }
            Activation::Relu6 => {
                return Err(OnnxError::NotATableFunction {
                    layer: li,
                    function: "Relu6",
                })
            }
        }
        check_scale(pre.scale, || format!("layer {li} pre-activation scale"))?;
    }
    Ok(())
}

/// A scale must be finite and greater than 0.
pub(crate) fn check_scale(value: f32, location: impl Fn() -> String) -> Result<(), OnnxError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(OnnxError::InvalidScale {
            location: location(),
            value,
        })
    }
}

/// The graph's doc string: what the file is, its layers and its outputs.
fn describe(mlp: &QdqMlp) -> String {
    let mut text = format!(
        "Int8 QDQ twin of the float Kiln model, the arithmetic of docs/quantization.md: MLP {}",
        mlp.layers[0].n_inputs
    );
    for layer in &mlp.layers {
        let activation = match &layer.activation {
            QdqActivation::Identity => "Identity".to_owned(),
            QdqActivation::Relu => "Relu".to_owned(),
            QdqActivation::Table { function, .. } => match function {
                Activation::LeakyRelu { alpha } => format!("LeakyRelu alpha={alpha}, table"),
                other => format!("{other:?}, table"),
            },
        };
        text.push_str(&format!(" -> {} ({activation})", layer.n_outputs));
    }
    text.push_str(match mlp.normalization {
        InputNormalization::None => "; input used as is",
        InputNormalization::Scale { .. } => "; input scaled in-graph",
        InputNormalization::Standardize { .. } => "; input standardized in-graph",
    });
    text.push_str(
        ", then quantized to int8. Weights are symmetric int8 per output channel, biases int32, \
         activations int8 per tensor; each layer is DequantizeLinear -> Gemm -> activation -> \
         QuantizeLinear. Outputs: logits (float, dequantized) and logits_q (int8), comparable \
         integer for integer with kiln-runtime's int8 logits.",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Producer;
    use crate::mlp::{decode_model, encode_model};
    use crate::proto::{
        attribute_proto::AttributeType, tensor_shape_proto::dimension::Value, type_proto,
        NodeProto, TensorProto, ValueInfoProto,
    };

    fn options(opset: i64) -> MlpExportOptions {
        MlpExportOptions {
            opset,
            with_probabilities: false,
            producer: Producer {
                name: "kiln".to_owned(),
                version: "0.1.0".to_owned(),
            },
            doc_string: "int8 test model".to_owned(),
            metadata: vec![("dataset".to_owned(), "digits".to_owned())],
        }
    }

    fn params(scale: f32, zero_point: i8) -> QuantParams {
        QuantParams { scale, zero_point }
    }

    fn layer(n_inputs: usize, n_outputs: usize, activation: QdqActivation) -> QdqLayer {
        let n = n_inputs * n_outputs;
        QdqLayer {
            n_inputs,
            n_outputs,
            weights: (0..n).map(|k| ((k * 37) % 255) as i8 / 2 - 1).collect(),
            weight_scales: (0..n_outputs).map(|o| 0.01 + 0.001 * o as f32).collect(),
            bias: (0..n_outputs).map(|o| o as i32 * 100 - 150).collect(),
            activation,
            output: params(0.05, -7),
        }
    }

    /// 3 -> 4 (Relu) -> 5 (Tanh table) -> 2 (Identity), standardized input.
    fn mlp() -> QdqMlp {
        QdqMlp {
            int16: false,
            input_frac_bits: 0,
            normalization: InputNormalization::Standardize {
                mean: vec![0.5, -1.0, 2.0],
                inv_std: vec![2.0, 0.25, 1.5],
            },
            input: params(0.02, 5),
            layers: vec![
                layer(3, 4, QdqActivation::Relu),
                layer(
                    4,
                    5,
                    QdqActivation::Table {
                        function: Activation::Tanh,
                        pre: params(0.03, 11),
                    },
                ),
                layer(5, 2, QdqActivation::Identity),
            ],
        }
    }

    fn graph(model: &ModelProto) -> &crate::proto::GraphProto {
        model.graph.as_ref().unwrap()
    }

    fn node<'a>(model: &'a ModelProto, name: &str) -> &'a NodeProto {
        graph(model)
            .node
            .iter()
            .find(|n| n.name() == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn initializer<'a>(model: &'a ModelProto, name: &str) -> &'a TensorProto {
        graph(model)
            .initializer
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("no initializer {name}"))
    }

    fn i8s(t: &TensorProto) -> Vec<i8> {
        assert_eq!(t.data_type, Some(DataType::Int8 as i32), "{}", t.name());
        t.raw_data().iter().map(|&b| b as i8).collect()
    }

    fn i32s(t: &TensorProto) -> Vec<i32> {
        assert_eq!(t.data_type, Some(DataType::Int32 as i32), "{}", t.name());
        t.raw_data()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn f32s(t: &TensorProto) -> Vec<f32> {
        assert_eq!(t.data_type, Some(DataType::Float as i32), "{}", t.name());
        t.raw_data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn type_of(info: &ValueInfoProto) -> (i32, Vec<Value>) {
        match &info.r#type.as_ref().unwrap().value {
            Some(type_proto::Value::TensorType(t)) => (
                t.elem_type.unwrap(),
                t.shape
                    .as_ref()
                    .unwrap()
                    .dim
                    .iter()
                    .map(|d| d.value.clone().unwrap())
                    .collect(),
            ),
            other => panic!("not a tensor type: {other:?}"),
        }
    }

    fn axis(node: &NodeProto) -> Option<i64> {
        node.attribute.iter().find(|a| a.name() == "axis").map(|a| {
            assert_eq!(a.r#type(), AttributeType::Int);
            a.i.unwrap()
        })
    }

    #[test]
    fn op_sequence_of_every_layer_kind() {
        let model = qdq_mlp_to_model(&mlp(), &options(13)).unwrap();
        let nodes: Vec<_> = graph(&model)
            .node
            .iter()
            .map(|n| (n.op_type(), n.name()))
            .collect();
        let layer_head = |i: usize| {
            [
                ("DequantizeLinear", format!("layer{i}_dequantize_input")),
                ("DequantizeLinear", format!("layer{i}_dequantize_weight")),
                ("DequantizeLinear", format!("layer{i}_dequantize_bias")),
                ("Gemm", format!("layer{i}_gemm")),
            ]
        };
        let mut expected: Vec<(&str, String)> = vec![
            ("Sub", "normalize_sub_mean".into()),
            ("Mul", "normalize_mul_inv_std".into()),
            ("QuantizeLinear", "input_quantize".into()),
        ];
        expected.extend(layer_head(0));
        expected.push(("Relu", "layer0_relu".into()));
        expected.push(("QuantizeLinear", "layer0_quantize_output".into()));
        expected.extend(layer_head(1));
        expected.push(("QuantizeLinear", "layer1_quantize_pre_activation".into()));
        expected.push((
            "DequantizeLinear",
            "layer1_dequantize_pre_activation".into(),
        ));
        expected.push(("Tanh", "layer1_tanh".into()));
        expected.push(("QuantizeLinear", "layer1_quantize_output".into()));
        expected.extend(layer_head(2));
        expected.push(("QuantizeLinear", "layer2_quantize_output".into()));
        expected.push(("DequantizeLinear", "logits_dequantize".into()));
        let expected: Vec<(&str, &str)> = expected.iter().map(|(o, n)| (*o, n.as_str())).collect();
        assert_eq!(nodes, expected);
        assert!(
            graph(&model).node.iter().all(|n| n.op_type() != "Softmax"),
            "no Softmax in the int8 graph"
        );
    }

    #[test]
    fn tensors_are_wired_layer_to_layer() {
        let model = qdq_mlp_to_model(&mlp(), &options(13)).unwrap();
        let wiring = |name: &str| {
            let n = node(&model, name);
            (n.input.clone(), n.output.clone())
        };
        assert_eq!(
            wiring("input_quantize"),
            (
                vec![
                    "input_standardized".into(),
                    "input_q.scale".into(),
                    "input_q.zero_point".into()
                ],
                vec!["input_q".into()]
            )
        );
        assert_eq!(
            wiring("layer0_dequantize_input").0,
            ["input_q", "input_q.scale", "input_q.zero_point"]
        );
        assert_eq!(
            wiring("layer0_dequantize_weight").0,
            [
                "layer0.weight_q",
                "layer0.weight_scale",
                "layer0.weight_zero_point"
            ]
        );
        assert_eq!(
            wiring("layer0_dequantize_bias").0,
            [
                "layer0.bias_q",
                "layer0.bias_scale",
                "layer0.bias_zero_point"
            ]
        );
        assert_eq!(
            wiring("layer0_gemm"),
            (
                vec![
                    "layer0.input".into(),
                    "layer0.weight".into(),
                    "layer0.bias".into()
                ],
                vec!["layer0.linear".into()]
            )
        );
        assert_eq!(wiring("layer0_relu").1, ["layer0.activated"]);
        assert_eq!(
            wiring("layer0_quantize_output"),
            (
                vec![
                    "layer0.activated".into(),
                    "layer0.output_q.scale".into(),
                    "layer0.output_q.zero_point".into()
                ],
                vec!["layer0.output_q".into()]
            )
        );
        // The next layer dequantizes with the very same parameter tensors.
        assert_eq!(
            wiring("layer1_dequantize_input").0,
            [
                "layer0.output_q",
                "layer0.output_q.scale",
                "layer0.output_q.zero_point"
            ]
        );
        assert_eq!(
            wiring("layer1_quantize_pre_activation"),
            (
                vec![
                    "layer1.linear".into(),
                    "layer1.pre_activation_q.scale".into(),
                    "layer1.pre_activation_q.zero_point".into()
                ],
                vec!["layer1.pre_activation_q".into()]
            )
        );
        assert_eq!(
            wiring("layer1_tanh"),
            (
                vec!["layer1.pre_activation".into()],
                vec!["layer1.activated".into()]
            )
        );
        // Identity: the Gemm output is quantized directly, to `logits_q`.
        assert_eq!(
            wiring("layer2_quantize_output"),
            (
                vec![
                    "layer2.linear".into(),
                    "logits_q.scale".into(),
                    "logits_q.zero_point".into()
                ],
                vec!["logits_q".into()]
            )
        );
        assert_eq!(
            wiring("logits_dequantize"),
            (
                vec![
                    "logits_q".into(),
                    "logits_q.scale".into(),
                    "logits_q.zero_point".into()
                ],
                vec!["logits".into()]
            )
        );
    }

    #[test]
    fn per_channel_dequantizations_use_axis_0_and_the_rest_per_tensor() {
        let model = qdq_mlp_to_model(&mlp(), &options(13)).unwrap();
        for n in &graph(&model).node {
            let per_channel =
                n.name().ends_with("_dequantize_weight") || n.name().ends_with("_dequantize_bias");
            match n.op_type() {
                "DequantizeLinear" | "QuantizeLinear" if per_channel => {
                    assert_eq!(axis(n), Some(0), "{}", n.name());
                    assert_eq!(n.attribute.len(), 1, "{}", n.name());
                }
                "DequantizeLinear" | "QuantizeLinear" => {
                    assert!(n.attribute.is_empty(), "{}", n.name());
                    // Per-tensor parameters are rank-0 tensors.
                    assert!(initializer(&model, &n.input[1]).dims.is_empty());
                    assert!(initializer(&model, &n.input[2]).dims.is_empty());
                }
                "Gemm" => {
                    let a = &n.attribute[..];
                    assert_eq!(a.len(), 1);
                    assert_eq!((a[0].name(), a[0].i), ("transB", Some(1)));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn initializers_hold_the_parameters_with_their_types() {
        let net = mlp();
        let model = qdq_mlp_to_model(&net, &options(13)).unwrap();
        let mut s_in = net.input.scale;
        for (i, l) in net.layers.iter().enumerate() {
            let t = initializer(&model, &format!("layer{i}.weight_q"));
            assert_eq!(t.dims, [l.n_outputs as i64, l.n_inputs as i64]);
            assert_eq!(i8s(t), l.weights);
            let t = initializer(&model, &format!("layer{i}.weight_scale"));
            assert_eq!(t.dims, [l.n_outputs as i64]);
            assert_eq!(f32s(t), l.weight_scales);
            let t = initializer(&model, &format!("layer{i}.weight_zero_point"));
            assert_eq!(t.dims, [l.n_outputs as i64]);
            assert_eq!(i8s(t), vec![0; l.n_outputs]);
            let t = initializer(&model, &format!("layer{i}.bias_q"));
            assert_eq!(t.dims, [l.n_outputs as i64]);
            assert_eq!(i32s(t), l.bias);
            let t = initializer(&model, &format!("layer{i}.bias_scale"));
            let want: Vec<f32> = l.weight_scales.iter().map(|s| s_in * s).collect();
            assert_eq!(f32s(t), want);
            let t = initializer(&model, &format!("layer{i}.bias_zero_point"));
            assert_eq!(i32s(t), vec![0; l.n_outputs]);
            s_in = l.output.scale;
        }
        assert_eq!(f32s(initializer(&model, "input_q.scale")), [0.02]);
        assert_eq!(i8s(initializer(&model, "input_q.zero_point")), [5]);
        assert_eq!(
            f32s(initializer(&model, "layer1.pre_activation_q.scale")),
            [0.03]
        );
        assert_eq!(
            i8s(initializer(&model, "layer1.pre_activation_q.zero_point")),
            [11]
        );
        assert_eq!(f32s(initializer(&model, "logits_q.scale")), [0.05]);
        assert_eq!(i8s(initializer(&model, "logits_q.zero_point")), [-7]);
        // The float normalisation is the float model's.
        assert_eq!(f32s(initializer(&model, "input_inv_std")), [2.0, 0.25, 1.5]);
    }

    #[test]
    fn outputs_are_float_logits_then_int8_logits() {
        let model = qdq_mlp_to_model(&mlp(), &options(13)).unwrap();
        let g = graph(&model);
        let n = Value::DimParam("N".to_owned());
        assert_eq!(g.input.len(), 1);
        assert_eq!(g.input[0].name(), "input");
        assert_eq!(
            type_of(&g.input[0]),
            (DataType::Float as i32, vec![n.clone(), Value::DimValue(3)])
        );
        let outputs: Vec<_> = g.output.iter().map(|o| (o.name(), type_of(o))).collect();
        assert_eq!(
            outputs,
            [
                (
                    "logits",
                    (DataType::Float as i32, vec![n.clone(), Value::DimValue(2)])
                ),
                (
                    "logits_q",
                    (DataType::Int8 as i32, vec![n, Value::DimValue(2)])
                ),
            ]
        );
        assert!(g.output[1].doc_string().contains("kiln-runtime"));
        assert!(g
            .doc_string()
            .starts_with("Int8 QDQ twin of the float Kiln model"));
        assert!(g
            .doc_string()
            .contains("MLP 3 -> 4 (Relu) -> 5 (Tanh, table) -> 2 (Identity)"));
        assert!(g.doc_string().contains("logits_q (int8)"));
    }

    #[test]
    fn header_follows_the_opset_and_the_options() {
        for (opset, ir) in [(13, 7), (17, 8), (21, 10)] {
            let model = qdq_mlp_to_model(&mlp(), &options(opset)).unwrap();
            assert_eq!(model.ir_version, Some(ir));
            assert_eq!(model.opset_import.len(), 1);
            assert_eq!(model.opset_import[0].domain(), "");
            assert_eq!(model.opset_import[0].version, Some(opset));
            assert_eq!(model.domain(), "ai.kiln");
            assert_eq!(model.doc_string(), "int8 test model");
            assert_eq!(model.producer_name(), "kiln");
            assert_eq!(model.metadata_props.len(), 1);
            assert_eq!(decode_model(&encode_model(&model)).unwrap(), model);
        }
    }

    #[test]
    fn input_fraction_bits_round_the_input_to_the_device_fixed_point_first() {
        let mut net = mlp();
        net.input_frac_bits = 15;
        let model = qdq_mlp_to_model(&net, &options(13)).unwrap();
        let ops: Vec<(&str, &str)> = graph(&model).node[..4]
            .iter()
            .map(|n| (n.op_type(), n.name()))
            .collect();
        assert_eq!(
            ops,
            [
                ("Mul", "input_fixed_scale"),
                ("Round", "input_fixed_round"),
                ("Mul", "input_fixed_step"),
                ("Sub", "normalize_sub_mean"),
            ]
        );
        assert_eq!(node(&model, "input_fixed_scale").input[0], "input");
        assert_eq!(node(&model, "normalize_sub_mean").input[0], "input_fixed");
        assert_eq!(f32s(initializer(&model, "input_fixed.scale")), [32768.0]);
        assert_eq!(
            f32s(initializer(&model, "input_fixed.step")),
            [1.0 / 32768.0]
        );
        // Integer data: no rounding nodes at all.
        net.input_frac_bits = 0;
        let model = qdq_mlp_to_model(&net, &options(13)).unwrap();
        assert_eq!(graph(&model).node[0].name(), "normalize_sub_mean");
        net.input_frac_bits = 25;
        assert_eq!(
            qdq_mlp_to_model(&net, &options(13))
                .unwrap_err()
                .to_string(),
            "input fraction bits 25: at most 24"
        );
    }

    #[test]
    fn scale_and_no_normalization_and_leaky_relu_and_sigmoid() {
        let mut net = mlp();
        net.normalization = InputNormalization::Scale { scale: 0.5 };
        net.layers[0].activation = QdqActivation::Table {
            function: Activation::LeakyRelu { alpha: 0.125 },
            pre: params(0.1, 0),
        };
        net.layers[1].activation = QdqActivation::Table {
            function: Activation::Sigmoid,
            pre: params(0.1, 0),
        };
        let model = qdq_mlp_to_model(&net, &options(13)).unwrap();
        assert_eq!(node(&model, "input_quantize").input[0], "input_scaled");
        let leaky = node(&model, "layer0_leaky_relu");
        assert_eq!(leaky.op_type(), "LeakyRelu");
        assert_eq!(
            (leaky.attribute[0].name(), leaky.attribute[0].f),
            ("alpha", Some(0.125))
        );
        assert_eq!(node(&model, "layer1_sigmoid").op_type(), "Sigmoid");

        net.normalization = InputNormalization::None;
        let model = qdq_mlp_to_model(&net, &options(13)).unwrap();
        assert_eq!(graph(&model).node[0].name(), "input_quantize");
        assert_eq!(graph(&model).node[0].input[0], "input");
    }

    fn error(net: &QdqMlp) -> String {
        qdq_mlp_to_model(net, &options(13)).unwrap_err().to_string()
    }

    #[test]
    fn shape_errors_name_layer_and_field() {
        let mut net = mlp();
        net.layers[1].weights.pop();
        assert_eq!(
            error(&net),
            "layer 1: weights have 19 values, expected 5 outputs x 4 inputs = 20"
        );
        let mut net = mlp();
        net.layers[2].weight_scales.push(1.0);
        assert_eq!(
            error(&net),
            "layer 2: weight_scales has 3 values, expected 2 (one per output)"
        );
        let mut net = mlp();
        net.layers[0].bias.pop();
        assert_eq!(error(&net), "layer 0: bias has 3 values, expected 4");
        let mut net = mlp();
        net.layers[2] = layer(4, 2, QdqActivation::Identity);
        assert_eq!(
            error(&net),
            "layer 2: takes 4 inputs but layer 1 produces 5"
        );
        let mut net = mlp();
        net.layers[0] = layer(3, 0, QdqActivation::Identity);
        assert!(
            matches!(
                qdq_mlp_to_model(&net, &options(13)),
                Err(OnnxError::EmptyLayer { layer: 0, .. })
            ),
            "{}",
            error(&net)
        );
        let mut net = mlp();
        net.layers.clear();
        assert!(matches!(
            qdq_mlp_to_model(&net, &options(13)),
            Err(OnnxError::NoLayers)
        ));
        let mut net = mlp();
        net.normalization = InputNormalization::Standardize {
            mean: vec![0.0; 2],
            inv_std: vec![1.0; 3],
        };
        assert_eq!(
            error(&net),
            "input normalization: mean has 2 values, expected 3 (one per input feature)"
        );
    }

    #[test]
    fn weights_must_be_symmetric_int8() {
        let mut net = mlp();
        net.layers[1].weights[7] = -128;
        assert_eq!(
            error(&net),
            "layer 1 weights[7] is -128, expected a value in [-127, 127] (weights are symmetric int8)"
        );
        net.layers[1].weights[7] = -127;
        net.layers[1].weights[8] = 127;
        qdq_mlp_to_model(&net, &options(13)).unwrap();
    }

    #[test]
    fn scales_must_be_finite_and_positive() {
        let mut net = mlp();
        net.input.scale = 0.0;
        assert_eq!(
            error(&net),
            "input quantization scale is 0, expected a finite scale greater than 0"
        );
        let mut net = mlp();
        net.layers[1].weight_scales[3] = -0.5;
        assert_eq!(
            error(&net),
            "layer 1 weight_scales[3] is -0.5, expected a finite scale greater than 0"
        );
        let mut net = mlp();
        net.layers[2].output.scale = f32::NAN;
        assert_eq!(
            error(&net),
            "layer 2 output scale is NaN, expected a finite scale greater than 0"
        );
        let mut net = mlp();
        net.layers[1].activation = QdqActivation::Table {
            function: Activation::Sigmoid,
            pre: params(f32::INFINITY, 0),
        };
        assert_eq!(
            error(&net),
            "layer 1 pre-activation scale is inf, expected a finite scale greater than 0"
        );
        // Valid factors whose f32 product underflows to 0.
        let mut net = mlp();
        net.layers[0].output.scale = 1e-30;
        net.layers[1].weight_scales[2] = 1e-20;
        let message = error(&net);
        assert!(
            message
                == "layer 1 bias scale[2] (input scale 1e-30 x weight_scales[2] 1e-20) is 0, expected a finite scale greater than 0",
            "{message}"
        );
    }

    #[test]
    fn table_functions_are_checked() {
        for (function, name) in [
            (Activation::Relu, "Relu"),
            (Activation::Identity, "Identity"),
        ] {
            let mut net = mlp();
            net.layers[1].activation = QdqActivation::Table {
                function,
                pre: params(0.1, 0),
            };
            assert_eq!(
                error(&net),
                format!(
                    "layer 1: a table activation must be Tanh, Sigmoid or LeakyRelu, not {name}"
                )
            );
        }
        let mut net = mlp();
        net.layers[0].activation = QdqActivation::Table {
            function: Activation::LeakyRelu { alpha: f32::NAN },
            pre: params(0.1, 0),
        };
        assert_eq!(
            error(&net),
            "layer 0 LeakyRelu alpha is NaN, expected a finite number"
        );
    }

    #[test]
    fn options_are_checked() {
        for opset in [12, 22] {
            assert!(matches!(
                qdq_mlp_to_model(&mlp(), &options(opset)),
                Err(OnnxError::UnsupportedOpset { opset: o }) if o == opset
            ));
        }
        let mut opts = options(13);
        opts.with_probabilities = true;
        let err = qdq_mlp_to_model(&mlp(), &opts).unwrap_err();
        assert!(matches!(err, OnnxError::QdqProbabilities), "{err:?}");
        let mut opts = options(13);
        opts.metadata
            .push(("dataset".to_owned(), "again".to_owned()));
        assert_eq!(
            qdq_mlp_to_model(&mlp(), &opts).unwrap_err().to_string(),
            "metadata key `dataset` appears more than once"
        );
    }
}
