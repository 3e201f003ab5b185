//! The importer's typed errors. Each prints as one line that names the file
//! and the place: the node, its operator and the reason, or the tensor.

use std::path::PathBuf;

/// A failed import: the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct ImportError {
    /// The ONNX file (or the external data file) that was being read.
    pub path: PathBuf,
    pub kind: ImportErrorKind,
}

/// Why a node of the graph cannot become part of a kiln MLP.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeReason {
    /// The operator is not one the importer folds.
    #[error("unsupported op: {detail}")]
    UnsupportedOp { detail: String },
    /// A weight, bias or parameter input is computed from the data rather than stored.
    #[error("non-constant weights: input `{input}` is not an initializer or a constant")]
    NonConstantWeights { input: String },
    /// A tensor's shape does not fit where it is used.
    #[error("shape mismatch: {detail}")]
    ShapeMismatch { detail: String },
    /// An attribute value the importer does not handle.
    #[error("unsupported attribute: {detail}")]
    UnsupportedAttribute { detail: String },
}

/// What is wrong, without the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportErrorKind {
    /// The file (or an external data file) could not be read.
    #[error("cannot read the file: {0}")]
    Read(std::io::Error),
    /// The bytes are not an ONNX ModelProto.
    #[error("not an ONNX model: {0}")]
    Decode(String),
    /// The model has no graph.
    #[error("the model has no graph")]
    NoGraph,
    /// The default-domain opset is missing or outside 7 to 21.
    #[error("opset {found} is not supported: kiln reads ai.onnx opsets {min} to {max}")]
    Opset { found: String, min: i64, max: i64 },
    /// An initializer or constant cannot be decoded.
    #[error("tensor `{tensor}`: {detail}")]
    Tensor { tensor: String, detail: String },
    /// An initializer's external data is missing, outside the model's folder or too short.
    #[error("tensor `{tensor}`: external data: {detail}")]
    ExternalData { tensor: String, detail: String },
    /// The graph's inputs or outputs do not describe one MLP.
    #[error("graph: {detail}")]
    Graph { detail: String },
    /// A node cannot be folded into the MLP.
    #[error("node `{node}` ({op_type}): {reason}")]
    Node {
        node: String,
        op_type: String,
        reason: NodeReason,
    },
}
