//! A validated model borrowed from its blob, and inference with caller-provided buffers.

use core::fmt;

use crate::blob::{
    geometry, read_node, read_temp, read_value, NodeRecord, Value, ACT_LUT, ACT_RELU,
    INPUT_ENTRY_LEN, KIND_ADD, KIND_AVG_POOL, KIND_CONV2D, KIND_DENSE, KIND_DEPTHWISE,
    KIND_MAX_POOL, NODE_HEADER_LEN, NO_VALUE, PAD_SAME,
};
use crate::error::u32_sat;
use crate::fixed::{clamp_raw, rq_input, sat8};
use crate::kernels::{self, le_i32, AddParams, ConvParams, FcParams, PoolParams};
use crate::kinds;
use crate::Error;

/// The most layers (graph nodes) a model can have; the loader's plan check keeps one `u16` per
/// value on the stack.
pub const MAX_LAYERS: usize = 64;

/// The activation of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Requantize straight to the output parameters.
    Identity,
    /// Identity, then clamp below at the output zero point.
    Relu,
    /// Requantize to the pre-activation zero point, then a 256-entry table.
    Lut,
}

/// The type of a layer (docs/layer-graph.md "Layer types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Dense,
    Conv2d,
    DepthwiseConv2d,
    MaxPool2d,
    AvgPool2d,
    /// The residual `Add` of two values of one shape (`kinds::ADD`, blob format version 5).
    Add,
}

/// The type, shapes and activation of one layer, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerInfo {
    pub kind: LayerKind,
    /// The value the layer reads and the one it writes (layer `k` writes value `k + 1`).
    pub input_value: usize,
    pub output_value: usize,
    /// An [`LayerKind::Add`]'s second input (of `input_shape` too); `None` for every other kind.
    pub second_input_value: Option<usize>,
    /// `[h, w, c]` of the input and output values.
    pub input_shape: [usize; 3],
    pub output_shape: [usize; 3],
    /// `h * w * c` of the input and output values.
    pub n_inputs: usize,
    pub n_outputs: usize,
    /// `[kh, kw]`, `[sh, sw]` and `[top, left]` padding (zero for dense layers).
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub activation: Activation,
    /// The zero point of the layer's output (after the table for [`Activation::Lut`]).
    pub output_zero_point: i8,
    /// The bytes of the layer's record in the blob, header included.
    pub section_len: usize,
    /// The layer writes its output over its input's bytes (format version 6; an `Add` over
    /// either operand): see `docs/layer-graph.md` "Memory: the buffer plan".
    pub in_place: bool,
    /// The arena bytes an in-place layer's kernel uses as its temporary while it runs (one input
    /// plane for a depthwise convolution, one output pixel for a pointwise one, none for an
    /// `Add`); 0 for a layer that is not in place. They count in [`Model::scratch_len`].
    pub temp_len: usize,
}

/// A model blob, validated once and borrowed without copying.
///
/// # Buffers and the plan
///
/// Inference needs one caller-provided `i8` scratch buffer of at least
/// [`scratch_len`](Model::scratch_len) bytes, the blob's `arena_len`. Every value (the quantized
/// input, each layer's output) has a planned offset in it, written by the encoder and proven
/// safe at load: two values alive at the same layer never share a byte, except a layer that
/// runs in place (format version 6: a depthwise or pointwise convolution, or an `Add`; 7: also
/// a shape-keeping convolution, and depthwise rings), whose
/// output is written over the input it is the last reader of, in the one form its kernel
/// computes correctly, with its temporary in arena bytes no live value uses. For a chain of
/// layers without one the plan alternates ends (the input at the front, the next value at the
/// back, ...), so the arena is the largest pair of adjacent tensors. The last value is copied to the caller's
/// `logits` (`n_outputs` bytes). Bytes past `scratch_len` are the dense kernel's workspace
/// ([`fast_scratch_len`](Model::fast_scratch_len)).
///
/// The model holds offsets into the blob and decodes each node record again as it runs.
///
/// `KINDS` is the set of layer kinds this program links ([`crate::kinds`], all by default): a
/// smaller set leaves the other kinds' validation and kernels out of the flash image.
#[derive(Clone, Copy)]
pub struct Model<'a, const KINDS: u8 = { crate::kinds::ALL }> {
    pub(crate) bytes: &'a [u8],
    pub(crate) n_inputs: usize,
    pub(crate) n_outputs: usize,
    pub(crate) n_nodes: usize,
    pub(crate) arena_len: usize,
    /// The largest input of a dense layer (0 without one): sizes the widening workspace.
    pub(crate) widest_dense: usize,
    /// The largest `kernels::conv_workspace_len` of a `Conv2d` layer (0 without one).
    pub(crate) conv_workspace: usize,
    pub(crate) input_zero_point: i8,
    pub(crate) n_entries: usize,
    pub(crate) entries_at: usize,
    /// With one shared entry: the quantized value of every raw byte 0..=255 (pixels, most
    /// sensors), written by the encoder and checked at load.
    pub(crate) byte_table_at: Option<usize>,
    pub(crate) values_at: usize,
    pub(crate) nodes_at: usize,
    /// The arena offsets of the model's input (value 0) and output (the last value), read
    /// once at load: inference reads no value record for them.
    pub(crate) input_at: usize,
    pub(crate) output_at: usize,
    pub(crate) output_scale_bits: u32,
    pub(crate) output_zero_point: i8,
}

// A model is a handful of offsets: at most 128 bytes on a 32-bit core (checked on every target
// this crate builds for, scaled by the pointer width).
const _: () = assert!(core::mem::size_of::<Model<'static>>() <= 32 * core::mem::size_of::<usize>());

impl<const KINDS: u8> fmt::Debug for Model<'_, KINDS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_struct("Model");
        list.field("len", &self.bytes.len())
            .field("n_inputs", &self.n_inputs)
            .field("n_outputs", &self.n_outputs)
            .field("scratch_len", &self.arena_len);
        for i in 0..self.n_nodes {
            if let Some(l) = self.layer(i) {
                list.field(
                    "layer",
                    &format_args!(
                        "{i}: {:?} {:?} -> {:?} {:?}",
                        l.kind, l.input_shape, l.output_shape, l.activation
                    ),
                );
            }
        }
        list.finish()
    }
}

