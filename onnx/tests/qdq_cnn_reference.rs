//! Proves what the int8 QDQ CNN graph computes.
//!
//! The interpreter in `common/mod.rs` runs the exported graph (QuantizeLinear
//! with f32 division and round half to even, per-axis DequantizeLinear, and
//! the float `Conv` and pooling operators). Its int8 tensors are compared
//! with an integer computation written from the int8 arithmetic of
//! `docs/layer-graph.md` (exact accumulators over the taps inside the input,
//! `rq` requantization, the ReLU clamp, 256-entry tables, the maximum of a
//! window, window sums with one multiplier `s_in / (s_out kh kw)`):
//!
//! - with power-of-two scales and power-of-two window sizes every float
//!   step of the graph is exact, so graph and integers agree bit for bit,
//!   end to end;
//! - with general scales each layer, fed the graph's own int8 input, agrees
//!   within one step.
//!
//! The integer computation starts from the graph's `input_q`: the input
//! normalisation and quantization are the MLP's nodes, proved in
//! `qdq_reference.rs`.

mod common;

use std::collections::HashMap;

use common::cnn::{batch_shape, conv_taps, pool_windows, window_output, Rng};
use common::int8::{effective, multiplier, rq, sat8, table, Coverage};
use common::{evaluate, export_options, Tensor};
use kiln_onnx::mlp::{
    decode_model, encode_model, Activation, InputNormalization, MlpExportOptions,
};
use kiln_onnx::proto::{tensor_proto::DataType, ModelProto};
use kiln_onnx::qdq::{QdqActivation, QdqLayer, QuantParams};
use kiln_onnx::qdq_cnn::{qdq_cnn_to_model, QdqCnn, QdqCnnLayer, QdqConv};
use kiln_onnx::OnnxError;

// ---------------------------------------------------------------------------
// The integer arithmetic of docs/layer-graph.md, one sample in CHW order.
// ---------------------------------------------------------------------------

/// An int8 value with its shape `[c, h, w]` and parameters.
#[derive(Debug, Clone)]
struct Value {
    data: Vec<i8>,
    shape: [usize; 3],
    params: QuantParams,
}

/// `y = clamp(sat8(zp_out + rq(acc, M, t)), lo, hi)` for output channel `o`
/// of an affine layer, or the table lookup of the requantized pre-activation.
fn finish(
    acc: i64,
    s_in: f32,
    s_w: f32,
    activation: &QdqActivation,
    output: QuantParams,
    coverage: &mut Coverage,
) -> i8 {
    assert!(i32::try_from(acc).is_ok(), "accumulator {acc} leaves i32");
    let zp_out = i64::from(output.zero_point);
    match activation {
        QdqActivation::Identity | QdqActivation::Relu => {
            let (m, t) = effective(s_in, s_w, output.scale);
            let y = sat8(zp_out + rq(acc, m, t, coverage), coverage);
            if *activation == QdqActivation::Relu && i64::from(y) < zp_out {
                coverage.relu_clamped += 1;
                output.zero_point
            } else {
                y
            }
        }
        QdqActivation::Table { function, pre } => {
            let (m, t) = effective(s_in, s_w, pre.scale);
            let z = sat8(
                i64::from(pre.zero_point) + rq(acc, m, t, coverage),
                coverage,
            );
            if z < pre.zero_point {
                coverage.negative_table_inputs += 1;
            }
            table(*function, *pre, output)[(i64::from(z) + 128) as usize]
        }
    }
}

/// `acc[o] = b[o] + sum w (x - zp_in)` over the taps inside the input (a
/// padded tap is the real value 0 and contributes nothing); `groups` is 1 or
/// the channel count.
fn conv(x: &Value, groups: usize, layer: &QdqConv, coverage: &mut Coverage) -> Value {
    let (shape, outputs) = conv_taps(
        x.shape,
        layer.out_channels,
        groups,
        layer.kernel,
        layer.stride,
        layer.pads,
    );
    let zp_in = i64::from(x.params.zero_point);
    let data = outputs
        .iter()
        .map(|(o, taps)| {
            let acc = taps.iter().fold(i64::from(layer.bias[*o]), |acc, &(i, k)| {
                acc + i64::from(layer.weights[k]) * (i64::from(x.data[i]) - zp_in)
            });
            let s_w = layer.weight_scales[*o];
            finish(
                acc,
                x.params.scale,
                s_w,
                &layer.activation,
                layer.output,
                coverage,
            )
        })
        .collect();
    Value {
        data,
        shape,
        params: layer.output,
    }
}

/// Valid pooling: the maximum of the int8 window (parameters kept), or
/// `sat8(zp_out + rq(sum (x - zp_in), s_in / (s_out kh kw)))`.
fn pool(
    x: &Value,
    kernel: [usize; 2],
    stride: [usize; 2],
    average: Option<QuantParams>,
    coverage: &mut Coverage,
) -> Value {
    let (shape, windows) = pool_windows(x.shape, kernel, stride);
    let zp_in = i64::from(x.params.zero_point);
    let data = windows
        .iter()
        .map(|window| {
            let taps = window.iter().map(|&i| x.data[i]);
            match average {
                None => taps.max().unwrap(),
                Some(out) => {
                    let acc: i64 = taps.map(|q| i64::from(q) - zp_in).sum();
                    let e =
                        f64::from(x.params.scale) / (f64::from(out.scale) * window.len() as f64);
                    let (m, t) = multiplier(e);
                    sat8(
                        i64::from(out.zero_point) + rq(acc, m, t, coverage),
                        coverage,
                    )
                }
            }
        })
        .collect();
    Value {
        data,
        shape,
        params: average.unwrap_or(x.params),
    }
}

/// The residual Add of the device: `acc = W_a (a - zp_a) + W_b (b - zp_b)`
/// with `W_x = round(s_x / max(s_a, s_b) 2^16)`, then the requantization of
/// an affine layer with `M / 2^t = max(s_a, s_b) / (2^16 s_out)` (or
/// `s_pre` for a table): [`finish`] with an input scale of
/// `max(s_a, s_b) / 2^16` (exact in f32) and a weight scale of 1.
fn add(
    a: &Value,
    b: &Value,
    activation: &QdqActivation,
    output: QuantParams,
    coverage: &mut Coverage,
) -> Value {
    assert_eq!(a.shape, b.shape, "the operands of an Add");
    let s_max = a.params.scale.max(b.params.scale);
    let weight = |s: f32| (f64::from(s) / f64::from(s_max) * 65536.0).round() as i64;
    let (w_a, w_b) = (weight(a.params.scale), weight(b.params.scale));
    let (zp_a, zp_b) = (
        i64::from(a.params.zero_point),
        i64::from(b.params.zero_point),
    );
    let data = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(&qa, &qb)| {
            let acc = w_a * (i64::from(qa) - zp_a) + w_b * (i64::from(qb) - zp_b);
            finish(acc, s_max / 65536.0, 1.0, activation, output, coverage)
        })
        .collect();
    Value {
        data,
        shape: a.shape,
        params: output,
    }
}

