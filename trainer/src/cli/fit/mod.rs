//! `kiln fit`: the most accurate MLP that fits a flash, RAM and latency budget on one core.
//!
//! Candidates are shape families over a grid of widths, plus the widest member of each family
//! that fits: MLPs (one to three hidden layers, each a fixed fraction of the first) and, for
//! image data, small CNNs (one or two 3x3 convolutions each followed by 2x2 max pooling, with or
//! without a dense layer, over a grid of channel counts). Every candidate is sized before
//! training by `kiln inspect`'s own footprint model: an MLP by [`inspect::dense_cost`] (the
//! blob's exact length by the format, the RAM plan, the per-layer instruction estimate), a CNN by
//! baking it untrained and sizing that blob with [`inspect::blob_cost`] (a blob's length and
//! plan do not depend on the weights). Only those that fit are trained, in parallel, with early stopping on a
//! validation split that is also where the winner is chosen (the test set only reports). Each
//! trained candidate is quantized and run through kiln-runtime on the host, and its blob is
//! held to the size that was estimated. The search state lives in `fit.json`, written after
//! every candidate, so Ctrl-C or a spent `--budget` loses only the candidates in flight, whose
//! checkpoints `--resume` continues.
//!
//! `candidates.rs` holds the search space and the sizing, `report.rs` the table, the plot and
//! the progress; this file the search itself: the record, the training and the winner.

mod candidates;
mod report;

use super::args::FitArgs;
use super::config::{fit_config, FitPlan, UsageError};
use super::inspect::{self, CoreCost};
use super::interrupt;
use crate::data::{self, Dataset, Split, Targets};
use crate::model::ModelFile;
use crate::quant::{self, host};
use crate::train;
use anyhow::{Context, Result};
use candidates::{cnn_config, enumerate, InputFacts};
use report::{
    budgets_text, nothing_fits, print_report, write_pareto, Files, FitProgress, FitReport,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The search record in the output folder.
const FIT_FILE: &str = "fit.json";
const FIT_FORMAT: &str = "kiln-fit";
/// The layout of `fit.json`; `--resume` refuses any other.
const FIT_VERSION: u32 = 1;

/// Nothing in the search space fits the budget; exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NothingFits(pub String);

/// The search stopped on Ctrl-C; exit code 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted; {finished} candidates finished and are kept in {record}; continue with `kiln fit --resume` and the same flags")]
pub struct FitInterrupted {
    pub finished: usize,
    pub record: PathBuf,
}

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    /// Over a budget: never trained.
    DoesNotFit,
    /// Fits; not trained yet.
    Pending,
    /// Trained, quantized and measured.
    Trained,
    /// Stopped by the time budget (its checkpoint is kept for `--resume`).
    TimeBudget,
    /// Stopped by Ctrl-C (its checkpoint is kept for `--resume`).
    Interrupted,
    /// Training diverged.
    Diverged,
}

impl Status {
    fn text(self) -> &'static str {
        match self {
            Status::DoesNotFit => "does not fit",
            Status::Pending => "not trained",
            Status::Trained => "trained",
            Status::TimeBudget => "not trained: time budget spent",
            Status::Interrupted => "not trained: interrupted",
            Status::Diverged => "diverged",
        }
    }
}

/// What a trained candidate scored and what its blob measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trained {
    epochs: usize,
    stopped_early: bool,
    train_seconds: f64,
    float_val_accuracy: f64,
    int8_val_accuracy: f64,
    float_test_accuracy: f64,
    int8_test_accuracy: f64,
    /// The quantized blob as `kiln inspect --core` reports it: equal to `cost`, or the
    /// search fails (the footprint model must be exact).
    blob_cost: CoreCost,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Candidate {
    /// e.g. `784-32-16-10`, or `28x28x1-conv3x3:8-maxpool2-10` for a CNN.
    label: String,
    /// An MLP's hidden widths (empty for a CNN).
    hidden: Vec<usize>,
    /// A CNN's hidden layers as `--layers` takes them; `None` for an MLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layers: Option<String>,
    /// Sized before training, by `kiln inspect`'s model.
    cost: CoreCost,
    /// Seconds per inference at --clock and --cycles-per-instruction.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_seconds: Option<f64>,
    fits: bool,
    /// The budgets it is over, one phrase each.
    over: Vec<String>,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Trained>,
    #[serde(default)]
    winner: bool,
}

