//! The subcommands of `kiln`.

use super::args::*;
use super::config::{export_options, TrainPlan, UsageError};
use super::interrupt;
use super::progress::Progress;
use crate::check::{self, CheckReport};
use crate::data::{self, DataOptions, DataSpec, Split};
use crate::export::{self, ExportOptions};
use crate::model::ModelFile;
use crate::nn::layer_spec::LayerSpec;
use crate::nn::network::Network;
use crate::nn::shape::Shape;
use crate::rng::Rng;
use crate::train::{self, TrainConfig};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The exported file does not compute what the trainer computes.
#[derive(Debug, thiserror::Error)]
#[error("{path}: tract disagrees with the trainer: max |diff| {max_abs_diff:e}, {ratio:.1} times the limit {limit:e} + {} |value|, argmax agreement {agree}", crate::import::RELATIVE_TOLERANCE)]
pub struct CheckFailed {
    pub path: PathBuf,
    pub max_abs_diff: f32,
    pub limit: f32,
    /// The worst difference in units of the limit.
    pub ratio: f64,
    pub agree: String,
}

impl CheckFailed {
    fn from_report(report: &CheckReport) -> Self {
        Self {
            path: report.onnx_path.clone(),
            max_abs_diff: report.max_abs_diff,
            limit: check::MAX_ABS_DIFF,
            ratio: report.max_tolerance_ratio,
            agree: report
                .argmax_agreements
                .map_or("n/a".into(), |a| format!("{a}/{}", report.n_samples)),
        }
    }
}

/// Training stopped on SIGINT/SIGTERM (or the test hook) and saved a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at epoch {epoch}{}; checkpoint saved to {}; continue with `kiln train --resume -o {}`", batch.map_or(String::new(), |b| format!(", batch {b}")), model_path.display(), out_dir.display())]
pub struct Interrupted {
    pub epoch: usize,
    /// The last mini-batch applied; `None` when the signal came after training finished.
    pub batch: Option<usize>,
    pub model_path: PathBuf,
    pub out_dir: PathBuf,
}

/// The files `kiln train` writes into its output folder.
const OUTPUT_FILES: [&str; 6] = [
    "model.json",
    "model.onnx",
    "model.input.npy",
    "model.logits.npy",
    "training.png",
    "training.svg",
];

/// Removes the hidden temp files a killed run may have left beside its outputs
/// (`.model.json.tmp-<pid>` and the like); the real files are never partial. `train` and
/// `quantize` call it on their output folder.
pub(crate) fn remove_stale_temp_files(dir: &Path) {
    let pid = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix('.') else {
            continue;
        };
        let stale = OUTPUT_FILES
            .iter()
            .chain(&super::eval::OUTPUT_FILES)
            .chain(&super::quantize::OUTPUT_FILES)
            .any(|file| {
                rest.strip_prefix(file)
                    .and_then(|tail| tail.strip_prefix(".tmp-"))
                    .is_some_and(|id| {
                        !id.is_empty()
                            && id.chars().all(|c| c.is_ascii_digit() || c == '-')
                            && id != pid
                            && !id.starts_with(&format!("{pid}-"))
                    })
            });
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Files a run wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Files {
    pub model: Option<PathBuf>,
    pub onnx: Option<PathBuf>,
    pub reference_input: Option<PathBuf>,
    pub reference_logits: Option<PathBuf>,
    /// Pictures (PNG and SVG): the training curves, and for `demo` the evaluation's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pictures: Vec<PathBuf>,
}

/// What `train` and `demo` report, as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub command: &'static str,
    pub data: String,
    pub architecture: String,
    pub n_parameters: usize,
    pub optimizer: String,
    pub epochs: usize,
    pub stopped_early: bool,
    pub seconds_per_epoch: f64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_accuracy: Option<f64>,
    /// A QAT model: the device's int8 model on the test set (loss, and accuracy for classes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8_test_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8_test_accuracy: Option<f64>,
    /// Regression targets: the float model's error on the test set (overall and per output)
    /// and, with anomaly labels, the ROC AUC of the per-row error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regression: Option<crate::metrics::RegressionMetrics>,
    pub check: Option<CheckReport>,
    pub check_passed: Option<bool>,
    pub files: Files,
    /// The int8 model (`demo` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<super::quantize::QuantSummary>,
    /// The float model on the test set (`demo` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<super::eval::EvalSummary>,
}