/// One layer on the int8 value `x`, the previous value; `values` holds every
/// value so far (value 0 the input), which a Tap or an Add reads.
fn layer_int8(layer: &QdqCnnLayer, x: &Value, values: &[Value], coverage: &mut Coverage) -> Value {
    match layer {
        QdqCnnLayer::Dense(dense) => {
            let zp_in = i64::from(x.params.zero_point);
            let data = (0..dense.n_outputs)
                .map(|o| {
                    let row = &dense.weights[o * dense.n_inputs..(o + 1) * dense.n_inputs];
                    let acc = row
                        .iter()
                        .zip(&x.data)
                        .fold(i64::from(dense.bias[o]), |acc, (&w, &q)| {
                            acc + i64::from(w) * (i64::from(q) - zp_in)
                        });
                    let s_w = dense.weight_scales[o];
                    finish(
                        acc,
                        x.params.scale,
                        s_w,
                        &dense.activation,
                        dense.output,
                        coverage,
                    )
                })
                .collect();
            Value {
                data,
                shape: [dense.n_outputs, 1, 1],
                params: dense.output,
            }
        }
        QdqCnnLayer::Conv2d(layer) => conv(x, 1, layer, coverage),
        QdqCnnLayer::DepthwiseConv2d(layer) => conv(x, layer.out_channels, layer, coverage),
        QdqCnnLayer::MaxPool2d { kernel, stride } => pool(x, *kernel, *stride, None, coverage),
        QdqCnnLayer::AvgPool2d {
            kernel,
            stride,
            output,
        } => pool(x, *kernel, *stride, Some(*output), coverage),
        QdqCnnLayer::GlobalAvgPool { output } => {
            let [c, h, w] = x.shape;
            let mut y = pool(x, [h, w], [1, 1], Some(*output), coverage);
            y.shape = [c, 1, 1];
            y
        }
        QdqCnnLayer::Flatten => {
            let n = x.data.len();
            Value {
                shape: [n, 1, 1],
                ..x.clone()
            }
        }
        QdqCnnLayer::Tap { value } => values[*value].clone(),
        QdqCnnLayer::Add {
            other,
            activation,
            output,
        } => add(x, &values[*other], activation, *output, coverage),
    }
}

// ---------------------------------------------------------------------------
// Int8 networks with random parameters.
// ---------------------------------------------------------------------------

fn params(scale: f32, zero_point: i8) -> QuantParams {
    QuantParams { scale, zero_point }
}

fn pow2(exponent: i32) -> f32 {
    2f32.powi(exponent)
}

/// A chain of int8 layers with random weights, tracking the value's shape.
/// `weight_scale` draws one scale per output channel.
struct QNet {
    rng: Rng,
    shape: [usize; 3],
    layers: Vec<QdqCnnLayer>,
    /// Every value's shape, value 0 the input.
    values: Vec<[usize; 3]>,
    pow2: bool,
    /// Multiplies the output scales of convolutions and dense layers.
    scale_factor: f32,
}

impl QNet {
    fn new(seed: u64, input_shape: [usize; 3], pow2: bool) -> Self {
        Self {
            rng: Rng::new(seed),
            shape: input_shape,
            layers: Vec::new(),
            values: vec![input_shape],
            pow2,
            scale_factor: 1.0,
        }
    }

    /// Per-channel weight scales, chosen so that a layer with `fan_in` taps
    /// maps its accumulators onto a few dozen output steps.
    fn weight_scales(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        let base = 1.2 / (64.0 * (fan_in as f32).sqrt());
        (0..n)
            .map(|_| {
                if self.pow2 {
                    pow2(base.log2().round() as i32 - self.rng.int(0, 1) as i32)
                } else {
                    base * (0.6 + 0.8 * self.rng.unit())
                }
            })
            .collect()
    }

    /// A layer's output parameters near `scale`; tanh and sigmoid outputs
    /// in [-1, 1] get `1 / 128` instead.
    fn output_for(&mut self, scale: f32, activation: &QdqActivation) -> QuantParams {
        match activation {
            QdqActivation::Table {
                function: Activation::Tanh | Activation::Sigmoid,
                ..
            } => self.output(1.0 / 128.0),
            _ => self.output(scale * self.scale_factor),
        }
    }

    fn output(&mut self, scale: f32) -> QuantParams {
        let zero_point = self.rng.int(-40, 40) as i8;
        if self.pow2 {
            params(scale, zero_point)
        } else {
            params(scale * (0.7 + 0.6 * self.rng.unit()), zero_point)
        }
    }

