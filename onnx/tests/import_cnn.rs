//! Convolutional networks through the importer: the PyTorch CNN fixtures (legacy and
//! dynamo exporters, and a Conv1D network) fold into a layer graph whose float forward
//! pass reproduces the exporter's outputs within 1e-5, with BatchNormalization folded into
//! the convolutions; every Conv or pooling attribute the layer graph cannot represent is
//! refused with one message naming the node, its op and the reason.

mod common;

use std::path::{Path, PathBuf};

use kiln_onnx::builder::{attr_int, attr_ints, Dim, GraphBuilder, Producer};
use kiln_onnx::cnn::{cnn_to_model, CnnLayer, CnnModel};
use kiln_onnx::import::{self, ImportedMlp, OutputKind};
use kiln_onnx::mlp::{encode_model, Activation, DenseLayer, InputNormalization, MlpExportOptions};
use kiln_onnx::proto::{attribute_proto::AttributeType, AttributeProto, ModelProto};

const TOLERANCE: f64 = 1e-5;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/import")
}

fn activate(activation: Activation, z: f32) -> f32 {
    match activation {
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu { alpha } => {
            if z >= 0.0 {
                z
            } else {
                alpha * z
            }
        }
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Relu6 => z.clamp(0.0, 6.0),
        Activation::Identity => z,
    }
}

/// A plain float forward pass of a layer graph on one sample in CHW order.
fn forward(cnn: &CnnModel, normalization: &InputNormalization, row: &[f32]) -> Vec<f32> {
    let mut x: Vec<f32> = match normalization {
        InputNormalization::None => row.to_vec(),
        InputNormalization::Scale { scale } => row.iter().map(|v| v * scale).collect(),
        InputNormalization::Standardize { mean, inv_std } => row
            .iter()
            .zip(mean)
            .zip(inv_std)
            .map(|((v, m), s)| (v - m) * s)
            .collect(),
    };
    let [mut c, mut h, mut w] = cnn.input_shape;
    let out_size = |input: usize, k: usize, s: usize, pads: usize| (input + pads - k) / s + 1;
    // Every value so far with its shape: value 0 is the input, layer k writes value k + 1.
    let mut values = vec![(x.clone(), [c, h, w])];
    for layer in &cnn.layers {
        match layer {
            CnnLayer::Dense(DenseLayer {
                n_inputs,
                n_outputs,
                weights,
                bias,
                activation,
            }) => {
                assert_eq!(*n_inputs, x.len());
                x = (0..*n_outputs)
                    .map(|o| {
                        let z = weights[o * n_inputs..(o + 1) * n_inputs]
                            .iter()
                            .zip(&x)
                            .fold(0.0f32, |acc, (w, v)| acc + w * v)
                            + bias[o];
                        activate(*activation, z)
                    })
                    .collect();
                (c, h, w) = (*n_outputs, 1, 1);
            }
            CnnLayer::Conv2d {
                kernel,
                stride,
                pads,
                weights,
                bias,
                activation,
                out_channels: n,
                ..
            }
            | CnnLayer::DepthwiseConv2d {
                kernel,
                stride,
                pads,
                weights,
                bias,
                activation,
                channels: n,
            } => {
                let depthwise = matches!(layer, CnnLayer::DepthwiseConv2d { .. });
                let oh = out_size(h, kernel[0], stride[0], pads[0] + pads[2]);
                let ow = out_size(w, kernel[1], stride[1], pads[1] + pads[3]);
                let per_filter = if depthwise { 1 } else { c };
                let mut y = vec![0.0f32; n * oh * ow];
                for o in 0..*n {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut acc = bias[o];
                            for ci in 0..per_filter {
                                let channel = if depthwise { o } else { ci };
                                for ky in 0..kernel[0] {
                                    for kx in 0..kernel[1] {
                                        let iy = (oy * stride[0] + ky) as isize - pads[0] as isize;
                                        let ix = (ox * stride[1] + kx) as isize - pads[1] as isize;
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize
                                        {
                                            continue;
                                        }
                                        let v = x[(channel * h + iy as usize) * w + ix as usize];
                                        let wi = ((o * per_filter + ci) * kernel[0] + ky)
                                            * kernel[1]
                                            + kx;
                                        acc += weights[wi] * v;
                                    }
                                }
                            }
                            y[(o * oh + oy) * ow + ox] = activate(*activation, acc);
                        }
                    }
                }
                (x, c, h, w) = (y, *n, oh, ow);
            }
            CnnLayer::MaxPool2d { kernel, stride } | CnnLayer::AvgPool2d { kernel, stride } => {
                let max = matches!(layer, CnnLayer::MaxPool2d { .. });
                let oh = out_size(h, kernel[0], stride[0], 0);
                let ow = out_size(w, kernel[1], stride[1], 0);
                let mut y = Vec::with_capacity(c * oh * ow);
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let window = (0..kernel[0]).flat_map(|ky| {
                                let x = &x;
                                (0..kernel[1]).map(move |kx| {
                                    x[(ch * h + oy * stride[0] + ky) * w + ox * stride[1] + kx]
                                })
                            });
                            y.push(if max {
                                window.fold(f32::NEG_INFINITY, f32::max)
                            } else {
                                window.sum::<f32>() / (kernel[0] * kernel[1]) as f32
                            });
                        }
                    }
                }
                (x, h, w) = (y, oh, ow);
            }
            CnnLayer::GlobalAvgPool => {
                x = x
                    .chunks_exact(h * w)
                    .map(|plane| plane.iter().sum::<f32>() / (h * w) as f32)
                    .collect();
                (h, w) = (1, 1);
            }
            CnnLayer::Flatten => (c, h, w) = (c * h * w, 1, 1),
            CnnLayer::Tap { value } => (x, [c, h, w]) = values[*value].clone(),
            CnnLayer::Add { other, activation } => {
                let (other, shape) = &values[*other];
                assert_eq!(*shape, [c, h, w], "the operands of an Add");
                x = x
                    .iter()
                    .zip(other)
                    .map(|(a, b)| activate(*activation, a + b))
                    .collect();
            }
        }
        values.push((x.clone(), [c, h, w]));
    }
    assert_eq!(x.len(), c * h * w);
    x
}

