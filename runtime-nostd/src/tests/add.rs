//! The residual `Add` (kind 6, blob format version 5): graphs with skip connections encoded,
//! loaded and run against the plain-i64 evaluation of tests/graph.rs (its `Add` written from
//! docs/layer-graph.md with its own round-half-even), and every refusal of the encoder and the
//! loader.

use super::graph::{make_conv, random_cnn_start, TCnn, TNode};
use super::*;
use crate::{kinds, Error, LayerKind, Model};

/// `ceil(log2(n))`.
fn log2_ceil(n: usize) -> u32 {
    usize::BITS - (n.max(1) - 1).leading_zeros()
}

/// An `Add` reading value `other` as its second operand, with random weights, multiplier and
/// shift: a quarter of them `(a + b) / 2` (`W = 2^15`, `M / 2^t = 2^-16`), where half the odd
/// sums are ties, a quarter with weights at `+-2^16`.
fn random_add(rng: &mut Rng, other: usize, relu: bool) -> TNode {
    let random_m = |rng: &mut Rng| rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32;
    let (w, m, t) = match rng.below(4) {
        0 => ([1 << 15, 1 << 15], 1 << 30, 46),
        1 => {
            let sign = |rng: &mut Rng| if rng.bool() { 1 << 16 } else { -(1 << 16) };
            (
                [sign(rng), sign(rng)],
                random_m(rng),
                rng.range_i64(47, 50) as u8,
            )
        }
        _ => {
            let w = |rng: &mut Rng| rng.range_i64(-(1 << 16), 1 << 16) as i32;
            ([w(rng), w(rng)], random_m(rng), rng.range_i64(44, 50) as u8)
        }
    };
    TNode::Add {
        other,
        w,
        m,
        t,
        zp_out: rng.i8_in(-100, 100),
        relu,
    }
}

/// A global average pool over `[h, w, _]`, then a dense layer of 2 to 5 outputs.
fn head(rng: &mut Rng, cnn: &mut TCnn) {
    let ([h, w, c], _) = *cnn.values().last().unwrap();
    let taps = h * w;
    cnn.nodes.push(TNode::AvgPool {
        kernel: [h, w],
        stride: [1, 1],
        m: rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32,
        t: (30 + log2_ceil(taps)) as u8,
        zp_out: rng.i8_in(-100, 100),
    });
    let zp = cnn.values().last().unwrap().1;
    let n_out = rng.usize_in(2, 5);
    cnn.nodes
        .push(TNode::Dense(random_layer(rng, c, n_out, zp)));
    cnn.inputs
        .extend([cnn.nodes.len() - 2, cnn.nodes.len() - 1]);
}

/// An empty CNN over `shape` (the input stage's entries made to fit it).
fn start(rng: &mut Rng, shape: [usize; 3]) -> TCnn {
    let mut cnn = random_cnn_start(rng);
    cnn.shape = shape;
    if cnn.features.len() > 1 {
        let n = cnn.features.len();
        cnn.features = (0..cnn.n_inputs()).map(|i| cnn.features[i % n]).collect();
    }
    cnn
}

/// A random square kernel of at most 3 that fits `[h, w]`.
fn kernel(rng: &mut Rng, [h, w, _]: [usize; 3]) -> [usize; 2] {
    [rng.usize_in(1, h.min(3)), rng.usize_in(1, w.min(3))]
}

/// (a) conv -> conv -> add(value 2, skip from value 1) -> global average pool -> dense, every
/// convolution same-padded with stride 1 and `n` channels, so the two operands have one shape.
pub fn skip_cnn(rng: &mut Rng, shape: [usize; 3], n: usize, relu: bool) -> TCnn {
    let mut cnn = start(rng, shape);
    let k = kernel(rng, shape);
    cnn.nodes
        .push(make_conv(rng, shape[2], k, [1, 1], true, n, false));
    let k = kernel(rng, shape);
    cnn.nodes.push(make_conv(rng, n, k, [1, 1], true, n, false));
    cnn.nodes.push(random_add(rng, 1, relu));
    cnn.inputs = std::vec![0, 1, 2];
    head(rng, &mut cnn);
    cnn
}