/// `784-128-10 relu` for an MLP; the input shape and the layer tokens for any other graph,
/// e.g. `28x28x1 conv3x3:16,maxpool2,dense:10`.
fn architecture(model: &ModelFile) -> String {
    if !model.is_mlp() {
        let network = model.network();
        let tokens: Vec<String> = network.specs().iter().map(|spec| spec.token()).collect();
        let shape = network.input_shape;
        return format!("{}x{}x{} {}", shape.h, shape.w, shape.c, tokens.join(","));
    }
    let widths: Vec<String> = std::iter::once(model.n_inputs)
        .chain(model.layers.iter().map(|l| l.n_outputs))
        .map(|w| w.to_string())
        .collect();
    let hidden = model.config.activation;
    format!("{} {hidden}", widths.join("-"))
}

fn weight_decay(optimizer: &crate::nn::optim::OptimizerConfig) -> f32 {
    use crate::nn::optim::OptimizerConfig;
    match *optimizer {
        OptimizerConfig::Sgd { weight_decay, .. }
        | OptimizerConfig::Adam { weight_decay, .. }
        | OptimizerConfig::AdamW { weight_decay, .. } => weight_decay,
    }
}

fn load_data(spec: &DataSpec, options: &DataOptions) -> Result<Split> {
    Ok(data::load(spec, options)?)
}

/// Trains per `plan` on `split`, writes the model and ONNX files, checks them.
fn train_export_check(
    command: &'static str,
    plan: &TrainPlan,
    split: &Split,
    resume: Option<ModelFile>,
) -> Result<(TrainSummary, ModelFile)> {
    std::fs::create_dir_all(&plan.out_dir).with_context(|| {
        format!(
            "{}: cannot create the output folder",
            plan.out_dir.display()
        )
    })?;
    remove_stale_temp_files(&plan.out_dir);
    let model_path = plan.out_dir.join("model.json");
    let onnx_path = plan.out_dir.join("model.onnx");
    let mut progress = Progress::new(plan.output.quiet);
    let epochs_before = resume.as_ref().map_or(0, |m| m.state.epochs_done);
    let mut checkpoint = |model: &ModelFile| model.save(&model_path).map_err(|e| e.to_string());
    let hook = interrupt::hook()?;
    let should_stop = |batches_run: usize| {
        interrupt::signalled() || hook.is_some_and(|after| batches_run >= after)
    };
    let interrupted = |epoch: usize, batch: Option<usize>| Interrupted {
        epoch,
        batch,
        model_path: model_path.clone(),
        out_dir: plan.out_dir.clone(),
    };
    interrupt::install();
    interrupt::set_training(true);
    let result = train::train(
        split,
        &plan.data_spec,
        &plan.data_options,
        &plan.config,
        plan.threads,
        resume,
        &mut progress,
        &mut checkpoint,
        &should_stop,
    );
    interrupt::set_training(false);
    let model = result.map_err(|error| match error {
        // Name the file that holds the last good model.
        train::TrainError::Diverged { .. } => {
            anyhow::Error::new(error).context(format!("{}: training stopped", model_path.display()))
        }
        train::TrainError::Interrupted { epoch, batch } => interrupted(epoch, Some(batch)).into(),
        other => other.into(),
    })?;
    // A signal after the last batch: the finished model is saved; export nothing.
    if interrupt::signalled() {
        return Err(interrupted(model.state.epochs_done, None).into());
    }

    let run_epochs = &model.state.history[epochs_before.min(model.state.history.len())..];
    let seconds_per_epoch = if run_epochs.is_empty() {
        0.0
    } else {
        run_epochs.iter().map(|r| r.seconds).sum::<f64>() / run_epochs.len() as f64
    };
    let test_features = model.normalization.apply(&split.test);
    let network = model.network();
    let architecture = architecture(&model);
    let (test_loss, test_accuracy) = train::evaluate(
        &network,
        &test_features,
        &split.test.targets,
        model.config.loss,
    );
    // A QAT model is an int8 model: what it scores is what the device scores.
    let (int8_test_loss, int8_test_accuracy) = match &model.config.qat {
        Some(qat) if model.state.qat.is_some() => {
            let options = crate::quant::QuantOptions {
                pow2_scales: qat.pow2_scales,
                ..crate::quant::QuantOptions::default()
            };
            let (loss, accuracy) =
                crate::quant::qat::evaluate(&model, &split.train, &split.test, options)
                    .context("cannot evaluate the int8 model quantization-aware training made")?;
            (Some(loss), accuracy)
        }
        _ => (None, None),
    };
    let regression = match &split.test.targets {
        data::Targets::Classes { .. } => None,
        targets => crate::metrics::for_targets(
            &crate::check::network_outputs(&network, &test_features),
            targets,
        ),
    };

    export::write_onnx(&model, plan.export, &onnx_path)
        .with_context(|| format!("{}: cannot export", onnx_path.display()))?;
    let mut files = Files {
        model: Some(model_path),
        onnx: Some(onnx_path.clone()),
        ..Files::default()
    };
    if plan.plot {
        let figure = crate::plot::TrainingFigure {
            title: format!(
                "{} on {}: test loss {}{}",
                architecture,
                plan.data_spec,
                crate::plot::short_number(test_loss),
                test_accuracy.map_or_else(String::new, |a| format!(", test accuracy {a:.4}"))
            ),
            history: &model.state.history,
        };
        files.pictures.extend(crate::plot::write_png_and_svg(
            &figure,
            &plan.out_dir,
            "training",
        )?);
    }
    let report = if plan.check {
        let (report, trainer_outputs) = check::check(&onnx_path, &model, &split.test)?;
        let (input, logits) = check::save_reference(&onnx_path, &split.test, &trainer_outputs)
            .with_context(|| {
                format!("{}: cannot save the reference outputs", onnx_path.display())
            })?;
        files.reference_input = Some(input);
        files.reference_logits = Some(logits);
        Some(report)
    } else {
        None
    };
    let summary = TrainSummary {
        command,
        data: split.description.clone(),
        architecture,
        n_parameters: network.n_parameters(),
        optimizer: format!(
            "{} lr {}, weight decay {}, {} schedule, batch {}",
            model.config.optimizer.name(),
            model.config.learning_rate,
            weight_decay(&model.config.optimizer),
            model.config.schedule.name(),
            model.config.batch_size
        ),
        epochs: model.state.epochs_done,
        stopped_early: model.state.stopped_early,
        seconds_per_epoch,
        train_loss: model
            .state
            .history
            .last()
            .map_or(f64::NAN, |r| r.train_loss),
        test_loss,
        test_accuracy,
        int8_test_loss,
        int8_test_accuracy,
        regression,
        check_passed: report.as_ref().map(CheckReport::passed),
        check: report,
        files,
        quantization: None,
        evaluation: None,
    };
    Ok((summary, model))
}

