//! The training step's matrix products, split across threads by output columns so that
//! every output element is the same sum in the same order whatever the thread count:
//! `--threads N` gives bit-identical weights.
//!
//! Each product is nalgebra's (matrixmultiply's) GEMM applied to a run of output columns.
//! Within GEMM an output element is its own dot product over the shared dimension, blocked
//! and ordered by that dimension only, so computing a subset of the columns gives the same
//! bits for them. nalgebra takes another path (plain loops) when a dimension is at most 5;
//! every run therefore keeps more than that many columns, or the product is not split.
//!
//! A zero-skipping first layer (about 80% of MNIST pixels are zero) was tried and measured
//! slower: without AVX2/FMA code generation (the portable x86-64 target), its sparse
//! multiply-adds ran about 30% behind matrixmultiply's dense FMA kernels on this input.

use nalgebra::{DMatrix, DMatrixViewMut, RealField};

/// Work below this many multiply-adds per thread runs on the calling thread: a thread
/// costs more to start than it would save.
const MIN_WORK_PER_THREAD: usize = 256 * 1024;

/// Fewest output columns per run: nalgebra switches algorithm at 5 and below.
const MIN_COLUMNS_PER_THREAD: usize = 8;

/// How many threads to use for `work` multiply-adds over `n_columns` output columns.
fn threads_for(threads: usize, work: usize, n_columns: usize) -> usize {
    threads
        .min(work / MIN_WORK_PER_THREAD)
        .min(n_columns / MIN_COLUMNS_PER_THREAD)
        .max(1)
}

/// Runs `task(first_column, columns)` on `out` cut into `threads` contiguous runs of
/// whole columns, as even as possible (so each keeps at least the `threads_for` minimum);
/// the calling thread takes the first run.
fn split_columns<T, F>(out: &mut DMatrix<T>, threads: usize, task: F)
where
    T: RealField + Copy,
    F: Fn(usize, DMatrixViewMut<'_, T>) + Sync,
{
    let (n_rows, n_columns) = out.shape();
    if threads <= 1 || n_columns == 0 || n_rows == 0 {
        task(0, out.as_view_mut());
        return;
    }
    let mut runs = Vec::with_capacity(threads);
    let mut rest = out.as_mut_slice();
    let mut first = 0;
    for run_idx in 0..threads {
        let n_run = n_columns / threads + usize::from(run_idx < n_columns % threads);
        let (run, tail) = rest.split_at_mut(n_run * n_rows);
        runs.push((first, DMatrixViewMut::from_slice(run, n_rows, n_run)));
        rest = tail;
        first += n_run;
    }
    std::thread::scope(|scope| {
        let mut runs = runs.into_iter();
        let own = runs.next();
        for (first, view) in runs {
            let task = &task;
            scope.spawn(move || task(first, view));
        }
        if let Some((first, view)) = own {
            task(first, view);
        }
    });
}

/// Resizes `out` only when its shape differs; every element is overwritten by the caller.
fn shape_to<T: RealField + Copy>(out: &mut DMatrix<T>, n_rows: usize, n_cols: usize) {
    if out.shape() != (n_rows, n_cols) {
        *out = DMatrix::zeros(n_rows, n_cols);
    }
}

/// `W x` for every column of `input` (no bias), into `out` (n_outputs x n_samples).
pub fn weights_times<T: RealField + Copy>(
    weights: &DMatrix<T>,
    input: &DMatrix<T>,
    out: &mut DMatrix<T>,
    threads: usize,
) {
    let (n_outputs, n_inputs) = weights.shape();
    let n_samples = input.ncols();
    shape_to(out, n_outputs, n_samples);
    let threads = threads_for(threads, n_outputs * n_inputs * n_samples, n_samples);
    split_columns(out, threads, |first, mut run| {
        let n_run = run.ncols();
        run.gemm(T::one(), weights, &input.columns(first, n_run), T::zero());
    });
}

/// `W^T g` for every column of `grad`, into `out` (n_inputs x n_samples).
pub fn weights_transpose_times<T: RealField + Copy>(
    weights: &DMatrix<T>,
    grad: &DMatrix<T>,
    out: &mut DMatrix<T>,
    threads: usize,
) {
    let (n_outputs, n_inputs) = weights.shape();
    let n_samples = grad.ncols();
    shape_to(out, n_inputs, n_samples);
    let threads = threads_for(threads, n_outputs * n_inputs * n_samples, n_samples);
    // nalgebra computes W^T g column by column (one gemv each), so any split is exact.
    split_columns(out, threads, |first, mut run| {
        let n_run = run.ncols();
        run.gemm_tr(T::one(), weights, &grad.columns(first, n_run), T::zero());
    });
}

/// `g x^T` summed over the samples (the weight gradient), into `out` (n_outputs x n_inputs).
pub fn grad_times_input_transpose<T: RealField + Copy>(
    grad: &DMatrix<T>,
    input: &DMatrix<T>,
    out: &mut DMatrix<T>,
    threads: usize,
) {
    let (n_outputs, n_samples) = grad.shape();
    let n_inputs = input.nrows();
    shape_to(out, n_outputs, n_inputs);
    let input_transposed = input.transpose();
    let threads = threads_for(threads, n_outputs * n_inputs * n_samples, n_inputs);
    split_columns(out, threads, |first, mut run| {
        let n_run = run.ncols();
        run.gemm(
            T::one(),
            grad,
            &input_transposed.columns(first, n_run),
            T::zero(),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A matrix with about `zero_fraction` exact zeros, the rest in (-1, 1).
    fn random_matrix(
        n_rows: usize,
        n_cols: usize,
        zero_fraction: f64,
        rng: &mut Rng,
    ) -> DMatrix<f32> {
        DMatrix::from_fn(n_rows, n_cols, |_, _| {
            if rng.uniform_f64() < zero_fraction {
                0.0
            } else {
                (2.0 * rng.uniform_f64() - 1.0) as f32
            }
        })
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
    fn every_thread_count_gives_the_single_thread_bits_and_nalgebras_products() {
        let mut rng = Rng::new(7);
        // MNIST's first layer and a ragged last batch (37 samples splits unevenly).
        for n_samples in [64, 41, 37] {
            let weights = random_matrix(128, 784, 0.0, &mut rng);
            let input = random_matrix(784, n_samples, 0.8, &mut rng);
            let grad = random_matrix(128, n_samples, 0.5, &mut rng);
            let forward = &weights * &input;
            let backward = weights.tr_mul(&grad);
            let weight_grad = &grad * input.transpose();
            for threads in [1, 2, 3, 5, 8] {
                let mut out = DMatrix::zeros(0, 0);
                weights_times(&weights, &input, &mut out, threads);
                assert_bits_equal(&out, &forward, &format!("W x, {threads} threads"));
                weights_transpose_times(&weights, &grad, &mut out, threads);
                assert_bits_equal(&out, &backward, &format!("W^T g, {threads} threads"));
                grad_times_input_transpose(&grad, &input, &mut out, threads);
                assert_bits_equal(&out, &weight_grad, &format!("g x^T, {threads} threads"));
            }
        }
    }

    #[test]
    fn small_products_stay_on_one_thread() {
        assert_eq!(threads_for(4, 1000, 64), 1);
        assert_eq!(threads_for(4, 10 * MIN_WORK_PER_THREAD, 12), 1);
        assert_eq!(threads_for(2, 10 * MIN_WORK_PER_THREAD, 64), 2);
    }
}
