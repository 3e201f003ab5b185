//! CSV files, raw or gzip-compressed (detected by content).
//!
//! The dialect is deliberately small: fields are separated by commas and
//! trimmed of surrounding whitespace; there is no quoting. Blank lines are
//! skipped but still counted, so error line numbers match a text editor. `\r\n`
//! line ends, a UTF-8 byte-order mark and a missing or present final newline are
//! all fine. Every row must have as many fields as the first row (the header, if
//! any). Features must be finite numbers. Class labels must be non-negative
//! integers ("3" or "3.0"); regression targets are any finite number.

use std::path::{Path, PathBuf};

use super::error::{DataError, Location};
use super::file;
use super::{Dataset, HeaderMode, LabelColumn, TargetKind, Targets};

#[derive(Debug)]
enum RawTargets {
    Classes(Vec<u32>),
    /// `n_outputs` values per row.
    Regression {
        values: Vec<f32>,
        n_outputs: usize,
    },
}

/// A parsed CSV file whose class count is not resolved yet.
#[derive(Debug)]
pub(crate) struct CsvTable {
    path: PathBuf,
    n_fields: usize,
    n_features: usize,
    features: Vec<f32>,
    targets: RawTargets,
    anomaly: Option<Vec<bool>>,
}

/// Which columns are what, and how to read them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout<'a> {
    pub label_column: &'a LabelColumn,
    pub anomaly_column: Option<usize>,
    pub header: HeaderMode,
    pub target: TargetKind,
}

/// What one CSV column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Feature,
    /// The class label or a regression target (its index among the targets).
    Target(usize),
    Anomaly,
}

/// Why a class label is not acceptable, if it is not.
fn parse_class_label(text: &str) -> Result<u32, &'static str> {
    let value: f64 = text.parse().map_err(|_| "not a number")?;
    if !value.is_finite() {
        Err("not finite")
    } else if value < 0.0 {
        Err("negative")
    } else if value.fract() != 0.0 {
        Err("not an integer")
    } else if value > f64::from(u32::MAX) {
        Err("too large")
    } else {
        Ok(value as u32)
    }
}

fn is_numeric(field: &str) -> bool {
    field.parse::<f64>().is_ok()
}

/// The role of every column of a row with `n_fields` fields, and the number of targets.
fn column_roles(
    path: &Path,
    line: usize,
    n_fields: usize,
    layout: &Layout<'_>,
) -> Result<(Vec<Role>, usize), DataError> {
    let missing = |role: &'static str, index: usize| DataError::CsvLabelColumn {
        path: path.to_path_buf(),
        line,
        role,
        index,
        n_fields,
    };
    let mut roles = vec![Role::Feature; n_fields];
    if let Some(index) = layout.anomaly_column {
        *roles
            .get_mut(index)
            .ok_or_else(|| missing("anomaly", index))? = Role::Anomaly;
    }
    let n_targets = match layout.label_column {
        LabelColumn::Last | LabelColumn::Index(_) => {
            let index = match *layout.label_column {
                LabelColumn::Index(index) => index,
                _ => n_fields - 1,
            };
            let role = roles
                .get_mut(index)
                .ok_or_else(|| missing("label", index))?;
            if *role == Role::Anomaly {
                return Err(DataError::TargetColumns {
                    detail: format!(
                        "column {index} cannot be both the label and the anomaly column"
                    ),
                });
            }
            *role = Role::Target(0);
            1
        }
        LabelColumn::Columns(columns) => {
            for (target_idx, &index) in columns.iter().enumerate() {
                *roles
                    .get_mut(index)
                    .ok_or_else(|| missing("target", index))? = Role::Target(target_idx);
            }
            columns.len()
        }
        // The targets are the features, counted below.
        LabelColumn::Inputs => 0,
    };
    let n_features = roles.iter().filter(|&&r| r == Role::Feature).count();
    if n_features == 0 {
        return Err(DataError::CsvNoFeatures {
            path: path.to_path_buf(),
            line,
            n_fields,
        });
    }
    let n_targets = if *layout.label_column == LabelColumn::Inputs {
        n_features
    } else {
        n_targets
    };
    Ok((roles, n_targets))
}

