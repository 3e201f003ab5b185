//! `kiln import`: another framework's ONNX MLP becomes a kiln model file, checked
//! against tract running the original file and, with `--expected`, against the
//! exporter's own outputs. `kiln check` on the original file does the same.

use super::args::{CheckArgs, ImportArgs};
use super::config::{data_config, UsageError};
use crate::data::{self, Split, TargetKind};
use crate::import::{self, ImportComparison, ImportRecord};
use crate::model::{ModelFile, Task};
use crate::nn::Loss;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// An imported model disagrees with its exporter's outputs or with tract.
#[derive(Debug, thiserror::Error)]
#[error("{path}: the imported model disagrees with {reference}: {detail}", path = path.display())]
pub struct ImportCheckFailed {
    pub path: PathBuf,
    pub reference: String,
    pub detail: String,
}

/// The data does not fit the imported model.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}", path = path.display())]
pub struct DataMismatch {
    pub path: PathBuf,
    pub detail: String,
}

/// What `kiln import` and `kiln check` on a source file report.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub command: &'static str,
    pub source: PathBuf,
    pub producer: String,
    pub opset: i64,
    pub input: String,
    pub normalization: String,
    pub architecture: String,
    pub n_parameters: usize,
    pub task: String,
    pub outputs: Vec<String>,
    pub notices: Vec<String>,
    pub data: Option<String>,
    pub comparisons: Vec<ImportComparison>,
    pub passed: bool,
    pub model_file: Option<PathBuf>,
}

fn describe_normalization(model: &ModelFile) -> String {
    match &model.normalization {
        data::Normalization::None => "none".into(),
        data::Normalization::Scale { scale } => format!("scale (x * {scale})"),
        data::Normalization::Standardize { mean, .. } => {
            format!(
                "standardize ((x - mean) * inv_std, {} features)",
                mean.len()
            )
        }
    }
}

