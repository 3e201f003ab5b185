//! int16 activations (the 16x8 scheme, blob format version 4): encode → from_bytes → run_i16
//! against an independent i64 evaluation, the calls that do not fit the model's width, and
//! the loader's int16 checks.

use crate::encode::{
    chain, ActivationSpec, Activations, AffineSpec, ConvSpec, DenseSpec, InputStageSpec, LayerSpec,
    ModelSpec, Padding,
};
use crate::testutil::{rq_ref, Rng};
use crate::{kinds, Error, Model};
use std::vec::Vec;

fn sat16_ref(v: i64) -> i64 {
    v.clamp(-32768, 32767)
}

/// A random int16 MLP: `widths[0]` inputs, one shared input map or one per feature.
fn int16_mlp(rng: &mut Rng, widths: &[usize], shared_input: bool) -> ModelSpec {
    let n_in = widths[0];
    let features = (0..if shared_input { 1 } else { n_in })
        .map(|_| AffineSpec {
            offset: rng.range_i64(-3000, 3000) as i32,
            multiplier: rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32,
            shift: rng.usize_in(10, 20) as u8,
        })
        .collect();
    let layers = widths
        .windows(2)
        .enumerate()
        .map(|(k, w)| {
            let (n_in, n_out) = (w[0], w[1]);
            LayerSpec::Dense(DenseSpec {
                n_inputs: n_in as u32,
                n_outputs: n_out as u32,
                input_zero_point: 0,
                output_zero_point: 0,
                weights: (0..n_in * n_out).map(|_| rng.i8_in(-127, 127)).collect(),
                bias: (0..n_out)
                    .map(|_| rng.range_i64(-1 << 20, 1 << 20) as i32)
                    .collect(),
                multipliers: (0..n_out)
                    .map(|_| rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32)
                    .collect(),
                shifts: (0..n_out).map(|_| rng.usize_in(36, 44) as u8).collect(),
                activation: if k + 2 < widths.len() {
                    ActivationSpec::Relu
                } else {
                    ActivationSpec::Identity
                },
            })
        })
        .collect::<Vec<_>>();
    ModelSpec {
        activations: Activations::Int16,
        input: InputStageSpec {
            zero_point: 0,
            frac_bits: 0,
            features,
        },
        input_shape: [1, 1, n_in as u32],
        nodes: chain(layers),
        output_scale: 0.001,
        output_zero_point: 0,
    }
}

/// docs/blob-format.md for int16, in plain i64: the input stage, then each dense layer.
fn evaluate(spec: &ModelSpec, raw: &[i32]) -> Vec<i16> {
    let mut x: Vec<i64> = raw
        .iter()
        .enumerate()
        .map(|(j, &r)| {
            let f = &spec.input.features[if spec.input.features.len() == 1 { 0 } else { j }];
            let r = i64::from(r).clamp(-(1 << 23), (1 << 23) - 1);
            sat16_ref(rq_ref(256 * r - i64::from(f.offset), f.multiplier, f.shift))
        })
        .collect();
    for node in &spec.nodes {
        let LayerSpec::Dense(d) = &node.layer else {
            unreachable!("int16 models are dense")
        };
        let n_in = d.n_inputs as usize;
        x = (0..d.n_outputs as usize)
            .map(|o| {
                let acc: i64 = i64::from(d.bias[o])
                    + (0..n_in)
                        .map(|i| i64::from(d.weights[o * n_in + i]) * x[i])
                        .sum::<i64>();
                let y = sat16_ref(rq_ref(acc, d.multipliers[o], d.shifts[o]));
                match d.activation {
                    ActivationSpec::Relu => y.max(0),
                    _ => y,
                }
            })
            .collect();
    }
    x.into_iter().map(|v| v as i16).collect()
}

