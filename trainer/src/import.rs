//! Models from other frameworks. `kiln_onnx::import` folds another exporter's
//! ONNX file into a neutral MLP; this module turns that into a kiln model file
//! (with an [`ImportRecord`] of where it came from) and proves the result:
//! against the exporter's own outputs (an expected-outputs JSON file) and
//! against tract running the original file.

use crate::data::{DataOptions, DataSpec, Normalization};
use crate::model::{
    Architecture, LayerRecord, ModelFile, Task, TrainState, FORMAT_NAME, FORMAT_VERSION,
};
use crate::nn::layer_spec::LayerSpec;
use crate::nn::optim::{OptimizerConfig, OptimizerState};
use crate::nn::schedule::Schedule;
use crate::nn::shape::{Padding, Shape};
use crate::nn::{Activation, Init, Loss};
use crate::rng::Rng;
use crate::train::{argmax, TrainConfig};
use kiln_onnx::import::{ImportedMlp, OutputKind};
use kiln_onnx::mlp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// The absolute part of the tolerance between an imported model and its exporter's recorded
/// outputs: `|ours - theirs| <= atol + RELATIVE_TOLERANCE * |theirs|` (numpy's `allclose`).
pub const EXPECTED_MAX_ABS_DIFF: f64 = 1e-5;
/// The absolute part of the tolerance between an imported model and tract running the original
/// file (the project's float tolerance for tract).
pub const TRACT_MAX_ABS_DIFF: f64 = crate::check::MAX_ABS_DIFF as f64;
/// The relative part of both tolerances. A logit of 1000 (raw pixels fed to a model trained on
/// [0, 1]) carries f32 rounding of about 1e-4 from summation order alone, which no absolute
/// limit can tell from a disagreement; an error of the model itself (a wrong bias, a missing
/// normalisation) moves outputs by far more than 1e-5 of their size.
pub const RELATIVE_TOLERANCE: f64 = 1e-5;

/// How far `ours` is from `theirs` in units of the tolerance `atol + rtol max(|theirs|,
/// magnitude)`: at most 1 passes. `magnitude` bounds the sums behind the value
/// ([`crate::check::trainer_magnitudes`]; 0 where there is none): cancelling sums keep their
/// own rounding. NaN anywhere is infinitely far.
pub(crate) fn tolerance_ratio(ours: f64, theirs: f64, atol: f64, magnitude: f64) -> f64 {
    let scale = theirs.abs().max(magnitude);
    let ratio = (ours - theirs).abs() / (atol + RELATIVE_TOLERANCE * scale);
    if ratio.is_nan() {
        f64::INFINITY
    } else {
        ratio
    }
}
/// Inputs for the tract comparison when neither data nor expected outputs are
/// at hand: this many seeded uniform samples.
pub const RANDOM_SAMPLES: usize = 64;

/// What one output of the source file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedKind {
    Logits,
    Probabilities,
    LogProbabilities,
    Label,
    Dropped,
}

/// One output of the source file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedOutput {
    pub name: String,
    pub kind: RecordedKind,
    /// For a label that the file maps through class values (scikit-learn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<i64>>,
    /// The tensor that holds the output's values in the file without its dropped
    /// tail (see `kiln_onnx::import::engine_model`); absent for a dropped output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_tensor: Option<String>,
}

/// Where an imported model came from, kept in its model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The ONNX file as given to `kiln import`.
    pub source: PathBuf,
    /// Its length and CRC-32, so `kiln check` knows the file it is given is the source.
    pub source_bytes: u64,
    pub source_crc32: u32,
    /// `producer_name producer_version` of the source.
    pub producer: String,
    pub opset: i64,
    pub input_name: String,
    /// The input's dimensions after the batch, e.g. `[1, 8, 8]`.
    pub input_dims: Vec<usize>,
    /// The batch size, when the file fixes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_batch: Option<usize>,
    pub outputs: Vec<RecordedOutput>,
    /// What was dropped or changed, one line each.
    pub notices: Vec<String>,
    /// `--input-scale`: the data's raw values times this are the source file's inputs (pixels
    /// 0..255 into a model trained on [0, 1]: 1/255). The model file's normalization includes
    /// it; the checks feed the source file the scaled values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_scale: Option<f32>,
}

