//! `kiln sim`: any baked model on a virtual board. It writes the model and the first samples of
//! a data set into Kiln's QEMU firmware (`examples/firmware-qemu`), cross-builds it for the
//! core, boots it in QEMU with Kiln's instruction-count plugin, and reports exact instructions
//! per inference, flash, RAM, peak stack and whether the device's int8 outputs equal the host's
//! (a CRC-32 over every output of every sample, as `cargo xtask firmware` checks).

use super::args::SimArgs;
use super::config::data_config;
use crate::data::{self, Targets};
use crate::nn::Loss;
use crate::quant::host;
use crate::quant::rust_source::{self, SourceInfo};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Kiln's firmware crate in the checkout this `kiln` was built from.
const FIRMWARE_CRATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/firmware-qemu");

/// One core's virtual board: the QEMU machine, the Rust target and the firmware's memory map.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// The `--core` name.
    pub core: &'static str,
    /// The firmware's board feature (`board-<name>`) and memory map (`memory/<name>.x`).
    pub name: &'static str,
    pub machine: &'static str,
    pub target: &'static str,
    pub qemu: &'static str,
    /// The Debian package with `qemu`.
    pub qemu_package: &'static str,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    /// The instructions of an empty bench_start/bench_stop pair, in every region's count.
    pub marker_insns: u64,
}

/// The board `kiln sim` uses for each core: the largest memory map QEMU 7.2 offers for it.
pub const BOARDS: [Board; 5] = [
    Board {
        core: "cortex-m0",
        name: "microbit",
        machine: "microbit",
        target: "thumbv6m-none-eabi",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        flash_bytes: 256 << 10,
        ram_bytes: 16 << 10,
        marker_insns: 5,
    },
    Board {
        core: "cortex-m3",
        name: "mps2-an385",
        machine: "mps2-an385",
        target: "thumbv7m-none-eabi",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        flash_bytes: 4 << 20,
        ram_bytes: 4 << 20,
        marker_insns: 5,
    },
    Board {
        core: "cortex-m4f",
        name: "mps2-an386",
        machine: "mps2-an386",
        target: "thumbv7em-none-eabihf",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        flash_bytes: 4 << 20,
        ram_bytes: 4 << 20,
        marker_insns: 5,
    },
    Board {
        core: "cortex-m7",
        name: "mps2-an500",
        machine: "mps2-an500",
        target: "thumbv7em-none-eabihf",
        qemu: "qemu-system-arm",
        qemu_package: "qemu-system-arm",
        flash_bytes: 4 << 20,
        ram_bytes: 4 << 20,
        marker_insns: 5,
    },
    Board {
        core: "rv32imc",
        name: "sifive-e",
        machine: "sifive_e",
        target: "riscv32imc-unknown-none-elf",
        qemu: "qemu-system-riscv32",
        qemu_package: "qemu-system-misc",
        flash_bytes: 4 << 20,
        ram_bytes: 16 << 10,
        marker_insns: 4,
    },
];

/// The board for a `--core` name, case-insensitive.
pub fn board_for(core: &str) -> Option<&'static Board> {
    BOARDS
        .iter()
        .find(|b| b.core.eq_ignore_ascii_case(core.trim()))
}

/// The model does not fit the core's board: the answer is "no", with the figures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DoesNotFit(pub String);

/// The device's outputs differ from the host's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeviceDisagrees(pub String);

/// A tool `kiln sim` needs is missing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolMissing(pub String);