fn summary(
    command: &'static str,
    model: &ModelFile,
    record: &ImportRecord,
    source: &Path,
    data: Option<String>,
    comparisons: Vec<ImportComparison>,
    model_file: Option<PathBuf>,
) -> ImportSummary {
    let widths: Vec<String> = std::iter::once(model.n_inputs)
        .chain(model.layers.iter().map(|l| l.n_outputs))
        .map(|w| w.to_string())
        .collect();
    let activations: Vec<String> = model
        .layers
        .iter()
        .map(|l| l.activation.to_string())
        .collect();
    let batch = record
        .fixed_batch
        .map_or("N".to_string(), |b| b.to_string());
    ImportSummary {
        command,
        source: source.to_owned(),
        producer: record.producer.clone(),
        opset: record.opset,
        input: format!(
            "{} [{batch}, {}] -> {} features",
            record.input_name,
            record
                .input_dims
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            model.n_inputs
        ),
        normalization: describe_normalization(model),
        architecture: if model.is_mlp() {
            format!("{}: {}", widths.join("-"), activations.join(", "))
        } else {
            let network = model.network();
            let tokens: Vec<String> = network.specs().iter().map(|spec| spec.token()).collect();
            format!("{} -> {}", network.input_shape, tokens.join(","))
        },
        n_parameters: model.mlp().n_parameters(),
        task: match model.task {
            Task::Classification { n_classes } => format!("classification, {n_classes} classes"),
            Task::Regression { n_outputs } => format!("regression, {n_outputs} outputs"),
        },
        outputs: record
            .outputs
            .iter()
            .map(|o| {
                let kind = serde_json::to_value(o.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                format!("{}: {kind}", o.name)
            })
            .collect(),
        notices: record.notices.clone(),
        data,
        passed: comparisons.iter().all(|c| c.passed),
        comparisons,
        model_file,
    }
}

fn print_summary(summary: &ImportSummary, json: bool) -> Result<()> {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    crate::outln!("kiln {}", summary.command);
    let mut rows: Vec<(&str, String)> = vec![
        (
            "source",
            format!(
                "{} ({}, opset {})",
                summary.source.display(),
                summary.producer,
                summary.opset
            ),
        ),
        ("input", summary.input.clone()),
        ("normalization", summary.normalization.clone()),
        (
            "layers",
            format!(
                "{} ({} parameters)",
                summary.architecture, summary.n_parameters
            ),
        ),
        ("task", summary.task.clone()),
        ("outputs", summary.outputs.join(", ")),
    ];
    for notice in &summary.notices {
        rows.push(("notice", notice.clone()));
    }
    if let Some(data) = &summary.data {
        rows.push(("data", data.clone()));
    }
    for comparison in &summary.comparisons {
        rows.push(("check", import::comparison_line(comparison)));
    }
    if let Some(path) = &summary.model_file {
        rows.push(("model file", path.display().to_string()));
    }
    for (label, value) in rows {
        crate::outln!("  {label:<14} {value}");
    }
    Ok(())
}

fn verdict(summary: &ImportSummary) -> Result<()> {
    match summary.comparisons.iter().find(|c| !c.passed) {
        None => Ok(()),
        Some(failed) => Err(ImportCheckFailed {
            path: summary.source.clone(),
            reference: failed.reference.clone(),
            detail: import::comparison_line(failed),
        }
        .into()),
    }
}

/// The comparisons for an imported model: tract on the source over `split`'s
/// test set (or seeded random inputs without data), and the expected outputs.
fn comparisons(
    model: &ModelFile,
    record: &ImportRecord,
    source: &Path,
    split: Option<&Split>,
    expected: Option<&Path>,
) -> Result<Vec<ImportComparison>> {
    let mut comparisons = Vec::new();
    if let Some(path) = expected {
        let expected = import::read_expected(path, model, record)?;
        comparisons.push(import::compare_expected(model, record, &expected));
        comparisons.push(import::compare_tract(
            model,
            record,
            source,
            &expected.features,
            format!(
                "the {} inputs of {}",
                expected.n_samples,
                expected.path.display()
            ),
        )?);
    }
    match split {
        Some(split) => comparisons.push(import::compare_tract(
            model,
            record,
            source,
            &import::source_from_raw(record, &import::source_rows(model, &split.test.features)),
            format!("{} test samples of the data", split.test.n_samples()),
        )?),
        None if expected.is_none() => comparisons.push(import::compare_tract(
            model,
            record,
            source,
            &import::random_features(import::RANDOM_SAMPLES, model.n_inputs),
            format!("{} seeded random inputs in [-1, 1)", import::RANDOM_SAMPLES),
        )?),
        None => {}
    }
    Ok(comparisons)
}

/// `--input-scale`: a positive finite number, as a decimal (`0.00392`) or a fraction
/// (`1/255`).
fn parse_input_scale(text: &str) -> Result<f32, UsageError> {
    let number = |part: &str| part.trim().parse::<f64>().ok();
    let value = match text.split_once('/') {
        Some((numerator, denominator)) => number(numerator)
            .zip(number(denominator))
            .map(|(n, d)| n / d),
        None => number(text),
    };
    match value.map(|v| v as f32) {
        Some(scale) if scale.is_finite() && scale > 0.0 => Ok(scale),
        _ => Err(UsageError(format!(
            "--input-scale: expected a positive number such as 1/255 or 0.5, got {text:?}"
        ))),
    }
}

fn default_out(onnx: &Path) -> PathBuf {
    let stem = onnx
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    Path::new("kiln-out").join(format!("{stem}.json"))
}

pub fn import(args: &ImportArgs) -> Result<()> {
    if args.data.data.is_none() {
        return Err(UsageError(
            "--data: kiln import needs the data the model was trained on (it calibrates the int8 model and is \
             what check, quantize and bake use by default), e.g. --data csv:train.csv or --data digits"
                .into(),
        )
        .into());
    }
    let source_bytes = std::fs::read(&args.onnx).map_err(|e| kiln_onnx::import::ImportError {
        path: args.onnx.clone(),
        kind: kiln_onnx::import::ImportErrorKind::Read(e),
    })?;
    // A channels-last source (a Keras model through tf2onnx) reads rows in HWC order: the data
    // options say so, and every load reorders the rows to the layer graph's CHW.
    let (imported, _) = kiln_onnx::import::import_file_with(
        &args.onnx,
        &kiln_onnx::import::ImportOptions {
            reorder_channels_last: true,
        },
    )?;
    // Target columns (--targets, --autoencoder) are regression targets.
    let regression = args.regression || args.data.targets.is_some() || args.data.autoencoder;
    let classification = import::is_classifier(&imported, regression);
    let loss = if classification {
        Loss::CrossEntropy
    } else {
        Loss::MeanSquaredError
    };
    let (spec, mut options) = data_config(&args.data, loss)?;
    options.channels_last = import::channels_last(&imported.input);
    let split = data::load(&spec, &options)?;
    if split.train.n_features != imported.n_inputs {
        return Err(DataMismatch {
            path: args.onnx.clone(),
            detail: format!(
                "the model takes {} features, but {spec} has {}",
                imported.n_inputs, split.train.n_features
            ),
        }
        .into());
    }
    if !classification && split.train.n_outputs() != imported.n_outputs() {
        return Err(DataMismatch {
            path: args.onnx.clone(),
            detail: format!(
                "the model predicts {} values per row, but {spec} has {} target(s) per row (--targets, --autoencoder)",
                imported.n_outputs(),
                split.train.n_outputs()
            ),
        }
        .into());
    }
    if classification {
        let n_classes = split.train.n_outputs();
        if n_classes > imported.n_outputs() {
            return Err(DataMismatch {
                path: args.onnx.clone(),
                detail: format!(
                    "the model has {} classes, but {spec} has {n_classes}",
                    imported.n_outputs()
                ),
            }
            .into());
        }
        // The model fixes the class count for every later use of the data.
        if args.data.classes.is_none() {
            options.target = TargetKind::Classes {
                n_classes: Some(imported.n_outputs().max(2)),
            };
        }
    }
    let input_scale = args
        .input_scale
        .as_deref()
        .map(parse_input_scale)
        .transpose()?;
    let model = import::to_model_file(
        &imported,
        &args.onnx,
        &source_bytes,
        spec,
        options,
        classification,
        input_scale,
    );
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.onnx));
    model
        .validate(&out)
        .with_context(|| format!("{}: the folded model is invalid", args.onnx.display()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
    }
    model.save(&out)?;
    let record = model.imported.as_ref().expect("set by to_model_file");
    let comparisons = if args.no_check {
        Vec::new()
    } else {
        comparisons(
            &model,
            record,
            &args.onnx,
            Some(&split),
            args.expected.as_deref(),
        )?
    };
    let summary = summary(
        "import",
        &model,
        record,
        &args.onnx,
        Some(split.description.clone()),
        comparisons,
        Some(out),
    );
    if !args.output.quiet || args.output.json {
        print_summary(&summary, args.output.json)?;
    }
    verdict(&summary)
}

