//! The importer on hand-built graphs: typed fields and raw_data, external data
//! and its checks, the opset range, and folding that matches the float
//! evaluator running the original graph (Gemm attributes, MatMul + Add, affine
//! maps before, between and after layers, BatchNormalization, Clip).

use std::collections::HashMap;
use std::path::Path;

use kiln_onnx::builder::{attr_float, attr_int, Dim, GraphBuilder, Producer};
use kiln_onnx::eval::{self, Tensor};
use kiln_onnx::import::{self, ImportErrorKind, ImportedMlp, NodeReason};
use kiln_onnx::mlp::{encode_model, Activation, InputNormalization};
use kiln_onnx::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto};

fn producer() -> Producer {
    Producer {
        name: "test".into(),
        version: "0".into(),
    }
}

fn n() -> Dim {
    Dim::Param("N".into())
}

/// Deterministic values in [-1, 1).
fn values(count: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn save(dir: &Path, name: &str, model: &ModelProto) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, encode_model(model)).unwrap();
    path
}

/// kiln's float forward pass of the folded MLP.
fn forward(mlp: &ImportedMlp, row: &[f32]) -> Vec<f32> {
    let mut x: Vec<f32> = match &mlp.normalization {
        InputNormalization::None => row.to_vec(),
        InputNormalization::Scale { scale } => row.iter().map(|v| v * scale).collect(),
        InputNormalization::Standardize { mean, inv_std } => row
            .iter()
            .zip(mean)
            .zip(inv_std)
            .map(|((v, m), s)| (v - m) * s)
            .collect(),
    };
    for layer in &mlp.layers {
        x = (0..layer.n_outputs)
            .map(|o| {
                let z = layer.weights[o * layer.n_inputs..(o + 1) * layer.n_inputs]
                    .iter()
                    .zip(&x)
                    .fold(0.0f32, |acc, (w, v)| acc + w * v)
                    + layer.bias[o];
                match layer.activation {
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
            })
            .collect();
    }
    x
}

/// Imports `path` and checks the folded MLP against the evaluator on the original graph.
fn folds_like_the_graph(path: &Path, n_inputs: usize) -> ImportedMlp {
    let (mlp, loaded) = import::import_file(path).unwrap_or_else(|e| panic!("{e}"));
    let rows = 7;
    let input = values(rows * n_inputs, 3);
    let feeds = HashMap::from([(
        mlp.input.name.clone(),
        Tensor::f32(vec![rows, n_inputs], input.clone()),
    )]);
    let graph = loaded.proto.graph.as_ref().unwrap();
    let reference = eval::run_graph(graph, loaded.opset, &loaded.initializers, &feeds).unwrap();
    let reference = reference[0].as_f32().unwrap();
    let ours: Vec<f32> = input
        .chunks_exact(n_inputs)
        .flat_map(|row| forward(&mlp, row))
        .collect();
    assert_eq!(ours.len(), reference.len());
    for (a, b) in ours.iter().zip(reference) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    mlp
}

#[test]
fn gemm_attributes_fold_into_the_layer_through_dropout_and_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(3)]);
    // B is [in, out] (transB = 0), C is [1, out]; alpha and beta scale them.
    g.initializer_f32("b", &[3, 4], &values(12, 1)).unwrap();
    g.initializer_f32("c", &[1, 4], &values(4, 2)).unwrap();
    // Dropout (inference) and Identity on the way are nothing.
    g.node("Dropout", "drop", &["x"], &["xd"], vec![]);
    g.node("Identity", "same", &["xd"], &["xi"], vec![]);
    g.node(
        "Gemm",
        "fc",
        &["xi", "b", "c"],
        &["y"],
        vec![attr_float("alpha", 0.5), attr_float("beta", 2.0)],
    );
    g.output_f32("y", &[n(), Dim::Fixed(4)]);
    let path = save(
        dir.path(),
        "gemm.onnx",
        &g.build(13, &producer(), "").unwrap(),
    );
    let mlp = folds_like_the_graph(&path, 3);
    assert_eq!(mlp.layers.len(), 1);
    assert_eq!(mlp.layers[0].activation, Activation::Identity);
}