/// What one simulation measured.
#[derive(Debug, serde::Serialize)]
pub struct SimReport {
    pub command: &'static str,
    pub blob: PathBuf,
    pub core: &'static str,
    pub qemu_machine: &'static str,
    pub samples: usize,
    pub macs: u64,
    /// One `Model::run` call (raw i32 values to int8 outputs), exact, mean over the samples.
    pub insns_per_inference: f64,
    pub insns_per_mac: f64,
    /// `Model::quantize_input` alone (raw values to the int8 input tensor), mean.
    pub input_stage_insns: f64,
    pub flash_bytes: u64,
    pub blob_bytes: u64,
    pub sample_bytes: u64,
    /// `.data` + `.bss`: the model's buffers (raw input, scratch, outputs) and the firmware's.
    pub static_ram_bytes: u64,
    /// The largest stack of one `Model::run` call, by painting.
    pub inference_stack_bytes: u64,
    /// The firmware's whole stack peak (loading, inference, checksum).
    pub peak_stack_bytes: u64,
    pub device_crc32: String,
    pub host_crc32: String,
    pub outputs_match: bool,
}

pub fn sim(args: &SimArgs) -> Result<()> {
    let board = board_for(&args.core).ok_or_else(|| {
        super::config::UsageError(format!(
            "--core: unknown core '{}'; expected one of {}",
            args.core,
            BOARDS.map(|b| b.core).join(", ")
        ))
    })?;
    let blob = std::fs::read(&args.blob).map_err(|e| host::BlobError {
        path: args.blob.clone(),
        detail: format!("cannot read the model blob: {e}"),
    })?;
    let model = kiln_runtime::Model::from_bytes(&blob).map_err(|e| host::BlobError {
        path: args.blob.clone(),
        detail: format!("the kiln runtime refuses the model blob: {e}"),
    })?;
    let (spec, options) = data_config(&args.data, Loss::CrossEntropy)?;
    let split = data::load(&spec, &options)?;
    let first: Vec<usize> = (0..args.samples.min(split.test.n_samples())).collect();
    let samples = split.test.subset(&first);
    let (n_inputs, n_outputs) = (model.n_inputs(), model.n_outputs());
    if samples.n_features != n_inputs {
        return Err(host::BlobError {
            path: args.blob.clone(),
            detail: format!(
                "the model takes {n_inputs} inputs, but {spec} has {} features",
                samples.n_features
            ),
        }
        .into());
    }
    if let Some(detail) = super::eval::regression_misfit(&spec, &samples, n_inputs, n_outputs) {
        return Err(host::BlobError {
            path: args.blob.clone(),
            detail,
        }
        .into());
    }
    let raw = host::raw_inputs(
        &samples,
        &format!("{spec} (test set)"),
        model.input_frac_bits(),
    )?;
    let (run, _) =
        host::run_widened(&model, &raw, n_inputs, n_outputs).map_err(|e| host::BlobError {
            path: args.blob.clone(),
            detail: format!("the kiln runtime failed: {e}"),
        })?;
    let int16 = model.activation_bits() == 16;
    let n_samples = samples.n_samples();
    let sample_bytes = (n_samples * n_inputs * 4) as u64;
    if blob.len() as u64 + sample_bytes > board.flash_bytes {
        return Err(DoesNotFit(format!(
            "{}: does not fit {} ({}, {} KiB of flash): the blob takes {} B and {} samples {} B",
            args.blob.display(),
            board.core,
            board.machine,
            board.flash_bytes >> 10,
            blob.len(),
            n_samples,
            sample_bytes
        ))
        .into());
    }

    let crate_dir = args
        .firmware_crate
        .clone()
        .unwrap_or_else(|| PathBuf::from(FIRMWARE_CRATE));
    let crate_dir = crate_dir.canonicalize().unwrap_or(crate_dir);
    check_tools(board, &crate_dir)?;
    let mut host_crc = kiln_runtime::crc32::Crc32::new();
    // The firmware's CRC: each int8 logit as a byte, each int16 one as two little-endian bytes.
    let logit_bytes: Vec<u8> = if int16 {
        run.logits
            .iter()
            .flat_map(|&l| (l as i16).to_le_bytes())
            .collect()
    } else {
        run.logits.iter().map(|&l| l as i8 as u8).collect()
    };
    host_crc.update(&logit_bytes);
    let host_crc32 = host_crc.finish();
    let (labels, classifier, host_correct) = match &samples.targets {
        Targets::Classes { labels, .. } => {
            let labels: Vec<u8> = labels.iter().map(|&l| l.min(255) as u8).collect();
            let correct = run
                .predictions
                .iter()
                .zip(&labels)
                .filter(|(p, l)| **p == usize::from(**l))
                .count();
            (labels, true, correct)
        }
        Targets::Regression { .. } => (vec![0u8; n_samples], false, 0),
    };
    let generated = GeneratedFiles {
        model_rs: rust_source::rust_source(
            &blob,
            SourceInfo {
                n_inputs,
                n_outputs,
                scratch_len: model.scratch_len(),
                fast_scratch_len: model.fast_scratch_len(),
                description: &format!("{} (kiln sim)", args.blob.display()),
                layer_kinds: model.layer_kinds(),
            },
        ),
        images_rs: images_source(
            &format!("{}, {n_samples} samples of {spec}", args.blob.display()),
            &model,
            classifier,
            &labels,
            // The device takes HWC, as a product passes it to `Model::run`.
            &host::device_order(&model, &raw, n_inputs),
        ),
        expected_rs: format!(
            "//! The host's results on the same samples, by `kiln sim`. Do not edit.\n\n\
             pub const HOST_CRC32: u32 = {host_crc32:#010x};\n\
             pub const HOST_CORRECT: u32 = {host_correct};\n"
        ),
    };
    generated.write(&crate_dir.join("src/generated"))?;
    let elf = build(
        board,
        &crate_dir,
        (
            int16,
            (0..model.n_layers()).any(|k| model.layer(k).is_some_and(|l| l.in_place)),
        ),
        args.output.quiet || args.output.json,
    )?;
    let plugin = build_plugin(&crate_dir)?;
    let output = run_qemu(board, &elf, &plugin)?;

    let counts = region_counts(&output, board.marker_insns);
    let (input_stage, inference) = split_regions(&counts, n_samples).with_context(|| {
        format!(
            "QEMU did not report two counted regions per sample; its output:\n{}",
            output.trim()
        )
    })?;
    let field = |key: &str| result_field(&output, key).map(str::to_owned);
    let device_crc32 = field("crc32").unwrap_or_else(|| "none".to_owned());
    let outputs_match = field("status").as_deref() == Some("match");
    let elf_bytes =
        std::fs::read(&elf).with_context(|| format!("{}: cannot read", elf.display()))?;
    let memory = elf_memory(&elf_bytes)
        .with_context(|| format!("{}: not a 32-bit little-endian ELF", elf.display()))?;
    let macs = model_macs(&model);
    let report = SimReport {
        command: "sim",
        blob: args.blob.clone(),
        core: board.core,
        qemu_machine: board.machine,
        samples: n_samples,
        macs,
        insns_per_inference: inference,
        insns_per_mac: inference / macs.max(1) as f64,
        input_stage_insns: input_stage,
        flash_bytes: memory.flash,
        blob_bytes: blob.len() as u64,
        sample_bytes,
        static_ram_bytes: memory.ram,
        inference_stack_bytes: field("inference_stack")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        peak_stack_bytes: field("stack_peak")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        device_crc32,
        host_crc32: format!("{host_crc32:#010x}"),
        outputs_match,
    };
    print_report(&report, args)?;
    if !outputs_match {
        return Err(DeviceDisagrees(format!(
            "{}: the device's outputs differ from the host's on {} (CRC-32 {} against {}); QEMU printed:\n{}",
            args.blob.display(),
            board.core,
            report.device_crc32,
            report.host_crc32,
            output.trim()
        ))
        .into());
    }
    Ok(())
}

