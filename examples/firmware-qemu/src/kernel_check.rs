//! The compiled kernels against the reference kernel, on the device, for layer shapes the
//! models do not have: an odd number of 8-input groups (the assembly loops enter their
//! unrolled body halfway), inputs that are not a multiple of 8 or 4, and outputs that are not
//! a multiple of 4 (the rows after the last block), with and without a workspace, with
//! every shift in 33..=62 (the block kernels' fast output stage), and with shifts and
//! multipliers no validated model has (0, 63 and above; negative multipliers; wide biases),
//! which the kernels must still compute as the reference does. The weights, bias and
//! multipliers are word-aligned, as in a blob at an aligned address (the Cortex-M0 routine needs
//! that for the bias and multipliers, the Armv7E-M blocks for the weights); each case runs once
//! more with all three one byte past a word boundary (the fallbacks).

use kiln_runtime::kernels::{self, packed, reference, FcParams};

const MAX_IN: usize = 104;
const MAX_OUT: usize = 17;
const N_INPUTS: [usize; 13] = [1, 3, 7, 8, 13, 16, 24, 32, 40, 56, 72, 100, 104];
// 8, 9, 16 and 17: the RV32 kernel's blocks of eight rows (inputs in sixteens: 16, 32)
const N_OUTPUTS: [usize; 8] = [1, 3, 4, 5, 8, 9, 16, 17];

/// Bytes at a word boundary, one word more than the channels' arrays take.
#[repr(C, align(4))]
struct Words([u8; 4 * MAX_OUT + 4]);

/// Weights at a word boundary, one word more than the largest case takes.
#[repr(C, align(4))]
struct WeightWords([u8; MAX_IN * MAX_OUT + 4]);

/// The shifts and multipliers of a case.
#[derive(Clone, Copy, PartialEq)]
enum Scales {
    /// Shifts 1..=46, most around 31: some rows take the general output stage, some of them
    /// with sums small enough for in-range outputs.
    Low,
    /// Every shift in 33..=62, some multipliers 2^30 (exact halves).
    High,
    /// Shifts 0, 1, 32, 63 and more, any multiplier, biases up to 2^30.
    Extreme,
}

/// The first `n` bytes of `values` copied into `to` from byte `skip`.
fn place<'a>(values: &[u8], to: &'a mut [u8], skip: usize, n: usize) -> Option<&'a [u8]> {
    let bytes = to.get_mut(skip..skip + n)?;
    for (byte, &value) in bytes.iter_mut().zip(values.get(..n)?) {
        *byte = value;
    }
    Some(bytes)
}

/// xorshift32: deterministic filler, nothing more.
struct Filler(u32);