#[test]
fn affine_maps_before_between_and_after_layers_fold() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(3)]);
    g.initializer_f32("mean", &[3], &[0.5, -1.0, 2.0]).unwrap();
    g.initializer_f32("std", &[1, 3], &[2.0, 4.0, 0.5]).unwrap();
    g.initializer_f32("w1", &[3, 5], &values(15, 4)).unwrap();
    g.initializer_f32("b1", &[5], &values(5, 5)).unwrap();
    for (name, seed) in [("scale", 6), ("bias", 7), ("mean1", 8)] {
        g.initializer_f32(name, &[5], &values(5, seed)).unwrap();
    }
    let var: Vec<f32> = values(5, 9).iter().map(|v| v.abs() + 0.1).collect();
    g.initializer_f32("var", &[5], &var).unwrap();
    g.initializer_f32("two", &[], &[2.0]).unwrap();
    g.initializer_f32("shift", &[5], &values(5, 10)).unwrap();
    g.initializer_f32("w2", &[2, 5], &values(10, 11)).unwrap();
    g.initializer_f32("lo", &[], &[0.0]).unwrap();
    g.initializer_f32("hi", &[], &[6.0]).unwrap();
    g.node("Sub", "sub", &["x", "mean"], &["x1"], vec![]);
    g.node("Div", "div", &["x1", "std"], &["x2"], vec![]);
    g.node("MatMul", "mm", &["x2", "w1"], &["h0"], vec![]);
    g.node("Add", "add", &["h0", "b1"], &["h1"], vec![]);
    g.node(
        "BatchNormalization",
        "bn",
        &["h1", "scale", "bias", "mean1", "var"],
        &["h2"],
        vec![attr_float("epsilon", 1e-3)],
    );
    g.node("Clip", "relu6", &["h2", "lo", "hi"], &["h3"], vec![]);
    // An affine map after the activation folds into the next layer's weights.
    g.node("Mul", "mul", &["h3", "two"], &["h4"], vec![]);
    g.node("Add", "shift", &["h4", "shift"], &["h5"], vec![]);
    g.node(
        "Gemm",
        "fc2",
        &["h5", "w2"],
        &["y0"],
        vec![attr_int("transB", 1)],
    );
    g.node(
        "LeakyRelu",
        "leaky",
        &["y0"],
        &["y"],
        vec![attr_float("alpha", 0.2)],
    );
    g.output_f32("y", &[n(), Dim::Fixed(2)]);
    let path = save(
        dir.path(),
        "affine.onnx",
        &g.build(17, &producer(), "").unwrap(),
    );
    let mlp = folds_like_the_graph(&path, 3);
    let activations: Vec<Activation> = mlp.layers.iter().map(|l| l.activation).collect();
    assert_eq!(
        activations,
        [Activation::Relu6, Activation::LeakyRelu { alpha: 0.2 }]
    );
    let InputNormalization::Standardize { mean, inv_std } = &mlp.normalization else {
        panic!("{:?}", mlp.normalization)
    };
    assert_eq!(mean, &[0.5, -1.0, 2.0]);
    assert_eq!(inv_std, &[0.5, 0.25, 2.0]);
}

#[test]
fn typed_fields_and_raw_data_decode_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(2)]);
    g.initializer_f32("w", &[2, 2], &[1.0, -2.0, 0.25, 4.0])
        .unwrap();
    g.node("MatMul", "mm", &["x", "w"], &["y"], vec![]);
    g.output_f32("y", &[n(), Dim::Fixed(2)]);
    let raw = g.build(13, &producer(), "").unwrap();
    let mut typed = raw.clone();
    let w = &mut typed.graph.as_mut().unwrap().initializer[0];
    w.float_data = vec![1.0, -2.0, 0.25, 4.0];
    w.raw_data = None;
    let (a, _) = import::import_file(&save(dir.path(), "raw.onnx", &raw)).unwrap();
    let (b, _) = import::import_file(&save(dir.path(), "typed.onnx", &typed)).unwrap();
    assert_eq!(a.layers, b.layers);
    // MatMul's B is [in, out]; kiln's rows are outputs.
    assert_eq!(a.layers[0].weights, [1.0, 0.25, -2.0, 4.0]);

    // A typed field that does not fill the shape is refused, naming the tensor.
    typed.graph.as_mut().unwrap().initializer[0]
        .float_data
        .pop();
    let err = import::import_file(&save(dir.path(), "short.onnx", &typed)).unwrap_err();
    assert!(
        matches!(&err.kind, ImportErrorKind::Tensor { tensor, .. } if tensor == "w"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("dims [2, 2] hold 4 values but the data has 3"),
        "{err}"
    );
}

