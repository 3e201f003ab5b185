//! Regression and anomaly-detection figures: mean squared and absolute error overall and per
//! output, the per-row error (an autoencoder's anomaly score) and the ROC AUC of that score
//! against 0/1 anomaly labels. Pure functions over row-major `n_samples x n_outputs` slices,
//! accumulated in f64.

use crate::data::Targets;
use serde::Serialize;

/// The error of one output (one target column) over every row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OutputMetrics {
    pub mse: f64,
    pub mae: f64,
    pub rmse: f64,
}

/// How well the per-row error separates the anomalous rows from the normal ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AnomalyMetrics {
    /// The ROC AUC of the row error as the anomaly score (ties count half); `None` when the
    /// rows are all anomalous or all normal.
    pub auc: Option<f64>,
    pub n_anomalous: usize,
    pub n_normal: usize,
    /// The mean row error of the normal rows; `None` if there are none.
    pub mean_score_normal: Option<f64>,
    /// The mean row error of the anomalous rows; `None` if there are none.
    pub mean_score_anomalous: Option<f64>,
}

/// The error of a regression model's outputs against its targets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionMetrics {
    /// Mean squared error over every output of every row.
    pub mse: f64,
    /// Mean absolute error over every output of every row.
    pub mae: f64,
    /// The square root of `mse`.
    pub rmse: f64,
    /// One entry per output, in target order.
    pub per_output: Vec<OutputMetrics>,
    /// With anomaly labels: the row error as an anomaly score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalyMetrics>,
}

impl RegressionMetrics {
    /// The `k` outputs with the largest MSE, worst first (ties: the lower index first), as
    /// `(output index, metrics)`.
    pub fn worst_outputs(&self, k: usize) -> Vec<(usize, OutputMetrics)> {
        let mut outputs: Vec<(usize, OutputMetrics)> =
            self.per_output.iter().copied().enumerate().collect();
        outputs.sort_by(|a, b| b.1.mse.total_cmp(&a.1.mse).then(a.0.cmp(&b.0)));
        outputs.truncate(k);
        outputs
    }

    /// `MSE a, MAE b, RMSE c`.
    pub fn error_line(&self) -> String {
        format!(
            "MSE {}, MAE {}, RMSE {}",
            figure(self.mse),
            figure(self.mae),
            figure(self.rmse)
        )
    }

    /// `0.xxxx (n anomalous / m normal test rows; mean score normal x, anomalous y)`, when
    /// there are anomaly labels.
    pub fn anomaly_line(&self) -> Option<String> {
        let anomaly = self.anomaly.as_ref()?;
        let optional = |value: Option<f64>| value.map_or_else(|| "n/a".into(), figure);
        Some(format!(
            "{} ({} anomalous / {} normal test rows; mean score normal {}, anomalous {})",
            anomaly
                .auc
                .map_or_else(|| "n/a".into(), |auc| format!("{auc:.4}")),
            anomaly.n_anomalous,
            anomaly.n_normal,
            optional(anomaly.mean_score_normal),
            optional(anomaly.mean_score_anomalous)
        ))
    }
}

/// A figure for the text reports: four significant digits, scientific when very small or large.
pub fn figure(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || !value.is_finite() {
        format!("{value}")
    } else if (1e-3..1e5).contains(&magnitude) {
        let decimals = (3 - magnitude.log10().floor() as i32).max(0) as usize;
        format!("{value:.decimals$}")
    } else {
        format!("{value:.3e}")
    }
}

fn check_shapes(predictions: &[f32], targets: &[f32], n_outputs: usize) -> usize {
    assert!(n_outputs > 0, "a regression has at least one output");
    assert_eq!(
        predictions.len(),
        targets.len(),
        "one prediction per target value"
    );
    assert_eq!(
        targets.len() % n_outputs,
        0,
        "whole rows of {n_outputs} outputs"
    );
    targets.len() / n_outputs
}

/// The mean squared error of each row over its outputs: an autoencoder's anomaly score.
/// `predictions` and `targets` are row-major `n_samples x n_outputs`.
pub fn row_errors(predictions: &[f32], targets: &[f32], n_outputs: usize) -> Vec<f64> {
    check_shapes(predictions, targets, n_outputs);
    predictions
        .chunks_exact(n_outputs)
        .zip(targets.chunks_exact(n_outputs))
        .map(|(predicted, target)| {
            let total: f64 = predicted
                .iter()
                .zip(target)
                .map(|(&p, &t)| {
                    let error = f64::from(p) - f64::from(t);
                    error * error
                })
                .sum();
            total / n_outputs as f64
        })
        .collect()
}

