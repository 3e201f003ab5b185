//! Validated configurations built from the raw clap arguments.

use super::args::*;
use crate::data::{DataOptions, DataSpec, HeaderMode, LabelColumn, NormalizationKind, TargetKind};
use crate::export::ExportOptions;
use crate::nn::layer_spec::parse_layers;
use crate::nn::optim::OptimizerConfig;
use crate::nn::schedule::Schedule;
use crate::nn::shape::Shape;
use crate::nn::{Activation, Init, Loss};
use crate::train::TrainConfig;
use std::path::PathBuf;

/// The default L2 (sgd, adam) or decoupled (adamw) weight decay.
pub const DEFAULT_WEIGHT_DECAY: f32 = 5e-4;

/// A command-line value that cannot be used; reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Everything `kiln inspect` needs besides the file, validated.
#[derive(Debug, Clone)]
pub struct InspectConfig {
    pub flash_budget: Option<u64>,
    pub ram_budget: Option<u64>,
    /// The core named by `--core`, as `device_figures.json` names it; `None`: every core.
    pub core: Option<&'static str>,
}

pub fn inspect_config(args: &InspectArgs) -> Result<InspectConfig, UsageError> {
    Ok(InspectConfig {
        flash_budget: size_flag("--flash", args.flash.as_deref())?,
        ram_budget: size_flag("--ram", args.ram.as_deref())?,
        core: args.core.as_deref().map(core_flag).transpose()?,
    })
}

/// `--flash` or `--ram`: bytes, `K`/`KiB` or `M`/`MiB`.
fn size_flag(flag: &str, text: Option<&str>) -> Result<Option<u64>, UsageError> {
    text.map(|text| super::inspect::parse_size(flag, text))
        .transpose()
}

/// `--core`: the core as `device_figures.json` names it.
fn core_flag(name: &str) -> Result<&'static str, UsageError> {
    use super::device_figures::{core_by_name, CORE_NAMES};
    core_by_name(name).ok_or_else(|| {
        let names: Vec<&str> = CORE_NAMES.iter().map(|(cli, _)| *cli).collect();
        usage(format!(
            "--core: unknown core '{name}'; expected one of {}",
            names.join(", ")
        ))
    })
}

/// Everything `kiln train` needs, validated.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub data_spec: DataSpec,
    pub data_options: DataOptions,
    pub config: TrainConfig,
    pub out_dir: PathBuf,
    pub resume: bool,
    pub check: bool,
    /// Draw training.png and training.svg.
    pub plot: bool,
    /// Threads per training step (at least 1).
    pub threads: usize,
    pub export: ExportOptions,
    pub output: OutputArgs,
}

pub fn export_options(args: &OnnxArgs) -> Result<ExportOptions, UsageError> {
    let range = kiln_onnx::builder::MIN_OPSET..=kiln_onnx::builder::MAX_OPSET;
    if !range.contains(&args.opset) {
        return Err(usage(format!(
            "--opset: expected {} to {}, got {}",
            range.start(),
            range.end(),
            args.opset
        )));
    }
    Ok(ExportOptions {
        opset: args.opset,
        with_probabilities: args.probabilities,
    })
}

/// The data source and reading options, with defaults filled in.
/// The data a command runs a model file on: `--data` and its flags when given (the rows read
/// in the model's own order: a channels-last import's stays channels last), else the data
/// the model was trained or imported with.
pub fn model_data_config(
    args: &DataArgs,
    model: &crate::model::ModelFile,
) -> Result<(DataSpec, DataOptions), UsageError> {
    if args.data.is_none() {
        return Ok((model.data.clone(), model.data_options.clone()));
    }
    let (spec, mut options) = data_config(args, model.config.loss)?;
    options.channels_last = model.data_options.channels_last;
    Ok((spec, options))
}

