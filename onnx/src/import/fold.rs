//! Folds a decoded graph into dense layers, or a convolutional layer graph.
//!
//! The walk starts at the graph input and follows the data tensor node by
//! node. Where the graph branches (a skip connection), it takes the nodes in
//! an order that keeps each chain together: a node that reads the current
//! data first, else the first node in the file whose inputs are all computed.
//! A layer that reads an earlier value, not the current data, is preceded by
//! a `Tap` of that value; an `Add` of two data tensors (not of a constant) is
//! a residual `Add` of the current data and the other operand's value (after
//! a `Tap` to one operand when neither is the current data), and the
//! activation after it folds into it. A value is a tensor the walk left for a
//! layer that does not fold into it: the normalised input, or a layer's
//! output after its activation; a tensor that the walk folds an activation
//! or a map into may feed no other node. Constant subgraphs (Constant nodes, a Transpose of a weight) are
//! evaluated first with [`crate::eval`]. On the data path, every constant
//! affine map (Sub, Add, Mul, Div, BatchNormalization, ai.onnx.ml Scaler) is
//! kept as a per-feature `a * x + b` and folded: into the layer before it when
//! that layer has no activation yet, into the next layer's weights when it
//! follows an activation, and into the input normalisation before the first
//! layer. The arithmetic is in f64, rounded to f32 once.
//!
//! Channels last (tf2onnx's Keras graphs): a Transpose of the input from `[N, H, W, C]` to
//! NCHW (`[N, L, C]` to NCL) makes the layer graph's input `[C, H, W]` and records
//! [`InputLayout::ChannelsLast`], so the caller feeds each row in CHW order (refused unless
//! [`ImportOptions::reorder_channels_last`] when it moves any value). A Transpose of a
//! spatial value to channels last is a view of that value (`Chain::order`): a Transpose back,
//! a Flatten or Reshape to `[N, F]` (the next dense layer takes its columns in CHW order), a
//! mean over the view's spatial axes, an activation or a per-feature map may read it.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::error::{ImportErrorKind, NodeReason};
use super::reader::LoadedModel;
use super::spatial::{self, Window};
use super::{ImportOptions, ImportedInput, ImportedMlp, ImportedOutput, InputLayout, OutputKind};
use crate::cnn::{CnnLayer, CnnModel};
use crate::eval::{self, node_label, Tensor};
use crate::mlp::{Activation, DenseLayer, InputNormalization};
use crate::proto::{
    tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, GraphProto, NodeProto,
};

/// The most input features an imported MLP may take (4 Mi); the importer
/// sizes per-feature maps by the declared input shape.
pub const MAX_FEATURES: usize = 1 << 22;

/// The most elements constant folding computes in all (64 Mi), so a graph of
/// many large constant products is refused rather than allocated.
const CONSTANT_FOLDING_BUDGET: usize = 1 << 26;

/// A per-feature affine map `a * x + b`.
#[derive(Debug, Clone)]
struct Affine {
    a: Vec<f64>,
    b: Vec<f64>,
    /// The node that made it, for messages.
    node: String,
    op_type: String,
}

/// What a [`Layer`] computes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LayerKind {
    Dense,
    /// `n_out` filters of `n_in = in_channels * kh * kw` weights (OIHW).
    Conv {
        in_channels: usize,
        window: Window,
    },
    /// One `kh * kw` filter per channel (`n_out` channels).
    Depthwise {
        window: Window,
    },
    MaxPool {
        window: Window,
    },
    AvgPool {
        window: Window,
    },
    GlobalAvgPool,
    Flatten,
    /// The next layer reads the earlier value `value` (a skip connection's branch).
    Tap {
        value: usize,
        /// The value is `[C, H, W]` (or `[C, L]`), not a flat vector.
        spatial: bool,
    },
    /// The previous value plus the earlier value `other` (a residual Add).
    Add {
        other: usize,
        /// The values are `[C, H, W]` (or `[C, L]`), not flat vectors.
        spatial: bool,
    },
}

impl LayerKind {
    fn is_spatial(self) -> bool {
        match self {
            Self::Dense => false,
            Self::Tap { spatial, .. } | Self::Add { spatial, .. } => spatial,
            _ => true,
        }
    }
}

#[derive(Debug, Clone)]
struct Layer {
    kind: LayerKind,
    n_in: usize,
    n_out: usize,
    /// Row-major `[n_out][n_in]`; empty for a layer without weights.
    w: Vec<f64>,
    b: Vec<f64>,
    /// `None` while the layer is open (an affine map or an activation may still be
    /// folded in); layers without weights are closed from the start.
    activation: Option<Activation>,
    /// Closed (identity) by the MaxPool after it: an activation right after that pool is
    /// this layer's, since every kiln activation is non-decreasing and so commutes with
    /// the maximum (PyTorch's `relu(max_pool2d(conv(x)))`).
    closed_by_max_pool: bool,
}

/// The walk's state: the data tensor's non-batch dims and what has been folded.
struct Chain {
    dims: Vec<usize>,
    pending: Option<Affine>,
    normalization: Option<Affine>,
    layers: Vec<Layer>,
    /// 2 once a layer has read `[C, H, W]` data, 1 once one has read `[C, L]` data.
    spatial_rank: Option<usize>,
    /// The data's dims where the first layer read it.
    first_dims: Option<Vec<usize>>,
    /// The data is a spatial value seen channels last (`[H, W, C]` or `[L, C]`, after a
    /// Transpose from NCHW), or such a view flattened: for each feature of the data
    /// (row-major over `dims`), its index in the value in the layer graph's CHW order.
    /// The next dense layer takes its columns, and any affine map its features, in that
    /// order; no spatial layer may read it.
    order: Option<Vec<usize>>,
    /// `dims` are channels last (`[H, W, C]`, `[L, C]`): only a Transpose back to channels
    /// first, a Flatten or Reshape, a mean over the spatial axes, an activation or a per
    /// feature map may follow.
    channels_last: bool,
}

fn node_error(node: &NodeProto, index: usize, reason: NodeReason) -> ImportErrorKind {
    ImportErrorKind::Node {
        node: node_label(node, index),
        op_type: op_name(node),
        reason,
    }
}

fn op_name(node: &NodeProto) -> String {
    let op = node.op_type.clone().unwrap_or_default();
    match node.domain.as_deref() {
        None | Some("") | Some("ai.onnx") => op,
        Some(domain) => format!("{domain}.{op}"),
    }
}

fn unsupported(detail: impl Into<String>) -> NodeReason {
    NodeReason::UnsupportedOp {
        detail: detail.into(),
    }
}

pub(super) fn shape(detail: impl Into<String>) -> NodeReason {
    NodeReason::ShapeMismatch {
        detail: detail.into(),
    }
}

pub(super) fn attr<'a>(
    node: &'a NodeProto,
    name: &str,
) -> Option<&'a crate::proto::AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

pub(super) fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_float(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).and_then(|a| a.f).unwrap_or(default)
}

