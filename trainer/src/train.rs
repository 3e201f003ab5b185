//! The training loop: mini-batches, schedules, validation, early stopping,
//! checkpoints and divergence handling.

use crate::data::{self, Dataset, Normalization, NormalizationKind, Split, Targets};
use crate::model::{
    Architecture, BestSnapshot, EpochProgress, EpochRecord, LayerRecord, ModelFile, Task,
    TrainState, FORMAT_NAME, FORMAT_VERSION,
};
use crate::nn::layer_spec::LayerSpec;
use crate::nn::network::{Network, NetworkTrace};
use crate::nn::optim::{OptimizerConfig, OptimizerState};
use crate::nn::parallel::TrainingStep;
use crate::nn::schedule::Schedule;
use crate::nn::shape::Shape;
use crate::nn::{Activation, BatchTargets, Init, Loss, Mlp};
use crate::quant::qat::{self, QatState, QatStep};
use crate::rng::Rng;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Every hyperparameter of a run; stored in the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Hidden layer widths; empty for a linear model. Ignored when `layers` is given.
    pub hidden: Vec<usize>,
    /// The hidden layers as `--layers` gave them (convolutions, pooling, dense); the output
    /// layer follows them. Empty: dense layers of the `hidden` widths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
    /// The shape of one sample (`--input-shape`, or the data's image shape). Absent: a
    /// feature vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Shape>,
    pub activation: Activation,
    pub output_activation: Activation,
    pub loss: Loss,
    pub init: Init,
    pub optimizer: OptimizerConfig,
    pub learning_rate: f32,
    pub schedule: Schedule,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Fraction of the training set held out for validation; 0 disables it.
    pub val_split: f64,
    /// Epochs without a better validation loss before stopping; 0 disables it.
    pub patience: usize,
    pub normalization: NormalizationKind,
    /// Quantization-aware training after the float epochs (`--qat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat: Option<crate::quant::qat::QatConfig>,
}

/// Why training stopped without a usable result.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training diverged at epoch {epoch}, batch {batch}: the loss became {loss}; the last good model (after epoch {last_good_epoch}) was kept; try a lower --lr")]
    Diverged {
        epoch: usize,
        batch: usize,
        loss: f64,
        last_good_epoch: usize,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error("cannot save a checkpoint: {0}")]
    Checkpoint(String),
    /// `should_stop` asked to stop; the checkpoint holding the progress was saved.
    /// `epoch` and `batch` are 1-based: the last mini-batch that was applied.
    #[error("interrupted at epoch {epoch}, batch {batch}")]
    Interrupted { epoch: usize, batch: usize },
    /// The int8 model of the current weights cannot be built (quantization-aware training).
    #[error("quantization-aware training, epoch {epoch}: {source}")]
    Qat {
        epoch: usize,
        source: crate::quant::QuantError,
    },
}

/// Receives progress; the CLI draws a progress bar with it.
pub trait Observer {
    fn epoch_started(&mut self, _epoch: usize, _total_epochs: usize, _n_batches: usize) {}
    fn batch_done(&mut self, _batch_idx: usize, _mean_loss: f64, _accuracy: Option<f64>) {}
    fn epoch_done(&mut self, _record: &EpochRecord) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// The training and validation sets after normalisation, ready for batching.
struct Prepared<'a> {
    train_features: Vec<f32>,
    train: std::borrow::Cow<'a, Dataset>,
    val: Option<(Vec<f32>, Dataset)>,
}

/// Loss and accuracy (for classes) of `network` on normalised `features`.
pub fn evaluate(
    network: &Network<f32>,
    features: &[f32],
    targets: &Targets,
    loss: Loss,
) -> (f64, Option<f64>) {
    let n_features = network.n_inputs();
    evaluate_outputs(targets, loss, |start, end| {
        let input = DMatrix::from_column_slice(
            n_features,
            end - start,
            &features[start * n_features..end * n_features],
        );
        network.forward(&input)
    })
}

