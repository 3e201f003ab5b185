//! Whole-crate tests: encode → from_bytes → run against an independent i64 evaluation of
//! docs/quantization.md, the blob's byte layout, corruption, and buffer handling.

#![allow(clippy::needless_range_loop, clippy::large_enum_variant)]

mod add;
mod buffers;
mod corrupt;
mod format;
mod graph;
mod inplace;
mod int16;
mod roundtrip;

use crate::encode::{
    chain, ActivationSpec, AffineSpec, DenseSpec, InputStageSpec, LayerSpec, ModelSpec,
};
pub use crate::encode::{AddSpec, ConvSpec, NodeSpec, Padding, PoolSpec};
use crate::testutil::{rq_ref, sat8_ref, Rng};
use std::vec::Vec;

/// A layer as the quantizer sees it: the bias is NOT folded (`acc = q_b + sum w * (q - zp_in)`).
#[derive(Debug, Clone)]
pub struct TLayer {
    pub n_in: usize,
    pub n_out: usize,
    pub w: Vec<i8>,
    pub q_b: Vec<i32>,
    pub zp_in: i8,
    pub zp_out: i8,
    pub m: Vec<i32>,
    pub t: Vec<u8>,
    pub act: TAct,
}

#[derive(Debug, Clone)]
pub enum TAct {
    Identity,
    Relu,
    Lut { pre_zp: i8, table: [i8; 256] },
}

#[derive(Debug, Clone)]
pub struct TModel {
    pub zp_in: i8,
    /// (mu, M, t): one shared or one per feature
    pub features: Vec<(i32, i32, u8)>,
    pub layers: Vec<TLayer>,
    pub scale: f32,
}

impl TModel {
    pub fn n_inputs(&self) -> usize {
        self.layers[0].n_in
    }

    pub fn n_outputs(&self) -> usize {
        self.layers.last().unwrap().n_out
    }

    /// The ModelSpec, with the bias folded as the quantizer does.
    pub fn spec(&self) -> ModelSpec {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let bias = (0..l.n_out)
                    .map(|o| {
                        let sum_w: i64 = l.w[o * l.n_in..(o + 1) * l.n_in]
                            .iter()
                            .map(|&w| i64::from(w))
                            .sum();
                        (i64::from(l.q_b[o]) - i64::from(l.zp_in) * sum_w) as i32
                    })
                    .collect();
                LayerSpec::Dense(DenseSpec {
                    n_inputs: l.n_in as u32,
                    n_outputs: l.n_out as u32,
                    input_zero_point: l.zp_in,
                    output_zero_point: l.zp_out,
                    weights: l.w.clone(),
                    bias,
                    multipliers: l.m.clone(),
                    shifts: l.t.clone(),
                    activation: match &l.act {
                        TAct::Identity => ActivationSpec::Identity,
                        TAct::Relu => ActivationSpec::Relu,
                        TAct::Lut { pre_zp, table } => ActivationSpec::Lut {
                            pre_zero_point: *pre_zp,
                            table: *table,
                        },
                    },
                })
            })
            .collect::<Vec<_>>();
        ModelSpec {
            activations: crate::encode::Activations::Int8,
            input: InputStageSpec {
                zero_point: self.zp_in,
                frac_bits: 0,
                features: self
                    .features
                    .iter()
                    .map(|&(offset, multiplier, shift)| AffineSpec {
                        offset,
                        multiplier,
                        shift,
                    })
                    .collect(),
            },
            input_shape: [1, 1, self.n_inputs() as u32],
            nodes: chain(layers),
            output_scale: self.scale,
            output_zero_point: self.layers.last().unwrap().zp_out,
        }
    }

    pub fn blob(&self) -> Vec<u8> {
        crate::encode::encode(&self.spec()).unwrap()
    }

    /// docs/quantization.md "Input", in plain i64.
    pub fn quantize(&self, raw: &[i32]) -> Vec<i8> {
        raw.iter()
            .enumerate()
            .map(|(j, &x)| {
                let (mu, m, t) = if self.features.len() == 1 {
                    self.features[0]
                } else {
                    self.features[j]
                };
                let x = i64::from(x).clamp(-(1 << 23), (1 << 23) - 1);
                sat8_ref(i64::from(self.zp_in) + rq_ref(256 * x - i64::from(mu), m, t)) as i8
            })
            .collect()
    }

    /// Every layer's output, docs/quantization.md "One dense layer" and "Activations", in plain
    /// i64 with the unfolded bias.
    pub fn layer_outputs(&self, q_in: &[i8]) -> Vec<Vec<i8>> {
        let mut outs = Vec::new();
        let mut q: Vec<i8> = q_in.to_vec();
        for l in &self.layers {
            let y: Vec<i8> = (0..l.n_out)
                .map(|o| {
                    let mut acc = i64::from(l.q_b[o]);
                    for i in 0..l.n_in {
                        acc +=
                            i64::from(l.w[o * l.n_in + i]) * (i64::from(q[i]) - i64::from(l.zp_in));
                    }
                    assert!(acc >= i64::from(i32::MIN) && acc <= i64::from(i32::MAX));
                    let r = rq_ref(acc, l.m[o], l.t[o]);
                    match &l.act {
                        TAct::Identity => sat8_ref(i64::from(l.zp_out) + r) as i8,
                        TAct::Relu => {
                            sat8_ref(i64::from(l.zp_out) + r).max(i64::from(l.zp_out)) as i8
                        }
                        TAct::Lut { pre_zp, table } => {
                            let p = sat8_ref(i64::from(*pre_zp) + r);
                            table[(p + 128) as usize]
                        }
                    }
                })
                .collect();
            outs.push(y.clone());
            q = y;
        }
        outs
    }

    pub fn eval_quantized(&self, q_in: &[i8]) -> Vec<i8> {
        self.layer_outputs(q_in).pop().unwrap()
    }

    pub fn eval(&self, raw: &[i32]) -> Vec<i8> {
        self.eval_quantized(&self.quantize(raw))
    }
}

