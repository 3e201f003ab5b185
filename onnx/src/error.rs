//! The single error type of this crate.
//!
//! Every message is one line that names what is wrong and where (layer index,
//! node or tensor name, file path), so callers can print it as is.

use std::path::PathBuf;

use crate::builder::{MAX_OPSET, MIN_OPSET};

/// Everything that can go wrong while building, validating, encoding or
/// writing an ONNX model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The requested opset is outside the range this crate writes.
    #[error("opset {opset} is not supported: Kiln writes opsets {MIN_OPSET} to {MAX_OPSET}")]
    UnsupportedOpset {
        /// The rejected opset version.
        opset: i64,
    },

    /// An MLP export was asked for with no layers at all.
    #[error("cannot export an MLP with no layers")]
    NoLayers,

    /// A layer declares zero inputs or zero outputs.
    #[error(
        "layer {layer}: has {n_inputs} inputs and {n_outputs} outputs, both must be at least 1"
    )]
    EmptyLayer {
        /// Index of the layer, starting at 0.
        layer: usize,
        /// Declared input count.
        n_inputs: usize,
        /// Declared output count.
        n_outputs: usize,
    },

    /// A layer's weight vector does not match its declared shape.
    #[error(
        "layer {layer}: weights have {actual} values, expected {n_outputs} outputs x {n_inputs} inputs = {expected}"
    )]
    WeightCount {
        /// Index of the layer, starting at 0.
        layer: usize,
        /// Number of values supplied.
        actual: usize,
        /// Declared output count (rows).
        n_outputs: usize,
        /// Declared input count (columns).
        n_inputs: usize,
        /// `n_outputs * n_inputs`.
        expected: usize,
    },

    /// A layer's bias vector does not match its output count.
    #[error("layer {layer}: bias has {actual} values, expected {expected}")]
    BiasCount {
        /// Index of the layer, starting at 0.
        layer: usize,
        /// Number of values supplied.
        actual: usize,
        /// The layer's output count.
        expected: usize,
    },

    /// An int8 layer's per-channel weight scales do not match its output
    /// count.
    #[error(
        "layer {layer}: weight_scales has {actual} values, expected {expected} (one per output)"
    )]
    WeightScaleCount {
        /// Index of the layer, starting at 0.
        layer: usize,
        /// Number of values supplied.
        actual: usize,
        /// The layer's output count.
        expected: usize,
    },

    /// A quantization scale is NaN, infinite, zero or negative.
    #[error("{location} is {value}, expected a finite scale greater than 0")]
    InvalidScale {
        /// Where the scale sits, e.g. `layer 1 weight_scales[3]`.
        location: String,
        /// The offending value.
        value: f32,
    },

    /// An int8 weight is -128: Kiln's weights are symmetric, `[-127, 127]`.
    #[error(
        "layer {layer} weights[{index}] is {value}, expected a value in [-127, 127] (weights are symmetric int8)"
    )]
    WeightOutOfRange {
        /// Index of the layer, starting at 0.
        layer: usize,
        /// Index into the row-major weights.
        index: usize,
        /// The offending value.
        value: i8,
    },

    /// An int8 table activation names a function that is not computed by a
    /// table (ReLU is a clamp, identity is nothing).
    #[error(
        "layer {layer}: a table activation must be Tanh, Sigmoid or LeakyRelu, not {function}"
    )]
    NotATableFunction {
        /// Index of the layer, starting at 0.
        layer: usize,
        /// The function given, e.g. `Relu`.
        function: &'static str,
    },

    /// The int8 QDQ export was asked for a softmax output, which it never
    /// writes.
    #[error(
        "the int8 QDQ model has no probabilities output (no Softmax between quantized tensors); export it with with_probabilities = false"
    )]
    QdqProbabilities,

    /// An int16 QDQ model needs opset 21 (the first whose QuantizeLinear and
    /// DequantizeLinear take INT16) and layers without a table activation.
    #[error("{0}")]
    Int16(String),

    /// A CNN layer's parameters are inconsistent or do not fit the value it
    /// reads (channels, kernel sizes, strides, padding, weight counts).
    #[error("layer {layer} ({kind}): {reason}")]
    CnnLayer {
        /// Index of the layer, starting at 0.
        layer: usize,
        /// The layer type, e.g. `Conv2d`.
        kind: &'static str,
        /// What is wrong, in words.
        reason: String,
    },

    /// A CNN description is unusable as a whole (input shape, spatial rank,
    /// no layers, an output that is not a vector of logits).
    #[error("CNN model: {reason}")]
    CnnModel {
        /// What is wrong, in words.
        reason: String,
    },

    /// More input fraction bits than a QDQ graph rounds to.
    #[error("input fraction bits {found}: at most {max}")]
    InputFracBits {
        /// The requested bits.
        found: u8,
        /// [`crate::mlp::MAX_INPUT_FRAC_BITS`].
        max: u8,
    },

    /// A layer does not accept what the previous layer produces.
    #[error("layer {layer}: takes {n_inputs} inputs but layer {} produces {previous_outputs}", .layer - 1)]
    LayersDoNotChain {
        /// Index of the offending layer (always at least 1).
        layer: usize,
        /// The layer's declared input count.
        n_inputs: usize,
        /// The previous layer's declared output count.
        previous_outputs: usize,
    },

    /// A normalisation vector has the wrong length.
    #[error(
        "input normalization: {vector} has {actual} values, expected {expected} (one per input feature)"
    )]
    NormalizationLength {
        /// Which vector: `mean` or `inv_std`.
        vector: &'static str,
        /// Number of values supplied.
        actual: usize,
        /// Number of input features.
        expected: usize,
    },

    /// A parameter is NaN or infinite; such a model would silently produce
    /// garbage in every runtime.
    #[error("{location} is {value}, expected a finite number")]
    NonFinite {
        /// Where the value sits, e.g. `layer 1 weights[37]`.
        location: String,
        /// The offending value.
        value: f32,
    },

    /// Two metadata entries share a key, which the ONNX checker rejects.
    #[error("metadata key `{key}` appears more than once")]
    DuplicateMetadataKey {
        /// The repeated key.
        key: String,
    },

    /// An initializer's data does not fill its declared shape.
    #[error(
        "initializer `{name}`: shape {dims:?} holds {expected} values but {actual} were given"
    )]
    InitializerSize {
        /// Initializer name.
        name: String,
        /// Declared shape.
        dims: Vec<i64>,
        /// Product of `dims`.
        expected: u128,
        /// Number of values supplied.
        actual: usize,
    },

    /// A declared shape contains a negative size or an empty symbolic name.
    #[error("tensor `{tensor}`: invalid shape {dims}")]
    InvalidShape {
        /// Tensor name.
        tensor: String,
        /// The shape as written, for the message.
        dims: String,
    },

    /// A graph input, graph output or initializer has an empty name.
    #[error("a graph {kind} has an empty name")]
    EmptyName {
        /// `input`, `output` or `initializer`.
        kind: &'static str,
    },

    /// A node has an empty operator type.
    #[error("node `{node}` has an empty op_type")]
    EmptyOpType {
        /// Node name.
        node: String,
    },

    /// The same tensor name is defined twice; ONNX graphs are in SSA form.
    #[error(
        "tensor `{tensor}` is defined more than once (graph input, initializer or node output)"
    )]
    DuplicateTensor {
        /// The repeated tensor name.
        tensor: String,
    },

    /// Two nodes share a name.
    #[error("node name `{node}` is used more than once")]
    DuplicateNode {
        /// The repeated node name.
        node: String,
    },

    /// A graph output is listed twice.
    #[error("graph output `{tensor}` is declared more than once")]
    DuplicateOutput {
        /// The repeated output name.
        tensor: String,
    },

    /// A node reads a tensor nothing defines before it.
    #[error(
        "node `{node}` reads `{tensor}`, which is not a graph input, an initializer or the output of an earlier node"
    )]
    UndefinedInput {
        /// Node name (or `#index` when the node is unnamed).
        node: String,
        /// The missing tensor.
        tensor: String,
    },

    /// A graph output is never produced.
    #[error("graph output `{tensor}` is not produced by any node, input or initializer")]
    OutputNotProduced {
        /// The missing tensor.
        tensor: String,
    },

    /// Reading bytes as a `ModelProto` failed.
    #[error("bytes are not a valid ONNX model: {reason}")]
    Decode {
        /// The protobuf decoder's explanation.
        reason: prost::DecodeError,
    },

    /// Writing the model file failed. The message includes the I/O error, so
    /// it is not exposed again as a `source`.
    #[error("cannot write ONNX model to {}: {error}", path.display())]
    Write {
        /// The destination the caller asked for.
        path: PathBuf,
        /// The underlying failure.
        error: std::io::Error,
    },
}
