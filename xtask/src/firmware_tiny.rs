//! `cargo xtask bench-tiny`: MLPerf Tiny's three convolutional reference architectures
//! (ResNet-8, DS-CNN, MobileNetV1 0.25; `kiln train --layers resnet8` and its siblings) and its
//! anomaly-detection autoencoder, each run in QEMU by the firmware of `cargo xtask firmware`
//! with the host's CRC, in one table beside the published cycles per MAC.
//!
//! The benchmark's data sets are not available here, so each model is trained briefly on a
//! documented synthetic set of the benchmark's input shape (classes of coloured stripe
//! patterns for image classification, a bright figure on a textured ground for visual wake
//! words, `kws_synthetic`'s spectrograms for keyword spotting). Instruction counts depend on
//! the shapes, not the weights; the CRC checks the device against the host on every sample.

use crate::firmware::{self, Dataset, FirmwareOptions, Prepared, Row};
use anyhow::Result;
use std::path::Path;

/// Image classification: 10 classes of 32x32x3, training rows per class and held-out test rows
/// the firmware runs.
const IC_TRAIN_PER_CLASS: usize = 24;
const IC_TEST_PER_CLASS: usize = 1;
/// Visual wake words: 2 classes of 96x96x3.
const VWW_TRAIN_PER_CLASS: usize = 60;
const VWW_TEST_PER_CLASS: usize = 2;

/// Published MLPerf Tiny results (MLCommons tiny_results v0.5 to v1.3) as cycles per MAC:
/// latency x clock / MACs. `(system, core, [KWS, VWW, IC])`.
const PUBLISHED: [(&str, &str, [f64; 3]); 4] = [
    ("ST X-CUBE-AI 9.0", "Cortex-M4 120 MHz", [1.95, 1.42, 1.58]),
    ("Plumerai", "Cortex-M4 120 MHz", [2.16, 1.58, 1.61]),
    (
        "TFLM 2.3.1 + CMSIS-NN (reference submission)",
        "Cortex-M4 120 MHz",
        [8.2, 9.6, 6.8],
    ),
    ("ST X-CUBE-AI 9.0", "Cortex-M7 280 MHz", [1.19, 0.89, 0.91]),
];

/// A xorshift32 stream: the synthetic sets are the same on every machine.
struct Noise(u32);

impl Noise {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        f64::from(self.next() >> 8) / f64::from(1u32 << 24)
    }
}

/// One synthetic image, HWC bytes (the device's order).
type Image = Vec<u8>;

/// Image classification: class `k` is a stripe pattern of its own angle, frequency and colour
/// at a random phase, with noise.
fn ic_image(class: usize, noise: &mut Noise) -> Image {
    let angle = class as f64 * std::f64::consts::PI / 10.0;
    let frequency = 2.0 + (class % 3) as f64;
    let colour = [
        (class * 37 % 10) as f64 / 10.0,
        (class * 53 % 10) as f64 / 10.0,
        (class * 71 % 10) as f64 / 10.0,
    ];
    let phase = noise.unit() * std::f64::consts::TAU;
    let (dx, dy) = (angle.cos(), angle.sin());
    let mut image = Vec::with_capacity(32 * 32 * 3);
    for y in 0..32 {
        for x in 0..32 {
            let t = (x as f64 * dx + y as f64 * dy) / 32.0;
            let stripe = (std::f64::consts::TAU * frequency * t + phase).sin();
            for c in colour {
                let value = 128.0 + 70.0 * stripe * (0.4 + c) + 40.0 * (noise.unit() - 0.5);
                image.push(value.clamp(0.0, 255.0) as u8);
            }
        }
    }
    image
}

/// Visual wake words: class 1 has a bright upright figure (a head over a body) at a random
/// place; both classes share a textured ground.
fn vww_image(class: usize, noise: &mut Noise) -> Image {
    let (cx, cy) = (24.0 + 48.0 * noise.unit(), 40.0 + 24.0 * noise.unit());
    let (gx, gy) = (noise.unit() * 6.0, noise.unit() * 6.0);
    let mut image = Vec::with_capacity(96 * 96 * 3);
    for y in 0..96 {
        for x in 0..96 {
            let (xf, yf) = (x as f64, y as f64);
            let ground = 60.0 + 30.0 * ((xf + gx) / 5.0).sin() * ((yf + gy) / 7.0).cos();
            let head = ((xf - cx) / 7.0).powi(2) + ((yf - (cy - 20.0)) / 8.0).powi(2) < 1.0;
            let body = ((xf - cx) / 12.0).powi(2) + ((yf - (cy + 6.0)) / 22.0).powi(2) < 1.0;
            let figure = class == 1 && (head || body);
            for (channel, tint) in [1.0, 0.8, 0.65].iter().enumerate() {
                let value = if figure {
                    200.0 * tint
                } else {
                    ground + 10.0 * channel as f64
                };
                image.push((value + 30.0 * (noise.unit() - 0.5)).clamp(0.0, 255.0) as u8);
            }
        }
    }
    image
}

