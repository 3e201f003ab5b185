//! The layer graph: a chain of typed layers ([`Layer`]) with shape inference, initialisation,
//! forward and backward passes (`docs/layer-graph.md`).
//!
//! A batch is a matrix with one sample per column, each sample in CHW order. A `Dense` layer
//! reads its input flattened, so a `Dense` after a spatial value needs no `Flatten` layer.

use super::conv::{
    conv2d_backward, conv2d_forward, depthwise_conv2d_backward, depthwise_conv2d_forward, Conv2d,
    DepthwiseConv2d,
};
use super::layer_spec::LayerSpec;
use super::pool::{
    avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward, global_avg_pool_forward,
    max_pool2d_backward, max_pool2d_forward, Flatten, GlobalAvgPool, Pool2d,
};
use super::residual::{add_forward, Add, Tap};
use super::shape::{output_extent, Padding, Shape};
use super::{Activation, BatchTargets, Dense, DenseGradients, Init, Loss, Mlp};
use crate::rng::Rng;
use nalgebra::{DMatrix, DVector, RealField};
use std::fmt;

/// One layer of a [`Network`].
#[derive(Debug, Clone, PartialEq)]
pub enum Layer<T: RealField + Copy> {
    Dense(Dense<T>),
    Conv2d(Conv2d<T>),
    DepthwiseConv2d(DepthwiseConv2d<T>),
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    GlobalAvgPool(GlobalAvgPool),
    Flatten(Flatten),
    Tap(Tap),
    Add(Add),
}

impl<T: RealField + Copy> Layer<T> {
    /// The layer's architecture, its activation resolved (`Some`).
    pub fn spec(&self) -> LayerSpec {
        match self {
            Layer::Dense(d) => LayerSpec::Dense {
                n_outputs: d.n_outputs(),
                activation: Some(d.activation),
            },
            Layer::Conv2d(c) => LayerSpec::Conv2d {
                out_channels: c.output_shape.c,
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding,
                activation: Some(c.activation),
            },
            Layer::DepthwiseConv2d(c) => LayerSpec::DepthwiseConv2d {
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding,
                activation: Some(c.activation),
            },
            Layer::MaxPool2d(p) => LayerSpec::MaxPool2d {
                kernel: p.kernel,
                stride: p.stride,
            },
            Layer::AvgPool2d(p) => LayerSpec::AvgPool2d {
                kernel: p.kernel,
                stride: p.stride,
            },
            Layer::GlobalAvgPool(_) => LayerSpec::GlobalAvgPool,
            Layer::Flatten(_) => LayerSpec::Flatten,
            Layer::Tap(t) => LayerSpec::Tap { value: t.value },
            Layer::Add(a) => LayerSpec::Add {
                from: a.from,
                activation: Some(a.activation),
            },
        }
    }

    /// The `--layers` token of the layer.
    pub fn token(&self) -> String {
        self.spec().token()
    }

    /// The shape of the layer's output value.
    pub fn output_shape(&self) -> Shape {
        match self {
            Layer::Dense(d) => Shape::vector(d.n_outputs()),
            Layer::Conv2d(c) => c.output_shape,
            Layer::DepthwiseConv2d(c) => c.output_shape,
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => p.output_shape,
            Layer::GlobalAvgPool(g) => g.output_shape(),
            Layer::Flatten(f) => f.output_shape(),
            Layer::Tap(t) => t.shape,
            Layer::Add(a) => a.shape,
        }
    }

    /// The value the layer reads first (its only one, but for an Add), when it is layer
    /// `index`: the previous value, or a tap's.
    pub fn input_value(&self, index: usize) -> usize {
        match self {
            Layer::Tap(t) => t.value,
            _ => index,
        }
    }

    /// The fused activation of a Dense, Conv2d, DepthwiseConv2d or Add layer.
    pub fn activation(&self) -> Option<Activation> {
        match self {
            Layer::Dense(d) => Some(d.activation),
            Layer::Conv2d(c) => Some(c.activation),
            Layer::DepthwiseConv2d(c) => Some(c.activation),
            Layer::Add(a) => Some(a.activation),
            _ => None,
        }
    }

    /// The weights and bias of a trainable layer.
    pub fn params(&self) -> Option<(&DMatrix<T>, &DVector<T>)> {
        match self {
            Layer::Dense(d) => Some((&d.weights, &d.bias)),
            Layer::Conv2d(c) => Some((&c.weights, &c.bias)),
            Layer::DepthwiseConv2d(c) => Some((&c.weights, &c.bias)),
            _ => None,
        }
    }

