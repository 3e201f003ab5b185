//! The dense kernel of the `small` feature: one output row at a time in one plain loop, and the
//! optimized kernels' 32-bit output stage (`requantize`), so no 64-bit rounding path is linked.
//! The least code of any dense kernel here, the reference's bits (`kernel_tests!`).

use super::{le_i32, requantize, tail_dot, FcParams};
use crate::Error;

/// Same contract as [`super::reference::fully_connected_i8`].
pub fn fully_connected_i8(
    params: &FcParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    let n_in = input.len();
    params.check(n_in, output.len())?;
    for (o, out) in output.iter_mut().enumerate() {
        // `check` proved the lengths: no product below wraps and every `get` is in bounds.
        let (row_at, word_at) = (o.wrapping_mul(n_in), o.wrapping_mul(4));
        let (Some(row), Some(bias), Some(multiplier), Some(&shift)) = (
            params.weights.get(row_at..row_at.wrapping_add(n_in)),
            params.bias.get(word_at..word_at.wrapping_add(4)),
            params.multipliers.get(word_at..word_at.wrapping_add(4)),
            params.shifts.get(o),
        ) else {
            return Err(Error::KernelArguments);
        };
        let acc = tail_dot(row, input, le_i32(bias));
        *out = requantize(params, acc, le_i32(multiplier), shift);
    }
    Ok(())
}
