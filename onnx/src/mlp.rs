//! Float multilayer perceptron export, plus encoding, decoding and atomic
//! file writes for any model.
//!
//! The graph mirrors the trainer's forward pass operation for operation:
//! optional input normalisation, then per layer a `Gemm` with `transB = 1`
//! (weights in PyTorch `nn.Linear` layout) followed by the activation, and
//! finally an optional `Softmax`. Keeping the same operations in the same
//! order is what lets runtimes reproduce the trainer's outputs to within
//! float rounding.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use prost::Message as _;

use crate::builder::{attr_float, attr_int, ir_version_for_opset, Dim, GraphBuilder, Producer};
use crate::proto::{ModelProto, StringStringEntryProto};
use crate::OnnxError;

/// Name of the graph input holding raw feature rows.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output holding the last layer's values.
pub const LOGITS_NAME: &str = "logits";
/// Name of the optional softmax graph output.
pub const PROBABILITIES_NAME: &str = "probabilities";
/// Symbolic batch dimension of every graph input and output.
pub const BATCH_DIM: &str = "N";

/// Written to the normalisation nodes so that anyone opening the model sees
/// that preprocessing is part of the graph.
const NORMALIZATION_DOC: &str = "Input normalization computed on the training set and embedded \
     in the model: feed raw feature values, not normalized ones.";

/// The nonlinearity applied after a layer's affine map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x >= 0`, `alpha * x` otherwise.
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f32,
    },
    /// Hyperbolic tangent.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `min(max(x, 0), 6)`, written as `Clip` with bounds 0 and 6.
    Relu6,
    /// No activation; no node is emitted.
    Identity,
}

impl Activation {
    /// The ONNX operator and the suffix of its node name, or `None` for
    /// [`Activation::Identity`].
    pub(crate) fn op(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Relu => Some(("Relu", "relu")),
            Self::LeakyRelu { .. } => Some(("LeakyRelu", "leaky_relu")),
            Self::Tanh => Some(("Tanh", "tanh")),
            Self::Sigmoid => Some(("Sigmoid", "sigmoid")),
            Self::Relu6 => Some(("Clip", "relu6")),
            Self::Identity => None,
        }
    }
}

/// One fully connected layer: `activation(W x + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayer {
    /// Width of the layer's input.
    pub n_inputs: usize,
    /// Width of the layer's output.
    pub n_outputs: usize,
    /// Row-major `[n_outputs][n_inputs]`: `weights[out_idx * n_inputs + in_idx]`
    /// (PyTorch `nn.Linear` layout).
    pub weights: Vec<f32>,
    /// One value per output.
    pub bias: Vec<f32>,
    /// Applied after the affine map.
    pub activation: Activation,
}

/// Preprocessing folded into the exported graph so that users feed raw
/// features.
#[derive(Debug, Clone, PartialEq)]
pub enum InputNormalization {
    /// Features are used as given.
    None,
    /// Every feature is multiplied by `scale`.
    Scale {
        /// The common factor.
        scale: f32,
    },
    /// Each feature `j` becomes `(x[j] - mean[j]) * inv_std[j]`.
    Standardize {
        /// Per-feature mean.
        mean: Vec<f32>,
        /// Per-feature reciprocal standard deviation.
        inv_std: Vec<f32>,
    },
}

/// Settings for [`mlp_to_model`].
#[derive(Debug, Clone)]
pub struct MlpExportOptions {
    /// Default-domain opset, [`MIN_OPSET`](crate::builder::MIN_OPSET) to
    /// [`MAX_OPSET`](crate::builder::MAX_OPSET).
    pub opset: i64,
    /// Adds a `probabilities` output computed by `Softmax` over the logits.
    pub with_probabilities: bool,
    /// Recorded as the model's producer.
    pub producer: Producer,
    /// The model's documentation string.
    pub doc_string: String,
    /// Stored in `ModelProto.metadata_props`; keys must be unique.
    pub metadata: Vec<(String, String)>,
}

