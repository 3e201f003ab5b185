//! `cargo xtask calibrate`: fits the per-layer instruction model behind `kiln inspect`'s
//! estimate to exact `kiln sim` counts, and the check that holds the estimate to `kiln sim`.
//!
//! Calibration trains small MLPs of many shapes (1 epoch: the weights do not change the
//! instruction count, only the shapes and the input stage's loop do) on the bundled digits and
//! on deterministic synthetic CSVs, quantizes them, runs each with `kiln sim` on every core,
//! and fits per core, by least squares on the relative error:
//! - the network: per MAC of whole four-row blocks, per MAC of the other rows, per output row,
//!   per input past a row's last group of 8, per layer, and per inference;
//! - the input stage, per loop (byte table, identity, fixed point, per feature): per feature
//!   and fixed;
//! - a layer graph's convolutions (per MAC, output value, im2col byte, layer), depthwise
//!   convolutions (per MAC, output value, layer) and pooling (per window tap of max and average,
//!   per layer), and its per-inference cost, from small CNNs on the digits and on synthetic
//!   images, fitted together with the dense terms (a graph's dense layers run the same kernel).
//!
//! `--update` writes the coefficients into `trainer/src/cli/device_figures.json`.

use crate::ci::{kiln_ok, workspace_root};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};

const DEVICE_FIGURES: &str = "trainer/src/cli/device_figures.json";

/// `--core` names and the figures' core names.
const CORES: [(&str, &str); 5] = [
    ("cortex-m0", "Cortex-M0"),
    ("cortex-m3", "Cortex-M3"),
    ("cortex-m4f", "Cortex-M4F"),
    ("cortex-m7", "Cortex-M7"),
    ("rv32imc", "RISC-V rv32imc"),
];

/// The cores whose dense blocks need inputs in groups of 8 (the packed SMLAD kernel).
const GROUPS_OF_8: [&str; 2] = ["cortex-m4f", "cortex-m7"];

/// The samples each `kiln sim` run averages over.
const SIM_SAMPLES: &str = "4";

/// The estimate must come within this fraction of `kiln sim`'s count.
const TOLERANCE: f64 = 0.10;

/// The same for a layer graph: its convolutions' costs depend on more than the per-layer terms
/// capture (the calibration CNNs' largest error is 9-20% per core); `kiln fit` holds a winner
/// to 15% too.
const GRAPH_TOLERANCE: f64 = 0.15;

/// One calibration data set: its `--data` flags, and the CSV it is written to (none for the
/// bundled digits).
struct DataSet {
    name: &'static str,
    /// Features per row; the class follows.
    n_features: usize,
    values: Values,
}

/// How a row's feature values are made from (row, column, a uniform draw `u` in [0, 1)): a
/// pattern per class (`row % 10`) and column, and some noise.
enum Values {
    /// `(class * row + (column % period) * column_step + u * noise) % 256`: integers, the byte
    /// table.
    Bytes {
        row: usize,
        column: usize,
        period: usize,
        noise: f64,
    },
    /// `(class * row + column * column_step + u * noise) % span - offset`, three decimals.
    Real {
        row: f64,
        column: f64,
        noise: f64,
        span: f64,
        offset: f64,
    },
}

impl Values {
    fn value(&self, row: usize, col: usize, u: f64) -> String {
        let class = row % 10;
        match *self {
            Values::Bytes {
                row: step,
                column,
                period,
                noise,
            } => {
                ((class * step + (col % period) * column + (u * noise) as usize) % 256).to_string()
            }
            Values::Real {
                row: step,
                column,
                noise,
                span,
                offset,
            } => format!(
                "{:.3}",
                (class as f64 * step + col as f64 * column + u * noise) % span - offset
            ),
        }
    }
}

const fn bytes(
    name: &'static str,
    n_features: usize,
    row: usize,
    column: usize,
    period: usize,
    noise: f64,
) -> DataSet {
    DataSet {
        name,
        n_features,
        values: Values::Bytes {
            row,
            column,
            period,
            noise,
        },
    }
}

const fn real(
    name: &'static str,
    n_features: usize,
    row: f64,
    column: f64,
    noise: f64,
    span: f64,
    offset: f64,
) -> DataSet {
    DataSet {
        name,
        n_features,
        values: Values::Real {
            row,
            column,
            noise,
            span,
            offset,
        },
    }
}