/// The first input and the first output of an expected-outputs file.
fn expected(name: &str) -> (Vec<usize>, Vec<f32>, Vec<f64>) {
    let text = std::fs::read_to_string(data_dir().join(format!("{name}.expected.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let first = |key: &str| {
        json[key]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone()
    };
    let input = first("inputs");
    let shape = input["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = input["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let output = first("outputs")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    (shape, data, output)
}

/// Imports a CNN fixture and checks its forward pass against the exporter's logits.
fn check_fixture(name: &str) -> (ImportedMlp, CnnModel) {
    let path = data_dir().join(format!("{name}.onnx"));
    let (imported, _) = import::import_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let cnn = imported.cnn.clone().expect("a layer graph");
    assert!(imported.layers.is_empty());
    assert_eq!(imported.outputs[0].kind, OutputKind::Logits);
    let (shape, rows, logits) = expected(name);
    assert_eq!(&shape[1..], imported.input.dims.as_slice());
    let n: usize = shape[1..].iter().product();
    let ours: Vec<f64> = rows
        .chunks_exact(n)
        .flat_map(|row| forward(&cnn, &imported.normalization, row))
        .map(f64::from)
        .collect();
    assert_eq!(ours.len(), logits.len());
    let diff = ours
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff <= TOLERANCE, "{name}: max |diff| {diff:e}");
    assert_eq!(imported.n_outputs(), 10);
    // The layer graph is one kiln's own exporter accepts (its shape and parameter checks).
    let options = MlpExportOptions {
        opset: 13,
        with_probabilities: false,
        producer: producer(),
        doc_string: String::new(),
        metadata: Vec::new(),
    };
    cnn_to_model(&cnn, &imported.normalization, &options).unwrap_or_else(|e| panic!("{e}"));
    (imported, cnn)
}

/// The layer types and activations of a layer graph, as `docs/layer-graph.md` names them.
fn kinds(cnn: &CnnModel) -> Vec<String> {
    cnn.layers
        .iter()
        .map(|layer| match layer {
            CnnLayer::Dense(d) => format!("Dense {}:{:?}", d.n_outputs, d.activation),
            CnnLayer::Conv2d {
                out_channels,
                kernel,
                pads,
                activation,
                ..
            } => format!("Conv2d {out_channels} {kernel:?} {pads:?}:{activation:?}"),
            CnnLayer::DepthwiseConv2d {
                channels,
                kernel,
                pads,
                activation,
                ..
            } => format!("DepthwiseConv2d {channels} {kernel:?} {pads:?}:{activation:?}"),
            CnnLayer::MaxPool2d { kernel, stride } => format!("MaxPool2d {kernel:?} {stride:?}"),
            CnnLayer::AvgPool2d { kernel, stride } => format!("AvgPool2d {kernel:?} {stride:?}"),
            CnnLayer::Tap { value } => format!("Tap {value}"),
            CnnLayer::Add { other, activation } => format!("Add {other}:{activation:?}"),
            other => other.kind().to_owned(),
        })
        .collect()
}

const DIGITS_CNN: [&str; 7] = [
    "Conv2d 8 [3, 3] [1, 1, 1, 1]:Relu",
    "MaxPool2d [2, 2] [2, 2]",
    "Conv2d 16 [3, 3] [1, 1, 1, 1]:Relu",
    "DepthwiseConv2d 16 [3, 3] [1, 1, 1, 1]:Relu",
    "AvgPool2d [2, 2] [2, 2]",
    "Dense 32:Relu",
    "Dense 10:Identity",
];

#[test]
fn torch_legacy_cnn_folds_batchnorm_into_the_convolutions() {
    let (imported, cnn) = check_fixture("torch_cnn_legacy");
    assert_eq!(imported.opset, 13);
    assert_eq!((cnn.input_shape, cnn.spatial_rank), ([1, 8, 8], 2));
    assert_eq!(kinds(&cnn), DIGITS_CNN);
    assert_eq!(
        imported.normalization,
        InputNormalization::Scale { scale: 0.0625 }
    );
    // The source graph has two BatchNormalization nodes; none is left.
    let graph = import::reader::read_model(&data_dir().join("torch_cnn_legacy.onnx")).unwrap();
    let ops: Vec<&str> = graph
        .proto
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter_map(|n| n.op_type.as_deref())
        .collect();
    assert_eq!(
        ops.iter().filter(|&&op| op == "BatchNormalization").count(),
        2
    );
}

#[test]
fn torch_dynamo_cnn_with_external_data_and_reshape() {
    assert!(data_dir().join("torch_cnn_dynamo.onnx.data").exists());
    let (imported, cnn) = check_fixture("torch_cnn_dynamo");
    assert_eq!(imported.opset, 18);
    assert_eq!(kinds(&cnn), DIGITS_CNN);
}

#[test]
fn torch_conv1d_reads_n_c_l_as_height_1() {
    let (imported, cnn) = check_fixture("torch_conv1d_legacy");
    assert_eq!(imported.input.dims, [8, 8]);
    assert_eq!((cnn.input_shape, cnn.spatial_rank), ([8, 1, 8], 1));
    assert_eq!(
        kinds(&cnn),
        [
            "Conv2d 16 [1, 3] [0, 1, 0, 1]:Relu",
            "MaxPool2d [1, 2] [1, 2]",
            "DepthwiseConv2d 16 [1, 3] [0, 1, 0, 1]:Relu",
            "Dense 10:Identity",
        ]
    );
}

fn producer() -> Producer {
    Producer {
        name: "test".into(),
        version: "0".into(),
    }
}

fn n() -> Dim {
    Dim::Param("N".into())
}

fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..AttributeProto::default()
    }
}

