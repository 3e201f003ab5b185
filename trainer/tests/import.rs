//! `kiln import` end to end: every committed exporter fixture (PyTorch legacy and
//! dynamo MLPs and CNNs, a PyTorch Conv1D network, skl2onnx with and without ZipMap,
//! tf2onnx) imports, agrees with its
//! exporter's outputs within 1e-5 under `kiln check`, agrees with tract on the
//! original file, quantizes and bakes; graphs kiln cannot fold are bad input
//! (exit 2) with the node, its op type and the reason named.

mod common;

use common::{assert_fails, kiln, s, stdout};
use kiln_onnx::builder::{attr_int, Dim, GraphBuilder, Producer};
use std::path::{Path, PathBuf};

const FIXTURES: [&str; 8] = [
    "torch_legacy",
    "torch_dynamo",
    "sklearn_mlp",
    "sklearn_mlp_zipmap",
    "keras_dense",
    "torch_cnn_legacy",
    "torch_cnn_dynamo",
    "torch_conv1d_legacy",
];

fn fixture(name: &str, ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../onnx/tests/data/import")
        .join(format!("{name}.{ext}"))
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout(output)).expect("--json prints one JSON object")
}

/// The largest difference of every output of every comparison against `reference`.
fn max_diff(summary: &serde_json::Value, reference: &str) -> f64 {
    let comparisons = summary["comparisons"].as_array().unwrap();
    let matching: Vec<&serde_json::Value> = comparisons
        .iter()
        .filter(|c| c["reference"].as_str().unwrap().starts_with(reference))
        .collect();
    assert!(!matching.is_empty(), "no comparison with {reference}");
    matching
        .iter()
        .flat_map(|c| c["outputs"].as_array().unwrap())
        .map(|o| o["max_abs_diff"].as_f64().unwrap())
        .fold(0.0, f64::max)
}

#[test]
fn every_fixture_imports_checks_quantizes_and_bakes() {
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let onnx = fixture(name, "onnx");
        let expected = fixture(name, "expected.json");
        let model = dir.path().join(format!("{name}.json"));
        let summary = json(&kiln(&[
            "import",
            s(&onnx),
            "--data",
            "digits",
            "-o",
            s(&model),
            "--expected",
            s(&expected),
            "--json",
        ]));
        assert_eq!(summary["passed"], true, "{name}: {summary}");
        assert!(max_diff(&summary, "expected outputs") <= 1e-5, "{name}");
        assert!(max_diff(&summary, "tract on") <= 1e-4, "{name}");
        // Labels agree everywhere they are compared.
        for comparison in summary["comparisons"].as_array().unwrap() {
            let n = comparison["n_samples"].as_u64().unwrap();
            for output in comparison["outputs"].as_array().unwrap() {
                if let Some(agree) = output["labels_agree"].as_u64() {
                    assert_eq!(agree, n, "{name}: {output}");
                }
            }
        }

        // kiln check on the source file: the same comparisons, from the model file.
        let check = json(&kiln(&[
            "check",
            s(&onnx),
            "--model",
            s(&model),
            "--expected",
            s(&expected),
            "--json",
        ]));
        assert_eq!(check["passed"], true, "{name}: {check}");
        assert!(max_diff(&check, "expected outputs") <= 1e-5, "{name}");

        // The int8 model: the runtime and tract on the QDQ file agree.
        let int8 = dir.path().join(format!("{name}-int8"));
        let quantized = json(&kiln(&[
            "quantize",
            s(&model),
            "-o",
            s(&int8),
            "--calib",
            "300",
            "--json",
        ]));
        assert_eq!(quantized["tract_passed"], true, "{name}: {quantized}");
        assert!(quantized["int8_accuracy"].as_f64().unwrap() > 0.9, "{name}");
        let blob = dir.path().join(format!("{name}.kiln"));
        let baked = kiln(&["bake", s(&model), "--blob", s(&blob)]);
        assert!(baked.status.success(), "{name}");
        let bytes = std::fs::read(&blob).unwrap();
        kiln_runtime::Model::from_bytes(&bytes).expect("the runtime loads the baked blob");
    }
}