    pub fn params_mut(&mut self) -> Option<(&mut DMatrix<T>, &mut DVector<T>)> {
        match self {
            Layer::Dense(d) => Some((&mut d.weights, &mut d.bias)),
            Layer::Conv2d(c) => Some((&mut c.weights, &mut c.bias)),
            Layer::DepthwiseConv2d(c) => Some((&mut c.weights, &mut c.bias)),
            _ => None,
        }
    }

    pub fn n_parameters(&self) -> usize {
        self.params().map_or(0, |(w, b)| w.len() + b.len())
    }

    /// Multiply-accumulates per sample (every kernel tap counted; pooling counts 0).
    pub fn macs(&self) -> usize {
        match self {
            Layer::Dense(d) => d.weights.len(),
            Layer::Conv2d(c) => c.macs(),
            Layer::DepthwiseConv2d(c) => c.macs(),
            _ => 0,
        }
    }
}

/// A layer graph that does not fit together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeError {
    /// The architecture has no layers.
    NoLayers,
    /// The input shape has a zero dimension.
    EmptyInput(Shape),
    /// Layer `index` (1 for the first layer: the position in `--layers`) with token `token`.
    Layer {
        index: usize,
        token: String,
        problem: String,
    },
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeError::NoLayers => f.write_str("the network has no layers"),
            ShapeError::EmptyInput(shape) => {
                write!(f, "the input shape {shape} has a zero dimension")
            }
            ShapeError::Layer {
                index,
                token,
                problem,
            } => write!(f, "layer {index} ({token}): {problem}"),
        }
    }
}

impl std::error::Error for ShapeError {}

fn layer_error(index: usize, spec: &LayerSpec, problem: String) -> ShapeError {
    ShapeError::Layer {
        index: index + 1,
        token: spec.token(),
        problem,
    }
}

/// The output shape of `spec` (layer `index`, 0-based), given the shapes of the values before
/// it (`shapes[0]` the input, `shapes[index]` the previous value).
pub fn infer_shape(index: usize, spec: &LayerSpec, shapes: &[Shape]) -> Result<Shape, ShapeError> {
    let fail = |problem: String| layer_error(index, spec, problem);
    let earlier = |value: usize| {
        shapes.get(value).copied().filter(|_| value <= index).ok_or_else(|| {
            fail(format!(
                "value {value} is not computed before it (0 is the input, {index} the previous layer's output)"
            ))
        })
    };
    let input = match *spec {
        LayerSpec::Tap { value } => return earlier(value),
        _ => earlier(index)?,
    };
    let check_window = |kernel: [usize; 2], stride: [usize; 2]| -> Result<(), ShapeError> {
        if kernel.contains(&0) {
            return Err(fail(format!(
                "kernel {}x{} has a zero size",
                kernel[0], kernel[1]
            )));
        }
        if stride.contains(&0) {
            return Err(fail(format!(
                "stride {}x{} has a zero size",
                stride[0], stride[1]
            )));
        }
        Ok(())
    };
    let larger = |kernel: [usize; 2]| {
        format!(
            "kernel {}x{} is larger than its input {}x{}",
            kernel[0], kernel[1], input.h, input.w
        )
    };
    let conv_plane = |kernel: [usize; 2], stride: [usize; 2], padding: Padding| {
        check_window(kernel, stride)?;
        match (
            output_extent(input.h, kernel[0], stride[0], padding),
            output_extent(input.w, kernel[1], stride[1], padding),
        ) {
            (Some(h), Some(w)) => Ok((h.output, w.output)),
            _ => Err(fail(larger(kernel))),
        }
    };
    match *spec {
        LayerSpec::Dense { n_outputs, .. } => {
            if n_outputs == 0 {
                return Err(fail("a dense layer needs at least one output".to_owned()));
            }
            Ok(Shape::vector(n_outputs))
        }
        LayerSpec::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
            ..
        } => {
            if out_channels == 0 {
                return Err(fail(
                    "a convolution needs at least one output channel".to_owned(),
                ));
            }
            let (h, w) = conv_plane(kernel, stride, padding)?;
            Ok(Shape::new(h, w, out_channels))
        }
        LayerSpec::DepthwiseConv2d {
            kernel,
            stride,
            padding,
            ..
        } => {
            let (h, w) = conv_plane(kernel, stride, padding)?;
            Ok(Shape::new(h, w, input.c))
        }
        LayerSpec::MaxPool2d { kernel, stride } | LayerSpec::AvgPool2d { kernel, stride } => {
            check_window(kernel, stride)?;
            if kernel[0] > input.h || kernel[1] > input.w {
                return Err(fail(larger(kernel)));
            }
            for (size, k, s) in [
                (input.h, kernel[0], stride[0]),
                (input.w, kernel[1], stride[1]),
            ] {
                if (size - k) % s != 0 {
                    return Err(fail(format!(
                        "input {}x{} does not divide: ({size} - {k}) is not a multiple of stride {s}",
                        input.h, input.w
                    )));
                }
            }
            Ok(Shape::new(
                (input.h - kernel[0]) / stride[0] + 1,
                (input.w - kernel[1]) / stride[1] + 1,
                input.c,
            ))
        }
        LayerSpec::GlobalAvgPool => Ok(Shape::vector(input.c)),
        LayerSpec::Flatten => Ok(Shape::vector(input.len())),
        LayerSpec::Tap { .. } => unreachable!("a tap's shape is returned above"),
        LayerSpec::Add { from, .. } => {
            let other = earlier(from)?;
            if other != input {
                return Err(fail(format!(
                    "value {from} has shape {other}, the previous value {input}: an add needs one shape"
                )));
            }
            Ok(input)
        }
    }
}

