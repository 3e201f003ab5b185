//! Learning-rate schedules, evaluated once per epoch.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Multiplies the rate by `gamma` every `step_size` epochs.
    Step {
        step_size: usize,
        gamma: f32,
    },
    /// Cosine annealing from the base rate to 0 over the run's epochs.
    Cosine,
}

impl Schedule {
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step { .. } => "step",
            Schedule::Cosine => "cosine",
        }
    }

    /// The rate for `epoch` (0-based) of a run of `total_epochs`.
    pub fn learning_rate(&self, base_lr: f32, epoch: usize, total_epochs: usize) -> f32 {
        match *self {
            Schedule::Constant => base_lr,
            Schedule::Step { step_size, gamma } => {
                let drops = i32::try_from(epoch / step_size.max(1)).unwrap_or(i32::MAX);
                base_lr * gamma.powi(drops)
            }
            Schedule::Cosine => {
                let progress = epoch as f64 / total_epochs.max(1) as f64;
                (0.5 * f64::from(base_lr) * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_formulas() {
        assert_eq!(Schedule::Constant.learning_rate(0.1, 7, 10), 0.1);
        let step = Schedule::Step {
            step_size: 3,
            gamma: 0.5,
        };
        let rates: Vec<f32> = (0..7).map(|e| step.learning_rate(0.8, e, 7)).collect();
        assert_eq!(rates, vec![0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]);
        let cosine = Schedule::Cosine;
        assert_eq!(cosine.learning_rate(1.0, 0, 4), 1.0);
        assert!((cosine.learning_rate(1.0, 2, 4) - 0.5).abs() < 1e-7);
        assert!(cosine.learning_rate(1.0, 3, 4) < 0.15);
    }
}
