//! Input normalization, fitted on the training set and baked into the exported
//! ONNX graph with the very same f32 arithmetic.

use std::fmt;
use std::str::FromStr;

use super::Dataset;

/// Which normalization to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NormalizationKind {
    /// Raw features.
    None,
    /// Multiply every feature by 1 / (largest absolute training value).
    Scale,
    /// Per feature: subtract the training mean, multiply by 1 / training std.
    Standardize,
}

impl FromStr for NormalizationKind {
    type Err = String;

    /// Accepts "none", "scale" and "standardize" (ASCII case-insensitive).
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Ok(NormalizationKind::None),
            "scale" => Ok(NormalizationKind::Scale),
            "standardize" => Ok(NormalizationKind::Standardize),
            _ => Err(format!(
                "unknown normalization {text:?}; expected none, scale or standardize"
            )),
        }
    }
}

impl fmt::Display for NormalizationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NormalizationKind::None => "none",
            NormalizationKind::Scale => "scale",
            NormalizationKind::Standardize => "standardize",
        })
    }
}

/// A fitted normalization.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Normalization {
    None,
    Scale { scale: f32 },
    Standardize { mean: Vec<f32>, inv_std: Vec<f32> },
}

/// Standard deviations below this are treated as constant features.
const MIN_STD: f64 = 1e-6;

impl Normalization {
    /// Fits on the training set only.
    ///
    /// * Scale: `scale = 1 / max |x|` over all training features, computed in
    ///   f32 (1.0 if the maximum is 0): MNIST gives `1.0f32 / 255.0`, digits
    ///   `1.0f32 / 16.0`.
    /// * Standardize: per-feature mean and population standard deviation,
    ///   accumulated in f64 and stored as f32; `inv_std = (1 / std) as f32`, or
    ///   1.0 where `std < 1e-6` (constant features, like MNIST's border pixels).
    ///   An empty training set gives mean 0 and inv_std 1.
    pub fn fit(kind: NormalizationKind, train: &Dataset) -> Normalization {
        match kind {
            NormalizationKind::None => Normalization::None,
            NormalizationKind::Scale => {
                let max = train
                    .features
                    .iter()
                    .fold(0.0f32, |max, &x| max.max(x.abs()));
                Normalization::Scale {
                    scale: if max > 0.0 { 1.0 / max } else { 1.0 },
                }
            }
            NormalizationKind::Standardize => {
                let n_features = train.n_features;
                let n = train.n_samples();
                let rows = || train.features.chunks_exact(n_features.max(1)).take(n);
                let mut sum = vec![0.0f64; n_features];
                for row in rows() {
                    for (acc, &x) in sum.iter_mut().zip(row) {
                        *acc += f64::from(x);
                    }
                }
                let mean: Vec<f64> = sum
                    .iter()
                    .map(|&s| if n > 0 { s / n as f64 } else { 0.0 })
                    .collect();
                let mut sq = vec![0.0f64; n_features];
                for row in rows() {
                    for ((acc, &x), &m) in sq.iter_mut().zip(row).zip(&mean) {
                        let d = f64::from(x) - m;
                        *acc += d * d;
                    }
                }
                let inv_std = sq
                    .iter()
                    .map(|&s| {
                        let std = if n > 0 { (s / n as f64).sqrt() } else { 0.0 };
                        if std < MIN_STD {
                            1.0
                        } else {
                            (1.0 / std) as f32
                        }
                    })
                    .collect();
                Normalization::Standardize {
                    mean: mean.iter().map(|&m| m as f32).collect(),
                    inv_std,
                }
            }
        }
    }

    /// The kind this normalization was fitted as.
    pub fn kind(&self) -> NormalizationKind {
        match self {
            Normalization::None => NormalizationKind::None,
            Normalization::Scale { .. } => NormalizationKind::Scale,
            Normalization::Standardize { .. } => NormalizationKind::Standardize,
        }
    }

    /// Normalizes one row in place, in f32, exactly as the exported graph does:
    /// Scale: `x * scale`; Standardize: `(x - mean[j]) * inv_std[j]`.
    ///
    /// Panics if a Standardize row has another length than the fitted features.
    pub fn apply_row(&self, row: &mut [f32]) {
        match self {
            Normalization::None => {}
            Normalization::Scale { scale } => {
                for x in row.iter_mut() {
                    *x *= *scale;
                }
            }
            Normalization::Standardize { mean, inv_std } => {
                assert_eq!(
                    row.len(),
                    mean.len(),
                    "row length differs from the fitted feature count"
                );
                for ((x, &m), &s) in row.iter_mut().zip(mean).zip(inv_std) {
                    *x = (*x - m) * s;
                }
            }
        }
    }

    /// A normalized copy of all the features of `dataset` (row-major).
    pub fn apply(&self, dataset: &Dataset) -> Vec<f32> {
        let mut features = dataset.features.clone();
        if dataset.n_features > 0 {
            for row in features.chunks_exact_mut(dataset.n_features) {
                self.apply_row(row);
            }
        }
        features
    }
}

