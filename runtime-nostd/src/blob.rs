//! The model blob: layout constants, the node decoder and the validating parser
//! (`docs/blob-format.md`, format version 8; versions 2 to 7 still load).
//!
//! Everything is little-endian and every section starts at a 4-byte-aligned offset. The parser
//! checks every field once, so that inference afterwards cannot fail; the runtime then decodes
//! each node record again from the validated bytes as it runs, so `Model` stays small.

use crate::crc32::crc32;
use crate::error::u32_sat;
use crate::fixed::{multiplier_is_valid, shift_is_valid};
use crate::kernels::le_i32;
use crate::kinds;
use crate::model::{affine16_at, affine_at, Activation, LayerKind, Model, MAX_LAYERS};
use crate::words::aligned_words;
use crate::Error;

/// The first four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"KILN";
/// The newest format version this runtime reads. Version 4 gives each value an element type
/// (int16 activations), version 5 adds the residual `Add` (kind 6, a node with two inputs),
/// version 6 nodes that run in place (their output over their input's bytes), version 7
/// shape-keeping stride-1 layers among them (a convolution row by row, a depthwise one over a
/// ring of pending outputs), version 8 an `Add`'s weights on a grid of `2^22` (`2^16` before).
/// The encoder writes the oldest version that holds the model: 8 only with an `Add` weight over
/// `2^16`, 7 only with such a convolution
/// in place or a depthwise ring, 6 with another node in place, 5 with an `Add`, 4 for an int16 model,
/// 3 otherwise, so that every other blob still loads in an older runtime.
pub const FORMAT_VERSION: u16 = 8;
/// The version of a blob whose activations are all int8 (and that has no `Add`).
pub(crate) const INT8_VERSION: u16 = 3;
/// The version of an int16 blob.
pub(crate) const INT16_VERSION: u16 = 4;
/// The first version with the `Add` kind: version 4's layout (element types included) plus
/// kind 6.
pub(crate) const ADD_VERSION: u16 = 5;
/// The first version with nodes in place: version 5's layout, the node header's byte 10 a flag
/// ([`IN_PLACE`]) and an in-place node's record ending in its temporary ([`TEMP_LEN`] bytes).
pub(crate) const IN_PLACE_VERSION: u16 = 6;
/// The first version whose in-place nodes may be shape-keeping convolutions
/// (`kernels::inplace::is_row_window`, temporary `kh` input rows) and whose shape-keeping
/// stride-1 depthwise nodes in place take a ring of pending output pixels
/// (`kernels::inplace::is_ring`) instead of a channel plane: version 6's layout.
pub(crate) const SHAPE_KEEPING_VERSION: u16 = 7;
/// The first version whose `Add` weights may reach [`WIDE_ADD_WEIGHT_MAX`]: version 7's layout.
pub(crate) const WIDE_ADD_VERSION: u16 = 8;
/// The node header's byte 10 (format version 6; reserved, zero before): the node writes its
/// output over its input's bytes.
pub(crate) const IN_PLACE: u16 = 1;
/// An in-place node record's last bytes: `u32` offset and `u32` length of the temporary its
/// kernel uses in the arena (both 0 for an `Add`).
pub(crate) const TEMP_LEN: usize = 8;
/// The oldest format version this runtime reads. Version 2 has no input fixed point: its byte
/// is padding that must be zero, so a version-2 blob reads as `input_frac_bits = 0`.
pub const OLDEST_FORMAT_VERSION: u16 = 2;
/// The most fraction bits a raw input may have (`raw = round(x * 2^bits)`): the input stage
/// computes `256 * raw` in 32 bits, so real values stay below `2^(23 - bits)` in magnitude.
pub const MAX_INPUT_FRAC_BITS: u8 = 24;
/// Where the input stage's fraction-bits byte sits.
pub(crate) const INPUT_FRAC_BITS_AT: usize = HEADER_LEN + 5;

pub(crate) const HEADER_LEN: usize = 32;
pub(crate) const HEADER_RESERVED: usize = 6;
pub(crate) const INPUT_ENTRY_LEN: usize = 12;
pub(crate) const VALUE_LEN: usize = 20;
pub(crate) const NODE_HEADER_LEN: usize = 24;
pub(crate) const CRC_LEN: usize = 4;
pub(crate) const LUT_LEN: usize = 256;
/// The input stage's table of the 256 byte inputs, present when one entry is shared.
pub(crate) const BYTE_TABLE_LEN: usize = 256;
/// The second input id of a node with one input.
pub(crate) const NO_VALUE: u16 = 0xFFFF;

pub(crate) const ACT_IDENTITY: u8 = 0;
pub(crate) const ACT_RELU: u8 = 1;
pub(crate) const ACT_LUT: u8 = 2;

pub(crate) const KIND_DENSE: u8 = 1;
pub(crate) const KIND_CONV2D: u8 = 2;
pub(crate) const KIND_DEPTHWISE: u8 = 3;
pub(crate) const KIND_MAX_POOL: u8 = 4;
pub(crate) const KIND_AVG_POOL: u8 = 5;
pub(crate) const KIND_ADD: u8 = 6;

/// The largest `|W|` of an `Add` weight in versions 5 to 7: `2^16`.
pub(crate) const ADD_WEIGHT_MAX: u32 = 1 << 16;
/// The largest `|W|` from version 8: `2^22`, so that
/// `|W_a (a - zp_a) + W_b (b - zp_b)| <= 2 * 2^22 * 255 < 2^31` still fits an `i32`.
pub(crate) const WIDE_ADD_WEIGHT_MAX: u32 = 1 << 22;

/// The largest `|W|` of an `Add` weight a blob of `version` may hold.
pub(crate) const fn add_weight_max(version: u16) -> u32 {
    if version >= WIDE_ADD_VERSION {
        WIDE_ADD_WEIGHT_MAX
    } else {
        ADD_WEIGHT_MAX
    }
}
/// An `Add` record's arrays: `W_a`, `W_b`, `M` (each `i32`), `t`, 3 zero bytes.
pub(crate) const ADD_ARRAYS_LEN: usize = 16;

