//! The layer graph: convolution, depthwise convolution, pooling, dense and residual `Add` nodes
//! encoded, loaded and run against a plain-i64 evaluation written from docs/layer-graph.md; the
//! planner; the loader's checks on convolution and pooling records (`Add`'s: tests/add.rs).

use super::*;
use crate::{Error, LayerKind, Model};

/// One node of a test CNN, with the quantizer's view of its numbers.
#[derive(Debug, Clone)]
pub enum TNode {
    Conv {
        depthwise: bool,
        kernel: [usize; 2],
        stride: [usize; 2],
        same: bool,
        n_out: usize,
        w: Vec<i8>,
        b: Vec<i32>,
        m: Vec<i32>,
        t: Vec<u8>,
        zp_out: i8,
        act: TAct,
    },
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        m: i32,
        t: u8,
        zp_out: i8,
    },
    Dense(TLayer),
    /// `y = clamp(sat8(zp_out + rq(w[0] (a - zp_a) + w[1] (b - zp_b), m, t)))`: `a` the node's
    /// input, `b` value `other`.
    Add {
        other: usize,
        w: [i32; 2],
        m: i32,
        t: u8,
        zp_out: i8,
        relu: bool,
    },
}

#[derive(Debug, Clone)]
pub struct TCnn {
    pub shape: [usize; 3],
    pub zp_in: i8,
    pub features: Vec<(i32, i32, u8)>,
    pub nodes: Vec<TNode>,
    /// The value node `k` reads (an `Add`'s first operand): `inputs[k]`, or `k` (a chain) past
    /// its end.
    pub inputs: Vec<usize>,
    pub scale: f32,
}

/// docs/layer-graph.md "Padding and output sizes", for one axis: `(out, pad_begin)`.
#[allow(clippy::manual_div_ceil)] // the doc's formula, written out
fn out_size(n: usize, k: usize, s: usize, same: bool) -> (usize, usize) {
    if same {
        let out = (n + s - 1) / s;
        let total = ((out - 1) * s + k).saturating_sub(n);
        (out, total / 2)
    } else {
        ((n - k) / s + 1, 0)
    }
}

fn act_out(act: &TAct, zp_out: i8, r: i64) -> i8 {
    match act {
        TAct::Identity => sat8_ref(i64::from(zp_out) + r) as i8,
        TAct::Relu => sat8_ref(i64::from(zp_out) + r).max(i64::from(zp_out)) as i8,
        TAct::Lut { pre_zp, table } => table[(sat8_ref(i64::from(*pre_zp) + r) + 128) as usize],
    }
}

fn act_spec(act: &TAct) -> ActivationSpec {
    match act {
        TAct::Identity => ActivationSpec::Identity,
        TAct::Relu => ActivationSpec::Relu,
        TAct::Lut { pre_zp, table } => ActivationSpec::Lut {
            pre_zero_point: *pre_zp,
            table: *table,
        },
    }
}

impl TCnn {
    pub fn n_inputs(&self) -> usize {
        self.shape.iter().product()
    }

    /// The value node `k` reads.
    pub fn input(&self, k: usize) -> usize {
        self.inputs.get(k).copied().unwrap_or(k)
    }

    /// Every value's shape and zero point.
    pub fn values(&self) -> Vec<([usize; 3], i8)> {
        let mut v = std::vec![(self.shape, self.zp_in)];
        for (k, node) in self.nodes.iter().enumerate() {
            let ([h, w, c], zp) = v[self.input(k)];
            v.push(match node {
                TNode::Conv {
                    kernel,
                    stride,
                    same,
                    n_out,
                    zp_out,
                    ..
                } => {
                    let (oh, _) = out_size(h, kernel[0], stride[0], *same);
                    let (ow, _) = out_size(w, kernel[1], stride[1], *same);
                    ([oh, ow, *n_out], *zp_out)
                }
                TNode::MaxPool { kernel, stride } => (
                    [
                        (h - kernel[0]) / stride[0] + 1,
                        (w - kernel[1]) / stride[1] + 1,
                        c,
                    ],
                    zp,
                ),
                TNode::AvgPool {
                    kernel,
                    stride,
                    zp_out,
                    ..
                } => (
                    [
                        (h - kernel[0]) / stride[0] + 1,
                        (w - kernel[1]) / stride[1] + 1,
                        c,
                    ],
                    *zp_out,
                ),
                TNode::Dense(l) => ([1, 1, l.n_out], l.zp_out),
                TNode::Add { zp_out, .. } => ([h, w, c], *zp_out),
            });
        }
        v
    }

