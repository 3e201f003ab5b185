//! `kiln inspect`: what a model costs on a device (parameters, multiply-accumulates,
//! flash and scratch RAM as f32 and as int8), and whether it fits a flash and RAM budget.
//!
//! The file is recognised by its content: a kiln model file (JSON with
//! `"format": "kiln-model"`), an ONNX file (float, or QDQ with int8 weights), or a
//! `.kiln` blob (magic `KILN`). Sizes follow `docs/blob-format.md`: an int8 layer is
//! its blob section, the int8 scratch is the planned arena, for a chain of dense layers
//! `max(n_in + n_out)` bytes.

use super::args::InspectArgs;
use super::config::UsageError;
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

/// The peak stack of an inference has not been measured on a device yet.
const STACK_UNKNOWN: &str = "unknown (not measured yet)";

/// Guest instructions the runtime executed on one target core, the basis of the
/// instructions-per-inference estimate.
struct CoreMeasurement {
    core: &'static str,
    qemu_machine: &'static str,
    target: &'static str,
    kernel: &'static str,
    /// The network (int8 input to int8 logits, every layer) divided by its MACs.
    insns_per_mac: f64,
    /// The input stage (raw values to int8) divided by the input features.
    insns_per_input: f64,
}

/// Exact guest-instruction counts from QEMU with the qemu-insncount plugin
/// (`cargo xtask firmware`), kiln-runtime at commit 65ee859, MNIST 784-128-10 (101,632
/// MACs), mean over 200 test images. The input stage is a shared input entry fed raw
/// 0..255 values (the byte table): 15,772 (M0), 14,149 (M3, M4F) and 11,029 (RISC-V)
/// instructions for 784 features. The M4F and M7 run the same thumbv7em build. The M0 row is
/// the same firmware built with MNIST on the `microbit` machine (`cargo xtask firmware` itself
/// runs the digits model there; `cargo xtask bench-mcu` measures the MNIST network on it).
const MEASURED_CORES: [CoreMeasurement; 5] = [
    CoreMeasurement {
        core: "Cortex-M0",
        qemu_machine: "microbit",
        target: "thumbv6m-none-eabi",
        kernel: "four-row, Thumb-1 asm",
        insns_per_mac: 3.90,
        insns_per_input: 14.3,
    },
    CoreMeasurement {
        core: "Cortex-M3",
        qemu_machine: "lm3s6965evb",
        target: "thumbv7m-none-eabi",
        kernel: "four-row, Thumb-1 asm",
        insns_per_mac: 3.73,
        insns_per_input: 13.1,
    },
    CoreMeasurement {
        core: "Cortex-M4F",
        qemu_machine: "mps2-an386",
        target: "thumbv7em-none-eabihf",
        kernel: "packed SMLAD",
        insns_per_mac: 1.49,
        insns_per_input: 12.1,
    },
    CoreMeasurement {
        core: "Cortex-M7",
        qemu_machine: "mps2-an500",
        target: "thumbv7em-none-eabihf",
        kernel: "packed SMLAD",
        insns_per_mac: 1.49,
        insns_per_input: 12.1,
    },
    CoreMeasurement {
        core: "RISC-V rv32imc",
        qemu_machine: "sifive_e",
        target: "riscv32imc-unknown-none-elf",
        kernel: "four-row, RV32IM asm",
        insns_per_mac: 3.62,
        insns_per_input: 11.2,
    },
];

/// Printed under the estimate table and stored in the JSON report.
/// Why a layer graph with convolutions or pooling gets no estimate.
const GRAPH_BASIS: &str = "not estimated for a layer graph with convolutions or pooling: no \
     per-MAC rate of those kernels is measured yet (run the model in QEMU with `cargo xtask firmware`)";

const ESTIMATE_BASIS: &str = "estimated from instructions per MAC measured in QEMU by \
     `cargo xtask firmware` on MNIST 784-128-10; not cycles";

/// Why a per-feature input stage makes the input-stage figure a lower bound.
const PER_FEATURE_INPUT_NOTE: &str = "the input-stage estimate is a lower bound: it was \
     measured with one shared input entry (a byte table for raw 0..255), and a per-feature \
     (standardize) input stage costs more per feature";

