//! Float export of a convolutional layer graph (`docs/layer-graph.md`).
//!
//! The trainer converts its layers into the neutral [`CnnModel`]; this module
//! validates it and writes the ONNX graph:
//!
//! - `input` FLOAT `[N, C, H, W]` (or `[N, C, L]` for a Conv1D network,
//!   `spatial_rank == 1`), one sample in CHW order;
//! - the normalisation nodes of [`crate::mlp`], the per-feature vectors
//!   stored as `[C, H, W]` (or `[C, L]`) and broadcast over the batch;
//! - per layer: `Conv` (explicit `pads`, `strides`, `kernel_shape`, `group`;
//!   never `auto_pad` or dilations) followed by its activation node,
//!   `MaxPool`, `AveragePool` (valid, no padding), `GlobalAveragePool`,
//!   `Flatten` (axis 1), or `Gemm` (`transB = 1`) followed by its
//!   activation. A `Flatten` is inserted before a `Dense` that reads a
//!   spatial value, which it flattens in CHW order;
//! - skip connections: layer `k` writes value `k + 1` (value 0 is the
//!   input). A `Tap` emits no node: its value is an earlier value's tensor,
//!   which the next layer reads. An `Add` emits `Add` of the previous value's
//!   tensor and an earlier value's, then its activation;
//! - `logits` FLOAT `[N, K]` and optionally `probabilities` (`Softmax`).
//!
//! ```
//! use kiln_onnx::builder::Producer;
//! use kiln_onnx::cnn::{cnn_to_model, CnnLayer, CnnModel};
//! use kiln_onnx::mlp::{Activation, DenseLayer, InputNormalization, MlpExportOptions};
//!
//! let model = CnnModel {
//!     input_shape: [1, 4, 4],
//!     spatial_rank: 2,
//!     layers: vec![
//!         CnnLayer::Conv2d {
//!             out_channels: 2,
//!             in_channels: 1,
//!             kernel: [3, 3],
//!             stride: [1, 1],
//!             pads: [1, 1, 1, 1],
//!             weights: vec![0.1; 2 * 9],
//!             bias: vec![0.0, 0.5],
//!             activation: Activation::Relu,
//!         },
//!         CnnLayer::MaxPool2d { kernel: [2, 2], stride: [2, 2] },
//!         CnnLayer::Dense(DenseLayer {
//!             n_inputs: 2 * 2 * 2,
//!             n_outputs: 3,
//!             weights: vec![0.25; 3 * 8],
//!             bias: vec![0.0; 3],
//!             activation: Activation::Identity,
//!         }),
//!     ],
//! };
//! let options = MlpExportOptions {
//!     opset: 13,
//!     with_probabilities: true,
//!     producer: Producer { name: "kiln".into(), version: "0.1.0".into() },
//!     doc_string: "A small CNN.".into(),
//!     metadata: Vec::new(),
//! };
//! let proto = cnn_to_model(&model, &InputNormalization::None, &options)?;
//! let ops: Vec<_> = proto.graph.unwrap().node.iter().map(|n| n.op_type().to_owned()).collect();
//! assert_eq!(ops, ["Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"]);
//! # Ok::<(), kiln_onnx::OnnxError>(())
//! ```

use crate::builder::{attr_int, attr_ints, ir_version_for_opset, Dim, GraphBuilder};
use crate::mlp::{
    add_dense, add_normalization, add_outputs, add_with_activation, batch_dim, build_model,
    check_layer_shape, check_parameters, dim, validate_metadata, validate_normalization,
    Activation, DenseLayer, InputNormalization, LayerShape, MlpExportOptions, INPUT_NAME,
    LOGITS_NAME,
};
use crate::proto::ModelProto;
use crate::OnnxError;