/// The sample shape `[h, w, c]` whose rows a channels-last source reads (HWC), for
/// `DataOptions::channels_last`; `None` when its rows are in the layer graph's own order.
pub fn channels_last(input: &kiln_onnx::import::ImportedInput) -> Option<[usize; 3]> {
    if !input.reorders() {
        return None;
    }
    match *input.dims.as_slice() {
        [h, w, c] => Some([h, w, c]),
        [l, c] => Some([1, l, c]),
        _ => None,
    }
}

/// Rows between a channels-last source's order (HWC) and the layer graph's (CHW), for a model
/// whose data options say its source is channels last (`to_layer`: HWC to CHW); the rows as
/// they are otherwise.
fn reorder_rows<'f>(
    model: &ModelFile,
    features: &'f [f32],
    to_layer: bool,
) -> std::borrow::Cow<'f, [f32]> {
    let Some([h, w, c]) = model.data_options.channels_last else {
        return std::borrow::Cow::Borrowed(features);
    };
    std::borrow::Cow::Owned(crate::data::reorder_hwc_rows(features, [h, w, c], to_layer))
}

/// The source file's row order from the layer graph's rows (see [`reorder_rows`]).
pub fn source_rows<'f>(model: &ModelFile, features: &'f [f32]) -> std::borrow::Cow<'f, [f32]> {
    reorder_rows(model, features, false)
}

/// Raw data values from the source file's inputs: divided by the recorded `--input-scale`.
fn raw_from_source<'f>(record: &ImportRecord, features: &'f [f32]) -> std::borrow::Cow<'f, [f32]> {
    match record.input_scale {
        Some(scale) => features.iter().map(|&x| x / scale).collect(),
        None => std::borrow::Cow::Borrowed(features),
    }
}

/// The source file's inputs from raw data values: times the recorded `--input-scale`.
pub fn source_from_raw<'f>(
    record: &ImportRecord,
    features: &'f [f32],
) -> std::borrow::Cow<'f, [f32]> {
    match record.input_scale {
        Some(scale) => features.iter().map(|&x| x * scale).collect(),
        None => std::borrow::Cow::Borrowed(features),
    }
}

impl ImportRecord {
    /// Whether `bytes` are the source file's.
    pub fn is_source(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.source_bytes
            && kiln_runtime::crc32::crc32(bytes) == self.source_crc32
    }
}

fn activation(activation: mlp::Activation) -> Activation {
    match activation {
        mlp::Activation::Relu => Activation::Relu,
        mlp::Activation::LeakyRelu { alpha } => Activation::LeakyRelu { alpha },
        mlp::Activation::Tanh => Activation::Tanh,
        mlp::Activation::Sigmoid => Activation::Sigmoid,
        mlp::Activation::Relu6 => Activation::Relu6,
        mlp::Activation::Identity => Activation::Identity,
    }
}

/// Whether the imported model classifies: it has a classifier head, or more than
/// one output and `regression` was not asked for.
pub fn is_classifier(imported: &ImportedMlp, regression: bool) -> bool {
    let head = imported.outputs.iter().any(|o| {
        matches!(
            o.kind,
            OutputKind::Probabilities | OutputKind::LogProbabilities | OutputKind::Label { .. }
        )
    });
    head || (!regression && imported.n_outputs() > 1)
}