const DATA_SETS: [DataSet; 8] = [
    // Images: 16x16x1 and 12x12x3 bytes, for the calibration CNNs.
    bytes("img16", 256, 23, 9, 16, 60.0),
    bytes("img12c3", 432, 19, 5, 36, 60.0),
    // Integers 0..255: the byte table.
    bytes("int200", 200, 17, 7, usize::MAX, 40.0),
    bytes("int512", 512, 13, 5, usize::MAX, 40.0),
    // Real values spanning 45 units: a power-of-two input scale, the identity loop.
    real("real96", 96, 3.1, 0.7, 5.0, 40.0, 45.0),
    real("real160", 160, 2.3, 0.3, 5.0, 40.0, 20.0),
    // Real values spanning 600 units: no power-of-two scale fits, the fixed-point loop.
    real("wide40", 40, 31.0, 7.0, 50.0, 600.0, 600.0),
    real("wide96", 96, 31.0, 7.0, 50.0, 600.0, 600.0),
];

/// The calibration networks: data set (or "digits"), hidden widths, normalization.
const NETWORKS: [(&str, &str, &str); 21] = [
    ("digits", "10", "scale"),
    ("digits", "16", "scale"),
    ("digits", "33", "scale"),
    ("digits", "128", "scale"),
    ("digits", "7,5", "scale"),
    ("digits", "16,16", "scale"),
    ("digits", "128,128", "scale"),
    ("digits", "64,32,16", "scale"),
    ("digits", "100,60", "scale"),
    ("int200", "16", "scale"),
    ("int200", "50", "scale"),
    ("int200", "128,20", "scale"),
    ("int512", "32", "scale"),
    ("int512", "96,13", "scale"),
    ("real96", "24", "scale"),
    ("real96", "64,64", "scale"),
    ("real160", "16", "scale"),
    ("wide96", "24", "scale"),
    ("wide40", "8", "scale"),
    ("real96", "24", "standardize"),
    ("int200", "16", "standardize"),
];

/// The calibration CNNs: data set, its image shape (none for the digits, which carry theirs),
/// the `--layers` of the hidden part. Single layers of each kind at several shapes, and small
/// networks that mix them.
const CNNS: [(&str, &str, &str); 36] = [
    ("digits", "", "conv3x3:4,maxpool2,dense:16"),
    ("digits", "", "conv3x3:8,maxpool2,conv3x3:8,maxpool2"),
    ("digits", "", "conv3x3:16,dw3x3,maxpool2"),
    ("digits", "", "conv3x3:6,avgpool2,dense:12"),
    ("digits", "", "conv5x5v:8,maxpool2"),
    ("digits", "", "conv3x3:12,conv3x3:12,maxpool2,dense:20"),
    ("digits", "", "conv3x3:2"),
    ("digits", "", "conv3x3:32"),
    ("digits", "", "conv1x1:8"),
    ("digits", "", "conv1x1:4,conv1x1:32"),
    ("digits", "", "conv3x3:8,conv3x3:24"),
    ("digits", "", "conv3x3s2:16"),
    ("digits", "", "conv1x1:8,dw3x3"),
    ("digits", "", "conv1x1:32,dw3x3s2"),
    ("digits", "", "conv1x1:16,maxpool2"),
    ("digits", "", "conv1x1:16,maxpool4s4"),
    (
        "img16",
        "16x16x1",
        "conv3x3:8,maxpool2,conv3x3:16,maxpool2,dense:32",
    ),
    ("img16", "16x16x1", "conv3x3:4,maxpool2,maxpool2,dense:10"),
    ("img16", "16x16x1", "conv5x5:6,maxpool2,dw3x3s2,conv3x3:12"),
    ("img16", "16x16x1", "conv3x3:16,maxpool2,dense:8"),
    ("img16", "16x16x1", "conv3x3:4"),
    ("img16", "16x16x1", "conv1x1:8,conv3x3:8"),
    ("img16", "16x16x1", "conv1x1:24,dw3x3,maxpool2"),
    ("img16", "16x16x1", "conv1x1:4,dw3x3,dw3x3"),
    ("img16", "16x16x1", "conv3x3s2:32,conv1x1:8"),
    ("img16", "16x16x1", "conv1x1:8,avgpool4s4"),
    ("img12c3", "12x12x3", "conv3x3:8,maxpool2,conv3x3:8"),
    ("img12c3", "12x12x3", "conv3x3:16,dw3x3,conv1x1:8,avgpool2"),
    (
        "img12c3",
        "12x12x3",
        "conv1x1:8,dw3x3,conv1x1:16,maxpool2,dense:10",
    ),
    ("img12c3", "12x12x3", "conv3x3:24,maxpool2,dense:16"),
    ("img12c3", "12x12x3", "conv3x3s2:12,dw3x3s2,conv1x1:24"),
    ("img12c3", "12x12x3", "conv1x1:16"),
    ("img12c3", "12x12x3", "conv3x3:4"),
    ("img12c3", "12x12x3", "conv5x5s2:16,conv3x3:16"),
    ("img12c3", "12x12x3", "conv1x1:12,dw3x3,dw3x3,maxpool2"),
    ("img12c3", "12x12x3", "conv1x1:6,maxpool2,conv1x1:48"),
];

