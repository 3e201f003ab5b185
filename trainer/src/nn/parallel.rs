//! The training step: one mini-batch's forward pass, loss, backward pass and update, with
//! the first layer split by units (rows) across `--threads` threads that live as long as
//! the training run (a [`TrainingStep`]).
//!
//! The first layer does almost all the work when the input is wide (784 pixels into 128
//! units, then 128 into 10), and it is the layer whose input is mostly zeros (about 80% of
//! MNIST's pixels). Each thread holds a contiguous block of its units: their weights,
//! biases and optimiser state, and their part of the batch's pre-activations and
//! activations. The batch comes by input: for every input feature, the samples in which it
//! is nonzero (the training set is kept in sparse form when at most half its values are
//! nonzero). A mini-batch is two phases on every thread, so two hand-offs and two waits:
//!
//! 1. forward: each thread adds, input by input, the input's weight column times its
//!    nonzero values into its units' `z` ([`super::sparse::scatter_column`]), then the
//!    bias and the activation;
//! 2. the calling thread gathers the first layer's activations and runs the later layers,
//!    the loss, their backward pass and their update (the later layers are small and stay
//!    on this thread; see `Later`), down to dL/da of the first layer. Meanwhile the
//!    first worker builds the next batch (the transpose into samples by input) in the
//!    second batch buffer; with one thread the next batch's rows are only prefetched;
//! 3. backward: each thread takes its units' rows of that gradient through the
//!    activation, then, input by input, computes the weight-gradient column from the
//!    samples in which that input is nonzero ([`super::sparse::combine_columns`]) and
//!    applies the optimiser to it at once (plain SGD skips inputs that are zero in the
//!    whole batch: their gradient is zero). The first layer's input gradient is never
//!    needed.
//!
//! Every value a thread computes is a sum over inputs or samples in their order, and the
//! kernels give a block of rows the bits of the whole matrix, so the result does not
//! depend on the thread count: `--threads N` gives bit-identical weights. The kernels and
//! the update are built for AVX2 when the CPU has it, with the portable build's bits. The
//! threads wait for a phase by spinning briefly and then sleeping on a condition variable,
//! so between epochs they use no CPU.
//!
//! The products are not nalgebra's: matrixmultiply's GEMM cannot skip zeros, and at this
//! size its packing and the per-product thread start-up that splitting it needed cost
//! more than the arithmetic. [`super::Mlp::backward`] stays the plain reference, which the
//! finite-difference tests check and this module's tests compare with.

use super::optim::{update, OptimizerState, ParamState, Rule};
use super::sparse::{combine_columns, prefetch, scatter_column, transpose_rows, SparseRows};
use super::{Activation, BatchTargets, Dense, Loss, Mlp};
use nalgebra::DMatrix;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Fewest first-layer units per thread: below this, a thread's share of the work is not
/// worth waking it for.
const MIN_UNITS_PER_THREAD: usize = 16;

/// How long a waiting thread spins (and yields) before it sleeps. A mini-batch's phases are tens of
/// microseconds apart; the gaps between epochs (evaluation, checkpoints) are far longer.
const SPIN: Duration = Duration::from_micros(200);

/// How many times a waiting thread checks before it starts yielding its core.
const PURE_SPINS: u32 = 256;

/// The whole training set in sparse form is kept when at most this fraction of its
/// features are nonzero; otherwise each batch's rows are read from the dense features.
const MAX_SPARSE_DENSITY: f64 = 0.5;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A block of a layer's units (rows): all of a later layer, or one thread's share of the
/// first layer.
#[derive(Debug)]
struct Block {
    /// The block's first unit in the layer.
    first_unit: usize,
    n_units: usize,
    activation: Activation,
    /// n_units x n_inputs, column-major: rows `first_unit..` of the layer's weights.
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// The optimiser state of `weights` and `bias`, in the same layout (`*_second` is
    /// empty for SGD).
    weight_first: Vec<f32>,
    weight_second: Vec<f32>,
    bias_first: Vec<f32>,
    bias_second: Vec<f32>,
    /// Pre-activations, activations and dL/dz of the batch, n_units x n_samples.
    z: Vec<f32>,
    a: Vec<f32>,
    dz: Vec<f32>,
    /// One column of the weight gradient, and a column of zeros.
    column: Vec<f32>,
    zeros: Vec<f32>,
}

/// Units per chunk of a block's passes: a chunk's 64 samples of z or dz take 16 KiB, half
/// the first-level data cache.
const CHUNK: usize = 64;

/// `0..n_units` in runs of [`CHUNK`].
fn chunks(n_units: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n_units)
        .step_by(CHUNK)
        .map(move |start| start..(start + CHUNK).min(n_units))
}

/// `values[range]`, or the empty slice when `values` is empty (SGD's second moment).
fn part(values: &mut [f32], range: std::ops::Range<usize>) -> &mut [f32] {
    if values.is_empty() {
        values
    } else {
        &mut values[range]
    }
}

/// The rows `units` of the column-major `values` (`n_units` rows), column-major;
/// empty for empty `values`.
fn rows_of(values: &[f32], n_units: usize, units: std::ops::Range<usize>) -> Vec<f32> {
    if values.is_empty() {
        return Vec::new();
    }
    values
        .chunks_exact(n_units)
        .flat_map(|column| column[units.clone()].iter().copied())
        .collect()
}

/// Writes `rows` (column-major) into the rows `units` of `values` (`n_units` rows).
fn write_rows(values: &mut [f32], n_units: usize, units: std::ops::Range<usize>, rows: &[f32]) {
    if values.is_empty() {
        return;
    }
    for (column, block) in values
        .chunks_exact_mut(n_units)
        .zip(rows.chunks_exact(units.len()))
    {
        column[units.clone()].copy_from_slice(block);
    }
}