/// The kiln model file for an imported MLP. `source_bytes` are the ONNX file's
/// bytes; `data` is the data it will be calibrated and checked on.
pub fn to_model_file(
    imported: &ImportedMlp,
    source: &Path,
    source_bytes: &[u8],
    data: DataSpec,
    data_options: DataOptions,
    classification: bool,
    input_scale: Option<f32>,
) -> ModelFile {
    let n_outputs = imported.n_outputs();
    let task = if classification {
        Task::Classification {
            n_classes: n_outputs,
        }
    } else {
        Task::Regression { n_outputs }
    };
    let (architecture, layers) = match &imported.cnn {
        Some(cnn) => {
            let (architecture, records) = layer_graph(cnn);
            (Some(architecture), records)
        }
        None => (
            None,
            imported
                .layers
                .iter()
                .map(|l| LayerRecord {
                    n_inputs: l.n_inputs,
                    n_outputs: l.n_outputs,
                    activation: activation(l.activation),
                    weights: l.weights.clone(),
                    bias: l.bias.clone(),
                })
                .collect::<Vec<_>>(),
        ),
    };
    // The graph's own normalization, after `--input-scale` s on the raw data:
    // k (s x) = (k s) x, and ((s x) - m) d = (x - m / s) (d s).
    let s = input_scale.unwrap_or(1.0);
    let normalization = match &imported.normalization {
        mlp::InputNormalization::None if input_scale.is_some() => Normalization::Scale { scale: s },
        mlp::InputNormalization::None => Normalization::None,
        mlp::InputNormalization::Scale { scale } => Normalization::Scale { scale: scale * s },
        mlp::InputNormalization::Standardize { mean, inv_std } => Normalization::Standardize {
            mean: mean.iter().map(|m| m / s).collect(),
            inv_std: inv_std.iter().map(|d| d * s).collect(),
        },
    };
    let normalization_kind = match normalization {
        Normalization::None => crate::data::NormalizationKind::None,
        Normalization::Scale { .. } => crate::data::NormalizationKind::Scale,
        Normalization::Standardize { .. } => crate::data::NormalizationKind::Standardize,
    };
    // The training settings a `kiln train --resume` would continue with; nothing was
    // trained here, so the state is that of epoch 0.
    let optimizer = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.0,
    };
    let (hidden_specs, input_shape) = match &architecture {
        Some(a) => (
            a.layers[..a.layers.len().saturating_sub(1)].to_vec(),
            Some(a.input_shape),
        ),
        None => (Vec::new(), None),
    };
    let config = TrainConfig {
        layers: hidden_specs,
        input_shape,
        hidden: if architecture.is_some() {
            Vec::new()
        } else {
            layers[..layers.len() - 1]
                .iter()
                .map(|l| l.n_outputs)
                .collect()
        },
        activation: layers
            .first()
            .filter(|_| layers.len() > 1)
            .map_or(Activation::Identity, |l| l.activation),
        output_activation: layers.last().map_or(Activation::Identity, |l| l.activation),
        loss: if classification {
            Loss::CrossEntropy
        } else {
            Loss::MeanSquaredError
        },
        init: Init::He,
        optimizer,
        learning_rate: 0.001,
        schedule: Schedule::Constant,
        epochs: 0,
        batch_size: 64,
        seed: 0,
        val_split: 0.0,
        patience: 0,
        normalization: normalization_kind,
        qat: None,
    };
    let dense: Vec<_> = layers.iter().map(LayerRecord::to_dense).collect();
    let state = TrainState {
        epochs_done: 0,
        optimizer: OptimizerState::new(optimizer, &dense),
        rng: Rng::new(0),
        history: Vec::new(),
        best: None,
        epochs_since_best: 0,
        stopped_early: false,
        epoch_progress: None,
        qat: None,
    };
    let outputs = imported
        .outputs
        .iter()
        .map(|o| {
            let (kind, classes) = match &o.kind {
                OutputKind::Logits => (RecordedKind::Logits, None),
                OutputKind::Probabilities => (RecordedKind::Probabilities, None),
                OutputKind::LogProbabilities => (RecordedKind::LogProbabilities, None),
                OutputKind::Label { classes } => (RecordedKind::Label, classes.clone()),
                OutputKind::Dropped => (RecordedKind::Dropped, None),
            };
            RecordedOutput {
                name: o.name.clone(),
                kind,
                classes,
                engine_tensor: o.engine_tensor.clone(),
            }
        })
        .collect();
    ModelFile {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        producer: format!(
            "kiln {} import of {} ({})",
            env!("CARGO_PKG_VERSION"),
            source.display(),
            imported.producer
        ),
        task,
        n_inputs: imported.n_inputs,
        normalization,
        // An imported MLP is a chain of dense layers over a feature vector (no
        // architecture); a CNN carries its layer graph.
        architecture,
        layers,
        data,
        data_options,
        config,
        state,
        imported: Some(ImportRecord {
            source: source.to_owned(),
            source_bytes: source_bytes.len() as u64,
            source_crc32: kiln_runtime::crc32::crc32(source_bytes),
            producer: imported.producer.clone(),
            opset: imported.opset,
            input_name: imported.input.name.clone(),
            input_dims: imported.input.dims.clone(),
            fixed_batch: imported.input.fixed_batch,
            outputs,
            notices: imported.notices.clone(),
            input_scale,
        }),
    }
}

