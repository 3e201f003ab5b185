//! `kiln eval MODEL`: accuracy, per-class precision and recall, the confusion matrix and
//! the most confident mistakes of a float model (model.json) or an int8 blob (.kiln); for
//! regression data, the mean squared and absolute errors, the worst outputs and, with anomaly
//! labels, the ROC AUC of the per-row error.

use super::args::EvalArgs;
use super::config::data_config;
use crate::data::{self, DataSpec, Dataset, Split, Targets};
use crate::metrics::{self, RegressionMetrics};
use crate::model::{ModelFile, Task};
use crate::nn::loss::Loss;
use crate::plot::{self, ConfusionFigure, Mistake, MistakesFigure};
use crate::quant::host;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A model and data that `kiln eval` cannot measure together; reported as bad input.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct EvalError {
    pub path: PathBuf,
    pub detail: String,
}

/// The files `kiln eval` (and `demo`) write.
pub const OUTPUT_FILES: [&str; 4] = [
    "confusion.png",
    "confusion.svg",
    "mistakes.png",
    "mistakes.svg",
];

/// What a model predicted for every test sample.
#[derive(Debug, Clone)]
struct Predictions {
    /// The predicted class of every sample.
    classes: Vec<usize>,
    /// The softmax probability of the predicted class.
    confidences: Vec<f64>,
}

/// Precision and recall of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    pub class: usize,
    /// Test samples of this class.
    pub support: usize,
    /// Test samples predicted as this class.
    pub predicted: usize,
    /// Of the samples predicted as this class, the share that are; `None` if none was.
    pub precision: Option<f64>,
    /// Of the samples of this class, the share predicted as it; `None` if there are none.
    pub recall: Option<f64>,
}

/// What `kiln eval` reports, as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub command: &'static str,
    pub model: PathBuf,
    /// `float` (a model file) or `int8` (a blob).
    pub kind: &'static str,
    pub data: String,
    pub samples: usize,
    pub accuracy: f64,
    pub mistakes: usize,
    pub classes: Vec<ClassMetrics>,
    /// `confusion[true_class][predicted_class]`: sample counts.
    pub confusion: Vec<Vec<usize>>,
    /// The pictures written (PNG and SVG).
    pub pictures: Vec<PathBuf>,
}

/// What `kiln eval` reports for regression data, as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct RegressionEvalSummary {
    pub command: &'static str,
    pub model: PathBuf,
    /// `float` (a model file) or `int8` (a blob: its outputs dequantized as the runtime's
    /// f32 output, `scale * (q - zero_point)`).
    pub kind: &'static str,
    pub data: String,
    pub samples: usize,
    /// The targets (and outputs) per row.
    pub n_outputs: usize,
    pub regression: RegressionMetrics,
}

/// How many of the worst outputs the text report lists.
const WORST_SHOWN: usize = 3;

impl EvalSummary {
    /// The one-line rows `demo` adds to its summary.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![(
            "eval",
            format!(
                "{} accuracy {:.4} on {} samples, {} mistakes",
                self.kind, self.accuracy, self.samples, self.mistakes
            ),
        )]
    }
}

/// Softmax of `logits`, in f64 so large logits do not overflow.
fn softmax_max(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f64 = logits.iter().map(|&v| f64::from(v - max).exp()).sum();
    if total > 0.0 {
        1.0 / total
    } else {
        f64::NAN
    }
}

/// The real values of the runtime's int8 outputs (row-major), from the runtime's own
/// `Model::dequantize`, row by row.
pub(crate) fn dequantize(model: &kiln_runtime::Model<'_>, outputs: &[i8]) -> Vec<f32> {
    let n_outputs = model.n_outputs().max(1);
    let mut real = vec![0.0f32; outputs.len()];
    for (q, out) in outputs
        .chunks_exact(n_outputs)
        .zip(real.chunks_exact_mut(n_outputs))
    {
        // The rows are the model's own outputs: their lengths are right.
        let _ = model.dequantize(q, out);
    }
    real
}