fn print_report(report: &SimReport, args: &SimArgs) -> Result<()> {
    if args.output.json {
        crate::outln!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    crate::outln!(
        "kiln sim {} on {} (QEMU {})",
        report.blob.display(),
        report.core,
        report.qemu_machine
    );
    crate::outln!(
        "  {:<18} {:.0} per inference (Model::run, exact, mean of {} samples), {:.3} per MAC ({} MACs)",
        "instructions",
        report.insns_per_inference,
        report.samples,
        report.insns_per_mac,
        report.macs
    );
    crate::outln!(
        "  {:<18} {:.0} (Model::quantize_input alone)",
        "input stage",
        report.input_stage_insns
    );
    crate::outln!(
        "  {:<18} {} B firmware (blob {} B, test samples {} B, the rest code)",
        "flash",
        report.flash_bytes,
        report.blob_bytes,
        report.sample_bytes
    );
    crate::outln!(
        "  {:<18} {} B static (buffers and firmware) + {} B peak stack ({} B in one inference)",
        "RAM",
        report.static_ram_bytes,
        report.peak_stack_bytes,
        report.inference_stack_bytes
    );
    crate::outln!(
        "  {:<18} {} (device CRC-32 {}, host {})",
        "outputs = host",
        if report.outputs_match { "yes" } else { "NO" },
        report.device_crc32,
        report.host_crc32
    );
    Ok(())
}

/// MACs of one inference: dense `n_in * n_out`, convolutions a kernel's taps per output value.
fn model_macs(model: &kiln_runtime::Model<'_>) -> u64 {
    use kiln_runtime::LayerKind;
    let layer_macs = |layer: kiln_runtime::LayerInfo| {
        let [oh, ow, oc] = layer.output_shape.map(|d| d as u64);
        let taps = (layer.kernel[0] * layer.kernel[1]) as u64;
        match layer.kind {
            LayerKind::Dense => (layer.n_inputs * layer.n_outputs) as u64,
            LayerKind::Conv2d => oh * ow * oc * taps * layer.input_shape[2] as u64,
            LayerKind::DepthwiseConv2d => oh * ow * oc * taps,
            LayerKind::MaxPool2d | LayerKind::AvgPool2d | LayerKind::Add => 0,
        }
    };
    (0..model.n_layers())
        .filter_map(|idx| model.layer(idx))
        .map(layer_macs)
        .sum()
}

struct GeneratedFiles {
    model_rs: String,
    images_rs: String,
    expected_rs: String,
}

impl GeneratedFiles {
    /// Writes the three files the firmware includes (unchanged files are left alone, so cargo
    /// rebuilds only what changed).
    fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        for (name, text) in [
            ("model.rs", &self.model_rs),
            ("images.rs", &self.images_rs),
            ("expected.rs", &self.expected_rs),
        ] {
            let path = dir.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                crate::fsutil::write_atomic(&path, text.as_bytes())
                    .with_context(|| format!("{}: cannot write", path.display()))?;
            }
        }
        Ok(())
    }
}