/// `kiln check SOURCE.onnx --model IMPORTED.json`: when the ONNX file is the one the
/// model was imported from, compares the model with tract on it (on the data's
/// test set) and with `--expected`. Returns `None` for any other ONNX file.
pub fn check_source(args: &CheckArgs, model: &ModelFile) -> Result<Option<()>> {
    let record = match &model.imported {
        Some(record) => record,
        None if args.expected.is_some() => {
            return Err(UsageError(
                "--expected: compares a model imported with `kiln import` with its exporter's outputs; this model file was not imported".into(),
            )
            .into())
        }
        None => return Ok(None),
    };
    let bytes = std::fs::read(&args.onnx)
        .with_context(|| format!("{}: cannot read the ONNX file", args.onnx.display()))?;
    if !record.is_source(&bytes) {
        if args.expected.is_some() {
            return Err(UsageError(format!(
                "--expected: {} is not the file the model was imported from ({})",
                args.onnx.display(),
                record.source.display()
            ))
            .into());
        }
        return Ok(None);
    }
    let split = if args.data.data.is_some() || args.expected.is_none() {
        let (spec, options) = super::config::model_data_config(&args.data, model)?;
        Some(data::load(&spec, &options)?)
    } else {
        None
    };
    let comparisons = comparisons(
        model,
        record,
        &args.onnx,
        split.as_ref(),
        args.expected.as_deref(),
    )?;
    let summary = summary(
        "check",
        model,
        record,
        &args.onnx,
        split.map(|s| s.description),
        comparisons,
        None,
    );
    print_summary(&summary, args.output.json)?;
    verdict(&summary).map(Some)
}