fn print_summary(summary: &TrainSummary, json: bool) -> Result<()> {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    let mut rows: Vec<(&str, String)> = vec![
        ("data", summary.data.clone()),
        (
            "model",
            format!(
                "{} ({} parameters)",
                summary.architecture, summary.n_parameters
            ),
        ),
        ("optimizer", summary.optimizer.clone()),
        (
            "epochs",
            format!(
                "{}{} at {:.3} s per epoch",
                summary.epochs,
                if summary.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                },
                summary.seconds_per_epoch
            ),
        ),
        ("train loss", format!("{:.4}", summary.train_loss)),
        ("test loss", format!("{:.4}", summary.test_loss)),
    ];
    if let Some(accuracy) = summary.test_accuracy {
        rows.push(("test accuracy", format!("{accuracy:.4}")));
    }
    if let Some(loss) = summary.int8_test_loss {
        rows.push(("int8 test loss", format!("{loss:.4} (QAT: the device's)")));
    }
    if let Some(accuracy) = summary.int8_test_accuracy {
        rows.push((
            "int8 test accuracy",
            format!("{accuracy:.4} (QAT: the device's)"),
        ));
    }
    if let Some(regression) = &summary.regression {
        rows.push((
            "test error",
            format!(
                "{} (over {} outputs)",
                regression.error_line(),
                regression.per_output.len()
            ),
        ));
        if let Some(line) = regression.anomaly_line() {
            rows.push(("anomaly AUC", line));
        }
    }
    if let Some(report) = &summary.check {
        rows.push(("tract check", check_line(report)));
    }
    if let Some(quant) = &summary.quantization {
        rows.extend(quant.rows());
    }
    if let Some(evaluation) = &summary.evaluation {
        rows.extend(evaluation.rows());
    }
    let quant_files = summary
        .quantization
        .as_ref()
        .map(|q| q.files.clone())
        .unwrap_or_default();
    for (label, path) in [
        ("model file", &summary.files.model),
        ("onnx file", &summary.files.onnx),
        ("reference", &summary.files.reference_logits),
        ("qdq onnx", &quant_files.qdq_onnx),
        ("model blob", &quant_files.blob),
        ("rust source", &quant_files.rust),
    ] {
        if let Some(path) = path {
            rows.push((label, path.display().to_string()));
        }
    }
    let eval_pictures = summary.evaluation.iter().flat_map(|e| &e.pictures);
    for path in summary.files.pictures.iter().chain(eval_pictures) {
        rows.push(("picture", path.display().to_string()));
    }
    crate::outln!("kiln {}", summary.command);
    for (label, value) in rows {
        crate::outln!("  {label:<14} {value}");
    }
    Ok(())
}