impl Filler {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// Writes `value` little-endian into a 4-byte chunk.
fn put_le(chunk: &mut [u8], value: i32) {
    for (byte, value_byte) in chunk.iter_mut().zip(value.to_le_bytes()) {
        *byte = value_byte;
    }
}

/// The dispatched kernel without a workspace and with one, each against `expected`; returns
/// (cases, mismatches).
fn check_entries(
    params: &FcParams<'_>,
    x: &[i8],
    workspace: &mut [i8],
    expected: &[i8],
    got: &mut [i8],
) -> (u32, u32) {
    let mut mismatches = 0;
    got.fill(0x55);
    if kernels::fully_connected_i8(params, x, got).is_err() || got != expected {
        mismatches += 1;
    }
    got.fill(0x55);
    let widened = kernels::fully_connected_i8_workspace(params, x, workspace, got);
    if widened.is_err() || got != expected {
        mismatches += 1;
    }
    (2, mismatches)
}

/// Runs every shape; returns (cases, mismatches). A case is one shape and one kernel entry.
/// No indexing that could panic: the firmware links only without a reachable panic.
pub fn run() -> (u32, u32) {
    let mut filler = Filler(0x4b49_4c4e);
    let mut weights = [0u8; MAX_IN * MAX_OUT];
    let mut bias = [0u8; 4 * MAX_OUT];
    let mut multipliers = [0u8; 4 * MAX_OUT];
    // Where each case places its arrays, at a word boundary and one byte past it.
    let mut placed_weights = WeightWords([0; MAX_IN * MAX_OUT + 4]);
    let mut placed_bias = Words([0; 4 * MAX_OUT + 4]);
    let mut placed_multipliers = Words([0; 4 * MAX_OUT + 4]);
    let mut shifts = [0u8; MAX_OUT];
    let mut input = [0i8; MAX_IN];
    let mut workspace = [0i8; packed::widened_len(MAX_IN) + 4];
    let (mut n_cases, mut n_mismatches) = (0u32, 0u32);
    // Each shape three times (`Scales`).
    let all_scales = [Scales::Low, Scales::High, Scales::Extreme];
    for (&n_in, scales) in N_INPUTS
        .iter()
        .flat_map(|n| all_scales.iter().map(move |&scales| (n, scales)))
    {
        let high = scales == Scales::High;
        for &n_out in &N_OUTPUTS {
            for w in weights.iter_mut() {
                *w = filler.next() as u8;
            }
            for x in input.iter_mut() {
                *x = filler.next() as i8;
            }
            let channels = bias
                .chunks_exact_mut(4)
                .zip(multipliers.chunks_exact_mut(4))
                .zip(shifts.iter_mut());
            for (o, ((b, m), t)) in channels.enumerate() {
                put_le(b, (filler.next() as i32) >> 14); // within +-2^17
                if scales == Scales::Extreme {
                    const SHIFTS: [u8; 9] = [0, 1, 2, 31, 32, 62, 63, 64, 255];
                    put_le(b, (filler.next() as i32) >> 1);
                    put_le(m, filler.next() as i32);
                    *t = SHIFTS
                        .get(filler.next() as usize % SHIFTS.len())
                        .copied()
                        .unwrap_or(0);
                } else if high {
                    let multiplier = match filler.next() % 4 {
                        0 => 1 << 30,
                        _ => (1 << 30) | (filler.next() >> 2) as i32,
                    };
                    put_le(m, multiplier);
                    *t = match filler.next() % 8 {
                        0 => 46 + (filler.next() % 17) as u8,
                        _ => 33 + (filler.next() % 13) as u8,
                    };
                } else {
                    put_le(m, (1 << 30) | (filler.next() >> 2) as i32);
                    *t = match filler.next() % 4 {
                        // every small shift, most outputs saturating
                        0 => 1 + (filler.next() % 30) as u8,
                        // shifts 24..=32 on a sum within +-512 (the bias cancels the row's
                        // dot product): outputs in range, so the rounding of the general
                        // stage (its carry into the high word) shows in them
                        1 => {
                            let row = weights.get(o * n_in..(o + 1) * n_in).unwrap_or(&[]);
                            let dot: i32 = row
                                .iter()
                                .zip(&input)
                                .map(|(&w, &x)| i32::from(w as i8) * i32::from(x))
                                .sum();
                            put_le(b, ((filler.next() as i32) >> 22).wrapping_sub(dot));
                            24 + (filler.next() % 9) as u8
                        }
                        _ => 31 + (filler.next() % 16) as u8,
                    };
                }
            }
            let zero_point = filler.next() as i8 >> 1;
            let (Some(w), Some(b), Some(m), Some(t), Some(x)) = (
                weights.get(..n_in * n_out),
                bias.get(..4 * n_out),
                multipliers.get(..4 * n_out),
                shifts.get(..n_out),
                input.get(..n_in),
            ) else {
                n_mismatches += 1;
                continue;
            };
            let params = FcParams {
                weights: w,
                bias: b,
                multipliers: m,
                shifts: t,
                output_zero_point: zero_point,
                clamp_min: match (n_out % 2, high) {
                    (0, _) => zero_point,
                    (_, true) => -30,
                    _ => -128,
                },
                clamp_max: if high && n_out % 2 == 1 { 40 } else { 127 },
            };
            let mut expected = [0i8; MAX_OUT];
            let mut got = [0x55i8; MAX_OUT];
            let (Some(expected), Some(got)) = (expected.get_mut(..n_out), got.get_mut(..n_out))
            else {
                n_mismatches += 1;
                continue;
            };
            if reference::fully_connected_i8(&params, x, expected).is_err() {
                n_mismatches += 1;
                continue;
            }
            // The workspace starts one byte past a word boundary.
            let start = workspace.as_ptr().align_offset(4).min(3) + 1;
            let Some(workspace) = workspace.get_mut(start..) else {
                n_mismatches += 1;
                continue;
            };
            // The weights, bias and multipliers at a word boundary, as in a blob at an aligned
            // address, then one byte past it (the Cortex-M0 routine leaves such a layer to the
            // compact kernel, the Armv7E-M blocks leave it to the one-row loop).
            for skip in [0, 1] {
                let (Some(w), Some(b), Some(m)) = (
                    place(w, &mut placed_weights.0, skip, n_in * n_out),
                    place(b, &mut placed_bias.0, skip, 4 * n_out),
                    place(m, &mut placed_multipliers.0, skip, 4 * n_out),
                ) else {
                    n_mismatches += 1;
                    continue;
                };
                let placed = FcParams {
                    weights: w,
                    bias: b,
                    multipliers: m,
                    ..params
                };
                let (cases, mismatches) = check_entries(&placed, x, workspace, expected, got);
                n_cases += cases;
                n_mismatches += mismatches;
            }
        }
    }
    (n_cases, n_mismatches)
}