/// The layer graph of an imported CNN and the records of its trainable layers (weights in
/// ONNX's order: `[O][C][kh][kw]`, `[C][1][kh][kw]` or `[out][in]`, as [`LayerRecord`] holds
/// them). Explicit pads are the layer graph's *same* split unless all 0 (the importer
/// checked): all 0 is *valid*, which gives the same output size when *same* needs no padding.
pub fn layer_graph(cnn: &kiln_onnx::cnn::CnnModel) -> (Architecture, Vec<LayerRecord>) {
    use kiln_onnx::cnn::CnnLayer;
    let padding = |pads: &[usize; 4]| {
        if pads.iter().all(|&p| p == 0) {
            Padding::Valid
        } else {
            Padding::Same
        }
    };
    let record =
        |n_outputs: usize, weights: &[f32], bias: &[f32], act: mlp::Activation| -> LayerRecord {
            LayerRecord {
                n_inputs: weights.len() / n_outputs.max(1),
                n_outputs,
                activation: activation(act),
                weights: weights.to_vec(),
                bias: bias.to_vec(),
            }
        };
    let mut records = Vec::new();
    let specs = cnn
        .layers
        .iter()
        .map(|layer| match layer {
            CnnLayer::Dense(dense) => {
                records.push(record(
                    dense.n_outputs,
                    &dense.weights,
                    &dense.bias,
                    dense.activation,
                ));
                LayerSpec::Dense {
                    n_outputs: dense.n_outputs,
                    activation: Some(activation(dense.activation)),
                }
            }
            CnnLayer::Conv2d {
                out_channels,
                kernel,
                stride,
                pads,
                weights,
                bias,
                activation: act,
                ..
            } => {
                records.push(record(*out_channels, weights, bias, *act));
                LayerSpec::Conv2d {
                    out_channels: *out_channels,
                    kernel: *kernel,
                    stride: *stride,
                    padding: padding(pads),
                    activation: Some(activation(*act)),
                }
            }
            CnnLayer::DepthwiseConv2d {
                channels,
                kernel,
                stride,
                pads,
                weights,
                bias,
                activation: act,
            } => {
                records.push(record(*channels, weights, bias, *act));
                LayerSpec::DepthwiseConv2d {
                    kernel: *kernel,
                    stride: *stride,
                    padding: padding(pads),
                    activation: Some(activation(*act)),
                }
            }
            CnnLayer::MaxPool2d { kernel, stride } => LayerSpec::MaxPool2d {
                kernel: *kernel,
                stride: *stride,
            },
            CnnLayer::AvgPool2d { kernel, stride } => LayerSpec::AvgPool2d {
                kernel: *kernel,
                stride: *stride,
            },
            CnnLayer::GlobalAvgPool => LayerSpec::GlobalAvgPool,
            CnnLayer::Flatten => LayerSpec::Flatten,
            CnnLayer::Tap { value } => LayerSpec::Tap { value: *value },
            CnnLayer::Add {
                other,
                activation: act,
            } => LayerSpec::Add {
                from: *other,
                activation: Some(activation(*act)),
            },
        })
        .collect();
    let [c, h, w] = cnn.input_shape;
    (
        Architecture {
            input_shape: Shape::new(h, w, c),
            layers: specs,
        },
        records,
    )
}

/// A bad expected-outputs file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", path.display())]
pub struct ExpectedFileError {
    pub path: PathBuf,
    pub detail: String,
}

/// An exporter's outputs on a few inputs (docs/import.md has the format).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedOutputs {
    pub path: PathBuf,
    pub n_samples: usize,
    /// Row-major `n_samples x n_inputs` (the input flattened after its batch dim).
    pub features: Vec<f32>,
    /// Per output name: `n_samples x width` values.
    pub outputs: Vec<(String, Vec<f64>)>,
}

#[derive(Deserialize)]
struct TensorEntry {
    shape: Vec<usize>,
    data: Vec<f64>,
}

#[derive(Deserialize)]
struct ExpectedDocument {
    format: String,
    format_version: u32,
    inputs: std::collections::BTreeMap<String, TensorEntry>,
    outputs: std::collections::BTreeMap<String, TensorEntry>,
}

