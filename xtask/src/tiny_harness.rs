//! `cargo xtask tiny-harness`: MLPerf Tiny's submitter API (examples/mlperf-tiny-harness) in
//! QEMU, driven over its emulated UART the way the official runner (mlcommons/tiny
//! `benchmark/runner`: `device_under_test.py`, `serial_device.py`, `script.py`) drives a board:
//! `name%`, `profile%`, `db load N%`, `db HEX%` in chunks of 31 bytes, `infer N W%`,
//! `results%`, each reply read up to its `m-ready` line.
//!
//! It trains a small digits CNN (or takes `--model`), bakes it, writes the harness's
//! `src/generated/`, builds it for thumbv7em-none-eabihf and boots it on `mps2-an386`, twice:
//! raw pixel bytes in with softmax scores out (what the runner sends and wants for an image
//! model), then the int8 input tensor in with the dequantized logits out. Every sample's
//! `m-results` must equal kiln-runtime's on the host, and every malformed command must get
//! the reference implementation's error reply. Any mismatch fails with one line.

use crate::ci::workspace_root;
use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const TARGET: &str = "thumbv7em-none-eabihf";
const MACHINE: &str = "mps2-an386";
/// The runner's chunk: `DUT._max_bytes`, 31 bytes (62 hex digits) per `db` command.
const DB_CHUNK: usize = 31;
const LAYERS: &str = "conv3x3:8,maxpool2,dense:16";
/// Enough for a digits CNN that mostly answers right (0.01 s an epoch), so the argmax check
/// compares real decisions.
const EPOCHS: &str = "20";

struct Options {
    model: Option<PathBuf>,
    data: Option<String>,
    model_version: String,
    samples: usize,
    out: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options {
            model: None,
            data: None,
            model_version: "ic01".into(),
            samples: 16,
            out: target_dir().join("tiny-harness-out"),
        };
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let mut value = || {
                iter.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--model" => options.model = Some(PathBuf::from(value()?)),
                "--data" => options.data = Some(value()?),
                "--model-version" => options.model_version = value()?,
                "--samples" => options.samples = value()?.parse().context("--samples N")?,
                "--out" => options.out = PathBuf::from(value()?),
                other => bail!(
                    "cargo xtask tiny-harness: unknown flag {other}; expected --model MODEL.json \
                     --data SPEC, --model-version ID, --samples N or --out DIR"
                ),
            }
        }
        ensure!(
            options.model.is_some() == options.data.is_some(),
            "--model and --data go together (bake calibrates on --data)"
        );
        ensure!(options.samples > 0, "--samples must be at least 1");
        Ok(options)
    }
}

/// The two builds: what the `db` bytes are and what `m-results` holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// Raw bytes in (pixels), softmax probabilities out.
    RawSoftmax,
    /// The int8 input tensor in, dequantized logits out.
    Int8Logits,
}

impl Variant {
    fn input(self) -> &'static str {
        match self {
            Variant::RawSoftmax => "RawBytes",
            Variant::Int8Logits => "Int8",
        }
    }

    fn scores(self) -> &'static str {
        match self {
            Variant::RawSoftmax => "Softmax",
            Variant::Int8Logits => "Logits",
        }
    }
}