/// `x [N, 4, 8, 8]`, then `Conv` (8 filters, or 4 x `depthwise_filters` with `group`)
/// with `conv_attrs`, `pool` (an op and its attributes) if any, GlobalAveragePool, Flatten
/// and a Gemm to 3 outputs.
fn conv_graph(
    conv_attrs: Vec<AttributeProto>,
    weight_dims: [usize; 4],
    pool: Option<(&str, Vec<AttributeProto>)>,
) -> ModelProto {
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(4), Dim::Fixed(8), Dim::Fixed(8)]);
    let [o, i, kh, kw] = weight_dims;
    g.initializer_f32(
        "w",
        &weight_dims.map(|d| d as i64),
        &vec![0.1; o * i * kh * kw],
    )
    .unwrap();
    g.initializer_f32("fc_w", &[3, o as i64], &vec![0.5; 3 * o])
        .unwrap();
    g.initializer_f32("fc_b", &[3], &[0.0; 3]).unwrap();
    g.node("Conv", "conv", &["x", "w"], &["c"], conv_attrs);
    g.node("Relu", "relu", &["c"], &["r"], vec![]);
    let pooled = match pool {
        Some((op, attrs)) => {
            g.node(op, "pool", &["r"], &["p"], attrs);
            "p"
        }
        None => "r",
    };
    g.node("GlobalAveragePool", "gap", &[pooled], &["g"], vec![]);
    g.node("Flatten", "flat", &["g"], &["f"], vec![attr_int("axis", 1)]);
    g.node(
        "Gemm",
        "fc",
        &["f", "fc_w", "fc_b"],
        &["y"],
        vec![attr_int("transB", 1)],
    );
    g.output_f32("y", &[n(), Dim::Fixed(3)]);
    g.build(13, &producer(), "").unwrap()
}

fn import_graph(dir: &Path, name: &str, model: &ModelProto) -> Result<ImportedMlp, String> {
    let path = dir.join(name);
    std::fs::write(&path, encode_model(model)).unwrap();
    import::import_file(&path)
        .map(|(imported, _)| imported)
        .map_err(|e| {
            let text = e.to_string();
            let prefix = format!("{}: ", path.display());
            text.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{text} does not name {}", path.display()))
                .to_owned()
        })
}