/// A convolutional network as a list of typed layers, in the trainer's
/// terms but independent of it.
///
/// Layer `k` (from 0) reads value `k` and writes value `k + 1`; value 0 is
/// the input. [`CnnLayer::Tap`] and [`CnnLayer::Add`] read earlier values by
/// their id, which makes skip connections (every layer counts, `Tap` and
/// `Flatten` included).
#[derive(Debug, Clone, PartialEq)]
pub struct CnnModel {
    /// One sample's shape `[c, h, w]`, as in NCHW. For `spatial_rank == 1`
    /// `h` must be 1 and the ONNX input is `[N, c, w]`.
    pub input_shape: [usize; 3],
    /// 2 for `[N, C, H, W]` tensors, or 1 for a Conv1D network whose tensors
    /// are `[N, C, L]` (every kernel and stride then has height 1 and no
    /// top or bottom padding).
    pub spatial_rank: usize,
    /// The layers, first to last. The last one must leave a flat value
    /// (`Dense` or `Flatten`): the logits.
    pub layers: Vec<CnnLayer>,
}

/// One layer of a [`CnnModel`]. Spatial sizes are `[height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub enum CnnLayer {
    /// A fully connected layer; it reads its input flattened in CHW order.
    Dense(DenseLayer),
    /// `out[o] = activation(bias[o] + sum_{c, ky, kx} w[o][c][ky][kx] x[c][..])`
    /// over the zero-padded input.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Input channels; must equal the input value's.
        in_channels: usize,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`, at least 1.
        stride: [usize; 2],
        /// Zero padding `[top, left, bottom, right]`, each smaller than the
        /// kernel along its axis.
        pads: [usize; 4],
        /// Row-major `[out_channels][in_channels][kh][kw]` (OIHW).
        weights: Vec<f32>,
        /// One value per output channel.
        bias: Vec<f32>,
        /// Applied after the convolution.
        activation: Activation,
    },
    /// One filter per channel (multiplier 1): a `Conv` with `group = channels`.
    DepthwiseConv2d {
        /// Input and output channels.
        channels: usize,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`, at least 1.
        stride: [usize; 2],
        /// Zero padding `[top, left, bottom, right]`.
        pads: [usize; 4],
        /// Row-major `[channels][1][kh][kw]`.
        weights: Vec<f32>,
        /// One value per channel.
        bias: Vec<f32>,
        /// Applied after the convolution.
        activation: Activation,
    },
    /// The maximum of each window; valid, `(in - k)` a multiple of the stride.
    MaxPool2d {
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
    },
    /// The mean of each window; valid, as [`CnnLayer::MaxPool2d`].
    AvgPool2d {
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
    },
    /// The mean of each channel: `[c, h, w] -> [c, 1, 1]`.
    GlobalAvgPool,
    /// `[c, h, w] -> c h w` values in CHW order.
    Flatten,
    /// Value `value`, computed earlier: the next layer reads it (no ONNX node).
    ///
    /// Layer `k` writes value `k + 1`; a `Tap` makes value `k + 1` an alias
    /// of value `value` (`value <= k`, value 0 being the input), so the layer
    /// after it reads that value instead of the previous one. This is how a
    /// layer graph branches: ResNet's projection shortcut is
    /// `..., Tap { value: 4 }, Conv2d 1x1 stride 2, Add { other: 6, .. }`.
    Tap {
        /// The value the next layer reads: 0 (the input) up to this layer's
        /// own index.
        value: usize,
    },
    /// `activation(x + value[other])`, x the previous value; both of one shape.
    ///
    /// A residual connection: the ONNX `Add` of the previous value's tensor
    /// and the tensor of value `other` (`other <= k` for layer `k`), then the
    /// activation as the other layers emit it. Both values must have the
    /// same `[c, h, w]` shape, or both be flat vectors of one length.
    Add {
        /// The earlier value added to the previous one.
        other: usize,
        /// Applied after the sum.
        activation: Activation,
    },
}

impl CnnLayer {
    /// The layer type's name, as `docs/layer-graph.md` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dense(_) => "Dense",
            Self::Conv2d { .. } => "Conv2d",
            Self::DepthwiseConv2d { .. } => "DepthwiseConv2d",
            Self::MaxPool2d { .. } => "MaxPool2d",
            Self::AvgPool2d { .. } => "AvgPool2d",
            Self::GlobalAvgPool => "GlobalAvgPool",
            Self::Flatten => "Flatten",
            Self::Tap { .. } => "Tap",
            Self::Add { .. } => "Add",
        }
    }
}

