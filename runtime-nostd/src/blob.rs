//! The model blob: layout constants and the validating parser (`docs/blob-format.md`).
//!
//! Everything is little-endian and every section starts at a 4-byte-aligned offset. The parser
//! checks every field once, so that inference afterwards cannot fail.

use crate::crc32::crc32;
use crate::error::u32_sat;
use crate::fixed::{multiplier_is_valid, shift_is_valid};
use crate::kernels::{le_i32, FcParams};
use crate::model::{Activation, InputStage, Layer, Model, MAX_LAYERS};
use crate::Error;

/// The first four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"KILN";
/// The format version this runtime reads and writes.
pub const FORMAT_VERSION: u16 = 1;

pub(crate) const HEADER_LEN: usize = 32;
pub(crate) const HEADER_RESERVED: usize = 8;
pub(crate) const INPUT_ENTRY_LEN: usize = 12;
pub(crate) const LAYER_HEADER_LEN: usize = 16;
pub(crate) const CRC_LEN: usize = 4;
pub(crate) const LUT_LEN: usize = 256;

pub(crate) const ACT_IDENTITY: u8 = 0;
pub(crate) const ACT_RELU: u8 = 1;
pub(crate) const ACT_LUT: u8 = 2;

/// Bytes of zero padding after `n` bytes to reach a multiple of 4.
pub(crate) const fn pad4(n: u64) -> u64 {
    n.wrapping_neg() & 3 // (-n) mod 4
}

/// The byte length of a layer section: header, multipliers, padded shifts, bias, padded
/// weights, optional table. At most about `2^64 / 2`: no overflow for `u32` shapes.
#[allow(clippy::arithmetic_side_effects)] // n_in, n_out < 2^32: every term < 2^64 / 8
pub(crate) const fn layer_section_len(n_in: u32, n_out: u32, lut: bool) -> u64 {
    let n_in = n_in as u64;
    let n_out = n_out as u64;
    let weights = n_in * n_out;
    LAYER_HEADER_LEN as u64
        + 4 * n_out
        + n_out
        + pad4(n_out)
        + 4 * n_out
        + weights
        + pad4(weights)
        + if lut { LUT_LEN as u64 } else { 0 }
}