/// `images.rs` with the samples as raw i32 rows (the device's input, whatever the data's type).
fn images_source(
    description: &str,
    model: &kiln_runtime::Model<'_>,
    classifier: bool,
    labels: &[u8],
    raw: &[i32],
) -> String {
    let n_inputs = model.n_inputs();
    let mut text = format!(
        "//! The samples for the firmware, written by `kiln sim`. Do not edit.\n\n\
         pub const DESCRIPTION: &str = {description:?};\n\
         pub const LAYER_KINDS: u8 = {};\n\
         pub const N_INPUTS: usize = {n_inputs};\n\
         pub const N_OUTPUTS: usize = {};\n\
         pub const SCRATCH_LEN: usize = {};\n\
         pub const CLASSIFIER: bool = {classifier};\n\
         pub const RAW_SAMPLES: bool = true;\n\
         pub const N_PIXELS: usize = 0;\n\
         #[cfg_attr(feature = \"tiny\", link_section = \".kiln_test_data\")]\n\
         pub static LABELS: [u8; {}] = {labels:?};\n\
         pub static PIXELS_RLE: [u8; 0] = [];\n\
         pub static RAW_INPUTS: [[i32; N_INPUTS]; {}] = [",
        model.layer_kinds(),
        model.n_outputs(),
        model.fast_scratch_len(),
        labels.len(),
        labels.len(),
    );
    for row in raw.chunks_exact(n_inputs.max(1)) {
        text.push_str("\n    [");
        for (idx, value) in row.iter().enumerate() {
            text.push_str(if idx % 12 == 0 { "\n        " } else { " " });
            text.push_str(&format!("{value},"));
        }
        text.push_str("\n    ],");
    }
    text.push_str("\n];\n");
    text
}

