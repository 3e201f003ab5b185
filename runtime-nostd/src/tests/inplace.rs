//! Nodes in place (blob format version 6): MLPerf Tiny's keyword-spotting DS-CNN in at most
//! 8,500 bytes of activation RAM, MobileNetV1-style stacks and ResNet-style graphs with Adds,
//! each run through the in-place blob, the layer-by-layer blob and the plain-i64 evaluation of
//! tests/graph.rs; the version rules; and the loader's refusal of every other overlap.

use super::graph::{make_conv, random_cnn_start, TCnn, TNode};
use super::*;
use crate::encode::{encode_with_plan, plan_model, write_blob, InPlace, InPlaceOption, Plan};
use crate::{kinds, Error, LayerKind, Model};

/// `ceil(log2(n))`.
fn log2_ceil(n: usize) -> u32 {
    usize::BITS - (n.max(1) - 1).leading_zeros()
}

/// An empty CNN over `shape` with one shared input entry.
fn start(rng: &mut Rng, shape: [usize; 3]) -> TCnn {
    let mut cnn = random_cnn_start(rng);
    cnn.shape = shape;
    cnn.features.truncate(1);
    cnn
}

/// The last value's shape.
fn last_shape(cnn: &TCnn) -> [usize; 3] {
    cnn.values().last().unwrap().0
}

/// Appends a convolution on the last value (`relu`: a fused ReLU, else the random activation
/// of `make_conv`, tables included).
fn conv(
    rng: &mut Rng,
    cnn: &mut TCnn,
    kernel: [usize; 2],
    stride: [usize; 2],
    n_out: usize,
    depthwise: bool,
    relu: bool,
) {
    let c = last_shape(cnn)[2];
    let n_out = if depthwise { c } else { n_out };
    let mut node = make_conv(rng, c, kernel, stride, true, n_out, depthwise);
    if let (true, TNode::Conv { act, .. }) = (relu, &mut node) {
        *act = TAct::Relu;
    }
    cnn.nodes.push(node);
}

/// A global average pool, then a dense layer of `n_out` logits.
fn head(rng: &mut Rng, cnn: &mut TCnn, n_out: usize) {
    let [h, w, c] = last_shape(cnn);
    cnn.nodes.push(TNode::AvgPool {
        kernel: [h, w],
        stride: [1, 1],
        m: rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32,
        t: (30 + log2_ceil(h * w)) as u8,
        zp_out: rng.i8_in(-100, 100),
    });
    let zp = cnn.values().last().unwrap().1;
    cnn.nodes
        .push(TNode::Dense(random_layer(rng, c, n_out, zp)));
}

/// MLPerf Tiny's keyword-spotting DS-CNN: input 49x10x1, conv 10x4 stride 2 same -> 25x5x64,
/// 4 x [depthwise 3x3 same relu, conv 1x1:64 relu], global average pool, dense 12.
fn ds_cnn(rng: &mut Rng) -> TCnn {
    let mut cnn = start(rng, [49, 10, 1]);
    conv(rng, &mut cnn, [10, 4], [2, 2], 64, false, true);
    for _ in 0..4 {
        conv(rng, &mut cnn, [3, 3], [1, 1], 0, true, true);
        conv(rng, &mut cnn, [1, 1], [1, 1], 64, false, true);
    }
    head(rng, &mut cnn, 12);
    cnn
}

/// The version of `cnn`'s blob with `plan` in place: 7 when a convolution other than 1x1 runs
/// in place (row by row) or a depthwise one that keeps its shape with stride 1 (over a ring),
/// else 6.
pub(super) fn in_place_version(cnn: &TCnn, plan: &Plan) -> u16 {
    let spec = cnn.spec();
    let values = cnn.values();
    let version_7 = spec.nodes.iter().enumerate().any(|(k, node)| {
        let (input, output) = (values[node.input].0, values[k + 1].0);
        plan.in_place[k].is_some()
            && match &node.layer {
                crate::encode::LayerSpec::Conv2d(s) => s.kernel != [1, 1],
                crate::encode::LayerSpec::DepthwiseConv2d(s) => {
                    s.stride == [1, 1] && input == output
                }
                _ => false,
            }
    });
    if version_7 {
        7
    } else {
        6
    }
}

