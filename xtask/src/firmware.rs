//! `cargo xtask firmware`: the baked model as real firmware on emulated boards.
//!
//! For each board it writes the model (in its Rust-source form) and the test images into
//! `examples/firmware-qemu/src/generated/`, cross-builds the firmware, boots it in QEMU, and
//! requires its CRC-32 over all int8 logits and its accuracy to equal what kiln-runtime computes
//! on the host for the same images. A second build reads the `.kiln` blob from a flash partition
//! that QEMU's loader fills, and a third build without the inference call gives the runtime's
//! code size by difference. Instructions are counted exactly by the QEMU plugin in
//! `../shared/tools/qemu-insncount`.
//!
//! The anomaly-detection autoencoder (`firmware_anomaly.rs`) takes real-valued features: the
//! firmware gets the raw `i32` values the host converted, has no accuracy (only the CRC-32 of
//! its outputs is compared) and also measures the whole `Model::run` call. A board whose memory
//! map cannot hold a model lists it in `does_not_fit`: the run prints one line with the figures
//! instead of building it.

use crate::ci::workspace_root;
use crate::elf::Elf;
use anyhow::{bail, ensure, Context, Result};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One emulated board.
pub(crate) struct Board {
    /// The firmware crate's feature (`board-<name>`) and memory map (`memory/<name>.x`).
    pub(crate) name: &'static str,
    pub(crate) machine: &'static str,
    pub(crate) core: &'static str,
    pub(crate) target: &'static str,
    pub(crate) qemu: &'static str,
    /// The Debian package that provides `qemu`.
    pub(crate) qemu_package: &'static str,
    /// The models it runs, one firmware build each: an MLP first (its `small` build is measured
    /// too), the 64-16-10 digits MLP (the small-layer case), then CNNs.
    pub(crate) datasets: &'static [Dataset],
    /// Guest instructions of an empty `bench_start`/`bench_stop` pair.
    pub(crate) marker_overhead: u64,
    /// The 16 KB flash / 4 KB RAM memory map of the smallest parts: only the `lean` firmware
    /// (load and run) is built, the linker script enforcing both limits.
    pub(crate) tiny: bool,
    /// Models too large for its memory map: not built; the run prints one line with the blob
    /// against the flash (and fails if the blob would fit after all).
    pub(crate) does_not_fit: &'static [Dataset],
    /// A second board of a core that another board measures already, only for the models that
    /// one cannot hold (the M3's `mps2-an385`): `bench-mcu` skips it.
    pub(crate) large_models_only: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dataset {
    /// The digits model and the held-out digits images (boards with little RAM).
    Digits,
    /// The digits 64-16-10 model, the same images: what the 16 KB / 4 KB parts run.
    DigitsTiny,
    /// The MNIST 784-128-10 model and the first MNIST test images.
    Mnist,
    /// A small CNN on the 8x8 digits (boards with 16 KiB of RAM, where the MNIST CNN's
    /// arena does not fit), the same held-out images as `Digits`.
    DigitsCnn,
    /// The README's MNIST CNN, trained one epoch, the same images as `Mnist`.
    MnistCnn,
    /// MLPerf Tiny's keyword-spotting DS-CNN shape on synthetic 49x10 "spectrograms" (the
    /// cores with at least 64 KiB of RAM).
    Kws,
    /// MLPerf Tiny's anomaly-detection autoencoder shape on `cargo xtask sensor-data`'s
    /// real-valued log-mel features (the boards with more than 256 KiB of flash): a regression
    /// model fed raw `i32` values.
    AnomalyAe,
    /// The `Digits` model with int16 activations (`kiln bake --activations int16`), the same
    /// images.
    DigitsInt16,
    /// The `Mnist` model with int16 activations, the same images.
    MnistInt16,
    /// A residual CNN on the 8x8 digits (an identity shortcut, then a projection shortcut:
    /// ResNet-8's two kinds of block), the same held-out images as `Digits`.
    DigitsResnet,
    /// MLPerf Tiny's image classification ResNet-8 on synthetic 32x32x3 images
    /// (`cargo xtask bench-tiny`).
    Ic,
    /// MLPerf Tiny's visual wake words MobileNetV1 0.25 on synthetic 96x96x3 images
    /// (`cargo xtask bench-tiny`).
    Vww,
}

/// The README's MNIST CNN (also trained by `cargo xtask ci`).
pub(crate) const MNIST_CNN_LAYERS: &str = "conv3x3:16,maxpool2,conv3x3:32,maxpool2,dense:48";
/// A CNN small enough for 16 KiB of RAM, on the 8x8 digits.
const DIGITS_CNN_LAYERS: &str = "conv3x3:8,maxpool2,conv3x3:16,maxpool2,dense:32";
/// A residual network on the 8x8 digits: `add@1` an identity shortcut, `@3` and the strided
/// 1x1 convolution a projection shortcut.
const DIGITS_RESNET_LAYERS: &str = "conv3x3:8,conv3x3:8:identity,add@1:relu,conv3x3s2:16,\
                                    conv3x3:16:identity,@3,conv1x1s2:16:identity,add@5:relu,gap";
/// MLPerf Tiny's DS-CNN for keyword spotting (its input is 49x10x1, its output 12 classes).
const KWS_LAYERS: &str = "conv10x4s2:64,dw3x3,conv1x1:64,dw3x3,conv1x1:64,dw3x3,conv1x1:64,\
                          dw3x3,conv1x1:64,gap";
/// Synthetic KWS rows: per class for training, and test images the firmware runs.
const KWS_TRAIN_PER_CLASS: usize = 100;
const KWS_TEST_PER_CLASS: usize = 2;

impl Dataset {
    /// The int8 model an int16 dataset re-quantizes (`None` for the others).
    fn int16_of(self) -> Option<Dataset> {
        match self {
            Dataset::DigitsInt16 => Some(Dataset::Digits),
            Dataset::MnistInt16 => Some(Dataset::Mnist),
            _ => None,
        }
    }

    /// A layer graph with convolutions or pooling (the `graph` figures of `kiln inspect`).
    fn is_graph(self) -> bool {
        matches!(
            self,
            Dataset::DigitsCnn
                | Dataset::MnistCnn
                | Dataset::Kws
                | Dataset::DigitsResnet
                | Dataset::Ic
                | Dataset::Vww
        )
    }

    fn dir(self) -> &'static str {
        match self {
            Dataset::Digits => "digits",
            Dataset::DigitsTiny => "digits-tiny",
            Dataset::Mnist => "mnist",
            Dataset::DigitsCnn => "digits-cnn",
            Dataset::MnistCnn => "mnist-cnn",
            Dataset::Kws => "kws",
            Dataset::AnomalyAe => "anomaly-ae",
            Dataset::DigitsInt16 => "digits-int16",
            Dataset::MnistInt16 => "mnist-int16",
            Dataset::DigitsResnet => "digits-resnet",
            Dataset::Ic => "ic-resnet8",
            Dataset::Vww => "vww-mobilenet",
        }
    }

    /// The table's model column.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Dataset::Digits => "digits 64-128-10",
            Dataset::DigitsTiny => "digits 64-16-10",
            Dataset::Mnist => "MNIST 784-128-10",
            Dataset::DigitsCnn => "digits CNN",
            Dataset::MnistCnn => "MNIST CNN",
            Dataset::Kws => "KWS DS-CNN",
            Dataset::AnomalyAe => "anomaly AE 640-128x4-8-128x4-640",
            Dataset::DigitsInt16 => "digits 64-128-10 int16",
            Dataset::MnistInt16 => "MNIST 784-128-10 int16",
            Dataset::DigitsResnet => "digits ResNet",
            Dataset::Ic => "IC ResNet-8",
            Dataset::Vww => "VWW MobileNetV1 0.25",
        }
    }

    /// A classifier: the firmware's accuracy must equal the host's (a regression model has
    /// only its CRC-32).
    fn is_classifier(self) -> bool {
        self != Dataset::AnomalyAe
    }
}

const BOARDS: [Board; 8] = [
    Board {
        name: "microbit",
        machine: "microbit",
        core: "Cortex-M0",
        target: "thumbv6m-none-eabi",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        datasets: &[
            Dataset::Digits,
            Dataset::DigitsTiny,
            Dataset::DigitsCnn,
            Dataset::DigitsInt16,
            Dataset::DigitsResnet,
        ],
        marker_overhead: 5,
        tiny: false,
        // No QEMU Cortex-M0 machine has more than the micro:bit's 256 KiB of flash.
        does_not_fit: &[Dataset::AnomalyAe],
        large_models_only: false,
    },
    Board {
        name: "lm3s6965evb",
        machine: "lm3s6965evb",
        core: "Cortex-M3",
        target: "thumbv7m-none-eabi",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        // 64 KiB of RAM: the KWS DS-CNN's 16,000-byte arena fits too.
        datasets: &[
            Dataset::Mnist,
            Dataset::DigitsTiny,
            Dataset::MnistCnn,
            Dataset::Kws,
        ],
        marker_overhead: 5,
        tiny: false,
        // 256 KiB of flash: the M3 runs the autoencoder on mps2-an385 instead.
        does_not_fit: &[Dataset::AnomalyAe],
        large_models_only: false,
    },
    Board {
        name: "mps2-an385",
        machine: "mps2-an385",
        core: "Cortex-M3",
        target: "thumbv7m-none-eabi",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        // The same core as lm3s6965evb with 4 MiB of flash, for the 280 KB autoencoder.
        datasets: &[Dataset::AnomalyAe],
        marker_overhead: 5,
        tiny: false,
        does_not_fit: &[],
        large_models_only: true,
    },
    Board {
        name: "mps2-an386",
        machine: "mps2-an386",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        datasets: &[
            Dataset::Mnist,
            Dataset::DigitsTiny,
            Dataset::MnistCnn,
            Dataset::Kws,
            Dataset::AnomalyAe,
            Dataset::MnistInt16,
            Dataset::DigitsInt16,
            Dataset::DigitsResnet,
        ],
        marker_overhead: 5,
        tiny: false,
        does_not_fit: &[],
        large_models_only: false,
    },
    Board {
        name: "mps2-an500",
        machine: "mps2-an500",
        core: "Cortex-M7",
        target: "thumbv7em-none-eabihf",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        datasets: &[
            Dataset::Mnist,
            Dataset::DigitsTiny,
            Dataset::MnistCnn,
            Dataset::Kws,
            Dataset::AnomalyAe,
        ],
        marker_overhead: 5,
        tiny: false,
        does_not_fit: &[],
        large_models_only: false,
    },
    Board {
        name: "sifive-e",
        machine: "sifive_e",
        core: "RV32IMAC (rv32imc code)",
        target: "riscv32imc-unknown-none-elf",
        qemu: "qemu-system-riscv32",
        qemu_package: "qemu-system-misc",
        // 16 KiB of RAM: the MNIST CNN's arena does not fit, the digits CNN's does; 4 MiB of
        // flash: the autoencoder fits.
        datasets: &[
            Dataset::Mnist,
            Dataset::DigitsTiny,
            Dataset::DigitsCnn,
            Dataset::AnomalyAe,
            Dataset::DigitsResnet,
        ],
        marker_overhead: 4,
        tiny: false,
        does_not_fit: &[],
        large_models_only: false,
    },
    // The smallest parts (STM32F030F4, nRF51 variants, CH32V003-class RISC-V): the same
    // cores and QEMU machines with a 16 KB flash / 4 KB RAM memory map.
    Board {
        name: "microbit-tiny",
        machine: "microbit",
        core: "Cortex-M0",
        target: "thumbv6m-none-eabi",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        datasets: &[Dataset::DigitsTiny],
        marker_overhead: 5,
        tiny: true,
        does_not_fit: &[],
        large_models_only: false,
    },
    Board {
        name: "sifive-e-tiny",
        machine: "sifive_e",
        core: "RV32IMAC (rv32imc code)",
        target: "riscv32imc-unknown-none-elf",
        qemu: "qemu-system-riscv32",
        qemu_package: "qemu-system-misc",
        datasets: &[Dataset::DigitsTiny],
        marker_overhead: 4,
        tiny: true,
        does_not_fit: &[],
        large_models_only: false,
    },
];

pub struct FirmwareOptions {
    pub mnist: PathBuf,
    pub insncount: PathBuf,
    pub out: PathBuf,
    /// MNIST test images embedded on boards with at least 256 KiB of flash.
    pub n_mnist_images: usize,
    /// Only these boards (all when empty).
    pub only: Vec<String>,
    /// `bench-mcu --conv-only`: only the convolution table.
    pub conv_only: bool,
    /// `firmware --update-figures`: rewrite the memory figures `kiln inspect` uses.
    pub update_figures: bool,
}