    pub fn spec(&self) -> ModelSpec {
        let values = self.values();
        let layers = self.nodes.iter().enumerate().map(|(k, node)| {
            let zp_in = values[self.input(k)].1;
            match node {
                TNode::Conv {
                    depthwise,
                    kernel,
                    stride,
                    same,
                    n_out,
                    w,
                    b,
                    m,
                    t,
                    zp_out,
                    act,
                } => {
                    let spec = ConvSpec {
                        kernel: kernel.map(|k| k as u32),
                        stride: stride.map(|s| s as u32),
                        padding: if *same { Padding::Same } else { Padding::Valid },
                        n_outputs: *n_out as u32,
                        input_zero_point: zp_in,
                        output_zero_point: *zp_out,
                        weights: w.clone(),
                        bias: b.clone(),
                        multipliers: m.clone(),
                        shifts: t.clone(),
                        activation: act_spec(act),
                    };
                    if *depthwise {
                        LayerSpec::DepthwiseConv2d(spec)
                    } else {
                        LayerSpec::Conv2d(spec)
                    }
                }
                TNode::MaxPool { kernel, stride } => LayerSpec::MaxPool2d(PoolSpec {
                    kernel: kernel.map(|k| k as u32),
                    stride: stride.map(|s| s as u32),
                    input_zero_point: zp_in,
                    output_zero_point: zp_in,
                    multiplier: 0,
                    shift: 0,
                }),
                TNode::AvgPool {
                    kernel,
                    stride,
                    m,
                    t,
                    zp_out,
                } => LayerSpec::AvgPool2d(PoolSpec {
                    kernel: kernel.map(|k| k as u32),
                    stride: stride.map(|s| s as u32),
                    input_zero_point: zp_in,
                    output_zero_point: *zp_out,
                    multiplier: *m,
                    shift: *t,
                }),
                TNode::Dense(l) => {
                    let mlp = TModel {
                        zp_in,
                        features: std::vec![(0, 1 << 30, 30)],
                        layers: std::vec![l.clone()],
                        scale: 1.0,
                    };
                    let spec = mlp.spec();
                    spec.nodes[0].layer.clone()
                }
                TNode::Add {
                    other,
                    w,
                    m,
                    t,
                    zp_out,
                    relu,
                } => LayerSpec::Add(AddSpec {
                    other: *other,
                    input_zero_points: [zp_in, values[*other].1],
                    output_zero_point: *zp_out,
                    weights: *w,
                    multiplier: *m,
                    shift: *t,
                    activation: if *relu {
                        ActivationSpec::Relu
                    } else {
                        ActivationSpec::Identity
                    },
                }),
            }
        });
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
            input_shape: self.shape.map(|d| d as u32),
            nodes: layers
                .enumerate()
                .map(|(k, layer)| NodeSpec {
                    input: self.input(k),
                    layer,
                })
                .collect(),
            output_scale: self.scale,
            output_zero_point: values.last().unwrap().1,
        }
    }

    pub fn blob(&self) -> Vec<u8> {
        crate::encode::encode(&self.spec()).unwrap()
    }

    /// The blob with the layer-by-layer plan: no node in place.
    pub fn blob_layer_by_layer(&self) -> Vec<u8> {
        crate::encode::encode_layer_by_layer(&self.spec()).unwrap()
    }

    pub fn quantize(&self, raw: &[i32]) -> Vec<i8> {
        TModel {
            zp_in: self.zp_in,
            features: self.features.clone(),
            layers: Vec::new(),
            scale: 1.0,
        }
        .quantize(raw)
    }

    /// Every value, docs/layer-graph.md "The int8 arithmetic of each layer" in plain i64, by
    /// coordinates (HWC activations, OHWI weights).
    pub fn eval_values(&self, q_in: &[i8]) -> Vec<Vec<i8>> {
        let values = self.values();
        let mut outs = std::vec![q_in.to_vec()];
        for (k, node) in self.nodes.iter().enumerate() {
            let ([h, w, c], zp_in) = values[self.input(k)];
            let ([oh, ow, oc], _) = values[k + 1];
            let x = &outs[self.input(k)];
            let at = |y: usize, xx: usize, ch: usize| i64::from(x[(y * w + xx) * c + ch]);
            let mut y = Vec::new();
            match node {
                TNode::Conv {
                    depthwise,
                    kernel: [kh, kw],
                    stride: [sh, sw],
                    same,
                    w: wt,
                    b,
                    m,
                    t,
                    zp_out,
                    act,
                    ..
                } => {
                    let (_, top) = out_size(h, *kh, *sh, *same);
                    let (_, left) = out_size(w, *kw, *sw, *same);
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for o in 0..oc {
                                let mut acc = i64::from(b[o]);
                                for ky in 0..*kh {
                                    for kx in 0..*kw {
                                        let iy = (oy * sh + ky) as i64 - top as i64;
                                        let ix = (ox * sw + kx) as i64 - left as i64;
                                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                            continue;
                                        }
                                        let (iy, ix) = (iy as usize, ix as usize);
                                        if *depthwise {
                                            let wv = wt[(ky * kw + kx) * c + o];
                                            acc +=
                                                i64::from(wv) * (at(iy, ix, o) - i64::from(zp_in));
                                        } else {
                                            for ci in 0..c {
                                                let wv = wt[((o * kh + ky) * kw + kx) * c + ci];
                                                acc += i64::from(wv)
                                                    * (at(iy, ix, ci) - i64::from(zp_in));
                                            }
                                        }
                                    }
                                }
                                assert!(i32::try_from(acc).is_ok());
                                y.push(act_out(act, *zp_out, rq_ref(acc, m[o], t[o])));
                            }
                        }
                    }
                }
                TNode::MaxPool {
                    kernel: [kh, kw],
                    stride: [sh, sw],
                } => {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for ch in 0..c {
                                let mut best = i64::MIN;
                                for ky in 0..*kh {
                                    for kx in 0..*kw {
                                        best = best.max(at(oy * sh + ky, ox * sw + kx, ch));
                                    }
                                }
                                y.push(best as i8);
                            }
                        }
                    }
                }
                TNode::AvgPool {
                    kernel: [kh, kw],
                    stride: [sh, sw],
                    m,
                    t,
                    zp_out,
                } => {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for ch in 0..c {
                                let mut acc = 0i64;
                                for ky in 0..*kh {
                                    for kx in 0..*kw {
                                        acc +=
                                            at(oy * sh + ky, ox * sw + kx, ch) - i64::from(zp_in);
                                    }
                                }
                                y.push(sat8_ref(i64::from(*zp_out) + rq_ref(acc, *m, *t)) as i8);
                            }
                        }
                    }
                }
                TNode::Dense(l) => {
                    let mlp = TModel {
                        zp_in,
                        features: Vec::new(),
                        layers: std::vec![l.clone()],
                        scale: 1.0,
                    };
                    y = mlp.eval_quantized(x);
                }
                TNode::Add {
                    other,
                    w: [wa, wb],
                    m,
                    t,
                    zp_out,
                    relu,
                } => {
                    let (b, zp_b) = (&outs[*other], values[*other].1);
                    assert_eq!(b.len(), x.len());
                    let act = if *relu { TAct::Relu } else { TAct::Identity };
                    for (&xa, &xb) in x.iter().zip(b) {
                        let acc = i64::from(*wa) * (i64::from(xa) - i64::from(zp_in))
                            + i64::from(*wb) * (i64::from(xb) - i64::from(zp_b));
                        assert!(acc.abs() < 1 << 26);
                        y.push(act_out(&act, *zp_out, rq_ref(acc, *m, *t)));
                    }
                }
            }
            outs.push(y);
        }
        outs
    }

    pub fn eval_quantized(&self, q_in: &[i8]) -> Vec<i8> {
        self.eval_values(q_in).pop().unwrap()
    }
}