/// Runs `cnn`'s in-place blob and its layer-by-layer blob on `inputs` random inputs through
/// `run` (with exactly `scratch_len` bytes, and with the fast workspace), `run_quantized` and
/// `run_quantized_reference`: every logit equals the plain-i64 evaluation's. Returns the plan.
fn check_in_place(rng: &mut Rng, cnn: &TCnn, inputs: usize, what: &str) -> Plan {
    let spec = cnn.spec();
    let plan = plan_model(&spec).unwrap();
    let blob = cnn.blob();
    let plain_blob = cnn.blob_layer_by_layer();
    let m = Model::from_bytes(&blob).unwrap();
    let plain = Model::from_bytes(&plain_blob).unwrap();
    assert_eq!(m.scratch_len() as u64, plan.arena_len, "{what}");
    assert_eq!(
        plain.scratch_len() as u64,
        plan.layer_by_layer_len,
        "{what}"
    );
    if plan.n_in_place() == 0 {
        assert_eq!(blob, plain_blob, "{what}: nothing in place, the same bytes");
    } else {
        assert_eq!(m.format_version(), in_place_version(cnn, &plan), "{what}");
        assert!(plain.format_version() < 6, "{what}");
        assert!(plan.arena_len < plan.layer_by_layer_len, "{what}");
    }
    // the layer info names the nodes in place and their temporaries
    for (k, p) in plan.in_place.iter().enumerate() {
        let info = m.layer(k).unwrap();
        assert_eq!(info.in_place, p.is_some(), "{what}: layer {k}");
        assert_eq!(info.temp_len as u64, p.map_or(0, |p| p.temp_len));
        assert!(!plain.layer(k).unwrap().in_place);
    }
    for _ in 0..inputs {
        let raw = random_raw(rng, cnn.n_inputs());
        let q = cnn.quantize(&raw);
        let expected = cnn.eval_quantized(&q);
        let class = argmax_ref(&expected);
        for (model, name) in [(&m, "in place"), (&plain, "layer by layer")] {
            let mut logits = std::vec![0i8; model.n_outputs()];
            let mut scratch = std::vec![0x11i8; model.scratch_len()];
            assert_eq!(model.run(&raw, &mut scratch, &mut logits), Ok(class));
            assert_eq!(logits, expected, "{what}: {name}, run");
            let mut scratch = std::vec![0x22i8; model.fast_scratch_len() + 3];
            assert_eq!(model.run(&raw, &mut scratch, &mut logits), Ok(class));
            assert_eq!(logits, expected, "{what}: {name}, run with workspace");
            let mut scratch = std::vec![0x33i8; model.scratch_len()];
            assert_eq!(
                model.run_quantized(&q, &mut scratch, &mut logits),
                Ok(class)
            );
            assert_eq!(logits, expected, "{what}: {name}, run_quantized");
            assert_eq!(
                model.run_quantized_reference(&q, &mut scratch, &mut logits),
                Ok(class)
            );
            assert_eq!(logits, expected, "{what}: {name}, run_quantized_reference");
        }
    }
    let sizes: Vec<u64> = cnn
        .values()
        .iter()
        .map(|(s, _)| s.iter().product::<usize>() as u64)
        .collect();
    let reads: Vec<Vec<usize>> = spec.nodes.iter().map(|n| n.reads()).collect();
    super::graph::assert_plan_safe(&sizes, &reads, &plan);
    plan
}

/// Whether `cnn` encodes with `plan` (the loader's verdict); if so, its logits through `run`
/// and `run_quantized_reference` are the plain-i64 evaluation's.
fn runs_with_plan(rng: &mut Rng, cnn: &TCnn, plan: Plan) -> bool {
    let Ok(blob) = encode_with_plan(&cnn.spec(), &plan) else {
        return false;
    };
    let m = Model::from_bytes(&blob).unwrap();
    for _ in 0..3 {
        let raw = random_raw(rng, cnn.n_inputs());
        let q = cnn.quantize(&raw);
        let expected = cnn.eval_quantized(&q);
        let mut logits = std::vec![0i8; m.n_outputs()];
        let mut scratch = std::vec![0x11i8; m.scratch_len()];
        m.run(&raw, &mut scratch, &mut logits).unwrap();
        assert_eq!(logits, expected, "{plan:?}");
        m.run_quantized_reference(&q, &mut scratch, &mut logits)
            .unwrap();
        assert_eq!(logits, expected, "{plan:?}");
    }
    true
}