/// One value's shape: a spatial `[c, h, w]` tensor or a flat vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Spatial { c: usize, h: usize, w: usize },
    Flat(usize),
}

impl Shape {
    pub(crate) fn len(self) -> usize {
        match self {
            Self::Spatial { c, h, w } => c * h * w,
            Self::Flat(n) => n,
        }
    }
}

/// The sizes of a convolution, whichever layer type (float or int8, full or
/// depthwise) carries them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvGeometry {
    pub out_channels: usize,
    pub in_channels: usize,
    /// 1, or the channel count for a depthwise convolution.
    pub group: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

/// What the shape checks need to know of a layer: its sizes and how many
/// weights and biases it was given.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Geometry {
    Dense {
        n_inputs: usize,
        n_outputs: usize,
        n_weights: usize,
        n_biases: usize,
    },
    Conv {
        conv: ConvGeometry,
        n_weights: usize,
        n_biases: usize,
    },
    Pool {
        kernel: [usize; 2],
        stride: [usize; 2],
        /// `MaxPool2d`, else `AvgPool2d`.
        max: bool,
    },
    GlobalAvgPool,
    Flatten,
    /// The layer's value is the earlier value `value`.
    Tap {
        value: usize,
    },
    /// The previous value plus the earlier value `other`.
    Add {
        other: usize,
    },
}

/// A float convolution's geometry and parameters.
struct ConvParams<'a> {
    geometry: ConvGeometry,
    weights: &'a [f32],
    bias: &'a [f32],
    activation: Activation,
}

impl<'a> ConvParams<'a> {
    fn of(layer: &'a CnnLayer) -> Option<Self> {
        let (out_channels, in_channels, group) = match layer {
            CnnLayer::Conv2d {
                out_channels,
                in_channels,
                ..
            } => (*out_channels, *in_channels, 1),
            CnnLayer::DepthwiseConv2d { channels, .. } => (*channels, *channels, *channels),
            _ => return None,
        };
        match layer {
            CnnLayer::Conv2d {
                kernel,
                stride,
                pads,
                weights,
                bias,
                activation,
                ..
            }
            | CnnLayer::DepthwiseConv2d {
                kernel,
                stride,
                pads,
                weights,
                bias,
                activation,
                ..
            } => Some(Self {
                geometry: ConvGeometry {
                    out_channels,
                    in_channels,
                    group,
                    kernel: *kernel,
                    stride: *stride,
                    pads: *pads,
                },
                weights,
                bias,
                activation: *activation,
            }),
            _ => None,
        }
    }
}

impl CnnLayer {
    fn geometry(&self) -> Geometry {
        match self {
            Self::Dense(dense) => Geometry::Dense {
                n_inputs: dense.n_inputs,
                n_outputs: dense.n_outputs,
                n_weights: dense.weights.len(),
                n_biases: dense.bias.len(),
            },
            Self::Conv2d { .. } | Self::DepthwiseConv2d { .. } => {
                let conv = ConvParams::of(self).expect("a convolution");
                Geometry::Conv {
                    conv: conv.geometry,
                    n_weights: conv.weights.len(),
                    n_biases: conv.bias.len(),
                }
            }
            Self::MaxPool2d { kernel, stride } | Self::AvgPool2d { kernel, stride } => {
                Geometry::Pool {
                    kernel: *kernel,
                    stride: *stride,
                    max: matches!(self, Self::MaxPool2d { .. }),
                }
            }
            Self::GlobalAvgPool => Geometry::GlobalAvgPool,
            Self::Flatten => Geometry::Flatten,
            Self::Tap { value } => Geometry::Tap { value: *value },
            Self::Add { other, .. } => Geometry::Add { other: *other },
        }
    }
}

