//! `cargo xtask ci`: the conformance checks CI runs after `cargo test`.
//!
//! It drives the real `kiln` binary through every command a user runs, writes
//! ONNX files of several shapes and opsets, and hands them to the independent
//! Python oracle (onnx's full checker and onnxruntime).

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct CiOptions {
    /// The Python that has onnx and onnxruntime (see xtask/scripts/requirements.txt).
    pub python: PathBuf,
    /// The MNIST folder; skipped with a message when it does not exist.
    pub mnist: PathBuf,
    /// Where the artifacts go.
    pub out: PathBuf,
}

/// The classic MNIST configuration (784-128-10, ReLU, SGD lr 0.01, batch 64),
/// without the epoch count; `bench-train` uses it too.
pub const CLASSIC_FLAGS: &[&str] = &[
    "--hidden",
    "128",
    "--optimizer",
    "sgd",
    "--lr",
    "0.01",
    "--batch",
    "64",
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

impl CiOptions {
    pub fn parse(args: &[String]) -> Result<Self> {
        let root = workspace_root();
        let mut options = CiOptions {
            python: std::env::var_os("KILN_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".venv/bin/python")),
            mnist: root.join("../shared/data/mnist"),
            out: root.join("kiln-out/ci"),
        };
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let mut value = || {
                iter.next()
                    .map(PathBuf::from)
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--python" => options.python = value()?,
                "--mnist" => options.mnist = value()?,
                "--out" => options.out = value()?,
                other => bail!("cargo xtask ci: unknown flag {other}; expected --python PATH, --mnist DIR or --out DIR"),
            }
        }
        Ok(options)
    }
}

/// Runs `kiln` (built in the test profile, so CI compiles the workspace once), or `$KILN_BIN`
/// when set (a prebuilt binary, for experiments).
pub(crate) fn kiln(args: &[&str]) -> Result<std::process::Output> {
    let mut command = match std::env::var_os("KILN_BIN") {
        Some(binary) => Command::new(binary),
        None => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut command = Command::new(cargo);
            command.args([
                "run",
                "--quiet",
                "--package",
                "kiln-trainer",
                "--bin",
                "kiln",
                "--",
            ]);
            command
        }
    };
    let output = command
        .current_dir(workspace_root())
        .args(args)
        .output()
        .context("cannot run kiln")?;
    Ok(output)
}

/// Runs `kiln` and returns what it printed on stdout, parsed as JSON when it is JSON.
pub(crate) fn kiln_ok(args: &[&str]) -> Result<serde_json::Value> {
    println!("$ kiln {}", args.join(" "));
    let output = kiln(args)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "kiln {} failed ({}):\n{stdout}\n{stderr}",
            args.join(" "),
            output.status
        );
    }
    print!("{stdout}");
    Ok(serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null))
}