#[test]
fn auto_pad_same_upper_and_valid_and_explicit_same_pads_import() {
    let dir = tempfile::tempdir().unwrap();
    let conv = |name: &str, attrs: Vec<AttributeProto>| {
        let imported = import_graph(dir.path(), name, &conv_graph(attrs, [8, 4, 3, 3], None))
            .unwrap_or_else(|e| panic!("{e}"));
        match &imported.cnn.unwrap().layers[0] {
            CnnLayer::Conv2d { pads, stride, .. } => (*pads, *stride),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        conv("upper.onnx", vec![attr_string("auto_pad", "SAME_UPPER")]),
        ([1, 1, 1, 1], [1, 1])
    );
    // Stride 2 over 8: one row and column of padding, at the end (TensorFlow's SAME).
    assert_eq!(
        conv(
            "upper_s2.onnx",
            vec![
                attr_string("auto_pad", "SAME_UPPER"),
                attr_ints("strides", &[2, 2])
            ]
        ),
        ([0, 0, 1, 1], [2, 2])
    );
    assert_eq!(
        conv(
            "explicit_s2.onnx",
            vec![
                attr_ints("pads", &[0, 0, 1, 1]),
                attr_ints("strides", &[2, 2])
            ]
        ),
        ([0, 0, 1, 1], [2, 2])
    );
    assert_eq!(
        conv("valid.onnx", vec![attr_string("auto_pad", "VALID")]),
        ([0; 4], [1, 1])
    );
    // SAME_LOWER with an even total is the same padding.
    assert_eq!(
        conv("lower.onnx", vec![attr_string("auto_pad", "SAME_LOWER")]),
        ([1, 1, 1, 1], [1, 1])
    );
    // Depthwise: group = channels, one filter per channel.
    let imported = import_graph(
        dir.path(),
        "dw.onnx",
        &conv_graph(
            vec![attr_int("group", 4), attr_ints("pads", &[1, 1, 1, 1])],
            [4, 1, 3, 3],
            Some((
                "MaxPool",
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("strides", &[1, 1]),
                ],
            )),
        ),
    )
    .unwrap();
    let kinds: Vec<&str> = imported
        .cnn
        .as_ref()
        .unwrap()
        .layers
        .iter()
        .map(CnnLayer::kind)
        .collect();
    assert_eq!(
        kinds,
        ["DepthwiseConv2d", "MaxPool2d", "GlobalAvgPool", "Dense"]
    );
    assert_eq!(imported.n_outputs(), 3);
}

#[test]
fn conv_and_pooling_attributes_the_layer_graph_cannot_represent_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pads1 = || attr_ints("pads", &[1, 1, 1, 1]);
    let cases: Vec<(ModelProto, &str)> = vec![
        (
            conv_graph(vec![attr_ints("dilations", &[2, 2])], [8, 4, 3, 3], None),
            "node `conv` (Conv): unsupported attribute: dilations [2, 2] are not supported; kiln's convolutions and pooling windows are not dilated",
        ),
        (
            conv_graph(vec![attr_int("group", 2)], [8, 2, 3, 3], None),
            "node `conv` (Conv): unsupported attribute: group 2 is neither 1 nor the channel count 4 (a depthwise convolution)",
        ),
        (
            conv_graph(vec![attr_int("group", 4)], [8, 1, 3, 3], None),
            "node `conv` (Conv): unsupported attribute: group 4 with 8 filters is a depthwise convolution with 2 filters per channel; kiln's has one",
        ),
        (
            conv_graph(
                vec![
                    attr_string("auto_pad", "SAME_LOWER"),
                    attr_ints("strides", &[2, 2]),
                ],
                [8, 4, 3, 3],
                None,
            ),
            "node `conv` (Conv): unsupported attribute: auto_pad SAME_LOWER puts the odd padding row or column first; kiln pads as SAME_UPPER (TensorFlow's SAME)",
        ),
        (
            conv_graph(vec![attr_ints("pads", &[1, 1, 0, 0])], [8, 4, 3, 3], None),
            "node `conv` (Conv): unsupported attribute: pads [1, 1, 0, 0] are neither valid (all 0) nor same ([1, 1, 1, 1] for this input, kernel and stride: the odd pixel at the end)",
        ),
        (
            conv_graph(
                vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])],
                [8, 4, 3, 3],
                None,
            ),
            "node `conv` (Conv): unsupported attribute: pads [1, 1, 1, 1] are neither valid (all 0) nor same ([0, 0, 1, 1] for this input, kernel and stride: the odd pixel at the end)",
        ),
        (
            conv_graph(vec![attr_ints("kernel_shape", &[5, 5])], [8, 4, 3, 3], None),
            "node `conv` (Conv): shape mismatch: kernel_shape [5, 5] does not match the weight's [3, 3]",
        ),
        (
            conv_graph(vec![], [8, 3, 3, 3], None),
            "node `conv` (Conv): shape mismatch: the weight has shape [8, 3, 3, 3]: 3 channels per filter, but the data has 4 channels",
        ),
        (
            conv_graph(
                vec![pads1()],
                [8, 4, 3, 3],
                Some(("MaxPool", vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2]), pads1()])),
            ),
            "node `pool` (MaxPool): unsupported attribute: pads [1, 1, 1, 1]: kiln pools without padding",
        ),
        (
            conv_graph(
                vec![pads1()],
                [8, 4, 3, 3],
                Some(("AveragePool", vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2]), attr_int("ceil_mode", 1)])),
            ),
            "node `pool` (AveragePool): unsupported attribute: ceil_mode 1 is not supported; kiln's pooling windows are valid (floor)",
        ),
        (
            conv_graph(
                vec![pads1()],
                [8, 4, 3, 3],
                Some(("MaxPool", vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2])])),
            ),
            "node `pool` (MaxPool): shape mismatch: a 3x3 window with stride 2x2 over a 8x8 input drops input rows or columns; kiln needs (in - k) to be a multiple of the stride",
        ),
        (
            conv_graph(
                vec![pads1()],
                [8, 4, 3, 3],
                Some(("AveragePool", vec![attr_ints("kernel_shape", &[2, 2]), attr_string("auto_pad", "SAME_UPPER")])),
            ),
            "node `pool` (AveragePool): unsupported attribute: auto_pad SAME_UPPER: kiln pools without padding",
        ),
        (
            conv_graph(
                vec![pads1()],
                [8, 4, 3, 3],
                Some(("MaxPool", vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2]), attr_ints("dilations", &[2, 2])])),
            ),
            "node `pool` (MaxPool): unsupported attribute: dilations [2, 2] are not supported; kiln's convolutions and pooling windows are not dilated",
        ),
    ];
    for (index, (model, message)) in cases.iter().enumerate() {
        let err = import_graph(dir.path(), &format!("bad{index}.onnx"), model)
            .err()
            .unwrap_or_else(|| panic!("case {index} imported"));
        assert_eq!(err, *message, "case {index}");
    }
}