/// The kernels a run uses: the dispatched ones, or the reference everywhere.
trait Kernels {
    fn dense(
        p: &FcParams<'_>,
        input: &[i8],
        workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error>;
    fn conv(
        p: &ConvParams<'_>,
        input: &[i8],
        workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error>;
    fn depthwise(
        p: &ConvParams<'_>,
        input: &[i8],
        workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error>;
    /// A stride-1 shape-keeping depthwise convolution in place over a ring of pending outputs
    /// (`kernels::inplace::depthwise_conv2d_i8_ring_in_place`'s contract).
    fn depthwise_ring(p: &ConvParams<'_>, data: &mut [i8], ring: &mut [i8]) -> Result<(), Error>;
    fn max_pool(p: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error>;
    fn avg_pool(p: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error>;
    fn dense16(p: &kernels::Fc16Params<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error>;
    fn add(p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) -> Result<(), Error>;
    /// An `Add` in place over one operand (`kernels::inplace::add_i8_in_place`'s contract).
    fn add_in_place(
        p: &AddParams,
        data: &mut [i8],
        other: Option<&[i8]>,
        data_is_a: bool,
    ) -> Result<(), Error>;
    /// A pointwise convolution in place (`kernels::inplace`): the output over `data`, the
    /// input from `input_at`, the temporary `pixel`.
    fn pointwise_in_place(
        p: &ConvParams<'_>,
        data: (&mut [i8], usize),
        pixel: &mut [i8],
        workspace: &mut [i8],
    ) -> Result<(), Error>;
}

struct Dispatched;

impl Kernels for Dispatched {
    #[inline(always)]
    fn dense(
        p: &FcParams<'_>,
        input: &[i8],
        workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error> {
        kernels::fully_connected_i8_aligned(p, input, workspace, output)
    }
    #[inline(always)]
    fn conv(
        p: &ConvParams<'_>,
        input: &[i8],
        workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error> {
        kernels::conv2d_i8_workspace(p, input, workspace, output)
    }
    #[inline(always)]
    fn depthwise(
        p: &ConvParams<'_>,
        input: &[i8],
        workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error> {
        kernels::depthwise_conv2d_i8_workspace(p, input, workspace, output)
    }
    #[inline(always)]
    fn depthwise_ring(p: &ConvParams<'_>, data: &mut [i8], ring: &mut [i8]) -> Result<(), Error> {
        kernels::depthwise_conv2d_i8_ring_in_place(p, data, ring)
    }
    #[inline(always)]
    fn max_pool(p: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        kernels::max_pool_i8(p, input, output)
    }
    #[inline(always)]
    fn avg_pool(p: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        kernels::avg_pool_i8(p, input, output)
    }
    #[inline(always)]
    fn dense16(p: &kernels::Fc16Params<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        kernels::fully_connected_i16(p, input, output)
    }
    #[inline(always)]
    fn add(p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) -> Result<(), Error> {
        kernels::add_i8(p, a, b, output)
    }
    #[inline(always)]
    fn add_in_place(
        p: &AddParams,
        data: &mut [i8],
        other: Option<&[i8]>,
        data_is_a: bool,
    ) -> Result<(), Error> {
        kernels::add_i8_in_place(p, data, other, data_is_a)
    }
    #[inline(always)]
    fn pointwise_in_place(
        p: &ConvParams<'_>,
        data: (&mut [i8], usize),
        pixel: &mut [i8],
        workspace: &mut [i8],
    ) -> Result<(), Error> {
        kernels::pointwise_conv2d_i8_in_place_workspace(p, data, pixel, workspace)
    }
}

struct Reference;

impl Kernels for Reference {
    #[inline(always)]
    fn dense(
        p: &FcParams<'_>,
        input: &[i8],
        _workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error> {
        kernels::reference::fully_connected_i8(p, input, output)
    }
    #[inline(always)]
    fn conv(
        p: &ConvParams<'_>,
        input: &[i8],
        _workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error> {
        kernels::reference::conv2d_i8(p, input, output)
    }
    #[inline(always)]
    fn depthwise(
        p: &ConvParams<'_>,
        input: &[i8],
        _workspace: &mut [i8],
        output: &mut [i8],
    ) -> Result<(), Error> {
        kernels::reference::depthwise_conv2d_i8(p, input, output)
    }
    #[inline(always)]
    fn depthwise_ring(p: &ConvParams<'_>, data: &mut [i8], ring: &mut [i8]) -> Result<(), Error> {
        kernels::inplace::depthwise_conv2d_i8_ring_in_place(p, data, ring)
    }
    #[inline(always)]
    fn max_pool(p: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        kernels::reference::max_pool_i8(p, input, output)
    }
    #[inline(always)]
    fn avg_pool(p: &PoolParams, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        kernels::reference::avg_pool_i8(p, input, output)
    }
    #[inline(always)]
    fn dense16(p: &kernels::Fc16Params<'_>, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
        kernels::reference::fully_connected_i16(p, input, output)
    }
    #[inline(always)]
    fn add(p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) -> Result<(), Error> {
        kernels::reference::add_i8(p, a, b, output)
    }
    #[inline(always)]
    fn add_in_place(
        p: &AddParams,
        data: &mut [i8],
        other: Option<&[i8]>,
        data_is_a: bool,
    ) -> Result<(), Error> {
        kernels::inplace::add_i8_in_place(p, data, other, data_is_a)
    }
    #[inline(always)]
    fn pointwise_in_place(
        p: &ConvParams<'_>,
        (data, input_at): (&mut [i8], usize),
        pixel: &mut [i8],
        _workspace: &mut [i8],
    ) -> Result<(), Error> {
        kernels::inplace::pointwise_conv2d_i8_in_place(p, data, input_at, pixel)
    }
}

/// `pad_begin` of a validated axis: `floor(max((out - 1) s + k - n, 0) / 2)` for same
/// padding, 0 for valid (docs/layer-graph.md).
#[inline(always)]
fn pad_begin(n: usize, out: usize, k: usize, s: usize, same: bool) -> usize {
    if !same {
        return 0;
    }
    // (out - 1) s + k fits: the kernels' check holds it to the same bound
    out.wrapping_sub(1)
        .wrapping_mul(s)
        .wrapping_add(k)
        .saturating_sub(n)
        / 2
}

/// A validated record's arrays for `n` channels and `n_weights` weights: multipliers, shifts,
/// bias, weights and the optional table.
#[inline(always)]
fn split_arrays(
    body: &[u8],
    n: usize,
    n_weights: usize,
    lut: bool,
) -> Option<crate::blob::ChannelArrays<'_>> {
    let pad4 = |len: usize| len.wrapping_neg() & 3;
    let words = n.wrapping_mul(4);
    let shifts_at = words;
    let bias_at = shifts_at.wrapping_add(n).wrapping_add(pad4(n));
    let weights_at = bias_at.wrapping_add(words);
    let weights_end = weights_at.wrapping_add(n_weights);
    let table = if lut {
        let at = weights_end.wrapping_add(pad4(n_weights));
        Some(body.get(at..at.wrapping_add(256))?.try_into().ok()?)
    } else {
        None
    };
    Some((
        body.get(..words)?,
        body.get(shifts_at..bias_at.wrapping_sub(pad4(n)))?,
        body.get(bias_at..weights_at)?,
        body.get(weights_at..weights_end)?,
        table,
    ))
}

/// A node's input (read-only) and output (written) out of the arena, by their planned offsets.
/// `None` if they overlap or leave the arena, which a validated plan rules out.
#[inline(always)]
fn split_pair<'s>(
    arena: &'s mut [i8],
    input: &Value,
    output: &Value,
    shift: u32,
) -> Option<(&'s [i8], &'s mut [i8])> {
    split_ranges(
        arena,
        (input.offset, input.end(shift)),
        (output.offset, output.end(shift)),
    )
}

/// [`split_pair`] of the byte ranges `start..end` of the input and the output.
#[inline(always)]
fn split_ranges(
    arena: &mut [i8],
    (in_start, in_end): (usize, usize),
    (out_start, out_end): (usize, usize),
) -> Option<(&[i8], &mut [i8])> {
    if in_start < out_start {
        let (lo, hi) = arena.split_at_mut_checked(out_start)?;
        Some((
            lo.get(in_start..in_end)?,
            hi.get_mut(..out_end.wrapping_sub(out_start))?,
        ))
    } else {
        let (lo, hi) = arena.split_at_mut_checked(in_start)?;
        let hi: &[i8] = hi;
        Some((
            hi.get(..in_end.wrapping_sub(in_start))?,
            lo.get_mut(out_start..out_end)?,
        ))
    }
}

/// An `Add` node's two inputs (read-only) and its output (written) out of the arena. The plan
/// keeps both inputs apart from the output (they may be one value: `x + x`), so each lies
/// wholly before or wholly after it. `None` otherwise, which a validated plan rules out.
#[inline(always)]
fn split_two<'s>(
    arena: &'s mut [i8],
    inputs: [&Value; 2],
    output: &Value,
) -> Option<([&'s [i8]; 2], &'s mut [i8])> {
    let (before, rest) = arena.split_at_mut_checked(output.offset)?;
    let (out, after) = rest.split_at_mut_checked(output.bytes(0))?;
    let (before, after): (&[i8], &[i8]) = (before, after);
    let end = output.end(0);
    let get = |v: &Value| {
        if v.end(0) <= output.offset {
            before.get(v.offset..v.end(0))
        } else {
            let at = v.offset.checked_sub(end)?;
            after.get(at..at.checked_add(v.len)?)
        }
    };
    Some(([get(inputs[0])?, get(inputs[1])?], out))
}

impl<'a> Model<'a> {
    /// Validates a blob and borrows it, with every layer kind linked. Checks everything listed
    /// in `docs/blob-format.md`: magic, version, total length, CRC-32, the value table, every
    /// node record (value ids, shapes, geometry, section lengths, multiplier and shift ranges,
    /// the worst-case accumulator of every channel), the zero points, reserved and padding
    /// bytes, that no byte trails, and that the buffer plan is safe.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        crate::blob::parse(bytes)
    }
}

impl<'a, const KINDS: u8> Model<'a, KINDS> {
    /// [`from_bytes`](Model::from_bytes) for a program that links only the layer kinds in
    /// `KINDS` (`Model::<{ kinds::DENSE }>::with_kinds(blob)`): a blob with another kind is
    /// refused with [`Error::KindNotLinked`].
    pub fn with_kinds(bytes: &'a [u8]) -> Result<Self, Error> {
        crate::blob::parse(bytes)
    }

    /// The blob this model borrows.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The number of raw (or quantized) input values: `h * w * c` of the input, in HWC order.
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// The fraction bits of the raw inputs [`run`](Model::run) takes: a real feature value `x`
    /// is passed as `round(x * 2^bits)` (0 for a model trained on integer data such as pixels).
    /// The host converts; the runtime only ever sees the integers.
    pub fn input_frac_bits(&self) -> u8 {
        // A version-2 blob has zero padding here; the parser checked the byte either way.
        self.bytes
            .get(crate::blob::INPUT_FRAC_BITS_AT)
            .copied()
            .unwrap_or(0)
    }

    /// The number of logits.
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// The number of layers (graph nodes), 1 to [`MAX_LAYERS`].
    pub fn n_layers(&self) -> usize {
        self.n_nodes
    }

    /// The scratch bytes [`run`](Model::run) needs: the arena the blob's buffer plan places
    /// every value in, the temporaries of the layers in place included (the whole activation
    /// RAM; [`fast_scratch_len`](Model::fast_scratch_len) adds optional workspace).
    pub fn scratch_len(&self) -> usize {
        self.arena_len
    }

    /// A scratch length that lets the fastest kernel run: [`scratch_len`](Model::scratch_len)
    /// plus a workspace for the layer that needs the most: `2 * n_inputs + 3` bytes for the
    /// widest dense layer (rounded down to whole groups of 8 inputs; on Cortex-M4/M7 the packed
    /// kernel then widens each dense layer's input to 16-bit lanes once, instead of once per four
    /// output rows: MNIST 784-128-10, 1,571 bytes more RAM, about 8% fewer instructions), and
    /// `kernels::conv_workspace_len` for each `Conv2d` layer (its im2col column and start values,
    /// and on Cortex-M4/M7 its rows widened once per call where they take at most 16 KiB: the KWS
    /// DS-CNN's 64 x 64 pointwise layers, 8,192 bytes more RAM, about 12% fewer instructions),
    /// and `kernels::depthwise_workspace_len` for each 3x3 stride-1 `DepthwiseConv2d` layer
    /// not in place (on Cortex-M4/M7 its channel planes, `kernels/dwplane.rs`: MobileNetV1
    /// 0.25's 48 x 48 x 8 layer 2,211 bytes, below the workspace its convolutions take).
    /// With fewer bytes the same bits come out of slower kernels.
    pub fn fast_scratch_len(&self) -> usize {
        let dense = if self.widest_dense == 0 {
            0
        } else {
            kernels::packed::widened_len(self.widest_dense)
        };
        self.arena_len
            .saturating_add(dense.max(self.conv_workspace))
    }

    /// The format version of the blob ([`crate::OLDEST_FORMAT_VERSION`] to
    /// [`crate::FORMAT_VERSION`]: 3 for an int8 model, 4 for an int16 one, 5 with an `Add`, 6
    /// with a layer in place, 7 with a shape-keeping convolution or a depthwise ring in place; 2
    /// still loads).
    pub fn format_version(&self) -> u16 {
        match self.bytes.get(4..6) {
            Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
            _ => crate::FORMAT_VERSION,
        }
    }

    /// The zero point of the quantized input (the input stage's `zp_in`).
    pub fn input_zero_point(&self) -> i8 {
        self.input_zero_point
    }

    /// The input stage's map `(mu, M, t)` when one map serves every feature (scale or no
    /// normalization), `None` with one map per feature.
    pub fn shared_input_map(&self) -> Option<(i32, i32, u8)> {
        let entries = self.entries();
        (entries.len() == INPUT_ENTRY_LEN).then(|| decode_entry(entries))
    }

    /// Which loop the input stage runs for this blob in the default build (what `kiln inspect`
    /// estimates it by). The `small` feature runs the general map for all but the byte table.
    pub fn input_stage(&self) -> InputStage {
        match self.input_loop() {
            InputLoop::PerFeature => InputStage::PerFeature,
            InputLoop::ByteTable => InputStage::ByteTable,
            #[cfg(not(kiln_small))]
            InputLoop::Identity(_) => InputStage::Identity,
            InputLoop::FixedPoint(_) => InputStage::FixedPoint,
        }
    }

    /// The one decision of which loop the input stage runs, with what that loop needs:
    /// [`input_stage`](Model::input_stage) names it, `quantize_unchecked` runs it.
    fn input_loop(&self) -> InputLoop {
        let Some(map) = self.shared_input_map() else {
            return InputLoop::PerFeature;
        };
        if self.input_frac_bits() == 0 {
            return InputLoop::ByteTable;
        }
        #[cfg(not(kiln_small))]
        if let Some(offset) = identity_offset(map, self.input_zero_point) {
            return InputLoop::Identity(offset);
        }
        InputLoop::FixedPoint(map)
    }

    /// The zero point of the logits.
    pub fn output_zero_point(&self) -> i8 {
        self.output_zero_point
    }

    /// The logits' scale as IEEE 754 single-precision bits (positive, finite, non-zero).
    pub fn output_scale_bits(&self) -> u32 {
        self.output_scale_bits
    }

    /// The type, shapes and activation of layer `index`.
    pub fn layer(&self, index: usize) -> Option<LayerInfo> {
        if index >= self.n_nodes {
            return None;
        }
        let mut at = self.nodes_at;
        for _ in 0..index {
            let node = read_node(self.bytes, at);
            at = at.checked_add(usize::try_from(node.section_len).ok()?)?;
        }
        let node = read_node(self.bytes, at);
        let input = self.value(node.input);
        let output = self.value(node.output);
        let g = geometry::<KINDS>(&node, 0, &input, &output, (0, true)).ok()?;
        let temp_len = if node.in_place() {
            let at = at.checked_add(NODE_HEADER_LEN)?;
            let end = at.checked_add(usize::try_from(node.section_len).ok()?)?;
            read_temp(self.bytes.get(at..end.checked_sub(NODE_HEADER_LEN)?)?).1
        } else {
            0
        };
        Some(LayerInfo {
            kind: g.kind,
            input_value: usize::from(node.input),
            output_value: usize::from(node.output),
            second_input_value: (node.second_input != NO_VALUE)
                .then_some(usize::from(node.second_input)),
            input_shape: input.shape,
            output_shape: output.shape,
            n_inputs: input.len,
            n_outputs: output.len,
            kernel: [usize::from(node.kernel[0]), usize::from(node.kernel[1])],
            stride: [usize::from(node.stride[0]), usize::from(node.stride[1])],
            pad: g.pad,
            activation: g.activation,
            output_zero_point: output.zero_point,
            section_len: usize::try_from(node.section_len).ok()?,
            in_place: node.in_place(),
            temp_len,
        })
    }

    /// The set of layer kinds the blob uses ([`crate::kinds`]): the smallest `KINDS` that runs it,
    /// plus [`kinds::FIXED_POINT_INPUT`] when its input has fraction bits (the fast input loop).
    pub fn layer_kinds(&self) -> u8 {
        let mut set = 0;
        let mut at = self.nodes_at;
        for _ in 0..self.n_nodes {
            let node = read_node(self.bytes, at);
            set |= kinds::bit_of(node.kind);
            at = at.saturating_add(node.section_len as usize);
        }
        if self.input_frac_bits() > 0 {
            set |= kinds::FIXED_POINT_INPUT;
        }
        if self.is_int16() {
            set |= kinds::INT16;
        }
        set
    }

    /// The width of the model's activations: 8, or 16 for an int16 model (which runs through
    /// [`run_i16`](Model::run_i16)).
    pub fn activation_bits(&self) -> u8 {
        if self.is_int16() {
            16
        } else {
            8
        }
    }

    /// Bytes per activation as a shift: 1 for an int16 model, else 0 (a constant 0 in a
    /// program without [`kinds::INT16`], where every shift by it vanishes).
    #[inline(always)]
    pub(crate) fn elem_shift(&self) -> u32 {
        u32::from(self.is_int16())
    }

    /// int16 activations: the header's element type (format version 4), read only in a
    /// program that links [`kinds::INT16`] (a constant `false` elsewhere, and no field in
    /// `Model`).
    #[inline(always)]
    fn is_int16(&self) -> bool {
        KINDS & kinds::INT16 != 0
            && self.bytes.get(crate::blob::DTYPE_AT) == Some(&crate::blob::DTYPE_I16)
    }

    /// An int8 call on an int16 model (or the reverse) is refused before any work.
    #[inline(always)]
    fn check_activation_bits(&self, bits: u8) -> Result<(), Error> {
        let model_bits = self.activation_bits();
        if model_bits == bits {
            Ok(())
        } else {
            Err(Error::ActivationType { model_bits })
        }
    }

    /// The value table's entry `id`.
    #[inline(always)]
    fn value(&self, id: u16) -> Value {
        read_value(self.bytes, self.values_at, id)
    }

    fn entries(&self) -> &'a [u8] {
        let len = self.n_entries.saturating_mul(INPUT_ENTRY_LEN);
        self.bytes
            .get(self.entries_at..self.entries_at.saturating_add(len))
            .unwrap_or(&[])
    }

    /// The input stage: `out[j] = sat8(zp_in + rq(256 * clamp(raw[j]) - mu[j], M[j], t[j]))`
    /// with `raw` clamped to `[-2^23, 2^23 - 1]`.
    ///
    /// Errors: [`Error::InputLength`] if `raw.len() != n_inputs`, [`Error::OutputLength`] if
    /// `out.len() != n_inputs`. Nothing is written on error.
    pub fn quantize_input(&self, raw: &[i32], out: &mut [i8]) -> Result<(), Error> {
        self.check_activation_bits(8)?;
        self.check_stage_lengths(raw.len(), out.len())?;
        self.quantize_unchecked(raw, out);
        Ok(())
    }

    /// The input stage's lengths: `n_inputs` raw values in, `n_inputs` int8 values out.
    fn check_stage_lengths(&self, n_raw: usize, n_out: usize) -> Result<(), Error> {
        self.check_input(n_raw)?;
        if n_out != self.n_inputs {
            return Err(Error::OutputLength {
                expected: u32_sat(self.n_inputs),
                got: u32_sat(n_out),
            });
        }
        Ok(())
    }

    fn quantize_unchecked(&self, raw: &[i32], out: &mut [i8]) {
        let zp = i64::from(self.input_zero_point);
        let entries = self.entries();
        // One entry for every feature, or one each: the entry of feature `j` starts at `j * step`.
        let step = if entries.len() == INPUT_ENTRY_LEN {
            0
        } else {
            INPUT_ENTRY_LEN
        };
        // With one shared entry: a fixed-size array, which a byte indexes without a bounds check.
        let table: Option<&[u8; 256]> = self
            .byte_table_at
            .and_then(|at| self.bytes.get(at..at.saturating_add(256)))
            .and_then(|t| t.try_into().ok());
        // One copy of the affine map for both layouts (the smallest parts count every byte); a
        // raw byte with a table takes the table.
        // Real values in fixed point (fraction bits) never hit the byte table: one map decoded
        // once, inlined. `small` keeps the one out-of-line copy below.
        #[cfg(not(kiln_small))]
        if KINDS & kinds::FIXED_POINT_INPUT != 0 {
            match self.input_loop() {
                InputLoop::Identity(offset) => return identity_input(raw, offset, out),
                InputLoop::FixedPoint((mu, m, t)) => {
                    for (o, &x) in out.iter_mut().zip(raw) {
                        // `affine`'s common case in 32-bit arithmetic: the output stage's
                        // `rq_acc` (one 32x32 multiply, the two-halves rounding; its saturation
                        // to i32 changes nothing after `sat8`). The rest takes the out-of-line
                        // map.
                        let scaled = clamp_raw(x).wrapping_mul(256);
                        *o = match scaled.checked_sub(mu) {
                            Some(v) => {
                                sat8(zp.saturating_add(i64::from(crate::fixed::rq_acc(v, m, t))))
                            }
                            None => affine_at(entries, 0, x, zp),
                        };
                    }
                    return;
                }
                // The byte table and the per-feature maps take the loops below.
                InputLoop::ByteTable | InputLoop::PerFeature => {}
            }
        }
        if step == 0 {
            // the shared entry: nothing to advance per feature
            for (o, &x) in out.iter_mut().zip(raw) {
                *o = match (table, u8::try_from(x)) {
                    (Some(table), Ok(byte)) => table.get(usize::from(byte)).map_or(0, |&q| q as i8),
                    _ => affine_at(entries, 0, x, zp),
                };
            }
        } else {
            let mut at = 0usize;
            for (o, &x) in out.iter_mut().zip(raw) {
                *o = affine_at(entries, at, x, zp);
                at = at.wrapping_add(step);
            }
        }
    }

    /// The input stage for raw values that are bytes (pixels, 8-bit sensor readings): the
    /// same map as [`quantize_input`](Model::quantize_input) on the widened values, bit for
    /// bit, without an `i32` copy of the input (`n_inputs` bytes of RAM instead of
    /// `4 n_inputs`). A blob with one shared entry reads its byte table.
    ///
    /// Errors: [`Error::InputLength`] if `raw.len() != n_inputs`, [`Error::OutputLength`] if
    /// `out.len() != n_inputs`. Nothing is written on error.
    pub fn quantize_bytes(&self, raw: &[u8], out: &mut [i8]) -> Result<(), Error> {
        self.check_activation_bits(8)?;
        self.check_stage_lengths(raw.len(), out.len())?;
        self.quantize_bytes_unchecked(raw, out);
        Ok(())
    }

    fn quantize_bytes_unchecked(&self, raw: &[u8], out: &mut [i8]) {
        let table: Option<&[u8; 256]> = self
            .byte_table_at
            .and_then(|at| self.bytes.get(at..at.saturating_add(256)))
            .and_then(|t| t.try_into().ok());
        if let Some(table) = table {
            // The loader checked every entry against the map: a byte indexes it directly.
            for (o, &byte) in out.iter_mut().zip(raw) {
                *o = table.get(usize::from(byte)).map_or(0, |&q| q as i8);
            }
            return;
        }
        let zp = i64::from(self.input_zero_point);
        let entries = self.entries();
        let step = if entries.len() == INPUT_ENTRY_LEN {
            0
        } else {
            INPUT_ENTRY_LEN
        };
        let mut at = 0usize;
        for (o, &byte) in out.iter_mut().zip(raw) {
            *o = affine_at(entries, at, i32::from(byte), zp);
            at = at.wrapping_add(step);
        }
    }

    fn check_input(&self, got: usize) -> Result<(), Error> {
        if got == self.n_inputs {
            Ok(())
        } else {
            Err(Error::InputLength {
                expected: u32_sat(self.n_inputs),
                got: u32_sat(got),
            })
        }
    }

    /// Checks the scratch and logits lengths; returns the arena and the rest, the kernels'
    /// workspace (see [`fast_scratch_len`](Model::fast_scratch_len)).
    fn check_buffers<'s, T>(
        &self,
        scratch: &'s mut [i8],
        logits: &[T],
    ) -> Result<(&'s mut [i8], &'s mut [i8]), Error> {
        let got = scratch.len();
        let scratch =
            scratch
                .split_at_mut_checked(self.arena_len)
                .ok_or(Error::BufferTooSmall {
                    needed: u32_sat(self.arena_len),
                    got: u32_sat(got),
                })?;
        if logits.len() != self.n_outputs {
            return Err(Error::OutputLength {
                expected: u32_sat(self.n_outputs),
                got: u32_sat(logits.len()),
            });
        }
        Ok(scratch)
    }

    /// The model input's bytes in the arena.
    #[inline(always)]
    fn input_slice<'s>(&self, arena: &'s mut [i8]) -> Result<&'s mut [i8], Error> {
        let len = self.n_inputs.wrapping_shl(self.elem_shift());
        arena
            .get_mut(self.input_at..self.input_at.wrapping_add(len))
            .ok_or(self.internal())
    }

    /// The model output's bytes in the arena.
    #[inline(always)]
    fn output_slice<'s>(&self, arena: &'s [i8]) -> Result<&'s [i8], Error> {
        let len = self.n_outputs.wrapping_shl(self.elem_shift());
        arena
            .get(self.output_at..self.output_at.wrapping_add(len))
            .ok_or(self.internal())
    }

    /// Runs the model on raw inputs (HWC order): quantizes them into the arena, runs every
    /// layer, writes the int8 logits and returns their argmax (the first maximum wins a tie).
    ///
    /// Errors, all checked before any work: [`Error::InputLength`] if `raw.len() != n_inputs`,
    /// [`Error::BufferTooSmall`] if `scratch.len() < scratch_len`, [`Error::OutputLength`] if
    /// `logits.len() != n_outputs`. No other error is possible.
    pub fn run(&self, raw: &[i32], scratch: &mut [i8], logits: &mut [i8]) -> Result<usize, Error> {
        self.check_activation_bits(8)?;
        self.check_input(raw.len())?;
        let (arena, workspace) = self.check_buffers(scratch, logits)?;
        self.quantize_unchecked(raw, self.input_slice(arena)?);
        self.forward::<Dispatched>(arena, workspace, logits)
    }

    /// Like [`run`](Model::run) for raw values that are bytes (see
    /// [`quantize_bytes`](Model::quantize_bytes)): the same logits as `run` on the widened
    /// values, with the input held in `n_inputs` bytes. The errors are `run`'s.
    pub fn run_bytes(
        &self,
        raw: &[u8],
        scratch: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        self.check_activation_bits(8)?;
        self.check_input(raw.len())?;
        let (arena, workspace) = self.check_buffers(scratch, logits)?;
        self.quantize_bytes_unchecked(raw, self.input_slice(arena)?);
        self.forward::<Dispatched>(arena, workspace, logits)
    }

    /// Like [`run`](Model::run) for input that is already quantized (`n_inputs` int8 values with
    /// the input stage's zero point).
    pub fn run_quantized(
        &self,
        input: &[i8],
        scratch: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        self.run_quantized_with::<Dispatched>(input, scratch, logits)
    }

    /// [`run_quantized`](Model::run_quantized) with the reference kernels instead of the
    /// optimized ones this target compiled in: the specification, so that firmware can check on
    /// the device that the two agree bit for bit.
    pub fn run_quantized_reference(
        &self,
        input: &[i8],
        scratch: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        self.run_quantized_with::<Reference>(input, scratch, logits)
    }

    #[inline(always)]
    fn run_quantized_with<K: Kernels>(
        &self,
        input: &[i8],
        scratch: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        self.check_activation_bits(8)?;
        self.check_input(input.len())?;
        let (arena, workspace) = self.check_buffers(scratch, logits)?;
        let first = self.input_slice(arena)?;
        // Same lengths (checked above): a word-wise copy.
        if first.len() == input.len() {
            first.copy_from_slice(input);
        }
        self.forward::<K>(arena, workspace, logits)
    }

    /// The input stage of an int16 model: `out[j] = sat16(rq(256 * clamp(raw[j]) - mu[j], M[j],
    /// t[j]))` (symmetric: no zero point), the byte table for raw bytes with one shared map.
    ///
    /// Errors: [`Error::ActivationType`] on an int8 model, then those of
    /// [`quantize_input`](Model::quantize_input).
    pub fn quantize_input_i16(&self, raw: &[i32], out: &mut [i16]) -> Result<(), Error> {
        self.check_activation_bits(16)?;
        self.check_stage_lengths(raw.len(), out.len())?;
        self.quantize16_unchecked(raw, |j, q| {
            if let Some(o) = out.get_mut(j) {
                *o = q;
            }
        });
        Ok(())
    }

    /// The int16 input stage: `put(j, q)` for every feature `j`. The entries and the byte
    /// table are found once, not per feature.
    #[inline(always)]
    fn quantize16_unchecked(&self, raw: &[i32], mut put: impl FnMut(usize, i16)) {
        let entries = self.entries();
        // With one shared entry: the 256 int16 values of the bytes, checked at load.
        let table = self
            .byte_table_at
            .filter(|_| self.n_entries == 1)
            .and_then(|at| self.bytes.get(at..at.saturating_add(512)));
        let step = if self.n_entries == 1 {
            0
        } else {
            INPUT_ENTRY_LEN
        };
        let mut at = 0usize;
        for (j, &x) in raw.iter().enumerate() {
            let from_table = table.zip(u8::try_from(x).ok()).and_then(|(table, byte)| {
                let i = usize::from(byte).wrapping_mul(2);
                match table.get(i..i.wrapping_add(2)) {
                    Some(&[lo, hi]) => Some(i16::from_le_bytes([lo, hi])),
                    _ => None,
                }
            });
            put(j, from_table.unwrap_or_else(|| affine16_at(entries, at, x)));
            at = at.wrapping_add(step);
        }
    }

    /// Runs an int16 model on raw inputs (HWC order): [`run`](Model::run) for int16
    /// activations, the int16 logits written to `logits`, their argmax returned.
    ///
    /// Errors, all checked before any work: [`Error::ActivationType`] on an int8 model, then
    /// those of `run` (`logits` must hold `n_outputs` values).
    pub fn run_i16(
        &self,
        raw: &[i32],
        scratch: &mut [i8],
        logits: &mut [i16],
    ) -> Result<usize, Error> {
        self.check_activation_bits(16)?;
        self.check_input(raw.len())?;
        let (arena, _) = self.check_buffers(scratch, logits)?;
        let first = self.input_slice(arena)?;
        self.quantize16_unchecked(raw, |j, q| {
            let at = j.wrapping_mul(2);
            if let Some(pair) = first.get_mut(at..at.wrapping_add(2)) {
                kernels::put_i16(pair, q);
            }
        });
        self.forward16::<Dispatched>(arena, logits)
    }

    /// [`run_i16`](Model::run_i16) for input that is already quantized (`n_inputs` int16
    /// values).
    pub fn run_quantized_i16(
        &self,
        input: &[i16],
        scratch: &mut [i8],
        logits: &mut [i16],
    ) -> Result<usize, Error> {
        self.run_quantized_i16_with::<Dispatched>(input, scratch, logits)
    }

    /// [`run_quantized_i16`](Model::run_quantized_i16) with the reference kernel: the
    /// specification, for firmware that checks the two agree on the device.
    pub fn run_quantized_i16_reference(
        &self,
        input: &[i16],
        scratch: &mut [i8],
        logits: &mut [i16],
    ) -> Result<usize, Error> {
        self.run_quantized_i16_with::<Reference>(input, scratch, logits)
    }

    #[inline(always)]
    fn run_quantized_i16_with<K: Kernels>(
        &self,
        input: &[i16],
        scratch: &mut [i8],
        logits: &mut [i16],
    ) -> Result<usize, Error> {
        self.check_activation_bits(16)?;
        self.check_input(input.len())?;
        let (arena, _) = self.check_buffers(scratch, logits)?;
        let first = self.input_slice(arena)?;
        for (pair, &q) in first.chunks_exact_mut(2).zip(input) {
            kernels::put_i16(pair, q);
        }
        self.forward16::<K>(arena, logits)
    }

    /// The nodes of an int16 model (dense layers, validated) over the arena, then the last
    /// value to `logits`.
    fn forward16<K: Kernels>(&self, arena: &mut [i8], logits: &mut [i16]) -> Result<usize, Error> {
        let internal = self.internal();
        let mut at = self.nodes_at;
        for _ in 0..self.n_nodes {
            let node = read_node(self.bytes, at);
            let next = at.wrapping_add(node.section_len as usize);
            let body = self
                .bytes
                .get(at.wrapping_add(NODE_HEADER_LEN)..next)
                .ok_or(internal)?;
            let in_v = self.value(node.input);
            let out_v = self.value(node.output);
            let (input, output) =
                split_pair(arena, &in_v, &out_v, self.elem_shift()).ok_or(internal)?;
            let n = out_v.shape[2];
            let (multipliers, shifts, bias, weights, _) =
                split_arrays(body, n, in_v.len.wrapping_mul(n), false).ok_or(internal)?;
            let p = kernels::Fc16Params {
                weights,
                bias,
                multipliers,
                shifts,
                clamp_min: if node.activation == ACT_RELU {
                    0
                } else {
                    i16::MIN
                },
            };
            K::dense16(&p, input, output)?;
            at = next;
        }
        let last = self.output_slice(arena)?;
        let mut best = (0usize, i16::MIN);
        for (i, (l, pair)) in logits.iter_mut().zip(last.chunks_exact(2)).enumerate() {
            *l = kernels::le_i16(pair);
            // the first maximum wins a tie, as for int8
            if i == 0 || *l > best.1 {
                best = (i, *l);
            }
        }
        Ok(best.0)
    }

    /// The error for a decode or buffer split that validation makes impossible.
    fn internal(&self) -> Error {
        Error::BufferTooSmall {
            needed: u32_sat(self.arena_len),
            got: 0,
        }
    }

    /// The nodes in order over the arena (the input value already in place), then the last
    /// value to `logits`.
    #[inline(always)]
    fn forward<K: Kernels>(
        &self,
        arena: &mut [i8],
        workspace: &mut [i8],
        logits: &mut [i8],
    ) -> Result<usize, Error> {
        let mut at = self.nodes_at;
        for _ in 0..self.n_nodes {
            at = self
                .run_node::<K>(at, arena, workspace)
                .ok_or(self.internal())?;
        }
        let last = self.output_slice(arena)?;
        for (l, &v) in logits.iter_mut().zip(last) {
            *l = v;
        }
        Ok(argmax(logits))
    }

    /// The node record at `at`: its values out of the arena, its parameters out of its record,
    /// its kernel. Returns where the next record starts. The loader checked every field, so
    /// this only reads them, and no step can fail (`None`, one error for them all, keeps the
    /// impossible paths short); convolutions and pools go through their own functions, so
    /// that a dense layer's frame holds only what it uses.
    // Out of line with the Cortex-M0/M3 kernels: on the M0's eight low registers the inlined
    // step spills across the node loop (a 64-16-10 MLP's inference stack 276 -> 244 B, 20 B
    // less code; the M3 the same stack, 68 B less code). Inlined elsewhere, where the call
    // costs stack (M4F 256 -> 272 B, RV32 352 -> 416 B, the M0's `small` build 260 -> 340 B).
    #[cfg_attr(kiln_kernel = "m0", inline(never))]
    #[cfg_attr(not(kiln_kernel = "m0"), inline(always))]
    fn run_node<K: Kernels>(
        &self,
        at: usize,
        arena: &mut [i8],
        workspace: &mut [i8],
    ) -> Option<usize> {
        // The records are read into scalars inside blocks, so that their stack slots end there
        // and the kernel's arguments reuse them (the peak stack of a run); the other kinds'
        // arms, out of line, read the records again.
        // past the bytes (never, once validated) the kind is 0: refused below
        let (kind, activation, pre_zero_point, input_id, output_id, in_place, next) = {
            let node = read_node(self.bytes, at);
            (
                node.kind,
                node.activation,
                node.pre_zero_point,
                node.input,
                node.output,
                node.in_place(),
                at.wrapping_add(node.section_len as usize),
            )
        };
        let body = self.bytes.get(at.wrapping_add(NODE_HEADER_LEN)..next)?;
        if kinds::links_in_place(KINDS) && in_place {
            // its output over its input: its own split and kernels (int8 only)
            self.in_place_node::<K>(&read_node(self.bytes, at), body, arena, workspace)
                .ok()?;
            return Some(next);
        }
        if KINDS & kinds::ADD != 0 && kind == KIND_ADD {
            // two inputs: its own split and kernel (int8 only: the loader refuses int16)
            self.add_node::<K>(&read_node(self.bytes, at), body, arena)
                .ok()?;
            return Some(next);
        }
        let shift = self.elem_shift();
        // One value at a time, so that the two records share a stack slot.
        let (in_v, in_len) = {
            let v = self.value(input_id);
            ((v.offset, v.end(shift)), v.len)
        };
        let (out_v, n, out_zero_point) = {
            let v = self.value(output_id);
            ((v.offset, v.end(shift)), v.shape[2], v.zero_point)
        };
        let (input, output) = split_ranges(arena, in_v, out_v)?;
        // Identity and relu requantize to the output; a table layer to its pre-activation.
        let (zp, clamp_min) = match activation {
            ACT_RELU => (out_zero_point, out_zero_point),
            ACT_LUT => (pre_zero_point, i8::MIN),
            _ => (out_zero_point, i8::MIN),
        };
        let lut = activation == ACT_LUT;
        // Each kind's arm only where `KINDS` links it: the others leave no code behind.
        let table = match kind {
            KIND_DENSE if KINDS & kinds::DENSE != 0 => {
                // fits: the loader checked the record's length against it
                let n_weights = in_len.wrapping_mul(n);
                let (multipliers, shifts, bias, weights, table) =
                    split_arrays(body, n, n_weights, lut)?;
                let p = FcParams {
                    weights,
                    bias,
                    multipliers,
                    shifts,
                    output_zero_point: zp,
                    clamp_min,
                    clamp_max: i8::MAX,
                };
                K::dense(&p, input, workspace, output).ok()?;
                table
            }
            KIND_CONV2D | KIND_DEPTHWISE if KINDS & (kinds::CONV2D | kinds::DEPTHWISE) != 0 => {
                conv_node::<K, KINDS>(
                    &read_node(self.bytes, at),
                    body,
                    &self.value(input_id),
                    &self.value(output_id),
                    (zp, clamp_min),
                    input,
                    workspace,
                    output,
                )
                .ok()?
            }
            KIND_MAX_POOL | KIND_AVG_POOL if KINDS & (kinds::MAX_POOL | kinds::AVG_POOL) != 0 => {
                pool_node::<K, KINDS>(
                    &read_node(self.bytes, at),
                    body,
                    &self.value(input_id),
                    &self.value(output_id),
                    input,
                    output,
                )
                .ok()?;
                None
            }
            _ => return None,
        };
        if let Some(table) = table {
            kernels::apply_lut_i8(table, output);
        }
        Some(next)
    }

    /// A node that runs in place (format version 6): its output over its input's bytes, the
    /// temporary out of the arena where the record says, and the in-place kernel of its kind
    /// (held to the reference kernels bit for bit by the tests; a pointwise convolution runs
    /// the target's inner loop with the workspace, or under
    /// [`run_quantized_reference`](Model::run_quantized_reference) the reference arithmetic).
    /// Out of line, like [`add_node`](Model::add_node).
    #[inline(never)]
    fn in_place_node<K: Kernels>(
        &self,
        node: &NodeRecord,
        body: &[u8],
        arena: &mut [i8],
        workspace: &mut [i8],
    ) -> Result<(), Error> {
        let internal = self.internal();
        let in_v = self.value(node.input);
        let out_v = self.value(node.output);
        if KINDS & kinds::ADD != 0 && node.kind == KIND_ADD {
            let add = add_params(node, body, &in_v, &self.value(node.second_input), &out_v)
                .ok_or(internal)?;
            // over the first operand if the output starts there, else over the second
            let data_is_a = out_v.offset == in_v.offset;
            let other = if data_is_a {
                node.second_input
            } else {
                node.input
            };
            if node.input == node.second_input {
                let data = arena.get_mut(out_v.offset..out_v.end(0)).ok_or(internal)?;
                return K::add_in_place(&add, data, None, true);
            }
            let (other, data) = split_pair(arena, &self.value(other), &out_v, 0).ok_or(internal)?;
            return K::add_in_place(&add, data, Some(other), data_is_a);
        }
        if KINDS & (kinds::CONV2D | kinds::DEPTHWISE) == 0 {
            return Err(internal);
        }
        // the region the two values cover: the output starts it (validated), the input ends
        // at or before its end, `input_at` bytes in
        let input_at = in_v.offset.checked_sub(out_v.offset).ok_or(internal)?;
        let region = (out_v.offset, in_v.end(0).max(out_v.end(0)));
        let (temp_at, temp_len) = read_temp(body);
        let (data, temp) = split_disjoint(arena, region, (temp_at, temp_at.wrapping_add(temp_len)))
            .ok_or(internal)?;
        let (zp, clamp_min) = match node.activation {
            ACT_RELU => (out_v.zero_point, out_v.zero_point),
            ACT_LUT => (node.pre_zero_point, i8::MIN),
            _ => (out_v.zero_point, i8::MIN),
        };
        let (p, table) =
            conv_params::<KINDS>(node, body, &in_v, &out_v, (zp, clamp_min)).ok_or(internal)?;
        if node.kind == KIND_CONV2D && KINDS & kinds::CONV2D != 0 {
            if kernels::inplace::is_pointwise(&p) {
                K::pointwise_in_place(&p, (&mut *data, input_at), temp, workspace)?;
            } else {
                // a shape-keeping convolution (version 7, validated): row by row, each row
                // through the target's convolution kernel
                kernels::inplace::conv2d_i8_rows_in_place(&p, data, temp, |q, x, y| {
                    K::conv(q, x, &mut *workspace, y)
                })?;
            }
        } else if KINDS & kinds::DEPTHWISE != 0 {
            // a ring when the layer keeps its shape and the temporary holds one (version 7),
            // else the channel planes
            let ring = kernels::inplace::ring_temp_len(p.pad, p.input_shape);
            if kernels::inplace::is_ring(p.stride, p.input_shape, p.output_shape)
                && temp.len() >= ring
            {
                K::depthwise_ring(&p, data, temp)?;
            } else {
                kernels::inplace::depthwise_conv2d_i8_in_place(&p, data, temp)?;
            }
        } else {
            return Err(internal);
        }
        if let Some(table) = table {
            kernels::apply_lut_i8(table, data.get_mut(..out_v.len).ok_or(internal)?);
        }
        Ok(())
    }

    /// An `Add` node: `W_a`, `W_b`, `M` and `t` out of its record, the zero points out of the
    /// value table, both inputs and the output out of the arena. Out of line, like
    /// [`conv_node`]: the other layers' frames hold none of it.
    #[inline(never)]
    fn add_node<K: Kernels>(
        &self,
        node: &NodeRecord,
        body: &[u8],
        arena: &mut [i8],
    ) -> Result<(), Error> {
        let internal = self.internal();
        let (a_v, b_v) = (self.value(node.input), self.value(node.second_input));
        let out_v = self.value(node.output);
        let p = add_params(node, body, &a_v, &b_v, &out_v).ok_or(internal)?;
        let ([a, b], output) = split_two(arena, [&a_v, &b_v], &out_v).ok_or(internal)?;
        K::add(&p, a, b, output)
    }

    /// The logits' real values: `out[i] = s_out * (logits[i] - zp_out)` in f32.
    ///
    /// Errors: [`Error::InputLength`] if `logits.len() != n_outputs`, [`Error::OutputLength`] if
    /// `out.len() != n_outputs`.
    #[cfg(feature = "f32-output")]
    pub fn dequantize(&self, logits: &[i8], out: &mut [f32]) -> Result<(), Error> {
        if logits.len() != self.n_outputs {
            return Err(Error::InputLength {
                expected: u32_sat(self.n_outputs),
                got: u32_sat(logits.len()),
            });
        }
        if out.len() != self.n_outputs {
            return Err(Error::OutputLength {
                expected: u32_sat(self.n_outputs),
                got: u32_sat(out.len()),
            });
        }
        let scale = self.output_scale();
        let zp = i16::from(self.output_zero_point);
        for (o, &q) in out.iter_mut().zip(logits) {
            *o = scale * f32::from(i16::from(q).wrapping_sub(zp)); // in [-255, 255]
        }
        Ok(())
    }

    /// An int16 model's logits' real values: `out[i] = s_out * logits[i]` in f32 (the zero
    /// point is 0). The errors are [`dequantize`](Model::dequantize)'s.
    #[cfg(feature = "f32-output")]
    pub fn dequantize_i16(&self, logits: &[i16], out: &mut [f32]) -> Result<(), Error> {
        if logits.len() != self.n_outputs {
            return Err(Error::InputLength {
                expected: u32_sat(self.n_outputs),
                got: u32_sat(logits.len()),
            });
        }
        if out.len() != self.n_outputs {
            return Err(Error::OutputLength {
                expected: u32_sat(self.n_outputs),
                got: u32_sat(out.len()),
            });
        }
        let scale = self.output_scale();
        for (o, &q) in out.iter_mut().zip(logits) {
            *o = scale * f32::from(q);
        }
        Ok(())
    }

    /// The logits' scale.
    #[cfg(feature = "f32-output")]
    pub fn output_scale(&self) -> f32 {
        f32::from_bits(self.output_scale_bits)
    }
}

/// A `Conv2d` or depthwise node; returns its activation table, if any. Out of line: its
/// parameters stay out of the dense layers' frame.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn conv_node<'b, K: Kernels, const KINDS: u8>(
    node: &NodeRecord,
    body: &'b [u8],
    in_v: &Value,
    out_v: &Value,
    (zp, clamp_min): (i8, i8),
    input: &[i8],
    workspace: &mut [i8],
    output: &mut [i8],
) -> Result<Option<&'b [u8; 256]>, Error> {
    let internal = Error::KernelArguments;
    let conv2d = node.kind == KIND_CONV2D && KINDS & kinds::CONV2D != 0;
    let (p, table) =
        conv_params::<KINDS>(node, body, in_v, out_v, (zp, clamp_min)).ok_or(internal)?;
    if conv2d {
        K::conv(&p, input, workspace, output)?;
    } else if KINDS & kinds::DEPTHWISE != 0 {
        K::depthwise(&p, input, workspace, output)?;
    } else {
        return Err(internal);
    }
    Ok(table)
}

/// A convolution node's parameters out of its record and values, and its activation table.
#[inline(always)]
fn conv_params<'b, const KINDS: u8>(
    node: &NodeRecord,
    body: &'b [u8],
    in_v: &Value,
    out_v: &Value,
    (zp, clamp_min): (i8, i8),
) -> Option<(ConvParams<'b>, Option<&'b [u8; 256]>)> {
    let n = out_v.shape[2];
    let [kh, kw] = node.kernel.map(usize::from);
    let stride = node.stride.map(usize::from);
    let conv2d = node.kind == KIND_CONV2D && KINDS & kinds::CONV2D != 0;
    // every product fits: the loader checked the record's length against them
    let n_weights = if conv2d {
        n.wrapping_mul(kh)
            .wrapping_mul(kw)
            .wrapping_mul(in_v.shape[2])
    } else {
        kh.wrapping_mul(kw).wrapping_mul(n)
    };
    let (multipliers, shifts, bias, weights, table) =
        split_arrays(body, n, n_weights, node.activation == ACT_LUT)?;
    let same = node.padding == PAD_SAME;
    let p = ConvParams {
        input_shape: in_v.shape,
        output_shape: out_v.shape,
        kernel: [kh, kw],
        stride,
        pad: [
            pad_begin(in_v.shape[0], out_v.shape[0], kh, stride[0], same),
            pad_begin(in_v.shape[1], out_v.shape[1], kw, stride[1], same),
        ],
        weights,
        bias,
        multipliers,
        shifts,
        input_zero_point: in_v.zero_point,
        output_zero_point: zp,
        clamp_min,
        clamp_max: i8::MAX,
    };
    Some((p, table))
}

