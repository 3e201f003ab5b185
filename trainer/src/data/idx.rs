//! IDX files (the MNIST format), raw or gzip-compressed.
//!
//! An IDX file is a 4-byte big-endian magic number `00 00 TT NN` (TT the element
//! type, NN the number of dimensions), NN big-endian u32 dimensions, then the
//! elements. Only unsigned bytes (TT = 0x08) are supported. Images files have
//! NN >= 2 (a count, then the dimensions of one image: MNIST is 0x00000803 =
//! count, rows, cols) and are flattened per image; labels files have NN = 1.
//! The file must hold exactly the number of bytes the header announces.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{DataError, IdxKind, Location};
use super::file;
use super::{Dataset, TargetKind, Targets};

/// The four standard file names of an MNIST-style directory (Fashion-MNIST
/// uses the same ones).
pub const MNIST_TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// See [`MNIST_TRAIN_IMAGES`].
pub const MNIST_TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// See [`MNIST_TRAIN_IMAGES`].
pub const MNIST_TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// See [`MNIST_TRAIN_IMAGES`].
pub const MNIST_TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The images of an IDX images file, as f32 copies of the raw byte values.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    /// Row-major, `n_images x n_features`, values 0..=255.
    pub pixels: Vec<f32>,
    pub n_images: usize,
    /// The product of the dimensions after the count (28 x 28 = 784 for MNIST).
    pub n_features: usize,
    /// The dimensions after the count, as in the header.
    pub image_dims: Vec<u32>,
}

/// The most elements reserved from a header's announced size before the data is read (4 MiB
/// of f32 pixels): a 16-byte header announcing 2^27 pixels once reserved 512 MiB (found by
/// `fuzz/`, target `idx`). Larger files grow the vector as the data arrives.
const SPECULATIVE_CAPACITY: usize = 1 << 20;

struct Header {
    dims: Vec<u32>,
    count: usize,
    item_len: usize,
    data_len: u64,
}

fn read_header(path: &Path, reader: &mut dyn Read, kind: IdxKind) -> Result<Header, DataError> {
    let mut magic = [0u8; 4];
    let found = file::read_up_to(path, reader, &mut magic)?;
    if found < 4 {
        return Err(DataError::IdxTruncated {
            path: path.to_path_buf(),
            part: "header",
            expected: 4,
            found: found as u64,
        });
    }
    let bad_magic = || DataError::IdxBadMagic {
        path: path.to_path_buf(),
        kind,
        found: u32::from_be_bytes(magic),
    };
    let [zero_a, zero_b, type_code, n_dims] = magic;
    if zero_a != 0 || zero_b != 0 {
        return Err(bad_magic());
    }
    match type_code {
        0x08 => {}
        0x09 | 0x0B | 0x0C | 0x0D | 0x0E => {
            return Err(DataError::IdxUnsupportedType {
                path: path.to_path_buf(),
                type_code,
            });
        }
        _ => return Err(bad_magic()),
    }
    let dims_ok = match kind {
        IdxKind::Images => n_dims >= 2,
        IdxKind::Labels => n_dims == 1,
    };
    if !dims_ok {
        return Err(bad_magic());
    }

    let mut dim_bytes = vec![0u8; 4 * usize::from(n_dims)];
    let found = file::read_up_to(path, reader, &mut dim_bytes)?;
    if found < dim_bytes.len() {
        return Err(DataError::IdxTruncated {
            path: path.to_path_buf(),
            part: "header",
            expected: 4 + dim_bytes.len() as u64,
            found: 4 + found as u64,
        });
    }
    let dims: Vec<u32> = dim_bytes
        .chunks_exact(4)
        .map(|chunk| u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect();
    let bad_dims = |reason| DataError::IdxBadDimensions {
        path: path.to_path_buf(),
        dims: dims.clone(),
        reason,
    };
    if dims[1..].contains(&0) {
        return Err(bad_dims("an image dimension is 0"));
    }
    let item_len = dims[1..]
        .iter()
        .try_fold(1u64, |acc, &dim| acc.checked_mul(u64::from(dim)))
        .ok_or_else(|| bad_dims("the image size overflows"))?;
    let data_len = item_len
        .checked_mul(u64::from(dims[0]))
        .ok_or_else(|| bad_dims("the data size overflows"))?;
    if usize::try_from(data_len).is_err() {
        return Err(bad_dims(
            "the data size does not fit in memory on this platform",
        ));
    }
    Ok(Header {
        count: dims[0] as usize,
        item_len: item_len as usize,
        data_len,
        dims,
    })
}

/// Streams exactly `header.data_len` bytes to `sink`, then checks that nothing follows.
fn read_body(
    path: &Path,
    reader: &mut dyn Read,
    header: &Header,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), DataError> {
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    while done < header.data_len {
        let want = (header.data_len - done).min(buf.len() as u64) as usize;
        let got = file::read_up_to(path, reader, &mut buf[..want])?;
        sink(&buf[..got]);
        done += got as u64;
        if got < want {
            return Err(DataError::IdxTruncated {
                path: path.to_path_buf(),
                part: "data",
                expected: header.data_len,
                found: done,
            });
        }
    }
    let mut extra = 0u64;
    loop {
        let got = file::read_up_to(path, reader, &mut buf)?;
        if got == 0 {
            break;
        }
        extra += got as u64;
    }
    if extra > 0 {
        return Err(DataError::IdxTrailingData {
            path: path.to_path_buf(),
            expected: header.data_len,
            found: header.data_len + extra,
        });
    }
    Ok(())
}

/// Reads an IDX images file; every image becomes one row of f32 values 0..=255.
pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    let mut reader = file::open(path)?;
    let header = read_header(path, &mut *reader, IdxKind::Images)?;
    // Reserve what the header announces, but cap the speculative part so that a
    // corrupt header cannot request an absurd allocation before the data is seen.
    let mut pixels: Vec<f32> =
        Vec::with_capacity((header.data_len as usize).min(SPECULATIVE_CAPACITY));
    read_body(path, &mut *reader, &header, |chunk| {
        pixels.extend(chunk.iter().map(|&b| f32::from(b)))
    })?;
    if header.count == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(IdxImages {
        pixels,
        n_images: header.count,
        n_features: header.item_len,
        image_dims: header.dims[1..].to_vec(),
    })
}

