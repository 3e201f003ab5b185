//! `kiln quantize`, `kiln bake` and `kiln run`: the int8 pipeline on the host.

use super::args::{BakeArgs, CalibArgs, DataArgs, QuantizeArgs, RunArgs};
use super::config::{data_config, UsageError};
use crate::data::{self, DataOptions, DataSpec, Split, Targets};
use crate::metrics::{self, RegressionMetrics};
use crate::model::ModelFile;
use crate::nn::Loss;
use crate::quant::calibrate::RangeMethod;
use crate::quant::host::{self, BlobError, TractComparison};
use crate::quant::rust_source::{self, SourceInfo};
use crate::quant::{self, QuantOptions, QuantReport, Quantized};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// tract's int8 outputs on the QDQ file disagree with the runtime's.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: tract's int8 logits disagree with the kiln runtime: max difference {max_lsb_diff} LSB (limit {limit}), \
     argmax agreement {agree}/{n}{}",
    layers.map_or(String::new(), |max| format!(", each layer alone up to {max} LSB"))
)]
pub struct TractDisagrees {
    pub path: PathBuf,
    pub max_lsb_diff: u32,
    pub limit: u32,
    pub agree: usize,
    pub n: usize,
    /// The largest difference of a layer alone, when the layers were compared.
    pub layers: Option<u32>,
}

impl TractDisagrees {
    pub fn from_comparison(comparison: &TractComparison) -> Self {
        Self {
            path: comparison.qdq_path.clone(),
            max_lsb_diff: comparison.max_lsb_diff,
            limit: host::MAX_LSB_DIFF,
            agree: comparison.argmax_agreement,
            n: comparison.n_samples,
            layers: comparison.layer_max(),
        }
    }
}

/// Why an int16 model's QDQ file is not run by tract.
const TRACT_INT16: &str = "tract does not run INT16 QuantizeLinear; onnxruntime checks int16 QDQ files in CI (cargo xtask ci)";

/// The trainer's integer forward pass disagrees with the runtime: a defect in one of them.
#[derive(Debug, thiserror::Error)]
#[error("the trainer's int8 forward pass and the kiln runtime differ on {} of {n} test samples (they compute the same integers; please report this)", n - identical)]
pub struct TrainerDisagrees {
    pub identical: usize,
    pub n: usize,
}

/// The files of a quantized model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QuantFiles {
    /// The model `--qat-epochs` fine-tuned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    pub qdq_onnx: Option<PathBuf>,
    pub blob: Option<PathBuf>,
    pub rust: Option<PathBuf>,
    /// The raw test inputs and the runtime's int8 logits, as .npy, for other runtimes.
    pub reference_input: Option<PathBuf>,
    pub reference_logits_q: Option<PathBuf>,
}

/// What `kiln quantize` (and the quantization part of `kiln demo`) reports.
#[derive(Debug, Clone, Serialize)]
pub struct QuantSummary {
    pub command: &'static str,
    pub data: String,
    pub calibration: String,
    pub calib_samples: usize,
    pub test_samples: usize,
    /// The trainer's float model on the test set.
    pub float_accuracy: Option<f64>,
    /// The width of the quantized model's activations: `int8`, or `int16` (the 16x8 scheme,
    /// whose figures the `int8_*` fields then hold).
    pub activations: &'static str,
    /// The runtime's int8 model on the test set.
    pub int8_accuracy: Option<f64>,
    /// Regression targets: the trainer's float model's error on the test set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub float_regression: Option<RegressionMetrics>,
    /// Regression targets: the error of the runtime's int8 outputs, dequantized as its f32
    /// output (`scale * (q - zero_point)`), on the test set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8_regression: Option<RegressionMetrics>,
    /// The blob's length: what the model takes in flash.
    pub flash_bytes: usize,
    /// The scratch RAM one inference needs.
    pub scratch_bytes: usize,
    /// Test samples whose int8 logit row is identical in tract (QDQ file) and the runtime.
    pub tract_identical: usize,
    pub tract_max_lsb_diff: u32,
    pub tract_argmax_agreement: usize,
    /// When the outputs differ by more than 1 LSB: each layer alone, fed the runtime's int8
    /// input, its largest difference from tract (first layer first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tract_layer_max_lsb_diff: Option<Vec<u32>>,
    pub tract_passed: bool,
    /// Why tract did not run (an int16 model: tract does not run INT16 QuantizeLinear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tract_skipped: Option<String>,
    /// Test samples whose int8 logit row is identical in the trainer's integer forward pass
    /// (what quantization-aware training computes) and the runtime: all of them.
    pub trainer_identical: usize,
    pub files: QuantFiles,
    pub report: QuantReport,
}

