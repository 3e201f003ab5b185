//! `kiln inspect`: what a model costs on a device (parameters, multiply-accumulates,
//! flash and scratch RAM as f32 and as int8), and whether it fits a flash and RAM budget.
//!
//! The file is recognised by its content: a kiln model file (JSON with
//! `"format": "kiln-model"`), an ONNX file (float, or QDQ with int8 weights), or a
//! `.kiln` blob (magic `KILN`). Sizes follow `docs/blob-format.md`: an int8 layer is
//! its blob section, the int8 scratch is the planned arena, for a chain of dense layers
//! `max(n_in + n_out)` bytes.

use super::args::InspectArgs;
use super::config::{inspect_config, InspectConfig, UsageError};
use super::device_figures::{device_figures, DeviceFigures, Geometry};
use crate::data::Normalization;
use crate::model::{ModelFile, FORMAT_NAME};
use anyhow::Result;
use kiln_onnx::proto::{tensor_proto::DataType, GraphProto, ModelProto, NodeProto, TensorProto};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What every input is expected to be, for error messages.
const EXPECTED: &str =
    "expected a kiln model file (JSON), an ONNX MLP (Gemm layers) or a .kiln model blob";

/// What the per-core flash and RAM leave out.
const DEVICE_NOTE: &str = "flash per core is the model blob + kiln-runtime's .text, RAM the int8 \
     buffers + the Model value + the stack of one inference; the application's own code, its \
     vector table and stack beyond inference are not included";

/// Printed under the estimate table and stored in the JSON report.
/// Why a layer graph with convolutions or pooling gets no estimate.
const INT16_BASIS: &str = "an int16 model (16x8) is not estimated yet: the per-layer model is \
     fitted to the int8 kernels' counts";
const GRAPH_BASIS: &str = "a layer graph is estimated from its .kiln blob, which gives every \
     layer's shapes: quantize the model (`kiln quantize`) and inspect the blob";

const ESTIMATE_BASIS: &str = "estimated per layer (whole blocks of four rows, the rows after \
     them, per-row and per-layer work) and per input feature of the model's input-stage loop, \
     with coefficients fitted to exact QEMU counts of `kiln sim` on calibration MLPs \
     (`cargo xtask calibrate`); `cargo xtask firmware` holds it within 10% of `kiln sim` on \
     MNIST 784-128-10, digits 64-128-10 and the 640-input autoencoder; instructions, not cycles";

const GRAPH_ESTIMATE_BASIS: &str = "estimated per layer by kind and shapes (a convolution as a \
     dense layer per output pixel over its im2col column, plus gathering the column; depthwise \
     per MAC and pixel; pooling per window tap and output value; each with a cost \
     per layer; dense layers as in an MLP) and per input feature of the model's input-stage \
     loop, with coefficients fitted to exact QEMU counts of `kiln sim` on calibration MLPs and \
     CNNs (`cargo xtask calibrate`); instructions, not cycles";

/// A model file or an ONNX file has no input stage yet: which loop the estimate assumes.
const UNQUANTIZED_INPUT_NOTE: &str = "not a .kiln blob, so its input stage is not known yet: \
     estimated as a byte table (integer data such as pixels) or per feature (standardize); \
     real-valued data under a shared scale gets the cheaper identity loop when quantized";

/// Why a table activation is not in the estimate.
const TABLE_ACTIVATION_NOTE: &str = "the calibration networks have relu and identity layers; a \
     table activation (tanh, sigmoid, leaky relu) adds a lookup per output that the estimate \
     does not count";

/// A file `kiln inspect` cannot read as a model; reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct InspectError {
    pub path: PathBuf,
    pub detail: String,
}

/// The int8 model does not fit the given budget; reported with exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{path}: the int8 model does not fit {detail}")]
pub struct DoesNotFit {
    pub path: PathBuf,
    pub detail: String,
}

/// How an int8 layer applies its activation (`docs/quantization.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Int8Kind {
    Identity,
    Relu,
    /// tanh, sigmoid, leaky relu: a 256-entry table.
    Table,
}

/// One dense layer as read from the file.
#[derive(Debug, Clone)]
struct Layer {
    n_inputs: usize,
    n_outputs: usize,
    activation: String,
    int8_kind: Int8Kind,
    weights: usize,
    biases: usize,
    /// The layer's section length in a blob.
    blob_section: Option<usize>,
    /// A layer graph's layer (from a blob): its shapes and type, e.g. `8x8x1 -> 8x8x8 conv3x3`,
    /// and its multiply-accumulates. `None` for a dense layer of an MLP.
    graph: Option<(String, usize)>,
    /// A layer graph's layer kind and shapes (from a blob), which its instructions follow.
    geometry: Option<Geometry>,
    /// Whether the blob's plan computes the layer in place (its output over its input), and
    /// the temporary it takes in the arena.
    in_place: Option<usize>,
}

