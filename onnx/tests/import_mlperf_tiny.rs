//! MLPerf Tiny's reference models as a Keras user brings them: MLCommons' published ResNet-8
//! (image classification), DS-CNN (keyword spotting) and MobileNetV1 0.25 (visual wake words),
//! converted by tf2onnx (`tests/data/mlperf_tiny/convert.py`). Each folds into a layer graph
//! whose float graph (`cnn_to_model`, run by the test interpreter) reproduces onnxruntime's
//! probabilities on the source file within `1e-5 + 1e-5 |p|`, fed each row of the Keras
//! (NHWC) input in the layer graph's CHW order. Also the channels-last Transposes on small
//! graphs: the input's, and those around a Flatten or a spatial mean before the head, with
//! every form kiln cannot represent refused by name.

mod common;

use std::path::{Path, PathBuf};

use kiln_onnx::builder::{attr_int, attr_ints, Dim, GraphBuilder, Producer};
use kiln_onnx::cnn::{cnn_to_model, CnnLayer, CnnModel};
use kiln_onnx::import::{self, ImportOptions, ImportedMlp, InputLayout, OutputKind};
use kiln_onnx::mlp::{encode_model, InputNormalization};
use kiln_onnx::proto::ModelProto;

/// numpy's `allclose` with `rtol = 1e-5`, `atol = 1e-5`: `kiln import --expected`'s limit.
const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-5;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mlperf_tiny")
}

const REORDER: ImportOptions = ImportOptions {
    reorder_channels_last: true,
};

fn import_fixture(name: &str, options: &ImportOptions) -> Result<ImportedMlp, String> {
    let path = data_dir().join(format!("{name}.onnx"));
    import::import_file_with(&path, options)
        .map(|(imported, _)| imported)
        .map_err(|e| e.to_string())
}

