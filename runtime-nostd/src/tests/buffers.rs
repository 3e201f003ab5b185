//! Wrong buffer sizes are errors, checked before any work; the ping-pong scratch layout.

use super::*;
use crate::{Error, Model};

fn shaped_model(dims: &[usize], seed: u64) -> TModel {
    let mut rng = Rng::new(seed);
    let mut m = random_model(&mut rng, 4);
    let mut zp = m.zp_in;
    m.features.truncate(1);
    m.layers = dims
        .windows(2)
        .map(|d| {
            let l = random_layer(&mut rng, d[0], d[1], zp);
            zp = l.zp_out;
            l
        })
        .collect();
    m
}

#[test]
fn scratch_len_is_largest_adjacent_pair() {
    for (dims, expected) in [
        (&[5usize, 9, 3, 4][..], 14),
        (&[4, 2, 8, 1][..], 10),
        (&[1, 1][..], 2),
        (&[3, 20][..], 23),
        (&[30, 2, 2, 2, 2][..], 32),
        (
            &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18][..],
            35,
        ), // 16 layers
    ] {
        let model = shaped_model(dims, dims.len() as u64);
        let blob = model.blob();
        let m = Model::from_bytes(&blob).unwrap();
        assert_eq!(m.scratch_len(), expected, "{dims:?}");
        let mut rng = Rng::new(7);
        let raw = random_raw(&mut rng, dims[0]);
        let expected_logits = model.eval(&raw);
        let mut logits = std::vec![0i8; m.n_outputs()];
        // exactly scratch_len works
        let mut scratch = std::vec![0i8; expected];
        assert_eq!(
            m.run(&raw, &mut scratch, &mut logits),
            Ok(argmax_ref(&expected_logits))
        );
        assert_eq!(logits, expected_logits);
        // one less fails, with nothing written
        let mut scratch = std::vec![0x11i8; expected - 1];
        let mut logits = std::vec![0x22i8; m.n_outputs()];
        assert_eq!(
            m.run(&raw, &mut scratch, &mut logits),
            Err(Error::BufferTooSmall {
                needed: expected as u32,
                got: expected as u32 - 1
            })
        );
        assert!(scratch.iter().all(|&b| b == 0x11) && logits.iter().all(|&b| b == 0x22));
    }
}

#[test]
fn fast_scratch_len_adds_the_widest_layers_lanes_and_changes_nothing() {
    // widest n_in 784: 98 groups of 8 inputs, 16 bytes each, plus 3 for word alignment.
    for (dims, widest) in [
        (&[784usize, 128, 10][..], 784),
        (&[5, 9, 3, 4][..], 9),
        (&[3, 20][..], 3),
        (&[16, 40, 2][..], 40),
    ] {
        let model = shaped_model(dims, widest as u64);
        let blob = model.blob();
        let m = Model::from_bytes(&blob).unwrap();
        assert_eq!(
            m.fast_scratch_len(),
            m.scratch_len() + widest / 8 * 16 + 3,
            "{dims:?}"
        );
        let mut rng = Rng::new(11);
        for _ in 0..5 {
            let raw = random_raw(&mut rng, dims[0]);
            let expected_logits = model.eval(&raw);
            let mut logits = std::vec![0i8; m.n_outputs()];
            let mut scratch = std::vec![0x33i8; m.fast_scratch_len()];
            assert_eq!(
                m.run(&raw, &mut scratch, &mut logits),
                Ok(argmax_ref(&expected_logits))
            );
            assert_eq!(logits, expected_logits, "{dims:?}");
        }
    }
}