#[test]
fn an_imported_model_exports_to_kilns_own_form_and_checks() {
    // Relu6 (dynamo) and the sklearn head: the re-export is kiln's Gemm graph with Clip.
    let dir = tempfile::tempdir().unwrap();
    for name in ["torch_dynamo", "sklearn_mlp"] {
        let model = dir.path().join(format!("{name}.json"));
        let output = kiln(&[
            "import",
            s(&fixture(name, "onnx")),
            "--data",
            "digits",
            "-o",
            s(&model),
            "--quiet",
        ]);
        assert!(output.status.success(), "{}", common::stderr(&output));
        let exported = dir.path().join(format!("{name}.kiln.onnx"));
        let output = kiln(&["export", s(&model), "-o", s(&exported)]);
        assert!(output.status.success(), "{}", common::stderr(&output));
        let output = kiln(&["check", s(&exported), "--model", s(&model)]);
        assert!(
            output.status.success(),
            "{name}: {}",
            common::stderr(&output)
        );
        assert!(stdout(&output).contains("PASS"), "{}", stdout(&output));
    }
}

#[test]
fn a_pytorch_cnn_imports_as_a_layer_graph_that_quantizes_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("cnn.json");
    let output = kiln(&[
        "import",
        s(&fixture("torch_cnn_legacy", "onnx")),
        "--data",
        "digits",
        "-o",
        s(&model),
        "--expected",
        s(&fixture("torch_cnn_legacy", "expected.json")),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(
            "8x8x1 -> conv3x3:8:relu,maxpool2,conv3x3:16:relu,dw3x3:relu,avgpool2,dense:32:relu,dense:10:identity (3818 parameters)"
        ),
        "{text}"
    );
    assert!(text.contains("normalization  scale (x * 0.0625)"), "{text}");
    assert_eq!(text.matches("check          PASS").count(), 3, "{text}");

    // The model file carries the layer graph; its records are in ONNX's weight order.
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    let architecture = &file["architecture"];
    assert_eq!(
        architecture["input_shape"],
        serde_json::json!({"h": 8, "w": 8, "c": 1})
    );
    let types: Vec<&str> = architecture["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "conv2d",
            "max_pool2d",
            "conv2d",
            "depthwise_conv2d",
            "avg_pool2d",
            "dense",
            "dense"
        ]
    );
    let shapes: Vec<(u64, u64)> = file["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["n_inputs"].as_u64().unwrap(),
                l["n_outputs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shapes, [(9, 8), (72, 16), (9, 16), (64, 32), (32, 10)]);

    // int8: the runtime and tract on the QDQ file agree on every row.
    let quantized = json(&kiln(&[
        "quantize",
        s(&model),
        "-o",
        s(&dir.path().join("int8")),
        "--json",
    ]));
    assert_eq!(quantized["tract_passed"], true, "{quantized}");
    assert!(
        quantized["int8_accuracy"].as_f64().unwrap() > 0.95,
        "{quantized}"
    );

    // kiln's own export of the imported graph checks against the model.
    let exported = dir.path().join("cnn.kiln.onnx");
    let output = kiln(&["export", s(&model), "-o", s(&exported)]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let output = kiln(&["check", s(&exported), "--model", s(&model)]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(stdout(&output).contains("PASS"), "{}", stdout(&output));
}

#[test]
fn the_import_summary_names_what_was_folded_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let output = kiln(&[
        "import",
        s(&fixture("sklearn_mlp_zipmap", "onnx")),
        "--data",
        "digits",
        "-o",
        s(&dir.path().join("m.json")),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("64-32-16-10: relu, relu, identity"), "{text}");
    assert!(
        text.contains("node `ZipMap` (ai.onnx.ml.ZipMap) dropped"),
        "{text}"
    );
    assert!(text.contains("ArrayFeatureExtractor"), "{text}");
    assert!(text.contains("without its 5 dropped tail nodes"), "{text}");

    let output = kiln(&[
        "import",
        s(&fixture("torch_legacy", "onnx")),
        "--data",
        "digits",
        "-o",
        s(&dir.path().join("t.json")),
    ]);
    let text = stdout(&output);
    assert!(
        text.contains("images [N, 1, 8, 8] -> 64 features"),
        "{text}"
    );
    assert!(text.contains("relu, leaky-relu(0.1), identity"), "{text}");
}

#[test]
fn outputs_that_disagree_with_the_expected_file_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let onnx = fixture("keras_dense", "onnx");
    let output = kiln(&[
        "import",
        s(&onnx),
        "--data",
        "digits",
        "-o",
        s(&model),
        "--quiet",
    ]);
    assert!(output.status.success());
    // One probability moved by 1e-4: ten times the tolerance.
    let mut expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("keras_dense", "expected.json")).unwrap())
            .unwrap();
    let value = expected["outputs"]["probabilities"]["data"][3]
        .as_f64()
        .unwrap();
    expected["outputs"]["probabilities"]["data"][3] = serde_json::json!(value + 1e-4);
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&expected).unwrap()).unwrap();
    let output = kiln(&[
        "check",
        s(&onnx),
        "--model",
        s(&model),
        "--expected",
        s(&tampered),
    ]);
    assert_fails(
        &output,
        1,
        &[
            "the imported model disagrees with expected outputs",
            "probabilities max |diff| 1.00e-4",
        ],
    );
}