impl Block {
    /// Units `units` of `layer` with their optimiser state (`weight_state`, `bias_state`).
    fn new(
        layer: &Dense<f32>,
        units: std::ops::Range<usize>,
        weight_state: &ParamState,
        bias_state: &ParamState,
    ) -> Self {
        let n_layer_units = layer.n_outputs();
        Self {
            first_unit: units.start,
            n_units: units.len(),
            activation: layer.activation,
            weights: rows_of(layer.weights.as_slice(), n_layer_units, units.clone()),
            bias: layer.bias.as_slice()[units.clone()].to_vec(),
            weight_first: rows_of(&weight_state.first, n_layer_units, units.clone()),
            weight_second: rows_of(&weight_state.second, n_layer_units, units.clone()),
            bias_first: bias_state.first[units.clone()].to_vec(),
            bias_second: if bias_state.second.is_empty() {
                Vec::new()
            } else {
                bias_state.second[units].to_vec()
            },
            z: Vec::new(),
            a: Vec::new(),
            dz: Vec::new(),
            column: Vec::new(),
            zeros: Vec::new(),
        }
    }

    /// Writes the block back into `layer` and its optimiser state.
    fn store(
        &self,
        layer: &mut Dense<f32>,
        weight_state: &mut ParamState,
        bias_state: &mut ParamState,
    ) {
        let n_layer_units = layer.n_outputs();
        let units = self.first_unit..self.first_unit + self.n_units;
        write_rows(
            layer.weights.as_mut_slice(),
            n_layer_units,
            units.clone(),
            &self.weights,
        );
        write_rows(
            &mut weight_state.first,
            n_layer_units,
            units.clone(),
            &self.weight_first,
        );
        write_rows(
            &mut weight_state.second,
            n_layer_units,
            units.clone(),
            &self.weight_second,
        );
        layer.bias.as_mut_slice()[units.clone()].copy_from_slice(&self.bias);
        bias_state.first[units.clone()].copy_from_slice(&self.bias_first);
        if !bias_state.second.is_empty() {
            bias_state.second[units].copy_from_slice(&self.bias_second);
        }
    }

    /// `z = W x + b` and `a = activation(z)` for the `n_samples` samples given by input
    /// (`columns`: for every input, the samples in which it is nonzero), one input at a
    /// time over the zeroed `z`: the block of `z` stays in the first cache level, and
    /// every element is summed over the inputs in order.
    fn forward(&mut self, n_samples: usize, columns: &SparseRows) {
        let n_units = self.n_units;
        self.z.clear();
        self.z.resize(n_units * n_samples, 0.0);
        // A chunk of units at a time, so that its part of z stays in the first cache level
        // over all the inputs.
        for chunk in chunks(n_units) {
            for (input, weights) in self.weights.chunks_exact(n_units).enumerate() {
                let (samples, values) = columns.row(input);
                scatter_column(
                    &weights[chunk.clone()],
                    &mut self.z[chunk.start..],
                    n_units,
                    samples,
                    values,
                );
            }
        }
        for z in self.z.chunks_exact_mut(n_units) {
            for (z, &b) in z.iter_mut().zip(&self.bias) {
                *z += b;
            }
        }
        self.a.resize(n_units * n_samples, 0.0);
        self.a.copy_from_slice(&self.z);
        self.activation.forward_slice(&mut self.a);
    }

    /// dL/dz from dL/da of the whole layer (`upstream`: its rows are the layer's units).
    fn take_upstream(&mut self, upstream: &DMatrix<f32>) {
        let units = self.first_unit..self.first_unit + self.n_units;
        self.dz.clear();
        for sample_grad in upstream.column_iter() {
            self.dz
                .extend_from_slice(&sample_grad.as_slice()[units.clone()]);
        }
        self.activation
            .backward_slice(&self.z, &self.a, &mut self.dz);
    }

    /// Applies one optimiser step from dz and the batch's input by column (`columns`: for
    /// every input, the samples in which it is nonzero).
    fn update(&mut self, columns: &SparseRows, rule: &Rule) {
        let n_units = self.n_units;
        // The bias gradient sums the samples in order.
        self.column.clear();
        self.column.resize(n_units, 0.0);
        for sample_dz in self.dz.chunks_exact(n_units) {
            for (g, &d) in self.column.iter_mut().zip(sample_dz) {
                *g += d;
            }
        }
        update(
            rule,
            false,
            &mut self.bias,
            &self.column,
            &mut self.bias_first,
            &mut self.bias_second,
        );

        let skip_zero_columns = rule.config().zero_gradient_is_no_op();
        self.zeros.resize(n_units, 0.0);
        // A chunk of units at a time, so that its part of dz stays in the first cache level.
        for chunk in chunks(n_units) {
            let column = &mut self.column[..chunk.len()];
            for input in 0..columns.n_rows() {
                let (samples, values) = columns.row(input);
                let range = input * n_units + chunk.start..input * n_units + chunk.end;
                let grad = if samples.is_empty() {
                    if skip_zero_columns {
                        continue;
                    }
                    &self.zeros[..chunk.len()]
                } else {
                    combine_columns(&self.dz[chunk.start..], n_units, samples, values, column);
                    &*column
                };
                update(
                    rule,
                    true,
                    &mut self.weights[range.clone()],
                    grad,
                    &mut self.weight_first[range.clone()],
                    part(&mut self.weight_second, range),
                );
            }
        }
    }
}

/// The batch as the first layer reads it.
#[derive(Debug, Default)]
struct Batch {
    /// The samples' rows in the training set.
    ids: Vec<usize>,
    /// The samples, when the training set is not kept in sparse form.
    local: SparseRows,
    columns: SparseRows,
}