pub fn run(args: &[String]) -> Result<()> {
    let mut update = false;
    let mut out = workspace_root().join("kiln-out/calibrate");
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "--update" => update = true,
            "--out" => out = iter.next().context("--out needs a value")?.into(),
            other => {
                bail!("cargo xtask calibrate: unknown flag {other}; expected --update or --out DIR")
            }
        }
    }
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    for data in &DATA_SETS {
        write_csv(&out.join(format!("{}.csv", data.name)), data)?;
    }
    let mut samples: Vec<Sample> = Vec::new();
    for (data, hidden, normalize) in NETWORKS {
        let dir = out.join(format!("{data}-{}-{normalize}", hidden.replace(',', "x")));
        let network = ["--hidden", hidden, "--normalize", normalize];
        samples.extend(calibration_samples(&out, &dir, data, &network)?);
    }
    for (index, (data, shape, layers)) in CNNS.iter().enumerate() {
        let dir = out.join(format!("cnn{index}-{data}"));
        let mut network = vec!["--layers", layers];
        if !shape.is_empty() {
            network.extend(["--input-shape", shape]);
        }
        samples.extend(calibration_samples(&out, &dir, data, &network)?);
    }
    let mut figures = read_figures()?;
    let cores = figures["cores"]
        .as_array_mut()
        .context("device_figures.json: no `cores` array")?;
    println!(
        "\nper-layer model (cargo xtask calibrate), fitted to {} kiln sim runs:",
        samples.len()
    );
    for (cli, name) in CORES {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.core == cli).collect();
        let fitted = fit_core(cli, &mine)?;
        let worst = |graphs: bool| {
            mine.iter()
                .filter(|s| is_graph(&s.layers) == graphs)
                .map(|s| (fitted.total(s) - s.total) / s.total)
                .fold(0.0f64, |a, e| a.max(e.abs()))
        };
        println!(
            "  {name}: {}; largest error over the calibration MLPs {:.1}%, CNNs {:.1}%",
            fitted.to_json(),
            worst(false) * 100.0,
            worst(true) * 100.0
        );
        if update {
            let core = cores
                .iter_mut()
                .find(|c| c["core"] == name)
                .with_context(|| format!("device_figures.json: no core {name}"))?;
            core["estimate"] = fitted.to_json();
        }
    }
    if update {
        let path = workspace_root().join(DEVICE_FIGURES);
        std::fs::write(&path, serde_json::to_string_pretty(&figures)? + "\n")
            .with_context(|| format!("{}: cannot write", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Trains the calibration network `network` (its `kiln train` flags) for one epoch on `data`
/// (the weights do not change the count), quantizes it into `dir`, and measures it on every
/// core.
fn calibration_samples(
    out: &Path,
    dir: &Path,
    data: &str,
    network: &[&str],
) -> Result<Vec<Sample>> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let data_flags = data_flags(out, data);
    let flags: Vec<&str> = data_flags.iter().map(String::as_str).collect();
    let dir_text = s(dir);
    let mut train = vec!["train"];
    train.extend(network);
    train.extend(["--epochs", "1", "-q", "--no-plot"]);
    train.extend(&flags);
    train.extend(["-o", &dir_text]);
    kiln_ok(&train)?;
    let model = s(&dir.join("model.json"));
    let int8 = s(&dir.join("int8"));
    let mut quantize = vec!["quantize", &model];
    quantize.extend(&flags);
    quantize.extend(["-o", &int8, "-q"]);
    kiln_ok(&quantize)?;
    measure(&s(&dir.join("int8/model.kiln")), &flags)
}

/// `kiln inspect`'s estimate against `kiln sim` for `blob` on every core that runs it; fails
/// when any is off by more than [`TOLERANCE`] ([`GRAPH_TOLERANCE`] for a layer graph). Returns
/// the table's lines.
pub fn check_against_sim(label: &str, blob: &Path, data_flags: &[&str]) -> Result<Vec<String>> {
    let blob_text = blob.to_string_lossy().into_owned();
    let inspect = kiln_ok(&["inspect", &blob_text, "--json"])?;
    let graph = inspect["layers"]
        .as_array()
        .is_some_and(|layers| layers.iter().any(|l| l["kind"] != "dense"));
    let tolerance = if graph { GRAPH_TOLERANCE } else { TOLERANCE };
    let estimates = inspect["instructions_per_inference"]["cores"]
        .as_array()
        .context("kiln inspect --json: no estimate")?;
    let mut lines = Vec::new();
    let mut off = Vec::new();
    for (cli, name) in CORES {
        let mut args = vec![
            "sim",
            &blob_text,
            "--core",
            cli,
            "--samples",
            SIM_SAMPLES,
            "--json",
        ];
        args.extend(data_flags);
        let output = crate::ci::kiln(&args)?;
        if output.status.code() == Some(1) && output.stdout.is_empty() {
            // Does not fit the core's board: kiln sim said so in one line.
            let why = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            lines.push(format!("| {label} | {name} | - | - | - | {why} |"));
            continue;
        }
        ensure!(
            output.status.success(),
            "kiln sim {blob_text} --core {cli} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let sim: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let measured = sim["insns_per_inference"]
            .as_f64()
            .context("kiln sim: no count")?;
        let estimate = estimates
            .iter()
            .find(|c| c["core"] == name)
            .and_then(|c| c["total_insns"].as_f64())
            .with_context(|| format!("kiln inspect: no estimate for {name}"))?;
        let error = (estimate - measured) / measured;
        lines.push(format!(
            "| {label} | {name} | {measured:.0} | {estimate:.0} | {:+.1}% | {} |",
            error * 100.0,
            if sim["outputs_match"] == true {
                "device = host"
            } else {
                "DEVICE DIFFERS"
            }
        ));
        if error.abs() > tolerance || sim["outputs_match"] != true {
            off.push(format!(
                "{label} on {name}: estimate {estimate:.0}, kiln sim {measured:.0}"
            ));
        }
    }
    ensure!(
        off.is_empty(),
        "kiln inspect's estimate is more than {:.0}% from kiln sim (run `cargo xtask calibrate --update`): {}",
        tolerance * 100.0,
        off.join("; ")
    );
    Ok(lines)
}

/// A layer as `kiln inspect --json` reports it: what its instructions follow from.
#[derive(Debug, Clone, PartialEq)]
struct Layer {
    kind: String,
    input: [usize; 3],
    output: [usize; 3],
    kernel: [usize; 2],
}

impl Layer {
    #[cfg(test)]
    fn dense(n_in: usize, n_out: usize) -> Self {
        Self {
            kind: "dense".into(),
            input: [1, 1, n_in],
            output: [1, 1, n_out],
            kernel: [0, 0],
        }
    }
}

/// One `kiln sim` count with what the model says about it.
struct Sample {
    core: &'static str,
    layers: Vec<Layer>,
    n_inputs: usize,
    input_stage: String,
    /// `Model::quantize_input` alone.
    input: f64,
    /// One `Model::run`.
    total: f64,
}

/// The CRC-32 of every source file of the runtime and the firmware, in path order; read once
/// per run.
fn code_fingerprint() -> Result<u32> {
    static FINGERPRINT: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    if let Some(&crc) = FINGERPRINT.get() {
        return Ok(crc);
    }
    let crc = read_code_fingerprint()?;
    Ok(*FINGERPRINT.get_or_init(|| crc))
}

fn read_code_fingerprint() -> Result<u32> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "generated") {
                    walk(&path, files)?;
                }
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "x" || e == "c")
            {
                files.push(path);
            }
        }
        Ok(())
    }
    let root = workspace_root();
    let mut files = Vec::new();
    walk(&root.join("runtime-nostd/src"), &mut files)?;
    walk(&root.join("examples/firmware-qemu/src"), &mut files)?;
    files.sort();
    let mut crc = kiln_runtime::crc32::Crc32::new();
    for file in files {
        crc.update(&std::fs::read(&file).with_context(|| format!("{}", file.display()))?);
    }
    Ok(crc.finish())
}

