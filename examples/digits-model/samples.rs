//! Ten held-out images of the bundled digits data (trainer/data/digits.csv.gz), the first
//! of each class among the rows the model never saw (row_idx % 4 == 3), with the int8
//! logits kiln-runtime computes for them on the host from model.kiln beside this file.
//! Written by `cargo xtask firmware` (xtask/src/firmware.rs); do not edit.

/// Pixels per image: 8x8, row by row, values 0 to 16.
pub const N_PIXELS: usize = 64;
/// Classes: the digits 0 to 9.
pub const N_CLASSES: usize = 10;
/// The CRC-32 the model.kiln the host logits were computed with stores in its last four
/// bytes (over all the bytes before them): it identifies the model.
pub const MODEL_CRC32: u32 = 0xcdc5cc61;

/// One held-out image and what the host computed for it.
pub struct Sample {
    /// Its row in digits.csv.gz, counted from 0.
    pub row_idx: u32,
    pub label: u8,
    pub pixels: [u8; N_PIXELS],
    /// The int8 logits of kiln-runtime on the host.
    pub host_logits: [i8; N_CLASSES],
    /// Their argmax (the first maximum wins a tie).
    pub host_prediction: u8,
}

/// The pixels keep the image's 8x8 shape.
#[rustfmt::skip]
pub static SAMPLES: [Sample; N_CLASSES] = [
    Sample {
        row_idx: 55,
        label: 0,
        pixels: [
             0,  0,  2, 14, 15,  5,  0,  0,
             0,  0, 10, 16, 16, 15,  1,  0,
             0,  3, 16, 10, 10, 16,  4,  0,
             0,  5, 16,  0,  0, 14,  6,  0,
             0,  5, 16,  6,  0, 12,  7,  0,
             0,  1, 15, 13,  4, 13,  6,  0,
             0,  0, 11, 16, 16, 15,  0,  0,
             0,  0,  2, 11, 13,  4,  0,  0,
        ],
        host_logits: [80, -31, -27, -86, 18, -41, -2, -33, -5, -27],
        host_prediction: 0,
    },
    Sample {
        row_idx: 11,
        label: 1,
        pixels: [
             0,  0,  0,  0, 14, 13,  1,  0,
             0,  0,  0,  5, 16, 16,  2,  0,
             0,  0,  0, 14, 16, 12,  0,  0,
             0,  1, 10, 16, 16, 12,  0,  0,
             0,  3, 12, 14, 16,  9,  0,  0,
             0,  0,  0,  5, 16, 15,  0,  0,
             0,  0,  0,  4, 16, 14,  0,  0,
             0,  0,  0,  1, 13, 16,  1,  0,
        ],
        host_logits: [-77, 89, -56, 17, 0, -57, -49, -32, 34, -1],
        host_prediction: 1,
    },
    Sample {
        row_idx: 51,
        label: 2,
        pixels: [
             0,  0,  0,  3, 15, 10,  1,  0,
             0,  0,  0, 11, 10, 16,  4,  0,
             0,  0,  0, 12,  1, 15,  6,  0,
             0,  0,  0,  3,  4, 15,  4,  0,
             0,  0,  0,  6, 15,  6,  0,  0,
             0,  4, 15, 16,  9,  0,  0,  0,
             0,  0, 13, 16, 15,  9,  3,  0,
             0,  0,  0,  4,  9, 14,  7,  0,
        ],
        host_logits: [-19, 28, 62, -27, -19, -86, -2, -1, 26, -50],
        host_prediction: 2,
    },
    Sample {
        row_idx: 3,
        label: 3,
        pixels: [
             0,  0,  7, 15, 13,  1,  0,  0,
             0,  8, 13,  6, 15,  4,  0,  0,
             0,  2,  1, 13, 13,  0,  0,  0,
             0,  0,  2, 15, 11,  1,  0,  0,
             0,  0,  0,  1, 12, 12,  1,  0,
             0,  0,  0,  0,  1, 10,  8,  0,
             0,  0,  8,  4,  5, 14,  9,  0,
             0,  0,  7, 13, 13,  9,  0,  0,
        ],
        host_logits: [-57, -14, -14, 79, -74, 8, -39, -28, -7, 9],
        host_prediction: 3,
    },
    Sample {
        row_idx: 87,
        label: 4,
        pixels: [
             0,  0,  0,  9, 16,  4,  0,  0,
             0,  1,  9, 16, 13,  2,  0,  0,
             0, 14, 16, 14,  8,  0,  0,  0,
             1, 15, 15,  5, 16,  9,  0,  0,
             0,  5, 16, 16, 16,  8,  0,  0,
             0,  0,  2, 13, 16,  1,  0,  0,
             0,  0,  0, 11, 13,  0,  0,  0,
             0,  0,  0, 11, 13,  0,  0,  0,
        ],
        host_logits: [-43, 27, -47, -85, 57, 15, -25, -28, -9, -29],
        host_prediction: 4,
    },
    Sample {
        row_idx: 15,
        label: 5,
        pixels: [
             0,  5, 12, 13, 16, 16,  2,  0,
             0, 11, 16, 15,  8,  4,  0,  0,
             0,  8, 14, 11,  1,  0,  0,  0,
             0,  8, 16, 16, 14,  0,  0,  0,
             0,  1,  6,  6, 16,  0,  0,  0,
             0,  0,  0,  5, 16,  3,  0,  0,
             0,  1,  5, 15, 13,  0,  0,  0,
             0,  4, 15, 16,  2,  0,  0,  0,
        ],
        host_logits: [-68, -24, -27, -8, -29, 98, -63, -16, -14, -13],
        host_prediction: 5,
    },
    Sample {
        row_idx: 67,
        label: 6,
        pixels: [
             0,  0,  5, 14,  0,  0,  0,  0,
             0,  0, 12,  9,  0,  0,  0,  0,
             0,  0, 15,  3,  0,  0,  0,  0,
             0,  1, 16,  0,  0,  0,  0,  0,
             0,  1, 16,  2,  7,  4,  0,  0,
             0,  3, 16, 16, 16, 16,  9,  0,
             0,  0, 15, 15,  4, 10, 16,  0,
             0,  0,  4, 14, 16, 12,  7,  0,
        ],
        host_logits: [-5, -61, 6, -63, -2, -23, 98, -66, 2, -90],
        host_prediction: 6,
    },
    Sample {
        row_idx: 7,
        label: 7,
        pixels: [
             0,  0,  7,  8, 13, 16, 15,  1,
             0,  0,  7,  7,  4, 11, 12,  0,
             0,  0,  0,  0,  8, 13,  1,  0,
             0,  4,  8,  8, 15, 15,  6,  0,
             0,  2, 11, 15, 15,  4,  0,  0,
             0,  0,  0, 16,  5,  0,  0,  0,
             0,  0,  9, 15,  1,  0,  0,  0,
             0,  0, 13,  5,  0,  0,  0,  0,
        ],
        host_logits: [-70, -24, -10, -4, -13, -2, -59, 90, -1, -8],
        host_prediction: 7,
    },
    Sample {
        row_idx: 123,
        label: 8,
        pixels: [
             0,  0,  5, 14, 15,  4,  0,  0,
             0,  0,  8, 16, 16, 14,  0,  0,
             0,  0,  5, 16, 16,  9,  0,  0,
             0,  0,  0, 15, 16,  1,  0,  0,
             0,  0,  1, 16, 13,  0,  0,  0,
             0,  0, 11, 15, 14,  5,  0,  0,
             0,  0, 12, 12,  8, 15,  1,  0,
             0,  0,  5, 16, 16, 16,  2,  0,
        ],
        host_logits: [-78, 56, 36, 12, -66, -77, -34, -36, 57, -31],
        host_prediction: 8,
    },
    Sample {
        row_idx: 19,
        label: 9,
        pixels: [
             0,  0,  6, 14,  4,  0,  0,  0,
             0,  0, 11, 16, 10,  0,  0,  0,
             0,  0,  8, 14, 16,  2,  0,  0,
             0,  0,  1, 12, 12, 11,  0,  0,
             0,  0,  0,  0,  0, 11,  3,  0,
             0,  0,  0,  0,  0,  5, 11,  0,
             0,  0,  1,  4,  4,  7, 16,  2,
             0,  0,  7, 16, 16, 13, 11,  1,
        ],
        host_logits: [-55, 8, -7, 14, -72, -16, -36, -53, -32, 37],
        host_prediction: 9,
    },
];