/// Builds the ONNX model for an MLP.
///
/// The graph takes `input` FLOAT `[N, n_features]` and returns `logits`
/// FLOAT `[N, n_out]`, plus `probabilities` when requested. Everything is
/// validated first: shapes, chaining, finiteness of every parameter, the
/// opset and metadata keys.
pub fn mlp_to_model(
    layers: &[DenseLayer],
    normalization: &InputNormalization,
    options: &MlpExportOptions,
) -> Result<ModelProto, OnnxError> {
    validate(layers, normalization, options)?;
    let n_features = layers[0].n_inputs;
    let n_out = layers[layers.len() - 1].n_outputs;

    let mut graph = GraphBuilder::new("kiln_mlp");
    graph.doc_string(&describe(layers, normalization, options.with_probabilities));
    graph.input_f32(INPUT_NAME, &[batch_dim(), Dim::Fixed(dim(n_features))]);

    let mut current = add_normalization(&mut graph, normalization, &[dim(n_features)])?;

    for (i, layer) in layers.iter().enumerate() {
        // The layer's final tensor is `logits` for the last layer, whichever
        // node produces it.
        let layer_out = if i + 1 == layers.len() {
            LOGITS_NAME.to_owned()
        } else {
            format!("layer{i}.output")
        };
        add_dense(&mut graph, i, layer, &current, &layer_out)?;
        current = layer_out;
    }

    add_outputs(&mut graph, n_out, options.with_probabilities);
    build_model(graph, options)
}

/// The symbolic batch dimension [`BATCH_DIM`].
pub(crate) fn batch_dim() -> Dim {
    Dim::Param(BATCH_DIM.to_owned())
}

/// Emits layer `i`'s `Gemm` (`transB = 1`) reading `input`, then its
/// activation, the last node writing `output`. Shared by the MLP and CNN
/// graphs.
pub(crate) fn add_dense(
    graph: &mut GraphBuilder,
    i: usize,
    layer: &DenseLayer,
    input: &str,
    output: &str,
) -> Result<(), OnnxError> {
    let weight = format!("layer{i}.weight");
    let bias = format!("layer{i}.bias");
    graph.initializer_f32(
        &weight,
        &[dim(layer.n_outputs), dim(layer.n_inputs)],
        &layer.weights,
    )?;
    graph.initializer_f32(&bias, &[dim(layer.n_outputs)], &layer.bias)?;
    add_with_activation(graph, i, layer.activation, output, |graph, linear| {
        graph.node(
            "Gemm",
            &format!("layer{i}_gemm"),
            &[input, &weight, &bias],
            &[linear],
            vec![attr_int("transB", 1)],
        );
    })
}

