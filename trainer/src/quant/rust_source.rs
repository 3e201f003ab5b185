//! The `.kiln` blob as Rust source for firmware: the bytes in a 4-byte aligned
//! static, the shapes as constants, and a typed wrapper around `kiln_runtime`.

use std::fmt::Write as _;

/// What the generated source needs to know besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceInfo<'a> {
    pub n_inputs: usize,
    pub n_outputs: usize,
    pub scratch_len: usize,
    /// `Model::fast_scratch_len`: room for the Cortex-M4/M7 kernel to widen each layer's input.
    pub fast_scratch_len: usize,
    /// One line describing the model, for the header comment.
    pub description: &'a str,
    /// `Model::layer_kinds`: the kernels the firmware links (`kiln_runtime::kinds`).
    pub layer_kinds: u8,
}

/// `kinds::DENSE | kinds::CONV2D`-style source for a set of layer kinds.
fn kinds_source(set: u8) -> String {
    let used: Vec<String> = kiln_runtime::kinds::NAMES
        .iter()
        .filter(|(bit, _)| set & bit != 0)
        .map(|(_, name)| format!("kiln_runtime::kinds::{name}"))
        .collect();
    if used.is_empty() {
        "kiln_runtime::kinds::ALL".to_owned()
    } else {
        used.join(" | ")
    }
}

