//! The command line as clap parses it. `config.rs` turns these raw arguments
//! into validated configurations; nothing here has defaults that matter to
//! training, so `--resume` can tell which flags were given.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Train an MLP, export it to ONNX, and prove the file with tract.",
    after_help = "Exit codes: 0 ok, 1 a check failed (tract disagrees, the model does not fit), \
                  2 bad input or usage (or any other error), 5 training diverged, \
                  130 interrupted (checkpoint saved)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an MLP, export it to ONNX and check the file with tract.
    #[command(
        after_help = "Example: kiln train --data mnist:DIR --hidden 128 --optimizer sgd --lr 0.01 --batch 64 --epochs 10"
    )]
    Train(TrainArgs),
    /// Write the ONNX file for a trained model.
    #[command(
        after_help = "Example: kiln export kiln-out/model.json -o model.onnx --opset 21 --probabilities"
    )]
    Export(ExportArgs),
    /// Run an ONNX file with tract and compare it with the trainer, sample for sample.
    #[command(after_help = "Example: kiln check model.onnx --model kiln-out/model.json")]
    Check(CheckArgs),
    /// Train on the bundled digits, export, check, quantize to int8, and print a summary.
    #[command(after_help = "Example: kiln demo -o kiln-out")]
    Demo(DemoArgs),
    /// Quantize a trained model to int8: write the QDQ ONNX file, the runtime blob and Rust
    /// source, run the int8 model on the test set and compare it with tract.
    #[command(
        after_help = "Example: kiln quantize kiln-out/model.json -o kiln-out/int8 --calib 5000 --percentile 99.99"
    )]
    Quantize(QuantizeArgs),
    /// Quantize a trained model and write one artifact: the runtime blob or the Rust source.
    #[command(after_help = "Example: kiln bake kiln-out/model.json --rust firmware/src/model.rs")]
    Bake(BakeArgs),
    /// Run a .kiln blob with the int8 runtime on a data set's test split.
    #[command(
        after_help = "Example: kiln run kiln-out/int8/model.kiln --data mnist:DIR --outputs logits.csv"
    )]
    Run(RunArgs),
    /// Measure a float model (model.json) or an int8 blob (.kiln) on a data set's test split:
    /// accuracy, per-class precision and recall, a confusion-matrix picture and, for image
    /// data, a picture of the most confident mistakes. For regression targets (--targets,
    /// --autoencoder): MSE, MAE and RMSE overall and of the worst outputs, and with
    /// --anomaly-column the ROC AUC of the per-row error.
    #[command(
        after_help = "Example: kiln eval kiln-out/int8/model.kiln --data mnist:DIR -o eval-out"
    )]
    Eval(EvalArgs),
    /// Turn another framework's ONNX MLP (PyTorch, scikit-learn via skl2onnx, Keras via
    /// tf2onnx) into a kiln model file, and check it against tract on the original file.
    #[command(
        after_help = "Example: kiln import mlp.onnx --data digits -o kiln-out/mlp.json --expected mlp.expected.json"
    )]
    Import(ImportArgs),
    /// Show a model's layers, parameters, MACs, flash and RAM as f32 and int8, and check
    /// whether the int8 model fits a flash and RAM budget (exit code 1 if not).
    #[command(after_help = "Example: kiln inspect kiln-out/model.kiln --flash 64K --ram 16K")]
    Inspect(InspectArgs),
    /// Run a .kiln model on a virtual board: Kiln's firmware in QEMU on a Cortex-M0, M3, M4F,
    /// M7 or RV32 core, on the first samples of a data set. Prints exact instructions per
    /// inference (and per MAC), flash, RAM, peak stack, and whether the device's int8 outputs
    /// equal the host's (exit 1 if not, or if the model does not fit the core's board).
    /// Needs a Kiln checkout (its firmware crate), QEMU, the Rust target and a C compiler; it
    /// names whatever is missing.
    #[command(
        after_help = "Example: kiln sim kiln-out/int8/model.kiln --core cortex-m4f --data digits"
    )]
    Sim(SimArgs),
    /// Find the most accurate model (MLP, or CNN for image data) that fits a flash, RAM and
    /// latency budget on a core: every candidate is sized before training, only those that fit
    /// are trained (in parallel), each is quantized, and the winner's files are written as
    /// `kiln quantize` writes them.
    #[command(
        after_help = "Example: kiln fit --data digits --flash 8K --ram 2K --core cortex-m4f -o kiln-fit"
    )]
    Fit(FitArgs),
    /// Print a shell completion script to stdout.
    #[command(
        after_help = "Example: kiln completions bash > ~/.local/share/bash-completion/completions/kiln"
    )]
    Completions(CompletionsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeaderArg {
    Auto,
    Yes,
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActivationArg {
    Relu,
    LeakyRelu,
    Tanh,
    Sigmoid,
    Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    CrossEntropy,
    Mse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Step,
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitArg {
    He,
    Xavier,
}

/// The width of a quantized model's activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActivationsArg {
    Int8,
    /// int16 activations with int8 weights (the 16x8 scheme): dense layers with relu or identity.
    Int16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NormalizeArg {
    Scale,
    Standardize,
    None,
}

/// Where the data comes from and how to read it.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// digits (bundled), mnist:DIR, idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS], or csv:PATH.
    #[arg(long, value_name = "SPEC")]
    pub data: Option<String>,
    /// A separate test CSV with the same columns as the training CSV.
    #[arg(long, value_name = "PATH")]
    pub test_data: Option<PathBuf>,
    /// The CSV label column: a 0-based index, or `last`.
    #[arg(long, value_name = "INDEX|last")]
    pub label_column: Option<String>,
    /// Regression onto several CSV columns: 0-based indices and inclusive ranges, e.g.
    /// `640-1279` or `3,5,7-9`. The other columns are the features. Implies --loss mse.
    #[arg(long, value_name = "COLUMNS", conflicts_with_all = ["label_column", "autoencoder"])]
    pub targets: Option<String>,
    /// An autoencoder: every feature column is also a target. Implies --loss mse.
    #[arg(long, conflicts_with = "label_column")]
    pub autoencoder: bool,
    /// A 0/1 CSV column (0-based) that marks anomalous rows. It is not a feature; reports
    /// add the ROC AUC of the per-row error (the anomaly score) against it.
    #[arg(long, value_name = "INDEX")]
    pub anomaly_column: Option<usize>,
    /// Whether the CSV files start with a header row.
    #[arg(long, value_enum)]
    pub header: Option<HeaderArg>,
    /// The number of classes; by default it is inferred from the labels.
    #[arg(long, value_name = "K")]
    pub classes: Option<usize>,
    /// The test fraction when the data has no separate test set.
    #[arg(long, value_name = "FRACTION")]
    pub test_split: Option<f64>,
    /// The seed of the train/test split.
    #[arg(long, value_name = "SEED")]
    pub split_seed: Option<u64>,
}

/// How to report: progress, JSON.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// No progress bar, no per-epoch lines and no notes (the summary still prints; see --json).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Shapes of the exported ONNX file.
#[derive(Debug, Clone, Copy, Args)]
pub struct OnnxArgs {
    /// The ONNX opset, 13 to 21.
    #[arg(long, default_value_t = kiln_onnx::builder::MIN_OPSET)]
    pub opset: i64,
    /// Add a `probabilities` output (Softmax over the logits).
    #[arg(long)]
    pub probabilities: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Hidden layer widths, comma-separated (e.g. 128 or 256,128); `none` for a linear model.
    #[arg(long, value_name = "WIDTHS")]
    pub hidden: Option<String>,
    /// The hidden layers of a convolutional (or any) network, comma-separated, e.g.
    /// conv3x3:16,maxpool2,conv3x3:32,maxpool2,dense:64 (tokens in docs/layer-graph.md); the
    /// output layer follows them. Instead of --hidden.
    #[arg(long, value_name = "LAYERS", conflicts_with = "hidden")]
    pub layers: Option<String>,
    /// The shape of one sample as HxWxC (or HxW for one channel), e.g. 49x10x1, for CSV rows
    /// that hold images or spectrograms; IDX and the bundled digits give theirs.
    #[arg(long, value_name = "HxWxC")]
    pub input_shape: Option<String>,
    /// The activation of the hidden layers.
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// The activation of the output layer.
    #[arg(long, value_enum)]
    pub output_activation: Option<ActivationArg>,
    /// The negative slope of leaky-relu.
    #[arg(long, value_name = "ALPHA")]
    pub leaky_alpha: Option<f32>,
    /// cross-entropy for class labels, mse for regression targets.
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Weight initialisation; by default He for relu-like units, Xavier otherwise.
    #[arg(long, value_enum)]
    pub init: Option<InitArg>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// The learning rate (default 0.01 for sgd, 0.001 for adam and adamw).
    #[arg(long, value_name = "RATE")]
    pub lr: Option<f32>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Nesterov momentum for SGD.
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long)]
    pub beta1: Option<f32>,
    #[arg(long)]
    pub beta2: Option<f32>,
    /// Adam's epsilon.
    #[arg(long)]
    pub eps: Option<f32>,
    /// Weight decay (L2 for sgd and adam, decoupled for adamw); default 5e-4.
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// The learning-rate schedule (default cosine; constant is PyTorch's plain loop).
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Epochs between learning-rate drops for `--schedule step`.
    #[arg(long)]
    pub step_size: Option<usize>,
    /// The drop factor for `--schedule step`.
    #[arg(long)]
    pub gamma: Option<f32>,
    /// The total number of epochs (with --resume: the total to reach).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// The mini-batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// The seed for initialisation and shuffling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The fraction of the training set held out for validation.
    #[arg(long, value_name = "FRACTION")]
    pub val_split: Option<f64>,
    /// Stop after this many epochs without a better validation loss (needs --val-split).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Input normalisation, computed on the training set and folded into the ONNX graph.
    #[arg(long, value_enum)]
    pub normalize: Option<NormalizeArg>,
    #[command(flatten)]
    pub qat: QatArgs,
    /// Train for power-of-two scales: quantize the result with --pow2-scales.
    #[arg(long, requires = "qat")]
    pub pow2_scales: bool,
    /// The output folder.
    #[arg(long, short, default_value = "kiln-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the run saved in the output folder.
    #[arg(long)]
    pub resume: bool,
    /// Skip the tract check of the exported file.
    #[arg(long)]
    pub no_check: bool,
    /// Do not draw training.png and training.svg (loss and accuracy per epoch).
    #[arg(long)]
    pub no_plot: bool,
    /// Threads per training step; the weights are bit-identical for every count.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,
    #[command(flatten)]
    pub onnx: OnnxArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The kiln model file (model.json).
    pub model: PathBuf,
    /// The ONNX file to write.
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub onnx: OnnxArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The ONNX file to check.
    pub onnx: PathBuf,
    /// The kiln model file; by default model.json beside the ONNX file.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Also save the inputs and the trainer's outputs beside the ONNX file as .npy.
    #[arg(long)]
    pub save_reference: bool,
    /// For a model imported from this ONNX file: the exporter's outputs (JSON, see
    /// docs/import.md), compared within 1e-5.
    #[arg(long, value_name = "FILE")]
    pub expected: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The output folder.
    #[arg(long, short, default_value = "kiln-out", value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Quantization-aware training after the float epochs (`kiln train`, `kiln fit`).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct QatArgs {
    /// After the float epochs, quantization-aware training: the forward pass computes the
    /// device's int8 arithmetic, so the accuracy it reports is the device's. `kiln quantize`
    /// then uses the ranges it tracked. With `train --resume`, a trained float model is
    /// fine-tuned.
    #[arg(long)]
    pub qat: bool,
    /// QAT epochs after the float ones [default: 5].
    #[arg(long, value_name = "N", requires = "qat")]
    pub qat_epochs: Option<usize>,
    /// The QAT epochs' constant learning rate [default: a tenth of --lr].
    #[arg(long, value_name = "RATE", requires = "qat")]
    pub qat_lr: Option<f32>,
}