/// The DS-CNN's activations fit 8,500 bytes in place (the layer-by-layer plan: 16,000, two
/// 25x5x64 values), with the outputs of the layer-by-layer blob and of the plain-i64 model.
#[test]
fn ds_cnn_runs_in_8500_bytes() {
    let mut rng = Rng::new(0xD5_C001);
    for case in 0..3 {
        let cnn = ds_cnn(&mut rng);
        assert_eq!(cnn.values()[1].0, [25, 5, 64]);
        let plan = check_in_place(&mut rng, &cnn, 8, &std::format!("DS-CNN {case}"));
        assert_eq!(plan.layer_by_layer_len, 16_000);
        assert!(plan.arena_len <= 8_500, "{plan:?}");
        // the first convolution's input and output (490 + 8,000) are the peak; every
        // depthwise and pointwise layer runs in place, with a ring of 7 pixels (448 bytes:
        // `top w + left + 1` of 64 channels) or a 64-byte temporary
        assert_eq!(plan.arena_len, 8_490);
        let temps: Vec<Option<u64>> = plan
            .in_place
            .iter()
            .map(|p| p.map(|p| p.temp_len))
            .collect();
        let mut expected = std::vec![None];
        for _ in 0..4 {
            expected.extend([Some(448), Some(64)]);
        }
        expected.extend([None, None]);
        assert_eq!(temps, expected);
        let blob = cnn.blob();
        let m = Model::from_bytes(&blob).unwrap();
        assert_eq!(m.scratch_len(), 8_490);
        // version 7 (the rings); a program that links the DS-CNN's kinds alone (no int16)
        // reads it
        assert_eq!(m.format_version(), 7);
        const DS: u8 = kinds::CONV2D | kinds::DEPTHWISE | kinds::AVG_POOL | kinds::DENSE;
        assert!(Model::<DS>::with_kinds(&blob).is_ok());
        if case == 0 {
            std::println!(
                "DS-CNN: layer by layer {} bytes, in place {} bytes ({} nodes in place), \
                 fast_scratch_len {} (optional im2col workspace), blob {} bytes",
                plan.layer_by_layer_len,
                plan.arena_len,
                plan.n_in_place(),
                m.fast_scratch_len(),
                blob.len()
            );
        }
    }
}

/// MobileNetV1-style stacks: depthwise stride 2 and 1, pointwise widening (`c_out > c_in`, the
/// input at the end of the output) and narrowing, random activations (tables included).
#[test]
fn mobilenet_stacks_run_in_place() {
    let mut rng = Rng::new(0xD5_C002);
    let mut widening = 0;
    let mut total = [0u64; 2];
    let mut gained = 0;
    for case in 0..40 {
        let side = rng.usize_in(6, 16);
        let c_in = rng.usize_in(1, 3);
        let mut cnn = start(&mut rng, [side, side, c_in]);
        let mut c = rng.usize_in(2, 8);
        conv(&mut rng, &mut cnn, [3, 3], [2, 2], c, false, false);
        for _ in 0..rng.usize_in(2, 4) {
            let stride = if rng.bool() { [2, 2] } else { [1, 1] };
            let k = if rng.below(4) == 0 { [5, 5] } else { [3, 3] };
            let r = rng.bool();
            conv(&mut rng, &mut cnn, k, stride, 0, true, r);
            let c_out = match rng.below(3) {
                0 => c * 2,
                1 => c,
                _ => (c / 2).max(1),
            };
            widening += usize::from(c_out > c);
            let r = rng.bool();
            conv(&mut rng, &mut cnn, [1, 1], [1, 1], c_out, false, r);
            c = c_out;
        }
        let r = rng.usize_in(2, 6);
        head(&mut rng, &mut cnn, r);
        let plan = check_in_place(&mut rng, &cnn, 3, &std::format!("MobileNet {case}"));
        gained += usize::from(plan.arena_len < plan.layer_by_layer_len);
        total[0] += plan.layer_by_layer_len;
        total[1] += plan.arena_len;
        if case < 3 {
            std::println!(
                "MobileNet-style {case}: layer by layer {} bytes, in place {} bytes, {} nodes in place",
                plan.layer_by_layer_len,
                plan.arena_len,
                plan.n_in_place()
            );
        }
    }
    std::println!(
        "MobileNet-style, 40 stacks: layer by layer {} bytes, in place {} bytes",
        total[0],
        total[1]
    );
    assert!(
        widening > 20 && gained > 5 && total[1] < total[0],
        "{widening} {gained} {total:?}"
    );
    // a fixed MobileNetV1 0.25-like stack on 32x32x3, every pointwise layer widening
    let mut cnn = start(&mut rng, [32, 32, 3]);
    conv(&mut rng, &mut cnn, [3, 3], [2, 2], 8, false, true);
    for (stride, c_out) in [(1, 16), (2, 32), (1, 32), (2, 64)] {
        conv(&mut rng, &mut cnn, [3, 3], [stride, stride], 0, true, true);
        conv(&mut rng, &mut cnn, [1, 1], [1, 1], c_out, false, true);
    }
    head(&mut rng, &mut cnn, 10);
    let plan = check_in_place(&mut rng, &cnn, 3, "MobileNetV1 0.25-like");
    std::println!(
        "MobileNetV1 0.25-like 32x32x3: layer by layer {} bytes, in place {} bytes, {} nodes in place",
        plan.layer_by_layer_len,
        plan.arena_len,
        plan.n_in_place()
    );
    // layer by layer: 16x16x8 + 16x16x16 (6,144) at the first widening pointwise layer; in
    // place the stem's input and output (3,072 + 2,048) are the peak
    assert_eq!(plan.layer_by_layer_len, 16 * 16 * 8 + 16 * 16 * 16);
    assert_eq!(plan.arena_len, 32 * 32 * 3 + 16 * 16 * 8);
}