/// Parses CSV text (`bytes`, possibly gzip); `path` names it in errors.
pub(crate) fn parse(path: &Path, bytes: &[u8], layout: &Layout<'_>) -> Result<CsvTable, DataError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let line = bytes[..err.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(DataError::CsvNotUtf8 {
                path: path.to_path_buf(),
                line,
            });
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let limit = match layout.target {
        TargetKind::Classes { n_classes: Some(k) } => Some(k),
        _ => None,
    };
    let autoencoder = *layout.label_column == LabelColumn::Inputs;

    let mut features = Vec::new();
    let mut classes = Vec::new();
    let mut values = Vec::new();
    let mut anomaly = Vec::new();
    // A row's targets, in target order, before they are appended to `values`.
    let mut row_targets: Vec<f32> = Vec::new();
    // The column roles and the target count, once the first non-blank row is seen.
    let mut roles: Option<(Vec<Role>, usize)> = None;
    let mut fields: Vec<&str> = Vec::new();
    let mut offset = 0; // byte offset of the current line in `text`
    for (line_idx, raw_line) in text.split('\n').enumerate() {
        let line = line_idx + 1;
        let line_start = offset;
        offset += raw_line.len() + 1;
        let trimmed = raw_line.trim();
        if trimmed.is_empty() {
            continue;
        }
        fields.clear();
        fields.extend(trimmed.split(',').map(str::trim));

        if roles.is_none() {
            let n_fields = fields.len();
            let (column_roles, n_targets) = column_roles(path, line, n_fields, layout)?;
            roles = Some((column_roles, n_targets));
            // A row takes at least ~2 bytes a field ("0,"): reserve for the
            // most rows the rest of the text can hold, avoiding regrowth.
            let max_rows = (text.len() - line_start) / (2 * n_fields) + 1;
            features.reserve(max_rows * (n_fields - 1));
            let is_header = match layout.header {
                HeaderMode::Present => true,
                HeaderMode::Absent => false,
                HeaderMode::Auto => !fields.iter().all(|field| is_numeric(field)),
            };
            if is_header {
                continue;
            }
        }
        let Some((column_roles, n_targets)) = &roles else {
            unreachable!("set above")
        };
        if fields.len() != column_roles.len() {
            return Err(DataError::CsvRagged {
                path: path.to_path_buf(),
                line,
                found: fields.len(),
                expected: column_roles.len(),
            });
        }
        row_targets.clear();
        row_targets.resize(*n_targets, 0.0);
        let row_start = features.len();
        for ((idx, &field), &role) in fields.iter().enumerate().zip(column_roles) {
            let column = idx + 1;
            match role {
                Role::Feature => features.push(parse_number(path, line, column, field)?),
                Role::Anomaly => anomaly.push(match field.parse::<f64>() {
                    Ok(0.0) => false,
                    Ok(1.0) => true,
                    _ => {
                        return Err(DataError::BadAnomalyLabel {
                            path: path.to_path_buf(),
                            line,
                            column,
                            text: field.to_string(),
                        })
                    }
                }),
                Role::Target(target_idx) => match layout.target {
                    TargetKind::Classes { .. } => {
                        let label =
                            parse_class_label(field).map_err(|reason| DataError::BadLabel {
                                path: path.to_path_buf(),
                                line,
                                column,
                                text: field.to_string(),
                                reason,
                            })?;
                        if let Some(k) = limit {
                            if label as usize >= k {
                                return Err(DataError::LabelOutOfRange {
                                    path: path.to_path_buf(),
                                    location: Location::Line(line),
                                    label: u64::from(label),
                                    n_classes: k,
                                });
                            }
                        }
                        classes.push(label);
                    }
                    TargetKind::Regression => {
                        row_targets[target_idx] = parse_number(path, line, column, field)?;
                    }
                },
            }
        }
        if let TargetKind::Regression = layout.target {
            if autoencoder {
                values.extend_from_slice(&features[row_start..]);
            } else {
                values.extend_from_slice(&row_targets);
            }
        }
    }

    let Some((column_roles, n_targets)) = roles else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    };
    let n_fields = column_roles.len();
    let n_features = column_roles.iter().filter(|&&r| r == Role::Feature).count();
    let n_rows = features.len() / n_features;
    if n_rows == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let targets = match layout.target {
        TargetKind::Classes { .. } => RawTargets::Classes(classes),
        TargetKind::Regression => RawTargets::Regression {
            values,
            n_outputs: n_targets,
        },
    };
    features.shrink_to_fit();
    Ok(CsvTable {
        path: path.to_path_buf(),
        n_fields,
        n_features,
        features,
        targets,
        anomaly: layout.anomaly_column.map(|_| anomaly),
    })
}