impl FirmwareOptions {
    pub fn parse(args: &[String]) -> Result<Self> {
        let root = workspace_root();
        let mut options = FirmwareOptions {
            mnist: root.join("../shared/data/mnist"),
            insncount: root.join("../shared/tools/qemu-insncount"),
            out: root.join("kiln-out/firmware"),
            n_mnist_images: 200,
            only: Vec::new(),
            conv_only: false,
            update_figures: false,
        };
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let mut value = || {
                iter.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--mnist" => options.mnist = value()?.into(),
                "--insncount" => options.insncount = value()?.into(),
                "--out" => options.out = value()?.into(),
                "--images" => {
                    let text = value()?;
                    options.n_mnist_images = text
                        .parse()
                        .ok()
                        .filter(|&n| (1..=10_000).contains(&n))
                        .with_context(|| format!("--images: expected 1 to 10000, got {text}"))?;
                }
                "--board" => options.only.push(value()?),
                "--conv-only" => options.conv_only = true,
                "--update-figures" => options.update_figures = true,
                other => bail!(
                    "cargo xtask firmware: unknown flag {other}; expected --mnist DIR, \
                     --insncount DIR, --out DIR, --images N, --board NAME, --update-figures or \
                     (bench-mcu) --conv-only"
                ),
            }
        }
        for name in &options.only {
            ensure!(
                BOARDS.iter().any(|board| board.name == name),
                "--board {name}: expected one of {}",
                BOARDS.map(|board| board.name).join(", ")
            );
        }
        Ok(options)
    }
}

/// The model and images one dataset gives every board that uses it.
pub(crate) struct Prepared {
    pub(crate) dataset: Dataset,
    pub(crate) blob: Vec<u8>,
    pub(crate) rust_source: PathBuf,
    /// Pixels as the device reads them, `n_inputs` per image (empty with `raw_inputs`).
    pub(crate) pixels: Vec<u8>,
    /// Real-valued features as the device takes them, `round_half_even(x * 2^input_frac_bits)`,
    /// `n_inputs` per sample (empty for pixel data). The firmware's measured inference is then
    /// the whole `Model::run` call, as a product calls it, instead of `run_quantized`.
    pub(crate) raw_inputs: Vec<i32>,
    pub(crate) input_frac_bits: u8,
    /// The class of each image, or the anomaly flag of each sample of a regression model (not
    /// compared).
    pub(crate) labels: Vec<u8>,
    pub(crate) n_inputs: usize,
    pub(crate) n_outputs: usize,
    pub(crate) scratch_len: usize,
    pub(crate) macs: u64,
    /// The blob's arena (`Model::scratch_len`, the planner's peak activation RAM) and the sum
    /// of all values (what the arena would be without reuse).
    pub(crate) arena_len: usize,
    pub(crate) no_reuse_len: usize,
    pub(crate) host_crc32: u32,
    pub(crate) host_correct: u32,
    pub(crate) description: String,
    /// The `--data` the model was trained and calibrated on.
    pub(crate) data_spec: String,
}

impl Prepared {
    /// Real-valued samples (the firmware's raw `i32` path, the whole `Model::run` measured).
    fn raw_samples(&self) -> bool {
        !self.raw_inputs.is_empty()
    }

    /// The raw `i32` values of sample `idx`, as the device takes them.
    fn sample_raw(&self, idx: usize) -> Vec<i32> {
        let range = idx * self.n_inputs..(idx + 1) * self.n_inputs;
        if self.raw_samples() {
            self.raw_inputs[range].to_vec()
        } else {
            self.pixels[range].iter().map(|&p| i32::from(p)).collect()
        }
    }
}

/// What one board measured.
pub(crate) struct Row {
    pub(crate) board: &'static Board,
    pub(crate) dataset: Dataset,
    pub(crate) n_images: usize,
    pub(crate) correct: u32,
    pub(crate) insns_input: f64,
    pub(crate) insns_network: f64,
    pub(crate) insns_per_mac: f64,
    /// One whole `Model::run` call (raw values to outputs; the raw-sample models only, whose
    /// `insns_network` is this call).
    pub(crate) insns_whole: Option<f64>,
    pub(crate) n_inputs: usize,
    pub(crate) macs: u64,
    /// The lean firmware's `.text` minus the same firmware's without the inference call: the
    /// whole runtime (load, validate, input stage, run).
    pub(crate) runtime_text: u64,
    /// The same with the on-device reference check and kernel cases (not on tiny boards).
    pub(crate) checked_text: Option<u64>,
    pub(crate) runtime_symbols_text: u64,
    pub(crate) model_flash: usize,
    /// The lean firmware's flash and static RAM.
    pub(crate) firmware_flash: u64,
    pub(crate) static_ram: u64,
    /// The harness's whole loop (the checking firmware's where there is one).
    pub(crate) stack_peak: u64,
    /// The largest peak stack of one `run_quantized` call alone.
    pub(crate) inference_stack: u64,
    /// `size_of::<Model<KINDS>>()` on the device.
    pub(crate) model_bytes: u64,
    /// The `small` build of the board's MLP.
    pub(crate) small: Option<SmallBuild>,
    /// Whether the blob-partition firmware ran (not on tiny boards); a run that does not
    /// reproduce the host fails the task before the table.
    pub(crate) partition_checked: bool,
}

/// The runtime with the `small` feature (compact kernels) on one model.
pub(crate) struct SmallBuild {
    runtime_text: u64,
    insns_per_mac: f64,
    inference_stack: u64,
}

/// The boards named in `only` (all when empty).
pub(crate) fn boards(only: &[String]) -> Vec<&'static Board> {
    BOARDS
        .iter()
        .filter(|board| only.is_empty() || only.iter().any(|n| n == board.name))
        .collect()
}

/// Checks the tools `boards` need, builds the instruction-count plugin (its path) and creates
/// the output folder.
pub(crate) fn prepare_tools(boards: &[&Board], options: &FirmwareOptions) -> Result<PathBuf> {
    check_tools(boards, false)?;
    let plugin = build_plugin(&options.insncount, &workspace_root().join("target/qemu"))?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("{}: cannot create", options.out.display()))?;
    Ok(plugin)
}

pub fn run(options: &FirmwareOptions) -> Result<()> {
    let boards = boards(&options.only);
    let plugin = prepare_tools(&boards, options)?;

    let mut prepared: Vec<Prepared> = Vec::new();
    let wanted = |dataset: Dataset| {
        boards
            .iter()
            .any(|board| board.datasets.contains(&dataset) || board.does_not_fit.contains(&dataset))
    };
    for dataset in [
        Dataset::Digits,
        Dataset::DigitsTiny,
        Dataset::Mnist,
        Dataset::DigitsCnn,
        Dataset::MnistCnn,
        Dataset::Kws,
        Dataset::AnomalyAe,
        Dataset::DigitsInt16,
        Dataset::MnistInt16,
        Dataset::DigitsResnet,
    ] {
        // An int16 dataset re-quantizes its int8 model: prepared first even if no board runs it.
        let needed_by_int16 = [Dataset::DigitsInt16, Dataset::MnistInt16]
            .into_iter()
            .any(|int16| int16.int16_of() == Some(dataset) && wanted(int16));
        if wanted(dataset) || needed_by_int16 {
            let started = std::time::Instant::now();
            let data = match dataset.int16_of() {
                Some(base) => {
                    let base = prepared
                        .iter()
                        .find(|p| p.dataset == base)
                        .context("the int8 model is prepared first")?;
                    prepare_int16(base, dataset, options)?
                }
                None => prepare(dataset, options)?,
            };
            prepared.push(data);
            println!(
                "== {} prepared in {:.1} s",
                dataset.label(),
                started.elapsed().as_secs_f64()
            );
        }
    }

    let mut rows = Vec::new();
    let mut not_fitting = Vec::new();
    for board in boards {
        for dataset in board.does_not_fit {
            let data = prepared
                .iter()
                .find(|p| p.dataset == *dataset)
                .expect("prepared above");
            let line = does_not_fit_line(board, data)?;
            println!(
                "\n== {} ({}, {}) ==\n{line}",
                board.name, board.core, board.machine
            );
            not_fitting.push(line);
        }
        for dataset in board.datasets {
            let data = prepared
                .iter()
                .find(|p| p.dataset == *dataset)
                .expect("prepared above");
            rows.push(run_board(board, data, &plugin, &options.out)?);
        }
    }
    print_table(&rows, &prepared, &not_fitting);
    device_figures(&rows, options.update_figures)?;
    if options.only.is_empty() {
        estimate_against_sim(options)?;
    }
    build_real_boards()?;
    Ok(())
}

