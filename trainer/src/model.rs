//! The kiln model file: a trained network, its normalisation, the data it was
//! trained on and everything `--resume` needs, as versioned JSON.
//!
//! JSON keeps the file readable and diffable. serde_json prints each f32 with
//! the shortest text that parses back to the same bits, so nothing is lost.

use crate::data::{DataOptions, DataSpec, Normalization};
use crate::nn::layer_spec::LayerSpec;
use crate::nn::network::{Layer, Network};
use crate::nn::optim::OptimizerState;
use crate::nn::shape::Shape;
use crate::nn::{Activation, Dense, Init, Mlp};
use crate::rng::Rng;
use crate::train::TrainConfig;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FORMAT_NAME: &str = "kiln-model";
/// Version 2 added `architecture` (the layer graph) and let a layer record hold a
/// convolution's filters. Version 3 added quantization-aware training: `config.qat`,
/// `state.qat` (the tracked ranges, which `kiln quantize` uses instead of calibrating) and
/// `state.best.qat_ranges`. A version-2 reader would quantize a QAT model with fresh ranges,
/// a different int8 model, so it must refuse the file. Version 4 added the skip connections
/// (`tap` and `add` layers) to `architecture`: a version-3 reader would misread the graph, and
/// a version-3 file holding one is refused.
pub const FORMAT_VERSION: u32 = 4;
/// The first version whose `architecture` may hold `tap` and `add` layers.
pub const SKIP_CONNECTIONS_VERSION: u32 = 4;
/// Version 1 files (an MLP, no `architecture`) still load as they are.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    Classification { n_classes: usize },
    Regression { n_outputs: usize },
}

impl Task {
    pub fn n_outputs(self) -> usize {
        match self {
            Task::Classification { n_classes } => n_classes,
            Task::Regression { n_outputs } => n_outputs,
        }
    }
}

/// The parameters of one trainable layer, weights row-major `[n_outputs][n_inputs]`.
///
/// For a dense layer `n_inputs` is its input width. For a convolution `n_outputs` is the
/// number of filters and `n_inputs` the values one filter reads: `in_channels * kh * kw` in
/// `(c, ky, kx)` order (ONNX's `[O][C][kH][kW]`), or `kh * kw` for a depthwise one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub n_inputs: usize,
    pub n_outputs: usize,
    pub activation: Activation,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LayerRecord {
    pub fn from_dense(layer: &Dense<f32>) -> Self {
        let weights = (0..layer.n_outputs())
            .flat_map(|row_idx| {
                layer
                    .weights
                    .row(row_idx)
                    .iter()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        Self {
            n_inputs: layer.n_inputs(),
            n_outputs: layer.n_outputs(),
            activation: layer.activation,
            weights,
            bias: layer.bias.iter().copied().collect(),
        }
    }

    /// The records of every trainable layer of `network`, in order.
    pub fn of_network(network: &Network<f32>) -> Vec<Self> {
        network
            .layers
            .iter()
            .filter_map(|layer| {
                let (weights, bias, activation) = match layer {
                    Layer::Dense(dense) => (&dense.weights, &dense.bias, dense.activation),
                    Layer::Conv2d(conv) => (&conv.weights, &conv.bias, conv.activation),
                    Layer::DepthwiseConv2d(conv) => (&conv.weights, &conv.bias, conv.activation),
                    _ => return None,
                };
                Some(Self {
                    n_inputs: weights.ncols(),
                    n_outputs: weights.nrows(),
                    activation,
                    weights: weights.transpose().iter().copied().collect(),
                    bias: bias.iter().copied().collect(),
                })
            })
            .collect()
    }

    pub fn to_dense(&self) -> Dense<f32> {
        Dense {
            weights: DMatrix::from_row_slice(self.n_outputs, self.n_inputs, &self.weights),
            bias: DVector::from_column_slice(&self.bias),
            activation: self.activation,
        }
    }
}

/// One epoch of training, as reported and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub learning_rate: f32,
    pub train_loss: f64,
    pub train_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
}

/// The best weights seen on the validation split, for early stopping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestSnapshot {
    pub epoch: usize,
    pub val_loss: f64,
    pub layers: Vec<LayerRecord>,
    /// The ranges these weights were trained with, when they came from a QAT epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat_ranges: Option<crate::quant::qat::QatRanges>,
}