    fn weights(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.rng.int(-127, 127) as i8).collect()
    }

    fn biases(&mut self, n: usize) -> Vec<i32> {
        (0..n).map(|_| self.rng.int(-600, 600) as i32).collect()
    }

    fn conv(
        &mut self,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: [usize; 4],
        activation: QdqActivation,
    ) -> &mut Self {
        let in_channels = self.shape[0];
        let fan_in = in_channels * kernel[0] * kernel[1];
        let layer = QdqCnnLayer::Conv2d(QdqConv {
            out_channels,
            in_channels,
            kernel,
            stride,
            pads,
            weights: self.weights(out_channels * fan_in),
            weight_scales: self.weight_scales(out_channels, fan_in),
            bias: self.biases(out_channels),
            output: self.output_for(pow2(-3), &activation),
            activation,
        });
        self.layers.push(layer);
        self.shape = window_output(self.shape, out_channels, kernel, stride, pads);
        self.values.push(self.shape);
        self
    }

    fn depthwise(
        &mut self,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: [usize; 4],
        activation: QdqActivation,
    ) -> &mut Self {
        let channels = self.shape[0];
        let fan_in = kernel[0] * kernel[1];
        let layer = QdqCnnLayer::DepthwiseConv2d(QdqConv {
            out_channels: channels,
            in_channels: channels,
            kernel,
            stride,
            pads,
            weights: self.weights(channels * fan_in),
            weight_scales: self.weight_scales(channels, fan_in),
            bias: self.biases(channels),
            output: self.output_for(pow2(-3), &activation),
            activation,
        });
        self.layers.push(layer);
        self.shape = window_output(self.shape, channels, kernel, stride, pads);
        self.values.push(self.shape);
        self
    }

    fn maxpool(&mut self, kernel: [usize; 2], stride: [usize; 2]) -> &mut Self {
        self.layers.push(QdqCnnLayer::MaxPool2d { kernel, stride });
        self.shape = window_output(self.shape, self.shape[0], kernel, stride, [0; 4]);
        self.values.push(self.shape);
        self
    }

    fn avgpool(&mut self, kernel: [usize; 2], stride: [usize; 2]) -> &mut Self {
        let output = self.output(pow2(-4) * self.scale_factor);
        self.layers.push(QdqCnnLayer::AvgPool2d {
            kernel,
            stride,
            output,
        });
        self.shape = window_output(self.shape, self.shape[0], kernel, stride, [0; 4]);
        self.values.push(self.shape);
        self
    }

    fn gap(&mut self) -> &mut Self {
        let output = self.output(pow2(-5) * self.scale_factor);
        self.layers.push(QdqCnnLayer::GlobalAvgPool { output });
        self.shape = [self.shape[0], 1, 1];
        self.values.push(self.shape);
        self
    }

    fn flatten(&mut self) -> &mut Self {
        self.layers.push(QdqCnnLayer::Flatten);
        self.shape = [self.shape.iter().product(), 1, 1];
        self.values.push(self.shape);
        self
    }

    fn dense(&mut self, n_outputs: usize, activation: QdqActivation) -> &mut Self {
        let n_inputs: usize = self.shape.iter().product();
        let layer = QdqLayer {
            n_inputs,
            n_outputs,
            weights: self.weights(n_inputs * n_outputs),
            weight_scales: self.weight_scales(n_outputs, n_inputs),
            bias: self.biases(n_outputs),
            output: self.output_for(pow2(-2), &activation),
            activation,
        };
        self.layers.push(QdqCnnLayer::Dense(layer));
        self.shape = [n_outputs, 1, 1];
        self.values.push(self.shape);
        self
    }

    /// `Tap { value }`: the next layer reads value `value`.
    fn tap(&mut self, value: usize) -> &mut Self {
        self.layers.push(QdqCnnLayer::Tap { value });
        self.shape = self.values[value];
        self.values.push(self.shape);
        self
    }

    /// `Add { other, .. }` of the previous value and value `other`.
    fn add(&mut self, other: usize, activation: QdqActivation) -> &mut Self {
        assert_eq!(self.values[other], self.shape);
        let output = self.output_for(pow2(-3), &activation);
        self.layers.push(QdqCnnLayer::Add {
            other,
            activation,
            output,
        });
        self.values.push(self.shape);
        self
    }
}

fn table_activation(function: Activation, pre_scale: f32, zero_point: i8) -> QdqActivation {
    QdqActivation::Table {
        function,
        pre: params(pre_scale, zero_point),
    }
}

fn options() -> MlpExportOptions {
    export_options(13, false)
}

/// Raw input samples whose normalised values span the int8 input range
/// (and a little beyond, to saturate).
fn samples(cnn: &QdqCnn, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let features: usize = cnn.input_shape.iter().product();
    let zp = f32::from(cnn.input.zero_point);
    (0..n)
        .map(|_| {
            (0..features)
                .map(|j| {
                    let v = cnn.input.scale * ((rng.unit() * 2.0 - 1.0) * 130.0 - zp);
                    match &cnn.normalization {
                        InputNormalization::None => v,
                        InputNormalization::Scale { scale } => v / scale,
                        InputNormalization::Standardize { mean, inv_std } => {
                            v / inv_std[j] + mean[j]
                        }
                    }
                })
                .collect()
        })
        .collect()
}

fn run(model: &ModelProto, cnn: &QdqCnn, batch: &[Vec<f32>]) -> HashMap<String, Tensor> {
    let model = decode_model(&encode_model(model)).unwrap();
    let shape = batch_shape(batch.len(), cnn.input_shape, cnn.spatial_rank);
    evaluate(&model, &Tensor::f32(shape, batch.concat()))
}

fn output_name(cnn: &QdqCnn, i: usize) -> String {
    if i + 1 == cnn.layers.len() {
        "logits_q".to_owned()
    } else {
        format!("layer{i}.output_q")
    }
}

/// The graph's int8 tensor of every value: `input_q`, then each layer's
/// output, a Tap's being the tensor of the value it names.
fn value_names(cnn: &QdqCnn) -> Vec<String> {
    let mut names = vec!["input_q".to_owned()];
    for (i, layer) in cnn.layers.iter().enumerate() {
        let name = match layer {
            QdqCnnLayer::Tap { value } => names[*value].clone(),
            _ => output_name(cnn, i),
        };
        names.push(name);
    }
    names
}

/// Sample `r` of an int8 tensor of the graph.
fn sample_of<'a>(env: &'a HashMap<String, Tensor>, name: &str, r: usize) -> &'a [i8] {
    let t = &env[name];
    let per_sample = t.len() / t.shape[0];
    &t.int8s()[r * per_sample..(r + 1) * per_sample]
}