/// `kiln inspect`'s per-layer estimate against `kiln sim` on every core, for the three MLPs
/// issue 20 names and the three CNNs (the models this run trained); fails beyond 10%.
fn estimate_against_sim(options: &FirmwareOptions) -> Result<()> {
    let dir = |dataset: Dataset| options.out.join(dataset.dir());
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let ae = dir(Dataset::AnomalyAe);
    let mnist = format!("mnist:{}", options.mnist.display());
    let (ae_train, ae_test) = (
        format!("csv:{}", s(ae.join("train.csv"))),
        s(ae.join("test.csv")),
    );
    let ae_flags = [
        "--data",
        ae_train.as_str(),
        "--test-data",
        ae_test.as_str(),
        "--autoencoder",
        "--anomaly-column",
        "640",
    ];
    let kws = dir(Dataset::Kws);
    let (kws_train, kws_test) = (
        format!("csv:{}", s(kws.join("train.csv"))),
        s(kws.join("test.csv")),
    );
    let kws_flags = [
        "--data",
        kws_train.as_str(),
        "--test-data",
        kws_test.as_str(),
        "--label-column",
        "last",
    ];
    // The CNNs are not in the calibration set (small CNNs on the digits and synthetic
    // images): they test the graph terms on shapes the fit has not seen.
    let models: [(&str, PathBuf, Vec<&str>); 6] = [
        (
            Dataset::Mnist.label(),
            dir(Dataset::Mnist),
            vec!["--data", mnist.as_str()],
        ),
        (
            Dataset::Digits.label(),
            dir(Dataset::Digits),
            vec!["--data", "digits"],
        ),
        ("anomaly AE", ae, ae_flags.to_vec()),
        (
            Dataset::DigitsCnn.label(),
            dir(Dataset::DigitsCnn),
            vec!["--data", "digits"],
        ),
        (
            Dataset::MnistCnn.label(),
            dir(Dataset::MnistCnn),
            vec!["--data", mnist.as_str()],
        ),
        (Dataset::Kws.label(), kws, kws_flags.to_vec()),
    ];
    let mut lines = Vec::new();
    for (label, dir, flags) in &models {
        lines.extend(crate::estimate::check_against_sim(
            label,
            &dir.join("model.kiln"),
            flags,
        )?);
    }
    println!(
        "\nkiln inspect's estimate against kiln sim (one Model::run, raw values to int8 outputs; \
         exact QEMU counts, mean of 4 samples):\n\n\
         | model | core | kiln sim | inspect estimate | error | outputs |\n|---|---|---|---|---|---|"
    );
    for line in lines {
        println!("{line}");
    }
    // `kiln sim` builds the int16 firmware itself for an int16 blob: the device's outputs must
    // be the host's on the cores the firmware checks.
    let int16_blob = s(dir(Dataset::DigitsInt16).join("model.kiln"));
    if Path::new(&int16_blob).exists() {
        for core in ["cortex-m0", "cortex-m4f"] {
            let sim = crate::ci::kiln_ok(&[
                "sim",
                &int16_blob,
                "--data",
                "digits",
                "--core",
                core,
                "--quiet",
                "--json",
            ])?;
            ensure!(
                sim["outputs_match"] == true,
                "kiln sim {int16_blob} on {core}: the device's int16 outputs are not the host's: {sim}"
            );
            println!(
                "kiln sim, digits 64-128-10 int16 on {core}: outputs = host, {:.3} insns/MAC",
                sim["insns_per_mac"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// The `LENGTH` of a region (`FLASH` or `RAM`) in the board's memory map
/// (`examples/firmware-qemu/memory/<board>.x`), in bytes.
pub(crate) fn memory_length(board: &Board, region: &str) -> Result<u64> {
    let path = firmware_crate_dir()
        .join("memory")
        .join(format!("{}.x", board.name));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let length = text
        .lines()
        .map(str::trim)
        .find(|line| {
            line.split_whitespace().next() == Some(region)
                && line.split_whitespace().nth(1) == Some(":")
        })
        .and_then(|line| line.split("LENGTH").nth(1))
        .map(|tail| tail.trim_start_matches([' ', '=']).trim())
        .with_context(|| format!("{}: no {region} region with a LENGTH", path.display()))?;
    let (digits, unit) = match length.strip_suffix('K') {
        Some(digits) => (digits, 1024),
        None => match length.strip_suffix('M') {
            Some(digits) => (digits, 1024 * 1024),
            None => (length, 1),
        },
    };
    let value: u64 = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => digits.parse().ok(),
    }
    .with_context(|| format!("{}: {region} LENGTH `{length}`", path.display()))?;
    Ok(value * unit)
}

/// The line a board prints for a model its memory map cannot hold; fails when the blob would
/// fit after all (then the board should run it).
fn does_not_fit_line(board: &Board, data: &Prepared) -> Result<String> {
    let flash = memory_length(board, "FLASH")?;
    let ram = memory_length(board, "RAM")?;
    let blob = data.blob.len() as u64;
    ensure!(
        blob > flash,
        "{}: {} is listed as not fitting, but its blob ({blob} B) is within the {flash} B of \
         flash: run it instead",
        board.name,
        data.dataset.label()
    );
    Ok(format!(
        "{} ({}): {} does not fit: its blob alone is {blob} B, the board's flash {flash} B ({} \
         KiB), {} B short before any code or samples (its RAM would hold the buffers: scratch {} \
         B of {ram} B); not built",
        board.name,
        board.core,
        data.dataset.label(),
        flash / 1024,
        blob - flash,
        data.scratch_len,
    ))
}

/// The figures `kiln inspect` adds to a model's flash and RAM, per core.
const DEVICE_FIGURES: &str = "trainer/src/cli/device_figures.json";

/// The core names of `device_figures.json` for a board's core (the tiny boards are measured,
/// but their cores' figures come from the full-size boards).
fn figures_core(board: &Board) -> Option<&'static str> {
    match board.name {
        "microbit" => Some("Cortex-M0"),
        "lm3s6965evb" | "mps2-an385" => Some("Cortex-M3"),
        "mps2-an386" => Some("Cortex-M4F"),
        "mps2-an500" => Some("Cortex-M7"),
        "sifive-e" => Some("RISC-V rv32imc"),
        _ => None,
    }
}

/// Checks `kiln inspect`'s memory figures against this run: a figure below what was measured
/// would let inspect say a model fits when it does not, so that fails; `--update-figures`
/// writes the measured ones. Only the boards of this run are checked.
fn device_figures(rows: &[Row], update: bool) -> Result<()> {
    let path = workspace_root().join(DEVICE_FIGURES);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut figures: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let cores = figures
        .get_mut("cores")
        .and_then(|c| c.as_array_mut())
        .with_context(|| format!("{}: no `cores` array", path.display()))?;
    let mut stale = Vec::new();
    for core in cores.iter_mut() {
        let name = core
            .get("core")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_owned();
        // The figures describe the int8 runtime: int16 rows are reported, not recorded.
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| figures_core(r.board) == Some(name.as_str()))
            .filter(|r| r.dataset.int16_of().is_none())
            .collect();
        let Some(mlp) = mine.iter().find(|r| r.small.is_some()) else {
            continue;
        };
        let graphs: Vec<&&Row> = mine.iter().filter(|r| r.dataset.is_graph()).collect();
        let max_of = |f: &dyn Fn(&Row) -> u64| graphs.iter().map(|r| f(r)).max().unwrap_or(0);
        let measured = [
            ("runtime_text_bytes", "mlp", mlp.runtime_text),
            (
                "runtime_text_bytes",
                "mlp_small",
                mlp.small.as_ref().map_or(0, |s| s.runtime_text),
            ),
            ("runtime_text_bytes", "graph", max_of(&|r| r.runtime_text)),
            ("inference_stack_bytes", "mlp", mlp.inference_stack),
            (
                "inference_stack_bytes",
                "graph",
                max_of(&|r| r.inference_stack),
            ),
            ("model_struct_bytes", "", mlp.model_bytes),
        ];
        // The instruction rates `inspect` estimates with come from MNIST 784-128-10, where a
        // core runs it; they are written, not checked (an estimate, not a bound).
        if update && mlp.dataset == Dataset::Mnist {
            let round3 = |v: f64| (v * 1000.0).round() / 1000.0;
            core["insns_per_mac"] = serde_json::Value::from(round3(mlp.insns_per_mac));
            core["insns_per_input"] = serde_json::Value::from(round3(mlp.insns_input / 784.0));
        }
        for (field, key, value) in measured {
            if value == 0 {
                continue;
            }
            let slot = if key.is_empty() {
                core.get_mut(field)
            } else {
                core.get_mut(field).and_then(|f| f.get_mut(key))
            }
            .with_context(|| format!("{}: {name} has no {field} {key}", path.display()))?;
            let recorded = slot.as_u64().unwrap_or(0);
            if update {
                *slot = serde_json::Value::from(value);
            } else if value > recorded {
                stale.push(format!(
                    "{name} {field} {key}: measured {value} B, {DEVICE_FIGURES} says {recorded} B"
                ));
            }
        }
    }
    if update {
        let mut out = serde_json::to_string_pretty(&figures)?;
        out.push('\n');
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, out)?;
        std::fs::rename(&tmp, &path)?;
        println!("\nwrote the measured memory figures to {DEVICE_FIGURES}");
        return Ok(());
    }
    ensure!(
        stale.is_empty(),
        "kiln inspect would understate what the runtime takes: {}. Run `cargo xtask firmware \
         --update-figures` and commit {DEVICE_FIGURES}",
        stale.join("; ")
    );
    println!("\n{DEVICE_FIGURES}: every memory figure covers this run's measurements");
    Ok(())
}

/// Fails loudly, naming the package, when a tool is missing.
/// `objdump`: `bench-mcu` also needs `llvm-objdump` (it sizes the inference code), checked
/// here with the rest instead of after minutes of builds.
fn check_tools(boards: &[&Board], objdump: bool) -> Result<()> {
    let mut missing = Vec::new();
    if objdump && crate::elf::llvm_objdump().is_err() {
        missing.push(
            "llvm-objdump (bench-mcu sizes the inference code with it): rustup component add \
             llvm-tools"
                .into(),
        );
    }
    for board in boards {
        if which(board.qemu).is_none() {
            missing.push(format!(
                "{} (for {}): apt-get install {}",
                board.qemu, board.name, board.qemu_package
            ));
        }
    }
    if which("gcc").is_none() {
        missing.push("gcc (builds the instruction-count plugin): apt-get install gcc".into());
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    for board in boards {
        if !sysroot.join("lib/rustlib").join(board.target).exists() {
            missing.push(format!(
                "the {0} standard library: rustup target add {0}",
                board.target
            ));
        }
    }
    missing.sort();
    missing.dedup();
    ensure!(
        missing.is_empty(),
        "cargo xtask firmware: missing tools:\n  {}",
        missing.join("\n  ")
    );
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Builds the qemu-insncount plugin from its C source (needs gcc).
pub(crate) fn build_plugin(source_dir: &Path, out_dir: &Path) -> Result<PathBuf> {
    let source = source_dir.join("insncount.c");
    ensure!(
        source.is_file(),
        "{}: the qemu-insncount plugin source is missing (pass --insncount DIR)",
        source.display()
    );
    std::fs::create_dir_all(out_dir)?;
    let plugin = out_dir.join("libinsncount.so");
    let status = Command::new("gcc")
        .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o"])
        .arg(&plugin)
        .arg(&source)
        .arg("-I")
        .arg(source_dir)
        .status()
        .context("cannot run gcc (it builds the instruction-count plugin)")?;
    ensure!(status.success(), "gcc could not build {}", source.display());
    Ok(plugin)
}

/// Runs `kiln` the way `cargo xtask ci` does (`$KILN_BIN` when set) and requires success.
pub(crate) fn kiln(args: &[&str]) -> Result<()> {
    crate::ci::kiln_ok(args).map(|_| ())
}

fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: not a readable gzip file", path.display()))?;
    Ok(bytes)
}

/// Trains, bakes and runs the host reference for one dataset.
pub(crate) fn prepare(dataset: Dataset, options: &FirmwareOptions) -> Result<Prepared> {
    let root = workspace_root();
    let dir = options.out.join(dataset.dir());
    std::fs::create_dir_all(&dir)?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    // The real-valued samples (the autoencoder) and the data flags `bake` needs besides --data.
    let mut samples: Option<crate::firmware_anomaly::Samples> = None;
    let mut data_flags: Vec<&str> = Vec::new();
    let (pixels, labels, n_inputs, data_spec, description) = match dataset {
        Dataset::Digits | Dataset::DigitsTiny | Dataset::DigitsCnn | Dataset::DigitsResnet => {
            // Every fourth row is held out: the firmware sees only images the model never saw.
            let text = String::from_utf8(read_gz(&root.join("trainer/data/digits.csv.gz"))?)
                .context("digits.csv.gz: not UTF-8")?;
            let (mut train, mut test) = (String::new(), String::new());
            let mut pixels = Vec::new();
            let mut labels = Vec::new();
            for (row_idx, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                if row_idx % 4 == 3 {
                    test.push_str(line);
                    test.push('\n');
                    let values: Vec<u8> = line
                        .split(',')
                        .map(|v| v.trim().parse::<u8>())
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("digits.csv.gz: row {row_idx} is not integers"))?;
                    let (label, features) = values.split_last().context("empty row")?;
                    ensure!(
                        features.len() == 64,
                        "digits.csv.gz: row {row_idx}: 64 features expected"
                    );
                    pixels.extend_from_slice(features);
                    labels.push(*label);
                } else {
                    train.push_str(line);
                    train.push('\n');
                }
            }
            std::fs::write(dir.join("train.csv"), train)?;
            std::fs::write(dir.join("test.csv"), test)?;
            let n_test = labels.len();
            let train_csv = s(&dir.join("train.csv"));
            let test_csv = s(&dir.join("test.csv"));
            let data = format!("csv:{train_csv}");
            let mut args = vec![
                "train",
                "--data",
                &data,
                "--test-data",
                &test_csv,
                "--label-column",
                "last",
                "--epochs",
                "30",
            ];
            if dataset == Dataset::DigitsTiny {
                args.extend(["--hidden", "16"]);
            }
            if dataset == Dataset::DigitsResnet {
                args.extend([
                    "--input-shape",
                    "8x8x1",
                    "--layers",
                    DIGITS_RESNET_LAYERS,
                    "--optimizer",
                    "adam",
                    "--lr",
                    "0.003",
                ]);
            }
            if dataset == Dataset::DigitsCnn {
                args.extend([
                    "--input-shape",
                    "8x8x1",
                    "--layers",
                    DIGITS_CNN_LAYERS,
                    "--optimizer",
                    "adam",
                    "--lr",
                    "0.003",
                ]);
            }
            let out_dir = s(&dir);
            args.extend(["-o", &out_dir, "--quiet", "--no-plot"]);
            kiln(&args)?;
            let description = match dataset {
                Dataset::Digits => format!("digits 64-128-10, {n_test} held-out UCI digits images"),
                Dataset::DigitsTiny => {
                    format!("digits 64-16-10, {n_test} held-out UCI digits images")
                }
                Dataset::DigitsResnet => format!(
                    "digits ResNet 8x8x1 {DIGITS_RESNET_LAYERS},dense:10 (30 epochs), \
                     {n_test} held-out UCI digits images"
                ),
                _ => format!(
                    "digits CNN 8x8x1 {DIGITS_CNN_LAYERS},dense:10 (30 epochs), \
                     {n_test} held-out UCI digits images"
                ),
            };
            (pixels, labels, 64, data, description)
        }
        Dataset::Mnist | Dataset::MnistCnn => {
            let images_path = options.mnist.join("t10k-images-idx3-ubyte.gz");
            let labels_path = options.mnist.join("t10k-labels-idx1-ubyte.gz");
            let images = read_gz(&images_path)?;
            let label_bytes = read_gz(&labels_path)?;
            let n = options.n_mnist_images;
            ensure!(
                images.len() >= 16 + n * 784 && label_bytes.len() >= 8 + n,
                "{}: fewer than {n} images",
                images_path.display()
            );
            let pixels = images[16..16 + n * 784].to_vec();
            let labels = label_bytes[8..8 + n].to_vec();
            let spec = format!("mnist:{}", s(&options.mnist));
            let out_dir = s(&dir);
            let description = if dataset == Dataset::Mnist {
                kiln(&[
                    "train",
                    "--data",
                    &spec,
                    "--hidden",
                    "128",
                    "--optimizer",
                    "adam",
                    "--epochs",
                    "3",
                    "-o",
                    &out_dir,
                    "--quiet",
                ])?;
                format!("MNIST 784-128-10, the first {n} MNIST test images")
            } else {
                // One epoch: enough for a test of bit-exactness (about 97% accuracy).
                kiln(&[
                    "train",
                    "--data",
                    &spec,
                    "--layers",
                    MNIST_CNN_LAYERS,
                    "--optimizer",
                    "adam",
                    "--lr",
                    "0.003",
                    "--epochs",
                    "1",
                    "--threads",
                    "2",
                    "-o",
                    &out_dir,
                    "--quiet",
                    "--no-plot",
                ])?;
                format!(
                    "MNIST CNN 28x28x1 {MNIST_CNN_LAYERS},dense:10 (1 epoch), \
                     the first {n} MNIST test images"
                )
            };
            (pixels, labels, 784, spec, description)
        }
        Dataset::Kws => {
            let (train, test, pixels, labels) = kws_synthetic();
            std::fs::write(dir.join("train.csv"), train)?;
            std::fs::write(dir.join("test.csv"), test)?;
            let train_csv = s(&dir.join("train.csv"));
            let test_csv = s(&dir.join("test.csv"));
            let data = format!("csv:{train_csv}");
            let out_dir = s(&dir);
            kiln(&[
                "train",
                "--data",
                &data,
                "--test-data",
                &test_csv,
                "--label-column",
                "last",
                "--input-shape",
                "49x10x1",
                "--layers",
                KWS_LAYERS,
                "--optimizer",
                "adam",
                "--lr",
                "0.003",
                // Two epochs of small batches: a few seconds, and well above chance.
                "--epochs",
                "2",
                "--batch",
                "8",
                "--threads",
                "2",
                "-o",
                &out_dir,
                "--quiet",
                "--no-plot",
            ])?;
            let n_test = labels.len();
            (
                pixels,
                labels,
                49 * 10,
                data,
                format!(
                    "KWS DS-CNN 49x10x1 {KWS_LAYERS},dense:12 (2 epochs on {} synthetic rows), \
                     {n_test} held-out synthetic rows",
                    12 * KWS_TRAIN_PER_CLASS
                ),
            )
        }
        Dataset::DigitsInt16 | Dataset::MnistInt16 => {
            anyhow::bail!("{}: prepared by prepare_int16", dataset.label())
        }
        Dataset::Ic | Dataset::Vww => crate::firmware_tiny::train(dataset, &dir)?,
        Dataset::AnomalyAe => {
            use crate::firmware_anomaly as ae;
            // The README's commands: sensor-data, then train the autoencoder on its CSVs.
            let picked = ae::write_data(&dir)?;
            let data = format!("csv:{}", s(&dir.join("train.csv")));
            let out_dir = s(&dir);
            kiln(&[
                "train",
                "--data",
                &data,
                "--test-data",
                &s(&dir.join("test.csv")),
                "--autoencoder",
                "--anomaly-column",
                ae::ANOMALY_COLUMN,
                "--hidden",
                ae::HIDDEN,
                "--optimizer",
                "adam",
                "--epochs",
                ae::EPOCHS,
                "--batch",
                "64",
                "-o",
                &out_dir,
                "--quiet",
                "--no-plot",
            ])?;
            data_flags = vec!["--autoencoder", "--anomaly-column", ae::ANOMALY_COLUMN];
            let labels = picked.anomaly.clone();
            samples = Some(picked);
            (
                Vec::new(),
                labels,
                ae::N_FEATURES,
                data,
                format!(
                    "anomaly-detection autoencoder 640-{}-640 ({} epochs on 2000 synthetic \
                     log-mel rows of `cargo xtask sensor-data`), {} normal + {} anomalous test \
                     rows as raw i32",
                    ae::HIDDEN.replace(',', "-"),
                    ae::EPOCHS,
                    ae::N_NORMAL,
                    ae::N_ANOMALOUS
                ),
            )
        }
    };
    let blob_path = dir.join("model.kiln");
    let rust_source = dir.join("model.rs");
    let model_json = s(&dir.join("model.json"));
    let bake = |form: &str, path: &Path| {
        let path = s(path);
        let mut args = vec!["bake", &model_json, "--data", &data_spec];
        args.extend(&data_flags);
        args.extend([form, &path]);
        kiln(&args)
    };
    bake("--blob", &blob_path)?;
    bake("--rust", &rust_source)?;
    let blob = std::fs::read(&blob_path)?;
    // Both variants must run the same model: the source form embeds these very bytes.
    let source = std::fs::read_to_string(&rust_source)?;
    let source_bytes: Vec<u8> = source
        .split_once("const MODEL_BLOB_BYTES")
        .and_then(|(_, tail)| tail.split_once("= [")?.1.split_once("];"))
        .map(|(body, _)| {
            body.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .filter_map(|t| u8::from_str_radix(t.trim_start_matches("0x"), 16).ok())
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        source_bytes == blob,
        "{}: the Rust source does not embed the bytes of {}",
        rust_source.display(),
        blob_path.display()
    );

    // The host reference: the same runtime, the same images.
    let model = kiln_runtime::Model::from_bytes(&blob)
        .map_err(|e| anyhow::anyhow!("{}: {e}", blob_path.display()))?;
    ensure!(
        model.n_inputs() == n_inputs,
        "model and images disagree on n_inputs"
    );
    // Real-valued features become the raw values the device takes, with the blob's bits.
    let input_frac_bits = model.input_frac_bits();
    let raw_inputs: Vec<i32> = match &samples {
        Some(samples) => samples
            .features
            .iter()
            .map(|&x| crate::firmware_anomaly::raw_input(x, input_frac_bits))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let mut prepared = Prepared {
        dataset,
        rust_source,
        n_inputs,
        n_outputs: model.n_outputs(),
        // The length that lets the fastest kernel run (on Cortex-M4/M7 it widens each layer's
        // input once); the host computed the expected logits with the minimal one.
        scratch_len: model.fast_scratch_len(),
        macs: 0,
        arena_len: model.scratch_len(),
        no_reuse_len: 0,
        host_crc32: 0,
        host_correct: 0,
        pixels,
        raw_inputs,
        input_frac_bits,
        labels,
        description,
        blob: Vec::new(),
        data_spec: data_spec.clone(),
    };
    let mut scratch = vec![0i8; model.scratch_len()];
    let mut logits = vec![0i8; model.n_outputs()];
    let mut crc = kiln_runtime::crc32::Crc32::new();
    let mut host_correct = 0u32;
    let mut host_outputs = Vec::new();
    for (idx, &label) in prepared.labels.iter().enumerate() {
        let class = model
            .run(&prepared.sample_raw(idx), &mut scratch, &mut logits)
            .map_err(|e| anyhow::anyhow!("host run: {e}"))?;
        if dataset.is_classifier() {
            host_correct += u32::from(class == usize::from(label));
        }
        let bytes: Vec<u8> = logits.iter().map(|&l| l as u8).collect();
        crc.update(&bytes);
        host_outputs.extend_from_slice(&logits);
    }
    if prepared.raw_samples() {
        // The firmware's raw values are the CLI's: `kiln run` prints the same outputs.
        crate::firmware_anomaly::check_against_cli(&dir, &blob_path, &host_outputs)?;
    }
    let layers: Vec<kiln_runtime::LayerInfo> = (0..model.n_layers())
        .filter_map(|idx| model.layer(idx))
        .collect();
    prepared.macs = layers.iter().map(layer_macs).sum();
    // Without reuse every value (the input and each layer's output) has its own bytes.
    prepared.no_reuse_len = n_inputs + layers.iter().map(|l| l.n_outputs).sum::<usize>();
    prepared.host_crc32 = crc.finish();
    prepared.host_correct = host_correct;
    prepared.blob = blob;
    Ok(prepared)
}

/// `base`'s model with int16 activations (`kiln bake --activations int16`), the same samples,
/// and the host's CRC-32 over every int16 logit (two little-endian bytes each), as the
/// firmware's feature `int16` computes it.
fn prepare_int16(base: &Prepared, dataset: Dataset, options: &FirmwareOptions) -> Result<Prepared> {
    let dir = options.out.join(dataset.dir());
    std::fs::create_dir_all(&dir)?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let model_json = s(&options.out.join(base.dataset.dir()).join("model.json"));
    let blob_path = dir.join("model.kiln");
    let rust_source = dir.join("model.rs");
    for (form, path) in [("--blob", &blob_path), ("--rust", &rust_source)] {
        let path = s(path);
        kiln(&[
            "bake",
            &model_json,
            "--data",
            &base.data_spec,
            "--activations",
            "int16",
            form,
            &path,
        ])?;
    }
    let blob = std::fs::read(&blob_path)?;
    let model = kiln_runtime::Model::from_bytes(&blob)
        .map_err(|e| anyhow::anyhow!("{}: {e}", blob_path.display()))?;
    ensure!(
        model.activation_bits() == 16,
        "{}: not int16",
        blob_path.display()
    );
    let mut scratch = vec![0i8; model.scratch_len()];
    let mut logits = vec![0i16; model.n_outputs()];
    let mut crc = kiln_runtime::crc32::Crc32::new();
    let mut host_correct = 0u32;
    for (idx, &label) in base.labels.iter().enumerate() {
        let class = model
            .run_i16(&base.sample_raw(idx), &mut scratch, &mut logits)
            .map_err(|e| anyhow::anyhow!("host run: {e}"))?;
        host_correct += u32::from(class == usize::from(label));
        for logit in &logits {
            crc.update(&logit.to_le_bytes());
        }
    }
    let (n_outputs, arena_len, input_frac_bits) = (
        model.n_outputs(),
        model.scratch_len(),
        model.input_frac_bits(),
    );
    Ok(Prepared {
        dataset,
        blob,
        rust_source,
        pixels: base.pixels.clone(),
        raw_inputs: base.raw_inputs.clone(),
        input_frac_bits,
        labels: base.labels.clone(),
        n_inputs: base.n_inputs,
        n_outputs,
        scratch_len: arena_len,
        macs: base.macs,
        arena_len,
        no_reuse_len: base.no_reuse_len * 2,
        host_crc32: crc.finish(),
        host_correct,
        description: format!("{}, int16 activations", base.description),
        data_spec: base.data_spec.clone(),
    })
}

/// Deterministic synthetic keyword-spotting data: 49x10 "spectrograms" (0 to 255) of 12
/// classes, each a class-dependent smooth pattern (a frequency ridge that moves over time)
/// plus uniform noise. Returns the training CSV, the test CSV (label last), and the test
/// rows' pixels and labels.
fn kws_synthetic() -> (String, String, Vec<u8>, Vec<u8>) {
    let mut state: u32 = 0x2545_f491;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        f64::from(state % 61) - 30.0
    };
    let mut row = |class: usize| -> Vec<u8> {
        let (k, phase) = (class as f64, class as f64 * 0.7);
        let (fx, tx) = ((class % 4 + 1) as f64, (class / 4 + 1) as f64);
        (0..49)
            .flat_map(|t| (0..10).map(move |f| (t as f64, f as f64)))
            .map(|(t, f)| {
                let wave = (std::f64::consts::TAU * (fx * f / 10.0 + tx * t / 49.0) + phase).sin();
                let ridge = (-(f - (k % 10.0) - t * (k / 24.0)).powi(2) / 4.0).exp();
                (100.0 + 60.0 * wave + 80.0 * ridge + noise()).clamp(0.0, 255.0) as u8
            })
            .collect()
    };
    let csv_line = |values: &[u8], class: usize| {
        let mut line: Vec<String> = values.iter().map(u8::to_string).collect();
        line.push(class.to_string());
        line.join(",") + "\n"
    };
    let mut train = String::new();
    for idx in 0..12 * KWS_TRAIN_PER_CLASS {
        train.push_str(&csv_line(&row(idx % 12), idx % 12));
    }
    let (mut test, mut pixels, mut labels) = (String::new(), Vec::new(), Vec::new());
    for idx in 0..12 * KWS_TEST_PER_CLASS {
        let values = row(idx % 12);
        test.push_str(&csv_line(&values, idx % 12));
        pixels.extend_from_slice(&values);
        labels.push((idx % 12) as u8);
    }
    (train, test, pixels, labels)
}

/// Multiply-accumulates of one layer: output pixels x kernel area x input channels for a
/// convolution (x 1 channel for a depthwise one), outputs x inputs for a dense layer, none for
/// a pool.
fn layer_macs(layer: &kiln_runtime::LayerInfo) -> u64 {
    use kiln_runtime::LayerKind;
    let [oh, ow, oc] = layer.output_shape;
    let area = (layer.kernel[0] * layer.kernel[1]) as u64;
    match layer.kind {
        LayerKind::Dense => (layer.n_inputs * layer.n_outputs) as u64,
        LayerKind::Conv2d => (oh * ow * oc) as u64 * area * layer.input_shape[2] as u64,
        LayerKind::DepthwiseConv2d => (oh * ow * oc) as u64 * area,
        LayerKind::MaxPool2d | LayerKind::AvgPool2d | LayerKind::Add => 0,
    }
}

/// Zero-run-length coding, as `examples/firmware-qemu/src/rle.rs` decodes it.
fn rle_encode(pixels: &[u8], n_inputs: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for image in pixels.chunks_exact(n_inputs) {
        let mut idx = 0;
        while idx < image.len() {
            if image[idx] == 0 {
                let run = image[idx..]
                    .iter()
                    .take(128)
                    .take_while(|&&p| p == 0)
                    .count();
                out.push(127 + run as u8);
                idx += run;
            } else {
                let run = image[idx..]
                    .iter()
                    .take(128)
                    .take_while(|&&p| p != 0)
                    .count();
                out.push(run as u8 - 1);
                out.extend_from_slice(&image[idx..idx + run]);
                idx += run;
            }
        }
    }
    out
}

/// The bytes as an Intel HEX file that places them at `address` (how flashers take partitions).
fn intel_hex(bytes: &[u8], address: u64) -> Result<String> {
    ensure!(
        address + bytes.len() as u64 <= 1 << 32,
        "the partition does not fit 32-bit addresses"
    );
    let record = |kind: u8, offset: u16, data: &[u8]| {
        let mut line = format!(":{:02X}{offset:04X}{kind:02X}", data.len());
        let mut sum = data.len() as u8;
        sum = sum
            .wrapping_add((offset >> 8) as u8)
            .wrapping_add(offset as u8)
            .wrapping_add(kind);
        for &byte in data {
            line.push_str(&format!("{byte:02X}"));
            sum = sum.wrapping_add(byte);
        }
        line.push_str(&format!("{:02X}\n", sum.wrapping_neg()));
        line
    };
    let mut text = String::new();
    let mut upper = None;
    for (chunk_idx, chunk) in bytes.chunks(16).enumerate() {
        let chunk_address = address + chunk_idx as u64 * 16;
        let chunk_upper = (chunk_address >> 16) as u16;
        if upper != Some(chunk_upper) {
            text.push_str(&record(4, 0, &chunk_upper.to_be_bytes()));
            upper = Some(chunk_upper);
        }
        text.push_str(&record(0, chunk_address as u16, chunk));
    }
    text.push_str(&record(1, 0, &[]));
    Ok(text)
}

/// The firmware crate: `examples/firmware-qemu`, or `$KILN_FIRMWARE_CRATE` (a copy to experiment on).
fn firmware_crate_dir() -> PathBuf {
    std::env::var_os("KILN_FIRMWARE_CRATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("examples/firmware-qemu"))
}

fn write_generated(data: &Prepared) -> Result<()> {
    let generated = firmware_crate_dir().join("src/generated");
    std::fs::create_dir_all(&generated)?;
    let write_if_changed = |name: &str, text: &str| -> Result<()> {
        let path = generated.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        Ok(())
    };
    write_if_changed("model.rs", &std::fs::read_to_string(&data.rust_source)?)?;

    let encoded = rle_encode(&data.pixels, data.n_inputs);
    let raw_samples = data.raw_samples();
    let layer_kinds = kiln_runtime::Model::from_bytes(&data.blob)
        .map_err(|e| anyhow::anyhow!("the firmware's blob does not load: {e}"))?
        .layer_kinds();
    let mut images = format!(
        "//! Test images for the firmware, written by `cargo xtask firmware`. Do not edit.\n\n\
         pub const DESCRIPTION: &str = {:?};\n\
         /// The layer kinds the model uses (`kiln_runtime::kinds`): the firmware links their kernels only.\n\
         pub const LAYER_KINDS: u8 = {layer_kinds};\n\
         pub const N_INPUTS: usize = {};\n\
         pub const N_OUTPUTS: usize = {};\n\
         pub const SCRATCH_LEN: usize = {};\n\
         /// A classifier (its accuracy is compared); a regression model has only its CRC-32.\n\
         pub const CLASSIFIER: bool = {};\n\
         /// The samples are raw i32 values (RAW_INPUTS), not 8-bit images (PIXELS_RLE).\n\
         pub const RAW_SAMPLES: bool = {raw_samples};\n\
         /// The decoded image's buffer (none with raw samples).\n\
         pub const N_PIXELS: usize = {};\n\
         /// The class of each image, or the anomaly flag of each sample of a regression model.\n\
         /// On the tiny memory map the images sit outside the 16 KB flash, standing in for a sensor.\n\
         #[cfg_attr(feature = \"tiny\", link_section = \".kiln_test_data\")]\n\
         pub static LABELS: [u8; {}] = {:?};\n\
         /// Zero-run-length coded pixels (see rle.rs).\n\
         #[cfg_attr(feature = \"tiny\", link_section = \".kiln_test_data\")]\n\
         pub static PIXELS_RLE: [u8; {}] = [",
        data.description,
        data.n_inputs,
        data.n_outputs,
        data.scratch_len,
        data.dataset.is_classifier(),
        if raw_samples { 0 } else { data.n_inputs },
        data.labels.len(),
        data.labels,
        encoded.len()
    );
    for (idx, byte) in encoded.iter().enumerate() {
        images.push_str(if idx % 24 == 0 { "\n    " } else { " " });
        images.push_str(&format!("{byte},"));
    }
    images.push_str("\n];\n");
    let n_raw = if raw_samples { data.labels.len() } else { 0 };
    images.push_str(&format!(
        "/// Real-valued features as the raw i32 values the device takes, round_half_even(x * 2^{}),\n\
         /// converted on the host (the blob's input fraction bits); one row per sample.\n\
         #[cfg_attr(feature = \"tiny\", link_section = \".kiln_test_data\")]\n\
         pub static RAW_INPUTS: [[i32; N_INPUTS]; {n_raw}] = [",
        data.input_frac_bits
    ));
    for row in data.raw_inputs.chunks_exact(data.n_inputs.max(1)) {
        images.push_str("\n    [");
        for (idx, value) in row.iter().enumerate() {
            images.push_str(if idx % 12 == 0 { "\n        " } else { " " });
            images.push_str(&format!("{value},"));
        }
        images.push_str("\n    ],");
    }
    images.push_str("\n];\n");
    write_if_changed("images.rs", &images)?;
    write_if_changed(
        "expected.rs",
        &format!(
            "//! The host's results on the same images, by `cargo xtask firmware`. Do not edit.\n\n\
             /// CRC-32 of every int8 logit, image after image, as kiln-runtime computed on the host.\n\
             pub const HOST_CRC32: u32 = {:#010x};\n\
             /// Images the host's int8 model classified correctly (0 for a regression model).\n\
             pub const HOST_CORRECT: u32 = {};\n",
            data.host_crc32, data.host_correct
        ),
    )?;
    Ok(())
}

/// Builds the firmware for `board` with extra features; returns the ELF's path.
fn build_firmware(board: &Board, extra_features: &[&str]) -> Result<PathBuf> {
    build_firmware_with_kernel(board, extra_features, None)
}

/// Builds the firmware for `board` with `kernel` (as [`build_firmware_with_kernel`]), runs it
/// with the plugin and requires the host's CRC-32; returns the ELF's path and QEMU's output.
fn run_with_kernel(
    board: &Board,
    kernel: Option<&str>,
    plugin_args: &[String],
    data: &Prepared,
    what: &str,
) -> Result<(PathBuf, String)> {
    let elf_path = build_firmware_with_kernel(board, &[], kernel)?;
    let (success, output) = run_qemu(board, &elf_path, plugin_args)?;
    ensure!(
        success
            && result_field(&output, "crc32")
                == Some(format!("{:#010x}", data.host_crc32).as_str()),
        "{} ({} kernel), {what}: the firmware does not reproduce the host:\n{output}",
        board.name,
        kernel.unwrap_or("optimized"),
    );
    Ok((elf_path, output))
}

/// `kernel`: `Some("reference")` builds kiln-runtime with `KILN_KERNEL=reference` (its own
/// target directory, so the two builds do not invalidate each other).
fn build_firmware_with_kernel(
    board: &Board,
    extra_features: &[&str],
    kernel: Option<&str>,
) -> Result<PathBuf> {
    let crate_dir = firmware_crate_dir();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join(match kernel {
            Some(_) => "firmware-reference",
            None => "firmware",
        });
    let mut features = vec![format!("board-{}", board.name)];
    if board.tiny && !extra_features.contains(&"tiny") {
        features.push("tiny".to_owned());
    }
    features.extend(extra_features.iter().map(|f| f.to_string()));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!(
        "$ cargo build --release --target {} --features {}   (in examples/firmware-qemu)",
        board.target,
        features.join(",")
    );
    // The crate's own .cargo/config.toml applies only when cargo runs in its directory.
    let mut command = Command::new(cargo);
    match kernel {
        Some(kernel) => command.env("KILN_KERNEL", kernel),
        None => command.env_remove("KILN_KERNEL"),
    };
    let status = command
        .current_dir(&crate_dir)
        // cargo's target probe runs `rustc -`, which must not read the caller's stdin.
        .stdin(std::process::Stdio::null())
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            board.target,
            "--features",
        ])
        .arg(features.join(","))
        .status()
        .context("cannot run cargo")?;
    ensure!(
        status.success(),
        "the firmware for {} does not build (a reachable panic shows as an undefined \
         `kiln_firmware_has_a_reachable_panic`)",
        board.name
    );
    Ok(target_dir
        .join(board.target)
        .join("release/kiln-firmware-qemu"))
}

/// The table's blob-partition cell.
fn partition_cell(row: &Row) -> &'static str {
    if row.partition_checked {
        "match"
    } else {
        "-"
    }
}