/// `Conv`, then `pool`, then `Relu` (and a second `Relu` if `twice`), then Flatten.
fn activation_after_pool(pool: &str, twice: bool) -> ModelProto {
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(4)]);
    let w: Vec<f32> = (0..18).map(|i| (i as f32 - 9.0) / 10.0).collect();
    g.initializer_f32("w", &[2, 1, 3, 3], &w).unwrap();
    g.initializer_f32("b", &[2], &[0.1, -0.2]).unwrap();
    g.node(
        "Conv",
        "conv",
        &["x", "w", "b"],
        &["c"],
        vec![attr_ints("pads", &[1, 1, 1, 1])],
    );
    g.node(
        pool,
        "pool",
        &["c"],
        &["p"],
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_ints("strides", &[2, 2]),
        ],
    );
    g.node("Relu", "relu", &["p"], &["r"], vec![]);
    let last = if twice {
        g.node("Relu", "relu2", &["r"], &["r2"], vec![]);
        "r2"
    } else {
        "r"
    };
    g.node("Flatten", "flat", &[last], &["y"], vec![]);
    g.output_f32("y", &[n(), Dim::Fixed(8)]);
    g.build(13, &producer(), "").unwrap()
}

#[test]
fn an_activation_after_a_max_pool_is_the_convolutions() {
    // relu(max_pool(conv(x))) = max_pool(relu(conv(x))): every kiln activation is
    // non-decreasing. PyTorch's MNIST example writes it that way round.
    let dir = tempfile::tempdir().unwrap();
    let imported = import_graph(
        dir.path(),
        "relu_after_max.onnx",
        &activation_after_pool("MaxPool", false),
    )
    .unwrap();
    let cnn = imported.cnn.unwrap();
    assert_eq!(
        kinds(&cnn),
        [
            "Conv2d 2 [3, 3] [1, 1, 1, 1]:Relu",
            "MaxPool2d [2, 2] [2, 2]",
            "Flatten"
        ]
    );
    // The float forward pass of the folded graph on one input, against the order of the
    // source graph (conv, max, relu) computed here.
    let x: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin()).collect();
    let ours = forward(&cnn, &InputNormalization::None, &x);
    let mut no_relu = cnn.clone();
    if let CnnLayer::Conv2d { activation, .. } = &mut no_relu.layers[0] {
        *activation = Activation::Identity;
    }
    let theirs: Vec<f32> = forward(&no_relu, &InputNormalization::None, &x)
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    assert_eq!(ours, theirs);
    assert!(ours.contains(&0.0) && ours.iter().any(|&v| v > 0.0));

    for (pool, twice, name) in [("AveragePool", false, "avg"), ("MaxPool", true, "twice")] {
        let err = import_graph(
            dir.path(),
            &format!("{name}.onnx"),
            &activation_after_pool(pool, twice),
        )
        .unwrap_err();
        assert_eq!(
            err,
            format!(
                "node `{}` (Relu): unsupported op: an activation after an average pooling or a second one after a max pooling; kiln fuses one activation into the layer before the pooling (Conv, Relu, then AveragePool)",
                if twice { "relu2" } else { "relu" }
            )
        );
    }
}

