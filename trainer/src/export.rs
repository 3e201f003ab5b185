//! Converts a kiln model file into an ONNX graph with `kiln-onnx`.

use crate::data::Normalization;
use crate::model::ModelFile;
use crate::nn::network::{Layer, Network};
use crate::nn::Activation;
use kiln_onnx::builder::Producer;
use kiln_onnx::cnn::{self, CnnLayer, CnnModel};
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
    let description = if model.is_mlp() {
        format!("{} multilayer perceptron", widths.join("-"))
    } else {
        let network = model.network();
        let shape = network.input_shape;
        let tokens: Vec<String> = network.specs().iter().map(|spec| spec.token()).collect();
        format!(
            "{}x{}x{} (HxWxC, fed as NCHW) {} network",
            shape.h,
            shape.w,
            shape.c,
            tokens.join(",")
        )
    };
    let mut doc_string = format!(
        "A {description} trained by kiln on {} ({} epochs, {} loss). Feed raw feature values: \
         the normalisation computed on the training set is part of the graph.",
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

/// The ONNX model for `model`: the MLP graph for a chain of dense layers over a feature
/// vector, the layer graph (NCHW) otherwise.
pub fn to_onnx(
    model: &ModelFile,
    options: ExportOptions,
) -> Result<kiln_onnx::proto::ModelProto, kiln_onnx::OnnxError> {
    if !model.is_mlp() {
        return cnn::cnn_to_model(
            &cnn_model(&model.network()),
            &onnx_normalization(&model.normalization),
            &mlp_export_options(model, options, ""),
        );
    }
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

/// Whether the network is one-dimensional: a `[1, l, c]` signal whose every kernel and
/// stride has height 1 (Conv1d layers). Its ONNX input is then `[N, C, L]`.
pub fn is_one_dimensional(network: &Network<f32>) -> bool {
    let flat = |kernel: [usize; 2], stride: [usize; 2]| kernel[0] == 1 && stride[0] == 1;
    let mut spatial = false;
    for layer in &network.layers {
        let fits = match layer {
            Layer::Conv2d(conv) => flat(conv.kernel, conv.stride),
            Layer::DepthwiseConv2d(conv) => flat(conv.kernel, conv.stride),
            Layer::MaxPool2d(pool) | Layer::AvgPool2d(pool) => flat(pool.kernel, pool.stride),
            Layer::GlobalAvgPool(_) => true,
            Layer::Dense(_) | Layer::Flatten(_) | Layer::Tap(_) | Layer::Add(_) => continue,
        };
        if !fits {
            return false;
        }
        spatial = true;
    }
    spatial && network.input_shape.h == 1
}

/// The dimensions of one sample at the ONNX input, after the batch: `[n_features]` for an
/// MLP, `[c, h, w]` for a layer graph, `[c, l]` for a one-dimensional one.
pub fn onnx_sample_dims(model: &ModelFile) -> Vec<usize> {
    if model.is_mlp() {
        return vec![model.n_inputs];
    }
    let network = model.network();
    let shape = network.input_shape;
    if is_one_dimensional(&network) {
        vec![shape.c, shape.w]
    } else {
        vec![shape.c, shape.h, shape.w]
    }
}

/// The neutral ONNX description of a layer graph; weights row-major as ONNX stores them.
pub fn cnn_model(network: &Network<f32>) -> CnnModel {
    let row_major = |weights: &nalgebra::DMatrix<f32>| -> Vec<f32> {
        weights.transpose().iter().copied().collect()
    };
    let layers = network
        .layers
        .iter()
        .map(|layer| match layer {
            Layer::Dense(dense) => CnnLayer::Dense(DenseLayer {
                n_inputs: dense.n_inputs(),
                n_outputs: dense.n_outputs(),
                weights: row_major(&dense.weights),
                bias: dense.bias.iter().copied().collect(),
                activation: onnx_activation(dense.activation),
            }),
            Layer::Conv2d(conv) => CnnLayer::Conv2d {
                out_channels: conv.output_shape.c,
                in_channels: conv.input_shape.c,
                kernel: conv.kernel,
                stride: conv.stride,
                pads: conv.onnx_pads(),
                weights: row_major(&conv.weights),
                bias: conv.bias.iter().copied().collect(),
                activation: onnx_activation(conv.activation),
            },
            Layer::DepthwiseConv2d(conv) => CnnLayer::DepthwiseConv2d {
                channels: conv.input_shape.c,
                kernel: conv.kernel,
                stride: conv.stride,
                pads: conv.onnx_pads(),
                weights: row_major(&conv.weights),
                bias: conv.bias.iter().copied().collect(),
                activation: onnx_activation(conv.activation),
            },
            Layer::MaxPool2d(pool) => CnnLayer::MaxPool2d {
                kernel: pool.kernel,
                stride: pool.stride,
            },
            Layer::AvgPool2d(pool) => CnnLayer::AvgPool2d {
                kernel: pool.kernel,
                stride: pool.stride,
            },
            Layer::GlobalAvgPool(_) => CnnLayer::GlobalAvgPool,
            Layer::Flatten(_) => CnnLayer::Flatten,
            Layer::Tap(tap) => CnnLayer::Tap { value: tap.value },
            Layer::Add(add) => CnnLayer::Add {
                other: add.from,
                activation: onnx_activation(add.activation),
            },
        })
        .collect();
    let shape = network.input_shape;
    CnnModel {
        input_shape: [shape.c, shape.h, shape.w],
        spatial_rank: if is_one_dimensional(network) { 1 } else { 2 },
        layers,
    }
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
