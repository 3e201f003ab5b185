//! Progress reporting for training: an indicatif bar on a terminal, one line
//! per epoch when stderr is a file or pipe, and nothing with `--quiet`.

use crate::model::EpochRecord;
use crate::train::Observer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    total_epochs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Lines,
    Bar,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        Self {
            mode,
            bar: None,
            total_epochs: 0,
        }
    }
}

/// One line that summarises an epoch.
pub fn epoch_line(record: &EpochRecord, total_epochs: usize) -> String {
    let mut line = format!(
        "epoch {:>3}/{total_epochs}  lr {:.3e}  loss {:.4}",
        record.epoch, record.learning_rate, record.train_loss
    );
    if let Some(accuracy) = record.train_accuracy {
        line.push_str(&format!("  acc {accuracy:.4}"));
    }
    if let Some(val_loss) = record.val_loss {
        line.push_str(&format!("  val_loss {val_loss:.4}"));
    }
    if let Some(val_accuracy) = record.val_accuracy {
        line.push_str(&format!("  val_acc {val_accuracy:.4}"));
    }
    line.push_str(&format!("  {:.2}s", record.seconds));
    line
}

impl Observer for Progress {
    fn epoch_started(&mut self, epoch: usize, total_epochs: usize, n_batches: usize) {
        self.total_epochs = total_epochs;
        if self.mode == Mode::Bar {
            let bar =
                ProgressBar::with_draw_target(Some(n_batches as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("epoch {epoch}/{total_epochs}"));
            self.bar = Some(bar);
        }
    }

    fn batch_done(&mut self, batch_idx: usize, mean_loss: f64, accuracy: Option<f64>) {
        if let Some(bar) = &self.bar {
            bar.set_position(batch_idx as u64);
            // Formatting every batch would cost more than drawing; every 16th is plenty.
            if batch_idx % 16 == 1 {
                let message = match accuracy {
                    Some(accuracy) => format!("loss {mean_loss:.4} acc {accuracy:.4}"),
                    None => format!("loss {mean_loss:.4}"),
                };
                bar.set_message(message);
            }
        }
    }

    fn epoch_done(&mut self, record: &EpochRecord) {
        let line = epoch_line(record, self.total_epochs);
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("{line}"),
            Mode::Bar => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!("{line}");
            }
        }
    }
}
