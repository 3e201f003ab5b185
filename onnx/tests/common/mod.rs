//! A small ONNX interpreter shared by the integration tests.
//!
//! It executes a decoded `ModelProto` node by node, following the ONNX
//! operator definitions (attributes, defaults, broadcasting, rounding), so the
//! tests can prove what an exported graph computes without an ONNX runtime.
//! It knows exactly the operators Kiln writes and fails loudly on anything
//! else, including unknown attributes.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

pub mod cnn;
pub mod int8;

use std::collections::HashMap;

use kiln_onnx::builder::Producer;
use kiln_onnx::mlp::MlpExportOptions;
use kiln_onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, type_proto, ModelProto, NodeProto,
    TensorProto,
};

/// A tensor's elements, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I8(Vec<i8>),
    I32(Vec<i32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    fn checked(shape: Vec<usize>, data: Data, len: usize) -> Self {
        assert_eq!(shape.iter().product::<usize>(), len, "bad tensor {shape:?}");
        Self { shape, data }
    }

    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        let len = data.len();
        Self::checked(shape, Data::F32(data), len)
    }

    pub fn i8(shape: Vec<usize>, data: Vec<i8>) -> Self {
        let len = data.len();
        Self::checked(shape, Data::I8(data), len)
    }

    pub fn i32(shape: Vec<usize>, data: Vec<i32>) -> Self {
        let len = data.len();
        Self::checked(shape, Data::I32(data), len)
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn floats(&self) -> &[f32] {
        match &self.data {
            Data::F32(v) => v,
            other => panic!("expected a FLOAT tensor, got {}", type_name(other)),
        }
    }

    pub fn int8s(&self) -> &[i8] {
        match &self.data {
            Data::I8(v) => v,
            other => panic!("expected an INT8 tensor, got {}", type_name(other)),
        }
    }

    pub fn int32s(&self) -> &[i32] {
        match &self.data {
            Data::I32(v) => v,
            other => panic!("expected an INT32 tensor, got {}", type_name(other)),
        }
    }

    /// Elementwise map of a FLOAT tensor.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Self {
        Self::f32(
            self.shape.clone(),
            self.floats().iter().map(|&v| f(v)).collect(),
        )
    }
}

fn type_name(data: &Data) -> &'static str {
    match data {
        Data::F32(_) => "FLOAT",
        Data::I8(_) => "INT8",
        Data::I32(_) => "INT32",
    }
}

/// Export options with a test producer and no metadata.
pub fn export_options(opset: i64, with_probabilities: bool) -> MlpExportOptions {
    MlpExportOptions {
        opset,
        with_probabilities,
        producer: Producer {
            name: "kiln".to_owned(),
            version: "test".to_owned(),
        },
        doc_string: String::new(),
        metadata: Vec::new(),
    }
}

/// Reads the node's attributes, failing on any the interpreter does not know
/// so that a misspelt or unexpected attribute cannot go unnoticed.
pub struct Attributes<'a> {
    node: &'a NodeProto,
}

impl Attributes<'_> {
    fn check_known(&self, known: &[&str]) {
        for a in &self.node.attribute {
            assert!(
                known.contains(&a.name()),
                "node {}: unexpected attribute {}",
                self.node.name(),
                a.name()
            );
        }
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        match self.node.attribute.iter().find(|a| a.name() == name) {
            None => default,
            Some(a) => {
                assert_eq!(a.r#type(), AttributeType::Int, "attribute {name} type");
                a.i.expect("INT attribute without a value")
            }
        }
    }

    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name() == name)
            .map(|a| {
                assert_eq!(a.r#type(), AttributeType::Ints, "attribute {name} type");
                a.ints.clone()
            })
    }

    fn string(&self, name: &str) -> Option<String> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name() == name)
            .map(|a| {
                assert_eq!(a.r#type(), AttributeType::String, "attribute {name} type");
                String::from_utf8(a.s().to_vec()).expect("UTF-8 string attribute")
            })
    }

    fn float(&self, name: &str, default: f32) -> f32 {
        match self.node.attribute.iter().find(|a| a.name() == name) {
            None => default,
            Some(a) => {
                assert_eq!(a.r#type(), AttributeType::Float, "attribute {name} type");
                a.f.expect("FLOAT attribute without a value")
            }
        }
    }
}

