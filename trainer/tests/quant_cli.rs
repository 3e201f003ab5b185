//! The int8 pipeline end to end through the `kiln` binary: train a small
//! digits model, quantize it, compare the runtime with tract on the QDQ file,
//! bake, run, and every bad input of the new commands.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// One trained and quantized digits model shared by the tests of this file.
struct Fixture {
    _dir: tempfile::TempDir,
    model: PathBuf,
    out: PathBuf,
    report: serde_json::Value,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let train_dir = dir.path().join("train");
        let trained = kiln(&[
            "train",
            "--hidden",
            "32",
            "--epochs",
            "5",
            "--lr",
            "0.01",
            "--quiet",
            "--no-check",
            "-o",
            s(&train_dir),
        ]);
        assert!(trained.status.success(), "{}", stderr(&trained));
        let model = train_dir.join("model.json");
        let out = dir.path().join("int8");
        let report = json(&kiln(&["quantize", s(&model), "-o", s(&out), "--json"]));
        Fixture {
            _dir: dir,
            model,
            out,
            report,
        }
    })
}

#[test]
fn quantize_reports_accuracy_sizes_and_agrees_with_tract() {
    let Fixture { out, report, .. } = fixture();
    let n = report["test_samples"].as_u64().unwrap();
    assert_eq!(n, 449, "the whole digits test set");
    let float = report["float_accuracy"].as_f64().unwrap();
    let int8 = report["int8_accuracy"].as_f64().unwrap();
    println!(
        "digits 64-32-10: float {float:.4}, int8 {int8:.4}, flash {} B, scratch {} B; runtime vs tract on the QDQ file: \
         {}/{n} rows bit-identical, max {} LSB, argmax {}/{n}",
        report["flash_bytes"], report["scratch_bytes"], report["tract_identical"], report["tract_max_lsb_diff"], report["tract_argmax_agreement"]
    );
    assert!(float > 0.85, "{report}");
    assert!(
        (float - int8).abs() <= 0.02,
        "int8 {int8} is more than 2 points from float {float}"
    );
    assert!(
        report["tract_max_lsb_diff"].as_u64().unwrap() <= 1,
        "{report}"
    );
    assert_eq!(report["tract_argmax_agreement"].as_u64().unwrap(), n);
    assert_eq!(report["tract_passed"], true);
    assert!(report["tract_identical"].as_u64().unwrap() <= n);
    // flash: 64*32 + 32*10 weights plus 4 bytes of bias, multiplier, and 1 of shift per channel, plus headers.
    let flash = report["flash_bytes"].as_u64().unwrap();
    assert!(
        (2368 + 42 * 9..2368 + 42 * 9 + 512).contains(&flash),
        "{flash}"
    );
    // scratch: at least the widest layer.
    assert!(report["scratch_bytes"].as_u64().unwrap() >= 32);
    for (key, name) in [
        ("qdq_onnx", "model.qdq.onnx"),
        ("blob", "model.kiln"),
        ("rust", "model.rs"),
        ("reference_input", "model.qdq.input.npy"),
        ("reference_logits_q", "model.qdq.logits_q.npy"),
    ] {
        let path = PathBuf::from(report["files"][key].as_str().unwrap());
        assert_eq!(path, out.join(name));
        assert!(path.exists(), "{key}");
    }
    let mut names: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "model.kiln",
            "model.qdq.input.npy",
            "model.qdq.logits_q.npy",
            "model.qdq.onnx",
            "model.rs"
        ],
        "no temp files left"
    );
    // The report carries the calibration and the per-layer decisions.
    assert_eq!(report["calib_samples"], 1000);
    assert_eq!(report["report"]["layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        report["report"]["layers"][0]["output"]["zero_point"], -128,
        "relu outputs start at 0"
    );
}