fn measure(blob: &str, data_flags: &[&str]) -> Result<Vec<Sample>> {
    let inspect = kiln_ok(&["inspect", blob, "--json"])?;
    let layers: Vec<Layer> = inspect["layers"]
        .as_array()
        .context("kiln inspect: no layers")?
        .iter()
        .map(|l| {
            let dims = |k: &str| -> Option<Vec<usize>> {
                l[k].as_array()?
                    .iter()
                    .map(|v| v.as_u64().map(|v| v as usize))
                    .collect()
            };
            Some(Layer {
                kind: l["kind"].as_str()?.to_owned(),
                input: dims("input_shape")?.try_into().ok()?,
                output: dims("output_shape")?.try_into().ok()?,
                kernel: dims("kernel")?.try_into().ok()?,
            })
        })
        .collect::<Option<_>>()
        .context("kiln inspect: a layer without its kind and shapes")?;
    let n_inputs = inspect["n_inputs"]
        .as_u64()
        .context("kiln inspect: no n_inputs")? as usize;
    let input_stage = inspect["instructions_per_inference"]["input_stage"]
        .as_str()
        .context("kiln inspect: no input stage loop")?
        .to_owned();
    // `kiln sim` counts are exact and depend only on the blob and the code that runs it (the
    // runtime and the firmware): a rerun (after a fit that failed, say) reads them back instead
    // of booting every core again, and a kernel change measures anew.
    let blob_bytes = std::fs::read(blob).with_context(|| format!("{blob}: cannot read"))?;
    let mut crc = kiln_runtime::crc32::Crc32::new();
    crc.update(&blob_bytes);
    crc.update(&code_fingerprint()?.to_le_bytes());
    let blob_crc = crc.finish();
    let mut samples = Vec::new();
    for (cli, _) in CORES {
        let cache = PathBuf::from(format!("{blob}.sim-{cli}-{blob_crc:08x}.json"));
        let mut args = vec![
            "sim",
            blob,
            "--core",
            cli,
            "--samples",
            SIM_SAMPLES,
            "--json",
        ];
        args.extend(data_flags);
        let sim: serde_json::Value = match std::fs::read(&cache) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(_) => {
                let output = crate::ci::kiln(&args)?;
                let sim = if output.status.code() == Some(1) && output.stdout.is_empty() {
                    // Does not fit the core's board (the 16 KiB of RAM of the micro:bit and
                    // sifive_e).
                    serde_json::Value::Null
                } else {
                    ensure!(
                        output.status.success(),
                        "kiln sim {blob} --core {cli} failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    serde_json::from_slice(&output.stdout)?
                };
                std::fs::write(&cache, serde_json::to_vec(&sim)?)
                    .with_context(|| format!("{}: cannot write", cache.display()))?;
                sim
            }
        };
        if sim.is_null() {
            continue;
        }
        ensure!(
            sim["outputs_match"] == true,
            "kiln sim {blob} --core {cli}: the device differs from the host"
        );
        samples.push(Sample {
            core: cli,
            layers: layers.clone(),
            n_inputs,
            input_stage: input_stage.clone(),
            input: sim["input_stage_insns"]
                .as_f64()
                .context("kiln sim: no input stage")?,
            total: sim["insns_per_inference"]
                .as_f64()
                .context("kiln sim: no count")?,
        });
    }
    Ok(samples)
}