/// The one input and the one output (the probabilities) of an expected-outputs file.
struct Expected {
    shape: Vec<usize>,
    rows: Vec<f32>,
    probabilities: Vec<f64>,
    n_classes: usize,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(data_dir().join(format!("{name}.expected.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let only = |key: &str| {
        let map = json[key].as_object().unwrap();
        assert_eq!(map.len(), 1, "{name}: one {key}");
        map.values().next().unwrap().clone()
    };
    let dims = |v: &serde_json::Value| -> Vec<usize> {
        v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect()
    };
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (input, output) = (only("inputs"), only("outputs"));
    Expected {
        shape: dims(&input),
        rows: floats(&input).into_iter().map(|v| v as f32).collect(),
        probabilities: floats(&output),
        n_classes: dims(&output)[1],
    }
}

/// The imported layer graph's float ONNX graph, run by the test interpreter on `rows` (each
/// one sample in the layer graph's CHW order): the probabilities.
fn kiln_probabilities(imported: &ImportedMlp, rows: &[Vec<f32>]) -> Vec<f64> {
    let cnn = imported.cnn.as_ref().expect("a layer graph");
    let proto = cnn_to_model(
        cnn,
        &imported.normalization,
        &common::export_options(13, true),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let [c, h, w] = cnn.input_shape;
    let data: Vec<f32> = rows.concat();
    let env = common::evaluate(
        &proto,
        &common::Tensor::f32(vec![rows.len(), c, h, w], data),
    );
    env["probabilities"]
        .floats()
        .iter()
        .map(|&p| f64::from(p))
        .collect()
}

/// The largest `|ours - theirs| / (atol + rtol |theirs|)`: at most 1 passes.
fn worst_ratio(ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs() / (ATOL + RTOL * b.abs()))
        .fold(0.0, f64::max)
}

fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Imports fixture `name`, checks its probabilities against onnxruntime's and returns it with
/// its layer graph.
fn check_fixture(name: &str) -> (ImportedMlp, CnnModel) {
    let imported = import_fixture(name, &REORDER).unwrap_or_else(|e| panic!("{e}"));
    let cnn = imported.cnn.clone().expect("a layer graph");
    assert!(imported.layers.is_empty());
    assert_eq!(imported.opset, 13);
    assert!(imported.producer.starts_with("tf2onnx 1.17.0"));
    assert_eq!(imported.outputs.len(), 1);
    assert_eq!(imported.outputs[0].kind, OutputKind::Probabilities);
    assert_eq!(imported.normalization, InputNormalization::None);
    let expected = expected(name);
    assert_eq!(&expected.shape[1..], imported.input.dims.as_slice());
    assert_eq!(imported.n_outputs(), expected.n_classes);
    let n: usize = expected.shape[1..].iter().product();
    let rows: Vec<Vec<f32>> = expected
        .rows
        .chunks_exact(n)
        .map(|row| imported.input.to_layer_order(row))
        .collect();
    let ours = kiln_probabilities(&imported, &rows);
    let ratio = worst_ratio(&ours, &expected.probabilities);
    assert!(ratio <= 1.0, "{name}: {ratio} times the tolerance");
    for (a, b) in ours
        .chunks_exact(expected.n_classes)
        .zip(expected.probabilities.chunks_exact(expected.n_classes))
    {
        assert_eq!(argmax(a), argmax(b), "{name}: labels");
    }
    // The comparison has teeth: some probability is neither 0 nor 1.
    assert!(
        expected
            .probabilities
            .iter()
            .any(|&p| (0.01..0.99).contains(&p)),
        "{name}: every probability saturated"
    );
    (imported, cnn)
}

/// Weights and biases of every convolution and dense layer (BatchNormalization folded).
fn parameters(cnn: &CnnModel) -> usize {
    cnn.layers
        .iter()
        .map(|layer| match layer {
            CnnLayer::Conv2d { weights, bias, .. }
            | CnnLayer::DepthwiseConv2d { weights, bias, .. } => weights.len() + bias.len(),
            CnnLayer::Dense(d) => d.weights.len() + d.bias.len(),
            _ => 0,
        })
        .sum()
}

/// Multiply-accumulates of one inference: every convolution and dense layer.
fn macs(cnn: &CnnModel) -> usize {
    let [mut c, mut h, mut w] = cnn.input_shape;
    let mut values = vec![[c, h, w]];
    let mut total = 0;
    let out = |i: usize, k: usize, s: usize, p: usize| (i + p - k) / s + 1;
    for layer in &cnn.layers {
        match layer {
            CnnLayer::Conv2d {
                out_channels,
                kernel,
                stride,
                pads,
                ..
            }
            | CnnLayer::DepthwiseConv2d {
                channels: out_channels,
                kernel,
                stride,
                pads,
                ..
            } => {
                let per_filter = if matches!(layer, CnnLayer::Conv2d { .. }) {
                    c
                } else {
                    1
                };
                (h, w) = (
                    out(h, kernel[0], stride[0], pads[0] + pads[2]),
                    out(w, kernel[1], stride[1], pads[1] + pads[3]),
                );
                c = *out_channels;
                total += c * h * w * per_filter * kernel[0] * kernel[1];
            }
            CnnLayer::Dense(d) => {
                total += d.n_inputs * d.n_outputs;
                (c, h, w) = (d.n_outputs, 1, 1);
            }
            CnnLayer::AvgPool2d { kernel, stride } | CnnLayer::MaxPool2d { kernel, stride } => {
                (h, w) = (
                    out(h, kernel[0], stride[0], 0),
                    out(w, kernel[1], stride[1], 0),
                );
            }
            CnnLayer::GlobalAvgPool => (h, w) = (1, 1),
            CnnLayer::Flatten => (c, h, w) = (c * h * w, 1, 1),
            CnnLayer::Tap { value } => [c, h, w] = values[*value],
            CnnLayer::Add { .. } => {}
        }
        values.push([c, h, w]);
    }
    total
}

/// Each layer's type and activation, as `docs/layer-graph.md` names them.
fn kinds(cnn: &CnnModel) -> Vec<String> {
    cnn.layers
        .iter()
        .map(|layer| match layer {
            CnnLayer::Dense(d) => format!("Dense {}:{:?}", d.n_outputs, d.activation),
            CnnLayer::Conv2d {
                out_channels,
                kernel,
                stride,
                activation,
                ..
            } => format!(
                "Conv2d {out_channels} {kernel:?}/{}:{activation:?}",
                stride[0]
            ),
            CnnLayer::DepthwiseConv2d {
                channels,
                kernel,
                stride,
                activation,
                ..
            } => format!(
                "Depthwise {channels} {kernel:?}/{}:{activation:?}",
                stride[0]
            ),
            CnnLayer::AvgPool2d { kernel, .. } => format!("AvgPool2d {kernel:?}"),
            CnnLayer::Tap { value } => format!("Tap {value}"),
            CnnLayer::Add { other, activation } => format!("Add {other}:{activation:?}"),
            other => other.kind().to_owned(),
        })
        .collect()
}

fn count(kinds: &[String], prefix: &str) -> usize {
    kinds.iter().filter(|k| k.starts_with(prefix)).count()
}

/// ResNet-8 as MLCommons wrote it (`resnet_v1_eembc`): a stem, three stages of two 3x3
/// convolutions whose shortcut is the identity (stage 1) or a 1x1 stride-2 projection from the
/// stage's input, an 8x8 average pooling and the classifier (the flatten before it implicit).
/// tf2onnx writes each projection shortcut before the stage's main path, so the walk takes it
/// first (value 5 is the shortcut, then a tap of the stage's input, value 4).
const RESNET8: [&str; 16] = [
    "Conv2d 16 [3, 3]/1:Relu",
    "Conv2d 16 [3, 3]/1:Relu",
    "Conv2d 16 [3, 3]/1:Identity",
    "Add 1:Relu",
    "Conv2d 32 [1, 1]/2:Identity",
    "Tap 4",
    "Conv2d 32 [3, 3]/2:Relu",
    "Conv2d 32 [3, 3]/1:Identity",
    "Add 5:Relu",
    "Conv2d 64 [1, 1]/2:Identity",
    "Tap 9",
    "Conv2d 64 [3, 3]/2:Relu",
    "Conv2d 64 [3, 3]/1:Identity",
    "Add 10:Relu",
    "AvgPool2d [8, 8]",
    "Dense 10:Identity",
];

#[test]
fn mlperf_tiny_resnet8_imports_with_its_projection_shortcuts() {
    let (imported, cnn) = check_fixture("ic_resnet8");
    assert_eq!(imported.input.dims, [32, 32, 3]);
    assert_eq!(imported.input.layout, InputLayout::ChannelsLast);
    assert_eq!((cnn.input_shape, cnn.spatial_rank), ([3, 32, 32], 2));
    assert_eq!(kinds(&cnn), RESNET8);
    // Keras counts 78,666 with BatchNormalization's 4 x 240 values; folded: 77,706.
    assert_eq!(parameters(&cnn), 77_706);
    assert_eq!(macs(&cnn), 12_501_632);
}

#[test]
fn mlperf_tiny_ds_cnn_imports_its_one_channel_input_as_is() {
    // tf2onnx writes the one-channel NHWC input [N, 49, 10, 1] as a Reshape to [N, 1, 49,
    // 10]: no value moves, so even the default options accept it.
    let default = import_fixture("kws_dscnn", &ImportOptions::default()).unwrap();
    let (imported, cnn) = check_fixture("kws_dscnn");
    assert_eq!(default, imported);
    assert_eq!(imported.input.dims, [49, 10, 1]);
    assert_eq!(imported.input.layout, InputLayout::Direct);
    assert!(!imported.input.reorders());
    assert_eq!((cnn.input_shape, cnn.spatial_rank), ([1, 49, 10], 2));
    let kinds = kinds(&cnn);
    assert_eq!(kinds[0], "Conv2d 64 [10, 4]/2:Relu");
    for block in 0..4 {
        assert_eq!(
            kinds[1 + 2 * block..3 + 2 * block],
            ["Depthwise 64 [3, 3]/1:Relu", "Conv2d 64 [1, 1]/1:Relu"]
        );
    }
    assert_eq!(kinds[9..], ["AvgPool2d [25, 5]", "Dense 12:Identity"]);
    // The 10x4 stride-2 stem pads TensorFlow's SAME split: 4 rows above, 5 below.
    let CnnLayer::Conv2d { pads, .. } = &cnn.layers[0] else {
        unreachable!()
    };
    assert_eq!(*pads, [4, 1, 5, 1]);
    // Keras counts 24,908 with BatchNormalization's 4 x 576 values; folded: 22,604.
    assert_eq!(parameters(&cnn), 22_604);
    assert_eq!(macs(&cnn), 2_656_768);
}

#[test]
fn mlperf_tiny_mobilenet_v1_025_imports_its_13_separable_blocks() {
    let (imported, cnn) = check_fixture("vww_mobilenet_025");
    assert_eq!(imported.input.dims, [96, 96, 3]);
    assert_eq!(imported.input.layout, InputLayout::ChannelsLast);
    assert_eq!((cnn.input_shape, cnn.spatial_rank), ([3, 96, 96], 2));
    let kinds = kinds(&cnn);
    assert_eq!(kinds.len(), 1 + 2 * 13 + 2);
    assert_eq!(kinds[0], "Conv2d 8 [3, 3]/2:Relu");
    assert_eq!(count(&kinds, "Depthwise"), 13);
    assert_eq!(count(&kinds, "Conv2d"), 14);
    assert_eq!((count(&kinds, "Add"), count(&kinds, "Tap")), (0, 0));
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["AvgPool2d [3, 3]", "Dense 2:Identity"]
    );
    // The stride-2 stem on 96 rows pads SAME's one row at the end only.
    let CnnLayer::Conv2d { pads, .. } = &cnn.layers[0] else {
        unreachable!()
    };
    assert_eq!(*pads, [0, 0, 1, 1]);
    // Keras counts 221,794 with BatchNormalization's 4 x 2,736 values; folded: 210,850.
    assert_eq!(parameters(&cnn), 210_850);
    assert_eq!(macs(&cnn), 7_489_664);
}

#[test]
fn a_keras_image_read_as_chw_gives_other_outputs() {
    // The reorder matters: the NHWC rows fed to the layer graph as they are miss by far.
    for name in ["ic_resnet8", "vww_mobilenet_025"] {
        let imported = import_fixture(name, &REORDER).unwrap();
        let expected = expected(name);
        let n: usize = expected.shape[1..].iter().product();
        let rows: Vec<Vec<f32>> = expected.rows.chunks_exact(n).map(<[f32]>::to_vec).collect();
        let ours = kiln_probabilities(&imported, &rows);
        let ratio = worst_ratio(&ours, &expected.probabilities);
        assert!(ratio > 100.0, "{name}: {ratio}");
    }
}

#[test]
fn a_multi_channel_keras_input_is_refused_unless_the_caller_reorders_rows() {
    for (name, node, dims) in [
        ("ic_resnet8", "model/conv2d/BiasAdd__6", "32, 32, 3"),
        (
            "vww_mobilenet_025",
            "model/conv2d/BiasAdd__215",
            "96, 96, 3",
        ),
    ] {
        let error = import_fixture(name, &ImportOptions::default()).unwrap_err();
        assert_eq!(
            error,
            format!(
                "{}: node `{node}` (Transpose): unsupported op: the input `input_1` is channels last, [N, {dims}] (Keras's NHWC: a row of data is HWC, pixel by pixel), and this Transpose makes it channels first; the layer graph reads CHW rows and this import does not reorder them (ImportOptions::reorder_channels_last), so it would read every pixel's channels from the wrong place",
                data_dir().join(format!("{name}.onnx")).display()
            )
        );
    }
}

// Small channels-last graphs, against the source graph run by the test interpreter.

fn producer() -> Producer {
    Producer {
        name: "test".into(),
        version: "0".into(),
    }
}

fn n() -> Dim {
    Dim::Param("N".into())
}

fn fixed(dims: &[usize]) -> Vec<Dim> {
    std::iter::once(n())
        .chain(dims.iter().map(|&d| Dim::Fixed(d as i64)))
        .collect()
}

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 37 + seed * 11) % 23) as f32 - 11.0) / 20.0)
        .collect()
}