/// Boots `elf` in QEMU and returns everything it printed.
fn run_qemu(board: &Board, elf: &Path, extra: &[String]) -> Result<(bool, String)> {
    let mut command = Command::new("timeout");
    command.args(["120", board.qemu, "-machine", board.machine, "-nographic"]);
    if board.qemu == "qemu-system-riscv32" {
        command.args(["-bios", "none"]);
    }
    command
        .args([
            "-semihosting-config",
            "enable=on,target=native",
            "-icount",
            "shift=0",
        ])
        .args(extra)
        .arg("-kernel")
        .arg(elf);
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", board.qemu))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// `key=value` from the firmware's KILN-RESULT line.
fn result_field<'a>(output: &'a str, key: &str) -> Option<&'a str> {
    let line = output.lines().find(|l| l.starts_with("KILN-RESULT"))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
}

/// The mean instructions of the input stage and of the network, from the plugin's per-region
/// lines (two regions per image, in that order), less the markers' own instructions.
fn region_means(board: &Board, output: &str, n_images: usize) -> Result<(f64, f64)> {
    let counts: Vec<u64> = output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("insncount: region ")?;
            let (_, count) = rest.split_once(": ")?;
            count.strip_suffix(" instructions")?.trim().parse().ok()
        })
        .collect();
    ensure!(
        counts.len() == 2 * n_images,
        "{}: expected {} counted regions from the plugin, found {}",
        board.name,
        2 * n_images,
        counts.len()
    );
    let mean = |parity: usize| {
        counts
            .iter()
            .skip(parity)
            .step_by(2)
            .map(|&c| c.saturating_sub(board.marker_overhead) as f64)
            .sum::<f64>()
            / n_images as f64
    };
    Ok((mean(0), mean(1)))
}