/// [`dequantize`] for an int16 model's logits.
pub(crate) fn dequantize_i16(model: &kiln_runtime::Model<'_>, outputs: &[i16]) -> Vec<f32> {
    let n_outputs = model.n_outputs().max(1);
    let mut real = vec![0.0f32; outputs.len()];
    for (q, out) in outputs
        .chunks_exact(n_outputs)
        .zip(real.chunks_exact_mut(n_outputs))
    {
        // The rows are the model's own outputs: their lengths are right.
        let _ = model.dequantize_i16(q, out);
    }
    real
}

fn float_predictions(model: &ModelFile, test: &Dataset) -> Predictions {
    let n_outputs = model.layers.last().map_or(0, |l| l.n_outputs).max(1);
    let outputs = crate::check::trainer_outputs(model, &test.features);
    let mut classes = Vec::with_capacity(test.n_samples());
    let mut confidences = Vec::with_capacity(test.n_samples());
    for logits in outputs.chunks_exact(n_outputs) {
        classes.push(crate::train::argmax(logits.iter().copied()));
        confidences.push(softmax_max(logits));
    }
    Predictions {
        classes,
        confidences,
    }
}

/// The runtime's run over `test`, and its outputs' real values (row-major).
fn blob_outputs(
    path: &Path,
    model: &kiln_runtime::Model<'_>,
    test: &Dataset,
    spec: &DataSpec,
) -> Result<(host::RuntimeRun<i32>, Vec<f32>)> {
    let raw = host::raw_inputs(test, &format!("{spec} (test set)"), model.input_frac_bits())?;
    let (n_inputs, n_outputs) = (model.n_inputs(), model.n_outputs());
    host::run_widened(model, &raw, n_inputs, n_outputs).map_err(|e| {
        EvalError {
            path: path.to_owned(),
            detail: format!("the kiln runtime failed: {e}"),
        }
        .into()
    })
}

fn blob_predictions(
    path: &Path,
    model: &kiln_runtime::Model<'_>,
    test: &Dataset,
    spec: &DataSpec,
) -> Result<Predictions> {
    let (run, real) = blob_outputs(path, model, test, spec)?;
    // Softmax of the logits' real values, as the runtime's f32 output has them.
    let confidences = real
        .chunks_exact(model.n_outputs().max(1))
        .map(softmax_max)
        .collect();
    Ok(Predictions {
        classes: run.predictions,
        confidences,
    })
}

/// Why a model of `n_inputs` inputs and `n_outputs` outputs cannot be measured on `test`'s
/// regression targets (another width or another number of targets); `None` if it can, or if
/// `test` has class labels.
pub(crate) fn regression_misfit(
    spec: &DataSpec,
    test: &Dataset,
    n_inputs: usize,
    n_outputs: usize,
) -> Option<String> {
    let Targets::Regression {
        n_outputs: n_targets,
        ..
    } = &test.targets
    else {
        return None;
    };
    if test.n_features != n_inputs {
        return Some(format!(
            "the model takes {n_inputs} inputs, but {spec} has {} features",
            test.n_features
        ));
    }
    (*n_targets != n_outputs).then(|| {
        format!(
            "the model has {n_outputs} outputs, but {spec} has {n_targets} targets per row (--targets, --autoencoder)"
        )
    })
}

/// The regression report of `outputs` (row-major, the model's real outputs) on `split`.
fn evaluate_regression(
    subject: &Subject<'_>,
    split: &Split,
    outputs: &[f32],
) -> RegressionEvalSummary {
    let test = &split.test;
    let regression = metrics::for_targets(outputs, &test.targets)
        .expect("evaluate_regression is called with regression targets");
    RegressionEvalSummary {
        command: "eval",
        model: subject.path.to_owned(),
        kind: subject.kind,
        data: split.description.clone(),
        samples: test.n_samples(),
        n_outputs: test.n_outputs(),
        regression,
    }
}

/// Refuses data the model cannot be measured on: regression targets, another width.
fn check_fit(
    path: &Path,
    spec: &DataSpec,
    test: &Dataset,
    n_inputs: usize,
    n_outputs: usize,
) -> Result<(Vec<u32>, usize), EvalError> {
    let refuse = |detail: String| EvalError {
        path: path.to_owned(),
        detail,
    };
    let Targets::Classes { labels, n_classes } = &test.targets else {
        return Err(refuse(format!(
            "{spec} has regression targets; kiln eval measures classifiers (accuracy, precision, recall)"
        )));
    };
    if test.n_features != n_inputs {
        return Err(refuse(format!(
            "the model takes {n_inputs} inputs, but {spec} has {} features",
            test.n_features
        )));
    }
    if *n_classes > n_outputs {
        return Err(refuse(format!(
            "the model has {n_outputs} outputs, but {spec} has {n_classes} classes"
        )));
    }
    Ok((labels.clone(), n_outputs))
}