pub fn data_config(args: &DataArgs, loss: Loss) -> Result<(DataSpec, DataOptions), UsageError> {
    let spec: DataSpec = match &args.data {
        Some(text) => text.parse().map_err(|e| usage(format!("--data: {e}")))?,
        None => DataSpec::Digits,
    };
    let mut options = DataOptions::default();
    if let Some(column) = &args.label_column {
        options.label_column = if column == "last" {
            LabelColumn::Last
        } else {
            LabelColumn::Index(column.parse().map_err(|_| {
                usage(format!(
                    "--label-column: expected a 0-based column index or `last`, got {column:?}"
                ))
            })?)
        };
    }
    if let Some(columns) = &args.targets {
        options.label_column = LabelColumn::Columns(parse_columns(columns)?);
    } else if args.autoencoder {
        options.label_column = LabelColumn::Inputs;
    }
    options.anomaly_column = args.anomaly_column;
    if let Some(header) = args.header {
        options.header = match header {
            HeaderArg::Auto => HeaderMode::Auto,
            HeaderArg::Yes => HeaderMode::Present,
            HeaderArg::No => HeaderMode::Absent,
        };
    }
    options.test_data = args.test_data.clone();
    if let Some(fraction) = args.test_split {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(usage(format!(
                "--test-split: expected a fraction between 0 and 1, got {fraction}"
            )));
        }
        options.test_split = fraction;
    }
    if let Some(seed) = args.split_seed {
        options.split_seed = seed;
    }
    let several_targets = args.targets.is_some() || args.autoencoder;
    if several_targets && args.classes.is_some() {
        return Err(usage(
            "--classes: --targets and --autoencoder are regression targets, not classes",
        ));
    }
    options.target = match loss {
        // The data's own columns say regression; a classifier model is refused later, by name.
        _ if several_targets => TargetKind::Regression,
        Loss::CrossEntropy => TargetKind::Classes {
            n_classes: args.classes,
        },
        Loss::MeanSquaredError if args.classes.is_some() => TargetKind::Classes {
            n_classes: args.classes,
        },
        Loss::MeanSquaredError => TargetKind::Regression,
    };
    if args.classes.is_some_and(|k| k < 2) {
        return Err(usage("--classes: expected at least 2 classes"));
    }
    Ok((spec, options))
}

/// The most target columns `--targets` takes: a guard against a typo such as `0-99999999`.
const MAX_TARGET_COLUMNS: usize = 1 << 20;

/// `--targets`: 0-based indices and inclusive ranges separated by commas, e.g. `3,5,7-9`.
fn parse_columns(text: &str) -> Result<Vec<usize>, UsageError> {
    let bad = |part: &str, why: &str| {
        usage(format!(
            "--targets: {part:?} {why}; expected 0-based columns and ranges such as 640-1279 or 3,5,7-9"
        ))
    };
    let index = |part: &str, field: &str| -> Result<usize, UsageError> {
        field
            .trim()
            .parse::<usize>()
            .map_err(|_| bad(part, "is not a column index"))
    };
    let mut columns = Vec::new();
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (index(part, a)?, index(part, b)?),
            None => {
                let column = index(part, part)?;
                (column, column)
            }
        };
        if first > last {
            return Err(bad(part, "is a range that runs backwards"));
        }
        if columns.len() + (last - first) >= MAX_TARGET_COLUMNS {
            return Err(bad(part, "names more than 1,048,576 columns"));
        }
        columns.extend(first..=last);
    }
    Ok(columns)
}

fn activation(arg: ActivationArg, leaky_alpha: f32) -> Activation {
    match arg {
        ActivationArg::Relu => Activation::Relu,
        ActivationArg::LeakyRelu => Activation::LeakyRelu { alpha: leaky_alpha },
        ActivationArg::Tanh => Activation::Tanh,
        ActivationArg::Sigmoid => Activation::Sigmoid,
        ActivationArg::Identity => Activation::Identity,
    }
}

/// Parses `HxWxC` or `HxW` (one channel), every dimension at least 1.
pub fn parse_input_shape(text: &str) -> Result<Shape, UsageError> {
    let dims: Option<Vec<usize>> = text
        .trim()
        .split(['x', 'X'])
        .map(|part| part.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect();
    match dims.as_deref() {
        Some(&[h, w, c]) => Ok(Shape::new(h, w, c)),
        Some(&[h, w]) => Ok(Shape::new(h, w, 1)),
        _ => Err(usage(format!(
            "--input-shape: expected HxWxC or HxW with positive sizes, such as 28x28x1 or 49x10, got {text:?}"
        ))),
    }
}

/// Parses `128`, `256,128` or `none`.
pub fn parse_hidden(text: &str) -> Result<Vec<usize>, UsageError> {
    let text = text.trim();
    if text.is_empty() || text == "none" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(width) if width > 0 => Ok(width),
            _ => Err(usage(format!("--hidden: expected comma-separated positive widths such as 128 or 256,128, got {text:?}"))),
        })
        .collect()
}