/// Whether `program` is on the PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Every tool the run needs, each missing one named with how to install it.
fn check_tools(board: &Board, crate_dir: &Path) -> Result<()> {
    if !crate_dir.join("Cargo.toml").is_file() {
        return Err(ToolMissing(format!(
            "kiln sim needs Kiln's firmware crate (examples/firmware-qemu in a Kiln checkout), \
             not found at {}: pass --firmware-crate DIR",
            crate_dir.display()
        ))
        .into());
    }
    if !on_path(board.qemu) {
        return Err(ToolMissing(format!(
            "kiln sim --core {} needs {}: install it with `apt install {}` (Debian, Ubuntu)",
            board.core, board.qemu, board.qemu_package
        ))
        .into());
    }
    if !on_path("cc") {
        return Err(ToolMissing(
            "kiln sim needs a C compiler (`cc`) for its QEMU instruction-count plugin: \
             install it with `apt install gcc`"
                .to_owned(),
        )
        .into());
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let installed = sysroot.is_some_and(|root| {
        root.join("lib/rustlib")
            .join(board.target)
            .join("lib")
            .is_dir()
    });
    if !installed {
        return Err(ToolMissing(format!(
            "kiln sim --core {} needs the Rust target {}: install it with `rustup target add {}`",
            board.core, board.target, board.target
        ))
        .into());
    }
    Ok(())
}

/// The target directory the firmware builds in: the one `cargo xtask firmware` uses, so the
/// two share their builds.
fn firmware_target_dir(crate_dir: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("../../target"))
        .join("firmware")
}

/// Cross-builds the lean firmware (load and run, what a product links) that times whole runs;
/// with `int16`, the firmware of an int16 model (its `_i16` entry points); with `in_place`, the
/// runtime's `in-place` feature (a blob whose plan computes layers in place, version 6 or 7).
fn build(
    board: &Board,
    crate_dir: &Path,
    (int16, in_place): (bool, bool),
    quiet: bool,
) -> Result<PathBuf> {
    let target_dir = firmware_target_dir(crate_dir);
    let features = format!(
        "board-{},lean,whole-run{}{}",
        board.name,
        if int16 { ",int16" } else { "" },
        if in_place { ",in-place" } else { "" }
    );
    if !quiet {
        eprintln!(
            "kiln sim: cargo build --release --target {} --features {features} (in {})",
            board.target,
            crate_dir.display()
        );
    }
    // The crate's own .cargo/config.toml (its linker scripts) applies only in its directory.
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(crate_dir)
        .stdin(Stdio::null())
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("KILN_KERNEL")
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            board.target,
            "--features",
        ])
        .arg(&features)
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if let Some(line) = stderr
            .lines()
            .find(|l| l.contains("overflowed by") || l.contains("will not fit in region"))
        {
            return Err(DoesNotFit(format!(
                "the firmware does not fit {} ({}: {} KiB of flash, {} KiB of RAM): {}",
                board.core,
                board.machine,
                board.flash_bytes >> 10,
                board.ram_bytes >> 10,
                line.trim().trim_start_matches("rust-lld: error: ")
            ))
            .into());
        }
        bail!(
            "the firmware for {} does not build:\n{}",
            board.core,
            stderr.trim()
        );
    }
    Ok(target_dir
        .join(board.target)
        .join("release/kiln-firmware-qemu"))
}