#[cfg(test)]
mod tests {
    use super::super::Targets;
    use super::*;

    fn dataset(rows: &[&[f32]]) -> Dataset {
        Dataset {
            features: rows.iter().flat_map(|row| row.iter().copied()).collect(),
            n_features: rows[0].len(),
            targets: Targets::single(vec![0.0; rows.len()]),
        }
    }

    #[test]
    fn scale_uses_the_largest_absolute_value() {
        let train = dataset(&[&[1.0, -8.0], &[4.0, 2.0]]);
        let norm = Normalization::fit(NormalizationKind::Scale, &train);
        assert_eq!(norm, Normalization::Scale { scale: 0.125 });
        assert_eq!(norm.apply(&train), vec![0.125, -1.0, 0.5, 0.25]);
        assert_eq!(
            train.features,
            vec![1.0, -8.0, 4.0, 2.0],
            "apply leaves the data set alone"
        );
        let mnist_like = dataset(&[&[0.0, 255.0], &[17.0, 3.0]]);
        assert_eq!(
            Normalization::fit(NormalizationKind::Scale, &mnist_like),
            Normalization::Scale { scale: 1.0 / 255.0 }
        );
        let zeros = dataset(&[&[0.0, 0.0]]);
        assert_eq!(
            Normalization::fit(NormalizationKind::Scale, &zeros),
            Normalization::Scale { scale: 1.0 }
        );
    }

    #[test]
    fn standardize_exact_numbers() {
        // Feature 0: 1, 3, 5, 7 -> mean 4, population std sqrt(5).
        // Feature 1: 2, 2, 2, 2 -> constant: inv_std 1.
        // Feature 2: -1, 1, -1, 1 -> mean 0, std 1.
        let train = dataset(&[
            &[1.0, 2.0, -1.0],
            &[3.0, 2.0, 1.0],
            &[5.0, 2.0, -1.0],
            &[7.0, 2.0, 1.0],
        ]);
        let norm = Normalization::fit(NormalizationKind::Standardize, &train);
        let Normalization::Standardize { mean, inv_std } = &norm else {
            panic!("{norm:?}")
        };
        assert_eq!(mean, &vec![4.0, 2.0, 0.0]);
        assert_eq!(inv_std, &vec![(1.0 / 5.0f64.sqrt()) as f32, 1.0, 1.0]);
        let mut row = [6.0, 2.5, 3.0];
        norm.apply_row(&mut row);
        assert_eq!(
            row,
            [(6.0f32 - 4.0) * (1.0 / 5.0f64.sqrt()) as f32, 0.5, 3.0]
        );
        let applied = norm.apply(&train);
        assert_eq!(applied[1], 0.0);
        assert_eq!(applied[2], -1.0);
        // The normalized training features have mean 0 and unit variance.
        let col0: Vec<f32> = applied.chunks(3).map(|r| r[0]).collect();
        assert!((col0.iter().sum::<f32>()).abs() < 1e-6);
        assert!((col0.iter().map(|x| x * x).sum::<f32>() / 4.0 - 1.0).abs() < 1e-6);
        assert_eq!(norm.kind(), NormalizationKind::Standardize);
    }

    #[test]
    fn standardize_accumulates_in_f64() {
        // Large offsets, tiny spread: an f32 running sum would lose the spread.
        let rows: Vec<[f32; 1]> = (0..1000).map(|i| [1.0e6 + (i % 2) as f32]).collect();
        let refs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let norm = Normalization::fit(NormalizationKind::Standardize, &dataset(&refs));
        let Normalization::Standardize { mean, inv_std } = norm else {
            panic!()
        };
        assert_eq!(mean, vec![1_000_000.5]);
        assert_eq!(inv_std, vec![2.0]);
    }

    #[test]
    fn apply_is_the_exported_f32_arithmetic() {
        // Values whose fused or reordered evaluation would round differently.
        let norm = Normalization::Standardize {
            mean: vec![0.1, 1.0e7],
            inv_std: vec![3.3, 0.7],
        };
        let mut row = [0.3f32, 1.0e7 + 1.0];
        norm.apply_row(&mut row);
        let a = 0.3f32 - 0.1f32;
        let b = (1.0e7f32 + 1.0) - 1.0e7f32;
        assert_eq!(row, [a * 3.3f32, b * 0.7f32]);
        let scale = Normalization::Scale { scale: 1.0 / 255.0 };
        let mut row = [128.0f32];
        scale.apply_row(&mut row);
        assert_eq!(row, [128.0f32 * (1.0f32 / 255.0)]);
        let mut row = [5.0f32, -2.0];
        Normalization::None.apply_row(&mut row);
        assert_eq!(row, [5.0, -2.0]);
    }

    #[test]
    fn kind_parses_and_displays() {
        for kind in [
            NormalizationKind::None,
            NormalizationKind::Scale,
            NormalizationKind::Standardize,
        ] {
            assert_eq!(kind.to_string().parse::<NormalizationKind>(), Ok(kind));
        }
        assert!("zscore".parse::<NormalizationKind>().is_err());
    }
}
