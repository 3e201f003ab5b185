//! `cargo xtask sensor-data`: deterministic log-mel-like machine-sound features for
//! training an anomaly-detection autoencoder (the input of MLPerf Tiny's AD model:
//! 5 frames x 128 log-mel energies in dB = 640 features).
//!
//! The model of the data: one machine, whose log-mel spectrum (in dB, bins 0..127) is
//!
//! - a noise floor falling linearly from -40 dB at bin 0 to -80 dB at bin 127;
//! - a fundamental near mel bin 14 (about 225 Hz on a 0..8 kHz mel axis) and its
//!   2nd to 4th harmonics, placed where k times the fundamental's frequency falls on
//!   the mel axis (bins about 25, 34 and 41), as Gaussian peaks 25, 21, 18 and 15 dB
//!   above the floor, 1.5 to 3 bins wide; floor and peaks add as powers, as sounds do;
//! - per clip: the whole spectrum moves by a gain of +-2 dB, the fundamental (and so
//!   every harmonic) by up to +-1 bin, and each peak's height by +-1.5 dB;
//! - per frame (5 per clip): a slight gain drift (up to +-0.25 dB per frame, linear in
//!   time) and Gaussian noise of 1 dB standard deviation on every bin.
//!
//! An anomalous clip is the same machine with one fault, drawn uniformly among four, each
//! small against the normal variation so that detection is not trivial: an extra resonance
//! peak 5 to 10 dB high in bins 56..104 (where a normal clip has nothing but floor), the
//! fundamental shifted up by 1.5 to 3 bins, bearing noise (the floor above bin 80 raised by
//! 2.5 to 5 dB) or one of the three harmonics 8 to 12 dB weaker.
//!
//! Features are frame-major (frame 0's bins 0..127, then frame 1's, ...), clipped to
//! [-100, 0] and printed with 2 decimals. `train.csv` holds only normal clips;
//! `test.csv` holds half normal, half anomalous clips in a shuffled order. Both end with
//! an `anomaly` column (0 or 1). The same seed gives the same bytes.

use crate::ci::workspace_root;
use anyhow::{bail, ensure, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Mel bins per frame.
const N_BINS: usize = 128;
/// Frames per clip.
const N_FRAMES: usize = 5;
/// Features per row.
const N_FEATURES: usize = N_BINS * N_FRAMES;

/// Noise floor at bin 0 and at the last bin, dB.
const FLOOR_LOW_DB: f64 = -40.0;
const FLOOR_HIGH_DB: f64 = -80.0;
/// The fundamental's nominal mel bin.
const FUNDAMENTAL_BIN: f64 = 14.0;
/// Height above the floor (dB) and width (bins, standard deviation) of the fundamental
/// (harmonic 1) and of harmonics 2, 3 and 4.
const HARMONICS: [(f64, f64); 4] = [(25.0, 1.5), (21.0, 2.0), (18.0, 2.5), (15.0, 3.0)];
/// Upper edge of the mel axis, Hz (16 kHz audio).
const MEL_TOP_HZ: f64 = 8000.0;
/// The values are clipped to this range, dB.
const MIN_DB: f64 = -100.0;
const MAX_DB: f64 = 0.0;

/// The fault of an anomalous clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anomaly {
    /// An extra resonance peak high up, where normal clips have only floor.
    Resonance,
    /// The fundamental (and its harmonics) shifted up by 4 to 8 bins.
    ShiftedFundamental,
    /// Broadband rise of the bins above 80.
    BearingNoise,
    /// One of harmonics 2 to 4 absent.
    MissingHarmonic,
}

const ANOMALIES: [Anomaly; 4] = [
    Anomaly::Resonance,
    Anomaly::ShiftedFundamental,
    Anomaly::BearingNoise,
    Anomaly::MissingHarmonic,
];

/// One row: 640 features (dB, frame-major) and the fault, if any.
#[derive(Debug, Clone)]
struct Clip {
    features: Vec<f64>,
    anomaly: Option<Anomaly>,
}

/// splitmix64: small, fast and good enough for synthetic data.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    /// A stream for `seed`; `stream` separates the train and test sets.
    fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Uniform in 0..n (n > 0; the modulo bias is negligible for small n).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box-Muller).
    fn gaussian(&mut self) -> f64 {
        let radius = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        radius * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// Mel (HTK formula) of a frequency in Hz, and back.
fn mel(hz: f64) -> f64 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (10f64.powf(mel / 2595.0) - 1.0)
}

