//! The int8 model on the host: the `kiln-runtime` crate run over a data set,
//! and the comparison of its int8 logits with tract running the QDQ ONNX file.

use crate::check::{self, CheckError};
use crate::data::{Dataset, Targets};
use std::path::{Path, PathBuf};

/// A raw feature value the integer runtime cannot take.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: record {record}, column {column}: {}", if *.frac_bits == 0 {
    format!("this int8 model was quantized from integer data and takes integer raw values, got {value} (quantize it from data like this to give it fraction bits)")
} else {
    format!("{value} times 2^{frac_bits} does not fit the runtime's 32-bit raw input")
})]
pub struct RawValueError {
    /// The data set, as named on the command line.
    pub source_name: String,
    /// 0-based sample index within the set that was converted.
    pub record: usize,
    /// 0-based feature column.
    pub column: usize,
    pub value: f32,
    /// The model's input fraction bits.
    pub frac_bits: u8,
}

/// A `.kiln` blob that the runtime refuses, or that does not fit the data.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct BlobError {
    pub path: PathBuf,
    pub detail: String,
}

/// The raw features as the device would feed them: `round(x * 2^frac_bits)` as i32 (see
/// [`super::math::raw_input`]); with 0 fraction bits every value must be an integer.
/// `source_name` names the data in the error.
pub fn raw_inputs(
    dataset: &Dataset,
    source_name: &str,
    frac_bits: u8,
) -> Result<Vec<i32>, RawValueError> {
    let n_features = dataset.n_features.max(1);
    dataset
        .features
        .iter()
        .enumerate()
        .map(|(idx, &value)| {
            let raw = super::math::raw_input(value, frac_bits)
                .filter(|_| frac_bits > 0 || value.fract() == 0.0);
            if let Some(raw) = raw {
                Ok(raw)
            } else {
                Err(RawValueError {
                    source_name: source_name.to_owned(),
                    record: idx / n_features,
                    column: idx % n_features,
                    value,
                    frac_bits,
                })
            }
        })
        .collect()
}

/// What the runtime computed for every sample: int8 logits, or int16 for a 16x8 model.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeRun<T = i8> {
    /// Row-major logits, `n_outputs` per sample.
    pub logits: Vec<T>,
    /// The runtime's argmax per sample.
    pub predictions: Vec<usize>,
    pub n_outputs: usize,
}

/// The data holds each sample in CHW order, the runtime takes HWC: for each HWC position,
/// the CHW index it reads. `None` when the two are the same (one channel, or a vector).
pub(crate) fn hwc_permutation(
    model: &kiln_runtime::Model<'_>,
    n_inputs: usize,
) -> Option<Vec<usize>> {
    model
        .layer(0)
        .map(|layer| {
            let [h, w, c] = layer.input_shape;
            super::hwc_order(crate::nn::shape::Shape::new(h, w, c))
        })
        .filter(|order| order.len() == n_inputs && order.iter().enumerate().any(|(i, &j)| i != j))
}

/// `raw` (row-major CHW samples, `n_inputs` each) in the order a device passes to
/// `Model::run`: HWC, as [`run_runtime`] feeds it.
pub fn device_order(model: &kiln_runtime::Model<'_>, raw: &[i32], n_inputs: usize) -> Vec<i32> {
    match hwc_permutation(model, n_inputs) {
        Some(order) => raw
            .chunks_exact(n_inputs.max(1))
            .flat_map(|row| order.iter().map(move |&chw| row[chw]))
            .collect(),
        None => raw.to_vec(),
    }
}

/// Runs the runtime on every row of `raw` (row-major, `n_inputs` per row).
pub fn run_runtime(
    model: &kiln_runtime::Model<'_>,
    raw: &[i32],
    n_inputs: usize,
    n_outputs: usize,
) -> Result<RuntimeRun, kiln_runtime::Error> {
    run_rows(model, raw, (n_inputs, n_outputs), |row, scratch, out| {
        model.run(row, scratch, out)
    })
}