/// MSE, MAE and RMSE overall and per output of `predictions` against `targets` (row-major
/// `n_samples x n_outputs`), and with `anomaly` (one label per row, `true` = anomalous) the
/// ROC AUC of the row errors against it.
pub fn regression_metrics(
    predictions: &[f32],
    targets: &[f32],
    n_outputs: usize,
    anomaly: Option<&[bool]>,
) -> RegressionMetrics {
    let n_samples = check_shapes(predictions, targets, n_outputs);
    let mut squared = vec![0.0f64; n_outputs];
    let mut absolute = vec![0.0f64; n_outputs];
    for (predicted, target) in predictions
        .chunks_exact(n_outputs)
        .zip(targets.chunks_exact(n_outputs))
    {
        for (output, (&p, &t)) in predicted.iter().zip(target).enumerate() {
            let error = f64::from(p) - f64::from(t);
            squared[output] += error * error;
            absolute[output] += error.abs();
        }
    }
    let rows = n_samples.max(1) as f64;
    let per_output: Vec<OutputMetrics> = squared
        .iter()
        .zip(&absolute)
        .map(|(&squared, &absolute)| {
            let mse = squared / rows;
            OutputMetrics {
                mse,
                mae: absolute / rows,
                rmse: mse.sqrt(),
            }
        })
        .collect();
    let values = rows * n_outputs as f64;
    let mse = squared.iter().sum::<f64>() / values;
    let mae = absolute.iter().sum::<f64>() / values;
    let anomaly = anomaly.map(|labels| {
        assert_eq!(labels.len(), n_samples, "one anomaly label per row");
        anomaly_metrics(&row_errors(predictions, targets, n_outputs), labels)
    });
    RegressionMetrics {
        mse,
        mae,
        rmse: mse.sqrt(),
        per_output,
        anomaly,
    }
}

/// The metrics of `predictions` against regression `targets` (with their anomaly labels, if
/// any); `None` for class labels.
pub fn for_targets(predictions: &[f32], targets: &Targets) -> Option<RegressionMetrics> {
    match targets {
        Targets::Classes { .. } => None,
        Targets::Regression {
            values,
            n_outputs,
            anomaly,
        } => Some(regression_metrics(
            predictions,
            values,
            *n_outputs,
            anomaly.as_deref(),
        )),
    }
}

/// The AUC, counts and mean scores of `scores` against `labels` (`true` = anomalous).
pub fn anomaly_metrics(scores: &[f64], labels: &[bool]) -> AnomalyMetrics {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let mean = |anomalous: bool| {
        let (count, total) = scores
            .iter()
            .zip(labels)
            .filter(|(_, &label)| label == anomalous)
            .fold((0usize, 0.0f64), |(count, total), (&score, _)| {
                (count + 1, total + score)
            });
        (count, (count > 0).then(|| total / count as f64))
    };
    let (n_anomalous, mean_score_anomalous) = mean(true);
    let (n_normal, mean_score_normal) = mean(false);
    AnomalyMetrics {
        auc: roc_auc(scores, labels),
        n_anomalous,
        n_normal,
        mean_score_normal,
        mean_score_anomalous,
    }
}