/// (b) a ResNet block: conv 3x3 -> [conv 3x3 stride 2 -> conv 3x3] + [conv 1x1 stride 2 on the
/// shortcut] -> add -> global average pool -> dense. Value 1 is read by two nodes (the block's
/// first convolution and the shortcut); `swap` puts the shortcut first in the Add.
fn resnet_block(rng: &mut Rng, shape: [usize; 3], relu: bool, swap: bool) -> TCnn {
    let mut cnn = start(rng, shape);
    let (n1, n2) = (rng.usize_in(1, 4), rng.usize_in(1, 4));
    let k = kernel(rng, shape);
    cnn.nodes
        .push(make_conv(rng, shape[2], k, [1, 1], true, n1, false));
    let s1 = cnn.values()[1].0;
    let k = kernel(rng, s1);
    cnn.nodes
        .push(make_conv(rng, n1, k, [2, 2], true, n2, false));
    let s2 = cnn.values()[2].0;
    let k = kernel(rng, s2);
    cnn.nodes
        .push(make_conv(rng, n2, k, [1, 1], true, n2, false));
    // the shortcut: 1x1, stride 2, valid or same (the same output size either way)
    let same = rng.bool();
    cnn.nodes
        .push(make_conv(rng, n1, [1, 1], [2, 2], same, n2, false));
    let (a, b) = if swap { (4, 3) } else { (3, 4) };
    cnn.nodes.push(random_add(rng, b, relu));
    cnn.inputs = std::vec![0, 1, 2, 1, a];
    head(rng, &mut cnn);
    cnn
}

/// Runs `cnn` on a few random inputs through `run` (dispatched kernels, with and without
/// workspace), `run_quantized_reference` and a `Model` of exactly the kinds it uses, against the
/// plain-i64 evaluation. Returns the Add's outputs for the coverage counts.
fn check_against_evaluation(rng: &mut Rng, cnn: &TCnn, case: usize) -> Vec<Vec<i8>> {
    let blob = cnn.blob();
    let plan = crate::encode::plan_model(&cnn.spec()).unwrap();
    // an Add needs version 5, a node in place version 6, a convolution row by row 7
    let version = if plan.n_in_place() > 0 {
        super::inplace::in_place_version(cnn, &plan)
    } else {
        5
    };
    assert_eq!(u16::from_le_bytes([blob[4], blob[5]]), version);
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!(m.format_version(), version);
    assert_eq!(m.scratch_len() as u64, plan.arena_len);
    let plain_blob = cnn.blob_layer_by_layer();
    let plain = Model::from_bytes(&plain_blob).unwrap();
    assert_eq!(plain.format_version(), 5);
    assert_eq!(plain.scratch_len() as u64, plan.layer_by_layer_len);
    let used = kinds::CONV2D | kinds::AVG_POOL | kinds::DENSE | kinds::ADD;
    assert_eq!(m.layer_kinds() & !kinds::FIXED_POINT_INPUT, used);
    let exact =
        Model::<{ kinds::CONV2D | kinds::AVG_POOL | kinds::DENSE | kinds::ADD }>::with_kinds(&blob)
            .unwrap();
    let values = cnn.values();
    let add_at = cnn
        .nodes
        .iter()
        .position(|n| matches!(n, TNode::Add { .. }))
        .unwrap();
    let TNode::Add { other, .. } = cnn.nodes[add_at] else {
        unreachable!()
    };
    let info = m.layer(add_at).unwrap();
    assert_eq!(info.kind, LayerKind::Add);
    assert_eq!(
        (info.input_value, info.second_input_value, info.output_value),
        (cnn.input(add_at), Some(other), add_at + 1)
    );
    assert_eq!(info.input_shape, values[other].0);
    assert_eq!(info.output_shape, info.input_shape);
    // an Add in place ends in its (empty) temporary's offset and length
    assert_eq!(
        info.section_len,
        24 + 16 + if info.in_place { 8 } else { 0 }
    );
    assert_eq!(info.in_place, plan.in_place[add_at].is_some());
    assert_eq!(m.layer(0).unwrap().second_input_value, None);
    let mut add_outputs = Vec::new();
    for _ in 0..4 {
        let raw = random_raw(rng, cnn.n_inputs());
        let q = cnn.quantize(&raw);
        let all = cnn.eval_values(&q);
        let expected = all.last().unwrap().clone();
        add_outputs.push(all[add_at + 1].clone());
        let mut scratch = std::vec![0x11i8; m.fast_scratch_len() + 5];
        let mut logits = std::vec![0i8; m.n_outputs()];
        let class = m.run(&raw, &mut scratch, &mut logits).unwrap();
        assert_eq!(logits, expected, "case {case}: {cnn:?}");
        assert_eq!(class, argmax_ref(&expected));
        let mut scratch = std::vec![0i8; m.scratch_len()];
        let mut logits_ref = std::vec![0i8; m.n_outputs()];
        assert_eq!(
            m.run_quantized_reference(&q, &mut scratch, &mut logits_ref),
            Ok(class)
        );
        assert_eq!(logits_ref, expected, "case {case}: reference");
        let mut logits_exact = std::vec![0i8; m.n_outputs()];
        assert_eq!(exact.run(&raw, &mut scratch, &mut logits_exact), Ok(class));
        assert_eq!(logits_exact, expected, "case {case}: exact kinds");
        let mut scratch = std::vec![0i8; plain.scratch_len()];
        let mut logits_plain = std::vec![0i8; m.n_outputs()];
        assert_eq!(plain.run(&raw, &mut scratch, &mut logits_plain), Ok(class));
        assert_eq!(logits_plain, expected, "case {case}: layer by layer");
    }
    add_outputs
}