/// A model reduced to what its cost depends on.
#[derive(Debug, Clone)]
struct Summary {
    format: &'static str,
    format_description: String,
    layers: Vec<Layer>,
    n_inputs: usize,
    normalization: String,
    /// f32 values of the input normalization (part of the f32 flash).
    normalization_values: usize,
    /// Entries of the blob's input stage: 1 shared, or one per feature.
    input_entries: usize,
    /// The input stage's loop: a blob's own, `None` for a model before quantization.
    input_stage: Option<kiln_runtime::InputStage>,
    /// The blob's length, for a blob.
    blob_len: Option<usize>,
    /// The blob's planned arena (its scratch), for a blob.
    arena: Option<usize>,
    /// What the arena would be with every layer's input and output apart (a blob's values and
    /// reads planned again without computing in place).
    layer_by_layer: Option<usize>,
    /// The fast kernels' workspace past the arena (`Model::fast_scratch_len` minus
    /// `scratch_len`), for a blob; otherwise from the widest dense layer.
    workspace: Option<usize>,
    /// Whether the raw inputs are bytes (`Model::run_bytes`), when the data says so; `None`:
    /// bytes exactly when the input stage is the byte table.
    byte_input: Option<bool>,
    /// int16 activations (a 16x8 blob): no instruction estimate yet.
    int16: bool,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct LayerReport {
    index: usize,
    /// "dense", "conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d" or "add".
    kind: &'static str,
    /// `[h, w, c]` of the layer's input and output (`[1, 1, n]` for a feature vector).
    input_shape: [usize; 3],
    output_shape: [usize; 3],
    /// `[kh, kw]` (`[0, 0]` for a dense layer).
    kernel: [usize; 2],
    n_inputs: usize,
    n_outputs: usize,
    shape: String,
    activation: String,
    weights: usize,
    biases: usize,
    parameters: usize,
    macs: usize,
    f32_bytes: usize,
    int8_bytes: usize,
    /// The blob's plan writes the layer's output over its input; with the bytes of the
    /// temporary it takes in the arena. `None`: input and output apart.
    in_place_temp_bytes: Option<usize>,
}

#[derive(Debug, Serialize)]
struct FlashReport {
    /// Parameters and normalization values as 4-byte floats.
    f32_bytes: usize,
    f32_normalization_bytes: usize,
    /// The blob's length (for a blob) or its length by the blob-format formula.
    int8_bytes: usize,
    /// "blob length" or "estimate".
    int8_source: &'static str,
}

#[derive(Debug, Serialize)]
struct RamReport {
    /// The ping-pong activation buffer as 4-byte floats.
    f32_scratch_bytes: usize,
    /// The buffer plan's arena (a blob's), or the ping-pong buffer: max over layers of
    /// n_in + n_out bytes.
    int8_scratch_bytes: usize,
    /// A blob's graph planned with every layer's input and output apart; equal to the scratch
    /// unless some layers compute in place.
    int8_layer_by_layer_bytes: Option<usize>,
    /// The raw input: n_inputs bytes for `Model::run_bytes` (a byte-table input stage: pixels,
    /// 8-bit readings), else n_inputs i32 values for `Model::run`.
    int8_input_bytes: usize,
    /// "u8 (Model::run_bytes)" or "i32 (Model::run)".
    int8_input_type: &'static str,
    /// The fast kernels' workspace past the scratch: counted on the cores whose kernels take
    /// it (`device`), where the instruction estimate assumes it.
    int8_workspace_bytes: usize,
    /// `Model::run`'s logits, n_outputs i8 values.
    int8_logits_bytes: usize,
    /// Scratch + input + logits: the int8 buffers; `device` adds the workspace where the
    /// core's kernels take it, the Model value and the inference stack per core.
    int8_total_bytes: usize,
}

#[derive(Debug, Serialize)]
struct Totals {
    parameters: usize,
    macs: usize,
    flash: FlashReport,
    ram: RamReport,
    /// The inference stack of the `--core` core, or the largest over the cores.
    peak_stack_bytes: u64,
    peak_stack: String,
}

/// The model on each core: what the firmware's flash and RAM hold for it.
#[derive(Debug, Serialize)]
struct DeviceReport {
    /// "mlp" when every layer is dense (the dense-only firmware), else "graph".
    runtime_build: &'static str,
    /// How the figures were measured (device_figures.json).
    source: &'static str,
    /// What flash and RAM leave out.
    note: &'static str,
    cores: Vec<CoreFootprint>,
}

#[derive(Debug, Clone, Serialize)]
struct CoreFootprint {
    core: &'static str,
    target: &'static str,
    /// The int8 model as `flash.int8_bytes`.
    model_blob_bytes: u64,
    /// kiln-runtime's code in the `runtime_build` firmware.
    runtime_text_bytes: u64,
    /// model_blob_bytes + runtime_text_bytes.
    flash_total_bytes: u64,
    /// A dense model only: kiln-runtime's code with its `small` feature (same outputs, slower).
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_text_small_bytes: Option<u64>,
    /// A dense model only: model_blob_bytes + runtime_text_small_bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    flash_total_small_bytes: Option<u64>,
    /// The fast kernels' workspace on this core (0 where its kernels take none).
    workspace_bytes: u64,
    /// `ram.int8_total_bytes` + workspace_bytes.
    int8_buffers_bytes: u64,
    /// The `Model` value.
    model_struct_bytes: u64,
    /// The peak stack of one inference.
    inference_stack_bytes: u64,
    /// int8_buffers_bytes + model_struct_bytes + inference_stack_bytes.
    ram_total_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
struct FitItem {
    budget_bytes: u64,
    used_bytes: u64,
    fits: bool,
    /// Budget minus used: negative when it does not fit.
    margin_bytes: i64,
    margin_percent: f64,
}

/// One core's verdict: its flash and RAM totals (`device`) against the budgets.
#[derive(Debug, Serialize)]
struct CoreFit {
    core: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flash: Option<FitItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ram: Option<FitItem>,
    fits: bool,
}

#[derive(Debug, Serialize)]
struct Fit {
    representation: &'static str,
    /// The `--core` core; null when the model must fit on every core.
    core: Option<&'static str>,
    /// The checked core that needs the most flash.
    #[serde(skip_serializing_if = "Option::is_none")]
    flash: Option<FitItem>,
    /// The checked core that needs the most RAM.
    #[serde(skip_serializing_if = "Option::is_none")]
    ram: Option<FitItem>,
    cores: Vec<CoreFit>,
    cores_that_do_not_fit: Vec<&'static str>,
    fits: bool,
}

#[derive(Debug, Serialize)]
struct CoreEstimate {
    core: &'static str,
    qemu_machine: &'static str,
    target: &'static str,
    kernel: &'static str,
    /// network_insns / MACs.
    insns_per_mac: f64,
    /// input_stage_insns / input features.
    insns_per_input: f64,
    /// Every layer by the core's per-layer model, plus the per-inference work, rounded.
    network_insns: u64,
    /// The input stage's loop for the model's input features, rounded.
    input_stage_insns: u64,
    /// network + input stage: one `Model::run`, what `kiln sim` counts.
    total_insns: u64,
}

#[derive(Debug, Serialize)]
struct InstructionEstimate {
    basis: &'static str,
    /// The input stage's loop: "byte table", "identity", "fixed point" or "per feature".
    input_stage: &'static str,
    /// What the measurement does not cover for this model.
    notes: Vec<&'static str>,
    cores: Vec<CoreEstimate>,
}

#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    file: PathBuf,
    format: &'static str,
    format_description: String,
    n_inputs: usize,
    n_outputs: usize,
    architecture: String,
    normalization: String,
    layers: Vec<LayerReport>,
    totals: Totals,
    device: DeviceReport,
    instructions_per_inference: InstructionEstimate,
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fit: Option<Fit>,
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    // Flags first: a usage error wins over a bad file.
    let config = inspect_config(args)?;
    let figures = device_figures()?;
    let summary = read_model(&args.file)?;
    let report = build_report(&args.file, summary, &config, figures);
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    match &report.fit {
        Some(fit) if !fit.fits => Err(DoesNotFit {
            path: args.file.clone(),
            detail: fit_failure(fit, &report.device),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Parses `65536`, `64K`, `64KiB`, `1M`, `1MiB` (K and KB are 1024, M and MB 1024 * 1024).
pub fn parse_size(flag: &str, text: &str) -> Result<u64, UsageError> {
    let bad = || {
        UsageError(format!(
            "{flag}: expected a size in bytes such as 65536, 64K, 64KiB or 1M, got '{text}'"
        ))
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(bad()),
    };
    let bytes = number.checked_mul(factor).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(UsageError(format!(
            "{flag}: expected a size above 0 bytes, got '{text}'"
        )));
    }
    Ok(bytes)
}

fn bad_input(path: &Path, detail: impl Into<String>) -> InspectError {
    InspectError {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// Reads the file and recognises it by its content.
fn read_model(path: &Path) -> Result<Summary> {
    let bytes =
        std::fs::read(path).map_err(|e| bad_input(path, format!("cannot read the file: {e}")))?;
    if bytes.starts_with(&kiln_runtime::MAGIC) {
        return Ok(from_blob(path, &bytes)?);
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return from_json(path, &bytes);
    }
    Ok(from_onnx(path, &bytes)?)
}

// ---- kiln model file -------------------------------------------------------------------

fn from_json(path: &Path, bytes: &[u8]) -> Result<Summary> {
    #[derive(serde::Deserialize)]
    struct Header {
        format: Option<String>,
    }
    let header: Header = serde_json::from_slice(bytes)
        .map_err(|e| bad_input(path, format!("not valid JSON ({e}); {EXPECTED}")))?;
    if header.format.as_deref() != Some(FORMAT_NAME) {
        let found = header.format.map_or("no \"format\" field".to_owned(), |f| {
            format!("format '{f}'")
        });
        return Err(bad_input(
            path,
            format!("a JSON file with {found}; expected a kiln model file (\"format\": \"{FORMAT_NAME}\")"),
        )
        .into());
    }
    // The full load validates shapes and values and names the field at fault.
    let model = ModelFile::load(path)?;
    crate::model::require_mlp(&model, path, "kiln inspect")?;
    let layers = model
        .layers
        .iter()
        .map(|layer| dense_layer(layer.n_inputs, layer.n_outputs, layer.activation))
        .collect();
    let (normalization, normalization_values, input_entries) = match &model.normalization {
        Normalization::None => ("none".to_owned(), 0, 1),
        Normalization::Scale { scale } => (format!("scale (x * {scale})"), 1, 1),
        Normalization::Standardize { mean, inv_std } => (
            format!(
                "standardize ({} means, {} inverse standard deviations)",
                mean.len(),
                inv_std.len()
            ),
            mean.len() + inv_std.len(),
            model.n_inputs,
        ),
    };
    Ok(Summary {
        format: "kiln-model",
        format_description: format!(
            "kiln model file (format version {}, {})",
            model.format_version, model.producer
        ),
        layers,
        n_inputs: model.n_inputs,
        normalization,
        normalization_values,
        input_entries,
        input_stage: None,
        blob_len: None,
        arena: None,
        layer_by_layer: None,
        workspace: None,
        byte_input: None,
        int16: false,
        notes: Vec::new(),
    })
}

/// A dense layer before quantization: its int8 section follows from its shape and activation.
fn dense_layer(n_inputs: usize, n_outputs: usize, activation: crate::nn::Activation) -> Layer {
    use crate::nn::Activation;
    Layer {
        n_inputs,
        n_outputs,
        activation: activation.to_string(),
        int8_kind: match activation {
            Activation::Identity => Int8Kind::Identity,
            Activation::Relu | Activation::Relu6 => Int8Kind::Relu,
            Activation::LeakyRelu { .. } | Activation::Tanh | Activation::Sigmoid => {
                Int8Kind::Table
            }
        },
        weights: n_inputs * n_outputs,
        biases: n_outputs,
        blob_section: None,
        graph: None,
        geometry: None,
        in_place: None,
    }
}

// ---- a network before training (`kiln fit`) --------------------------------------------

/// A chain of dense layers before training, as `kiln fit` enumerates candidates: what its
/// int8 blob, buffers and instructions follow from.
#[derive(Debug, Clone)]
pub struct DenseCandidate<'a> {
    pub n_inputs: usize,
    /// Each layer's outputs and activation, the output layer last.
    pub layers: &'a [(usize, crate::nn::Activation)],
    /// One input-stage entry per feature (standardize) instead of one shared entry.
    pub per_feature_input: bool,
    /// The input stage's loop the data leads to (`quant::input_stage_for`).
    pub input_stage: kiln_runtime::InputStage,
    /// The raw inputs are bytes (`Model::run_bytes`), else `i32` (`Model::run`).
    pub byte_input: bool,
}

/// What a candidate takes on one core: `kiln inspect`'s own figures for it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CoreCost {
    /// The int8 blob's length by the layout of docs/blob-format.md.
    pub blob_bytes: u64,
    /// The buffer plan's arena (`Model::scratch_len`).
    pub scratch_bytes: u64,
    /// The blob + kiln-runtime's `.text` on the core.
    pub flash_bytes: u64,
    /// The int8 buffers (with the kernels' workspace where the core takes it), the `Model`
    /// value and the inference stack.
    pub ram_bytes: u64,
    pub parameters: u64,
    pub macs: u64,
    /// One `Model::run`: the network and the input stage, by the core's per-layer model.
    pub instructions: u64,
}

/// The cost of `candidate` on `core` (a `device_figures.json` core name), computed by the
/// same report `kiln inspect` prints for a model file of that shape.
pub fn dense_cost(candidate: &DenseCandidate<'_>, core: &'static str) -> Result<CoreCost> {
    let figures = device_figures()?;
    let mut layers = Vec::with_capacity(candidate.layers.len());
    let mut n_in = candidate.n_inputs;
    for &(n_out, activation) in candidate.layers {
        layers.push(dense_layer(n_in, n_out, activation));
        n_in = n_out;
    }
    let input_entries = if candidate.per_feature_input {
        candidate.n_inputs
    } else {
        1
    };
    let summary = Summary {
        format: "candidate",
        format_description: "a network before training".to_owned(),
        layers,
        n_inputs: candidate.n_inputs,
        normalization: String::new(),
        normalization_values: 0,
        input_entries,
        input_stage: Some(candidate.input_stage),
        blob_len: None,
        arena: None,
        layer_by_layer: None,
        workspace: None,
        byte_input: Some(candidate.byte_input),
        int16: false,
        notes: Vec::new(),
    };
    let config = InspectConfig {
        flash_budget: None,
        ram_budget: None,
        core: Some(core),
    };
    core_cost(
        &build_report(Path::new("candidate"), summary, &config, figures),
        core,
    )
}

/// One core's figures out of a report.
fn core_cost(report: &Report, core: &'static str) -> Result<CoreCost> {
    let device = report
        .device
        .cores
        .iter()
        .find(|c| c.core == core)
        .ok_or_else(|| anyhow::anyhow!("no device figures for {core}"))?;
    let estimate = report
        .instructions_per_inference
        .cores
        .iter()
        .find(|c| c.core == core)
        .ok_or_else(|| anyhow::anyhow!("no instruction estimate for {core}"))?;
    Ok(CoreCost {
        blob_bytes: device.model_blob_bytes,
        scratch_bytes: report.totals.ram.int8_scratch_bytes as u64,
        flash_bytes: device.flash_total_bytes,
        ram_bytes: device.ram_total_bytes,
        parameters: report.totals.parameters as u64,
        macs: report.totals.macs as u64,
        instructions: estimate.total_insns,
    })
}

/// The cost of a baked blob on `core`, as `kiln inspect BLOB --core` reports it: `kiln fit`
/// sizes layer graphs by baking them untrained, and holds every trained blob to its estimate.
/// `byte_input`: whether the raw inputs are bytes, when the data says (`None`: as inspect
/// assumes, bytes for a byte-table input stage).
pub fn blob_cost(
    path: &Path,
    bytes: &[u8],
    core: &'static str,
    byte_input: Option<bool>,
) -> Result<CoreCost> {
    let figures = device_figures()?;
    let mut summary = from_blob(path, bytes)?;
    summary.byte_input = byte_input;
    let config = InspectConfig {
        flash_budget: None,
        ram_budget: None,
        core: Some(core),
    };
    core_cost(&build_report(path, summary, &config, figures), core)
}

// ---- .kiln blob ------------------------------------------------------------------------

fn le_u32_at(bytes: &[u8], offset: usize) -> Option<usize> {
    let word: [u8; 4] = bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(word)).ok()
}

fn from_blob(path: &Path, bytes: &[u8]) -> Result<Summary, InspectError> {
    let model = kiln_runtime::Model::from_bytes(bytes).map_err(|e| {
        bad_input(
            path,
            format!("not a valid .kiln model blob: the kiln runtime refuses it: {e}"),
        )
    })?;
    // The layout of docs/blob-format.md, on a blob the runtime has validated: the input
    // stage's entry count at offset 32; the runtime reports each layer's section length.
    const HEADER_LEN: usize = 32;
    let input_entries = le_u32_at(bytes, HEADER_LEN).unwrap_or(1);
    let mut layers = Vec::with_capacity(model.n_layers());
    for index in 0..model.n_layers() {
        let Some(info) = model.layer(index) else {
            break;
        };
        let section = Some(info.section_len);
        let (activation, int8_kind) = match info.activation {
            kiln_runtime::Activation::Identity => ("identity", Int8Kind::Identity),
            kiln_runtime::Activation::Relu => ("relu", Int8Kind::Relu),
            kiln_runtime::Activation::Lut => ("table", Int8Kind::Table),
        };
        let [h, w, c] = info.input_shape;
        let [oh, ow, oc] = info.output_shape;
        let [kh, kw] = info.kernel;
        let shapes = format!("{h}x{w}x{c} -> {oh}x{ow}x{oc}");
        let strided = |name: &str| {
            let [sh, sw] = info.stride;
            let stride = if [sh, sw] == [1, 1] {
                String::new()
            } else {
                format!(" s{sh}x{sw}")
            };
            format!("{shapes} {name}{kh}x{kw}{stride}")
        };
        // weights, biases, and the layer graph's label and MACs (none for a dense layer)
        let (weights, biases, graph) = match info.kind {
            kiln_runtime::LayerKind::Dense => {
                (info.n_inputs * info.n_outputs, info.n_outputs, None)
            }
            kiln_runtime::LayerKind::Conv2d => (
                kh * kw * c * oc,
                oc,
                Some((strided("conv"), oh * ow * oc * kh * kw * c)),
            ),
            kiln_runtime::LayerKind::DepthwiseConv2d => {
                (kh * kw * c, c, Some((strided("dw"), oh * ow * c * kh * kw)))
            }
            kiln_runtime::LayerKind::MaxPool2d => (0, 0, Some((strided("maxpool"), 0))),
            kiln_runtime::LayerKind::AvgPool2d => (0, 0, Some((strided("avgpool"), 0))),
            kiln_runtime::LayerKind::Add => {
                let other = info.second_input_value.unwrap_or_default();
                (0, 0, Some((format!("{shapes} add value {other}"), 0)))
            }
        };
        layers.push(Layer {
            n_inputs: info.n_inputs,
            n_outputs: info.n_outputs,
            activation: activation.to_owned(),
            int8_kind,
            weights,
            biases,
            blob_section: section,
            graph,
            geometry: Some(Geometry {
                kind: info.kind,
                input: info.input_shape,
                output: info.output_shape,
                kernel: info.kernel,
            }),
            in_place: info.in_place.then_some(info.temp_len),
        });
    }
    let per_feature = input_entries > 1;
    let (mut normalization, normalization_values) = if per_feature {
        (
            format!("per-feature input stage ({input_entries} entries: standardize)"),
            2 * model.n_inputs(),
        )
    } else {
        ("one shared input entry (scale or none)".to_owned(), 1usize)
    };
    if let Some(q) = crate::quant::input_quantization(bytes) {
        normalization.push_str(&format!(
            "; int8 input scale {:?}, zero point {} (for run_quantized)",
            q.scale, q.zero_point
        ));
    }
    let frac_bits = model.input_frac_bits();
    if frac_bits > 0 {
        normalization.push_str(&format!(
            "; raw inputs in fixed point: round(x * 2^{frac_bits}) as i32"
        ));
    }
    // The blob's own version (the runtime reads older ones too).
    let version = model.format_version();
    let mut notes = vec![
        "int8 layer bytes are the layer sections stored in the blob; the f32 figures are what the same \
         shapes take as 4-byte floats, with the normalization counted as 1 value (shared input entry) \
         or 2 per feature (per-feature entries)"
            .to_owned(),
    ];
    if model.activation_bits() == 16 {
        notes.push(
            "int16 activations: the runtime .text, workspace and stack figures are the int8 build's              (measured by cargo xtask firmware); an int16 build links kinds::INT16's loader and              kernel instead, and its values take two bytes each (the scratch above counts them)"
                .to_owned(),
        );
    }
    Ok(Summary {
        format: "kiln-blob",
        format_description: format!(
            "kiln int{} model blob (format version {version}, {} bytes, CRC ok)",
            model.activation_bits(),
            bytes.len()
        ),
        layers,
        n_inputs: model.n_inputs(),
        normalization,
        normalization_values,
        input_entries,
        input_stage: Some(model.input_stage()),
        blob_len: Some(bytes.len()),
        arena: Some(model.scratch_len()),
        layer_by_layer: Some(layer_by_layer_len(&model)),
        workspace: Some(model.fast_scratch_len() - model.scratch_len()),
        // int16 models take raw values as i32 (there is no run_bytes for them)
        byte_input: (model.activation_bits() == 16).then_some(false),
        int16: model.activation_bits() == 16,
        notes,
    })
}

/// The arena of the plain plan for the blob's graph: every value's size and each layer's reads,
/// planned by the encoder's planner without computing in place.
fn layer_by_layer_len(model: &kiln_runtime::Model<'_>) -> usize {
    let element = u64::from(model.activation_bits() / 8);
    let infos: Vec<kiln_runtime::LayerInfo> = (0..model.n_layers())
        .filter_map(|k| model.layer(k))
        .collect();
    let mut sizes = vec![model.n_inputs() as u64 * element];
    sizes.extend(infos.iter().map(|l| l.n_outputs as u64 * element));
    let reads: Vec<Vec<usize>> = infos
        .iter()
        .map(|l| {
            std::iter::once(l.input_value)
                .chain(l.second_input_value)
                .collect()
        })
        .collect();
    kiln_runtime::encode::plan(&sizes, &reads).arena_len as usize
}

// ---- ONNX ------------------------------------------------------------------------------

/// A constant tensor's shape and element type.
#[derive(Debug, Clone)]
struct Constant {
    dims: Vec<i64>,
    data_type: i32,
}

impl Constant {
    fn from_tensor(tensor: &TensorProto) -> Self {
        Self {
            dims: tensor.dims.clone(),
            data_type: tensor.data_type(),
        }
    }

    fn n_elements(&self) -> usize {
        self.dims
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .product()
    }

    fn is_int8(&self) -> bool {
        self.data_type == DataType::Int8 as i32
    }
}

/// The graph indexed by tensor name.
struct GraphIndex<'g> {
    constants: HashMap<&'g str, Constant>,
    producers: HashMap<&'g str, &'g NodeProto>,
    consumers: HashMap<&'g str, Vec<&'g NodeProto>>,
}

impl<'g> GraphIndex<'g> {
    fn new(graph: &'g GraphProto) -> Self {
        let mut constants: HashMap<&'g str, Constant> = graph
            .initializer
            .iter()
            .map(|t| (t.name(), Constant::from_tensor(t)))
            .collect();
        let mut producers = HashMap::new();
        let mut consumers: HashMap<&'g str, Vec<&'g NodeProto>> = HashMap::new();
        for node in &graph.node {
            for output in &node.output {
                producers.insert(output.as_str(), node);
            }
            for input in &node.input {
                consumers.entry(input.as_str()).or_default().push(node);
            }
            if node.op_type() == "Constant" {
                let value = node.attribute.iter().find(|a| a.name() == "value");
                if let (Some(tensor), Some(output)) =
                    (value.and_then(|a| a.t.as_ref()), node.output.first())
                {
                    constants.insert(output.as_str(), Constant::from_tensor(tensor));
                }
            }
        }
        Self {
            constants,
            producers,
            consumers,
        }
    }

