//! Kernels that compute a node in place: the output is written over its input's bytes in one
//! region of the arena (`docs/layer-graph.md` "Memory: the buffer plan"). Each computes what
//! the reference kernel computes, bit for bit (the tests hold them to it), in an order that
//! never overwrites an input byte before it has been read:
//!
//! - depthwise, TinyEngine's way: for each channel, its input plane (`h w` bytes, strided in
//!   HWC) is gathered into a temporary, then the channel's output plane is computed from the
//!   temporary and scattered into the output, which starts where the input starts. Output
//!   pixel `p`'s channel `ch` lands on input pixel `p`'s channel `ch`: that channel is in the
//!   temporary already, and no other channel is touched. Temporary: [`depthwise_temp_len`].
//! - depthwise with stride 1 that keeps its shape ([`is_ring`], format version 7), pixel by
//!   pixel in increasing order over a ring of pending outputs: output pixel `p` is computed
//!   (by the target's depthwise kernel, from the input as it stands) into the ring, and written
//!   over input pixel `p` once output `p + top w + left` is computed, the last one that reads
//!   input pixel `p`. Temporary: `top w + left + 1` pixels ([`ring_temp_len`]), a few rows
//!   less than the plane for an image of many rows.
//! - pointwise (`Conv2d` 1x1, stride 1, no padding), pixel by pixel in increasing order: the
//!   `c_out` outputs of pixel `p` are computed from input pixel `p` into a temporary of `c_out`
//!   bytes ([`pointwise_temp_len`]), then written. With `c_out <= c_in` the output starts at
//!   the input's offset; with `c_out > c_in` the input sits at the end of the output's bytes
//!   ([`pointwise_input_at`]). Either way the bytes written for pixel `p` end at or before
//!   the start of input pixel `p + 1`.
//! - a `Conv2d` that keeps its shape (stride 1, output shape = input shape, not 1x1:
//!   [`is_row_window`]), output row by output row in increasing order: the input rows output
//!   row `y` reads (`y - top .. y - top + kh`, clipped to the image) are kept in a temporary
//!   of `kh` rows ([`row_window_temp_len`]), each copied there before it is overwritten, and
//!   the convolution kernel computes row `y` from them straight into row `y`'s bytes. A row
//!   is appended to the window at the step that first reads it, and rows `>= y` are still
//!   the input's then (`kh - top >= 1` for a shape-keeping layer).
//! - the residual `Add`, element by element over one of its operands: no temporary.
//!
//! No float, no panic, no allocation; a call whose lengths or offsets do not fit the shapes
//! returns [`Error::KernelArguments`] and writes nothing.

use super::conv::{volume, ConvParams};
use super::reference::{self, requantize, tap, word};
use super::AddParams;
use crate::Error;

/// The temporary the in-place depthwise kernel needs: one input plane, `h * w` bytes
/// (saturating).
pub fn depthwise_temp_len(input_shape: [usize; 3]) -> usize {
    input_shape[0].saturating_mul(input_shape[1])
}

/// The temporary the in-place pointwise kernel needs: one output pixel, `c_out` bytes.
pub fn pointwise_temp_len(output_shape: [usize; 3]) -> usize {
    output_shape[2]
}

/// Where the input of an in-place pointwise convolution starts, relative to its output: 0 when
/// `c_out <= c_in`, else `h w (c_out - c_in)` (the input ends where the output ends). `None` if
/// the product does not fit.
pub fn pointwise_input_at(input_shape: [usize; 3], output_shape: [usize; 3]) -> Option<usize> {
    let pixels = input_shape[0].checked_mul(input_shape[1])?;
    match output_shape[2].checked_sub(input_shape[2]) {
        Some(wider) => pixels.checked_mul(wider),
        None => Some(0),
    }
}

/// Whether `params` is a convolution the pointwise kernel runs in place: 1x1 kernel, stride 1,
/// no padding, one spatial shape in and out.
pub fn is_pointwise(params: &ConvParams<'_>) -> bool {
    params.kernel == [1, 1]
        && params.stride == [1, 1]
        && params.pad == [0, 0]
        && params.input_shape[0] == params.output_shape[0]
        && params.input_shape[1] == params.output_shape[1]
}