/// Builds the float ONNX model of a CNN.
///
/// Everything is validated first (see the module documentation and
/// `docs/layer-graph.md`): the input shape and spatial rank, that each
/// layer's channels and sizes fit the value it reads, kernels no larger than
/// their (padded) input, pooling strides that divide `in - k`, weight and
/// bias lengths, a `Tap` or `Add` that names an earlier value (and an `Add`
/// whose two values have one shape), a last layer that computes the logits
/// (not a `Tap`), finite parameters, the normalisation (one value per input
/// feature, `c h w` in CHW order), the opset and metadata keys. Errors name
/// the layer index.
pub fn cnn_to_model(
    model: &CnnModel,
    normalization: &InputNormalization,
    options: &MlpExportOptions,
) -> Result<ModelProto, OnnxError> {
    let shapes = validate(model, normalization, options)?;
    let rank = model.spatial_rank;

    let mut graph = GraphBuilder::new("kiln_cnn");
    graph.doc_string(&describe(model, &shapes, normalization));
    let sample = sample_dims(rank, model.input_shape);
    add_input(&mut graph, &sample);

    // The tensor of each value: value 0 is the normalised input, layer `i`
    // writes value `i + 1` (a Tap's is the tensor of the value it names).
    let mut values = vec![add_normalization(&mut graph, normalization, &sample)?];
    for (i, layer) in model.layers.iter().enumerate() {
        let output = if i + 1 == model.layers.len() {
            LOGITS_NAME.to_owned()
        } else {
            format!("layer{i}.output")
        };
        let input = values[i].as_str();
        match layer {
            CnnLayer::Dense(dense) => {
                let flat = flatten_if_spatial(&mut graph, i, shapes[i], input);
                add_dense(&mut graph, i, dense, &flat, &output)?;
            }
            CnnLayer::Conv2d { .. } | CnnLayer::DepthwiseConv2d { .. } => {
                let conv = ConvParams::of(layer).expect("a convolution");
                let geometry = &conv.geometry;
                let (weight, bias) = (format!("layer{i}.weight"), format!("layer{i}.bias"));
                graph.initializer_f32(&weight, &conv_weight_dims(rank, geometry), conv.weights)?;
                graph.initializer_f32(&bias, &[dim(geometry.out_channels)], conv.bias)?;
                add_with_activation(&mut graph, i, conv.activation, &output, |graph, linear| {
                    add_conv(graph, i, rank, geometry, [input, &weight, &bias], linear);
                })?;
            }
            CnnLayer::MaxPool2d { .. }
            | CnnLayer::AvgPool2d { .. }
            | CnnLayer::GlobalAvgPool
            | CnnLayer::Flatten => {
                add_shape_node(&mut graph, i, rank, layer.geometry(), input, &output);
            }
            CnnLayer::Tap { value } => {
                // No node: the next layer reads the earlier value's tensor.
                values.push(values[*value].clone());
                continue;
            }
            CnnLayer::Add { other, activation } => {
                let other = values[*other].as_str();
                add_with_activation(&mut graph, i, *activation, &output, |graph, sum| {
                    add_residual(graph, i, [input, other], sum);
                })?;
            }
        }
        values.push(output);
    }

    add_outputs(
        &mut graph,
        shapes[shapes.len() - 1].len(),
        options.with_probabilities,
    );
    build_model(graph, options)
}

/// One sample's ONNX dimensions: `[c, h, w]`, or `[c, w]` for rank 1.
pub(crate) fn sample_dims(rank: usize, [c, h, w]: [usize; 3]) -> Vec<i64> {
    let mut dims = vec![dim(c)];
    dims.extend(axes(rank, [h, w]));
    dims
}

/// Declares the FLOAT graph input `[N, sample...]`.
pub(crate) fn add_input(graph: &mut GraphBuilder, sample: &[i64]) {
    let mut dims = vec![batch_dim()];
    dims.extend(sample.iter().map(|&d| Dim::Fixed(d)));
    graph.input_f32(INPUT_NAME, &dims);
}

