//! Converts a kiln model file into an ONNX graph with `kiln-onnx`.

use crate::data::Normalization;
use crate::model::ModelFile;
use crate::nn::Activation;
use kiln_onnx::builder::Producer;
use kiln_onnx::mlp::{self, DenseLayer, InputNormalization, MlpExportOptions};
use std::path::Path;

/// Options of `kiln export` that shape the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    pub opset: i64,
    pub with_probabilities: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            opset: kiln_onnx::builder::MIN_OPSET,
            with_probabilities: false,
        }
    }
}

/// The ONNX form of a trainer activation.
pub fn onnx_activation(activation: Activation) -> mlp::Activation {
    match activation {
        Activation::Relu => mlp::Activation::Relu,
        Activation::LeakyRelu { alpha } => mlp::Activation::LeakyRelu { alpha },
        Activation::Tanh => mlp::Activation::Tanh,
        Activation::Sigmoid => mlp::Activation::Sigmoid,
        Activation::Relu6 => mlp::Activation::Relu6,
        Activation::Identity => mlp::Activation::Identity,
    }
}

/// The ONNX form of the trainer's input normalization.
pub fn onnx_normalization(normalization: &Normalization) -> InputNormalization {
    match normalization {
        Normalization::None => InputNormalization::None,
        Normalization::Scale { scale } => InputNormalization::Scale { scale: *scale },
        Normalization::Standardize { mean, inv_std } => InputNormalization::Standardize {
            mean: mean.clone(),
            inv_std: inv_std.clone(),
        },
    }
}

/// The producer, documentation and metadata of every ONNX file kiln writes for
/// `model`; `extra_doc` (if not empty) is appended to the documentation string.
pub fn mlp_export_options(
    model: &ModelFile,
    options: ExportOptions,
    extra_doc: &str,
) -> MlpExportOptions {
    let widths: Vec<String> = std::iter::once(model.n_inputs)
        .chain(model.layers.iter().map(|l| l.n_outputs))
        .map(|w| w.to_string())
        .collect();
    let mut doc_string = format!(
        "A {} multilayer perceptron trained by kiln on {} ({} epochs, {} loss). Feed raw feature values: \
         the normalisation computed on the training set is part of the graph.",
        widths.join("-"),
        model.data,
        model.state.epochs_done,
        model.config.loss.name(),
    );
    if !extra_doc.is_empty() {
        doc_string.push(' ');
        doc_string.push_str(extra_doc);
    }
    let metadata = vec![
        (
            "kiln.task".to_owned(),
            serde_json::to_string(&model.task).unwrap_or_default(),
        ),
        (
            "kiln.normalization".to_owned(),
            serde_json::to_string(&model.normalization).unwrap_or_default(),
        ),
        ("kiln.data".to_owned(), model.data.to_string()),
    ];
    MlpExportOptions {
        opset: options.opset,
        with_probabilities: options.with_probabilities,
        producer: Producer {
            name: "kiln".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        doc_string,
        metadata,
    }
}

/// The ONNX model for `model`.
pub fn to_onnx(
    model: &ModelFile,
    options: ExportOptions,
) -> Result<kiln_onnx::proto::ModelProto, kiln_onnx::OnnxError> {
    let layers: Vec<DenseLayer> = model
        .layers
        .iter()
        .map(|layer| DenseLayer {
            n_inputs: layer.n_inputs,
            n_outputs: layer.n_outputs,
            weights: layer.weights.clone(),
            bias: layer.bias.clone(),
            activation: onnx_activation(layer.activation),
        })
        .collect();
    mlp::mlp_to_model(
        &layers,
        &onnx_normalization(&model.normalization),
        &mlp_export_options(model, options, ""),
    )
}

/// Writes the ONNX file for `model` atomically.
pub fn write_onnx(
    model: &ModelFile,
    options: ExportOptions,
    path: &Path,
) -> Result<(), kiln_onnx::OnnxError> {
    let proto = to_onnx(model, options)?;
    mlp::write_model_atomic(path, &proto)
}
