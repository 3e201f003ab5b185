//! `cargo xtask bench-train`: seconds per epoch and test accuracy of kiln's MNIST
//! configurations next to scikit-learn's `MLPClassifier` on the same data and settings,
//! measured side by side in one run with the release build.
//!
//! This is a benchmark, not a test: it prints figures and asserts nothing about time,
//! because this machine is shared and noisy.
//!
//! Both sides train 784-128-10 with ReLU and softmax cross-entropy on pixels x/255, in
//! shuffled mini-batches of 64, for the same number of epochs, with a constant learning
//! rate and no weight decay (kiln `--weight-decay 0 --schedule constant`, scikit-learn
//! `alpha=0`, `learning_rate="constant"`), and scikit-learn with no early stopping and no
//! convergence test. Both initialise weights Glorot-uniform (kiln `--init xavier`; scikit-learn
//! also draws its biases from that range, kiln starts them at 0). scikit-learn runs on one
//! BLAS thread.
//!
//! Test accuracy moves by about 0.002 from seed to seed, as much as the engines differ, so
//! every engine runs every configuration with seeds 0 to 4 (kiln `--seed`, scikit-learn
//! `random_state`), seed by seed in turn, and the table gives the mean time per epoch, the
//! mean accuracy and each seed's accuracy (`--seeds N` runs the first N only). The whole
//! bench takes about six minutes on the development machine.

use crate::ci::{workspace_root, CLASSIC_FLAGS};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Config {
    name: &'static str,
    /// kiln flags after the shared ones (`CLASSIC_FLAGS` for SGD, the same shape for Adam).
    kiln: &'static [&'static str],
    /// The same run for `bench_sklearn.py`.
    sklearn: &'static [&'static str],
    epochs: &'static str,
}

/// What both sides share beyond each configuration: constant rate, no L2, Glorot init.
const FAIRNESS_FLAGS: &[&str] = &[
    "--schedule",
    "constant",
    "--weight-decay",
    "0",
    "--init",
    "xavier",
];

const CONFIGS: &[Config] = &[
    Config {
        name: "classic sgd, 5 epochs",
        kiln: CLASSIC_FLAGS,
        sklearn: &["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0"],
        epochs: "5",
    },
    Config {
        name: "adam, 20 epochs",
        kiln: &[
            "--hidden",
            "128",
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
            "--batch",
            "64",
        ],
        sklearn: &["--optimizer", "adam", "--lr", "0.001"],
        epochs: "20",
    },
];

/// kiln runs each configuration with these `--threads` values.
const KILN_THREADS: &[usize] = &[1, 2];

/// Both sides run every configuration with each of these seeds (kiln `--seed`, scikit-learn
/// `random_state`): test accuracy moves by about 0.002 from seed to seed, more than the
/// engines differ, so one seed cannot say which is more accurate; with three, the SGD
/// means still differed by 0.0017 one way and with seven by 0.0004.
const SEEDS: &[u64] = &[0, 1, 2, 3, 4];

/// One measured run.
struct Run {
    seconds: f64,
    accuracy: f64,
}

/// Every seed's run of one engine on one configuration.
struct Row {
    config: &'static str,
    engine: String,
    runs: Vec<Run>,
}

impl Row {
    fn mean(&self, value: impl Fn(&Run) -> f64) -> f64 {
        self.runs.iter().map(value).sum::<f64>() / self.runs.len().max(1) as f64
    }

    fn seconds(&self) -> f64 {
        self.mean(|run| run.seconds)
    }

