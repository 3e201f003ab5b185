//! The first layer's zero-skipping kernel, and the sparse rows it reads.
//!
//! About 80% of MNIST's pixels are zero, so the first layer's two products, `W x` for
//! every sample and the weight gradient `dZ X^T`, both mostly multiply by zero. Both are
//! the same operation on a column-major matrix: a weighted sum of some of its columns,
//! `out = sum_i coef_i * M[:, col_i]` ([`combine_columns`]), over the sample's nonzero
//! features (with `M = W`) or over the samples in which a feature is nonzero (with
//! `M = dZ`, the feature's gradient column).
//!
//! Every output element is its own sum, started at 0 and taken in the order of the
//! columns, with a separate multiply and add (no fused multiply-add): the AVX2 build of
//! the kernel, chosen at run time, gives the same bits as the portable one, and a block of
//! rows gives the same bits as the whole matrix. Skipping a zero input changes no bit
//! either, as long as the weights are finite: the sum starts at +0 and can never become
//! -0, and adding a product `w * 0 = ±0` to any other value leaves it unchanged.

/// Rows (samples) in compressed sparse form: row `r`'s nonzero entries are
/// `index[starts[r]..starts[r + 1]]` (ascending) with their `value`s.
#[derive(Debug, Clone)]
pub struct SparseRows {
    starts: Vec<usize>,
    index: Vec<u32>,
    value: Vec<f32>,
}

impl Default for SparseRows {
    fn default() -> Self {
        Self::new()
    }
}

impl SparseRows {
    pub fn new() -> Self {
        Self {
            starts: vec![0],
            index: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Forgets every row, keeping the storage.
    pub fn clear(&mut self) {
        self.starts.clear();
        self.starts.push(0);
        self.index.clear();
        self.value.clear();
    }

    /// Appends a dense row, keeping its nonzero entries.
    pub fn push_dense(&mut self, row: &[f32]) {
        // Every entry is written and the end moves past the nonzero ones: no branch to
        // mispredict on rows whose zeros fall at random (activations after a ReLU).
        let mut end = self.index.len();
        self.index.resize(end + row.len(), 0);
        self.value.resize(end + row.len(), 0.0);
        for (idx, &value) in row.iter().enumerate() {
            self.index[end] = idx as u32;
            self.value[end] = value;
            end += usize::from(value != 0.0);
        }
        self.index.truncate(end);
        self.value.truncate(end);
        self.starts.push(end);
    }

    /// Appends a row given by its entries (indices ascending).
    pub fn push_sparse(&mut self, index: &[u32], value: &[f32]) {
        self.index.extend_from_slice(index);
        self.value.extend_from_slice(value);
        self.starts.push(self.index.len());
    }

    pub fn n_rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// How many entries are stored.
    pub fn n_entries(&self) -> usize {
        self.index.len()
    }

    /// Row `row`'s indices and values.
    pub fn row(&self, row: usize) -> (&[u32], &[f32]) {
        let range = self.starts[row]..self.starts[row + 1];
        (&self.index[range.clone()], &self.value[range])
    }

    /// The transpose, for rows of `n_columns` entries: row `c` of `out` lists the rows of
    /// `self` (ascending) in which column `c` is nonzero.
    pub fn transpose_into(&self, n_columns: usize, out: &mut SparseRows) {
        transpose_rows(self.n_rows(), |row| self.row(row), n_columns, out);
    }
}

/// Asks the processor to start bringing `values` into its caches: a hint, which changes
/// nothing but the time later reads take.
pub fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(unsafe_code)]
        // SAFETY: SSE is part of the x86-64 baseline, so the CPU has the one feature
        // `prefetch_sse` requires.
        unsafe {
            prefetch_sse(values);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse")]
fn prefetch_sse<T>(values: &[T]) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
    let start = values.as_ptr().cast::<i8>();
    // One hint per 64-byte cache line; a prefetch never faults, whatever the address.
    for offset in (0..std::mem::size_of_val(values)).step_by(64) {
        _mm_prefetch::<_MM_HINT_T1>(start.wrapping_add(offset));
    }
}

/// [`SparseRows::transpose_into`] for `n_rows` rows given by `row`.
pub fn transpose_rows<'a>(
    n_rows: usize,
    row: impl Fn(usize) -> (&'a [u32], &'a [f32]),
    n_columns: usize,
    out: &mut SparseRows,
) {
    let SparseRows {
        starts,
        index,
        value,
    } = out;
    starts.clear();
    starts.resize(n_columns + 1, 0);
    let mut n_entries = 0;
    for row_idx in 0..n_rows {
        let (columns, _) = row(row_idx);
        n_entries += columns.len();
        count(columns, &mut starts[1..]);
    }
    for idx in 0..n_columns {
        starts[idx + 1] += starts[idx];
    }
    index.clear();
    index.resize(n_entries, 0);
    value.clear();
    value.resize(n_entries, 0.0);
    // `starts[c]` is the next free slot of column c while filling; rows are visited
    // in order, so each column's rows come out ascending.
    for row_idx in 0..n_rows {
        let (columns, values) = row(row_idx);
        scatter_row(row_idx as u32, columns, values, starts, index, value);
    }
    // Shift the slots back into starts.
    starts.copy_within(0..n_columns, 1);
    starts[0] = 0;
}

