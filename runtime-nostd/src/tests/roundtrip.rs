//! encode → from_bytes → run, against values computed independently.

use super::*;
use crate::{Activation, Model};

fn run(model: &Model<'_>, raw: &[i32]) -> (usize, Vec<i8>) {
    let mut scratch = std::vec![0i8; model.scratch_len()];
    let mut logits = std::vec![0i8; model.n_outputs()];
    let class = model.run(raw, &mut scratch, &mut logits).unwrap();
    (class, logits)
}

/// Identity layer, shared input stage; every expected value worked out by hand.
#[test]
fn hand_computed_identity_shared_input() {
    let model = TModel {
        zp_in: -1,
        // q = -1 + rq(256 x, 2^30, 39) = -1 + round_half_even(x / 2)
        features: std::vec![(0, 1 << 30, 39)],
        layers: std::vec![TLayer {
            n_in: 4,
            n_out: 2,
            w: std::vec![1, 2, 3, 0, -1, 0, 1, 0],
            q_b: std::vec![10, -20],
            zp_in: -1,
            zp_out: 3,
            m: std::vec![1 << 30, 1 << 30],
            t: std::vec![31, 32], // / 2, / 4
            act: TAct::Identity,
        }],
        scale: 0.25,
    };
    let blob = model.blob();
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!(
        (m.n_inputs(), m.n_outputs(), m.n_layers(), m.scratch_len()),
        (4, 2, 1, 6)
    );
    // x / 2: 1.5 -> 2, 2.5 -> 2, -1.5 -> -2, 150 -> saturates
    let raw = [3, 5, -3, 300];
    let mut q = [0i8; 4];
    m.quantize_input(&raw, &mut q).unwrap();
    assert_eq!(q, [1, 1, -3, 127]);
    // q - zp_in = [2, 2, -2, 128]
    // acc0 = 10 + 2 + 4 - 6 + 0 = 10 -> 10 / 2 = 5 -> 3 + 5 = 8
    // acc1 = -20 - 2 + 0 - 2 + 0 = -24 -> -24 / 4 = -6 -> 3 - 6 = -3
    assert_eq!(run(&m, &raw), (0, std::vec![8, -3]));
    assert_eq!(model.eval(&raw), std::vec![8, -3]);
    // raw far outside [-2^23, 2^23): clamped first, then saturated
    let raw = [i32::MIN, i32::MAX, 0, 1];
    // q = [-128, 127, -1, -1 + 0 (0.5 -> 0)]; q - zp = [-127, 128, 0, 0]
    // acc0 = 10 - 127 + 256 + 0 + 0 = 139 -> 69.5 -> 70 (even) -> 73
    // acc1 = -20 + 127 + 0 + 0 + 0 = 107 -> 26.75 -> 27 -> 30
    m.quantize_input(&raw, &mut q).unwrap();
    assert_eq!(q, [-128, 127, -1, -1]);
    assert_eq!(run(&m, &raw), (0, std::vec![73, 30]));
    assert_eq!(model.eval(&raw), std::vec![73, 30]);
}