fn import_graph(dir: &Path, name: &str, model: &ModelProto) -> Result<ImportedMlp, String> {
    let path = dir.join(name);
    std::fs::write(&path, encode_model(model)).unwrap();
    import::import_file_with(&path, &REORDER)
        .map(|(imported, _)| imported)
        .map_err(|e| {
            let text = e.to_string();
            let prefix = format!("{}: ", path.display());
            text.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{text} does not name {}", path.display()))
                .to_owned()
        })
}

/// `x [N, 4, 5, 3]` (NHWC), a per-channel scale and offset of the input (a Keras
/// Rescaling-like Mul and Add over the last axis), Transpose to NCHW, a same-padded 3x3
/// Conv to 4 channels, Relu (unless `head` computes `r` from `c` itself), then `head` from
/// `r` (NCHW, [N, 4, 4, 5]) to `y`.
fn nhwc_graph(relu: bool, head: &dyn Fn(&mut GraphBuilder)) -> ModelProto {
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &fixed(&[4, 5, 3]));
    g.initializer_f32("scale", &[3], &[0.5, 0.25, 2.0]).unwrap();
    g.initializer_f32("offset", &[3], &[-1.0, 0.0, 0.5])
        .unwrap();
    g.initializer_f32("w", &[4, 3, 3, 3], &values(108, 1))
        .unwrap();
    g.initializer_f32("b", &[4], &[0.1, -0.2, 0.3, 0.0])
        .unwrap();
    g.node("Mul", "scale", &["x", "scale"], &["xs"], vec![]);
    g.node("Add", "offset", &["xs", "offset"], &["xo"], vec![]);
    g.node(
        "Transpose",
        "to_nchw",
        &["xo"],
        &["t"],
        vec![attr_ints("perm", &[0, 3, 1, 2])],
    );
    g.node(
        "Conv",
        "conv",
        &["t", "w", "b"],
        &["c"],
        vec![attr_ints("pads", &[1, 1, 1, 1])],
    );
    if relu {
        g.node("Relu", "relu", &["c"], &["r"], vec![]);
    }
    head(&mut g);
    g.build(13, &producer(), "").unwrap()
}

