//! The `kiln` command line: argument parsing, validated configuration,
//! subcommands and the mapping from errors to exit codes.

pub mod args;
pub mod commands;
pub mod config;
pub mod device_figures;
pub mod eval;
pub mod fit;
pub mod import;
pub mod inspect;
pub(crate) mod interrupt;
pub mod output;
pub mod progress;
pub mod quantize;
pub mod sim;

pub use args::Cli;

/// Exit codes, documented in the README. They follow `diff` and `grep`: 1 means the
/// command ran and its answer is "no", 2 means it could not answer.
pub mod exit_code {
    /// A check ran and failed: `kiln check` found the ONNX file disagrees with the trainer,
    /// `kiln quantize` found tract's int8 outputs disagree with the runtime's, or
    /// `kiln inspect` found the int8 model does not fit the flash or RAM budget.
    pub const CHECK_FAILED: u8 = 1;
    /// Unreadable or invalid input: data, model, ONNX or blob files.
    pub const BAD_INPUT: u8 = 2;
    /// A flag or argument that cannot be used; the same code as bad input, and clap's own.
    pub const USAGE: u8 = 2;
    /// Any other error that stopped the command before it could answer (an output folder
    /// that cannot be written, ...). It must never read as a failed check, so it shares
    /// the code of the errors that also leave the question unanswered.
    pub const OTHER_ERROR: u8 = 2;
    /// Training diverged; the last good model was kept. Distinct because the remedy
    /// (a lower learning rate) differs from both the input's and a check's.
    pub const DIVERGED: u8 = 5;
    /// Training was interrupted (SIGINT or SIGTERM) and saved a checkpoint; 128 + SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

/// Runs the parsed command line.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        args::Command::Train(args) => commands::train(args),
        args::Command::Export(args) => commands::export(args),
        args::Command::Check(args) => commands::check(args),
        args::Command::Demo(args) => commands::demo(args),
        args::Command::Quantize(args) => quantize::quantize(args),
        args::Command::Bake(args) => quantize::bake(args),
        args::Command::Run(args) => quantize::run(args),
        args::Command::Eval(args) => eval::eval(args),
        args::Command::Import(args) => import::import(args),
        args::Command::Inspect(args) => inspect::inspect(args),
        args::Command::Sim(args) => sim::sim(args),
        args::Command::Fit(args) => fit::fit(args),
        args::Command::Completions(args) => commands::completions(args),
    }
}

/// The exit code for an error, found by walking its chain of causes.
pub fn exit_code_for(error: &anyhow::Error) -> u8 {
    use crate::train::TrainError;
    for cause in error.chain() {
        if cause.is::<commands::Interrupted>() || cause.is::<fit::FitInterrupted>() {
            return exit_code::INTERRUPTED;
        }
        if cause.is::<config::UsageError>()
            || matches!(
                cause.downcast_ref::<crate::quant::QuantError>(),
                Some(
                    crate::quant::QuantError::QatScales { .. }
                        | crate::quant::QuantError::Int16 { .. }
                )
            )
        {
            return exit_code::USAGE;
        }
        if cause.is::<commands::CheckFailed>()
            || cause.is::<quantize::TractDisagrees>()
            || cause.is::<quantize::TrainerDisagrees>()
            || cause.is::<inspect::DoesNotFit>()
            || cause.is::<import::ImportCheckFailed>()
            || cause.is::<sim::DoesNotFit>()
            || cause.is::<sim::DeviceDisagrees>()
            || cause.is::<fit::NothingFits>()
        {
            return exit_code::CHECK_FAILED;
        }
        if let Some(train_error) = cause.downcast_ref::<TrainError>() {
            return match train_error {
                TrainError::Diverged { .. } => exit_code::DIVERGED,
                TrainError::Config(_) => exit_code::USAGE,
                TrainError::Data(_) => exit_code::BAD_INPUT,
                TrainError::Checkpoint(_) => exit_code::OTHER_ERROR,
                TrainError::Interrupted { .. } => exit_code::INTERRUPTED,
                TrainError::Qat { .. } => exit_code::OTHER_ERROR,
            };
        }
        if cause.is::<crate::data::DataError>()
            || cause.is::<crate::model::ModelFileError>()
            || cause.is::<crate::quant::host::RawValueError>()
            || cause.is::<crate::quant::host::BlobError>()
            || cause.is::<inspect::InspectError>()
            || cause.is::<kiln_onnx::import::ImportError>()
            || cause.is::<crate::import::ExpectedFileError>()
            || cause.is::<crate::import::TractError>()
            || cause.is::<import::DataMismatch>()
            || cause.is::<eval::EvalError>()
        {
            return exit_code::BAD_INPUT;
        }
        if let Some(
            crate::check::CheckError::Load { .. } | crate::check::CheckError::Mismatch { .. },
        ) = cause.downcast_ref::<crate::check::CheckError>()
        {
            return exit_code::BAD_INPUT;
        }
    }
    exit_code::OTHER_ERROR
}