    /// The constant behind a tensor: an initializer or a Constant node, possibly through a
    /// DequantizeLinear (then the stored, quantized tensor).
    fn constant(&self, name: &str) -> Option<&Constant> {
        if let Some(constant) = self.constants.get(name) {
            return Some(constant);
        }
        let producer = self.producers.get(name)?;
        if producer.op_type() == "DequantizeLinear" {
            return self.constants.get(producer.input.first()?.as_str());
        }
        None
    }

    /// The activation applied to `tensor`, looking through QuantizeLinear/DequantizeLinear
    /// pairs as a QDQ graph has them.
    fn activation_after(&self, tensor: &str, depth: usize) -> Option<(String, Int8Kind)> {
        if depth > 4 {
            return None;
        }
        for node in self.consumers.get(tensor).into_iter().flatten() {
            let kind = match node.op_type() {
                "Relu" => Some(("relu".to_owned(), Int8Kind::Relu)),
                "Tanh" => Some(("tanh".to_owned(), Int8Kind::Table)),
                "Sigmoid" => Some(("sigmoid".to_owned(), Int8Kind::Table)),
                "LeakyRelu" => {
                    let alpha = node
                        .attribute
                        .iter()
                        .find(|a| a.name() == "alpha")
                        .and_then(|a| a.f)
                        .unwrap_or(0.01);
                    Some((format!("leaky-relu({alpha})"), Int8Kind::Table))
                }
                "QuantizeLinear" | "DequantizeLinear" => node
                    .output
                    .first()
                    .and_then(|out| self.activation_after(out, depth + 1)),
                _ => None,
            };
            if kind.is_some() {
                return kind;
            }
        }
        None
    }
}

fn int_attribute(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.i)
}

fn from_onnx(path: &Path, bytes: &[u8]) -> Result<Summary, InspectError> {
    let model: ModelProto = kiln_onnx::mlp::decode_model(bytes)
        .map_err(|e| bad_input(path, format!("not a model file ({e}); {EXPECTED}")))?;
    let Some(graph) = model.graph.as_ref().filter(|g| !g.node.is_empty()) else {
        return Err(bad_input(
            path,
            format!("not a model file (no ONNX graph); {EXPECTED}"),
        ));
    };
    // Only the dense layers are read from an ONNX file: a graph with convolutions or pooling
    // would be summed up wrongly, so it is refused by name.
    const SPATIAL_OPS: [&str; 6] = [
        "Conv",
        "ConvInteger",
        "QLinearConv",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
    ];
    if let Some(node) = graph
        .node
        .iter()
        .find(|n| SPATIAL_OPS.contains(&n.op_type()))
    {
        return Err(bad_input(
            path,
            format!(
                "node '{}' ({}): kiln inspect reads the dense layers of an ONNX file; inspect a \
                 convolutional network's .kiln blob (kiln bake) instead",
                node.name(),
                node.op_type()
            ),
        ));
    }
    let index = GraphIndex::new(graph);
    let mut layers = Vec::new();
    let mut int8_weights = 0;
    let mut notes = Vec::new();
    for node in graph.node.iter().filter(|n| n.op_type() == "Gemm") {
        let layer_idx = layers.len();
        let node_name = node.name().to_owned();
        let invalid = |detail: String| {
            bad_input(
                path,
                format!("Gemm node '{node_name}' (layer {layer_idx}): {detail}"),
            )
        };
        let weight_name = node
            .input
            .get(1)
            .ok_or_else(|| invalid("has no B input".into()))?;
        let weight = index.constant(weight_name).ok_or_else(|| {
            invalid(format!(
                "its weights '{weight_name}' are not a constant initializer"
            ))
        })?;
        let [rows, cols] = weight.dims[..] else {
            return Err(invalid(format!(
                "its weights '{weight_name}' have shape {:?}, expected 2 dimensions",
                weight.dims
            )));
        };
        let (rows, cols) = match (usize::try_from(rows), usize::try_from(cols)) {
            (Ok(r), Ok(c)) if r > 0 && c > 0 => (r, c),
            _ => {
                return Err(invalid(format!(
                    "its weights '{weight_name}' have shape {:?}",
                    weight.dims
                )))
            }
        };
        let trans_b = int_attribute(node, "transB").unwrap_or(0) != 0;
        // transB = 1 (what kiln writes): [n_out, n_in]; transB = 0: [n_in, n_out].
        let (n_inputs, n_outputs) = if trans_b { (cols, rows) } else { (rows, cols) };
        if weight.is_int8() {
            int8_weights += 1;
        }
        let biases = match node.input.get(2).filter(|name| !name.is_empty()) {
            None => 0,
            Some(name) => index
                .constant(name)
                .ok_or_else(|| invalid(format!("its bias '{name}' is not a constant initializer")))?
                .n_elements(),
        };
        let (activation, int8_kind) = node
            .output
            .first()
            .and_then(|out| index.activation_after(out, 0))
            .unwrap_or(("identity".to_owned(), Int8Kind::Identity));
        layers.push(Layer {
            n_inputs,
            n_outputs,
            activation,
            int8_kind,
            weights: n_inputs * n_outputs,
            biases,
            blob_section: None,
            graph: None,
            geometry: None,
            in_place: None,
        });
    }
    if layers.is_empty() {
        return Err(bad_input(
            path,
            format!("an ONNX graph without Gemm nodes; {EXPECTED}"),
        ));
    }
    for (i, pair) in layers.windows(2).enumerate() {
        if pair[0].n_outputs != pair[1].n_inputs {
            notes.push(format!(
                "layer {} gives {} values but layer {} takes {}: the graph is not a plain chain of Gemm layers",
                i,
                pair[0].n_outputs,
                i + 1,
                pair[1].n_inputs
            ));
        }
    }
    if graph.node.iter().any(|n| n.op_type() == "Softmax") {
        notes.push(
            "the graph also computes probabilities (Softmax), which no layer row counts".into(),
        );
    }

    // The normalization: float constants read by element-wise nodes (kiln writes
    // Mul for scale, Sub then Mul for standardize).
    let mut norm_ops = Vec::new();
    let mut normalization_values = 0;
    let mut per_feature = false;
    for node in &graph.node {
        let op = node.op_type();
        if !matches!(op, "Mul" | "Sub" | "Add" | "Div") {
            continue;
        }
        for input in &node.input {
            if let Some(constant) = index.constants.get(input.as_str()) {
                if constant.data_type == DataType::Float as i32 {
                    normalization_values += constant.n_elements();
                    per_feature |= constant.n_elements() > 1;
                    norm_ops.push(op.to_owned());
                }
            }
        }
    }
    let values = |n: usize| format!("{n} value{}", if n == 1 { "" } else { "s" });
    let normalization = if norm_ops.is_empty() {
        "none in the graph".to_owned()
    } else if norm_ops == ["Mul"] && normalization_values == 1 {
        "scale (a Mul node in the graph, 1 value)".to_owned()
    } else if norm_ops == ["Sub", "Mul"] {
        format!(
            "standardize (Sub and Mul nodes in the graph, {})",
            values(normalization_values)
        )
    } else {
        format!(
            "{} nodes in the graph ({})",
            norm_ops.join(", "),
            values(normalization_values)
        )
    };
    let n_inputs = layers[0].n_inputs;
    let opsets: Vec<String> = model
        .opset_import
        .iter()
        .filter(|o| o.domain().is_empty())
        .map(|o| o.version().to_string())
        .collect();
    let producer = match (model.producer_name(), model.producer_version()) {
        ("", _) => String::new(),
        (name, "") => format!(", producer {name}"),
        (name, version) => format!(", producer {name} {version}"),
    };
    let (format, kind) = if int8_weights > 0 {
        (
            "onnx-qdq",
            format!(
                "ONNX, QDQ int8 ({int8_weights} of {} layers with int8 weights)",
                layers.len()
            ),
        )
    } else {
        ("onnx", "ONNX, float".to_owned())
    };
    Ok(Summary {
        format,
        format_description: format!(
            "{kind}, opset {}{producer}",
            if opsets.is_empty() {
                "unknown".to_owned()
            } else {
                opsets.join(",")
            }
        ),
        layers,
        n_inputs,
        normalization,
        normalization_values,
        input_entries: if per_feature { n_inputs } else { 1 },
        input_stage: None,
        blob_len: None,
        arena: None,
        layer_by_layer: None,
        workspace: None,
        byte_input: None,
        int16: false,
        notes,
    })
}

// ---- sizes -----------------------------------------------------------------------------

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// A layer's section in the blob (docs/blob-format.md).
fn int8_section_len(layer: &Layer) -> usize {
    let (n_in, n_out) = (layer.n_inputs, layer.n_outputs);
    let table = if layer.int8_kind == Int8Kind::Table {
        256
    } else {
        0
    };
    24 + 4 * n_out + n_out + pad4(n_out) + 4 * n_out + n_out * n_in + pad4(n_out * n_in) + table
}

const INT8_LAYER_FORMULA: &str =
    "int8 layer bytes = the layer's blob section (docs/blob-format.md): \
     24 header + 4 n_out multipliers + n_out shifts + 4 n_out biases + n_in n_out weights, \
     byte arrays padded to 4, + 256 for a table activation";

fn fit_item(budget: u64, used: u64) -> FitItem {
    let margin = budget as i64 - used as i64;
    FitItem {
        budget_bytes: budget,
        used_bytes: used,
        fits: used <= budget,
        margin_bytes: margin,
        margin_percent: (margin as f64 / budget as f64 * 1000.0).round() / 10.0,
    }
}

/// A layer kind's name in the JSON report.
fn kind_name(kind: kiln_runtime::LayerKind) -> &'static str {
    use kiln_runtime::LayerKind;
    match kind {
        LayerKind::Dense => "dense",
        LayerKind::Conv2d => "conv2d",
        LayerKind::DepthwiseConv2d => "depthwise_conv2d",
        LayerKind::MaxPool2d => "max_pool2d",
        LayerKind::AvgPool2d => "avg_pool2d",
        LayerKind::Add => "add",
    }
}