/// [`run_runtime`] for a model with int16 activations (`Model::run_i16`).
pub fn run_runtime_i16(
    model: &kiln_runtime::Model<'_>,
    raw: &[i32],
    n_inputs: usize,
    n_outputs: usize,
) -> Result<RuntimeRun<i16>, kiln_runtime::Error> {
    run_rows(model, raw, (n_inputs, n_outputs), |row, scratch, out| {
        model.run_i16(row, scratch, out)
    })
}

/// `run` on every row of `raw`, each reordered from CHW to the device's HWC in one reused
/// buffer, with one scratch.
fn run_rows<T: Copy + Default>(
    model: &kiln_runtime::Model<'_>,
    raw: &[i32],
    (n_inputs, n_outputs): (usize, usize),
    mut run: impl FnMut(&[i32], &mut [i8], &mut [T]) -> Result<usize, kiln_runtime::Error>,
) -> Result<RuntimeRun<T>, kiln_runtime::Error> {
    let mut scratch = vec![0i8; model.scratch_len()];
    let n_samples = raw.len().checked_div(n_inputs).unwrap_or(0);
    let mut logits = vec![T::default(); n_samples * n_outputs];
    let mut predictions = Vec::with_capacity(n_samples);
    let order = hwc_permutation(model, n_inputs);
    let mut hwc = vec![0i32; n_inputs];
    for (row, out) in raw
        .chunks_exact(n_inputs.max(1))
        .zip(logits.chunks_exact_mut(n_outputs.max(1)))
    {
        let row = match &order {
            Some(order) => {
                for (value, &chw) in hwc.iter_mut().zip(order) {
                    *value = row[chw];
                }
                &hwc
            }
            None => row,
        };
        predictions.push(run(row, &mut scratch, out)?);
    }
    Ok(RuntimeRun {
        logits,
        predictions,
        n_outputs,
    })
}

/// The runtime on every row of `raw`, for a model of either width: its logits widened to
/// `i32` (int8, or int16 for a 16x8 model) and their real values (`Model::dequantize`).
pub fn run_widened(
    model: &kiln_runtime::Model<'_>,
    raw: &[i32],
    n_inputs: usize,
    n_outputs: usize,
) -> Result<(RuntimeRun<i32>, Vec<f32>), kiln_runtime::Error> {
    // Each row's real values, by the model's own dequantization.
    fn real_values<T>(
        logits: &[T],
        width: usize,
        dequantize: impl Fn(&[T], &mut [f32]) -> Result<(), kiln_runtime::Error>,
    ) -> Result<Vec<f32>, kiln_runtime::Error> {
        let mut real = vec![0.0f32; logits.len()];
        for (row, out) in logits.chunks_exact(width).zip(real.chunks_exact_mut(width)) {
            dequantize(row, out)?;
        }
        Ok(real)
    }
    let width = n_outputs.max(1);
    let (logits, predictions, real) = if model.activation_bits() == 16 {
        let run = run_runtime_i16(model, raw, n_inputs, n_outputs)?;
        let real = real_values(&run.logits, width, |q, out| model.dequantize_i16(q, out))?;
        let logits = run.logits.into_iter().map(i32::from).collect();
        (logits, run.predictions, real)
    } else {
        let run = run_runtime(model, raw, n_inputs, n_outputs)?;
        let real = real_values(&run.logits, width, |q, out| model.dequantize(q, out))?;
        let logits = run.logits.into_iter().map(i32::from).collect();
        (logits, run.predictions, real)
    };
    Ok((
        RuntimeRun {
            logits,
            predictions,
            n_outputs,
        },
        real,
    ))
}

/// The fraction of predictions equal to the labels (classification only).
pub fn accuracy(predictions: &[usize], targets: &Targets) -> Option<f64> {
    match targets {
        Targets::Classes { labels, .. } => {
            let correct = predictions
                .iter()
                .zip(labels)
                .filter(|(&p, &l)| p == l as usize)
                .count();
            Some(correct as f64 / labels.len().max(1) as f64)
        }
        Targets::Regression { .. } => None,
    }
}

/// The index of the first maximum, like the runtime's argmax.
pub fn argmax_i8<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (idx, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = idx;
        }
    }
    best
}

/// The largest int8 logit difference `kiln quantize` accepts between the runtime and tract.
pub const MAX_LSB_DIFF: u32 = 1;