/// Numpy-style multidirectional broadcasting of FLOAT tensors, as ONNX `Mul`,
/// `Sub` and `Add` use.
pub fn broadcast(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
    let rank = a.shape.len().max(b.shape.len());
    let pad = |s: &[usize]| {
        let mut padded = vec![1; rank - s.len()];
        padded.extend_from_slice(s);
        padded
    };
    let (sa, sb) = (pad(&a.shape), pad(&b.shape));
    let shape: Vec<usize> = sa
        .iter()
        .zip(&sb)
        .map(|(&x, &y)| {
            assert!(
                x == y || x == 1 || y == 1,
                "cannot broadcast {:?} with {:?}",
                a.shape,
                b.shape
            );
            x.max(y)
        })
        .collect();
    let offset = |s: &[usize], index: &[usize]| {
        s.iter()
            .zip(index)
            .fold(0, |acc, (&d, &i)| acc * d + if d == 1 { 0 } else { i })
    };
    let (da, db) = (a.floats(), b.floats());
    let total: usize = shape.iter().product();
    let mut data = Vec::with_capacity(total);
    let mut index = vec![0; rank];
    for _ in 0..total {
        data.push(f(da[offset(&sa, &index)], db[offset(&sb, &index)]));
        for axis in (0..rank).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Tensor::f32(shape, data)
}

fn gemm(attrs: &Attributes<'_>, a: &Tensor, b: &Tensor, c: Option<&Tensor>) -> Tensor {
    attrs.check_known(&["transA", "transB", "alpha", "beta"]);
    assert_eq!(attrs.int("transA", 0), 0, "transA is not used by Kiln");
    let trans_b = attrs.int("transB", 0) != 0;
    let alpha = attrs.float("alpha", 1.0);
    let beta = attrs.float("beta", 1.0);
    let (m, k) = (a.shape[0], a.shape[1]);
    let (kb, n) = if trans_b {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    assert_eq!(
        k, kb,
        "Gemm inner dimensions differ: A {:?}, B {:?}",
        a.shape, b.shape
    );
    let (da, db) = (a.floats(), b.floats());
    let b_at = |kk: usize, nn: usize| {
        if trans_b {
            db[nn * k + kk]
        } else {
            db[kk * n + nn]
        }
    };
    let mut y = vec![0.0; m * n];
    for mm in 0..m {
        for nn in 0..n {
            let mut acc = 0.0f32;
            for kk in 0..k {
                acc += da[mm * k + kk] * b_at(kk, nn);
            }
            y[mm * n + nn] = alpha * acc;
        }
    }
    let y = Tensor::f32(vec![m, n], y);
    match c {
        None => y,
        // C is unidirectionally broadcast to [M, N].
        Some(c) => {
            let out = broadcast(&y, &c.map(|v| beta * v), |p, q| p + q);
            assert_eq!(
                out.shape,
                [m, n],
                "Gemm C {:?} does not broadcast to [M, N]",
                c.shape
            );
            out
        }
    }
}

/// The sliding-window geometry shared by `Conv`, `MaxPool` and
/// `AveragePool`, from the attributes the ONNX operators define: one entry
/// per spatial axis, `pads` as `[begin..., end...]`. A 1-D window is lifted
/// to 2-D (height 1, kernel 1, stride 1, no padding) so one loop serves both.
struct Window {
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    /// `[top, left, bottom, right]`.
    pads: [usize; 4],
}

impl Window {
    /// Reads the window attributes of a node whose input `x` is
    /// `[N, C, D1 (, D2)]`. `kernel` is `kernel_shape` when the operator
    /// does not infer it from a weight tensor.
    fn read(attrs: &Attributes<'_>, x: &Tensor, kernel: Option<Vec<i64>>) -> Self {
        let spatial = x.shape.len() - 2;
        assert!(
            spatial == 1 || spatial == 2,
            "node {}: {spatial} spatial axes",
            attrs.node.name()
        );
        let auto_pad = attrs.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
        assert_eq!(auto_pad, "NOTSET", "auto_pad is not supported");
        let kernel = kernel
            .or_else(|| attrs.ints("kernel_shape"))
            .expect("kernel_shape is required");
        let ones = vec![1; spatial];
        let strides = attrs.ints("strides").unwrap_or_else(|| ones.clone());
        let dilations = attrs.ints("dilations").unwrap_or_else(|| ones.clone());
        let pads = attrs.ints("pads").unwrap_or_else(|| vec![0; 2 * spatial]);
        for (name, v, len) in [
            ("kernel_shape", &kernel, spatial),
            ("strides", &strides, spatial),
            ("dilations", &dilations, spatial),
            ("pads", &pads, 2 * spatial),
        ] {
            assert_eq!(v.len(), len, "node {}: {name} {v:?}", attrs.node.name());
            assert!(
                v.iter().all(|&e| e >= 0),
                "node {}: {name} {v:?}",
                attrs.node.name()
            );
        }
        let u = |v: i64| usize::try_from(v).unwrap();
        let lift = |v: &[i64], fill: usize| -> [usize; 2] {
            if spatial == 2 {
                [u(v[0]), u(v[1])]
            } else {
                [fill, u(v[0])]
            }
        };
        let pads = if spatial == 2 {
            [u(pads[0]), u(pads[1]), u(pads[2]), u(pads[3])]
        } else {
            [0, u(pads[0]), 0, u(pads[1])]
        };
        Self {
            kernel: lift(&kernel, 1),
            strides: lift(&strides, 1),
            dilations: lift(&dilations, 1),
            pads,
        }
    }

    /// `floor((in + pad_begin + pad_end - ((k - 1) d + 1)) / s) + 1` per
    /// axis (`ceil_mode = 0`).
    fn output_size(&self, h: usize, w: usize) -> [usize; 2] {
        let axis = |size: usize, a: usize| {
            let padded = size + self.pads[a] + self.pads[a + 2];
            let extent = (self.kernel[a] - 1) * self.dilations[a] + 1;
            assert!(
                padded >= extent,
                "window {extent} larger than the padded input {padded}"
            );
            (padded - extent) / self.strides[a] + 1
        };
        [axis(h, 0), axis(w, 1)]
    }

    /// The input positions `(iy, ix)` of output `(oy, ox)`'s taps
    /// `(ky, kx)`, `None` for a tap in the padding.
    fn tap(
        &self,
        oy: usize,
        ox: usize,
        ky: usize,
        kx: usize,
        h: usize,
        w: usize,
    ) -> Option<(usize, usize)> {
        let iy = (oy * self.strides[0] + ky * self.dilations[0]).checked_sub(self.pads[0])?;
        let ix = (ox * self.strides[1] + kx * self.dilations[1]).checked_sub(self.pads[1])?;
        (iy < h && ix < w).then_some((iy, ix))
    }
}

/// `[N, C, D1 (, D2)]` as `(n, c, h, w)`, with `h = 1` for one spatial axis.
fn nchw(x: &Tensor) -> (usize, usize, usize, usize) {
    match x.shape[..] {
        [n, c, l] => (n, c, 1, l),
        [n, c, h, w] => (n, c, h, w),
        ref other => panic!("expected [N, C, L] or [N, C, H, W], got {other:?}"),
    }
}

/// The output shape `[n, c, oh, ow]` in the input's rank.
fn spatial_shape(x: &Tensor, n: usize, c: usize, [oh, ow]: [usize; 2]) -> Vec<usize> {
    if x.shape.len() == 3 {
        assert_eq!(oh, 1);
        vec![n, c, ow]
    } else {
        vec![n, c, oh, ow]
    }
}

/// `Conv`: `y[n][m][oy][ox] = B[m] + sum over the group's channels and the
/// taps inside the input of W[m][c'][ky][kx] x[n][g C/group + c'][iy][ix]`.
fn conv(attrs: &Attributes<'_>, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    attrs.check_known(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ]);
    let (n, c, h, w) = nchw(x);
    assert_eq!(weight.shape.len(), x.shape.len(), "W and X ranks differ");
    let m = weight.shape[0];
    let group = usize::try_from(attrs.int("group", 1)).unwrap();
    assert!(
        group >= 1 && c % group == 0 && m % group == 0,
        "group {group}"
    );
    let c_per_group = c / group;
    assert_eq!(
        weight.shape[1], c_per_group,
        "W's second axis must be C / group"
    );
    let inferred: Vec<i64> = weight.shape[2..].iter().map(|&k| k as i64).collect();
    if let Some(kernel) = attrs.ints("kernel_shape") {
        assert_eq!(kernel, inferred, "kernel_shape differs from W's shape");
    }
    let window = Window::read(attrs, x, Some(inferred));
    let [oh, ow] = window.output_size(h, w);
    let [kh, kw] = window.kernel;
    if let Some(b) = bias {
        assert_eq!(b.shape, [m], "B must be [M]");
    }
    let (xs, ws) = (x.floats(), weight.floats());
    let mut y = Vec::with_capacity(n * m * oh * ow);
    for b in 0..n {
        for o in 0..m {
            let g = o / (m / group);
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |t| t.floats()[o]);
                    for ci in 0..c_per_group {
                        let channel = g * c_per_group + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                if let Some((iy, ix)) = window.tap(oy, ox, ky, kx, h, w) {
                                    let xv = xs[((b * c + channel) * h + iy) * w + ix];
                                    let wv = ws[((o * c_per_group + ci) * kh + ky) * kw + kx];
                                    acc += wv * xv;
                                }
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
    Tensor::f32(spatial_shape(x, n, m, [oh, ow]), y)
}

/// `MaxPool` and `AveragePool` (`ceil_mode = 0`): the maximum, or the mean
/// over the taps inside the input (`count_include_pad = 0`) or over the
/// whole window (`count_include_pad = 1`).
fn pool(attrs: &Attributes<'_>, x: &Tensor, max: bool) -> Tensor {
    let own = if max {
        "storage_order"
    } else {
        "count_include_pad"
    };
    attrs.check_known(&[
        "auto_pad",
        "ceil_mode",
        "dilations",
        "kernel_shape",
        "pads",
        "strides",
        own,
    ]);
    assert_eq!(attrs.int("ceil_mode", 0), 0, "ceil_mode is not supported");
    let include_pad = attrs.int("count_include_pad", 0) != 0;
    let (n, c, h, w) = nchw(x);
    let window = Window::read(attrs, x, None);
    let [oh, ow] = window.output_size(h, w);
    let [kh, kw] = window.kernel;
    let xs = x.floats();
    let mut y = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let taps: Vec<f32> = (0..kh)
                    .flat_map(|ky| (0..kw).map(move |kx| (ky, kx)))
                    .filter_map(|(ky, kx)| window.tap(oy, ox, ky, kx, h, w))
                    .map(|(iy, ix)| xs[(plane * h + iy) * w + ix])
                    .collect();
                assert!(!taps.is_empty(), "a window entirely in the padding");
                y.push(if max {
                    taps.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                } else {
                    let count = if include_pad { kh * kw } else { taps.len() };
                    taps.iter().sum::<f32>() / count as f32
                });
            }
        }
    }
    Tensor::f32(spatial_shape(x, n, c, [oh, ow]), y)
}

/// `GlobalAveragePool`: the mean of each `[n][c]` plane, spatial axes kept
/// with size 1.
fn global_average_pool(attrs: &Attributes<'_>, x: &Tensor) -> Tensor {
    attrs.check_known(&[]);
    let (n, c, h, w) = nchw(x);
    let y = x
        .floats()
        .chunks(h * w)
        .map(|plane| plane.iter().sum::<f32>() / (h * w) as f32)
        .collect();
    let mut shape = vec![n, c];
    shape.resize(x.shape.len(), 1);
    Tensor::f32(shape, y)
}

/// `Flatten`: `[d0, ..., dk-1, dk, ...] -> [d0 ... dk-1, dk ...]`, data
/// unchanged (row-major), any element type.
fn flatten(attrs: &Attributes<'_>, x: &Tensor) -> Tensor {
    attrs.check_known(&["axis"]);
    let rank = x.shape.len() as i64;
    let axis = attrs.int("axis", 1);
    let axis = usize::try_from(if axis < 0 { axis + rank } else { axis }).unwrap();
    let outer = x.shape[..axis].iter().product();
    let inner = x.shape[axis..].iter().product();
    Tensor {
        shape: vec![outer, inner],
        data: x.data.clone(),
    }
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    strides
}

/// `Transpose` of a FLOAT tensor: output axis k is input axis `perm[k]` (reversed by default).
fn transpose(attrs: &Attributes<'_>, x: &Tensor) -> Tensor {
    attrs.check_known(&["perm"]);
    let rank = x.shape.len();
    let perm: Vec<usize> = attrs.ints("perm").map_or_else(
        || (0..rank).rev().collect(),
        |p| p.iter().map(|&a| usize::try_from(a).unwrap()).collect(),
    );
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..rank).collect::<Vec<_>>(), "perm {perm:?}");
    let shape: Vec<usize> = perm.iter().map(|&a| x.shape[a]).collect();
    let (in_strides, out_strides) = (strides(&x.shape), strides(&shape));
    let values = x.floats();
    let data = (0..values.len())
        .map(|flat| {
            let source: usize = (0..rank)
                .map(|k| flat / out_strides[k] % shape[k] * in_strides[perm[k]])
                .sum();
            values[source]
        })
        .collect();
    Tensor::f32(shape, data)
}

