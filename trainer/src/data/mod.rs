//! Datasets: IDX, CSV and the bundled UCI digits.
//!
//! [`load`] turns a [`DataSpec`] (the `--data` value) and [`DataOptions`] into
//! a train/test [`Split`] of raw (unnormalized) features; [`split`] makes seeded
//! stratified splits (also for validation); [`Normalization`] is fitted on the
//! training part and applied with the same f32 arithmetic as the exported graph.

mod csv;
mod error;
mod file;
mod idx;
mod normalize;
mod spec;
mod split;

use std::path::{Path, PathBuf};

pub use error::{DataError, IdxKind, Location};
pub use idx::{
    read_images, read_labels, IdxImages, MNIST_TEST_IMAGES, MNIST_TEST_LABELS, MNIST_TRAIN_IMAGES,
    MNIST_TRAIN_LABELS,
};
pub use normalize::{Normalization, NormalizationKind};
pub use spec::DataSpec;
pub use split::split;

/// The bundled UCI digits (1797 rows: 64 pixels 0..=16, then the label).
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");
/// The name the bundled digits go by in error messages.
const DIGITS_NAME: &str = "<bundled digits.csv.gz>";

/// What is predicted for each row.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One class index per row, each `< n_classes`.
    Classes { labels: Vec<u32>, n_classes: usize },
    /// `n_outputs` target values per row, row-major; with `anomaly`, whether each row is an
    /// anomaly (an autoencoder's test data: its reconstruction error is the anomaly score).
    Regression {
        values: Vec<f32>,
        n_outputs: usize,
        anomaly: Option<Vec<bool>>,
    },
}

impl Targets {
    /// One target value per row, no anomaly labels.
    pub fn single(values: Vec<f32>) -> Targets {
        Targets::Regression {
            values,
            n_outputs: 1,
            anomaly: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Regression {
                values, n_outputs, ..
            } => values.len() / (*n_outputs).max(1),
        }
    }
}

/// Features and targets of a set of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Row-major, `n_samples x n_features`, RAW values (not normalized).
    pub features: Vec<f32>,
    pub n_features: usize,
    pub targets: Targets,
}

impl Dataset {
    /// The number of rows (samples).
    pub fn n_samples(&self) -> usize {
        self.targets.len()
    }

    /// The features of row `row_idx`. Panics if out of range.
    pub fn row(&self, row_idx: usize) -> &[f32] {
        &self.features[row_idx * self.n_features..(row_idx + 1) * self.n_features]
    }

    /// The width of the output layer: `n_classes`, or the targets per row for regression.
    pub fn n_outputs(&self) -> usize {
        match &self.targets {
            Targets::Classes { n_classes, .. } => *n_classes,
            Targets::Regression { n_outputs, .. } => *n_outputs,
        }
    }

    /// The given rows, in the given order (repeats allowed). Panics if an index
    /// is out of range. A class subset keeps the full `n_classes`.
    pub fn subset(&self, row_indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(row_indices.len() * self.n_features);
        for &idx in row_indices {
            features.extend_from_slice(self.row(idx));
        }
        let targets = match &self.targets {
            Targets::Classes { labels, n_classes } => Targets::Classes {
                labels: row_indices.iter().map(|&idx| labels[idx]).collect(),
                n_classes: *n_classes,
            },
            Targets::Regression {
                values,
                n_outputs,
                anomaly,
            } => Targets::Regression {
                values: row_indices
                    .iter()
                    .flat_map(|&idx| &values[idx * n_outputs..(idx + 1) * n_outputs])
                    .copied()
                    .collect(),
                n_outputs: *n_outputs,
                anomaly: anomaly
                    .as_ref()
                    .map(|labels| row_indices.iter().map(|&idx| labels[idx]).collect()),
            },
        };
        Dataset {
            features,
            n_features: self.n_features,
            targets,
        }
    }
}

/// Which CSV columns hold the targets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LabelColumn {
    Last,
    /// 0-based column index.
    Index(usize),
    /// Regression: these 0-based columns, in this order, are the targets.
    Columns(Vec<usize>),
    /// An autoencoder: the targets are the features themselves.
    Inputs,
}

/// Whether a CSV file starts with a header row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HeaderMode {
    /// The first non-blank row is a header iff any of its fields is not a number.
    Auto,
    Present,
    Absent,
}

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TargetKind {
    /// `n_classes: None` infers the count. IDX: 10 if every label (train and
    /// test) is below 10, else the largest label + 1. CSV and digits: the
    /// largest label over train AND test + 1. `Some(k)`: any label >= k is a
    /// [`DataError::LabelOutOfRange`]. Fewer than 2 classes is an error.
    Classes { n_classes: Option<usize> },
    /// The label column (or IDX label byte) is the f32 target.
    Regression,
}

