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

use super::args::FitArgs;
use super::config::{fit_config, FitPlan, UsageError};
use super::inspect::{self, CoreCost, DenseCandidate};
use super::interrupt;
use crate::data::{self, Dataset, Normalization, NormalizationKind, Split, Targets};
use crate::model::ModelFile;
use crate::nn::Activation;
use crate::quant::{self, host};
use crate::train;
use anyhow::{Context, Result};
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

/// The grid of first-layer widths every family is tried at.
const WIDTHS: [usize; 14] = [4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];
/// The widest first layer the search for a family's widest fitting member considers.
const MAX_WIDTH: usize = 4096;
/// The narrowest hidden layer.
const MIN_WIDTH: usize = 2;

/// The shape families: each hidden layer's width is the first's divided by these.
const FAMILIES: [&[usize]; 5] = [&[], &[1], &[1, 2], &[1, 4], &[1, 2, 4]];

/// The channel counts of a CNN family's first convolution.
const CHANNELS: [usize; 8] = [2, 4, 6, 8, 12, 16, 24, 32];
/// The widest first convolution the edge search considers.
const MAX_CHANNELS: usize = 256;
/// The calibration samples that size an untrained CNN (the blob's length and plan do not
/// depend on its ranges).
const SIZING_CALIB_SAMPLES: usize = 16;

/// A CNN family: its hidden layers for `c` channels in the first convolution.
struct CnnFamily {
    /// The hidden convolution layers (each 3x3 and followed by 2x2 max pooling): channels as
    /// multiples of `c`.
    convs: &'static [usize],
    /// A dense layer of `dense * c` units before the output layer (0: none).
    dense: usize,
}

const CNN_FAMILIES: [CnnFamily; 4] = [
    CnnFamily {
        convs: &[1],
        dense: 0,
    },
    CnnFamily {
        convs: &[1],
        dense: 2,
    },
    CnnFamily {
        convs: &[1, 2],
        dense: 0,
    },
    CnnFamily {
        convs: &[1, 2],
        dense: 2,
    },
];