/// Builds the instruction-count plugin from its source in the firmware crate, once.
fn build_plugin(crate_dir: &Path) -> Result<PathBuf> {
    let source = crate_dir.join("qemu-plugin/kiln_insncount.c");
    let out = firmware_target_dir(crate_dir).join("libkiln_insncount.so");
    let stale = match (std::fs::metadata(&source), std::fs::metadata(&out)) {
        (Ok(src), Ok(lib)) => src.modified().ok() > lib.modified().ok(),
        (Ok(_), Err(_)) => true,
        (Err(e), _) => bail!("{}: {e}", source.display()),
    };
    if stale {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let status = Command::new("cc")
            .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o"])
            .arg(&out)
            .arg(&source)
            .status()
            .context("cannot run cc")?;
        if !status.success() {
            bail!("{}: the QEMU plugin does not compile", source.display());
        }
    }
    Ok(out)
}

/// Boots the firmware with the plugin; returns everything QEMU and the firmware printed.
fn run_qemu(board: &Board, elf: &Path, plugin: &Path) -> Result<String> {
    let mut command = Command::new(board.qemu);
    command.args(["-machine", board.machine, "-nographic"]);
    if board.qemu == "qemu-system-riscv32" {
        command.args(["-bios", "none"]);
    }
    let output = command
        .args([
            "-semihosting-config",
            "enable=on,target=native",
            "-icount",
            "shift=0",
        ])
        .arg("-plugin")
        .arg(plugin)
        .args(["-d", "plugin", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", board.qemu))?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Every region's count, less the markers' own instructions.
fn region_counts(output: &str, marker_insns: u64) -> Vec<u64> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("insncount: region ")?;
            let (_, count) = rest.split_once(": ")?;
            count.strip_suffix(" instructions")?.parse::<u64>().ok()
        })
        .map(|count| count.saturating_sub(marker_insns))
        .collect()
}

/// The means of the input stage (even regions) and the whole run (odd regions) over `n`
/// samples; `None` unless there are exactly two regions per sample.
fn split_regions(counts: &[u64], n: usize) -> Option<(f64, f64)> {
    if n == 0 || counts.len() != 2 * n {
        return None;
    }
    let mean = |parity: usize| counts.iter().skip(parity).step_by(2).sum::<u64>() as f64 / n as f64;
    Some((mean(0), mean(1)))
}

/// `key=value` from the firmware's KILN-RESULT line.
fn result_field<'a>(output: &'a str, key: &str) -> Option<&'a str> {
    let line = output.lines().find(|l| l.starts_with("KILN-RESULT"))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
}

/// Flash and static RAM of a firmware image, from its section headers.
struct ElfMemory {
    /// Every allocated section with contents (code, constants, `.data`'s initial values).
    flash: u64,
    /// Every allocated writable section (`.data`, `.bss`), but a reserved stack or heap.
    ram: u64,
}