fn log2_ceil(n: usize) -> i64 {
    (usize::BITS - (n.max(1) - 1).leading_zeros()) as i64
}

fn random_act(rng: &mut Rng, zp_out: i8) -> TAct {
    match rng.below(3) {
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
    }
}

fn random_conv(rng: &mut Rng, [h, w, c]: [usize; 3], depthwise: bool) -> TNode {
    let kernel = [rng.usize_in(1, h.min(3)), rng.usize_in(1, w.min(3))];
    let stride = [rng.usize_in(1, 2), rng.usize_in(1, 2)];
    let same = rng.bool();
    let n_out = if depthwise { c } else { rng.usize_in(1, 4) };
    make_conv(rng, c, kernel, stride, same, n_out, depthwise)
}

/// A convolution over `c` input channels with the given geometry and random numbers.
pub fn make_conv(
    rng: &mut Rng,
    c: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    same: bool,
    n_out: usize,
    depthwise: bool,
) -> TNode {
    let per_channel = kernel[0] * kernel[1] * if depthwise { 1 } else { c };
    let n_weights = if depthwise {
        kernel[0] * kernel[1] * c
    } else {
        n_out * per_channel
    };
    let zp_out = rng.i8_in(-100, 100);
    TNode::Conv {
        depthwise,
        kernel,
        stride,
        same,
        n_out,
        w: (0..n_weights).map(|_| rng.i8_in(-127, 127)).collect(),
        b: (0..n_out)
            .map(|_| rng.range_i64(-20000, 20000) as i32)
            .collect(),
        m: (0..n_out)
            .map(|_| rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32)
            .collect(),
        t: (0..n_out)
            .map(|_| (31 + 9 + log2_ceil(per_channel) / 2 + rng.range_i64(-1, 1)) as u8)
            .collect(),
        zp_out,
        act: random_act(rng, zp_out),
    }
}

/// A pooling window that fits an axis of `n`: `(kernel, stride)` with the stride dividing
/// `n - kernel`.
fn pool_axis(rng: &mut Rng, n: usize) -> (usize, usize) {
    loop {
        let k = rng.usize_in(1, n.min(3));
        let s = rng.usize_in(1, 2);
        if (n - k) % s == 0 {
            return (k, s);
        }
    }
}

/// conv -> depthwise -> maxpool -> avgpool (global half the time) -> dense, random shapes.
pub fn random_cnn(rng: &mut Rng) -> TCnn {
    let cnn = random_cnn_start(rng);
    random_cnn_rest(rng, cnn)
}

/// An empty CNN with a random input shape and input stage.
pub fn random_cnn_start(rng: &mut Rng) -> TCnn {
    let shape = [rng.usize_in(1, 9), rng.usize_in(1, 9), rng.usize_in(1, 3)];
    let n_in: usize = shape.iter().product();
    let zp_in = rng.i8();
    let n_features = if rng.bool() { 1 } else { n_in };
    let features = (0..n_features)
        .map(|_| {
            (
                rng.range_i64(-2000, 2000) as i32,
                rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32,
                rng.range_i64(36, 40) as u8,
            )
        })
        .collect();
    TCnn {
        shape,
        zp_in,
        features,
        nodes: Vec::new(),
        inputs: Vec::new(),
        scale: 0.25,
    }
}

fn random_cnn_rest(rng: &mut Rng, mut cnn: TCnn) -> TCnn {
    for step in 0..5 {
        let (s, _) = *cnn.values().last().unwrap();
        let node = match step {
            0 => random_conv(rng, s, false),
            1 => random_conv(rng, s, true),
            2 => {
                let (kh, sh) = pool_axis(rng, s[0]);
                let (kw, sw) = pool_axis(rng, s[1]);
                TNode::MaxPool {
                    kernel: [kh, kw],
                    stride: [sh, sw],
                }
            }
            3 => {
                let ((kh, sh), (kw, sw)) = if rng.bool() {
                    ((s[0], 1), (s[1], 1)) // global average pool
                } else {
                    (pool_axis(rng, s[0]), pool_axis(rng, s[1]))
                };
                let taps = kh * kw;
                let t = 30 + log2_ceil(taps);
                let m = if rng.bool() {
                    ((1i64 << t) / taps as i64) as i32 // exactly 1 / taps, ties included
                } else {
                    rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32
                };
                TNode::AvgPool {
                    kernel: [kh, kw],
                    stride: [sh, sw],
                    m,
                    t: t as u8,
                    zp_out: rng.i8_in(-100, 100),
                }
            }
            _ => {
                let n: usize = s.iter().product();
                let zp = cnn.values().last().unwrap().1;
                let n_out = rng.usize_in(2, 6);
                TNode::Dense(random_layer(rng, n, n_out, zp))
            }
        };
        cnn.nodes.push(node);
    }
    cnn
}

