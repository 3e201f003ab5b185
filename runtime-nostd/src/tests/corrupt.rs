//! Corrupted, truncated and inconsistent blobs are rejected with the right error.

use super::*;
use crate::{Error, Model};

/// 3 inputs (per-feature stage) -> identity 3 -> LUT 2. Its layout (docs/blob-format.md):
///
/// | bytes | |
/// |---|---|
/// | 0..32 | header |
/// | 32..76 | input stage: 8 + 3 * 12 (no byte table: one entry per feature) |
/// | 76..136 | values 0 (76), 1 (96), 2 (116): h, w, c, offset +12, zero point +16, reserved +17..+20 |
/// | 136..200 | node 0: header 136..160, multipliers 160..172, shifts 172..175, pad 175, bias 176..188, weights 188..197, pad 197..200 |
/// | 200..508 | node 1: header 200..224, multipliers 224..232, shifts 232..234, pad 234..236, bias 236..244, weights 244..250, pad 250..252, table 252..508 |
/// | 508..516 | output: scale 508, zero point 512, reserved 513..516 |
/// | 516..520 | CRC |
///
/// The plan: value 0 at 0..3, value 1 at 3..6, value 2 at 0..2; arena 6.
fn small_model() -> TModel {
    TModel {
        zp_in: -3,
        features: std::vec![
            (100, 1 << 30, 38),
            (-50, 1_500_000_000, 39),
            (0, i32::MAX, 40)
        ],
        layers: std::vec![
            TLayer {
                n_in: 3,
                n_out: 3,
                w: std::vec![1, -2, 3, 4, 5, -6, 7, -8, 9],
                q_b: std::vec![100, -200, 300],
                zp_in: -3,
                zp_out: 4,
                m: std::vec![1 << 30, 1_234_567_890, i32::MAX],
                t: std::vec![33, 34, 35],
                act: TAct::Identity,
            },
            TLayer {
                n_in: 3,
                n_out: 2,
                w: std::vec![10, 20, 30, -40, -50, -60],
                q_b: std::vec![7, -7],
                zp_in: 4,
                zp_out: -9,
                m: std::vec![1_111_111_111, 2_000_000_000],
                t: std::vec![36, 37],
                act: TAct::Lut {
                    pre_zp: 2,
                    table: scrambled_table(42)
                },
            },
        ],
        scale: 0.125,
    }
}