/// MACs per output neuron of the measured network: 101,632 MACs over 128 + 10 outputs.
const MEASURED_MACS_PER_OUTPUT: f64 = 101_632.0 / 138.0;

/// Why fewer MACs per output make the network figure low. The digits figure is
/// `cargo xtask firmware`'s on the `microbit` machine (README, "On emulated microcontrollers").
const SMALL_LAYERS_NOTE: &str = "per-output and per-layer work weighs more when layers have \
     fewer MACs per output than the measured network (736), so the network figure is low for \
     this model: on the Cortex-M0 the digits 64-128-10 network measured 7.09 instructions per \
     MAC, against 3.90 on MNIST";

/// Why a table activation is not in the per-MAC figure.
const TABLE_ACTIVATION_NOTE: &str = "the measured network has relu and identity layers; a \
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
#[error("{path}: the int8 model does not fit: {detail}")]
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
    /// The blob's length, for a blob.
    blob_len: Option<usize>,
    /// The blob's planned arena (its scratch), for a blob.
    arena: Option<usize>,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct LayerReport {
    index: usize,
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
    /// The ping-pong activation buffer: max over layers of n_in + n_out bytes.
    int8_scratch_bytes: usize,
    /// `Model::run`'s raw input, n_inputs i32 values.
    int8_input_bytes: usize,
    /// `Model::run`'s logits, n_outputs i8 values.
    int8_logits_bytes: usize,
    /// Scratch + input + logits: what the budget check counts.
    int8_total_bytes: usize,
}

#[derive(Debug, Serialize)]
struct Totals {
    parameters: usize,
    macs: usize,
    flash: FlashReport,
    ram: RamReport,
    peak_stack_bytes: Option<usize>,
    peak_stack: &'static str,
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

#[derive(Debug, Serialize)]
struct Fit {
    representation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flash: Option<FitItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ram: Option<FitItem>,
    fits: bool,
}

#[derive(Debug, Serialize)]
struct CoreEstimate {
    core: &'static str,
    qemu_machine: &'static str,
    target: &'static str,
    kernel: &'static str,
    insns_per_mac: f64,
    insns_per_input: f64,
    /// insns_per_mac x the model's MACs, rounded.
    network_insns: u64,
    /// insns_per_input x the model's input features, rounded.
    input_stage_insns: u64,
    /// network + input stage.
    total_insns: u64,
}

#[derive(Debug, Serialize)]
struct InstructionEstimate {
    basis: &'static str,
    /// True for a per-feature input stage, which the measurement did not cover.
    input_stage_lower_bound: bool,
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
    instructions_per_inference: InstructionEstimate,
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fit: Option<Fit>,
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    // Flags first: a usage error wins over a bad file.
    let flash_budget = args
        .flash
        .as_deref()
        .map(|text| parse_size("--flash", text))
        .transpose()?;
    let ram_budget = args
        .ram
        .as_deref()
        .map(|text| parse_size("--ram", text))
        .transpose()?;

