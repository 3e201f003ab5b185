//! `kiln check`: runs an exported ONNX file with tract, an independent engine,
//! and compares it with the trainer's own forward pass, sample for sample.

use crate::data::Dataset;
use crate::data::Targets;
use crate::model::ModelFile;
use crate::train::argmax;
use nalgebra::DMatrix;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// The absolute part of the difference `kiln check` accepts between tract and the trainer; the
/// relative part is [`crate::import::RELATIVE_TOLERANCE`] of the value (a regression output of
/// 100 carries f32 summation-order rounding of about 1e-4 by itself).
pub const MAX_ABS_DIFF: f32 = 1e-4;

/// Samples per tract call; the last call is shorter, which exercises the dynamic batch.
const CHUNK_ROWS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: tract cannot load the ONNX file: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("{path}: tract failed to run the model: {detail}")]
    Run { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Mismatch { path: PathBuf, detail: String },
    #[error("{path}: the model outputs {found} values per sample, expected {expected}")]
    Shape {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
}

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckReport {
    pub onnx_path: PathBuf,
    pub n_samples: usize,
    pub max_abs_diff: f32,
    /// The largest difference in units of `MAX_ABS_DIFF + RELATIVE_TOLERANCE |trainer|`: the
    /// file passes at 1 or below.
    pub max_tolerance_ratio: f64,
    /// Samples whose argmax agrees (classification only).
    pub argmax_agreements: Option<usize>,
    /// Accuracy of the ONNX outputs on the labels (classification only).
    pub onnx_accuracy: Option<f64>,
    pub trainer_accuracy: Option<f64>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.max_tolerance_ratio <= 1.0
            && self
                .argmax_agreements
                .is_none_or(|agree| agree == self.n_samples)
    }
}

/// The trainer's outputs for raw features: row-major, n_samples x n_outputs.
pub fn trainer_outputs(model: &ModelFile, raw_features: &[f32]) -> Vec<f32> {
    forward_rows(model, &model.network(), raw_features, false)
}

/// A bound on the magnitude of the sums behind each output (row-major, as
/// [`trainer_outputs`]): the network of absolute weights on the absolute normalized inputs
/// ([`crate::nn::network::Network::magnitude_network`]). An output near 0 that cancels sums
/// of 1000 carries the rounding of 1000, which a tolerance relative to the output misses.
pub fn trainer_magnitudes(model: &ModelFile, raw_features: &[f32]) -> Vec<f32> {
    forward_rows(
        model,
        &model.network().magnitude_network(),
        raw_features,
        true,
    )
}

fn forward_rows(
    model: &ModelFile,
    network: &crate::nn::network::Network<f32>,
    raw_features: &[f32],
    absolute: bool,
) -> Vec<f32> {
    let n_features = model.n_inputs;
    let mut normalized = raw_features.to_vec();
    for row in normalized.chunks_exact_mut(n_features) {
        model.normalization.apply_row(row);
        if absolute {
            row.iter_mut().for_each(|v| *v = v.abs());
        }
    }
    network_outputs(network, &normalized)
}

/// `network` on normalized features (row-major, `n_inputs` per sample), in chunks of
/// samples: its outputs, row-major `n_samples x n_outputs`.
pub fn network_outputs(network: &crate::nn::network::Network<f32>, features: &[f32]) -> Vec<f32> {
    let n_features = network.n_inputs().max(1);
    let n_samples = features.len() / n_features;
    let mut outputs = Vec::with_capacity(n_samples * network.n_outputs());
    for start in (0..n_samples).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(n_samples);
        let input = DMatrix::from_column_slice(
            n_features,
            end - start,
            &features[start * n_features..end * n_features],
        );
        // One column per sample, so column-major storage is sample-major.
        outputs.extend_from_slice(network.forward(&input).as_slice());
    }
    outputs
}

/// Runs the ONNX file with tract on raw features, each sample of shape `sample_dims` (the
/// ONNX input's dimensions after the batch: `[n_features]`, or `[c, h, w]`); returns its
/// first output (`logits`), row-major.
pub fn tract_outputs(
    path: &Path,
    raw_features: &[f32],
    sample_dims: &[usize],
    n_outputs: usize,
) -> Result<Vec<f32>, CheckError> {
    tract_output::<f32>(path, raw_features, sample_dims, n_outputs, 0)
}