/// Whether a layer keeps its shape with stride 1: the form the ring and the row window
/// compute in place.
fn keeps_shape(stride: [usize; 2], input_shape: [usize; 3], output_shape: [usize; 3]) -> bool {
    stride == [1, 1] && input_shape == output_shape
}

/// Whether a `DepthwiseConv2d` of these dimensions runs in place over a ring of pending output
/// pixels (format version 7): stride 1 and output shape equal to the input shape.
pub fn is_ring(stride: [usize; 2], input_shape: [usize; 3], output_shape: [usize; 3]) -> bool {
    keeps_shape(stride, input_shape, output_shape)
}

/// The ring of a depthwise layer in place: `top w + left + 1` pixels of `c` bytes.
pub fn ring_temp_len(pad: [usize; 2], input_shape: [usize; 3]) -> usize {
    let [_, w, c] = input_shape;
    pad[0]
        .saturating_mul(w)
        .saturating_add(pad[1])
        .saturating_add(1)
        .saturating_mul(c)
}

/// Runs a ring depthwise layer ([`is_ring`]) in place: `pixel(input, (oy, ox), out)` computes
/// output pixel `(oy, ox)`'s `c` bytes into `out` from the input as `data` holds it then.
/// Output `p` goes into ring slot `p mod (delay + 1)`, `delay = top w + left`, and is copied
/// over pixel `p` of `data` right after output `p + delay` is computed (the last output whose
/// window reaches input pixel `p`: every later one starts below or right of it), the last
/// `delay` at the end.
///
/// Errors: [`Error::KernelArguments`] (nothing written) if the layer is not a ring layer or
/// does not pass [`ConvParams::check`], or `data` or `ring` are too short.
pub fn depthwise_ring_driver(
    params: &ConvParams<'_>,
    data: &mut [i8],
    ring: &mut [i8],
    mut pixel: impl FnMut(&[i8], (usize, usize), &mut [i8]),
) -> Result<(), Error> {
    let Some(n) = volume(params.input_shape) else {
        return Err(Error::KernelArguments);
    };
    params.check(true, n, n)?;
    let [h, w, c] = params.input_shape;
    let [top, left] = params.pad;
    let delay = top.wrapping_mul(w).wrapping_add(left); // below `ring`'s checked length
    let (true, Some(data), Some(ring)) = (
        is_ring(params.stride, params.input_shape, params.output_shape),
        data.get_mut(..n),
        ring.get_mut(..ring_temp_len(params.pad, params.input_shape)),
    ) else {
        return Err(Error::KernelArguments);
    };
    let slots = delay.wrapping_add(1);
    let flush = |data: &mut [i8], ring: &[i8], q: usize| {
        let (at, slot) = (
            q.wrapping_mul(c),
            q.checked_rem(slots).unwrap_or(0).wrapping_mul(c),
        );
        if let (Some(dst), Some(src)) = (
            data.get_mut(at..at.wrapping_add(c)),
            ring.get(slot..slot.wrapping_add(c)),
        ) {
            dst.copy_from_slice(src);
        }
    };
    let mut p = 0usize;
    let mut slot = 0usize;
    for oy in 0..h {
        for ox in 0..w {
            if let Some(out) = ring.get_mut(slot..slot.wrapping_add(c)) {
                pixel(data, (oy, ox), out);
            }
            if let Some(q) = p.checked_sub(delay) {
                flush(data, ring, q);
            }
            p = p.wrapping_add(1);
            slot = slot.wrapping_add(c);
            if slot >= ring.len() {
                slot = 0;
            }
        }
    }
    for q in p.saturating_sub(delay)..p {
        flush(data, ring, q);
    }
    Ok(())
}

/// One ring `DepthwiseConv2d` layer in place (see [`reference::depthwise_conv2d_i8`] for what
/// it computes, and [`depthwise_ring_driver`] for the order): `data` holds the input, which the
/// output replaces; `ring` is the temporary, at least [`ring_temp_len`] bytes (its contents on
/// return are unspecified). Each pixel in the reference's arithmetic.
///
/// Errors: those of [`depthwise_ring_driver`].
pub fn depthwise_conv2d_i8_ring_in_place(
    params: &ConvParams<'_>,
    data: &mut [i8],
    ring: &mut [i8],
) -> Result<(), Error> {
    depthwise_ring_driver(params, data, ring, |input, at, out| {
        reference::depthwise_pixel(params, input, at, out)
    })
}

