//! The layer kinds a program links kernels for, chosen at compile time.
//!
//! [`Model`](crate::Model) takes a set of kinds as a const parameter, like TFLM's op resolver:
//! a kind left out of the set costs no flash (its validation and kernel are never linked) and
//! a blob that uses it is refused at load with [`Error::KindNotLinked`](crate::Error). The
//! default is [`ALL`]. `kiln bake --rust` writes the set its model needs.
//!
//! ```
//! use kiln_runtime::{kinds, Model};
//! // a firmware that only ever runs MLPs links the dense kernel alone
//! type Mlp<'a> = Model<'a, { kinds::DENSE }>;
//! # let _ = core::mem::size_of::<Mlp<'static>>();
//! ```

/// Fully connected layers.
pub const DENSE: u8 = 1 << 0;
/// `Conv2d` (and `Conv1d`, a `Conv2d` with a `[1, K]` kernel).
pub const CONV2D: u8 = 1 << 1;
/// Depthwise `Conv2d`.
pub const DEPTHWISE: u8 = 1 << 2;
/// Max pooling.
pub const MAX_POOL: u8 = 1 << 3;
/// Average pooling (and global average pooling).
pub const AVG_POOL: u8 = 1 << 4;
/// Not a layer: the input stage's loop for real values in fixed point (a blob whose input has
/// fraction bits), one map decoded once and 32-bit arithmetic per feature. Without it such a
/// blob still runs, through the generic map: the same bits, about twice the instructions per
/// feature, and a few hundred bytes less flash for programs whose models take integers.
pub const FIXED_POINT_INPUT: u8 = 1 << 5;
/// Not a layer: int16 activations (the 16x8 scheme, blob format version 4). Without it an
/// int16 blob is refused at load and none of its code is linked.
pub const INT16: u8 = 1 << 6;
/// The residual `Add` of two values of one shape (blob format version 5, kind byte 6). Its bit
/// follows the two that are not layers: the kind byte and the bit no longer line up.
pub const ADD: u8 = 1 << 7;
/// The kinds that may run in place (blob format versions 6 and 7): a program that links none
/// of them links no in-place code, and refuses a version-6 or -7 blob by its version.
pub(crate) const IN_PLACE_KINDS: u8 = CONV2D | DEPTHWISE | ADD;

/// Whether a program with the kinds `kinds` reads in-place plans: feature `in-place`, and a
/// kind that can run in place.
pub(crate) const fn links_in_place(kinds: u8) -> bool {
    cfg!(feature = "in-place") && kinds & IN_PLACE_KINDS != 0
}
/// Every kind this version of the runtime knows.
pub const ALL: u8 =
    DENSE | CONV2D | DEPTHWISE | MAX_POOL | AVG_POOL | FIXED_POINT_INPUT | INT16 | ADD;

/// Each kind with its constant's name, for tools that write a set as Rust source.
pub const NAMES: [(u8, &str); 8] = [
    (DENSE, "DENSE"),
    (CONV2D, "CONV2D"),
    (DEPTHWISE, "DEPTHWISE"),
    (MAX_POOL, "MAX_POOL"),
    (AVG_POOL, "AVG_POOL"),
    (FIXED_POINT_INPUT, "FIXED_POINT_INPUT"),
    (INT16, "INT16"),
    (ADD, "ADD"),
];

/// The set bit of a blob's layer-kind byte (1 to 6), 0 for an unknown byte. Bytes 1 to 5 are
/// bits 0 to 4; byte 6 is [`ADD`], since bits 5 and 6 are taken by sets that are not layers.
pub(crate) const fn bit_of(kind_byte: u8) -> u8 {
    match kind_byte {
        1..=5 => 1u8.wrapping_shl(kind_byte.wrapping_sub(1) as u32),
        6 => ADD,
        _ => 0,
    }
}