/// Reads an expected-outputs file and checks it against the import record.
pub fn read_expected(
    path: &Path,
    model: &ModelFile,
    record: &ImportRecord,
) -> Result<ExpectedOutputs, ExpectedFileError> {
    let fail = |detail: String| ExpectedFileError {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let document: ExpectedDocument = serde_json::from_str(&text)
        .map_err(|e| fail(format!("not an expected-outputs file: {e}")))?;
    if document.format != "kiln-expected-outputs" || document.format_version != 1 {
        return Err(fail(format!(
            "format {} version {}, expected kiln-expected-outputs version 1",
            document.format, document.format_version
        )));
    }
    let input = document.inputs.get(&record.input_name).ok_or_else(|| {
        fail(format!(
            "inputs: no `{}` (the model's input); found {:?}",
            record.input_name,
            document.inputs.keys().collect::<Vec<_>>()
        ))
    })?;
    let Some((&n_samples, dims)) = input.shape.split_first() else {
        return Err(fail(format!(
            "inputs.{}: shape is empty",
            record.input_name
        )));
    };
    if dims != record.input_dims.as_slice() {
        return Err(fail(format!(
            "inputs.{}: shape {:?}, expected [N, {}]",
            record.input_name,
            input.shape,
            record
                .input_dims
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if input.data.len() != n_samples * model.n_inputs {
        return Err(fail(format!(
            "inputs.{}: {} values for shape {:?}",
            record.input_name,
            input.data.len(),
            input.shape
        )));
    }
    let mut outputs = Vec::new();
    for (name, entry) in &document.outputs {
        let recorded = record
            .outputs
            .iter()
            .find(|o| &o.name == name)
            .ok_or_else(|| {
                fail(format!(
                    "outputs.{name}: the model has no such output; it has {:?}",
                    record.outputs.iter().map(|o| &o.name).collect::<Vec<_>>()
                ))
            })?;
        let width = match recorded.kind {
            RecordedKind::Label => 1,
            RecordedKind::Dropped => continue,
            _ => model.task.n_outputs(),
        };
        if entry.data.len() != n_samples * width || entry.shape.first() != Some(&n_samples) {
            return Err(fail(format!(
                "outputs.{name}: shape {:?} with {} values, expected {n_samples} samples of {width}",
                entry.shape,
                entry.data.len()
            )));
        }
        outputs.push((name.clone(), entry.data.clone()));
    }
    if outputs.is_empty() {
        return Err(fail("no output of the model to compare with".into()));
    }
    Ok(ExpectedOutputs {
        path: path.to_owned(),
        n_samples,
        features: input.data.iter().map(|&v| v as f32).collect(),
        outputs,
    })
}

/// One output compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputComparison {
    pub name: String,
    pub kind: RecordedKind,
    /// The largest absolute difference (labels: 0 if all agree).
    pub max_abs_diff: f64,
    /// The largest difference in units of the tolerance `atol + rtol max(|reference|, m)` (`m`:
    /// the magnitude of the sums behind a logit, `check::trainer_magnitudes`): the output
    /// passes at 1 or below.
    pub max_tolerance_ratio: f64,
    /// Labels only: samples whose label agrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels_agree: Option<usize>,
}

/// A comparison of the imported model with a reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportComparison {
    /// `expected outputs FILE` or `tract on FILE`.
    pub reference: String,
    /// Where the inputs came from.
    pub inputs: String,
    pub n_samples: usize,
    /// The absolute tolerance `atol`; the relative one is `rtol`.
    pub limit: f64,
    pub rtol: f64,
    pub outputs: Vec<OutputComparison>,
    pub passed: bool,
}

/// The imported model's value of an output of `kind` for one sample's logits.
/// `map_classes`: map a label through the recorded classes (the exporter's
/// label) rather than giving the class index (the engine model's tensor).
fn head(
    kind: RecordedKind,
    classes: Option<&[i64]>,
    logits: &[f32],
    map_classes: bool,
) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&v| f64::from(v - max).exp()).sum();
    match kind {
        RecordedKind::Logits => logits.iter().map(|&v| f64::from(v)).collect(),
        // f64 arithmetic, then the f32 an ONNX engine would return.
        RecordedKind::Probabilities => logits
            .iter()
            .map(|&v| f64::from((f64::from(v - max).exp() / sum) as f32))
            .collect(),
        RecordedKind::LogProbabilities => logits
            .iter()
            .map(|&v| f64::from((f64::from(v - max) - sum.ln()) as f32))
            .collect(),
        RecordedKind::Label => {
            let index = argmax(logits.iter().copied());
            vec![match classes {
                Some(classes) if map_classes => classes[index] as f64,
                _ => index as f64,
            }]
        }
        RecordedKind::Dropped => Vec::new(),
    }
}

/// `magnitudes`: per value, a bound on the sums behind it (logits only; empty: none).
fn compare(
    kind: RecordedKind,
    ours: &[f64],
    theirs: &[f64],
    atol: f64,
    magnitudes: &[f64],
) -> OutputComparison {
    let max_tolerance_ratio = ours
        .iter()
        .zip(theirs)
        .enumerate()
        .map(|(i, (&a, &b))| tolerance_ratio(a, b, atol, magnitudes.get(i).copied().unwrap_or(0.0)))
        .fold(0.0f64, f64::max);
    let max_abs_diff =
        ours.iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, |acc, d| {
                if d.is_nan() {
                    f64::INFINITY
                } else {
                    acc.max(d)
                }
            });
    let labels_agree = (kind == RecordedKind::Label)
        .then(|| ours.iter().zip(theirs).filter(|(a, b)| a == b).count());
    OutputComparison {
        name: String::new(),
        kind,
        max_abs_diff,
        max_tolerance_ratio,
        labels_agree,
    }
}