fn check_line(report: &CheckReport) -> String {
    let mut line = format!(
        "{} on {} samples: max |diff| {:.2e}",
        if report.passed() { "PASS" } else { "FAIL" },
        report.n_samples,
        report.max_abs_diff
    );
    if let Some(agree) = report.argmax_agreements {
        line.push_str(&format!(", argmax agrees {agree}/{}", report.n_samples));
    }
    if let Some(accuracy) = report.onnx_accuracy {
        line.push_str(&format!(", accuracy {accuracy:.4}"));
    }
    line
}

fn finish(summary: &TrainSummary, json: bool) -> Result<()> {
    print_summary(summary, json)?;
    if let Some(report) = summary.check.as_ref().filter(|report| !report.passed()) {
        return Err(CheckFailed::from_report(report).into());
    }
    summary
        .quantization
        .as_ref()
        .map_or(Ok(()), super::quantize::QuantSummary::verdict)
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let mut plan = TrainPlan::from_args(args)?;
    let resume = if plan.resume {
        let model_path = plan.out_dir.join("model.json");
        let saved = ModelFile::load(&model_path)
            .context("--resume needs the model file of an earlier run")?;
        plan.data_spec = saved.data.clone();
        plan.data_options = saved.data_options.clone();
        plan.config = TrainConfig {
            epochs: args.epochs.unwrap_or(saved.config.epochs),
            // `--resume --qat` fine-tunes a float model; a QAT run keeps its settings.
            qat: match saved.config.qat {
                Some(qat) => Some(crate::quant::qat::QatConfig {
                    epochs: args.qat.qat_epochs.unwrap_or(qat.epochs),
                    ..qat
                }),
                None => super::config::qat_config(
                    &args.qat,
                    saved.config.learning_rate,
                    args.pow2_scales,
                ),
            },
            ..saved.config.clone()
        };
        Some(saved)
    } else {
        None
    };
    let split = load_data(&plan.data_spec, &plan.data_options)?;
    if resume.is_none() {
        plan.config.input_shape = input_shape(&plan, &split)?;
        // A batch larger than the training set is the whole set.
        let n_train = split.train.n_samples().max(1);
        if plan.config.batch_size > n_train {
            if !plan.output.quiet {
                eprintln!(
                    "note: --batch {} is more than the {n_train} training rows: batches of {n_train}",
                    plan.config.batch_size
                );
            }
            plan.config.batch_size = n_train;
        }
        check_training_memory(&plan, &split, memory_budget())?;
        check_layers(&plan, &split)?;
    }
    let (summary, _) = train_export_check("train", &plan, &split, resume)?;
    finish(&summary, plan.output.json)
}

/// The shape of one sample: `--input-shape` (which must hold every feature), else the
/// data's image shape when the layers need one (IDX images, the 8x8 digits, square rows),
/// else a feature vector.
fn input_shape(plan: &TrainPlan, split: &Split) -> Result<Option<Shape>> {
    let spatial = plan
        .config
        .layers
        .iter()
        .any(|layer| !matches!(layer, LayerSpec::Dense { .. } | LayerSpec::Flatten));
    if plan.config.input_shape.is_none() && !spatial {
        return Ok(None);
    }
    Ok(image_shape(
        plan.config.input_shape,
        &plan.data_spec,
        split.train.n_features,
    )?)
}

/// The shape of one sample: `--input-shape`, checked against the data's features, or else the
/// data's own image shape (IDX, square rows such as the digits); `None` for other data.
pub(crate) fn image_shape(
    explicit: Option<Shape>,
    spec: &DataSpec,
    n_features: usize,
) -> Result<Option<Shape>, UsageError> {
    match explicit {
        Some(shape) if shape.len() != n_features => Err(UsageError(format!(
            "--input-shape: {}x{}x{} holds {} values, but {spec} has {n_features} features per row",
            shape.h,
            shape.w,
            shape.c,
            shape.len(),
        ))),
        Some(shape) => Ok(Some(shape)),
        None => Ok(crate::plot::image_shape(spec, n_features)
            .map(|(rows, cols)| Shape::new(rows, cols, 1))),
    }
}