/// `ReduceMean` (opset 13: `axes` an attribute) of a FLOAT tensor, summed in f64.
fn reduce_mean(attrs: &Attributes<'_>, x: &Tensor) -> Tensor {
    attrs.check_known(&["axes", "keepdims"]);
    let rank = x.shape.len();
    let axes: Vec<usize> = attrs
        .ints("axes")
        .expect("ReduceMean without axes")
        .iter()
        .map(|&a| usize::try_from(if a < 0 { a + rank as i64 } else { a }).unwrap())
        .collect();
    let kept: Vec<usize> = (0..rank)
        .map(|k| if axes.contains(&k) { 1 } else { x.shape[k] })
        .collect();
    let (in_strides, kept_strides) = (strides(&x.shape), strides(&kept));
    let count: usize = axes.iter().map(|&a| x.shape[a]).product();
    let mut sums = vec![0.0f64; kept.iter().product()];
    for (flat, &v) in x.floats().iter().enumerate() {
        let target: usize = (0..rank)
            .filter(|k| !axes.contains(k))
            .map(|k| flat / in_strides[k] % x.shape[k] * kept_strides[k])
            .sum();
        sums[target] += f64::from(v);
    }
    let data = sums.iter().map(|s| (s / count as f64) as f32).collect();
    let shape = if attrs.int("keepdims", 1) == 0 {
        (0..rank)
            .filter(|k| !axes.contains(k))
            .map(|k| x.shape[k])
            .collect()
    } else {
        kept
    };
    Tensor::f32(shape, data)
}