/// The ROC AUC of `scores` (higher = more anomalous) against `labels` (`true` = positive):
/// the probability that a random positive scores above a random negative, a tie counting
/// half. The Mann-Whitney U statistic from average ranks, in O(n log n). `None` when either
/// class is missing.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let n_positive = labels.iter().filter(|&&label| label).count();
    let n_negative = labels.len() - n_positive;
    if n_positive == 0 || n_negative == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // The sum of the positives' 1-based ranks, tied scores sharing their average rank.
    let mut rank_sum = 0.0f64;
    let mut start = 0;
    while start < order.len() {
        let score = scores[order[start]];
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == score {
            end += 1;
        }
        // ranks start + 1 ..= end
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let positives = order[start..end].iter().filter(|&&i| labels[i]).count();
        rank_sum += average_rank * positives as f64;
        start = end;
    }
    let (n_positive, n_negative) = (n_positive as f64, n_negative as f64);
    let u = rank_sum - n_positive * (n_positive + 1.0) / 2.0;
    Some(u / (n_positive * n_negative))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    /// Every (positive, negative) pair: 1 if the positive scores higher, 1/2 if tied.
    fn brute_force_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
        let mut wins = 0.0;
        let mut pairs = 0usize;
        for (&p, _) in scores.iter().zip(labels).filter(|(_, &label)| label) {
            for (&n, _) in scores.iter().zip(labels).filter(|(_, &label)| !label) {
                pairs += 1;
                if p > n {
                    wins += 1.0;
                } else if p == n {
                    wins += 0.5;
                }
            }
        }
        (pairs > 0).then(|| wins / pairs as f64)
    }

    #[test]
    fn auc_of_hand_computed_cases() {
        // Perfect separation, and the same reversed.
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.3, 0.4], &labels), Some(1.0));
        assert_eq!(roc_auc(&[0.4, 0.3, 0.2, 0.1], &labels), Some(0.0));
        // Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs won.
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        // Every score tied: one half.
        assert_eq!(
            roc_auc(&[1.0; 5], &[true, false, true, false, false]),
            Some(0.5)
        );
        // A tie across the classes: positive 2 ties negative 2 (1/2), beats negative 1 (1);
        // positive 3 beats both (2): 3.5 of 4.
        assert_eq!(
            roc_auc(&[1.0, 2.0, 2.0, 3.0], &[false, false, true, true]),
            Some(0.875)
        );
        // Ties within a class do not count: positives 2, 2 against negatives 1, 3.
        assert_eq!(
            roc_auc(&[1.0, 3.0, 2.0, 2.0], &[false, false, true, true]),
            Some(0.5)
        );
    }

    #[test]
    fn auc_needs_both_classes() {
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }

    #[test]
    fn auc_matches_the_pair_count_on_random_data() {
        let mut rng = Rng::new(7);
        for round in 0..50 {
            let n = 1 + rng.below(200) as usize;
            // Few distinct values in some rounds, so that ties are common.
            let levels = if round % 2 == 0 { 5 } else { 1_000_000 };
            let scores: Vec<f64> = (0..n)
                .map(|_| rng.below(levels) as f64 / levels as f64)
                .collect();
            let labels: Vec<bool> = (0..n).map(|_| rng.below(3) == 0).collect();
            let fast = roc_auc(&scores, &labels);
            let slow = brute_force_auc(&scores, &labels);
            match (fast, slow) {
                (Some(fast), Some(slow)) => assert!(close(fast, slow), "{fast} vs {slow}"),
                (fast, slow) => assert_eq!(fast, slow),
            }
        }
    }

    #[test]
    fn errors_overall_per_output_and_per_row() {
        // Two rows of three outputs; errors (0, 1, -2) and (2, 0, 0).
        let predictions = [1.0, 2.0, 1.0, 4.0, 0.5, -1.0];
        let targets = [1.0, 1.0, 3.0, 2.0, 0.5, -1.0];
        let metrics = regression_metrics(&predictions, &targets, 3, None);
        assert!(close(metrics.mse, (1.0 + 4.0 + 4.0) / 6.0));
        assert!(close(metrics.mae, (1.0 + 2.0 + 2.0) / 6.0));
        assert!(close(metrics.rmse, 1.5f64.sqrt()));
        assert_eq!(metrics.per_output.len(), 3);
        assert!(close(metrics.per_output[0].mse, 2.0));
        assert!(close(metrics.per_output[0].mae, 1.0));
        assert!(close(metrics.per_output[0].rmse, 2.0f64.sqrt()));
        assert!(close(metrics.per_output[1].mse, 0.5));
        assert!(close(metrics.per_output[2].mse, 2.0));
        assert!(close(metrics.per_output[2].mae, 1.0));
        assert_eq!(metrics.anomaly, None);
        let rows = row_errors(&predictions, &targets, 3);
        assert!(close(rows[0], 5.0 / 3.0));
        assert!(close(rows[1], 4.0 / 3.0));
        // The worst outputs: 0 and 2 tie at 2.0 (the lower index first), then 1.
        let worst: Vec<usize> = metrics.worst_outputs(2).iter().map(|w| w.0).collect();
        assert_eq!(worst, vec![0, 2]);
    }

    #[test]
    fn anomaly_scores_are_the_row_errors() {
        // Three rows of one output: errors 0.5, 2 and 1; the middle row is the anomaly.
        let predictions = [0.5, 2.0, 1.0];
        let targets = [0.0, 0.0, 0.0];
        let labels = [false, true, false];
        let metrics = regression_metrics(&predictions, &targets, 1, Some(&labels));
        let anomaly = metrics.anomaly.unwrap();
        assert_eq!(anomaly.auc, Some(1.0));
        assert_eq!((anomaly.n_anomalous, anomaly.n_normal), (1, 2));
        assert_eq!(anomaly.mean_score_anomalous, Some(4.0));
        assert_eq!(anomaly.mean_score_normal, Some((0.25 + 1.0) / 2.0));
        // All normal: no AUC, no anomalous mean.
        let metrics = regression_metrics(&predictions, &targets, 1, Some(&[false; 3]));
        let anomaly = metrics.anomaly.unwrap();
        assert_eq!(anomaly.auc, None);
        assert_eq!(anomaly.mean_score_anomalous, None);
        assert_eq!(anomaly.n_normal, 3);
    }

    #[test]
    fn large_values_accumulate_in_f64() {
        // 1e6 rows of error 0.1 in f32: f64 sums keep the mean exact to f32 rounding.
        let n = 1_000_000;
        let predictions = vec![1.1f32; n];
        let targets = vec![1.0f32; n];
        let metrics = regression_metrics(&predictions, &targets, 1, None);
        let error = f64::from(1.1f32) - 1.0;
        assert!(close(metrics.mae, error));
        assert!(close(metrics.mse, error * error));
    }

    #[test]
    fn figures_keep_four_significant_digits() {
        assert_eq!(figure(0.0), "0");
        assert_eq!(figure(0.012346), "0.01235");
        assert_eq!(figure(1.5), "1.500");
        assert_eq!(figure(1234.4), "1234");
        assert_eq!(figure(1.5e-5), "1.500e-5");
        assert_eq!(figure(2.5e7), "2.500e7");
    }
}