/// The confusion matrix and per-class figures.
fn metrics(
    labels: &[u32],
    predicted: &[usize],
    n_classes: usize,
) -> (Vec<Vec<usize>>, Vec<ClassMetrics>) {
    let mut confusion = vec![vec![0usize; n_classes]; n_classes];
    for (&label, &class) in labels.iter().zip(predicted) {
        confusion[label as usize][class] += 1;
    }
    let classes = (0..n_classes)
        .map(|class| {
            let support: usize = confusion[class].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[class]).sum();
            let correct = confusion[class][class];
            let share = |total: usize| (total > 0).then(|| correct as f64 / total as f64);
            ClassMetrics {
                class,
                support,
                predicted,
                precision: share(predicted),
                recall: share(support),
            }
        })
        .collect();
    (confusion, classes)
}

/// The mistakes, most confident first (ties: lower row first).
fn ranked_mistakes(labels: &[u32], predictions: &Predictions) -> Vec<Mistake> {
    let mut mistakes: Vec<Mistake> = labels
        .iter()
        .zip(&predictions.classes)
        .zip(&predictions.confidences)
        .enumerate()
        .filter(|(_, ((&label, &class), _))| label as usize != class)
        .map(|(row_idx, ((&label, &class), &confidence))| Mistake {
            row_idx,
            true_class: label as usize,
            predicted_class: class,
            confidence,
        })
        .collect();
    mistakes.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.row_idx.cmp(&b.row_idx))
    });
    mistakes
}

/// Everything `eval` needs to know about the model being measured.
struct Subject<'a> {
    path: &'a Path,
    kind: &'static str,
    /// e.g. "64-128-10 relu".
    architecture: String,
}

/// Measures `predictions` on `split`, draws the pictures into `out_dir`, and summarises.
fn evaluate(
    subject: &Subject<'_>,
    spec: &DataSpec,
    split: &Split,
    labels: &[u32],
    n_classes: usize,
    predictions: &Predictions,
    out_dir: &Path,
) -> Result<EvalSummary> {
    let test = &split.test;
    let (confusion, classes) = metrics(labels, &predictions.classes, n_classes);
    let correct: usize = (0..n_classes).map(|c| confusion[c][c]).sum();
    let samples = labels.len();
    let accuracy = correct as f64 / samples.max(1) as f64;
    let mistakes = ranked_mistakes(labels, predictions);

    std::fs::create_dir_all(out_dir).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the output folder: {e}",
            out_dir.display()
        )
    })?;
    let name = subject
        .path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let title = format!(
        "{name}: {} {}, {spec}, accuracy {accuracy:.4} on {samples} samples",
        subject.kind, subject.architecture
    );
    let mut pictures = Vec::new();
    let confusion_figure = ConfusionFigure {
        title: title.clone(),
        counts: &confusion,
    };
    pictures.extend(plot::write_png_and_svg(
        &confusion_figure,
        out_dir,
        "confusion",
    )?);
    if let Some(image_shape) = plot::image_shape(spec, test.n_features) {
        let shown = &mistakes[..mistakes.len().min(MistakesFigure::MAX_SHOWN)];
        let figure = MistakesFigure {
            title,
            image_shape,
            features: &test.features,
            mistakes: shown,
        };
        pictures.extend(plot::write_png_and_svg(&figure, out_dir, "mistakes")?);
    }
    Ok(EvalSummary {
        command: "eval",
        model: subject.path.to_owned(),
        kind: subject.kind,
        data: split.description.clone(),
        samples,
        accuracy,
        mistakes: mistakes.len(),
        classes,
        confusion,
        pictures,
    })
}