/// `counts[c] += 1` for every `c` of `columns`. (Separate functions give the compiler
/// slices it knows are distinct, so it keeps pointers in registers instead of reloading
/// them after every store.)
#[inline(never)]
fn count(columns: &[u32], counts: &mut [usize]) {
    for &column in columns {
        counts[column as usize] += 1;
    }
}

/// Puts row `row`'s entries into their columns' next free slots.
#[inline(never)]
fn scatter_row(
    row: u32,
    columns: &[u32],
    values: &[f32],
    next: &mut [usize],
    index: &mut [u32],
    value: &mut [f32],
) {
    for (&column, &v) in columns.iter().zip(values) {
        let slot = &mut next[column as usize];
        index[*slot] = row;
        value[*slot] = v;
        *slot += 1;
    }
}

/// `out[r] = sum_i coefs[i] * matrix[columns[i] * n_rows + r]` for every `r < out.len()`:
/// a weighted sum of columns of the column-major `matrix` (`n_rows` rows, of which the
/// first `out.len()` are computed), each element summed from 0 in the order of `columns`.
/// The AVX2 build (when the CPU has it) and the portable build give the same bits.
pub fn combine_columns(
    matrix: &[f32],
    n_rows: usize,
    columns: &[u32],
    coefs: &[f32],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU supports AVX2, checked just above; that is the only requirement
        // of a `#[target_feature(enable = "avx2")]` function.
        unsafe {
            combine_columns_avx2(matrix, n_rows, columns, coefs, out);
        }
        return;
    }
    combine_columns_portable(matrix, n_rows, columns, coefs, out);
}

/// [`combine_columns`] compiled for AVX2 (no FMA: the multiply and add stay separate).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn combine_columns_avx2(
    matrix: &[f32],
    n_rows: usize,
    columns: &[u32],
    coefs: &[f32],
    out: &mut [f32],
) {
    combine_columns_body(matrix, n_rows, columns, coefs, out);
}

/// [`combine_columns`] for the build's baseline target (SSE2 on x86-64).
pub fn combine_columns_portable(
    matrix: &[f32],
    n_rows: usize,
    columns: &[u32],
    coefs: &[f32],
    out: &mut [f32],
) {
    combine_columns_body(matrix, n_rows, columns, coefs, out);
}

/// `out[targets[i] * n_rows + r] += coefs[i] * column[r]` for every `i` in order and every
/// `r < column.len()`: adds multiples of one column to some columns of the column-major
/// `out` (`n_rows` rows, of which the first `column.len()` are touched). Summing columns
/// into zeroed `out` this way, one `column` after another, gives every element the sum of
/// [`combine_columns`] in the same order, so the same bits.
pub fn scatter_column(
    column: &[f32],
    out: &mut [f32],
    n_rows: usize,
    targets: &[u32],
    coefs: &[f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe {
            scatter_column_avx2(column, out, n_rows, targets, coefs);
        }
        return;
    }
    scatter_column_portable(column, out, n_rows, targets, coefs);
}