fn check_fraction(flag: &str, value: f32, low: f32, high: f32) -> Result<f32, UsageError> {
    if value.is_finite() && value >= low && value < high {
        Ok(value)
    } else {
        Err(usage(format!(
            "{flag}: expected a value in [{low}, {high}), got {value}"
        )))
    }
}

/// The training configuration from flags, with defaults for what was not given.
pub fn train_config(args: &TrainArgs) -> Result<TrainConfig, UsageError> {
    let leaky_alpha = check_fraction("--leaky-alpha", args.leaky_alpha.unwrap_or(0.01), 0.0, 1.0)?;
    let hidden_activation = activation(args.activation.unwrap_or(ActivationArg::Relu), leaky_alpha);
    let output_activation = activation(
        args.output_activation.unwrap_or(ActivationArg::Identity),
        leaky_alpha,
    );
    let regression_data = args.data.targets.is_some() || args.data.autoencoder;
    let default_loss = if regression_data {
        LossArg::Mse
    } else {
        LossArg::CrossEntropy
    };
    if regression_data && args.loss == Some(LossArg::CrossEntropy) {
        return Err(usage(
            "--loss cross-entropy: --targets and --autoencoder are regression targets; use --loss mse",
        ));
    }
    let loss = match args.loss.unwrap_or(default_loss) {
        LossArg::CrossEntropy => Loss::CrossEntropy,
        LossArg::Mse => Loss::MeanSquaredError,
    };
    if loss == Loss::CrossEntropy && output_activation != Activation::Identity {
        return Err(usage(
            "--output-activation: cross-entropy applies softmax to the logits itself; use identity",
        ));
    }
    let init = match args.init {
        Some(InitArg::He) => Init::He,
        Some(InitArg::Xavier) => Init::Xavier,
        None => match hidden_activation {
            Activation::Relu | Activation::LeakyRelu { .. } => Init::He,
            _ => Init::Xavier,
        },
    };
    // A little weight decay by default keeps weights and logits small: better
    // test accuracy on MNIST (Adam, 20 epochs: 0.981-0.983 against 0.974-0.981
    // without), tighter int8 ranges, and float error between engines that stays
    // far inside the checks' tolerances. `--weight-decay 0` turns it off.
    let weight_decay = args.weight_decay.unwrap_or(DEFAULT_WEIGHT_DECAY);
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return Err(usage(format!(
            "--weight-decay: expected a non-negative number, got {weight_decay}"
        )));
    }
    let optimizer_arg = args.optimizer.unwrap_or(OptimizerArg::Adam);
    let beta1 = check_fraction("--beta1", args.beta1.unwrap_or(0.9), 0.0, 1.0)?;
    let beta2 = check_fraction("--beta2", args.beta2.unwrap_or(0.999), 0.0, 1.0)?;
    let epsilon = args.eps.unwrap_or(1e-8);
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(usage(format!(
            "--eps: expected a positive number, got {epsilon}"
        )));
    }
    let optimizer = match optimizer_arg {
        OptimizerArg::Sgd => OptimizerConfig::Sgd {
            momentum: check_fraction("--momentum", args.momentum.unwrap_or(0.0), 0.0, 1.0)?,
            nesterov: args.nesterov,
            weight_decay,
        },
        OptimizerArg::Adam => OptimizerConfig::Adam {
            beta1,
            beta2,
            epsilon,
            weight_decay,
        },
        OptimizerArg::Adamw => OptimizerConfig::AdamW {
            beta1,
            beta2,
            epsilon,
            weight_decay,
        },
    };
    if args.nesterov
        && !matches!(optimizer, OptimizerConfig::Sgd { momentum, .. } if momentum > 0.0)
    {
        return Err(usage(
            "--nesterov: needs --optimizer sgd with a --momentum above 0",
        ));
    }
    if optimizer_arg == OptimizerArg::Sgd
        && (args.beta1.is_some() || args.beta2.is_some() || args.eps.is_some())
    {
        return Err(usage(
            "--beta1, --beta2 and --eps apply to adam and adamw, not sgd",
        ));
    }
    if optimizer_arg != OptimizerArg::Sgd && args.momentum.is_some() {
        return Err(usage(
            "--momentum applies to sgd; adam and adamw use --beta1",
        ));
    }
    let learning_rate = args.lr.unwrap_or(if optimizer_arg == OptimizerArg::Sgd {
        0.01
    } else {
        0.001
    });
    // Cosine annealing is the default: over four seeds on MNIST it ended every
    // Adam run higher than a constant rate (0.981 against 0.978 on average) and
    // with far less spread. `--schedule constant` gives PyTorch's plain loop.
    let schedule = match args.schedule.unwrap_or(ScheduleArg::Cosine) {
        ScheduleArg::Constant => Schedule::Constant,
        ScheduleArg::Cosine => Schedule::Cosine,
        ScheduleArg::Step => {
            let step_size = args.step_size.unwrap_or(10);
            if step_size == 0 {
                return Err(usage("--step-size: expected at least 1 epoch"));
            }
            let gamma = args.gamma.unwrap_or(0.1);
            if !(gamma.is_finite() && gamma > 0.0) {
                return Err(usage(format!(
                    "--gamma: expected a positive factor, got {gamma}"
                )));
            }
            Schedule::Step { step_size, gamma }
        }
    };
    if !matches!(schedule, Schedule::Step { .. })
        && (args.step_size.is_some() || args.gamma.is_some())
    {
        return Err(usage("--step-size and --gamma apply to --schedule step"));
    }
    let patience = args.patience.unwrap_or(0);
    // Early stopping without a validation split defaults to holding out 10%.
    let val_split = args
        .val_split
        .unwrap_or(if patience > 0 { 0.1 } else { 0.0 });
    let normalization = match args.normalize.unwrap_or(NormalizeArg::Scale) {
        NormalizeArg::Scale => NormalizationKind::Scale,
        NormalizeArg::Standardize => NormalizationKind::Standardize,
        NormalizeArg::None => NormalizationKind::None,
    };
    let layers = match args.layers.as_deref() {
        Some(text) => {
            let layers = parse_layers(text).map_err(|e| usage(format!("--layers: {e}")))?;
            if layers.is_empty() {
                return Err(usage(
                    "--layers: expected at least one layer, such as conv3x3:16,maxpool2,dense:64",
                ));
            }
            layers
        }
        None => Vec::new(),
    };
    let input_shape = args
        .input_shape
        .as_deref()
        .map(parse_input_shape)
        .transpose()?;
    let config = TrainConfig {
        layers,
        input_shape,
        hidden: parse_hidden(args.hidden.as_deref().unwrap_or("128"))?,
        activation: hidden_activation,
        output_activation,
        loss,
        init,
        optimizer,
        learning_rate,
        schedule,
        epochs: args.epochs.unwrap_or(10),
        batch_size: args.batch.unwrap_or(64),
        seed: args.seed.unwrap_or(0),
        val_split,
        patience,
        normalization,
        qat: qat_config(&args.qat, learning_rate, args.pow2_scales),
    };
    // Reuse the trainer's own checks, phrased for the command line.
    let task = match loss {
        Loss::CrossEntropy => crate::model::Task::Classification { n_classes: 2 },
        Loss::MeanSquaredError => crate::model::Task::Regression { n_outputs: 1 },
    };
    config.validate(task).map_err(|e| usage(e.to_string()))?;
    Ok(config)
}