#[test]
fn a_map_between_an_activation_and_a_conv_is_refused() {
    let dir = tempfile::tempdir().unwrap();

    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(4)]);
    g.initializer_f32("w", &[2, 1, 3, 3], &[0.1; 18]).unwrap();
    g.initializer_f32("w2", &[2, 2, 3, 3], &[0.1; 36]).unwrap();
    g.initializer_f32("k", &[], &[2.0]).unwrap();
    g.node("Conv", "conv", &["x", "w"], &["c"], vec![]);
    g.node("Relu", "relu", &["c"], &["r"], vec![]);
    g.node("Mul", "scale", &["r", "k"], &["m"], vec![]);
    g.node(
        "Conv",
        "conv2",
        &["m", "w2"],
        &["y"],
        vec![attr_ints("pads", &[1, 1, 1, 1])],
    );
    g.output_f32("y", &[n()]);
    let err = import_graph(
        dir.path(),
        "map_before_conv.onnx",
        &g.build(13, &producer(), "").unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "node `conv2` (Conv): unsupported op: node `scale` (Mul) scales or shifts the data between an activation and a convolution; kiln folds such a map only into the input normalisation or a dense layer"
    );
}

// ---------------------------------------------------------------------------
// Skip connections: residual Adds become Tap and Add.
// ---------------------------------------------------------------------------

/// Runs kiln's own float export of `cnn` (the test interpreter of `common`) on the
/// fixture's inputs and checks it against the exporter's outputs, as `check_fixture` does
/// the plain forward pass.
fn check_exported_graph(name: &str, imported: &ImportedMlp, cnn: &CnnModel) {
    let (shape, rows, logits) = expected(name);
    let options = MlpExportOptions {
        opset: 13,
        with_probabilities: false,
        producer: producer(),
        doc_string: String::new(),
        metadata: Vec::new(),
    };
    let proto = cnn_to_model(cnn, &imported.normalization, &options).unwrap();
    let env = common::evaluate(&proto, &common::Tensor::f32(shape, rows));
    let ours = env["logits"].floats();
    assert_eq!(ours.len(), logits.len());
    let diff = ours
        .iter()
        .zip(&logits)
        .map(|(&a, b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max);
    assert!(
        diff <= TOLERANCE,
        "{name}: exported graph, max |diff| {diff:e}"
    );
    // The comparison can fail: the logits are not all alike.
    let spread = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - logits.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(spread > 1.0, "{name}: logits spread {spread}");
}

/// The small ResNet of make_torch_resnet.py: stem, an identity block, a projection block
/// whose shortcut branches from the block's input (value 4), GAP and the classifier.
const DIGITS_RESNET: [&str; 11] = [
    "Conv2d 16 [2, 2] [0, 0, 0, 0]:Relu",
    "Conv2d 16 [3, 3] [1, 1, 1, 1]:Relu",
    "Conv2d 16 [3, 3] [1, 1, 1, 1]:Identity",
    "Add 1:Relu",
    "Conv2d 32 [3, 3] [1, 1, 1, 1]:Relu",
    "Conv2d 32 [3, 3] [1, 1, 1, 1]:Identity",
    "Tap 4",
    "Conv2d 32 [1, 1] [0, 0, 0, 0]:Identity",
    "Add 6:Relu",
    "GlobalAvgPool",
    "Dense 10:Identity",
];

#[test]
fn torch_legacy_resnet_imports_its_skip_connections_as_tap_and_add() {
    let (imported, cnn) = check_fixture("torch_resnet_legacy");
    assert_eq!(imported.opset, 13);
    assert_eq!((cnn.input_shape, cnn.spatial_rank), ([1, 8, 8], 2));
    assert_eq!(kinds(&cnn), DIGITS_RESNET);
    assert_eq!(
        imported.normalization,
        InputNormalization::Scale { scale: 0.0625 }
    );
    // The projection block's convolutions are strided.
    let strides: Vec<[usize; 2]> = cnn
        .layers
        .iter()
        .filter_map(|l| match l {
            CnnLayer::Conv2d { stride, .. } => Some(*stride),
            _ => None,
        })
        .collect();
    assert_eq!(strides, [[1, 1], [1, 1], [1, 1], [2, 2], [1, 1], [2, 2]]);
    check_exported_graph("torch_resnet_legacy", &imported, &cnn);
}

#[test]
fn torch_dynamo_resnet_with_reduce_mean_and_reshape() {
    let (imported, cnn) = check_fixture("torch_resnet_dynamo");
    assert_eq!(imported.opset, 18);
    // adaptive_avg_pool2d is a ReduceMean over the spatial axes there: the same layers.
    assert_eq!(kinds(&cnn), DIGITS_RESNET);
    check_exported_graph("torch_resnet_dynamo", &imported, &cnn);
}

/// Same-padded 3x3 convolution `name` with 4 filters from `input` to `output`, weights from
/// `seed`.
fn conv3x3(g: &mut GraphBuilder, name: &str, input: &str, output: &str, seed: usize) {
    let w: Vec<f32> = (0..4 * 4 * 9)
        .map(|i| (((i * 7 + seed * 13) % 17) as f32 - 8.0) / 40.0)
        .collect();
    let b: Vec<f32> = (0..4).map(|i| (i + seed) as f32 * 0.05 - 0.1).collect();
    g.initializer_f32(&format!("{name}.w"), &[4, 4, 3, 3], &w)
        .unwrap();
    g.initializer_f32(&format!("{name}.b"), &[4], &b).unwrap();
    g.node(
        "Conv",
        name,
        &[input, &format!("{name}.w"), &format!("{name}.b")],
        &[output],
        vec![attr_ints("pads", &[1, 1, 1, 1])],
    );
}

/// `x [N, 4, 6, 6]` through `body`, which leaves `last`, then GlobalAveragePool, Flatten and
/// a Gemm to 3 logits `y`.
fn residual_graph(body: &dyn Fn(&mut GraphBuilder), last: &str) -> ModelProto {
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(4), Dim::Fixed(6), Dim::Fixed(6)]);
    body(&mut g);
    let fc: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 6.0).collect();
    g.initializer_f32("fc_w", &[3, 4], &fc).unwrap();
    g.initializer_f32("fc_b", &[3], &[0.1, 0.0, -0.1]).unwrap();
    g.node("GlobalAveragePool", "gap", &[last], &["g"], vec![]);
    g.node("Flatten", "flat", &["g"], &["f"], vec![attr_int("axis", 1)]);
    g.node(
        "Gemm",
        "fc",
        &["f", "fc_w", "fc_b"],
        &["y"],
        vec![attr_int("transB", 1)],
    );
    g.output_f32("y", &[n(), Dim::Fixed(3)]);
    g.build(13, &producer(), "").unwrap()
}