/// Whether a `Conv2d` of these dimensions runs in place row by row: stride 1, output shape
/// equal to the input shape, and not pointwise (a 1x1 layer has its own in-place kernel).
pub fn is_row_window(
    kernel: [usize; 2],
    stride: [usize; 2],
    input_shape: [usize; 3],
    output_shape: [usize; 3],
) -> bool {
    kernel != [1, 1] && keeps_shape(stride, input_shape, output_shape)
}

/// The temporary of a row-window convolution in place: `kh` input rows of `w c` bytes.
pub fn row_window_temp_len(kernel: [usize; 2], input_shape: [usize; 3]) -> usize {
    kernel[0]
        .saturating_mul(input_shape[1])
        .saturating_mul(input_shape[2])
}

/// One `Conv2d` that keeps its shape ([`is_row_window`]) in place (see
/// [`reference::conv2d_i8`] for what it computes): `data` holds the input's `h w c` bytes,
/// which the output replaces; `rows` is the temporary, at least [`row_window_temp_len`] bytes
/// (its contents on return are unspecified). `conv` is the convolution kernel (a
/// `conv2d_i8`-like call, with the caller's workspace) that computes each output row from the
/// window of input rows it reads, given as a layer of that many rows with the padding that
/// remains above them and one output row.
///
/// Errors: [`Error::KernelArguments`] (nothing written) if the layer is not a row-window
/// convolution or does not pass [`ConvParams::check`], or `data` or `rows` are too short;
/// whatever `conv` returns (then the rows before have been written).
pub fn conv2d_i8_rows_in_place(
    params: &ConvParams<'_>,
    data: &mut [i8],
    rows: &mut [i8],
    mut conv: impl FnMut(&ConvParams<'_>, &[i8], &mut [i8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let Some(n) = volume(params.input_shape) else {
        return Err(Error::KernelArguments);
    };
    params.check(false, n, n)?;
    let [h, w, c] = params.input_shape;
    let [kh, _] = params.kernel;
    let top = params.pad[0];
    let row_len = w.wrapping_mul(c); // fits: `h w c` does
    let (true, Some(data), Some(rows)) = (
        is_row_window(
            params.kernel,
            params.stride,
            params.input_shape,
            params.output_shape,
        ),
        data.get_mut(..n),
        rows.get_mut(..row_window_temp_len(params.kernel, params.input_shape)),
    ) else {
        return Err(Error::KernelArguments);
    };
    // input rows `have.0..have.1` are in `rows`, from its start
    let mut have = (0usize, 0usize);
    for y in 0..h {
        // the rows output row `y` reads: `y - top + ky` for `ky` in `0..kh`, clipped
        let first = y.saturating_sub(top);
        let end = y.wrapping_add(kh).saturating_sub(top).min(h);
        // drop the rows above `first`, then append the input rows up to `end`: rows `>= y`
        // (`end > y`), not yet overwritten
        let keep = have.1.saturating_sub(first);
        let dropped = first.saturating_sub(have.0).wrapping_mul(row_len);
        for i in 0..keep.wrapping_mul(row_len) {
            // a move to lower indices, in increasing order: each byte is read before it is
            // overwritten
            if let Some(&v) = rows.get(dropped.wrapping_add(i)) {
                if let Some(d) = rows.get_mut(i) {
                    *d = v;
                }
            }
        }
        for r in have.1.max(first)..end {
            let at = r.saturating_sub(first).wrapping_mul(row_len);
            let from = r.wrapping_mul(row_len);
            if let (Some(dst), Some(src)) = (
                rows.get_mut(at..at.wrapping_add(row_len)),
                data.get(from..from.wrapping_add(row_len)),
            ) {
                dst.copy_from_slice(src);
            }
        }
        have = (first, end);
        let window = ConvParams {
            input_shape: [end.saturating_sub(first), w, c],
            output_shape: [1, w, c],
            pad: [first.wrapping_add(top).saturating_sub(y), params.pad[1]],
            ..*params
        };
        let input = rows.get(..end.saturating_sub(first).wrapping_mul(row_len));
        let at = y.wrapping_mul(row_len);
        let output = data.get_mut(at..at.wrapping_add(row_len));
        let (Some(input), Some(output)) = (input, output) else {
            return Err(Error::KernelArguments); // lengths were checked: never taken
        };
        conv(&window, input, output)?;
    }
    Ok(())
}

