//! Proves what the float CNN graph computes.
//!
//! The interpreter in `common/mod.rs` (its `Conv`, `MaxPool`, `AveragePool`,
//! `GlobalAveragePool` and `Flatten` written from the ONNX operator
//! definitions, and checked here on examples whose outputs the ONNX reference
//! implementation gives) runs the exported graph. Its outputs are compared
//! with a plain evaluation of the `CnnModel` written from
//! `docs/layer-graph.md`: CHW order, explicit zero padding, valid pooling,
//! accumulation in f64. A graph with the wrong layout, padding, grouping,
//! flatten order or normalisation would disagree.

mod common;

use common::cnn::{batch_shape, conv_taps, pool_windows, window_output, Rng};
use common::{evaluate, export_options, Tensor};
use kiln_onnx::builder::{attr_int, attr_ints, Dim, GraphBuilder};
use kiln_onnx::cnn::{cnn_to_model, CnnLayer, CnnModel};
use kiln_onnx::mlp::{decode_model, encode_model, Activation, DenseLayer, InputNormalization};
use kiln_onnx::proto::{attribute_proto::AttributeType, ModelProto};
use kiln_onnx::OnnxError;

/// Agreement demanded between the interpreter and the plain evaluation,
/// relative to the magnitude of the expected value.
const TOLERANCE: f32 = 1e-5;

// ---------------------------------------------------------------------------
// The plain evaluation of docs/layer-graph.md, one sample in CHW order.
// ---------------------------------------------------------------------------

/// One value: its numbers in CHW order and its `[c, h, w]` shape (a flat
/// vector of `n` is `[n, 1, 1]`).
#[derive(Debug, Clone)]
struct Value {
    data: Vec<f64>,
    shape: [usize; 3],
}

fn activate(activation: Activation, z: f64) -> f64 {
    match activation {
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu { alpha } => {
            if z < 0.0 {
                f64::from(alpha) * z
            } else {
                z
            }
        }
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Relu6 => z.clamp(0.0, 6.0),
        Activation::Identity => z,
    }
}

/// A convolution with `groups` groups over the taps inside the input
/// (`common::cnn::conv_taps`), accumulated in f64 from the bias.
#[allow(clippy::too_many_arguments)]
fn convolve(
    x: &Value,
    out_channels: usize,
    groups: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    weights: &[f32],
    bias: &[f32],
    activation: Activation,
) -> Value {
    let (shape, outputs) = conv_taps(x.shape, out_channels, groups, kernel, stride, pads);
    let data = outputs
        .iter()
        .map(|(o, taps)| {
            let acc = taps.iter().fold(f64::from(bias[*o]), |acc, &(i, k)| {
                acc + f64::from(weights[k]) * x.data[i]
            });
            activate(activation, acc)
        })
        .collect();
    Value { data, shape }
}

/// Valid pooling: the maximum or the mean of each window.
fn pool(x: &Value, kernel: [usize; 2], stride: [usize; 2], max: bool) -> Value {
    let (shape, windows) = pool_windows(x.shape, kernel, stride);
    let data = windows
        .iter()
        .map(|window| {
            let values = window.iter().map(|&i| x.data[i]);
            if max {
                values.fold(f64::NEG_INFINITY, f64::max)
            } else {
                values.sum::<f64>() / window.len() as f64
            }
        })
        .collect();
    Value { data, shape }
}

/// The CNN on one raw sample (CHW order); the logits.
fn plain(model: &CnnModel, normalization: &InputNormalization, sample: &[f32]) -> Vec<f64> {
    let data = match normalization {
        InputNormalization::None => sample.iter().map(|&v| f64::from(v)).collect(),
        InputNormalization::Scale { scale } => {
            sample.iter().map(|&v| f64::from(v * scale)).collect()
        }
        // In f32 as the graph's Sub and Mul, so that the tolerance measures
        // the layers and not the normalisation's rounding.
        InputNormalization::Standardize { mean, inv_std } => sample
            .iter()
            .zip(mean.iter().zip(inv_std))
            .map(|(&v, (&m, &s))| f64::from((v - m) * s))
            .collect(),
    };
    let mut x = Value {
        data,
        shape: model.input_shape,
    };
    // Every value so far: value 0 is the input, layer k writes value k + 1.
    let mut values = vec![x.clone()];
    for layer in &model.layers {
        x = match layer {
            CnnLayer::Dense(dense) => {
                // The CHW data is already the flattened vector.
                let data = (0..dense.n_outputs)
                    .map(|o| {
                        let row = &dense.weights[o * dense.n_inputs..(o + 1) * dense.n_inputs];
                        let dot = row
                            .iter()
                            .zip(&x.data)
                            .fold(f64::from(dense.bias[o]), |acc, (&w, &v)| {
                                acc + f64::from(w) * v
                            });
                        activate(dense.activation, dot)
                    })
                    .collect();
                Value {
                    data,
                    shape: [dense.n_outputs, 1, 1],
                }
            }
            CnnLayer::Conv2d {
                out_channels,
                kernel,
                stride,
                pads,
                weights,
                bias,
                activation,
                ..
            } => convolve(
                &x,
                *out_channels,
                1,
                *kernel,
                *stride,
                *pads,
                weights,
                bias,
                *activation,
            ),
            CnnLayer::DepthwiseConv2d {
                channels,
                kernel,
                stride,
                pads,
                weights,
                bias,
                activation,
            } => convolve(
                &x,
                *channels,
                *channels,
                *kernel,
                *stride,
                *pads,
                weights,
                bias,
                *activation,
            ),
            CnnLayer::MaxPool2d { kernel, stride } => pool(&x, *kernel, *stride, true),
            CnnLayer::AvgPool2d { kernel, stride } => pool(&x, *kernel, *stride, false),
            CnnLayer::GlobalAvgPool => {
                let [c, h, w] = x.shape;
                pool(&x, [h, w], [1, 1], false).tap_shape([c, 1, 1])
            }
            CnnLayer::Flatten => {
                let n = x.data.len();
                x.tap_shape([n, 1, 1])
            }
            CnnLayer::Tap { value } => values[*value].clone(),
            CnnLayer::Add { other, activation } => {
                let other = &values[*other];
                assert_eq!(other.shape, x.shape, "the operands of an Add");
                let data = x
                    .data
                    .iter()
                    .zip(&other.data)
                    .map(|(&a, &b)| activate(*activation, a + b))
                    .collect();
                Value { data, ..x }
            }
        };
        values.push(x.clone());
    }
    x.data
}

impl Value {
    fn tap_shape(self, shape: [usize; 3]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), self.data.len());
        Self { shape, ..self }
    }
}

// ---------------------------------------------------------------------------
// Random small CNNs.
// ---------------------------------------------------------------------------