/// Runs the graph on `batch` and compares every layer's int8 tensor with the
/// integer computation. `chained`: the integers run end to end from
/// `input_q`; otherwise each layer reads the graph's own int8 input. Returns
/// the number of differing values, the largest difference, the coverage and
/// the number of values compared.
fn compare(cnn: &QdqCnn, batch: &[Vec<f32>], chained: bool) -> (usize, i64, Coverage, usize) {
    let model = qdq_cnn_to_model(cnn, &options()).unwrap();
    let env = run(&model, cnn, batch);
    let mut coverage = Coverage::default();
    let (mut mismatches, mut worst, mut total) = (0, 0, 0);
    let names = value_names(cnn);
    for r in 0..batch.len() {
        let mut x = Value {
            data: sample_of(&env, "input_q", r).to_vec(),
            shape: cnn.input_shape,
            params: cnn.input,
        };
        let mut values = vec![x.clone()];
        for (i, layer) in cnn.layers.iter().enumerate() {
            let y = layer_int8(layer, &x, &values, &mut coverage);
            if let QdqCnnLayer::Tap { .. } = layer {
                // No tensor of its own: the value was compared where it was computed.
                x = y;
                values.push(x.clone());
                continue;
            }
            let graph = sample_of(&env, &names[i + 1], r);
            assert_eq!(graph.len(), y.data.len(), "layer {i} size");
            total += graph.len();
            for (&g, &k) in graph.iter().zip(&y.data) {
                let d = (i64::from(g) - i64::from(k)).abs();
                mismatches += usize::from(d != 0);
                worst = worst.max(d);
            }
            x = if chained {
                y
            } else {
                Value {
                    data: graph.to_vec(),
                    ..y
                }
            };
            values.push(x.clone());
        }
    }
    // logits is logits_q dequantized.
    let last = cnn.layers.len() - 1;
    let out = match &cnn.layers[last] {
        QdqCnnLayer::Dense(d) => d.output,
        _ => panic!("the test networks end with Dense"),
    };
    let expected: Vec<f32> = env["logits_q"]
        .int8s()
        .iter()
        .map(|&q| (i32::from(q) - i32::from(out.zero_point)) as f32 * out.scale)
        .collect();
    assert_eq!(env["logits"].floats(), expected);
    (mismatches, worst, coverage, total)
}

/// Power-of-two scales, means and window sizes: 2x8x8 -> conv 3x3 same
/// (Relu) -> maxpool 2 -> depthwise 3x3 same (LeakyRelu table) -> avgpool
/// 2x2 -> conv 1x1 -> GAP (2x2) -> dense (Relu) -> dense.
fn pow2_cnn() -> QdqCnn {
    let mut net = QNet::new(1, [2, 8, 8], true);
    net.conv(4, [3, 3], [1, 1], [1, 1, 1, 1], QdqActivation::Relu)
        .maxpool([2, 2], [2, 2])
        .depthwise(
            [3, 3],
            [1, 1],
            [1, 1, 1, 1],
            table_activation(Activation::LeakyRelu { alpha: 0.25 }, pow2(-3), 5),
        )
        .avgpool([2, 2], [2, 2])
        .conv(6, [1, 1], [1, 1], [0; 4], QdqActivation::Identity)
        .gap()
        .dense(8, QdqActivation::Relu)
        .dense(5, QdqActivation::Identity);
    QdqCnn {
        input_frac_bits: 0,
        input_shape: [2, 8, 8],
        spatial_rank: 2,
        normalization: InputNormalization::Standardize {
            mean: (0..128).map(|j| (j % 7) as f32 * 0.25 - 0.75).collect(),
            inv_std: (0..128i32).map(|j| pow2(-(j % 3))).collect(),
        },
        input: params(pow2(-4), -3),
        layers: net.layers,
    }
}

/// General scales, every table function, stride 2, asymmetric padding,
/// 3x3 average windows, an implicit flatten of a 2-D value.
fn general_cnn() -> QdqCnn {
    let mut net = QNet::new(2, [3, 9, 9], false);
    net.scale_factor = 0.25;
    net.conv(5, [3, 3], [2, 2], [1, 1, 1, 1], QdqActivation::Relu)
        .depthwise(
            [2, 2],
            [1, 1],
            [0, 0, 1, 1],
            table_activation(Activation::Tanh, 0.021, -4),
        )
        .avgpool([3, 3], [1, 1])
        .conv(
            4,
            [2, 3],
            [1, 1],
            [0, 1, 1, 1],
            table_activation(Activation::Sigmoid, 0.037, 9),
        )
        .maxpool([3, 1], [1, 2])
        .dense(7, QdqActivation::Relu)
        .dense(3, QdqActivation::Identity);
    QdqCnn {
        input_frac_bits: 0,
        input_shape: [3, 9, 9],
        spatial_rank: 2,
        normalization: InputNormalization::Scale { scale: 1.0 / 255.0 },
        input: params(0.0079, -128),
        layers: net.layers,
    }
}

/// A Conv1D network with power-of-two scales: 2x1x16 -> conv k5 same
/// (Relu) -> maxpool 2 -> depthwise k3 stride 2 -> avgpool 2 -> flatten ->
/// dense.
fn conv1d_cnn() -> QdqCnn {
    let mut net = QNet::new(3, [2, 1, 16], true);
    net.conv(4, [1, 5], [1, 1], [0, 2, 0, 2], QdqActivation::Relu)
        .maxpool([1, 2], [1, 2])
        .depthwise([1, 3], [1, 2], [0, 1, 0, 1], QdqActivation::Identity)
        .avgpool([1, 2], [1, 2])
        .flatten()
        .dense(3, QdqActivation::Identity);
    QdqCnn {
        input_frac_bits: 0,
        input_shape: [2, 1, 16],
        spatial_rank: 1,
        normalization: InputNormalization::None,
        input: params(pow2(-3), 0),
        layers: net.layers,
    }
}

fn distinct(env_values: &[i8]) -> usize {
    let mut v = env_values.to_vec();
    v.sort_unstable();
    v.dedup();
    v.len()
}

#[test]
fn power_of_two_cnn_is_bit_exact_end_to_end() {
    let cnn = pow2_cnn();
    let batch = samples(&cnn, 6, 11);
    let (mismatches, worst, coverage, _) = compare(&cnn, &batch, true);
    assert_eq!((mismatches, worst), (0, 0), "{coverage:?}");
    // The data reach the interesting cases: ReLU clamps, ties, negative
    // table inputs.
    assert!(coverage.relu_clamped > 0, "{coverage:?}");
    assert!(coverage.ties > 0, "{coverage:?}");
    assert!(coverage.negative_table_inputs > 0, "{coverage:?}");
    let model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    let env = run(&model, &cnn, &batch);
    assert!(distinct(env["logits_q"].int8s()) > 8);
}

#[test]
fn conv1d_cnn_is_bit_exact_end_to_end() {
    let cnn = conv1d_cnn();
    let batch = samples(&cnn, 6, 12);
    let (mismatches, worst, coverage, _) = compare(&cnn, &batch, true);
    assert_eq!((mismatches, worst), (0, 0), "{coverage:?}");
    let model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    assert_eq!(run(&model, &cnn, &batch)["input_q"].shape, [6, 2, 16]);
}

