//! `DataSpec`: where the data comes from, as given to `--data`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::DataError;

/// Where data comes from. Parsed from the CLI's `--data` value:
///
/// * `digits`: the bundled UCI digits;
/// * `mnist:DIR`: the four standard MNIST (or Fashion-MNIST) files in DIR,
///   each named `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
///   `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, with or without
///   ".gz", or in the dotted variant (`train-images.idx3-ubyte`);
/// * `idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS]`;
/// * `csv:PATH`, or any PATH ending in `.csv` or `.csv.gz` (case-insensitive).
///
/// `Display` always writes the prefixed form and round-trips through `FromStr`
/// for UTF-8 paths; an `idx:` path containing a comma cannot round-trip.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DataSpec {
    Digits,
    Mnist(PathBuf),
    Idx {
        train_images: PathBuf,
        train_labels: PathBuf,
        test: Option<(PathBuf, PathBuf)>,
    },
    Csv(PathBuf),
}

impl FromStr for DataSpec {
    type Err = DataError;

    fn from_str(text: &str) -> Result<Self, DataError> {
        let unknown = |detail: &str| DataError::UnknownSpec {
            spec: text.to_string(),
            detail: detail.to_string(),
        };
        if text == "digits" {
            return Ok(DataSpec::Digits);
        }
        if let Some(dir) = text.strip_prefix("mnist:") {
            if dir.is_empty() {
                return Err(unknown(
                    " (mnist: needs a directory, e.g. mnist:data/mnist)",
                ));
            }
            return Ok(DataSpec::Mnist(PathBuf::from(dir)));
        }
        if let Some(list) = text.strip_prefix("idx:") {
            let paths: Vec<&str> = list.split(',').collect();
            if paths.iter().any(|path| path.is_empty()) || !(paths.len() == 2 || paths.len() == 4) {
                return Err(unknown(&format!(
                    " (idx: needs 2 or 4 non-empty comma-separated paths, found {})",
                    paths.iter().filter(|path| !path.is_empty()).count()
                )));
            }
            return Ok(DataSpec::Idx {
                train_images: PathBuf::from(paths[0]),
                train_labels: PathBuf::from(paths[1]),
                test: (paths.len() == 4)
                    .then(|| (PathBuf::from(paths[2]), PathBuf::from(paths[3]))),
            });
        }
        if let Some(path) = text.strip_prefix("csv:") {
            if path.is_empty() {
                return Err(unknown(" (csv: needs a file path)"));
            }
            return Ok(DataSpec::Csv(PathBuf::from(path)));
        }
        let lower = text.to_ascii_lowercase();
        if (lower.ends_with(".csv") && lower.len() > 4)
            || (lower.ends_with(".csv.gz") && lower.len() > 7)
        {
            return Ok(DataSpec::Csv(PathBuf::from(text)));
        }
        Err(unknown(""))
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Digits => f.write_str("digits"),
            DataSpec::Mnist(dir) => write!(f, "mnist:{}", dir.display()),
            DataSpec::Idx {
                train_images,
                train_labels,
                test,
            } => {
                write!(
                    f,
                    "idx:{},{}",
                    train_images.display(),
                    train_labels.display()
                )?;
                if let Some((images, labels)) = test {
                    write!(f, ",{},{}", images.display(), labels.display())?;
                }
                Ok(())
            }
            DataSpec::Csv(path) => write!(f, "csv:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> DataSpec {
        text.parse().unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(parse("digits"), DataSpec::Digits);
        assert_eq!(
            parse("mnist:/data/mnist"),
            DataSpec::Mnist("/data/mnist".into())
        );
        assert_eq!(
            parse("idx:a/ti,a/tl"),
            DataSpec::Idx {
                train_images: "a/ti".into(),
                train_labels: "a/tl".into(),
                test: None
            }
        );
        assert_eq!(
            parse("idx:ti.gz,tl.gz,vi,vl"),
            DataSpec::Idx {
                train_images: "ti.gz".into(),
                train_labels: "tl.gz".into(),
                test: Some(("vi".into(), "vl".into())),
            }
        );
        assert_eq!(
            parse("csv:data/iris.txt"),
            DataSpec::Csv("data/iris.txt".into())
        );
        assert_eq!(
            parse("data/iris.csv"),
            DataSpec::Csv("data/iris.csv".into())
        );
        assert_eq!(parse("IRIS.CSV.GZ"), DataSpec::Csv("IRIS.CSV.GZ".into()));
        assert_eq!(
            parse("csv:mnist:odd.csv"),
            DataSpec::Csv("mnist:odd.csv".into())
        );
    }

    #[test]
    fn display_round_trips() {
        let specs = [
            DataSpec::Digits,
            DataSpec::Mnist("/work/shared/data/mnist".into()),
            DataSpec::Idx {
                train_images: "x/ti".into(),
                train_labels: "x/tl".into(),
                test: None,
            },
            DataSpec::Idx {
                train_images: "ti".into(),
                train_labels: "tl".into(),
                test: Some(("vi.gz".into(), "vl.gz".into())),
            },
            DataSpec::Csv("train.csv".into()),
            DataSpec::Csv("weird name.txt".into()),
            DataSpec::Csv("digits".into()),
        ];
        for spec in specs {
            let text = spec.to_string();
            assert_eq!(text.parse::<DataSpec>().unwrap(), spec, "{text}");
        }
        assert_eq!(DataSpec::Csv("a.csv".into()).to_string(), "csv:a.csv");
        assert_eq!(parse("a.csv").to_string(), "csv:a.csv");
    }

    #[test]
    fn rejects_unknown_forms_listing_the_accepted_ones() {
        for text in [
            "",
            "Digits",
            "mnist",
            "mnist:",
            "idx:a",
            "idx:a,b,c",
            "idx:a,,c,d",
            "csv:",
            "data.txt",
            ".csv",
            "x.csv.bz2",
        ] {
            let err = text.parse::<DataSpec>().unwrap_err();
            assert!(
                matches!(err, DataError::UnknownSpec { .. }),
                "{text}: {err:?}"
            );
            let message = err.to_string();
            for form in [
                "digits",
                "mnist:DIR",
                "idx:TRAIN_IMAGES,TRAIN_LABELS",
                "csv:PATH",
                ".csv.gz",
            ] {
                assert!(message.contains(form), "{text}: {message}");
            }
            assert!(message.contains(&format!("{text:?}")), "{message}");
        }
        let err = "idx:a,b,c".parse::<DataSpec>().unwrap_err();
        assert!(err.to_string().contains("2 or 4"), "{err}");
    }
}
