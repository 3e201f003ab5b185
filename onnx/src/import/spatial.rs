//! The attributes of `Conv`, `MaxPool` and `AveragePool`, checked against what the layer
//! graph represents (`docs/layer-graph.md`): no dilation, pads that are *valid* (all 0) or
//! *same* (`pad_begin = floor(total / 2)`, ONNX's `SAME_UPPER`) for a convolution, no pads
//! and floor windows that use every input row and column for pooling.
//!
//! A one-dimensional operator (`[N, C, L]` tensors) is read as a two-dimensional one of
//! height 1: kernel `[1, k]`, stride `[1, s]`, pads `[0, begin, 0, end]`.

use super::error::NodeReason;
use super::fold::{attr as attribute, attr_int as int, shape};
use crate::proto::NodeProto;

/// A convolution's or pooling's window, in the layer graph's `[height, width]` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// The output's `[height, width]`.
    pub output: [usize; 2],
}

fn unsupported_attribute(detail: impl Into<String>) -> NodeReason {
    NodeReason::UnsupportedAttribute {
        detail: detail.into(),
    }
}

fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attribute(node, name).map(|a| a.ints.clone())
}

/// `auto_pad`, `NOTSET` when absent.
fn auto_pad(node: &NodeProto) -> String {
    attribute(node, "auto_pad")
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "NOTSET".to_owned())
}

/// One value per spatial axis (`rank` of them) as `[height, width]`; a missing
/// attribute is `default` on every axis.
fn per_axis(
    node: &NodeProto,
    name: &str,
    rank: usize,
    default: usize,
) -> Result<[usize; 2], NodeReason> {
    let Some(values) = ints(node, name) else {
        return Ok([default; 2]);
    };
    if values.len() != rank || values.iter().any(|&v| v < 1) {
        return Err(unsupported_attribute(format!(
            "{name} {values:?}: expected {rank} positive values, one per spatial axis"
        )));
    }
    let v: Vec<usize> = values.iter().map(|&v| v as usize).collect();
    Ok(if rank == 1 { [1, v[0]] } else { [v[0], v[1]] })
}

fn check_dilations(node: &NodeProto) -> Result<(), NodeReason> {
    match ints(node, "dilations") {
        Some(d) if d.iter().any(|&v| v != 1) => Err(unsupported_attribute(format!(
            "dilations {d:?} are not supported; kiln's convolutions and pooling windows are not dilated"
        ))),
        _ => Ok(()),
    }
}

/// The explicit `pads` as `[top, left, bottom, right]`, all 0 when absent.
fn explicit_pads(node: &NodeProto, rank: usize) -> Result<([usize; 4], Vec<i64>), NodeReason> {
    let Some(values) = ints(node, "pads") else {
        return Ok(([0; 4], vec![0; 2 * rank]));
    };
    if values.len() != 2 * rank || values.iter().any(|&v| v < 0) {
        return Err(unsupported_attribute(format!(
            "pads {values:?}: expected {} values of at least 0",
            2 * rank
        )));
    }
    let v: Vec<usize> = values.iter().map(|&v| v as usize).collect();
    let pads = if rank == 1 {
        [0, v[0], 0, v[1]]
    } else {
        [v[0], v[1], v[2], v[3]]
    };
    Ok((pads, values))
}