impl QuantSummary {
    /// The summary rows `demo` and `quantize` print.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let accuracy = |a: Option<f64>| a.map_or("n/a".to_string(), |a| format!("{a:.4}"));
        let mut rows = vec![(
            "calibration",
            if self.calib_samples == 0 {
                format!("none: the ranges were {}", self.calibration)
            } else {
                format!(
                    "{} training samples, {}",
                    self.calib_samples, self.calibration
                )
            },
        )];
        match (&self.float_regression, &self.int8_regression) {
            (Some(float), Some(int8)) => {
                rows.push(("float error", float.error_line()));
                rows.push(("int8 error", int8.error_line()));
                if let Some(line) = float.anomaly_line() {
                    rows.push(("float AUC", line));
                }
                if let Some(line) = int8.anomaly_line() {
                    rows.push(("int8 AUC", line));
                }
            }
            _ => {
                rows.push(("float acc", accuracy(self.float_accuracy)));
                let label = if self.activations == "int16" {
                    "int16 acc"
                } else {
                    "int8 acc"
                };
                rows.push((label, accuracy(self.int8_accuracy)));
            }
        }
        rows.extend([
            ("flash", format!("{} bytes (model blob)", self.flash_bytes)),
            ("scratch RAM", format!("{} bytes", self.scratch_bytes)),
            (
                "tract int8",
                match &self.tract_skipped {
                    Some(reason) => format!("not run: {reason}"),
                    None => format!(
                        "{} on {} samples: {} rows bit-identical, max diff {} LSB, argmax agrees {}/{}",
                        if self.tract_passed { "PASS" } else { "FAIL" },
                        self.test_samples,
                        self.tract_identical,
                        self.tract_max_lsb_diff,
                        self.tract_argmax_agreement,
                        self.test_samples
                    ),
                },
            ),
        ]);
        rows.push((
            "trainer int",
            format!(
                "{} on {} samples: {} rows bit-identical to the runtime (the trainer's integer forward pass, as QAT computes it)",
                if self.trainer_identical == self.test_samples { "PASS" } else { "FAIL" },
                self.test_samples,
                self.trainer_identical,
            ),
        ));
        if let Some(layers) = &self.tract_layer_max_lsb_diff {
            let each: Vec<String> = layers.iter().map(u32::to_string).collect();
            rows.push((
                "tract layers",
                format!(
                    "each layer alone, fed the runtime's int8 input: max diff {} LSB (per layer: {})",
                    layers.iter().copied().max().unwrap_or(0),
                    each.join(", ")
                ),
            ));
        }
        rows
    }

    /// An error if tract or the trainer's integer forward pass disagrees with the runtime.
    pub fn verdict(&self) -> Result<()> {
        if self.trainer_identical != self.test_samples {
            return Err(TrainerDisagrees {
                identical: self.trainer_identical,
                n: self.test_samples,
            }
            .into());
        }
        if self.tract_passed || self.tract_skipped.is_some() {
            return Ok(());
        }
        Err(TractDisagrees {
            path: self.files.qdq_onnx.clone().unwrap_or_default(),
            max_lsb_diff: self.tract_max_lsb_diff,
            limit: host::MAX_LSB_DIFF,
            agree: self.tract_argmax_agreement,
            n: self.test_samples,
            layers: self
                .tract_layer_max_lsb_diff
                .as_ref()
                .map(|layers| layers.iter().copied().max().unwrap_or(0)),
        }
        .into())
    }
}

pub(crate) fn quant_options(args: &CalibArgs) -> Result<QuantOptions, UsageError> {
    if args.calib == 0 {
        return Err(UsageError("--calib: expected at least 1 sample".into()));
    }
    let method = match args.percentile {
        None => RangeMethod::MinMax,
        Some(p) if p > 50.0 && p <= 100.0 => RangeMethod::Percentile { p },
        Some(p) => {
            return Err(UsageError(format!(
                "--percentile: expected a value above 50 and at most 100 (e.g. 99.99), got {p}"
            )))
        }
    };
    Ok(QuantOptions {
        calib_samples: args.calib,
        method,
        pow2_scales: args.pow2_scales,
        int16: args.activations == super::args::ActivationsArg::Int16,
        in_place: args.in_place,
    })
}

