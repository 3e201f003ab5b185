//! The one writer of the model blob format (feature `encode`, uses `std`).
//!
//! The trainer's quantizer fills a [`ModelSpec`] and calls [`encode`], which lays the blob out
//! as `docs/blob-format.md` describes and then validates the result with
//! [`Model::from_bytes`](crate::Model::from_bytes): a blob `encode` returns always loads.

use std::vec::Vec;

use crate::blob::{
    layer_section_len, pad4, ACT_IDENTITY, ACT_LUT, ACT_RELU, FORMAT_VERSION, HEADER_RESERVED,
    MAGIC,
};
use crate::crc32::crc32;
use crate::model::{Model, MAX_LAYERS};
use crate::Error;

/// One input-stage affine map: `q = sat8(zp_in + rq(256 * x - offset, multiplier, shift))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffineSpec {
    /// `mu = round_half_even(256 * mean)`.
    pub offset: i32,
    /// In `[2^30, 2^31)`.
    pub multiplier: i32,
    /// In `[1, 62]`.
    pub shift: u8,
}

/// The input stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputStageSpec {
    /// The zero point of the quantized input (the first layer's input zero point).
    pub zero_point: i8,
    /// One entry shared by all features, or one per input feature.
    pub features: Vec<AffineSpec>,
}

/// A layer's activation.
#[allow(clippy::large_enum_variant)] // host-side description; the table is the point
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationSpec {
    Identity,
    /// Fused clamp: the output is at least `output_zero_point`.
    Relu,
    /// Requantize to `pre_zero_point` (with `sat8`), then `table[q + 128]`.
    Lut {
        pre_zero_point: i8,
        table: [i8; 256],
    },
}

/// One dense layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    pub n_inputs: u32,
    pub n_outputs: u32,
    /// Informational (already folded into `bias`), but checked: it must be the zero point of
    /// what feeds the layer (the input stage's, or the previous layer's output zero point).
    pub input_zero_point: i8,
    /// For `Lut`: the zero point after the table.
    pub output_zero_point: i8,
    /// Row-major `[n_outputs][n_inputs]`.
    pub weights: Vec<i8>,
    /// Folded: `q_b - zp_in * sum_i q_w`.
    pub bias: Vec<i32>,
    /// Per output channel; requantize to `output_zero_point` (Identity, Relu) or to
    /// `pre_zero_point` (Lut).
    pub multipliers: Vec<i32>,
    pub shifts: Vec<u8>,
    pub activation: ActivationSpec,
}

/// A whole model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub input: InputStageSpec,
    pub layers: Vec<LayerSpec>,
    /// The logits' scale (for `Model::dequantize`): positive, finite, non-zero.
    pub output_scale: f32,
    /// Must equal the last layer's `output_zero_point`.
    pub output_zero_point: i8,
}

fn u32_of(n: usize) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::TooLarge)
}

fn check_len(layer: u16, field: &'static str, found: usize, expected: u64) -> Result<(), Error> {
    if found as u64 == expected {
        Ok(())
    } else {
        Err(Error::SpecLength {
            layer,
            field,
            expected: u32::try_from(expected).unwrap_or(u32::MAX),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        })
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn i8(&mut self, v: i8) {
        self.0.push(v as u8);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.bytes(&v.to_le_bytes());
    }
    fn zeros(&mut self, n: u64) {
        for _ in 0..n {
            self.0.push(0);
        }
    }
}

/// Writes `spec` as a blob, then validates it with [`Model::from_bytes`].
///
/// Errors: [`Error::NoLayers`], [`Error::TooManyLayers`], [`Error::SpecLength`] for a vector
/// whose length does not match the shapes, [`Error::TooLarge`] for a blob beyond 4 GiB, and any
/// validation error of [`Model::from_bytes`] (shapes that do not chain, zero points that do not
/// chain, multipliers or shifts out of range, an accumulator that could overflow, a bad output
/// scale, ...).
pub fn encode(spec: &ModelSpec) -> Result<Vec<u8>, Error> {
    let (first, last) = match (spec.layers.first(), spec.layers.last()) {
        (Some(first), Some(last)) => (first, last),
        _ => return Err(Error::NoLayers),
    };
    if spec.layers.len() > MAX_LAYERS {
        return Err(Error::TooManyLayers {
            found: u16::try_from(spec.layers.len()).unwrap_or(u16::MAX),
        });
    }
    let n_layers = u16::try_from(spec.layers.len()).map_err(|_| Error::TooLarge)?;
    let mut scratch = 0u64;
    for (index, layer) in (0u16..).zip(&spec.layers) {
        let n_out = u64::from(layer.n_outputs);
        check_len(
            index,
            "weights",
            layer.weights.len(),
            u64::from(layer.n_inputs).saturating_mul(n_out),
        )?;
        check_len(index, "bias", layer.bias.len(), n_out)?;
        check_len(index, "multipliers", layer.multipliers.len(), n_out)?;
        check_len(index, "shifts", layer.shifts.len(), n_out)?;
        scratch = scratch.max(u64::from(layer.n_inputs).saturating_add(n_out));
    }
    let scratch = u32::try_from(scratch).map_err(|_| Error::TooLarge)?;

    let mut w = Writer(Vec::new());
    // header
    w.bytes(&MAGIC);
    w.u16(FORMAT_VERSION);
    w.u16(n_layers);
    w.u32(0); // total length, patched below
    w.u32(first.n_inputs);
    w.u32(last.n_outputs);
    w.u32(scratch);
    w.zeros(HEADER_RESERVED as u64);
    // input stage
    w.u32(u32_of(spec.input.features.len())?);
    w.i8(spec.input.zero_point);
    w.zeros(3);
    for f in &spec.input.features {
        w.i32(f.offset);
        w.i32(f.multiplier);
        w.u8(f.shift);
        w.zeros(3);
    }
    // layers
    for layer in &spec.layers {
        let (kind, pre_zero_point, table) = match &layer.activation {
            ActivationSpec::Identity => (ACT_IDENTITY, 0, None),
            ActivationSpec::Relu => (ACT_RELU, 0, None),
            ActivationSpec::Lut {
                pre_zero_point,
                table,
            } => (ACT_LUT, *pre_zero_point, Some(table)),
        };
        let section_len = layer_section_len(layer.n_inputs, layer.n_outputs, table.is_some());
        let section_len = u32::try_from(section_len).map_err(|_| Error::TooLarge)?;
        w.u32(layer.n_inputs);
        w.u32(layer.n_outputs);
        w.u8(kind);
        w.i8(layer.input_zero_point);
        w.i8(layer.output_zero_point);
        w.i8(pre_zero_point);
        w.u32(section_len);
        for &m in &layer.multipliers {
            w.i32(m);
        }
        w.bytes(&layer.shifts);
        w.zeros(pad4(layer.shifts.len() as u64));
        for &b in &layer.bias {
            w.i32(b);
        }
        for &q in &layer.weights {
            w.i8(q);
        }
        w.zeros(pad4(layer.weights.len() as u64));
        if let Some(table) = table {
            for &e in table {
                w.i8(e);
            }
        }
    }
    // output
    w.u32(spec.output_scale.to_bits());
    w.i8(spec.output_zero_point);
    w.zeros(3);
    // total length and CRC
    let mut bytes = w.0;
    let total = bytes
        .len()
        .checked_add(4)
        .ok_or(Error::TooLarge)
        .and_then(u32_of)?;
    if let Some(field) = bytes.get_mut(8..12) {
        field.copy_from_slice(&total.to_le_bytes());
    }
    let crc = crc32(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    Model::from_bytes(&bytes)?;
    Ok(bytes)
}
