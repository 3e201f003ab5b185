//! Every bad input the CLI rejects, as listed in docs/errors.md: one case per row of that
//! table, each with its exit code and a distinctive part of its message. A second test
//! holds the table and these cases to each other, so neither can drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_onnx::builder::{attr_int, attr_ints, Dim, GraphBuilder, Producer};
use kiln_onnx::proto::{attribute_proto::AttributeType, AttributeProto};

/// One rejected input: the row id in docs/errors.md, the arguments (run in the fixture
/// folder, so paths are relative), the exit code, the file the message must name (if
/// any), and path-free parts of the message that docs/errors.md must show too.
struct Case {
    id: &'static str,
    args: &'static [&'static str],
    code: i32,
    names: &'static str,
    needles: &'static [&'static str],
}

const fn case(
    id: &'static str,
    args: &'static [&'static str],
    code: i32,
    names: &'static str,
    needles: &'static [&'static str],
) -> Case {
    Case {
        id,
        args,
        code,
        names,
        needles,
    }
}

/// The table. `m/` holds a small trained model (model.json, model.onnx, model.kiln).
#[rustfmt::skip]
const CASES: &[Case] = &[
    // Data files.
    case("csv-missing", &["train", "--data", "csv:missing.csv"], 2, "missing.csv", &[": file not found"]),
    case("csv-not-a-number", &["train", "--data", "csv:non_numeric.csv"], 2, "non_numeric.csv", &[": line 2, column 2: expected a number, found \"abc\""]),
    case("csv-ragged", &["train", "--data", "csv:ragged.csv"], 2, "ragged.csv", &[": line 2: found 2 fields, expected 3"]),
    case("csv-not-finite", &["train", "--data", "csv:nan.csv"], 2, "nan.csv", &[": line 2, column 2: value \"NaN\" is not finite"]),
    case("csv-empty", &["train", "--data", "csv:empty.csv"], 2, "empty.csv", &[": the data set is empty"]),
    case("csv-label-out-of-range", &["train", "--data", "csv:labels.csv", "--classes", "2"], 2, "labels.csv", &[": line 3: label 2 is out of range; expected 0..=1 for 2 classes"]),
    case("csv-label-column-missing", &["train", "--data", "csv:labels.csv", "--label-column", "7"], 2, "labels.csv", &[": line 1: label column 7 (0-based) does not exist"]),
    case("csv-one-class", &["train", "--data", "csv:one_class.csv"], 2, "one_class.csv", &[": every label is 0: classification needs at least 2 classes"]),
    case("csv-test-data-missing", &["train", "--data", "csv:labels.csv", "--test-data", "missing-test.csv"], 2, "missing-test.csv", &[": file not found"]),
    case("idx-bad-magic", &["train", "--data", "idx:bad-images,labels.idx"], 2, "bad-images", &[": not an IDX images file: magic number is 0x00000801"]),
    case("idx-count-mismatch", &["train", "--data", "idx:images.idx,labels.idx"], 2, "images.idx", &[" has 1 images but ", " has 2 labels; the counts must match"]),
    case("idx-truncated", &["train", "--data", "idx:truncated-images,labels.idx"], 2, "truncated-images", &[": truncated IDX file"]),
    case("mnist-missing-folder", &["train", "--data", "mnist:no-such-dir"], 2, "no-such-dir", &[": file not found"]),
    case("mnist-missing-file", &["train", "--data", "mnist:empty-dir"], 2, "empty-dir", &[": no train-images-idx3-ubyte in this directory"]),
    // Flags.
    case("data-unknown-spec", &["train", "--data", "foo:bar"], 2, "", &["--data: unknown data spec \"foo:bar\""]),
    case("flag-unknown", &["train", "--sched", "cosine"], 2, "", &["unexpected argument '--sched' found"]),
    case("flag-bad-choice", &["train", "--optimizer", "rmsprop"], 2, "", &["invalid value 'rmsprop' for '--optimizer <OPTIMIZER>'"]),
    case("train-too-large", &["train", "--hidden", "1000000000"], 2, "", &["--hidden/--layers/--batch: training this network needs about ", " GiB (75000000010 parameters, batches of 64), more than the ", " GiB of memory available"]),
    case("hidden-bad", &["train", "--hidden", "12,x"], 2, "", &["--hidden: expected comma-separated positive widths"]),
    case("layers-bad", &["train", "--layers", "conv3x3:16,pool"], 2, "", &["--layers: layer 2 (`pool`): expected a layer: `dense:N`, `convKxK:N`"]),
    case("layers-kernel-too-large", &["train", "--layers", "conv9x9v:4", "-o", "cnn-bad"], 2, "", &["--layers: layer 1 (conv9x9v:4): kernel 9x9 is larger than its input 8x8"]),
    case("layers-does-not-divide", &["train", "--layers", "maxpool3", "-o", "cnn-bad"], 2, "", &["--layers: layer 1 (maxpool3): input 8x8 does not divide: (8 - 3) is not a multiple of stride 3"]),
    case("input-shape-bad", &["train", "--input-shape", "8x"], 2, "", &["--input-shape: expected HxWxC or HxW with positive sizes"]),
    case("input-shape-mismatch", &["train", "--layers", "conv3x3:8", "--input-shape", "4x4x2", "-o", "cnn-bad"], 2, "", &["--input-shape: 4x4x2 holds 32 values, but digits has 64 features per row"]),
    case("batch-zero", &["train", "--batch", "0"], 2, "", &["--batch: expected a batch size of at least 1"]),
    case("epochs-zero", &["train", "--epochs", "0"], 2, "", &["--epochs: expected at least 1 epoch"]),
    case("threads-zero", &["train", "--threads", "0"], 2, "", &["--threads: expected at least 1 thread"]),
    case("lr-not-positive", &["train", "--lr", "0"], 2, "", &["--lr: expected a positive learning rate, got 0"]),
    case("val-split-range", &["train", "--val-split", "1.5"], 2, "", &["--val-split: expected a fraction in [0, 1), got 1.5"]),
    case("test-split-range", &["train", "--test-split", "1.5"], 2, "", &["--test-split: expected a fraction between 0 and 1, got 1.5"]),
    case("label-column-bad", &["train", "--data", "csv:labels.csv", "--label-column", "x"], 2, "", &["--label-column: expected a 0-based column index or `last`, got \"x\""]),
    case("opset-range", &["export", "m/model.json", "-o", "x.onnx", "--opset", "12"], 2, "", &["--opset: expected 13 to 21, got 12"]),
    case("resume-nothing", &["train", "--resume", "-o", "empty-dir"], 2, "empty-dir/model.json", &["--resume needs the model file of an earlier run: ", "/model.json: cannot read the model file"]),
    case("resume-changed-flag", &["train", "--resume", "--lr", "0.5", "-o", "m"], 2, "", &["--resume continues the saved run with its own settings; only --epochs may change, not --lr"]),
    case("diverged", &["train", "--optimizer", "sgd", "--lr", "1e30", "--hidden", "16", "--epochs", "2", "--no-check", "-o", "diverged"], 5, "diverged/model.json", &[": training stopped: training diverged at epoch 1", "the last good model (after epoch 0) was kept"]),
    // Model files.
    case("model-missing", &["export", "missing.json", "-o", "x.onnx"], 2, "missing.json", &[": cannot read the model file"]),
    case("model-not-json", &["export", "not_json.json", "-o", "x.onnx"], 2, "not_json.json", &[": not a kiln model file"]),
    case("model-version", &["export", "version.json", "-o", "x.onnx"], 2, "version.json", &[": format kiln-model version 5 is not supported, expected kiln-model version 1 to 4"]),
    case("model-weights-shape", &["export", "weights.json", "-o", "x.onnx"], 2, "weights.json", &[": layers[0].weights: has 511 values, expected 8 x 64"]),
    case("model-bias-shape", &["export", "bias.json", "-o", "x.onnx"], 2, "bias.json", &[": layers[1].bias: has 9 values, expected 10"]),
    case("model-no-layers", &["export", "no_layers.json", "-o", "x.onnx"], 2, "no_layers.json", &[": layers: expected at least one layer"]),
    case("model-skip-version", &["export", "skip_v3.json", "-o", "x.onnx"], 2, "skip_v3.json", &[": architecture.layers[1]: is a skip connection (@1), which needs format version 4, but the file is version 3"]),
    // ONNX files.
    case("check-onnx-missing", &["check", "missing.onnx"], 2, "missing.onnx", &[": tract cannot load the ONNX file: no such file"]),
    case("check-onnx-garbage", &["check", "garbage.onnx", "--model", "m/model.json"], 2, "garbage.onnx", &[": tract cannot load the ONNX file: failed to decode Protobuf message"]),
    case("check-model-missing", &["check", "m/model.onnx", "--model", "missing.json"], 2, "missing.json", &["kiln check compares with the trainer's model file (--model): ", ": cannot read the model file"]),
    case("check-widths", &["check", "four.onnx", "--model", "m/model.json"], 2, "four.onnx", &[": the ONNX file has 4 inputs per sample, but the model file has 64: is it this model's file?"]),
    case("check-disagrees", &["check", "tampered.onnx", "--model", "m/model.json"], 1, "tampered.onnx", &[": tract disagrees with the trainer: max |diff|"]),
    // Imported ONNX files.
    case("import-not-onnx", &["import", "garbage.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "garbage.onnx", &[": not an ONNX model: failed to decode Protobuf message"]),
    case("import-opset", &["import", "opset6.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "opset6.onnx", &[": opset 6 is not supported: kiln reads ai.onnx opsets 7 to 21"]),
    case("import-unsupported-op", &["import", "erf.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "erf.onnx", &[": node `erf` (Erf): unsupported op: Erf is not part of a kiln layer graph"]),
    case("import-non-constant-weights", &["import", "data_weights.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "data_weights.onnx", &[": node `self_product` (MatMul): non-constant weights: input `x` is not an initializer or a constant"]),
    case("import-shape-mismatch", &["import", "mismatch.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "mismatch.onnx", &[": node `fc` (Gemm): shape mismatch: the layer takes [N, 5] but the data is [N, 4]"]),
    case("import-conv-dilations", &["import", "dilated.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "dilated.onnx", &[": node `conv` (Conv): unsupported attribute: dilations [2, 2] are not supported; kiln's convolutions and pooling windows are not dilated"]),
    case("import-conv-group", &["import", "grouped.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "grouped.onnx", &[": node `conv` (Conv): unsupported attribute: group 2 is neither 1 nor the channel count 4 (a depthwise convolution)"]),
    case("import-conv-auto-pad", &["import", "same_lower.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "same_lower.onnx", &[": node `conv` (Conv): unsupported attribute: auto_pad SAME_LOWER puts the odd padding row or column first; kiln pads as SAME_UPPER (TensorFlow's SAME)"]),
    case("import-conv-pads", &["import", "lopsided.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "lopsided.onnx", &[": node `conv` (Conv): unsupported attribute: pads [1, 1, 0, 0] are neither valid (all 0) nor same ([1, 1, 1, 1] for this input, kernel and stride: the odd pixel at the end)"]),
    case("import-pool-padding", &["import", "padded_pool.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "padded_pool.onnx", &[": node `pool` (MaxPool): unsupported attribute: pads [1, 1, 1, 1]: kiln pools without padding"]),
    case("import-pool-stride", &["import", "lossy_pool.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "lossy_pool.onnx", &[": node `pool` (MaxPool): shape mismatch: a 3x3 window with stride 2x2 over a 4x4 input drops input rows or columns; kiln needs (in - k) to be a multiple of the stride"]),
    case("import-no-data", &["import", "m/model.onnx"], 2, "", &["--data: kiln import needs the data the model was trained on"]),
    case("import-data-mismatch", &["import", "four.onnx", "--data", "digits", "-o", "imp/x.json"], 2, "four.onnx", &[": the model takes 4 features, but digits has 64"]),
    case("import-expected-bad", &["import", "m/model.onnx", "--data", "digits", "-o", "imp/x.json", "--expected", "not_json.json"], 2, "not_json.json", &[": not an expected-outputs file: expected ident at line 1 column 2"]),
    case("check-expected-not-imported", &["check", "m/model.onnx", "--model", "m/model.json", "--expected", "disagree.json"], 2, "", &["--expected: compares a model imported with `kiln import` with its exporter's outputs; this model file was not imported"]),
    case("check-expected-disagrees", &["check", "m/model.onnx", "--model", "imp/model.json", "--expected", "disagree.json"], 1, "disagree.json", &[": the imported model disagrees with expected outputs ", "logits max |diff|"]),
    case("inspect-missing", &["inspect", "missing.onnx"], 2, "missing.onnx", &[": cannot read the file"]),
    case("inspect-garbage", &["inspect", "garbage.onnx"], 2, "garbage.onnx", &[": not a model file", "expected a kiln model file (JSON), an ONNX MLP (Gemm layers) or a .kiln model blob"]),
    case("inspect-flash-bad", &["inspect", "m/model.json", "--flash", "abc"], 2, "", &["--flash: expected a size in bytes such as 65536, 64K, 64KiB or 1M, got 'abc'"]),
    case("inspect-ram-bad", &["inspect", "m/model.json", "--ram", "12Q"], 2, "", &["--ram: expected a size in bytes such as 65536, 64K, 64KiB or 1M, got '12Q'"]),
    case("inspect-does-not-fit", &["inspect", "m/model.json", "--flash", "1", "--core", "cortex-m0"], 1, "m/model.json", &[": the int8 model does not fit on Cortex-M0: flash needs ", " bytes (model blob 1184 + kiln-runtime .text ", "), budget 1 ("]),
    case("inspect-core-unknown", &["inspect", "m/model.json", "--core", "cortex-m33"], 2, "", &["--core: unknown core 'cortex-m33'; expected one of cortex-m0, cortex-m3, cortex-m4f, cortex-m7, rv32imc"]),
    // Blobs.
    case("inspect-blob-truncated", &["inspect", "truncated.kiln"], 2, "truncated.kiln", &[": not a valid .kiln model blob", "model blob truncated"]),
    case("run-missing", &["run", "missing.kiln"], 2, "missing.kiln", &[": cannot read the model blob"]),
    case("run-truncated", &["run", "truncated.kiln"], 2, "truncated.kiln", &[": the kiln runtime refuses the model blob: model blob truncated"]),
    case("run-corrupted", &["run", "flipped.kiln"], 2, "flipped.kiln", &[": the kiln runtime refuses the model blob: model blob corrupted: stored CRC-32"]),
    case("run-not-a-blob", &["run", "garbage.onnx"], 2, "garbage.onnx", &[": the kiln runtime refuses the model blob: not a kiln model blob: bad magic"]),
    case("sim-core-unknown", &["sim", "m/model.kiln", "--core", "cortex-m33", "--data", "digits"], 2, "", &["--core: unknown core 'cortex-m33'; expected one of cortex-m0, cortex-m3, cortex-m4f, cortex-m7, rv32imc"]),
    case("sim-not-a-blob", &["sim", "garbage.onnx", "--core", "cortex-m0", "--data", "digits"], 2, "garbage.onnx", &[": the kiln runtime refuses the model blob: not a kiln model blob: bad magic"]),
    case("sim-targets-mismatch", &["sim", "m/model.kiln", "--core", "cortex-m4f", "--data", "csv:wide.csv", "--autoencoder"], 2, "m/model.kiln", &[": the model has 10 outputs, but csv:", " has 64 targets per row (--targets, --autoencoder)"]),
    case("sim-no-firmware-crate", &["sim", "m/model.kiln", "--core", "rv32imc", "--data", "digits", "--firmware-crate", "nowhere"], 2, "", &["kiln sim needs Kiln's firmware crate (examples/firmware-qemu in a Kiln checkout), not found at ", ": pass --firmware-crate DIR"]),
    case("fit-no-budget", &["fit", "--data", "digits", "-o", "fit0"], 2, "", &["expected a budget: --flash, --ram, or --latency with --clock"]),
    case("fit-core-unknown", &["fit", "--data", "digits", "--flash", "8K", "--core", "cortex-m33", "-o", "fit0"], 2, "", &["--core: unknown core 'cortex-m33'; expected one of cortex-m0, cortex-m3, cortex-m4f, cortex-m7, rv32imc"]),
    case("fit-size-bad", &["fit", "--data", "digits", "--flash", "12Q", "-o", "fit0"], 2, "", &["--flash: expected a size in bytes such as 65536, 64K, 64KiB or 1M, got '12Q'"]),
    case("fit-latency-bad", &["fit", "--data", "digits", "--latency", "5xs", "--clock", "64MHz", "-o", "fit0"], 2, "", &["--latency: expected a duration such as 800us, 5ms, 0.5s, 10m or 1h, got '5xs'"]),
    case("fit-clock-bad", &["fit", "--data", "digits", "--latency", "5ms", "--clock", "fast", "-o", "fit0"], 2, "", &["--clock: expected a frequency such as 64MHz, 48M, 32kHz or 16000000, got 'fast'"]),
    case("fit-regression", &["fit", "--data", "csv:wide.csv", "--autoencoder", "--flash", "8K", "-o", "fit0"], 2, "", &["kiln fit searches classifiers (the most accurate one that fits); --targets and --autoencoder are regression data"]),
    case("fit-resume-missing", &["fit", "--data", "digits", "--flash", "8K", "--resume", "-o", "fit0"], 2, "fit0", &["--resume: ", " does not exist; start the search without --resume"]),
    case("fit-nothing-fits", &["fit", "--data", "digits", "--flash", "1K", "--mlp-only", "-o", "fit1"], 1, "", &["no candidate fits flash 1024 bytes on Cortex-M4F: the smallest, 64-4-10, needs flash ", " bytes (model blob ", " + kiln-runtime .text ", "), RAM ", " bytes and ", " instructions per inference (flash ", " > 1024)"]),
    case("run-targets-mismatch", &["run", "m/model.kiln", "--data", "csv:wide.csv", "--autoencoder"], 2, "m/model.kiln", &[": the model has 10 outputs, but csv:", " has 64 targets per row (--targets, --autoencoder)"]),
    // Evaluation.
    case("eval-missing", &["eval", "missing.json"], 2, "missing.json", &[": cannot read the model"]),
    case("eval-not-a-model", &["eval", "garbage.onnx"], 2, "garbage.onnx", &["kiln eval takes a kiln model file (JSON) or a .kiln blob: ", ": not a kiln model file"]),
    case("eval-blob-corrupted", &["eval", "flipped.kiln"], 2, "flipped.kiln", &[": the kiln runtime refuses the model blob: model blob corrupted: stored CRC-32"]),
    case("eval-features-mismatch", &["eval", "m/model.json", "--data", "csv:labels.csv"], 2, "m/model.json", &[": the model takes 64 inputs, but csv:", " has 2 features"]),
    case("eval-targets-mismatch", &["eval", "m/model.kiln", "--data", "csv:wide.csv", "--autoencoder"], 2, "m/model.kiln", &[": the model has 10 outputs, but csv:", " has 64 targets per row (--targets, --autoencoder)"]),
    case("eval-classifier-regression-data", &["eval", "m/model.json", "--data", "csv:wide.csv", "--autoencoder"], 2, "m/model.json", &[": task: the model classifies into 10 classes, but csv:", " has regression targets"]),
    // Quantization and other flags.
    case("calib-zero", &["quantize", "m/model.json", "-o", "q", "--calib", "0"], 2, "", &["--calib: expected at least 1 sample"]),
    case("import-outputs-mismatch", &["import", "four.onnx", "--data", "csv:four_features.csv", "--regression", "-o", "imp4/model.json"], 2, "four.onnx", &[": the model predicts 3 values per row, but csv:", " has 1 target(s) per row (--targets, --autoencoder)"]),
    case("quantize-outputs-mismatch", &["quantize", "imp3/model.json", "--data", "csv:four_features.csv", "-o", "q3"], 2, "imp3/model.json", &[": task: the model predicts 3 value(s) per row, but csv:", " has 1 target(s) per row (--targets, --autoencoder)"]),
    case("inspect-onnx-cnn", &["inspect", "cnn/model.onnx"], 2, "cnn/model.onnx", &[": node 'layer0_conv' (Conv): kiln inspect reads the dense layers of an ONNX file; inspect a convolutional network's .kiln blob (kiln bake) instead"]),
    case("inspect-cnn", &["inspect", "cnn/model.json"], 2, "cnn/model.json", &[": architecture: a convolutional network; kiln inspect takes multilayer perceptrons only so far"]),
    case("percentile-range", &["quantize", "m/model.json", "-o", "q", "--percentile", "200"], 2, "", &["--percentile: expected a value above 50 and at most 100"]),
    // Quantization-aware training.
    case("qat-epochs-zero", &["train", "--qat", "--qat-epochs", "0"], 2, "", &["--qat-epochs: expected at least 1 epoch"]),
    case("qat-lr-not-positive", &["train", "--qat", "--qat-lr", "0"], 2, "", &["--qat-lr: expected a positive learning rate, got 0"]),
    case("qat-scales", &["quantize", "qat/model.json", "-o", "q"], 2, "qat/model.json", &[": cannot quantize: the model was trained (--qat) for power-of-two scales: quantize it with --pow2-scales"]),
    case("int16-cnn", &["quantize", "cnn/model.json", "--activations", "int16", "-o", "q"], 2, "cnn/model.json", &[": cannot quantize: --activations int16: layer 0 (conv3x3:4:relu): int16 activations take multilayer perceptrons (dense layers) so far"]),
    case("int16-fit", &["fit", "--flash", "8K", "--activations", "int16", "-o", "fit16"], 2, "", &["--activations int16: kiln fit sizes and searches int8 models; quantize its winner with kiln quantize --activations int16"]),
    case("qat-ranges-count", &["quantize", "qat_ranges.json", "--pow2-scales", "-o", "q"], 2, "qat_ranges.json", &[": state.qat.ranges.layers: has 1 ranges, but the network has 2 layers"]),
    case("bake-no-artifact", &["bake", "m/model.json"], 2, "", &["the following required arguments were not provided"]),
    case("completions-bad-shell", &["completions", "tcsh"], 2, "", &["invalid value 'tcsh' for '<SHELL>'"]),
];

fn n_dim() -> Dim {
    Dim::Param("N".into())
}

/// Writes an ONNX model with input `x` [N, 4] built by `build`, at `opset` (an opset the
/// builder does not write is set afterwards).
fn write_onnx(root: &Path, name: &str, opset: i64, build: &dyn Fn(&mut GraphBuilder)) {
    let mut graph = GraphBuilder::new("g");
    graph.input_f32("x", &[n_dim(), Dim::Fixed(4)]);
    build(&mut graph);
    let producer = Producer {
        name: "test".into(),
        version: "0".into(),
    };
    let mut model = graph.build(opset.max(13), &producer, "").unwrap();
    model.opset_import[0].version = Some(opset);
    std::fs::write(root.join(name), kiln_onnx::mlp::encode_model(&model)).unwrap();
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env_remove("KILN_INTERRUPT_AFTER_BATCHES")
        .output()
        .expect("the kiln binary runs")
}

/// Writes every input file the cases need into a fresh folder.
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |name: &str, bytes: &[u8]| std::fs::write(root.join(name), bytes).unwrap();
    write("non_numeric.csv", b"1,2,0\n3,abc,1\n");
    write("ragged.csv", b"1,2,0\n3,4\n");
    write("nan.csv", b"1,2,0\n3,NaN,1\n");
    write("empty.csv", b"");
    write("labels.csv", b"1,2,0\n3,4,1\n5,6,2\n7,8,0\n");
    write("one_class.csv", b"0,0,0\n1,1,0\n");
    write("bad-images", &[0, 0, 8, 1, 0, 0, 0, 1, 7]);
    write("labels.idx", &[0, 0, 8, 1, 0, 0, 0, 2, 1, 3]);
    write(
        "images.idx",
        &[0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 5, 6],
    );
    write(
        "truncated-images",
        &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 5],
    );
    write("not_json.json", b"not json");
    write("garbage.onnx", b"not a protobuf");
    std::fs::create_dir(root.join("empty-dir")).unwrap();

    // A small trained model, its ONNX file and its int8 blob.
    let ok = |output: Output| {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    ok(kiln(
        root,
        &[
            "train", "--hidden", "8", "--epochs", "1", "--quiet", "-o", "m",
        ],
    ));
    ok(kiln(
        root,
        &["bake", "m/model.json", "--blob", "m/model.kiln"],
    ));
    // A model trained for power-of-two scales with quantization-aware training.
    ok(kiln(
        root,
        &[
            "train",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--qat",
            "--qat-epochs",
            "1",
            "--pow2-scales",
            "--no-check",
            "--no-plot",
            "--quiet",
            "-o",
            "qat",
        ],
    ));
    let mut qat: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("qat/model.json")).unwrap()).unwrap();
    qat["state"]["qat"]["ranges"]["layers"]
        .as_array_mut()
        .unwrap()
        .pop();
    write("qat_ranges.json", &serde_json::to_vec(&qat).unwrap());
    // A convolutional model, which the MLP-only commands refuse.
    ok(kiln(
        root,
        &[
            "train",
            "--layers",
            "conv3x3:4,maxpool2",
            "--epochs",
            "1",
            "--no-check",
            "--no-plot",
            "--quiet",
            "-o",
            "cnn",
        ],
    ));
    // 64 integer columns: as an autoencoder's data, 64 targets per row, which the digits
    // classifier (10 outputs) cannot be measured on.
    let wide: String = (0..8)
        .map(|row| {
            let fields: Vec<String> = (0..64).map(|col| ((row * col) % 17).to_string()).collect();
            fields.join(",") + "\n"
        })
        .collect();
    write("wide.csv", wide.as_bytes());
    let blob = std::fs::read(root.join("m/model.kiln")).unwrap();
    write("truncated.kiln", &blob[..blob.len() / 2]);
    let mut flipped = blob.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    write("flipped.kiln", &flipped);

    // Broken model files derived from the good one.
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("m/model.json")).unwrap()).unwrap();
    let variant = |name: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let mut copy = model.clone();
        change(&mut copy);
        write(name, &serde_json::to_vec(&copy).unwrap());
    };
    variant("version.json", &|m| m["format_version"] = 5.into());
    variant("weights.json", &|m| {
        m["layers"][0]["weights"].as_array_mut().unwrap().pop();
    });
    variant("bias.json", &|m| {
        m["layers"][1]["bias"].as_array_mut().unwrap().pop();
    });
    variant("no_layers.json", &|m| m["layers"] = serde_json::json!([]));
    // A tap in a version-3 file: a version-3 reader would wire the graph as a chain.
    variant("skip_v3.json", &|m| {
        m["format_version"] = 3.into();
        m["architecture"] = serde_json::json!({
            "input_shape": {"h": 1, "w": 1, "c": 64},
            "layers": [
                {"type": "dense", "n_outputs": 8, "activation": {"kind": "relu"}},
                {"type": "tap", "value": 1},
                {"type": "dense", "n_outputs": 10, "activation": {"kind": "identity"}}
            ]
        });
    });
    variant("tampered.json", &|m| {
        let bias = m["layers"][1]["bias"][0].as_f64().unwrap();
        m["layers"][1]["bias"][0] = serde_json::json!(bias + 0.5);
    });
    ok(kiln(
        root,
        &["export", "tampered.json", "-o", "tampered.onnx"],
    ));

    // ONNX graphs `kiln import` refuses, and an imported model with outputs that disagree.
    write_onnx(root, "erf.onnx", 13, &|g| {
        g.initializer_f32("w", &[4, 2], &[0.5; 8]).unwrap();
        g.node("MatMul", "dense", &["x", "w"], &["h"], vec![]);
        g.node("Erf", "erf", &["h"], &["y"], vec![]);
        g.output_f32("y", &[n_dim(), Dim::Fixed(2)]);
    });
    write_onnx(root, "data_weights.onnx", 13, &|g| {
        g.node("MatMul", "self_product", &["x", "x"], &["y"], vec![]);
        g.output_f32("y", &[n_dim(), Dim::Fixed(4)]);
    });
    write_onnx(root, "mismatch.onnx", 13, &|g| {
        g.initializer_f32("w", &[3, 5], &[0.5; 15]).unwrap();
        g.node(
            "Gemm",
            "fc",
            &["x", "w"],
            &["y"],
            vec![attr_int("transB", 1)],
        );
        g.output_f32("y", &[n_dim(), Dim::Fixed(3)]);
    });
    let four = |g: &mut GraphBuilder| {
        g.initializer_f32("w", &[3, 4], &[0.5; 12]).unwrap();
        g.node(
            "Gemm",
            "fc",
            &["x", "w"],
            &["y"],
            vec![attr_int("transB", 1)],
        );
        g.output_f32("y", &[n_dim(), Dim::Fixed(3)]);
    };
    write_onnx(root, "four.onnx", 13, &four);
    // Convolutional graphs on [N, 4, 4, 4] (64 features, as the digits) with one attribute the
    // layer graph cannot represent each.
    let cnn =
        |name: &str, conv: Vec<AttributeProto>, weight: [i64; 4], pool: Vec<AttributeProto>| {
            let mut g = GraphBuilder::new("g");
            g.input_f32("x", &[n_dim(), Dim::Fixed(4), Dim::Fixed(4), Dim::Fixed(4)]);
            let count = weight.iter().product::<i64>() as usize;
            g.initializer_f32("w", &weight, &vec![0.1; count]).unwrap();
            g.node("Conv", "conv", &["x", "w"], &["c"], conv);
            g.node("MaxPool", "pool", &["c"], &["p"], pool);
            g.node("GlobalAveragePool", "gap", &["p"], &["g"], vec![]);
            g.node("Flatten", "flat", &["g"], &["y"], vec![]);
            g.output_f32("y", &[n_dim(), Dim::Fixed(weight[0])]);
            let producer = Producer {
                name: "test".into(),
                version: "0".into(),
            };
            let model = g.build(13, &producer, "").unwrap();
            std::fs::write(root.join(name), kiln_onnx::mlp::encode_model(&model)).unwrap();
        };
    let pool2 = || {
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_ints("strides", &[2, 2]),
        ]
    };
    let same = || vec![attr_ints("pads", &[1, 1, 1, 1])];
    cnn(
        "dilated.onnx",
        vec![attr_ints("dilations", &[2, 2])],
        [10, 4, 3, 3],
        pool2(),
    );
    cnn(
        "grouped.onnx",
        vec![attr_int("group", 2)],
        [10, 2, 3, 3],
        pool2(),
    );
    cnn(
        "same_lower.onnx",
        vec![
            AttributeProto {
                name: Some("auto_pad".into()),
                r#type: Some(AttributeType::String as i32),
                s: Some(b"SAME_LOWER".to_vec()),
                ..AttributeProto::default()
            },
            attr_ints("strides", &[2, 2]),
        ],
        [10, 4, 3, 3],
        vec![attr_ints("kernel_shape", &[1, 1])],
    );
    cnn(
        "lopsided.onnx",
        vec![attr_ints("pads", &[1, 1, 0, 0])],
        [10, 4, 3, 3],
        pool2(),
    );
    let mut padded = pool2();
    padded.push(attr_ints("pads", &[1, 1, 1, 1]));
    cnn("padded_pool.onnx", same(), [10, 4, 3, 3], padded);
    cnn(
        "lossy_pool.onnx",
        same(),
        [10, 4, 3, 3],
        vec![
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("strides", &[2, 2]),
        ],
    );
    write_onnx(root, "opset6.onnx", 6, &four);
    // A regressor of 3 outputs, imported on data with three targets per row, then quantized
    // with data of one target per row: quantize must refuse it before computing anything (it
    // used to panic in the loss, after writing files). Import itself refuses the mismatch.
    let rows: String = (0..40)
        .map(|i| format!("{},{},{},{},{}\n", i % 5, i % 3, i % 7, i % 2, i % 4))
        .collect();
    write("four_features.csv", rows.as_bytes());
    let rows: String = (0..40)
        .map(|i| {
            format!(
                "{},{},{},{},{},{},{}\n",
                i % 5,
                i % 3,
                i % 7,
                i % 2,
                i % 4,
                i % 6,
                i % 9
            )
        })
        .collect();
    write("three_targets.csv", rows.as_bytes());
    ok(kiln(
        root,
        &[
            "import",
            "four.onnx",
            "--data",
            "csv:three_targets.csv",
            "--targets",
            "4-6",
            "-o",
            "imp3/model.json",
            "--quiet",
        ],
    ));
    ok(kiln(
        root,
        &[
            "import",
            "m/model.onnx",
            "--data",
            "digits",
            "-o",
            "imp/model.json",
            "--quiet",
        ],
    ));
    let zeros = vec![0.0; 64];
    let disagree = serde_json::json!({
        "format": "kiln-expected-outputs",
        "format_version": 1,
        "inputs": {"input": {"shape": [1, 64], "data": zeros}},
        "outputs": {"logits": {"shape": [1, 10], "data": vec![100.0; 10]}},
    });
    write("disagree.json", &serde_json::to_vec(&disagree).unwrap());
    dir
}

#[test]
fn every_rejected_input_gets_its_documented_code_and_message() {
    let dir = fixtures();
    for case in CASES {
        let mut args: Vec<&str> = case.args.to_vec();
        if args[0] == "train" && !args.contains(&"--resume") {
            args.push("--quiet");
            if !args.contains(&"-o") {
                args.extend(["-o", "out"]);
            }
        }
        let output = kiln(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(case.code),
            "{}: kiln {args:?}: {stderr}",
            case.id
        );
        let first_line = stderr.lines().next().unwrap_or_default();
        assert!(
            first_line.starts_with("error: "),
            "{}: expected one error line, got: {stderr}",
            case.id
        );
        assert!(
            first_line.contains(case.names),
            "{}: the message does not name {:?}: {first_line}",
            case.id,
            case.names
        );
        for needle in case.needles {
            assert!(
                first_line.contains(needle),
                "{}: {needle:?} missing from: {first_line}",
                case.id
            );
        }
        assert!(
            !dir.path().join("out/model.onnx").exists(),
            "{}: a rejected run exported ONNX",
            case.id
        );
        // A graph the importer refuses writes no model file.
        let refused_graph = ["import-conv-", "import-pool-"]
            .iter()
            .any(|prefix| case.id.starts_with(prefix));
        assert!(
            !(refused_graph && dir.path().join("imp/x.json").exists()),
            "{}: a rejected import wrote a model file",
            case.id
        );
    }
}

/// The rows of the table in docs/errors.md: id -> (message, exit code).
fn documented_rows() -> BTreeMap<String, (String, i32)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut rows = BTreeMap::new();
    let mut count = 0;
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        // Cells are separated by unescaped pipes; `\|` is a literal pipe in a message.
        let line = line.replace("\\|", "\u{1}");
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().replace('\u{1}', "|"))
            .collect();
        assert_eq!(cells.len(), 4, "a row must have 4 cells: {line}");
        let id = cells[0].trim_matches('`').to_owned();
        let code: i32 = cells[3]
            .parse()
            .unwrap_or_else(|_| panic!("{id}: bad exit code {:?}", cells[3]));
        let message = cells[2].trim_matches('`').to_owned();
        assert!(
            rows.insert(id.clone(), (message, code)).is_none(),
            "{id} is listed twice"
        );
        count += 1;
    }
    assert_eq!(count, rows.len());
    rows
}

#[test]
fn docs_errors_md_lists_exactly_the_tested_cases() {
    let rows = documented_rows();
    assert_eq!(
        rows.len(),
        CASES.len(),
        "docs/errors.md has {} rows but the test table has {} cases",
        rows.len(),
        CASES.len()
    );
    assert!(rows.len() >= 25);
    for case in CASES {
        let Some((message, code)) = rows.get(case.id) else {
            panic!("{} is tested but not in docs/errors.md", case.id);
        };
        assert_eq!(*code, case.code, "{}: the documented exit code", case.id);
        for needle in case.needles {
            assert!(
                message.contains(needle),
                "{}: the documented message {message:?} lacks {needle:?}",
                case.id
            );
        }
    }
}