/// Where the header holds the model's element type (format version 4; reserved before).
pub(crate) const DTYPE_AT: usize = 26;
/// A value's element type (format version 4; earlier versions: int8).
pub(crate) const DTYPE_I8: u8 = 0;
pub(crate) const DTYPE_I16: u8 = 1;

pub(crate) const PAD_VALID: u8 = 0;
pub(crate) const PAD_SAME: u8 = 1;

/// Bytes of zero padding after `n` bytes to reach a multiple of 4.
pub(crate) const fn pad4(n: usize) -> usize {
    n.wrapping_neg() & 3 // (-n) mod 4
}

/// The byte length of the arrays of a layer with `n` output channels and `n_weights` weights:
/// multipliers, padded shifts, bias, padded weights, optional table; saturated (in `usize`,
/// which costs no 64-bit arithmetic on a 32-bit core: a saturated length is longer than any
/// blob, so the record is refused either way).
pub(crate) const fn channel_arrays_len(n: usize, n_weights: usize, lut: bool) -> usize {
    let per_channel = n.saturating_mul(9); // multiplier 4, shift 1, bias 4
    per_channel
        .saturating_add(pad4(n))
        .saturating_add(n_weights)
        .saturating_add(pad4(n_weights))
        .saturating_add(if lut { LUT_LEN } else { 0 })
}

/// `(out, pad_begin)` of one spatial axis (docs/layer-graph.md "Padding and output sizes"), or
/// `None` if the kernel does not fit: valid `out = (n - k) / s + 1` with `k <= n`; same
/// `out = ceil(n / s)`, `pad_total = max((out - 1) s + k - n, 0)`, `pad_begin = pad_total / 2`.
/// `k, s >= 1`.
pub(crate) fn conv_axis(n: u64, k: u64, s: u64, same: bool) -> Option<(u64, u64)> {
    if k == 0 || s == 0 {
        return None;
    }
    if same {
        let out = n.div_ceil(s);
        let span = out.checked_sub(1)?.checked_mul(s)?.checked_add(k)?;
        let total = span.saturating_sub(n);
        // k <= n + pad_total always holds here
        Some((out, total / 2))
    } else {
        Some((n.checked_sub(k)?.checked_div(s)?.checked_add(1)?, 0))
    }
}

/// The output length of a pooling axis: valid, and the stride divides `n - k`.
pub(crate) fn pool_axis(n: u64, k: u64, s: u64) -> Option<u64> {
    if k == 0 || s == 0 {
        return None;
    }
    let rest = n.checked_sub(k)?;
    if rest.checked_rem(s)? != 0 {
        return None;
    }
    rest.checked_div(s)?.checked_add(1)
}

/// A cursor over the blob's content (the bytes before the CRC).
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    fn offset(&self) -> u32 {
        u32_sat(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.bytes.get(self.pos..end).map(|s| (end, s))) {
            Some((end, s)) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated {
                needed: u32_sat(self.pos.saturating_add(n)),
                available: u32_sat(self.bytes.len()),
            }),
        }
    }

    /// The next `N` words (the reader's bytes start at a 4-byte-aligned address, and so does
    /// every record). Inlined: a `Result` returned through memory costs the Cortex-M0 more than
    /// the take and the loads.
    #[inline(always)]
    fn words<const N: usize>(&mut self) -> Result<[u32; N], Error> {
        let at = self.pos;
        self.take(N.wrapping_mul(4))?;
        Ok(words::<N>(self.bytes, at))
    }

    /// `n` bytes that must be zero (reserved fields and padding).
    fn zeros(&mut self, n: usize) -> Result<(), Error> {
        let start = self.pos;
        let s = self.take(n)?;
        match s.iter().position(|&b| b != 0) {
            Some(i) => Err(Error::ReservedNonZero {
                offset: u32_sat(start.saturating_add(i)),
            }),
            None => Ok(()),
        }
    }
}

fn to_usize(n: u32) -> Result<usize, Error> {
    usize::try_from(n).map_err(|_| Error::TooLarge)
}

/// One entry of the value table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Value {
    pub(crate) shape: [usize; 3],
    /// `h * w * c` (validated to fit `u32`).
    pub(crate) len: usize,
    pub(crate) offset: usize,
    pub(crate) zero_point: i8,
}

impl Value {
    /// What [`read_value`] gives for an entry past the table's bytes (never, once validated):
    /// empty, and at an offset no arena has, so that every slice of it fails.
    pub(crate) const MISSING: Value = Value {
        shape: [0; 3],
        len: 0,
        offset: usize::MAX,
        zero_point: 0,
    };

    /// The value's length in bytes: `len << shift`, `shift` 1 for an int16 model (the
    /// model's [`Model::elem_shift`], a constant 0 in a program without `kinds::INT16`).
    pub(crate) fn bytes(&self, shift: u32) -> usize {
        self.len.wrapping_shl(shift)
    }

    /// The value's bytes in the arena, `offset..offset + bytes` (inside `arena_len` once
    /// validated).
    pub(crate) fn end(&self, shift: u32) -> usize {
        self.offset.saturating_add(self.bytes(shift))
    }
}

/// Reads value `id` of the table at `values_at`: five aligned words (the loader and every
/// inference step share it). Its `len` is exact once the loader has checked the
/// value table (`h * w * c` fits u32).
// Out of line: one copy serves the loader and every node of every inference. Inlined with the
// RV32 kernels, where the node step's values, read one after the other, otherwise live in
// callee-saved registers across the second call (inference stack 256 -> 272 B there).
#[cfg_attr(kiln_kernel = "rv32", inline(always))]
#[cfg_attr(not(kiln_kernel = "rv32"), inline(never))]
pub(crate) fn read_value(content: &[u8], values_at: usize, id: u16) -> Value {
    // `values_at` is an offset into `content` and `id * 20 < 2^21`: no wrap; a range past the
    // end is `Value::MISSING`.
    let at = usize::from(id)
        .wrapping_mul(VALUE_LEN)
        .wrapping_add(values_at);
    let Some([h, w, c, offset, zp]) = aligned_words::<5>(content, at) else {
        return Value::MISSING;
    };
    let shape = [h as usize, w as usize, c as usize];
    // The loader checks every value's length to fit u32 before it reads one through here, so
    // the wrapping product is exact (and costs no 64-bit multiply on a 32-bit core).
    let len = shape[0].wrapping_mul(shape[1]).wrapping_mul(shape[2]);
    Value {
        shape,
        len,
        offset: offset as usize,
        zero_point: zp as i8,
    }
}