/// Fractional mel bin of a frequency, and back.
fn hz_to_bin(hz: f64) -> f64 {
    mel(hz) / mel(MEL_TOP_HZ) * (N_BINS - 1) as f64
}

fn bin_to_hz(bin: f64) -> f64 {
    mel_to_hz(bin / (N_BINS - 1) as f64 * mel(MEL_TOP_HZ))
}

/// The noise floor at a (fractional) bin, dB.
fn floor_db(bin: f64) -> f64 {
    FLOOR_LOW_DB + (FLOOR_HIGH_DB - FLOOR_LOW_DB) * bin / (N_BINS - 1) as f64
}

fn db_to_power(db: f64) -> f64 {
    10f64.powf(db / 10.0)
}

/// A spectral peak: centre bin, height above the floor at the centre (dB), width (bins).
#[derive(Debug, Clone, Copy)]
struct Peak {
    bin: f64,
    height_db: f64,
    width: f64,
}

/// Draws one clip, normal when `anomaly` is `None`.
fn clip(rng: &mut Rng, anomaly: Option<Anomaly>) -> Clip {
    // Per-clip variation of the machine.
    let gain_db = rng.range(-2.0, 2.0);
    let drift_db_per_frame = rng.range(-0.25, 0.25);
    let mut fundamental_bin = FUNDAMENTAL_BIN + rng.range(-1.0, 1.0);
    if anomaly == Some(Anomaly::ShiftedFundamental) {
        fundamental_bin += rng.range(1.5, 3.0);
    }
    let fundamental_hz = bin_to_hz(fundamental_bin);
    let mut peaks: Vec<Peak> = HARMONICS
        .iter()
        .enumerate()
        .map(|(index, &(height_db, width))| Peak {
            bin: hz_to_bin((index + 1) as f64 * fundamental_hz),
            height_db: height_db + rng.range(-1.5, 1.5),
            width,
        })
        .collect();

    // The fault.
    let mut bearing_rise_db = 0.0;
    match anomaly {
        None | Some(Anomaly::ShiftedFundamental) => {}
        Some(Anomaly::Resonance) => peaks.push(Peak {
            bin: rng.range(56.0, 104.0),
            height_db: rng.range(5.0, 10.0),
            width: rng.range(1.5, 2.5),
        }),
        Some(Anomaly::BearingNoise) => bearing_rise_db = rng.range(2.5, 5.0),
        Some(Anomaly::MissingHarmonic) => {
            // A worn part: one harmonic much weaker than in any normal clip.
            let peak = 1 + rng.below(HARMONICS.len() - 1);
            peaks[peak].height_db -= rng.range(8.0, 12.0);
        }
    }

    // The clip's mean spectrum: floor and peaks add as powers.
    let spectrum_db: Vec<f64> = (0..N_BINS)
        .map(|bin| {
            let bin = bin as f64;
            // A smooth step of `bearing_rise_db` centred on bin 80.
            let rise_db = bearing_rise_db / (1.0 + (-(bin - 80.0) / 1.5).exp());
            let mut power = db_to_power(floor_db(bin) + rise_db);
            for peak in &peaks {
                let distance = (bin - peak.bin) / peak.width;
                power += db_to_power(floor_db(peak.bin) + peak.height_db)
                    * (-0.5 * distance * distance).exp();
            }
            10.0 * power.log10() + gain_db
        })
        .collect();

    // Frames: drift and per-bin noise.
    let mut features = Vec::with_capacity(N_FEATURES);
    for frame in 0..N_FRAMES {
        let drift_db = drift_db_per_frame * (frame as f64 - (N_FRAMES - 1) as f64 / 2.0);
        for &db in &spectrum_db {
            features.push((db + drift_db + rng.gaussian()).clamp(MIN_DB, MAX_DB));
        }
    }
    Clip { features, anomaly }
}

/// `n` normal clips.
fn train_set(n: usize, seed: u64) -> Vec<Clip> {
    let mut rng = Rng::new(seed, 1);
    (0..n).map(|_| clip(&mut rng, None)).collect()
}

/// `n` clips, `n / 2` of them anomalous (the odd one out is normal), shuffled.
fn test_set(n: usize, seed: u64) -> Vec<Clip> {
    let mut rng = Rng::new(seed, 2);
    let n_anomalous = n / 2;
    let mut labels: Vec<Option<Anomaly>> = (0..n)
        .map(|row| (row < n_anomalous).then(|| ANOMALIES[rng.below(ANOMALIES.len())]))
        .collect();
    // Fisher-Yates.
    for row in (1..n).rev() {
        labels.swap(row, rng.below(row + 1));
    }
    labels
        .into_iter()
        .map(|label| clip(&mut rng, label))
        .collect()
}

