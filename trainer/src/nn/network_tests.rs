//! The layer graph: every layer type against a naive reference and against central finite
//! differences (f64, with respect to weights, biases and inputs), shape inference and its
//! errors, `--layers` parsing, the MLP equivalence, and a short training run.

#![allow(clippy::needless_range_loop)]

use super::layer_spec::{parse_layers, LayerSpec};
use super::network::{Layer, Network, ShapeError};
use super::optim::{OptimizerConfig, OptimizerState};
use super::shape::{Padding, Shape};
use super::*;

fn random_matrix(rng: &mut Rng, rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| rng.normal_f64())
}

fn network(input: Shape, layers: &str, seed: u64) -> Network<f64> {
    let specs = parse_layers(layers).unwrap_or_else(|e| panic!("{layers}: {e}"));
    let mut rng = Rng::new(seed);
    let mut net = Network::new(
        input,
        &specs,
        Activation::Tanh,
        Activation::Identity,
        Init::Xavier,
        &mut rng,
    )
    .unwrap_or_else(|e| panic!("{layers}: {e}"));
    // Non-zero biases exercise the bias path.
    for (_, bias) in net.params_mut() {
        for b in bias.iter_mut() {
            *b = 0.1 * rng.normal_f64();
        }
    }
    net
}

fn loss_of(net: &Network<f64>, input: &DMatrix<f64>, labels: &[u32]) -> f64 {
    let mut scratch = DMatrix::zeros(0, 0);
    Loss::CrossEntropy.value_and_gradient(
        &net.forward(input),
        BatchTargets::Classes(labels),
        &mut scratch,
    )
}

fn relative_error(analytic: f64, numeric: f64) -> f64 {
    // A small absolute floor keeps round-off on near-zero gradients from dominating.
    (analytic - numeric).abs() / (analytic.abs() + numeric.abs()).max(1e-4)
}

/// The largest relative error between backprop and central differences over every weight,
/// bias and input value.
fn max_gradient_error(net: &Network<f64>, input: &DMatrix<f64>, labels: &[u32]) -> f64 {
    let trace = net.forward_trace(input.clone());
    let mut output_grad = DMatrix::zeros(0, 0);
    Loss::CrossEntropy.value_and_gradient(
        trace.output(),
        BatchTargets::Classes(labels),
        &mut output_grad,
    );
    let (grads, input_grad) = net.backward_with_input_grad(&trace, output_grad.clone());
    // backward gives the same parameter gradients without the input gradient.
    assert_eq!(net.backward(&trace, output_grad), grads);
    let params = net.params();
    assert_eq!(
        grads.len(),
        params.len(),
        "one gradient per trainable layer"
    );
    for (g, (w, b)) in grads.iter().zip(&params) {
        assert_eq!(g.weights.shape(), w.shape());
        assert_eq!(g.bias.len(), b.len());
    }
    let step = 1e-6;
    let mut worst: f64 = 0.0;
    let mut probe = net.clone();
    for layer_idx in 0..grads.len() {
        let n_weights = grads[layer_idx].weights.len();
        let n_bias = grads[layer_idx].bias.len();
        for param_idx in 0..n_weights + n_bias {
            let analytic = if param_idx < n_weights {
                grads[layer_idx].weights.as_slice()[param_idx]
            } else {
                grads[layer_idx].bias.as_slice()[param_idx - n_weights]
            };
            let set = |net: &mut Network<f64>, delta: f64| {
                let mut params = net.params_mut();
                let (weights, bias) = &mut params[layer_idx];
                if param_idx < n_weights {
                    weights.as_mut_slice()[param_idx] += delta;
                } else {
                    bias.as_mut_slice()[param_idx - n_weights] += delta;
                }
            };
            set(&mut probe, step);
            let plus = loss_of(&probe, input, labels);
            set(&mut probe, -2.0 * step);
            let minus = loss_of(&probe, input, labels);
            set(&mut probe, step);
            worst = worst.max(relative_error(analytic, (plus - minus) / (2.0 * step)));
        }
    }
    let mut moved = input.clone();
    for idx in 0..input.len() {
        let original = input.as_slice()[idx];
        moved.as_mut_slice()[idx] = original + step;
        let plus = loss_of(net, &moved, labels);
        moved.as_mut_slice()[idx] = original - step;
        let minus = loss_of(net, &moved, labels);
        moved.as_mut_slice()[idx] = original;
        worst = worst.max(relative_error(
            input_grad.as_slice()[idx],
            (plus - minus) / (2.0 * step),
        ));
    }
    worst
}

fn assert_gradients(input_shape: Shape, layers: &str) {
    let net = network(input_shape, layers, 7);
    let mut rng = Rng::new(11);
    let input = random_matrix(&mut rng, input_shape.len(), 3);
    let labels = [0u32, 2, 1];
    let error = max_gradient_error(&net, &input, &labels);
    assert!(
        error < 1e-5,
        "{layers} on {input_shape}: relative gradient error {error:e}"
    );
}

#[test]
fn conv2d_gradients_same_and_valid_stride_1_and_2() {
    assert_gradients(Shape::new(5, 5, 2), "conv3x3:3,dense:3");
    assert_gradients(Shape::new(5, 6, 2), "conv3x3v:2,dense:3");
    assert_gradients(Shape::new(6, 5, 2), "conv3x3s2:2,dense:3");
    assert_gradients(Shape::new(7, 6, 1), "conv3x3s2v:2,dense:3");
    assert_gradients(Shape::new(6, 6, 1), "conv4x4s2:2,dense:3");
    // Same padding with a kernel larger than the input: most taps read padding.
    assert_gradients(Shape::new(2, 3, 2), "conv5x5:2,dense:3");
}

#[test]
fn conv2d_gradients_non_square_kernel_and_stride() {
    assert_gradients(Shape::new(5, 6, 2), "conv2x3:2,dense:3");
    assert_gradients(Shape::new(7, 5, 2), "conv4x2s2x1:2:sigmoid,dense:3");
    assert_gradients(Shape::new(6, 7, 1), "conv1x3s1x2v:2,dense:3");
}

#[test]
fn conv1d_gradients() {
    assert_gradients(Shape::new(1, 9, 2), "conv1d3:3,conv1d3s2v:2,dense:3");
    assert_gradients(Shape::new(1, 8, 1), "conv1d5s2:2,dense:3");
}