/// `N` words of a record at byte `at` of `content`, whose bytes the loader has checked to be
/// there (zeros otherwise: never).
#[inline(always)]
fn words<const N: usize>(content: &[u8], at: usize) -> [u32; N] {
    aligned_words::<N>(content, at).unwrap_or([0; N])
}

/// Bytes `from` to 3 of `word`, the word at byte `at`, are zero (reserved fields and padding):
/// else the first that is not.
#[inline(never)]
fn zero_bytes(word: u32, at: usize, from: u32) -> Result<(), Error> {
    for i in from..4 {
        if word.wrapping_shr(i.wrapping_mul(8)) as u8 != 0 {
            return Err(Error::ReservedNonZero {
                offset: u32_sat(at).wrapping_add(i),
            });
        }
    }
    Ok(())
}

/// A node record's header fields and its arrays.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeRecord {
    pub(crate) kind: u8,
    pub(crate) activation: u8,
    pub(crate) pre_zero_point: i8,
    pub(crate) padding: u8,
    pub(crate) input: u16,
    pub(crate) second_input: u16,
    pub(crate) output: u16,
    pub(crate) reserved: u16,
    pub(crate) kernel: [u16; 2],
    pub(crate) stride: [u16; 2],
    pub(crate) section_len: u32,
}

impl NodeRecord {
    /// The node runs in place (format version 6; the loader refuses the flag before).
    #[inline(always)]
    pub(crate) fn in_place(&self) -> bool {
        self.reserved == IN_PLACE
    }
}

/// The temporary `(offset, len)` of the in-place node whose record is `body` (the bytes after
/// its header): its last [`TEMP_LEN`] bytes. `(0, 0)` if they are missing (never, once
/// validated).
#[inline(always)]
pub(crate) fn read_temp(body: &[u8]) -> (usize, usize) {
    match body
        .len()
        .checked_sub(TEMP_LEN)
        .and_then(|at| body.get(at..))
    {
        Some(&[o0, o1, o2, o3, l0, l1, l2, l3]) => (
            u32::from_le_bytes([o0, o1, o2, o3]) as usize,
            u32::from_le_bytes([l0, l1, l2, l3]) as usize,
        ),
        _ => (0, 0),
    }
}

/// The temporary an in-place node of `kind` needs: one input plane for a depthwise
/// convolution, a ring of `top w + left + 1` pixels instead for a shape-keeping stride-1 one
/// from version 7, one output pixel for a pointwise convolution, `kh` input rows for a
/// shape-keeping one (version 7), none for an `Add`.
pub(crate) fn temp_len(
    kind: LayerKind,
    (kernel, stride, pad): ([u16; 2], [u16; 2], [usize; 2]),
    input: &Value,
    output: &Value,
    version: u16,
) -> usize {
    use crate::kernels::inplace;
    let kernel = [usize::from(kernel[0]), usize::from(kernel[1])];
    let stride = [usize::from(stride[0]), usize::from(stride[1])];
    let v7 = version >= SHAPE_KEEPING_VERSION;
    match kind {
        LayerKind::DepthwiseConv2d if v7 && inplace::is_ring(stride, input.shape, output.shape) => {
            inplace::ring_temp_len(pad, input.shape)
        }
        LayerKind::DepthwiseConv2d => inplace::depthwise_temp_len(input.shape),
        LayerKind::Conv2d if kernel != [1, 1] => inplace::row_window_temp_len(kernel, input.shape),
        LayerKind::Conv2d => inplace::pointwise_temp_len(output.shape),
        _ => 0,
    }
}

/// Reads the header of the node record at `at`: six aligned words (the loader and every
/// inference step share this decoder). Out of line, like `read_value`.
#[inline(never)]
pub(crate) fn read_node(content: &[u8], at: usize) -> NodeRecord {
    // past the bytes (never, once validated): all zeros, so kind 0, which no layer has
    // (refused where it is used)
    let [w0, w1, w2, w3, w4, w5] = aligned_words::<6>(content, at).unwrap_or([0; 6]);
    let lo = |w: u32| w as u16;
    let hi = |w: u32| (w >> 16) as u16;
    NodeRecord {
        kind: w0 as u8,
        activation: (w0 >> 8) as u8,
        pre_zero_point: (w0 >> 16) as i8,
        padding: (w0 >> 24) as u8,
        input: lo(w1),
        second_input: hi(w1),
        output: lo(w2),
        reserved: hi(w2),
        kernel: [lo(w3), hi(w3)],
        stride: [lo(w4), hi(w4)],
        section_len: w5,
    }
}

/// The arrays of a layer with `n` output channels and `n_weights` weights:
/// `(multipliers, shifts, bias, weights, table)`.
pub(crate) type ChannelArrays<'a> = (
    &'a [u8],
    &'a [u8],
    &'a [u8],
    &'a [u8],
    Option<&'a [u8; LUT_LEN]>,
);

/// A node's geometry: what its record gives, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) kind: LayerKind,
    pub(crate) activation: Activation,
    /// The output channels (of the weights and multipliers).
    pub(crate) channels: usize,
    pub(crate) n_weights: usize,
    /// `[top, left]` (the kernel and stride are the record's: `NodeRecord`).
    pub(crate) pad: [usize; 2],
}