/// Emits layer `i`'s linear node through `emit_linear`, which receives the
/// tensor name to write, then its activation node (if any) writing `output`.
/// Without an activation the linear node writes `output` itself.
pub(crate) fn add_with_activation(
    graph: &mut GraphBuilder,
    i: usize,
    activation: Activation,
    output: &str,
    emit_linear: impl FnOnce(&mut GraphBuilder, &str),
) -> Result<(), OnnxError> {
    let Some((op_type, suffix)) = activation.op() else {
        emit_linear(graph, output);
        return Ok(());
    };
    let linear = format!("layer{i}.linear");
    emit_linear(graph, &linear);
    let attributes = match activation {
        Activation::LeakyRelu { alpha } => vec![attr_float("alpha", alpha)],
        _ => Vec::new(),
    };
    let mut inputs = vec![linear];
    if activation == Activation::Relu6 {
        // Clip takes its bounds as scalar inputs from opset 11 on.
        let (lo, hi) = (format!("layer{i}.clip_min"), format!("layer{i}.clip_max"));
        graph.initializer_f32(&lo, &[], &[0.0])?;
        graph.initializer_f32(&hi, &[], &[6.0])?;
        inputs.extend([lo, hi]);
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    graph.node(
        op_type,
        &format!("layer{i}_{suffix}"),
        &inputs,
        &[output],
        attributes,
    );
    Ok(())
}

/// Declares the `logits` output `[N, n_out]` and, when asked, the
/// `Softmax` node and output `probabilities`.
pub(crate) fn add_outputs(graph: &mut GraphBuilder, n_out: usize, with_probabilities: bool) {
    graph.output_f32(LOGITS_NAME, &[batch_dim(), Dim::Fixed(dim(n_out))]);
    if with_probabilities {
        graph.node(
            "Softmax",
            "softmax",
            &[LOGITS_NAME],
            &[PROBABILITIES_NAME],
            vec![attr_int("axis", 1)],
        );
        graph.output_f32(PROBABILITIES_NAME, &[batch_dim(), Dim::Fixed(dim(n_out))]);
    }
}

/// Builds the graph into a model with the header every Kiln model shares:
/// producer, doc string, domain, version and metadata from `options`.
pub(crate) fn build_model(
    graph: GraphBuilder,
    options: &MlpExportOptions,
) -> Result<ModelProto, OnnxError> {
    let mut model = graph.build(options.opset, &options.producer, &options.doc_string)?;
    model.domain = Some("ai.kiln".to_owned());
    model.model_version = Some(1);
    model.metadata_props = options
        .metadata
        .iter()
        .map(|(key, value)| StringStringEntryProto {
            key: Some(key.clone()),
            value: Some(value.clone()),
        })
        .collect();
    Ok(model)
}

/// Emits the normalisation nodes that read [`INPUT_NAME`] and returns the
/// name of the tensor holding the normalised features ([`INPUT_NAME`] itself
/// for [`InputNormalization::None`]). Shared by the float and the int8 QDQ
/// graphs so both normalise with the same operations. `feature_dims` is the
/// shape of one sample (`[n_features]` for an MLP, `[C, H, W]` or `[C, L]`
/// for a CNN): the per-feature vectors are stored with it and broadcast over
/// the batch.
pub(crate) fn add_normalization(
    graph: &mut GraphBuilder,
    normalization: &InputNormalization,
    feature_dims: &[i64],
) -> Result<String, OnnxError> {
    add_normalization_from(graph, INPUT_NAME, normalization, feature_dims)
}

/// The most input fraction bits a QDQ graph rounds to (the runtime's limit).
pub const MAX_INPUT_FRAC_BITS: u8 = 24;

const INPUT_FIXED_POINT_DOC: &str = "Rounds the raw input to the device's fixed point, \
    Round(x * 2^bits) / 2^bits (half to even; exact in f32): the device receives \
    round(x * 2^bits) as its integer input.";

/// The int8 graphs' model of the device boundary: for `frac_bits > 0`, rounds [`INPUT_NAME`] to
/// multiples of `2^-frac_bits` and returns the rounded tensor's name; [`INPUT_NAME`] otherwise
/// (integer data passes unchanged, and the graph stays as it was).
pub(crate) fn add_input_fixed_point(
    graph: &mut GraphBuilder,
    frac_bits: u8,
) -> Result<String, OnnxError> {
    if frac_bits == 0 {
        return Ok(INPUT_NAME.to_owned());
    }
    if frac_bits > MAX_INPUT_FRAC_BITS {
        return Err(OnnxError::InputFracBits {
            found: frac_bits,
            max: MAX_INPUT_FRAC_BITS,
        });
    }
    let unit = (1u32 << frac_bits) as f32;
    graph.initializer_f32("input_fixed.scale", &[1], &[unit])?;
    graph.initializer_f32("input_fixed.step", &[1], &[1.0 / unit])?;
    for (op, name, inputs, output) in [
        (
            "Mul",
            "input_fixed_scale",
            [INPUT_NAME, "input_fixed.scale"],
            "input_fixed_scaled",
        ),
        (
            "Round",
            "input_fixed_round",
            ["input_fixed_scaled", ""],
            "input_fixed_raw",
        ),
        (
            "Mul",
            "input_fixed_step",
            ["input_fixed_raw", "input_fixed.step"],
            "input_fixed",
        ),
    ] {
        let inputs: Vec<&str> = inputs.into_iter().filter(|i| !i.is_empty()).collect();
        graph.node_with_doc(
            op,
            name,
            &inputs,
            &[output],
            Vec::new(),
            INPUT_FIXED_POINT_DOC,
        );
    }
    Ok("input_fixed".to_owned())
}

/// [`add_normalization`] of the tensor `source`.
pub(crate) fn add_normalization_from(
    graph: &mut GraphBuilder,
    source: &str,
    normalization: &InputNormalization,
    feature_dims: &[i64],
) -> Result<String, OnnxError> {
    let mut current = source.to_owned();
    match normalization {
        InputNormalization::None => {}
        InputNormalization::Scale { scale } => {
            graph.initializer_f32("input_scale", &[1], &[*scale])?;
            graph.node_with_doc(
                "Mul",
                "normalize_scale",
                &[&current, "input_scale"],
                &["input_scaled"],
                Vec::new(),
                NORMALIZATION_DOC,
            );
            current = "input_scaled".to_owned();
        }
        InputNormalization::Standardize { mean, inv_std } => {
            graph.initializer_f32("input_mean", feature_dims, mean)?;
            graph.initializer_f32("input_inv_std", feature_dims, inv_std)?;
            graph.node_with_doc(
                "Sub",
                "normalize_sub_mean",
                &[&current, "input_mean"],
                &["input_centered"],
                Vec::new(),
                NORMALIZATION_DOC,
            );
            graph.node_with_doc(
                "Mul",
                "normalize_mul_inv_std",
                &["input_centered", "input_inv_std"],
                &["input_standardized"],
                Vec::new(),
                NORMALIZATION_DOC,
            );
            current = "input_standardized".to_owned();
        }
    }
    Ok(current)
}

/// Serialises a model to the ONNX protobuf wire format.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Parses ONNX protobuf bytes.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    ModelProto::decode(bytes).map_err(|reason| OnnxError::Decode { reason })
}

