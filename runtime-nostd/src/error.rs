//! The crate's one error type.

use core::fmt;

/// Everything that can go wrong: loading a blob, calling with wrong buffers, or (feature
/// `encode`) describing a model the format cannot hold.
///
/// Layers are numbered from 0, channels (output rows) and features from 0, offsets are byte
/// offsets from the start of the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // ---- framing ---------------------------------------------------------------------------
    /// The blob ends before a part that must be there.
    Truncated { needed: u32, available: u32 },
    /// The blob does not start with `b"KILN"`.
    BadMagic,
    /// The format version is not one this runtime reads.
    UnsupportedVersion { found: u16 },
    /// The header's total length is smaller than the slice: bytes trail the blob.
    LengthMismatch { header: u32, actual: u32 },
    /// The CRC-32 over the blob does not match the stored one: the blob is corrupted.
    CrcMismatch { stored: u32, computed: u32 },
    /// The blob does not start at a 4-byte-aligned address (it starts `bytes_past` bytes past
    /// one): the runtime reads its records as whole words. `kiln bake --rust` places it so.
    BlobAlignment { bytes_past: u8 },

    // ---- contents --------------------------------------------------------------------------
    /// The model has no layer.
    NoLayers,
    /// The model has more layers than [`crate::MAX_LAYERS`].
    TooManyLayers { found: u16 },
    /// The value table does not have one value per node plus the model's input.
    ValueCount { found: u16, nodes: u16 },
    /// A value's height, width or channels is 0.
    EmptyValue { value: u16 },
    /// A value's bytes end past the header's arena length.
    ArenaOverflow {
        value: u16,
        end: u32,
        arena_len: u32,
    },
    /// Two values alive at the same node share bytes of the arena: the plan is unsafe.
    ArenaOverlap { a: u16, b: u16 },
    /// The model's input value does not have the header's input count.
    InputShapeMismatch { header: u32, value: u32 },
    /// A node names a value it cannot read or write (node `k` writes value `k + 1` and reads
    /// earlier values; the second input is an earlier value for an `Add` and `0xFFFF` for every
    /// other layer type).
    BadValueId { layer: u16, value: u16 },
    /// Unknown layer kind byte.
    BadLayerKind { layer: u16, kind: u8 },
    /// A known layer kind that this program's `Model<KINDS>` does not link (see
    /// [`crate::kinds`]): build with a set that holds it, e.g. the default `kinds::ALL`.
    KindNotLinked { layer: u16, kind: u8 },
    /// Kernel or stride 0, a kernel larger than its (padded) input, a pooling stride that does
    /// not divide `in - k`, or an unknown padding byte.
    BadGeometry { layer: u16 },
    /// A node's output value does not have the shape the node's parameters give.
    NodeShape { layer: u16, value: u16 },
    /// A max pool's output zero point is not its input's.
    MaxPoolZeroPoint { layer: u16, input: i8, output: i8 },
    /// The input stage's fraction bits exceed [`crate::MAX_INPUT_FRAC_BITS`].
    InputFracBits { found: u8 },
    /// An entry of the input stage's byte table is not the input map of that byte.
    InputTable { raw: u8 },
    /// A reserved or padding byte is not zero.
    ReservedNonZero { offset: u32 },
    /// The input stage has neither 1 entry (shared) nor one per input feature.
    InputEntries { found: u32, n_inputs: u32 },
    /// An input-stage multiplier is outside `[2^30, 2^31)`.
    BadInputMultiplier { feature: u32, multiplier: i32 },
    /// An input-stage shift is outside `[1, 62]`.
    BadInputShift { feature: u32, shift: u8 },
    /// A layer (or the model, as layer 0) has zero inputs or zero outputs.
    EmptyLayer { layer: u16 },
    /// A layer's input count is not the size of the value it reads, or (encode) a depthwise
    /// layer's output channels are not its input channels.
    ShapeMismatch {
        layer: u16,
        expected: u32,
        found: u32,
    },
    /// Unknown activation kind byte.
    BadActivation { layer: u16, kind: u8 },
    /// A layer's input zero point is not the zero point of what feeds it (the input stage's or
    /// the previous layer's output zero point).
    ZeroPointMismatch { layer: u16, expected: i8, found: i8 },
    /// A layer section's stored length is not the one its shapes and activation give.
    SectionLength {
        layer: u16,
        stored: u32,
        expected: u32,
    },
    /// A requantization multiplier is outside `[2^30, 2^31)`.
    BadMultiplier {
        layer: u16,
        channel: u32,
        multiplier: i32,
    },
    /// A requantization shift is outside `[1, 62]`.
    BadShift { layer: u16, channel: u32, shift: u8 },
    /// `|bias| + 128 * sum |w|` (dense), `|bias| + 32768 * sum |w|` (dense on int16
    /// activations), `|bias| + 255 * sum |w|` (convolutions) or `255 kh kw` (average pool)
    /// exceeds `i32::MAX`: the accumulator could overflow.
    AccumulatorOverflow { layer: u16, channel: u32 },
    /// The header's output count is not the last layer's.
    OutputShapeMismatch { header: u32, last_layer: u32 },
    /// The output section's zero point is not the last layer's output zero point.
    OutputZeroPointMismatch { output: i8, last_layer: i8 },
    /// The output scale (f32 bits) is not a positive finite non-zero number.
    BadOutputScale { bits: u32 },
    /// The header's arena length is not the end of the last byte of the value table's values.
    ScratchLenMismatch { stored: u32, computed: u32 },
    /// Bytes remain between the output section and the CRC.
    TrailingBytes { count: u32 },
    /// A size does not fit in 32 bits or in this target's `usize`.
    TooLarge,
    /// A value's element type byte (format version 4) is neither `0` (int8) nor `1` (int16).
    BadValueType { value: u16, dtype: u8 },
    /// A value's element type is not the model input's: a model's activations are all int8 or
    /// all int16 (the 16x8 scheme).
    MixedValueTypes { value: u16 },
    /// An int16 value's zero point is not 0 (int16 activations are symmetric).
    Int16ZeroPoint { value: u16, found: i8 },
    /// An int16 value starts at an odd arena offset.
    Int16Alignment { value: u16, offset: u32 },
    /// A layer an int16 model cannot have in this version: only dense layers with an identity
    /// or ReLU activation run on int16 activations.
    Int16Layer { layer: u16 },
    /// A layer kind that a blob of this format version cannot hold: an `Add` (kind 6) needs
    /// version 5.
    KindVersion { layer: u16, kind: u8, version: u16 },
    /// The two inputs of an `Add`, values `a` and `b`, do not have the same shape.
    AddShapes { layer: u16, a: u16, b: u16 },
    /// An `Add` weight (`operand` 0 for the first input, 1 for the second) is outside
    /// `[-2^22, 2^22]`, or `[-2^16, 2^16]` in a blob of format version 5 to 7.
    AddWeight {
        layer: u16,
        operand: u8,
        weight: i32,
    },
    /// An `Add` with a table activation: it takes identity or ReLU (the fused clamp) only.
    AddActivation { layer: u16 },
    /// A node marked in place (format version 6) whose kind cannot run in place: only a
    /// depthwise convolution, a pointwise one (1x1, stride 1), a shape-keeping stride-1 one
    /// (from version 7) and an `Add` do.
    InPlaceKind { layer: u16 },
    /// An in-place node whose output and input overlap in any other way than its kind's: the
    /// output at the input's offset (depthwise, a pointwise convolution with
    /// `c_out <= c_in`, an `Add` over either operand), or a pointwise convolution's input at the
    /// end of its output (`c_out > c_in`).
    InPlaceOverlap { layer: u16 },
    /// An in-place node's temporary does not have its kind's length (`h w` of the input for a
    /// depthwise convolution, `c_out` for a pointwise one, 0 and offset 0 for an `Add`) or ends
    /// past the arena.
    InPlaceTemp {
        layer: u16,
        offset: u32,
        len: u32,
        expected: u32,
    },
    /// An in-place node's temporary shares bytes with a value alive at that node.
    TempOverlap { layer: u16, value: u16 },

    // ---- calls -----------------------------------------------------------------------------
    /// The input slice does not have the model's input count.
    InputLength { expected: u32, got: u32 },
    /// The output slice does not have the expected length.
    OutputLength { expected: u32, got: u32 },
    /// The scratch buffer is shorter than [`crate::Model::scratch_len`].
    BufferTooSmall { needed: u32, got: u32 },
    /// An int8 call (`run`, `run_quantized`, ...) on a model with int16 activations, or an
    /// int16 call (`run_i16`, ...) on an int8 model: `model_bits` is the model's width.
    ActivationType { model_bits: u8 },
    /// A direct kernel call with inconsistent lengths (weights not `n_out * n_in` bytes, bias or
    /// multipliers not `4 * n_out` bytes, shifts not `n_out`, no input) or `clamp_min > clamp_max`.
    KernelArguments,

    // ---- encode ----------------------------------------------------------------------------
    /// A `LayerSpec` vector does not have the length its shapes give.
    SpecLength {
        layer: u16,
        field: &'static str,
        expected: u32,
        found: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, available } => {
                write!(f, "model blob truncated: needs {needed} bytes, {available} available")
            }
            Error::BadMagic => f.write_str("not a kiln model blob: bad magic (expected \"KILN\")"),
            Error::UnsupportedVersion { found: 1 } => write!(
                f,
                "model blob format version 1 is an old format this runtime no longer reads \
                 (it reads versions {} to {}): re-bake it with `kiln bake` from the model file",
                crate::blob::OLDEST_FORMAT_VERSION,
                crate::blob::FORMAT_VERSION
            ),
            Error::UnsupportedVersion { found: 4 } => f.write_str(
                "model blob version 4 holds int16 activations, which this program does not link: build with kinds::INT16 (kiln bake --rust writes the set a model needs)",
            ),
            Error::UnsupportedVersion { found } => write!(
                f,
                "unsupported model blob version {found} (this runtime reads versions {} to {})",
                crate::blob::OLDEST_FORMAT_VERSION,
                crate::blob::FORMAT_VERSION
            ),
            Error::InputFracBits { found } => write!(
                f,
                "input stage: {found} fraction bits, at most {} are allowed",
                crate::blob::MAX_INPUT_FRAC_BITS
            ),
            Error::LengthMismatch { header, actual } => write!(
                f,
                "model blob length mismatch: header says {header} bytes, slice has {actual}"
            ),
            Error::CrcMismatch { stored, computed } => write!(
                f,
                "model blob corrupted: stored CRC-32 {stored:#010x}, computed {computed:#010x}"
            ),
            Error::NoLayers => f.write_str("model has no layer"),
            Error::TooManyLayers { found } => write!(
                f,
                "model has {found} layers, at most {} are supported",
                crate::model::MAX_LAYERS
            ),
            Error::ValueCount { found, nodes } => write!(
                f,
                "value table has {found} values, {nodes} nodes need {}",
                u32::from(nodes) + 1
            ),
            Error::EmptyValue { value } => {
                write!(f, "value {value} has a zero height, width or channel count")
            }
            Error::ArenaOverflow { value, end, arena_len } => write!(
                f,
                "value {value} ends at byte {end} of the arena, past its length {arena_len}"
            ),
            Error::ArenaOverlap { a, b } => write!(
                f,
                "values {a} and {b} are alive at the same node but share arena bytes"
            ),
            Error::InputShapeMismatch { header, value } => write!(
                f,
                "header says {header} inputs, the input value has {value}"
            ),
            Error::BadValueId { layer, value } => {
                write!(f, "layer {layer}: value id {value} is not one it can use")
            }
            Error::BadLayerKind { layer, kind } => {
                write!(f, "layer {layer}: unknown layer kind {kind}")
            }
            Error::KindNotLinked { layer, kind } => write!(
                f,
                "layer {layer}: layer kind {kind} is not in this program's Model<KINDS> \
                 (kiln_runtime::kinds), so its kernel is not linked"
            ),
            Error::BadGeometry { layer } => write!(
                f,
                "layer {layer}: kernel or stride 0, a kernel larger than its input, a pooling \
                 stride that does not divide the input, or an unknown padding"
            ),
            Error::NodeShape { layer, value } => write!(
                f,
                "layer {layer}: output value {value} does not have the shape its parameters give"
            ),
            Error::MaxPoolZeroPoint { layer, input, output } => write!(
                f,
                "layer {layer}: max pool output zero point {output} differs from its input's {input}"
            ),
            Error::InputTable { raw } => write!(
                f,
                "input stage byte table entry {raw} is not the input map of that byte"
            ),
            Error::ReservedNonZero { offset } => {
                write!(f, "reserved or padding byte at offset {offset} is not zero")
            }
            Error::InputEntries { found, n_inputs } => write!(
                f,
                "input stage has {found} entries, expected 1 (shared) or {n_inputs} (one per input)"
            ),
            Error::BadInputMultiplier { feature, multiplier } => write!(
                f,
                "input feature {feature}: multiplier {multiplier} outside [2^30, 2^31)"
            ),
            Error::BadInputShift { feature, shift } => {
                write!(f, "input feature {feature}: shift {shift} outside [1, 62]")
            }
            Error::EmptyLayer { layer } => {
                write!(f, "layer {layer} has zero inputs or zero outputs")
            }
            Error::ShapeMismatch { layer, expected, found } => write!(
                f,
                "layer {layer} takes {found} inputs, but what feeds it gives {expected}"
            ),
            Error::BadActivation { layer, kind } => {
                write!(f, "layer {layer}: unknown activation kind {kind}")
            }
            Error::ZeroPointMismatch { layer, expected, found } => write!(
                f,
                "layer {layer}: input zero point {found}, but what feeds it has zero point {expected}"
            ),
            Error::SectionLength { layer, stored, expected } => write!(
                f,
                "layer {layer}: section length {stored}, its shapes give {expected}"
            ),
            Error::BadMultiplier { layer, channel, multiplier } => write!(
                f,
                "layer {layer} channel {channel}: multiplier {multiplier} outside [2^30, 2^31)"
            ),
            Error::BadShift { layer, channel, shift } => write!(
                f,
                "layer {layer} channel {channel}: shift {shift} outside [1, 62]"
            ),
            Error::AccumulatorOverflow { layer, channel } => write!(
                f,
                "layer {layer} channel {channel}: worst-case accumulator (|bias| + 128 * sum |w| for dense, + 255 * sum |w| for convolutions) exceeds i32"
            ),
            Error::OutputShapeMismatch { header, last_layer } => write!(
                f,
                "header says {header} outputs, the last layer gives {last_layer}"
            ),
            Error::OutputZeroPointMismatch { output, last_layer } => write!(
                f,
                "output zero point {output} differs from the last layer's output zero point {last_layer}"
            ),
            Error::BadOutputScale { bits } => write!(
                f,
                "output scale (f32 bits {bits:#010x}) is not a positive finite non-zero number"
            ),
            Error::ScratchLenMismatch { stored, computed } => write!(
                f,
                "header arena length {stored}, the values end at {computed}"
            ),
            Error::TrailingBytes { count } => {
                write!(f, "{count} unexpected bytes between the output section and the CRC")
            }
            Error::TooLarge => f.write_str("a model size does not fit in 32 bits or in usize"),
            Error::BadValueType { value, dtype } => write!(
                f,
                "value {value}: unknown element type {dtype} (0 is int8, 1 is int16)"
            ),
            Error::MixedValueTypes { value } => write!(
                f,
                "value {value}: its element type is not the model input's (a model's activations are all int8 or all int16)"
            ),
            Error::Int16ZeroPoint { value, found } => write!(
                f,
                "value {value}: an int16 value has zero point 0, found {found}"
            ),
            Error::Int16Alignment { value, offset } => write!(
                f,
                "value {value}: an int16 value starts at an even arena offset, found {offset}"
            ),
            Error::Int16Layer { layer } => write!(
                f,
                "layer {layer}: int16 activations run dense layers with an identity or ReLU activation only in this runtime version"
            ),
            Error::KindVersion { layer, kind, version } => write!(
                f,
                "layer {layer}: layer kind {kind} needs a newer blob format (Add: version {}), the blob is version {version}",
                crate::blob::ADD_VERSION
            ),
            Error::AddShapes { layer, a, b } => write!(
                f,
                "layer {layer}: an Add's inputs, values {a} and {b}, have different shapes"
            ),
            Error::AddWeight { layer, operand, weight } => write!(
                f,
                "layer {layer}: Add weight {weight} of input {operand} is outside [-2^22, 2^22] ([-2^16, 2^16] before blob version 8)"
            ),
            Error::AddActivation { layer } => write!(
                f,
                "layer {layer}: an Add takes an identity or ReLU activation, not a table"
            ),
            Error::InPlaceKind { layer } => write!(
                f,
                "layer {layer}: marked in place, but only a depthwise convolution, a 1x1 stride-1 convolution, a shape-keeping stride-1 convolution (format version 7) and an Add run in place"
            ),
            Error::InPlaceOverlap { layer } => write!(
                f,
                "layer {layer}: runs in place, but its output and input overlap in a way its kernel cannot compute"
            ),
            Error::InPlaceTemp { layer, offset, len, expected } => write!(
                f,
                "layer {layer}: in-place temporary of {len} bytes at arena offset {offset}, expected {expected} bytes inside the arena"
            ),
            Error::TempOverlap { layer, value } => write!(
                f,
                "layer {layer}: its in-place temporary shares arena bytes with value {value}, alive at that layer"
            ),
            Error::ActivationType { model_bits } => write!(
                f,
                "the model's activations are int{model_bits}: call {}",
                if model_bits == 16 {
                    "run_i16, run_quantized_i16 or quantize_input_i16"
                } else {
                    "run, run_bytes, run_quantized or quantize_input"
                }
            ),
            Error::InputLength { expected, got } => {
                write!(f, "input has {got} values, the model takes {expected}")
            }
            Error::OutputLength { expected, got } => {
                write!(f, "output buffer has {got} values, expected {expected}")
            }
            Error::BufferTooSmall { needed, got } => {
                write!(f, "scratch buffer has {got} bytes, the model needs {needed}")
            }
            Error::BlobAlignment { bytes_past } => write!(
                f,
                "the blob starts {bytes_past} byte(s) past a 4-byte boundary; place it at a 4-byte-aligned address (as `kiln bake --rust` does)"
            ),
            Error::KernelArguments => f.write_str(
                "kernel arguments inconsistent: lengths do not match the shapes or clamp_min > clamp_max",
            ),
            Error::SpecLength { layer, field, expected, found } => write!(
                f,
                "layer {layer}: {field} has {found} entries, expected {expected}"
            ),
        }
    }
}

impl core::error::Error for Error {}

/// `usize` to `u32` for error fields, saturating.
pub(crate) fn u32_sat(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