/// An `Add` node's parameters: `W_a`, `W_b`, `M` and `t` out of its record, the zero points out
/// of its values `a`, `b` and `out`.
#[inline(always)]
fn add_params(
    node: &NodeRecord,
    body: &[u8],
    a_v: &Value,
    b_v: &Value,
    out_v: &Value,
) -> Option<AddParams> {
    let (weights, multiplier, shift) = match *body {
        [a0, a1, a2, a3, b0, b1, b2, b3, m0, m1, m2, m3, t, ..] => (
            [le_i32(&[a0, a1, a2, a3]), le_i32(&[b0, b1, b2, b3])],
            le_i32(&[m0, m1, m2, m3]),
            t,
        ),
        _ => return None,
    };
    let p = AddParams {
        weights,
        input_zero_points: [a_v.zero_point, b_v.zero_point],
        output_zero_point: out_v.zero_point,
        multiplier,
        shift,
        clamp_min: if node.activation == ACT_RELU {
            out_v.zero_point
        } else {
            i8::MIN
        },
        clamp_max: i8::MAX,
    };
    Some(p)
}

/// Two disjoint ranges `a = (start, end)` and `b` of the arena, both writable. `None` if they
/// overlap or leave the arena, which a validated plan rules out.
#[inline(always)]
fn split_disjoint(
    arena: &mut [i8],
    a: (usize, usize),
    b: (usize, usize),
) -> Option<(&mut [i8], &mut [i8])> {
    if a.1 <= b.0 {
        let (lo, hi) = arena.split_at_mut_checked(b.0)?;
        Some((lo.get_mut(a.0..a.1)?, hi.get_mut(..b.1.checked_sub(b.0)?)?))
    } else if b.1 <= a.0 {
        let (lo, hi) = arena.split_at_mut_checked(a.0)?;
        Some((hi.get_mut(..a.1.checked_sub(a.0)?)?, lo.get_mut(b.0..b.1)?))
    } else {
        None
    }
}