/// How to read and split the data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataOptions {
    /// CSV only.
    pub label_column: LabelColumn,
    /// CSV only.
    pub header: HeaderMode,
    /// CSV only: a separate test CSV with the same layout.
    pub test_data: Option<PathBuf>,
    /// The test fraction when there is no test file (digits, CSV without
    /// `test_data`, IDX without a test pair). Must be in (0, 1); checked always.
    pub test_split: f64,
    pub split_seed: u64,
    pub target: TargetKind,
    /// CSV only: a 0/1 column that marks anomalies. It is not a feature; regression reports
    /// the ROC AUC of the per-row error against it.
    #[serde(default)]
    pub anomaly_column: Option<usize>,
    /// The rows hold each position's channels together (HWC: TensorFlow's and a Keras model's
    /// order) for samples of `[h, w, c]`; loading reorders every row to the CHW order the layer
    /// graph reads. `kiln import` sets it for a channels-last source model, and the model file
    /// keeps it, so every later command reads the rows as the import did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels_last: Option<[usize; 3]>,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            label_column: LabelColumn::Last,
            header: HeaderMode::Auto,
            test_data: None,
            test_split: 0.25,
            split_seed: 0,
            target: TargetKind::Classes { n_classes: None },
            anomaly_column: None,
            channels_last: None,
        }
    }
}

/// A loaded train/test pair.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
    /// One line, e.g. "mnist:/path (60000 train, 10000 test, 784 features, 10 classes)".
    pub description: String,
}

/// Loads the data `spec` names and returns its train and test parts.
///
/// A source without its own test part (digits, CSV without `test_data`, IDX
/// without a test pair) is split with [`split`] using `test_split` and
/// `split_seed`. CSV-only options (`label_column`, `header`, `test_data`) set to
/// anything but their defaults with a non-CSV spec are an error rather than
/// silently ignored.
/// The largest class count kiln accepts. Class counts size allocations and the
/// output layer, so a stray label (say 983839839) must not be taken at its word.
pub const MAX_CLASSES: usize = 65_536;