/// `Clip` (opset 11 and later): bounds as optional scalar inputs.
fn clip(attrs: &Attributes<'_>, x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Tensor {
    attrs.check_known(&[]);
    let bound = |t: Option<&Tensor>, default: f32| {
        t.map_or(default, |t| {
            assert!(t.shape.is_empty(), "Clip bounds are scalars");
            t.floats()[0]
        })
    };
    let (lo, hi) = (bound(lo, f32::NEG_INFINITY), bound(hi, f32::INFINITY));
    x.map(|v| v.max(lo).min(hi))
}

fn softmax(attrs: &Attributes<'_>, x: &Tensor) -> Tensor {
    attrs.check_known(&["axis"]);
    let rank = x.shape.len() as i64;
    let axis = attrs.int("axis", -1);
    let axis = if axis < 0 { axis + rank } else { axis };
    assert_eq!(axis, rank - 1, "only the last axis is supported");
    let width = *x.shape.last().unwrap();
    let mut y = x.floats().to_vec();
    for row in y.chunks_mut(width) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
    Tensor::f32(x.shape.clone(), y)
}

/// Which scale and zero point apply to each element of `x`: one pair for a
/// scalar (rank-0) scale, or one per index along `axis` for a 1-D scale, as
/// QuantizeLinear and DequantizeLinear (opset 13) define it.
fn param_index(
    attrs: &Attributes<'_>,
    x: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
) -> impl Fn(usize) -> usize {
    attrs.check_known(&["axis"]);
    if let Some(zp) = zero_point {
        assert_eq!(
            zp.shape,
            scale.shape,
            "node {}: zero point and scale shapes differ",
            attrs.node.name()
        );
    }
    let (stride, size) = match scale.shape.len() {
        0 => (1, 1),
        1 => {
            let rank = x.shape.len() as i64;
            let axis = attrs.int("axis", 1);
            let axis = usize::try_from(if axis < 0 { axis + rank } else { axis })
                .expect("axis out of range");
            assert!(
                axis < x.shape.len(),
                "node {}: axis {axis} out of range",
                attrs.node.name()
            );
            assert_eq!(
                scale.shape[0],
                x.shape[axis],
                "node {}: per-axis scale length must equal the axis size",
                attrs.node.name()
            );
            (x.shape[axis + 1..].iter().product(), x.shape[axis])
        }
        _ => panic!("node {}: scale must be a scalar or 1-D", attrs.node.name()),
    };
    move |k| (k / stride) % size
}

