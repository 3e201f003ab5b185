//! Int8 QDQ export of a convolutional layer graph: the int8 twin of
//! [`crate::cnn`], with the arithmetic of `docs/layer-graph.md`.
//!
//! [`QdqCnn`] is the one set of numbers the quantizer derives (int8 weights,
//! per-channel weight scales, int32 biases, every tensor's int8 parameters);
//! the runtime blob and this graph are both built from it. Scales that
//! follow from others are not stored: a bias's scale is the layer's input
//! scale times its weight scale, and `MaxPool2d` and `Flatten` keep their
//! input's parameters.
//!
//! The graph, in standard `QuantizeLinear` / `DequantizeLinear` form:
//!
//! - `input` FLOAT `[N, C, H, W]` (`[N, C, L]` for Conv1D) is normalised as
//!   in the float graph, then quantized to `input_q`;
//! - `Conv2d`, `DepthwiseConv2d` and `Dense` dequantize their int8 input,
//!   their int8 weights (symmetric, one scale per output channel, `axis = 0`)
//!   and their int32 bias (scale `s_in * s_w[o]`), run the float `Conv`
//!   (explicit pads, `group`) or `Gemm`, apply the activation exactly as
//!   [`crate::qdq`] does (ReLU before the output quantization, tables between
//!   a quantization to the pre-activation parameters and the output's), and
//!   quantize to their int8 output;
//! - `MaxPool2d` runs between a `DequantizeLinear` and a `QuantizeLinear`
//!   with the input's scale and zero point (the same initializers), so it is
//!   the maximum of the int8 window;
//! - `AvgPool2d` and `GlobalAvgPool` run `AveragePool` / `GlobalAveragePool`
//!   between a `DequantizeLinear` and a `QuantizeLinear` to their own output
//!   parameters;
//! - `Flatten` (explicit, or inserted before a `Dense` that reads a spatial
//!   value) reshapes the int8 tensor itself;
//! - `Tap` emits nothing: its value is the earlier value's int8 tensor, with
//!   that tensor's scale and zero point, which the next layer reads;
//! - `Add` dequantizes both int8 operands, each with its own value's
//!   parameters (those of the layer that quantized it), adds them in float,
//!   applies the activation as the affine layers do and quantizes to its
//!   int8 output. The device computes it in integers:
//!   `acc = W_a (a - zp_a) + W_b (b - zp_b)` with
//!   `W_x = round(s_x / max(s_a, s_b) 2^16)`, then
//!   `y = clamp(sat8(zp_out + rq(acc, M, t)), lo, 127)` with
//!   `M / 2^t = max(s_a, s_b) / (2^16 s_out)` (`docs/layer-graph.md`);
//! - `logits` (FLOAT) dequantizes the last int8 tensor, `logits_q` (INT8) is
//!   that tensor.
//!
//! ```
//! use kiln_onnx::builder::Producer;
//! use kiln_onnx::mlp::{InputNormalization, MlpExportOptions};
//! use kiln_onnx::qdq::{QdqActivation, QdqLayer, QuantParams};
//! use kiln_onnx::qdq_cnn::{qdq_cnn_to_model, QdqCnn, QdqCnnLayer, QdqConv};
//!
//! let params = |scale, zero_point| QuantParams { scale, zero_point };
//! let cnn = QdqCnn {
//!     input_frac_bits: 0,
//!     input_shape: [1, 4, 4],
//!     spatial_rank: 2,
//!     normalization: InputNormalization::Scale { scale: 1.0 / 255.0 },
//!     input: params(1.0 / 255.0, -128),
//!     layers: vec![
//!         QdqCnnLayer::Conv2d(QdqConv {
//!             out_channels: 2,
//!             in_channels: 1,
//!             kernel: [3, 3],
//!             stride: [1, 1],
//!             pads: [1, 1, 1, 1],
//!             weights: vec![64; 18],
//!             weight_scales: vec![0.01, 0.02],
//!             bias: vec![100, -50],
//!             activation: QdqActivation::Relu,
//!             output: params(0.05, -128),
//!         }),
//!         QdqCnnLayer::MaxPool2d { kernel: [2, 2], stride: [2, 2] },
//!         QdqCnnLayer::Dense(QdqLayer {
//!             n_inputs: 8,
//!             n_outputs: 3,
//!             weights: vec![-20; 24],
//!             weight_scales: vec![0.01; 3],
//!             bias: vec![0; 3],
//!             activation: QdqActivation::Identity,
//!             output: params(0.1, 0),
//!         }),
//!     ],
//! };
//! let options = MlpExportOptions {
//!     opset: 13,
//!     with_probabilities: false,
//!     producer: Producer { name: "kiln".into(), version: "0.1.0".into() },
//!     doc_string: "A small int8 CNN.".into(),
//!     metadata: Vec::new(),
//! };
//! let model = qdq_cnn_to_model(&cnn, &options)?;
//! let outputs: Vec<_> = model.graph.unwrap().output.iter().map(|o| o.name().to_owned()).collect();
//! assert_eq!(outputs, ["logits", "logits_q"]);
//! # Ok::<(), kiln_onnx::OnnxError>(())
//! ```