/// The non-batch dims of `full` (batch first) broadcast target, for a constant
/// operand: each element of the data tensor's features maps to one constant value.
fn broadcast_constant(constant: &Tensor, dims: &[usize]) -> Result<Vec<f64>, NodeReason> {
    let values = constant.to_f64().ok_or_else(|| {
        shape(format!(
            "the constant is {}, expected FLOAT",
            constant.data.type_name()
        ))
    })?;
    let mut full = vec![1usize];
    full.extend_from_slice(dims);
    match eval::broadcast_dims(&full, &constant.dims) {
        Ok(out) if out == full => {}
        _ => {
            return Err(shape(format!(
                "a constant of shape {:?} does not apply per feature to data of shape [N, {}]",
                constant.dims,
                dims.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
    // Index the constant for each feature position (batch index 0).
    let n: usize = dims.iter().product();
    let rank = full.len();
    let c_rank = constant.dims.len();
    let mut c_strides = vec![1usize; c_rank];
    for i in (0..c_rank.saturating_sub(1)).rev() {
        c_strides[i] = c_strides[i + 1] * constant.dims[i + 1];
    }
    Ok((0..n)
        .map(|flat| {
            let mut rem = flat;
            let mut src = 0;
            for axis in (1..rank).rev() {
                let coord = rem % full[axis];
                rem /= full[axis];
                if axis + c_rank >= rank {
                    let c_axis = axis + c_rank - rank;
                    if constant.dims[c_axis] != 1 {
                        src += coord * c_strides[c_axis];
                    }
                }
            }
            values[src]
        })
        .collect())
}

impl Chain {
    fn n_features(&self) -> usize {
        self.dims.iter().product()
    }

    fn open_layer(&mut self) -> Option<&mut Layer> {
        self.layers.last_mut().filter(|l| l.activation.is_none())
    }

    /// Applies `a * x + b` to the data tensor.
    fn affine(&mut self, mut affine: Affine) -> Result<(), NodeReason> {
        let n = self.n_features();
        if let Some(order) = &self.order {
            // A channels-last view: the map's features in the value's CHW order.
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            for (i, &j) in order.iter().enumerate() {
                (a[j], b[j]) = (affine.a[i], affine.b[i]);
            }
            (affine.a, affine.b) = (a, b);
        }
        if self
            .open_layer()
            .is_some_and(|l| matches!(l.kind, LayerKind::Add { .. }))
        {
            return Err(unsupported(
                "a scale or offset of a residual Add's sum; kiln folds one only into a convolution, a dense layer or the input normalisation",
            ));
        }
        if let Some(layer) = self.open_layer() {
            // A convolution's output is [C, H, W]: the map must be one per channel.
            let inner = n / layer.n_out.max(1);
            let per_channel = (0..layer.n_out).all(|o| {
                let range = o * inner..(o + 1) * inner;
                affine.a[range.clone()]
                    .iter()
                    .all(|&a| a == affine.a[o * inner])
                    && affine.b[range].iter().all(|&b| b == affine.b[o * inner])
            });
            if !per_channel {
                return Err(unsupported(
                    "a scale or offset that differs within a channel of a convolution's output; kiln folds one per channel",
                ));
            }
            for o in 0..layer.n_out {
                let (a, b) = (affine.a[o * inner], affine.b[o * inner]);
                for v in &mut layer.w[o * layer.n_in..(o + 1) * layer.n_in] {
                    *v *= a;
                }
                layer.b[o] = layer.b[o] * a + b;
            }
            return Ok(());
        }
        self.pending = Some(match self.pending.take() {
            None => affine,
            Some(p) => Affine {
                b: p.b
                    .iter()
                    .zip(&affine.a)
                    .zip(&affine.b)
                    .map(|((pb, a), b)| a * pb + b)
                    .collect(),
                a: p.a.iter().zip(&affine.a).map(|(pa, a)| pa * a).collect(),
                node: affine.node,
                op_type: affine.op_type,
            },
        });
        Ok(())
    }

    /// The data as `(channels, [height, width])` with the spatial rank, for a layer that
    /// reads a spatial value: `[C, H, W]` (rank 2) or `[C, L]` (rank 1, height 1).
    fn spatial(&mut self, op: &str) -> Result<(usize, [usize; 2], usize), NodeReason> {
        if self.channels_last || self.order.is_some() {
            return Err(unsupported(format!(
                "{op} on channels-last data [N, {}] (after a Transpose from NCHW); kiln's spatial layers read NCHW, so only a Transpose back, a Flatten or Reshape before a dense layer, or a mean over the spatial axes may follow",
                dims_text(&self.dims)
            )));
        }
        let (c, hw, rank) = match self.dims.as_slice() {
            [c, h, w] => (*c, [*h, *w], 2),
            [c, l] => (*c, [1, *l], 1),
            _ => {
                return Err(shape(format!(
                    "{op} needs [N, C, H, W] or [N, C, L] data, but the data is [N, {}]",
                    self.dims
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        if self.layers.iter().any(|l| l.kind == LayerKind::Dense) {
            return Err(unsupported(format!(
                "{op} after a dense layer; kiln's dense layers come after the spatial ones"
            )));
        }
        match self.spatial_rank {
            Some(r) if r != rank => Err(shape(format!(
                "{op} on rank-{rank} data after rank-{r} layers"
            ))),
            _ => {
                self.spatial_rank = Some(rank);
                Ok((c, hw, rank))
            }
        }
    }

    /// The data dims of a `[c, h, w]` value in the chain's spatial rank.
    fn set_spatial_dims(&mut self, c: usize, hw: [usize; 2]) {
        self.dims = if self.spatial_rank == Some(1) {
            vec![c, hw[1]]
        } else {
            vec![c, hw[0], hw[1]]
        };
    }

    /// Closes the previous layer (no activation: identity) and takes the pending affine map
    /// as the input normalisation before the first layer. A layer that reads a spatial value
    /// cannot absorb an affine map that follows an activation.
    fn begin_spatial_layer(&mut self, what: &str) -> Result<(), NodeReason> {
        if self.layers.is_empty() {
            self.normalization = self.pending.take();
            self.first_dims = Some(self.dims.clone());
            return Ok(());
        }
        if let Some(prev) = self.open_layer() {
            prev.activation = Some(Activation::Identity);
        }
        if let Some(p) = &self.pending {
            return Err(unsupported(format!(
                "node `{}` ({}) scales or shifts the data between an activation and a {what}; kiln folds such a map only into the input normalisation or a dense layer",
                p.node, p.op_type
            )));
        }
        Ok(())
    }

    /// Appends a convolution: `w` is OIHW (`[n_out][in_per_group][kh][kw]`).
    fn conv(
        &mut self,
        node: &NodeProto,
        weights: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<(), NodeReason> {
        let (c, hw, rank) = self.spatial("Conv")?;
        let values = weights.to_f64().ok_or_else(|| {
            shape(format!(
                "the weight is {}, expected FLOAT",
                weights.data.type_name()
            ))
        })?;
        let (n_out, per_group, weight_kernel) = match (rank, weights.dims.as_slice()) {
            (2, [o, i, kh, kw]) => (*o, *i, [*kh, *kw]),
            (1, [o, i, k]) => (*o, *i, [1, *k]),
            _ => {
                return Err(shape(format!(
                    "the weight has shape {:?}, expected [filters, channels{}]",
                    weights.dims,
                    if rank == 2 { ", kh, kw" } else { ", k" }
                )))
            }
        };
        let group = spatial::group(node)?;
        let depthwise = if group == 1 {
            false
        } else if group == c {
            if n_out != c {
                return Err(NodeReason::UnsupportedAttribute {
                    detail: format!(
                        "group {group} with {n_out} filters is a depthwise convolution with {} filters per channel; kiln's has one",
                        if n_out % c == 0 { (n_out / c).to_string() } else { format!("{n_out}/{c}") }
                    ),
                });
            }
            true
        } else {
            return Err(NodeReason::UnsupportedAttribute {
                detail: format!(
                    "group {group} is neither 1 nor the channel count {c} (a depthwise convolution)"
                ),
            });
        };
        if per_group * group != c {
            return Err(shape(format!(
                "the weight has shape {:?}: {per_group} channels per filter, but the data has {c} channels{}",
                weights.dims,
                if group > 1 { format!(" in {group} groups") } else { String::new() }
            )));
        }
        let window = spatial::conv_window(node, rank, hw, weight_kernel)?;
        let b = match bias {
            None => vec![0.0; n_out],
            Some(t) => {
                let values = t.to_f64().filter(|v| v.len() == n_out && t.dims.len() == 1);
                values.ok_or_else(|| {
                    shape(format!(
                        "the bias has shape {:?}, expected [{n_out}]",
                        t.dims
                    ))
                })?
            }
        };
        self.begin_spatial_layer("convolution")?;
        let n_in = per_group * window.kernel[0] * window.kernel[1];
        let kind = if depthwise {
            LayerKind::Depthwise { window }
        } else {
            LayerKind::Conv {
                in_channels: c,
                window,
            }
        };
        self.layers.push(Layer {
            kind,
            n_in,
            n_out,
            w: values,
            b,
            activation: None,
            closed_by_max_pool: false,
        });
        self.set_spatial_dims(n_out, window.output);
        Ok(())
    }

    /// Appends a layer without weights that reads a spatial value (pooling). `reopenable`:
    /// the pooled tensor feeds this pooling only, so an activation after a max pooling may
    /// still become the layer before it's.
    fn pool(
        &mut self,
        kind: LayerKind,
        c: usize,
        output: [usize; 2],
        reopenable: bool,
    ) -> Result<(), NodeReason> {
        let open_before = self.open_layer().is_some();
        self.begin_spatial_layer("pooling layer")?;
        if open_before && reopenable && matches!(kind, LayerKind::MaxPool { .. }) {
            if let Some(prev) = self.layers.last_mut() {
                prev.closed_by_max_pool = true;
            }
        }
        self.layers.push(Layer {
            kind,
            n_in: 0,
            n_out: 0,
            w: Vec::new(),
            b: Vec::new(),
            activation: Some(Activation::Identity),
            closed_by_max_pool: false,
        });
        self.set_spatial_dims(c, output);
        Ok(())
    }

    /// Flattens the data. After spatial layers this closes the last one; the layer graph's
    /// flatten before a dense layer is implicit (a trailing one is added at the end). A
    /// pending map stays for the next dense layer, which reads the same features in the
    /// same (CHW) order.
    fn flatten(&mut self, dims: Vec<usize>) {
        if self.layers.last().is_some_and(|l| l.kind.is_spatial()) && dims.len() == 1 {
            if let Some(prev) = self.open_layer() {
                prev.activation = Some(Activation::Identity);
            }
        }
        self.dims = dims;
    }

    /// Appends a dense layer `W x + b` (W row-major `[n_out][n_in]`).
    fn dense(
        &mut self,
        n_in: usize,
        n_out: usize,
        mut w: Vec<f64>,
        mut b: Vec<f64>,
    ) -> Result<(), NodeReason> {
        if self.dims != [n_in] {
            return Err(shape(format!(
                "the layer takes [N, {n_in}] but the data is [N, {}]{}",
                self.dims
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.dims.len() > 1 {
                    " (flatten it first)"
                } else {
                    ""
                }
            )));
        }
        if let Some(order) = self.order.take() {
            // The data is a channels-last value flattened: column i of the source's weights
            // reads feature order[i] of the layer graph's CHW flatten.
            let source = std::mem::take(&mut w);
            w = vec![0.0; source.len()];
            for o in 0..n_out {
                for (i, &j) in order.iter().enumerate() {
                    w[o * n_in + j] = source[o * n_in + i];
                }
            }
        }
        if self.layers.is_empty() {
            self.normalization = self.pending.take();
        } else {
            if let Some(prev) = self.open_layer() {
                prev.activation = Some(Activation::Identity);
            }
            if let Some(p) = self.pending.take() {
                for o in 0..n_out {
                    let row = &mut w[o * n_in..(o + 1) * n_in];
                    b[o] += row.iter().zip(&p.b).map(|(w, pb)| w * pb).sum::<f64>();
                    for (v, pa) in row.iter_mut().zip(&p.a) {
                        *v *= pa;
                    }
                }
            }
        }
        self.layers.push(Layer {
            kind: LayerKind::Dense,
            n_in,
            n_out,
            w,
            b,
            activation: None,
            closed_by_max_pool: false,
        });
        self.dims = vec![n_out];
        Ok(())
    }

    fn activation(&mut self, activation: Activation) -> Result<(), NodeReason> {
        if self.layers.is_empty() {
            return Err(unsupported(
                "an activation before the first layer (Gemm, MatMul or Conv)",
            ));
        }
        if let Some(p) = &self.pending {
            return Err(unsupported(format!(
                "an activation after node `{}` ({}), which follows the previous activation; kiln layers are dense, then one activation",
                p.node, p.op_type
            )));
        }
        if self
            .layers
            .last()
            .is_some_and(|l| matches!(l.kind, LayerKind::Tap { .. }))
        {
            return Err(unsupported(
                "an activation of an earlier value (not the previous layer's output); kiln fuses an activation into the layer that computes its input",
            ));
        }
        let after_pooling = self.layers.last().is_some_and(|l| l.n_out == 0);
        if let [.., before, pool] = self.layers.as_mut_slice() {
            if matches!(pool.kind, LayerKind::MaxPool { .. }) && before.closed_by_max_pool {
                before.activation = Some(activation);
                before.closed_by_max_pool = false;
                return Ok(());
            }
        }
        match self.open_layer() {
            Some(layer) => {
                layer.activation = Some(activation);
                Ok(())
            }
            None if after_pooling => Err(unsupported(
                "an activation after an average pooling or a second one after a max pooling; kiln fuses one activation into the layer before the pooling (Conv, Relu, then AveragePool)",
            )),
            None => Err(unsupported(
                "a second activation in a row; kiln layers are dense, then one activation",
            )),
        }
    }
}

impl Chain {
    /// Closes the previous value before a layer that does not fold into it: its layer gets
    /// no activation (identity), and no scale or shift may be waiting for the next layer.
    fn close_value(&mut self, what: &str) -> Result<(), NodeReason> {
        if self.layers.is_empty() {
            return Ok(());
        }
        self.begin_spatial_layer(what)
    }

    /// Appends `Tap { value }`: the data becomes the earlier value `value` of shape `dims`.
    fn tap(&mut self, value: usize, dims: Vec<usize>) -> Result<(), NodeReason> {
        self.refuse_channels_last("a branch to an earlier value")?;
        self.close_value("branch to an earlier value")?;
        self.layers.push(Layer {
            kind: LayerKind::Tap {
                value,
                spatial: dims.len() > 1,
            },
            n_in: 0,
            n_out: 0,
            w: Vec::new(),
            b: Vec::new(),
            activation: Some(Activation::Identity),
            closed_by_max_pool: false,
        });
        self.dims = dims;
        Ok(())
    }

    /// Appends `Add { other }`, open for an activation: the data plus the earlier value
    /// `other` of shape `dims`.
    fn residual_add(&mut self, other: usize, dims: &[usize]) -> Result<(), NodeReason> {
        self.refuse_channels_last("a residual Add")?;
        if dims != self.dims.as_slice() {
            return Err(shape(format!(
                "adds data of shape [N, {}] and [N, {}]; a residual Add needs both of one shape",
                dims_text(&self.dims),
                dims_text(dims)
            )));
        }
        if self.spatial_rank.is_none() && self.dims.len() == 1 {
            return Err(unsupported(
                "a residual Add in a network without convolutions; kiln's skip connections are part of its convolutional layer graph",
            ));
        }
        if self.dims.len() > 1 {
            self.spatial("residual Add")?;
        }
        self.begin_spatial_layer("residual Add")?;
        self.layers.push(Layer {
            kind: LayerKind::Add {
                other,
                spatial: self.dims.len() > 1,
            },
            n_in: 0,
            n_out: 0,
            w: Vec::new(),
            b: Vec::new(),
            activation: None,
            closed_by_max_pool: false,
        });
        Ok(())
    }

    /// The value id the data has once the next layer closes it: the number of layers, or
    /// `None` while a scale or shift waits to fold into the next dense layer (the data is
    /// then not a value of the layer graph). Before the first layer, the data is value 0
    /// (the pending map becomes the input normalisation).
    fn value_when_closed(&self) -> Option<usize> {
        if self.channels_last || self.order.is_some() {
            None
        } else if self.layers.is_empty() {
            Some(0)
        } else if self.pending.is_none() {
            Some(self.layers.len())
        } else {
            None
        }
    }
}

impl Chain {
    fn refuse_channels_last(&self, what: &str) -> Result<(), NodeReason> {
        if self.channels_last || self.order.is_some() {
            return Err(unsupported(format!(
                "{what} of channels-last data [N, {}] (after a Transpose from NCHW); kiln's skip connections join NCHW values",
                dims_text(&self.dims)
            )));
        }
        Ok(())
    }

    /// A Transpose of a spatial value from NCHW to channels last (`[C, H, W]` to
    /// `[H, W, C]`, `[C, L]` to `[L, C]`): a view of the same value, whose features keep
    /// their layer-graph index in `order`.
    fn view_channels_last(&mut self) {
        let (c, h, w) = match self.dims.as_slice() {
            [c, h, w] => (*c, *h, *w),
            [c, l] => (*c, 1, *l),
            _ => unreachable!("checked by the caller"),
        };
        // Position (y, x, ch) of the view is (ch, y, x) of the value.
        self.order = Some(
            (0..c * h * w)
                .map(|i| {
                    let (y, x, ch) = (i / (w * c), i / c % w, i % c);
                    (ch * h + y) * w + x
                })
                .collect(),
        );
        self.dims = if self.dims.len() == 3 {
            vec![h, w, c]
        } else {
            vec![w, c]
        };
        self.channels_last = true;
    }

    /// A Transpose of a channels-last view back to NCHW: the value itself again.
    fn view_channels_first(&mut self) {
        self.dims = match self.dims.as_slice() {
            [h, w, c] => vec![*c, *h, *w],
            [l, c] => vec![*c, *l],
            _ => unreachable!("checked by the caller"),
        };
        self.order = None;
        self.channels_last = false;
    }
}

/// Whether `perm` (a Transpose's, batch first) takes channels-last data of `rank` (batch
/// included) to channels first: `[0, 3, 1, 2]` (NHWC to NCHW) or `[0, 2, 1]` (NLC to NCL).
fn to_channels_first_perm(perm: &[i64], rank: usize) -> bool {
    match rank {
        4 => perm == [0, 3, 1, 2],
        3 => perm == [0, 2, 1],
        _ => false,
    }
}

/// Whether `perm` takes channels-first data of `rank` to channels last: `[0, 2, 3, 1]` or
/// `[0, 2, 1]`.
fn to_channels_last_perm(perm: &[i64], rank: usize) -> bool {
    match rank {
        4 => perm == [0, 2, 3, 1],
        3 => perm == [0, 2, 1],
        _ => false,
    }
}

/// The first tensor of the run of Identity, Dropout and Cast nodes that ends in `name`.
fn canonical(same_value: &HashMap<String, String>, name: &str) -> String {
    same_value
        .get(name)
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// The value id and dims of the data tensor `name`, through Identity, Dropout and Cast.
fn find_value(
    values: &HashMap<String, (usize, Vec<usize>)>,
    same_value: &HashMap<String, String>,
    name: &str,
) -> Option<(usize, Vec<usize>)> {
    values.get(&canonical(same_value, name)).cloned()
}

fn dims_text(dims: &[usize]) -> String {
    dims.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Graph facts the walk needs.
struct Graph<'a> {
    constants: HashMap<String, Tensor>,
    /// Why a constant-looking tensor could not be evaluated.
    constant_failures: HashMap<String, ImportErrorKind>,
    consumers: HashMap<&'a str, Vec<usize>>,
    outputs: HashSet<&'a str>,
}

impl Graph<'_> {
    /// The constant behind input `slot` of `node`.
    fn constant(
        &self,
        node: &NodeProto,
        index: usize,
        slot: usize,
    ) -> Result<&Tensor, ImportErrorKind> {
        let name = node.input.get(slot).map(String::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(node_error(
                node,
                index,
                shape(format!("input {slot} is missing")),
            ));
        }
        if let Some(t) = self.constants.get(name) {
            return Ok(t);
        }
        if let Some(failure) = self.constant_failures.get(name) {
            return Err(clone_kind(failure));
        }
        Err(node_error(
            node,
            index,
            NodeReason::NonConstantWeights {
                input: name.to_owned(),
            },
        ))
    }

    fn optional_constant(
        &self,
        node: &NodeProto,
        index: usize,
        slot: usize,
    ) -> Result<Option<&Tensor>, ImportErrorKind> {
        match node.input.get(slot) {
            None => Ok(None),
            Some(name) if name.is_empty() => Ok(None),
            Some(_) => self.constant(node, index, slot).map(Some),
        }
    }
}

fn clone_kind(kind: &ImportErrorKind) -> ImportErrorKind {
    match kind {
        ImportErrorKind::Node {
            node,
            op_type,
            reason,
        } => ImportErrorKind::Node {
            node: node.clone(),
            op_type: op_type.clone(),
            reason: reason.clone(),
        },
        ImportErrorKind::Tensor { tensor, detail } => ImportErrorKind::Tensor {
            tensor: tensor.clone(),
            detail: detail.clone(),
        },
        other => ImportErrorKind::Graph {
            detail: other.to_string(),
        },
    }
}

/// Evaluates every node whose inputs are all constants (Constant nodes
/// included); records failures for the walk to report if it needs the value.
fn fold_constants(
    graph: &GraphProto,
    opset: i64,
    initializers: &HashMap<String, Tensor>,
) -> (
    HashMap<String, Tensor>,
    HashMap<String, ImportErrorKind>,
    HashSet<usize>,
) {
    let mut constants = initializers.clone();
    let mut failures = HashMap::new();
    let mut folded = HashSet::new();
    let mut budget = CONSTANT_FOLDING_BUDGET;
    let graph_inputs: HashSet<&str> = graph
        .input
        .iter()
        .filter_map(|i| i.name.as_deref())
        .filter(|name| !initializers.contains_key(*name))
        .collect();
    for (index, node) in graph.node.iter().enumerate() {
        let inputs: Vec<&str> = node
            .input
            .iter()
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .collect();
        let all_constant = inputs
            .iter()
            .all(|name| constants.contains_key(*name) && !graph_inputs.contains(name));
        let is_constant_op = node.op_type.as_deref() == Some("Constant");
        if !(is_constant_op || (!inputs.is_empty() && all_constant)) {
            continue;
        }
        let inputs: Vec<Option<&Tensor>> = node
            .input
            .iter()
            .map(|name| {
                if name.is_empty() {
                    None
                } else {
                    constants.get(name)
                }
            })
            .collect();
        let result = if budget == 0 {
            Err(eval::EvalError {
                node: node_label(node, index),
                op_type: op_name(node),
                detail: format!(
                    "constant folding computes more than {CONSTANT_FOLDING_BUDGET} elements in all"
                ),
            })
        } else {
            eval::eval_node(node, index, opset, &inputs)
        };
        match result {
            Ok(outputs) => {
                budget = budget.saturating_sub(outputs.iter().map(Tensor::len).sum());
                for (name, tensor) in node.output.iter().zip(outputs) {
                    constants.insert(name.clone(), tensor);
                }
                folded.insert(index);
            }
            Err(e) => {
                for name in &node.output {
                    failures.insert(
                        name.clone(),
                        ImportErrorKind::Node {
                            node: e.node.clone(),
                            op_type: e.op_type.clone(),
                            reason: unsupported(e.detail.clone()),
                        },
                    );
                }
                folded.insert(index);
            }
        }
    }
    (constants, failures, folded)
}

/// Folds the loaded model into an [`ImportedMlp`] with the default [`ImportOptions`].
pub fn fold(loaded: &LoadedModel) -> Result<ImportedMlp, ImportErrorKind> {
    fold_with(loaded, &ImportOptions::default())
}

/// Folds the loaded model into an [`ImportedMlp`].
pub fn fold_with(
    loaded: &LoadedModel,
    options: &ImportOptions,
) -> Result<ImportedMlp, ImportErrorKind> {
    let graph = loaded
        .proto
        .graph
        .as_ref()
        .ok_or(ImportErrorKind::NoGraph)?;
    let opset = loaded.opset;
    let (constants, constant_failures, folded) = fold_constants(graph, opset, &loaded.initializers);
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, node) in graph.node.iter().enumerate() {
        if folded.contains(&index) {
            continue;
        }
        for name in &node.input {
            if !name.is_empty() {
                let list = consumers.entry(name.as_str()).or_default();
                if !list.contains(&index) {
                    list.push(index);
                }
            }
        }
    }
    let g = Graph {
        constants,
        constant_failures,
        consumers,
        outputs: graph
            .output
            .iter()
            .filter_map(|o| o.name.as_deref())
            .collect(),
    };

    let mut input = graph_input(graph, &loaded.initializers)?;
    let mut chain = Chain {
        dims: input.dims.clone(),
        pending: None,
        normalization: None,
        layers: Vec::new(),
        spatial_rank: None,
        first_dims: None,
        order: None,
        channels_last: false,
    };
    let mut visited: HashSet<usize> = folded.clone();
    let mut current = input.name.clone();
    let mut notices = Vec::new();
    // The data tensors so far (the input and the outputs of walked nodes), and those that are
    // values of the layer graph: value id and non-batch dims. A tensor becomes a value when
    // the walk leaves it for a layer that does not fold into it.
    let mut produced: HashSet<String> = HashSet::new();
    // How many of each node's data inputs (distinct, not constants) are still to come, and
    // the nodes (not of the head) whose data inputs are all there, in file order.
    let is_data = |name: &str| {
        !name.is_empty()
            && !g.constants.contains_key(name)
            && !g.constant_failures.contains_key(name)
    };
    let mut missing: Vec<usize> = graph
        .node
        .iter()
        .map(|node| {
            let names: HashSet<&str> = node
                .input
                .iter()
                .map(String::as_str)
                .filter(|name| is_data(name))
                .collect();
            names.len()
        })
        .collect();
    let mut ready: BTreeSet<usize> = BTreeSet::new();
    let mut produce = |name: &str, produced: &mut HashSet<String>, ready: &mut BTreeSet<usize>| {
        if !is_data(name) || !produced.insert(name.to_owned()) {
            return;
        }
        for &consumer in g.consumers.get(name).into_iter().flatten() {
            // Each distinct input counts once, so a node becomes ready once.
            if missing[consumer] == 1 && !is_head_op(&graph.node[consumer]) {
                ready.insert(consumer);
            }
            missing[consumer] = missing[consumer].saturating_sub(1);
        }
    };
    produce(&input.name, &mut produced, &mut ready);
    let mut values: HashMap<String, (usize, Vec<usize>)> = HashMap::new();
    // Identity, Dropout and Cast: their output is their input's value. Each such tensor maps
    // to the first tensor of its run, under which `values` holds the value.
    let mut same_value: HashMap<String, String> = HashMap::new();

    // The nodes in an order that keeps each chain of layers together: a node that reads the
    // current data first, then any other node whose inputs are all there (a skip
    // connection's other branch), until the head.
    loop {
        if g.outputs.contains(current.as_str()) {
            break;
        }
        let consumers = g
            .consumers
            .get(current.as_str())
            .cloned()
            .unwrap_or_default();
        if consumers.iter().any(|&i| is_head_op(&graph.node[i])) {
            break;
        }
        let next = consumers
            .iter()
            .copied()
            .find(|i| ready.contains(i))
            .or_else(|| ready.first().copied());
        let Some(index) = next else {
            break;
        };
        ready.remove(&index);
        let node = &graph.node[index];
        // A node that reads its own output (an invalid, cyclic graph) would be walked forever.
        if node
            .output
            .iter()
            .any(|out| !out.is_empty() && node.input.contains(out))
        {
            return Err(node_error(
                node,
                index,
                shape("the node reads its own output: the graph has a cycle"),
            ));
        }
        let fail = |reason| node_error(node, index, reason);
        let op = node.op_type.as_deref().unwrap_or("");
        let domain = node.domain.as_deref().unwrap_or("");
        let data: Vec<&String> = node
            .input
            .iter()
            .filter(|name| produced.contains(*name) && !g.constants.contains_key(name.as_str()))
            .collect();
        let residual = matches!(domain, "" | "ai.onnx") && op == "Add" && data.len() == 2;
        // The value behind a data tensor that is not the current data.
        let value_of = |values: &HashMap<String, (usize, Vec<usize>)>, name: &str| {
            find_value(values, &same_value, name).ok_or_else(|| {
                fail(unsupported(format!(
                    "it reads `{name}`, which is not a value of kiln's layer graph: only the input (after its normalisation) and a layer's output (after its activation) can be read by more than one layer"
                )))
            })
        };
        // A layer that does not fold into the current data closes it: remember its value.
        let layer_op = residual
            || matches!(
                op,
                "Conv"
                    | "MaxPool"
                    | "AveragePool"
                    | "GlobalAveragePool"
                    | "ReduceMean"
                    | "Gemm"
                    | "MatMul"
            );
        let primary = if residual {
            // Addition commutes: the current data, if either operand is it, then the other.
            if data[1] == &current {
                data[1]
            } else {
                data[0]
            }
        } else {
            data.first().copied().unwrap_or(&current)
        };
        if *primary != current {
            // A skip connection's branch: the layer reads an earlier value.
            let previous = chain.value_when_closed();
            if let Some(value) = previous {
                values.insert(
                    canonical(&same_value, &current),
                    (value, chain.dims.clone()),
                );
            }
            let (value, dims) = value_of(&values, primary)?;
            // Another name of the previous value (through an Identity) needs no Tap.
            if previous != Some(value) {
                chain.tap(value, dims).map_err(fail)?;
            }
            current = primary.clone();
        } else if layer_op {
            if let Some(value) = chain.value_when_closed() {
                values.insert(
                    canonical(&same_value, &current),
                    (value, chain.dims.clone()),
                );
            }
        }
        let data_slot = node.input.iter().position(|n| *n == current).unwrap_or(0);
        let ml = domain == "ai.onnx.ml";
        // An activation or a map folded into the layer that computes the current data changes
        // that tensor: nothing else may read it.
        let folds_into_layer = match (ml, op) {
            (false, "Relu" | "Tanh" | "Sigmoid" | "LeakyRelu" | "Relu6" | "Clip") => true,
            (false, "Add" | "Sub" | "Mul" | "Div" | "BatchNormalization") | (true, "Scaler") => {
                !residual && chain.open_layer().is_some()
            }
            _ => false,
        };
        if folds_into_layer {
            let readers = g.consumers.get(current.as_str()).map_or(0, Vec::len);
            if readers > 1 || g.outputs.contains(current.as_str()) {
                return Err(fail(unsupported(format!(
                    "`{current}` is read by {} and is folded into the layer that computes it; kiln's layers end in their activation, so no other layer can read the value before it",
                    if readers > 1 { "another node too" } else { "the graph's outputs too" }
                ))));
            }
        }
        match (ml, op) {
            _ if residual => {
                let other = if data[0] == &current && data[1] != &current {
                    data[1]
                } else {
                    data[0]
                };
                let (other, dims) = value_of(&values, other)?;
                chain.residual_add(other, &dims).map_err(fail)?;
            }
            (false, "Identity") => {}
            (false, "Dropout") => {
                if node.output.iter().skip(1).any(|o| {
                    !o.is_empty()
                        && (g.consumers.contains_key(o.as_str()) || g.outputs.contains(o.as_str()))
                }) {
                    return Err(fail(unsupported("the Dropout mask output is used")));
                }
            }
            (false, "Cast") => {
                let to = attr_int(node, "to", 0);
                if to != DataType::Float as i64 {
                    return Err(fail(unsupported(format!(
                        "a Cast of the features to type {to}; kiln computes in FLOAT"
                    ))));
                }
            }
            (false, "Flatten") => {
                let rank = chain.dims.len() as i64 + 1;
                let axis = attr_int(node, "axis", 1);
                let axis = if axis < 0 { axis + rank } else { axis };
                if axis != 1 {
                    return Err(fail(shape(format!(
                        "Flatten axis {} mixes the batch dimension with the features; expected axis 1",
                        attr_int(node, "axis", 1)
                    ))));
                }
                let n = chain.n_features();
                chain.flatten(vec![n]);
                chain.channels_last = false;
            }
            (false, "Transpose") => {
                let rank = chain.dims.len() + 1;
                let perm: Vec<i64> = attr(node, "perm")
                    .map(|a| a.ints.clone())
                    .unwrap_or_else(|| (0..rank as i64).rev().collect());
                let of_the_input = chain.layers.is_empty()
                    && chain.spatial_rank.is_none()
                    && input.layout == InputLayout::Direct
                    && chain.dims == input.dims;
                if of_the_input && to_channels_first_perm(&perm, rank) {
                    input.layout = InputLayout::ChannelsLast;
                    if input.reorders() && !options.reorder_channels_last {
                        return Err(fail(unsupported(format!(
                            "the input `{}` is channels last, [N, {}] (Keras's NHWC: a row of data is HWC, pixel by pixel), and this Transpose makes it channels first; the layer graph reads CHW rows and this import does not reorder them (ImportOptions::reorder_channels_last), so it would read every pixel's channels from the wrong place",
                            input.name,
                            dims_text(&input.dims)
                        ))));
                    }
                    // A scale or shift of the input before the Transpose, in the layer
                    // graph's order.
                    let order = input.layer_order();
                    if let Some(p) = &mut chain.pending {
                        p.a = order.iter().map(|&i| p.a[i]).collect();
                        p.b = order.iter().map(|&i| p.b[i]).collect();
                    }
                    let mut dims = input.dims.clone();
                    dims.rotate_right(1);
                    chain.dims = dims;
                } else if !chain.layers.is_empty()
                    && !chain.channels_last
                    && chain.order.is_none()
                    && chain.spatial_rank == Some(rank.saturating_sub(2))
                    && to_channels_last_perm(&perm, rank)
                {
                    chain.view_channels_last();
                } else if chain.channels_last && to_channels_first_perm(&perm, rank) {
                    chain.view_channels_first();
                } else {
                    return Err(fail(unsupported(format!(
                        "perm {perm:?} of [N, {}]{}; kiln reads a Transpose of the input from channels last to first ([0, 3, 1, 2] or [0, 2, 1], as tf2onnx writes Keras's NHWC input), and of a spatial layer's output to channels last and back, or before a Flatten, Reshape or spatial mean",
                        dims_text(&chain.dims),
                        if chain.channels_last { " (channels last)" } else { "" }
                    ))));
                }
            }
            (false, "Reshape") => {
                let target = g.constant(node, index, 1)?;
                let target = target
                    .to_i64()
                    .ok_or_else(|| fail(shape("the shape input must be INT64")))?;
                let dims = reshape_keeping_batch(
                    &chain.dims,
                    &target,
                    input.fixed_batch,
                    attr_int(node, "allowzero", 0) != 0,
                )
                .map_err(|d| fail(shape(d)))?;
                if chain.layers.iter().any(|l| l.kind.is_spatial()) && dims.len() != 1 {
                    return Err(fail(shape(format!(
                        "shape {target:?} after spatial layers; kiln flattens them to [N, {}] before a dense layer",
                        chain.n_features()
                    ))));
                }
                if dims.len() == 1 {
                    chain.channels_last = false;
                } else if chain.channels_last || chain.order.is_some() {
                    return Err(fail(shape(format!(
                        "shape {target:?} of channels-last data [N, {}]; kiln reads such data only flattened to [N, {}] before a dense layer",
                        dims_text(&chain.dims),
                        chain.n_features()
                    ))));
                }
                chain.flatten(dims);
            }
            (false, "Add" | "Sub" | "Mul" | "Div") => {
                let other_slot = 1 - data_slot.min(1);
                let constant = g.constant(node, index, other_slot)?;
                let c = broadcast_constant(constant, &chain.dims).map_err(fail)?;
                let n = c.len();
                let (a, b): (Vec<f64>, Vec<f64>) = match (op, data_slot) {
                    ("Add", _) => (vec![1.0; n], c),
                    ("Sub", 0) => (vec![1.0; n], c.iter().map(|v| -v).collect()),
                    ("Sub", _) => (vec![-1.0; n], c),
                    ("Mul", _) => (c, vec![0.0; n]),
                    ("Div", 0) => (c.iter().map(|v| 1.0 / v).collect(), vec![0.0; n]),
                    _ => {
                        return Err(fail(unsupported(
                            "a constant divided by the data is not an affine map",
                        )))
                    }
                };
                if a.iter().chain(&b).any(|v| !v.is_finite()) {
                    return Err(fail(unsupported(
                        "the constant gives a non-finite scale or offset (division by 0?)",
                    )));
                }
                chain
                    .affine(Affine {
                        a,
                        b,
                        node: node_label(node, index),
                        op_type: op.to_owned(),
                    })
                    .map_err(fail)?;
            }
            (true, "Scaler") => {
                let n = chain.n_features();
                let per_feature = |name: &str, default: f64| -> Result<Vec<f64>, ImportErrorKind> {
                    let values: Vec<f64> = attr(node, name)
                        .map(|a| a.floats.iter().map(|&v| f64::from(v)).collect())
                        .unwrap_or_default();
                    match values.len() {
                        0 => Ok(vec![default; n]),
                        1 => Ok(vec![values[0]; n]),
                        len if len == n => Ok(values),
                        len => Err(fail(shape(format!(
                            "`{name}` has {len} values for {n} features"
                        )))),
                    }
                };
                let offset = per_feature("offset", 0.0)?;
                let scale = per_feature("scale", 1.0)?;
                let b = offset.iter().zip(&scale).map(|(o, s)| -o * s).collect();
                chain
                    .affine(Affine {
                        a: scale,
                        b,
                        node: node_label(node, index),
                        op_type: "ai.onnx.ml.Scaler".into(),
                    })
                    .map_err(fail)?;
            }
            (false, "BatchNormalization") => {
                if attr_int(node, "training_mode", 0) != 0 {
                    return Err(fail(unsupported("training_mode is 1")));
                }
                if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                    return Err(fail(unsupported(
                        "the running mean and variance outputs are used (training mode)",
                    )));
                }
                let params: Vec<Vec<f32>> = (1..5)
                    .map(|slot| {
                        let t = g.constant(node, index, slot)?;
                        t.as_f32().map(<[f32]>::to_vec).ok_or_else(|| {
                            fail(shape("BatchNormalization parameters must be FLOAT"))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let channels = chain.dims.first().copied().unwrap_or(0);
                if params.iter().any(|p| p.len() != channels) {
                    return Err(fail(shape(format!(
                        "scale, B, mean and var must have {channels} values, one per channel of [N, {}]",
                        chain.dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    ))));
                }
                let refs: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
                let (scale, bias) =
                    eval::batch_norm_affine(&refs, f64::from(attr_float(node, "epsilon", 1e-5)));
                let inner: usize = chain.dims.iter().skip(1).product();
                let n = chain.n_features();
                let a = (0..n).map(|i| scale[i / inner.max(1)]).collect();
                let b = (0..n).map(|i| bias[i / inner.max(1)]).collect();
                chain
                    .affine(Affine {
                        a,
                        b,
                        node: node_label(node, index),
                        op_type: "BatchNormalization".into(),
                    })
                    .map_err(fail)?;
            }
            (false, "Gemm") => {
                if data_slot != 0 {
                    return Err(fail(shape(
                        "the data is Gemm's B input; kiln expects it as A",
                    )));
                }
                if attr_int(node, "transA", 0) != 0 {
                    return Err(fail(shape("transA=1 would multiply across the batch; the data must be A [N, features]")));
                }
                let trans_b = attr_int(node, "transB", 0) != 0;
                let alpha = f64::from(attr_float(node, "alpha", 1.0));
                let beta = f64::from(attr_float(node, "beta", 1.0));
                let weights = g.constant(node, index, 1)?;
                let (w, n_in, n_out) = weight_matrix(weights, trans_b).map_err(fail)?;
                let w = w.into_iter().map(|v| v * alpha).collect();
                let b = match g.optional_constant(node, index, 2)? {
                    None => vec![0.0; n_out],
                    Some(c) => per_output_bias(c, n_out)
                        .map_err(fail)?
                        .into_iter()
                        .map(|v| v * beta)
                        .collect(),
                };
                chain.dense(n_in, n_out, w, b).map_err(fail)?;
            }
            (false, "MatMul") => {
                if data_slot != 0 {
                    return Err(fail(shape(
                        "the data is MatMul's second input; kiln expects x @ W",
                    )));
                }
                let weights = g.constant(node, index, 1)?;
                if weights.dims.len() != 2 {
                    return Err(fail(shape(format!(
                        "the weight has shape {:?}, expected a matrix [inputs, outputs]",
                        weights.dims
                    ))));
                }
                let (w, n_in, n_out) = weight_matrix(weights, false).map_err(fail)?;
                chain
                    .dense(n_in, n_out, w, vec![0.0; n_out])
                    .map_err(fail)?;
            }
            (false, "Conv") => {
                if data_slot != 0 {
                    return Err(fail(shape(
                        "the data is Conv's weight input; kiln expects it as X",
                    )));
                }
                let weights = g.constant(node, index, 1)?;
                let bias = g.optional_constant(node, index, 2)?;
                chain.conv(node, weights, bias).map_err(fail)?;
            }
            (false, "MaxPool" | "AveragePool") => {
                if node.output.iter().skip(1).any(|o| {
                    !o.is_empty()
                        && (g.consumers.contains_key(o.as_str()) || g.outputs.contains(o.as_str()))
                }) {
                    return Err(fail(unsupported("the MaxPool Indices output is used")));
                }
                let (c, hw, rank) = chain.spatial(op).map_err(fail)?;
                let window = spatial::pool_window(node, rank, hw).map_err(fail)?;
                // An activation after a max pooling may become the layer before it's only if
                // nothing else reads that layer's output.
                let reopenable = g.consumers.get(current.as_str()).map_or(0, Vec::len) == 1
                    && !g.outputs.contains(current.as_str());
                let kind = if op == "MaxPool" {
                    LayerKind::MaxPool { window }
                } else {
                    LayerKind::AvgPool { window }
                };
                chain
                    .pool(kind, c, window.output, reopenable)
                    .map_err(fail)?;
            }
            (false, "GlobalAveragePool") => {
                let (c, _, _) = chain.spatial(op).map_err(fail)?;
                chain
                    .pool(LayerKind::GlobalAvgPool, c, [1, 1], false)
                    .map_err(fail)?;
            }
            (false, "ReduceMean") => {
                // PyTorch's dynamo exporter writes adaptive_avg_pool2d(x, 1) as the mean over
                // the spatial axes: a global average pooling.
                let rank = chain.dims.len() + 1;
                let axes = if opset < 18 {
                    attr(node, "axes").map(|a| a.ints.clone())
                } else {
                    g.optional_constant(node, index, 1)?
                        .map(|t| {
                            t.to_i64()
                                .ok_or_else(|| fail(shape("the axes input must be INT64")))
                        })
                        .transpose()?
                };
                let mut axes: Vec<i64> = axes
                    .unwrap_or_default()
                    .iter()
                    .map(|&a| if a < 0 { a + rank as i64 } else { a })
                    .collect();
                axes.sort_unstable();
                // Channels last ([N, H, W, C] after a Transpose), the spatial axes are 1, 2.
                let channels_last = chain.channels_last;
                let spatial_axes: Vec<i64> = if channels_last {
                    (1..rank as i64 - 1).collect()
                } else {
                    (2..rank as i64).collect()
                };
                if rank < 3 || axes != spatial_axes {
                    return Err(fail(unsupported(format!(
                        "a mean over axes {:?} of [N, {}]{}; kiln reads ReduceMean over the spatial axes {spatial_axes:?} only, as a global average pooling",
                        axes,
                        dims_text(&chain.dims),
                        if channels_last { " (channels last)" } else { "" }
                    ))));
                }
                if channels_last {
                    chain.view_channels_first();
                }
                let (c, _, _) = chain.spatial(op).map_err(fail)?;
                chain
                    .pool(LayerKind::GlobalAvgPool, c, [1, 1], false)
                    .map_err(fail)?;
                if attr_int(node, "keepdims", 1) == 0 {
                    chain.flatten(vec![c]);
                } else if channels_last {
                    // [N, 1, 1, C]: the same features in the same order.
                    chain.view_channels_last();
                }
            }
            (false, "Relu") => chain.activation(Activation::Relu).map_err(fail)?,
            (false, "Tanh") => chain.activation(Activation::Tanh).map_err(fail)?,
            (false, "Sigmoid") => chain.activation(Activation::Sigmoid).map_err(fail)?,
            (false, "LeakyRelu") => chain
                .activation(Activation::LeakyRelu {
                    alpha: attr_float(node, "alpha", 0.01),
                })
                .map_err(fail)?,
            (false, "Relu6") | (_, "Relu6") => chain.activation(Activation::Relu6).map_err(fail)?,
            (false, "Clip") => {
                let (lo, hi) = clip_bounds(&g, node, index, opset)?;
                let activation = match (lo, hi) {
                    (0.0, 6.0) => Activation::Relu6,
                    (0.0, hi) if hi == f32::MAX || hi == f32::INFINITY => Activation::Relu,
                    _ => {
                        return Err(fail(unsupported(format!(
                        "Clip({lo}, {hi}); kiln folds Clip(0, 6) (Relu6) and Clip(0, inf) (Relu)"
                    ))))
                    }
                };
                chain.activation(activation).map_err(fail)?;
            }
            _ => {
                return Err(fail(unsupported(format!(
                    "{} is not part of a kiln layer graph",
                    op_name(node)
                ))))
            }
        }
        visited.insert(index);
        for out in &node.output {
            produce(out, &mut produced, &mut ready);
        }
        if matches!((ml, op), (false, "Identity" | "Dropout" | "Cast")) {
            if let Some(out) = node.output.first() {
                same_value.insert(out.clone(), canonical(&same_value, &current));
            }
        }
        current = match node.output.first() {
            Some(out) if !out.is_empty() => out.clone(),
            _ => return Err(fail(shape("the node has no output"))),
        };
    }

    if chain.spatial_rank.is_none()
        && chain
            .layers
            .iter()
            .any(|l| matches!(l.kind, LayerKind::Tap { .. } | LayerKind::Add { .. }))
    {
        return Err(ImportErrorKind::Graph {
            detail: "the dense layers branch: kiln's skip connections are part of its convolutional layer graph, an MLP is a chain".to_owned(),
        });
    }
    if chain.layers.is_empty() {
        return Err(ImportErrorKind::Graph {
            detail: format!(
                "no dense layer (Gemm, or MatMul then Add) on the path from input `{}`",
                input.name
            ),
        });
    }
    if let Some(p) = &chain.pending {
        return Err(ImportErrorKind::Node {
            node: p.node.clone(),
            op_type: p.op_type.clone(),
            reason: unsupported("an affine map after the last activation; kiln's outputs end in the last layer's activation"),
        });
    }
    if let Some(layer) = chain.open_layer() {
        layer.activation = Some(Activation::Identity);
    }
    if let Some(order) = chain.order.take() {
        if order.iter().enumerate().any(|(i, &j)| i != j) {
            return Err(ImportErrorKind::Graph {
                detail: "the outputs are a spatial value flattened channels last (HWC) with no dense layer after it; kiln's layer graph flattens CHW".to_owned(),
            });
        }
    }
    if chain.dims.len() != 1 {
        return Err(ImportErrorKind::Graph {
            detail: format!(
                "the last layer's output has shape [N, {:?}], expected [N, classes]",
                chain.dims
            ),
        });
    }

    // The head: what each remaining node computes from the logits. Each tensor gets its kind,
    // the tensor of the engine model that holds the same values (or the class index, for a
    // label the dropped tail maps through the classes), and whether a dropped node precedes it.
    let mut kinds: HashMap<String, (OutputKind, Option<String>, bool)> = HashMap::new();
    kinds.insert(
        current.clone(),
        (OutputKind::Logits, Some(current.clone()), false),
    );
    let mut dropped_nodes = Vec::new();
    for (index, node) in graph.node.iter().enumerate() {
        if visited.contains(&index) {
            continue;
        }
        let fail = |reason| node_error(node, index, reason);
        let Some(source) = node.input.iter().find_map(|name| kinds.get(name).cloned()) else {
            return Err(fail(unsupported(
                "the node is not on the path from the input through the dense layers",
            )));
        };
        let (kind, source_engine, after_dropped) = source;
        let op = node.op_type.as_deref().unwrap_or("");
        let label = node_label(node, index);
        let class_axis_ok = |node: &NodeProto, default: i64| {
            let axis = attr_int(node, "axis", default);
            axis == 1 || axis == -1
        };
        // The node's output kind, and whether the node itself is dropped.
        let (out_kind, drop_node): (OutputKind, bool) = match (op, &kind) {
            ("Identity", _) => (kind.clone(), false),
            ("Softmax" | "LogSoftmax", OutputKind::Logits) => {
                let default = if opset < 13 { 1 } else { -1 };
                if !class_axis_ok(node, default) {
                    return Err(fail(shape(format!(
                        "{op} over axis {}; the classes are axis 1",
                        attr_int(node, "axis", default)
                    ))));
                }
                let out = if op == "Softmax" {
                    OutputKind::Probabilities
                } else {
                    OutputKind::LogProbabilities
                };
                (out, false)
            }
            ("ArgMax", OutputKind::Logits | OutputKind::Probabilities | OutputKind::LogProbabilities) => {
                if !class_axis_ok(node, 0) || attr_int(node, "select_last_index", 0) != 0 {
                    return Err(fail(shape("ArgMax must run over the class axis (1) and select the first maximum")));
                }
                (OutputKind::Label { classes: None }, false)
            }
            ("ArrayFeatureExtractor", OutputKind::Label { classes: None }) => {
                // scikit-learn: classes[argmax]. The classes are input 0.
                match g.constants.get(node.input.first().map(String::as_str).unwrap_or("")).and_then(Tensor::to_i64) {
                    Some(classes) if classes.len() == chain.dims[0] => {
                        let identity = classes.iter().enumerate().all(|(i, &c)| c == i as i64);
                        notices.push(format!(
                            "node `{label}` (ai.onnx.ml.ArrayFeatureExtractor) dropped: it maps the argmax to the classes {}; kiln's label is the argmax{}",
                            if identity { format!("0..{}", classes.len() - 1) } else { format!("{classes:?}") },
                            if identity { ", the same value" } else { ", mapped through these classes when compared" }
                        ));
                        (OutputKind::Label { classes: (!identity).then_some(classes) }, true)
                    }
                    _ => {
                        notices.push(format!(
                            "node `{label}` (ai.onnx.ml.ArrayFeatureExtractor) dropped: its class labels are not integers, so its output is not reproduced"
                        ));
                        (OutputKind::Dropped, true)
                    }
                }
            }
            ("Cast" | "Reshape" | "Flatten" | "Squeeze", OutputKind::Label { .. } | OutputKind::Dropped) => {
                if op == "Cast" && after_dropped {
                    notices.push(format!(
                        "node `{label}` (Cast) on the label dropped: kiln's label is the class index"
                    ));
                }
                (kind.clone(), false)
            }
            ("Cast", OutputKind::Probabilities | OutputKind::LogProbabilities | OutputKind::Logits)
                if attr_int(node, "to", 0) == DataType::Float as i64 =>
            {
                (kind.clone(), false)
            }
            ("ZipMap", OutputKind::Probabilities) => {
                notices.push(format!(
                    "node `{label}` (ai.onnx.ml.ZipMap) dropped: its output `{}` is the probabilities as a sequence of maps; kiln gives them as a [N, {}] tensor",
                    node.output.first().cloned().unwrap_or_default(),
                    chain.dims[0]
                ));
                (OutputKind::Probabilities, true)
            }
            _ => {
                return Err(fail(unsupported(format!(
                    "{} after the last dense layer is not an output head kiln knows (Softmax, LogSoftmax, ArgMax, and scikit-learn's ZipMap, ArrayFeatureExtractor, Cast)",
                    op_name(node)
                ))))
            }
        };
        // A node after a dropped one is dropped from the engine model too; its values are
        // then still the source's engine tensor.
        let dropped = drop_node || after_dropped;
        if dropped {
            dropped_nodes.push(index);
        }
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            let engine = match (&out_kind, dropped) {
                (OutputKind::Dropped, _) => None,
                (_, true) => source_engine.clone(),
                (_, false) => Some(out.clone()),
            };
            kinds.insert(out.clone(), (out_kind.clone(), engine, dropped));
        }
    }

    let outputs = graph
        .output
        .iter()
        .map(|o| {
            let name = o.name.clone().unwrap_or_default();
            match kinds.get(&name) {
                Some((kind, engine, _)) => Ok(ImportedOutput {
                    name,
                    kind: kind.clone(),
                    engine_tensor: engine.clone(),
                }),
                None => Err(ImportErrorKind::Graph {
                    detail: format!("output `{name}` is not computed from the MLP's layers"),
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;

    if chain.spatial_rank.is_some() && chain.layers.last().is_some_and(|l| l.kind.is_spatial()) {
        // The logits are the flattened output of a spatial layer.
        chain.layers.push(Layer {
            kind: LayerKind::Flatten,
            n_in: 0,
            n_out: 0,
            w: Vec::new(),
            b: Vec::new(),
            activation: Some(Activation::Identity),
            closed_by_max_pool: false,
        });
    }
    let n_inputs = input.dims.iter().product();
    let normalization = normalization(chain.normalization.take(), n_inputs, &mut chain.layers)?;
    let cnn = chain.spatial_rank.map(|spatial_rank| {
        let dims = chain.first_dims.clone().unwrap_or_default();
        CnnModel {
            input_shape: match dims.as_slice() {
                [c, h, w] => [*c, *h, *w],
                [c, l] => [*c, 1, *l],
                _ => [0; 3],
            },
            spatial_rank,
            layers: chain.layers.iter().map(cnn_layer).collect(),
        }
    });
    let layers = if cnn.is_some() {
        Vec::new()
    } else {
        chain.layers.iter().map(dense_layer).collect()
    };
    dropped_nodes.sort_unstable();
    dropped_nodes.dedup();
    Ok(ImportedMlp {
        input,
        n_inputs,
        normalization,
        layers,
        cnn,
        outputs,
        notices,
        opset,
        producer: format!(
            "{} {}",
            loaded.proto.producer_name.as_deref().unwrap_or("unknown"),
            loaded.proto.producer_version.as_deref().unwrap_or("")
        )
        .trim()
        .to_owned(),
        dropped_nodes,
    })
}

fn dense_layer(l: &Layer) -> DenseLayer {
    DenseLayer {
        n_inputs: l.n_in,
        n_outputs: l.n_out,
        weights: l.w.iter().map(|&v| v as f32).collect(),
        bias: l.b.iter().map(|&v| v as f32).collect(),
        activation: l.activation.unwrap_or(Activation::Identity),
    }
}

fn cnn_layer(l: &Layer) -> CnnLayer {
    let weights = || l.w.iter().map(|&v| v as f32).collect();
    let bias = || l.b.iter().map(|&v| v as f32).collect();
    let activation = l.activation.unwrap_or(Activation::Identity);
    match l.kind {
        LayerKind::Dense => CnnLayer::Dense(dense_layer(l)),
        LayerKind::Conv {
            in_channels,
            window,
        } => CnnLayer::Conv2d {
            out_channels: l.n_out,
            in_channels,
            kernel: window.kernel,
            stride: window.stride,
            pads: window.pads,
            weights: weights(),
            bias: bias(),
            activation,
        },
        LayerKind::Depthwise { window } => CnnLayer::DepthwiseConv2d {
            channels: l.n_out,
            kernel: window.kernel,
            stride: window.stride,
            pads: window.pads,
            weights: weights(),
            bias: bias(),
            activation,
        },
        LayerKind::MaxPool { window } => CnnLayer::MaxPool2d {
            kernel: window.kernel,
            stride: window.stride,
        },
        LayerKind::AvgPool { window } => CnnLayer::AvgPool2d {
            kernel: window.kernel,
            stride: window.stride,
        },
        LayerKind::GlobalAvgPool => CnnLayer::GlobalAvgPool,
        LayerKind::Flatten => CnnLayer::Flatten,
        LayerKind::Tap { value, .. } => CnnLayer::Tap { value },
        LayerKind::Add { other, .. } => CnnLayer::Add { other, activation },
    }
}

fn is_head_op(node: &NodeProto) -> bool {
    matches!(
        node.op_type.as_deref(),
        Some("Softmax" | "LogSoftmax" | "ArgMax" | "ZipMap" | "ArrayFeatureExtractor")
    )
}

/// The single graph input that is not an initializer, with its dims.
fn graph_input(
    graph: &GraphProto,
    initializers: &HashMap<String, Tensor>,
) -> Result<ImportedInput, ImportErrorKind> {
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name.as_deref().unwrap_or("")))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(ImportErrorKind::Graph {
            detail: format!(
                "the graph has {} inputs ({}); a kiln MLP has exactly one",
                inputs.len(),
                inputs
                    .iter()
                    .map(|i| format!("`{}`", i.name.as_deref().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let name = input.name.clone().unwrap_or_default();
    let fail = |detail: String| ImportErrorKind::Graph {
        detail: format!("input `{name}`: {detail}"),
    };
    let Some(type_proto::Value::TensorType(tensor_type)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(fail("is not a tensor".into()));
    };
    let elem = tensor_type.elem_type.unwrap_or(0);
    if elem != DataType::Float as i32 {
        let type_name = DataType::try_from(elem)
            .map(|t| t.as_str_name().to_owned())
            .unwrap_or_else(|_| elem.to_string());
        return Err(fail(format!("is {type_name}; kiln imports FLOAT inputs")));
    }
    let dims = tensor_type
        .shape
        .as_ref()
        .ok_or_else(|| fail("has no declared shape".into()))?
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) if *v > 0 => Some(*v as usize),
            _ => None,
        })
        .collect::<Vec<_>>();
    if dims.len() > eval::MAX_RANK {
        return Err(fail(format!(
            "has rank {}; kiln accepts up to {}",
            dims.len(),
            eval::MAX_RANK
        )));
    }
    if dims.len() < 2 {
        return Err(fail(format!(
            "has rank {}; expected [N, features] or [N, ...]",
            dims.len()
        )));
    }
    let features: Option<Vec<usize>> = dims[1..].iter().copied().collect();
    let features = features.ok_or_else(|| {
        fail("a dimension after the batch is not a fixed size; kiln needs the feature count".into())
    })?;
    if features
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .is_none_or(|n| n > MAX_FEATURES)
    {
        return Err(fail(format!(
            "has more than {MAX_FEATURES} features per sample"
        )));
    }
    Ok(ImportedInput {
        name,
        dims: features,
        fixed_batch: dims[0],
        layout: InputLayout::Direct,
    })
}

/// The weight matrix of a Gemm or MatMul as row-major `[n_out][n_in]` f64.
fn weight_matrix(
    weights: &Tensor,
    transposed: bool,
) -> Result<(Vec<f64>, usize, usize), NodeReason> {
    let values = weights.to_f64().ok_or_else(|| {
        shape(format!(
            "the weight is {}, expected FLOAT",
            weights.data.type_name()
        ))
    })?;
    let [rows, cols] = weights.dims.as_slice() else {
        return Err(shape(format!(
            "the weight has shape {:?}, expected a matrix",
            weights.dims
        )));
    };
    let (rows, cols) = (*rows, *cols);
    if transposed {
        // B is [n_out, n_in] already.
        Ok((values, cols, rows))
    } else {
        // B is [n_in, n_out].
        let mut w = vec![0.0; rows * cols];
        for i in 0..rows {
            for o in 0..cols {
                w[o * rows + i] = values[i * cols + o];
            }
        }
        Ok((w, rows, cols))
    }
}

/// A Gemm's C as one bias per output.
fn per_output_bias(c: &Tensor, n_out: usize) -> Result<Vec<f64>, NodeReason> {
    let values = c
        .to_f64()
        .ok_or_else(|| shape(format!("C is {}, expected FLOAT", c.data.type_name())))?;
    match (c.dims.as_slice(), values.len()) {
        (_, 1) if c.dims.iter().all(|&d| d == 1) => Ok(vec![values[0]; n_out]),
        ([n], _) | ([1, n], _) if *n == n_out => Ok(values),
        _ => Err(shape(format!(
            "C has shape {:?}; a bias must broadcast per output to [N, {n_out}]",
            c.dims
        ))),
    }
}

/// Clip's bounds: attributes before opset 11, optional inputs from 11 on.
fn clip_bounds(
    g: &Graph<'_>,
    node: &NodeProto,
    index: usize,
    opset: i64,
) -> Result<(f32, f32), ImportErrorKind> {
    if opset < 11 {
        return Ok((
            attr_float(node, "min", f32::MIN),
            attr_float(node, "max", f32::MAX),
        ));
    }
    let scalar = |slot: usize, default: f32| -> Result<f32, ImportErrorKind> {
        match g.optional_constant(node, index, slot)? {
            None => Ok(default),
            Some(t) => match t.to_f64().as_deref() {
                Some([v]) => Ok(*v as f32),
                _ => Err(node_error(
                    node,
                    index,
                    shape("Clip bounds must be FLOAT scalars"),
                )),
            },
        }
    };
    Ok((scalar(1, f32::MIN)?, scalar(2, f32::MAX)?))
}

/// Reshape on the data path: the batch dimension must stay first and alone.
fn reshape_keeping_batch(
    dims: &[usize],
    target: &[i64],
    fixed_batch: Option<usize>,
    allowzero: bool,
) -> Result<Vec<usize>, String> {
    let features: usize = dims.iter().product();
    let Some((&first, rest)) = target.split_first() else {
        return Err(format!("shape {target:?} drops the batch dimension"));
    };
    let batch_ok =
        first == -1 || (first == 0 && !allowzero) || fixed_batch.is_some_and(|b| first == b as i64);
    if !batch_ok {
        return Err(format!(
            "shape {target:?} does not keep the batch dimension first (expected -1 or 0 there)"
        ));
    }
    if first == -1 && rest.contains(&-1) {
        return Err(format!("shape {target:?} has more than one -1"));
    }
    let mut data_dims = vec![1usize];
    data_dims.extend_from_slice(dims);
    let mut rest_target = vec![1i64];
    rest_target.extend_from_slice(rest);
    // Resolve the feature dims against one sample.
    let resolved = eval::reshape_dims(&data_dims, &rest_target, allowzero)?;
    let out: Vec<usize> = resolved[1..].to_vec();
    if out.iter().product::<usize>() != features || out.is_empty() {
        return Err(format!(
            "shape {target:?} does not keep the {features} features of each sample together"
        ));
    }
    Ok(out)
}

/// The input normalisation in kiln's form. A feature scaled by 0 contributes
/// only its offset, which goes into the first layer's bias.
fn normalization(
    affine: Option<Affine>,
    n_inputs: usize,
    layers: &mut [Layer],
) -> Result<InputNormalization, ImportErrorKind> {
    let Some(affine) = affine else {
        return Ok(InputNormalization::None);
    };
    if affine.b.iter().all(|&b| b == 0.0) && affine.a.iter().all(|&a| a == affine.a[0]) {
        if affine.a[0] == 1.0 {
            return Ok(InputNormalization::None);
        }
        return Ok(InputNormalization::Scale {
            scale: affine.a[0] as f32,
        });
    }
    let first_is_dense = layers.first().is_some_and(|l| l.kind == LayerKind::Dense);
    if !first_is_dense && affine.a.contains(&0.0) {
        return Err(ImportErrorKind::Node {
            node: affine.node,
            op_type: affine.op_type,
            reason: unsupported(
                "an input feature scaled by 0 before a convolution; kiln's normalisation divides by a non-zero scale",
            ),
        });
    }
    let mut mean = Vec::with_capacity(n_inputs);
    let mut inv_std = Vec::with_capacity(n_inputs);
    for (j, (&a, &b)) in affine.a.iter().zip(&affine.b).enumerate() {
        if a == 0.0 {
            if let Some(first) = layers.first_mut() {
                for o in 0..first.n_out {
                    first.b[o] += first.w[o * first.n_in + j] * b;
                }
            }
            mean.push(0.0);
            inv_std.push(0.0);
        } else {
            // (x - mean) * inv_std = a x + b.
            mean.push((-b / a) as f32);
            inv_std.push(a as f32);
        }
    }
    Ok(InputNormalization::Standardize { mean, inv_std })
}
