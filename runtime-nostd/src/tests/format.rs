//! The encoder writes exactly the bytes of docs/blob-format.md.

use super::*;
use crate::Model;

#[test]
fn golden_bytes_of_a_small_model() {
    let spec = ModelSpec {
        activations: crate::encode::Activations::Int8,
        input: InputStageSpec {
            zero_point: 5,
            frac_bits: 12,
            features: std::vec![AffineSpec {
                offset: -7,
                multiplier: (1 << 30) + 1,
                shift: 40
            }],
        },
        input_shape: [1, 1, 2],
        nodes: chain([LayerSpec::Dense(DenseSpec {
            n_inputs: 2,
            n_outputs: 3,
            input_zero_point: 5,
            output_zero_point: -2,
            weights: std::vec![1, 2, 3, 4, 5, -6],
            bias: std::vec![10, -20, 30],
            multipliers: std::vec![1 << 30, (1 << 30) + 2, i32::MAX],
            shifts: std::vec![31, 32, 33],
            activation: ActivationSpec::Relu,
        })]),
        output_scale: 1.5,
        output_zero_point: -2,
    };
    #[rustfmt::skip]
    let mut expected: Vec<u8> = std::vec![
        // header, 0..32
        b'K', b'I', b'L', b'N',
        3, 0,                   // version
        1, 0,                   // n_nodes
        164, 1, 0, 0,           // total_len = 420
        2, 0, 0, 0,             // n_inputs
        3, 0, 0, 0,             // n_outputs
        5, 0, 0, 0,             // arena_len = 2 + 3
        2, 0,                   // n_values
        0, 0, 0, 0, 0, 0,       // reserved
        // input stage, 32..52
        1, 0, 0, 0,             // one shared entry
        5, 12, 0, 0,            // zero point, fraction bits, reserved
        0xF9, 0xFF, 0xFF, 0xFF, // mu = -7
        1, 0, 0, 0x40,          // M = 2^30 + 1
        40, 0, 0, 0,            // t, reserved
    ];
    // the byte table, 52..308: q(raw) = sat8(5 + rq(256 raw + 7, 2^30 + 1, 40)) for raw 0..=255
    for raw in 0..=255i64 {
        expected.push(sat8_ref(5 + rq_ref(256 * raw + 7, (1 << 30) + 1, 40)) as i8 as u8);
    }
    #[rustfmt::skip]
    expected.extend_from_slice(&[
        // value table, 308..348: the plan puts the larger value 1 at 0, value 0 after it
        1, 0, 0, 0,  1, 0, 0, 0,  2, 0, 0, 0,  3, 0, 0, 0,  5, 0, 0, 0,    // value 0: [1, 1, 2] at 3, zp 5
        1, 0, 0, 0,  1, 0, 0, 0,  3, 0, 0, 0,  0, 0, 0, 0,  0xFE, 0, 0, 0, // value 1: [1, 1, 3] at 0, zp -2
        // node 0, 348..408
        1, 1, 0, 0,             // dense, relu, pre zero point 0, padding 0
        0, 0, 0xFF, 0xFF,       // reads value 0, no second input
        1, 0, 0, 0,             // writes value 1, reserved
        0, 0, 0, 0, 0, 0, 0, 0, // kernel and stride: none
        60, 0, 0, 0,            // section length
        0, 0, 0, 0x40,  2, 0, 0, 0x40,  0xFF, 0xFF, 0xFF, 0x7F, // multipliers
        31, 32, 33, 0,          // shifts, padding
        10, 0, 0, 0,  0xEC, 0xFF, 0xFF, 0xFF,  30, 0, 0, 0,    // bias
        1, 2, 3, 4, 5, 0xFA, 0, 0, // weights, padding
        // output, 408..416
        0x00, 0x00, 0xC0, 0x3F, // 1.5f32
        0xFE, 0, 0, 0,          // zero point -2, reserved
    ]);
    let crc = crate::crc32::crc32(&expected);
    expected.extend_from_slice(&crc.to_le_bytes());
    let blob = crate::encode::encode(&spec).unwrap();
    assert_eq!(blob, expected);
    // the loader reads it back
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!((m.n_inputs(), m.n_outputs(), m.scratch_len()), (2, 3, 5));
    assert_eq!(m.output_scale_bits(), 1.5f32.to_bits());
    assert_eq!(m.output_zero_point(), -2);
    assert_eq!(m.as_bytes().len(), 420);
    assert_eq!(m.input_frac_bits(), 12);
    // the encoder refuses more fraction bits than the input stage's 32 bits hold
    let mut too_fine = spec.clone();
    too_fine.input.frac_bits = crate::MAX_INPUT_FRAC_BITS + 1;
    assert_eq!(
        crate::encode::encode(&too_fine),
        Err(crate::Error::InputFracBits { found: 25 })
    );
    // a wrong byte table entry is refused, even with the CRC re-sealed
    let mut b = blob.clone();
    b[52 + 200] ^= 1;
    reseal(&mut b);
    assert_eq!(
        Model::from_bytes(&b).map(|_| ()),
        Err(crate::Error::InputTable { raw: 200 })
    );
}

/// Every section starts at a multiple of 4 for every shape.
#[test]
fn sections_are_aligned() {
    for n in 1usize..9 {
        for n_weights in 1usize..9 {
            for lut in [false, true] {
                assert_eq!(crate::blob::channel_arrays_len(n, n_weights, lut) % 4, 0);
            }
        }
    }
    let mut rng = Rng::new(3);
    for _ in 0..50 {
        let blob = random_model(&mut rng, 7).blob();
        assert_eq!(blob.len() % 4, 0);
    }
}
