//! Project automation for Kiln, run as `cargo xtask <command>`.
//!
//! The alias lives in `.cargo/config.toml`, so every task is plain Rust and
//! needs no tool beyond cargo.

mod bench_inference;
mod bench_kernels;
mod bench_train;
mod ci;
mod codegen;
mod elf;
mod estimate;
mod firmware;
mod firmware_anomaly;
mod firmware_tiny;
mod nostd;
mod qat_table;
mod sensor_data;
mod tiny_harness;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  codegen [--check]   regenerate onnx/src/generated/onnx.rs from onnx/proto/onnx.proto
                      (--check: fail instead of writing when the committed file is stale)
  ci [--python PATH] [--mnist DIR] [--out DIR]
                      the conformance checks: the kiln CLI end to end, tract, and the
                      onnx/onnxruntime oracle (PATH: a Python with xtask/scripts/requirements.txt)
  bench-train [--mnist DIR] [--only 1|2] [--seeds N] [--python PATH] [--no-sklearn]
                      seconds per epoch and accuracy of the MNIST configurations (release build)
                      next to scikit-learn's MLPClassifier (venv in ~/.cache/kiln-bench;
                      PATH: the Python that creates it)
  bench-inference [--mnist DIR] [--python PATH]
                      inference time per row at batch 1 and in batches of 64, one thread:
                      kiln-runtime int8 against tract (criterion) and onnxruntime (PATH: a
                      Python with xtask/scripts/requirements.txt), float and QDQ ONNX, on a
                      one-epoch MNIST model, and their ratios
  firmware [--board NAME]... [--images N] [--mnist DIR] [--insncount DIR] [--out DIR]
           [--update-figures]
                      cross-build the firmware in examples/firmware-qemu, run it in QEMU on
                      Cortex-M0/M3/M4F/M7 and RISC-V (an MLP and a CNN on each, the KWS DS-CNN
                      on M3/M4F/M7, the anomaly-detection autoencoder on real-valued features
                      on M3 (mps2-an385)/M4F/M7/RV32), require the host's checksum and accuracy,
                      and print instructions per MAC, code size, flash and RAM per board and
                      model (--update-figures: rewrite trainer/src/cli/device_figures.json)
  bench-mcu [--board NAME]... [--images N] [--conv-only]
                      instructions per MAC of MNIST 784-128-10, digits 64-128-10 and digits
                      64-16-10 on every emulated core, with the runtime's kernel and with the
                      reference kernel (up to 20 images); then
                      CMSIS-NN's convolution shapes as one-node models on Cortex-M4F and M7,
                      beside CMSIS-NN's counts (--conv-only: just those)
  bench-tiny [--board NAME]... [--out DIR]
                      MLPerf Tiny's models (KWS DS-CNN, VWW MobileNetV1 0.25, IC ResNet-8 on
                      synthetic sets of their shapes, and the anomaly-detection autoencoder) in
                      QEMU on Cortex-M4F, M7 and M3 (M0 and RV32 where they fit), outputs equal to
                      the host's: flash, RAM, instructions per inference and per MAC, beside the
                      published cycles per MAC
  tiny-harness [--model MODEL.json --data SPEC] [--model-version ID] [--samples N] [--out DIR]
                      MLPerf Tiny's submitter API (examples/mlperf-tiny-harness) in QEMU on
                      Cortex-M4F, driven over its UART like the official runner: every sample's
                      m-results equal to kiln-runtime's on the host, malformed commands answered
                      as the reference does (default model: a digits CNN trained for 1 epoch)
  bench-kernels [--board mps2-an386|microbit]...
                      each conv / depthwise / pooling kernel alone on the CMSIS-NN bench shapes
                      in QEMU (examples/kernel-bench-qemu): insns/MAC optimized, reference and
                      CMSIS-NN's, with every optimized output checked against the reference
  calibrate [--update] [--out DIR]
                      fit the per-layer instruction model of `kiln inspect`'s estimate to
                      `kiln sim` counts of 21 calibration MLPs on every core (needs what
                      `firmware` needs; --update: write it into trainer/src/cli/device_figures.json)
  qat-table [--mnist DIR] [--seeds N] [--out DIR]
                      float, post-training int8 and QAT int8 accuracy (kiln quantize
                      --qat-epochs 5 on the same float model) of the digits and MNIST MLPs of
                      docs/quantization.md, mean over N seeds (default 3); set KILN_BIN to a
                      release build of kiln to make it fast
  nostd               build kiln-runtime for thumbv6m-none-eabi (no std) and link the
                      no-panic proof in runtime-nostd/nopanic-check
  sensor-data [--out DIR] [--train N] [--test N] [--seed S]
                      deterministic log-mel-like machine-sound features (5 frames x 128 mel
                      bins, dB) for the anomaly-detection autoencoder: DIR/train.csv (N normal
                      rows, default 2000) and DIR/test.csv (half anomalous, default 600);
                      DIR defaults to target/sensor-data, S to 1
  help                print this message";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let result = match command.as_str() {
        "codegen" => codegen::run(rest),
        "ci" => ci::CiOptions::parse(rest).and_then(|options| ci::run(&options)),
        "bench-train" => bench_train::run(rest),
        "bench-inference" => bench_inference::run(rest),
        "nostd" => nostd::run(),
        "sensor-data" => sensor_data::run(rest),
        "calibrate" => estimate::run(rest),
        "qat-table" => qat_table::run(rest),
        "bench-kernels" => bench_kernels::run(rest),
        "bench-tiny" => firmware_tiny::run(rest),
        "tiny-harness" => tiny_harness::run(rest),
        "bench-mcu" => firmware::FirmwareOptions::parse(rest).and_then(|mut options| {
            options.n_mnist_images = options.n_mnist_images.min(20);
            firmware::bench_mcu(&options)
        }),
        "firmware" => {
            firmware::FirmwareOptions::parse(rest).and_then(|options| firmware::run(&options))
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("error: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