/// An `Add` reading `other`, random weights and requantization.
fn add(rng: &mut Rng, other: usize, relu: bool) -> TNode {
    let w = |rng: &mut Rng| rng.range_i64(-(1 << 16), 1 << 16) as i32;
    TNode::Add {
        other,
        w: [w(rng), w(rng)],
        m: rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32,
        t: rng.range_i64(44, 50) as u8,
        zp_out: rng.i8_in(-100, 100),
        relu,
    }
}

/// ResNet-style graphs: a stem, blocks with an identity shortcut around one convolution
/// (`x + conv(x)`, the Add's peak of three values becomes two in place, over either operand),
/// a depthwise-separable block with its shortcut, sometimes `x + x`, then the head.
#[test]
fn resnet_graphs_run_in_place() {
    let mut rng = Rng::new(0xD5_C003);
    let (mut over_a, mut twice, mut adds) = (0, 0, 0);
    for case in 0..60 {
        let side = rng.usize_in(3, 10);
        let c_in = rng.usize_in(1, 3);
        let mut cnn = start(&mut rng, [side, side, c_in]);
        let c = rng.usize_in(1, 6);
        conv(&mut rng, &mut cnn, [3, 3], [1, 1], c, false, true);
        cnn.inputs = std::vec![0];
        for _ in 0..rng.usize_in(1, 3) {
            let x = cnn.nodes.len(); // the block's input value
            match rng.below(3) {
                0 => {
                    let r = rng.bool();
                    conv(&mut rng, &mut cnn, [3, 3], [1, 1], c, false, r);
                    cnn.inputs.push(x);
                }
                1 => {
                    let r = rng.bool();
                    conv(&mut rng, &mut cnn, [3, 3], [1, 1], 0, true, r);
                    cnn.inputs.push(x);
                    let r = rng.bool();
                    conv(&mut rng, &mut cnn, [1, 1], [1, 1], c, false, r);
                    cnn.inputs.push(x + 1);
                }
                _ => {
                    // x + x
                    let r = rng.bool();
                    cnn.nodes.push(add(&mut rng, x, r));
                    cnn.inputs.push(x);
                    twice += 1;
                    continue;
                }
            }
            // the main path's output plus the shortcut, in either order
            let y = cnn.nodes.len();
            if rng.bool() {
                let r = rng.bool();
                cnn.nodes.push(add(&mut rng, x, r));
                cnn.inputs.push(y);
            } else {
                let r = rng.bool();
                cnn.nodes.push(add(&mut rng, y, r));
                cnn.inputs.push(x);
            }
        }
        let n = cnn.nodes.len();
        let r = rng.usize_in(2, 5);
        head(&mut rng, &mut cnn, r);
        cnn.inputs.extend([n, n + 1]);
        let plan = check_in_place(&mut rng, &cnn, 3, &std::format!("ResNet {case}"));
        for (k, p) in plan.in_place.iter().enumerate() {
            if let (Some(p), TNode::Add { other, .. }) = (p, &cnn.nodes[k]) {
                adds += 1;
                if *other == cnn.input(k) {
                    // nothing to tell apart
                } else {
                    // both operands die at the Add: the planner takes the first
                    assert_eq!(p.input, cnn.input(k));
                    over_a += 1;
                }
            }
        }
        if case < 3 {
            std::println!(
                "ResNet-style {case}: layer by layer {} bytes, in place {} bytes, {} nodes in place",
                plan.layer_by_layer_len,
                plan.arena_len,
                plan.n_in_place()
            );
        }
    }
    assert!(
        adds > 30 && over_a > 5 && twice > 10,
        "{adds} {over_a} {twice}"
    );
    // x + conv(x) on 8x8x4: three 256-byte values at the Add, two in place
    let mut cnn = start(&mut rng, [8, 8, 4]);
    conv(&mut rng, &mut cnn, [3, 3], [1, 1], 4, false, true);
    conv(&mut rng, &mut cnn, [3, 3], [1, 1], 4, false, true);
    cnn.nodes.push(add(&mut rng, 1, true));
    cnn.inputs = std::vec![0, 1, 2];
    head(&mut rng, &mut cnn, 3);
    cnn.inputs.extend([3, 4]);
    let plan = check_in_place(&mut rng, &cnn, 3, "x + conv(x)");
    std::println!(
        "ResNet-style x + conv(x) on 8x8x4: layer by layer {} bytes, in place {} bytes",
        plan.layer_by_layer_len,
        plan.arena_len
    );
    assert_eq!((plan.layer_by_layer_len, plan.arena_len), (768, 512));
    assert_eq!(plan.n_in_place(), 1);
    assert_eq!(plan.in_place[2].map(|p| p.input), Some(2));
    // the same Add over its second operand, value 1 (the kernel's other branch): value 0 and
    // then value 2 at 0, values 1 and 3 at 256, the head after value 2
    let over_b = Plan {
        offsets: std::vec![0, 256, 0, 256, 0, 4],
        arena_len: 512,
        in_place: std::vec![
            None,
            None,
            Some(InPlace {
                input: 1,
                temp_offset: 0,
                temp_len: 0
            }),
            None,
            None
        ],
        ..plan.clone()
    };
    assert!(runs_with_plan(&mut rng, &cnn, over_b.clone()));
    let blob = encode_with_plan(&cnn.spec(), &over_b).unwrap();
    assert!(Model::from_bytes(&blob).unwrap().layer(2).unwrap().in_place);
}