#[test]
fn depthwise_conv2d_gradients() {
    assert_gradients(Shape::new(5, 5, 3), "dw3x3,dense:3");
    assert_gradients(Shape::new(6, 7, 2), "dw3x2s2v,dense:3");
    assert_gradients(Shape::new(6, 6, 2), "dw3x3s2:identity,dense:3");
}

#[test]
fn pooling_gradients() {
    assert_gradients(Shape::new(6, 6, 1), "conv3x3:2,maxpool2,dense:3");
    assert_gradients(Shape::new(7, 7, 1), "conv3x3:2,maxpool3s2,dense:3");
    assert_gradients(Shape::new(6, 5, 2), "maxpool2x1,dense:3");
    assert_gradients(Shape::new(6, 6, 1), "conv3x3:2,avgpool2,dense:3");
    assert_gradients(Shape::new(7, 7, 2), "avgpool3s2,dense:3");
    assert_gradients(Shape::new(4, 6, 2), "conv3x3:2,avgpool2x3,dense:3");
    assert_gradients(Shape::new(5, 4, 2), "conv3x3:3,gap,dense:3");
    assert_gradients(Shape::new(4, 4, 2), "gap,dense:3");
}

#[test]
fn flatten_and_dense_after_spatial_gradients() {
    assert_gradients(Shape::new(4, 4, 2), "conv3x3:2,flatten,dense:4,dense:3");
    assert_gradients(Shape::new(4, 4, 2), "conv3x3:2,dense:4,dense:3");
    assert_gradients(Shape::new(3, 3, 2), "flatten,dense:3");
    assert_gradients(Shape::vector(5), "dense:4:sigmoid,dense:3");
}

#[test]
fn whole_network_gradients() {
    assert_gradients(
        Shape::new(8, 8, 2),
        "conv3x3:4:relu,maxpool2,dw3x3:tanh,conv1x1:3:leaky-relu=0.1,avgpool2,conv1x1:3,\
         dense:5:sigmoid,dense:3",
    );
    assert_gradients(
        Shape::new(9, 9, 1),
        "conv3x3s2:3,dw3x3v,conv2x2v:4:relu6,gap,dense:3",
    );
}

#[test]
fn a_wrong_conv_gradient_is_detected() {
    // Guards the checker: a corrupted conv weight gradient must stand out.
    let net = network(Shape::new(5, 5, 1), "conv3x3:2,dense:3", 3);
    let mut rng = Rng::new(4);
    let input = random_matrix(&mut rng, 25, 2);
    let labels = [1u32, 0];
    let (_, grads) = net.loss_and_gradients(
        input.clone(),
        BatchTargets::Classes(&labels),
        Loss::CrossEntropy,
    );
    let mut probe = net.clone();
    probe.params_mut()[0].0[(1, 4)] += 1e-6;
    let plus = loss_of(&probe, &input, &labels);
    probe.params_mut()[0].0[(1, 4)] -= 2e-6;
    let minus = loss_of(&probe, &input, &labels);
    let numeric = (plus - minus) / 2e-6;
    assert!(relative_error(grads[0].weights[(1, 4)], numeric) < 1e-5);
    assert!(relative_error(grads[0].weights[(1, 4)] + 0.05, numeric) > 1e-3);
}

/// The convolution formula of the docs, tap by tap, on one CHW sample.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f64],
    input: Shape,
    output: Shape,
    weights: &DMatrix<f64>,
    bias: &DVector<f64>,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    depthwise: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; output.len()];
    for o in 0..output.c {
        for oy in 0..output.h {
            for ox in 0..output.w {
                let mut acc = bias[o];
                let channels: Vec<usize> = if depthwise {
                    vec![o]
                } else {
                    (0..input.c).collect()
                };
                for c in channels {
                    for ky in 0..kernel[0] {
                        for kx in 0..kernel[1] {
                            let iy = (oy * stride[0] + ky) as isize - pad[0] as isize;
                            let ix = (ox * stride[1] + kx) as isize - pad[1] as isize;
                            if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize
                            {
                                continue;
                            }
                            let w = if depthwise {
                                weights[(o, ky * kernel[1] + kx)]
                            } else {
                                weights[(o, (c * kernel[0] + ky) * kernel[1] + kx)]
                            };
                            acc += w * x[(c * input.h + iy as usize) * input.w + ix as usize];
                        }
                    }
                }
                out[(o * output.h + oy) * output.w + ox] = acc;
            }
        }
    }
    out
}

#[test]
fn convolutions_match_the_tap_by_tap_formula() {
    let cases = [
        (Shape::new(5, 5, 2), "conv3x3:3:identity,dense:2"),
        (Shape::new(6, 5, 2), "conv3x3s2:2:identity,dense:2"),
        (Shape::new(7, 4, 2), "conv4x2s2x1:2:identity,dense:2"),
        (Shape::new(7, 7, 1), "conv4x4s3:2:identity,dense:2"),
        (Shape::new(6, 7, 3), "conv3x2v:4:identity,dense:2"),
        (Shape::new(1, 9, 2), "conv1d5s2:3:identity,dense:2"),
        (Shape::new(5, 5, 3), "dw3x3:identity,dense:2"),
        (Shape::new(6, 7, 2), "dw4x3s2:identity,dense:2"),
        (Shape::new(6, 7, 2), "dw3x2s2v:identity,dense:2"),
        (Shape::new(2, 2, 2), "conv3x3:2:identity,dense:2"),
    ];
    let mut rng = Rng::new(5);
    for (input_shape, layers) in cases {
        let net = network(input_shape, layers, 9);
        let input = random_matrix(&mut rng, input_shape.len(), 2);
        let trace = net.forward_trace(input.clone());
        let (expected_pad, got) = match &net.layers[0] {
            Layer::Conv2d(c) => {
                let pad = c.pad_begin();
                let refs: Vec<Vec<f64>> = (0..2)
                    .map(|b| {
                        naive_conv(
                            input.column(b).as_slice(),
                            c.input_shape,
                            c.output_shape,
                            &c.weights,
                            &c.bias,
                            c.kernel,
                            c.stride,
                            pad,
                            false,
                        )
                    })
                    .collect();
                (refs, c.onnx_pads())
            }
            Layer::DepthwiseConv2d(c) => {
                let pad = c.pad_begin();
                let refs: Vec<Vec<f64>> = (0..2)
                    .map(|b| {
                        naive_conv(
                            input.column(b).as_slice(),
                            c.input_shape,
                            c.output_shape,
                            &c.weights,
                            &c.bias,
                            c.kernel,
                            c.stride,
                            pad,
                            true,
                        )
                    })
                    .collect();
                (refs, c.onnx_pads())
            }
            _ => unreachable!(),
        };
        for b in 0..2 {
            let column = trace.activations[1].column(b);
            for (i, (&a, &e)) in column.iter().zip(&expected_pad[b]).enumerate() {
                assert!((a - e).abs() < 1e-12, "{layers}: value {i}: {a} vs {e}");
            }
        }
        // TensorFlow SAME: the extra padding goes at the end.
        let [top, left, bottom, right] = got;
        assert!(bottom >= top && bottom - top <= 1 && right >= left && right - left <= 1);
    }
}