#[test]
fn general_scales_agree_within_one_step_per_layer() {
    let cnn = general_cnn();
    let batch = samples(&cnn, 8, 13);
    let (mismatches, worst, coverage, total) = compare(&cnn, &batch, false);
    assert!(worst <= 1, "largest difference {worst}");
    assert!(
        mismatches * 100 <= total,
        "{mismatches} of {total} differ; {coverage:?}"
    );
    assert!(coverage.negative_table_inputs > 0, "{coverage:?}");
}

/// The comparison must be able to fail: weights in the runtime's OHWI order
/// instead of ONNX's OIHW change the graph's results.
#[test]
fn a_wrong_weight_layout_is_detected() {
    let reference = pow2_cnn();
    let mut swapped = reference.clone();
    if let QdqCnnLayer::Conv2d(QdqConv { weights, .. }) = &mut swapped.layers[0] {
        // [4][2][3][3] read as [4][3][3][2].
        let original = weights.clone();
        for o in 0..4 {
            for c in 0..2 {
                for k in 0..9 {
                    weights[(o * 2 + c) * 9 + k] = original[(o * 9 + k) * 2 + c];
                }
            }
        }
    }
    let batch = samples(&reference, 4, 14);
    let model = qdq_cnn_to_model(&swapped, &options()).unwrap();
    let env = run(&model, &swapped, &batch);
    let mut coverage = Coverage::default();
    let x = Value {
        data: sample_of(&env, "input_q", 0).to_vec(),
        shape: reference.input_shape,
        params: reference.input,
    };
    let y = layer_int8(
        &reference.layers[0],
        &x,
        std::slice::from_ref(&x),
        &mut coverage,
    );
    assert_ne!(sample_of(&env, "layer0.output_q", 0), y.data);
}

// ---------------------------------------------------------------------------
// Skip connections: Tap and Add.
// ---------------------------------------------------------------------------

/// ResNet-8's shape with power-of-two scales: a stem, an identity block
/// whose operands have different scales, and a projection block whose
/// shortcut (a Tap and a strided 1x1 convolution) has its own scale, then
/// GAP and the classifier.
fn pow2_resnet() -> QdqCnn {
    let mut net = QNet::new(4, [2, 8, 8], true);
    net.conv(4, [3, 3], [1, 1], [1, 1, 1, 1], QdqActivation::Relu); // value 1
    net.scale_factor = 2.0;
    net.conv(4, [3, 3], [1, 1], [1, 1, 1, 1], QdqActivation::Identity) // value 2
        .add(1, QdqActivation::Relu); // value 3
    net.scale_factor = 1.0;
    net.conv(8, [3, 3], [2, 2], [0, 0, 1, 1], QdqActivation::Relu) // value 4
        .conv(8, [3, 3], [1, 1], [1, 1, 1, 1], QdqActivation::Identity) // value 5
        .tap(3); // value 6
    net.scale_factor = 0.5;
    net.conv(8, [1, 1], [2, 2], [0; 4], QdqActivation::Identity) // value 7
        .add(5, QdqActivation::Relu) // value 8
        .gap()
        .dense(5, QdqActivation::Identity);
    QdqCnn {
        input_frac_bits: 0,
        input_shape: [2, 8, 8],
        spatial_rank: 2,
        normalization: InputNormalization::Scale { scale: 0.5 },
        input: params(pow2(-4), -3),
        layers: net.layers,
    }
}

/// General scales: a residual of the input itself, an Add with a table
/// activation, a Tap of a max pool's output (which keeps its input's
/// parameters), an identity Add and an Add of flat vectors.
fn general_resnet() -> QdqCnn {
    let mut net = QNet::new(5, [3, 6, 6], false);
    net.conv(3, [3, 3], [1, 1], [1, 1, 1, 1], QdqActivation::Identity) // value 1
        .add(0, QdqActivation::Relu) // value 2
        .conv(4, [3, 3], [1, 1], [1, 1, 1, 1], QdqActivation::Relu) // value 3
        .maxpool([2, 2], [2, 2]) // value 4
        .conv(4, [3, 3], [1, 1], [1, 1, 1, 1], QdqActivation::Identity) // value 5
        .add(4, table_activation(Activation::Tanh, 0.043, 3)) // value 6
        .tap(4) // value 7
        .conv(4, [1, 1], [1, 1], [0; 4], QdqActivation::Relu) // value 8
        .add(6, QdqActivation::Identity) // value 9
        .gap()
        .dense(6, QdqActivation::Relu) // value 11
        .dense(6, QdqActivation::Identity) // value 12
        .add(11, QdqActivation::Relu) // value 13
        .dense(4, QdqActivation::Identity);
    QdqCnn {
        input_frac_bits: 0,
        input_shape: [3, 6, 6],
        spatial_rank: 2,
        normalization: InputNormalization::None,
        input: params(0.031, 7),
        layers: net.layers,
    }
}

/// The index of the largest logit of sample `r`, the first of equals.
fn argmax(values: &[i8]) -> usize {
    let max = values.iter().max().unwrap();
    values.iter().position(|v| v == max).unwrap()
}

/// The integers end to end from the graph's `input_q`: each sample's logits.
fn integer_logits(cnn: &QdqCnn, env: &HashMap<String, Tensor>, n: usize) -> Vec<Vec<i8>> {
    let mut coverage = Coverage::default();
    (0..n)
        .map(|r| {
            let mut values = vec![Value {
                data: sample_of(env, "input_q", r).to_vec(),
                shape: cnn.input_shape,
                params: cnn.input,
            }];
            for layer in &cnn.layers {
                let y = layer_int8(layer, &values[values.len() - 1], &values, &mut coverage);
                values.push(y);
            }
            values.pop().unwrap().data
        })
        .collect()
}