/// Imports `model` and holds the imported layer graph's forward pass to the source graph,
/// run by the test interpreter, on a few inputs; returns the layer graph.
fn import_and_compare(dir: &Path, name: &str, model: &ModelProto) -> CnnModel {
    let imported = import_graph(dir, name, model).unwrap_or_else(|e| panic!("{e}"));
    let cnn = imported.cnn.expect("a layer graph");
    let rows: Vec<f32> = (0..3 * 144)
        .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 1.5)
        .collect();
    let env = common::evaluate(model, &common::Tensor::f32(vec![3, 4, 6, 6], rows.clone()));
    let source = env["y"].floats();
    let ours: Vec<f32> = rows
        .chunks_exact(144)
        .flat_map(|row| forward(&cnn, &imported.normalization, row))
        .collect();
    let diff = ours
        .iter()
        .zip(source)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(f64::from(diff) <= TOLERANCE, "{name}: max |diff| {diff:e}");
    cnn
}

#[test]
fn an_add_of_an_earlier_value_and_the_previous_one_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    for (name, swapped) in [("previous_first.onnx", false), ("earlier_first.onnx", true)] {
        let model = residual_graph(
            &|g| {
                conv3x3(g, "conv1", "x", "c1", 1);
                g.node("Relu", "relu1", &["c1"], &["r1"], vec![]);
                conv3x3(g, "conv2", "r1", "c2", 2);
                g.node("Relu", "relu2", &["c2"], &["r2"], vec![]);
                conv3x3(g, "conv3", "r2", "c3", 3);
                let inputs = if swapped { ["r1", "c3"] } else { ["c3", "r1"] };
                g.node("Add", "add", &inputs, &["s"], vec![]);
                g.node("Relu", "relu3", &["s"], &["out"], vec![]);
            },
            "out",
        );
        let cnn = import_and_compare(dir.path(), name, &model);
        assert_eq!(
            kinds(&cnn),
            [
                "Conv2d 4 [3, 3] [1, 1, 1, 1]:Relu",
                "Conv2d 4 [3, 3] [1, 1, 1, 1]:Relu",
                "Conv2d 4 [3, 3] [1, 1, 1, 1]:Identity",
                "Add 1:Relu",
                "GlobalAvgPool",
                "Dense 3:Identity",
            ],
            "{name}"
        );
    }
}

#[test]
fn an_add_of_two_earlier_values_taps_one_of_them_first() {
    // A branches to B and C, C goes on to D; the file adds B and C only after D, so neither
    // operand is the previous value; then the sum is added to D. The input itself is
    // added too (value 0), through an Identity.
    let dir = tempfile::tempdir().unwrap();
    let model = residual_graph(
        &|g| {
            g.node("Identity", "same", &["x"], &["x2"], vec![]);
            conv3x3(g, "conv_a", "x", "a", 1);
            g.node("Relu", "relu_a", &["a"], &["ra"], vec![]);
            conv3x3(g, "conv_b", "ra", "b", 2);
            conv3x3(g, "conv_c", "ra", "c", 3);
            conv3x3(g, "conv_d", "c", "d", 4);
            g.node("Add", "add_bc", &["b", "c"], &["bc"], vec![]);
            g.node("Add", "add_d", &["bc", "d"], &["bcd"], vec![]);
            g.node("Add", "add_x", &["x2", "bcd"], &["sum"], vec![]);
            g.node("Tanh", "tanh", &["sum"], &["out"], vec![]);
        },
        "out",
    );
    let cnn = import_and_compare(dir.path(), "two_earlier.onnx", &model);
    assert_eq!(
        kinds(&cnn),
        [
            "Conv2d 4 [3, 3] [1, 1, 1, 1]:Relu",     // value 1: ra
            "Conv2d 4 [3, 3] [1, 1, 1, 1]:Identity", // value 2: b
            "Tap 1",                                 // value 3
            "Conv2d 4 [3, 3] [1, 1, 1, 1]:Identity", // value 4: c
            "Conv2d 4 [3, 3] [1, 1, 1, 1]:Identity", // value 5: d
            "Tap 2",                                 // value 6: b again
            "Add 4:Identity",                        // value 7: b + c
            "Add 5:Identity",                        // value 8: + d
            "Add 0:Tanh",                            // value 9: + x
            "GlobalAvgPool",
            "Dense 3:Identity",
        ]
    );
}