/// Refuses target, label and anomaly columns that cannot be read together.
fn check_columns(options: &DataOptions) -> Result<(), DataError> {
    let fail = |detail: String| Err(DataError::TargetColumns { detail });
    let classes = matches!(options.target, TargetKind::Classes { .. });
    match &options.label_column {
        LabelColumn::Columns(columns) => {
            if columns.is_empty() {
                return fail("expected at least one target column".into());
            }
            if classes && columns.len() > 1 {
                return fail(format!(
                    "{} target columns need regression (--loss mse); a classifier has one label column",
                    columns.len()
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for &column in columns {
                if !seen.insert(column) {
                    return fail(format!("column {column} is named twice"));
                }
            }
            if let Some(anomaly) = options.anomaly_column.filter(|a| seen.contains(a)) {
                return fail(format!(
                    "column {anomaly} cannot be both a target and the anomaly column"
                ));
            }
        }
        LabelColumn::Inputs if classes => {
            return fail("an autoencoder (targets = inputs) needs regression (--loss mse)".into())
        }
        LabelColumn::Index(index) if options.anomaly_column == Some(*index) => {
            return fail(format!(
                "column {index} cannot be both the label and the anomaly column"
            ))
        }
        _ => {}
    }
    Ok(())
}

pub fn load(spec: &DataSpec, options: &DataOptions) -> Result<Split, DataError> {
    split::check_fraction(options.test_split)?;
    if let TargetKind::Classes { n_classes: Some(k) } = options.target {
        if k > MAX_CLASSES {
            return Err(DataError::TooManyClasses {
                context: "requested class count".to_string(),
                n_classes: k,
                max: MAX_CLASSES,
            });
        }
        if k < 2 {
            return Err(DataError::TooFewClasses {
                context: "requested class count".to_string(),
                n_classes: k,
            });
        }
    }
    check_columns(options)?;
    if !matches!(spec, DataSpec::Csv(_)) {
        let defaults = DataOptions::default();
        let misplaced = if options.test_data.is_some() {
            Some("test_data (--test-data)")
        } else if options.label_column != defaults.label_column {
            Some("label_column (--label-column)")
        } else if options.header != defaults.header {
            Some("header (--header)")
        } else if options.anomaly_column.is_some() {
            Some("anomaly_column (--anomaly-column)")
        } else {
            None
        };
        if let Some(option) = misplaced {
            return Err(DataError::CsvOptionWithoutCsv {
                option,
                spec: spec.to_string(),
            });
        }
    }

    let (train, test, name) = match spec {
        DataSpec::Digits => {
            let path = Path::new(DIGITS_NAME);
            let bytes = file::decompress(path, DIGITS_CSV_GZ.to_vec())?;
            let layout = csv::Layout {
                label_column: &LabelColumn::Last,
                anomaly_column: None,
                header: HeaderMode::Absent,
                target: options.target,
            };
            let table = csv::parse(path, &bytes, &layout)?;
            drop(bytes);
            let (train, _) = csv::finish(table, None, options.target)?;
            (train, None, spec.to_string())
        }
        DataSpec::Mnist(dir) => {
            let train_images = idx::find_mnist_file(dir, MNIST_TRAIN_IMAGES)?;
            let train_labels = idx::find_mnist_file(dir, MNIST_TRAIN_LABELS)?;
            let test_images = idx::find_mnist_file(dir, MNIST_TEST_IMAGES)?;
            let test_labels = idx::find_mnist_file(dir, MNIST_TEST_LABELS)?;
            let (train, test) = idx::load_pairs(
                (&train_images, &train_labels),
                Some((&test_images, &test_labels)),
                options.target,
            )?;
            (train, test, spec.to_string())
        }
        DataSpec::Idx {
            train_images,
            train_labels,
            test,
        } => {
            let test = test
                .as_ref()
                .map(|(images, labels)| (images.as_path(), labels.as_path()));
            let (train, test) =
                idx::load_pairs((train_images, train_labels), test, options.target)?;
            (train, test, spec.to_string())
        }
        DataSpec::Csv(path) => {
            let layout = csv::Layout {
                label_column: &options.label_column,
                anomaly_column: options.anomaly_column,
                header: options.header,
                target: options.target,
            };
            let train = csv::read(path, &layout)?;
            let test = options
                .test_data
                .as_ref()
                .map(|test| csv::read(test, &layout))
                .transpose()?;
            let (train, test) = csv::finish(train, test, options.target)?;
            let name = match &options.test_data {
                Some(test) => format!("{spec} + test {}", test.display()),
                None => spec.to_string(),
            };
            (train, test, name)
        }
    };

    let (train, test) = match options.channels_last {
        Some(shape) => (
            to_channels_first(train, shape, spec)?,
            test.map(|t| to_channels_first(t, shape, spec))
                .transpose()?,
        ),
        None => (train, test),
    };
    let (train, test, how) = match test {
        Some(test) => (train, test, String::new()),
        None => {
            let (first, second) =
                split::split_indices(&train, options.test_split, options.split_seed)?;
            let kind = match train.targets {
                Targets::Classes { .. } => "stratified",
                Targets::Regression { .. } => "random",
            };
            let how = format!(
                "; {kind} test split {} with seed {}",
                options.test_split, options.split_seed
            );
            (train.subset(&first), train.subset(&second), how)
        }
    };
    let targets = match &train.targets {
        Targets::Classes { n_classes, .. } => format!("{n_classes} classes"),
        Targets::Regression {
            n_outputs, anomaly, ..
        } => {
            let anomalies = match (&anomaly, &test.targets) {
                (
                    Some(_),
                    Targets::Regression {
                        anomaly: Some(test_labels),
                        ..
                    },
                ) => format!(
                    ", {} anomalous test rows",
                    test_labels.iter().filter(|&&a| a).count()
                ),
                _ => String::new(),
            };
            let outputs = if *n_outputs == 1 {
                "regression".to_string()
            } else {
                format!("regression of {n_outputs} targets")
            };
            format!("{outputs}{anomalies}")
        }
    };
    let description = format!(
        "{name} ({} train, {} test, {} features, {targets}{how})",
        train.n_samples(),
        test.n_samples(),
        train.n_features
    );
    Ok(Split {
        train,
        test,
        description,
    })
}

/// Every row of `data` from HWC (channels last) to CHW for samples of `[h, w, c]`.
fn to_channels_first(
    mut data: Dataset,
    [h, w, c]: [usize; 3],
    spec: &DataSpec,
) -> Result<Dataset, DataError> {
    if h * w * c != data.n_features {
        return Err(DataError::ChannelsLastShape {
            spec: spec.to_string(),
            h,
            w,
            c,
            n_features: data.n_features,
        });
    }
    data.features = reorder_hwc_rows(&data.features, [h, w, c], true);
    Ok(data)
}

/// Rows of samples of `[h, w, c]` from HWC (channels last) to CHW (`to_chw`), or back.
pub fn reorder_hwc_rows(features: &[f32], [h, w, c]: [usize; 3], to_chw: bool) -> Vec<f32> {
    // HWC feature i is CHW feature order[i]
    let order = crate::nn::shape::hwc_order(crate::nn::shape::Shape::new(h, w, c));
    let n = order.len().max(1);
    let mut out = vec![0.0; features.len()];
    for (row, moved) in features.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        for (hwc, &chw) in order.iter().enumerate() {
            if to_chw {
                moved[chw] = row[hwc];
            } else {
                moved[hwc] = row[chw];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_rows_load_channels_first() {
        // one 1x2x3 sample, HWC: pixel 0 = (1, 2, 3), pixel 1 = (4, 5, 6)
        let data = Dataset {
            features: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            n_features: 6,
            targets: Targets::Classes {
                labels: vec![0],
                n_classes: 2,
            },
        };
        let chw = to_channels_first(data.clone(), [1, 2, 3], &DataSpec::Digits).unwrap();
        assert_eq!(chw.features, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let error = to_channels_first(data, [2, 2, 3], &DataSpec::Digits).unwrap_err();
        assert_eq!(
            error.to_string(),
            "digits: the rows are channels last for samples of 2x2x3 (12 values), but they hold 6 features"
        );
    }

    fn class_counts(dataset: &Dataset) -> Vec<usize> {
        let Targets::Classes { labels, n_classes } = &dataset.targets else {
            panic!("not classes")
        };
        let mut counts = vec![0; *n_classes];
        for &label in labels {
            counts[label as usize] += 1;
        }
        counts
    }

    #[test]
    fn digits_load_and_split() {
        let split = load(&DataSpec::Digits, &DataOptions::default()).unwrap();
        let (train, test) = (&split.train, &split.test);
        assert_eq!(train.n_samples() + test.n_samples(), 1797);
        assert_eq!((train.n_samples(), test.n_samples()), (1348, 449));
        assert_eq!(train.n_features, 64);
        assert_eq!(train.n_outputs(), 10);
        assert_eq!(test.n_outputs(), 10);
        assert_eq!(train.features.len(), 1348 * 64);
        // Raw pixel values 0..=16.
        let max = train.features.iter().copied().fold(f32::MIN, f32::max);
        let min = train.features.iter().copied().fold(f32::MAX, f32::min);
        assert_eq!((min, max), (0.0, 16.0));
        // Every class in both parts, in proportion.
        let totals: Vec<usize> = class_counts(train)
            .iter()
            .zip(class_counts(test))
            .map(|(a, b)| a + b)
            .collect();
        assert_eq!(
            totals,
            vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
        );
        for (class, (&n_test, &total)) in class_counts(test).iter().zip(&totals).enumerate() {
            assert!(n_test > 0 && n_test < total, "class {class}");
            assert!(
                (n_test as f64 - total as f64 * 0.25).abs() <= 1.0,
                "class {class}: {n_test}/{total}"
            );
        }
        assert_eq!(
            split.description,
            "digits (1348 train, 449 test, 64 features, 10 classes; stratified test split 0.25 with seed 0)"
        );

        // Deterministic by seed; another seed gives another split.
        let again = load(&DataSpec::Digits, &DataOptions::default()).unwrap();
        assert_eq!((&again.train, &again.test), (train, test));
        let other = load(
            &DataSpec::Digits,
            &DataOptions {
                split_seed: 1,
                ..DataOptions::default()
            },
        )
        .unwrap();
        assert_eq!(other.test.n_samples(), 449);
        assert_ne!(other.test, *test);
    }

    #[test]
    fn digits_rows_are_the_bundled_rows() {
        // With the rows kept in original order, the first row of the data set is
        // in one of the two parts; the first line of digits.csv is a 0.
        let first: [f32; 64] = [
            0., 0., 5., 13., 9., 1., 0., 0., 0., 0., 13., 15., 10., 15., 5., 0., 0., 3., 15., 2.,
            0., 11., 8., 0., 0., 4., 12., 0., 0., 8., 8., 0., 0., 5., 8., 0., 0., 9., 8., 0., 0.,
            4., 11., 0., 1., 12., 7., 0., 0., 2., 14., 5., 10., 12., 0., 0., 0., 0., 6., 13., 10.,
            0., 0., 0.,
        ];
        let split = load(&DataSpec::Digits, &DataOptions::default()).unwrap();
        let part = if split.train.row(0) == first {
            &split.train
        } else {
            &split.test
        };
        assert_eq!(part.row(0), first);
        let Targets::Classes { labels, .. } = &part.targets else {
            panic!()
        };
        assert_eq!(labels[0], 0);
    }

    #[test]
    fn digits_as_regression_and_with_class_limits() {
        let options = DataOptions {
            target: TargetKind::Regression,
            test_split: 0.1,
            ..DataOptions::default()
        };
        let split = load(&DataSpec::Digits, &options).unwrap();
        assert_eq!(
            (split.train.n_samples(), split.test.n_samples()),
            (1617, 180)
        );
        assert_eq!(split.train.n_outputs(), 1);
        assert!(
            split
                .description
                .contains("regression; random test split 0.1"),
            "{}",
            split.description
        );

        // n_classes = 5: the first label >= 5 is on line 6 of digits.csv.
        let options = DataOptions {
            target: TargetKind::Classes { n_classes: Some(5) },
            ..DataOptions::default()
        };
        let err = load(&DataSpec::Digits, &options).err().unwrap();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    label: 5,
                    n_classes: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(DIGITS_NAME) && text.contains("line 6") && text.contains("0..=4"),
            "{text}"
        );

        let options = DataOptions {
            target: TargetKind::Classes {
                n_classes: Some(12),
            },
            ..DataOptions::default()
        };
        assert_eq!(
            load(&DataSpec::Digits, &options).unwrap().test.n_outputs(),
            12
        );

        let options = DataOptions {
            target: TargetKind::Classes { n_classes: Some(1) },
            ..DataOptions::default()
        };
        assert!(matches!(
            load(&DataSpec::Digits, &options),
            Err(DataError::TooFewClasses { n_classes: 1, .. })
        ));
    }

    #[test]
    fn invalid_options() {
        for test_split in [0.0, 1.0, -0.25, 2.0, f64::NAN] {
            let options = DataOptions {
                test_split,
                ..DataOptions::default()
            };
            let err = load(&DataSpec::Digits, &options).err().unwrap();
            assert!(
                matches!(err, DataError::InvalidSplitFraction { .. }),
                "{test_split}: {err:?}"
            );
            assert!(err.to_string().contains(&test_split.to_string()));
        }
        let options = DataOptions {
            test_data: Some("t.csv".into()),
            ..DataOptions::default()
        };
        let err = load(&DataSpec::Digits, &options).err().unwrap();
        assert!(
            matches!(err, DataError::CsvOptionWithoutCsv { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("test_data") && err.to_string().contains("digits"));
        let options = DataOptions {
            label_column: LabelColumn::Index(0),
            ..DataOptions::default()
        };
        assert!(matches!(
            load(&DataSpec::Mnist("/nonexistent".into()), &options),
            Err(DataError::CsvOptionWithoutCsv { .. })
        ));
    }

    #[test]
    fn dataset_accessors() {
        let data = Dataset {
            features: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            n_features: 2,
            targets: Targets::Classes {
                labels: vec![0, 1, 2],
                n_classes: 4,
            },
        };
        assert_eq!(data.n_samples(), 3);
        assert_eq!(data.row(1), [3.0, 4.0]);
        assert_eq!(data.n_outputs(), 4);
        let sub = data.subset(&[2, 0, 2]);
        assert_eq!(sub.features, vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
        assert_eq!(
            sub.targets,
            Targets::Classes {
                labels: vec![2, 0, 2],
                n_classes: 4
            }
        );
        let empty = data.subset(&[]);
        assert_eq!(empty.n_samples(), 0);
        assert_eq!(empty.n_outputs(), 4);
    }

    #[test]
    fn options_serde_roundtrip() {
        let options = DataOptions {
            label_column: LabelColumn::Index(3),
            header: HeaderMode::Present,
            test_data: Some("t.csv".into()),
            test_split: 0.2,
            split_seed: 9,
            target: TargetKind::Classes { n_classes: Some(3) },
            anomaly_column: Some(4),
            channels_last: Some([2, 3, 4]),
        };
        let json = serde_json::to_string(&options).unwrap();
        assert_eq!(serde_json::from_str::<DataOptions>(&json).unwrap(), options);
        let spec = DataSpec::Idx {
            train_images: "a".into(),
            train_labels: "b".into(),
            test: Some(("c".into(), "d".into())),
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<DataSpec>(&json).unwrap(), spec);
    }
}