/// Small random CNNs, encoded, loaded and run, against the plain-i64 evaluation: the logits and
/// argmax of `run` (dispatched kernels) and `run_quantized_reference`, the layer info, the plan.
#[test]
fn random_cnns_match_independent_evaluation() {
    let mut rng = Rng::new(0xC44_0001);
    let (mut same, mut strided, mut luts, mut global) = (0, 0, 0, 0);
    let mut in_place = 0;
    for case in 0..300 {
        let cnn = random_cnn(&mut rng);
        let blob = cnn.blob();
        let m = Model::from_bytes(&blob).unwrap();
        assert_eq!(m.n_inputs(), cnn.n_inputs());
        assert_eq!(m.n_layers(), 5);
        let values = cnn.values();
        for (k, node) in cnn.nodes.iter().enumerate() {
            let info = m.layer(k).unwrap();
            assert_eq!(info.input_shape, values[k].0);
            assert_eq!(info.output_shape, values[k + 1].0);
            assert_eq!((info.input_value, info.output_value), (k, k + 1));
            let kind = match node {
                TNode::Conv {
                    depthwise: false, ..
                } => LayerKind::Conv2d,
                TNode::Conv {
                    depthwise: true, ..
                } => LayerKind::DepthwiseConv2d,
                TNode::MaxPool { .. } => LayerKind::MaxPool2d,
                TNode::AvgPool { .. } => LayerKind::AvgPool2d,
                TNode::Dense(_) => LayerKind::Dense,
                TNode::Add { .. } => LayerKind::Add,
            };
            assert_eq!(info.kind, kind);
            if let TNode::Conv {
                same: s,
                stride,
                act,
                ..
            } = node
            {
                same += usize::from(*s && info.pad != [0, 0]);
                strided += usize::from(stride.contains(&2));
                luts += usize::from(matches!(act, TAct::Lut { .. }));
            }
            if let TNode::AvgPool { kernel, .. } = node {
                global += usize::from(*kernel == [values[k].0[0], values[k].0[1]]);
            }
        }
        // the layer-by-layer plan is at the chain's lower bound, and the plan in place (a
        // depthwise layer, or a shape-keeping convolution, over its input) below it or the same
        // bytes
        let sizes: Vec<usize> = values.iter().map(|(s, _)| s.iter().product()).collect();
        let bound = sizes.windows(2).map(|w| w[0] + w[1]).max().unwrap();
        let plain_blob = cnn.blob_layer_by_layer();
        let plain = Model::from_bytes(&plain_blob).unwrap();
        assert_eq!(plain.scratch_len(), bound, "case {case}");
        if m.format_version() >= 6 {
            assert!(m.scratch_len() < bound, "case {case}");
            in_place += 1;
        } else {
            assert_eq!(blob, plain_blob, "case {case}");
        }
        for _ in 0..4 {
            let raw = random_raw(&mut rng, cnn.n_inputs());
            let q = cnn.quantize(&raw);
            let expected = cnn.eval_quantized(&q);
            let mut scratch = std::vec![0x11i8; m.fast_scratch_len() + 7];
            let mut logits = std::vec![0i8; m.n_outputs()];
            let class = m.run(&raw, &mut scratch, &mut logits).unwrap();
            assert_eq!(logits, expected, "case {case}: {cnn:?}");
            assert_eq!(class, argmax_ref(&expected));
            let mut logits_ref = std::vec![0i8; m.n_outputs()];
            let mut scratch = std::vec![0i8; m.scratch_len()];
            assert_eq!(
                m.run_quantized_reference(&q, &mut scratch, &mut logits_ref),
                Ok(class)
            );
            assert_eq!(logits_ref, expected);
            // with no workspace at all the convolutions fall back: the same bytes
            let mut scratch = std::vec![0x11i8; m.scratch_len()];
            let mut logits_short = std::vec![0i8; m.n_outputs()];
            assert_eq!(m.run(&raw, &mut scratch, &mut logits_short), Ok(class));
            assert_eq!(logits_short, expected, "case {case}: short workspace");
            let mut logits_plain = std::vec![0i8; m.n_outputs()];
            let mut scratch = std::vec![0i8; plain.scratch_len()];
            assert_eq!(plain.run(&raw, &mut scratch, &mut logits_plain), Ok(class));
            assert_eq!(logits_plain, expected, "case {case}: layer by layer");
        }
    }
    assert!(
        same > 20 && strided > 50 && luts > 50 && global > 50 && in_place > 20,
        "{same} {strided} {luts} {global} {in_place}"
    );
}