impl Batch {
    fn n_samples(&self) -> usize {
        self.ids.len()
    }

    /// Builds `columns` from the samples `ids` of `sparse`, or from `local` without it.
    fn transpose(&mut self, sparse: Option<&SparseRows>, n_inputs: usize) {
        let Batch {
            ids,
            local,
            columns,
        } = self;
        let (ids, local) = (&*ids, &*local);
        let row = |sample: usize| match sparse {
            Some(rows) => rows.row(ids[sample]),
            None => local.row(sample),
        };
        transpose_rows(ids.len(), row, n_inputs, columns);
    }
}

/// What the threads do next; the `usize` is the batch buffer.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Forward(usize),
    Backward(Rule, usize),
    /// The first worker builds the next batch, whose samples are already set, while the
    /// calling thread runs the later layers.
    Load(usize),
    Exit,
}

/// Hands phases from the calling thread to the workers and tells it when they are done.
#[derive(Debug)]
struct Signal {
    /// Bumped for every phase.
    generation: AtomicU64,
    /// The current phase and its generation.
    phase: Mutex<(u64, Phase)>,
    /// For every block, the last generation whose task for it someone took: a worker's own
    /// block, or the calling thread when that worker has not started it (a busy machine may
    /// leave a worker without a core; its block is then run by the calling thread, which
    /// changes who computes it, not the result).
    claims: Vec<AtomicU64>,
    /// Tasks done in the current phase.
    done: AtomicUsize,
    /// Threads asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    panicked: AtomicBool,
}

impl Signal {
    /// Takes block `block`'s task of generation `generation`, unless someone has.
    fn claim(&self, block: usize, generation: u64) -> bool {
        self.claims[block].fetch_max(generation, SeqCst) < generation
    }

    /// Returns once `ready()` holds: spins for up to [`SPIN`], then sleeps until notified.
    fn wait_for(&self, ready: impl Fn() -> bool) {
        let started = Instant::now();
        let mut spins = 0u32;
        while !ready() {
            spins = spins.wrapping_add(1);
            if spins < PURE_SPINS {
                std::hint::spin_loop();
                continue;
            }
            // Then offer the core to any other runnable thread: on a busy machine that may
            // be the very thread this one waits for.
            std::thread::yield_now();
            if started.elapsed() > SPIN {
                let mut guard = lock(&self.lock);
                // With `notify`'s order (state change, then `sleepers` read, both SeqCst),
                // either it sees this sleeper or this check sees the change.
                self.sleepers.fetch_add(1, SeqCst);
                while !ready() {
                    guard = self
                        .wake
                        .wait(guard)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                self.sleepers.fetch_sub(1, SeqCst);
                return;
            }
        }
    }

    /// Wakes sleeping threads after a state change (made with SeqCst).
    fn notify(&self) {
        if self.sleepers.load(SeqCst) > 0 {
            drop(lock(&self.lock));
            self.wake.notify_all();
        }
    }
}

#[derive(Debug)]
struct Shared {
    /// The first layer's blocks, one per thread.
    blocks: Vec<Mutex<Block>>,
    /// The training set in sparse form, when it is sparse enough.
    sparse_features: Option<SparseRows>,
    /// Two batches: the current one, and the next one a worker may build meanwhile.
    batches: [RwLock<Batch>; 2],
    n_inputs: usize,
    /// dL/da of the first layer, n_units x n_samples, written by the calling thread.
    upstream: RwLock<DMatrix<f32>>,
    signal: Signal,
}

impl Shared {
    fn run(&self, block_idx: usize, phase: Phase) {
        let read = |buffer: usize| {
            self.batches[buffer]
                .read()
                .unwrap_or_else(PoisonError::into_inner)
        };
        match phase {
            Phase::Forward(buffer) => {
                let batch = read(buffer);
                lock(&self.blocks[block_idx]).forward(batch.n_samples(), &batch.columns);
            }
            Phase::Backward(rule, buffer) => {
                let batch = read(buffer);
                let mut block = lock(&self.blocks[block_idx]);
                block.take_upstream(&self.upstream.read().unwrap_or_else(PoisonError::into_inner));
                block.update(&batch.columns, &rule);
            }
            Phase::Load(buffer) => {
                if block_idx == 1 {
                    self.batches[buffer]
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .transpose(self.sparse_features.as_ref(), self.n_inputs);
                }
            }
            Phase::Exit => {}
        }
    }
}

/// Marks a worker's panic so the calling thread stops waiting for it.
struct PanicFlag<'a>(&'a Signal);

impl Drop for PanicFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.panicked.store(true, SeqCst);
            self.0.notify();
        }
    }
}

fn worker(shared: Arc<Shared>, block_idx: usize) {
    let signal = &shared.signal;
    let _flag = PanicFlag(signal);
    let mut seen = 0;
    loop {
        signal.wait_for(|| signal.generation.load(SeqCst) != seen);
        let (generation, phase) = *lock(&signal.phase);
        seen = generation;
        match phase {
            Phase::Exit => return,
            // Only the first worker builds batches.
            Phase::Load(_) if block_idx != 1 => continue,
            _ => {}
        }
        if signal.claim(block_idx, generation) {
            shared.run(block_idx, phase);
            signal.done.fetch_add(1, SeqCst);
            signal.notify();
        }
    }
}