/// The bytes training keeps per parameter: the f32 weight, its gradient and up to two optimizer
/// moments.
const TRAINING_BYTES_PER_PARAMETER: u64 = 16;

/// The memory training may use: what the system reports available (`MemAvailable` in
/// `/proc/meminfo`), else 8 GiB.
fn memory_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemAvailable:"))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kib| kib.trim().parse::<u64>().ok())
        })
        .map_or(8 << 30, |kib| kib.saturating_mul(1024))
}

/// Sizes the network and its batch before anything is allocated or written: parameters (with
/// their gradients and optimizer state) and one batch's activations and their gradients, in
/// saturating arithmetic, against `budget` bytes. A network that cannot fit is one usage error
/// naming the flags, never an allocation failure (exit 134) after an output folder exists.
fn check_training_memory(plan: &TrainPlan, split: &Split, budget: u64) -> Result<()> {
    let config = &plan.config;
    let mut shape = config
        .input_shape
        .unwrap_or(Shape::vector(split.train.n_features));
    let specs = config.layer_specs(split.train.n_outputs());
    let (mut parameters, mut activations) = (0u64, shape.len() as u64);
    let mut shapes = vec![shape];
    for (index, spec) in specs.iter().enumerate() {
        let output = crate::nn::network::infer_shape(index, spec, &shapes)
            .map_err(|e| UsageError(format!("--layers: {e}")))?;
        shapes.push(output);
        let (fan_in, n_units) = match *spec {
            LayerSpec::Dense { n_outputs, .. } => (shape.len() as u64, n_outputs as u64),
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                ..
            } => (
                (shape.c as u64)
                    .saturating_mul((kernel[0] as u64).saturating_mul(kernel[1] as u64)),
                out_channels as u64,
            ),
            LayerSpec::DepthwiseConv2d { kernel, .. } => (
                (kernel[0] as u64).saturating_mul(kernel[1] as u64),
                shape.c as u64,
            ),
            _ => (0, 0),
        };
        // weights and one bias per unit
        parameters = parameters.saturating_add(fan_in.saturating_add(1).saturating_mul(n_units));
        activations = activations.saturating_add(output.len() as u64);
        shape = output;
    }
    let batch = config.batch_size as u64;
    // each activation and its gradient, in f32, for every sample of a batch
    let needed = parameters
        .saturating_mul(TRAINING_BYTES_PER_PARAMETER)
        .saturating_add(activations.saturating_mul(batch).saturating_mul(8));
    if needed > budget {
        let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
        return Err(UsageError(format!(
            "--hidden/--layers/--batch: training this network needs about {:.1} GiB ({parameters} \
             parameters, batches of {batch}), more than the {:.1} GiB of memory available",
            gib(needed),
            gib(budget)
        ))
        .into());
    }
    Ok(())
}

/// Wires the layer graph on the data's shape before anything is written, so that a kernel
/// larger than its input or a pooling that does not divide is one usage error naming the
/// layer, with no output folder left behind.
fn check_layers(plan: &TrainPlan, split: &Split) -> Result<()> {
    let config = &plan.config;
    let input_shape = config
        .input_shape
        .unwrap_or(Shape::vector(split.train.n_features));
    Network::<f32>::new(
        input_shape,
        &config.layer_specs(split.train.n_outputs()),
        config.activation,
        config.output_activation,
        config.init,
        &mut Rng::new(config.seed),
    )
    .map(drop)
    .map_err(|e| UsageError(format!("--layers: {e}")).into())
}

