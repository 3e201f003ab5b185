//! The one error type of the data module.
//!
//! Every message is a single line that names the file (or the option) at fault,
//! where in it the problem is (line, column or record), and what was expected.

use std::fmt;
use std::path::PathBuf;

/// Which kind of IDX file was being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxKind {
    /// An images file: magic 0x0000080N with N >= 2 (0x00000803 for MNIST).
    Images,
    /// A labels file: magic 0x00000801.
    Labels,
}

impl IdxKind {
    /// The magic numbers accepted for this kind, as written in error messages.
    pub fn expected_magic(self) -> &'static str {
        match self {
            IdxKind::Images => "0x00000803 (unsigned-byte images; 0x0000080N with N >= 2 dimensions is also accepted)",
            IdxKind::Labels => "0x00000801 (unsigned-byte labels)",
        }
    }
}

impl fmt::Display for IdxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdxKind::Images => "images",
            IdxKind::Labels => "labels",
        })
    }
}

/// A place in a data file: a 1-based line of a CSV file or a 0-based record of
/// an IDX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line number in a CSV file (blank lines are counted).
    Line(usize),
    /// 0-based record (image or label) index in an IDX file.
    Record(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::Record(record) => write!(f, "record {record} (0-based)"),
        }
    }
}

/// Everything that can go wrong while parsing a data spec, reading a data set
/// or splitting one.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The rows are channels last for a sample shape whose size is not the row's.
    #[error("{spec}: the rows are channels last for samples of {h}x{w}x{c} ({} values), but they hold {n_features} features", h * w * c)]
    ChannelsLastShape {
        spec: String,
        h: usize,
        w: usize,
        c: usize,
        n_features: usize,
    },

    /// The file does not exist.
    #[error("{}: file not found ({source})", path.display())]
    NotFound {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file exists but could not be read (permissions, a directory, a
    /// corrupt gzip stream, ...).
    #[error("{}: cannot read file: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// An MNIST-style directory lacks one of the four standard files.
    #[error("{}: no {name} in this directory (looked for {})", dir.display(), tried.join(", "))]
    MnistFileMissing {
        dir: PathBuf,
        name: String,
        tried: Vec<String>,
    },

    /// The first four bytes are not a magic number of the expected IDX kind.
    #[error("{}: not an IDX {kind} file: magic number is 0x{found:08X}, expected {}", path.display(), kind.expected_magic())]
    IdxBadMagic {
        path: PathBuf,
        kind: IdxKind,
        found: u32,
    },

    /// A valid IDX header whose element type is not unsigned byte.
    #[error("{}: unsupported IDX element type 0x{type_code:02X} ({}); only unsigned bytes (0x08) are supported", path.display(), idx_type_name(*type_code))]
    IdxUnsupportedType { path: PathBuf, type_code: u8 },

    /// The IDX header has a zero dimension or a size that overflows.
    #[error("{}: IDX header has unusable dimensions {dims:?}: {reason}", path.display())]
    IdxBadDimensions {
        path: PathBuf,
        dims: Vec<u32>,
        reason: &'static str,
    },

    /// The file ends before the header or the data the header announces.
    #[error("{}: truncated IDX file: expected {expected} bytes of {part} per header, found {found}", path.display())]
    IdxTruncated {
        path: PathBuf,
        part: &'static str,
        expected: u64,
        found: u64,
    },

    /// The file is longer than the header announces.
    #[error("{}: IDX file has trailing data: expected {expected} bytes of data per header, found {found}", path.display())]
    IdxTrailingData {
        path: PathBuf,
        expected: u64,
        found: u64,
    },

    /// An images file and a labels file hold different numbers of records.
    #[error("{} has {n_images} images but {} has {n_labels} labels; the counts must match", images.display(), labels.display())]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },

    /// A CSV file (or a line of it) is not valid UTF-8.
    #[error("{}: line {line} is not valid UTF-8 text", path.display())]
    CsvNotUtf8 { path: PathBuf, line: usize },

    /// A CSV feature (or regression target) that does not parse as a number.
    #[error("{}: line {line}, column {column}: expected a number, found {text:?}", path.display())]
    CsvNotNumeric {
        path: PathBuf,
        line: usize,
        column: usize,
        text: String,
    },

    /// A CSV row with a different number of fields than the first row.
    #[error("{}: line {line}: found {found} fields, expected {expected} (as in the first row)", path.display())]
    CsvRagged {
        path: PathBuf,
        line: usize,
        found: usize,
        expected: usize,
    },

    /// A selected label, target or anomaly column does not exist.
    #[error("{}: line {line}: {role} column {index} (0-based) does not exist; the row has {n_fields} fields", path.display())]
    CsvLabelColumn {
        path: PathBuf,
        line: usize,
        /// `label`, `target` or `anomaly`.
        role: &'static str,
        index: usize,
        n_fields: usize,
    },

    /// A CSV whose every column is a label, target or anomaly column.
    #[error("{}: line {line}: {n_fields} field(s), all of them labels or targets; expected at least one feature column", path.display())]
    CsvNoFeatures {
        path: PathBuf,
        line: usize,
        n_fields: usize,
    },

    /// Target, label and anomaly columns that do not go together.
    #[error("target columns: {detail}")]
    TargetColumns { detail: String },

    /// An anomaly-column value other than 0 or 1.
    #[error("{}: line {line}, column {column}: anomaly label {text:?} is not 0 or 1", path.display())]
    BadAnomalyLabel {
        path: PathBuf,
        line: usize,
        column: usize,
        text: String,
    },

    /// A class label that is not a non-negative integer.
    #[error("{}: line {line}, column {column}: label {text:?} is {reason}; class labels must be non-negative integers such as 3 or 3.0 (real-valued targets: --loss mse, --targets or --autoencoder)", path.display())]
    BadLabel {
        path: PathBuf,
        line: usize,
        column: usize,
        text: String,
        reason: &'static str,
    },

    /// A class label at or above the number of classes.
    #[error("{}: {location}: label {label} is out of range; expected 0..={} for {n_classes} classes", path.display(), n_classes.saturating_sub(1))]
    LabelOutOfRange {
        path: PathBuf,
        location: Location,
        label: u64,
        n_classes: usize,
    },

    /// A class count beyond what an MLP classifier can mean, inferred from a label
    /// or requested; refused before anything is sized by it.
    #[error("{context}: {n_classes} classes, expected at most {max} (is the label column right?)")]
    TooManyClasses {
        context: String,
        n_classes: usize,
        max: usize,
    },

    /// NaN or an infinity in a CSV file.
    #[error("{}: line {line}, column {column}: value {text:?} is not finite; NaN and infinities are not allowed", path.display())]
    NonFinite {
        path: PathBuf,
        line: usize,
        column: usize,
        text: String,
    },

    /// A file without a single data record.
    #[error("{}: the data set is empty (no data records)", path.display())]
    Empty { path: PathBuf },

    /// A test CSV whose rows have a different number of fields than the train CSV.
    #[error("test file {} has {test_columns} columns but train file {} has {train_columns}; both must have the same layout", test.display(), train.display())]
    TestColumnMismatch {
        train: PathBuf,
        train_columns: usize,
        test: PathBuf,
        test_columns: usize,
    },

    /// Test IDX images of a different size than the train images.
    #[error("test file {} has {test_features} values per image but train file {} has {train_features}; both must have the same image size", test.display(), train.display())]
    TestFeatureMismatch {
        train: PathBuf,
        train_features: usize,
        test: PathBuf,
        test_features: usize,
    },

    /// A `--data` value that matches none of the accepted forms.
    #[error("unknown data spec {spec:?}{detail}; accepted forms: \"digits\", \"mnist:DIR\", \"idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS]\", \"csv:PATH\" or a PATH ending in .csv or .csv.gz")]
    UnknownSpec { spec: String, detail: String },

    /// A CSV-only option given with data that is not a CSV file.
    #[error("option {option} applies only to CSV data, not to {spec}")]
    CsvOptionWithoutCsv { option: &'static str, spec: String },

    /// A split fraction outside the open interval (0, 1).
    #[error("split fraction {fraction} is invalid; expected a number strictly between 0 and 1")]
    InvalidSplitFraction { fraction: f64 },

    /// A split that would leave one part without samples.
    #[error("splitting {n_samples} samples with fraction {fraction} leaves the {part} part empty; classes with a single sample always stay in the first part, so more samples are needed")]
    EmptySplit {
        n_samples: usize,
        fraction: f64,
        part: &'static str,
    },

    /// Fewer than two classes: requested, or all the labels found are 0.
    #[error("{context}: classification needs at least 2 classes, got {n_classes}")]
    TooFewClasses { context: String, n_classes: usize },
}

fn idx_type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "16-bit integer",
        0x0C => "32-bit integer",
        0x0D => "32-bit float",
        0x0E => "64-bit float",
        _ => "unknown type",
    }
}

impl DataError {
    /// Wraps an I/O error on `path`, keeping "not found" apart.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> DataError {
        let path = path.to_path_buf();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::NotFound { path, source }
        } else {
            DataError::Io { path, source }
        }
    }
}