/// `cargo xtask bench-mcu`: instructions per MAC of the MNIST 784-128-10 network on every core,
/// with the kernel the runtime picks and with the reference kernel, side by side.
pub fn bench_mcu(options: &FirmwareOptions) -> Result<()> {
    let root = workspace_root();
    // MNIST does not fit the tiny memory maps; `cargo xtask firmware` runs those.
    let boards: Vec<&Board> = BOARDS
        .iter()
        .filter(|board| !board.tiny && !board.large_models_only)
        .filter(|board| options.only.is_empty() || options.only.iter().any(|n| n == board.name))
        .collect();
    check_tools(&boards, true)?;
    let plugin = build_plugin(&options.insncount, &root.join("target/qemu"))?;
    std::fs::create_dir_all(&options.out)?;
    let plugin_args = vec![
        "-plugin".to_string(),
        plugin.display().to_string(),
        "-d".to_string(),
        "plugin".to_string(),
    ];
    if options.conv_only {
        return bench_conv_layers(&boards, &plugin_args, &options.out);
    }
    let mut lines = Vec::new();
    let mut code_lines = Vec::new();
    let mut descriptions = Vec::new();
    // MNIST (large layers), and the digits MLPs whose small layers pay the per-row and
    // per-layer work: what the smallest parts run.
    for dataset in [Dataset::Mnist, Dataset::Digits, Dataset::DigitsTiny] {
        let data = prepare(dataset, options)?;
        write_generated(&data)?;
        descriptions.push(format!(
            "{} ({} MACs, {} images)",
            data.description,
            data.macs,
            data.labels.len()
        ));
        for &board in &boards {
            println!(
                "\n== {} ({}): {} ==",
                board.name,
                board.core,
                dataset.label()
            );
            let mut measured = Vec::new();
            for kernel in [None, Some("reference")] {
                let (elf_path, output) =
                    run_with_kernel(board, kernel, &plugin_args, &data, dataset.label())?;
                let (_, network) = region_means(board, &output, data.labels.len())?;
                if kernel.is_none() && dataset == Dataset::Mnist {
                    code_lines.push(network_code_line(board, &elf_path)?);
                    // Kept for `llvm-objdump -d`: the later runs rebuild the same path.
                    let kept = options
                        .out
                        .join(format!("bench-mcu-{}-mnist.elf", board.name));
                    std::fs::copy(&elf_path, &kept).with_context(|| {
                        format!("copy {} to {}", elf_path.display(), kept.display())
                    })?;
                }
                measured.push((network, Elf::read(&elf_path)?.text_size()));
            }
            let [(optimized, optimized_text), (reference, reference_text)] = measured[..] else {
                unreachable!("two kernels measured");
            };
            lines.push(format!(
                "| {} | {} | {} | {:.0} | {:.3} | {:.0} | {:.3} | {:.2}x | {} B | {} B |",
                board.name,
                board.core,
                dataset.label(),
                optimized,
                optimized / data.macs as f64,
                reference,
                reference / data.macs as f64,
                reference / optimized,
                optimized_text,
                reference_text,
            ));
        }
    }
    println!(
        "\ncargo xtask bench-mcu: {}; int8 input to int8 logits (Model::run_quantized),\n\
         exact guest instructions from the qemu-insncount plugin, mean over the images; every run\n\
         reproduced the host's CRC-32 and its on-device check against the reference kernel\n",
        descriptions.join("; "),
    );
    println!("| board | core | model | insns | insns/MAC | reference insns | reference insns/MAC | speed-up | firmware .text | with reference .text |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    println!(
        "\nInference code (MNIST 784-128-10): every function the firmware's `kiln_network` (one\n\
         call of Model::run_quantized) reaches, sized from the symbol table; compiler builtins (memcpy)\n\
         are shared with the rest of the firmware and listed apart. The kernel is the dense\n\
         layer alone: the packed or four-row body, its assembly loops and the output stage.\n\
         Each board's firmware is kept as {}/bench-mcu-<board>-mnist.elf.\n",
        options.out.display()
    );
    println!("| board | network code | kernel | compiler builtins | functions |");
    println!("|---|---|---|---|---|");
    for line in code_lines {
        println!("{line}");
    }
    bench_conv_layers(&boards, &plugin_args, &options.out)
}