    fn accuracy(&self) -> f64 {
        self.mean(|run| run.accuracy)
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let mut mnist = root.join("../shared/data/mnist");
    let mut only: Option<usize> = None;
    let mut with_sklearn = true;
    let mut n_seeds = SEEDS.len();
    let mut python = std::env::var_os("KILN_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "--mnist" => mnist = PathBuf::from(iter.next().context("--mnist needs a folder")?),
            "--only" => {
                only = Some(
                    iter.next()
                        .context("--only needs 1 or 2")?
                        .parse::<usize>()?
                        .saturating_sub(1),
                )
            }
            "--python" => python = PathBuf::from(iter.next().context("--python needs a path")?),
            "--no-sklearn" => with_sklearn = false,
            "--seeds" => {
                n_seeds = iter.next().context("--seeds needs a count")?.parse()?;
                ensure!(
                    (1..=SEEDS.len()).contains(&n_seeds),
                    "--seeds: expected 1 to {}",
                    SEEDS.len()
                );
            }
            other => bail!(
                "cargo xtask bench-train: unknown flag {other}; expected --mnist DIR, --only 1|2, --seeds N, --python PATH or --no-sklearn"
            ),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--package",
            "kiln-trainer",
            "--bin",
            "kiln",
        ])
        .status()?;
    ensure!(status.success(), "the release build failed");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let kiln = target_dir.join("release/kiln");
    let venv_python = if with_sklearn {
        Some(bench_venv(&root, &python)?)
    } else {
        None
    };

    let seeds = &SEEDS[..n_seeds];
    let mut rows = Vec::new();
    for (idx, config) in CONFIGS.iter().enumerate() {
        if only.is_some_and(|o| o != idx) {
            continue;
        }
        let mut config_rows: Vec<Row> = KILN_THREADS
            .iter()
            .map(|threads| Row {
                config: config.name,
                engine: format!("kiln --threads {threads}"),
                runs: Vec::new(),
            })
            .collect();
        if venv_python.is_some() {
            config_rows.push(Row {
                config: config.name,
                engine: "scikit-learn".into(),
                runs: Vec::new(),
            });
        }
        // Seed by seed, every engine in turn, so that a change in the machine's load
        // falls on all of them alike.
        for &seed in seeds {
            for (row, &threads) in config_rows.iter_mut().zip(KILN_THREADS) {
                row.runs
                    .push(run_kiln(&root, &kiln, &mnist, idx, config, threads, seed)?);
            }
            if let Some(venv_python) = &venv_python {
                let run = run_sklearn(&root, venv_python, &mnist, config, seed)?;
                config_rows
                    .last_mut()
                    .expect("the scikit-learn row")
                    .runs
                    .push(run);
            }
        }
        rows.extend(config_rows);
    }

    println!(
        "\nMean over seeds {seeds:?}; the ratio is scikit-learn's mean time over this row's.\n"
    );
    println!(
        "{:<24} {:<18} {:>11} {:>9}  {:<34} {:>14}",
        "configuration", "engine", "s per epoch", "accuracy", "accuracy per seed", "sklearn / this"
    );
    for row in &rows {
        let baseline = rows
            .iter()
            .find(|r| r.config == row.config && r.engine == "scikit-learn")
            .map(Row::seconds);
        let ratio = baseline.map_or_else(
            || "-".to_string(),
            |seconds| format!("{:.2}x", seconds / row.seconds()),
        );
        let per_seed = row
            .runs
            .iter()
            .map(|run| format!("{:.4}", run.accuracy))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<24} {:<18} {:>11.3} {:>9.4}  {:<34} {:>14}",
            row.config,
            row.engine,
            row.seconds(),
            row.accuracy(),
            per_seed,
            ratio
        );
    }
    Ok(())
}