/// The default number of QAT epochs after the float ones.
pub const DEFAULT_QAT_EPOCHS: usize = 5;

/// `--qat` and its options; the QAT learning rate defaults to a tenth of `learning_rate`.
pub fn qat_config(
    args: &super::args::QatArgs,
    learning_rate: f32,
    pow2_scales: bool,
) -> Option<crate::quant::qat::QatConfig> {
    args.qat.then(|| crate::quant::qat::QatConfig {
        epochs: args.qat_epochs.unwrap_or(DEFAULT_QAT_EPOCHS),
        learning_rate: args.qat_lr.unwrap_or(learning_rate / 10.0),
        pow2_scales,
    })
}

/// Flags that fix the model or the data, which `--resume` takes from the saved run.
fn fixed_by_resume(args: &TrainArgs) -> Vec<&'static str> {
    let given = [
        ("--data", args.data.data.is_some()),
        ("--test-data", args.data.test_data.is_some()),
        ("--label-column", args.data.label_column.is_some()),
        ("--targets", args.data.targets.is_some()),
        ("--autoencoder", args.data.autoencoder),
        ("--anomaly-column", args.data.anomaly_column.is_some()),
        ("--header", args.data.header.is_some()),
        ("--classes", args.data.classes.is_some()),
        ("--test-split", args.data.test_split.is_some()),
        ("--split-seed", args.data.split_seed.is_some()),
        ("--hidden", args.hidden.is_some()),
        ("--layers", args.layers.is_some()),
        ("--input-shape", args.input_shape.is_some()),
        ("--activation", args.activation.is_some()),
        ("--output-activation", args.output_activation.is_some()),
        ("--leaky-alpha", args.leaky_alpha.is_some()),
        ("--loss", args.loss.is_some()),
        ("--init", args.init.is_some()),
        ("--optimizer", args.optimizer.is_some()),
        ("--lr", args.lr.is_some()),
        ("--momentum", args.momentum.is_some()),
        ("--nesterov", args.nesterov),
        ("--beta1", args.beta1.is_some()),
        ("--beta2", args.beta2.is_some()),
        ("--eps", args.eps.is_some()),
        ("--weight-decay", args.weight_decay.is_some()),
        ("--schedule", args.schedule.is_some()),
        ("--step-size", args.step_size.is_some()),
        ("--gamma", args.gamma.is_some()),
        ("--batch", args.batch.is_some()),
        ("--seed", args.seed.is_some()),
        ("--val-split", args.val_split.is_some()),
        ("--patience", args.patience.is_some()),
        ("--normalize", args.normalize.is_some()),
    ];
    given
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect()
}