/// Reads an IDX labels file.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut reader = file::open(path)?;
    let header = read_header(path, &mut *reader, IdxKind::Labels)?;
    let mut labels = Vec::with_capacity((header.data_len as usize).min(SPECULATIVE_CAPACITY));
    read_body(path, &mut *reader, &header, |chunk| {
        labels.extend_from_slice(chunk)
    })?;
    if header.count == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(labels)
}

/// One images file with its labels, before the targets are resolved.
struct RawPair {
    images_path: PathBuf,
    labels_path: PathBuf,
    images: IdxImages,
    labels: Vec<u8>,
}

fn read_pair(images_path: &Path, labels_path: &Path) -> Result<RawPair, DataError> {
    let images = read_images(images_path)?;
    let labels = read_labels(labels_path)?;
    if images.n_images != labels.len() {
        return Err(DataError::CountMismatch {
            images: images_path.to_path_buf(),
            n_images: images.n_images,
            labels: labels_path.to_path_buf(),
            n_labels: labels.len(),
        });
    }
    Ok(RawPair {
        images_path: images_path.to_path_buf(),
        labels_path: labels_path.to_path_buf(),
        images,
        labels,
    })
}

fn into_dataset(pair: RawPair, target: TargetKind, n_classes: usize) -> Result<Dataset, DataError> {
    let targets = match target {
        TargetKind::Regression => {
            Targets::single(pair.labels.iter().map(|&l| f32::from(l)).collect())
        }
        TargetKind::Classes { .. } => {
            if let Some(record) = pair
                .labels
                .iter()
                .position(|&l| usize::from(l) >= n_classes)
            {
                return Err(DataError::LabelOutOfRange {
                    path: pair.labels_path,
                    location: Location::Record(record),
                    label: u64::from(pair.labels[record]),
                    n_classes,
                });
            }
            Targets::Classes {
                labels: pair.labels.iter().map(|&l| u32::from(l)).collect(),
                n_classes,
            }
        }
    };
    Ok(Dataset {
        features: pair.images.pixels,
        n_features: pair.images.n_features,
        targets,
    })
}