/// First index of the maximum, written independently.
pub fn argmax_ref(v: &[i8]) -> usize {
    let max = *v.iter().max().unwrap();
    v.iter().position(|&x| x == max).unwrap()
}

/// A table that is not monotonic, so a wrong index shows.
pub fn scrambled_table(seed: u64) -> [i8; 256] {
    let mut rng = Rng::new(seed);
    let mut t = [0i8; 256];
    for e in &mut t {
        *e = rng.i8();
    }
    t
}

/// A tanh-like table for pre-activation zero point `pre_zp` (integer only).
pub fn saturating_table(pre_zp: i8, zp_out: i8) -> [i8; 256] {
    let mut t = [0i8; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let q = i as i64 - 128 - i64::from(pre_zp);
        *e = (q / 2)
            .clamp(-64, 63)
            .saturating_add(i64::from(zp_out))
            .clamp(-128, 127) as i8;
    }
    t
}

pub fn random_layer(rng: &mut Rng, n_in: usize, n_out: usize, zp_in: i8) -> TLayer {
    let w: Vec<i8> = (0..n_in * n_out).map(|_| rng.i8_in(-127, 127)).collect();
    let q_b: Vec<i32> = (0..n_out)
        .map(|_| rng.range_i64(-5000, 5000) as i32)
        .collect();
    let m: Vec<i32> = (0..n_out)
        .map(|_| rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32)
        .collect();
    let log_in = (usize::BITS - n_in.leading_zeros()) as i64;
    let t: Vec<u8> = (0..n_out)
        .map(|_| (31 + 6 + log_in / 2 + rng.range_i64(-2, 2)) as u8)
        .collect();
    let zp_out = rng.i8_in(-100, 100);
    let act = match rng.below(3) {
        0 => TAct::Identity,
        1 => TAct::Relu,
        _ => {
            let pre_zp = rng.i8_in(-100, 100);
            let table = if rng.bool() {
                saturating_table(pre_zp, zp_out)
            } else {
                scrambled_table(rng.next_u64())
            };
            TAct::Lut { pre_zp, table }
        }
    };
    TLayer {
        n_in,
        n_out,
        w,
        q_b,
        zp_in,
        zp_out,
        m,
        t,
        act,
    }
}

pub fn random_model(rng: &mut Rng, max_dim: usize) -> TModel {
    let n_layers = rng.usize_in(1, 4);
    let mut dims = std::vec![rng.usize_in(1, max_dim)];
    for _ in 0..n_layers {
        dims.push(rng.usize_in(1, max_dim));
    }
    let zp_in = rng.i8_in(-128, 127);
    let n_features = if rng.bool() { 1 } else { dims[0] };
    let features = (0..n_features)
        .map(|_| {
            (
                rng.range_i64(-2000, 2000) as i32,
                rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32,
                rng.range_i64(36, 42) as u8,
            )
        })
        .collect();
    let mut layers = Vec::new();
    let mut zp = zp_in;
    for k in 0..n_layers {
        let l = random_layer(rng, dims[k], dims[k + 1], zp);
        zp = l.zp_out;
        layers.push(l);
    }
    TModel {
        zp_in,
        features,
        layers,
        scale: 0.0625,
    }
}

pub fn random_raw(rng: &mut Rng, n: usize) -> Vec<i32> {
    (0..n)
        .map(|_| match rng.below(10) {
            0 => rng.next_u64() as i32, // far outside the clamp range
            1 => rng.range_i64(-(1 << 23) - 5, -(1 << 23) + 5) as i32,
            2 => rng.range_i64((1 << 23) - 5, (1 << 23) + 5) as i32,
            _ => rng.range_i64(-400, 400) as i32,
        })
        .collect()
}

/// Recomputes the CRC after tampering.
pub fn reseal(blob: &mut [u8]) {
    let n = blob.len() - 4;
    let crc = crate::crc32::crc32(&blob[..n]);
    blob[n..].copy_from_slice(&crc.to_le_bytes());
}