/// The graph terms, in [`graph_features`]' order (`device_figures.json`'s `graph` object).
const GRAPH_TERMS: [&str; 14] = [
    "conv_block_mac",
    "conv_tail_mac",
    "conv_output",
    "conv_ragged",
    "conv_pixel",
    "conv_layer",
    "depthwise_mac",
    "depthwise_pixel",
    "depthwise_layer",
    "max_pool_tap",
    "avg_pool_tap",
    "pool_output",
    "pool_layer",
    "inference",
];

/// One core's fitted model, in the order `device_figures.json` stores it.
struct Fitted {
    /// block_mac, tail_mac, row, ragged_input, layer, inference: [`dense_features`].
    dense: [f64; 6],
    /// [`GRAPH_TERMS`].
    graph: [f64; 14],
    block_inputs_multiple: usize,
    /// `[per feature, fixed]` for byte table, identity, fixed point, per feature.
    input: [[f64; 2]; 4],
}

const INPUT_LOOPS: [&str; 4] = ["byte table", "identity", "fixed point", "per feature"];

fn dot(x: &[f64], c: &[f64]) -> f64 {
    x.iter().zip(c).map(|(x, c)| x * c).sum()
}

impl Fitted {
    fn network(&self, layers: &[Layer]) -> f64 {
        dot(
            &dense_features(layers, self.block_inputs_multiple),
            &self.dense,
        ) + dot(
            &graph_features(layers, self.block_inputs_multiple),
            &self.graph,
        )
    }