/// Everything needed to continue training exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub epochs_done: usize,
    pub optimizer: OptimizerState,
    /// The shuffling generator as it is at the start of the next epoch to run (epoch
    /// `epochs_done + 1`), before that epoch's shuffle, so a resumed run sees the same
    /// batches. For an interrupted epoch that is the generator at the start of that epoch.
    pub rng: Rng,
    pub history: Vec<EpochRecord>,
    pub best: Option<BestSnapshot>,
    pub epochs_since_best: usize,
    pub stopped_early: bool,
    /// Present only when training was interrupted inside epoch `epochs_done + 1`: how far
    /// that epoch got. Absent (the format-version-1 default) at an epoch boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_progress: Option<EpochProgress>,
    /// Present once quantization-aware training has started (format version 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat: Option<crate::quant::qat::QatState>,
}

/// How far an interrupted epoch got, so `--resume` continues with its next mini-batch,
/// in the same shuffled order, and reports the same epoch totals as an uninterrupted run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// Mini-batches of the epoch already applied to `layers` and the optimizer; at least 1
    /// and fewer than the epoch's batches.
    pub batches_done: usize,
    /// The learning rate the epoch started with; the rest of the epoch uses it even if
    /// `--resume --epochs` re-plans the schedule.
    pub learning_rate: f32,
    /// The running sum of `batch loss * batch size` over the batches done.
    pub loss_sum: f64,
    /// Correctly classified training samples so far (0 for regression).
    pub correct: usize,
    /// Training samples seen so far in the epoch.
    pub seen: usize,
    /// Wall-clock seconds the epoch has run so far (reporting only).
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: String,
    pub format_version: u32,
    pub producer: String,
    pub task: Task,
    pub n_inputs: usize,
    pub normalization: Normalization,
    /// The shape of one sample and the layer graph (format version 2). Absent: a chain of
    /// dense layers over a feature vector, as every version-1 file is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// One record per trainable layer (dense or convolution), in graph order.
    pub layers: Vec<LayerRecord>,
    pub data: DataSpec,
    pub data_options: DataOptions,
    pub config: TrainConfig,
    pub state: TrainState,
    /// Present when the model came from another framework's ONNX file (`kiln import`):
    /// where from, what its outputs hold, and what was dropped. Absent for trained models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<crate::import::ImportRecord>,
}

/// Errors reading or writing a model file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{path}: cannot read the model file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write the model file: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a kiln model file: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("{path}: format {found} version {version} is not supported, expected {FORMAT_NAME} version {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}")]
    Version {
        path: PathBuf,
        found: String,
        version: u32,
    },
    #[error("{path}: {field}: {detail}")]
    Invalid {
        path: PathBuf,
        field: String,
        detail: String,
    },
}

/// Puts the weights of `records` (one per trainable layer, in order) into `network`, or
/// names the record that does not fit its graph.
pub fn load_records(
    network: &mut Network<f32>,
    records: &[LayerRecord],
) -> Result<(), (String, String)> {
    let mut params = network.params_mut();
    if params.len() != records.len() {
        return Err((
            "layers".into(),
            format!(
                "has {} records, but the architecture has {} layers with weights",
                records.len(),
                params.len()
            ),
        ));
    }
    for (layer_idx, ((weights, bias), record)) in params.iter_mut().zip(records).enumerate() {
        let (rows, cols) = weights.shape();
        if (record.n_outputs, record.n_inputs) != (rows, cols)
            || record.weights.len() != rows * cols
            || record.bias.len() != rows
        {
            return Err((
                format!("layers[{layer_idx}]"),
                format!(
                    "holds {} x {} weights and {} biases, but the architecture needs {rows} x {cols} and {rows}",
                    record.n_outputs,
                    record.n_inputs,
                    record.bias.len()
                ),
            ));
        }
        **weights = DMatrix::from_row_slice(rows, cols, &record.weights);
        **bias = DVector::from_column_slice(&record.bias);
    }
    Ok(())
}

/// Refuses data whose targets the model cannot be measured on, before anything is computed:
/// class labels beyond the model's classes, regression targets for a classifier (or the other
/// way round), or more regression outputs than the data has targets.
pub fn check_targets(
    model: &ModelFile,
    path: &Path,
    data_name: &str,
    targets: &crate::data::Targets,
) -> Result<(), ModelFileError> {
    use crate::data::Targets;
    let detail = match (model.task, targets) {
        (Task::Classification { n_classes }, Targets::Classes { n_classes: k, .. }) => {
            (*k > n_classes).then(|| {
                format!("the model has {n_classes} classes, but {data_name} has labels of {k} classes")
            })
        }
        (
            Task::Regression { n_outputs },
            Targets::Regression {
                n_outputs: n_targets,
                ..
            },
        ) => (n_outputs != *n_targets).then(|| {
            format!(
                "the model predicts {n_outputs} value(s) per row, but {data_name} has {n_targets} target(s) per row (--targets, --autoencoder)"
            )
        }),
        (Task::Classification { n_classes }, Targets::Regression { .. }) => Some(format!(
            "the model classifies into {n_classes} classes, but {data_name} has regression targets"
        )),
        (Task::Regression { n_outputs }, Targets::Classes { .. }) => Some(format!(
            "the model predicts {n_outputs} value(s), but {data_name} has class labels"
        )),
    };
    match detail {
        None => Ok(()),
        Some(detail) => Err(ModelFileError::Invalid {
            path: path.to_owned(),
            field: "task".into(),
            detail,
        }),
    }
}