/// The kind, activation, geometry and weight count of a node reading `input` and writing
/// `output`, with every check of `docs/blob-format.md` step 5 that the header alone allows.
pub(crate) fn geometry<const KINDS: u8>(
    node: &NodeRecord,
    layer: u16,
    input: &Value,
    output: &Value,
    (header_at, in_place_version): (u32, bool),
) -> Result<Geometry, Error> {
    // A kind outside `KINDS` is refused here, so the compiler drops its checks and kernel.
    let kind = match node.kind {
        KIND_DENSE if KINDS & kinds::DENSE != 0 => LayerKind::Dense,
        KIND_CONV2D if KINDS & kinds::CONV2D != 0 => LayerKind::Conv2d,
        KIND_DEPTHWISE if KINDS & kinds::DEPTHWISE != 0 => LayerKind::DepthwiseConv2d,
        KIND_MAX_POOL if KINDS & kinds::MAX_POOL != 0 => LayerKind::MaxPool2d,
        KIND_AVG_POOL if KINDS & kinds::AVG_POOL != 0 => LayerKind::AvgPool2d,
        KIND_ADD if KINDS & kinds::ADD != 0 => LayerKind::Add,
        kind if kinds::bit_of(kind) != 0 => return Err(Error::KindNotLinked { layer, kind }),
        kind => return Err(Error::BadLayerKind { layer, kind }),
    };
    let pool = matches!(kind, LayerKind::MaxPool2d | LayerKind::AvgPool2d);
    let activation = match node.activation {
        ACT_IDENTITY => Activation::Identity,
        ACT_RELU if !pool => Activation::Relu,
        // an Add's output stage is the clamp alone: no pre-activation zero point, no table
        ACT_LUT if kind == LayerKind::Add => return Err(Error::AddActivation { layer }),
        ACT_LUT if !pool => Activation::Lut,
        kind => return Err(Error::BadActivation { layer, kind }),
    };
    let reserved = |field: u32| Error::ReservedNonZero {
        offset: header_at.saturating_add(field),
    };
    if activation != Activation::Lut && node.pre_zero_point != 0 {
        return Err(reserved(2));
    }
    let conv = matches!(kind, LayerKind::Conv2d | LayerKind::DepthwiseConv2d);
    if !conv && node.padding != PAD_VALID {
        return Err(reserved(3));
    }
    if conv && node.padding > PAD_SAME {
        return Err(Error::BadGeometry { layer });
    }
    // byte 10: the in-place flag from version 6, reserved before; byte 11 reserved
    if node.reserved != 0 && !(in_place_version && node.in_place()) {
        return Err(reserved(10));
    }
    // Plain locals, not `array::map`: the loader's code is flash on the smallest parts.
    let [oh, ow, oc] = output.shape;
    let shape_error = Error::NodeShape {
        layer,
        value: node.output,
    };
    let too_large = |n: u64| usize::try_from(n).map_err(|_| Error::TooLarge);
    let (pad, n_weights) = match kind {
        LayerKind::Dense | LayerKind::Add => {
            // the kernel and stride fields are reserved: four u16 at header offsets 12 to 19
            let fields = [
                node.kernel[0],
                node.kernel[1],
                node.stride[0],
                node.stride[1],
            ];
            if let Some(i) = fields.iter().position(|&v| v != 0) {
                return Err(reserved(12u32.saturating_add((i as u32).saturating_mul(2))));
            }
            if kind == LayerKind::Add {
                // elementwise: the output has the (first) input's shape
                if output.shape != input.shape {
                    return Err(shape_error);
                }
                return Ok(Geometry {
                    kind,
                    activation,
                    channels: oc,
                    n_weights: 0,
                    pad: [0, 0],
                });
            }
            if oh != 1 || ow != 1 {
                return Err(shape_error);
            }
            ([0, 0], input.len.saturating_mul(oc))
        }
        _ => {
            let [ih, iw, ic] = [input.shape[0], input.shape[1], input.shape[2]].map(|d| d as u64);
            let (oh, ow, oc) = (oh as u64, ow as u64, oc as u64);
            let [kh, kw] = node.kernel.map(u64::from);
            let [sh, sw] = node.stride.map(u64::from);
            let same = node.padding == PAD_SAME;
            let (eh, top, ew, left) = if conv {
                let (eh, top) = conv_axis(ih, kh, sh, same).ok_or(Error::BadGeometry { layer })?;
                let (ew, left) = conv_axis(iw, kw, sw, same).ok_or(Error::BadGeometry { layer })?;
                (eh, top, ew, left)
            } else {
                let eh = pool_axis(ih, kh, sh).ok_or(Error::BadGeometry { layer })?;
                let ew = pool_axis(iw, kw, sw).ok_or(Error::BadGeometry { layer })?;
                (eh, 0, ew, 0)
            };
            let channels_ok = kind == LayerKind::Conv2d || oc == ic;
            if (eh, ew) != (oh, ow) || !channels_ok {
                return Err(shape_error);
            }
            let taps = kh.saturating_mul(kw);
            let n_weights = match kind {
                LayerKind::Conv2d => taps.saturating_mul(ic).saturating_mul(oc),
                LayerKind::DepthwiseConv2d => taps.saturating_mul(ic),
                _ => 0,
            };
            ([too_large(top)?, too_large(left)?], too_large(n_weights)?)
        }
    };
    Ok(Geometry {
        kind,
        activation,
        channels: output.shape[2],
        n_weights,
        pad,
    })
}

/// The byte length a node's section must have.
pub(crate) fn section_len(g: &Geometry) -> usize {
    let arrays = match g.kind {
        LayerKind::MaxPool2d => 0,
        LayerKind::AvgPool2d => 8, // multiplier, shift, 3 zero bytes
        LayerKind::Add => ADD_ARRAYS_LEN,
        _ => channel_arrays_len(g.channels, g.n_weights, g.activation == Activation::Lut),
    };
    NODE_HEADER_LEN.saturating_add(arrays)
}