/// Runs the ONNX file with tract on raw f32 features (each sample of shape `sample_dims`)
/// and returns its output number `output_idx`, of element type `T`, row-major (`n_outputs`
/// values per sample).
pub fn tract_output<T: Datum + Copy>(
    path: &Path,
    raw_features: &[f32],
    sample_dims: &[usize],
    n_outputs: usize,
    output_idx: usize,
) -> Result<Vec<T>, CheckError> {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(load_error(path))?;
    run_tract(
        model,
        path,
        raw_features,
        sample_dims,
        n_outputs,
        output_idx,
    )
}

/// [`tract_output`] of an ONNX model held in memory; `label` names it in errors.
pub fn tract_output_of_bytes<T: Datum + Copy>(
    bytes: &[u8],
    label: &Path,
    raw_features: &[f32],
    sample_dims: &[usize],
    n_outputs: usize,
    output_idx: usize,
) -> Result<Vec<T>, CheckError> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(load_error(label))?;
    run_tract(
        model,
        label,
        raw_features,
        sample_dims,
        n_outputs,
        output_idx,
    )
}

/// tract's error on loading or optimizing `path`, as a [`CheckError::Load`].
fn load_error(path: &Path) -> impl Fn(TractError) -> CheckError + '_ {
    move |e| CheckError::Load {
        path: path.to_owned(),
        detail: format!("{e:#}"),
    }
}

/// Optimizes and runs a loaded model over the samples, chunk by chunk.
fn run_tract<T: Datum + Copy>(
    model: InferenceModel,
    path: &Path,
    raw_features: &[f32],
    sample_dims: &[usize],
    n_outputs: usize,
    output_idx: usize,
) -> Result<Vec<T>, CheckError> {
    let n_features: usize = sample_dims.iter().product();
    let run_err = |e: TractError| CheckError::Run {
        path: path.to_owned(),
        detail: format!("{e:#}"),
    };
    // The file keeps its symbolic batch dimension N, so one plan serves every chunk size.
    let plan = model
        .into_optimized()
        .and_then(|model| model.into_runnable())
        .map_err(load_error(path))?;
    let n_samples = raw_features.len() / n_features;
    let mut outputs = Vec::with_capacity(n_samples * n_outputs);
    for start in (0..n_samples).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(n_samples);
        let dims: Vec<usize> = std::iter::once(end - start)
            .chain(sample_dims.iter().copied())
            .collect();
        let input = Tensor::from_shape(&dims, &raw_features[start * n_features..end * n_features])
            .map_err(run_err)?;
        let result = plan.run(tvec!(input.into())).map_err(run_err)?;
        let Some(output) = result.get(output_idx) else {
            return Err(CheckError::Run {
                path: path.to_owned(),
                detail: format!("the model has no output number {output_idx}"),
            });
        };
        let view = output.try_as_plain_ram().map_err(run_err)?;
        let values = view.as_slice::<T>().map_err(run_err)?;
        if values.len() != (end - start) * n_outputs {
            return Err(CheckError::Shape {
                path: path.to_owned(),
                found: values.len() / (end - start).max(1),
                expected: n_outputs,
            });
        }
        outputs.extend_from_slice(values);
    }
    Ok(outputs)
}

/// The values per sample of a graph input or output: the product of its fixed dimensions
/// after the batch one (`None` if it is not a tensor with a shape, or a dimension is symbolic).
fn declared_width(info: &kiln_onnx::proto::ValueInfoProto) -> Option<usize> {
    use kiln_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
    let Some(type_proto::Value::TensorType(tensor)) = info.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = &tensor.shape.as_ref()?.dim;
    dims.iter()
        .skip(1)
        .try_fold(1usize, |acc, d| match d.value {
            Some(Value::DimValue(n)) if n > 0 => acc.checked_mul(n as usize),
            _ => None,
        })
}