/// The magnitude bounds of an output that is the logits themselves; none for probabilities
/// and labels (a softmax is not a sum of the network's terms).
fn logit_magnitudes(kind: RecordedKind, magnitudes: &[f32]) -> Vec<f64> {
    if kind == RecordedKind::Logits {
        magnitudes.iter().map(|&m| f64::from(m)).collect()
    } else {
        Vec::new()
    }
}

fn verdict(outputs: &[OutputComparison], n_samples: usize) -> bool {
    !outputs.is_empty()
        && outputs.iter().all(|o| {
            o.max_tolerance_ratio <= 1.0 && o.labels_agree.is_none_or(|agree| agree == n_samples)
        })
}

/// Compares the imported model's outputs with the exporter's.
pub fn compare_expected(
    model: &ModelFile,
    record: &ImportRecord,
    expected: &ExpectedOutputs,
) -> ImportComparison {
    // The expected file holds the source's inputs (in its order); the model file takes raw
    // values in the layer graph's.
    let layer_rows = reorder_rows(model, &expected.features, true);
    let raw = raw_from_source(record, &layer_rows);
    let logits = crate::check::trainer_outputs(model, &raw);
    let magnitudes = crate::check::trainer_magnitudes(model, &raw);
    let width = model.task.n_outputs();
    let outputs: Vec<OutputComparison> = expected
        .outputs
        .iter()
        .filter_map(|(name, values)| {
            let recorded = record.outputs.iter().find(|o| &o.name == name)?;
            let ours: Vec<f64> = logits
                .chunks_exact(width)
                .flat_map(|row| head(recorded.kind, recorded.classes.as_deref(), row, true))
                .collect();
            let bounds = logit_magnitudes(recorded.kind, &magnitudes);
            Some(OutputComparison {
                name: name.clone(),
                ..compare(recorded.kind, &ours, values, EXPECTED_MAX_ABS_DIFF, &bounds)
            })
        })
        .collect();
    ImportComparison {
        reference: format!("expected outputs {}", expected.path.display()),
        inputs: format!(
            "{} samples from {}",
            expected.n_samples,
            expected.path.display()
        ),
        n_samples: expected.n_samples,
        limit: EXPECTED_MAX_ABS_DIFF,
        rtol: RELATIVE_TOLERANCE,
        passed: verdict(&outputs, expected.n_samples),
        outputs,
    }
}

/// tract cannot load or run the source file.
#[derive(Debug, thiserror::Error)]
#[error("{}: tract {stage}: {detail}", path.display())]
pub struct TractError {
    pub path: PathBuf,
    pub stage: &'static str,
    pub detail: String,
}

/// `n` seeded uniform samples in [-1, 1) of `n_inputs` features.
pub fn random_features(n: usize, n_inputs: usize) -> Vec<f32> {
    let mut rng = Rng::new(0x6b69_6c6e);
    (0..n * n_inputs)
        .map(|_| (rng.uniform_f64() * 2.0 - 1.0) as f32)
        .collect()
}