/// Loss and accuracy (for classes) of the outputs `output_of(start, end)` gives for the
/// samples `start..end` of `targets`.
pub(crate) fn evaluate_outputs(
    targets: &Targets,
    loss: Loss,
    mut output_of: impl FnMut(usize, usize) -> DMatrix<f32>,
) -> (f64, Option<f64>) {
    let n_samples = targets.len();
    let chunk = 1024;
    let mut total_loss = 0.0;
    let mut correct = 0usize;
    let mut grad = DMatrix::zeros(0, 0);
    for start in (0..n_samples).step_by(chunk) {
        let end = (start + chunk).min(n_samples);
        let output = output_of(start, end);
        let batch_targets = batch_targets(targets, start, end);
        let value = loss.value_and_gradient(&output, batch_targets, &mut grad);
        total_loss += f64::from(value) * (end - start) as f64;
        if let Targets::Classes { labels, .. } = targets {
            correct += count_correct(&output, &labels[start..end]);
        }
    }
    let accuracy = match targets {
        Targets::Classes { .. } => Some(correct as f64 / n_samples.max(1) as f64),
        Targets::Regression { .. } => None,
    };
    (total_loss / n_samples.max(1) as f64, accuracy)
}

/// The index of the largest value; the first one wins ties.
pub fn argmax(values: impl IntoIterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (idx, value) in values.into_iter().enumerate() {
        if value > best.1 {
            best = (idx, value);
        }
    }
    best.0
}

fn count_correct(output: &DMatrix<f32>, labels: &[u32]) -> usize {
    output
        .column_iter()
        .zip(labels)
        .filter(|(column, &label)| argmax(column.iter().copied()) == label as usize)
        .count()
}

fn batch_targets(targets: &Targets, start: usize, end: usize) -> BatchTargets<'_> {
    match targets {
        Targets::Classes { labels, .. } => BatchTargets::Classes(&labels[start..end]),
        Targets::Regression {
            values, n_outputs, ..
        } => BatchTargets::Values(&values[start * n_outputs..end * n_outputs]),
    }
}

fn task_of(dataset: &Dataset) -> Task {
    match &dataset.targets {
        Targets::Classes { n_classes, .. } => Task::Classification {
            n_classes: *n_classes,
        },
        Targets::Regression { n_outputs, .. } => Task::Regression {
            n_outputs: *n_outputs,
        },
    }
}

