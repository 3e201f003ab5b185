//! The anomaly-detection autoencoder for `cargo xtask firmware`: MLPerf Tiny's AD model shape
//! (640-128-128-128-128-8-128-128-128-128-640) over the real-valued log-mel features of
//! `cargo xtask sensor-data`, the first model the firmware feeds raw `i32` values instead of
//! 8-bit images.
//!
//! The data, the training and the blob come from the same commands a user runs (README "Sensor
//! data and anomaly detection"). The device takes `round_half_even(x * 2^bits)` per feature,
//! `bits` being the blob's input fraction bits; the host converts the samples here, the way
//! `kiln_trainer::quant::math::raw_input` does for the CLI, and `check_against_cli` proves the
//! two agree: `kiln run --outputs` on the same rows must print the int8 outputs the host's
//! runtime computed from these raw values.

use anyhow::{ensure, Context, Result};
use std::path::Path;

/// The autoencoder's hidden layers (`--hidden`).
pub(crate) const HIDDEN: &str = "128,128,128,128,8,128,128,128,128";
/// Features per row (5 frames of 128 mel bins) and the anomaly column after them.
pub(crate) const N_FEATURES: usize = 640;
pub(crate) const ANOMALY_COLUMN: &str = "640";
/// Epochs of `kiln train` (the README's command; a few seconds).
pub(crate) const EPOCHS: &str = "20";
/// Test rows the firmware runs: the first normal and the first anomalous ones of test.csv.
pub(crate) const N_NORMAL: usize = 4;
pub(crate) const N_ANOMALOUS: usize = 4;

/// The samples the firmware runs, as the CLI reads them.
pub(crate) struct Samples {
    /// `N_FEATURES` values per sample, parsed as the CSV reader parses them (f32).
    pub features: Vec<f32>,
    /// The anomaly column (0 or 1) of each sample.
    pub anomaly: Vec<u8>,
}

/// Writes `train.csv` and `test.csv` into `dir` with `cargo xtask sensor-data`'s generator
/// (its defaults: 2,000 normal training rows, 600 test rows, seed 1), then picks the samples
/// and writes them as `samples.csv` (test.csv's header and those rows, in test.csv's order).
pub(crate) fn write_data(dir: &Path) -> Result<Samples> {
    crate::sensor_data::run(&["--out".to_owned(), dir.to_string_lossy().into_owned()])?;
    let test_path = dir.join("test.csv");
    let text = std::fs::read_to_string(&test_path)
        .with_context(|| format!("{}: cannot read", test_path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().context("test.csv: empty")?;
    let mut csv = format!("{header}\n");
    let (mut features, mut anomaly) = (Vec::new(), Vec::new());
    let (mut n_normal, mut n_anomalous) = (0, 0);
    for (row_idx, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        ensure!(
            fields.len() == N_FEATURES + 1,
            "test.csv row {row_idx}: {} fields, expected {}",
            fields.len(),
            N_FEATURES + 1
        );
        let flag: u8 = fields[N_FEATURES]
            .trim()
            .parse()
            .ok()
            .filter(|&f| f <= 1)
            .with_context(|| format!("test.csv row {row_idx}: the anomaly column is not 0 or 1"))?;
        let wanted = if flag == 1 {
            &mut n_anomalous
        } else {
            &mut n_normal
        };
        if *wanted == if flag == 1 { N_ANOMALOUS } else { N_NORMAL } {
            continue;
        }
        *wanted += 1;
        for field in &fields[..N_FEATURES] {
            // As kiln's CSV reader: an f32 from the field's text.
            let value: f32 = field
                .trim()
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .with_context(|| format!("test.csv row {row_idx}: `{field}` is not a number"))?;
            features.push(value);
        }
        anomaly.push(flag);
        csv.push_str(line);
        csv.push('\n');
    }
    ensure!(
        n_normal == N_NORMAL && n_anomalous == N_ANOMALOUS,
        "test.csv: fewer than {N_NORMAL} normal or {N_ANOMALOUS} anomalous rows"
    );
    std::fs::write(dir.join("samples.csv"), csv)?;
    Ok(Samples { features, anomaly })
}

/// The raw value the device takes for the feature `x`: `round_half_even(x * 2^frac_bits)`,
/// exactly `kiln_trainer::quant::math::raw_input` (the CLI's conversion; `check_against_cli`
/// holds the two together).
pub(crate) fn raw_input(x: f32, frac_bits: u8) -> Result<i32> {
    let raw = (f64::from(x) * f64::from(1u32 << frac_bits.min(30))).round_ties_even();
    ensure!(
        raw.is_finite() && raw.abs() <= f64::from(i32::MAX),
        "the feature {x} is outside i32 with {frac_bits} fraction bits"
    );
    Ok(raw as i32)
}

/// Requires `kiln run --outputs` on `samples.csv` to print `host_outputs`, the int8 outputs
/// kiln-runtime computed on the host from the raw values of `raw_input`, sample after sample.
pub(crate) fn check_against_cli(dir: &Path, blob: &Path, host_outputs: &[i8]) -> Result<()> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let outputs_path = dir.join("samples-outputs.csv");
    crate::ci::kiln_ok(&[
        "run",
        &s(blob),
        "--data",
        &format!("csv:{}", s(&dir.join("train.csv"))),
        "--test-data",
        &s(&dir.join("samples.csv")),
        "--autoencoder",
        "--anomaly-column",
        ANOMALY_COLUMN,
        "--outputs",
        &s(&outputs_path),
        "--quiet",
    ])?;
    let text = std::fs::read_to_string(&outputs_path)
        .with_context(|| format!("{}: cannot read", outputs_path.display()))?;
    let mut cli_outputs = Vec::with_capacity(host_outputs.len());
    for (row_idx, line) in text.lines().enumerate() {
        // Each row: the int8 outputs, then the row's anomaly score.
        let fields: Vec<&str> = line.split(',').collect();
        ensure!(
            fields.len() == N_FEATURES + 1,
            "{} row {row_idx}: {} fields, expected {} outputs and a score",
            outputs_path.display(),
            fields.len(),
            N_FEATURES
        );
        for field in &fields[..N_FEATURES] {
            cli_outputs.push(field.trim().parse::<i8>().with_context(|| {
                format!(
                    "{} row {row_idx}: `{field}` is not an int8 output",
                    outputs_path.display()
                )
            })?);
        }
    }
    ensure!(
        cli_outputs == host_outputs,
        "the raw inputs disagree with the CLI's conversion: `kiln run --outputs` printed other \
         int8 outputs on {} than the host's runtime computed from the firmware's raw values",
        dir.join("samples.csv").display()
    );
    Ok(())
}