/// `cargo xtask tiny-harness [--model MODEL.json --data SPEC] [--model-version ID]
/// [--samples N] [--out DIR]`.
pub fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    std::fs::create_dir_all(&options.out)?;
    let (model_json, data, samples) = match (&options.model, &options.data) {
        (Some(model), Some(data)) => (model.clone(), data.clone(), Vec::new()),
        _ => train_digits(&options.out)?,
    };
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let rust_source = options.out.join("model.rs");
    let blob_path = options.out.join("model.kiln");
    for (form, path) in [("--rust", &rust_source), ("--blob", &blob_path)] {
        crate::firmware::kiln(&["bake", &s(&model_json), "--data", &data, form, &s(path)])?;
    }
    let blob = std::fs::read(&blob_path)?;
    let model = kiln_runtime::Model::from_bytes(&blob)
        .map_err(|e| anyhow::anyhow!("{}: does not load: {e}", blob_path.display()))?;
    ensure!(
        model.activation_bits() == 8,
        "the harness runs int8 models; this one has int16 activations"
    );
    // Without held-out rows (a --model of unknown data): deterministic bytes of its input size.
    let samples = if samples.is_empty() {
        let mut state = 0x2545_f491u32;
        (0..options.samples)
            .map(|_| Sample {
                pixels: (0..model.n_inputs())
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        (state >> 24) as u8
                    })
                    .collect(),
                label: None,
            })
            .collect()
    } else {
        samples
            .into_iter()
            .take(options.samples)
            .collect::<Vec<_>>()
    };

    let mut summaries = Vec::new();
    for variant in [Variant::RawSoftmax, Variant::Int8Logits] {
        write_generated(&rust_source, &options.model_version, variant)?;
        let elf = build()?;
        summaries.push(session(&elf, &model, &samples, &options, variant)?);
    }
    println!("\ncargo xtask tiny-harness: MLPerf Tiny's protocol over QEMU's UART ({MACHINE})\n");
    for line in summaries {
        println!("{line}");
    }
    Ok(())
}

/// One input as the runner's data set file holds it (raw bytes), with its class if known.
struct Sample {
    pixels: Vec<u8>,
    label: Option<u8>,
}

/// Trains the digits CNN on three quarters of the bundled UCI digits; returns the model, the
/// `--data` to bake with and the held-out rows' pixels.
fn train_digits(out: &Path) -> Result<(PathBuf, String, Vec<Sample>)> {
    let root = workspace_root();
    let path = root.join("trainer/data/digits.csv.gz");
    let file =
        std::fs::File::open(&path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .with_context(|| format!("{}: not gzip text", path.display()))?;
    let (mut train, mut held_out) = (String::new(), Vec::new());
    for (idx, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if idx % 4 == 3 {
            let values: Vec<u8> = line
                .split(',')
                .map(|v| v.trim().parse::<u8>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("digits.csv.gz: row {idx} is not bytes"))?;
            let (&label, pixels) = values.split_last().context("empty row")?;
            held_out.push(Sample {
                pixels: pixels.to_vec(),
                label: Some(label),
            });
        } else {
            train.push_str(line);
            train.push('\n');
        }
    }
    let train_csv = out.join("train.csv");
    std::fs::write(&train_csv, train)?;
    let data = format!("csv:{}", train_csv.display());
    let model_dir = out.join("model");
    let model_dir_arg = model_dir.to_string_lossy().into_owned();
    crate::firmware::kiln(&[
        "train",
        "--data",
        &data,
        "--label-column",
        "last",
        "--input-shape",
        "8x8x1",
        "--layers",
        LAYERS,
        "--epochs",
        EPOCHS,
        "-o",
        &model_dir_arg,
        "--quiet",
        "--no-plot",
    ])?;
    Ok((model_dir.join("model.json"), data, held_out))
}

fn crate_dir() -> PathBuf {
    workspace_root().join("examples/mlperf-tiny-harness")
}

fn write_generated(rust_source: &Path, model_version: &str, variant: Variant) -> Result<()> {
    let generated = crate_dir().join("src/generated");
    std::fs::create_dir_all(&generated)?;
    let write_if_changed = |name: &str, text: &str| -> Result<()> {
        let path = generated.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        Ok(())
    };
    write_if_changed("model.rs", &std::fs::read_to_string(rust_source)?)?;
    write_if_changed(
        "harness.rs",
        &format!(
            "//! Written by `cargo xtask tiny-harness`. Do not edit.\n\n\
             /// The MLPerf Tiny model id `profile` reports (`m-model-[..]`): the runner picks its\n\
             /// test and data set by it (kws01, vww01, ic01, ad01).\n\
             pub const MODEL_VERSION: &str = {model_version:?};\n\
             pub const INPUT: crate::InputFormat = crate::InputFormat::{};\n\
             pub const SCORES: crate::Scores = crate::Scores::{};\n",
            variant.input(),
            variant.scores()
        ),
    )
}

/// `$CARGO_TARGET_DIR`, or the workspace's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn build() -> Result<PathBuf> {
    let target_dir = target_dir().join("tiny-harness");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo build --release --target {TARGET}   (in examples/mlperf-tiny-harness)");
    let status = Command::new(cargo)
        .current_dir(crate_dir())
        .stdin(Stdio::null())
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--release", "--quiet", "--target", TARGET])
        .status()
        .context("cannot run cargo")?;
    ensure!(
        status.success(),
        "the harness does not build (a reachable panic shows as an undefined \
         `kiln_tiny_harness_has_a_reachable_panic`)"
    );
    Ok(target_dir
        .join(TARGET)
        .join("release/kiln-mlperf-tiny-harness"))
}