/// Blobs without a node in place keep their version and bytes (an MLP, the CNN without
/// anything that runs in place); a blob with one is version 6, and so is nothing else.
#[test]
fn only_blobs_in_place_are_version_6_or_7() {
    let mut rng = Rng::new(0xD5_C004);
    for _ in 0..50 {
        let mlp = random_model(&mut rng, 10);
        let spec = mlp.spec();
        let plan = plan_model(&spec).unwrap();
        assert_eq!(plan.n_in_place(), 0);
        assert_eq!(plan.arena_len, plan.layer_by_layer_len);
        let blob = mlp.blob();
        assert_eq!(blob, crate::encode::encode_layer_by_layer(&spec).unwrap());
        assert_eq!(Model::from_bytes(&blob).unwrap().format_version(), 3);
    }
    let cnn = ds_cnn(&mut rng);
    assert_eq!(Model::from_bytes(&cnn.blob()).unwrap().format_version(), 7);
    // a version-6 blob holds channel planes: the rings are refused there by their length
    let mut v6 = cnn.blob();
    v6[4] = 6;
    reseal(&mut v6);
    assert!(matches!(
        Model::from_bytes(&v6),
        Err(Error::InPlaceTemp {
            layer: 1,
            len: 448,
            expected: 125,
            ..
        })
    ));
    // the same plan with channel planes instead of rings is version 6
    let spec = cnn.spec();
    let mut planes = plan_model(&spec).unwrap();
    let values = cnn.values();
    for (k, p) in planes.in_place.iter_mut().enumerate() {
        if let (Some(p), crate::encode::LayerSpec::DepthwiseConv2d(_)) = (p, &spec.nodes[k].layer) {
            let [h, w, _] = values[k].0;
            p.temp_len = (h * w) as u64;
        }
    }
    let blob = encode_with_plan(&spec, &planes).unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!(m.format_version(), 6);
    for _ in 0..4 {
        let raw = random_raw(&mut rng, cnn.n_inputs());
        let q = cnn.quantize(&raw);
        let mut scratch = std::vec![0i8; m.fast_scratch_len()];
        let expected = cnn.eval_quantized(&q);
        let mut out = std::vec![0i8; expected.len()];
        m.run_quantized(&q, &mut scratch, &mut out).unwrap();
        assert_eq!(out, expected);
    }
    let plain = cnn.blob_layer_by_layer();
    assert_eq!(Model::from_bytes(&plain).unwrap().format_version(), 3);
    assert_eq!(crate::FORMAT_VERSION, 8);
}