/// Appends `value` with 2 decimals (`-68.28`), never as `-0.00`.
fn push_centi(text: &mut String, value: f64) {
    let centi = (value * 100.0).round() as i64;
    let sign = if centi < 0 { "-" } else { "" };
    let magnitude = centi.unsigned_abs();
    let _ = write!(text, "{sign}{}.{:02}", magnitude / 100, magnitude % 100);
}

/// The CSV text: a header `f0,...,f639,anomaly`, then one line per clip.
fn to_csv(clips: &[Clip]) -> String {
    let mut text = String::with_capacity((clips.len() + 1) * N_FEATURES * 7);
    for feature in 0..N_FEATURES {
        let _ = write!(text, "f{feature},");
    }
    text.push_str("anomaly\n");
    for clip in clips {
        for &value in &clip.features {
            push_centi(&mut text, value);
            text.push(',');
        }
        text.push(if clip.anomaly.is_some() { '1' } else { '0' });
        text.push('\n');
    }
    text
}

/// Writes `text` to `path` through `path.tmp` and a rename, so a reader never sees half
/// a file.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Mean squared distance (dB^2) of `rows` to `centre`.
fn mean_squared_distance<'a>(rows: impl Iterator<Item = &'a [f64]>, centre: &[f64]) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for row in rows {
        sum += row
            .iter()
            .zip(centre)
            .map(|(x, c)| (x - c) * (x - c))
            .sum::<f64>();
        count += 1;
    }
    sum / count.max(1) as f64
}

/// The feature-wise mean of `clips`.
fn mean_row(clips: &[Clip]) -> Vec<f64> {
    let mut mean = vec![0.0; N_FEATURES];
    for clip in clips {
        for (m, x) in mean.iter_mut().zip(&clip.features) {
            *m += x;
        }
    }
    mean.iter_mut()
        .for_each(|m| *m /= clips.len().max(1) as f64);
    mean
}

