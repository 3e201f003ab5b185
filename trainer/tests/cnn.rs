//! Convolutional networks through the `kiln` binary: `--layers` trains a layer graph, the
//! model file records it (format version 2), the ONNX file holds the NCHW graph that tract
//! checks sample for sample, and `--resume` continues it bit for bit. Version-1 model files
//! (MLPs written before the layer graph) still load.

mod common;
use common::*;

use std::path::Path;

fn model_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap()
}

fn op_types(onnx_path: &Path) -> Vec<String> {
    let model = kiln_onnx::mlp::decode_model(&std::fs::read(onnx_path).unwrap()).unwrap();
    model
        .graph
        .unwrap()
        .node
        .iter()
        .map(|node| node.op_type.clone().unwrap_or_default())
        .collect()
}

const LAYERS: &str = "conv3x3:8,dw3x3,maxpool2,conv3x3s2v:16,dense:24";

fn train_cnn(out: &Path, epochs: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "train", "--layers", LAYERS, "--epochs", epochs, "--quiet", "--json", "-o",
    ];
    args.push(s(out));
    args.extend_from_slice(extra);
    let output = kiln(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

#[test]
fn a_cnn_on_the_digits_trains_exports_and_passes_tract() {
    let dir = tempfile::tempdir().unwrap();
    let report = train_cnn(dir.path(), "10", &["--lr", "0.01"]);
    assert_eq!(report["check_passed"], true, "{report}");
    assert!(report["check"]["max_abs_diff"].as_f64().unwrap() <= 1e-4);
    assert_eq!(
        report["check"]["argmax_agreements"],
        report["check"]["n_samples"]
    );
    assert!(
        report["test_accuracy"].as_f64().unwrap() > 0.85,
        "a small CNN learns the 8x8 digits: {report}"
    );
    let architecture = report["architecture"].as_str().unwrap();
    assert!(
        architecture.starts_with("8x8x1 conv3x3:8"),
        "{architecture}"
    );

    let model = model_json(dir.path());
    assert_eq!(model["format_version"], 4);
    let shape = &model["architecture"]["input_shape"];
    assert_eq!(
        (&shape["h"], &shape["w"], &shape["c"]),
        (&8.into(), &8.into(), &1.into())
    );
    // conv, depthwise, conv, dense, output: five trainable layers
    assert_eq!(model["layers"].as_array().unwrap().len(), 5);
    assert_eq!(model["layers"][0]["n_inputs"], 9); // 1 channel x 3 x 3
    assert_eq!(model["layers"][0]["n_outputs"], 8);
    assert_eq!(model["layers"][2]["n_inputs"], 72); // 8 channels x 3 x 3

    let ops = op_types(&dir.path().join("model.onnx"));
    let count = |op: &str| ops.iter().filter(|o| *o == op).count();
    assert_eq!(count("Conv"), 3, "{ops:?}");
    assert_eq!(count("MaxPool"), 1, "{ops:?}");
    assert_eq!(count("Flatten"), 1, "{ops:?}");
    assert_eq!(count("Gemm"), 2, "{ops:?}");
}

#[test]
fn resuming_a_cnn_gives_the_uninterrupted_weights_bit_for_bit() {
    let whole = tempfile::tempdir().unwrap();
    train_cnn(whole.path(), "2", &["--no-check"]);
    let parts = tempfile::tempdir().unwrap();
    train_cnn(parts.path(), "1", &["--no-check"]);
    let output = kiln(&[
        "train",
        "--resume",
        "--epochs",
        "2",
        "--quiet",
        "--no-check",
        "-o",
        s(parts.path()),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (a, b) = (model_json(whole.path()), model_json(parts.path()));
    assert_eq!(a["layers"], b["layers"]);
    assert_eq!(a["state"]["optimizer"], b["state"]["optimizer"]);
    assert_eq!(a["architecture"], b["architecture"]);
}

#[test]
fn a_one_dimensional_network_takes_rows_as_signals() {
    let dir = tempfile::tempdir().unwrap();
    let output = kiln(&[
        "train",
        "--layers",
        "conv1d5:4,maxpool1x2,conv1d3s2:8,dense:16",
        "--input-shape",
        "1x64x1",
        "--epochs",
        "2",
        "--quiet",
        "--json",
        "-o",
        s(dir.path()),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["check_passed"], true, "{report}");
    let model =
        kiln_onnx::mlp::decode_model(&std::fs::read(dir.path().join("model.onnx")).unwrap())
            .unwrap();
    let graph = model.graph.unwrap();
    // [N, C, L]: a Conv1D graph as PyTorch's nn.Conv1d exports one
    let dims = graph.input[0]
        .r#type
        .as_ref()
        .and_then(|t| match t.value.as_ref()? {
            kiln_onnx::proto::type_proto::Value::TensorType(tensor) => tensor.shape.clone(),
            _ => None,
        })
        .unwrap()
        .dim;
    assert_eq!(dims.len(), 3, "{dims:?}");
}

#[test]
fn version_1_and_2_model_files_still_load_and_export_the_same_graph() {
    let dir = tempfile::tempdir().unwrap();
    let output = kiln(&[
        "train",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--quiet",
        "--no-check",
        "-o",
        s(dir.path()),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut model = model_json(dir.path());
    assert_eq!(model["format_version"], 4);
    // What kiln wrote before quantization-aware training: version 2 (a float model's file is
    // otherwise the same).
    model["format_version"] = 2.into();
    let version_2 = dir.path().join("version2.json");
    std::fs::write(&version_2, serde_json::to_vec(&model).unwrap()).unwrap();
    // What kiln wrote before the layer graph: version 1, no architecture.
    model["format_version"] = 1.into();
    model.as_object_mut().unwrap().remove("architecture");
    model["config"]
        .as_object_mut()
        .unwrap()
        .remove("input_shape");
    let old = dir.path().join("old.json");
    std::fs::write(&old, serde_json::to_vec(&model).unwrap()).unwrap();
    let (new_onnx, old_onnx) = (dir.path().join("new.onnx"), dir.path().join("old.onnx"));
    let version_2_onnx = dir.path().join("version2.onnx");
    for (json, onnx) in [
        (dir.path().join("model.json"), &new_onnx),
        (old.clone(), &old_onnx),
        (version_2, &version_2_onnx),
    ] {
        let output = kiln(&["export", s(&json), "-o", s(onnx)]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    for onnx in [&old_onnx, &version_2_onnx] {
        assert_eq!(
            std::fs::read(&new_onnx).unwrap(),
            std::fs::read(onnx).unwrap()
        );
    }
    let output = kiln(&["eval", s(&old), "--quiet", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn bad_layer_graphs_are_one_usage_error_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (layers, extra, needle) in [
        (
            "conv9x9v:4",
            &[][..],
            "kernel 9x9 is larger than its input 8x8",
        ),
        ("maxpool3", &[][..], "does not divide"),
        (
            "conv3x3:8",
            &["--input-shape", "4x4x2"][..],
            "--input-shape: 4x4x2 holds 32 values",
        ),
    ] {
        let out = dir.path().join("out");
        let mut args = vec!["train", "--layers", layers, "--epochs", "1", "-o", s(&out)];
        args.extend_from_slice(extra);
        assert_fails(&kiln(&args), 2, &[needle]);
        assert!(!out.exists(), "{layers}: nothing is written");
    }
}

#[test]
fn inspect_refuses_a_cnn_model_file_by_name() {
    let dir = tempfile::tempdir().unwrap();
    train_cnn(dir.path(), "1", &["--no-check"]);
    let model = dir.path().join("model.json");
    assert_fails(
        &kiln(&["inspect", s(&model)]),
        2,
        &["architecture: a convolutional network; kiln inspect takes multilayer perceptrons only so far"],
    );
}

/// `kiln quantize DIR/model.json -o DIR` on the digits: tract's run of the QDQ file agrees with
/// the runtime within 1 LSB with every argmax, and int8 loses at most 2 points. The report.
fn quantize_and_check(dir: &Path) -> serde_json::Value {
    let output = kiln(&[
        "quantize",
        s(&dir.join("model.json")),
        "-o",
        s(dir),
        "--json",
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["tract_passed"], true, "{report}");
    assert_eq!(report["test_samples"], 449, "{report}");
    assert_eq!(report["tract_argmax_agreement"], 449, "{report}");
    assert!(
        report["tract_max_lsb_diff"].as_u64().unwrap() <= 1,
        "{report}"
    );
    let (float, int8) = (
        report["float_accuracy"].as_f64().unwrap(),
        report["int8_accuracy"].as_f64().unwrap(),
    );
    assert!(int8 >= float - 0.02, "int8 {int8} against float {float}");
    report
}

#[test]
fn a_cnn_quantizes_and_the_runtime_matches_tract_on_the_qdq_file() {
    let dir = tempfile::tempdir().unwrap();
    // A dense layer over a spatial value of 16 channels: the blob's HWC column order.
    train_cnn(dir.path(), "6", &["--lr", "0.01", "--no-check"]);
    let report = quantize_and_check(dir.path());
    let ops = op_types(&dir.path().join("model.qdq.onnx"));
    assert!(
        ops.iter().filter(|op| *op == "Conv").count() == 3,
        "{ops:?}"
    );
    // The blob alone, as firmware would run it.
    let output = kiln(&[
        "run",
        s(&dir.path().join("model.kiln")),
        "--quiet",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    // inspect reads the graph from the blob: each node's shapes and MACs, and the arena.
    let output = kiln(&["inspect", s(&dir.path().join("model.kiln")), "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let inspect: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let layers = inspect["layers"].as_array().unwrap();
    let shapes: Vec<&str> = layers
        .iter()
        .map(|l| l["shape"].as_str().unwrap())
        .collect();
    assert_eq!(
        shapes,
        [
            "8x8x1 -> 8x8x8 conv3x3",
            "8x8x8 -> 8x8x8 dw3x3",
            "8x8x8 -> 4x4x8 maxpool2x2 s2x2",
            "4x4x8 -> 1x1x16 conv3x3 s2x2",
            "16 -> 24",
            "24 -> 10"
        ]
    );
    // 8x8 outputs x 8 filters x 9 taps, the same for the depthwise layer, none for pooling
    let macs: Vec<u64> = layers.iter().map(|l| l["macs"].as_u64().unwrap()).collect();
    assert_eq!(macs, [4608, 4608, 0, 1152, 384, 240]);
    // the arena: the first two 8x8x8 values alive together
    assert_eq!(inspect["totals"]["ram"]["int8_scratch_bytes"], 1024);
    assert_eq!(inspect["totals"]["ram"]["int8_layer_by_layer_bytes"], 1024);
    assert_eq!(report["scratch_bytes"], 1024);
    // --in-place: the depthwise layer writes its 8x8x8 output over its input (through a ring of
    // 8 + 1 + 1 pending pixels of 8 channels), the same outputs in 640 bytes
    let in_place = dir.path().join("in-place");
    let output = kiln(&[
        "quantize",
        s(&dir.path().join("model.json")),
        "-o",
        s(&in_place),
        "--in-place",
        "--json",
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let planned: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(planned["scratch_bytes"], 640, "{planned}");
    assert_eq!(planned["int8_accuracy"], report["int8_accuracy"]);
    let output = kiln(&["inspect", s(&in_place.join("model.kiln")), "--json"]);
    let planned: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(planned["totals"]["ram"]["int8_scratch_bytes"], 640);
    assert_eq!(planned["totals"]["ram"]["int8_layer_by_layer_bytes"], 1024);
    assert_eq!(planned["layers"][1]["in_place_temp_bytes"], 80);
    assert_eq!(
        planned["layers"][0]["in_place_temp_bytes"],
        serde_json::Value::Null
    );
    assert_eq!(
        planned["layers"][1]["shape"],
        "8x8x8 -> 8x8x8 dw3x3, in place"
    );
    // Each node's kind and shapes, which the instruction estimate weighs.
    let kinds: Vec<&str> = layers.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "conv2d",
            "depthwise_conv2d",
            "max_pool2d",
            "conv2d",
            "dense",
            "dense"
        ]
    );
    assert_eq!(layers[3]["input_shape"], serde_json::json!([4, 4, 8]));
    assert_eq!(layers[3]["output_shape"], serde_json::json!([1, 1, 16]));
    assert_eq!(layers[3]["kernel"], serde_json::json!([3, 3]));
    let figures: serde_json::Value =
        serde_json::from_str(include_str!("../src/cli/device_figures.json")).unwrap();
    // The estimate per core: every node by its kind's terms of device_figures.json.
    let estimate = &inspect["instructions_per_inference"];
    assert!(
        estimate["basis"]
            .as_str()
            .unwrap()
            .contains("by kind and shapes"),
        "{estimate}"
    );
    for (row, core) in estimate["cores"]
        .as_array()
        .unwrap()
        .iter()
        .zip(figures["cores"].as_array().unwrap())
    {
        let model = &core["estimate"];
        let graph = &model["graph"];
        let c = |key: &str| graph[key].as_f64().unwrap();
        let m = |key: &str| model[key].as_f64().unwrap();
        let multiple = model["block_inputs_multiple"].as_u64().unwrap();
        // A convolution: a dense layer per output pixel over its column, plus the pixel.
        let conv = |pixels: f64, column: u64, oc: u64| {
            let block = if column % multiple == 0 {
                oc - oc % 4
            } else {
                0
            };
            pixels * (column * block) as f64 * c("conv_block_mac")
                + pixels * (column * (oc - block)) as f64 * c("conv_tail_mac")
                + pixels * oc as f64 * c("conv_output")
                + pixels * ((column % 8) * oc) as f64 * c("conv_ragged")
                + pixels * c("conv_pixel")
                + c("conv_layer")
        };
        // conv 8x8x1 -> 8x8x8 3x3: 64 pixels, a column of 9.
        let conv1 = conv(64.0, 9, 8);
        // depthwise 8x8x8: 512 outputs x 9 taps, 64 pixels.
        let dw = 4608.0 * c("depthwise_mac") + 64.0 * c("depthwise_pixel") + c("depthwise_layer");
        // max pooling to 4x4x8: 128 outputs x 4 taps.
        let pool = 512.0 * c("max_pool_tap") + 128.0 * c("pool_output") + c("pool_layer");
        // conv 4x4x8 -> 1x1x16 3x3 s2: one pixel, a column of 72.
        let conv2 = conv(1.0, 72, 16);
        // 16 -> 24 and 24 -> 10 as in an MLP (whole blocks need groups of 8 where they do).
        let dense = |n_in: u64, n_out: u64| {
            let block_rows = if n_in % multiple == 0 {
                n_out - n_out % 4
            } else {
                0
            };
            (n_in * block_rows) as f64 * m("block_mac")
                + (n_in * (n_out - block_rows)) as f64 * m("tail_mac")
                + n_out as f64 * m("row")
                + ((n_in % 8) * n_out) as f64 * m("ragged_input")
                + m("layer")
        };
        let network = conv1 + dw + pool + conv2 + dense(16, 24) + dense(24, 10) + c("inference");
        assert_eq!(
            row["network_insns"].as_u64().unwrap(),
            network.round().max(0.0) as u64,
            "{row}"
        );
    }
    // Convolutions need the firmware that links every layer kind: its .text and stack, and no
    // dense-only `small` alternative.
    let device = &inspect["device"];
    assert_eq!(device["runtime_build"], "graph", "{device}");
    let blob_len = std::fs::metadata(dir.path().join("model.kiln"))
        .unwrap()
        .len();
    let buffers = inspect["totals"]["ram"]["int8_total_bytes"]
        .as_u64()
        .unwrap();
    let blob = std::fs::read(dir.path().join("model.kiln")).unwrap();
    let runtime = kiln_runtime::Model::from_bytes(&blob).unwrap();
    let workspace = (runtime.fast_scratch_len() - runtime.scratch_len()) as u64;
    assert!(workspace > 0);
    for (row, core) in device["cores"]
        .as_array()
        .unwrap()
        .iter()
        .zip(figures["cores"].as_array().unwrap())
    {
        let text = core["runtime_text_bytes"]["graph"].as_u64().unwrap();
        let stack = core["inference_stack_bytes"]["graph"].as_u64().unwrap();
        let model = core["model_struct_bytes"].as_u64().unwrap();
        assert_eq!(row["flash_total_bytes"], blob_len + text, "{row}");
        // The convolutions' im2col takes the workspace on every core.
        assert_eq!(row["workspace_bytes"], workspace, "{row}");
        assert_eq!(
            row["ram_total_bytes"],
            buffers + workspace + model + stack,
            "{row}"
        );
        assert!(row.get("flash_total_small_bytes").is_none(), "{row}");
    }
    assert!(inspect["totals"]["peak_stack"]
        .as_str()
        .unwrap()
        .contains("the every-layer firmware"));
    // Its ONNX files are refused rather than summed up as dense layers.
    assert_fails(
        &kiln(&["inspect", s(&dir.path().join("model.onnx"))]),
        2,
        &["node 'layer0_conv' (Conv): kiln inspect reads the dense layers of an ONNX file"],
    );
}

#[test]
fn a_multi_channel_input_is_fed_to_the_runtime_in_hwc_order() {
    let dir = tempfile::tempdir().unwrap();
    // The digits as 8x4 images of 2 channels (CHW): conv, global average, dense.
    let output = kiln(&[
        "train",
        "--layers",
        "conv3x3:6,conv3x3s2:8,dense:16",
        "--input-shape",
        "8x4x2",
        "--normalize",
        "standardize",
        "--epochs",
        "3",
        "--lr",
        "0.01",
        "--quiet",
        "--json",
        "-o",
        s(dir.path()),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["check_passed"], true, "{report}");
    let output = kiln(&[
        "quantize",
        s(&dir.path().join("model.json")),
        "-o",
        s(dir.path()),
        "--json",
        "--quiet",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["tract_passed"], true, "{report}");
    assert_eq!(report["tract_argmax_agreement"], 449, "{report}");
    assert!(
        report["tract_max_lsb_diff"].as_u64().unwrap() <= 1,
        "{report}"
    );

    // What a device is given (`kiln sim` writes it into the firmware): the samples in HWC
    // order, on which `Model::run` gives the host's logits.
    use kiln_trainer::data::{self, DataOptions, DataSpec};
    use kiln_trainer::quant::host;
    let blob = std::fs::read(dir.path().join("model.kiln")).unwrap();
    let model = kiln_runtime::Model::from_bytes(&blob).unwrap();
    let split = data::load(&DataSpec::Digits, &DataOptions::default()).unwrap();
    let raw = host::raw_inputs(&split.test, "digits", 0).unwrap();
    let run = host::run_runtime(&model, &raw, 64, 10).unwrap();
    let device = host::device_order(&model, &raw, 64);
    assert_ne!(device, raw, "two channels: HWC is not CHW");
    // HWC position (y, x, c) holds CHW index c * 32 + y * 4 + x.
    assert_eq!(device[1], raw[32]);
    assert_eq!(device[2], raw[1]);
    let mut scratch = vec![0i8; model.fast_scratch_len()];
    let mut logits = vec![0i8; 10];
    for (row, expected) in device.chunks_exact(64).zip(run.logits.chunks_exact(10)) {
        model.run(row, &mut scratch, &mut logits).unwrap();
        assert_eq!(logits, expected);
    }
}

/// A 2x2 average over uniform image regions has the same range as its input: at the input's
/// scale a quarter of its window sums are exact rounding ties, which tract rounded either way
/// (247 of 449 rows identical, one argmax flipped). The quantizer now moves the average's
/// scale off the ties.
#[test]
fn an_average_pool_over_uniform_regions_quantizes_without_rounding_ties() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("avg");
    let output = kiln(&[
        "train",
        "--layers",
        "conv1x1:16,avgpool2",
        "--epochs",
        "5",
        "--lr",
        "0.01",
        "--no-check",
        "--no-plot",
        "--quiet",
        "-o",
        s(&out),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = kiln(&[
        "quantize",
        s(&out.join("model.json")),
        "--json",
        "-o",
        s(&dir.path().join("int8")),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["tract_identical"], report["test_samples"],
        "{report}"
    );
    assert_eq!(report["tract_max_lsb_diff"], 0, "{report}");
}

/// A residual network (an identity shortcut, then a projection shortcut through a tap and a
/// strided 1x1 convolution, as ResNet-8's stages have): it trains, tract checks its ONNX file,
/// it quantizes with the trainer's integer model equal to the runtime on every test image,
/// and tract's QDQ run agrees with the device.
#[test]
fn a_residual_network_trains_exports_quantizes_and_matches_tract() {
    const RESIDUAL: &str = "conv3x3:8,conv3x3:8:identity,add@1:relu,conv3x3s2:16,\
                            conv3x3:16:identity,@3,conv1x1s2:16:identity,add@5:relu,gap,dense:24";
    let dir = tempfile::tempdir().unwrap();
    let output = kiln(&[
        "train",
        "--layers",
        RESIDUAL,
        "--epochs",
        "10",
        "--lr",
        "0.01",
        "--quiet",
        "--json",
        "-o",
        s(dir.path()),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["check_passed"], true, "{report}");
    assert_eq!(
        report["check"]["argmax_agreements"],
        report["check"]["n_samples"]
    );
    assert!(
        report["test_accuracy"].as_f64().unwrap() > 0.85,
        "a small residual network learns the 8x8 digits: {report}"
    );
    let model = model_json(dir.path());
    assert_eq!(model["format_version"], 4);
    assert_eq!(
        model["architecture"]["layers"][5],
        serde_json::json!({"type": "tap", "value": 3})
    );
    let ops = op_types(&dir.path().join("model.onnx"));
    let count = |ops: &[String], op: &str| ops.iter().filter(|o| *o == op).count();
    assert_eq!(count(&ops, "Add"), 2, "{ops:?}");
    assert_eq!(count(&ops, "Conv"), 5, "{ops:?}");

    quantize_and_check(dir.path());
    let qdq_ops = op_types(&dir.path().join("model.qdq.onnx"));
    assert_eq!(count(&qdq_ops, "Add"), 2, "{qdq_ops:?}");

    // The blob: version 8 (its adds' weights on the 2^22 grid), each add a node reading two
    // values.
    let blob = std::fs::read(dir.path().join("model.kiln")).unwrap();
    let runtime = kiln_runtime::Model::from_bytes(&blob).unwrap();
    assert_eq!(runtime.format_version(), 8);
    let adds: Vec<kiln_runtime::LayerInfo> = (0..runtime.n_layers())
        .filter_map(|k| runtime.layer(k))
        .filter(|l| l.kind == kiln_runtime::LayerKind::Add)
        .collect();
    assert_eq!(adds.len(), 2);
    assert_eq!(
        (adds[0].input_value, adds[0].second_input_value),
        (2, Some(1))
    );
    let output = kiln(&["inspect", s(&dir.path().join("model.kiln")), "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let inspect: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let kinds: Vec<&str> = inspect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "conv2d",
            "conv2d",
            "add",
            "conv2d",
            "conv2d",
            "conv2d",
            "add",
            "avg_pool2d",
            "dense",
            "dense"
        ]
    );
}