#[test]
fn pooling_matches_the_definitions() {
    let net = network(Shape::new(4, 6, 2), "maxpool2x3,avgpool2x1,dense:2", 1);
    let input = DMatrix::from_fn(48, 1, |i, _| ((i * 7) % 11) as f64);
    let trace = net.forward_trace(input.clone());
    let x = |c: usize, y: usize, xx: usize| input[((c * 4 + y) * 6 + xx, 0)];
    let pooled = &trace.activations[1];
    assert_eq!(net.shapes()[1], Shape::new(2, 2, 2));
    for c in 0..2 {
        for oy in 0..2 {
            for ox in 0..2 {
                let mut best = f64::MIN;
                for ky in 0..2 {
                    for kx in 0..3 {
                        best = best.max(x(c, oy * 2 + ky, ox * 3 + kx));
                    }
                }
                assert_eq!(pooled[((c * 2 + oy) * 2 + ox, 0)], best);
            }
        }
    }
    let averaged = &trace.activations[2];
    assert_eq!(net.shapes()[2], Shape::new(1, 2, 2));
    for c in 0..2 {
        for ox in 0..2 {
            let mean = (pooled[((c * 2) * 2 + ox, 0)] + pooled[((c * 2 + 1) * 2 + ox, 0)]) / 2.0;
            assert!((averaged[(c * 2 + ox, 0)] - mean).abs() < 1e-12);
        }
    }
}

#[test]
fn max_pool_ties_go_to_the_first_maximum_in_forward_and_backward() {
    let net = network(Shape::new(2, 2, 1), "maxpool2,dense:1", 1);
    let input = DMatrix::from_column_slice(4, 1, &[1.0, 3.0, 3.0, 3.0]);
    let trace = net.forward_trace(input);
    assert_eq!(trace.activations[1][(0, 0)], 3.0);
    let (_, input_grad) = net.backward_with_input_grad(&trace, DMatrix::from_element(1, 1, 1.0));
    let w = net.params()[0].0[(0, 0)];
    assert_eq!(input_grad.as_slice(), &[0.0, w, 0.0, 0.0]);
}

#[test]
fn gap_and_flatten_move_values_as_documented() {
    let net = network(Shape::new(2, 2, 2), "gap,dense:1", 1);
    let input = DMatrix::from_column_slice(8, 1, &[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]);
    let trace = net.forward_trace(input.clone());
    assert_eq!(trace.activations[1].as_slice(), &[2.5, 25.0]);
    let net = network(Shape::new(2, 2, 2), "flatten,dense:1", 1);
    let trace = net.forward_trace(input.clone());
    assert_eq!(trace.activations[1], input);
}

// ---------------------------------------------------------------- shapes

fn specs(text: &str) -> Vec<LayerSpec> {
    parse_layers(text).unwrap()
}

fn build(input: Shape, specs: &[LayerSpec]) -> Result<Network<f32>, ShapeError> {
    Network::new(
        input,
        specs,
        Activation::Relu,
        Activation::Identity,
        Init::He,
        &mut Rng::new(1),
    )
}

fn shape_error(input: Shape, text: &str) -> String {
    build(input, &specs(text)).unwrap_err().to_string()
}

#[test]
fn the_mnist_cnn_has_the_documented_shapes_parameters_and_macs() {
    let net = build(
        Shape::new(28, 28, 1),
        &specs("conv3x3:16,maxpool2,conv3x3:32,maxpool2,dense:64,dense:10"),
    )
    .unwrap();
    assert_eq!(
        net.shapes(),
        vec![
            Shape::new(28, 28, 1),
            Shape::new(28, 28, 16),
            Shape::new(14, 14, 16),
            Shape::new(14, 14, 32),
            Shape::new(7, 7, 32),
            Shape::vector(64),
            Shape::vector(10),
        ]
    );
    assert_eq!(net.n_inputs(), 784);
    assert_eq!(net.n_outputs(), 10);
    assert_eq!(
        net.n_parameters(),
        16 * 9 + 16 + 32 * 144 + 32 + 64 * 1568 + 64 + 10 * 64 + 10
    );
    assert_eq!(
        net.macs(),
        28 * 28 * 16 * 9 + 14 * 14 * 32 * 144 + 1568 * 64 + 64 * 10
    );
    let params = net.params();
    assert_eq!(params[0].0.shape(), (16, 9));
    assert_eq!(params[1].0.shape(), (32, 144));
    assert_eq!(params[2].0.shape(), (64, 1568));
    assert!(params.iter().all(|(_, b)| b.iter().all(|&v| v == 0.0)));
    assert!(net.as_dense_chain().is_none());
    assert!(net.is_finite());
    // The resolved architecture: every activation set.
    let resolved = net.specs();
    assert_eq!(
        resolved.iter().map(LayerSpec::token).collect::<Vec<_>>(),
        [
            "conv3x3:16:relu",
            "maxpool2",
            "conv3x3:32:relu",
            "maxpool2",
            "dense:64:relu",
            "dense:10:identity"
        ]
    );
    // Rebuilding from the resolved specs draws the same weights.
    assert_eq!(build(Shape::new(28, 28, 1), &resolved).unwrap(), net);
}