/// Distinguishes temporary files of concurrent writes within one process.
static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Writes `model` to `path` so that readers see either the old file or the
/// complete new one, never a truncated model.
///
/// The bytes go to a hidden temporary file in the same directory (a rename
/// is only atomic within one file system), which is flushed to disk and then
/// renamed over `path`. On failure the temporary file is removed and the
/// error names `path`.
pub fn write_model_atomic(path: &Path, model: &ModelProto) -> Result<(), OnnxError> {
    let fail = |error: std::io::Error| OnnxError::Write {
        path: path.to_owned(),
        error,
    };
    let file_name = path.file_name().ok_or_else(|| {
        fail(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));

    let bytes = encode_model(model);
    let written = (|| {
        let mut file = File::create_new(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(error) = written {
        // The temporary may not exist (e.g. the directory is missing);
        // either way the caller's error is the one worth reporting.
        let _ = fs::remove_file(&temp);
        return Err(fail(error));
    }
    // Persist the rename itself. Directories cannot be opened for syncing on
    // every platform, and the data is already safe, so this is best effort.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// ONNX dimensions are `i64`; any in-memory size fits.
pub(crate) fn dim(n: usize) -> i64 {
    i64::try_from(n).expect("a tensor dimension exceeds i64::MAX")
}

fn validate(
    layers: &[DenseLayer],
    normalization: &InputNormalization,
    options: &MlpExportOptions,
) -> Result<(), OnnxError> {
    ir_version_for_opset(options.opset)?;
    let first = layers.first().ok_or(OnnxError::NoLayers)?;
    let n_features = first.n_inputs;

    for (layer_index, layer) in layers.iter().enumerate() {
        let previous_outputs = layer_index
            .checked_sub(1)
            .map(|prev| layers[prev].n_outputs);
        validate_dense(layer_index, layer, previous_outputs)?;
    }

    validate_normalization(normalization, n_features)?;
    validate_metadata(options)
}

/// Checks one dense layer's shape (and that it follows `previous_outputs`
/// when given) and that its parameters are finite.
pub(crate) fn validate_dense(
    layer_index: usize,
    layer: &DenseLayer,
    previous_outputs: Option<usize>,
) -> Result<(), OnnxError> {
    check_layer_shape(
        layer_index,
        LayerShape {
            n_inputs: layer.n_inputs,
            n_outputs: layer.n_outputs,
            n_weights: layer.weights.len(),
            n_biases: layer.bias.len(),
        },
        previous_outputs,
    )?;
    check_parameters(layer_index, &layer.weights, &layer.bias, layer.activation)
}

/// Checks that a layer's weights, bias and activation parameter are finite.
pub(crate) fn check_parameters(
    layer_index: usize,
    weights: &[f32],
    bias: &[f32],
    activation: Activation,
) -> Result<(), OnnxError> {
    check_finite(weights, || format!("layer {layer_index} weights"))?;
    check_finite(bias, || format!("layer {layer_index} bias"))?;
    if let Activation::LeakyRelu { alpha } = activation {
        if !alpha.is_finite() {
            return Err(OnnxError::NonFinite {
                location: format!("layer {layer_index} LeakyRelu alpha"),
                value: alpha,
            });
        }
    }
    Ok(())
}

/// Checks the normalisation vectors' lengths and that every value is finite.
pub(crate) fn validate_normalization(
    normalization: &InputNormalization,
    n_features: usize,
) -> Result<(), OnnxError> {
    match normalization {
        InputNormalization::None => {}
        InputNormalization::Scale { scale } => {
            if !scale.is_finite() {
                return Err(OnnxError::NonFinite {
                    location: "input normalization scale".to_owned(),
                    value: *scale,
                });
            }
        }
        InputNormalization::Standardize { mean, inv_std } => {
            for (vector, values) in [("mean", mean), ("inv_std", inv_std)] {
                if values.len() != n_features {
                    return Err(OnnxError::NormalizationLength {
                        vector,
                        actual: values.len(),
                        expected: n_features,
                    });
                }
                check_finite(values, || format!("input normalization {vector}"))?;
            }
        }
    }
    Ok(())
}

/// Metadata keys must be unique; the ONNX checker rejects repeats.
pub(crate) fn validate_metadata(options: &MlpExportOptions) -> Result<(), OnnxError> {
    let mut keys = HashSet::new();
    for (key, _) in &options.metadata {
        if !keys.insert(key.as_str()) {
            return Err(OnnxError::DuplicateMetadataKey { key: key.clone() });
        }
    }
    Ok(())
}

/// Reports the first NaN or infinity as `<what>[<index>]`.
pub(crate) fn check_finite(values: &[f32], what: impl Fn() -> String) -> Result<(), OnnxError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(OnnxError::NonFinite {
            location: format!("{}[{index}]", what()),
            value: values[index],
        }),
    }
}

/// A one-paragraph summary for the graph's doc string, e.g.
/// `MLP 64 -> 32 (Relu) -> 10 (Identity); input standardized in-graph`.
fn describe(
    layers: &[DenseLayer],
    normalization: &InputNormalization,
    probabilities: bool,
) -> String {
    let mut text = format!("MLP {}", layers[0].n_inputs);
    for layer in layers {
        let activation = match layer.activation {
            Activation::LeakyRelu { alpha } => format!("LeakyRelu alpha={alpha}"),
            other => format!("{other:?}"),
        };
        text.push_str(&format!(" -> {} ({activation})", layer.n_outputs));
    }
    text.push_str(match normalization {
        InputNormalization::None => "; input used as is",
        InputNormalization::Scale { .. } => "; input scaled in-graph",
        InputNormalization::Standardize { .. } => "; input standardized in-graph",
    });
    text.push_str(if probabilities {
        "; outputs: logits, probabilities (softmax over axis 1)"
    } else {
        "; output: logits"
    });
    text
}

/// The sizes of one dense layer as given, before they are trusted.
pub(crate) struct LayerShape {
    pub n_inputs: usize,
    pub n_outputs: usize,
    pub n_weights: usize,
    pub n_biases: usize,
}

/// Checks that a layer is non-empty, follows the previous layer, and has
/// `n_outputs x n_inputs` weights and `n_outputs` biases. Shared by the float and QDQ exports.
pub(crate) fn check_layer_shape(
    layer: usize,
    shape: LayerShape,
    previous_outputs: Option<usize>,
) -> Result<(), OnnxError> {
    let LayerShape {
        n_inputs,
        n_outputs,
        n_weights,
        n_biases,
    } = shape;
    if n_inputs == 0 || n_outputs == 0 {
        return Err(OnnxError::EmptyLayer {
            layer,
            n_inputs,
            n_outputs,
        });
    }
    if let Some(previous_outputs) = previous_outputs {
        if n_inputs != previous_outputs {
            return Err(OnnxError::LayersDoNotChain {
                layer,
                n_inputs,
                previous_outputs,
            });
        }
    }
    let expected = n_outputs.saturating_mul(n_inputs);
    if n_weights != expected {
        return Err(OnnxError::WeightCount {
            layer,
            actual: n_weights,
            n_outputs,
            n_inputs,
            expected,
        });
    }
    if n_biases != n_outputs {
        return Err(OnnxError::BiasCount {
            layer,
            actual: n_biases,
            expected: n_outputs,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{attribute_proto::AttributeType, tensor_shape_proto::dimension::Value};

    fn options(opset: i64, with_probabilities: bool) -> MlpExportOptions {
        MlpExportOptions {
            opset,
            with_probabilities,
            producer: Producer {
                name: "kiln".to_owned(),
                version: "0.1.0".to_owned(),
            },
            doc_string: "test model".to_owned(),
            metadata: vec![
                ("dataset".to_owned(), "digits".to_owned()),
                ("epochs".to_owned(), "3".to_owned()),
            ],
        }
    }

    /// Deterministic, distinct, non-trivial values.
    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 + 1.0) * seed).sin() * 0.75)
            .collect()
    }

    fn layer(n_inputs: usize, n_outputs: usize, activation: Activation, seed: f32) -> DenseLayer {
        DenseLayer {
            n_inputs,
            n_outputs,
            weights: values(n_inputs * n_outputs, seed),
            bias: values(n_outputs, seed + 0.5),
            activation,
        }
    }

    /// The 3-4-2 network used throughout.
    fn net() -> Vec<DenseLayer> {
        vec![
            layer(3, 4, Activation::Relu, 0.37),
            layer(4, 2, Activation::Identity, 0.91),
        ]
    }

    fn standardize() -> InputNormalization {
        InputNormalization::Standardize {
            mean: vec![0.5, -1.0, 2.0],
            inv_std: vec![2.0, 0.25, 1.5],
        }
    }

    fn initializer_values(model: &ModelProto, name: &str) -> (Vec<i64>, Vec<f32>) {
        let graph = model.graph.as_ref().unwrap();
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let raw = t.raw_data.as_ref().unwrap();
        let data = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (t.dims.clone(), data)
    }

    fn dims_of(info: &crate::proto::ValueInfoProto) -> Vec<Value> {
        use crate::proto::type_proto;
        match &info.r#type.as_ref().unwrap().value {
            Some(type_proto::Value::TensorType(t)) => {
                assert_eq!(
                    t.elem_type,
                    Some(crate::proto::tensor_proto::DataType::Float as i32)
                );
                t.shape
                    .as_ref()
                    .unwrap()
                    .dim
                    .iter()
                    .map(|d| d.value.clone().unwrap())
                    .collect()
            }
            other => panic!("not a tensor type: {other:?}"),
        }
    }

    #[test]
    fn encode_decode_roundtrip_is_lossless() {
        for opset in [13, 17, 21] {
            let model = mlp_to_model(&net(), &standardize(), &options(opset, true)).unwrap();
            let bytes = encode_model(&model);
            assert_eq!(decode_model(&bytes).unwrap(), model, "opset {opset}");
        }
    }

    #[test]
    fn structure_of_3_4_2_net() {
        let layers = net();
        let model = mlp_to_model(&layers, &standardize(), &options(13, true)).unwrap();
        assert_eq!(model.ir_version, Some(7));
        assert_eq!(model.opset_import[0].version, Some(13));
        assert_eq!(model.domain(), "ai.kiln");
        assert_eq!(model.model_version, Some(1));
        assert_eq!(model.doc_string(), "test model");
        let metadata: Vec<_> = model
            .metadata_props
            .iter()
            .map(|e| (e.key(), e.value()))
            .collect();
        assert_eq!(metadata, [("dataset", "digits"), ("epochs", "3")]);

        let graph = model.graph.as_ref().unwrap();
        let nodes: Vec<_> = graph.node.iter().map(|n| (n.op_type(), n.name())).collect();
        assert_eq!(
            nodes,
            [
                ("Sub", "normalize_sub_mean"),
                ("Mul", "normalize_mul_inv_std"),
                ("Gemm", "layer0_gemm"),
                ("Relu", "layer0_relu"),
                ("Gemm", "layer1_gemm"),
                ("Softmax", "softmax"),
            ]
        );
        assert!(graph.node[0].doc_string().contains("training set"));
        assert!(graph.node[1].doc_string().contains("raw feature values"));
        for gemm in graph.node.iter().filter(|n| n.op_type() == "Gemm") {
            assert_eq!(gemm.attribute.len(), 1, "{}", gemm.name());
            let a = &gemm.attribute[0];
            assert_eq!(
                (a.name(), a.r#type(), a.i),
                ("transB", AttributeType::Int, Some(1))
            );
        }
        let softmax = graph.node.last().unwrap();
        assert_eq!(softmax.input, ["logits"]);
        assert_eq!(softmax.output, ["probabilities"]);
        let axis = &softmax.attribute[0];
        assert_eq!(
            (axis.name(), axis.r#type(), axis.i),
            ("axis", AttributeType::Int, Some(1))
        );
        // The last Gemm has no activation, so it writes `logits` directly.
        assert_eq!(
            graph.node[4].input,
            ["layer0.output", "layer1.weight", "layer1.bias"]
        );
        assert_eq!(graph.node[4].output, ["logits"]);

        let n = Value::DimParam("N".to_owned());
        assert_eq!(graph.input.len(), 1);
        assert_eq!(graph.input[0].name(), "input");
        assert_eq!(dims_of(&graph.input[0]), [n.clone(), Value::DimValue(3)]);
        let outputs: Vec<_> = graph
            .output
            .iter()
            .map(|o| (o.name(), dims_of(o)))
            .collect();
        assert_eq!(
            outputs,
            [
                ("logits", vec![n.clone(), Value::DimValue(2)]),
                ("probabilities", vec![n, Value::DimValue(2)]),
            ]
        );

        for (i, layer) in layers.iter().enumerate() {
            let (dims, data) = initializer_values(&model, &format!("layer{i}.weight"));
            assert_eq!(dims, [layer.n_outputs as i64, layer.n_inputs as i64]);
            assert_eq!(data, layer.weights);
            let (dims, data) = initializer_values(&model, &format!("layer{i}.bias"));
            assert_eq!(dims, [layer.n_outputs as i64]);
            assert_eq!(data, layer.bias);
        }
        assert_eq!(
            initializer_values(&model, "input_mean"),
            (vec![3], vec![0.5, -1.0, 2.0])
        );
        assert_eq!(
            initializer_values(&model, "input_inv_std"),
            (vec![3], vec![2.0, 0.25, 1.5])
        );
    }

    #[test]
    fn final_activation_writes_logits_and_scale_uses_one_mul() {
        let layers = vec![
            layer(3, 4, Activation::LeakyRelu { alpha: 0.125 }, 0.2),
            layer(4, 2, Activation::Sigmoid, 0.3),
        ];
        let normalization = InputNormalization::Scale { scale: 1.0 / 16.0 };
        let model = mlp_to_model(&layers, &normalization, &options(21, false)).unwrap();
        assert_eq!(model.ir_version, Some(10));
        let graph = model.graph.as_ref().unwrap();
        let nodes: Vec<_> = graph.node.iter().map(|n| (n.op_type(), n.name())).collect();
        assert_eq!(
            nodes,
            [
                ("Mul", "normalize_scale"),
                ("Gemm", "layer0_gemm"),
                ("LeakyRelu", "layer0_leaky_relu"),
                ("Gemm", "layer1_gemm"),
                ("Sigmoid", "layer1_sigmoid"),
            ]
        );
        assert_eq!(graph.node[0].input, ["input", "input_scale"]);
        assert_eq!(
            initializer_values(&model, "input_scale"),
            (vec![1], vec![0.0625])
        );
        let alpha = &graph.node[2].attribute[0];
        assert_eq!(
            (alpha.name(), alpha.r#type(), alpha.f),
            ("alpha", AttributeType::Float, Some(0.125))
        );
        assert_eq!(graph.node[3].output, ["layer1.linear"]);
        assert_eq!(graph.node[4].output, ["logits"]);
        let outputs: Vec<_> = graph.output.iter().map(|o| o.name()).collect();
        assert_eq!(outputs, ["logits"]);
    }

    #[test]
    fn no_normalization_feeds_input_to_first_gemm() {
        let layers = vec![layer(3, 2, Activation::Tanh, 0.4)];
        let model = mlp_to_model(&layers, &InputNormalization::None, &options(15, false)).unwrap();
        let graph = model.graph.as_ref().unwrap();
        let ops: Vec<_> = graph.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["Gemm", "Tanh"]);
        assert_eq!(graph.node[0].input[0], "input");
        assert_eq!(graph.initializer.len(), 2);
    }

    #[test]
    fn weight_count_mismatch_names_the_layer() {
        let mut layers = vec![
            layer(3, 128, Activation::Relu, 0.1),
            layer(128, 10, Activation::Identity, 0.2),
        ];
        layers[1].weights.truncate(100);
        let err =
            mlp_to_model(&layers, &InputNormalization::None, &options(13, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 1: weights have 100 values, expected 10 outputs x 128 inputs = 1280"
        );
    }

    #[test]
    fn bias_count_mismatch_names_the_layer() {
        let mut layers = net();
        layers[0].bias.push(0.0);
        let err =
            mlp_to_model(&layers, &InputNormalization::None, &options(13, false)).unwrap_err();
        assert_eq!(err.to_string(), "layer 0: bias has 5 values, expected 4");
    }

    #[test]
    fn layers_must_chain() {
        let layers = vec![
            layer(3, 4, Activation::Relu, 0.1),
            layer(5, 2, Activation::Identity, 0.2),
        ];
        let err =
            mlp_to_model(&layers, &InputNormalization::None, &options(13, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 1: takes 5 inputs but layer 0 produces 4"
        );
    }

    #[test]
    fn empty_and_zero_width_nets_are_rejected() {
        let err = mlp_to_model(&[], &InputNormalization::None, &options(13, false)).unwrap_err();
        assert!(matches!(err, OnnxError::NoLayers), "{err:?}");
        let layers = vec![layer(3, 0, Activation::Relu, 0.1)];
        let err =
            mlp_to_model(&layers, &InputNormalization::None, &options(13, false)).unwrap_err();
        assert!(
            matches!(err, OnnxError::EmptyLayer { layer: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn non_finite_values_are_located() {
        let mut layers = net();
        layers[1].weights[5] = f32::NAN;
        let err =
            mlp_to_model(&layers, &InputNormalization::None, &options(13, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 1 weights[5] is NaN, expected a finite number"
        );

        let mut layers = net();
        layers[0].bias[3] = f32::NEG_INFINITY;
        let err =
            mlp_to_model(&layers, &InputNormalization::None, &options(13, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 0 bias[3] is -inf, expected a finite number"
        );

        let mut layers = net();
        layers[0].activation = Activation::LeakyRelu {
            alpha: f32::INFINITY,
        };
        let err =
            mlp_to_model(&layers, &InputNormalization::None, &options(13, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 0 LeakyRelu alpha is inf, expected a finite number"
        );

        let normalization = InputNormalization::Standardize {
            mean: vec![0.0; 3],
            inv_std: vec![1.0, f32::NAN, 1.0],
        };
        let err = mlp_to_model(&net(), &normalization, &options(13, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input normalization inv_std[1] is NaN, expected a finite number"
        );

        let normalization = InputNormalization::Scale {
            scale: f32::INFINITY,
        };
        let err = mlp_to_model(&net(), &normalization, &options(13, false)).unwrap_err();
        assert!(matches!(err, OnnxError::NonFinite { .. }), "{err:?}");
    }

    #[test]
    fn standardize_vectors_need_one_value_per_feature() {
        let normalization = InputNormalization::Standardize {
            mean: vec![0.0; 2],
            inv_std: vec![1.0; 3],
        };
        let err = mlp_to_model(&net(), &normalization, &options(13, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input normalization: mean has 2 values, expected 3 (one per input feature)"
        );
        let normalization = InputNormalization::Standardize {
            mean: vec![0.0; 3],
            inv_std: vec![1.0; 4],
        };
        let err = mlp_to_model(&net(), &normalization, &options(13, false)).unwrap_err();
        assert!(
            matches!(
                err,
                OnnxError::NormalizationLength {
                    vector: "inv_std",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn bad_opsets_are_rejected() {
        for opset in [12, 22] {
            let err = mlp_to_model(&net(), &InputNormalization::None, &options(opset, false))
                .unwrap_err();
            assert!(
                matches!(err, OnnxError::UnsupportedOpset { opset: o } if o == opset),
                "{err:?}"
            );
        }
    }

    #[test]
    fn duplicate_metadata_keys_are_rejected() {
        let mut opts = options(13, false);
        opts.metadata
            .push(("dataset".to_owned(), "other".to_owned()));
        let err = mlp_to_model(&net(), &InputNormalization::None, &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata key `dataset` appears more than once"
        );
    }

    #[test]
    fn garbage_bytes_do_not_decode() {
        let err = decode_model(&[0xFF, 0xFF, 0xFF]).unwrap_err();
        assert!(matches!(err, OnnxError::Decode { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("bytes are not a valid ONNX model: "),
            "{err}"
        );
    }

    /// A fresh, empty directory unique to this test and process.
    fn scratch_dir(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-onnx-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = scratch_dir("atomic-ok");
        let path = dir.join("model.onnx");
        fs::write(&path, b"old contents").unwrap();
        let model = mlp_to_model(&net(), &standardize(), &options(13, true)).unwrap();
        write_model_atomic(&path, &model).unwrap();
        assert_eq!(entries(&dir), ["model.onnx"]);
        assert_eq!(decode_model(&fs::read(&path).unwrap()).unwrap(), model);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_names_the_path() {
        let dir = scratch_dir("atomic-missing-dir");
        let path = dir.join("does-not-exist").join("model.onnx");
        let model = mlp_to_model(&net(), &InputNormalization::None, &options(13, false)).unwrap();
        let err = write_model_atomic(&path, &model).unwrap_err();
        assert!(
            matches!(&err, OnnxError::Write { path: p, .. } if *p == path),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot write ONNX model to {}: ", path.display())),
            "{message}"
        );
        assert_eq!(entries(&dir), Vec::<String>::new());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_rename_removes_the_temporary() {
        // Renaming a file over a non-empty directory fails on every platform,
        // after the temporary file has been written.
        let dir = scratch_dir("atomic-rename-fails");
        let path = dir.join("model.onnx");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"x").unwrap();
        let model = mlp_to_model(&net(), &InputNormalization::None, &options(13, false)).unwrap();
        let err = write_model_atomic(&path, &model).unwrap_err();
        assert!(
            matches!(&err, OnnxError::Write { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert_eq!(entries(&dir), ["model.onnx"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