/// A later layer (after the first), run on the calling thread. Its products are small (128
/// inputs, 10 outputs for MNIST), so each is arranged for long runs of the kernel: the
/// weights are held transposed (column `o` is unit `o`'s weights), and so is the input,
/// so that a unit's pre-activations for the whole batch are one weighted sum of the input's
/// columns.
#[derive(Debug)]
struct Later {
    n_inputs: usize,
    n_units: usize,
    activation: Activation,
    /// W^T, n_inputs x n_units, column-major; the optimiser state in the same layout.
    weights: Vec<f32>,
    bias: Vec<f32>,
    weight_first: Vec<f32>,
    weight_second: Vec<f32>,
    bias_first: Vec<f32>,
    bias_second: Vec<f32>,
    /// The batch's input (n_inputs x n_samples) and its transpose.
    input: Vec<f32>,
    input_t: Vec<f32>,
    /// z, a and dL/dz transposed (n_samples x n_units), and dL/dz (n_units x n_samples).
    z_t: Vec<f32>,
    a_t: Vec<f32>,
    dz_t: Vec<f32>,
    dz: Vec<f32>,
    /// 0, 1, 2, ...: every column.
    all: Vec<u32>,
    index: Vec<u32>,
    value: Vec<f32>,
    column: Vec<f32>,
}

/// `matrix` (`n_rows` x `n_cols`, column-major) transposed into `out`.
fn transpose(matrix: &[f32], n_rows: usize, n_cols: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(n_rows * n_cols, 0.0);
    for (col, values) in matrix.chunks_exact(n_rows).enumerate() {
        for (row, &v) in values.iter().enumerate() {
            out[row * n_cols + col] = v;
        }
    }
}

/// The entries of `values` that are not zero, as indices and values.
fn nonzero(values: &[f32], index: &mut Vec<u32>, value: &mut Vec<f32>) {
    index.clear();
    value.clear();
    for (idx, &v) in values.iter().enumerate() {
        if v != 0.0 {
            index.push(idx as u32);
            value.push(v);
        }
    }
}

impl Later {
    fn new(layer: &Dense<f32>, weight_state: &ParamState, bias_state: &ParamState) -> Self {
        let (n_units, n_inputs) = layer.weights.shape();
        let transposed = |values: &[f32]| {
            let mut out = Vec::new();
            if !values.is_empty() {
                transpose(values, n_units, n_inputs, &mut out);
            }
            out
        };
        Self {
            n_inputs,
            n_units,
            activation: layer.activation,
            weights: transposed(layer.weights.as_slice()),
            bias: layer.bias.as_slice().to_vec(),
            weight_first: transposed(&weight_state.first),
            weight_second: transposed(&weight_state.second),
            bias_first: bias_state.first.clone(),
            bias_second: bias_state.second.clone(),
            input: Vec::new(),
            input_t: Vec::new(),
            z_t: Vec::new(),
            a_t: Vec::new(),
            dz_t: Vec::new(),
            dz: Vec::new(),
            all: Vec::new(),
            index: Vec::new(),
            value: Vec::new(),
            column: Vec::new(),
        }
    }

    fn store(
        &self,
        layer: &mut Dense<f32>,
        weight_state: &mut ParamState,
        bias_state: &mut ParamState,
    ) {
        let mut out = Vec::new();
        let mut untranspose = |values: &[f32], into: &mut [f32]| {
            if !values.is_empty() {
                transpose(values, self.n_inputs, self.n_units, &mut out);
                into.copy_from_slice(&out);
            }
        };
        untranspose(&self.weights, layer.weights.as_mut_slice());
        untranspose(&self.weight_first, &mut weight_state.first);
        untranspose(&self.weight_second, &mut weight_state.second);
        layer.bias.as_mut_slice().copy_from_slice(&self.bias);
        bias_state.first.copy_from_slice(&self.bias_first);
        bias_state.second.copy_from_slice(&self.bias_second);
    }

    /// The forward pass of `input` (n_inputs x n_samples); the activations into `out`
    /// (n_units x n_samples).
    fn forward(&mut self, input: &DMatrix<f32>, out: &mut DMatrix<f32>) {
        let n_samples = input.ncols();
        self.input.clear();
        self.input.extend_from_slice(input.as_slice());
        transpose(&self.input, self.n_inputs, n_samples, &mut self.input_t);
        if self.all.len() < self.n_inputs.max(n_samples) {
            self.all = (0..self.n_inputs.max(n_samples) as u32).collect();
        }
        self.z_t.resize(n_samples * self.n_units, 0.0);
        for ((z, weights), &b) in self
            .z_t
            .chunks_exact_mut(n_samples.max(1))
            .zip(self.weights.chunks_exact(self.n_inputs.max(1)))
            .zip(&self.bias)
        {
            combine_columns(
                &self.input_t,
                n_samples,
                &self.all[..self.n_inputs],
                weights,
                z,
            );
            for z in z.iter_mut() {
                *z += b;
            }
        }
        self.a_t.clear();
        self.a_t.extend_from_slice(&self.z_t);
        self.activation.forward_slice(&mut self.a_t);
        shape(out, self.n_units, n_samples);
        transpose(&self.a_t, n_samples, self.n_units, &mut self.column);
        out.copy_from_slice(&self.column);
    }