/// The generated module. It needs only `kiln-runtime` (no_std) to compile.
pub fn rust_source(blob: &[u8], info: SourceInfo<'_>) -> String {
    let mut out = String::with_capacity(blob.len() * 6 + 2048);
    let SourceInfo {
        n_inputs,
        n_outputs,
        scratch_len,
        fast_scratch_len,
        description,
        layer_kinds,
    } = info;
    let description = description.replace(['\n', '\r'], " ");
    let int16 = layer_kinds & kiln_runtime::kinds::INT16 != 0;
    // Read from the blob itself, so the constant cannot disagree with it.
    let input_frac_bits =
        kiln_runtime::Model::from_bytes(blob).map_or(0, |model| model.input_frac_bits());
    let input_quantization = match super::input_quantization(blob).filter(|_| !int16) {
        Some(q) => format!(
            "/// The int8 input tensor's quantization, for code that quantizes real values itself and\n\
             /// calls `run_quantized` (as TFLM users do): `q = clamp(round(x / INPUT_SCALE) +\n\
             /// INPUT_ZERO_POINT, -128, 127)`, `x` in the data's own units. `run` does this itself from\n\
             /// raw values, exactly; the two agree but for rounding at the step boundaries.\n\
             pub const INPUT_SCALE: f32 = {:?};\n\
             /// See [`INPUT_SCALE`].\n\
             pub const INPUT_ZERO_POINT: i8 = {};\n",
            q.scale, q.zero_point
        ),
        None if int16 => "/// No `INPUT_SCALE`: int16 activations; pass raw values to `run`.\n".to_owned(),
        None => "/// No `INPUT_SCALE`: each input feature has its own scale and offset (standardize), so\n\
                 /// pass raw values to `run`.\n"
            .to_owned(),
    };
    let _ = write!(
        out,
        r#"//! An {width} model baked by kiln {version}. Generated code: do not edit.
//!
//! {description}
//!
//! Use it with the `kiln-runtime` crate (no_std, no allocation, no float):
//!
//! ```ignore
//! let net = model::Network::new()?;
//! let mut scratch = [0i8; model::SCRATCH_LEN];
//! let mut logits = [0{logit}; model::N_OUTPUTS];
//! let class = net.run(&raw_inputs, &mut scratch, &mut logits)?;
//! ```

#![allow(dead_code)]

/// Raw input values per sample (fed as i32, e.g. pixels 0..=255).
pub const N_INPUTS: usize = {n_inputs};
/// The raw inputs' fraction bits: a real feature value `x` is fed as `round(x * 2^bits)`,
/// rounding half to even (0: the model takes the integers of its data as they are).
pub const INPUT_FRAC_BITS: u8 = {input_frac_bits};
{input_quantization}
/// {width} logits per sample.
pub const N_OUTPUTS: usize = {n_outputs};
/// The scratch RAM one inference needs, in bytes.
pub const SCRATCH_LEN: usize = {scratch_len};
/// A scratch length that lets the fastest kernel run (see [`Network::run_fast`]): on
/// Cortex-M4/M7 each layer's input is widened to 16-bit lanes once in the extra bytes; other
/// cores ignore them. The logits are the same with either length.
pub const FAST_SCRATCH_LEN: usize = {fast_scratch_len};
/// The length of the model blob, in bytes (its flash footprint).
pub const MODEL_LEN: usize = {len};
/// The layer kinds the model uses: the firmware links only their validation and kernels.
pub const LAYER_KINDS: u8 = {kinds};
/// The runtime model type of this model.
pub type Model = kiln_runtime::Model<'static, LAYER_KINDS>;

/// Keeps the blob 4-byte aligned in flash.
#[repr(C, align(4))]
pub struct AlignedBlob(pub [u8; MODEL_LEN]);

/// The aligned storage of the model blob.
pub static MODEL_ALIGNED: AlignedBlob = AlignedBlob(MODEL_BLOB_BYTES);

/// The model blob (the `.kiln` file), 4-byte aligned.
pub static MODEL_BLOB: &[u8; MODEL_LEN] = &MODEL_ALIGNED.0;

/// Parses the embedded blob; the result borrows it for `'static`.
pub fn model() -> Result<Model, kiln_runtime::Error> {{
    Model::with_kinds(MODEL_BLOB)
}}

/// The model with its shapes in the types.
#[derive(Debug, Clone, Copy)]
pub struct Network {{
    model: Model,
}}

impl Network {{
    /// Parses the embedded blob (checks every header field and bound once).
    pub fn new() -> Result<Self, kiln_runtime::Error> {{
        Ok(Self {{ model: model()? }})
    }}

    /// The underlying runtime model.
    pub fn model(&self) -> &Model {{
        &self.model
    }}

    /// Runs one sample: writes the {width} logits and returns their argmax.
    pub fn run(
        &self,
        input: &[i32; N_INPUTS],
        scratch: &mut [i8; SCRATCH_LEN],
        logits: &mut [{logit}; N_OUTPUTS],
    ) -> Result<usize, kiln_runtime::Error> {{
        self.model.{run}(input, scratch, logits)
    }}

    /// [`run`](Network::run) with a [`FAST_SCRATCH_LEN`] scratch: the same logits, fewer
    /// instructions on Cortex-M4/M7 for more RAM.
    pub fn run_fast(
        &self,
        input: &[i32; N_INPUTS],
        scratch: &mut [i8; FAST_SCRATCH_LEN],
        logits: &mut [{logit}; N_OUTPUTS],
    ) -> Result<usize, kiln_runtime::Error> {{
        self.model.{run}(input, scratch, logits)
    }}
}}

const MODEL_BLOB_BYTES: [u8; MODEL_LEN] = ["#,
        version = env!("CARGO_PKG_VERSION"),
        len = blob.len(),
        kinds = kinds_source(layer_kinds),
        width = if int16 { "int16" } else { "int8" },
        logit = if int16 { "i16" } else { "i8" },
        run = if int16 { "run_i16" } else { "run" },
    );
    for (idx, byte) in blob.iter().enumerate() {
        if idx % 16 == 0 {
            out.push_str("\n    ");
        } else {
            out.push(' ');
        }
        let _ = write!(out, "0x{byte:02x},");
    }
    out.push_str("\n];\n");
    out
}

/// Reads back the bytes of `MODEL_BLOB_BYTES` from generated source (for tests and tools).
pub fn parse_blob_bytes(source: &str) -> Option<Vec<u8>> {
    let start = source.find("const MODEL_BLOB_BYTES")?;
    let body = &source[start..];
    let open = body.find("= [")? + 3;
    let close = body[open..].find("];")? + open;
    body[open..close]
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| u8::from_str_radix(t.strip_prefix("0x")?, 16).ok())
        .collect()
}