/// Two shape-keeping 3x3 convolutions after a widening one: the second runs in place, row by
/// row over a temporary of 3 input rows, so the blob is version 7 and its arena below the
/// layer-by-layer one; the outputs are the evaluation's. The same record in a version-6 blob is
/// refused by kind, and a program built without the in-place kinds refuses version 7 by its
/// version.
#[test]
fn shape_keeping_convolutions_run_in_place_from_version_7() {
    let mut rng = Rng::new(0xD5_C007);
    for case in 0..20 {
        let mut cnn = start(&mut rng, [9, 7, 2]);
        conv(&mut rng, &mut cnn, [3, 3], [1, 1], 6, false, true);
        conv(&mut rng, &mut cnn, [3, 3], [1, 1], 6, false, case % 2 == 0);
        conv(&mut rng, &mut cnn, [3, 3], [1, 1], 6, false, true);
        head(&mut rng, &mut cnn, 4);
        let plan = check_in_place(&mut rng, &cnn, 4, &std::format!("row window {case}"));
        // values: 126, 378, 378, 378 bytes; layer by layer 756, in place 378 + 378 + 3 rows
        assert_eq!(plan.layer_by_layer_len, 756);
        let temps: Vec<Option<u64>> = plan
            .in_place
            .iter()
            .map(|p| p.map(|p| p.temp_len))
            .collect();
        assert_eq!(temps[..3], [None, Some(3 * 7 * 6), Some(3 * 7 * 6)]);
        assert_eq!(plan.arena_len, 378 + 126);
        let blob = cnn.blob();
        assert_eq!(Model::from_bytes(&blob).unwrap().format_version(), 7);
        let mut v6 = blob.clone();
        v6[4] = 6;
        reseal(&mut v6);
        assert_eq!(
            Model::from_bytes(&v6).map(|_| ()),
            Err(Error::InPlaceKind { layer: 1 })
        );
        let dense_only = Model::<{ kinds::DENSE }>::with_kinds(&blob);
        assert_eq!(
            dense_only.map(|_| ()),
            Err(Error::UnsupportedVersion { found: 7 })
        );
    }
}

/// The DS-CNN's first block, small: [6, 5, 2] -> conv 3x3 s2 -> depthwise -> pointwise
/// widening -> depthwise -> pointwise narrowing -> gap -> dense, for the loader's checks.
fn small_stack(rng: &mut Rng) -> TCnn {
    let mut cnn = start(rng, [6, 5, 2]);
    conv(rng, &mut cnn, [3, 3], [1, 1], 4, false, true);
    conv(rng, &mut cnn, [3, 3], [1, 1], 0, true, true);
    conv(rng, &mut cnn, [1, 1], [1, 1], 8, false, true);
    conv(rng, &mut cnn, [3, 3], [1, 1], 0, true, true);
    conv(rng, &mut cnn, [1, 1], [1, 1], 2, false, true);
    head(rng, &mut cnn, 3);
    cnn
}

/// The byte offset of node `k`'s record.
fn node_at(blob: &[u8], k: usize) -> usize {
    let m = Model::from_bytes(blob).unwrap();
    let mut at = m.nodes_at;
    for i in 0..k {
        at += m.layer(i).unwrap().section_len;
    }
    at
}

/// `plan` with node `k` in place over value `input`, its temporary at `temp`.
fn with_in_place(plan: &Plan, k: usize, input: usize, temp: (u64, u64)) -> Plan {
    let mut plan = plan.clone();
    plan.in_place[k] = Some(InPlace {
        input,
        temp_offset: temp.0,
        temp_len: temp.1,
    });
    plan
}