    let summary = read_model(&args.file)?;
    let report = build_report(&args.file, summary, flash_budget, ram_budget);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    match &report.fit {
        Some(fit) if !fit.fits => Err(DoesNotFit {
            path: args.file.clone(),
            detail: fit_failure(fit),
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
        .map(|layer| {
            use crate::nn::Activation;
            Layer {
                n_inputs: layer.n_inputs,
                n_outputs: layer.n_outputs,
                activation: layer.activation.to_string(),
                int8_kind: match layer.activation {
                    Activation::Identity => Int8Kind::Identity,
                    Activation::Relu | Activation::Relu6 => Int8Kind::Relu,
                    Activation::LeakyRelu { .. } | Activation::Tanh | Activation::Sigmoid => {
                        Int8Kind::Table
                    }
                },
                weights: layer.weights.len(),
                biases: layer.bias.len(),
                blob_section: None,
                graph: None,
            }
        })
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
        blob_len: None,
        arena: None,
        notes: Vec::new(),
    })
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
        });
    }
    let per_feature = input_entries > 1;
    let (normalization, normalization_values) = if per_feature {
        (
            format!("per-feature input stage ({input_entries} entries: standardize)"),
            2 * model.n_inputs(),
        )
    } else {
        ("one shared input entry (scale or none)".to_owned(), 1usize)
    };
    let notes = vec![
        "int8 layer bytes are the layer sections stored in the blob; the f32 figures are what the same \
         shapes take as 4-byte floats, with the normalization counted as 1 value (shared input entry) \
         or 2 per feature (per-feature entries)"
            .to_owned(),
    ];
    Ok(Summary {
        format: "kiln-blob",
        format_description: format!(
            "kiln int8 model blob (format version {}, {} bytes, CRC ok)",
            kiln_runtime::FORMAT_VERSION,
            bytes.len()
        ),
        layers,
        n_inputs: model.n_inputs(),
        normalization,
        normalization_values,
        input_entries,
        blob_len: Some(bytes.len()),
        arena: Some(model.scratch_len()),
        notes,
    })
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
        blob_len: None,
        arena: None,
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

fn fit_item(budget: u64, used: usize) -> FitItem {
    let used = used as u64;
    let margin = budget as i64 - used as i64;
    FitItem {
        budget_bytes: budget,
        used_bytes: used,
        fits: used <= budget,
        margin_bytes: margin,
        margin_percent: (margin as f64 / budget as f64 * 1000.0).round() / 10.0,
    }
}

/// Instructions per inference on each measured core: the measured rates times the model's
/// MACs and input features.
fn estimate_instructions(summary: &Summary, macs: usize) -> InstructionEstimate {
    if summary.layers.iter().any(|l| l.graph.is_some()) {
        return InstructionEstimate {
            basis: GRAPH_BASIS,
            input_stage_lower_bound: false,
            notes: Vec::new(),
            cores: Vec::new(),
        };
    }
    let scaled = |rate: f64, count: usize| (rate * count as f64).round() as u64;
    let cores = MEASURED_CORES
        .iter()
        .map(|m| {
            let network_insns = scaled(m.insns_per_mac, macs);
            let input_stage_insns = scaled(m.insns_per_input, summary.n_inputs);
            CoreEstimate {
                core: m.core,
                qemu_machine: m.qemu_machine,
                target: m.target,
                kernel: m.kernel,
                insns_per_mac: m.insns_per_mac,
                insns_per_input: m.insns_per_input,
                network_insns,
                input_stage_insns,
                total_insns: network_insns + input_stage_insns,
            }
        })
        .collect();
    let input_stage_lower_bound = summary.input_entries > 1;
    let mut notes = Vec::new();
    if input_stage_lower_bound {
        notes.push(PER_FEATURE_INPUT_NOTE);
    }
    let n_outputs: usize = summary.layers.iter().map(|l| l.n_outputs).sum();
    if n_outputs > 0 && (macs as f64 / n_outputs as f64) < MEASURED_MACS_PER_OUTPUT {
        notes.push(SMALL_LAYERS_NOTE);
    }
    if summary
        .layers
        .iter()
        .any(|l| l.int8_kind == Int8Kind::Table)
    {
        notes.push(TABLE_ACTIVATION_NOTE);
    }
    InstructionEstimate {
        basis: ESTIMATE_BASIS,
        input_stage_lower_bound,
        notes,
        cores,
    }
}