    /// Takes dL/da (`grad`, n_units x n_samples) back to dL/d input (into `input_grad`,
    /// with the weights before the update), then applies one optimiser step.
    fn backward(&mut self, grad: &DMatrix<f32>, input_grad: &mut DMatrix<f32>, rule: &Rule) {
        let (n_inputs, n_units) = (self.n_inputs, self.n_units);
        let n_samples = grad.ncols();
        transpose(grad.as_slice(), n_units, n_samples, &mut self.dz_t);
        self.activation
            .backward_slice(&self.z_t, &self.a_t, &mut self.dz_t);
        transpose(&self.dz_t, n_samples, n_units, &mut self.dz);

        shape(input_grad, n_inputs, n_samples);
        for (sample_dz, mut out) in self
            .dz
            .chunks_exact(n_units)
            .zip(input_grad.column_iter_mut())
        {
            nonzero(sample_dz, &mut self.index, &mut self.value);
            combine_columns(
                &self.weights,
                n_inputs,
                &self.index,
                &self.value,
                out.as_mut_slice(),
            );
        }

        // The bias gradient sums the samples in order.
        self.column.clear();
        self.column
            .extend(self.dz_t.chunks_exact(n_samples.max(1)).map(|unit_dz| {
                let mut sum = 0.0f32;
                for &d in unit_dz {
                    sum += d;
                }
                sum
            }));
        update(
            rule,
            false,
            &mut self.bias,
            &self.column,
            &mut self.bias_first,
            &mut self.bias_second,
        );
        self.column.resize(n_inputs, 0.0);
        for (unit, unit_dz) in self.dz_t.chunks_exact(n_samples.max(1)).enumerate() {
            nonzero(unit_dz, &mut self.index, &mut self.value);
            combine_columns(
                &self.input,
                n_inputs,
                &self.index,
                &self.value,
                &mut self.column,
            );
            let range = unit * n_inputs..(unit + 1) * n_inputs;
            update(
                rule,
                true,
                &mut self.weights[range.clone()],
                &self.column,
                &mut self.weight_first[range.clone()],
                part(&mut self.weight_second, range),
            );
        }
    }
}

/// Runs mini-batches for [`crate::train::train`]. While it exists, the network's weights,
/// biases and optimiser state live in it: `mlp` and the optimiser state it was made from
/// are stale until [`TrainingStep::store`] writes them back.
#[derive(Debug)]
pub struct TrainingStep {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// The buffer of the current batch.
    current: usize,
    /// The other buffer holds the next batch's samples, to be built by a worker.
    next_set: bool,
    /// A worker is building the next batch.
    loading: bool,
    /// The other buffer holds the built next batch.
    next_ready: bool,
    n_inputs: usize,
    n_units: usize,
    later: Vec<Later>,
    /// The first layer's activations, gathered: n_units x n_samples.
    hidden: DMatrix<f32>,
    /// The network's output for the batch.
    output: DMatrix<f32>,
    /// dL/d(output) of the batch, then the running gradient of the backward pass.
    grad: DMatrix<f32>,
    input_grad: DMatrix<f32>,
}

impl TrainingStep {
    /// Takes the network and its optimiser state, with the first layer split into up to
    /// `threads` blocks of units (one per thread; fewer when the layer is narrow).
    /// `features` is the normalised training set, row-major, that batches come from.
    pub fn new(
        mlp: &Mlp<f32>,
        optimizer: &OptimizerState,
        threads: usize,
        features: &[f32],
    ) -> Self {
        Self::with_density(mlp, optimizer, threads, features, MAX_SPARSE_DENSITY)
    }