/// A `[height, width]` pair as ONNX spatial attribute values: both for
/// rank 2, the width alone for rank 1.
fn axes(rank: usize, pair: [usize; 2]) -> Vec<i64> {
    pair[2 - rank..].iter().map(|&v| dim(v)).collect()
}

/// A convolution's weight shape `[O, C / group, kh, kw]` (`[O, C / group, k]`
/// for rank 1).
pub(crate) fn conv_weight_dims(rank: usize, conv: &ConvGeometry) -> Vec<i64> {
    let mut dims = vec![dim(conv.out_channels), dim(conv.in_channels / conv.group)];
    dims.extend(axes(rank, conv.kernel));
    dims
}

/// Emits layer `i`'s `Conv` node reading `[input, weight, bias]` and writing
/// `output`: explicit `kernel_shape`, `strides`, `pads` and `group`.
pub(crate) fn add_conv(
    graph: &mut GraphBuilder,
    i: usize,
    rank: usize,
    conv: &ConvGeometry,
    inputs: [&str; 3],
    output: &str,
) {
    let [top, left, bottom, right] = conv.pads;
    let pads = if rank == 2 {
        vec![dim(top), dim(left), dim(bottom), dim(right)]
    } else {
        vec![dim(left), dim(right)]
    };
    let attributes = vec![
        attr_ints("kernel_shape", &axes(rank, conv.kernel)),
        attr_ints("strides", &axes(rank, conv.stride)),
        attr_ints("pads", &pads),
        attr_int("group", dim(conv.group)),
    ];
    graph.node(
        "Conv",
        &format!("layer{i}_conv"),
        &inputs,
        &[output],
        attributes,
    );
}

/// Emits layer `i`'s residual `Add` node: `previous + other`, written to
/// `output`.
pub(crate) fn add_residual(graph: &mut GraphBuilder, i: usize, inputs: [&str; 2], output: &str) {
    graph.node(
        "Add",
        &format!("layer{i}_add"),
        &inputs,
        &[output],
        Vec::new(),
    );
}

/// Emits the node of a layer without parameters: `MaxPool`,
/// `AveragePool`, `GlobalAveragePool` or `Flatten`.
pub(crate) fn add_shape_node(
    graph: &mut GraphBuilder,
    i: usize,
    rank: usize,
    geometry: Geometry,
    input: &str,
    output: &str,
) {
    let (op_type, suffix, attributes) = match geometry {
        Geometry::Pool {
            kernel,
            stride,
            max,
        } => {
            let attributes = vec![
                attr_ints("kernel_shape", &axes(rank, kernel)),
                attr_ints("strides", &axes(rank, stride)),
            ];
            if max {
                ("MaxPool", "maxpool", attributes)
            } else {
                ("AveragePool", "avgpool", attributes)
            }
        }
        Geometry::GlobalAvgPool => ("GlobalAveragePool", "global_avgpool", Vec::new()),
        Geometry::Flatten => ("Flatten", "flatten", vec![attr_int("axis", 1)]),
        Geometry::Dense { .. }
        | Geometry::Conv { .. }
        | Geometry::Tap { .. }
        | Geometry::Add { .. } => {
            unreachable!("layer {i} is not a pooling or flatten layer")
        }
    };
    let name = format!("layer{i}_{suffix}");
    graph.node(op_type, &name, &[input], &[output], attributes);
}

/// The tensor a `Dense` layer `i` reads: `input` itself when it is flat, else
/// `layer{i}.flattened`, written by an inserted `Flatten` (CHW order).
pub(crate) fn flatten_if_spatial(
    graph: &mut GraphBuilder,
    i: usize,
    shape: Shape,
    input: &str,
) -> String {
    if let Shape::Flat(_) = shape {
        return input.to_owned();
    }
    let flattened = format!("layer{i}.flattened");
    add_shape_node(graph, i, 2, Geometry::Flatten, input, &flattened);
    flattened
}