/// A CSV line of an HWC image: the trainer's features are CHW (ONNX's order).
fn chw_csv_line(image: &[u8], (h, w, c): (usize, usize, usize), class: usize) -> String {
    let mut fields = Vec::with_capacity(image.len() + 1);
    for channel in 0..c {
        for y in 0..h {
            for x in 0..w {
                fields.push(image[(y * w + x) * c + channel].to_string());
            }
        }
    }
    fields.push(class.to_string());
    fields.join(",") + "\n"
}

/// The synthetic set of `dataset` (`Ic` or `Vww`): train and test CSVs in `dir`, and the test
/// images (HWC) with their labels.
fn write_synthetic(dataset: Dataset, dir: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let (shape, classes, train_per_class, test_per_class, seed) = match dataset {
        Dataset::Ic => (
            (32, 32, 3),
            10,
            IC_TRAIN_PER_CLASS,
            IC_TEST_PER_CLASS,
            0x1c0f_fee1,
        ),
        Dataset::Vww => (
            (96, 96, 3),
            2,
            VWW_TRAIN_PER_CLASS,
            VWW_TEST_PER_CLASS,
            0x0bb0_5eed,
        ),
        other => anyhow::bail!("{}: not an MLPerf Tiny image set", other.label()),
    };
    let mut noise = Noise(seed);
    let mut image = |class: usize| match dataset {
        Dataset::Ic => ic_image(class, &mut noise),
        _ => vww_image(class, &mut noise),
    };
    let mut train = String::new();
    for idx in 0..classes * train_per_class {
        train.push_str(&chw_csv_line(&image(idx % classes), shape, idx % classes));
    }
    let (mut test, mut pixels, mut labels) = (String::new(), Vec::new(), Vec::new());
    for idx in 0..classes * test_per_class {
        let values = image(idx % classes);
        test.push_str(&chw_csv_line(&values, shape, idx % classes));
        pixels.extend_from_slice(&values);
        labels.push((idx % classes) as u8);
    }
    std::fs::write(dir.join("train.csv"), train)?;
    std::fs::write(dir.join("test.csv"), test)?;
    Ok((pixels, labels))
}

/// What `firmware::prepare` takes from a data set: the test images (device order), their
/// labels, the input width, the `--data` the model was trained on and a description.
pub(crate) type TrainedSet = (Vec<u8>, Vec<u8>, usize, String, String);

/// Trains the `Ic` or `Vww` model on its synthetic set.
pub(crate) fn train(dataset: Dataset, dir: &Path) -> Result<TrainedSet> {
    let (pixels, labels) = write_synthetic(dataset, dir)?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let data = format!("csv:{}", s(&dir.join("train.csv")));
    let (shape, layers, n_inputs) = match dataset {
        Dataset::Ic => ("32x32x3", "resnet8", 32 * 32 * 3),
        _ => ("96x96x3", "mobilenet-v1-0.25", 96 * 96 * 3),
    };
    firmware::kiln(&[
        "train",
        "--data",
        &data,
        "--test-data",
        &s(&dir.join("test.csv")),
        "--label-column",
        "last",
        "--input-shape",
        shape,
        "--layers",
        layers,
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
        // One epoch of small batches: the counts depend on the shapes, not the accuracy.
        "--epochs",
        "1",
        "--batch",
        "8",
        "--threads",
        "2",
        "-o",
        &s(dir),
        "--quiet",
        "--no-plot",
        "--no-check",
    ])?;
    let description = format!(
        "{} {shape} `--layers {layers}` (1 epoch on {} synthetic rows), {} held-out synthetic rows",
        dataset.label(),
        match dataset {
            Dataset::Ic => 10 * IC_TRAIN_PER_CLASS,
            _ => 2 * VWW_TRAIN_PER_CLASS,
        },
        labels.len()
    );
    Ok((pixels, labels, n_inputs, data, description))
}

/// The boards `bench-tiny` runs by default: Cortex-M4F and M7 (4 MiB each), the M3 with
/// 4 MiB; the 16 KiB-RAM boards (Cortex-M0, RV32) are reported as not fitting.
const BOARDS: [&str; 5] = [
    "mps2-an386",
    "mps2-an500",
    "mps2-an385",
    "microbit",
    "sifive-e",
];
const MODELS: [Dataset; 4] = [Dataset::Kws, Dataset::Vww, Dataset::Ic, Dataset::AnomalyAe];