/// [`scatter_column`] compiled for AVX2 (no FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scatter_column_avx2(
    column: &[f32],
    out: &mut [f32],
    n_rows: usize,
    targets: &[u32],
    coefs: &[f32],
) {
    scatter_column_body(column, out, n_rows, targets, coefs);
}

/// [`scatter_column`] for the build's baseline target.
pub fn scatter_column_portable(
    column: &[f32],
    out: &mut [f32],
    n_rows: usize,
    targets: &[u32],
    coefs: &[f32],
) {
    scatter_column_body(column, out, n_rows, targets, coefs);
}

#[inline(always)]
fn scatter_column_body(
    column: &[f32],
    out: &mut [f32],
    n_rows: usize,
    targets: &[u32],
    coefs: &[f32],
) {
    assert!(column.len() <= n_rows, "a longer column than the output's");
    assert_eq!(targets.len(), coefs.len(), "one coefficient per target");
    let n = column.len();
    let mut first = 0;
    while first + BLOCK <= n {
        scatter_block::<BLOCK>(column, out, n_rows, first, targets, coefs);
        first += BLOCK;
    }
    if first + 32 <= n {
        scatter_block::<32>(column, out, n_rows, first, targets, coefs);
        first += 32;
    }
    if first + 16 <= n {
        scatter_block::<16>(column, out, n_rows, first, targets, coefs);
        first += 16;
    }
    if first + 8 <= n {
        scatter_block::<8>(column, out, n_rows, first, targets, coefs);
        first += 8;
    }
    for row in first..n {
        for (&target, &coef) in targets.iter().zip(coefs) {
            out[target as usize * n_rows + row] += coef * column[row];
        }
    }
}

/// Rows `first..first + N` of [`scatter_column`], the column held in registers.
#[inline(always)]
fn scatter_block<const N: usize>(
    column: &[f32],
    out: &mut [f32],
    n_rows: usize,
    first: usize,
    targets: &[u32],
    coefs: &[f32],
) {
    let values: [f32; N] = column[first..first + N]
        .try_into()
        .expect("a block of N rows");
    for (&target, &coef) in targets.iter().zip(coefs) {
        let start = target as usize * n_rows + first;
        let out: &mut [f32; N] = (&mut out[start..start + N])
            .try_into()
            .expect("a block of N rows");
        for (o, &v) in out.iter_mut().zip(&values) {
            *o += coef * v;
        }
    }
}

/// Rows per register block: 64 f32 accumulators are eight AVX2 registers.
const BLOCK: usize = 64;

#[inline(always)]
fn combine_columns_body(
    matrix: &[f32],
    n_rows: usize,
    columns: &[u32],
    coefs: &[f32],
    out: &mut [f32],
) {
    assert!(out.len() <= n_rows, "more outputs than the matrix has rows");
    assert_eq!(columns.len(), coefs.len(), "one coefficient per column");
    let n_out = out.len();
    let mut first = 0;
    while first + BLOCK <= n_out {
        combine_block::<BLOCK>(matrix, n_rows, first, columns, coefs, out);
        first += BLOCK;
    }
    if first + 32 <= n_out {
        combine_block::<32>(matrix, n_rows, first, columns, coefs, out);
        first += 32;
    }
    if first + 16 <= n_out {
        combine_block::<16>(matrix, n_rows, first, columns, coefs, out);
        first += 16;
    }
    if first + 8 <= n_out {
        combine_block::<8>(matrix, n_rows, first, columns, coefs, out);
        first += 8;
    }
    for row in first..n_out {
        let mut sum = 0.0f32;
        for (&column, &coef) in columns.iter().zip(coefs) {
            sum += coef * matrix[column as usize * n_rows + row];
        }
        out[row] = sum;
    }
}