    /// [`TrainingStep::new`], keeping the training set in sparse form when at most
    /// `max_sparse_density` of its features are nonzero.
    fn with_density(
        mlp: &Mlp<f32>,
        optimizer: &OptimizerState,
        threads: usize,
        features: &[f32],
        max_sparse_density: f64,
    ) -> Self {
        let layer = &mlp.layers[0];
        let (n_units, n_inputs) = layer.weights.shape();
        let n_blocks = threads.min(n_units / MIN_UNITS_PER_THREAD).max(1);
        // Blocks of a multiple of 8 units where possible (whole vector registers).
        let per_block = n_units.div_ceil(n_blocks).next_multiple_of(8);
        let mut blocks = Vec::with_capacity(n_blocks);
        let mut first_unit = 0;
        while first_unit < n_units {
            let units = first_unit..(first_unit + per_block).min(n_units);
            first_unit = units.end;
            blocks.push(Mutex::new(Block::new(
                layer,
                units,
                &optimizer.params[0],
                &optimizer.params[1],
            )));
        }
        let later = mlp
            .layers
            .iter()
            .enumerate()
            .skip(1)
            .map(|(layer_idx, layer)| {
                Later::new(
                    layer,
                    &optimizer.params[2 * layer_idx],
                    &optimizer.params[2 * layer_idx + 1],
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            blocks,
            sparse_features: sparse_form(features, n_inputs, max_sparse_density),
            batches: [RwLock::new(Batch::default()), RwLock::new(Batch::default())],
            n_inputs,
            upstream: RwLock::new(DMatrix::zeros(0, 0)),
            signal: Signal {
                generation: AtomicU64::new(0),
                phase: Mutex::new((0, Phase::Exit)),
                claims: (0..n_blocks).map(|_| AtomicU64::new(0)).collect(),
                done: AtomicUsize::new(0),
                sleepers: AtomicUsize::new(0),
                lock: Mutex::new(()),
                wake: Condvar::new(),
                panicked: AtomicBool::new(false),
            },
        });
        let workers = (1..shared.blocks.len())
            .map(|block_idx| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("kiln-train-{block_idx}"))
                    .spawn(move || worker(shared, block_idx))
                    .expect("cannot start a training thread")
            })
            .collect();
        Self {
            shared,
            workers,
            current: 0,
            next_set: false,
            loading: false,
            next_ready: false,
            n_inputs,
            n_units,
            later,
            hidden: DMatrix::zeros(0, 0),
            output: DMatrix::zeros(0, 0),
            grad: DMatrix::zeros(0, 0),
            input_grad: DMatrix::zeros(0, 0),
        }
    }

    /// How many threads run the first layer.
    pub fn n_threads(&self) -> usize {
        self.shared.blocks.len()
    }

    /// Writes the weights, biases and optimiser state back into `mlp` and `optimizer`
    /// (the step count is kept there already).
    pub fn store(&self, mlp: &mut Mlp<f32>, optimizer: &mut OptimizerState) {
        let (first, rest) = mlp.layers.split_at_mut(1);
        let (first_state, rest_state) = optimizer.params.split_at_mut(2);
        let (weight_state, bias_state) = first_state.split_at_mut(1);
        for block in &self.shared.blocks {
            lock(block).store(&mut first[0], &mut weight_state[0], &mut bias_state[0]);
        }
        for ((later, layer), state) in self
            .later
            .iter()
            .zip(rest.iter_mut())
            .zip(rest_state.chunks_exact_mut(2))
        {
            let (weight_state, bias_state) = state.split_at_mut(1);
            later.store(layer, &mut weight_state[0], &mut bias_state[0]);
        }
    }

    /// Makes the rows `rows` of `features` (row-major, as passed to `new`) the batch.
    pub fn load_batch(&mut self, features: &[f32], rows: &[usize]) {
        self.finish_loading();
        let next = 1 - self.current;
        if self.next_ready
            && self.shared.batches[next]
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .ids
                == rows
        {
            self.current = next;
            self.next_ready = false;
            return;
        }
        self.next_ready = false;
        self.next_set = false;
        let n_inputs = self.n_inputs;
        let mut batch = self.shared.batches[self.current]
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        batch.ids.clear();
        batch.ids.extend_from_slice(rows);
        batch.local.clear();
        let sparse = self.shared.sparse_features.as_ref();
        if sparse.is_none() {
            for &row in rows {
                batch
                    .local
                    .push_dense(&features[row * n_inputs..(row + 1) * n_inputs]);
            }
        }
        batch.transpose(sparse, n_inputs);
    }

    /// Names the rows of the batch after the current one. With more than one thread (and
    /// the training set in sparse form), a worker builds that batch while the calling
    /// thread runs the later layers of this one; otherwise the rows are only prefetched
    /// into the caches (they are scattered over a training set far larger than them). The
    /// next [`TrainingStep::load_batch`] uses the built batch if it asks for these rows.
    /// Either way nothing changes but the time.
    pub fn next_batch(&mut self, rows: &[usize]) {
        let Some(sparse) = &self.shared.sparse_features else {
            return;
        };
        for &row in rows {
            let (index, value) = sparse.row(row);
            prefetch(index);
            prefetch(value);
        }
        if self.workers.is_empty() {
            return;
        }
        self.finish_loading();
        let mut batch = self.shared.batches[1 - self.current]
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        batch.ids.clear();
        batch.ids.extend_from_slice(rows);
        self.next_set = true;
        self.next_ready = false;
    }

    /// Waits for a worker building the next batch.
    fn finish_loading(&mut self) {
        if self.loading {
            let (generation, phase) = *lock(&self.shared.signal.phase);
            self.take_tasks(generation, phase);
            self.wait_for_tasks(1);
            self.loading = false;
            self.next_ready = true;
        }
    }

    /// Runs the tasks of `phase` (generation `generation`) that no worker has taken.
    fn take_tasks(&self, generation: u64, phase: Phase) {
        let signal = &self.shared.signal;
        let blocks = match phase {
            Phase::Load(_) => 1..2,
            _ => 1..self.shared.blocks.len(),
        };
        for block in blocks {
            if signal.claim(block, generation) {
                self.shared.run(block, phase);
                signal.done.fetch_add(1, SeqCst);
            }
        }
    }

    /// Runs `phase` on every block of the first layer, the calling thread taking the first.
    fn run_phase(&mut self, phase: Phase) {
        self.finish_loading();
        if self.workers.is_empty() {
            self.shared.run(0, phase);
            return;
        }
        let generation = self.publish(phase);
        self.shared.run(0, phase);
        self.take_tasks(generation, phase);
        self.wait_for_tasks(self.workers.len());
    }

    /// Hands `phase` to the workers; returns its generation.
    fn publish(&self, phase: Phase) -> u64 {
        let signal = &self.shared.signal;
        let mut current = lock(&signal.phase);
        let generation = current.0 + 1;
        *current = (generation, phase);
        signal.done.store(0, SeqCst);
        signal.generation.store(generation, SeqCst);
        drop(current);
        signal.notify();
        generation
    }

    /// Waits until `n_tasks` tasks of the phase last published are done.
    fn wait_for_tasks(&self, n_tasks: usize) {
        let signal = &self.shared.signal;
        signal.wait_for(|| signal.done.load(SeqCst) == n_tasks || signal.panicked.load(SeqCst));
        assert!(!signal.panicked.load(SeqCst), "a training thread panicked");
    }

    /// The forward pass of the loaded batch and its loss (the mean over the batch), keeping
    /// what [`TrainingStep::backward`] needs.
    pub fn forward(&mut self, loss: Loss, targets: BatchTargets<'_>) -> f32 {
        self.run_phase(Phase::Forward(self.current));
        if self.next_set {
            self.publish(Phase::Load(1 - self.current));
            self.next_set = false;
            self.loading = true;
        }
        let n_samples = self.shared.batches[self.current]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .n_samples();
        shape(&mut self.hidden, self.n_units, n_samples);
        for block in &self.shared.blocks {
            let block = lock(block);
            let units = block.first_unit..block.first_unit + block.n_units;
            for (mut column, values) in self
                .hidden
                .column_iter_mut()
                .zip(block.a.chunks_exact(block.n_units))
            {
                column.as_mut_slice()[units.clone()].copy_from_slice(values);
            }
        }
        for (later_idx, later) in self.later.iter_mut().enumerate() {
            if later_idx == 0 {
                later.forward(&self.hidden, &mut self.output);
            } else {
                let input = std::mem::replace(&mut self.output, DMatrix::zeros(0, 0));
                later.forward(&input, &mut self.output);
            }
        }
        let output = if self.later.is_empty() {
            &self.hidden
        } else {
            &self.output
        };
        loss.value_and_gradient(output, targets, &mut self.grad)
    }

    /// The network's output for the batch after [`TrainingStep::forward`].
    pub fn output(&self) -> &DMatrix<f32> {
        if self.later.is_empty() {
            &self.hidden
        } else {
            &self.output
        }
    }

    /// Backpropagates the loss of the last [`TrainingStep::forward`] and applies one
    /// optimiser step with learning rate `lr` to every layer.
    pub fn backward(&mut self, optimizer: &mut OptimizerState, lr: f32) {
        optimizer.step += 1;
        let rule = Rule::new(optimizer.config, optimizer.step, lr);
        for later in self.later.iter_mut().rev() {
            later.backward(&self.grad, &mut self.input_grad, &rule);
            std::mem::swap(&mut self.grad, &mut self.input_grad);
        }
        std::mem::swap(
            &mut *self
                .shared
                .upstream
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            &mut self.grad,
        );
        self.run_phase(Phase::Backward(rule, self.current));
    }
}