/// `fit.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FitRecord {
    format: String,
    version: u32,
    /// Everything the candidates' results depend on; `--resume` needs the same.
    settings: serde_json::Value,
    /// The input stage the data leads to, which the sizes assume.
    input_stage: String,
    /// Raw inputs as bytes (`Model::run_bytes`) or i32.
    input_type: String,
    candidates: Vec<Candidate>,
}

pub fn fit(args: &FitArgs) -> Result<()> {
    let plan = fit_config(args)?;
    std::fs::create_dir_all(&plan.out_dir).with_context(|| {
        format!(
            "{}: cannot create the output folder",
            plan.out_dir.display()
        )
    })?;
    super::commands::remove_stale_temp_files(&plan.out_dir);
    let record_path = plan.out_dir.join(FIT_FILE);
    let previous = previous_record(plan.resume, &record_path)?;

    let split = data::load(&plan.data_spec, &plan.data_options)?;
    let Targets::Classes { .. } = &split.train.targets else {
        return Err(UsageError(format!(
            "{}: kiln fit searches classifiers, and this data has regression targets",
            plan.data_spec
        ))
        .into());
    };
    let input = InputFacts::of(&plan, &split)?;
    let settings = settings_of(&plan);
    let mut candidates = enumerate(&plan, &input, &split)?;
    if let Some(previous) = previous {
        merge_previous(&record_path, &settings, previous, &mut candidates)?;
    }
    let mut record = FitRecord {
        format: FIT_FORMAT.to_owned(),
        version: FIT_VERSION,
        settings,
        input_stage: inspect::input_stage_name(input.stage).to_owned(),
        input_type: if input.byte_input { "u8" } else { "i32" }.to_owned(),
        candidates,
    };
    save_record(&record_path, &record)?;
    if !record.candidates.iter().any(|c| c.fits) {
        return Err(NothingFits(nothing_fits(&plan, &record.candidates)).into());
    }

    let val =
        train::validation_set(&split, &plan.train)?.context("the validation split is empty")?;
    let context = TrainContext {
        plan: &plan,
        input: &input,
        split: &split,
        val: &val,
        record_path: &record_path,
    };
    let interrupted = train_candidates(&context, &mut record)?;
    if interrupted {
        let finished = record
            .candidates
            .iter()
            .filter(|c| c.status == Status::Trained)
            .count();
        return Err(FitInterrupted {
            finished,
            record: record_path,
        }
        .into());
    }

    let Some(winner) = winner_of(&record.candidates) else {
        save_record(&record_path, &record)?;
        if record
            .candidates
            .iter()
            .any(|c| c.status == Status::TimeBudget)
        {
            anyhow::bail!(
                "the time budget (--budget) ended before any candidate finished training; \
                 continue with `kiln fit --resume` and the same flags, or raise --budget"
            );
        }
        anyhow::bail!(
            "every candidate that fits diverged in training; try a lower --lr (in a new folder)"
        );
    };
    for (i, candidate) in record.candidates.iter_mut().enumerate() {
        candidate.winner = i == winner;
    }
    save_record(&record_path, &record)?;
    let outputs = write_winner(&plan, &split, &record.candidates[winner], input.byte_input)?;
    let pictures = write_pareto(&plan, &record)?;
    let report = FitReport {
        command: "fit",
        data: split.description.clone(),
        core: plan.core,
        budgets: budgets_text(&plan),
        input_stage: record.input_stage.clone(),
        input_type: record.input_type.clone(),
        winner: record.candidates[winner].label.clone(),
        quantization: &outputs,
        candidates: &record.candidates,
        files: Files {
            record: record_path.clone(),
            model: plan.out_dir.join("model.json"),
            onnx: plan.out_dir.join("model.onnx"),
            qdq_onnx: plan.out_dir.join("model.qdq.onnx"),
            blob: plan.out_dir.join("model.kiln"),
            rust: plan.out_dir.join("model.rs"),
            pictures,
        },
    };
    if plan.output.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&plan, &report);
    }
    outputs.verdict()
}