/// Runs the subcommand with the arguments that follow `sensor-data`.
pub fn run(args: &[String]) -> Result<()> {
    let mut out = workspace_root().join("target/sensor-data");
    let (mut n_train, mut n_test, mut seed) = (2000usize, 600usize, 1u64);
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let value = iter
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || -> Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag}: `{value}` is not a non-negative integer"))
        };
        match flag.as_str() {
            "--out" => out = PathBuf::from(value),
            "--train" => n_train = number()? as usize,
            "--test" => n_test = number()? as usize,
            "--seed" => seed = number()?,
            other => bail!(
                "cargo xtask sensor-data: unknown flag {other}; expected --out DIR, --train N, \
                 --test N or --seed S"
            ),
        }
    }
    ensure!(n_train >= 1, "--train must be at least 1");
    ensure!(n_test >= 2, "--test must be at least 2");

    let train = train_set(n_train, seed);
    let test = test_set(n_test, seed);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    write_atomically(&out.join("train.csv"), &to_csv(&train))?;
    write_atomically(&out.join("test.csv"), &to_csv(&test))?;

    let all = train.iter().chain(&test).flat_map(|clip| &clip.features);
    let (mut min, mut max, mut sum, mut count) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for &value in all {
        min = min.min(value);
        max = max.max(value);
        sum += value;
        count += 1;
    }
    let centre = mean_row(&train);
    let distance = |anomalous: bool| {
        let rows = test
            .iter()
            .filter(|clip| clip.anomaly.is_some() == anomalous);
        mean_squared_distance(rows.map(|clip| clip.features.as_slice()), &centre)
    };
    let n_anomalous = test.iter().filter(|clip| clip.anomaly.is_some()).count();
    println!(
        "wrote {} ({n_train} normal rows) and {} ({} normal, {n_anomalous} anomalous), seed {seed}",
        out.join("train.csv").display(),
        out.join("test.csv").display(),
        n_test - n_anomalous,
    );
    println!(
        "features (dB): min {min:.2}, max {max:.2}, mean {:.2}; mean squared distance to the \
         mean train row: normal test rows {:.0}, anomalous {:.0}",
        sum / count as f64,
        distance(false),
        distance(true),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Parses a CSV written by `to_csv` into rows of 640 features and a label, checking
    /// the header and every row's shape.
    fn parse(text: &str) -> Vec<(Vec<f64>, u8)> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
        assert_eq!(header.len(), N_FEATURES + 1);
        assert_eq!(header[0], "f0");
        assert_eq!(header[N_FEATURES - 1], "f639");
        assert_eq!(header[N_FEATURES], "anomaly");
        lines
            .map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                assert_eq!(fields.len(), N_FEATURES + 1, "641 columns");
                let features = fields[..N_FEATURES]
                    .iter()
                    .map(|field| {
                        let decimals = field.split_once('.').expect("a decimal point").1;
                        assert_eq!(decimals.len(), 2, "2 decimals: {field}");
                        field.parse().expect("a number")
                    })
                    .collect();
                let label = fields[N_FEATURES].parse().expect("a 0/1 label");
                (features, label)
            })
            .collect()
    }

    #[test]
    fn sensor_data_is_deterministic() {
        let (a, b, c) = (test_set(40, 7), test_set(40, 7), test_set(40, 8));
        assert_eq!(to_csv(&a), to_csv(&b));
        assert_ne!(to_csv(&a), to_csv(&c));
        assert_eq!(to_csv(&train_set(30, 7)), to_csv(&train_set(30, 7)));
        assert_ne!(to_csv(&train_set(30, 7)), to_csv(&train_set(30, 8)));
        // The train and test streams differ even for the same seed.
        assert_ne!(to_csv(&train_set(10, 7)), to_csv(&test_set(20, 7)[..10]));
    }

    #[test]
    fn sensor_data_shape_range_labels_and_separability() {
        let started = std::time::Instant::now();
        let (train_clips, test_clips) = (train_set(2000, 1), test_set(600, 1));
        let (train_text, test_text) = (to_csv(&train_clips), to_csv(&test_clips));
        eprintln!("2000 + 600 rows generated in {:?}", started.elapsed());
        let (train, test) = (parse(&train_text), parse(&test_text));
        assert_eq!((train.len(), test.len()), (2000, 600));

        for (features, _) in train.iter().chain(&test) {
            assert!(features
                .iter()
                .all(|x| x.is_finite() && (MIN_DB..=MAX_DB).contains(x)));
        }
        assert!(train.iter().all(|(_, label)| *label == 0));
        let n_anomalous = test.iter().filter(|(_, label)| *label == 1).count();
        assert_eq!(n_anomalous, 300);
        assert!(test.iter().all(|(_, label)| *label <= 1));
        // Interleaved, not one block after the other.
        assert!(test[..100].iter().any(|(_, label)| *label == 0));
        assert!(test[..100].iter().any(|(_, label)| *label == 1));

        // Normal rows vary: no two train rows are the same, and even the closest pair of
        // the first 100 rows is far apart.
        let distinct: HashSet<&str> = train_text.lines().collect();
        assert_eq!(distinct.len(), 2001);
        let mut closest = f64::INFINITY;
        for i in 0..100 {
            for j in 0..i {
                let d = mean_squared_distance(std::iter::once(train[i].0.as_slice()), &train[j].0);
                closest = closest.min(d);
            }
        }
        assert!(closest > 100.0, "closest normal pair: {closest}");

        // Anomalous rows lie farther from the mean normal row than normal rows do.
        let mut centre = vec![0.0; N_FEATURES];
        for (features, _) in &train {
            for (c, x) in centre.iter_mut().zip(features) {
                *c += x / train.len() as f64;
            }
        }
        let distance = |label: u8| {
            let rows = test.iter().filter(|(_, l)| *l == label);
            mean_squared_distance(rows.map(|(f, _)| f.as_slice()), &centre)
        };
        let (normal, anomalous) = (distance(0), distance(1));
        eprintln!("mean squared distance: normal {normal:.0}, anomalous {anomalous:.0}");
        assert!(anomalous > 1.5 * normal, "{anomalous} vs {normal}");

        // So does each kind of fault on its own, and every kind occurs.
        let centre = mean_row(&train_clips);
        for kind in ANOMALIES {
            let rows: Vec<&[f64]> = test_clips
                .iter()
                .filter(|clip| clip.anomaly == Some(kind))
                .map(|clip| clip.features.as_slice())
                .collect();
            assert!(rows.len() > 30, "{kind:?}: {} rows", rows.len());
            let d = mean_squared_distance(rows.into_iter(), &centre);
            eprintln!("{kind:?}: {d:.0}");
            assert!(d > normal, "{kind:?}: {d} vs normal {normal}");
        }
    }
}