/// Relu then LUT layers, per-feature input stage; every expected value worked out by hand.
#[test]
fn hand_computed_relu_lut_per_feature_input() {
    let mut table = [0i8; 256];
    for (i, e) in table.iter_mut().enumerate() {
        *e = (2 * (i as i64 - 128) + 1).clamp(-128, 127) as i8; // q -> 2q + 1
    }
    let model = TModel {
        zp_in: 0,
        // feature 0: (256 x - 2560) / 2^8 = x - 10 ; feature 1: 256 x / 2^10 = x / 4
        features: std::vec![(2560, 1 << 30, 38), (0, 1 << 30, 40)],
        layers: std::vec![
            TLayer {
                n_in: 2,
                n_out: 2,
                w: std::vec![2, 1, -3, 0],
                q_b: std::vec![0, 1],
                zp_in: 0,
                zp_out: -5,
                m: std::vec![1 << 30, 1 << 30],
                t: std::vec![31, 31],
                act: TAct::Relu,
            },
            TLayer {
                n_in: 2,
                n_out: 3,
                w: std::vec![1, 1, 1, -1, 0, 2],
                q_b: std::vec![0, 0, 3],
                zp_in: -5,
                zp_out: 1,
                m: std::vec![1 << 30; 3],
                t: std::vec![30; 3], // * 1
                act: TAct::Lut { pre_zp: 0, table },
            },
        ],
        scale: 0.5,
    };
    let blob = model.blob();
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!(m.layer(0).unwrap().activation, Activation::Relu);
    assert_eq!(m.layer(1).unwrap().activation, Activation::Lut);
    assert_eq!(m.layer(2), None);
    assert_eq!(m.scratch_len(), 5);
    // raw [13, 10]: q = [3, 2.5 -> 2]
    // layer 0: acc = [6 + 2, 1 - 9] = [8, -8] -> [4, -4] -> [-1, -9] -> relu at -5 -> [-1, -5]
    // layer 1: q - zp = [4, 0]: acc = [4, 4, 3] -> pre [4, 4, 3] -> table [9, 9, 7]
    assert_eq!(run(&m, &[13, 10]), (0, std::vec![9, 9, 7])); // tie: the first wins
                                                             // raw [7, 6]: q = [-3, 1.5 -> 2]
                                                             // layer 0: acc = [-6 + 2, 1 + 9] = [-4, 10] -> [-2, 5] -> [-7, 0] -> relu -> [-5, 0]
                                                             // layer 1: q - zp = [0, 5]: acc = [5, -5, 3 + 10] -> table [11, -9, 27]
    assert_eq!(run(&m, &[7, 6]), (2, std::vec![11, -9, 27]));
    for raw in [[13, 10], [7, 6]] {
        assert_eq!(run(&m, &raw).1, model.eval(&raw));
    }
}

#[test]
fn lut_saturation_and_relu_floor() {
    // one channel per case: pre-activation saturates both ways through the table
    let table = scrambled_table(99);
    let model = TModel {
        zp_in: 0,
        features: std::vec![(0, 1 << 30, 31)], // q = 256 x / 2 = 128 x: saturates for |x| >= 1
        layers: std::vec![
            TLayer {
                n_in: 1,
                n_out: 2,
                w: std::vec![127, -127],
                q_b: std::vec![0, 0],
                zp_in: 0,
                zp_out: 100,
                m: std::vec![i32::MAX, i32::MAX],
                t: std::vec![1, 1], // huge gain
                act: TAct::Relu,
            },
            TLayer {
                n_in: 2,
                n_out: 2,
                w: std::vec![127, 127, -127, -127],
                q_b: std::vec![0, 0],
                zp_in: 100,
                zp_out: 7,
                m: std::vec![i32::MAX, i32::MAX],
                t: std::vec![1, 1],
                act: TAct::Lut { pre_zp: 0, table },
            },
        ],
        scale: 1.0,
    };
    let blob = model.blob();
    let m = Model::from_bytes(&blob).unwrap();
    // x = 1: q = 127; layer 0 -> [127, relu(sat(100 - huge)) = 100]
    // layer 1: q - zp = [27, 0]: acc = [3429, -3429] -> huge gain -> pre [127, -128]
    assert_eq!(run(&m, &[1]).1, std::vec![table[255], table[0]]);
    assert_eq!(model.layer_outputs(&[127])[0], std::vec![127, 100]);
    for x in [-1, 0, 1, 5, -100] {
        assert_eq!(run(&m, &[x]).1, model.eval(&[x]), "x = {x}");
    }
}