/// The runtime against tract on the QDQ ONNX file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TractComparison {
    pub qdq_path: PathBuf,
    pub n_samples: usize,
    /// Samples whose whole int8 logit row is identical.
    pub identical: usize,
    /// The largest |runtime - tract| over every int8 logit.
    pub max_lsb_diff: u32,
    /// Samples whose argmax agrees.
    pub argmax_agreement: usize,
    /// Whether the outputs are class scores, whose argmax must agree too. A regression's
    /// outputs are values: a 1 LSB difference may move the largest, and that is no error.
    pub classifier: bool,
    /// When the outputs differ by more than [`MAX_LSB_DIFF`]: each layer alone, fed the
    /// runtime's own int8 input ([`compare_layers_with_tract`]), its largest difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_max_lsb_diff: Option<Vec<u32>>,
}

impl TractComparison {
    /// Every output within [`MAX_LSB_DIFF`], or else every layer alone within it (a deep
    /// network's rounding differences grow from layer to layer); a classifier's argmax must
    /// agree on every sample either way.
    pub fn passed(&self) -> bool {
        let layers_agree = self
            .layer_max_lsb_diff
            .as_ref()
            .is_some_and(|layers| layers.iter().all(|&d| d <= MAX_LSB_DIFF));
        (self.max_lsb_diff <= MAX_LSB_DIFF || layers_agree)
            && (!self.classifier || self.argmax_agreement == self.n_samples)
    }

    /// The largest difference of any layer alone, when they were compared.
    pub fn layer_max(&self) -> Option<u32> {
        self.layer_max_lsb_diff
            .as_ref()
            .map(|layers| layers.iter().copied().max().unwrap_or(0))
    }
}

/// Runs tract on the QDQ file over `test` (raw f32 features, each sample of shape
/// `sample_dims` at the ONNX input) and compares its `logits_q` (output 1) with the
/// runtime's int8 logits.
pub fn compare_with_tract<T>(
    qdq_path: &Path,
    test: &Dataset,
    sample_dims: &[usize],
    runtime: &RuntimeRun<T>,
) -> Result<TractComparison, CheckError>
where
    T: tract_onnx::prelude::Datum + Copy + PartialOrd + Into<i32>,
{
    let n_outputs = runtime.n_outputs;
    let tract: Vec<T> =
        check::tract_output::<T>(qdq_path, &test.features, sample_dims, n_outputs, 1)?;
    let mut identical = 0;
    let mut max_lsb_diff = 0u32;
    let mut argmax_agreement = 0;
    for ((ours, theirs), &prediction) in runtime
        .logits
        .chunks_exact(n_outputs)
        .zip(tract.chunks_exact(n_outputs))
        .zip(&runtime.predictions)
    {
        identical += usize::from(ours == theirs);
        for (&a, &b) in ours.iter().zip(theirs) {
            max_lsb_diff = max_lsb_diff.max((a.into() - b.into()).unsigned_abs());
        }
        argmax_agreement += usize::from(argmax_i8(theirs) == prediction);
    }
    Ok(TractComparison {
        qdq_path: qdq_path.to_owned(),
        n_samples: runtime.predictions.len(),
        identical,
        max_lsb_diff,
        argmax_agreement,
        classifier: matches!(test.targets, Targets::Classes { .. }),
        layer_max_lsb_diff: None,
    })
}