/// Parses and validates a blob (see `docs/blob-format.md` for the order of the checks).
pub(crate) fn parse<const KINDS: u8>(bytes: &[u8]) -> Result<Model<'_, KINDS>, Error> {
    // ---- framing: length, magic, version, total length, CRC
    let available = u32::try_from(bytes.len()).map_err(|_| Error::TooLarge)?;
    let truncated = |needed: usize| Error::Truncated {
        needed: u32_sat(needed),
        available,
    };
    // byte by byte: the alignment is checked after the framing
    let Some(magic) = bytes.get(..4) else {
        return Err(truncated(4));
    };
    if magic != MAGIC {
        return Err(Error::BadMagic);
    }
    let Some(&[v0, v1]) = bytes.get(4..6) else {
        return Err(truncated(6));
    };
    let version = u16::from_le_bytes([v0, v1]);
    // Version 4 (element types) only for a program that links int16: the encoder writes it for
    // int16 models alone, so every int8 program keeps its loader as it was, byte for byte.
    // Version 5 (the Add kind) everywhere: a program without `kinds::ADD` refuses an Add node
    // by its kind (`KindNotLinked`), and reads the element-type bytes as reserved unless it
    // links int16. Versions 6 and 7 (nodes in place) likewise everywhere. Version 8 (version
    // 7's layout, wider `Add` weights) everywhere: a program that does not link the in-place
    // kernels refuses a node's in-place flag as a reserved byte.
    let known = if KINDS & kinds::INT16 != 0 {
        version <= FORMAT_VERSION
    } else {
        version <= INT8_VERSION
            || version == ADD_VERSION
            || version == WIDE_ADD_VERSION
            || (kinds::links_in_place(KINDS)
                && (version == IN_PLACE_VERSION || version == SHAPE_KEEPING_VERSION))
    };
    if version < OLDEST_FORMAT_VERSION || !known {
        return Err(Error::UnsupportedVersion { found: version });
    }
    let Some(&[n0, n1, t0, t1, t2, t3]) = bytes.get(6..12) else {
        return Err(truncated(12));
    };
    let n_nodes = u16::from_le_bytes([n0, n1]);
    let total_len = u32::from_le_bytes([t0, t1, t2, t3]);
    if total_len > available {
        return Err(Error::Truncated {
            needed: total_len,
            available,
        });
    }
    if total_len < available {
        return Err(Error::LengthMismatch {
            header: total_len,
            actual: available,
        });
    }
    let crc_at = bytes.len().saturating_sub(CRC_LEN);
    let (content, stored) = match (bytes.get(..crc_at), bytes.get(crc_at..)) {
        (Some(content), Some(&[a, b, c, d])) if bytes.len() >= HEADER_LEN + CRC_LEN => {
            (content, u32::from_le_bytes([a, b, c, d]))
        }
        _ => return Err(truncated(HEADER_LEN + CRC_LEN)),
    };
    let computed = crc32(content);
    if computed != stored {
        return Err(Error::CrcMismatch { stored, computed });
    }
    // Every record is read as whole words (`words.rs`): the blob must sit at a 4-byte-aligned
    // address, as TFLM asks of its models.
    let misalignment = bytes.as_ptr().align_offset(4);
    if misalignment != 0 {
        return Err(Error::BlobAlignment {
            bytes_past: 4u8.wrapping_sub(misalignment as u8),
        });
    }

    // ---- header: its words (the framing checked that its 32 bytes are there)
    let [_, _, _, n_inputs, n_outputs, arena_len, w6, _] = words::<8>(content, 0);
    let n_values = w6 as u16;
    let v4 = KINDS & kinds::INT16 != 0 && version >= INT16_VERSION;
    // version 4: the activations' element type, the first reserved byte before
    let dtype = if v4 { (w6 >> 16) as u8 } else { DTYPE_I8 };
    let mut r = Reader {
        bytes: content,
        pos: DTYPE_AT.wrapping_add(usize::from(v4)),
    };
    r.zeros(HEADER_RESERVED.wrapping_sub(usize::from(v4)))?;
    let int16 = match dtype {
        DTYPE_I8 => false,
        DTYPE_I16 => true,
        dtype => return Err(Error::BadValueType { value: 0, dtype }),
    };
    // the bytes of an element: 1 << shift
    let shift = u32::from(int16);
    if n_nodes == 0 {
        return Err(Error::NoLayers);
    }
    if usize::from(n_nodes) > MAX_LAYERS {
        return Err(Error::TooManyLayers { found: n_nodes });
    }
    if u32::from(n_values) != u32::from(n_nodes).saturating_add(1) {
        return Err(Error::ValueCount {
            found: n_values,
            nodes: n_nodes,
        });
    }
    if n_inputs == 0 {
        return Err(Error::EmptyLayer { layer: 0 });
    }

    // ---- input stage
    let stage_at = r.pos;
    let [n_entries, w1] = r.words::<2>()?;
    let input_zero_point = w1 as i8;
    // version 2: no fraction bits, their byte reserved
    let frac_bits = (w1 >> 8) as u8;
    let first_reserved = if version == OLDEST_FORMAT_VERSION {
        1
    } else {
        if frac_bits > MAX_INPUT_FRAC_BITS {
            return Err(Error::InputFracBits { found: frac_bits });
        }
        2
    };
    zero_bytes(w1, stage_at.wrapping_add(4), first_reserved)?;
    if int16 && input_zero_point != 0 {
        return Err(Error::Int16ZeroPoint {
            value: 0,
            found: input_zero_point,
        });
    }
    if n_entries != 1 && n_entries != n_inputs {
        return Err(Error::InputEntries {
            found: n_entries,
            n_inputs,
        });
    }
    let entries_at = r.pos;
    for feature in 0..n_entries {
        // {i32 mu (any), i32 M, u8 t, 3 zero bytes}
        let at = r.pos;
        let [_offset, multiplier, w2] = r.words::<3>()?;
        let (multiplier, shift) = (multiplier as i32, w2 as u8);
        zero_bytes(w2, at.wrapping_add(8), 1)?;
        if !multiplier_is_valid(multiplier) {
            return Err(Error::BadInputMultiplier {
                feature,
                multiplier,
            });
        }
        if !shift_is_valid(shift) {
            return Err(Error::BadInputShift { feature, shift });
        }
    }
    // one shared entry: the table of the 256 byte inputs, each checked against the map itself
    let byte_table_at = if n_entries == 1 {
        let entries = content.get(entries_at..r.pos).unwrap_or(&[]);
        let at = r.pos;
        let table = r.take(BYTE_TABLE_LEN.wrapping_shl(shift))?;
        if int16 {
            // int16 entries, little-endian
            for (raw, q) in (0i32..).zip(table.chunks_exact(2)) {
                let stored = match *q {
                    [lo, hi] => i16::from_le_bytes([lo, hi]),
                    _ => 0, // chunks of two: never taken
                };
                if affine16_at(entries, 0, raw) != stored {
                    return Err(Error::InputTable {
                        raw: u8::try_from(raw).unwrap_or(u8::MAX),
                    });
                }
            }
        } else {
            for (raw, &q) in (0i32..).zip(table) {
                // the input stage's own function: one copy of the map in the flash image
                if affine_at(entries, 0, raw, i64::from(input_zero_point)) != q as i8 {
                    return Err(Error::InputTable {
                        raw: u8::try_from(raw).unwrap_or(u8::MAX),
                    });
                }
            }
        }
        Some(at)
    } else {
        None
    };

    // ---- value table
    let values_at = r.pos;
    r.take(VALUE_LEN.saturating_mul(usize::from(n_values)))?;
    let mut needed_arena = 0usize;
    for id in 0..n_values {
        let at = usize::from(id)
            .saturating_mul(VALUE_LEN)
            .saturating_add(values_at);
        // the table's bytes are there (taken above)
        let [h, w, c, offset, last] = words::<5>(content, at);
        let zero_point = last as i8;
        if v4 {
            // every value has the model's element type (room for mixed types later)
            let value_dtype = (last >> 8) as u8;
            if value_dtype > DTYPE_I16 {
                return Err(Error::BadValueType {
                    value: id,
                    dtype: value_dtype,
                });
            }
            if value_dtype != dtype {
                return Err(Error::MixedValueTypes { value: id });
            }
        }
        zero_bytes(last, at.wrapping_add(16), 2u32.wrapping_sub(u32::from(!v4)))?;
        if h == 0 || w == 0 || c == 0 {
            return Err(Error::EmptyValue { value: id });
        }
        if int16 {
            if zero_point != 0 {
                return Err(Error::Int16ZeroPoint {
                    value: id,
                    found: zero_point,
                });
            }
            if offset % 2 != 0 {
                return Err(Error::Int16Alignment { value: id, offset });
            }
        }
        // in u32, the format's width: no 64-bit arithmetic on a 32-bit core
        let len = h
            .checked_mul(w)
            .and_then(|n| n.checked_mul(c))
            .and_then(|n| n.checked_mul(1 << shift))
            .ok_or(Error::TooLarge)?;
        let end = offset.saturating_add(len);
        if end > arena_len {
            return Err(Error::ArenaOverflow {
                value: id,
                end,
                arena_len,
            });
        }
        needed_arena = needed_arena.max(to_usize(end)?);
    }
    let value = |id: u16| read_value(content, values_at, id);
    let first = value(0);
    if first.len != to_usize(n_inputs)? {
        return Err(Error::InputShapeMismatch {
            header: n_inputs,
            value: u32_sat(first.len),
        });
    }
    if first.zero_point != input_zero_point {
        return Err(Error::ZeroPointMismatch {
            layer: 0,
            expected: input_zero_point,
            found: first.zero_point,
        });
    }

    // ---- nodes, in execution order
    let nodes_at = r.pos;
    let mut widest_dense = 0usize;
    let mut conv_workspace = 0usize;
    for layer in 0..n_nodes {
        let header_at = r.offset();
        // the bytes first (a truncated blob says so), then the decoder inference uses
        let node = read_node(content, r.pos);
        r.take(NODE_HEADER_LEN)?;
        let out_id = layer.saturating_add(1);
        if node.output != out_id {
            return Err(Error::BadValueId {
                layer,
                value: node.output,
            });
        }
        if node.input >= out_id {
            return Err(Error::BadValueId {
                layer,
                value: node.input,
            });
        }
        let add = node.kind == KIND_ADD;
        if !add && node.second_input != NO_VALUE {
            return Err(Error::BadValueId {
                layer,
                value: node.second_input,
            });
        }
        if add && version < ADD_VERSION {
            return Err(Error::KindVersion {
                layer,
                kind: node.kind,
                version,
            });
        }
        let input = value(node.input);
        let output = value(node.output);
        // (no in-place code at all in a program without a kind that runs in place)
        let in_place_version = kinds::links_in_place(KINDS) && version >= IN_PLACE_VERSION;
        let g = geometry::<KINDS>(&node, layer, &input, &output, (header_at, in_place_version))?;
        // only a depthwise convolution, a pointwise one (1x1, stride 1), a shape-keeping one
        // (version 7) and an Add run in place
        let in_place = in_place_version && node.in_place();
        if in_place {
            let kernel = [usize::from(node.kernel[0]), usize::from(node.kernel[1])];
            let stride = [usize::from(node.stride[0]), usize::from(node.stride[1])];
            let pointwise = g.kind == LayerKind::Conv2d
                && node.kernel == [1, 1]
                && node.stride == [1, 1]
                && g.pad == [0, 0];
            let row_window = g.kind == LayerKind::Conv2d
                && version >= SHAPE_KEEPING_VERSION
                && crate::kernels::inplace::is_row_window(
                    kernel,
                    stride,
                    input.shape,
                    output.shape,
                );
            let other = matches!(g.kind, LayerKind::DepthwiseConv2d | LayerKind::Add);
            if !(pointwise || row_window || other) {
                return Err(Error::InPlaceKind { layer });
            }
        }
        if KINDS & kinds::ADD != 0 && g.kind == LayerKind::Add {
            // the second input: an earlier value of the first one's shape (0xFFFF is neither)
            if node.second_input >= out_id {
                return Err(Error::BadValueId {
                    layer,
                    value: node.second_input,
                });
            }
            if value(node.second_input).shape != input.shape {
                return Err(Error::AddShapes {
                    layer,
                    a: node.input,
                    b: node.second_input,
                });
            }
        }
        if int16 && (g.kind != LayerKind::Dense || g.activation == Activation::Lut) {
            return Err(Error::Int16Layer { layer });
        }
        let expected = section_len(&g).saturating_add(if in_place { TEMP_LEN } else { 0 });
        if node.section_len as usize != expected {
            return Err(Error::SectionLength {
                layer,
                stored: node.section_len,
                expected: u32::try_from(expected).unwrap_or(u32::MAX),
            });
        }
        parse_arrays::<KINDS>(
            &mut r,
            &node,
            layer,
            &g,
            (&input, int16),
            (&output, version),
        )?;
        if in_place {
            // the temporary: the kind's length, inside the arena
            let [offset, len] = r.words::<2>()?;
            let end = offset.checked_add(len).filter(|&end| end <= arena_len);
            let expected = temp_len(
                g.kind,
                (node.kernel, node.stride, g.pad),
                &input,
                &output,
                version,
            );
            let Some(end) = end.filter(|_| len as usize == expected && (len > 0 || offset == 0))
            else {
                return Err(Error::InPlaceTemp {
                    layer,
                    offset,
                    len,
                    expected: u32_sat(expected),
                });
            };
            needed_arena = needed_arena.max(to_usize(end)?);
            // the overlap is exactly the kind's: the output at the input's offset (a
            // depthwise or narrowing pointwise convolution, an Add over either operand), or a
            // widening pointwise convolution's input at the end of its output
            let second = value(node.second_input);
            let form = match g.kind {
                LayerKind::Add => output.offset == input.offset || output.offset == second.offset,
                LayerKind::Conv2d => {
                    crate::kernels::inplace::pointwise_input_at(input.shape, output.shape)
                        .and_then(|at| output.offset.checked_add(at))
                        == Some(input.offset)
                }
                _ => output.offset == input.offset,
            };
            if !form {
                return Err(Error::InPlaceOverlap { layer });
            }
        }
        if g.kind == LayerKind::Dense {
            widest_dense = widest_dense.max(input.len);
        }
        let conv = KINDS & kinds::CONV2D != 0 && g.kind == LayerKind::Conv2d;
        // a depthwise layer in place runs its ring kernel, without the planes
        let depthwise =
            KINDS & kinds::DEPTHWISE != 0 && g.kind == LayerKind::DepthwiseConv2d && !in_place;
        if conv || depthwise {
            let p = crate::kernels::ConvParams::shapes(
                (input.shape, output.shape),
                [usize::from(node.kernel[0]), usize::from(node.kernel[1])],
                [usize::from(node.stride[0]), usize::from(node.stride[1])],
                g.pad,
            );
            let len = if conv {
                crate::kernels::conv_workspace_len(&p)
            } else {
                crate::kernels::depthwise_workspace_len(&p)
            };
            conv_workspace = conv_workspace.max(len);
        }
    }

    // ---- output section
    let output_at = r.pos;
    let [output_scale_bits, w1] = r.words::<2>()?;
    let output_zero_point = w1 as i8;
    zero_bytes(w1, output_at.wrapping_add(4), 1)?;
    let exponent = (output_scale_bits >> 23) & 0xFF;
    if output_scale_bits >> 31 != 0 || exponent == 0xFF || output_scale_bits == 0 {
        return Err(Error::BadOutputScale {
            bits: output_scale_bits,
        });
    }
    let last = value(n_nodes);
    if output_zero_point != last.zero_point {
        return Err(Error::OutputZeroPointMismatch {
            output: output_zero_point,
            last_layer: last.zero_point,
        });
    }
    let rest = content.len().saturating_sub(r.pos);
    if rest != 0 {
        return Err(Error::TrailingBytes {
            count: u32_sat(rest),
        });
    }

    // ---- whole-model consistency: shapes, the arena and the plan
    if to_usize(n_outputs)? != last.len {
        return Err(Error::OutputShapeMismatch {
            header: n_outputs,
            last_layer: u32_sat(last.len),
        });
    }
    if to_usize(arena_len)? != needed_arena {
        return Err(Error::ScratchLenMismatch {
            stored: arena_len,
            computed: u32_sat(needed_arena),
        });
    }
    check_plan::<KINDS>(content, nodes_at, n_nodes, value, int16)?;

    Ok(Model {
        bytes,
        n_inputs: to_usize(n_inputs)?,
        n_outputs: to_usize(n_outputs)?,
        n_nodes: usize::from(n_nodes),
        arena_len: to_usize(arena_len)?,
        widest_dense,
        conv_workspace,
        input_zero_point,
        n_entries: to_usize(n_entries)?,
        entries_at,
        byte_table_at,
        values_at,
        nodes_at,
        input_at: first.offset,
        output_at: last.offset,
        output_scale_bits,
        output_zero_point,
    })
}