impl TrainConfig {
    /// Rejects combinations that cannot train.
    pub fn validate(&self, task: Task) -> Result<(), TrainError> {
        let fail = |msg: String| Err(TrainError::Config(msg));
        if self.batch_size == 0 {
            return fail("--batch: expected a batch size of at least 1".into());
        }
        // A QAT fine-tune of a model that was never trained here (an import) has no float
        // epochs.
        if self.epochs == 0 && self.qat.is_none() {
            return fail("--epochs: expected at least 1 epoch".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return fail(format!(
                "--lr: expected a positive learning rate, got {}",
                self.learning_rate
            ));
        }
        if self.hidden.contains(&0) {
            return fail("--hidden: expected every layer width to be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.val_split) {
            return fail(format!(
                "--val-split: expected a fraction in [0, 1), got {}",
                self.val_split
            ));
        }
        if self.patience > 0 && self.val_split == 0.0 {
            return fail(
                "--patience: early stopping needs a validation split (--val-split)".into(),
            );
        }
        if let Some(qat) = &self.qat {
            if qat.epochs == 0 {
                return fail("--qat-epochs: expected at least 1 epoch".into());
            }
            if !(qat.learning_rate.is_finite() && qat.learning_rate > 0.0) {
                return fail(format!(
                    "--qat-lr: expected a positive learning rate, got {}",
                    qat.learning_rate
                ));
            }
        }
        if matches!(task, Task::Regression { .. }) && self.loss == Loss::CrossEntropy {
            return fail(
                "--loss cross-entropy needs class labels; use --loss mse for regression targets"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A network before its first step: the normalization fitted on the training set, the
/// initial weights and optimizer state from `config.seed`.
fn initial(
    split: &Split,
    config: &TrainConfig,
    task: Task,
) -> Result<(Normalization, TrainState, Network<f32>), TrainError> {
    let normalization = Normalization::fit(config.normalization, &split.train);
    let mut rng = Rng::new(config.seed);
    let input_shape = config
        .input_shape
        .unwrap_or(Shape::vector(split.train.n_features));
    let network = Network::new(
        input_shape,
        &config.layer_specs(task.n_outputs()),
        config.activation,
        config.output_activation,
        config.init,
        &mut rng,
    )
    .map_err(|e| TrainError::Config(format!("--layers: {e}")))?;
    let state = TrainState {
        epochs_done: 0,
        optimizer: optimizer_for(config.optimizer, &network),
        rng,
        history: Vec::new(),
        best: None,
        epochs_since_best: 0,
        stopped_early: false,
        epoch_progress: None,
        qat: None,
    };
    Ok((normalization, state, network))
}

/// The model file of the network `config` describes before any training: what `kiln fit`
/// bakes to size a layer graph exactly (a blob's length and plan do not depend on the weights).
pub fn untrained(
    split: &Split,
    data_spec: &data::DataSpec,
    data_options: &data::DataOptions,
    config: &TrainConfig,
) -> Result<ModelFile, TrainError> {
    let task = task_of(&split.train);
    config.validate(task)?;
    let (normalization, state, network) = initial(split, config, task)?;
    Ok(model_file(
        &network,
        &state,
        &normalization,
        task,
        data_spec,
        data_options,
        config,
    ))
}

/// The model file of `network` as training left it.
fn model_file(
    network: &Network<f32>,
    state: &TrainState,
    normalization: &Normalization,
    task: Task,
    data_spec: &data::DataSpec,
    data_options: &data::DataOptions,
    config: &TrainConfig,
) -> ModelFile {
    ModelFile {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        producer: format!("kiln {}", env!("CARGO_PKG_VERSION")),
        task,
        n_inputs: network.n_inputs(),
        normalization: normalization.clone(),
        architecture: Some(Architecture {
            input_shape: network.input_shape,
            layers: network.specs(),
        }),
        layers: LayerRecord::of_network(network),
        data: data_spec.clone(),
        data_options: data_options.clone(),
        config: config.clone(),
        state: state.clone(),
        // Training changes the weights, so a fine-tuned import no longer is its source file.
        imported: None,
    }
}

/// Trains from scratch, or continues `resume` to `config.epochs` epochs.
///
/// `checkpoint` is called with the current model before the first epoch and
/// after every epoch, so the last good model is on disk if training diverges.
///
/// `should_stop` is asked after every mini-batch, with the number of mini-batches this
/// call has run so far. When it answers `true`, training stops after that batch: inside an
/// epoch, the checkpoint records the epoch's progress (`state.epoch_progress`); after an
/// epoch's last batch, the epoch is completed and checkpointed as usual. Either way the
/// result is [`TrainError::Interrupted`], and resuming from the checkpoint reproduces the
/// uninterrupted run bit for bit.
///
/// `threads` (at least 1) is how many threads run the first layer (see
/// [`crate::nn::parallel`]); it changes the speed only, never a bit of the result, so it is
/// not part of the stored configuration.
#[allow(clippy::too_many_arguments)]
pub fn train(
    split: &Split,
    data_spec: &data::DataSpec,
    data_options: &data::DataOptions,
    config: &TrainConfig,
    threads: usize,
    resume: Option<ModelFile>,
    observer: &mut dyn Observer,
    checkpoint: &mut dyn FnMut(&ModelFile) -> Result<(), String>,
    should_stop: &dyn Fn(usize) -> bool,
) -> Result<ModelFile, TrainError> {
    let task = task_of(&split.train);
    config.validate(task)?;
    let prepared_split = match resume.as_ref() {
        Some(model) => (
            model.normalization.clone(),
            model.state.clone(),
            model.network(),
        ),
        None => initial(split, config, task)?,
    };
    let (normalization, mut state, mut network) = prepared_split;
    if network.n_inputs() != split.train.n_features || network.n_outputs() != task.n_outputs() {
        return Err(TrainError::Config(format!(
            "--resume: the model maps {} inputs to {} outputs but the data has {} features and {} outputs",
            network.n_inputs(),
            network.n_outputs(),
            split.train.n_features,
            task.n_outputs()
        )));
    }
    if !state.optimizer.matches_params(&network.params())
        || state.optimizer.config != config.optimizer
    {
        state.optimizer = optimizer_for(config.optimizer, &network);
    }

    let prepared = prepare(split, config, &normalization)?;
    let snapshot = |network: &Network<f32>, state: &TrainState| {
        model_file(
            network,
            state,
            &normalization,
            task,
            data_spec,
            data_options,
            config,
        )
    };
    if resume.is_none() {
        checkpoint(&snapshot(&network, &state)).map_err(TrainError::Checkpoint)?;
    }

    let n_train = prepared.train.n_samples();
    let n_batches = n_train.div_ceil(config.batch_size);
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut batch_labels: Vec<u32> = Vec::with_capacity(config.batch_size);
    let mut batch_values: Vec<f32> = Vec::with_capacity(config.batch_size);
    if let Some(progress) = &state.epoch_progress {
        let consistent = (1..n_batches).contains(&progress.batches_done)
            && progress.seen == progress.batches_done * config.batch_size
            && progress.correct <= progress.seen;
        if !consistent {
            return Err(TrainError::Config(format!(
                "--resume: state.epoch_progress records {} of {n_batches} batches ({} samples) done, which does not fit this data and --batch {}",
                progress.batches_done, progress.seen, config.batch_size
            )));
        }
    }
    // Quantization-aware training fixes the int8 inputs when it starts (or resumes).
    let val_dataset = prepared.val.as_ref().map(|(_, dataset)| dataset);
    let qat_start = |network: &Network<f32>, state: &TrainState, pow2_scales: bool| {
        qat::start(
            &snapshot(network, state),
            &split.train,
            (&prepared.train, val_dataset),
            pow2_scales,
        )
        .map_err(|source| TrainError::Qat {
            epoch: state.epochs_done + 1,
            source,
        })
    };
    // From here until `store`, the network (or its first layer) and its optimiser state live
    // in `step`.
    let mut step = match (&state.qat, config.qat) {
        (Some(qat_state), Some(qat_config)) => {
            let (inputs, _) = qat_start(&network, &state, qat_config.pow2_scales)?;
            Step::Qat(QatStep::new(
                &network,
                qat_state.ranges.clone(),
                inputs,
                qat_config.pow2_scales,
            ))
        }
        _ => Step::new(
            &network,
            &state.optimizer,
            threads,
            &prepared.train_features,
        ),
    };
    let mut batches_run = 0usize;

    loop {
        let float_done = state.epochs_done >= config.epochs || state.stopped_early;
        match (&state.qat, config.qat) {
            (None, None) if float_done => break,
            // The float epochs are over (their best weights restored): QAT starts from them,
            // with the ranges `kiln quantize` would calibrate and a fresh optimiser.
            (None, Some(qat_config)) if float_done => {
                let (inputs, ranges) = qat_start(&network, &state, qat_config.pow2_scales)?;
                state.qat = Some(QatState {
                    epochs_done: 0,
                    ranges: ranges.clone(),
                });
                state.best = None;
                state.epochs_since_best = 0;
                state.stopped_early = false;
                state.optimizer = optimizer_for(config.optimizer, &network);
                step = Step::Qat(QatStep::new(
                    &network,
                    ranges,
                    inputs,
                    qat_config.pow2_scales,
                ));
            }
            (Some(qat_state), Some(qat_config))
                if qat_state.epochs_done >= qat_config.epochs || state.stopped_early =>
            {
                break
            }
            _ => {}
        }
        let epoch = state.epochs_done;
        let started = Instant::now();
        // An interrupted epoch continues with the rate and running totals it had.
        let resumed = state.epoch_progress.take();
        let (scheduled_lr, total_epochs) = match (&state.qat, config.qat) {
            (Some(qat_state), Some(qat_config)) => (
                qat_config.learning_rate,
                epoch - qat_state.epochs_done + qat_config.epochs,
            ),
            _ => (
                config
                    .schedule
                    .learning_rate(config.learning_rate, epoch, config.epochs),
                config.epochs + config.qat.map_or(0, |qat| qat.epochs),
            ),
        };
        let lr = resumed.as_ref().map_or(scheduled_lr, |p| p.learning_rate);
        let skip = resumed.as_ref().map_or(0, |p| p.batches_done);
        let seconds_before = resumed.as_ref().map_or(0.0, |p| p.seconds);
        observer.epoch_started(epoch + 1, total_epochs, n_batches);
        // The order is re-derived each epoch so a resumed run shuffles identically.
        for (idx, slot) in order.iter_mut().enumerate() {
            *slot = idx;
        }
        let rng_at_epoch_start = state.rng.clone();
        state.rng.shuffle(&mut order);
        let mut loss_sum = resumed.as_ref().map_or(0.0f64, |p| p.loss_sum);
        let mut correct = resumed.as_ref().map_or(0usize, |p| p.correct);
        let mut seen = resumed.as_ref().map_or(0usize, |p| p.seen);
        let mut batches = order
            .chunks(config.batch_size)
            .enumerate()
            .skip(skip)
            .peekable();
        while let Some((batch_idx, rows)) = batches.next() {
            batch_labels.clear();
            batch_values.clear();
            for &row_idx in rows {
                match &prepared.train.targets {
                    Targets::Classes { labels, .. } => batch_labels.push(labels[row_idx]),
                    Targets::Regression {
                        values, n_outputs, ..
                    } => batch_values
                        .extend_from_slice(&values[row_idx * n_outputs..(row_idx + 1) * n_outputs]),
                }
            }
            step.load_batch(&prepared.train_features, rows);
            if let Some((_, next_rows)) = batches.peek() {
                step.next_batch(next_rows);
            }
            let targets = match &prepared.train.targets {
                Targets::Classes { .. } => BatchTargets::Classes(&batch_labels),
                Targets::Regression { .. } => BatchTargets::Values(&batch_values),
            };
            let loss = step
                .forward(config.loss, targets)
                .map_err(|source| TrainError::Qat {
                    epoch: epoch + 1,
                    source,
                })?;
            if !loss.is_finite() {
                return Err(TrainError::Diverged {
                    epoch: epoch + 1,
                    batch: batch_idx + 1,
                    loss: f64::from(loss),
                    last_good_epoch: epoch,
                });
            }
            if let BatchTargets::Classes(labels) = targets {
                correct += count_correct(step.output(), labels);
            }
            step.backward(&mut state.optimizer, lr);
            loss_sum += f64::from(loss) * rows.len() as f64;
            seen += rows.len();
            let accuracy =
                matches!(targets, BatchTargets::Classes(_)).then(|| correct as f64 / seen as f64);
            observer.batch_done(batch_idx + 1, loss_sum / seen as f64, accuracy);
            batches_run += 1;
            if batch_idx + 1 < n_batches && should_stop(batches_run) {
                // Save the epoch's progress; the generator goes back to the epoch's start so
                // a resumed run re-derives the same order and skips the batches done.
                step.store(&mut network, &mut state);
                if !network.is_finite() {
                    return Err(TrainError::Diverged {
                        epoch: epoch + 1,
                        batch: batch_idx + 1,
                        loss: f64::NAN,
                        last_good_epoch: epoch,
                    });
                }
                let mut saved = state.clone();
                saved.rng = rng_at_epoch_start;
                saved.epoch_progress = Some(EpochProgress {
                    batches_done: batch_idx + 1,
                    learning_rate: lr,
                    loss_sum,
                    correct,
                    seen,
                    seconds: seconds_before + started.elapsed().as_secs_f64(),
                });
                checkpoint(&snapshot(&network, &saved)).map_err(TrainError::Checkpoint)?;
                return Err(TrainError::Interrupted {
                    epoch: epoch + 1,
                    batch: batch_idx + 1,
                });
            }
        }
        step.store(&mut network, &mut state);
        if !network.is_finite() {
            return Err(TrainError::Diverged {
                epoch: epoch + 1,
                batch: n_batches,
                loss: f64::NAN,
                last_good_epoch: epoch,
            });
        }
        // QAT scores the device's int8 model of the current weights and ranges.
        let qat_outputs = match &step {
            Step::Qat(qat_step) => qat_step.val_outputs().map_err(|source| TrainError::Qat {
                epoch: epoch + 1,
                source,
            })?,
            _ => None,
        };
        let (val_loss, val_accuracy) = match (&prepared.val, qat_outputs) {
            (Some((_, dataset)), Some(outputs)) => {
                let (loss, accuracy) = evaluate_outputs(&dataset.targets, config.loss, outputs);
                (Some(loss), accuracy)
            }
            (Some((features, dataset)), None) => {
                let (loss, accuracy) = evaluate(&network, features, &dataset.targets, config.loss);
                (Some(loss), accuracy)
            }
            (None, _) => (None, None),
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            learning_rate: lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: matches!(prepared.train.targets, Targets::Classes { .. })
                .then(|| correct as f64 / seen.max(1) as f64),
            val_loss,
            val_accuracy,
            seconds: seconds_before + started.elapsed().as_secs_f64(),
        };
        observer.epoch_done(&record);
        state.history.push(record);
        state.epochs_done += 1;
        if let Some(qat_state) = &mut state.qat {
            qat_state.epochs_done += 1;
        }
        if let (Some(val_loss), true) = (val_loss, config.patience > 0) {
            let improved = state
                .best
                .as_ref()
                .is_none_or(|best| val_loss < best.val_loss);
            if improved {
                state.best = Some(BestSnapshot {
                    epoch: epoch + 1,
                    val_loss,
                    layers: LayerRecord::of_network(&network),
                    qat_ranges: state.qat.as_ref().map(|qat| qat.ranges.clone()),
                });
                state.epochs_since_best = 0;
            } else {
                state.epochs_since_best += 1;
                if state.epochs_since_best >= config.patience {
                    state.stopped_early = true;
                }
            }
        }
        let is_last = match (&state.qat, config.qat) {
            (Some(qat_state), Some(qat_config)) => {
                qat_state.epochs_done >= qat_config.epochs || state.stopped_early
            }
            _ => state.epochs_done >= config.epochs || state.stopped_early,
        };
        if is_last && config.patience > 0 {
            // Early stopping hands back the weights that validated best, with the ranges
            // they were trained with.
            if let Some(best) = &state.best {
                crate::model::load_records(&mut network, &best.layers).map_err(
                    |(field, detail)| TrainError::Config(format!("state.best.{field}: {detail}")),
                )?;
                if let (Some(qat_state), Some(ranges)) = (&mut state.qat, &best.qat_ranges) {
                    qat_state.ranges = ranges.clone();
                }
            }
        }
        checkpoint(&snapshot(&network, &state)).map_err(TrainError::Checkpoint)?;
        // A stop requested by the epoch's last batch takes effect once the epoch is saved.
        if batches_run > 0 && should_stop(batches_run) {
            return Err(TrainError::Interrupted {
                epoch: epoch + 1,
                batch: n_batches,
            });
        }
    }
    Ok(snapshot(&network, &state))
}

fn optimizer_for(config: OptimizerConfig, network: &Network<f32>) -> OptimizerState {
    OptimizerState::for_params(config, &network.params())
}

impl TrainConfig {
    /// The whole layer graph: `--layers` (or dense layers of the `--hidden` widths), then the
    /// output layer with the task's output activation.
    pub fn layer_specs(&self, n_outputs: usize) -> Vec<LayerSpec> {
        let mut specs = if self.layers.is_empty() {
            self.hidden
                .iter()
                .map(|&n_outputs| LayerSpec::Dense {
                    n_outputs,
                    activation: None,
                })
                .collect()
        } else {
            self.layers.clone()
        };
        specs.push(LayerSpec::Dense {
            n_outputs,
            activation: None,
        });
        specs
    }
}

/// Mixed into the seed for the validation split.
const VAL_SPLIT_SALT: u64 = 0x5EED_F05A_11D0_0001;

/// The validation set `train` holds out of `split.train` for `config` (`None` without
/// `val_split`): `kiln fit` selects among candidates on it, never on the test set.
pub fn validation_set(split: &Split, config: &TrainConfig) -> Result<Option<Dataset>, TrainError> {
    if config.val_split > 0.0 {
        let (_, val) = data::split(&split.train, config.val_split, config.seed ^ VAL_SPLIT_SALT)?;
        Ok(Some(val))
    } else {
        Ok(None)
    }
}

fn prepare<'a>(
    split: &'a Split,
    config: &TrainConfig,
    normalization: &Normalization,
) -> Result<Prepared<'a>, TrainError> {
    let (train, val) = if config.val_split > 0.0 {
        // The validation split is seeded separately from initialisation so that
        // changing --val-split does not change the initial weights.
        let (train, val) =
            data::split(&split.train, config.val_split, config.seed ^ VAL_SPLIT_SALT)?;
        (std::borrow::Cow::Owned(train), Some(val))
    } else {
        (std::borrow::Cow::Borrowed(&split.train), None)
    };
    let train_features = normalization.apply(&train);
    let val = val.map(|val| (normalization.apply(&val), val));
    Ok(Prepared {
        train_features,
        train,
        val,
    })
}

/// Above this fraction of nonzero training features the first layer has too few zeros to
/// skip: the dense step (nalgebra's GEMM) is faster than the zero-skipping one. Measured on
/// MNIST: with about 19% nonzero the zero-skipping step takes 0.6 of the dense step's time,
/// standardized (all nonzero) 1.5-1.9 times it; the two cross near 55-60%. The bundled digits
/// (51% nonzero) stay on the zero-skipping step, which also splits over `--threads`.
const MAX_NONZERO_FOR_ZERO_SKIPPING: f64 = 0.6;

/// The training step, chosen by the graph's shape and the data: [`TrainingStep`]
/// (zero-skipping first layer, `--threads`) for a chain of dense layers over inputs with many
/// zeros, [`GraphStep`] for every other graph or input.
enum Step {
    ZeroSkipping(TrainingStep),
    Graph(GraphStep),
    /// Quantization-aware training (any graph): the device's int8 forward pass.
    Qat(QatStep),
}

impl Step {
    fn new(
        network: &Network<f32>,
        optimizer: &OptimizerState,
        threads: usize,
        features: &[f32],
    ) -> Self {
        let n_nonzero = features.iter().filter(|&&v| v != 0.0).count();
        let sparse = n_nonzero as f64 <= MAX_NONZERO_FOR_ZERO_SKIPPING * features.len() as f64;
        match network.to_mlp() {
            Some(mlp) if sparse => {
                Step::ZeroSkipping(TrainingStep::new(&mlp, optimizer, threads, features))
            }
            _ => Step::Graph(GraphStep::new(network)),
        }
    }

    fn load_batch(&mut self, features: &[f32], rows: &[usize]) {
        match self {
            Step::ZeroSkipping(step) => step.load_batch(features, rows),
            Step::Graph(step) => step.load_batch(features, rows),
            Step::Qat(step) => step.load_batch(rows),
        }
    }

    fn next_batch(&mut self, rows: &[usize]) {
        if let Step::ZeroSkipping(step) = self {
            step.next_batch(rows);
        }
    }

    fn forward(
        &mut self,
        loss: Loss,
        targets: BatchTargets<'_>,
    ) -> Result<f32, crate::quant::QuantError> {
        match self {
            Step::ZeroSkipping(step) => Ok(step.forward(loss, targets)),
            Step::Graph(step) => Ok(step.forward(loss, targets)),
            Step::Qat(step) => step.forward(loss, targets),
        }
    }

    fn output(&self) -> &DMatrix<f32> {
        match self {
            Step::ZeroSkipping(step) => step.output(),
            Step::Graph(step) => step.output(),
            Step::Qat(step) => step.output(),
        }
    }

    fn backward(&mut self, optimizer: &mut OptimizerState, lr: f32) {
        match self {
            Step::ZeroSkipping(step) => step.backward(optimizer, lr),
            Step::Graph(step) => step.backward(optimizer, lr),
            Step::Qat(step) => step.backward(optimizer, lr),
        }
    }

    /// Hands the weights (and QAT's ranges) back to `network` and `state`.
    fn store(&self, network: &mut Network<f32>, state: &mut TrainState) {
        match self {
            Step::ZeroSkipping(step) => {
                // Only chains of dense layers take this step.
                let mut mlp = network.to_mlp().unwrap_or(Mlp { layers: Vec::new() });
                step.store(&mut mlp, &mut state.optimizer);
                *network = Network::from_mlp(network.input_shape, mlp);
            }
            Step::Graph(step) => network.clone_from(&step.network),
            Step::Qat(step) => {
                network.clone_from(&step.network);
                if let Some(qat_state) = &mut state.qat {
                    qat_state.ranges.clone_from(&step.ranges);
                }
            }
        }
    }
}

/// The plain step on the calling thread for any layer graph: [`Network::forward_trace`],
/// [`Loss::value_and_gradient`], [`Network::backward`] and
/// [`OptimizerState::step_params`], with nalgebra's GEMM for every product (convolutions
/// through im2col). For a chain of dense layers it is the reference the zero-skipping step
/// is tested against. Its optimiser state stays the caller's.
struct GraphStep {
    network: Network<f32>,
    rows: Vec<f32>,
    trace: Option<NetworkTrace<f32>>,
    output_grad: DMatrix<f32>,
}

impl GraphStep {
    fn new(network: &Network<f32>) -> Self {
        Self {
            network: network.clone(),
            rows: Vec::new(),
            trace: None,
            output_grad: DMatrix::zeros(0, 0),
        }
    }

    fn load_batch(&mut self, features: &[f32], rows: &[usize]) {
        let n_features = self.network.n_inputs();
        self.rows.clear();
        for &row_idx in rows {
            self.rows
                .extend_from_slice(&features[row_idx * n_features..(row_idx + 1) * n_features]);
        }
    }

    fn forward(&mut self, loss: Loss, targets: BatchTargets<'_>) -> f32 {
        let input = crate::nn::batch_matrix(&self.rows, self.network.n_inputs());
        let trace = self.network.forward_trace(input);
        let value = loss.value_and_gradient(trace.output(), targets, &mut self.output_grad);
        self.trace = Some(trace);
        value
    }

    fn output(&self) -> &DMatrix<f32> {
        self.trace
            .as_ref()
            .map_or(&self.output_grad, NetworkTrace::output)
    }

    fn backward(&mut self, optimizer: &mut OptimizerState, lr: f32) {
        if let Some(trace) = self.trace.take() {
            let output_grad = std::mem::replace(&mut self.output_grad, DMatrix::zeros(0, 0));
            let grads = self.network.backward(&trace, output_grad);
            optimizer.step_params(self.network.params_mut(), &grads, lr);
        }
    }
}

#[cfg(test)]
mod step_tests {
    use super::*;
    use crate::nn::optim::OptimizerConfig;

    fn step_for(features: &[f32]) -> Step {
        let mut rng = Rng::new(3);
        let mlp = Mlp::new(
            &[4, 8, 2],
            Activation::Relu,
            Activation::Identity,
            Init::Xavier,
            &mut rng,
        );
        let config = OptimizerConfig::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        };
        let optimizer = OptimizerState::new(config, &mlp.layers);
        let network = Network::from_mlp(Shape::new(1, 1, 4), mlp);
        Step::new(&network, &optimizer, 2, features)
    }

    #[test]
    fn inputs_with_many_zeros_skip_them_and_dense_inputs_take_the_plain_step() {
        // 2 of 8 nonzero, then 5 of 8 nonzero (the threshold is 60%), then all.
        let sparse = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0];
        let half = [0.5, 1.0, 0.0, 0.0, 3.0, 0.0, 2.0, 1.0];
        let dense = [0.5, 1.0, -1.0, 0.25, 3.0, 0.1, 2.0, 1.0];
        assert!(matches!(step_for(&sparse), Step::ZeroSkipping(_)));
        assert!(matches!(step_for(&half), Step::Graph(_)));
        assert!(matches!(step_for(&dense), Step::Graph(_)));
    }
}