/// Refuses an ONNX file whose declared input or first output width is not the model file's,
/// before tract runs it (tract's own message names symbols, not the two files).
fn check_widths(onnx_path: &Path, model: &ModelFile) -> Result<(), CheckError> {
    let Ok(bytes) = std::fs::read(onnx_path) else {
        return Ok(()); // tract reports the unreadable file
    };
    let Ok(proto) = kiln_onnx::mlp::decode_model(&bytes) else {
        return Ok(());
    };
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    let widths = [
        ("inputs", graph.input.first(), model.n_inputs),
        ("outputs", graph.output.first(), model.task.n_outputs()),
    ];
    for (what, info, expected) in widths {
        if let Some(found) = info.and_then(declared_width) {
            if found != expected {
                return Err(CheckError::Mismatch {
                    path: onnx_path.to_owned(),
                    detail: format!(
                        "the ONNX file has {found} {what} per sample, but the model file has {expected}: is it this model's file?"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Compares tract's outputs for `onnx_path` with the trainer's on `test`.
/// Returns the report and the trainer's outputs (row-major).
pub fn check(
    onnx_path: &Path,
    model: &ModelFile,
    test: &Dataset,
) -> Result<(CheckReport, Vec<f32>), CheckError> {
    check_widths(onnx_path, model)?;
    let n_outputs = model.task.n_outputs();
    let expected = trainer_outputs(model, &test.features);
    let actual = tract_outputs(
        onnx_path,
        &test.features,
        &crate::export::onnx_sample_dims(model),
        n_outputs,
    )?;
    let max_abs_diff = expected
        .iter()
        .zip(&actual)
        .map(|(e, a)| (e - a).abs())
        .fold(0.0f32, |acc, d| {
            if d.is_nan() {
                f32::INFINITY
            } else {
                acc.max(d)
            }
        });
    let magnitudes = trainer_magnitudes(model, &test.features);
    let max_tolerance_ratio = expected
        .iter()
        .zip(&actual)
        .zip(&magnitudes)
        .map(|((&e, &a), &m)| {
            crate::import::tolerance_ratio(
                f64::from(a),
                f64::from(e),
                f64::from(MAX_ABS_DIFF),
                f64::from(m),
            )
        })
        .fold(0.0f64, f64::max);
    let (argmax_agreements, onnx_accuracy, trainer_accuracy) = match &test.targets {
        Targets::Classes { labels, .. } => {
            let mut agree = 0;
            let mut onnx_correct = 0;
            let mut trainer_correct = 0;
            for ((e, a), &label) in expected
                .chunks_exact(n_outputs)
                .zip(actual.chunks_exact(n_outputs))
                .zip(labels)
            {
                let (e_class, a_class) = (argmax(e.iter().copied()), argmax(a.iter().copied()));
                agree += usize::from(e_class == a_class);
                onnx_correct += usize::from(a_class == label as usize);
                trainer_correct += usize::from(e_class == label as usize);
            }
            let n = labels.len().max(1) as f64;
            (
                Some(agree),
                Some(onnx_correct as f64 / n),
                Some(trainer_correct as f64 / n),
            )
        }
        Targets::Regression { .. } => (None, None, None),
    };
    let report = CheckReport {
        onnx_path: onnx_path.to_owned(),
        n_samples: test.n_samples(),
        max_abs_diff,
        max_tolerance_ratio,
        argmax_agreements,
        onnx_accuracy,
        trainer_accuracy,
    };
    Ok((report, expected))
}

/// Where the reference arrays for `onnx_path` go: `<stem>.input.npy` and
/// `<stem>.logits.npy` beside the file. The CI oracle reads them.
pub fn reference_paths(onnx_path: &Path) -> (PathBuf, PathBuf) {
    let stem = onnx_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        onnx_path.with_file_name(format!("{stem}.input.npy")),
        onnx_path.with_file_name(format!("{stem}.logits.npy")),
    )
}

/// Saves the raw inputs and the trainer's outputs beside the ONNX file.
pub fn save_reference(
    onnx_path: &Path,
    test: &Dataset,
    trainer_outputs: &[f32],
) -> std::io::Result<(PathBuf, PathBuf)> {
    let (input_path, logits_path) = reference_paths(onnx_path);
    let n_samples = test.n_samples();
    crate::npy::write_f32(&input_path, n_samples, test.n_features, &test.features)?;
    crate::npy::write_f32(
        &logits_path,
        n_samples,
        trainer_outputs.len() / n_samples.max(1),
        trainer_outputs,
    )?;
    Ok((input_path, logits_path))
}