#[test]
fn skip_connections_kiln_cannot_represent_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(ModelProto, &str)> = vec![
        (
            // The skip reads the convolution's output before its ReLU.
            residual_graph(
                &|g| {
                    conv3x3(g, "conv1", "x", "c1", 1);
                    g.node("Relu", "relu1", &["c1"], &["r1"], vec![]);
                    conv3x3(g, "conv2", "r1", "c2", 2);
                    g.node("Add", "add", &["c2", "c1"], &["out"], vec![]);
                },
                "out",
            ),
            "node `relu1` (Relu): unsupported op: `c1` is read by another node too and is folded into the layer that computes it; kiln's layers end in their activation, so no other layer can read the value before it",
        ),
        (
            // The raw input, before the normalisation that becomes value 0.
            residual_graph(
                &|g| {
                    g.initializer_f32("k", &[], &[0.5]).unwrap();
                    g.node("Mul", "scale", &["x", "k"], &["xs"], vec![]);
                    conv3x3(g, "conv1", "xs", "c1", 1);
                    g.node("Add", "add", &["c1", "x"], &["out"], vec![]);
                },
                "out",
            ),
            "node `add` (Add): unsupported op: it reads `x`, which is not a value of kiln's layer graph: only the input (after its normalisation) and a layer's output (after its activation) can be read by more than one layer",
        ),
        (
            // Shapes that differ (a strided convolution on one side).
            residual_graph(
                &|g| {
                    g.initializer_f32("w", &[4, 4, 1, 1], &[0.25; 16]).unwrap();
                    g.node(
                        "Conv",
                        "down",
                        &["x", "w"],
                        &["d"],
                        vec![attr_ints("strides", &[2, 2])],
                    );
                    g.node("Add", "add", &["d", "x"], &["out"], vec![]);
                },
                "out",
            ),
            "node `add` (Add): shape mismatch: adds data of shape [N, 4, 3, 3] and [N, 4, 6, 6]; a residual Add needs both of one shape",
        ),
        (
            // A scale of the sum.
            residual_graph(
                &|g| {
                    g.initializer_f32("k", &[], &[0.5]).unwrap();
                    conv3x3(g, "conv1", "x", "c1", 1);
                    g.node("Add", "add", &["c1", "x"], &["s"], vec![]);
                    g.node("Mul", "half", &["s", "k"], &["out"], vec![]);
                },
                "out",
            ),
            "node `half` (Mul): unsupported op: a scale or offset of a residual Add's sum; kiln folds one only into a convolution, a dense layer or the input normalisation",
        ),
        (
            // A mean over the channels.
            residual_graph(
                &|g| {
                    g.node(
                        "ReduceMean",
                        "mean",
                        &["x"],
                        &["out"],
                        vec![attr_ints("axes", &[1]), attr_int("keepdims", 1)],
                    );
                },
                "out",
            ),
            "node `mean` (ReduceMean): unsupported op: a mean over axes [1] of [N, 4, 6, 6]; kiln reads ReduceMean over the spatial axes [2, 3] only, as a global average pooling",
        ),
    ];
    for (index, (model, message)) in cases.iter().enumerate() {
        let err = import_graph(dir.path(), &format!("bad{index}.onnx"), model)
            .err()
            .unwrap_or_else(|| panic!("case {index} imported"));
        assert_eq!(err, *message, "case {index}");
    }

    // A residual Add between dense layers: kiln's MLPs are chains.
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(4)]);
    g.initializer_f32("w", &[4, 4], &[0.1; 16]).unwrap();
    g.node("Gemm", "fc", &["x", "w"], &["h"], vec![]);
    g.node("Add", "add", &["h", "x"], &["y"], vec![]);
    g.output_f32("y", &[n(), Dim::Fixed(4)]);
    let err = import_graph(
        dir.path(),
        "mlp.onnx",
        &g.build(13, &producer(), "").unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "node `add` (Add): unsupported op: a residual Add in a network without convolutions; kiln's skip connections are part of its convolutional layer graph"
    );
}