/// Random models of 1 to 4 layers, every activation, shared and per-feature input stages,
/// raw values inside and far outside the clamp range.
#[test]
fn random_models_match_independent_evaluation() {
    let mut rng = Rng::new(0x52_4f55_4e44);
    let mut classes = [0usize; 3];
    for case in 0..400 {
        let model = random_model(&mut rng, if case % 8 == 0 { 40 } else { 10 });
        let blob = model.blob();
        let m = Model::from_bytes(&blob).unwrap();
        assert_eq!(m.n_inputs(), model.n_inputs());
        assert_eq!(m.n_outputs(), model.n_outputs());
        assert_eq!(m.n_layers(), model.layers.len());
        let expected_scratch = model.layers.iter().map(|l| l.n_in + l.n_out).max().unwrap();
        assert_eq!(m.scratch_len(), expected_scratch);
        for _ in 0..6 {
            let raw = random_raw(&mut rng, model.n_inputs());
            let q = model.quantize(&raw);
            let mut q_got = std::vec![0i8; m.n_inputs()];
            m.quantize_input(&raw, &mut q_got).unwrap();
            assert_eq!(q_got, q, "case {case}: input stage");
            let expected = model.eval_quantized(&q);
            let (class, logits) = run(&m, &raw);
            assert_eq!(logits, expected, "case {case}: logits");
            assert_eq!(class, argmax_ref(&expected), "case {case}: argmax");
            classes[class.min(2)] += 1;
            // The same stage on bytes: the map of the widened values, table or not.
            let bytes: std::vec::Vec<u8> =
                (0..m.n_inputs()).map(|_| rng.next_u64() as u8).collect();
            let widened: std::vec::Vec<i32> = bytes.iter().map(|&b| i32::from(b)).collect();
            let mut q_bytes = std::vec![0i8; m.n_inputs()];
            m.quantize_bytes(&bytes, &mut q_bytes).unwrap();
            assert_eq!(
                q_bytes,
                model.quantize(&widened),
                "case {case}: byte input stage"
            );
            let mut scratch = std::vec![0i8; m.fast_scratch_len()];
            let mut logits_bytes = std::vec![0i8; m.n_outputs()];
            let class_bytes = m
                .run_bytes(&bytes, &mut scratch, &mut logits_bytes)
                .unwrap();
            assert_eq!(
                logits_bytes,
                model.eval_quantized(&q_bytes),
                "case {case}: run_bytes"
            );
            assert_eq!(class_bytes, argmax_ref(&logits_bytes), "case {case}");
            // pre-quantized input, with a scratch buffer larger than needed
            let mut scratch = std::vec![0x77i8; m.scratch_len() + 13];
            let mut logits2 = std::vec![0i8; m.n_outputs()];
            assert_eq!(m.run_quantized(&q, &mut scratch, &mut logits2), Ok(class));
            assert_eq!(logits2, expected);
            assert!(
                scratch[m.scratch_len()..].iter().all(|&b| b == 0x77),
                "wrote past scratch_len"
            );
        }
    }
    assert!(classes.iter().all(|&c| c > 50), "argmax spread {classes:?}");
}

#[cfg(feature = "f32-output")]
#[test]
fn dequantize_uses_scale_and_zero_point() {
    let mut rng = Rng::new(5);
    let mut model = random_model(&mut rng, 6);
    model.scale = 0.375;
    let zp = model.layers.last().unwrap().zp_out;
    let blob = model.blob();
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!(m.output_scale(), 0.375);
    assert_eq!(m.output_scale_bits(), 0.375f32.to_bits());
    assert_eq!(m.output_zero_point(), zp);
    let logits: Vec<i8> = (0..m.n_outputs())
        .map(|i| (i as i8).wrapping_mul(37))
        .collect();
    let mut out = std::vec![0f32; m.n_outputs()];
    m.dequantize(&logits, &mut out).unwrap();
    for (o, &q) in out.iter().zip(&logits) {
        assert_eq!(*o, 0.375 * (f32::from(q) - f32::from(zp)));
    }
    let mut short = std::vec![0f32; m.n_outputs() + 1];
    assert!(matches!(
        m.dequantize(&logits, &mut short),
        Err(crate::Error::OutputLength { .. })
    ));
    assert!(matches!(
        m.dequantize(&logits[1..], &mut out),
        Err(crate::Error::InputLength { .. })
    ));
}

/// The optimized kernel this target compiled in and the reference give the same logits through
/// a whole model, on random models and inputs (what the firmware also checks on the device).
#[test]
fn run_quantized_equals_run_quantized_reference() {
    let mut rng = Rng::new(0x5245_4631);
    for _ in 0..300 {
        let model = random_model(&mut rng, 40);
        let blob = model.blob();
        let m = Model::from_bytes(&blob).unwrap();
        let q_in = model.quantize(&random_raw(&mut rng, model.n_inputs()));
        let mut scratch = std::vec![0i8; m.scratch_len()];
        let mut optimized = std::vec![0i8; m.n_outputs()];
        let mut reference = std::vec![0i8; m.n_outputs()];
        let class = m
            .run_quantized(&q_in, &mut scratch, &mut optimized)
            .unwrap();
        let class_ref = m
            .run_quantized_reference(&q_in, &mut scratch, &mut reference)
            .unwrap();
        assert_eq!(optimized, reference);
        assert_eq!(class, class_ref);
        assert_eq!(optimized, model.eval_quantized(&q_in));
    }
}