/// The name of an input-stage loop in the report.
pub(crate) fn input_stage_name(stage: kiln_runtime::InputStage) -> &'static str {
    use kiln_runtime::InputStage;
    match stage {
        InputStage::ByteTable => "byte table",
        InputStage::Identity => "identity",
        InputStage::FixedPoint => "fixed point",
        InputStage::PerFeature => "per feature",
    }
}

/// The input stage's loop, and whether it is assumed: a model before quantization takes the
/// loop a blob from integer data would run.
fn input_stage_of(summary: &Summary) -> (kiln_runtime::InputStage, bool) {
    match summary.input_stage {
        Some(stage) => (stage, false),
        None if summary.input_entries > 1 => (kiln_runtime::InputStage::PerFeature, true),
        None => (kiln_runtime::InputStage::ByteTable, true),
    }
}

/// Instructions of one `Model::run` on each measured core: the core's per-layer model summed
/// over the dense layers, and its input-stage loop over the input features.
fn estimate_instructions(
    summary: &Summary,
    macs: usize,
    figures: &'static DeviceFigures,
) -> InstructionEstimate {
    if summary.int16 {
        return InstructionEstimate {
            basis: INT16_BASIS,
            input_stage: "",
            notes: Vec::new(),
            cores: Vec::new(),
        };
    }
    let is_graph = summary.layers.iter().any(|l| l.graph.is_some());
    // A graph is estimated from its blob's shapes (its model and ONNX files are refused).
    let geometries: Option<Vec<Geometry>> = summary.layers.iter().map(|l| l.geometry).collect();
    if is_graph && geometries.is_none() {
        return InstructionEstimate {
            basis: GRAPH_BASIS,
            input_stage: "",
            notes: Vec::new(),
            cores: Vec::new(),
        };
    }
    let mut notes = Vec::new();
    let (stage, assumed) = input_stage_of(summary);
    if assumed {
        notes.push(UNQUANTIZED_INPUT_NOTE);
    }
    let shapes: Vec<(usize, usize)> = summary
        .layers
        .iter()
        .map(|l| (l.n_inputs, l.n_outputs))
        .collect();
    let cores = figures
        .cores
        .iter()
        .map(|m| {
            let network = match &geometries {
                Some(layers) if is_graph => m.estimate.graph_network(layers),
                _ => m.estimate.network(&shapes),
            };
            let network_insns = network.round().max(0.0) as u64;
            let input_stage_insns = m
                .estimate
                .input_stage(stage, summary.n_inputs)
                .round()
                .max(0.0) as u64;
            CoreEstimate {
                core: &m.core,
                qemu_machine: &m.qemu_machine,
                target: &m.target,
                kernel: &m.kernel,
                insns_per_mac: network_insns as f64 / macs.max(1) as f64,
                insns_per_input: input_stage_insns as f64 / summary.n_inputs.max(1) as f64,
                network_insns,
                input_stage_insns,
                total_insns: network_insns + input_stage_insns,
            }
        })
        .collect();
    if summary
        .layers
        .iter()
        .any(|l| l.int8_kind == Int8Kind::Table)
    {
        notes.push(TABLE_ACTIVATION_NOTE);
    }
    InstructionEstimate {
        basis: if is_graph {
            GRAPH_ESTIMATE_BASIS
        } else {
            ESTIMATE_BASIS
        },
        input_stage: input_stage_name(stage),
        notes,
        cores,
    }
}