fn parse_number(path: &Path, line: usize, column: usize, field: &str) -> Result<f32, DataError> {
    match field.parse::<f32>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(DataError::NonFinite {
            path: path.to_path_buf(),
            line,
            column,
            text: field.to_string(),
        }),
        Err(_) => Err(DataError::CsvNotNumeric {
            path: path.to_path_buf(),
            line,
            column,
            text: field.to_string(),
        }),
    }
}

/// Reads and parses the CSV file at `path`.
pub(crate) fn read(path: &Path, layout: &Layout<'_>) -> Result<CsvTable, DataError> {
    let bytes = file::read_all(path)?;
    parse(path, &bytes, layout)
}

/// Checks a test table against its train table and resolves the class count:
/// with `Classes { n_classes: None }` it is the largest label over train AND
/// test, plus one (at least 2 is required).
pub(crate) fn finish(
    train: CsvTable,
    test: Option<CsvTable>,
    target: TargetKind,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    if let Some(test) = &test {
        if test.n_fields != train.n_fields {
            return Err(DataError::TestColumnMismatch {
                train: train.path.clone(),
                train_columns: train.n_fields,
                test: test.path.clone(),
                test_columns: test.n_fields,
            });
        }
    }
    let n_classes = match target {
        TargetKind::Classes { n_classes: Some(k) } => k,
        TargetKind::Classes { n_classes: None } => {
            let max = [Some(&train), test.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|table| match &table.targets {
                    RawTargets::Classes(labels) => labels.iter().copied().max(),
                    RawTargets::Regression { .. } => None,
                })
                .max()
                .unwrap_or(0);
            let n_classes = max as usize + 1;
            if n_classes > super::MAX_CLASSES {
                return Err(DataError::TooManyClasses {
                    context: format!("{}: the largest label is {max}", train.path.display()),
                    n_classes,
                    max: super::MAX_CLASSES,
                });
            }
            if n_classes < 2 {
                return Err(DataError::TooFewClasses {
                    context: format!("{}: every label is {max}", train.path.display()),
                    n_classes,
                });
            }
            n_classes
        }
        TargetKind::Regression => 1,
    };
    let into_dataset = |table: CsvTable| Dataset {
        features: table.features,
        n_features: table.n_features,
        targets: match table.targets {
            RawTargets::Classes(labels) => Targets::Classes { labels, n_classes },
            RawTargets::Regression { values, n_outputs } => Targets::Regression {
                values,
                n_outputs,
                anomaly: table.anomaly,
            },
        },
    };
    Ok((into_dataset(train), test.map(into_dataset)))
}

#[cfg(test)]
mod tests {
    use super::super::{load, DataOptions, DataSpec};
    use super::*;
    use crate::data::idx::tests::write_bytes;

    const CLASSES: TargetKind = TargetKind::Classes { n_classes: None };

    fn parse_str(
        text: &str,
        label: LabelColumn,
        header: HeaderMode,
        target: TargetKind,
    ) -> Result<Dataset, DataError> {
        let layout = Layout {
            label_column: &label,
            anomaly_column: None,
            header,
            target,
        };
        let table = parse(Path::new("mem.csv"), text.as_bytes(), &layout)?;
        Ok(finish(table, None, target)?.0)
    }

    fn parse_str_bytes(bytes: &[u8]) -> Result<CsvTable, DataError> {
        let layout = Layout {
            label_column: &LabelColumn::Last,
            anomaly_column: None,
            header: HeaderMode::Auto,
            target: CLASSES,
        };
        parse(Path::new("mem.csv"), bytes, &layout)
    }

    fn err_str(text: &str) -> DataError {
        parse_str(text, LabelColumn::Last, HeaderMode::Auto, CLASSES).unwrap_err()
    }

    fn msg(err: &DataError) -> String {
        let text = err.to_string();
        assert!(!text.contains('\n'), "multi-line message: {text}");
        assert!(
            text.contains("mem.csv") || text.contains(".csv"),
            "no file name: {text}"
        );
        text
    }