/// A max or average pool node. Out of line, like [`conv_node`].
#[inline(never)]
fn pool_node<K: Kernels, const KINDS: u8>(
    node: &NodeRecord,
    body: &[u8],
    in_v: &Value,
    out_v: &Value,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let (multiplier, shift) = match body {
        [a, b, c, d, t, ..] => (le_i32(&[*a, *b, *c, *d]), *t),
        _ => (crate::fixed::MULTIPLIER_MIN, crate::fixed::SHIFT_MIN),
    };
    let p = PoolParams {
        input_shape: in_v.shape,
        output_shape: out_v.shape,
        kernel: node.kernel.map(usize::from),
        stride: node.stride.map(usize::from),
        input_zero_point: in_v.zero_point,
        output_zero_point: out_v.zero_point,
        multiplier,
        shift,
        clamp_min: i8::MIN,
        clamp_max: i8::MAX,
    };
    if node.kind == KIND_MAX_POOL && KINDS & kinds::MAX_POOL != 0 {
        K::max_pool(&p, input, output)
    } else if KINDS & kinds::AVG_POOL != 0 {
        K::avg_pool(&p, input, output)
    } else {
        Err(Error::KernelArguments)
    }
}

/// The input stage's loop for a blob and what it needs ([`Model::input_stage`] without data).
/// The `small` build runs the general map and reads no payload.
#[cfg_attr(kiln_small, allow(dead_code))]
enum InputLoop {
    ByteTable,
    /// The offset of [`identity_offset`].
    #[cfg(not(kiln_small))]
    Identity(i32),
    /// The shared map `(mu, M, t)`.
    FixedPoint((i32, i32, u8)),
    PerFeature,
}