/// One `DepthwiseConv2d` layer in place (see [`reference::depthwise_conv2d_i8`] for what it
/// computes): `data` holds the input (`h w c` bytes) from its start, and the output
/// (`oh ow c` bytes, at most the input's) is written from its start. `plane` is the temporary,
/// at least [`depthwise_temp_len`] bytes; its contents on return are unspecified.
///
/// Errors: [`Error::KernelArguments`] (nothing written) if the parameters do not pass
/// [`ConvParams::check`], `data` is shorter than the input, the output is longer than the input,
/// or `plane` is too short.
pub fn depthwise_conv2d_i8_in_place(
    params: &ConvParams<'_>,
    data: &mut [i8],
    plane: &mut [i8],
) -> Result<(), Error> {
    let (Some(n_in), Some(n_out)) = (volume(params.input_shape), volume(params.output_shape))
    else {
        return Err(Error::KernelArguments);
    };
    params.check(true, n_in, n_out)?;
    let [h, w, c] = params.input_shape;
    let [oh, ow, _] = params.output_shape;
    let (Some(data), Some(plane), true) = (
        data.get_mut(..n_in),
        plane.get_mut(..depthwise_temp_len(params.input_shape)),
        n_out <= n_in,
    ) else {
        return Err(Error::KernelArguments);
    };
    let [kh, kw] = params.kernel;
    let [sh, sw] = params.stride;
    let [top, left] = params.pad;
    let zp = i32::from(params.input_zero_point);
    for (ch, &t) in (0..c).zip(params.shifts) {
        // the channel's input plane: from here on its bytes in `data` may be overwritten
        let mut at = ch;
        for x in plane.iter_mut() {
            *x = data.get(at).copied().unwrap_or(0);
            at = at.wrapping_add(c);
        }
        let (bias, multiplier) = (word(params.bias, ch), word(params.multipliers, ch));
        let mut out = ch; // output pixel `p`'s channel `ch`: `p * c + ch`, below `n_out`
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = bias;
                for ky in 0..kh {
                    let Some(iy) = tap(oy, sh, ky, top, h) else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(ix) = tap(ox, sw, kx, left, w) else {
                            continue;
                        };
                        let x = plane
                            .get(iy.wrapping_mul(w).wrapping_add(ix))
                            .copied()
                            .unwrap_or(0);
                        let wat = ky.wrapping_mul(kw).wrapping_add(kx).wrapping_mul(c);
                        let wv = params
                            .weights
                            .get(wat.wrapping_add(ch))
                            .copied()
                            .unwrap_or(0);
                        // |w * (x - zp)| <= 128 * 255
                        acc = acc.wrapping_add(
                            i32::from(wv as i8).wrapping_mul(i32::from(x).wrapping_sub(zp)),
                        );
                    }
                }
                if let Some(y) = data.get_mut(out) {
                    *y = requantize(
                        acc,
                        multiplier,
                        t,
                        params.output_zero_point,
                        params.clamp_min,
                        params.clamp_max,
                    );
                }
                out = out.wrapping_add(c);
            }
        }
    }
    Ok(())
}