    #[test]
    fn header_auto_detection_both_ways() {
        let with = parse_str(
            "a, b ,label\n1,2,0\n3,4,1\n",
            LabelColumn::Last,
            HeaderMode::Auto,
            CLASSES,
        )
        .unwrap();
        assert_eq!(with.n_samples(), 2);
        assert_eq!(with.features, vec![1.0, 2.0, 3.0, 4.0]);
        let without = parse_str(
            "1,2,0\n3,4,1\n",
            LabelColumn::Last,
            HeaderMode::Auto,
            CLASSES,
        )
        .unwrap();
        assert_eq!(without.n_samples(), 2);
        assert_eq!(without.features, vec![1.0, 2.0, 3.0, 4.0]);
        // One non-numeric field is enough to make the first row a header.
        let mixed = parse_str(
            "1,x,0\n3,4,1\n",
            LabelColumn::Last,
            HeaderMode::Auto,
            CLASSES,
        )
        .unwrap();
        assert_eq!(mixed.n_samples(), 1);
        // Present skips a numeric first row; Absent rejects a textual one.
        let present = parse_str(
            "1,2,0\n3,4,1\n",
            LabelColumn::Last,
            HeaderMode::Present,
            CLASSES,
        )
        .unwrap();
        assert_eq!(present.features, vec![3.0, 4.0]);
        let err = parse_str(
            "a,b,c\n3,4,1\n",
            LabelColumn::Last,
            HeaderMode::Absent,
            CLASSES,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CsvNotNumeric {
                    line: 1,
                    column: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        // A header after leading blank lines.
        let blank_first = parse_str(
            "\n\nx,y\n5,6\n",
            LabelColumn::Last,
            HeaderMode::Auto,
            TargetKind::Regression,
        )
        .unwrap();
        assert_eq!(blank_first.features, vec![5.0]);
    }

    #[test]
    fn first_column_as_label() {
        let data = parse_str(
            "label,p0,p1\n2,10,11\n0,20,21\n1,30,31\n",
            LabelColumn::Index(0),
            HeaderMode::Auto,
            CLASSES,
        )
        .unwrap();
        assert_eq!(data.n_features, 2);
        assert_eq!(data.row(1), [20.0, 21.0]);
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![2, 0, 1],
                n_classes: 3
            }
        );
        let middle = parse_str(
            "10,2,11\n20,0,21\n",
            LabelColumn::Index(1),
            HeaderMode::Auto,
            CLASSES,
        )
        .unwrap();
        assert_eq!(middle.features, vec![10.0, 11.0, 20.0, 21.0]);
        assert_eq!(
            middle.targets,
            Targets::Classes {
                labels: vec![2, 0],
                n_classes: 3
            }
        );
        let err = parse_str(
            "1,2\n3,1\n",
            LabelColumn::Index(2),
            HeaderMode::Auto,
            CLASSES,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CsvLabelColumn {
                    index: 2,
                    n_fields: 2,
                    line: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(msg(&err).contains("line 1"));
    }

    #[test]
    fn whitespace_crlf_bom_blank_lines_and_float_labels() {
        let text = "\u{feff} 1.5 ,\t-2e1, 3.0 \r\n\r\n   \r\n4,5,1\r\n\r\n";
        let data = parse_str(text, LabelColumn::Last, HeaderMode::Auto, CLASSES).unwrap();
        assert_eq!(data.features, vec![1.5, -20.0, 4.0, 5.0]);
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![3, 1],
                n_classes: 4
            }
        );
        // No final newline is fine too.
        let data = parse_str("1,2,0\n3,4,1", LabelColumn::Last, HeaderMode::Auto, CLASSES).unwrap();
        assert_eq!(data.n_samples(), 2);
    }

    fn parse_layout(
        text: &str,
        label: LabelColumn,
        anomaly_column: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let layout = Layout {
            label_column: &label,
            anomaly_column,
            header: HeaderMode::Auto,
            target: TargetKind::Regression,
        };
        let table = parse(Path::new("mem.csv"), text.as_bytes(), &layout)?;
        Ok(finish(table, None, TargetKind::Regression)?.0)
    }