/// A fixed CNN for the loader's checks: [6, 6, 2] -> conv 3x3 same 3 channels -> depthwise 3x3
/// s2 valid -> maxpool 2 -> avgpool (global) -> dense 4.
fn fixed_cnn() -> TCnn {
    let mut rng = Rng::new(77);
    let mut cnn = random_cnn(&mut rng);
    cnn.shape = [6, 6, 2];
    cnn.features.truncate(1);
    cnn.nodes.clear();
    let convs = [
        ([3, 3], [1, 1], true, false, 3),
        ([3, 3], [2, 2], false, true, 3),
    ];
    for (kernel, stride, same, depthwise, n_out) in convs {
        let (s, _) = *cnn.values().last().unwrap();
        let mut node = random_conv(&mut rng, s, depthwise);
        if let TNode::Conv {
            kernel: k,
            stride: st,
            same: sm,
            n_out: n,
            w,
            b,
            m,
            t,
            act,
            ..
        } = &mut node
        {
            (*k, *st, *sm, *n) = (kernel, stride, same, n_out);
            let n_weights = if depthwise {
                9 * s[2]
            } else {
                n_out * 9 * s[2]
            };
            *w = (0..n_weights).map(fixed_w).collect();
            *b = std::vec![100; n_out];
            *m = std::vec![1 << 30; n_out];
            *t = std::vec![40; n_out];
            *act = TAct::Relu;
        }
        cnn.nodes.push(node);
    }
    cnn.nodes.push(TNode::MaxPool {
        kernel: [2, 2],
        stride: [1, 1],
    });
    cnn.nodes.push(TNode::AvgPool {
        kernel: [1, 1],
        stride: [1, 1],
        m: 1 << 30,
        t: 30,
        zp_out: 3,
    });
    let zp = cnn.values().last().unwrap().1;
    cnn.nodes
        .push(TNode::Dense(random_layer(&mut rng, 3, 4, zp)));
    cnn
}