/// `cargo xtask bench-tiny [--board NAME]... [--out DIR]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut options = FirmwareOptions::parse(args)?;
    if options.only.is_empty() {
        options.only = BOARDS.iter().map(|b| (*b).to_owned()).collect();
    }
    let boards = firmware::boards(&options.only);
    let plugin = firmware::prepare_tools(&boards, &options)?;
    let mut prepared: Vec<Prepared> = Vec::new();
    for dataset in MODELS {
        let started = std::time::Instant::now();
        prepared.push(firmware::prepare(dataset, &options)?);
        println!(
            "== {} prepared in {:.1} s",
            dataset.label(),
            started.elapsed().as_secs_f64()
        );
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut not_fitting = Vec::new();
    for board in boards {
        let ram = firmware::memory_length(board, "RAM")?;
        let flash = firmware::memory_length(board, "FLASH")?;
        for data in &prepared {
            // The arena, the blob and the samples must fit beside the code and the stack.
            let samples = data.pixels.len() + 4 * data.raw_inputs.len();
            if (data.scratch_len as u64) + 8192 > ram
                || (data.blob.len() + samples) as u64 + 65536 > flash
            {
                not_fitting.push(format!(
                    "{} ({}): {}: arena {} B of {ram} B RAM, blob {} B + samples {samples} B \
                     of {flash} B flash: not built",
                    board.name,
                    board.core,
                    data.dataset.label(),
                    data.scratch_len,
                    data.blob.len()
                ));
                continue;
            }
            rows.push(firmware::run_board(board, data, &plugin, &options.out)?);
        }
    }
    print_table(&rows, &prepared, &not_fitting);
    Ok(())
}

fn print_table(rows: &[Row], prepared: &[Prepared], not_fitting: &[String]) {
    println!(
        "\ncargo xtask bench-tiny: MLPerf Tiny's models in QEMU, every sample's outputs equal to \
         the host's (CRC-32)\n"
    );
    for data in prepared {
        println!("- {}: {}", data.dataset.label(), data.description);
    }
    println!(
        "\n| model | board | core | MACs | blob B | flash B | arena B | without reuse B | \
         static RAM B | stack B | instructions per inference | instructions per MAC |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for row in rows {
        let data = prepared
            .iter()
            .find(|p| p.dataset == row.dataset)
            .expect("every row's model is prepared");
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.3} |",
            row.dataset.label(),
            row.board.name,
            row.board.core,
            row.macs,
            row.model_flash,
            row.firmware_flash,
            data.arena_len,
            data.no_reuse_len,
            row.static_ram,
            row.stack_peak,
            row.insns_network,
            row.insns_per_mac
        );
    }
    for line in not_fitting {
        println!("\n{line}");
    }
    println!(
        "\nPublished cycles per MAC (latency x clock / MACs; a cycle is never less than an \
         instruction on these cores):\n\n| system | core | KWS | VWW | IC |\n|---|---|---|---|---|"
    );
    for (system, core, [kws, vww, ic]) in PUBLISHED {
        println!("| {system} | {core} | {kws} | {vww} | {ic} |");
    }
}

/// The synthetic sets are deterministic and of the benchmark's shapes.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_images_have_the_benchmark_shapes_and_differ_by_class() {
        let mut noise = Noise(1);
        let (a, b) = (ic_image(0, &mut noise), ic_image(5, &mut noise));
        assert_eq!((a.len(), b.len()), (3072, 3072));
        assert_ne!(a, b);
        let (person, ground) = (vww_image(1, &mut noise), vww_image(0, &mut noise));
        assert_eq!(person.len(), 96 * 96 * 3);
        let mean = |v: &[u8]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!(mean(&person) > mean(&ground) + 5.0, "the figure is bright");
        // CHW order in the CSV: the first field is pixel (0, 0)'s red, the second (0, 1)'s.
        let line = chw_csv_line(&a, (32, 32, 3), 0);
        let fields: Vec<&str> = line.trim().split(',').collect();
        assert_eq!(fields[0], a[0].to_string());
        assert_eq!(fields[1], a[3].to_string());
        assert_eq!(fields[1024], a[1].to_string());
        assert_eq!(fields.len(), 3073);
    }

    #[test]
    fn the_noise_is_marsaglias_xorshift32() {
        // Marsaglia's xorshift32 (13, 17, 5) from 1.
        let mut noise = Noise(1);
        assert_eq!([noise.next(), noise.next()], [270_369, 67_634_689]);
    }
}