/// The coverage of a test: Adds whose output hit the relu clamp, saturated, or neither.
#[derive(Default, Debug)]
struct Coverage {
    relu: usize,
    identity: usize,
    clamped: usize,
    saturated: usize,
}

impl Coverage {
    fn count(&mut self, cnn: &TCnn, outputs: &[Vec<i8>]) {
        let Some(&TNode::Add { zp_out, relu, .. }) =
            cnn.nodes.iter().find(|n| matches!(n, TNode::Add { .. }))
        else {
            unreachable!()
        };
        *if relu {
            &mut self.relu
        } else {
            &mut self.identity
        } += 1;
        for y in outputs.iter().flatten() {
            self.clamped += usize::from(relu && *y == zp_out && zp_out > -128);
            self.saturated += usize::from(*y == 127 || (!relu && *y == -128));
        }
    }
}

/// (a) conv -> conv -> add(skip from value 1) -> gap -> dense, identity and relu, random
/// weights, zero points, multipliers and shifts; sometimes `x + x` (both operands one value).
#[test]
fn skip_connections_match_independent_evaluation() {
    let mut rng = Rng::new(0xADD_0001);
    let mut coverage = Coverage::default();
    let mut twice = 0;
    for case in 0..200 {
        let shape = [rng.usize_in(1, 7), rng.usize_in(1, 7), rng.usize_in(1, 3)];
        let n = rng.usize_in(1, 4);
        let relu = rng.bool();
        let mut cnn = skip_cnn(&mut rng, shape, n, relu);
        if rng.below(8) == 0 {
            // x + x: the Add reads value 2 twice
            if let TNode::Add { other, .. } = &mut cnn.nodes[2] {
                *other = 2;
            }
            twice += 1;
        }
        let outputs = check_against_evaluation(&mut rng, &cnn, case);
        coverage.count(&cnn, &outputs);
    }
    assert!(
        coverage.relu > 60
            && coverage.identity > 60
            && coverage.clamped > 500
            && coverage.saturated > 100
            && twice > 10,
        "{coverage:?} {twice}"
    );
}

/// (b) a ResNet-style block with a strided 1x1 convolution on the shortcut: value 1 read by two
/// nodes, the Add's operands in either order.
#[test]
fn resnet_blocks_match_independent_evaluation() {
    let mut rng = Rng::new(0xADD_0002);
    let mut coverage = Coverage::default();
    for case in 0..200 {
        let shape = [rng.usize_in(1, 8), rng.usize_in(1, 8), rng.usize_in(1, 3)];
        let (relu, swap) = (rng.bool(), rng.bool());
        let cnn = resnet_block(&mut rng, shape, relu, swap);
        assert_eq!(cnn.input(3), 1);
        let outputs = check_against_evaluation(&mut rng, &cnn, case);
        coverage.count(&cnn, &outputs);
    }
    assert!(
        coverage.relu > 60 && coverage.identity > 60 && coverage.clamped > 200,
        "{coverage:?}"
    );
}