#[test]
fn int16_models_run_the_specification() {
    let mut rng = Rng::new(16);
    for (case, widths) in [&[5usize, 3][..], &[12, 9, 4], &[40, 17, 8, 10], &[1, 1]]
        .into_iter()
        .enumerate()
    {
        for shared in [true, false] {
            let spec = int16_mlp(&mut rng, widths, shared);
            let blob = crate::encode::encode(&spec).unwrap();
            assert_eq!(
                u16::from_le_bytes([blob[4], blob[5]]),
                4,
                "int16 needs version 4"
            );
            let model = Model::from_bytes(&blob).unwrap();
            assert_eq!(model.activation_bits(), 16);
            assert_ne!(model.layer_kinds() & kinds::INT16, 0);
            let mut scratch = std::vec![0i8; model.scratch_len()];
            let mut logits = std::vec![0i16; model.n_outputs()];
            for sample in 0..20 {
                // bytes (the byte table), and values beyond it
                let raw: Vec<i32> = (0..widths[0])
                    .map(|_| {
                        if sample % 2 == 0 {
                            rng.range_i64(0, 255) as i32
                        } else {
                            rng.range_i64(-100_000, 100_000) as i32
                        }
                    })
                    .collect();
                let expected = evaluate(&spec, &raw);
                let argmax = model.run_i16(&raw, &mut scratch, &mut logits).unwrap();
                assert_eq!(logits, expected, "case {case}, sample {sample}");
                let first_max = (0..expected.len())
                    .find(|&i| expected[i] == *expected.iter().max().unwrap())
                    .unwrap();
                assert_eq!(argmax, first_max);
                // the quantized entry point: the same logits from the input stage's values
                let mut q = std::vec![0i16; model.n_inputs()];
                model.quantize_input_i16(&raw, &mut q).unwrap();
                let mut again = std::vec![0i16; model.n_outputs()];
                model
                    .run_quantized_i16(&q, &mut scratch, &mut again)
                    .unwrap();
                assert_eq!(again, expected);
                model
                    .run_quantized_i16_reference(&q, &mut scratch, &mut again)
                    .unwrap();
                assert_eq!(again, expected, "the reference kernel");
            }
            let mut out = std::vec![0f32; model.n_outputs()];
            model.dequantize_i16(&logits, &mut out).unwrap();
            assert_eq!(out[0], 0.001 * f32::from(logits[0]));
        }
    }
}

#[test]
fn a_call_of_the_other_width_is_refused_before_any_work() {
    let mut rng = Rng::new(3);
    let blob16 = crate::encode::encode(&int16_mlp(&mut rng, &[4, 3], true)).unwrap();
    let m16 = Model::from_bytes(&blob16).unwrap();
    let mut scratch = std::vec![0i8; m16.scratch_len()];
    let refused = Err(Error::ActivationType { model_bits: 16 });
    let mut logits8 = [0i8; 3];
    assert_eq!(m16.run(&[1, 2, 3, 4], &mut scratch, &mut logits8), refused);
    assert_eq!(
        m16.run_bytes(&[1, 2, 3, 4], &mut scratch, &mut logits8),
        refused
    );
    assert_eq!(
        m16.run_quantized(&[1, 2, 3, 4], &mut scratch, &mut logits8),
        refused
    );
    assert_eq!(
        m16.quantize_input(&[1, 2, 3, 4], &mut [0; 4]),
        refused.map(|_| ())
    );
    // and the int16 calls on an int8 model
    let blob8 = crate::tests::random_model(&mut rng, 6).blob();
    let m8 = Model::from_bytes(&blob8).unwrap();
    assert_eq!(m8.activation_bits(), 8);
    let mut logits16 = std::vec![0i16; m8.n_outputs()];
    let mut scratch = std::vec![0i8; m8.scratch_len()];
    let raw = std::vec![1; m8.n_inputs()];
    assert_eq!(
        m8.run_i16(&raw, &mut scratch, &mut logits16),
        Err(Error::ActivationType { model_bits: 8 })
    );
    // an int8 model is still written as version 3, which older runtimes read
    assert_eq!(u16::from_le_bytes([blob8[4], blob8[5]]), 3);
}