/// Imports `model` (NHWC input `[4, 5, 3]`) and holds the imported layer graph, fed each row
/// in its CHW order, to the source graph's `y` fed the rows as they are.
fn import_and_compare(dir: &Path, name: &str, model: &ModelProto, classes: usize) -> CnnModel {
    let imported = import_graph(dir, name, model).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(imported.input.layout, InputLayout::ChannelsLast);
    assert!(imported.input.reorders());
    let cnn = imported.cnn.clone().expect("a layer graph");
    assert_eq!(cnn.input_shape, [3, 4, 5]);
    let rows = values(3 * 60, 5);
    let env = common::evaluate(model, &common::Tensor::f32(vec![3, 4, 5, 3], rows.clone()));
    let source = env["y"].floats();
    let proto = cnn_to_model(
        &cnn,
        &imported.normalization,
        &common::export_options(13, false),
    )
    .unwrap();
    let chw: Vec<f32> = rows
        .chunks_exact(60)
        .flat_map(|row| imported.input.to_layer_order(row))
        .collect();
    let env = common::evaluate(&proto, &common::Tensor::f32(vec![3, 3, 4, 5], chw));
    let ours = env["logits"].floats();
    assert_eq!(ours.len(), 3 * classes);
    let diff = ours
        .iter()
        .zip(source)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(f64::from(diff) <= 1e-5, "{name}: max |diff| {diff:e}");
    let spread = source.iter().copied().fold(f32::MIN, f32::max)
        - source.iter().copied().fold(f32::MAX, f32::min);
    assert!(spread > 0.1, "{name}: outputs spread {spread}");
    cnn
}