/// Loads a train pair and an optional test pair.
///
/// With `TargetKind::Classes { n_classes: None }` the number of classes is 10
/// when every label (train and test) is below 10, as for MNIST and
/// Fashion-MNIST, even if some digit happens to be absent; otherwise it is the
/// largest label + 1.
pub(crate) fn load_pairs(
    train: (&Path, &Path),
    test: Option<(&Path, &Path)>,
    target: TargetKind,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let train = read_pair(train.0, train.1)?;
    let test = test
        .map(|(images, labels)| read_pair(images, labels))
        .transpose()?;
    if let Some(test) = &test {
        if test.images.n_features != train.images.n_features {
            return Err(DataError::TestFeatureMismatch {
                train: train.images_path.clone(),
                train_features: train.images.n_features,
                test: test.images_path.clone(),
                test_features: test.images.n_features,
            });
        }
    }
    let n_classes = match target {
        TargetKind::Classes { n_classes: Some(k) } => k,
        _ => {
            let max = train
                .labels
                .iter()
                .chain(test.iter().flat_map(|t| t.labels.iter()))
                .copied()
                .max();
            let max = usize::from(max.unwrap_or(0));
            if max < 10 {
                10
            } else {
                max + 1
            }
        }
    };
    let train = into_dataset(train, target, n_classes)?;
    let test = test
        .map(|t| into_dataset(t, target, n_classes))
        .transpose()?;
    Ok((train, test))
}