#[test]
fn power_of_two_residual_network_is_bit_exact_end_to_end() {
    let cnn = pow2_resnet();
    // The Adds' operands have different scales (W_a != W_b).
    let scale_of = |value: usize| -> f32 {
        match &cnn.layers[value - 1] {
            QdqCnnLayer::Conv2d(conv) => conv.output.scale,
            QdqCnnLayer::Add { output, .. } => output.scale,
            other => panic!("value {value} is a {}", other.kind()),
        }
    };
    assert_ne!(scale_of(1), scale_of(2));
    assert_ne!(scale_of(5), scale_of(7));
    let batch = samples(&cnn, 6, 15);
    let (mismatches, worst, coverage, _) = compare(&cnn, &batch, true);
    assert_eq!((mismatches, worst), (0, 0), "{coverage:?}");
    assert!(coverage.relu_clamped > 0, "{coverage:?}");
    assert!(coverage.ties > 0, "{coverage:?}");
    let model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    let env = run(&model, &cnn, &batch);
    assert!(distinct(env["logits_q"].int8s()) > 8);
    // Both Adds reach the ReLU clamp and values above the zero point.
    for (layer, zero_point) in [(2, scale_of(3)), (7, scale_of(8))] {
        let QdqCnnLayer::Add { output, .. } = &cnn.layers[layer] else {
            unreachable!()
        };
        assert_eq!(output.scale, zero_point);
        let y = env[&format!("layer{layer}.output_q")].int8s();
        assert!(y.contains(&output.zero_point), "layer {layer}");
        assert!(
            y.iter().any(|&q| q > output.zero_point + 4),
            "layer {layer}"
        );
    }
}

#[test]
fn general_residual_network_agrees_within_one_step_with_the_same_argmax() {
    let cnn = general_resnet();
    let batch = samples(&cnn, 10, 16);
    let (mismatches, worst, coverage, total) = compare(&cnn, &batch, false);
    assert!(worst <= 1, "largest difference {worst}");
    assert!(
        mismatches * 100 <= total,
        "{mismatches} of {total} differ; {coverage:?}"
    );
    assert!(coverage.negative_table_inputs > 0, "{coverage:?}");
    assert!(coverage.relu_clamped > 0, "{coverage:?}");
    // End to end, the class is the graph's.
    let model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    let env = run(&model, &cnn, &batch);
    let logits = integer_logits(&cnn, &env, batch.len());
    let n_out = logits[0].len();
    for (r, ours) in logits.iter().enumerate() {
        let graph = &env["logits_q"].int8s()[r * n_out..(r + 1) * n_out];
        assert_eq!(
            argmax(graph),
            argmax(ours),
            "sample {r}: {graph:?} {ours:?}"
        );
        let worst = graph
            .iter()
            .zip(ours)
            .map(|(&g, &o)| (i32::from(g) - i32::from(o)).abs())
            .max()
            .unwrap();
        assert!(worst <= 1, "sample {r}: {graph:?} {ours:?}");
    }
}

/// The comparison must be able to fail: an Add that dequantizes its residual
/// operand with the previous value's parameters, or reads the wrong value, is
/// caught.
#[test]
fn a_wrong_residual_operand_is_detected() {
    let cnn = pow2_resnet();
    let batch = samples(&cnn, 4, 17);
    assert_eq!(compare(&cnn, &batch, false).0, 0);
    // The graph reads value 4 where the model says value 5 (same shape).
    let mut wrong = cnn.clone();
    if let QdqCnnLayer::Add { other, .. } = &mut wrong.layers[7] {
        *other = 4;
    }
    let model = qdq_cnn_to_model(&wrong, &options()).unwrap();
    let env = run(&model, &wrong, &batch);
    let theirs = &env["layer7.output_q"];
    let model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    let env = run(&model, &cnn, &batch);
    assert_ne!(theirs, &env["layer7.output_q"]);
    // The residual operand dequantized with the previous value's parameters.
    let mut model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let node = graph
        .node
        .iter_mut()
        .find(|n| n.name() == "layer7_dequantize_other")
        .unwrap();
    assert_eq!(node.input[1], "layer4.output_q.scale");
    node.input[1] = "layer6.output_q.scale".to_owned();
    node.input[2] = "layer6.output_q.zero_point".to_owned();
    let env = run(&model, &cnn, &batch);
    let mut coverage = Coverage::default();
    let graph_value = |name: &str, value: usize, r: usize| Value {
        data: sample_of(&env, name, r).to_vec(),
        shape: [8, 4, 4],
        params: match &cnn.layers[value - 1] {
            QdqCnnLayer::Conv2d(conv) => conv.output,
            other => panic!("{}", other.kind()),
        },
    };
    let QdqCnnLayer::Add {
        activation, output, ..
    } = &cnn.layers[7]
    else {
        unreachable!()
    };
    let differing = (0..batch.len())
        .filter(|&r| {
            let y = add(
                &graph_value("layer6.output_q", 7, r),
                &graph_value("layer4.output_q", 5, r),
                activation,
                *output,
                &mut coverage,
            );
            y.data != sample_of(&env, "layer7.output_q", r)
        })
        .count();
    assert_eq!(differing, batch.len());
}