use crate::builder::{attr_int, ir_version_for_opset, Dim, GraphBuilder};
use crate::cnn::{
    add_conv, add_input, add_residual, add_shape_node, check_shapes, conv_weight_dims,
    flatten_if_spatial, sample_dims, ConvGeometry, Geometry, Shape,
};
use crate::mlp::{
    add_input_fixed_point, add_normalization_from, batch_dim, build_model, dim, validate_metadata,
    validate_normalization, InputNormalization, MlpExportOptions,
};
use crate::proto::ModelProto;
use crate::qdq::{
    add_activation_quantize, add_affine, add_dequantize_input, add_input_quantize,
    add_int8_outputs, check_scale, validate_activation, validate_affine, Affine, QdqActivation,
    QdqLayer, QuantParams, Quantized, LOGITS_Q_NAME,
};
use crate::OnnxError;

/// A whole int8 CNN: normalisation, input quantization and layers.
#[derive(Debug, Clone, PartialEq)]
pub struct QdqCnn {
    /// One sample's shape `[c, h, w]`, as in
    /// [`CnnModel::input_shape`](crate::cnn::CnnModel::input_shape).
    pub input_shape: [usize; 3],
    /// 2, or 1 for a Conv1D network, as in
    /// [`CnnModel::spatial_rank`](crate::cnn::CnnModel::spatial_rank).
    pub spatial_rank: usize,
    /// As [`QdqMlp::input_frac_bits`](crate::qdq::QdqMlp::input_frac_bits).
    pub input_frac_bits: u8,
    /// The float model's normalisation, applied in float before quantizing.
    pub normalization: InputNormalization,
    /// Parameters of the quantized, normalised input.
    pub input: QuantParams,
    /// The layers, first to last; the last one's output is the logits.
    pub layers: Vec<QdqCnnLayer>,
}

/// One int8 layer of a [`QdqCnn`]; the sizes and layouts of
/// [`CnnLayer`](crate::cnn::CnnLayer), weights in ONNX order (`[O][C][kh][kw]`;
/// the blob's OHWI order is the baker's business).
#[derive(Debug, Clone, PartialEq)]
pub enum QdqCnnLayer {
    /// An int8 dense layer, reading its input flattened in CHW order.
    Dense(QdqLayer),
    /// An int8 convolution.
    Conv2d(QdqConv),
    /// An int8 depthwise convolution (multiplier 1, `group = channels`):
    /// `in_channels == out_channels`, weights `[channels][1][kh][kw]`.
    DepthwiseConv2d(QdqConv),
    /// The maximum of each window; the output keeps the input's parameters.
    MaxPool2d {
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
    },
    /// The mean of each window, requantized to `output`.
    AvgPool2d {
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
        /// Parameters of the layer's int8 output.
        output: QuantParams,
    },
    /// The mean of each channel, requantized to `output`.
    GlobalAvgPool {
        /// Parameters of the layer's int8 output.
        output: QuantParams,
    },
    /// Reshapes the int8 value to a vector in CHW order; parameters kept.
    Flatten,
    /// Value `value`, computed earlier: the next layer reads its int8 tensor
    /// and parameters (no ONNX node), as
    /// [`CnnLayer::Tap`](crate::cnn::CnnLayer::Tap).
    Tap {
        /// The value the next layer reads: 0 (the input) up to this layer's
        /// own index.
        value: usize,
    },
    /// DequantizeLinear of both int8 inputs, Add, the activation, QuantizeLinear to `output`.
    ///
    /// The inputs are the previous value and value `other`, each dequantized
    /// with its own parameters; both of one shape, as
    /// [`CnnLayer::Add`](crate::cnn::CnnLayer::Add).
    Add {
        /// The earlier value added to the previous one.
        other: usize,
        /// Applied before the output quantization (ReLU, or a table).
        activation: QdqActivation,
        /// Parameters of the layer's int8 output.
        output: QuantParams,
    },
}