/// QEMU with the harness; killed and reaped when dropped.
struct Dut {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    transcript: Vec<String>,
}

impl Drop for Dut {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dut {
    fn boot(elf: &Path) -> Result<Dut> {
        // -icount shift=0: one instruction is one virtual nanosecond, so SysTick (and the
        // m-lap-us timestamps) count instructions, the same on every host.
        let mut child = Command::new("qemu-system-arm")
            .args(["-machine", MACHINE, "-nographic", "-monitor", "none"])
            .args(["-serial", "stdio", "-icount", "shift=0", "-kernel"])
            .arg(elf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot run qemu-system-arm (apt-get install qemu-system-arm)")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, lines) = std::sync::mpsc::channel();
        // Lines as the runner's read loop cuts them: at '\n', without '\r' and NUL.
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = Vec::new();
            while let Ok(n) = reader.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                line.retain(|&c| !matches!(c, b'\r' | b'\n' | 0));
                if sender
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
                line.clear();
            }
        });
        let mut dut = Dut {
            child,
            stdin,
            lines,
            transcript: Vec::new(),
        };
        let boot = dut.reply("(boot)", Duration::from_secs(30))?;
        ensure!(
            boot.iter().any(|l| l == "m-init-done"),
            "the harness did not print m-init-done at boot: {boot:?}"
        );
        Ok(dut)
    }

    /// The lines up to and including `m-ready`.
    fn reply(&mut self, command: &str, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.transcript.push(format!("< {line}"));
                    let ready = line.contains("m-ready");
                    if !line.is_empty() {
                        lines.push(line);
                    }
                    if ready {
                        return Ok(lines);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!("no m-ready within {timeout:?} after `{command}` (got {lines:?})")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("QEMU exited during `{command}` (got {lines:?})")
                }
            }
        }
    }

    /// Sends `command%` (the runner's `write_line` with delimiter '%') and reads the reply.
    fn send(&mut self, command: &str) -> Result<Vec<String>> {
        self.transcript.push(format!("> {command}%"));
        self.stdin.write_all(command.as_bytes())?;
        self.stdin.write_all(b"%")?;
        self.stdin.flush()?;
        self.reply(command, Duration::from_secs(60))
    }

    /// `send`, requiring a reply line that equals `expected`.
    fn expect(&mut self, command: &str, expected: &str) -> Result<Vec<String>> {
        let reply = self.send(command)?;
        ensure!(
            reply.iter().any(|l| l == expected),
            "`{command}%` replied {reply:?}, expected a line `{expected}`"
        );
        Ok(reply)
    }

    /// `DUT.load`: `db load N`, then 31 bytes per `db` command; the last reply says
    /// `m-load-done`.
    fn load(&mut self, bytes: &[u8]) -> Result<()> {
        self.expect(
            &format!("db load {}", bytes.len()),
            &format!("m-[Expecting {} bytes]", bytes.len()),
        )?;
        let chunks: Vec<&[u8]> = bytes.chunks(DB_CHUNK).collect();
        for (idx, chunk) in chunks.iter().enumerate() {
            let hex: String = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let reply = self.send(&format!("db {hex}"))?;
            let done = reply.iter().any(|l| l == "m-load-done");
            ensure!(
                done == (idx + 1 == chunks.len()),
                "`db` chunk {idx} of {}: m-load-done {} ({reply:?})",
                chunks.len(),
                if done { "too early" } else { "missing" }
            );
        }
        Ok(())
    }
}