#[test]
fn structure_of_a_residual_int8_graph() {
    let cnn = pow2_resnet();
    let model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let node = |name: &str| {
        graph
            .node
            .iter()
            .find(|n| n.name() == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    };
    let ops = |layer: usize| -> Vec<(&str, &str)> {
        let prefix = format!("layer{layer}_");
        graph
            .node
            .iter()
            .filter(|n| n.name().starts_with(&prefix))
            .map(|n| (n.op_type(), n.name()))
            .collect()
    };
    assert_eq!(
        ops(2),
        [
            ("DequantizeLinear", "layer2_dequantize_input"),
            ("DequantizeLinear", "layer2_dequantize_other"),
            ("Add", "layer2_add"),
            ("Relu", "layer2_relu"),
            ("QuantizeLinear", "layer2_quantize_output"),
        ]
    );
    // Each operand with its own value's parameters.
    assert_eq!(
        node("layer2_dequantize_input").input,
        [
            "layer1.output_q",
            "layer1.output_q.scale",
            "layer1.output_q.zero_point"
        ]
    );
    assert_eq!(
        node("layer2_dequantize_other").input,
        [
            "layer0.output_q",
            "layer0.output_q.scale",
            "layer0.output_q.zero_point"
        ]
    );
    assert_eq!(node("layer2_add").input, ["layer2.input", "layer2.other"]);
    assert_eq!(
        node("layer2_quantize_output").input,
        [
            "layer2.activated",
            "layer2.output_q.scale",
            "layer2.output_q.zero_point"
        ]
    );
    // The Tap (layer 5) emits nothing; the shortcut reads value 3's tensor.
    assert!(ops(5).is_empty());
    assert_eq!(
        node("layer6_dequantize_input").input,
        [
            "layer2.output_q",
            "layer2.output_q.scale",
            "layer2.output_q.zero_point"
        ]
    );
    assert_eq!(node("layer7_dequantize_input").input[0], "layer6.output_q");
    assert_eq!(node("layer7_dequantize_other").input[0], "layer4.output_q");
    assert!(
        graph
            .doc_string()
            .contains("-> Tap of value 3 4x8x8 -> Conv2d 8x4x4 -> Add with value 5 8x4x4"),
        "{}",
        graph.doc_string()
    );

    // A table activation after the sum: quantized to the pre-activation
    // parameters, the function, then the output's.
    let cnn = general_resnet();
    let model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let names: Vec<&str> = graph
        .node
        .iter()
        .filter(|n| n.name().starts_with("layer5_"))
        .map(|n| n.name())
        .collect();
    assert_eq!(
        names,
        [
            "layer5_dequantize_input",
            "layer5_dequantize_other",
            "layer5_add",
            "layer5_quantize_pre_activation",
            "layer5_dequantize_pre_activation",
            "layer5_tanh",
            "layer5_quantize_output",
        ]
    );
    // A max pool's output keeps its input's parameters, and so does the Add
    // that reads it (value 4, layer 3's).
    let dq = graph
        .node
        .iter()
        .find(|n| n.name() == "layer5_dequantize_other")
        .unwrap();
    assert_eq!(
        dq.input,
        [
            "layer3.output_q",
            "layer2.output_q.scale",
            "layer2.output_q.zero_point"
        ]
    );
}

#[test]
fn residual_errors_name_the_layer() {
    let mut cnn = pow2_resnet();
    cnn.layers[5] = QdqCnnLayer::Tap { value: 7 };
    assert_eq!(
        rejection(&cnn),
        "layer 5 (Tap): reads value 7, which is not an earlier value: layer 5 can read values \
         0 (the input) to 5 (layer k writes value k + 1)"
    );
    let mut cnn = pow2_resnet();
    if let QdqCnnLayer::Add { other, .. } = &mut cnn.layers[7] {
        *other = 3;
    }
    assert_eq!(
        rejection(&cnn),
        "layer 7 (Add): value 3 is [4, 8, 8], the previous value [8, 4, 4]; an Add needs both \
         of one shape"
    );
    let mut cnn = pow2_resnet();
    if let QdqCnnLayer::Add { other, .. } = &mut cnn.layers[2] {
        *other = 40;
    }
    assert_eq!(
        rejection(&cnn),
        "layer 2 (Add): reads value 40, which is not an earlier value: layer 2 can read values \
         0 (the input) to 2 (layer k writes value k + 1)"
    );
    let mut cnn = pow2_resnet();
    if let QdqCnnLayer::Add { output, .. } = &mut cnn.layers[7] {
        output.scale = 0.0;
    }
    assert_eq!(
        rejection(&cnn),
        "layer 7 output scale is 0, expected a finite scale greater than 0"
    );
    let mut cnn = pow2_resnet();
    if let QdqCnnLayer::Add { activation, .. } = &mut cnn.layers[2] {
        *activation = table_activation(Activation::Relu6, 0.1, 0);
    }
    assert_eq!(
        rejection(&cnn),
        "layer 2: a table activation must be Tanh, Sigmoid or LeakyRelu, not Relu6"
    );
    let mut cnn = pow2_resnet();
    if let QdqCnnLayer::Add { activation, .. } = &mut cnn.layers[2] {
        *activation = table_activation(Activation::Tanh, f32::NAN, 0);
    }
    assert_eq!(
        rejection(&cnn),
        "layer 2 pre-activation scale is NaN, expected a finite scale greater than 0"
    );
    let mut cnn = pow2_resnet();
    cnn.layers.push(QdqCnnLayer::Tap { value: 10 });
    assert_eq!(
        rejection(&cnn),
        "layer 10 (Tap): is the last layer, but a Tap computes nothing; the logits must be a \
         layer's own output"
    );
}

// ---------------------------------------------------------------------------
// The graph's structure.
// ---------------------------------------------------------------------------

#[test]
fn structure_of_the_int8_graph() {
    let cnn = pow2_cnn();
    let model = qdq_cnn_to_model(&cnn, &options()).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let node = |name: &str| {
        graph
            .node
            .iter()
            .find(|n| n.name() == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    };
    let ops: Vec<_> = graph.node.iter().map(|n| n.op_type()).collect();
    assert_eq!(
        &ops[..11],
        [
            "Sub",
            "Mul",
            "QuantizeLinear",
            "DequantizeLinear",
            "DequantizeLinear",
            "DequantizeLinear",
            "Conv",
            "Relu",
            "QuantizeLinear",
            "DequantizeLinear",
            "MaxPool",
        ]
    );
    // MaxPool requantizes with its input's own scale and zero point.
    let maxpool_q = node("layer1_quantize_output");
    assert_eq!(
        maxpool_q.input,
        [
            "layer1.pooled",
            "layer0.output_q.scale",
            "layer0.output_q.zero_point"
        ]
    );
    // AveragePool and GlobalAveragePool have their own.
    let avg_q = node("layer3_quantize_output");
    assert_eq!(
        avg_q.input,
        [
            "layer3.pooled",
            "layer3.output_q.scale",
            "layer3.output_q.zero_point"
        ]
    );
    assert_eq!(node("layer5_global_avgpool").input, ["layer5.input"]);
    // The Dense after the GAP flattens the int8 tensor itself.
    let flatten = node("layer6_flatten");
    assert_eq!(flatten.input, ["layer5.output_q"]);
    assert_eq!(node("layer6_dequantize_input").input[0], "layer6.flattened");
    let conv = node("layer2_conv");
    assert_eq!(conv.input, ["layer2.input", "layer2.weight", "layer2.bias"]);
    let group = conv.attribute.iter().find(|a| a.name() == "group").unwrap();
    assert_eq!(group.i, Some(4));

    let initializer = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("no initializer {name}"))
    };
    let w = initializer("layer0.weight_q");
    assert_eq!(
        (w.dims.as_slice(), w.data_type),
        (&[4i64, 2, 3, 3][..], Some(DataType::Int8 as i32))
    );
    let b = initializer("layer0.bias_q");
    assert_eq!(
        (b.dims.as_slice(), b.data_type),
        (&[4i64][..], Some(DataType::Int32 as i32))
    );
    // The bias scale is the input scale times each weight scale.
    let QdqCnnLayer::Conv2d(QdqConv { weight_scales, .. }) = &cnn.layers[0] else {
        unreachable!()
    };
    let bias_scale: Vec<f32> = initializer("layer0.bias_scale")
        .raw_data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<f32> = weight_scales.iter().map(|s| s * cnn.input.scale).collect();
    assert_eq!(bias_scale, want);
    assert_eq!(initializer("layer2.weight_q").dims, [4, 1, 3, 3]);
    let outputs: Vec<_> = graph.output.iter().map(|o| o.name()).collect();
    assert_eq!(outputs, ["logits", "logits_q"]);

    let model = qdq_cnn_to_model(&conv1d_cnn(), &options()).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let w = graph
        .initializer
        .iter()
        .find(|t| t.name() == "layer0.weight_q")
        .unwrap();
    assert_eq!(w.dims, [4, 2, 5]);
    let flatten = graph
        .node
        .iter()
        .find(|n| n.name() == "layer4_flatten")
        .unwrap();
    assert_eq!(flatten.input, ["layer3.output_q"]);
    assert_eq!(flatten.output, ["layer4.output_q"]);
}