/// The logits as CSV: one row per sample, no header.
pub fn logits_csv<T: std::fmt::Display>(run: &RuntimeRun<T>) -> String {
    let mut text = String::with_capacity(run.logits.len() * 5);
    for row in run.logits.chunks_exact(run.n_outputs.max(1)) {
        let fields: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    text
}

/// Each layer of an MLP alone, fed the runtime's own int8 input to it: the largest difference
/// between the runtime's int8 output and tract's on that layer's QDQ graph, layer by layer.
/// A 1 LSB rounding difference in one layer can grow through the next ones, so a deep network
/// may differ by more at its output while every layer agrees within 1 LSB; this tells the two
/// apart. `None` for a layer graph (convolutions), which this does not cover.
pub fn compare_layers_with_tract(
    quantized: &super::Quantized,
    qdq_path: &Path,
    raw: &[i32],
) -> Result<Option<Vec<u32>>, CheckError> {
    use kiln_runtime::encode::{self, AffineSpec, InputStageSpec, LayerSpec, ModelSpec};
    let super::Qdq::Mlp(mlp) = &quantized.qdq else {
        return Ok(None);
    };
    let layer_err = |layer: usize, detail: String| CheckError::Run {
        path: qdq_path.to_owned(),
        detail: format!("layer {layer} alone: {detail}"),
    };
    let model = kiln_runtime::Model::from_bytes(&quantized.blob)
        .map_err(|e| layer_err(0, format!("the runtime refuses the blob: {e}")))?;
    let n_inputs = model.n_inputs().max(1);
    // The runtime's int8 input, sample after sample: what layer 0 reads.
    let mut values: Vec<i8> = vec![0; raw.len()];
    for (raw, q) in raw
        .chunks_exact(n_inputs)
        .zip(values.chunks_exact_mut(n_inputs))
    {
        model
            .quantize_input(raw, q)
            .map_err(|e| layer_err(0, e.to_string()))?;
    }
    let mut input = mlp.input;
    let mut max_diffs = Vec::with_capacity(mlp.layers.len());
    for (idx, (qdq_layer, node)) in mlp.layers.iter().zip(&quantized.spec.nodes).enumerate() {
        let LayerSpec::Dense(dense) = &node.layer else {
            return Ok(None);
        };
        let (n_in, n_out) = (qdq_layer.n_inputs, qdq_layer.n_outputs);
        // The runtime: this layer as a one-layer blob, run from its int8 input.
        let spec = ModelSpec {
            activations: kiln_runtime::encode::Activations::Int8,
            input: InputStageSpec {
                zero_point: input.zero_point,
                features: vec![AffineSpec {
                    offset: 0,
                    multiplier: kiln_runtime::fixed::MULTIPLIER_MIN,
                    shift: 38,
                }],
                frac_bits: 0,
            },
            input_shape: [1, 1, dense.n_inputs],
            nodes: encode::chain([LayerSpec::Dense(dense.clone())]),
            output_scale: qdq_layer.output.scale,
            output_zero_point: qdq_layer.output.zero_point,
        };
        let blob = encode::encode(&spec).map_err(|e| layer_err(idx, e.to_string()))?;
        let layer =
            kiln_runtime::Model::from_bytes(&blob).map_err(|e| layer_err(idx, e.to_string()))?;
        let mut scratch = vec![0i8; layer.scratch_len()];
        let mut outputs = vec![0i8; values.len() / n_in.max(1) * n_out];
        for (x, y) in values
            .chunks_exact(n_in)
            .zip(outputs.chunks_exact_mut(n_out))
        {
            layer
                .run_quantized(x, &mut scratch, y)
                .map_err(|e| layer_err(idx, e.to_string()))?;
        }
        // tract: the same layer's QDQ graph, fed the int8 input as the reals it stands for.
        let one = kiln_onnx::qdq::QdqMlp {
            int16: false,
            input_frac_bits: 0,
            normalization: kiln_onnx::mlp::InputNormalization::None,
            input,
            layers: vec![qdq_layer.clone()],
        };
        let options = kiln_onnx::mlp::MlpExportOptions {
            opset: kiln_onnx::builder::MIN_OPSET,
            with_probabilities: false,
            producer: kiln_onnx::builder::Producer {
                name: "kiln".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            doc_string: String::new(),
            metadata: Vec::new(),
        };
        let proto = kiln_onnx::qdq::qdq_mlp_to_model(&one, &options)
            .map_err(|e| layer_err(idx, e.to_string()))?;
        let reals: Vec<f32> = values
            .iter()
            .map(|&q| input.scale * (f32::from(q) - f32::from(input.zero_point)))
            .collect();
        let theirs: Vec<i8> = check::tract_output_of_bytes(
            &kiln_onnx::mlp::encode_model(&proto),
            qdq_path,
            &reals,
            &[n_in],
            n_out,
            1,
        )?;
        let max_diff = outputs
            .iter()
            .zip(&theirs)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).unsigned_abs())
            .max()
            .unwrap_or(0);
        max_diffs.push(max_diff);
        values = outputs;
        input = qdq_layer.output;
    }
    Ok(Some(max_diffs))
}