    fn total(&self, sample: &Sample) -> f64 {
        let loop_idx = INPUT_LOOPS
            .iter()
            .position(|l| *l == sample.input_stage)
            .unwrap_or(0);
        let [per_feature, fixed] = self.input[loop_idx];
        self.network(&sample.layers) + per_feature * sample.n_inputs as f64 + fixed
    }

    fn to_json(&self) -> serde_json::Value {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        let pair = |[a, b]: [f64; 2]| serde_json::json!([round(a), round(b)]);
        let [block_mac, tail_mac, row, ragged_input, layer, inference] = self.dense.map(round);
        let graph: serde_json::Map<String, serde_json::Value> = GRAPH_TERMS
            .iter()
            .zip(self.graph)
            .map(|(name, value)| ((*name).to_owned(), serde_json::Value::from(round(value))))
            .collect();
        serde_json::json!({
            "graph": graph,
            "block_mac": block_mac,
            "tail_mac": tail_mac,
            "row": row,
            "ragged_input": ragged_input,
            "layer": layer,
            "inference": inference,
            "block_inputs_multiple": self.block_inputs_multiple,
            "byte_table": pair(self.input[0]),
            "identity": pair(self.input[1]),
            "fixed_point": pair(self.input[2]),
            "per_feature": pair(self.input[3]),
        })
    }
}

fn is_graph(layers: &[Layer]) -> bool {
    layers.iter().any(|l| l.kind != "dense")
}

/// The dense layers' features, as `kiln inspect`'s `EstimateModel::network` weighs them (a
/// dense layer in a graph reads its input flattened); the per-inference term only for an MLP.
fn dense_features(layers: &[Layer], multiple: usize) -> [f64; 6] {
    let mut x = [0.0; 6];
    for layer in layers.iter().filter(|l| l.kind == "dense") {
        let n_in: usize = layer.input.iter().product();
        let n_out = layer.output[2];
        let block_rows = if n_in % multiple.max(1) == 0 {
            n_out - n_out % 4
        } else {
            0
        };
        x[0] += (n_in * block_rows) as f64;
        x[1] += (n_in * (n_out - block_rows)) as f64;
        x[2] += n_out as f64;
        x[3] += ((n_in % 8) * n_out) as f64;
        x[4] += 1.0;
    }
    if !is_graph(layers) {
        x[5] = 1.0;
    }
    x
}

/// A graph's other layers and its per-inference term, as `EstimateModel::graph_network`
/// weighs them (all zero for an MLP).
fn graph_features(layers: &[Layer], multiple: usize) -> [f64; 14] {
    let mut x = [0.0; 14];
    if !is_graph(layers) {
        return x;
    }
    for layer in layers {
        let [oh, ow, oc] = layer.output;
        let [kh, kw] = layer.kernel;
        let pixels = (oh * ow) as f64;
        let outputs = pixels * oc as f64;
        let taps = (kh * kw) as f64;
        match layer.kind.as_str() {
            "conv2d" => {
                let column = kh * kw * layer.input[2];
                let block_channels = if column % multiple.max(1) == 0 {
                    oc - oc % 4
                } else {
                    0
                };
                x[0] += pixels * (column * block_channels) as f64;
                x[1] += pixels * (column * (oc - block_channels)) as f64;
                x[2] += outputs;
                x[3] += pixels * ((column % 8) * oc) as f64;
                x[4] += pixels;
                x[5] += 1.0;
            }
            // Every calibration depthwise layer is 3x3: a per-output term would be a ninth of
            // the per-MAC one, so only the MACs are weighed.
            "depthwise_conv2d" => {
                x[6] += outputs * taps;
                x[7] += pixels;
                x[8] += 1.0;
            }
            "max_pool2d" | "avg_pool2d" => {
                let tap = if layer.kind == "max_pool2d" { 9 } else { 10 };
                x[tap] += outputs * taps;
                x[11] += outputs;
                x[12] += 1.0;
            }
            _ => {}
        }
    }
    x[13] = 1.0;
    x
}

/// Least squares on the relative error: each row weighted by 1 / its count.
fn weighted_fit(rows: &[(Vec<f64>, f64, f64)], n: usize) -> Option<Vec<f64>> {
    let weighted: Vec<(Vec<f64>, f64)> = rows
        .iter()
        .map(|(x, y, count)| {
            let w = 1.0 / count.max(1.0);
            (x.iter().map(|v| v * w).collect(), y * w)
        })
        .collect();
    least_squares(&weighted, n)
}