/// Every value is at the offset the blob's plan gives it: after a 3-layer run, the last two
/// values (the last layer's input and output) are still there.
#[test]
fn values_sit_at_their_planned_offsets() {
    let model = shaped_model(&[4, 6, 3, 5], 11);
    let spec = model.spec();
    let plan = crate::encode::plan_model(&spec).unwrap();
    assert_eq!(plan.arena_len, 10, "max(4 + 6, 6 + 3, 3 + 5)");
    assert_eq!(plan.no_reuse_len, 4 + 6 + 3 + 5);
    let blob = model.blob();
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!(m.scratch_len(), 10);
    let raw = [3, -7, 100, 12];
    let q = model.quantize(&raw);
    let outs = model.layer_outputs(&q);
    let mut scratch = std::vec![0i8; m.scratch_len()];
    let mut logits = std::vec![0i8; 5];
    m.run(&raw, &mut scratch, &mut logits).unwrap();
    let at = |v: usize, len: usize| {
        let o = plan.offsets[v] as usize;
        scratch[o..o + len].to_vec()
    };
    assert_eq!(at(2, 3), outs[1], "value 2");
    assert_eq!(at(3, 5), outs[2], "value 3");
    assert_eq!(logits, outs[2]);

    // one layer: the quantized input and the output both stay
    let one = shaped_model(&[4, 6], 11);
    let plan = crate::encode::plan_model(&one.spec()).unwrap();
    let one_blob = one.blob();
    let m1 = Model::from_bytes(&one_blob).unwrap();
    let mut scratch = std::vec![0i8; m1.scratch_len()];
    let mut logits = std::vec![0i8; 6];
    m1.run(&raw, &mut scratch, &mut logits).unwrap();
    let q1 = one.quantize(&raw);
    let (o0, o1) = (plan.offsets[0] as usize, plan.offsets[1] as usize);
    assert_eq!(&scratch[o0..o0 + 4], &q1[..]);
    assert_eq!(&scratch[o1..o1 + 6], &one.layer_outputs(&q1)[0][..]);
}