/// A small ONNX model built with kiln's graph builder: input `x` [N, 4].
fn write_model(path: &Path, build: impl FnOnce(&mut GraphBuilder), opset: i64) {
    let mut graph = GraphBuilder::new("g");
    graph.input_f32("x", &[Dim::Param("N".into()), Dim::Fixed(4)]);
    build(&mut graph);
    let producer = Producer {
        name: "test".into(),
        version: "0".into(),
    };
    let model = graph.build(opset, &producer, "").unwrap();
    std::fs::write(path, kiln_onnx::mlp::encode_model(&model)).unwrap();
}

#[test]
fn graphs_kiln_cannot_fold_are_bad_input_naming_node_op_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let n = || Dim::Param("N".into());
    let conv = dir.path().join("conv.onnx");
    write_model(
        &conv,
        |g| {
            g.initializer_f32("w", &[4, 2], &[0.5; 8]).unwrap();
            g.node("MatMul", "dense", &["x", "w"], &["h"], vec![]);
            g.node("Erf", "erf", &["h"], &["y"], vec![]);
            g.output_f32("y", &[n(), Dim::Fixed(2)]);
        },
        13,
    );
    let weights_from_data = dir.path().join("data_weights.onnx");
    write_model(
        &weights_from_data,
        |g| {
            g.node("MatMul", "self_product", &["x", "x"], &["y"], vec![]);
            g.output_f32("y", &[n(), Dim::Fixed(4)]);
        },
        13,
    );
    let mismatch = dir.path().join("mismatch.onnx");
    write_model(
        &mismatch,
        |g| {
            g.initializer_f32("w", &[3, 5], &[0.5; 15]).unwrap();
            g.node(
                "Gemm",
                "fc",
                &["x", "w"],
                &["y"],
                vec![attr_int("transB", 1)],
            );
            g.output_f32("y", &[n(), Dim::Fixed(3)]);
        },
        13,
    );
    let cases: [(&Path, &[&str]); 3] = [
        (
            &conv,
            &["node `erf` (Erf): unsupported op: Erf is not part of a kiln layer graph"],
        ),
        (
            &weights_from_data,
            &["node `self_product` (MatMul): non-constant weights: input `x` is not an initializer or a constant"],
        ),
        (
            &mismatch,
            &["node `fc` (Gemm): shape mismatch: the layer takes [N, 5] but the data is [N, 4]"],
        ),
    ];
    for (path, needles) in cases {
        let out = dir.path().join("out.json");
        let output = kiln(&["import", s(path), "--data", "digits", "-o", s(&out)]);
        assert_fails(&output, 2, needles);
        assert!(common::stderr(&output).contains(s(path)));
        assert!(!out.exists(), "no model file for a rejected graph");
    }
}