/// Two stages: the dense terms on the MLPs, then the graph terms on the CNNs with their dense
/// layers taken out by the first (a graph's dense layers run the MLP's kernel).
fn fit_core(core: &str, samples: &[&Sample]) -> Result<Fitted> {
    let multiple = if GROUPS_OF_8.contains(&core) { 8 } else { 1 };
    let (graphs, mlps): (Vec<&Sample>, Vec<&Sample>) =
        samples.iter().partition(|s| is_graph(&s.layers));
    let rows: Vec<(Vec<f64>, f64, f64)> = mlps
        .iter()
        .map(|s| {
            let y = s.total - s.input;
            (dense_features(&s.layers, multiple).to_vec(), y, y)
        })
        .collect();
    let dense: [f64; 6] = weighted_fit(&rows, 6)
        .with_context(|| format!("{core}: the dense fit is singular"))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("six dense coefficients"))?;
    let rows: Vec<(Vec<f64>, f64, f64)> = graphs
        .iter()
        .map(|s| {
            let y = s.total - s.input - dot(&dense_features(&s.layers, multiple), &dense);
            (graph_features(&s.layers, multiple).to_vec(), y, s.total)
        })
        .collect();
    let graph: [f64; 14] = weighted_fit(&rows, GRAPH_TERMS.len())
        .with_context(|| format!("{core}: the graph fit is singular ({} CNNs)", graphs.len()))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("14 graph coefficients"))?;
    let mut input = [[0.0; 2]; 4];
    for (slot, name) in input.iter_mut().zip(INPUT_LOOPS) {
        let rows: Vec<(Vec<f64>, f64)> = samples
            .iter()
            .filter(|s| s.input_stage == name)
            .map(|s| (vec![s.n_inputs as f64, 1.0], s.input))
            .collect();
        let coefficients = least_squares(&rows, 2).with_context(|| {
            format!("{core}: too few calibration models with the {name} input loop")
        })?;
        *slot = [coefficients[0], coefficients[1]];
    }
    Ok(Fitted {
        dense,
        graph,
        block_inputs_multiple: multiple,
        input,
    })
}

/// The least-squares solution of `x . c = y` over `rows`, each column scaled to a largest
/// magnitude of 1 first (a graph's features span 1 to 10^6: unscaled, the normal equations
/// lose every digit); `None` when they are singular (too few distinct rows).
fn least_squares(rows: &[(Vec<f64>, f64)], n: usize) -> Option<Vec<f64>> {
    let scales: Vec<f64> = (0..n)
        .map(|j| {
            let largest = rows.iter().map(|(x, _)| x[j].abs()).fold(0.0, f64::max);
            if largest > 0.0 {
                largest
            } else {
                1.0
            }
        })
        .collect();
    let scaled: Vec<(Vec<f64>, f64)> = rows
        .iter()
        .map(|(x, y)| (x.iter().zip(&scales).map(|(v, s)| v / s).collect(), *y))
        .collect();
    let solution = normal_equations(&scaled, n)?;
    Some(solution.iter().zip(&scales).map(|(c, s)| c / s).collect())
}

/// The normal equations by Gaussian elimination with partial pivoting.
fn normal_equations(rows: &[(Vec<f64>, f64)], n: usize) -> Option<Vec<f64>> {
    let mut a = vec![vec![0.0; n + 1]; n];
    for (x, y) in rows {
        for i in 0..n {
            for j in 0..n {
                a[i][j] += x[i] * x[j];
            }
            a[i][n] += x[i] * y;
        }
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        let scale = a.iter().map(|r| r[col].abs()).fold(0.0, f64::max);
        if a[pivot][col].abs() <= 1e-12 * scale.max(1e-300) {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (idx, row) in a.iter_mut().enumerate() {
            if idx != col {
                let factor = row[col] / pivot_row[col];
                for (value, pivot_value) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *value -= factor * pivot_value;
                }
            }
        }
    }
    Some((0..n).map(|i| a[i][n] / a[i][i]).collect())
}

fn data_flags(out: &Path, data: &str) -> Vec<String> {
    if data == "digits" {
        vec!["--data".into(), "digits".into()]
    } else {
        vec![
            "--data".into(),
            format!("csv:{}", out.join(format!("{data}.csv")).display()),
            "--label-column".into(),
            "last".into(),
        ]
    }
}