/// The input stage's loop for a blob ([`Model::input_stage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputStage {
    /// One shared map, integer raw values: a 256-entry table for raw 0..=255 (others take the
    /// general map).
    ByteTable,
    /// One shared map that is the identity plus the zero point (a power-of-two input scale for
    /// real values in fixed point): a saturating addition per feature.
    Identity,
    /// One shared map over raw values in fixed point: the general map, decoded once.
    FixedPoint,
    /// One map per feature (standardize): the general map, decoded per feature.
    PerFeature,
}

/// `Some(c)` when the shared map `(mu, M, t)` is the identity plus an offset:
/// `M = 2^30, t = 38` makes `rq(256 * x - mu, M, t) = x - mu / 256` exactly for `mu` a multiple
/// of 256, so the map is `sat8(clamp(x) + c)` with `c = zp - mu / 256` (the quantizer's choice
/// for real-valued inputs: a power-of-two input scale). With `|mu / 256| <= 2^22`, a raw value
/// past the clamp saturates either way, so `sat8(x.saturating_add(c))` is the same map.
#[cfg(not(kiln_small))]
fn identity_offset((mu, m, t): (i32, i32, u8), zp: i8) -> Option<i32> {
    let whole = mu % 256 == 0 && (mu / 256).unsigned_abs() <= 1 << 22;
    (m == crate::fixed::MULTIPLIER_MIN && t == 38 && whole)
        .then(|| i32::from(zp).wrapping_sub(mu.wrapping_div(256)))
}