/// Writes a deterministic three-class CSV with a header: integer sensor
/// readings on very different scales (as a device would see them) and a noise
/// column. With `regression_target`, a float column `height_m` follows the
/// readings, for regression on column 3.
fn write_synthetic_csv(path: &Path, n_rows: usize, regression_target: bool) -> Result<()> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::from(if regression_target {
        "width_mm,height_adc,noise,height_m,class\n"
    } else {
        "width_mm,height_adc,noise,class\n"
    });
    for row_idx in 0..n_rows {
        let class = row_idx % 3;
        let width_mm = (100.0 * (class as f64 + uniform() * 1.2)).round();
        let height_adc = (1000.0 * (2.0 - class as f64 + uniform() * 1.2)).round();
        let noise = (uniform() * 1000.0).round();
        if regression_target {
            let height_m = height_adc / 100_000.0;
            text.push_str(&format!(
                "{width_mm},{height_adc},{noise},{height_m:.5},{class}\n"
            ));
        } else {
            text.push_str(&format!("{width_mm},{height_adc},{noise},{class}\n"));
        }
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// Quantizes the model in `dir` into the same folder and requires tract on the
/// QDQ file to agree with kiln-runtime.
fn quantize_in_place(dir: &Path, label: &str) -> Result<serde_json::Value> {
    quantize_in_place_with(dir, label, &[])
}

/// [`quantize_in_place`] with more `kiln quantize` flags.
fn quantize_in_place_with(dir: &Path, label: &str, flags: &[&str]) -> Result<serde_json::Value> {
    let model = dir.join("model.json").to_string_lossy().into_owned();
    let out = dir.to_string_lossy().into_owned();
    let mut args = vec!["quantize", &model, "-o", &out, "--quiet", "--json"];
    args.extend_from_slice(flags);
    let report = kiln_ok(&args)?;
    ensure!(
        report["tract_passed"] == true,
        "{label} quantize: tract on the QDQ file disagrees with kiln-runtime"
    );
    Ok(report)
}

pub fn run(options: &CiOptions) -> Result<()> {
    let out = &options.out;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("{}: cannot clear", out.display()))?;
    }
    std::fs::create_dir_all(out)?;
    let path = |p: &Path| p.to_string_lossy().into_owned();

    // 0. Formatting, so style never reaches review.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo fmt --all --check");
    let status = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["fmt", "--all", "--check"])
        .status()
        .context("cannot run cargo fmt")?;
    ensure!(
        status.success(),
        "cargo fmt --all --check found unformatted code: run `cargo fmt --all`"
    );

    // 1. The README's main job, on the bundled digits.
    let demo_dir = out.join("demo");
    let demo = kiln_ok(&["demo", "-o", &path(&demo_dir), "--quiet", "--json"])?;
    let accuracy = demo["test_accuracy"]
        .as_f64()
        .context("demo --json has no test_accuracy")?;
    ensure!(
        accuracy >= 0.95,
        "demo test accuracy {accuracy} is below 0.95"
    );
    ensure!(
        demo["check_passed"] == true,
        "demo: the tract check did not pass"
    );
    ensure!(
        demo["quantization"]["tract_passed"] == true,
        "demo: tract on the QDQ file disagrees with kiln-runtime"
    );
    let int8 = demo["quantization"]["int8_accuracy"]
        .as_f64()
        .context("demo --json has no int8_accuracy")?;
    ensure!(
        int8 >= accuracy - 0.01,
        "demo: int8 accuracy {int8} is more than a point below float {accuracy}"
    );

    // 2. The same model at the newest opset, with probabilities, checked again.
    let opset21 = demo_dir.join("opset21.onnx");
    kiln_ok(&[
        "export",
        &path(&demo_dir.join("model.json")),
        "-o",
        &path(&opset21),
        "--opset",
        "21",
        "--probabilities",
    ])?;
    kiln_ok(&["check", &path(&opset21), "--save-reference"])?;

    // 3. CSV with a header, standardisation, leaky-relu, SGD with Nesterov, a step schedule, opset 17.
    let csv_dir = out.join("csv");
    std::fs::create_dir_all(&csv_dir)?;
    let csv = csv_dir.join("synthetic.csv");
    write_synthetic_csv(&csv, 600, false)?;
    let csv_run = kiln_ok(&[
        "train",
        "--data",
        &format!("csv:{}", path(&csv)),
        "--hidden",
        "16,8",
        "--activation",
        "leaky-relu",
        "--normalize",
        "standardize",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.9",
        "--nesterov",
        "--lr",
        "0.05",
        "--schedule",
        "step",
        "--step-size",
        "10",
        "--gamma",
        "0.5",
        "--epochs",
        "30",
        "--batch",
        "16",
        "--opset",
        "17",
        "--probabilities",
        "-o",
        &path(&csv_dir),
        "--quiet",
        "--json",
    ])?;
    ensure!(
        csv_run["check_passed"] == true,
        "csv run: the tract check did not pass"
    );
    // Standardisation and a leaky-relu table in int8.
    quantize_in_place(&csv_dir, "csv")?;

    // 4. Regression with tanh, a sigmoid output and AdamW, opset 19.
    let reg_dir = out.join("regression");
    std::fs::create_dir_all(&reg_dir)?;
    let reg_csv = reg_dir.join("regression.csv");
    write_synthetic_csv(&reg_csv, 300, true)?;
    let reg_run = kiln_ok(&[
        "train",
        "--data",
        &format!("csv:{}", path(&reg_csv)),
        "--label-column",
        "3",
        "--loss",
        "mse",
        "--activation",
        "tanh",
        "--output-activation",
        "sigmoid",
        "--optimizer",
        "adamw",
        "--weight-decay",
        "0.01",
        "--schedule",
        "cosine",
        "--hidden",
        "12",
        "--epochs",
        "20",
        "--opset",
        "19",
        "-o",
        &path(&reg_dir),
        "--quiet",
        "--json",
    ])?;
    ensure!(
        reg_run["check_passed"] == true,
        "regression run: the tract check did not pass"
    );

    // 4b. Convolutional networks on the 8x8 digits: Conv2d, depthwise, both poolings and the
    // global average (NCHW graphs), a residual network, then a 1-D network over the same rows
    // as 64-sample signals.
    for (name, layers, input_shape) in [
        (
            "cnn",
            "conv3x3:8,dw3x3:relu6,maxpool2,conv3x3s2:16,avgpool2,dense:32",
            None,
        ),
        ("cnn-gap", "conv3x3v:8,conv3x3:16,gap", None),
        // Skip connections: an identity shortcut and a projection shortcut (a tap and a
        // strided 1x1 convolution), ResNet-8's two blocks. With power-of-two scales (the
        // folder ends in `pow2`): a skip sums two paths' rounding, so with other scales a float
        // engine may differ by 2 LSB at the logits; with these it must give them exactly.
        (
            "resnet-pow2",
            "conv3x3:8,conv3x3:8:identity,add@1:relu,conv3x3s2:16,conv3x3:16:identity,@3,\
             conv1x1s2:16:identity,add@5:relu,gap",
            None,
        ),
        (
            "cnn1d",
            "conv1d5:8,maxpool1x2,conv1d3s2:8,dense:16",
            Some("1x64x1"),
        ),
    ] {
        let cnn_dir = out.join(name);
        let mut args = vec![
            "train",
            "--data",
            "digits",
            "--layers",
            layers,
            "--epochs",
            "3",
            "--opset",
            "13",
            "--probabilities",
            "-o",
        ];
        let out_dir = path(&cnn_dir);
        args.push(&out_dir);
        args.extend_from_slice(&["--quiet", "--json"]);
        if let Some(shape) = input_shape {
            args.extend_from_slice(&["--input-shape", shape]);
        }
        let run = kiln_ok(&args)?;
        ensure!(
            run["check_passed"] == true,
            "{name} run: the tract check did not pass"
        );
        // The int8 layer graph: kiln-runtime against tract on its QDQ twin, and the oracle.
        if name.ends_with("pow2") {
            let report = quantize_in_place_with(&cnn_dir, name, &["--pow2-scales"])?;
            ensure!(
                report["tract_identical"] == report["test_samples"],
                "{name}: tract's int8 logits are not the runtime's on every sample: {} of {} \
                 rows identical",
                report["tract_identical"],
                report["test_samples"]
            );
        } else {
            quantize_in_place(&cnn_dir, name)?;
        }
    }

    // 5. MNIST, one epoch of the classic configuration, checked on all 10,000 test images.
    if options.mnist.join("t10k-images-idx3-ubyte.gz").exists()
        || options.mnist.join("t10k-images-idx3-ubyte").exists()
    {
        let mnist_dir = out.join("mnist");
        let data = format!("mnist:{}", path(&options.mnist));
        let out_dir = path(&mnist_dir);
        let mut args = vec!["train", "--data", &data];
        args.extend_from_slice(CLASSIC_FLAGS);
        args.extend_from_slice(&["--epochs", "1", "-o", &out_dir, "--quiet", "--json"]);
        let mnist = kiln_ok(&args)?;
        let accuracy = mnist["test_accuracy"]
            .as_f64()
            .context("mnist --json has no test_accuracy")?;
        ensure!(
            accuracy >= 0.85,
            "MNIST after one classic epoch: test accuracy {accuracy} is below 0.85"
        );
        ensure!(
            mnist["check_passed"] == true,
            "mnist: the tract check did not pass"
        );
        let quant = quantize_in_place(&mnist_dir, "mnist")?;
        let int8 = quant["int8_accuracy"]
            .as_f64()
            .context("quantize --json has no int8_accuracy")?;
        ensure!(
            int8 >= accuracy - 0.005,
            "MNIST int8 accuracy {int8} is more than half a point below float {accuracy}"
        );
        // 5a. The same model with power-of-two scales: tract here, and onnxruntime and the
        // reference evaluator in step 6 (its folder's name ends in `pow2`), must give the
        // device's int8 logits exactly.
        let pow2_dir = out.join("mnist-pow2");
        let pow2 = kiln_ok(&[
            "quantize",
            &path(&mnist_dir.join("model.json")),
            "-o",
            &path(&pow2_dir),
            "--pow2-scales",
            "--quiet",
            "--json",
        ])?;
        ensure!(
            pow2["tract_identical"] == pow2["test_samples"] && pow2["tract_max_lsb_diff"] == 0,
            "mnist --pow2-scales: tract's int8 logits are not the runtime's on every image: {} of {} rows identical",
            pow2["tract_identical"],
            pow2["test_samples"]
        );
        // 5b'. One epoch of quantization-aware training for power-of-two scales: the int8
        // accuracy it reports is the runtime's, the trainer's integer forward pass equals the
        // runtime on every image (as `quantize` checks for every model), and tract (here) and
        // onnxruntime (step 6, the folder ends in `pow2`) compute the device's logits exactly.
        let qat_dir = out.join("mnist-qat-pow2");
        let qat = kiln_ok(&[
            "quantize",
            &path(&mnist_dir.join("model.json")),
            "-o",
            &path(&qat_dir),
            "--qat-epochs",
            "1",
            "--pow2-scales",
            "--quiet",
            "--json",
        ])?;
        ensure!(
            qat["trainer_identical"] == qat["test_samples"]
                && quant["trainer_identical"] == quant["test_samples"]
                && pow2["trainer_identical"] == pow2["test_samples"],
            "mnist: the trainer's int8 forward pass differs from the runtime"
        );
        ensure!(
            qat["tract_identical"] == qat["test_samples"],
            "mnist --qat-epochs 1 --pow2-scales: tract's int8 logits are not the runtime's on every image: {} of {} rows identical",
            qat["tract_identical"],
            qat["test_samples"]
        );
        let qat_accuracy = qat["int8_accuracy"]
            .as_f64()
            .context("quantize --json has no int8_accuracy")?;
        let pow2_accuracy = pow2["int8_accuracy"]
            .as_f64()
            .context("quantize --json has no int8_accuracy")?;
        ensure!(
            qat_accuracy >= pow2_accuracy - 0.002,
            "MNIST after a QAT epoch: int8 accuracy {qat_accuracy} is below the PTQ model's {pow2_accuracy} (both power-of-two scales)"
        );
        // 5c. The same model with int16 activations (the 16x8 scheme): within 0.1 point of
        // float, the trainer's integer forward pass the runtime's, and onnxruntime and the
        // reference evaluator (step 6) within 1 LSB of the runtime on every image.
        let int16 = kiln_ok(&[
            "quantize",
            &path(&mnist_dir.join("model.json")),
            "-o",
            &path(&out.join("mnist-int16")),
            "--activations",
            "int16",
            "--quiet",
            "--json",
        ])?;
        let int16_accuracy = int16["int8_accuracy"]
            .as_f64()
            .context("quantize --json has no int8_accuracy")?;
        ensure!(
            int16["activations"] == "int16"
                && int16["trainer_identical"] == int16["test_samples"]
                && int16_accuracy >= accuracy - 0.001,
            "mnist --activations int16: accuracy {int16_accuracy} against float {accuracy}, trainer rows identical {} of {}",
            int16["trainer_identical"],
            int16["test_samples"]
        );
        // The blob alone, as firmware would load it, on the host.
        kiln_ok(&[
            "run",
            &path(&mnist_dir.join("model.kiln")),
            "--data",
            &format!("mnist:{}", path(&options.mnist)),
        ])?;

        // 5b. The MNIST CNN of the README for one epoch: its float graph and int8 twin on all
        // 10,000 test images, through tract and the oracle.
        let cnn_dir = out.join("mnist-cnn");
        let cnn_out = path(&cnn_dir);
        let cnn = kiln_ok(&[
            "train",
            "--data",
            &data,
            "--layers",
            crate::firmware::MNIST_CNN_LAYERS,
            "--lr",
            "0.003",
            "--epochs",
            "1",
            "-o",
            &cnn_out,
            "--quiet",
            "--json",
        ])?;
        let accuracy = cnn["test_accuracy"]
            .as_f64()
            .context("mnist cnn --json has no test_accuracy")?;
        ensure!(
            accuracy >= 0.97 && cnn["check_passed"] == true,
            "MNIST CNN after one epoch: test accuracy {accuracy} (at least 0.97) or the tract check failed"
        );
        let quant = quantize_in_place(&cnn_dir, "mnist cnn")?;
        let int8 = quant["int8_accuracy"]
            .as_f64()
            .context("quantize --json has no int8_accuracy")?;
        ensure!(
            int8 >= accuracy - 0.002,
            "MNIST CNN int8 accuracy {int8} is more than 0.2 points below float {accuracy}"
        );
    } else {
        println!(
            "note: {} has no MNIST files; the MNIST conformance run is skipped",
            options.mnist.display()
        );
    }

    // 6. The independent oracle over every ONNX file written above.
    println!(
        "$ {} xtask/scripts/onnx_oracle.py {}",
        options.python.display(),
        out.display()
    );
    let status = Command::new(&options.python)
        .arg(workspace_root().join("xtask/scripts/onnx_oracle.py"))
        .arg(out)
        .status()
        .with_context(|| format!("cannot run {} (create the venv with xtask/scripts/requirements.txt, or pass --python)", options.python.display()))?;
    ensure!(
        status.success(),
        "the onnx/onnxruntime oracle found a mismatch"
    );
    println!("cargo xtask ci: all conformance checks passed");
    Ok(())
}