fn build_report(
    path: &Path,
    mut summary: Summary,
    config: &InspectConfig,
    figures: &'static DeviceFigures,
) -> Report {
    let mut notes = std::mem::take(&mut summary.notes);
    let layers: Vec<LayerReport> = summary
        .layers
        .iter()
        .enumerate()
        .map(|(index, layer)| LayerReport {
            index,
            kind: layer.geometry.map_or("dense", |g| kind_name(g.kind)),
            input_shape: layer.geometry.map_or([1, 1, layer.n_inputs], |g| g.input),
            output_shape: layer.geometry.map_or([1, 1, layer.n_outputs], |g| g.output),
            kernel: layer.geometry.map_or([0, 0], |g| g.kernel),
            n_inputs: layer.n_inputs,
            n_outputs: layer.n_outputs,
            shape: layer.graph.as_ref().map_or_else(
                || format!("{} -> {}", layer.n_inputs, layer.n_outputs),
                |(label, _)| match layer.in_place {
                    Some(_) => format!("{label}, in place"),
                    None => label.clone(),
                },
            ),
            activation: layer.activation.clone(),
            weights: layer.weights,
            biases: layer.biases,
            parameters: layer.weights + layer.biases,
            macs: layer
                .graph
                .as_ref()
                .map_or(layer.n_inputs * layer.n_outputs, |&(_, macs)| macs),
            f32_bytes: (layer.weights + layer.biases) * 4,
            int8_bytes: layer
                .blob_section
                .unwrap_or_else(|| int8_section_len(layer)),
            in_place_temp_bytes: layer.in_place,
        })
        .collect();
    let parameters: usize = layers.iter().map(|l| l.parameters).sum();
    let macs: usize = layers.iter().map(|l| l.macs).sum();
    let f32_normalization_bytes = summary.normalization_values * 4;
    let (int8_bytes, int8_source) = match summary.blob_len {
        Some(len) => (len, "blob length"),
        None => {
            notes.push(INT8_LAYER_FORMULA.to_owned());
            notes.push(format!(
                "int8 flash is an estimate: the blob kiln would write, 32 header + 8 + 12 x {} input entr{} \
                 {}+ 20 x {} values + the layer sections + 8 output + 4 CRC bytes",
                summary.input_entries,
                if summary.input_entries == 1 { "y" } else { "ies" },
                if summary.input_entries == 1 { "+ 256 byte table " } else { "" },
                layers.len() + 1
            ));
            let sections: usize = layers.iter().map(|l| l.int8_bytes).sum();
            // the byte table of a shared input entry, and one value table entry per value
            let byte_table = if summary.input_entries == 1 { 256 } else { 0 };
            let value_table = 20 * (layers.len() + 1);
            (
                32 + 8 + 12 * summary.input_entries + byte_table + value_table + sections + 8 + 4,
                "estimate",
            )
        }
    };
    // A blob carries its planned arena; an MLP's is the largest pair of adjacent layers.
    let scratch = summary.arena.unwrap_or_else(|| {
        summary
            .layers
            .iter()
            .map(|l| l.n_inputs + l.n_outputs)
            .max()
            .unwrap_or(0)
    });
    let n_outputs = summary.layers.last().map_or(0, |l| l.n_outputs);
    // A byte-table input stage takes the raw values as bytes (`Model::run_bytes`).
    let byte_input = summary
        .byte_input
        .unwrap_or(input_stage_of(&summary).0 == kiln_runtime::InputStage::ByteTable);
    let (input_bytes, input_type) = if byte_input {
        (summary.n_inputs, "u8 (Model::run_bytes)")
    } else {
        (summary.n_inputs * 4, "i32 (Model::run)")
    };
    // The packed dense kernel widens the widest dense layer's input (`Model::fast_scratch_len`).
    let workspace = summary.workspace.unwrap_or_else(|| {
        let widest = summary.layers.iter().map(|l| l.n_inputs).max().unwrap_or(0);
        if widest == 0 {
            0
        } else {
            kiln_runtime::kernels::packed::widened_len(widest)
        }
    });
    let ram = RamReport {
        f32_scratch_bytes: scratch * 4,
        int8_scratch_bytes: scratch,
        int8_layer_by_layer_bytes: summary.layer_by_layer,
        int8_input_bytes: input_bytes,
        int8_input_type: input_type,
        int8_workspace_bytes: workspace,
        int8_logits_bytes: n_outputs,
        int8_total_bytes: scratch + input_bytes + n_outputs,
    };
    let device = device_report(&summary, int8_bytes, &ram, figures);
    // The cores the verdict and the peak stack speak for: the --core core, or every core.
    let checked: Vec<&CoreFootprint> = device
        .cores
        .iter()
        .filter(|c| config.core.is_none_or(|core| core == c.core))
        .collect();
    let fit = (config.flash_budget.is_some() || config.ram_budget.is_some())
        .then(|| build_fit(config, &checked));
    let stacks = checked.iter().map(|c| c.inference_stack_bytes);
    let (stack_min, stack_max) = (stacks.clone().min().unwrap_or(0), stacks.max().unwrap_or(0));
    let firmware = if device.runtime_build == "mlp" {
        "dense-only"
    } else {
        "every-layer"
    };
    let peak_stack = match (config.core, stack_min == stack_max) {
        (Some(core), _) => {
            format!("{stack_max} bytes on {core} (one inference, the {firmware} firmware)")
        }
        (None, true) => {
            format!("{stack_max} bytes on every core (one inference, the {firmware} firmware)")
        }
        (None, false) => format!(
            "{stack_min} to {stack_max} bytes over the cores (one inference, the {firmware} firmware)"
        ),
    };
    let instructions_per_inference = estimate_instructions(&summary, macs, figures);
    // `64-128-10` for an MLP; `8x8x1-conv3x3-maxpool2x2 s2x2-...-10` for a layer graph.
    let widths: Vec<String> = std::iter::once(
        summary
            .layers
            .first()
            .and_then(|l| l.graph.as_ref())
            .and_then(|(label, _)| label.split(' ').next())
            .map_or_else(|| summary.n_inputs.to_string(), str::to_owned),
    )
    .chain(summary.layers.iter().map(|l| match &l.graph {
        Some((label, _)) => label.splitn(4, ' ').nth(3).unwrap_or_default().to_owned(),
        None => l.n_outputs.to_string(),
    }))
    .collect();
    Report {
        command: "inspect",
        file: path.to_owned(),
        format: summary.format,
        format_description: summary.format_description,
        n_inputs: summary.n_inputs,
        n_outputs,
        architecture: widths.join("-"),
        normalization: summary.normalization,
        layers,
        totals: Totals {
            parameters,
            macs,
            flash: FlashReport {
                f32_bytes: parameters * 4 + f32_normalization_bytes,
                f32_normalization_bytes,
                int8_bytes,
                int8_source,
            },
            ram,
            peak_stack_bytes: stack_max,
            peak_stack,
        },
        device,
        instructions_per_inference,
        notes,
        fit,
    }
}