/// Runs the source file with tract on `features` (the source's inputs: raw data times the
/// recorded `--input-scale`, in the source's row order: [`source_rows`]) and compares every output it computes with the imported model. When the importer dropped nodes
/// (scikit-learn's ZipMap tail), tract runs the file without them
/// (`kiln_onnx::import::engine_model`); otherwise the file itself.
pub fn compare_tract(
    model: &ModelFile,
    record: &ImportRecord,
    source: &Path,
    features: &[f32],
    inputs: String,
) -> Result<ImportComparison, anyhow::Error> {
    let fail = |stage: &'static str| {
        move |e: tract_onnx::prelude::TractError| TractError {
            path: source.to_owned(),
            stage,
            detail: format!("{e:#}"),
        }
    };
    let (imported, loaded) = kiln_onnx::import::import_file_with(
        source,
        &kiln_onnx::import::ImportOptions {
            reorder_channels_last: true,
        },
    )?;
    let engine_outputs = kiln_onnx::import::engine_outputs(&imported);
    let n_inputs = model.n_inputs;
    let n_samples = features.len() / n_inputs.max(1);
    // tract runs the file at one concrete batch size (the file's own when it fixes one); the
    // last chunk is filled up with zeros and the extra rows are dropped.
    let chunk = record.fixed_batch.unwrap_or(n_samples.clamp(1, 512));
    let mut shape = vec![chunk];
    shape.extend_from_slice(&record.input_dims);
    let fact = InferenceFact::dt_shape(f32::datum_type(), shape.clone());
    // The file's own input declaration first; a batch dimension declared with neither a
    // size nor a name (skl2onnx's `None`) needs the concrete shape.
    let engine_bytes = (!imported.dropped_nodes.is_empty()).then(|| {
        kiln_onnx::mlp::encode_model(&kiln_onnx::import::engine_model(&loaded, &imported))
    });
    let load = |fact: Option<InferenceFact>| {
        match &engine_bytes {
            None => tract_onnx::onnx().model_for_path(source),
            Some(bytes) => tract_onnx::onnx().model_for_read(&mut bytes.as_slice()),
        }
        .and_then(|m| match fact {
            Some(fact) => m.with_input_fact(0, fact),
            None => Ok(m),
        })
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
    };
    let plan = load(None)
        .or_else(|_| load(Some(fact)))
        .map_err(fail("cannot load the file"))?;
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); engine_outputs.len()];
    for start in (0..n_samples).step_by(chunk.max(1)) {
        let end = (start + chunk).min(n_samples);
        let mut values = features[start * n_inputs..end * n_inputs].to_vec();
        values.resize(chunk * n_inputs, 0.0);
        let input = Tensor::from_shape(&shape, &values).map_err(fail("cannot build the input"))?;
        let outputs = plan
            .run(tvec!(input.into()))
            .map_err(fail("failed to run the file"))?;
        for (index, output) in outputs.iter().enumerate().take(engine_outputs.len()) {
            let cast = output
                .cast_to::<f64>()
                .map_err(fail("returned an output kiln cannot read"))?;
            let view = cast
                .to_plain_array_view::<f64>()
                .map_err(fail("returned an output kiln cannot read"))?;
            let flat: Vec<f64> = view.iter().copied().collect();
            let per_row = flat.len() / chunk.max(1);
            results[index].extend_from_slice(&flat[..(end - start) * per_row]);
        }
    }
    let layer_rows = reorder_rows(model, features, true);
    let raw = raw_from_source(record, &layer_rows);
    let logits = crate::check::trainer_outputs(model, &raw);
    let magnitudes = crate::check::trainer_magnitudes(model, &raw);
    let width = model.task.n_outputs();
    let mut outputs = Vec::new();
    for (engine_name, values) in engine_outputs.iter().zip(&results) {
        // The first recorded output this engine tensor stands for.
        let Some(recorded) = record
            .outputs
            .iter()
            .find(|o| o.engine_tensor.as_ref() == Some(engine_name))
        else {
            continue;
        };
        let ours: Vec<f64> = logits
            .chunks_exact(width)
            .flat_map(|row| head(recorded.kind, recorded.classes.as_deref(), row, false))
            .collect();
        if ours.len() != values.len() {
            return Err(TractError {
                path: source.to_owned(),
                stage: "returned an output of another size",
                detail: format!(
                    "`{engine_name}` has {} values, expected {}",
                    values.len(),
                    ours.len()
                ),
            }
            .into());
        }
        outputs.push(OutputComparison {
            name: if engine_name == &recorded.name {
                recorded.name.clone()
            } else {
                format!("{} (as `{engine_name}`)", recorded.name)
            },
            ..compare(
                recorded.kind,
                &ours,
                values,
                TRACT_MAX_ABS_DIFF,
                &logit_magnitudes(recorded.kind, &magnitudes),
            )
        });
    }
    Ok(ImportComparison {
        reference: format!(
            "tract on {}{}",
            source.display(),
            if imported.dropped_nodes.is_empty() {
                String::new()
            } else {
                format!(
                    " without its {} dropped tail nodes",
                    imported.dropped_nodes.len()
                )
            }
        ),
        inputs,
        n_samples,
        limit: TRACT_MAX_ABS_DIFF,
        rtol: RELATIVE_TOLERANCE,
        passed: verdict(&outputs, n_samples),
        outputs,
    })
}