/// The fixed CNN's convolution weights.
fn fixed_w(i: usize) -> i8 {
    ((i * 37 % 200) as i32 - 100) as i8
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

#[test]
fn fixed_cnn_shapes_and_plan() {
    let cnn = fixed_cnn();
    let values: Vec<[usize; 3]> = cnn.values().iter().map(|v| v.0).collect();
    assert_eq!(
        values,
        [
            [6, 6, 2],
            [6, 6, 3],
            [2, 2, 3],
            [1, 1, 3],
            [1, 1, 3],
            [1, 1, 4]
        ]
    );
    let blob = cnn.blob();
    let m = Model::from_bytes(&blob).unwrap();
    assert_eq!(m.scratch_len(), 72 + 108);
    // the conv 3x3x2 -> 3 takes the two-pixel kernel's workspace (more than the one-pixel
    // kernel's 3 * 4 + 6 + 18 + 6 + 51): a 24-byte record per pair of channels (2), two
    // 18-byte columns between 6 zeros on each side, the two columns' 16-bit lanes (24 taps
    // each), the pair of channels' two rows widened (24 taps, 2 bytes each) and three
    // alignments (the dense 3 -> 4 needs only 3 alignment bytes). The length is the same on
    // every target: the host that bakes a model sizes a device's scratch.
    let workspace = (2 * 24 + 3) + 2 * (6 + 18 + 6) + (4 * 24 + 3) + (2 * 24 * 2 + 3);
    assert_eq!(m.fast_scratch_len(), m.scratch_len() + workspace);
    let info = m.layer(0).unwrap();
    assert_eq!(
        (info.kernel, info.stride, info.pad),
        ([3, 3], [1, 1], [1, 1])
    );
    let info = m.layer(1).unwrap();
    assert_eq!(
        (info.kernel, info.stride, info.pad),
        ([3, 3], [2, 2], [0, 0])
    );
    assert_eq!(m.layer(5), None);
    let mut rng = Rng::new(5);
    for _ in 0..20 {
        let raw = random_raw(&mut rng, 72);
        let mut scratch = std::vec![0i8; m.scratch_len()];
        let mut logits = [0i8; 4];
        m.run(&raw, &mut scratch, &mut logits).unwrap();
        assert_eq!(logits.to_vec(), cnn.eval_quantized(&cnn.quantize(&raw)));
    }
    assert!(std::format!("{m:?}").contains("Conv2d")); // Debug walks every node
}

#[test]
fn cnn_records_are_checked() {
    let blob = fixed_cnn().blob();
    let m = Model::from_bytes(&blob).unwrap();
    let values_at = m.values_at;
    let value = |v: usize| values_at + 20 * v;
    let (conv, dw, max, avg) = (
        node_at(&blob, 0),
        node_at(&blob, 1),
        node_at(&blob, 2),
        node_at(&blob, 3),
    );
    let check = |f: &dyn Fn(&mut Vec<u8>), expected: Error| {
        let mut b = blob.clone();
        f(&mut b);
        reseal(&mut b);
        assert_eq!(Model::from_bytes(&b).map(|_| ()), Err(expected));
    };
    let put_u16 =
        |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    // kernel and stride 0, unknown padding
    check(
        &|b| put_u16(b, conv + 12, 0),
        Error::BadGeometry { layer: 0 },
    );
    check(&|b| put_u16(b, dw + 18, 0), Error::BadGeometry { layer: 1 });
    check(&|b| b[conv + 3] = 2, Error::BadGeometry { layer: 0 });
    // a depthwise 7x7 valid kernel is larger than its 6x6 input
    check(
        &|b| {
            put_u16(b, dw + 12, 7);
            put_u16(b, dw + 14, 7);
        },
        Error::BadGeometry { layer: 1 },
    );
    // valid instead of same padding: the output shape no longer follows
    check(
        &|b| b[conv + 3] = 0,
        Error::NodeShape { layer: 0, value: 1 },
    );
    // a pooling stride that does not divide in - k: (2 - 1) % 2
    check(
        &|b| {
            put_u16(b, max + 12, 1);
            put_u16(b, max + 16, 2);
        },
        Error::BadGeometry { layer: 2 },
    );
    // pooling has no activation, padding or pre zero point
    check(
        &|b| b[max + 1] = 1,
        Error::BadActivation { layer: 2, kind: 1 },
    );
    check(
        &|b| b[avg + 1] = 2,
        Error::BadActivation { layer: 3, kind: 2 },
    );
    check(
        &|b| b[max + 3] = 1,
        Error::ReservedNonZero {
            offset: max as u32 + 3,
        },
    );
    // a max pool keeps its input's zero point
    check(
        &|b| b[value(3) + 16] = b[value(3) + 16].wrapping_add(1),
        Error::MaxPoolZeroPoint {
            layer: 2,
            input: blob[value(2) + 16] as i8,
            output: blob[value(2) + 16].wrapping_add(1) as i8,
        },
    );
    // an average pool's multiplier, shift and padding
    check(
        &|b| b[avg + 24..avg + 28].copy_from_slice(&5i32.to_le_bytes()),
        Error::BadMultiplier {
            layer: 3,
            channel: 0,
            multiplier: 5,
        },
    );
    check(
        &|b| b[avg + 28] = 0,
        Error::BadShift {
            layer: 3,
            channel: 0,
            shift: 0,
        },
    );
    check(
        &|b| b[avg + 29] = 1,
        Error::ReservedNonZero {
            offset: avg as u32 + 29,
        },
    );
    // a depthwise layer keeps its channels
    check(
        &|b| b[value(2) + 8] = 1,
        Error::NodeShape { layer: 1, value: 2 },
    );
    // the second input of this version's layers is "none"
    check(
        &|b| put_u16(b, dw + 6, 0),
        Error::BadValueId { layer: 1, value: 0 },
    );
    // the conv accumulator bound is |b| + 255 sum |w|: channel 0 has 18 weights
    let sum_w: u64 = (0..18).map(|i| u64::from(fixed_w(i).unsigned_abs())).sum();
    let bias_at = conv + 24 + 12 + 4;
    let limit = i32::MAX as u64 - 255 * sum_w;
    check(
        &|b| b[bias_at..bias_at + 4].copy_from_slice(&(limit as i32 + 1).to_le_bytes()),
        Error::AccumulatorOverflow {
            layer: 0,
            channel: 0,
        },
    );
    let mut b = blob.clone();
    b[bias_at..bias_at + 4].copy_from_slice(&(limit as i32).to_le_bytes());
    reseal(&mut b);
    assert!(
        Model::from_bytes(&b).is_ok(),
        "the bound itself is accepted"
    );
    // depthwise channel 1: weights 1, 4, 7, ... of the [3][3][3] array
    let dw_sum: u64 = (0..9)
        .map(|j| u64::from(fixed_w(j * 3 + 1).unsigned_abs()))
        .sum();
    let dw_bias = dw + 24 + 12 + 4 + 4;
    check(
        &|b| {
            let v = (i32::MAX as u64 - 255 * dw_sum + 1) as i32;
            b[dw_bias..dw_bias + 4].copy_from_slice(&v.to_le_bytes());
        },
        Error::AccumulatorOverflow {
            layer: 1,
            channel: 1,
        },
    );
}

/// Every bit flip and truncation of `blob` is rejected; re-sealed random mutations (bit flips,
/// small bytes below `small`, such as kind and activation codes, and random bytes) never panic,
/// and whatever loads also runs.
pub(crate) fn assert_corruption_is_rejected(blob: &[u8], seed: u64, small: u64) {
    for byte in 0..blob.len() {
        for bit in 0..8 {
            let mut b = blob.to_vec();
            b[byte] ^= 1 << bit;
            assert!(Model::from_bytes(&b).is_err(), "flip {byte}:{bit} accepted");
        }
    }
    for n in 0..blob.len() {
        assert!(Model::from_bytes(&blob[..n]).is_err());
    }
    let mut rng = Rng::new(seed);
    let mut loaded = 0;
    for _ in 0..20_000 {
        let mut b = blob.to_vec();
        for _ in 0..rng.usize_in(1, 3) {
            let at = rng.usize_in(0, b.len() - 5);
            b[at] = match rng.below(3) {
                0 => b[at] ^ (1 << rng.below(8)),
                1 => rng.below(small) as u8,
                _ => rng.next_u64() as u8,
            };
        }
        reseal(&mut b);
        if let Ok(m) = Model::from_bytes(&b) {
            loaded += 1;
            let raw = random_raw(&mut rng, m.n_inputs());
            let mut scratch = std::vec![0i8; m.scratch_len()];
            let mut logits = std::vec![0i8; m.n_outputs()];
            let class = m.run(&raw, &mut scratch, &mut logits).unwrap();
            assert!(class < m.n_outputs());
            let q = std::vec![0i8; m.n_inputs()];
            m.run_quantized_reference(&q, &mut scratch, &mut logits)
                .unwrap();
        }
    }
    assert!(loaded > 1000, "{loaded}");
}

#[test]
fn cnn_corruption_is_rejected_and_never_panics() {
    assert_corruption_is_rejected(&fixed_cnn().blob(), 0xC0_22, 4);
}

/// An independent check of a plan: two values alive at the same node never share a byte. Node
/// `k` reads the values `reads[k]`.
///
/// A node in place (`plan.in_place[k]`) may write its output over the input it names, which
/// must die there, and its temporary shares no byte with a value alive at its node.
pub fn assert_plan_safe(sizes: &[u64], reads: &[Vec<usize>], plan: &crate::encode::Plan) {
    let n = sizes.len();
    assert_eq!(plan.in_place.len(), reads.len());
    let start = |v: usize| v.saturating_sub(1);
    let end = |v: usize| {
        let last_read = reads.iter().rposition(|r| r.contains(&v));
        last_read
            .unwrap_or(0)
            .max(start(v))
            .max(if v == n - 1 { n - 2 } else { 0 })
    };
    let over = |a: usize, b: usize| {
        b >= 1 && plan.in_place[b - 1].is_some_and(|p| p.input == a && end(a) == b - 1)
    };
    for (k, p) in plan.in_place.iter().enumerate() {
        let Some(p) = p else { continue };
        let temp = p.temp_offset..p.temp_offset + p.temp_len;
        assert!(temp.end <= plan.arena_len);
        for v in 0..n {
            if p.temp_len > 0 && start(v) <= k && k <= end(v) {
                let bytes = plan.offsets[v]..plan.offsets[v] + sizes[v];
                assert!(
                    bytes.end <= temp.start || temp.end <= bytes.start,
                    "node {k}'s temporary and value {v} overlap: {plan:?}"
                );
            }
        }
    }
    for a in 0..n {
        assert!(plan.offsets[a] + sizes[a] <= plan.arena_len);
        for b in a + 1..n {
            if start(a) <= end(b) && start(b) <= end(a) && !over(a, b) {
                let (oa, ob) = (plan.offsets[a], plan.offsets[b]);
                assert!(
                    oa + sizes[a] <= ob || ob + sizes[b] <= oa,
                    "values {a} and {b} overlap: {sizes:?} {reads:?} {plan:?}"
                );
            }
        }
    }
    assert_eq!(plan.no_reuse_len, sizes.iter().sum::<u64>());
}

#[test]
fn planner_meets_the_lower_bound_on_chains() {
    let mut rng = Rng::new(0x91A7);
    for case in 0..20_000 {
        let n = rng.usize_in(2, 12);
        let sizes: Vec<u64> = (0..n)
            .map(|_| match rng.below(3) {
                0 => rng.range_i64(1, 4) as u64,
                1 => rng.range_i64(1, 1000) as u64,
                _ => rng.range_i64(1, 100_000) as u64,
            })
            .collect();
        let reads: Vec<Vec<usize>> = (0..n - 1).map(|k| std::vec![k]).collect();
        let plan = crate::encode::plan(&sizes, &reads);
        let bound = sizes.windows(2).map(|w| w[0] + w[1]).max().unwrap();
        assert_eq!(plan.arena_len, bound, "case {case}: {sizes:?} {plan:?}");
        assert_plan_safe(&sizes, &reads, &plan);
    }
    // an MLP 784-128-10: the input at the front, as the v1 ping-pong had it
    let plan = crate::encode::plan(&[784, 128, 10], &[[0], [1]]);
    assert_eq!(
        (plan.offsets.clone(), plan.arena_len),
        (std::vec![0, 784, 0], 912)
    );
    assert_eq!(plan.no_reuse_len, 922);
}

/// Graphs that are not chains (a node reading an earlier value, a node reading two values as an
/// `Add` does): the plan stays safe.
#[test]
fn planner_is_safe_on_graphs() {
    let mut rng = Rng::new(0x91A8);
    let mut two_inputs = 0;
    for _ in 0..5000 {
        let n = rng.usize_in(2, 12);
        let sizes: Vec<u64> = (0..n).map(|_| rng.range_i64(1, 50) as u64).collect();
        let earlier = |rng: &mut Rng, k: usize| {
            if rng.below(3) == 0 {
                rng.usize_in(0, k)
            } else {
                k
            }
        };
        let reads: Vec<Vec<usize>> = (0..n - 1)
            .map(|k| {
                let first = earlier(&mut rng, k);
                if k > 0 && rng.below(3) == 0 {
                    two_inputs += 1;
                    std::vec![first, rng.usize_in(0, k)]
                } else {
                    std::vec![first]
                }
            })
            .collect();
        let plan = crate::encode::plan(&sizes, &reads);
        assert_plan_safe(&sizes, &reads, &plan);
        // never worse than no reuse
        assert!(plan.arena_len <= plan.no_reuse_len);
    }
    assert!(two_inputs > 3000, "{two_inputs}");
}

/// A skip connection: value 1 is read by node 1 and again by the `Add` at node 3, so it stays
/// alive over nodes 1 to 3 and shares no byte with values 2, 3 and 4, which are written in
/// between. Without the second read it would die at node 1, and the planner would reuse its
/// bytes at once (checked below, so the test can fail).
#[test]
fn planner_keeps_a_skip_connection_alive_until_the_add() {
    // 0 -> conv -> 1 -> conv -> 2 -> conv -> 3 -> add(3, 1) -> 4 -> dense -> 5
    let sizes = [64u64, 100, 100, 100, 100, 10];
    let reads = [
        std::vec![0],
        std::vec![1],
        std::vec![2],
        std::vec![3, 1],
        std::vec![4],
    ];
    let plan = crate::encode::plan(&sizes, &reads);
    assert_plan_safe(&sizes, &reads, &plan);
    let range = |v: usize| plan.offsets[v]..plan.offsets[v] + sizes[v];
    for v in [2, 3, 4] {
        let (a, b) = (range(1), range(v));
        assert!(
            a.end <= b.start || b.end <= a.start,
            "value 1 {a:?} and value {v} {b:?} overlap: {plan:?}"
        );
    }
    // three values of 100 alive at node 3 (1, 3 and the output 4): at least 300 bytes
    assert!(plan.arena_len >= 300, "{plan:?}");
    // the same sizes as a chain: value 1 dies at node 1, and its bytes go to value 3
    let chain = [
        std::vec![0],
        std::vec![1],
        std::vec![2],
        std::vec![3],
        std::vec![4],
    ];
    let plain = crate::encode::plan(&sizes, &chain);
    assert_eq!(plain.arena_len, 200);
    assert_eq!(plain.offsets[1], plain.offsets[3]);
    // and the model planner reads an Add's second input from its spec
    let mut rng = Rng::new(0xADD0);
    let cnn = crate::tests::add::skip_cnn(&mut rng, [4, 4, 2], 3, true);
    let spec = cnn.spec();
    let plan = crate::encode::plan_model(&spec).unwrap();
    let sizes: Vec<u64> = cnn
        .values()
        .iter()
        .map(|(s, _)| s.iter().product::<usize>() as u64)
        .collect();
    let reads: Vec<Vec<usize>> = spec.nodes.iter().map(|n| n.reads()).collect();
    assert_eq!(reads[2], [2, 1]);
    assert_plan_safe(&sizes, &reads, &plan);
}

#[test]
fn encode_checks_the_graph() {
    let good = fixed_cnn().spec();
    let check = |f: &dyn Fn(&mut ModelSpec), expected: Error| {
        let mut spec = good.clone();
        f(&mut spec);
        assert_eq!(crate::encode::encode(&spec), Err(expected));
    };
    check(
        &|s| s.nodes[2].input = 3,
        Error::BadValueId { layer: 2, value: 3 },
    );
    check(
        &|s| {
            conv(s, 0).weights.pop();
        },
        Error::SpecLength {
            layer: 0,
            field: "weights",
            expected: 54,
            found: 53,
        },
    );
    check(
        &|s| conv(s, 1).n_outputs = 2,
        Error::ShapeMismatch {
            layer: 1,
            expected: 3,
            found: 2,
        },
    );
    check(
        &|s| conv(s, 1).kernel = [7, 3],
        Error::BadGeometry { layer: 1 },
    );
    check(
        &|s| conv(s, 0).input_zero_point ^= 1,
        Error::ZeroPointMismatch {
            layer: 0,
            expected: good.input.zero_point,
            found: good.input.zero_point ^ 1,
        },
    );
    check(
        &|s| {
            if let LayerSpec::MaxPool2d(p) = &mut s.nodes[2].layer {
                p.stride = [2, 2]; // (2 - 2) % 2 == 0 is fine, so use a kernel of 1: 1 % 2
                p.kernel = [1, 1];
            }
        },
        Error::BadGeometry { layer: 2 },
    );
    check(
        &|s| {
            if let LayerSpec::MaxPool2d(p) = &mut s.nodes[2].layer {
                p.output_zero_point ^= 1;
            }
        },
        Error::MaxPoolZeroPoint {
            layer: 2,
            input: good_zp(&good, 2),
            output: good_zp(&good, 2) ^ 1,
        },
    );
    // the dense layer must take the flattened value
    check(
        &|s| {
            if let LayerSpec::Dense(d) = &mut s.nodes[4].layer {
                d.n_inputs = 4;
            }
        },
        Error::ShapeMismatch {
            layer: 4,
            expected: 3,
            found: 4,
        },
    );
}

fn conv(s: &mut ModelSpec, k: usize) -> &mut ConvSpec {
    match &mut s.nodes[k].layer {
        LayerSpec::Conv2d(c) | LayerSpec::DepthwiseConv2d(c) => c,
        _ => panic!(),
    }
}

fn good_zp(spec: &ModelSpec, node: usize) -> i8 {
    match &spec.nodes[node].layer {
        LayerSpec::MaxPool2d(p) => p.input_zero_point,
        _ => panic!(),
    }
}

/// A `Model<KINDS>` links only its kinds: a blob with another kind is refused at load, naming
/// the layer and kind; a set that holds every kind a blob uses runs it to the same bits.
#[test]
fn layer_kind_sets_refuse_what_they_do_not_link() {
    use crate::kinds;
    let mut rng = Rng::new(0xC44_0018);
    for _ in 0..50 {
        let cnn = random_cnn(&mut rng);
        // (a dense-only program refuses an in-place plan by its version: see add.rs)
        let blob = cnn.blob_layer_by_layer();
        let all = Model::from_bytes(&blob).unwrap();
        assert_ne!(
            all.layer_kinds() & !kinds::DENSE,
            0,
            "a CNN uses more than dense layers"
        );
        let first = (0..all.n_layers())
            .find(|&k| all.layer(k).unwrap().kind != LayerKind::Dense)
            .unwrap();
        match Model::<{ kinds::DENSE }>::with_kinds(&blob) {
            Err(Error::KindNotLinked { layer, kind }) => {
                assert_eq!(usize::from(layer), first);
                assert_ne!(kind, 1);
            }
            other => panic!("expected KindNotLinked, got {other:?}"),
        }
        // a set without the dense kind refuses the CNN's dense layers, or loads it if it has none
        let no_dense = Model::<{ kinds::ALL & !kinds::DENSE }>::with_kinds(&blob);
        assert_eq!(no_dense.is_ok(), all.layer_kinds() & kinds::DENSE == 0);
    }
    let message = std::format!("{}", Error::KindNotLinked { layer: 2, kind: 3 });
    assert!(
        message.contains("layer 2") && message.contains("kinds"),
        "{message}"
    );
    // MLPs under the dense-only set: the same logits as under every kind
    for _ in 0..50 {
        let mlp = crate::tests::random_model(&mut rng, 24);
        let blob = mlp.blob();
        let all = Model::from_bytes(&blob).unwrap();
        assert_eq!(all.layer_kinds(), kinds::DENSE);
        let dense = Model::<{ kinds::DENSE }>::with_kinds(&blob).unwrap();
        let input: std::vec::Vec<i8> = (0..all.n_inputs())
            .map(|i| (i * 53 % 256) as u8 as i8)
            .collect();
        let mut scratch = std::vec![0i8; all.fast_scratch_len()];
        let (mut l1, mut l2) = (
            std::vec![0i8; all.n_outputs()],
            std::vec![0i8; all.n_outputs()],
        );
        let c1 = all.run_quantized(&input, &mut scratch, &mut l1).unwrap();
        let c2 = dense.run_quantized(&input, &mut scratch, &mut l2).unwrap();
        assert_eq!((c1, &l1), (c2, &l2));
    }
}