    #[test]
    fn several_target_columns_in_the_given_order() {
        let text = "a,b,c,d,e\n1,2,3,4,5\n6,7,8,9,10\n";
        let data = parse_layout(text, LabelColumn::Columns(vec![4, 1]), None).unwrap();
        assert_eq!(data.n_features, 3);
        assert_eq!(data.features, vec![1.0, 3.0, 4.0, 6.0, 8.0, 9.0]);
        assert_eq!(
            data.targets,
            Targets::Regression {
                values: vec![5.0, 2.0, 10.0, 7.0],
                n_outputs: 2,
                anomaly: None,
            }
        );
        assert_eq!((data.n_samples(), data.n_outputs()), (2, 2));
        let picked = data.subset(&[1]);
        assert_eq!(picked.features, vec![6.0, 8.0, 9.0]);
        assert_eq!(
            picked.targets,
            Targets::Regression {
                values: vec![10.0, 7.0],
                n_outputs: 2,
                anomaly: None,
            }
        );
        // Every column a target: nothing left to learn from.
        let err = parse_layout("1,2\n", LabelColumn::Columns(vec![0, 1]), None).unwrap_err();
        assert!(
            msg(&err).contains("expected at least one feature column"),
            "{err}"
        );
        let err = parse_layout("1,2\n", LabelColumn::Columns(vec![0, 5]), None).unwrap_err();
        assert!(
            msg(&err).contains("target column 5 (0-based) does not exist; the row has 2 fields"),
            "{err}"
        );
    }

    #[test]
    fn autoencoder_targets_are_the_features_and_the_anomaly_column_is_neither() {
        let text = "-1.5,2,0\n3,-4.25,1\n";
        let data = parse_layout(text, LabelColumn::Inputs, Some(2)).unwrap();
        assert_eq!(data.n_features, 2);
        assert_eq!(data.features, vec![-1.5, 2.0, 3.0, -4.25]);
        assert_eq!(
            data.targets,
            Targets::Regression {
                values: vec![-1.5, 2.0, 3.0, -4.25],
                n_outputs: 2,
                anomaly: Some(vec![false, true]),
            }
        );
        let reversed = data.subset(&[1, 0]);
        let Targets::Regression { anomaly, .. } = &reversed.targets else {
            panic!("regression")
        };
        assert_eq!(anomaly.as_deref(), Some(&[true, false][..]));
        let err = parse_layout("1,2,0.5\n", LabelColumn::Inputs, Some(2)).unwrap_err();
        assert!(
            msg(&err).contains("line 1, column 3: anomaly label \"0.5\" is not 0 or 1"),
            "{err}"
        );
        let err = parse_layout("1,2\n", LabelColumn::Inputs, Some(9)).unwrap_err();
        assert!(msg(&err).contains("anomaly column 9 (0-based)"), "{err}");
        let err = parse_layout("1,2,3\n", LabelColumn::Last, Some(2)).unwrap_err();
        assert!(
            err.to_string()
                .contains("column 2 cannot be both the label and the anomaly column"),
            "{err}"
        );
    }

    #[test]
    fn target_columns_that_cannot_go_together_are_refused_before_reading() {
        let refused = |label_column: LabelColumn, anomaly_column, target| {
            let options = DataOptions {
                label_column,
                anomaly_column,
                target,
                ..DataOptions::default()
            };
            load(&DataSpec::Csv("never-read.csv".into()), &options)
                .unwrap_err()
                .to_string()
        };
        let regression = TargetKind::Regression;
        assert!(
            refused(LabelColumn::Columns(vec![1, 2, 1]), None, regression)
                .contains("column 1 is named twice")
        );
        assert!(refused(LabelColumn::Columns(vec![]), None, regression)
            .contains("at least one target column"));
        assert!(
            refused(LabelColumn::Columns(vec![1, 2]), Some(2), regression)
                .contains("column 2 cannot be both a target and the anomaly column")
        );
        assert!(refused(LabelColumn::Columns(vec![1, 2]), None, CLASSES)
            .contains("2 target columns need regression"));
        assert!(refused(LabelColumn::Inputs, None, CLASSES).contains("autoencoder"));
        assert!(refused(LabelColumn::Index(3), Some(3), CLASSES)
            .contains("both the label and the anomaly column"));
        // The anomaly column is a CSV option.
        let options = DataOptions {
            anomaly_column: Some(0),
            ..DataOptions::default()
        };
        let err = load(&DataSpec::Digits, &options).unwrap_err().to_string();
        assert!(err.contains("--anomaly-column"), "{err}");
    }