#[test]
fn the_blob_round_trips_and_the_rust_source_embeds_it() {
    let Fixture {
        model, out, report, ..
    } = fixture();
    let blob = std::fs::read(out.join("model.kiln")).unwrap();
    assert_eq!(blob.len() as u64, report["flash_bytes"].as_u64().unwrap());
    let runtime = kiln_runtime::Model::from_bytes(&blob).expect("the runtime loads the blob");
    assert_eq!(
        runtime.scratch_len() as u64,
        report["scratch_bytes"].as_u64().unwrap()
    );
    assert_eq!((runtime.n_inputs(), runtime.n_outputs()), (64, 10));

    let source = std::fs::read_to_string(out.join("model.rs")).unwrap();
    for needle in [
        "pub const N_INPUTS: usize = 64;",
        "pub const N_OUTPUTS: usize = 10;",
        &format!("pub const SCRATCH_LEN: usize = {};", runtime.scratch_len()),
        // 64 inputs: 8 groups of 8, 16 bytes each, plus 3 for alignment.
        &format!(
            "pub const FAST_SCRATCH_LEN: usize = {};",
            runtime.scratch_len() + 8 * 16 + 3
        ),
        "scratch: &mut [i8; FAST_SCRATCH_LEN],",
        &format!("pub const MODEL_LEN: usize = {};", blob.len()),
        "#[repr(C, align(4))]",
        "pub static MODEL_BLOB: &[u8; MODEL_LEN]",
        // an MLP links the dense kernel only
        "pub const LAYER_KINDS: u8 = kiln_runtime::kinds::DENSE;",
        "pub type Model = kiln_runtime::Model<'static, LAYER_KINDS>;",
        "pub fn model() -> Result<Model, kiln_runtime::Error>",
        "Model::with_kinds(MODEL_BLOB)",
        "input: &[i32; N_INPUTS],",
        "scratch: &mut [i8; SCRATCH_LEN],",
        "logits: &mut [i8; N_OUTPUTS],",
    ] {
        assert!(source.contains(needle), "{needle:?} missing from model.rs");
    }
    let embedded = kiln_trainer::quant::rust_source::parse_blob_bytes(&source)
        .expect("the source holds the bytes");
    assert_eq!(embedded, blob);
    kiln_runtime::Model::from_bytes(&embedded).expect("the embedded bytes parse");

    // bake gives the same artifacts: quantization is deterministic.
    let dir = tempfile::tempdir().unwrap();
    let (baked_blob, baked_rust) = (dir.path().join("m.kiln"), dir.path().join("m.rs"));
    let output = kiln(&["bake", s(model), "--blob", s(&baked_blob)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read(&baked_blob).unwrap(), blob);
    let output = kiln(&["bake", s(model), "--rust", s(&baked_rust)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&baked_rust).unwrap(), source);
}

#[test]
fn run_reproduces_the_int8_accuracy_and_writes_one_csv_row_per_sample() {
    let Fixture { out, report, .. } = fixture();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("logits.csv");
    let ran = json(&kiln(&[
        "run",
        s(&out.join("model.kiln")),
        "--data",
        "digits",
        "--outputs",
        s(&csv),
        "--json",
    ]));
    assert_eq!(ran["int8_accuracy"], report["int8_accuracy"]);
    assert_eq!(ran["samples"], report["test_samples"]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<i8>> = text
        .lines()
        .map(|line| line.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len() as u64, report["test_samples"].as_u64().unwrap());
    assert!(rows.iter().all(|row| row.len() == 10));
    // The text form prints the accuracy too.
    let output = kiln(&["run", s(&out.join("model.kiln"))]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("{:.4}", report["int8_accuracy"].as_f64().unwrap())),
        "{text}"
    );
}

#[test]
fn other_activations_and_standardization_quantize_and_agree_with_tract() {
    // tanh (tables), per-feature input maps (standardize), and leaky relu in a deeper net.
    for (flags, name) in [
        (
            &[
                "--hidden",
                "24",
                "--activation",
                "tanh",
                "--normalize",
                "standardize",
            ][..],
            "tanh+standardize",
        ),
        (
            &["--hidden", "24,16", "--activation", "leaky-relu"][..],
            "leaky-relu x2",
        ),
        (
            &[
                "--hidden",
                "16",
                "--activation",
                "sigmoid",
                "--normalize",
                "none",
            ][..],
            "sigmoid, raw inputs",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "train",
            "--epochs",
            "4",
            "--lr",
            "0.01",
            "--quiet",
            "--no-check",
            "-o",
            s(dir.path()),
        ];
        args.extend_from_slice(flags);
        let trained = kiln(&args);
        assert!(trained.status.success(), "{name}: {}", stderr(&trained));
        let out = dir.path().join("int8");
        let report = json(&kiln(&[
            "quantize",
            s(&dir.path().join("model.json")),
            "-o",
            s(&out),
            "--json",
            "--percentile",
            "99.99",
        ]));
        let n = report["test_samples"].as_u64().unwrap();
        println!(
            "{name}: float {}, int8 {}, tract {}/{n} identical, max {} LSB, argmax {}/{n}",
            report["float_accuracy"],
            report["int8_accuracy"],
            report["tract_identical"],
            report["tract_max_lsb_diff"],
            report["tract_argmax_agreement"]
        );
        assert_eq!(report["tract_passed"], true, "{name}: {report}");
        let (float, int8) = (
            report["float_accuracy"].as_f64().unwrap(),
            report["int8_accuracy"].as_f64().unwrap(),
        );
        assert!(
            (float - int8).abs() <= 0.03,
            "{name}: float {float}, int8 {int8}"
        );
    }
}

#[test]
fn a_corrupted_blob_is_bad_input_naming_the_file() {
    let Fixture { out, .. } = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mut blob = std::fs::read(out.join("model.kiln")).unwrap();
    let middle = blob.len() / 2;
    blob[middle] ^= 0x10;
    let corrupted = dir.path().join("corrupted.kiln");
    std::fs::write(&corrupted, &blob).unwrap();
    assert_fails(&kiln(&["run", s(&corrupted)]), 2, &["corrupted.kiln"]);
    // Truncated, empty and missing files too.
    let truncated = dir.path().join("truncated.kiln");
    std::fs::write(&truncated, &blob[..10]).unwrap();
    assert_fails(&kiln(&["run", s(&truncated)]), 2, &["truncated.kiln"]);
    assert_fails(
        &kiln(&["run", s(&dir.path().join("missing.kiln"))]),
        2,
        &["missing.kiln"],
    );
}

#[test]
fn run_refuses_data_of_another_width_and_non_integer_values() {
    let Fixture { out, .. } = fixture();
    let dir = tempfile::tempdir().unwrap();
    // 3 features: not what the 64-input model takes.
    let narrow = dir.path().join("narrow.csv");
    std::fs::write(
        &narrow,
        "1,2,3,0\n4,5,6,1\n1,2,3,0\n4,5,6,1\n1,2,3,0\n4,5,6,1\n1,2,3,0\n4,5,6,1\n",
    )
    .unwrap();
    assert_fails(
        &kiln(&[
            "run",
            s(&out.join("model.kiln")),
            "--data",
            &format!("csv:{}", s(&narrow)),
        ]),
        2,
        &["model.kiln", "64 inputs", "3 features"],
    );

    // A 2-feature model trained on integers, run on a test file with a fraction.
    let train = dir.path().join("train.csv");
    let test = dir.path().join("test.csv");
    let rows: String = (0..40)
        .map(|i| format!("{},{},{}\n", i % 7, (i * 3) % 5, i % 2))
        .collect();
    std::fs::write(&train, &rows).unwrap();
    std::fs::write(&test, "1,2,0\n3,0.5,1\n").unwrap();
    let model_dir = dir.path().join("m");
    let trained = kiln(&[
        "train",
        "--data",
        &format!("csv:{}", s(&train)),
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--quiet",
        "--no-check",
        "-o",
        s(&model_dir),
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let blob = dir.path().join("m.kiln");
    let baked = kiln(&["bake", s(&model_dir.join("model.json")), "--blob", s(&blob)]);
    assert!(baked.status.success(), "{}", stderr(&baked));
    let output = kiln(&[
        "run",
        s(&blob),
        "--data",
        &format!("csv:{}", s(&train)),
        "--test-data",
        s(&test),
    ]);
    assert_fails(&output, 2, &["record 1", "column 1", "0.5", "integer"]);
}

#[test]
fn bad_flags_are_usage_errors() {
    let Fixture { model, .. } = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = s(dir.path());
    assert_fails(
        &kiln(&["quantize", s(model), "-o", out, "--percentile", "40"]),
        2,
        &["--percentile"],
    );
    assert_fails(
        &kiln(&["quantize", s(model), "-o", out, "--calib", "0"]),
        2,
        &["--calib"],
    );
    let output = kiln(&["bake", s(model)]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "bake needs --blob or --rust: {}",
        stderr(&output)
    );
    let output = kiln(&["bake", s(model), "--blob", "a", "--rust", "b"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "not both: {}",
        stderr(&output)
    );
    assert_fails(
        &kiln(&["quantize", &format!("{out}/missing.json"), "-o", out]),
        2,
        &["missing.json"],
    );
    // Data of another width than the model's.
    let narrow = dir.path().join("narrow.csv");
    std::fs::write(
        &narrow,
        "1,2,3,0\n4,5,6,1\n1,2,3,0\n4,5,6,1\n1,2,3,0\n4,5,6,1\n1,2,3,0\n4,5,6,1\n",
    )
    .unwrap();
    let output = kiln(&[
        "quantize",
        s(model),
        "-o",
        out,
        "--data",
        &format!("csv:{}", s(&narrow)),
    ]);
    assert_fails(&output, 2, &["model.json", "64 inputs", "3 features"]);
    std::fs::remove_file(&narrow).unwrap();
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written on failure"
    );
}

#[test]
fn demo_quantizes_and_reports_the_int8_model() {
    let dir = tempfile::tempdir().unwrap();
    let report = json(&kiln(&["demo", "-o", s(dir.path()), "--quiet", "--json"]));
    let quant = &report["quantization"];
    let (float, int8) = (
        quant["float_accuracy"].as_f64().unwrap(),
        quant["int8_accuracy"].as_f64().unwrap(),
    );
    assert_eq!(quant["float_accuracy"], report["test_accuracy"]);
    assert!((float - int8).abs() <= 0.02, "float {float}, int8 {int8}");
    assert!(quant["flash_bytes"].as_u64().unwrap() > 64 * 128 + 128 * 10);
    assert!(quant["scratch_bytes"].as_u64().unwrap() >= 128);
    assert_eq!(quant["tract_passed"], true, "{quant}");
    for name in [
        "model.json",
        "model.onnx",
        "model.qdq.onnx",
        "model.kiln",
        "model.rs",
    ] {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    // The text summary has the int8 rows.
    let dir = tempfile::tempdir().unwrap();
    let output = kiln(&["demo", "-o", s(dir.path()), "--quiet"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for label in [
        "float acc",
        "int8 acc",
        "flash",
        "scratch RAM",
        "tract int8     PASS",
    ] {
        assert!(text.contains(label), "{label:?} missing from:\n{text}");
    }
}

#[test]
fn every_bit_flip_and_truncation_of_the_digits_blob_is_rejected() {
    let Fixture { out, .. } = fixture();
    let blob = std::fs::read(out.join("model.kiln")).unwrap();
    assert!(kiln_runtime::Model::from_bytes(&blob).is_ok());
    let mut flipped = blob.clone();
    for bit_idx in 0..blob.len() * 8 {
        flipped[bit_idx / 8] ^= 1 << (bit_idx % 8);
        assert!(
            kiln_runtime::Model::from_bytes(&flipped).is_err(),
            "flipping bit {bit_idx} of a {}-byte blob went unnoticed",
            blob.len()
        );
        flipped[bit_idx / 8] ^= 1 << (bit_idx % 8);
    }
    for len in 0..blob.len() {
        assert!(
            kiln_runtime::Model::from_bytes(&blob[..len]).is_err(),
            "a blob truncated to {len} bytes was accepted"
        );
    }
    println!(
        "rejected all {} bit flips and {} truncations",
        blob.len() * 8,
        blob.len()
    );
}

/// Temp files a killed `quantize` left beside its outputs are removed by the next run (files
/// kiln did not write stay).
#[test]
fn the_next_quantize_removes_stale_temp_files() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let stale = [
        ".model.qdq.input.npy.tmp-999999999",
        ".model.kiln.tmp-999999999",
        ".model.rs.tmp-999999999-2",
    ];
    for name in stale {
        std::fs::write(dir.path().join(name), b"partial").unwrap();
    }
    let unrelated = dir.path().join(".notes.tmp-1");
    std::fs::write(&unrelated, b"keep").unwrap();
    let output = kiln(&["quantize", s(&fx.model), "-o", s(dir.path()), "--quiet"]);
    assert!(output.status.success(), "{}", stderr(&output));
    for name in stale {
        assert!(!dir.path().join(name).exists(), "{name} was not removed");
    }
    assert!(unrelated.exists(), "a file kiln did not write was removed");
    assert!(dir.path().join("model.kiln").exists());
}

/// `--pow2-scales`: every quantization scale in the QDQ file is a power of two (the input's
/// normalization factor is not a quantization scale), tract computes the runtime's logits bit
/// for bit, and the accuracy stays with the default scales'.
#[test]
fn pow2_scales_make_every_scale_a_power_of_two_and_tract_exact() {
    let Fixture { model, report, .. } = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pow2");
    let pow2 = json(&kiln(&[
        "quantize",
        s(model),
        "-o",
        s(&out),
        "--pow2-scales",
        "--json",
    ]));
    let n = pow2["test_samples"].as_u64().unwrap();
    assert_eq!(pow2["tract_identical"], n, "{pow2}");
    assert_eq!(pow2["tract_max_lsb_diff"], 0, "{pow2}");
    let (default, exact) = (
        report["int8_accuracy"].as_f64().unwrap(),
        pow2["int8_accuracy"].as_f64().unwrap(),
    );
    assert!((default - exact).abs() <= 0.01, "{default} vs {exact}");

    let bytes = std::fs::read(out.join("model.qdq.onnx")).unwrap();
    let scales = quantization_scales(&bytes);
    // The input, each layer's weights (one per row), biases and outputs.
    assert!(scales.len() > 20, "only {} scales", scales.len());
    for (name, value) in &scales {
        assert!(
            *value > 0.0 && f64::from(*value).log2().fract() == 0.0,
            "{name}: {value} is not a power of two"
        );
    }
    // The default scales are not powers of two: the check above can fail.
    let default =
        quantization_scales(&std::fs::read(fixture().out.join("model.qdq.onnx")).unwrap());
    assert!(default
        .iter()
        .any(|(_, v)| f64::from(*v).log2().fract() != 0.0));
}

/// Every quantization scale of a QDQ file (the `QuantizeLinear`/`DequantizeLinear` scales of
/// values, weights and biases; not the input's normalization factor), by initializer name.
fn quantization_scales(onnx: &[u8]) -> Vec<(String, f32)> {
    let model = kiln_onnx::mlp::decode_model(onnx).unwrap();
    let mut scales = Vec::new();
    for tensor in &model.graph.unwrap().initializer {
        let name = tensor.name();
        if !(name.ends_with(".scale")
            || name.ends_with("weight_scale")
            || name.ends_with("bias_scale"))
        {
            continue;
        }
        let values = tensor
            .raw_data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .chain(tensor.float_data.iter().copied());
        scales.extend(values.map(|v| (name.to_owned(), v)));
    }
    scales
}

/// int16 activations with int8 weights (the 16x8 scheme): a version-4 blob, an opset-21 QDQ
/// file whose quantized tensors are INT16, the runtime's accuracy at float's, the trainer's
/// integer forward pass equal to the runtime on every sample, and `run` and `bake` that take it.
#[test]
fn int16_activations_quantize_bake_and_run() {
    let f = fixture();
    let out = f.out.parent().unwrap().join("int16");
    let report = json(&kiln(&[
        "quantize",
        f.model.to_str().unwrap(),
        "--activations",
        "int16",
        "--json",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert_eq!(report["activations"], "int16");
    assert_eq!(
        report["trainer_identical"], report["test_samples"],
        "{report}"
    );
    let float = report["float_accuracy"].as_f64().unwrap();
    let int16 = report["int8_accuracy"].as_f64().unwrap();
    assert!(
        int16 >= float - 0.005,
        "int16 {int16} against float {float}"
    );
    assert!(
        report["tract_skipped"]
            .as_str()
            .unwrap()
            .contains("INT16 QuantizeLinear"),
        "{report}"
    );
    // The blob: format version 4, int16 values, the byte table of 256 int16.
    let blob = std::fs::read(out.join("model.kiln")).unwrap();
    assert_eq!(u16::from_le_bytes([blob[4], blob[5]]), 4);
    assert_eq!(blob[26], 1, "the header's element type");
    // The QDQ file: opset 21, INT16 input and logits, int8 weights.
    let model =
        kiln_onnx::mlp::decode_model(&std::fs::read(out.join("model.qdq.onnx")).unwrap()).unwrap();
    assert_eq!(model.opset_import[0].version, Some(21));
    let graph = model.graph.unwrap();
    let elem = |name: &str| {
        graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name))
            .and_then(|t| t.data_type)
            .unwrap_or_else(|| panic!("no initializer {name}"))
    };
    use kiln_onnx::proto::tensor_proto::DataType;
    assert_eq!(elem("input_q.zero_point"), DataType::Int16 as i32);
    assert_eq!(elem("logits_q.zero_point"), DataType::Int16 as i32);
    assert_eq!(elem("layer0.weight_q"), DataType::Int8 as i32);
    // The runtime's int16 logits for other runtimes: an <i2 array.
    let logits = std::fs::read(out.join("model.qdq.logits_q.npy")).unwrap();
    assert!(String::from_utf8_lossy(&logits[..80]).contains("'<i2'"));

    let run = json(&kiln(&[
        "run",
        out.join("model.kiln").to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(run["int8_accuracy"], report["int8_accuracy"]);
    let rust = out.join("baked.rs");
    let baked = kiln(&[
        "bake",
        f.model.to_str().unwrap(),
        "--activations",
        "int16",
        "--rust",
        rust.to_str().unwrap(),
    ]);
    assert!(baked.status.success(), "{}", stderr(&baked));
    let source = std::fs::read_to_string(&rust).unwrap();
    assert!(source.contains("self.model.run_i16(input, scratch, logits)"));
    assert!(source.contains("kiln_runtime::kinds::INT16"));
    assert_eq!(
        kiln_trainer::quant::rust_source::parse_blob_bytes(&source).unwrap(),
        blob
    );
}