/// The `(a + b) / 2` Add on ties: `rq` rounds half to even, so `1 + 0` halves to 0 and `3 + 0`
/// to 2, where rounding half up would give 1 and 2, half away from zero 1 and 2: the test tells
/// the rules apart.
#[test]
fn add_rounds_ties_to_even() {
    let mut rng = Rng::new(3);
    let mut cnn = skip_cnn(&mut rng, [1, 1, 1], 1, false);
    // value 2 + value 2 (x + x) would only give even sums: operands 2 and 1 (different values)
    cnn.nodes[2] = TNode::Add {
        other: 1,
        w: [1 << 15, 1 << 15],
        m: 1 << 30,
        t: 46,
        zp_out: 0,
        relu: false,
    };
    let values = cnn.values();
    let (zp_a, zp_b) = (values[2].1, values[1].1);
    let blob = cnn.blob();
    let m = Model::from_bytes(&blob).unwrap();
    // through the kernel directly: (x - zp_a) + (y - zp_b) = 1, 3, -1, -3, 5
    let p = crate::kernels::AddParams {
        weights: [1 << 15, 1 << 15],
        input_zero_points: [zp_a, zp_b],
        output_zero_point: 0,
        multiplier: 1 << 30,
        shift: 46,
        clamp_min: -128,
        clamp_max: 127,
    };
    let sums = [1i32, 3, -1, -3, 5];
    let a: Vec<i8> = sums.iter().map(|&s| (i32::from(zp_a) + s) as i8).collect();
    let b: Vec<i8> = std::vec![zp_b; sums.len()];
    let mut out = std::vec![0i8; sums.len()];
    crate::kernels::reference::add_i8(&p, &a, &b, &mut out).unwrap();
    assert_eq!(out, [0, 2, 0, -2, 2]);
    crate::kernels::add_i8(&p, &a, &b, &mut out).unwrap();
    assert_eq!(out, [0, 2, 0, -2, 2]);
    // and wrong lengths are an error, not a panic
    assert_eq!(
        crate::kernels::reference::add_i8(&p, &a[1..], &b, &mut out),
        Err(Error::KernelArguments)
    );
    assert!(m.layer(2).is_some());
}

/// The fixed graph of the loader's checks: `[3, 3, 2]` -> conv 3 channels -> conv -> add(2, 1)
/// relu -> gap -> dense.
fn fixed_add() -> TCnn {
    let mut rng = Rng::new(0x0ADD_00F1);
    let mut cnn = skip_cnn(&mut rng, [3, 3, 2], 3, true);
    cnn.features.truncate(1);
    if let TNode::Add { w, m, t, .. } = &mut cnn.nodes[2] {
        (*w, *m, *t) = ([40_000, -30_000], 1 << 30, 47);
    }
    cnn
}

/// The byte offset of node `k`'s record.
fn node_at(blob: &[u8], k: usize) -> usize {
    let m = Model::from_bytes(blob).unwrap();
    let mut at = m.nodes_at;
    for _ in 0..k {
        at += u32::from_le_bytes(blob[at + 20..at + 24].try_into().unwrap()) as usize;
    }
    at
}