impl CnnFamily {
    /// The `--layers` text of the family's member with `c` channels; `None` when the image is
    /// too small to pool that often (each pooling needs an even side of at least 2).
    fn layers(&self, c: usize, shape: crate::nn::shape::Shape) -> Option<String> {
        let (mut h, mut w) = (shape.h, shape.w);
        let mut parts = Vec::new();
        for &multiple in self.convs {
            if h < 2 || w < 2 || h % 2 != 0 || w % 2 != 0 {
                return None;
            }
            parts.push(format!("conv3x3:{}", c * multiple));
            parts.push("maxpool2".to_owned());
            (h, w) = (h / 2, w / 2);
        }
        if self.dense > 0 {
            parts.push(format!("dense:{}", c * self.dense));
        }
        Some(parts.join(","))
    }
}

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
    let previous = match (plan.resume, record_path.exists()) {
        (false, true) => {
            return Err(UsageError(format!(
            "{}: the folder already holds a search; continue it with --resume or choose another -o",
            record_path.display()
        ))
            .into())
        }
        (true, false) => {
            return Err(UsageError(format!(
                "--resume: {} does not exist; start the search without --resume",
                record_path.display()
            ))
            .into())
        }
        (true, true) => Some(load_record(&record_path)?),
        (false, false) => None,
    };

    let split = data::load(&plan.data_spec, &plan.data_options)?;
    let Targets::Classes { .. } = &split.train.targets else {
        return Err(UsageError(format!(
            "{}: kiln fit searches classifiers, and this data has regression targets",
            plan.data_spec
        ))
        .into());
    };
    let n_outputs = split.train.n_outputs();
    let normalization = Normalization::fit(plan.train.normalization, &split.train);
    let input_stage = quant::input_stage_for(&normalization, &split.train, plan.calib)
        .context("cannot decide the input stage")?;
    let byte_input = input_stage == kiln_runtime::InputStage::ByteTable
        && [&split.train, &split.test].iter().all(|d| {
            d.features
                .iter()
                .all(|&x| x.fract() == 0.0 && (0.0..=255.0).contains(&x))
        });
    let image = match plan.input_shape {
        Some(shape) if shape.len() != split.train.n_features => {
            return Err(UsageError(format!(
                "--input-shape: {}x{}x{} holds {} values, but {} has {} features per row",
                shape.h,
                shape.w,
                shape.c,
                shape.len(),
                plan.data_spec,
                split.train.n_features
            ))
            .into())
        }
        Some(shape) => Some(shape),
        None => crate::plot::image_shape(&plan.data_spec, split.train.n_features)
            .map(|(h, w)| crate::nn::shape::Shape::new(h, w, 1)),
    }
    .filter(|_| plan.cnn);
    let input = InputFacts {
        image,
        n_inputs: split.train.n_features,
        n_outputs,
        per_feature: plan.train.normalization == NormalizationKind::Standardize,
        stage: input_stage,
        byte_input,
    };
    let settings = settings_of(&plan);
    let mut candidates = enumerate(&plan, &input, &split)?;
    if let Some(previous) = previous {
        merge_previous(&record_path, &settings, previous, &mut candidates)?;
    }
    let mut record = FitRecord {
        format: FIT_FORMAT.to_owned(),
        version: FIT_VERSION,
        settings,
        input_stage: stage_name(input_stage).to_owned(),
        input_type: if byte_input { "u8" } else { "i32" }.to_owned(),
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
        image: input.image,
        byte_input: input.byte_input,
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

    // The winner: the best int8 accuracy on the validation set; the smaller flash on a tie.
    let winner = record
        .candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.fits && c.status == Status::Trained)
        .filter_map(|(i, c)| c.result.as_ref().map(|r| (i, r.int8_val_accuracy, c)))
        .max_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(b.2.cost.flash_bytes.cmp(&a.2.cost.flash_bytes))
        })
        .map(|(i, _, _)| i);
    let Some(winner) = winner else {
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

/// What the data fixes about every candidate's input.
struct InputFacts {
    /// The image shape CNN candidates take (`--input-shape`, or the data's own); `None`:
    /// MLPs only.
    image: Option<crate::nn::shape::Shape>,
    n_inputs: usize,
    n_outputs: usize,
    per_feature: bool,
    stage: kiln_runtime::InputStage,
    byte_input: bool,
}

fn stage_name(stage: kiln_runtime::InputStage) -> &'static str {
    use kiln_runtime::InputStage;
    match stage {
        InputStage::ByteTable => "byte table",
        InputStage::Identity => "identity",
        InputStage::FixedPoint => "fixed point",
        InputStage::PerFeature => "per feature",
    }
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

fn label_of(n_inputs: usize, hidden: &[usize], n_outputs: usize) -> String {
    std::iter::once(n_inputs)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(n_outputs))
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

/// Sizes one candidate and judges it against the budgets.
fn size(plan: &FitPlan, input: &InputFacts, hidden: &[usize]) -> Result<Candidate> {
    let activation = plan.train.activation;
    let layers: Vec<(usize, Activation)> = hidden
        .iter()
        .map(|&w| (w, activation))
        .chain(std::iter::once((
            input.n_outputs,
            plan.train.output_activation,
        )))
        .collect();
    let cost = inspect::dense_cost(
        &DenseCandidate {
            n_inputs: input.n_inputs,
            layers: &layers,
            per_feature_input: input.per_feature,
            input_stage: input.stage,
            byte_input: input.byte_input,
        },
        plan.core,
    )?;
    Ok(judge(
        plan,
        label_of(input.n_inputs, hidden, input.n_outputs),
        hidden.to_vec(),
        None,
        cost,
    ))
}

/// A sized candidate against the budgets.
fn judge(
    plan: &FitPlan,
    label: String,
    hidden: Vec<usize>,
    layers: Option<String>,
    cost: CoreCost,
) -> Candidate {
    let mut over = Vec::new();
    if let Some(budget) = plan.flash_budget.filter(|&b| cost.flash_bytes > b) {
        over.push(format!("flash {} > {budget}", cost.flash_bytes));
    }
    if let Some(budget) = plan.ram_budget.filter(|&b| cost.ram_bytes > b) {
        over.push(format!("RAM {} > {budget}", cost.ram_bytes));
    }
    if let Some(budget) = plan.instruction_budget.filter(|&b| cost.instructions > b) {
        over.push(format!(
            "{} instructions > {budget} (--latency {})",
            cost.instructions,
            plan.latency_text.as_deref().unwrap_or("")
        ));
    }
    let latency_seconds = plan
        .clock_hz
        .map(|hz| cost.instructions as f64 * plan.cycles_per_instruction / hz);
    let fits = over.is_empty();
    Candidate {
        label,
        hidden,
        layers,
        cost,
        latency_seconds,
        fits,
        over,
        status: if fits {
            Status::Pending
        } else {
            Status::DoesNotFit
        },
        result: None,
        winner: false,
    }
}

/// Sizes a CNN exactly: bakes it untrained (random weights, a few calibration samples) and
/// sizes the blob as `kiln inspect` does. `None` when the layers do not apply to the shape.
fn size_cnn(
    plan: &FitPlan,
    input: &InputFacts,
    split: &Split,
    shape: crate::nn::shape::Shape,
    layers: &str,
) -> Result<Option<Candidate>> {
    let config = cnn_config(plan, shape, layers)?;
    let model = match train::untrained(split, &plan.data_spec, &plan.data_options, &config) {
        Ok(model) => model,
        Err(train::TrainError::Config(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let options = quant::QuantOptions {
        calib_samples: SIZING_CALIB_SAMPLES,
        ..plan.calib
    };
    let quantized = quant::quantize(&model, &split.train, options)
        .with_context(|| format!("cannot size the CNN {layers}"))?;
    let cost = inspect::blob_cost(
        Path::new(layers),
        &quantized.blob,
        plan.core,
        Some(input.byte_input),
    )?;
    let label = format!(
        "{}x{}x{}-{}-{}",
        shape.h,
        shape.w,
        shape.c,
        layers.replace(',', "-"),
        input.n_outputs
    );
    Ok(Some(judge(
        plan,
        label,
        Vec::new(),
        Some(layers.to_owned()),
        cost,
    )))
}

/// The training configuration of a CNN candidate.
fn cnn_config(
    plan: &FitPlan,
    shape: crate::nn::shape::Shape,
    layers: &str,
) -> Result<train::TrainConfig> {
    let specs = crate::nn::layer_spec::parse_layers(layers)
        .map_err(|e| anyhow::anyhow!("the search built bad layers {layers:?}: {e}"))?;
    Ok(train::TrainConfig {
        hidden: Vec::new(),
        layers: specs,
        input_shape: Some(shape),
        ..plan.train.clone()
    })
}

/// The hidden widths of `family` with first width `width`; `None` when a layer would be
/// narrower than [`MIN_WIDTH`].
fn family_widths(family: &[usize], width: usize) -> Option<Vec<usize>> {
    family
        .iter()
        .map(|&divisor| Some(width / divisor).filter(|&w| w >= MIN_WIDTH))
        .collect()
}

/// Every candidate of the search space, sized, in a fixed order (family, then width).
fn enumerate(plan: &FitPlan, input: &InputFacts, split: &Split) -> Result<Vec<Candidate>> {
    let mut candidates: Vec<Candidate> = Vec::new();
    let add = |candidate: Candidate, candidates: &mut Vec<Candidate>| {
        if !candidates
            .iter()
            .any(|c| c.hidden == candidate.hidden && c.layers == candidate.layers)
        {
            candidates.push(candidate);
        }
    };
    for family in FAMILIES
        .iter()
        .filter(|f| f.len() <= plan.max_hidden_layers)
    {
        let size_at = |width: usize| -> Result<Option<Candidate>> {
            family_widths(family, width)
                .map(|hidden| size(plan, input, &hidden))
                .transpose()
        };
        if family.is_empty() {
            add(size(plan, input, &[])?, &mut candidates);
            continue;
        }
        for &width in &WIDTHS {
            if let Some(candidate) = size_at(width)? {
                add(candidate, &mut candidates);
            }
        }
        // The family's widest member that fits: the budget's edge, which the grid misses.
        let smallest = family.iter().max().copied().unwrap_or(1) * MIN_WIDTH;
        if let Some(widest) = widest_fitting(smallest, MAX_WIDTH, size_at)? {
            add(widest, &mut candidates);
        }
    }
    let Some(shape) = input.image else {
        return Ok(candidates);
    };
    for family in CNN_FAMILIES
        .iter()
        .filter(|f| f.convs.len() + usize::from(f.dense > 0) <= plan.max_hidden_layers)
    {
        let size_at = |channels: usize| -> Result<Option<Candidate>> {
            match family.layers(channels, shape) {
                Some(layers) => size_cnn(plan, input, split, shape, &layers),
                None => Ok(None),
            }
        };
        for &channels in &CHANNELS {
            if let Some(candidate) = size_at(channels)? {
                add(candidate, &mut candidates);
            }
        }
        if let Some(widest) = widest_fitting(1, MAX_CHANNELS, size_at)? {
            add(widest, &mut candidates);
        }
    }
    Ok(candidates)
}

/// The widest member (from `smallest` to `largest`) that fits, by bisection (every cost grows
/// with the width) and then a step down past any small non-monotone step of the instruction
/// estimate. `size_at` sizes a member, `None` when the width does not apply.
fn widest_fitting(
    smallest: usize,
    largest: usize,
    size_at: impl Fn(usize) -> Result<Option<Candidate>>,
) -> Result<Option<Candidate>> {
    let fits = |width: usize| -> Result<Option<Candidate>> {
        Ok(size_at(width)?.filter(|candidate| candidate.fits))
    };
    if fits(smallest)?.is_none() {
        return Ok(None);
    }
    let (mut lo, mut hi) = (smallest, largest + 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)?.is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    for width in (smallest..=lo).rev() {
        if let Some(candidate) = fits(width)? {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

fn nothing_fits(plan: &FitPlan, candidates: &[Candidate]) -> String {
    let smallest = candidates
        .iter()
        .min_by_key(|c| (c.cost.flash_bytes, c.cost.ram_bytes, c.cost.instructions));
    let budgets = budgets_text(plan);
    match smallest {
        Some(c) => format!(
            "no candidate fits {budgets} on {}: the smallest, {}, needs flash {} bytes (model blob \
             {} + kiln-runtime .text {}), RAM {} bytes and {} instructions per inference ({})",
            plan.core,
            c.label,
            c.cost.flash_bytes,
            c.cost.blob_bytes,
            c.cost.flash_bytes - c.cost.blob_bytes,
            c.cost.ram_bytes,
            c.cost.instructions,
            c.over.join(", ")
        ),
        None => format!("no candidate fits {budgets} on {}", plan.core),
    }
}

fn budgets_text(plan: &FitPlan) -> String {
    let mut parts = Vec::new();
    if let Some(flash) = plan.flash_budget {
        parts.push(format!("flash {flash} bytes"));
    }
    if let Some(ram) = plan.ram_budget {
        parts.push(format!("RAM {ram} bytes"));
    }
    if let (Some(budget), Some(latency)) = (plan.instruction_budget, &plan.latency_text) {
        parts.push(format!("latency {latency} ({budget} instructions)"));
    }
    parts.join(", ")
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
    /// The CNN candidates' input shape.
    image: Option<crate::nn::shape::Shape>,
    byte_input: bool,
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
    match (layers, context.image) {
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
        Some(context.byte_input),
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

fn write_pareto(plan: &FitPlan, record: &FitRecord) -> Result<Vec<PathBuf>> {
    let points: Vec<crate::plot::ParetoPoint> = record
        .candidates
        .iter()
        .map(|c| crate::plot::ParetoPoint {
            label: c.label.clone(),
            flash_bytes: c.cost.flash_bytes,
            accuracy: c.result.as_ref().map(|r| r.int8_val_accuracy),
            fits: c.fits,
            winner: c.winner,
        })
        .collect();
    let figure = crate::plot::ParetoFigure {
        title: format!(
            "kiln fit on {}: {} within {}",
            plan.data_spec,
            plan.core,
            budgets_text(plan)
        ),
        points: &points,
        flash_budget: plan.flash_budget,
    };
    Ok(crate::plot::write_png_and_svg(&figure, &plan.out_dir, "fit")?.to_vec())
}

#[derive(Debug, Serialize)]
struct Files {
    record: PathBuf,
    model: PathBuf,
    onnx: PathBuf,
    qdq_onnx: PathBuf,
    blob: PathBuf,
    rust: PathBuf,
    pictures: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
struct FitReport<'a> {
    command: &'static str,
    data: String,
    core: &'static str,
    budgets: String,
    input_stage: String,
    input_type: String,
    winner: String,
    /// The winner's quantization, tract check included.
    quantization: &'a super::quantize::QuantSummary,
    candidates: &'a [Candidate],
    files: Files,
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.2}", v * 100.0))
}

fn print_report(plan: &FitPlan, report: &FitReport<'_>) {
    crate::outln!(
        "kiln fit: {} on {} within {}",
        report.data,
        report.core,
        report.budgets
    );
    crate::outln!(
        "  input stage {}, raw input as {}; accuracy in % on the validation split (val) and the test set",
        report.input_stage,
        report.input_type
    );
    let header = [
        "candidate",
        "status",
        "flash",
        "RAM",
        "instructions",
        "float val",
        "int8 val",
        "int8 test",
        "epochs",
    ];
    let rows: Vec<[String; 9]> = report
        .candidates
        .iter()
        .map(|c| {
            let result = c.result.as_ref();
            let verdict = if c.winner {
                "winner".to_owned()
            } else if !c.fits {
                format!("does not fit: {}", c.over.join(", "))
            } else {
                c.status.text().to_owned()
            };
            [
                c.label.clone(),
                verdict,
                c.cost.flash_bytes.to_string(),
                c.cost.ram_bytes.to_string(),
                c.cost.instructions.to_string(),
                percent(result.map(|r| r.float_val_accuracy)),
                percent(result.map(|r| r.int8_val_accuracy)),
                percent(result.map(|r| r.int8_test_accuracy)),
                result.map_or_else(|| "-".to_owned(), |r| r.epochs.to_string()),
            ]
        })
        .collect();
    super::inspect::print_table(header, &rows, 2);
    let q = report.quantization;
    crate::outln!();
    crate::outln!("  winner         {}", report.winner);
    for (label, value) in q.rows() {
        crate::outln!("  {label:<14} {value}");
    }
    if let Some(latency) = report
        .candidates
        .iter()
        .find(|c| c.winner)
        .and_then(|c| c.latency_seconds)
    {
        crate::outln!(
            "  {:<14} {:.3} ms at {} cycles per instruction (estimate)",
            "latency",
            latency * 1000.0,
            plan.cycles_per_instruction
        );
    }
    let files = &report.files;
    for (label, path) in [
        ("record", &files.record),
        ("model", &files.model),
        ("onnx", &files.onnx),
        ("qdq onnx", &files.qdq_onnx),
        ("blob", &files.blob),
        ("rust", &files.rust),
    ] {
        crate::outln!("  {label:<14} {}", path.display());
    }
    for path in &files.pictures {
        crate::outln!("  {:<14} {}", "picture", path.display());
    }
}

/// Progress over the candidates: a bar on a terminal, a line per candidate otherwise.
struct FitProgress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    total: usize,
}

impl FitProgress {
    fn new(quiet: bool, total: usize) -> Self {
        use std::io::IsTerminal;
        if quiet {
            return Self {
                bar: None,
                lines: false,
                total,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} candidates {elapsed_precise} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            return Self {
                bar: Some(bar),
                lines: false,
                total,
            };
        }
        Self {
            bar: None,
            lines: true,
            total,
        }
    }

    fn started(&self, label: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("training {label}"));
        }
    }

    fn finished(&self, candidate: &Candidate, done: usize) {
        let line = match &candidate.result {
            Some(r) if candidate.status == Status::Trained => format!(
                "{}: int8 val {} %, float val {} %, {} epochs, {:.1} s",
                candidate.label,
                percent(Some(r.int8_val_accuracy)),
                percent(Some(r.float_val_accuracy)),
                r.epochs,
                r.train_seconds
            ),
            _ => format!("{}: {}", candidate.label, candidate.status.text()),
        };
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.println(line);
        } else if self.lines {
            eprintln!("[{done}/{}] {line}", self.total);
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