/// One convolution shape of `../shared/tools/cmsis-nn-bench` (its harness.c), with the
/// instructions per MAC CMSIS-NN's kernel takes on it on Cortex-M4F (arm-none-eabi-gcc 12.2.1
/// -O2, CMSIS-NN 99f736a, the figures of that README, reproduced by re-running its run.sh).
struct ConvShape {
    name: &'static str,
    /// `[h, w, c]` of the input.
    input: [u32; 3],
    kernel: [u32; 2],
    stride: [u32; 2],
    padding: kiln_runtime::encode::Padding,
    /// Output channels (a depthwise layer's equal its input's).
    n_outputs: u32,
    depthwise: bool,
    cmsis_function: &'static str,
    cmsis_m4_insns_per_mac: f64,
}

const CONV_SHAPES: [ConvShape; 6] = {
    use kiln_runtime::encode::Padding::{Same, Valid};
    [
        ConvShape {
            name: "KWS conv1: 49x10x1, 10x4 s2 -> 25x5x64",
            input: [49, 10, 1],
            kernel: [10, 4],
            stride: [2, 2],
            padding: Same,
            n_outputs: 64,
            depthwise: false,
            cmsis_function: "arm_convolve_s8",
            cmsis_m4_insns_per_mac: 3.494,
        },
        ConvShape {
            name: "KWS dw3x3 on 25x5x64",
            input: [25, 5, 64],
            kernel: [3, 3],
            stride: [1, 1],
            padding: Same,
            n_outputs: 64,
            depthwise: true,
            cmsis_function: "arm_depthwise_conv_3x3_s8",
            cmsis_m4_insns_per_mac: 7.791,
        },
        ConvShape {
            name: "KWS conv1x1 64 -> 64 on 25x5",
            input: [25, 5, 64],
            kernel: [1, 1],
            stride: [1, 1],
            padding: Same,
            n_outputs: 64,
            depthwise: false,
            cmsis_function: "arm_convolve_1x1_s8_fast",
            cmsis_m4_insns_per_mac: 2.088,
        },
        ConvShape {
            name: "MNIST conv1: 28x28x1, 3x3 -> 16",
            input: [28, 28, 1],
            kernel: [3, 3],
            stride: [1, 1],
            padding: Same,
            n_outputs: 16,
            depthwise: false,
            cmsis_function: "arm_convolve_s8",
            cmsis_m4_insns_per_mac: 10.402,
        },
        ConvShape {
            name: "MNIST conv2: 14x14x16, 3x3 -> 32",
            input: [14, 14, 16],
            kernel: [3, 3],
            stride: [1, 1],
            padding: Same,
            n_outputs: 32,
            depthwise: false,
            cmsis_function: "arm_convolve_s8",
            cmsis_m4_insns_per_mac: 2.138,
        },
        ConvShape {
            name: "1-D: 1x128x3, 1x5 -> 16, valid",
            input: [1, 128, 3],
            kernel: [1, 5],
            stride: [1, 1],
            padding: Valid,
            n_outputs: 16,
            depthwise: false,
            cmsis_function: "arm_convolve_s8",
            cmsis_m4_insns_per_mac: 6.385,
        },
    ]
};

/// Images per one-layer model (the count does not depend on the data; two check it).
const CONV_BENCH_IMAGES: usize = 2;

/// A one-node model of `shape` with deterministic pseudo-random weights, written as the
/// firmware's model source and run on the host for the expected CRC.
fn prepare_conv_shape(shape: &ConvShape, out: &Path) -> Result<Prepared> {
    use kiln_runtime::encode::{
        chain, encode_layer_by_layer, ActivationSpec, AffineSpec, ConvSpec, InputStageSpec,
        LayerSpec, ModelSpec,
    };
    let mut state: u32 = 0x9e37_79b9;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let [h, w, c] = shape.input;
    let taps = shape.kernel[0] * shape.kernel[1] * if shape.depthwise { 1 } else { c };
    let n_weights = if shape.depthwise {
        shape.kernel[0] * shape.kernel[1] * c
    } else {
        shape.n_outputs * taps
    };
    let weights: Vec<i8> = (0..n_weights).map(|_| next() as i8).collect();
    let bias: Vec<i32> = (0..shape.n_outputs)
        .map(|_| (next() % 4001) as i32 - 2000)
        .collect();
    // An accumulator of `taps` products of about 74 x 74 (uniform int8) has a spread of about
    // 5500 sqrt(taps): scaled down so the outputs use the int8 range.
    let down = (100.0 * f64::from(taps).sqrt()).log2().ceil() as u8;
    let multipliers: Vec<i32> = (0..shape.n_outputs)
        .map(|_| (1 << 30) + (next() % (1 << 29)) as i32)
        .collect();
    let shifts = vec![30 + down; shape.n_outputs as usize];
    let conv = ConvSpec {
        kernel: shape.kernel,
        stride: shape.stride,
        padding: shape.padding,
        n_outputs: shape.n_outputs,
        input_zero_point: -128,
        output_zero_point: -128,
        weights,
        bias,
        multipliers,
        shifts,
        activation: ActivationSpec::Relu,
    };
    let layer = if shape.depthwise {
        LayerSpec::DepthwiseConv2d(conv)
    } else {
        LayerSpec::Conv2d(conv)
    };
    let spec = ModelSpec {
        activations: kiln_runtime::encode::Activations::Int8,
        // Raw bytes 0..=255 to int8 x - 128: zero point -128, q = -128 + x.
        input: InputStageSpec {
            zero_point: -128,
            frac_bits: 0,
            features: vec![AffineSpec {
                offset: 0,
                multiplier: 1 << 30,
                shift: 38,
            }],
        },
        input_shape: shape.input,
        nodes: chain([layer]),
        output_scale: 0.1,
        output_zero_point: -128,
    };
    // Layer by layer: `encode`'s plan would run a shape-keeping depthwise layer in place
    // (format version 7), which this firmware, built without `in-place`, refuses to load; the
    // table measures the kernel, not the plan.
    let blob = encode_layer_by_layer(&spec).map_err(|e| anyhow::anyhow!("{}: {e}", shape.name))?;
    let model = kiln_runtime::Model::from_bytes(&blob)
        .map_err(|e| anyhow::anyhow!("{}: {e}", shape.name))?;
    let n_inputs = (h * w * c) as usize;
    let pixels: Vec<u8> = (0..n_inputs * CONV_BENCH_IMAGES)
        .map(|_| next() as u8)
        .collect();
    let labels = vec![0u8; CONV_BENCH_IMAGES];
    let mut scratch = vec![0i8; model.scratch_len()];
    let mut logits = vec![0i8; model.n_outputs()];
    let mut crc = kiln_runtime::crc32::Crc32::new();
    let mut host_correct = 0u32;
    for image in pixels.chunks_exact(n_inputs) {
        let raw: Vec<i32> = image.iter().map(|&p| i32::from(p)).collect();
        let class = model
            .run(&raw, &mut scratch, &mut logits)
            .map_err(|e| anyhow::anyhow!("host run: {e}"))?;
        host_correct += u32::from(class == 0);
        let bytes: Vec<u8> = logits.iter().map(|&l| l as u8).collect();
        crc.update(&bytes);
    }
    let layer = model.layer(0).context("one layer")?;
    let mut source = format!(
        "//! A one-layer model for `cargo xtask bench-mcu`: {}. Generated; do not edit.\n\n\
         #[repr(C, align(4))]\npub struct AlignedBlob(pub [u8; {}]);\n\
         pub static MODEL_ALIGNED: AlignedBlob = AlignedBlob([",
        shape.name,
        blob.len()
    );
    for (idx, byte) in blob.iter().enumerate() {
        source.push_str(if idx % 16 == 0 { "\n    " } else { " " });
        source.push_str(&format!("0x{byte:02x},"));
    }
    source.push_str(
        "\n]);\n\npub fn model() -> Result<kiln_runtime::Model<'static, { crate::images::LAYER_KINDS }>, kiln_runtime::Error> {\n    \
         kiln_runtime::Model::with_kinds(&MODEL_ALIGNED.0)\n}\n",
    );
    std::fs::create_dir_all(out)?;
    let rust_source = out.join("bench-layer-model.rs");
    std::fs::write(&rust_source, source)?;
    Ok(Prepared {
        data_spec: String::new(),
        dataset: Dataset::MnistCnn,
        blob: blob.clone(),
        rust_source,
        pixels,
        raw_inputs: Vec::new(),
        input_frac_bits: 0,
        labels,
        n_inputs,
        n_outputs: model.n_outputs(),
        scratch_len: model.fast_scratch_len(),
        macs: layer_macs(&layer),
        arena_len: model.scratch_len(),
        no_reuse_len: n_inputs + layer.n_outputs,
        host_crc32: crc.finish(),
        host_correct,
        description: format!("bench-mcu one-layer model: {}", shape.name),
    })
}

/// `cargo xtask bench-mcu`'s convolution table: each CMSIS-NN shape as a one-node model on the
/// boards with the RAM for it (Cortex-M4F and M7), with the kernel the runtime picks and with
/// the reference kernel.
fn bench_conv_layers(boards: &[&Board], plugin_args: &[String], out: &Path) -> Result<()> {
    let boards: Vec<&Board> = boards
        .iter()
        .copied()
        .filter(|b| b.name == "mps2-an386" || b.name == "mps2-an500")
        .collect();
    let mut lines = Vec::new();
    let mut kws_sum: Vec<(f64, f64)> = vec![(0.0, 0.0); boards.len()];
    for shape in &CONV_SHAPES {
        let data = prepare_conv_shape(shape, out)?;
        for (board_idx, board) in boards.iter().enumerate() {
            println!("\n== {} ({}): {} ==", board.name, board.core, shape.name);
            write_generated(&data)?;
            let mut measured = Vec::new();
            for kernel in [None, Some("reference")] {
                let (_, output) = run_with_kernel(board, kernel, plugin_args, &data, shape.name)?;
                measured.push(region_means(board, &output, data.labels.len())?.1);
            }
            let (optimized, reference) = (measured[0], measured[1]);
            if shape.name.starts_with("KWS") {
                // The DS-CNN's convolutions: conv1 once, each depthwise and pointwise four times.
                let times = if shape.name.starts_with("KWS conv1:") {
                    1.0
                } else {
                    4.0
                };
                kws_sum[board_idx].0 += times * optimized;
                kws_sum[board_idx].1 += times * data.macs as f64;
            }
            let cmsis = if board.name == "mps2-an386" {
                format!(
                    "{} | {:.3} | {:.2}x",
                    shape.cmsis_function,
                    shape.cmsis_m4_insns_per_mac,
                    optimized / data.macs as f64 / shape.cmsis_m4_insns_per_mac
                )
            } else {
                format!("{} | - | -", shape.cmsis_function)
            };
            lines.push(format!(
                "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {cmsis} |",
                shape.name,
                board.core,
                data.macs,
                data.n_outputs,
                optimized,
                optimized / data.macs as f64,
                reference / data.macs as f64,
            ));
        }
    }
    println!(
        "\ncargo xtask bench-mcu, convolutions: each shape of ../shared/tools/cmsis-nn-bench as a\n\
         one-node kiln model (deterministic pseudo-random int8 weights and inputs, per-channel\n\
         requantization, ReLU, input zero point -128), built with kiln_runtime::encode and run in\n\
         the firmware; insns = one Model::run_quantized call, exact, mean over {CONV_BENCH_IMAGES} \
         inputs, every run\n\
         reproducing the host's CRC-32 and the on-device reference check. Besides the layer's\n\
         kernel the call copies the input into the arena and the output to the logits buffer and\n\
         takes its argmax (a few instructions per input and output byte, see the outputs column);\n\
         CMSIS-NN's count is the kernel call alone.\n"
    );
    println!("| shape | core | MACs | outputs | kiln insns | kiln insns/MAC | kiln reference insns/MAC | CMSIS-NN kernel | CMSIS-NN M4F insns/MAC | kiln / CMSIS-NN |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    for (board, (insns, macs)) in boards.iter().zip(kws_sum) {
        println!(
            "\nKWS DS-CNN convolutions (conv1 + 4 x (dw3x3 + conv1x1)) on {}: {insns:.0} insns for \
             {macs:.0} MACs = {:.3} insns/MAC (CMSIS-NN on Cortex-M4F: 7,637,972 insns, 2.876 \
             insns/MAC)",
            board.core,
            insns / macs
        );
    }
    Ok(())
}

/// Whether a function is a compiler builtin (memcpy and friends), not Kiln's code.
fn is_builtin(name: &str) -> bool {
    name.starts_with("__") || name.contains("compiler_builtins") || name.starts_with("mem")
}