    #[test]
    fn regression_targets() {
        let data = parse_str(
            "x,y,t\n1,2,0.5\n3,4,-1.25\n",
            LabelColumn::Last,
            HeaderMode::Auto,
            TargetKind::Regression,
        )
        .unwrap();
        assert_eq!(data.targets, Targets::single(vec![0.5, -1.25]));
        assert_eq!(data.n_outputs(), 1);
        let err = parse_str(
            "1,2,abc\n",
            LabelColumn::Last,
            HeaderMode::Absent,
            TargetKind::Regression,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CsvNotNumeric {
                    line: 1,
                    column: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = parse_str(
            "1,2,3\n1,2,inf\n",
            LabelColumn::Last,
            HeaderMode::Auto,
            TargetKind::Regression,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::NonFinite {
                    line: 2,
                    column: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn non_numeric_field_names_line_column_and_text() {
        // Line 3 is blank but counted.
        let err = err_str("1,2,0\n3,4,1\n\n5,oops,1\n");
        assert!(
            matches!(
                err,
                DataError::CsvNotNumeric {
                    line: 4,
                    column: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = msg(&err);
        assert!(
            text.contains("line 4") && text.contains("column 2") && text.contains("\"oops\""),
            "{text}"
        );
        let err = err_str("1,2,0\n3,,1\n");
        assert!(
            matches!(
                err,
                DataError::CsvNotNumeric {
                    line: 2,
                    column: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn ragged_rows() {
        let err = err_str("a,b,c\n1,2,0\n3,4,1\n5,1\n");
        assert!(
            matches!(
                err,
                DataError::CsvRagged {
                    line: 4,
                    found: 2,
                    expected: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = msg(&err);
        assert!(
            text.contains("line 4") && text.contains("found 2 fields, expected 3"),
            "{text}"
        );
        let err = err_str("1,2,0\n3,4,5,1\n");
        assert!(
            matches!(
                err,
                DataError::CsvRagged {
                    line: 2,
                    found: 4,
                    expected: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn bad_class_labels() {
        for (label, reason) in [
            ("2.5", "not an integer"),
            ("-1", "negative"),
            ("cat", "not a number"),
            ("nan", "not finite"),
        ] {
            let err = err_str(&format!("1,2,0\n3,4,{label}\n"));
            match &err {
                DataError::BadLabel {
                    line: 2,
                    column: 3,
                    text,
                    reason: r,
                    ..
                } => {
                    assert_eq!(text, label);
                    assert_eq!(*r, reason);
                }
                other => panic!("{label}: {other:?}"),
            }
            let text = msg(&err);
            assert!(
                text.contains("line 2") && text.contains(label) && text.contains(reason),
                "{text}"
            );
        }
        let ok = parse_str(
            "1,2,-0\n3,4,7.0\n",
            LabelColumn::Last,
            HeaderMode::Auto,
            CLASSES,
        )
        .unwrap();
        assert_eq!(
            ok.targets,
            Targets::Classes {
                labels: vec![0, 7],
                n_classes: 8
            }
        );
    }

    #[test]
    fn label_out_of_range_and_too_few_classes() {
        let target = TargetKind::Classes { n_classes: Some(3) };
        let err = parse_str(
            "1,2,0\n3,4,2\n5,6,3\n",
            LabelColumn::Last,
            HeaderMode::Auto,
            target,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                label: 3,
                n_classes: 3,
                location: Location::Line(3),
                ..
            }
        ));
        let text = msg(&err);
        assert!(
            text.contains("line 3") && text.contains("label 3") && text.contains("0..=2"),
            "{text}"
        );
        let err = err_str("1,2,0\n3,4,0\n");
        assert!(
            matches!(err, DataError::TooFewClasses { n_classes: 1, .. }),
            "{err:?}"
        );
        assert!(msg(&err).contains("mem.csv"));
    }

    #[test]
    fn non_finite_values() {
        for bad in ["NaN", "inf", "-infinity", "1e39"] {
            let err = err_str(&format!("1,2,0\n3,{bad},1\n"));
            assert!(
                matches!(
                    err,
                    DataError::NonFinite {
                        line: 2,
                        column: 2,
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
            let text = msg(&err);
            assert!(
                text.contains("line 2") && text.contains("column 2") && text.contains(bad),
                "{text}"
            );
        }
    }

    #[test]
    fn empty_files() {
        for text in ["", "\n\n  \n", "a,b,label\n", "a,b,label\n\n"] {
            let err = err_str(text);
            assert!(matches!(err, DataError::Empty { .. }), "{text:?}: {err:?}");
            assert!(msg(&err).contains("mem.csv"));
        }
        let err = err_str("1\n2\n");
        assert!(
            matches!(err, DataError::CsvNoFeatures { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn not_utf8() {
        let err = parse_str_bytes(b"1,2,0\n\xff,2,0\n").unwrap_err();
        assert!(
            matches!(err, DataError::CsvNotUtf8 { line: 2, .. }),
            "{err:?}"
        );
        assert!(msg(&err).contains("line 2"));
    }

    #[test]
    fn csv_files_with_test_file_gzip_and_class_count_over_both() {
        let dir = tempfile::tempdir().unwrap();
        // Gzip content under a plain .csv name, plain content under .csv.gz.
        let train = dir.path().join("train.csv");
        let test = dir.path().join("test.csv.gz");
        write_bytes(&train, b"f1,f2,y\n1,2,0\n3,4,1\n5,6,2\n", true);
        write_bytes(&test, b"7,8,3\n9,10,0\n", false);
        let options = DataOptions {
            test_data: Some(test.clone()),
            ..DataOptions::default()
        };
        let split = load(&DataSpec::Csv(train.clone()), &options).unwrap();
        assert_eq!(split.train.n_samples(), 3);
        assert_eq!(split.test.n_samples(), 2);
        assert_eq!(split.train.n_features, 2);
        // The test file holds label 3: four classes in both parts.
        assert_eq!(split.train.n_outputs(), 4);
        assert_eq!(
            split.test.targets,
            Targets::Classes {
                labels: vec![3, 0],
                n_classes: 4
            }
        );
        assert_eq!(split.test.row(0), [7.0, 8.0]);
        assert!(
            split
                .description
                .contains("3 train, 2 test, 2 features, 4 classes"),
            "{}",
            split.description
        );

        // A test file with another layout.
        let wide = dir.path().join("wide.csv");
        write_bytes(&wide, b"1,2,3,0\n", false);
        let options = DataOptions {
            test_data: Some(wide),
            ..DataOptions::default()
        };
        let err = load(&DataSpec::Csv(train.clone()), &options).err().unwrap();
        assert!(
            matches!(
                err,
                DataError::TestColumnMismatch {
                    train_columns: 3,
                    test_columns: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("wide.csv") && text.contains("train.csv"),
            "{text}"
        );

        // Missing train and test files.
        let missing = dir.path().join("missing.csv");
        let err = load(&DataSpec::Csv(missing.clone()), &DataOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.csv"));
        let options = DataOptions {
            test_data: Some(missing),
            ..DataOptions::default()
        };
        let err = load(&DataSpec::Csv(train.clone()), &options).err().unwrap();
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");

        // Errors in a file carry that file's name.
        let bad = dir.path().join("bad.csv");
        write_bytes(&bad, b"1,2,0\n1,2,0\n1,x,1\n", true);
        let err = load(&DataSpec::Csv(bad), &DataOptions::default())
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("bad.csv") && text.contains("line 3") && text.contains("column 2"),
            "{text}"
        );
    }

    #[test]
    fn csv_without_test_file_is_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        let mut text = String::from("a,b,y\n");
        for i in 0..40 {
            text.push_str(&format!("{i},{},{}\n", i * 2, i % 2));
        }
        write_bytes(&path, text.as_bytes(), false);
        let options = DataOptions {
            test_split: 0.5,
            split_seed: 3,
            ..DataOptions::default()
        };
        let split = load(&DataSpec::Csv(path), &options).unwrap();
        assert_eq!((split.train.n_samples(), split.test.n_samples()), (20, 20));
        assert!(
            split.description.contains("seed 3"),
            "{}",
            split.description
        );
    }
}