/// `out[i] = sat8(raw[i] + offset)` (see [`identity_offset`]): eight at a time in the kernel
/// chosen for the target, then four at a time.
#[cfg(not(kiln_small))]
fn identity_input(raw: &[i32], offset: i32, out: &mut [i8]) {
    let done = crate::kernels::identity_input_groups(raw, offset, out);
    let (Some(raw), Some(out)) = (raw.get(done..), out.get_mut(done..)) else {
        return;
    };
    let map = |x: i32| x.saturating_add(offset).clamp(-128, 127) as i8;
    let mut raw4 = raw.chunks_exact(4);
    let mut out4 = out.chunks_exact_mut(4);
    for (o, x) in (&mut out4).zip(&mut raw4) {
        if let ([o0, o1, o2, o3], [x0, x1, x2, x3]) = (o, x) {
            (*o0, *o1, *o2, *o3) = (map(*x0), map(*x1), map(*x2), map(*x3));
        }
    }
    for (o, &x) in out4.into_remainder().iter_mut().zip(raw4.remainder()) {
        *o = map(x);
    }
}

/// `{i32 mu, i32 M, u8 t, ...}` from a 12-byte entry.
pub(crate) fn decode_entry(entry: &[u8]) -> (i32, i32, u8) {
    match *entry {
        [a, b, c, d, e, f, g, h, t, ..] => (le_i32(&[a, b, c, d]), le_i32(&[e, f, g, h]), t),
        _ => (0, crate::fixed::MULTIPLIER_MIN, crate::fixed::SHIFT_MIN),
    }
}

