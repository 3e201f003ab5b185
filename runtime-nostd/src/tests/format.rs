//! The encoder writes exactly the bytes of docs/blob-format.md.

use super::*;
use crate::Model;

#[test]
fn golden_bytes_of_a_small_model() {
    let spec = ModelSpec {
        input: InputStageSpec {
            zero_point: 5,
            features: std::vec![AffineSpec {
                offset: -7,
                multiplier: (1 << 30) + 1,
                shift: 40
            }],
        },
        layers: std::vec![LayerSpec {
            n_inputs: 2,
            n_outputs: 3,
            input_zero_point: 5,
            output_zero_point: -2,
            weights: std::vec![1, 2, 3, 4, 5, -6],
            bias: std::vec![10, -20, 30],
            multipliers: std::vec![1 << 30, (1 << 30) + 2, i32::MAX],
            shifts: std::vec![31, 32, 33],
            activation: ActivationSpec::Relu,
        }],
        output_scale: 1.5,
        output_zero_point: -2,
    };
    #[rustfmt::skip]
    let mut expected: Vec<u8> = std::vec![
        // header, 0..32
        b'K', b'I', b'L', b'N',
        1, 0,                   // version
        1, 0,                   // n_layers
        116, 0, 0, 0,           // total_len
        2, 0, 0, 0,             // n_inputs
        3, 0, 0, 0,             // n_outputs
        5, 0, 0, 0,             // scratch_len = 2 + 3
        0, 0, 0, 0, 0, 0, 0, 0, // reserved
        // input stage, 32..52
        1, 0, 0, 0,             // one shared entry
        5, 0, 0, 0,             // zero point, reserved
        0xF9, 0xFF, 0xFF, 0xFF, // mu = -7
        1, 0, 0, 0x40,          // M = 2^30 + 1
        40, 0, 0, 0,            // t, reserved
        // layer 0, 52..104
        2, 0, 0, 0,             // n_inputs
        3, 0, 0, 0,             // n_outputs
        1, 5, 0xFE, 0,          // relu, zp_in 5, zp_out -2, pre zp 0
        52, 0, 0, 0,            // section length
        0, 0, 0, 0x40,  2, 0, 0, 0x40,  0xFF, 0xFF, 0xFF, 0x7F, // multipliers
        31, 32, 33, 0,          // shifts, padding
        10, 0, 0, 0,  0xEC, 0xFF, 0xFF, 0xFF,  30, 0, 0, 0,    // bias
        1, 2, 3, 4, 5, 0xFA, 0, 0, // weights, padding
        // output, 104..112
        0x00, 0x00, 0xC0, 0x3F, // 1.5f32
        0xFE, 0, 0, 0,          // zero point -2, reserved
    ];
    let crc = crate::crc32::crc32(&expected);
    expected.extend_from_slice(&crc.to_le_bytes());
    let blob = crate::encode::encode(&spec).unwrap();
    assert_eq!(blob, expected);
    // the loader reads it back
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!((m.n_inputs(), m.n_outputs(), m.scratch_len()), (2, 3, 5));
    assert_eq!(m.output_scale_bits(), 1.5f32.to_bits());
    assert_eq!(m.output_zero_point(), -2);
    assert_eq!(m.as_bytes().len(), 116);
}

/// Every section starts at a multiple of 4 for every shape.
#[test]
fn sections_are_aligned() {
    for n_in in 1u32..9 {
        for n_out in 1u32..9 {
            for lut in [false, true] {
                assert_eq!(crate::blob::layer_section_len(n_in, n_out, lut) % 4, 0);
            }
        }
    }
    let mut rng = Rng::new(3);
    for _ in 0..50 {
        let blob = random_model(&mut rng, 7).blob();
        assert_eq!(blob.len() % 4, 0);
    }
}