/// One pointwise `Conv2d` layer (1x1, stride 1, no padding: [`is_pointwise`]) in place (see
/// [`reference::conv2d_i8`] for what it computes): `data` holds the output's `h w c_out` bytes
/// from its start and the input's `h w c_in` bytes from `input_at`, which must be
/// [`pointwise_input_at`]. `pixel` is the temporary, at least `c_out` bytes; its contents on
/// return are unspecified.
///
/// Errors: [`Error::KernelArguments`] (nothing written) if the parameters are not a pointwise
/// convolution or do not pass [`ConvParams::check`], `input_at` is not the one above, or `data`
/// or `pixel` is too short.
pub fn pointwise_conv2d_i8_in_place(
    params: &ConvParams<'_>,
    data: &mut [i8],
    input_at: usize,
    pixel: &mut [i8],
) -> Result<(), Error> {
    let (Some(n_in), Some(n_out)) = (volume(params.input_shape), volume(params.output_shape))
    else {
        return Err(Error::KernelArguments);
    };
    params.check(false, n_in, n_out)?;
    let needed = input_at.checked_add(n_in).map(|end| end.max(n_out));
    let [h, w, c_in] = params.input_shape;
    let c_out = params.output_shape[2];
    let (Some(data), Some(pixel), true) = (
        needed.and_then(|n| data.get_mut(..n)),
        pixel.get_mut(..c_out),
        is_pointwise(params)
            && pointwise_input_at(params.input_shape, params.output_shape) == Some(input_at),
    ) else {
        return Err(Error::KernelArguments);
    };
    // one pixel of the layer: the reference's arithmetic on `[1, 1, c_in]`
    let one = ConvParams {
        input_shape: [1, 1, c_in],
        output_shape: [1, 1, c_out],
        ..*params
    };
    let (mut x_at, mut y_at) = (input_at, 0usize);
    // every offset below is at most `needed`, which fits
    for _ in 0..h.wrapping_mul(w) {
        let Some(x) = data.get(x_at..x_at.wrapping_add(c_in)) else {
            return Err(Error::KernelArguments); // never taken: the lengths were checked
        };
        reference::conv2d_i8(&one, x, pixel)?;
        // pixel `p`'s outputs end at `(p + 1) c_out`, at or before input pixel `p + 1`
        if let Some(y) = data.get_mut(y_at..y_at.wrapping_add(c_out)) {
            for (y, &v) in y.iter_mut().zip(pixel.iter()) {
                *y = v;
            }
        }
        x_at = x_at.wrapping_add(c_in);
        y_at = y_at.wrapping_add(c_out);
    }
    Ok(())
}