/// Flash and RAM on each core: the int8 model and buffers plus the runtime's code, the `Model`
/// value and the inference stack of the firmware that runs this kind of model.
fn device_report(
    summary: &Summary,
    blob_bytes: usize,
    ram: &RamReport,
    figures: &'static DeviceFigures,
) -> DeviceReport {
    // A convolution or pooling layer needs the firmware that links every layer kind.
    let dense_only = summary.layers.iter().all(|l| l.graph.is_none());
    let blob = blob_bytes as u64;
    // The convolutions' im2col takes the workspace on every core; dense layers only on the
    // cores whose packed kernel widens into it.
    let has_conv = summary.layers.iter().any(|l| {
        l.geometry
            .is_some_and(|g| g.kind == kiln_runtime::LayerKind::Conv2d)
    });
    let cores = figures
        .cores
        .iter()
        .map(|c| {
            let (text, stack) = if dense_only {
                (c.runtime_text_bytes.mlp, c.inference_stack_bytes.mlp)
            } else {
                (c.runtime_text_bytes.graph, c.inference_stack_bytes.graph)
            };
            let small = dense_only.then_some(c.runtime_text_bytes.mlp_small);
            let workspace = if has_conv || c.dense_workspace {
                ram.int8_workspace_bytes as u64
            } else {
                0
            };
            let buffers = ram.int8_total_bytes as u64 + workspace;
            CoreFootprint {
                core: &c.core,
                target: &c.target,
                model_blob_bytes: blob,
                runtime_text_bytes: text,
                flash_total_bytes: blob + text,
                runtime_text_small_bytes: small,
                flash_total_small_bytes: small.map(|small| blob + small),
                workspace_bytes: workspace,
                int8_buffers_bytes: buffers,
                model_struct_bytes: c.model_struct_bytes,
                inference_stack_bytes: stack,
                ram_total_bytes: buffers + c.model_struct_bytes + stack,
            }
        })
        .collect();
    DeviceReport {
        runtime_build: if dense_only { "mlp" } else { "graph" },
        source: &figures.source,
        note: DEVICE_NOTE,
        cores,
    }
}

