//! `cargo xtask qat-table`: what quantization-aware training buys, per model, as a Markdown
//! table (the figures in docs/quantization.md).
//!
//! For each configuration and seed: train the float model (`kiln fit`'s training defaults:
//! Adam at 0.003, up to 60 epochs, early stopping with patience 5 on a 0.1 validation split),
//! quantize it after training (PTQ), and fine-tune the same float model with
//! `kiln quantize --qat-epochs 5` (QAT). Accuracies are the runtime's on the whole test set
//! (the float model's for "float"); every run also requires the trainer's integer forward pass
//! to equal the runtime on every test sample (`trainer_identical`).

use crate::ci::kiln_ok;
use anyhow::{bail, ensure, Context, Result};
use std::path::PathBuf;

struct Options {
    mnist: PathBuf,
    seeds: u64,
    out: PathBuf,
}

/// One configuration: a name, the data and the `kiln train` flags.
struct Config {
    name: &'static str,
    mnist: bool,
    flags: &'static [&'static str],
}

const CONFIGS: &[Config] = &[
    Config {
        name: "digits 64-16-10",
        mnist: false,
        flags: &["--hidden", "16"],
    },
    Config {
        name: "MNIST 784-16-10",
        mnist: true,
        flags: &["--hidden", "16"],
    },
    Config {
        name: "MNIST 784-32-10",
        mnist: true,
        flags: &["--hidden", "32"],
    },
    Config {
        name: "MNIST 784-128-10",
        mnist: true,
        flags: &["--hidden", "128"],
    },
    Config {
        name: "digits 64-16-10, standardized",
        mnist: false,
        flags: &["--hidden", "16", "--normalize", "standardize"],
    },
    Config {
        name: "MNIST 784-16-10, standardized",
        mnist: true,
        flags: &["--hidden", "16", "--normalize", "standardize"],
    },
    Config {
        name: "MNIST 784-32-10, standardized",
        mnist: true,
        flags: &["--hidden", "32", "--normalize", "standardize"],
    },
];

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        mnist: PathBuf::from("../shared/data/mnist"),
        seeds: 3,
        out: PathBuf::from("target/qat-table"),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value"))
                .cloned()
        };
        match flag.as_str() {
            "--mnist" => options.mnist = PathBuf::from(value()?),
            "--seeds" => options.seeds = value()?.parse().context("--seeds: expected a count")?,
            "--out" => options.out = PathBuf::from(value()?),
            other => bail!(
                "cargo xtask qat-table: unknown flag {other}; expected --mnist DIR, --seeds N or --out DIR"
            ),
        }
    }
    ensure!(options.seeds > 0, "--seeds: expected at least 1");
    Ok(options)
}

fn accuracy(report: &serde_json::Value, field: &str) -> Result<f64> {
    report[field]
        .as_f64()
        .with_context(|| format!("kiln --json has no {field}"))
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let mnist_present = options.mnist.join("t10k-images-idx3-ubyte.gz").exists()
        || options.mnist.join("t10k-images-idx3-ubyte").exists();
    let mnist = format!("mnist:{}", options.mnist.display());
    let mut rows = Vec::new();
    for config in CONFIGS {
        if config.mnist && !mnist_present {
            println!(
                "skipping {}: no MNIST in {}",
                config.name,
                options.mnist.display()
            );
            continue;
        }
        let data = if config.mnist {
            mnist.as_str()
        } else {
            "digits"
        };
        let mut sums = [0.0f64; 3];
        for seed in 1..=options.seeds {
            let dir = options
                .out
                .join(config.name.replace([' ', ','], "_"))
                .join(format!("seed{seed}"));
            let path = |name: &str| dir.join(name).display().to_string();
            let seed_text = seed.to_string();
            let mut train = vec![
                "train",
                "--data",
                data,
                "--epochs",
                "60",
                "--lr",
                "0.003",
                "--val-split",
                "0.1",
                "--patience",
                "5",
                "--seed",
                &seed_text,
                "--threads",
                "2",
                "--no-plot",
                "--quiet",
                "--json",
            ];
            train.extend_from_slice(config.flags);
            let float_dir = path("float");
            train.extend_from_slice(&["-o", &float_dir]);
            kiln_ok(&train)?;
            let model = path("float/model.json");
            let ptq_dir = path("ptq");
            let ptq = kiln_ok(&["quantize", &model, "-o", &ptq_dir, "--quiet", "--json"])?;
            let qat_dir = path("qat");
            let qat = kiln_ok(&[
                "quantize",
                &model,
                "--qat-epochs",
                "5",
                "-o",
                &qat_dir,
                "--quiet",
                "--json",
            ])?;
            for report in [&ptq, &qat] {
                ensure!(
                    report["trainer_identical"] == report["test_samples"],
                    "{} seed {seed}: the trainer's int8 forward pass differs from the runtime",
                    config.name
                );
            }
            let figures = [
                accuracy(&ptq, "float_accuracy")?,
                accuracy(&ptq, "int8_accuracy")?,
                accuracy(&qat, "int8_accuracy")?,
            ];
            println!(
                "{} seed {seed}: float {:.4}, PTQ int8 {:.4}, QAT int8 {:.4}",
                config.name, figures[0], figures[1], figures[2]
            );
            for (sum, value) in sums.iter_mut().zip(figures) {
                *sum += value;
            }
        }
        let n = options.seeds as f64;
        let [float, ptq, qat] = sums.map(|sum| 100.0 * sum / n);
        let drop = float - ptq;
        let recovered = if drop >= 0.3 {
            format!("{:.0}%", 100.0 * (qat - ptq) / drop)
        } else {
            "(drop < 0.3 pt)".to_owned()
        };
        rows.push(format!(
            "| {} | {float:.2}% | {ptq:.2}% ({:+.2} pt) | {qat:.2}% ({:+.2} pt) | {recovered} |",
            config.name,
            ptq - float,
            qat - float
        ));
    }
    println!(
        "\nmean over {} seeds (test set; int8 = kiln-runtime)\n\n| model | float | PTQ int8 | QAT int8 | PTQ drop recovered |\n|---|---|---|---|---|",
        options.seeds
    );
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