/// The settings the results depend on (not --jobs or --budget, which change only when they
/// are ready).
fn settings_of(plan: &FitPlan) -> serde_json::Value {
    serde_json::json!({
        "data": plan.data_spec.to_string(),
        "data_options": plan.data_options,
        "core": plan.core,
        "flash_budget": plan.flash_budget,
        "ram_budget": plan.ram_budget,
        "instruction_budget": plan.instruction_budget,
        "max_hidden_layers": plan.max_hidden_layers,
        "cnn": plan.cnn,
        "input_shape": plan.input_shape.map(|s| format!("{}x{}x{}", s.h, s.w, s.c)),
        "train": plan.train,
        "calibration": format!(
            "{} samples, {}{}",
            plan.calib.calib_samples,
            plan.calib.method,
            if plan.calib.pow2_scales { ", power-of-two scales" } else { "" }
        ),
    })
}

/// The winner: the best int8 accuracy on the validation set among the trained candidates that
/// fit; the smaller flash on a tie.
fn winner_of(candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.fits && c.status == Status::Trained)
        .filter_map(|(i, c)| c.result.as_ref().map(|r| (i, r.int8_val_accuracy, c)))
        .max_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(b.2.cost.flash_bytes.cmp(&a.2.cost.flash_bytes))
        })
        .map(|(i, _, _)| i)
}

/// The record `--resume` continues; a search is never started over one, nor resumed without.
fn previous_record(resume: bool, path: &Path) -> Result<Option<FitRecord>> {
    match (resume, path.exists()) {
        (false, true) => Err(UsageError(format!(
            "{}: the folder already holds a search; continue it with --resume or choose another -o",
            path.display()
        ))
        .into()),
        (true, false) => Err(UsageError(format!(
            "--resume: {} does not exist; start the search without --resume",
            path.display()
        ))
        .into()),
        (true, true) => Ok(Some(load_record(path)?)),
        (false, false) => Ok(None),
    }
}

fn load_record(path: &Path) -> Result<FitRecord> {
    let bad = |detail: String| UsageError(format!("{}: {detail}", path.display()));
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read the search record: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FIT_FORMAT) {
        return Err(bad(format!(
            "not a kiln fit record (\"format\": \"{FIT_FORMAT}\")"
        ))
        .into());
    }
    let version = value.get("version").and_then(|v| v.as_u64());
    if version != Some(u64::from(FIT_VERSION)) {
        return Err(bad(format!(
            "search record version {}, this kiln reads version {FIT_VERSION}; start a new search in another folder",
            version.map_or("missing".to_owned(), |v| v.to_string())
        ))
        .into());
    }
    Ok(serde_json::from_value(value).map_err(|e| bad(format!("invalid search record: {e}")))?)
}

/// Takes the finished candidates of a previous run; the settings must be the same.
fn merge_previous(
    path: &Path,
    settings: &serde_json::Value,
    previous: FitRecord,
    candidates: &mut [Candidate],
) -> Result<()> {
    if &previous.settings != settings {
        let changed: Vec<String> = settings
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, value)| previous.settings.get(key.as_str()) != Some(value))
            .map(|(key, _)| key.clone())
            .collect();
        return Err(UsageError(format!(
            "--resume: {} was a search with other settings ({} changed); resume with the same flags",
            path.display(),
            changed.join(", ")
        ))
        .into());
    }
    for candidate in candidates.iter_mut() {
        if let Some(old) = previous
            .candidates
            .iter()
            .find(|c| c.hidden == candidate.hidden && c.layers == candidate.layers)
        {
            if matches!(old.status, Status::Trained | Status::Diverged) {
                candidate.status = old.status;
                candidate.result = old.result.clone();
            }
        }
    }
    Ok(())
}