/// Validates the model and returns the shape of the value each layer reads,
/// followed by the shape of the output.
fn validate(
    model: &CnnModel,
    normalization: &InputNormalization,
    options: &MlpExportOptions,
) -> Result<Vec<Shape>, OnnxError> {
    ir_version_for_opset(options.opset)?;
    let layers: Vec<_> = model
        .layers
        .iter()
        .map(|l| (l.kind(), l.geometry()))
        .collect();
    let shapes = check_shapes(model.input_shape, model.spatial_rank, &layers)?;
    for (i, layer) in model.layers.iter().enumerate() {
        if let CnnLayer::Dense(dense) = layer {
            check_parameters(i, &dense.weights, &dense.bias, dense.activation)?;
        } else if let Some(conv) = ConvParams::of(layer) {
            check_parameters(i, conv.weights, conv.bias, conv.activation)?;
        } else if let CnnLayer::Add { activation, .. } = layer {
            check_parameters(i, &[], &[], *activation)?;
        }
    }
    validate_normalization(normalization, model.input_shape.iter().product())?;
    validate_metadata(options)?;
    Ok(shapes)
}

/// Checks the input shape, the spatial rank and every layer against the
/// value it reads (the model-level and shape errors of `docs/layer-graph.md`);
/// returns the shape of each layer's input, then the output's.
pub(crate) fn check_shapes(
    input_shape: [usize; 3],
    spatial_rank: usize,
    layers: &[(&'static str, Geometry)],
) -> Result<Vec<Shape>, OnnxError> {
    let model_error = |reason: String| OnnxError::CnnModel { reason };
    let [c, h, w] = input_shape;
    if spatial_rank != 1 && spatial_rank != 2 {
        return Err(model_error(format!(
            "spatial_rank is {spatial_rank}, expected 2 (input [N, C, H, W]) or 1 (Conv1D, input [N, C, L])"
        )));
    }
    if c == 0 || h == 0 || w == 0 {
        return Err(model_error(format!(
            "input shape {c}x{h}x{w} (CxHxW) has a zero dimension"
        )));
    }
    if c.checked_mul(h).and_then(|n| n.checked_mul(w)).is_none() {
        return Err(model_error(format!(
            "input shape {c}x{h}x{w} (CxHxW) has more values than memory can address"
        )));
    }
    if spatial_rank == 1 && h != 1 {
        return Err(model_error(format!(
            "a Conv1D network (spatial_rank 1) needs input height 1, got input shape {c}x{h}x{w}"
        )));
    }
    if layers.is_empty() {
        return Err(model_error("the model has no layers".to_owned()));
    }

    let mut shapes = vec![Shape::Spatial { c, h, w }];
    for (i, &(kind, geometry)) in layers.iter().enumerate() {
        let next = match geometry {
            Geometry::Tap { value } => shapes[earlier_value(i, kind, value)?],
            Geometry::Add { other } => {
                let (previous, other_shape) = (shapes[i], shapes[earlier_value(i, kind, other)?]);
                if other_shape != previous {
                    return Err(OnnxError::CnnLayer {
                        layer: i,
                        kind,
                        reason: format!(
                            "value {other} is {}, the previous value {}; an Add needs both of \
                             one shape",
                            shape_text(other_shape),
                            shape_text(previous)
                        ),
                    });
                }
                previous
            }
            _ => layer_output(i, kind, geometry, shapes[i], spatial_rank)?,
        };
        shapes.push(next);
    }
    let last = layers.len() - 1;
    if let (kind, Geometry::Tap { .. }) = layers[last] {
        return Err(OnnxError::CnnLayer {
            layer: last,
            kind,
            reason: "is the last layer, but a Tap computes nothing; the logits must be a \
                     layer's own output"
                .to_owned(),
        });
    }
    if let Shape::Spatial { c, h, w } = shapes[shapes.len() - 1] {
        return Err(model_error(format!(
            "the last layer (layer {last}, {}) produces a {c}x{h}x{w} value; a CNN must end \
             with Dense or Flatten so that the logits are [N, classes]",
            layers[last].0
        )));
    }
    Ok(shapes)
}

/// Checks that layer `i` (a Tap or an Add) names an earlier value: one of
/// 0 (the input) to `i` (the previous layer's output); returns it.
fn earlier_value(i: usize, kind: &'static str, value: usize) -> Result<usize, OnnxError> {
    if value <= i {
        return Ok(value);
    }
    Err(OnnxError::CnnLayer {
        layer: i,
        kind,
        reason: format!(
            "reads value {value}, which is not an earlier value: layer {i} can read values 0 \
             (the input) to {i} (layer k writes value k + 1)"
        ),
    })
}

/// A value's shape for messages: `[c, h, w]`, or `[n]` for a flat vector.
fn shape_text(shape: Shape) -> String {
    match shape {
        Shape::Spatial { c, h, w } => format!("[{c}, {h}, {w}]"),
        Shape::Flat(n) => format!("[{n}] (flat)"),
    }
}

/// Checks layer `i` against the value it reads and returns its output shape.
fn layer_output(
    i: usize,
    kind: &'static str,
    geometry: Geometry,
    input: Shape,
    rank: usize,
) -> Result<Shape, OnnxError> {
    let error = |reason: String| OnnxError::CnnLayer {
        layer: i,
        kind,
        reason,
    };
    if let Geometry::Dense {
        n_inputs,
        n_outputs,
        n_weights,
        n_biases,
    } = geometry
    {
        let shape = LayerShape {
            n_inputs,
            n_outputs,
            n_weights,
            n_biases,
        };
        check_layer_shape(i, shape, None)?;
        if n_inputs != input.len() {
            let origin = match input {
                Shape::Spatial { c, h, w } => format!(" ({c}x{h}x{w} flattened in CHW order)"),
                Shape::Flat(_) => String::new(),
            };
            return Err(error(format!(
                "takes {n_inputs} inputs but its input has {} values{origin}",
                input.len()
            )));
        }
        return Ok(Shape::Flat(n_outputs));
    }
    let Shape::Spatial { c, h, w } = input else {
        return Err(error(format!(
            "needs a spatial [C, H, W] input, but its input is a flat vector of {} values",
            input.len()
        )));
    };
    let window = |kernel: [usize; 2], stride: [usize; 2]| -> Result<(), OnnxError> {
        let [kh, kw] = kernel;
        let [sh, sw] = stride;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(error(format!(
                "kernel {kh}x{kw} and stride {sh}x{sw} must be at least 1"
            )));
        }
        if rank == 1 && (kh != 1 || sh != 1) {
            return Err(error(format!(
                "a Conv1D network (spatial_rank 1) needs kernel height 1 and stride height 1, \
                 got kernel {kh}x{kw} and stride {sh}x{sw}"
            )));
        }
        Ok(())
    };
    match geometry {
        Geometry::Dense { .. } | Geometry::Tap { .. } | Geometry::Add { .. } => {
            unreachable!("handled by the caller")
        }
        Geometry::Conv {
            conv,
            n_weights,
            n_biases,
        } => {
            if conv.out_channels == 0 {
                return Err(error("has 0 output channels".to_owned()));
            }
            if conv.in_channels != c {
                return Err(error(format!(
                    "takes {} input channels but its input has {c} ({c}x{h}x{w})",
                    conv.in_channels
                )));
            }
            window(conv.kernel, conv.stride)?;
            let [kh, kw] = conv.kernel;
            let [top, left, bottom, right] = conv.pads;
            if rank == 1 && (top != 0 || bottom != 0) {
                return Err(error(format!(
                    "a Conv1D network (spatial_rank 1) has no top or bottom padding, got pads \
                     {:?} (top, left, bottom, right)",
                    conv.pads
                )));
            }
            for (side, pad, k) in [
                ("top", top, kh),
                ("left", left, kw),
                ("bottom", bottom, kh),
                ("right", right, kw),
            ] {
                if pad >= k {
                    return Err(error(format!(
                        "{side} padding {pad} must be smaller than the kernel ({kh}x{kw})"
                    )));
                }
            }
            // Each pad is below its kernel, but both may be absurd: saturate.
            let (ph, pw) = (
                h.saturating_add(top).saturating_add(bottom),
                w.saturating_add(left).saturating_add(right),
            );
            if kh > ph || kw > pw {
                return Err(error(format!(
                    "a {kh}x{kw} kernel is larger than its {h}x{w} input (padded: {ph}x{pw})"
                )));
            }
            let per_group = conv.in_channels / conv.group;
            let expected = conv
                .out_channels
                .saturating_mul(per_group)
                .saturating_mul(kh)
                .saturating_mul(kw);
            if n_weights != expected {
                return Err(error(format!(
                    "weights have {n_weights} values, expected {} x {per_group} x {kh} x {kw} = \
                     {expected} ([out][in / group][kh][kw])",
                    conv.out_channels
                )));
            }
            if n_biases != conv.out_channels {
                return Err(OnnxError::BiasCount {
                    layer: i,
                    actual: n_biases,
                    expected: conv.out_channels,
                });
            }
            let [sh, sw] = conv.stride;
            Ok(Shape::Spatial {
                c: conv.out_channels,
                h: (ph - kh) / sh + 1,
                w: (pw - kw) / sw + 1,
            })
        }
        Geometry::Pool { kernel, stride, .. } => {
            window(kernel, stride)?;
            let ([kh, kw], [sh, sw]) = (kernel, stride);
            if kh > h || kw > w {
                return Err(error(format!(
                    "a {kh}x{kw} window is larger than its {h}x{w} input"
                )));
            }
            for (axis, size, k, s) in [("height", h, kh, sh), ("width", w, kw, sw)] {
                if (size - k) % s != 0 {
                    return Err(error(format!(
                        "window {k} with stride {s} does not divide input {axis} {size}: \
                         {size} - {k} = {} is not a multiple of {s}",
                        size - k
                    )));
                }
            }
            Ok(Shape::Spatial {
                c,
                h: (h - kh) / sh + 1,
                w: (w - kw) / sw + 1,
            })
        }
        Geometry::GlobalAvgPool => Ok(Shape::Spatial { c, h: 1, w: 1 }),
        Geometry::Flatten => Ok(Shape::Flat(c * h * w)),
    }
}

/// What a `Tap` or an `Add` reads besides the previous value, for the doc
/// strings: ` of value 4`, ` with value 6`; empty for other layers.
fn value_note(layer: &CnnLayer) -> String {
    match layer {
        CnnLayer::Tap { value } => format!(" of value {value}"),
        CnnLayer::Add { other, .. } => format!(" with value {other}"),
        _ => String::new(),
    }
}

/// The graph's doc string, e.g.
/// `CNN 1x8x8 -> Conv2d 4x8x8 (Relu) -> MaxPool2d 4x4x4 -> Dense 10 (Identity); ...`.
fn describe(model: &CnnModel, shapes: &[Shape], normalization: &InputNormalization) -> String {
    let [c, h, w] = model.input_shape;
    let mut text = format!("CNN {c}x{h}x{w}");
    for (layer, shape) in model.layers.iter().zip(&shapes[1..]) {
        let size = match *shape {
            Shape::Spatial { c, h, w } => format!("{c}x{h}x{w}"),
            Shape::Flat(n) => n.to_string(),
        };
        let activation = match layer {
            CnnLayer::Dense(DenseLayer { activation, .. }) | CnnLayer::Add { activation, .. } => {
                Some(*activation)
            }
            _ => ConvParams::of(layer).map(|conv| conv.activation),
        };
        text.push_str(&format!(" -> {}{} {size}", layer.kind(), value_note(layer)));
        if let Some(activation) = activation {
            text.push_str(&format!(" ({activation:?})"));
        }
    }
    text.push_str(match normalization {
        InputNormalization::None => "; input used as is",
        InputNormalization::Scale { .. } => "; input scaled in-graph",
        InputNormalization::Standardize { .. } => "; input standardized in-graph",
    });
    text.push_str("; tensors are NCHW (NCL for Conv1D)");
    text
}