/// One residual `Add` in place (see [`reference::add_i8`] for what it computes): `data` holds
/// one operand, operand `a` if `data_is_a`, else `b`, and the output is written over it. `other`
/// is the other operand, or `None` when both operands are the one value in `data` (`x + x`).
///
/// Errors: [`Error::KernelArguments`] (nothing written) if `other` is not as long as `data`, or
/// `clamp_min > clamp_max`.
pub fn add_i8_in_place(
    params: &AddParams,
    data: &mut [i8],
    other: Option<&[i8]>,
    data_is_a: bool,
) -> Result<(), Error> {
    let n = data.len();
    params.check(n, other.map_or(n, <[i8]>::len), n)?;
    let [wa, wb] = params.weights;
    let [zpa, zpb] = params.input_zero_points.map(i32::from);
    let add = |a: i8, b: i8| {
        // |x - zp| <= 255
        let acc = wa
            .wrapping_mul(i32::from(a).wrapping_sub(zpa))
            .wrapping_add(wb.wrapping_mul(i32::from(b).wrapping_sub(zpb)));
        requantize(
            acc,
            params.multiplier,
            params.shift,
            params.output_zero_point,
            params.clamp_min,
            params.clamp_max,
        )
    };
    match other {
        Some(other) if data_is_a => {
            for (y, &b) in data.iter_mut().zip(other) {
                *y = add(*y, b);
            }
        }
        Some(other) => {
            for (y, &a) in data.iter_mut().zip(other) {
                *y = add(a, *y);
            }
        }
        None => {
            for y in data.iter_mut() {
                *y = add(*y, *y);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    //! Every in-place kernel against the reference on random cases: the reference runs on a
    //! copy of the input into a separate output, the in-place kernel over one buffer (with
    //! sentinel bytes around it and in the temporary), and the bytes must agree.
    use super::*;
    use crate::kernels::harness::conv_case;
    use crate::testutil::Rng;
    use std::vec::Vec;

    #[test]
    fn depthwise_in_place_matches_reference() {
        let mut rng = Rng::new(0x1A_0001);
        let (mut strided, mut same) = (0, 0);
        for i in 0..3000 {
            let case = conv_case(&mut rng, true);
            let p = case.params();
            let mut expected = std::vec![0x5Ai8; case.output_len()];
            reference::depthwise_conv2d_i8(&p, &case.input, &mut expected).unwrap();
            let n_in = case.input.len();
            let mut buffer = std::vec![0x33i8; n_in + 8];
            buffer[4..4 + n_in].copy_from_slice(&case.input);
            let mut plane = std::vec![0x44i8; depthwise_temp_len(case.input_shape)];
            depthwise_conv2d_i8_in_place(&p, &mut buffer[4..4 + n_in], &mut plane).unwrap();
            assert_eq!(
                &buffer[4..4 + expected.len()],
                &expected[..],
                "case {i}: {case:?}"
            );
            assert!(buffer[..4]
                .iter()
                .chain(&buffer[4 + n_in..])
                .all(|&b| b == 0x33));
            strided += usize::from(case.stride != [1, 1]);
            same += usize::from(case.pad != [0, 0]);
            // a temporary one byte short is refused, and nothing is written
            if !plane.is_empty() {
                let mut data = case.input.clone();
                let short = plane.len() - 1;
                assert_eq!(
                    depthwise_conv2d_i8_in_place(&p, &mut data, &mut plane[..short]),
                    Err(Error::KernelArguments)
                );
                assert_eq!(data, case.input);
            }
        }
        assert!(strided > 1000 && same > 500, "{strided} {same}");
    }

    /// A random pointwise case: `c_out` below, equal to and above `c_in`.
    fn pointwise_case(rng: &mut Rng) -> crate::kernels::harness::ConvCase {
        let mut case = conv_case(rng, false);
        let [h, w, c] = case.input_shape;
        let oc = case.output_shape[2];
        case.kernel = [1, 1];
        case.stride = [1, 1];
        case.pad = [0, 0];
        case.output_shape = [h, w, oc];
        // a fresh weight array for the 1x1 kernel
        case.weights = (0..oc * c).map(|_| rng.i8() as u8).collect();
        case
    }

    #[test]
    fn pointwise_in_place_matches_reference() {
        let mut rng = Rng::new(0x1A_0002);
        let (mut wider, mut narrower) = (0, 0);
        for i in 0..3000 {
            let case = pointwise_case(&mut rng);
            let p = case.params();
            let mut expected = std::vec![0x5Ai8; case.output_len()];
            reference::conv2d_i8(&p, &case.input, &mut expected).unwrap();
            let (n_in, n_out) = (case.input.len(), case.output_len());
            let at = pointwise_input_at(case.input_shape, case.output_shape).unwrap();
            let len = (at + n_in).max(n_out);
            let mut buffer = std::vec![0x33i8; len + 8];
            buffer[4 + at..4 + at + n_in].copy_from_slice(&case.input);
            let mut pixel = std::vec![0x44i8; case.output_shape[2]];
            pointwise_conv2d_i8_in_place(&p, &mut buffer[4..4 + len], at, &mut pixel).unwrap();
            assert_eq!(&buffer[4..4 + n_out], &expected[..], "case {i}: {case:?}");
            assert!(buffer[..4]
                .iter()
                .chain(&buffer[4 + len..])
                .all(|&b| b == 0x33));
            wider += usize::from(at > 0);
            narrower += usize::from(case.output_shape[2] < case.input_shape[2]);
            // any other input offset is refused, and nothing is written
            let mut data = buffer[4..4 + len].to_vec();
            let before = data.clone();
            for wrong in [at + 1, at.wrapping_sub(1)] {
                assert_eq!(
                    pointwise_conv2d_i8_in_place(&p, &mut data, wrong, &mut pixel),
                    Err(Error::KernelArguments)
                );
            }
            assert_eq!(data, before);
        }
        assert!(wider > 800 && narrower > 800, "{wider} {narrower}");
        // not pointwise: refused
        let mut case = pointwise_case(&mut rng);
        case.stride = [2, 1];
        let mut data = std::vec![0i8; 4096];
        assert_eq!(
            pointwise_conv2d_i8_in_place(&case.params(), &mut data, 0, &mut [0; 64]),
            Err(Error::KernelArguments)
        );
    }

    /// The in-place pointwise loops of im2col (and the dispatched one), with a workspace of
    /// exactly the length they use (starting one byte past a word boundary), and one byte short
    /// (the reference arithmetic): the reference's bytes.
    #[test]
    fn pointwise_in_place_loops_match_reference() {
        use crate::kernels::im2col;
        type F = fn(&ConvParams<'_>, (&mut [i8], usize), &mut [i8], &mut [i8]) -> Result<(), Error>;
        let loops: [(F, bool); 4] = [
            (im2col::pointwise_in_place_packed, true),
            (im2col::pointwise_in_place_rows4, false),
            (im2col::pointwise_in_place_portable, false),
            (crate::kernels::pointwise_conv2d_i8_in_place_workspace, true),
        ];
        let words = |v: Vec<i32>| -> Vec<u8> { v.into_iter().flat_map(i32::to_le_bytes).collect() };
        let mut rng = Rng::new(0x1A_0004);
        for i in 0..1500 {
            let mut case = pointwise_case(&mut rng);
            if i % 3 == 0 {
                // the long columns of the DS-CNN's pointwise layers
                let c = [8, 16, 24, 64][rng.usize_in(0, 3)];
                let oc = [4, 8, 13, 64][rng.usize_in(0, 3)];
                let [h, w, _] = case.input_shape;
                case.input_shape = [h, w, c];
                case.output_shape = [h, w, oc];
                case.input = (0..h * w * c).map(|_| rng.i8()).collect();
                case.weights = (0..oc * c).map(|_| rng.i8() as u8).collect();
                case.bias = words((0..oc).map(|_| rng.range_i64(-3000, 3000) as i32).collect());
                case.multipliers = words(
                    (0..oc)
                        .map(|_| rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32)
                        .collect(),
                );
                case.shifts = (0..oc).map(|_| rng.range_i64(36, 46) as u8).collect();
            }
            let p = case.params();
            let mut expected = std::vec![0x5Ai8; case.output_len()];
            reference::conv2d_i8(&p, &case.input, &mut expected).unwrap();
            let (n_in, n_out) = (case.input.len(), case.output_len());
            let at = pointwise_input_at(case.input_shape, case.output_shape).unwrap();
            let len = (at + n_in).max(n_out);
            for (f, widened) in loops {
                for short in [false, true] {
                    let ws_len = im2col::workspace_len(&p, widened) - usize::from(short);
                    let mut ws = std::vec![0x55i8; ws_len + 8];
                    let skip = ws.as_ptr().align_offset(4) + 1;
                    let mut data = std::vec![0x33i8; len];
                    data[at..at + n_in].copy_from_slice(&case.input);
                    let mut pixel = std::vec![0x44i8; case.output_shape[2]];
                    f(
                        &p,
                        (&mut data, at),
                        &mut pixel,
                        &mut ws[skip..skip + ws_len],
                    )
                    .unwrap();
                    assert_eq!(&data[..n_out], &expected[..], "case {i} {short}: {case:?}");
                }
            }
        }
    }

    #[test]
    fn row_window_conv_in_place_matches_reference() {
        let mut rng = Rng::new(0x1A_0005);
        let mut cases = 0;
        while cases < 400 {
            let case = crate::kernels::harness::conv_case(&mut rng, false);
            let p = case.params();
            if !is_row_window(p.kernel, p.stride, p.input_shape, p.output_shape) {
                continue;
            }
            cases += 1;
            let n = case.input.len();
            let mut expected = std::vec![0i8; n];
            reference::conv2d_i8(&p, &case.input, &mut expected).unwrap();
            let mut data = case.input.clone();
            let mut rows = std::vec![0x5Ai8; row_window_temp_len(p.kernel, p.input_shape)];
            conv2d_i8_rows_in_place(&p, &mut data, &mut rows, |q, x, y| {
                reference::conv2d_i8(q, x, y)
            })
            .unwrap();
            assert_eq!(data, expected, "case {cases}: {:?}", p.input_shape);
            // the fast kernel with its workspace, as the runtime calls it
            let mut data = case.input.clone();
            let mut workspace = std::vec![0i8; crate::kernels::conv_workspace_len(&p) + 4];
            conv2d_i8_rows_in_place(&p, &mut data, &mut rows, |q, x, y| {
                crate::kernels::conv2d_i8_workspace(q, x, &mut workspace, y)
            })
            .unwrap();
            assert_eq!(data, expected, "case {cases}, fast kernel");
            // a short temporary is refused, nothing written
            let mut data = case.input.clone();
            let short = row_window_temp_len(p.kernel, p.input_shape) - 1;
            assert_eq!(
                conv2d_i8_rows_in_place(&p, &mut data, &mut rows[..short], |q, x, y| {
                    reference::conv2d_i8(q, x, y)
                }),
                Err(Error::KernelArguments)
            );
            assert_eq!(data, case.input);
        }
    }

    #[test]
    fn ring_depthwise_in_place_matches_reference() {
        let mut rng = Rng::new(0x1A_0006);
        let mut cases = 0;
        while cases < 400 {
            let case = crate::kernels::harness::conv_case(&mut rng, true);
            let p = case.params();
            if !is_ring(p.stride, p.input_shape, p.output_shape) {
                continue;
            }
            cases += 1;
            let n = case.input.len();
            let mut expected = std::vec![0i8; n];
            reference::depthwise_conv2d_i8(&p, &case.input, &mut expected).unwrap();
            let len = ring_temp_len(p.pad, p.input_shape);
            type RingFn = fn(&ConvParams<'_>, &mut [i8], &mut [i8]) -> Result<(), Error>;
            let kernels: [(&str, RingFn); 3] = [
                ("reference", depthwise_conv2d_i8_ring_in_place),
                (
                    "lanes",
                    crate::kernels::dwconv::depthwise_ring_in_place_lanes,
                ),
                (
                    "bytes",
                    crate::kernels::dwconv::depthwise_ring_in_place_bytes,
                ),
            ];
            for (name, kernel) in kernels {
                let mut data = case.input.clone();
                let mut ring = std::vec![0x5Ai8; len];
                kernel(&p, &mut data, &mut ring).unwrap();
                assert_eq!(data, expected, "case {cases} ({name}): {:?}", p.input_shape);
                // a short ring is refused, nothing written
                let mut data = case.input.clone();
                assert_eq!(
                    kernel(&p, &mut data, &mut ring[..len - 1]),
                    Err(Error::KernelArguments)
                );
                assert_eq!(data, case.input);
            }
        }
    }

    #[test]
    fn add_in_place_matches_reference() {
        let mut rng = Rng::new(0x1A_0003);
        for i in 0..2000 {
            let n = rng.usize_in(1, 50);
            let p = AddParams {
                weights: [
                    rng.range_i64(-(1 << 16), 1 << 16) as i32,
                    rng.range_i64(-(1 << 16), 1 << 16) as i32,
                ],
                input_zero_points: [rng.i8(), rng.i8()],
                output_zero_point: rng.i8_in(-100, 100),
                multiplier: rng.range_i64(1 << 30, i64::from(i32::MAX)) as i32,
                shift: rng.range_i64(44, 50) as u8,
                clamp_min: if rng.bool() { -128 } else { 3 },
                clamp_max: 127,
            };
            let a: Vec<i8> = (0..n).map(|_| rng.i8()).collect();
            let b: Vec<i8> = (0..n).map(|_| rng.i8()).collect();
            check_add_in_place(&p, &a, &b, add_i8_in_place, i);
        }
    }

    /// The signature of [`add_i8_in_place`].
    pub(crate) type AddInPlaceFn =
        fn(&AddParams, &mut [i8], Option<&[i8]>, bool) -> Result<(), Error>;

    /// An add in place (`add` has `add_i8_in_place`'s contract) against the reference over
    /// either operand and as `x + x`; a wrong length is refused and writes nothing.
    pub(crate) fn check_add_in_place(
        p: &AddParams,
        a: &[i8],
        b: &[i8],
        add: AddInPlaceFn,
        case: usize,
    ) {
        let mut expected = std::vec![0i8; a.len()];
        reference::add_i8(p, a, b, &mut expected).unwrap();
        let mut data = a.to_vec();
        add(p, &mut data, Some(b), true).unwrap();
        assert_eq!(data, expected, "case {case}: over a");
        let mut data = b.to_vec();
        add(p, &mut data, Some(a), false).unwrap();
        assert_eq!(data, expected, "case {case}: over b");
        reference::add_i8(p, a, a, &mut expected).unwrap();
        let mut data = a.to_vec();
        add(p, &mut data, None, true).unwrap();
        assert_eq!(data, expected, "case {case}: x + x");
        let mut data = a.to_vec();
        assert_eq!(
            add(p, &mut data, Some(&b[1..]), true),
            Err(Error::KernelArguments)
        );
        assert_eq!(data, a);
    }
}