fn external_model(location: &str, offset: u64, length: u64) -> ModelProto {
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(2)]);
    g.initializer_f32("w", &[2, 2], &[0.0; 4]).unwrap();
    g.node("MatMul", "mm", &["x", "w"], &["y"], vec![]);
    g.output_f32("y", &[n(), Dim::Fixed(2)]);
    let mut model = g.build(18, &producer(), "").unwrap();
    let w = &mut model.graph.as_mut().unwrap().initializer[0];
    w.raw_data = None;
    w.data_location = Some(DataLocation::External as i32);
    let entry = |key: &str, value: String| StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value),
    };
    w.external_data = vec![
        entry("location", location.into()),
        entry("offset", offset.to_string()),
        entry("length", length.to_string()),
    ];
    model
}

#[test]
fn external_data_is_read_beside_the_model_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = [9.0f32, 1.0, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.path().join("m.onnx.data"), &bytes).unwrap();
    // The weights start 4 bytes in.
    let path = save(dir.path(), "m.onnx", &external_model("m.onnx.data", 4, 16));
    let (mlp, _) = import::import_file(&path).unwrap();
    assert_eq!(mlp.layers[0].weights, [1.0, 3.0, 2.0, 4.0]);

    for (location, offset, length, needle) in [
        (
            "missing.data",
            0,
            16,
            "missing.data: tensor `w`: external data: cannot read",
        ),
        (
            "m.onnx.data",
            8,
            16,
            "bytes 8..24 are past the end of the file (20 bytes)",
        ),
        (
            "../m.onnx.data",
            0,
            16,
            "must be a relative path inside the model's folder",
        ),
        (
            "/etc/passwd",
            0,
            16,
            "must be a relative path inside the model's folder",
        ),
        (
            "m.onnx.data",
            0,
            12,
            "dims [2, 2] hold 4 values but the data has 3",
        ),
    ] {
        let path = save(
            dir.path(),
            "bad.onnx",
            &external_model(location, offset, length),
        );
        let err = import::import_file(&path).unwrap_err().to_string();
        assert!(err.contains(needle), "{location}: {err}");
    }
}