/// The model file and the data it is quantized and evaluated with: by default
/// the data it was trained on.
fn model_and_data(
    model_path: &Path,
    args: &DataArgs,
) -> Result<(ModelFile, (DataSpec, DataOptions), Split)> {
    let model = ModelFile::load(model_path)?;
    let (spec, options): (DataSpec, DataOptions) = super::config::model_data_config(args, &model)?;
    let split = data::load(&spec, &options)?;
    if split.train.n_features != model.n_inputs {
        return Err(crate::model::ModelFileError::Invalid {
            path: model_path.to_owned(),
            field: "n_inputs".into(),
            detail: format!(
                "the model takes {} inputs, but {spec} has {} features",
                model.n_inputs, split.train.n_features
            ),
        }
        .into());
    }
    crate::model::check_targets(&model, model_path, &spec.to_string(), &split.train.targets)?;
    Ok((model, (spec, options), split))
}

fn quantize_model(
    model_path: &Path,
    model: &ModelFile,
    split: &Split,
    options: QuantOptions,
) -> Result<Quantized> {
    quant::quantize(model, &split.train, options)
        .with_context(|| format!("{}: cannot quantize", model_path.display()))
}

fn parse_blob<'a>(path: &Path, blob: &'a [u8]) -> Result<kiln_runtime::Model<'a>, BlobError> {
    kiln_runtime::Model::from_bytes(blob).map_err(|e| {
        // A model file or an ONNX file where a blob belongs: say what to do with it.
        let hint = match (e, blob.first()) {
            (kiln_runtime::Error::BadMagic, Some(b'{')) => {
                "; this is a kiln model file (JSON): bake it into a blob with `kiln bake MODEL --blob FILE`"
            }
            (kiln_runtime::Error::BadMagic, Some(_)) => {
                "; a blob is what `kiln quantize` and `kiln bake --blob` write"
            }
            _ => "",
        };
        BlobError {
            path: path.to_owned(),
            detail: format!("the kiln runtime refuses the model blob: {e}{hint}"),
        }
    })
}

/// A one-line description of the model for generated source and reports.
fn description(model: &ModelFile, quantized: &Quantized) -> String {
    let widths: Vec<String> = std::iter::once(model.n_inputs)
        .chain(model.layers.iter().map(|l| l.n_outputs))
        .map(|w| w.to_string())
        .collect();
    let width = match quantized.spec.activations {
        kiln_runtime::encode::Activations::Int8 => "int8",
        kiln_runtime::encode::Activations::Int16 => "int16 activations and int8 weights",
    };
    format!(
        "A {} {} MLP trained on {}, quantized to {width} with {} calibration samples ({}).",
        widths.join("-"),
        model.config.activation,
        model.data,
        quantized.report.calibration.n_samples,
        quantized.report.calibration.method
    )
}