fn small_blob() -> Vec<u8> {
    let blob = small_model().blob();
    assert_eq!(blob.len(), 520, "layout of the test blob changed");
    blob
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Applies `f`, re-seals the CRC, and checks the error.
fn tampered(f: impl FnOnce(&mut Vec<u8>), expected: Error) {
    let mut blob = small_blob();
    f(&mut blob);
    reseal(&mut blob);
    assert_eq!(Model::from_bytes(&blob).map(|_| ()), Err(expected));
}

#[test]
fn the_untampered_blob_loads() {
    let blob = small_blob();
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!(
        (m.n_inputs(), m.n_outputs(), m.n_layers(), m.scratch_len()),
        (3, 2, 2, 6)
    );
    let model = small_model();
    let mut rng = Rng::new(1);
    for _ in 0..50 {
        let raw = random_raw(&mut rng, 3);
        let mut scratch = [0i8; 6];
        let mut logits = [0i8; 2];
        m.run(&raw, &mut scratch, &mut logits).unwrap();
        assert_eq!(logits.to_vec(), model.eval(&raw));
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let blob = small_blob();
    let mut crc_errors = 0;
    for byte in 0..blob.len() {
        for bit in 0..8 {
            let mut b = blob.clone();
            b[byte] ^= 1 << bit;
            match Model::from_bytes(&b) {
                Ok(_) => panic!("flip of byte {byte} bit {bit} accepted"),
                Err(Error::CrcMismatch { .. }) => crc_errors += 1,
                Err(_) => {} // magic, version, length: caught before the CRC
            }
        }
    }
    // everything past the magic, version and total length is caught by the CRC
    assert!(crc_errors >= (blob.len() - 12) * 8, "{crc_errors}");
}

#[test]
fn every_truncation_is_rejected() {
    let blob = small_blob();
    for n in 0..blob.len() {
        let err = Model::from_bytes(&blob[..n]).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { .. }),
            "truncation to {n} bytes gave {err:?}"
        );
    }
    // truncation with the header's length patched and the CRC re-sealed: a structural error
    for n in 32..blob.len() - 4 {
        let mut b = blob[..n + 4].to_vec();
        put_u32(&mut b, 8, (n + 4) as u32);
        reseal(&mut b);
        assert!(
            Model::from_bytes(&b).is_err(),
            "re-sealed truncation to {n} accepted"
        );
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let blob = small_blob();
    let mut longer = blob.clone();
    longer.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(
        Model::from_bytes(&longer).map(|_| ()),
        Err(Error::LengthMismatch {
            header: 520,
            actual: 524
        })
    );
    // bytes inserted before the CRC, with the length and CRC fixed up
    let mut inserted = blob[..516].to_vec();
    inserted.extend_from_slice(&[0; 8]);
    inserted.extend_from_slice(&[0; 4]);
    put_u32(&mut inserted, 8, 528);
    reseal(&mut inserted);
    assert_eq!(
        Model::from_bytes(&inserted).map(|_| ()),
        Err(Error::TrailingBytes { count: 8 })
    );
}

#[test]
fn framing_errors() {
    tampered(|b| b[0] = b'k', Error::BadMagic);
    tampered(|b| b[4] = 9, Error::UnsupportedVersion { found: 9 });
    tampered(|b| b[4] = 1, Error::UnsupportedVersion { found: 1 });
    tampered(
        |b| put_u32(b, 8, 524),
        Error::Truncated {
            needed: 524,
            available: 520,
        },
    );
    tampered(
        |b| put_u32(b, 8, 516),
        Error::LengthMismatch {
            header: 516,
            actual: 520,
        },
    );
    let mut b = small_blob();
    b[300] ^= 0x10;
    assert!(matches!(
        Model::from_bytes(&b),
        Err(Error::CrcMismatch { .. })
    ));
    assert_eq!(
        Model::from_bytes(&[]).map(|_| ()),
        Err(Error::Truncated {
            needed: 4,
            available: 0
        })
    );
}

/// A blob 1, 2 or 3 bytes past a 4-byte boundary is refused, after the framing checks (a
/// wrong version still says so), with a line that says what to do; the same bytes at an
/// aligned address load and run alike.
#[test]
fn a_blob_off_a_word_boundary_is_refused() {
    let blob = small_blob();
    let mut backing = std::vec![0u8; blob.len() + 8];
    let start = backing.as_ptr().align_offset(4);
    for past in 0..4 {
        let at = start + past;
        backing[at..at + blob.len()].copy_from_slice(&blob);
        let placed = &backing[at..at + blob.len()];
        let loaded = Model::from_bytes(placed).map(|m| m.n_outputs());
        if past == 0 {
            assert_eq!(loaded, Ok(2));
            continue;
        }
        let err = loaded.unwrap_err();
        assert_eq!(
            err,
            Error::BlobAlignment {
                bytes_past: past as u8
            }
        );
        let text = std::format!("{err}");
        assert!(
            text.contains(&std::format!("{past} byte(s) past a 4-byte boundary"))
                && text.contains("kiln bake --rust"),
            "{text}"
        );
        // the framing comes first: a blob of another version is refused by its version
        let mut old = blob.clone();
        old[4] = 1;
        backing[at..at + blob.len()].copy_from_slice(&old);
        assert_eq!(
            Model::from_bytes(&backing[at..at + blob.len()]).map(|_| ()),
            Err(Error::UnsupportedVersion { found: 1 })
        );
    }
}

/// A real version-2 blob (the digits model as committed before format version 3, which gave
/// the input stage its fraction bits) still loads and runs as the same blob re-sealed as
/// version 3; its padding byte must stay zero, and a version-3 byte above the limit is refused.
#[test]
fn a_version_2_blob_loads_and_runs_like_version_3() {
    use crate::blob::INPUT_FRAC_BITS_AT;
    // copied: `include_bytes!` places the bytes at any address, the runtime wants 4-aligned
    let v2 = include_bytes!("data/digits-v2.kiln").to_vec();
    assert_eq!(&v2[..6], b"KILN\x02\x00");
    let old = Model::from_bytes(&v2).unwrap();
    assert_eq!(old.input_frac_bits(), 0);
    let mut v3 = v2.to_vec();
    v3[4] = 3;
    reseal(&mut v3);
    let new = Model::from_bytes(&v3).unwrap();
    assert_eq!(new.input_frac_bits(), 0);
    let mut rng = crate::testutil::Rng::new(7);
    let mut scratch = std::vec![0i8; old.scratch_len()];
    for _ in 0..20 {
        let raw: std::vec::Vec<i32> = (0..old.n_inputs()).map(|_| rng.below(17) as i32).collect();
        let (mut a, mut b) = (std::vec![0i8; 10], std::vec![0i8; 10]);
        let class_a = old.run(&raw, &mut scratch, &mut a).unwrap();
        let class_b = new.run(&raw, &mut scratch, &mut b).unwrap();
        assert_eq!((class_a, &a), (class_b, &b));
    }
    // version 2: the byte is padding
    let mut padded = v2.to_vec();
    padded[INPUT_FRAC_BITS_AT] = 1;
    reseal(&mut padded);
    assert_eq!(
        Model::from_bytes(&padded).map(|_| ()),
        Err(Error::ReservedNonZero {
            offset: INPUT_FRAC_BITS_AT as u32
        })
    );
    // version 3: 0 to 24 fraction bits
    v3[INPUT_FRAC_BITS_AT] = crate::MAX_INPUT_FRAC_BITS;
    reseal(&mut v3);
    assert_eq!(
        Model::from_bytes(&v3).map(|m| m.input_frac_bits()),
        Ok(crate::MAX_INPUT_FRAC_BITS)
    );
    v3[INPUT_FRAC_BITS_AT] = crate::MAX_INPUT_FRAC_BITS + 1;
    reseal(&mut v3);
    let err = Model::from_bytes(&v3).map(|_| ()).unwrap_err();
    assert_eq!(err, Error::InputFracBits { found: 25 });
    assert!(std::format!("{err}").contains("25 fraction bits, at most 24"));
}

/// A real version-1 blob (the digits model as it was committed before format version 2) is
/// refused cleanly, with a message that says to re-bake it.
#[test]
fn a_version_1_blob_is_refused_with_a_rebake_message() {
    let v1: &[u8] = include_bytes!("data/digits-v1.kiln");
    assert_eq!(&v1[..6], b"KILN\x01\x00");
    let err = Model::from_bytes(v1).unwrap_err();
    assert_eq!(err, Error::UnsupportedVersion { found: 1 });
    let text = std::format!("{err}");
    assert!(
        text.contains("version 1")
            && text.contains("old format")
            && text.contains("kiln bake")
            && text.contains("model file"),
        "{text}"
    );
    // its truncations are refused too, never a panic
    for n in 0..64 {
        assert!(Model::from_bytes(&v1[..n]).is_err());
    }
    // and the current version loads
    assert!(Model::from_bytes(&small_blob()).is_ok());
}

#[test]
fn header_errors() {
    tampered(|b| b[6] = 0, Error::NoLayers);
    tampered(|b| b[6] = 65, Error::TooManyLayers { found: 65 });
    tampered(|b| b[6] = 3, Error::ValueCount { found: 3, nodes: 3 });
    tampered(|b| b[6] = 1, Error::ValueCount { found: 3, nodes: 1 });
    tampered(|b| b[24] = 4, Error::ValueCount { found: 4, nodes: 2 });
    tampered(
        |b| put_u32(b, 12, 4),
        Error::InputEntries {
            found: 3,
            n_inputs: 4,
        },
    );
    tampered(|b| put_u32(b, 12, 0), Error::EmptyLayer { layer: 0 });
    tampered(
        |b| put_u32(b, 16, 3),
        Error::OutputShapeMismatch {
            header: 3,
            last_layer: 2,
        },
    );
    tampered(
        |b| put_u32(b, 20, 7),
        Error::ScratchLenMismatch {
            stored: 7,
            computed: 6,
        },
    );
    tampered(
        |b| put_u32(b, 20, 5),
        Error::ArenaOverflow {
            value: 1,
            end: 6,
            arena_len: 5,
        },
    );
    for at in 26..32 {
        tampered(|b| b[at] = 1, Error::ReservedNonZero { offset: at as u32 });
    }
}

#[test]
fn value_table_errors() {
    tampered(|b| put_u32(b, 96, 0), Error::EmptyValue { value: 1 });
    tampered(|b| put_u32(b, 124, 0), Error::EmptyValue { value: 2 });
    // value 1 with 4 channels would end past the arena
    tampered(
        |b| put_u32(b, 104, 4),
        Error::ArenaOverflow {
            value: 1,
            end: 7,
            arena_len: 6,
        },
    );
    tampered(
        |b| put_u32(b, 84, 2),
        Error::InputShapeMismatch {
            header: 3,
            value: 2,
        },
    );
    tampered(|b| b[93] = 1, Error::ReservedNonZero { offset: 93 });
    tampered(|b| b[133] = 1, Error::ReservedNonZero { offset: 133 });
    // the value 0 zero point is the input stage's; the last one the output section's
    tampered(
        |b| b[92] = 0,
        Error::ZeroPointMismatch {
            layer: 0,
            expected: -3,
            found: 0,
        },
    );
    tampered(
        |b| b[132] = 0,
        Error::OutputZeroPointMismatch {
            output: -9,
            last_layer: 0,
        },
    );
    // plans where two values alive at the same node share bytes
    tampered(|b| put_u32(b, 88, 3), Error::ArenaOverlap { a: 0, b: 1 });
    // the arena must end where the last value ends
    tampered(
        |b| put_u32(b, 108, 0),
        Error::ScratchLenMismatch {
            stored: 6,
            computed: 3,
        },
    );
    tampered(|b| put_u32(b, 128, 4), Error::ArenaOverlap { a: 1, b: 2 });
    tampered(|b| put_u32(b, 128, 2), Error::ArenaOverlap { a: 1, b: 2 });
    // node 1 reading value 0 keeps value 0 alive over value 2's bytes
    tampered(|b| b[204] = 0, Error::ArenaOverlap { a: 0, b: 2 });
    // another safe plan loads and gives the same logits: value 2 over value 0, which is dead
    let mut b = small_blob();
    put_u32(&mut b, 128, 1);
    reseal(&mut b);
    let m = Model::from_bytes(&b).unwrap();
    let mut rng = Rng::new(4);
    for _ in 0..20 {
        let raw = random_raw(&mut rng, 3);
        let mut scratch = [0i8; 6];
        let mut logits = [0i8; 2];
        m.run(&raw, &mut scratch, &mut logits).unwrap();
        assert_eq!(logits.to_vec(), small_model().eval(&raw));
    }
}

#[test]
fn input_stage_errors() {
    tampered(
        |b| put_u32(b, 32, 2),
        Error::InputEntries {
            found: 2,
            n_inputs: 3,
        },
    );
    tampered(|b| b[38] = 1, Error::ReservedNonZero { offset: 38 });
    tampered(|b| b[37] = 25, Error::InputFracBits { found: 25 });
    // entry 1 at 40 + 12: mu 52, M 56, t 60, reserved 61..64
    tampered(
        |b| put_u32(b, 56, (1 << 30) - 1),
        Error::BadInputMultiplier {
            feature: 1,
            multiplier: (1 << 30) - 1,
        },
    );
    tampered(
        |b| put_u32(b, 56, 0x8000_0000),
        Error::BadInputMultiplier {
            feature: 1,
            multiplier: i32::MIN,
        },
    );
    tampered(
        |b| b[60] = 0,
        Error::BadInputShift {
            feature: 1,
            shift: 0,
        },
    );
    tampered(
        |b| b[60] = 63,
        Error::BadInputShift {
            feature: 1,
            shift: 63,
        },
    );
    tampered(|b| b[63] = 1, Error::ReservedNonZero { offset: 63 });
    // the offset mu may be anything
    let mut b = small_blob();
    put_u32(&mut b, 52, 0x8000_0000);
    reseal(&mut b);
    assert!(Model::from_bytes(&b).is_ok());
}

#[test]
fn layer_errors() {
    // kinds, activations, value ids, reserved fields
    tampered(|b| b[136] = 0, Error::BadLayerKind { layer: 0, kind: 0 });
    tampered(|b| b[136] = 7, Error::BadLayerKind { layer: 0, kind: 7 });
    // kind 6 (Add) exists from version 5 on: in this version-3 blob it is refused as such
    tampered(
        |b| b[136] = 6,
        Error::KindVersion {
            layer: 0,
            kind: 6,
            version: 3,
        },
    );
    tampered(|b| b[137] = 3, Error::BadActivation { layer: 0, kind: 3 });
    tampered(
        |b| b[137] = 2,
        Error::SectionLength {
            layer: 0,
            stored: 64,
            expected: 320,
        },
    ); // a LUT needs its table
    tampered(|b| b[201] = 0, Error::ReservedNonZero { offset: 202 }); // pre zero point 2 without a LUT
    tampered(
        |b| {
            b[201] = 0;
            b[202] = 0;
        },
        Error::SectionLength {
            layer: 1,
            stored: 308,
            expected: 52,
        }, // a table needs a LUT
    );
    tampered(|b| b[138] = 1, Error::ReservedNonZero { offset: 138 });
    tampered(|b| b[139] = 1, Error::ReservedNonZero { offset: 139 }); // padding of a dense layer
    tampered(|b| b[140] = 1, Error::BadValueId { layer: 0, value: 1 });
    tampered(|b| b[204] = 2, Error::BadValueId { layer: 1, value: 2 });
    tampered(
        |b| {
            b[142] = 0;
            b[143] = 0;
        },
        Error::BadValueId { layer: 0, value: 0 },
    );
    tampered(|b| b[144] = 2, Error::BadValueId { layer: 0, value: 2 });
    tampered(|b| b[146] = 1, Error::ReservedNonZero { offset: 146 });
    for at in [148, 150, 152, 154] {
        tampered(|b| b[at] = 1, Error::ReservedNonZero { offset: at as u32 }); // dense geometry
    }
    tampered(
        |b| put_u32(b, 156, 60),
        Error::SectionLength {
            layer: 0,
            stored: 60,
            expected: 64,
        },
    );
    // a dense output must be [1, 1, n]
    tampered(
        |b| {
            put_u32(b, 96, 3);
            put_u32(b, 104, 1);
        },
        Error::NodeShape { layer: 0, value: 1 },
    );
    // multipliers and shifts
    tampered(
        |b| put_u32(b, 164, (1 << 30) - 1),
        Error::BadMultiplier {
            layer: 0,
            channel: 1,
            multiplier: (1 << 30) - 1,
        },
    );
    tampered(
        |b| put_u32(b, 228, 0xFFFF_FFFF),
        Error::BadMultiplier {
            layer: 1,
            channel: 1,
            multiplier: -1,
        },
    );
    tampered(
        |b| b[172] = 0,
        Error::BadShift {
            layer: 0,
            channel: 0,
            shift: 0,
        },
    );
    tampered(
        |b| b[174] = 63,
        Error::BadShift {
            layer: 0,
            channel: 2,
            shift: 63,
        },
    );
    tampered(
        |b| b[233] = 255,
        Error::BadShift {
            layer: 1,
            channel: 1,
            shift: 255,
        },
    );
    // padding
    tampered(|b| b[175] = 1, Error::ReservedNonZero { offset: 175 });
    tampered(|b| b[199] = 1, Error::ReservedNonZero { offset: 199 });
    tampered(|b| b[235] = 1, Error::ReservedNonZero { offset: 235 });
    tampered(|b| b[250] = 1, Error::ReservedNonZero { offset: 250 });
    // accumulator: channel 0 of layer 0 has sum |w| = 6, so |bias| may be at most 2^31 - 1 - 768
    tampered(
        |b| put_u32(b, 176, (i32::MAX - 767) as u32),
        Error::AccumulatorOverflow {
            layer: 0,
            channel: 0,
        },
    );
    tampered(
        |b| put_u32(b, 176, (i32::MIN + 768) as u32),
        Error::AccumulatorOverflow {
            layer: 0,
            channel: 0,
        },
    );
    let mut b = small_blob();
    put_u32(&mut b, 176, (i32::MAX - 768) as u32);
    reseal(&mut b);
    assert!(
        Model::from_bytes(&b).is_ok(),
        "the bound itself is accepted"
    );
    // a weight at -128 counts 128 * 128
    tampered(
        |b| {
            b[240..244].copy_from_slice(&(i32::MAX - 128 * (40 + 50 + 60)).to_le_bytes());
            b[247] = 0x80;
        },
        Error::AccumulatorOverflow {
            layer: 1,
            channel: 1,
        },
    );
}

#[test]
fn output_errors() {
    for bits in [
        0u32,
        0x8000_0000,
        0xBF80_0000,
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0000,
        0x7F80_0001,
    ] {
        tampered(|b| put_u32(b, 508, bits), Error::BadOutputScale { bits });
    }
    tampered(
        |b| b[512] = 0,
        Error::OutputZeroPointMismatch {
            output: 0,
            last_layer: -9,
        },
    );
    tampered(|b| b[515] = 1, Error::ReservedNonZero { offset: 515 });
    // a subnormal or huge finite scale is fine
    for bits in [1u32, 0x7F7F_FFFF] {
        let mut b = small_blob();
        put_u32(&mut b, 508, bits);
        reseal(&mut b);
        assert!(Model::from_bytes(&b).is_ok());
    }
}

/// Random re-sealed mutations never panic; whatever loads also runs.
#[test]
fn mutations_never_panic() {
    let blob = small_blob();
    let mut rng = Rng::new(0xF022);
    let mut loaded = 0;
    for _ in 0..30_000 {
        let mut b = blob.clone();
        for _ in 0..rng.usize_in(1, 4) {
            let at = rng.usize_in(0, b.len() - 5);
            b[at] = match rng.below(4) {
                0 => 0,
                1 => 0xFF,
                2 => b[at] ^ (1 << rng.below(8)),
                _ => rng.next_u64() as u8,
            };
        }
        if rng.below(8) == 0 {
            let n = rng.usize_in(8, b.len());
            b.truncate(n);
        }
        if b.len() >= 12 {
            let n = b.len() as u32;
            put_u32(&mut b, 8, n);
        }
        if b.len() >= 4 {
            reseal(&mut b);
        }
        if let Ok(m) = Model::from_bytes(&b) {
            loaded += 1;
            let raw = random_raw(&mut rng, m.n_inputs());
            let mut scratch = std::vec![0i8; m.scratch_len()];
            let mut logits = std::vec![0i8; m.n_outputs()];
            let class = m.run(&raw, &mut scratch, &mut logits).unwrap();
            assert!(class < m.n_outputs());
        }
    }
    // weights, biases, tables and offsets are free: many mutations stay valid
    assert!(loaded > 1000, "{loaded}");
}

fn dense(s: &mut ModelSpec, node: usize) -> &mut DenseSpec {
    match &mut s.nodes[node].layer {
        LayerSpec::Dense(d) => d,
        other => panic!("not dense: {other:?}"),
    }
}

#[test]
fn encode_rejects_inconsistent_specs() {
    let good = small_model().spec();
    let check = |f: &dyn Fn(&mut crate::encode::ModelSpec), expected: Error| {
        let mut spec = good.clone();
        f(&mut spec);
        assert_eq!(crate::encode::encode(&spec), Err(expected));
    };
    check(
        &|s| {
            dense(s, 0).weights.pop();
        },
        Error::SpecLength {
            layer: 0,
            field: "weights",
            expected: 9,
            found: 8,
        },
    );
    check(
        &|s| dense(s, 1).bias.push(0),
        Error::SpecLength {
            layer: 1,
            field: "bias",
            expected: 2,
            found: 3,
        },
    );
    check(
        &|s| {
            dense(s, 1).multipliers.pop();
        },
        Error::SpecLength {
            layer: 1,
            field: "multipliers",
            expected: 2,
            found: 1,
        },
    );
    check(
        &|s| dense(s, 0).shifts.clear(),
        Error::SpecLength {
            layer: 0,
            field: "shifts",
            expected: 3,
            found: 0,
        },
    );
    check(&|s| s.nodes.clear(), Error::NoLayers);
    check(
        &|s| {
            let l = s.nodes[0].clone();
            s.nodes = std::vec![l; 65];
        },
        Error::TooManyLayers { found: 65 },
    );
    check(
        &|s| s.nodes[1].input = 2,
        Error::BadValueId { layer: 1, value: 2 },
    );
    // what only the loader can check, reported with the loader's error
    check(
        &|s| dense(s, 0).shifts[1] = 0,
        Error::BadShift {
            layer: 0,
            channel: 1,
            shift: 0,
        },
    );
    check(
        &|s| dense(s, 1).multipliers[0] = 5,
        Error::BadMultiplier {
            layer: 1,
            channel: 0,
            multiplier: 5,
        },
    );
    check(
        &|s| s.input.features[2].shift = 70,
        Error::BadInputShift {
            feature: 2,
            shift: 70,
        },
    );
    check(
        &|s| s.input.features.push(s.input.features[0].clone()),
        Error::InputEntries {
            found: 4,
            n_inputs: 3,
        },
    );
    check(
        &|s| dense(s, 0).bias[2] = i32::MAX,
        Error::AccumulatorOverflow {
            layer: 0,
            channel: 2,
        },
    );
    check(
        &|s| dense(s, 1).input_zero_point = 0,
        Error::ZeroPointMismatch {
            layer: 1,
            expected: 4,
            found: 0,
        },
    );
    check(
        &|s| s.output_zero_point = 0,
        Error::OutputZeroPointMismatch {
            output: 0,
            last_layer: -9,
        },
    );
    check(
        &|s| s.output_scale = f32::NAN,
        Error::BadOutputScale {
            bits: f32::NAN.to_bits(),
        },
    );
    check(
        &|s| s.output_scale = -1.0,
        Error::BadOutputScale {
            bits: (-1.0f32).to_bits(),
        },
    );
    check(
        &|s| {
            dense(s, 1).n_inputs = 2;
            dense(s, 1).weights.truncate(4);
        },
        Error::ShapeMismatch {
            layer: 1,
            expected: 3,
            found: 2,
        },
    );
    check(
        &|s| {
            dense(s, 0).n_outputs = 0;
            dense(s, 0).weights.clear();
            dense(s, 0).bias.clear();
            dense(s, 0).multipliers.clear();
            dense(s, 0).shifts.clear();
        },
        Error::ShapeMismatch {
            layer: 1,
            expected: 0,
            found: 3,
        },
    );
    // a spec that is fine: 64 layers of 1 -> 1
    let one = LayerSpec::Dense(DenseSpec {
        n_inputs: 1,
        n_outputs: 1,
        input_zero_point: 0,
        output_zero_point: 0,
        weights: std::vec![1],
        bias: std::vec![0],
        multipliers: std::vec![1 << 30],
        shifts: std::vec![30],
        activation: ActivationSpec::Identity,
    });
    let spec = ModelSpec {
        activations: crate::encode::Activations::Int8,
        input: InputStageSpec {
            zero_point: 0,
            frac_bits: 0,
            features: std::vec![AffineSpec {
                offset: 0,
                multiplier: 1 << 30,
                shift: 38
            }],
        },
        input_shape: [1, 1, 1],
        nodes: chain(std::vec![one; 64]),
        output_scale: 1.0,
        output_zero_point: 0,
    };
    let blob = crate::encode::encode(&spec).unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let mut scratch = [0i8; 2];
    let mut logits = [0i8; 1];
    m.run(&[-5], &mut scratch, &mut logits).unwrap();
    assert_eq!(logits, [-5]);
}