#[test]
fn shapes_of_strides_padding_and_depthwise() {
    let net = build(
        Shape::new(49, 10, 1),
        &specs("conv10x4s2:8,dw3x3s2,conv5x3v:4,conv1x1:6,gap,dense:3"),
    )
    .unwrap();
    assert_eq!(
        net.shapes(),
        vec![
            Shape::new(49, 10, 1),
            Shape::new(25, 5, 8),
            Shape::new(13, 3, 8),
            Shape::new(9, 1, 4),
            Shape::new(9, 1, 6),
            Shape::vector(6),
            Shape::vector(3),
        ]
    );
    let Layer::Conv2d(conv) = &net.layers[0] else {
        panic!()
    };
    // out 25: pad_total = 24 * 2 + 10 - 49 = 9 -> 4 before, 5 after; width: 4 * 2 + 4 - 10 = 2.
    assert_eq!(conv.pad_begin(), [4, 1]);
    assert_eq!(conv.pad_end(), [5, 1]);
    assert_eq!(conv.onnx_pads(), [4, 1, 5, 1]);
    let Layer::Conv2d(valid) = &net.layers[2] else {
        panic!()
    };
    assert_eq!(valid.onnx_pads(), [0, 0, 0, 0]);
    let net = build(
        Shape::new(1, 16, 3),
        &specs("conv1d5s2:4,conv1d3v:2,dense:2"),
    )
    .unwrap();
    assert_eq!(
        net.shapes()[1..3],
        [Shape::new(1, 8, 4), Shape::new(1, 6, 2)]
    );
}

#[test]
fn every_shape_error_names_the_layer_and_the_problem() {
    let input = Shape::new(28, 28, 1);
    assert_eq!(
        build(input, &[]).unwrap_err().to_string(),
        "the network has no layers"
    );
    assert_eq!(
        build(Shape::new(0, 28, 1), &specs("dense:2")).unwrap_err(),
        ShapeError::EmptyInput(Shape::new(0, 28, 1))
    );
    assert_eq!(
        shape_error(input, "conv3x3:16,maxpool2,maxpool2,maxpool2,dense:10"),
        "layer 4 (maxpool2): input 7x7 does not divide: (7 - 2) is not a multiple of stride 2"
    );
    assert_eq!(
        shape_error(Shape::new(6, 7, 1), "maxpool3s2,dense:10"),
        "layer 1 (maxpool3s2): input 6x7 does not divide: (6 - 3) is not a multiple of stride 2"
    );
    assert_eq!(
        shape_error(Shape::new(4, 4, 1), "conv5x5v:8,dense:10"),
        "layer 1 (conv5x5v:8): kernel 5x5 is larger than its input 4x4"
    );
    assert_eq!(
        shape_error(Shape::new(8, 8, 2), "dw3x3,dw1x9v,dense:10"),
        "layer 2 (dw1x9v): kernel 1x9 is larger than its input 8x8"
    );
    assert_eq!(
        shape_error(Shape::new(8, 8, 2), "maxpool2,avgpool5,dense:10"),
        "layer 2 (avgpool5): kernel 5x5 is larger than its input 4x4"
    );
    assert_eq!(
        shape_error(input, "conv3x3:16,maxpool2"),
        "layer 2 (maxpool2): the last layer must be dense (the output layer, `dense:K` with K \
         outputs)"
    );
    assert_eq!(
        shape_error(input, "conv3x3:16,gap"),
        "layer 2 (gap): the last layer must be dense (the output layer, `dense:K` with K outputs)"
    );
    // Specs from a model file can hold zeros that the parser refuses.
    let zero_cases: [(LayerSpec, &str); 5] = [
        (
            LayerSpec::Dense {
                n_outputs: 0,
                activation: None,
            },
            "layer 1 (dense:0): a dense layer needs at least one output",
        ),
        (
            LayerSpec::Conv2d {
                out_channels: 0,
                kernel: [3, 3],
                stride: [1, 1],
                padding: Padding::Same,
                activation: None,
            },
            "layer 1 (conv3x3:0): a convolution needs at least one output channel",
        ),
        (
            LayerSpec::Conv2d {
                out_channels: 4,
                kernel: [0, 3],
                stride: [1, 1],
                padding: Padding::Same,
                activation: None,
            },
            "layer 1 (conv0x3:4): kernel 0x3 has a zero size",
        ),
        (
            LayerSpec::DepthwiseConv2d {
                kernel: [3, 3],
                stride: [1, 0],
                padding: Padding::Valid,
                activation: None,
            },
            "layer 1 (dw3x3s1x0v): stride 1x0 has a zero size",
        ),
        (
            LayerSpec::MaxPool2d {
                kernel: [2, 2],
                stride: [0, 0],
            },
            "layer 1 (maxpool2s0): stride 0x0 has a zero size",
        ),
    ];
    for (spec, message) in zero_cases {
        let specs = [
            spec,
            LayerSpec::Dense {
                n_outputs: 2,
                activation: None,
            },
        ];
        assert_eq!(build(input, &specs).unwrap_err().to_string(), message);
    }
}

#[test]
fn from_parts_accepts_a_wired_network_and_names_every_mismatch() {
    let input = Shape::new(8, 8, 2);
    let net = build(
        input,
        &specs("conv3x3:4,maxpool2,dw3x3,gap,flatten,dense:3"),
    )
    .unwrap();
    let rebuilt = Network::from_parts(input, net.layers.clone()).unwrap();
    assert_eq!(rebuilt, net);

    let broken = |edit: &dyn Fn(&mut Vec<Layer<f32>>)| {
        let mut layers = net.layers.clone();
        edit(&mut layers);
        Network::from_parts(input, layers).unwrap_err().to_string()
    };
    assert_eq!(
        broken(&|layers| {
            let Layer::Conv2d(c) = &mut layers[0] else {
                panic!()
            };
            c.weights = DMatrix::zeros(4, 17);
        }),
        "layer 1 (conv3x3:4:relu): weights are 4x17, expected 4x18 (out_channels x \
         in_channels*kh*kw)"
    );
    assert_eq!(
        broken(&|layers| {
            let Layer::Conv2d(c) = &mut layers[0] else {
                panic!()
            };
            c.bias = DVector::zeros(3);
        }),
        "layer 1 (conv3x3:4:relu): the bias has 3 values, expected 4"
    );
    assert_eq!(
        broken(&|layers| {
            let Layer::DepthwiseConv2d(c) = &mut layers[2] else {
                panic!()
            };
            c.weights = DMatrix::zeros(4, 8);
        }),
        "layer 3 (dw3x3:relu): weights are 4x8, expected 4x9 (channels x kh*kw)"
    );
    assert_eq!(
        broken(&|layers| {
            let Layer::MaxPool2d(p) = &mut layers[1] else {
                panic!()
            };
            p.input_shape = Shape::new(8, 8, 3);
        }),
        "layer 2 (maxpool2): its recorded input shape 8x8x3 differs from the shape 8x8x4 it is \
         given"
    );
    assert_eq!(
        broken(&|layers| {
            let Layer::MaxPool2d(p) = &mut layers[1] else {
                panic!()
            };
            p.output_shape = Shape::new(3, 3, 4);
        }),
        "layer 2 (maxpool2): its recorded output shape 3x3x4 differs from the wiring's 4x4x4"
    );
    assert_eq!(
        broken(&|layers| {
            let Layer::Dense(d) = &mut layers[5] else {
                panic!()
            };
            d.weights = DMatrix::zeros(3, 5);
        }),
        "layer 6 (dense:3:identity): weights are 3x5, expected 3x4 (outputs x inputs)"
    );
    assert_eq!(
        broken(&|layers| {
            layers.pop();
        }),
        "layer 5 (flatten): the last layer must be dense (the output layer, `dense:K` with K \
         outputs)"
    );
    assert_eq!(
        Network::<f32>::from_parts(input, Vec::new()).unwrap_err(),
        ShapeError::NoLayers
    );
}