/// How to calibrate the int8 ranges.
#[derive(Debug, Clone, Copy, Args)]
pub struct CalibArgs {
    /// The number of training samples (the first ones) that calibrate the ranges.
    #[arg(long, value_name = "N", default_value_t = crate::quant::DEFAULT_CALIB_SAMPLES)]
    pub calib: usize,
    /// Clip each range to the (100-P)-th and P-th percentiles (e.g. 99.99) instead of min/max.
    #[arg(long, value_name = "P")]
    pub percentile: Option<f64>,
    /// Every scale a power of two: onnxruntime and tract then compute the device's int8
    /// outputs exactly from the QDQ file, at the cost of up to one bit of resolution per tensor.
    #[arg(long)]
    pub pow2_scales: bool,
    /// The activations' width: int8, or int16 with int8 weights (the 16x8 scheme; blob format
    /// version 4, an opset-21 QDQ file).
    #[arg(long, value_enum, default_value = "int8")]
    pub activations: ActivationsArg,
    /// Compute depthwise, pointwise (1x1), shape-keeping stride-1 convolutions and add layers
    /// in place where that lowers the peak activation RAM (the KWS DS-CNN: 16,000 -> 8,490
    /// bytes, ResNet-8: 49,152 -> 34,304; blob format version 6, or 7 with a shape-keeping
    /// convolution or a depthwise ring in place). Layers in place run somewhat slower.
    #[arg(long)]
    pub in_place: bool,
}