/// `(begin, end, output)` of *same* padding along one axis.
fn same_extent(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let output = input.div_ceil(stride);
    let total = ((output.max(1) - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2, output)
}

/// The pads in ONNX's order (`[x1_begin, x2_begin, x1_end, x2_end]`) for `rank` axes.
fn onnx_order(pads: [usize; 4], rank: usize) -> Vec<usize> {
    if rank == 1 {
        vec![pads[1], pads[3]]
    } else {
        pads.to_vec()
    }
}

/// A `Conv`'s window over an input of `[height, width]` = `input`, its kernel taken from the
/// weights (`kernel_shape`, when present, must agree).
pub(super) fn conv_window(
    node: &NodeProto,
    rank: usize,
    input: [usize; 2],
    weight_kernel: [usize; 2],
) -> Result<Window, NodeReason> {
    check_dilations(node)?;
    let kernel = per_axis(node, "kernel_shape", rank, 0)?;
    if kernel != [0; 2] && kernel != weight_kernel {
        return Err(shape(format!(
            "kernel_shape {kernel:?} does not match the weight's {weight_kernel:?}"
        )));
    }
    let kernel = weight_kernel;
    let stride = per_axis(node, "strides", rank, 1)?;
    let same: Vec<(usize, usize, usize)> = (0..2)
        .map(|axis| same_extent(input[axis], kernel[axis], stride[axis]))
        .collect();
    let same_pads = [same[0].0, same[1].0, same[0].1, same[1].1];
    let same_output = [same[0].2, same[1].2];
    let valid = |pads: [usize; 4]| -> Result<Window, NodeReason> {
        if input[0] < kernel[0] || input[1] < kernel[1] {
            return Err(shape(format!(
                "the {}x{} kernel is larger than the {}x{} input (valid padding)",
                kernel[0], kernel[1], input[0], input[1]
            )));
        }
        Ok(Window {
            kernel,
            stride,
            pads,
            output: [
                (input[0] - kernel[0]) / stride[0] + 1,
                (input[1] - kernel[1]) / stride[1] + 1,
            ],
        })
    };
    let same_window = Window {
        kernel,
        stride,
        pads: same_pads,
        output: same_output,
    };
    match auto_pad(node).as_str() {
        "NOTSET" => {
            let (pads, given) = explicit_pads(node, rank)?;
            if pads == same_pads {
                Ok(same_window)
            } else if pads == [0; 4] {
                valid(pads)
            } else {
                Err(unsupported_attribute(format!(
                    "pads {given:?} are neither valid (all 0) nor same ({:?} for this input, kernel and stride: the odd pixel at the end)",
                    onnx_order(same_pads, rank)
                )))
            }
        }
        "VALID" => valid([0; 4]),
        "SAME_UPPER" => Ok(same_window),
        "SAME_LOWER" => {
            if same_pads[0] == same_pads[2] && same_pads[1] == same_pads[3] {
                Ok(same_window)
            } else {
                Err(unsupported_attribute(
                    "auto_pad SAME_LOWER puts the odd padding row or column first; kiln pads as SAME_UPPER (TensorFlow's SAME)",
                ))
            }
        }
        other => Err(unsupported_attribute(format!(
            "auto_pad {other} is not an ONNX padding mode"
        ))),
    }
}

/// A `MaxPool`'s or `AveragePool`'s window: valid, floor, and every input row and column used.
pub(super) fn pool_window(
    node: &NodeProto,
    rank: usize,
    input: [usize; 2],
) -> Result<Window, NodeReason> {
    check_dilations(node)?;
    if ints(node, "kernel_shape").is_none() {
        return Err(unsupported_attribute("kernel_shape is missing"));
    }
    let kernel = per_axis(node, "kernel_shape", rank, 1)?;
    let stride = per_axis(node, "strides", rank, 1)?;
    match auto_pad(node).as_str() {
        "NOTSET" | "VALID" => {}
        other => {
            return Err(unsupported_attribute(format!(
                "auto_pad {other}: kiln pools without padding"
            )))
        }
    }
    let (pads, given) = explicit_pads(node, rank)?;
    if pads != [0; 4] {
        return Err(unsupported_attribute(format!(
            "pads {given:?}: kiln pools without padding"
        )));
    }
    if int(node, "ceil_mode", 0) != 0 {
        return Err(unsupported_attribute(
            "ceil_mode 1 is not supported; kiln's pooling windows are valid (floor)",
        ));
    }
    if input[0] < kernel[0] || input[1] < kernel[1] {
        return Err(shape(format!(
            "the {}x{} window is larger than the {}x{} input",
            kernel[0], kernel[1], input[0], input[1]
        )));
    }
    if (0..2).any(|axis| (input[axis] - kernel[axis]) % stride[axis] != 0) {
        return Err(shape(format!(
            "a {}x{} window with stride {}x{} over a {}x{} input drops input rows or columns; kiln needs (in - k) to be a multiple of the stride",
            kernel[0], kernel[1], stride[0], stride[1], input[0], input[1]
        )));
    }
    Ok(Window {
        kernel,
        stride,
        pads,
        output: [
            (input[0] - kernel[0]) / stride[0] + 1,
            (input[1] - kernel[1]) / stride[1] + 1,
        ],
    })
}

/// `group` of a `Conv`, at least 1.
pub(super) fn group(node: &NodeProto) -> Result<usize, NodeReason> {
    let g = int(node, "group", 1);
    if g < 1 {
        return Err(unsupported_attribute(format!("group {g} is not positive")));
    }
    Ok(g as usize)
}