/// `y = saturate(round_half_even(x / y_scale) + y_zero_point)`, with the
/// division done in f32 as the ONNX reference does (not a multiplication by
/// the reciprocal, which rounds differently near ties).
pub fn quantize_linear(
    attrs: &Attributes<'_>,
    x: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
) -> Tensor {
    let zero_point =
        zero_point.expect("Kiln always writes the zero point, which fixes the output type");
    let which = param_index(attrs, x, scale, Some(zero_point));
    let (xs, scales, zps) = (x.floats(), scale.floats(), zero_point.int8s());
    let data = xs
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            assert!(!v.is_nan(), "node {}: NaN input", attrs.node.name());
            let p = which(k);
            let rounded = (v / scales[p]).round_ties_even();
            // Integer-valued, so adding the zero point in f64 is exact.
            (f64::from(rounded) + f64::from(zps[p])).clamp(-128.0, 127.0) as i8
        })
        .collect();
    Tensor::i8(x.shape.clone(), data)
}

/// `y = (x - x_zero_point) * x_scale`: the integer difference converted to
/// f32, then one f32 multiplication.
pub fn dequantize_linear(
    attrs: &Attributes<'_>,
    x: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
) -> Tensor {
    let which = param_index(attrs, x, scale, zero_point);
    let scales = scale.floats();
    let centered: Vec<i64> = match &x.data {
        Data::I8(xs) => {
            let zps = zero_point.map(Tensor::int8s);
            xs.iter()
                .enumerate()
                .map(|(k, &q)| i64::from(q) - zps.map_or(0, |z| i64::from(z[which(k)])))
                .collect()
        }
        Data::I32(xs) => {
            let zps = zero_point.map(Tensor::int32s);
            xs.iter()
                .enumerate()
                .map(|(k, &q)| i64::from(q) - zps.map_or(0, |z| i64::from(z[which(k)])))
                .collect()
        }
        Data::F32(_) => panic!(
            "node {}: DequantizeLinear of a FLOAT tensor",
            attrs.node.name()
        ),
    };
    let data = centered
        .iter()
        .enumerate()
        .map(|(k, &c)| c as f32 * scales[which(k)])
        .collect();
    Tensor::f32(x.shape.clone(), data)
}