fn rust_text(model: &ModelFile, quantized: &Quantized, scratch_len: usize) -> String {
    // The blob was just written by the encoder and validated: it parses.
    let runtime = kiln_runtime::Model::from_bytes(&quantized.blob).ok();
    let fast_scratch_len = runtime.map_or(scratch_len, |runtime| runtime.fast_scratch_len());
    let layer_kinds = runtime.map_or(kiln_runtime::kinds::ALL, |runtime| runtime.layer_kinds());
    let info = SourceInfo {
        n_inputs: model.n_inputs,
        n_outputs: model.task.n_outputs(),
        scratch_len,
        fast_scratch_len,
        description: &description(model, quantized),
        layer_kinds,
    };
    rust_source::rust_source(&quantized.blob, info)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsutil::write_atomic(path, bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// The files `quantize_into` writes (whose temp files a killed run may leave behind).
pub const OUTPUT_FILES: [&str; 5] = [
    "model.qdq.onnx",
    "model.kiln",
    "model.rs",
    "model.qdq.input.npy",
    "model.qdq.logits_q.npy",
];

/// Quantizes `model`, writes `model.qdq.onnx`, `model.kiln` and `model.rs` into
/// `out_dir`, runs the runtime over the test set and compares it with tract.
pub fn quantize_into(
    command: &'static str,
    model_path: &Path,
    model: &ModelFile,
    spec: &DataSpec,
    split: &Split,
    options: QuantOptions,
    out_dir: &Path,
) -> Result<QuantSummary> {
    let quantized = quantize_model(model_path, model, split, options)?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create the output folder", out_dir.display()))?;
    super::commands::remove_stale_temp_files(out_dir);
    let qdq_path = out_dir.join("model.qdq.onnx");
    let blob_path = out_dir.join("model.kiln");
    let rust_path = out_dir.join("model.rs");

    let runtime_model = parse_blob(&blob_path, &quantized.blob)?;
    let scratch_bytes = runtime_model.scratch_len();
    let proto = quant::qdq_onnx(model, &quantized)
        .with_context(|| format!("{}: cannot build the QDQ file", qdq_path.display()))?;
    kiln_onnx::mlp::write_model_atomic(&qdq_path, &proto)
        .with_context(|| format!("{}: cannot write", qdq_path.display()))?;
    write_file(&blob_path, &quantized.blob)?;
    write_file(
        &rust_path,
        rust_text(model, &quantized, scratch_bytes).as_bytes(),
    )?;

    let test = &split.test;
    let raw = host::raw_inputs(
        test,
        &format!("{spec} (test set)"),
        runtime_model.input_frac_bits(),
    )?;
    let n_outputs = model.task.n_outputs();
    let failed = |e: kiln_runtime::Error| BlobError {
        path: blob_path.clone(),
        detail: format!("the kiln runtime failed: {e}"),
    };
    // Other runtimes compare with these: the raw test inputs and the runtime's logits.
    let reference_input = out_dir.join("model.qdq.input.npy");
    let reference_logits_q = out_dir.join("model.qdq.logits_q.npy");
    crate::npy::write_f32(
        &reference_input,
        test.n_samples(),
        test.n_features,
        &test.features,
    )
    .with_context(|| format!("{}: cannot write", reference_input.display()))?;
    let sample_dims = crate::export::onnx_sample_dims(model);
    // The runtime on every test sample, its logits saved, and tract on the QDQ file.
    let (runtime_logits, predictions, real_outputs, comparison) = if options.int16 {
        let run = host::run_runtime_i16(&runtime_model, &raw, test.n_features, n_outputs)
            .map_err(failed)?;
        crate::npy::write_i16(
            &reference_logits_q,
            test.n_samples(),
            n_outputs,
            &run.logits,
        )
        .with_context(|| format!("{}: cannot write", reference_logits_q.display()))?;
        // tract does not run INT16 QuantizeLinear: onnxruntime checks these files in CI.
        (
            run.logits.iter().map(|&l| i32::from(l)).collect::<Vec<_>>(),
            run.predictions,
            super::eval::dequantize_i16(&runtime_model, &run.logits),
            None,
        )
    } else {
        let run =
            host::run_runtime(&runtime_model, &raw, test.n_features, n_outputs).map_err(failed)?;
        crate::npy::write_i8(
            &reference_logits_q,
            test.n_samples(),
            n_outputs,
            &run.logits,
        )
        .with_context(|| format!("{}: cannot write", reference_logits_q.display()))?;
        let mut comparison = host::compare_with_tract(&qdq_path, test, &sample_dims, &run)?;
        if comparison.max_lsb_diff > host::MAX_LSB_DIFF {
            comparison.layer_max_lsb_diff =
                host::compare_layers_with_tract(&quantized, &qdq_path, &raw)?;
        }
        (
            run.logits.iter().map(|&l| i32::from(l)).collect::<Vec<_>>(),
            run.predictions,
            super::eval::dequantize(&runtime_model, &run.logits),
            Some(comparison),
        )
    };
    let int8_accuracy = host::accuracy(&predictions, &test.targets);
    // The trainer's own integer forward pass (what QAT trains with) on the same numbers.
    let trainer_logits =
        quant::qat::int_logits(model, &quantized, test, options).with_context(|| {
            format!(
                "{}: cannot run the trainer's integer model",
                model_path.display()
            )
        })?;
    let trainer_identical = trainer_logits
        .chunks_exact(n_outputs.max(1))
        .zip(runtime_logits.chunks_exact(n_outputs.max(1)))
        .filter(|(trainer, runtime)| trainer == runtime)
        .count();
    let normalized = model.normalization.apply(test);
    let (_, float_accuracy) = crate::train::evaluate(
        &model.network(),
        &normalized,
        &test.targets,
        model.config.loss,
    );
    let (float_regression, int8_regression) = match &test.targets {
        Targets::Regression { .. } if test.n_outputs() == n_outputs => (
            metrics::for_targets(
                &crate::check::network_outputs(&model.network(), &normalized),
                &test.targets,
            ),
            metrics::for_targets(&real_outputs, &test.targets),
        ),
        _ => (None, None),
    };

    Ok(QuantSummary {
        command,
        data: split.description.clone(),
        calibration: quantized.report.calibration.method.to_string(),
        calib_samples: quantized.report.calibration.n_samples,
        test_samples: test.n_samples(),
        float_accuracy,
        activations: if options.int16 { "int16" } else { "int8" },
        int8_accuracy,
        float_regression,
        int8_regression,
        flash_bytes: quantized.blob.len(),
        scratch_bytes,
        tract_identical: comparison.as_ref().map_or(0, |c| c.identical),
        tract_max_lsb_diff: comparison.as_ref().map_or(0, |c| c.max_lsb_diff),
        tract_argmax_agreement: comparison.as_ref().map_or(0, |c| c.argmax_agreement),
        tract_layer_max_lsb_diff: comparison
            .as_ref()
            .and_then(|c| c.layer_max_lsb_diff.clone()),
        tract_passed: comparison.as_ref().is_some_and(TractComparison::passed),
        tract_skipped: comparison.is_none().then(|| TRACT_INT16.to_owned()),
        trainer_identical,
        files: QuantFiles {
            model: None,
            qdq_onnx: Some(qdq_path),
            blob: Some(blob_path),
            rust: Some(rust_path),
            reference_input: Some(reference_input),
            reference_logits_q: Some(reference_logits_q),
        },
        report: quantized.report,
    })
}

pub fn quantize(args: &QuantizeArgs) -> Result<()> {
    let options = quant_options(&args.calib)?;
    let (model, (spec, data_options), split) = model_and_data(&args.model, &args.data)?;
    let (model, model_path) = match args.qat_epochs {
        Some(epochs) => {
            let tuned = fine_tune(args, model, (&spec, &data_options), &split, options, epochs)?;
            (tuned, args.out.join("model.json"))
        }
        None => (model, args.model.clone()),
    };
    let mut summary = quantize_into(
        "quantize",
        &model_path,
        &model,
        &spec,
        &split,
        options,
        &args.out,
    )?;
    if args.qat_epochs.is_some() {
        summary.files.model = Some(model_path);
    }
    if args.output.json {
        crate::outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !args.output.quiet {
        crate::outln!("kiln quantize {}", args.model.display());
        crate::outln!("  {:<14} {}", "data", summary.data);
        for (label, value) in summary.rows() {
            crate::outln!("  {label:<14} {value}");
        }
        for (label, path) in [
            ("qat model", &summary.files.model),
            ("qdq onnx", &summary.files.qdq_onnx),
            ("blob", &summary.files.blob),
            ("rust", &summary.files.rust),
        ] {
            if let Some(path) = path {
                crate::outln!("  {label:<14} {}", path.display());
            }
        }
    }
    summary.verdict()
}

/// `kiln quantize --qat-epochs N`: `epochs` more epochs of quantization-aware training on
/// `model` (after its float epochs, or after the QAT epochs it has), checkpointed to
/// `OUT/model.json` as `kiln train` checkpoints, so Ctrl-C keeps the epochs done and
/// `kiln train --resume -o OUT` continues them.
fn fine_tune(
    args: &QuantizeArgs,
    mut model: ModelFile,
    (spec, data_options): (&DataSpec, &DataOptions),
    split: &Split,
    options: QuantOptions,
    epochs: usize,
) -> Result<ModelFile> {
    if epochs == 0 {
        return Err(UsageError("--qat-epochs: expected at least 1 epoch".into()).into());
    }
    if let Some(qat) = model
        .config
        .qat
        .filter(|qat| qat.pow2_scales != options.pow2_scales)
    {
        return Err(anyhow::Error::new(quant::QuantError::QatScales {
            trained_pow2: qat.pow2_scales,
        })
        .context(format!("{}: cannot fine-tune", args.model.display())));
    }
    let learning_rate = args
        .qat_lr
        .or(model.config.qat.map(|qat| qat.learning_rate))
        .unwrap_or(model.config.learning_rate / 10.0);
    let qat_done = model.state.qat.as_ref().map_or(0, |qat| qat.epochs_done);
    if model.state.qat.is_none() {
        // The float epochs end here, whatever the model was configured for.
        model.config.epochs = model.state.epochs_done;
        model.state.epoch_progress = None;
    }
    model.state.stopped_early = false;
    model.state.epochs_since_best = 0;
    model.config.qat = Some(quant::qat::QatConfig {
        epochs: qat_done + epochs,
        learning_rate,
        pow2_scales: options.pow2_scales,
    });
    let config = model.config.clone();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the output folder", args.out.display()))?;
    let model_path = args.out.join("model.json");
    let mut checkpoint = |model: &ModelFile| model.save(&model_path).map_err(|e| e.to_string());
    let hook = super::interrupt::hook()?;
    let should_stop = |batches_run: usize| {
        super::interrupt::signalled() || hook.is_some_and(|after| batches_run >= after)
    };
    let mut progress = super::progress::Progress::new(args.output.quiet || args.output.json);
    super::interrupt::install();
    super::interrupt::set_training(true);
    let result = crate::train::train(
        split,
        spec,
        data_options,
        &config,
        1,
        Some(model),
        &mut progress,
        &mut checkpoint,
        &should_stop,
    );
    super::interrupt::set_training(false);
    let model = result.map_err(|error| match error {
        crate::train::TrainError::Interrupted { epoch, batch } => {
            anyhow::Error::new(super::commands::Interrupted {
                epoch,
                batch: Some(batch),
                model_path: model_path.clone(),
                out_dir: args.out.clone(),
            })
        }
        error => anyhow::Error::new(error).context(format!(
            "{}: quantization-aware training stopped",
            model_path.display()
        )),
    })?;
    checkpoint(&model).map_err(|detail| anyhow::anyhow!(detail))?;
    Ok(model)
}

pub fn bake(args: &BakeArgs) -> Result<()> {
    let options = quant_options(&args.calib)?;
    let (model, _, split) = model_and_data(&args.model, &args.data)?;
    let quantized = quantize_model(&args.model, &model, &split, options)?;
    let (path, is_blob) = match (&args.blob, &args.rust) {
        (Some(path), _) => (path, true),
        (None, Some(path)) => (path, false),
        (None, None) => return Err(UsageError("give --blob FILE or --rust FILE".into()).into()),
    };
    let runtime_model = parse_blob(path, &quantized.blob)?;
    let scratch_bytes = runtime_model.scratch_len();
    if is_blob {
        write_file(path, &quantized.blob)?;
    } else {
        write_file(
            path,
            rust_text(&model, &quantized, scratch_bytes).as_bytes(),
        )?;
    }
    crate::outln!(
        "wrote {} ({}: {} bytes flash, {} bytes scratch RAM)",
        path.display(),
        if is_blob { "model blob" } else { "Rust source" },
        quantized.blob.len(),
        scratch_bytes
    );
    Ok(())
}

/// "784-128-10 relu/identity" from the blob's layers.
pub(super) fn runtime_architecture(model: &kiln_runtime::Model<'_>) -> String {
    let layers: Vec<kiln_runtime::LayerInfo> = (0..model.n_layers())
        .filter_map(|idx| model.layer(idx))
        .collect();
    let widths: Vec<String> = std::iter::once(model.n_inputs())
        .chain(layers.iter().map(|l| l.n_outputs))
        .map(|w| w.to_string())
        .collect();
    let activations: Vec<&str> = layers
        .iter()
        .map(|l| match l.activation {
            kiln_runtime::Activation::Identity => "identity",
            kiln_runtime::Activation::Relu => "relu",
            kiln_runtime::Activation::Lut => "table",
        })
        .collect();
    format!("{} {}", widths.join("-"), activations.join("/"))
}

#[derive(Debug, Serialize)]
struct RunSummary {
    command: &'static str,
    blob: PathBuf,
    data: String,
    samples: usize,
    int8_accuracy: Option<f64>,
    /// Regression targets: the error of the int8 outputs, dequantized as the runtime's f32
    /// output, against them.
    #[serde(skip_serializing_if = "Option::is_none")]
    regression: Option<RegressionMetrics>,
    flash_bytes: usize,
    scratch_bytes: usize,
    outputs: Option<PathBuf>,
}

/// `--outputs`: the int8 outputs, one CSV row per test sample; for regression data each row
/// ends with one more column, the row's score (the mean squared error of its dequantized
/// outputs against its targets).
fn outputs_csv(run: &host::RuntimeRun<i32>, scores: Option<&[f64]>) -> String {
    let text = host::logits_csv(run);
    let Some(scores) = scores else {
        return text;
    };
    let mut with_scores = String::with_capacity(text.len() + scores.len() * 12);
    for (line, score) in text.lines().zip(scores) {
        with_scores.push_str(line);
        with_scores.push_str(&format!(",{score}\n"));
    }
    with_scores
}

pub fn run(args: &RunArgs) -> Result<()> {
    let bytes = std::fs::read(&args.blob).map_err(|e| BlobError {
        path: args.blob.clone(),
        detail: format!("cannot read the model blob: {e}"),
    })?;
    let model = parse_blob(&args.blob, &bytes)?;
    let (spec, options) = data_config(&args.data, Loss::CrossEntropy)?;
    let split = data::load(&spec, &options)?;
    let test = &split.test;
    let (n_inputs, n_outputs) = (model.n_inputs(), model.n_outputs());
    if test.n_features != n_inputs {
        return Err(BlobError {
            path: args.blob.clone(),
            detail: format!(
                "the model takes {n_inputs} inputs, but {spec} has {} features",
                test.n_features
            ),
        }
        .into());
    }
    if let Some(detail) = super::eval::regression_misfit(&spec, test, n_inputs, n_outputs) {
        return Err(BlobError {
            path: args.blob.clone(),
            detail,
        }
        .into());
    }
    let raw = host::raw_inputs(test, &format!("{spec} (test set)"), model.input_frac_bits())?;
    let (run, outputs) =
        host::run_widened(&model, &raw, n_inputs, n_outputs).map_err(|e| BlobError {
            path: args.blob.clone(),
            detail: format!("the kiln runtime failed: {e}"),
        })?;
    let int8_accuracy = host::accuracy(&run.predictions, &test.targets);
    let (regression, scores) = match &test.targets {
        Targets::Regression {
            values, n_outputs, ..
        } => (
            metrics::for_targets(&outputs, &test.targets),
            Some(metrics::row_errors(&outputs, values, *n_outputs)),
        ),
        Targets::Classes { .. } => (None, None),
    };
    if let Some(path) = &args.outputs {
        write_file(path, outputs_csv(&run, scores.as_deref()).as_bytes())?;
    }
    let summary = RunSummary {
        command: "run",
        blob: args.blob.clone(),
        data: split.description.clone(),
        samples: test.n_samples(),
        int8_accuracy,
        regression,
        flash_bytes: bytes.len(),
        scratch_bytes: model.scratch_len(),
        outputs: args.outputs.clone(),
    };
    if args.output.json {
        crate::outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !args.output.quiet {
        crate::outln!("kiln run {}", args.blob.display());
        crate::outln!("  {:<14} {}", "data", summary.data);
        let width = format!("int{}", model.activation_bits());
        crate::outln!(
            "  {:<14} {} {width}, {} bytes flash, {} bytes scratch RAM",
            "model",
            runtime_architecture(&model),
            summary.flash_bytes,
            summary.scratch_bytes
        );
        match (int8_accuracy, &summary.regression) {
            (Some(accuracy), _) => crate::outln!(
                "  {:<14} {accuracy:.4} on {} samples",
                format!("{width} acc"),
                summary.samples
            ),
            (None, Some(regression)) => {
                crate::outln!(
                    "  {:<14} {} on {} samples, over {} outputs",
                    format!("{width} error"),
                    regression.error_line(),
                    summary.samples,
                    regression.per_output.len()
                );
                if let Some(line) = regression.anomaly_line() {
                    crate::outln!("  {:<14} {line}", "anomaly AUC");
                }
            }
            (None, None) => {
                crate::outln!("  {:<14} n/a on {} samples", "int8 acc", summary.samples)
            }
        }
        if let Some(path) = &summary.outputs {
            crate::outln!("  {:<14} {}", "outputs", path.display());
        }
    }
    Ok(())
}