/// A cursor over the blob's content (the bytes before the CRC).
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn offset(&self) -> u32 {
        u32_sat(self.pos)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Error> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n));
        match end.and_then(|end| self.bytes.get(self.pos..end).map(|s| (end, s))) {
            Some((end, s)) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated {
                needed: u32::try_from((self.pos as u64).saturating_add(n)).unwrap_or(u32::MAX),
                available: u32_sat(self.bytes.len()),
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let s = self.take(N as u64)?;
        Ok(<[u8; N]>::try_from(s).unwrap_or([0; N]))
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn i8(&mut self) -> Result<i8, Error> {
        Ok(i8::from_le_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// `n` bytes that must be zero (reserved fields and padding).
    fn zeros(&mut self, n: u64) -> Result<(), Error> {
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

/// Parses and validates a blob (see `docs/blob-format.md` for the order of the checks).
pub(crate) fn parse(bytes: &[u8]) -> Result<Model<'_>, Error> {
    // ---- framing: length, magic, version, total length, CRC
    let available = u32::try_from(bytes.len()).map_err(|_| Error::TooLarge)?;
    let mut r = Reader { bytes, pos: 0 };
    let magic: [u8; 4] = r.array()?;
    if magic != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = r.u16()?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { found: version });
    }
    let n_layers = r.u16()?;
    let total_len = r.u32()?;
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
        _ => {
            return Err(Error::Truncated {
                needed: u32_sat(HEADER_LEN + CRC_LEN),
                available,
            })
        }
    };
    let computed = crc32(content);
    if computed != stored {
        return Err(Error::CrcMismatch { stored, computed });
    }

    // ---- header
    let mut r = Reader {
        bytes: content,
        pos: r.pos,
    };
    let n_inputs = r.u32()?;
    let n_outputs = r.u32()?;
    let scratch_len = r.u32()?;
    r.zeros(HEADER_RESERVED as u64)?;
    if n_layers == 0 {
        return Err(Error::NoLayers);
    }
    if usize::from(n_layers) > MAX_LAYERS {
        return Err(Error::TooManyLayers { found: n_layers });
    }
    if n_inputs == 0 {
        return Err(Error::EmptyLayer { layer: 0 });
    }

    // ---- input stage
    let n_entries = r.u32()?;
    let input_zero_point = r.i8()?;
    r.zeros(3)?;
    if n_entries != 1 && n_entries != n_inputs {
        return Err(Error::InputEntries {
            found: n_entries,
            n_inputs,
        });
    }
    let entries_start = r.pos;
    for feature in 0..n_entries {
        let _offset = r.u32()?; // mu: any i32
        let multiplier = r.u32()? as i32;
        let shift = r.u8()?;
        r.zeros(3)?;
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
    let entries = content.get(entries_start..r.pos).unwrap_or(&[]);
    let input = InputStage::new(input_zero_point, entries);

    // ---- layers
    let mut layers = [Layer::EMPTY; MAX_LAYERS];
    let mut prev_n = n_inputs;
    let mut prev_zp = input_zero_point;
    let mut scratch: u64 = 0;
    for (index, slot) in (0..n_layers).zip(layers.iter_mut()) {
        let layer = parse_layer(&mut r, index, prev_n, prev_zp)?;
        scratch = scratch.max((layer.n_inputs as u64).saturating_add(layer.n_outputs as u64));
        prev_n = u32::try_from(layer.n_outputs).map_err(|_| Error::TooLarge)?;
        prev_zp = layer.output_zero_point;
        *slot = layer;
    }

    // ---- output section
    let output_scale_bits = r.u32()?;
    let output_zero_point = r.i8()?;
    r.zeros(3)?;
    let exponent = (output_scale_bits >> 23) & 0xFF;
    if output_scale_bits >> 31 != 0 || exponent == 0xFF || output_scale_bits == 0 {
        return Err(Error::BadOutputScale {
            bits: output_scale_bits,
        });
    }
    if output_zero_point != prev_zp {
        return Err(Error::OutputZeroPointMismatch {
            output: output_zero_point,
            last_layer: prev_zp,
        });
    }
    let rest = content.len().saturating_sub(r.pos);
    if rest != 0 {
        return Err(Error::TrailingBytes {
            count: u32_sat(rest),
        });
    }

    // ---- whole-model consistency
    if n_outputs != prev_n {
        return Err(Error::OutputShapeMismatch {
            header: n_outputs,
            last_layer: prev_n,
        });
    }
    let computed = u32::try_from(scratch).map_err(|_| Error::TooLarge)?;
    if scratch_len != computed {
        return Err(Error::ScratchLenMismatch {
            stored: scratch_len,
            computed,
        });
    }

    Ok(Model {
        bytes,
        n_inputs: to_usize(n_inputs)?,
        n_outputs: to_usize(n_outputs)?,
        n_layers: usize::from(n_layers),
        scratch_len: to_usize(scratch_len)?,
        input,
        layers,
        output_scale_bits,
        output_zero_point,
    })
}

fn parse_layer<'a>(
    r: &mut Reader<'a>,
    layer: u16,
    prev_n: u32,
    prev_zp: i8,
) -> Result<Layer<'a>, Error> {
    let n_in = r.u32()?;
    let n_out = r.u32()?;
    let kind = r.u8()?;
    let input_zero_point = r.i8()?;
    let output_zero_point = r.i8()?;
    let pre_at = r.offset();
    let pre_zero_point = r.i8()?;
    let section_len = r.u32()?;

    if n_in == 0 || n_out == 0 {
        return Err(Error::EmptyLayer { layer });
    }
    if n_in != prev_n {
        return Err(Error::ShapeMismatch {
            layer,
            expected: prev_n,
            found: n_in,
        });
    }
    let activation = match kind {
        ACT_IDENTITY => Activation::Identity,
        ACT_RELU => Activation::Relu,
        ACT_LUT => Activation::Lut,
        _ => return Err(Error::BadActivation { layer, kind }),
    };
    if input_zero_point != prev_zp {
        return Err(Error::ZeroPointMismatch {
            layer,
            expected: prev_zp,
            found: input_zero_point,
        });
    }
    if activation != Activation::Lut && pre_zero_point != 0 {
        return Err(Error::ReservedNonZero { offset: pre_at });
    }
    let expected = layer_section_len(n_in, n_out, activation == Activation::Lut);
    if u64::from(section_len) != expected {
        return Err(Error::SectionLength {
            layer,
            stored: section_len,
            expected: u32::try_from(expected).unwrap_or(u32::MAX),
        });
    }

    let n_out64 = u64::from(n_out);
    let n_weights = u64::from(n_in).saturating_mul(n_out64);
    let multipliers = r.take(n_out64.saturating_mul(4))?;
    for (channel, m) in (0u32..).zip(multipliers.chunks_exact(4).map(le_i32)) {
        if !multiplier_is_valid(m) {
            return Err(Error::BadMultiplier {
                layer,
                channel,
                multiplier: m,
            });
        }
    }
    let shifts = r.take(n_out64)?;
    for (channel, &shift) in (0u32..).zip(shifts) {
        if !shift_is_valid(shift) {
            return Err(Error::BadShift {
                layer,
                channel,
                shift,
            });
        }
    }
    r.zeros(pad4(n_out64))?;
    let bias = r.take(n_out64.saturating_mul(4))?;
    let weights = r.take(n_weights)?;
    r.zeros(pad4(n_weights))?;
    let lut = match activation {
        Activation::Lut => {
            let table = r.take(LUT_LEN as u64)?;
            Some(<&[u8; LUT_LEN]>::try_from(table).map_err(|_| Error::TooLarge)?)
        }
        _ => None,
    };

    // the worst-case accumulator of every channel must fit in i32
    let n_in_usize = to_usize(n_in)?;
    if n_in_usize == 0 {
        return Err(Error::EmptyLayer { layer }); // checked above; lets the optimizer see it
    }
    let mut rows = weights.chunks_exact(n_in_usize); // advanced by hand, see the reference kernel
    for (channel, b) in (0u32..).zip(bias.chunks_exact(4).map(le_i32)) {
        let Some(row) = rows.next() else { break };
        let worst = row.iter().fold(u64::from(b.unsigned_abs()), |s, &w| {
            s.saturating_add(u64::from((w as i8).unsigned_abs()) << 7)
        });
        if worst > i32::MAX as u64 {
            return Err(Error::AccumulatorOverflow { layer, channel });
        }
    }

    let (requant_zero_point, clamp_min) = match activation {
        Activation::Identity => (output_zero_point, i8::MIN),
        Activation::Relu => (output_zero_point, output_zero_point), // max(-128, zp_out) = zp_out
        Activation::Lut => (pre_zero_point, i8::MIN),
    };
    Ok(Layer {
        n_inputs: n_in_usize,
        n_outputs: to_usize(n_out)?,
        activation,
        output_zero_point,
        params: FcParams {
            weights,
            bias,
            multipliers,
            shifts,
            output_zero_point: requant_zero_point,
            clamp_min,
            clamp_max: i8::MAX,
        },
        lut,
    })
}