/// The loader refuses every overlap but the in-place forms, a flag on a kind that cannot run
/// in place, an overlapped input that a later node still reads, a wrong or clashing
/// temporary, and the flag in any version before 6.
#[test]
fn malformed_in_place_plans_are_refused() {
    let mut rng = Rng::new(0xD5_C005);
    let cnn = small_stack(&mut rng);
    let spec = cnn.spec();
    // depthwise 1, pointwise 2 (4 -> 8, widening) and depthwise 3 in place (forced: the
    // planner's own choice depends on the sizes), pointwise 4 (8 -> 2) further below
    let sizes: Vec<u64> = cnn
        .values()
        .iter()
        .map(|(s, _)| s.iter().product::<usize>() as u64)
        .collect();
    let reads: Vec<Vec<usize>> = spec.nodes.iter().map(|n| n.reads()).collect();
    let option = |input, input_at, temp_len| {
        Some(InPlaceOption {
            input,
            input_at,
            temp_len,
        })
    };
    let good = crate::encode::plan_with_nodes_in_place(
        &sizes,
        &reads,
        &[
            None,
            option(1, 0, 30),
            option(2, 30 * 4, 8),
            option(3, 0, 30),
        ],
    );
    assert_eq!(good.n_in_place(), 3);
    let blob = encode_with_plan(&spec, &good).unwrap();
    Model::from_bytes(&blob).unwrap();
    let refused = |plan: &Plan, expected: Error| {
        let bytes = write_blob(&spec, plan).unwrap();
        assert_eq!(Model::from_bytes(&bytes).map(|_| ()), Err(expected));
        assert_eq!(encode_with_plan(&spec, plan), Err(expected));
    };
    let o = &good.offsets;
    let arena = good.arena_len;
    // the arena a plan's offsets and temporaries need
    let fit = |mut plan: Plan| {
        plan.arena_len = plan
            .offsets
            .iter()
            .zip(&sizes)
            .map(|(o, s)| o + s)
            .chain(
                plan.in_place
                    .iter()
                    .flatten()
                    .map(|p| p.temp_offset + p.temp_len),
            )
            .max()
            .unwrap();
        plan
    };
    // the wrong form: a depthwise output one byte past its input (or its input one byte past
    // the output), a widening pointwise convolution's input at its output's offset instead of
    // its end, a narrowing one's output two bytes past its input
    for (value, offset, layer) in [(2usize, o[2] + 1, 1u16), (1, o[1] + 1, 1), (3, o[2], 2)] {
        let mut plan = good.clone();
        plan.offsets[value] = offset;
        refused(&fit(plan), Error::InPlaceOverlap { layer });
    }
    // the narrowing pointwise layer forced in place (value 5 over value 4, the temporary and
    // the pool's output past the end): accepted, the same logits; its output two bytes on:
    // refused
    let mut forced = with_in_place(&good, 4, 4, (arena, 2));
    forced.offsets[5] = o[4];
    forced.offsets[6] = arena + 2;
    let forced = fit(forced);
    assert!(runs_with_plan(&mut rng, &cnn, forced.clone()));
    let mut plan = forced.clone();
    plan.offsets[5] += 2;
    refused(&fit(plan), Error::InPlaceOverlap { layer: 4 });
    // in place on a kind that cannot: the 3x3 convolution, the pool, the dense layer
    for k in [0usize, 5, 6] {
        let plan = with_in_place(&good, k, k, (0, 0));
        let bytes = write_blob(&spec, &plan).unwrap();
        assert_eq!(
            Model::from_bytes(&bytes).map(|_| ()),
            Err(Error::InPlaceKind { layer: k as u16 })
        );
    }
    // a temporary of the wrong length, or past the arena
    let p1 = good.in_place[1].unwrap();
    refused(
        &with_in_place(&good, 1, 1, (p1.temp_offset, p1.temp_len - 1)),
        Error::InPlaceTemp {
            layer: 1,
            offset: p1.temp_offset as u32,
            len: p1.temp_len as u32 - 1,
            expected: p1.temp_len as u32,
        },
    );
    refused(
        &with_in_place(&good, 1, 1, (arena - 1, p1.temp_len)),
        Error::InPlaceTemp {
            layer: 1,
            offset: arena as u32 - 1,
            len: p1.temp_len as u32,
            expected: p1.temp_len as u32,
        },
    );
    // a temporary over the output (and so the input) of its node
    refused(
        &with_in_place(&good, 1, 1, (o[2], p1.temp_len)),
        Error::TempOverlap { layer: 1, value: 2 },
    );
    // the plan's shape
    let mut short = good.clone();
    short.in_place.pop();
    assert!(matches!(
        encode_with_plan(&spec, &short),
        Err(Error::SpecLength { .. })
    ));

    // the flag in an older version, and the overlap without the flag: refused as before
    let flag_at = node_at(&blob, 1) + 10;
    assert_eq!(blob[flag_at], 1);
    for version in [3u8, 5] {
        let mut old = blob.clone();
        old[4] = version;
        reseal(&mut old);
        assert_eq!(
            Model::from_bytes(&old).map(|_| ()),
            Err(Error::ReservedNonZero {
                offset: flag_at as u32
            })
        );
    }
    let mut two = blob.clone();
    two[flag_at] = 2;
    reseal(&mut two);
    assert_eq!(
        Model::from_bytes(&two).map(|_| ()),
        Err(Error::ReservedNonZero {
            offset: flag_at as u32
        })
    );
    // the in-place offsets without the flags: version 3, every overlap refused
    let unflagged = Plan {
        in_place: std::vec![None; spec.nodes.len()],
        arena_len: good.arena_len,
        ..good.clone()
    };
    let bytes = write_blob(&spec, &unflagged).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 3);
    assert_eq!(
        Model::from_bytes(&bytes).map(|_| ()),
        Err(Error::ArenaOverlap { a: 1, b: 2 })
    );
    let mut v5 = bytes.clone();
    v5[4] = 5;
    reseal(&mut v5);
    assert_eq!(
        Model::from_bytes(&v5).map(|_| ()),
        Err(Error::ArenaOverlap { a: 1, b: 2 })
    );
}