/// One line per comparison, for reports.
pub fn comparison_line(comparison: &ImportComparison) -> String {
    let outputs: Vec<String> = comparison
        .outputs
        .iter()
        .map(|o| match o.labels_agree {
            Some(agree) => format!("{} agrees {agree}/{}", o.name, comparison.n_samples),
            None => format!("{} max |diff| {:.2e}", o.name, o.max_abs_diff),
        })
        .collect();
    format!(
        "{} vs {} on {}: {} (limit {:.0e} + {:.0e} x max(|reference|, its sums' magnitude))",
        if comparison.passed { "PASS" } else { "FAIL" },
        comparison.reference,
        comparison.inputs,
        outputs.join(", "),
        comparison.limit,
        comparison.rtol
    )
}

#[cfg(test)]
mod tolerance_tests {
    use super::*;

    fn logits(ours: &[f64], theirs: &[f64]) -> bool {
        let comparison = compare(
            RecordedKind::Logits,
            ours,
            theirs,
            EXPECTED_MAX_ABS_DIFF,
            &[],
        );
        verdict(&[comparison], theirs.len())
    }

    #[test]
    fn cancelling_sums_carry_their_own_rounding_but_not_a_wrong_bias() {
        // A logit near 0 that cancels sums of 1000: 1e-3 of f32 rounding passes with the
        // sums' magnitude and fails without it; a wrong bias of 0.5 fails either way.
        let theirs = [0.25, -0.5];
        let rounded = [0.251, -0.5];
        let wrong_bias = [0.75, -0.5];
        let with = |ours: &[f64], m: f64| {
            verdict(
                &[compare(
                    RecordedKind::Logits,
                    ours,
                    &theirs,
                    TRACT_MAX_ABS_DIFF,
                    &[m, m],
                )],
                2,
            )
        };
        assert!(with(&rounded, 1000.0));
        assert!(!with(&rounded, 0.0));
        assert!(!with(&wrong_bias, 1000.0));
    }

    #[test]
    fn large_logits_pass_with_float_rounding_and_fail_with_a_wrong_bias() {
        // Raw pixels into a model trained on [0, 1]: logits near 1000, where summation
        // order alone moves an f32 result by about 2e-6 of its size (the 1.95e-3 of issue 16).
        let theirs = [1234.5678, -987.25, 12.5];
        let rounded: Vec<f64> = theirs.iter().map(|v| v * (1.0 + 2e-6)).collect();
        assert!(logits(&rounded, &theirs));
        // A bias off by 0.05 on the big logit is a real disagreement.
        let wrong_bias = [1234.5678 + 0.05, -987.25, 12.5];
        assert!(!logits(&wrong_bias, &theirs));
        // A missing normalisation (x255) is far out.
        let unnormalised: Vec<f64> = theirs.iter().map(|v| v * 255.0).collect();
        assert!(!logits(&unnormalised, &theirs));
    }

    #[test]
    fn small_outputs_keep_the_absolute_limit() {
        // Probabilities near 0: the relative term adds almost nothing.
        assert!(logits(&[1e-3 + 9e-6], &[1e-3]));
        assert!(!logits(&[1e-3 + 2e-5], &[1e-3]));
        assert!(!logits(&[f64::NAN], &[1e-3]));
    }
}