/// Whether a function belongs to the dense kernel (as opposed to the model's layer loop).
fn is_kernel(name: &str) -> bool {
    [
        "fully_connected",
        "kiln_fc",
        "kiln_dot",
        "kiln_widen",
        "rq_acc",
        "FcParams5check",
    ]
    .iter()
    .any(|part| name.contains(part))
}

/// One row of the code-size table: the functions `kiln_network` reaches in `elf_path`.
fn network_code_line(board: &Board, elf_path: &Path) -> Result<String> {
    let functions = crate::elf::reachable_functions(elf_path, "kiln_network")?;
    let sum = |keep: &dyn Fn(&str) -> bool| -> u64 {
        functions
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(_, size)| size)
            .sum()
    };
    let own = sum(&|name| !is_builtin(name));
    let kernel = sum(&|name| is_kernel(name));
    let builtins = sum(&|name| is_builtin(name));
    let listed: Vec<String> = functions
        .iter()
        .filter(|(name, _)| !is_builtin(name))
        .map(|(name, size)| format!("{} {size} B", short_name(name)))
        .collect();
    Ok(format!(
        "| {} | {own} B | {kernel} B | {builtins} B | {} |",
        board.name,
        listed.join(", ")
    ))
}

/// `_ZN12kiln_runtime7kernels6packed20fully_connected_with17h…E` -> `packed::fully_connected_with`.
fn short_name(mangled: &str) -> String {
    let Some(body) = mangled.strip_prefix("_ZN") else {
        return mangled.to_string();
    };
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(digits_len) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&n| n > 0) {
        let Ok(len) = rest[..digits_len].parse::<usize>() else {
            break;
        };
        let Some(part) = rest.get(digits_len..digits_len + len) else {
            break;
        };
        parts.push(part);
        rest = &rest[digits_len + len..];
    }
    let parts: Vec<&str> = parts
        .into_iter()
        .filter(|part| !(part.starts_with('h') && part.len() == 17))
        .collect();
    let keep = parts.len().min(2);
    parts[parts.len() - keep..].join("::")
}