impl TrainPlan {
    /// Builds the plan for a fresh run; `--resume` plans are completed from
    /// the saved model by the train command.
    pub fn from_args(args: &TrainArgs) -> Result<Self, UsageError> {
        let export = export_options(&args.onnx)?;
        if args.resume {
            let fixed = fixed_by_resume(args);
            if !fixed.is_empty() {
                return Err(usage(format!(
                    "--resume continues the saved run with its own settings; only --epochs may change, not {}",
                    fixed.join(", ")
                )));
            }
        }
        if args.threads == 0 {
            return Err(usage("--threads: expected at least 1 thread"));
        }
        let config = train_config(args)?;
        let (data_spec, data_options) = data_config(&args.data, config.loss)?;
        Ok(Self {
            data_spec,
            data_options,
            config,
            out_dir: args.out.clone(),
            resume: args.resume,
            check: !args.no_check,
            plot: !args.no_plot,
            threads: args.threads,
            export,
            output: args.output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse_train(extra: &[&str]) -> Result<TrainPlan, UsageError> {
        let mut argv = vec!["kiln", "train"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).expect("clap accepts the flags");
        match cli.command {
            Command::Train(args) => TrainPlan::from_args(&args),
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn the_classic_configuration_is_one_flag_set_away() {
        let plan = parse_train(&[
            "--data",
            "mnist:/tmp/mnist",
            "--hidden",
            "128",
            "--optimizer",
            "sgd",
            "--lr",
            "0.01",
            "--batch",
            "64",
            "--epochs",
            "10",
        ])
        .unwrap();
        assert_eq!(plan.config.hidden, vec![128]);
        assert_eq!(plan.config.activation, Activation::Relu);
        assert_eq!(plan.config.loss, Loss::CrossEntropy);
        assert_eq!(
            plan.config.optimizer,
            OptimizerConfig::Sgd {
                momentum: 0.0,
                nesterov: false,
                weight_decay: DEFAULT_WEIGHT_DECAY
            }
        );
        assert_eq!(plan.config.learning_rate, 0.01);
        assert_eq!(plan.config.batch_size, 64);
        assert_eq!(plan.config.epochs, 10);
        assert_eq!(plan.data_spec, DataSpec::Mnist("/tmp/mnist".into()));
    }

    #[test]
    fn bad_values_are_rejected_with_the_flag_named() {
        for (flags, needle) in [
            (vec!["--hidden", "12,x"], "--hidden"),
            (vec!["--test-split", "1.5"], "--test-split"),
            (vec!["--opset", "9"], "--opset"),
            (vec!["--nesterov"], "--nesterov"),
            (vec!["--optimizer", "sgd", "--beta1", "0.8"], "--beta1"),
            (vec!["--batch", "0"], "--batch"),
            (vec!["--patience", "3", "--val-split", "0"], "--patience"),
            (
                vec!["--loss", "cross-entropy", "--output-activation", "tanh"],
                "--output-activation",
            ),
            (vec!["--resume", "--lr", "0.1"], "--lr"),
            (vec!["--data", "nonsense"], "--data"),
        ] {
            let err = parse_train(&flags).expect_err(&format!("{flags:?} should fail"));
            assert!(err.0.contains(needle), "{flags:?}: {}", err.0);
        }
    }

    #[test]
    fn unknown_enum_values_are_refused_by_clap() {
        let err = Cli::try_parse_from(["kiln", "train", "--optimizer", "rmsprop"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("rmsprop"));
    }

    #[test]
    fn defaults_follow_the_optimizer_and_activation() {
        let plan = parse_train(&["--optimizer", "sgd"]).unwrap();
        assert_eq!(plan.config.learning_rate, 0.01);
        let plan = parse_train(&["--activation", "tanh"]).unwrap();
        assert_eq!(plan.config.init, Init::Xavier);
        assert_eq!(plan.config.learning_rate, 0.001);
        let plan = parse_train(&["--patience", "2"]).unwrap();
        assert_eq!(plan.config.val_split, 0.1);
        assert_eq!(plan.config.schedule, Schedule::Cosine);
        assert_eq!(plan.data_spec, DataSpec::Digits);
    }
}

/// Everything `kiln fit` needs, validated.
#[derive(Debug, Clone)]
pub struct FitPlan {
    pub data_spec: DataSpec,
    pub data_options: DataOptions,
    pub flash_budget: Option<u64>,
    pub ram_budget: Option<u64>,
    /// Instructions one inference may take: latency x clock / cycles per instruction.
    pub instruction_budget: Option<u64>,
    /// The budgets as the user gave them, for reports.
    pub latency_text: Option<String>,
    pub clock_hz: Option<f64>,
    pub cycles_per_instruction: f64,
    /// The core as `device_figures.json` names it.
    pub core: &'static str,
    pub time_budget: std::time::Duration,
    pub jobs: usize,
    pub max_hidden_layers: usize,
    /// CNN candidates too (image data).
    pub cnn: bool,
    /// `--input-shape`: the image shape of CSV rows, for CNN candidates.
    pub input_shape: Option<Shape>,
    /// Every candidate's training: the hidden widths are the candidate's own.
    pub train: TrainConfig,
    pub calib: crate::quant::QuantOptions,
    pub out_dir: PathBuf,
    pub resume: bool,
    pub output: OutputArgs,
}

/// A number and its unit (`0.5s` is `(0.5, "s")`), or `None` when the number does not parse.
fn number_and_unit(text: &str) -> Option<(f64, String)> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    Some((number.parse().ok()?, unit.trim().to_owned()))
}

/// Parses `5ms`, `800us`, `0.5s`, `90s`, `10m`, `1h` (a bare number is seconds).
pub fn parse_duration(flag: &str, text: &str) -> Result<std::time::Duration, UsageError> {
    let bad = || {
        usage(format!(
            "{flag}: expected a duration such as 800us, 5ms, 0.5s, 10m or 1h, got '{text}'"
        ))
    };
    let (value, unit) = number_and_unit(text).ok_or_else(bad)?;
    let seconds_per_unit = match unit.as_str() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let seconds = value * seconds_per_unit;
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e9) {
        return Err(usage(format!(
            "{flag}: expected a duration above 0, got '{text}'"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// Parses `64MHz`, `64M`, `32768Hz`, `48000000` into hertz.
pub fn parse_frequency(flag: &str, text: &str) -> Result<f64, UsageError> {
    let bad = || {
        usage(format!(
            "{flag}: expected a frequency such as 64MHz, 48M, 32kHz or 16000000, got '{text}'"
        ))
    };
    let (value, unit) = number_and_unit(text).ok_or_else(bad)?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "hz" => 1.0,
        "k" | "khz" => 1e3,
        "m" | "mhz" => 1e6,
        "g" | "ghz" => 1e9,
        _ => return Err(bad()),
    };
    let hz = value * factor;
    if !(hz.is_finite() && hz >= 1.0) {
        return Err(usage(format!(
            "{flag}: expected a frequency of at least 1 Hz, got '{text}'"
        )));
    }
    Ok(hz)
}

pub fn fit_config(args: &FitArgs) -> Result<FitPlan, UsageError> {
    let flash_budget = size_flag("--flash", args.flash.as_deref())?;
    let ram_budget = size_flag("--ram", args.ram.as_deref())?;
    let core = core_flag(&args.core)?;
    let cpi = args.cycles_per_instruction;
    if !(cpi.is_finite() && cpi > 0.0) {
        return Err(usage(format!(
            "--cycles-per-instruction: expected a number above 0, got {cpi}"
        )));
    }
    let (instruction_budget, clock_hz) = match (&args.latency, &args.clock) {
        (Some(latency), Some(clock)) => {
            let seconds = parse_duration("--latency", latency)?.as_secs_f64();
            let hz = parse_frequency("--clock", clock)?;
            (Some((seconds * hz / cpi).floor() as u64), Some(hz))
        }
        // clap's `requires` makes each need the other.
        _ => (None, None),
    };
    if flash_budget.is_none() && ram_budget.is_none() && instruction_budget.is_none() {
        return Err(usage(
            "expected a budget: --flash, --ram, or --latency with --clock",
        ));
    }
    if args.max_hidden_layers > 3 {
        return Err(usage(format!(
            "--max-hidden-layers: expected 0 to 3, got {}",
            args.max_hidden_layers
        )));
    }
    if args.epochs == 0 {
        return Err(usage("--epochs: expected at least 1 epoch"));
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(usage(format!(
            "--lr: expected a rate above 0, got {}",
            args.lr
        )));
    }
    if args.batch == 0 {
        return Err(usage("--batch: expected at least 1 sample"));
    }
    if !(args.val_split > 0.0 && args.val_split < 0.5) {
        return Err(usage(format!(
            "--val-split: expected a fraction above 0 and below 0.5 (the winner is chosen on it), got {}",
            args.val_split
        )));
    }
    let jobs = match args.jobs {
        Some(0) => return Err(usage("--jobs: expected at least 1")),
        Some(jobs) => jobs,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if args.data.targets.is_some() || args.data.autoencoder {
        return Err(usage(
            "kiln fit searches classifiers (the most accurate one that fits); --targets and \
             --autoencoder are regression data",
        ));
    }
    let (data_spec, data_options) = data_config(&args.data, Loss::CrossEntropy)?;
    let calib = super::quantize::quant_options(&args.calib)?;
    if calib.int16 {
        return Err(usage(
            "--activations int16: kiln fit sizes and searches int8 models; quantize its winner with kiln quantize --activations int16",
        ));
    }
    // The defaults of `kiln train`: relu, Adam with weight decay, cosine schedule, scale.
    let train = TrainConfig {
        hidden: Vec::new(),
        layers: Vec::new(),
        input_shape: None,
        activation: Activation::Relu,
        output_activation: Activation::Identity,
        loss: Loss::CrossEntropy,
        init: Init::He,
        optimizer: OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: DEFAULT_WEIGHT_DECAY,
        },
        learning_rate: args.lr,
        schedule: Schedule::Cosine,
        epochs: args.epochs,
        batch_size: args.batch,
        seed: args.seed,
        val_split: args.val_split,
        patience: args.patience,
        normalization: NormalizationKind::Scale,
        qat: qat_config(&args.qat, args.lr, args.calib.pow2_scales),
    };
    // The trainer's own checks (the QAT flags among them), phrased for the command line.
    train
        .validate(crate::model::Task::Classification { n_classes: 2 })
        .map_err(|e| usage(e.to_string()))?;
    Ok(FitPlan {
        data_spec,
        data_options,
        flash_budget,
        ram_budget,
        instruction_budget,
        latency_text: args.latency.clone(),
        clock_hz,
        cycles_per_instruction: cpi,
        core,
        time_budget: parse_duration("--budget", &args.budget)?,
        jobs,
        max_hidden_layers: args.max_hidden_layers,
        cnn: !args.mlp_only,
        input_shape: args
            .input_shape
            .as_deref()
            .map(parse_input_shape)
            .transpose()?,
        train,
        calib,
        out_dir: args.out.clone(),
        resume: args.resume,
        output: args.output,
    })
}