/// No two values alive at the same node share a byte. Value `v > 0` lives from its writer, node
/// `v - 1`, to the last node that reads it (either input of an `Add`); value 0 from node 0. For
/// `a < b` the lifetimes meet exactly when some node `k >= b - 1` reads `a`, so one walk over
/// the (validated) node records visits every pair that must not overlap: for node `k` reading
/// `a`, the values `a + 1` to `k + 1`. No table of last readers (its bytes and their zeroing are flash on small parts).
///
/// The one exception is an in-place node's output and the input it is written over (the form
/// was checked with the record): that pair is skipped at that node only, so a later reader of
/// the input still meets the output and is refused. An in-place node's temporary shares no
/// byte with a value alive at its node: its output, and every value `a <= k + 1` that a node
/// `j >= k` reads.
fn check_plan<const KINDS: u8>(
    content: &[u8],
    nodes_at: usize,
    n_nodes: u16,
    value: impl Fn(u16) -> Value,
    int16: bool,
) -> Result<(), Error> {
    // a constant 0 in a program without int16
    let shift = u32::from(KINDS & kinds::INT16 != 0 && int16);
    let mut at = nodes_at;
    let overlap = |a: &Value, (lo, hi): (usize, usize)| a.offset < hi && lo < a.end(shift);
    for k in 0..n_nodes {
        let node = read_node(content, at);
        let next = at.wrapping_add(node.section_len as usize);
        let out = k.saturating_add(1);
        // an Add reads two values (validated: both earlier); every other node one
        let second = if KINDS & kinds::ADD != 0 {
            node.second_input
        } else {
            NO_VALUE
        };
        // the input the output is written over: an Add's first operand at the output's
        // offset, else its second
        let in_place = kinds::links_in_place(KINDS) && node.in_place();
        let over = if !in_place {
            NO_VALUE
        } else if second == NO_VALUE || value(node.input).offset == value(out).offset {
            node.input
        } else {
            second
        };
        // node `k` reads `a`: no value written from `a + 1` to `k + 1` may share its bytes
        let check = |a: u16| {
            let va = value(a);
            for b in a.saturating_add(1)..=out {
                if b == out && a == over {
                    continue;
                }
                let vb = value(b);
                if overlap(&va, (vb.offset, vb.end(shift))) {
                    return Err(Error::ArenaOverlap { a, b });
                }
            }
            Ok(())
        };
        check(node.input)?;
        if second != NO_VALUE {
            check(second)?;
        }
        if in_place {
            let body = content
                .get(at.wrapping_add(NODE_HEADER_LEN)..next)
                .unwrap_or(&[]);
            let (offset, len) = read_temp(body);
            let temp = (offset, offset.wrapping_add(len)); // inside the arena: checked
            let clash = |v: u16| Error::TempOverlap { layer: k, value: v };
            if len > 0 && overlap(&value(out), temp) {
                return Err(clash(out));
            }
            // every value alive at node k that a node j >= k reads
            let mut at_j = at;
            for _ in k..n_nodes {
                let reader = read_node(content, at_j);
                at_j = at_j.wrapping_add(reader.section_len as usize);
                let second = if KINDS & kinds::ADD != 0 {
                    reader.second_input
                } else {
                    NO_VALUE
                };
                for a in [reader.input, second] {
                    if len > 0 && a <= out && overlap(&value(a), temp) {
                        return Err(clash(a));
                    }
                }
            }
        }
        at = next;
    }
    Ok(())
}