#[test]
fn a_channels_last_flatten_folds_into_the_dense_layers_columns() {
    // Keras's Flatten of a 4x5x4 map: Transpose back to NHWC, Reshape... here Flatten, then
    // a per-feature scale in HWC order, then the dense layer over HWC features.
    let dir = tempfile::tempdir().unwrap();
    let model = nhwc_graph(true, &|g| {
        g.initializer_f32("fc_w", &[80, 3], &values(240, 2))
            .unwrap();
        g.initializer_f32("fc_b", &[3], &[0.0, 0.1, -0.1]).unwrap();
        let scale: Vec<f32> = (0..80).map(|i| 1.0 + (i % 7) as f32 / 10.0).collect();
        g.initializer_f32("feature_scale", &[80], &scale).unwrap();
        g.node(
            "Transpose",
            "to_nhwc",
            &["r"],
            &["t2"],
            vec![attr_ints("perm", &[0, 2, 3, 1])],
        );
        g.node(
            "Flatten",
            "flat",
            &["t2"],
            &["f"],
            vec![attr_int("axis", 1)],
        );
        g.node(
            "Mul",
            "feature_scale",
            &["f", "feature_scale"],
            &["fs"],
            vec![],
        );
        g.node("Gemm", "fc", &["fs", "fc_w", "fc_b"], &["y"], vec![]);
        g.output_f32("y", &[n(), Dim::Fixed(3)]);
    });
    let cnn = import_and_compare(dir.path(), "flatten.onnx", &model, 3);
    assert_eq!(kinds(&cnn), ["Conv2d 4 [3, 3]/1:Relu", "Dense 3:Identity"]);
}