/// Every value but the last is read by a later layer: a layer whose output nothing reads
/// (the layer before a tap, unless something names it) is a mistake in the list.
fn check_reads(specs: &[LayerSpec]) -> Result<(), ShapeError> {
    let mut read = vec![false; specs.len() + 1];
    for (index, spec) in specs.iter().enumerate() {
        match *spec {
            LayerSpec::Tap { value } => read[value.min(specs.len())] = true,
            LayerSpec::Add { from, .. } => {
                read[index] = true;
                read[from.min(specs.len())] = true;
            }
            _ => read[index] = true,
        }
    }
    match read[..specs.len()].iter().position(|&r| !r) {
        None => Ok(()),
        Some(0) => Err(layer_error(
            0,
            &specs[0],
            "nothing reads the input (value 0)".to_owned(),
        )),
        Some(value) => Err(layer_error(
            value - 1,
            &specs[value - 1],
            format!("nothing reads its output (value {value}): name it with `@{value}` or `add@{value}`, or drop it"),
        )),
    }
}

/// `rows x cols` weights drawn row-major as in [`Mlp::new`].
fn init_weights<T: RealField + Copy>(
    rows: usize,
    cols: usize,
    fan_in: usize,
    fan_out: usize,
    init: Init,
    rng: &mut Rng,
) -> DMatrix<T> {
    let mut values = Vec::with_capacity(rows * cols);
    for _ in 0..rows * cols {
        let v = match init {
            Init::He => rng.normal_f64() * (2.0 / fan_in as f64).sqrt(),
            Init::Xavier => {
                let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
                (2.0 * rng.uniform_f64() - 1.0) * bound
            }
        };
        values.push(nalgebra::convert::<f64, T>(v));
    }
    DMatrix::from_row_slice(rows, cols, &values)
}

/// What one layer's forward pass keeps for its backward pass, beyond its input and output.
#[derive(Debug, Clone)]
pub(crate) enum Cache<T: RealField + Copy> {
    None,
    /// Conv2d: the im2col matrix.
    Columns(DMatrix<T>),
    /// MaxPool2d: the winning input index of every output value.
    Argmax(Vec<u32>),
}

/// What [`Network::forward_trace`] keeps for [`Network::backward`].
#[derive(Debug, Clone)]
pub struct NetworkTrace<T: RealField + Copy> {
    /// The pre-activation of every layer with an activation; an empty matrix for the others.
    pub pre_activations: Vec<DMatrix<T>>,
    /// The input followed by the output of every layer.
    pub activations: Vec<DMatrix<T>>,
    caches: Vec<Cache<T>>,
    /// Quantization-aware training's straight-through estimator: per layer, 1 where the
    /// layer's int8 output (or table input) was in range and 0 where it saturated, multiplied
    /// into the gradient of the layer's output. Empty for a float forward pass.
    ste_masks: Vec<Option<DMatrix<T>>>,
}

