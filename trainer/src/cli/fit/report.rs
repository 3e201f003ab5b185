//! What `kiln fit` reports: the table of every candidate, the Pareto plot, the line when
//! nothing fits, and the progress over candidates.

use super::{Candidate, FitRecord, Status};
use crate::cli::config::FitPlan;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

/// The line when no candidate fits: the smallest one and what it needs.
pub(super) fn nothing_fits(plan: &FitPlan, candidates: &[Candidate]) -> String {
    let smallest = candidates
        .iter()
        .min_by_key(|c| (c.cost.flash_bytes, c.cost.ram_bytes, c.cost.instructions));
    let budgets = budgets_text(plan);
    match smallest {
        Some(c) => format!(
            "no candidate fits {budgets} on {}: the smallest, {}, needs flash {} bytes (model blob \
             {} + kiln-runtime .text {}), RAM {} bytes and {} instructions per inference ({})",
            plan.core,
            c.label,
            c.cost.flash_bytes,
            c.cost.blob_bytes,
            c.cost.flash_bytes - c.cost.blob_bytes,
            c.cost.ram_bytes,
            c.cost.instructions,
            c.over.join(", ")
        ),
        None => format!("no candidate fits {budgets} on {}", plan.core),
    }
}

/// The budgets as the user gave them, for the report and the plot.
pub(super) fn budgets_text(plan: &FitPlan) -> String {
    let mut parts = Vec::new();
    if let Some(flash) = plan.flash_budget {
        parts.push(format!("flash {flash} bytes"));
    }
    if let Some(ram) = plan.ram_budget {
        parts.push(format!("RAM {ram} bytes"));
    }
    if let (Some(budget), Some(latency)) = (plan.instruction_budget, &plan.latency_text) {
        parts.push(format!("latency {latency} ({budget} instructions)"));
    }
    parts.join(", ")
}

/// `fit.png` and `fit.svg`: int8 validation accuracy against flash.
pub(super) fn write_pareto(plan: &FitPlan, record: &FitRecord) -> Result<Vec<PathBuf>> {
    let points: Vec<crate::plot::ParetoPoint> = record
        .candidates
        .iter()
        .map(|c| crate::plot::ParetoPoint {
            label: c.label.clone(),
            flash_bytes: c.cost.flash_bytes,
            accuracy: c.result.as_ref().map(|r| r.int8_val_accuracy),
            fits: c.fits,
            winner: c.winner,
        })
        .collect();
    let figure = crate::plot::ParetoFigure {
        title: format!(
            "kiln fit on {}: {} within {}",
            plan.data_spec,
            plan.core,
            budgets_text(plan)
        ),
        points: &points,
        flash_budget: plan.flash_budget,
    };
    Ok(crate::plot::write_png_and_svg(&figure, &plan.out_dir, "fit")?.to_vec())
}

#[derive(Debug, Serialize)]
pub(super) struct Files {
    pub(super) record: PathBuf,
    pub(super) model: PathBuf,
    pub(super) onnx: PathBuf,
    pub(super) qdq_onnx: PathBuf,
    pub(super) blob: PathBuf,
    pub(super) rust: PathBuf,
    pub(super) pictures: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
pub(super) struct FitReport<'a> {
    pub(super) command: &'static str,
    pub(super) data: String,
    pub(super) core: &'static str,
    pub(super) budgets: String,
    pub(super) input_stage: String,
    pub(super) input_type: String,
    pub(super) winner: String,
    /// The winner's quantization, tract check included.
    pub(super) quantization: &'a crate::cli::quantize::QuantSummary,
    pub(super) candidates: &'a [Candidate],
    pub(super) files: Files,
}

pub(super) fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.2}", v * 100.0))
}

pub(super) fn print_report(plan: &FitPlan, report: &FitReport<'_>) {
    crate::outln!(
        "kiln fit: {} on {} within {}",
        report.data,
        report.core,
        report.budgets
    );
    crate::outln!(
        "  input stage {}, raw input as {}; accuracy in % on the validation split (val) and the test set",
        report.input_stage,
        report.input_type
    );
    let header = [
        "candidate",
        "status",
        "flash",
        "RAM",
        "instructions",
        "float val",
        "int8 val",
        "int8 test",
        "epochs",
    ];
    let rows: Vec<[String; 9]> = report
        .candidates
        .iter()
        .map(|c| {
            let result = c.result.as_ref();
            let verdict = if c.winner {
                "winner".to_owned()
            } else if !c.fits {
                format!("does not fit: {}", c.over.join(", "))
            } else {
                c.status.text().to_owned()
            };
            [
                c.label.clone(),
                verdict,
                c.cost.flash_bytes.to_string(),
                c.cost.ram_bytes.to_string(),
                c.cost.instructions.to_string(),
                percent(result.map(|r| r.float_val_accuracy)),
                percent(result.map(|r| r.int8_val_accuracy)),
                percent(result.map(|r| r.int8_test_accuracy)),
                result.map_or_else(|| "-".to_owned(), |r| r.epochs.to_string()),
            ]
        })
        .collect();
    crate::cli::inspect::print_table(header, &rows, 2);
    let q = report.quantization;
    crate::outln!();
    crate::outln!("  winner         {}", report.winner);
    for (label, value) in q.rows() {
        crate::outln!("  {label:<14} {value}");
    }
    if let Some(latency) = report
        .candidates
        .iter()
        .find(|c| c.winner)
        .and_then(|c| c.latency_seconds)
    {
        crate::outln!(
            "  {:<14} {:.3} ms at {} cycles per instruction (estimate)",
            "latency",
            latency * 1000.0,
            plan.cycles_per_instruction
        );
    }
    let files = &report.files;
    for (label, path) in [
        ("record", &files.record),
        ("model", &files.model),
        ("onnx", &files.onnx),
        ("qdq onnx", &files.qdq_onnx),
        ("blob", &files.blob),
        ("rust", &files.rust),
    ] {
        crate::outln!("  {label:<14} {}", path.display());
    }
    for path in &files.pictures {
        crate::outln!("  {:<14} {}", "picture", path.display());
    }
}

/// Progress over the candidates: a bar on a terminal, a line per candidate otherwise.
pub(super) struct FitProgress {
    pub(super) bar: Option<indicatif::ProgressBar>,
    pub(super) lines: bool,
    pub(super) total: usize,
}

impl FitProgress {
    pub(super) fn new(quiet: bool, total: usize) -> Self {
        use std::io::IsTerminal;
        if quiet {
            return Self {
                bar: None,
                lines: false,
                total,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} candidates {elapsed_precise} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            return Self {
                bar: Some(bar),
                lines: false,
                total,
            };
        }
        Self {
            bar: None,
            lines: true,
            total,
        }
    }

    pub(super) fn started(&self, label: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("training {label}"));
        }
    }

    pub(super) fn finished(&self, candidate: &Candidate, done: usize) {
        let line = match &candidate.result {
            Some(r) if candidate.status == Status::Trained => format!(
                "{}: int8 val {} %, float val {} %, {} epochs, {:.1} s",
                candidate.label,
                percent(Some(r.int8_val_accuracy)),
                percent(Some(r.float_val_accuracy)),
                r.epochs,
                r.train_seconds
            ),
            _ => format!("{}: {}", candidate.label, candidate.status.text()),
        };
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.println(line);
        } else if self.lines {
            eprintln!("[{done}/{}] {line}", self.total);
        }
    }

    pub(super) fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