impl Drop for TrainingStep {
    fn drop(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        if self.loading {
            // No worker may still be building a batch when the phase changes.
            let signal = &self.shared.signal;
            let (generation, _) = *lock(&signal.phase);
            if !signal.claim(1, generation) {
                signal.wait_for(|| signal.done.load(SeqCst) == 1 || signal.panicked.load(SeqCst));
            }
        }
        self.publish(Phase::Exit);
        for worker in self.workers.drain(..) {
            // A worker that panicked has said so already; nothing is left to clean up.
            let _ = worker.join();
        }
    }
}

/// Resizes `matrix` only when its shape differs; callers overwrite every element.
fn shape(matrix: &mut DMatrix<f32>, n_rows: usize, n_cols: usize) {
    if matrix.shape() != (n_rows, n_cols) {
        *matrix = DMatrix::zeros(n_rows, n_cols);
    }
}

/// `features` (row-major, `n_inputs` a row) in sparse form, if few enough are nonzero.
fn sparse_form(features: &[f32], n_inputs: usize, max_density: f64) -> Option<SparseRows> {
    if n_inputs == 0 || features.is_empty() {
        return None;
    }
    let n_nonzero = features.iter().filter(|&&v| v != 0.0).count();
    if n_nonzero as f64 > max_density * features.len() as f64 {
        return None;
    }
    let mut sparse = SparseRows::new();
    for row in features.chunks_exact(n_inputs) {
        sparse.push_dense(row);
    }
    Some(sparse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::optim::OptimizerConfig;
    use crate::nn::Init;
    use crate::rng::Rng;

    const SGD: OptimizerConfig = OptimizerConfig::Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    const NESTEROV: OptimizerConfig = OptimizerConfig::Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.01,
    };
    const ADAM: OptimizerConfig = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.0,
    };

    /// `n_samples` rows of `n_inputs` features, about `zeros` of them exactly zero, and
    /// the first feature always zero (its weights get no gradient).
    fn features(n_samples: usize, n_inputs: usize, zeros: f64, rng: &mut Rng) -> Vec<f32> {
        (0..n_samples * n_inputs)
            .map(|idx| {
                if idx % n_inputs == 0 || rng.uniform_f64() < zeros {
                    0.0
                } else {
                    rng.uniform_f64() as f32
                }
            })
            .collect()
    }

    struct Case {
        widths: &'static [usize],
        activation: Activation,
        loss: Loss,
        optimizer: OptimizerConfig,
    }

    const CASES: &[Case] = &[
        Case {
            widths: &[50, 40, 10],
            activation: Activation::Relu,
            loss: Loss::CrossEntropy,
            optimizer: SGD,
        },
        Case {
            widths: &[50, 48, 20, 6],
            activation: Activation::Tanh,
            loss: Loss::MeanSquaredError,
            optimizer: NESTEROV,
        },
        Case {
            widths: &[50, 35, 10],
            activation: Activation::LeakyRelu { alpha: 0.1 },
            loss: Loss::CrossEntropy,
            optimizer: ADAM,
        },
        // More units than a chunk: 64 + 64 + 2 on one thread, 72 + 58 on two.
        Case {
            widths: &[30, 130, 10],
            activation: Activation::Relu,
            loss: Loss::CrossEntropy,
            optimizer: ADAM,
        },
        // A linear model: the first layer is the output layer.
        Case {
            widths: &[50, 4],
            activation: Activation::Relu,
            loss: Loss::CrossEntropy,
            optimizer: SGD,
        },
    ];

    fn network(case: &Case, seed: u64) -> (Mlp<f32>, OptimizerState) {
        let mut rng = Rng::new(seed);
        let mlp = Mlp::new(
            case.widths,
            case.activation,
            Activation::Identity,
            Init::He,
            &mut rng,
        );
        let state = OptimizerState::new(case.optimizer, &mlp.layers);
        (mlp, state)
    }

    /// Runs `n_batches` batches of `batch` rows through a training step and returns the
    /// network, the optimiser state and the losses.
    #[allow(clippy::too_many_arguments)]
    fn train_steps(
        case: &Case,
        features: &[f32],
        labels: &[u32],
        batch: usize,
        n_batches: usize,
        threads: usize,
        max_density: f64,
    ) -> (Mlp<f32>, OptimizerState, Vec<f32>) {
        let (mut mlp, mut state) = network(case, 5);
        let mut step = TrainingStep::with_density(&mlp, &state, threads, features, max_density);
        let n_rows = labels.len();
        let mut losses = Vec::new();
        // A different, unordered set of rows every batch.
        let rows_of = |batch_idx: usize| -> Vec<usize> {
            (0..batch)
                .map(|i| (batch_idx * 7 + i * 13) % n_rows)
                .collect()
        };
        for batch_idx in 0..n_batches {
            let rows = rows_of(batch_idx);
            let batch_labels: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
            step.load_batch(features, &rows);
            // The next batch is announced (and built by a worker), except once it is
            // announced wrongly, which `load_batch` must notice.
            if batch_idx == 1 {
                step.next_batch(&rows_of(batch_idx + 5));
            } else if batch_idx + 1 < n_batches {
                step.next_batch(&rows_of(batch_idx + 1));
            }
            losses.push(step.forward(case.loss, BatchTargets::Classes(&batch_labels)));
            step.backward(&mut state, 0.05);
        }
        step.store(&mut mlp, &mut state);
        (mlp, state, losses)
    }

    fn bits(mlp: &Mlp<f32>, state: &OptimizerState) -> Vec<u32> {
        let mut bits = Vec::new();
        for layer in &mlp.layers {
            bits.extend(
                layer
                    .weights
                    .iter()
                    .chain(layer.bias.iter())
                    .map(|v| v.to_bits()),
            );
        }
        for param in &state.params {
            bits.extend(param.first.iter().chain(&param.second).map(|v| v.to_bits()));
        }
        bits
    }

    #[test]
    fn one_step_matches_the_reference_backward_and_optimizer() {
        let mut rng = Rng::new(3);
        for case in CASES {
            let n_inputs = case.widths[0];
            let n_classes = *case.widths.last().expect("widths") as u32;
            let features = features(30, n_inputs, 0.7, &mut rng);
            let labels: Vec<u32> = (0..30).map(|i| i % n_classes).collect();
            let rows: Vec<usize> = (0..30).rev().collect();
            // The reference: the plain forward and backward passes and the optimiser.
            let (mut expected, mut expected_state) = network(case, 5);
            let before = expected.clone();
            let mut input_rows = Vec::new();
            for &row in &rows {
                input_rows.extend_from_slice(&features[row * n_inputs..(row + 1) * n_inputs]);
            }
            let input = crate::nn::batch_matrix::<f32>(&input_rows, n_inputs);
            let batch_labels: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
            let targets = BatchTargets::Classes(&batch_labels);
            let (expected_loss, grads) = expected.loss_and_gradients(input, targets, case.loss);
            expected_state.step(&mut expected.layers, &grads, 0.05);

            let (mut actual, mut actual_state) = network(case, 5);
            let mut step = TrainingStep::new(&actual, &actual_state, 2, &features);
            step.load_batch(&features, &rows);
            let loss = step.forward(case.loss, targets);
            step.backward(&mut actual_state, 0.05);
            step.store(&mut actual, &mut actual_state);

            let what = format!("{:?} {:?}", case.widths, case.optimizer);
            assert!(
                (loss - expected_loss).abs() <= 1e-5 * expected_loss.abs(),
                "{what}: loss"
            );
            assert_eq!(actual_state.step, expected_state.step);
            for (layer_idx, ((a, e), b)) in actual
                .layers
                .iter()
                .zip(&expected.layers)
                .zip(&before.layers)
                .enumerate()
            {
                let pairs = a
                    .weights
                    .iter()
                    .zip(e.weights.iter())
                    .zip(b.weights.iter())
                    .chain(a.bias.iter().zip(e.bias.iter()).zip(b.bias.iter()));
                let largest = e
                    .weights
                    .iter()
                    .zip(b.weights.iter())
                    .map(|(e, b)| (e - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(largest > 0.0, "{what}: layer {layer_idx} did not move");
                for (idx, ((&a, &e), &b)) in pairs.enumerate() {
                    // The step's change against the reference's: the sums differ in order.
                    let (moved, expected_move) = (a - b, e - b);
                    assert!(
                        (moved - expected_move).abs() <= 1e-4 * largest,
                        "{what}: layer {layer_idx}, parameter {idx}: moved {moved}, expected {expected_move}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_thread_count_and_input_form_gives_the_same_bits() {
        let mut rng = Rng::new(4);
        for case in CASES {
            let n_inputs = case.widths[0];
            let n_classes = *case.widths.last().expect("widths") as u32;
            let features = features(45, n_inputs, 0.8, &mut rng);
            let labels: Vec<u32> = (0..45).map(|i| (i * 5 % 7) as u32 % n_classes).collect();
            // Batches of 16 with a last one of 7 rows would be typical; 16 rows, 4 batches.
            let (mlp, state, losses) = train_steps(case, &features, &labels, 16, 4, 1, 1.0);
            let expected = bits(&mlp, &state);
            for (threads, max_density) in [(1, 0.0), (2, 1.0), (3, 1.0), (3, 0.0), (8, 1.0)] {
                let (mlp, state, actual_losses) =
                    train_steps(case, &features, &labels, 16, 4, threads, max_density);
                let what = format!(
                    "{:?}: {threads} threads, density {max_density}",
                    case.widths
                );
                assert!(bits(&mlp, &state) == expected, "{what}: other bits");
                assert_eq!(
                    actual_losses
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    losses.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{what}: other losses"
                );
            }
        }
    }

    #[test]
    fn narrow_first_layers_use_fewer_threads() {
        let case = &CASES[0];
        let (mlp, state) = network(case, 1);
        // 40 units: two blocks of at least 16 (24 and 16).
        let step = TrainingStep::new(&mlp, &state, 8, &[0.0; 50]);
        assert_eq!(step.n_threads(), 2);
        let blocks: Vec<usize> = step.shared.blocks.iter().map(|b| lock(b).n_units).collect();
        assert_eq!(blocks, [24, 16]);
    }
}