impl<T: RealField + Copy> NetworkTrace<T> {
    /// A trace built by another forward pass (quantization-aware training's integer one).
    pub(crate) fn from_parts(
        pre_activations: Vec<DMatrix<T>>,
        activations: Vec<DMatrix<T>>,
        caches: Vec<Cache<T>>,
        ste_masks: Vec<Option<DMatrix<T>>>,
    ) -> Self {
        Self {
            pre_activations,
            activations,
            caches,
            ste_masks,
        }
    }

    pub fn output(&self) -> &DMatrix<T> {
        self.activations
            .last()
            .expect("a trace holds at least the input")
    }

    /// The input matrix, handed back so its storage can hold the next batch.
    pub fn into_input(mut self) -> DMatrix<T> {
        self.activations.swap_remove(0)
    }
}

/// A chain of layers from an input of shape `input_shape` to a Dense output layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Network<T: RealField + Copy> {
    pub input_shape: Shape,
    pub layers: Vec<Layer<T>>,
}

impl<T: RealField + Copy> Network<T> {
    /// Wires and initialises a network. Weights are drawn like [`Mlp::new`] (row-major per
    /// weight tensor, layer by layer; He: N(0, 2 / fan_in), Xavier: U(-a, a),
    /// a = sqrt(6 / (fan_in + fan_out))), biases start at 0. Fans: Dense `in`, `out`;
    /// Conv2d `in_c kh kw`, `out_c kh kw` (PyTorch's); DepthwiseConv2d `kh kw` both ways.
    ///
    /// A layer without an activation takes `hidden_activation`, the last `output_activation`.
    /// The last layer must be Dense (the output layer).
    pub fn new(
        input_shape: Shape,
        specs: &[LayerSpec],
        hidden_activation: Activation,
        output_activation: Activation,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Self, ShapeError> {
        check_ends(input_shape, specs)?;
        // Every shape is checked before the first weight is drawn.
        let mut shapes = vec![input_shape];
        for (index, spec) in specs.iter().enumerate() {
            let shape = infer_shape(index, spec, &shapes)?;
            shapes.push(shape);
        }
        check_reads(specs)?;
        let mut layers = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let (input, output) = (shapes[index], shapes[index + 1]);
            let activation = spec.activation().unwrap_or(if index + 1 == specs.len() {
                output_activation
            } else {
                hidden_activation
            });
            let layer = match *spec {
                LayerSpec::Dense { n_outputs, .. } => Layer::Dense(Dense {
                    weights: init_weights(
                        n_outputs,
                        input.len(),
                        input.len(),
                        n_outputs,
                        init,
                        rng,
                    ),
                    bias: DVector::zeros(n_outputs),
                    activation,
                }),
                LayerSpec::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    ..
                } => {
                    let taps = kernel[0] * kernel[1];
                    Layer::Conv2d(Conv2d {
                        weights: init_weights(
                            out_channels,
                            input.c * taps,
                            input.c * taps,
                            out_channels * taps,
                            init,
                            rng,
                        ),
                        bias: DVector::zeros(out_channels),
                        kernel,
                        stride,
                        padding,
                        activation,
                        input_shape: input,
                        output_shape: output,
                    })
                }
                LayerSpec::DepthwiseConv2d {
                    kernel,
                    stride,
                    padding,
                    ..
                } => {
                    let taps = kernel[0] * kernel[1];
                    Layer::DepthwiseConv2d(DepthwiseConv2d {
                        weights: init_weights(input.c, taps, taps, taps, init, rng),
                        bias: DVector::zeros(input.c),
                        kernel,
                        stride,
                        padding,
                        activation,
                        input_shape: input,
                        output_shape: output,
                    })
                }
                LayerSpec::MaxPool2d { kernel, stride } => Layer::MaxPool2d(Pool2d {
                    kernel,
                    stride,
                    input_shape: input,
                    output_shape: output,
                }),
                LayerSpec::AvgPool2d { kernel, stride } => Layer::AvgPool2d(Pool2d {
                    kernel,
                    stride,
                    input_shape: input,
                    output_shape: output,
                }),
                LayerSpec::GlobalAvgPool => {
                    Layer::GlobalAvgPool(GlobalAvgPool { input_shape: input })
                }
                LayerSpec::Flatten => Layer::Flatten(Flatten { input_shape: input }),
                LayerSpec::Tap { value } => Layer::Tap(Tap {
                    value,
                    shape: output,
                }),
                LayerSpec::Add { from, .. } => Layer::Add(Add {
                    from,
                    shape: output,
                    activation,
                }),
            };
            layers.push(layer);
        }
        Ok(Self {
            input_shape,
            layers,
        })
    }

    /// A network from loaded layers (a model file), every shape checked against the wiring:
    /// the shapes each layer records, its weight and bias sizes, and a Dense last layer.
    pub fn from_parts(input_shape: Shape, layers: Vec<Layer<T>>) -> Result<Self, ShapeError> {
        let specs: Vec<LayerSpec> = layers.iter().map(Layer::spec).collect();
        check_ends(input_shape, &specs)?;
        check_reads(&specs)?;
        let mut shapes = vec![input_shape];
        for (index, (layer, spec)) in layers.iter().zip(&specs).enumerate() {
            let current = shapes[layer.input_value(index)];
            let expected = infer_shape(index, spec, &shapes)?;
            let fail = |problem: String| Err(layer_error(index, spec, problem));
            let check_shapes = |recorded_in: Shape, recorded_out: Shape| {
                if recorded_in != current {
                    return fail(format!(
                        "its recorded input shape {recorded_in} differs from the shape {current} it is given"
                    ));
                }
                if recorded_out != expected {
                    return fail(format!(
                        "its recorded output shape {recorded_out} differs from the wiring's {expected}"
                    ));
                }
                Ok(())
            };
            let check_params = |(weights, bias): (&DMatrix<T>, &DVector<T>),
                                rows: usize,
                                cols: usize,
                                layout: &str| {
                if weights.shape() != (rows, cols) {
                    return fail(format!(
                        "weights are {}x{}, expected {rows}x{cols} ({layout})",
                        weights.nrows(),
                        weights.ncols()
                    ));
                }
                if bias.len() != rows {
                    return fail(format!(
                        "the bias has {} values, expected {rows}",
                        bias.len()
                    ));
                }
                Ok(())
            };
            match layer {
                Layer::Dense(d) => check_params(
                    (&d.weights, &d.bias),
                    expected.c,
                    current.len(),
                    "outputs x inputs",
                )?,
                Layer::Conv2d(c) => {
                    check_shapes(c.input_shape, c.output_shape)?;
                    check_params(
                        (&c.weights, &c.bias),
                        expected.c,
                        current.c * c.kernel[0] * c.kernel[1],
                        "out_channels x in_channels*kh*kw",
                    )?;
                }
                Layer::DepthwiseConv2d(c) => {
                    check_shapes(c.input_shape, c.output_shape)?;
                    check_params(
                        (&c.weights, &c.bias),
                        current.c,
                        c.kernel[0] * c.kernel[1],
                        "channels x kh*kw",
                    )?;
                }
                Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                    check_shapes(p.input_shape, p.output_shape)?;
                }
                Layer::GlobalAvgPool(g) => check_shapes(g.input_shape, g.output_shape())?,
                Layer::Flatten(f) => check_shapes(f.input_shape, f.output_shape())?,
                Layer::Tap(t) => check_shapes(current, t.shape)?,
                Layer::Add(a) => check_shapes(current, a.shape)?,
            }
            shapes.push(expected);
        }
        Ok(Self {
            input_shape,
            layers,
        })
    }

    /// An MLP as a network of Dense layers; `input_shape.len()` must equal its input width.
    pub fn from_mlp(input_shape: Shape, mlp: Mlp<T>) -> Self {
        assert_eq!(
            input_shape.len(),
            mlp.n_inputs(),
            "the input shape {input_shape} does not hold the MLP's {} inputs",
            mlp.n_inputs()
        );
        Self {
            input_shape,
            layers: mlp.layers.into_iter().map(Layer::Dense).collect(),
        }
    }

    /// The Dense layers, when every layer is Dense (an MLP).
    pub fn as_dense_chain(&self) -> Option<Vec<&Dense<T>>> {
        self.layers
            .iter()
            .map(|layer| match layer {
                Layer::Dense(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// A copy as an [`Mlp`], when every layer is Dense.
    pub fn to_mlp(&self) -> Option<Mlp<T>> {
        self.as_dense_chain().map(|layers| Mlp {
            layers: layers.into_iter().cloned().collect(),
        })
    }

    /// The input shape, then each layer's output shape.
    pub fn shapes(&self) -> Vec<Shape> {
        let mut shapes = vec![self.input_shape];
        shapes.extend(self.layers.iter().map(Layer::output_shape));
        shapes
    }

    /// The resolved architecture (every activation `Some`).
    pub fn specs(&self) -> Vec<LayerSpec> {
        self.layers.iter().map(Layer::spec).collect()
    }

    pub fn n_inputs(&self) -> usize {
        self.input_shape.len()
    }

    pub fn n_outputs(&self) -> usize {
        self.layers
            .last()
            .map_or(self.n_inputs(), |layer| layer.output_shape().len())
    }

    pub fn n_parameters(&self) -> usize {
        self.layers.iter().map(Layer::n_parameters).sum()
    }

    /// Multiply-accumulates per sample.
    pub fn macs(&self) -> usize {
        self.layers.iter().map(Layer::macs).sum()
    }

    /// The weights and bias of every trainable layer (Dense, Conv2d, DepthwiseConv2d), in order.
    pub fn params(&self) -> Vec<(&DMatrix<T>, &DVector<T>)> {
        self.layers.iter().filter_map(Layer::params).collect()
    }

    pub fn params_mut(&mut self) -> Vec<(&mut DMatrix<T>, &mut DVector<T>)> {
        self.layers
            .iter_mut()
            .filter_map(Layer::params_mut)
            .collect()
    }

    /// Whether every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.params()
            .iter()
            .all(|(w, b)| w.iter().chain(b.iter()).all(|v| v.is_finite()))
    }

    /// The same network with every weight and bias replaced by its absolute value. Run on
    /// `|x|`, it bounds the magnitudes every sum of the real network adds up (`|W| |x| + |b|`,
    /// layer by layer; each activation is monotone and no larger on `m >= |z|` than `m`'s
    /// image): the scale of the f32 rounding an output can carry, cancellation included.
    pub fn magnitude_network(&self) -> Network<T> {
        let abs = |m: &DMatrix<T>| m.map(|v| v.abs());
        let abs_v = |v: &DVector<T>| v.map(|x| x.abs());
        let mut network = self.clone();
        for layer in &mut network.layers {
            match layer {
                Layer::Dense(d) => {
                    d.weights = abs(&d.weights);
                    d.bias = abs_v(&d.bias);
                }
                Layer::Conv2d(c) => {
                    c.weights = abs(&c.weights);
                    c.bias = abs_v(&c.bias);
                }
                Layer::DepthwiseConv2d(c) => {
                    c.weights = abs(&c.weights);
                    c.bias = abs_v(&c.bias);
                }
                Layer::MaxPool2d(_)
                | Layer::AvgPool2d(_)
                | Layer::GlobalAvgPool(_)
                | Layer::Flatten(_)
                | Layer::Tap(_)
                | Layer::Add(_) => {}
            }
        }
        network
    }

    /// The output for every column of `input` (CHW order), without keeping intermediates.
    pub fn forward(&self, input: &DMatrix<T>) -> DMatrix<T> {
        if !self.is_chain() {
            return self.forward_graph(input);
        }
        let mut current = None::<DMatrix<T>>;
        for layer in &self.layers {
            let x = current.as_ref().unwrap_or(input);
            let (mut z, _) = layer_forward(layer, x, None, false);
            if let Some(activation) = layer.activation() {
                activation.forward_in_place(&mut z);
            }
            current = Some(z);
        }
        current.unwrap_or_else(|| input.clone())
    }

    /// Whether every layer reads the previous value only (no tap, no add).
    pub fn is_chain(&self) -> bool {
        !self
            .layers
            .iter()
            .any(|layer| matches!(layer, Layer::Tap(_) | Layer::Add(_)))
    }

    /// The values each layer reads: its first input, and an add's second.
    pub fn reads(&self) -> Vec<(usize, Option<usize>)> {
        self.layers
            .iter()
            .enumerate()
            .map(|(index, layer)| {
                let other = match layer {
                    Layer::Add(a) => Some(a.from),
                    _ => None,
                };
                (layer.input_value(index), other)
            })
            .collect()
    }

    /// For every value, the last layer that reads it (the last value: the layer count).
    pub fn last_readers(&self) -> Vec<usize> {
        let mut last = vec![0; self.layers.len() + 1];
        for (index, (first, other)) in self.reads().into_iter().enumerate() {
            last[first] = index;
            if let Some(other) = other {
                last[other] = index;
            }
        }
        last[self.layers.len()] = self.layers.len();
        last
    }

    /// [`Network::forward`] over a graph with skip connections: a value is dropped after its
    /// last reader.
    fn forward_graph(&self, input: &DMatrix<T>) -> DMatrix<T> {
        let last = self.last_readers();
        let mut values: Vec<Option<DMatrix<T>>> = vec![None; self.layers.len() + 1];
        values[0] = Some(input.clone());
        for (index, layer) in self.layers.iter().enumerate() {
            let first = layer.input_value(index);
            let (mut z, _) = {
                let x = values[first]
                    .as_ref()
                    .expect("a value lives until its last reader");
                let other = match layer {
                    Layer::Add(a) => values[a.from].as_ref(),
                    _ => None,
                };
                layer_forward(layer, x, other, false)
            };
            if let Some(activation) = layer.activation() {
                activation.forward_in_place(&mut z);
            }
            values[index + 1] = Some(z);
            for value in values.iter_mut().take(index + 1).enumerate() {
                if last[value.0] <= index {
                    *value.1 = None;
                }
            }
        }
        values
            .pop()
            .flatten()
            .expect("the last value is the output")
    }

    /// The forward pass, keeping what [`Network::backward`] needs.
    pub fn forward_trace(&self, input: DMatrix<T>) -> NetworkTrace<T> {
        assert_eq!(input.nrows(), self.n_inputs(), "network input length");
        let mut pre_activations = Vec::with_capacity(self.layers.len());
        let mut activations = Vec::with_capacity(self.layers.len() + 1);
        let mut caches = Vec::with_capacity(self.layers.len());
        activations.push(input);
        for (index, layer) in self.layers.iter().enumerate() {
            let x = &activations[layer.input_value(index)];
            let other = match layer {
                Layer::Add(a) => Some(&activations[a.from]),
                _ => None,
            };
            let (z, cache) = layer_forward(layer, x, other, true);
            match layer.activation() {
                Some(activation) => {
                    let mut a = z.clone();
                    activation.forward_in_place(&mut a);
                    pre_activations.push(z);
                    activations.push(a);
                }
                None => {
                    pre_activations.push(DMatrix::zeros(0, 0));
                    activations.push(z);
                }
            }
            caches.push(cache);
        }
        NetworkTrace {
            pre_activations,
            activations,
            caches,
            ste_masks: Vec::new(),
        }
    }

    /// Backpropagates `output_grad` (dL/d output, one column per sample) and returns the
    /// gradients of every trainable layer, in order.
    pub fn backward(
        &self,
        trace: &NetworkTrace<T>,
        output_grad: DMatrix<T>,
    ) -> Vec<DenseGradients<T>> {
        self.backward_impl(trace, output_grad, false).0
    }

    /// [`Network::backward`], and also dL/d input (`n_inputs x batch`).
    pub fn backward_with_input_grad(
        &self,
        trace: &NetworkTrace<T>,
        output_grad: DMatrix<T>,
    ) -> (Vec<DenseGradients<T>>, DMatrix<T>) {
        let (grads, input_grad) = self.backward_impl(trace, output_grad, true);
        (grads, input_grad.expect("the input gradient was asked for"))
    }

    fn backward_impl(
        &self,
        trace: &NetworkTrace<T>,
        output_grad: DMatrix<T>,
        want_input_grad: bool,
    ) -> (Vec<DenseGradients<T>>, Option<DMatrix<T>>) {
        let mut grads = Vec::with_capacity(self.layers.len());
        // dL/d value for every value, summed over its readers; a chain has one reader each.
        let mut value_grads: Vec<Option<DMatrix<T>>> = vec![None; self.layers.len() + 1];
        value_grads[self.layers.len()] = Some(output_grad);
        let accumulate = |slot: &mut Option<DMatrix<T>>, g: DMatrix<T>| match slot {
            Some(sum) => *sum += g,
            None => *slot = Some(g),
        };
        for (index, layer) in self.layers.iter().enumerate().rev() {
            let Some(mut grad) = value_grads[index + 1].take() else {
                continue;
            };
            let first = layer.input_value(index);
            // The input's gradient is only computed when asked for.
            let need_input = first > 0 || want_input_grad;
            let input = &trace.activations[first];
            if let Some(Some(mask)) = trace.ste_masks.get(index) {
                grad.component_mul_assign(mask);
            }
            if let Some(activation) = layer.activation() {
                activation.backward_in_place(
                    &trace.pre_activations[index],
                    &trace.activations[index + 1],
                    &mut grad,
                );
            }
            let input_grad = match layer {
                Layer::Dense(d) => {
                    grads.push(DenseGradients {
                        weights: &grad * input.transpose(),
                        bias: grad.column_sum(),
                    });
                    need_input.then(|| d.weights.transpose() * &grad)
                }
                Layer::Conv2d(c) => {
                    let Cache::Columns(columns) = &trace.caches[index] else {
                        panic!("the trace of a conv2d layer holds its im2col matrix")
                    };
                    let (g, input_grad) = conv2d_backward(c, columns, &grad, need_input);
                    grads.push(g);
                    input_grad
                }
                Layer::DepthwiseConv2d(c) => {
                    let (g, input_grad) = depthwise_conv2d_backward(c, input, &grad, need_input);
                    grads.push(g);
                    input_grad
                }
                Layer::MaxPool2d(p) => {
                    let Cache::Argmax(argmax) = &trace.caches[index] else {
                        panic!("the trace of a max pool layer holds its argmax")
                    };
                    need_input.then(|| max_pool2d_backward(p, argmax, &grad))
                }
                Layer::AvgPool2d(p) => need_input.then(|| avg_pool2d_backward(p, &grad)),
                Layer::GlobalAvgPool(g) => need_input.then(|| global_avg_pool_backward(g, &grad)),
                Layer::Flatten(_) | Layer::Tap(_) => need_input.then_some(grad),
                Layer::Add(a) => {
                    if a.from > 0 || want_input_grad {
                        accumulate(&mut value_grads[a.from], grad.clone());
                    }
                    need_input.then_some(grad)
                }
            };
            if let Some(g) = input_grad {
                accumulate(&mut value_grads[first], g);
            }
        }
        grads.reverse();
        (grads, value_grads[0].take())
    }

    /// The mean loss of a batch and the gradients of every trainable layer.
    pub fn loss_and_gradients(
        &self,
        input: DMatrix<T>,
        targets: BatchTargets<'_>,
        loss: Loss,
    ) -> (T, Vec<DenseGradients<T>>) {
        let trace = self.forward_trace(input);
        let mut output_grad = DMatrix::zeros(0, 0);
        let value = loss.value_and_gradient(trace.output(), targets, &mut output_grad);
        let grads = self.backward(&trace, output_grad);
        (value, grads)
    }
}

/// A non-empty input and layer list ending in a Dense layer.
fn check_ends(input_shape: Shape, specs: &[LayerSpec]) -> Result<(), ShapeError> {
    if input_shape.is_empty() {
        return Err(ShapeError::EmptyInput(input_shape));
    }
    let Some(last) = specs.last() else {
        return Err(ShapeError::NoLayers);
    };
    if !matches!(last, LayerSpec::Dense { .. }) {
        return Err(layer_error(
            specs.len() - 1,
            last,
            "the last layer must be dense (the output layer, `dense:K` with K outputs)".to_owned(),
        ));
    }
    Ok(())
}

/// One layer's pre-activation (its output, for layers without an activation) and, with
/// `keep`, what its backward pass needs. `input` is the value the layer reads first
/// ([`Layer::input_value`]), `other` an add's second value.
pub(crate) fn layer_forward<T: RealField + Copy>(
    layer: &Layer<T>,
    input: &DMatrix<T>,
    other: Option<&DMatrix<T>>,
    keep: bool,
) -> (DMatrix<T>, Cache<T>) {
    match layer {
        Layer::Dense(d) => (d.linear_forward(input), Cache::None),
        Layer::Conv2d(c) => {
            let (z, columns) = conv2d_forward(c, input);
            (
                z,
                if keep {
                    Cache::Columns(columns)
                } else {
                    Cache::None
                },
            )
        }
        Layer::DepthwiseConv2d(c) => (depthwise_conv2d_forward(c, input), Cache::None),
        Layer::MaxPool2d(p) => {
            let (out, argmax) = max_pool2d_forward(p, input);
            (
                out,
                if keep {
                    Cache::Argmax(argmax)
                } else {
                    Cache::None
                },
            )
        }
        Layer::AvgPool2d(p) => (avg_pool2d_forward(p, input), Cache::None),
        Layer::GlobalAvgPool(g) => (global_avg_pool_forward(g, input), Cache::None),
        Layer::Flatten(_) | Layer::Tap(_) => (input.clone(), Cache::None),
        Layer::Add(_) => (
            add_forward(input, other.expect("an add is given its second value")),
            Cache::None,
        ),
    }
}