fn write_csv(path: &PathBuf, data: &DataSet) -> Result<()> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::new();
    for row in 0..300 {
        let fields: Vec<String> = (0..data.n_features)
            .map(|col| data.values.value(row, col, uniform()))
            .collect();
        text.push_str(&fields.join(","));
        text.push_str(&format!(",{}\n", row % 10));
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

fn read_figures() -> Result<serde_json::Value> {
    let path = workspace_root().join(DEVICE_FIGURES);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_exact_coefficients() {
        let truth = [1.5, -2.0, 7.0];
        let rows: Vec<(Vec<f64>, f64)> = (0..10)
            .map(|i| {
                let x = vec![i as f64, (i * i) as f64, 1.0];
                let y = x.iter().zip(truth).map(|(a, b)| a * b).sum();
                (x, y)
            })
            .collect();
        let c = least_squares(&rows, 3).unwrap();
        for (got, want) in c.iter().zip(truth) {
            assert!((got - want).abs() < 1e-9, "{c:?}");
        }
        // Columns a million apart in size (a graph's MACs and its per-layer term).
        let truth = [0.75, 300.0, 2.0];
        let rows: Vec<(Vec<f64>, f64)> = (1..20)
            .map(|i| {
                let i = i as f64;
                let x = vec![1e6 * i + 7e5 * (i % 3.0), 1.0 + (i % 2.0), i * i];
                let y = x.iter().zip(truth).map(|(a, b)| a * b).sum();
                (x, y)
            })
            .collect();
        let c = least_squares(&rows, 3).unwrap();
        for (got, want) in c.iter().zip(truth) {
            assert!((got - want).abs() < 1e-6 * want.abs().max(1.0), "{c:?}");
        }
        // One distinct row cannot fix two coefficients.
        assert!(least_squares(&[(vec![1.0, 1.0], 2.0), (vec![2.0, 2.0], 4.0)], 2).is_none());
    }

    #[test]
    fn block_rows_need_groups_of_8_where_the_kernel_does() {
        // 64 -> 10: two whole blocks (512 MACs) and two rows after them (128 MACs).
        assert_eq!(
            dense_features(&[Layer::dense(64, 10)], 8),
            [512.0, 128.0, 10.0, 0.0, 1.0, 1.0]
        );
        // 60 inputs: no blocks with the packed kernel, every row one at a time.
        assert_eq!(
            dense_features(&[Layer::dense(60, 8)], 8),
            [0.0, 480.0, 8.0, 32.0, 1.0, 1.0]
        );
        assert_eq!(
            dense_features(&[Layer::dense(60, 8)], 1),
            [480.0, 0.0, 8.0, 32.0, 1.0, 1.0]
        );
        // An MLP has no graph terms.
        assert_eq!(graph_features(&[Layer::dense(60, 8)], 1), [0.0; 14]);
    }

    #[test]
    fn a_graph_weighs_each_layer_by_kind_and_shape() {
        let layer = |kind: &str, input: [usize; 3], output: [usize; 3], kernel: [usize; 2]| Layer {
            kind: kind.into(),
            input,
            output,
            kernel,
        };
        let layers = [
            layer("conv2d", [8, 8, 1], [8, 8, 4], [3, 3]),
            layer("depthwise_conv2d", [8, 8, 4], [8, 8, 4], [3, 3]),
            layer("max_pool2d", [8, 8, 4], [4, 4, 4], [2, 2]),
            layer("dense", [4, 4, 4], [1, 1, 10], [0, 0]),
        ];
        // 64 inputs to 10: two whole blocks and two rows; a graph has its own inference term.
        assert_eq!(
            dense_features(&layers, 8),
            [512.0, 128.0, 10.0, 0.0, 1.0, 0.0]
        );
        let x = graph_features(&layers, 8);
        // A 9-value column is not a multiple of 8: the four channels take the other kernel.
        // 64 pixels x 9 x 4 MACs, 256 outputs, 64 x 1 x 4 ragged, 64 pixels, 1 layer.
        assert_eq!(x[..6], [0.0, 2304.0, 256.0, 256.0, 64.0, 1.0]);
        assert_eq!(graph_features(&layers, 1)[..2], [2304.0, 0.0]);
        // depthwise: 256 outputs x 9 taps, 64 pixels, 1 layer.
        assert_eq!(x[6..9], [2304.0, 64.0, 1.0]);
        // max pooling: 64 outputs x 4 taps, 64 outputs, 1 layer; the inference.
        assert_eq!(x[9..], [256.0, 0.0, 64.0, 1.0, 1.0]);
    }
}