/// Finds one of the four standard MNIST files in `dir`: the plain name, with
/// ".gz", or the dotted variant ("train-images.idx3-ubyte") with or without ".gz".
pub(crate) fn find_mnist_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let dotted = match name.rfind("-idx") {
        Some(at) => format!("{}.{}", &name[..at], &name[at + 1..]),
        None => name.to_string(),
    };
    let tried = vec![
        name.to_string(),
        format!("{name}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ];
    for candidate in &tried {
        let path = dir.join(candidate);
        if path.is_file() {
            return Ok(path);
        }
    }
    // Report a missing or unreadable directory as such, with the OS error.
    std::fs::read_dir(dir).map_err(|err| DataError::io(dir, err))?;
    Err(DataError::MnistFileMissing {
        dir: dir.to_path_buf(),
        name: name.to_string(),
        tried,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{load, DataOptions, DataSpec};
    use super::*;
    use std::io::Write;

    /// Writes an IDX file with the given magic, dimensions and payload.
    pub(crate) fn write_idx(path: &Path, magic: u32, dims: &[u32], data: &[u8], gzip: bool) {
        let mut bytes = magic.to_be_bytes().to_vec();
        for dim in dims {
            bytes.extend_from_slice(&dim.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        write_bytes(path, &bytes, gzip);
    }

    pub(crate) fn write_bytes(path: &Path, bytes: &[u8], gzip: bool) {
        let out = std::fs::File::create(path).unwrap();
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            enc.write_all(bytes).unwrap();
            enc.finish().unwrap();
        } else {
            let mut out = out;
            out.write_all(bytes).unwrap();
        }
    }

    /// `n` images of 2x3 pixels whose values encode (image, pixel), and labels.
    fn synthetic(n: usize) -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..n * 6).map(|i| (i * 7 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        (pixels, labels)
    }

    fn write_pair(
        dir: &Path,
        prefix: &str,
        n: usize,
        gzip: bool,
    ) -> (PathBuf, PathBuf, Vec<u8>, Vec<u8>) {
        let (pixels, labels) = synthetic(n);
        let images = dir.join(format!("{prefix}-images"));
        let labels_path = dir.join(format!("{prefix}-labels"));
        write_idx(&images, 0x0803, &[n as u32, 2, 3], &pixels, gzip);
        write_idx(&labels_path, 0x0801, &[n as u32], &labels, gzip);
        (images, labels_path, pixels, labels)
    }

    fn msg(err: &DataError) -> String {
        let text = err.to_string();
        assert!(!text.contains('\n'), "multi-line message: {text}");
        text
    }

    #[test]
    fn images_and_labels_roundtrip_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        for gzip in [false, true] {
            let (images, labels, pixels, label_bytes) =
                write_pair(dir.path(), &format!("gz{gzip}"), 5, gzip);
            let read = read_images(&images).unwrap();
            assert_eq!(read.n_images, 5);
            assert_eq!(read.n_features, 6);
            assert_eq!(read.image_dims, vec![2, 3]);
            let expected: Vec<f32> = pixels.iter().map(|&b| f32::from(b)).collect();
            assert_eq!(read.pixels, expected);
            assert_eq!(read_labels(&labels).unwrap(), label_bytes);
        }
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let raw_named_gz = dir.path().join("x-images.gz");
        let gz_named_raw = dir.path().join("y-images");
        write_idx(&raw_named_gz, 0x0803, &[1, 1, 2], &[4, 250], false);
        write_idx(&gz_named_raw, 0x0803, &[1, 1, 2], &[4, 250], true);
        assert_eq!(read_images(&raw_named_gz).unwrap().pixels, vec![4.0, 250.0]);
        assert_eq!(read_images(&gz_named_raw).unwrap().pixels, vec![4.0, 250.0]);
    }

    #[test]
    fn images_with_one_or_three_dims_after_count() {
        let dir = tempfile::tempdir().unwrap();
        let flat = dir.path().join("flat");
        write_idx(&flat, 0x0802, &[2, 3], &[1, 2, 3, 4, 5, 6], false);
        let read = read_images(&flat).unwrap();
        assert_eq!((read.n_images, read.n_features), (2, 3));
        assert_eq!(read.pixels[3..], [4.0, 5.0, 6.0]);
        let cube = dir.path().join("cube");
        write_idx(
            &cube,
            0x0804,
            &[1, 2, 2, 2],
            &[0, 1, 2, 3, 4, 5, 6, 7],
            false,
        );
        let read = read_images(&cube).unwrap();
        assert_eq!((read.n_images, read.n_features), (1, 8));
        assert_eq!(read.image_dims, vec![2, 2, 2]);
    }

    #[test]
    fn idx_spec_with_test_pair_and_with_split() {
        let dir = tempfile::tempdir().unwrap();
        let (tri, trl, pixels, labels) = write_pair(dir.path(), "train", 12, true);
        let (tei, tel, _, _) = write_pair(dir.path(), "test", 4, false);
        let spec = DataSpec::Idx {
            train_images: tri.clone(),
            train_labels: trl.clone(),
            test: Some((tei, tel)),
        };
        let split = load(&spec, &DataOptions::default()).unwrap();
        assert_eq!(split.train.n_samples(), 12);
        assert_eq!(split.test.n_samples(), 4);
        assert_eq!(split.train.n_features, 6);
        assert_eq!(
            split.train.row(1),
            pixels[6..12]
                .iter()
                .map(|&b| f32::from(b))
                .collect::<Vec<_>>()
        );
        // Labels are 0..3, all below 10: the IDX default is 10 classes.
        assert_eq!(
            split.train.targets,
            Targets::Classes {
                labels: labels.iter().map(|&l| u32::from(l)).collect(),
                n_classes: 10
            }
        );
        assert!(
            split
                .description
                .contains("12 train, 4 test, 6 features, 10 classes"),
            "{}",
            split.description
        );

        let spec = DataSpec::Idx {
            train_images: tri,
            train_labels: trl,
            test: None,
        };
        let split = load(&spec, &DataOptions::default()).unwrap();
        assert_eq!(split.train.n_samples() + split.test.n_samples(), 12);
        assert_eq!(split.test.n_samples(), 3);
    }

    #[test]
    fn idx_class_count_rules() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("i");
        let labels = dir.path().join("l");
        write_idx(&images, 0x0803, &[4, 1, 1], &[1, 2, 3, 4], false);
        write_idx(&labels, 0x0801, &[4], &[0, 12, 3, 12], false);
        let (train, _) = load_pairs(
            (&images, &labels),
            None,
            TargetKind::Classes { n_classes: None },
        )
        .unwrap();
        assert_eq!(train.n_outputs(), 13, "labels >= 10: max + 1");
        let (train, _) = load_pairs((&images, &labels), None, TargetKind::Regression).unwrap();
        assert_eq!(train.targets, Targets::single(vec![0.0, 12.0, 3.0, 12.0]));
        assert_eq!(train.n_outputs(), 1);
        let err = load_pairs(
            (&images, &labels),
            None,
            TargetKind::Classes {
                n_classes: Some(10),
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    label: 12,
                    n_classes: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = msg(&err);
        assert!(
            text.contains(&labels.display().to_string()) && text.contains("record 1"),
            "{text}"
        );
        assert!(text.contains("0..=9"), "{text}");
    }

    #[test]
    fn mnist_directory_with_name_variants() {
        let dir = tempfile::tempdir().unwrap();
        let (pixels, labels) = synthetic(8);
        // Plain, gzip, dotted and dotted gzip names in one directory.
        write_idx(
            &dir.path().join("train-images-idx3-ubyte"),
            0x0803,
            &[8, 2, 3],
            &pixels,
            false,
        );
        write_idx(
            &dir.path().join("train-labels-idx1-ubyte.gz"),
            0x0801,
            &[8],
            &labels,
            true,
        );
        write_idx(
            &dir.path().join("t10k-images.idx3-ubyte"),
            0x0803,
            &[2, 2, 3],
            &pixels[..12],
            false,
        );
        write_idx(
            &dir.path().join("t10k-labels.idx1-ubyte.gz"),
            0x0801,
            &[2],
            &labels[..2],
            true,
        );
        let spec = DataSpec::Mnist(dir.path().to_path_buf());
        let split = load(&spec, &DataOptions::default()).unwrap();
        assert_eq!((split.train.n_samples(), split.test.n_samples()), (8, 2));
        assert_eq!(
            split.test.row(1),
            pixels[6..12]
                .iter()
                .map(|&b| f32::from(b))
                .collect::<Vec<_>>()
        );
        assert!(
            split
                .description
                .starts_with(&format!("mnist:{}", dir.path().display())),
            "{}",
            split.description
        );

        std::fs::remove_file(dir.path().join("t10k-labels.idx1-ubyte.gz")).unwrap();
        let err = load(&spec, &DataOptions::default()).err().unwrap();
        assert!(matches!(err, DataError::MnistFileMissing { .. }), "{err:?}");
        let text = msg(&err);
        assert!(
            text.contains("t10k-labels-idx1-ubyte") && text.contains("t10k-labels.idx1-ubyte.gz"),
            "{text}"
        );
        assert!(text.contains(&dir.path().display().to_string()), "{text}");

        let missing_dir = dir.path().join("nope");
        let err = load(
            &DataSpec::Mnist(missing_dir.clone()),
            &DataOptions::default(),
        )
        .err()
        .unwrap();
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
        assert!(msg(&err).contains(&missing_dir.display().to_string()));
    }

    #[test]
    fn missing_and_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-images");
        let err = read_images(&missing).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
        let text = msg(&err);
        assert!(
            text.contains("no-such-images") && text.contains("No such file"),
            "{text}"
        );
        // A directory opens but cannot be read as a file.
        let err = read_images(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err:?}");
        assert!(msg(&err).contains(&dir.path().display().to_string()));
        // A corrupt gzip stream is an unreadable file too.
        let corrupt = dir.path().join("corrupt-labels");
        write_bytes(
            &corrupt,
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3],
            false,
        );
        let err = read_labels(&corrupt).unwrap_err();
        assert!(
            matches!(err, DataError::Io { .. } | DataError::IdxTruncated { .. }),
            "{err:?}"
        );
        assert!(msg(&err).contains("corrupt-labels"));
    }

    #[test]
    fn wrong_magic_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels-file");
        write_idx(&labels, 0x0801, &[2], &[1, 2], false);
        // A labels file given as images.
        let err = read_images(&labels).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::IdxBadMagic {
                    kind: IdxKind::Images,
                    found: 0x0801,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = msg(&err);
        assert!(
            text.contains("labels-file")
                && text.contains("0x00000801")
                && text.contains("expected 0x00000803"),
            "{text}"
        );
        // An images file given as labels.
        let images = dir.path().join("images-file");
        write_idx(&images, 0x0803, &[1, 1, 1], &[9], true);
        let err = read_labels(&images).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::IdxBadMagic {
                    kind: IdxKind::Labels,
                    found: 0x0803,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = msg(&err);
        assert!(
            text.contains("images-file") && text.contains("0x00000803"),
            "{text}"
        );
        assert!(text.contains("expected 0x00000801"), "{text}");
        // Not IDX at all.
        let text_file = dir.path().join("text.csv");
        write_bytes(&text_file, b"1,2,3\n", false);
        let err = read_images(&text_file).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::IdxBadMagic {
                    found: 0x312C_322C,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unsupported_element_type() {
        let dir = tempfile::tempdir().unwrap();
        let floats = dir.path().join("float-images");
        write_idx(&floats, 0x0D03, &[1, 1, 1], &[0, 0, 0, 0], false);
        let err = read_images(&floats).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::IdxUnsupportedType {
                    type_code: 0x0D,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = msg(&err);
        assert!(
            text.contains("float-images") && text.contains("0x0D") && text.contains("0x08"),
            "{text}"
        );
    }

    #[test]
    fn truncated_and_overlong_files() {
        let dir = tempfile::tempdir().unwrap();
        for gzip in [false, true] {
            let short = dir.path().join(format!("short-images-{gzip}"));
            write_idx(&short, 0x0803, &[3, 2, 2], &[0; 10], gzip);
            let err = read_images(&short).unwrap_err();
            assert!(
                matches!(
                    err,
                    DataError::IdxTruncated {
                        part: "data",
                        expected: 12,
                        found: 10,
                        ..
                    }
                ),
                "{err:?}"
            );
            let text = msg(&err);
            assert!(text.contains(&format!("short-images-{gzip}")), "{text}");
            assert!(
                text.contains("expected 12 bytes of data") && text.contains("found 10"),
                "{text}"
            );

            let long = dir.path().join(format!("long-labels-{gzip}"));
            write_idx(&long, 0x0801, &[2], &[1, 2, 3], gzip);
            let err = read_labels(&long).unwrap_err();
            assert!(
                matches!(
                    err,
                    DataError::IdxTrailingData {
                        expected: 2,
                        found: 3,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(msg(&err).contains(&format!("long-labels-{gzip}")));
        }
        let stub = dir.path().join("stub-images");
        write_bytes(&stub, &[0, 0, 8, 3, 0, 0, 0, 1, 0], false);
        let err = read_images(&stub).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::IdxTruncated {
                    part: "header",
                    expected: 16,
                    found: 9,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(msg(&err).contains("stub-images"));
        let tiny = dir.path().join("tiny");
        write_bytes(&tiny, &[0, 0], false);
        let err = read_labels(&tiny).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::IdxTruncated {
                    part: "header",
                    expected: 4,
                    found: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn zero_dimension_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero-width");
        write_idx(&zero, 0x0803, &[2, 28, 0], &[], false);
        let err = read_images(&zero).unwrap_err();
        assert!(matches!(err, DataError::IdxBadDimensions { .. }), "{err:?}");
        assert!(msg(&err).contains("zero-width"));
        let empty = dir.path().join("empty-images");
        write_idx(&empty, 0x0803, &[0, 28, 28], &[], true);
        let err = read_images(&empty).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
        assert!(msg(&err).contains("empty-images"));
        let empty_labels = dir.path().join("empty-labels");
        write_idx(&empty_labels, 0x0801, &[0], &[], false);
        assert!(matches!(
            read_labels(&empty_labels),
            Err(DataError::Empty { .. })
        ));
    }

    #[test]
    fn image_and_label_counts_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("five-images");
        let labels = dir.path().join("four-labels");
        write_idx(&images, 0x0803, &[5, 1, 1], &[0; 5], false);
        write_idx(&labels, 0x0801, &[4], &[0; 4], false);
        let spec = DataSpec::Idx {
            train_images: images,
            train_labels: labels,
            test: None,
        };
        let err = load(&spec, &DataOptions::default()).err().unwrap();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    n_images: 5,
                    n_labels: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = msg(&err);
        assert!(
            text.contains("five-images") && text.contains("four-labels"),
            "{text}"
        );
        assert!(
            text.contains("5 images") && text.contains("4 labels"),
            "{text}"
        );
    }

    #[test]
    fn test_images_must_match_train_size() {
        let dir = tempfile::tempdir().unwrap();
        let (tri, trl, _, _) = write_pair(dir.path(), "train", 4, false);
        let tei = dir.path().join("test-images");
        let tel = dir.path().join("test-labels");
        write_idx(&tei, 0x0803, &[1, 2, 2], &[0; 4], false);
        write_idx(&tel, 0x0801, &[1], &[0], false);
        let spec = DataSpec::Idx {
            train_images: tri,
            train_labels: trl,
            test: Some((tei, tel)),
        };
        let err = load(&spec, &DataOptions::default()).err().unwrap();
        assert!(matches!(
            err,
            DataError::TestFeatureMismatch {
                train_features: 6,
                test_features: 4,
                ..
            }
        ));
        assert!(msg(&err).contains("test-images"));
    }

    /// The real MNIST files, when present (they are in CI): checks the counts.
    #[test]
    fn real_mnist_counts_when_present() {
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/mnist"
        ));
        if !dir.is_dir() {
            println!(
                "NOTE: {} is absent; real MNIST counts NOT checked",
                dir.display()
            );
            return;
        }
        let split = load(&DataSpec::Mnist(dir.clone()), &DataOptions::default()).unwrap();
        assert_eq!(split.train.n_samples(), 60_000);
        assert_eq!(split.test.n_samples(), 10_000);
        assert_eq!(split.train.n_features, 784);
        assert_eq!(split.train.n_outputs(), 10);
        let max = split.train.features.iter().copied().fold(0.0f32, f32::max);
        assert_eq!(max, 255.0);
        println!(
            "checked real MNIST in {}: {}",
            dir.display(),
            split.description
        );
    }
}