/// Rows `first..first + N` of [`combine_columns`], accumulated in registers.
#[inline(always)]
fn combine_block<const N: usize>(
    matrix: &[f32],
    n_rows: usize,
    first: usize,
    columns: &[u32],
    coefs: &[f32],
    out: &mut [f32],
) {
    let mut acc = [0.0f32; N];
    for (&column, &coef) in columns.iter().zip(coefs) {
        let start = column as usize * n_rows + first;
        let values: &[f32; N] = matrix[start..start + N]
            .try_into()
            .expect("a block of N rows");
        for (a, &v) in acc.iter_mut().zip(values) {
            *a += coef * v;
        }
    }
    out[first..first + N].copy_from_slice(&acc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use nalgebra::DMatrix;

    fn random_matrix(n_rows: usize, n_cols: usize, zeros: f64, rng: &mut Rng) -> DMatrix<f32> {
        DMatrix::from_fn(n_rows, n_cols, |_, _| {
            if rng.uniform_f64() < zeros {
                0.0
            } else {
                (2.0 * rng.uniform_f64() - 1.0) as f32
            }
        })
    }

    /// The signatures of [`combine_columns`] and [`scatter_column`].
    type Combine = fn(&[f32], usize, &[u32], &[f32], &mut [f32]);
    type Scatter = fn(&[f32], &mut [f32], usize, &[u32], &[f32]);

    /// `W x` for every column of `input`, through the sparse rows and the kernel.
    fn sparse_product(
        weights: &DMatrix<f32>,
        input: &DMatrix<f32>,
        kernel: Combine,
    ) -> DMatrix<f32> {
        let mut rows = SparseRows::new();
        for column in input.column_iter() {
            rows.push_dense(column.as_slice());
        }
        let mut out = DMatrix::zeros(weights.nrows(), input.ncols());
        for (sample, mut column) in out.column_iter_mut().enumerate() {
            let (index, value) = rows.row(sample);
            kernel(
                weights.as_slice(),
                weights.nrows(),
                index,
                value,
                column.as_mut_slice(),
            );
        }
        out
    }

    fn assert_bits_equal(actual: &DMatrix<f32>, expected: &DMatrix<f32>, what: &str) {
        assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
        for (idx, (a, e)) in actual.iter().zip(expected.iter()).enumerate() {
            assert_eq!(
                a.to_bits(),
                e.to_bits(),
                "{what}: element {idx}: {a} != {e}"
            );
        }
    }

    #[test]
    fn the_kernel_is_the_ordered_dense_sum_bit_for_bit_and_close_to_nalgebras_product() {
        let mut rng = Rng::new(11);
        // 128 rows: two full blocks; 100 = 64 + 32 + 4 and 13 = 8 + 5 use every block
        // size and the scalar tail.
        for n_outputs in [128, 100, 13, 3] {
            for zeros in [0.8, 0.0] {
                let weights = random_matrix(n_outputs, 784, 0.0, &mut rng);
                let input = random_matrix(784, 37, zeros, &mut rng);
                // The dense product summed over every input in order, zeros included.
                let ordered = DMatrix::from_fn(n_outputs, input.ncols(), |row, sample| {
                    let mut sum = 0.0f32;
                    for feature in 0..784 {
                        sum += input[(feature, sample)] * weights[(row, feature)];
                    }
                    sum
                });
                let what = format!("{n_outputs} outputs, {zeros} zeros");
                let portable = sparse_product(&weights, &input, combine_columns_portable);
                assert_bits_equal(&portable, &ordered, &format!("portable, {what}"));
                let dispatched = sparse_product(&weights, &input, combine_columns);
                assert_bits_equal(&dispatched, &ordered, &format!("dispatched, {what}"));
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let avx2 = sparse_product(&weights, &input, |m, n, c, v, o| {
                        #[allow(unsafe_code)]
                        // SAFETY: AVX2 is present, checked above.
                        unsafe {
                            combine_columns_avx2(m, n, c, v, o)
                        }
                    });
                    assert_bits_equal(&avx2, &ordered, &format!("avx2, {what}"));
                }
                // nalgebra's GEMM sums in another order (and may fuse): close, not equal.
                let gemm = &weights * &input;
                let magnitude = weights.abs() * input.abs();
                for idx in 0..gemm.len() {
                    let tolerance = 1e-5 * magnitude[idx] + 1e-30;
                    assert!(
                        (gemm[idx] - portable[idx]).abs() <= tolerance,
                        "{what}: element {idx}: {} vs nalgebra {}",
                        portable[idx],
                        gemm[idx]
                    );
                }
            }
        }
    }

    #[test]
    fn scattering_columns_gives_the_bits_of_combining_them() {
        let mut rng = Rng::new(13);
        for n_outputs in [128, 100, 13] {
            let weights = random_matrix(n_outputs, 300, 0.0, &mut rng);
            let input = random_matrix(300, 29, 0.8, &mut rng);
            let expected = sparse_product(&weights, &input, combine_columns_portable);
            // By input: for every input feature, the samples in which it is nonzero.
            let mut rows = SparseRows::new();
            for column in input.column_iter() {
                rows.push_dense(column.as_slice());
            }
            let mut by_input = SparseRows::new();
            rows.transpose_into(300, &mut by_input);
            let kernels: [(&str, Scatter); 2] = [
                ("dispatched", scatter_column),
                ("portable", scatter_column_portable),
            ];
            for (name, kernel) in kernels {
                let mut out = DMatrix::zeros(n_outputs, 29);
                for (feature, weights) in weights.column_iter().enumerate() {
                    let (samples, values) = by_input.row(feature);
                    kernel(
                        weights.as_slice(),
                        out.as_mut_slice(),
                        n_outputs,
                        samples,
                        values,
                    );
                }
                assert_bits_equal(&out, &expected, &format!("{name}, {n_outputs} outputs"));
            }
        }
    }

    #[test]
    fn a_block_of_rows_gives_the_bits_of_the_whole_matrix() {
        let mut rng = Rng::new(12);
        let matrix = random_matrix(128, 50, 0.0, &mut rng);
        let columns: Vec<u32> = (0..50).filter(|c| c % 3 != 1).collect();
        let coefs: Vec<f32> = columns
            .iter()
            .map(|_| (2.0 * rng.uniform_f64() - 1.0) as f32)
            .collect();
        let mut whole = vec![0.0; 128];
        combine_columns(matrix.as_slice(), 128, &columns, &coefs, &mut whole);
        // Blocks as a row split gives them: the first rows of a sub-matrix.
        for (first, len) in [(0, 64), (64, 64), (0, 43), (43, 85), (120, 8), (5, 1)] {
            let block = matrix.rows(first, len).clone_owned();
            let mut part = vec![0.0; len];
            combine_columns(block.as_slice(), len, &columns, &coefs, &mut part);
            for (idx, value) in part.iter().enumerate() {
                assert_eq!(
                    value.to_bits(),
                    whole[first + idx].to_bits(),
                    "row {}",
                    first + idx
                );
            }
        }
    }

    #[test]
    fn the_transpose_lists_each_columns_rows_in_order() {
        let mut rows = SparseRows::new();
        rows.push_dense(&[0.0, 1.0, 0.0, 2.0]);
        rows.push_dense(&[0.0, 0.0, 0.0, 0.0]);
        rows.push_dense(&[3.0, 4.0, 0.0, 5.0]);
        assert_eq!(rows.n_rows(), 3);
        assert_eq!(rows.n_entries(), 5);
        let mut columns = SparseRows::new();
        rows.transpose_into(4, &mut columns);
        assert_eq!(columns.n_rows(), 4);
        assert_eq!(columns.row(0), (&[2u32][..], &[3.0f32][..]));
        assert_eq!(columns.row(1), (&[0u32, 2][..], &[1.0f32, 4.0][..]));
        assert_eq!(columns.row(2), (&[][..], &[][..]));
        assert_eq!(columns.row(3), (&[0u32, 2][..], &[2.0f32, 5.0][..]));
    }
}