fn run_kiln(
    root: &Path,
    kiln: &Path,
    mnist: &Path,
    idx: usize,
    config: &Config,
    threads: usize,
    seed: u64,
) -> Result<Run> {
    let out = root.join(format!("kiln-out/bench-{idx}-t{threads}-s{seed}"));
    let mut flags: Vec<String> = config.kiln.iter().map(|s| s.to_string()).collect();
    flags.extend(FAIRNESS_FLAGS.iter().map(|s| s.to_string()));
    flags.extend(["--epochs".to_string(), config.epochs.to_string()]);
    flags.extend(["--seed".to_string(), seed.to_string()]);
    if threads != 1 {
        flags.extend(["--threads".to_string(), threads.to_string()]);
    }
    println!(
        "$ kiln train --data mnist:{} {} -o {}",
        mnist.display(),
        flags.join(" "),
        out.display()
    );
    let output = Command::new(kiln)
        .arg("train")
        .arg("--data")
        .arg(format!("mnist:{}", mnist.display()))
        .args(&flags)
        .args(["--quiet", "--json", "-o"])
        .arg(&out)
        .output()
        .context("cannot run kiln")?;
    ensure!(
        output.status.success(),
        "{}: kiln failed: {}",
        config.name,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("kiln --json printed no JSON")?;
    Ok(Run {
        seconds: report["seconds_per_epoch"]
            .as_f64()
            .context("no seconds_per_epoch")?,
        accuracy: report["test_accuracy"]
            .as_f64()
            .context("no test_accuracy")?,
    })
}

fn run_sklearn(
    root: &Path,
    python: &Path,
    mnist: &Path,
    config: &Config,
    seed: u64,
) -> Result<Run> {
    let script = root.join("xtask/scripts/bench_sklearn.py");
    let seed = seed.to_string();
    println!(
        "$ bench_sklearn.py {} {} --epochs {} --batch 64 --hidden 128 --seed {seed}",
        mnist.display(),
        config.sklearn.join(" "),
        config.epochs
    );
    let output = Command::new(python)
        .arg(&script)
        .arg(mnist)
        .args(config.sklearn)
        .args([
            "--epochs",
            config.epochs,
            "--batch",
            "64",
            "--hidden",
            "128",
            "--seed",
            &seed,
        ])
        // One BLAS and OpenMP thread, whichever library numpy and scikit-learn loaded.
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output()
        .context("cannot run the scikit-learn benchmark")?;
    ensure!(
        output.status.success(),
        "{}: bench_sklearn.py failed: {}",
        config.name,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("bench_sklearn.py printed no JSON")?;
    println!(
        "  scikit-learn {}, numpy {}, {} weights, BLAS {}",
        report["sklearn"].as_str().unwrap_or("?"),
        report["numpy"].as_str().unwrap_or("?"),
        report["dtype"].as_str().unwrap_or("?"),
        report["blas"]
    );
    Ok(Run {
        seconds: report["seconds_per_epoch"]
            .as_f64()
            .context("no seconds_per_epoch")?,
        accuracy: report["test_accuracy"]
            .as_f64()
            .context("no test_accuracy")?,
    })
}

/// The venv with `xtask/scripts/requirements-bench.txt`, under `~/.cache/kiln-bench`;
/// created on first use and reinstalled whenever the requirements file changes.
fn bench_venv(root: &Path, python: &Path) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; cannot place the venv")?;
    let venv = PathBuf::from(home).join(".cache/kiln-bench/venv");
    let requirements_path = root.join("xtask/scripts/requirements-bench.txt");
    let requirements = std::fs::read_to_string(&requirements_path)
        .with_context(|| format!("cannot read {}", requirements_path.display()))?;
    let venv_python = venv.join("bin/python");
    let stamp = venv.join("kiln-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        return Ok(venv_python);
    }
    if !venv_python.exists() {
        println!("$ {} -m venv {}", python.display(), venv.display());
        let status = Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .with_context(|| format!("cannot run {}", python.display()))?;
        ensure!(
            status.success(),
            "creating the venv {} failed",
            venv.display()
        );
    }
    println!(
        "$ {} -m pip install -r {}",
        venv_python.display(),
        requirements_path.display()
    );
    let status = Command::new(&venv_python)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(&requirements_path)
        .status()
        .context("cannot run pip in the bench venv")?;
    ensure!(
        status.success(),
        "installing {} failed",
        requirements_path.display()
    );
    std::fs::write(&stamp, &requirements)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(venv_python)
}