/// The scores of an `m-results-[a,b,...]` line, and the line's list as printed.
fn results_of(reply: &[String]) -> Result<(Vec<f64>, String)> {
    let lines: Vec<&String> = reply
        .iter()
        .filter(|l| l.starts_with("m-results-["))
        .collect();
    let [line] = lines.as_slice() else {
        bail!("expected one m-results line, got {reply:?}");
    };
    let list = line
        .strip_prefix("m-results-[")
        .and_then(|l| l.strip_suffix(']'))
        .with_context(|| format!("malformed results line `{line}`"))?;
    let values = list
        .split(',')
        .map(|v| v.parse::<f64>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("results line `{line}`: not numbers"))?;
    Ok((values, list.to_owned()))
}

/// The `m-lap-us-N` values of a reply.
fn laps(reply: &[String]) -> Vec<u64> {
    reply
        .iter()
        .filter_map(|l| l.strip_prefix("m-lap-us-")?.parse().ok())
        .collect()
}

/// C's `%0.3f`: the exact value rounded to three decimals, ties to even (the product of an
/// f32 and 1000 is exact in f64).
fn c_fixed3(value: f32) -> String {
    let scaled = f64::from(value.abs()) * 1000.0;
    let floor = scaled.floor();
    let fraction = scaled - floor;
    let odd = floor % 2.0 == 1.0;
    let rounded = if fraction > 0.5 || (fraction == 0.5 && odd) {
        floor + 1.0
    } else {
        floor
    } as u64;
    let sign = if value.is_sign_negative() { "-" } else { "" };
    format!("{sign}{}.{:03}", rounded / 1000, rounded % 1000)
}

/// The first maximum (kiln's argmax and numpy's).
fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (idx, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = idx;
        }
    }
    best
}

/// What the host's kiln-runtime gives for one sample: the bytes the runner sends, the int8
/// logits and the scores the harness must print.
struct Expected {
    sent: Vec<u8>,
    logits: Vec<i8>,
    scores: Vec<f32>,
}

fn expected(model: &kiln_runtime::Model<'_>, pixels: &[u8], variant: Variant) -> Result<Expected> {
    let err = |e: kiln_runtime::Error| anyhow::anyhow!("host inference: {e}");
    let mut input = vec![0i8; model.n_inputs()];
    model.quantize_bytes(pixels, &mut input).map_err(err)?;
    let mut scratch = vec![0i8; model.scratch_len()];
    let mut logits = vec![0i8; model.n_outputs()];
    model
        .run_quantized(&input, &mut scratch, &mut logits)
        .map_err(err)?;
    // Model::dequantize's expression (feature f32-output): s_out * (q - zp_out) in f32.
    let scale = f32::from_bits(model.output_scale_bits());
    let zp = i16::from(model.output_zero_point());
    let mut scores: Vec<f32> = logits
        .iter()
        .map(|&q| scale * f32::from(i16::from(q) - zp))
        .collect();
    if variant == Variant::RawSoftmax {
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in scores.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in scores.iter_mut() {
            *v /= sum;
        }
    }
    let sent = match variant {
        Variant::RawSoftmax => pixels.to_vec(),
        Variant::Int8Logits => input.iter().map(|&q| q as u8).collect(),
    };
    Ok(Expected {
        sent,
        logits,
        scores,
    })
}

/// One QEMU session: identification, every sample, a timed run, the malformed commands.
fn session(
    elf: &Path,
    model: &kiln_runtime::Model<'_>,
    samples: &[Sample],
    options: &Options,
    variant: Variant,
) -> Result<String> {
    println!("$ qemu-system-arm -machine {MACHINE} -nographic -monitor none -serial stdio -icount shift=0 -kernel {}", elf.display());
    let mut dut = Dut::boot(elf)?;
    let outcome = converse(&mut dut, model, samples, options, variant);
    let log = options.out.join(format!("transcript-{variant:?}.txt"));
    std::fs::write(&log, dut.transcript.join("\n") + "\n")?;
    outcome.with_context(|| format!("{variant:?} (transcript: {})", log.display()))
}