fn save_record(path: &Path, record: &FitRecord) -> Result<()> {
    let mut text = serde_json::to_string_pretty(record)?;
    text.push('\n');
    crate::fsutil::write_atomic(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn candidate_dir(out_dir: &Path, label: &str) -> PathBuf {
    out_dir.join("candidates").join(label)
}

struct TrainContext<'a> {
    plan: &'a FitPlan,
    input: &'a InputFacts,
    split: &'a Split,
    val: &'a Dataset,
    record_path: &'a Path,
}

/// How one candidate's training ended.
enum Outcome {
    Trained(Trained),
    Stopped(Status),
}

/// Trains every fitting candidate not trained yet, `--jobs` at a time, the largest first (with
/// a budget, the likely winners come first). Returns whether Ctrl-C stopped it.
fn train_candidates(context: &TrainContext<'_>, record: &mut FitRecord) -> Result<bool> {
    let plan = context.plan;
    let mut queue: Vec<usize> = (0..record.candidates.len())
        .filter(|&i| {
            let c = &record.candidates[i];
            c.fits && !matches!(c.status, Status::Trained | Status::Diverged)
        })
        .collect();
    queue.sort_by_key(|&i| {
        let c = &record.candidates[i];
        (std::cmp::Reverse(c.cost.flash_bytes), i)
    });
    let deadline = Instant::now() + plan.time_budget;
    let next = AtomicUsize::new(0);
    let batches = AtomicUsize::new(0);
    // Set when a job fails: the others stop at their next mini-batch.
    let abort = AtomicBool::new(false);
    let hook = interrupt::hook()?;
    let shared = Mutex::new((record, 0usize));
    let progress = FitProgress::new(plan.output.quiet || plan.output.json, queue.len());
    interrupt::install();
    interrupt::set_training(true);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let signalled = || {
        interrupt::signalled()
            || abort.load(Ordering::SeqCst)
            || hook.is_some_and(|after| batches.load(Ordering::SeqCst) >= after)
    };
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.min(queue.len()).max(1) {
            scope.spawn(|| loop {
                let slot = next.fetch_add(1, Ordering::SeqCst);
                let Some(&index) = queue.get(slot) else {
                    break;
                };
                let (hidden, layers, label) = {
                    let guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                    let c = &guard.0.candidates[index];
                    (c.hidden.clone(), c.layers.clone(), c.label.clone())
                };
                let stopped = if signalled() {
                    Some(Status::Interrupted)
                } else if Instant::now() >= deadline {
                    Some(Status::TimeBudget)
                } else {
                    None
                };
                progress.started(&label);
                let outcome = match stopped {
                    Some(status) => Ok(Outcome::Stopped(status)),
                    None => {
                        candidate_config(context, hidden, layers.as_deref()).and_then(|config| {
                            train_one(context, config, &label, deadline, &batches, &signalled)
                        })
                    }
                };
                let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                let (record, done) = &mut *guard;
                let candidate = &mut record.candidates[index];
                match outcome {
                    Ok(Outcome::Trained(trained)) => {
                        candidate.status = Status::Trained;
                        candidate.result = Some(trained);
                        *done += 1;
                    }
                    Ok(Outcome::Stopped(status)) => candidate.status = status,
                    Err(error) => {
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert(error.context(format!("candidate {label}")));
                        abort.store(true, Ordering::SeqCst);
                        break;
                    }
                }
                progress.finished(candidate, *done);
                if let Err(error) = save_record(context.record_path, record) {
                    first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(error);
                    break;
                }
            });
        }
    });
    interrupt::set_training(false);
    progress.clear();
    if let Some(error) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    let (record, _) = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(record
        .candidates
        .iter()
        .any(|c| c.status == Status::Interrupted))
}

/// The training configuration of a candidate: an MLP's hidden widths or a CNN's layers.
fn candidate_config(
    context: &TrainContext<'_>,
    hidden: Vec<usize>,
    layers: Option<&str>,
) -> Result<train::TrainConfig> {
    match (layers, context.input.image) {
        (Some(layers), Some(shape)) => cnn_config(context.plan, shape, layers),
        (Some(layers), None) => anyhow::bail!("the CNN {layers} needs an image shape"),
        (None, _) => Ok(train::TrainConfig {
            hidden,
            ..context.plan.train.clone()
        }),
    }
}