/// Re-seals the CRC after a change.
fn reseal(blob: &mut [u8]) {
    let n = blob.len() - 4;
    let crc = crate::crc32::crc32(&blob[..n]);
    blob[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn the_loader_checks_every_int16_rule() {
    let mut rng = Rng::new(5);
    let spec = int16_mlp(&mut rng, &[4, 3], true);
    let blob = crate::encode::encode(&spec).unwrap();
    // header 32, input stage 8 + 12, the byte table of 256 int16, then the value table
    let values_at = 32 + 20 + 512;
    let check = |change: &dyn Fn(&mut Vec<u8>), expected: Error| {
        let mut b = blob.clone();
        change(&mut b);
        reseal(&mut b);
        assert_eq!(Model::from_bytes(&b).map(|_| ()), Err(expected));
    };
    // a byte-table entry that is not the map of its byte
    check(&|b| b[52 + 2 * 7] ^= 1, Error::InputTable { raw: 7 });
    // value 1 with a zero point, at an odd offset, of another type or an unknown one
    check(
        &|b| b[values_at + 20 + 16] = 3,
        Error::Int16ZeroPoint { value: 1, found: 3 },
    );
    check(
        &|b| b[values_at + 20 + 17] = 0,
        Error::MixedValueTypes { value: 1 },
    );
    check(
        &|b| b[values_at + 20 + 17] = 9,
        Error::BadValueType { value: 1, dtype: 9 },
    );
    check(&|b| b[26] = 7, Error::BadValueType { value: 0, dtype: 7 });
    let odd = |b: &mut Vec<u8>| {
        let at = values_at + 12;
        let offset = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        b[at..at + 4].copy_from_slice(&(offset + 1).to_le_bytes());
    };
    let mut b = blob.clone();
    odd(&mut b);
    reseal(&mut b);
    assert!(matches!(
        Model::from_bytes(&b),
        Err(Error::Int16Alignment { value: 0, .. }) | Err(Error::ArenaOverflow { value: 0, .. })
    ));
    // a program that does not link int16 refuses the blob at load
    let refused = Model::<{ kinds::DENSE }>::with_kinds(&blob).map(|_| ());
    assert_eq!(refused, Err(Error::UnsupportedVersion { found: 4 }));
    assert!(std::format!("{}", refused.unwrap_err()).contains("kinds::INT16"));
    // the worst-case accumulator with |x| <= 32768: 32768 * 127 * n_in must fit with the bias
    let mut big = int16_mlp(&mut rng, &[600, 2], true);
    if let LayerSpec::Dense(d) = &mut big.nodes[0].layer {
        d.weights.iter_mut().for_each(|w| *w = 127);
    }
    assert_eq!(
        crate::encode::encode(&big).map(|_| ()),
        Err(Error::AccumulatorOverflow {
            layer: 0,
            channel: 0
        })
    );
    // layers int16 does not run yet are refused by name
    let mut conv = int16_mlp(&mut rng, &[4, 3], true);
    conv.input_shape = [2, 2, 1];
    conv.nodes = chain([LayerSpec::Conv2d(ConvSpec {
        kernel: [1, 1],
        stride: [1, 1],
        padding: Padding::Valid,
        n_outputs: 3,
        input_zero_point: 0,
        output_zero_point: 0,
        weights: std::vec![1, 2, 3],
        bias: std::vec![0; 3],
        multipliers: std::vec![1 << 30; 3],
        shifts: std::vec![31; 3],
        activation: ActivationSpec::Identity,
    })]);
    assert_eq!(
        crate::encode::encode(&conv).map(|_| ()),
        Err(Error::Int16Layer { layer: 0 })
    );
}

/// An int16 model with a residual `Add` is refused by the encoder, and by the loader in a
/// version-5 blob (the only version with kind 6), by name.
#[test]
fn int16_models_refuse_add() {
    let mut rng = Rng::new(0x0ADD_0016);
    // 3 -> dense 3 -> add(value 1, value 0)
    let mut spec = int16_mlp(&mut rng, &[3, 3], true);
    spec.nodes.push(crate::encode::NodeSpec {
        input: 1,
        layer: LayerSpec::Add(crate::encode::AddSpec {
            other: 0,
            input_zero_points: [0, 0],
            output_zero_point: 0,
            weights: [1 << 15, 1 << 15],
            multiplier: 1 << 30,
            shift: 46,
            activation: ActivationSpec::Identity,
        }),
    });
    spec.output_zero_point = 0;
    assert_eq!(
        crate::encode::encode(&spec).map(|_| ()),
        Err(Error::Int16Layer { layer: 1 })
    );
    // the loader: an int16 dense 3 -> 3 stamped version 5, its node made an Add of values 0
    // and 0 (the Add's header fields are a dense node's: zero kernel and stride)
    let blob = crate::encode::encode(&int16_mlp(&mut rng, &[3, 3], true)).unwrap();
    let node = Model::from_bytes(&blob).unwrap().nodes_at;
    let mut b = blob.clone();
    b[4] = 5;
    b[node] = 6;
    b[node + 6..node + 8].copy_from_slice(&0u16.to_le_bytes());
    reseal(&mut b);
    assert_eq!(
        Model::from_bytes(&b).map(|_| ()),
        Err(Error::Int16Layer { layer: 0 })
    );
    // as version 4, kind 6 is refused for the version first
    b[4] = 4;
    reseal(&mut b);
    assert_eq!(
        Model::from_bytes(&b).map(|_| ()),
        Err(Error::KindVersion {
            layer: 0,
            kind: 6,
            version: 4
        })
    );
    // an int16 model without an Add is still version 4
    assert_eq!(u16::from_le_bytes([blob[4], blob[5]]), 4);
}