/// Refuses a model that is not a multilayer perceptron, for the commands that take only
/// those so far.
pub fn require_mlp(model: &ModelFile, path: &Path, command: &str) -> Result<(), ModelFileError> {
    if model.is_mlp() {
        return Ok(());
    }
    Err(ModelFileError::Invalid {
        path: path.to_owned(),
        field: "architecture".into(),
        detail: format!(
            "a convolutional network; {command} takes multilayer perceptrons only so far (train, export, check, quantize, bake and run take both)"
        ),
    })
}

/// The layer graph of a model: the shape of one sample and every layer, activations resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub input_shape: Shape,
    pub layers: Vec<LayerSpec>,
}

impl ModelFile {
    /// The dense layers of a multilayer perceptron. Only for models where
    /// [`is_mlp`](ModelFile::is_mlp) holds; a convolutional model's records are filters.
    pub fn mlp(&self) -> Mlp<f32> {
        Mlp {
            layers: self.layers.iter().map(LayerRecord::to_dense).collect(),
        }
    }

    /// Whether the model is a chain of dense layers over a feature vector (a flatten first
    /// changes nothing), the form every MLP-only command takes.
    pub fn is_mlp(&self) -> bool {
        self.architecture.as_ref().is_none_or(|architecture| {
            architecture
                .layers
                .iter()
                .all(|layer| matches!(layer, LayerSpec::Dense { .. } | LayerSpec::Flatten))
        })
    }

    /// The shape of one input sample: `[1, 1, n_inputs]` for a version-1 file.
    pub fn input_shape(&self) -> Shape {
        self.architecture
            .as_ref()
            .map_or(Shape::vector(self.n_inputs), |a| a.input_shape)
    }

    /// The network with this file's weights. The file must be valid (every loaded file is).
    pub fn network(&self) -> Network<f32> {
        self.try_network().unwrap_or_else(|(field, detail)| {
            panic!("an invalid model reached network(): {field}: {detail}")
        })
    }