pub fn demo(args: &DemoArgs) -> Result<()> {
    // A configuration that fits the bundled digits in about a second.
    let train_args = TrainArgs {
        data: DataArgs {
            data: None,
            test_data: None,
            label_column: None,
            targets: None,
            autoencoder: false,
            anomaly_column: None,
            header: None,
            classes: None,
            test_split: None,
            split_seed: None,
        },
        hidden: Some("128".into()),
        layers: None,
        input_shape: None,
        activation: None,
        output_activation: None,
        leaky_alpha: None,
        loss: None,
        init: None,
        optimizer: Some(OptimizerArg::Adam),
        lr: Some(0.002),
        momentum: None,
        nesterov: false,
        beta1: None,
        beta2: None,
        eps: None,
        weight_decay: None,
        schedule: Some(ScheduleArg::Cosine),
        step_size: None,
        gamma: None,
        epochs: Some(40),
        batch: Some(32),
        seed: Some(0),
        // A validation split, so training.png shows both curves.
        val_split: Some(0.1),
        patience: None,
        normalize: None,
        qat: super::args::QatArgs::default(),
        pow2_scales: false,
        out: args.out.clone(),
        resume: false,
        no_check: false,
        no_plot: false,
        threads: 1,
        onnx: OnnxArgs {
            opset: kiln_onnx::builder::MIN_OPSET,
            probabilities: false,
        },
        output: args.output,
    };
    let plan = TrainPlan::from_args(&train_args)?;
    let split = load_data(&plan.data_spec, &plan.data_options)?;
    let (mut summary, model) = train_export_check("demo", &plan, &split, None)?;
    // Then the int8 model: quantize, bake, run the runtime on the host, compare with tract.
    let model_path = plan.out_dir.join("model.json");
    summary.quantization = Some(super::quantize::quantize_into(
        "demo",
        &model_path,
        &model,
        &plan.data_spec,
        &split,
        crate::quant::QuantOptions::default(),
        &plan.out_dir,
    )?);
    // And the pictures of where the float model errs.
    summary.evaluation = Some(super::eval::evaluate_float(
        &model_path,
        &model,
        &plan.data_spec,
        &split,
        &plan.out_dir,
    )?);
    finish(&summary, args.output.json)
}

pub fn export(args: &ExportArgs) -> Result<()> {
    let options: ExportOptions = export_options(&args.onnx)?;
    let model = ModelFile::load(&args.model)?;
    export::write_onnx(&model, options, &args.out)
        .with_context(|| format!("{}: cannot export", args.out.display()))?;
    crate::outln!(
        "wrote {} (opset {}{})",
        args.out.display(),
        options.opset,
        if options.with_probabilities {
            ", with probabilities"
        } else {
            ""
        }
    );
    Ok(())
}

/// The model file beside an ONNX file.
fn sibling_model(onnx: &Path) -> PathBuf {
    onnx.with_file_name("model.json")
}

#[derive(Debug, Serialize)]
struct CheckSummary<'a> {
    command: &'static str,
    data: String,
    report: &'a CheckReport,
    passed: bool,
    files: Files,
}

pub fn check(args: &CheckArgs) -> Result<()> {
    let model_path = args
        .model
        .clone()
        .unwrap_or_else(|| sibling_model(&args.onnx));
    if !args.onnx.exists() {
        return Err(check::CheckError::Load {
            path: args.onnx.clone(),
            detail: "no such file".into(),
        }
        .into());
    }
    let model = ModelFile::load(&model_path)
        .context("kiln check compares with the trainer's model file (--model)")?;
    // The file a model was imported from is compared through its import record.
    if super::import::check_source(args, &model)?.is_some() {
        return Ok(());
    }
    let (spec, options) = super::config::model_data_config(&args.data, &model)?;
    let split = load_data(&spec, &options)?;
    let (report, trainer_outputs) = check::check(&args.onnx, &model, &split.test)?;
    let mut files = Files::default();
    if args.save_reference {
        let (input, logits) = check::save_reference(&args.onnx, &split.test, &trainer_outputs)
            .with_context(|| {
                format!("{}: cannot save the reference outputs", args.onnx.display())
            })?;
        files.reference_input = Some(input);
        files.reference_logits = Some(logits);
    }
    if args.output.json {
        let summary = CheckSummary {
            command: "check",
            data: split.description.clone(),
            report: &report,
            passed: report.passed(),
            files,
        };
        crate::outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        crate::outln!("kiln check {}", args.onnx.display());
        crate::outln!("  {:<14} {}", "data", split.description);
        crate::outln!("  {:<14} {}", "tract", check_line(&report));
        if let Some(accuracy) = report.trainer_accuracy {
            crate::outln!("  {:<14} {accuracy:.4}", "trainer acc");
        }
    }
    if report.passed() {
        Ok(())
    } else {
        Err(CheckFailed::from_report(&report).into())
    }
}

/// `kiln completions SHELL`: the completion script for the whole command line, on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<()> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(())
}