fn converse(
    dut: &mut Dut,
    model: &kiln_runtime::Model<'_>,
    samples: &[Sample],
    options: &Options,
    variant: Variant,
) -> Result<String> {
    dut.expect("name", "m-name-dut-[kiln]")?;
    dut.expect("profile", "m-profile-[ULPMark for tinyML Firmware V0.0.1]")?;
    dut.expect("profile", &format!("m-model-[{}]", options.model_version))?;
    let stamps = laps(&dut.send("timestamp")?);
    ensure!(
        stamps.len() == 1,
        "`timestamp%`: one m-lap-us line expected"
    );

    let mut worst = 0.0f64;
    let mut agree_argmax = 0;
    let mut example = String::new();
    let (mut text_equal, mut n_scores, mut device_correct, mut host_correct) = (0, 0, 0, 0);
    for (idx, sample) in samples.iter().enumerate() {
        let want = expected(model, &sample.pixels, variant)?;
        dut.load(&want.sent)?;
        if idx == 0 {
            // `db print`: eight bytes per m-buffer- line, as loaded.
            let reply = dut.send("db print")?;
            let printed: String = reply
                .iter()
                .filter_map(|l| l.strip_prefix("m-buffer-"))
                .collect::<Vec<_>>()
                .join("-");
            let sent: Vec<String> = want.sent.iter().map(|b| format!("{b:02x}")).collect();
            ensure!(
                printed == sent.join("-"),
                "`db print%` shows {printed}, sent {sent:?}"
            );
        }
        let reply = dut.send("infer 1 0")?;
        for line in [
            "m-warmup-start-0",
            "m-warmup-done",
            "m-infer-start-1",
            "m-infer-done",
        ] {
            ensure!(
                reply.iter().any(|l| l == line),
                "sample {idx}: `infer 1 0%` lacks `{line}`: {reply:?}"
            );
        }
        ensure!(
            laps(&reply).len() == 2,
            "sample {idx}: `infer 1 0%` needs two m-lap-us lines: {reply:?}"
        );
        let (scores, list) = results_of(&reply)?;
        let (_, again) = results_of(&dut.send("results")?)?;
        ensure!(
            again == list,
            "sample {idx}: `results%` [{again}] differs from infer's [{list}]"
        );
        ensure!(
            scores.len() == want.scores.len(),
            "sample {idx}: {} scores, the model has {} outputs",
            scores.len(),
            want.scores.len()
        );
        for (class, (&got, &host)) in scores.iter().zip(&want.scores).enumerate() {
            // Print precision: three decimals, so half a thousandth (plus f32 noise).
            let diff = (got - f64::from(host)).abs();
            worst = worst.max(diff);
            ensure!(
                diff <= 0.0005 + 1e-6,
                "sample {idx} class {class}: device {got} vs host {host} (|diff| {diff:.6})"
            );
        }
        // The text as C's printf would print the host's value. The logits are the same f32
        // on both sides, so their text must be equal; a softmax may differ in the last bit
        // (libm's expf on the device, the host's exp), so its text is counted, not required.
        let host: Vec<String> = want.scores.iter().map(|&v| c_fixed3(v)).collect();
        text_equal += list
            .split(',')
            .zip(&host)
            .filter(|(device, host)| device == host)
            .count();
        n_scores += host.len();
        if variant == Variant::Int8Logits {
            ensure!(
                list == host.join(","),
                "sample {idx}: device [{list}] vs host [{}]",
                host.join(",")
            );
        }
        let (device_class, host_class) = (argmax(&scores), argmax(&want.logits));
        ensure!(
            device_class == host_class,
            "sample {idx}: device argmax {device_class}, host argmax {host_class} ([{list}])"
        );
        agree_argmax += 1;
        if let Some(label) = sample.label {
            device_correct += usize::from(device_class == usize::from(label));
            host_correct += usize::from(host_class == usize::from(label));
        }
        if idx == 0 {
            example = format!("sample 0 -> class {device_class}, m-results-[{list}]");
        }
    }

    // A timed run as the performance test does it (fewer iterations): N after W warm-ups.
    let (n_timed, w) = (10u64, 2u64);
    let reply = dut.send(&format!("infer {n_timed} {w}"))?;
    let stamps = laps(&reply);
    let [start, end] = stamps.as_slice() else {
        bail!("`infer {n_timed} {w}%` needs two m-lap-us lines: {reply:?}");
    };
    ensure!(end >= start, "m-lap-us went backwards: {start} then {end}");
    let per_inference_us = (end - start) as f64 / n_timed as f64;

    malformed(dut, model.n_inputs())?;
    // Still answering, with the same input: the last sample again.
    let last = samples.last().context("no samples")?;
    let want = expected(model, &last.pixels, variant)?;
    dut.load(&want.sent)?;
    let (scores, _) = results_of(&dut.send("infer 1 0")?)?;
    ensure!(
        argmax(&scores) == argmax(&want.logits),
        "after the malformed commands the last sample's argmax changed"
    );

    let n = samples.len();
    let top1 = if samples.iter().any(|s| s.label.is_some()) {
        format!(", top-1 {device_correct}/{n} on the device, {host_correct}/{n} on the host")
    } else {
        String::new()
    };
    Ok(format!(
        "- {variant:?} ({} in, {} out): {n} samples; every score within {worst:.6} of the \
         host's (limit 0.0005), printed text equal to C's %0.3f of the host's value on \
         {text_equal}/{n_scores} scores; argmax equal on {agree_argmax}/{n}{top1}; \
         `infer {n_timed} {w}`: {per_inference_us:.0} us per inference (QEMU -icount shift=0: \
         1 us = 1000 instructions); 12 malformed commands answered as the reference does; \
         {example}",
        variant.input(),
        variant.scores(),
    ))
}