    /// The network, or the field that does not fit the layer graph and why.
    fn try_network(&self) -> Result<Network<f32>, (String, String)> {
        let Some(architecture) = &self.architecture else {
            return Ok(Network::from_mlp(self.input_shape(), self.mlp()));
        };
        // The graph is wired (and its shapes checked) with throwaway weights, then the
        // file's weights replace them tensor by tensor.
        let mut network = Network::new(
            architecture.input_shape,
            &architecture.layers,
            Activation::Identity,
            Activation::Identity,
            Init::Xavier,
            &mut Rng::new(0),
        )
        .map_err(|e| ("architecture".to_string(), e.to_string()))?;
        load_records(&mut network, &self.layers)?;
        Ok(network)
    }

    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Self, ModelFileError> {
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Check the header first so an old or foreign file gets a precise message.
        #[derive(Deserialize)]
        struct Header {
            format: String,
            format_version: u32,
        }
        let header: Header = serde_json::from_slice(&bytes).map_err(|e| ModelFileError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let known = OLDEST_FORMAT_VERSION..=FORMAT_VERSION;
        if header.format != FORMAT_NAME || !known.contains(&header.format_version) {
            return Err(ModelFileError::Version {
                path: path.to_owned(),
                found: header.format,
                version: header.format_version,
            });
        }
        let model: ModelFile =
            serde_json::from_slice(&bytes).map_err(|e| ModelFileError::Parse {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
        model.validate(path)?;
        Ok(model)
    }

    /// Checks that shapes chain and every number is finite.
    pub fn validate(&self, path: &Path) -> Result<(), ModelFileError> {
        let invalid = |field: String, detail: String| ModelFileError::Invalid {
            path: path.to_owned(),
            field,
            detail,
        };
        if self.layers.is_empty() {
            return Err(invalid(
                "layers".into(),
                "expected at least one layer".into(),
            ));
        }
        if let Some(architecture) = &self.architecture {
            let skip = architecture
                .layers
                .iter()
                .position(|l| matches!(l, LayerSpec::Tap { .. } | LayerSpec::Add { .. }));
            if let Some(index) = skip.filter(|_| self.format_version < SKIP_CONNECTIONS_VERSION) {
                return Err(invalid(
                    format!("architecture.layers[{index}]"),
                    format!(
                        "is a skip connection ({}), which needs format version {SKIP_CONNECTIONS_VERSION}, but the file is version {}",
                        architecture.layers[index].token(),
                        self.format_version
                    ),
                ));
            }
            if architecture.input_shape.len() != self.n_inputs {
                return Err(invalid(
                    "architecture.input_shape".into(),
                    format!(
                        "holds {} values, but the model has {} inputs",
                        architecture.input_shape.len(),
                        self.n_inputs
                    ),
                ));
            }
        }
        let mut expected_inputs = self.n_inputs;
        for (layer_idx, layer) in self.layers.iter().enumerate() {
            let field = format!("layers[{layer_idx}]");
            // A convolution's record holds filters; the layer graph checks its shape below.
            if self.architecture.is_none() && layer.n_inputs != expected_inputs {
                return Err(invalid(
                    field,
                    format!("has {} inputs, expected {expected_inputs}", layer.n_inputs),
                ));
            }
            if layer.weights.len() != layer.n_inputs * layer.n_outputs {
                return Err(invalid(
                    format!("{field}.weights"),
                    format!(
                        "has {} values, expected {} x {}",
                        layer.weights.len(),
                        layer.n_outputs,
                        layer.n_inputs
                    ),
                ));
            }
            if layer.bias.len() != layer.n_outputs {
                return Err(invalid(
                    format!("{field}.bias"),
                    format!(
                        "has {} values, expected {}",
                        layer.bias.len(),
                        layer.n_outputs
                    ),
                ));
            }
            if let Some(idx) = layer.weights.iter().position(|v| !v.is_finite()) {
                return Err(invalid(
                    format!("{field}.weights[{idx}]"),
                    "expected a finite number".into(),
                ));
            }
            if let Some(idx) = layer.bias.iter().position(|v| !v.is_finite()) {
                return Err(invalid(
                    format!("{field}.bias[{idx}]"),
                    "expected a finite number".into(),
                ));
            }
            expected_inputs = layer.n_outputs;
        }
        if self.architecture.is_some() {
            let network = self
                .try_network()
                .map_err(|(field, detail)| invalid(field, detail))?;
            expected_inputs = network.n_outputs();
        }
        if expected_inputs != self.task.n_outputs() {
            return Err(invalid(
                "task".into(),
                format!(
                    "has {} outputs but the last layer gives {expected_inputs}",
                    self.task.n_outputs()
                ),
            ));
        }
        self.validate_qat()
            .map_err(|(field, detail)| invalid(field, detail))?;
        if let Normalization::Standardize { mean, inv_std } = &self.normalization {
            if mean.len() != self.n_inputs || inv_std.len() != self.n_inputs {
                return Err(invalid(
                    "normalization".into(),
                    format!("expected {} means and scales", self.n_inputs),
                ));
            }
        }
        Ok(())
    }

    /// QAT ranges: one per layer of the graph, each finite with `lo <= hi`, and only with a
    /// QAT configuration.
    fn validate_qat(&self) -> Result<(), (String, String)> {
        let n_layers = self.network().layers.len();
        let check = |field: &str, ranges: &crate::quant::qat::QatRanges| {
            if ranges.layers.len() != n_layers {
                return Err((
                    format!("{field}.layers"),
                    format!(
                        "has {} ranges, but the network has {n_layers} layers",
                        ranges.layers.len()
                    ),
                ));
            }
            let all = std::iter::once(("input".to_owned(), ranges.input)).chain(
                ranges.layers.iter().enumerate().flat_map(|(idx, layer)| {
                    [
                        (
                            format!("layers[{idx}].pre_activation"),
                            layer.pre_activation,
                        ),
                        (format!("layers[{idx}].output"), layer.output),
                    ]
                }),
            );
            for (name, [lo, hi]) in all {
                if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                    return Err((
                        format!("{field}.{name}"),
                        format!("expected a finite range [lo, hi], got [{lo}, {hi}]"),
                    ));
                }
            }
            Ok(())
        };
        if let Some(qat) = &self.state.qat {
            if self.config.qat.is_none() {
                return Err((
                    "state.qat".into(),
                    "is present, but config.qat is not".into(),
                ));
            }
            check("state.qat.ranges", &qat.ranges)?;
        }
        if let Some(ranges) = self.state.best.as_ref().and_then(|b| b.qat_ranges.as_ref()) {
            check("state.best.qat_ranges", ranges)?;
        }
        Ok(())
    }

    /// Writes the file atomically: a temp file in the same folder, then a rename.
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        let bytes = serde_json::to_vec(self).map_err(|e| ModelFileError::Write {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        crate::fsutil::write_atomic(path, &bytes).map_err(|source| ModelFileError::Write {
            path: path.to_owned(),
            source,
        })
    }
}