/// An input overwritten in place while a later node still reads it: the Add of a skip
/// connection reads value 1 after the depthwise layer that would overwrite it.
#[test]
fn an_input_read_later_cannot_be_overwritten() {
    let mut rng = Rng::new(0xD5_C006);
    // 0 -> conv -> 1 -> depthwise -> 2 -> pointwise -> 3 -> add(3, 1) -> 4 -> gap -> dense
    let mut cnn = start(&mut rng, [5, 5, 2]);
    conv(&mut rng, &mut cnn, [3, 3], [1, 1], 3, false, true);
    conv(&mut rng, &mut cnn, [3, 3], [1, 1], 0, true, true);
    conv(&mut rng, &mut cnn, [1, 1], [1, 1], 3, false, true);
    cnn.nodes.push(add(&mut rng, 1, false));
    cnn.inputs = std::vec![0, 1, 2, 3];
    head(&mut rng, &mut cnn, 2);
    cnn.inputs.extend([4, 5]);
    let spec = cnn.spec();
    let good = plan_model(&spec).unwrap();
    // value 1 lives on to the Add: the depthwise layer is no candidate
    assert!(good.in_place[1].is_none());
    check_in_place(&mut rng, &cnn, 2, "skip over a depthwise layer");
    // forced on the layer-by-layer plan: value 2 over value 1, the temporary past everything
    let mut plan = crate::encode::plan_model_layer_by_layer(&spec).unwrap();
    let end = plan.arena_len;
    plan.offsets[2] = plan.offsets[1];
    plan.in_place[1] = Some(InPlace {
        input: 1,
        temp_offset: end,
        temp_len: 25,
    });
    plan.arena_len = end + 25;
    let bytes = write_blob(&spec, &plan).unwrap();
    let got = Model::from_bytes(&bytes).map(|_| ());
    assert_eq!(got, Err(Error::ArenaOverlap { a: 1, b: 2 }));
    // the pointwise layer over the depthwise output (its last reader) is allowed; whether the
    // plan takes it, the outputs agree (checked above)
    let _ = good.in_place[2];
}

/// Every flip of an in-place blob (version 7: the depthwise layers over rings) is refused; re-sealed random mutations never panic, and
/// whatever loads also runs (the in-place kernels on whatever offsets the loader accepted).
#[test]
fn in_place_corruption_is_rejected_and_never_panics() {
    let mut rng = Rng::new(0xD5_C007);
    let cnn = small_stack(&mut rng);
    let blob = cnn.blob();
    assert_eq!(u16::from_le_bytes([blob[4], blob[5]]), 7);
    for byte in 0..blob.len() {
        for bit in 0..8 {
            let mut b = blob.clone();
            b[byte] ^= 1 << bit;
            assert!(Model::from_bytes(&b).is_err(), "flip {byte}:{bit} accepted");
        }
    }
    let mut loaded = 0;
    for _ in 0..20_000 {
        let mut b = blob.clone();
        for _ in 0..rng.usize_in(1, 3) {
            let at = rng.usize_in(0, b.len() - 5);
            b[at] = match rng.below(3) {
                0 => b[at] ^ (1 << rng.below(8)),
                1 => rng.below(4) as u8,
                _ => rng.next_u64() as u8,
            };
        }
        reseal(&mut b);
        if let Ok(m) = Model::from_bytes(&b) {
            loaded += 1;
            let raw = random_raw(&mut rng, m.n_inputs());
            let mut scratch = std::vec![0i8; m.scratch_len()];
            let mut logits = std::vec![0i8; m.n_outputs()];
            m.run(&raw, &mut scratch, &mut logits).unwrap();
            let q = std::vec![0i8; m.n_inputs()];
            m.run_quantized_reference(&q, &mut scratch, &mut logits)
                .unwrap();
            for k in 0..m.n_layers() {
                let info = m.layer(k).unwrap();
                if info.in_place {
                    assert!(matches!(
                        info.kind,
                        LayerKind::DepthwiseConv2d | LayerKind::Conv2d | LayerKind::Add
                    ));
                }
            }
        }
    }
    assert!(loaded > 1000, "{loaded}");
}