/// [`affine`] with the entry at byte `at` of the input stage's entries. Out of line: the table
/// loop stays tight, and one copy serves both layouts.
#[inline(never)]
pub(crate) fn affine_at(entries: &[u8], at: usize, x: i32, zp: i64) -> i8 {
    let entry = entries
        .get(at..at.wrapping_add(INPUT_ENTRY_LEN))
        .unwrap_or(&[]);
    affine(x, decode_entry(entry), zp)
}

/// `sat8(zp + rq(256 * clamp(x) - mu, M, t))`.
#[inline(always)]
pub(crate) fn affine(x: i32, (mu, m, t): (i32, i32, u8), zp: i64) -> i8 {
    // |256 * x| <= 2^31 after the clamp, so the product is exact in i32; the subtraction of
    // `mu` stays in i32 whenever it can, which lets `rq` use one 32x32->64 multiply.
    let scaled = clamp_raw(x).wrapping_mul(256);
    let v = match scaled.checked_sub(mu) {
        Some(v) => i64::from(v),
        None => i64::from(scaled).wrapping_sub(i64::from(mu)),
    };
    sat8(zp.saturating_add(rq_input(v, m, t)))
}

/// [`affine16`] with the entry at byte `at` of the input stage's entries.
#[inline(never)]
pub(crate) fn affine16_at(entries: &[u8], at: usize, x: i32) -> i16 {
    let entry = entries
        .get(at..at.wrapping_add(INPUT_ENTRY_LEN))
        .unwrap_or(&[]);
    let (mu, m, t) = decode_entry(entry);
    let scaled = clamp_raw(x).wrapping_mul(256);
    let v = match scaled.checked_sub(mu) {
        Some(v) => i64::from(v),
        None => i64::from(scaled).wrapping_sub(i64::from(mu)),
    };
    crate::fixed::sat16(rq_input(v, m, t))
}