/// A firmware run's output with the plugin's per-region lines left out of what is printed.
fn print_without_regions(output: &str) {
    print!(
        "{}",
        output
            .lines()
            .filter(|l| !l.starts_with("insncount: region"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
}

/// Requires the firmware's KILN-RESULT line to carry the host's CRC-32 and accuracy (a
/// classifier's; a regression model has only the CRC-32) and a successful exit; returns the
/// number it classified correctly (0 for a regression model).
fn require_host_results(
    board: &Board,
    variant: &str,
    data: &Prepared,
    success: bool,
    output: &str,
) -> Result<u32> {
    let correct_field = result_field(output, "correct").with_context(|| {
        format!(
            "{} ({variant}): no KILN-RESULT line in the output:\n{output}",
            board.name
        )
    })?;
    let correct: u32 = if data.dataset.is_classifier() {
        correct_field
            .parse()
            .with_context(|| format!("{} ({variant}): correct={correct_field}", board.name))?
    } else {
        ensure!(
            correct_field == "-",
            "{} ({variant}): a regression model's firmware reported an accuracy",
            board.name
        );
        0
    };
    let crc = result_field(output, "crc32").unwrap_or("?");
    let host_crc = format!("{:#010x}", data.host_crc32);
    ensure!(
        crc == host_crc,
        "{} ({variant}): the firmware's CRC-32 {crc} differs from the host's {host_crc}",
        board.name
    );
    ensure!(
        correct == data.host_correct,
        "{} ({variant}): the firmware classified {correct} images correctly, the host {}",
        board.name,
        data.host_correct
    );
    ensure!(
        success,
        "{} ({variant}): the firmware exited with a failure",
        board.name
    );
    Ok(correct)
}

fn result_number(output: &str, key: &str) -> Result<u64> {
    result_field(output, key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key} in the KILN-RESULT line"))
}

/// The largest `Model` value allowed on a 32-bit core (issue 18; also a compile-time assert).
const MAX_MODEL_BYTES: u64 = 128;
/// The most stack one `run_quantized` call of an int8 MLP may take, on every core (issue 18).
const MAX_MLP_INFERENCE_STACK: u64 = 256;
/// The most runtime .text of an int8 MLP firmware by default, on the Cortex-M0 and the
/// Cortex-M4F/M7 (issue 18).
const MAX_MLP_RUNTIME_TEXT: u64 = 6 * 1024;
/// The same with the `small` feature on the Cortex-M0 (issue 18).
const MAX_MLP_SMALL_RUNTIME_TEXT_M0: u64 = 4 * 1024;

/// Holds an int8 MLP's measured runtime to the smallest parts' lines, so that a change that
/// outgrows them fails here: the inference stack on every core, the whole runtime's .text by
/// default on the Cortex-M0 and M4F/M7, and with `small` on the Cortex-M0 (a tiny board's
/// lean build is the `small` one).
fn check_smallest_parts(row: &Row) -> Result<()> {
    if !matches!(
        row.dataset,
        Dataset::Digits | Dataset::DigitsTiny | Dataset::Mnist
    ) {
        return Ok(());
    }
    let board = row.board.name;
    let model = row.dataset.label();
    let stacks = std::iter::once(("", row.inference_stack))
        .chain(row.small.as_ref().map(|s| (", small", s.inference_stack)));
    for (build, stack) in stacks {
        ensure!(
            stack <= MAX_MLP_INFERENCE_STACK,
            "{board}{build}, {model}: one inference takes {stack} B of stack, more than \
             {MAX_MLP_INFERENCE_STACK} B"
        );
    }
    let core = row.board.core;
    let m0 = core == "Cortex-M0";
    let mut texts = Vec::new();
    if row.board.tiny {
        if m0 {
            texts.push((", small", row.runtime_text, MAX_MLP_SMALL_RUNTIME_TEXT_M0));
        }
    } else if m0 || matches!(core, "Cortex-M4F" | "Cortex-M7") {
        texts.push(("", row.runtime_text, MAX_MLP_RUNTIME_TEXT));
    }
    if let (true, Some(small)) = (m0, &row.small) {
        texts.push((", small", small.runtime_text, MAX_MLP_SMALL_RUNTIME_TEXT_M0));
    }
    for (build, text, limit) in texts {
        ensure!(
            text <= limit,
            "{board}{build}, {model}: the runtime's .text is {text} B, more than {limit} B"
        );
    }
    Ok(())
}

pub(crate) fn run_board(
    board: &'static Board,
    data: &Prepared,
    plugin: &Path,
    out: &Path,
) -> Result<Row> {
    println!("\n== {} ({}, {}) ==", board.name, board.core, board.machine);
    write_generated(data)?;
    let name = format!("{}-{}", board.name, data.dataset.dir());
    let plugin_args: Vec<String> = vec![
        "-plugin".into(),
        format!("{}", plugin.display()),
        "-d".into(),
        "plugin".into(),
    ];
    // Every build of a model fed raw samples measures the whole `Model::run` call.
    let common: &[&str] = match (data.raw_samples(), data.dataset.int16_of().is_some()) {
        (true, true) => &["whole-run", "int16"],
        (true, false) => &["whole-run"],
        (false, true) => &["int16"],
        (false, false) => &[],
    };
    // The tiny maps run the `small` build: the default kernels do not leave room on RV32.
    let lean: Vec<&str> = if board.tiny {
        vec!["lean", "tiny", "small"]
    } else {
        vec!["lean"]
    }
    .into_iter()
    .chain(common.iter().copied())
    .collect();
    let with = |extra: &[&'static str]| -> Vec<&str> {
        lean.iter().copied().chain(extra.iter().copied()).collect()
    };

    // The lean firmware (load and run, what a product ships): instructions counted, the
    // `Model` size and each inference's own peak stack measured.
    let lean_elf_path = build_firmware(board, &lean)?;
    let lean_elf = Elf::read(&lean_elf_path)?;
    std::fs::copy(&lean_elf_path, out.join(format!("{name}-lean.elf")))?;
    let (success, output) = run_qemu(board, &lean_elf_path, &plugin_args)?;
    print_without_regions(&output);
    let correct = require_host_results(board, "lean", data, success, &output)?;
    let (insns_input, insns_network) = region_means(board, &output, data.labels.len())?;
    let insns_whole = data.raw_samples().then_some(insns_network);
    let inference_stack = result_number(&output, "inference_stack")?;
    let model_bytes = result_number(&output, "model_bytes")?;
    ensure!(
        model_bytes <= MAX_MODEL_BYTES,
        "{}: size_of::<Model>() is {model_bytes} B, more than {MAX_MODEL_BYTES} B",
        board.name
    );

    // The runtime's code size by difference: the same firmware without the inference call.
    let baseline = Elf::read(&build_firmware(board, &with(&["no-inference"]))?)?;
    let runtime_text = lean_elf.text_size().saturating_sub(baseline.text_size());

    // The `small` feature on the board's MLP: the compact kernels, the same bits (not on a
    // board that only holds the large models).
    let small = if data.dataset == board.datasets[0] && !board.tiny && !board.large_models_only {
        let small_elf_path = build_firmware(board, &with(&["small"]))?;
        let small_elf = Elf::read(&small_elf_path)?;
        let (success, output) = run_qemu(board, &small_elf_path, &plugin_args)?;
        print_without_regions(&output);
        require_host_results(board, "lean, small", data, success, &output)?;
        let (_, small_network) = region_means(board, &output, data.labels.len())?;
        Some(SmallBuild {
            runtime_text: small_elf.text_size().saturating_sub(baseline.text_size()),
            insns_per_mac: small_network / data.macs as f64,
            inference_stack: result_number(&output, "inference_stack")?,
        })
    } else {
        None
    };

    let mut row = Row {
        board,
        dataset: data.dataset,
        n_images: data.labels.len(),
        correct,
        insns_input,
        insns_network,
        insns_per_mac: insns_network / data.macs as f64,
        insns_whole,
        n_inputs: data.n_inputs,
        macs: data.macs,
        runtime_text,
        checked_text: None,
        runtime_symbols_text: lean_elf.symbols_size_matching("kiln_runtime"),
        model_flash: data.blob.len(),
        firmware_flash: lean_elf.flash_size(),
        static_ram: lean_elf.static_ram_size(),
        stack_peak: result_number(&output, "stack_peak")?,
        inference_stack,
        model_bytes,
        small,
        partition_checked: false,
    };
    check_smallest_parts(&row)?;
    if board.tiny {
        return Ok(row);
    }

    // The checking firmware: the reference kernels on the device must give the same logits,
    // and the kernel cases must pass.
    let elf_path = build_firmware(board, common)?;
    let elf = Elf::read(&elf_path)?;
    std::fs::copy(&elf_path, out.join(format!("{name}.elf")))?;
    let (success, output) = run_qemu(board, &elf_path, &[])?;
    print!("{output}");
    require_host_results(board, "checks", data, success, &output)?;
    row.checked_text = Some(elf.text_size().saturating_sub(baseline.text_size()));
    row.stack_peak = result_number(&output, "stack_peak")?;

    // The blob from the flash partition, written by QEMU's loader.
    let partition_elf_path = build_firmware(board, &with(&["blob-partition"]))?;
    let partition_elf = Elf::read(&partition_elf_path)?;
    let partition = partition_elf
        .symbol("_kiln_model_partition")
        .context("no _kiln_model_partition symbol")?;
    let partition_len = partition_elf
        .symbol("_kiln_model_partition_len")
        .context("no _kiln_model_partition_len symbol")?;
    ensure!(
        data.blob.len() as u64 <= partition_len.value,
        "{}: the blob ({} bytes) exceeds the model partition ({} bytes)",
        board.name,
        data.blob.len(),
        partition_len.value
    );
    ensure!(
        partition_elf.flash_end() <= partition.value,
        "{}: the firmware reaches into the model partition",
        board.name
    );
    // Intel HEX carries its own addresses (and QEMU's loader limits raw files to the RAM size).
    let hex_path = out.join(format!("{name}-model-partition.hex"));
    std::fs::write(&hex_path, intel_hex(&data.blob, partition.value)?)?;
    let loader = format!("loader,file={}", hex_path.display());
    let (partition_ok, partition_output) =
        run_qemu(board, &partition_elf_path, &["-device".into(), loader])?;
    print!("{partition_output}");
    require_host_results(
        board,
        "blob partition",
        data,
        partition_ok,
        &partition_output,
    )?;
    std::fs::copy(
        &partition_elf_path,
        out.join(format!("{name}-partition.elf")),
    )?;
    row.partition_checked = true;
    Ok(row)
}

fn print_table(rows: &[Row], prepared: &[Prepared], not_fitting: &[String]) {
    println!("\ncargo xtask firmware: every board reproduces the host bit for bit\n");
    for data in prepared {
        let host = if data.dataset.is_classifier() {
            format!(
                "host int8 accuracy {}/{} = {:.4}",
                data.host_correct,
                data.labels.len(),
                f64::from(data.host_correct) / data.labels.len() as f64
            )
        } else {
            format!(
                "regression ({} samples, no accuracy), input fraction bits {}",
                data.labels.len(),
                data.input_frac_bits
            )
        };
        println!(
            "{}: {} MACs per inference, activation arena {} B (without reuse {} B), scratch \
             passed {} B, blob {} B, {host}, host CRC-32 {:#010x}",
            data.description,
            data.macs,
            data.arena_len,
            data.no_reuse_len,
            data.scratch_len,
            data.blob.len(),
            data.host_crc32
        );
    }
    println!(
        "\n| board | core | model | images | accuracy | CRC | blob partition | input stage insns | network insns | insns/MAC | runtime .text | with checks | runtime symbols | Model | inference stack | model flash | firmware flash | static RAM | peak stack |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let bytes = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} B"));
    for row in rows {
        let accuracy = if row.dataset.is_classifier() {
            format!("{:.4}", f64::from(row.correct) / row.n_images as f64)
        } else {
            "-".to_owned()
        };
        println!(
            "| {} | {} | {} | {} | {accuracy} | match | {} | {:.0} | {:.0} | {:.3} | {} B | {} | {} B | {} B | {} B | {} B | {} B | {} B | {} B |",
            row.board.name,
            row.board.core,
            row.dataset.label(),
            row.n_images,
            partition_cell(row),
            row.insns_input,
            row.insns_network,
            row.insns_per_mac,
            row.runtime_text,
            bytes(row.checked_text),
            row.runtime_symbols_text,
            row.model_bytes,
            row.inference_stack,
            row.model_flash,
            row.firmware_flash,
            row.static_ram,
            row.stack_peak,
        );
    }
    println!(
        "\ninsns: guest instructions between bench_start and bench_stop, exact, by the qemu-insncount\n\
         plugin, mean over all images, in the lean firmware. Input stage: raw values to int8\n\
         (Model::quantize_input); network: int8 input to int8 logits (Model::run_quantized), every\n\
         layer (the real-valued models: one whole Model::run call, see their table below);\n\
         insns/MAC = network / MACs.\n\
         runtime .text: the lean firmware (load and run, the layer kinds the model uses) minus the\n\
         same without the inference call: the whole runtime (load, validate, input stage, run).\n\
         with checks: the same for the firmware that also runs the reference kernels and the kernel\n\
         cases on the device.\n\
         runtime symbols: the .text of functions named kiln_runtime::* (LTO inlines some into callers).\n\
         Model: size_of::<Model<KINDS>>() on the device. inference stack: the largest peak stack of one\n\
         run_quantized call alone (painted just before it, read just after).\n\
         firmware flash, static RAM (.data + .bss; the buffers are static): the lean firmware.\n\
         peak stack: by painting, over the harness's whole loop (model load, inference, checksum)."
    );
    if rows.iter().all(|row| row.small.is_none()) {
        print_raw_sample_table(rows, not_fitting);
        return;
    }
    println!(
        "\nSize over speed (the runtime's `small` feature: compact kernels, the same output bits):\n\n\
         | board | core | model | runtime .text default | small | insns/MAC default | small | inference stack default | small |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for row in rows {
        if let Some(small) = &row.small {
            println!(
                "| {} | {} | {} | {} B | {} B | {:.3} | {:.3} | {} B | {} B |",
                row.board.name,
                row.board.core,
                row.dataset.label(),
                row.runtime_text,
                small.runtime_text,
                row.insns_per_mac,
                small.insns_per_mac,
                row.inference_stack,
                small.inference_stack,
            );
        }
    }
    print_raw_sample_table(rows, not_fitting);
}

/// The models fed real-valued features (the anomaly-detection autoencoder): the whole
/// inference, the input stage per feature, and the boards that cannot hold them.
fn print_raw_sample_table(rows: &[Row], not_fitting: &[String]) {
    let raw_rows: Vec<&Row> = rows.iter().filter(|r| r.insns_whole.is_some()).collect();
    if raw_rows.is_empty() && not_fitting.is_empty() {
        return;
    }
    println!(
        "\nReal-valued features (raw i32 = round(x * 2^bits) from the host; no accuracy, the \
         CRC-32 of every int8 output equals the host's):\n\n\
         | board | core | model | samples | CRC | blob partition | insns per inference (Model::run) | insns/MAC (whole run) | input stage insns | per feature | runtime .text | Model | inference stack | model flash | firmware flash | static RAM | peak stack |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for row in raw_rows {
        let whole = row.insns_whole.unwrap_or(0.0);
        println!(
            "| {} | {} | {} | {} | match | {} | {whole:.0} | {:.3} | {:.0} | {:.3} | {} B | {} B | {} B | {} B | {} B | {} B | {} B |",
            row.board.name,
            row.board.core,
            row.dataset.label(),
            row.n_images,
            partition_cell(row),
            whole / row.macs as f64,
            row.insns_input,
            row.insns_input / row.n_inputs as f64,
            row.runtime_text,
            row.model_bytes,
            row.inference_stack,
            row.model_flash,
            row.firmware_flash,
            row.static_ram,
            row.stack_peak,
        );
    }
    println!(
        "\ninsns per inference: one Model::run call (raw i32 values to int8 outputs: the input stage\n\
         into the arena, then every layer), exact, mean over the samples; insns/MAC divides it by\n\
         the MACs. Input stage: Model::quantize_input alone, in the same run (per feature: / the\n\
         inputs). runtime .text: the lean firmware minus the same without the inference call (it\n\
         links quantize_input and run). inference stack: the largest peak of one run call."
    );
    for line in not_fitting {
        println!("\n{line}");
    }
}

/// A firmware crate for a real board, with its community HAL: built in CI, never run here.
struct RealBoard {
    /// Its directory under `examples/`.
    dir: &'static str,
    /// Its package (and so ELF) name.
    package: &'static str,
    target: &'static str,
    board: &'static str,
}

const REAL_BOARDS: [RealBoard; 2] = [
    RealBoard {
        dir: "nrf52840-digits",
        package: "kiln-nrf52840-digits",
        target: "thumbv7em-none-eabihf",
        board: "nRF52840-DK (Cortex-M4F)",
    },
    RealBoard {
        dir: "rp2040-digits",
        package: "kiln-rp2040-digits",
        target: "thumbv6m-none-eabi",
        board: "Raspberry Pi Pico (RP2040, Cortex-M0+)",
    },
];

/// Checks `examples/digits-model/samples.rs` against the data and the committed model, then
/// cross-builds every real-board crate and prints its sizes.
fn build_real_boards() -> Result<()> {
    let root = workspace_root();
    println!("\n== real boards (built, not run) ==");
    let samples_path = root.join("examples/digits-model/samples.rs");
    let samples = digits_samples_source()?;
    if std::fs::read_to_string(&samples_path).ok().as_deref() != Some(samples.as_str()) {
        std::fs::write(&samples_path, &samples)
            .with_context(|| format!("{}: cannot write", samples_path.display()))?;
        bail!(
            "{} did not match the digits data and model.kiln beside it: rewritten, commit it",
            samples_path.display()
        );
    }
    // Beside the QEMU firmware's target dir, so CI caches both.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("boards");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut lines = Vec::new();
    for board in &REAL_BOARDS {
        println!(
            "$ cargo build --release --locked   (in examples/{})",
            board.dir
        );
        // The crate's own .cargo/config.toml (target, linker scripts) applies only in its directory.
        let status = Command::new(&cargo)
            .current_dir(root.join("examples").join(board.dir))
            .env("CARGO_TARGET_DIR", &target_dir)
            // --locked: the committed Cargo.lock is what a user builds, so CI builds exactly it.
            .args(["build", "--release", "--locked", "--quiet"])
            // A build reads no input; nothing here should wait on the terminal.
            .stdin(std::process::Stdio::null())
            .status()
            .context("cannot run cargo")?;
        ensure!(
            status.success(),
            "examples/{} does not build for {}",
            board.dir,
            board.target
        );
        let elf = Elf::read(
            &target_dir
                .join(board.target)
                .join("release")
                .join(board.package),
        )?;
        let rodata: u64 = elf
            .sections
            .iter()
            .filter(|s| s.name == ".rodata")
            .map(|s| s.size)
            .sum();
        lines.push(format!(
            "| {} | {} | {} | {} B | {} B | {} B | {} B |",
            board.dir,
            board.board,
            board.target,
            elf.text_size(),
            rodata,
            elf.flash_size(),
            elf.static_ram_size()
        ));
    }
    println!("\n| crate | board | target | .text | .rodata | flash | static RAM |");
    println!("|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    println!(
        "\nflash: every loaded section (vector table, boot2, code, constants, .data's values).\n\
         static RAM: .data, .bss and .uninit (mostly the 1 KiB defmt RTT buffer; the image,\n\
         scratch and logit buffers live on the stack)."
    );
    Ok(())
}

/// The source of `examples/digits-model/samples.rs`: the first held-out image of each class
/// from the bundled digits data, with the int8 logits kiln-runtime computes for them on the host
/// from `examples/digits-model/model.kiln`.
fn digits_samples_source() -> Result<String> {
    let root = workspace_root();
    let csv_path = root.join("trainer/data/digits.csv.gz");
    let blob_path = root.join("examples/digits-model/model.kiln");
    let text = String::from_utf8(read_gz(&csv_path)?)
        .with_context(|| format!("{}: not UTF-8", csv_path.display()))?;
    let blob = std::fs::read(&blob_path)
        .with_context(|| format!("{}: cannot read", blob_path.display()))?;
    let model = kiln_runtime::Model::from_bytes(&blob)
        .map_err(|e| anyhow::anyhow!("{}: {e}", blob_path.display()))?;
    ensure!(
        model.n_inputs() == 64 && model.n_outputs() == 10,
        "{}: a digits model has 64 inputs and 10 outputs, this one {} and {}",
        blob_path.display(),
        model.n_inputs(),
        model.n_outputs()
    );
    let mut scratch = vec![0i8; model.scratch_len()];
    let mut logits = [0i8; 10];
    let mut entries: [Option<String>; 10] = Default::default();
    // The split `cargo xtask firmware` trains with: every fourth row is held out.
    for (row_idx, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if row_idx % 4 != 3 {
            continue;
        }
        let values: Vec<u8> = line
            .split(',')
            .map(|v| v.trim().parse::<u8>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: row {row_idx} is not integers", csv_path.display()))?;
        let (&label, pixels) = values.split_last().context("empty row")?;
        ensure!(
            pixels.len() == 64 && label < 10,
            "{}: row {row_idx}: expected 64 pixels and a label 0-9",
            csv_path.display()
        );
        let entry = &mut entries[usize::from(label)];
        if entry.is_some() {
            continue;
        }
        let raw: Vec<i32> = pixels.iter().map(|&p| i32::from(p)).collect();
        let prediction = model
            .run(&raw, &mut scratch, &mut logits)
            .map_err(|e| anyhow::anyhow!("host run: {e}"))?;
        let pixel_rows: Vec<String> = pixels
            .chunks(8)
            .map(|row| {
                let cells: Vec<String> = row.iter().map(|p| format!("{p:2}")).collect();
                format!("            {},", cells.join(", "))
            })
            .collect();
        *entry = Some(format!(
            "    Sample {{\n        row_idx: {row_idx},\n        label: {label},\n        \
             pixels: [\n{}\n        ],\n        host_logits: {logits:?},\n        \
             host_prediction: {prediction},\n    }},\n",
            pixel_rows.join("\n")
        ));
    }
    let entries: Vec<String> = entries
        .into_iter()
        .enumerate()
        .map(|(label, entry)| entry.with_context(|| format!("no held-out image of class {label}")))
        .collect::<Result<_>>()?;
    Ok(format!(
        "//! Ten held-out images of the bundled digits data (trainer/data/digits.csv.gz), the first\n\
         //! of each class among the rows the model never saw (row_idx % 4 == 3), with the int8\n\
         //! logits kiln-runtime computes for them on the host from model.kiln beside this file.\n\
         //! Written by `cargo xtask firmware` (xtask/src/firmware.rs); do not edit.\n\n\
         /// Pixels per image: 8x8, row by row, values 0 to 16.\n\
         pub const N_PIXELS: usize = 64;\n\
         /// Classes: the digits 0 to 9.\n\
         pub const N_CLASSES: usize = 10;\n\
         /// The CRC-32 the model.kiln the host logits were computed with stores in its last four\n\
         /// bytes (over all the bytes before them): it identifies the model.\n\
         pub const MODEL_CRC32: u32 = {:#010x};\n\n\
         /// One held-out image and what the host computed for it.\n\
         pub struct Sample {{\n\
         \x20   /// Its row in digits.csv.gz, counted from 0.\n\
         \x20   pub row_idx: u32,\n\
         \x20   pub label: u8,\n\
         \x20   pub pixels: [u8; N_PIXELS],\n\
         \x20   /// The int8 logits of kiln-runtime on the host.\n\
         \x20   pub host_logits: [i8; N_CLASSES],\n\
         \x20   /// Their argmax (the first maximum wins a tie).\n\
         \x20   pub host_prediction: u8,\n\
         }}\n\n\
         /// The pixels keep the image's 8x8 shape.\n\
         #[rustfmt::skip]\n\
         pub static SAMPLES: [Sample; N_CLASSES] = [\n{}];\n",
        // The blob loaded, so it holds at least a header and its CRC.
        kiln_runtime::crc32::crc32(&blob[..blob.len() - 4]),
        entries.concat()
    ))
}