// ---------------------------------------------------------------- parsing

#[test]
fn parse_layers_reads_every_documented_token() {
    use Activation::*;
    let conv = |out_channels, kernel, stride, padding, activation| LayerSpec::Conv2d {
        out_channels,
        kernel,
        stride,
        padding,
        activation,
    };
    let cases: Vec<(&str, LayerSpec)> = vec![
        (
            "dense:64",
            LayerSpec::Dense {
                n_outputs: 64,
                activation: None,
            },
        ),
        (
            "dense:10:sigmoid",
            LayerSpec::Dense {
                n_outputs: 10,
                activation: Some(Sigmoid),
            },
        ),
        ("conv3x3:16", conv(16, [3, 3], [1, 1], Padding::Same, None)),
        (
            "conv10x4s2:64",
            conv(64, [10, 4], [2, 2], Padding::Same, None),
        ),
        ("conv5x5v:8", conv(8, [5, 5], [1, 1], Padding::Valid, None)),
        (
            "conv3x3s2x1v:8:relu6",
            conv(8, [3, 3], [2, 1], Padding::Valid, Some(Relu6)),
        ),
        ("conv1d5:16", conv(16, [1, 5], [1, 1], Padding::Same, None)),
        (
            "conv1d5s2v:16:tanh",
            conv(16, [1, 5], [1, 2], Padding::Valid, Some(Tanh)),
        ),
        (
            "conv1x1:8:identity",
            conv(8, [1, 1], [1, 1], Padding::Same, Some(Identity)),
        ),
        (
            "dw3x3",
            LayerSpec::DepthwiseConv2d {
                kernel: [3, 3],
                stride: [1, 1],
                padding: Padding::Same,
                activation: None,
            },
        ),
        (
            "dw3x3s2:relu",
            LayerSpec::DepthwiseConv2d {
                kernel: [3, 3],
                stride: [2, 2],
                padding: Padding::Same,
                activation: Some(Relu),
            },
        ),
        (
            "dw5x3v:leaky-relu",
            LayerSpec::DepthwiseConv2d {
                kernel: [5, 3],
                stride: [1, 1],
                padding: Padding::Valid,
                activation: Some(LeakyRelu { alpha: 0.01 }),
            },
        ),
        (
            "maxpool2",
            LayerSpec::MaxPool2d {
                kernel: [2, 2],
                stride: [2, 2],
            },
        ),
        (
            "maxpool3s2",
            LayerSpec::MaxPool2d {
                kernel: [3, 3],
                stride: [2, 2],
            },
        ),
        (
            "maxpool2x1",
            LayerSpec::MaxPool2d {
                kernel: [2, 1],
                stride: [2, 1],
            },
        ),
        (
            "avgpool2",
            LayerSpec::AvgPool2d {
                kernel: [2, 2],
                stride: [2, 2],
            },
        ),
        (
            "avgpool3x2s1",
            LayerSpec::AvgPool2d {
                kernel: [3, 2],
                stride: [1, 1],
            },
        ),
        ("gap", LayerSpec::GlobalAvgPool),
        ("flatten", LayerSpec::Flatten),
    ];
    for (token, spec) in &cases {
        assert_eq!(parse_layers(token).unwrap(), vec![spec.clone()], "{token}");
    }
    let all: Vec<&str> = cases.iter().map(|(t, _)| *t).collect();
    let parsed = parse_layers(&all.join(" , ")).unwrap();
    assert_eq!(
        parsed,
        cases.into_iter().map(|(_, s)| s).collect::<Vec<_>>()
    );
    assert_eq!(
        parse_layers("conv3x3:16,maxpool2,conv3x3:32,maxpool2,dense:64")
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn every_token_round_trips_through_its_canonical_text() {
    let texts = [
        "dense:64",
        "dense:10:sigmoid",
        "conv3x3:16",
        "conv10x4s2:64",
        "conv5x5v:8",
        "conv3x3s2x1v:8:relu6",
        "conv1d5:16",
        "conv1d5s2v:16:tanh",
        "conv1x1:8:identity",
        "conv1x5s2:3",
        "conv2x5s1x3:3",
        "dw3x3",
        "dw3x3s2:relu",
        "dw5x3v:leaky-relu",
        "dw3x3:leaky-relu=0.2",
        "maxpool2",
        "maxpool3s2",
        "maxpool2x1",
        "maxpool2x3s1x2",
        "avgpool2",
        "avgpool3x2s1",
        "gap",
        "flatten",
    ];
    for text in texts {
        let spec = parse_layers(text).unwrap().remove(0);
        let token = spec.token();
        assert_eq!(parse_layers(&token).unwrap(), vec![spec.clone()], "{text}");
        assert_eq!(spec.to_string(), token);
    }
    // Canonical forms: conv1d for a [1, K] kernel with row stride 1, the pool stride only when
    // it differs from the kernel.
    let canonical = |text: &str| parse_layers(text).unwrap()[0].token();
    assert_eq!(canonical("conv1x5:16"), "conv1d5:16");
    assert_eq!(canonical("conv1x5s1x2v:16"), "conv1d5s2v:16");
    assert_eq!(canonical("conv1x5s2:16"), "conv1x5s2:16");
    assert_eq!(canonical("conv3x3s1:16"), "conv3x3:16");
    assert_eq!(canonical("maxpool2s2"), "maxpool2");
    assert_eq!(canonical("maxpool2x2"), "maxpool2");
    assert_eq!(canonical("dw3x3:leaky-relu=0.01"), "dw3x3:leaky-relu");
}

#[test]
fn every_bad_token_is_named_with_what_was_expected() {
    let error = |text: &str| parse_layers(text).unwrap_err();
    let cases: [(&str, usize, &str, &str); 22] = [
        ("", 1, "", "expected at least one layer"),
        ("dense:10,,dense:2", 2, "", "found an empty token"),
        ("dense:10,pool2", 2, "pool2", "expected a layer: `dense:N`"),
        (
            "dense",
            1,
            "dense",
            "the number of outputs after `dense:`, e.g. `dense:16`",
        ),
        ("dense:0", 1, "dense:0", "(a positive integer), found `0`"),
        ("dense:ten", 1, "dense:ten", "found `ten`"),
        (
            "dense:10:swish",
            1,
            "dense:10:swish",
            "an activation (`relu`",
        ),
        (
            "dense:10:relu:x",
            1,
            "dense:10:relu:x",
            "after the activation `relu`, found `:x`",
        ),
        (
            "conv3:16",
            1,
            "conv3:16",
            "a kernel `KxK` or `KHxKW` after `conv`",
        ),
        ("conv3x:16", 1, "conv3x:16", "found nothing"),
        (
            "conv3x3",
            1,
            "conv3x3",
            "the number of output channels after `conv3x3:`",
        ),
        ("conv3x3q:16", 1, "conv3x3q:16", "found `q`"),
        (
            "conv3x3s0:16",
            1,
            "conv3x3s0:16",
            "stride `S` or `SHxSW` after `s`",
        ),
        ("conv0x3:16", 1, "conv0x3:16", "found `0`"),
        ("convAxB:16", 1, "convAxB:16", "found `AxB`"),
        (
            "conv1d:16",
            1,
            "conv1d:16",
            "the kernel width after `conv1d`",
        ),
        ("conv1d5x3:16", 1, "conv1d5x3:16", "found `x3`"),
        ("dw3x3:16", 1, "dw3x3:16", "an activation"),
        ("maxpool", 1, "maxpool", "the window size after `maxpool`"),
        ("maxpool2v", 1, "maxpool2v", "pooling is always valid"),
        (
            "maxpool2:relu",
            1,
            "maxpool2:relu",
            "nothing after `maxpool2`",
        ),
        ("gap:relu", 1, "gap:relu", "nothing after `gap`"),
    ];
    for (text, position, token, expected) in cases {
        let e = error(text);
        assert_eq!((e.position, e.token.as_str()), (position, token), "{text}");
        let message = e.to_string();
        assert!(
            message.starts_with(&format!("layer {position} (`{token}`): expected ")),
            "{text}: {message}"
        );
        assert!(message.contains(expected), "{text}: {message}");
    }
    assert_eq!(
        error("conv3x3:16, maxpool2 ,flatten:3").to_string(),
        "layer 3 (`flatten:3`): expected nothing after `flatten` (it takes no channel count or \
         activation), found `:3`"
    );
}

#[test]
fn layer_specs_serialise_with_a_snake_case_type_tag() {
    let specs = specs("conv3x3s2v:16:relu,dw3x3,maxpool2,avgpool2,gap,flatten,dense:10");
    let json = serde_json::to_string(&specs).unwrap();
    assert!(json.starts_with(
        r#"[{"type":"conv2d","out_channels":16,"kernel":[3,3],"stride":[2,2],"padding":"valid","activation":{"kind":"relu"}}"#
    ), "{json}");
    for tag in [
        r#""type":"depthwise_conv2d""#,
        r#""type":"max_pool2d""#,
        r#""type":"avg_pool2d""#,
        r#""type":"global_avg_pool""#,
        r#""type":"flatten""#,
        r#""type":"dense","n_outputs":10,"activation":null"#,
    ] {
        assert!(json.contains(tag), "{tag} in {json}");
    }
    let back: Vec<LayerSpec> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, specs);
    let shape: Shape = serde_json::from_str(r#"{"h":28,"w":28,"c":1}"#).unwrap();
    assert_eq!(shape, Shape::new(28, 28, 1));
}

// ---------------------------------------------------------------- MLP equivalence, training

#[test]
fn a_network_of_dense_layers_is_the_mlp_bit_for_bit() {
    let widths = [12, 9, 7, 4];
    let mlp = Mlp::<f32>::new(
        &widths,
        Activation::Relu,
        Activation::Identity,
        Init::He,
        &mut Rng::new(3),
    );
    let input_shape = Shape::new(2, 2, 3);
    let net = Network::from_mlp(input_shape, mlp.clone());
    let mut rng = Rng::new(8);
    let input = DMatrix::from_fn(12, 5, |_, _| rng.normal_f64() as f32);
    assert_eq!(net.forward(&input), mlp.forward(&input));
    assert_eq!(
        net.forward_trace(input.clone()).output(),
        mlp.forward_trace(input).output()
    );
    assert_eq!(net.as_dense_chain().unwrap().len(), 3);
    assert_eq!(net.to_mlp().unwrap(), mlp);
    assert_eq!(net.n_parameters(), mlp.n_parameters());
    assert_eq!(net.n_outputs(), 4);
    // Network::new draws the MLP's weights from the same seed.
    let built = Network::<f32>::new(
        input_shape,
        &specs("dense:9,dense:7,dense:4"),
        Activation::Relu,
        Activation::Identity,
        Init::He,
        &mut Rng::new(3),
    )
    .unwrap();
    assert_eq!(built, net);
}

#[test]
fn step_params_is_step_on_the_same_dense_layers() {
    let mut mlp = Mlp::<f32>::new(
        &[5, 4, 3],
        Activation::Tanh,
        Activation::Identity,
        Init::Xavier,
        &mut Rng::new(2),
    );
    let mut net = Network::from_mlp(Shape::vector(5), mlp.clone());
    let config = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.01,
    };
    let mut a = OptimizerState::new(config, &mlp.layers);
    let mut b = OptimizerState::for_params(config, &net.params());
    assert_eq!(a, b);
    assert!(b.matches_params(&net.params()));
    let mut rng = Rng::new(6);
    for _ in 0..3 {
        let input = DMatrix::from_fn(5, 4, |_, _| rng.normal_f64() as f32);
        let labels = [0u32, 1, 2, 1];
        let (_, grads) =
            mlp.loss_and_gradients(input, BatchTargets::Classes(&labels), Loss::CrossEntropy);
        a.step(&mut mlp.layers, &grads, 0.01);
        b.step_params(net.params_mut(), &grads, 0.01);
    }
    assert_eq!(a, b);
    assert_eq!(net.to_mlp().unwrap(), mlp);
    let other = Network::<f32>::from_mlp(
        Shape::vector(5),
        Mlp::new(
            &[5, 6, 3],
            Activation::Tanh,
            Activation::Identity,
            Init::Xavier,
            &mut Rng::new(2),
        ),
    );
    assert!(!b.matches_params(&other.params()));
}

/// 6x6 images of a vertical (class 0) or horizontal (class 1) bar at a random place, with noise.
fn bars(rng: &mut Rng, n: usize) -> (DMatrix<f32>, Vec<u32>) {
    let mut input = DMatrix::zeros(36, n);
    let mut labels = Vec::with_capacity(n);
    for col in 0..n {
        let class = rng.below(2) as u32;
        let at = rng.below(6) as usize;
        for y in 0..6 {
            for x in 0..6 {
                let on = if class == 0 { x == at } else { y == at };
                input[(y * 6 + x, col)] =
                    if on { 1.0 } else { 0.0 } + 0.1 * rng.normal_f64() as f32;
            }
        }
        labels.push(class);
    }
    (input, labels)
}

#[test]
fn a_tiny_cnn_learns_bars_with_plain_sgd() {
    let mut rng = Rng::new(21);
    let mut net = Network::<f32>::new(
        Shape::new(6, 6, 1),
        &specs("conv3x3:4,maxpool2,dense:2"),
        Activation::Relu,
        Activation::Identity,
        Init::He,
        &mut rng,
    )
    .unwrap();
    let config = OptimizerConfig::Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    let mut optimizer = OptimizerState::for_params(config, &net.params());
    let (test_input, test_labels) = bars(&mut rng, 200);
    let test_loss = |net: &Network<f32>| {
        let mut scratch = DMatrix::zeros(0, 0);
        Loss::CrossEntropy.value_and_gradient(
            &net.forward(&test_input),
            BatchTargets::Classes(&test_labels),
            &mut scratch,
        )
    };
    let before = test_loss(&net);
    for _ in 0..300 {
        let (input, labels) = bars(&mut rng, 16);
        let (loss, grads) =
            net.loss_and_gradients(input, BatchTargets::Classes(&labels), Loss::CrossEntropy);
        assert!(loss.is_finite());
        optimizer.step_params(net.params_mut(), &grads, 0.1);
    }
    let after = test_loss(&net);
    assert!(net.is_finite());
    assert!(after < 0.3 * before, "test loss {before} -> {after}");
    let output = net.forward(&test_input);
    let correct = (0..200)
        .filter(|&col| {
            let predicted = if output[(0, col)] >= output[(1, col)] {
                0
            } else {
                1
            };
            predicted == test_labels[col]
        })
        .count();
    assert!(
        correct >= 190,
        "{correct} of 200 right, test loss {before} -> {after}"
    );
}

#[test]
fn forward_is_the_traced_forward_and_f32_follows_f64() {
    let layers = "conv3x3:4,maxpool2,dw3x3s2,avgpool2,conv1x1:3:sigmoid,gap,dense:5,dense:3";
    let net = network(Shape::new(16, 16, 2), layers, 13);
    let mut rng = Rng::new(14);
    let input = random_matrix(&mut rng, 512, 4);
    let trace = net.forward_trace(input.clone());
    assert_eq!(&net.forward(&input), trace.output());
    assert_eq!(trace.into_input(), input);
    // The same weights in f32 give the f64 outputs to f32 precision.
    let to_f32 = |m: &DMatrix<f64>| m.map(|v| v as f32);
    let mut net32 = Network::<f32>::new(
        net.input_shape,
        &net.specs(),
        Activation::Tanh,
        Activation::Identity,
        Init::Xavier,
        &mut Rng::new(1),
    )
    .unwrap();
    for ((w32, b32), (w64, b64)) in net32.params_mut().into_iter().zip(net.params()) {
        *w32 = to_f32(w64);
        *b32 = b64.map(|v| v as f32);
    }
    let out32 = net32.forward(&to_f32(&input));
    let out64 = net.forward(&input);
    for (a, b) in out32.iter().zip(out64.iter()) {
        assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
    }
}

/// The magnitude network bounds every value the real network computes, layer by layer: its
/// output on `|x|` is at least `|output|` and at least each term's absolute sum, for dense,
/// convolution, depthwise and pooling layers with tanh, relu and sigmoid.
#[test]
fn the_magnitude_network_bounds_every_output_and_its_terms() {
    let mut rng = Rng::new(77);
    for (input, layers) in [
        (Shape::vector(6), "dense:5:relu,dense:4:tanh,dense:3"),
        (Shape::new(6, 6, 2), "conv3x3:3:relu,dw3x3:sigmoid,dense:4"),
        (Shape::new(8, 8, 1), "conv3x3:2:relu,maxpool2,dense:2"),
        (
            Shape::new(6, 6, 1),
            "conv3x3:2,avgpool2,dense:3:relu,dense:2",
        ),
    ] {
        let net = network(input, layers, 5);
        let magnitude = net.magnitude_network();
        let x = random_matrix(&mut rng, input.len(), 7);
        let out = net.forward(&x);
        let bound = magnitude.forward(&x.map(f64::abs));
        for (o, b) in out.iter().zip(bound.iter()) {
            assert!(*b >= o.abs() - 1e-12, "{layers}: |{o}| > {b}");
        }
        // The last dense layer's bound is exactly |W| m + |b| of the previous bound.
        let Some(Layer::Dense(last)) = magnitude.layers.last() else {
            panic!("{layers}: the last layer is dense")
        };
        assert!(last.weights.iter().all(|w| *w >= 0.0) && last.bias.iter().all(|b| *b >= 0.0));
    }
}

/// Skip connections: an add of an earlier value, a tap that branches off an earlier value, a
/// value read three times; the input's gradient too (its value feeds an add).
#[test]
fn residual_gradients() {
    assert_gradients(
        Shape::new(5, 5, 2),
        "conv3x3:2,conv3x3:2:identity,add@1,dense:3",
    );
    assert_gradients(
        Shape::new(4, 4, 2),
        "conv3x3:2:identity,add@0:tanh,gap,dense:3",
    );
    // ResNet's projection shortcut: the tap hands value 2 to a strided 1x1 convolution.
    assert_gradients(
        Shape::new(6, 6, 1),
        "conv3x3:2,conv3x3s2:3,@1,conv1x1s2:3:identity,add@2:relu,dense:3",
    );
    // Value 1 read by the next layer, an add and a tap.
    assert_gradients(
        Shape::new(4, 4, 2),
        "conv1x1:2,conv3x3:2:identity,add@1,@1,add@3:sigmoid,dense:3",
    );
}

/// The sum of an add is exactly the two values' sum; a tap's output is the value it names;
/// the forward pass without a trace drops values early and gives the traced output.
#[test]
fn residual_layers_compute_their_definitions() {
    let layers = "conv3x3:2,conv3x3:2:identity,add@1:relu,@1,conv1x1:2:identity,add@3,dense:3";
    let net = network(Shape::new(4, 4, 2), layers, 21);
    let mut rng = Rng::new(22);
    let input = random_matrix(&mut rng, 32, 3);
    let trace = net.forward_trace(input.clone());
    let a = &trace.activations;
    assert_eq!(a[3], (&a[2] + &a[1]).map(|v| v.max(0.0)));
    assert_eq!(a[4], a[1]);
    // add@3 with the default (tanh) activation: the previous value plus value 3
    assert_eq!(a[6], (&a[5] + &a[3]).map(f64::tanh));
    assert_eq!(&net.forward(&input), trace.output());
    assert!(!net.is_chain());
    assert_eq!(
        net.reads(),
        vec![
            (0, None),
            (1, None),
            (2, Some(1)),
            (1, None),
            (4, None),
            (5, Some(3)),
            (6, None)
        ]
    );
    assert_eq!(net.last_readers(), vec![0, 3, 2, 5, 4, 5, 6, 7]);
    // The architecture round-trips through from_parts.
    let rebuilt = Network::from_parts(net.input_shape, net.layers.clone()).unwrap();
    assert_eq!(rebuilt, net);
}

#[test]
fn residual_shape_errors_name_the_layer() {
    let input = Shape::new(6, 6, 1);
    assert_eq!(
        shape_error(input, "conv3x3:2,conv3x3s2:2,add@1,dense:3"),
        "layer 3 (add@1): value 1 has shape 6x6x2, the previous value 3x3x2: an add needs one shape"
    );
    assert_eq!(
        shape_error(input, "conv3x3:2,add@5,dense:3"),
        "layer 2 (add@5): value 5 is not computed before it (0 is the input, 1 the previous \
         layer's output)"
    );
    assert_eq!(
        shape_error(input, "conv3x3:2,@2,dense:3"),
        "layer 2 (@2): value 2 is not computed before it (0 is the input, 1 the previous \
         layer's output)"
    );
    // conv3x3:3's output (value 2) is dropped by the tap after it.
    assert_eq!(
        shape_error(input, "conv3x3:2,conv3x3:3,@1,dense:3"),
        "layer 2 (conv3x3:3): nothing reads its output (value 2): name it with `@2` or \
         `add@2`, or drop it"
    );
}

#[test]
fn residual_tokens_parse_and_round_trip() {
    assert_eq!(specs("@4"), vec![LayerSpec::Tap { value: 4 }]);
    assert_eq!(specs("@0"), vec![LayerSpec::Tap { value: 0 }]);
    assert_eq!(
        specs("add@1:relu"),
        vec![LayerSpec::Add {
            from: 1,
            activation: Some(Activation::Relu)
        }]
    );
    assert_eq!(
        specs("add@12"),
        vec![LayerSpec::Add {
            from: 12,
            activation: None
        }]
    );
    for token in ["@4", "add@1:relu", "add@0:identity", "add@3"] {
        assert_eq!(specs(token)[0].token(), token);
    }
    let error = |text: &str| parse_layers(text).unwrap_err().to_string();
    assert_eq!(
        error("@"),
        "layer 1 (`@`): expected a value number after `@` (0 the input, N the output of layer \
         N), e.g. `@4`, found `nothing`"
    );
    assert_eq!(
        error("dense:4,@2:relu"),
        "layer 2 (`@2:relu`): expected nothing after `@2` (it takes no channel count or \
         activation), found `:relu`"
    );
    assert_eq!(
        error("add"),
        "layer 1 (`add`): expected `add@N`: the value to add after `@` (N the output of layer \
         N), e.g. `add@1:relu`, found `add`"
    );
    assert_eq!(
        error("add@x"),
        "layer 1 (`add@x`): expected a value number after `add@`, e.g. `add@1:relu`, found `x`"
    );
    let json = serde_json::to_string(&specs("@4,add@1:relu")).unwrap();
    assert_eq!(
        json,
        r#"[{"type":"tap","value":4},{"type":"add","from":1,"activation":{"kind":"relu"}}]"#
    );
}

/// MLPerf Tiny's models by name: the parameter and MAC counts its benchmark states (ResNet-8
/// 78 K and 12.5 M, DS-CNN 22.6 K and 2.66 M, MobileNetV1 0.25 211 K and 7.49 M), each counted
/// layer by layer here, batch normalization folded.
#[test]
fn mlperf_tinys_models_have_their_published_sizes() {
    let counts = [
        ("resnet8", 10, 77_706, 12_501_632),
        ("ds-cnn", 12, 22_604, 2_656_768),
        ("mobilenet-v1-0.25", 2, 210_850, 7_489_664),
    ];
    for ((name, input, _), (same, classes, parameters, macs)) in
        super::layer_spec::MLPERF_TINY.iter().zip(counts)
    {
        assert_eq!(*name, same);
        let mut layers = specs(name);
        layers.push(LayerSpec::Dense {
            n_outputs: classes,
            activation: None,
        });
        let net = build(Shape::new(input[0], input[1], input[2]), &layers).unwrap();
        assert_eq!(
            (net.n_parameters(), net.macs()),
            (parameters, macs),
            "{name}"
        );
    }
    // ResNet-8's stages end at 32x32x16, 16x16x32 and 8x8x64.
    // A model's name is the whole list, not a token.
    assert!(parse_layers("resnet8,dense:10").is_err());
    let mut layers = specs("resnet8");
    layers.push(LayerSpec::Dense {
        n_outputs: 10,
        activation: None,
    });
    let shapes = build(Shape::new(32, 32, 3), &layers).unwrap().shapes();
    assert_eq!(
        [shapes[4], shapes[9], shapes[14]],
        [
            Shape::new(32, 32, 16),
            Shape::new(16, 16, 32),
            Shape::new(8, 8, 64)
        ]
    );
}