/// Reads an ELF32 little-endian image's section headers; `None` if it is not one.
fn elf_memory(bytes: &[u8]) -> Option<ElfMemory> {
    const SHF_WRITE: u32 = 1;
    const SHF_ALLOC: u32 = 2;
    const SHT_NOBITS: u32 = 8;
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    if bytes.get(..6)? != b"\x7fELF\x01\x01" {
        return None;
    }
    let (sh_off, sh_size, sh_num, sh_strndx) = (
        u32_at(0x20)? as usize,
        usize::from(u16_at(0x2e)?),
        usize::from(u16_at(0x30)?),
        usize::from(u16_at(0x32)?),
    );
    let header = |idx: usize| sh_off.checked_add(idx.checked_mul(sh_size)?);
    let names_at = u32_at(header(sh_strndx)? + 16)? as usize;
    let name = |offset: u32| -> Option<&[u8]> {
        let start = names_at.checked_add(offset as usize)?;
        let rest = bytes.get(start..)?;
        rest.split(|&b| b == 0).next()
    };
    let mut memory = ElfMemory { flash: 0, ram: 0 };
    for idx in 0..sh_num {
        let at = header(idx)?;
        let (name_off, kind, flags, size) = (
            u32_at(at)?,
            u32_at(at + 4)?,
            u32_at(at + 8)?,
            u32_at(at + 20)?,
        );
        if flags & SHF_ALLOC == 0 || matches!(name(name_off)?, b".stack" | b".heap") {
            continue;
        }
        if kind != SHT_NOBITS {
            memory.flash += u64::from(size);
        }
        if flags & SHF_WRITE != 0 {
            memory.ram += u64::from(size);
        }
    }
    Some(memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_pair_up_per_sample() {
        let output = "noise\ninsncount: region 0: 105 instructions\n\
                      insncount: region 1: 1005 instructions\n\
                      insncount: region 2: 115 instructions\n\
                      insncount: region 3: 1015 instructions\ninsncount: total 9 instructions\n";
        let counts = region_counts(output, 5);
        assert_eq!(counts, [100, 1000, 110, 1010]);
        assert_eq!(split_regions(&counts, 2), Some((105.0, 1005.0)));
        assert_eq!(
            split_regions(&counts, 3),
            None,
            "a missing sample is an error"
        );
        assert_eq!(split_regions(&[], 0), None);
    }

    #[test]
    fn result_fields_come_from_the_result_line() {
        let output = "x crc32=1\nKILN-RESULT images=2 crc32=0x12 status=match\n";
        assert_eq!(result_field(output, "crc32"), Some("0x12"));
        assert_eq!(result_field(output, "status"), Some("match"));
        assert_eq!(result_field(output, "stack"), None);
    }

    #[test]
    fn every_core_has_a_board_and_names_are_case_blind() {
        for (name, _) in super::super::device_figures::CORE_NAMES {
            assert!(board_for(name).is_some(), "{name}");
        }
        assert_eq!(
            board_for("Cortex-M4F").map(|b| b.machine),
            Some("mps2-an386")
        );
        assert!(board_for("cortex-m33").is_none());
    }

    #[test]
    fn elf_sections_give_flash_and_ram() {
        // A hand-made ELF32: null, .text (alloc+exec, 100 B), .data (alloc+write, 8 B),
        // .bss (alloc+write, nobits, 64 B), .stack (alloc+write, nobits, 4096 B), .shstrtab.
        let names = b"\0.text\0.data\0.bss\0.stack\0.shstrtab\0";
        let mut elf = vec![0u8; 0x34];
        elf[..6].copy_from_slice(b"\x7fELF\x01\x01");
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let sh_off = elf.len();
        let sections: [(u32, u32, u32, u32); 6] = [
            (0, 0, 0, 0),
            (1, 1, 2 | 4, 100),
            (7, 1, 2 | 1, 8),
            (13, 8, 2 | 1, 64),
            (18, 8, 2 | 1, 4096),
            (25, 3, 0, names.len() as u32),
        ];
        for (name, kind, flags, size) in sections {
            let mut header = [0u8; 40];
            header[0..4].copy_from_slice(&name.to_le_bytes());
            header[4..8].copy_from_slice(&kind.to_le_bytes());
            header[8..12].copy_from_slice(&flags.to_le_bytes());
            let offset = if name == 25 { names_at as u32 } else { 0 };
            header[16..20].copy_from_slice(&offset.to_le_bytes());
            header[20..24].copy_from_slice(&size.to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf[0x20..0x24].copy_from_slice(&(sh_off as u32).to_le_bytes());
        elf[0x2e..0x30].copy_from_slice(&40u16.to_le_bytes());
        elf[0x30..0x32].copy_from_slice(&6u16.to_le_bytes());
        elf[0x32..0x34].copy_from_slice(&5u16.to_le_bytes());
        let memory = elf_memory(&elf).unwrap();
        assert_eq!((memory.flash, memory.ram), (108, 72));
        assert!(
            elf_memory(b"\x7fELF\x02\x01").is_none(),
            "64-bit is refused"
        );
        assert!(
            elf_memory(&elf[..0x40]).is_none(),
            "truncated headers are refused"
        );
    }
}