/// Decodes an initializer stored as little-endian `raw_data`.
pub fn tensor_from_proto(t: &TensorProto) -> Tensor {
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).unwrap())
        .collect();
    let raw = t.raw_data();
    let data_type = DataType::try_from(t.data_type()).expect("unknown data type");
    match data_type {
        DataType::Float => Tensor::f32(
            shape,
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        DataType::Int8 => Tensor::i8(shape, raw.iter().map(|&b| b as i8).collect()),
        DataType::Int32 => Tensor::i32(
            shape,
            raw.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        other => panic!("initializer {}: unsupported type {other:?}", t.name()),
    }
}

/// Executes the graph on `input` and returns every tensor it defines,
/// including intermediate ones.
pub fn evaluate(model: &ModelProto, input: &Tensor) -> HashMap<String, Tensor> {
    let graph = model.graph.as_ref().expect("model has no graph");
    assert_eq!(graph.input.len(), 1);
    let mut env: HashMap<String, Tensor> = HashMap::new();
    env.insert(graph.input[0].name().to_owned(), input.clone());
    for t in &graph.initializer {
        env.insert(t.name().to_owned(), tensor_from_proto(t));
    }
    for node in &graph.node {
        assert_eq!(
            node.domain(),
            "",
            "node {} is outside the default domain",
            node.name()
        );
        let arg = |i: usize| -> &Tensor {
            env.get(&node.input[i])
                .unwrap_or_else(|| panic!("node {} reads undefined {}", node.name(), node.input[i]))
        };
        let optional = |i: usize| node.input.get(i).filter(|s| !s.is_empty()).map(|_| arg(i));
        let attrs = Attributes { node };
        let unary = |f: fn(f32) -> f32| {
            attrs.check_known(&[]);
            arg(0).map(f)
        };
        let out = match node.op_type() {
            "Gemm" => gemm(&attrs, arg(0), arg(1), optional(2)),
            "Identity" => unary(|v| v),
            "Relu" => unary(|v| v.max(0.0)),
            "Tanh" => unary(f32::tanh),
            "Sigmoid" => unary(|v| 1.0 / (1.0 + (-v).exp())),
            "LeakyRelu" => {
                attrs.check_known(&["alpha"]);
                let alpha = attrs.float("alpha", 0.01);
                arg(0).map(|v| if v < 0.0 { alpha * v } else { v })
            }
            "Mul" => {
                attrs.check_known(&[]);
                broadcast(arg(0), arg(1), |p, q| p * q)
            }
            "Sub" => {
                attrs.check_known(&[]);
                broadcast(arg(0), arg(1), |p, q| p - q)
            }
            "Add" => {
                attrs.check_known(&[]);
                broadcast(arg(0), arg(1), |p, q| p + q)
            }
            "Softmax" => softmax(&attrs, arg(0)),
            "Clip" => clip(&attrs, arg(0), optional(1), optional(2)),
            "Conv" => conv(&attrs, arg(0), arg(1), optional(2)),
            "MaxPool" => pool(&attrs, arg(0), true),
            "AveragePool" => pool(&attrs, arg(0), false),
            "GlobalAveragePool" => global_average_pool(&attrs, arg(0)),
            "Flatten" => flatten(&attrs, arg(0)),
            "Transpose" => transpose(&attrs, arg(0)),
            "ReduceMean" => reduce_mean(&attrs, arg(0)),
            "QuantizeLinear" => quantize_linear(&attrs, arg(0), arg(1), optional(2)),
            "DequantizeLinear" => dequantize_linear(&attrs, arg(0), arg(1), optional(2)),
            other => panic!("the interpreter does not know {other}"),
        };
        assert_eq!(node.output.len(), 1);
        env.insert(node.output[0].clone(), out);
    }
    for output in &graph.output {
        let value = env
            .get(output.name())
            .unwrap_or_else(|| panic!("graph output {} missing", output.name()));
        // The declared element type must be what the graph computes.
        let declared = match &output.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t.elem_type(),
            other => panic!("graph output {} is not a tensor: {other:?}", output.name()),
        };
        let actual = match value.data {
            Data::F32(_) => DataType::Float as i32,
            Data::I8(_) => DataType::Int8 as i32,
            Data::I32(_) => DataType::Int32 as i32,
        };
        assert_eq!(declared, actual, "graph output {} type", output.name());
    }
    env
}