/// A node's arrays: present, in range, zero-padded, and no accumulator can overflow.
fn parse_arrays<const KINDS: u8>(
    r: &mut Reader<'_>,
    node: &NodeRecord,
    layer: u16,
    g: &Geometry,
    (input, int16): (&Value, bool),
    (output, version): (&Value, u16),
) -> Result<(), Error> {
    match g.kind {
        LayerKind::MaxPool2d if KINDS & kinds::MAX_POOL != 0 => {
            if output.zero_point != input.zero_point {
                return Err(Error::MaxPoolZeroPoint {
                    layer,
                    input: input.zero_point,
                    output: output.zero_point,
                });
            }
            return Ok(());
        }
        LayerKind::Add if KINDS & kinds::ADD != 0 => {
            let at = r.pos;
            let [weight_a, weight_b, multiplier, last] = r.words::<4>()?;
            // W_a, W_b: |W| <= 2^22 keeps the accumulator below 2^31 (no overflow check needed)
            for (operand, weight) in [(0, weight_a), (1, weight_b)] {
                let weight = weight as i32;
                if weight.unsigned_abs() > add_weight_max(version) {
                    return Err(Error::AddWeight {
                        layer,
                        operand,
                        weight,
                    });
                }
            }
            zero_bytes(last, at.wrapping_add(12), 1)?;
            return check_requant(layer, 0, multiplier as i32, last as u8);
        }
        LayerKind::AvgPool2d if KINDS & kinds::AVG_POOL != 0 => {
            let at = r.pos;
            let [multiplier, last] = r.words::<2>()?;
            zero_bytes(last, at.wrapping_add(4), 1)?;
            check_requant(layer, 0, multiplier as i32, last as u8)?;
            // |acc| <= 255 kh kw
            let taps = u64::from(node.kernel[0]).saturating_mul(u64::from(node.kernel[1]));
            if taps.saturating_mul(255) > i32::MAX as u64 {
                return Err(Error::AccumulatorOverflow { layer, channel: 0 });
            }
            return Ok(());
        }
        _ => {}
    }
    let n = g.channels;
    let multipliers = r.take(n.saturating_mul(4))?;
    for (channel, m) in (0u32..).zip(multipliers.chunks_exact(4).map(le_i32)) {
        check_requant(layer, channel, m, crate::fixed::SHIFT_MIN)?;
    }
    let shifts = r.take(n)?;
    for (channel, &shift) in (0u32..).zip(shifts) {
        check_requant(layer, channel, crate::fixed::MULTIPLIER_MIN, shift)?;
    }
    r.zeros(pad4(n))?;
    let bias = r.take(n.saturating_mul(4))?;
    let weights = r.take(g.n_weights)?;
    r.zeros(pad4(g.n_weights))?;
    if g.activation == Activation::Lut {
        r.take(LUT_LEN)?;
    }
    // The worst-case accumulator of every channel must fit in i32. Dense: the bias is folded
    // and |x| <= 128; convolutions: |x - zp| <= 255. Saturating u32 sums give the same verdict
    // as exact ones (u32::MAX > i32::MAX) in cheaper arithmetic on 32-bit cores.
    let dense = KINDS & kinds::DENSE != 0 && g.kind == LayerKind::Dense;
    let (per_channel, x_max) = if dense {
        // int16 activations: symmetric, |x| <= 32768
        (
            input.len,
            if KINDS & kinds::INT16 != 0 && int16 {
                32768u32
            } else {
                128
            },
        )
    } else if g.kind == LayerKind::Conv2d {
        (g.n_weights.checked_div(g.channels).unwrap_or(0), 255)
    } else {
        (1, 255) // depthwise: the weights of channel c are every c-th byte
    };
    let worst = |b: i32, ws: &mut dyn Iterator<Item = &u8>| {
        ws.fold(b.unsigned_abs(), |s, &w| {
            s.saturating_add(u32::from((w as i8).unsigned_abs()).saturating_mul(x_max))
        })
    };
    let stride = g.channels.max(1);
    for (channel, b) in (0u32..).zip(bias.chunks_exact(4).map(le_i32)) {
        let c = channel as usize;
        let total = if KINDS & kinds::DEPTHWISE != 0 && g.kind == LayerKind::DepthwiseConv2d {
            worst(b, &mut weights.iter().skip(c).step_by(stride))
        } else {
            let start = c.saturating_mul(per_channel);
            let row = weights
                .get(start..start.saturating_add(per_channel))
                .unwrap_or(&[]);
            worst(b, &mut row.iter())
        };
        if total > i32::MAX as u32 {
            return Err(Error::AccumulatorOverflow { layer, channel });
        }
    }
    Ok(())
}

fn check_requant(layer: u16, channel: u32, multiplier: i32, shift: u8) -> Result<(), Error> {
    if !multiplier_is_valid(multiplier) {
        return Err(Error::BadMultiplier {
            layer,
            channel,
            multiplier,
        });
    }
    if !shift_is_valid(shift) {
        return Err(Error::BadShift {
            layer,
            channel,
            shift,
        });
    }
    Ok(())
}