#[test]
fn opsets_outside_7_to_21_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (opset, ok) in [(6, false), (7, true), (21, true), (22, false)] {
        let mut model = external_model("unused", 0, 0);
        let w = &mut model.graph.as_mut().unwrap().initializer[0];
        w.data_location = None;
        w.external_data.clear();
        w.float_data = vec![0.0; 4];
        model.opset_import[0].version = Some(opset);
        let result = import::import_file(&save(dir.path(), "m.onnx", &model));
        match result {
            Ok(_) => assert!(ok, "opset {opset} was accepted"),
            Err(e) => {
                assert!(!ok, "opset {opset}: {e}");
                assert!(
                    e.to_string().contains(&format!(
                        "opset {opset} is not supported: kiln reads ai.onnx opsets 7 to 21"
                    )),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn unfoldable_graphs_name_the_node_the_op_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let build = |f: &dyn Fn(&mut GraphBuilder)| {
        let mut g = GraphBuilder::new("g");
        g.input_f32("x", &[n(), Dim::Fixed(4)]);
        f(&mut g);
        g.build(13, &producer(), "").unwrap()
    };
    // A graph, the node the error must name, its op type, and what the reason must be.
    type Case = (
        ModelProto,
        &'static str,
        &'static str,
        fn(&NodeReason) -> bool,
    );
    let cases: Vec<Case> = vec![
        (
            build(&|g| {
                g.initializer_f32("w", &[4, 2], &[0.5; 8]).unwrap();
                g.node("Relu", "early", &["x"], &["r"], vec![]);
                g.node("MatMul", "mm", &["r", "w"], &["y"], vec![]);
                g.output_f32("y", &[n(), Dim::Fixed(2)]);
            }),
            "early",
            "Relu",
            |r| matches!(r, NodeReason::UnsupportedOp { .. }),
        ),
        (
            build(&|g| {
                g.initializer_f32("w", &[4, 2], &[0.5; 8]).unwrap();
                g.initializer_f32("lo", &[], &[-1.0]).unwrap();
                g.initializer_f32("hi", &[], &[1.0]).unwrap();
                g.node("MatMul", "mm", &["x", "w"], &["h"], vec![]);
                g.node("Clip", "hardtanh", &["h", "lo", "hi"], &["y"], vec![]);
                g.output_f32("y", &[n(), Dim::Fixed(2)]);
            }),
            "hardtanh",
            "Clip",
            |r| matches!(r, NodeReason::UnsupportedOp { detail } if detail.contains("Clip(-1, 1)")),
        ),
        (
            build(&|g| {
                g.initializer_f32("w", &[4, 2], &[0.5; 8]).unwrap();
                g.initializer_f32("c", &[3, 2], &[0.5; 6]).unwrap();
                g.node("Gemm", "fc", &["x", "w", "c"], &["y"], vec![]);
                g.output_f32("y", &[n(), Dim::Fixed(2)]);
            }),
            "fc",
            "Gemm",
            |r| matches!(r, NodeReason::ShapeMismatch { .. }),
        ),
        (
            build(&|g| {
                g.node("MatMul", "square", &["x", "x"], &["y"], vec![]);
                g.output_f32("y", &[n(), Dim::Fixed(4)]);
            }),
            "square",
            "MatMul",
            |r| matches!(r, NodeReason::NonConstantWeights { input } if input == "x"),
        ),
    ];
    for (index, (model, node, op_type, reason_ok)) in cases.into_iter().enumerate() {
        let path = save(dir.path(), &format!("bad{index}.onnx"), &model);
        let err = import::import_file(&path).unwrap_err();
        match &err.kind {
            ImportErrorKind::Node {
                node: n,
                op_type: o,
                reason,
            } => {
                assert_eq!((n.as_str(), o.as_str()), (node, op_type), "{err}");
                assert!(reason_ok(reason), "{err}");
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().starts_with(&path.display().to_string()));
    }
}

/// Found by the `onnx_import` fuzz target: a node whose output is also its input made
/// the walk from the input loop forever.
#[test]
fn a_node_that_reads_its_own_output_is_refused_not_walked_forever() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = {
        let mut g = GraphBuilder::new("g");
        g.input_f32("x", &[n(), Dim::Fixed(2)]);
        g.node("Identity", "loop", &["x"], &["y"], vec![]);
        g.output_f32("y", &[n(), Dim::Fixed(2)]);
        g.build(13, &producer(), "").unwrap()
    };
    let graph = model.graph.as_mut().unwrap();
    graph.node[0].output = vec!["x".into()];
    graph.output[0].name = Some("z".into());
    let err = import::import_file(&save(dir.path(), "cycle.onnx", &model)).unwrap_err();
    assert!(
        err.to_string()
            .contains("node `loop` (Identity): shape mismatch: the node reads its own output"),
        "{err}"
    );
}

#[test]
fn a_label_mapped_through_class_values_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = GraphBuilder::new("g");
    g.input_f32("x", &[n(), Dim::Fixed(2)]);
    g.initializer_f32("w", &[2, 3], &values(6, 12)).unwrap();
    g.initializer_i32("classes", &[3], &[3, 5, 7]).unwrap();
    g.node("MatMul", "mm", &["x", "w"], &["logits"], vec![]);
    g.node(
        "Softmax",
        "softmax",
        &["logits"],
        &["probabilities"],
        vec![attr_int("axis", 1)],
    );
    g.node(
        "ArgMax",
        "argmax",
        &["probabilities"],
        &["index"],
        vec![attr_int("axis", 1)],
    );
    g.node(
        "ArrayFeatureExtractor",
        "afe",
        &["classes", "index"],
        &["label"],
        vec![],
    );
    g.output_f32("probabilities", &[n(), Dim::Fixed(3)]);
    g.output_f32("label", &[n(), Dim::Fixed(1)]);
    let mut model = g.build(13, &producer(), "").unwrap();
    model.graph.as_mut().unwrap().node[3].domain = Some("ai.onnx.ml".into());
    let (mlp, loaded) = import::import_file(&save(dir.path(), "classes.onnx", &model))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mlp.outputs[0].kind, import::OutputKind::Probabilities);
    assert_eq!(
        mlp.outputs[1].kind,
        import::OutputKind::Label {
            classes: Some(vec![3, 5, 7])
        }
    );
    // The engine model ends at the index the dropped node reads.
    assert_eq!(mlp.outputs[1].engine_tensor.as_deref(), Some("index"));
    assert_eq!(mlp.dropped_nodes, [3]);
    assert!(mlp.notices[0].contains("[3, 5, 7]"), "{:?}", mlp.notices);
    let engine = import::engine_model(&loaded, &mlp);
    let outputs: Vec<&str> = engine
        .graph
        .as_ref()
        .unwrap()
        .output
        .iter()
        .map(|o| o.name.as_deref().unwrap())
        .collect();
    assert_eq!(outputs, ["probabilities", "index"]);
}