/// Trains one candidate (continuing its checkpoint if a previous run left one), then
/// quantizes it and measures float and int8 accuracy on the validation and test sets.
fn train_one(
    context: &TrainContext<'_>,
    config: train::TrainConfig,
    label: &str,
    deadline: Instant,
    batches: &AtomicUsize,
    signalled: &(dyn Fn() -> bool + Sync),
) -> Result<Outcome> {
    let plan = context.plan;
    let dir = candidate_dir(&plan.out_dir, label);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    let model_path = dir.join("model.json");
    let resume = if model_path.exists() {
        let model = ModelFile::load(&model_path)?;
        (model.config == config).then_some(model)
    } else {
        None
    };
    let started = Instant::now();
    let mut checkpoint = |model: &ModelFile| model.save(&model_path).map_err(|e| e.to_string());
    let should_stop = |_batches_run: usize| {
        batches.fetch_add(1, Ordering::SeqCst);
        signalled() || Instant::now() >= deadline
    };
    let result = train::train(
        context.split,
        &plan.data_spec,
        &plan.data_options,
        &config,
        1,
        resume,
        &mut train::Silent,
        &mut checkpoint,
        &should_stop,
    );
    let model = match result {
        Ok(model) => model,
        Err(train::TrainError::Interrupted { .. }) => {
            return Ok(Outcome::Stopped(if signalled() {
                Status::Interrupted
            } else {
                Status::TimeBudget
            }))
        }
        Err(train::TrainError::Diverged { .. }) => return Ok(Outcome::Stopped(Status::Diverged)),
        Err(error) => return Err(error.into()),
    };
    model.save(&model_path)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let network = model.network();
    let float_accuracy = |set: &Dataset| {
        let features = model.normalization.apply(set);
        train::evaluate(&network, &features, &set.targets, config.loss)
            .1
            .unwrap_or(0.0)
    };
    let quantized = quant::quantize(&model, &context.split.train, plan.calib)
        .with_context(|| format!("{}: cannot quantize", model_path.display()))?;
    let runtime = kiln_runtime::Model::from_bytes(&quantized.blob)
        .map_err(|e| anyhow::anyhow!("the kiln runtime refuses the blob it was given: {e}"))?;
    let int8_accuracy = |set: &Dataset, name: &str| -> Result<f64> {
        let raw = host::raw_inputs(set, name, runtime.input_frac_bits())?;
        let run = host::run_runtime(&runtime, &raw, set.n_features, runtime.n_outputs())
            .map_err(|e| anyhow::anyhow!("the kiln runtime failed: {e}"))?;
        Ok(host::accuracy(&run.predictions, &set.targets).unwrap_or(0.0))
    };
    let blob_path = dir.join("model.kiln");
    crate::fsutil::write_atomic(&blob_path, &quantized.blob)
        .with_context(|| format!("{}: cannot write", blob_path.display()))?;
    let blob_cost = inspect::blob_cost(
        &blob_path,
        &quantized.blob,
        plan.core,
        Some(context.input.byte_input),
    )?;
    Ok(Outcome::Trained(Trained {
        epochs: model.state.epochs_done,
        stopped_early: model.state.stopped_early,
        train_seconds,
        float_val_accuracy: float_accuracy(context.val),
        int8_val_accuracy: int8_accuracy(context.val, "the validation set")?,
        float_test_accuracy: float_accuracy(&context.split.test),
        int8_test_accuracy: int8_accuracy(&context.split.test, "the test set")?,
        blob_cost,
    }))
}

/// The winner's files, as `kiln quantize` writes them, into the output folder; its blob
/// checked by `kiln inspect`'s model against the estimate that admitted it.
fn write_winner(
    plan: &FitPlan,
    split: &Split,
    winner: &Candidate,
    byte_input: bool,
) -> Result<super::quantize::QuantSummary> {
    let source = candidate_dir(&plan.out_dir, &winner.label).join("model.json");
    let model = ModelFile::load(&source)?;
    let model_path = plan.out_dir.join("model.json");
    model.save(&model_path)?;
    let onnx_path = plan.out_dir.join("model.onnx");
    crate::export::write_onnx(&model, crate::export::ExportOptions::default(), &onnx_path)
        .with_context(|| format!("{}: cannot export", onnx_path.display()))?;
    let summary = super::quantize::quantize_into(
        "fit",
        &model_path,
        &model,
        &plan.data_spec,
        split,
        plan.calib,
        &plan.out_dir,
    )?;
    let blob_path = plan.out_dir.join("model.kiln");
    let blob = std::fs::read(&blob_path)
        .with_context(|| format!("{}: cannot read", blob_path.display()))?;
    let measured = inspect::blob_cost(&blob_path, &blob, plan.core, Some(byte_input))?;
    anyhow::ensure!(
        measured == winner.cost,
        "{}: kiln inspect sizes the blob as {measured:?}, but the search estimated {:?} \
         before training; the footprint model is wrong",
        blob_path.display(),
        winner.cost
    );
    Ok(summary)
}