/// The budgets against each checked core's totals; the model fits only if it fits on all.
fn build_fit(config: &InspectConfig, checked: &[&CoreFootprint]) -> Fit {
    let cores: Vec<CoreFit> = checked
        .iter()
        .map(|c| {
            let flash = config
                .flash_budget
                .map(|budget| fit_item(budget, c.flash_total_bytes));
            let ram = config
                .ram_budget
                .map(|budget| fit_item(budget, c.ram_total_bytes));
            let fits = flash.as_ref().is_none_or(|f| f.fits) && ram.as_ref().is_none_or(|r| r.fits);
            CoreFit {
                core: c.core,
                flash,
                ram,
                fits,
            }
        })
        .collect();
    let tightest = |item: fn(&CoreFit) -> Option<&FitItem>| {
        cores
            .iter()
            .filter_map(item)
            .max_by_key(|i| i.used_bytes)
            .cloned()
    };
    let cores_that_do_not_fit: Vec<&'static str> =
        cores.iter().filter(|c| !c.fits).map(|c| c.core).collect();
    Fit {
        representation: "int8",
        core: config.core,
        flash: tightest(|c| c.flash.as_ref()),
        ram: tightest(|c| c.ram.as_ref()),
        fits: cores_that_do_not_fit.is_empty(),
        cores_that_do_not_fit,
        cores,
    }
}

// ---- output ----------------------------------------------------------------------------

fn fit_line(what: &str, item: &FitItem) -> String {
    if item.fits {
        format!(
            "{what} {} of {} bytes: fits: yes, {} bytes ({:.1}%) to spare",
            item.used_bytes, item.budget_bytes, item.margin_bytes, item.margin_percent
        )
    } else {
        format!(
            "{what} {} of {} bytes: fits: no, {} bytes ({:.1}%) over",
            item.used_bytes, item.budget_bytes, -item.margin_bytes, -item.margin_percent
        )
    }
}

/// Names the cores that do not fit and, for each, what its flash or RAM is made of.
fn fit_failure(fit: &Fit, device: &DeviceReport) -> String {
    let over = |item: &FitItem| {
        format!(
            "budget {} ({} bytes over)",
            item.budget_bytes, -item.margin_bytes
        )
    };
    let parts: Vec<(&str, String)> = fit
        .cores
        .iter()
        .filter(|c| !c.fits)
        .filter_map(|c| {
            let footprint = device.cores.iter().find(|f| f.core == c.core)?;
            let mut reasons = Vec::new();
            if let Some(item) = c.flash.as_ref().filter(|i| !i.fits) {
                // The compact kernels are the remedy when they alone make it fit.
                let small = footprint
                    .flash_total_small_bytes
                    .filter(|&small| small <= item.budget_bytes)
                    .map_or_else(String::new, |small| {
                        format!(" (kiln-runtime's `small` feature would make it {small} bytes)")
                    });
                reasons.push(format!(
                    "flash needs {} bytes (model blob {} + kiln-runtime .text {}), {}{small}",
                    item.used_bytes,
                    footprint.model_blob_bytes,
                    footprint.runtime_text_bytes,
                    over(item)
                ));
            }
            if let Some(item) = c.ram.as_ref().filter(|i| !i.fits) {
                reasons.push(format!(
                    "RAM needs {} bytes (int8 buffers {} with workspace {} + Model {} + inference stack {}), {}",
                    item.used_bytes,
                    footprint.int8_buffers_bytes,
                    footprint.workspace_bytes,
                    footprint.model_struct_bytes,
                    footprint.inference_stack_bytes,
                    over(item)
                ));
            }
            Some((c.core, reasons.join(", ")))
        })
        .collect();
    // One core is named once; several each before their reasons.
    let parts: Vec<String> = match &parts[..] {
        [(_, reasons)] => vec![reasons.clone()],
        _ => parts
            .iter()
            .map(|(core, reasons)| format!("{core}: {reasons}"))
            .collect(),
    };
    format!(
        "on {}: {}",
        fit.cores_that_do_not_fit.join(", "),
        parts.join("; ")
    )
}