/// One int8 convolution, full or depthwise, as `docs/layer-graph.md` defines
/// it (weights in ONNX's OIHW order; the blob's OHWI order is the baker's
/// business).
#[derive(Debug, Clone, PartialEq)]
pub struct QdqConv {
    /// Output channels.
    pub out_channels: usize,
    /// Input channels (equal to `out_channels` for a depthwise convolution).
    pub in_channels: usize,
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`; a padded tap holds the real value 0.
    pub pads: [usize; 4],
    /// `[out_channels][in_channels / group][kh][kw]`, symmetric, in
    /// `[-127, 127]`.
    pub weights: Vec<i8>,
    /// One scale per output channel.
    pub weight_scales: Vec<f32>,
    /// Int32 biases, scale `s_in * weight_scales[o]`, zero point 0.
    pub bias: Vec<i32>,
    /// Applied before the output quantization.
    pub activation: QdqActivation,
    /// Parameters of the layer's int8 output.
    pub output: QuantParams,
}

impl QdqCnnLayer {
    /// The layer type's name, as `docs/layer-graph.md` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dense(_) => "Dense",
            Self::Conv2d(_) => "Conv2d",
            Self::DepthwiseConv2d(_) => "DepthwiseConv2d",
            Self::MaxPool2d { .. } => "MaxPool2d",
            Self::AvgPool2d { .. } => "AvgPool2d",
            Self::GlobalAvgPool { .. } => "GlobalAvgPool",
            Self::Flatten => "Flatten",
            Self::Tap { .. } => "Tap",
            Self::Add { .. } => "Add",
        }
    }

    /// A convolution's parameters and its `group` (1, or the channel count
    /// for a depthwise convolution).
    fn conv(&self) -> Option<(&QdqConv, ConvGeometry)> {
        let (conv, group) = match self {
            Self::Conv2d(conv) => (conv, 1),
            Self::DepthwiseConv2d(conv) => (conv, conv.in_channels),
            _ => return None,
        };
        let geometry = ConvGeometry {
            out_channels: conv.out_channels,
            in_channels: conv.in_channels,
            group,
            kernel: conv.kernel,
            stride: conv.stride,
            pads: conv.pads,
        };
        Some((conv, geometry))
    }

    fn geometry(&self) -> Geometry {
        match self {
            Self::Dense(layer) => Geometry::Dense {
                n_inputs: layer.n_inputs,
                n_outputs: layer.n_outputs,
                n_weights: layer.weights.len(),
                n_biases: layer.bias.len(),
            },
            Self::Conv2d(_) | Self::DepthwiseConv2d(_) => {
                let (conv, geometry) = self.conv().expect("a convolution");
                Geometry::Conv {
                    conv: geometry,
                    n_weights: conv.weights.len(),
                    n_biases: conv.bias.len(),
                }
            }
            Self::MaxPool2d { kernel, stride } => Geometry::Pool {
                kernel: *kernel,
                stride: *stride,
                max: true,
            },
            Self::AvgPool2d { kernel, stride, .. } => Geometry::Pool {
                kernel: *kernel,
                stride: *stride,
                max: false,
            },
            Self::GlobalAvgPool { .. } => Geometry::GlobalAvgPool,
            Self::Flatten => Geometry::Flatten,
            Self::Tap { value } => Geometry::Tap { value: *value },
            Self::Add { other, .. } => Geometry::Add { other: *other },
        }
    }
}

/// Builds the int8 QDQ ONNX model of `cnn`.
///
/// The graph takes `input` FLOAT `[N, C, H, W]` (`[N, C, L]` for Conv1D; raw
/// values) and returns `logits` FLOAT `[N, K]` and `logits_q` INT8 `[N, K]`.
/// Everything is validated first: the shape checks of
/// [`cnn_to_model`](crate::cnn::cnn_to_model), one weight scale per output
/// channel, finite positive scales (including every bias scale), symmetric
/// weights, table functions, normalisation, opset and metadata keys.
/// `options.with_probabilities` must be false.
pub fn qdq_cnn_to_model(cnn: &QdqCnn, options: &MlpExportOptions) -> Result<ModelProto, OnnxError> {
    let shapes = validate(cnn, options)?;
    let rank = cnn.spatial_rank;

    let mut graph = GraphBuilder::new("kiln_cnn_int8");
    graph.doc_string(&describe(cnn, &shapes));
    let sample = sample_dims(rank, cnn.input_shape);
    add_input(&mut graph, &sample);
    let fixed = add_input_fixed_point(&mut graph, cnn.input_frac_bits)?;
    let normalized = add_normalization_from(&mut graph, &fixed, &cnn.normalization, &sample)?;
    // Each value's int8 tensor and parameters: value 0 is `input_q`, layer
    // `i` writes value `i + 1` (a Tap's is the value it names).
    let mut values = vec![add_input_quantize(
        &mut graph,
        &normalized,
        cnn.input,
        false,
    )?];

    for (i, layer) in cnn.layers.iter().enumerate() {
        let out_name = if i + 1 == cnn.layers.len() {
            LOGITS_Q_NAME.to_owned()
        } else {
            format!("layer{i}.output_q")
        };
        let q_in = &values[i];
        let q_out = match layer {
            QdqCnnLayer::Dense(dense) => {
                let flat = flatten_if_spatial(&mut graph, i, shapes[i], &q_in.tensor);
                let affine = Affine {
                    weights: &dense.weights,
                    weight_dims: vec![dim(dense.n_outputs), dim(dense.n_inputs)],
                    weight_scales: &dense.weight_scales,
                    bias: &dense.bias,
                    activation: &dense.activation,
                    output: dense.output,
                };
                let gemm = |graph: &mut GraphBuilder, inputs: [&str; 3], linear: &str| {
                    let name = format!("layer{i}_gemm");
                    let transposed = vec![attr_int("transB", 1)];
                    graph.node("Gemm", &name, &inputs, &[linear], transposed);
                };
                add_affine(
                    &mut graph,
                    i,
                    &q_in.renamed(&flat),
                    &affine,
                    &out_name,
                    gemm,
                )?
            }
            QdqCnnLayer::Conv2d(_) | QdqCnnLayer::DepthwiseConv2d(_) => {
                let (conv, geometry) = layer.conv().expect("a convolution");
                let affine = Affine {
                    weights: &conv.weights,
                    weight_dims: conv_weight_dims(rank, &geometry),
                    weight_scales: &conv.weight_scales,
                    bias: &conv.bias,
                    activation: &conv.activation,
                    output: conv.output,
                };
                add_affine(
                    &mut graph,
                    i,
                    q_in,
                    &affine,
                    &out_name,
                    |graph, inputs, linear| {
                        add_conv(graph, i, rank, &geometry, inputs, linear);
                    },
                )?
            }
            QdqCnnLayer::Flatten => {
                add_shape_node(
                    &mut graph,
                    i,
                    rank,
                    Geometry::Flatten,
                    &q_in.tensor,
                    &out_name,
                );
                q_in.renamed(&out_name)
            }
            QdqCnnLayer::MaxPool2d { .. }
            | QdqCnnLayer::AvgPool2d { .. }
            | QdqCnnLayer::GlobalAvgPool { .. } => {
                let x = add_dequantize_input(&mut graph, i, q_in);
                let pooled = format!("layer{i}.pooled");
                add_shape_node(&mut graph, i, rank, layer.geometry(), &x, &pooled);
                let q_out = match layer {
                    QdqCnnLayer::AvgPool2d { output, .. }
                    | QdqCnnLayer::GlobalAvgPool { output } => {
                        Quantized::new(&mut graph, &out_name, *output, q_in.int16)?
                    }
                    // The maximum of int8 values is one of them: same parameters.
                    _ => q_in.renamed(&out_name),
                };
                graph.node(
                    "QuantizeLinear",
                    &format!("layer{i}_quantize_output"),
                    &[&pooled, &q_out.scale, &q_out.zero_point],
                    &[&q_out.tensor],
                    Vec::new(),
                );
                q_out
            }
            // No node: the next layer reads the earlier int8 tensor.
            QdqCnnLayer::Tap { value } => values[*value].clone(),
            QdqCnnLayer::Add {
                other,
                activation,
                output,
            } => {
                let previous = add_dequantize_input(&mut graph, i, q_in);
                let q_other = &values[*other];
                let other_value = format!("layer{i}.other");
                graph.node_with_doc(
                    "DequantizeLinear",
                    &format!("layer{i}_dequantize_other"),
                    &[&q_other.tensor, &q_other.scale, &q_other.zero_point],
                    &[&other_value],
                    Vec::new(),
                    &format!(
                        "The residual operand, value {other}, with the parameters it was \
                         quantized to."
                    ),
                );
                let sum = format!("layer{i}.linear");
                add_residual(&mut graph, i, [&previous, &other_value], &sum);
                let int16 = q_in.int16;
                add_activation_quantize(&mut graph, i, sum, activation, *output, int16, &out_name)?
            }
        };
        values.push(q_out);
    }

    let n_out = shapes[shapes.len() - 1].len();
    let last = &values[values.len() - 1];
    add_int8_outputs(&mut graph, last, &[batch_dim(), Dim::Fixed(dim(n_out))]);
    build_model(graph, options)
}

/// Validates the model and returns the shape of the value each layer reads,
/// followed by the output's.
fn validate(cnn: &QdqCnn, options: &MlpExportOptions) -> Result<Vec<Shape>, OnnxError> {
    ir_version_for_opset(options.opset)?;
    if options.with_probabilities {
        return Err(OnnxError::QdqProbabilities);
    }
    let layers: Vec<_> = cnn
        .layers
        .iter()
        .map(|l| (l.kind(), l.geometry()))
        .collect();
    for (li, layer) in cnn.layers.iter().enumerate() {
        if let QdqCnnLayer::DepthwiseConv2d(conv) = layer {
            if conv.in_channels != conv.out_channels {
                return Err(OnnxError::CnnLayer {
                    layer: li,
                    kind: layer.kind(),
                    reason: format!(
                        "has {} input and {} output channels; a depthwise convolution has one \
                         output channel per input channel",
                        conv.in_channels, conv.out_channels
                    ),
                });
            }
        }
    }
    let shapes = check_shapes(cnn.input_shape, cnn.spatial_rank, &layers)?;
    check_scale(cnn.input.scale, || "input quantization scale".to_owned())?;

    // Each value's scale: value 0 is the input, layer `li` writes value
    // `li + 1`; the shape checks above proved every Tap and Add reads an
    // earlier value.
    let mut scales = vec![cnn.input.scale];
    for (li, layer) in cnn.layers.iter().enumerate() {
        let s_in = scales[li];
        let s_out = match layer {
            QdqCnnLayer::Dense(dense) => {
                let (weights, weight_scales) = (&dense.weights, &dense.weight_scales);
                let (activation, output) = (&dense.activation, dense.output);
                validate_affine(
                    li,
                    weights,
                    weight_scales,
                    dense.n_outputs,
                    s_in,
                    activation,
                    output,
                )?;
                output.scale
            }
            QdqCnnLayer::Conv2d(conv) | QdqCnnLayer::DepthwiseConv2d(conv) => {
                let (weights, weight_scales) = (&conv.weights, &conv.weight_scales);
                let (activation, output) = (&conv.activation, conv.output);
                validate_affine(
                    li,
                    weights,
                    weight_scales,
                    conv.out_channels,
                    s_in,
                    activation,
                    output,
                )?;
                output.scale
            }
            QdqCnnLayer::AvgPool2d { output, .. } | QdqCnnLayer::GlobalAvgPool { output } => {
                check_scale(output.scale, || format!("layer {li} output scale"))?;
                output.scale
            }
            QdqCnnLayer::MaxPool2d { .. } | QdqCnnLayer::Flatten => s_in,
            QdqCnnLayer::Tap { value } => scales[*value],
            QdqCnnLayer::Add {
                activation, output, ..
            } => {
                validate_activation(li, activation)?;
                check_scale(output.scale, || format!("layer {li} output scale"))?;
                output.scale
            }
        };
        scales.push(s_out);
    }

    validate_normalization(&cnn.normalization, cnn.input_shape.iter().product())?;
    validate_metadata(options)?;
    Ok(shapes)
}

/// The graph's doc string: what the file is, its layers and its outputs.
fn describe(cnn: &QdqCnn, shapes: &[Shape]) -> String {
    let [c, h, w] = cnn.input_shape;
    let mut text = format!(
        "Int8 QDQ twin of the float Kiln CNN, the arithmetic of docs/layer-graph.md: {c}x{h}x{w}"
    );
    for (layer, shape) in cnn.layers.iter().zip(&shapes[1..]) {
        let size = match *shape {
            Shape::Spatial { c, h, w } => format!("{c}x{h}x{w}"),
            Shape::Flat(n) => n.to_string(),
        };
        let note = match layer {
            QdqCnnLayer::Tap { value } => format!(" of value {value}"),
            QdqCnnLayer::Add { other, .. } => format!(" with value {other}"),
            _ => String::new(),
        };
        text.push_str(&format!(" -> {}{note} {size}", layer.kind()));
    }
    text.push_str(
        "; weights symmetric int8 per output channel, biases int32, activations int8 per \
         tensor; each Conv / Gemm is DequantizeLinear -> op -> activation -> QuantizeLinear, \
         pools run between DequantizeLinear and QuantizeLinear, a residual Add between the \
         DequantizeLinear of both operands and a QuantizeLinear. Outputs: logits (float, \
         dequantized) and logits_q (int8).",
    );
    text
}