#[test]
fn a_channels_last_spatial_mean_and_a_transpose_back_are_global_pooling() {
    let dir = tempfile::tempdir().unwrap();
    // A per-channel scale of the convolution's output seen channels last (folded into the
    // convolution), a Transpose back, the Relu, then a spatial mean on NCHW.
    let there_and_back = nhwc_graph(false, &|g| {
        g.initializer_f32("fc_w", &[4, 2], &values(8, 3)).unwrap();
        g.initializer_f32("channel_scale", &[4], &[1.5, 0.5, -1.0, 2.0])
            .unwrap();
        g.node(
            "Transpose",
            "to_nhwc",
            &["c"],
            &["t2"],
            vec![attr_ints("perm", &[0, 2, 3, 1])],
        );
        g.node(
            "Mul",
            "channel_scale",
            &["t2", "channel_scale"],
            &["s"],
            vec![],
        );
        g.node(
            "Transpose",
            "back",
            &["s"],
            &["t3"],
            vec![attr_ints("perm", &[0, 3, 1, 2])],
        );
        g.node("Relu", "relu", &["t3"], &["r"], vec![]);
        g.node("GlobalAveragePool", "gap", &["r"], &["p"], vec![]);
        g.node("Flatten", "flat", &["p"], &["f"], vec![attr_int("axis", 1)]);
        g.node("Gemm", "fc", &["f", "fc_w"], &["y"], vec![]);
        g.output_f32("y", &[n(), Dim::Fixed(2)]);
    });
    let cnn = import_and_compare(dir.path(), "back.onnx", &there_and_back, 2);
    assert_eq!(
        kinds(&cnn),
        [
            "Conv2d 4 [3, 3]/1:Relu",
            "GlobalAvgPool",
            "Dense 2:Identity"
        ]
    );
    // tf2onnx's GlobalAveragePooling2D left channels last: ReduceMean over axes 1, 2.
    for keepdims in [0, 1] {
        let mean = nhwc_graph(true, &|g| {
            g.initializer_f32("fc_w", &[4, 2], &values(8, 4)).unwrap();
            g.node(
                "Transpose",
                "to_nhwc",
                &["r"],
                &["t2"],
                vec![attr_ints("perm", &[0, 2, 3, 1])],
            );
            g.node(
                "ReduceMean",
                "mean",
                &["t2"],
                &["m"],
                vec![attr_ints("axes", &[1, 2]), attr_int("keepdims", keepdims)],
            );
            g.node("Flatten", "flat", &["m"], &["f"], vec![attr_int("axis", 1)]);
            g.node("Gemm", "fc", &["f", "fc_w"], &["y"], vec![]);
            g.output_f32("y", &[n(), Dim::Fixed(2)]);
        });
        let cnn = import_and_compare(dir.path(), "mean.onnx", &mean, 2);
        assert_eq!(
            kinds(&cnn),
            [
                "Conv2d 4 [3, 3]/1:Relu",
                "GlobalAvgPool",
                "Dense 2:Identity"
            ]
        );
    }
}

#[test]
fn a_one_channel_transposed_input_needs_no_reorder() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &fixed(&[6, 6, 1]));
    g.initializer_f32("w", &[2, 1, 3, 3], &values(18, 1))
        .unwrap();
    g.initializer_f32("fc_w", &[2, 2], &values(4, 2)).unwrap();
    g.node(
        "Transpose",
        "to_nchw",
        &["x"],
        &["t"],
        vec![attr_ints("perm", &[0, 3, 1, 2])],
    );
    g.node("Conv", "conv", &["t", "w"], &["c"], vec![]);
    g.node("GlobalAveragePool", "gap", &["c"], &["p"], vec![]);
    g.node("Flatten", "flat", &["p"], &["f"], vec![attr_int("axis", 1)]);
    g.node("Gemm", "fc", &["f", "fc_w"], &["y"], vec![]);
    g.output_f32("y", &[n(), Dim::Fixed(2)]);
    let model = g.build(13, &producer(), "").unwrap();
    let path = dir.path().join("one.onnx");
    std::fs::write(&path, encode_model(&model)).unwrap();
    // The default options accept it: the rows need no reordering.
    let (imported, _) = import::import_file(&path).unwrap();
    assert_eq!(imported.input.layout, InputLayout::ChannelsLast);
    assert!(!imported.input.reorders());
    assert_eq!(imported.cnn.unwrap().input_shape, [1, 6, 6]);
}