/// TensorFlow's SAME padding for one axis: `(begin, end)`.
fn same_pads(size: usize, k: usize, s: usize) -> (usize, usize) {
    let out = size.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// Builds a list of layers with random parameters, tracking the shape of
/// every value (`values[k]`, value 0 the input) and of the last one.
struct Net {
    rng: Rng,
    input_shape: [usize; 3],
    spatial_rank: usize,
    shape: [usize; 3],
    flat: bool,
    layers: Vec<CnnLayer>,
    values: Vec<[usize; 3]>,
}

impl Net {
    fn new(seed: u64, input_shape: [usize; 3]) -> Self {
        Self {
            rng: Rng::new(seed),
            input_shape,
            spatial_rank: if input_shape[1] == 1 { 1 } else { 2 },
            shape: input_shape,
            flat: false,
            layers: Vec::new(),
            values: vec![input_shape],
        }
    }

    /// A fan-in-scaled amplitude keeps activations in a useful range.
    fn amplitude(fan_in: usize) -> f32 {
        1.5 / (fan_in as f32).sqrt()
    }

    fn pads(&self, kernel: [usize; 2], stride: [usize; 2], same: bool) -> [usize; 4] {
        if !same {
            return [0; 4];
        }
        let (top, bottom) = same_pads(self.shape[1], kernel[0], stride[0]);
        let (left, right) = same_pads(self.shape[2], kernel[1], stride[1]);
        [top, left, bottom, right]
    }

    fn conv(
        &mut self,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        same: bool,
        activation: Activation,
    ) -> &mut Self {
        let in_channels = self.shape[0];
        let pads = self.pads(kernel, stride, same);
        let fan_in = in_channels * kernel[0] * kernel[1];
        let weights = self
            .rng
            .values(out_channels * fan_in, Self::amplitude(fan_in));
        let bias = self.rng.values(out_channels, 0.3);
        self.layers.push(CnnLayer::Conv2d {
            out_channels,
            in_channels,
            kernel,
            stride,
            pads,
            weights,
            bias,
            activation,
        });
        self.shape = window_output(self.shape, out_channels, kernel, stride, pads);
        self.values.push(self.shape);
        self
    }

    fn depthwise(
        &mut self,
        kernel: [usize; 2],
        stride: [usize; 2],
        same: bool,
        activation: Activation,
    ) -> &mut Self {
        let channels = self.shape[0];
        let pads = self.pads(kernel, stride, same);
        let fan_in = kernel[0] * kernel[1];
        let weights = self.rng.values(channels * fan_in, Self::amplitude(fan_in));
        let bias = self.rng.values(channels, 0.3);
        self.layers.push(CnnLayer::DepthwiseConv2d {
            channels,
            kernel,
            stride,
            pads,
            weights,
            bias,
            activation,
        });
        self.shape = window_output(self.shape, channels, kernel, stride, pads);
        self.values.push(self.shape);
        self
    }

    fn pool(&mut self, kernel: [usize; 2], stride: [usize; 2], max: bool) -> &mut Self {
        self.layers.push(if max {
            CnnLayer::MaxPool2d { kernel, stride }
        } else {
            CnnLayer::AvgPool2d { kernel, stride }
        });
        self.shape = window_output(self.shape, self.shape[0], kernel, stride, [0; 4]);
        self.values.push(self.shape);
        self
    }

    fn gap(&mut self) -> &mut Self {
        self.layers.push(CnnLayer::GlobalAvgPool);
        self.shape = [self.shape[0], 1, 1];
        self.values.push(self.shape);
        self
    }

    fn flatten(&mut self) -> &mut Self {
        self.layers.push(CnnLayer::Flatten);
        self.shape = [self.shape.iter().product(), 1, 1];
        self.flat = true;
        self.values.push(self.shape);
        self
    }

    fn dense(&mut self, n_outputs: usize, activation: Activation) -> &mut Self {
        let n_inputs: usize = self.shape.iter().product();
        let amplitude = Self::amplitude(n_inputs);
        self.layers.push(CnnLayer::Dense(DenseLayer {
            n_inputs,
            n_outputs,
            weights: self.rng.values(n_inputs * n_outputs, amplitude),
            bias: self.rng.values(n_outputs, 0.3),
            activation,
        }));
        self.shape = [n_outputs, 1, 1];
        self.flat = true;
        self.values.push(self.shape);
        self
    }

    /// `Tap { value }`: the next layer reads value `value`.
    fn tap(&mut self, value: usize) -> &mut Self {
        self.layers.push(CnnLayer::Tap { value });
        self.shape = self.values[value];
        self.values.push(self.shape);
        self
    }

    /// `Add { other, activation }` of the previous value and value `other`.
    fn add(&mut self, other: usize, activation: Activation) -> &mut Self {
        assert_eq!(self.values[other], self.shape);
        self.layers.push(CnnLayer::Add { other, activation });
        self.values.push(self.shape);
        self
    }

    fn model(&self) -> CnnModel {
        CnnModel {
            input_shape: self.input_shape,
            spatial_rank: self.spatial_rank,
            layers: self.layers.clone(),
        }
    }

    fn n_features(&self) -> usize {
        self.input_shape.iter().product()
    }

    fn standardize(&mut self) -> InputNormalization {
        let n = self.n_features();
        InputNormalization::Standardize {
            mean: self.rng.values(n, 1.0),
            inv_std: self.rng.values(n, 0.5).iter().map(|v| 0.75 + v).collect(),
        }
    }

    /// Raw samples around the normalisation's mean.
    fn batch(&mut self, n: usize) -> Vec<Vec<f32>> {
        let features = self.n_features();
        (0..n).map(|_| self.rng.values(features, 2.0)).collect()
    }
}

/// The ONNX input tensor for a batch of CHW samples.
fn input_tensor(model: &CnnModel, batch: &[Vec<f32>]) -> Tensor {
    let shape = batch_shape(batch.len(), model.input_shape, model.spatial_rank);
    Tensor::f32(shape, batch.concat())
}

/// Largest relative disagreement between the graph (through the wire format)
/// and the plain evaluation, after checking the output shapes; softmax
/// outputs are checked too when present.
fn max_error(
    proto: &ModelProto,
    model: &CnnModel,
    normalization: &InputNormalization,
    batch: &[Vec<f32>],
) -> f32 {
    let proto = decode_model(&encode_model(proto)).unwrap();
    let env = evaluate(&proto, &input_tensor(model, batch));
    let logits = &env["logits"];
    let n_out = logits.shape[1];
    assert_eq!(logits.shape, [batch.len(), n_out]);
    let mut worst = 0.0f32;
    for (r, sample) in batch.iter().enumerate() {
        let want = plain(model, normalization, sample);
        assert_eq!(want.len(), n_out);
        let got = &logits.floats()[r * n_out..(r + 1) * n_out];
        let mut pairs: Vec<(f32, f64)> = got.iter().copied().zip(want.iter().copied()).collect();
        if let Some(p) = env.get("probabilities") {
            let max = want.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = want.iter().map(|v| (v - max).exp()).sum();
            let got = &p.floats()[r * n_out..(r + 1) * n_out];
            pairs.extend(
                got.iter()
                    .copied()
                    .zip(want.iter().map(|v| (v - max).exp() / sum)),
            );
        }
        for (g, w) in pairs {
            worst = worst.max(((f64::from(g) - w).abs() / w.abs().max(1.0)) as f32);
        }
    }
    worst
}

/// Exports `net` and holds the graph to the plain evaluation on a batch.
fn assert_matches(
    net: &mut Net,
    normalization: &InputNormalization,
    opset: i64,
    probabilities: bool,
) {
    let model = net.model();
    let proto = cnn_to_model(&model, normalization, &export_options(opset, probabilities)).unwrap();
    let batch = net.batch(3);
    let error = max_error(&proto, &model, normalization, &batch);
    assert!(
        error <= TOLERANCE,
        "graph and plain evaluation differ by {error} for {:?}",
        model.layers.iter().map(CnnLayer::kind).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------
// The interpreter's new operators on the ONNX reference implementation's
// outputs (onnx 1.23.2, onnx.reference.ReferenceEvaluator).
// ---------------------------------------------------------------------------

/// Runs one node on `inputs` (names `x0`, `x1`, ...) as an initializer-free
/// graph with its first input as the graph input.
fn run_node(
    op: &str,
    x: Tensor,
    initializers: &[(&str, Tensor)],
    attributes: Vec<kiln_onnx::proto::AttributeProto>,
) -> Tensor {
    let mut graph = GraphBuilder::new("one_node");
    let dims: Vec<Dim> = x.shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
    graph.input_f32("x", &dims);
    let mut names = vec!["x"];
    for (name, t) in initializers {
        let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        graph.initializer_f32(name, &dims, t.floats()).unwrap();
        names.push(name);
    }
    graph.node(op, "node", &names, &["y"], attributes);
    graph.output_f32("y", &[]);
    let model = graph
        .build(19, &export_options(19, false).producer, "")
        .unwrap();
    evaluate(&model, &x).remove("y").unwrap()
}

fn iota(shape: Vec<usize>, start: f32) -> Tensor {
    let n = shape.iter().product::<usize>();
    Tensor::f32(shape, (0..n).map(|i| start + i as f32).collect())
}

#[test]
fn interpreter_conv_matches_the_onnx_reference() {
    let ones = Tensor::f32(vec![1, 1, 3, 3], vec![1.0; 9]);
    let y = run_node(
        "Conv",
        iota(vec![1, 1, 5, 5], 0.0),
        &[("w", ones.clone())],
        vec![attr_ints("pads", &[1, 1, 1, 1])],
    );
    assert_eq!(y.shape, [1, 1, 5, 5]);
    #[rustfmt::skip]
    let want = [
        12.0, 21.0, 27.0, 33.0, 24.0,
        33.0, 54.0, 63.0, 72.0, 51.0,
        63.0, 99.0, 108.0, 117.0, 81.0,
        93.0, 144.0, 153.0, 162.0, 111.0,
        72.0, 111.0, 117.0, 123.0, 84.0,
    ];
    assert_eq!(y.floats(), want);

    // Strides and asymmetric padding (top and bottom only).
    let y = run_node(
        "Conv",
        iota(vec![1, 1, 7, 5], 0.0),
        &[("w", ones)],
        vec![
            attr_ints("pads", &[1, 0, 1, 0]),
            attr_ints("strides", &[2, 2]),
        ],
    );
    assert_eq!(y.shape, [1, 1, 4, 2]);
    assert_eq!(
        y.floats(),
        [21.0, 33.0, 99.0, 117.0, 189.0, 207.0, 171.0, 183.0]
    );

    // 1-D, two groups, a bias, padding at the beginning and stride 2.
    let x = Tensor::f32(vec![1, 2, 4], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let w = Tensor::f32(vec![2, 1, 2], vec![1.0, -1.0, 2.0, 0.5]);
    let b = Tensor::f32(vec![2], vec![0.5, -1.0]);
    let y = run_node(
        "Conv",
        x,
        &[("w", w), ("b", b)],
        vec![
            attr_int("group", 2),
            attr_ints("pads", &[1, 0]),
            attr_ints("strides", &[2]),
        ],
    );
    assert_eq!(y.shape, [1, 2, 2]);
    assert_eq!(y.floats(), [-0.5, -0.5, 1.5, 14.5]);
}

#[test]
fn interpreter_pools_match_the_onnx_reference() {
    let x = iota(vec![1, 1, 5, 5], 1.0);
    let window = |k: i64, s: i64| {
        vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
        ]
    };
    let y = run_node("MaxPool", x.clone(), &[], window(2, 2));
    assert_eq!(
        (y.shape.as_slice(), y.floats()),
        (&[1, 1, 2, 2][..], &[7.0, 9.0, 17.0, 19.0][..])
    );

    let padded = |include: i64| {
        vec![
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("pads", &[1, 1, 1, 1]),
            attr_int("count_include_pad", include),
        ]
    };
    let y = run_node("AveragePool", x.clone(), &[], padded(0));
    #[rustfmt::skip]
    let want = [
        4.0, 4.5, 5.5, 6.5, 7.0,
        6.5, 7.0, 8.0, 9.0, 9.5,
        11.5, 12.0, 13.0, 14.0, 14.5,
        16.5, 17.0, 18.0, 19.0, 19.5,
        19.0, 19.5, 20.5, 21.5, 22.0,
    ];
    assert_eq!(y.floats(), want);
    let y = run_node("AveragePool", x, &[], padded(1));
    assert!(
        (y.floats()[0] - 1.777_777_8).abs() < 1e-6,
        "{:?}",
        y.floats()
    );
    assert!(
        (y.floats()[24] - 9.777_778).abs() < 1e-6,
        "{:?}",
        y.floats()
    );
    assert_eq!(y.floats()[12], 13.0);

    // 1-D.
    let x = Tensor::f32(vec![1, 2, 4], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let y = run_node("MaxPool", x, &[], vec![attr_ints("kernel_shape", &[3])]);
    assert_eq!(
        (y.shape.as_slice(), y.floats()),
        (&[1, 2, 2][..], &[3.0, 4.0, 7.0, 8.0][..])
    );
}

#[test]
fn interpreter_global_average_pool_and_flatten() {
    let x = Tensor::f32(
        vec![2, 2, 1, 2],
        vec![1.0, 3.0, -2.0, 4.0, 0.5, 0.5, 10.0, 0.0],
    );
    let y = run_node("GlobalAveragePool", x.clone(), &[], Vec::new());
    assert_eq!(y.shape, [2, 2, 1, 1]);
    assert_eq!(y.floats(), [2.0, 1.0, 0.5, 5.0]);
    let y = run_node(
        "GlobalAveragePool",
        Tensor::f32(vec![1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 9.0]),
        &[],
        Vec::new(),
    );
    assert_eq!(
        (y.shape.as_slice(), y.floats()),
        (&[1, 2, 1][..], &[2.0, 6.0][..])
    );
    let y = run_node("Flatten", x.clone(), &[], vec![attr_int("axis", 1)]);
    assert_eq!(y.shape, [2, 4]);
    assert_eq!(y.floats(), x.floats());
}

// ---------------------------------------------------------------------------
// Exported graphs against the plain evaluation.
// ---------------------------------------------------------------------------

#[test]
fn conv_same_and_valid_with_standardization() {
    let mut net = Net::new(1, [2, 7, 6]);
    net.conv(4, [3, 3], [1, 1], true, Activation::Relu)
        .conv(3, [3, 2], [1, 1], false, Activation::Tanh)
        .dense(5, Activation::Identity);
    let normalization = net.standardize();
    for opset in [13, 17, 21] {
        assert_matches(&mut net, &normalization, opset, opset == 17);
    }
}

#[test]
fn stride_two_with_asymmetric_same_padding() {
    let mut net = Net::new(2, [1, 9, 8]);
    // SAME with an even kernel and stride 2 pads more at the end.
    net.conv(
        3,
        [4, 4],
        [2, 2],
        true,
        Activation::LeakyRelu { alpha: 0.1 },
    )
    .conv(2, [3, 3], [2, 2], false, Activation::Sigmoid)
    .conv(4, [2, 3], [1, 2], true, Activation::Relu6)
    .dense(3, Activation::Identity);
    let pads: Vec<[usize; 4]> = net
        .layers
        .iter()
        .filter_map(|l| match l {
            CnnLayer::Conv2d { pads, .. } => Some(*pads),
            _ => None,
        })
        .collect();
    assert_eq!(pads[0], [1, 1, 2, 1]);
    assert_matches(
        &mut net,
        &InputNormalization::Scale { scale: 0.5 },
        13,
        true,
    );
}

#[test]
fn depthwise_convolutions_and_global_average_pool() {
    let mut net = Net::new(3, [3, 8, 8]);
    net.conv(4, [1, 1], [1, 1], false, Activation::Relu)
        .depthwise([3, 3], [1, 1], true, Activation::Relu6)
        .depthwise([3, 3], [2, 2], true, Activation::Identity)
        .depthwise([2, 2], [1, 1], false, Activation::Tanh)
        .gap()
        .dense(5, Activation::Identity);
    let normalization = net.standardize();
    assert_matches(&mut net, &normalization, 15, false);
}

#[test]
fn max_and_average_pooling_with_explicit_flatten() {
    let mut net = Net::new(4, [2, 9, 10]);
    net.conv(3, [3, 3], [1, 1], true, Activation::Relu)
        .pool([3, 2], [3, 2], true)
        .pool([2, 3], [1, 1], false)
        .pool([1, 2], [1, 1], true)
        .flatten()
        .dense(6, Activation::Tanh)
        .dense(2, Activation::Identity);
    assert_matches(&mut net, &InputNormalization::None, 19, true);
}

#[test]
fn a_network_may_end_with_global_average_pool_and_flatten() {
    let mut net = Net::new(5, [1, 6, 6]);
    net.conv(4, [3, 3], [1, 1], false, Activation::Identity)
        .gap()
        .flatten();
    assert_matches(&mut net, &InputNormalization::None, 13, true);
}

#[test]
fn conv1d_networks() {
    let mut net = Net::new(6, [3, 1, 20]);
    net.conv(4, [1, 5], [1, 1], true, Activation::Relu)
        .pool([1, 2], [1, 2], true)
        .conv(5, [1, 3], [1, 2], false, Activation::Sigmoid)
        .depthwise([1, 3], [1, 1], true, Activation::Relu6)
        .pool([1, 2], [1, 1], false)
        .dense(4, Activation::LeakyRelu { alpha: 0.2 })
        .dense(3, Activation::Identity);
    assert_eq!(net.spatial_rank, 1);
    let normalization = net.standardize();
    assert_matches(&mut net, &normalization, 13, false);
    assert_matches(
        &mut net,
        &InputNormalization::Scale { scale: 0.25 },
        21,
        true,
    );

    let mut net = Net::new(7, [1, 1, 16]);
    net.conv(2, [1, 4], [1, 2], true, Activation::Tanh)
        .gap()
        .dense(2, Activation::Identity);
    assert_matches(&mut net, &InputNormalization::None, 17, false);
}

#[test]
fn dense_only_on_a_spatial_input_flattens_in_chw_order() {
    let mut net = Net::new(8, [3, 2, 2]);
    net.dense(4, Activation::Relu)
        .dense(2, Activation::Identity);
    let normalization = net.standardize();
    assert_matches(&mut net, &normalization, 13, true);
}

/// Random architectures: a few convolutions or pools with random kernels,
/// strides and padding, an optional global average pool, one or two dense
/// layers, random normalisation.
#[test]
fn random_small_cnns() {
    let activations = [
        Activation::Relu,
        Activation::Relu6,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::LeakyRelu { alpha: 0.05 },
        Activation::Identity,
    ];
    for seed in 0..40 {
        let mut rng = Rng::new(1000 + seed);
        let conv1d = seed % 4 == 3;
        let input = if conv1d {
            [1 + rng.below(3), 1, 8 + rng.below(12)]
        } else {
            [1 + rng.below(3), 4 + rng.below(6), 4 + rng.below(6)]
        };
        let mut net = Net::new(seed, input);
        for _ in 0..1 + rng.below(4) {
            let [_, h, w] = net.shape;
            let kernel = |rng: &mut Rng, size: usize, is_height: bool| {
                if conv1d && is_height {
                    1
                } else {
                    1 + rng.below(3.min(size))
                }
            };
            let (kh, kw) = (kernel(&mut rng, h, true), kernel(&mut rng, w, false));
            let stride = |rng: &mut Rng, is_height: bool| {
                if conv1d && is_height {
                    1
                } else {
                    1 + rng.below(2)
                }
            };
            let (sh, sw) = (stride(&mut rng, true), stride(&mut rng, false));
            let activation = activations[rng.below(activations.len())];
            let same = rng.below(2) == 0;
            match rng.below(4) {
                0 => {
                    let out = 1 + rng.below(4);
                    net.conv(out, [kh, kw], [sh, sw], same, activation);
                }
                1 => {
                    net.depthwise([kh, kw], [sh, sw], same, activation);
                }
                pool => {
                    // Valid pooling: a stride that divides `in - k`.
                    let fit = |size: usize, k: usize, s: usize| {
                        if (size - k) % s == 0 {
                            s
                        } else {
                            1
                        }
                    };
                    let stride = [fit(h, kh, sh), fit(w, kw, sw)];
                    net.pool([kh, kw], stride, pool == 2);
                }
            }
        }
        if rng.below(3) == 0 {
            net.gap();
        }
        if rng.below(2) == 0 {
            net.dense(2 + rng.below(4), activations[rng.below(activations.len())]);
        }
        net.dense(2 + rng.below(3), Activation::Identity);
        let normalization = match rng.below(3) {
            0 => InputNormalization::None,
            1 => InputNormalization::Scale { scale: 0.3 },
            _ => net.standardize(),
        };
        assert_matches(
            &mut net,
            &normalization,
            13 + (seed as i64 % 9),
            seed % 2 == 0,
        );
    }
}

/// The comparison must be able to fail: a graph that differs from the model
/// in layout, padding or normalisation is caught.
#[test]
fn a_wrong_graph_is_detected() {
    let mut net = Net::new(9, [2, 5, 5]);
    net.conv(2, [3, 3], [1, 1], true, Activation::Relu)
        .dense(3, Activation::Identity);
    let model = net.model();
    let normalization = net.standardize();
    let batch = net.batch(3);
    let check = |exported: &CnnModel, graph_normalization: &InputNormalization| {
        let proto =
            cnn_to_model(exported, graph_normalization, &export_options(13, false)).unwrap();
        max_error(&proto, &model, &normalization, &batch)
    };
    assert!(check(&model, &normalization) <= TOLERANCE);

    // Swapped weight layout: the convolution's weights read as [C][O][kh][kw].
    let mut swapped = model.clone();
    if let CnnLayer::Conv2d { weights, .. } = &mut swapped.layers[0] {
        let original = weights.clone();
        for o in 0..2 {
            for c in 0..2 {
                for k in 0..9 {
                    weights[(o * 2 + c) * 9 + k] = original[(c * 2 + o) * 9 + k];
                }
            }
        }
    }
    assert!(check(&swapped, &normalization) > 1e-3);

    // Padding at the end instead of centred.
    let mut shifted = model.clone();
    if let CnnLayer::Conv2d { pads, .. } = &mut shifted.layers[0] {
        *pads = [0, 0, 2, 2];
    }
    assert!(check(&shifted, &normalization) > 1e-3);

    // No normalisation in the graph.
    assert!(check(&model, &InputNormalization::None) > 1e-3);
}

// ---------------------------------------------------------------------------
// The graph's structure.
// ---------------------------------------------------------------------------

fn ints_attribute(node: &kiln_onnx::proto::NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute.iter().find(|a| a.name() == name).map(|a| {
        assert_eq!(a.r#type(), AttributeType::Ints);
        a.ints.clone()
    })
}

fn initializer_dims(proto: &ModelProto, name: &str) -> Vec<i64> {
    let graph = proto.graph.as_ref().unwrap();
    let t = graph.initializer.iter().find(|t| t.name() == name);
    t.unwrap_or_else(|| panic!("no initializer {name}"))
        .dims
        .clone()
}

fn input_dims(proto: &ModelProto) -> Vec<String> {
    use kiln_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
    let graph = proto.graph.as_ref().unwrap();
    let Some(type_proto::Value::TensorType(t)) = &graph.input[0].r#type.as_ref().unwrap().value
    else {
        panic!("not a tensor input");
    };
    let dims = &t.shape.as_ref().unwrap().dim;
    dims.iter()
        .map(|d| match d.value.as_ref().unwrap() {
            Value::DimValue(n) => n.to_string(),
            Value::DimParam(p) => p.clone(),
        })
        .collect()
}

#[test]
fn structure_of_a_2d_network() {
    let mut net = Net::new(10, [2, 6, 6]);
    net.conv(3, [3, 3], [1, 1], true, Activation::Relu6)
        .depthwise([3, 3], [2, 2], true, Activation::Identity)
        .pool([3, 3], [1, 1], true)
        .dense(4, Activation::Relu)
        .dense(2, Activation::Sigmoid);
    let normalization = net.standardize();
    let proto = cnn_to_model(&net.model(), &normalization, &export_options(13, true)).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let nodes: Vec<_> = graph.node.iter().map(|n| (n.op_type(), n.name())).collect();
    assert_eq!(
        nodes,
        [
            ("Sub", "normalize_sub_mean"),
            ("Mul", "normalize_mul_inv_std"),
            ("Conv", "layer0_conv"),
            ("Clip", "layer0_relu6"),
            ("Conv", "layer1_conv"),
            ("MaxPool", "layer2_maxpool"),
            ("Flatten", "layer3_flatten"),
            ("Gemm", "layer3_gemm"),
            ("Relu", "layer3_relu"),
            ("Gemm", "layer4_gemm"),
            ("Sigmoid", "layer4_sigmoid"),
            ("Softmax", "softmax"),
        ]
    );
    assert_eq!(input_dims(&proto), ["N", "2", "6", "6"]);
    assert_eq!(initializer_dims(&proto, "input_mean"), [2, 6, 6]);
    assert_eq!(initializer_dims(&proto, "input_inv_std"), [2, 6, 6]);
    assert_eq!(initializer_dims(&proto, "layer0.weight"), [3, 2, 3, 3]);
    assert_eq!(initializer_dims(&proto, "layer1.weight"), [3, 1, 3, 3]);
    assert_eq!(initializer_dims(&proto, "layer1.bias"), [3]);
    assert_eq!(initializer_dims(&proto, "layer3.weight"), [4, 3]);
    for node in graph.node.iter().filter(|n| n.op_type() == "Conv") {
        let names: Vec<_> = node.attribute.iter().map(|a| a.name()).collect();
        assert_eq!(
            names,
            ["kernel_shape", "strides", "pads", "group"],
            "{}",
            node.name()
        );
        assert_eq!(ints_attribute(node, "kernel_shape").unwrap(), [3, 3]);
    }
    let conv1 = &graph.node[4];
    assert_eq!(ints_attribute(conv1, "strides").unwrap(), [2, 2]);
    // SAME, 3x3, stride 2 on 6x6: 3x3 out, one row and column of padding at the end.
    assert_eq!(ints_attribute(conv1, "pads").unwrap(), [0, 0, 1, 1]);
    assert_eq!(conv1.attribute[3].i, Some(3), "depthwise group = channels");
    assert_eq!(graph.node[2].attribute[3].i, Some(1));
    assert_eq!(
        graph.node[3].input,
        ["layer0.linear", "layer0.clip_min", "layer0.clip_max"]
    );
    assert_eq!(graph.node[6].input, ["layer2.output"]);
    assert_eq!(graph.node[6].output, ["layer3.flattened"]);
    assert_eq!(graph.node[10].output, ["logits"]);
    let outputs: Vec<_> = graph.output.iter().map(|o| o.name()).collect();
    assert_eq!(outputs, ["logits", "probabilities"]);
    assert!(
        graph
            .doc_string()
            .starts_with("CNN 2x6x6 -> Conv2d 3x6x6 (Relu6)"),
        "{}",
        graph.doc_string()
    );
}

#[test]
fn structure_of_a_1d_network() {
    let mut net = Net::new(11, [2, 1, 12]);
    net.conv(3, [1, 4], [1, 2], true, Activation::Identity)
        .pool([1, 2], [1, 2], false)
        .gap()
        .flatten();
    let normalization = net.standardize();
    let proto = cnn_to_model(&net.model(), &normalization, &export_options(21, false)).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let ops: Vec<_> = graph.node.iter().map(|n| n.op_type()).collect();
    assert_eq!(
        ops,
        [
            "Sub",
            "Mul",
            "Conv",
            "AveragePool",
            "GlobalAveragePool",
            "Flatten"
        ]
    );
    assert_eq!(input_dims(&proto), ["N", "2", "12"]);
    assert_eq!(initializer_dims(&proto, "input_mean"), [2, 12]);
    assert_eq!(initializer_dims(&proto, "layer0.weight"), [3, 2, 4]);
    let conv = &graph.node[2];
    assert_eq!(ints_attribute(conv, "kernel_shape").unwrap(), [4]);
    assert_eq!(ints_attribute(conv, "strides").unwrap(), [2]);
    assert_eq!(ints_attribute(conv, "pads").unwrap(), [1, 1]);
    assert_eq!(conv.output, ["layer0.output"]);
    let pool = &graph.node[3];
    assert_eq!(ints_attribute(pool, "kernel_shape").unwrap(), [2]);
    assert_eq!(ints_attribute(pool, "strides").unwrap(), [2]);
    assert_eq!(graph.node[5].output, ["logits"]);
}

// ---------------------------------------------------------------------------
// Validation: every rejected description, with its message.
// ---------------------------------------------------------------------------

fn conv(in_channels: usize, out_channels: usize, kernel: [usize; 2]) -> CnnLayer {
    CnnLayer::Conv2d {
        out_channels,
        in_channels,
        kernel,
        stride: [1, 1],
        pads: [0; 4],
        weights: vec![0.5; out_channels * in_channels * kernel[0] * kernel[1]],
        bias: vec![0.1; out_channels],
        activation: Activation::Relu,
    }
}

fn dense(n_inputs: usize, n_outputs: usize) -> CnnLayer {
    CnnLayer::Dense(DenseLayer {
        n_inputs,
        n_outputs,
        weights: vec![0.25; n_inputs * n_outputs],
        bias: vec![0.0; n_outputs],
        activation: Activation::Identity,
    })
}

/// 2x5x5 -> conv 3x3 valid to 3x3x3 -> dense 27 -> 2.
fn valid_model() -> CnnModel {
    CnnModel {
        input_shape: [2, 5, 5],
        spatial_rank: 2,
        layers: vec![conv(2, 3, [3, 3]), dense(27, 2)],
    }
}

fn rejection(model: &CnnModel, normalization: &InputNormalization) -> OnnxError {
    cnn_to_model(model, normalization, &export_options(13, false)).unwrap_err()
}

fn message(model: &CnnModel) -> String {
    rejection(model, &InputNormalization::None).to_string()
}

fn with_layer(index: usize, layer: CnnLayer) -> CnnModel {
    let mut model = valid_model();
    model.layers[index] = layer;
    model
}

fn with_conv(edit: impl FnOnce(&mut CnnLayer)) -> CnnModel {
    let mut model = valid_model();
    edit(&mut model.layers[0]);
    model
}

#[test]
fn the_valid_model_exports() {
    cnn_to_model(
        &valid_model(),
        &InputNormalization::None,
        &export_options(13, false),
    )
    .unwrap();
}

#[test]
fn model_level_errors() {
    let mut model = valid_model();
    model.spatial_rank = 3;
    assert_eq!(
        message(&model),
        "CNN model: spatial_rank is 3, expected 2 (input [N, C, H, W]) or 1 (Conv1D, input [N, C, L])"
    );
    let mut model = valid_model();
    model.input_shape = [2, 0, 5];
    assert_eq!(
        message(&model),
        "CNN model: input shape 2x0x5 (CxHxW) has a zero dimension"
    );
    let mut model = valid_model();
    model.input_shape = [1 << 40, 1 << 40, 1];
    assert!(message(&model).ends_with("has more values than memory can address"));
    let mut model = valid_model();
    model.spatial_rank = 1;
    assert_eq!(
        message(&model),
        "CNN model: a Conv1D network (spatial_rank 1) needs input height 1, got input shape 2x5x5"
    );
    let mut model = valid_model();
    model.layers.clear();
    assert_eq!(message(&model), "CNN model: the model has no layers");
    let mut model = valid_model();
    model.layers.truncate(1);
    assert_eq!(
        message(&model),
        "CNN model: the last layer (layer 0, Conv2d) produces a 3x3x3 value; a CNN must end with \
         Dense or Flatten so that the logits are [N, classes]"
    );
    let mut model = valid_model();
    model.layers[1] = CnnLayer::GlobalAvgPool;
    assert!(message(&model).contains("(layer 1, GlobalAvgPool) produces a 3x1x1 value"));
}

#[test]
fn dense_errors() {
    assert_eq!(
        message(&with_layer(1, dense(26, 2))),
        "layer 1 (Dense): takes 26 inputs but its input has 27 values (3x3x3 flattened in CHW order)"
    );
    let mut model = valid_model();
    model.layers.push(dense(3, 2));
    assert_eq!(
        message(&model),
        "layer 2 (Dense): takes 3 inputs but its input has 2 values"
    );
    let mut model = valid_model();
    model.layers.insert(0, dense(49, 50));
    assert_eq!(message(&model), "layer 0 (Dense): takes 49 inputs but its input has 50 values (2x5x5 flattened in CHW order)");
    let mut bad = dense(27, 2);
    if let CnnLayer::Dense(d) = &mut bad {
        d.weights.pop();
    }
    assert_eq!(
        message(&with_layer(1, bad)),
        "layer 1: weights have 53 values, expected 2 outputs x 27 inputs = 54"
    );
    let mut bad = dense(27, 2);
    if let CnnLayer::Dense(d) = &mut bad {
        d.bias.push(0.0);
    }
    assert_eq!(
        message(&with_layer(1, bad)),
        "layer 1: bias has 3 values, expected 2"
    );
    assert!(matches!(
        rejection(&with_layer(1, dense(27, 0)), &InputNormalization::None),
        OnnxError::EmptyLayer { layer: 1, .. }
    ));
    let mut bad = dense(27, 2);
    if let CnnLayer::Dense(d) = &mut bad {
        d.weights[7] = f32::INFINITY;
    }
    assert_eq!(
        message(&with_layer(1, bad)),
        "layer 1 weights[7] is inf, expected a finite number"
    );
}

#[test]
fn spatial_layers_need_a_spatial_input() {
    let mut model = valid_model();
    model.layers.insert(1, CnnLayer::Flatten);
    model.layers.insert(
        2,
        CnnLayer::MaxPool2d {
            kernel: [1, 1],
            stride: [1, 1],
        },
    );
    assert_eq!(
        message(&model),
        "layer 2 (MaxPool2d): needs a spatial [C, H, W] input, but its input is a flat vector of 27 values"
    );
    let mut model = valid_model();
    model.layers.push(conv(2, 2, [1, 1]));
    assert!(message(&model).starts_with("layer 2 (Conv2d): needs a spatial [C, H, W] input"));
}

#[test]
fn convolution_errors() {
    assert_eq!(
        message(&with_layer(0, conv(2, 0, [3, 3]))),
        "layer 0 (Conv2d): has 0 output channels"
    );
    assert_eq!(
        message(&with_layer(0, conv(3, 3, [3, 3]))),
        "layer 0 (Conv2d): takes 3 input channels but its input has 2 (2x5x5)"
    );
    assert_eq!(
        message(&with_layer(0, conv(2, 3, [0, 3]))),
        "layer 0 (Conv2d): kernel 0x3 and stride 1x1 must be at least 1"
    );
    let model = with_conv(|l| {
        if let CnnLayer::Conv2d { stride, .. } = l {
            *stride = [1, 0];
        }
    });
    assert_eq!(
        message(&model),
        "layer 0 (Conv2d): kernel 3x3 and stride 1x0 must be at least 1"
    );
    let model = with_conv(|l| {
        if let CnnLayer::Conv2d { pads, .. } = l {
            *pads = [0, 0, 3, 0];
        }
    });
    assert_eq!(
        message(&model),
        "layer 0 (Conv2d): bottom padding 3 must be smaller than the kernel (3x3)"
    );
    let mut model = with_layer(0, conv(2, 3, [3, 6]));
    model.layers[1] = dense(3, 2);
    assert_eq!(
        message(&model),
        "layer 0 (Conv2d): a 3x6 kernel is larger than its 5x5 input (padded: 5x5)"
    );
    // Absurd padding saturates instead of overflowing.
    let model = with_conv(|l| {
        if let CnnLayer::Conv2d { kernel, pads, .. } = l {
            *kernel = [usize::MAX, 1];
            *pads = [usize::MAX - 1, 0, usize::MAX - 1, 0];
        }
    });
    assert!(
        message(&model).starts_with("layer 0 (Conv2d): weights have"),
        "{}",
        message(&model)
    );
    let model = with_conv(|l| {
        if let CnnLayer::Conv2d { weights, .. } = l {
            weights.push(0.0);
        }
    });
    assert_eq!(
        message(&model),
        "layer 0 (Conv2d): weights have 55 values, expected 3 x 2 x 3 x 3 = 54 ([out][in / group][kh][kw])"
    );
    let model = with_conv(|l| {
        if let CnnLayer::Conv2d { bias, .. } = l {
            bias.pop();
        }
    });
    assert_eq!(message(&model), "layer 0: bias has 2 values, expected 3");
    let model = with_conv(|l| {
        if let CnnLayer::Conv2d { weights, .. } = l {
            weights[40] = f32::NAN;
        }
    });
    assert_eq!(
        message(&model),
        "layer 0 weights[40] is NaN, expected a finite number"
    );
    let model = with_conv(|l| {
        if let CnnLayer::Conv2d { bias, .. } = l {
            bias[2] = f32::NEG_INFINITY;
        }
    });
    assert_eq!(
        message(&model),
        "layer 0 bias[2] is -inf, expected a finite number"
    );
    let model = with_conv(|l| {
        if let CnnLayer::Conv2d { activation, .. } = l {
            *activation = Activation::LeakyRelu { alpha: f32::NAN };
        }
    });
    assert_eq!(
        message(&model),
        "layer 0 LeakyRelu alpha is NaN, expected a finite number"
    );
}

#[test]
fn depthwise_errors() {
    let depthwise = |channels: usize, n_weights: usize| CnnLayer::DepthwiseConv2d {
        channels,
        kernel: [3, 3],
        stride: [2, 2],
        pads: [1, 1, 1, 1],
        weights: vec![0.5; n_weights],
        bias: vec![0.0; channels],
        activation: Activation::Relu6,
    };
    let mut model = valid_model();
    model.layers[0] = depthwise(2, 18);
    model.layers[1] = dense(18, 2);
    cnn_to_model(
        &model,
        &InputNormalization::None,
        &export_options(13, false),
    )
    .unwrap();
    model.layers[0] = depthwise(2, 17);
    assert_eq!(
        message(&model),
        "layer 0 (DepthwiseConv2d): weights have 17 values, expected 2 x 1 x 3 x 3 = 18 ([out][in / group][kh][kw])"
    );
    model.layers[0] = depthwise(4, 36);
    assert_eq!(
        message(&model),
        "layer 0 (DepthwiseConv2d): takes 4 input channels but its input has 2 (2x5x5)"
    );
}

#[test]
fn conv1d_errors() {
    let model = |layer: CnnLayer| CnnModel {
        input_shape: [1, 1, 10],
        spatial_rank: 1,
        layers: vec![layer, CnnLayer::Flatten],
    };
    assert_eq!(
        message(&model(conv(1, 2, [2, 3]))),
        "layer 0 (Conv2d): a Conv1D network (spatial_rank 1) needs kernel height 1 and stride \
         height 1, got kernel 2x3 and stride 1x1"
    );
    assert_eq!(
        message(&model(CnnLayer::MaxPool2d {
            kernel: [1, 2],
            stride: [2, 2]
        })),
        "layer 0 (MaxPool2d): a Conv1D network (spatial_rank 1) needs kernel height 1 and stride \
         height 1, got kernel 1x2 and stride 2x2"
    );
    let mut padded = conv(1, 2, [1, 3]);
    if let CnnLayer::Conv2d { pads, .. } = &mut padded {
        *pads = [0, 1, 0, 1];
    }
    cnn_to_model(
        &model(padded.clone()),
        &InputNormalization::None,
        &export_options(13, false),
    )
    .unwrap();
    if let CnnLayer::Conv2d { pads, .. } = &mut padded {
        *pads = [0, 1, 1, 1];
    }
    assert_eq!(
        message(&model(padded)),
        "layer 0 (Conv2d): a Conv1D network (spatial_rank 1) has no top or bottom padding, got \
         pads [0, 1, 1, 1] (top, left, bottom, right)"
    );
}

#[test]
fn pooling_errors() {
    let pooled = |layer: CnnLayer| {
        let mut model = valid_model();
        model.layers.insert(1, layer);
        model.layers[2] = CnnLayer::Flatten;
        model
    };
    cnn_to_model(
        &pooled(CnnLayer::AvgPool2d {
            kernel: [3, 1],
            stride: [1, 2],
        }),
        &InputNormalization::None,
        &export_options(13, false),
    )
    .unwrap();
    assert_eq!(
        message(&pooled(CnnLayer::AvgPool2d {
            kernel: [4, 1],
            stride: [1, 1]
        })),
        "layer 1 (AvgPool2d): a 4x1 window is larger than its 3x3 input"
    );
    assert_eq!(
        message(&pooled(CnnLayer::MaxPool2d {
            kernel: [2, 2],
            stride: [2, 2]
        })),
        "layer 1 (MaxPool2d): window 2 with stride 2 does not divide input height 3: 3 - 2 = 1 is \
         not a multiple of 2"
    );
    assert_eq!(
        message(&pooled(CnnLayer::MaxPool2d {
            kernel: [3, 2],
            stride: [1, 2]
        })),
        "layer 1 (MaxPool2d): window 2 with stride 2 does not divide input width 3: 3 - 2 = 1 is \
         not a multiple of 2"
    );
    assert_eq!(
        message(&pooled(CnnLayer::MaxPool2d {
            kernel: [0, 2],
            stride: [1, 1]
        })),
        "layer 1 (MaxPool2d): kernel 0x2 and stride 1x1 must be at least 1"
    );
}

#[test]
fn normalization_and_option_errors() {
    let model = valid_model();
    let wrong_length = InputNormalization::Standardize {
        mean: vec![0.0; 25],
        inv_std: vec![1.0; 50],
    };
    assert_eq!(
        rejection(&model, &wrong_length).to_string(),
        "input normalization: mean has 25 values, expected 50 (one per input feature)"
    );
    let mut inv_std = vec![1.0; 50];
    inv_std[49] = f32::NAN;
    let not_finite = InputNormalization::Standardize {
        mean: vec![0.0; 50],
        inv_std,
    };
    assert_eq!(
        rejection(&model, &not_finite).to_string(),
        "input normalization inv_std[49] is NaN, expected a finite number"
    );
    let scale = InputNormalization::Scale {
        scale: f32::INFINITY,
    };
    assert!(matches!(
        rejection(&model, &scale),
        OnnxError::NonFinite { .. }
    ));

    let err = cnn_to_model(
        &model,
        &InputNormalization::None,
        &export_options(22, false),
    )
    .unwrap_err();
    assert!(
        matches!(err, OnnxError::UnsupportedOpset { opset: 22 }),
        "{err:?}"
    );
    let mut opts = export_options(13, false);
    opts.metadata = vec![("k".into(), "1".into()), ("k".into(), "2".into())];
    let err = cnn_to_model(&model, &InputNormalization::None, &opts).unwrap_err();
    assert_eq!(err.to_string(), "metadata key `k` appears more than once");
}

// ---------------------------------------------------------------------------
// Skip connections: Tap and Add.
// ---------------------------------------------------------------------------

/// ResNet-8's shape at a small size: a stem, an identity block
/// (conv, conv, add the block's input, relu) and a projection block (conv
/// stride 2, conv, and a strided 1x1 conv of the block's input through a
/// Tap, added, relu), then global average pooling and the classifier.
fn resnet(seed: u64, input: [usize; 3]) -> Net {
    let mut net = Net::new(seed, input);
    net.conv(8, [3, 3], [1, 1], true, Activation::Relu) // value 1
        .conv(8, [3, 3], [1, 1], true, Activation::Relu) // value 2
        .conv(8, [3, 3], [1, 1], true, Activation::Identity) // value 3
        .add(1, Activation::Relu) // value 4
        .conv(16, [3, 3], [2, 2], true, Activation::Relu) // value 5
        .conv(16, [3, 3], [1, 1], true, Activation::Identity) // value 6
        .tap(4) // value 7
        .conv(16, [1, 1], [2, 2], false, Activation::Identity) // value 8
        .add(6, Activation::Relu) // value 9
        .gap()
        .dense(10, Activation::Identity);
    net
}

#[test]
fn residual_blocks_match_the_plain_evaluation() {
    let mut net = resnet(20, [3, 8, 8]);
    assert_eq!(net.values[9], [16, 4, 4]);
    let normalization = net.standardize();
    for opset in [13, 17, 21] {
        assert_matches(&mut net, &normalization, opset, opset == 17);
    }
    // An odd size: the stride-2 convolutions pad at the end, and the 1x1
    // shortcut (valid) still lands on the same 3x3 grid.
    let mut net = resnet(21, [1, 5, 5]);
    assert_eq!(net.values[8], [16, 3, 3]);
    assert_matches(
        &mut net,
        &InputNormalization::Scale { scale: 0.5 },
        13,
        false,
    );
}

#[test]
fn adds_of_the_input_of_flat_values_and_in_one_dimension() {
    // The input itself as the residual, a Tap of the input, and an Add of
    // two flat vectors; every activation after an Add.
    let mut net = Net::new(22, [2, 4, 4]);
    net.conv(2, [3, 3], [1, 1], true, Activation::Identity) // value 1
        .add(0, Activation::Relu6) // value 2
        .tap(0) // value 3
        .conv(2, [1, 1], [1, 1], false, Activation::Tanh) // value 4
        .add(2, Activation::LeakyRelu { alpha: 0.1 }) // value 5
        .add(5, Activation::Sigmoid) // value 6: twice value 5
        .gap()
        .dense(6, Activation::Relu) // value 8
        .dense(6, Activation::Identity) // value 9
        .add(8, Activation::Tanh) // value 10, flat
        .dense(3, Activation::Identity);
    let normalization = net.standardize();
    assert_matches(&mut net, &normalization, 13, true);

    let mut net = Net::new(23, [3, 1, 12]);
    net.conv(4, [1, 3], [1, 1], true, Activation::Relu) // value 1
        .conv(4, [1, 3], [1, 1], true, Activation::Identity) // value 2
        .add(1, Activation::Relu) // value 3
        .flatten() // value 4
        .tap(3) // value 5
        .dense(3, Activation::Identity);
    assert_eq!(net.spatial_rank, 1);
    let normalization = net.standardize();
    assert_matches(&mut net, &normalization, 15, false);
}

/// The comparison must be able to fail: an Add of the wrong value, a Tap of
/// the wrong value or a lost activation after the sum is caught.
#[test]
fn a_wrong_skip_connection_is_detected() {
    let mut net = resnet(24, [2, 6, 6]);
    let model = net.model();
    let normalization = net.standardize();
    let batch = net.batch(3);
    let check = |exported: &CnnModel| {
        let proto = cnn_to_model(exported, &normalization, &export_options(13, false)).unwrap();
        max_error(&proto, &model, &normalization, &batch)
    };
    assert!(check(&model) <= TOLERANCE);
    let edited = |edit: &dyn Fn(&mut CnnLayer), index: usize| {
        let mut wrong = model.clone();
        edit(&mut wrong.layers[index]);
        wrong
    };
    // value 2 has value 1's shape: the identity block adds the wrong one.
    let other_value = edited(
        &|l| {
            *l = CnnLayer::Add {
                other: 2,
                activation: Activation::Relu,
            }
        },
        3,
    );
    assert!(check(&other_value) > 1e-3);
    // The shortcut reads value 3 instead of the block's input, value 4.
    let other_tap = edited(&|l| *l = CnnLayer::Tap { value: 3 }, 6);
    assert!(check(&other_tap) > 1e-3);
    // No ReLU after the sum.
    let identity = edited(
        &|l| {
            *l = CnnLayer::Add {
                other: 6,
                activation: Activation::Identity,
            }
        },
        8,
    );
    assert!(check(&identity) > 1e-3);
}

#[test]
fn structure_of_a_residual_network() {
    let mut net = Net::new(25, [2, 6, 6]);
    net.conv(4, [3, 3], [1, 1], true, Activation::Relu) // layer 0, value 1
        .conv(4, [3, 3], [1, 1], true, Activation::Identity) // layer 1, value 2
        .add(1, Activation::Relu) // layer 2, value 3
        .tap(1) // layer 3, value 4
        .conv(4, [1, 1], [2, 2], false, Activation::Identity) // layer 4, value 5
        .tap(3) // layer 5, value 6
        .conv(4, [1, 1], [2, 2], false, Activation::Identity) // layer 6, value 7
        .add(5, Activation::Identity) // layer 7, value 8
        .dense(3, Activation::Identity); // layer 8
    let proto = cnn_to_model(
        &net.model(),
        &InputNormalization::None,
        &export_options(13, false),
    )
    .unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let nodes: Vec<_> = graph
        .node
        .iter()
        .map(|n| {
            (
                n.op_type(),
                n.name(),
                n.input[0].as_str(),
                n.output[0].as_str(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("Conv", "layer0_conv", "input", "layer0.linear"),
            ("Relu", "layer0_relu", "layer0.linear", "layer0.output"),
            ("Conv", "layer1_conv", "layer0.output", "layer1.output"),
            ("Add", "layer2_add", "layer1.output", "layer2.linear"),
            ("Relu", "layer2_relu", "layer2.linear", "layer2.output"),
            // No node for the Tap: the convolution reads value 1's tensor.
            ("Conv", "layer4_conv", "layer0.output", "layer4.output"),
            ("Conv", "layer6_conv", "layer2.output", "layer6.output"),
            ("Add", "layer7_add", "layer6.output", "layer7.output"),
            (
                "Flatten",
                "layer8_flatten",
                "layer7.output",
                "layer8.flattened"
            ),
            ("Gemm", "layer8_gemm", "layer8.flattened", "logits"),
        ]
    );
    assert_eq!(graph.node[3].input, ["layer1.output", "layer0.output"]);
    assert_eq!(graph.node[7].input, ["layer6.output", "layer4.output"]);
    assert!(graph.node[3].attribute.is_empty());
    assert!(
        graph.doc_string().contains(
            "-> Add with value 1 4x6x6 (Relu) -> Tap of value 1 4x6x6 -> Conv2d 4x3x3 (Identity)"
        ),
        "{}",
        graph.doc_string()
    );
}

#[test]
fn skip_connection_errors() {
    // valid_model: 2x5x5 (value 0) -> conv to 3x3x3 (value 1) -> dense 27 -> 2.
    let layers = |layers: Vec<CnnLayer>| CnnModel {
        input_shape: [2, 5, 5],
        spatial_rank: 2,
        layers,
    };
    let add = |other| CnnLayer::Add {
        other,
        activation: Activation::Relu,
    };
    let cases = [
        (
            layers(vec![
                conv(2, 3, [3, 3]),
                CnnLayer::Tap { value: 3 },
                dense(27, 2),
            ]),
            "layer 1 (Tap): reads value 3, which is not an earlier value: layer 1 can read \
             values 0 (the input) to 1 (layer k writes value k + 1)",
        ),
        // A Tap of its own output is a Tap of a value not computed yet.
        (
            layers(vec![
                conv(2, 3, [3, 3]),
                CnnLayer::Tap { value: 2 },
                dense(27, 2),
            ]),
            "layer 1 (Tap): reads value 2, which is not an earlier value: layer 1 can read \
             values 0 (the input) to 1 (layer k writes value k + 1)",
        ),
        (
            layers(vec![conv(2, 3, [3, 3]), add(17), dense(27, 2)]),
            "layer 1 (Add): reads value 17, which is not an earlier value: layer 1 can read \
             values 0 (the input) to 1 (layer k writes value k + 1)",
        ),
        (
            layers(vec![conv(2, 3, [3, 3]), add(0), dense(27, 2)]),
            "layer 1 (Add): value 0 is [2, 5, 5], the previous value [3, 3, 3]; an Add needs \
             both of one shape",
        ),
        (
            layers(vec![
                conv(2, 3, [3, 3]),
                CnnLayer::Flatten,
                add(1),
                dense(27, 2),
            ]),
            "layer 2 (Add): value 1 is [3, 3, 3], the previous value [27] (flat); an Add \
             needs both of one shape",
        ),
        (
            layers(vec![
                conv(2, 3, [3, 3]),
                dense(27, 2),
                CnnLayer::Tap { value: 2 },
            ]),
            "layer 2 (Tap): is the last layer, but a Tap computes nothing; the logits must be \
             a layer's own output",
        ),
        // The Tap's value is what the next layer reads: the 2x5x5 input.
        (
            layers(vec![
                conv(2, 3, [3, 3]),
                CnnLayer::Tap { value: 0 },
                dense(27, 2),
            ]),
            "layer 2 (Dense): takes 27 inputs but its input has 50 values (2x5x5 flattened in \
             CHW order)",
        ),
        (
            layers(vec![
                conv(2, 3, [3, 3]),
                conv(3, 3, [1, 1]),
                CnnLayer::Add {
                    other: 1,
                    activation: Activation::LeakyRelu { alpha: f32::NAN },
                },
                dense(27, 2),
            ]),
            "layer 2 LeakyRelu alpha is NaN, expected a finite number",
        ),
    ];
    for (index, (model, expected)) in cases.iter().enumerate() {
        assert_eq!(message(model), *expected, "case {index}");
    }
    // The same graph with an in-range Add exports.
    let model = layers(vec![
        conv(2, 3, [3, 3]),
        conv(3, 3, [1, 1]),
        add(1),
        dense(27, 2),
    ]);
    cnn_to_model(
        &model,
        &InputNormalization::None,
        &export_options(13, false),
    )
    .unwrap();
}