/// The index of the first maximum (0 for an empty slice).
fn argmax(values: &[i8]) -> usize {
    let mut best = 0;
    let mut best_value = i8::MIN;
    // starting from i8::MIN, a strict `>` keeps index 0 when every value is i8::MIN
    for (i, &v) in values.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::argmax;

    /// The identity fast path is the affine map it replaces, for every raw value class.
    #[cfg(not(kiln_small))]
    #[test]
    fn identity_input_equals_the_affine_map() {
        use super::{affine, identity_input, identity_offset};
        let m = crate::fixed::MULTIPLIER_MIN;
        let xs: std::vec::Vec<i32> = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 24),
            -(1 << 23) - 1,
            -(1 << 23),
            -(1 << 22) - 200,
            -300,
            -129,
            -128,
            -1,
            0,
            1,
            127,
            128,
            255,
            300,
            (1 << 22) + 200,
            (1 << 23) - 1,
            1 << 23,
            i32::MAX,
        ]
        .into_iter()
        .chain(-1000..1000)
        .collect();
        for zp in [-128i8, -77, 0, 5, 127] {
            for mu_256 in [
                -(1 << 22),
                -(1 << 22) + 1,
                -5000,
                -300,
                -1,
                0,
                1,
                130,
                1 << 22,
            ] {
                let mu = mu_256 * 256;
                let offset = identity_offset((mu, m, 38), zp).expect("an identity map");
                let mut got = std::vec![0i8; xs.len()];
                identity_input(&xs, offset, &mut got);
                for (&x, &q) in xs.iter().zip(&got) {
                    assert_eq!(q, affine(x, (mu, m, 38), i64::from(zp)), "{x} {mu} {zp}");
                }
            }
        }
        // Not the identity: another multiplier or shift, a fraction in mu, or mu too large.
        assert_eq!(identity_offset((0, m + 1, 38), 0), None);
        assert_eq!(identity_offset((0, m, 37), 0), None);
        assert_eq!(identity_offset((255, m, 38), 0), None);
        assert_eq!(identity_offset(((1 << 22) * 256 + 256, m, 38), 0), None);
    }

    #[test]
    fn argmax_first_max_wins() {
        assert_eq!(argmax(&[1, 5, 5, 2]), 1);
        assert_eq!(argmax(&[-128, -128]), 0);
        assert_eq!(argmax(&[-128, -127]), 1);
        assert_eq!(argmax(&[3]), 0);
        assert_eq!(argmax(&[0, 0, 127, 127]), 2);
        assert_eq!(argmax(&[]), 0);
    }
}