#[derive(Debug, Clone, Args)]
pub struct QuantizeArgs {
    /// The kiln model file (model.json).
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// First fine-tune the model with N epochs of quantization-aware training (the device's
    /// int8 arithmetic in the forward pass); the result is written to DIR/model.json.
    #[arg(long, value_name = "N")]
    pub qat_epochs: Option<usize>,
    /// The QAT epochs' constant learning rate [default: the model's QAT rate, else a tenth
    /// of its --lr].
    #[arg(long, value_name = "RATE", requires = "qat_epochs")]
    pub qat_lr: Option<f32>,
    /// The output folder for model.qdq.onnx, model.kiln and model.rs.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("artifact").required(true).args(["blob", "rust"]))]
pub struct BakeArgs {
    /// The kiln model file (model.json).
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Write the runtime blob (.kiln) to FILE.
    #[arg(long, value_name = "FILE")]
    pub blob: Option<PathBuf>,
    /// Write the Rust source (the blob as a static plus a typed wrapper) to FILE.
    #[arg(long, value_name = "FILE")]
    pub rust: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The .kiln blob.
    pub blob: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Write the int8 logits to FILE as CSV, one row per test sample. For regression targets
    /// (--targets, --autoencoder) each row ends with one more column: the row's score, the mean
    /// squared error of its dequantized outputs against its targets (the anomaly score).
    #[arg(long, value_name = "FILE")]
    pub outputs: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// The .kiln blob.
    pub blob: PathBuf,
    /// cortex-m0 (micro:bit), cortex-m3 (mps2-an385), cortex-m4f (mps2-an386), cortex-m7
    /// (mps2-an500) or rv32imc (sifive_e); any case.
    #[arg(long)]
    pub core: String,
    #[command(flatten)]
    pub data: DataArgs,
    /// How many samples of the test split the firmware runs (the first N).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub samples: usize,
    /// Kiln's firmware crate (default: examples/firmware-qemu of the checkout kiln was built
    /// from).
    #[arg(long, value_name = "DIR")]
    pub firmware_crate: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The flash for the int8 model and kiln-runtime's code: bytes, or with K/KiB (1024) or
    /// M/MiB (1024 * 1024).
    #[arg(long, value_name = "SIZE")]
    pub flash: Option<String>,
    /// The RAM for the int8 buffers, the `Model` value and the inference stack, as for --flash.
    #[arg(long, value_name = "SIZE")]
    pub ram: Option<String>,
    /// The core whose figures size the candidates: cortex-m0, cortex-m3, cortex-m4f, cortex-m7
    /// or rv32imc (any case).
    #[arg(long, value_name = "NAME", default_value = "cortex-m4f")]
    pub core: String,
    /// The longest one inference may take, e.g. 5ms, 800us or 0.5s (needs --clock).
    #[arg(long, value_name = "DURATION", requires = "clock")]
    pub latency: Option<String>,
    /// The core's clock, e.g. 64MHz, 48M or 16000000 (Hz).
    #[arg(long, value_name = "FREQUENCY", requires = "latency")]
    pub clock: Option<String>,
    /// Cycles per instruction for --latency: the estimate counts instructions; flash wait
    /// states and multi-cycle loads make a real core slower than 1.
    #[arg(long, value_name = "CPI", default_value_t = 1.0)]
    pub cycles_per_instruction: f64,
    /// The time for the whole search, e.g. 90s, 10m or 1h; candidates not trained by then are
    /// reported as such, and `--resume` continues them.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub budget: String,
    /// Candidates trained at once (default: the available cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// The most hidden layers a candidate has (0 to 3).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_hidden_layers: usize,
    /// MLP candidates only: no CNNs, even for image data.
    #[arg(long)]
    pub mlp_only: bool,
    /// The shape of one sample as HxWxC (or HxW), for CSV rows that hold images: CNN
    /// candidates need it (IDX files and the bundled digits give theirs).
    #[arg(long, value_name = "HxWxC")]
    pub input_shape: Option<String>,
    /// The most epochs per candidate; each stops early after --patience epochs without a
    /// better validation loss.
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// Epochs without a better validation loss before a candidate stops.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Adam's learning rate for every candidate (higher than `kiln train`'s 0.001: small
    /// networks need it to converge within the epochs).
    #[arg(long, value_name = "RATE", default_value_t = 0.003)]
    pub lr: f32,
    /// The mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// The fraction of the training set held out for early stopping and for choosing the
    /// winner (the test set only reports).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.1)]
    pub val_split: f64,
    /// The seed of every candidate's initialisation, shuffling and validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With --qat, every candidate is scored (and the winner chosen) on the int8 model QAT
    /// made.
    #[command(flatten)]
    pub qat: QatArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// The output folder: the winner's files, fit.json (every candidate), fit.png and fit.svg,
    /// and candidates/ (each trained candidate's model file).
    #[arg(long, short, default_value = "kiln-fit", value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the search in --out after Ctrl-C or a spent --budget (same flags).
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A kiln model file (model.json) or a .kiln blob; recognised by its content.
    pub model: PathBuf,
    /// The data (by default: a model file's own training data; the bundled digits for a blob).
    #[command(flatten)]
    pub data: DataArgs,
    /// The folder for confusion.png/.svg and mistakes.png/.svg (default: the model's folder).
    #[arg(long, short, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The ONNX file: an MLP exported by PyTorch, skl2onnx, tf2onnx or another exporter.
    pub onnx: PathBuf,
    /// The kiln model file to write (default: kiln-out/<ONNX file stem>.json).
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The data the model was trained on (required): the tract check runs on its test split,
    /// and quantize, bake and check use it by default.
    #[command(flatten)]
    pub data: DataArgs,
    /// The exporter's outputs on a few inputs (JSON, see docs/import.md); the imported model
    /// must agree within 1e-5.
    #[arg(long, value_name = "FILE")]
    pub expected: Option<PathBuf>,
    /// The outputs are regression targets (default: classification, unless the model has a
    /// single output and no Softmax/ArgMax head).
    #[arg(long)]
    pub regression: bool,
    /// How the data's raw values were scaled for the source model, e.g. 1/255 for pixels
    /// 0..255 into a model trained on [0, 1]: the checks feed the source the scaled values and
    /// the kiln model includes the scale in its normalization.
    #[arg(long, value_name = "SCALE")]
    pub input_scale: Option<String>,
    /// Skip the comparisons with tract and with --expected.
    #[arg(long)]
    pub no_check: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// A kiln model file (model.json), an ONNX file (float or QDQ) or a .kiln blob; recognised
    /// by its content.
    pub file: PathBuf,
    /// The flash budget for the int8 model and kiln-runtime's code: bytes, or with K/KiB (1024)
    /// or M/MiB (1024 * 1024).
    #[arg(long, value_name = "SIZE")]
    pub flash: Option<String>,
    /// The RAM budget for the int8 model's buffers (scratch, raw input, logits), the `Model`
    /// value and the inference stack, as for --flash.
    #[arg(long, value_name = "SIZE")]
    pub ram: Option<String>,
    /// The core whose figures --flash and --ram use: cortex-m0, cortex-m3, cortex-m4f,
    /// cortex-m7 or rv32imc (any case). Without it the model must fit on every core.
    #[arg(long, value_name = "NAME")]
    pub core: Option<String>,
    /// Print one JSON object with the layers, totals and fit verdict on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