fn print_report(report: &Report) {
    let totals = &report.totals;
    crate::outln!("kiln inspect {}", report.file.display());
    let rows = [
        ("format", report.format_description.clone()),
        (
            "model",
            format!(
                "{}, {} parameters, {} MACs per inference",
                report.architecture, totals.parameters, totals.macs
            ),
        ),
        ("normalization", report.normalization.clone()),
    ];
    for (label, value) in rows {
        crate::outln!("  {label:<14} {value}");
    }
    crate::outln!();

    let header = [
        "layer",
        "shape",
        "activation",
        "params",
        "MACs",
        "f32 bytes",
        "int8 bytes",
    ];
    let mut table: Vec<[String; 7]> = report
        .layers
        .iter()
        .map(|l| {
            [
                l.index.to_string(),
                l.shape.clone(),
                l.activation.clone(),
                l.parameters.to_string(),
                l.macs.to_string(),
                l.f32_bytes.to_string(),
                l.int8_bytes.to_string(),
            ]
        })
        .collect();
    table.push([
        "total".into(),
        String::new(),
        String::new(),
        totals.parameters.to_string(),
        totals.macs.to_string(),
        report
            .layers
            .iter()
            .map(|l| l.f32_bytes)
            .sum::<usize>()
            .to_string(),
        report
            .layers
            .iter()
            .map(|l| l.int8_bytes)
            .sum::<usize>()
            .to_string(),
    ]);
    print_table(header, &table, 3);
    crate::outln!();

    let flash = &totals.flash;
    let ram = &totals.ram;
    let int8_label = if flash.int8_source == "estimate" {
        "(estimate)"
    } else {
        "(the blob's length)"
    };
    let rows = [
        (
            "flash f32",
            format!(
                "{} bytes ({} parameters x 4 + {} bytes normalization)",
                flash.f32_bytes, totals.parameters, flash.f32_normalization_bytes
            ),
        ),
        (
            "flash int8",
            format!("{} bytes {int8_label}", flash.int8_bytes),
        ),
        (
            "scratch f32",
            format!(
                "{} bytes ({} floats: the same buffer plan)",
                ram.f32_scratch_bytes, ram.int8_scratch_bytes
            ),
        ),
        (
            "scratch int8",
            match ram.int8_layer_by_layer_bytes {
                Some(plain) if plain != ram.int8_scratch_bytes => {
                    let in_place: Vec<String> = report
                        .layers
                        .iter()
                        .filter(|l| l.in_place_temp_bytes.is_some())
                        .map(|l| l.index.to_string())
                        .collect();
                    let which = match in_place.as_slice() {
                        [one] => format!("layer {one} computes"),
                        many => format!("layers {} compute", many.join(", ")),
                    };
                    format!(
                        "{} bytes (the buffer plan; {plain} with every layer's input and output \
                         apart: {which} in place)",
                        ram.int8_scratch_bytes
                    )
                }
                _ => format!(
                    "{} bytes (the buffer plan: for a chain, max over layers of n_in + n_out)",
                    ram.int8_scratch_bytes
                ),
            },
        ),
        (
            "RAM int8",
            format!(
                "{} bytes: scratch {} + raw input {} ({}) + logits {}; per core below with the \
                 kernels' workspace ({} bytes, where they take it), the Model and stack",
                ram.int8_total_bytes,
                ram.int8_scratch_bytes,
                ram.int8_input_bytes,
                ram.int8_input_type,
                ram.int8_logits_bytes,
                ram.int8_workspace_bytes
            ),
        ),
        ("peak stack", totals.peak_stack.clone()),
    ];
    for (label, value) in rows {
        crate::outln!("  {label:<14} {value}");
    }
    crate::outln!();
    print_device(&report.device);
    // The verdicts under the table of the totals they judge.
    let mut rows = Vec::new();
    if let Some(fit) = &report.fit {
        for core in &fit.cores {
            for (what, item) in [("flash", &core.flash), ("RAM", &core.ram)] {
                if let Some(item) = item {
                    rows.push((
                        "fit int8",
                        format!("{}: {}", core.core, fit_line(what, item)),
                    ));
                }
            }
        }
        let verdict = match (fit.fits, fit.core) {
            (true, Some(core)) => format!("fits on {core}"),
            (true, None) => "fits on every core".to_owned(),
            (false, _) => format!("does not fit on {}", fit.cores_that_do_not_fit.join(", ")),
        };
        rows.push(("fit int8", verdict));
    }
    if !rows.is_empty() {
        crate::outln!();
    }
    for (label, value) in &rows {
        crate::outln!("  {label:<14} {value}");
    }
    crate::outln!();
    print_instruction_estimate(&report.instructions_per_inference);
    for note in &report.notes {
        crate::outln!("  note: {note}");
    }
}

/// Prints a table: text columns (the first `text_columns`) left-aligned, numbers right-aligned.
pub(crate) fn print_table<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    text_columns: usize,
) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; N]| {
        let mut text = String::new();
        for (col, cell) in cells.iter().enumerate() {
            if col < text_columns {
                text.push_str(&format!("  {cell:<w$}", w = widths[col]));
            } else {
                text.push_str(&format!("  {cell:>w$}", w = widths[col]));
            }
        }
        crate::outln!("{}", text.trim_end());
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
}

/// The per-core flash and RAM table; the `small` build's flash only for a dense model.
fn print_device(device: &DeviceReport) {
    crate::outln!(
        "  on a device (bytes; kiln-runtime built for {})",
        if device.runtime_build == "mlp" {
            "dense layers"
        } else {
            "every layer kind"
        }
    );
    let rows: Vec<[String; 8]> = device
        .cores
        .iter()
        .map(|c| {
            [
                c.core.to_owned(),
                c.runtime_text_bytes.to_string(),
                c.flash_total_bytes.to_string(),
                c.flash_total_small_bytes
                    .map_or_else(|| "-".to_owned(), |b| b.to_string()),
                c.workspace_bytes.to_string(),
                c.model_struct_bytes.to_string(),
                c.inference_stack_bytes.to_string(),
                c.ram_total_bytes.to_string(),
            ]
        })
        .collect();
    let header = [
        "core",
        "runtime .text",
        "flash",
        "flash (small)",
        "workspace",
        "Model",
        "stack",
        "RAM",
    ];
    print_table(header, &rows, 1);
    if device.runtime_build == "mlp" {
        crate::outln!(
            "  note: flash (small) is kiln-runtime built with its `small` feature: compact \
             kernels, the same outputs, slower"
        );
    }
    crate::outln!("  note: {}", device.note);
}

/// The estimate table, then the lines that say what it rests on.
fn print_instruction_estimate(estimate: &InstructionEstimate) {
    if estimate.cores.is_empty() {
        crate::outln!("  instructions per inference: {}", estimate.basis);
        return;
    }
    crate::outln!("  instructions per inference (estimate)");
    let header = [
        "core",
        "kernel",
        "insns/MAC",
        "network",
        "insns/input",
        "input stage",
        "total",
    ];
    let table: Vec<[String; 7]> = estimate
        .cores
        .iter()
        .map(|c| {
            [
                c.core.to_owned(),
                c.kernel.to_owned(),
                format!("{:.2}", c.insns_per_mac),
                c.network_insns.to_string(),
                format!("{:.1}", c.insns_per_input),
                c.input_stage_insns.to_string(),
                c.total_insns.to_string(),
            ]
        })
        .collect();
    print_table(header, &table, 2);
    crate::outln!("  input stage: the {} loop", estimate.input_stage);
    crate::outln!("  note: {}", estimate.basis);
    for note in &estimate.notes {
        crate::outln!("  note: {note}");
    }
}