fn float_architecture(model: &ModelFile) -> String {
    let widths: Vec<String> = std::iter::once(model.n_inputs)
        .chain(model.layers.iter().map(|l| l.n_outputs))
        .map(|w| w.to_string())
        .collect();
    format!("{} {}", widths.join("-"), model.config.activation)
}

/// Evaluates a float model on `split` (the data it was trained on, for `demo`).
pub fn evaluate_float(
    path: &Path,
    model: &ModelFile,
    spec: &DataSpec,
    split: &Split,
    out_dir: &Path,
) -> Result<EvalSummary> {
    let n_outputs = model.layers.last().map_or(0, |l| l.n_outputs);
    let (labels, n_classes) = check_fit(path, spec, &split.test, model.n_inputs, n_outputs)?;
    let predictions = float_predictions(model, &split.test);
    let subject = Subject {
        path,
        kind: "float",
        architecture: float_architecture(model),
    };
    evaluate(
        &subject,
        spec,
        split,
        &labels,
        n_classes,
        &predictions,
        out_dir,
    )
}

/// Measures a float regression model on `split`'s test set.
fn evaluate_float_regression(
    path: &Path,
    model: &ModelFile,
    spec: &DataSpec,
    split: &Split,
) -> Result<RegressionEvalSummary> {
    crate::model::check_targets(model, path, &spec.to_string(), &split.test.targets)?;
    if let Some(detail) =
        regression_misfit(spec, &split.test, model.n_inputs, model.task.n_outputs())
    {
        return Err(EvalError {
            path: path.to_owned(),
            detail,
        }
        .into());
    }
    let subject = Subject {
        path,
        kind: "float",
        architecture: float_architecture(model),
    };
    Ok(evaluate_regression(
        &subject,
        split,
        &crate::check::trainer_outputs(model, &split.test.features),
    ))
}

/// What `kiln eval` measured.
enum Report {
    Classifier(EvalSummary),
    Regression(RegressionEvalSummary),
}