/// The reference's replies to malformed commands (internally_implemented.cpp); the harness
/// must answer each and stay alive.
fn malformed(dut: &mut Dut, n_inputs: usize) -> Result<()> {
    let long = "x".repeat(200);
    let cases: Vec<(String, String)> = vec![
        ("bogus".into(), "e-[Unknown command: bogus]".into()),
        ("".into(), "e-[Unknown command: ]".into()),
        (long, format!("e-[Unknown command: {}]", "x".repeat(80))),
        ("db".into(), "e-[Command 'db' requires a subcommand]".into()),
        (
            "db load".into(),
            "e-[Command 'db load' requires the # of bytes]".into(),
        ),
        (
            "db load 0".into(),
            "e-[Command 'db load' must be >0 bytes]".into(),
        ),
        (
            "db abc".into(),
            "e-[Insufficent number of hex digits]".into(),
        ),
        ("db 0g".into(), "e-[Invalid hex digit '0g']".into()),
        (
            "infer 0".into(),
            "e-[Inference iterations must be >0]".into(),
        ),
        (
            "infer 1 -1".into(),
            "e-[Inference warmup must be >=0]".into(),
        ),
        (
            "db load 999999".into(),
            format!("Supplied buffer size 999999 exceeds maximum of {n_inputs}"),
        ),
    ];
    for (command, reply) in &cases {
        dut.expect(command, reply)?;
    }
    // More bytes than the buffer holds (the reference overruns it): an error line.
    let hex = "00".repeat(n_inputs + 1);
    let mut overflowed = false;
    for chunk in hex.as_bytes().chunks(2 * DB_CHUNK) {
        let reply = dut.send(&format!("db {}", String::from_utf8_lossy(chunk)))?;
        overflowed |= reply
            .iter()
            .any(|l| *l == format!("e-[db buffer full: {n_inputs} bytes]"));
    }
    ensure!(
        overflowed,
        "{} bytes into a {n_inputs}-byte buffer: no error",
        n_inputs + 1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_fixed3_rounds_the_exact_value_half_to_even() {
        assert_eq!(c_fixed3(0.0625), "0.062"); // a true tie
        assert_eq!(c_fixed3(0.1875), "0.188");
        assert_eq!(c_fixed3(1.0005), "1.000"); // 1.000499.. in binary
        assert_eq!(c_fixed3(-2.5), "-2.500");
        assert_eq!(c_fixed3(-0.0001), "-0.000");
        assert_eq!(c_fixed3(12.3456), "12.346");
    }
}