#[test]
fn wrong_lengths_are_errors_and_write_nothing() {
    let model = shaped_model(&[3, 5, 2], 3);
    let blob = model.blob();
    let m = Model::from_bytes(&blob).unwrap();
    let s = m.scratch_len();
    assert_eq!(s, 8);
    let raw = [1i32, 2, 3];
    let q = [1i8, 2, 3];
    for (n_raw, n_scratch, n_logits) in [
        (0, s, 2),
        (2, s, 2),
        (4, s, 2),
        (3, 0, 2),
        (3, s - 1, 2),
        (3, s, 0),
        (3, s, 1),
        (3, s, 3),
        (0, 0, 0),
        (3, s + 100, 3),
    ] {
        let raw_v: Vec<i32> = raw.iter().copied().cycle().take(n_raw).collect();
        let q_v: Vec<i8> = q.iter().copied().cycle().take(n_raw).collect();
        let expected = if n_raw != 3 {
            Error::InputLength {
                expected: 3,
                got: n_raw as u32,
            }
        } else if n_scratch < s {
            Error::BufferTooSmall {
                needed: s as u32,
                got: n_scratch as u32,
            }
        } else {
            Error::OutputLength {
                expected: 2,
                got: n_logits as u32,
            }
        };
        let mut scratch = std::vec![0x33i8; n_scratch];
        let mut logits = std::vec![0x44i8; n_logits];
        assert_eq!(m.run(&raw_v, &mut scratch, &mut logits), Err(expected));
        let bytes_v: Vec<u8> = raw_v.iter().map(|&r| r as u8).collect();
        assert_eq!(
            m.run_bytes(&bytes_v, &mut scratch, &mut logits),
            Err(expected)
        );
        assert_eq!(
            m.run_quantized(&q_v, &mut scratch, &mut logits),
            Err(expected)
        );
        assert!(
            scratch.iter().all(|&b| b == 0x33),
            "scratch written on error"
        );
        assert!(logits.iter().all(|&b| b == 0x44), "logits written on error");
    }
    // quantize_input
    let mut out = [0x55i8; 3];
    assert_eq!(
        m.quantize_input(&raw[..2], &mut out),
        Err(Error::InputLength {
            expected: 3,
            got: 2
        })
    );
    let mut out4 = [0x55i8; 4];
    assert_eq!(
        m.quantize_input(&raw, &mut out4),
        Err(Error::OutputLength {
            expected: 3,
            got: 4
        })
    );
    assert_eq!(
        m.quantize_input(&raw, &mut out[..2]),
        Err(Error::OutputLength {
            expected: 3,
            got: 2
        })
    );
    let bytes = [1u8, 2, 3];
    assert_eq!(
        m.quantize_bytes(&bytes[..2], &mut out),
        Err(Error::InputLength {
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        m.quantize_bytes(&bytes, &mut out4),
        Err(Error::OutputLength {
            expected: 3,
            got: 4
        })
    );
    assert!(out.iter().chain(&out4).all(|&b| b == 0x55));
    assert_eq!(m.quantize_input(&raw, &mut out), Ok(()));
    let mut out_bytes = [0i8; 3];
    assert_eq!(m.quantize_bytes(&bytes, &mut out_bytes), Ok(()));
    assert_eq!(out_bytes, out, "bytes 1, 2, 3 are the raw values 1, 2, 3");
}

/// Errors print something that names the problem.
#[test]
fn errors_display_their_details() {
    let cases: [(Error, &str); 6] = [
        (
            Error::CrcMismatch {
                stored: 1,
                computed: 2,
            },
            "CRC",
        ),
        (
            Error::BadShift {
                layer: 3,
                channel: 4,
                shift: 0,
            },
            "layer 3 channel 4: shift 0",
        ),
        (Error::BufferTooSmall { needed: 9, got: 8 }, "needs 9"),
        (
            Error::Truncated {
                needed: 100,
                available: 50,
            },
            "needs 100 bytes, 50 available",
        ),
        (
            Error::SpecLength {
                layer: 1,
                field: "bias",
                expected: 3,
                found: 2,
            },
            "bias has 2 entries, expected 3",
        ),
        (Error::UnsupportedVersion { found: 9 }, "version 9"),
    ];
    for (e, needle) in cases {
        let text = std::format!("{e}");
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
    let as_dyn: &dyn core::error::Error = &Error::BadMagic;
    assert!(std::format!("{as_dyn}").contains("magic"));
}

/// A shared input map with fraction bits takes the fixed-point loop (32-bit arithmetic in the
/// common case): the same int8 inputs as the definition, for raw values across the clamp and
/// offsets that push `256 * x - mu` out of i32.
#[test]
fn the_fixed_point_input_loop_equals_the_definition() {
    let mut rng = Rng::new(0xF1C5_0015);
    for round in 0..200 {
        let mut model = shaped_model(&[16, 3], round);
        let (_, m, t) = model.features[0];
        let mu = match round % 4 {
            0 => i32::MAX - (rng.next_u64() % 1000) as i32,
            1 => i32::MIN + (rng.next_u64() % 1000) as i32,
            _ => rng.next_u64() as i32 >> (rng.next_u64() % 31),
        };
        model.features[0] = (mu, m, t);
        let mut spec = model.spec();
        spec.input.frac_bits = 15;
        let blob = crate::encode::encode(&spec).unwrap();
        let loaded = Model::from_bytes(&blob).unwrap();
        assert_eq!(loaded.input_frac_bits(), 15);
        let edges = [
            0,
            1,
            -1,
            255,
            256,
            -(1 << 23),
            (1 << 23) - 1,
            i32::MIN,
            i32::MAX,
        ];
        let raw: std::vec::Vec<i32> = (0..16)
            .map(|j| match j {
                0..=8 => edges[j],
                _ => rng.next_u64() as i32 >> (rng.next_u64() % 32),
            })
            .collect();
        let mut q = [0i8; 16];
        loaded.quantize_input(&raw, &mut q).unwrap();
        assert_eq!(
            &q[..],
            &model.quantize(&raw)[..],
            "round {round}: mu {mu} m {m} t {t}"
        );
        // Bytes through the same map (the identity and fixed-point loops have no byte path).
        let bytes: [u8; 16] =
            core::array::from_fn(|j| (rng.next_u64() as u8).wrapping_add(j as u8));
        let widened: std::vec::Vec<i32> = bytes.iter().map(|&b| i32::from(b)).collect();
        let mut q_bytes = [0i8; 16];
        loaded.quantize_bytes(&bytes, &mut q_bytes).unwrap();
        assert_eq!(
            &q_bytes[..],
            &model.quantize(&widened)[..],
            "round {round}: bytes"
        );
        // Without the fast loop linked: the generic map, the same bits.
        assert_eq!(
            loaded.layer_kinds(),
            crate::kinds::DENSE | crate::kinds::FIXED_POINT_INPUT
        );
        let generic = Model::<{ crate::kinds::DENSE }>::with_kinds(&blob).unwrap();
        let mut q_generic = [0i8; 16];
        generic.quantize_input(&raw, &mut q_generic).unwrap();
        assert_eq!(q_generic, q, "round {round}");
    }
}