// ---------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------

fn rejection(cnn: &QdqCnn) -> String {
    qdq_cnn_to_model(cnn, &options()).unwrap_err().to_string()
}

fn edit_conv(cnn: &mut QdqCnn, index: usize, edit: impl FnOnce(&mut QdqConv)) {
    match &mut cnn.layers[index] {
        QdqCnnLayer::Conv2d(conv) | QdqCnnLayer::DepthwiseConv2d(conv) => edit(conv),
        other => panic!("layer {index} is {}", other.kind()),
    }
}

#[test]
fn int8_parameter_errors_name_the_layer() {
    let mut cnn = pow2_cnn();
    edit_conv(&mut cnn, 2, |conv| {
        conv.weight_scales.pop();
    });
    assert_eq!(
        rejection(&cnn),
        "layer 2: weight_scales has 3 values, expected 4 (one per output)"
    );
    let mut cnn = pow2_cnn();
    edit_conv(&mut cnn, 0, |conv| conv.weights[17] = i8::MIN);
    assert_eq!(
        rejection(&cnn),
        "layer 0 weights[17] is -128, expected a value in [-127, 127] (weights are symmetric int8)"
    );
    let mut cnn = pow2_cnn();
    edit_conv(&mut cnn, 4, |conv| conv.weight_scales[1] = 0.0);
    assert_eq!(
        rejection(&cnn),
        "layer 4 weight_scales[1] is 0, expected a finite scale greater than 0"
    );
    let mut cnn = pow2_cnn();
    cnn.input.scale = 1e-30;
    edit_conv(&mut cnn, 0, |conv| conv.weight_scales[0] = 1e-20);
    assert!(
        rejection(&cnn).starts_with("layer 0 bias scale[0] (input scale"),
        "{}",
        rejection(&cnn)
    );
    let mut cnn = pow2_cnn();
    if let QdqCnnLayer::AvgPool2d { output, .. } = &mut cnn.layers[3] {
        output.scale = f32::NAN;
    }
    assert_eq!(
        rejection(&cnn),
        "layer 3 output scale is NaN, expected a finite scale greater than 0"
    );
    let mut cnn = pow2_cnn();
    if let QdqCnnLayer::GlobalAvgPool { output } = &mut cnn.layers[5] {
        output.scale = -1.0;
    }
    assert_eq!(
        rejection(&cnn),
        "layer 5 output scale is -1, expected a finite scale greater than 0"
    );
    let mut cnn = pow2_cnn();
    edit_conv(&mut cnn, 2, |conv| {
        conv.activation = table_activation(Activation::Relu, 0.1, 0);
    });
    assert_eq!(
        rejection(&cnn),
        "layer 2: a table activation must be Tanh, Sigmoid or LeakyRelu, not Relu"
    );
    // A depthwise convolution maps each channel to itself.
    let mut cnn = pow2_cnn();
    edit_conv(&mut cnn, 2, |conv| {
        conv.out_channels = 8;
        conv.weights.extend([1; 36]);
        conv.weight_scales.extend([0.01; 4]);
        conv.bias.extend([0; 4]);
    });
    assert_eq!(
        rejection(&cnn),
        "layer 2 (DepthwiseConv2d): has 4 input and 8 output channels; a depthwise convolution \
         has one output channel per input channel"
    );
    let mut cnn = pow2_cnn();
    cnn.input.scale = f32::INFINITY;
    assert_eq!(
        rejection(&cnn),
        "input quantization scale is inf, expected a finite scale greater than 0"
    );
}

#[test]
fn shape_normalization_and_option_errors() {
    let mut cnn = pow2_cnn();
    cnn.layers[1] = QdqCnnLayer::MaxPool2d {
        kernel: [3, 3],
        stride: [2, 2],
    };
    assert_eq!(
        rejection(&cnn),
        "layer 1 (MaxPool2d): window 3 with stride 2 does not divide input height 8: 8 - 3 = 5 is \
         not a multiple of 2"
    );
    let mut cnn = pow2_cnn();
    edit_conv(&mut cnn, 0, |conv| {
        conv.weights.pop();
    });
    assert!(rejection(&cnn).starts_with("layer 0 (Conv2d): weights have 71 values, expected"));
    let mut cnn = pow2_cnn();
    cnn.layers.truncate(6);
    assert!(rejection(&cnn).starts_with("CNN model: the last layer (layer 5, GlobalAvgPool)"));
    let mut cnn = pow2_cnn();
    cnn.normalization = InputNormalization::Standardize {
        mean: vec![0.0; 64],
        inv_std: vec![1.0; 128],
    };
    assert_eq!(
        rejection(&cnn),
        "input normalization: mean has 64 values, expected 128 (one per input feature)"
    );
    let mut opts = options();
    opts.with_probabilities = true;
    let err = qdq_cnn_to_model(&pow2_cnn(), &opts).unwrap_err();
    assert!(matches!(err, OnnxError::QdqProbabilities), "{err:?}");
    let mut opts = options();
    opts.opset = 12;
    let err = qdq_cnn_to_model(&pow2_cnn(), &opts).unwrap_err();
    assert!(
        matches!(err, OnnxError::UnsupportedOpset { opset: 12 }),
        "{err:?}"
    );
}
