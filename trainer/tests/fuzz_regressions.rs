//! Inputs found by the fuzz targets in `fuzz/` (see fuzz/README.md), kept as regressions.

use kiln_trainer::data::{read_images, read_labels, DataError};

/// `fuzz` target `idx`: a 16-byte images header announcing 2^27 one-pixel images and no data.
/// `read_images` reserved `min(data_len, 2^27)` f32 = 512 MiB before reading any pixel
/// (libFuzzer: out-of-memory (malloc(536870912)) at trainer/src/data/idx.rs `read_images`).
/// Now the speculative reservation is capped at 2^20 elements; the file is still rejected as
/// truncated.
#[test]
fn idx_header_announcing_2_pow_27_pixels_is_truncated_without_a_huge_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let mut bytes = vec![0x00, 0x00, 0x08, 0x03];
    for dim in [1u32 << 27, 1, 1] {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = read_images(&path).unwrap_err();
    assert!(
        matches!(err, DataError::IdxTruncated { expected, found: 0, .. } if expected == 1 << 27),
        "{err:?}"
    );

    // The labels reader had the same reservation (2^27 bytes = 128 MiB).
    let path = dir.path().join("labels");
    let mut bytes = vec![0x00, 0x00, 0x08, 0x01];
    bytes.extend_from_slice(&(1u32 << 27).to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = read_labels(&path).unwrap_err();
    assert!(
        matches!(err, DataError::IdxTruncated { expected, found: 0, .. } if expected == 1 << 27),
        "{err:?}"
    );
}

/// `fuzz` target `csv`: the 13-byte file `4,983839839  ` (one row, label 983839839). `load`
/// inferred `n_classes = 983839840` and `split::split_indices` allocated one `Vec` per class:
/// 23.6 GB (libFuzzer: out-of-memory (malloc(23612156160))). Class counts are now capped at
/// `MAX_CLASSES` before anything is sized by them.
#[test]
fn csv_single_row_with_a_huge_class_label_is_rejected_before_any_allocation() {
    use kiln_trainer::data::{load, DataError, DataOptions, DataSpec, MAX_CLASSES};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge-label.csv");
    std::fs::write(&path, b"4,983839839  ").unwrap();
    let err = load(&DataSpec::Csv(path), &DataOptions::default()).unwrap_err();
    assert!(
        matches!(err, DataError::TooManyClasses { n_classes: 983_839_840, max, .. } if max == MAX_CLASSES),
        "{err:?}"
    );
    assert!(err.to_string().contains("huge-label.csv"), "{err}");
}