#[test]
fn channels_last_forms_kiln_cannot_represent_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let case = |name: &str, head: &dyn Fn(&mut GraphBuilder)| -> String {
        import_graph(dir.path(), name, &nhwc_graph(true, head)).unwrap_err()
    };
    let to_nhwc = |g: &mut GraphBuilder| {
        g.node(
            "Transpose",
            "to_nhwc",
            &["r"],
            &["t2"],
            vec![attr_ints("perm", &[0, 2, 3, 1])],
        );
    };
    // A convolution of the channels-last view.
    let error = case("conv.onnx", &|g| {
        to_nhwc(g);
        g.initializer_f32("w2", &[2, 5, 1, 1], &values(10, 1))
            .unwrap();
        g.node("Conv", "conv2", &["t2", "w2"], &["y"], vec![]);
        g.output_f32("y", &[n(), Dim::Fixed(2)]);
    });
    assert_eq!(
        error,
        "node `conv2` (Conv): unsupported op: Conv on channels-last data [N, 4, 5, 4] (after a Transpose from NCHW); kiln's spatial layers read NCHW, so only a Transpose back, a Flatten or Reshape before a dense layer, or a mean over the spatial axes may follow"
    );
    // A permutation that is not channels last or first.
    let error = case("perm.onnx", &|g| {
        g.node(
            "Transpose",
            "swap",
            &["r"],
            &["y"],
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        );
        g.output_f32("y", &[n(), Dim::Fixed(2)]);
    });
    assert_eq!(
        error,
        "node `swap` (Transpose): unsupported op: perm [0, 1, 3, 2] of [N, 4, 4, 5]; kiln reads a Transpose of the input from channels last to first ([0, 3, 1, 2] or [0, 2, 1], as tf2onnx writes Keras's NHWC input), and of a spatial layer's output to channels last and back, or before a Flatten, Reshape or spatial mean"
    );
    // A mean over the wrong axes of the channels-last view.
    let error = case("mean.onnx", &|g| {
        to_nhwc(g);
        g.node(
            "ReduceMean",
            "mean",
            &["t2"],
            &["y"],
            vec![attr_ints("axes", &[2, 3]), attr_int("keepdims", 0)],
        );
        g.output_f32("y", &[n(), Dim::Fixed(4)]);
    });
    assert_eq!(
        error,
        "node `mean` (ReduceMean): unsupported op: a mean over axes [2, 3] of [N, 4, 5, 4] (channels last); kiln reads ReduceMean over the spatial axes [1, 2] only, as a global average pooling"
    );
    // A skip connection that joins a channels-last view.
    let error = case("add.onnx", &|g| {
        to_nhwc(g);
        g.node(
            "Transpose",
            "back",
            &["t2"],
            &["t3"],
            vec![attr_ints("perm", &[0, 3, 1, 2])],
        );
        g.node("Add", "join", &["t3", "t2"], &["y"], vec![]);
        g.output_f32("y", &[n(), Dim::Fixed(2)]);
    });
    assert!(
        error.starts_with("node `join` (Add): unsupported op: it reads `t2`, which is not a value of kiln's layer graph"),
        "{error}"
    );
    // Logits flattened channels last with no dense layer after them.
    let error = case("tail.onnx", &|g| {
        to_nhwc(g);
        g.node(
            "Flatten",
            "flat",
            &["t2"],
            &["y"],
            vec![attr_int("axis", 1)],
        );
        g.output_f32("y", &[n(), Dim::Fixed(80)]);
    });
    assert_eq!(
        error,
        "graph: the outputs are a spatial value flattened channels last (HWC) with no dense layer after it; kiln's layer graph flattens CHW"
    );
}