fn reseal(blob: &mut [u8]) {
    let n = blob.len() - 4;
    let crc = crate::crc32::crc32(&blob[..n]);
    blob[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Every field of an Add record is checked at load, each with its own error.
#[test]
fn add_records_are_checked() {
    let cnn = fixed_add();
    let blob = cnn.blob_layer_by_layer();
    let m = Model::from_bytes(&blob).unwrap();
    let values_at = m.values_at;
    let value = |v: usize| values_at + 20 * v;
    let add = node_at(&blob, 2);
    assert_eq!(blob[add], 6);
    assert_eq!(blob[add + 4..add + 10], [2, 0, 1, 0, 3, 0]); // input 2, second 1, output 3
    let check = |f: &dyn Fn(&mut Vec<u8>), expected: Error| {
        let mut b = blob.clone();
        f(&mut b);
        reseal(&mut b);
        assert_eq!(Model::from_bytes(&b).map(|_| ()), Err(expected));
    };
    let put_u16 =
        |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put_i32 =
        |b: &mut Vec<u8>, at: usize, v: i32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let layer = 2;
    // the second input: present, earlier than the output, of the first one's shape
    check(
        &|b| put_u16(b, add + 6, 0xFFFF),
        Error::BadValueId {
            layer,
            value: 0xFFFF,
        },
    );
    check(
        &|b| put_u16(b, add + 6, 3),
        Error::BadValueId { layer, value: 3 },
    );
    check(
        &|b| put_u16(b, add + 6, 4),
        Error::BadValueId { layer, value: 4 },
    );
    check(
        &|b| put_u16(b, add + 6, 0), // value 0 is [3, 3, 2]
        Error::AddShapes { layer, a: 2, b: 0 },
    );
    // the output has the inputs' shape
    check(
        &|b| b[value(3) + 8] = 2,
        Error::NodeShape { layer, value: 3 },
    );
    // |W| <= 2^16, either weight; the bound itself loads
    check(
        &|b| put_i32(b, add + 24, 65_537),
        Error::AddWeight {
            layer,
            operand: 0,
            weight: 65_537,
        },
    );
    check(
        &|b| put_i32(b, add + 28, -65_537),
        Error::AddWeight {
            layer,
            operand: 1,
            weight: -65_537,
        },
    );
    check(
        &|b| put_i32(b, add + 28, i32::MIN),
        Error::AddWeight {
            layer,
            operand: 1,
            weight: i32::MIN,
        },
    );
    for (wa, wb) in [(65_536, -65_536), (-65_536, 65_536), (0, 0)] {
        let mut b = blob.clone();
        put_i32(&mut b, add + 24, wa);
        put_i32(&mut b, add + 28, wb);
        reseal(&mut b);
        assert!(Model::from_bytes(&b).is_ok(), "{wa} {wb}");
    }
    // version 8 (the same layout): |W| <= 2^22, the bound itself loads
    let wide = |wa: i32, wb: i32| {
        let mut b = blob.clone();
        b[4] = 8;
        put_i32(&mut b, add + 24, wa);
        put_i32(&mut b, add + 28, wb);
        reseal(&mut b);
        Model::from_bytes(&b).map(|m| m.format_version())
    };
    assert_eq!(wide(1 << 22, -(1 << 22)), Ok(8));
    assert_eq!(wide(65_537, 3), Ok(8));
    assert_eq!(
        wide((1 << 22) + 1, 0),
        Err(Error::AddWeight {
            layer,
            operand: 0,
            weight: (1 << 22) + 1,
        })
    );
    assert_eq!(
        wide(0, -(1 << 22) - 1),
        Err(Error::AddWeight {
            layer,
            operand: 1,
            weight: -(1 << 22) - 1,
        })
    );
    // the multiplier and shift
    check(
        &|b| put_i32(b, add + 32, (1 << 30) - 1),
        Error::BadMultiplier {
            layer,
            channel: 0,
            multiplier: (1 << 30) - 1,
        },
    );
    check(
        &|b| b[add + 36] = 0,
        Error::BadShift {
            layer,
            channel: 0,
            shift: 0,
        },
    );
    check(
        &|b| b[add + 36] = 63,
        Error::BadShift {
            layer,
            channel: 0,
            shift: 63,
        },
    );
    // reserved bytes: after the shift, the header's pre zero point, padding, reserved u16,
    // kernel and stride
    for (at, reported) in [
        (37, 37),
        (38, 38),
        (39, 39),
        (2, 2),
        (3, 3),
        (10, 10),
        (11, 10), // the reserved u16 is reported at its start
        (12, 12),
        (14, 14),
        (16, 16),
        (18, 18),
        (19, 18),
    ] {
        check(
            &|b| b[add + at] = 1,
            Error::ReservedNonZero {
                offset: (add + reported) as u32,
            },
        );
    }
    // activations: identity loads; a table is refused by name, an unknown byte as unknown
    let mut b = blob.clone();
    b[add + 1] = 0;
    reseal(&mut b);
    assert!(Model::from_bytes(&b).is_ok());
    check(&|b| b[add + 1] = 2, Error::AddActivation { layer });
    check(&|b| b[add + 1] = 3, Error::BadActivation { layer, kind: 3 });
    // the record's length
    check(
        &|b| b[add + 20] += 4,
        Error::SectionLength {
            layer,
            stored: 44,
            expected: 40,
        },
    );
    // kind 6 only in version 5: a version-3 blob with it, or a version-4 one, is refused
    check(
        &|b| b[4] = 3,
        Error::KindVersion {
            layer,
            kind: 6,
            version: 3,
        },
    );
    check(
        &|b| b[4] = 4,
        Error::KindVersion {
            layer,
            kind: 6,
            version: 4,
        },
    );
    check(&|b| b[4] = 9, Error::UnsupportedVersion { found: 9 });
    // a non-Add node's second input is still "none"
    let conv = node_at(&blob, 1);
    check(
        &|b| put_u16(b, conv + 6, 0),
        Error::BadValueId { layer: 1, value: 0 },
    );
    // the plan: value 1 lives until the Add reads it, so it may not share bytes with value 3
    // (written at node 2). Moved onto value 3, the first overlap found is with value 0 if the
    // planner had let value 0 and value 3 share bytes (they are never alive together), else
    // with value 3 itself, which only the Add's second read reveals.
    let offset = |b: &[u8], v: usize| {
        u32::from_le_bytes(b[value(v) + 12..value(v) + 16].try_into().unwrap()) as usize
    };
    let len = |v: usize| values_of(&cnn)[v];
    let (o0, o3) = (offset(&blob, 0), offset(&blob, 3));
    let expected = if o0 < o3 + len(3) && o3 < o0 + len(0) {
        Error::ArenaOverlap { a: 0, b: 1 }
    } else {
        Error::ArenaOverlap { a: 1, b: 3 }
    };
    check(
        &|b| {
            b[value(1) + 12..value(1) + 16].copy_from_slice(&(o3 as u32).to_le_bytes());
            // the arena's length follows the values' new ends
            let end = (0..values_of(&cnn).len())
                .map(|v| offset(b, v) + len(v))
                .max()
                .unwrap() as u32;
            b[20..24].copy_from_slice(&end.to_le_bytes());
        },
        expected,
    );
    // every message names the layer
    for e in [
        Error::KindVersion {
            layer: 7,
            kind: 6,
            version: 3,
        },
        Error::AddShapes {
            layer: 7,
            a: 1,
            b: 2,
        },
        Error::AddWeight {
            layer: 7,
            operand: 1,
            weight: 70_000,
        },
        Error::AddActivation { layer: 7 },
    ] {
        let text = std::format!("{e}");
        assert!(text.contains("layer 7"), "{text}");
    }
    assert!(std::format!(
        "{}",
        Error::KindVersion {
            layer: 0,
            kind: 6,
            version: 3
        }
    )
    .contains("version 5"));
}

fn values_of(cnn: &TCnn) -> Vec<usize> {
    cnn.values()
        .iter()
        .map(|(s, _)| s.iter().product())
        .collect()
}

/// A program whose `Model<KINDS>` does not link `kinds::ADD` refuses an Add at load, by layer
/// and kind; one that does runs it to the bits of `kinds::ALL`.
#[test]
fn add_is_refused_where_it_is_not_linked() {
    let blob = fixed_add().blob();
    const NO_ADD: u8 = kinds::CONV2D | kinds::AVG_POOL | kinds::DENSE;
    assert_eq!(
        Model::<NO_ADD>::with_kinds(&blob).map(|_| ()),
        Err(Error::KindNotLinked { layer: 2, kind: 6 })
    );
    assert_eq!(
        Model::<{ kinds::ALL & !kinds::ADD }>::with_kinds(&blob).map(|_| ()),
        Err(Error::KindNotLinked { layer: 2, kind: 6 })
    );
    // a dense-only program (no int16 either) reads version 5 and refuses the first kind it
    // lacks; it links no in-place code, so it refuses an in-place plan (version 6) by version
    let plain = fixed_add().blob_layer_by_layer();
    assert_eq!(plain[4], 5);
    assert_eq!(
        Model::<{ kinds::DENSE }>::with_kinds(&plain).map(|_| ()),
        Err(Error::KindNotLinked { layer: 0, kind: 2 })
    );
    assert_eq!(blob[4], 6, "the Add runs in place");
    assert_eq!(
        Model::<{ kinds::DENSE }>::with_kinds(&blob).map(|_| ()),
        Err(Error::UnsupportedVersion { found: 6 })
    );
    let all = Model::from_bytes(&blob).unwrap();
    let linked = Model::<{ NO_ADD | kinds::ADD }>::with_kinds(&blob).unwrap();
    let input: Vec<i8> = (0..all.n_inputs()).map(|i| (i * 77) as u8 as i8).collect();
    let mut scratch = std::vec![0i8; all.scratch_len()];
    let (mut l1, mut l2) = (
        std::vec![0i8; all.n_outputs()],
        std::vec![0i8; all.n_outputs()],
    );
    let c1 = all.run_quantized(&input, &mut scratch, &mut l1).unwrap();
    let c2 = linked.run_quantized(&input, &mut scratch, &mut l2).unwrap();
    assert_eq!((c1, l1), (c2, l2));
    // the kind sets: Add is bit 7, in ALL and NAMES, and kind byte 6 maps to it
    assert_eq!(kinds::ADD, 1 << 7);
    assert_eq!(kinds::bit_of(6), kinds::ADD);
    assert_eq!(kinds::bit_of(5), kinds::AVG_POOL);
    assert_eq!(kinds::bit_of(7), 0);
    assert_ne!(kinds::ALL & kinds::ADD, 0);
    assert!(kinds::NAMES.contains(&(kinds::ADD, "ADD")));
    assert_eq!(
        kinds::NAMES.iter().fold(0, |set, (bit, _)| set | bit),
        kinds::ALL
    );
    assert_eq!(all.layer_kinds() & kinds::ADD, kinds::ADD);
}

/// An Add weight over `2^16` makes the blob version 8 (which runtimes before it refuse by its
/// number); up to `2^16` the blob keeps the version it had. Both load.
#[test]
fn wide_add_weights_need_version_8() {
    let good = fixed_add().spec();
    let version_of = |blob: &[u8]| u16::from_le_bytes([blob[4], blob[5]]);
    let base = version_of(&crate::encode::encode(&good).unwrap());
    assert!((5..8).contains(&base), "{base}");
    let encoded = |weight: i32| {
        let mut spec = good.clone();
        let LayerSpec::Add(a) = &mut spec.nodes[2].layer else {
            unreachable!()
        };
        a.weights[0] = weight;
        crate::encode::encode(&spec).unwrap()
    };
    for (weight, version) in [
        (65_536, base),
        (-65_536, base),
        (65_537, 8),
        (1 << 22, 8),
        (-(1 << 22), 8),
    ] {
        let blob = encoded(weight);
        assert_eq!(version_of(&blob), version, "{weight}");
        assert_eq!(
            Model::from_bytes(&blob).map(|m| m.format_version()),
            Ok(version)
        );
    }
}

/// Version 5 is version 4's layout plus kind 6: an int8 blob without an Add still encodes as
/// version 3, byte for byte, and the same bytes stamped version 5 load and run alike.
#[test]
fn blobs_without_add_keep_their_version() {
    let mut rng = Rng::new(0x0ADD_0003);
    for _ in 0..20 {
        let cnn = super::graph::random_cnn(&mut rng);
        let blob = cnn.blob_layer_by_layer();
        assert_eq!(u16::from_le_bytes([blob[4], blob[5]]), 3);
        let mut v5 = blob.clone();
        v5[4] = 5;
        reseal(&mut v5);
        let (m3, m5) = (
            Model::from_bytes(&blob).unwrap(),
            Model::from_bytes(&v5).unwrap(),
        );
        assert_eq!(m5.format_version(), 5);
        let q = cnn.quantize(&random_raw(&mut rng, cnn.n_inputs()));
        let mut scratch = std::vec![0i8; m3.scratch_len()];
        let (mut l3, mut l5) = (
            std::vec![0i8; m3.n_outputs()],
            std::vec![0i8; m3.n_outputs()],
        );
        m3.run_quantized(&q, &mut scratch, &mut l3).unwrap();
        m5.run_quantized(&q, &mut scratch, &mut l5).unwrap();
        assert_eq!(l3, l5);
        // and a dense-only program without int16 reads version 5 as its int8 layout
        let mlp = crate::tests::random_model(&mut rng, 8).blob();
        let mut v5 = mlp.clone();
        v5[4] = 5;
        reseal(&mut v5);
        assert!(Model::<{ kinds::DENSE }>::with_kinds(&v5).is_ok());
    }
}

/// The encoder's checks of an Add spec, each with its error.
#[test]
fn encode_checks_the_add() {
    let cnn = fixed_add();
    let good = cnn.spec();
    let values = cnn.values();
    let check = |f: &dyn Fn(&mut AddSpec), expected: Error| {
        let mut spec = good.clone();
        let LayerSpec::Add(a) = &mut spec.nodes[2].layer else {
            unreachable!()
        };
        f(a);
        assert_eq!(crate::encode::encode(&spec), Err(expected));
    };
    let layer = 2;
    check(&|a| a.other = 3, Error::BadValueId { layer, value: 3 });
    check(&|a| a.other = 9, Error::BadValueId { layer, value: 9 });
    check(&|a| a.other = 0, Error::AddShapes { layer, a: 2, b: 0 });
    check(
        &|a| a.input_zero_points[0] ^= 1,
        Error::ZeroPointMismatch {
            layer,
            expected: values[2].1,
            found: values[2].1 ^ 1,
        },
    );
    check(
        &|a| a.input_zero_points[1] ^= 1,
        Error::ZeroPointMismatch {
            layer,
            expected: values[1].1,
            found: values[1].1 ^ 1,
        },
    );
    check(
        &|a| a.weights[0] = (1 << 22) + 1,
        Error::AddWeight {
            layer,
            operand: 0,
            weight: (1 << 22) + 1,
        },
    );
    check(
        &|a| a.weights[1] = i32::MIN,
        Error::AddWeight {
            layer,
            operand: 1,
            weight: i32::MIN,
        },
    );
    check(
        &|a| a.multiplier = 1 << 29,
        Error::BadMultiplier {
            layer,
            channel: 0,
            multiplier: 1 << 29,
        },
    );
    check(
        &|a| a.shift = 63,
        Error::BadShift {
            layer,
            channel: 0,
            shift: 63,
        },
    );
    check(
        &|a| {
            a.activation = ActivationSpec::Lut {
                pre_zero_point: 0,
                table: [0; 256],
            }
        },
        Error::AddActivation { layer },
    );
    // the node's own input is checked as for every layer
    let mut spec = good.clone();
    spec.nodes[2].input = 3;
    assert_eq!(
        crate::encode::encode(&spec),
        Err(Error::BadValueId { layer, value: 3 })
    );
    // the bounds themselves encode
    let mut spec = good.clone();
    if let LayerSpec::Add(a) = &mut spec.nodes[2].layer {
        a.weights = [65_536, -65_536];
        a.activation = ActivationSpec::Identity;
    }
    let blob = crate::encode::encode(&spec).unwrap();
    let add = node_at(&blob, 2);
    assert_eq!(blob[add + 1], 0);
    assert_eq!(blob[add + 24..add + 32], [0, 0, 1, 0, 0, 0, 255, 255]);
}

/// Every bit flip and truncation of an Add blob is rejected; re-sealed random mutations never
/// panic (kind bytes up to 6), and whatever loads also runs.
#[test]
fn add_corruption_is_rejected_and_never_panics() {
    super::graph::assert_corruption_is_rejected(&fixed_add().blob(), 0x0ADD_00C0, 7);
}