/// A model trained on pixels scaled to [0, 1] and exported without the scaling (as a PyTorch
/// user who divides in the data loader does): `--input-scale 1/16` on the raw 0..16 digits
/// makes the checks feed the source the inputs it was trained on and folds the scale into the
/// kiln model; without it the model would be measured on inputs 16 times too large (issue 16).
#[test]
fn input_scale_feeds_the_source_its_own_inputs_and_folds_into_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let trained = dir.path().join("trained");
    let output = kiln(&[
        "train",
        "--hidden",
        "16",
        "--epochs",
        "8",
        "--lr",
        "0.01",
        "--no-check",
        "--quiet",
        "-o",
        s(&trained),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trained.join("model.json")).unwrap()).unwrap();
    // kiln's default normalisation of the digits is x / 16: the graph below expects [0, 1].
    assert_eq!(model["normalization"]["Scale"]["scale"], 0.0625);
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let layers = model["layers"].as_array().unwrap();
    let source = dir.path().join("no_scaling.onnx");
    let mut graph = GraphBuilder::new("g");
    graph.input_f32("x", &[Dim::Param("N".into()), Dim::Fixed(64)]);
    graph
        .initializer_f32("w1", &[16, 64], &floats(&layers[0]["weights"]))
        .unwrap();
    graph
        .initializer_f32("b1", &[16], &floats(&layers[0]["bias"]))
        .unwrap();
    graph
        .initializer_f32("w2", &[10, 16], &floats(&layers[1]["weights"]))
        .unwrap();
    graph
        .initializer_f32("b2", &[10], &floats(&layers[1]["bias"]))
        .unwrap();
    graph.node(
        "Gemm",
        "fc1",
        &["x", "w1", "b1"],
        &["z1"],
        vec![attr_int("transB", 1)],
    );
    graph.node("Relu", "relu", &["z1"], &["h1"], vec![]);
    graph.node(
        "Gemm",
        "fc2",
        &["h1", "w2", "b2"],
        &["logits"],
        vec![attr_int("transB", 1)],
    );
    graph.output_f32("logits", &[Dim::Param("N".into()), Dim::Fixed(10)]);
    let producer = Producer {
        name: "test".into(),
        version: "0".into(),
    };
    let proto = graph.build(13, &producer, "").unwrap();
    std::fs::write(&source, kiln_onnx::mlp::encode_model(&proto)).unwrap();

    let eval_accuracy = |model: &Path| -> f64 {
        json(&kiln(&["eval", s(model), "--quiet", "--json"]))["accuracy"]
            .as_f64()
            .unwrap()
    };
    let trained_accuracy = eval_accuracy(&trained.join("model.json"));

    let scaled = dir.path().join("scaled.json");
    let report = json(&kiln(&[
        "import",
        s(&source),
        "--data",
        "digits",
        "--input-scale",
        "1/16",
        "-o",
        s(&scaled),
        "--quiet",
        "--json",
    ]));
    assert!(
        report["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true),
        "{report}"
    );
    let imported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&scaled).unwrap()).unwrap();
    assert_eq!(imported["imported"]["input_scale"], 0.0625);
    assert_eq!(imported["normalization"]["Scale"]["scale"], 0.0625);
    assert_eq!(eval_accuracy(&scaled), trained_accuracy);

    // Without it the folded model takes raw pixels as its [0, 1] inputs: the checks agree
    // with tract (both see the same numbers), but nothing scales the data.
    let unscaled = dir.path().join("unscaled.json");
    json(&kiln(&[
        "import",
        s(&source),
        "--data",
        "digits",
        "-o",
        s(&unscaled),
        "--quiet",
        "--json",
    ]));
    let unscaled: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&unscaled).unwrap()).unwrap();
    assert_eq!(unscaled["normalization"], "None");
    assert!(unscaled["imported"].get("input_scale").is_none());

    assert_fails(
        &kiln(&[
            "import",
            s(&source),
            "--data",
            "digits",
            "--input-scale",
            "0/16",
        ]),
        2,
        &["--input-scale: expected a positive number such as 1/255 or 0.5, got \"0/16\""],
    );
}