/// Whether `bytes` start like a `.kiln` blob.
fn is_blob(bytes: &[u8]) -> bool {
    bytes.starts_with(b"KILN")
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let out_dir = args.out.clone().unwrap_or_else(|| {
        args.model
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    let bytes = std::fs::read(&args.model).map_err(|e| EvalError {
        path: args.model.clone(),
        detail: format!("cannot read the model: {e}"),
    })?;
    let summary = if is_blob(&bytes) {
        let model = kiln_runtime::Model::from_bytes(&bytes).map_err(|e| host::BlobError {
            path: args.model.clone(),
            detail: format!("the kiln runtime refuses the model blob: {e}"),
        })?;
        // A blob does not record its data: --data names it (the bundled digits by default).
        let (spec, options) = data_config(&args.data, Loss::CrossEntropy)?;
        let split = data::load(&spec, &options)?;
        let subject = Subject {
            path: &args.model,
            kind: if model.activation_bits() == 16 {
                "int16"
            } else {
                "int8"
            },
            architecture: super::quantize::runtime_architecture(&model),
        };
        if matches!(split.test.targets, Targets::Regression { .. }) {
            if let Some(detail) =
                regression_misfit(&spec, &split.test, model.n_inputs(), model.n_outputs())
            {
                return Err(EvalError {
                    path: args.model.clone(),
                    detail,
                }
                .into());
            }
            let (_, outputs) = blob_outputs(&args.model, &model, &split.test, &spec)?;
            Report::Regression(evaluate_regression(&subject, &split, &outputs))
        } else {
            let (labels, n_classes) = check_fit(
                &args.model,
                &spec,
                &split.test,
                model.n_inputs(),
                model.n_outputs(),
            )?;
            let predictions = blob_predictions(&args.model, &model, &split.test, &spec)?;
            Report::Classifier(evaluate(
                &subject,
                &spec,
                &split,
                &labels,
                n_classes,
                &predictions,
                &out_dir,
            )?)
        }
    } else {
        let model = ModelFile::load(&args.model)
            .context("kiln eval takes a kiln model file (JSON) or a .kiln blob")?;
        // By default the data the model was trained on, with its own test split.
        let (spec, options) = super::config::model_data_config(&args.data, &model)?;
        let split = data::load(&spec, &options)?;
        let regression = matches!(model.task, Task::Regression { .. })
            || matches!(split.test.targets, Targets::Regression { .. });
        if regression {
            Report::Regression(evaluate_float_regression(
                &args.model,
                &model,
                &spec,
                &split,
            )?)
        } else {
            Report::Classifier(evaluate_float(
                &args.model,
                &model,
                &spec,
                &split,
                &out_dir,
            )?)
        }
    };
    match summary {
        Report::Classifier(summary) => print_summary(&summary, args.output.json, args.output.quiet),
        Report::Regression(summary) => {
            print_regression(&summary, args.output.json, args.output.quiet)
        }
    }
}

fn print_regression(summary: &RegressionEvalSummary, json: bool, quiet: bool) -> Result<()> {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    let regression = &summary.regression;
    crate::outln!("kiln eval {}", summary.model.display());
    crate::outln!("  {:<14} {}", "data", summary.data);
    crate::outln!(
        "  {:<14} {} ({}) on {} samples, over {} outputs",
        "test error",
        regression.error_line(),
        summary.kind,
        summary.samples,
        summary.n_outputs
    );
    if summary.n_outputs > 1 {
        let worst: Vec<String> = regression
            .worst_outputs(WORST_SHOWN)
            .iter()
            .map(|(index, output)| {
                format!(
                    "#{index} MSE {} MAE {}",
                    metrics::figure(output.mse),
                    metrics::figure(output.mae)
                )
            })
            .collect();
        crate::outln!("  {:<14} {}", "worst outputs", worst.join("; "));
    }
    if let Some(line) = regression.anomaly_line() {
        crate::outln!("  {:<14} {line}", "anomaly AUC");
    }
    Ok(())
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

fn print_summary(summary: &EvalSummary, json: bool, quiet: bool) -> Result<()> {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    crate::outln!("kiln eval {}", summary.model.display());
    crate::outln!("  {:<14} {}", "data", summary.data);
    crate::outln!(
        "  {:<14} {:.4} ({}) on {} samples, {} mistakes",
        "accuracy",
        summary.accuracy,
        summary.kind,
        summary.samples,
        summary.mistakes
    );
    crate::outln!(
        "  {:<14} {:>8} {:>10} {:>10} {:>10}",
        "class",
        "support",
        "predicted",
        "precision",
        "recall"
    );
    for class in &summary.classes {
        crate::outln!(
            "  {:<14} {:>8} {:>10} {:>10} {:>10}",
            class.class,
            class.support,
            class.predicted,
            percent(class.precision),
            percent(class.recall)
        );
    }
    for path in &summary.pictures {
        crate::outln!("  {:<14} {}", "picture", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_and_recall_come_from_the_confusion_matrix() {
        let labels = [0, 0, 1, 1, 1, 2];
        let predicted = [0, 1, 1, 1, 0, 1];
        let (confusion, classes) = metrics(&labels, &predicted, 3);
        assert_eq!(confusion, vec![vec![1, 1, 0], vec![1, 2, 0], vec![0, 1, 0]]);
        assert_eq!(classes[0].precision, Some(0.5));
        assert_eq!(classes[0].recall, Some(0.5));
        assert_eq!(classes[1].precision, Some(0.5));
        assert_eq!(classes[1].recall, Some(2.0 / 3.0));
        assert_eq!(classes[2].precision, None, "class 2 is never predicted");
        assert_eq!(classes[2].recall, Some(0.0));
    }

    #[test]
    fn mistakes_are_ranked_by_confidence() {
        let predictions = Predictions {
            classes: vec![1, 0, 2, 2],
            confidences: vec![0.6, 0.99, 0.9, 0.7],
        };
        let ranked = ranked_mistakes(&[0, 0, 1, 2], &predictions);
        let rows: Vec<usize> = ranked.iter().map(|m| m.row_idx).collect();
        assert_eq!(rows, vec![2, 0], "row 1 and 3 are right");
        assert_eq!(ranked[0].true_class, 1);
        assert_eq!(ranked[0].predicted_class, 2);
    }

    #[test]
    fn softmax_of_the_winner() {
        assert!((softmax_max(&[0.0, 0.0]) - 0.5).abs() < 1e-12);
        assert!((softmax_max(&[1000.0, 0.0]) - 1.0).abs() < 1e-12);
    }
}