fn build_report(
    path: &Path,
    mut summary: Summary,
    flash_budget: Option<u64>,
    ram_budget: Option<u64>,
) -> Report {
    let mut notes = std::mem::take(&mut summary.notes);
    let layers: Vec<LayerReport> = summary
        .layers
        .iter()
        .enumerate()
        .map(|(index, layer)| LayerReport {
            index,
            n_inputs: layer.n_inputs,
            n_outputs: layer.n_outputs,
            shape: layer.graph.as_ref().map_or_else(
                || format!("{} -> {}", layer.n_inputs, layer.n_outputs),
                |(label, _)| label.clone(),
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
    let ram = RamReport {
        f32_scratch_bytes: scratch * 4,
        int8_scratch_bytes: scratch,
        int8_input_bytes: summary.n_inputs * 4,
        int8_logits_bytes: n_outputs,
        int8_total_bytes: scratch + summary.n_inputs * 4 + n_outputs,
    };
    let fit = (flash_budget.is_some() || ram_budget.is_some()).then(|| {
        let flash = flash_budget.map(|budget| fit_item(budget, int8_bytes));
        let ram_item = ram_budget.map(|budget| fit_item(budget, ram.int8_total_bytes));
        let fits =
            flash.as_ref().is_none_or(|f| f.fits) && ram_item.as_ref().is_none_or(|r| r.fits);
        Fit {
            representation: "int8",
            flash,
            ram: ram_item,
            fits,
        }
    });
    let instructions_per_inference = estimate_instructions(&summary, macs);
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
            peak_stack_bytes: None,
            peak_stack: STACK_UNKNOWN,
        },
        instructions_per_inference,
        notes,
        fit,
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

fn fit_failure(fit: &Fit) -> String {
    [("flash", &fit.flash), ("RAM", &fit.ram)]
        .into_iter()
        .filter_map(|(what, item)| item.as_ref().filter(|i| !i.fits).map(|i| (what, i)))
        .map(|(what, item)| {
            format!(
                "{what} needs {} bytes, budget {} ({} bytes over)",
                item.used_bytes, item.budget_bytes, -item.margin_bytes
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn print_report(report: &Report) {
    let totals = &report.totals;
    println!("kiln inspect {}", report.file.display());
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
        println!("  {label:<14} {value}");
    }
    println!();

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
    let mut widths = header.map(str::len);
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (col, cell) in cells.iter().enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if col <= 2 {
                text.push_str(&format!("  {cell:<w$}", w = widths[col]));
            } else {
                text.push_str(&format!("  {cell:>w$}", w = widths[col]));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header);
    for row in &table {
        line(row.each_ref().map(String::as_str));
    }
    println!();

    let flash = &totals.flash;
    let ram = &totals.ram;
    let int8_label = if flash.int8_source == "estimate" {
        "(estimate)"
    } else {
        "(the blob's length)"
    };
    let mut rows = vec![
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
            format!(
                "{} bytes (the buffer plan: for a chain, max over layers of n_in + n_out)",
                ram.int8_scratch_bytes
            ),
        ),
        (
            "RAM int8",
            format!(
                "{} bytes: scratch {} + raw input {} (i32) + logits {}; stack not included",
                ram.int8_total_bytes,
                ram.int8_scratch_bytes,
                ram.int8_input_bytes,
                ram.int8_logits_bytes
            ),
        ),
        ("peak stack", totals.peak_stack.to_owned()),
    ];
    if let Some(fit) = &report.fit {
        if let Some(item) = &fit.flash {
            rows.push(("fit int8", fit_line("flash", item)));
        }
        if let Some(item) = &fit.ram {
            rows.push(("fit int8", fit_line("RAM", item)));
        }
    }
    for (label, value) in rows {
        println!("  {label:<14} {value}");
    }
    println!();
    print_instruction_estimate(&report.instructions_per_inference);
    for note in &report.notes {
        println!("  note: {note}");
    }
}

/// The estimate table, then the lines that say what it rests on.
fn print_instruction_estimate(estimate: &InstructionEstimate) {
    if estimate.cores.is_empty() {
        println!("  instructions per inference: {}", estimate.basis);
        return;
    }
    println!("  instructions per inference (estimate)");
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
    let mut widths = header.map(str::len);
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (col, cell) in cells.iter().enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if col <= 1 {
                text.push_str(&format!("  {cell:<w$}", w = widths[col]));
            } else {
                text.push_str(&format!("  {cell:>w$}", w = widths[col]));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header);
    for row in &table {
        line(row.each_ref().map(String::as_str));
    }
    println!("  note: {}", estimate.basis);
    for note in &estimate.notes {
        println!("  note: {note}");
    }
}
